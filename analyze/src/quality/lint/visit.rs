//! pyflakes' node handlers over tree-sitter nodes, in the order pyflakes visits Python's AST
//! (`iter_child_nodes` puts `value`, `iter` and `generators` first: `x = x` loads before it
//! stores, a comprehension's iterable comes before its element).

use super::Rule;
use super::checker::{Ann, Checker, Deferred, pos};
use super::scope::{Binding, Kind, ScopeKind};
use crate::quality::flat::Nd;
use crate::quality::literal::{StrValue, string_value};
use std::borrow::Cow;

/// The statement a name is stored by, which decides the kind of its binding.
#[derive(Clone, Copy)]
pub(super) enum Store<'t> {
    /// `x = …`; `literal` when every target and the value are tuples/lists (`a, b = 1, 2`).
    Assign {
        literal: bool,
        value: Option<Nd<'t>>,
    },
    AugAssign {
        value: Nd<'t>,
    },
    AnnAssign {
        value: Option<Nd<'t>>,
    },
    For,
    Comprehension,
    With,
    NamedExpr,
    Del,
}

/// Unwrap `( … )`: Python's AST has no node for grouping parentheses.
pub(crate) fn unparen(mut node: Nd) -> Nd {
    loop {
        let inner = match node.kind() {
            "parenthesized_expression" => node.first_real_child(),
            // `(a) = 1`: tree-sitter reads a one-element tuple pattern without comma.
            "tuple_pattern" if node.named_child_count() == 1 && !has_token(node, ",") => {
                node.first_real_child()
            }
            _ => None,
        };
        match inner {
            Some(i) => node = i,
            _ => return node,
        }
    }
}

fn has_token(node: Nd, token: &str) -> bool {
    node.children().any(|c| c.kind() == token)
}

pub(super) fn named<'t>(node: Nd<'t>) -> Vec<Nd<'t>> {
    node.named_children().filter(|c| !c.is_extra()).collect()
}

/// Kinds that are tuples or lists in Python's AST (they have `elts`).
fn has_elts(node: Nd) -> bool {
    matches!(
        unparen(node).kind(),
        "tuple"
            | "list"
            | "set"
            | "tuple_pattern"
            | "list_pattern"
            | "pattern_list"
            | "expression_list"
    )
}

fn is_statement_list(kind: &str) -> bool {
    matches!(kind, "module" | "block")
}

impl<'t> Checker<'t> {
    /// The statements of a module or block, and our unreachable-code check on them: the first
    /// statement after a `return`/`raise`/`continue`/`break` of the same block is reported.
    pub fn block(&mut self, node: Nd<'t>) {
        let mut after_jump: Option<&'static str> = None;
        let mut reported = false;
        for stmt in named(node) {
            if let Some(jump) = after_jump.take()
                && !reported
            {
                self.report(Rule::Unreachable, pos(stmt), jump, None);
                reported = true;
            }
            after_jump = match stmt.kind() {
                "return_statement" => Some("return"),
                "raise_statement" => Some("raise"),
                "continue_statement" => Some("continue"),
                "break_statement" => Some("break"),
                _ => None,
            };
            self.stmt(stmt);
        }
    }

