//! radon's `HalsteadVisitor` counts: operators and operands of the nodes it visits.
//!
//! Only `BinOp`, `UnaryOp`, `BoolOp`, `AugAssign` and `Compare` count. Operands are keyed like
//! radon keys them, `(context, value)`: the context is the name of the innermost enclosing
//! function, the value a name's id, an attribute's name, a constant's Python value, or the
//! expression node itself (so every other expression is an operand of its own).

use super::Halstead;
use super::flat::Nd;
use super::literal::{Number, StrValue, number_value, string_value};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

#[derive(PartialEq, Eq, Hash)]
enum Operand<'s> {
    Str(Cow<'s, str>),
    Bytes(Vec<u8>),
    Num(Number),
    None,
    Ellipsis,
}

/// Operator kinds as radon names them, by their AST class (`Add`, `USub`, `NotIn`, …).
#[derive(Clone, Copy)]
#[repr(u8)]
enum Op {
    Add,
    Sub,
    Mult,
    MatMult,
    Div,
    Mod,
    FloorDiv,
    Pow,
    BitOr,
    BitAnd,
    BitXor,
    LShift,
    RShift,
    USub,
    UAdd,
    Invert,
    Not,
    And,
    Or,
    Eq,
    NotEq,
    Lt,
    LtE,
    Gt,
    GtE,
    In,
    NotIn,
    Is,
    IsNot,
}

fn binary_op(token: &str) -> Option<Op> {
    Some(match token {
        "+" => Op::Add,
        "-" => Op::Sub,
        "*" => Op::Mult,
        "@" => Op::MatMult,
        "/" => Op::Div,
        "%" => Op::Mod,
        "//" => Op::FloorDiv,
        "**" => Op::Pow,
        "|" => Op::BitOr,
        "&" => Op::BitAnd,
        "^" => Op::BitXor,
        "<<" => Op::LShift,
        ">>" => Op::RShift,
        _ => return None,
    })
}

fn compare_op(token: &str) -> Option<Op> {
    Some(match token {
        "==" => Op::Eq,
        "!=" | "<>" => Op::NotEq,
        "<" => Op::Lt,
        "<=" => Op::LtE,
        ">" => Op::Gt,
        ">=" => Op::GtE,
        "in" => Op::In,
        "not in" => Op::NotIn,
        "is" => Op::Is,
        "is not" => Op::IsNot,
        _ => return None,
    })
}

/// Unwrap `( … )` (Python's AST has no node for grouping parentheses) and the `type` wrapper
/// tree-sitter puts around annotations.
pub(crate) fn unparen(mut node: Nd) -> Nd {
    while matches!(node.kind(), "parenthesized_expression" | "type") {
        match node.first_real_child() {
            Some(inner) => node = inner,
            None => break,
        }
    }
    node
}

#[derive(Default)]
pub(crate) struct Counter<'s> {
    ops_seen: u64,
    n1: usize,
    n2: usize,
    operands: HashSet<(u32, Operand<'s>)>,
    /// Operands that are expression nodes: each one is distinct.
    node_operands: usize,
    contexts: HashMap<&'s str, u32>,
    /// Inner `boolean_operator` nodes of a same-operator chain, already counted.
    absorbed: HashSet<usize>,
}

impl<'s> Counter<'s> {
    /// The operand context of a function (0 is the module's).
    pub fn context(&mut self, function_name: &'s str) -> u32 {
        let next = self.contexts.len() as u32 + 1;
        *self.contexts.entry(function_name).or_insert(next)
    }

    pub fn finish(&self) -> Halstead {
        let h1 = self.ops_seen.count_ones() as usize;
        let h2 = self.operands.len() + self.node_operands;
        let (h, n) = (h1 + h2, self.n1 + self.n2);
        let volume = if h == 0 {
            0.0
        } else {
            n as f64 * (h as f64).log2()
        };
        Halstead {
            h1,
            h2,
            n1: self.n1,
            n2: self.n2,
            volume,
        }
    }

    fn operator(&mut self, op: Op, operands: usize) {
        self.ops_seen |= 1 << (op as u8);
        self.n1 += 1;
        self.n2 += operands;
    }

    fn operand(&mut self, ctx: u32, node: Nd<'s>) {
        let node = unparen(node);
        let key = match node.kind() {
            "identifier" => Some(Operand::Str(Cow::Borrowed(node.text()))),
            "attribute" => node
                .child_by_field_name("attribute")
                .map(|a| Operand::Str(Cow::Borrowed(a.text()))),
            // `a.B` in an annotation.
            "member_type" => node
                .real_children()
                .last()
                .filter(|a| a.kind() == "identifier")
                .map(|a| Operand::Str(Cow::Borrowed(a.text()))),
            "integer" | "float" => number_value(node.text()).map(Operand::Num),
            "true" => Some(Operand::Num(Number::Int(1))),
            "false" => Some(Operand::Num(Number::Int(0))),
            "none" => Some(Operand::None),
            "ellipsis" => Some(Operand::Ellipsis),
            "string" | "concatenated_string" => match string_value(node) {
                Some(StrValue::Str(s)) => Some(Operand::Str(s)),
                Some(StrValue::Bytes(b)) => Some(Operand::Bytes(b)),
                _ => None,
            },
            _ => None,
        };
        match key {
            Some(k) => {
                self.operands.insert((ctx, k));
            }
            None => self.node_operands += 1,
        }
    }

