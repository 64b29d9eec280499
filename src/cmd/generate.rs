//! `anvil generate`: complete a prompt (or fill in the middle) with a checkpoint, by sampling or
//! by beam search that can keep to valid syntax.

use anvil_data::lang::Lang;
use anvil_infer::{BeamParams, Event, GenerateParams, Generator, SamplingParams, Timing};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// Most samples of one prompt: they are decoded as one batch, each row with its own KV cache.
const MAX_SAMPLES: usize = 1000;
/// Most beams: every step ranks 2 × beams candidates of each beam.
const MAX_BEAMS: usize = 64;

#[derive(Args)]
#[command(after_help = "Examples:
  anvil generate --checkpoint checkpoints/runs/quickstart --prompt 'def fib(n):' --max-tokens 64
  anvil generate --checkpoint RUN --prompt 'import os' --temperature 0.8 --top-p 0.95 --n 4 --seed 1
  anvil generate --checkpoint RUN --prompt 'def f(x):' --suffix '    return y' --max-tokens 32
  anvil generate --checkpoint RUN --prompt 'def f(x):' --beam 4 --syntax python --stop '\\ndef'
  anvil generate --checkpoint BASE --adapter LORA_RUN --prompt 'def fib(n):'")]
pub struct GenerateArgs {
    /// A checkpoint folder (Anvil's, quantized or not, HF's config.json + model.safetensors, or a
    /// LoRA adapter on the base it records) or a run folder (its newest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// A LoRA adapter (PEFT's adapter_config.json + adapter_model.safetensors, or a LoRA run
    /// folder) applied unmerged to --checkpoint.
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// tokenizer.json (default: beside the adapter or the weights, or in their run folder).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The prompt text.
    #[arg(long, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Fill in the middle: the text after the gap (the prompt is the text before it).
    #[arg(long)]
    suffix: Option<String>,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling: keep tokens up to this probability mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// > 1 discourages tokens already in the prompt or output (HF's rule).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Stop at this string (repeatable; `\n`, `\t` and `\\` are unescaped).
    #[arg(long)]
    stop: Vec<String>,
    /// Number of samples.
    #[arg(long, short = 'n', default_value_t = 1)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Beam search with this many beams instead of sampling.
    #[arg(long)]
    beam: Option<usize>,
    /// With --beam: drop beams whose code stops parsing in this language (python, rust, …).
    /// Not with --suffix: the middle of a fill-in is not code on its own.
    #[arg(long, requires = "beam", conflicts_with = "suffix", value_parser = anvil_data::lang::parse_one)]
    syntax: Option<Lang>,
    /// With --beam: scores are logprob / length^this.
    #[arg(long, default_value_t = 1.0, requires = "beam")]
    length_penalty: f32,
    /// Generate past the end-of-sequence token (benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    /// Read the prompt as it is tokenized. By default its last token is backed off and the
    /// model rewrites its text first (token healing), so a prompt that ends part-way through a
    /// usual token, such as a newline before indented code, is continued as the model learned.
    /// Checkpoints of SFT runs turn it off themselves (their generation_config.json).
    #[arg(long)]
    no_token_healing: bool,
    /// One JSON object per sample on stdout instead of plain text.
    #[arg(long)]
    json: bool,
    /// Diffusion denoisers: denoising steps for the whole span (default: one per token).
    #[arg(long)]
    steps: Option<usize>,
    /// Diffusion denoisers: which masked positions each step unmasks first (low_confidence,
    /// random, entropy).
    #[arg(long, default_value = "low_confidence")]
    remasking: anvil_infer::diffusion::Remasking,
    /// Diffusion denoisers: write the span in blocks of this many tokens, left to right.
    #[arg(long)]
    block_length: Option<usize>,
    /// Diffusion denoisers: classifier-free guidance weight (1 = the conditional model alone).
    #[arg(long, default_value_t = 1.0)]
    cfg: f32,
    /// Diffusion denoisers: the language the result is validated in (prompt + span + suffix
    /// must parse).
    #[arg(long, default_value = "python", value_parser = anvil_data::lang::parse_one)]
    lang: Lang,
    /// Diffusion denoisers: when the result does not parse, fill the same hole with this
    /// autoregressive checkpoint (fill-in-the-middle with --suffix) and use that instead.
    #[arg(long, value_name = "CKPT")]
    fallback: Option<PathBuf>,
    /// Write timings (prefill and decode tokens/s) as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    device: super::DeviceArgs,
    /// Worker threads for tensor work (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    super::set_threads(a.threads, "--threads")?;
    let prompt = match (&a.prompt, &a.prompt_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the prompt {}", f.display()))?,
        (None, None) => bail!("give --prompt TEXT or --prompt-file FILE"),
    };
    if a.n > MAX_SAMPLES {
        bail!("-n must be at most {MAX_SAMPLES} samples, got {}", a.n);
    }
    if let Some(b) = a.beam.filter(|&b| b > MAX_BEAMS) {
        bail!("--beam must be at most {MAX_BEAMS} beams, got {b}");
    }
    let stop: Vec<String> = a.stop.iter().map(|s| super::unescape(s)).collect();
    let device = a.device.device()?;
    let generator = Generator::load_on(
        &a.checkpoint,
        a.adapter.as_deref(),
        a.tokenizer.as_deref(),
        &device,
    )?;
    if generator.model.config.diffusion.is_some() {
        return diffuse(&a, &generator, &prompt);
    }
    if a.steps.is_some() || a.block_length.is_some() || a.cfg != 1.0 || a.fallback.is_some() {
        bail!(
            "--steps, --block-length, --cfg and --fallback are for diffusion denoisers; {} is an \
             autoregressive model",
            a.checkpoint.display()
        );
    }
    let ids = match &a.suffix {
        Some(suffix) => generator.fim_prompt(&prompt, suffix)?,
        None => generator.encode(&prompt)?,
    };
    let (rows, flag) = match a.beam {
        Some(b) => (b, "--beam"),
        None => (a.n, "-n"),
    };
    check_memory(
        &generator,
        rows,
        ids.len().saturating_add(a.max_tokens),
        flag,
    )?;
    let mut out = std::io::stdout().lock();

