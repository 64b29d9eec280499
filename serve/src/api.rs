//! The OpenAI completions request as this server reads it, and the error body it answers with.
//!
//! Requests are read field by field from a JSON object rather than derived with serde, so a
//! wrong type or impossible value names its field (`param`) in a message a person can act on.
//! Unknown fields are ignored, as OpenAI does; known OpenAI fields this server cannot honour
//! (`logprobs`, `best_of` ≠ `n`, penalties, `logit_bias`) are refused rather than silently ignored.
//! Anvil's extensions: `top_k`, `repetition_penalty`, `ignore_eos` (as vLLM has them) and
//! `token_healing` (default: the checkpoint's generation_config.json, else true).

use anvil_infer::{GenerateParams, Generator, SamplingParams};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// OpenAI's default `max_tokens` for completions.
pub const DEFAULT_MAX_TOKENS: u64 = 16;
/// OpenAI's limit on stop sequences.
pub const MAX_STOP: usize = 4;
/// Most choices (prompts × `n`) one request may ask for: they are decoded as one batch per prompt
/// and their KV caches held at once.
pub const MAX_CHOICES: usize = 64;

/// An error answered as OpenAI's `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// 400 `invalid_request_error` about `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Detail<'a>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        let body = Body {
            error: Detail {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        serde_json::to_string(&body).expect("plain fields serialize")
    }
}

/// A `text_completion` object: the whole answer, or one chunk of a stream. Structs rather than
/// `json!` keep OpenAI's field order, which people reading `curl` output expect.
#[derive(Debug, Serialize)]
pub struct Completion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<Choice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Serialize)]
pub struct Choice<'a> {
    pub text: Cow<'a, str>,
    pub index: usize,
    /// Always null: per-token log-probabilities are not offered.
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

/// One prompt as sent: text, or token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// A validated completions request.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub prompts: Vec<Prompt>,
    /// Text after the insertion point: the prompt becomes a fill-in-the-middle prompt.
    pub suffix: Option<String>,
    pub max_tokens: usize,
    pub n: usize,
    pub sampling: SamplingParams,
    /// Whether the client chose the seed (otherwise each request draws one).
    pub seeded: bool,
    pub stop: Vec<String>,
    pub stream: bool,
    /// Send a last chunk with `usage` before `[DONE]` (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Prepend the prompt to each choice's text.
    pub echo: bool,
    /// Keep going past the end-of-text token (vLLM's extension; benchmarks and tests).
    pub ignore_eos: bool,
    /// Back off the prompt's last token and let the model rewrite it (Anvil's extension);
    /// `None`: what the checkpoint's generation_config.json says (SFT checkpoints: off), else on.
    pub token_healing: Option<bool>,
}

impl CompletionRequest {
    /// The decoding parameters, with `generator`'s defaults where the request gave none.
    pub fn generate_params(&self, generator: &Generator) -> GenerateParams {
        GenerateParams {
            max_new_tokens: self.max_tokens,
            n: self.n,
            sampling: self.sampling.clone(),
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            token_healing: self
                .token_healing
                .unwrap_or_else(|| generator.token_healing(false)),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(key: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid(
        key,
        format!("`{key}` must be {want}, got {}", type_name(got)),
    )
}

/// The fields of one request; `null` counts as absent, as in OpenAI's API.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn number(&self, key: &str) -> Result<Option<f64>, ApiError> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| wrong_type(key, "a number", v)))
            .transpose()
    }

    fn f32_or(&self, key: &str, default: f32) -> Result<f32, ApiError> {
        Ok(self.number(key)?.map_or(default, |x| x as f32))
    }

    /// A non-negative integer.
    fn count(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| match v.as_u64() {
                Some(x) => Ok(x),
                None if v.is_i64() => Err(ApiError::invalid(
                    key,
                    format!("`{key}` must be at least 0, got {v}"),
                )),
                None => Err(wrong_type(key, "an integer", v)),
            })
            .transpose()
    }

    fn bool(&self, key: &str) -> Result<bool, ApiError> {
        self.bool_or(key, false)
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(wrong_type(key, "a boolean", v)),
        }
    }

    fn string(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(wrong_type(key, "a string", v)),
        }
    }
}

/// A token id of a token-id prompt.
fn token_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|t| u32::try_from(t).ok())
}

