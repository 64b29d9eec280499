//! End-to-end: `anvil train run` on a tiny model and a generated corpus — SIGKILL + `--resume`
//! ends bit-identical to an uninterrupted run, SIGINT saves and exits 130, bad recipes fail before
//! any work, the run folder holds what it promises, `anvil export` round-trips, the loss falls,
//! and a run mirrored to a real MLflow server reads back from it the same as its folder.
//!
//! Every test builds its own corpus (a few dozen generated Python files) and lets `train run` run
//! the data pipeline on it (under a second), so tests share nothing and clean up after themselves.

mod common;
#[path = "../tracking/tests/support/mlflow_server.rs"]
mod mlflow_server;
use burn::tensor::Device;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temp folder with a generated corpus (`src/`) and a recipe over it (`recipe.toml`) for a tiny
/// model; the data cache and the runs go to `cache/` and `runs/` beside them.
struct Fixture {
    tmp: tempfile::TempDir,
    recipe: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let recipe = tiny_recipe(
            tmp.path(),
            r#"[train]
seed = 7
max_steps = 24
batch_size = 4
log_every = 1

[optim]
lr = 1e-2

[schedule]
warmup_steps = 4

[eval]
every = 8
batches = 4

[checkpoint]
every = 4
keep_last = 2
keep_best = true
"#,
        );
        Fixture { tmp, recipe }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn run_dir(&self, name: &str) -> PathBuf {
        self.path("runs").join(name)
    }

