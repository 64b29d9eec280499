//! `anvil export`: a checkpoint as HF safetensors, as GGUF for llama.cpp, as a quantized
//! Anvil checkpoint, or (for a LoRA fine-tune) its adapter alone in PEFT's format. An adapter is
//! merged into its base (`--merge`) before any full-model format; it is never dropped silently.

use anvil_infer::load::{self, Layout};
use anvil_models::quant::Quant;
use anvil_models::{gguf, lora, peft, store_quant};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// HF transformers: config.json + model.safetensors (+ tokenizer.json), f32.
    Hf,
    /// One GGUF file for llama.cpp (architecture `llama`, tokenizer included).
    Gguf,
    /// A quantized Anvil checkpoint folder (model.json, model.bpk, quant.json, tokenizer.json)
    /// that everything loading Anvil checkpoints reads as it is.
    Anvil,
    /// A LoRA adapter alone, in PEFT's format (adapter_config.json, adapter_model.safetensors)
    /// plus anvil_base.json (the base's path and weight fingerprint).
    Peft,
}

#[derive(Args)]
#[command(after_help = "Examples:
  anvil export --checkpoint checkpoints/runs/qs --format hf --out exports/qs-hf
  anvil export --checkpoint checkpoints/runs/qs --format gguf --quant q4_0 --out exports/qs-q4_0.gguf
  anvil export --checkpoint checkpoints/runs/qs/checkpoints/best --format anvil --quant q8_0 --out exports/qs-q8_0
  anvil export --checkpoint checkpoints/runs/lora --merge --format hf --out exports/lora-hf
  anvil export --checkpoint checkpoints/runs/qs --adapter checkpoints/runs/lora --format peft --out exports/lora-peft")]
pub struct ExportArgs {
    /// A checkpoint folder (`<run>/checkpoints/step-N` or `best`), a run folder (its newest
    /// checkpoint), or a LoRA adapter on the base it records.
    #[arg(long)]
    checkpoint: PathBuf,
    /// A LoRA adapter (PEFT's adapter_config.json + adapter_model.safetensors, or a LoRA run
    /// folder) on --checkpoint: exported alone with --format peft, or merged with --merge.
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "hf")]
    format: ExportFormat,
    /// Fold the LoRA adapter into the base weights (W + A·B·scaling) and export the merged model
    /// as hf, gguf or anvil.
    #[arg(long)]
    merge: bool,
    /// Weight format: f16, q8_0 or q4_0 for gguf (default f16); q8_0 or q4_0 for anvil.
    /// Norms stay f32; with q4_0 the output matrix is q8_0.
    #[arg(long, value_name = "QUANT")]
    quant: Option<String>,
    /// The tokenizer.json to embed or copy (default: the one of the adapter's or the checkpoint's
    /// run; with --format peft, none is copied unless given).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Output: a folder for hf, anvil and peft (new or empty for anvil and peft), a .gguf file
    /// for gguf.
    #[arg(long)]
    out: PathBuf,
}

/// The run's name for `general.name`: `<run>/checkpoints/<ckpt>` gives `<run>`.
fn model_name(ckpt: &Path) -> String {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
    };
    match ckpt.parent() {
        Some(p) if p.file_name().is_some_and(|n| n == "checkpoints") => name(p.parent()),
        _ => name(Some(ckpt)),
    }
    .unwrap_or_else(|| "anvil".into())
}

