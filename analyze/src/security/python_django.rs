//! Bandit's Django rules: B610 (`extra`), B611 (`RawSQL`) and B703 (`mark_safe` on data it
//! cannot prove constant, by Bandit's own little assignment tracker, reproduced here with its
//! quirks: only a scope's first target counts, branches are searched whole).

use super::python::{Issue, Walk, issue};
use super::python_ast::NodeExt;
use super::python_ast::{kids, line, str_constant, unparen};
use super::python_calls::Call;
use crate::finding::Level;
use tree_sitter::Node;

/// Bandit's `keywords2dict` plus positional arguments under their `extra()` names.
fn extra_kwargs<'t>(call: &Call<'t>) -> Vec<(Option<&'t str>, Node<'t>)> {
    let mut kwargs: Vec<(Option<&'t str>, Node<'t>)> = Vec::new();
    let mut set = |k: Option<&'t str>, v: Node<'t>| match kwargs.iter_mut().find(|(x, _)| *x == k) {
        Some(slot) => slot.1 = v,
        None => kwargs.push((k, v)),
    };
    for &(k, v) in &call.keywords {
        set(k, v);
    }
    let names = [
        "select",
        "where",
        "params",
        "tables",
        "order_by",
        "select_params",
    ];
    for (name, &arg) in names.iter().zip(&call.args) {
        set(Some(name), arg);
    }
    kwargs
}

/// B610: `.extra()` with SQL that is not all string literals.
pub(super) fn extra_used(w: &Walk, call: &Call) -> Option<Issue> {
    if call.name() != "extra" {
        return None;
    }
    let kwargs = extra_kwargs(call);
    let get = |k: &str| {
        kwargs
            .iter()
            .find(|(x, _)| *x == Some(k))
            .map(|&(_, v)| unparen(v))
    };
    let literal = |n: Node| str_constant(w.src, n).is_some();
    let mut insecure = false;
    for key in ["where", "tables"] {
        if let Some(v) = get(key) {
            if v.kind_name() == "list" {
                if !kids(v).into_iter().all(literal) {
                    insecure = true;
                }
            } else {
                insecure = true;
                break;
            }
        }
    }
    if !insecure && let Some(select) = get("select") {
        insecure = if select.kind_name() == "dictionary" {
            let items = kids(select);
            // A `**splat` is a `None` key in `ast.Dict`: not a literal.
            let keys_ok = items
                .iter()
                .all(|p| p.kind_name() == "pair" && p.field("key").is_some_and(literal));
            let values_ok = items
                .iter()
                .all(|p| p.kind_name() == "pair" && p.field("value").is_some_and(literal));
            !(keys_ok && values_ok)
        } else {
            true
        };
    }
    insecure.then(|| {
        issue(
            Level::Medium,
            Level::Medium,
            "Use of extra potential SQL attack vector.",
        )
    })
}

/// B611: `RawSQL` over anything but a string literal.
pub(super) fn rawsql_used(w: &Walk, call: &Call) -> Option<Issue> {
    if !w.names.imported_like("django.db.models") || call.name() != "RawSQL" {
        return None;
    }
    let sql = match call.args.first() {
        Some(&a) => a,
        // Bandit indexes `kwargs["sql"]`: without it the test raises.
        None => call
            .keywords
            .iter()
            .rev()
            .find(|(k, _)| *k == Some("sql"))
            .map(|&(_, v)| v)?,
    };
    if str_constant(w.src, sql).is_some() {
        return None;
    }
    Some(issue(
        Level::Medium,
        Level::Medium,
        "Use of RawSQL potential SQL attack vector.",
    ))
}

/// B703: `mark_safe` and friends on data not proven to be string constants.
pub(super) fn mark_safe(w: &Walk, call: &Call, path: &[Node]) -> Option<Issue> {
    const AFFECTED: &[&str] = &[
        "mark_safe",
        "SafeText",
        "SafeUnicode",
        "SafeString",
        "SafeBytes",
    ];
    if !w.names.imported_like("django.utils.safestring") || !AFFECTED.contains(&call.name()) {
        return None;
    }
    // Bandit indexes `args[0]`: without arguments the test raises.
    let xss = unparen(*call.args.first()?);
    if str_constant(w.src, xss).is_some() {
        return None;
    }
    // The scope Bandit searches: the nearest enclosing `def` (not `async def`) or the module,
    // where a decorator's parent in `ast` is the function it decorates.
    let mut scope = None;
    let mut in_decorator = false;
    for &n in path.iter().rev().skip(1) {
        match n.kind_name() {
            "decorator" => in_decorator = true,
            "decorated_definition" if in_decorator => {
                in_decorator = false;
                if let Some(def) = n.field("definition").filter(|d| is_plain_def(*d)) {
                    scope = Some(def);
                    break;
                }
            }
            "module" => {
                scope = Some(n);
                break;
            }
            _ if is_plain_def(n) => {
                scope = Some(n);
                break;
            }
            _ => {}
        }
    }
    let scope = scope?;
    let tracker = Tracker { w, scope, depth: 0 };
    let secure = match xss.kind_name() {
        "identifier" => {
            let name = w.src.text_of(xss);
            if is_plain_def(scope) && positional_params(w, scope).contains(&name) {
                Ok(false)
            } else {
                tracker.var(name, line(call.node))
            }
        }
        "call" => tracker.call(&Format::of_call(w, xss)),
        "binary_operator" => match Format::of_percent(w, xss) {
            Some(f) => tracker.call(&f),
            None => Ok(false),
        },
        _ => Ok(false),
    };
    match secure {
        // A Python exception inside Bandit's tracker: no finding.
        Err(()) => None,
        Ok(true) => None,
        Ok(false) => Some(issue(
            Level::Medium,
            Level::High,
            "Potential XSS on mark_safe function.",
        )),
    }
}

