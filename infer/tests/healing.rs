//! Token healing on scripted models: a prompt ending in a lone newline, which the model only
//! continues well once the newline is backed off and rewritten as the `"\n   "` it learned
//! (`testing::indent_model`); and a randomly initialized model on a trained tokenizer, where
//! whatever is generated must continue the prompt's text exactly.

use anvil_infer::testing::{bigram_model, indent_model, merged_tokenizer, token_id};
use anvil_infer::{
    BeamParams, Event, FinishReason, GenerateParams, Generator, Request, SamplingParams,
};
use anvil_models::{LlamaConfig, store};
use burn::tensor::Device;

const PROMPT: &str = "def f(y):\n";

fn params(token_healing: bool) -> GenerateParams {
    GenerateParams {
        max_new_tokens: 16,
        token_healing,
        ..Default::default()
    }
}

fn indent() -> (tempfile::TempDir, Generator) {
    let dir = tempfile::tempdir().unwrap();
    indent_model(dir.path());
    let g = Generator::load(dir.path(), None).unwrap();
    (dir, g)
}

#[test]
fn healing_rewrites_the_final_newline_as_the_indentation_the_model_knows() {
    let (_dir, g) = indent();
    let prompt = g.encode(PROMPT).unwrap();
    assert_eq!(g.decode(&prompt[prompt.len() - 1..]).unwrap(), "\n");

    // Without healing the model ends the text after the lone newline at once.
    let plain = g.generate(&prompt, &params(false)).unwrap();
    let c = &plain.completions[0];
    assert_eq!((c.text.as_str(), c.finish_reason), ("", FinishReason::Eos));
    assert_eq!(c.healed_tokens, 0);

    // With healing: the text after the prompt, the rewritten newline left out.
    let mut streamed = String::new();
    let healed = g
        .generate_streaming(&prompt, &params(true), |ev| {
            if let Event::Delta { text, .. } = ev {
                streamed.push_str(text);
            }
        })
        .unwrap();
    let c = &healed.completions[0];
    assert_eq!(
        (c.text.as_str(), c.finish_reason),
        ("    return y\n", FinishReason::Eos)
    );
    assert_eq!(
        streamed, c.text,
        "the stream never shows the rewritten prefix"
    );
    assert_eq!(c.healed_tokens, 1);
    assert_eq!(g.decode(&c.token_ids).unwrap(), "\n    return y\n");
    assert_eq!((c.token_ids.len(), c.completion_tokens()), (4, 3));
    assert_eq!(c.logprobs.len(), 4);
    // The model read the prompt without its last token.
    assert_eq!(healed.timing.prompt_tokens, prompt.len() - 1);
    assert_eq!(healed.timing.generated_tokens, 4);
    // Healing is the default.
    assert_eq!(
        g.generate(&prompt, &GenerateParams::default())
            .unwrap()
            .completions[0]
            .text,
        "    return y\n"
    );
}

#[test]
fn stops_and_limits_apply_to_the_text_after_the_prompt() {
    let (_dir, g) = indent();
    let prompt = g.encode(PROMPT).unwrap();
    // The rewritten "\n   " starts with the stop sequence, but only what follows the prompt
    // counts.
    let stop = GenerateParams {
        stop: vec!["\n".into()],
        ..params(true)
    };
    let c = &g.generate(&prompt, &stop).unwrap().completions[0];
    assert_eq!(
        (c.text.as_str(), c.finish_reason),
        ("    return y", FinishReason::Stop)
    );
    // `max_new_tokens` counts the tokens after the prompt: two of them, then the end.
    let two = GenerateParams {
        max_new_tokens: 2,
        ..params(true)
    };
    let c = &g.generate(&prompt, &two).unwrap().completions[0];
    assert_eq!(
        (c.text.as_str(), c.finish_reason, c.completion_tokens()),
        ("    return y", FinishReason::Length, 2)
    );
    // Nothing to generate: nothing is healed.
    let zero = GenerateParams {
        max_new_tokens: 0,
        ..params(true)
    };
    let c = &g.generate(&prompt, &zero).unwrap().completions[0];
    assert_eq!((c.token_ids.len(), c.healed_tokens), (0, 0));
    // A prompt that fills the context is refused as without healing.
    assert!(g.generate(&vec![prompt[0]; 512], &params(true)).is_err());
}

