//! Mixed precision, as PyTorch's autocast does it: a run's precision (`train.precision`) sets a
//! compute dtype for the current thread, and the model's matrix products — the linear layers,
//! the attention products, the LM head — cast their operands to it and their result back to
//! f32. Everything else stays f32: the weights (the master copy AdamW updates), the gradients
//! the optimizer sees, normalization, softmax and the loss. Burn's autodiff casts each gradient
//! back to its operand's dtype, so a parameter's gradient is f32 whatever ran in between.
//!
//! f16's narrow range underflows small gradients: its runs scale the loss (a dynamic
//! [`LossScaler`], PyTorch's `GradScaler` policy). bf16 has f32's range and needs none.
//!
//! The fused CPU kernels are f32 kernels: under autocast the model takes Burn's composed ops
//! ([`crate::fused::enabled`] answers no), which on `flex` run bf16/f16 products through f32
//! conversions (measured in docs/gpu.md). Precision is per thread, like `torch.autocast`, so a
//! run's setting never leaks into another thread's model (tests run side by side).

use burn::tensor::{Device, FloatDType, Tensor};
use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

/// A run's arithmetic precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Matrix products in bfloat16 (f32's exponent range: no loss scaling).
    Bf16,
    /// Matrix products in float16, with dynamic loss scaling.
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The dtype matrix products run in; `None` for full f32.
    pub fn compute_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F16 => Some(FloatDType::F16),
        }
    }

    /// Whether the loss must be scaled so that small gradients survive the dtype.
    pub fn scales_loss(self) -> bool {
        self == Precision::F16
    }

    /// Whether `device` can compute in this precision: an error naming the device otherwise.
    pub fn check(self, device: &Device) -> Result<(), String> {
        match self.compute_dtype() {
            Some(dt) if !device.supports_dtype(dt) => Err(format!(
                "precision `{self}`: the device has no {self} arithmetic (its backend says so); \
                 use `f32`{}",
                match self {
                    Precision::Bf16 => " or `f16`",
                    _ => " or `bf16`",
                }
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision `{s}` (known: f32, bf16, f16)"))
    }
}

thread_local! {
    static COMPUTE: Cell<Option<FloatDType>> = const { Cell::new(None) };
}

/// While alive, this thread's matrix products run in the precision it was made with; dropping
/// it restores the previous one.
#[must_use = "autocast lasts as long as the guard"]
pub struct Autocast {
    previous: Option<FloatDType>,
}

/// Runs this thread's matrix products in `precision` until the guard drops.
pub fn autocast(precision: Precision) -> Autocast {
    let previous = COMPUTE.with(|c| c.replace(precision.compute_dtype()));
    Autocast { previous }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        COMPUTE.with(|c| c.set(self.previous));
    }
}

/// The dtype this thread's matrix products run in, `None` for f32.
pub fn compute_dtype() -> Option<FloatDType> {
    COMPUTE.with(Cell::get)
}

/// `t` in the compute dtype (itself without autocast).
pub(crate) fn lower<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    match compute_dtype() {
        Some(dt) => t.cast(dt),
        None => t,
    }
}

/// `t` back in f32 (itself without autocast).
pub(crate) fn raise<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    match compute_dtype() {
        Some(_) => t.cast(FloatDType::F32),
        None => t,
    }
}

/// `x · w` (Burn's `linear`, `w` as `[d_in, d_out]`) in the compute dtype, returned in f32.
pub(crate) fn linear<const D: usize>(x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    raise(burn::tensor::module::linear(lower(x), lower(w), None))
}

/// PyTorch's `GradScaler` policy: the loss is multiplied by `scale` before the backward pass and
/// the gradients divided by it after; a step whose gradients overflowed (inf/NaN) is skipped and
/// halves the scale, and `GROWTH_INTERVAL` clean steps in a row double it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Clean steps since the scale last changed.
    pub good_steps: u32,
    /// Steps skipped so far because their gradients overflowed.
    #[serde(default)]
    pub skipped: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: Self::INIT,
            good_steps: 0,
            skipped: 0,
        }
    }
}

impl LossScaler {
    /// `torch.amp.GradScaler`'s defaults.
    pub const INIT: f64 = 65536.0;
    pub const GROWTH_INTERVAL: u32 = 2000;
    const GROWTH: f64 = 2.0;
    const BACKOFF: f64 = 0.5;
    /// Below this the scale stops halving: a loss that overflows even unscaled is a divergence,
    /// which the run's loss shows, not a scale to chase to zero.
    const MIN: f64 = 1.0;

    /// After a step's gradients were unscaled: whether they were finite (the step applies) or
    /// not (it is skipped); updates the scale either way.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= Self::GROWTH_INTERVAL {
                self.scale *= Self::GROWTH;
                self.good_steps = 0;
            }
        } else {
            self.scale = (self.scale * Self::BACKOFF).max(Self::MIN);
            self.good_steps = 0;
            self.skipped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
        }
        assert!("fp8".parse::<Precision>().unwrap_err().contains("known"));
    }

    #[test]
    fn autocast_is_scoped_and_per_thread() {
        assert_eq!(compute_dtype(), None);
        {
            let _g = autocast(Precision::Bf16);
            assert_eq!(compute_dtype(), Some(FloatDType::BF16));
            {
                let _h = autocast(Precision::F32);
                assert_eq!(compute_dtype(), None);
            }
            assert_eq!(compute_dtype(), Some(FloatDType::BF16));
            std::thread::spawn(|| assert_eq!(compute_dtype(), None))
                .join()
                .unwrap();
        }
        assert_eq!(compute_dtype(), None);
    }

    #[test]
    fn scaler_backs_off_on_overflow_and_grows_after_clean_steps() {
        let mut s = LossScaler::default();
        s.update(false);
        assert_eq!((s.scale, s.good_steps, s.skipped), (32768.0, 0, 1));
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            s.update(true);
        }
        assert_eq!(s.scale, 32768.0);
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
        for _ in 0..100 {
            s.update(false);
        }
        assert_eq!(s.scale, 1.0);
    }
}