fn is_plain_def(n: Node) -> bool {
    n.kind_name() == "function_definition" && n.child(0).is_none_or(|c| c.kind_name() != "async")
}

/// `ast.arguments.args`: positional parameters after any `/`.
fn positional_params<'s>(w: &Walk<'s>, def: Node) -> Vec<&'s str> {
    let mut out = Vec::new();
    let Some(params) = def.field("parameters") else {
        return out;
    };
    for p in kids(params) {
        let name = match p.kind_name() {
            "positional_separator" => {
                out.clear();
                continue;
            }
            "keyword_separator" | "list_splat_pattern" | "dictionary_splat_pattern" => break,
            "identifier" => Some(p),
            "typed_parameter" => match kids(p).first() {
                Some(n) if n.kind_name() == "identifier" => Some(*n),
                _ => break,
            },
            "default_parameter" | "typed_default_parameter" => p.field("name"),
            _ => None,
        };
        if let Some(n) = name.filter(|n| n.kind_name() == "identifier") {
            out.push(w.src.text_of(n));
        }
    }
    out
}

/// A `"...".format(...)` call as Bandit's `evaluate_call` sees it, or the call Bandit builds
/// from `"..." % args`.
struct Format<'t> {
    evaluate: bool,
    args: Vec<Node<'t>>,
    /// The call's line: its name arguments are judged from the statements before it.
    line: usize,
}

impl<'t> Format<'t> {
    fn of_call(w: &Walk<'t>, call: Node<'t>) -> Format<'t> {
        let func = call.field("function").map(unparen);
        let on_constant_format = func.is_some_and(|f| {
            f.kind_name() == "attribute"
                && f.field("attribute")
                    .is_some_and(|a| w.src.text_of(a) == "format")
                && f.field("object")
                    .is_some_and(|o| super::python_ast::is_constant(w.src, o))
        });
        let mut args = Vec::new();
        let mut keywords = false;
        if let Some(a) = call.field("arguments") {
            if a.kind_name() == "generator_expression" {
                args.push(a);
            } else {
                for c in kids(a) {
                    match c.kind_name() {
                        "keyword_argument" | "dictionary_splat" => keywords = true,
                        _ => args.push(c),
                    }
                }
            }
        }
        Format {
            evaluate: on_constant_format && !keywords,
            args,
            line: line(call),
        }
    }

    /// Bandit's `transform2call`: `"fmt" % x` as `"fmt".format(x)`, `% (a, b)` as `(a, b)`.
    fn of_percent(w: &Walk<'t>, op: Node<'t>) -> Option<Format<'t>> {
        let operator = op.field("operator")?;
        let left = op.field("left")?;
        if operator.kind_name() != "%" || str_constant(w.src, left).is_none() {
            return None;
        }
        let right = unparen(op.field("right")?);
        let args = if right.kind_name() == "tuple" {
            kids(right)
        } else {
            vec![right]
        };
        Some(Format {
            evaluate: true,
            args,
            line: line(op),
        })
    }
}

/// What `DeepAssignation.is_assigned` returns.
enum Assigned<'t> {
    No,
    /// The assigned expression.
    Value(Node<'t>),
    /// A `with` statement binding the name: truthy, and never "secure".
    With,
    List(Vec<Assigned<'t>>),
}

impl Assigned<'_> {
    fn truthy(&self) -> bool {
        match self {
            Assigned::No => false,
            Assigned::List(v) => !v.is_empty(),
            _ => true,
        }
    }
}

/// Python's recursion limit, as far as Bandit's tracker is concerned: past it Bandit raises.
const MAX_DEPTH: usize = 200;

struct Tracker<'w, 's> {
    w: &'w Walk<'s>,
    scope: Node<'s>,
    depth: usize,
}

