//! End-to-end `anvil export` to GGUF and to quantized Anvil checkpoints, on a model trained for a
//! few steps by `anvil train run` and on a mixture of experts built in-process: gguf-py (llama.cpp's
//! own reader) finds the metadata, tokenizer and tensors llama.cpp expects, bit-exact with its
//! quantizers; the quantized checkpoints load through `store::load` with logits and loss close
//! to the f32 model's; bad arguments fail in one line before writing anything.

mod common;
use anvil_models::{Llama, LlamaConfig, MoeConfig, TokenBatch, store};
use burn::tensor::Device;
use common::*;
use std::path::{Path, PathBuf};

/// Trains the tiny model of this test (`d_model` 64, grouped-query attention, tied embedding) and
/// returns its run folder.
fn train(tmp: &Path) -> PathBuf {
    write_python_corpus(&tmp.join("src"), 30);
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    let recipe = tmp.join("recipe.toml");
    let text = format!(
        r#"{data}
[model]
d_model = 64
n_layers = 2
n_heads = 4
n_kv_heads = 2
d_ff = 96
max_seq_len = 64
tie_embeddings = true
[train]
seed = 3
max_steps = 30
batch_size = 8
log_every = 10
[optim]
lr = 1e-2
[schedule]
warmup_steps = 4
[eval]
every = 30
batches = 2
[checkpoint]
every = 30
[output]
dir = {runs}
name = "r"
"#,
        data = data_recipe(&tmp.join("cache"), &tmp.join("src")),
        runs = q(tmp.join("runs")),
    );
    std::fs::write(&recipe, text).unwrap();
    ok(anvil(&["train", "run", recipe.to_str().unwrap()]));
    tmp.join("runs/r")
}

use std::process::Output;

fn gguf_check(gguf: &Path, hf: &Path, quant: &str) {
    let script = common::repo_dir().join("tests/gguf_check.py");
    let o = std::process::Command::new("python3")
        .arg(&script)
        .args([gguf, hf, Path::new(quant)])
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "gguf check of {} failed: {}",
        gguf.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    println!("{quant}: {}", String::from_utf8_lossy(&o.stdout).trim());
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

fn logits(m: &Llama, ids: &[u32]) -> Vec<f32> {
    m.logits(ids, 1, 0, None)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Mean next-token loss over rows of the given tokens.
fn loss(m: &Llama, ids: &[u32], seq: usize) -> f64 {
    let batch = ids.len() / seq;
    let out = m.loss(&TokenBatch {
        input_ids: ids[..batch * seq].to_vec(),
        segment_ids: None,
        loss_mask: None,
        batch,
        seq_len: seq,
        tree: None,
        position_targets: None,
    });
    let sum: f32 = out.nll_sum.into_data().try_into_vec::<f32>().unwrap()[0];
    sum as f64 / out.n_targets as f64
}

#[test]
fn gguf_and_quantized_checkpoints_of_a_trained_model() {
    let tmp = tempfile::tempdir().unwrap();
    let run = train(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let hf = out.join("hf");
    ok(export(&run, "hf", None, &hf, &[]));
    for q in ["f16", "q8_0", "q4_0"] {
        let file = out.join(format!("r-{q}.gguf"));
        let o = ok(export(&run, "gguf", Some(q), &file, &[]));
        assert!(stdout(&o).contains(q), "{}", stdout(&o));
        gguf_check(&file, &hf, q);
    }
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&out.join("r-q4_0.gguf")) < size(&out.join("r-q8_0.gguf")));
    assert!(size(&out.join("r-q8_0.gguf")) < size(&out.join("r-f16.gguf")));

    // Quantized Anvil checkpoints: whole folders that every Anvil loader reads as they are.
    let device = Device::flex();
    let f32_model = anvil_infer::load_model(&run, &Device::flex()).unwrap().0;
    let text: Vec<u32> = (0..256).map(|i| (i * 7919 + 13) % 320).collect();
    let ids = &text[..64];
    let reference = logits(&f32_model, ids);
    let base_loss = loss(&f32_model, &text, 32);
    for (q, bound) in [("q8_0", 0.03), ("q4_0", 0.3)] {
        let dir = out.join(format!("anvil-{q}"));
        ok(export(&run, "anvil", Some(q), &dir, &[]));
        for file in ["model.json", "model.bpk", "quant.json", "tokenizer.json"] {
            assert!(dir.join(file).is_file(), "{q}: no {file}");
        }
        let loaded = store::load(&dir, &device).unwrap();
        assert_eq!(
            anvil_infer::load::find_tokenizer(&dir).as_deref(),
            Some(dir.join("tokenizer.json").as_path())
        );
        let got = logits(&loaded, ids);
        let delta: Vec<f32> = reference.iter().zip(&got).map(|(a, b)| a - b).collect();
        let rel = rms(&delta) / rms(&reference);
        let l = loss(&loaded, &text, 32);
        println!("{q}: rms(Δlogit)/rms(logit) = {rel:.4}, loss {l:.4} vs f32 {base_loss:.4}");
        assert!(rel <= bound, "{q}: logits moved by {rel} of their rms");
        assert!(
            (l - base_loss).abs() <= 0.1 * base_loss,
            "{q}: loss {l} vs {base_loss}"
        );
        // `anvil generate` takes the folder as it is.
        ok(anvil(&[
            "generate",
            "--checkpoint",
            dir.to_str().unwrap(),
            "--prompt",
            "def total(",
            "--max-tokens",
            "8",
        ]));
    }
    assert!(size(&out.join("anvil-q4_0/model.bpk")) < size(&out.join("anvil-q8_0/model.bpk")));
}

#[test]
fn gguf_of_a_mixture_of_experts_with_an_untied_head() {
    let tmp = tempfile::tempdir().unwrap();
    let c = LlamaConfig {
        vocab_size: 320,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 1,
        d_ff: 64,
        max_seq_len: 128,
        rope_theta: 50_000.0,
        moe: Some(MoeConfig {
            n_experts: 4,
            top_k: 2,
            ..MoeConfig::default()
        }),
        ..LlamaConfig::default()
    };
    let ckpt = tmp.path().join("moe");
    std::fs::create_dir(&ckpt).unwrap();
    store::save(&c.init(&Device::flex()), &ckpt).unwrap();
    // Anvil's special tokens, the 256 byte symbols and a merge: a 320-token model has unused ids.
    anvil_infer::testing::byte_tokenizer(tmp.path());
    let tok = tmp.path().join("tokenizer.json");
    let hf = tmp.path().join("hf");
    ok(export(
        &ckpt,
        "hf",
        None,
        &hf,
        &["--tokenizer", tok.to_str().unwrap()],
    ));
    for q in ["f16", "q4_0"] {
        let file = tmp.path().join(format!("moe-{q}.gguf"));
        ok(export(
            &ckpt,
            "gguf",
            Some(q),
            &file,
            &["--tokenizer", tok.to_str().unwrap()],
        ));
        gguf_check(&file, &hf, q);
    }
}

#[test]
fn an_hf_folder_exports_like_an_anvil_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny_checkpoint(&tmp.path().join("ckpt"), 320);
    anvil_infer::testing::byte_tokenizer(&ckpt);
    let (hf, again) = (tmp.path().join("hf"), tmp.path().join("hf-again"));
    ok(export(&ckpt, "hf", None, &hf, &[]));
    // Read back through the same loader generate uses: an HF folder in, the same files out.
    ok(export(&hf, "hf", None, &again, &[]));
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(hf.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }
    ok(export(
        &hf,
        "gguf",
        Some("q8_0"),
        &tmp.path().join("m.gguf"),
        &[],
    ));
}

