//! End-to-end: what a user (or an adversary) can hand the CLI that would exhaust the machine or
//! panic deep inside — model configs larger than memory, token shards that disagree with their
//! model, a tokenizer of another model, unbounded thread counts, outputs under missing folders —
//! is refused in one line before any work, and leaves nothing behind.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A small random model (vocab `vocab`) in `dir/name`, with Anvil's byte tokenizer beside it.
fn checkpoint(dir: &Path, name: &str, vocab: usize) -> PathBuf {
    let ckpt = tiny_checkpoint(&dir.join(name), vocab);
    anvil_infer::testing::byte_tokenizer(&ckpt);
    ckpt
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn generate(ckpt: &Path) -> std::process::Output {
    anvil(&[
        "generate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--prompt",
        "def f(",
        "--max-tokens",
        "2",
    ])
}

#[test]
fn model_configs_larger_than_memory_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let base = checkpoint(tmp.path(), "base", 320);
    let hf = tmp.path().join("hf");
    ok(export(&base, "hf", None, &hf, &[]));

    // Anvil's model.json: generate and export load it (train run reads recipes, cli_train.rs).
    let cases = [
        (
            "d_model",
            1_000_000_000u64,
            "`d_model`: the model needs about",
        ),
        ("n_layers", 10_000_000, "`n_layers`: the model needs about"),
        (
            "vocab_size",
            2_000_000_000,
            "`vocab_size`: the model needs about",
        ),
        ("vocab_size", 4_000_000_000, "vocab_size"),
    ];
    for (key, value, want) in cases {
        let ckpt = tmp.path().join(format!("{key}-{value}"));
        copy_files(&base, &ckpt);
        edit_json(&ckpt.join("model.json"), |m| {
            m.insert(key.into(), value.into());
        });
        let line = one_line_error(&generate(&ckpt));
        assert!(line.contains(want), "{key} = {value}: {line}");
        let out = tmp.path().join(format!("out-{key}"));
        let line = one_line_error(&export(&ckpt, "gguf", None, &out, &[]));
        assert!(line.contains(want), "export, {key} = {value}: {line}");
        assert!(!out.exists());
    }
    let line = one_line_error(&generate(&tmp.path().join("d_model-1000000000")));
    assert!(
        line.contains("parameters") && line.contains("of memory is available"),
        "{line}"
    );

    // An HF config.json, in its own key names.
    for (key, value) in [
        ("hidden_size", 1_000_000_000u64),
        ("num_hidden_layers", 10_000_000),
    ] {
        let dir = tmp.path().join(format!("hf-{key}"));
        copy_files(&hf, &dir);
        edit_json(&dir.join("config.json"), |m| {
            m.insert(key.into(), value.into());
            m.remove("head_dim");
        });
        let line = one_line_error(&generate(&dir));
        assert!(
            line.contains(&format!("`{key}`: the model needs")),
            "{line}"
        );
    }
}

#[test]
fn a_tokenizer_of_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // The byte tokenizer has a few hundred tokens; an 8192-token model was trained with another.
    let ckpt = checkpoint(tmp.path(), "big-vocab", 8192);
    let line = one_line_error(&generate(&ckpt));
    assert!(
        line.contains("not the tokenizer this model was trained with"),
        "{line}"
    );
    // A model padded a little past its tokenizer is normal (HF models round to 64 or 128).
    let padded = checkpoint(tmp.path(), "padded", 384);
    ok(generate(&padded));
}

/// Rewrites a token shard with pyarrow: `id=N` puts token N in row 0, `short` halves every row.
const REWRITE_SHARD: &str = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
path, mode = sys.argv[1], sys.argv[2]
t = pq.read_table(path)
cols = {n: t.column(n).to_pylist() for n in t.column_names}
if mode.startswith("id="):
    cols["input_ids"][0][3] = int(mode[3:])
