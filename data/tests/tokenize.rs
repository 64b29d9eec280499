//! `anvil data tokenize`: packing invariants, FIM, determinism, AST facts, bad inputs.

mod common;
use common::record;

use anvil_data::error::DataError;
use anvil_data::lang::Lang;
use anvil_data::parse::parse;
use anvil_data::shard::{Record, Split, shard_name, write_shard};
use anvil_data::tokenize::{
    self, NO_LEVEL, TokenShard, TokenizeConfig, list_token_shards, read_manifest, read_token_shard,
    tokenize_corpus,
};
use anvil_data::tokenizer::{
    self, EOT_ID, FIM_MIDDLE_ID, FIM_PREFIX_ID, FIM_SUFFIX_ID, PAD_ID, TrainConfig, decode,
    encode_text,
};
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use tokenizers::Tokenizer;
use xxhash_rust::xxh3::xxh3_128;

/// Varied Python files: short and long (longer than a row), non-ASCII, literal special-token
/// strings, an empty file, and one Rust file.
fn docs(n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    for i in 0..n {
        let body = match i % 6 {
            0 => format!("def f{i}(x):\n    return x * {i} + 1\n"),
            1 => format!(
                "# ünïcödé 😀 中文 {i}\nclass C{i}:\n    def m(self):\n        return '{i}'\n"
            ),
            2 => format!("s = '<|endoftext|>'  # <|fim_prefix|> {i}\nprint(s)\n"),
            3 => (0..40)
                .map(|k| format!("v{k} = {i} * {k}  # line {k}\n"))
                .collect(),
            4 if i == 4 => String::new(),
            _ => format!("import os\n\n\ndef g{i}(p):\n\treturn os.path.join(p, \"x\")\r\n"),
        };
        out.push(record(&format!("pkg/m{i}.py"), &body));
    }
    out.push(record(
        "src/lib.rs",
        "fn main() {\n    let x = 1;\n    println!(\"{x}\");\n}\n",
    ));
    out
}

struct Fixture {
    dir: TempDir,
    train: Vec<Vec<Record>>,
    val: Vec<Vec<Record>>,
}

impl Fixture {
    fn corpus(&self) -> PathBuf {
        self.dir.path().join("corpus")
    }
    fn tokenizer_path(&self) -> PathBuf {
        self.dir.path().join("tokenizer.json")
    }
    fn tokenizer(&self) -> Tokenizer {
        tokenizer::load(&self.tokenizer_path()).unwrap()
    }
    fn run(&self, name: &str, cfg: &TokenizeConfig) -> PathBuf {
        let out = self.dir.path().join(name);
        tokenize_corpus(&self.corpus(), &self.tokenizer_path(), &out, cfg, false).unwrap();
        out
    }
}

/// A corpus (train in two shards, val in one) and a tokenizer trained on it.
fn fixture(n_train: usize, n_val: usize) -> Fixture {
    let dir = TempDir::new().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let all = docs(n_train + n_val);
    let (train, val) = all.split_at(n_train);
    let half = train.len() / 2;
    let train = vec![train[..half].to_vec(), train[half..].to_vec()];
    let val = vec![val.to_vec()];
    for (split, shards) in [(Split::Train, &train), (Split::Val, &val)] {
        for (i, recs) in shards.iter().enumerate() {
            write_shard(&corpus.join(shard_name(split, i, shards.len())), recs).unwrap();
        }
    }
    std::fs::write(corpus.join("manifest.json"), "{}").unwrap();
    let cfg = TrainConfig {
        vocab_size: 400,
        min_frequency: 2,
        max_bytes: None,
    };
    let tok = tokenizer::train_from_corpus(&corpus, &cfg).unwrap();
    tokenizer::save(&tok, &dir.path().join("tokenizer.json")).unwrap();
    Fixture { dir, train, val }
}

/// All rows of a split, concatenated.
fn read_split(out: &Path, split: Split) -> TokenShard {
    let mut all: Option<TokenShard> = None;
    for p in list_token_shards(out, split).unwrap() {
        let s = read_token_shard(&p).unwrap();
        match all.as_mut() {
            None => all = Some(s),
            Some(a) => {
                assert_eq!((a.seq_len, a.ast_max_path), (s.seq_len, s.ast_max_path));
                a.input_ids.extend(s.input_ids);
                a.segment_ids.extend(s.segment_ids);
                if let (Some(d), Some(sd)) = (a.ast_depth.as_mut(), s.ast_depth) {
                    d.extend(sd);
                }
                if let (Some(p), Some(sp)) = (a.ast_path.as_mut(), s.ast_path) {
                    p.extend(sp);
                }
            }
        }
    }
    all.expect("split has shards")
}

