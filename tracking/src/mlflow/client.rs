//! A small blocking client for MLflow's REST API 2.0: only the calls a run mirror needs.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The server could not be reached or answered 5xx / 429: worth retrying later.
    #[error("MLflow server {uri}: {msg}")]
    Unavailable { uri: String, msg: String },
    /// The server refused the request (4xx): retrying the same request will not help.
    #[error("MLflow server {uri}: {what} refused ({status} {code}): {msg}")]
    Rejected {
        uri: String,
        what: String,
        status: u16,
        code: String,
        msg: String,
    },
    #[error("MLflow server {uri}: {msg}")]
    Other { uri: String, msg: String },
}

impl MlflowError {
    pub fn is_transient(&self) -> bool {
        matches!(self, MlflowError::Unavailable { .. })
    }
}

pub type Result<T> = std::result::Result<T, MlflowError>;

pub struct Client {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

/// Percent-encode one URL path segment (RFC 3986 unreserved characters pass through).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Client {
    /// `uri` is the server's base (`http://host:5000`, maybe with a path prefix). Credentials
    /// come from the environment MLflow's own clients read: `MLFLOW_TRACKING_TOKEN` (bearer) or
    /// `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD` (basic). They are never written
    /// to the run folder.
    pub fn new(uri: &str, timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .http_status_as_error(false)
            .user_agent(concat!("anvil-tracking/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let auth = if let Some(t) = env("MLFLOW_TRACKING_TOKEN") {
            Some(format!("Bearer {t}"))
        } else if let (Some(u), Some(p)) = (
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
        ) {
            Some(format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
        } else {
            None
        };
        Client {
            base: uri.trim_end_matches('/').to_string(),
            agent,
            auth,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn err_unavailable(&self, e: impl std::fmt::Display) -> MlflowError {
        MlflowError::Unavailable {
            uri: self.base.clone(),
            msg: e.to_string(),
        }
    }

    /// Turn a response into JSON, classifying failures as transient or not.
    fn finish(
        &self,
        what: &str,
        resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut resp = resp.map_err(|e| self.err_unavailable(format!("{what}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| self.err_unavailable(format!("{what}: reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Ok(json!({}));
            }
            return serde_json::from_str(&text).map_err(|e| MlflowError::Other {
                uri: self.base.clone(),
                msg: format!("{what}: answer is not JSON ({e}): {}", snippet(&text)),
            });
        }
        if status >= 500 || status == 429 || status == 408 {
            return Err(self.err_unavailable(format!("{what}: HTTP {status}: {}", snippet(&text))));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Err(MlflowError::Rejected {
            uri: self.base.clone(),
            what: what.to_string(),
            status,
            code: v["error_code"].as_str().unwrap_or("").to_string(),
            msg: v["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| snippet(&text)),
        })
    }

    fn with_auth<B>(&self, rb: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => rb.header("Authorization", a),
            None => rb,
        }
    }

    pub fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value> {
        let mut rb = self.with_auth(self.agent.get(format!("{}/api/2.0/{endpoint}", self.base)));
        for (k, v) in query {
            rb = rb.query(*k, *v);
        }
        self.finish(endpoint, rb.call())
    }

    pub fn post(&self, endpoint: &str, body: &Value) -> Result<Value> {
        let rb = self
            .with_auth(self.agent.post(format!("{}/api/2.0/{endpoint}", self.base)))
            .header("Content-Type", "application/json");
        self.finish(endpoint, rb.send(body.to_string()))
    }

    /// The id of experiment `name`, created if missing.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        match self.get(
            "mlflow/experiments/get-by-name",
            &[("experiment_name", name)],
        ) {
            Ok(v) => return id_of(&v["experiment"]["experiment_id"], self),
            Err(MlflowError::Rejected { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => {}
            Err(e) => return Err(e),
        }
        match self.post("mlflow/experiments/create", &json!({ "name": name })) {
            Ok(v) => id_of(&v["experiment_id"], self),
            // Someone else created it between our two calls.
            Err(MlflowError::Rejected { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => {
                let v = self.get(
                    "mlflow/experiments/get-by-name",
                    &[("experiment_name", name)],
                )?;
                id_of(&v["experiment"]["experiment_id"], self)
            }
            Err(e) => Err(e),
        }
    }

    /// The run in `experiment_id` tagged `anvil.uid = uid`, if any: (run id, artifact uri).
    pub fn find_run(&self, experiment_id: &str, uid: &str) -> Result<Option<(String, String)>> {
        let v = self.post(
            "mlflow/runs/search",
            &json!({
                "experiment_ids": [experiment_id],
                "filter": format!("tags.`anvil.uid` = '{uid}'"),
                "max_results": 1,
            }),
        )?;
        Ok(v["runs"]
            .as_array()
            .and_then(|r| r.first())
            .map(|r| run_ids(&r["info"])))
    }

    /// `runs/create`: (run id, artifact uri).
    pub fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        start_time: u64,
        user: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<(String, String)> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let v = self.post(
            "mlflow/runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": name,
                "start_time": start_time,
                "user_id": user.unwrap_or(""),
                "tags": tags,
            }),
        )?;
        let (id, uri) = run_ids(&v["run"]["info"]);
        if id.is_empty() {
            return Err(MlflowError::Other {
                uri: self.base.clone(),
                msg: format!(
                    "runs/create: no run id in the answer: {}",
                    snippet(&v.to_string())
                ),
            });
        }
        Ok((id, uri))
    }

    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Value],
        params: &[Value],
        tags: &[Value],
    ) -> Result<()> {
        self.post(
            "mlflow/runs/log-batch",
            &json!({"run_id": run_id, "metrics": metrics, "params": params, "tags": tags}),
        )?;
        Ok(())
    }

    pub fn update_run(&self, run_id: &str, status: &str, end_time: Option<u64>) -> Result<()> {
        let mut body = json!({"run_id": run_id, "status": status});
        if let Some(t) = end_time {
            body["end_time"] = t.into();
        }
        self.post("mlflow/runs/update", &body)?;
        Ok(())
    }

    /// Upload a file through the server's artifact proxy to `<artifact_path>/<rel>`, where
    /// `artifact_path` is the run's `mlflow-artifacts:` URI without its scheme and host.
    pub fn upload_artifact(&self, artifact_path: &str, rel: &str, file: &Path) -> Result<()> {
        let segments: Vec<String> = artifact_path
            .split('/')
            .chain(rel.split('/'))
            .filter(|s| !s.is_empty())
            .map(encode_segment)
            .collect();
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            segments.join("/")
        );
        let f = std::fs::File::open(file).map_err(|e| MlflowError::Other {
            uri: self.base.clone(),
            msg: format!("{}: {e}", file.display()),
        })?;
        let rb = self
            .with_auth(self.agent.put(url))
            .header("Content-Type", "application/octet-stream");
        self.finish("mlflow-artifacts upload", rb.send(f))?;
        Ok(())
    }
}

fn id_of(v: &Value, c: &Client) -> Result<String> {
    v.as_str()
        .map(String::from)
        .ok_or_else(|| MlflowError::Other {
            uri: c.base.clone(),
            msg: "experiment answer without experiment_id".into(),
        })
}

fn run_ids(info: &Value) -> (String, String) {
    (
        info["run_id"].as_str().unwrap_or("").to_string(),
        info["artifact_uri"].as_str().unwrap_or("").to_string(),
    )
}

/// The first 200 characters of a server answer, on one line, for error messages.
fn snippet(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a b@c.json"), "a%20b%40c.json");
    }
}
