//! radon's raw metrics (`radon.raw.analyze`), which the maintainability index reads its logical
//! lines and comment share from.
//!
//! radon does not count on the parse tree: it strips every line (`str.splitlines`, then
//! `str.strip`), re-tokenizes the shortest run of stripped lines that Python 3.11's
//! `tokenize` accepts without error (a statement, or a multi-line string or bracket), and
//! classifies that run. This file reproduces that with a small lexer that carries the
//! tokenizer's state from one stripped line to the next instead of re-tokenizing growing buffers.
//!
//! Counting rules of one run of lines:
//! - only a comment: a single-comment line; only a one-line string: a single-comment line too;
//!   only a multi-line string: its non-empty lines are `multi`;
//! - anything else: its non-empty lines are `sloc` (its empty lines `blank`);
//! - `comments` counts every `#` comment; `lloc` splits the run at `;` and counts each part as
//!   1, or as 2 when its last `:` is not its last token (`if x: y` is 2, and so is
//!   `x = d[1:2]`: radon's rule looks at any colon).

use super::RawMetrics;

/// Python's `str.isspace`: Rust's White_Space plus the separators U+001C–U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.splitlines()` line boundaries.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{0b}'
            | '\u{0c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Lines as `str.splitlines()` cuts them (`\r\n` is one break; no empty line after a final break).
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if is_line_break(c) {
            lines.push(&text[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r'
                && let Some(&(j, '\n')) = it.peek()
            {
                it.next();
                next = j + 1;
            }
            start = next;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

#[derive(Clone, Copy, PartialEq)]
enum Tok {
    Comment,
    Str,
    Other,
}

/// A string literal still open at the end of a line.
#[derive(Clone, Copy)]
struct OpenString {
    quote: u8,
    triple: bool,
    /// Opened as a one-quote string continued with a trailing backslash (`needcont`).
    needcont: bool,
    start_line: usize,
}

/// Tokens of the current run of lines, as far as the counts need them.
#[derive(Default)]
struct Run {
    comments: usize,
    /// Tokens other than NL/NEWLINE/ENDMARKER.
    tokens: usize,
    first: Option<Tok>,
    /// For a first token that is a string: whether it spans several lines.
    first_multiline: bool,
    /// The current `;`-separated part: significant tokens, and tokens after its last `:`.
    part_tokens: usize,
    after_colon: Option<usize>,
    lloc: usize,
}

impl Run {
    fn token(&mut self, tok: Tok, multiline: bool) {
        if self.first.is_none() {
            self.first = Some(tok);
            self.first_multiline = multiline;
        }
        self.tokens += 1;
        if tok == Tok::Comment {
            self.comments += 1;
        } else {
            self.part_tokens += 1;
            if let Some(k) = self.after_colon.as_mut() {
                *k += 1;
            }
        }
    }

    fn op(&mut self, op: &str) {
        match op {
            ";" => {
                if self.first.is_none() {
                    self.first = Some(Tok::Other);
                }
                self.tokens += 1;
                // A part before `;` has no ENDMARKER: its colon must be second to last.
                self.lloc += match self.after_colon {
                    Some(k) => 2 - usize::from(k == 1),
                    None => usize::from(self.part_tokens > 0),
                };
                self.part_tokens = 0;
                self.after_colon = None;
            }
            ":" => {
                self.token(Tok::Other, false);
                self.after_colon = Some(0);
            }
            _ => self.token(Tok::Other, false),
        }
    }

    /// The last part ends with ENDMARKER: its colon must be the last real token.
    fn finish(&mut self) -> usize {
        self.lloc
            + match self.after_colon {
                Some(k) => 2 - usize::from(k == 0),
                None => usize::from(self.part_tokens > 0),
            }
    }
}

/// The tokenizer state carried from one stripped line to the next.
#[derive(Default)]
struct Lexer {
    parens: i64,
    continued: bool,
    string: Option<OpenString>,
}

impl Lexer {
    fn complete(&self) -> bool {
        self.parens == 0 && !self.continued && self.string.is_none()
    }

    /// Tokenize one stripped line as `tokenize` does when a newline follows it.
    fn line(&mut self, line: &str, line_no: usize, run: &mut Run) {
        let b = line.as_bytes();
        let mut pos = 0;
        if let Some(open) = self.string {
            match string_end(b, 0, open.quote, open.triple) {
                End::Closed(end) => {
                    run.token(Tok::Str, line_no != open.start_line);
                    self.string = None;
                    pos = end;
                }
                End::Open(_) if open.needcont && !line.ends_with('\\') => {
                    // tokenize's ERRORTOKEN for a broken continued string; the file does not
                    // parse, count it as code.
                    run.token(Tok::Other, false);
                    self.string = None;
                    return;
                }
                End::Open(_) => return,
            }
        } else if self.parens == 0 && !self.continued {
            if b.first() == Some(&b'#') {
                run.token(Tok::Comment, false);
                return;
            }
        } else {
            self.continued = false;
        }
        while pos < b.len() {
            let c = b[pos];
            match c {
                b' ' | b'\t' | b'\x0c' => pos += 1,
                b'#' => {
                    run.token(Tok::Comment, false);
                    return;
                }
                b'\\' => {
                    if pos + 1 == b.len() {
                        self.continued = true;
                        return;
                    }
                    run.token(Tok::Other, false);
                    pos += 1;
                }
                b'0'..=b'9' => {
                    pos = number_end(b, pos);
                    run.token(Tok::Other, false);
                }
                b'.' if b.get(pos + 1).is_some_and(u8::is_ascii_digit) => {
                    pos = number_end(b, pos);
                    run.token(Tok::Other, false);
                }
                b'\'' | b'"' => pos = self.string_start(b, pos, pos, line_no, run),
                _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                    let end = name_end(line, pos);
                    let word = &b[pos..end];
                    let quote = b.get(end).copied();
                    if matches!(quote, Some(b'\'' | b'"')) && is_string_prefix(word) {
                        pos = self.string_start(b, pos, end, line_no, run);
                    } else {
                        run.token(Tok::Other, false);
                        // A character that is no word character is tokenize's ERRORTOKEN.
                        pos = if end > pos {
                            end
                        } else {
                            pos + line[pos..].chars().next().map_or(1, char::len_utf8)
                        };
                    }
                }
                _ => {
                    let len = op_len(&b[pos..]);
                    let op = &line[pos..pos + len];
                    match op {
                        "(" | "[" | "{" => self.parens += 1,
                        ")" | "]" | "}" => self.parens -= 1,
                        _ => {}
                    }
                    run.op(op);
                    pos += len;
                }
            }
        }
    }

    /// A string literal whose prefix starts at `start` and quote at `quote_at`; returns where
    /// scanning goes on.
    fn string_start(
        &mut self,
        b: &[u8],
        start: usize,
        quote_at: usize,
        line_no: usize,
        run: &mut Run,
    ) -> usize {
        let quote = b[quote_at];
        let triple = b.get(quote_at + 1) == Some(&quote) && b.get(quote_at + 2) == Some(&quote);
        let body = if triple { quote_at + 3 } else { quote_at + 1 };
        match string_end(b, body, quote, triple) {
            End::Closed(end) => {
                run.token(Tok::Str, false);
                end
            }
            End::Open(_) if triple => {
                self.string = Some(OpenString {
                    quote,
                    triple,
                    needcont: false,
                    start_line: line_no,
                });
                b.len()
            }
            End::Open(true) => {
                self.string = Some(OpenString {
                    quote,
                    triple,
                    needcont: true,
                    start_line: line_no,
                });
                b.len()
            }
            End::Open(false) => {
                // No closing quote: tokenize reports the prefix as a name and the quote as an
                // error token and goes on after it.
                if quote_at > start {
                    run.token(Tok::Other, false);
                }
                run.token(Tok::Other, false);
                quote_at + 1
            }
        }
    }
}

enum End {
    Closed(usize),
    /// Not closed on this line; `true` when the line ends with a backslash escaping the newline.
    Open(bool),
}

/// Where a string body starting at `from` closes on this line (backslash escapes the next
/// character; a backslash at the end of the line leaves the string open).
fn string_end(b: &[u8], from: usize, quote: u8, triple: bool) -> End {
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 == b.len() => return End::Open(true),
            b'\\' => i += 2,
            c if c == quote => {
                if !triple {
                    return End::Closed(i + 1);
                }
                if b.get(i + 1) == Some(&quote) && b.get(i + 2) == Some(&quote) {
                    return End::Closed(i + 3);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    End::Open(false)
}

fn is_string_prefix(word: &[u8]) -> bool {
    let lower: Vec<u8> = word.iter().map(u8::to_ascii_lowercase).collect();
    matches!(
        lower.as_slice(),
        b"r" | b"u" | b"b" | b"f" | b"br" | b"rb" | b"fr" | b"rf"
    )
}

/// End of a `\w+` run (Unicode word characters, as Python's `re` sees them).
fn name_end(line: &str, from: usize) -> usize {
    line[from..]
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(line.len(), |(i, _)| from + i)
}

/// End of a number token (`tokenize.Number`: ints with bases and `_`, floats, exponents, `j`).
fn number_end(b: &[u8], from: usize) -> usize {
    let digits = |mut i: usize, ok: fn(u8) -> bool| {
        while i < b.len() && (ok(b[i]) || (b[i] == b'_' && b.get(i + 1).is_some_and(|&n| ok(n)))) {
            i += 1;
        }
        i
    };
    let dec = |c: u8| c.is_ascii_digit();
    if b[from] == b'0'
        && matches!(
            b.get(from + 1),
            Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
        )
    {
        return digits(from + 2, |c| c.is_ascii_hexdigit());
    }
    let mut i = digits(from, dec);
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1, dec);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = digits(j, dec);
        }
    }
    if matches!(b.get(i), Some(b'j' | b'J')) {
        i += 1;
    }
    i
}

/// Length of the operator at the start of `b` (longest match, as `tokenize.Special` does);
/// 1 for a character that is no operator (tokenize's ERRORTOKEN).
fn op_len(b: &[u8]) -> usize {
    const THREE: [&[u8]; 5] = [b"**=", b"//=", b">>=", b"<<=", b"..."];
    const TWO: [&[u8]; 17] = [
        b"!=", b"%=", b"&=", b"**", b"*=", b"+=", b"-=", b"->", b"//", b"/=", b":=", b"<<", b"<=",
        b"==", b">=", b">>", b"@=",
    ];
    const TWO_MORE: [&[u8]; 2] = [b"^=", b"|="];
    if b.len() >= 3 && THREE.contains(&&b[..3]) {
        return 3;
    }
    if b.len() >= 2 && (TWO.contains(&&b[..2]) || TWO_MORE.contains(&&b[..2])) {
        return 2;
    }
    // Stay on a character boundary for non-ASCII error characters.
    let first = b[0];
    if first < 0x80 {
        1
    } else {
        let n = first.leading_ones() as usize;
        n.clamp(1, b.len())
    }
}

/// radon's `raw.analyze` of a whole file.
pub fn raw_metrics(text: &str) -> RawMetrics {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = split_lines(text)
        .into_iter()
        .map(|l| l.trim_matches(is_py_space))
        .collect();
    let mut m = RawMetrics::default();
    let mut i = 0;
    while i < lines.len() {
        let mut lexer = Lexer::default();
        let mut run = Run::default();
        let start = i;
        loop {
            lexer.line(lines[i], i, &mut run);
            i += 1;
            // radon raises SyntaxError when the file ends inside a run; count what is there.
            if lexer.complete() || i == lines.len() {
                break;
            }
        }
        let group = &lines[start..i];
        let non_empty = group.iter().filter(|l| !l.is_empty()).count();
        let empty = group.len() - non_empty;
        m.comments += run.comments;
        match (run.tokens, run.first) {
            (1, Some(Tok::Comment)) => m.single_comments += 1,
            (1, Some(Tok::Str)) if !run.first_multiline => m.single_comments += 1,
            (1, Some(Tok::Str)) => {
                m.multi += non_empty;
                m.blank += empty;
            }
            _ => {
                m.sloc += non_empty;
                m.blank += empty;
            }
        }
        m.lloc += run.finish();
    }
    m.loc = m.sloc + m.blank + m.multi + m.single_comments;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(code: &str) -> (usize, usize, usize, usize, usize, usize, usize) {
        let m = raw_metrics(code);
        (
            m.loc,
            m.lloc,
            m.sloc,
            m.comments,
            m.multi,
            m.blank,
            m.single_comments,
        )
    }

    #[test]
    fn logical_lines_follow_radons_colon_rule() {
        assert_eq!(raw("if x: y\n").1, 2);
        assert_eq!(raw("if x:\n    y\n").1, 2);
        assert_eq!(raw("x = d[1:2]\n").1, 2);
        assert_eq!(raw("if x: a; b\n").1, 2);
        assert_eq!(raw("x = 1;\n").1, 1);
        assert_eq!(raw("f(a,\n  b)\n").1, 1);
    }

    #[test]
    fn docstrings_and_comments() {
        let code = "\"\"\"Doc\n\nmore\n\"\"\"\n# c\nx = 1  # d\n\n'''one'''\n";
        // loc, lloc, sloc, comments, multi, blank, single_comments
        assert_eq!(raw(code), (8, 3, 1, 2, 3, 2, 2));
    }

    #[test]
    fn lines_split_like_python() {
        assert_eq!(split_lines("a\r\nb\rc\x0cd\n"), vec!["a", "b", "c", "d"]);
        assert_eq!(split_lines("a\n\n"), vec!["a", ""]);
    }
}