/// The non-pad token stream split into documents at EOT (data never produces EOT).
fn split_docs(s: &TokenShard) -> Vec<Vec<u32>> {
    let mut docs = vec![Vec::new()];
    for (&id, &seg) in s.input_ids.iter().zip(&s.segment_ids) {
        if seg == 0 {
            continue;
        }
        if id == EOT_ID {
            docs.push(Vec::new());
        } else {
            docs.last_mut().unwrap().push(id);
        }
    }
    assert!(docs.pop().unwrap().is_empty(), "stream must end with EOT");
    docs
}

#[test]
fn packing_invariants() {
    let fx = fixture(30, 7);
    let tok = fx.tokenizer();
    let cfg = TokenizeConfig {
        seq_len: 64,
        rows_per_shard: 3,
        ..Default::default()
    };
    let out = fx.run("out", &cfg);
    let m = read_manifest(&out).unwrap();
    assert_eq!(m.seq_len, 64);
    assert_eq!(m.vocab_size, 400);
    assert_eq!(m.special_tokens.eot, EOT_ID);
    assert_eq!(m.special_tokens.pad, PAD_ID);
    assert_eq!(m.ast_max_path, None);
    let copied = std::fs::read(out.join("tokenizer.json")).unwrap();
    assert_eq!(copied, std::fs::read(fx.tokenizer_path()).unwrap());
    assert_eq!(m.tokenizer_xxh3, format!("{:032x}", xxh3_128(&copied)));

    for (split, shards) in [(Split::Train, &fx.train), (Split::Val, &fx.val)] {
        let stats = m.split(split);
        let recs: Vec<&Record> = shards.iter().flatten().collect();
        // Expected stream: every document's tokens, then EOT, in corpus order.
        let mut expected = Vec::new();
        for r in &recs {
            expected.extend(encode_text(&tok, &r.content).unwrap().ids);
            expected.push(EOT_ID);
        }
        let s = read_split(&out, split);
        let l = s.seq_len;
        assert_eq!(l, 64);
        assert!(s.ast_depth.is_none() && s.ast_path.is_none());
        assert_eq!(s.input_ids.len() % l, 0);
        assert_eq!(s.segment_ids.len(), s.input_ids.len());
        let n_rows = s.input_ids.len() / l;
        assert_eq!(n_rows, expected.len().div_ceil(l));

        let real: Vec<u32> = s
            .input_ids
            .iter()
            .zip(&s.segment_ids)
            .filter(|(_, g)| **g != 0)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(
            real, expected,
            "{split:?}: packed stream != documents + EOT"
        );
        // Padding: only at the end of the last row, and all of it <|pad|>.
        let first_pad = s
            .segment_ids
            .iter()
            .position(|&g| g == 0)
            .unwrap_or(s.segment_ids.len());
        assert!(first_pad >= (n_rows - 1) * l);
        assert!(s.segment_ids[first_pad..].iter().all(|&g| g == 0));
        assert!(s.input_ids[first_pad..].iter().all(|&i| i == PAD_ID));
        assert!(s.input_ids[..first_pad].iter().all(|&i| i != PAD_ID));
        // Segment ids: 1 at each row start, +1 exactly after an EOT within the row.
        for (r, (ids, seg)) in s
            .input_ids
            .chunks(l)
            .zip(s.segment_ids.chunks(l))
            .enumerate()
        {
            assert_eq!(seg[0], 1, "row {r}");
            for p in 1..l {
                if seg[p] == 0 {
                    continue;
                }
                let want = seg[p - 1] + u16::from(ids[p - 1] == EOT_ID);
                assert_eq!(seg[p], want, "row {r} pos {p}");
            }
        }
        // Some document crosses a row boundary (the 40-line files are longer than a row).
        assert!(
            s.input_ids
                .chunks(l)
                .take(n_rows - 1)
                .any(|row| *row.last().unwrap() != EOT_ID)
        );
        // No FIM at fim_rate 0.
        assert!(
            !s.input_ids
                .iter()
                .any(|i| [FIM_PREFIX_ID, FIM_SUFFIX_ID, FIM_MIDDLE_ID].contains(i))
        );

        assert_eq!(stats.n_docs, recs.len() as u64);
        assert_eq!(stats.n_tokens, expected.len() as u64);
        assert_eq!(stats.n_rows, n_rows as u64);
        assert_eq!(stats.n_pad as usize, s.input_ids.len() - first_pad);
        assert_eq!((stats.n_fim_psm, stats.n_fim_spm), (0, 0));
        let n_shards = n_rows.div_ceil(3);
        let names: Vec<String> = (0..n_shards)
            .map(|i| shard_name(split, i, n_shards))
            .collect();
        assert_eq!(stats.shards, names);
    }
    // Only the final files and the manifest: no temp files left behind.
    let mut listing: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listing.sort();
    let mut want: Vec<String> = m
        .train
        .shards
        .iter()
        .chain(&m.val.shards)
        .cloned()
        .collect();
    want.extend(["tokenizer.json".to_string(), "tokens.json".to_string()]);
    want.sort();
    assert_eq!(listing, want);
}

