//! The patch's risk score in [0, 1]: how much a reviewer should worry before applying it.
//! Four independent signals, each a probability-like term, combined as `1 − Π(1 − rᵢ)` (any one
//! alone can make a patch risky; together they add up without passing 1):
//!
//! - **syntax**: 0.9 when the patched file does not parse;
//! - **size**: `0.5 · min(1, changed lines / 200)`;
//! - **security** (Python, `anvil reward analyze`'s analyzers): findings the patch adds over the
//!   original file, 0.4 per HIGH, 0.2 per MEDIUM, 0.05 per LOW severity, combined the same way;
//! - **public surface**: 0.1 per public definition whose body changed, 0.25 per public signature
//!   rewritten (`whole`), at most 0.5.

use crate::masker::MaskedSpan;
use anvil_analyze::finding::Level;
use anvil_data::lang::Lang;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Risk {
    pub score: f64,
    pub syntax: f64,
    pub size: f64,
    pub security: f64,
    pub public: f64,
    pub changed_lines: usize,
    /// Security findings the patch adds (`rule: message`), Python only.
    pub new_findings: Vec<String>,
}

/// The risk of turning `old` into `new` by rewriting `spans`; `diff` is the patch (its `-` and
/// `+` lines are the changed lines).
pub fn score(
    lang: Lang,
    old: &str,
    new: &str,
    diff: &str,
    spans: &[MaskedSpan],
    parses: bool,
    whole: bool,
) -> Risk {
    let syntax = if parses { 0.0 } else { 0.9 };
    let changed_lines = changed_lines(diff);
    let size = 0.5 * (changed_lines as f64 / 200.0).min(1.0);
    let new_findings = match lang {
        Lang::Python => added_findings(old, new),
        _ => Vec::new(),
    };
    let security = combine(new_findings.iter().map(|(level, _)| match level {
        Level::High => 0.4,
        Level::Medium => 0.2,
        Level::Low => 0.05,
    }));
    let per = if whole { 0.25 } else { 0.1 };
    let public = (spans.iter().filter(|s| s.public).count() as f64 * per).min(0.5);
    Risk {
        score: combine([syntax, size, security, public]),
        syntax,
        size,
        security,
        public,
        changed_lines,
        new_findings: new_findings.into_iter().map(|(_, f)| f).collect(),
    }
}

/// `1 − Π(1 − rᵢ)`.
fn combine(terms: impl IntoIterator<Item = f64>) -> f64 {
    1.0 - terms
        .into_iter()
        .map(|r| 1.0 - r.clamp(0.0, 1.0))
        .product::<f64>()
}

/// Lines removed plus lines added in a unified diff.
fn changed_lines(diff: &str) -> usize {
    diff.lines()
        .filter(|l| {
            (l.starts_with('-') && !l.starts_with("---"))
                || (l.starts_with('+') && !l.starts_with("+++"))
        })
        .count()
}

/// Security findings of `new` that `old` does not have (by rule and message, so moved lines do
/// not count as new).
fn added_findings(old: &str, new: &str) -> Vec<(Level, String)> {
    let findings = |text: &str| -> Vec<(Level, String)> {
        let policy = anvil_analyze::license::LicensePolicy::default();
        anvil_analyze::report::analyze_bytes("patch.py", text.as_bytes(), &policy)
            .findings
            .into_iter()
            .filter(|f| f.tool == anvil_analyze::report::Tool::Security)
            .map(|f| {
                (
                    f.finding.severity,
                    format!("{}: {}", f.finding.rule, f.finding.message),
                )
            })
            .collect()
    };
    let mut before = findings(old);
    let mut added = Vec::new();
    for f in findings(new) {
        match before.iter().position(|b| b.1 == f.1) {
            Some(i) => {
                before.remove(i);
            }
            None => added.push(f),
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(public: bool) -> MaskedSpan {
        MaskedSpan {
            target: "f".into(),
            start: 0,
            end: 0,
            def_start: 0,
            start_line: 1,
            end_line: 1,
            public,
        }
    }

    #[test]
    fn each_signal_raises_the_score() {
        let old = "import subprocess\n\ndef f(x):\n    return x\n";
        let same = score(Lang::Python, old, old, "", &[span(false)], true, false);
        assert_eq!(same.score, 0.0);
        let new = "import subprocess\n\ndef f(x):\n    return subprocess.call(x, shell=True)\n";
        let diff = crate::diff::unified(
            "a.py",
            old,
            &[(
                old.len() - 9..old.len() - 1,
                "return subprocess.call(x, shell=True)".into(),
            )],
        );
        assert_eq!(
            crate::diff::splice(
                old,
                &[(
                    old.len() - 9..old.len() - 1,
                    "return subprocess.call(x, shell=True)".into()
                )]
            ),
            new
        );
        let r = score(Lang::Python, old, new, &diff, &[span(false)], true, false);
        assert!(
            r.security > 0.0 && r.new_findings.iter().any(|f| f.starts_with("B602")),
            "{r:?}"
        );
        assert_eq!(r.changed_lines, 2);
        let broken = score(
            Lang::Python,
            old,
            "def f(:\n",
            "",
            &[span(false)],
            false,
            false,
        );
        assert!(broken.score >= 0.9);
        let public = score(Lang::Python, old, old, "", &[span(true)], true, true);
        assert!((public.public - 0.25).abs() < 1e-12 && (public.score - 0.25).abs() < 1e-12);
        assert!(r.score < 1.0 && broken.score <= 1.0);
    }
}