#[test]
fn bad_export_arguments_fail_in_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny_checkpoint(&tmp.path().join("ckpt"), 320);
    let not_bpe = tmp.path().join("wordpiece.json");
    std::fs::write(&not_bpe, r#"{"model": {"type": "WordPiece", "vocab": {}}}"#).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let full = out.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "x").unwrap();
    let gguf = out.join("m.gguf");
    let tok = ["--tokenizer", not_bpe.to_str().unwrap()];
    let cases: Vec<(Output, &str)> = vec![
        (export(&ckpt, "gguf", Some("q5_k"), &gguf, &tok), "q5_k"),
        (
            export(&ckpt, "hf", Some("q8_0"), &out.join("hf"), &[]),
            "--format hf",
        ),
        (
            export(&ckpt, "anvil", None, &out.join("a"), &[]),
            "q8_0 or q4_0",
        ),
        (
            export(&ckpt, "anvil", Some("f16"), &out.join("a"), &[]),
            "not f16",
        ),
        (
            export(
                &ckpt,
                "gguf",
                Some("q8_0"),
                &out.join("missing/m.gguf"),
                &tok,
            ),
            "no such folder",
        ),
        (
            export(&ckpt, "anvil", Some("q8_0"), &out.join("missing/a"), &[]),
            "no such folder",
        ),
        (
            export(&ckpt, "anvil", Some("q4_0"), &full, &[]),
            "not an empty folder",
        ),
        // Fails after the model is loaded, while the tokenizer is read.
        (export(&ckpt, "gguf", Some("q4_0"), &gguf, &tok), "not BPE"),
        (
            export(
                &ckpt,
                "gguf",
                Some("q8_0"),
                &gguf,
                &["--tokenizer", "/nonexistent.json"],
            ),
            "no such tokenizer",
        ),
    ];
    for (o, needle) in cases {
        let line = one_line_error(&o);
        assert!(line.contains(needle), "expected `{needle}` in: {line}");
    }
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["full"], "something was written");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
}
