//! tree-sitter's Python nodes seen the way Python's own `ast` module sees them, for rules written
//! against `ast` (Bandit's): parentheses vanish, adjacent string literals are one constant, an
//! f-string is a `JoinedStr` of literal parts, and a node's parent is its `ast` parent.

pub(super) use super::python_literal::{
    StrLit, Value, arg_value, constant, is_constant, repr_str, str_constant, string_literal,
};
use crate::source::Source;
use std::sync::LazyLock;
use tree_sitter::{Language, Node};

/// Node kind names by kind ID, and field IDs by name: `Node::kind` and
/// `Node::child_by_field_name` cross into C and scan strings at every call, and the rules ask
/// them for every node.
struct Grammar {
    kinds: Vec<String>,
    /// What the walker does at each kind, by kind ID.
    visits: Vec<Visit>,
    /// Sorted by name.
    fields: Vec<(String, u16)>,
}

static GRAMMAR: LazyLock<Grammar> = LazyLock::new(|| {
    let lang: Language = tree_sitter_python::LANGUAGE.into();
    let kinds: Vec<String> = (0..lang.node_kind_count())
        .map(|id| {
            u16::try_from(id)
                .ok()
                .and_then(|id| lang.node_kind_for_id(id))
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let mut fields: Vec<(String, u16)> = (1..=lang.field_count())
        .filter_map(|id| {
            let id = u16::try_from(id).ok()?;
            Some((lang.field_name_for_id(id)?.to_string(), id))
        })
        .collect();
    fields.sort();
    let visits = kinds
        .iter()
        .map(|k: &String| match k.as_str() {
            "call" => Visit::Call,
            "string" => Visit::String,
            "concatenated_string" => Visit::ConcatenatedString,
            "function_definition" => Visit::FunctionDef,
            "except_clause" => Visit::ExceptHandler,
            "assert_statement" => Visit::Assert,
            "import_statement" | "import_from_statement" | "future_import_statement" => {
                Visit::Import
            }
            "comment" => Visit::Comment,
            _ => Visit::Nothing,
        })
        .collect();
    Grammar {
        kinds,
        visits,
        fields,
    }
});

/// The node kinds Bandit's visitor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visit {
    Nothing,
    Call,
    String,
    ConcatenatedString,
    FunctionDef,
    ExceptHandler,
    Assert,
    Import,
    Comment,
}

/// What the walker does at a node: one table lookup per node of the tree.
pub(super) fn visit_kind(n: Node) -> Visit {
    GRAMMAR
        .visits
        .get(usize::from(n.kind_id()))
        .copied()
        .unwrap_or(Visit::Nothing)
}

/// `kind()` and `child_by_field_name()` through [`GRAMMAR`]'s tables.
pub(super) trait NodeExt<'t> {
    fn kind_name(&self) -> &'static str;
    fn field(&self, name: &str) -> Option<Node<'t>>;
}

impl<'t> NodeExt<'t> for Node<'t> {
    fn kind_name(&self) -> &'static str {
        GRAMMAR
            .kinds
            .get(usize::from(self.kind_id()))
            .map_or("", String::as_str)
    }

    fn field(&self, name: &str) -> Option<Node<'t>> {
        // The fields the rules read, by name length first: most lookups end in one compare.
        let ids = &*FIELD_IDS;
        let id = match name {
            "key" => ids[0],
            "body" | "left" | "name" | "type" => match name {
                "body" => ids[1],
                "left" => ids[2],
                "name" => ids[3],
                _ => ids[4],
            },
            "alias" | "right" | "value" => match name {
                "alias" => ids[5],
                "right" => ids[6],
                _ => ids[7],
            },
            "object" => ids[8],
            "function" | "operator" => match name {
                "function" => ids[9],
                _ => ids[10],
            },
            "attribute" | "arguments" => match name {
                "attribute" => ids[11],
                _ => ids[12],
            },
            "parameters" | "definition" | "consequence" | "subscript" => {
                return field_id(name).and_then(|id| self.child_by_field_id(id.get()));
            }
            _ => field_id(name).map_or(0, |id| id.get()),
        };
        if id == 0 {
            return None;
        }
        self.child_by_field_id(id)
    }
}

