//! Input sources for `anvil data prepare`: directories (walked with .gitignore respected), JSONL
//! files in The Stack's export shape (`{"content": …, "path": …}` per line), Parquet files with a
//! `content` column, and `python-stdlib`, the standard library of the local `python3`, which
//! every machine has and the quickstart uses.

use crate::error::{DataError, Result};
use crate::lang::Lang;
use arrow_array::{Array, LargeStringArray, RecordBatch, StringArray, StringViewArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The source name that resolves to the local Python's standard library.
pub const PYTHON_STDLIB: &str = "python-stdlib";

/// One candidate file, before any filter.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to its source root (directories) or as recorded (JSONL/Parquet).
    pub path: String,
    pub lang: Lang,
    pub bytes: Vec<u8>,
    /// Index into the list of sources, for deterministic ordering and the `source` column.
    pub source_idx: usize,
    /// A license carried by the input record itself (JSONL/Parquet `license` field).
    pub license_hint: Option<String>,
    /// The license file that governs this file, when a directory source has one.
    pub license_file: Option<PathBuf>,
}

/// Everything read from the sources, with what was skipped and why.
#[derive(Debug, Default)]
pub struct Collected {
    pub files: Vec<SourceFile>,
    /// Skips before any content filter, by reason (`unreadable`, `malformed_record`, …).
    pub skipped: BTreeMap<String, u64>,
    /// First few skip locations (`file:line: why`) so a user can find them.
    pub skip_examples: Vec<String>,
    /// Files seen with no supported extension or outside `--langs`.
    pub other_files: u64,
}

impl Collected {
    fn skip(&mut self, reason: &str, example: String) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
        if self.skip_examples.len() < 20 {
            self.skip_examples.push(example);
        }
    }
}

/// Resolve a `--source` argument: `python-stdlib` becomes the interpreter's stdlib path.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    if spec == PYTHON_STDLIB {
        return python_stdlib();
    }
    let p = PathBuf::from(spec);
    if !p.exists() {
        return Err(DataError::invalid(&p, "source does not exist"));
    }
    Ok(p)
}

/// The standard library directory of the `python3` on PATH.
pub fn python_stdlib() -> Result<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-I",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .map_err(|e| DataError::io("python3", e))?;
    if !out.status.success() {
        return Err(DataError::invalid(
            "python3",
            "could not locate the standard library",
        ));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.is_dir() {
        return Err(DataError::invalid(
            &dir,
            "python3 reports this stdlib path, but it is not a directory",
        ));
    }
    Ok(dir)
}

/// Whether a file is a license file whose text governs its directory: named LICENSE*, LICENCE*,
/// COPYING* or UNLICENSE*, and not a source file (`license.rs` is code).
pub fn is_license_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_ascii_uppercase();
    ["LICENSE", "LICENCE", "COPYING", "UNLICENSE"]
        .iter()
        .any(|p| name.starts_with(p))
        && Lang::from_path(path).is_none()
}

/// Read every source in order. Sources are read in the order given and files within a directory
/// in sorted path order, so the same inputs always give the same sequence.
pub fn collect(sources: &[PathBuf], langs: &[Lang]) -> Result<Collected> {
    let mut c = Collected::default();
    for (idx, src) in sources.iter().enumerate() {
        if src.is_dir() {
            walk_dir(src, idx, langs, &mut c)?;
        } else {
            let name = src.to_string_lossy().to_ascii_lowercase();
            if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") || name.ends_with(".ndjson")
            {
                read_jsonl(src, idx, langs, &mut c)?;
            } else if name.ends_with(".parquet") {
                read_parquet(src, idx, langs, &mut c)?;
            } else if let Some(lang) = Lang::from_path(src) {
                if langs.contains(&lang) {
                    match std::fs::read(src) {
                        Ok(bytes) => c.files.push(SourceFile {
                            path: src.file_name().unwrap_or_default().to_string_lossy().into(),
                            lang,
                            bytes,
                            source_idx: idx,
                            license_hint: None,
                            license_file: None,
                        }),
                        Err(e) => return Err(DataError::io(src, e)),
                    }
                }
            } else {
                return Err(DataError::invalid(
                    src,
                    "not a directory, .jsonl[.gz] or .parquet file, nor a source file of a known language",
                ));
            }
        }
    }
    Ok(c)
}

fn walk_dir(root: &Path, idx: usize, langs: &[Lang], c: &mut Collected) -> Result<()> {
    // The stdlib ships third-party packages in site-packages: not the stdlib, not ours to relabel.
    let is_stdlib = python_stdlib().ok().as_deref() == Some(root);
    let walker = ignore::WalkBuilder::new(root)
        .require_git(false)
        // Linked files are part of the tree a user points at; the walker guards against loops.
        .follow_links(true)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(move |e| !(is_stdlib && e.file_name() == "site-packages"))
        .build();
    let mut paths = Vec::new();
    let mut license_files: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                c.skip("unreadable", format!("{}: {e}", root.display()));
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.into_path();
        if is_license_file(&path) {
            let dir = path.parent().unwrap_or(root).to_path_buf();
            license_files.entry(dir).or_insert(path.clone());
            continue;
        }
        match Lang::from_path(&path) {
            Some(l) if langs.contains(&l) => paths.push((path, l)),
            _ => c.other_files += 1,
        }
    }
    // Read in parallel; order is kept by collecting into the sorted path order.
    use rayon::prelude::*;
    let read: Vec<_> = paths
        .into_par_iter()
        .map(|(p, l)| (std::fs::read(&p), p, l))
        .collect();
    for (res, path, lang) in read {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        match res {
            Ok(bytes) => {
                let license_file = path
                    .ancestors()
                    .skip(1)
                    .take_while(|a| a.starts_with(root))
                    .find_map(|a| license_files.get(a).cloned());
                c.files.push(SourceFile {
                    path: rel,
                    lang,
                    bytes,
                    source_idx: idx,
                    license_hint: None,
                    license_file,
                });
            }
            Err(e) => c.skip("unreadable", format!("{}: {e}", path.display())),
        }
    }
    Ok(())
}

