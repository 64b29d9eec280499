//! Python literals as `ast` holds them: string literals decoded (escapes, raw strings,
//! implicit concatenation, the literal parts of f-strings), numbers, and the values Bandit's
//! `Context` reads out of call arguments.

use super::python_ast::{NodeExt, kids, unparen};
use crate::source::Source;
use tree_sitter::Node;

/// What a string literal (or an implicit concatenation of them) is in `ast`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum StrLit {
    /// `Constant(str)`.
    Str(String),
    /// `Constant(bytes)`.
    Bytes(Vec<u8>),
    /// `JoinedStr`: its literal parts, merged across pieces and `{{` escapes as CPython 3.11
    /// merges them, empty ones dropped.
    Joined(Vec<String>),
}

struct Prefix {
    raw: bool,
    bytes: bool,
    fmt: bool,
}

fn prefix_of(src: &Source, piece: Node) -> Prefix {
    let start = piece.child(0).filter(|c| c.kind_name() == "string_start");
    let text = start.map(|s| src.text_of(s)).unwrap_or("");
    let p = text.trim_end_matches(['"', '\'']);
    let has = |c: char| p.chars().any(|x| x.eq_ignore_ascii_case(&c));
    Prefix {
        raw: has('r'),
        bytes: has('b'),
        fmt: has('f') || has('t'),
    }
}

/// The value of a `string` or `concatenated_string` node; `None` for anything else or for
/// mixes Python rejects (bytes with str).
pub(super) fn string_literal(src: &Source, n: Node) -> Option<StrLit> {
    if n.kind_name() == "string" {
        let p = prefix_of(src, n);
        if !p.fmt {
            let mut s = String::new();
            decode(content(src, n), p.raw, p.bytes, false, &mut s);
            return Some(if p.bytes {
                StrLit::Bytes(s.chars().map(|c| u32::from(c) as u8).collect())
            } else {
                StrLit::Str(s)
            });
        }
    }
    let pieces: Vec<Node> = match n.kind_name() {
        "string" => vec![n],
        "concatenated_string" => kids(n)
            .into_iter()
            .filter(|c| c.kind_name() == "string")
            .collect(),
        _ => return None,
    };
    let prefixes: Vec<Prefix> = pieces.iter().map(|&p| prefix_of(src, p)).collect();
    let any_bytes = prefixes.iter().any(|p| p.bytes);
    if any_bytes {
        if !prefixes.iter().all(|p| p.bytes) {
            return None;
        }
        let mut s = String::new();
        for (&piece, p) in pieces.iter().zip(&prefixes) {
            decode(content(src, piece), p.raw, true, false, &mut s);
        }
        // Bytes decode to chars U+0000..=U+00FF, one per byte.
        return Some(StrLit::Bytes(
            s.chars().map(|c| u32::from(c) as u8).collect(),
        ));
    }
    if !prefixes.iter().any(|p| p.fmt) {
        let mut s = String::new();
        for (&piece, p) in pieces.iter().zip(&prefixes) {
            decode(content(src, piece), p.raw, false, false, &mut s);
        }
        return Some(StrLit::Str(s));
    }
    let mut parts = Vec::new();
    let mut cur = String::new();
    for (&piece, p) in pieces.iter().zip(&prefixes) {
        if !p.fmt {
            decode(content(src, piece), p.raw, false, false, &mut cur);
            continue;
        }
        let (start, end) = content_range(piece);
        let mut pos = start;
        for c in kids(piece) {
            if c.kind_name() != "interpolation" {
                continue;
            }
            let text = src.text.get(pos..c.start_byte()).unwrap_or("");
            decode(text, p.raw, false, true, &mut cur);
            if let Some(t) = self_documenting_text(src, c) {
                cur.push_str(t);
            }
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            pos = c.end_byte();
        }
        let text = src.text.get(pos.min(end)..end).unwrap_or("");
        decode(text, p.raw, false, true, &mut cur);
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    Some(StrLit::Joined(parts))
}

/// `f"{x = }"` puts the text `x = ` in the string as a literal part.
fn self_documenting_text<'s>(src: &'s Source, interp: Node) -> Option<&'s str> {
    let mut cursor = interp.walk();
    let children: Vec<Node> = interp.children(&mut cursor).collect();
    children
        .iter()
        .find(|c| !c.is_named() && c.kind_name() == "=")?;
    let end = children
        .iter()
        .find(|c| {
            matches!(c.kind_name(), "type_conversion" | "format_specifier")
                || (!c.is_named() && c.kind_name() == "}")
        })
        .map(|c| c.start_byte())?;
    src.text.get(interp.start_byte() + 1..end)
}

