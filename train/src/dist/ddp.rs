//! Data-parallel optimizer steps: gradients summed across ranks in fixed-size buckets, then
//! either the whole AdamW step on every rank (DDP) or, with ZeRO stage 1, each rank's step on its
//! own shard of the parameters and their moments, followed by an all-gather of the weights.
//!
//! The trainable parameters are laid end to end in module order (the "flat" space) and cut into
//! one contiguous shard per rank. A bucket exchange sends each rank the next `chunk` values of its
//! shard from every other rank (all-to-all), which it adds in rank order: a reduce-scatter whose
//! sums are exact functions of the ranks' gradients, the same on every run. Burn's `backward()`
//! returns every gradient at once (no per-parameter hook), so the exchange starts after it.

use super::{Collectives, World};
use crate::optim::{AdamW, GradAccumulator, Moments, Paths, adamw_step, decays};
use crate::recipe::{OptimConfig, RecipeError};
use anvil_models::kernels;
use anvil_models::precision::LossScaler;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{DType, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Instant;

/// The recipe's `[distributed]` section; read when the run has more than one rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistConfig {
    /// ZeRO stage: 0 keeps the whole optimizer state on every rank (plain data parallel); 1
    /// shards it, so each rank keeps and updates 1/N of the moments (DeepSpeed's ZeRO-1).
    pub zero: u8,
    /// Gradient bucket size in MiB (PyTorch DDP's `bucket_cap_mb`): larger buckets mean fewer
    /// messages, smaller ones less memory in flight.
    pub bucket_mb: f64,
    /// Seconds a collective waits for the other ranks before this rank stops the job
    /// (torch.distributed's `timeout`); a rank that died ends the job at once through mpirun.
    pub timeout: f64,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self {
            zero: 0,
            bucket_mb: 25.0,
            timeout: 900.0,
        }
    }
}

impl DistConfig {
    pub fn validate(&self) -> Result<(), RecipeError> {
        let bad = |key: &str, message: String| RecipeError {
            key: format!("distributed.{key}"),
            message,
        };
        if self.zero > 1 {
            return Err(bad(
                "zero",
                format!("{}: stages 0 (off) and 1 exist", self.zero),
            ));
        }
        // Below 10 KB a step would be millions of messages.
        if !(self.bucket_mb >= 0.01 && self.bucket_mb <= 4096.0) {
            return Err(bad(
                "bucket_mb",
                format!("must be in [0.01, 4096], got {}", self.bucket_mb),
            ));
        }
        if !(self.timeout > 0.0 && self.timeout.is_finite()) {
            return Err(bad(
                "timeout",
                format!("must be a positive number of seconds, got {}", self.timeout),
            ));
        }
        Ok(())
    }
}

/// One parameter's place in the flat space.
#[derive(Debug, Clone)]
struct Slot {
    path: String,
    offset: usize,
    len: usize,
    decays: bool,
}

/// Parameters end to end, in module order.
#[derive(Debug, Default)]
struct Layout {
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    total: usize,
}

/// f32 parameters (trainable ones only, or all), in module order.
fn layout<M: Module>(model: &M, trainable_only: bool, optim: &OptimConfig) -> Layout {
    struct Visit<'a> {
        paths: Paths,
        trainable_only: bool,
        optim: &'a OptimConfig,
        out: Layout,
    }
    impl ModuleVisitor for Visit<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.paths.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.paths.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            // A quantized frozen base is not f32; every rank loads it from the same file.
            if t.dtype() != DType::F32 || (self.trainable_only && !t.is_require_grad()) {
                return;
            }
            let path = self.paths.path();
            let len = t.shape().num_elements();
            let o = &mut self.out;
            o.index.insert(path.clone(), o.slots.len());
            o.slots.push(Slot {
                decays: decays(self.optim, &path, D),
                path,
                offset: o.total,
                len,
            });
            o.total += len;
        }
    }
    let mut v = Visit {
        paths: Paths::new(),
        trainable_only,
        optim,
        out: Layout::default(),
    };
    model.visit(&mut v);
    v.out
}

