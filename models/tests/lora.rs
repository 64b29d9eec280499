//! LoRA on the Llama (dense and mixture of experts): PEFT's init and scaling, the adapted model
//! starting as its base, merged and unmerged models agreeing, freezing (only adapters get
//! gradients), dropout, and how checkpoints and exports treat adapters. PEFT's file format is
//! tests/peft.rs; the fused-vs-composed checks switch the kernels for the whole process, so they
//! live in tests/lora_composed.rs.

mod support;

use anvil_models::lora::{self, LoraConfig};
use anvil_models::{Llama, gguf, hf, store, store_quant};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use support::*;

#[test]
fn config_defaults_validation_and_scaling() {
    let _rng = rng();
    let d = LoraConfig::default();
    assert_eq!(
        (d.r, d.alpha, d.dropout, d.use_rslora),
        (8, 8.0, 0.0, false)
    );
    assert_eq!(d.target_modules, ["q_proj", "k_proj", "v_proj", "o_proj"]);
    assert_eq!(d.bias, "none");
    assert!(d.validate().is_ok());
    let parsed: LoraConfig =
        serde_json::from_str(r#"{"r": 16, "lora_alpha": 32, "target_modules": ["up_proj"]}"#)
            .unwrap();
    assert_eq!((parsed.r, parsed.alpha), (16, 32.0));
    assert!(serde_json::from_str::<LoraConfig>(r#"{"rank": 4}"#).is_err());
    let key = |c: LoraConfig| c.validate().unwrap_err().0;
    assert_eq!(key(LoraConfig { r: 0, ..d.clone() }), "r");
    assert_eq!(
        key(LoraConfig {
            alpha: -1.0,
            ..d.clone()
        }),
        "alpha"
    );
    assert_eq!(
        key(LoraConfig {
            dropout: 1.0,
            ..d.clone()
        }),
        "dropout"
    );
    assert_eq!(
        key(LoraConfig {
            bias: "all".into(),
            ..d.clone()
        }),
        "bias"
    );
    let lm_head = LoraConfig {
        target_modules: vec!["lm_head".into()],
        ..d.clone()
    };
    assert_eq!(key(lm_head), "target_modules");
    let q = LoraConfig {
        base_quant: Some("nf4".into()),
        ..d.clone()
    };
    let (k, m) = q.validate().unwrap_err();
    assert_eq!(k, "base_quant");
    assert!(m.contains("q8_0 or q4_0"), "{m}");
    for ok in ["q8_0", "Q4_0"] {
        let q = LoraConfig {
            base_quant: Some(ok.into()),
            ..d.clone()
        };
        assert!(q.validate().is_ok(), "{ok}");
    }

    let c = LoraConfig {
        r: 16,
        alpha: 32.0,
        ..d.clone()
    };
    assert_eq!(c.scaling(), 2.0);
    let rs = LoraConfig {
        use_rslora: true,
        ..c
    };
    assert_eq!(rs.scaling(), 32.0 / 4.0);
}

#[test]
fn init_is_peft_kaiming_uniform_with_zero_b() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(5);
    let cfg = all_targets(4);
    let model = lora::apply_lora(dense().init(&device), &cfg);
    let mut m = model.clone();
    let mut seen = 0;
    lora::for_each_projection(&mut m, |path, _, l| {
        let a = l
            .lora
            .as_ref()
            .unwrap_or_else(|| panic!("{path} has no adapter"));
        let [d_in, d_out] = l.dims();
        assert_eq!(a.lora_a.dims(), [d_in, 4]);
        assert_eq!(a.lora_b.dims(), [4, d_out]);
        assert_eq!(a.scaling, 4.0);
        let bound = 1.0 / (d_in as f32).sqrt();
        let av = values(a.lora_a.val());
        assert!(
            av.iter().all(|x| x.abs() <= bound),
            "{path}: A outside ±1/√in"
        );
        // Uniform, not concentrated: the extremes come near the bound.
        let max = av.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(max > 0.8 * bound, "{path}: max |A| {max} of bound {bound}");
        assert!(values(a.lora_b.val()).iter().all(|&x| x == 0.0));
        seen += 1;
    });
    assert_eq!(seen, 2 * 7);
    assert_eq!(lora::adapter_parameter_count(&model), {
        let d = 32;
        let (kv, ff) = (16, dense().ff_dim());
        2 * 4 * ((d + d) + (d + kv) * 2 + (d + d) + 2 * (d + ff) + (ff + d))
    });
    // Seeded: the same draws again.
    device.seed(5);
    let again = lora::apply_lora(dense().init(&device), &cfg);
    let a0 = |m: &Llama| {
        values(
            m.model.layers[1]
                .self_attn
                .v_proj
                .lora
                .as_ref()
                .unwrap()
                .lora_a
                .val(),
        )
    };
    assert_eq!(bits(&a0(&model)), bits(&a0(&again)));
}

#[test]
fn the_config_counts_the_adapters_it_attaches() {
    let device = Device::flex();
    for (c, targets) in [
        (dense(), vec!["q_proj", "v_proj", "down_proj"]),
        (mixtral(), lora::TARGETS.to_vec()),
        (shared_experts(), vec!["k_proj", "up_proj"]),
    ] {
        let cfg = LoraConfig {
            r: 3,
            target_modules: targets.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        let model = lora::apply_lora(c.init(&device), &cfg);
        assert_eq!(
            cfg.parameter_count(&c),
            lora::adapter_parameter_count(&model) as u128,
            "{targets:?}"
        );
    }
}

#[test]
fn a_seeded_base_is_the_same_with_or_without_adapters() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(11);
    let plain = logits(&dense().init(&device));
    device.seed(11);
    let adapted = lora::apply_lora(dense().init(&device), &all_targets(4));
    assert_eq!(bits(&plain), bits(&logits(&adapted)));
}

#[test]
fn zero_b_leaves_the_logits_bit_identical() {
    let _rng = rng();
    let device = Device::flex();
    for config in [dense(), mixtral(), shared_experts()] {
        device.seed(1);
        let base = config.init(&device);
        let before = logits(&base);
        let adapted = lora::apply_lora(base, &all_targets(8));
        assert!(lora::has_adapters(&adapted));
        assert_eq!(bits(&before), bits(&logits(&adapted)));
    }
}

#[test]
fn unmerged_and_merged_models_agree() {
    let _rng = rng();
    let device = Device::flex();
    for (config, cfg) in [
        (dense(), all_targets(4)),
        (mixtral(), all_targets(8)),
        (
            shared_experts(),
            LoraConfig {
                use_rslora: true,
                ..all_targets(2)
            },
        ),
    ] {
        device.seed(2);
        let base = config.init(&device);
        let before = logits(&base);
        let adapted = random_b(lora::apply_lora(base, &cfg));
        let unmerged = logits(&adapted);
        assert!(
            max_rel(&unmerged, &before) > 1e-3,
            "the adapters change nothing"
        );
        let merged = lora::merge(adapted);
        assert!(!lora::has_adapters(&merged));
        let diff = max_rel(&logits(&merged), &unmerged);
        assert!(diff <= 1e-5, "merged vs unmerged: {diff}");
    }
}

#[test]
fn only_adapters_get_gradients() {
    let _rng = rng();
    let device = Device::flex().autodiff();
    device.seed(3);
    for config in [dense(), mixtral()] {
        let cfg = LoraConfig {
            target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
            ..all_targets(4)
        };
        let model = random_b(lora::apply_lora(config.init(&device), &cfg));
        let flags = grad_flags(&model);
        assert!(
            flags
                .iter()
                .any(|(p, _)| p == "model.layers.0.self_attn.q_proj.lora.lora_a")
        );
        for (p, rg) in &flags {
            assert_eq!(*rg, lora::is_adapter_path(p), "{p}");
        }
        let out = model.loss(&batch());
        let mut loss = out.nll_sum;
        if let Some(aux) = out.aux_loss {
            loss = loss + aux;
        }
        let grads = loss.backward();
        struct G<'a>(
            &'a burn::tensor::Gradients,
            Vec<String>,
            Vec<(String, bool)>,
        );
        impl ModuleVisitor for G<'_> {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.1.push(name.into());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.1.pop();
            }
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                self.2
                    .push((self.1.join("."), p.val().grad(self.0).is_some()));
            }
        }
        let mut g = G(&grads, Vec::new(), Vec::new());
        model.visit(&mut g);
        let adapters = g.2.iter().filter(|(p, _)| lora::is_adapter_path(p)).count();
        assert_eq!(
            adapters,
            2 * 2 * if config.moe.is_some() { 3 + 2 } else { 3 }
        );
        for (p, has) in &g.2 {
            // An expert no token was routed to takes no part in the graph.
            let may_idle = p.contains(".experts.");
            assert!(
                *has == lora::is_adapter_path(p) || (may_idle && !has),
                "gradient of {p}: {has}"
            );
        }
        if config.moe.is_some() {
            assert!(g.2.iter().any(|(p, has)| *has && p.contains(".experts.")));
        }
    }
}