    /// `train run <recipe> output.name=<name> <extra…>` as arguments.
    fn recipe_args(&self, name: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["train", "run", self.recipe.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        args.push(format!("output.name={name}"));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// `anvil train run <recipe> output.name=<name> <extra…>`, to completion.
    fn train(&self, name: &str, extra: &[&str]) -> Output {
        let args = self.recipe_args(name, extra);
        anvil(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The same, in the background; stdout and stderr go to `<tmp>/<name>.{out,err}`.
    fn spawn_train(&self, name: &str, extra: &[&str]) -> Child {
        let file = |ext: &str| {
            Stdio::from(std::fs::File::create(self.path(&format!("{name}.{ext}"))).unwrap())
        };
        Command::new(env!("CARGO_BIN_EXE_anvil"))
            .args(["train", "run", self.recipe.to_str().unwrap()])
            .arg(format!("output.name={name}"))
            .args(extra)
            .stdout(file("out"))
            .stderr(file("err"))
            .spawn()
            .expect("spawn anvil")
    }

    fn child_output(&self, name: &str) -> String {
        let read = |ext: &str| {
            std::fs::read_to_string(self.path(&format!("{name}.{ext}"))).unwrap_or_default()
        };
        format!("stdout: {}\nstderr: {}", read("out"), read("err"))
    }
}

/// Polls `cond` every 2 ms while `child` runs; panics if it exits first or after `timeout`.
fn wait_for(child: &mut Child, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("anvil exited ({status}) before {what}");
        }
        assert!(start.elapsed() < timeout, "no {what} after {timeout:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Completed checkpoints of a run, `(step, folder)`, oldest first (what `--resume` picks from).
fn checkpoints(run: &Path) -> Vec<(usize, PathBuf)> {
    anvil_train::checkpoint::list(&run.join("checkpoints"))
}

fn json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// metrics.jsonl as `(step, key, value)` in file order. A SIGKILL mid-write may leave one torn
/// line (the resumed run starts a new line after it); more than one is an error.
fn metrics(run: &Path) -> Vec<(u64, String, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let parse = |l: &str| -> Option<(u64, String, f64)> {
        let v: Value = serde_json::from_str(l).ok()?;
        Some((
            v["step"].as_u64()?,
            v["key"].as_str()?.to_string(),
            v["value"].as_f64()?,
        ))
    };
    let (good, torn): (Vec<_>, Vec<_>) = text
        .lines()
        .map(|l| (l, parse(l)))
        .partition(|p| p.1.is_some());
    assert!(torn.len() <= 1, "unreadable metric lines: {torn:?}");
    good.into_iter().filter_map(|p| p.1).collect()
}

/// `(step, value)` of one metric, in file order.
fn series(m: &[(u64, String, f64)], key: &str) -> Vec<(u64, f64)> {
    m.iter()
        .filter(|(_, k, _)| k == key)
        .map(|(s, _, v)| (*s, *v))
        .collect()
}

/// A PNG image of a sensible size (what `anvil runs plot` draws: 1200 wide, a panel per metric).
fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    let (w, h) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert!(w >= 600 && h >= 400, "{}: {w}x{h}", path.display());
}

type Tensors = BTreeMap<String, (Vec<usize>, Vec<u32>)>;

fn bits(t: impl IntoIterator<Item = (String, Vec<usize>, Vec<f32>)>) -> Tensors {
    t.into_iter()
        .map(|(n, s, d)| (n, (s, d.iter().map(|x| x.to_bits()).collect())))
        .collect()
}

/// Every model parameter of a checkpoint (or a run's newest), by path, as f32 bit patterns.
fn model_params(ckpt: &Path) -> Tensors {
    let (model, _) = anvil_infer::load_model(ckpt, &Device::flex()).unwrap();
    bits(anvil_models::hf::parameters(&model))
}

/// AdamW's moments in a checkpoint, by name, as f32 bit patterns.
fn optimizer_moments(ckpt: &Path) -> Tensors {
    let t = anvil_models::hf::read_safetensors(&ckpt.join("optimizer.safetensors")).unwrap();
    bits(t.into_iter().map(|(n, (s, d))| (n, s, d)))
}

/// Panics naming the first tensor that differs, and by how much.
fn assert_same_tensors(what: &str, a: &Tensors, b: &Tensors) {
    assert!(!a.is_empty(), "{what}: no tensors");
    let (ka, kb): (BTreeSet<_>, BTreeSet<_>) = (a.keys().collect(), b.keys().collect());
    assert_eq!(ka, kb, "{what}: different tensor names");
    for (name, (shape, data)) in a {
        let (shape_b, data_b) = &b[name];
        assert_eq!(shape, shape_b, "{what}: `{name}` shapes differ");
        if data != data_b {
            let (n, max) = data.iter().zip(data_b).filter(|(x, y)| x != y).fold(
                (0, 0f32),
                |(n, m), (x, y)| {
                    (
                        n + 1,
                        m.max((f32::from_bits(*x) - f32::from_bits(*y)).abs()),
                    )
                },
            );
            panic!(
                "{what}: `{name}` differs in {n} of {} values, max |Δ| {max:e}",
                data.len()
            );
        }
    }
}

#[test]
fn sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run() {
    let f = Fixture::new();
    // Long enough (a few ms a step) that the kill lands mid-run; checkpoints every 4 steps.
    let recipe = ["train.max_steps=96", "checkpoint.every=4", "eval.every=8"];
    let max = 96;
    ok(f.train("a", &recipe));
    let (a, b) = (f.run_dir("a"), f.run_dir("b"));

    let mut child = f.spawn_train("b", &recipe);
    // Kill it once step 10 is logged: after the checkpoint of step 8, most likely before that of
    // step 12, so some steps are redone after the resume.
    let step8 = b.join("checkpoints/step-000008/state.json");
    wait_for(&mut child, "step 10", Duration::from_secs(120), || {
        step8.is_file() && metrics(&b).iter().any(|m| m.0 >= 10)
    });
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "b was not killed mid-run ({status}): {}",
        f.child_output("b")
    );
    let (resumed_from, ckpt) = checkpoints(&b).pop().unwrap();
    assert!(
        (8..max).contains(&resumed_from),
        "resume starts from step {resumed_from}"
    );
    let killed_at = metrics(&b).iter().map(|m| m.0).max().unwrap_or(0);
    assert!(killed_at < max as u64, "b logged step {killed_at} of {max}");
    eprintln!(
        "b killed after step {killed_at}, resumes from the checkpoint of step {resumed_from}"
    );
    // Training moved the weights since that checkpoint, so equality below is not vacuous.
    let at_resume = model_params(&ckpt);

    let o = stdout(&ok(anvil(&[
        "train",
        "run",
        "--resume",
        b.to_str().unwrap(),
    ])));
    assert!(o.contains(&format!("trained {max} steps")), "{o}");

    let (fa, fb) = (
        checkpoints(&a).pop().unwrap(),
        checkpoints(&b).pop().unwrap(),
    );
    assert_eq!((fa.0, fb.0), (max, max));
    let final_a = model_params(&fa.1);
    assert_same_tensors("model", &final_a, &model_params(&fb.1));
    assert_ne!(
        final_a, at_resume,
        "the weights did not change after step {resumed_from}"
    );
    let moments = optimizer_moments(&fa.1);
    assert_eq!(
        moments.len(),
        2 * final_a.len(),
        "m and v for every parameter"
    );
    assert_same_tensors("optimizer", &moments, &optimizer_moments(&fb.1));
    assert_eq!(
        json(&fa.1.join("state.json")),
        json(&fb.1.join("state.json"))
    );

    // The metrics: b has every (step, key) a has, with the same values — the steps between the
    // checkpoint and the kill are logged twice (appended on resume), and agree too. Throughput
    // is the one metric that depends on the clock.
    let (ma, mb) = (metrics(&a), metrics(&b));
    let timeless = |m: &[(u64, String, f64)]| -> BTreeMap<(u64, String), Vec<u64>> {
        let mut out: BTreeMap<(u64, String), Vec<u64>> = BTreeMap::new();
        for (s, k, v) in m.iter().filter(|m| m.1 != "train/tokens_per_s") {
            out.entry((*s, k.clone())).or_default().push(v.to_bits());
        }
        out
    };
    let (ta, tb) = (timeless(&ma), timeless(&mb));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "b's metrics cover other steps than a's"
    );
    for (key, va) in &ta {
        assert_eq!(va.len(), 1, "a logged {key:?} twice");
        let vb = &tb[key];
        assert!(
            vb.iter().all(|v| *v == va[0]),
            "{key:?}: a {} but b {:?}",
            f64::from_bits(va[0]),
            vb.iter().map(|v| f64::from_bits(*v)).collect::<Vec<_>>()
        );
        let (step, _) = key;
        let expect = if *step as usize > resumed_from && *step <= killed_at {
            1..=2 // logged before the kill, and again after the resume
        } else {
            1..=1
        };
        assert!(
            expect.contains(&vb.len()),
            "b logged {key:?} {} times",
            vb.len()
        );
    }
    let steps_after: BTreeSet<u64> = series(&mb, "train/loss")
        .iter()
        .map(|s| s.0)
        .filter(|s| *s as usize > resumed_from)
        .collect();
    assert_eq!(steps_after.len(), max - resumed_from);

    let run: Value = json(&b.join("run.json"));
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(json(&b.join("summary.json"))["steps"], max);
}

#[test]
fn sigint_saves_a_checkpoint_exits_130_and_resumes() {
    let f = Fixture::new();
    let recipe = [
        "train.max_steps=160",
        "checkpoint.every=1000",
        "eval.every=1000",
    ];
    let mut child = f.spawn_train("r", &recipe);
    let run = f.run_dir("r");
    let m = run.join("metrics.jsonl");
    wait_for(
        &mut child,
        "a logged metric",
        Duration::from_secs(120),
        || std::fs::read_to_string(&m).is_ok_and(|t| t.contains("train/loss")),
    );
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    let out = f.child_output("r");
    assert_eq!(status.code(), Some(130), "{status}: {out}");
    assert!(out.contains("interrupted after"), "{out}");

    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["interrupted"], true);
    let stopped = summary["steps"].as_u64().unwrap() as usize;
    assert!((1..160).contains(&stopped), "stopped at {stopped}");
    let (last, ckpt) = checkpoints(&run).pop().expect("a checkpoint on SIGINT");
    assert_eq!(last, stopped, "the checkpoint is of the step it stopped at");
    assert_eq!(summary["last_checkpoint"], ckpt.to_str().unwrap());
    assert_eq!(json(&ckpt.join("state.json"))["step"], stopped);
    assert_eq!(json(&run.join("run.json"))["status"], "KILLED");
    let logged = metrics(&run).iter().map(|m| m.0).max().unwrap();
    assert_eq!(logged as usize, stopped, "log_every = 1 logs the last step");
    assert_png(&run.join("loss.png"));
    std::fs::remove_file(run.join("loss.png")).unwrap();

    let o = stdout(&ok(anvil(&[
        "train",
        "run",
        "--resume",
        run.to_str().unwrap(),
    ])));
    assert!(o.contains("trained 160 steps"), "{o}");
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["interrupted"], false);
    assert_eq!(summary["steps"], 160);
    assert_eq!(json(&run.join("run.json"))["status"], "FINISHED");
    assert_eq!(checkpoints(&run).pop().unwrap().0, 160);
    assert_png(&run.join("loss.png"));
}

