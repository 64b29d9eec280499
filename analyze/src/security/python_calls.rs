//! The rules Bandit runs on every call (its `Call` checks), over Bandit's view of a call: the
//! resolved qualified name, positional arguments and keywords read as `Context` reads them.

use super::python::{Issue, Walk, issue};
use super::python_ast::NodeExt;
use super::python_ast::{
    self as ast, Value, arg_value, is_constant, kids, line, lines, str_constant, unparen,
};
use crate::finding::Level;
use tree_sitter::Node;

/// Bandit's view of one call.
pub(super) struct Call<'t> {
    pub node: Node<'t>,
    pub func: Node<'t>,
    /// `get_call_name`: aliases resolved, `""` when the callee is no name.
    pub qual: String,
    /// Where the last component of `qual` starts.
    name_start: usize,
    /// Positional arguments, starred ones included (`ast.Call.args`).
    pub args: Vec<Node<'t>>,
    /// Keyword arguments in order: `None` for `**kwargs` (`ast.keyword.arg`), and the value.
    pub keywords: Vec<(Option<&'t str>, Node<'t>)>,
}

impl<'t> Call<'t> {
    fn new(w: &Walk<'t>, node: Node<'t>) -> Option<Call<'t>> {
        let func = unparen(node.field("function")?);
        let qual = w.names.qualname(w.src, func);
        let mut args = Vec::new();
        let mut keywords = Vec::new();
        if let Some(a) = node.field("arguments") {
            if a.kind_name() == "generator_expression" {
                args.push(a);
            } else {
                let mut cursor = a.walk();
                let children = a
                    .children(&mut cursor)
                    .filter(|c| c.is_named() && !c.is_extra());
                for c in children {
                    match c.kind_name() {
                        "keyword_argument" => {
                            let name = c.field("name").map(|n| w.src.text_of(n));
                            if let (Some(n), Some(v)) = (name, c.field("value")) {
                                keywords.push((Some(n), v));
                            }
                        }
                        "dictionary_splat" => {
                            if let Some(&v) = kids(c).first() {
                                keywords.push((None, v));
                            }
                        }
                        _ => args.push(c),
                    }
                }
            }
        }
        Some(Call {
            node,
            func,
            name_start: qual.rfind('.').map_or(0, |i| i + 1),
            qual,
            args,
            keywords,
        })
    }

    /// Whether `part` is one of the qualified name's dotted components.
    pub(super) fn has_part(&self, part: &str) -> bool {
        self.qual.split('.').any(|p| p == part)
    }

    /// `call_function_name`: the last component of the qualified name.
    pub(super) fn name(&self) -> &str {
        &self.qual[self.name_start..]
    }

    pub(super) fn kw(&self, name: &str) -> Option<Node<'t>> {
        self.keywords
            .iter()
            .find(|(k, _)| *k == Some(name))
            .map(|&(_, v)| v)
    }

    /// `name in context.call_keywords`.
    pub(super) fn has_kw(&self, name: &str) -> bool {
        self.kw(name).is_some()
    }

    /// `get_call_arg_value`: the keyword's value as Bandit reads it; `Absent` when missing
    /// or not a literal.
    pub(super) fn kw_value(&self, w: &Walk, name: &str) -> Value {
        self.kw(name).map_or(Value::Absent, |v| arg_value(w.src, v))
    }

    /// `check_call_arg_value`: `None` when the keyword is missing (or not a literal), else
    /// whether it equals one of `values`.
    pub(super) fn check(&self, w: &Walk, name: &str, values: &[Value]) -> Option<bool> {
        let v = self.kw_value(w, name);
        if v.is_absent() {
            return None;
        }
        Some(values.iter().any(|x| v.py_eq(x)))
    }

    fn check_str(&self, w: &Walk, name: &str, value: &str) -> bool {
        self.check(w, name, &[Value::Str(value.to_string())]) == Some(true)
    }

    /// `get_lineno_for_call_arg`: the line of the keyword's value.
    pub(super) fn kw_line(&self, name: &str) -> Option<usize> {
        self.kw(name).map(|v| line(unparen(v)))
    }

    /// `get_call_arg_at_position`.
    pub(super) fn arg_at(&self, w: &Walk, i: usize) -> Value {
        self.args
            .get(i)
            .map_or(Value::Absent, |&a| arg_value(w.src, a))
    }
}

