//! SARIF 2.1.0 output of [`crate::report`], for GitHub code scanning and other SARIF viewers.
//!
//! One run, `tool.driver.name` "anvil", with a rule for every rule ID that appears (GitHub
//! shows `shortDescription`/`fullDescription` on the alert and requires `help.text`), one result
//! per finding, and files that could not be analyzed as error notifications of the invocation
//! (they have no result to carry, and the run itself still succeeded).
//!
//! Mapping: severity HIGH → `error`, MEDIUM → `warning`, LOW → `note`; the finding's own
//! severity and confidence go in the result's `properties`. Security rules carry GitHub's
//! `security-severity` (HIGH 8.0, MEDIUM 5.0, LOW 2.0: its "high", "medium" and "low" bands) and
//! `precision` from the highest severity and confidence any of their results has.
//!
//! Paths: a file under the base directory (the current directory for
//! [`crate::report::write_sarif`]) gets a relative URI with `uriBaseId` `%SRCROOT%`, which
//! `originalUriBaseIds` resolves; any other file an absolute `file://` URI.
//!
//! Columns are the analyzers' own (Bandit's and pyflakes' 1-based columns), so on a line with
//! non-ASCII text before the finding a column may be off by the extra bytes.

use crate::finding::Level;
use crate::report::{FileReport, TaggedFinding, Tool};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
pub const VERSION: &str = "2.1.0";
/// The base ID relative artifact URIs are resolved against (the repository root, for GitHub).
pub const SRCROOT: &str = "%SRCROOT%";
const BANDIT_DOCS: &str = "https://bandit.readthedocs.io/en/1.9.4/";
const PYFLAKES_DOCS: &str = "https://flake8.pycqa.org/en/latest/user/error-codes.html";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Log {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: [Run; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    tool: ToolSection,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    original_uri_base_ids: BTreeMap<&'static str, ArtifactLocation>,
    invocations: [Invocation; 1],
    column_kind: &'static str,
    results: Vec<SarifResult>,
}

#[derive(Serialize)]
struct ToolSection {
    driver: Driver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    semantic_version: &'static str,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    name: String,
    short_description: Text,
    full_description: Text,
    help: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_uri: Option<String>,
    default_configuration: Configuration,
    properties: RuleProperties,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Serialize)]
struct RuleProperties {
    tags: Vec<&'static str>,
    precision: &'static str,
    #[serde(rename = "security-severity", skip_serializing_if = "Option::is_none")]
    security_severity: Option<&'static str>,
    #[serde(rename = "problem.severity", skip_serializing_if = "Option::is_none")]
    problem_severity: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: String,
    rule_index: usize,
    level: &'static str,
    message: Text,
    locations: [Location; 1],
    properties: ResultProperties,
}

#[derive(Serialize)]
struct ResultProperties {
    tool: &'static str,
    name: String,
    severity: &'static str,
    confidence: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: PhysicalLocation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactLocation {
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_base_id: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
    start_column: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    execution_successful: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_execution_notifications: Vec<Notification>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    level: &'static str,
    message: Text,
    locations: [Location; 1],
}

/// SARIF's result level for a severity.
pub fn level(severity: Level) -> &'static str {
    match severity {
        Level::High => "error",
        Level::Medium => "warning",
        Level::Low => "note",
    }
}

/// Write `reports` as one SARIF log. `base`: the directory relative report paths are relative
/// to, and the root artifact URIs are made relative to (`%SRCROOT%`); `None` leaves relative
/// paths relative with no base and absolute ones absolute.
pub fn write(reports: &[FileReport], base: Option<&Path>, out: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &log(reports, base))?;
    writeln!(out)
}

