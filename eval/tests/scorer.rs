//! The long-lived scorer against real sandboxed runs: partial credit per case, verdicts equal to
//! one-shot evaluation, and fork servers that survive from one call to the next.

use anvil_data::problems::Problem;
use anvil_eval::analyze::license::LicensePolicy;
use anvil_eval::evaluate::{CheckMode, Evaluator, Verdict};
use anvil_eval::reward::{Completion, CompositeReward, License, TestPassRate, default_weights};
use anvil_eval::samples::Sample;
use anvil_eval::sandbox::{Isolation, Sandbox};
use anvil_eval::scorer::Scorer;
use std::collections::BTreeSet;
use std::sync::Arc;

fn sandbox() -> Sandbox {
    Sandbox::new(Isolation::Auto, anvil_eval::args::sample_limits(3.0, 512)).expect("sandbox")
}

/// Four converted cases, and a problem whose loop does not convert.
fn problems() -> Vec<Problem> {
    let prompt = "def inc(x):\n    \"\"\"Return x + 1.\"\"\"\n";
    vec![
        Problem {
            task_id: "S/conv".into(),
            prompt: prompt.into(),
            entry_point: "inc".into(),
            canonical_solution: "    return x + 1\n".into(),
            test: "\n\ndef check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 3\n    \
                   assert candidate(3) == 4\n    assert candidate(4) == 5\n"
                .into(),
        },
        Problem {
            task_id: "S/loop".into(),
            prompt: prompt.into(),
            entry_point: "inc".into(),
            canonical_solution: "    return x + 1\n".into(),
            test: "\n\ndef check(candidate):\n    for i in range(3):\n        assert candidate(i) == i + 1\n"
                .into(),
        },
    ]
}

/// (task, completion, verdict prefix, cases passed, cases total, partial)
fn cases() -> Vec<(&'static str, &'static str, &'static str, u32, u32, bool)> {
    vec![
        ("S/conv", "    return x + 1\n", "passed", 4, 4, true),
        // Right on even inputs: half of the cases.
        (
            "S/conv",
            "    return x + 1 if x % 2 == 0 else 0\n",
            "failed: expected 2, got 0",
            2,
            4,
            true,
        ),
        // Raises on the first case; the others still run and count.
        (
            "S/conv",
            "    if x == 1:\n        raise ValueError('one')\n    return x + 1\n",
            "failed: ValueError: one",
            3,
            4,
            true,
        ),
        // Arguments are fine but the function hangs on the third case: the run ends there.
        (
            "S/conv",
            "    while x == 3:\n        pass\n    return x + 1\n",
            "timed out",
            2,
            4,
            true,
        ),
        (
            "S/conv",
            "    return (\n",
            "failed: SyntaxError",
            0,
            4,
            true,
        ),
        ("S/loop", "    return x + 1\n", "passed", 1, 1, false),
        ("S/loop", "    return x\n", "failed", 0, 1, false),
    ]
}

fn check(verdicts: &[Verdict]) {
    for ((task, completion, prefix, passed, total, partial), v) in cases().iter().zip(verdicts) {
        let what = format!("{task} {completion:?}: {v:?}");
        assert!(v.result.starts_with(prefix), "{what}");
        assert_eq!(
            (v.cases_passed, v.cases_total, v.partial),
            (*passed, *total, *partial),
            "{what}"
        );
        assert_eq!(
            v.pass_rate,
            f64::from(*passed) / f64::from(*total),
            "{what}"
        );
        assert_eq!(v.passed, passed == total, "{what}");
        let mode = if *partial {
            CheckMode::OutOfProcess
        } else {
            CheckMode::InProcess
        };
        assert_eq!(v.mode, mode, "{what}");
    }
}

/// Host pids of the fork servers (`harness.py --fork-server`) started by this process.
fn fork_servers() -> BTreeSet<u32> {
    let me = std::process::id();
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(1)?.parse().ok()
    };
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmd).contains("--fork-server") {
            continue;
        }
        let mut p = pid;
        while let Some(up) = parent(p) {
            if up == me {
                out.insert(pid);
                break;
            }
            if up <= 1 {
                break;
            }
            p = up;
        }
    }
    out
}

