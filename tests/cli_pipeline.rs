//! End-to-end: the recipe-driven pipeline (with its cache), the tokenizer read by Hugging Face's
//! Python `tokenizers`, `data synth`, and recipe errors.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn stdlib() -> PathBuf {
    PathBuf::from(
        python(
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
            &[],
        )
        .trim(),
    )
}

/// A recipe over two stdlib packages: the quickstart's settings on a slice small enough for a test.
fn small_recipe(dir: &Path, src: &Path) -> PathBuf {
    let recipe = dir.join("recipe.toml");
    let quick =
        std::fs::read_to_string(common::repo_dir().join("recipes/quickstart.toml")).unwrap();
    let quick = quick.replace(
        r#"sources = ["python-stdlib"]"#,
        &format!("sources = [{:?}]", src.display().to_string()),
    );
    let quick = quick.replace(
        r#"cache_dir = "checkpoints/data""#,
        &format!("cache_dir = {:?}", dir.join("cache").display().to_string()),
    );
    std::fs::write(&recipe, quick).unwrap();
    recipe
}

#[test]
fn pipeline_builds_caches_and_rebuilds_on_change() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for pkg in ["json", "email"] {
        copy_dir(&stdlib().join(pkg), &src.join(pkg));
    }
    let recipe = small_recipe(tmp.path(), &src);
    let r = recipe.to_str().unwrap();
    let o = stdout(&ok(anvil(&[
        "data",
        "pipeline",
        r,
        "data.tokenizer.vocab_size=1024",
        "-q",
    ])));
    assert!(o.contains("built corpus, tokenizer, tokens"), "{o}");
    let tokens_dir = o
        .lines()
        .find_map(|l| l.trim().strip_prefix("tokens"))
        .unwrap()
        .trim()
        .to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&tokens_dir).join("tokens.json")).unwrap())
            .unwrap();
    assert_eq!(m["seq_len"], 256);
    assert!(
        m["train"]["n_fim_psm"].as_u64().unwrap() + m["train"]["n_fim_spm"].as_u64().unwrap() > 0,
        "fim_rate 0.5 makes FIM docs"
    );
    // The dense quickstart reads no tree positions, so it does not pay for them.
    assert!(
        !m["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "ast_depth")
    );
    // same inputs and settings: a cache hit
    let o = stdout(&ok(anvil(&[
        "data",
        "pipeline",
        r,
        "data.tokenizer.vocab_size=1024",
        "-q",
    ])));
    assert!(o.starts_with("cached:"), "{o}");
    // a changed input file or a changed setting builds anew
    let f = src.join("json/decoder.py");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("\n\ndef added_for_the_test(x):\n    return x * 2\n");
    std::fs::write(&f, text).unwrap();
    let o = stdout(&ok(anvil(&[
        "data",
        "pipeline",
        r,
        "data.tokenizer.vocab_size=1024",
        "-q",
    ])));
    assert!(o.contains("built corpus"), "{o}");
    let o = stdout(&ok(anvil(&[
        "data",
        "pipeline",
        r,
        "data.tokenizer.vocab_size=1024",
        "data.tokenize.seq_len=128",
        "-q",
    ])));
    assert!(o.contains("built"), "{o}");
}

