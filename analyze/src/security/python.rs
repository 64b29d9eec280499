//! Bandit 1.9.4's rules for Python, over tree-sitter: one walk of the tree per file, in source
//! order, keeping Bandit's import bookkeeping (aliases and imported modules as seen so far) so
//! that every call resolves to the name Bandit would give it.
//!
//! The rules themselves live in `python_calls.rs` (call rules), `python_blacklist.rs` (B3xx/B4xx
//! blacklists), `python_strings.rs` (string-literal rules), `python_django.rs` (B610, B611,
//! B703); `python_ast.rs` maps tree-sitter's tree onto Python's `ast` shapes.

use super::python_ast::NodeExt;
use super::python_ast::{self as ast, Visit, kids, line, lines, unparen};
use super::python_nosec::Nosec;
use super::{Rule, RuleSet};
use crate::finding::{Finding, Level};
use crate::source::Source;
use std::collections::{HashMap, HashSet};
use tree_sitter::Node;

/// Bandit's rule set for Python.
pub struct Python;

impl RuleSet for Python {
    fn language(&self) -> &'static str {
        "python"
    }

    fn rules(&self) -> &'static [Rule] {
        RULES
    }

    fn findings(&self, src: &Source) -> Vec<Finding> {
        run(src)
    }
}

const fn rule(id: &'static str, name: &'static str) -> Rule {
    Rule { id, name }
}

/// Every test of Bandit 1.9.4 (its default plugins and blacklists), with the name a `Finding`
/// carries: the test function's name for plugins, the blacklist entry's name for B3xx/B4xx
/// (Bandit's JSON says `blacklist` for all of those).
pub(super) static RULES: &[Rule] = &[
    rule("B101", "assert_used"),
    rule("B102", "exec_used"),
    rule("B103", "set_bad_file_permissions"),
    rule("B104", "hardcoded_bind_all_interfaces"),
    rule("B105", "hardcoded_password_string"),
    rule("B106", "hardcoded_password_funcarg"),
    rule("B107", "hardcoded_password_default"),
    rule("B108", "hardcoded_tmp_directory"),
    rule("B110", "try_except_pass"),
    rule("B112", "try_except_continue"),
    rule("B113", "request_without_timeout"),
    rule("B201", "flask_debug_true"),
    rule("B202", "tarfile_unsafe_members"),
    rule("B301", "pickle"),
    rule("B302", "marshal"),
    rule("B303", "md5"),
    rule("B304", "ciphers"),
    rule("B305", "cipher_modes"),
    rule("B306", "mktemp_q"),
    rule("B307", "eval"),
    rule("B308", "mark_safe"),
    rule("B310", "urllib_urlopen"),
    rule("B311", "random"),
    rule("B312", "telnetlib"),
    rule("B313", "xml_bad_cElementTree"),
    rule("B314", "xml_bad_ElementTree"),
    rule("B315", "xml_bad_expatreader"),
    rule("B316", "xml_bad_expatbuilder"),
    rule("B317", "xml_bad_sax"),
    rule("B318", "xml_bad_minidom"),
    rule("B319", "xml_bad_pulldom"),
    rule("B321", "ftplib"),
    rule("B323", "unverified_context"),
    rule("B324", "hashlib"),
    rule("B401", "import_telnetlib"),
    rule("B402", "import_ftplib"),
    rule("B403", "import_pickle"),
    rule("B404", "import_subprocess"),
    rule("B405", "import_xml_etree"),
    rule("B406", "import_xml_sax"),
    rule("B407", "import_xml_expat"),
    rule("B408", "import_xml_minidom"),
    rule("B409", "import_xml_pulldom"),
    rule("B411", "import_xmlrpclib"),
    rule("B412", "import_httpoxy"),
    rule("B413", "import_pycrypto"),
    rule("B415", "import_pyghmi"),
    rule("B501", "request_with_no_cert_validation"),
    rule("B502", "ssl_with_bad_version"),
    rule("B503", "ssl_with_bad_defaults"),
    rule("B504", "ssl_with_no_version"),
    rule("B505", "weak_cryptographic_key"),
    rule("B506", "yaml_load"),
    rule("B507", "ssh_no_host_key_verification"),
    rule("B508", "snmp_insecure_version_check"),
    rule("B509", "snmp_crypto_check"),
    rule("B601", "paramiko_calls"),
    rule("B602", "subprocess_popen_with_shell_equals_true"),
    rule("B603", "subprocess_without_shell_equals_true"),
    rule("B604", "any_other_function_with_shell_equals_true"),
    rule("B605", "start_process_with_a_shell"),
    rule("B606", "start_process_with_no_shell"),
    rule("B607", "start_process_with_partial_path"),
    rule("B608", "hardcoded_sql_expressions"),
    rule("B609", "linux_commands_wildcard_injection"),
    rule("B610", "django_extra_used"),
    rule("B611", "django_rawsql_used"),
    rule("B612", "logging_config_insecure_listen"),
    rule("B613", "trojansource"),
    rule("B614", "pytorch_load"),
    rule("B615", "huggingface_unsafe_download"),
    rule("B701", "jinja2_autoescape_false"),
    rule("B702", "use_of_mako_templates"),
    rule("B703", "django_mark_safe"),
    rule("B704", "markupsafe_markup_xss"),
];

