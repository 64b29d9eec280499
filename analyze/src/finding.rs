//! What an analyzer reports: one shape for security findings and lint problems, so the text,
//! JSON and SARIF writers have one input.

use serde::{Deserialize, Serialize};

/// Bandit's three-step scale, used for both severity and confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Low,
    Medium,
    High,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Low => "LOW",
            Level::Medium => "MEDIUM",
            Level::High => "HIGH",
        }
    }
}

/// One finding at a place in a file. `rule` is the tool's ID (`B602`, or a lint code such as
/// `F821`), `name` its short name (`subprocess_popen_with_shell_equals_true`, `undefined-name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub name: String,
    pub severity: Level,
    pub confidence: Level,
    /// 1-based line and column, as Bandit and pyflakes print them.
    pub line: usize,
    pub column: usize,
    pub message: String,
}