/// The IDs of the fields [`NodeExt::field`] matches by name (0 for one the grammar lacks).
static FIELD_IDS: LazyLock<[u16; 13]> = LazyLock::new(|| {
    let names = [
        "key",
        "body",
        "left",
        "name",
        "type",
        "alias",
        "right",
        "value",
        "object",
        "function",
        "operator",
        "attribute",
        "arguments",
    ];
    names.map(|n| field_id(n).map_or(0, |id| id.get()))
});

fn field_id(name: &str) -> Option<std::num::NonZeroU16> {
    let fields = &GRAMMAR.fields;
    let i = fields
        .binary_search_by(|(f, _)| f.as_str().cmp(name))
        .ok()?;
    std::num::NonZeroU16::new(fields[i].1)
}

/// Named children that are code: comments and line continuations are extras in the grammar
/// but not nodes in `ast`. A cursor walk, because `named_child(i)` costs O(i).
pub(super) fn kids(n: Node) -> Vec<Node> {
    let mut out = Vec::new();
    let mut cursor = n.walk();
    if cursor.goto_first_child() {
        loop {
            let c = cursor.node();
            if c.is_named() && !c.is_extra() {
                out.push(c);
            }
            if !cursor.goto_next_sibling() {
                break;
            }
        }
    }
    out
}

/// `(x)` is `x` in `ast`, as an expression or as an assignment target (which tree-sitter
/// parses as a one-element tuple pattern).
pub(super) fn unparen(mut n: Node) -> Node {
    loop {
        let inner = match n.kind_name() {
            "parenthesized_expression" => kids(n).first().copied(),
            "tuple_pattern" if !has_comma(n) => match kids(n).as_slice() {
                [only] => Some(*only),
                _ => None,
            },
            _ => None,
        };
        match inner {
            Some(c) => n = c,
            None => return n,
        }
    }
}

/// Whether `child` is (one of) `parent`'s `field` children.
pub(super) fn is_field(parent: Node, field: &str, child: Node) -> bool {
    let Some(id) = field_id(field) else {
        return false;
    };
    let mut cursor = parent.walk();
    parent
        .children_by_field_id(id, &mut cursor)
        .any(|c| c.id() == child.id())
}

/// Whether a node has a comma token of its own (`x[a,]`, `a,` are tuples in `ast`).
fn has_comma(n: Node) -> bool {
    let mut cursor = n.walk();
    n.children(&mut cursor)
        .any(|c| !c.is_named() && c.kind_name() == ",")
}

/// 1-based line where a node starts, as `ast`'s `lineno`.
pub(super) fn line(n: Node) -> usize {
    n.start_position().row + 1
}

/// 0-based UTF-8 byte column where a node starts, as `ast`'s `col_offset`.
pub(super) fn col(n: Node) -> usize {
    n.start_position().column
}

/// Last line of a node as `ast`'s `end_lineno`: the last token's line. tree-sitter lets a block
/// swallow the comments that follow it; `ast` ends at the last statement.
pub(super) fn end_line(n: Node) -> usize {
    let mut last = n;
    loop {
        let mut cursor = last.walk();
        let mut next = None;
        if cursor.goto_last_child() {
            loop {
                let c = cursor.node();
                if !c.is_extra() && c.end_byte() > c.start_byte() {
                    next = Some(c);
                    break;
                }
                if !cursor.goto_previous_sibling() {
                    break;
                }
            }
        }
        match next {
            Some(c) => last = c,
            None => break,
        }
    }
    let end = last.end_position();
    // A token that ends with its line's newline ends on that line, not at the next one's start.
    if end.column == 0 && end.row > last.start_position().row {
        end.row
    } else {
        end.row + 1
    }
}

/// `ast`'s line range of a node (`lineno..=end_lineno`).
pub(super) fn lines(n: Node) -> (usize, usize) {
    (line(n), end_line(n))
}

// ---------------------------------------------------------------------------------------------
// Parents