#[test]
fn pipeline_builds_sft_data_from_synth_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let synth = t.join("synth");
    ok(anvil(&[
        "data",
        "synth",
        "--n-train",
        "60",
        "--n-heldout",
        "10",
        "--out",
        synth.to_str().unwrap(),
    ]));
    let recipe = t.join("sft.toml");
    let path = |p: PathBuf| format!("{:?}", p.display().to_string());
    std::fs::write(
        &recipe,
        format!(
            "[data]\ncache_dir = {}\nsft = [{}]\nsft_val = [{}]\n\
             [data.tokenizer]\nvocab_size = 600\n[data.tokenize]\nseq_len = 128\n",
            path(t.join("cache")),
            path(synth.join("train.jsonl")),
            path(synth.join("heldout.jsonl")),
        ),
    )
    .unwrap();
    let r = recipe.to_str().unwrap();
    let o = stdout(&ok(anvil(&["data", "pipeline", r, "-q"])));
    assert!(o.contains("built tokenizer, tokens"), "{o}");
    assert!(!o.contains("corpus"), "{o}");
    assert!(o.contains("60 train / 10 val SFT examples"), "{o}");
    let tokens_dir = o
        .lines()
        .find_map(|l| l.trim().strip_prefix("tokens"))
        .unwrap()
        .trim()
        .to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&tokens_dir).join("tokens.json")).unwrap())
            .unwrap();
    assert_eq!(m["columns"][2], "loss_mask");
    assert_eq!(m["sft"]["train"]["n_examples"], 60);
    // pyarrow reads the mask: 0/1, and 1 on every EOT of the train rows.
    let out = python(
        "import sys, glob, pyarrow.parquet as pq\n\
         t = pq.read_table(sorted(glob.glob(sys.argv[1] + '/train-*.parquet'))[0])\n\
         ids, mask = t['input_ids'].to_pylist(), t['loss_mask'].to_pylist()\n\
         assert all(v in (0, 1) for r in mask for v in r)\n\
         assert all(m == 1 for r, mr in zip(ids, mask) for i, m in zip(r, mr) if i == 0)\n\
         print(sum(map(sum, mask)))",
        &[Path::new(&tokens_dir)],
    );
    assert!(out.trim().parse::<u64>().unwrap() > 0, "{out}");
    let o = stdout(&ok(anvil(&["data", "pipeline", r, "-q"])));
    assert!(o.starts_with("cached:"), "{o}");
    // A malformed line: one error naming the file and line.
    let bad = t.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\"}\n",
    )
    .unwrap();
    let e = one_line_error(&anvil(&[
        "data",
        "pipeline",
        r,
        &format!("data.sft=[{}]", path(bad)),
        "-q",
    ]));
    assert!(e.contains("bad.jsonl:2") && e.contains("completion"), "{e}");
}

#[test]
fn tokenizer_json_loads_in_python_and_encodes_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let corpus = t.join("corpus");
    let src = stdlib().join("json");
    ok(anvil(&[
        "data",
        "prepare",
        "--source",
        src.to_str().unwrap(),
        "--langs",
        "python",
        "--val-fraction",
        "0",
        "--out",
        corpus.to_str().unwrap(),
        "-q",
    ]));
    let tok = t.join("tok.json");
    let o = stdout(&ok(anvil(&[
        "tokenizer",
        "train",
        "--corpus",
        corpus.to_str().unwrap(),
        "--vocab-size",
        "600",
        "--out",
        tok.to_str().unwrap(),
        "-q",
    ])));
    assert!(o.contains("round trip exact on all"), "{o}");
    let tokens = t.join("tokens");
    ok(anvil(&[
        "data",
        "tokenize",
        "--corpus",
        corpus.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--seq-len",
        "64",
        "--out",
        tokens.to_str().unwrap(),
        "-q",
    ]));
    // Python re-encodes every document; the concatenation (with <|endoftext|> = 0 after each)
    // must equal our packed stream, padding aside.
    let out = python(
        "import sys, glob, pyarrow.parquet as pq\n\
         from tokenizers import Tokenizer\n\
         tok = Tokenizer.from_file(sys.argv[1])\n\
         assert [tok.token_to_id(t) for t in ['<|endoftext|>','<|pad|>','<|mask|>','<|fim_prefix|>','<|fim_suffix|>','<|fim_middle|>','<|file_sep|>']] == list(range(7))\n\
         docs = [c for f in sorted(glob.glob(sys.argv[2] + '/train-*.parquet')) for c in pq.read_table(f)['content'].to_pylist()]\n\
         want = []\n\
         for d in docs:\n\
         \x20   ids = tok.encode(d, add_special_tokens=False).ids\n\
         \x20   assert tok.decode(ids, skip_special_tokens=False) == d\n\
         \x20   want += ids + [0]\n\
         rows = [r for f in sorted(glob.glob(sys.argv[3] + '/train-*.parquet')) for r in pq.read_table(f)['input_ids'].to_pylist()]\n\
         got = [t for r in rows for t in r]\n\
         got = got[:len(want)]\n\
         assert got == want, next(i for i in range(len(want)) if got[i] != want[i])\n\
         print(len(docs), len(want))",
        &[&tok, &corpus, &tokens],
    );
    let n_docs: usize = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(n_docs >= 4, "{out}");
    // bad tokenizer settings fail before any work
    let e = one_line_error(&anvil(&[
        "tokenizer",
        "train",
        "--corpus",
        corpus.to_str().unwrap(),
        "--vocab-size",
        "10",
        "--out",
        t.join("x.json").to_str().unwrap(),
    ]));
    assert!(e.contains("vocab-size"), "{e}");
    let e = one_line_error(&anvil(&[
        "data",
        "tokenize",
        "--corpus",
        t.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--out",
        t.join("tk2").to_str().unwrap(),
    ]));
    assert!(e.contains("manifest"), "{e}");
}

