//! The tree-sitter tree copied into one flat array by a single cursor walk, which every quality
//! analysis then reads.
//!
//! tree-sitter's `Node` finds its parent, siblings and fields by walking from the root or over
//! its children, and names its kind through a C string; the analyses here ask those questions
//! for most nodes, several times. One copy with parent, sibling and first-child links and
//! interned kind and field names answers them in O(1), for about the cost of one more walk.

use std::sync::OnceLock;
use tree_sitter::{Language, Point, Tree};

const NONE: u32 = u32::MAX;

/// Kind and field names of the Python grammar, by id.
struct Names {
    kinds: Vec<&'static str>,
    fields: Vec<&'static str>,
}

fn names() -> &'static Names {
    static LANGUAGE: OnceLock<Language> = OnceLock::new();
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| {
        let lang: &'static Language = LANGUAGE.get_or_init(|| tree_sitter_python::LANGUAGE.into());
        let kinds = (0..lang.node_kind_count())
            .map(|id| {
                u16::try_from(id)
                    .ok()
                    .and_then(|id| lang.node_kind_for_id(id))
                    .unwrap_or("")
            })
            .collect();
        let fields = (0..=lang.field_count())
            .map(|id| {
                u16::try_from(id)
                    .ok()
                    .and_then(|id| lang.field_name_for_id(id))
                    .unwrap_or("")
            })
            .collect();
        Names { kinds, fields }
    })
}

#[derive(Clone, Copy)]
struct Entry {
    kind: u16,
    named: bool,
    extra: bool,
    /// The field this node is under in its parent (0 for none).
    field: u16,
    start: u32,
    end: u32,
    row: u32,
    column: u32,
    parent: u32,
    first_child: u32,
    next: u32,
    prev: u32,
}

/// A parsed file as a flat array of nodes (preorder), with the text they span.
pub(crate) struct Flat<'s> {
    text: &'s str,
    nodes: Vec<Entry>,
    /// Levels of the deepest node (the root is level 1).
    depth: usize,
}

impl<'s> Flat<'s> {
    pub fn new(tree: &Tree, text: &'s str) -> Self {
        // Python source has about one node per 6 bytes.
        let mut nodes: Vec<Entry> = Vec::with_capacity(text.len() / 6 + 16);
        // (index, last child so far) of the nodes whose children are being copied.
        let mut open: Vec<(u32, u32)> = Vec::new();
        let mut depth = 1;
        let mut cursor = tree.walk();
        loop {
            let node = cursor.node();
            let index = nodes.len() as u32;
            let (parent, prev) = open.last().copied().unwrap_or((NONE, NONE));
            let start = node.start_position();
            nodes.push(Entry {
                kind: node.kind_id(),
                named: node.is_named(),
                extra: node.is_extra(),
                field: cursor.field_id().map_or(0, |f| f.get()),
                start: node.start_byte() as u32,
                end: node.end_byte() as u32,
                row: start.row as u32,
                column: start.column as u32,
                parent,
                first_child: NONE,
                next: NONE,
                prev,
            });
            if let Some(last) = open.last_mut() {
                if prev == NONE {
                    nodes[parent as usize].first_child = index;
                } else {
                    nodes[prev as usize].next = index;
                }
                last.1 = index;
            }
            if cursor.goto_first_child() {
                open.push((index, NONE));
                depth = depth.max(open.len() + 1);
                continue;
            }
            loop {
                if cursor.goto_next_sibling() {
                    break;
                }
                if !cursor.goto_parent() {
                    return Flat { text, nodes, depth };
                }
                open.pop();
            }
        }
    }

    /// Levels of the deepest node: what recursive walks need stack for.
    pub fn depth(&self) -> usize {
        self.depth
    }

    pub fn root(&self) -> Nd<'_> {
        Nd { flat: self, i: 0 }
    }
}

/// One node of a [`Flat`] tree, with the subset of `tree_sitter::Node`'s API the analyses use.
#[derive(Clone, Copy)]
pub(crate) struct Nd<'a> {
    flat: &'a Flat<'a>,
    i: u32,
}

impl PartialEq for Nd<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.i == other.i && std::ptr::eq(self.flat, other.flat)
    }
}

impl Eq for Nd<'_> {}

impl std::fmt::Debug for Nd<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.kind(), self.i)
    }
}

