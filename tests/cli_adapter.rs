//! LoRA adapters wherever a checkpoint is read: `generate`, `serve`, `eval perplexity` and
//! `export` with `--adapter DIR` (or an adapter folder / LoRA run as `--checkpoint`), base +
//! adapter unmerged giving what the merged export gives, `export --format peft` round trips,
//! the trainer's checkpoint layout, and one-line refusals naming the key or file for adapters
//! that do not fit.
//!
//! The base is a random-weight model (wide enough init that greedy decoding has clear winners,
//! so merged and unmerged float rounding cannot flip a token) with a byte-level tokenizer; the
//! adapter is PEFT's init with a random, non-zero B, built in-process once per test binary.

mod common;

use anvil_models::lora::{self, LoraConfig};
use anvil_models::{Llama, LlamaConfig, hf, peft, store};
use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PROMPT: &str = "def add(a, b):";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 320,
        d_model: 32,
        n_layers: 2,
        n_heads: 2,
        max_seq_len: 64,
        init_std: 0.2,
        ..Default::default()
    }
}

fn lora_config() -> LoraConfig {
    LoraConfig {
        r: 4,
        alpha: 8.0,
        target_modules: ["q_proj", "v_proj", "up_proj", "down_proj"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    }
}

/// `model` with PEFT-initialized adapters whose B is random (PEFT's zero B would change nothing).
fn adapted(model: Llama, device: &Device) -> Llama {
    let mut m = lora::apply_lora(model, &lora_config());
    lora::for_each_projection(&mut m, |_, _, l| {
        if let Some(a) = &mut l.lora {
            let b = Tensor::<2>::random(a.lora_b.dims(), Distribution::Normal(0.0, 0.5), device);
            a.lora_b = Param::from_tensor(b);
        }
    });
    m
}

struct Fixture {
    /// `base/`: model.json, model.bpk, tokenizer.json.
    base: PathBuf,
    /// `ad/`: the adapter on `base`, recorded with base's absolute path.
    ad: PathBuf,
    /// `other/`: an adapter of the same shapes trained on another base (`base2/`).
    other: PathBuf,
    /// `tokens/`: token shards for perplexity.
    tokens: PathBuf,
}

/// Built once per test binary (the device RNG is shared, so in-process models are made here,
/// under one initializer, and every test reads the same files).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_adapter");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let device = Device::flex();
        device.seed(5);
        let base = root.join("base");
        std::fs::create_dir_all(&base).unwrap();
        let model = config().init(&device);
        store::save(&model, &base).unwrap();
        anvil_infer::testing::byte_tokenizer(&base);
        let ad = root.join("ad");
        let abs = std::path::absolute(&base).unwrap();
        peft::save_adapter(&adapted(model, &device), &lora_config(), p(&abs), &ad).unwrap();

        let base2 = root.join("base2");
        std::fs::create_dir_all(&base2).unwrap();
        let model2 = config().init(&device);
        store::save(&model2, &base2).unwrap();
        let other = root.join("other");
        let abs2 = std::path::absolute(&base2).unwrap();
        peft::save_adapter(&adapted(model2, &device), &lora_config(), p(&abs2), &other).unwrap();

        // Token shards in the base's tokenizer: a small corpus, half of it held out.
        let src = root.join("src");
        write_python_corpus(&src, 12);
        let corpus = root.join("corpus");
        ok(anvil(&[
            "data",
            "prepare",
            "--source",
            p(&src),
            "--langs",
            "python",
            "--val-fraction",
            "0.5",
            "--out",
            p(&corpus),
        ]));
        let tokens = root.join("tokens");
        ok(anvil(&[
            "data",
            "tokenize",
            "--corpus",
            p(&corpus),
            "--tokenizer",
            p(&base.join("tokenizer.json")),
            "--seq-len",
            "32",
            "--out",
            p(&tokens),
        ]));
        Fixture {
            base,
            ad,
            other,
            tokens,
        }
    })
}

