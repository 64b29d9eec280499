//! Per-token log-probabilities and entropies (what GRPO and DPO build their losses from) with
//! the fused kernels and with Burn's composed ops, against a brute-force log-softmax of the
//! model's own logits; their gradients for a tied and an untied head and for a LoRA model; and
//! `lora::without_adapters` giving the base model's outputs. The tests switch the kernels for
//! the whole process and draw from the device RNG, so each holds one lock.

mod support;

use anvil_models::lora::{self, LoraConfig};
use anvil_models::quant::GgmlType;
use anvil_models::{CausalLm, Llama, LlamaConfig, TokenBatch, TokenLogprobs, fused};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use support::{bits, dense, random_b};

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const ROWS: usize = 3;
const SEQ: usize = 12;

fn ids(vocab: usize) -> Vec<u32> {
    (0..ROWS * SEQ).map(|i| (i * 17 % vocab) as u32).collect()
}

/// SFT-style rows: a prompt that is context, then the predicted completion.
fn masked_batch(vocab: usize) -> TokenBatch {
    TokenBatch {
        input_ids: ids(vocab),
        segment_ids: None,
        loss_mask: Some((0..ROWS * SEQ).map(|i| i % SEQ >= 2 + i / SEQ).collect()),
        batch: ROWS,
        seq_len: SEQ,
        tree: None,
        position_targets: None,
    }
}

/// Packed rows: documents of five tokens, the last row ending in padding.
fn packed_batch(vocab: usize) -> TokenBatch {
    let segment_ids = (0..ROWS * SEQ)
        .map(|i| {
            let (r, p) = (i / SEQ, i % SEQ);
            if r == ROWS - 1 && p >= 9 {
                0
            } else {
                1 + (p / 5) as u16
            }
        })
        .collect();
    TokenBatch {
        segment_ids: Some(segment_ids),
        loss_mask: None,
        ..masked_batch(vocab)
    }
}

fn config(tied: bool) -> LlamaConfig {
    LlamaConfig {
        tie_embeddings: tied,
        ..dense()
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

/// Per position, `(log p(target), entropy)` of `softmax(logits / temperature)` in f64 from the
/// model's logits, `(0, 0)` where there is no target.
fn brute_force(model: &Llama, batch: &TokenBatch, temperature: f64) -> Vec<(f64, f64)> {
    assert!(batch.segment_ids.is_none(), "logits see no documents");
    let (targets, weights, _) = batch.targets();
    let logits = values(model.logits(&batch.input_ids, batch.batch, 0, None));
    let vocab = logits.len() / (batch.batch * batch.seq_len);
    (0..batch.batch * batch.seq_len)
        .map(|i| {
            if weights[i] == 0.0 {
                return (0.0, 0.0);
            }
            let row: Vec<f64> = logits[i * vocab..(i + 1) * vocab]
                .iter()
                .map(|&x| x as f64 / temperature)
                .collect();
            let max = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            let entropy = -row.iter().map(|x| (x - lse).exp() * (x - lse)).sum::<f64>();
            (row[targets[i] as usize] - lse, entropy)
        })
        .collect()
}

/// Signed, uneven per-token coefficients: a GRPO loss weighs tokens by their advantages.
fn coefficients(device: &Device) -> Tensor<2> {
    let c: Vec<f32> = (0..ROWS * SEQ)
        .map(|i| ((i * 7919 % 23) as f32 - 11.0) / 7.0)
        .collect();
    Tensor::from_data(TensorData::new(c, [ROWS, SEQ]), device)
}

/// Every parameter's gradient by path (`None` where it has none).
struct Grads<'a>(&'a Gradients, Vec<String>, Vec<(String, Option<Vec<f32>>)>);

impl ModuleVisitor for Grads<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.1.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.1.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let g = p.val().grad(self.0).map(values);
        self.2.push((self.1.join("."), g));
    }
}

struct Run {
    logprobs: Vec<f32>,
    entropy: Vec<f32>,
    grads: Vec<(String, Option<Vec<f32>>)>,
}