#[test]
fn sampled_tokens_always_agree_with_the_removed_text() {
    let (_dir, g) = indent();
    let prompt = g.encode(PROMPT).unwrap();
    // Hot sampling spreads the first step over "\n", "\n ", "\n  " and "\n   " (every other
    // token is masked out) and over everything afterwards.
    let hot = GenerateParams {
        n: 24,
        max_new_tokens: 6,
        sampling: SamplingParams {
            temperature: 6.0,
            repetition_penalty: 1.3,
            seed: 3,
            ..Default::default()
        },
        ..params(true)
    };
    let out = g.generate(&prompt, &hot).unwrap();
    let again = g.generate(&prompt, &hot).unwrap();
    assert_eq!(
        out.completions, again.completions,
        "seeded, so reproducible"
    );
    let mut firsts = std::collections::BTreeSet::new();
    for c in &out.completions {
        let first = g.decode(&c.token_ids[..1]).unwrap();
        assert!(first.starts_with('\n'), "{first:?}");
        firsts.insert(first);
        let full = g.decode(&c.token_ids).unwrap();
        assert_eq!(full, format!("\n{}", c.text), "{c:?}");
    }
    assert!(firsts.len() > 1, "the constraint still samples: {firsts:?}");
}

#[test]
fn each_request_of_a_batch_heals_on_its_own() {
    let (_dir, g) = indent();
    let a = g.encode(PROMPT).unwrap();
    let b = g.encode("z = 1\nif z:\n").unwrap();
    let (on, off) = (params(true), params(false));
    let reqs = [
        Request {
            prompt: &a,
            params: &on,
        },
        Request {
            prompt: &b,
            params: &off,
        },
        Request {
            prompt: &b,
            params: &on,
        },
    ];
    let (out, _) = g.decode_requests(&reqs, |_| false, |_, _| {}).unwrap();
    for (r, req) in reqs.iter().enumerate() {
        let alone = g.generate(req.prompt, req.params).unwrap();
        assert_eq!(out[r], alone.completions, "request {r}");
    }
    let texts: Vec<&str> = out.iter().map(|c| c[0].text.as_str()).collect();
    assert_eq!(texts, ["    return y\n", "", "    return y\n"]);
}

#[test]
fn what_is_and_is_not_healed() {
    let (_dir, g) = indent();
    // Only a prompt token that a longer token could replace is backed off.
    let prompt = g.encode(PROMPT).unwrap();
    let h = g.heal(&prompt).unwrap();
    assert_eq!(
        (h.keep, h.removed, h.prefix.as_slice()),
        (prompt.len() - 1, 1, &b"\n"[..])
    );
    assert!(g.heal(&g.encode("def f(x):").unwrap()).is_none());
    // Fill-in-the-middle prompts end with a special token; an empty prompt reads one.
    assert!(
        g.heal(&g.fim_prompt("def f(x):\n", "    return x\n").unwrap())
            .is_none()
    );
    assert!(g.heal(&g.context_of(&[])).is_none());
    // A one-token prompt starts after the end-of-text token, like an empty one.
    let one = g.encode("\n").unwrap();
    let h = g.heal(&one).unwrap();
    assert_eq!((h.keep, g.healed_context(&one, &h)), (0, vec![g.eos[0]]));
    let c = &g.generate(&one, &params(true)).unwrap().completions[0];
    assert_eq!(c.text, "    return y\n");
}