pub(super) fn check(w: &mut Walk, path: &[Node]) {
    let Some(&node) = path.last() else {
        return;
    };
    let Some(call) = Call::new(w, node) else {
        return;
    };
    let mut found: Vec<(&'static str, Issue)> = Vec::new();
    {
        let w: &Walk = w;
        let mut add = |id: &'static str, i: Option<Issue>| {
            if let Some(i) = i {
                found.push((id, i));
            }
        };
        add("B102", exec_used(&call));
        add("B103", bad_file_permissions(w, &call));
        add("B106", password_funcarg(w, &call));
        add("B113", request_without_timeout(w, &call));
        add("B201", flask_debug_true(w, &call));
        add("B202", tarfile_unsafe_members(w, &call));
        if let Some((id, i)) = super::python_blacklist::call(w, &call) {
            add(id, Some(i));
        }
        add("B324", super::python_libs::hashlib(w, &call));
        add("B501", super::python_libs::no_cert_validation(w, &call));
        add("B502", super::python_libs::ssl_bad_version(w, &call));
        add("B504", super::python_libs::ssl_no_version(w, &call));
        add("B505", super::python_libs::weak_key(w, &call));
        add("B506", super::python_libs::yaml_load(w, &call));
        add("B507", super::python_libs::ssh_no_host_key(w, &call));
        add("B508", super::python_libs::snmp_version(w, &call));
        add("B509", super::python_libs::snmp_crypto(&call));
        add("B601", super::python_libs::paramiko(w, &call));
        for (id, i) in shell(w, &call) {
            add(id, Some(i));
        }
        add("B610", super::python_django::extra_used(w, &call));
        add("B611", super::python_django::rawsql_used(w, &call));
        add("B612", super::python_libs::logging_listen(&call));
        add("B614", super::python_libs::pytorch_load(w, &call));
        add("B615", super::python_libs::huggingface(w, &call));
        add("B701", super::python_libs::jinja2(w, &call));
        add("B702", super::python_libs::mako(&call));
        add("B703", super::python_django::mark_safe(w, &call, path));
        add("B704", super::python_libs::markupsafe(w, &call));
    }
    if found.is_empty() {
        return;
    }
    let range = lines(node);
    for (id, i) in found {
        w.report(id, node, range, i);
    }
}

fn exec_used(call: &Call) -> Option<Issue> {
    (call.qual == "exec").then(|| issue(Level::Medium, Level::High, "Use of exec detected."))
}

fn bad_file_permissions(w: &Walk, call: &Call) -> Option<Issue> {
    if !call.name().contains("chmod") || call.args.len() != 2 {
        return None;
    }
    let Value::Int(mode) = call.arg_at(w, 1) else {
        return None;
    };
    const S_IWOTH: i128 = 0o2;
    const S_IXOTH: i128 = 0o1;
    const S_IWGRP: i128 = 0o20;
    const S_IXGRP: i128 = 0o10;
    if mode & (S_IWOTH | S_IWGRP | S_IXGRP | S_IXOTH) == 0 {
        return None;
    }
    // World-writable is HIGH, group-writable or executable MEDIUM.
    let sev = if mode & S_IWOTH != 0 {
        Level::High
    } else {
        Level::Medium
    };
    let file = match call.arg_at(w, 0) {
        Value::Absent => "NOT PARSED".to_string(),
        v => v.py_str(),
    };
    Some(issue(
        sev,
        Level::High,
        format!("Chmod setting a permissive mask {mode:#o} on file ({file})."),
    ))
}

fn password_funcarg(w: &Walk, call: &Call) -> Option<Issue> {
    for &(name, value) in &call.keywords {
        let Some(name) = name else { continue };
        if let Some(s) = str_constant(w.src, value)
            && super::python_strings::looks_like_password(name)
        {
            let line = line(unparen(value));
            return Some(super::python_strings::password_issue(&s).at(Some(line)));
        }
    }
    None
}

pub(super) const HTTP_VERBS: &[&str] =
    &["get", "options", "head", "post", "put", "patch", "delete"];
pub(super) const HTTPX_ATTRS: &[&str] = &[
    "get",
    "options",
    "head",
    "post",
    "put",
    "patch",
    "delete",
    "request",
    "stream",
    "Client",
    "AsyncClient",
];

/// `requests.<verb>` or `httpx.<verb or client>`, as B113 and B501 test it; the module name.
pub(super) fn http_call<'c>(call: &'c Call) -> Option<&'c str> {
    let module = call.qual.split('.').next().unwrap_or("");
    let name = call.name();
    let hit = (module == "requests" && HTTP_VERBS.contains(&name))
        || (module == "httpx" && HTTPX_ATTRS.contains(&name));
    hit.then_some(module)
}

