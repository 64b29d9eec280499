//! `anvil reward analyze PATH…`: every analyzer over files and directories, one [`FileReport`]
//! per file, printed as text (bandit's and radon's human output, compacted), JSON, or SARIF
//! ([`crate::sarif`]).
//!
//! A file that cannot be analyzed (unreadable, not UTF-8, binary, too large, nested too deep)
//! gets a report with its error instead of findings: one bad file in a tree of thousands must
//! neither abort the run nor hide the others' results. Only a path the caller named that does
//! not exist is an error of the whole call, since that is a typo, not a property of the tree.

use crate::finding::{Finding, Level};
use crate::license::{self, LicenseError, LicensePolicy};
use crate::quality::{self, BlockKind};
use crate::security;
use crate::source::{MAX_BYTES, Source, SourceError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: no such file or directory", .0.display())]
    NotFound(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Policy(#[from] LicenseError),
}

/// Which analyzer reported a finding. Rule IDs do not collide across tools (`B…` security,
/// `F…`/`W…` lints, `L…` license, `E999` syntax), but consumers filter by tool, not by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// The file does not parse; the other analyzers ran on tree-sitter's recovered tree.
    Syntax,
    /// Bandit-compatible security checks ([`crate::security`]).
    Security,
    /// pyflakes-compatible lints ([`crate::quality`]).
    Lint,
    /// License compliance ([`crate::license`]).
    License,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::Syntax, Tool::Security, Tool::Lint, Tool::License];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Syntax => "syntax",
            Tool::Security => "security",
            Tool::Lint => "lint",
            Tool::License => "license",
        }
    }
}

/// A finding with the analyzer that reported it; flattened in JSON (`{"tool": "security",
/// "rule": "B602", …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaggedFinding {
    pub tool: Tool,
    #[serde(flatten)]
    pub finding: Finding,
}

/// radon's block types. A copy of [`BlockKind`] because reports must also deserialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    Function,
    Method,
    Class,
}

/// One function, method or class with its cyclomatic complexity, as `radon cc` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// radon's full name: `Class.method` for methods, the bare name otherwise.
    pub name: String,
    pub kind: FunctionKind,
    /// 1-based line of `def`/`class`, and radon's `endline`.
    pub line: usize,
    pub end_line: usize,
    /// 0-based column, as radon's `col_offset`.
    pub column: usize,
    pub complexity: u32,
    /// radon's rank letter, A (1–5) … F (41+).
    pub rank: char,
}

/// The file's maintainability index, as `radon mi` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Maintainability {
    pub mi: f64,
    pub rank: char,
}

/// The three static terms of the reward for the file, each in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// [`security::risk`]: 0 is no finding; higher is worse.
    pub security_risk: f64,
    /// [`quality::score`]: 0 when the file does not parse.
    pub quality: f64,
    /// [`license::check`]'s score without a corpus index (L001/L002 only).
    pub license: f64,
}

/// Everything the analyzers say about one file. When `error` is set, the file was not analyzed
/// and the other fields are empty (`parses` false, no maintainability, no scores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileReport {
    /// The path as walked: a named file as given, a file found in a named directory joined to
    /// that directory's path.
    pub path: String,
    pub error: Option<String>,
    /// False when tree-sitter had to recover from syntax errors (or the file was not analyzed).
    pub parses: bool,
    /// Every tool's findings, sorted by line, column, then rule.
    pub findings: Vec<TaggedFinding>,
    /// Functions, methods and classes in source order.
    pub functions: Vec<Function>,
    pub maintainability: Option<Maintainability>,
    pub scores: Option<Scores>,
}

impl FileReport {
    /// The report of a file that could not be analyzed.
    pub fn failed(path: impl Into<String>, error: impl Into<String>) -> FileReport {
        FileReport {
            path: path.into(),
            error: Some(error.into()),
            parses: false,
            findings: Vec::new(),
            functions: Vec::new(),
            maintainability: None,
            scores: None,
        }
    }
}

/// Counts and means over a set of reports: the last lines of the text output and `totals` in
/// the JSON document. Means are over the files that were analyzed (functions for complexity).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub files: usize,
    pub errors: usize,
    /// Analyzed files with syntax errors.
    pub not_parsing: usize,
    pub findings: usize,
    pub syntax: usize,
    pub security: usize,
    pub lint: usize,
    pub license: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    /// Functions and methods (not classes, whose complexity is an average of their methods').
    pub functions: usize,
    pub mean_complexity: f64,
    pub mean_mi: f64,
    pub mean_security_risk: f64,
    pub mean_quality: f64,
    pub mean_license: f64,
}