/// Undo FIM: returns (original text, is_spm_form) after checking the tokens of each part are
/// exactly that part's own encoding.
fn unfim(tok: &Tokenizer, doc: &[u32]) -> (String, bool) {
    let count = |id| doc.iter().filter(|&&x| x == id).count();
    assert_eq!(
        (
            count(FIM_PREFIX_ID),
            count(FIM_SUFFIX_ID),
            count(FIM_MIDDLE_ID)
        ),
        (1, 1, 1),
        "{doc:?}"
    );
    assert_eq!(doc[0], FIM_PREFIX_ID);
    let suf = doc.iter().position(|&x| x == FIM_SUFFIX_ID).unwrap();
    let mid = doc.iter().position(|&x| x == FIM_MIDDLE_ID).unwrap();
    assert!(suf < mid);
    let dec = |ids: &[u32]| {
        let s = decode(tok, ids).unwrap();
        (s.clone(), encode_text(tok, &s).unwrap().ids)
    };
    if suf == 1 {
        // SPM: <PRE> <SUF> suffix <MID> prefix middle (also PSM with an empty prefix).
        let (suffix, suffix_ids) = dec(&doc[2..mid]);
        assert_eq!(suffix_ids, &doc[2..mid]);
        let (pm, _) = dec(&doc[mid + 1..]);
        (pm + &suffix, true)
    } else {
        // PSM: <PRE> prefix <SUF> suffix <MID> middle.
        let (prefix, p_ids) = dec(&doc[1..suf]);
        let (suffix, s_ids) = dec(&doc[suf + 1..mid]);
        let (middle, m_ids) = dec(&doc[mid + 1..]);
        assert_eq!(
            (p_ids.as_slice(), s_ids.as_slice(), m_ids.as_slice()),
            (&doc[1..suf], &doc[suf + 1..mid], &doc[mid + 1..])
        );
        (prefix + &middle + &suffix, false)
    }
}

