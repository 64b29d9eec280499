//! Static quality of one Python file, the way radon 6.0.1 and pyflakes 3.4.0 measure it, over the
//! tree-sitter tree (no Python interpreter):
//!
//! - [`Block`]s: cyclomatic complexity of every function, method and class with radon's
//!   `ComplexityVisitor` counting rules and `cc_rank` letters (what `radon cc` prints);
//! - the maintainability index of the file with radon's `mi_visit(code, multi=True)` formula
//!   (what `radon mi` prints), from Halstead volume ([`Halstead`], radon's `HalsteadVisitor`),
//!   total complexity, and the raw line counts of `radon raw` ([`RawMetrics`]);
//! - lints pyflakes reports that signal broken code (undefined names, unused imports and locals,
//!   redefinitions), plus unreachable statements, as [`Finding`]s;
//! - [`score`]: the three folded into one number in [0, 1].
//!
//! `docs/reward/quality.md` lists every known difference from radon and pyflakes;
//! `analyze/tests/agreement_radon.rs` checks the agreement against the real tools.

mod complexity;
mod flat;
mod halstead;
mod lint;
mod literal;
mod raw;

use crate::finding::Finding;
use crate::source::Source;
use serde::Serialize;

pub use lint::{lints, rule_weight};
pub use raw::raw_metrics;

/// What a [`Block`] is, with radon's `type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    Function,
    Method,
    Class,
}

/// One function, method or class as `radon cc` (without `--show-closures`) reports it: top-level
/// functions and classes (also when nested in `if`/`try`/… at module level) and the methods of
/// those classes. Closures and classes nested in functions or classes count in no block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    pub name: String,
    pub kind: BlockKind,
    /// The class a method belongs to; `None` for functions and classes.
    pub classname: Option<String>,
    /// 1-based line of `def`/`class` (decorators excluded, as Python's AST has it).
    pub line: usize,
    /// radon's `endline`: the last line at which an expression or statement of the block's last
    /// body statement starts (not the last line of its text).
    pub end_line: usize,
    /// 0-based column of `def`/`class` (radon's `col_offset`, in bytes).
    pub column: usize,
    /// For functions and methods: 1 + decision points of the body (closures excluded). For
    /// classes: radon's average, `int(total / methods) + (methods > 1)`, or the total when the
    /// class has no method.
    pub complexity: u32,
    /// `cc_rank(complexity)`: A (1–5) … F (41+).
    pub rank: char,
}

/// radon's Halstead counts for the whole file: distinct and total operators (`h1`, `n1`) and
/// operands (`h2`, `n2`), and the volume `(n1 + n2) · log2(h1 + h2)`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Halstead {
    pub h1: usize,
    pub h2: usize,
    pub n1: usize,
    pub n2: usize,
    pub volume: f64,
}

/// radon's raw metrics (`radon raw`): `loc = sloc + blank + multi + single_comments`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RawMetrics {
    /// Lines (as Python's `str.splitlines` counts them).
    pub loc: usize,
    /// Logical lines: statements, where `if c: x` counts 2 (radon's token rule, see `raw.rs`).
    pub lloc: usize,
    /// Lines of code: lines of statements, comments inside them included.
    pub sloc: usize,
    /// `#` comments, also those after code.
    pub comments: usize,
    /// Lines of multi-line strings that stand alone as a statement (docstrings).
    pub multi: usize,
    pub blank: usize,
    /// Lines holding only a comment or a one-line string statement.
    pub single_comments: usize,
}

/// Everything [`analyze`] measures, serialized as-is into JSON outputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityReport {
    /// Functions, methods and classes in source order (radon sorts by complexity instead).
    pub blocks: Vec<Block>,
    /// radon's `total_complexity` of the module (1 + decision points outside functions and
    /// classes + those of top-level functions and classes, closures excluded): MI's complexity.
    pub total_complexity: u32,
    pub halstead: Halstead,
    pub raw: RawMetrics,
    /// Maintainability index in [0, 100] (radon `mi_visit(code, multi=True)`).
    pub mi: f64,
    /// `mi_rank(mi)`: A (> 19), B (> 9), C.
    pub mi_rank: char,
    /// pyflakes-compatible lints (`F401`, `F811`, `F821`, `F822`, `F823`, `F841`) and our
    /// unreachable-code check (`W0101`), sorted by position.
    pub lints: Vec<Finding>,
}