/// Greedy `generate --json` of [`PROMPT`]: (token ids, text).
fn greedy(args: &[&str]) -> (Vec<u64>, String) {
    let mut a = vec![
        "generate",
        "--prompt",
        PROMPT,
        "--max-tokens",
        "16",
        "--ignore-eos",
    ];
    a.push("--json");
    a.extend_from_slice(args);
    let o = ok(anvil(&a));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let ids = v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    (ids, v["text"].as_str().unwrap().to_string())
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[test]
fn generate_with_an_adapter_equals_the_merged_export_and_differs_from_the_base() {
    let f = fixture();
    let tmp = tmpdir();
    let with = greedy(&["--checkpoint", p(&f.base), "--adapter", p(&f.ad)]);
    let base = greedy(&["--checkpoint", p(&f.base)]);
    assert_ne!(with.0, base.0, "the adapter changes nothing");

    let merged = tmp.path().join("merged-hf");
    let o = ok(export(
        &f.base,
        "hf",
        None,
        &merged,
        &["--adapter", p(&f.ad), "--merge"],
    ));
    assert!(stdout(&o).contains("wrote"), "{}", stdout(&o));
    assert!(merged.join("tokenizer.json").is_file());
    let from_merged = greedy(&["--checkpoint", p(&merged)]);
    assert_eq!(with, from_merged);

    // The adapter folder alone finds its base through anvil_base.json, and the tokenizer
    // through the base.
    assert_eq!(greedy(&["--checkpoint", p(&f.ad)]), with);
    // Merged into GGUF too (the tokenizer comes from the base).
    let gguf = tmp.path().join("m.gguf");
    ok(export(&f.ad, "gguf", None, &gguf, &["--merge"]));
    assert!(gguf.is_file());
}

#[test]
fn merged_hf_export_holds_lora_merge_of_the_adapter() {
    let f = fixture();
    let tmp = tmpdir();
    let out = tmp.path().join("hf");
    ok(export(&f.ad, "hf", None, &out, &["--merge"]));

    let device = Device::flex();
    let base = store::load(&f.base, &device).unwrap();
    let (with, _) = peft::load_adapter(base.clone(), &f.ad).unwrap();
    let want = hf::parameters(&lora::merge(with));
    let got = hf::parameters(&hf::import(&out, &device).unwrap());
    let base = hf::parameters(&base);
    assert_eq!(want.len(), got.len());
    let mut changed = 0;
    for ((wn, ws, wv), ((gn, gs, gv), (_, _, bv))) in want.iter().zip(got.iter().zip(&base)) {
        assert_eq!((wn, ws), (gn, gs));
        let diff = wv
            .iter()
            .zip(gv)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-6, "{wn}: merged weights differ by {diff}");
        changed += usize::from(wv != bv);
    }
    // q, v, up and down in each of the 2 layers.
    assert_eq!(changed, 8);
}

#[test]
fn peft_export_round_trips() {
    let f = fixture();
    let tmp = tmpdir();
    let out = tmp.path().join("peft");
    let o = ok(export(
        &f.base,
        "peft",
        None,
        &out,
        &["--adapter", p(&f.ad)],
    ));
    assert!(stdout(&o).contains("LoRA adapter"), "{}", stdout(&o));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [peft::CONFIG_FILE, peft::WEIGHTS_FILE, peft::BASE_FILE]
    );
    // The same tensors, byte for byte, and the same base.
    assert_eq!(
        std::fs::read(out.join(peft::WEIGHTS_FILE)).unwrap(),
        std::fs::read(f.ad.join(peft::WEIGHTS_FILE)).unwrap()
    );
    assert_eq!(
        peft::read_base(&out).unwrap(),
        peft::read_base(&f.ad).unwrap()
    );
    let want = greedy(&["--checkpoint", p(&f.base), "--adapter", p(&f.ad)]);
    assert_eq!(greedy(&["--checkpoint", p(&out)]), want);
    assert_eq!(
        greedy(&["--checkpoint", p(&f.base), "--adapter", p(&out)]),
        want
    );
    // From an adapter checkpoint alone, too.
    let out2 = tmp.path().join("peft2");
    ok(export(&f.ad, "peft", None, &out2, &[]));
    assert_eq!(greedy(&["--checkpoint", p(&out2)]), want);
}

#[test]
fn perplexity_with_an_adapter_differs_from_the_base() {
    let f = fixture();
    let ppl = |extra: &[&str]| {
        let mut a = vec![
            "eval",
            "perplexity",
            "--checkpoint",
            p(&f.base),
            "--tokens",
            p(&f.tokens),
            "--json",
        ];
        a.extend_from_slice(extra);
        let o = ok(anvil(&a));
        let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        v
    };
    let base = ppl(&[]);
    let with = ppl(&["--adapter", p(&f.ad)]);
    let (lb, lw) = (
        base["loss"].as_f64().unwrap(),
        with["loss"].as_f64().unwrap(),
    );
    assert!(lb.is_finite() && lw.is_finite() && lb != lw, "{lb} {lw}");
    assert!(with["adapter"].as_str().unwrap().ends_with("ad"), "{with}");
    assert!(base["adapter"].is_null());
}