#[test]
fn fim_rearranges_every_document_and_is_reversible() {
    let fx = fixture(60, 6);
    let tok = fx.tokenizer();
    for (spm_rate, name) in [(0.5, "mixed"), (0.0, "psm"), (1.0, "spm")] {
        let cfg = TokenizeConfig {
            seq_len: 32,
            fim_rate: 1.0,
            fim_spm_rate: spm_rate,
            seed: 7,
            ..Default::default()
        };
        let out = fx.run(name, &cfg);
        let m = read_manifest(&out).unwrap();
        for (split, shards) in [(Split::Train, &fx.train), (Split::Val, &fx.val)] {
            let recs: Vec<&Record> = shards.iter().flatten().collect();
            let docs = split_docs(&read_split(&out, split));
            assert_eq!(docs.len(), recs.len());
            let mut n_spm_form = 0;
            for (doc, rec) in docs.iter().zip(&recs) {
                let (orig, spm_form) = unfim(&tok, doc);
                assert_eq!(orig, rec.content, "{name}: {}", rec.path);
                n_spm_form += usize::from(spm_form);
            }
            let st = m.split(split);
            assert_eq!(st.n_fim_psm + st.n_fim_spm, recs.len() as u64);
            // PSM with an empty prefix looks like SPM, so the form count can only exceed n_fim_spm.
            assert!(n_spm_form as u64 >= st.n_fim_spm);
            match name {
                "psm" => assert_eq!(st.n_fim_spm, 0),
                "spm" => assert_eq!(st.n_fim_psm, 0),
                _ if split == Split::Train => {
                    assert!(st.n_fim_psm > 5 && st.n_fim_spm > 5, "{st:?}")
                }
                _ => {}
            }
        }
    }
    // A middle rate FIMs some documents and leaves the rest untouched.
    let cfg = TokenizeConfig {
        seq_len: 32,
        fim_rate: 0.5,
        seed: 1,
        ..Default::default()
    };
    let out = fx.run("half", &cfg);
    let m = read_manifest(&out).unwrap();
    let n_fim = m.train.n_fim_psm + m.train.n_fim_spm;
    assert!(n_fim > 10 && n_fim < 50, "{:?}", m.train);
    let docs = split_docs(&read_split(&out, Split::Train));
    let recs: Vec<&Record> = fx.train.iter().flatten().collect();
    let mut seen_fim = 0;
    for (doc, rec) in docs.iter().zip(&recs) {
        if doc.first() == Some(&FIM_PREFIX_ID) {
            seen_fim += 1;
            assert_eq!(unfim(&tok, doc).0, rec.content);
        } else {
            assert_eq!(doc, &encode_text(&tok, &rec.content).unwrap().ids);
        }
    }
    assert_eq!(seen_fim, n_fim);
}

fn shard_bytes(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn output_is_deterministic() {
    let fx = fixture(40, 8);
    let cfg = TokenizeConfig {
        seq_len: 48,
        fim_rate: 0.5,
        ast: true,
        seed: 3,
        rows_per_shard: 5,
        ..Default::default()
    };
    let a = fx.run("a", &cfg);
    // Same inputs on a single thread: scheduling must not matter.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let b = fx.dir.path().join("b");
    pool.install(|| tokenize_corpus(&fx.corpus(), &fx.tokenizer_path(), &b, &cfg, false))
        .unwrap();
    let (sa, sb) = (shard_bytes(&a), shard_bytes(&b));
    assert!(sa.len() > 2);
    assert!(sa == sb, "two runs gave different shard files");
    assert_eq!(read_manifest(&a).unwrap(), read_manifest(&b).unwrap());
    // Another seed makes other FIM decisions.
    let c = fx.run(
        "c",
        &TokenizeConfig {
            seed: 4,
            ..cfg.clone()
        },
    );
    assert!(shard_bytes(&c) != sa);
}

/// The facts the shards should carry for a token starting at `byte`, by brute force: from the
/// root, scan every child for the one containing `byte` (independent of `PrefixPositions`).
fn expected_fact(tree: &tree_sitter::Tree, byte: usize, max_path: usize) -> (u16, Vec<u16>) {
    let mut node = tree.root_node();
    let mut path = Vec::new();
    'down: loop {
        for i in 0..node.child_count() {
            let c = node.child(i).unwrap();
            if c.start_byte() <= byte && byte < c.end_byte() {
                path.push(i as u16);
                node = c;
                continue 'down;
            }
        }
        break;
    }
    let depth = path.len() as u16;
    path.truncate(max_path);
    path.resize(max_path, NO_LEVEL);
    (depth, path)
}

const PY: &str =
    "import os\n\ndef add(a, b):\n\tc = a + b\n\tif c > 0:\n\t\treturn c\n\treturn os.sep\n";

fn ast_fixture(content: &str, path: &str) -> Fixture {
    let dir = TempDir::new().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let train = vec![vec![record(path, content)]];
    write_shard(&corpus.join(shard_name(Split::Train, 0, 1)), &train[0]).unwrap();
    std::fs::write(corpus.join("manifest.json"), "{}").unwrap();
    // Train the tokenizer on other text, so `return` and friends are not single tokens by luck.
    let texts = docs(30).into_iter().map(|r| r.content);
    let tok = tokenizer::train_from_texts(
        texts,
        &TrainConfig {
            vocab_size: 400,
            ..Default::default()
        },
    )
    .unwrap();
    tokenizer::save(&tok, &dir.path().join("tokenizer.json")).unwrap();
    Fixture {
        dir,
        train,
        val: vec![],
    }
}

