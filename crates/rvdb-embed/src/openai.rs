//! The `openai` provider: any OpenAI-compatible embeddings endpoint (`POST {base_url}/v1/embeddings`: OpenAI,
//! Ollama, vLLM, TEI, LiteLLM, or another rvdb), over HTTP/1.1 with rustls for `https`.
//!
//! - Batching: a call's texts go out in requests of at most `batch_size` texts, up to `max_concurrency` requests
//!   at a time for the whole process (a semaphore shared by every caller), answers put back in input order by
//!   their `index`.
//! - Failures: every request has `timeout`; a timeout, a broken connection, a 429 or a 5xx is retried `retries`
//!   times with exponential backoff (a `Retry-After` of up to 30 s is honoured), any other status fails at once
//!   with the provider's own message. An answer that is not what the API promises (a missing or extra vector,
//!   vectors of different lengths, numbers that are not finite) is an error, never a silently wrong vector.
//! - The API key comes from the environment or a file ([`ApiKey`]); it is sent as a bearer token and never
//!   printed: its `Debug` is redacted and no error message carries request headers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;

use crate::EmbedError;

/// Longest provider message quoted in an error.
const MAX_QUOTED: usize = 300;

/// An API key: sent as `Authorization: Bearer …`, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Option<ApiKey> {
        let key = key.into().trim().to_string();
        (!key.is_empty()).then_some(ApiKey(key))
    }

    /// The key in `file` (its first line), else in the first of `vars` that is set; `None` if neither has one.
    pub fn from_file_or_env(file: Option<&Path>, vars: &[&str]) -> Result<Option<ApiKey>, EmbedError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                EmbedError::InvalidInput(format!("cannot read the API key file {}: {e}", path.display()))
            })?;
            let key = ApiKey::new(text.lines().next().unwrap_or_default());
            if key.is_none() {
                return Err(EmbedError::InvalidInput(format!("the API key file {} is empty", path.display())));
            }
            return Ok(key);
        }
        Ok(vars.iter().find_map(|v| std::env::var(v).ok().and_then(ApiKey::new)))
    }
}

/// Where and how to reach the provider.
#[derive(Debug, Clone)]
pub struct OpenAiOptions {
    /// `http(s)://host[:port][/prefix]`; requests go to `{base_url}/v1/embeddings` (or `{base_url}/embeddings`
    /// when it already ends in `/v1`).
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    /// Texts per request.
    pub batch_size: usize,
    /// Requests in flight at once, for the whole process.
    pub max_concurrency: usize,
    /// Deadline of one request (connect, send, answer).
    pub timeout: Duration,
    /// Retries of a request that timed out, broke, or got 429 / 5xx.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one (at most 10 s).
    pub backoff: Duration,
}

