//! radon's `ComplexityVisitor` and `HalsteadVisitor` in one walk of the tree.
//!
//! The two visitors see different parts of the tree, so the walk carries the complexity
//! accumulator only where radon's `ComplexityVisitor` goes (`None` elsewhere) while Halstead
//! counting runs on every node `HalsteadVisitor` visits:
//!
//! - `def`: complexity visits only the body, one fresh visitor per body statement (that is how
//!   radon finds `endline` and keeps closures out); Halstead visits only the body too, with the
//!   function's name as the operand context. Decorators, defaults and annotations: neither.
//! - `class`: complexity visits only the body; Halstead also visits decorators and bases.
//! - `assert`: complexity adds 1 and does not look inside; Halstead does.

use super::flat::{Flat, Nd};
use super::halstead::Counter;
use super::{Block, BlockKind, Halstead, cc_rank};

pub(crate) struct Metrics {
    pub blocks: Vec<Block>,
    pub total_complexity: u32,
    pub halstead: Halstead,
}

/// One radon `ComplexityVisitor` instance: its counter, the functions and classes it met, and
/// the greatest line at which a node it visited starts (radon's `max_line`).
#[derive(Default)]
struct Cc<'s> {
    complexity: u32,
    max_line: Option<usize>,
    functions: Vec<Func<'s>>,
    classes: Vec<Class<'s>>,
}

struct Func<'s> {
    name: &'s str,
    line: usize,
    column: usize,
    end_line: usize,
    complexity: u32,
    classname: Option<&'s str>,
}

struct Class<'s> {
    name: &'s str,
    line: usize,
    column: usize,
    end_line: usize,
    methods: Vec<Func<'s>>,
    real_complexity: u32,
}

impl Class<'_> {
    /// radon's `Class.complexity`.
    fn complexity(&self) -> u32 {
        let n = self.methods.len() as u32;
        match self.real_complexity.checked_div(n) {
            Some(average) => average + u32::from(n > 1),
            None => self.real_complexity,
        }
    }
}

pub(crate) fn measure(flat: &Flat) -> Metrics {
    let mut w = Walker::default();
    let mut module = Cc {
        complexity: 1,
        ..Cc::default()
    };
    w.children(flat.root(), Some(&mut module), 0);

    let total_complexity = module.complexity
        + module
            .functions
            .iter()
            .map(|f| f.complexity - 1)
            .sum::<u32>()
        + module
            .classes
            .iter()
            .map(|c| c.real_complexity - 1)
            .sum::<u32>();

    let mut blocks = Vec::new();
    for f in module.functions {
        blocks.push(block(f, BlockKind::Function));
    }
    for c in module.classes {
        blocks.push(Block {
            name: c.name.to_string(),
            kind: BlockKind::Class,
            classname: None,
            line: c.line,
            end_line: c.end_line,
            column: c.column,
            complexity: c.complexity(),
            rank: cc_rank(c.complexity()),
        });
        for m in c.methods {
            blocks.push(block(m, BlockKind::Method));
        }
    }
    blocks.sort_by_key(|b| (b.line, b.column));
    Metrics {
        blocks,
        total_complexity,
        halstead: w.halstead.finish(),
    }
}

fn block(f: Func, kind: BlockKind) -> Block {
    Block {
        name: f.name.to_string(),
        kind,
        classname: f.classname.map(str::to_string),
        line: f.line,
        end_line: f.end_line,
        column: f.column,
        complexity: f.complexity,
        rank: cc_rank(f.complexity),
    }
}

fn line_of(node: Nd) -> usize {
    node.start_position().row + 1
}

fn is_comprehension(kind: &str) -> bool {
    matches!(
        kind,
        "list_comprehension"
            | "set_comprehension"
            | "dictionary_comprehension"
            | "generator_expression"
    )
}

#[derive(Default)]
struct Walker<'s> {
    halstead: Counter<'s>,
}

impl<'s> Walker<'s> {
    fn children(&mut self, node: Nd<'s>, mut cc: Option<&mut Cc<'s>>, ctx: u32) {
        for child in node.real_children() {
            self.walk(child, cc.as_deref_mut(), ctx);
        }
    }

