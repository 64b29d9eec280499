//! `anvil data synth`: generated Python function tasks in HumanEval's JSONL shape.
//!
//! Small models trained on a couple of CPU cores score ~0 on HumanEval, so they need a benchmark
//! they can actually learn and that is still verified by execution. Every task comes from a
//! parameterised template (function name, parameter names, constants, docstring phrasing) and its
//! tests are computed by a Rust re-implementation of the template (checked against `python3` by
//! `data/tests/synth.rs`). Each test is a list of `assert candidate(<literals>) == <literal>`
//! lines, so an evaluator can also read them as input/expected pairs.
//!
//! # Held-out rule
//!
//! The held-out split differs from train in templates *and* in parameters:
//! - **Templates**: in each family (in table order) the last `max(1, n / 5)` templates are
//!   held-out only; train never uses them. About half of the held-out tasks come from them.
//! - **Constants**: held-out draws every template constant from the multiples of 3 (by absolute
//!   value, 0 included); train draws from the other integers (`Ctx::konst` in `synth/task.rs`).
//!   Constants derived from drawn ones (`hi = lo + span`) follow; the drawn tuple never matches.
//! - **Vocabularies** (function names, parameter names, letters, labels, markers): held-out uses
//!   the entries at index `i % 4 == 3` of each pool, train the rest (`Ctx::pick`).
//!
//! So no held-out task can coincide with a train task; on top of that, prompts are unique within
//! and across the splits (a duplicate draw is re-drawn).
//!
//! Output is deterministic in `seed`. The two splits use separate ChaCha streams, so the held-out
//! set does not change when `n_train` does.

mod arithmetic;
mod conditionals;
mod lists;
mod loops;
mod strings;
mod task;

use crate::atomic;
use crate::error::{DataError, Result};
use crate::problems::{self, Problem};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use task::Ctx;

/// Bumped whenever a template or the split rule changes, so old and new sets are not compared.
pub const SYNTH_VERSION: u32 = 1;

/// Consecutive duplicate draws after which a split is considered exhausted (it is then shorter
/// than asked; the summary reports the real counts).
const MAX_MISSES: usize = 2000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SynthConfig {
    pub n_train: usize,
    pub n_heldout: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SynthSet {
    /// Recorded so `write` can put it in the manifest.
    pub seed: u64,
    pub train: Vec<Problem>,
    pub heldout: Vec<Problem>,
}

/// One template as listed in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemplateInfo {
    pub family: String,
    pub name: String,
    pub heldout_only: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SplitCounts {
    pub problems: usize,
    pub families: BTreeMap<String, usize>,
    /// Keyed `family/template`.
    pub templates: BTreeMap<String, usize>,
}

/// What `write` puts in `synth_manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SynthSummary {
    pub version: u32,
    pub seed: u64,
    pub heldout_rule: String,
    pub templates: Vec<TemplateInfo>,
    pub train: SplitCounts,
    pub heldout: SplitCounts,
}

struct Template {
    family: &'static str,
    name: &'static str,
    build: fn(&mut Ctx) -> task::Task,
}

macro_rules! templates {
    ($($family:literal => [$($module:ident::$name:ident),* $(,)?]),* $(,)?) => {
        &[$($(Template { family: $family, name: stringify!($name), build: $module::$name }),*),*]
    };
}

/// Families in table order; within a family the last `max(1, n / 5)` are held-out only, so new
/// templates go at the front of their family to keep existing held-out assignments stable.
const TABLE: &[Template] = templates! {
    "arithmetic" => [
        arithmetic::affine, arithmetic::weighted_sum, arithmetic::quadratic, arithmetic::divmod_pair,
        arithmetic::round_down, arithmetic::distance_from,
    ],
    "strings" => [
        strings::count_char, strings::count_vowels, strings::reverse_words, strings::wrap_text,
        strings::stretch_chars, strings::replace_char, strings::strip_chars, strings::is_palindrome,
    ],
    "lists" => [
        lists::filter_compare, lists::filter_multiples, lists::map_affine, lists::sum_of_squares,
        lists::product_of, lists::count_in_range, lists::pairwise_diffs, lists::clip_all, lists::dedupe,
        lists::max_or_default, lists::zip_add, lists::first_index_above,
    ],
    "conditionals" => [
        conditionals::threshold_label, conditionals::piecewise_linear, conditionals::clamp_value,
        conditionals::fizz_label, conditionals::median_of_three, conditionals::divisible_but_not,
        conditionals::truncate_text,
    ],
    "loops" => [
        loops::count_digits, loops::digit_sum, loops::prefix_sums, loops::count_pairs,
        loops::sum_of_multiples, loops::int_log, loops::growth_steps, loops::grid_count,
    ],
};

fn heldout_only(index: usize) -> bool {
    let family = TABLE[index].family;
    let members: Vec<usize> = (0..TABLE.len())
        .filter(|&i| TABLE[i].family == family)
        .collect();
    let n_heldout = (members.len() / 5).max(1);
    members[members.len() - n_heldout..].contains(&index)
}

