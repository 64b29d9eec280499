//! The AST masker: finds the functions, methods and classes a plan names with tree-sitter and
//! gives the spans to regenerate — their bodies (the signature, and a Python docstring, kept as
//! context) or, with `whole`, the whole definitions. Deterministic: the same file and targets
//! give the same spans.
//!
//! Names: `f` is a top-level function or class (or any definition named `f` when only one
//! exists); `Class.method` (also `Type::method` in Rust, `Type.Method` for Go receivers) a
//! method of that class, impl block or receiver type.

use anvil_data::lang::Lang;
use serde::Serialize;
use tree_sitter::{Node, Parser};

/// One definition to regenerate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaskedSpan {
    /// The target as the plan named it.
    pub target: String,
    /// Byte range of the text to regenerate.
    pub start: usize,
    pub end: usize,
    /// Byte where the definition starts (where the plan's intent is shown to the model).
    pub def_start: usize,
    /// 1-based lines of the span, for people.
    pub start_line: usize,
    pub end_line: usize,
    /// Whether the definition is part of the file's public surface (no leading `_` in Python,
    /// `pub` in Rust, capitalized in Go, exported in JavaScript/TypeScript).
    pub public: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MaskError {
    #[error("{0} does not parse as {1}; fix the syntax errors before building")]
    Unparsable(String, &'static str),
    #[error("no definition named `{0}` (found: {1})")]
    NotFound(String, String),
    #[error("`{0}` names {1} definitions; qualify it (`Class.method`)")]
    Ambiguous(String, usize),
    #[error("targets `{0}` and `{1}` overlap")]
    Overlap(String, String),
}

/// A definition found in the file.
#[derive(Debug, Clone)]
struct Def {
    /// `name`, and `Owner.name` for methods.
    names: Vec<String>,
    node_start: usize,
    node_end: usize,
    /// The body's byte range (braces excluded in brace languages).
    body: (usize, usize),
    public: bool,
}

/// The spans of `targets` in `text` (`path` names it in errors), in file order.
pub fn mask(
    lang: Lang,
    path: &str,
    text: &str,
    targets: &[String],
    whole: bool,
) -> Result<Vec<MaskedSpan>, MaskError> {
    let mut parser = Parser::new();
    parser
        .set_language(&lang.grammar(path))
        .expect("grammar ABI matches tree-sitter");
    let tree = parser.parse(text, None).expect("no parse timeout is set");
    if tree.root_node().has_error() {
        return Err(MaskError::Unparsable(path.to_string(), lang.name()));
    }
    let mut defs = Vec::new();
    collect(lang, tree.root_node(), text, None, &mut defs);
    let mut spans = Vec::new();
    for target in targets {
        let hits: Vec<&Def> = defs.iter().filter(|d| d.names.contains(target)).collect();
        let def = match hits.as_slice() {
            [one] => *one,
            [] => {
                let mut known: Vec<&str> = defs
                    .iter()
                    .map(|d| d.names.last().unwrap().as_str())
                    .collect();
                known.truncate(20);
                return Err(MaskError::NotFound(target.clone(), known.join(", ")));
            }
            many => return Err(MaskError::Ambiguous(target.clone(), many.len())),
        };
        let (start, end) = if whole {
            (def.node_start, def.node_end)
        } else {
            def.body
        };
        let line = |b: usize| text[..b].matches('\n').count() + 1;
        spans.push(MaskedSpan {
            target: target.clone(),
            start,
            end,
            def_start: def.node_start,
            start_line: line(start),
            end_line: line(end.max(start + 1).min(text.len()).saturating_sub(0)),
            public: def.public,
        });
    }
    spans.sort_by_key(|s| s.start);
    for w in spans.windows(2) {
        if w[1].start < w[0].end {
            return Err(MaskError::Overlap(w[0].target.clone(), w[1].target.clone()));
        }
    }
    Ok(spans)
}

fn field<'t>(n: Node<'t>, name: &str) -> Option<Node<'t>> {
    n.child_by_field_name(name)
}