#[test]
fn scorer_counts_cases_keeps_its_servers_and_agrees_with_evaluate() {
    let problems = problems();
    let by_id = |id: &str| problems.iter().find(|p| p.task_id == id).unwrap();
    let batch: Vec<(&Problem, &str)> = cases().iter().map(|c| (by_id(c.0), c.1)).collect();

    let scorer = Scorer::new(sandbox(), 2).unwrap();
    let first = scorer.score(&batch).unwrap();
    check(&first);
    assert_eq!(scorer.n_prepared(), 2);
    let servers = fork_servers();

    // Without the sample that times out (a limit ends its server): the servers of the first
    // call serve the second.
    let calm: Vec<(&Problem, &str)> = batch
        .iter()
        .zip(cases())
        .filter(|(_, c)| c.2 != "timed out")
        .map(|(b, _)| *b)
        .collect();
    let _ = scorer.score(&calm).unwrap();
    let before = fork_servers();
    let second = scorer.score(&calm).unwrap();
    let after = fork_servers();
    match scorer.fork_server_off() {
        Some(why) => eprintln!("fork server off here ({why}): reuse not checked"),
        None => {
            assert!(
                !servers.is_empty(),
                "no fork server found after the first call"
            );
            assert!(!after.is_empty(), "the fork servers stopped between calls");
            assert_eq!(before, after, "a call started new fork servers");
        }
    }

    // One-shot evaluation of the same samples gives the same verdicts.
    let samples: Vec<Sample> = cases()
        .iter()
        .enumerate()
        .map(|(i, c)| Sample {
            task_id: c.0.into(),
            completion: c.1.into(),
            row: serde_json::Map::new(),
            line: i + 1,
        })
        .collect();
    let evaluator = Evaluator::new(sandbox(), 2).unwrap();
    let (once, summary) = evaluator
        .evaluate(&problems, &samples, &[1], &indicatif::ProgressBar::hidden())
        .unwrap();
    check(&once);
    let key = |v: &Verdict| (v.passed, v.result.clone(), v.cases_passed, v.partial);
    let calm_once: Vec<_> = once
        .iter()
        .zip(cases())
        .filter(|(_, c)| c.2 != "timed out")
        .map(|(v, _)| key(v))
        .collect();
    assert_eq!(second.iter().map(key).collect::<Vec<_>>(), calm_once);
    assert_eq!(
        first.iter().map(key).collect::<Vec<_>>(),
        once.iter().map(key).collect::<Vec<_>>()
    );
    let mean = once.iter().map(|v| v.pass_rate).sum::<f64>() / once.len() as f64;
    assert!((summary.mean_pass_rate - mean).abs() < 1e-12);
    // Only the scorer's servers are left: evaluate stops its own.
    drop(scorer);
    // Killed with their PID namespace; give the kernel a moment to reap them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !fork_servers().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        fork_servers().is_empty(),
        "fork servers outlived their scorer"
    );

    // What a trainer calls per step: the composite reward, its tests run on a shared scorer.
    let scorer = Arc::new(Scorer::new(sandbox(), 2).unwrap());
    let reward = CompositeReward::standard(
        TestPassRate::new(scorer.clone()),
        License::new(LicensePolicy::default(), None).unwrap(),
        default_weights(),
    )
    .unwrap();
    let batch: Vec<Completion> = cases()
        .iter()
        .map(|c| Completion::new(by_id(c.0), c.1))
        .collect();
    let rewards = reward.score(&batch).unwrap();
    let totals = reward.totals(&batch).unwrap();
    for ((r, v), t) in rewards.iter().zip(&once).zip(&totals) {
        assert_eq!(r.components["test_pass_rate"], v.pass_rate);
        assert_eq!(r.details["test_pass_rate"]["result"], v.result.as_str());
        assert!((r.total - t).abs() < 1e-12);
    }
    assert_eq!(scorer.n_prepared(), 2);
}
