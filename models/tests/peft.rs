//! LoRA adapters in PEFT's on-disk format: keys, shapes and config exactly as PEFT writes them,
//! bit-identical round trips (dense, Mixtral-style and shared experts), adapters PEFT wrote
//! (newer keys, f16/bf16, regex targets), one-line errors naming the key for everything refused,
//! and the base fingerprint.

mod support;

use anvil_models::lora::{self, LoraConfig};
use anvil_models::{Llama, LlamaConfig, hf, peft};
use burn::module::Param;
use burn::tensor::{Device, TensorData};
use std::path::Path;
use support::*;

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn peft_format_keys_shapes_and_config() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(9);
    let cfg = LoraConfig {
        r: 4,
        alpha: 16.0,
        dropout: 0.05,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "up_proj".into()],
        ..Default::default()
    };
    let adapted = random_b(lora::apply_lora(dense().init(&device), &cfg));
    let dir = tempfile::tempdir().unwrap();
    peft::save_adapter(&adapted, &cfg, "anvil/tiny", dir.path()).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "adapter_config.json",
            "adapter_model.safetensors",
            "anvil_base.json"
        ]
    );

    let c = read_json(&dir.path().join("adapter_config.json"));
    assert_eq!(c["peft_type"], "LORA");
    assert_eq!(c["task_type"], "CAUSAL_LM");
    assert_eq!(c["r"], 4);
    assert_eq!(c["lora_alpha"], 16);
    assert_eq!(c["lora_dropout"], 0.05);
    assert_eq!(c["bias"], "none");
    assert_eq!(c["use_rslora"], false);
    assert_eq!(c["use_dora"], false);
    assert_eq!(c["fan_in_fan_out"], false);
    assert_eq!(c["inference_mode"], true);
    assert_eq!(c["init_lora_weights"], true);
    assert_eq!(c["base_model_name_or_path"], "anvil/tiny");
    assert!(c["modules_to_save"].is_null() && c["layers_to_transform"].is_null());
    assert_eq!(
        c["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "up_proj"])
    );
    let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "PEFT writes sorted keys");

    let bytes = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut keys: Vec<String> = st.names().into_iter().map(String::from).collect();
    keys.sort();
    let mut want = Vec::new();
    for l in 0..2 {
        for m in ["self_attn.q_proj", "self_attn.v_proj", "mlp.up_proj"] {
            for ab in ["A", "B"] {
                want.push(format!(
                    "base_model.model.model.layers.{l}.{m}.lora_{ab}.weight"
                ));
            }
        }
    }
    want.sort();
    assert_eq!(keys, want);
    let layer = &adapted.model.layers[1];
    for (module, l) in [
        ("self_attn.v_proj", &layer.self_attn.v_proj),
        ("mlp.up_proj", &layer.mlp.as_ref().unwrap().up_proj),
    ] {
        let [d_in, d_out] = l.dims();
        let a = l.lora.as_ref().unwrap();
        let key = |ab: &str| format!("base_model.model.model.layers.1.{module}.lora_{ab}.weight");
        let ta = st.tensor(&key("A")).unwrap();
        let tb = st.tensor(&key("B")).unwrap();
        assert_eq!(ta.dtype(), safetensors::Dtype::F32);
        assert_eq!(ta.shape(), [4, d_in]);
        assert_eq!(tb.shape(), [d_out, 4]);
        let f = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        // PyTorch's [r, in] is Burn's [in, r] transposed.
        let burn_a = values(a.lora_a.val());
        let file_a = f(ta.data());
        for i in 0..d_in {
            for k in 0..4 {
                assert_eq!(file_a[k * d_in + i], burn_a[i * 4 + k]);
            }
        }
        let burn_b = values(a.lora_b.val());
        let file_b = f(tb.data());
        for k in 0..4 {
            for o in 0..d_out {
                assert_eq!(file_b[o * 4 + k], burn_b[k * d_out + o]);
            }
        }
    }
    let base = read_json(&dir.path().join("anvil_base.json"));
    assert_eq!(base["base_model_name_or_path"], "anvil/tiny");
    assert_eq!(base["fingerprint"], peft::base_fingerprint(&adapted));
}

