//! End-to-end: `anvil serve` on loopback, spoken to over real HTTP. Completions plain and
//! streamed (the same text either way), `n`, several prompts, stop sequences, seeds, echo, FIM,
//! usage counts, `/v1/models`, `/healthz`, `/metrics`, 400/404/413 answers, 429 under overload,
//! a bounded load test with malformed requests mixed in, a client leaving mid-stream, and
//! SIGTERM finishing the request in flight before exiting 0.
//!
//! Models have random weights (what they write is noise, but deterministic noise) and are built
//! in-process once per test binary: a tiny one for speed and a wider one whose requests take long
//! enough to overlap.

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TEXT: &str = "def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\nfor i in range(10):\n    print(i * i)\n";

/// A checkpoint folder with `tokenizer.json`, built once per test binary.
fn model(name: &str, d_model: usize, n_layers: usize, max_seq_len: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_serve")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let texts = (0..20).map(|i| TEXT.replace("10", &i.to_string()));
    let tok = anvil_data::tokenizer::train_from_texts(
        texts,
        &anvil_data::tokenizer::TrainConfig {
            vocab_size: 320,
            min_frequency: 2,
            max_bytes: None,
        },
    )
    .unwrap();
    anvil_data::tokenizer::save(&tok, &dir.join("tokenizer.json")).unwrap();
    let cfg = anvil_models::LlamaConfig {
        vocab_size: tok.get_vocab_size(true),
        d_model,
        n_layers,
        n_heads: 4,
        max_seq_len,
        // Wide enough logits that sampled text varies with the seed.
        init_std: 0.2,
        ..Default::default()
    };
    // One model at a time: the seeded generator is the device's, shared by both.
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = burn::tensor::Device::flex();
    device.seed(11);
    let m = cfg.init(&device);
    anvil_models::store::save(&m, &dir).unwrap();
    dir
}

/// Fast to decode: context 128.
fn tiny() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| model("tiny", 32, 2, 128))
}

/// Slow enough that a few hundred tokens overlap other requests: context 1024.
fn wide() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| model("wide", 256, 4, 1024))
}

fn encode_len(text: &str) -> usize {
    let tok = anvil_data::tokenizer::load(&tiny().join("tokenizer.json")).unwrap();
    tok.encode(text, false).unwrap().get_ids().len()
}

/// A running `anvil serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    stderr: PathBuf,
    agent: ureq::Agent,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Server {
        let stderr = model.with_file_name(format!(
            "serve-{}-{:?}.err",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_anvil"))
            .args(["serve", "--checkpoint", model.to_str().unwrap()])
            .args(["--addr", "127.0.0.1:0", "--model-name", "tiny"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn anvil serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!(
                "no address printed: {line:?}; stderr: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Server {
            child,
            base: base.to_string(),
            stderr,
            agent,
        }
    }

    fn addr(&self) -> &str {
        self.base.strip_prefix("http://").unwrap()
    }

    fn post_raw(&self, path: &str, body: &str) -> (u16, String, Option<String>) {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path} {body}: {e}"));
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), text, retry)
    }

    /// POST /v1/completions; the answer as JSON.
    fn complete(&self, body: &Value) -> (u16, Value) {
        let (status, text, _) = self.post_raw("/v1/completions", &body.to_string());
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, v)
    }

    fn ok(&self, body: &Value) -> Value {
        let (status, v) = self.complete(body);
        assert_eq!(status, 200, "{body}: {v}");
        v
    }

    /// A streamed completion: the `data:` payloads before `[DONE]` (which must end the stream).
    fn stream(&self, body: &Value) -> Vec<Value> {
        let (status, text, _) = self.post_raw("/v1/completions", &body.to_string());
        assert_eq!(status, 200, "{text}");
        let events: Vec<&str> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("{e:?}")))
            .collect();
        assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
        events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    /// `/metrics` as `sample (with labels) -> value`.
    fn metrics(&self) -> BTreeMap<String, f64> {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k.to_string(), v.parse().unwrap_or_else(|_| panic!("{l}")))
            })
            .collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The exit status, waiting at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "still running {timeout:?} after SIGTERM; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// The text of each choice of a stream, by index, and each finish reason.
