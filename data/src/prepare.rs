//! `anvil data prepare`: sources in, a filtered, deduplicated, license-tagged, split corpus of
//! Parquet shards out.
//!
//! The corpus is built in a `<out>.<pid>.partial` directory and renamed to `<out>` only when
//! complete, so an interrupted run can never leave something that looks like a finished corpus.

use crate::dedup::{self, DedupConfig};
use crate::error::{DataError, Result};
use crate::filter::{self, DropReason, FilterConfig};
use crate::lang::Lang;
use crate::license::LicenseDetector;
use crate::manifest::{
    Bytes, Counts, InputSummary, LangSummary, Manifest, ManifestConfig, SplitSummary,
};
use crate::minhash_index::{self, MinHashIndex};
use crate::shard::{self, Record, Split};
use crate::source::{self, SourceFile};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Everything that decides the corpus. Also the `[data]` section of a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrepareConfig {
    /// Directories, `.jsonl[.gz]` / `.parquet` files, or `python-stdlib`.
    pub sources: Vec<String>,
    pub langs: Vec<Lang>,
    /// Share of files (by content hash) that go to the validation split.
    pub val_fraction: f64,
    pub seed: u64,
    /// Target uncompressed content bytes per shard.
    pub shard_bytes: u64,
    pub filter: FilterConfig,
    pub dedup: DedupConfig,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            sources: vec![source::PYTHON_STDLIB.to_string()],
            langs: Lang::ALL.to_vec(),
            val_fraction: 0.02,
            seed: 0,
            shard_bytes: 64 << 20,
            filter: FilterConfig::default(),
            dedup: DedupConfig::default(),
        }
    }
}

impl PrepareConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DataError::Config(m));
        if self.sources.is_empty() {
            return bad("no sources given".into());
        }
        if self.langs.is_empty() {
            return bad("no languages selected".into());
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(format!(
                "val_fraction must be in [0, 1), got {}",
                self.val_fraction
            ));
        }
        if self.shard_bytes == 0 {
            return bad("shard_bytes must be positive".into());
        }
        self.filter
            .validate()
            .map_err(|m| DataError::Config(format!("filter.{m}")))?;
        self.dedup
            .validate()
            .map_err(|m| DataError::Config(format!("dedup.{m}")))?;
        Ok(())
    }
}

/// A file that passed the per-file filters, with what the shard stores about it.
struct Candidate {
    file: SourceFile,
    text: String,
    stats: filter::TextStats,
    parse: crate::parse::ParseStats,
    hash: String,
}

fn parse_ok(
    lang: Lang,
    path: &str,
    text: &str,
    cfg: &FilterConfig,
) -> Option<crate::parse::ParseStats> {
    let tree = crate::parse::parse(lang, path, text.as_bytes())?;
    let stats = crate::parse::stats(&tree);
    (stats.error_fraction() <= cfg.max_parse_error_fraction).then_some(stats)
}

fn analyze(mut file: SourceFile, cfg: &FilterConfig) -> std::result::Result<Candidate, DropReason> {
    filter::check_bytes(&file.bytes)?;
    // Checked above; taking the bytes avoids copying every file once more.
    let text =
        String::from_utf8(std::mem::take(&mut file.bytes)).map_err(|_| DropReason::Undecodable)?;
    let stats = filter::text_stats(&text);
    filter::check_text(&text, &stats, cfg)?;
    // `.h` is shared by C and C++: a header that only parses as C++ is C++.
    let parse = match parse_ok(file.lang, &file.path, &text, cfg) {
        Some(p) => p,
        None if file.lang == Lang::C && file.path.ends_with(".h") => {
            let p = parse_ok(Lang::Cpp, &file.path, &text, cfg).ok_or(DropReason::ParseFailure)?;
            file.lang = Lang::Cpp;
            p
        }
        None => return Err(DropReason::ParseFailure),
    };
    let hash = dedup::content_hash(&text);
    Ok(Candidate {
        file,
        text,
        stats,
        parse,
        hash,
    })
}

/// Validation split by content hash and seed: identical files always land together, and the
/// split never depends on file order.
pub fn is_val(content_hash: &str, seed: u64, val_fraction: f64) -> bool {
    let h = xxh3_64_with_seed(content_hash.as_bytes(), seed);
    (h as f64 / u64::MAX as f64) < val_fraction
}

pub struct RunOptions {
    pub overwrite: bool,
    pub command: Vec<String>,
}

