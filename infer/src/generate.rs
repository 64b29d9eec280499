//! Decoding with a KV cache: one prefill of the prompt, then one forward per step for all the
//! samples of a request at once (the cache is copied to `n` rows after the prefill), finished rows
//! dropped from the batch as they end. Each row samples from its own seeded stream, so a row's
//! output does not depend on the rows beside it.

use crate::healing::{Healing, TokenBytes};
use crate::sampling::{self, SamplingParams};
use crate::tree::{Placement, TreeRows};
use crate::{InferError, Loaded};
use anvil_models::{KvCache, Llama, TreePositions};
use burn::tensor::{Int, Tensor, TensorData};
use std::sync::OnceLock;
use std::time::Instant;
use tokenizers::Tokenizer;

/// What to generate for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_new_tokens: usize,
    /// Number of independent samples of the prompt.
    pub n: usize,
    pub sampling: SamplingParams,
    /// Generation of a sample ends at the first of these strings; the text excludes it.
    pub stop: Vec<String>,
    /// Keep going past the end-of-sequence token (benchmarks).
    pub ignore_eos: bool,
    /// Back off the prompt's last token and make the first generated tokens rewrite its text
    /// (see [`crate::healing`]): a prompt ending part-way through a usual token (a lone newline
    /// before indented code) is then continued the way the model learned.
    pub token_healing: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            n: 1,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            token_healing: true,
        }
    }
}

/// Refuses models the decoder cannot run: a tree model whose config does not say how to place
/// tokens (see [`Generator::check_decodable`]).
pub fn check_decodable(config: &anvil_models::LlamaConfig) -> Result<(), InferError> {
    if config.diffusion.is_some() {
        return Err(InferError::Param(
            "a diffusion denoiser (`arch = \"diffusion\"`) does not decode left to right: it \
             unmasks (`anvil generate --steps N …`, docs/models.md)"
                .into(),
        ));
    }
    Placement::of(config).map(|_| ())
}

