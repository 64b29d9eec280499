//! Params are a flat string map, as MLflow stores them: nested recipe tables become
//! `section.key` entries.

use serde::Serialize;
use std::collections::BTreeMap;

/// Flatten anything serializable (a resolved recipe struct, a `toml::Table`, a
/// `serde_json::Value`) into `section.sub.key → value` strings. Scalars are written plainly
/// (`0.5`, `true`, `python-stdlib`), arrays as JSON (`["python","rust"]`), nulls are left out.
pub fn flatten<T: Serialize + ?Sized>(value: &T) -> BTreeMap<String, String> {
    let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    flatten_json(&v)
}

pub fn flatten_json(value: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Array(_) | Value::Bool(_) | Value::Number(_) => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_tables_become_dotted_keys() {
        let v = json!({
            "data": {"corpus": {"sources": ["python-stdlib"], "val_fraction": 0.02},
                     "tokenize": {"ast": true, "seq_len": 256}},
            "train": {"lr": 3e-4, "name": "quick", "none": null}
        });
        let f = flatten_json(&v);
        assert_eq!(f["data.corpus.sources"], r#"["python-stdlib"]"#);
        assert_eq!(f["data.corpus.val_fraction"], "0.02");
        assert_eq!(f["data.tokenize.ast"], "true");
        assert_eq!(f["data.tokenize.seq_len"], "256");
        assert_eq!(f["train.lr"], "0.0003");
        assert_eq!(f["train.name"], "quick");
        assert!(!f.contains_key("train.none"));
        assert_eq!(f.len(), 6);
    }
}