#[test]
fn ast_facts_match_a_direct_parse() {
    let fx = ast_fixture(PY, "m.py");
    let tok = fx.tokenizer();
    let enc = encode_text(&tok, PY).unwrap();
    for max_path in [8, 2] {
        let cfg = TokenizeConfig {
            seq_len: 128,
            ast: true,
            ast_max_path: max_path,
            ..Default::default()
        };
        let out = fx.run(&format!("ast{max_path}"), &cfg);
        assert_eq!(read_manifest(&out).unwrap().ast_max_path, Some(max_path));
        let s = read_split(&out, Split::Train);
        assert_eq!(s.ast_max_path, max_path);
        let (depth, path) = (s.ast_depth.as_ref().unwrap(), s.ast_path.as_ref().unwrap());
        assert_eq!(depth.len(), s.input_ids.len());
        assert_eq!(path.len(), s.input_ids.len() * max_path);
        let n = enc.ids.len();
        assert_eq!(&s.input_ids[..n], &enc.ids[..]);
        // Each token's fact is of its first byte in a fresh parse of the file up to its end.
        for (i, &(start, end)) in enc.offsets.iter().enumerate() {
            let tree = parse(Lang::Python, "m.py", &PY.as_bytes()[..end]).unwrap();
            let (d, p) = expected_fact(&tree, start, max_path);
            assert_eq!(depth[i], d, "token {i} at byte {start}");
            assert_eq!(&path[i * max_path..(i + 1) * max_path], &p[..], "token {i}");
        }
        // EOT and padding: depth 0, empty path.
        assert_eq!(s.input_ids[n], EOT_ID);
        assert!(depth[n..].iter().all(|&d| d == 0));
        assert!(path[n * max_path..].iter().all(|&v| v == NO_LEVEL));
        // Paths are a run of real levels then NO_LEVEL, never longer than max_path.
        for (i, p) in path.chunks(max_path).enumerate() {
            let k = p.iter().position(|&v| v == NO_LEVEL).unwrap_or(max_path);
            assert!(p[k..].iter().all(|&v| v == NO_LEVEL), "token {i}: {p:?}");
            assert_eq!(k, (depth[i] as usize).min(max_path), "token {i}");
        }
        // Semantics: tab indentation makes `return` start its own token; it sits deeper than `def`.
        let at = |needle: &str| {
            let byte = PY.find(needle).unwrap();
            enc.offsets
                .iter()
                .position(|o| o.0 == byte)
                .unwrap_or_else(|| panic!("no token starts at {needle:?}"))
        };
        let (def, ret, inner_ret) = (at("def"), at("return os"), at("return c"));
        assert!(depth[ret] > depth[def], "{} vs {}", depth[ret], depth[def]);
        assert!(depth[inner_ret] > depth[ret]);
        if max_path == 2 {
            assert!(depth[inner_ret] > 2);
        }
    }
}

/// A fill-in-the-middle document's text is out of order, so no prefix of it is a prefix of the
/// file: its tokens carry no tree position (depth 0, empty path), specials included.
#[test]
fn fim_documents_carry_no_tree_positions() {
    let fx = ast_fixture(PY, "m.py");
    for seed in 0..4u64 {
        let cfg = TokenizeConfig {
            seq_len: 256,
            fim_rate: 1.0,
            fim_spm_rate: if seed % 2 == 0 { 0.0 } else { 1.0 },
            ast: true,
            seed,
            ..Default::default()
        };
        let out = fx.run(&format!("fim{seed}"), &cfg);
        let s = read_split(&out, Split::Train);
        let (depth, path) = (s.ast_depth.unwrap(), s.ast_path.unwrap());
        assert!(s.input_ids.contains(&FIM_MIDDLE_ID));
        assert!(depth.iter().all(|&d| d == 0), "seed {seed}");
        assert!(path.iter().all(|&v| v == NO_LEVEL), "seed {seed}");
    }
}

#[test]
fn other_languages_get_facts_too() {
    let src = "fn main() {\n    let x = vec![1, 2];\n    println!(\"{:?}\", x);\n}\n";
    let fx = ast_fixture(src, "src/main.rs");
    let cfg = TokenizeConfig {
        seq_len: 64,
        ast: true,
        ..Default::default()
    };
    let out = fx.run("rs", &cfg);
    let s = read_split(&out, Split::Train);
    let depth = s.ast_depth.unwrap();
    // Prefix parses inside a still-open `{` recover into shallow ERROR nodes: 3 levels here.
    assert!(depth.iter().any(|&d| d >= 3), "{depth:?}");
}

