//! Incremental syntax checks for beam search: each beam keeps its tree-sitter tree and re-parses
//! only what its new token changed. A beam is broken when the parse has an error that ends
//! before the *frontier* (the start of the last line): code still being written may be
//! incomplete, code on finished lines may not.

use anvil_data::lang::Lang;
use tree_sitter::{InputEdit, Parser, Point, Tree};

pub struct SyntaxChecker {
    parser: Parser,
    /// Errors ending at or before this byte lie in the prompt itself and are not the beam's fault.
    prompt_len: usize,
}

/// A beam's text and its parse.
#[derive(Clone)]
pub struct Parsed {
    pub text: String,
    tree: Tree,
}

fn point_at(text: &str, byte: usize) -> Point {
    let before = &text.as_bytes()[..byte];
    let row = before.iter().filter(|&&b| b == b'\n').count();
    let column = byte
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    Point { row, column }
}

impl SyntaxChecker {
    pub fn new(lang: Lang, prompt_len: usize) -> Self {
        let mut parser = Parser::new();
        parser
            .set_language(&lang.grammar(""))
            .expect("grammar ABI matches tree-sitter");
        Self { parser, prompt_len }
    }

    pub fn parse(&mut self, text: String) -> Parsed {
        let tree = self
            .parser
            .parse(&text, None)
            .expect("no parse timeout is set");
        Parsed { text, tree }
    }

    /// `prev` with its text replaced by `text`, re-parsing incrementally from the first byte that
    /// differs (a new token usually only appends, but finishing a multi-byte character rewrites
    /// the replacement character that stood for its first bytes).
    pub fn extend(&mut self, prev: &Parsed, text: String) -> Parsed {
        let common = prev
            .text
            .bytes()
            .zip(text.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let mut start = common;
        while !text.is_char_boundary(start) || !prev.text.is_char_boundary(start) {
            start -= 1;
        }
        let mut tree = prev.tree.clone();
        tree.edit(&InputEdit {
            start_byte: start,
            old_end_byte: prev.text.len(),
            new_end_byte: text.len(),
            start_position: point_at(&text, start),
            old_end_position: point_at(&prev.text, prev.text.len()),
            new_end_position: point_at(&text, text.len()),
        });
        let tree = self
            .parser
            .parse(&text, Some(&tree))
            .expect("no parse timeout is set");
        Parsed { text, tree }
    }

    /// Whether the parse has an error (or a missing node) after the prompt that ends before the
    /// last line.
    pub fn broken_before_frontier(&self, p: &Parsed) -> bool {
        let frontier = p.text.rfind('\n').map_or(0, |i| i + 1);
        self.first_error(p, |start, end| {
            end > self.prompt_len && end <= frontier && start < frontier
        })
    }

    /// Whether the whole text parses without an error or missing node outside the prompt.
    pub fn complete_and_valid(&self, p: &Parsed) -> bool {
        !self.first_error(p, |_, end| end > self.prompt_len)
    }

    fn first_error(&self, p: &Parsed, counts: impl Fn(usize, usize) -> bool) -> bool {
        let root = p.tree.root_node();
        if !root.has_error() {
            return false;
        }
        // Only subtrees that contain an error are entered.
        let mut cursor = root.walk();
        loop {
            let n = cursor.node();
            if (n.is_error() || n.is_missing()) && counts(n.start_byte(), n.end_byte()) {
                return true;
            }
            if n.has_error() && cursor.goto_first_child() {
                continue;
            }
            loop {
                if cursor.goto_next_sibling() {
                    break;
                }
                if !cursor.goto_parent() {
                    return false;
                }
            }
        }
    }
}

/// Whether `text` parses in `lang` without an error or missing node anywhere.
pub fn valid_code(lang: Lang, text: &str) -> bool {
    let mut c = SyntaxChecker::new(lang, 0);
    let p = c.parse(text.to_string());
    c.complete_and_valid(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_on_finished_lines_break_a_beam_open_ones_do_not() {
        let prompt = "def f(x):\n    return ";
        let mut c = SyntaxChecker::new(Lang::Python, prompt.len());
        let p0 = c.parse(prompt.to_string());
        let open = c.extend(&p0, format!("{prompt}(x +"));
        assert!(!c.broken_before_frontier(&open));
        assert!(!c.complete_and_valid(&open));
        let good = c.extend(&open, format!("{prompt}(x + 1)\n"));
        assert!(!c.broken_before_frontier(&good));
        assert!(c.complete_and_valid(&good));
        let bad = c.extend(&p0, format!("{prompt}x)\n"));
        assert!(c.broken_before_frontier(&bad));
        // Incremental parses agree with parsing from scratch.
        let fresh = c.parse(bad.text.clone());
        assert_eq!(
            fresh.tree.root_node().to_sexp(),
            bad.tree.root_node().to_sexp()
        );
    }

    #[test]
    fn errors_in_the_prompt_are_not_the_beams() {
        let prompt = "x = = 1\n";
        let mut c = SyntaxChecker::new(Lang::Python, prompt.len());
        let p = c.parse(format!("{prompt}y = 2\n"));
        assert!(!c.broken_before_frontier(&p));
    }
}