fn collect_stream(events: &[Value]) -> (BTreeMap<u64, String>, BTreeMap<u64, String>) {
    let (mut text, mut finish) = (BTreeMap::new(), BTreeMap::new());
    for e in events {
        assert_eq!(e["object"], "text_completion");
        for c in e["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap();
            text.entry(i)
                .or_insert_with(String::new)
                .push_str(c["text"].as_str().unwrap());
            if let Some(f) = c["finish_reason"].as_str() {
                assert!(finish.insert(i, f.to_string()).is_none(), "two finishes");
            }
        }
    }
    (text, finish)
}

fn texts(v: &Value) -> Vec<String> {
    v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn completions_plain_and_streamed_agree() {
    let s = Server::start(tiny(), &[]);
    let prompt = "def add(a, b):\n";
    for (temperature, seed) in [(0.0, 0), (0.9, 5)] {
        let req = json!({"model": "tiny", "prompt": prompt, "max_tokens": 12,
                         "temperature": temperature, "seed": seed});
        let v = s.ok(&req);
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["model"], "tiny");
        assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
        assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
        let c = &v["choices"][0];
        assert_eq!(
            (c["index"].clone(), c["logprobs"].clone()),
            (json!(0), Value::Null)
        );
        let finish = c["finish_reason"].as_str().unwrap();
        let u = &v["usage"];
        assert_eq!(u["prompt_tokens"], encode_len(prompt));
        let completion = u["completion_tokens"].as_u64().unwrap();
        if finish == "length" {
            assert_eq!(completion, 12);
        } else {
            assert!(finish == "stop" && completion < 12, "{v}");
        }
        assert_eq!(
            u["total_tokens"],
            u["prompt_tokens"].as_u64().unwrap() + completion
        );

        let mut sreq = req.clone();
        sreq["stream"] = json!(true);
        sreq["stream_options"] = json!({"include_usage": true});
        let events = s.stream(&sreq);
        let (text, finishes) = collect_stream(&events);
        assert_eq!(text[&0], c["text"].as_str().unwrap(), "{events:?}");
        assert_eq!(finishes[&0], finish);
        // The usage chunk comes last, with no choices.
        let last = events.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(&last["usage"], u);
    }
}

