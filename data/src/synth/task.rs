//! What every template shares: the split-aware random context, Python literals, and rendering a
//! template's output into HumanEval's prompt / solution / test strings.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::fmt;

/// Fewer asserts than this and a task is rejected (the evaluator needs enough pairs to tell a
/// right answer from a lucky one).
pub(crate) const MIN_ASSERTS: usize = 6;

// Parameter-name vocabularies. Like every `Ctx::pick` pool, entries at index i % 4 == 3 are
// held-out only; the rest are train only. Names that bodies use as locals (count, total, result,
// rest, current, seen, cleaned, ch, i, j, v, x/y in zip) are deliberately absent.
pub(crate) const INT_PARAMS: &[&str] = &["x", "n", "value", "num", "z", "number", "val", "k"];
pub(crate) const INT_PAIRS: &[(&str, &str)] = &[
    ("x", "y"),
    ("a", "b"),
    ("p", "q"),
    ("m", "n"),
    ("first", "second"),
    ("u", "w"),
    ("left", "right"),
    ("lhs", "rhs"),
];
pub(crate) const INT_TRIPLES: &[(&str, &str, &str)] = &[
    ("a", "b", "c"),
    ("x", "y", "z"),
    ("p", "q", "r"),
    ("first", "second", "third"),
    ("u", "w", "t"),
    ("one", "two", "three"),
    ("low", "mid", "high"),
    ("i1", "i2", "i3"),
];
pub(crate) const LIST_PARAMS: &[&str] = &[
    "nums", "values", "xs", "numbers", "items", "data", "arr", "seq",
];
pub(crate) const LIST_PAIRS: &[(&str, &str)] = &[
    ("xs", "ys"),
    ("first", "second"),
    ("left", "right"),
    ("nums1", "nums2"),
    ("a", "b"),
    ("lhs", "rhs"),
    ("p", "q"),
    ("vals1", "vals2"),
];
pub(crate) const STR_PARAMS: &[&str] = &[
    "s", "text", "line", "string", "phrase", "sentence", "msg", "txt",
];

/// Input words: plain lowercase ASCII so every literal is trivially a valid Python string and its
/// repr (the doctest output) is just the text in single quotes.
const WORDS: &[&str] = &[
    "apple", "banana", "cherry", "delta", "echo", "forest", "garden", "harbor", "island", "jungle",
    "kettle", "lemon", "mountain", "night", "ocean", "pepper", "quiet", "river", "sunset", "tiger",
    "umbrella", "violet", "winter", "yellow", "zebra", "code", "data", "level", "radar", "noon",
    "python", "rust", "moss", "sky", "bright", "crisp",
];

