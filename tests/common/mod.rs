//! Helpers shared by the end-to-end tests: run the real `anvil` binary and look at what it did.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, at run time (cargo sets CARGO_MANIFEST_DIR for tests): a test binary
/// reused from a shared target dir may have been built in a clone at another path, which
/// `env!("CARGO_MANIFEST_DIR")` would have baked in.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"))
}

/// Runs the `anvil` binary. With `RUST_BACKTRACE=1`, as many users have it set: an expected
/// error must stay one line even then, which every `one_line_error` check below relies on.
pub fn anvil(args: &[&str]) -> Output {
    anvil_env(args, &[])
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Success, or a panic that shows what the command printed.
pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "anvil failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

/// A failed run must say one clear line, never a panic or a backtrace.
pub fn one_line_error(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    let err = stderr(o);
    assert!(
        !err.contains("panicked") && !err.to_lowercase().contains("backtrace"),
        "panic instead of an error: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

/// Run a Python snippet with the test environment's python3; returns stdout.
pub fn python(code: &str, args: &[&Path]) -> String {
    let o = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Synthetic tasks from `anvil data synth` under `dir/synth`, and a samples file with two samples
/// per held-out task: its canonical solution (passes) and `return None` (fails).
/// Returns `(problems, samples)`.
pub fn synth_problems_and_samples(
    dir: &Path,
    n_train: usize,
    n_heldout: usize,
    seed: u64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let synth = dir.join("synth");
    let (n_train, n_heldout, seed) = (n_train.to_string(), n_heldout.to_string(), seed.to_string());
    ok(anvil(&[
        "data",
        "synth",
        "--n-train",
        &n_train,
        "--n-heldout",
        &n_heldout,
        "--seed",
        &seed,
        "--out",
        synth.to_str().unwrap(),
    ]));
    let problems = synth.join("heldout.jsonl");
    let mut rows = Vec::new();
    for line in std::fs::read_to_string(&problems).unwrap().lines() {
        let p: serde_json::Value = serde_json::from_str(line).unwrap();
        rows.push(
            serde_json::json!({"task_id": p["task_id"], "completion": p["canonical_solution"]})
                .to_string(),
        );
        rows.push(
            serde_json::json!({"task_id": p["task_id"], "completion": "    return None\n"})
                .to_string(),
        );
    }
    let samples = dir.join("samples.jsonl");
    std::fs::write(&samples, rows.join("\n") + "\n").unwrap();
    (problems, samples)
}

/// [`anvil`] with extra environment variables.
pub fn anvil_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anvil"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run anvil")
}

/// Deterministic small Python files, different enough that near-dedup keeps them.
pub fn write_python_corpus(dir: &Path, files: usize) {
    const WORDS: [&str; 24] = [
        "alpha", "beta", "gamma", "delta", "total", "count", "value", "items", "result", "index",
        "buffer", "name", "key", "data", "node", "tree", "left", "right", "parent", "child",
        "size", "limit", "offset", "score",
    ];
    const OPS: [&str; 5] = ["+", "-", "*", "//", "%"];
    const MODS: [&str; 5] = ["os", "sys", "math", "json", "re"];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: usize| {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    };
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        let mut s = format!(
            "\"\"\"Module {i}: helpers for {} {}.\"\"\"\n\nimport {}\n\n",
            WORDS[rnd(24)],
            WORDS[rnd(24)],
            MODS[rnd(5)]
        );
        for j in 0..4 + rnd(5) {
            let a = WORDS[rnd(24)];
            let b = WORDS[(WORDS.iter().position(|w| *w == a).unwrap() + 1 + rnd(23)) % 24];
            s += &format!("def {a}_{b}_{i}_{j}({a}, {b}={}):\n", rnd(100));
            s += &format!("    \"\"\"Return the {a} of {b}.\"\"\"\n");
            for _ in 0..2 + rnd(5) {
                let (c, op) = (WORDS[rnd(24)], OPS[rnd(5)]);
                s += &format!("    {c} = {a} {op} {}\n", 1 + rnd(999));
                if rnd(10) < 4 {
                    s += &format!("    if {c} > {b}:\n        {b} = {c} {op} {}\n", 1 + rnd(9));
                }
            }
            s += &format!("    return {}\n\n", if rnd(2) == 0 { a } else { b });
        }
        std::fs::write(dir.join(format!("mod_{i}.py")), s).unwrap();
    }
}

/// The `[data]` section of a tiny training recipe: a Python corpus in `src`, a 320-token
/// tokenizer, 32-token rows, the data cache in `cache`.
pub fn data_recipe(cache: &Path, src: &Path) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    format!(
        r#"[data]
cache_dir = {}

[data.corpus]
sources = [{}]
langs = ["python"]
val_fraction = 0.2

[data.tokenizer]
vocab_size = 320

[data.tokenize]
seq_len = 32
fim_rate = 0.0
ast = false
"#,
        q(cache),
        q(src)
    )
}

