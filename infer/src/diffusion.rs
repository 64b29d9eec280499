//! Sampling from the masked-diffusion denoiser (`arch = "diffusion"`), as LLaDA does: the span to
//! write starts as `<|mask|>` tokens between the prefix and the suffix (fill-in-the-middle is
//! native: the model sees both sides), and each step predicts every masked position at once and
//! unmasks the ones the remasking rule ranks first — the most confident (`low_confidence`
//! remasking: the least confident stay masked), the lowest-entropy, or random ones — so that
//! after `steps` steps nothing is masked. With `block_length`, the span is written in blocks left
//! to right (semi-autoregressive), each block taking its share of the steps. Classifier-free
//! guidance runs the model a second time with the condition (prefix and suffix) masked too and
//! mixes the two: `logits = u + w·(c − u)`.

use crate::InferError;
use crate::generate::Generator;
use crate::sampling::log_sum_exp;
use anvil_data::tokenizer::{EOT_ID, MASK_ID, PAD_ID};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Which masked positions a step unmasks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Remasking {
    /// The most probable predictions first (LLaDA's `low_confidence` remasking).
    #[default]
    LowConfidence,
    /// Positions in random order.
    Random,
    /// The positions whose predicted distribution has the lowest entropy first.
    Entropy,
}

impl std::str::FromStr for Remasking {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low_confidence" => Ok(Self::LowConfidence),
            "random" => Ok(Self::Random),
            "entropy" => Ok(Self::Entropy),
            _ => Err(format!(
                "unknown remasking `{s}` (known: low_confidence, random, entropy)"
            )),
        }
    }
}

/// How to write one span.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionParams {
    /// Tokens in the span.
    pub length: usize,
    /// Denoising steps over the whole span (at most one per token).
    pub steps: usize,
    pub remasking: Remasking,
    /// Write the span in blocks of this many tokens, left to right (`None`: one block).
    pub block_length: Option<usize>,
    /// Classifier-free guidance weight `w` (1: the conditional model alone, one forward a step).
    pub cfg: f32,
    /// 0: the most probable token at each position; otherwise sampled at this temperature.
    pub temperature: f32,
    pub seed: u64,
}

impl Default for DiffusionParams {
    fn default() -> Self {
        Self {
            length: 64,
            steps: 64,
            remasking: Remasking::LowConfidence,
            block_length: None,
            cfg: 1.0,
            temperature: 0.0,
            seed: 0,
        }
    }
}

impl DiffusionParams {
    pub fn validate(&self) -> Result<(), InferError> {
        let bad = |k: &str, m: String| Err(InferError::Param(format!("`{k}`: {m}")));
        if self.length == 0 {
            return bad("max_tokens", "must be at least 1".into());
        }
        if self.steps == 0 {
            return bad("steps", "must be at least 1".into());
        }
        if self.block_length == Some(0) {
            return bad("block_length", "must be at least 1".into());
        }
        if !(self.cfg.is_finite() && self.cfg >= 0.0) {
            return bad("cfg", format!("must be finite and ≥ 0, got {}", self.cfg));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(
                "temperature",
                format!("must be finite and ≥ 0, got {}", self.temperature),
            );
        }
        Ok(())
    }
}

/// A written span.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Infill {
    /// The span's text, cut at an end-of-text token if the model wrote one.
    pub text: String,
    /// The span's tokens (all of them).
    pub token_ids: Vec<u32>,
    /// Per span position, the step (from 0) that unmasked it.
    pub unmasked_at: Vec<usize>,
    /// Forward passes run (two a step with guidance).
    pub forwards: usize,
    pub steps: usize,
    pub seconds: f64,
}

/// How many masked tokens each of `steps` steps unmasks from `masked`: as even as possible,
/// the remainder on the first steps (LLaDA's `get_num_transfer_tokens`).
pub fn transfer_counts(masked: usize, steps: usize) -> Vec<usize> {
    let (base, rest) = (masked / steps, masked % steps);
    (0..steps).map(|s| base + usize::from(s < rest)).collect()
}

