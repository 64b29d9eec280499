//! Fixtures shared by the data crate's integration tests.

#![allow(dead_code)]

use anvil_data::lang::Lang;
use anvil_data::problems::{self, Problem};
use anvil_data::shard::Record;
use std::path::Path;
use std::process::Command;
use xxhash_rust::xxh3::xxh3_128;

/// A corpus record with plausible statistics, for tests that build corpora by hand.
pub fn record(path: &str, content: &str) -> Record {
    Record {
        path: path.to_string(),
        lang: Lang::from_path(Path::new(path)).unwrap_or(Lang::Python),
        license: "MIT".into(),
        content: content.to_string(),
        n_bytes: content.len() as u64,
        n_lines: content.lines().count() as u32,
        max_line_len: content.lines().map(|l| l.len()).max().unwrap_or(0) as u32,
        alnum_fraction: 0.5,
        n_ast_nodes: 1,
        ast_depth: 1,
        parse_error_fraction: 0.0,
        content_hash: format!("{:032x}", xxh3_128(content.as_bytes())),
        source: "test".into(),
    }
}

/// For each job: exec the program in a fresh namespace; with `doctest`, also exec `source`
/// (prompt + solution) and run the function's docstring examples. Writes
/// `{"ran": n, "failed": [...], "doctest_failed": [...]}`.
pub const RUNNER: &str = r#"
import doctest, json, signal, sys

def _timeout(signum, frame):
    raise TimeoutError("timed out")

signal.signal(signal.SIGALRM, _timeout)
with open(sys.argv[1]) as f:
    jobs = json.load(f)
failed, doctest_failed = [], []
for job in jobs:
    signal.alarm(10)
    try:
        exec(job["program"], {})
    except BaseException:
        failed.append(job["task_id"])
    finally:
        signal.alarm(0)
    if "source" in job:
        try:
            ns = {}
            exec(job["source"], ns)
            fn = ns[job["entry_point"]]
            runner = doctest.DocTestRunner(verbose=False)
            attempted = 0
            for test in doctest.DocTestFinder(recurse=False).find(fn, job["entry_point"], globs=ns):
                result = runner.run(test, out=lambda s: None)
                attempted += result.attempted
            if runner.failures or attempted == 0:
                doctest_failed.append(job["task_id"])
        except BaseException:
            doctest_failed.append(job["task_id"])
with open(sys.argv[2], "w") as f:
    json.dump({"ran": len(jobs), "failed": failed, "doctest_failed": doctest_failed}, f)
"#;

pub struct PyResult {
    pub ran: usize,
    pub failed: Vec<String>,
    pub doctest_failed: Vec<String>,
}

/// Run `completion(p)` for every problem under `python3 -I` (one script per call).
pub fn run_python(
    dir: &Path,
    tag: &str,
    ps: &[Problem],
    completion: impl Fn(&Problem) -> String,
    doctests: bool,
) -> PyResult {
    let jobs: Vec<_> = ps
        .iter()
        .map(|p| {
            let body = completion(p);
            let mut job = serde_json::json!({
                "task_id": p.task_id,
                "entry_point": p.entry_point,
                "program": problems::program(p, &body),
            });
            if doctests {
                job["source"] = format!("{}{}", p.prompt, body).into();
            }
            job
        })
        .collect();
    let (script, input, output) = (
        dir.join(format!("{tag}.py")),
        dir.join(format!("{tag}.json")),
        dir.join(format!("{tag}.out.json")),
    );
    std::fs::write(&script, RUNNER).unwrap();
    std::fs::write(&input, serde_json::to_vec(&jobs).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg("-I")
        .args([&script, &input, &output])
        .output()
        .expect("python3 must be installed to run this test");
    assert!(
        out.status.success(),
        "runner failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let ids = |k: &str| {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    PyResult {
        ran: r["ran"].as_u64().unwrap() as usize,
        failed: ids("failed"),
        doctest_failed: ids("doctest_failed"),
    }
}