else:
    cols = {n: [r[: len(r) // 2] for r in rows] for n, rows in cols.items()}
arrays = [pa.array(cols[f.name], f.type) for f in t.schema]
pq.write_table(pa.Table.from_arrays(arrays, schema=t.schema), path)
"#;

#[test]
fn token_shards_that_disagree_with_the_model_are_refused_naming_the_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_python_corpus(&src, 30);
    let recipe = tmp.path().join("data.toml");
    std::fs::write(&recipe, data_recipe(&tmp.path().join("cache"), &src)).unwrap();
    let o = ok(anvil(&["data", "pipeline", recipe.to_str().unwrap()]));
    let tokens = stdout(&o)
        .lines()
        .find_map(|l| l.trim().strip_prefix("tokens"))
        .map(|p| PathBuf::from(p.trim()))
        .expect("the pipeline prints its tokens folder");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(tokens.join("tokens.json")).unwrap()).unwrap();
    let vocab = manifest["vocab_size"].as_u64().unwrap() as usize;
    let val_shard = manifest["val"]["shards"][0].as_str().unwrap().to_string();
    let ckpt = checkpoint(tmp.path(), "model", vocab);
    std::fs::copy(
        tokens.join(manifest["tokenizer"].as_str().unwrap()),
        ckpt.join("tokenizer.json"),
    )
    .unwrap();
    let perplexity = |dir: &Path| {
        anvil(&[
            "eval",
            "perplexity",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--tokens",
            dir.to_str().unwrap(),
        ])
    };
    ok(perplexity(&tokens));

    let train_recipe = tmp.path().join("train.toml");
    for (mode, want) in [
        ("id=9000", "token id 9000 is outside the vocabulary"),
        (
            "id=4000000000",
            "token id 4000000000 is outside the vocabulary",
        ),
        (
            "short",
            "rows of 16 tokens, but tokens.json says seq_len = 32",
        ),
    ] {
        let bad = tmp.path().join(format!("tokens-{mode}"));
        copy_files(&tokens, &bad);
        python(REWRITE_SHARD, &[&bad.join(&val_shard), Path::new(mode)]);
        let line = one_line_error(&perplexity(&bad));
        assert!(
            line.contains(want) && line.contains(&val_shard),
            "{mode}: {line}"
        );

        // Training reads the same shards the same way, before creating a run folder.
        let runs = tmp.path().join("runs");
        std::fs::write(
            &train_recipe,
            format!(
                "[data]\ntokens = {:?}\n[model]\nd_model = 32\nn_layers = 1\nn_heads = 2\n\
                 max_seq_len = 64\n[train]\nmax_steps = 2\nbatch_size = 2\n[schedule]\nwarmup_steps = 1\n[output]\ndir = {:?}\n",
                bad.display().to_string(),
                runs.display().to_string()
            ),
        )
        .unwrap();
        let line = one_line_error(&anvil(&["train", "run", train_recipe.to_str().unwrap()]));
        assert!(line.contains(want), "train, {mode}: {line}");
        assert!(!runs.exists(), "{mode}: a run folder was created");
    }
}

#[test]
fn thread_counts_are_bounded_and_outputs_need_an_existing_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(tmp.path(), "model", 320);
    let c = ckpt.to_str().unwrap();
    for args in [
        vec![
            "generate",
            "--checkpoint",
            c,
            "--prompt",
            "x",
            "--threads",
            "100000",
        ],
        vec!["serve", "--checkpoint", c, "--threads", "100000"],
    ] {
        let line = one_line_error(&anvil(&args));
        assert!(
            line.contains("--threads = 100000") && line.contains("per core"),
            "{args:?}: {line}"
        );
    }

    // A typo'd --out must not create folders (under / here) before failing.
    let root = Path::new("/nonexistent-anvil-test");
    let deep = root.join("x/y");
    let deep = deep.to_str().unwrap();
    let png = root.join("x.png");
    for args in [
        vec![
            "data",
            "prepare",
            "--source",
            "python-stdlib",
            "--out",
            deep,
        ],
        vec!["data", "synth", "--out", deep],
        vec!["runs", "plot", c, "--out", png.to_str().unwrap()],
    ] {
        let line = one_line_error(&anvil(&args));
        assert!(line.contains("no such folder"), "{args:?}: {line}");
        assert!(!root.exists(), "{args:?} created {}", root.display());
    }
}