#[test]
fn a_plot_that_cannot_be_written_is_a_warning_not_a_failure() {
    let f = Fixture::new();
    // A folder where the plot should go: the PNG cannot be renamed into place.
    let run = f.run_dir("p");
    std::fs::create_dir_all(run.join("loss.png")).unwrap();
    let o = ok(f.train("p", &["train.max_steps=4", "eval.every=2"]));
    let err = stderr(&o);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].starts_with("warning: loss plot not written: "),
        "{err}"
    );
    assert!(warnings[0].contains("loss.png"), "{err}");
    assert_eq!(json(&run.join("run.json"))["status"], "FINISHED");
    assert_eq!(json(&run.join("summary.json"))["steps"], 4);
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn resume_removes_leftovers_of_a_killed_checkpoint_write_and_restores_best() {
    let f = Fixture::new();
    ok(f.train(
        "r",
        &["train.max_steps=8", "checkpoint.every=4", "eval.every=4"],
    ));
    let run = f.run_dir("r");
    let ck = run.join("checkpoints");
    let best_state = std::fs::read(ck.join("best/state.json")).unwrap();
    // What SIGKILLs in checkpoint::save and between mark_best's two renames leave behind.
    let dead = dead_pid();
    let mkdir = |name: &str| {
        std::fs::create_dir_all(ck.join(name)).unwrap();
        std::fs::write(ck.join(name).join("model.bpk"), b"half").unwrap();
    };
    mkdir(&format!(".step-000012.partial-{dead}"));
    mkdir(&format!(".best.partial-{dead}"));
    std::fs::rename(ck.join("best"), ck.join(format!(".best.old-{dead}"))).unwrap();
    // A live writer's (this test's pid), and names that are not the trainer's: all kept.
    let keep = [
        format!(".step-000012.partial-{}", std::process::id()),
        ".step-000012.partial-x1".to_string(),
        format!(".best.old-{dead}.bak"),
        format!("step-000012.partial-{dead}"),
        ".keep".to_string(),
    ];
    for k in &keep {
        mkdir(k);
    }
    std::fs::write(ck.join(format!(".best.partial-{}", dead + 1)), b"a file").unwrap();
    std::fs::write(ck.join("notes.txt"), b"mine").unwrap();

    let o = ok(anvil(&[
        "train",
        "run",
        "--resume",
        run.to_str().unwrap(),
        "train.max_steps=12",
        // best/ stays what it was restored to.
        "checkpoint.keep_best=false",
    ]));
    let err = stderr(&o);
    let note: Vec<&str> = err.lines().filter(|l| l.starts_with("note:")).collect();
    assert_eq!(note.len(), 1, "{err}");
    assert!(
        note[0].contains(&format!("restored best/ from .best.old-{dead}")),
        "{err}"
    );
    assert!(
        note[0].contains(&format!(".step-000012.partial-{dead}")),
        "{err}"
    );
    assert!(note[0].contains(&format!("left {}", keep[0])), "{err}");

    let mut names: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = keep.to_vec();
    want.extend([
        format!(".best.partial-{}", dead + 1),
        "notes.txt".into(),
        "best".into(),
        "step-000008".into(),
        "step-000012".into(),
    ]);
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        std::fs::read(ck.join("best/state.json")).unwrap(),
        best_state
    );
    assert_eq!(std::fs::read(ck.join("notes.txt")).unwrap(), b"mine");
    assert_eq!(json(&run.join("summary.json"))["steps"], 12);
}

#[test]
fn init_from_starts_from_pretrained_weights_and_their_tokenizer() {
    let f = Fixture::new();
    ok(f.train("base", &[]));
    let base = f.run_dir("base");
    let hf = f.path("hf");
    ok(export(&base, "hf", None, &hf, &[]));
    let first_loss = |run: &Path| series(&metrics(run), "train/loss")[0].1;
    let last_loss = |run: &Path| series(&metrics(run), "train/loss").last().unwrap().1;

    // From the run folder and from its HF export: training continues where the base left off
    // (a fresh model starts near ln(vocab)), on data tokenized with the base's own tokenizer.
    for (name, from) in [("from-run", &base), ("from-hf", &hf)] {
        let init = format!("model.init_from={}", from.display());
        ok(f.train(name, &[&init, "train.max_steps=4", "eval.every=0"]));
        let run = f.run_dir(name);
        let (fresh, start) = (first_loss(&base), first_loss(&run));
        assert!(
            start < fresh - 1.0 && (start - last_loss(&base)).abs() < 0.5,
            "{name}: first loss {start}, the base started at {fresh} and ended at {}",
            last_loss(&base)
        );
        assert_eq!(
            std::fs::read(run.join("artifacts/tokenizer.json")).unwrap(),
            std::fs::read(base.join("artifacts/tokenizer.json")).unwrap(),
            "{name}"
        );
        let recipe = std::fs::read_to_string(run.join("recipe.toml")).unwrap();
        assert!(recipe.contains("init_from"), "{recipe}");
    }

    // Keys the recipe sets must agree with the loaded model; absent keys take its values.
    let init = format!("model.init_from={}", hf.display());
    let line = one_line_error(&f.train("bad", &[&init, "model.d_model=64"]));
    assert!(
        line.contains("`model.d_model`") && line.contains("the recipe says 64"),
        "{line}"
    );
    let line = one_line_error(&f.train("bad", &["model.init_from=/nonexistent/model"]));
    assert!(line.contains("`model.init_from`"), "{line}");
    assert!(!f.run_dir("bad").exists());
}