fn rule_name(id: &str) -> &'static str {
    RULES.iter().find(|r| r.id == id).map_or("", |r| r.name)
}

/// What a test reports; the walker adds where (Bandit's `Issue` before the tester fills in the
/// context's line and column).
pub(super) struct Issue {
    pub sev: Level,
    pub conf: Level,
    pub text: String,
    /// Overrides the node's line, as Bandit's `lineno=` does (e.g. the `shell=` argument's).
    pub line: Option<usize>,
}

pub(super) fn issue(sev: Level, conf: Level, text: impl Into<String>) -> Issue {
    Issue {
        sev,
        conf,
        text: text.into(),
        line: None,
    }
}

impl Issue {
    pub(super) fn at(mut self, line: Option<usize>) -> Issue {
        self.line = line;
        self
    }
}

struct Raw {
    id: &'static str,
    issue: Issue,
    line: usize,
    /// Python's `col_offset`: 0-based, in UTF-8 bytes.
    col: usize,
    /// The line range of the node the test looked at, where a `# nosec` silences it.
    range: (usize, usize),
}

/// Modules some rules ask "is it imported (like)" about: kept as flags updated at each import
/// rather than scanning the import set at every call.
const LIKE: &[&str] = &[
    "flask",
    "paramiko",
    "django.db.models",
    "django.utils.safestring",
    "transformers",
    "datasets",
    "huggingface_hub",
];
const EXACT: &[&str] = &["yaml", "torch", "tarfile"];

/// Bandit's `import_aliases` and `imports`, as they stand at the current node.
#[derive(Default)]
pub(super) struct Names {
    aliases: HashMap<String, String>,
    imports: HashSet<String>,
    like: u32,
    exact: u32,
}

impl Names {
    fn add_import(&mut self, module: &str) {
        for (i, m) in LIKE.iter().enumerate() {
            if module.contains(m) {
                self.like |= 1 << i;
            }
        }
        for (i, m) in EXACT.iter().enumerate() {
            if module == *m {
                self.exact |= 1 << i;
            }
        }
        self.imports.insert(module.to_string());
    }

    /// Bandit's `is_module_imported_like`: some import's name contains `module`.
    pub(super) fn imported_like(&self, module: &str) -> bool {
        match LIKE.iter().position(|m| *m == module) {
            Some(i) => self.like & (1 << i) != 0,
            None => self.imports.iter().any(|imp| imp.contains(module)),
        }
    }

    /// Bandit's `is_module_imported_exact`.
    pub(super) fn imported_exact(&self, module: &str) -> bool {
        match EXACT.iter().position(|m| *m == module) {
            Some(i) => self.exact & (1 << i) != 0,
            None => self.imports.contains(module),
        }
    }

