//! Beam search, optionally syntax-aware: with a language set, every candidate beam is re-parsed
//! incrementally (tree-sitter) and one whose code is broken before the frontier is dropped while
//! any unbroken candidate remains (otherwise kept, marked). Finished hypotheses are ranked by
//! length-normalized log-probability; with a language, a hypothesis whose whole text parses wins
//! over any that does not.

use crate::InferError;
use crate::generate::{FinishReason, Generator, first_stop};
use crate::sampling::log_sum_exp;
use crate::syntax::{Parsed, SyntaxChecker};
use anvil_data::lang::Lang;
use burn::tensor::{Int, Tensor, TensorData};

#[derive(Debug, Clone, PartialEq)]
pub struct BeamParams {
    pub beams: usize,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    /// Scores are `logprob / length^length_penalty` (HF's convention; 0 = raw sum).
    pub length_penalty: f32,
    pub syntax: Option<Lang>,
    /// Token healing, as in [`crate::GenerateParams::token_healing`].
    pub token_healing: bool,
}

impl Default for BeamParams {
    fn default() -> Self {
        Self {
            beams: 4,
            max_new_tokens: 128,
            stop: Vec::new(),
            length_penalty: 1.0,
            syntax: None,
            token_healing: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hypothesis {
    pub text: String,
    pub token_ids: Vec<u32>,
    /// Sum of the tokens' log-probabilities.
    pub logprob: f32,
    /// `logprob / length^length_penalty`.
    pub score: f32,
    pub finish_reason: FinishReason,
    /// With a language: whether prompt + text parses without an error after the prompt.
    pub syntax_valid: Option<bool>,
    /// Prompt tokens token healing backed off (`token_ids` begins by rewriting their text).
    pub healed_tokens: usize,
}

struct Beam {
    tokens: Vec<u32>,
    logprob: f32,
    parsed: Option<Parsed>,
    broken: bool,
}

impl Generator {
    /// The finished hypotheses, best first.
    pub fn beam_search(
        &self,
        prompt: &[u32],
        p: &BeamParams,
    ) -> Result<Vec<Hypothesis>, InferError> {
        self.check_decodable()?;
        if p.beams == 0 {
            return Err(InferError::Param("`beams`: must be at least 1".into()));
        }
        if p.stop.iter().any(String::is_empty) {
            return Err(InferError::Param(
                "`stop`: stop sequences must not be empty".into(),
            ));
        }
        let context = self.context_of(prompt);
        let limit = self.budget(&context, p.max_new_tokens)?;
        if limit == 0 {
            return Ok(vec![Hypothesis {
                text: String::new(),
                token_ids: Vec::new(),
                logprob: 0.0,
                score: 0.0,
                finish_reason: FinishReason::Length,
                syntax_valid: None,
                healed_tokens: 0,
            }]);
        }
        // The code the parser sees: special tokens (the end-of-text token an empty prompt starts
        // after) are not code.
        let prompt_text = self
            .tokenizer
            .decode(&context, true)
            .map_err(|e| InferError::Tokenizer(e.to_string()))?;
        let mut checker = p.syntax.map(|l| SyntaxChecker::new(l, prompt_text.len()));
        let norm = |lp: f32, len: usize| lp / (len.max(1) as f32).powf(p.length_penalty);
        // As in sampling: the rewritten prompt tokens come on top of `max_new_tokens`.
        let heal = p.token_healing.then(|| self.heal(&context)).flatten();
        let (context, limit) = match &heal {
            Some(h) => (self.healed_context(&context, h), limit + h.removed),
            None => (context, limit),
        };
        let healed_tokens = heal.as_ref().map_or(0, |h| h.removed);

        let mut tree = self.tree_rows(&[&context], context.len())?;
        let mut caches = self.model.new_caches();
        let mut logits = self.forward_last(&context, 1, 0, tree.as_ref(), &mut caches);
        let mut beams = vec![Beam {
            tokens: Vec::new(),
            logprob: 0.0,
            parsed: checker.as_mut().map(|c| c.parse(prompt_text.clone())),
            broken: false,
        }];
        let mut done: Vec<Hypothesis> = Vec::new();
        let mut pos = context.len();
        while !beams.is_empty() {
            // Candidates: each beam's 2·B best tokens.
            let mut cands: Vec<(usize, u32, f32)> = Vec::new();
            for (b, beam) in beams.iter().enumerate() {
                let lse = log_sum_exp(&logits[b]);
                let row = &mut logits[b];
                let pending = heal.as_ref().and_then(|h| self.pending(h, &beam.tokens));
                if let Some(pending) = pending {
                    self.constrain(pending, row);
                }
                let row = &*row;
                let mut ids: Vec<u32> = (0..row.len() as u32).collect();
                let k = (2 * p.beams).min(ids.len());
                let by =
                    |x: &u32, y: &u32| row[*y as usize].total_cmp(&row[*x as usize]).then(x.cmp(y));
                ids.select_nth_unstable_by(k - 1, by);
                ids.truncate(k);
                // Fewer tokens than 2·B may agree with the text healing still has to rewrite.
                ids.retain(|&t| row[t as usize] > f32::NEG_INFINITY);
                cands.extend(
                    ids.into_iter()
                        .map(|t| (b, t, beam.logprob + row[t as usize] - lse)),
                );
            }
            cands.sort_by(|x, y| y.2.total_cmp(&x.2).then(x.0.cmp(&y.0)).then(x.1.cmp(&y.1)));

            let mut next: Vec<(usize, Beam)> = Vec::new();
            let mut held_back: Vec<(usize, Beam)> = Vec::new();
            for (b, tok, lp) in cands {
                if next.len() >= p.beams {
                    break;
                }
                let parent = &beams[b];
                if self.eos.contains(&tok) {
                    let text = self.completion_text(&parent.tokens, heal.as_ref())?;
                    let h = self.hypothesis(&checker, parent, text, lp, FinishReason::Eos, norm);
                    done.push(Hypothesis { healed_tokens, ..h });
                    continue;
                }
                let mut tokens = parent.tokens.clone();
                tokens.push(tok);
                let mut text = self.completion_text(&tokens, heal.as_ref())?;
                let stopped = first_stop(&text, &p.stop);
                if let Some(cut) = stopped {
                    text.truncate(cut);
                }
                let parsed = match (&mut checker, &parent.parsed) {
                    (Some(c), Some(prev)) => Some(c.extend(prev, format!("{prompt_text}{text}"))),
                    _ => None,
                };
                let broken = match (&checker, &parsed) {
                    (Some(c), Some(pp)) => c.broken_before_frontier(pp),
                    _ => false,
                };
                let beam = Beam {
                    tokens,
                    logprob: lp,
                    parsed,
                    broken,
                };
                if stopped.is_some() || beam.tokens.len() >= limit {
                    let finish = if stopped.is_some() {
                        FinishReason::Stop
                    } else {
                        FinishReason::Length
                    };
                    let h = self.hypothesis(&checker, &beam, text, lp, finish, norm);
                    done.push(Hypothesis { healed_tokens, ..h });
                } else if broken {
                    held_back.push((b, beam));
                } else {
                    next.push((b, beam));
                }
            }
            // Every candidate broken: keep the best of them rather than end with nothing.
            if next.is_empty() {
                next = held_back.into_iter().take(p.beams).collect();
            }
            // Stop once no live beam can beat the worst of B finished hypotheses (with a
            // language, B that parse: broken ones rank below every valid one anyway).
            let mut finished: Vec<f32> = done
                .iter()
                .filter(|h| h.syntax_valid != Some(false))
                .map(|h| h.score)
                .collect();
            if finished.len() >= p.beams {
                finished.sort_by(|a, b| b.total_cmp(a));
                let worst = finished[p.beams - 1];
                let best_live = next
                    .iter()
                    .map(|(_, bm)| norm(bm.logprob, bm.tokens.len()))
                    .fold(f32::NEG_INFINITY, f32::max);
                if best_live <= worst {
                    break;
                }
            }
            if next.is_empty() {
                break;
            }
            let parents: Vec<i64> = next.iter().map(|(b, _)| *b as i64).collect();
            let device = self.model.device();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(parents, [next.len()]), &device);
            for c in &mut caches {
                c.key = c.key.take().map(|k| k.select(0, idx.clone()));
                c.value = c.value.take().map(|v| v.select(0, idx.clone()));
            }
            let last: Vec<u32> = next
                .iter()
                .map(|(_, bm)| *bm.tokens.last().expect("a token"))
                .collect();
            if let Some(t) = &mut tree {
                let parents: Vec<usize> = next.iter().map(|(b, _)| *b).collect();
                t.select(&parents);
                t.push(self, &last)?;
            }
            beams = next.into_iter().map(|(_, bm)| bm).collect();
            logits = self.forward_last(&last, beams.len(), pos, tree.as_ref(), &mut caches);
            pos += 1;
        }
        // With a language, valid code first; then by score.
        done.sort_by(|a, b| {
            b.syntax_valid
                .unwrap_or(true)
                .cmp(&a.syntax_valid.unwrap_or(true))
                .then(b.score.total_cmp(&a.score))
        });
        Ok(done)
    }

    fn hypothesis(
        &self,
        checker: &Option<SyntaxChecker>,
        beam: &Beam,
        text: String,
        logprob: f32,
        finish: FinishReason,
        norm: impl Fn(f32, usize) -> f32,
    ) -> Hypothesis {
        // `beam.parsed` is the parse of exactly prompt + `text` (an end-of-sequence token adds no
        // text; a stop sequence was cut before parsing).
        let syntax_valid = match (checker, &beam.parsed) {
            (Some(c), Some(parsed)) => Some(!beam.broken && c.complete_and_valid(parsed)),
            _ => None,
        };
        let n = beam.tokens.len() + usize::from(finish == FinishReason::Eos);
        Hypothesis {
            text,
            token_ids: beam.tokens.clone(),
            logprob,
            score: norm(logprob, n),
            finish_reason: finish,
            syntax_valid,
            healed_tokens: 0,
        }
    }
}