/// Copies the values of `layout`'s parameters that fall in `[from, to)` of the flat space.
fn read_params<M: Module>(model: &M, layout: &Layout, (from, to): (usize, usize)) -> Vec<f32> {
    struct Read<'a> {
        paths: Paths,
        layout: &'a Layout,
        range: (usize, usize),
        out: Vec<f32>,
    }
    impl ModuleVisitor for Read<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.paths.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.paths.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let Some(&i) = self.layout.index.get(&self.paths.path()) else {
                return;
            };
            let s = &self.layout.slots[i];
            let (a, b) = (
                s.offset.max(self.range.0),
                (s.offset + s.len).min(self.range.1),
            );
            if a >= b {
                return;
            }
            let data = param
                .val()
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32 parameter");
            self.out[a - self.range.0..b - self.range.0]
                .copy_from_slice(&data[a - s.offset..b - s.offset]);
        }
    }
    let mut r = Read {
        paths: Paths::new(),
        layout,
        range: (from, to),
        out: vec![0.0; to - from],
    };
    model.visit(&mut r);
    r.out
}

/// `model` with `layout`'s parameters replaced by their values in `flat`.
fn write_params<M: Module>(model: M, layout: &Layout, flat: &[f32]) -> M {
    struct Write<'a> {
        paths: Paths,
        layout: &'a Layout,
        flat: &'a [f32],
    }
    impl ModuleMapper for Write<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.paths.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.paths.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(&i) = self.layout.index.get(&self.paths.path()) else {
                return param;
            };
            let s = &self.layout.slots[i];
            let (id, tensor, mapper) = param.consume();
            let require_grad = tensor.is_require_grad();
            let values = self.flat[s.offset..s.offset + s.len].to_vec();
            let mut t =
                Tensor::from_data(TensorData::new(values, tensor.shape()), &tensor.device());
            if require_grad {
                t = t.require_grad();
            }
            Param::from_mapped_value(id, t, mapper)
        }
    }
    model.map(&mut Write {
        paths: Paths::new(),
        layout,
        flat,
    })
}

/// The loss a trainer differentiates: `loss` times an f16 run's loss scale (see
/// [`optimizer_step`]), itself otherwise.
pub fn scaled(loss: Tensor<1>, scaler: Option<&LossScaler>) -> Tensor<1> {
    match scaler {
        Some(s) => loss * s.scale,
        None => loss,
    }
}

/// The optimizer step after a trainer accumulated `grads`: clip and AdamW in this process, or,
/// with `dp`, the exchange across ranks first (ZeRO-1: the sharded step).
///
/// With f16's loss scaling (`scaler`), the gradients are first divided by the scale; when they
/// overflowed on any rank the step is skipped on all of them — no update, the norm reported as
/// infinite — and the scale halves, as PyTorch's `GradScaler` does.
pub fn optimizer_step<M: Module>(
    dp: Option<&mut DataParallel>,
    opt: &mut AdamW,
    model: M,
    grads: &mut GradAccumulator,
    (lr, max_norm): (f64, f64),
    scaler: Option<&mut LossScaler>,
) -> (M, f64) {
    if let Some(scaler) = scaler {
        grads.scale(1.0 / scaler.scale);
        let mut finite = grads.global_norm().is_finite();
        if let Some(dp) = &dp {
            finite = dp.world.sum(&[f64::from(u8::from(!finite))])[0] == 0.0;
        }
        scaler.update(finite);
        if !finite {
            return (model, f64::INFINITY);
        }
    }
    match dp {
        Some(dp) => dp.step(model, opt, grads, lr, max_norm),
        None => {
            let norm = grads.clip_global_norm(max_norm);
            (opt.step(model, lr, grads), norm)
        }
    }
}

/// Communication of the steps since the last [`DataParallel::take_stats`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CommStats {
    /// Seconds inside the gradient and weight collectives (waiting for slower ranks included).
    pub seconds: f64,
    /// Bytes this rank sent.
    pub bytes: u64,
    pub steps: u64,
}

/// The distributed optimizer step of one rank (see the module's notes).
pub struct DataParallel {
    world: World,
    zero: bool,
    layout: Layout,
    /// Per rank, its `[start, end)` of the flat space.
    shards: Vec<(usize, usize)>,
    /// Values per rank in one bucket exchange.
    chunk: usize,
    /// ZeRO: the moments of this rank's shard.
    m: Vec<f32>,
    v: Vec<f32>,
    stats: CommStats,
    /// Where the model lives: optimizer state rebuilt from host values goes there.
    device: Device,
}

