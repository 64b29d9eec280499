//! `anvil reward analyze`'s library side end to end: a directory of good, bad and hostile files
//! goes through `report::analyze_paths`, every file gets a report (errors per file, no panic),
//! and the text, JSON and SARIF writers are checked on the result. The SARIF checks are the
//! SARIF 2.1.0 schema's required fields, enums, minimums and closed property sets, written out
//! by hand (no schema file, no network), plus what GitHub code scanning requires on top.
//!
//! The `#[ignore]`d `stdlib_throughput` test is the Anvil half of
//! `scripts/bench/analyze_throughput.sh` without the CLI:
//! `cargo test --release -p anvil-analyze --test report -- --ignored --nocapture`.

use anvil_analyze::license::LicensePolicy;
use anvil_analyze::report::{
    self, Document, FileReport, FunctionKind, ReportError, Tool, analyze_paths,
};
use anvil_analyze::{Level, sarif};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

const GOOD: &str = "\
def add(a, b):
    \"\"\"Sum of two numbers.\"\"\"
    return a + b
";

/// Known findings at known lines: B404 (line 1), B602 (4), B101 (5), F821 (6), a method with
/// two branches (complexity 3).
const FINDINGS: &str = "\
import subprocess


def run(cmd):
    subprocess.call(cmd, shell=True)
    assert cmd
    return undefined_name


class Box:
    def pick(self, x):
        if x:
            return 1
        elif x is None:
            return 2
        return 3
";

/// A tree whose depth is just under `Source`'s limit (found by search, since the depth per
/// nesting level is tree-sitter's business): analyzers must cope with it on rayon's threads.
fn deepest_accepted() -> String {
    (100..1000)
        .rev()
        .step_by(10)
        .map(|n| format!("x = {}1{}\n", "[".repeat(n), "]".repeat(n)))
        .find(|text| anvil_analyze::Source::python(text.as_bytes()).is_ok())
        .expect("some nesting under the limit")
}

/// Nested `if`s, each one indentation level deeper: deep statements rather than expressions.
fn nested_ifs(levels: usize) -> String {
    let mut text = String::new();
    for i in 0..levels {
        text.push_str(&" ".repeat(i));
        text.push_str("if x:\n");
    }
    text.push_str(&" ".repeat(levels));
    text.push_str("pass\n");
    text
}

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let write = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    };
    write("good.py", GOOD.as_bytes());
    write("findings.py", FINDINGS.as_bytes());
    write("latin1.py", b"name = 'caf\xe9'\n");
    write("binary.py", b"x = 1\n\x00\x01\x02\xff");
    let too_deep = format!("x = {}1{}\n", "(".repeat(3000), ")".repeat(3000));
    write("deep.py", too_deep.as_bytes());
    write("deep_ok.py", deepest_accepted().as_bytes());
    write("nested_ifs.py", nested_ifs(150).as_bytes());
    write("syntax.py", b"def f(:\n    return 1\n\nprint('after')\n");
    write("empty.py", b"");
    write("pkg/sub/inner.py", b"import os\nos.system('ls')\n");
    // Not walked: not Python, hidden, bytecode cache.
    write("notes.txt", b"x = 1\n");
    write(".hidden/secret.py", b"exec('1')\n");
    write("pkg/__pycache__/inner.py", b"exec('1')\n");
    #[cfg(unix)]
    {
        // A loop back to the root, and a link to nowhere.
        std::os::unix::fs::symlink(&root, root.join("pkg/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere.py"), root.join("dangling.py")).unwrap();
    }
    Tree { _dir: dir, root }
}

fn analyze_tree(t: &Tree) -> Vec<FileReport> {
    analyze_paths(std::slice::from_ref(&t.root), &LicensePolicy::default())
        .expect("the tree exists")
}

fn by_name(reports: &[FileReport]) -> BTreeMap<String, &FileReport> {
    reports
        .iter()
        .map(|r| {
            let name = Path::new(&r.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, r)
        })
        .collect()
}

