//! Token healing: a prompt that ends part-way through what training text tokenizes as one token
//! (a lone `"\n"` where code almost always has `"\n   "`, half a word) makes the model continue
//! from a token boundary it has rarely seen. Healing backs off the prompt's last token(s) and
//! makes the first generated tokens rewrite the removed text: each must agree with what is left
//! of it (its bytes start with the rest, or are a prefix of it). The model then picks the
//! tokenization it knows, and the completion is still the text after the whole prompt.
//!
//! Everything works on bytes, because byte-level BPE tokens can hold part of a UTF-8 character.

use crate::generate::Generator;
use std::collections::HashSet;
use tokenizers::Tokenizer;

/// Most prompt tokens backed off: the last one always, earlier ones only while a vocabulary
/// token could have spanned the boundary (see [`Generator::heal`]).
const MAX_BACKOFF_TOKENS: usize = 3;
/// An earlier token is backed off too only while the text to rewrite stays this short: every
/// removed byte is one the model has to re-derive under a constraint.
const MAX_BACKOFF_BYTES: usize = 32;

pub use anvil_data::tokenizer::byte_level_char;

/// The text bytes of every token id, exactly as the byte-level decoder writes them.
pub struct TokenBytes {
    /// Empty for an id the tokenizer does not have.
    bytes: Vec<Box<[u8]>>,
    /// Whether the token may rewrite healed text: not a special or end-of-sequence token.
    plain: Vec<bool>,
}

impl TokenBytes {
    /// `None` for a tokenizer whose decoder is not byte-level: its token strings are not bytes.
    pub fn new(tok: &Tokenizer, vocab: usize, eos: &[u32]) -> Option<Self> {
        let bytes = anvil_data::tokenizer::token_bytes(tok, vocab)?;
        let special: HashSet<u32> = tok
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        let plain = (0..vocab as u32)
            .map(|id| {
                !special.contains(&id) && !eos.contains(&id) && !bytes[id as usize].is_empty()
            })
            .collect();
        Some(Self { bytes, plain })
    }

    /// The text of `id` when it may be part of healed text (not special, not unknown).
    pub fn get(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        self.plain.get(i)?.then(|| &*self.bytes[i])
    }

    /// The text the decoder writes for `id`, special tokens included.
    pub fn text(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], |b| b)
    }

    fn healable(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes
            .iter()
            .zip(&self.plain)
            .filter(|&(_, &p)| p)
            .map(|(b, _)| &**b)
    }

    /// Whether some token starts with `text` and is longer.
    fn extends(&self, text: &[u8]) -> bool {
        self.healable()
            .any(|t| t.len() > text.len() && t.starts_with(text))
    }

    /// Whether some token starts with `prev` and goes on in a way `rest` allows: the tokenizer
    /// could then have written `prev` and the start of `rest` as one token.
    fn spans(&self, prev: &[u8], rest: &[u8]) -> bool {
        self.healable()
            .any(|t| t.len() > prev.len() && t.starts_with(prev) && agrees(&t[prev.len()..], rest))
    }
}

/// Whether a token with text `tok` may come next when `pending` is still to be written.
fn agrees(tok: &[u8], pending: &[u8]) -> bool {
    tok.starts_with(pending) || pending.starts_with(tok)
}

/// How one prompt is healed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healing {
    /// Prompt tokens the model reads (0: it starts after an end-of-text token, as an empty
    /// prompt does).
    pub keep: usize,
    /// Prompt tokens backed off.
    pub removed: usize,
    /// Their text bytes, which generation must write first.
    pub prefix: Vec<u8>,
}

impl Generator {
    /// The byte table of the vocabulary, built on first use; `None` when the tokenizer is not
    /// byte-level (then nothing is healed).
    pub fn token_bytes(&self) -> Option<&TokenBytes> {
        self.token_bytes
            .get_or_init(|| TokenBytes::new(&self.tokenizer, self.vocab_size(), &self.eos))
            .as_ref()
    }