impl Totals {
    pub fn of(reports: &[FileReport]) -> Totals {
        let mut t = Totals {
            files: reports.len(),
            ..Totals::default()
        };
        let (mut cc_sum, mut analyzed) = (0u64, 0usize);
        for r in reports {
            if r.error.is_some() {
                t.errors += 1;
                continue;
            }
            analyzed += 1;
            t.not_parsing += usize::from(!r.parses);
            for f in &r.findings {
                t.findings += 1;
                *match f.tool {
                    Tool::Syntax => &mut t.syntax,
                    Tool::Security => &mut t.security,
                    Tool::Lint => &mut t.lint,
                    Tool::License => &mut t.license,
                } += 1;
                *match f.finding.severity {
                    Level::High => &mut t.high,
                    Level::Medium => &mut t.medium,
                    Level::Low => &mut t.low,
                } += 1;
            }
            for f in r.functions.iter().filter(|f| f.kind != FunctionKind::Class) {
                t.functions += 1;
                cc_sum += u64::from(f.complexity);
            }
            if let Some(m) = r.maintainability {
                t.mean_mi += m.mi;
            }
            if let Some(s) = r.scores {
                t.mean_security_risk += s.security_risk;
                t.mean_quality += s.quality;
                t.mean_license += s.license;
            }
        }
        if t.functions > 0 {
            t.mean_complexity = cc_sum as f64 / t.functions as f64;
        }
        if analyzed > 0 {
            let n = analyzed as f64;
            t.mean_mi /= n;
            t.mean_security_risk /= n;
            t.mean_quality /= n;
            t.mean_license /= n;
        }
        t
    }
}

/// The JSON document of `--format json`, as read back ([`write_json`] writes the same fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// `anvil-analyze` version that wrote it.
    pub version: String,
    pub files: Vec<FileReport>,
    pub totals: Totals,
}

impl Document {
    pub fn new(reports: &[FileReport]) -> Document {
        Document {
            version: env!("CARGO_PKG_VERSION").to_string(),
            files: reports.to_vec(),
            totals: Totals::of(reports),
        }
    }
}

/// Analyze every Python file under `paths`: files named directly whatever their extension,
/// `*.py` files found in named directories (hidden directories and `__pycache__` skipped,
/// symlinks followed, loops detected and skipped). Files are analyzed in parallel on rayon's
/// current pool; the reports come back sorted by path, without duplicates.
///
/// Errors only for a path that does not exist or an invalid policy; everything else is a
/// per-file error in its report.
pub fn analyze_paths(
    paths: &[PathBuf],
    policy: &LicensePolicy,
) -> Result<Vec<FileReport>, ReportError> {
    policy.validate()?;
    let mut files = Vec::new();
    let mut failed = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ReportError::NotFound(path.clone()),
            _ => ReportError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            walk(path, &mut files, &mut failed);
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    let mut reports: Vec<FileReport> = files.par_iter().map(|p| analyze_file(p, policy)).collect();
    reports.extend(failed);
    reports.sort_by(|a, b| Path::new(&a.path).cmp(Path::new(&b.path)));
    Ok(reports)
}

/// Collect `*.py` files under `root`; entries the walker cannot read become failed reports.
fn walk(root: &Path, files: &mut Vec<PathBuf>, failed: &mut Vec<FileReport>) {
    // No ignore files: a review covers what is on disk, and bandit and radon (whose output
    // this replaces) read no .gitignore either.
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(true)
        .filter_entry(|e| {
            let skipped_dir = e.depth() > 0
                && e.file_type().is_some_and(|t| t.is_dir())
                && e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with('.') || n == "__pycache__");
            !skipped_dir
        })
        .build();
    for entry in walker {
        match entry {
            Ok(e) => {
                let is_py = e.path().extension().is_some_and(|x| x == "py");
                if is_py && e.file_type().is_some_and(|t| t.is_file()) {
                    files.push(e.into_path());
                }
            }
            // A symlink back to an ancestor is a cycle in the tree, not a problem of any file.
            Err(e) if is_loop(&e) => {}
            Err(e) => {
                let path = error_path(&e).unwrap_or(root);
                failed.push(FileReport::failed(
                    path.to_string_lossy(),
                    format!(
                        "unreadable: {}",
                        e.io_error()
                            .map_or_else(|| root_cause(&e), |io| io.to_string())
                    ),
                ));
            }
        }
    }
}

