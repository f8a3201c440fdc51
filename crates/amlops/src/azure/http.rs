//! The transport: one shared `reqwest::Client`, authentication, request ids, timeouts,
//! retries with `Retry-After`, the per-subscription rate limiter and observation.
//!
//! Nothing here logs or stores headers or bodies: a compute PUT carries the TLS key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::auth::TokenProvider;
use super::config::{RetryPolicy, Timeouts};
use super::error::{ApiError, AzureError, RequestIds};
use super::metrics::{ArmObserver, Attempt, StatusClass, method_str};
use super::ratelimit::{RateLimiter, RequestClass};
use super::retry;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("amlops/", env!("CARGO_PKG_VERSION"));

/// One logical ARM call (retried as a whole by [`Transport::send`]). `Debug` omits the
/// body.
pub(crate) struct Request {
    /// Static operation name for logs and metrics.
    pub operation: &'static str,
    pub method: Method,
    pub url: Url,
    /// Serialised JSON body. Never logged, never put in errors.
    pub body: Option<Vec<u8>>,
    /// Whether the call may be retried after a failure where Azure may already have acted
    /// on it (500/502/504, timeout, connection dropped after sending). True for reads and
    /// idempotent writes; false for a compute PUT, which Azure does not treat idempotently
    /// (a second create of the same name fails), so the engine re-observes instead.
    pub retry_ambiguous: bool,
}

impl Request {
    pub fn get(operation: &'static str, url: Url) -> Self {
        Self {
            operation,
            method: Method::GET,
            url,
            body: None,
            retry_ambiguous: true,
        }
    }

    pub fn new(operation: &'static str, method: Method, url: Url) -> Self {
        Self {
            operation,
            method,
            url,
            body: None,
            retry_ambiguous: true,
        }
    }

    /// # Errors
    /// `Config` when `body` cannot be serialised (a map with non-string keys, a failing
    /// `Serialize`); the model's request bodies serialise. No caller branches on it.
    pub fn json<T: Serialize>(mut self, body: &T) -> Result<Self, AzureError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            AzureError::Config(format!(
                "{}: could not serialise the request: {e}",
                self.operation
            ))
        })?;
        self.body = Some(bytes);
        Ok(self)
    }

    pub fn not_idempotent(mut self) -> Self {
        self.retry_ambiguous = false;
        self
    }
}

