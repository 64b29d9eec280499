//! The diffusion denoiser: its loss is the ELBO-weighted cross-entropy of the masked positions
//! only (checked against the logits by hand), it attends both ways (a later token changes an
//! earlier position's prediction, which a decoder's never does), documents of a packed row stay
//! apart, and it saves and loads tagged `diffusion`.

use anvil_models::diffusion::{DiffusionConfig, noise_batch};
use anvil_models::{Arch, CausalLm, LlamaConfig, TokenBatch};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor};

const MASK: u32 = 2;

fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 50,
        d_model: 16,
        n_layers: 2,
        n_heads: 2,
        max_seq_len: 32,
        diffusion: Some(DiffusionConfig::default()),
        ..LlamaConfig::default()
    }
}

fn rows(batch: usize, seq: usize, segments: bool) -> TokenBatch {
    TokenBatch {
        input_ids: (0..batch * seq).map(|i| 7 + (i * 13 % 40) as u32).collect(),
        segment_ids: segments.then(|| {
            (0..batch * seq)
                .map(|i| 1 + (i % seq >= 9) as u16)
                .collect()
        }),
        batch,
        seq_len: seq,
        ..TokenBatch::default()
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn the_loss_is_the_weighted_cross_entropy_of_masked_positions_only() {
    let device = Device::flex();
    let model = config().init(&device);
    let (batch, seq, vocab) = (3, 16, 50);
    let nb = noise_batch(
        &rows(batch, seq, false),
        &DiffusionConfig::default(),
        MASK,
        11,
    );
    let pt = nb.position_targets.as_ref().unwrap();
    assert!(pt.targets.iter().any(|&t| t >= 0), "nothing masked");
    let out = model.loss(&nb);
    assert_eq!(
        out.n_targets,
        batch * seq,
        "normalized by every (maskable) token"
    );
    let logp = host(log_softmax(model.logits(&nb.input_ids, batch, 0, None), 2));
    let mut want = 0f64;
    for i in 0..batch * seq {
        if pt.targets[i] >= 0 {
            want -= pt.weights[i] as f64 * logp[i * vocab + pt.targets[i] as usize] as f64;
        }
    }
    let got = host(out.nll_sum)[0] as f64;
    assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
}

#[test]
fn it_attends_both_ways_within_documents_only() {
    let device = Device::flex();
    let model = config().init(&device);
    let seq = 16;
    // Two documents in one row: 0..9 and 9..16.
    let base = rows(1, seq, true);
    let logits = |ids: &[u32]| {
        let h = model.hidden(
            ids,
            1,
            0,
            base.segment_ids.as_deref(),
            None,
            &mut Vec::new(),
        );
        host(h)
    };
    let before = logits(&base.input_ids);
    // Change the last token of the first document: position 0 (before it) moves, the second
    // document does not.
    let mut ids = base.input_ids.clone();
    ids[8] = 45;
    let after = logits(&ids);
    let d = 16;
    let diff = |p: usize| {
        (0..d)
            .map(|j| (before[p * d + j] - after[p * d + j]).abs())
            .fold(0f32, f32::max)
    };
    assert!(
        diff(0) > 1e-4,
        "an earlier position did not see a later token"
    );
    for p in 9..seq {
        assert_eq!(diff(p), 0.0, "position {p} of the other document moved");
    }
}

#[test]
fn a_denoiser_saves_tagged_and_loads_back() {
    let device = Device::flex();
    let model = config().init(&device);
    assert_eq!(model.arch(), Arch::Diffusion);
    let dir = tempfile::tempdir().unwrap();
    anvil_models::store::save(&model, dir.path()).unwrap();
    let json = std::fs::read_to_string(dir.path().join("model.json")).unwrap();
    assert!(json.contains("\"arch\": \"diffusion\""), "{json}");
    let c = anvil_models::store::read_config(dir.path()).unwrap();
    assert_eq!(c.diffusion, Some(DiffusionConfig::default()));
    // HF and GGUF have no such architecture: refused in one line.
    let e = anvil_models::hf::hf_config(&c).unwrap_err().to_string();
    assert!(e.contains("no `diffusion` architecture"), "{e}");
}