impl GenerateParams {
    pub fn validate(&self) -> Result<(), InferError> {
        let bad = |key: &str, msg: String| Err(InferError::Param(format!("`{key}`: {msg}")));
        if self.n == 0 {
            return bad("n", "must be at least 1".into());
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop", "stop sequences must not be empty".into());
        }
        if let Err((k, m)) = self.sampling.validate() {
            return bad(k, m);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// A stop sequence was produced.
    Stop,
    /// The end-of-sequence token was produced.
    Eos,
    /// `max_new_tokens` or the model's context length was reached.
    Length,
}

impl FinishReason {
    /// OpenAI's spelling: both a stop sequence and end of sequence are `stop`.
    pub fn openai(self) -> &'static str {
        match self {
            Self::Stop | Self::Eos => "stop",
            Self::Length => "length",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Completion {
    /// Generated text after the prompt, cut before the first stop sequence.
    pub text: String,
    /// Every generated token (the end-of-sequence token excluded), also those of a stop sequence
    /// and those that rewrote the text of healed prompt tokens.
    pub token_ids: Vec<u32>,
    /// The model's log-probability of each generated token (raw logits, before any sampling rule
    /// or healing constraint).
    pub logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
    /// Prompt tokens token healing backed off: the model read the prompt without them and
    /// `token_ids` begins by rewriting their text, which `text` leaves out.
    pub healed_tokens: usize,
}

impl Completion {
    /// Tokens after the prompt: the final sequence's length minus the prompt's, so a healed
    /// completion counts as many as one that was not (the rewritten prompt tokens are not new).
    pub fn completion_tokens(&self) -> usize {
        self.token_ids.len().saturating_sub(self.healed_tokens)
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Timing {
    pub prompt_tokens: usize,
    pub prefill_seconds: f64,
    /// Forward passes after the prefill.
    pub decode_steps: usize,
    pub generated_tokens: usize,
    pub decode_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Generation {
    pub completions: Vec<Completion>,
    pub timing: Timing,
}

/// Streaming events: text becomes visible only once it can no longer turn into a stop sequence
/// or be the first bytes of a multi-byte character.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Delta { index: usize, text: &'a str },
    Done { index: usize, finish: FinishReason },
}

/// One prompt and how to continue it, for [`Generator::decode_requests`].
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub prompt: &'a [u32],
    pub params: &'a GenerateParams,
}

/// A loaded model, its tokenizer and end-of-sequence ids.
pub struct Generator {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub eos: Vec<u32>,
    /// Each token's text bytes, for token healing (built on first use).
    pub(crate) token_bytes: OnceLock<Option<TokenBytes>>,
    /// What the checkpoint's `generation_config.json` asks for.
    pub defaults: anvil_models::generation::GenerationConfig,
}

impl Generator {
    /// Whether to heal the prompt's last token: off when the user said so, else what the
    /// checkpoint records (SFT checkpoints: off), else on.
    pub fn token_healing(&self, user_off: bool) -> bool {
        !user_off && self.defaults.token_healing.unwrap_or(true)
    }
}

impl Generator {
    /// A generator over `model`: a trainer builds one around its policy's current weights (they
    /// are shared, not copied) for each batch of rollouts.
    pub fn new(
        model: Llama,
        tokenizer: Tokenizer,
        eos: Vec<u32>,
        defaults: anvil_models::generation::GenerationConfig,
    ) -> Self {
        Self {
            model,
            tokenizer,
            eos,
            token_bytes: OnceLock::new(),
            defaults,
        }
    }
}

impl From<Loaded> for Generator {
    fn from(l: Loaded) -> Self {
        Self::new(l.model, l.tokenizer, l.eos, l.generation)
    }
}

/// One sample being decoded.
struct Row {
    index: usize,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    rng: rand_chacha::ChaCha8Rng,
    emitted: usize,
    text: String,
    finish: Option<FinishReason>,
}

impl Generator {
    pub fn vocab_size(&self) -> usize {
        self.model.config.vocab_size
    }

    pub fn context_length(&self) -> usize {
        self.model.config.max_seq_len
    }

    /// Prompt text to ids (special-token strings stay plain text).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, InferError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| InferError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, InferError> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| InferError::Tokenizer(e.to_string()))
    }

    /// A fill-in-the-middle prompt in PSM order, as the data pipeline trains it:
    /// `<|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>`; the model writes the middle.
    pub fn fim_prompt(&self, prefix: &str, suffix: &str) -> Result<Vec<u32>, InferError> {
        self.fim_ids(&self.encode(prefix)?, &self.encode(suffix)?)
    }

    /// [`Self::fim_prompt`] of already encoded parts.
    fn fim_ids(&self, prefix: &[u32], suffix: &[u32]) -> Result<Vec<u32>, InferError> {
        use anvil_data::tokenizer::{FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX};
        let id = |s: &str| {
            self.tokenizer.token_to_id(s).ok_or_else(|| {
                InferError::Param(format!("the tokenizer has no {s} token for --suffix"))
            })
        };
        let mut ids = vec![id(FIM_PREFIX)?];
        ids.extend_from_slice(prefix);
        ids.push(id(FIM_SUFFIX)?);
        ids.extend_from_slice(suffix);
        ids.push(id(FIM_MIDDLE)?);
        Ok(ids)
    }

    /// The text this autoregressive model writes into the hole between `prefix` and `suffix`
    /// (fill-in-the-middle; a continuation when `suffix` is empty), at most `max_tokens` (and
    /// half the context), the context cut nearest the hole when it does not fit: the fallback of
    /// diffusion infills and of the Builder.
    pub fn fill_hole(
        &self,
        prefix: &str,
        suffix: &str,
        max_tokens: usize,
        sampling: SamplingParams,
        token_healing: bool,
    ) -> Result<String, InferError> {
        let ctx = self.context_length();
        let max_new = max_tokens.min(ctx / 2).max(1);
        let room = ctx - max_new;
        let pre = self.encode(prefix)?;
        let ids = if suffix.is_empty() {
            pre[pre.len().saturating_sub(room)..].to_vec()
        } else {
            let suf = self.encode(suffix)?;
            let room = room.saturating_sub(3);
            let keep_suf = suf.len().min(room / 3);
            let keep_pre = pre.len().min(room - keep_suf);
            self.fim_ids(&pre[pre.len() - keep_pre..], &suf[..keep_suf])?
        };
        let params = GenerateParams {
            max_new_tokens: max_new,
            sampling,
            token_healing: token_healing && suffix.is_empty(),
            ..GenerateParams::default()
        };
        let g = self.generate(&ids, &params)?;
        Ok(g.completions
            .into_iter()
            .next()
            .map(|c| c.text)
            .unwrap_or_default())
    }

    /// Checks `prompt` and returns how many tokens may be generated after it.
    pub fn budget(&self, prompt: &[u32], max_new_tokens: usize) -> Result<usize, InferError> {
        let vocab = self.vocab_size();
        if let Some(&t) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(InferError::Param(format!(
                "prompt token {t} is outside the vocabulary ({vocab})"
            )));
        }
        let ctx = self.context_length();
        if prompt.len() >= ctx {
            return Err(InferError::Param(format!(
                "the prompt has {} tokens; the model's context is {ctx}",
                prompt.len()
            )));
        }
        Ok(max_new_tokens.min(ctx - prompt.len()))
    }

    /// An empty prompt starts after an end-of-sequence token, as documents do in training.
    pub fn context_of(&self, prompt: &[u32]) -> Vec<u32> {
        if prompt.is_empty() {
            vec![self.eos[0]]
        } else {
            prompt.to_vec()
        }
    }

    /// Refuses models this decoder cannot run: a tree model needs its language and path levels
    /// to place each new token.
    pub fn check_decodable(&self) -> Result<(), InferError> {
        check_decodable(&self.model.config)
    }

    /// Runs `ids` (`batch` rows of equal length) through the model after what `caches` hold and
    /// returns the last position's logits of each row, on the host. A tree model reads `tree`,
    /// the positions of every row's keys (the tokens cached and these).
    pub fn forward_last(
        &self,
        ids: &[u32],
        batch: usize,
        start: usize,
        tree: Option<&TreeRows>,
        caches: &mut [KvCache],
    ) -> Vec<Vec<f32>> {
        let tree = tree.map(TreeRows::batch);
        self.logits_last(ids, batch, start, None, tree.as_ref(), caches)
    }

    /// [`Self::forward_last`]; `segments` (`[batch · keys]`, 0 = padding) masks padded keys out;
    /// `tree`: a tree model's positions of every key of every row.
    fn logits_last(
        &self,
        ids: &[u32],
        batch: usize,
        start: usize,
        segments: Option<&[u16]>,
        tree: Option<&TreePositions>,
        caches: &mut [KvCache],
    ) -> Vec<Vec<f32>> {
        let seq = ids.len() / batch;
        let h = self.model.hidden_in_tree(
            ids,
            batch,
            start,
            segments,
            tree,
            Some(caches),
            &mut Vec::new(),
        );
        let [b, _, d] = h.dims();
        let last = h.narrow(1, seq - 1, 1).reshape([b, d]);
        let logits = last.matmul(self.model.head_weight());
        let vocab = self.vocab_size();
        let flat = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        flat.chunks_exact(vocab).map(<[f32]>::to_vec).collect()
    }

    /// Generates `params.n` samples of `prompt`.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
    ) -> Result<Generation, InferError> {
        self.generate_streaming(prompt, params, |_| {})
    }

    /// [`Self::generate`], reporting text as it becomes final.
    pub fn generate_streaming(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        on_event: impl FnMut(Event<'_>),
    ) -> Result<Generation, InferError> {
        self.generate_cancellable(prompt, params, || false, on_event)
    }

    /// [`Self::generate_streaming`] that gives up once `cancelled()` is true (asked before every
    /// forward pass), so a server stops spending compute on a client that went away. Samples cut
    /// short end with [`FinishReason::Length`] and get no `Done` event.
    pub fn generate_cancellable(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        cancelled: impl Fn() -> bool,
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<Generation, InferError> {
        let req = Request { prompt, params };
        let (mut out, timing) =
            self.decode_requests(&[req], |_| cancelled(), |_, ev| on_event(ev))?;
        Ok(Generation {
            completions: out.pop().expect("one request"),
            timing,
        })
    }

    /// `params.n` samples of each prompt, all decoded as one batch; prompt `p` samples with seed
    /// `seeds[p]`. Events carry the prompt's index.
    pub fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        params: &GenerateParams,
        on_event: impl FnMut(usize, Event<'_>),
    ) -> Result<(Vec<Vec<Completion>>, Timing), InferError> {
        assert_eq!(prompts.len(), seeds.len(), "one seed per prompt");
        let params: Vec<GenerateParams> = seeds
            .iter()
            .map(|&seed| GenerateParams {
                sampling: SamplingParams {
                    seed,
                    ..params.sampling.clone()
                },
                ..params.clone()
            })
            .collect();
        let reqs: Vec<Request<'_>> = prompts
            .iter()
            .zip(&params)
            .map(|(prompt, params)| Request { prompt, params })
            .collect();
        self.decode_requests(&reqs, |_| false, on_event)
    }

    /// Decodes several requests (each a prompt with its own parameters and `n` samples) as one
    /// batch, so separate requests share every forward pass. Prompts of different lengths are
    /// left-padded and the padding is masked out: rotary attention only sees relative positions,
    /// so a padded row computes what it would alone, up to float rounding. Request `r` stops
    /// early once `cancelled(r)`; events carry the request's index.
    pub fn decode_requests(
        &self,
        reqs: &[Request<'_>],
        cancelled: impl Fn(usize) -> bool,
        mut on_event: impl FnMut(usize, Event<'_>),
    ) -> Result<(Vec<Vec<Completion>>, Timing), InferError> {
        self.check_decodable()?;
        for r in reqs {
            r.params.validate()?;
        }
        let mut contexts: Vec<Vec<u32>> = reqs.iter().map(|r| self.context_of(r.prompt)).collect();
        let mut limits = contexts
            .iter()
            .zip(reqs)
            .map(|(c, r)| self.budget(c, r.params.max_new_tokens))
            .collect::<Result<Vec<_>, _>>()?;
        // A healed prompt is read without its last token(s); the tokens that rewrite them come on
        // top of `max_new_tokens`, so the whole sequence is as long as it would be unhealed.
        let heals: Vec<Option<Healing>> = reqs
            .iter()
            .enumerate()
            .map(|(p, r)| {
                let h = (r.params.token_healing && limits[p] > 0)
                    .then(|| self.heal(&contexts[p]))
                    .flatten()?;
                contexts[p] = self.healed_context(&contexts[p], &h);
                limits[p] += h.removed;
                Some(h)
            })
            .collect();
        let mut timing = Timing {
            prompt_tokens: contexts.iter().map(Vec::len).sum(),
            ..Default::default()
        };
        let mut rows: Vec<(usize, Row)> = Vec::new();
        for (p, r) in reqs.iter().enumerate() {
            for i in 0..r.params.n {
                let row = Row {
                    index: i,
                    tokens: Vec::new(),
                    logprobs: Vec::new(),
                    rng: r.params.sampling.rng(i),
                    emitted: 0,
                    text: String::new(),
                    finish: (limits[p] == 0).then_some(FinishReason::Length),
                };
                if let Some(finish) = row.finish {
                    on_event(p, Event::Done { index: i, finish });
                }
                rows.push((p, row));
            }
        }
        let live = |p: usize| limits[p] > 0 && !cancelled(p);
        if !(0..reqs.len()).any(live) {
            return Ok((self.finish(rows, &heals), timing));
        }

        // Prefill every prompt, left-padded to the longest.
        let t0 = Instant::now();
        let width = contexts.iter().map(Vec::len).max().expect("a prompt");
        let padded = contexts.iter().any(|c| c.len() < width);
        let mut ids = Vec::with_capacity(reqs.len() * width);
        // Per batch row, one segment id per key position: 0 = padding, 1 = the sequence.
        let mut segs: Vec<Vec<u16>> = Vec::with_capacity(reqs.len());
        for c in &contexts {
            ids.extend(std::iter::repeat_n(self.eos[0], width - c.len()));
            ids.extend_from_slice(c);
            let mut s = vec![0u16; width - c.len()];
            s.resize(width, 1);
            segs.push(s);
        }
        let ctx: Vec<&[u32]> = contexts.iter().map(Vec::as_slice).collect();
        let mut tree = self.tree_rows(&ctx, width)?;
        let mut caches = self.model.new_caches();
        let first = self.forward(
            &ids,
            reqs.len(),
            0,
            padded.then_some(&segs),
            tree.as_ref(),
            &mut caches,
        );
        timing.prefill_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();

        // Batch row b decodes rows[active[b]]; request p's samples start as copies of its row.
        let mut active: Vec<usize> = (0..rows.len())
            .filter(|&r| rows[r].1.finish.is_none())
            .collect();
        let take: Vec<usize> = active.iter().map(|&r| rows[r].0).collect();
        if take != (0..reqs.len()).collect::<Vec<_>>() {
            select_rows(&mut caches, &take, &self.model.device());
            if let Some(t) = &mut tree {
                t.select(&take);
            }
        }
        segs = take.iter().map(|&p| segs[p].clone()).collect();
        let mut logits: Vec<Vec<f32>> = take.iter().map(|&p| first[p].clone()).collect();
        let mut seen = Vec::new();
        let mut pos = width;
        loop {
            let mut next = Vec::with_capacity(active.len());
            let mut keep = Vec::with_capacity(active.len());
            for (b, &ri) in active.iter().enumerate() {
                let (p, row) = &mut rows[ri];
                let params = reqs[*p].params;
                seen.clear();
                seen.extend_from_slice(&contexts[*p]);
                seen.extend_from_slice(&row.tokens);
                let raw = &mut logits[b];
                let lp_all = sampling::log_sum_exp(raw);
                let heal = heals[*p].as_ref();
                if let Some(pending) = heal.and_then(|h| self.pending(h, &row.tokens)) {
                    // Masked tokens keep no logit; the chosen one keeps its raw value.
                    self.constrain(pending, raw);
                }
                // The penalty rewrites logits in place; the log-probability is of the raw ones.
                let penalized = params.sampling.repetition_penalty != 1.0;
                let lp_raw = penalized.then(|| raw.clone());
                let tok = sampling::sample(raw, &seen, &params.sampling, &mut row.rng);
                let lp_tok = lp_raw.as_ref().unwrap_or(raw)[tok as usize] - lp_all;
                if !params.ignore_eos && self.eos.contains(&tok) {
                    row.finish = Some(FinishReason::Eos);
                } else {
                    row.tokens.push(tok);
                    row.logprobs.push(lp_tok);
                    timing.generated_tokens += 1;
                    row.text = self.completion_text(&row.tokens, heal)?;
                    if let Some(cut) = first_stop(&row.text, &params.stop) {
                        row.text.truncate(cut);
                        row.finish = Some(FinishReason::Stop);
                    } else if row.tokens.len() >= limits[*p] {
                        row.finish = Some(FinishReason::Length);
                    }
                }
                let p = *p;
                emit(row, &params.stop, &mut |ev| on_event(p, ev));
                if row.finish.is_none() && !cancelled(p) {
                    next.push(tok);
                    keep.push(b);
                }
            }
            if keep.is_empty() {
                break;
            }
            if keep.len() < active.len() {
                select_rows(&mut caches, &keep, &self.model.device());
                if let Some(t) = &mut tree {
                    t.select(&keep);
                }
                active = keep.iter().map(|&b| active[b]).collect();
                segs = keep.iter().map(|&b| std::mem::take(&mut segs[b])).collect();
            }
            segs.iter_mut().for_each(|s| s.push(1));
            if let Some(t) = &mut tree {
                t.push(self, &next)?;
            }
            logits = self.forward(
                &next,
                active.len(),
                pos,
                padded.then_some(&segs),
                tree.as_ref(),
                &mut caches,
            );
            timing.decode_steps += 1;
            pos += 1;
        }
        timing.decode_seconds = t1.elapsed().as_secs_f64();
        Ok((self.finish(rows, &heals), timing))
    }

    /// [`Self::forward_last`] with per-row key segments (padding masked out) and tree positions
    /// when given.
    fn forward(
        &self,
        ids: &[u32],
        batch: usize,
        start: usize,
        segs: Option<&Vec<Vec<u16>>>,
        tree: Option<&TreeRows>,
        caches: &mut [KvCache],
    ) -> Vec<Vec<f32>> {
        let flat: Option<Vec<u16>> = segs.map(|s| s.concat());
        let tree = tree.map(TreeRows::batch);
        self.logits_last(ids, batch, start, flat.as_deref(), tree.as_ref(), caches)
    }

    fn finish(&self, rows: Vec<(usize, Row)>, heals: &[Option<Healing>]) -> Vec<Vec<Completion>> {
        let mut out = vec![Vec::new(); heals.len()];
        for (p, r) in rows {
            out[p].push(Completion {
                text: r.text,
                token_ids: r.tokens,
                logprobs: r.logprobs,
                finish_reason: r.finish.unwrap_or(FinishReason::Length),
                healed_tokens: heals[p].as_ref().map_or(0, |h| h.removed),
            });
        }
        out
    }
}

/// Keeps batch rows `idx` (in that order, repeats allowed) of every cache.
fn select_rows(caches: &mut [KvCache], idx: &[usize], device: &burn::tensor::Device) {
    let idx: Vec<i64> = idx.iter().map(|&b| b as i64).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx.clone(), [idx.len()]), device);
    for c in caches {
        c.key = c.key.take().map(|k| k.select(0, idx.clone()));
        c.value = c.value.take().map(|v| v.select(0, idx.clone()));
    }
}

/// Byte offset of the earliest stop sequence in `text`.
pub fn first_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// How much of `text` is final: not a possible start of a stop sequence, not a partly decoded
/// character (byte-level BPE shows those as U+FFFD until the rest arrives).
fn settled(text: &str, stop: &[String]) -> usize {
    let mut base = text.len();
    while text[..base].ends_with('\u{FFFD}') {
        base -= '\u{FFFD}'.len_utf8();
    }
    let mut end = base;
    for s in stop {
        // The longest proper prefix of `s` that `text[..base]` ends with is held back.
        let prefixes: Vec<&str> = s.char_indices().skip(1).map(|(i, _)| &s[..i]).collect();
        if let Some(p) = prefixes
            .into_iter()
            .rev()
            .find(|p| text[..base].ends_with(p))
        {
            end = end.min(base - p.len());
        }
    }
    end
}

fn emit(row: &mut Row, stop: &[String], on_event: &mut impl FnMut(Event<'_>)) {
    let upto = if row.finish.is_some() {
        row.text.len()
    } else {
        settled(&row.text, stop)
    };
    if upto > row.emitted {
        on_event(Event::Delta {
            index: row.index,
            text: &row.text[row.emitted..upto],
        });
        row.emitted = upto;
    }
    if let Some(finish) = row.finish {
        on_event(Event::Done {
            index: row.index,
            finish,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_holds_back_stop_prefixes_and_partial_chars() {
        let stop = vec!["\ndef".to_string()];
        assert_eq!(settled("x = 1\nde", &stop), 5);
        assert_eq!(settled("x = 1\n", &stop), 5);
        assert_eq!(settled("x = 1", &stop), 5);
        assert_eq!(settled("ab\u{FFFD}", &[]), 2);
        assert_eq!(first_stop("a\nprint\ndef", &stop), Some(7));
        assert_eq!(first_stop("a", &stop), None);
    }
}
