//! pyflakes' expression handlers: names in load context, comprehension scopes, calls and
//! subscripts with their `typing` special cases, and string annotations.

use super::checker::{Ann, Checker, Deferred, pos};
use super::scope::ScopeKind;
use super::visit::{Store, unparen};
use crate::quality::flat::{Flat, Nd};
use crate::quality::literal::{StrValue, string_value};
use tree_sitter::Parser;

fn named<'a>(node: Nd<'a>) -> Vec<Nd<'a>> {
    node.named_children().filter(|c| !c.is_extra()).collect()
}

/// `Name` or `Attribute` called `name` (pyflakes' `_is_name_or_attr`).
fn is_name_or_attr(node: Nd, name: &str) -> bool {
    let node = unparen(node);
    match node.kind() {
        "identifier" => node.text() == name,
        "attribute" => node
            .child_by_field_name("attribute")
            .is_some_and(|a| a.text() == name),
        _ => false,
    }
}

/// The elements of a subscript's slice when it is a tuple (`x[a, b]` or `x[(a, b)]`).
fn slice_elements<'a>(slices: &[Nd<'a>]) -> Option<Vec<Nd<'a>>> {
    let inner = |n: Nd<'a>| {
        if n.kind() == "type" {
            n.first_real_child().unwrap_or(n)
        } else {
            n
        }
    };
    match slices {
        [one] if unparen(inner(*one)).kind() == "tuple" => Some(named(unparen(inner(*one)))),
        [_] | [] => None,
        many => Some(many.to_vec()),
    }
}

impl<'t> Checker<'t> {
    pub fn expr(&mut self, node: Nd<'t>) {
        self.expr_in(node, false);
    }

    fn with_ann(&mut self, ann: Ann, f: impl FnOnce(&mut Self)) {
        let saved = std::mem::replace(&mut self.ann, ann);
        f(self);
        self.ann = saved;
    }

    /// `in_call`: the node is a call's function or positional argument, where pyflakes sees
    /// `locals()` (a `Name` whose parent is a `Call`).
    fn expr_in(&mut self, node: Nd<'t>, in_call: bool) {
        match node.kind() {
            "identifier" => {
                let name = self.text_of(node);
                self.handle_load(name, pos(node));
                let cur = self.current();
                if in_call && name == "locals" && self.kind(cur) == ScopeKind::Function {
                    self.scopes[cur].uses_locals = true;
                }
            }
            "string" | "concatenated_string" => self.string(node),
            "integer" | "float" | "true" | "false" | "none" | "ellipsis" | "comment" => {}
            "parenthesized_expression" => named(node)
                .into_iter()
                .for_each(|k| self.expr_in(k, in_call)),
            "attribute" => {
                if let Some(obj) = node.child_by_field_name("object") {
                    self.expr(obj);
                }
            }
            "subscript" => {
                let slices: Vec<Nd<'t>> = node.children_by_field_name("subscript").collect();
                match node.child_by_field_name("value") {
                    Some(value) => self.subscript(value, &slices),
                    None => named(node).into_iter().for_each(|k| self.expr(k)),
                }
            }
            // `List[int]` in an annotation: a subscript of a name.
            "generic_type" => {
                let kids = named(node);
                let slices = kids
                    .iter()
                    .find(|k| k.kind() == "type_parameter")
                    .map(|p| named(*p))
                    .unwrap_or_default();
                match kids.first() {
                    Some(value) if value.kind() == "identifier" => self.subscript(*value, &slices),
                    _ => kids.into_iter().for_each(|k| self.expr(k)),
                }
            }
            // `a.B` in an annotation: only `a` is a name.
            "member_type" => {
                if let Some(first) = node.first_real_child() {
                    self.expr(first);
                }
            }
            "call" => self.call(node),
            "dictionary" => {
                // `Dict(keys, values)`: every key, then every value.
                let kids = named(node);
                for pair in kids.iter().filter(|k| k.kind() == "pair") {
                    if let Some(key) = pair.child_by_field_name("key") {
                        self.expr(key);
                    }
                }
                for k in kids {
                    match k.kind() {
                        "pair" => {
                            if let Some(v) = k.child_by_field_name("value") {
                                self.expr(v);
                            }
                        }
                        _ => self.expr(k),
                    }
                }
            }
            "list_comprehension"
            | "set_comprehension"
            | "generator_expression"
            | "dictionary_comprehension" => self.comprehension(node),
            "conditional_expression" => {
                // `body if test else orelse` is `IfExp(test, body, orelse)`.
                let kids = named(node);
                for i in [1, 0, 2] {
                    if let Some(k) = kids.get(i) {
                        self.expr(*k);
                    }
                }
            }
            "lambda" => self.lambda_expr(node),
            "named_expression" => {
                if let Some(v) = node.child_by_field_name("value") {
                    self.expr(v);
                }
                if let Some(name) = node.child_by_field_name("name") {
                    self.target(name, Store::NamedExpr, false);
                }
            }
            "await" | "yield" => {
                // pyflakes' `YIELD`: outside a function it reports and looks no further.
                if !matches!(
                    self.kind(self.current()),
                    ScopeKind::Class | ScopeKind::Module
                ) {
                    named(node).into_iter().for_each(|k| self.expr(k));
                }
            }
            "keyword_argument" => {
                if let Some(v) = node.child_by_field_name("value") {
                    self.expr(v);
                }
            }
            _ => named(node).into_iter().for_each(|k| self.expr(k)),
        }
    }

