//! The architectures Anvil builds, and the one place that maps a checkpoint's `arch` tag to one
//! (as ripgrep's `PatternMatcher` picks a matcher): a new architecture is a new file implementing
//! [`crate::CausalLm`] plus a variant here.
//!
//! `model.json` is the architecture's config with the tag as its first key,
//! `{"arch": "llama", "vocab_size": …}`; files written before the tag existed have none and are
//! Llama's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The key of the tag in `model.json`.
pub const ARCH_KEY: &str = "arch";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// The Llama-style decoder, dense or mixture-of-experts ([`crate::Llama`]).
    #[default]
    Llama,
    /// The Llama decoder that also reads each token's place in the syntax tree
    /// ([`crate::tree`]; its config has a `tree` section).
    Tree,
    /// The masked-diffusion denoiser: the Llama blocks, bidirectional
    /// ([`crate::diffusion`]; its config has a `diffusion` section).
    Diffusion,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::Llama, Arch::Tree, Arch::Diffusion];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Tree => "tree",
            Arch::Diffusion => "diffusion",
        }
    }

    /// The config section that makes a Llama config this architecture (`None`: Llama itself).
    pub fn section(self) -> Option<&'static str> {
        match self {
            Arch::Llama => None,
            Arch::Tree => Some("tree"),
            Arch::Diffusion => Some("diffusion"),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
                format!("unknown architecture `{s}` (known: {})", known.join(", "))
            })
    }
}

/// `config` as `model.json`'s object, with the tag first.
pub fn tagged(arch: Arch, config: &impl Serialize) -> Value {
    let mut out = Map::new();
    out.insert(ARCH_KEY.into(), Value::String(arch.name().into()));
    if let Ok(Value::Object(fields)) = serde_json::to_value(config) {
        out.extend(fields);
    }
    Value::Object(out)
}

/// Splits `model.json`'s object into its architecture and the config's own fields.
pub fn untag(mut v: Value) -> Result<(Arch, Value), String> {
    let Some(obj) = v.as_object_mut() else {
        return Err("expected a JSON object".into());
    };
    let arch = match obj.remove(ARCH_KEY) {
        None => Arch::Llama,
        Some(Value::String(s)) => s.parse()?,
        Some(other) => return Err(format!("`{ARCH_KEY}` must be a string, not {other}")),
    };
    Ok((arch, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trips_and_untagged_files_are_llama() {
        let v = tagged(Arch::Llama, &serde_json::json!({"d_model": 8}));
        assert_eq!(v.as_object().unwrap().keys().next().unwrap(), "arch");
        assert_eq!(
            untag(v).unwrap(),
            (Arch::Llama, serde_json::json!({"d_model": 8}))
        );
        assert_eq!(
            untag(serde_json::json!({"d_model": 8})).unwrap().0,
            Arch::Llama
        );
        let e = untag(serde_json::json!({"arch": "rwkv"})).unwrap_err();
        assert!(
            e.contains("unknown architecture `rwkv` (known: llama, tree, diffusion)"),
            "{e}"
        );
        assert!(untag(serde_json::json!({"arch": 3})).is_err());
    }
}