impl<'a> Nd<'a> {
    fn entry(self) -> &'a Entry {
        &self.flat.nodes[self.i as usize]
    }

    fn at(self, i: u32) -> Option<Nd<'a>> {
        (i != NONE).then_some(Nd { flat: self.flat, i })
    }

    /// The position in the array: unique per node of one tree.
    pub fn id(self) -> usize {
        self.i as usize
    }

    pub fn kind(self) -> &'static str {
        names()
            .kinds
            .get(usize::from(self.entry().kind))
            .copied()
            .unwrap_or("")
    }

    pub fn is_named(self) -> bool {
        self.entry().named
    }

    /// Comments and line continuations, which tree-sitter allows anywhere.
    pub fn is_extra(self) -> bool {
        self.entry().extra
    }

    pub fn start_byte(self) -> usize {
        self.entry().start as usize
    }

    /// 0-based row and byte column, as tree-sitter gives them.
    pub fn start_position(self) -> Point {
        let e = self.entry();
        Point {
            row: e.row as usize,
            column: e.column as usize,
        }
    }

    /// The text the node spans ("" if its range is not on character boundaries, which a tree
    /// of valid UTF-8 never has).
    pub fn text(self) -> &'a str {
        let e = self.entry();
        self.flat
            .text
            .get(e.start as usize..e.end as usize)
            .unwrap_or("")
    }

    pub fn parent(self) -> Option<Nd<'a>> {
        self.at(self.entry().parent)
    }

    pub fn prev_sibling(self) -> Option<Nd<'a>> {
        self.at(self.entry().prev)
    }

    pub fn children(self) -> Children<'a> {
        Children {
            next: self.at(self.entry().first_child),
        }
    }

    /// Named children, extras (comments) included as tree-sitter has them.
    pub fn named_children(self) -> impl Iterator<Item = Nd<'a>> {
        self.children().filter(|c| c.is_named())
    }

    /// Named children that are not comments or line continuations.
    pub fn real_children(self) -> impl Iterator<Item = Nd<'a>> {
        self.children().filter(|c| c.is_named() && !c.is_extra())
    }

    pub fn first_real_child(self) -> Option<Nd<'a>> {
        self.real_children().next()
    }

    pub fn named_child_count(self) -> usize {
        self.named_children().count()
    }

    /// The name of the field this node is under in its parent ("" for none).
    fn field(self) -> &'static str {
        match self.entry().field {
            0 => "",
            id => names().fields.get(usize::from(id)).copied().unwrap_or(""),
        }
    }

    pub fn child_by_field_name(self, field: &str) -> Option<Nd<'a>> {
        self.children().find(|c| c.field() == field)
    }

    pub fn children_by_field_name(self, field: &'a str) -> impl Iterator<Item = Nd<'a>> {
        self.children().filter(move |c| c.field() == field)
    }

    pub fn prev_named_sibling(self) -> Option<Nd<'a>> {
        let mut cur = self.prev_sibling();
        while let Some(n) = cur {
            if n.is_named() {
                return Some(n);
            }
            cur = n.prev_sibling();
        }
        None
    }

    /// Whether a child of this kind exists.
    pub fn has_child(self, kind: &str) -> bool {
        self.children().any(|c| c.kind() == kind)
    }
}

pub(crate) struct Children<'a> {
    next: Option<Nd<'a>>,
}

impl<'a> Iterator for Children<'a> {
    type Item = Nd<'a>;

    fn next(&mut self) -> Option<Nd<'a>> {
        let cur = self.next?;
        self.next = cur.at(cur.entry().next);
        Some(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;

    #[test]
    fn flat_tree_matches_tree_sitter() {
        let src = Source::python(b"def f(a, b=1):\n    return a + b  # c\n").unwrap();
        let flat = Flat::new(&src.tree, &src.text);
        let root = flat.root();
        assert_eq!(root.kind(), "module");
        let def = root.first_real_child().unwrap();
        assert_eq!(def.kind(), "function_definition");
        assert_eq!(def.child_by_field_name("name").unwrap().text(), "f");
        let body = def.child_by_field_name("body").unwrap();
        let ret = body.first_real_child().unwrap();
        assert_eq!(ret.kind(), "return_statement");
        assert_eq!(ret.parent(), Some(body));
        let op = ret.first_real_child().unwrap();
        assert_eq!(op.child_by_field_name("operator").unwrap().kind(), "+");
        assert_eq!(op.start_position(), Point { row: 1, column: 11 });
        assert!(
            body.named_children()
                .any(|c| c.is_extra() && c.kind() == "comment")
        );
        let mut n = 0;
        let mut cursor = src.tree.walk();
        loop {
            n += 1;
            if cursor.goto_first_child() {
                continue;
            }
            while !cursor.goto_next_sibling() {
                if !cursor.goto_parent() {
                    assert_eq!(n, flat.nodes.len());
                    return;
                }
            }
        }
    }
}