    /// radon's `visit_BinOp`/`UnaryOp`/`BoolOp`/`AugAssign`/`Compare` for one node.
    pub fn node(&mut self, node: Nd<'s>, ctx: u32) {
        match node.kind() {
            "binary_operator" | "augmented_assignment" => {
                let op = node
                    .child_by_field_name("operator")
                    .and_then(|o| binary_op(o.kind().trim_end_matches('=')));
                if let (Some(op), Some(l), Some(r)) = (
                    op,
                    node.child_by_field_name("left"),
                    node.child_by_field_name("right"),
                ) {
                    self.operator(op, 2);
                    self.operand(ctx, l);
                    self.operand(ctx, r);
                }
            }
            // `List[int] | None` in an annotation is `BinOp(BitOr)` too.
            "union_type" => {
                let mut sides = node.real_children().filter(|c| c.kind() == "type");
                if let (Some(l), Some(r)) = (sides.next(), sides.next()) {
                    self.operator(Op::BitOr, 2);
                    self.operand(ctx, l);
                    self.operand(ctx, r);
                }
            }
            "unary_operator" | "not_operator" => {
                let op = match node.child_by_field_name("operator").map(|o| o.kind()) {
                    Some("-") => Op::USub,
                    Some("+") => Op::UAdd,
                    Some("~") => Op::Invert,
                    _ => Op::Not,
                };
                if let Some(arg) = node.child_by_field_name("argument") {
                    self.operator(op, 1);
                    self.operand(ctx, arg);
                }
            }
            "boolean_operator" => self.bool_op(node, ctx),
            "comparison_operator" => {
                let mut n_ops = 0;
                for child in node.children() {
                    if !child.is_named() {
                        if let Some(op) = compare_op(child.kind()) {
                            self.ops_seen |= 1 << (op as u8);
                            n_ops += 1;
                        }
                    } else if !child.is_extra() {
                        // The left operand and every comparator.
                        self.operand(ctx, child);
                    }
                }
                self.n1 += n_ops;
                self.n2 += n_ops + 1;
            }
            "case_pattern" | "union_pattern" | "dict_pattern" | "keyword_pattern" => {
                self.negative_literals(node, ctx)
            }
            "complex_pattern" => self.complex_literal(node, ctx),
            _ => {}
        }
    }

    /// `a and b and c` is one `BoolOp` with three values: the inner nodes of an unparenthesized
    /// same-operator chain are counted with the outermost one.
    fn bool_op(&mut self, node: Nd<'s>, ctx: u32) {
        if self.absorbed.remove(&node.id()) {
            return;
        }
        let Some(op) = node.child_by_field_name("operator").map(|o| o.kind()) else {
            return;
        };
        let mut values = Vec::new();
        let mut cur = node;
        loop {
            if let Some(r) = cur.child_by_field_name("right") {
                values.push(r);
            }
            match cur.child_by_field_name("left") {
                Some(l)
                    if l.kind() == "boolean_operator"
                        && l.child_by_field_name("operator").map(|o| o.kind()) == Some(op) =>
                {
                    self.absorbed.insert(l.id());
                    cur = l;
                }
                Some(l) => {
                    values.push(l);
                    break;
                }
                None => break,
            }
        }
        self.operator(if op == "and" { Op::And } else { Op::Or }, values.len());
        for v in values {
            self.operand(ctx, v);
        }
    }

    /// Literal patterns hold expressions: `case -1` is `MatchValue(UnaryOp(USub, 1))`;
    /// tree-sitter leaves the sign as a token before the number.
    fn negative_literals(&mut self, node: Nd<'s>, ctx: u32) {
        let mut minus = false;
        for child in node.children() {
            if minus && matches!(child.kind(), "integer" | "float") {
                self.operator(Op::USub, 1);
                self.operand(ctx, child);
            }
            minus = !child.is_named() && child.kind() == "-";
        }
    }

    /// `case 1 + 2j` is `MatchValue(BinOp(1, Add, 2j))`, `case -1 - 2j` also has a `USub`.
    fn complex_literal(&mut self, node: Nd<'s>, ctx: u32) {
        let kids: Vec<Nd<'s>> = node.children().filter(|k| !k.is_extra()).collect();
        let negated = kids.first().is_some_and(|k| k.kind() == "-");
        let first = kids.get(usize::from(negated));
        let sign = kids
            .iter()
            .skip(usize::from(negated) + 1)
            .find(|k| !k.is_named());
        let right = kids.iter().rev().find(|k| k.is_named());
        if negated {
            self.operator(Op::USub, 1);
            if let Some(first) = first {
                self.operand(ctx, *first);
            }
        }
        if let (Some(sign), Some(right)) = (sign, right) {
            self.operator(if sign.kind() == "+" { Op::Add } else { Op::Sub }, 2);
            match first {
                // The left operand is the `UnaryOp` node.
                Some(_) if negated => self.node_operands += 1,
                Some(first) => self.operand(ctx, *first),
                None => {}
            }
            self.operand(ctx, *right);
        }
    }
}