/// `model.token_logprobs` of `batch`, and the gradients of `Σ c_i · logp_i`.
fn run(model: &Llama, batch: &TokenBatch, temperature: f32, fused_on: bool) -> Run {
    fused::set_enabled(fused_on);
    let TokenLogprobs { logprobs, entropy } =
        CausalLm::token_logprobs(model, batch, temperature, true);
    assert_eq!(logprobs.dims(), [batch.batch, batch.seq_len]);
    let entropy = entropy.expect("asked for");
    assert_eq!(entropy.len(), batch.batch * batch.seq_len);
    let objective = (logprobs.clone() * coefficients(&model.device())).sum();
    let grads = objective.backward();
    let mut g = Grads(&grads, Vec::new(), Vec::new());
    model.visit(&mut g);
    Run {
        logprobs: values(logprobs),
        entropy,
        grads: g.2,
    }
}

fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        diff <= tol * scale,
        "{what}: differs by {diff:e} (scale {scale:e})"
    );
}

fn assert_same_grads(what: &str, a: &Run, b: &Run) {
    assert_eq!(a.grads.len(), b.grads.len());
    for ((path, ga), (_, gb)) in a.grads.iter().zip(&b.grads) {
        match (ga, gb) {
            (Some(ga), Some(gb)) => assert_close(&format!("{what}: d {path}"), ga, gb, 2e-4),
            (None, None) => {}
            _ => panic!("{what}: {path} has a gradient on one path only"),
        }
    }
}

#[test]
fn fused_and_composed_token_logprobs_match_a_brute_force_log_softmax() {
    let _lock = lock();
    for tied in [false, true] {
        let cfg = config(tied);
        let device = Device::flex().autodiff();
        device.seed(11);
        let model = cfg.init(&device);
        for temperature in [1.0f32, 0.5] {
            let what = format!("tied {tied}, T {temperature}");
            for batch in [masked_batch(cfg.vocab_size), packed_batch(cfg.vocab_size)] {
                let fused_run = run(&model, &batch, temperature, true);
                let composed = run(&model, &batch, temperature, false);
                assert_close(
                    &format!("{what}: logprobs"),
                    &fused_run.logprobs,
                    &composed.logprobs,
                    1e-5,
                );
                assert_close(
                    &format!("{what}: entropy"),
                    &fused_run.entropy,
                    &composed.entropy,
                    1e-5,
                );
                assert_same_grads(&what, &fused_run, &composed);
                // Every parameter takes part: the head, tied or not, included.
                assert!(
                    fused_run.grads.iter().all(|(_, g)| g.is_some()),
                    "{what}: a parameter without gradient"
                );

                let (_, weights, _) = batch.targets();
                for (i, &w) in weights.iter().enumerate() {
                    if w == 0.0 {
                        assert_eq!(fused_run.logprobs[i], 0.0, "{what}: no target at {i}");
                        assert_eq!(fused_run.entropy[i], 0.0, "{what}: no target at {i}");
                        assert_eq!(composed.logprobs[i], 0.0, "{what}: no target at {i}");
                        assert_eq!(composed.entropy[i], 0.0, "{what}: no target at {i}");
                    }
                }
                if batch.segment_ids.is_some() {
                    continue;
                }
                for fused_on in [true, false] {
                    fused::set_enabled(fused_on);
                    let want = brute_force(&model, &batch, temperature as f64);
                    let r = if fused_on { &fused_run } else { &composed };
                    for (i, &(lp, h)) in want.iter().enumerate() {
                        let (glp, gh) = (r.logprobs[i] as f64, r.entropy[i] as f64);
                        assert!(
                            (glp - lp).abs() < 1e-4 * lp.abs().max(1.0),
                            "{what}, fused {fused_on}: logp at {i} {glp} vs {lp}"
                        );
                        assert!(
                            (gh - h).abs() < 1e-4 * h.abs().max(1.0),
                            "{what}, fused {fused_on}: entropy at {i} {gh} vs {h}"
                        );
                    }
                }
            }
        }
        // The per-sequence sums are the row sums of the per-token values at temperature 1.
        for fused_on in [true, false] {
            fused::set_enabled(fused_on);
            let batch = packed_batch(cfg.vocab_size);
            let seq = values(CausalLm::sequence_logprobs(&model, &batch));
            let tokens = CausalLm::token_logprobs(&model, &batch, 1.0, false);
            assert!(tokens.entropy.is_none());
            let sums = values(tokens.logprobs.sum_dim(1).reshape([ROWS]));
            assert_eq!(bits(&seq), bits(&sums), "tied {tied}, fused {fused_on}");
        }
    }
    fused::set_enabled(true);
}