    /// How to heal `prompt`, or `None` when it should be read as it is: its last token is special
    /// (a fill-in-the-middle prompt ends with `<|fim_middle|>`), no other token could stand where
    /// it does (no longer token starts with its text), the prompt is empty, or the tokenizer is
    /// not byte-level. The last token is backed off; an earlier one too (up to
    /// [`MAX_BACKOFF_TOKENS`] in all) while some vocabulary token starts with it and runs on into
    /// the text already removed, since the model may know that merged token better.
    pub fn heal(&self, prompt: &[u32]) -> Option<Healing> {
        let table = self.token_bytes()?;
        let mut keep = prompt.len().checked_sub(1)?;
        let mut prefix = table.get(prompt[keep])?.to_vec();
        while keep > 1 && prompt.len() - keep < MAX_BACKOFF_TOKENS {
            let Some(prev) = table.get(prompt[keep - 1]) else {
                break;
            };
            if prev.len() + prefix.len() > MAX_BACKOFF_BYTES || !table.spans(prev, &prefix) {
                break;
            }
            prefix.splice(0..0, prev.iter().copied());
            keep -= 1;
        }
        // With nothing that could replace the removed token but itself, healing would only
        // re-read the prompt one token later.
        let useful = keep + 1 < prompt.len() || table.extends(&prefix);
        useful.then(|| Healing {
            keep,
            removed: prompt.len() - keep,
            prefix,
        })
    }

    /// What the model reads for a healed prompt.
    pub fn healed_context(&self, prompt: &[u32], h: &Healing) -> Vec<u32> {
        self.context_of(&prompt[..h.keep])
    }

    /// The part of `h.prefix` that `generated` has not written yet; `None` once it has.
    pub(crate) fn pending<'h>(&self, h: &'h Healing, generated: &[u32]) -> Option<&'h [u8]> {
        let table = self.token_bytes()?;
        let written: usize = generated.iter().map(|&t| table.text(t).len()).sum();
        (written < h.prefix.len()).then(|| &h.prefix[written..])
    }

    /// Sets the logit of every token that disagrees with `pending` to −∞, so every sampling rule
    /// (greedy, temperature, top-k, top-p, the repetition penalty) only sees tokens that rewrite
    /// the removed text. The end-of-text and special tokens are never allowed here.
    pub(crate) fn constrain(&self, pending: &[u8], logits: &mut [f32]) {
        let Some(table) = self.token_bytes() else {
            return;
        };
        for (id, l) in logits.iter_mut().enumerate() {
            if !table.get(id as u32).is_some_and(|t| agrees(t, pending)) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// The text of `generated` after the prompt: with healing, the rewritten prefix left out.
    pub(crate) fn completion_text(
        &self,
        generated: &[u32],
        healing: Option<&Healing>,
    ) -> Result<String, crate::InferError> {
        let (Some(h), Some(table)) = (healing, self.token_bytes()) else {
            return self.decode(generated);
        };
        let bytes: Vec<u8> = generated
            .iter()
            .flat_map(|&t| table.text(t).iter().copied())
            .collect();
        // The bytes after the prefix are exactly those a completion without healing decodes.
        Ok(bytes
            .get(h.prefix.len()..)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_chars_are_gpt2s() {
        assert_eq!(byte_level_char(b'a'), 'a');
        assert_eq!(byte_level_char(b' '), 'Ġ');
        assert_eq!(byte_level_char(b'\n'), 'Ċ');
        assert_eq!(byte_level_char(0), 'Ā');
        assert_eq!(byte_level_char(0xAD), 'Ń');
        let all: HashSet<char> = (0..=255u8).map(byte_level_char).collect();
        let theirs: HashSet<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
            .into_iter()
            .collect();
        assert_eq!(all, theirs);
    }

    #[test]
    fn agreement_is_prefix_either_way() {
        assert!(agrees(b"\n   ", b"\n"));
        assert!(agrees(b"re", b"return"));
        assert!(agrees(b"return", b"return"));
        assert!(!agrees(b"\t", b"\n"));
        assert!(!agrees(b"ret", b"ra"));
    }
}