#[test]
fn the_sft_recipe_trains_on_synth_completions_and_its_checkpoint_is_scored() {
    let tmp = tempfile::tempdir().unwrap();
    let (problems, _) = synth_problems_and_samples(tmp.path(), 300, 4, 1);
    let train = tmp.path().join("synth/train.jsonl");
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let recipe = common::repo_dir().join("recipes/sft-synth.toml");
    // The shipped recipe, shrunk to seconds.
    let o = ok(anvil(&[
        "train",
        "run",
        recipe.to_str().unwrap(),
        &format!("data.sft=[{}]", q(&train)),
        &format!("data.cache_dir={}", q(&tmp.path().join("cache"))),
        &format!("output.dir={}", q(&tmp.path().join("runs"))),
        "data.tokenizer.vocab_size=400",
        "model.d_model=32",
        "model.n_layers=1",
        "model.n_heads=2",
        "train.max_steps=6",
        "train.batch_size=2",
        "schedule.warmup_steps=1",
        "eval.every=3",
        "eval.batches=2",
    ]));
    assert!(stdout(&o).contains("trained 6 steps"), "{}", stdout(&o));
    let run = tmp.path().join("runs/sft-synth");
    let summary = json(&run.join("summary.json"));
    assert!(
        summary["final_val_loss"]
            .as_f64()
            .is_some_and(f64::is_finite),
        "{summary}"
    );
    let tokens = std::fs::read_dir(tmp.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path().join("tokens/tokens.json"))
        .find(|p| p.is_file())
        .expect("the SFT tokens were built in the cache");
    let columns = json(&tokens)["columns"].to_string();
    assert!(columns.contains("loss_mask"), "{columns}");
    // Its checkpoints ask generators not to heal the prompt's last token (the SFT boundary).
    let (_, ckpt) = checkpoints(&run).pop().unwrap();
    let generation = json(&ckpt.join("generation_config.json"));
    assert_eq!(generation["token_healing"], false, "{generation}");

    let samples = tmp.path().join("samples.jsonl");
    let o = ok(anvil(&[
        "eval",
        "pass-at-k",
        "--problems",
        problems.to_str().unwrap(),
        "--checkpoint",
        run.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "--k",
        "1",
    ]));
    assert!(stdout(&o).contains("pass@1"), "{}", stdout(&o));
}

#[test]
fn lora_trains_only_adapters_on_a_frozen_base_and_resumes_bit_identically() {
    let f = Fixture::new();
    ok(f.train("base", &[]));
    let base = f.run_dir("base");
    let init = format!("model.init_from={}", base.display());
    let args = [
        init.as_str(),
        "lora.r=4",
        "lora.alpha=8",
        r#"lora.target_modules=["q_proj","v_proj","down_proj"]"#,
        "train.max_steps=60",
        "checkpoint.every=1000",
        "eval.every=1000",
    ];
    let o = ok(f.train("a", &args));
    assert!(stdout(&o).contains("trainable"), "{}", stdout(&o));
    let (steps, a) = checkpoints(&f.run_dir("a")).pop().unwrap();
    assert_eq!(steps, 60);
    assert!(!a.join("generation_config.json").exists(), "not an SFT run");
    // The checkpoint is the adapter in PEFT's format with a reference to the base.
    for file in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "anvil_base.json",
    ] {
        assert!(a.join(file).is_file(), "no {file}");
    }
    assert!(
        !a.join("model.bpk").exists(),
        "a LoRA checkpoint holds the adapter only"
    );
    let config = json(&a.join("adapter_config.json"));
    assert_eq!(config["r"], 4);
    assert_eq!(config["peft_type"], "LORA");
    // AdamW kept state for adapters alone: the frozen base had no gradient to update it.
    let moments = optimizer_moments(&a);
    assert!(!moments.is_empty());
    for name in moments.keys() {
        assert!(name.contains(".lora."), "optimizer state for {name}");
    }
    let adapter = std::fs::read(a.join("adapter_model.safetensors")).unwrap();
    let tensors = anvil_models::hf::read_safetensors(&a.join("adapter_model.safetensors")).unwrap();
    let (key, (_, b)) = tensors
        .iter()
        .find(|(k, _)| k.ends_with("lora_B.weight"))
        .unwrap();
    assert!(key.starts_with("base_model.model.model.layers."), "{key}");
    assert!(b.iter().any(|&x| x != 0.0), "B never moved from zero");

    // Interrupted and resumed: the same adapter and optimizer state, bit for bit.
    let mut child = f.spawn_train("b", &args);
    let run = f.run_dir("b");
    wait_for(
        &mut child,
        "a logged step",
        Duration::from_secs(120),
        || run.join("metrics.jsonl").is_file() && metrics(&run).iter().any(|m| m.0 >= 3),
    );
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", f.child_output("b"));
    assert!(checkpoints(&run).pop().unwrap().0 < 60);
    ok(anvil(&["train", "run", "--resume", run.to_str().unwrap()]));
    let (_, b) = checkpoints(&run).pop().unwrap();
    assert_eq!(
        std::fs::read(b.join("adapter_model.safetensors")).unwrap(),
        adapter
    );
    assert_same_tensors("optimizer", &moments, &optimizer_moments(&b));

    // QLoRA: the same adapters on a base held in Q4_0 blocks. The checkpoint records the f32
    // base's fingerprint (so it loads onto that base), the adapters learn, and an interrupted
    // run resumes bit-identically (the base is quantized the same way again).
    let mut qargs = args.to_vec();
    qargs.extend(["lora.base_quant=q4_0", "train.max_steps=30"]);
    ok(f.train("q", &qargs));
    let (_, qc) = checkpoints(&f.run_dir("q")).pop().unwrap();
    let fingerprint = |d: &Path| json(&d.join("anvil_base.json"))["fingerprint"].clone();
    assert_eq!(fingerprint(&qc), fingerprint(&a));
    let qadapter = std::fs::read(qc.join("adapter_model.safetensors")).unwrap();
    assert_ne!(qadapter, adapter);
    let mut child = f.spawn_train("q2", &qargs);
    let run = f.run_dir("q2");
    wait_for(
        &mut child,
        "a logged step",
        Duration::from_secs(120),
        || run.join("metrics.jsonl").is_file() && metrics(&run).iter().any(|m| m.0 >= 3),
    );
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    assert_eq!(
        child.wait().unwrap().code(),
        Some(130),
        "{}",
        f.child_output("q2")
    );
    ok(anvil(&["train", "run", "--resume", run.to_str().unwrap()]));
    let (_, q2) = checkpoints(&run).pop().unwrap();
    assert_eq!(
        std::fs::read(q2.join("adapter_model.safetensors")).unwrap(),
        qadapter
    );
    let o = ok(anvil(&[
        "generate",
        "--checkpoint",
        base.to_str().unwrap(),
        "--adapter",
        qc.to_str().unwrap(),
        "--prompt",
        "def ",
        "--max-tokens",
        "4",
    ]));
    assert!(!stdout(&o).is_empty());

    // Adapters too large for the machine name their rank, before any run folder.
    let args = f.recipe_args("big", &[init.as_str(), "lora.r=65536"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = anvil_env(&args, &[("ANVIL_MEMORY_LIMIT_MB", "200")]);
    let line = one_line_error(&o);
    assert!(
        line.contains("`lora.r`") && line.contains("training adapters"),
        "{line}"
    );
    assert!(!f.run_dir("big").exists());

    // [lora] without a base to adapt is refused before any work.
    let line = one_line_error(&f.train("c", &["lora.r=4"]));
    assert!(
        line.contains("`lora`") && line.contains("model.init_from"),
        "{line}"
    );
}

#[test]
fn a_run_folder_has_one_writer_and_keep_last_holds_after_kills() {
    let f = Fixture::new();
    ok(f.train("r", &["train.max_steps=8", "checkpoint.every=4"]));
    let run = f.run_dir("r");
    let ck = run.join("checkpoints");
    // A kill between saving a checkpoint and pruning leaves one more than keep_last (= 2), and
    // the run never saves again when that was its last step.
    copy_files(&ck.join("step-000004"), &ck.join("step-000002"));
    assert_eq!(checkpoints(&run).len(), 3);
    let o = ok(anvil(&["train", "run", "--resume", run.to_str().unwrap()]));
    assert!(stdout(&o).contains("already finished"), "{}", stdout(&o));
    let steps: Vec<usize> = checkpoints(&run).iter().map(|c| c.0).collect();
    assert_eq!(steps, [4, 8]);

    // Two resumes of one run at once: the second refuses in one line and touches nothing.
    let many = "train.max_steps=100000";
    let mut first = Command::new(env!("CARGO_BIN_EXE_anvil"))
        .args(["train", "run", "--resume", run.to_str().unwrap(), many])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &mut first,
        "the first resume to train",
        Duration::from_secs(120),
        || metrics(&run).iter().any(|m| m.0 > 9),
    );
    let o = anvil(&["train", "run", "--resume", run.to_str().unwrap(), many]);
    let line = one_line_error(&o);
    assert!(
        line.contains(&format!("in use by another process (pid {})", first.id())),
        "{line}"
    );
    assert!(first.try_wait().unwrap().is_none(), "the first resume died");
    first.kill().unwrap(); // SIGKILL: its lock goes with it, the lock file stays behind
    first.wait().unwrap();
    assert!(run.join(".lock").is_file());
    let to = checkpoints(&run).pop().unwrap().0 + 2;
    let o = ok(anvil(&[
        "train",
        "run",
        "--resume",
        run.to_str().unwrap(),
        &format!("train.max_steps={to}"),
    ]));
    assert!(
        stdout(&o).contains(&format!("trained {to} steps")),
        "{}",
        stdout(&o)
    );
    assert!(!run.join(".lock").exists());
}