/// Every template, with its family and whether it is held-out only.
pub fn templates() -> Vec<TemplateInfo> {
    TABLE
        .iter()
        .enumerate()
        .map(|(i, t)| TemplateInfo {
            family: t.family.into(),
            name: t.name.into(),
            heldout_only: heldout_only(i),
        })
        .collect()
}

pub fn generate(cfg: &SynthConfig) -> SynthSet {
    let mut seen = HashSet::new();
    // Held-out first: it is then independent of n_train.
    let heldout = generate_split(cfg.seed, true, cfg.n_heldout, &mut seen);
    let train = generate_split(cfg.seed, false, cfg.n_train, &mut seen);
    SynthSet {
        seed: cfg.seed,
        train,
        heldout,
    }
}

fn generate_split(seed: u64, heldout: bool, n: usize, seen: &mut HashSet<String>) -> Vec<Problem> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(if heldout { 2 } else { 1 });
    // A shuffled deck rather than independent draws, so every template shows up evenly even in
    // small sets. Held-out-only templates get triple weight: about half the held-out set.
    let copies = |i: usize| match (heldout, heldout_only(i)) {
        (false, true) => 0,
        (false, false) | (true, false) => 1,
        (true, true) => 3,
    };
    let deck: Vec<usize> = (0..TABLE.len())
        .flat_map(|i| std::iter::repeat_n(i, copies(i)))
        .collect();
    let split = if heldout { "heldout" } else { "train" };
    let mut out = Vec::with_capacity(n);
    let mut hand: Vec<usize> = Vec::new();
    let mut misses = 0;
    while out.len() < n && misses < MAX_MISSES {
        if hand.is_empty() {
            hand = deck.clone();
            hand.shuffle(&mut rng);
        }
        let t = &TABLE[hand.pop().expect("refilled")];
        let mut ctx = Ctx::new(&mut rng, heldout);
        let task = (t.build)(&mut ctx);
        let n_examples = 1 + ctx.below(2);
        match task::render(task, t.family, t.name, n_examples) {
            Some(r) if seen.insert(r.prompt.clone()) => {
                misses = 0;
                out.push(Problem {
                    task_id: format!("AnvilSynth/{split}/{}", out.len()),
                    entry_point: entry_point(&r.prompt),
                    prompt: r.prompt,
                    canonical_solution: r.solution,
                    test: r.test,
                });
            }
            _ => misses += 1,
        }
    }
    out
}

fn entry_point(prompt: &str) -> String {
    let def = prompt.find("def ").expect("prompt has a def") + 4;
    let end = def + prompt[def..].find('(').expect("def has parameters");
    prompt[def..end].to_string()
}

/// `(family, template)` of a generated problem, read back from its test's METADATA.
pub fn family_and_template(p: &Problem) -> Option<(&str, &str)> {
    let field = |key: &str| {
        let start = p.test.find(&format!("'{key}': '"))? + key.len() + 5;
        let len = p.test[start..].find('\'')?;
        Some(&p.test[start..start + len])
    };
    Some((field("family")?, field("template")?))
}

fn counts(problems: &[Problem]) -> SplitCounts {
    let mut c = SplitCounts {
        problems: problems.len(),
        ..Default::default()
    };
    for p in problems {
        let (family, template) = family_and_template(p).unwrap_or(("unknown", "unknown"));
        *c.families.entry(family.to_string()).or_default() += 1;
        *c.templates
            .entry(format!("{family}/{template}"))
            .or_default() += 1;
    }
    c
}

pub fn summarize(set: &SynthSet) -> SynthSummary {
    SynthSummary {
        version: SYNTH_VERSION,
        seed: set.seed,
        heldout_rule: "per family the last max(1, n/5) templates are held-out only; held-out constants \
                       are multiples of 3, train constants are not; vocabulary pools split by index \
                       (i % 4 == 3 held-out)"
            .into(),
        templates: templates(),
        train: counts(&set.train),
        heldout: counts(&set.heldout),
    }
}

/// Write `train.jsonl`, `heldout.jsonl` and `synth_manifest.json` into `out_dir`. A directory
/// that already holds a `train.jsonl` is refused unless `overwrite`.
pub fn write(set: &SynthSet, out_dir: &Path, overwrite: bool) -> Result<SynthSummary> {
    let train_path = out_dir.join("train.jsonl");
    if train_path.exists() && !overwrite {
        return Err(DataError::invalid(
            out_dir,
            "train.jsonl exists (pass --overwrite to replace it)",
        ));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| DataError::io(out_dir, e))?;
    problems::write_jsonl(&train_path, &set.train)?;
    problems::write_jsonl(&out_dir.join("heldout.jsonl"), &set.heldout)?;
    let summary = summarize(set);
    atomic::write_json(&out_dir.join("synth_manifest.json"), &summary)?;
    Ok(summary)
}
