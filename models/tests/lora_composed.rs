//! LoRA through the fused kernels and through Burn's composed ops: each equals the brute-force
//! `x · (W + A·B·scaling)`, and a LoRA model's loss and adapter gradients agree between the two.
//! One test in its own binary, as it switches the kernels for the process.

use anvil_models::lora::{self, LoraAdapter, LoraConfig, LoraLinear};
use anvil_models::{Llama, LlamaConfig, MoeConfig, TokenBatch, fused};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Gradients, Tensor};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `x · (W + A·B·s)` with the merged weight formed explicitly, in plain matmuls.
fn brute_force(l: &LoraLinear, x: Tensor<3>) -> Tensor<3> {
    let a = l.lora.as_ref().unwrap();
    let w = l.weight.val() + a.lora_a.val().matmul(a.lora_b.val()) * a.scaling;
    x.matmul(w.unsqueeze())
}

struct AdapterGrads<'a>(&'a Gradients, Vec<String>, Vec<(String, Vec<f32>)>);

impl ModuleVisitor for AdapterGrads<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.1.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.1.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let path = self.1.join(".");
        let g = p.val().grad(self.0);
        // An expert no token was routed to takes no part in the graph.
        let idle = g.is_none() && path.contains(".experts.");
        assert!(
            g.is_some() == lora::is_adapter_path(&path) || idle,
            "gradient of {path}"
        );
        if let Some(g) = g {
            self.2
                .push((path, g.into_data().try_into_vec::<f32>().unwrap()));
        }
    }
}

fn loss_and_adapter_grads(
    config: &LlamaConfig,
    cfg: &LoraConfig,
) -> (f32, Vec<(String, Vec<f32>)>) {
    let device = Device::flex().autodiff();
    device.seed(21);
    let mut model: Llama = lora::apply_lora(config.init(&device), cfg);
    lora::for_each_projection(&mut model, |_, _, l| {
        if let Some(a) = &mut l.lora {
            let b = Tensor::<2>::random(a.lora_b.dims(), Distribution::Normal(0.0, 0.3), &device);
            a.lora_b = Param::from_tensor(b);
        }
    });
    let (batch, seq) = (2, 10);
    let batch = TokenBatch {
        input_ids: (0..batch * seq).map(|i| (i * 7 % 53) as u32).collect(),
        segment_ids: None,
        loss_mask: None,
        batch,
        seq_len: seq,
        tree: None,
        position_targets: None,
    };
    let out = model.loss(&batch);
    let mut loss = out.nll_sum / out.n_targets as f64;
    if let Some(aux) = out.aux_loss {
        loss = loss + aux;
    }
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    let mut g = AdapterGrads(&grads, Vec::new(), Vec::new());
    model.visit(&mut g);
    (value, g.2)
}

#[test]
fn fused_and_composed_lora_agree_with_brute_force() {
    let device = Device::flex();
    let cfg = LoraConfig {
        r: 4,
        alpha: 6.0,
        ..Default::default()
    };
    device.seed(20);
    let (d_in, d_out) = (24, 40);
    let mut l = LoraLinear::new(d_in, d_out, 0.1, &device);
    let a = Tensor::<2>::random([d_in, 4], Distribution::Normal(0.0, 0.5), &device);
    let b = Tensor::<2>::random([4, d_out], Distribution::Normal(0.0, 0.5), &device);
    l.lora = Some(LoraAdapter::from_tensors(a, b, &cfg));
    let x = Tensor::<3>::random([2, 5, d_in], Distribution::Normal(0.0, 1.0), &device);
    let want = values(brute_force(&l, x.clone()));
    for on in [true, false] {
        fused::set_enabled(on);
        assert_eq!(fused::enabled(&device), on);
        let got = values(l.forward(x.clone()));
        let diff = max_abs_diff(&got, &want);
        assert!(diff <= 1e-5, "fused {on}: {diff}");
        // 2-D input (the experts' token rows) too.
        let x2 = x.clone().reshape([10, d_in]);
        let got = values(l.forward(x2));
        assert!(max_abs_diff(&got, &want) <= 1e-5, "fused {on}, 2-D");
    }

    let dense = LlamaConfig {
        vocab_size: 53,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        max_seq_len: 16,
        ..Default::default()
    };
    let moe = LlamaConfig {
        moe: Some(MoeConfig {
            n_experts: 3,
            top_k: 2,
            n_shared: 1,
            ..Default::default()
        }),
        d_ff: 40,
        ..dense.clone()
    };
    let cfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        use_rslora: true,
        target_modules: lora::TARGETS.map(String::from).to_vec(),
        ..Default::default()
    };
    for config in [dense, moe] {
        fused::set_enabled(true);
        let (lf, gf) = loss_and_adapter_grads(&config, &cfg);
        fused::set_enabled(false);
        let (lc, gc) = loss_and_adapter_grads(&config, &cfg);
        assert!(
            (lf - lc).abs() <= 1e-5 * lc.abs().max(1.0),
            "loss {lf} vs {lc}"
        );
        assert_eq!(gf.len(), gc.len());
        assert!(!gf.is_empty());
        for ((pf, f), (pc, c)) in gf.iter().zip(&gc) {
            assert_eq!(pf, pc);
            let scale = c.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-3);
            let diff = max_abs_diff(f, c) / scale;
            assert!(diff <= 1e-4, "{pf}: fused vs composed gradient {diff}");
        }
    }
}