/// Walks the tree collecting definitions; `owner` is the enclosing class / impl type.
fn collect(lang: Lang, n: Node, text: &str, owner: Option<&str>, out: &mut Vec<Def>) {
    let name_of = |n: Node| field(n, "name").map(|x| text[x.byte_range()].to_string());
    let kind = n.kind();
    let mut next_owner: Option<String> = None;
    let def = match (lang, kind) {
        (Lang::Python, "function_definition" | "class_definition") => {
            let body = field(n, "body");
            name_of(n).zip(body).map(|(name, body)| {
                let public = !name.starts_with('_');
                if kind == "class_definition" {
                    next_owner = Some(name.clone());
                }
                (name, python_body(body, text), public)
            })
        }
        (
            Lang::JavaScript | Lang::TypeScript,
            "function_declaration"
            | "method_definition"
            | "class_declaration"
            | "generator_function_declaration",
        ) => {
            let body = field(n, "body");
            name_of(n).zip(body).map(|(name, body)| {
                if kind == "class_declaration" {
                    next_owner = Some(name.clone());
                }
                let exported = n.parent().is_some_and(|p| p.kind() == "export_statement");
                (
                    name,
                    inside_braces(body),
                    exported || kind == "method_definition",
                )
            })
        }
        (Lang::JavaScript | Lang::TypeScript, "variable_declarator") => {
            // `const f = (…) => { … }` and `const f = function (…) { … }`.
            let value = field(n, "value").filter(|v| {
                matches!(
                    v.kind(),
                    "arrow_function" | "function_expression" | "function"
                )
            });
            let body = value
                .and_then(|v| field(v, "body"))
                .filter(|b| b.kind() == "statement_block");
            name_of(n).zip(body).map(|(name, body)| {
                let exported = n
                    .parent()
                    .and_then(|p| p.parent())
                    .is_some_and(|p| p.kind() == "export_statement");
                (name, inside_braces(body), exported)
            })
        }
        (Lang::Rust, "function_item") => {
            let body = field(n, "body");
            name_of(n).zip(body).map(|(name, body)| {
                let public = n
                    .child(0)
                    .is_some_and(|c| c.kind() == "visibility_modifier");
                (name, inside_braces(body), public)
            })
        }
        (Lang::Rust, "impl_item") => {
            next_owner = field(n, "type").map(|t| text[t.byte_range()].to_string());
            None
        }
        (Lang::Go, "function_declaration" | "method_declaration") => {
            let body = field(n, "body");
            if kind == "method_declaration" {
                // The receiver's type name, pointer or not: `func (s *Server) Run()`.
                let recv = field(n, "receiver").map(|r| text[r.byte_range()].to_string());
                next_owner = recv.and_then(|r| {
                    r.trim_matches(|c| c == '(' || c == ')')
                        .split_whitespace()
                        .last()
                        .map(|t| t.trim_start_matches('*').to_string())
                });
            }
            name_of(n).zip(body).map(|(name, body)| {
                let public = name.chars().next().is_some_and(char::is_uppercase);
                (name, inside_braces(body), public)
            })
        }
        _ => None,
    };
    let method_owner = if lang == Lang::Go && kind == "method_declaration" {
        next_owner.take()
    } else {
        owner.map(str::to_string)
    };
    if let Some((name, body, public)) = def {
        let mut names = vec![name.clone()];
        if let Some(o) = &method_owner {
            names.push(format!("{o}.{name}"));
            if lang == Lang::Rust {
                names.push(format!("{o}::{name}"));
            }
        }
        out.push(Def {
            names,
            node_start: n.start_byte(),
            node_end: n.end_byte(),
            body,
            public,
        });
    }
    let owner_here = next_owner.as_deref().or(owner);
    let mut cursor = n.walk();
    for child in n.children(&mut cursor) {
        collect(lang, child, text, owner_here, out);
    }
}

/// Between a `{ … }` body's braces.
fn inside_braces(body: Node) -> (usize, usize) {
    let (s, e) = (body.start_byte(), body.end_byte());
    if e >= s + 2 { (s + 1, e - 1) } else { (s, e) }
}