/// A LoRA model's head and base are frozen: the adapters get the gradients, the same on both
/// paths, and nothing else gets one.
#[test]
fn a_lora_model_gets_adapter_gradients_only() {
    let _lock = lock();
    for tied in [false, true] {
        let device = Device::flex().autodiff();
        device.seed(12);
        let cfg = LoraConfig {
            r: 4,
            alpha: 8.0,
            target_modules: lora::TARGETS.map(String::from).to_vec(),
            ..Default::default()
        };
        let model = random_b(lora::apply_lora(config(tied).init(&device), &cfg));
        let batch = masked_batch(model.config.vocab_size);
        let fused_run = run(&model, &batch, 0.7, true);
        let composed = run(&model, &batch, 0.7, false);
        assert_close(
            "lora logprobs",
            &fused_run.logprobs,
            &composed.logprobs,
            1e-5,
        );
        assert_same_grads(&format!("lora, tied {tied}"), &fused_run, &composed);
        for (path, g) in &fused_run.grads {
            assert_eq!(
                g.is_some(),
                lora::is_adapter_path(path),
                "tied {tied}: gradient of {path}"
            );
            if let Some(g) = g {
                assert!(g.iter().any(|&v| v != 0.0), "{path}: zero gradient");
            }
        }
    }
    fused::set_enabled(true);
}

fn adapted(device: &Device) -> Llama {
    device.seed(13);
    let cfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        target_modules: lora::TARGETS.map(String::from).to_vec(),
        ..Default::default()
    };
    random_b(lora::apply_lora(dense().init(device), &cfg))
}

fn logits(model: &Llama, batch: &TokenBatch) -> Vec<u32> {
    bits(&values(model.logits(
        &batch.input_ids,
        batch.batch,
        0,
        None,
    )))
}

fn token_bits(model: &Llama, batch: &TokenBatch) -> (Vec<u32>, Vec<u32>) {
    let out = model.token_logprobs(batch, 0.8, true);
    (
        bits(&values(out.logprobs)),
        bits(&out.entropy.expect("asked for")),
    )
}

/// Under `without_adapters` the adapted model is its base, bit for bit, on both paths and with
/// a quantized base; outside it (after a panic too) the adapters are back.
#[test]
fn without_adapters_gives_the_base_model() {
    let _lock = lock();
    for fused_on in [true, false] {
        fused::set_enabled(fused_on);
        for device in [Device::flex(), Device::flex().autodiff()] {
            let plain = adapted(&device);
            let (quantized, n) = lora::quantize_base(plain.clone(), GgmlType::Q8_0);
            assert!(n > 0);
            for (name, model) in [("f32", plain), ("q8_0", quantized)] {
                let what = format!("{name}, fused {fused_on}");
                let batch = packed_batch(model.config.vocab_size);
                let base = lora::remove_adapters(model.clone());
                let with = (logits(&model, &batch), token_bits(&model, &batch));
                let want = (logits(&base, &batch), token_bits(&base, &batch));
                let off = lora::without_adapters(|| {
                    // Nested: the inner scope's exit leaves the outer one's adapters off.
                    lora::without_adapters(|| ());
                    (logits(&model, &batch), token_bits(&model, &batch))
                });
                assert_eq!(off, want, "{what}: adapters switched off");
                assert_ne!(with.0, want.0, "{what}: the adapters change the logits");
                assert_ne!(with.1, want.1, "{what}: and the log-probabilities");

                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    lora::without_adapters(|| panic!("inside"))
                }));
                assert!(caught.is_err());
                let again = (logits(&model, &batch), token_bits(&model, &batch));
                assert_eq!(again, with, "{what}: adapters back after a panic");
            }
        }
    }
    fused::set_enabled(true);
}

#[test]
#[should_panic(expected = "temperature must be positive")]
fn a_zero_temperature_is_refused() {
    let _lock = lock();
    let device = Device::flex();
    device.seed(14);
    let model = dense().init(&device);
    let batch = masked_batch(model.config.vocab_size);
    let _ = model.token_logprobs(&batch, 0.0, false);
}
