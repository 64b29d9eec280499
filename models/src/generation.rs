//! `generation_config.json`: the defaults a checkpoint asks its generators to use, in the file
//! Hugging Face's `GenerationConfig` reads (unknown keys are kept out of the way: a folder
//! exported from or for HF may hold many more).
//!
//! Today one default is recorded: `token_healing`. A model fine-tuned on prompt/completion pairs
//! (SFT) learned its completions after the prompt encoded alone — the very boundary generation
//! sees — and never learned to predict a prompt's last token, which token healing asks of it;
//! measured on the synth tasks, healing turned 140 of 500 such completions into
//! IndentationErrors (docs/inference.md). SFT runs write `token_healing: false`.

use serde::{Deserialize, Serialize};
use std::path::Path;

pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Whether generation heals the prompt's last token by default; `None` = the generator's
    /// own default (on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_healing: Option<bool>,
}

impl GenerationConfig {
    /// The config in `dir`, or the default when there is none or it does not parse (a
    /// malformed file must not stop a model from loading; it is reported once on stderr).
    pub fn read(dir: &Path) -> GenerationConfig {
        let path = dir.join(GENERATION_CONFIG_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            return GenerationConfig::default();
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            eprintln!("note: {}: ignored ({e})", path.display());
            GenerationConfig::default()
        })
    }

    /// Writes `dir/generation_config.json` (the folder must exist).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).expect("config serializes") + "\n";
        std::fs::write(dir.join(GENERATION_CONFIG_FILE), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            GenerationConfig::read(dir.path()),
            GenerationConfig::default()
        );
        let c = GenerationConfig {
            token_healing: Some(false),
        };
        c.write(dir.path()).unwrap();
        assert_eq!(GenerationConfig::read(dir.path()), c);
        // An HF file: other keys are fine, a bad one is ignored rather than fatal.
        let p = dir.path().join(GENERATION_CONFIG_FILE);
        std::fs::write(&p, r#"{"bos_token_id": 1, "do_sample": true}"#).unwrap();
        assert_eq!(
            GenerationConfig::read(dir.path()),
            GenerationConfig::default()
        );
        std::fs::write(&p, "{not json").unwrap();
        assert_eq!(
            GenerationConfig::read(dir.path()),
            GenerationConfig::default()
        );
    }
}