fn log(reports: &[FileReport], base: Option<&Path>) -> Log {
    let base = base.map(normalize);
    // Rules in order of first appearance, each with the highest levels seen among its results.
    let mut rules: Vec<Rule> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut results = Vec::new();
    let mut notifications = Vec::new();
    for r in reports {
        let artifact = artifact_location(&r.path, base.as_deref());
        if let Some(e) = &r.error {
            notifications.push(Notification {
                level: "error",
                message: Text {
                    text: format!("{}: {e}", r.path),
                },
                locations: [Location {
                    physical_location: PhysicalLocation {
                        artifact_location: artifact.clone(),
                        region: None,
                    },
                }],
            });
            continue;
        }
        for tagged in &r.findings {
            let f = &tagged.finding;
            let i = *index.entry(f.rule.clone()).or_insert_with(|| {
                rules.push(rule(tagged));
                rules.len() - 1
            });
            raise(&mut rules[i], tagged);
            results.push(SarifResult {
                rule_id: f.rule.clone(),
                rule_index: i,
                level: level(f.severity),
                message: Text {
                    text: f.message.clone(),
                },
                locations: [Location {
                    physical_location: PhysicalLocation {
                        artifact_location: artifact.clone(),
                        region: Some(Region {
                            start_line: f.line.max(1),
                            start_column: f.column.max(1),
                        }),
                    },
                }],
                properties: ResultProperties {
                    tool: tagged.tool.name(),
                    name: f.name.clone(),
                    severity: f.severity.name(),
                    confidence: f.confidence.name(),
                },
            });
        }
    }
    let mut original_uri_base_ids = BTreeMap::new();
    if let Some(b) = &base {
        let mut uri = file_uri(b);
        if !uri.ends_with('/') {
            uri.push('/');
        }
        original_uri_base_ids.insert(
            SRCROOT,
            ArtifactLocation {
                uri,
                uri_base_id: None,
            },
        );
    }
    Log {
        schema: SCHEMA,
        version: VERSION,
        runs: [Run {
            tool: ToolSection {
                driver: Driver {
                    name: "anvil",
                    version: env!("CARGO_PKG_VERSION"),
                    semantic_version: env!("CARGO_PKG_VERSION"),
                    rules,
                },
            },
            original_uri_base_ids,
            invocations: [Invocation {
                execution_successful: true,
                tool_execution_notifications: notifications,
            }],
            column_kind: "unicodeCodePoints",
            results,
        }],
    }
}

/// The rule of a finding's ID, described from its tool and name.
fn rule(tagged: &TaggedFinding) -> Rule {
    let f = &tagged.finding;
    let title = humanize(&f.name);
    let (full, help_uri, tags) = match tagged.tool {
        Tool::Security => (
            format!("Bandit-compatible security check {} ({}).", f.rule, f.name),
            bandit_uri(&f.rule, &f.name),
            vec!["security", "bandit"],
        ),
        Tool::Lint if f.rule.starts_with('F') => (
            format!("pyflakes-compatible check {} ({}).", f.rule, f.name),
            Some(PYFLAKES_DOCS.to_string()),
            vec!["correctness", "pyflakes"],
        ),
        Tool::Lint => (
            format!("Anvil lint {} ({}).", f.rule, f.name),
            None,
            vec!["maintainability"],
        ),
        Tool::License => (
            format!(
                "License compliance check {} ({}) against the license policy.",
                f.rule, f.name
            ),
            None,
            vec!["license"],
        ),
        Tool::Syntax => (
            "The file does not parse as Python; the other checks ran on the parser's \
             recovered tree."
                .to_string(),
            None,
            vec!["correctness", "syntax"],
        ),
    };
    let help = match &help_uri {
        Some(uri) => format!("{full} Documentation: {uri}"),
        None => full.clone(),
    };
    let mut rule = Rule {
        id: f.rule.clone(),
        name: f.name.clone(),
        short_description: Text { text: title },
        full_description: Text { text: full },
        help: Text { text: help },
        help_uri,
        default_configuration: Configuration { level: "note" },
        properties: RuleProperties {
            tags,
            precision: "low",
            security_severity: None,
            problem_severity: None,
        },
    };
    set_levels(&mut rule, tagged.tool, f.severity, f.confidence);
    rule
}

