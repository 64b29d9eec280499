//! Decoding on real models saved and loaded the way `anvil generate` does: a randomly initialized
//! Llama (KV-cached decoding must equal recomputing the whole sequence) and a hand-built bigram
//! model whose most likely continuation is a syntax error (syntax-aware beam search must avoid
//! it where plain beam search does not).

use anvil_data::lang::Lang;
use anvil_infer::testing::{bigram_model, byte_tokenizer};
use anvil_infer::{BeamParams, FinishReason, GenerateParams, Generator, SamplingParams};
use anvil_models::{LlamaConfig, store};
use burn::tensor::Device;

fn config(vocab: usize, d_model: usize, n_layers: usize) -> LlamaConfig {
    LlamaConfig {
        vocab_size: vocab,
        d_model,
        n_layers,
        n_heads: 2,
        n_kv_heads: 1,
        d_ff: 48,
        max_seq_len: 96,
        attention: vec!["causal".into()],
        ..Default::default()
    }
}

fn id(tok: &tokenizers::Tokenizer, s: &str) -> u32 {
    anvil_infer::testing::token_id(tok, s)
}

#[test]
fn cached_decoding_equals_full_recompute_and_samples_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_tokenizer(dir.path());
    let vocab = tok.get_vocab_size(true);
    let model = config(vocab, 64, 2).init(&Device::flex());
    store::save(&model, dir.path()).unwrap();
    let g = Generator::load(dir.path(), None).unwrap();
    let prompt = g.encode("def add(a, b):\n    return").unwrap();

    // Greedy with the cache, step by step against argmax of a full forward over everything so far.
    let params = GenerateParams {
        max_new_tokens: 24,
        ignore_eos: true,
        ..Default::default()
    };
    let out = g.generate(&prompt, &params).unwrap();
    let c = &out.completions[0];
    assert_eq!(c.token_ids.len(), 24);
    assert_eq!(c.finish_reason, FinishReason::Length);
    let mut seq = prompt.clone();
    for (i, &t) in c.token_ids.iter().enumerate() {
        let logits = g.model.logits(&seq, 1, 0, None);
        let n = seq.len();
        let last: Vec<f32> = logits
            .narrow(1, n - 1, 1)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let best = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a)))
            .unwrap();
        assert_eq!(t as usize, best, "token {i}");
        let lse = anvil_infer::sampling::log_sum_exp(&last);
        assert!(
            (c.logprobs[i] - (last[best] - lse)).abs() < 1e-4,
            "logprob {i}"
        );
        seq.push(t);
    }

    // Sampling: 3 samples at once; sample i equals the same request's row i decoded alone.
    let sampled = GenerateParams {
        max_new_tokens: 16,
        n: 3,
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            seed: 42,
            ..Default::default()
        },
        ignore_eos: true,
        ..Default::default()
    };
    let many = g.generate(&prompt, &sampled).unwrap();
    let again = g.generate(&prompt, &sampled).unwrap();
    assert_eq!(
        many.completions, again.completions,
        "same seed, same samples"
    );
    let alone = g
        .generate(
            &prompt,
            &GenerateParams {
                n: 1,
                ..sampled.clone()
            },
        )
        .unwrap();
    assert_eq!(
        alone.completions[0].token_ids,
        many.completions[0].token_ids
    );
    assert_ne!(many.completions[0].token_ids, many.completions[1].token_ids);

    // Stop sequences cut the text; streamed deltas add up to it.
    let text = &many.completions[1].text;
    let cut = text.char_indices().nth(5).map(|(i, _)| i).unwrap();
    let stop = text[cut..].chars().take(2).collect::<String>();
    let mut streamed = String::new();
    let stopped = g
        .generate_streaming(
            &prompt,
            &GenerateParams {
                stop: vec![stop.clone()],
                ..sampled.clone()
            },
            |ev| {
                if let anvil_infer::Event::Delta { index: 1, text } = ev {
                    streamed.push_str(text);
                }
            },
        )
        .unwrap();
    let s1 = &stopped.completions[1];
    assert_eq!(s1.finish_reason, FinishReason::Stop);
    assert_eq!(s1.text, text[..text.find(&stop).unwrap()]);
    assert_eq!(streamed, s1.text);

    // Prompts of different lengths in one batch (left-padded, padding masked) decode what each
    // decodes alone.
    let prompts: Vec<Vec<u32>> = ["x", "def add(a, b):\n    return", "import os\nimport sys\n"]
        .iter()
        .map(|t| g.encode(t).unwrap())
        .collect();
    let seeds = [5, 6, 7];
    let two = GenerateParams {
        n: 2,
        max_new_tokens: 12,
        ..sampled.clone()
    };
    let (batched, _) = g.generate_batch(&prompts, &seeds, &two, |_, _| {}).unwrap();
    for (p, prompt) in prompts.iter().enumerate() {
        let alone = g
            .generate(
                prompt,
                &GenerateParams {
                    sampling: SamplingParams {
                        seed: seeds[p],
                        ..two.sampling.clone()
                    },
                    ..two.clone()
                },
            )
            .unwrap();
        assert_eq!(batched[p].len(), 2);
        for (a, b) in alone.completions.iter().zip(&batched[p]) {
            assert_eq!(a.token_ids, b.token_ids, "prompt {p}");
            for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
                assert!((x - y).abs() < 1e-4, "prompt {p}: {x} vs {y}");
            }
        }
    }

    // The context bounds generation; a prompt that fills it is refused.
    let long = vec![7u32; 90];
    let out = g.generate(&long, &params).unwrap();
    assert_eq!(out.completions[0].token_ids.len(), 6);
    assert!(g.generate(&vec![7u32; 96], &params).is_err());
    // FIM prompts are prefix, suffix, then the middle marker.
    let fim = g.fim_prompt("a", "b").unwrap();
    assert_eq!(
        fim,
        vec![3, id(&tok, "a") as u32, 4, id(&tok, "b") as u32, 5]
    );
}