    fn alias<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    /// Bandit's `get_call_name` for a call's function: a name or an attribute chain, with
    /// aliases applied at every prefix; `""` for anything else (`f()()`, `x[0]()`), and a chain
    /// rooted in something else keeps only its dotted tail (`a().b` is `.b`).
    pub(super) fn qualname(&self, src: &Source, func: Node) -> String {
        let func = unparen(func);
        match func.kind_name() {
            "identifier" => self.alias(src.text_of(func)).to_string(),
            "attribute" => {
                // Iterative: attribute chains can be as deep as the tree.
                let mut attrs = Vec::new();
                let mut n = func;
                while n.kind_name() == "attribute" {
                    match n.field("attribute") {
                        Some(a) => attrs.push(src.text_of(a)),
                        None => return String::new(),
                    }
                    match n.field("object") {
                        Some(o) => n = unparen(o),
                        None => return String::new(),
                    }
                }
                let mut name = if n.kind_name() == "identifier" {
                    self.alias(src.text_of(n)).to_string()
                } else {
                    String::new()
                };
                for a in attrs.iter().rev() {
                    name.push('.');
                    name.push_str(a);
                    if let Some(t) = self.aliases.get(&name) {
                        name = t.clone();
                    }
                }
                name
            }
            _ => String::new(),
        }
    }
}

/// The state of one walk over one file.
pub(super) struct Walk<'s> {
    pub src: &'s Source,
    pub names: Names,
    /// Statements B703's assignment tracker may still look at in this file: Bandit rescans a
    /// scope for every `mark_safe` call, quadratic in a hostile file; past the budget the
    /// tracker gives up as it does on a Python error (no finding).
    pub tracker_budget: std::cell::Cell<usize>,
    raw: Vec<Raw>,
    nosec: Nosec,
}

impl<'s> Walk<'s> {
    /// Record what test `id` found at `node`, Bandit's context being `range`.
    pub(super) fn report(&mut self, id: &'static str, node: Node, range: (usize, usize), i: Issue) {
        self.raw.push(Raw {
            id,
            line: i.line.unwrap_or_else(|| line(node)),
            col: ast::col(node),
            range,
            issue: i,
        });
    }