/// Randomness for one template instance. `pick` and `konst` implement the split rule; the other
/// draws (phrasing, inputs) are shared by both splits.
pub(crate) struct Ctx<'a> {
    rng: &'a mut ChaCha8Rng,
    heldout: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(rng: &'a mut ChaCha8Rng, heldout: bool) -> Self {
        Ctx { rng, heldout }
    }

    /// A vocabulary entry from this split's part: index i % 4 == 3 for held-out, the rest for train.
    pub fn pick<T: Copy>(&mut self, pool: &[T]) -> T {
        let part: Vec<T> = pool
            .iter()
            .enumerate()
            .filter(|(i, _)| (i % 4 == 3) == self.heldout)
            .map(|(_, t)| *t)
            .collect();
        assert!(
            !part.is_empty(),
            "vocabulary of {} entries is too small to split",
            pool.len()
        );
        part[self.rng.random_range(0..part.len())]
    }

    /// A template constant in `lo..=hi` from this split's part: held-out constants are the
    /// multiples of 3 (by absolute value, 0 included), train constants are all the others.
    pub fn konst(&mut self, lo: i64, hi: i64) -> i64 {
        let heldout = self.heldout;
        let part: Vec<i64> = (lo..=hi)
            .filter(|c| (c.abs() % 3 == 0) == heldout)
            .collect();
        assert!(
            !part.is_empty(),
            "constant range {lo}..={hi} is too small to split"
        );
        part[self.rng.random_range(0..part.len())]
    }

    /// `konst` without 0, for offsets where 0 would make the task degenerate.
    pub fn konst_nz(&mut self, lo: i64, hi: i64) -> i64 {
        loop {
            let c = self.konst(lo, hi);
            if c != 0 {
                return c;
            }
        }
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    pub fn coin(&mut self) -> bool {
        self.rng.random_bool(0.5)
    }

    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.random_range(lo..=hi)
    }

    pub fn ints(&mut self, count: usize, lo: i64, hi: i64) -> Vec<i64> {
        (0..count).map(|_| self.int(lo, hi)).collect()
    }

    pub fn list(&mut self, min_len: usize, max_len: usize, lo: i64, hi: i64) -> Vec<i64> {
        let len = self.rng.random_range(min_len..=max_len);
        self.ints(len, lo, hi)
    }

    pub fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len())]
    }

    /// Space-separated words, the first sometimes capitalised so case handling gets exercised.
    pub fn sentence(&mut self, min_words: usize, max_words: usize) -> String {
        let n = self.rng.random_range(min_words..=max_words);
        let mut s = (0..n).map(|_| self.word()).collect::<Vec<_>>().join(" ");
        if !s.is_empty() && self.rng.random_bool(0.3) {
            s[..1].make_ascii_uppercase();
        }
        s
    }
}

/// A Python value as the test and doctest need it: `Display` is a literal that evaluates to the
/// value, and for these types (ASCII strings) it is also exactly Python's `repr`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Py {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Py>),
    Tuple(Vec<Py>),
}

impl fmt::Display for Py {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Py::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Py::Int(i) => write!(f, "{i}"),
            Py::Str(s) => f.write_str(&py_str(s)),
            Py::List(xs) => write!(f, "[{}]", join(xs)),
            Py::Tuple(xs) if xs.len() == 1 => write!(f, "({},)", xs[0]),
            Py::Tuple(xs) => write!(f, "({})", join(xs)),
        }
    }
}