#[test]
fn every_file_gets_a_report_and_bad_files_are_per_file_errors() {
    let t = tree();
    let reports = analyze_tree(&t);
    let paths: Vec<&str> = reports.iter().map(|r| r.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| Path::new(a).cmp(Path::new(b)));
    assert_eq!(paths, sorted, "reports sorted by path");
    let names = by_name(&reports);
    let mut expected: Vec<&str> = "binary.py deep.py deep_ok.py empty.py findings.py good.py \
        inner.py latin1.py nested_ifs.py syntax.py"
        .split_whitespace()
        .collect();
    if cfg!(unix) {
        expected.push("dangling.py");
        expected.sort();
    }
    let got: Vec<&str> = names.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "{paths:#?}");
    assert_eq!(reports.len(), expected.len(), "no duplicates: {paths:#?}");

    let mut errors = vec![
        ("latin1.py", "not UTF-8"),
        ("binary.py", "binary"),
        ("deep.py", "levels deep"),
    ];
    if cfg!(unix) {
        errors.push(("dangling.py", "unreadable"));
    }
    for (n, want) in errors {
        let e = names[n].error.clone().unwrap_or_default();
        assert!(e.contains(want), "{n}: {e}");
    }
    for n in ["latin1.py", "binary.py", "deep.py"] {
        let r = names[n];
        assert!(!r.parses && r.findings.is_empty() && r.scores.is_none());
    }

    for n in "good.py empty.py deep_ok.py nested_ifs.py inner.py".split_whitespace() {
        let r = names[n];
        assert_eq!(r.error, None, "{n}");
        assert!(r.parses, "{n}");
        let s = r.scores.expect("scores");
        for v in [s.security_risk, s.quality, s.license] {
            assert!((0.0..=1.0).contains(&v), "{n}: {s:?}");
        }
    }
    let good = names["good.py"];
    assert!(good.findings.is_empty(), "{:?}", good.findings);
    assert_eq!(good.functions.len(), 1);
    assert_eq!(
        (
            good.functions[0].name.as_str(),
            good.functions[0].complexity
        ),
        ("add", 1)
    );
    assert_eq!(good.scores.unwrap().security_risk, 0.0);
    let empty = names["empty.py"];
    assert!(empty.findings.is_empty() && empty.functions.is_empty());
    assert_eq!(empty.maintainability.unwrap().mi, 100.0);

    let f = names["findings.py"];
    let found: Vec<(Tool, &str, usize)> = f
        .findings
        .iter()
        .map(|t| (t.tool, t.finding.rule.as_str(), t.finding.line))
        .collect();
    for want in [
        (Tool::Security, "B404", 1),
        (Tool::Security, "B602", 5),
        (Tool::Security, "B101", 6),
        (Tool::Lint, "F821", 7),
    ] {
        assert!(found.contains(&want), "{want:?} not in {found:?}");
    }
    let lines: Vec<usize> = found.iter().map(|f| f.2).collect();
    assert!(lines.is_sorted(), "findings by position: {found:?}");
    let pick = f.functions.iter().find(|x| x.name == "Box.pick").unwrap();
    assert_eq!(
        (pick.kind, pick.line, pick.complexity, pick.rank),
        (FunctionKind::Method, 11, 3, 'A')
    );
    assert!(f.scores.unwrap().security_risk > 0.9);

    let syntax = names["syntax.py"];
    assert_eq!(syntax.error, None);
    assert!(!syntax.parses);
    assert_eq!(syntax.scores.unwrap().quality, 0.0);
    let e999 = &syntax.findings[0];
    assert_eq!(
        (e999.tool, e999.finding.rule.as_str()),
        (Tool::Syntax, "E999")
    );
    assert_eq!(e999.finding.line, 1, "{e999:?}");

    let totals = report::Totals::of(&reports);
    assert_eq!(totals.files, reports.len());
    assert_eq!(totals.errors, if cfg!(unix) { 4 } else { 3 });
    assert_eq!(totals.not_parsing, 1);
    assert_eq!(
        totals.findings,
        reports.iter().map(|r| r.findings.len()).sum::<usize>()
    );
}

