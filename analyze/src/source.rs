//! One file to analyze: its text and tree-sitter tree, with the limits every analyzer relies on
//! checked once (size, UTF-8, nesting), so no rule has to guard against hostile input itself.

use tree_sitter::{Node, Parser, Tree};

/// Files larger than this are refused rather than analyzed: generated samples are kilobytes,
/// and the biggest files of the Python standard library are under 1 MB.
pub const MAX_BYTES: usize = 4 << 20;
/// Deeper syntax trees are refused: recursive walks over them would need unbounded stack.
pub const MAX_DEPTH: usize = 1000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SourceError {
    #[error("file is {0} bytes, over the {MAX_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("not UTF-8 text (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("binary file (NUL byte at offset {0})")]
    Binary(usize),
    #[error("syntax tree nests {0} levels deep, over the {MAX_DEPTH}-level limit")]
    TooDeep(usize),
    #[error("the parser gave up")]
    ParserFailed,
}

/// A parsed Python file. `has_errors` is true when tree-sitter had to recover from syntax
/// errors: analyzers still run on the recovered tree, and the quality score treats the file as
/// not parsing.
pub struct Source {
    pub text: String,
    pub tree: Tree,
    pub has_errors: bool,
    /// Byte offset at which each line starts, for 1-based line/column of any offset.
    line_starts: Vec<usize>,
}

impl Source {
    /// Check the limits and parse `bytes` as Python.
    pub fn python(bytes: &[u8]) -> Result<Source, SourceError> {
        if bytes.len() > MAX_BYTES {
            return Err(SourceError::TooLarge(bytes.len()));
        }
        if let Some(i) = bytes.iter().position(|&b| b == 0) {
            return Err(SourceError::Binary(i));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|e| SourceError::NotUtf8(e.valid_up_to()))?
            .to_string();
        let tree = PARSER
            .with(|p| p.borrow_mut().parse(&text, None))
            .ok_or(SourceError::ParserFailed)?;
        let depth = max_depth(&tree);
        if depth > MAX_DEPTH {
            return Err(SourceError::TooDeep(depth));
        }
        let has_errors = tree.root_node().has_error();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Ok(Source {
            text,
            tree,
            has_errors,
            line_starts,
        })
    }

    /// The text a node spans.
    pub fn text_of(&self, node: Node) -> &str {
        &self.text[node.byte_range()]
    }

    /// 1-based line and 1-based column (in characters, as Python counts them) of a byte offset.
    pub fn line_col(&self, byte: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= byte);
        let start = self.line_starts[line - 1];
        (line, self.text[start..byte].chars().count() + 1)
    }

    /// Number of lines as Python tools count them (a final line without `\n` counts).
    pub fn n_lines(&self) -> usize {
        if self.text.is_empty() {
            0
        } else {
            self.text.lines().count()
        }
    }
}

thread_local! {
    // A parser is costly to build (its grammar tables) and not Sync: one per thread, reused
    // across the thousands of samples an RL step scores.
    static PARSER: std::cell::RefCell<Parser> = std::cell::RefCell::new({
        let mut p = Parser::new();
        p.set_language(&tree_sitter_python::LANGUAGE.into())
            .expect("grammar ABI matches tree-sitter");
        p
    });
}

/// Depth of the tree, by cursor walk (no recursion: the depth is what is being checked).
fn max_depth(tree: &Tree) -> usize {
    let mut cursor = tree.walk();
    let (mut depth, mut max) = (1usize, 1usize);
    loop {
        if cursor.goto_first_child() {
            depth += 1;
            max = max.max(depth);
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return max;
            }
            depth -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_errors_not_panics() {
        assert_eq!(
            Source::python(b"x = 1\0").err(),
            Some(SourceError::Binary(5))
        );
        assert_eq!(
            Source::python(b"x = '\xff'").err(),
            Some(SourceError::NotUtf8(5))
        );
        let deep = format!("x = {}1{}", "(".repeat(2000), ")".repeat(2000));
        assert!(matches!(
            Source::python(deep.as_bytes()),
            Err(SourceError::TooDeep(_))
        ));
        let big = vec![b'#'; MAX_BYTES + 1];
        assert_eq!(
            Source::python(&big).err(),
            Some(SourceError::TooLarge(MAX_BYTES + 1))
        );
    }

    #[test]
    fn positions_are_one_based_in_characters() {
        let s = Source::python("a = 1\nb = 'é' + c\n".as_bytes()).unwrap();
        assert!(!s.has_errors);
        let c = s.text.find('c').unwrap();
        assert_eq!(s.line_col(c), (2, 11));
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.n_lines(), 2);
    }
}