#[test]
fn resuming_a_finished_run_changes_nothing_and_a_larger_max_steps_continues_it() {
    let f = Fixture::new();
    ok(f.train(
        "r",
        &["train.max_steps=8", "checkpoint.every=4", "eval.every=4"],
    ));
    let run = f.run_dir("r");
    let files = [
        "summary.json",
        "run.json",
        "metrics.jsonl",
        "recipe.toml",
        "tags.json",
    ];
    let read_all = || -> Vec<Vec<u8>> {
        files
            .iter()
            .map(|n| std::fs::read(run.join(n)).unwrap())
            .collect()
    };
    let before = read_all();
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", "run", "--resume", run.to_str().unwrap()];
        args.extend_from_slice(extra);
        ok(anvil(&args))
    };
    // Plain, with max_steps not above the checkpoint's step, or with other overrides: one line,
    // exit 0, and the run folder as it was (no null losses in summary.json, no new attempt).
    for extra in [&[][..], &["train.max_steps=6"], &["optim.lr=5e-3"]] {
        let o = resume(extra);
        assert_eq!(
            stdout(&o),
            "run already finished at step 8; raise train.max_steps to continue\n",
            "{extra:?}: {}",
            stderr(&o)
        );
        assert_eq!(stderr(&o), "", "{extra:?}");
        assert!(read_all() == before, "{extra:?} changed the run folder");
    }

    // A larger max_steps continues from step 8 to 16, in the same run.
    let o = stdout(&resume(&["train.max_steps=16"]));
    assert!(o.contains("trained 16 steps"), "{o}");
    let m = metrics(&run);
    let steps = |key: &str| series(&m, key).iter().map(|s| s.0).collect::<Vec<_>>();
    assert_eq!(steps("train/loss"), (1..=16).collect::<Vec<_>>());
    assert_eq!(steps("val/loss"), [4, 8, 12, 16]);
    // The cosine schedule now spans 16 steps: step 9 runs at a higher rate than step 8 did
    // (at the end of the 8-step cosine), and it decays again to the end.
    let lr = series(&m, "train/lr");
    assert!(lr[8].1 > lr[7].1 && lr[15].1 < lr[8].1, "{lr:?}");
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["steps"], 16);
    assert_eq!(summary["interrupted"], false);
    assert!(summary["final_val_loss"].as_f64().is_some(), "{summary}");
    let meta = json(&run.join("run.json"));
    assert_eq!(meta["status"], "FINISHED");
    assert_eq!(meta["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(checkpoints(&run).pop().unwrap().0, 16);
}

#[test]
fn resume_overrides_are_kept_in_recipe_toml_and_tagged_and_model_keys_are_refused() {
    let f = Fixture::new();
    ok(f.train(
        "r",
        &["train.max_steps=8", "checkpoint.every=4", "eval.every=4"],
    ));
    let run = f.run_dir("r");
    let r = run.to_str().unwrap();
    let recipe = || -> anvil_train::Recipe {
        toml::from_str(&std::fs::read_to_string(run.join("recipe.toml")).unwrap()).unwrap()
    };
    let params = json(&run.join("params.json"));

    // The model's shape: refused before anything is written, naming the key.
    let files = ["run.json", "recipe.toml", "tags.json", "summary.json"];
    let read_all = || -> Vec<Vec<u8>> {
        files
            .iter()
            .map(|n| std::fs::read(run.join(n)).unwrap())
            .collect()
    };
    let before = read_all();
    for (key, arg) in [
        ("model.n_layers", "model.n_layers=3"),
        ("model.d_model", "model.d_model=32"),
        ("model.moe.n_experts", "model.moe.n_experts=4"),
    ] {
        let o = anvil(&["train", "run", "--resume", r, "train.max_steps=12", arg]);
        let line = one_line_error(&o);
        assert!(line.contains(&format!("`{key}`")), "{line}");
        assert!(line.contains("--resume"), "{line}");
        assert!(read_all() == before, "{arg} changed the run folder");
    }

    // Overrides on resume: applied, and recipe.toml is the recipe the run now follows.
    let o = stdout(&ok(anvil(&[
        "train",
        "run",
        "--resume",
        r,
        "train.max_steps=12",
        "optim.lr=5e-3",
    ])));
    assert!(o.contains("trained 12 steps"), "{o}");
    let now = recipe();
    assert_eq!((now.train.max_steps, now.optim.lr), (12, 5e-3));
    now.validate().unwrap();
    let tags = json(&run.join("tags.json"));
    assert_eq!(
        tags["resume.1.overrides"],
        "train.max_steps=12 optim.lr=5e-3"
    );
    // Params are write-once and keep the values the run started with.
    assert_eq!(json(&run.join("params.json")), params);
    assert_eq!(params["optim.lr"], "0.01");

    // A later resume that only raises max_steps keeps lr = 5e-3 from recipe.toml: every rate
    // logged from step 13 on is the 16-step schedule's at that peak.
    ok(anvil(&[
        "train",
        "run",
        "--resume",
        r,
        "train.max_steps=16",
    ]));
    let lr = series(&metrics(&run), "train/lr");
    assert_eq!(lr.len(), 16);
    for (step, got) in &lr[12..] {
        let want = anvil_train::optim::lr_at(*step as usize - 1, 5e-3, &now.schedule, 16);
        assert_eq!(*got, want, "train/lr at step {step}");
    }
    let now = recipe();
    assert_eq!((now.train.max_steps, now.optim.lr), (16, 5e-3));
    let tags = json(&run.join("tags.json"));
    assert_eq!(tags["resume.2.overrides"], "train.max_steps=16");
    assert_eq!(
        tags["resume.1.overrides"],
        "train.max_steps=12 optim.lr=5e-3"
    );
    let meta = json(&run.join("run.json"));
    assert_eq!(meta["status"], "FINISHED");
    assert_eq!(meta["attempts"].as_array().unwrap().len(), 3);

    // And a plain resume reads 16 back: nothing left to do.
    let o = stdout(&ok(anvil(&["train", "run", "--resume", r])));
    assert_eq!(
        o,
        "run already finished at step 16; raise train.max_steps to continue\n"
    );
    assert_eq!(json(&run.join("tags.json")), tags);
}

#[test]
fn bad_recipes_fail_before_any_work_naming_the_key() {
    let f = Fixture::new();
    let empty = f.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let bad_toml = f.path("bad.toml");
    std::fs::write(&bad_toml, "[train]\nmax_steps = = 3\n").unwrap();
    let r = f.recipe.to_str().unwrap();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["optim.lrr=0.1".into()],
            vec!["`optim.lrr`", "did you mean `lr`"],
        ),
        (
            vec!["optm.lr=0.1".into()],
            vec!["`optm`", "did you mean `optim`"],
        ),
        (
            vec!["optimizer.lr=0.1".into()],
            vec!["`optimizer`", "known: data, model"],
        ),
        (
            vec!["train.max_steps=\"ten\"".into()],
            vec!["`train.max_steps`"],
        ),
        (
            vec!["train.max_steps=ten".into()],
            vec!["`train.max_steps`"],
        ),
        (
            vec!["train.batch_size=0".into()],
            vec!["`train.batch_size`"],
        ),
        (vec!["optim.lr=0".into()], vec!["`optim.lr`", "positive"]),
        (vec!["optim.lr=-1e-3".into()], vec!["`optim.lr`"]),
        (
            vec!["model.n_heads=3".into()],
            vec!["`model.n_heads`", "d_model"],
        ),
        (
            vec!["model.n_kv_heads=3".into()],
            vec!["`model.n_kv_heads`"],
        ),
        (
            vec![r#"model.attention=["sliding:0"]"#.into()],
            vec!["`model.attention`", "sliding:0"],
        ),
        (
            vec!["data.tokens=/nonexistent/shards".into()],
            vec!["`data.tokens`", "/nonexistent/shards"],
        ),
        (
            vec!["schedule.warmup_steps=100".into()],
            vec!["`schedule.warmup_steps`", "max_steps"],
        ),
        (vec!["output.name=a/b".into()], vec!["`output.name`"]),
        (
            vec!["train.max_steps".into()],
            vec!["train.max_steps", "section.key=value"],
        ),
    ];
    let runs = f.path("runs");
    let cache = f.path("cache");
    let check = |args: &[&str], wants: &[&str]| {
        let o = anvil(args);
        let line = one_line_error(&o);
        for w in wants {
            assert!(line.contains(w), "{args:?}: `{line}` does not mention {w}");
        }
        assert!(!runs.exists(), "{args:?} created a run folder");
        assert!(!cache.exists(), "{args:?} started building data");
    };
    for (overrides, wants) in &cases {
        let mut args = vec!["train", "run", r];
        args.extend(overrides.iter().map(String::as_str));
        check(&args, wants);
    }
    check(
        &["train", "run", f.path("missing.toml").to_str().unwrap()],
        &["missing.toml"],
    );
    check(&["train", "run", bad_toml.to_str().unwrap()], &["bad.toml"]);
    check(&["train", "run"], &["recipe"]);
    check(
        &[
            "train",
            "run",
            "--resume",
            f.path("nothing").to_str().unwrap(),
        ],
        &["nothing"],
    );

    // Found wrong only once the data is open: still one line, still no run folder.
    let empty_tokens = format!("data.tokens={}", empty.display());
    let o = anvil(&["train", "run", r, &empty_tokens]);
    let line = one_line_error(&o);
    assert!(line.contains(empty.to_str().unwrap()), "{line}");
    assert!(!runs.exists());
    let o = anvil(&["train", "run", r, "model.max_seq_len=16"]);
    let line = one_line_error(&o);
    assert!(line.contains("`model.max_seq_len`"), "{line}");
    assert!(
        !runs.exists(),
        "a run folder for a model too short for its data"
    );

    // Models larger than the machine are refused from their config, before anything is
    // allocated (they aborted in the allocator, or woke the OOM killer), naming the key to change.
    for (set, key) in [
        ("model.d_model=1000000000", "`model.d_model`"),
        ("model.n_layers=100000000", "`model.n_layers`"),
        ("model.vocab_size=2000000000", "`model.vocab_size`"),
        ("model.vocab_size=4000000000", "`model.vocab_size`"),
        ("model.vocab_size=8192", "`model.vocab_size`"),
    ] {
        let o = anvil(&["train", "run", r, set]);
        let line = one_line_error(&o);
        assert!(line.contains(key), "{set}: {line}");
        assert!(!runs.exists(), "{set} created a run folder");
    }
    let o = anvil(&["train", "run", r, "model.d_model=1000000000"]);
    let line = one_line_error(&o);
    assert!(
        line.contains("available") && line.contains("parameters"),
        "{line}"
    );
    // The same for the workload: a batch whose activations cannot fit.
    let o = anvil_env(
        &["train", "run", r, "train.batch_size=8"],
        &[("ANVIL_MEMORY_LIMIT_MB", "1")],
    );
    let line = one_line_error(&o);
    assert!(line.contains("1.0 MB of memory is available"), "{line}");
    assert!(!runs.exists());
    for (args, key) in [
        (vec!["train.threads=100000"], "train.threads = 100000"),
        (vec!["--threads", "100000"], "--threads = 100000"),
    ] {
        let mut all = vec!["train", "run", r];
        all.extend(args);
        let line = one_line_error(&anvil(&all));
        assert!(line.contains(key) && line.contains("per core"), "{line}");
    }
}