fn parse_prompt(v: Option<&Value>) -> Result<Vec<Prompt>, ApiError> {
    const WANT: &str = "a string, an array of strings, an array of token ids or an array of \
                        arrays of token ids";
    let bad = |got: &Value| wrong_type("prompt", WANT, got);
    let Some(v) = v else {
        // OpenAI's default prompt is the end-of-text token: an empty prompt here means the same.
        return Ok(vec![Prompt::Text(String::new())]);
    };
    let tokens = |v: &Value| -> Option<Vec<u32>> {
        v.as_array()?
            .iter()
            .map(token_id)
            .collect::<Option<Vec<u32>>>()
    };
    match v {
        Value::String(s) => Ok(vec![Prompt::Text(s.clone())]),
        Value::Array(items) if items.is_empty() => Err(ApiError::invalid(
            "prompt",
            "`prompt` must not be an empty array",
        )),
        Value::Array(items) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(Prompt::Text(s.clone())),
                    other => Err(bad(other)),
                })
                .collect(),
            Value::Number(_) => tokens(v)
                .map(|t| vec![Prompt::Tokens(t)])
                .ok_or_else(|| ApiError::invalid("prompt", "token ids must be integers ≥ 0")),
            Value::Array(_) => items
                .iter()
                .map(|i| match tokens(i) {
                    Some(t) if !t.is_empty() => Ok(Prompt::Tokens(t)),
                    Some(_) => Err(ApiError::invalid(
                        "prompt",
                        "a token-id prompt must not be empty",
                    )),
                    None => Err(bad(i)),
                })
                .collect(),
            other => Err(bad(other)),
        },
        other => Err(bad(other)),
    }
}

fn parse_stop(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let stop = match v {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_type("stop", "a string or an array of strings", i))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong_type("stop", "a string or an array of strings", other)),
    };
    if stop.len() > MAX_STOP {
        return Err(ApiError::invalid(
            "stop",
            format!("at most {MAX_STOP} stop sequences, got {}", stop.len()),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            "stop sequences must not be empty",
        ));
    }
    Ok(stop)
}

/// Parses and checks a request body. `model` is the one model this server serves.
pub fn parse(body: &[u8], model: &str) -> Result<CompletionRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(map) = &value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!(
                "the request body must be a JSON object, got {}",
                type_name(&value)
            ),
        ));
    };
    let f = Fields(map);
    if let Some(m) = f.string("model")?
        && m != model
    {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            param: Some("model".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("the model `{m}` does not exist; this server serves `{model}`"),
            )
        }
        .with_code("model_not_found"));
    }

    let unsupported = |key: &str, hint: &str| {
        ApiError::invalid(
            key,
            format!("`{key}` is not supported by this server{hint}"),
        )
        .with_code("unsupported_parameter")
    };
    if f.get("logprobs").is_some() {
        return Err(unsupported("logprobs", ""));
    }
    for key in ["presence_penalty", "frequency_penalty"] {
        if f.number(key)?.is_some_and(|x| x != 0.0) {
            return Err(unsupported(key, "; use `repetition_penalty`"));
        }
    }
    if f.get("logit_bias")
        .is_some_and(|v| v.as_object().is_none_or(|o| !o.is_empty()))
    {
        return Err(unsupported("logit_bias", ""));
    }

    let prompts = parse_prompt(f.get("prompt"))?;
    let suffix = f.string("suffix")?.map(str::to_string);
    if suffix.is_some() && prompts.iter().any(|p| matches!(p, Prompt::Tokens(_))) {
        return Err(ApiError::invalid(
            "suffix",
            "`suffix` needs a text prompt, not token ids",
        ));
    }
    let max_tokens = f.count("max_tokens")?.unwrap_or(DEFAULT_MAX_TOKENS);
    let n = f.count("n")?.unwrap_or(1);
    if n == 0 {
        return Err(ApiError::invalid("n", "`n` must be at least 1"));
    }
    if let Some(b) = f.count("best_of")?
        && b != n
    {
        return Err(unsupported("best_of", " (other than equal to `n`)"));
    }
    let choices = (n as usize).saturating_mul(prompts.len());
    if choices > MAX_CHOICES {
        return Err(ApiError::invalid(
            "n",
            format!(
                "at most {MAX_CHOICES} choices per request; {} prompts × n = {n} ask for {choices}",
                prompts.len()
            ),
        ));
    }
    // vLLM spells "no top-k" -1; OpenAI has no top-k. Both -1 and 0 mean off here.
    let top_k = match f.get("top_k") {
        Some(v) if v.as_i64() == Some(-1) => 0,
        _ => f.count("top_k")?.unwrap_or(0) as usize,
    };
    let seed = match f.get("seed") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                // OpenAI's seed is a signed 64-bit integer: keep its bits.
                .or_else(|| v.as_i64().map(|s| s as u64))
                .ok_or_else(|| wrong_type("seed", "an integer", v))?,
        ),
    };
    let sampling = SamplingParams {
        temperature: f.f32_or("temperature", 1.0)?,
        top_k,
        top_p: f.f32_or("top_p", 1.0)?,
        repetition_penalty: f.f32_or("repetition_penalty", 1.0)?,
        seed: seed.unwrap_or_else(rand::random),
    };
    if let Err((key, msg)) = sampling.validate() {
        return Err(ApiError::invalid(key, format!("`{key}` {msg}")));
    }
    let stream = f.bool("stream")?;
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => Fields(o).bool("include_usage")?,
        Some(v) => return Err(wrong_type("stream_options", "an object", v)),
    };
    Ok(CompletionRequest {
        prompts,
        suffix,
        max_tokens: usize::try_from(max_tokens).unwrap_or(usize::MAX),
        n: n as usize,
        sampling,
        seeded: seed.is_some(),
        stop: parse_stop(f.get("stop"))?,
        stream,
        include_usage: stream && include_usage,
        echo: f.bool("echo")?,
        ignore_eos: f.bool("ignore_eos")?,
        token_healing: f
            .get("token_healing")
            .map(|_| f.bool("token_healing"))
            .transpose()?,
    })
}

