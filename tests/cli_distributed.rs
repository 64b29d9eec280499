//! Data parallelism under a real `mpirun` (Open MPI, two ranks on this machine): two ranks with
//! one micro-batch each are one process accumulating the same two micro-batches — bit for bit,
//! metrics, weights and AdamW moments — and ZeRO-1 is the same within 1e-6; a signal to one
//! rank checkpoints and stops both, the resume is bit-identical, a resume on another rank count
//! is refused; a rank that dies or hangs ends the job; setup errors are one line from rank 0;
//! LoRA runs data-parallel too.

#![cfg(feature = "mpi")]

mod common;
use burn::tensor::Device;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// A corpus and a tiny model's recipe in a temp folder (the data cache and runs beside them).
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
max_steps = 8
batch_size = 4
log_every = 1

[optim]
lr = 1e-2

[schedule]
warmup_steps = 2

[eval]
every = 4
batches = 3

[checkpoint]
every = 4
"#,
        );
        Fixture { tmp, recipe }
    }

    fn run_dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join("runs").join(name)
    }

    fn args(&self, name: &str, extra: &[&str]) -> Vec<String> {
        let mut a = vec![
            "train".into(),
            "run".into(),
            self.recipe.display().to_string(),
        ];
        a.push(format!("output.name={name}"));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    /// One process.
    fn train(&self, name: &str, extra: &[&str]) -> Output {
        let args = self.args(name, extra);
        anvil(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `mpirun -np <np> anvil train run …`, to completion.
    fn mpirun(&self, np: usize, name: &str, extra: &[&str]) -> Output {
        mpirun(np, &self.args(name, extra))
            .output()
            .expect("mpirun (apt install openmpi-bin)")
    }

    /// The same in the background, output to `<tmp>/<name>.{out,err}`.
    fn spawn(&self, np: usize, name: &str, extra: &[&str]) -> Child {
        let file = |ext: &str| {
            let p = self.tmp.path().join(format!("{name}.{ext}"));
            Stdio::from(std::fs::File::create(p).unwrap())
        };
        mpirun(np, &self.args(name, extra))
            .stdout(file("out"))
            .stderr(file("err"))
            .spawn()
            .expect("mpirun")
    }

    fn output(&self, name: &str) -> String {
        let read = |ext: &str| {
            std::fs::read_to_string(self.tmp.path().join(format!("{name}.{ext}")))
                .unwrap_or_default()
        };
        format!("stdout: {}\nstderr: {}", read("out"), read("err"))
    }
}

/// The ranks `mpirun` (pid `launcher`) started, by rank.
fn rank_pids(launcher: u32) -> BTreeMap<usize, i32> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Field 4 (after the parenthesized name) is the parent's pid.
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(launcher) {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        for var in env.split(|&b| b == 0) {
            if let Some(r) = var.strip_prefix(b"OMPI_COMM_WORLD_RANK=") {
                out.insert(String::from_utf8_lossy(r).parse().unwrap(), pid);
            }
        }
    }
    out
}

/// Waits until `cond` holds while `child` runs; panics if it exits first or after `timeout`.
fn wait_for(child: &mut Child, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mpirun exited ({status}) before {what}");
        }
        assert!(start.elapsed() < timeout, "no {what} after {timeout:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` to exit, at most `timeout` (then panics showing `output()`).
fn wait_exit(
    child: &mut Child,
    timeout: Duration,
    output: impl Fn() -> String,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("the job still runs after {timeout:?}: {}", output());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

type Tensors = BTreeMap<String, Vec<f32>>;

/// The model's parameters in a checkpoint (or a run's newest).
fn weights(ckpt: &Path) -> Tensors {
    let (model, _) = anvil_infer::load_model(ckpt, &Device::flex()).unwrap();
    anvil_models::hf::parameters(&model)
        .into_iter()
        .map(|(n, _, d)| (n, d))
        .collect()
}

/// The tensors of a safetensors file in a checkpoint (AdamW's moments, an adapter).
fn safetensors(ckpt: &Path, file: &str) -> Tensors {
    anvil_models::hf::read_safetensors(&ckpt.join(file))
        .unwrap()
        .into_iter()
        .map(|(n, (_, d))| (n, d))
        .collect()
}

fn newest(run: &Path) -> PathBuf {
    anvil_train::checkpoint::list(&run.join("checkpoints"))
        .pop()
        .unwrap_or_else(|| panic!("{}: no checkpoint", run.display()))
        .1
}

/// The largest |a − b| of a tensor over its largest |a|, across tensors; panics on other names.
fn max_relative_difference(a: &Tensors, b: &Tensors) -> f64 {
    assert!(!a.is_empty());
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "different tensors"
    );
    let mut worst = 0f64;
    for (name, x) in a {
        let y = &b[name];
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30) as f64;
        let d = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs())) as f64;
        worst = worst.max(d / scale);
    }
    worst
}

