//! The whole Llama (dense and mixture of experts, GQA, packed documents, tied and untied head)
//! with the fused kernels and with Burn's composed ops: the same loss and the same gradient for
//! every parameter. One test in its own binary, as it switches the kernels for the process. The
//! tree transformer too: its biased layers run the fused kernel with a bucketed bias; and the
//! diffusion denoiser (bidirectional masks, weighted loss).

use anvil_models::diffusion::{DiffusionConfig, noise_batch};
use anvil_models::tree::{TreeConfig, TreePositions};
use anvil_models::{LlamaConfig, MoeConfig, TokenBatch, fused};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor};

struct Collect<'a>(&'a Gradients, Vec<Vec<f32>>);

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let g = p
            .val()
            .grad(self.0)
            .expect("every parameter gets a gradient");
        self.1.push(g.into_data().try_into_vec::<f32>().unwrap());
    }
}

fn loss_and_grads(
    config: &LlamaConfig,
    batch: &TokenBatch,
    fused_on: bool,
) -> (f32, Vec<Vec<f32>>) {
    fused::set_enabled(fused_on);
    let device = Device::flex().autodiff();
    device.seed(3);
    let mut model = config.init(&device);
    if let Some(tree) = &mut model.tree {
        // The tables start at zero; non-zero ones make the bias show in the loss.
        for (l, table) in tree.bias.iter_mut().enumerate() {
            let [h, n] = table.val().dims();
            let v: Vec<f32> = (0..h * n)
                .map(|i| ((i * 7 + l) % 11) as f32 * 0.1 - 0.5)
                .collect();
            let t = Tensor::<2>::from_data(burn::tensor::TensorData::new(v, [h, n]), &device);
            *table = Param::from_tensor(t.require_grad());
        }
    }
    let out = model.loss(batch);
    let mut loss = out.nll_sum / out.n_targets as f64;
    if let Some(aux) = out.aux_loss {
        loss = loss + aux;
    }
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    let mut c = Collect(&grads, Vec::new());
    model.visit(&mut c);
    (value, c.1)
}

#[test]
fn fused_and_composed_models_agree() {
    let (batch, seq, vocab) = (3, 48, 97);
    let input_ids: Vec<u32> = (0..batch * seq).map(|i| (i * 31 % vocab) as u32).collect();
    // Three documents per row, the last row ending in padding.
    let segment_ids: Vec<u16> = (0..batch * seq)
        .map(|i| {
            let (r, p) = (i / seq, i % seq);
            if r == 2 && p >= 40 {
                0
            } else {
                1 + (p / 17) as u16
            }
        })
        .collect();
    let tokens = TokenBatch {
        input_ids,
        segment_ids: Some(segment_ids),
        loss_mask: None,
        batch,
        seq_len: seq,
        tree: None,
        position_targets: None,
    };
    let base = LlamaConfig {
        vocab_size: vocab,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        max_seq_len: seq,
        attention: vec!["causal".into(), "sliding:9".into()],
        ..Default::default()
    };
    let moe = LlamaConfig {
        tie_embeddings: true,
        n_kv_heads: 4,
        moe: Some(MoeConfig {
            n_experts: 4,
            top_k: 2,
            ..Default::default()
        }),
        ..base.clone()
    };
    // Tree positions of several depths, a few tokens without one; the second layer unbiased.
    let mut tree_tokens = tokens.clone();
    let mut positions = TreePositions {
        max_path: 4,
        ..TreePositions::default()
    };
    for i in 0..batch * seq {
        let depth = (i * 5 % 7) as u16;
        let path: Vec<u16> = (0..depth as usize)
            .map(|l| ((i / 3 + l) % 3) as u16)
            .collect();
        positions.push(depth, &path);
    }
    tree_tokens.tree = Some(positions);
    let tree = LlamaConfig {
        tree: Some(TreeConfig {
            bias: vec![true, false],
            max_depth: 4,
            max_width: 3,
            ..TreeConfig::default()
        }),
        ..base.clone()
    };
    // The diffusion denoiser: bidirectional attention, ELBO-weighted loss on masked tokens.
    let diffusion = LlamaConfig {
        diffusion: Some(DiffusionConfig::default()),
        ..base.clone()
    };
    let noised = noise_batch(&tokens, &DiffusionConfig::default(), 2, 9);
    for (name, config, tokens) in [
        ("dense", base, &tokens),
        ("moe", moe, &tokens),
        ("tree", tree, &tree_tokens),
        ("diffusion", diffusion, &noised),
    ] {
        let (l1, g1) = loss_and_grads(&config, tokens, true);
        let (l2, g2) = loss_and_grads(&config, tokens, false);
        println!("{name}: loss {l1} vs {l2}, {} parameters", g1.len());
        assert!(
            (l1 - l2).abs() < 1e-5 * l2.abs(),
            "{name}: loss {l1} vs {l2}"
        );
        assert_eq!(g1.len(), g2.len());
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                diff <= 2e-4 * scale,
                "{name}: parameter {i} gradient differs by {diff:e} (scale {scale:e})"
            );
        }
    }
}
