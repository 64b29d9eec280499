//! Values of Python literals as the AST holds them (`ast.Constant.value`): radon's Halstead
//! operands compare by value (`'a' 'b'` is the operand `'ab'`, `1 == 1.0 == True`), and
//! pyflakes reads `__all__` entries and string annotations from string values.

use super::flat::Nd;
use std::borrow::Cow;

/// The value of a `string` or `concatenated_string` node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StrValue<'s> {
    Str(Cow<'s, str>),
    Bytes(Vec<u8>),
    /// An f-string (`ast.JoinedStr`), or parts that do not concatenate (invalid code).
    Formatted,
}

/// The value of a string literal node; `None` for other nodes.
pub(crate) fn string_value(node: Nd<'_>) -> Option<StrValue<'_>> {
    match node.kind() {
        "string" => Some(single(node)),
        "concatenated_string" => {
            let mut parts = node
                .real_children()
                .filter(|n| n.kind() == "string")
                .map(single);
            let mut acc = parts.next()?;
            for part in parts {
                acc = match (acc, part) {
                    (StrValue::Str(a), StrValue::Str(b)) => {
                        StrValue::Str(Cow::Owned(a.into_owned() + &b))
                    }
                    (StrValue::Bytes(mut a), StrValue::Bytes(b)) => {
                        a.extend_from_slice(&b);
                        StrValue::Bytes(a)
                    }
                    _ => StrValue::Formatted,
                };
            }
            Some(acc)
        }
        _ => None,
    }
}

/// One `string` node: prefix from `string_start`, body between the quotes.
fn single(node: Nd<'_>) -> StrValue<'_> {
    let mut start = None;
    let mut end = None;
    for child in node.children() {
        match child.kind() {
            "string_start" => start = Some(child),
            "string_end" => end = Some(child),
            _ => {}
        }
    }
    let (Some(start), Some(end)) = (start, end) else {
        return StrValue::Formatted;
    };
    let opening = start.text();
    let prefix: String = opening
        .chars()
        .take_while(|c| *c != '\'' && *c != '"')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if prefix.contains('f') || prefix.contains('t') {
        return StrValue::Formatted;
    }
    let text = node.text();
    let body = text
        .get(opening.len()..text.len().saturating_sub(end.text().len()))
        .unwrap_or("");
    let raw = prefix.contains('r');
    if prefix.contains('b') {
        StrValue::Bytes(unescape_bytes(body, raw))
    } else {
        StrValue::Str(unescape_str(body, raw))
    }
}

/// A str literal's body with escapes resolved (and `\r\n` read as `\n`, as Python reads source).
/// `\N{…}` is kept as written: resolving it needs the Unicode name table, and the text stays a
/// faithful key for equal literals.
pub(crate) fn unescape_str(body: &str, raw: bool) -> Cow<'_, str> {
    if !body.contains('\\') && !body.contains('\r') {
        return Cow::Borrowed(body);
    }
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            if chars.peek() != Some(&'\n') {
                out.push('\n');
            }
            continue;
        }
        if c != '\\' || raw {
            out.push(c);
            if c == '\\' {
                // In a raw string a backslash still keeps the next quote or backslash inside.
                if let Some(&n) = chars.peek() {
                    if n == '\r' {
                        continue;
                    }
                    out.push(n);
                    chars.next();
                }
            }
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        match e {
            '\n' => {}
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
            }
            '\\' | '\'' | '"' => out.push(e),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let digits: String = chars.clone().take(n).collect();
                match u32::from_str_radix(&digits, 16)
                    .ok()
                    .filter(|_| digits.len() == n)
                    .and_then(char::from_u32)
                {
                    Some(ch) => {
                        out.push(ch);
                        for _ in 0..n {
                            chars.next();
                        }
                    }
                    None => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Cow::Owned(out)
}

/// A bytes literal's body with escapes resolved.
fn unescape_bytes(body: &str, raw: bool) -> Vec<u8> {
    if raw || !body.contains('\\') {
        return body.replace("\r\n", "\n").into_bytes();
    }
    let b = body.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c != b'\\' || i + 1 >= b.len() {
            if !(c == b'\r' && b.get(i + 1) == Some(&b'\n')) {
                out.push(if c == b'\r' { b'\n' } else { c });
            }
            i += 1;
            continue;
        }
        let e = b[i + 1];
        i += 2;
        match e {
            b'\n' => {}
            b'\r' => {
                if b.get(i) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match b.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => match b
                .get(i..i + 2)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.extend_from_slice(b"\\x"),
            },
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    out
}

/// A number as Python compares it: ints, integral floats, `True`/`False` and `0j` are equal when
/// their values are (`1 == 1.0 == True`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Number {
    Int(i128),
    /// Integers past i128, as canonical decimal digits.
    BigInt(String),
    /// A float that is not integral (bits of the f64).
    Float(u64),
    /// `xj` with x ≠ 0 (bits of the imaginary part).
    Imaginary(u64),
}

/// The value of an `integer` or `float` node's text.
pub(crate) fn number_value(literal: &str) -> Option<Number> {
    let t: String = literal.chars().filter(|c| *c != '_').collect();
    let lower = t.to_ascii_lowercase();
    if let Some(imag) = lower.strip_suffix('j') {
        let v: f64 = imag.parse().ok()?;
        return Some(if v == 0.0 {
            Number::Int(0)
        } else {
            Number::Imaginary(v.to_bits())
        });
    }
    let lower = lower.trim_end_matches('l');
    let radix = match lower.get(..2) {
        Some("0x") => Some(16),
        Some("0o") => Some(8),
        Some("0b") => Some(2),
        _ => None,
    };
    if let Some(radix) = radix {
        return match i128::from_str_radix(&lower[2..], radix) {
            Ok(v) => Some(Number::Int(v)),
            Err(_) => Some(Number::BigInt(lower.to_string())),
        };
    }
    if lower.bytes().all(|b| b.is_ascii_digit()) {
        return match lower.parse::<i128>() {
            Ok(v) => Some(Number::Int(v)),
            Err(_) => Some(Number::BigInt(lower.trim_start_matches('0').to_string())),
        };
    }
    let v: f64 = lower.parse().ok()?;
    Some(float_number(v))
}

fn float_number(v: f64) -> Number {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1.0e38 {
        Number::Int(v as i128)
    } else {
        Number::Float(v.to_bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_resolve_like_python() {
        assert_eq!(
            unescape_str(r"a\x41\n\101\u00e9\q", false),
            "aA\nA\u{e9}\\q"
        );
        assert_eq!(unescape_str(r"a\nb", true), r"a\nb");
        assert_eq!(unescape_bytes(r"\x00\n", false), vec![0, b'\n']);
    }

    #[test]
    fn numbers_compare_like_python() {
        assert_eq!(number_value("1"), number_value("1.0"));
        assert_eq!(number_value("0x10"), number_value("16"));
        assert_eq!(number_value("1_000"), number_value("1e3"));
        assert_eq!(number_value("0j"), number_value("0"));
        assert_ne!(number_value("1j"), number_value("1"));
        assert_ne!(number_value("1.5"), number_value("1"));
        assert_eq!(number_value(".5"), number_value("0.5"));
        assert_eq!(number_value("5."), number_value("5"));
    }
}
