//! Security findings, Bandit-compatible: rule IDs, names, severity, confidence and messages as
//! Bandit 1.9.4 reports them, and a risk score in [0, 1] for the reward.
//!
//! The language-generic part lives here: a [`RuleSet`] per language (Python's in `python.rs`;
//! adding JavaScript is one file implementing [`RuleSet`] and one line in [`RULE_SETS`]),
//! sorting, and the risk formula.

use crate::finding::{Finding, Level};
use crate::source::Source;

mod python;
mod python_ast;
mod python_blacklist;
mod python_calls;
mod python_django;
mod python_libs;
mod python_literal;
mod python_nosec;
mod python_strings;

pub use python::Python;

/// One rule of a rule set: its ID (`B602`) and name (`subprocess_popen_with_shell_equals_true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub name: &'static str,
}

/// A language's security rules.
pub trait RuleSet: Sync {
    /// The language's name (`"python"`).
    fn language(&self) -> &'static str;
    /// Every rule the set can report.
    fn rules(&self) -> &'static [Rule];
    /// The findings for one parsed file, in any order.
    fn findings(&self, src: &Source) -> Vec<Finding>;
}

/// Every language with a rule set.
pub static RULE_SETS: &[&dyn RuleSet] = &[&Python];

/// The rule set for a language name, if there is one.
pub fn rule_set(language: &str) -> Option<&'static dyn RuleSet> {
    RULE_SETS.iter().copied().find(|r| r.language() == language)
}

/// The security findings of a Python file, sorted by line, column, then rule ID. A file that
/// tree-sitter could only parse with errors is analyzed as recovered (Bandit would skip it).
pub fn analyze(src: &Source) -> Vec<Finding> {
    analyze_with(&Python, src)
}

/// The findings of `rules` for one file, sorted by line, column, then rule ID.
pub fn analyze_with(rules: &dyn RuleSet, src: &Source) -> Vec<Finding> {
    let mut findings = rules.findings(src);
    findings.sort_by(|a, b| (a.line, a.column, &a.rule).cmp(&(b.line, b.column, &b.rule)));
    findings
}

/// How much a finding's severity weighs in [`risk`].
pub fn severity_weight(level: Level) -> f64 {
    match level {
        Level::Low => 0.1,
        Level::Medium => 0.4,
        Level::High => 0.9,
    }
}

/// How much a finding's confidence weighs in [`risk`].
pub fn confidence_weight(level: Level) -> f64 {
    match level {
        Level::Low => 0.5,
        Level::Medium => 0.75,
        Level::High => 1.0,
    }
}

/// The security risk of a file's findings, in [0, 1]: each finding is an independent chance
/// `w = severity_weight · confidence_weight` that the file is unsafe, and
///
/// `risk = 1 − Π (1 − w)`
///
/// so no finding is 0, one HIGH/HIGH finding is 0.9, one LOW/LOW finding 0.05, and more
/// findings saturate towards 1 without reaching it. Weights: severity LOW 0.1, MEDIUM 0.4,
/// HIGH 0.9; confidence LOW 0.5, MEDIUM 0.75, HIGH 1.0 (so an `assert`, LOW/HIGH, is 0.1, a
/// `subprocess` call with `shell=True` on a variable, HIGH/HIGH, 0.9).
pub fn risk(findings: &[Finding]) -> f64 {
    let safe: f64 = findings
        .iter()
        .map(|f| 1.0 - severity_weight(f.severity) * confidence_weight(f.confidence))
        .product();
    (1.0 - safe).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Level, confidence: Level) -> Finding {
        Finding {
            rule: "B000".into(),
            name: String::new(),
            severity,
            confidence,
            line: 1,
            column: 1,
            message: String::new(),
        }
    }

    #[test]
    fn risk_is_saturating_and_bounded() {
        use Level::*;
        assert_eq!(risk(&[]), 0.0);
        assert!((risk(&[finding(High, High)]) - 0.9).abs() < 1e-12);
        assert!((risk(&[finding(Low, Low)]) - 0.05).abs() < 1e-12);
        let two = risk(&[finding(Medium, Medium), finding(Medium, Medium)]);
        assert!((two - (1.0 - 0.7 * 0.7)).abs() < 1e-12);
        let many = vec![finding(High, High); 1000];
        let r = risk(&many);
        assert!(r <= 1.0 && r > 0.999);
        // More findings never lower the risk; higher levels never lower it either.
        let mut prev = 0.0;
        for n in 1..20 {
            let r = risk(&vec![finding(Low, Medium); n]);
            assert!(r > prev);
            prev = r;
        }
        for s in [Low, Medium, High] {
            for c in [Low, Medium, High] {
                let r = risk(&[finding(s, c)]);
                assert!((0.0..=1.0).contains(&r));
                if s != High {
                    assert!(risk(&[finding(s.max(Medium), c)]) >= r);
                }
            }
        }
    }

    #[test]
    fn python_is_the_rule_set_for_python() {
        let set = rule_set("python").expect("python rules");
        assert!(set.rules().iter().any(|r| r.id == "B602"));
        assert!(rule_set("cobol").is_none());
    }
}
