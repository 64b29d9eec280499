//! `# nosec` comments, read the way Bandit 1.9.4 reads them (`core/manager.py`): a comment
//! matching `#\s*nosec:?\s*(?P<tests>[^#]+)?#?` names the tests it silences; each name found by
//! `(?:(B\d+|[a-z\d_]+),?)+` that is a test ID or a test's name counts; a comment naming none
//! that Bandit knows silences everything.

use super::python::RULES;
use std::collections::BTreeMap;

/// Names Bandit also accepts in `# nosec`: plugin entry points whose name differs from the
/// test function's.
const ENTRY_POINT_NAMES: &[(&str, &str)] = &[
    ("hashlib_insecure_functions", "B324"),
    ("snmp_insecure_version", "B508"),
    ("snmp_weak_cryptography", "B509"),
];

/// The IDs a `# nosec` comment lists: `None` when the comment is no nosec comment, an empty
/// list when it silences every test.
pub(super) fn parse(comment: &str) -> Option<Vec<&'static str>> {
    let tests = tests_text(comment)?;
    let mut ids = Vec::new();
    for word in words(tests) {
        if let Some(id) = lookup(word) {
            ids.push(id);
        }
    }
    Some(ids)
}

fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// The `tests` group of Bandit's `NOSEC_COMMENT`, `Some("")` when the comment is a nosec
/// comment without tests.
fn tests_text(comment: &str) -> Option<&str> {
    for (i, _) in comment.match_indices('#') {
        let rest = comment[i + 1..].trim_start_matches(is_py_space);
        if let Some(rest) = rest.strip_prefix("nosec") {
            let rest = rest.strip_prefix(':').unwrap_or(rest);
            let rest = rest.trim_start_matches(is_py_space);
            let end = rest.find('#').unwrap_or(rest.len());
            return Some(&rest[..end]);
        }
    }
    None
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The last capture of each match of `(?:(B\d+|[a-z\d_]+),?)+` (case-insensitive): a run of
/// words joined by single commas yields only its last word, as Python's `re` does.
fn words(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !is_word(b[i]) {
            i += 1;
            continue;
        }
        let mut last = (i, i);
        while i < b.len() && is_word(b[i]) {
            let start = i;
            let test_id =
                (b[i] == b'B' || b[i] == b'b') && b.get(i + 1).is_some_and(u8::is_ascii_digit);
            i += 1;
            if test_id {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            } else {
                while i < b.len() && is_word(b[i]) {
                    i += 1;
                }
            }
            last = (start, i);
            if i < b.len() && b[i] == b',' {
                i += 1;
            }
        }
        out.push(&text[last.0..last.1]);
    }
    out
}

/// A test ID (exact, case-sensitive) or a test's name, as Bandit's extension manager finds it.
fn lookup(word: &str) -> Option<&'static str> {
    if word == "B001" {
        return Some("B001");
    }
    RULES
        .iter()
        .find(|r| r.id == word || r.name == word)
        .map(|r| r.id)
        .or_else(|| {
            ENTRY_POINT_NAMES
                .iter()
                .find(|(n, _)| *n == word)
                .map(|(_, id)| *id)
        })
}

/// The nosec comments of a file by line.
#[derive(Default)]
pub(super) struct Nosec {
    lines: BTreeMap<usize, Vec<&'static str>>,
}

impl Nosec {
    pub(super) fn add(&mut self, line: usize, comment: &str) {
        if let Some(ids) = parse(comment) {
            self.lines.insert(line, ids);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Bandit's `_get_nosecs_from_contexts`: the comment on the finding's own line, joined
    /// with the first nosec comment within the line range of the node the test looked at.
    pub(super) fn silences(&self, id: &str, line: usize, range: (usize, usize)) -> bool {
        let base = self.lines.get(&line);
        let context = if range.0 <= range.1 {
            self.lines.range(range.0..=range.1).next().map(|(_, v)| v)
        } else {
            None
        };
        if base.is_none() && context.is_none() {
            return false;
        }
        let all = base.into_iter().chain(context).flatten();
        let mut any = false;
        for &t in all {
            any = true;
            if t == id {
                return true;
            }
        }
        !any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_parse_like_bandit() {
        assert_eq!(parse("# nosec"), Some(vec![]));
        assert_eq!(parse("#nosec: B602"), Some(vec!["B602"]));
        assert_eq!(parse("# nosec B602, B607"), Some(vec!["B602", "B607"]));
        // A comma without a space makes one regex match whose last capture wins.
        assert_eq!(parse("# nosec B602,B607"), Some(vec!["B607"]));
        assert_eq!(parse("# nosec assert_used"), Some(vec!["B101"]));
        assert_eq!(parse("# nosec import_pickle"), Some(vec!["B403"]));
        assert_eq!(
            parse("# nosec hashlib_insecure_functions"),
            Some(vec!["B324"])
        );
        // Unknown names leave a blanket nosec; lower-case IDs are unknown.
        assert_eq!(parse("# nosec b602"), Some(vec![]));
        assert_eq!(parse("# nosecurity"), Some(vec![]));
        assert_eq!(parse("# todo: nosec"), None);
        assert_eq!(parse("# see # nosec B101 # why"), Some(vec!["B101"]));
        assert_eq!(parse("# a comment"), None);
    }

    #[test]
    fn silencing_joins_own_line_and_context() {
        let mut n = Nosec::default();
        n.add(3, "# nosec B101");
        n.add(5, "# nosec");
        assert!(n.silences("B101", 3, (3, 3)));
        assert!(!n.silences("B102", 3, (3, 3)));
        assert!(n.silences("B102", 4, (4, 6)));
        // Only the first nosec comment of the range counts.
        assert!(!n.silences("B102", 2, (2, 6)));
        assert!(!n.silences("B102", 1, (1, 2)));
    }
}