/// A random-weight model of `vocab` tokens (d_model 32, one layer, two heads) saved in `dir`
/// (created), without a tokenizer.
pub fn tiny_checkpoint(dir: &Path, vocab: usize) -> PathBuf {
    let c = anvil_models::LlamaConfig {
        vocab_size: vocab,
        d_model: 32,
        n_layers: 1,
        n_heads: 2,
        max_seq_len: 64,
        ..Default::default()
    };
    std::fs::create_dir_all(dir).unwrap();
    let model = c.init(&burn::tensor::Device::flex());
    anvil_models::store::save(&model, dir).unwrap();
    dir.to_path_buf()
}

/// `anvil export --checkpoint CKPT --format FORMAT [--quant Q] --out OUT EXTRA…`.
pub fn export(
    ckpt: &Path,
    format: &str,
    quant: Option<&str>,
    out: &Path,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(q) = quant {
        args.extend(["--quant", q]);
    }
    args.extend_from_slice(extra);
    anvil(&args)
}

/// Copies the files directly in `from` into `to` (created).
pub fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `key → [(step, value)]` from a run's metrics.jsonl.
pub fn metrics_by_key(run: &Path) -> std::collections::BTreeMap<String, Vec<(u64, f64)>> {
    let mut out: std::collections::BTreeMap<String, Vec<(u64, f64)>> = Default::default();
    for line in std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        // Non-finite values are written as MLflow's strings.
        let value = v["value"]
            .as_f64()
            .unwrap_or_else(|| match v["value"].as_str() {
                Some("Infinity") => f64::INFINITY,
                Some("-Infinity") => f64::NEG_INFINITY,
                Some("NaN") => f64::NAN,
                _ => panic!("not a metric value: {line}"),
            });
        out.entry(v["key"].as_str().unwrap().to_string())
            .or_default()
            .push((v["step"].as_u64().unwrap(), value));
    }
    out
}

/// Open MPI's launcher on this machine: more ranks than cores allowed, root allowed (CI runs as
/// root), the ranks' output passed through.
pub fn mpirun(np: usize, args: &[String]) -> std::process::Command {
    let mut c = std::process::Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &np.to_string()])
        .arg(env!("CARGO_BIN_EXE_anvil"))
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RUST_BACKTRACE", "1");
    c
}

/// `dir/recipe.toml`: a tiny model (d_model 32, 2 layers, 2 heads, tied embeddings) on a generated
/// corpus of 40 Python files in `dir/src` (data cache in `dir/cache`, runs in `dir/runs`), with
/// `rest` (the `[train]`, `[optim]`, … sections) after it.
pub fn tiny_recipe(dir: &Path, rest: &str) -> PathBuf {
    let src = dir.join("src");
    write_python_corpus(&src, 40);
    let recipe = dir.join("recipe.toml");
    let text = format!(
        r#"{data}
[model]
d_model = 32
n_layers = 2
n_heads = 2
max_seq_len = 64
tie_embeddings = true

{rest}
[output]
dir = {runs:?}
"#,
        data = data_recipe(&dir.join("cache"), &src),
        runs = dir.join("runs").display().to_string(),
    );
    std::fs::write(&recipe, text).unwrap();
    recipe
}

/// `anvil serve ARGS… --addr 127.0.0.1:0`, asked one `POST /v1/completions` with `body` and one
/// `GET /v1/models`, then killed: both answers as JSON and the server's stderr.
pub fn serve_once(
    args: &[&str],
    body: &serde_json::Value,
) -> (serde_json::Value, serde_json::Value, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_anvil"))
        .arg("serve")
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn anvil serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let res = (|| {
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("no address printed: {line:?}"))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        let json = |mut r: ureq::http::Response<ureq::Body>| -> serde_json::Value {
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
        };
        let completion = agent
            .post(format!("{base}/v1/completions"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(|e| e.to_string())?;
        let models = agent
            .get(format!("{base}/v1/models"))
            .call()
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((json(completion), json(models)))
    })();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let (completion, models) = res.unwrap_or_else(|e| panic!("{e}; stderr: {}", stderr(&out)));
    (completion, models, stderr(&out))
}