#[test]
fn peft_round_trip_is_bit_identical() {
    let _rng = rng();
    let device = Device::flex();
    for (config, cfg) in [
        (dense(), all_targets(4)),
        (
            mixtral(),
            LoraConfig {
                use_rslora: true,
                alpha: 12.5,
                ..all_targets(2)
            },
        ),
        (shared_experts(), all_targets(3)),
    ] {
        device.seed(10);
        let base = config.init(&device);
        let adapted = random_b(lora::apply_lora(base.clone(), &cfg));
        let dir = tempfile::tempdir().unwrap();
        peft::save_adapter(&adapted, &cfg, "base", dir.path()).unwrap();
        let (loaded, got) = peft::load_adapter(base.clone(), dir.path()).unwrap();
        assert_eq!(got, cfg);
        assert_eq!(
            bits(&logits(&adapted)),
            bits(&logits(&loaded)),
            "logits after the round trip"
        );
        let adapter_values = |m: &Llama| {
            hf::parameters(m)
                .into_iter()
                .filter(|p| lora::is_adapter_path(&p.0))
                .map(|(p, s, v)| (p, s, bits(&v)))
                .collect::<Vec<_>>()
        };
        let (want, have) = (adapter_values(&adapted), adapter_values(&loaded));
        assert!(!want.is_empty());
        assert_eq!(want, have);
        assert!(peft::check_base(&base, dir.path()).unwrap());
    }
}

#[test]
fn moe_adapters_use_the_hf_expert_names() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(12);
    let cfg = LoraConfig {
        target_modules: vec!["q_proj".into(), "gate_proj".into(), "down_proj".into()],
        ..all_targets(2)
    };
    let read_keys = |dir: &Path| {
        let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut k: Vec<String> = st.names().into_iter().map(String::from).collect();
        k.sort();
        k
    };
    let m = lora::apply_lora(mixtral().init(&device), &cfg);
    let dir = tempfile::tempdir().unwrap();
    peft::save_adapter(&m, &cfg, "mixtral", dir.path()).unwrap();
    let c = read_json(&dir.path().join("adapter_config.json"));
    assert_eq!(
        c["target_modules"],
        serde_json::json!(["q_proj", "w1", "w2"])
    );
    let keys = read_keys(dir.path());
    assert_eq!(keys.len(), 2 * 2 * (1 + 3 * 2));
    assert!(keys.contains(
        &"base_model.model.model.layers.1.block_sparse_moe.experts.2.w2.lora_B.weight".into()
    ));
    assert!(!keys.iter().any(|k| k.contains("gate.") || k.contains("w3")));

    let m = lora::apply_lora(shared_experts().init(&device), &cfg);
    let dir = tempfile::tempdir().unwrap();
    peft::save_adapter(&m, &cfg, "shared", dir.path()).unwrap();
    let keys = read_keys(dir.path());
    assert_eq!(keys.len(), 2 * 2 * (1 + 4 * 2));
    assert!(
        keys.contains(
            &"base_model.model.model.layers.0.mlp.experts.1.gate_proj.lora_A.weight".into()
        )
    );
    assert!(keys.contains(
        &"base_model.model.model.layers.0.mlp.shared_experts.down_proj.lora_A.weight".into()
    ));
}

/// Rewrites `dir`'s weights file with `edit` applied to its tensors.
fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) {
    let p = dir.join("adapter_model.safetensors");
    let mut t: Vec<_> = hf::read_safetensors(&p)
        .unwrap()
        .into_iter()
        .map(|(k, (s, v))| (k, s, v))
        .collect();
    edit(&mut t);
    write_weights(&p, &t, safetensors::Dtype::F32);
}