pub fn run(a: ExportArgs) -> Result<()> {
    // Everything about the arguments is checked before the (slow) model load.
    let quant = a
        .quant
        .as_deref()
        .map(|q| {
            q.parse::<Quant>()
                .map_err(|e| anyhow::anyhow!("--quant: {e}"))
        })
        .transpose()?;
    let quant = match (a.format, quant) {
        (ExportFormat::Hf, Some(q)) => {
            bail!(
                "--quant {q}: --format hf writes f32 weights; quantize with --format gguf or anvil"
            )
        }
        (ExportFormat::Hf, None) => None,
        (ExportFormat::Gguf, q) => Some(q.unwrap_or(Quant::F16)),
        (ExportFormat::Anvil, Some(q @ (Quant::Q8_0 | Quant::Q4_0))) => Some(q),
        (ExportFormat::Anvil, other) => bail!(
            "--format anvil needs --quant q8_0 or q4_0{}",
            other.map_or(String::new(), |q| format!(" (not {q})"))
        ),
        (ExportFormat::Peft, Some(q)) => {
            bail!("--quant {q}: --format peft writes the adapter's f32 weights as they are")
        }
        (ExportFormat::Peft, None) => None,
    };
    check_adapter_args(&a)?;
    if a.format != ExportFormat::Hf {
        super::parent_folder(&a.out)?;
        if a.format == ExportFormat::Gguf && a.out.is_dir() {
            bail!(
                "{}: is a folder; --format gguf writes one file",
                a.out.display()
            );
        }
        if matches!(a.format, ExportFormat::Anvil | ExportFormat::Peft)
            && a.out.exists()
            && std::fs::read_dir(&a.out).map_or(true, |mut d| d.next().is_some())
        {
            bail!(
                "{}: already exists and is not an empty folder",
                a.out.display()
            );
        }
    }
    if let Some(t) = &a.tokenizer
        && !t.is_file()
    {
        bail!("{}: no such tokenizer file", t.display());
    }
    let weights = load::load_weights(&a.checkpoint, a.adapter.as_deref(), &Device::flex())?;
    if a.format == ExportFormat::Peft {
        return write_peft(&a, &weights);
    }
    let tokenizer = a.tokenizer.clone().or_else(|| weights.find_tokenizer());
    // The run's name for GGUF: the fine-tune's when there is one.
    let name_dir = weights
        .adapter
        .as_ref()
        .map_or(weights.checkpoint.clone(), |ad| ad.dir.clone());
    let checkpoint = weights.checkpoint;
    let model = if a.merge {
        lora::merge(weights.model)
    } else {
        weights.model
    };
    match (a.format, quant) {
        (ExportFormat::Hf, _) => {
            anvil_models::hf::export(&model, &a.out)?;
            if let Some(tok) = &tokenizer {
                std::fs::copy(tok, a.out.join("tokenizer.json"))
                    .with_context(|| format!("copying {}", tok.display()))?;
            }
            println!("wrote {}", a.out.display());
        }
        (ExportFormat::Gguf, Some(q)) => {
            let Some(tok) = tokenizer else {
                bail!(
                    "{}: no tokenizer.json in the run (GGUF embeds it; pass --tokenizer)",
                    checkpoint.display()
                );
            };
            let s = gguf::export(&model, &tok, q, &model_name(&name_dir), &a.out)?;
            println!(
                "wrote {} ({q}, {} tensors, {:.1} MB)",
                a.out.display(),
                s.tensors.len(),
                s.bytes as f64 / 1e6
            );
        }
        (ExportFormat::Anvil, Some(q)) => {
            let bytes = write_anvil(&model, q, tokenizer.as_deref(), &a.out)?;
            println!(
                "wrote {} ({q}, model.bpk {:.1} MB)",
                a.out.display(),
                bytes as f64 / 1e6
            );
        }
        (ExportFormat::Peft, _) => unreachable!("written above"),
        (_, None) => unreachable!("gguf and anvil always have a quantization"),
    }
    Ok(())
}