impl Generator {
    /// Writes `p.length` tokens between `prefix` and `suffix` with the diffusion denoiser.
    pub fn diffuse(
        &self,
        prefix: &[u32],
        suffix: &[u32],
        p: &DiffusionParams,
    ) -> Result<Infill, InferError> {
        p.validate()?;
        if self.model.config.diffusion.is_none() {
            return Err(InferError::Param(
                "diffusion sampling needs a diffusion denoiser (`arch = \"diffusion\"`)".into(),
            ));
        }
        let total = prefix.len() + p.length + suffix.len();
        let ctx = self.context_length();
        if total > ctx {
            return Err(InferError::Param(format!(
                "prefix ({}) + span ({}) + suffix ({}) tokens exceed the model's context of {ctx}",
                prefix.len(),
                p.length,
                suffix.len()
            )));
        }
        let vocab = self.vocab_size();
        if let Some(&t) = prefix.iter().chain(suffix).find(|&&t| t as usize >= vocab) {
            return Err(InferError::Param(format!(
                "token {t} is outside the vocabulary ({vocab})"
            )));
        }
        let t0 = Instant::now();
        let mut x: Vec<u32> = prefix.to_vec();
        x.extend(std::iter::repeat_n(MASK_ID, p.length));
        x.extend_from_slice(suffix);
        let span = prefix.len()..prefix.len() + p.length;
        let mut forwards = 0;
        let unmasked_at = denoise(
            &mut x,
            span.clone(),
            vocab,
            p,
            |x: &[u32]| self.all_logits(x),
            &mut forwards,
        );
        let ids = x[span].to_vec();
        let end = ids.iter().position(|&t| t == EOT_ID).unwrap_or(ids.len());
        let text = self.decode(&ids[..end])?;
        Ok(Infill {
            text,
            token_ids: ids,
            steps: unmasked_at.iter().max().map_or(0, |s| s + 1),
            unmasked_at,
            forwards,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// The model's logits at every position of one row (`[seq · vocab]`).
    fn all_logits(&self, x: &[u32]) -> Vec<f32> {
        let h = self.model.hidden(x, 1, 0, None, None, &mut Vec::new());
        let [_, t, d] = h.dims();
        h.reshape([t, d])
            .matmul(self.model.head_weight())
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits")
    }
}

/// The sampling loop on `x` (masks in `span`), with `logits_of` the denoiser (`[seq · vocab]`
/// logits of a row): unmasks the span in place and returns, per span position, the step that
/// unmasked it. `forwards` counts the denoiser's runs.
pub fn denoise(
    x: &mut [u32],
    span: std::ops::Range<usize>,
    vocab: usize,
    p: &DiffusionParams,
    mut logits_of: impl FnMut(&[u32]) -> Vec<f32>,
    forwards: &mut usize,
) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let len = span.len();
    let mut unmasked_at = vec![usize::MAX; len];
    let block = p.block_length.unwrap_or(len).min(len).max(1);
    let n_blocks = len.div_ceil(block);
    let mut step = 0;
    for b in 0..n_blocks {
        let lo = span.start + b * block;
        let hi = (lo + block).min(span.end);
        // This block's share of the steps (at least one, at most one per token).
        let steps = (p.steps / n_blocks + usize::from(b < p.steps % n_blocks)).clamp(1, hi - lo);
        for n in transfer_counts(hi - lo, steps) {
            let mut logits = logits_of(x);
            *forwards += 1;
            if p.cfg != 1.0 {
                // The unconditional input: the condition (everything outside the span) masked.
                let uncond: Vec<u32> = (0..x.len())
                    .map(|i| if span.contains(&i) { x[i] } else { MASK_ID })
                    .collect();
                let u = logits_of(&uncond);
                *forwards += 1;
                cfg_mix(&mut logits, &u, p.cfg);
            }
            let mut cands: Vec<(f32, usize, u32)> = (lo..hi)
                .filter(|&i| x[i] == MASK_ID && unmasked_at[i - span.start] == usize::MAX)
                .map(|i| {
                    let (tok, score) = pick(&logits[i * vocab..(i + 1) * vocab], p, &mut rng);
                    (score, i, tok)
                })
                .collect();
            // Highest score first; ties by position, so the order is deterministic.
            cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, i, tok) in cands.iter().take(n) {
                x[i] = tok;
                unmasked_at[i - span.start] = step;
            }
            step += 1;
        }
    }
    unmasked_at
}

/// Classifier-free guidance in place: `c ← u + w·(c − u)` (w = 1 leaves `c`, w = 0 gives `u`).
pub fn cfg_mix(c: &mut [f32], u: &[f32], w: f32) {
    for (cv, &uv) in c.iter_mut().zip(u) {
        *cv = uv + w * (*cv - uv);
    }
}

/// The token predicted from `row` (never the mask or padding token) and its ranking score under
/// `p.remasking` (higher = unmasked sooner).
fn pick(row: &[f32], p: &DiffusionParams, rng: &mut ChaCha8Rng) -> (u32, f32) {
    let mut row = row.to_vec();
    for banned in [MASK_ID, PAD_ID] {
        if let Some(v) = row.get_mut(banned as usize) {
            *v = f32::NEG_INFINITY;
        }
    }
    let scaled: Vec<f32> = match p.temperature {
        t if t > 0.0 => row.iter().map(|v| v / t).collect(),
        _ => row.clone(),
    };
    let lse = log_sum_exp(&scaled);
    let tok = if p.temperature > 0.0 {
        // Inverse-CDF sampling from softmax(row / T).
        let u: f32 = rng.random();
        let mut acc = 0f32;
        let mut chosen = 0;
        for (i, v) in scaled.iter().enumerate() {
            acc += (v - lse).exp();
            chosen = i;
            if acc > u {
                break;
            }
        }
        chosen as u32
    } else {
        let mut best = 0;
        for (i, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = i;
            }
        }
        best as u32
    };
    let score = match p.remasking {
        Remasking::LowConfidence => (scaled[tok as usize] - lse).exp(),
        Remasking::Random => rng.random::<f32>(),
        Remasking::Entropy => {
            let h: f32 = scaled
                .iter()
                .filter(|v| v.is_finite())
                .map(|v| {
                    let lp = v - lse;
                    -lp.exp() * lp
                })
                .sum();
            -h
        }
    };
    (tok, score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_counts_spread_the_masks_over_the_steps() {
        assert_eq!(transfer_counts(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(transfer_counts(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(transfer_counts(7, 1), vec![7]);
        assert_eq!(transfer_counts(3, 5).iter().sum::<usize>(), 3);
    }

    const VOCAB: usize = 40;

    /// A scripted denoiser: span position `i` (from `start`) always predicts token `10 + i` with
    /// probability `conf[i]`, the rest spread evenly; the mask and padding tokens get the
    /// highest logit of all, which sampling must never pick.
    fn scripted(start: usize, conf: &'static [f32]) -> impl FnMut(&[u32]) -> Vec<f32> {
        move |x: &[u32]| {
            let mut out = vec![0f32; x.len() * VOCAB];
            for (i, &c) in conf.iter().enumerate() {
                let row = &mut out[(start + i) * VOCAB..(start + i + 1) * VOCAB];
                let rest = (1.0 - c) / (VOCAB - 3) as f32;
                for v in row.iter_mut() {
                    *v = rest.ln();
                }
                row[10 + i] = c.ln();
                row[MASK_ID as usize] = 10.0;
                row[PAD_ID as usize] = 10.0;
            }
            out
        }
    }

    fn run(p: &DiffusionParams, conf: &'static [f32]) -> (Vec<u32>, Vec<usize>, usize) {
        let start = 3;
        let mut x = vec![7, 8, 9];
        x.extend(std::iter::repeat_n(MASK_ID, conf.len()));
        x.push(9);
        let mut forwards = 0;
        let at = denoise(
            &mut x,
            start..start + conf.len(),
            VOCAB,
            p,
            scripted(start, conf),
            &mut forwards,
        );
        (x, at, forwards)
    }

    const CONF: &[f32] = &[0.3, 0.9, 0.5, 0.99, 0.1, 0.7];

    /// Low-confidence remasking unmasks the most confident predictions first (the least
    /// confident stay masked longest): one a step in confidence order, or two a step in pairs.
    #[test]
    fn low_confidence_unmasks_the_most_confident_first() {
        let p = DiffusionParams {
            length: 6,
            steps: 6,
            ..DiffusionParams::default()
        };
        let (x, at, forwards) = run(&p, CONF);
        assert_eq!(at, vec![4, 1, 3, 0, 5, 2]);
        assert_eq!(
            &x[3..9],
            &[10, 11, 12, 13, 14, 15],
            "argmax, never mask or pad"
        );
        assert_eq!(
            (x[..3].to_vec(), x[9]),
            (vec![7, 8, 9], 9),
            "context untouched"
        );
        assert_eq!(forwards, 6);
        let (_, at, _) = run(
            &DiffusionParams {
                steps: 3,
                ..p.clone()
            },
            CONF,
        );
        assert_eq!(at, vec![2, 0, 1, 0, 2, 1]);
    }

    /// Entropy remasking ranks by the whole distribution: here the same order as confidence
    /// (the rest is spread evenly); random remasking follows its seed.
    #[test]
    fn entropy_and_random_remasking() {
        let p = DiffusionParams {
            length: 6,
            steps: 6,
            remasking: Remasking::Entropy,
            ..DiffusionParams::default()
        };
        assert_eq!(run(&p, CONF).1, vec![4, 1, 3, 0, 5, 2]);
        let random = DiffusionParams {
            remasking: Remasking::Random,
            ..p
        };
        let (a, b) = (run(&random, CONF).1, run(&random, CONF).1);
        assert_eq!(a, b, "seeded");
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4, 5]);
        let other = run(&DiffusionParams { seed: 9, ..random }, CONF).1;
        assert_ne!(a, other, "another seed, another order");
    }

    /// Blocks are written left to right: every position of a block unmasks before any of the
    /// next, each block taking its share of the steps.
    #[test]
    fn blocks_go_left_to_right() {
        let p = DiffusionParams {
            length: 6,
            steps: 6,
            block_length: Some(2),
            ..DiffusionParams::default()
        };
        let (_, at, _) = run(&p, CONF);
        // Block [0,1]: 1 first (0.9); block [2,3]: 3 (0.99); block [4,5]: 5 (0.7).
        assert_eq!(at, vec![1, 0, 3, 2, 5, 4]);
    }

    /// Guidance: w = 1 is the conditional model (one forward a step); otherwise two forwards a
    /// step, mixed as u + w·(c − u).
    #[test]
    fn cfg_mixes_conditional_and_unconditional() {
        let (mut c, u) = (vec![1.0f32, -2.0, 0.5], vec![0.0f32, 1.0, 0.5]);
        let orig = c.clone();
        cfg_mix(&mut c, &u, 1.0);
        assert_eq!(c, orig);
        cfg_mix(&mut c, &u, 2.0);
        assert_eq!(c, vec![2.0, -5.0, 0.5]);
        let mut z = orig.clone();
        cfg_mix(&mut z, &u, 0.0);
        assert_eq!(z, u);
        let p = DiffusionParams {
            length: 6,
            steps: 3,
            cfg: 1.5,
            ..DiffusionParams::default()
        };
        assert_eq!(run(&p, CONF).2, 6);
    }
}