#[test]
fn named_files_are_analyzed_whatever_their_extension_and_missing_paths_are_errors() {
    let t = tree();
    let policy = LicensePolicy::default();
    let txt = t.root.join("notes.txt");
    let reports = analyze_paths(&[txt.clone(), txt.clone()], &policy).unwrap();
    assert_eq!(reports.len(), 1, "a path named twice is reported once");
    assert_eq!(reports[0].error, None);
    assert!(reports[0].parses);
    // A hidden directory named explicitly is walked: only its subdirectories are skipped.
    let hidden = analyze_paths(&[t.root.join(".hidden")], &policy).unwrap();
    assert_eq!(hidden.len(), 1);
    assert!(hidden[0].findings.iter().any(|f| f.finding.rule == "B102"));

    let missing = t.root.join("no/such/file.py");
    match analyze_paths(&[t.root.join("good.py"), missing.clone()], &policy) {
        Err(ReportError::NotFound(p)) => assert_eq!(p, missing),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let bad_policy = LicensePolicy {
        jaccard_threshold: 2.0,
        ..LicensePolicy::default()
    };
    assert!(matches!(
        analyze_paths(std::slice::from_ref(&t.root), &bad_policy),
        Err(ReportError::Policy(_))
    ));
    // Not a regular file: an error in its report, not an endless read.
    #[cfg(unix)]
    {
        let dev = analyze_paths(&[PathBuf::from("/dev/zero")], &policy).unwrap();
        assert_eq!(dev[0].error.as_deref(), Some("not a regular file"));
    }
}

#[test]
fn text_output_has_one_line_per_item_and_totals() {
    let t = tree();
    let reports = analyze_tree(&t);
    let mut out = Vec::new();
    report::write_text(&reports, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let findings = t.root.join("findings.py");
    let f = findings.display();
    for want in [
        format!("{f}:5:5: B602 [HIGH/HIGH] "),
        format!("{f}:7:12: F821 [HIGH/HIGH] undefined name 'undefined_name'"),
        format!("{f}:11: Box.pick 3 (A)"),
        format!("{f}: MI "),
        format!("{}: error: not UTF-8", t.root.join("latin1.py").display()),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&want)),
            "no line starting {want:?} in\n{text}"
        );
    }
    let n_findings: usize = reports.iter().map(|r| r.findings.len()).sum();
    let n_functions: usize = reports.iter().map(|r| r.functions.len()).sum();
    let n_files = reports.len();
    let n_mi = reports.iter().filter(|r| r.error.is_none()).count();
    let n_errors = n_files - n_mi;
    assert_eq!(
        text.lines().count(),
        n_findings + n_functions + n_mi + n_errors + 3,
        "{text}"
    );
    let last: Vec<&str> = text.lines().rev().take(3).collect();
    assert!(last[2].starts_with(&format!("{n_files} files: ")), "{text}");
    assert!(
        last[1].starts_with(&format!("{n_findings} findings: ")),
        "{text}"
    );
}

