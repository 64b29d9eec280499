//! The rules Bandit runs on every string constant (its `Str` checks): B104, B105, B108, B608.
//! A string that is a whole expression statement (a docstring) is skipped, as in Bandit; the
//! literal parts of an f-string are constants whose parent is the f-string.

use super::python::{Issue, Walk, issue};
use super::python_ast::NodeExt;
use super::python_ast::{
    self as ast, Parent, StrLit, called_name, is_field, kids, lines, parent_lines, py_parent,
    unparen,
};
use crate::finding::Level;
use tree_sitter::Node;

/// Past this many bytes of statement text built for one binary-operator chain, B608 looks at a
/// string alone instead of the whole chain: Bandit rebuilds the chain for each of its strings,
/// quadratic in its length, which a hostile file could exploit.
const CHAIN_BUDGET: usize = 1 << 20;

/// The string rules for the `string` or `concatenated_string` at the end of `path`; whether it
/// has interpolations (code the walk must go into).
pub(super) fn check(w: &mut Walk, path: &[Node]) -> bool {
    let i = path.len() - 1;
    let node = path[i];
    let Some(lit) = ast::string_literal(w.src, node) else {
        // Malformed: walk into it, whatever tree-sitter recovered may hold code.
        return true;
    };
    let joined = matches!(lit, StrLit::Joined(_));
    let mut found: Vec<(&'static str, Issue)> = Vec::new();
    // The line range a nosec applies to is the parent's: only computed for a finding.
    let range = match lit {
        StrLit::Bytes(_) => return false,
        StrLit::Str(s) => {
            let Some(parent) = py_parent(path, i) else {
                return false;
            };
            if parent.1 == Parent::Expr {
                return false;
            }
            generic(&mut found, &s);
            if let Some(i) = password_string(w, path, parent, &s) {
                found.push(("B105", i));
            }
            if let Some(i) = sql_constant(w, path, parent, &s) {
                found.push(("B608", i));
            }
            if found.is_empty() {
                return false;
            }
            parent_lines(path, parent)
        }
        StrLit::Joined(parts) => {
            // In Python 3.11 every literal part carries the f-string's own position.
            for (k, part) in parts.iter().enumerate() {
                generic(&mut found, part);
                if k == 0 && is_sql(&parts.concat()) {
                    let execute = match py_parent(path, i) {
                        Some((j, Parent::Call)) => is_execute(w, path[j]),
                        _ => false,
                    };
                    found.push(("B608", sql_issue(execute)));
                }
            }
            if found.is_empty() {
                return true;
            }
            lines(node)
        }
    };
    for (id, i) in found {
        w.report(id, node, range, i);
    }
    joined
}

/// B104 and B108, which look at the value alone.
fn generic(found: &mut Vec<(&'static str, Issue)>, s: &str) {
    if s == "0.0.0.0" {
        let i = issue(
            Level::Medium,
            Level::Medium,
            "Possible binding to all interfaces.",
        );
        found.push(("B104", i));
    }
    if ["/tmp", "/var/tmp", "/dev/shm"]
        .iter()
        .any(|d| s.starts_with(d))
    {
        let i = issue(
            Level::Medium,
            Level::Medium,
            "Probable insecure usage of temp file/directory.",
        );
        found.push(("B108", i));
    }
}

pub(super) fn password_issue(value: &str) -> Issue {
    issue(
        Level::Low,
        Level::Medium,
        format!("Possible hardcoded password: '{value}'"),
    )
}

/// Bandit's `RE_CANDIDATES`, `(^W$|_W_|^W_|_W$)` with
/// `W = (pas+wo?r?d|pass(phrase)?|pwd|token|secrete?)`, case-insensitive, searched anywhere.
pub(super) fn looks_like_password(name: &str) -> bool {
    let s = fold(name);
    let at_word = |i: usize| i == 0 || s[i - 1] == b'_';
    let ends = |e: usize| e == s.len() || s[e] == b'_';
    (0..s.len()).any(|i| at_word(i) && word_ends(&s, i).into_iter().flatten().any(ends))
}

/// The end offsets at which `W` can match starting at `i` (at most two: `pass`/`passphrase`,
/// `secret`/`secrete`).
fn word_ends(s: &[u8], i: usize) -> [Option<usize>; 2] {
    let t = &s[i..];
    let mut out = [None, None];
    if t.starts_with(b"pas") {
        let mut k = 3;
        while t.get(k) == Some(&b's') {
            k += 1;
        }
        if k >= 4 {
            out[0] = Some(i + 4);
            if t[4..].starts_with(b"phrase") {
                out[1] = Some(i + 10);
            }
        }
        if t.get(k) == Some(&b'w') {
            let rest = &t[k + 1..];
            let n = if rest.starts_with(b"d") {
                Some(1)
            } else if rest.starts_with(b"od") || rest.starts_with(b"rd") {
                Some(2)
            } else if rest.starts_with(b"ord") {
                Some(3)
            } else {
                None
            };
            // `pass` and `pas+w...` are alternatives of one regex: keep both end points.
            if let Some(n) = n {
                let e = Some(i + k + 1 + n);
                if out[0].is_none() {
                    out[0] = e;
                } else {
                    out[1] = e;
                }
            }
        }
    } else if t.starts_with(b"pwd") {
        out[0] = Some(i + 3);
    } else if t.starts_with(b"token") {
        out[0] = Some(i + 5);
    } else if t.starts_with(b"secret") {
        out[0] = Some(i + 6);
        if t.get(6) == Some(&b'e') {
            out[1] = Some(i + 7);
        }
    }
    out
}

fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// One byte per char, for case-insensitive matching of ASCII words the way Python's `re`
/// matches them: letters lower-cased (with the non-ASCII letters `re.IGNORECASE` equates with
/// `s`, `i`, `k`), whitespace as a space, anything else as 0xff.
fn fold(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            '\u{17f}' => b's',
            '\u{130}' | '\u{131}' => b'i',
            '\u{212a}' => b'k',
            c if is_py_space(c) => b' ',
            c if c.is_ascii() => c.to_ascii_lowercase() as u8,
            _ => 0xff,
        })
        .collect()
}