pub fn prepare(cfg: &PrepareConfig, out: &Path, opts: &RunOptions) -> Result<Manifest> {
    cfg.validate()?;
    let resolved: Vec<PathBuf> = cfg
        .sources
        .iter()
        .map(|s| source::resolve(s))
        .collect::<Result<_>>()?;
    let protect: Vec<&Path> = resolved.iter().map(PathBuf::as_path).collect();
    let staging = crate::atomic::StagedDir::new(out, opts.overwrite, &protect)?;

    let spinner = crate::progress::spinner("reading sources");
    let collected = source::collect(&resolved, &cfg.langs)?;
    spinner.finish_and_clear();
    if collected.files.is_empty() {
        let langs: Vec<_> = cfg.langs.iter().map(|l| l.name()).collect();
        let skipped: u64 = collected.skipped.values().sum();
        let why = if skipped > 0 {
            format!(
                "; {skipped} record(s) skipped, first: {}",
                collected
                    .skip_examples
                    .first()
                    .map(String::as_str)
                    .unwrap_or("?")
            )
        } else {
            String::new()
        };
        return Err(DataError::invalid(
            cfg.sources.join(", "),
            format!(
                "no source files of the selected languages ({}) found{why}",
                langs.join(", ")
            ),
        ));
    }
    let mut inputs: Vec<InputSummary> = cfg
        .sources
        .iter()
        .zip(&resolved)
        .map(|(s, r)| InputSummary {
            source: s.clone(),
            resolved: r.display().to_string(),
            files: 0,
        })
        .collect();
    for f in &collected.files {
        inputs[f.source_idx].files += 1;
    }

    let mut counts = Counts {
        skipped: collected.skipped.clone(),
        other_files: collected.other_files,
        ..Default::default()
    };
    let mut bytes = Bytes::default();
    let drop = |counts: &mut Counts, r: DropReason| {
        *counts.dropped.entry(r.name().to_string()).or_default() += 1
    };

    // Per-file filters and parsing, in parallel, results in corpus order.
    counts.candidates = collected.files.len() as u64;
    bytes.candidates = collected.files.iter().map(|f| f.bytes.len() as u64).sum();
    let pb = crate::progress::bar(collected.files.len() as u64, "parsing", false);
    let analyzed: Vec<_> = collected
        .files
        .into_par_iter()
        .map(|f| {
            let r = analyze(f, &cfg.filter);
            pb.inc(1);
            r
        })
        .collect();
    pb.finish_and_clear();
    let mut cands = Vec::with_capacity(analyzed.len());
    for a in analyzed {
        match a {
            Ok(c) => cands.push(c),
            Err(r) => drop(&mut counts, r),
        }
    }

    if cfg.dedup.exact {
        let hashes: Vec<&str> = cands.iter().map(|c| c.hash.as_str()).collect();
        let dups = dedup::exact_duplicates(&hashes);
        remove_indices(&mut cands, &dups);
        (0..dups.len()).for_each(|_| drop(&mut counts, DropReason::ExactDuplicate));
    }
    // Signatures serve near-dedup and the corpus index that the license check reads.
    let spinner = crate::progress::spinner("minhash");
    let texts: Vec<&str> = cands.iter().map(|c| c.text.as_str()).collect();
    let mut sigs = dedup::signatures(&texts, &cfg.dedup);
    if cfg.dedup.near {
        let dups = dedup::near_duplicates_of(&sigs, &cfg.dedup);
        remove_indices(&mut cands, &dups);
        remove_indices(&mut sigs, &dups);
        (0..dups.len()).for_each(|_| drop(&mut counts, DropReason::NearDuplicate));
    }
    spinner.finish_and_clear();

    let detector = LicenseDetector::default();
    let pb = crate::progress::bar(cands.len() as u64, "licenses", false);
    let records: Vec<(Split, Record)> = cands
        .into_par_iter()
        .map(|c| {
            let license = detector.detect(
                &c.text,
                c.file.license_file.as_deref(),
                c.file.license_hint.as_deref(),
            );
            let split = if is_val(&c.hash, cfg.seed, cfg.val_fraction) {
                Split::Val
            } else {
                Split::Train
            };
            pb.inc(1);
            let record = Record {
                path: c.file.path,
                lang: c.file.lang,
                license,
                n_bytes: c.text.len() as u64,
                content: c.text,
                n_lines: c.stats.n_lines,
                max_line_len: c.stats.max_line_len,
                alnum_fraction: c.stats.alnum_fraction as f32,
                n_ast_nodes: c.parse.n_nodes,
                ast_depth: c.parse.depth,
                parse_error_fraction: c.parse.error_fraction() as f32,
                content_hash: c.hash,
                source: cfg.sources[c.file.source_idx].clone(),
            };
            (split, record)
        })
        .collect();
    pb.finish_and_clear();
    // Written before the manifest, so a corpus that has a manifest has its index.
    let files: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|(_, r)| (r.path.as_str(), r.license.as_str(), r.content.as_str()))
        .collect();
    MinHashIndex::from_corpus(cfg.dedup.num_perm(), cfg.dedup.ngram, &files, sigs)?
        .write(&staging.path().join(minhash_index::FILE_NAME))?;
    counts.kept = records.len() as u64;
    bytes.kept = records.iter().map(|(_, r)| r.n_bytes).sum();

    let mut per_language: BTreeMap<String, LangSummary> = BTreeMap::new();
    let mut per_license: BTreeMap<String, u64> = BTreeMap::new();
    for (_, r) in &records {
        let l = per_language.entry(r.lang.name().to_string()).or_default();
        l.files += 1;
        l.bytes += r.n_bytes;
        *per_license.entry(r.license.clone()).or_default() += 1;
    }

    let manifest = write_corpus(
        staging.path(),
        records,
        cfg,
        inputs,
        counts,
        bytes,
        per_language,
        per_license,
        collected.skip_examples,
        opts,
    )?;
    staging.commit()?;
    Ok(manifest)
}