/// `--format peft`: the loaded adapter alone, through [`write_folder`], recording the base
/// that was loaded under it.
fn write_peft(a: &ExportArgs, weights: &load::Weights) -> Result<()> {
    let adapter = weights
        .adapter
        .as_ref()
        .context("--format peft: no LoRA adapter was loaded")?;
    // The base actually loaded, absolute, so `--checkpoint OUT` alone finds it again.
    let base = std::path::absolute(&weights.checkpoint)
        .with_context(|| weights.checkpoint.display().to_string())?;
    write_folder(&a.out, |tmp| {
        peft::save_adapter(
            &weights.model,
            &adapter.config,
            &base.to_string_lossy(),
            tmp,
        )?;
        // Only an explicit --tokenizer travels with the adapter: the base's is found again
        // through the recorded base.
        if let Some(tok) = &a.tokenizer {
            std::fs::copy(tok, tmp.join("tokenizer.json"))
                .with_context(|| format!("copying {}", tok.display()))?;
        }
        Ok(())
    })?;
    println!(
        "wrote {} (LoRA adapter, r = {}, {}; base {})",
        a.out.display(),
        adapter.config.r,
        adapter.config.target_modules.join(" "),
        base.display()
    );
    Ok(())
}

/// Refuses, before anything is loaded, an adapter that would be dropped or a missing one:
/// full-model formats need `--merge` to include an adapter, and `--format peft` and `--merge`
/// need one.
fn check_adapter_args(a: &ExportArgs) -> Result<()> {
    if a.merge && a.format == ExportFormat::Peft {
        bail!("--merge writes a full model; --format peft writes the adapter alone (drop --merge)");
    }
    // Whether the checkpoint itself is an adapter; a path that does not resolve is reported by
    // the load with its own message.
    let ckpt_is_adapter = matches!(load::resolve(&a.checkpoint), Ok((_, Layout::Adapter)));
    let has_adapter = a.adapter.is_some() || ckpt_is_adapter;
    let what = || match &a.adapter {
        Some(d) => format!("--adapter {}", d.display()),
        None => format!("{}: a LoRA adapter", a.checkpoint.display()),
    };
    if a.format == ExportFormat::Peft && !has_adapter {
        bail!(
            "--format peft: {} is not a LoRA adapter; give --adapter DIR (or a LoRA run or \
             adapter folder as --checkpoint)",
            a.checkpoint.display()
        );
    }
    if a.merge && !has_adapter {
        bail!(
            "--merge: {} is not a LoRA adapter and no --adapter was given: nothing to merge",
            a.checkpoint.display()
        );
    }
    if has_adapter && !a.merge && a.format != ExportFormat::Peft {
        let f = match a.format {
            ExportFormat::Hf => "hf",
            ExportFormat::Gguf => "gguf",
            _ => "anvil",
        };
        bail!(
            "{}: --format {f} writes a full model; pass --merge to export base + adapter merged, \
             or --format peft for the adapter alone",
            what()
        );
    }
    Ok(())
}

/// The quantized checkpoint, written through [`write_folder`]. Returns the size of `model.bpk`.
fn write_anvil(
    model: &anvil_models::Llama,
    quant: Quant,
    tokenizer: Option<&Path>,
    out: &Path,
) -> Result<u64> {
    let mut bytes = 0;
    write_folder(out, |tmp| {
        store_quant::save(model, quant, tmp)?;
        if let Some(tok) = tokenizer {
            std::fs::copy(tok, tmp.join("tokenizer.json"))
                .with_context(|| format!("copying {}", tok.display()))?;
        }
        bytes = std::fs::metadata(tmp.join(anvil_models::store::WEIGHTS_FILE))?.len();
        Ok(())
    })?;
    Ok(bytes)
}

/// Runs `build` on a hidden folder beside `out` and renames it into place, so `out` never holds
/// half an export; on failure the hidden folder is removed. `out` must be absent or empty
/// (checked by the caller before the slow load).
fn write_folder(out: &Path, build: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = super::parent_folder(out)?;
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a folder name", out.display()))?
        .to_string_lossy();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let run = || -> Result<()> {
        std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        build(&tmp)?;
        if out.is_dir() {
            // Checked empty above; `rename` cannot replace a folder on every platform.
            std::fs::remove_dir(out).with_context(|| format!("replacing {}", out.display()))?;
        }
        std::fs::rename(&tmp, out).with_context(|| format!("moving into {}", out.display()))
    };
    run().inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })
}
