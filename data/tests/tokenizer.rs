//! `anvil tokenizer train`: fixed special ids, determinism, special strings in data, non-ASCII
//! round trips and offsets, load errors, and a round trip over the whole local Python stdlib.

mod common;
use common::record;

use anvil_data::error::DataError;
use anvil_data::shard::{Record, write_shard};
use anvil_data::tokenizer::{self, TrainConfig};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tempfile::TempDir;
use xxhash_rust::xxh3::xxh3_64;

/// A corpus directory as `anvil data prepare` leaves it: shards plus a manifest.
fn write_corpus(dir: &Path, train: &[Vec<Record>]) {
    for (i, recs) in train.iter().enumerate() {
        let name = anvil_data::shard::shard_name(anvil_data::shard::Split::Train, i, train.len());
        write_shard(&dir.join(name), recs).unwrap();
    }
    std::fs::write(dir.join("manifest.json"), "{}").unwrap();
}

/// Real code to train on: this crate's own sources.
fn crate_sources() -> Vec<(String, String)> {
    // At run time: `env!` would bake in the path of whichever clone built this binary.
    let dir =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test")).join("src");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

fn small_cfg() -> TrainConfig {
    TrainConfig {
        vocab_size: 600,
        min_frequency: 2,
        max_bytes: None,
    }
}

fn small_tokenizer() -> tokenizers::Tokenizer {
    let texts = crate_sources().into_iter().map(|(_, t)| t);
    tokenizer::train_from_texts(texts, &small_cfg()).unwrap()
}

#[test]
fn special_ids_are_fixed() {
    assert_eq!(
        tokenizer::SPECIAL_TOKENS,
        [
            "<|endoftext|>",
            "<|pad|>",
            "<|mask|>",
            "<|fim_prefix|>",
            "<|fim_suffix|>",
            "<|fim_middle|>",
            "<|file_sep|>"
        ]
    );
    let ids = [
        tokenizer::EOT_ID,
        tokenizer::PAD_ID,
        tokenizer::MASK_ID,
        tokenizer::FIM_PREFIX_ID,
        tokenizer::FIM_SUFFIX_ID,
        tokenizer::FIM_MIDDLE_ID,
        tokenizer::FILE_SEP_ID,
    ];
    assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6]);

    let tok = small_tokenizer();
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tokenizer.json");
    tokenizer::save(&tok, &path).unwrap();
    let loaded = tokenizer::load(&path).unwrap();
    for t in [&tok, &loaded] {
        for (i, s) in tokenizer::SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(t.token_to_id(s), Some(i as u32), "{s}");
            assert_eq!(t.id_to_token(i as u32).as_deref(), Some(*s));
        }
        assert_eq!(t.get_vocab_size(true), 600);
        // Specials decode to their literal text (skip_special_tokens = false).
        assert_eq!(
            tokenizer::decode(t, &[tokenizer::FIM_PREFIX_ID, tokenizer::EOT_ID]).unwrap(),
            "<|fim_prefix|><|endoftext|>"
        );
    }
    // The saved file is plain HF tokenizer.json: the bare library can read it.
    let bare = tokenizers::Tokenizer::from_file(&path).unwrap();
    assert_eq!(bare.get_vocab_size(true), 600);
}

#[test]
fn training_is_deterministic() {
    let a = small_tokenizer().to_string(false).unwrap();
    let b = small_tokenizer().to_string(false).unwrap();
    assert!(a == b, "two trainings on the same texts differ");

    // Through a corpus directory, with a byte cap: same result each time, and the same as
    // training on the same prefix of texts directly.
    let dir = TempDir::new().unwrap();
    let srcs = crate_sources();
    let recs: Vec<Record> = srcs.iter().map(|(p, t)| record(p, t)).collect();
    let (first, second) = recs.split_at(recs.len() / 2);
    write_corpus(dir.path(), &[first.to_vec(), second.to_vec()]);
    let cfg = TrainConfig {
        max_bytes: Some(20_000),
        ..small_cfg()
    };
    let c1 = tokenizer::train_from_corpus(dir.path(), &cfg).unwrap();
    let c2 = tokenizer::train_from_corpus(dir.path(), &cfg).unwrap();
    let (p1, p2) = (dir.path().join("t1.json"), dir.path().join("t2.json"));
    tokenizer::save(&c1, &p1).unwrap();
    tokenizer::save(&c2, &p2).unwrap();
    assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
    let direct = tokenizer::train_from_texts(srcs.into_iter().map(|(_, t)| t), &cfg).unwrap();
    assert_eq!(
        direct.to_string(false).unwrap(),
        c1.to_string(false).unwrap()
    );
    // The cap matters: a different cap gives a different tokenizer.
    let cfg2 = TrainConfig {
        max_bytes: Some(40_000),
        ..small_cfg()
    };
    let c3 = tokenizer::train_from_corpus(dir.path(), &cfg2).unwrap();
    assert_ne!(c3.to_string(false).unwrap(), c1.to_string(false).unwrap());
}

