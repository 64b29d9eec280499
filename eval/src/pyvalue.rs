//! Python values that cross the sandbox boundary, and Python's equality rules for them.
//!
//! The harness inside the sandbox serializes a candidate's return value with a strict encoder
//! that accepts only exact built-in types (`type(v) is int`, never a subclass), so an object whose
//! `__eq__` always says True cannot pass: it fails to serialize. Comparison then happens here, in
//! Rust, following Python's `==` for built-ins: numbers compare across int/float/bool/complex,
//! list ≠ tuple, set == frozenset, dict keys match by equality, NaN ≠ NaN.

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone)]
pub enum PyValue {
    None,
    Bool(bool),
    /// Decimal digits with optional sign: Python ints are unbounded.
    Int(String),
    Float(f64),
    Complex(f64, f64),
    /// UTF-8 bytes (lone surrogates encoded with `surrogatepass`).
    Str(Vec<u8>),
    Bytes(Vec<u8>),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    Set(Vec<PyValue>),
    FrozenSet(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
}

#[derive(Debug, thiserror::Error)]
#[error("malformed value encoding: {0}")]
pub struct DecodeError(String);

fn bad(s: impl Into<String>) -> DecodeError {
    DecodeError(s.into())
}

fn hex(s: &str) -> Result<Vec<u8>, DecodeError> {
    // Bytes, not chars: the text comes from the sample's process and may be anything.
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(bad("odd hex length"));
    }
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| bad("bad hex"))
    };
    b.chunks(2)
        .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

fn parse_float(s: &str) -> Result<f64, DecodeError> {
    match s {
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| bad(format!("bad float {s}"))),
    }
}

impl PyValue {
    /// Decode the harness's tagged JSON (`{"t": "int", "v": "12"}`, …).
    pub fn from_json(v: &Value) -> Result<PyValue, DecodeError> {
        let t = v
            .get("t")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing tag"))?;
        let val = v.get("v");
        let s = || {
            val.and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{t}: expected string")))
        };
        let items = || -> Result<Vec<PyValue>, DecodeError> {
            val.and_then(Value::as_array)
                .ok_or_else(|| bad(format!("{t}: expected array")))?
                .iter()
                .map(PyValue::from_json)
                .collect()
        };
        Ok(match t {
            "none" => PyValue::None,
            "bool" => PyValue::Bool(val.and_then(Value::as_bool).ok_or_else(|| bad("bool"))?),
            "int" => {
                let d = s()?;
                let digits = d.strip_prefix('-').unwrap_or(d);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(format!("bad int {d}")));
                }
                PyValue::Int(normalize_int(d))
            }
            "float" => PyValue::Float(parse_float(s()?)?),
            "complex" => {
                let parts = val
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("complex"))?;
                let f = |i: usize| {
                    parts
                        .get(i)
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("complex part"))
                        .and_then(parse_float)
                };
                PyValue::Complex(f(0)?, f(1)?)
            }
            "str" => PyValue::Str(s()?.as_bytes().to_vec()),
            "strx" => PyValue::Str(hex(s()?)?),
            "bytes" => PyValue::Bytes(hex(s()?)?),
            "list" => PyValue::List(items()?),
            "tuple" => PyValue::Tuple(items()?),
            "set" => PyValue::Set(items()?),
            "frozenset" => PyValue::FrozenSet(items()?),
            "dict" => {
                let pairs = val.and_then(Value::as_array).ok_or_else(|| bad("dict"))?;
                let mut out = Vec::with_capacity(pairs.len());
                for p in pairs {
                    let kv = p
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or_else(|| bad("dict pair"))?;
                    out.push((PyValue::from_json(&kv[0])?, PyValue::from_json(&kv[1])?));
                }
                PyValue::Dict(out)
            }
            other => return Err(bad(format!("unknown tag {other}"))),
        })
    }

    /// The value as a number, for numeric comparison (`True == 1 == 1.0`).
    fn number(&self) -> Option<Num<'_>> {
        match self {
            PyValue::Bool(b) => Some(Num::Int(if *b { "1" } else { "0" })),
            PyValue::Int(s) => Some(Num::Int(s)),
            PyValue::Float(f) => Some(Num::Float(*f)),
            PyValue::Complex(re, im) => Some(Num::Complex(*re, *im)),
            _ => None,
        }
    }

    /// The decimal digits of an int (bools count: `True - 1 == 0`), for exact int arithmetic.
    pub fn as_int(&self) -> Option<&str> {
        match self.number()? {
            Num::Int(s) => Some(s),
            _ => None,
        }
    }

    /// A real number as f64 (for tolerance checks); `None` for non-numbers and complex.
    pub fn as_f64(&self) -> Option<f64> {
        match self.number()? {
            Num::Int(s) => s.parse().ok(),
            Num::Float(f) => Some(f),
            Num::Complex(..) => None,
        }
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            PyValue::None => false,
            PyValue::Bool(b) => *b,
            PyValue::Int(s) => s != "0",
            PyValue::Float(f) => *f != 0.0,
            PyValue::Complex(re, im) => *re != 0.0 || *im != 0.0,
            PyValue::Str(b) | PyValue::Bytes(b) => !b.is_empty(),
            PyValue::List(v) | PyValue::Tuple(v) | PyValue::Set(v) | PyValue::FrozenSet(v) => {
                !v.is_empty()
            }
            PyValue::Dict(v) => !v.is_empty(),
        }
    }

    /// `a == b` with Python's rules for built-in values.
    pub fn py_eq(&self, other: &PyValue) -> bool {
        use PyValue::*;
        if let (Some(a), Some(b)) = (self.number(), other.number()) {
            return num_eq(a, b);
        }
        match (self, other) {
            (None, None) => true,
            (Str(a), Str(b)) | (Bytes(a), Bytes(b)) => a == b,
            (List(a), List(b)) | (Tuple(a), Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.py_eq(y))
            }
            // One-to-one matching: a real set or dict has no duplicates, but a forged report can,
            // and "every element has some match" would let {1, 1, 1} equal {1, 2, 3}.
            (Set(a) | FrozenSet(a), Set(b) | FrozenSet(b)) => {
                a.len() == b.len() && bijection(a, b, |x, y| x.py_eq(y))
            }
            (Dict(a), Dict(b)) => {
                a.len() == b.len() && bijection(a, b, |(k, v), (k2, v2)| k.py_eq(k2) && v.py_eq(v2))
            }
            _ => false,
        }
    }
}

