//! tree-sitter parsing: per-file syntax statistics for filtering and the shard columns, and
//! per-byte AST facts (node depth, child-index path) for tree-aware models.

use crate::lang::Lang;
use std::cell::RefCell;
use std::collections::HashMap;
use tree_sitter::{Parser, Tree};

/// What the corpus keeps about a file's parse.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ParseStats {
    pub n_nodes: u64,
    pub depth: u32,
    /// Nodes that are ERROR or MISSING.
    pub n_error_nodes: u64,
}

impl ParseStats {
    /// Share of ERROR/MISSING nodes: the parse-failure filter's measure.
    pub fn error_fraction(&self) -> f64 {
        if self.n_nodes == 0 {
            0.0
        } else {
            self.n_error_nodes as f64 / self.n_nodes as f64
        }
    }
}

thread_local! {
    // Parsers are costly to build and not Sync: one per thread and language, reused.
    static PARSERS: RefCell<HashMap<(Lang, bool), Parser>> = RefCell::new(HashMap::new());
}

/// Parse `src` as `lang` on this thread's cached parser. `None` when tree-sitter gives up
/// (it only does on a timeout or cancellation, which we never set).
pub fn parse(lang: Lang, path: &str, src: &[u8]) -> Option<Tree> {
    let tsx = lang == Lang::TypeScript && path.ends_with(".tsx");
    PARSERS.with(|cell| {
        let mut parsers = cell.borrow_mut();
        let parser = parsers.entry((lang, tsx)).or_insert_with(|| {
            let mut p = Parser::new();
            p.set_language(&lang.grammar(path))
                .expect("grammar ABI matches tree-sitter");
            p
        });
        parser.parse(src, None)
    })
}

/// Count nodes, depth and errors with a cursor walk (no recursion: minified files nest deep).
pub fn stats(tree: &Tree) -> ParseStats {
    let mut s = ParseStats::default();
    let mut cursor = tree.walk();
    let mut depth = 0u32;
    loop {
        let node = cursor.node();
        s.n_nodes += 1;
        s.depth = s.depth.max(depth + 1);
        if node.is_error() || node.is_missing() {
            s.n_error_nodes += 1;
        }
        if cursor.goto_first_child() {
            depth += 1;
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return s;
            }
            depth -= 1;
        }
    }
}

/// AST facts of one byte position: depth of the deepest node that contains it, and the child
/// indices from the root down to that node (only the first `max_path` levels are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AstFact {
    pub depth: u16,
    pub path: Vec<u16>,
}

/// Tree positions as training and generation both compute them: a token's position is the
/// [`AstFact`] of its first byte in the parse of the text **up to the token's end** — never of
/// text after it, which generation does not have yet. Fed one token's bytes at a time (a
/// document's, or a prompt's and then each generated token's), it re-parses incrementally, so the
/// data pipeline and the decoder run the same code on the same bytes and get the same positions.
pub struct PrefixPositions {
    lang: Lang,
    path: String,
    parser: Parser,
    tree: Option<Tree>,
    text: Vec<u8>,
    /// Lines so far, and where the last one starts (tree-sitter's edit points are row/column).
    rows: usize,
    line_start: usize,
    max_path: usize,
}

impl PrefixPositions {
    pub fn new(lang: Lang, path: &str, max_path: usize) -> Self {
        let mut parser = Parser::new();
        parser
            .set_language(&lang.grammar(path))
            .expect("grammar ABI matches tree-sitter");
        PrefixPositions {
            lang,
            path: path.to_string(),
            parser,
            tree: None,
            text: Vec::new(),
            rows: 0,
            line_start: 0,
            max_path,
        }
    }

    /// Back to an empty text (the next document).
    pub fn reset(&mut self) {
        self.tree = None;
        self.text.clear();
        self.rows = 0;
        self.line_start = 0;
    }

    fn point(&self) -> tree_sitter::Point {
        tree_sitter::Point {
            row: self.rows,
            column: self.text.len() - self.line_start,
        }
    }

    /// Appends a token's bytes and returns its position. An empty token (none in byte-level
    /// BPE, but a caller may pass one) is placed at the last byte before it.
    pub fn push(&mut self, bytes: &[u8]) -> AstFact {
        let start = self.text.len();
        let start_point = self.point();
        self.text.extend_from_slice(bytes);
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                self.rows += 1;
                self.line_start = start + i + 1;
            }
        }
        let old = self.tree.take().map(|mut t| {
            t.edit(&tree_sitter::InputEdit {
                start_byte: start,
                old_end_byte: start,
                new_end_byte: self.text.len(),
                start_position: start_point,
                old_end_position: start_point,
                new_end_position: self.point(),
            });
            t
        });
        let tree = self
            .parser
            .parse(&self.text, old.as_ref())
            .expect("no parse timeout is set");
        let byte = if bytes.is_empty() {
            start.saturating_sub(1)
        } else {
            start
        };
        let fact = fact_at(&tree, byte, self.max_path);
        self.tree = Some(tree);
        fact
    }
}