    /// pyflakes' `CONSTANT` (a string in an annotation is parsed as one) and `JOINEDSTR`.
    fn string(&mut self, node: Nd<'t>) {
        match string_value(node) {
            Some(StrValue::Str(s)) if self.ann != Ann::None => {
                let (line, col) = pos(node);
                self.defer(Deferred::StringAnnotation(s.into_owned(), line, col));
            }
            Some(StrValue::Formatted) => self.fstring_parts(node),
            _ => {}
        }
    }

    fn fstring_parts(&mut self, node: Nd<'t>) {
        for k in named(node) {
            match k.kind() {
                "string" | "format_specifier" => self.fstring_parts(k),
                "interpolation" | "format_expression" => {
                    for part in named(k) {
                        match part.kind() {
                            "format_specifier" => self.fstring_parts(part),
                            "type_conversion" => {}
                            _ => self.expr(part),
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// pyflakes' `SUBSCRIPT`: no annotation inside `Literal[…]`, only the first argument of
    /// `Annotated[…]` is one, and any other `typing` member's subscript is an annotation.
    fn subscript(&mut self, value: Nd<'t>, slices: &[Nd<'t>]) {
        if is_name_or_attr(value, "Literal") {
            self.with_ann(Ann::None, |c| {
                c.expr(value);
                slices.iter().for_each(|s| c.expr(*s));
            });
        } else if is_name_or_attr(value, "Annotated") {
            self.expr(value);
            match slice_elements(slices) {
                Some(elts) if elts.len() >= 2 => {
                    self.expr(elts[0]);
                    self.with_ann(Ann::None, |c| elts[1..].iter().for_each(|e| c.expr(*e)));
                }
                _ => slices.iter().for_each(|s| self.expr(*s)),
            }
        } else if self.is_typing(value, None) {
            self.with_ann(Ann::Bare, |c| {
                c.expr(value);
                slices.iter().for_each(|s| c.expr(*s));
            });
        } else {
            self.expr(value);
            slices.iter().for_each(|s| self.expr(*s));
        }
    }

    /// A call's arguments split as Python's AST holds them: positional (with `*a`) first, then
    /// keywords (with `**k`).
    fn split_arguments(args: Nd<'t>) -> (Vec<Nd<'t>>, Vec<Nd<'t>>) {
        if args.kind() != "argument_list" {
            return (vec![args], Vec::new());
        }
        named(args)
            .into_iter()
            .partition(|a| !matches!(a.kind(), "keyword_argument" | "dictionary_splat"))
    }

    /// Class bases and keywords (the same shape as call arguments).
    pub fn call_arguments(&mut self, args: Nd<'t>) {
        let (positional, keywords) = Self::split_arguments(args);
        positional.into_iter().for_each(|a| self.expr(a));
        keywords.into_iter().for_each(|k| self.expr(k));
    }

    /// pyflakes' `CALL`, with its `typing.cast` and `TypeVar` special cases.
    fn call(&mut self, node: Nd<'t>) {
        let (Some(func), Some(args)) = (
            node.child_by_field_name("function"),
            node.child_by_field_name("arguments"),
        ) else {
            return named(node).into_iter().for_each(|k| self.expr(k));
        };
        let (positional, keywords) = Self::split_arguments(args);
        if self.is_typing(func, Some("TypeVar")) {
            // The name argument is not visited, constraints and `bound=` are annotations.
            let mut annotated: Vec<Nd<'t>> = positional.iter().skip(1).copied().collect();
            self.with_ann(Ann::None, |c| {
                for k in &keywords {
                    let is_bound = k
                        .child_by_field_name("name")
                        .is_some_and(|n| c.text_of(n) == "bound");
                    match k.child_by_field_name("value") {
                        Some(v) if is_bound => annotated.push(v),
                        _ => c.expr(*k),
                    }
                }
                c.expr_in(func, true);
            });
            self.with_ann(Ann::Bare, |c| annotated.iter().for_each(|a| c.expr(*a)));
            return;
        }
        if self.is_typing(func, Some("cast"))
            && let Some(first) = positional.first()
        {
            self.with_ann(Ann::Bare, |c| c.expr(*first));
        }
        self.expr_in(func, true);
        for a in positional {
            self.expr_in(a, true);
        }
        for k in keywords {
            self.expr(k);
        }
    }

    /// pyflakes' `GENERATOREXP`: a scope of its own; per generator its iterable, target and
    /// conditions, then the element.
    fn comprehension(&mut self, node: Nd<'t>) {
        self.push_scope(ScopeKind::Generator);
        for k in named(node) {
            match k.kind() {
                "for_in_clause" => {
                    let rights: Vec<Nd<'t>> = k.children_by_field_name("right").collect();
                    rights.into_iter().for_each(|r| self.expr(r));
                    if let Some(left) = k.child_by_field_name("left") {
                        self.target(left, Store::Comprehension, false);
                    }
                }
                "if_clause" => named(k).into_iter().for_each(|e| self.expr(e)),
                _ => {}
            }
        }
        if let Some(body) = node.child_by_field_name("body") {
            if body.kind() == "pair" {
                named(body).into_iter().for_each(|e| self.expr(e));
            } else {
                self.expr(body);
            }
        }
        self.pop_scope();
    }

    /// pyflakes' `handleStringAnnotation`: the string parsed as one expression whose names are
    /// all reported at the string's position.
    pub fn string_annotation(&mut self, text: &str, at: (usize, usize)) {
        // `ast.parse` refuses leading indentation.
        if text.starts_with([' ', '\t', '\x0c']) {
            return;
        }
        let mut parser = match self.annotation_parser.take() {
            Some(p) => p,
            None => {
                let mut p = Parser::new();
                if p.set_language(&tree_sitter_python::LANGUAGE.into())
                    .is_err()
                {
                    return;
                }
                p
            }
        };
        let tree = parser.parse(text, None);
        self.annotation_parser = Some(parser);
        let Some(tree) = tree else { return };
        if tree.root_node().has_error() {
            return;
        }
        let flat = Flat::new(&tree, text);
        // A string is not checked for depth like the file it is in: refuse what the file
        // itself could not nest.
        if flat.depth() > crate::source::MAX_DEPTH {
            return;
        }
        let root = flat.root();
        let stmts = named(root);
        let [stmt] = stmts.as_slice() else { return };
        if stmt.kind() != "expression_statement" {
            return;
        }
        let exprs = named(*stmt);
        if exprs
            .iter()
            .any(|e| matches!(e.kind(), "assignment" | "augmented_assignment"))
        {
            return;
        }
        self.with_ann(Ann::String, |c| {
            for e in exprs {
                c.annotation_loads(e, at);
            }
        });
    }

    /// Names of an expression parsed from a string annotation (a tree of its own): loads only,
    /// every one at the string's position.
    fn annotation_loads(&mut self, node: Nd, at: (usize, usize)) {
        match node.kind() {
            "identifier" => self.handle_load(node.text(), at),
            "attribute" => {
                if let Some(obj) = node.child_by_field_name("object") {
                    self.annotation_loads(obj, at);
                }
            }
            "keyword_argument" => {
                if let Some(v) = node.child_by_field_name("value") {
                    self.annotation_loads(v, at);
                }
            }
            "string" | "concatenated_string" => {
                if let Some(StrValue::Str(s)) = string_value(node)
                    && self.ann != Ann::None
                {
                    self.defer(Deferred::StringAnnotation(s.into_owned(), at.0, at.1));
                }
            }
            "subscript" => {
                let Some(value) = node.child_by_field_name("value") else {
                    return;
                };
                let slices: Vec<Nd> = node.children_by_field_name("subscript").collect();
                let typing = match unparen(value).kind() {
                    "identifier" => self.bare_name_is_typing(unparen(value).text(), None),
                    "attribute" => {
                        let v = unparen(value);
                        match v.child_by_field_name("object") {
                            Some(o) if o.kind() == "identifier" => self.module_is_typing(o.text()),
                            _ => false,
                        }
                    }
                    _ => false,
                };
                let ann = if is_name_or_attr(value, "Literal") {
                    Ann::None
                } else if typing {
                    Ann::Bare
                } else {
                    self.ann
                };
                let annotated = is_name_or_attr(value, "Annotated");
                self.annotation_loads(value, at);
                let saved = std::mem::replace(&mut self.ann, ann);
                match slice_elements(&slices) {
                    Some(elts) if annotated && elts.len() >= 2 => {
                        self.ann = saved;
                        self.annotation_loads(elts[0], at);
                        self.ann = Ann::None;
                        elts[1..].iter().for_each(|e| self.annotation_loads(*e, at));
                    }
                    _ => slices.iter().for_each(|s| self.annotation_loads(*s, at)),
                }
                self.ann = saved;
            }
            _ => {
                for k in named(node) {
                    self.annotation_loads(k, at);
                }
            }
        }
    }
}