#[test]
fn a_lora_run_as_the_trainer_writes_it_loads_alone() {
    let f = fixture();
    let tmp = tmpdir();
    // A base without a tokenizer: the run's artifacts/tokenizer.json must be the one used.
    let base = tmp.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    for file in [store::CONFIG_FILE, store::WEIGHTS_FILE] {
        std::fs::copy(f.base.join(file), base.join(file)).unwrap();
    }
    let run = tmp.path().join("run");
    let step = run.join("checkpoints/step-000010");
    std::fs::create_dir_all(run.join("artifacts")).unwrap();
    std::fs::copy(
        f.base.join("tokenizer.json"),
        run.join("artifacts/tokenizer.json"),
    )
    .unwrap();
    let device = Device::flex();
    let model = store::load(&base, &device).unwrap();
    let (with, cfg) = peft::load_adapter(model, &f.ad).unwrap();
    let abs = std::path::absolute(&base).unwrap();
    peft::save_adapter(&with, &cfg, p(&abs), &step).unwrap();
    // The trainer's own files beside the adapter.
    std::fs::write(step.join("optimizer.safetensors"), b"not read here").unwrap();
    std::fs::write(step.join("state.json"), b"{}").unwrap();
    // A newer step still being written (no adapter config yet) is passed over.
    let partial = run.join("checkpoints/step-000020");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("state.json"), b"{}").unwrap();

    let want = greedy(&["--checkpoint", p(&f.base), "--adapter", p(&f.ad)]);
    assert_eq!(greedy(&["--checkpoint", p(&run)]), want);
    assert_eq!(greedy(&["--checkpoint", p(&step)]), want);
    // The run as --adapter on the base given explicitly.
    assert_eq!(
        greedy(&["--checkpoint", p(&base), "--adapter", p(&run)]),
        want
    );
    // A recorded base that is no longer there: one line saying to pass it.
    std::fs::rename(&base, tmp.path().join("moved")).unwrap();
    let line = one_line_error(&anvil(&[
        "generate",
        "--checkpoint",
        p(&run),
        "--prompt",
        "x",
    ]));
    assert!(
        line.contains("is not a local folder") && line.contains("--checkpoint BASE --adapter"),
        "{line}"
    );
}