/// Whether every element of `a` pairs with a distinct element of `b` (same lengths assumed).
fn bijection<T>(a: &[T], b: &[T], eq: impl Fn(&T, &T) -> bool) -> bool {
    let mut used = vec![false; b.len()];
    a.iter()
        .all(|x| match (0..b.len()).find(|&j| !used[j] && eq(x, &b[j])) {
            Some(j) => {
                used[j] = true;
                true
            }
            None => false,
        })
}

/// |a − b| for two decimal integers, exactly (Python ints are unbounded), as a decimal string.
pub fn int_abs_diff(a: &str, b: &str) -> String {
    let (na, da) = (a.starts_with('-'), a.trim_start_matches('-'));
    let (nb, db) = (b.starts_with('-'), b.trim_start_matches('-'));
    let digits = |s: &str| -> Vec<u8> { s.bytes().rev().map(|c| c - b'0').collect() };
    let (x, y) = (digits(da), digits(db));
    let add = |x: &[u8], y: &[u8]| {
        let mut out = Vec::new();
        let mut carry = 0;
        for i in 0..x.len().max(y.len()) {
            let s = x.get(i).unwrap_or(&0) + y.get(i).unwrap_or(&0) + carry;
            out.push(s % 10);
            carry = s / 10;
        }
        if carry > 0 {
            out.push(carry);
        }
        out
    };
    let ge = |x: &[u8], y: &[u8]| {
        let (lx, ly) = (
            x.iter().rposition(|&d| d != 0).map_or(0, |i| i + 1),
            y.iter().rposition(|&d| d != 0).map_or(0, |i| i + 1),
        );
        if lx != ly {
            return lx > ly;
        }
        (0..lx)
            .rev()
            .find(|&i| x[i] != y[i])
            .is_none_or(|i| x[i] > y[i])
    };
    let sub = |x: &[u8], y: &[u8]| {
        let mut out = Vec::new();
        let mut borrow = 0i8;
        for (i, &xd) in x.iter().enumerate() {
            let mut d = xd as i8 - *y.get(i).unwrap_or(&0) as i8 - borrow;
            borrow = (d < 0) as i8;
            if d < 0 {
                d += 10;
            }
            out.push(d as u8);
        }
        out
    };
    let mag = if na != nb {
        add(&x, &y)
    } else if ge(&x, &y) {
        sub(&x, &y)
    } else {
        sub(&y, &x)
    };
    let s: String = mag.iter().rev().map(|d| (b'0' + d) as char).collect();
    normalize_int(&s)
}

