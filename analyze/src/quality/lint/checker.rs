//! The core of pyflakes' `Checker`: scope stack, `addBinding`, `handleNodeLoad`,
//! `handleNodeStore`, `handleNodeDelete`, `global`, deferred function bodies and the dead-scope
//! report. `visit.rs` maps tree-sitter nodes onto these.

use super::Rule;
use super::scope::{
    Binding, BindingId, ImportForm, Kind, Scope, ScopeId, ScopeKind, Used, is_builtin,
};
use crate::quality::flat::Nd;
use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use tree_sitter::Parser;

/// pyflakes' `AnnotationState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ann {
    None,
    /// Inside a string annotation (always postponed).
    String,
    /// Inside a bare annotation (postponed with `from __future__ import annotations`).
    Bare,
}

/// Work pyflakes defers to the end of the module (`deferFunction`).
pub(super) enum Deferred<'t> {
    /// A function or lambda body.
    Body(Nd<'t>),
    /// A bare annotation under `from __future__ import annotations`.
    Annotation(Nd<'t>),
    /// A string annotation to parse: text, and the position of the string.
    StringAnnotation(String, usize, usize),
}

pub(super) struct Message {
    pub rule: Rule,
    pub line: usize,
    pub col: usize,
    pub name: String,
    /// The line of the original binding (F811, F823); `None` for a builtin (F823).
    pub orig_line: Option<usize>,
}

pub(super) const TYPING_MODULES: [&str; 2] = ["typing", "typing_extensions"];

pub(super) struct Checker<'t> {
    pub scopes: Vec<Scope<'t>>,
    pub bindings: Vec<Binding<'t>>,
    pub stack: Vec<ScopeId>,
    dead: Vec<ScopeId>,
    pub deferred: VecDeque<(Deferred<'t>, Vec<ScopeId>)>,
    /// Per enclosing `try` body: whether one of its handlers names `NameError`.
    pub name_error_handlers: Vec<bool>,
    pub ann: Ann,
    pub annotations_future: bool,
    pub messages: Vec<Message>,
    /// Builtins the module scope already holds a binding for (or had, before a `del`).
    touched_builtins: HashSet<&'static str>,
    pub annotation_parser: Option<Parser>,
}

/// Position pyflakes reports for a node: 1-based line, 1-based byte column.
pub(super) fn pos(node: Nd) -> (usize, usize) {
    let p = node.start_position();
    (p.row + 1, p.column + 1)
}

impl<'t> Checker<'t> {
    pub fn new() -> Self {
        Checker {
            scopes: Vec::new(),
            bindings: Vec::new(),
            stack: Vec::new(),
            dead: Vec::new(),
            deferred: VecDeque::new(),
            name_error_handlers: vec![false],
            ann: Ann::None,
            annotations_future: false,
            messages: Vec::new(),
            touched_builtins: HashSet::new(),
            annotation_parser: None,
        }
    }

    pub fn text_of(&self, node: Nd<'t>) -> &'t str {
        node.text()
    }

    pub fn current(&self) -> ScopeId {
        self.stack.last().copied().unwrap_or(0)
    }

    pub fn kind(&self, scope: ScopeId) -> ScopeKind {
        self.scopes[scope].kind
    }

    pub fn push_scope(&mut self, kind: ScopeKind) {
        self.scopes.push(Scope::new(kind));
        self.stack.push(self.scopes.len() - 1);
    }

    pub fn pop_scope(&mut self) {
        if let Some(s) = self.stack.pop() {
            self.dead.push(s);
        }
    }

    pub fn report(
        &mut self,
        rule: Rule,
        (line, col): (usize, usize),
        name: &str,
        orig_line: Option<usize>,
    ) {
        self.messages.push(Message {
            rule,
            line,
            col,
            name: name.to_string(),
            orig_line,
        });
    }

    /// `scope.get(name)`; the module scope holds every builtin until it is rebound or deleted,
    /// created on first look so that a file does not pay for 161 bindings it never names.
    pub fn lookup(&mut self, scope: ScopeId, name: &str) -> Option<BindingId> {
        if let Some(&b) = self.scopes[scope].names.get(name) {
            return Some(b);
        }
        if scope != 0 || self.scopes[0].kind != ScopeKind::Module {
            return None;
        }
        let builtin = is_builtin(name)?;
        if !self.touched_builtins.insert(builtin) {
            return None;
        }
        self.bindings.push(Binding::new(
            Cow::Borrowed(builtin),
            Kind::Builtin,
            None,
            0,
            0,
        ));
        let id = self.bindings.len() - 1;
        self.scopes[0].names.insert(Cow::Borrowed(builtin), id);
        Some(id)
    }

    /// `del scope[name]`; false when the name is not there.
    pub fn remove(&mut self, scope: ScopeId, name: &str) -> Option<BindingId> {
        self.lookup(scope, name)?;
        self.scopes[scope].names.remove(name)
    }

    fn in_postponed_annotation(&self) -> bool {
        self.ann == Ann::String || (self.ann == Ann::Bare && self.annotations_future)
    }

    /// pyflakes' `handleNodeLoad`.
    pub fn handle_load(&mut self, name: &str, at: (usize, usize)) {
        let cur = self.current();
        let used = Used {
            scope: cur,
            line: at.0,
            col: at.1,
        };
        let mut can_access_class_vars: Option<bool> = None;
        let mut import_starred = false;
        for i in (0..self.stack.len()).rev() {
            let sid = self.stack[i];
            if self.kind(sid) == ScopeKind::Class {
                if name == "__class__" {
                    return;
                }
                if can_access_class_vars == Some(false) {
                    continue;
                }
            }
            if let Some(b) = self.lookup(sid, name) {
                if self.bindings[b].kind == Kind::Annotation && !self.in_postponed_annotation() {
                    self.bindings[b].used = Some(used);
                    continue;
                }
                self.bindings[b].used = Some(used);
                if self.bindings[b].has_alias() {
                    // An aliased import also marks a binding named by its full name.
                    if let Kind::Import { full_name, .. } = &self.bindings[b].kind {
                        let full = full_name.clone();
                        if let Some(o) = self.lookup(sid, &full) {
                            self.bindings[o].used = Some(used);
                        }
                    }
                }
                return;
            }
            import_starred |= self.scopes[sid].import_starred;
            if can_access_class_vars != Some(false) {
                can_access_class_vars = Some(self.kind(sid) == ScopeKind::Generator);
            }
        }
        if import_starred {
            // `ImportStarUsage` (F405, not reported here): every star import counts as used.
            for i in (0..self.stack.len()).rev() {
                let ids: Vec<BindingId> =
                    self.scopes[self.stack[i]].names.values().copied().collect();
                for b in ids {
                    if matches!(
                        &self.bindings[b].kind,
                        Kind::Import {
                            form: ImportForm::Star,
                            ..
                        }
                    ) {
                        self.bindings[b].used = Some(used);
                    }
                }
            }
            return;
        }
        // `dir()` inside a class body at class creation (CPython 3.11).
        if matches!(name, "__module__" | "__qualname__") && self.kind(cur) == ScopeKind::Class {
            return;
        }
        if !self.name_error_handlers.last().copied().unwrap_or(false) {
            self.report(Rule::UndefinedName, at, name, None);
        }
    }

    /// pyflakes' `handleNodeStore` once the binding's kind is decided (the caller does that
    /// from the statement the name is bound by). `node` is the node responsible.
    pub fn handle_store(&mut self, value: Binding<'t>, node: Nd<'t>, for_target: bool) {
        let cur = self.current();
        let name = value.name.clone();
        if self.kind(cur) == ScopeKind::Function && self.lookup(cur, &name).is_none() {
            let outer: Vec<ScopeId> = self.stack[..self.stack.len().saturating_sub(1)].to_vec();
            for sid in outer {
                if !matches!(self.kind(sid), ScopeKind::Function | ScopeKind::Module) {
                    continue;
                }
                let Some(b) = self.lookup(sid, &name) else {
                    continue;
                };
                if let Some(u) = self.bindings[b].used
                    && u.scope == cur
                    && !self.scopes[cur].in_globals(&name)
                {
                    let orig = self.bindings[b].source.map(|_| self.bindings[b].line);
                    self.report(Rule::UndefinedLocal, (u.line, u.col), &name, orig);
                    break;
                }
            }
        }
        self.add_binding(value, node, for_target);
    }

    /// pyflakes' `addBinding`. `node` is the node responsible (what forks are compared on and
    /// a redefinition is reported at); `for_target` whether its statement is a `for`.
    pub fn add_binding(&mut self, value: Binding<'t>, node: Nd<'t>, for_target: bool) {
        let at = pos(node);
        let cur = self.current();
        let mut found = None;
        for i in (0..self.stack.len()).rev() {
            let sid = self.stack[i];
            if let Some(b) = self.lookup(sid, &value.name) {
                found = Some((sid, b));
                break;
            }
        }
        if let Some((sid, eid)) = found {
            let existing = &self.bindings[eid];
            if existing.kind != Kind::Builtin {
                // Only work out the forks (a walk up the tree) when something would be reported.
                let shadowed_by_loop = existing.kind.is_import() && for_target;
                let report_here = !shadowed_by_loop
                    && sid == cur
                    && existing.used.is_none()
                    && value.redefines(existing)
                    && (value.name != "_" || existing.kind.is_import());
                let remember = !shadowed_by_loop
                    && sid != cur
                    && existing.kind.is_import()
                    && value.redefines(existing);
                if (report_here || remember) && !self.different_forks(Some(node), existing.source) {
                    if report_here && !self.is_overload(eid) {
                        let line = self.bindings[eid].line;
                        self.report(Rule::Redefined, at, &value.name, Some(line));
                    } else if remember {
                        self.bindings[eid].redefined.push((at.0, at.1, for_target));
                    }
                }
            }
        }
        let mut value = value;
        let in_cur = self.lookup(cur, &value.name);
        if let Some(b) = in_cur {
            value.used = self.bindings[b].used;
        }
        if in_cur.is_some() && value.kind == Kind::Annotation {
            return;
        }
        let name = value.name.clone();
        if value.kind == Kind::NamedExpr {
            // PEP 572: the binding goes to the scope the outermost comprehension is in.
            let target = self
                .stack
                .iter()
                .rev()
                .copied()
                .find(|s| self.kind(*s) != ScopeKind::Generator)
                .unwrap_or(0);
            match self.lookup(target, &name) {
                Some(b) if self.bindings[b].kind == Kind::Annotation => {
                    let id = self.push_binding(value);
                    self.scopes[target].names.insert(name, id);
                }
                Some(_) => {}
                None => {
                    let id = self.push_binding(value);
                    self.scopes[target].names.insert(name, id);
                }
            }
        } else {
            let id = self.push_binding(value);
            self.scopes[cur].names.insert(name, id);
        }
    }

    fn push_binding(&mut self, b: Binding<'t>) -> BindingId {
        self.bindings.push(b);
        self.bindings.len() - 1
    }

    /// pyflakes' `handleNodeDelete`; `conditional` when an `if`/`while`/ternary encloses it.
    pub fn handle_delete(&mut self, name: &str, at: (usize, usize), conditional: bool) {
        if conditional {
            return;
        }
        let cur = self.current();
        if self.kind(cur) == ScopeKind::Function && self.scopes[cur].in_globals(name) {
            if let Some(i) = super::scope::ALWAYS_USED.iter().position(|n| *n == name) {
                self.scopes[cur].globals_removed |= 1 << i;
            }
        } else if self.remove(cur, name).is_none() {
            self.report(Rule::UndefinedName, at, name, None);
        }
    }

    /// pyflakes' `GLOBAL`/`NONLOCAL`: the names become used bindings of every enclosing scope.
    pub fn global(&mut self, names: &[&'t str], stmt: Nd<'t>) {
        let cur = self.current();
        if cur == 0 {
            return;
        }
        let at = pos(stmt);
        for &name in names {
            let mut b = Binding::new(
                Cow::Borrowed(name),
                Kind::Assignment,
                Some(stmt),
                at.0,
                at.1,
            );
            b.used = Some(Used {
                scope: 0,
                line: at.0,
                col: at.1,
            });
            self.messages
                .retain(|m| !(m.rule == Rule::UndefinedName && m.name == name));
            let id = self.push_binding(b);
            if self.lookup(0, name).is_none() {
                self.scopes[0].names.insert(Cow::Borrowed(name), id);
            }
            for i in 1..self.stack.len() {
                let sid = self.stack[i];
                self.scopes[sid].names.insert(Cow::Borrowed(name), id);
            }
        }
    }

    pub fn defer(&mut self, d: Deferred<'t>) {
        self.deferred.push_back((d, self.stack.clone()));
    }

    /// Whether the binding is a function decorated with `typing.overload`.
    fn is_overload(&mut self, b: BindingId) -> bool {
        if self.bindings[b].kind != Kind::Function {
            return false;
        }
        let Some(parent) = self.bindings[b].source.and_then(|s| s.parent()) else {
            return false;
        };
        if parent.kind() != "decorated_definition" {
            return false;
        }
        let decorators: Vec<Nd> = parent
            .named_children()
            .filter(|d| d.kind() == "decorator")
            .filter_map(Nd::first_real_child)
            .collect();
        decorators
            .into_iter()
            .any(|d| self.is_typing(d, Some("overload")))
    }

    /// pyflakes' `_is_typing(node, attr)` (`attr: None`: `_is_any_typing_member`).
    pub fn is_typing(&mut self, node: Nd, attr: Option<&str>) -> bool {
        let node = super::visit::unparen(node);
        match node.kind() {
            "identifier" => self.bare_name_is_typing(node.text(), attr),
            "attribute" => {
                let (Some(obj), Some(a)) = (
                    node.child_by_field_name("object"),
                    node.child_by_field_name("attribute"),
                ) else {
                    return false;
                };
                if obj.kind() != "identifier" {
                    return false;
                }
                let (obj, a) = (obj.text(), a.text());
                self.module_is_typing(obj) && attr.is_none_or(|x| x == a)
            }
            _ => false,
        }
    }

    pub fn bare_name_is_typing(&mut self, name: &str, attr: Option<&str>) -> bool {
        for i in (0..self.stack.len()).rev() {
            if let Some(b) = self.lookup(self.stack[i], name) {
                return match &self.bindings[b].kind {
                    Kind::Import {
                        form: ImportForm::From { module, real_name },
                        ..
                    } => {
                        TYPING_MODULES.contains(&module.as_str())
                            && attr.is_none_or(|a| a == real_name)
                    }
                    _ => false,
                };
            }
        }
        false
    }

    pub fn module_is_typing(&mut self, name: &str) -> bool {
        for i in (0..self.stack.len()).rev() {
            if let Some(b) = self.lookup(self.stack[i], name) {
                return matches!(&self.bindings[b].kind, Kind::Import { full_name, .. } if TYPING_MODULES.contains(&full_name.as_str()));
            }
        }
        false
    }

    /// pyflakes' `differentForks`: whether the two nodes sit in different branches of the
    /// `if`/`try`/`match` that is their nearest common ancestor in Python's AST.
    fn different_forks(&self, l: Option<Nd<'t>>, r: Option<Nd<'t>>) -> bool {
        let (Some(l), Some(r)) = (l, r) else {
            return false;
        };
        let (lp, rp) = (self.path(l), self.path(r));
        let common = lp.iter().zip(&rp).take_while(|(a, b)| a == b).count();
        // Paths start at the module; a common ancestor that is the module, or one node
        // containing the other, is no fork.
        if common <= 1 || common >= lp.len() || common >= rp.len() {
            return false;
        }
        let c = lp[common - 1];
        let (lc, rc) = (&lp[common..], &rp[common..]);
        match c.kind() {
            "if_statement" => {
                // The common `If` is the earlier clause's; a later clause is in its orelse.
                let (li, lpart) = if_fork(c, lc);
                let (ri, rpart) = if_fork(c, rc);
                let i = li.min(ri);
                let part = |idx: usize, p: IfPart| if idx == i { p } else { IfPart::Orelse };
                (part(li, lpart) == IfPart::Body) != (part(ri, rpart) == IfPart::Body)
            }
            "elif_clause" => {
                let body = c.child_by_field_name("consequence");
                (Some(lc[0]) == body) != (Some(rc[0]) == body)
            }
            "try_statement" => {
                let star = c
                    .named_children()
                    .any(|e| e.kind() == "except_clause" && e.children().any(|t| t.kind() == "*"));
                !star && try_part(lc[0]) != try_part(rc[0])
            }
            "match_statement" => case_part(lc) != case_part(rc),
            "block" if c.parent().is_some_and(|p| p.kind() == "match_statement") => {
                case_part(lc) != case_part(rc)
            }
            _ => false,
        }
    }

    /// The nodes from the module down to `node`.
    fn path(&self, node: Nd<'t>) -> Vec<Nd<'t>> {
        let mut path: Vec<Nd<'t>> = std::iter::successors(Some(node), |n| n.parent()).collect();
        path.reverse();
        path
    }

    /// pyflakes' `checkDeadScopes`, run once every deferred body has been checked.
    pub fn report_dead_scopes(&mut self) {
        let dead = std::mem::take(&mut self.dead);
        for sid in dead {
            let kind = self.kind(sid);
            if kind == ScopeKind::Class {
                continue;
            }
            let mut entries: Vec<(Cow<'t, str>, BindingId)> = self.scopes[sid]
                .names
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            entries.sort_by_key(|(_, b)| *b);
            if kind == ScopeKind::Function {
                let scope = &self.scopes[sid];
                let mut unused = Vec::new();
                for (name, b) in &entries {
                    let binding = &self.bindings[*b];
                    if binding.used.is_none()
                        && name != "_"
                        && !scope.in_globals(name)
                        && !scope.uses_locals
                        && binding.kind.is_assignment()
                    {
                        unused.push(((binding.line, binding.col), name.to_string()));
                    }
                }
                for (at, name) in unused {
                    self.report(Rule::UnusedVariable, at, &name, None);
                }
            }
            let export = entries
                .iter()
                .find(|(n, _)| n == "__all__")
                .map(|(_, b)| *b)
                .filter(|b| matches!(self.bindings[*b].kind, Kind::Export(_)));
            let mut all_names: Vec<String> = Vec::new();
            if let Some(e) = export {
                if let Kind::Export(names) = &self.bindings[e].kind {
                    all_names = names.clone();
                }
                let at = (self.bindings[e].line, self.bindings[e].col);
                let mut undefined = Vec::new();
                for n in &all_names {
                    if self.lookup(sid, n).is_none() {
                        undefined.push(n.clone());
                    }
                }
                if !undefined.is_empty() {
                    if !self.scopes[sid].import_starred {
                        for n in &undefined {
                            self.report(Rule::UndefinedExport, at, n, None);
                        }
                    } else {
                        let ids: Vec<BindingId> =
                            self.scopes[sid].names.values().copied().collect();
                        for b in ids {
                            if matches!(
                                &self.bindings[b].kind,
                                Kind::Import {
                                    form: ImportForm::Star,
                                    ..
                                }
                            ) {
                                self.bindings[b].used = Some(Used {
                                    scope: sid,
                                    line: at.0,
                                    col: at.1,
                                });
                            }
                        }
                    }
                }
            }
            for (_, b) in &entries {
                let binding = &self.bindings[*b];
                if !binding.kind.is_import() {
                    continue;
                }
                let used = binding.used.is_some() || all_names.iter().any(|n| *n == binding.name);
                let at = (binding.line, binding.col);
                let redefined = binding.redefined.clone();
                if !used {
                    let display = binding.import_display();
                    self.report(Rule::UnusedImport, at, &display, None);
                }
                for (line, col, by_loop) in redefined {
                    if by_loop || used {
                        continue;
                    }
                    let name = self.bindings[*b].name.to_string();
                    self.report(Rule::Redefined, (line, col), &name, Some(at.0));
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfPart {
    Test,
    Body,
    Orelse,
}

/// Which `If` of an `if`/`elif` chain (0 for the `if`, k for the k-th `elif`) a path below the
/// `if_statement` lies in, and in which part of it. `else` is the orelse of the last `If`.
fn if_fork(stmt: Nd, below: &[Nd]) -> (usize, IfPart) {
    let elifs: Vec<Nd> = stmt
        .children_by_field_name("alternative")
        .filter(|a| a.kind() == "elif_clause")
        .collect();
    let child = below[0];
    if Some(child) == stmt.child_by_field_name("consequence") {
        return (0, IfPart::Body);
    }
    if let Some(k) = elifs.iter().position(|e| *e == child) {
        let body = child.child_by_field_name("consequence");
        let part = if below.get(1).copied() == body {
            IfPart::Body
        } else {
            IfPart::Test
        };
        return (k + 1, part);
    }
    if child.kind() == "else_clause" {
        return (elifs.len(), IfPart::Orelse);
    }
    (0, IfPart::Test)
}

/// The alternative of a `try` a child belongs to: 0 for the body and `else`, k + 1 for the k-th
/// handler, `None` for `finally`.
fn try_part(child: Nd) -> Option<usize> {
    match child.kind() {
        "finally_clause" => None,
        "except_clause" => {
            let mut n = 0;
            let mut prev = child.prev_named_sibling();
            while let Some(p) = prev {
                if p.kind() == "except_clause" {
                    n += 1;
                }
                prev = p.prev_named_sibling();
            }
            Some(n + 1)
        }
        _ => Some(0),
    }
}

/// The `case` body a path below a `match` lies in (`None`: subject, pattern or guard).
fn case_part(below: &[Nd]) -> Option<usize> {
    let mut i = 0;
    if below.first().is_some_and(|b| b.kind() == "block") {
        i = 1;
    }
    let case = below.get(i).filter(|c| c.kind() == "case_clause")?;
    let body = case.child_by_field_name("consequence");
    if below.get(i + 1).copied() == body {
        Some(case.start_byte())
    } else {
        None
    }
}