fn request_without_timeout(w: &Walk, call: &Call) -> Option<Issue> {
    let module = call.qual.split('.').next().unwrap_or("");
    if module == "requests"
        && HTTP_VERBS.contains(&call.name())
        && call.kw_value(w, "timeout").is_absent()
    {
        return Some(issue(
            Level::Medium,
            Level::Low,
            format!("Call to {module} without timeout"),
        ));
    }
    let module = http_call(call)?;
    call.check_str(w, "timeout", "None").then(|| {
        issue(
            Level::Medium,
            Level::Low,
            format!("Call to {module} with timeout set to None"),
        )
    })
}

fn flask_debug_true(w: &Walk, call: &Call) -> Option<Issue> {
    if !w.names.imported_like("flask") || !call.qual.ends_with(".run") {
        return None;
    }
    call.check_str(w, "debug", "True").then(|| {
        issue(
            Level::High,
            Level::Medium,
            "A Flask app appears to be run with debug=True, which exposes the Werkzeug debugger \
             and allows the execution of arbitrary code.",
        )
        .at(call.kw_line("debug"))
    })
}

/// The `ast` class name Python prints for a node Bandit puts in a message by accident.
fn ast_class(n: Node) -> &'static str {
    match unparen(n).kind_name() {
        "attribute" => "Attribute",
        "call" => "Call",
        "subscript" => "Subscript",
        "list" => "List",
        "tuple" => "Tuple",
        "dictionary" => "Dict",
        "set" => "Set",
        "lambda" => "Lambda",
        "string" | "concatenated_string" | "integer" | "float" | "true" | "false" | "none" => {
            "Constant"
        }
        "binary_operator" => "BinOp",
        "list_comprehension" => "ListComp",
        "generator_expression" => "GeneratorExp",
        _ => "expr",
    }
}

fn tarfile_unsafe_members(w: &Walk, call: &Call) -> Option<Issue> {
    if !w.names.imported_exact("tarfile") || !call.name().contains("extractall") {
        return None;
    }
    if let Some(f) = call.kw("filter")
        && ast::constant(w.src, f) == Some(Value::Str("data".into()))
    {
        return None;
    }
    let Some(members) = call.kw("members") else {
        return Some(issue(
            Level::High,
            Level::High,
            "tarfile.extractall used without any validation. Please check and discard \
             dangerous members.",
        ));
    };
    let members = unparen(members);
    if members.kind_name() == "call" {
        // Bandit reads `members.func.id`: a callee that is no bare name raises, and the test
        // reports nothing.
        let func = unparen(members.field("function")?);
        if func.kind_name() != "identifier" {
            return None;
        }
        let f = ast::repr_str(w.src.text_of(func));
        return Some(issue(
            Level::Low,
            Level::Low,
            format!(
                "Usage of tarfile.extractall(members=function(tarfile)). Make sure your function \
                 properly discards dangerous members {{'Function': {f}}})."
            ),
        ));
    }
    let other = if members.kind_name() == "identifier" {
        ast::repr_str(w.src.text_of(members))
    } else {
        // Bandit prints the AST node's repr, address included: not reproducible.
        format!("<ast.{} object at 0x0>", ast_class(members))
    };
    Some(issue(
        Level::Medium,
        Level::Medium,
        format!(
            "Found tarfile.extractall(members=?) but couldn't identify the type of members. \
             Check if the members were properly validated {{'Other': {other}}})."
        ),
    ))
}

// Bandit's `shell_injection` configuration.
const SUBPROCESS: &[&str] = &[
    "subprocess.Popen",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "subprocess.run",
];
const SHELL: &[&str] = &[
    "os.system",
    "os.popen",
    "os.popen2",
    "os.popen3",
    "os.popen4",
    "popen2.popen2",
    "popen2.popen3",
    "popen2.popen4",
    "popen2.Popen3",
    "popen2.Popen4",
    "commands.getoutput",
    "commands.getstatusoutput",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
];
const NO_SHELL: &[&str] = &[
    "os.execl",
    "os.execle",
    "os.execlp",
    "os.execlpe",
    "os.execv",
    "os.execve",
    "os.execvp",
    "os.execvpe",
    "os.spawnl",
    "os.spawnle",
    "os.spawnlp",
    "os.spawnlpe",
    "os.spawnv",
    "os.spawnve",
    "os.spawnvp",
    "os.spawnvpe",
    "os.startfile",
];

pub(super) const BAD_SSL_VERSIONS: &[&str] = &[
    "PROTOCOL_SSLv2",
    "SSLv2_METHOD",
    "SSLv23_METHOD",
    "PROTOCOL_SSLv3",
    "PROTOCOL_TLSv1",
    "SSLv3_METHOD",
    "TLSv1_METHOD",
    "PROTOCOL_TLSv1_1",
    "TLSv1_1_METHOD",
];