    fn stmt(&mut self, node: Nd<'t>) {
        match node.kind() {
            "expression_statement" => {
                let kids = named(node);
                match kids.as_slice() {
                    [one] if one.kind() == "assignment" => self.assignment(*one),
                    [one] if one.kind() == "augmented_assignment" => self.aug_assignment(*one),
                    _ => kids.into_iter().for_each(|k| self.expr(k)),
                }
            }
            "return_statement" => {
                if !matches!(
                    self.kind(self.current()),
                    ScopeKind::Class | ScopeKind::Module
                ) {
                    named(node).into_iter().for_each(|k| self.expr(k));
                }
            }
            "delete_statement" => {
                for target in named(node) {
                    self.target(target, Store::Del, false);
                }
            }
            "global_statement" | "nonlocal_statement" => {
                let names: Vec<&'t str> = named(node)
                    .into_iter()
                    .filter(|n| n.kind() == "identifier")
                    .map(|n| self.text_of(n))
                    .collect();
                self.global(&names, node);
            }
            "import_statement" => self.import(node),
            "import_from_statement" => self.import_from(node),
            "future_import_statement" => self.import_future(node),
            "if_statement" | "elif_clause" | "while_statement" => {
                for k in named(node) {
                    match k.kind() {
                        "block" => self.block(k),
                        "elif_clause" | "else_clause" => self.stmt(k),
                        _ => self.expr(k),
                    }
                }
            }
            "else_clause" | "finally_clause" | "block" => {
                if node.kind() == "block" {
                    self.block(node);
                } else {
                    named(node)
                        .into_iter()
                        .filter(|k| k.kind() == "block")
                        .for_each(|k| self.block(k));
                }
            }
            "for_statement" => {
                for right in node.children_by_field_name("right") {
                    self.expr(right);
                }
                if let Some(left) = node.child_by_field_name("left") {
                    self.target(left, Store::For, false);
                }
                if let Some(body) = node.child_by_field_name("body") {
                    self.block(body);
                }
                if let Some(alt) = node.child_by_field_name("alternative") {
                    self.stmt(alt);
                }
            }
            "try_statement" => self.try_statement(node),
            "with_statement" => {
                for k in named(node) {
                    match k.kind() {
                        "with_clause" => {
                            for item in named(k) {
                                self.with_item(item);
                            }
                        }
                        "block" => self.block(k),
                        _ => self.expr(k),
                    }
                }
            }
            "function_definition" => self.function_def(node, &[]),
            "class_definition" => self.class_def(node, &[]),
            "decorated_definition" => {
                let decorators: Vec<Nd<'t>> = named(node)
                    .into_iter()
                    .filter(|d| d.kind() == "decorator")
                    .filter_map(Nd::first_real_child)
                    .collect();
                if let Some(def) = node.child_by_field_name("definition") {
                    if def.kind() == "class_definition" {
                        self.class_def(def, &decorators);
                    } else {
                        self.function_def(def, &decorators);
                    }
                }
            }
            "match_statement" => self.match_statement(node),
            "pass_statement" | "break_statement" | "continue_statement" | "comment" => {}
            "print_statement" | "exec_statement" => {
                self.handle_load(node.kind().trim_end_matches("_statement"), pos(node));
                named(node).into_iter().for_each(|k| self.expr(k));
            }
            _ => {
                for k in named(node) {
                    if is_statement_kind(k.kind()) {
                        self.stmt(k);
                    } else {
                        self.expr(k);
                    }
                }
            }
        }
    }

    fn assignment(&mut self, node: Nd<'t>) {
        let mut targets = Vec::new();
        let mut annotation = None;
        let value;
        let mut cur = node;
        loop {
            if let Some(left) = cur.child_by_field_name("left") {
                targets.push(left);
            }
            if annotation.is_none() {
                annotation = cur.child_by_field_name("type");
            }
            match cur.child_by_field_name("right") {
                Some(r) if r.kind() == "assignment" => cur = r,
                r => {
                    value = r;
                    break;
                }
            }
        }
        if let Some(ann) = annotation {
            self.annotation(ann);
            if let Some(v) = value {
                let inner = ann.first_real_child().unwrap_or(ann);
                if self.is_typing(inner, Some("TypeAlias")) {
                    self.annotation(v);
                } else {
                    self.expr(v);
                }
            }
            for t in targets {
                self.target(t, Store::AnnAssign { value }, false);
            }
            return;
        }
        if let Some(v) = value {
            self.expr(v);
        }
        let literal = value.is_some_and(has_elts) && targets.iter().all(|t| has_elts(*t));
        for t in targets {
            self.target(t, Store::Assign { literal, value }, false);
        }
    }

    fn aug_assignment(&mut self, node: Nd<'t>) {
        let (Some(target), Some(value)) = (
            node.child_by_field_name("left"),
            node.child_by_field_name("right"),
        ) else {
            return named(node).into_iter().for_each(|k| self.expr(k));
        };
        let t = unparen(target);
        if t.kind() == "identifier" {
            self.handle_load(self.text_of(t), pos(t));
        }
        self.expr(value);
        self.target(target, Store::AugAssign { value }, false);
    }