/// Structural equality with floats compared to 1e-12: the JSON float parser may differ from
/// the printer in the last bit.
fn same(a: &Value, b: &Value, at: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() <= 1e-12 * x.abs().max(1.0) {
                Ok(())
            } else {
                Err(format!("{at}: {x} != {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (x, y))| same(x, y, &format!("{at}[{i}]"))),
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
            x.iter().try_for_each(|(k, v)| {
                let w = y.get(k).ok_or_else(|| format!("{at}.{k} missing"))?;
                same(v, w, &format!("{at}.{k}"))
            })
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{at}: {a} != {b}")),
    }
}

#[test]
fn json_round_trips() {
    let t = tree();
    let reports = analyze_tree(&t);
    let mut out = Vec::new();
    report::write_json(&reports, &mut out).unwrap();
    let doc: Document = serde_json::from_slice(&out).expect("the JSON reads back as a Document");
    assert_eq!(doc.files.len(), reports.len());
    assert_eq!(doc.version, env!("CARGO_PKG_VERSION"));
    let before = serde_json::to_value(&reports).unwrap();
    let after = serde_json::to_value(&doc.files).unwrap();
    same(&before, &after, "files").unwrap();
    same(
        &serde_json::to_value(report::Totals::of(&reports)).unwrap(),
        &serde_json::to_value(&doc.totals).unwrap(),
        "totals",
    )
    .unwrap();
    // Findings are flat objects with their tool; errors are strings or null.
    let v: Value = serde_json::from_slice(&out).unwrap();
    let files = v["files"].as_array().unwrap();
    let f = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("findings.py"))
        .unwrap();
    assert_eq!(f["error"], Value::Null);
    let b602 = f["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "B602")
        .unwrap();
    assert_eq!(b602["tool"], "security");
    assert_eq!(b602["severity"], "HIGH");
    assert_eq!(b602["line"], 5);
    assert!(f["scores"]["security_risk"].is_f64());
}

// ---- SARIF 2.1.0, by hand -----------------------------------------------------------------

/// The objects of the SARIF 2.1.0 schema the writer emits: (type, required properties, every
/// property as `name:type`). The schema closes these objects (`additionalProperties: false`):
/// a property not listed is an error. Types: `s` string, `u` URI reference, `n` integer >= 1,
/// `i` integer >= 0, `b` boolean, `L` level enum, `C` columnKind enum, `P` property bag (open,
/// `tags` unique strings), `*` not checked, `T` an object of type T, `[T]` an array of them,
/// `{T}` a map to them (`mms`: multiformatMessageString). `a|b` in the required list: either.
#[rustfmt::skip]
const SCHEMA: &[(&str, &str, &str)] = &[
    ("sarifLog", "version runs", "$schema:u version:s runs:[run] inlineExternalProperties:* \
        properties:P"),
    ("run", "tool", "tool:tool invocations:[invocation] conversion:* language:s \
        versionControlProvenance:* originalUriBaseIds:{artifactLocation} artifacts:* \
        logicalLocations:* graphs:* results:[result] automationDetails:* runAggregates:* \
        baselineGuid:s redactionTokens:* defaultEncoding:s defaultSourceLanguage:s \
        newlineSequences:* columnKind:C externalPropertyFileReferences:* threadFlowLocations:* \
        taxonomies:* addresses:* translations:* policies:* webRequests:* webResponses:* \
        specialLocations:* properties:P"),
    ("tool", "driver", "driver:toolComponent extensions:* properties:P"),
    ("toolComponent", "name", "guid:s name:s organization:s product:s productSuite:s \
        shortDescription:mms fullDescription:mms fullName:s version:s semanticVersion:s \
        dottedQuadFileVersion:s releaseDateUtc:s downloadUri:u informationUri:u \
        globalMessageStrings:* notifications:* rules:[reportingDescriptor] taxa:* locations:* \
        language:s contents:* isComprehensive:b localizedDataSemanticVersion:s \
        minimumRequiredLocalizedDataSemanticVersion:s associatedComponent:* \
        translationMetadata:* supportedTaxonomies:* properties:P"),
    ("reportingDescriptor", "id", "id:s deprecatedIds:* guid:s deprecatedGuids:* name:s \
        deprecatedNames:* shortDescription:mms fullDescription:mms messageStrings:* \
        defaultConfiguration:reportingConfiguration helpUri:u help:mms relationships:* \
        properties:P"),
    ("mms", "text", "text:s markdown:s properties:P"),
    ("reportingConfiguration", "", "enabled:b level:L rank:* parameters:* properties:P"),
    ("message", "text|id", "text:s markdown:s id:s arguments:* properties:P"),
    ("result", "message", "ruleId:s ruleIndex:i rule:* kind:s level:L message:message \
        analysisTarget:* locations:[location] guid:s correlationGuid:s occurrenceCount:n \
        partialFingerprints:* fingerprints:* stacks:* codeFlows:* graphs:* graphTraversals:* \
        relatedLocations:* suppressions:* baselineState:s rank:* attachments:* hostedViewerUri:u \
        workItemUris:* provenance:* fixes:* taxa:* webRequest:* webResponse:* properties:P"),
    ("location", "", "id:i physicalLocation:physicalLocation logicalLocations:* message:message \
        annotations:* relationships:* properties:P"),
    ("physicalLocation", "address|artifactLocation", "address:* \
        artifactLocation:artifactLocation region:region contextRegion:region properties:P"),
    ("artifactLocation", "", "uri:u uriBaseId:s index:i description:message properties:P"),
    ("region", "", "startLine:n startColumn:n endLine:n endColumn:n charOffset:i charLength:i \
        byteOffset:i byteLength:i snippet:* message:message sourceLanguage:s properties:P"),
    ("invocation", "executionSuccessful", "commandLine:s arguments:* responseFiles:* \
        startTimeUtc:s endTimeUtc:s exitCode:* ruleConfigurationOverrides:* \
        notificationConfigurationOverrides:* toolExecutionNotifications:[notification] \
        toolConfigurationNotifications:[notification] exitCodeDescription:s exitSignalName:s \
        exitSignalNumber:* processStartFailureMessage:s executionSuccessful:b machine:s \
        account:s processId:* executableLocation:* workingDirectory:* environmentVariables:* \
        stdin:* stdout:* stderr:* stdoutStderr:* properties:P"),
    ("notification", "message", "locations:[location] message:message level:L threadId:* \
        timeUtc:s exception:* descriptor:* associatedRule:* properties:P"),
];

/// Schema errors of `v` as a `ty`, appended to `errors` with their JSON path.
fn check(v: &Value, ty: &str, at: &str, errors: &mut Vec<String>) {
    let mut fail = |what: String| errors.push(format!("{at}: {what}"));
    let ok = match ty {
        "*" => true,
        "s" => v.is_string(),
        "b" => v.is_boolean(),
        "n" => v.as_u64().is_some_and(|n| n >= 1),
        "i" => v.as_u64().is_some(),
        "L" => matches!(v.as_str(), Some("none" | "note" | "warning" | "error")),
        "C" => matches!(v.as_str(), Some("utf16CodeUnits" | "unicodeCodePoints")),
        // A URI reference: printable ASCII, no backslash, well-formed percent escapes.
        "u" => v.as_str().is_some_and(|u| {
            !u.is_empty()
                && u.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
                && u.split('%').skip(1).all(|e| {
                    e.get(..2)
                        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                })
        }),
        "P" => v.as_object().is_some_and(|o| match o.get("tags") {
            None => true,
            Some(t) => t.as_array().is_some_and(|t| {
                t.iter().all(Value::is_string)
                    && t.iter()
                        .filter_map(Value::as_str)
                        .collect::<BTreeSet<_>>()
                        .len()
                        == t.len()
            }),
        }),
        _ if ty.starts_with('[') => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check(item, &ty[1..ty.len() - 1], &format!("{at}[{i}]"), errors);
                }
                return;
            }
            None => false,
        },
        _ if ty.starts_with('{') => match v.as_object() {
            Some(map) => {
                for (k, item) in map {
                    check(item, &ty[1..ty.len() - 1], &format!("{at}.{k}"), errors);
                }
                return;
            }
            None => false,
        },
        _ => {
            let (_, required, props) = SCHEMA.iter().find(|s| s.0 == ty).expect("type in SCHEMA");
            let Some(obj) = v.as_object() else {
                return fail(format!("{ty} is not an object"));
            };
            let props: BTreeMap<&str, &str> = props
                .split_whitespace()
                .filter_map(|p| p.rsplit_once(':'))
                .collect();
            for r in required.split_whitespace() {
                if !r.split('|').any(|r| obj.contains_key(r)) {
                    fail(format!("{ty} lacks required `{r}`"));
                }
            }
            for (k, item) in obj {
                match props.get(k.as_str()) {
                    Some(t) => check(item, t, &format!("{at}.{k}"), errors),
                    None => errors.push(format!("{at}: {ty} has no property `{k}`")),
                }
            }
            return;
        }
    };
    if !ok {
        fail(format!("{v} is not a `{ty}`"));
    }
}

