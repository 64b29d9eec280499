//! The tree transformer adds to the dense decoder and nothing else: with both mechanisms off it
//! is the dense model; a zero bias changes nothing but the attention path (Burn's instead of the
//! fused kernel); positions and the bias learn (their gradients are not zero); `model.json` is
//! tagged `tree` and reads back.

use anvil_models::tree::{NO_LEVEL, TreeConfig, TreeModule, TreePositions};
use anvil_models::{Llama, LlamaConfig, TokenBatch};
use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};

fn config(tree: Option<TreeConfig>) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 40,
        d_model: 16,
        n_layers: 2,
        n_heads: 2,
        max_seq_len: 32,
        tree,
        ..LlamaConfig::default()
    }
}

fn model(tree: Option<TreeConfig>) -> Llama {
    let device = Device::flex().autodiff();
    device.seed(5);
    config(tree).init(&device)
}

/// `dense` with the tree parts of `tree` added (fresh, as a tree model initializes them): the
/// two share every other weight. (Seeding alone cannot promise that: tests run in parallel on
/// one random generator.)
fn with_tree(dense: &Llama, tree: TreeConfig) -> Llama {
    let mut m = dense.clone();
    let c = &dense.config;
    let mut t = TreeModule::new(&tree, c.n_layers, c.n_heads, c.d_model, &dense.device());
    // Random projection and tables (they start at zero), so every part shows in the loss.
    let random = |shape: [usize; 2]| {
        Param::from_tensor(
            Tensor::random(shape, Distribution::Normal(0.0, 0.1), &dense.device()).require_grad(),
        )
    };
    if let Some(p) = &t.proj {
        t.proj = Some(random(p.val().dims()));
    }
    for table in t.bias.iter_mut() {
        *table = random(table.val().dims());
    }
    m.tree = Some(t);
    m.config.tree = Some(tree);
    m
}

fn batch() -> TokenBatch {
    let (rows, seq, max_path) = (2, 12, 4);
    let mut t = TreePositions {
        max_path,
        ..TreePositions::default()
    };
    for i in 0..rows * seq {
        let depth = (i % 5) as u16;
        t.depth.push(depth);
        for l in 0..max_path {
            t.path.push(if l < depth as usize {
                ((i + l) % 3) as u16
            } else {
                NO_LEVEL
            });
        }
    }
    TokenBatch {
        input_ids: (0..rows * seq).map(|i| (i * 7 % 40) as u32).collect(),
        segment_ids: None,
        loss_mask: None,
        batch: rows,
        seq_len: seq,
        tree: Some(t),
        position_targets: None,
    }
}

fn loss(m: &Llama) -> f32 {
    m.loss(&batch()).nll_sum.into_scalar::<f32>()
}

#[test]
fn with_both_mechanisms_off_it_is_the_dense_model() {
    let off = TreeConfig {
        positions: false,
        bias: vec![false],
        ..TreeConfig::default()
    };
    let dense = model(None);
    let tree = with_tree(&dense, off);
    assert_eq!(loss(&dense).to_bits(), loss(&tree).to_bits());
    // As initialized (zero projection, zero tables), a tree model is the dense one, up to the
    // biased layers' attention path's rounding.
    let mut fresh = dense.clone();
    let c = &dense.config;
    let tree = TreeConfig::default();
    fresh.tree = Some(TreeModule::new(
        &tree,
        c.n_layers,
        c.n_heads,
        c.d_model,
        &dense.device(),
    ));
    fresh.config.tree = Some(tree);
    let (a, b) = (loss(&dense), loss(&fresh));
    assert!((a - b).abs() <= 1e-5 * a.abs(), "{a} vs {b}");
    // ... and starts learning the tree at once: the zero projection has a gradient.
    let grads = fresh.loss(&batch()).nll_sum.backward();
    let proj = fresh.tree.as_ref().unwrap().proj.as_ref().unwrap();
    let g = proj.val().grad(&grads).expect("a gradient");
    assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
}

#[test]
fn positions_and_bias_change_the_loss_and_learn() {
    let dense = model(None);
    let m = with_tree(&dense, TreeConfig::default());
    assert!((loss(&m) - loss(&dense)).abs() > 1e-6);
    let grads = m.loss(&batch()).nll_sum.backward();
    let tree = m.tree.as_ref().unwrap();
    let norm = |g: Option<burn::tensor::Tensor<2>>| {
        g.expect("a gradient").abs().sum().into_scalar::<f32>()
    };
    assert!(norm(tree.proj.as_ref().unwrap().val().grad(&grads)) > 0.0);
    assert_eq!(tree.bias.len(), 2, "one table per layer");
    for table in &tree.bias {
        assert!(norm(table.val().grad(&grads)) > 0.0);
    }
    let decay = tree.decay.as_ref().unwrap().val().grad(&grads).unwrap();
    assert!(decay.abs().sum().into_scalar::<f32>() > 0.0);
}