fn open_maybe_gz(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|e| DataError::io(path, e))?;
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(f)))
    } else {
        Box::new(BufReader::new(f))
    })
}

/// Language of a record: an explicit `lang`/`language` field wins, else the path's extension.
fn record_lang(path: &str, lang_field: Option<&str>) -> Option<Lang> {
    lang_field
        .and_then(Lang::from_name)
        .or_else(|| Lang::from_path(Path::new(path)))
}

fn read_jsonl(file: &Path, idx: usize, langs: &[Lang], c: &mut Collected) -> Result<()> {
    let reader = open_maybe_gz(file)?;
    let display = file.display();
    for (i, line) in reader.split(b'\n').enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| DataError::io(file, e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(e) => {
                c.skip(
                    "malformed_record",
                    format!("{display}:{lineno}: invalid JSON: {e}"),
                );
                continue;
            }
        };
        let Some(obj) = value.as_object() else {
            c.skip(
                "malformed_record",
                format!("{display}:{lineno}: expected a JSON object"),
            );
            continue;
        };
        let Some(content) = obj.get("content").and_then(|v| v.as_str()) else {
            c.skip(
                "malformed_record",
                format!("{display}:{lineno}: no string field `content`"),
            );
            continue;
        };
        let path = obj
            .get("path")
            .or_else(|| obj.get("max_stars_repo_path"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}:{lineno}", file.display()));
        let lang_field = obj
            .get("lang")
            .or_else(|| obj.get("language"))
            .and_then(|v| v.as_str());
        match record_lang(&path, lang_field) {
            Some(lang) if langs.contains(&lang) => c.files.push(SourceFile {
                path,
                lang,
                bytes: content.as_bytes().to_vec(),
                source_idx: idx,
                license_hint: license_field(obj.get("license")),
                license_file: None,
            }),
            _ => c.other_files += 1,
        }
    }
    Ok(())
}

/// The Stack stores licenses as a list (`["MIT", "Apache-2.0"]`); others as one string.
fn license_field(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Array(a) => {
            let ids: Vec<&str> = a.iter().filter_map(|x| x.as_str()).collect();
            (!ids.is_empty()).then(|| ids.join(" OR "))
        }
        _ => None,
    }
}

fn string_column(batch: &RecordBatch, name: &str) -> Option<Vec<Option<String>>> {
    let col = batch.column_by_name(name)?;
    let any = col.as_any();
    let get = |i: usize| -> Option<String> {
        if col.is_null(i) {
            return None;
        }
        if let Some(a) = any.downcast_ref::<StringArray>() {
            Some(a.value(i).to_string())
        } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
            Some(a.value(i).to_string())
        } else {
            any.downcast_ref::<StringViewArray>()
                .map(|a| a.value(i).to_string())
        }
    };
    let is_string =
        any.is::<StringArray>() || any.is::<LargeStringArray>() || any.is::<StringViewArray>();
    is_string.then(|| (0..batch.num_rows()).map(get).collect())
}

fn read_parquet(file: &Path, idx: usize, langs: &[Lang], c: &mut Collected) -> Result<()> {
    let f = File::open(file).map_err(|e| DataError::io(file, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.with_batch_size(1024).build())
        .map_err(|e| DataError::parquet(file, e))?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| DataError::parquet(file, e))?;
        let content = string_column(&batch, "content").ok_or_else(|| {
            DataError::parquet(file, "wrong schema: needs a string column `content` (and optionally `path`, `lang`, `license`)")
        })?;
        let paths = string_column(&batch, "path");
        let lang_col = string_column(&batch, "lang");
        let lic = string_column(&batch, "license");
        for (i, text) in content.into_iter().enumerate() {
            row += 1;
            let Some(text) = text else {
                c.skip(
                    "malformed_record",
                    format!("{}: row {row}: null content", file.display()),
                );
                continue;
            };
            let path = paths
                .as_ref()
                .and_then(|p| p[i].clone())
                .unwrap_or_else(|| format!("{}:{row}", file.display()));
            let lang_field = lang_col.as_ref().and_then(|l| l[i].as_deref());
            match record_lang(&path, lang_field) {
                Some(lang) if langs.contains(&lang) => c.files.push(SourceFile {
                    path,
                    lang,
                    bytes: text.into_bytes(),
                    source_idx: idx,
                    license_hint: lic
                        .as_ref()
                        .and_then(|l| l[i].clone())
                        .filter(|s| !s.is_empty()),
                    license_file: None,
                }),
                _ => c.other_files += 1,
            }
        }
    }
    Ok(())
}