fn content_range(piece: Node) -> (usize, usize) {
    let n = piece.child_count();
    let start = piece
        .child(0)
        .filter(|c| c.kind_name() == "string_start")
        .map_or(piece.start_byte(), |c| c.end_byte());
    let end = n
        .checked_sub(1)
        .and_then(|i| piece.child(i))
        .filter(|c| c.kind_name() == "string_end")
        .map_or(piece.end_byte(), |c| c.start_byte());
    (start, end.max(start))
}

fn content<'s>(src: &'s Source, piece: Node) -> &'s str {
    let (start, end) = content_range(piece);
    src.text.get(start..end).unwrap_or("")
}

/// Python's escape processing for one literal segment. Bytes come out as chars U+0000..=U+00FF.
/// `\N{name}` needs Unicode's name table, which this crate does not carry: it decodes to U+FFFD.
fn decode(text: &str, raw: bool, bytes: bool, fmt: bool, out: &mut String) {
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            // The tokenizer reads `\r\n` and lone `\r` as `\n`, inside strings too.
            '\r' => {
                if it.peek() == Some(&'\n') {
                    it.next();
                }
                out.push('\n');
            }
            '{' | '}' if fmt && it.peek() == Some(&c) => {
                it.next();
                out.push(c);
            }
            '\\' if !raw => escape(&mut it, bytes, out),
            '\\' => {
                // A raw string keeps the backslash, and the quote or newline after it.
                out.push('\\');
                if let Some(&n) = it.peek() {
                    it.next();
                    if n == '\r' {
                        if it.peek() == Some(&'\n') {
                            it.next();
                        }
                        out.push('\n');
                    } else {
                        out.push(n);
                    }
                }
            }
            _ => out.push(c),
        }
    }
}

fn escape(it: &mut std::iter::Peekable<std::str::Chars>, bytes: bool, out: &mut String) {
    let Some(c) = it.next() else {
        out.push('\\');
        return;
    };
    let simple = match c {
        '\n' => return,
        '\r' => {
            if it.peek() == Some(&'\n') {
                it.next();
            }
            return;
        }
        '\\' => Some('\\'),
        '\'' => Some('\''),
        '"' => Some('"'),
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        _ => None,
    };
    if let Some(s) = simple {
        out.push(s);
        return;
    }
    let hex = |it: &mut std::iter::Peekable<std::str::Chars>, n: usize| -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = it.peek()?.to_digit(16)?;
            it.next();
            v = v.checked_mul(16)?.checked_add(d)?;
        }
        Some(v)
    };
    match c {
        '0'..='7' => {
            let mut v = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match it.peek().and_then(|d| d.to_digit(8)) {
                    Some(d) => {
                        it.next();
                        v = v * 8 + d;
                    }
                    None => break,
                }
            }
            let v = if bytes { v & 0xff } else { v };
            out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
        }
        'x' => match hex(it, 2) {
            Some(v) => out.push(char::from_u32(v).unwrap_or('\u{fffd}')),
            None => out.push_str("\\x"),
        },
        'u' | 'U' if !bytes => {
            let n = if c == 'u' { 4 } else { 8 };
            match hex(it, n) {
                Some(v) => out.push(char::from_u32(v).unwrap_or('\u{fffd}')),
                None => {
                    out.push('\\');
                    out.push(c);
                }
            }
        }
        'N' if !bytes && it.peek() == Some(&'{') => {
            for d in it.by_ref() {
                if d == '}' {
                    break;
                }
            }
            out.push('\u{fffd}');
        }
        _ => {
            out.push('\\');
            out.push(c);
        }
    }
}