    /// A target in store or delete context; `nested` inside a tuple, list or starred target.
    pub fn target(&mut self, node: Nd<'t>, store: Store<'t>, nested: bool) {
        let node = unparen(node);
        match node.kind() {
            "identifier" => self.store_name(node, store, nested),
            "tuple" | "list" | "tuple_pattern" | "list_pattern" | "pattern_list"
            | "expression_list" => {
                for k in named(node) {
                    self.target(k, store, true);
                }
            }
            "list_splat_pattern" | "list_splat" | "as_pattern_target" => {
                for k in named(node) {
                    self.target(k, store, node.kind() != "as_pattern_target" || nested);
                }
            }
            "attribute" => {
                if let Some(obj) = node.child_by_field_name("object") {
                    self.expr(obj);
                }
            }
            _ => self.expr(node),
        }
    }

    fn store_name(&mut self, node: Nd<'t>, store: Store<'t>, nested: bool) {
        let name = self.text_of(node);
        if let Store::Del = store {
            let conditional = std::iter::successors(node.parent(), |n| n.parent()).any(|a| {
                matches!(
                    a.kind(),
                    "if_statement" | "elif_clause" | "while_statement" | "conditional_expression"
                )
            });
            return self.handle_delete(name, pos(node), conditional);
        }
        let cur = self.current();
        let kind = match store {
            Store::AnnAssign { value: None } => Kind::Annotation,
            Store::For | Store::Comprehension => Kind::Plain,
            _ if nested && !matches!(store, Store::Assign { literal: true, .. }) => Kind::Plain,
            Store::Assign { value, .. } | Store::AnnAssign { value }
                if name == "__all__" && !nested && self.kind(cur) == ScopeKind::Module =>
            {
                Kind::Export(self.export_names(value, false))
            }
            Store::AugAssign { value }
                if name == "__all__" && !nested && self.kind(cur) == ScopeKind::Module =>
            {
                Kind::Export(self.export_names(Some(value), true))
            }
            Store::NamedExpr => Kind::NamedExpr,
            _ => Kind::Assignment,
        };
        let (line, col) = pos(node);
        let binding = Binding::new(Cow::Borrowed(name), kind, Some(node), line, col);
        self.handle_store(binding, node, matches!(store, Store::For));
    }

    /// pyflakes' `ExportBinding` names: string entries of a list/tuple, of `[…] + […]` chains,
    /// and for `__all__ +=` the names bound so far.
    fn export_names(&mut self, value: Option<Nd<'t>>, augmented: bool) -> Vec<String> {
        let mut names = Vec::new();
        if augmented
            && let Some(b) = self.lookup(0, "__all__")
            && let Kind::Export(prev) = &self.bindings[b].kind
        {
            names = prev.clone();
        }
        let Some(value) = value.map(unparen) else {
            return names;
        };
        let mut add = |container: Nd| {
            for elt in named(container) {
                if let Some(StrValue::Str(s)) = string_value(unparen(elt)) {
                    names.push(s.into_owned());
                }
            }
        };
        let is_seq = |n: Nd| matches!(n.kind(), "list" | "tuple" | "expression_list");
        if is_seq(value) {
            add(value);
        } else if value.kind() == "binary_operator" {
            let mut cur = value;
            while let (Some(left), Some(right)) = (
                cur.child_by_field_name("left").map(unparen),
                cur.child_by_field_name("right").map(unparen),
            ) {
                if !is_seq(right) {
                    break;
                }
                add(right);
                if left.kind() == "binary_operator" {
                    cur = left;
                } else {
                    if is_seq(left) {
                        add(left);
                    }
                    break;
                }
            }
        }
        names
    }

