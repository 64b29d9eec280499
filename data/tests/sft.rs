//! Supervised fine-tuning data: reading, the prompt/completion boundary, loss masks, packing,
//! truncation, the held-out split, `tokenizer_file` and the pipeline's cache.

use anvil_data::pipeline::{self, DataRecipe};
use anvil_data::problems;
use anvil_data::sft::{self, SftExample};
use anvil_data::shard::Split;
use anvil_data::synth::{self, SynthConfig};
use anvil_data::tokenize::{
    self, TokenShard, TokenizeConfig, list_token_shards, read_manifest, read_token_shard,
};
use anvil_data::tokenizer::{self, EOT_ID, PAD_ID, TrainConfig, encode_text};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

fn small_cfg() -> TrainConfig {
    TrainConfig {
        vocab_size: 400,
        min_frequency: 2,
        max_bytes: None,
    }
}

/// Varied examples: short and long, non-ASCII, literal special-token text, an empty prompt.
fn examples(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| match i % 5 {
            0 => (
                format!("def add_one_{i}(x):\n    \"\"\"Add one.\"\"\"\n"),
                format!("    return x + {i}\n"),
            ),
            1 => (
                format!("# ünïcödé 中文 {i}\ndef s{i}():\n"),
                "    return '<|endoftext|> 😀'\n".to_string(),
            ),
            2 => (String::new(), format!("print({i})\n")),
            3 => (
                (0..4)
                    .map(|k| format!("# context line {k} of {i}\n"))
                    .collect(),
                format!("x = [{i}, {}]\n", i * 2),
            ),
            _ => (
                format!("class C{i}:\n    def m(self):\n"),
                (0..3)
                    .map(|k| format!("        y{k} = {k}\n"))
                    .collect::<String>()
                    + "        return y0\n",
            ),
        })
        .collect()
}

