//! `synth`: coverage, the held-out split, determinism, and — since the expected values come from a
//! Rust re-implementation of each template — that every canonical solution passes its test and
//! its docstring examples under python3.

mod common;
use common::run_python;

use anvil_data::problems::{self, Problem};
use anvil_data::synth::{self, SynthConfig, SynthSet};
use std::collections::{BTreeSet, HashSet};

fn cfg() -> SynthConfig {
    SynthConfig {
        n_train: 300,
        n_heldout: 100,
        seed: 20240617,
    }
}

fn set() -> SynthSet {
    synth::generate(&cfg())
}

fn kinds(ps: &[Problem]) -> BTreeSet<(String, String)> {
    ps.iter()
        .map(|p| {
            let (f, t) = synth::family_and_template(p).expect("metadata");
            (f.to_string(), t.to_string())
        })
        .collect()
}

#[test]
fn shape_and_coverage() {
    let s = set();
    assert_eq!((s.train.len(), s.heldout.len()), (300, 100));
    let all: Vec<Problem> = s.train.iter().chain(&s.heldout).cloned().collect();
    let kinds_all = kinds(&all);
    let families: BTreeSet<_> = kinds_all.iter().map(|(f, _)| f.clone()).collect();
    println!("{} families, {} templates", families.len(), kinds_all.len());
    assert!(families.len() >= 5, "{families:?}");
    assert!(kinds_all.len() >= 25, "{kinds_all:?}");
    assert!(synth::templates().len() >= 30);

    for (split, ps) in [("train", &s.train), ("heldout", &s.heldout)] {
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(p.task_id, format!("AnvilSynth/{split}/{i}"));
            assert!(
                p.prompt.contains(&format!("def {}(", p.entry_point)),
                "{}",
                p.prompt
            );
            assert!(p.prompt.ends_with("    \"\"\"\n"), "{}", p.prompt);
            assert!(p.prompt.contains("    >>> "), "{}", p.prompt);
            assert!(
                p.canonical_solution.lines().all(|l| l.starts_with("    ")),
                "{}",
                p.canonical_solution
            );
            assert!(
                p.test.starts_with("\n\nMETADATA = {")
                    && p.test.contains("\n\n\ndef check(candidate):\n")
            );
            let asserts: Vec<&str> = p.test.lines().filter(|l| l.contains("assert")).collect();
            assert!(
                asserts.len() >= 6,
                "{}: only {} asserts",
                p.task_id,
                asserts.len()
            );
            for a in asserts {
                assert!(
                    a.starts_with("    assert candidate(") && a.contains(") == "),
                    "{a}"
                );
            }
        }
    }
}

#[test]
fn heldout_differs_from_train() {
    let s = set();
    let (train, heldout) = (kinds(&s.train), kinds(&s.heldout));
    let only_heldout: Vec<_> = heldout.difference(&train).collect();
    println!("held-out-only templates present: {only_heldout:?}");
    assert!(!only_heldout.is_empty());
    // The table's held-out-only templates never reach train.
    for t in synth::templates().iter().filter(|t| t.heldout_only) {
        assert!(
            !train.contains(&(t.family.clone(), t.name.clone())),
            "{} in train",
            t.name
        );
    }

    let prompts = |ps: &[Problem]| ps.iter().map(|p| p.prompt.clone()).collect::<HashSet<_>>();
    let (pt, ph) = (prompts(&s.train), prompts(&s.heldout));
    assert_eq!(pt.len(), s.train.len(), "duplicate prompt in train");
    assert_eq!(ph.len(), s.heldout.len(), "duplicate prompt in held-out");
    assert!(pt.is_disjoint(&ph), "prompt shared across splits");
    // Disjoint name vocabularies: no function name is used by both splits.
    let names = |ps: &[Problem]| {
        ps.iter()
            .map(|p| p.entry_point.clone())
            .collect::<HashSet<_>>()
    };
    let shared: Vec<_> = names(&s.train)
        .intersection(&names(&s.heldout))
        .cloned()
        .collect();
    assert!(
        shared.is_empty(),
        "function names in both splits: {shared:?}"
    );
}

#[test]
fn deterministic() {
    assert_eq!(set(), set());
    let other = synth::generate(&SynthConfig { seed: 7, ..cfg() });
    assert_ne!(other.train, set().train);
    // Held-out does not depend on n_train.
    let bigger = synth::generate(&SynthConfig {
        n_train: 350,
        ..cfg()
    });
    assert_eq!(bigger.heldout, set().heldout);
    assert_eq!(bigger.train[..300], set().train[..]);
}

#[test]
fn canonical_solutions_pass_under_python() {
    let s = set();
    let dir = tempfile::tempdir().unwrap();
    for (split, ps) in [("train", &s.train), ("heldout", &s.heldout)] {
        let r = run_python(
            dir.path(),
            split,
            ps,
            |p| p.canonical_solution.clone(),
            true,
        );
        println!(
            "{split}: python3 ran {} programs, {} failed, {} docstring failures",
            r.ran,
            r.failed.len(),
            r.doctest_failed.len()
        );
        assert_eq!(r.ran, ps.len());
        assert!(
            r.failed.is_empty(),
            "{split}: canonical solutions failed: {:?}",
            r.failed
        );
        assert!(
            r.doctest_failed.is_empty(),
            "{split}: docstring examples wrong: {:?}",
            r.doctest_failed
        );
    }
}

#[test]
fn wrong_solutions_fail() {
    let s = set();
    let dir = tempfile::tempdir().unwrap();
    // One problem of each template seen in the first 120, so every kind of check is exercised.
    let mut seen = HashSet::new();
    let sample: Vec<Problem> = s
        .train
        .iter()
        .take(120)
        .filter(|p| seen.insert(synth::family_and_template(p)))
        .cloned()
        .collect();
    assert!(sample.len() >= 10);
    let r = run_python(
        dir.path(),
        "wrong",
        &sample,
        |_| "    return None\n".to_string(),
        true,
    );
    assert_eq!(
        r.failed.len(),
        sample.len(),
        "`return None` passed some checks"
    );
}

#[test]
fn write_round_trips_and_refuses_existing() {
    let s = set();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synth");
    let summary = synth::write(&s, &out, false).unwrap();
    assert_eq!(
        problems::read_jsonl(&out.join("train.jsonl")).unwrap(),
        s.train
    );
    assert_eq!(
        problems::read_jsonl(&out.join("heldout.jsonl")).unwrap(),
        s.heldout
    );
    assert_eq!(
        (summary.train.problems, summary.heldout.problems),
        (300, 100)
    );
    assert_eq!(summary.seed, cfg().seed);
    assert_eq!(summary.train.templates.values().sum::<usize>(), 300);
    let manifest: synth::SynthSummary =
        serde_json::from_slice(&std::fs::read(out.join("synth_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest, summary);

    let err = synth::write(&s, &out, false).unwrap_err().to_string();
    assert!(err.contains("exists"), "{err}");
    synth::write(&s, &out, true).unwrap();
}
