//! Checkpoints: everything needed to continue a run bit for bit. One folder per checkpoint:
//!
//! ```text
//! <run>/checkpoints/step-000200/
//!   model.json, model.bpk   the model's config and weights (Burn's burnpack; `anvil_models::store`)
//!   optimizer.safetensors   AdamW's moments by parameter path (`<path>.m`, `<path>.v`)
//!   state.json              step, optimizer step, data position, best validation loss
//! ```
//!
//! A checkpoint is written in a hidden `.partial` folder and renamed into place, so a crash never
//! leaves a half-written one that looks complete; `best/` is replaced the same way. What a kill
//! mid-write leaves behind is cleaned up by [`clean_leftovers`] when the run starts again.

use crate::loader::DataPosition;
use crate::optim::AdamW;
use anvil_models::generation::GenerationConfig;
use anvil_models::lora::LoraConfig;
use anvil_models::store::{self, StoreError};
use anvil_models::{Llama, peft};
use burn::tensor::Device;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |err| CheckpointError::Io {
        path: path.to_path_buf(),
        err,
    }
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Invalid {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// The trainer's own state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    pub optimizer_step: u64,
    pub position: DataPosition,
    pub best_val_loss: Option<f64>,
    /// Input tokens trained on so far.
    pub tokens_seen: u64,
    /// RL runs: the best held-out pass@1 so far (`best/` holds its checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_pass_at_1: Option<f64>,
    /// Ranks of a data-parallel run (absent: one process). A resume needs the same number: each
    /// step's rows are split by rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world_size: Option<usize>,
    /// f16 runs: the loss scale and its clean-step count, so a resume scales as the run would
    /// have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<anvil_models::precision::LossScaler>,
}

const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";

pub use store::step_name;

/// What a checkpoint holds of the model.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// The whole model (`model.json` + `model.bpk`).
    Full,
    /// Only the LoRA adapters, in PEFT's format, with a reference to the frozen base (an
    /// absolute path) and its fingerprint: a checkpoint the size of the adapters, which anything
    /// that reads checkpoints opens as base + adapter.
    Adapter {
        config: &'a LoraConfig,
        base: &'a str,
        /// [`anvil_models::peft::base_fingerprint`] of the f32 base, computed once per run.
        fingerprint: &'a str,
    },
}

/// Writes a checkpoint of `model` (as `weights` says), `opt` and `state` as
/// `<dir>/step-NNNNNN`.
pub fn save(
    dir: &Path,
    model: &Llama,
    weights: Weights,
    generation: &GenerationConfig,
    opt: &AdamW,
    state: &TrainerState,
) -> Result<PathBuf, CheckpointError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let final_dir = dir.join(step_name(state.step));
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        step_name(state.step),
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    match weights {
        Weights::Full => store::save(model, &tmp)?,
        Weights::Adapter {
            config,
            base,
            fingerprint,
        } => peft::save_adapter_of(model, config, base, fingerprint, &tmp)
            .map_err(|e| invalid(&tmp, e))?,
    }
    if *generation != GenerationConfig::default() {
        generation.write(&tmp).map_err(io(&tmp))?;
    }
    write_optimizer(&tmp.join(OPTIMIZER_FILE), opt)?;
    let state_path = tmp.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    fs::write(&state_path, json).map_err(io(&state_path))?;
    sync_dir(&tmp);
    if final_dir.exists() {
        // A checkpoint of the same step from a run that died before recording it: replace it.
        fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    sync_dir(dir);
    Ok(final_dir)
}