/// Bandit's `SIMPLE_SQL_RE`, searched case-insensitively with `.` matching newlines:
/// `select\s.*from\s | delete\s+from\s | insert\s+into\s.*values[\s(] | update\s.*set\s`.
pub(super) fn is_sql(text: &str) -> bool {
    let t = fold(text);
    let find = |from: usize, pat: &[u8]| -> Option<usize> {
        t.get(from..)?
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|p| p + from)
    };
    // `a\s.*b\s`: the first `a ` and any `b ` after it.
    let then = |a: &[u8], b: &[u8]| match find(0, a) {
        Some(i) => find(i + a.len(), b).is_some(),
        None => false,
    };
    if then(b"select ", b"from ") || then(b"update ", b"set ") {
        return true;
    }
    let spaces_then = |mut i: usize, word: &[u8]| -> Option<usize> {
        let start = i;
        while t.get(i) == Some(&b' ') {
            i += 1;
        }
        (i > start && t.get(i..)?.starts_with(word)).then_some(i + word.len())
    };
    let mut from = 0;
    while let Some(i) = find(from, b"delete") {
        if spaces_then(i + 6, b"from ").is_some() {
            return true;
        }
        from = i + 1;
    }
    let mut from = 0;
    while let Some(i) = find(from, b"insert") {
        if let Some(e) = spaces_then(i + 6, b"into ") {
            let tail = &t[e..];
            if tail
                .windows(7)
                .any(|w| w.starts_with(b"values") && (w[6] == b' ' || w[6] == b'('))
            {
                return true;
            }
        }
        from = i + 1;
    }
    false
}

fn sql_issue(execute_call: bool) -> Issue {
    issue(
        Level::Medium,
        if execute_call {
            Level::Medium
        } else {
            Level::Low
        },
        "Possible SQL injection vector through string-based query construction.",
    )
}

fn is_execute(w: &Walk, call: Node) -> bool {
    matches!(called_name(w.src, call), "execute" | "executemany")
}

/// B105, by the string's parent: an assignment to a password-like name, a password-like dict
/// key or subscript assigned a string, a comparison of a password-like name with a string.
fn password_string(w: &Walk, path: &[Node], parent: (usize, Parent), s: &str) -> Option<Issue> {
    let i = path.len() - 1;
    let (j, kind) = parent;
    let src = w.src;
    let target_matches = |t: Node| {
        let t = unparen(t);
        match t.kind_name() {
            "identifier" => looks_like_password(src.text_of(t)),
            "attribute" => t
                .field("attribute")
                .is_some_and(|a| looks_like_password(src.text_of(a))),
            _ => false,
        }
    };
    let value = match kind {
        Parent::Assign => {
            let hit = path[j..i]
                .iter()
                .filter(|n| n.kind_name() == "assignment")
                .filter_map(|n| n.field("left"))
                .any(target_matches);
            hit.then(|| s.to_string())
        }
        Parent::Dict => {
            let (&pair, &child) = (path.get(j + 1)?, path.get(j + 2)?);
            if pair.kind_name() != "pair"
                || !is_field(pair, "key", child)
                || !looks_like_password(s)
            {
                return None;
            }
            pair.field("value")
                .and_then(|v| ast::constant(src, v))
                .map(|v| v.py_str())
        }
        Parent::Subscript => {
            if !looks_like_password(s) {
                return None;
            }
            match py_parent(path, j) {
                Some((k, Parent::Assign)) => {
                    assigned_value(path[k]).and_then(|v| ast::str_constant(src, v))
                }
                _ => None,
            }
        }
        Parent::Compare => {
            let operands = kids(path[j]);
            match (operands.first(), operands.get(1)) {
                (Some(&left), Some(&right)) if target_matches(left) => {
                    ast::str_constant(src, right)
                }
                _ => None,
            }
        }
        _ => None,
    };
    value.map(|v| password_issue(&v))
}