/// Levels a rule shows: its results' highest severity and confidence so far.
struct Seen {
    severity: Level,
    confidence: Level,
}

fn seen(rule: &Rule) -> Seen {
    let severity = match rule.default_configuration.level {
        "error" => Level::High,
        "warning" => Level::Medium,
        _ => Level::Low,
    };
    let confidence = match rule.properties.precision {
        "high" => Level::High,
        "medium" => Level::Medium,
        _ => Level::Low,
    };
    Seen {
        severity,
        confidence,
    }
}

fn raise(rule: &mut Rule, tagged: &TaggedFinding) {
    let s = seen(rule);
    let f = &tagged.finding;
    set_levels(
        rule,
        tagged.tool,
        s.severity.max(f.severity),
        s.confidence.max(f.confidence),
    );
}

fn set_levels(rule: &mut Rule, tool: Tool, severity: Level, confidence: Level) {
    rule.default_configuration.level = level(severity);
    rule.properties.precision = match confidence {
        Level::High => "high",
        Level::Medium => "medium",
        Level::Low => "low",
    };
    // GitHub reads `security-severity` only for rules tagged "security", and `problem.severity`
    // for the others.
    if tool == Tool::Security {
        rule.properties.security_severity = Some(match severity {
            Level::High => "8.0",
            Level::Medium => "5.0",
            Level::Low => "2.0",
        });
    } else {
        rule.properties.problem_severity = Some(match severity {
            Level::High => "error",
            Level::Medium => "warning",
            Level::Low => "recommendation",
        });
    }
}

/// `subprocess_popen_with_shell_equals_true` → `Subprocess popen with shell equals true`.
fn humanize(name: &str) -> String {
    let words = name.replace(['_', '-'], " ");
    let mut chars = words.trim().chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => "Finding".to_string(),
    }
}

/// Bandit's own `more_info` link (`bandit.core.docs_utils.get_url`): blacklisted calls (B3xx)
/// and imports (B4xx) are anchors on one page per list, every other test has its plugin's page,
/// named after the plugin's function (which differs from the test name for three tests).
fn bandit_uri(id: &str, name: &str) -> Option<String> {
    let lower = id.to_ascii_lowercase();
    let valid = lower.len() == 4
        && lower.starts_with('b')
        && lower[1..].bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty();
    if !valid {
        return None;
    }
    let plugin = |function: &str| format!("{BANDIT_DOCS}plugins/{lower}_{function}.html");
    let anchor = |list: &str, anchor: &str| {
        format!("{BANDIT_DOCS}blacklists/blacklist_{list}.html#{anchor}")
    };
    let dashed = name.replace('_', "-").to_ascii_lowercase();
    Some(match lower.as_str() {
        "b324" => plugin("hashlib"),
        "b508" => plugin("snmp_insecure_version_check"),
        "b509" => plugin("snmp_crypto_check"),
        "b304" | "b305" => anchor("calls", "b304-b305-ciphers-and-modes"),
        "b313" | "b314" | "b315" | "b316" | "b317" | "b318" | "b319" | "b320" => {
            anchor("calls", &format!("b313-b320-{dashed}"))
        }
        _ if lower.starts_with("b3") => anchor("calls", &format!("{lower}-{dashed}")),
        _ if lower.starts_with("b4") => anchor("imports", &format!("{lower}-{dashed}")),
        _ => plugin(name),
    })
}

/// Where a report's file is: relative to `base` (`%SRCROOT%`) when inside it, else absolute.
fn artifact_location(path: &str, base: Option<&Path>) -> ArtifactLocation {
    let p = Path::new(path);
    let abs = match base {
        Some(b) if p.is_relative() => Some(normalize(&b.join(p))),
        _ if p.is_absolute() => Some(normalize(p)),
        _ => None,
    };
    if let (Some(abs), Some(base)) = (&abs, base)
        && let Ok(rel) = abs.strip_prefix(base)
        && rel.components().next().is_some()
    {
        return ArtifactLocation {
            uri: relative_uri(rel),
            uri_base_id: Some(SRCROOT),
        };
    }
    match abs {
        Some(abs) => ArtifactLocation {
            uri: file_uri(&abs),
            uri_base_id: None,
        },
        // No base to anchor it: the best a reader can do is resolve it against where it runs.
        None => ArtifactLocation {
            uri: relative_uri(&normalize(p)),
            uri_base_id: None,
        },
    }
}