/// The schema, then what the schema cannot say and GitHub code scanning requires: rules with
/// descriptions and help, results with a rule, a location and a start line, `results` present,
/// base IDs defined, `security-severity` a number on security rules. Returns
/// (ruleId, uri, startLine) per result.
fn check_sarif(v: &Value) -> Vec<(String, String, u64)> {
    let mut errors = Vec::new();
    check(v, "sarifLog", "$", &mut errors);
    let mut fail = |at: String, what: &str| errors.push(format!("{at}: {what}"));
    if v["version"] != "2.1.0" || v["$schema"] != sarif::SCHEMA {
        fail("$".into(), "version must be 2.1.0 with the 2.1.0 schema");
    }
    let mut found = Vec::new();
    let empty = Vec::new();
    let arr = |v: &Value| v.as_array().unwrap_or(&empty).clone();
    for (i, run) in arr(&v["runs"]).iter().enumerate() {
        let at = format!("$.runs[{i}]");
        let bases = run["originalUriBaseIds"].as_object();
        for (k, b) in bases.into_iter().flatten() {
            let uri = b["uri"].as_str().unwrap_or("");
            if !(uri.starts_with("file:///") && uri.ends_with('/')) {
                fail(
                    format!("{at}.originalUriBaseIds.{k}"),
                    "must be absolute, ending in /",
                );
            }
        }
        let artifact_ok = |a: &Value| match a["uriBaseId"].as_str() {
            Some(id) => bases.is_some_and(|b| b.contains_key(id)),
            None => a["uri"].as_str().is_some_and(|u| u.starts_with("file:///")),
        };
        let rules = arr(&run["tool"]["driver"]["rules"]);
        let ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
        if ids.iter().collect::<BTreeSet<_>>().len() != rules.len() {
            fail(format!("{at}.tool.driver.rules"), "rule ids must be unique");
        }
        for (j, r) in rules.iter().enumerate() {
            let rat = format!("{at}.tool.driver.rules[{j}]");
            if ["shortDescription", "fullDescription", "help"]
                .iter()
                .any(|k| !r[*k]["text"].is_string())
            {
                fail(
                    rat.clone(),
                    "GitHub needs shortDescription, fullDescription and help texts",
                );
            }
            if let Some(s) = r["properties"].get("security-severity") {
                let score = s.as_str().and_then(|s| s.parse::<f64>().ok());
                let tagged = arr(&r["properties"]["tags"]).contains(&Value::from("security"));
                if !score.is_some_and(|x| (0.0..=10.0).contains(&x)) || !tagged {
                    fail(
                        rat,
                        "security-severity: a number in [0, 10], on `security` rules",
                    );
                }
            }
        }
        for inv in arr(&run["invocations"]) {
            for n in arr(&inv["toolExecutionNotifications"]) {
                for l in arr(&n["locations"]) {
                    if !artifact_ok(&l["physicalLocation"]["artifactLocation"]) {
                        fail(
                            format!("{at}.invocations"),
                            "notification URI without a base",
                        );
                    }
                }
            }
        }
        if !run["results"].is_array() {
            fail(at.clone(), "GitHub needs `results`, even empty");
        }
        for (j, r) in arr(&run["results"]).iter().enumerate() {
            let rat = format!("{at}.results[{j}]");
            let id = r["ruleId"].as_str().unwrap_or("");
            let index = r["ruleIndex"].as_u64().map(|i| i as usize);
            if id.is_empty() || index.and_then(|i| ids.get(i)) != Some(&id) {
                fail(rat.clone(), "ruleId must name the rule at ruleIndex");
            }
            let pl = &r["locations"][0]["physicalLocation"];
            let line = pl["region"]["startLine"].as_u64();
            if line.is_none() || !artifact_ok(&pl["artifactLocation"]) {
                fail(
                    rat,
                    "GitHub needs a location with a resolvable URI and a start line",
                );
            }
            let uri = pl["artifactLocation"]["uri"]
                .as_str()
                .unwrap_or("")
                .to_string();
            found.push((id.to_string(), uri, line.unwrap_or(0)));
        }
    }
    assert!(errors.is_empty(), "SARIF problems:\n{}", errors.join("\n"));
    found
}