    fn with_item(&mut self, item: Nd<'t>) {
        let Some(value) = item.child_by_field_name("value") else {
            return named(item).into_iter().for_each(|k| self.expr(k));
        };
        if value.kind() == "as_pattern" {
            let kids = named(value);
            if let Some(ctx) = kids.first() {
                self.expr(*ctx);
            }
            if let Some(alias) = value.child_by_field_name("alias") {
                self.target(alias, Store::With, false);
            }
        } else {
            self.expr(value);
        }
    }

    fn try_statement(&mut self, node: Nd<'t>) {
        let kids = named(node);
        let name_error = kids
            .iter()
            .filter(|k| k.kind() == "except_clause")
            .any(|clause| self.handler_names_name_error(*clause));
        self.name_error_handlers.push(name_error);
        if let Some(body) = node.child_by_field_name("body") {
            self.block(body);
        }
        self.name_error_handlers.pop();
        for k in kids {
            match k.kind() {
                "except_clause" => self.except_clause(k),
                "else_clause" | "finally_clause" => self.stmt(k),
                _ => {}
            }
        }
    }

    fn except_type(clause: Nd<'t>) -> (Option<Nd<'t>>, Option<Nd<'t>>) {
        let Some(value) = clause.child_by_field_name("value") else {
            return (None, None);
        };
        if value.kind() == "as_pattern" {
            let ty = value.first_real_child();
            let alias = value
                .child_by_field_name("alias")
                .and_then(Nd::first_real_child)
                .filter(|a| a.kind() == "identifier");
            (ty, alias)
        } else {
            (Some(value), None)
        }
    }

    fn handler_names_name_error(&self, clause: Nd<'t>) -> bool {
        let (Some(ty), _) = Self::except_type(clause) else {
            return false;
        };
        let ty = unparen(ty);
        let types = if ty.kind() == "tuple" {
            named(ty)
        } else {
            vec![ty]
        };
        types
            .into_iter()
            .any(|t| t.kind() == "identifier" && self.text_of(t) == "NameError")
    }

    /// pyflakes' `EXCEPTHANDLER`: the name is bound only inside the handler, and reported when
    /// the handler never uses it (at any scope level).
    fn except_clause(&mut self, clause: Nd<'t>) {
        let (ty, alias) = Self::except_type(clause);
        let body = named(clause).into_iter().find(|k| k.kind() == "block");
        let Some(alias) = alias else {
            if let Some(ty) = ty {
                self.expr(ty);
            }
            if let Some(b) = body {
                self.block(b);
            }
            return;
        };
        let name = self.text_of(alias);
        let cur = self.current();
        let (line, col) = pos(clause);
        let binding = || {
            Binding::new(
                Cow::Borrowed(name),
                Kind::Assignment,
                Some(clause),
                line,
                col,
            )
        };
        if self.lookup(cur, name).is_some() {
            self.handle_store(binding(), clause, false);
        }
        let prev = self.scopes[cur].names.remove(name);
        self.handle_store(binding(), clause, false);
        if let Some(ty) = ty {
            self.expr(ty);
        }
        if let Some(b) = body {
            self.block(b);
        }
        if let Some(b) = self.scopes[cur].names.remove(name)
            && self.bindings[b].used.is_none()
        {
            self.report(Rule::UnusedVariable, (line, col), name, None);
        }
        if let Some(p) = prev {
            self.scopes[cur].names.insert(Cow::Borrowed(name), p);
        }
    }

