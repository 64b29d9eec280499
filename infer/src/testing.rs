//! Small models with known behaviour, for tests of everything that decodes (generation, beam
//! search, generate-then-score evaluation, the server): a byte-level tokenizer and a "bigram"
//! Llama whose next-token distribution is a table of the last token.

use anvil_data::tokenizer::{self, TrainConfig};
use anvil_models::{LlamaConfig, store};
use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use std::path::Path;
use tokenizers::Tokenizer;

/// Writes `dir/tokenizer.json`: the special tokens, the 256 byte symbols and one merge, so every
/// ASCII character is its own token. Returns it loaded.
pub fn byte_tokenizer(dir: &Path) -> Tokenizer {
    let cfg = TrainConfig {
        vocab_size: tokenizer::MIN_VOCAB_SIZE,
        min_frequency: 1,
        max_bytes: None,
    };
    let texts = std::iter::once("qqqq".to_string());
    let tok = tokenizer::train_from_texts(texts, &cfg).expect("a byte tokenizer trains");
    let path = dir.join("tokenizer.json");
    tokenizer::save(&tok, &path).expect("tokenizer.json is writable");
    tokenizer::load(&path).expect("the saved tokenizer loads")
}

/// [`byte_tokenizer`] that also knows each of `tokens` as one token: merges build it left to
/// right, each step a vocabulary entry of its own (`"\n   "` brings `"\n "` and `"\n  "`).
pub fn merged_tokenizer(dir: &Path, tokens: &[&str]) -> Tokenizer {
    byte_tokenizer(dir);
    let path = dir.join("tokenizer.json");
    let text = std::fs::read(&path).expect("tokenizer.json was just written");
    let mut json: serde_json::Value = serde_json::from_slice(&text).expect("tokenizer.json");
    let mut next = json["added_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            json["model"]["vocab"]
                .as_object()
                .expect("a BPE vocab")
                .values(),
        )
        .filter_map(|v| v.get("id").unwrap_or(v).as_u64())
        .max()
        .map_or(0, |m| m + 1);
    let model = &mut json["model"];
    for t in tokens {
        let mut pieces = t
            .bytes()
            .map(|b| crate::healing::byte_level_char(b).to_string());
        let mut acc = pieces.next().expect("a non-empty token");
        for piece in pieces {
            let merged = format!("{acc}{piece}");
            if model["vocab"].get(&merged).is_none() {
                model["vocab"][&merged] = next.into();
                next += 1;
                let merges = model["merges"].as_array_mut().expect("BPE merges");
                merges.push(serde_json::json!([acc, piece]));
            }
            acc = merged;
        }
    }
    let text = serde_json::to_vec(&json).expect("JSON serializes");
    std::fs::write(&path, text).expect("tokenizer.json is writable");
    tokenizer::load(&path).expect("the extended tokenizer loads")
}

/// The situation token healing exists for, scripted: the tokenizer knows `"\n   "` (a newline
/// with the indentation GPT-2's pre-tokenizer keeps in front of a word), and the model writes
/// `"\n   "`, `" return"`, `" y"`, `"\n"` after `":"` but ends the text after a lone `"\n"`. So
/// `def f(y):\n` gets an empty completion unless healing backs off its final newline; then it
/// gets `    return y\n`. After the end-of-text token the model also writes `"\n   "`.
pub fn indent_model(dir: &Path) -> Tokenizer {
    let tok = merged_tokenizer(dir, &["\n   ", " return", " y"]);
    let id = |s: &str| token_id(&tok, s);
    bigram_model(
        dir,
        &tok,
        &[
            (id(":"), vec![(id("\n   "), 1.0)]),
            (tokenizer::EOT_ID, vec![(id("\n   "), 1.0)]),
            (id("\n   "), vec![(id(" return"), 1.0)]),
            (id(" return"), vec![(id(" y"), 1.0)]),
            (id(" y"), vec![(id("\n"), 1.0)]),
            (id("\n"), vec![(tokenizer::EOT_ID, 1.0)]),
        ],
    );
    tok
}

/// The id of `s`, which must be a single token.
pub fn token_id(tok: &Tokenizer, s: &str) -> u32 {
    let ids = tokenizer::encode_text(tok, s).expect("encodes").ids;
    assert_eq!(ids.len(), 1, "{s:?} is one token");
    ids[0]
}

/// Saves to `dir` a one-layer model whose attention and MLP add nothing, so the logits depend
/// only on the last token: after token `a`, `table` gives the probabilities of the listed next
/// tokens; unlisted pairs get logit −10.
pub fn bigram_model(dir: &Path, tok: &Tokenizer, table: &[(u32, Vec<(u32, f32)>)]) {
    let vocab = tok.get_vocab_size(true);
    let d = vocab + 8 - vocab % 8;
    let device = Device::flex();
    let config = LlamaConfig {
        vocab_size: vocab,
        d_model: d,
        n_layers: 1,
        n_heads: 2,
        d_ff: 16,
        max_seq_len: 512,
        ..Default::default()
    };
    let mut m = config.init(&device);
    let param = |data: Vec<f32>, shape: [usize; 2]| {
        Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(data, shape),
            &device,
        ))
    };
    let mut embed = vec![0.0; vocab * d];
    for t in 0..vocab {
        embed[t * d + t] = 1.0;
    }
    m.model.embed_tokens.weight = param(embed, [vocab, d]);
    let layer = &mut m.model.layers[0];
    let o = layer.self_attn.o_proj.weight.dims();
    layer.self_attn.o_proj.weight = param(vec![0.0; o[0] * o[1]], o);
    let mlp = layer.mlp.as_mut().expect("a dense layer");
    let dn = mlp.down_proj.weight.dims();
    mlp.down_proj.weight = param(vec![0.0; dn[0] * dn[1]], dn);
    // The final RMSNorm turns the one-hot row into sqrt(d) · e_t.
    let scale = 1.0 / (d as f32).sqrt();
    let mut head = vec![-10.0 * scale; d * vocab];
    for (from, nexts) in table {
        for &(to, p) in nexts {
            head[*from as usize * vocab + to as usize] = p.ln() * scale;
        }
    }
    m.lm_head.as_mut().expect("an untied head").weight = param(head, [d, vocab]);
    store::save(&m, dir).expect("the model saves");
}

/// A bigram model that answers `prompt` with exactly `answer` and then ends: every token of
/// the answer must differ from the others and from the prompt's last token.
pub fn scripted_model(dir: &Path, prompt_last: &str, answer: &str) -> Tokenizer {
    let tok = byte_tokenizer(dir);
    let mut chain = vec![token_id(&tok, prompt_last)];
    chain.extend(answer.chars().map(|c| token_id(&tok, &c.to_string())));
    let mut table = Vec::new();
    for w in chain.windows(2) {
        table.push((w[0], vec![(w[1], 1.0)]));
    }
    table.push((
        *chain.last().expect("non-empty"),
        vec![(tokenizer::EOT_ID, 1.0)],
    ));
    let mut seen = std::collections::HashSet::new();
    assert!(
        table.iter().all(|(from, _)| seen.insert(*from)),
        "{answer:?} repeats a token: a bigram model cannot script it"
    );
    bigram_model(dir, &tok, &table);
    tok
}