fn write_weights(p: &Path, t: &[(String, Vec<usize>, Vec<f32>)], dtype: safetensors::Dtype) {
    let bytes: Vec<Vec<u8>> = t
        .iter()
        .map(|(_, _, v)| match dtype {
            safetensors::Dtype::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            safetensors::Dtype::BF16 => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = t
        .iter()
        .zip(&bytes)
        .map(|((k, s, _), b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, p).unwrap();
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("adapter_config.json");
    let mut v = read_json(&p);
    edit(&mut v);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn load_errors_name_the_key() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(13);
    let base = dense().init(&device);
    let cfg = LoraConfig {
        target_modules: vec!["q_proj".into(), "v_proj".into()],
        ..all_targets(4)
    };
    let adapted = random_b(lora::apply_lora(base.clone(), &cfg));
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        peft::save_adapter(&adapted, &cfg, "b", dir.path()).unwrap();
        dir
    };
    let err = |dir: &tempfile::TempDir| {
        let e = peft::load_adapter(base.clone(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        e
    };
    let q0 = "base_model.model.model.layers.0.self_attn.q_proj";

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.push((
            format!("{q0}.lora_magnitude_vector"),
            vec![32],
            vec![1.0; 32],
        ))
    });
    let e = err(&d);
    assert!(
        e.contains("lora_magnitude_vector") && e.contains("not a LoRA weight"),
        "{e}"
    );

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.push((
            "base_model.model.lm_head.lora_A.weight".into(),
            vec![4, 32],
            vec![0.0; 128],
        ))
    });
    let e = err(&d);
    assert!(
        e.contains("`base_model.model.lm_head.lora_A.weight`") && e.contains("lm_head"),
        "{e}"
    );

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.push((
            "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight".into(),
            vec![4, 32],
            vec![0.0; 128],
        ))
    });
    let e = err(&d);
    assert!(
        e.contains("k_proj.lora_A.weight") && e.contains("target_modules"),
        "{e}"
    );

    let d = fresh();
    edit_weights(d.path(), |t| {
        let b = t
            .iter_mut()
            .find(|x| x.0 == format!("{q0}.lora_B.weight"))
            .unwrap();
        b.1 = vec![16, 8];
    });
    let e = err(&d);
    assert!(
        e.contains(&format!("`{q0}.lora_B.weight` has shape [16, 8]")),
        "{e}"
    );
    assert!(e.contains("[32, 4]"), "{e}");

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.retain(|x| x.0 != format!("{q0}.lora_B.weight"))
    });
    let e = err(&d);
    assert!(
        e.contains(&format!("`{q0}.lora_B.weight` is missing")),
        "{e}"
    );

    let d = fresh();
    edit_weights(d.path(), |t| {
        t.retain(|x| !x.0.contains("layers.1.self_attn.v_proj"))
    });
    let e = err(&d);
    assert!(
        e.contains("layers.1.self_attn.v_proj.lora_A.weight` is missing"),
        "{e}"
    );

    for (key, value, says) in [
        ("use_dora", serde_json::json!(true), "DoRA"),
        ("bias", serde_json::json!("all"), "none"),
        (
            "modules_to_save",
            serde_json::json!(["lm_head"]),
            "extra modules",
        ),
        ("rank_pattern", serde_json::json!({"q_proj": 8}), "ranks"),
        ("layers_to_transform", serde_json::json!([0]), "layers"),
        ("fan_in_fan_out", serde_json::json!(true), "fan_in"),
        (
            "init_lora_weights",
            serde_json::json!("pissa"),
            "modified base",
        ),
        ("peft_type", serde_json::json!("IA3"), "LORA"),
    ] {
        let d = fresh();
        edit_config(d.path(), |v| v[key] = value);
        let e = err(&d);
        assert!(
            e.contains(&format!("`{key}`")) && e.contains(says),
            "{key}: {e}"
        );
    }

    let d = fresh();
    std::fs::rename(
        d.path().join("adapter_model.safetensors"),
        d.path().join("adapter_model.bin"),
    )
    .unwrap();
    let e = err(&d);
    assert!(
        e.contains("adapter_model.bin") && e.contains("safetensors"),
        "{e}"
    );

    let e = peft::load_adapter(base.clone(), Path::new("/nonexistent/adapter")).unwrap_err();
    assert!(e.to_string().contains("adapter_config.json"), "{e}");

    // Another base: the fingerprint says so.
    let d = fresh();
    device.seed(99);
    let other = dense().init(&device);
    let e = peft::check_base(&other, d.path()).unwrap_err().to_string();
    assert!(e.contains("another base"), "{e}");
}

