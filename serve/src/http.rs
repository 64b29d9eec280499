//! Routes and handlers: `/v1/completions` (plain JSON or server-sent events), `/v1/models`,
//! `/healthz`, `/metrics`, and OpenAI-shaped errors for everything else.

use crate::api::{self, ApiError, Choice, Completion, CompletionRequest, Prepared, Usage};
use crate::engine::{Job, Msg, Queue, Submit};
use crate::metrics::{Inflight, Metrics};
use anvil_infer::{Generation, Generator};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// What every handler shares.
pub struct AppState {
    pub generator: Arc<Generator>,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    pub model: String,
    /// Unix time the server started (the model's `created`).
    pub started: u64,
    /// Numbers completion ids: `cmpl-<start time>-<counter>`.
    pub next_id: AtomicU64,
}

type Shared = Arc<AppState>;

pub fn router(state: Shared, max_body: usize) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, json_response(self.to_json())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn axum_json(v: &Value) -> Response {
    json_response(v.to_string())
}

/// Counts every answer by endpoint and status. Paths outside the API are one label, so random
/// URLs cannot grow the metrics without bound.
async fn count(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let endpoint = match req.uri().path() {
        "/v1/completions" => "/v1/completions",
        p if p == "/v1/models" || p.starts_with("/v1/models/") => "/v1/models",
        "/healthz" => "/healthz",
        "/metrics" => "/metrics",
        _ => "other",
    };
    let r = next.run(req).await;
    s.metrics.count_request(endpoint, r.status().as_u16());
    r
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no such endpoint: {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

async fn healthz() -> Response {
    axum_json(&json!({"status": "ok"}))
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

fn model_card(s: &AppState) -> Value {
    json!({"id": s.model, "object": "model", "created": s.started, "owned_by": "anvil"})
}

async fn models(State(s): State<Shared>) -> Response {
    axum_json(&json!({"object": "list", "data": [model_card(&s)]}))
}

async fn model(State(s): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if id != s.model {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "the model `{id}` does not exist; this server serves `{}`",
                s.model
            ),
        )
        .with_code("model_not_found"));
    }
    Ok(axum_json(&model_card(&s)))
}

/// The parts every answer to one completion request repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    /// A `text_completion` object as JSON.
    fn completion(&self, choices: Vec<Choice<'_>>, usage: Option<Usage>) -> String {
        let c = Completion {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        serde_json::to_string(&c).expect("plain fields serialize")
    }
}

fn usage(prompt_tokens: usize, generations: &[Generation]) -> Usage {
    let completion_tokens: usize = generations
        .iter()
        .flat_map(|g| &g.completions)
        .map(|c| c.completion_tokens())
        .sum();
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    }
}

async fn completions(State(s): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let guard = s.metrics.start();
    match accept(&s, body).await {
        Ok((req, prepared, rx)) => {
            let head = Head {
                id: format!("cmpl-{}-{}", s.started, s.next_id.fetch_add(1, Relaxed)),
                created: unix_now(),
                model: s.model.clone(),
            };
            if req.stream {
                stream(head, req, prepared, rx, guard)
            } else {
                respond(head, &req, &prepared, rx).await.into_response()
            }
        }
        Err(e) => e.into_response(),
    }
}

/// Everything that can fail before decoding starts: the body, its fields, the prompt's length and
/// room in the queue. Once this returns, the job is queued.
async fn accept(
    s: &Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<(CompletionRequest, Prepared, UnboundedReceiver<Msg>), ApiError> {
    let body = body.map_err(|r| {
        let status = r.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than this server accepts (--max-body)".to_string()
        } else {
            r.body_text()
        };
        ApiError::new(status, "invalid_request_error", msg)
    })?;
    let req = api::parse(&body, &s.model)?;
    // Refuse before tokenizing when the queue is already full, so a flood costs little CPU; the
    // submit below still decides.
    if s.metrics.queue_depth.load(Relaxed) >= s.metrics.queue_capacity.load(Relaxed) {
        return Err(queue_full());
    }
    let generator = s.generator.clone();
    let (req, prepared) = tokio::task::spawn_blocking(move || {
        let p = api::prepare(&generator, &req);
        (req, p)
    })
    .await
    .map_err(|e| internal(format!("tokenizing the prompt failed: {e}")))?;
    let prepared = prepared?;
    let params = req.generate_params(&s.generator);
    params.validate().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            e.to_string(),
        )
    })?;
    let (tx, rx) = unbounded_channel();
    let job = Job {
        inputs: prepared.inputs.clone(),
        params,
        stream: req.stream,
        reply: tx,
    };
    match s.queue.submit(job) {
        Ok(()) => Ok((req, prepared, rx)),
        Err(Submit::Full) => Err(queue_full()),
        Err(Submit::Stopped) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "the server is shutting down",
        )),
    }
}