/// Measure one file. Works on the recovered tree when `src.has_errors` (where radon and pyflakes
/// would refuse the file); [`score`] gives such a file 0.
pub fn analyze(src: &Source) -> QualityReport {
    // One walk of the tree-sitter tree; every analysis reads the copy.
    let flat = flat::Flat::new(&src.tree, &src.text);
    let metrics = complexity::measure(&flat);
    let raw = raw::raw_metrics(&src.text);
    let mi = mi_compute(
        metrics.halstead.volume,
        metrics.total_complexity,
        raw.lloc,
        comment_percent(&raw),
    );
    QualityReport {
        blocks: metrics.blocks,
        total_complexity: metrics.total_complexity,
        halstead: metrics.halstead,
        raw,
        mi,
        mi_rank: mi_rank(mi),
        lints: lint::check(&flat),
    }
}

/// radon's `cc_rank`: `ceil(cc / 10)` (at least 1) minus 1 while `cc <= 5`, capped at F.
pub fn cc_rank(cc: u32) -> char {
    let tens = cc.div_ceil(10).max(1);
    let rank = (tens - u32::from(cc <= 5)).min(5);
    char::from(b'A' + rank as u8)
}

/// radon's `mi_rank`: A when MI > 19, B when 9 < MI ≤ 19, C otherwise.
pub fn mi_rank(mi: f64) -> char {
    let steps = u8::from(9.0 - mi >= 0.0) + u8::from(19.0 - mi >= 0.0);
    char::from(b'A' + steps)
}

/// Share of comment lines in percent, as `mi_parameters(code, count_multi=True)` computes it:
/// `(comments + multi) / sloc · 100` (0 without source lines).
fn comment_percent(raw: &RawMetrics) -> f64 {
    if raw.sloc == 0 {
        0.0
    } else {
        (raw.comments + raw.multi) as f64 / raw.sloc as f64 * 100.0
    }
}

/// radon's `mi_compute`: with V the Halstead volume, G the total complexity, L the *logical*
/// lines and C the comment percentage,
/// `MI = max(0, min(100, (171 − 5.2 ln V − 0.23 G − 16.2 ln L + 50 sin(√(2.46 · C°→rad))) · 100 / 171))`,
/// and 100 when V or L is 0.
pub fn mi_compute(volume: f64, complexity: u32, lloc: usize, comment_percent: f64) -> f64 {
    if volume <= 0.0 || lloc == 0 {
        return 100.0;
    }
    let comments_scale = (2.46 * comment_percent.to_radians()).sqrt();
    let nn_mi =
        171.0 - 5.2 * volume.ln() - 0.23 * f64::from(complexity) - 16.2 * (lloc as f64).ln()
            + 50.0 * comments_scale.sin();
    (nn_mi * 100.0 / 171.0).clamp(0.0, 100.0)
}

/// Value of a complexity rank in the score: A 1.0, B 0.8, C 0.6, D 0.4, E 0.2, F 0.
fn rank_value(rank: char) -> f64 {
    match rank {
        'A' => 1.0,
        'B' => 0.8,
        'C' => 0.6,
        'D' => 0.4,
        'E' => 0.2,
        _ => 0.0,
    }
}