#[derive(Clone, Copy)]
enum Num<'a> {
    Int(&'a str),
    Float(f64),
    Complex(f64, f64),
}

fn normalize_int(s: &str) -> String {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        "0".into()
    } else if neg {
        format!("-{digits}")
    } else {
        digits.to_string()
    }
}

/// Python compares int and float exactly (not by rounding the int): 2**53 + 1 != 2.0**53.
fn int_eq_float(i: &str, f: f64) -> bool {
    if !f.is_finite() || f.fract() != 0.0 {
        return false;
    }
    // An integral f64 prints exactly with {:.0}.
    normalize_int(&format!("{f:.0}")) == i
}

fn num_eq(a: Num, b: Num) -> bool {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x == y,
        (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => int_eq_float(i, f),
        (Num::Float(x), Num::Float(y)) => x == y,
        (Num::Complex(re, im), other) | (other, Num::Complex(re, im)) => match other {
            Num::Complex(re2, im2) => re == re2 && im == im2,
            Num::Int(i) => im == 0.0 && int_eq_float(i, re),
            Num::Float(f) => im == 0.0 && re == f,
        },
    }
}

fn write_str_repr(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
    let s = String::from_utf8_lossy(b);
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    write!(f, "{q}")?;
    for ch in s.chars() {
        match ch {
            '\\' => write!(f, "\\\\")?,
            '\n' => write!(f, "\\n")?,
            '\t' => write!(f, "\\t")?,
            '\r' => write!(f, "\\r")?,
            c if c == q => write!(f, "\\{c}")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    write!(f, "{q}")
}

fn fmt_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Roughly Python's `repr`, for verdict messages.
impl fmt::Display for PyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |f: &mut fmt::Formatter<'_>,
                   open: &str,
                   items: &[PyValue],
                   close: &str|
         -> fmt::Result {
            write!(f, "{open}")?;
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{it}")?;
            }
            if open == "(" && items.len() == 1 {
                write!(f, ",")?;
            }
            write!(f, "{close}")
        };
        match self {
            PyValue::None => write!(f, "None"),
            PyValue::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
            PyValue::Int(s) => write!(f, "{s}"),
            PyValue::Float(x) => write!(f, "{}", fmt_float(*x)),
            PyValue::Complex(re, im) => write!(f, "({}{:+}j)", fmt_float(*re), im),
            PyValue::Str(b) => write_str_repr(f, b),
            PyValue::Bytes(b) => {
                write!(f, "b")?;
                write_str_repr(f, b)
            }
            PyValue::List(v) => seq(f, "[", v, "]"),
            PyValue::Tuple(v) => seq(f, "(", v, ")"),
            PyValue::Set(v) if v.is_empty() => write!(f, "set()"),
            PyValue::Set(v) => seq(f, "{", v, "}"),
            PyValue::FrozenSet(v) => {
                write!(f, "frozenset(")?;
                seq(f, "{", v, "}")?;
                write!(f, ")")
            }
            PyValue::Dict(v) => {
                write!(f, "{{")?;
                for (i, (k, val)) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {val}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PyValue::*;
    use super::*;

    fn i(s: &str) -> PyValue {
        Int(s.into())
    }
    fn st(s: &str) -> PyValue {
        Str(s.as_bytes().to_vec())
    }

    #[test]
    fn python_equality_rules() {
        assert!(
            i("1").py_eq(&Float(1.0))
                && Bool(true).py_eq(&i("1"))
                && Bool(false).py_eq(&Float(0.0))
        );
        assert!(!i("1").py_eq(&Float(1.5)) && !i("1").py_eq(&st("1")));
        // exact int/float comparison, like Python: 2**53 + 1 != float(2**53)
        assert!(!i("9007199254740993").py_eq(&Float(9007199254740992.0)));
        assert!(i("9007199254740992").py_eq(&Float(9007199254740992.0)));
        assert!(i("100000000000000000000").py_eq(&Float(1e20)));
        assert!(!Float(f64::NAN).py_eq(&Float(f64::NAN)));
        assert!(!List(vec![i("1")]).py_eq(&Tuple(vec![i("1")])));
        assert!(Tuple(vec![i("1"), st("a")]).py_eq(&Tuple(vec![Float(1.0), st("a")])));
        assert!(Set(vec![i("1"), i("2")]).py_eq(&FrozenSet(vec![i("2"), Float(1.0)])));
        assert!(!Set(vec![i("1")]).py_eq(&List(vec![i("1")])));
        assert!(
            Dict(vec![(st("a"), i("1")), (i("1"), None)])
                .py_eq(&Dict(vec![(Bool(true), None), (st("a"), Float(1.0))]))
        );
        assert!(!Dict(vec![(st("a"), i("1"))]).py_eq(&Dict(vec![(st("a"), i("2"))])));
        assert!(Complex(1.0, 0.0).py_eq(&i("1")) && !Complex(1.0, 1.0).py_eq(&Float(1.0)));
        assert!(None.py_eq(&None) && !None.py_eq(&Bool(false)));
        assert!(!st("a").py_eq(&Bytes(b"a".to_vec())));
    }

    #[test]
    fn decodes_the_harness_encoding() {
        let v: Value = serde_json::from_str(
            r#"{"t":"dict","v":[[{"t":"str","v":"k"},{"t":"list","v":[{"t":"int","v":"-007"},{"t":"float","v":"inf"},{"t":"none"}]}]]}"#,
        )
        .unwrap();
        let p = PyValue::from_json(&v).unwrap();
        assert_eq!(p.to_string(), "{'k': [-7, inf, None]}");
        assert!(PyValue::from_json(&serde_json::json!({"t": "object"})).is_err());
        assert!(PyValue::from_json(&serde_json::json!({"t": "int", "v": "1e5"})).is_err());
        assert!(
            PyValue::from_json(&serde_json::json!({"t": "strx", "v": "eda080"}))
                .unwrap()
                .truthy()
        );
    }

    #[test]
    fn forged_values_cannot_match() {
        // a set or dict with duplicates (impossible in Python) must not equal a real one
        let three = Set(vec![i("1"), i("2"), i("3")]);
        assert!(!Set(vec![i("1"), i("1"), i("1")]).py_eq(&three));
        let d = Dict(vec![(st("a"), i("1")), (st("b"), i("2"))]);
        assert!(!Dict(vec![(st("a"), i("1")), (st("a"), i("1"))]).py_eq(&d));
        assert!(Set(vec![i("3"), i("1"), i("2")]).py_eq(&three));
        // non-ASCII where hex is expected is an error, not a panic
        assert!(PyValue::from_json(&serde_json::json!({"t": "strx", "v": "aéa"})).is_err());
        assert!(PyValue::from_json(&serde_json::json!({"t": "bytes", "v": "zz"})).is_err());
    }

    #[test]
    fn exact_int_differences() {
        assert_eq!(
            int_abs_diff("100000000000000001", "100000000000000000"),
            "1"
        );
        assert_eq!(int_abs_diff("-5", "7"), "12");
        assert_eq!(int_abs_diff("7", "-5"), "12");
        assert_eq!(int_abs_diff("3", "10"), "7");
        assert_eq!(int_abs_diff("-3", "-10"), "7");
        assert_eq!(int_abs_diff("1000", "1000"), "0");
        assert_eq!(int_abs_diff("0", "0"), "0");
        assert_eq!(
            int_abs_diff("99999999999999999999999999999999999999999", "1"),
            "99999999999999999999999999999999999999998"
        );
    }

    #[test]
    fn truthiness() {
        assert!(
            !i("0").truthy()
                && i("-1").truthy()
                && !st("").truthy()
                && !List(vec![]).truthy()
                && !None.truthy()
        );
        assert!(Tuple(vec![None]).truthy() && Float(0.1).truthy() && !Float(0.0).truthy());
    }
}