#[test]
fn a_peft_written_adapter_loads() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(14);
    let base = mixtral().init(&device);
    let cfg = LoraConfig {
        r: 2,
        alpha: 16.0,
        target_modules: vec!["v_proj".into(), "up_proj".into()],
        ..Default::default()
    };
    let adapted = random_b(lora::apply_lora(base.clone(), &cfg));
    let want = logits(&adapted);
    for (dtype, tol) in [
        (safetensors::Dtype::F32, 0.0),
        (safetensors::Dtype::F16, 1e-2),
        (safetensors::Dtype::BF16, 3e-2),
    ] {
        let dir = tempfile::tempdir().unwrap();
        peft::save_adapter(&adapted, &cfg, "b", dir.path()).unwrap();
        // What PEFT itself writes: newer keys, a target list in any order, no anvil_base.json.
        std::fs::remove_file(dir.path().join("anvil_base.json")).unwrap();
        edit_config(dir.path(), |v| {
            v["target_modules"] = serde_json::json!(["w3", "v_proj"]);
            v["lora_alpha"] = serde_json::json!(16);
            v["layer_replication"] = serde_json::Value::Null;
            v["exclude_modules"] = serde_json::Value::Null;
            v["lora_bias"] = serde_json::json!(false);
            v["eva_config"] = serde_json::Value::Null;
            v["corda_config"] = serde_json::Value::Null;
            v["trainable_token_indices"] = serde_json::Value::Null;
            v["runtime_config"] = serde_json::json!({"ephemeral_gpu_offload": false});
            v["peft_version"] = serde_json::json!("0.17.1");
        });
        let p = dir.path().join("adapter_model.safetensors");
        let t: Vec<_> = hf::read_safetensors(&p)
            .unwrap()
            .into_iter()
            .map(|(k, (s, v))| (k, s, v))
            .collect();
        write_weights(&p, &t, dtype);
        let (loaded, got) = peft::load_adapter(base.clone(), dir.path()).unwrap();
        assert_eq!(got.target_modules, ["v_proj", "up_proj"]);
        assert_eq!((got.r, got.alpha), (2, 16.0));
        assert!(!peft::check_base(&base, dir.path()).unwrap());
        let diff = max_rel(&logits(&loaded), &want);
        assert!(diff <= tol, "{dtype:?}: {diff}");
        // A regular expression (or "all-linear") is not evaluated: the weights decide.
        edit_config(dir.path(), |v| {
            v["target_modules"] = serde_json::json!(".*(v_proj|w3)$")
        });
        let (_, got) = peft::load_adapter(base.clone(), dir.path()).unwrap();
        assert_eq!(got.target_modules, ["v_proj", "up_proj"]);
    }
}

#[test]
fn fingerprint_covers_the_base_weights_only() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(15);
    let base = dense().init(&device);
    let fp = peft::base_fingerprint(&base);
    assert!(fp.starts_with("xxh3-128:") && fp.len() == 9 + 32, "{fp}");
    assert_eq!(fp, peft::base_fingerprint(&base.clone()));
    let adapted = random_b(lora::apply_lora(base.clone(), &all_targets(2)));
    assert_eq!(fp, peft::base_fingerprint(&adapted));
    assert_ne!(fp, peft::base_fingerprint(&lora::merge(adapted)));
    let mut changed = base.clone();
    let w = changed.model.norm.weight.val();
    let mut v = w.clone().into_data().try_into_vec::<f32>().unwrap();
    v[3] += 1e-6;
    changed.model.norm.weight = Param::from_data(TensorData::new(v, [32]), &device);
    assert_ne!(fp, peft::base_fingerprint(&changed));

    // Its cost on the quickstart's model (5.3M parameters).
    let quickstart = LlamaConfig {
        vocab_size: 8192,
        d_model: 256,
        n_layers: 4,
        n_heads: 4,
        max_seq_len: 256,
        tie_embeddings: true,
        ..Default::default()
    };
    let m = quickstart.init(&device);
    let _ = peft::base_fingerprint(&m);
    let t = std::time::Instant::now();
    let _ = peft::base_fingerprint(&m);
    println!(
        "fingerprint of {} parameters: {:?}",
        quickstart.parameter_count(),
        t.elapsed()
    );
}