#[test]
fn pass_at_k_generates_with_the_adapter() {
    let f = fixture();
    let tmp = tmpdir();
    let problems = tmp.path().join("problems.jsonl");
    let row = serde_json::json!({"task_id": "T/0", "prompt": PROMPT, "entry_point": "add",
                                 "test": "def check(c):\n    assert c(1, 2) == 3\n"});
    std::fs::write(&problems, row.to_string()).unwrap();
    let samples = tmp.path().join("s.jsonl");
    ok(anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        p(&problems),
        "--checkpoint",
        p(&f.base),
        "--adapter",
        p(&f.ad),
        "--n-samples",
        "1",
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "--samples",
        p(&samples),
        "--k",
        "1",
        "--workers",
        "1",
    ]));
    let written: Value =
        serde_json::from_str(std::fs::read_to_string(&samples).unwrap().trim()).unwrap();
    // Greedy, so the same text `generate` gives with the adapter (EOS honoured by both).
    let o = ok(anvil(&[
        "generate",
        "--checkpoint",
        p(&f.base),
        "--adapter",
        p(&f.ad),
        "--prompt",
        PROMPT,
        "--max-tokens",
        "16",
        "--json",
    ]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(written["completion"], v["text"]);
}

/// The tensors of a safetensors file (f32).
fn read_st(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    hf::read_safetensors(path)
        .unwrap()
        .into_iter()
        .map(|(k, (s, v))| (k, s, v))
        .collect()
}

/// Writes f32 tensors in the safetensors layout: a little-endian u64 header length, the JSON
/// header (padded with spaces to 8 bytes), then the data.
fn write_st(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|x| x.to_le_bytes()));
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(h);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_adapters_are_refused_in_one_line_naming_the_key() {
    let f = fixture();
    let tmp = tmpdir();
    let gen_with = |adapter: &Path| {
        anvil(&[
            "generate",
            "--checkpoint",
            p(&f.base),
            "--adapter",
            p(adapter),
            "--prompt",
            "x",
        ])
    };
    let tensors = read_st(&f.ad.join(peft::WEIGHTS_FILE));
    let q_a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";

    // A tensor of the wrong shape.
    let bad = tmp.path().join("shape");
    copy_files(&f.ad, &bad);
    let mut t = tensors.clone();
    let i = t.iter().position(|(k, _, _)| k == q_a).unwrap();
    t[i] = (q_a.into(), vec![4, 33], vec![0.5; 4 * 33]);
    write_st(&bad.join(peft::WEIGHTS_FILE), &t);
    let line = one_line_error(&gen_with(&bad));
    assert!(line.contains(q_a) && line.contains("[4, 33]"), "{line}");

    // A key that matches no module of the model.
    let bad = tmp.path().join("key");
    copy_files(&f.ad, &bad);
    let stray = "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight";
    let mut t = tensors.clone();
    t.push((stray.into(), vec![4, 32], vec![0.0; 4 * 32]));
    write_st(&bad.join(peft::WEIGHTS_FILE), &t);
    let line = one_line_error(&gen_with(&bad));
    assert!(line.contains(stray), "{line}");

    // An adapter trained on another base.
    let line = one_line_error(&gen_with(&f.other));
    assert!(
        line.contains(peft::BASE_FILE) && line.contains("another base"),
        "{line}"
    );

    // Pickled weights only.
    let bad = tmp.path().join("pickle");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(f.ad.join(peft::CONFIG_FILE), bad.join(peft::CONFIG_FILE)).unwrap();
    std::fs::write(bad.join(peft::PICKLE_FILE), b"\x80\x04pickle").unwrap();
    let line = one_line_error(&gen_with(&bad));
    assert!(line.contains(peft::PICKLE_FILE), "{line}");
    // Alone too (its base then comes from adapter_config.json's base_model_name_or_path).
    let line = one_line_error(&anvil(&[
        "generate",
        "--checkpoint",
        p(&bad),
        "--prompt",
        "x",
    ]));
    assert!(line.contains(peft::PICKLE_FILE), "{line}");

    // --adapter on a checkpoint that already is an adapter.
    let line = one_line_error(&anvil(&[
        "generate",
        "--checkpoint",
        p(&f.ad),
        "--adapter",
        p(&f.ad),
        "--prompt",
        "x",
    ]));
    assert!(line.contains("already a LoRA adapter"), "{line}");
    // --adapter naming a full model.
    let line = one_line_error(&gen_with(&f.base));
    assert!(line.contains("not a LoRA adapter"), "{line}");

    // Exports: peft without an adapter, a full-model format without --merge, --merge without
    // an adapter, --quant with peft; nothing is written.
    let out = tmp.path().join("out");
    for (ckpt, format, extra, want) in [
        (&f.base, "peft", &[][..], "--format peft"),
        (&f.ad, "hf", &[][..], "--merge"),
        (&f.ad, "anvil", &["--quant", "q8_0"][..], "--format peft"),
        (&f.base, "hf", &["--merge"][..], "nothing to merge"),
        (&f.ad, "peft", &["--quant", "q8_0"][..], "--quant q8_0"),
        (&f.ad, "peft", &["--merge"][..], "--merge"),
    ] {
        let line = one_line_error(&export(ckpt, format, None, &out, extra));
        assert!(line.contains(want), "{format} {extra:?}: {line}");
        assert!(!out.exists(), "{format} {extra:?} wrote {}", out.display());
    }
    let line = one_line_error(&export(
        &f.base,
        "gguf",
        None,
        &out,
        &["--adapter", p(&f.ad)],
    ));
    assert!(
        line.contains("--adapter") && line.contains("--merge"),
        "{line}"
    );

    // An adapter PEFT wrote (no anvil_base.json) is accepted, with a note.
    let peft_made = tmp.path().join("peft-made");
    copy_files(&f.ad, &peft_made);
    std::fs::remove_file(peft_made.join(peft::BASE_FILE)).unwrap();
    let o = ok(gen_with(&peft_made));
    assert!(stderr(&o).contains("note:"), "{}", stderr(&o));

    // --adapter needs --checkpoint in pass-at-k (clap's own message).
    let o = anvil(&[
        "eval",
        "pass-at-k",
        "--samples",
        p(&tmp.path().join("s.jsonl")),
        "--adapter",
        p(&f.ad),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--checkpoint"), "{}", stderr(&o));
}

#[test]
fn serve_with_an_adapter_answers_as_generate_does() {
    let f = fixture();
    let (_, want) = greedy(&["--checkpoint", p(&f.base), "--adapter", p(&f.ad)]);
    let body = serde_json::json!({
        "prompt": PROMPT, "max_tokens": 16, "temperature": 0, "ignore_eos": true,
    });
    let (v, models, err) = serve_once(&["--checkpoint", p(&f.base), "--adapter", p(&f.ad)], &body);
    assert_eq!(v["choices"][0]["text"], want.as_str(), "{v}");
    // The model is named after the adapter.
    assert_eq!(models["data"][0]["id"], "ad", "{models}");
    assert!(err.contains("LoRA adapter"), "{err}");
}