#[test]
fn run_folder_checkpoints_and_hf_export() {
    let f = Fixture::new();
    ok(f.train(
        "r",
        &[
            "eval.every=8",
            "checkpoint.every=4",
            "checkpoint.keep_last=2",
        ],
    ));
    let run = f.run_dir("r");
    for file in [
        "recipe.toml",
        "params.json",
        "metrics.jsonl",
        "summary.json",
        "run.json",
        "tags.json",
        "loss.png",
        "artifacts/tokenizer.json",
        "artifacts/summary.json",
        "artifacts/loss.png",
    ] {
        assert!(run.join(file).is_file(), "no {file}");
    }
    assert_png(&run.join("loss.png"));

    // The resolved recipe: the overrides and the vocabulary the data decided, and it loads again.
    let text = std::fs::read_to_string(run.join("recipe.toml")).unwrap();
    let recipe: anvil_train::Recipe = toml::from_str(&text).unwrap();
    recipe.validate().unwrap();
    assert_eq!(recipe.model.vocab_size, 320);
    assert_eq!(recipe.eval.every, 8);
    assert_eq!(recipe.output.name.as_deref(), Some("r"));
    let params = json(&run.join("params.json"));
    assert_eq!(params["train.max_steps"], "24", "{params}");

    let m = metrics(&run);
    let train_loss = series(&m, "train/loss");
    assert_eq!(
        train_loss.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=24).collect::<Vec<_>>()
    );
    let val = series(&m, "val/loss");
    assert_eq!(val.iter().map(|s| s.0).collect::<Vec<_>>(), [8, 16, 24]);
    for ((s, loss), (s2, ppl)) in val.iter().zip(series(&m, "val/perplexity")) {
        assert_eq!(*s, s2);
        assert!(
            (loss.exp() - ppl).abs() < 1e-9 * ppl,
            "ppl {ppl} for loss {loss}"
        );
    }
    let bpb = series(&m, "val/bits_per_byte");
    assert_eq!(bpb.len(), 3);
    assert!(
        bpb.iter().all(|(_, b)| b.is_finite() && *b > 0.0),
        "{bpb:?}"
    );

    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["steps"], 24);
    assert_eq!(summary["interrupted"], false);
    assert_eq!(summary["final_val_loss"].as_f64(), Some(val[2].1));
    assert_eq!(summary["parameters"].as_u64().unwrap() as usize, {
        let p = model_params(&run);
        p.values()
            .map(|(s, _)| s.iter().product::<usize>())
            .sum::<usize>()
    });
    assert_eq!(json(&run.join("run.json"))["status"], "FINISHED");

    // keep_last = 2 plus best/, and nothing half-written left behind.
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["best", "step-000020", "step-000024"]);
    let best_val = val.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
    let best_state = json(&run.join("checkpoints/best/state.json"));
    assert_eq!(best_state["best_val_loss"].as_f64(), Some(best_val));
    let best_step = val.iter().find(|v| v.1 == best_val).unwrap().0;
    assert_eq!(best_state["step"], best_step);

    // HF export of the run's newest checkpoint: loads back to the same parameters.
    let hf = f.path("hf");
    ok(anvil(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--format",
        "hf",
        "--out",
        hf.to_str().unwrap(),
    ]));
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(hf.join(file).is_file(), "export wrote no {file}");
    }
    assert_eq!(
        std::fs::read(hf.join("tokenizer.json")).unwrap(),
        std::fs::read(run.join("artifacts/tokenizer.json")).unwrap()
    );
    let config = json(&hf.join("config.json"));
    assert_eq!(config["vocab_size"], 320);
    assert_eq!(config["hidden_size"], 32);
    let (model, checkpoint) = anvil_infer::load_model(&run, &Device::flex()).unwrap();
    assert!(checkpoint.ends_with("step-000024"));
    let imported = anvil_models::hf::import(&hf, &model.device()).unwrap();
    assert_same_tensors(
        "hf export",
        &bits(anvil_models::hf::parameters(&model)),
        &bits(anvil_models::hf::parameters(&imported)),
    );
}