/// `.` and `..` resolved without touching the file system (a report path may no longer exist,
/// and following symlinks would change the path the user sees). A leading `..` that cannot be
/// resolved is kept.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = out.components().next_back();
                match last {
                    Some(Component::Normal(_)) => {
                        out.pop();
                    }
                    Some(Component::RootDir | Component::Prefix(_)) => {}
                    _ => out.push(".."),
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn relative_uri(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(encode(&s.to_string_lossy())),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect();
    parts.join("/")
}

/// `file:///abs/path` (RFC 8089), also for Windows paths (`file:///C:/…`).
fn file_uri(abs: &Path) -> String {
    let mut uri = String::from("file://");
    for c in abs.components() {
        match c {
            Component::Prefix(p) => {
                uri.push('/');
                uri.push_str(&p.as_os_str().to_string_lossy().replace('\\', "/"));
            }
            Component::RootDir => {}
            Component::Normal(s) => {
                uri.push('/');
                uri.push_str(&encode(&s.to_string_lossy()));
            }
            Component::ParentDir => uri.push_str("/.."),
            Component::CurDir => {}
        }
    }
    if uri == "file://" {
        uri.push('/');
    }
    uri
}

/// Percent-encode one path segment: everything but RFC 3986's unreserved characters, so that
/// spaces, `#`, `?`, `%` and non-ASCII names make valid URIs.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_relative_inside_the_base_and_encoded() {
        let base = Path::new("/repo");
        let a = artifact_location("pkg/a b#.py", Some(base));
        assert_eq!(a.uri, "pkg/a%20b%23.py");
        assert_eq!(a.uri_base_id, Some(SRCROOT));
        let a = artifact_location("./pkg/../x.py", Some(base));
        assert_eq!(a.uri, "x.py");
        let a = artifact_location("/repo/src/é.py", Some(base));
        assert_eq!(a.uri, "src/%C3%A9.py");
        let a = artifact_location("/elsewhere/x.py", Some(base));
        assert_eq!(
            (a.uri.as_str(), a.uri_base_id),
            ("file:///elsewhere/x.py", None)
        );
        let a = artifact_location("../x.py", Some(base));
        assert_eq!(a.uri, "file:///x.py");
        let a = artifact_location("../x.py", None);
        assert_eq!((a.uri.as_str(), a.uri_base_id), ("../x.py", None));
    }

    #[test]
    fn bandit_links_follow_bandits_layout() {
        assert_eq!(
            bandit_uri("B602", "subprocess_popen_with_shell_equals_true").as_deref(),
            Some(
                "https://bandit.readthedocs.io/en/1.9.4/plugins/b602_subprocess_popen_with_shell_equals_true.html"
            )
        );
        assert_eq!(
            bandit_uri("B301", "pickle").as_deref(),
            Some(
                "https://bandit.readthedocs.io/en/1.9.4/blacklists/blacklist_calls.html#b301-pickle"
            )
        );
        assert_eq!(
            bandit_uri("B314", "xml_bad_ElementTree").as_deref(),
            Some(
                "https://bandit.readthedocs.io/en/1.9.4/blacklists/blacklist_calls.html#b313-b320-xml-bad-elementtree"
            )
        );
        assert_eq!(
            bandit_uri("B324", "hashlib_insecure_functions").as_deref(),
            Some("https://bandit.readthedocs.io/en/1.9.4/plugins/b324_hashlib.html")
        );
        assert!(bandit_uri("F401", "unused-import").is_none());
        assert_eq!(humanize("unused-import"), "Unused import");
        assert_eq!(humanize(""), "Finding");
    }
}