fn assert_bit_identical(what: &str, a: &Tensors, b: &Tensors) {
    let d = max_relative_difference(a, b);
    let same = a
        .iter()
        .all(|(n, x)| x.iter().zip(&b[n]).all(|(p, q)| p.to_bits() == q.to_bits()));
    assert!(
        same,
        "{what}: not bit-identical (max relative difference {d:e})"
    );
}

/// The metrics both runs log, without throughput and communication (timings).
fn learning_metrics(run: &Path) -> BTreeMap<String, Vec<(u64, f64)>> {
    let mut m = metrics_by_key(run);
    m.retain(|k, _| !k.starts_with("dist/") && k != "train/tokens_per_s");
    m
}

/// Two ranks × one micro-batch = one process × two micro-batches on the same rows: the same
/// sums in the same order, so the same bits (clipping at 1.0 on). ZeRO-1 computes the norm from
/// per-rank partial sums (another order), so it agrees within 1e-6. 2 ranks × 2 micro-batches
/// against 1 × 4 adds in another order too (each rank adds its two first): within 1e-4.
#[test]
fn two_ranks_match_one_process_accumulating_their_micro_batches() {
    let f = Fixture::new();
    ok(f.train("one", &["train.grad_accum=2"]));
    let o = ok(f.mpirun(2, "ddp", &[]));
    assert!(stdout(&o).contains("trained 8 steps"), "{}", stdout(&o));
    ok(f.mpirun(2, "zero", &["distributed.zero=1"]));
    let (one, ddp, zero) = (f.run_dir("one"), f.run_dir("ddp"), f.run_dir("zero"));

    let m1 = learning_metrics(&one);
    assert_eq!(m1, learning_metrics(&ddp), "DDP logged other numbers");
    assert!(m1["val/loss"].len() == 2, "validated at steps 4 and 8");
    let (c1, cd, cz) = (newest(&one), newest(&ddp), newest(&zero));
    assert_bit_identical("DDP weights", &weights(&c1), &weights(&cd));
    let (o1, od) = (
        safetensors(&c1, "optimizer.safetensors"),
        safetensors(&cd, "optimizer.safetensors"),
    );
    assert_bit_identical("DDP AdamW moments", &o1, &od);
    let state = std::fs::read_to_string(cd.join("state.json")).unwrap();
    assert!(state.contains("\"world_size\": 2"), "{state}");
    // Only rank 0 wrote: one metrics line per key and step.
    let dm = metrics_by_key(&ddp);
    assert_eq!(dm["train/loss"].len(), 8);
    assert!(dm["dist/comm_bytes"].iter().all(|(_, b)| *b > 0.0));

    let mz = learning_metrics(&zero);
    for (key, series) in &m1 {
        for ((s, a), (_, b)) in series.iter().zip(&mz[key]) {
            let rel = (a - b).abs() / a.abs().max(1e-12);
            assert!(rel < 1e-6, "ZeRO-1 {key} at step {s}: {a} vs {b}");
        }
    }
    let d = max_relative_difference(&weights(&c1), &weights(&cz));
    assert!(d < 1e-6, "ZeRO-1 weights differ by {d:e}");
    // Its checkpoint holds the whole optimizer state, gathered from both ranks.
    let oz = safetensors(&cz, "optimizer.safetensors");
    let d = max_relative_difference(&o1, &oz);
    assert!(d < 1e-5, "ZeRO-1 moments differ by {d:e}");

    ok(f.train("one4", &["train.grad_accum=4"]));
    ok(f.mpirun(2, "ddp2", &["train.grad_accum=2"]));
    let d = max_relative_difference(
        &weights(&newest(&f.run_dir("one4"))),
        &weights(&newest(&f.run_dir("ddp2"))),
    );
    // Another order of additions; AdamW's m/√v magnifies the last-bit differences of small
    // gradients (1.1e-5 measured after 8 steps).
    assert!(d < 1e-4, "2 ranks × 2 micro-batches vs 1 × 4: {d:e}");
}