fn queue_full() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "server_overloaded",
        "the server is busy: its queue of requests is full; retry later",
    )
    .with_code("queue_full")
}

fn internal(msg: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", msg)
}

/// Waits for the whole job and answers one JSON object.
async fn respond(
    head: Head,
    req: &CompletionRequest,
    prepared: &Prepared,
    mut rx: UnboundedReceiver<Msg>,
) -> Result<Response, ApiError> {
    let generations = loop {
        match rx.recv().await {
            Some(Msg::Finished(res)) => break res.map_err(internal)?,
            Some(_) => {}
            None => return Err(internal("the decoding thread stopped".into())),
        }
    };
    let mut choices = Vec::new();
    for (p, g) in generations.iter().enumerate() {
        for (i, c) in g.completions.iter().enumerate() {
            let echo = &prepared.echoes[p];
            choices.push(Choice {
                text: if echo.is_empty() {
                    Cow::Borrowed(&c.text)
                } else {
                    Cow::Owned(format!("{echo}{}", c.text))
                },
                index: p * req.n + i,
                logprobs: None,
                finish_reason: Some(c.finish_reason.openai()),
            });
        }
    }
    let u = usage(prepared.prompt_tokens(), &generations);
    Ok(json_response(head.completion(choices, Some(u))))
}

/// A streamed answer in progress.
struct Streaming {
    head: Head,
    rx: Option<UnboundedReceiver<Msg>>,
    /// Events ready to send before reading more from the decoding thread.
    pending: VecDeque<String>,
    include_usage: bool,
    prompt_tokens: usize,
    /// Dropped with the stream, whether it ends or the client goes away.
    _guard: Inflight,
}

impl Streaming {
    fn event(&mut self, json: &str) {
        self.pending.push_back(format!("data: {json}\n\n"));
    }

    fn choice(&mut self, index: usize, text: &str, finish_reason: Option<&'static str>) {
        let choice = Choice {
            text: Cow::Borrowed(text),
            index,
            logprobs: None,
            finish_reason,
        };
        let c = self.head.completion(vec![choice], None);
        self.event(&c);
    }

    /// Turns one message into events; false once the job is over.
    fn on(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Delta { index, text } => self.choice(index, &text, None),
            Msg::Done { index, finish } => self.choice(index, "", Some(finish.openai())),
            Msg::Finished(Ok(generations)) => {
                if self.include_usage {
                    let u = usage(self.prompt_tokens, &generations);
                    let c = self.head.completion(Vec::new(), Some(u));
                    self.event(&c);
                }
                self.pending.push_back("data: [DONE]\n\n".into());
                return false;
            }
            Msg::Finished(Err(e)) => {
                // The status line is long gone: report in-band, as OpenAI does.
                self.event(&internal(e).to_json());
                self.pending.push_back("data: [DONE]\n\n".into());
                return false;
            }
        }
        true
    }
}

/// Answers `text/event-stream`: one `data:` event per piece of final text, one per finished
/// choice (with `finish_reason`), optionally usage, then `data: [DONE]`. Dropping the body (the
/// client went away) drops the receiver, which stops the job.
fn stream(
    head: Head,
    req: CompletionRequest,
    prepared: Prepared,
    rx: UnboundedReceiver<Msg>,
    guard: Inflight,
) -> Response {
    let mut st = Streaming {
        head,
        rx: Some(rx),
        pending: VecDeque::new(),
        include_usage: req.include_usage,
        prompt_tokens: prepared.prompt_tokens(),
        _guard: guard,
    };
    if req.echo {
        for (p, echo) in prepared.echoes.iter().enumerate() {
            for i in (0..req.n).filter(|_| !echo.is_empty()) {
                st.choice(p * req.n + i, echo, None);
            }
        }
    }
    let events = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                return Some((Ok::<_, Infallible>(Bytes::from(e)), st));
            }
            let rx = st.rx.as_mut()?;
            match rx.recv().await {
                Some(msg) => {
                    if !st.on(msg) {
                        st.rx = None;
                    }
                }
                None => {
                    st.event(&internal("the decoding thread stopped".into()).to_json());
                    st.rx = None;
                }
            }
        }
    });
    let mut r = Response::new(Body::from_stream(events));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