impl DataParallel {
    /// The layout of `model`'s trainable parameters across `world`'s ranks.
    pub fn new<M: Module>(world: World, model: &M, cfg: &DistConfig, optim: &OptimConfig) -> Self {
        let layout = layout(model, true, optim);
        let n = world.size();
        let (base, extra) = (layout.total / n, layout.total % n);
        let mut shards = Vec::with_capacity(n);
        let mut at = 0;
        for r in 0..n {
            let len = base + usize::from(r < extra);
            shards.push((at, at + len));
            at += len;
        }
        // Never more than the longest shard: the bucket buffers are allocated at this size, and
        // a 4 GiB bucket over a small model must not allocate 4 GiB.
        let longest = shards.iter().map(|(a, b)| b - a).max().unwrap_or(0);
        let chunk = ((cfg.bucket_mb * 1048576.0 / 4.0) as usize / n).clamp(1, longest.max(1));
        let own = shards[world.rank()].1 - shards[world.rank()].0;
        let zero = cfg.zero == 1;
        world.set_timeout(cfg.timeout);
        let device = model
            .devices()
            .into_iter()
            .next()
            .map_or_else(anvil_models::device::cpu, Device::without_autodiff);
        DataParallel {
            device,
            world,
            zero,
            layout,
            shards,
            chunk,
            m: if zero { vec![0.0; own] } else { Vec::new() },
            v: if zero { vec![0.0; own] } else { Vec::new() },
            stats: CommStats::default(),
        }
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// Trainable values this rank keeps AdamW moments for.
    pub fn optimizer_share(&self) -> usize {
        if self.zero {
            self.m.len()
        } else {
            self.layout.total
        }
    }

    pub fn take_stats(&mut self) -> CommStats {
        std::mem::take(&mut self.stats)
    }

    fn comm(&self) -> &dyn Collectives {
        self.world
            .comm()
            .expect("DataParallel runs on several ranks")
    }

    fn own(&self) -> (usize, usize) {
        self.shards[self.world.rank()]
    }

    /// Buckets needed to cover the largest shard.
    fn buckets(&self) -> usize {
        let longest = self.shards.iter().map(|(a, b)| b - a).max().unwrap_or(0);
        longest.div_ceil(self.chunk)
    }

    /// Rank `r`'s part of bucket `k`, as a range of the flat space.
    fn part(&self, r: usize, k: usize) -> (usize, usize) {
        let (s, e) = self.shards[r];
        let a = (s + k * self.chunk).min(e);
        (a, (a + self.chunk).min(e))
    }

    /// Every rank's `flat` summed in rank order, for this rank's shard only.
    fn reduce_scatter(&mut self, flat: &[f32]) -> Vec<f32> {
        let (n, me) = (self.world.size(), self.world.rank());
        let own = self.own();
        let mut out = vec![0f32; own.1 - own.0];
        let mut send = vec![0f32; self.chunk * n];
        let mut recv = vec![0f32; self.chunk * n];
        for k in 0..self.buckets() {
            let parts: Vec<(usize, usize)> = (0..n).map(|r| self.part(r, k)).collect();
            let counts: Vec<usize> = parts.iter().map(|(a, b)| b - a).collect();
            let mut at = Vec::with_capacity(n);
            let mut len = 0;
            for &(a, b) in &parts {
                at.push(len);
                send[len..len + b - a].copy_from_slice(&flat[a..b]);
                len += b - a;
            }
            let mine = counts[me];
            self.comm()
                .all_to_all_f32(&send[..len], &at, &mut recv[..mine * n], &counts);
            self.stats.bytes += 4 * (len - mine) as u64;
            let dst = &mut out[parts[me].0 - own.0..][..mine];
            dst.copy_from_slice(&recv[..mine]);
            for r in 1..n {
                for (d, x) in dst.iter_mut().zip(&recv[r * mine..(r + 1) * mine]) {
                    *d += x;
                }
            }
        }
        out
    }

    /// Every rank's shard (`mine`) put together into the whole flat space.
    fn all_gather(&mut self, mine: &[f32]) -> Vec<f32> {
        let (n, me) = (self.world.size(), self.world.rank());
        let own = self.own();
        let mut flat = vec![0f32; self.layout.total];
        let mut recv = vec![0f32; self.chunk * n];
        for k in 0..self.buckets() {
            let parts: Vec<(usize, usize)> = (0..n).map(|r| self.part(r, k)).collect();
            let counts: Vec<usize> = parts.iter().map(|(a, b)| b - a).collect();
            let total: usize = counts.iter().sum();
            let p = parts[me];
            self.comm().all_gather_f32(
                &mine[p.0 - own.0..p.1 - own.0],
                &mut recv[..total],
                &counts,
            );
            self.stats.bytes += 4 * ((n - 1) * counts[me]) as u64;
            let mut at = 0;
            for &(a, b) in &parts {
                flat[a..b].copy_from_slice(&recv[at..at + b - a]);
                at += b - a;
            }
        }
        flat
    }

    /// Rank 0's weights on every rank (all f32 parameters, frozen ones too), and its optimizer
    /// state — whole on every rank, or each rank's shard of it under ZeRO-1.
    pub fn sync_start<M: Module>(&mut self, model: M, opt: &mut AdamW, optim: &OptimConfig) -> M {
        let all = layout(&model, false, optim);
        let mut flat = if self.world.is_root() {
            read_params(&model, &all, (0, all.total))
        } else {
            vec![0.0; all.total]
        };
        self.comm().broadcast_f32(&mut flat);
        let model = if self.world.is_root() {
            model
        } else {
            write_params(model, &all, &flat)
        };
        drop(flat);
        opt.step = self.world.broadcast_json(opt.step);
        // Moments by slot, zeros for a parameter not updated yet (what a first update starts
        // from); `have` keeps a resumed whole-state run's set of moments as it was.
        let total = self.layout.total;
        let (mut m, mut v) = (Vec::new(), Vec::new());
        let mut have = Vec::new();
        if self.world.is_root() {
            (m, v) = (vec![0f32; total], vec![0f32; total]);
            for s in &self.layout.slots {
                let Some(mo) = opt.state.get(&s.path) else {
                    have.push(false);
                    continue;
                };
                have.push(true);
                let host = |t: &Tensor<1>| t.to_data().try_into_vec::<f32>().expect("f32 moments");
                m[s.offset..s.offset + s.len].copy_from_slice(&host(&mo.m));
                v[s.offset..s.offset + s.len].copy_from_slice(&host(&mo.v));
            }
        }
        if self.zero {
            let n: Vec<usize> = self.shards.iter().map(|(a, b)| b - a).collect();
            let (mut mine_m, mut mine_v) = (vec![0f32; self.m.len()], vec![0f32; self.v.len()]);
            self.comm().scatter_f32(&m, &n, &mut mine_m);
            self.comm().scatter_f32(&v, &n, &mut mine_v);
            (self.m, self.v) = (mine_m, mine_v);
            opt.state.clear();
        } else {
            have = self.world.broadcast_json(have);
            if !self.world.is_root() {
                (m, v) = (vec![0f32; total], vec![0f32; total]);
            }
            self.comm().broadcast_f32(&mut m);
            self.comm().broadcast_f32(&mut v);
            if !self.world.is_root() {
                let device = self.device.clone();
                opt.state.clear();
                for (s, _) in self.layout.slots.iter().zip(&have).filter(|(_, h)| **h) {
                    let t = |x: &[f32]| {
                        Tensor::from_data(TensorData::new(x.to_vec(), [s.len]), &device)
                    };
                    let r = s.offset..s.offset + s.len;
                    opt.state.insert(
                        s.path.clone(),
                        Moments {
                            m: t(&m[r.clone()]),
                            v: t(&v[r]),
                        },
                    );
                }
            }
        }
        model
    }

    /// Sums the ranks' accumulated gradients, clips them by their global norm (`max_norm`, 0 =
    /// off) and takes the AdamW step at `lr` on every rank alike; returns the model and the
    /// gradient norm before clipping.
    pub fn step<M: Module>(
        &mut self,
        model: M,
        opt: &mut AdamW,
        grads: &mut GradAccumulator,
        lr: f64,
        max_norm: f64,
    ) -> (M, f64) {
        let started = Instant::now();
        // A parameter no rank has a gradient for is not updated at all (moments and decay
        // included), as in one process.
        let had: Vec<f64> = self
            .layout
            .slots
            .iter()
            .map(|s| f64::from(u8::from(grads.grads.contains_key(&s.path))))
            .collect();
        let present: Vec<bool> = self.world.sum(&had).iter().map(|&n| n > 0.0).collect();
        let device = self.device.clone();
        let mut flat = vec![0f32; self.layout.total];
        for s in &self.layout.slots {
            if let Some(g) = grads.grads.remove(&s.path) {
                let g = g.into_data().try_into_vec::<f32>().expect("f32 gradient");
                flat[s.offset..s.offset + s.len].copy_from_slice(&g);
            }
        }
        let mine = self.reduce_scatter(&flat);
        drop(flat);
        let stepped = if self.zero {
            self.zero_step(model, opt, mine, &present, lr, max_norm)
        } else {
            let flat = self.all_gather(&mine);
            for (s, _) in self.layout.slots.iter().zip(&present).filter(|(_, p)| **p) {
                let g = flat[s.offset..s.offset + s.len].to_vec();
                let g = Tensor::from_data(TensorData::new(g, [s.len]), &device);
                grads.grads.insert(s.path.clone(), g);
            }
            drop(flat);
            let comm = started.elapsed().as_secs_f64();
            let norm = grads.clip_global_norm(max_norm);
            let model = opt.step(model, lr, grads);
            self.stats.seconds += comm;
            self.stats.steps += 1;
            return (model, norm);
        };
        self.stats.seconds += started.elapsed().as_secs_f64();
        self.stats.steps += 1;
        stepped
    }

    /// ZeRO-1: the global norm from every rank's partial sum of squares, AdamW on this rank's
    /// shard, then the updated weights from every rank.
    fn zero_step<M: Module>(
        &mut self,
        model: M,
        opt: &mut AdamW,
        mut g: Vec<f32>,
        present: &[bool],
        lr: f64,
        max_norm: f64,
    ) -> (M, f64) {
        let squares: f64 = g.iter().map(|&x| (x as f64) * (x as f64)).sum();
        let norm = self.world.sum(&[squares])[0].sqrt();
        if max_norm > 0.0 {
            let coef = (max_norm / (norm + 1e-6)).min(1.0);
            if coef < 1.0 {
                let c = coef as f32;
                g.iter_mut().for_each(|x| *x *= c);
            }
        }
        opt.step += 1;
        let own = self.own();
        let mut p = read_params(&model, &self.layout, own);
        for (s, _) in self.layout.slots.iter().zip(present).filter(|(_, p)| **p) {
            let (a, b) = (s.offset.max(own.0), (s.offset + s.len).min(own.1));
            if a >= b {
                continue;
            }
            let r = a - own.0..b - own.0;
            let step = adamw_step(&opt.config, opt.step, lr, s.decays);
            kernels::adamw(
                &mut p[r.clone()],
                &g[r.clone()],
                &mut self.m[r.clone()],
                &mut self.v[r],
                step,
            );
        }
        let flat = self.all_gather(&p);
        (write_params(model, &self.layout, &flat), norm)
    }

    /// Runs `f` with the whole optimizer state in `opt` on rank 0 (ZeRO-1 gathers it from the
    /// ranks for the call and drops it after): checkpoints are the same files either way. Every
    /// rank must call it.
    pub fn with_full_optimizer<R>(&mut self, opt: &mut AdamW, f: impl FnOnce(&AdamW) -> R) -> R {
        if !self.zero {
            return f(opt);
        }
        let n: Vec<usize> = self.shards.iter().map(|(a, b)| b - a).collect();
        let total = if self.world.is_root() {
            self.layout.total
        } else {
            0
        };
        let (mut m, mut v) = (vec![0f32; total], vec![0f32; total]);
        self.comm().gather_f32(&self.m, &mut m, &n);
        self.comm().gather_f32(&self.v, &mut v, &n);
        if self.world.is_root() {
            let device = self.device.clone();
            for s in &self.layout.slots {
                let t =
                    |x: &[f32]| Tensor::from_data(TensorData::new(x.to_vec(), [s.len]), &device);
                let r = s.offset..s.offset + s.len;
                opt.state.insert(
                    s.path.clone(),
                    Moments {
                        m: t(&m[r.clone()]),
                        v: t(&v[r]),
                    },
                );
            }
        }
        let out = f(opt);
        opt.state.clear();
        out
    }
}