#[test]
fn synth_writes_both_splits_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("synth");
    let o = stdout(&ok(anvil(&[
        "data",
        "synth",
        "--n-train",
        "40",
        "--n-heldout",
        "15",
        "--out",
        out.to_str().unwrap(),
    ])));
    assert!(o.contains("40 train") && o.contains("15 held-out"), "{o}");
    for (f, n) in [("train.jsonl", 40), ("heldout.jsonl", 15)] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert_eq!(text.lines().count(), n);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for k in [
                "task_id",
                "prompt",
                "entry_point",
                "canonical_solution",
                "test",
            ] {
                assert!(v[k].is_string(), "{k} missing in {line}");
            }
        }
    }
    assert!(out.join("synth_manifest.json").exists());
    let e = one_line_error(&anvil(&["data", "synth", "--out", out.to_str().unwrap()]));
    assert!(e.contains("exists"), "{e}");
}

#[test]
fn recipe_errors_name_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[data.corpus]\nsourcs = [\"python-stdlib\"]\n").unwrap();
    let e = one_line_error(&anvil(&["data", "pipeline", bad.to_str().unwrap()]));
    assert!(e.contains("bad.toml") && e.contains("sourcs"), "{e}");
    std::fs::write(&bad, "[data.tokenize]\nseq_len = \"long\"\n").unwrap();
    let e = one_line_error(&anvil(&["data", "pipeline", bad.to_str().unwrap()]));
    assert!(e.contains("bad.toml") && e.contains("string"), "{e}");
    std::fs::write(&bad, "[data]\n").unwrap();
    let e = one_line_error(&anvil(&[
        "data",
        "pipeline",
        bad.to_str().unwrap(),
        "data.corpus.val_fraction=2.0",
    ]));
    assert!(e.contains("val_fraction"), "{e}");
    std::fs::write(&bad, "[model]\n").unwrap();
    let e = one_line_error(&anvil(&["data", "pipeline", bad.to_str().unwrap()]));
    assert!(e.contains("[data]"), "{e}");
    std::fs::write(&bad, "[data\n").unwrap();
    let e = one_line_error(&anvil(&["data", "pipeline", bad.to_str().unwrap()]));
    assert!(e.contains("bad.toml"), "{e}");
    let e = one_line_error(&anvil(&[
        "data",
        "pipeline",
        tmp.path().join("none.toml").to_str().unwrap(),
    ]));
    assert!(e.contains("none.toml"), "{e}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (p, ty) = (e.path(), e.file_type().unwrap());
        if ty.is_dir() && e.file_name() != "__pycache__" {
            copy_dir(&p, &to.join(e.file_name()));
        } else if ty.is_file() {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