#[test]
fn a_tree_model_saves_tagged_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(Some(TreeConfig {
        bias: vec![true, false],
        ..TreeConfig::default()
    }));
    anvil_models::store::save(&m, dir.path()).unwrap();
    let json = std::fs::read_to_string(dir.path().join("model.json")).unwrap();
    assert!(json.contains("\"arch\": \"tree\""), "{json}");
    let c = anvil_models::store::read_config(dir.path()).unwrap();
    assert_eq!(c.tree.as_ref().unwrap().bias, vec![true, false]);
    let device = Device::flex().autodiff();
    let back = anvil_models::store::load_weights(c.init(&device), dir.path()).unwrap();
    assert_eq!(loss(&m).to_bits(), loss(&back).to_bits());
    // HF and GGUF have no tree transformer: refused in one line.
    let e = anvil_models::hf::hf_config(&m.config)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no `tree` architecture"), "{e}");
}

/// Decoding with a KV cache (a prompt, then one token at a time, each step given the positions of
/// every key so far) gives the logits of one forward pass over the whole rows, for every
/// position and both rows: the bias of a new token against cached ones and the encoding of the
/// new token alone are what the full computation uses.
#[test]
fn kv_cached_decoding_equals_full_recompute() {
    let tree = TreeConfig {
        max_depth: 3,
        max_width: 3,
        ..TreeConfig::default()
    };
    let m = with_tree(&model(None), tree);
    let b = batch();
    let (rows, seq) = (b.batch, b.seq_len);
    let t = b.tree.as_ref().unwrap();
    let values = |x: Tensor<3>| {
        x.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let h = m.hidden_in_tree(&b.input_ids, rows, 0, None, Some(t), None, &mut Vec::new());
    let full = values(h.matmul(m.head_weight().unsqueeze()));
    let vocab = m.config.vocab_size;
    // The first `n` tokens of each row, as `[rows · n]`.
    let prefix = |v: &[u32], n: usize| -> Vec<u32> {
        (0..rows)
            .flat_map(|r| v[r * seq..r * seq + n].to_vec())
            .collect()
    };
    let keys = |n: usize| {
        let mut k = TreePositions {
            max_path: t.max_path,
            ..TreePositions::default()
        };
        for r in 0..rows {
            let part = t.rows(r * seq..r * seq + n);
            k.depth.extend(part.depth);
            k.path.extend(part.path);
        }
        k
    };
    let mut caches = m.new_caches();
    let prompt = 4;
    let mut got = vec![0f32; rows * seq * vocab];
    let mut put = |logits: Vec<f32>, from: usize, n: usize| {
        for r in 0..rows {
            for i in 0..n {
                let src = &logits[(r * n + i) * vocab..(r * n + i + 1) * vocab];
                got[(r * seq + from + i) * vocab..][..vocab].copy_from_slice(src);
            }
        }
    };
    let h = m.hidden_in_tree(
        &prefix(&b.input_ids, prompt),
        rows,
        0,
        None,
        Some(&keys(prompt)),
        Some(&mut caches),
        &mut Vec::new(),
    );
    put(values(h.matmul(m.head_weight().unsqueeze())), 0, prompt);
    for i in prompt..seq {
        let ids: Vec<u32> = (0..rows).map(|r| b.input_ids[r * seq + i]).collect();
        let h = m.hidden_in_tree(
            &ids,
            rows,
            i,
            None,
            Some(&keys(i + 1)),
            Some(&mut caches),
            &mut Vec::new(),
        );
        put(values(h.matmul(m.head_weight().unsqueeze())), i, 1);
    }
    let worst = full
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "cached decoding differs by {worst}");
    // The tree parts matter here: without positions the same decoding gives other logits.
    let h = m.hidden(&b.input_ids, rows, 0, None, None, &mut Vec::new());
    let unplaced = values(h.matmul(m.head_weight().unsqueeze()));
    let moved = full
        .iter()
        .zip(&unplaced)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(moved > 1e-3, "positions change nothing ({moved})");
}
