//! The imports of a Python file, with their aliases: what Bandit resolves call names against
//! (`import subprocess as sp; sp.call(…)` is `subprocess.call`) and what the license check reads
//! package names from.

use crate::source::Source;
use tree_sitter::Node;

/// One imported name. `import a.b as c` gives module `a.b`, name `None`, bound `c`;
/// `from a import b as c` gives module `a`, name `Some("b")`, bound `c`; `from . import x`
/// gives module `.`; `from a import *` gives name `Some("*")`, bound `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub module: String,
    pub name: Option<String>,
    /// The name the import binds in the file's namespace (for `import a.b`, that is `a`).
    pub bound: String,
    /// Full dotted path the bound name stands for (`a.b` for `import a.b as c`, `a` for
    /// `import a.b`, `a.b` for `from a import b`).
    pub target: String,
    /// 1-based line of the statement.
    pub line: usize,
    /// The top-level package (`os` for `os.path`), empty for relative imports.
    pub package: String,
}

/// Every import statement in the file, at any depth (imports inside functions count too), in
/// source order.
pub fn imports(src: &Source) -> Vec<Import> {
    let mut out = Vec::new();
    let mut cursor = src.tree.walk();
    // Cursor walk, not recursion: `Source` bounds depth, but a walk costs nothing extra.
    loop {
        let node = cursor.node();
        statement_imports(src, node, &mut out);
        if !matches!(node.kind(), "import_statement" | "import_from_statement")
            && cursor.goto_first_child()
        {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return out;
            }
        }
    }
}

/// The imports of one statement node (`import_statement`, `import_from_statement`,
/// `future_import_statement`; nothing for other nodes), appended to `out`: for analyzers that
/// walk the tree themselves and need the names bound so far, as Bandit does.
pub fn statement_imports(src: &Source, node: Node, out: &mut Vec<Import>) {
    match node.kind() {
        "import_statement" => import_statement(src, node, out),
        "import_from_statement" | "future_import_statement" => from_statement(src, node, out),
        _ => {}
    }
}

fn line(src: &Source, node: Node) -> usize {
    src.line_col(node.start_byte()).0
}

fn package_of(module: &str) -> String {
    if module.starts_with('.') {
        String::new()
    } else {
        module.split('.').next().unwrap_or("").to_string()
    }
}

fn import_statement(src: &Source, node: Node, out: &mut Vec<Import>) {
    let mut cursor = node.walk();
    for child in node.children_by_field_name("name", &mut cursor) {
        let (module, alias) = match child.kind() {
            "aliased_import" => (
                child.child_by_field_name("name").map(|n| src.text_of(n)),
                child.child_by_field_name("alias").map(|n| src.text_of(n)),
            ),
            _ => (Some(src.text_of(child)), None),
        };
        let Some(module) = module.map(dotted) else {
            continue;
        };
        let (bound, target) = match alias {
            Some(a) => (a.to_string(), module.clone()),
            None => {
                let first = package_of(&module);
                (first.clone(), first)
            }
        };
        out.push(Import {
            package: package_of(&module),
            module,
            name: None,
            bound,
            target,
            line: line(src, node),
        });
    }
}

fn from_statement(src: &Source, node: Node, out: &mut Vec<Import>) {
    let module = match node.kind() {
        "future_import_statement" => "__future__".to_string(),
        _ => match node.child_by_field_name("module_name") {
            Some(m) => dotted(src.text_of(m)),
            None => return,
        },
    };
    let line = line(src, node);
    let mut cursor = node.walk();
    let mut push = |name: &str, alias: Option<&str>| {
        let name = dotted(name);
        let target = if module.ends_with('.') {
            format!("{module}{name}")
        } else {
            format!("{module}.{name}")
        };
        out.push(Import {
            package: package_of(&module),
            module: module.clone(),
            bound: alias.map(str::to_string).unwrap_or_else(|| name.clone()),
            name: Some(name),
            target,
            line,
        });
    };
    let mut any = false;
    for child in node.children_by_field_name("name", &mut cursor) {
        any = true;
        match child.kind() {
            "aliased_import" => {
                if let Some(n) = child.child_by_field_name("name") {
                    push(
                        src.text_of(n),
                        child.child_by_field_name("alias").map(|a| src.text_of(a)),
                    );
                }
            }
            _ => push(src.text_of(child), None),
        }
    }
    if !any {
        let mut c = node.walk();
        if node.children(&mut c).any(|n| n.kind() == "wildcard_import") {
            out.push(Import {
                package: package_of(&module),
                module: module.clone(),
                name: Some("*".into()),
                bound: "*".into(),
                target: format!("{module}.*"),
                line,
            });
        }
    }
}

/// A dotted name as written, without the spaces Python allows around the dots.
fn dotted(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str) -> Vec<(String, Option<String>, String, String, usize)> {
        let src = Source::python(text.as_bytes()).unwrap();
        imports(&src)
            .into_iter()
            .map(|i| (i.module, i.name, i.bound, i.target, i.line))
            .collect()
    }

    #[test]
    fn aliases_and_from_imports_resolve_like_bandit() {
        let got = of(
            "import os.path, subprocess as sp\nfrom pickle import loads as l, dumps\n\
                      def f():\n    from . import x\n    from xml.etree import *\n",
        );
        let s = |x: &str| x.to_string();
        assert_eq!(
            got,
            vec![
                (s("os.path"), None, s("os"), s("os"), 1),
                (s("subprocess"), None, s("sp"), s("subprocess"), 1),
                (s("pickle"), Some(s("loads")), s("l"), s("pickle.loads"), 2),
                (
                    s("pickle"),
                    Some(s("dumps")),
                    s("dumps"),
                    s("pickle.dumps"),
                    2
                ),
                (s("."), Some(s("x")), s("x"), s(".x"), 4),
                (s("xml.etree"), Some(s("*")), s("*"), s("xml.etree.*"), 5),
            ]
        );
    }
}