/// Makes `<dir>/best` a copy of checkpoint `src`.
pub fn mark_best(dir: &Path, src: &Path) -> Result<(), CheckpointError> {
    let tmp = dir.join(format!(".best.partial-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    // Every file the checkpoint has (the model's or the adapter's, the optimizer's, the state).
    let files = fs::read_dir(src).map_err(io(src))?;
    for entry in files {
        let entry = entry.map_err(io(src))?;
        let f = entry.file_name();
        let from = entry.path();
        // A hard link costs nothing; copy where the file system will not link.
        if fs::hard_link(&from, tmp.join(&f)).is_err() {
            fs::copy(&from, tmp.join(&f)).map_err(io(&from))?;
        }
    }
    let best = dir.join("best");
    let old = dir.join(format!(".best.old-{}", std::process::id()));
    if best.exists() {
        fs::rename(&best, &old).map_err(io(&best))?;
    }
    fs::rename(&tmp, &best).map_err(io(&best))?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// What [`clean_leftovers`] found and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cleanup {
    /// Unfinished folders of dead writers, deleted.
    pub removed: Vec<PathBuf>,
    /// The `.best.old-PID` folder renamed back to `best/` (a kill between `mark_best`'s two
    /// renames).
    pub restored_best: Option<PathBuf>,
    /// Leftover names whose writer is still alive (or might be), left alone.
    pub kept: Vec<PathBuf>,
}

impl Cleanup {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.restored_best.is_none() && self.kept.is_empty()
    }
}

/// The hidden folders a checkpoint write goes through, by name alone:
/// `.step-<digits>.partial-PID` ([`save`]), `.best.partial-PID` and `.best.old-PID`
/// ([`mark_best`]). Returns the writer's pid and whether it is an old `best/`.
fn leftover(name: &str) -> Option<(libc::pid_t, bool)> {
    let pid = |s: &str| -> Option<libc::pid_t> {
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| s.parse().ok()).flatten().filter(|p| *p > 0)
    };
    if let Some(p) = name.strip_prefix(".best.partial-") {
        return Some((pid(p)?, false));
    }
    if let Some(p) = name.strip_prefix(".best.old-") {
        return Some((pid(p)?, true));
    }
    let (step, p) = name.strip_prefix(".step-")?.split_once(".partial-")?;
    (!step.is_empty() && step.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    Some((pid(p)?, false))
}

/// Whether `pid` may still be writing. Called before this process writes any checkpoint, so its
/// own pid (recycled from a killed run, common in containers) is not a writer; any other
/// existing process is assumed to be one (a recycled pid keeps its folder until a later start).
fn writer_alive(pid: libc::pid_t) -> bool {
    if pid as u32 == std::process::id() {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; `pid` is positive (one process).
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Deals with what a process killed in the middle of [`save`] or [`mark_best`] leaves in a run's
/// `checkpoints/` folder: its hidden `.step-N.partial-PID`, `.best.partial-PID` and
/// `.best.old-PID` folders are deleted when PID is not a live process, and when `best/` is
/// missing but a dead writer's `.best.old-PID` is there (killed between the two renames), that
/// folder becomes `best/` again. Nothing else is touched: not other names, not files or symlinks
/// with those names, not the folders of a live writer. Call it before writing checkpoints.
pub fn clean_leftovers(dir: &Path) -> Result<Cleanup, CheckpointError> {
    let mut out = Cleanup::default();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(out); // no checkpoints yet
    };
    // (path, pid, is an old best, modified)
    let mut found = Vec::new();
    for e in entries {
        let e = e.map_err(io(dir))?;
        let Some((pid, old_best)) = e.file_name().to_str().and_then(leftover) else {
            continue;
        };
        // file_type does not follow symlinks: only real folders are ours.
        if !e.file_type().map_err(io(&e.path()))?.is_dir() {
            continue;
        }
        if writer_alive(pid) {
            out.kept.push(e.path());
            continue;
        }
        let modified = e.metadata().and_then(|m| m.modified()).ok();
        found.push((e.path(), old_best, modified));
    }
    found.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
    let best = dir.join("best");
    if fs::symlink_metadata(&best).is_err()
        && let Some(i) = found.iter().rposition(|f| f.1)
    {
        let (old, _, _) = found.remove(i);
        fs::rename(&old, &best).map_err(io(&best))?;
        out.restored_best = Some(old);
    }
    for (path, _, _) in found {
        fs::remove_dir_all(&path).map_err(io(&path))?;
        out.removed.push(path);
    }
    out.removed.sort();
    out.kept.sort();
    if !out.is_empty() {
        sync_dir(dir);
    }
    Ok(out)
}

/// Completed `step-N` checkpoints in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<(usize, PathBuf)> {
    store::step_dirs(dir)
        .into_iter()
        .filter(|(_, p)| p.join(STATE_FILE).is_file())
        .collect()
}

/// Deletes all but the `keep` newest checkpoints.
pub fn prune(dir: &Path, keep: usize) -> Result<(), CheckpointError> {
    let all = list(dir);
    let n = all.len().saturating_sub(keep.max(1));
    for (_, path) in all.into_iter().take(n) {
        fs::remove_dir_all(&path).map_err(io(&path))?;
    }
    Ok(())
}

pub fn read_state(ckpt: &Path) -> Result<TrainerState, CheckpointError> {
    let p = ckpt.join(STATE_FILE);
    let bytes = fs::read(&p).map_err(io(&p))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(&p, e))
}

/// Restores AdamW's moments and step from `ckpt`.
pub fn load_optimizer(
    opt: &mut AdamW,
    ckpt: &Path,
    step: u64,
    device: &Device,
) -> Result<(), CheckpointError> {
    let p = ckpt.join(OPTIMIZER_FILE);
    let bytes = fs::read(&p).map_err(io(&p))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| invalid(&p, e))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(invalid(&p, format!("`{name}` is not f32")));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, data);
    }
    opt.import(step, tensors, device)
        .map_err(|e| invalid(&p, e))
}

fn write_optimizer(path: &Path, opt: &AdamW) -> Result<(), CheckpointError> {
    let buffers: Vec<(String, Vec<u8>, usize)> = opt
        .export()
        .into_iter()
        .map(|(name, v)| {
            let n = v.len();
            (name, v.iter().flat_map(|x| x.to_le_bytes()).collect(), n)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(name, bytes, n)| {
            let view = TensorView::new(Dtype::F32, vec![*n], bytes).expect("consistent view");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).map_err(|e| invalid(path, e))
}

fn sync_dir(dir: &Path) {
    // Best effort: make the rename durable where the platform allows.
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::leftover;

    #[test]
    fn leftover_names_are_exactly_the_hidden_checkpoint_folders() {
        assert_eq!(leftover(".step-000012.partial-4242"), Some((4242, false)));
        assert_eq!(leftover(".step-1234567.partial-7"), Some((7, false)));
        assert_eq!(leftover(".best.partial-99"), Some((99, false)));
        assert_eq!(leftover(".best.old-99"), Some((99, true)));
        for other in [
            "best",
            "step-000012",
            ".step-000012",
            ".step-.partial-12",
            ".step-00x012.partial-12",
            ".step-000012.partial-",
            ".step-000012.partial-12a",
            ".step-000012.partial--12",
            ".step-000012.partial-0",
            ".step-000012.partial-99999999999",
            ".best.old-",
            ".best.old-+5",
            ".best.old-5/",
            ".best.older-5",
            "x.best.old-5",
            ".best.partial-5.tmp",
            ".keep",
        ] {
            assert_eq!(leftover(other), None, "{other}");
        }
    }
}