impl Default for OpenAiOptions {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com".into(),
            api_key: None,
            batch_size: 128,
            max_concurrency: 4,
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Vectors for a call's texts, in order, and the tokens the provider counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client of one OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    endpoint: Uri,
    /// The endpoint as errors name it (no credentials, no query).
    shown: String,
    options: OpenAiOptions,
    http: Client<Https, Full<Bytes>>,
    permits: Arc<tokio::sync::Semaphore>,
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Datum>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Datum {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: usize,
}

/// One failed attempt: whether another may succeed, and the error if none does.
struct Failed {
    retry: bool,
    retry_after: Option<Duration>,
    error: EmbedError,
}

impl OpenAiClient {
    pub fn new(options: OpenAiOptions) -> Result<OpenAiClient, EmbedError> {
        let base = options.base_url.trim_end_matches('/');
        let path = if base.ends_with("/v1") { "/embeddings" } else { "/v1/embeddings" };
        let endpoint: Uri = format!("{base}{path}")
            .parse()
            .map_err(|e| EmbedError::InvalidInput(format!("embedding provider URL {base:?}: {e}")))?;
        match endpoint.scheme_str() {
            Some("http") | Some("https") if endpoint.host().is_some() => {}
            _ => {
                return Err(EmbedError::InvalidInput(format!(
                    "embedding provider URL {base:?}: give http(s)://host[:port][/prefix]"
                )));
            }
        }
        if endpoint.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(EmbedError::InvalidInput(
                "embedding provider URL: credentials in the URL are not accepted; give the API key by file or \
                 environment"
                    .into(),
            ));
        }
        if options.batch_size == 0 || options.max_concurrency == 0 {
            return Err(EmbedError::InvalidInput("batch size and concurrency must be at least 1".into()));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| EmbedError::InvalidInput(format!("cannot load the system's root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        let shown = format!(
            "{}://{}{}",
            endpoint.scheme_str().unwrap_or("http"),
            endpoint.authority().map_or("", |a| a.as_str()),
            endpoint.path()
        );
        let permits = Arc::new(tokio::sync::Semaphore::new(options.max_concurrency));
        Ok(OpenAiClient { endpoint, shown, options, http, permits })
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.shown
    }

    /// One vector per text with `model`, in order (see the module docs for batching and failures).
    pub async fn embed(&self, model: &str, texts: &[String]) -> Result<Embedded, EmbedError> {
        let mut batches = tokio::task::JoinSet::new();
        for (i, batch) in texts.chunks(self.options.batch_size).enumerate() {
            let (me, model, batch) = (self.clone(), model.to_string(), batch.to_vec());
            batches.spawn(async move {
                let permit = me.permits.clone().acquire_owned().await;
                let out = me.request(&model, &batch).await;
                drop(permit);
                (i, out)
            });
        }
        let mut parts: Vec<Option<(Vec<Vec<f32>>, usize)>> = vec![None; texts.len().div_ceil(self.options.batch_size)];
        while let Some(joined) = batches.join_next().await {
            let (i, out) = joined.map_err(|e| EmbedError::Inference(format!("embedding request task: {e}")))?;
            match out {
                Ok(part) => parts[i] = Some(part),
                Err(e) => {
                    batches.abort_all();
                    return Err(e);
                }
            }
        }
        let mut embedded = Embedded { vectors: Vec::with_capacity(texts.len()), tokens: 0 };
        for (vectors, tokens) in parts.into_iter().flatten() {
            embedded.vectors.extend(vectors);
            embedded.tokens += tokens;
        }
        if let Some(first) = embedded.vectors.first()
            && let Some(other) = embedded.vectors.iter().find(|v| v.len() != first.len())
        {
            return Err(self.bad(format!("vectors of {} and {} dimensions in one answer", first.len(), other.len())));
        }
        Ok(embedded)
    }

    /// One request's texts, retried as the module docs say.
    async fn request(&self, model: &str, texts: &[String]) -> Result<(Vec<Vec<f32>>, usize), EmbedError> {
        let body = serde_json::json!({"input": texts, "model": model, "encoding_format": "float"}).to_string();
        let mut delay = self.options.backoff;
        let mut attempt = 0;
        loop {
            let failed = match tokio::time::timeout(self.options.timeout, self.attempt(&body, texts.len())).await {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(f)) => f,
                Err(_) => Failed {
                    retry: true,
                    retry_after: None,
                    error: EmbedError::Unavailable(format!(
                        "embedding provider at {} did not answer within {} ms",
                        self.shown,
                        self.options.timeout.as_millis()
                    )),
                },
            };
            if !failed.retry || attempt >= self.options.retries {
                return Err(match failed.error {
                    EmbedError::Unavailable(m) if attempt > 0 => {
                        EmbedError::Unavailable(format!("{m} (after {} attempts)", attempt + 1))
                    }
                    e => e,
                });
            }
            attempt += 1;
            let wait = failed.retry_after.unwrap_or(delay).min(Duration::from_secs(30));
            tracing::info!(provider = %self.shown, attempt, wait_ms = wait.as_millis() as u64, error = %failed.error, "embedding request failed; retrying");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    async fn attempt(&self, body: &str, expected: usize) -> Result<(Vec<Vec<f32>>, usize), Failed> {
        let mut req =
            Request::builder().method(Method::POST).uri(self.endpoint.clone()).header(CONTENT_TYPE, "application/json");
        if let Some(key) = &self.options.api_key {
            req = req.header(AUTHORIZATION, format!("Bearer {}", key.0));
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).map_err(|e| Failed {
            retry: false,
            retry_after: None,
            error: EmbedError::InvalidInput(format!("cannot build the request: {e}")),
        })?;
        let unreachable = |what: String| Failed {
            retry: true,
            retry_after: None,
            error: EmbedError::Unavailable(format!("embedding provider at {} {what}", self.shown)),
        };
        let resp = self.http.request(req).await.map_err(|e| unreachable(format!("cannot be reached: {e}")))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes =
            resp.into_body().collect().await.map_err(|e| unreachable(format!("broke off its answer: {e}")))?.to_bytes();
        if !status.is_success() {
            let retry = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            let message = provider_message(&bytes);
            let error = if retry {
                EmbedError::Unavailable(format!(
                    "embedding provider at {} answered {}: {message}",
                    self.shown,
                    status.as_u16()
                ))
            } else {
                EmbedError::Provider { url: self.shown.clone(), status: status.as_u16(), message }
            };
            return Err(Failed { retry, retry_after, error });
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| Failed {
            retry: false,
            retry_after: None,
            error: self.bad(format!("not an embeddings answer: {e}")),
        })?;
        let bad = |reason: String| Failed { retry: false, retry_after: None, error: self.bad(reason) };
        if answer.data.len() != expected {
            return Err(bad(format!("{} vectors for {expected} texts", answer.data.len())));
        }
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; expected];
        for d in answer.data {
            let slot = vectors.get_mut(d.index).ok_or_else(|| bad(format!("index {} out of range", d.index)))?;
            if slot.is_some() {
                return Err(bad(format!("index {} twice", d.index)));
            }
            if d.embedding.is_empty() || d.embedding.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("the vector of text {} is empty or not finite", d.index)));
            }
            *slot = Some(d.embedding);
        }
        let tokens = answer.usage.map_or(0, |u| u.prompt_tokens);
        Ok((vectors.into_iter().flatten().collect(), tokens))
    }

    fn bad(&self, reason: String) -> EmbedError {
        EmbedError::BadAnswer { url: self.shown.clone(), reason }
    }
}

