//! Recipe files: TOML, one section per stage, with `section.key=value` overrides from the
//! command line applied before the section is checked against its schema.

use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Read `path`, apply `overrides`, and deserialize the table `section` (unknown keys, wrong
/// types and missing sections are errors that name the file and key).
pub fn load_section<T: DeserializeOwned>(
    path: &Path,
    section: &str,
    overrides: &[String],
) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut doc: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow!("{}: {}", path.display(), one_line(&e.to_string())))?;
    for o in overrides {
        apply_override(&mut doc, o)?;
    }
    for key in doc.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let hint = suggest(key, &SECTIONS)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            bail!(
                "{}: unknown section `{key}`{hint}; known: {}",
                path.display(),
                SECTIONS.join(", ")
            );
        }
    }
    let table = doc
        .remove(section)
        .ok_or_else(|| anyhow!("{}: no [{section}] section", path.display()))?;
    T::deserialize(table).map_err(|e| {
        anyhow!(
            "{}: [{section}] {}",
            path.display(),
            one_line(&e.to_string())
        )
    })
}

/// Read `path`, apply `overrides`, and deserialize the whole recipe. Errors name the file and the
/// dotted key, with a suggestion for a misspelled one.
pub fn load_all<T: DeserializeOwned>(path: &Path, overrides: &[String]) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut doc: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow!("{}: {}", path.display(), one_line(&e.to_string())))?;
    for o in overrides {
        apply_override(&mut doc, o)?;
    }
    from_table(doc).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Deserializes a recipe table; the error is one line naming the dotted key.
pub fn from_table<T: DeserializeOwned>(doc: toml::Table) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
        let path = e.path().to_string();
        let mut inner = one_line(&e.inner().to_string());
        // toml ends its messages with " in `<key>`": the key is named already, and it is not
        // one of the expected fields below.
        if let Some((head, tail)) = inner.rsplit_once(" in `")
            && tail.ends_with('`')
            && tail.matches('`').count() == 1
        {
            inner = head.to_string();
        }
        // serde: "unknown field `lrr`, expected one of `lr`, `beta1`, …"
        if let Some(rest) = inner.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or("");
            let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            // The path already ends with the unknown field (`optim.lrr`).
            let full = if path == "." || path.is_empty() {
                field.to_string()
            } else if path == field || path.ends_with(&format!(".{field}")) {
                path.clone()
            } else {
                format!("{path}.{field}")
            };
            let hint = suggest(field, &expected)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            let known = if expected.is_empty() {
                String::new()
            } else {
                format!("; known: {}", expected.join(", "))
            };
            return format!("unknown key `{full}`{hint}{known}");
        }
        if path == "." || path.is_empty() {
            inner
        } else {
            format!("`{path}`: {inner}")
        }
    })
}

/// `a.b.c=value`: the value is read as TOML (numbers, booleans, arrays, quoted strings), and
/// taken as a bare string when it is not valid TOML.
pub fn apply_override(doc: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| anyhow!("override `{spec}`: expected section.key=value"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("override `{spec}`: empty key segment");
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut table = doc;
    for p in &parts[..parts.len() - 1] {
        table = table
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| anyhow!("override `{spec}`: `{p}` is not a section"))?;
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Top-level sections a recipe may have (the trainer's arrive with their commands).
const SECTIONS: [&str; 10] = [
    "data",
    "model",
    "train",
    "optim",
    "schedule",
    "eval",
    "checkpoint",
    "tracking",
    "output",
    "lora",
];

/// The closest known name within edit distance 2, for "did you mean".
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + (ca != *cb) as usize)
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|k| (dist(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    /// Every shipped recipe reads as a whole recipe and validates (a key renamed in the schema
    /// and not in `recipes/` is caught here, not by a user).
    #[test]
    fn every_shipped_recipe_loads_and_validates() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let r: anvil_train::Recipe = super::load_all(&path, &[]).unwrap();
                r.validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 10, "{n} recipes");
    }
}