/// Whether every float parameter lives on the autodiff device.
fn all_autodiff(model: &Llama) -> bool {
    struct V(bool);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0 &= p.val().is_autodiff();
        }
    }
    let mut v = V(true);
    model.visit(&mut v);
    v.0
}

fn assert_split(model: &Llama, when: &str) {
    for (p, rg) in grad_flags(model) {
        assert_eq!(rg, lora::is_adapter_path(&p), "{p} {when}");
    }
}

#[test]
fn freezing_survives_train_and_valid_but_not_trainable() {
    let _rng = rng();
    let device = Device::flex();
    let train = device.clone().autodiff();
    device.seed(4);
    let model = lora::apply_lora(dense().init(&device), &all_targets(2));
    assert!(!model.device().is_autodiff());
    // Built off the autodiff device, nothing requires a gradient yet, but the settings are kept:
    // `train` moves the model onto autodiff with them.
    let trained = model.clone().train();
    assert!(all_autodiff(&trained));
    assert_split(&trained, "after train()");
    // `fork` keeps each tensor's own autodiff context in Burn 0.22: alone it moves nothing.
    assert!(!model.clone().fork(&train).device().is_autodiff());
    let valid = trained.clone().valid();
    assert!(!valid.device().is_autodiff());
    assert!(grad_flags(&valid).iter().all(|(_, rg)| !rg));
    assert_split(&valid.train(), "after valid().train()");
    // `trainable` turns everything on again; freezing again restores the split.
    let all = anvil_models::trainable(trained);
    assert!(grad_flags(&all).iter().all(|(_, rg)| *rg));
    assert_split(&lora::freeze_base(all), "after freeze_base");

    // The trainer's flow for pretrained weights (loaded for inference, then `trainable` after
    // `fork`, which is what puts the tensors on autodiff), with the adapters attached last.
    let dir = tempfile::tempdir().unwrap();
    store::save(&dense().init(&device), dir.path()).unwrap();
    let loaded = store::load(dir.path(), &device).unwrap();
    let ready = lora::apply_lora(
        anvil_models::trainable(loaded.fork(&train)),
        &all_targets(2),
    );
    assert!(all_autodiff(&ready));
    assert_split(&ready, "in the init_from flow");
    let grads = random_b(ready.clone()).loss(&batch()).nll_sum.backward();
    let base_grad = ready.model.layers[0]
        .self_attn
        .q_proj
        .weight
        .val()
        .grad(&grads);
    assert!(base_grad.is_none());
}