#[test]
fn bad_configs_and_corpora_are_refused() {
    let cfg = TrainConfig {
        vocab_size: 263,
        ..Default::default()
    };
    let err = tokenizer::train_from_texts(["x".to_string()].into_iter(), &cfg).unwrap_err();
    assert!(matches!(err, DataError::Config(_)), "{err}");
    assert!(err.to_string().contains("--vocab-size"), "{err}");
    let d = TrainConfig::default();
    assert_eq!(
        (d.vocab_size, d.min_frequency, d.max_bytes),
        (8192, 2, None)
    );

    let dir = TempDir::new().unwrap();
    let err = tokenizer::train_from_corpus(dir.path(), &small_cfg()).unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn special_strings_in_data_are_plain_text() {
    let tok = small_tokenizer();
    let text = "x = '<|endoftext|>'  # <|fim_prefix|><|fim_suffix|><|fim_middle|>\n\
                s = \"<|pad|><|mask|><|file_sep|><|endoftext|>\"\n<|endoftext|>";
    let enc = tokenizer::encode_text(&tok, text).unwrap();
    assert!(
        enc.ids.iter().all(|&id| id >= 7),
        "special id in {:?}",
        enc.ids
    );
    assert_eq!(tokenizer::decode(&tok, &enc.ids).unwrap(), text);
    let report = tokenizer::round_trip_check(&tok, vec![("specials.py", text)]).unwrap();
    assert!(report.ok(), "{report:?}");

    // A bare HF load does not carry the setting (it is not in tokenizer.json): refused.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("tokenizer.json");
    tokenizer::save(&tok, &path).unwrap();
    let bare = tokenizers::Tokenizer::from_file(&path).unwrap();
    assert_eq!(
        bare.encode("<|endoftext|>", false).unwrap().get_ids(),
        &[0],
        "HF default would emit EOT"
    );
    assert!(tokenizer::encode_text(&bare, "a").is_err());
}

#[test]
fn non_ascii_round_trips_with_byte_offsets() {
    let tok = small_tokenizer();
    let texts = [
        "emoji 😀🎉👩‍👩‍👧 end",
        "中文注释：函数返回值 // 日本語のコメント",
        "combining: e\u{301} a\u{308}\u{323} Z\u{335}\u{31b}",
        "crlf\r\nline\r\n\ttab\tsep\r\n",
        "controls \u{1}\u{7}\u{8}\u{b}\u{c}\u{1b}[0m\u{7f} done",
        "mixed: naïve café Ελληνικά русский עברית العربية",
        "   leading spaces and trailing   \n\n\n",
        "",
    ];
    let report = tokenizer::round_trip_check(
        &tok,
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| (i.to_string(), *t))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.n_texts, texts.len());

    for text in texts {
        let enc = tokenizer::encode_text(&tok, text).unwrap();
        assert_eq!(enc.ids.len(), enc.offsets.len());
        let mut last_start = 0;
        for (i, &(s, e)) in enc.offsets.iter().enumerate() {
            // Byte offsets into the str, on char boundaries, starts non-decreasing.
            assert!(s < e && e <= text.len(), "{text:?} token {i}: {s}..{e}");
            assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
            assert!(s >= last_start);
            last_start = s;
            // A token made of whole chars decodes to exactly its span.
            let piece = tokenizer::decode(&tok, &enc.ids[i..=i]).unwrap();
            if !piece.contains('\u{fffd}') {
                assert_eq!(&text[s..e], piece, "{text:?} token {i}");
            }
        }
        if let (Some(f), Some(l)) = (enc.offsets.first(), enc.offsets.last()) {
            assert_eq!((f.0, l.1), (0, text.len()));
        }
    }
    // A 4-byte char split across byte tokens: every piece reports the whole char.
    let enc = tokenizer::encode_text(&tok, "😀").unwrap();
    assert!(
        enc.ids.len() > 1,
        "emoji should not be one token in a 600-token vocab"
    );
    assert!(
        enc.offsets.iter().all(|&o| o == (0, 4)),
        "{:?}",
        enc.offsets
    );
}