/// Bandit's `has_shell`: the truth of the last `shell=` keyword, where only literals can be
/// false.
fn has_shell(w: &Walk, call: &Call) -> bool {
    let mut result = false;
    for &(name, value) in &call.keywords {
        if name != Some("shell") {
            continue;
        }
        let v = unparen(value);
        result = match v.kind_name() {
            "list" => !kids(v).is_empty(),
            "dictionary" => !kids(v).is_empty(),
            "none" => false,
            "false" => false,
            "true" => true,
            _ => match ast::constant(w.src, v) {
                Some(c) => c.truthy(),
                None => true,
            },
        };
    }
    result
}

/// `^(?:[A-Za-z](?=\:)|[\\\/\.])`: a drive letter or a path delimiter first.
fn is_full_path(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(b'\\' | b'/' | b'.') => true,
        Some(c) if c.is_ascii_alphabetic() => b.get(1) == Some(&b':'),
        _ => false,
    }
}

/// B602 to B607 and B609, which share Bandit's `shell_injection` configuration.
fn shell(w: &Walk, call: &Call) -> Vec<(&'static str, Issue)> {
    let mut found = Vec::new();
    let q = call.qual.as_str();
    let in_subprocess = SUBPROCESS.contains(&q);
    let in_shell = SHELL.contains(&q);
    let in_no_shell = NO_SHELL.contains(&q);
    let shell = has_shell(w, call);
    let shell_line = call.kw_line("shell");
    let literal_command = call
        .args
        .first()
        .is_some_and(|&a| str_constant(w.src, a).is_some());
    if in_subprocess && shell && !call.args.is_empty() {
        let i = if literal_command {
            issue(
                Level::Low,
                Level::High,
                "subprocess call with shell=True seems safe, but may be changed in the future, \
                 consider rewriting without shell",
            )
        } else {
            issue(
                Level::High,
                Level::High,
                "subprocess call with shell=True identified, security issue.",
            )
        };
        found.push(("B602", i.at(shell_line)));
    }
    if in_subprocess && !shell {
        let i = issue(
            Level::Low,
            Level::High,
            "subprocess call - check for execution of untrusted input.",
        );
        found.push(("B603", i.at(shell_line)));
    }
    if !in_subprocess && shell {
        let i = issue(
            Level::Medium,
            Level::Low,
            "Function call with shell=True parameter identified, possible security issue.",
        );
        found.push(("B604", i.at(shell_line)));
    }
    if in_shell && !call.args.is_empty() {
        let i = if literal_command {
            issue(
                Level::Low,
                Level::High,
                "Starting a process with a shell: Seems safe, but may be changed in the future, \
                 consider rewriting without shell",
            )
        } else {
            issue(
                Level::High,
                Level::High,
                "Starting a process with a shell, possible injection detected, security issue.",
            )
        };
        found.push(("B605", i));
    }
    if in_no_shell {
        let i = issue(
            Level::Low,
            Level::Medium,
            "Starting a process without a shell.",
        );
        found.push(("B606", i));
    }
    if (in_subprocess || in_shell || in_no_shell) && !call.args.is_empty() {
        let mut first = unparen(call.args[0]);
        if first.kind_name() == "list"
            && let Some(&e) = kids(first).first()
        {
            first = e;
        }
        if let Some(s) = str_constant(w.src, first)
            && !is_full_path(&s)
        {
            let i = issue(
                Level::Low,
                Level::High,
                "Starting a process with a partial executable path",
            );
            found.push(("B607", i));
        }
    }
    if (in_shell || (in_subprocess && call.check_str(w, "shell", "True")))
        && let Some(i) = wildcard(w, call)
    {
        found.push(("B609", i.at(shell_line)));
    }
    found
}

fn wildcard(w: &Walk, call: &Call) -> Option<Issue> {
    if call.args.is_empty() {
        return None;
    }
    let text = match call.arg_at(w, 0) {
        Value::List(items) => items.iter().map(|v| format!(" {}", v.py_str())).collect(),
        Value::Str(s) => s,
        _ => String::new(),
    };
    let vulnerable = ["chown", "chmod", "tar", "rsync"]
        .iter()
        .any(|f| text.contains(f) && text.contains('*'));
    vulnerable.then(|| {
        issue(
            Level::High,
            Level::Medium,
            format!("Possible wildcard injection in call: {}", call.qual),
        )
    })
}

/// Whether a node is any `ast.Constant` (B704 lets every constant through).
pub(super) fn constant_arg(w: &Walk, n: Node) -> bool {
    is_constant(w.src, n)
}