impl Clone for PrefixPositions {
    /// A copy that goes on independently (a decoder's sample forked from its prompt): a parser
    /// of its own, the tree and text shared so far.
    fn clone(&self) -> Self {
        let mut p = PrefixPositions::new(self.lang, &self.path, self.max_path);
        p.tree = self.tree.clone();
        p.text = self.text.clone();
        (p.rows, p.line_start) = (self.rows, self.line_start);
        p
    }
}

/// Token positions by token id, as `data tokenize --ast` writes a document's and a decoder
/// computes a prompt's and its continuation's: text tokens are placed by [`PrefixPositions`];
/// special tokens sit nowhere (depth 0); the end-of-text token ends the document (what follows
/// starts a fresh parse, as the next packed document does); a fill-in-the-middle token leaves
/// the rest of the document unplaced, its text being out of order.
#[derive(Clone)]
pub struct DocPositions {
    parse: PrefixPositions,
    /// Whether the document is still in order (no fill-in-the-middle token seen).
    placed: bool,
}

impl DocPositions {
    pub fn new(lang: Lang, path: &str, max_path: usize) -> Self {
        DocPositions {
            parse: PrefixPositions::new(lang, path, max_path),
            placed: true,
        }
    }

    /// Appends token `id`, whose text is `bytes`, and returns its position.
    pub fn push(&mut self, id: u32, bytes: &[u8]) -> AstFact {
        use crate::tokenizer::{EOT_ID, FIM_MIDDLE_ID, FIM_PREFIX_ID, FIM_SUFFIX_ID};
        let unplaced = AstFact {
            depth: 0,
            path: Vec::new(),
        };
        if (id as usize) < crate::tokenizer::SPECIAL_TOKENS.len() {
            match id {
                EOT_ID => {
                    self.parse.reset();
                    self.placed = true;
                }
                FIM_PREFIX_ID | FIM_SUFFIX_ID | FIM_MIDDLE_ID => self.placed = false,
                _ => {}
            }
            return unplaced;
        }
        match self.placed {
            true => self.parse.push(bytes),
            false => unplaced,
        }
    }
}

/// The fact of `byte` in `tree`, descending from the root.
fn fact_at(tree: &Tree, byte: usize, max_path: usize) -> AstFact {
    let mut cursor = tree.walk();
    let mut path: Vec<u16> = Vec::new();
    let mut depth = 0usize;
    while let Some(idx) = cursor.goto_first_child_for_byte(byte) {
        let n = cursor.node();
        if !(n.start_byte() <= byte && byte < n.end_byte()) {
            break;
        }
        depth += 1;
        if path.len() < max_path {
            path.push(idx.min(u16::MAX as usize) as u16);
        }
    }
    AstFact {
        depth: depth.min(u16::MAX as usize) as u16,
        path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(tree: &Tree, byte: usize) -> (u16, Vec<u16>) {
        let mut node = tree.root_node();
        let mut path = Vec::new();
        'down: loop {
            for i in 0..node.child_count() {
                let c = node.child(i).unwrap();
                if c.start_byte() <= byte && byte < c.end_byte() {
                    path.push(i as u16);
                    node = c;
                    continue 'down;
                }
            }
            return (path.len() as u16, path);
        }
    }

    /// Each token's position is the brute-force fact of its first byte in a fresh parse of the
    /// text up to its end, whatever pieces the text comes in.
    #[test]
    fn prefix_positions_are_facts_of_the_prefix_parse() {
        let src = "def f(x):\n    if x > [1, (2, {3: 4})][0]:\n        return 'é'  # c\n    return None\n";
        for piece in [1, 2, 3, 5] {
            let mut pp = PrefixPositions::new(Lang::Python, "a.py", 64);
            let mut at = 0;
            while at < src.len() {
                let end = (at + piece).min(src.len());
                let fact = pp.push(&src.as_bytes()[at..end]);
                let fresh = parse(Lang::Python, "a.py", &src.as_bytes()[..end]).unwrap();
                let (depth, path) = brute(&fresh, at);
                assert_eq!(
                    (fact.depth, fact.path),
                    (depth, path),
                    "piece {piece} at {at}"
                );
                at = end;
            }
        }
        // Paths keep the first `max_path` levels; depth is the whole depth.
        let mut pp = PrefixPositions::new(Lang::Python, "a.py", 2);
        let facts: Vec<AstFact> = src.as_bytes().chunks(4).map(|c| pp.push(c)).collect();
        assert!(facts.iter().any(|f| f.depth > 2));
        assert!(
            facts
                .iter()
                .all(|f| f.path.len() == (f.depth as usize).min(2))
        );
    }
}