/// The value of an `Assign` (the innermost right side of an `a = b = value` chain).
fn assigned_value(mut assign: Node) -> Option<Node> {
    loop {
        let right = assign.field("right")?;
        if right.kind_name() == "assignment" {
            assign = right;
        } else {
            return Some(right);
        }
    }
}

/// B608 for a string constant: inside a `+`/`%`/… chain (the chain's strings joined), or the
/// object of `.format`/`.replace`; confidence rises when the whole is passed to `execute`.
fn sql_constant(w: &Walk, path: &[Node], parent: (usize, Parent), s: &str) -> Option<Issue> {
    let (j, kind) = parent;
    let (statement, wrapper, replace) = match kind {
        Parent::BinOp => {
            let mut root = j;
            while let Some((k, Parent::BinOp)) = py_parent(path, root) {
                root = k;
            }
            let statement = chain_statement(w, path[root], path[j], s);
            (statement, py_parent(path, root), false)
        }
        Parent::Attribute => {
            let attr = path[j].field("attribute").map_or("", |a| w.src.text_of(a));
            if attr != "format" && attr != "replace" {
                return None;
            }
            let wrapper = py_parent(path, j).and_then(|(k, _)| py_parent(path, k));
            (s.to_string(), wrapper, attr == "replace")
        }
        _ => return None,
    };
    if !is_sql(&statement) {
        return None;
    }
    let execute = match wrapper {
        Some((k, Parent::Call)) => is_execute(w, path[k]),
        _ => false,
    };
    Some(sql_issue(execute && !replace))
}

/// Bandit's `utils.concat_string(node, stop=parent)`: the string, then every string constant of
/// the chain rooted at `root` outside the subtree of `stop`, in order, joined by spaces.
fn chain_statement(w: &Walk, root: Node, stop: Node, s: &str) -> String {
    let mut out = s.to_string();
    if root.id() == stop.id() {
        return out;
    }
    // In-order walk of the operator tree; operands that are operators are descended into.
    let mut stack = vec![root];
    let mut leaves = Vec::new();
    while let Some(n) = stack.pop() {
        if n.id() == stop.id() {
            continue;
        }
        let left = n.field("left").map(unparen);
        let right = n.field("right").map(unparen);
        for side in [right, left].into_iter().flatten() {
            if side.kind_name() == "binary_operator" {
                stack.push(side);
            } else {
                leaves.push((side.start_byte(), side));
            }
        }
    }
    leaves.sort_by_key(|&(b, _)| b);
    for (_, leaf) in leaves {
        if let Some(v) = ast::str_constant(w.src, leaf) {
            if out.len() + v.len() > CHAIN_BUDGET {
                return s.to_string();
            }
            out.push(' ');
            out.push_str(&v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_names_match_bandits_regex() {
        for yes in [
            "password",
            "PASSWORD",
            "db_password",
            "password_hash",
            "my_pass_word_x",
            "pass",
            "passwd",
            "pwd",
            "token",
            "api_token",
            "secret",
            "secrete",
            "passphrase",
            "user_passphrase_",
            "paswd",
            "passssword",
            "x_pwd_y",
            "pass_",
            "passwrd",
        ] {
            assert!(looks_like_password(yes), "{yes}");
        }
        for no in [
            "passport",
            "mypassword",
            "passwords",
            "tokens",
            "secretary",
            "pwdx",
            "p_assword",
            "compass",
            "bypass_x",
            "",
            "_",
        ] {
            assert!(!looks_like_password(no), "{no}");
        }
    }

    #[test]
    fn sql_matches_bandits_regex() {
        for yes in [
            "SELECT * FROM t",
            "select\nx\nfrom\tt",
            "select from ",
            "DELETE  FROM t",
            "insert into t values(1)",
            "INSERT INTO t (a) VALUES (1)",
            "update t set a=1",
            "xx select a from b",
        ] {
            assert!(is_sql(yes), "{yes}");
        }
        for no in [
            "select",
            "selected from x",
            "select x fromage",
            "delete from",
            "deletefrom x",
            "insert into t value(1)",
            "update t",
            "from x select y",
        ] {
            assert!(!is_sql(no), "{no}");
        }
    }
}
