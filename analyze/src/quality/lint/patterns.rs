//! pyflakes' `MATCH` handlers: what a `case` pattern binds (`MatchAs`, `MatchStar`, a
//! mapping's `**rest`, all `Assignment`s) and loads (class names, dotted values).

use super::checker::{Checker, pos};
use super::scope::{Binding, Kind};
use super::visit::named;
use crate::quality::flat::Nd;
use std::borrow::Cow;

impl<'t> Checker<'t> {
    pub fn match_statement(&mut self, node: Nd<'t>) {
        let subjects: Vec<Nd<'t>> = node.children_by_field_name("subject").collect();
        for s in subjects {
            self.expr(s);
        }
        let Some(body) = node.child_by_field_name("body") else {
            return;
        };
        for case in named(body) {
            if case.kind() != "case_clause" {
                continue;
            }
            for k in named(case) {
                match k.kind() {
                    "case_pattern" => self.pattern(k),
                    "if_clause" => named(k).into_iter().for_each(|e| self.expr(e)),
                    "block" => self.block(k),
                    _ => {}
                }
            }
        }
    }

    /// Match patterns: captures store (`MatchAs`, `MatchStar`, a mapping's `**rest`), value
    /// patterns load.
    fn pattern(&mut self, node: Nd<'t>) {
        match node.kind() {
            "case_pattern" | "union_pattern" | "list_pattern" | "tuple_pattern"
            | "keyword_pattern" => {
                for (i, k) in named(node).into_iter().enumerate() {
                    match k.kind() {
                        // The attribute name of `Cls(attr=pattern)` is no name.
                        "identifier" if i == 0 && node.kind() == "keyword_pattern" => {}
                        "dotted_name" => self.capture_or_value(k, k),
                        _ => self.pattern(k),
                    }
                }
            }
            "as_pattern" => {
                let kids = named(node);
                if let Some(name) = kids.iter().rev().find(|k| k.kind() == "identifier") {
                    self.capture(*name, node);
                }
                for k in kids.iter().filter(|k| k.kind() == "case_pattern") {
                    self.pattern(*k);
                }
            }
            "splat_pattern" => {
                if let Some(name) = named(node).into_iter().find(|k| k.kind() == "identifier") {
                    self.capture(name, node);
                }
            }
            "dict_pattern" => {
                let kids = named(node);
                for k in kids.iter().filter(|k| k.kind() == "splat_pattern") {
                    if let Some(name) = named(*k).into_iter().find(|n| n.kind() == "identifier") {
                        self.capture(name, node);
                    }
                }
                let keys: Vec<Nd<'t>> = node.children_by_field_name("key").collect();
                for key in keys {
                    if key.kind() == "dotted_name" {
                        self.dotted_value(key);
                    }
                }
                let values: Vec<Nd<'t>> = node.children_by_field_name("value").collect();
                for v in values {
                    self.pattern(v);
                }
            }
            "class_pattern" => {
                for (i, k) in named(node).into_iter().enumerate() {
                    if i == 0 && k.kind() == "dotted_name" {
                        self.dotted_value(k);
                    } else {
                        self.pattern(k);
                    }
                }
            }
            "dotted_name" => self.capture_or_value(node, node),
            _ => {}
        }
    }

    /// A bare name in a pattern captures; a dotted one is a value to compare with.
    fn capture_or_value(&mut self, dotted_name: Nd<'t>, source: Nd<'t>) {
        let parts = named(dotted_name);
        match parts.as_slice() {
            [one] => self.capture(*one, source),
            _ => self.dotted_value(dotted_name),
        }
    }

    fn dotted_value(&mut self, dotted_name: Nd<'t>) {
        if let Some(first) = dotted_name.first_real_child() {
            self.handle_load(self.text_of(first), pos(first));
        }
    }

    fn capture(&mut self, name: Nd<'t>, source: Nd<'t>) {
        let (line, col) = pos(source);
        let binding = Binding::new(
            Cow::Borrowed(self.text_of(name)),
            Kind::Assignment,
            Some(source),
            line,
            col,
        );
        self.handle_store(binding, source, false);
    }
}