/// SIGTERM to rank 1 alone: both ranks stop at the same step with one checkpoint (ZeRO-1's
/// optimizer shards gathered into it); resuming on one process is refused; resuming on two
/// ends bit-identical to an uninterrupted two-rank run.
#[test]
fn a_signal_to_one_rank_stops_all_and_the_resume_is_bit_identical() {
    let f = Fixture::new();
    let args = [
        "train.max_steps=500",
        "checkpoint.every=1000",
        "eval.every=1000",
        "distributed.zero=1",
    ];
    ok(f.mpirun(2, "straight", &args));

    let mut job = f.spawn(2, "split", &args);
    let run = f.run_dir("split");
    wait_for(&mut job, "step 5", Duration::from_secs(120), || {
        run.join("metrics.jsonl").is_file()
            && metrics_by_key(&run)
                .get("train/loss")
                .is_some_and(|s| s.len() >= 5)
    });
    let pids = rank_pids(job.id());
    assert_eq!(pids.len(), 2, "ranks of mpirun: {pids:?}");
    assert_eq!(unsafe { libc::kill(pids[&1], libc::SIGTERM) }, 0);
    let status = wait_exit(&mut job, Duration::from_secs(60), || f.output("split"));
    let out = f.output("split");
    assert_eq!(status.code(), Some(130), "{status}: {out}");
    assert!(out.contains("interrupted after"), "{out}");
    let ckpts = anvil_train::checkpoint::list(&run.join("checkpoints"));
    assert_eq!(ckpts.len(), 1, "one checkpoint, at the stop: {ckpts:?}");
    let stopped = ckpts[0].0;
    assert!((5..500).contains(&stopped), "stopped at {stopped}");

    let e = one_line_error(&anvil(&["train", "run", "--resume", run.to_str().unwrap()]));
    assert!(
        e.contains("trained on 2 ranks (mpirun -np 2)") && e.contains("not on one process"),
        "{e}"
    );
    let resume = ["train", "run", "--resume", run.to_str().unwrap()].map(String::from);
    ok(mpirun(2, &resume).output().unwrap());
    let (a, b) = (newest(&f.run_dir("straight")), newest(&run));
    assert!(a.ends_with("step-000500") && b.ends_with("step-000500"));
    assert_bit_identical("resumed weights", &weights(&a), &weights(&b));
    assert_bit_identical(
        "resumed AdamW moments",
        &safetensors(&a, "optimizer.safetensors"),
        &safetensors(&b, "optimizer.safetensors"),
    );
}

