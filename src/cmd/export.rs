//! `anvil export`: a checkpoint as HF safetensors, as GGUF for llama.cpp, or as a quantized
//! Anvil checkpoint.

use anvil_models::quant::Quant;
use anvil_models::{gguf, store_quant};
use burn::tensor::Device;
use anyhow::{Context, Result, bail};
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
}

#[derive(Args)]
#[command(after_help = "Examples:
  anvil export --checkpoint checkpoints/runs/qs --format hf --out exports/qs-hf
  anvil export --checkpoint checkpoints/runs/qs --format gguf --quant q4_0 --out exports/qs-q4_0.gguf
  anvil export --checkpoint checkpoints/runs/qs/checkpoints/best --format anvil --quant q8_0 --out exports/qs-q8_0")]
pub struct ExportArgs {
    /// A checkpoint folder (`<run>/checkpoints/step-N` or `best`) or a run folder (its newest
    /// checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, value_enum, default_value = "hf")]
    format: ExportFormat,
    /// Weight format: f16, q8_0 or q4_0 for gguf (default f16); q8_0 or q4_0 for anvil.
    /// Norms stay f32; with q4_0 the output matrix is q8_0.
    #[arg(long, value_name = "QUANT")]
    quant: Option<String>,
    /// The tokenizer.json to embed or copy (default: the one of the checkpoint's run).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Output: a folder for hf and anvil, a .gguf file for gguf.
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
    };
    if a.format != ExportFormat::Hf {
        super::parent_folder(&a.out)?;
        if a.format == ExportFormat::Gguf && a.out.is_dir() {
            bail!(
                "{}: is a folder; --format gguf writes one file",
                a.out.display()
            );
        }
        if a.format == ExportFormat::Anvil
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
    let (model, checkpoint) = anvil_infer::load_model(&a.checkpoint, &Device::default())?;
    let tokenizer = a
        .tokenizer
        .clone()
        .or_else(|| anvil_infer::load::find_tokenizer(&checkpoint));
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
            let s = gguf::export(
                &model,
                &tok,
                q,
                &model_name(&checkpoint),
                &a.out,
            )?;
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
        (_, None) => unreachable!("gguf and anvil always have a quantization"),
    }
    Ok(())
}

/// The quantized checkpoint, assembled in a hidden folder beside `out` and renamed into place,
/// so `out` never holds half a checkpoint. Returns the size of `model.bpk`.
fn write_anvil(
    model: &anvil_models::Llama,
    quant: Quant,
    tokenizer: Option<&Path>,
    out: &Path,
) -> Result<u64> {
    let parent = super::parent_folder(out)?;
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a folder name", out.display()))?
        .to_string_lossy();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let build = || -> Result<u64> {
        std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        store_quant::save(model, quant, &tmp)?;
        if let Some(tok) = tokenizer {
            std::fs::copy(tok, tmp.join("tokenizer.json"))
                .with_context(|| format!("copying {}", tok.display()))?;
        }
        let bytes = std::fs::metadata(tmp.join(anvil_models::store::WEIGHTS_FILE))?.len();
        if out.is_dir() {
            // Checked empty above; `rename` cannot replace a folder on every platform.
            std::fs::remove_dir(out).with_context(|| format!("replacing {}", out.display()))?;
        }
        std::fs::rename(&tmp, out).with_context(|| format!("moving into {}", out.display()))?;
        Ok(bytes)
    };
    build().inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })
}