/// A successful (2xx) response. `Debug` omits headers and body (credentials answers
/// carry kubeconfigs).
pub(crate) struct Response {
    pub operation: &'static str,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// Decodes the body as JSON.
    ///
    /// # Errors
    /// `Decode`, naming the operation, when the body is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, AzureError> {
        serde_json::from_slice(&self.body).map_err(|e| AzureError::decode(self.operation, e))
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("operation", &self.operation)
            .field("method", &self.method)
            .field("path", &self.url.path())
            .field("has_body", &self.body.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("operation", &self.operation)
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The shared HTTP machinery of an `ArmClient`.
pub(crate) struct Transport {
    http: reqwest::Client,
    base: Url,
    tokens: TokenProvider,
    limiter: RateLimiter,
    retry: RetryPolicy,
    timeouts: Timeouts,
    observer: Arc<dyn ArmObserver>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.base.as_str())
            .field("tokens", &self.tokens)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// # Errors
    /// `Config` when reqwest cannot build the client (its TLS backend fails to initialise).
    pub fn new(
        base: Url,
        tokens: TokenProvider,
        limiter: RateLimiter,
        retry: RetryPolicy,
        timeouts: Timeouts,
        observer: Arc<dyn ArmObserver>,
    ) -> Result<Self, AzureError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            // ARM does not redirect; following one could send the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| AzureError::Config(format!("could not build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            tokens,
            limiter,
            retry,
            timeouts,
            observer,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// `base` + `path` (which starts with `/`) + `api-version` and `query`.
    pub fn url(&self, path: &str, api_version: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(None);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", api_version);
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// Checks that a URL Azure handed us (LRO status, `nextLink`), or one read back from a
    /// CR status, points at our ARM endpoint: the bearer token must never be sent elsewhere.
    ///
    /// # Errors
    /// `Config` when `url` does not parse or its origin (scheme, host, port) is not the
    /// configured endpoint's; the verdict stalls with `InvalidConfiguration`.
    pub fn trusted_url(&self, url: &str) -> Result<Url, AzureError> {
        let parsed = Url::parse(url)
            .map_err(|e| AzureError::Config(format!("invalid URL from Azure: {e}")))?;
        if parsed.origin() != self.base.origin() {
            return Err(AzureError::Config(format!(
                "refusing to send credentials to {}: not the configured ARM endpoint {}",
                parsed.origin().ascii_serialization(),
                self.base.origin().ascii_serialization()
            )));
        }
        Ok(parsed)
    }

    /// Sends `req`, retrying transient failures. Returns 2xx responses; any other status
    /// becomes [`AzureError::Api`].
    ///
    /// # Errors
    /// `RateLimited` before sending when the client-side wait would exceed `max_wait`;
    /// `Credential`; after the retries, `Api` for a non-2xx answer (a 401 is retried once with
    /// a fresh token), `Timeout` or `Connection`. A request marked [`Request::not_idempotent`]
    /// returns 500/502/504, timeouts and dropped connections at once. Details:
    /// [`ArmClient`](super::ArmClient#errors-of-every-call).
    pub async fn send(&self, req: Request) -> Result<Response, AzureError> {
        let start = Instant::now();
        let class = RequestClass::of(&req.method);
        let subscription = subscription_of(&req.url);
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let mut retries: u32 = 0;
        let mut reauthenticated = false;
        loop {
            if let Some(sub) = &subscription
                && let Err(retry_after) = self.limiter.acquire(sub, class).await
            {
                return Err(AzureError::RateLimited {
                    operation: req.operation,
                    retry_after,
                });
            }
            let token = self.tokens.token().await?;
            let t0 = Instant::now();
            let outcome = self.attempt(&req, token.expose(), &client_request_id).await;
            let duration = t0.elapsed();

            let (err, wait, ambiguous) = match outcome {
                Ok((status, headers, body)) => {
                    let ids = request_ids(&headers);
                    self.observe(&req, StatusClass::of(status.as_u16()), duration);
                    tracing::debug!(
                        operation = req.operation,
                        method = %req.method,
                        path = req.url.path(),
                        status = status.as_u16(),
                        duration_ms = duration.as_millis() as u64,
                        request_id = ids.request_id.as_deref().unwrap_or(""),
                        client_request_id = %client_request_id,
                        retry = retries,
                        "ARM request"
                    );
                    if let Some(sub) = &subscription {
                        self.limiter.record(sub, &headers);
                    }
                    if status.is_success() {
                        return Ok(Response {
                            operation: req.operation,
                            status,
                            headers,
                            body,
                        });
                    }
                    let code = status.as_u16();
                    if code == 401 && !reauthenticated {
                        // The cached token may have been revoked or rotated: fetch a new one once.
                        reauthenticated = true;
                        self.tokens.invalidate().await;
                        continue;
                    }
                    let after = retry::retry_after(&headers);
                    if code == 429
                        && let Some(sub) = &subscription
                    {
                        self.limiter
                            .pause(sub, after.unwrap_or(self.retry.initial_backoff));
                    }
                    let err = ApiError::from_response(req.operation, status, &body, ids, after);
                    if !retry::is_retryable_status(code) {
                        return Err(err.into());
                    }
                    // 408/429/503: Azure refused before acting. 500/502/504: it may have acted.
                    let ambiguous = matches!(code, 500 | 502 | 504);
                    (AzureError::from(err), after, ambiguous)
                }
                Err(e) => {
                    self.observe(&req, StatusClass::Error, duration);
                    let err = if e.is_timeout() {
                        AzureError::Timeout {
                            operation: req.operation,
                            after: self.timeouts.request,
                        }
                    } else {
                        AzureError::Connection {
                            operation: req.operation,
                            reason: describe(&e),
                        }
                    };
                    tracing::debug!(
                        operation = req.operation,
                        method = %req.method,
                        path = req.url.path(),
                        duration_ms = duration.as_millis() as u64,
                        client_request_id = %client_request_id,
                        retry = retries,
                        error = %err,
                        "ARM request failed"
                    );
                    // A failed connect never reached Azure; anything later might have.
                    let ambiguous = !e.is_connect();
                    (err, None, ambiguous)
                }
            };

            if ambiguous && !req.retry_ambiguous {
                return Err(err);
            }
            let wait = wait.unwrap_or_else(|| retry::backoff(&self.retry, retries));
            if retries >= self.retry.max_retries || start.elapsed() + wait > self.retry.max_total {
                return Err(err);
            }
            tracing::debug!(
                operation = req.operation,
                wait_ms = wait.as_millis() as u64,
                retry = retries + 1,
                category = err.category().as_str(),
                "retrying ARM request"
            );
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }

    async fn attempt(
        &self,
        req: &Request,
        token: &str,
        client_request_id: &str,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), reqwest::Error> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        auth.set_sensitive(true);
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .header(header::AUTHORIZATION, auth)
            .header(header::ACCEPT, "application/json")
            .header("x-ms-client-request-id", client_request_id);
        if let Some(body) = &req.body {
            builder = builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        } else if req.method != Method::GET && req.method != Method::DELETE {
            // ARM wants a Content-Length on body-less POST/PUT.
            builder = builder.header(header::CONTENT_LENGTH, "0");
        }
        let resp = builder.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok((status, headers, body))
    }

    fn observe(&self, req: &Request, status: StatusClass, duration: Duration) {
        self.observer.on_attempt(&Attempt {
            operation: req.operation,
            method: method_str(&req.method),
            status,
            duration,
            throttled: status == StatusClass::Throttled,
        });
    }
}

/// Subscription id from a `/subscriptions/{id}/…` path (lower-cased), if any.
pub(crate) fn subscription_of(url: &Url) -> Option<String> {
    let mut segs = url.path_segments()?.skip_while(|s| s.is_empty());
    // Tolerate a path prefix in a custom endpoint: find the `subscriptions` keyword.
    loop {
        let seg = segs.next()?;
        if seg.eq_ignore_ascii_case("subscriptions") {
            return segs
                .next()
                .filter(|s| !s.is_empty())
                .map(str::to_ascii_lowercase);
        }
    }
}

fn request_ids(headers: &HeaderMap) -> RequestIds {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    RequestIds {
        request_id: get("x-ms-request-id"),
        correlation_id: get("x-ms-correlation-request-id"),
    }
}

/// The error and its causes, without the URL (which may carry a `$skipToken`).
fn describe(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut current: Option<&dyn std::error::Error> = Some(e);
    let mut first = true;
    while let Some(err) = current {
        let text = if first {
            // reqwest's own Display appends "for url (…)"; cut it.
            let t = err.to_string();
            match t.find(" for url (") {
                Some(i) => t[..i].to_owned(),
                None => t,
            }
        } else {
            err.to_string()
        };
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        first = false;
        current = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_from_path() {
        let cases = [
            (
                "https://management.azure.com/subscriptions/ABC/resourceGroups/rg?api-version=1",
                Some("abc"),
            ),
            (
                "http://127.0.0.1:1/prefix/subscriptions/s1/providers/x",
                Some("s1"),
            ),
            (
                "https://management.azure.com/providers/Microsoft.Compute",
                None,
            ),
            ("https://management.azure.com/subscriptions/", None),
        ];
        for (u, want) in cases {
            assert_eq!(
                subscription_of(&Url::parse(u).unwrap()).as_deref(),
                want,
                "{u}"
            );
        }
    }
}
