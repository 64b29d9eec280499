//! pyflakes 3.4.0's checks that signal broken code, over the tree-sitter tree, plus one of our
//! own:
//!
//! | rule    | name                   | pyflakes message                                    |
//! |---------|------------------------|-----------------------------------------------------|
//! | `F401`  | unused-import          | `'x' imported but unused`                           |
//! | `F811`  | redefined-while-unused | `redefinition of unused 'x' from line N`            |
//! | `F821`  | undefined-name         | `undefined name 'x'`                                |
//! | `F822`  | undefined-export       | `undefined name 'x' in __all__`                     |
//! | `F823`  | undefined-local        | `local variable 'x' … referenced before assignment` |
//! | `F841`  | unused-variable        | `local variable 'x' is assigned to but never used`  |
//! | `W0101` | unreachable-code       | (ours) a statement after `return`/`raise`/`continue`/`break` in the same block |
//!
//! The checker follows pyflakes' `Checker` step for step (`checker.rs` for scopes and bindings,
//! `visit.rs` and `expr.rs` for the node handlers): function bodies are checked after the
//! module, class scopes are invisible from nested functions, `try`/`except` and `if`/`else`
//! branches may rebind a name, `__all__` marks imports used, and so on. Positions are pyflakes':
//! 1-based line and 1-based column in bytes.

mod checker;
mod expr;
mod imports;
mod patterns;
mod scope;
mod visit;

use crate::finding::{Finding, Level};
use crate::quality::flat::Flat;
use crate::source::Source;
use checker::{Ann, Checker, Deferred};
use scope::ScopeKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rule {
    UnusedImport,
    Redefined,
    UndefinedName,
    UndefinedExport,
    UndefinedLocal,
    UnusedVariable,
    Unreachable,
}

impl Rule {
    fn code(self) -> &'static str {
        match self {
            Rule::UnusedImport => "F401",
            Rule::Redefined => "F811",
            Rule::UndefinedName => "F821",
            Rule::UndefinedExport => "F822",
            Rule::UndefinedLocal => "F823",
            Rule::UnusedVariable => "F841",
            Rule::Unreachable => "W0101",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Rule::UnusedImport => "unused-import",
            Rule::Redefined => "redefined-while-unused",
            Rule::UndefinedName => "undefined-name",
            Rule::UndefinedExport => "undefined-export",
            Rule::UndefinedLocal => "undefined-local",
            Rule::UnusedVariable => "unused-variable",
            Rule::Unreachable => "unreachable-code",
        }
    }

    /// Severity: names that raise `NameError` when run are high, a discarded definition is
    /// medium, dead weight (unused names, unreachable statements) is low; confidence is high
    /// except for F823, which pyflakes infers from use order across scopes.
    fn levels(self) -> (Level, Level) {
        match self {
            Rule::UndefinedName | Rule::UndefinedExport => (Level::High, Level::High),
            Rule::UndefinedLocal => (Level::High, Level::Medium),
            Rule::Redefined => (Level::Medium, Level::High),
            Rule::UnusedImport | Rule::UnusedVariable | Rule::Unreachable => {
                (Level::Low, Level::High)
            }
        }
    }
}

/// How much one lint costs in [`super::score`]'s lint term: 1 for `F821`/`F822`/`F823` (the code
/// raises `NameError`), 0.5 for `F811` (a definition is thrown away), 0.25 for `F401`, `F841`
/// and `W0101` (dead code), 0 for other rules.
pub fn rule_weight(rule: &str) -> f64 {
    match rule {
        "F821" | "F822" | "F823" => 1.0,
        "F811" => 0.5,
        "F401" | "F841" | "W0101" => 0.25,
        _ => 0.0,
    }
}

fn message(rule: Rule, name: &str, orig: Option<usize>) -> String {
    match rule {
        Rule::UnusedImport => format!("'{name}' imported but unused"),
        Rule::Redefined => format!(
            "redefinition of unused '{name}' from line {}",
            orig.unwrap_or(0)
        ),
        Rule::UndefinedName => format!("undefined name '{name}'"),
        Rule::UndefinedExport => format!("undefined name '{name}' in __all__"),
        Rule::UndefinedLocal => match orig {
            Some(line) => {
                format!(
                    "local variable '{name}' defined in enclosing scope on line {line} referenced before assignment"
                )
            }
            None => {
                format!("local variable '{name}' defined as a builtin referenced before assignment")
            }
        },
        Rule::UnusedVariable => format!("local variable '{name}' is assigned to but never used"),
        Rule::Unreachable => format!("unreachable code after '{name}'"),
    }
}

/// The lints of one file, sorted by position. Runs on the recovered tree of a file with syntax
/// errors too (where pyflakes would only report the syntax error).
pub fn lints(src: &Source) -> Vec<Finding> {
    check(&Flat::new(&src.tree, &src.text))
}

/// [`lints`] on a tree already copied (what `quality::analyze` shares with the metrics).
pub(crate) fn check(flat: &Flat) -> Vec<Finding> {
    let root = flat.root();
    let mut c = Checker::new();
    c.push_scope(ScopeKind::Module);
    c.block(root);
    while let Some((work, stack)) = c.deferred.pop_front() {
        c.stack = stack;
        c.name_error_handlers = vec![false];
        c.ann = Ann::None;
        match work {
            Deferred::Body(node) => c.run_body(node),
            Deferred::Annotation(node) => {
                c.ann = Ann::Bare;
                c.expr(node);
                c.ann = Ann::None;
            }
            Deferred::StringAnnotation(text, line, col) => c.string_annotation(&text, (line, col)),
        }
    }
    c.stack = vec![0];
    c.pop_scope();
    c.report_dead_scopes();
    let mut messages = std::mem::take(&mut c.messages);
    messages
        .sort_by(|a, b| (a.line, a.col, a.rule, &a.name).cmp(&(b.line, b.col, b.rule, &b.name)));
    messages
        .into_iter()
        .map(|m| {
            let (severity, confidence) = m.rule.levels();
            Finding {
                rule: m.rule.code().to_string(),
                name: m.rule.name().to_string(),
                severity,
                confidence,
                line: m.line,
                column: m.col,
                message: message(m.rule, &m.name, m.orig_line),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(code: &str) -> Vec<(String, usize)> {
        let src = Source::python(code.as_bytes()).unwrap();
        lints(&src).into_iter().map(|f| (f.rule, f.line)).collect()
    }

    fn s(rule: &str, line: usize) -> (String, usize) {
        (rule.to_string(), line)
    }

    #[test]
    fn pyflakes_basics() {
        let code = "import os, sys\nx = 1\ndef x(): pass\ndef f(p):\n    a = 1\n    b, c = g()\n    return p + undefined\n";
        assert_eq!(
            codes(code),
            vec![
                s("F401", 1),
                s("F401", 1),
                s("F811", 3),
                s("F841", 5),
                s("F821", 6),
                s("F821", 7)
            ]
        );
    }

    #[test]
    fn later_module_names_are_visible_in_functions() {
        assert!(codes("def f():\n    return g()\ndef g():\n    return 1\n").is_empty());
        assert_eq!(codes("print(h)\nh = 1\n"), vec![s("F821", 1)]);
    }

    #[test]
    fn class_scope_is_not_visible_from_methods() {
        let code = "class A:\n    x = 1\n    y = [x for _ in range(3)]\n    def m(self):\n        return x\n";
        assert_eq!(codes(code), vec![s("F821", 5)]);
    }

    #[test]
    fn unreachable_is_ours() {
        let code = "def f():\n    return 1\n    print(2)\n";
        assert_eq!(codes(code), vec![s("W0101", 3)]);
    }
}