    /// Run the tests for the node at the end of `path`; whether its children can hold anything
    /// the tests look at (a plain string's or an import's cannot).
    fn visit(&mut self, path: &[Node<'s>]) -> bool {
        let Some(&node) = path.last() else {
            return false;
        };
        match ast::visit_kind(node) {
            Visit::Nothing => {}
            Visit::Call => super::python_calls::check(self, path),
            // Only an f-string's pieces hold code (the interpolations) to walk into; the
            // pieces of a concatenation are one constant, checked at the concatenation.
            Visit::String
                if path.len() >= 2
                    && ast::visit_kind(path[path.len() - 2]) == Visit::ConcatenatedString => {}
            Visit::String | Visit::ConcatenatedString => {
                return super::python_strings::check(self, path);
            }
            Visit::FunctionDef => self.function_def(node),
            Visit::ExceptHandler => self.except_handler(node),
            Visit::Assert => {
                let i = issue(
                    Level::Low,
                    Level::High,
                    "Use of assert detected. The enclosed code will be removed when compiling to \
                     optimised byte code.",
                );
                self.report("B101", node, lines(node), i);
            }
            Visit::Import => {
                self.import(node);
                return false;
            }
            Visit::Comment => {
                let text = self.src.text_of(node);
                self.nosec.add(line(node), text);
            }
        }
        true
    }

    /// Bandit's `visit_Import`/`visit_ImportFrom` bookkeeping, then the import blacklist.
    fn import(&mut self, node: Node) {
        let mut entries = Vec::new();
        crate::imports::statement_imports(self.src, node, &mut entries);
        for e in &entries {
            match &e.name {
                None => {
                    if e.bound != e.target {
                        self.names.aliases.insert(e.bound.clone(), e.target.clone());
                    }
                    self.names.add_import(&e.module);
                }
                Some(name) => {
                    // `ast` drops the dots of a relative import: `from .a import b` is `a.b`.
                    let module = e.module.trim_start_matches('.');
                    if module.is_empty() {
                        if &e.bound != name {
                            self.names.aliases.insert(e.bound.clone(), name.clone());
                        }
                        self.names.add_import(name);
                    } else {
                        let full = format!("{module}.{name}");
                        self.names.aliases.insert(e.bound.clone(), full.clone());
                        self.names.add_import(&full);
                    }
                }
            }
        }
        if let Some(i) = super::python_blacklist::import(&entries) {
            let (id, i) = i;
            self.report(id, node, lines(node), i);
        }
    }

    /// B107 and B503, which Bandit runs on `FunctionDef` only (not `async def`, not lambdas).
    fn function_def(&mut self, node: Node) {
        if node.child(0).is_some_and(|c| c.kind_name() == "async") {
            return;
        }
        let Some(params) = node.field("parameters") else {
            return;
        };
        // `ast`'s `args.args` (positional parameters after any `/`) and `args.defaults` (the
        // defaults of all positional parameters, `/`-only ones included).
        let mut args: Vec<(Node, Option<Node>)> = Vec::new();
        let mut defaults: Vec<Node> = Vec::new();
        for p in kids(params) {
            match p.kind_name() {
                "positional_separator" => args.clear(),
                "keyword_separator" | "list_splat_pattern" | "dictionary_splat_pattern" => break,
                "identifier" => args.push((p, None)),
                // `*args: T` and `**kw: T` are typed parameters too, and end the positional ones.
                "typed_parameter" => match kids(p).first() {
                    Some(&n) if n.kind_name() == "identifier" => args.push((n, None)),
                    _ => break,
                },
                "default_parameter" | "typed_default_parameter" => {
                    let name = p.field("name");
                    let value = p.field("value");
                    if let Some(v) = value {
                        defaults.push(v);
                    }
                    if let Some(n) = name {
                        args.push((n, value));
                    }
                }
                _ => {}
            }
        }
        // Bandit pads `defaults` on the left to `len(args)`, and zips: with defaults on
        // `/`-only parameters the pairs shift, as in Bandit.
        let pad = args.len().saturating_sub(defaults.len());
        let paired = args.iter().zip(
            (0..pad)
                .map(|_| None)
                .chain(defaults.iter().map(|&d| Some(d))),
        );
        for ((name, _), default) in paired {
            let Some(d) = default else { continue };
            if name.kind_name() != "identifier" {
                continue;
            }
            if let Some(s) = ast::str_constant(self.src, d)
                && super::python_strings::looks_like_password(self.src.text_of(*name))
            {
                let i = super::python_strings::password_issue(&s);
                self.report("B107", node, lines(node), i);
                break;
            }
        }
        for &d in &defaults {
            let d = unparen(d);
            let attr = (d.kind_name() == "attribute")
                .then(|| d.field("attribute"))
                .flatten()
                .map(|a| self.src.text_of(a));
            if attr.is_some_and(|a| super::python_calls::BAD_SSL_VERSIONS.contains(&a)) {
                let i = issue(
                    Level::Medium,
                    Level::Medium,
                    "Function definition identified with insecure SSL/TLS protocol version by \
                     default, possible security issue.",
                );
                self.report("B503", node, lines(node), i);
                break;
            }
        }
    }

    /// B110 and B112: a bare `except:` or `except Exception:` whose body is one `pass` or
    /// `continue`.
    fn except_handler(&mut self, node: Node) {
        let mut ty = node.field("value");
        if let Some(t) = ty.filter(|t| t.kind_name() == "as_pattern") {
            ty = kids(t).first().copied();
        }
        if let Some(t) = ty.map(unparen)
            && (t.kind_name() != "identifier" || self.src.text_of(t) != "Exception")
        {
            return;
        }
        let Some(block) = kids(node).into_iter().find(|c| c.kind_name() == "block") else {
            return;
        };
        let body = kids(block);
        if body.len() != 1 {
            return;
        }
        let (id, text) = match body[0].kind_name() {
            "pass_statement" => ("B110", "Try, Except, Pass detected."),
            "continue_statement" => ("B112", "Try, Except, Continue detected."),
            _ => return,
        };
        self.report(id, node, lines(node), issue(Level::Low, Level::High, text));
    }

    /// B613, Bandit's only whole-file test: the first line with a bidirectional control
    /// character, lines split as Python's `str.splitlines` splits them.
    fn trojan_source(&mut self) {
        const BIDI: [char; 10] = [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200f}',
        ];
        // All of them encode as E2 80 xx or E2 81 xx: most files have no E2 byte at all.
        if !self.src.text.as_bytes().contains(&0xe2) {
            return;
        }
        let is_break = |c: char| {
            matches!(
                c,
                '\n' | '\r'
                    | '\x0b'
                    | '\x0c'
                    | '\x1c'
                    | '\x1d'
                    | '\x1e'
                    | '\u{85}'
                    | '\u{2028}'
                    | '\u{2029}'
            )
        };
        let text = self.src.text.as_str();
        let mut lineno = 0;
        let mut rest = text;
        while !rest.is_empty() {
            lineno += 1;
            let end = rest.find(is_break).unwrap_or(rest.len());
            let line_text = &rest[..end];
            for ch in BIDI {
                if let Some(byte) = line_text.find(ch) {
                    let col = line_text[..byte].chars().count() + 1;
                    self.raw.push(Raw {
                        id: "B613",
                        issue: issue(
                            Level::High,
                            Level::Medium,
                            format!(
                                "A Python source file contains bidirectional control characters \
                                 ('\\u{:04x}').",
                                ch as u32
                            ),
                        ),
                        line: lineno,
                        col,
                        range: (0, 1),
                    });
                    return;
                }
            }
            let mut next = end;
            if rest[end..].starts_with("\r\n") {
                next += 2;
            } else if let Some(c) = rest[end..].chars().next() {
                next += c.len_utf8();
            }
            rest = &rest[next..];
        }
    }
}