#[test]
fn bad_inputs_are_errors_naming_the_file() {
    let fx = fixture(12, 3);
    let cfg = TokenizeConfig {
        seq_len: 32,
        ..Default::default()
    };
    let out = fx.dir.path().join("out");

    // Missing tokenizer.
    let missing = fx.dir.path().join("no-tokenizer.json");
    let err = tokenize_corpus(&fx.corpus(), &missing, &out, &cfg, false).unwrap_err();
    assert!(err.to_string().contains("no-tokenizer.json"), "{err}");
    assert!(!out.exists(), "nothing is created on bad inputs");

    // Corpus without a manifest.
    let bare = fx.dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    let err = tokenize_corpus(&bare, &fx.tokenizer_path(), &out, &cfg, false).unwrap_err();
    assert!(
        err.to_string().contains(&bare.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("manifest"), "{err}");

    // Bad configs name the flag.
    for (bad, flag) in [
        (
            TokenizeConfig {
                seq_len: 4,
                ..cfg.clone()
            },
            "--seq-len",
        ),
        (
            TokenizeConfig {
                fim_rate: 1.5,
                ..cfg.clone()
            },
            "--fim-rate",
        ),
        (
            TokenizeConfig {
                fim_spm_rate: -0.1,
                ..cfg.clone()
            },
            "--fim-spm-rate",
        ),
        (
            TokenizeConfig {
                ast: true,
                ast_max_path: 0,
                ..cfg.clone()
            },
            "--ast-max-path",
        ),
        (
            TokenizeConfig {
                rows_per_shard: 0,
                ..cfg.clone()
            },
            "rows_per_shard",
        ),
    ] {
        let err =
            tokenize_corpus(&fx.corpus(), &fx.tokenizer_path(), &out, &bad, false).unwrap_err();
        assert!(
            matches!(err, DataError::Config(_)) && err.to_string().contains(flag),
            "{err}"
        );
    }

    // A good run, then a second one into the same non-empty dir without --overwrite.
    tokenize_corpus(&fx.corpus(), &fx.tokenizer_path(), &out, &cfg, false).unwrap();
    let err = tokenize_corpus(&fx.corpus(), &fx.tokenizer_path(), &out, &cfg, false).unwrap_err();
    assert!(
        err.to_string().contains("out") && err.to_string().contains("overwrite"),
        "{err}"
    );
    tokenize_corpus(&fx.corpus(), &fx.tokenizer_path(), &out, &cfg, true).unwrap();
    // --overwrite into the corpus itself would delete it: refused, corpus intact.
    let err =
        tokenize_corpus(&fx.corpus(), &fx.tokenizer_path(), &fx.corpus(), &cfg, true).unwrap_err();
    assert!(err.to_string().contains("replace the input"), "{err}");
    assert!(fx.corpus().join("manifest.json").is_file());

    // Reading: a corpus shard is not a token shard.
    let corpus_shard = fx.corpus().join(shard_name(Split::Train, 0, 2));
    let err = read_token_shard(&corpus_shard).unwrap_err();
    assert!(
        err.to_string()
            .contains(&corpus_shard.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("input_ids"), "{err}");
    // Not Parquet at all.
    let junk = fx.dir.path().join("junk.parquet");
    std::fs::write(&junk, b"definitely not parquet").unwrap();
    let err = read_token_shard(&junk).unwrap_err();
    assert!(err.to_string().contains("junk.parquet"), "{err}");
    // Missing file.
    let err = read_token_shard(&fx.dir.path().join("gone.parquet")).unwrap_err();
    assert!(err.to_string().contains("gone.parquet"), "{err}");
    // Ragged rows.
    let ragged = fx.dir.path().join("ragged.parquet");
    write_ragged(&ragged);
    let err = read_token_shard(&ragged).unwrap_err();
    assert!(
        err.to_string().contains("ragged.parquet") && err.to_string().contains("ragged"),
        "{err}"
    );

    // A directory without tokens.json (an unfinished run, or the corpus) is refused.
    let err = list_token_shards(&fx.corpus(), Split::Train).unwrap_err();
    assert!(err.to_string().contains("tokens.json"), "{err}");
    std::fs::remove_file(out.join(tokenize::MANIFEST)).unwrap();
    assert!(list_token_shards(&out, Split::Train).is_err());
    assert!(read_manifest(&out).is_err());
}

fn write_ragged(path: &Path) {
    use arrow_array::types::{UInt16Type, UInt32Type};
    use arrow_array::{ArrayRef, ListArray, RecordBatch};
    use std::sync::Arc;
    let ids = ListArray::from_iter_primitive::<UInt32Type, _, _>(vec![
        Some(vec![Some(1u32); 8]),
        Some(vec![Some(2u32); 7]),
    ]);
    let seg = ListArray::from_iter_primitive::<UInt16Type, _, _>(vec![
        Some(vec![Some(1u16); 8]),
        Some(vec![Some(1u16); 7]),
    ]);
    let batch = RecordBatch::try_from_iter([
        ("input_ids", Arc::new(ids) as ArrayRef),
        ("segment_ids", Arc::new(seg) as ArrayRef),
    ])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Scale check on the local Python stdlib (~30 MB, like the real corpus): timings, and that
/// AST + FIM output still round-trips. `cargo test -p anvil-data --test tokenize -- --ignored`
#[test]
#[ignore]
fn stdlib_scale() {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig;print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .unwrap();
    let root = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let (p, ft) = (e.path(), e.file_type().unwrap());
            if ft.is_dir() && e.file_name() != "site-packages" {
                stack.push(p);
            } else if ft.is_file() && p.extension().is_some_and(|x| x == "py") {
                files.push(p);
            }
        }
    }
    files.sort();
    let recs: Vec<Record> = files
        .iter()
        .filter_map(|p| {
            let text = String::from_utf8(std::fs::read(p).ok()?).ok()?;
            Some(record(
                &p.strip_prefix(&root).unwrap().display().to_string(),
                &text,
            ))
        })
        .collect();
    let dir = TempDir::new().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let (train, val) = recs.split_at(recs.len() * 9 / 10);
    let (t1, t2) = train.split_at(train.len() / 2);
    write_shard(&corpus.join(shard_name(Split::Train, 0, 2)), t1).unwrap();
    write_shard(&corpus.join(shard_name(Split::Train, 1, 2)), t2).unwrap();
    write_shard(&corpus.join(shard_name(Split::Val, 0, 1)), val).unwrap();
    std::fs::write(corpus.join("manifest.json"), "{}").unwrap();
    let t = std::time::Instant::now();
    let cfg = TrainConfig {
        vocab_size: 8192,
        max_bytes: Some(8 << 20),
        ..Default::default()
    };
    let tok = tokenizer::train_from_corpus(&corpus, &cfg).unwrap();
    let tok_path = dir.path().join("tokenizer.json");
    tokenizer::save(&tok, &tok_path).unwrap();
    eprintln!("train 8 MB -> 8192: {:.1}s", t.elapsed().as_secs_f64());
    for (name, cfg) in [
        ("plain", TokenizeConfig::default()),
        (
            "fim+ast",
            TokenizeConfig {
                fim_rate: 0.5,
                ast: true,
                ..Default::default()
            },
        ),
    ] {
        let t = std::time::Instant::now();
        let out = dir.path().join(name);
        let m = tokenize_corpus(&corpus, &tok_path, &out, &cfg, false).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let mb = (m.train.n_bytes + m.val.n_bytes) as f64 / 1e6;
        eprintln!(
            "{name}: {mb:.1} MB, {} docs, {} tokens, {} rows in {secs:.1}s ({:.1} MB/s)",
            m.train.n_docs + m.val.n_docs,
            m.train.n_tokens + m.val.n_tokens,
            m.train.n_rows + m.val.n_rows,
            mb / secs
        );
        let t = std::time::Instant::now();
        let s = read_split(&out, Split::Train);
        eprintln!(
            "  read train back: {} rows in {:.2}s",
            s.n_rows(),
            t.elapsed().as_secs_f64()
        );
        let docs = split_docs(&s);
        assert_eq!(docs.len() as u64, m.train.n_docs);
        for (doc, rec) in docs.iter().zip(train) {
            if doc.first() == Some(&FIM_PREFIX_ID) {
                assert_eq!(unfim(&tok, doc).0, rec.content, "{}", rec.path);
            } else {
                assert_eq!(decode(&tok, doc).unwrap(), rec.content, "{}", rec.path);
            }
        }
    }
}