/// The model's input for each prompt and the text `echo` shows for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub inputs: Vec<Vec<u32>>,
    pub echoes: Vec<String>,
}

impl Prepared {
    pub fn prompt_tokens(&self) -> usize {
        self.inputs.iter().map(Vec::len).sum()
    }
}

/// Tokenizes the prompts and checks they fit the model (CPU work: run it off the async runtime).
pub fn prepare(g: &Generator, req: &CompletionRequest) -> Result<Prepared, ApiError> {
    let param = |e: anvil_infer::InferError| ApiError::invalid("prompt", e.to_string());
    let ctx = g.context_length();
    let mut out = Prepared {
        inputs: Vec::with_capacity(req.prompts.len()),
        echoes: Vec::with_capacity(req.prompts.len()),
    };
    for p in &req.prompts {
        let (ids, echo) = match (p, &req.suffix) {
            (Prompt::Text(t), Some(s)) => (g.fim_prompt(t, s).map_err(param)?, t.clone()),
            (Prompt::Text(t), None) => (g.encode(t).map_err(param)?, t.clone()),
            (Prompt::Tokens(ids), _) => {
                let echo = if req.echo {
                    g.decode(ids).map_err(param)?
                } else {
                    String::new()
                };
                (ids.clone(), echo)
            }
        };
        // What the model reads: an empty prompt becomes the end-of-sequence token.
        let ids = g.context_of(&ids);
        let want = ids.len().saturating_add(req.max_tokens);
        if want > ctx {
            return Err(ApiError::invalid(
                "prompt",
                format!(
                    "this model's maximum context length is {ctx} tokens, however you requested \
                     {want} tokens ({} in your prompt; {} for the completion); reduce the prompt \
                     or `max_tokens`",
                    ids.len(),
                    req.max_tokens
                ),
            )
            .with_code("context_length_exceeded"));
        }
        // Token ids outside the vocabulary.
        g.budget(&ids, req.max_tokens).map_err(param)?;
        out.inputs.push(ids);
        out.echoes.push(if req.echo { echo } else { String::new() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> CompletionRequest {
        parse(body.as_bytes(), "m").unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    fn err(body: &str) -> ApiError {
        parse(body.as_bytes(), "m").expect_err(body)
    }

    #[test]
    fn defaults_follow_openai() {
        let r = ok(r#"{"prompt": "def f(", "unknown_field": [1, 2]}"#);
        assert_eq!(r.prompts, vec![Prompt::Text("def f(".into())]);
        assert_eq!((r.max_tokens, r.n, r.stream, r.echo), (16, 1, false, false));
        assert_eq!(r.sampling.temperature, 1.0);
        assert_eq!(r.sampling.top_p, 1.0);
        assert!(!r.seeded && r.stop.is_empty() && r.suffix.is_none());
        assert_eq!(r.token_healing, None, "unset: the checkpoint's default");
        let r = ok(r#"{"model": "m", "prompt": null, "max_tokens": null, "seed": -1}"#);
        assert_eq!(r.prompts, vec![Prompt::Text(String::new())]);
        assert_eq!(r.sampling.seed, u64::MAX);
        assert!(r.seeded);
    }

    #[test]
    fn prompt_shapes() {
        assert_eq!(ok(r#"{"prompt": ["a", "b"]}"#).prompts.len(), 2);
        assert_eq!(
            ok(r#"{"prompt": [1, 2, 3]}"#).prompts,
            vec![Prompt::Tokens(vec![1, 2, 3])]
        );
        assert_eq!(ok(r#"{"prompt": [[1], [2, 3]]}"#).prompts.len(), 2);
        for bad in [
            r#"{"prompt": []}"#,
            r#"{"prompt": 5}"#,
            r#"{"prompt": ["a", 1]}"#,
            r#"{"prompt": [1, -2]}"#,
            r#"{"prompt": [[1], []]}"#,
            r#"{"prompt": [1], "suffix": "x"}"#,
        ] {
            assert_eq!(err(bad).status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"prompt": "x", "temperature": "hot"}"#, "temperature"),
            (r#"{"prompt": "x", "temperature": -0.5}"#, "temperature"),
            (r#"{"prompt": "x", "top_p": 0}"#, "top_p"),
            (r#"{"prompt": "x", "n": 0}"#, "n"),
            (r#"{"prompt": "x", "n": 1000}"#, "n"),
            (r#"{"prompt": "x", "max_tokens": -1}"#, "max_tokens"),
            (r#"{"prompt": "x", "max_tokens": 1.5}"#, "max_tokens"),
            (
                r#"{"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}"#,
                "stop",
            ),
            (r#"{"prompt": "x", "stop": [""]}"#, "stop"),
            (r#"{"prompt": "x", "stop": 3}"#, "stop"),
            (r#"{"prompt": "x", "stream": "yes"}"#, "stream"),
            (r#"{"prompt": "x", "token_healing": 0}"#, "token_healing"),
            (r#"{"prompt": "x", "logprobs": 1}"#, "logprobs"),
            (r#"{"prompt": "x", "best_of": 3}"#, "best_of"),
            (
                r#"{"prompt": "x", "presence_penalty": 0.5}"#,
                "presence_penalty",
            ),
            (
                r#"{"prompt": "x", "repetition_penalty": 0}"#,
                "repetition_penalty",
            ),
        ];
        for (body, param) in cases {
            let e = err(body);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            let body: Value = serde_json::from_str(&e.to_json()).unwrap();
            assert_eq!(body["error"]["type"], "invalid_request_error");
            assert_eq!(body["error"]["param"], param);
        }
        assert_eq!(err("{").status, StatusCode::BAD_REQUEST);
        assert_eq!(err("[1]").status, StatusCode::BAD_REQUEST);
        let e = err(r#"{"model": "gpt-4", "prompt": "x"}"#);
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.code, Some("model_not_found"));
    }

    #[test]
    fn accepted_extras() {
        let r = ok(
            r#"{"prompt": "x", "stop": "\n", "top_k": -1, "best_of": 2, "n": 2, "logprobs": null,
               "presence_penalty": 0, "logit_bias": {}, "stream": true,
               "stream_options": {"include_usage": true}, "user": "u", "echo": true,
               "ignore_eos": true, "token_healing": false}"#,
        );
        assert_eq!(r.token_healing, Some(false));
        assert_eq!(r.stop, vec!["\n".to_string()]);
        assert_eq!((r.sampling.top_k, r.n), (0, 2));
        assert!(r.stream && r.include_usage && r.echo && r.ignore_eos);
        assert!(!ok(r#"{"stream_options": {"include_usage": true}}"#).include_usage);
    }
}