fn write_jsonl(path: &Path, exs: &[(String, String)]) {
    let mut text = String::new();
    for (p, c) in exs {
        text += &serde_json::json!({"prompt": p, "completion": c, "id": 7}).to_string();
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn tokenizer_for(exs: &[(String, String)]) -> Tokenizer {
    let texts = exs.iter().flat_map(|(p, c)| [p.clone(), c.clone()]);
    tokenizer::train_from_texts(texts, &small_cfg()).unwrap()
}

fn recipe(dir: &Path, sft: Vec<PathBuf>) -> DataRecipe {
    DataRecipe {
        cache_dir: dir.join("cache"),
        sft,
        tokenizer: small_cfg(),
        tokenize: TokenizeConfig {
            seq_len: 128,
            rows_per_shard: 4,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// All rows of a split, concatenated.
fn read_split(dir: &Path, split: Split) -> TokenShard {
    let mut all: Option<TokenShard> = None;
    for p in list_token_shards(dir, split).unwrap() {
        let s = read_token_shard(&p).unwrap();
        match all.as_mut() {
            None => all = Some(s),
            Some(a) => {
                a.input_ids.extend(s.input_ids);
                a.segment_ids.extend(s.segment_ids);
                if let (Some(m), Some(sm)) = (a.loss_mask.as_mut(), s.loss_mask) {
                    m.extend(sm);
                }
            }
        }
    }
    all.expect("split has shards")
}

/// The examples of packed rows, in order, as (ids, mask). Checks the packing invariants on the
/// way: segments numbered 1, 2, … within each row, contiguous, then only padding (PAD, segment
/// 0, mask 0) to the row's end; so no example continues into the next row.
fn unpack(s: &TokenShard) -> Vec<(Vec<u32>, Vec<u8>)> {
    let (l, mask) = (s.seq_len, s.loss_mask.as_ref().unwrap());
    let mut out = Vec::new();
    for r in 0..s.n_rows() {
        let row = r * l..(r + 1) * l;
        let (ids, seg, m) = (
            &s.input_ids[row.clone()],
            &s.segment_ids[row.clone()],
            &mask[row],
        );
        let mut expect_seg = 1;
        let mut i = 0;
        while i < l && seg[i] != 0 {
            assert_eq!(seg[i], expect_seg, "row {r}: segments count up from 1");
            let start = i;
            while i < l && seg[i] == expect_seg {
                i += 1;
            }
            out.push((ids[start..i].to_vec(), m[start..i].to_vec()));
            expect_seg += 1;
        }
        assert!(i > 0, "row {r} holds at least one example");
        for k in i..l {
            assert_eq!(
                (ids[k], seg[k], m[k]),
                (PAD_ID, 0, 0),
                "row {r}: padding only at the end"
            );
        }
    }
    out
}

fn want(tok: &Tokenizer, p: &str, c: &str) -> (Vec<u32>, Vec<u8>) {
    let (p, c) = (
        encode_text(tok, p).unwrap().ids,
        encode_text(tok, c).unwrap().ids,
    );
    let ids: Vec<u32> = p.iter().chain(&c).copied().chain([EOT_ID]).collect();
    let mask = std::iter::repeat_n(0, p.len())
        .chain(std::iter::repeat_n(1, c.len() + 1))
        .collect();
    (ids, mask)
}

#[test]
fn prompt_and_completion_are_encoded_apart_and_only_the_completion_is_a_target() {
    // A word cut in two: encoded together it is one pre-token whose merges cross the boundary.
    let mut exs = examples(20);
    exs.extend((0..10).map(|i| {
        (
            format!("y{i} = compute(value)\n"),
            "compute(value)\n".to_string(),
        )
    }));
    let (p, c) = ("result = comp".to_string(), "ute(value)\n".to_string());
    exs.push((p.clone(), c.clone()));
    let tok = tokenizer_for(&exs);
    let joined = encode_text(&tok, &format!("{p}{c}")).unwrap().ids;
    let (ids, mask) = want(&tok, &p, &c);
    assert_ne!(
        &ids[..ids.len() - 1],
        &joined[..],
        "the fixture must cross a merge"
    );

    let enc = sft::encode_example(&tok, &p, &c, 64).unwrap();
    assert_eq!((enc.ids.clone(), enc.mask.clone()), (ids.clone(), mask));
    assert_eq!(enc.n_prompt, encode_text(&tok, &p).unwrap().ids.len());
    assert!(!enc.truncated);
    // Literal special-token text in a completion stays ordinary bytes: the only EOT is the last.
    let (p1, c1) = &exs[1];
    let enc = sft::encode_example(&tok, p1, c1, 64).unwrap();
    assert_eq!(enc.ids.iter().filter(|&&t| t == EOT_ID).count(), 1);
    assert_eq!(*enc.ids.last().unwrap(), EOT_ID);
    // An empty prompt: every token is a target.
    let enc = sft::encode_example(&tok, "", "print(1)\n", 64).unwrap();
    assert!(enc.mask.iter().all(|&m| m == 1) && enc.n_prompt == 0);
}

#[test]
fn long_examples_lose_the_prompt_start_then_the_completion_end() {
    let exs = examples(20);
    let tok = tokenizer_for(&exs);
    let prompt: String = (0..30).map(|k| format!("# line {k}\n")).collect();
    let (p, c) = (
        encode_text(&tok, &prompt).unwrap().ids,
        encode_text(&tok, "x = 1\n").unwrap().ids,
    );
    let l = 16;
    assert!(p.len() + c.len() + 1 > l && c.len() + 1 < l);
    let enc = sft::encode_example(&tok, &prompt, "x = 1\n", l).unwrap();
    assert!(enc.truncated);
    let keep = l - c.len() - 1;
    let ids: Vec<u32> = p[p.len() - keep..]
        .iter()
        .chain(&c)
        .copied()
        .chain([EOT_ID])
        .collect();
    assert_eq!(enc.ids, ids);
    assert_eq!(enc.n_prompt, keep);
    assert_eq!(enc.mask.iter().filter(|&&m| m == 1).count(), c.len() + 1);

    // A completion longer than the row: its first `l` tokens, no EOT, no prompt.
    let long: String = (0..30).map(|k| format!("y{k} = {k}\n")).collect();
    let c = encode_text(&tok, &long).unwrap().ids;
    let enc = sft::encode_example(&tok, "def f():\n", &long, l).unwrap();
    assert!(enc.truncated && enc.n_prompt == 0);
    assert_eq!(enc.ids, c[..l]);
    assert!(enc.mask.iter().all(|&m| m == 1));

    // Exactly a row: not truncated.
    let c = encode_text(&tok, "x = 1\n").unwrap().ids;
    let enc = sft::encode_example(&tok, "", "x = 1\n", c.len() + 1).unwrap();
    assert!(!enc.truncated);
}

#[test]
fn pipeline_packs_whole_examples_with_masks_and_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut exs = examples(60);
    // Two examples over 128 tokens, to be truncated and reported.
    exs.push((
        (0..100).map(|k| format!("# ctx {k}\n")).collect(),
        "z = 0\n".into(),
    ));
    exs.push((
        "def g():\n".into(),
        (0..100).map(|k| format!("w{k} = {k}\n")).collect(),
    ));
    let (train, val) = (tmp.path().join("train.jsonl"), tmp.path().join("val.jsonl"));
    write_jsonl(&train, &exs);
    write_jsonl(&val, &examples(7));
    let mut r = recipe(tmp.path(), vec![train.clone()]);
    r.sft_val = vec![val.clone()];
    let out = pipeline::run(&r, &[]).unwrap();
    assert_eq!(out.built, ["tokenizer", "tokens"]);
    assert!(out.corpus.is_none());
    let tok = tokenizer::load(&out.tokenizer).unwrap();
    let m = read_manifest(&out.tokens).unwrap();
    assert_eq!(m.columns, ["input_ids", "segment_ids", "loss_mask"]);
    let stats = m.sft.as_ref().expect("sft section");
    assert_eq!(stats.val_fraction, None);
    assert_eq!((stats.train.n_examples, stats.val.n_examples), (62, 7));
    assert_eq!(stats.train.n_truncated, 2);
    let origin = |line: usize| format!("{}:{line}", train.display());
    assert_eq!(stats.train.truncated, [origin(61), origin(62)]);
    assert!(
        m.train.shards.len() > 1,
        "rows_per_shard = 4 makes several shards"
    );

    for (split, exs) in [(Split::Train, &exs), (Split::Val, &examples(7))] {
        let s = read_split(&out.tokens, split);
        let got = unpack(&s);
        assert_eq!(got.len(), exs.len());
        let stats = m.split(split);
        assert_eq!(stats.n_rows as usize, s.n_rows());
        assert_eq!(
            stats.n_pad as usize,
            s.segment_ids.iter().filter(|&&g| g == 0).count()
        );
        for (i, ((p, c), g)) in exs.iter().zip(&got).enumerate() {
            let e = sft::encode_example(&tok, p, c, 128).unwrap();
            assert_eq!(e.truncated, split == Split::Train && i >= 60, "example {i}");
            assert_eq!(g, &(e.ids.clone(), e.mask.clone()), "example {i}");
            if !e.truncated {
                assert_eq!(g, &want(&tok, p, c), "example {i}");
            }
        }
        let n_mask: usize = got
            .iter()
            .map(|(_, m)| m.iter().filter(|&&v| v == 1).count())
            .sum();
        let sp = if split == Split::Train {
            &m.sft.as_ref().unwrap().train
        } else {
            &m.sft.as_ref().unwrap().val
        };
        assert_eq!(sp.n_target_tokens as usize, n_mask);
    }

    // Same inputs: a cache hit. A changed file: built anew, byte-identical where unchanged.
    let again = pipeline::run(&r, &[]).unwrap();
    assert!(again.built.is_empty());
    assert_eq!(again.tokens, out.tokens);
    let shard0 = std::fs::read(out.tokens.join(&m.train.shards[0])).unwrap();
    let mut more = exs.clone();
    more.push(("a".into(), "b\n".into()));
    write_jsonl(&train, &more);
    let third = pipeline::run(&r, &[]).unwrap();
    assert_eq!(third.built, ["tokenizer", "tokens"]);
    assert_ne!(third.key, out.key);
    // Determinism: re-tokenizing the same examples with the same tokenizer gives the same bytes.
    write_jsonl(&train, &exs);
    let data_orig = sft::load(std::slice::from_ref(&train), &[val], 0.05, 0).unwrap();
    let redo = tmp.path().join("redo");
    sft::tokenize(&data_orig, &out.tokenizer, &redo, &r.tokenize, false).unwrap();
    assert_eq!(
        std::fs::read(redo.join(&m.train.shards[0])).unwrap(),
        shard0
    );
    assert_eq!(
        std::fs::read(redo.join("tokens.json")).unwrap(),
        std::fs::read(out.tokens.join("tokens.json")).unwrap()
    );
}

#[test]
fn held_out_split_is_deterministic_and_disjoint() {
    let tmp = tempfile::tempdir().unwrap();
    let exs = examples(400);
    let f = tmp.path().join("all.jsonl");
    write_jsonl(&f, &exs);
    let a = sft::load(std::slice::from_ref(&f), &[], 0.2, 3).unwrap();
    let b = sft::load(std::slice::from_ref(&f), &[], 0.2, 3).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.val_fraction, Some(0.2));
    assert_eq!(a.train.len() + a.val.len(), 400);
    assert!(
        (40..=120).contains(&a.val.len()),
        "{} held out",
        a.val.len()
    );
    let hashes = |v: &[SftExample]| {
        v.iter()
            .map(|e| e.content_hash())
            .collect::<std::collections::HashSet<_>>()
    };
    assert!(hashes(&a.train).is_disjoint(&hashes(&a.val)));
    // Membership depends on the example, not its position.
    let mut rev = exs.clone();
    rev.reverse();
    let g = tmp.path().join("rev.jsonl");
    write_jsonl(&g, &rev);
    let c = sft::load(&[g], &[], 0.2, 3).unwrap();
    assert_eq!(hashes(&c.val), hashes(&a.val));
    // Another seed, another split.
    let d = sft::load(std::slice::from_ref(&f), &[], 0.2, 4).unwrap();
    assert_ne!(hashes(&d.val), hashes(&a.val));
    // Nothing held out is an error, not an empty validation set.
    let e = sft::load(&[f], &[], 1e-9, 3).unwrap_err().to_string();
    assert!(e.contains("sft_val_fraction"), "{e}");
}

#[test]
fn humaneval_shaped_tasks_train_on_the_canonical_solution() {
    let tmp = tempfile::tempdir().unwrap();
    let set = synth::generate(&SynthConfig {
        n_train: 40,
        n_heldout: 10,
        seed: 1,
    });
    synth::write(&set, &tmp.path().join("synth"), false).unwrap();
    let train = tmp.path().join("synth/train.jsonl");
    let got = sft::read_jsonl(&train).unwrap();
    assert_eq!(got.len(), 40);
    for (e, p) in got.iter().zip(&set.train) {
        assert_eq!(
            (&e.prompt, &e.completion),
            (&p.prompt, &p.canonical_solution)
        );
    }
    // Gzipped, as problems::write_jsonl writes `.gz`.
    let gz = tmp.path().join("heldout.jsonl.gz");
    problems::write_jsonl(&gz, &set.heldout).unwrap();
    assert_eq!(sft::read_jsonl(&gz).unwrap().len(), 10);

    let mut r = recipe(tmp.path(), vec![train]);
    r.sft_val = vec![gz];
    r.tokenize.seq_len = 512;
    let out = pipeline::run(&r, &[]).unwrap();
    let m = read_manifest(&out.tokens).unwrap();
    let tok = tokenizer::load(&out.tokenizer).unwrap();
    let got = unpack(&read_split(&out.tokens, Split::Val));
    for (p, g) in set.heldout.iter().zip(&got) {
        let (ids, mask) = g;
        let n_prompt = mask.iter().take_while(|&&v| v == 0).count();
        if m.sft.as_ref().unwrap().val.n_truncated == 0 {
            assert_eq!(tokenizer::decode(&tok, &ids[..n_prompt]).unwrap(), p.prompt);
        }
        let target = tokenizer::decode(&tok, &ids[n_prompt..ids.len() - 1]).unwrap();
        assert_eq!(target, p.canonical_solution);
    }
}

#[test]
fn malformed_lines_name_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.jsonl");
    let good = r#"{"prompt": "a", "completion": "b"}"#;
    let cases: [(&[u8], &str); 9] = [
        (b"{\"prompt\": \"a\", \"completion\": ", "invalid JSON"),
        (br#"{"prompt": "a"}"#, "missing `completion`"),
        (br#"{"completion": "a"}"#, "missing `prompt`"),
        (
            br#"{"prompt": 3, "completion": "b"}"#,
            "`prompt` must be a string, found a number",
        ),
        (
            br#"{"prompt": "a", "completion": null}"#,
            "`completion` must be a string, found null",
        ),
        (
            br#"{"prompt": "a", "completion": ""}"#,
            "empty `completion`",
        ),
        (
            br#"{"prompt": "a", "canonical_solution": "b", "completion": "c"}"#,
            "both",
        ),
        (b"[1, 2]", "expected a JSON object, found an array"),
        (
            b"{\"prompt\": \"\xff\", \"completion\": \"b\"}",
            "not valid UTF-8",
        ),
    ];
    for (line, why) in cases {
        let mut bytes = format!("{good}\n\n{good}\n").into_bytes();
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
        std::fs::write(&f, &bytes).unwrap();
        let e = sft::read_jsonl(&f).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:4: ", f.display())), "{e}");
        assert!(e.contains(why), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    // The pipeline reports it the same way, before any work.
    let mut r = recipe(tmp.path(), vec![f.clone()]);
    let e = pipeline::run(&r, &[]).unwrap_err().to_string();
    assert!(e.contains("bad.jsonl:4"), "{e}");
    std::fs::write(&f, "\n").unwrap();
    let e = sft::read_jsonl(&f).unwrap_err().to_string();
    assert!(e.contains("no examples"), "{e}");
    r.sft = vec![tmp.path().join("missing.jsonl")];
    let e = pipeline::run(&r, &[]).unwrap_err().to_string();
    assert!(e.contains("missing.jsonl") && e.contains("data.sft"), "{e}");
}

#[test]
fn recipe_keys_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("a.jsonl");
    write_jsonl(&f, &examples(10));
    let base = recipe(tmp.path(), vec![f.clone()]);
    let err = |r: DataRecipe| pipeline::run(&r, &[]).unwrap_err().to_string();
    let mut r = base.clone();
    r.sft_val_fraction = 1.0;
    assert!(err(r).contains("sft_val_fraction"));
    let mut r = base.clone();
    r.sft_val_fraction = 0.0;
    assert!(err(r).contains("sft_val"));
    let mut r = base.clone();
    r.tokens = Some(tmp.path().to_path_buf());
    assert!(err(r).contains("data.tokens"));
    let mut r = base.clone();
    r.tokenize.fim_rate = 0.5;
    assert!(err(r).contains("fim_rate"));
    let mut r = base.clone();
    r.tokenize.ast = true;
    assert!(err(r).contains("ast"));
    let mut r = recipe(tmp.path(), vec![]);
    r.sft_val = vec![f];
    assert!(err(r).contains("data.sft"));
    // Recipes without the new keys read as before, and serialize as before.
    let old: DataRecipe = toml::from_str("cache_dir = \"x\"\n[tokenize]\nseq_len = 128\n").unwrap();
    assert!(old.sft.is_empty() && old.tokenizer_file.is_none());
    let json = serde_json::to_string(&old).unwrap();
    assert!(
        !json.contains("sft") && !json.contains("tokenizer_file"),
        "{json}"
    );
    let e = toml::from_str::<DataRecipe>("sft_typo = []")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sft_typo"), "{e}");
}

#[test]
fn tokenizer_file_is_used_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    // A tokenizer trained on other text, so its ids differ from one trained on this data.
    let other: Vec<(String, String)> = (0..50)
        .map(|i| {
            (
                format!("fn main{i}() {{"),
                format!(" let v{i} = vec![{i}]; }}\n"),
            )
        })
        .collect();
    let given = tmp.path().join("given.json");
    tokenizer::save(&tokenizer_for(&other), &given).unwrap();
    let given_bytes = std::fs::read(&given).unwrap();
    let tok = tokenizer::load(&given).unwrap();

    // SFT pipeline.
    let f = tmp.path().join("a.jsonl");
    let exs = examples(30);
    write_jsonl(&f, &exs);
    let mut r = recipe(tmp.path(), vec![f.clone()]);
    r.sft_val_fraction = 0.3;
    r.tokenize.seq_len = 256;
    let trained = pipeline::run(&r, &[]).unwrap();
    r.tokenizer_file = Some(given.clone());
    let out = pipeline::run(&r, &[]).unwrap();
    assert_eq!(out.built, ["tokens"], "no tokenizer is trained");
    assert_ne!(out.key, trained.key);
    assert_eq!(std::fs::read(&out.tokenizer).unwrap(), given_bytes);
    assert_eq!(
        std::fs::read(out.tokens.join("tokenizer.json")).unwrap(),
        given_bytes
    );
    let m = read_manifest(&out.tokens).unwrap();
    assert_eq!(
        m.tokenizer_xxh3,
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&given_bytes))
    );
    let data = sft::load(std::slice::from_ref(&f), &[], 0.3, 0).unwrap();
    let got = unpack(&read_split(&out.tokens, Split::Train));
    for (e, g) in data.train.iter().zip(&got) {
        assert_eq!(g, &want(&tok, &e.prompt, &e.completion));
    }
    assert!(
        pipeline::run(&r, &[]).unwrap().built.is_empty(),
        "cache hit"
    );
    // Another tokenizer file, another key.
    let given2 = tmp.path().join("given2.json");
    tokenizer::save(&tokenizer_for(&other[..40]), &given2).unwrap();
    r.tokenizer_file = Some(given2);
    assert_ne!(pipeline::run(&r, &[]).unwrap().key, out.key);

    // Corpus pipeline: the tokenizer stage is skipped and the corpus encoded with the file.
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let files = [
        "def double(x):\n    \"\"\"Return twice x.\"\"\"\n    return x * 2\n",
        "import os\n\nPATH = os.path.join('a', 'b')\nprint(PATH)\n",
        "class Stack:\n    def __init__(self):\n        self.items = []\n",
        "for i in range(10):\n    if i % 3 == 0:\n        print('fizz', i)\n",
    ];
    for (i, body) in files.iter().enumerate() {
        std::fs::write(src.join(format!("m{i}.py")), body).unwrap();
    }
    let mut c = DataRecipe {
        cache_dir: tmp.path().join("cache"),
        tokenizer_file: Some(given.clone()),
        tokenize: TokenizeConfig {
            seq_len: 32,
            ..Default::default()
        },
        ..Default::default()
    };
    c.corpus.sources = vec![src.display().to_string()];
    c.corpus.langs = vec![anvil_data::lang::Lang::Python];
    c.corpus.val_fraction = 0.0;
    let out = pipeline::run(&c, &[]).unwrap();
    assert_eq!(out.built, ["corpus", "tokens"]);
    assert_eq!(
        std::fs::read(out.tokens.join("tokenizer.json")).unwrap(),
        given_bytes
    );
    let m = read_manifest(&out.tokens).unwrap();
    assert!(m.sft.is_none() && !m.columns.contains(&"loss_mask".to_string()));
    let s = read_split(&out.tokens, Split::Train);
    let docs = anvil_data::shard::list_shards(out.corpus.as_ref().unwrap(), Split::Train)
        .unwrap()
        .iter()
        .flat_map(|p| anvil_data::shard::read_shard(p).unwrap())
        .collect::<Vec<_>>();
    let mut want_ids = Vec::new();
    for d in &docs {
        want_ids.extend(encode_text(&tok, &d.content).unwrap().ids);
        want_ids.push(EOT_ID);
    }
    assert_eq!(&s.input_ids[..want_ids.len()], &want_ids[..]);
    assert!(
        pipeline::run(&c, &[]).unwrap().built.is_empty(),
        "cache hit"
    );
    c.tokenizer_file = None;
    c.tokenizer = small_cfg();
    assert!(
        pipeline::run(&c, &[])
            .unwrap()
            .built
            .contains(&"tokenizer".to_string())
    );

    // Ready-made tokens must match the given tokenizer.
    let tokens_recipe = |file: &Path| DataRecipe {
        tokens: Some(out.tokens.clone()),
        tokenizer_file: Some(file.to_path_buf()),
        ..Default::default()
    };
    pipeline::run(&tokens_recipe(&given), &[]).unwrap();
    let e = pipeline::run(&tokens_recipe(&trained.tokenizer), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("another tokenizer"), "{e}");
    // Not a tokenizer: an error naming the file, before any work.
    let junk = tmp.path().join("junk.json");
    std::fs::File::create(&junk)
        .unwrap()
        .write_all(b"{}")
        .unwrap();
    c.tokenizer_file = Some(junk);
    let e = pipeline::run(&c, &[]).unwrap_err().to_string();
    assert!(e.contains("junk.json"), "{e}");
}

#[test]
fn old_tokens_json_still_reads() {
    // A corpus tokens.json from before the `sft` section: no such key.
    let tmp = tempfile::tempdir().unwrap();
    let m = tokenize::TokenizeManifest {
        anvil_version: "0".into(),
        seq_len: 8,
        vocab_size: 300,
        special_tokens: Default::default(),
        tokenizer: "tokenizer.json".into(),
        tokenizer_xxh3: "0".into(),
        ast_max_path: None,
        columns: vec!["input_ids".into(), "segment_ids".into()],
        train: Default::default(),
        val: Default::default(),
        config: Default::default(),
        sft: None,
    };
    let json = serde_json::to_string(&m).unwrap();
    assert!(!json.contains("sft"));
    std::fs::write(tmp.path().join("tokens.json"), json).unwrap();
    assert_eq!(read_manifest(tmp.path()).unwrap(), m);
}