/// The provider's error message (`{"error": {"message"}}` as OpenAI sends it, rvdb's `{"error": {"code",
/// "message"}}`, or the body's text), clipped.
fn provider_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str().or_else(|| v["error"].as_str()).or_else(|| v["message"].as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let mut clipped: String = message.chars().take(MAX_QUOTED).collect();
    if clipped.len() < message.len() {
        clipped.push('…');
    }
    if clipped.is_empty() { "(no message)".into() } else { clipped }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_never_shown() {
        let key = ApiKey::new("sk-secret").unwrap_or_else(|| ApiKey("x".into()));
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        let options = OpenAiOptions { api_key: Some(key), ..OpenAiOptions::default() };
        assert!(!format!("{options:?}").contains("sk-secret"));
        assert!(ApiKey::new("  ").is_none());
    }

    #[test]
    fn keys_come_from_a_file_first() {
        let dir = std::env::temp_dir().join(format!("rvdb-key-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("key");
        let _ = std::fs::write(&file, "sk-from-file\nsecond line\n");
        let key = ApiKey::from_file_or_env(Some(&file), &["RVDB_TEST_NO_SUCH_VAR"]);
        assert_eq!(key.ok().flatten(), ApiKey::new("sk-from-file"));
        let _ = std::fs::write(&file, "\n");
        assert!(ApiKey::from_file_or_env(Some(&file), &[]).is_err_and(|e| e.to_string().contains("empty")));
        assert!(ApiKey::from_file_or_env(Some(&dir.join("absent")), &[]).is_err());
        assert!(ApiKey::from_file_or_env(None, &["RVDB_TEST_NO_SUCH_VAR"]).is_ok_and(|k| k.is_none()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn endpoints_are_checked_and_shown_without_secrets() {
        let at = |url: &str| OpenAiClient::new(OpenAiOptions { base_url: url.into(), ..OpenAiOptions::default() });
        assert_eq!(
            at("http://127.0.0.1:8080").map(|c| c.endpoint().to_string()).ok().as_deref(),
            Some("http://127.0.0.1:8080/v1/embeddings")
        );
        assert_eq!(
            at("https://api.example.com/v1/").map(|c| c.endpoint().to_string()).ok().as_deref(),
            Some("https://api.example.com/v1/embeddings")
        );
        assert_eq!(
            at("http://h/proxy").map(|c| c.endpoint().to_string()).ok().as_deref(),
            Some("http://h/proxy/v1/embeddings")
        );
        assert!(at("ftp://h").is_err());
        assert!(at("no scheme").is_err());
        assert!(at("https://user:pw@h").is_err_and(|e| !e.to_string().contains("pw")));
    }

    #[test]
    fn provider_messages_are_read_and_clipped() {
        assert_eq!(provider_message(br#"{"error": {"message": "model not found", "type": "x"}}"#), "model not found");
        assert_eq!(
            provider_message(br#"{"error": {"code": "not_found", "message": "no such model"}}"#),
            "no such model"
        );
        assert_eq!(provider_message(b"Bad Gateway"), "Bad Gateway");
        assert_eq!(provider_message(b""), "(no message)");
        assert!(provider_message("x".repeat(1000).as_bytes()).chars().count() <= MAX_QUOTED + 1);
    }
}