/// A Python body after its docstring (kept as context), to the end of the block.
fn python_body(body: Node, text: &str) -> (usize, usize) {
    let end = body.end_byte();
    let mut start = body.start_byte();
    if let Some(first) = body.named_child(0)
        && first.kind() == "expression_statement"
        && first.named_child(0).is_some_and(|s| s.kind() == "string")
        && body.named_child_count() > 1
    {
        // The next statement's line start: its indentation is regenerated with it.
        let next = body.named_child(1).expect("counted");
        start = text[..next.start_byte()]
            .rfind('\n')
            .map_or(next.start_byte(), |i| i + 1);
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(lang: Lang, path: &str, text: &str, targets: &[&str], whole: bool) -> Vec<String> {
        let t: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        mask(lang, path, text, &t, whole)
            .unwrap()
            .iter()
            .map(|s| text[s.start..s.end].to_string())
            .collect()
    }

    #[test]
    fn python_bodies_after_docstrings_methods_by_class() {
        let src = "import os\n\ndef f(x):\n    \"\"\"Doc.\"\"\"\n    y = x + 1\n    return y\n\nclass A:\n    def g(self):\n        return 1\n\n    def _h(self):\n        pass\n";
        assert_eq!(
            spans(Lang::Python, "a.py", src, &["f"], false),
            vec!["    y = x + 1\n    return y"]
        );
        assert_eq!(
            spans(Lang::Python, "a.py", src, &["A.g"], false),
            vec!["return 1"]
        );
        assert_eq!(
            spans(Lang::Python, "a.py", src, &["f"], true),
            vec!["def f(x):\n    \"\"\"Doc.\"\"\"\n    y = x + 1\n    return y"]
        );
        let t = vec!["A._h".to_string(), "f".to_string()];
        let m = mask(Lang::Python, "a.py", src, &t, false).unwrap();
        assert_eq!(m[0].target, "f", "file order");
        assert!(m[0].public && !m[1].public);
        let e = mask(Lang::Python, "a.py", src, &["nope".to_string()], false).unwrap_err();
        assert!(e.to_string().contains("no definition named `nope`"), "{e}");
        let bad = mask(Lang::Python, "a.py", "def f(:\n", &["f".to_string()], false).unwrap_err();
        assert!(matches!(bad, MaskError::Unparsable(..)));
    }

    #[test]
    fn brace_languages_keep_signature_and_braces() {
        let js = "export function add(a, b) {\n  return a + b;\n}\nclass C {\n  m() { return 1; }\n}\nconst sq = (x) => {\n  return x * x;\n};\n";
        for lang in [Lang::JavaScript, Lang::TypeScript] {
            let path = if lang == Lang::JavaScript {
                "a.js"
            } else {
                "a.ts"
            };
            assert_eq!(
                spans(lang, path, js, &["add"], false),
                vec!["\n  return a + b;\n"]
            );
            assert_eq!(spans(lang, path, js, &["C.m"], false), vec![" return 1; "]);
            assert_eq!(
                spans(lang, path, js, &["sq"], false),
                vec!["\n  return x * x;\n"]
            );
        }
        let rs = "pub fn add(a: i32) -> i32 {\n    a + 1\n}\nstruct S;\nimpl S {\n    fn get(&self) -> u8 { 7 }\n}\n";
        assert_eq!(
            spans(Lang::Rust, "a.rs", rs, &["add"], false),
            vec!["\n    a + 1\n"]
        );
        assert_eq!(
            spans(Lang::Rust, "a.rs", rs, &["S::get"], false),
            vec![" 7 "]
        );
        assert_eq!(
            spans(Lang::Rust, "a.rs", rs, &["S.get"], false),
            vec![" 7 "]
        );
        let t = vec!["add".to_string(), "S::get".to_string()];
        let m = mask(Lang::Rust, "a.rs", rs, &t, false).unwrap();
        assert!(m[0].public && !m[1].public);
        let go = "package p\n\nfunc Add(a int) int {\n\treturn a + 1\n}\n\ntype S struct{}\n\nfunc (s *S) get() int {\n\treturn 7\n}\n";
        assert_eq!(
            spans(Lang::Go, "a.go", go, &["Add"], false),
            vec!["\n\treturn a + 1\n"]
        );
        assert_eq!(
            spans(Lang::Go, "a.go", go, &["S.get"], false),
            vec!["\n\treturn 7\n"]
        );
    }
}