fn is_loop(e: &ignore::Error) -> bool {
    match e {
        ignore::Error::Loop { .. } => true,
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => is_loop(err),
        _ => false,
    }
}

fn error_path(e: &ignore::Error) -> Option<&Path> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        _ => None,
    }
}

/// The message without the path the report already carries.
fn root_cause(e: &ignore::Error) -> String {
    match e {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => root_cause(err),
        other => other.to_string(),
    }
}

/// Read and analyze one file. Never fails: problems are the report's `error`.
pub fn analyze_file(path: &Path, policy: &LicensePolicy) -> FileReport {
    let name = path.to_string_lossy();
    match read_limited(path) {
        Ok(bytes) => analyze_bytes(&name, &bytes, policy),
        Err(e) => FileReport::failed(name, e),
    }
}

/// Read at most one byte past [`MAX_BYTES`], so that a huge or endless file (a device named on
/// the command line) costs no more than a file at the limit.
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let unreadable = |e: io::Error| format!("unreadable: {e}");
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    if len > MAX_BYTES {
        return Err(SourceError::TooLarge(len).to_string());
    }
    let mut bytes = Vec::with_capacity(len + 1);
    file.take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Ok(bytes)
}

/// Analyze one file's contents under the name `path`.
pub fn analyze_bytes(path: &str, bytes: &[u8], policy: &LicensePolicy) -> FileReport {
    let src = match Source::python(bytes) {
        Ok(src) => src,
        Err(e) => return FileReport::failed(path, e.to_string()),
    };
    // The analyzers are meant never to panic; if one does on some file, that file's report says
    // so and the other files of the run are still reported.
    panic::catch_unwind(AssertUnwindSafe(|| analyze_source(path, &src, policy))).unwrap_or_else(
        |payload| {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            FileReport::failed(path, format!("internal error: analyzer panicked: {why}"))
        },
    )
}

/// Run every analyzer on a parsed file.
pub fn analyze_source(path: &str, src: &Source, policy: &LicensePolicy) -> FileReport {
    let security = security::analyze(src);
    let quality = quality::analyze(src);
    let license = license::check(src, policy, None);
    let parses = !src.has_errors;
    let scores = Scores {
        security_risk: finite(security::risk(&security)),
        quality: finite(quality::score(&quality, parses)),
        license: finite(license.score),
    };
    let tag = |tool: Tool| move |finding: Finding| TaggedFinding { tool, finding };
    let mut findings: Vec<TaggedFinding> = syntax_error(src)
        .into_iter()
        .map(tag(Tool::Syntax))
        .chain(security.into_iter().map(tag(Tool::Security)))
        .chain(quality.lints.into_iter().map(tag(Tool::Lint)))
        .chain(license.findings.into_iter().map(tag(Tool::License)))
        .collect();
    findings.sort_by(|a, b| {
        let key = |f: &TaggedFinding| (f.finding.line, f.finding.column, f.tool);
        key(a)
            .cmp(&key(b))
            .then_with(|| a.finding.rule.cmp(&b.finding.rule))
    });
    let functions = quality
        .blocks
        .into_iter()
        .map(|b| Function {
            name: match (&b.classname, b.kind) {
                (Some(class), BlockKind::Method) => format!("{class}.{}", b.name),
                _ => b.name,
            },
            kind: match b.kind {
                BlockKind::Function => FunctionKind::Function,
                BlockKind::Method => FunctionKind::Method,
                BlockKind::Class => FunctionKind::Class,
            },
            line: b.line,
            end_line: b.end_line,
            column: b.column,
            complexity: b.complexity,
            rank: b.rank,
        })
        .collect();
    FileReport {
        path: path.to_string(),
        error: None,
        parses,
        findings,
        functions,
        maintainability: Some(Maintainability {
            mi: finite(quality.mi),
            rank: quality.mi_rank,
        }),
        scores: Some(scores),
    }
}

