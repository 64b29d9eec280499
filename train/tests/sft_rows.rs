//! `TokenRows` on supervised fine-tuning shards: batches carry the loss mask, and only the
//! completion tokens are targets.

use anvil_data::sft::{self, SftData, SftExample};
use anvil_data::shard::Split;
use anvil_data::tokenize::{TokenizeConfig, list_token_shards, read_token_shard};
use anvil_data::tokenizer::{self, EOT_ID, TrainConfig, encode_text};
use anvil_train::loader::TokenRows;

fn example(i: usize) -> SftExample {
    SftExample {
        prompt: format!("def f{i}(x):\n    \"\"\"Return x plus {i}.\"\"\"\n"),
        completion: format!("    return x + {i}\n"),
        origin: format!("mem:{i}"),
    }
}

#[test]
fn batches_carry_the_loss_mask() {
    let tmp = tempfile::tempdir().unwrap();
    let data = SftData {
        train: (0..30).map(example).collect(),
        val: (30..34).map(example).collect(),
        val_fraction: None,
    };
    let cfg = TrainConfig {
        vocab_size: 350,
        min_frequency: 2,
        max_bytes: None,
    };
    let tok = tokenizer::train_from_texts(sft::training_texts(&data), &cfg).unwrap();
    let tok_path = tmp.path().join("tokenizer.json");
    tokenizer::save(&tok, &tok_path).unwrap();
    let tokens = tmp.path().join("tokens");
    let tcfg = TokenizeConfig {
        seq_len: 64,
        ..Default::default()
    };
    sft::tokenize(&data, &tok_path, &tokens, &tcfg, false).unwrap();

    let rows = TokenRows::load(&tokens, Split::Train, 350).unwrap();
    assert!(rows.has_loss_mask());
    let all: Vec<usize> = (0..rows.len()).collect();
    let b = rows.batch(&all);
    let mask = b.loss_mask.as_ref().expect("batch carries the mask");
    assert_eq!(mask.len(), b.input_ids.len());
    let shard = read_token_shard(&list_token_shards(&tokens, Split::Train).unwrap()[0]).unwrap();
    let want: Vec<bool> = shard.loss_mask.unwrap().iter().map(|&v| v == 1).collect();
    assert_eq!(mask[..want.len()], want[..]);

    // The targets are exactly the completions and their EOTs, predicted within their example.
    let (targets, weights, count) = b.targets();
    let mut want_count = 0;
    for e in &data.train {
        want_count += encode_text(&tok, &e.completion).unwrap().ids.len() + 1;
    }
    assert_eq!(count, want_count);
    let eots = (0..targets.len())
        .filter(|&i| weights[i] > 0.0 && targets[i] == EOT_ID as i64)
        .count();
    assert_eq!(eots, data.train.len());

    let rows = TokenRows::load(&tokens, Split::Val, 350).unwrap();
    assert!(rows.batch(&[0]).loss_mask.is_some());

    // Shards and tokens.json must agree on the mask.
    let manifest = tokens.join("tokens.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"loss_mask\"", "\"other\"")).unwrap();
    let e = TokenRows::load(&tokens, Split::Train, 350)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("loss_mask") && e.contains("train-00000"), "{e}");
}
