//! Choosing the next token from a row of logits: repetition penalty, temperature, top-k, top-p,
//! then one draw from the row's own seeded stream (greedy when the temperature is 0).
//!
//! Work happens on the host on one `[vocab]` row at a time: at batch sizes of a few dozen rows the
//! device round trip is noise next to the forward pass, and host code keeps the rules exact.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// How to pick each next token. The defaults are greedy decoding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// 0 means greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    /// CTRL's penalty (> 1 discourages): a positive logit of a token already in the prompt or the
    /// output is divided by it, a negative one multiplied (as HF transformers does).
    pub repetition_penalty: f32,
    /// Seed of the sample streams: sample `i` draws from stream `i` of this seed, so one request
    /// gives the same outputs whatever else is decoded beside it.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// `(name, problem)` of the first impossible value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err((
                "temperature",
                format!("must be ≥ 0, got {}", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(("top_p", format!("must be in (0, 1], got {}", self.top_p)));
        }
        // Outside this range a logit divided by the penalty can overflow to infinity.
        if !(0.01..=100.0).contains(&self.repetition_penalty) {
            return Err((
                "repetition_penalty",
                format!("must be in [0.01, 100], got {}", self.repetition_penalty),
            ));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == 1
    }

    /// The random stream of sample `row`.
    pub fn rng(&self, row: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(row as u64);
        rng
    }
}

/// `log_softmax(logits)[token]`, the model's own log-probability (before any sampling rule).
pub fn logprob(logits: &[f32], token: u32) -> f32 {
    logits[token as usize] - log_sum_exp(logits)
}

pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// Applies the repetition penalty to `logits` in place for every distinct token of `seen`.
pub fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut done = vec![false; logits.len()];
    for &t in seen {
        let t = t as usize;
        if t < logits.len() && !done[t] {
            done[t] = true;
            let l = &mut logits[t];
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

fn argmax(logits: &[f32]) -> u32 {
    // First maximum: ties go to the lowest id, as torch.argmax does.
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The next token of a row. `logits` is modified (penalty applied); `seen` is the prompt plus the
/// tokens generated so far.
pub fn sample(logits: &mut [f32], seen: &[u32], p: &SamplingParams, rng: &mut ChaCha8Rng) -> u32 {
    apply_repetition_penalty(logits, seen, p.repetition_penalty);
    if p.is_greedy() {
        return argmax(logits);
    }
    // Candidates sorted by logit (descending, ties by id so the order is deterministic).
    let mut idx: Vec<u32> = (0..logits.len() as u32)
        .filter(|&i| logits[i as usize] > f32::NEG_INFINITY)
        .collect();
    if idx.is_empty() {
        return argmax(logits);
    }
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if p.top_k > 0 && p.top_k < idx.len() {
        idx.select_nth_unstable_by(p.top_k - 1, by_logit);
        idx.truncate(p.top_k);
    }
    // Only top-p needs the candidates in probability order; sorting the whole vocabulary for
    // every row and step would cost more than the draw.
    if p.top_p < 1.0 {
        idx.sort_unstable_by(by_logit);
    }
    let max = idx
        .iter()
        .map(|&i| logits[i as usize])
        .fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<f64> = idx
        .iter()
        .map(|&i| (((logits[i as usize] - max) / p.temperature) as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|q| *q /= total);
    if p.top_p < 1.0 {
        // Keep tokens while the mass before them is below top_p (the first one always stays).
        let mut mass = 0.0;
        let keep = probs
            .iter()
            .take_while(|&&q| {
                let before = mass;
                mass += q;
                before < p.top_p as f64
            })
            .count()
            .max(1);
        probs.truncate(keep);
        idx.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (k, q) in probs.iter().enumerate() {
        if u < *q {
            return idx[k];
        }
        u -= q;
    }
    *idx.last().expect("at least one candidate")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let mut l = vec![0.5, 2.0, 2.0, -1.0];
        assert_eq!(
            sample(&mut l, &[], &params(0.0), &mut params(0.0).rng(0)),
            1
        );
    }

    #[test]
    fn repetition_penalty_follows_hf() {
        let mut l = vec![2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1], 2.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 2,
            ..Default::default()
        };
        let mut rng = p.rng(0);
        for _ in 0..500 {
            let mut l = vec![3.0, 2.9, 2.8, 0.0];
            assert!(sample(&mut l, &[], &p, &mut rng) < 2);
        }
        // Probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.7 keeps the first two.
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.7,
            ..Default::default()
        };
        let mut rng = p.rng(1);
        let mut hits = [0usize; 4];
        for _ in 0..2000 {
            let mut l = vec![3.0, 2.0, 1.0, 0.0];
            hits[sample(&mut l, &[], &p, &mut rng) as usize] += 1;
        }
        assert_eq!(hits[2] + hits[3], 0, "{hits:?}");
        assert!(hits[0] > hits[1] && hits[1] > 300, "{hits:?}");
    }

    #[test]
    fn sampling_matches_the_softmax() {
        // Frequencies of 20k draws at temperature 2 are within 2% of softmax(l / 2).
        let p = params(2.0);
        let logits = [1.0f32, 0.0, -1.0, 2.0];
        let want: Vec<f64> = {
            let e: Vec<f64> = logits.iter().map(|l| ((l / 2.0) as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| x / s).collect()
        };
        let mut rng = p.rng(7);
        let mut hits = [0f64; 4];
        let n = 20_000;
        for _ in 0..n {
            let mut l = logits.to_vec();
            hits[sample(&mut l, &[], &p, &mut rng) as usize] += 1.0;
        }
        for k in 0..4 {
            assert!(
                (hits[k] / n as f64 - want[k]).abs() < 0.02,
                "{hits:?} {want:?}"
            );
        }
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let p = params(1.0);
        let draw = |row| {
            let mut rng = p.rng(row);
            (0..32)
                .map(|_| sample(&mut [0.0; 50], &[], &p, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn logprob_is_log_softmax() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f32 = l.iter().map(|x| x.exp()).sum();
        assert!((logprob(&l, 2) - (3.0f32.exp() / z).ln()).abs() < 1e-6);
    }
}