#[test]
fn best_checkpoint_is_the_lowest_validation_loss_even_between_checkpoints() {
    // Validation every step, checkpoints every 4, a large constant learning rate: the validation
    // loss wanders, and its minimum need not fall on a checkpoint step (today it is at step 7,
    // and steps 8 and 12 are worse).
    let f = Fixture::new();
    ok(f.train(
        "r",
        &[
            "train.max_steps=12",
            "optim.lr=0.05",
            "schedule.min_lr_ratio=1",
            "eval.every=1",
            "checkpoint.every=4",
            "checkpoint.keep_last=1",
        ],
    ));
    let run = f.run_dir("r");
    let val = series(&metrics(&run), "val/loss");
    assert_eq!(val.len(), 12);
    assert!(
        run.join("checkpoints/best").is_dir(),
        "keep_best = true but no best/; val/loss: {val:?}"
    );
    let best = val.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
    let best_step = val.iter().find(|v| v.1 == best).unwrap().0;
    let state = json(&run.join("checkpoints/best/state.json"));
    assert_eq!(
        (state["step"].as_u64(), state["best_val_loss"].as_f64()),
        (Some(best_step), Some(best)),
        "best/ is not the checkpoint of the lowest validation loss; val/loss: {val:?}"
    );
}

#[test]
fn validation_loss_falls() {
    let f = Fixture::new();
    let o = stdout(&ok(f.train(
        "r",
        &[
            "train.max_steps=60",
            "eval.every=5",
            "schedule.warmup_steps=6",
            "checkpoint.every=0",
        ],
    )));
    assert!(o.contains("trained 60 steps"), "{o}");
    let val = series(&metrics(&f.run_dir("r")), "val/loss");
    assert_eq!(val.len(), 12);
    let (first, last) = (val[0].1, val[11].1);
    // ln 320 = 5.77 is a uniform guess; the generated corpus is very repetitive.
    assert!(first < 320f64.ln() + 0.1, "{val:?}");
    assert!(last < first - 1.0, "validation loss did not fall: {val:?}");
}

