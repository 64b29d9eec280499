//! `manifest.json` of a prepared corpus: what went in, what came out, and why every dropped file
//! was dropped. It holds no timestamps, so the same inputs and seed give the same bytes; it is
//! written last, so its presence marks a complete corpus.

use crate::dedup::DedupConfig;
use crate::filter::FilterConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub anvil_version: String,
    /// The command line that produced the corpus.
    pub command: Vec<String>,
    pub inputs: Vec<InputSummary>,
    pub config: ManifestConfig,
    pub counts: Counts,
    pub bytes: Bytes,
    pub splits: BTreeMap<String, SplitSummary>,
    pub per_language: BTreeMap<String, LangSummary>,
    pub per_license: BTreeMap<String, u64>,
    /// Where records were skipped before filtering (`file:line: why`), first few.
    pub skip_examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSummary {
    /// As given on the command line (`python-stdlib` stays `python-stdlib`).
    pub source: String,
    pub resolved: String,
    /// Candidate files of the selected languages read from this input.
    pub files: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestConfig {
    pub langs: Vec<String>,
    pub val_fraction: f64,
    pub seed: u64,
    pub shard_bytes: u64,
    pub filter: FilterConfig,
    pub dedup: DedupConfig,
}

/// `candidates = kept + Σ dropped`; `skipped` records never became candidates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub candidates: u64,
    pub kept: u64,
    pub dropped: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    /// Files of other languages or extensions, ignored.
    pub other_files: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bytes {
    pub candidates: u64,
    pub kept: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    pub files: u64,
    pub bytes: u64,
    pub shards: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LangSummary {
    pub files: u64,
    pub bytes: u64,
}

impl Manifest {
    pub fn read(dir: &std::path::Path) -> crate::Result<Manifest> {
        let path = dir.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|e| crate::DataError::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| crate::DataError::invalid(&path, e.to_string()))
    }
}
