//! pyflakes' `IMPORT` and `IMPORTFROM`: the bindings imports make, named as pyflakes names them
//! (`import a.b` binds `a`; `from m import *` binds `m.*`).

use super::checker::{Checker, pos};
use super::scope::{Binding, ImportForm, Kind, ScopeKind, Used};
use crate::quality::flat::Nd;
use std::borrow::Cow;

impl<'t> Checker<'t> {
    pub fn import(&mut self, node: Nd<'t>) {
        let (line, col) = pos(node);
        let names: Vec<Nd<'t>> = node.children_by_field_name("name").collect();
        for n in names {
            let (full, alias) = match n.kind() {
                "aliased_import" => (
                    n.child_by_field_name("name")
                        .map(|d| dotted(self.text_of(d))),
                    n.child_by_field_name("alias").map(|a| self.text_of(a)),
                ),
                _ => (Some(dotted(self.text_of(n))), None),
            };
            let Some(full) = full else { continue };
            let binding = match alias {
                None if full.contains('.') => {
                    let first = full.split('.').next().unwrap_or("").to_string();
                    Binding::new(
                        Cow::Owned(first),
                        Kind::Import {
                            full_name: full,
                            form: ImportForm::Submodule,
                        },
                        Some(node),
                        line,
                        col,
                    )
                }
                _ => {
                    let name = alias.map_or_else(|| Cow::Owned(full.clone()), Cow::Borrowed);
                    Binding::new(
                        name,
                        Kind::Import {
                            full_name: full,
                            form: ImportForm::Plain,
                        },
                        Some(node),
                        line,
                        col,
                    )
                }
            };
            self.add_binding(binding, node, false);
        }
    }

    pub fn import_from(&mut self, node: Nd<'t>) {
        let (line, col) = pos(node);
        let module = node
            .child_by_field_name("module_name")
            .map(|m| dotted(self.text_of(m)))
            .unwrap_or_default();
        if module == "__future__" {
            return self.import_future(node);
        }
        let names: Vec<Nd<'t>> = node.children_by_field_name("name").collect();
        if names.is_empty() && has_wildcard(node) {
            let cur = self.current();
            if self.kind(cur) != ScopeKind::Module {
                return;
            }
            self.scopes[cur].import_starred = true;
            let binding = Binding::new(
                Cow::Owned(format!("{module}.*")),
                Kind::Import {
                    full_name: module,
                    form: ImportForm::Star,
                },
                Some(node),
                line,
                col,
            );
            return self.add_binding(binding, node, false);
        }
        for n in names {
            let (real, alias) = match n.kind() {
                "aliased_import" => (
                    n.child_by_field_name("name")
                        .map(|d| dotted(self.text_of(d))),
                    n.child_by_field_name("alias").map(|a| self.text_of(a)),
                ),
                _ => (Some(dotted(self.text_of(n))), None),
            };
            let Some(real) = real else { continue };
            let full_name = if module.ends_with('.') {
                format!("{module}{real}")
            } else {
                format!("{module}.{real}")
            };
            let name = alias.map_or_else(|| Cow::Owned(real.clone()), Cow::Borrowed);
            let binding = Binding::new(
                name,
                Kind::Import {
                    full_name,
                    form: ImportForm::From {
                        module: module.clone(),
                        real_name: real,
                    },
                },
                Some(node),
                line,
                col,
            );
            self.add_binding(binding, node, false);
        }
    }

    pub fn import_future(&mut self, node: Nd<'t>) {
        let (line, col) = pos(node);
        let cur = self.current();
        let names: Vec<Nd<'t>> = node.children_by_field_name("name").collect();
        for n in names {
            let (real, alias) = match n.kind() {
                "aliased_import" => (
                    n.child_by_field_name("name").map(|d| self.text_of(d)),
                    n.child_by_field_name("alias").map(|a| self.text_of(a)),
                ),
                _ => (Some(self.text_of(n)), None),
            };
            let Some(real) = real else { continue };
            if real == "annotations" {
                self.annotations_future = true;
            }
            let mut binding = Binding::new(
                Cow::Borrowed(alias.unwrap_or(real)),
                Kind::Import {
                    full_name: format!("__future__.{real}"),
                    form: ImportForm::Future,
                },
                Some(node),
                line,
                col,
            );
            binding.used = Some(Used {
                scope: cur,
                line,
                col,
            });
            self.add_binding(binding, node, false);
        }
    }
}

/// `from m import *`.
fn has_wildcard(node: Nd) -> bool {
    node.named_children().any(|c| c.kind() == "wildcard_import")
}

/// A dotted name as Python reads it (no spaces or line continuations around the dots).
fn dotted(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '\\')
        .collect()
}