#[test]
fn n_several_prompts_seeds_echo_and_fim() {
    let s = Server::start(tiny(), &[]);
    let base = json!({"prompt": "x = ", "max_tokens": 10, "temperature": 1.0, "seed": 42, "n": 3});
    let a = s.ok(&base);
    let idx: Vec<u64> = a["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [0, 1, 2]);
    // Same seed, same answer; the samples of one request differ from each other.
    assert_eq!(texts(&a), texts(&s.ok(&base)));
    let t = texts(&a);
    assert!(t[0] != t[1] || t[1] != t[2], "{t:?}");
    let mut other = base.clone();
    other["seed"] = json!(43);
    assert_ne!(texts(&a), texts(&s.ok(&other)));

    // Several prompts: choices are prompt-major, each prompt as if asked alone.
    let many = s.ok(
        &json!({"prompt": ["x = ", "def f("], "max_tokens": 6, "n": 2,
                            "temperature": 0.8, "seed": 1}),
    );
    let one = |p: &str| {
        texts(&s.ok(&json!({"prompt": p, "max_tokens": 6, "n": 2, "temperature": 0.8, "seed": 1})))
    };
    assert_eq!(texts(&many), [one("x = "), one("def f(")].concat());
    assert_eq!(
        many["usage"]["prompt_tokens"],
        encode_len("x = ") + encode_len("def f(")
    );
    // Token-id prompts read the same as their text.
    let ids: Vec<u32> = {
        let tok = anvil_data::tokenizer::load(&tiny().join("tokenizer.json")).unwrap();
        tok.encode("x = ", false).unwrap().get_ids().to_vec()
    };
    let mut by_ids = base.clone();
    by_ids["prompt"] = json!(ids);
    assert_eq!(texts(&a), texts(&s.ok(&by_ids)));

    // echo prepends the prompt, streamed or not.
    let echo = s.ok(&json!({"prompt": "x = ", "max_tokens": 4, "temperature": 0, "echo": true}));
    let plain = s.ok(&json!({"prompt": "x = ", "max_tokens": 4, "temperature": 0}));
    assert_eq!(texts(&echo)[0], format!("x = {}", texts(&plain)[0]));
    let events = s.stream(&json!({"prompt": "x = ", "max_tokens": 4, "temperature": 0,
                                  "echo": true, "stream": true}));
    assert_eq!(collect_stream(&events).0[&0], texts(&echo)[0]);

    // A suffix makes a fill-in-the-middle prompt: <fim_prefix> p <fim_suffix> s <fim_middle>.
    let fim = s.ok(&json!({"prompt": "def f(", "suffix": "\n    return 1\n", "max_tokens": 4}));
    assert_eq!(
        fim["usage"]["prompt_tokens"],
        encode_len("def f(") + encode_len("\n    return 1\n") + 3
    );
}

#[test]
fn stop_sequences_cut_the_text() {
    let s = Server::start(tiny(), &[]);
    let req = json!({"prompt": "for i in", "max_tokens": 30, "temperature": 0, "ignore_eos": true});
    let full = texts(&s.ok(&req))[0].clone();
    // Stop at a character the greedy text does contain, after its start.
    let stop: String = full
        .chars()
        .skip(3)
        .find(|c| *c != '\u{FFFD}')
        .expect("some text")
        .to_string();
    let want = &full[..full.find(&stop).unwrap()];
    let mut with_stop = req.clone();
    with_stop["stop"] = json!([stop, "never-produced"]);
    let v = s.ok(&with_stop);
    assert_eq!(texts(&v)[0], want, "full text {full:?}, stop {stop:?}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    with_stop["stream"] = json!(true);
    let (text, finish) = collect_stream(&s.stream(&with_stop));
    assert_eq!((text[&0].as_str(), finish[&0].as_str()), (want, "stop"));
}

#[test]
fn models_health_and_metrics() {
    let s = Server::start(tiny(), &[]);
    let (status, body) = s.get("/v1/models");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "tiny");
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(s.get("/v1/models/tiny").0, 200);
    assert_eq!(s.get("/v1/models/gpt-4").0, 404);
    let (status, body) = s.get("/healthz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    let before = s.metrics();
    let v = s.ok(&json!({"prompt": "def", "max_tokens": 5, "n": 2}));
    let (status, _) = s.complete(&json!({"prompt": "def", "n": 0}));
    assert_eq!(status, 400);
    let after = s.metrics();
    let delta =
        |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    assert_eq!(
        delta(r#"anvil_requests_total{endpoint="/v1/completions",status="200"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"anvil_requests_total{endpoint="/v1/completions",status="400"}"#),
        1.0
    );
    assert_eq!(
        delta("anvil_generated_tokens_total"),
        v["usage"]["completion_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        delta("anvil_prompt_tokens_total"),
        v["usage"]["prompt_tokens"].as_f64().unwrap()
    );
    assert_eq!(delta("anvil_request_duration_seconds_count"), 2.0);
    assert_eq!(
        delta(r#"anvil_request_duration_seconds_bucket{le="+Inf"}"#),
        2.0
    );
    assert!(after["anvil_request_duration_seconds_sum"] > 0.0);
    assert_eq!(after["anvil_queue_depth"], 0.0);
    assert_eq!(after["anvil_queue_capacity"], 64.0);
    assert_eq!(after["anvil_inflight_requests"], 0.0);
    assert!(after[r#"anvil_requests_total{endpoint="/metrics",status="200"}"#] >= 1.0);
}

#[test]
fn token_healing_is_on_unless_a_request_turns_it_off() {
    // A model that writes code after ":" but ends the text after a lone newline: a prompt ending
    // in one only gets code once healing backs the newline off.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_serve")
        .join("indent");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    anvil_infer::testing::indent_model(&dir);
    let s = Server::start(&dir, &[]);
    let req = json!({"prompt": "def same(y):\n", "max_tokens": 8, "temperature": 0});
    let v = s.ok(&req);
    assert_eq!(texts(&v), ["    return y\n"]);
    // Usage counts the prompt as sent and the tokens after it (the rewritten newline is neither
    // new nor counted twice).
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 13, "completion_tokens": 3, "total_tokens": 16})
    );
    // The stream never shows the rewritten newline.
    let mut streamed = req.clone();
    streamed["stream"] = json!(true);
    let events = s.stream(&streamed);
    assert_eq!(collect_stream(&events).0[&0], "    return y\n");

    let mut off = req.clone();
    off["token_healing"] = json!(false);
    let v = s.ok(&off);
    assert_eq!(texts(&v), [""]);
    assert_eq!(v["usage"]["completion_tokens"], 0);
    check_error(
        &s,
        r#"{"prompt": "x", "token_healing": "no"}"#,
        400,
        Some("token_healing"),
    );
}

/// An error answer: OpenAI's shape, and the field it names.
fn check_error(s: &Server, body: &str, status: u16, param: Option<&str>) {
    let (got, text, _) = s.post_raw("/v1/completions", body);
    assert_eq!(got, status, "{body}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let e = &v["error"];
    assert!(!e["message"].as_str().unwrap().is_empty(), "{text}");
    assert!(e["type"].is_string(), "{text}");
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{body}: {text}");
    }
}

#[test]
fn bad_requests_are_answered_with_errors() {
    let s = Server::start(tiny(), &["--max-body", "4096"]);
    let long_prompt = "x = 1\n".repeat(200);
    for (body, status, param) in [
        ("{\"prompt\": ", 400, None),
        ("", 400, None),
        ("[1, 2]", 400, None),
        (r#"{"prompt": 7}"#, 400, Some("prompt")),
        (
            r#"{"prompt": "x", "max_tokens": "many"}"#,
            400,
            Some("max_tokens"),
        ),
        (
            r#"{"prompt": "x", "temperature": -1}"#,
            400,
            Some("temperature"),
        ),
        (r#"{"prompt": "x", "top_p": 1.5}"#, 400, Some("top_p")),
        (r#"{"prompt": "x", "n": 0}"#, 400, Some("n")),
        (
            r#"{"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}"#,
            400,
            Some("stop"),
        ),
        (
            r#"{"prompt": "x", "max_tokens": 1000}"#,
            400,
            Some("prompt"),
        ),
        (r#"{"prompt": [5, 99999]}"#, 400, Some("prompt")),
        (r#"{"prompt": "x", "model": "gpt-4"}"#, 404, Some("model")),
    ] {
        check_error(&s, body, status, param);
    }
    let too_long = json!({"prompt": long_prompt, "max_tokens": 1}).to_string();
    assert!(too_long.len() < 4096);
    check_error(&s, &too_long, 400, Some("prompt"));
    let (status, v) = s.complete(&json!({"prompt": long_prompt, "max_tokens": 1}));
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(status, 400);

    // Bodies over --max-body: 413, whether announced by Content-Length or not.
    let big = json!({"prompt": "x".repeat(8000)}).to_string();
    check_error(&s, &big, 413, None);
    assert!(raw_status(s.addr(), &big, true).starts_with("HTTP/1.1 413"));
    assert!(raw_status(s.addr(), &big, false).starts_with("HTTP/1.1 413"));

    assert_eq!(s.get("/v1/nothing").0, 404);
    assert_eq!(s.get("/v1/completions").0, 405);
    // Still serving.
    s.ok(&json!({"prompt": "x", "max_tokens": 2}));
}

/// The status line of a raw POST, the body sent with a Content-Length or chunked.
fn raw_status(addr: &str, body: &str, content_length: bool) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = if content_length {
        format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    } else {
        format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = c.write_all(head.as_bytes());
    let mut line = String::new();
    let _ = BufReader::new(c).read_line(&mut line);
    line
}

#[test]
fn bad_checkpoint_or_options_fail_in_one_line() {
    let line = one_line_error(&anvil(&["serve", "--checkpoint", "/no/such/folder"]));
    assert!(line.contains("/no/such/folder"), "{line}");
    let dir = tiny().to_str().unwrap();
    let line = one_line_error(&anvil(&["serve", "--checkpoint", dir, "--queue", "0"]));
    assert!(line.contains("--queue"), "{line}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = one_line_error(&anvil(&["serve", "--checkpoint", dir, "--addr", &addr]));
    assert!(line.contains("cannot listen on"), "{line}");
}

/// A request long enough on the wide model to overlap others (seconds on a busy CI core): past
/// the end-of-text token, so random weights cannot make it short.
fn slow_request(max_tokens: usize) -> Value {
    json!({"prompt": "def", "max_tokens": max_tokens, "temperature": 0, "n": 4,
           "ignore_eos": true})
}

#[test]
fn a_full_queue_answers_429_at_once() {
    let s = Server::start(wide(), &["--queue", "1"]);
    let burst = 8;
    let results: Vec<(u16, Option<String>, Duration)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..burst)
            .map(|_| {
                sc.spawn(|| {
                    let t = Instant::now();
                    let (status, _, retry) =
                        s.post_raw("/v1/completions", &slow_request(300).to_string());
                    (status, retry, t.elapsed())
                })
            })
            .collect();
        // Health checks stay quick while the decoding thread is busy.
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..5 {
            let t = Instant::now();
            assert_eq!(s.get("/healthz").0, 200);
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok + refused.len(), burst, "{results:?}");
    // One decoding, one waiting, and one more if the decoding thread took the waiting one into
    // its batch before the rest of the burst arrived.
    assert!((1..=3).contains(&ok), "{results:?}");
    eprintln!("overload: {results:?}");
    let slowest_ok = results
        .iter()
        .filter(|r| r.0 == 200)
        .map(|r| r.2)
        .max()
        .unwrap();
    for r in &refused {
        assert_eq!(r.1.as_deref(), Some("1"), "Retry-After");
        assert!(r.2 < Duration::from_secs(2), "429 after {:?}", r.2);
        assert!(
            r.2 < slowest_ok,
            "429 after {:?}, a 200 after {slowest_ok:?}",
            r.2
        );
    }
    let m = s.metrics();
    assert_eq!(
        m[r#"anvil_requests_total{endpoint="/v1/completions",status="429"}"#],
        refused.len() as f64
    );
}

#[test]
fn load_test_with_malformed_requests_mixed_in() {
    let s = Server::start(tiny(), &["--queue", "64"]);
    let (total, concurrency) = (320usize, 16usize);
    let malformed = [
        r#"{"prompt": "x", "max_tokens": 2"#,
        r#"{"prompt": "x", "temperature": "warm"}"#,
        r#"{"prompt": "x", "n": 0}"#,
        r#"{"prompt": {"text": "x"}}"#,
        r#"{"prompt": "x", "model": "nope"}"#,
    ];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    let results: Vec<(usize, u16, Duration)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                sc.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total || start.elapsed() > Duration::from_secs(90) {
                            return out;
                        }
                        let body = if i % 5 == 4 {
                            malformed[(i / 5) % malformed.len()].to_string()
                        } else {
                            json!({"prompt": format!("x = {i}"), "max_tokens": 4,
                                   "temperature": 0.7, "seed": i, "stream": i.is_multiple_of(3)})
                            .to_string()
                        };
                        let t = Instant::now();
                        let (status, text, _) = s.post_raw("/v1/completions", &body);
                        if i % 5 != 4 && i.is_multiple_of(3) {
                            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
                        }
                        out.push((i, status, t.elapsed()));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = start.elapsed();
    assert_eq!(results.len(), total, "not all sent within the time bound");
    for (i, status, _) in &results {
        let want: &[u16] = if i % 5 == 4 { &[400, 404] } else { &[200] };
        assert!(want.contains(status), "request {i}: {status}");
    }
    let mut lat: Vec<Duration> = results.iter().map(|r| r.2).collect();
    lat.sort();
    eprintln!(
        "load: {total} requests at concurrency {concurrency} in {elapsed:.2?} ({:.0} req/s), \
         latency p50 {:.1?} p99 {:.1?} max {:.1?}",
        total as f64 / elapsed.as_secs_f64(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1]
    );
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    let m = s.metrics();
    let completions: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with(r#"anvil_requests_total{endpoint="/v1/completions""#))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(completions, total as f64);
    assert_eq!(m["anvil_inflight_requests"], 0.0);
    assert_eq!(m["anvil_queue_depth"], 0.0);
}

/// Sends `body` over a raw connection and closes it: once the first event arrives for a stream,
/// once decoding has surely started otherwise.
fn abandon(s: &Server, body: &Value) {
    let body = body.to_string();
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        c,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    if body.contains("\"stream\":true") {
        let mut r = BufReader::new(c.try_clone().unwrap());
        let mut line = String::new();
        while !line.starts_with("data: ") {
            line.clear();
            assert!(
                r.read_line(&mut line).unwrap() > 0,
                "closed before any event"
            );
        }
    } else {
        let t = Instant::now();
        while s.metrics()["anvil_inflight_requests"] < 1.0 {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "request never arrived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    c.shutdown(std::net::Shutdown::Both).unwrap();
}

#[test]
fn a_client_leaving_stops_its_generation() {
    let s = Server::start(wide(), &[]);
    // 16 samples of 900 tokens: seconds of work if nothing stops it.
    let (n, max_tokens) = (16, 900);
    let mut generated = 0.0;
    for stream in [true, false] {
        abandon(
            &s,
            &json!({"prompt": "def", "max_tokens": max_tokens, "n": n, "temperature": 1.0,
                    "seed": 3, "stream": stream, "ignore_eos": true}),
        );
        // The decoding thread is free again long before the job would be done.
        s.ok(&json!({"prompt": "x", "max_tokens": 2}));
        let m = s.metrics();
        let this = m["anvil_generated_tokens_total"] - generated - 2.0;
        generated = m["anvil_generated_tokens_total"];
        eprintln!("stream {stream}: {this} tokens");
        assert!(
            this < (n * max_tokens / 8) as f64,
            "stream {stream}: {this} tokens generated"
        );
    }
    let m = s.metrics();
    assert_eq!(m["anvil_cancelled_requests_total"], 2.0);
    assert_eq!(m["anvil_inflight_requests"], 0.0);
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_0() {
    let mut s = Server::start(wide(), &[]);
    let (signalled, (plain, plain_done), (streamed, streamed_done)) = std::thread::scope(|sc| {
        let plain = sc.spawn(|| (s.complete(&slow_request(200)), Instant::now()));
        let streamed = sc.spawn(|| {
            let mut req = slow_request(50);
            req["stream"] = json!(true);
            (collect_stream(&s.stream(&req)), Instant::now())
        });
        // Both received (one decoding, one queued behind it) before the signal.
        let t = Instant::now();
        while s.metrics()["anvil_inflight_requests"] < 2.0 {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "requests never arrived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(&s.child, libc::SIGTERM);
        let signalled = Instant::now();
        (
            signalled,
            plain.join().unwrap_or_else(|_| panic!("{}", s.stderr())),
            streamed.join().unwrap_or_else(|_| panic!("{}", s.stderr())),
        )
    });
    let ((status, plain), (text, finish)) = (plain, streamed);
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["choices"].as_array().unwrap().len(), 4);
    // Complete answers: every sample has all its tokens.
    assert_eq!(plain["usage"]["completion_tokens"], 4 * 200);
    assert_eq!(text.len(), 4);
    assert!(finish.values().all(|f| f == "length"), "{finish:?}");
    // At least the one queued behind the other was still to be decoded when the signal came.
    assert!(
        plain_done.max(streamed_done) > signalled,
        "both answered before the signal"
    );
    let exit = s.wait(Duration::from_secs(60));
    assert_eq!(exit.code(), Some(0), "{}", s.stderr());
    assert!(s.stderr().contains("shutting down"), "{}", s.stderr());
    // Gone: nothing listens any more.
    assert!(TcpStream::connect(s.addr()).is_err());
}

#[test]
fn concurrent_requests_share_forward_passes_and_answer_as_alone() {
    let s = Server::start(wide(), &[]);
    let req = |i: usize| {
        json!({"prompt": format!("value_{i} ="), "max_tokens": 24, "temperature": 0.8,
               "seed": i, "n": 1 + i % 2, "ignore_eos": true})
    };
    // Alone, one after the other: one request per batch.
    let alone: Vec<Vec<String>> = (0..6).map(|i| texts(&s.ok(&req(i)))).collect();
    let m = s.metrics();
    assert_eq!(m["anvil_decode_batches_total"], 6.0);
    // All at once: they wait for each other and are decoded together.
    let together: Vec<Vec<String>> = std::thread::scope(|sc| {
        let (s, req) = (&s, &req);
        let hs: Vec<_> = (0..6)
            .map(|i| sc.spawn(move || texts(&s.ok(&req(i)))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        together, alone,
        "a request's samples do not depend on its batch"
    );
    let m = s.metrics();
    let batches = m["anvil_decode_batches_total"] - 6.0;
    assert_eq!(m["anvil_batched_requests_total"], 12.0);
    assert!(
        batches < 6.0,
        "6 concurrent requests took {batches} batches"
    );
}