#[test]
fn syntax_aware_beam_search_returns_code_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_tokenizer(dir.path());
    let (x, close, nl) = (id(&tok, "x"), id(&tok, ")"), id(&tok, "\n"));
    // After "x": ")" (0.6) or a newline (0.4); after ")": a newline; after a newline: the end.
    bigram_model(
        dir.path(),
        &tok,
        &[
            (x, vec![(close, 0.6), (nl, 0.4)]),
            (close, vec![(nl, 1.0)]),
            (nl, vec![(0, 1.0)]),
        ],
    );
    let g = Generator::load(dir.path(), None).unwrap();
    let prompt = g.encode("def f(x):\n    return x").unwrap();
    let params = BeamParams {
        beams: 3,
        max_new_tokens: 6,
        ..Default::default()
    };
    let plain = g.beam_search(&prompt, &params).unwrap();
    assert_eq!(
        plain[0].text, ")\n",
        "plain beam search takes the likelier, broken line"
    );
    assert_eq!(plain[0].syntax_valid, None);
    assert_eq!(plain[0].finish_reason, FinishReason::Eos);

    let aware = g
        .beam_search(
            &prompt,
            &BeamParams {
                syntax: Some(Lang::Python),
                ..params
            },
        )
        .unwrap();
    assert_eq!(aware[0].text, "\n");
    assert_eq!(aware[0].syntax_valid, Some(true));
    // The plain winner is what the syntax check refuses.
    assert!(
        aware
            .iter()
            .all(|h| h.text != ")\n" || h.syntax_valid == Some(false))
    );
    let parses = |code: &str| {
        let mut p = tree_sitter::Parser::new();
        p.set_language(&Lang::Python.grammar("")).unwrap();
        !p.parse(code, None).unwrap().root_node().has_error()
    };
    assert!(!parses(&format!(
        "def f(x):\n    return x{}",
        plain[0].text
    )));
    assert!(parses(&format!("def f(x):\n    return x{}", aware[0].text)));
}

#[test]
fn left_padded_batches_keep_every_attention_pattern() {
    // Global tokens are the first of each sequence, windows count from its own positions: a
    // padded row must see what it sees alone.
    for pattern in ["global:2:3", "sliding:3", "dilated:2:2"] {
        let dir = tempfile::tempdir().unwrap();
        let tok = byte_tokenizer(dir.path());
        let mut c = config(tok.get_vocab_size(true), 64, 2);
        c.attention = vec![pattern.into(), "causal".into()];
        store::save(&c.init(&Device::flex()), dir.path()).unwrap();
        let g = Generator::load(dir.path(), None).unwrap();
        let prompts: Vec<Vec<u32>> = ["ab", "import os, sys", "x = [1, 2, 3]\nfor i in x:"]
            .iter()
            .map(|t| g.encode(t).unwrap())
            .collect();
        let params = GenerateParams {
            max_new_tokens: 10,
            ignore_eos: true,
            ..Default::default()
        };
        let (batched, _) = g
            .generate_batch(&prompts, &[0, 0, 0], &params, |_, _| {})
            .unwrap();
        for (p, prompt) in prompts.iter().enumerate() {
            let alone = g.generate(prompt, &params).unwrap().completions;
            assert_eq!(
                alone[0].token_ids, batched[p][0].token_ids,
                "{pattern}, prompt {p}"
            );
            for (x, y) in alone[0].logprobs.iter().zip(&batched[p][0].logprobs) {
                assert!((x - y).abs() < 1e-4, "{pattern}, prompt {p}: {x} vs {y}");
            }
        }
    }
}
