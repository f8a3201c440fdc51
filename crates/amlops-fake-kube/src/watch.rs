//! WATCH: a chunked stream of newline-delimited `{"type": ..., "object": ...}` events.
//!
//! Start points follow the API server: no resourceVersion or "0" replays the current
//! objects as synthetic ADDED events; a number replays the change log after it (410
//! Expired once compacted); `sendInitialEvents=true` (streaming lists) replays the current
//! objects and then a BOOKMARK annotated `k8s.io/initial-events-end`. The stream ends
//! after `timeoutSeconds`, on shutdown, when its reader falls too far behind (the client
//! then watches again from its last resourceVersion), or with a 410 ERROR event when the
//! test calls `expire_watches`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::SinkExt;
use futures::channel::mpsc;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch as tokio_watch;

use super::errors::ApiError;
use super::http::{Reply, Req, Shared, present, selectors};
use super::select::{FieldSelector, LabelSelector};
use super::store::{Change, ChangeKind, State, TypeInfo, TypeKey};

/// Server default when `timeoutSeconds` is absent (the real one picks 30-60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Which changes a watch forwards, and how they look through it.
struct Filter {
    ty: TypeInfo,
    key: TypeKey,
    version: String,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn selects(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// A change as this watch reports it; an object that starts or stops matching the
    /// selectors is reported as ADDED or DELETED, as the API server does.
    fn translate(&self, change: &Change) -> Option<Bytes> {
        if change.key != self.key || self.ns.as_ref().is_some_and(|n| *n != change.namespace) {
            return None;
        }
        let now = self.selects(&change.object);
        let kind = match change.kind {
            ChangeKind::Modified => {
                let before = change.old.as_ref().is_some_and(|o| self.selects(o));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
            other if now => other.as_str(),
            _ => return None,
        };
        Some(self.line(kind, &change.object))
    }

    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        event_line(kind, &present(&self.ty, &self.version, obj))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        event_line(
            "BOOKMARK",
            &json!({"kind": self.ty.kind, "apiVersion": self.ty.api_version(&self.version), "metadata": metadata}),
        )
    }
}

fn event_line(kind: &str, obj: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": obj}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// Opens a watch: computes the replay and subscribes to live changes under the state
/// lock (so nothing falls between them), then streams from a task.
pub(crate) fn start(
    shared: &Arc<Shared>,
    state: &mut State,
    req: &Req,
    ty: &TypeInfo,
    version: &str,
    ns: Option<String>,
) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(req)?;
    let filter = Filter {
        ty: ty.clone(),
        key: ty.key(),
        version: version.to_string(),
        ns: ns.clone(),
        labels,
        fields,
    };
    let bookmarks = req.param("allowWatchBookmarks") == Some("true");
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let initial_events = req.param("sendInitialEvents") == Some("true");
    let rv_param = req.param("resourceVersion").unwrap_or_default();

    let mut initial = Vec::new();
    if initial_events || rv_param.is_empty() || rv_param == "0" {
        for obj in state.list(ty, ns.as_deref()) {
            if filter.selects(&obj) {
                initial.push(filter.line("ADDED", &obj));
            }
        }
        if initial_events {
            initial.push(filter.bookmark(state.rv, true));
        }
    } else {
        let from: u64 = rv_param.parse().map_err(|_| {
            ApiError::bad_request(&format!("invalid resource version {rv_param:?}"))
        })?;
        if from < state.compacted {
            let err = ApiError::expired(format!(
                "too old resource version: {from} ({})",
                state.compacted
            ));
            initial.push(event_line("ERROR", &err.to_json()));
            return Ok(Reply::Stream(stream_response(futures::stream::iter(
                initial.into_iter().map(Ok::<_, Infallible>),
            ))));
        }
        for change in state.history.iter().filter(|c| c.rv > from) {
            if let Some(line) = filter.translate(change) {
                initial.push(line);
            }
        }
    }
    let rx = state.tx.subscribe();
    let (tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(32);
    let task = WatchTask {
        filter,
        rx,
        tx,
        bookmarks,
        last_rv: state.rv,
        timeout,
        interval: shared.bookmark_interval,
        shutdown: shared.shutdown.clone(),
        expire: shared.expire.clone(),
    };
    tokio::spawn(task.run(initial));
    Ok(Reply::Stream(stream_response(body_rx)))
}

fn stream_response<S>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

struct WatchTask {
    filter: Filter,
    rx: broadcast::Receiver<Arc<Change>>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    bookmarks: bool,
    /// The newest resourceVersion this watch has seen (of any kind): bookmarks carry it.
    last_rv: u64,
    timeout: Duration,
    interval: Duration,
    shutdown: tokio_watch::Receiver<bool>,
    expire: tokio_watch::Receiver<u64>,
}

impl WatchTask {
    async fn run(mut self, initial: Vec<Bytes>) {
        for line in initial {
            if self.tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        // Only expiries after this watch opened count.
        self.expire.borrow_and_update();
        let mut tick = tokio::time::interval(self.interval);
        tick.tick().await;
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let line = tokio::select! {
                _ = &mut deadline => return,
                changed = self.shutdown.changed() => {
                    if changed.is_err() { return; }
                    continue;
                }
                _ = tick.tick() => {
                    // Also notices clients that went away while nothing happened.
                    if self.tx.is_closed() {
                        return;
                    }
                    self.bookmarks.then(|| self.filter.bookmark(self.last_rv, false))
                }
                expired = self.expire.changed() => {
                    if expired.is_ok() {
                        let err = ApiError::expired("watch expired by the test; relist".into());
                        let _ = self.tx.send(Ok(event_line("ERROR", &err.to_json()))).await;
                    }
                    return;
                }
                received = self.rx.recv() => match received {
                    Ok(change) => {
                        tokio::time::sleep_until(change.deliver_at).await;
                        self.last_rv = change.rv;
                        self.filter.translate(&change)
                    }
                    // Too slow a reader: the stream ends, as the API server's watch cache
                    // closes an unresponsive watcher (k8s.io/apiserver
                    // pkg/storage/cacher/cache_watcher.go, "Forcing … watcher close due to
                    // unresponsiveness"). The client watches again from the last
                    // resourceVersion it saw, which the change log replays while it holds
                    // it (410 only once compacted) — not a relist of every object.
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => return,
                },
            };
            if let Some(line) = line
                && self.tx.send(Ok(line)).await.is_err()
            {
                return;
            }
        }
    }
}