/// What a node's `ast` parent is, for the rules that look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parent {
    /// An expression statement: a docstring-like string, skipped by the string rules.
    Expr,
    /// `a = b = value` (one `Assign`, however long the chain).
    Assign,
    AnnAssign,
    AugAssign,
    /// A dict display (its keys and values are the dict's children in `ast`).
    Dict,
    Subscript,
    Compare,
    BinOp,
    Attribute,
    Call,
    Keyword,
    /// A function's or lambda's `arguments` (parent of default values; it has no line number).
    Arguments,
    Tuple,
    Other,
}

/// The `ast` parent of `path[i]`, where `path` is a chain of tree-sitter ancestors ending at the
/// node of interest (`path[k]` is the parent of `path[k + 1]`): the index in `path` of the node
/// standing for that parent, and what it is.
pub(super) fn py_parent(path: &[Node], i: usize) -> Option<(usize, Parent)> {
    let mut child = *path.get(i)?;
    let mut j = i.checked_sub(1)?;
    while matches!(path[j].kind_name(), "parenthesized_expression" | "type") {
        child = path[j];
        j = j.checked_sub(1)?;
    }
    let p = path[j];
    let above = |k: usize| k.checked_sub(1).map(|k| (k, path[k].kind_name()));
    let kind = match p.kind_name() {
        "argument_list" => {
            return match above(j) {
                Some((k, "call")) => Some((k, Parent::Call)),
                Some((k, _)) => Some((k, Parent::Other)),
                None => Some((j, Parent::Other)),
            };
        }
        "keyword_argument" => Parent::Keyword,
        "pair" => {
            return match above(j) {
                Some((k, "dictionary")) => Some((k, Parent::Dict)),
                Some((k, _)) => Some((k, Parent::Other)),
                None => Some((j, Parent::Other)),
            };
        }
        "assignment" => {
            let mut k = j;
            while let Some((up, "assignment")) = above(k) {
                k = up;
            }
            let ann = path[k].field("type").is_some();
            return Some((
                k,
                if ann {
                    Parent::AnnAssign
                } else {
                    Parent::Assign
                },
            ));
        }
        "augmented_assignment" => Parent::AugAssign,
        // `"a",` is a tuple, not a docstring-like expression statement.
        "expression_statement" if !has_comma(p) && p.named_child_count() == 1 => Parent::Expr,
        "expression_statement" | "expression_list" | "tuple" | "pattern_list" | "tuple_pattern" => {
            Parent::Tuple
        }
        "subscript" => {
            let mut cursor = p.walk();
            let n = field_id("subscript")
                .map_or(0, |id| p.children_by_field_id(id, &mut cursor).count());
            if (n > 1 || has_comma(p)) && is_field(p, "subscript", child) {
                Parent::Tuple
            } else {
                Parent::Subscript
            }
        }
        "comparison_operator" => Parent::Compare,
        "binary_operator" => Parent::BinOp,
        "attribute" => Parent::Attribute,
        "call" => Parent::Call,
        "default_parameter" | "typed_default_parameter" => {
            return match above(j) {
                Some((k, _)) => Some((k, Parent::Arguments)),
                None => Some((j, Parent::Other)),
            };
        }
        _ => Parent::Other,
    };
    Some((j, kind))
}

/// `ast`'s line range of the parent found by [`py_parent`], as Bandit's `linerange` computes
/// it: a node without line numbers (`arguments`) spans its children.
pub(super) fn parent_lines(path: &[Node], parent: (usize, Parent)) -> (usize, usize) {
    let (j, kind) = parent;
    let n = path[j];
    if kind == Parent::Arguments {
        let k = kids(n);
        if let (Some(first), Some(last)) = (k.first(), k.last()) {
            return (line(*first), end_line(*last));
        }
    }
    lines(n)
}

/// The name Bandit's `utils.get_called_name` gives a call: the attribute or the bare name.
pub(super) fn called_name<'s>(src: &'s Source, call: Node) -> &'s str {
    let Some(f) = call.field("function").map(unparen) else {
        return "";
    };
    match f.kind_name() {
        "identifier" => src.text_of(f),
        "attribute" => f.field("attribute").map_or("", |a| src.text_of(a)),
        _ => "",
    }
}