fn join(xs: &[Py]) -> String {
    xs.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Python's `repr` of a str: single quotes unless the text has a ' and no ".
pub(crate) fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

impl From<i64> for Py {
    fn from(v: i64) -> Self {
        Py::Int(v)
    }
}
impl From<i32> for Py {
    fn from(v: i32) -> Self {
        Py::Int(v.into())
    }
}
impl From<usize> for Py {
    fn from(v: usize) -> Self {
        Py::Int(v as i64)
    }
}
impl From<bool> for Py {
    fn from(v: bool) -> Self {
        Py::Bool(v)
    }
}
impl From<&str> for Py {
    fn from(v: &str) -> Self {
        Py::Str(v.to_string())
    }
}
impl From<String> for Py {
    fn from(v: String) -> Self {
        Py::Str(v)
    }
}
impl From<Vec<i64>> for Py {
    fn from(v: Vec<i64>) -> Self {
        Py::List(v.into_iter().map(Py::Int).collect())
    }
}
impl From<&Vec<i64>> for Py {
    fn from(v: &Vec<i64>) -> Self {
        Py::from(v.clone())
    }
}

/// One test case: arguments and the expected result.
pub(crate) type Case = (Vec<Py>, Py);

pub(crate) fn case1(a: impl Into<Py>, out: impl Into<Py>) -> Case {
    (vec![a.into()], out.into())
}
pub(crate) fn case2(a: impl Into<Py>, b: impl Into<Py>, out: impl Into<Py>) -> Case {
    (vec![a.into(), b.into()], out.into())
}
pub(crate) fn case3(
    a: impl Into<Py>,
    b: impl Into<Py>,
    c: impl Into<Py>,
    out: impl Into<Py>,
) -> Case {
    (vec![a.into(), b.into(), c.into()], out.into())
}

/// What a template produces. Cases come typical-first: the docstring shows the first one or two,
/// so edge cases (empty, zero, negative) go last.
pub(crate) struct Task {
    pub name: &'static str,
    pub params: Vec<(&'static str, &'static str)>,
    pub ret: &'static str,
    pub doc: String,
    /// The function body, every line indented by 4 spaces, ending in a newline.
    pub body: String,
    pub cases: Vec<Case>,
}

/// The HumanEval strings of a task, or `None` when too few distinct cases survive.
pub(crate) struct Rendered {
    pub prompt: String,
    pub solution: String,
    pub test: String,
}

pub(crate) fn render(
    task: Task,
    family: &str,
    template: &str,
    n_examples: usize,
) -> Option<Rendered> {
    let mut seen = HashSet::new();
    let cases: Vec<(String, String)> = task
        .cases
        .iter()
        .map(|(args, out)| (join(args), out.to_string()))
        .filter(|(args, _)| seen.insert(args.clone()))
        .collect();
    if cases.len() < MIN_ASSERTS {
        return None;
    }
    let types: String = task
        .params
        .iter()
        .map(|(_, t)| *t)
        .chain([task.ret])
        .collect();
    let typing: Vec<&str> = ["List", "Tuple"]
        .into_iter()
        .filter(|t| types.contains(&format!("{t}[")))
        .collect();
    let mut prompt = String::new();
    if !typing.is_empty() {
        prompt.push_str(&format!("from typing import {}\n\n\n", typing.join(", ")));
    }
    let params: Vec<String> = task
        .params
        .iter()
        .map(|(n, t)| format!("{n}: {t}"))
        .collect();
    prompt.push_str(&format!(
        "def {}({}) -> {}:\n",
        task.name,
        params.join(", "),
        task.ret
    ));
    let doc = wrap(&task.doc, 84).join("\n    ");
    prompt.push_str(&format!("    \"\"\"{doc}\n"));
    for (args, out) in cases.iter().take(n_examples) {
        prompt.push_str(&format!("    >>> {}({args})\n    {out}\n", task.name));
    }
    prompt.push_str("    \"\"\"\n");

    let mut test = format!(
        "\n\nMETADATA = {{\n    'author': 'anvil',\n    'dataset': 'AnvilSynth',\n    \
         'family': '{family}',\n    'template': '{template}'\n}}\n\n\ndef check(candidate):\n"
    );
    for (args, out) in &cases {
        test.push_str(&format!("    assert candidate({args}) == {out}\n"));
    }
    Some(Rendered {
        prompt,
        solution: task.body,
        test,
    })
}

/// Greedy word wrap; docstrings stay readable without the model having to learn long lines.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("non-empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// A function body from code written at column 0 (a leading newline is dropped), so templates
/// can show their Python as it reads.
pub(crate) fn indent(code: &str) -> String {
    let code = code.strip_prefix('\n').unwrap_or(code);
    code.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("    {l}\n")
            }
        })
        .collect()
}

/// " + 4" / " - 4": how a signed constant reads after an expression, in code and in prose.
pub(crate) fn signed(c: i64) -> String {
    if c < 0 {
        format!(" - {}", -c)
    } else {
        format!(" + {c}")
    }
}

/// "plus 4" / "minus 4".
pub(crate) fn plus_minus(c: i64) -> String {
    if c < 0 {
        format!("minus {}", -c)
    } else {
        format!("plus {c}")
    }
}

/// "increased by 4" / "decreased by 4".
pub(crate) fn shift_words(c: i64) -> String {
    if c < 0 {
        format!("decreased by {}", -c)
    } else {
        format!("increased by {c}")
    }
}

/// Python's `a // b` (floor division) for any sign of `b != 0`.
pub(crate) fn floordiv(a: i64, b: i64) -> i64 {
    let q = a / b;
    if a % b != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

/// Python's `a % b` (result has the sign of `b`).
pub(crate) fn pymod(a: i64, b: i64) -> i64 {
    a - b * floordiv(a, b)
}
