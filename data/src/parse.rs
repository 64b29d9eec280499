//! tree-sitter parsing: per-file syntax statistics for filtering and the shard columns, and
//! per-byte AST facts (node depth, child-index path) for tree-aware models.

use crate::lang::Lang;
use std::cell::RefCell;
use std::collections::HashMap;
use tree_sitter::{Node, Parser, Tree};

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

/// Locates byte offsets in a parsed file. Queries are answered by descending from the root, so
/// each costs O(depth · fan-out); the tokenizer asks once per token.
pub struct AstLocator<'t> {
    root: Node<'t>,
    max_path: usize,
}

impl<'t> AstLocator<'t> {
    pub fn new(tree: &'t Tree, max_path: usize) -> Self {
        AstLocator {
            root: tree.root_node(),
            max_path,
        }
    }

    pub fn at(&self, byte: usize) -> AstFact {
        let mut node = self.root;
        let mut depth = 0u16;
        let mut path = Vec::with_capacity(self.max_path);
        'descend: loop {
            let mut cursor = node.walk();
            // first_child_for_byte skips children that end before `byte`, in log time.
            if let Some(idx) = cursor.goto_first_child_for_byte(byte) {
                let child = cursor.node();
                if child.start_byte() <= byte && byte < child.end_byte() {
                    depth = depth.saturating_add(1);
                    if path.len() < self.max_path {
                        path.push(idx.min(u16::MAX as usize) as u16);
                    }
                    node = child;
                    continue 'descend;
                }
            }
            break;
        }
        AstFact { depth, path }
    }
}
