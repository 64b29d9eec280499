//! End-to-end: `anvil data prepare` on the local Python standard library, read back by pyarrow,
//! and the command line's behaviour on bad input and interruption.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn help_lists_every_command_with_examples() {
    let top = stdout(&ok(anvil(&["--help"])));
    for cmd in ["data", "tokenizer"] {
        assert!(
            top.contains(&format!("  {cmd} ")),
            "{cmd} missing from --help:\n{top}"
        );
    }
    for sub in [
        &["data", "prepare"][..],
        &["data", "synth"],
        &["data", "tokenize"],
        &["data", "pipeline"],
        &["tokenizer", "train"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let help = stdout(&ok(anvil(&args)));
        assert!(
            help.contains("Examples:"),
            "{sub:?} --help has no examples:\n{help}"
        );
    }
}

#[test]
fn prepare_stdlib_and_read_shards_with_pyarrow() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    let o = ok(anvil(&[
        "data",
        "prepare",
        "--langs",
        "python",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(stdout(&o).contains("kept"), "{}", stdout(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let counts = &m["counts"];
    let dropped: u64 = counts["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let kept = counts["kept"].as_u64().unwrap();
    assert_eq!(counts["candidates"].as_u64().unwrap(), kept + dropped);
    assert!(
        kept > 1000,
        "the stdlib has well over a thousand modules; kept {kept}"
    );
    assert_eq!(m["inputs"][0]["source"], "python-stdlib");
    assert!(
        m["command"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "prepare")
    );
    let train_files = m["splits"]["train"]["files"].as_u64().unwrap();
    let val_files = m["splits"]["val"]["files"].as_u64().unwrap();
    assert_eq!(train_files + val_files, kept);
    assert!(val_files > 0);
    // pyarrow reads every shard unchanged, with the documented columns
    let shards: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    let mut args: Vec<&Path> = shards.iter().map(|p| p.as_path()).collect();
    args.sort();
    let rows = python(
        "import sys, pyarrow.parquet as pq\n\
         cols = ['path','lang','license','content','n_bytes','n_ast_nodes','ast_depth','content_hash']\n\
         n = 0\n\
         for f in sys.argv[1:]:\n\
         \x20   t = pq.read_table(f)\n\
         \x20   assert all(c in t.column_names for c in cols), t.column_names\n\
         \x20   assert all(len(c.encode()) == b for c, b in zip(t['content'].to_pylist(), t['n_bytes'].to_pylist()))\n\
         \x20   assert set(t['lang'].to_pylist()) == {'python'}\n\
         \x20   n += t.num_rows\n\
         print(n)",
        &args,
    );
    assert_eq!(rows.trim().parse::<u64>().unwrap(), kept);
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let out = t.join("o");
    let missing = t.join("missing-dir");
    let e = one_line_error(&anvil(&[
        "data",
        "prepare",
        "--source",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("missing-dir"), "{e}");
    std::fs::create_dir_all(t.join("empty")).unwrap();
    let e = one_line_error(&anvil(&[
        "data",
        "prepare",
        "--source",
        t.join("empty").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("no source files"), "{e}");
    assert!(!out.exists(), "a failed run leaves no output");
    std::fs::write(t.join("x.parquet"), b"PAR1 this is not parquet").unwrap();
    let e = one_line_error(&anvil(&[
        "data",
        "prepare",
        "--source",
        t.join("x.parquet").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("x.parquet"), "{e}");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let src = t.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.py"), "def f(x):\n    return x + 1\n").unwrap();
    let e = one_line_error(&anvil(&[
        "data",
        "prepare",
        "--source",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("exists"), "{e}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    // clap's own errors also exit non-zero
    let o = anvil(&["data", "prepare", "--langs", "cobol", "--out", "x"]);
    assert!(!o.status.success() && stderr(&o).contains("cobol"));
}

#[test]
fn killed_run_leaves_nothing_that_looks_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("corpus");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_anvil"))
        .args([
            "data",
            "prepare",
            "--langs",
            "python",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it is writing: its staging directory exists (within a minute on any machine).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        let staging = std::fs::read_dir(tmp.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        });
        if staging {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().unwrap();
    assert!(
        !out.exists() || out.join("manifest.json").exists(),
        "an output dir without manifest was left behind"
    );
    if !out.exists() {
        // a rerun completes and clears the dead run's staging directory
        ok(anvil(&[
            "data",
            "prepare",
            "--langs",
            "python",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]));
        assert!(out.join("manifest.json").exists());
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains("partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn overwrite_never_deletes_inputs_or_foreign_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let src = t.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("a.py"),
        "def f(x):\n    return x + 1\n\n\ndef g(y):\n    return y * 2\n",
    )
    .unwrap();
    // a source file named like a license file is code, and is kept
    std::fs::write(
        src.join("license.py"),
        "def license_of(path):\n    return 'MIT' if path else None\n",
    )
    .unwrap();
    let (s, out) = (src.to_str().unwrap(), t.join("out"));
    let e = one_line_error(&anvil(&[
        "data",
        "prepare",
        "--source",
        s,
        "--out",
        s,
        "--overwrite",
    ]));
    assert!(e.contains("input"), "{e}");
    let e = one_line_error(&anvil(&[
        "data",
        "prepare",
        "--source",
        s,
        "--out",
        t.to_str().unwrap(),
        "--overwrite",
    ]));
    assert!(e.contains("input"), "{e}");
    let e = one_line_error(
        &std::process::Command::new(env!("CARGO_BIN_EXE_anvil"))
            .current_dir(&src)
            .args([
                "data",
                "prepare",
                "--source",
                s,
                "--out",
                ".",
                "--overwrite",
            ])
            .output()
            .unwrap(),
    );
    assert!(e.contains("current directory"), "{e}");
    let foreign = t.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.tex"), "years of work").unwrap();
    let e = one_line_error(&anvil(&[
        "data",
        "prepare",
        "--source",
        s,
        "--out",
        foreign.to_str().unwrap(),
        "--overwrite",
    ]));
    assert!(e.contains("not an Anvil output"), "{e}");
    assert!(foreign.join("thesis.tex").exists() && src.join("a.py").exists());
    // an Anvil output is replaced, atomically
    ok(anvil(&[
        "data",
        "prepare",
        "--source",
        s,
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]));
    let m = ok(anvil(&[
        "data",
        "prepare",
        "--source",
        s,
        "--out",
        out.to_str().unwrap(),
        "--overwrite",
        "--val-fraction",
        "0",
        "-q",
    ]));
    assert!(stdout(&m).contains("kept 2 of 2"), "{}", stdout(&m));
    // I/O errors say the OS error once
    let e = one_line_error(&anvil(&[
        "data",
        "tokenize",
        "--corpus",
        out.to_str().unwrap(),
        "--tokenizer",
        t.join("nope.json").to_str().unwrap(),
        "--out",
        t.join("tk").to_str().unwrap(),
    ]));
    assert_eq!(e.matches("No such file").count(), 1, "{e}");
}

#[test]
fn misspelled_recipe_sections_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("r.toml");
    std::fs::write(&r, "[data]\n[dat.tokenize]\nseq_len = 512\n").unwrap();
    let e = one_line_error(&anvil(&["data", "pipeline", r.to_str().unwrap()]));
    assert!(
        e.contains("unknown section `dat`") && e.contains("did you mean `data`"),
        "{e}"
    );
    std::fs::write(&r, "[data]\n").unwrap();
    let e = one_line_error(&anvil(&[
        "data",
        "pipeline",
        r.to_str().unwrap(),
        "dta.corpus.seed=1",
    ]));
    assert!(e.contains("`dta`"), "{e}");
}