    fn walk(&mut self, node: Nd<'s>, mut cc: Option<&mut Cc<'s>>, ctx: u32) {
        let kind = node.kind();
        match kind {
            "function_definition" => return self.function(node, cc),
            "class_definition" => return self.class(node, cc, ctx),
            "decorated_definition" => {
                if let Some(def) = node.child_by_field_name("definition") {
                    if def.kind() == "class_definition" {
                        // radon's HalsteadVisitor visits a class's decorators (generic visit),
                        // its ComplexityVisitor does not; nobody visits a function's.
                        for d in node.real_children().filter(|d| d.kind() == "decorator") {
                            self.children(d, None, ctx);
                        }
                    }
                    self.walk(def, cc, ctx);
                }
                return;
            }
            "assert_statement" => {
                if let Some(c) = cc {
                    c.complexity += 1;
                }
                return self.children(node, None, ctx);
            }
            _ => {}
        }
        if let Some(c) = cc.as_deref_mut() {
            if located(kind) {
                let line = line_of(node);
                c.max_line = Some(c.max_line.map_or(line, |m| m.max(line)));
            }
            c.complexity += decisions(node);
        }
        self.halstead.node(node, ctx);
        match kind {
            // Only the expressions of an f-string are AST nodes inside a string literal.
            "string" | "concatenated_string" => self.string_parts(node, cc, ctx),
            // The attribute's name is a string field, not a node.
            "attribute" => {
                if let Some(object) = node.child_by_field_name("object") {
                    self.walk(object, cc, ctx);
                }
            }
            // Names of `global`/`nonlocal` are strings of the statement.
            "global_statement" | "nonlocal_statement" => {}
            "except_clause" => {
                for child in node.real_children() {
                    if child.kind() == "as_pattern" {
                        // `except E as e`: `e` is the handler's name string.
                        if let Some(e) = child.first_real_child() {
                            self.walk(e, cc.as_deref_mut(), ctx);
                        }
                    } else {
                        self.walk(child, cc.as_deref_mut(), ctx);
                    }
                }
            }
            _ => self.children(node, cc, ctx),
        }
    }