#[test]
fn load_errors_name_the_file() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope.json");
    let err = tokenizer::load(&missing).unwrap_err();
    assert!(err.to_string().contains("nope.json"), "{err}");

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{not json").unwrap();
    let err = tokenizer::load(&garbage).unwrap_err();
    assert!(err.to_string().contains("garbage.json"), "{err}");

    // A valid tokenizer.json whose <|mask|> is no longer a special token.
    let tok = small_tokenizer();
    let mut json: serde_json::Value = serde_json::from_str(&tok.to_string(false).unwrap()).unwrap();
    json["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["content"] != "<|mask|>");
    let nomask = dir.path().join("nomask.json");
    std::fs::write(&nomask, json.to_string()).unwrap();
    let err = tokenizer::load(&nomask).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("nomask.json") && msg.contains("<|mask|>"),
        "{msg}"
    );

    // Special tokens at other ids (a tokenizer trained with another order). Loading resolves
    // added tokens through the model vocabulary, so that is where the order has to differ.
    let mut json: serde_json::Value = serde_json::from_str(&tok.to_string(false).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object_mut().unwrap();
    vocab.insert("<|pad|>".into(), 2.into());
    vocab.insert("<|mask|>".into(), 1.into());
    for t in json["added_tokens"].as_array_mut().unwrap() {
        if t["content"] == "<|pad|>" {
            t["content"] = "<|mask|>".into();
        } else if t["content"] == "<|mask|>" {
            t["content"] = "<|pad|>".into();
        }
    }
    let swapped = dir.path().join("swapped.json");
    std::fs::write(&swapped, json.to_string()).unwrap();
    let err = tokenizer::load(&swapped).unwrap_err();
    assert!(err.to_string().contains("swapped.json"), "{err}");
}

/// Every UTF-8 `*.py` under the local Python stdlib (site-packages excluded), sorted by path.
fn python_stdlib() -> Option<(PathBuf, Vec<(String, String)>)> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig;print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .ok()?;
    let root = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if !out.status.success() || !root.is_dir() {
        return None;
    }
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let (path, ft) = (entry.path(), entry.file_type().unwrap());
            if ft.is_dir() && entry.file_name() != "site-packages" {
                stack.push(path);
            } else if ft.is_file() && path.extension().is_some_and(|e| e == "py") {
                files.push(path);
            }
        }
    }
    files.sort();
    let texts = files
        .into_iter()
        .filter_map(|p| {
            let text = String::from_utf8(std::fs::read(&p).ok()?).ok()?;
            Some((p.strip_prefix(&root).unwrap().display().to_string(), text))
        })
        .collect();
    Some((root, texts))
}

#[test]
fn python_stdlib_round_trips() {
    let t0 = Instant::now();
    let Some((root, files)) = python_stdlib() else {
        eprintln!("SKIPPED: no python3 with a stdlib on this machine");
        return;
    };
    let total: usize = files.iter().map(|(_, t)| t.len()).sum();
    eprintln!(
        "stdlib {}: {} UTF-8 .py files, {:.1} MB",
        root.display(),
        files.len(),
        total as f64 / 1e6
    );
    assert!(
        files.len() > 1000,
        "only {} files under {}",
        files.len(),
        root.display()
    );

    // Train on a deterministic spread of files (hash order, not one package), capped at 4 MB.
    let mut order: Vec<&(String, String)> = files.iter().collect();
    order.sort_by_key(|(p, _)| xxh3_64(p.as_bytes()));
    let cfg = TrainConfig {
        vocab_size: 4096,
        min_frequency: 2,
        max_bytes: Some(4 << 20),
    };
    let t1 = Instant::now();
    let tok = tokenizer::train_from_texts(order.iter().map(|(_, t)| t.clone()), &cfg).unwrap();
    eprintln!(
        "trained vocab {} on 4 MB in {:.1}s",
        tok.get_vocab_size(true),
        t1.elapsed().as_secs_f64()
    );
    assert_eq!(tok.get_vocab_size(true), 4096);
    // Determinism at scale, where merge-count ties are common. (The hash is printed so runs in
    // separate processes, with differently seeded hash maps inside `tokenizers`, can be compared.)
    let json = tok.to_string(false).unwrap();
    let again = tokenizer::train_from_texts(order.iter().map(|(_, t)| t.clone()), &cfg).unwrap();
    assert!(
        json == again.to_string(false).unwrap(),
        "stdlib training is not deterministic"
    );
    eprintln!("tokenizer.json xxh3 {:016x}", xxh3_64(json.as_bytes()));

    let t2 = Instant::now();
    let report = tokenizer::round_trip_check(
        &tok,
        files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    eprintln!(
        "round trip: {} files, {} tokens, {:.2} bytes/token, {} failures in {:.1}s (total {:.1}s)",
        report.n_texts,
        report.n_tokens,
        report.bytes_per_token(),
        report.n_failures,
        t2.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(report.n_texts, files.len());
    assert!(report.ok(), "round-trip failures: {:#?}", report.failures);
    assert!(
        report.bytes_per_token() > 2.5,
        "suspiciously poor compression: {report:?}"
    );
}