#[test]
fn earlier_tokens_are_backed_off_when_a_token_spans_them() {
    // The tokenizer knows " return" (and " r", " re", …); the model answers " return" after "x".
    let dir = tempfile::tempdir().unwrap();
    let tok = merged_tokenizer(dir.path(), &[" return"]);
    let id = |s: &str| token_id(&tok, s);
    bigram_model(
        dir.path(),
        &tok,
        &[
            (id("x"), vec![(id(" return"), 1.0)]),
            (id(" return"), vec![(0, 1.0)]),
        ],
    );
    let g = Generator::load(dir.path(), None).unwrap();
    // Token ids as a client may send them: "x", " ret", "u" (the tokenizer would merge them).
    let prompt = [id("x"), id(" ret"), id("u")];
    let h = g.heal(&prompt).unwrap();
    assert_eq!(
        (h.keep, h.removed, h.prefix.as_slice()),
        (1, 2, &b" retu"[..])
    );
    let c = &g.generate(&prompt, &params(true)).unwrap().completions[0];
    assert_eq!((c.text.as_str(), c.healed_tokens), ("rn", 2));
    assert_eq!(c.token_ids, [id(" return")]);
    assert_eq!(
        c.completion_tokens(),
        0,
        "one token replaced two: nothing new by count"
    );
    let c = &g.generate(&prompt, &params(false)).unwrap().completions[0];
    assert_ne!(c.text, "rn");
}

#[test]
fn beam_search_heals_too() {
    let (_dir, g) = indent();
    let prompt = g.encode(PROMPT).unwrap();
    let beam = |token_healing| BeamParams {
        beams: 3,
        max_new_tokens: 8,
        token_healing,
        ..Default::default()
    };
    let healed = g.beam_search(&prompt, &beam(true)).unwrap();
    assert_eq!(healed[0].text, "    return y\n");
    assert_eq!(healed[0].healed_tokens, 1);
    let plain = g.beam_search(&prompt, &beam(false)).unwrap();
    assert_eq!(plain[0].text, "");
    let syntax = g
        .beam_search(
            &prompt,
            &BeamParams {
                syntax: Some(anvil_data::lang::Lang::Python),
                ..beam(true)
            },
        )
        .unwrap();
    assert_eq!(syntax[0].text, "    return y\n");
    assert_eq!(syntax[0].syntax_valid, Some(true));
}

#[test]
fn healed_text_continues_the_prompt_exactly_on_a_random_model() {
    // A tokenizer trained on code (so "\n   ", " return" and the like are tokens) and random
    // weights: whatever comes out, prompt + text must be what the kept prompt tokens and the
    // generated tokens decode to.
    let dir = tempfile::tempdir().unwrap();
    let code = "def add(a, b):\n    return a + b\n\nclass Point:\n    def norm(self):\n        \
                return (self.x ** 2 + self.y ** 2) ** 0.5  # é ü\n";
    let tok = anvil_data::tokenizer::train_from_texts(
        (0..20).map(|i| code.replace("2", &i.to_string())),
        &anvil_data::tokenizer::TrainConfig {
            vocab_size: 340,
            min_frequency: 2,
            max_bytes: None,
        },
    )
    .unwrap();
    anvil_data::tokenizer::save(&tok, &dir.path().join("tokenizer.json")).unwrap();
    let cfg = LlamaConfig {
        vocab_size: tok.get_vocab_size(true),
        d_model: 32,
        n_layers: 1,
        n_heads: 2,
        max_seq_len: 128,
        init_std: 0.3,
        ..Default::default()
    };
    store::save(&cfg.init(&Device::flex()), dir.path()).unwrap();
    let g = Generator::load(dir.path(), None).unwrap();
    let mut healed = 0;
    for text in [
        "def add(a, b):\n",
        "def add(a, b):\n    ret",
        "class Point:\n    def norm(self):\n        ",
        "x = 1  # é",
        "y = [",
    ] {
        let prompt = g.encode(text).unwrap();
        let p = GenerateParams {
            n: 4,
            max_new_tokens: 12,
            sampling: SamplingParams {
                temperature: 1.0,
                seed: 9,
                ..Default::default()
            },
            ignore_eos: true,
            ..params(true)
        };
        for c in &g.generate(&prompt, &p).unwrap().completions {
            let kept = &prompt[..prompt.len() - c.healed_tokens];
            let all: Vec<u32> = kept.iter().chain(&c.token_ids).copied().collect();
            assert_eq!(
                g.decode(&all).unwrap(),
                format!("{text}{}", c.text),
                "{text:?}"
            );
            assert_eq!(c.completion_tokens(), 12, "{text:?}");
            healed += usize::from(c.healed_tokens > 0);
        }
    }
    assert!(
        healed >= 8,
        "most of these prompts end in a token a longer one extends"
    );
}
