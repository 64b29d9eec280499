//! Generate-then-score: samples for a problem set from a checkpoint, in the samples-file shape
//! (`task_id`, `completion`, plus how each one ended) that the evaluator reads.

use anvil_data::problems::Problem;
use anvil_infer::{GenerateParams, Generator, InferError};
use serde_json::{Map, Value, json};

/// What happened while generating, for the user.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GenerateReport {
    pub n_samples: usize,
    pub generated_tokens: usize,
    /// Prompts that did not fit the context with `max_new_tokens` after them, kept by their end.
    pub truncated_prompts: usize,
    pub seconds: f64,
}

/// A problem's prompt as ids, cut from the left so that `max_new_tokens` (at most half the
/// context) fit after it: the end of a prompt (signature, docstring) matters most. Returns
/// whether it was cut.
pub fn encode_prompt(
    g: &Generator,
    prompt: &str,
    max_new_tokens: usize,
) -> Result<(Vec<u32>, bool), InferError> {
    let ctx = g.context_length();
    let mut ids = g.encode(prompt)?;
    let room = ctx
        .saturating_sub(max_new_tokens.min(ctx / 2))
        .min(ctx - 1)
        .max(1);
    let cut = ids.len() > room;
    if cut {
        ids.drain(..ids.len() - room);
    }
    Ok((ids, cut))
}

/// `params.n` completions of every problem's prompt. Problem `i` samples with seed
/// `params.sampling.seed + i` (its index in `problems`); the samples do not depend on the
/// problems batched beside it, up to float rounding.
pub fn generate_samples(
    g: &Generator,
    problems: &[Problem],
    params: &GenerateParams,
    mut on_problem: impl FnMut(),
) -> Result<(Vec<Map<String, Value>>, GenerateReport), InferError> {
    let t0 = std::time::Instant::now();
    let mut rows = Vec::with_capacity(problems.len() * params.n);
    let mut report = GenerateReport::default();
    // Several problems per forward pass (up to ROWS samples in all): small models are bound by
    // per-step overhead, so a batch of rows costs little more than one.
    const ROWS: usize = 16;
    let per_batch = (ROWS / params.n).max(1);
    let mut start = 0;
    while start < problems.len() {
        let end = (start + per_batch).min(problems.len());
        let mut prompts = Vec::with_capacity(end - start);
        for p in &problems[start..end] {
            let (ids, truncated) = encode_prompt(g, &p.prompt, params.max_new_tokens)?;
            report.truncated_prompts += usize::from(truncated);
            prompts.push(ids);
        }
        let seeds: Vec<u64> = (start..end)
            .map(|i| params.sampling.seed.wrapping_add(i as u64))
            .collect();
        let (outs, _) = g.generate_batch(&prompts, &seeds, params, |_, _| {})?;
        for (p, completions) in problems[start..end].iter().zip(outs) {
            for (k, c) in completions.into_iter().enumerate() {
                report.generated_tokens += c.completion_tokens();
                let Value::Object(row) = json!({
                    "task_id": p.task_id,
                    "completion": c.text,
                    "sample": k,
                    "finish_reason": c.finish_reason,
                    "completion_tokens": c.completion_tokens(),
                }) else {
                    unreachable!("json! of an object literal")
                };
                rows.push(row);
            }
            on_problem();
        }
        start = end;
    }
    report.n_samples = rows.len();
    report.seconds = t0.elapsed().as_secs_f64();
    Ok((rows, report))
}

/// [`generate_samples`] with a diffusion denoiser: each sample is a span of `params.length`
/// tokens unmasked after the prompt (seed `params.seed + i·n + k` for sample k of problem i),
/// cut at the first of `stop`.
pub fn generate_infills(
    g: &Generator,
    problems: &[Problem],
    params: &anvil_infer::diffusion::DiffusionParams,
    n: usize,
    stop: &[String],
    mut on_problem: impl FnMut(),
) -> Result<(Vec<Map<String, Value>>, GenerateReport), InferError> {
    let t0 = std::time::Instant::now();
    let mut rows = Vec::with_capacity(problems.len() * n);
    let mut report = GenerateReport::default();
    for (i, p) in problems.iter().enumerate() {
        let (ids, truncated) = encode_prompt(g, &p.prompt, params.length)?;
        report.truncated_prompts += usize::from(truncated);
        for k in 0..n {
            let seed = params.seed.wrapping_add((i * n + k) as u64);
            let infill = g.diffuse(
                &ids,
                &[],
                &anvil_infer::diffusion::DiffusionParams {
                    seed,
                    ..params.clone()
                },
            )?;
            let mut text = infill.text;
            let stopped = anvil_infer::generate::first_stop(&text, stop);
            if let Some(cut) = stopped {
                text.truncate(cut);
            }
            report.generated_tokens += params.length;
            let Value::Object(row) = json!({
                "task_id": p.task_id,
                "completion": text,
                "sample": k,
                "finish_reason": if stopped.is_some() { "stop" } else { "length" },
                "completion_tokens": params.length,
                "steps": infill.steps,
            }) else {
                unreachable!("json! of an object literal")
            };
            rows.push(row);
        }
        on_problem();
    }
    report.n_samples = rows.len();
    report.seconds = t0.elapsed().as_secs_f64();
    Ok((rows, report))
}