    /// The f-string expressions inside a string literal (its other parts are no AST nodes).
    fn string_parts(&mut self, node: Nd<'s>, mut cc: Option<&mut Cc<'s>>, ctx: u32) {
        for child in node.real_children() {
            match child.kind() {
                "string" | "format_specifier" => self.string_parts(child, cc.as_deref_mut(), ctx),
                "interpolation" | "format_expression" => {
                    for part in child.real_children() {
                        match part.kind() {
                            "format_specifier" => self.string_parts(part, cc.as_deref_mut(), ctx),
                            "type_conversion" => {}
                            _ => self.walk(part, cc.as_deref_mut(), ctx),
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn function(&mut self, node: Nd<'s>, cc: Option<&mut Cc<'s>>) {
        let name = node.child_by_field_name("name").map_or("", Nd::text);
        let fctx = self.halstead.context(name);
        let Some(body) = node.child_by_field_name("body") else {
            return;
        };
        let mut complexity = 1;
        let mut last_max = None;
        let counting = cc.is_some();
        for stmt in body.real_children() {
            if counting {
                let mut visitor = Cc::default();
                self.walk(stmt, Some(&mut visitor), fctx);
                complexity += visitor.complexity;
                last_max = visitor.max_line;
            } else {
                self.walk(stmt, None, fctx);
            }
        }
        if let Some(c) = cc {
            let line = line_of(node);
            c.functions.push(Func {
                name,
                line,
                column: node.start_position().column,
                end_line: last_max.map_or(line, |m| m.max(line)),
                complexity,
                classname: None,
            });
        }
    }

    fn class(&mut self, node: Nd<'s>, cc: Option<&mut Cc<'s>>, ctx: u32) {
        let name = node.child_by_field_name("name").map_or("", Nd::text);
        if let Some(bases) = node.child_by_field_name("superclasses") {
            self.children(bases, None, ctx);
        }
        let Some(body) = node.child_by_field_name("body") else {
            return;
        };
        let line = line_of(node);
        let counting = cc.is_some();
        let mut real = 1;
        let mut end_line = line;
        let mut methods = Vec::new();
        for stmt in body.real_children() {
            if !counting {
                self.walk(stmt, None, ctx);
                continue;
            }
            let mut visitor = Cc::default();
            self.walk(stmt, Some(&mut visitor), ctx);
            real += visitor.complexity;
            if let Some(m) = visitor.max_line {
                end_line = end_line.max(m);
            }
            for mut f in visitor.functions {
                real += f.complexity;
                end_line = end_line.max(f.end_line);
                f.classname = Some(name);
                methods.push(f);
            }
        }
        if let Some(c) = cc {
            c.classes.push(Class {
                name,
                line,
                column: node.start_position().column,
                end_line,
                methods,
                real_complexity: real,
            });
        }
    }
}

/// radon's decision points of one node (`ComplexityVisitor.generic_visit`).
fn decisions(node: Nd) -> u32 {
    match node.kind() {
        "if_statement"
        | "elif_clause"
        | "conditional_expression"
        | "boolean_operator"
        | "for_in_clause" => 1,
        // A comprehension's `if`s (a `case` guard is an `if_clause` too, and counts nothing).
        kind if is_comprehension(kind) => node
            .real_children()
            .filter(|c| c.kind() == "if_clause")
            .count() as u32,
        "for_statement" | "while_statement" => 1 + u32::from(node.has_child("else_clause")),
        "try_statement" => {
            let handlers: Vec<Nd> = node
                .real_children()
                .filter(|c| c.kind() == "except_clause")
                .collect();
            // `try/except*` is `ast.TryStar`, which radon does not count.
            if handlers.iter().any(|h| h.has_child("*")) {
                0
            } else {
                handlers.len() as u32 + u32::from(node.has_child("else_clause"))
            }
        }
        "match_statement" => {
            let Some(body) = node.child_by_field_name("body") else {
                return 0;
            };
            let cases: Vec<Nd> = body
                .real_children()
                .filter(|c| c.kind() == "case_clause")
                .collect();
            let wildcard = cases.iter().any(|c| is_irrefutable_case(*c));
            (cases.len() as u32).saturating_sub(u32::from(wildcard))
        }
        _ => 0,
    }
}

/// radon discounts one case when a case's pattern is `MatchAs` without sub-pattern: `case _`,
/// a bare capture `case x`, or either in parentheses.
fn is_irrefutable_case(case: Nd) -> bool {
    let patterns: Vec<Nd> = case
        .real_children()
        .filter(|c| c.kind() == "case_pattern")
        .collect();
    patterns.len() == 1 && !case.has_child(",") && is_bare_capture(patterns[0])
}

fn is_bare_capture(pattern: Nd) -> bool {
    let kids: Vec<Nd> = pattern.children().filter(|c| !c.is_extra()).collect();
    match kids.as_slice() {
        [only] if only.kind() == "_" => true,
        [only] if only.kind() == "dotted_name" => only.real_children().count() == 1,
        [only] if only.kind() == "tuple_pattern" => {
            let elems: Vec<Nd> = only
                .real_children()
                .filter(|n| n.kind() == "case_pattern")
                .collect();
            elems.len() == 1 && !only.has_child(",") && is_bare_capture(elems[0])
        }
        _ => false,
    }
}

/// Whether a node is one radon's `max_line` sees: an AST node with a `lineno`. What must not
/// count are tree-sitter nodes Python's AST does not have.
fn located(kind: &str) -> bool {
    !matches!(
        kind,
        // Statement lists and clauses: in Python's AST they are lists or nodes without a
        // position, and they may hold only nodes radon does not look into (an `assert`).
        "block"
            | "else_clause"
            | "finally_clause"
            | "case_clause"
            | "for_in_clause"
            | "if_clause"
            | "with_clause"
            | "with_item"
            | "pair"
            | "decorator"
            | "argument_list"
            | "parameters"
            | "lambda_parameters"
            | "type_parameter"
            // Pieces of text that are no AST node.
            | "string_start"
            | "string_content"
            | "string_end"
            | "escape_sequence"
            | "escape_interpolation"
            | "interpolation"
            | "format_specifier"
            | "format_expression"
            | "type_conversion"
            | "keyword_separator"
            | "positional_separator"
            | "import_prefix"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;

    fn metrics(code: &str) -> Metrics {
        let src = Source::python(code.as_bytes()).unwrap();
        measure(&Flat::new(&src.tree, &src.text))
    }

    fn cc_of(code: &str) -> Vec<(String, u32, usize)> {
        metrics(code)
            .blocks
            .into_iter()
            .map(|b| (b.name, b.complexity, b.end_line))
            .collect()
    }

    #[test]
    fn counts_like_radon() {
        let code = "def f(a, b=lambda: x if y else z):\n    if a and b or c:\n        return [i for i in a if i if i > 2]\n    def g():\n        if x: pass\n    return g\n";
        assert_eq!(cc_of(code), vec![("f".to_string(), 7, 6)]);
        let code = "def h():\n    assert x and y\n";
        assert_eq!(cc_of(code), vec![("h".to_string(), 2, 1)]);
        let code = "class A:\n    def m(self):\n        if x:\n            pass\n    def n(self):\n        pass\n";
        let blocks = metrics(code).blocks;
        assert_eq!(blocks[0].kind, BlockKind::Class);
        // (1 + 2 + 1) / 2 methods + 1
        assert_eq!(blocks[0].complexity, 3);
        assert_eq!(blocks[1].classname.as_deref(), Some("A"));
    }

    #[test]
    fn halstead_keys_by_value() {
        let h = metrics("x = 'a' + 1\ny = \"a\" + 1.0\nz = a + True\n").halstead;
        assert_eq!((h.h1, h.h2, h.n1, h.n2), (1, 2, 3, 6));
        let h = metrics("a and b and c\n(a and b) and c\n").halstead;
        assert_eq!((h.h1, h.n1, h.n2), (1, 3, 7));
    }
}