    if let Some(beams) = a.beam {
        let params = BeamParams {
            beams,
            max_new_tokens: a.max_tokens,
            stop,
            length_penalty: a.length_penalty,
            syntax: a.syntax,
            token_healing: generator.token_healing(a.no_token_healing),
        };
        let t0 = std::time::Instant::now();
        let hyps = generator.beam_search(&ids, &params)?;
        let best = hyps.first().context("beam search finished no hypothesis")?;
        if a.json {
            for (rank, h) in hyps.iter().enumerate() {
                let mut v = serde_json::to_value(h)?;
                v["rank"] = rank.into();
                writeln!(out, "{v}")?;
            }
        } else {
            writeln!(out, "{}", best.text)?;
            if best.syntax_valid == Some(false) {
                eprintln!(
                    "warning: no beam produced code that parses; this is the best-scoring one"
                );
            }
        }
        eprintln!(
            "beam search: {} hypotheses in {:.2} s",
            hyps.len(),
            t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    let params = GenerateParams {
        max_new_tokens: a.max_tokens,
        n: a.n,
        sampling: SamplingParams {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            repetition_penalty: a.repetition_penalty,
            seed: a.seed,
        },
        stop,
        ignore_eos: a.ignore_eos,
        token_healing: generator.token_healing(a.no_token_healing),
    };
    // One plain-text sample streams as it is generated.
    let stream = a.n == 1 && !a.json;
    let mut write_err = None;
    let generation = generator.generate_streaming(&ids, &params, |ev| {
        if let (true, Event::Delta { text, .. }) = (stream, ev)
            && let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush())
        {
            write_err.get_or_insert(e);
        }
    })?;
    out.flush()?;
    if let Some(e) = write_err {
        return Err(e).context("writing to stdout");
    }
    for (i, c) in generation.completions.iter().enumerate() {
        if a.json {
            let v = serde_json::json!({
                "index": i,
                "text": c.text,
                "finish_reason": c.finish_reason,
                "token_ids": c.token_ids,
                "healed_tokens": c.healed_tokens,
                "logprob": c.logprobs.iter().sum::<f32>(),
            });
            writeln!(out, "{v}")?;
        } else if stream {
            writeln!(out)?;
        } else {
            writeln!(out, "--- sample {i} ({:?})", c.finish_reason)?;
            writeln!(out, "{}", c.text)?;
        }
    }
    out.flush()?;
    report(&generation.timing, a.report.as_ref())
}

/// `generate` with a diffusion denoiser: the span between the prompt and `--suffix` (if any) is
/// unmasked in `--steps` steps, then validated (prompt + span + suffix must parse in `--lang`);
/// when it does not and `--fallback` names an autoregressive checkpoint, that model fills the
/// same hole and its text is used. The output says which path wrote it.
fn diffuse(a: &GenerateArgs, g: &Generator, prompt: &str) -> Result<()> {
    use anvil_infer::diffusion::DiffusionParams;
    if a.beam.is_some() {
        bail!("--beam is for autoregressive models; a diffusion denoiser unmasks (--steps)");
    }
    let suffix = a.suffix.clone().unwrap_or_default();
    let (prefix_ids, suffix_ids) = (g.encode(prompt)?, g.encode(&suffix)?);
    let mut out = std::io::stdout().lock();
    for i in 0..a.n {
        let p = DiffusionParams {
            length: a.max_tokens,
            steps: a.steps.unwrap_or(a.max_tokens),
            remasking: a.remasking,
            block_length: a.block_length,
            cfg: a.cfg,
            temperature: a.temperature,
            seed: a.seed.wrapping_add(i as u64),
        };
        let infill = g.diffuse(&prefix_ids, &suffix_ids, &p)?;
        let valid = |text: &str| {
            anvil_infer::syntax::valid_code(a.lang, &format!("{prompt}{text}{suffix}"))
        };
        let diffusion_valid = valid(&infill.text);
        let (text, path) = match (&a.fallback, diffusion_valid) {
            (Some(ckpt), false) => (fallback(a, ckpt, prompt, &suffix, p.seed)?, "fallback"),
            _ => (infill.text.clone(), "diffusion"),
        };
        let syntax_valid = path == "diffusion" && diffusion_valid || valid(&text);
        if a.json {
            let v = serde_json::json!({
                "index": i,
                "text": text,
                "path": path,
                "syntax_valid": syntax_valid,
                "diffusion_text": infill.text,
                "diffusion_valid": diffusion_valid,
                "token_ids": infill.token_ids,
                "steps": infill.steps,
                "forwards": infill.forwards,
                "seconds": infill.seconds,
            });
            writeln!(out, "{v}")?;
        } else {
            if a.n > 1 {
                writeln!(out, "--- sample {i} ({path})")?;
            }
            writeln!(out, "{text}")?;
        }
        eprintln!(
            "diffusion: {} tokens in {} steps ({} forwards), {:.2} s ({:.1} steps/s, {:.1} tokens/s); \
             {}; written by {path}",
            p.length,
            infill.steps,
            infill.forwards,
            infill.seconds,
            infill.steps as f64 / infill.seconds.max(1e-9),
            p.length as f64 / infill.seconds.max(1e-9),
            if diffusion_valid {
                "parses"
            } else {
                "does not parse"
            },
        );
    }
    Ok(())
}

/// The autoregressive fallback's text for the same hole: fill-in-the-middle with a suffix, a
/// continuation without.
fn fallback(
    a: &GenerateArgs,
    ckpt: &std::path::Path,
    prompt: &str,
    suffix: &str,
    seed: u64,
) -> Result<String> {
    let ar = Generator::load_on(ckpt, None, None, &a.device.device()?)
        .with_context(|| format!("--fallback {}", ckpt.display()))?;
    if ar.model.config.diffusion.is_some() {
        bail!(
            "--fallback {}: a diffusion denoiser; the fallback must be autoregressive",
            ckpt.display()
        );
    }
    let sampling = SamplingParams {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
        seed,
    };
    let healing = ar.token_healing(a.no_token_healing);
    Ok(ar.fill_hole(prompt, suffix, a.max_tokens, sampling, healing)?)
}

/// Refuses `rows` sequences of up to `tokens` tokens whose KV caches and logits would not fit in
/// the memory left after loading the model, before any is allocated.
fn check_memory(g: &Generator, rows: usize, tokens: usize, flag: &str) -> Result<()> {
    use anvil_models::memory::{available_bytes, human_bytes};
    let c = &g.model.config;
    let context = tokens.min(g.context_length()) as u128;
    let kv = (c.n_layers * 2 * c.kv_heads() * c.head_dim()) as u128;
    let need = rows as u128 * (context * kv + c.vocab_size as u128) * 4;
    if let Some(available) = available_bytes()
        && need > available as u128
    {
        bail!(
            "{flag} {rows}: the KV caches of {rows} sequences of {context} tokens need about {}              but {} of memory is available; lower {flag} or --max-tokens",
            human_bytes(need),
            human_bytes(available as u128)
        );
    }
    Ok(())
}

fn report(t: &Timing, file: Option<&PathBuf>) -> Result<()> {
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let prefill = rate(t.prompt_tokens, t.prefill_seconds);
    let decode = rate(t.generated_tokens, t.decode_seconds);
    eprintln!(
        "prompt {} tokens ({prefill:.0} tokens/s) · generated {} tokens in {:.2} s ({decode:.1} tokens/s)",
        t.prompt_tokens, t.generated_tokens, t.decode_seconds
    );
    if let Some(path) = file {
        let mut v = serde_json::to_value(t)?;
        v["prefill_tokens_per_second"] = prefill.into();
        v["decode_tokens_per_second"] = decode.into();
        anvil_data::atomic::write(path, serde_json::to_string_pretty(&v)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