    /// pyflakes' `FUNCTIONDEF` + `LAMBDA`: decorators, annotations and defaults now, the body
    /// when the module is done (so it sees every module-level name).
    fn function_def(&mut self, node: Nd<'t>, decorators: &[Nd<'t>]) {
        for d in decorators {
            self.expr(*d);
        }
        if let Some(params) = node.child_by_field_name("parameters") {
            let params = named(params);
            for p in &params {
                if let Some(t) = p.child_by_field_name("type") {
                    self.annotation(t);
                }
            }
            if let Some(r) = node.child_by_field_name("return_type") {
                self.annotation(r);
            }
            for p in &params {
                if let Some(v) = p.child_by_field_name("value") {
                    self.expr(v);
                }
            }
        }
        self.defer(Deferred::Body(node));
        if let Some(name) = node.child_by_field_name("name") {
            let (line, col) = pos(node);
            let binding = Binding::new(
                Cow::Borrowed(self.text_of(name)),
                Kind::Function,
                Some(node),
                line,
                col,
            );
            self.add_binding(binding, node, for_parent(node));
        }
    }

    pub fn lambda_expr(&mut self, node: Nd<'t>) {
        if let Some(params) = node.child_by_field_name("parameters") {
            for p in named(params) {
                if let Some(v) = p.child_by_field_name("value") {
                    self.expr(v);
                }
            }
        }
        self.defer(Deferred::Body(node));
    }

    /// A deferred function or lambda body: arguments, then the body, in a new function scope.
    pub fn run_body(&mut self, node: Nd<'t>) {
        self.push_scope(ScopeKind::Function);
        if let Some(params) = node.child_by_field_name("parameters") {
            for p in named(params) {
                let ident = match p.kind() {
                    "identifier" => Some(p),
                    "default_parameter" | "typed_default_parameter" => {
                        p.child_by_field_name("name")
                    }
                    _ => named(p)
                        .into_iter()
                        .find(|c| c.kind() == "identifier")
                        .or_else(|| {
                            named(p)
                                .into_iter()
                                .find(|c| {
                                    matches!(
                                        c.kind(),
                                        "list_splat_pattern" | "dictionary_splat_pattern"
                                    )
                                })
                                .and_then(Nd::first_real_child)
                        }),
                };
                if let Some(ident) = ident.filter(|i| i.kind() == "identifier") {
                    let (line, col) = pos(node);
                    let binding = Binding::new(
                        Cow::Borrowed(self.text_of(ident)),
                        Kind::Argument,
                        Some(node),
                        line,
                        col,
                    );
                    self.add_binding(binding, ident, false);
                }
            }
        }
        if let Some(body) = node.child_by_field_name("body") {
            if node.kind() == "lambda" {
                self.expr(body);
            } else {
                self.block(body);
            }
        }
        self.pop_scope();
    }

    fn class_def(&mut self, node: Nd<'t>, decorators: &[Nd<'t>]) {
        for d in decorators {
            self.expr(*d);
        }
        if let Some(args) = node.child_by_field_name("superclasses") {
            self.call_arguments(args);
        }
        self.push_scope(ScopeKind::Class);
        if let Some(body) = node.child_by_field_name("body") {
            self.block(body);
        }
        self.pop_scope();
        if let Some(name) = node.child_by_field_name("name") {
            let (line, col) = pos(node);
            let binding = Binding::new(
                Cow::Borrowed(self.text_of(name)),
                Kind::Class,
                Some(node),
                line,
                col,
            );
            self.add_binding(binding, node, for_parent(node));
        }
    }

    /// pyflakes' `handleAnnotation`: string annotations are parsed later; bare ones are
    /// checked now, or later under `from __future__ import annotations`.
    pub fn annotation(&mut self, node: Nd<'t>) {
        let inner = if node.kind() == "type" {
            node.first_real_child().unwrap_or(node)
        } else {
            node
        };
        let inner = unparen(inner);
        if let Some(StrValue::Str(s)) = string_value(inner) {
            let (line, col) = pos(inner);
            self.defer(Deferred::StringAnnotation(s.into_owned(), line, col));
        } else if self.annotations_future {
            self.defer(Deferred::Annotation(inner));
        } else {
            let saved = std::mem::replace(&mut self.ann, Ann::Bare);
            self.expr(inner);
            self.ann = saved;
        }
    }
}

/// Whether the AST parent of a statement is a `for` (pyflakes' `getParent(…)` in `FOR_TYPES`).
fn for_parent(node: Nd) -> bool {
    let mut cur = node;
    while let Some(p) = cur.parent() {
        match p.kind() {
            "decorated_definition" | "block" | "else_clause" => cur = p,
            "for_statement" => return true,
            _ => return false,
        }
    }
    false
}

fn is_statement_kind(kind: &str) -> bool {
    kind.ends_with("_statement") || kind.ends_with("_definition") || is_statement_list(kind)
}