/// What the MLflow server holds for the run in `run` is what the folder holds: status FINISHED
/// and the end time, every param of params.json, every step of every metric of metrics.jsonl
/// (bit for bit), every artifact byte for byte, all of metrics.jsonl acknowledged. Returns the
/// server's run id and tags.
fn assert_mirrored(uri: &str, run: &Path) -> (String, BTreeMap<String, String>) {
    use mlflow_server::{get, history, kv_list};
    let local = anvil_tracking::RunFolder::open(run).unwrap();
    let state = local.mlflow.clone().expect("mlflow.json");
    assert_eq!(state.last_error, None, "{state:?}");
    let lines = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        state.metrics_synced as usize, lines,
        "every metric line acknowledged"
    );
    let run_id = state.run_id.clone().expect("an MLflow run id");
    assert_eq!(local.meta.mlflow_run_id.as_ref(), Some(&run_id));

    let r = get(uri, "mlflow/runs/get", &[("run_id", &run_id)]);
    let info = &r["run"]["info"];
    assert_eq!(info["status"], "FINISHED");
    assert_eq!(info["run_name"].as_str(), Some(local.meta.name.as_str()));
    assert_eq!(info["end_time"].as_u64(), local.meta.end_time);

    // Params: the flattened resolved recipe, every one of them, as in params.json.
    let params = kv_list(&r["run"]["data"]["params"]);
    let want: BTreeMap<String, String> =
        serde_json::from_value(json(&run.join("params.json"))).unwrap();
    assert!(want.len() > 50, "{want:?}");
    assert_eq!(params, want);
    let tags = kv_list(&r["run"]["data"]["tags"]);
    assert_eq!(tags["anvil.kind"], "train");
    assert_eq!(tags["anvil.uid"], local.meta.uid);

    // Every step of every metric, with the value in metrics.jsonl.
    let m = metrics(run);
    let keys: BTreeSet<&str> = m.iter().map(|m| m.1.as_str()).collect();
    assert!(
        keys.contains("train/loss") && keys.contains("val/loss"),
        "{keys:?}"
    );
    for key in keys {
        let server: Vec<(u64, f64)> = history(uri, &run_id, key)
            .into_iter()
            .map(|(s, v)| (s, v.as_f64().unwrap()))
            .collect();
        let local = series(&m, key);
        assert_eq!(
            server.iter().map(|s| s.0).collect::<Vec<_>>(),
            local.iter().map(|s| s.0).collect::<Vec<_>>(),
            "{key}: steps"
        );
        for ((step, got), (_, want)) in server.iter().zip(&local) {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{key} at step {step}: {got} vs {want}"
            );
        }
    }

    // Artifacts: the run folder's, byte for byte.
    let list = get(uri, "mlflow/artifacts/list", &[("run_id", &run_id)]);
    let files: BTreeMap<String, u64> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["file_size"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["loss.png", "summary.json", "tokenizer.json"]);
    for (name, size) in &files {
        let here = std::fs::read(run.join("artifacts").join(name)).unwrap();
        assert_eq!(*size as usize, here.len(), "{name}: size on the server");
        let mut resp = ureq::get(format!("{uri}/get-artifact"))
            .query("path", name)
            .query("run_uuid", &run_id)
            .call()
            .unwrap_or_else(|e| panic!("get-artifact {name}: {e}"));
        let there = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap();
        assert!(there == here, "{name}: different bytes on the server");
    }
    assert_eq!(
        json(&run.join("artifacts/summary.json")),
        json(&run.join("summary.json"))
    );
    (run_id, tags)
}

#[test]
fn a_training_run_mirrored_to_a_real_mlflow_server_reads_back_the_same() {
    let Some(exe) = mlflow_server::require_mlflow() else {
        return;
    };
    let f = Fixture::new();
    let server = mlflow_server::Server::start(&exe, &f.path("mlflow"));
    let uri = server.uri();
    let o = ok(f.train(
        "m",
        &[
            &format!("tracking.uri={uri}"),
            "tracking.experiment=anvil-train-test",
        ],
    ));
    let err = stderr(&o);
    assert!(!err.contains("warning"), "{err}");
    let run = f.run_dir("m");
    let (run_id, tags) = assert_mirrored(&uri, &run);
    let r = mlflow_server::get(&uri, "mlflow/runs/get", &[("run_id", &run_id)]);
    let exp_id = r["run"]["info"]["experiment_id"].as_str().unwrap();
    let exp = mlflow_server::get(&uri, "mlflow/experiments/get", &[("experiment_id", exp_id)]);
    assert_eq!(exp["experiment"]["name"], "anvil-train-test");
    let params = mlflow_server::kv_list(&r["run"]["data"]["params"]);
    assert_eq!(params["optim.lr"].parse::<f64>().unwrap(), 1e-2);
    assert_eq!(params["train.max_steps"], "24");
    assert_eq!(
        params["model.vocab_size"], "320",
        "the vocabulary the data decided"
    );
    assert!(
        tags["artifact_ref.checkpoint"].ends_with("step-000024"),
        "{tags:?}"
    );
    let m = metrics(&run);
    assert_eq!(series(&m, "train/loss").len(), 24);
    assert_eq!(series(&m, "val/loss").len(), 3);

    // Resumed with overrides of params the server already has: the same MLflow run goes on
    // (params stay write-once there too, the overrides arrive as a tag), nothing is refused.
    let o = ok(anvil(&[
        "train",
        "run",
        "--resume",
        run.to_str().unwrap(),
        "train.max_steps=32",
        "optim.lr=5e-3",
    ]));
    let err = stderr(&o);
    assert!(!err.contains("warning"), "{err}");
    let (resumed_id, tags) = assert_mirrored(&uri, &run);
    assert_eq!(resumed_id, run_id);
    assert_eq!(
        tags["resume.1.overrides"],
        "train.max_steps=32 optim.lr=5e-3"
    );
    assert!(
        tags["artifact_ref.checkpoint"].ends_with("step-000032"),
        "{tags:?}"
    );
    let r = mlflow_server::get(&uri, "mlflow/runs/get", &[("run_id", &run_id)]);
    let params = mlflow_server::kv_list(&r["run"]["data"]["params"]);
    assert_eq!(params["optim.lr"].parse::<f64>().unwrap(), 1e-2);
    assert_eq!(series(&metrics(&run), "train/loss").len(), 32);
}
