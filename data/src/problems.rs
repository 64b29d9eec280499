//! HumanEval-shaped problems: one JSON object a line with `task_id`, `prompt`, `entry_point`,
//! `canonical_solution` and `test`. HumanEval itself is embedded in the binary so evaluation
//! never depends on a download; `synth` writes its generated tasks in the same shape.

use crate::atomic;
use crate::error::{DataError, Result};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// One problem. Field order is the order `write_jsonl` emits. Unknown keys in input are ignored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    pub task_id: String,
    pub prompt: String,
    pub entry_point: String,
    /// User problem files may omit it (they only need prompt and test).
    #[serde(default)]
    pub canonical_solution: String,
    pub test: String,
}

/// HumanEval 1.0.3 (164 problems, MIT; see `data/humaneval/LICENSE`).
const HUMANEVAL_GZ: &[u8] = include_bytes!("../humaneval/HumanEval.jsonl.gz");

/// The 164 HumanEval problems, parsed from the copy embedded at build time.
pub fn humaneval() -> Vec<Problem> {
    let reader = BufReader::new(MultiGzDecoder::new(HUMANEVAL_GZ));
    parse(reader, Path::new("<embedded HumanEval.jsonl.gz>"))
        .expect("the embedded HumanEval.jsonl.gz is valid (corrupt build otherwise)")
}

/// `"humaneval"` is the embedded set; anything else is a path to a `.jsonl` / `.jsonl.gz` file.
pub fn load(spec: &str) -> Result<Vec<Problem>> {
    if spec.eq_ignore_ascii_case("humaneval") {
        Ok(humaneval())
    } else {
        read_jsonl(Path::new(spec))
    }
}

/// Read problems from plain or gzipped JSONL (gzip is recognised by a `.gz` extension or by its
/// magic bytes, so a misnamed file still reads).
pub fn read_jsonl(path: &Path) -> Result<Vec<Problem>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let magic = reader
        .fill_buf()
        .map_err(|e| DataError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    let gz_ext = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if magic || gz_ext {
        parse(BufReader::new(MultiGzDecoder::new(reader)), path)
    } else {
        parse(reader, path)
    }
}

/// Write problems atomically, one compact object a line; a `.gz` path is gzipped.
pub fn write_jsonl(path: &Path, problems: &[Problem]) -> Result<()> {
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    atomic::write_with(path, |w| {
        if gz {
            let mut enc = GzEncoder::new(w, Compression::default());
            write_lines(&mut enc, problems)?;
            enc.finish().map(|_| ())
        } else {
            write_lines(w, problems)
        }
    })
}

fn write_lines(w: &mut impl Write, problems: &[Problem]) -> std::io::Result<()> {
    for p in problems {
        serde_json::to_writer(&mut *w, p)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// The program that checks `completion`, built exactly as OpenAI's human-eval does, so pass
/// rates are comparable with published numbers.
pub fn program(problem: &Problem, completion: &str) -> String {
    format!(
        "{}{}\n{}\ncheck({})",
        problem.prompt, completion, problem.test, problem.entry_point
    )
}

/// The one parser behind `read_jsonl` and `humaneval`; `path` only labels errors.
fn parse(reader: impl BufRead, path: &Path) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let jsonl_err = |msg: String| DataError::Jsonl {
            path: path.to_path_buf(),
            line: lineno,
            msg,
        };
        let line = line.map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => jsonl_err("not valid UTF-8".into()),
            _ => DataError::io(path, e),
        })?;
        let line = line.strip_prefix('\u{feff}').unwrap_or(&line);
        if line.trim().is_empty() {
            continue;
        }
        let problem = parse_line(line).map_err(jsonl_err)?;
        if let Some(first) = first_seen.get(&problem.task_id) {
            return Err(jsonl_err(format!(
                "duplicate task_id `{}` (first on line {first})",
                problem.task_id
            )));
        }
        first_seen.insert(problem.task_id.clone(), lineno);
        problems.push(problem);
    }
    if problems.is_empty() {
        return Err(DataError::invalid(path, "no problems in file"));
    }
    Ok(problems)
}

/// Parse via `Value` first so "not JSON" and "not an object" get their own messages instead of
/// serde's struct-shaped ones.
fn parse_line(line: &str) -> std::result::Result<Problem, String> {
    use serde_json::Value;
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let found = match &value {
        Value::Object(_) => None,
        Value::Array(_) => Some("an array"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Bool(_) => Some("a boolean"),
        Value::Null => Some("null"),
    };
    if let Some(found) = found {
        return Err(format!("expected a JSON object, found {found}"));
    }
    let problem: Problem = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if problem.task_id.trim().is_empty() {
        return Err("empty `task_id`".into());
    }
    if problem.entry_point.trim().is_empty() {
        return Err("empty `entry_point`".into());
    }
    Ok(problem)
}