/// A Python value as Bandit's `Context._get_literal_value` returns it: `True`, `False` and
/// `None` become the strings `"True"`, `"False"`, `"None"`, a bare name becomes its
/// identifier, and anything that is not a literal is `Absent` (Python's `None`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Str(String),
    Bytes(Vec<u8>),
    /// Saturates past `i128`: Python's ints are unbounded, and no rule looks at such values.
    Int(i128),
    Float(f64),
    Complex(f64, f64),
    Ellipsis,
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Set(Vec<Value>),
    /// Bandit keeps a dict's AST nodes, which no rule compares: only its size matters.
    Dict(usize),
    Absent,
}

impl Value {
    pub(super) fn is_absent(&self) -> bool {
        matches!(self, Value::Absent)
    }

    /// Python's truth value.
    pub(super) fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Bytes(b) => !b.is_empty(),
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Complex(r, i) => *r != 0.0 || *i != 0.0,
            Value::Ellipsis => true,
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => !v.is_empty(),
            Value::Dict(n) => *n > 0,
            Value::Absent => false,
        }
    }

    /// Python's `==` between the values rules compare (numbers compare across types).
    pub(super) fn py_eq(&self, other: &Value) -> bool {
        use Value::*;
        let num = |v: &Value| match v {
            Int(i) => Some((*i as f64, 0.0)),
            Float(f) => Some((*f, 0.0)),
            Complex(r, i) => Some((*r, *i)),
            _ => None,
        };
        match (self, other) {
            (Int(a), Int(b)) => a == b,
            (Str(a), Str(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Ellipsis, Ellipsis) => true,
            (List(a), List(b)) | (Tuple(a), Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.py_eq(y))
            }
            _ => match (num(self), num(other)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }

    /// Python's `str()`, for messages that interpolate values.
    pub(super) fn py_str(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            _ => self.py_repr(),
        }
    }

    /// Python's `repr()`, close enough for messages (floats print as Rust prints them).
    pub(super) fn py_repr(&self) -> String {
        let seq = |v: &[Value]| v.iter().map(Value::py_repr).collect::<Vec<_>>().join(", ");
        match self {
            Value::Str(s) => repr_str(s),
            Value::Bytes(b) => repr_bytes(b),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => float_repr(*f),
            Value::Complex(r, i) if *r == 0.0 => format!("{}j", float_repr(*i)),
            Value::Complex(r, i) => format!("({}+{}j)", float_repr(*r), float_repr(*i)),
            Value::Ellipsis => "Ellipsis".into(),
            Value::List(v) => format!("[{}]", seq(v)),
            Value::Tuple(v) if v.len() == 1 => format!("({},)", seq(v)),
            Value::Tuple(v) => format!("({})", seq(v)),
            Value::Set(v) if v.is_empty() => "set()".into(),
            Value::Set(v) => format!("{{{}}}", seq(v)),
            Value::Dict(_) => "{...}".into(),
            Value::Absent => "None".into(),
        }
    }
}

fn float_repr(f: f64) -> String {
    if f.is_finite() && f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Python's `repr` of a str: single quotes unless the text has one and no double quote.
pub(super) fn repr_str(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

fn repr_bytes(b: &[u8]) -> String {
    let q = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from("b");
    out.push(q);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c as char == q => {
                out.push('\\');
                out.push(q);
            }
            0x20..=0x7e => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(q);
    out
}

fn number(text: &str, float: bool) -> Value {
    let t: String = text.chars().filter(|&c| c != '_').collect();
    let t = t.to_ascii_lowercase();
    if let Some(im) = t.strip_suffix('j') {
        return Value::Complex(0.0, im.parse().unwrap_or(0.0));
    }
    if float {
        return Value::Float(t.parse().unwrap_or(0.0));
    }
    let (digits, radix) = if let Some(d) = t.strip_prefix("0x") {
        (d, 16)
    } else if let Some(d) = t.strip_prefix("0o") {
        (d, 8)
    } else if let Some(d) = t.strip_prefix("0b") {
        (d, 2)
    } else {
        (t.as_str(), 10)
    };
    let mut v: i128 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix).unwrap_or(0);
        v = v.saturating_mul(radix as i128).saturating_add(d as i128);
    }
    Value::Int(v)
}