/// A rank killed by SIGKILL ends the job at once (mpirun); a rank that stops answering
/// (SIGSTOP) ends it after `distributed.timeout`, with rank 0 saying why.
#[test]
fn a_rank_that_dies_or_hangs_ends_the_job() {
    let f = Fixture::new();
    let args = [
        "train.max_steps=100000",
        "checkpoint.every=100000",
        "eval.every=100000",
        "distributed.timeout=3",
    ];
    for (name, signal) in [("killed", libc::SIGKILL), ("stopped", libc::SIGSTOP)] {
        let mut job = f.spawn(2, name, &args);
        let run = f.run_dir(name);
        wait_for(&mut job, "a step", Duration::from_secs(120), || {
            run.join("metrics.jsonl").is_file() && metrics_by_key(&run).contains_key("train/loss")
        });
        let pids = rank_pids(job.id());
        assert_eq!(unsafe { libc::kill(pids[&1], signal) }, 0);
        let status = wait_exit(&mut job, Duration::from_secs(60), || {
            format!("{name} {pids:?}: {}", f.output(name))
        });
        // A stopped rank is killed with the job, but not woken: make sure it is gone.
        unsafe { libc::kill(pids[&1], libc::SIGKILL) };
        assert!(!status.success(), "{name}: {}", f.output(name));
        if signal == libc::SIGSTOP {
            let out = f.output(name);
            assert!(
                out.contains("error: rank 0: no answer from the other ranks")
                    && out.contains("for 3 s (distributed.timeout)"),
                "{out}"
            );
        }
    }
}

/// Errors every rank meets in setup are printed once, by rank 0, as one line; nothing panics.
#[test]
fn setup_errors_are_one_line_from_rank_0() {
    let f = Fixture::new();
    for (extra, want) in [
        (
            "train.batch_size=100000",
            "fewer than train.batch_size = 100000 × 2 ranks",
        ),
        ("distributed.zero=2", "`distributed.zero`"),
        ("distributed.bucket_mb=0", "`distributed.bucket_mb`"),
    ] {
        let o = f.mpirun(2, "bad", &[extra]);
        assert!(!o.status.success(), "{extra}");
        let err = stderr(&o);
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{extra}: {err}");
        assert!(errors[0].contains(want), "{extra}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!f.run_dir("bad").exists(), "{extra} made a run folder");
    }
}

/// LoRA on a frozen base: the adapter after two ranks × one micro-batch is the adapter after one
/// process × two, bit for bit (the frozen base is neither exchanged nor updated); in f16 as well.
#[test]
fn lora_runs_data_parallel() {
    let f = Fixture::new();
    ok(f.train("base", &[]));
    let init = format!("model.init_from={}", f.run_dir("base").display());
    let lora = [
        init.as_str(),
        "lora.r=4",
        "lora.alpha=8",
        "train.max_steps=6",
    ];
    let mut one = lora.to_vec();
    one.push("train.grad_accum=2");
    ok(f.train("one", &one));
    ok(f.mpirun(2, "two", &lora));
    let file = "adapter_model.safetensors";
    let (a, b) = (
        safetensors(&newest(&f.run_dir("one")), file),
        safetensors(&newest(&f.run_dir("two")), file),
    );
    assert_bit_identical("LoRA adapter", &a, &b);

    // In f16 too: both ranks unscale and agree on every step (the loss scale with them).
    let f16 = "train.precision=\"f16\"";
    one.push(f16);
    let mut two = lora.to_vec();
    two.push(f16);
    ok(f.train("one16", &one));
    ok(f.mpirun(2, "two16", &two));
    let (c1, c2) = (newest(&f.run_dir("one16")), newest(&f.run_dir("two16")));
    assert_bit_identical(
        "LoRA adapter in f16",
        &safetensors(&c1, file),
        &safetensors(&c2, file),
    );
    let scaler = |c: &Path| {
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(c.join("state.json")).unwrap()).unwrap();
        s["loss_scaler"].clone()
    };
    assert!(scaler(&c1).is_object(), "{}", scaler(&c1));
    assert_eq!(scaler(&c1), scaler(&c2));
}