fn remove_indices<T>(v: &mut Vec<T>, sorted_idx: &[usize]) {
    let mut drop = sorted_idx.iter().peekable();
    let mut i = 0;
    v.retain(|_| {
        let keep = drop.peek() != Some(&&i);
        if !keep {
            drop.next();
        }
        i += 1;
        keep
    });
}

#[allow(clippy::too_many_arguments)]
fn write_corpus(
    dir: &Path,
    records: Vec<(Split, Record)>,
    cfg: &PrepareConfig,
    inputs: Vec<InputSummary>,
    counts: Counts,
    bytes: Bytes,
    per_language: BTreeMap<String, LangSummary>,
    per_license: BTreeMap<String, u64>,
    skip_examples: Vec<String>,
    opts: &RunOptions,
) -> Result<Manifest> {
    let mut by_split: BTreeMap<&str, (Split, Vec<Record>)> = BTreeMap::new();
    for split in [Split::Train, Split::Val] {
        by_split.insert(split.name(), (split, Vec::new()));
    }
    for (s, r) in records {
        by_split.get_mut(s.name()).unwrap().1.push(r);
    }
    let mut splits = BTreeMap::new();
    let total: u64 = by_split
        .values()
        .flat_map(|(_, v)| v.iter().map(|r| r.n_bytes))
        .sum();
    let pb = crate::progress::bar(total, "writing", true);
    for (name, (split, recs)) in by_split {
        let groups = group_by_bytes(&recs, cfg.shard_bytes);
        let n = groups.len();
        let mut summary = SplitSummary {
            files: recs.len() as u64,
            bytes: recs.iter().map(|r| r.n_bytes).sum(),
            shards: (0..n).map(|i| shard::shard_name(split, i, n)).collect(),
        };
        groups
            .par_iter()
            .enumerate()
            .map(|(i, range)| {
                let chunk = &recs[range.clone()];
                shard::write_shard(&dir.join(shard::shard_name(split, i, n)), chunk)?;
                pb.inc(chunk.iter().map(|r| r.n_bytes).sum());
                Ok(())
            })
            .collect::<Result<Vec<()>>>()?;
        summary.shards.sort();
        splits.insert(name.to_string(), summary);
    }
    pb.finish_and_clear();
    let manifest = Manifest {
        anvil_version: env!("CARGO_PKG_VERSION").to_string(),
        command: opts.command.clone(),
        inputs,
        config: ManifestConfig {
            langs: cfg.langs.iter().map(|l| l.name().to_string()).collect(),
            val_fraction: cfg.val_fraction,
            seed: cfg.seed,
            shard_bytes: cfg.shard_bytes,
            filter: cfg.filter.clone(),
            dedup: cfg.dedup.clone(),
        },
        counts,
        bytes,
        splits,
        per_language,
        per_license,
        skip_examples,
    };
    crate::atomic::write_json(&dir.join("manifest.json"), &manifest)?;
    Ok(manifest)
}

/// Consecutive ranges of records of about `target` content bytes each (at least one range, so an
/// empty split still has a shard a reader can open).
fn group_by_bytes(recs: &[Record], target: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0u64);
    for (i, r) in recs.iter().enumerate() {
        acc += r.n_bytes;
        if acc >= target {
            out.push(start..i + 1);
            start = i + 1;
            acc = 0;
        }
    }
    if start < recs.len() || out.is_empty() {
        out.push(start..recs.len());
    }
    out
}