/// JSON has no NaN: a non-finite number would serialize as `null` and fail to read back.
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// The first syntax error tree-sitter recovered from, as a finding (`E999`, flake8's code for
/// a file Python refuses to compile), so a broken file shows where it breaks.
fn syntax_error(src: &Source) -> Option<Finding> {
    if !src.has_errors {
        return None;
    }
    let mut node = src.tree.root_node();
    let mut cursor = node.walk();
    // Descend along the first child that contains an error (no recursion: depth is bounded by
    // MAX_DEPTH but the loop needs no stack either way).
    while !(node.is_error() || node.is_missing()) {
        let next = node.children(&mut cursor).find(|c| c.has_error());
        match next {
            Some(c) => node = c,
            None => break,
        }
    }
    let (line, column) = src.line_col(node.start_byte());
    let message = if node.is_missing() {
        format!("syntax error: missing `{}`", node.kind())
    } else {
        let text = src.text_of(node).lines().next().unwrap_or("").trim();
        let shown: String = text.chars().take(40).collect();
        if shown.is_empty() {
            "syntax error".to_string()
        } else {
            let more = if shown.len() < text.len() { "…" } else { "" };
            format!("syntax error at `{shown}{more}`")
        }
    };
    Some(Finding {
        rule: "E999".into(),
        name: "syntax-error".into(),
        severity: Level::High,
        confidence: Level::High,
        line,
        column,
        message,
    })
}

/// Human output, one line per item (bandit's `path:line` locations, radon's `name CC (rank)`),
/// then totals:
///
/// ```text
/// pkg/a.py:3:1: B602 [HIGH/HIGH] subprocess call with shell=True identified, …
/// pkg/a.py:1: Server.handle 7 (B)
/// pkg/a.py: MI 61.20 (A); security risk 0.900, quality 0.712, license 1.00
/// pkg/b.py: error: not UTF-8 text (invalid byte at offset 12)
/// ```
pub fn write_text(reports: &[FileReport], out: &mut impl Write) -> io::Result<()> {
    for r in reports {
        let p = &r.path;
        if let Some(e) = &r.error {
            writeln!(out, "{p}: error: {e}")?;
            continue;
        }
        for f in &r.findings {
            let f = &f.finding;
            writeln!(
                out,
                "{p}:{}:{}: {} [{}/{}] {}",
                f.line,
                f.column,
                f.rule,
                f.severity.name(),
                f.confidence.name(),
                one_line(&f.message)
            )?;
        }
        for f in &r.functions {
            writeln!(
                out,
                "{p}:{}: {} {} ({})",
                f.line, f.name, f.complexity, f.rank
            )?;
        }
        if let (Some(m), Some(s)) = (r.maintainability, r.scores) {
            writeln!(
                out,
                "{p}: MI {:.2} ({}); security risk {:.3}, quality {:.3}, license {:.2}",
                m.mi, m.rank, s.security_risk, s.quality, s.license
            )?;
        }
    }
    let t = Totals::of(reports);
    writeln!(
        out,
        "{} files: {} analyzed, {} with syntax errors, {} not analyzed (errors)",
        t.files,
        t.files - t.errors,
        t.not_parsing,
        t.errors
    )?;
    writeln!(
        out,
        "{} findings: HIGH {}, MEDIUM {}, LOW {}; security {}, lint {}, license {}, syntax {}",
        t.findings, t.high, t.medium, t.low, t.security, t.lint, t.license, t.syntax
    )?;
    writeln!(
        out,
        "{} functions, mean complexity {:.2}; mean MI {:.2}; mean security risk {:.3}, \
         quality {:.3}, license {:.3}",
        t.functions,
        t.mean_complexity,
        t.mean_mi,
        t.mean_security_risk,
        t.mean_quality,
        t.mean_license
    )
}

/// Messages quote source (B608's SQL, a string) and may span lines; a text line must not.
fn one_line(message: &str) -> std::borrow::Cow<'_, str> {
    if message.contains(['\n', '\r']) {
        message
            .replace("\r\n", " ")
            .replace(['\n', '\r'], " ")
            .into()
    } else {
        message.into()
    }
}

/// The reports as one JSON [`Document`] (`version`, `files`, `totals`), pretty-printed.
pub fn write_json(reports: &[FileReport], out: &mut impl Write) -> io::Result<()> {
    // Borrowing the reports: a tree of thousands of files need not be copied to be printed.
    #[derive(Serialize)]
    struct DocumentRef<'a> {
        version: &'a str,
        files: &'a [FileReport],
        totals: Totals,
    }
    let doc = DocumentRef {
        version: env!("CARGO_PKG_VERSION"),
        files: reports,
        totals: Totals::of(reports),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

/// The reports as SARIF 2.1.0, with artifact URIs relative to the current directory; see
/// [`crate::sarif`].
pub fn write_sarif(reports: &[FileReport], out: &mut impl Write) -> io::Result<()> {
    let base = std::env::current_dir().ok();
    crate::sarif::write(reports, base.as_deref(), out)
}