/// Whether `ast` visits `node` (a child of `parent`, in `field`) after its later siblings:
/// a function's decorators and return annotation come after its body, so an import in the body
/// already applies to them.
fn deferred(parent: Option<&Node>, cursor: &tree_sitter::TreeCursor, node: Node) -> bool {
    match parent.map(|p| p.kind_name()) {
        Some("decorated_definition") => node.kind_name() == "decorator",
        Some("function_definition") => cursor.field_name() == Some("return_type"),
        _ => false,
    }
}

/// The nodes `ast` visits after the subtree of `done`, the last node of `path`.
fn deferred_children<'t>(done: Node<'t>) -> Vec<Node<'t>> {
    match done.kind_name() {
        "decorated_definition" => kids(done)
            .into_iter()
            .filter(|c| c.kind_name() == "decorator")
            .collect(),
        "function_definition" => done.field("return_type").into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Visit the subtree of `start` in `ast`'s order, `path` holding its ancestors (and restored
/// on return). A cursor walk in source order, except for the deferred nodes, walked when their
/// parent's subtree is done (one level deep at most: decorators and annotations are
/// expressions, with no definitions inside).
fn walk<'s>(w: &mut Walk<'s>, start: Node<'s>, path: &mut Vec<Node<'s>>) {
    // A cursor made at `start` treats it as the root: it never moves above or beside it.
    let mut cursor = start.walk();
    loop {
        let node = cursor.node();
        // `start` itself may be a deferred node, now walked.
        let later = node != start && deferred(path.last(), &cursor, node);
        path.push(node);
        if !later && w.visit(path) && cursor.goto_first_child() {
            continue;
        }
        // The subtree of the last node of `path` is done, and maybe its ancestors' too.
        loop {
            if let Some(&done) = path.last() {
                for child in deferred_children(done) {
                    walk(w, child, path);
                }
            }
            path.pop();
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

fn run(src: &Source) -> Vec<Finding> {
    let mut w = Walk {
        src,
        names: Names::default(),
        tracker_budget: std::cell::Cell::new(1 << 20),
        raw: Vec::new(),
        nosec: Nosec::default(),
    };
    // The ancestors of the current node and the node itself: the rules find `ast` parents in
    // it, since tree-sitter's `parent()` walks down from the root each time.
    let mut path: Vec<Node> = Vec::new();
    walk(&mut w, src.tree.root_node(), &mut path);
    w.trojan_source();
    let Walk { raw, nosec, .. } = w;
    raw.into_iter()
        .filter(|r| nosec.is_empty() || !nosec.silences(r.id, r.line, r.range))
        .map(|r| Finding {
            rule: r.id.to_string(),
            name: rule_name(r.id).to_string(),
            severity: r.issue.sev,
            confidence: r.issue.conf,
            line: r.line,
            column: r.col + 1,
            message: r.issue.text,
        })
        .collect()
}