#[test]
fn dropout_is_seeded_and_training_only() {
    let _rng = rng();
    let cfg = LoraConfig {
        dropout: 0.5,
        ..all_targets(4)
    };
    let train = Device::flex().autodiff();
    train.seed(6);
    let model = random_b(lora::apply_lora(dense().init(&train), &cfg));
    let run = |seed: u64| {
        train.seed(seed);
        logits(&model)
    };
    let (a, b, c) = (run(9), run(9), run(10));
    assert_eq!(bits(&a), bits(&b), "same seed, same masks");
    assert_ne!(bits(&a), bits(&c), "another seed, other masks");
    // Off the autodiff device (inference, validation) there is no dropout.
    let no_dropout = LoraConfig {
        dropout: 0.0,
        ..cfg
    };
    let mut plain = model.valid();
    lora::for_each_projection(&mut plain, |_, _, l| {
        if let Some(a) = &mut l.lora {
            assert_eq!(a.dropout, 0.5);
            a.dropout = no_dropout.dropout;
        }
    });
    assert_eq!(bits(&logits(&model.valid())), bits(&logits(&plain)));
}

#[test]
fn anvil_checkpoints_keep_paths_and_carry_adapters() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(7);
    let base = dense().init(&device);
    let paths: Vec<String> = hf::parameters(&base).into_iter().map(|p| p.0).collect();
    assert!(paths.contains(&"model.layers.1.self_attn.q_proj.weight".to_string()));
    assert!(paths.contains(&"model.layers.1.mlp.down_proj.weight".to_string()));
    assert!(paths.iter().all(|p| !lora::is_adapter_path(p)));

    // A plain checkpoint loads into a model that then takes adapters.
    let dir = tempfile::tempdir().unwrap();
    store::save(&base, dir.path()).unwrap();
    let loaded = store::load(dir.path(), &device).unwrap();
    assert_eq!(bits(&logits(&base)), bits(&logits(&loaded)));

    // A checkpoint of an adapted model holds the adapters; loading it needs the same adapters.
    let cfg = all_targets(4);
    let adapted = random_b(lora::apply_lora(base.clone(), &cfg));
    let ckpt = tempfile::tempdir().unwrap();
    store::save(&adapted, ckpt.path()).unwrap();
    let train = device.clone().autodiff();
    let fresh = lora::apply_lora(dense().init(&train), &cfg);
    let resumed = store::load_weights(fresh, ckpt.path()).unwrap();
    for (p, rg) in grad_flags(&resumed) {
        assert_eq!(rg, lora::is_adapter_path(&p), "{p} after loading");
    }
    assert_eq!(bits(&logits(&adapted)), bits(&logits(&resumed.valid())));
    // Loaded into a model without adapters, it is refused rather than silently losing them.
    let plain = store::load_weights(dense().init(&device), ckpt.path());
    println!(
        "plain model, adapted checkpoint: {:?}",
        plain.as_ref().err()
    );
    assert!(
        plain.is_err(),
        "an adapted checkpoint loaded into a plain model"
    );
}

#[test]
fn exports_refuse_attached_adapters() {
    let _rng = rng();
    let device = Device::flex();
    device.seed(8);
    let adapted = random_b(lora::apply_lora(dense().init(&device), &all_targets(2)));
    let dir = tempfile::tempdir().unwrap();
    let e = hf::export(&adapted, &dir.path().join("hf")).unwrap_err();
    assert!(e.to_string().contains("lora::merge"), "{e}");
    let e = gguf::tensors(&adapted, anvil_models::quant::Quant::F16)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("LoRA"), "{e}");
    let q = dir.path().join("q");
    std::fs::create_dir_all(&q).unwrap();
    let e = store_quant::save(&adapted, anvil_models::quant::Quant::Q8_0, &q).unwrap_err();
    assert!(e.to_string().contains("LoRA"), "{e}");
    // Merged, it is a plain model again.
    let merged = lora::merge(adapted.clone());
    hf::export(&merged, &dir.path().join("hf")).unwrap();
    let back = hf::import(&dir.path().join("hf"), &device).unwrap();
    assert!(max_rel(&logits(&back), &logits(&adapted)) <= 1e-5);
}