/// The `ast.Constant` a node is, if it is one; `Str`/`Bytes` for string literals (f-strings
/// are not constants). Booleans and `None` come back as Bandit's strings.
pub(super) fn constant(src: &Source, n: Node) -> Option<Value> {
    let n = unparen(n);
    Some(match n.kind_name() {
        "string" | "concatenated_string" => match string_literal(src, n)? {
            StrLit::Str(s) => Value::Str(s),
            StrLit::Bytes(b) => Value::Bytes(b),
            StrLit::Joined(_) => return None,
        },
        "integer" => number(src.text_of(n), false),
        "float" => number(src.text_of(n), true),
        "true" => Value::Str("True".into()),
        "false" => Value::Str("False".into()),
        "none" => Value::Str("None".into()),
        "ellipsis" => Value::Ellipsis,
        _ => return None,
    })
}

/// The node's string value if it is a `Constant(str)`.
pub(super) fn str_constant(src: &Source, n: Node) -> Option<String> {
    let n = unparen(n);
    match n.kind_name() {
        "string" | "concatenated_string" => match string_literal(src, n)? {
            StrLit::Str(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the node is a `Constant` of any type (`None`, numbers, strings, bytes, `...`).
pub(super) fn is_constant(src: &Source, n: Node) -> bool {
    constant(src, n).is_some()
}

/// Bandit's `Context._get_literal_value`.
pub(super) fn literal(src: &Source, n: Node) -> Value {
    let n = unparen(n);
    let items = |n: Node| kids(n).into_iter().map(|c| literal(src, c)).collect();
    match n.kind_name() {
        "list" => Value::List(items(n)),
        "tuple" | "expression_list" => Value::Tuple(items(n)),
        "set" => Value::Set(items(n)),
        "dictionary" => Value::Dict(kids(n).len()),
        "identifier" => Value::Str(src.text_of(n).to_string()),
        _ => constant(src, n).unwrap_or(Value::Absent),
    }
}

/// How Bandit reads a call argument (`call_args`, `call_keywords`,
/// `get_call_arg_at_position`): an attribute is its last name, anything else its literal.
pub(super) fn arg_value(src: &Source, n: Node) -> Value {
    let n = unparen(n);
    if n.kind_name() == "attribute"
        && let Some(a) = n.field("attribute")
    {
        return Value::Str(src.text_of(a).to_string());
    }
    literal(src, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(code: &str) -> Option<StrLit> {
        let src = Source::python(code.as_bytes()).unwrap();
        let root = src.tree.root_node();
        let stmt = kids(root)[0];
        let e = kids(stmt)[0];
        let e = if e.kind_name() == "assignment" {
            e.field("right").unwrap()
        } else {
            e
        };
        string_literal(&src, e)
    }

    #[test]
    fn strings_decode_like_python() {
        let s = |x: &str| Some(StrLit::Str(x.to_string()));
        assert_eq!(lit(r#"x = "a\x41\n\101\u00e9\q""#), s("aA\nAé\\q"));
        assert_eq!(lit(r#"x = r"a\d" 'b'"#), s("a\\db"));
        assert_eq!(lit("x = 'a\\\nb'"), s("ab"));
        assert_eq!(
            lit(r#"x = b"\x00\xff" rb'\d'"#),
            Some(StrLit::Bytes(vec![0, 255, b'\\', b'd']))
        );
        let j = |v: &[&str]| Some(StrLit::Joined(v.iter().map(|x| x.to_string()).collect()));
        assert_eq!(
            lit(r#"x = f"abc{y}def" "q" f"{z=}{{w}}""#),
            j(&["abc", "defqz=", "{w}"])
        );
        assert_eq!(lit(r#"x = f"" "" f"{a}""#), j(&[]));
        assert_eq!(lit(r#"x = f"{a = !r:>10}""#), j(&["a = "]));
    }

    #[test]
    fn values_print_like_python() {
        assert_eq!(Value::Str("it's".into()).py_repr(), "\"it's\"");
        assert_eq!(
            Value::List(vec![Value::Str("a".into()), Value::Int(3)]).py_repr(),
            "['a', 3]"
        );
        assert_eq!(Value::Bytes(b"a\x00".to_vec()).py_repr(), "b'a\\x00'");
        assert_eq!(Value::Float(1.0).py_repr(), "1.0");
        assert!(Value::Int(0).py_eq(&Value::Float(0.0)));
        assert!(!Value::Str("0".into()).py_eq(&Value::Int(0)));
    }
}