#[test]
fn the_sarif_checker_catches_what_it_checks() {
    let mut errors = Vec::new();
    let bad = serde_json::json!({
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "x", "extra": 1}},
                  "results": [{"message": {}, "level": "fatal",
                               "locations": [{"physicalLocation": {"region": {"startLine": 0}}}]}]}]
    });
    check(&bad, "sarifLog", "$", &mut errors);
    for want in [
        "no property `extra`",
        "lacks required `text|id`",
        "\"fatal\" is not a `L`",
        "0 is not a `n`",
        "lacks required `address|artifactLocation`",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{want:?} not in {errors:#?}"
        );
    }
    let no_results = serde_json::json!({"$schema": sarif::SCHEMA, "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "x"}}}]});
    let caught = std::panic::catch_unwind(|| check_sarif(&no_results));
    assert!(caught.is_err(), "a run without results must be refused");
}

#[test]
fn sarif_has_the_required_fields_and_one_result_per_finding() {
    let t = tree();
    let reports = analyze_tree(&t);
    let mut out = Vec::new();
    sarif::write(&reports, Some(&t.root), &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).expect("SARIF is JSON");
    let found = check_sarif(&v);

    // One result per finding, same rule, relative URI, same line.
    let mut want: Vec<(String, String, u64)> = Vec::new();
    for r in &reports {
        let rel = Path::new(&r.path).strip_prefix(&t.root).unwrap();
        let uri = rel.to_string_lossy().replace('\\', "/");
        for f in &r.findings {
            want.push((f.finding.rule.clone(), uri.clone(), f.finding.line as u64));
        }
    }
    assert!(!want.is_empty());
    assert_eq!(found, want);

    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "anvil");
    assert!(
        run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("file:///")
    );
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: BTreeSet<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let used: BTreeSet<&str> = want.iter().map(|w| w.0.as_str()).collect();
    assert_eq!(
        ids, used,
        "a rule for every rule id that appears, and no other"
    );
    let b602 = rules.iter().find(|r| r["id"] == "B602").unwrap();
    assert_eq!(b602["name"], "subprocess_popen_with_shell_equals_true");
    assert_eq!(b602["defaultConfiguration"]["level"], "error");
    assert_eq!(b602["properties"]["security-severity"], "8.0");
    let res = run["results"].as_array().unwrap();
    let r602 = res.iter().find(|r| r["ruleId"] == "B602").unwrap();
    assert_eq!(r602["level"], "error");
    assert_eq!(r602["properties"]["severity"], "HIGH");
    assert_eq!(r602["properties"]["confidence"], "HIGH");
    assert_eq!(
        r602["locations"][0]["physicalLocation"]["region"]["startColumn"],
        5
    );
    let r101 = res.iter().find(|r| r["ruleId"] == "B101").unwrap();
    assert_eq!(r101["level"], sarif::level(Level::Low));

    // Files that were not analyzed are the invocation's error notifications.
    let notes = run["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    let errors = reports.iter().filter(|r| r.error.is_some()).count();
    assert_eq!(notes.len(), errors);
    assert!(notes.iter().all(|n| n["level"] == "error"));
    assert_eq!(run["invocations"][0]["executionSuccessful"], true);

    // Through `report::write_sarif` (base: the current directory, which the files are not in)
    // the URIs are absolute and still valid.
    let mut out = Vec::new();
    report::write_sarif(&reports, &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let found = check_sarif(&v);
    assert_eq!(found.len(), want.len());
    assert!(
        found.iter().all(|f| f.1.starts_with("file:///")),
        "{found:?}"
    );

    // No findings at all is still a valid log with an empty `results`.
    let mut out = Vec::new();
    sarif::write(&[], None, &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert!(check_sarif(&v).is_empty());
    assert_eq!(v["runs"][0]["results"], Value::Array(vec![]));
}

/// The Python files of the local standard library, without `site-packages` (third-party code
/// installed into it), as the top-level entries `scripts/bench/analyze_throughput.sh` passes to
/// every tool. `ANVIL_BENCH_ROOT` overrides the directory, `ANVIL_BENCH_EXCLUDE` (names,
/// comma-separated) leaves more entries out, as the script's `--exclude`.
fn stdlib_paths() -> Vec<PathBuf> {
    let root = match std::env::var_os("ANVIL_BENCH_ROOT") {
        Some(r) => PathBuf::from(r),
        None => {
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
                ])
                .output()
                .expect("python3 on PATH");
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        }
    };
    let excluded = std::env::var("ANVIL_BENCH_EXCLUDE").unwrap_or_default();
    let mut paths: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            if excluded.split(',').any(|x| x == name) {
                false
            } else if p.is_dir() {
                !(name == "site-packages" || name == "__pycache__" || name.starts_with('.'))
            } else {
                name.ends_with(".py")
            }
        })
        .collect();
    paths.sort();
    paths
}