type Res<T> = Result<T, ()>;

impl<'s> Tracker<'_, 's> {
    fn deeper(&self) -> Res<Tracker<'_, 's>> {
        if self.depth >= MAX_DEPTH {
            return Err(());
        }
        Ok(Tracker {
            w: self.w,
            scope: self.scope,
            depth: self.depth + 1,
        })
    }

    fn text(&self, n: Node) -> &'s str {
        self.w.src.text_of(n)
    }

    fn body(&self) -> Vec<Node<'s>> {
        if self.scope.kind_name() == "module" {
            kids(self.scope)
        } else {
            self.scope.field("body").map(kids).unwrap_or_default()
        }
    }

    /// Bandit's `evaluate_var`: whether the name holds only string constants, judged from the
    /// scope's statements before line `until`.
    fn var(&self, name: &str, until: usize) -> Res<bool> {
        let t = self.deeper()?;
        if is_plain_def(self.scope) && positional_params(self.w, self.scope).contains(&name) {
            return Ok(false);
        }
        let mut secure = false;
        for stmt in t.body() {
            if statement_line(stmt) >= until {
                break;
            }
            let budget = &self.w.tracker_budget;
            budget.set(budget.get().checked_sub(1).ok_or(())?);
            let to = t.assigned(stmt, name)?;
            if !to.truthy() {
                continue;
            }
            match to {
                Assigned::Value(v) => {
                    let v = unparen(v);
                    if str_constant(self.w.src, v).is_some() {
                        secure = true;
                    } else if v.kind_name() == "identifier" {
                        secure = t.var(t.text(v), line(v))?;
                    } else if v.kind_name() == "call" {
                        secure = t.call(&Format::of_call(self.w, v))?;
                    } else {
                        return Ok(false);
                    }
                }
                Assigned::List(items) => {
                    let mut n = 0;
                    for item in &items {
                        let Assigned::Value(v) = item else { break };
                        let v = unparen(*v);
                        if str_constant(self.w.src, v).is_some() {
                            n += 1;
                        } else if v.kind_name() == "identifier" {
                            if t.var(t.text(v), statement_line(stmt))? {
                                n += 1;
                            } else {
                                break;
                            }
                        } else {
                            break;
                        }
                    }
                    if n != items.len() {
                        return Ok(false);
                    }
                    secure = true;
                }
                Assigned::With | Assigned::No => return Ok(false),
            }
        }
        Ok(secure)
    }

    /// Bandit's `evaluate_call`: a constant's `.format(...)` whose arguments are all secure.
    fn call(&self, f: &Format<'s>) -> Res<bool> {
        if !f.evaluate {
            return Ok(false);
        }
        let t = self.deeper()?;
        let mut args = f.args.clone();
        let mut secure = 0;
        let mut k = 0;
        // The list grows while it is read, as Bandit's loop over `args` does.
        while k < args.len() {
            let a = unparen(args[k]);
            if str_constant(self.w.src, a).is_some() {
                secure += 1;
            } else if a.kind_name() == "identifier" {
                if t.var(t.text(a), f.line)? {
                    secure += 1;
                } else {
                    break;
                }
            } else if a.kind_name() == "call" {
                if t.call(&Format::of_call(self.w, a))? {
                    secure += 1;
                } else {
                    break;
                }
            } else if a.kind_name() == "list_splat"
                && kids(a)
                    .first()
                    .map(|&v| unparen(v))
                    .is_some_and(|v| matches!(v.kind_name(), "list" | "tuple"))
            {
                if let Some(&v) = kids(a).first() {
                    args.extend(kids(unparen(v)));
                }
                secure += 1;
            } else {
                break;
            }
            k += 1;
        }
        Ok(secure == args.len())
    }

    /// `DeepAssignation.is_assigned`.
    fn assigned(&self, stmt: Node<'s>, name: &str) -> Res<Assigned<'s>> {
        let t = self.deeper()?;
        let block = |n: Option<Node<'s>>| n.map(kids).unwrap_or_default();
        let clause_block = |n: Node<'s>| {
            kids(n)
                .into_iter()
                .filter(|c| c.kind_name() == "block")
                .collect::<Vec<_>>()
        };
        Ok(match stmt.kind_name() {
            "expression_statement" => match kids(stmt).first() {
                Some(&a) if a.kind_name() == "assignment" => t.assignment(a, name)?,
                Some(&a) if a.kind_name() == "augmented_assignment" => {
                    let target = a.field("left").map(unparen);
                    match (target, a.field("right")) {
                        (Some(tg), Some(v))
                            if tg.kind_name() == "identifier" && t.text(tg) == name =>
                        {
                            Assigned::Value(v)
                        }
                        _ => Assigned::No,
                    }
                }
                _ => Assigned::No,
            },
            "decorated_definition" => match stmt.field("definition") {
                Some(d) => t.assigned(d, name)?,
                None => Assigned::No,
            },
            "function_definition" if is_plain_def(stmt) => {
                Assigned::List(t.assigned_in(&block(stmt.field("body")), name)?)
            }
            "with_statement" if stmt.child(0).is_none_or(|c| c.kind_name() != "async") => {
                let body = block(stmt.field("body"));
                let items: Vec<Node> = kids(stmt)
                    .into_iter()
                    .filter(|c| c.kind_name() == "with_clause")
                    .flat_map(kids)
                    .filter(|c| c.kind_name() == "with_item")
                    .collect();
                let mut out = Assigned::No;
                for item in items {
                    let bound = item
                        .field("value")
                        .filter(|v| v.kind_name() == "as_pattern")
                        .and_then(|v| v.field("alias"))
                        .and_then(|a| kids(a).first().copied())
                        .filter(|a| a.kind_name() == "identifier")
                        .map(|a| t.text(a));
                    out = if bound == Some(name) {
                        Assigned::With
                    } else {
                        Assigned::List(t.assigned_in(&body, name)?)
                    };
                }
                out
            }
            "try_statement" => {
                let clauses = kids(stmt);
                // `except*` makes the statement a `TryStar`, which Bandit does not search.
                let star = clauses.iter().any(|c| {
                    c.kind_name() == "except_clause"
                        && c.child(1).is_some_and(|s| s.kind_name() == "*")
                });
                if star {
                    return Ok(Assigned::No);
                }
                let mut out = t.assigned_in(&block(stmt.field("body")), name)?;
                for c in clauses {
                    if matches!(
                        c.kind_name(),
                        "except_clause" | "else_clause" | "finally_clause"
                    ) {
                        for b in clause_block(c) {
                            out.extend(t.assigned_in(&kids(b), name)?);
                        }
                    }
                }
                Assigned::List(out)
            }
            "if_statement" | "for_statement" | "while_statement"
                if stmt.child(0).is_none_or(|c| c.kind_name() != "async") =>
            {
                let body_field = if stmt.kind_name() == "if_statement" {
                    "consequence"
                } else {
                    "body"
                };
                let mut out = t.assigned_in(&block(stmt.field(body_field)), name)?;
                for c in kids(stmt) {
                    if matches!(c.kind_name(), "elif_clause" | "else_clause") {
                        for b in clause_block(c) {
                            out.extend(t.assigned_in(&kids(b), name)?);
                        }
                    }
                }
                Assigned::List(out)
            }
            _ => Assigned::No,
        })
    }

    /// `is_assigned_in`: the truthy results, lists flattened one level.
    fn assigned_in(&self, stmts: &[Node<'s>], name: &str) -> Res<Vec<Assigned<'s>>> {
        let mut out = Vec::new();
        for &s in stmts {
            let a = self.assigned(s, name)?;
            if !a.truthy() {
                continue;
            }
            match a {
                Assigned::List(v) => out.extend(v),
                a => out.push(a),
            }
        }
        Ok(out)
    }

    /// An `Assign`: only its first target counts; a tuple target against a tuple value pairs
    /// names up, and raises (as Bandit's `name.id` does) on a target that is no name.
    fn assignment(&self, a: Node<'s>, name: &str) -> Res<Assigned<'s>> {
        if a.field("type").is_some() {
            return Ok(Assigned::No);
        }
        let Some(target) = a.field("left").map(unparen) else {
            return Ok(Assigned::No);
        };
        let mut value = a.field("right");
        while let Some(v) = value.filter(|v| v.kind_name() == "assignment") {
            value = v.field("right");
        }
        let Some(value) = value else {
            return Ok(Assigned::No);
        };
        match target.kind_name() {
            "identifier" if self.text(target) == name => Ok(Assigned::Value(value)),
            "pattern_list" | "tuple_pattern" => {
                let v = unparen(value);
                if !matches!(v.kind_name(), "expression_list" | "tuple") {
                    return Ok(Assigned::No);
                }
                let values = kids(v);
                for (pos, t) in kids(target).into_iter().enumerate() {
                    let t = unparen(t);
                    if t.kind_name() != "identifier" {
                        return Err(());
                    }
                    if self.text(t) == name {
                        return values.get(pos).map(|&v| Assigned::Value(v)).ok_or(());
                    }
                }
                Ok(Assigned::No)
            }
            _ => Ok(Assigned::No),
        }
    }
}

/// `ast`'s `lineno` of a statement: a decorated function's is its `def` line.
fn statement_line(stmt: Node) -> usize {
    match stmt.kind_name() {
        "decorated_definition" => stmt.field("definition").map_or(line(stmt), line),
        _ => line(stmt),
    }
}