/// Quality in [0, 1]. A file that does not parse (`parses == false`, i.e. `src.has_errors`)
/// scores 0. Otherwise the mean of three terms:
///
/// - complexity: the mean over functions and methods of their rank's value (A 1.0, B 0.8,
///   C 0.6, D 0.4, E 0.2, F 0); 1 when the file has none (classes are left out: their
///   complexity is an average of their methods');
/// - maintainability: `MI / 100`, clipped to [0, 1];
/// - lints: `1 / (1 + Σ weight)` over the lints, with the weights of [`rule_weight`]: 1 for
///   names that raise `NameError` when run (`F821`, `F822`, `F823`), 0.5 for a redefinition
///   that discards a definition (`F811`), 0.25 for dead weight (`F401`, `F841`, `W0101`).
///
/// `score = (complexity + maintainability + lints) / 3`.
pub fn score(report: &QualityReport, parses: bool) -> f64 {
    if !parses {
        return 0.0;
    }
    let ranks: Vec<f64> = report
        .blocks
        .iter()
        .filter(|b| b.kind != BlockKind::Class)
        .map(|b| rank_value(b.rank))
        .collect();
    let complexity = if ranks.is_empty() {
        1.0
    } else {
        ranks.iter().sum::<f64>() / ranks.len() as f64
    };
    let maintainability = (report.mi / 100.0).clamp(0.0, 1.0);
    let penalty: f64 = report.lints.iter().map(|f| rule_weight(&f.rule)).sum();
    let lints = 1.0 / (1.0 + penalty);
    ((complexity + maintainability + lints) / 3.0).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_match_radon() {
        let cc: Vec<char> = [0, 1, 5, 6, 10, 11, 20, 21, 30, 31, 40, 41, 100]
            .iter()
            .map(|&c| cc_rank(c))
            .collect();
        assert_eq!(
            cc,
            [
                'A', 'A', 'A', 'B', 'B', 'C', 'C', 'D', 'D', 'E', 'E', 'F', 'F'
            ]
        );
        assert_eq!(mi_rank(100.0), 'A');
        assert_eq!(mi_rank(19.5), 'A');
        assert_eq!(mi_rank(19.0), 'B');
        assert_eq!(mi_rank(9.5), 'B');
        assert_eq!(mi_rank(9.0), 'C');
        assert_eq!(mi_rank(0.0), 'C');
    }

    #[test]
    fn mi_formula_matches_radon() {
        // radon.metrics.mi_compute(100, 3, 10, 25) = 88.93617621604106
        assert!((mi_compute(100.0, 3, 10, 25.0) - 88.936_176_216_041_06).abs() < 1e-9);
        assert_eq!(mi_compute(0.0, 3, 10, 0.0), 100.0);
        assert_eq!(mi_compute(10.0, 1, 0, 0.0), 100.0);
    }

    #[test]
    fn score_is_zero_without_parse_and_drops_with_lints() {
        let clean = analyze(&Source::python(b"def f(x):\n    return x + 1\n").unwrap());
        let broken = analyze(&Source::python(b"def f(x):\n    return y + 1\n").unwrap());
        let s_clean = score(&clean, true);
        let s_broken = score(&broken, true);
        assert!(s_clean > s_broken, "{s_clean} vs {s_broken}");
        assert!((0.0..=1.0).contains(&s_clean));
        assert_eq!(score(&clean, false), 0.0);
        let bad = Source::python(b"def f(:\n").unwrap();
        assert!(bad.has_errors);
        assert_eq!(score(&analyze(&bad), !bad.has_errors), 0.0);
    }

    #[test]
    fn never_panics_on_truncated_or_odd_code() {
        let corpus = [
            include_str!("../../tests/corpus/quality/complexity.py"),
            include_str!("../../tests/corpus/quality/halstead.py"),
            include_str!("../../tests/corpus/quality/lints.py"),
            include_str!("../../tests/corpus/quality/raw.py"),
            include_str!("../../tests/corpus/quality/scopes.py"),
            "x = '''\n\\\n",
            "def f(:\n  return [x for\n",
            "a = 'é\\\nb' ; c = \"\"\"\u{1F600}\n",
            "class(\n@\nmatch x:\n case -:\n",
            "\u{feff}\u{c}\u{2028}x = 1\r\ny = (\u{a0}$?!\n",
        ];
        for text in corpus {
            let mut cut = 0;
            while cut <= text.len() {
                if text.is_char_boundary(cut) {
                    let src = Source::python(&text.as_bytes()[..cut]).unwrap();
                    let report = analyze(&src);
                    let s = score(&report, !src.has_errors);
                    assert!((0.0..=1.0).contains(&s));
                    assert!(report.mi.is_finite());
                }
                cut += 23;
            }
        }
    }

    #[test]
    fn deepest_accepted_tree_does_not_overflow_the_stack() {
        // Just under `MAX_DEPTH` in several shapes: parentheses, calls, operators, blocks.
        let mut shapes = vec![
            format!("x = {}1{}\n", "(".repeat(480), ")".repeat(480)),
            format!("x = {}{}\n", "f(".repeat(240), ")".repeat(240)),
            format!("x = {}0\n", "-".repeat(450)),
            format!("x = {}\n", vec!["a"; 400].join(" and ")),
        ];
        // A string annotation is parsed on its own: its depth is checked there.
        shapes.push(format!(
            "x: \"{}int{}\" = 1\n",
            "(".repeat(5000),
            ")".repeat(5000)
        ));
        let mut nested = String::new();
        for depth in 0..120 {
            nested.push_str(&"    ".repeat(depth));
            nested.push_str(&format!("def f{depth}():\n"));
        }
        nested.push_str(&"    ".repeat(120));
        nested.push_str("return 1\n");
        shapes.push(nested);
        for code in shapes {
            let Ok(src) = Source::python(code.as_bytes()) else {
                continue;
            };
            let handle = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || analyze(&src).blocks.len())
                .unwrap();
            assert!(handle.join().is_ok());
        }
    }
}