/// CPU seconds (user + system) this process has used, from /proc (Linux; `USER_HZ` is 100 on
/// every Linux ABI); `None` elsewhere. On a shared machine the wall clock also measures the
/// neighbours, CPU time only this process.
fn cpu_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[test]
#[ignore = "benchmark: reads the whole Python standard library"]
fn stdlib_throughput() {
    let paths = stdlib_paths();
    let policy = LicensePolicy::default();
    let mut runs = Vec::new();
    let mut reports = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..3 {
        let (t, c) = (Instant::now(), cpu_seconds());
        reports = analyze_paths(&paths, &policy).expect("stdlib paths exist");
        runs.push(t.elapsed().as_secs_f64());
        cpu.extend(c.zip(cpu_seconds()).map(|(a, b)| b - a));
    }
    let best = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let best_cpu = cpu.iter().copied().fold(f64::INFINITY, f64::min);
    let t = Instant::now();
    let mut sink = std::io::sink();
    report::write_json(&reports, &mut sink).unwrap();
    let json = t.elapsed().as_secs_f64();
    let totals = report::Totals::of(&reports);
    println!(
        "anvil analyze_paths: {} files ({} errors, {} not parsing), {} findings, {} functions",
        totals.files, totals.errors, totals.not_parsing, totals.findings, totals.functions
    );
    println!(
        "  threads {}, runs {:?} s, best {best:.3} s = {:.0} files/s (+ {json:.3} s for JSON)",
        rayon::current_num_threads(),
        runs.iter()
            .map(|r| (r * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        totals.files as f64 / best
    );
    if best_cpu.is_finite() {
        println!(
            "  CPU time {:?} s, best {best_cpu:.2} CPU-s = {:.0} files/CPU-s",
            cpu.iter()
                .map(|r| (r * 100.0).round() / 100.0)
                .collect::<Vec<_>>(),
            totals.files as f64 / best_cpu
        );
    }
    for r in reports.iter().filter(|r| r.error.is_some()).take(20) {
        println!("  error: {}: {}", r.path, r.error.as_deref().unwrap_or(""));
    }
}
