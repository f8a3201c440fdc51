//! The fake Kubernetes API server of `amlops-dev bench --controller`: by default a child process
//! (`amlops-dev fake-api-server`), so that the peak RSS and CPU the benchmark reports for its own
//! process are the operator's and not the fake's (its store, watch history and request log);
//! or in-process on the emulator's runtime (`--emulator in-process`).
//!
//! The request counts come from the fake itself in both cases: the child's request log is
//! read through its `GET /_fake/requests/counts` admin endpoint (see
//! `amlops_fake_kube::admin`), so they count what the API server received.

use std::collections::BTreeMap;
use std::process::Child;

use serde_json::Value;

use super::emu::EmulatorMode;
use amlops_fake_kube::FakeApiServer;

/// A running fake API server.
pub enum Fake {
    /// In this process.
    InProcess(FakeApiServer),
    /// A child process.
    Process(ChildFake),
}

/// An `amlops-dev fake-api-server` child process, driven through its `/_fake/` endpoints.
pub struct ChildFake {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Fake {
    /// Starts a fake API server (in-process on `rt`, or as a child).
    ///
    /// # Errors
    /// When it cannot bind or the child cannot be started.
    pub async fn start(mode: EmulatorMode, rt: &tokio::runtime::Handle) -> anyhow::Result<Self> {
        match mode {
            EmulatorMode::InProcess => {
                Ok(Self::InProcess(rt.spawn(FakeApiServer::start()).await??))
            }
            EmulatorMode::Process => {
                let exe = std::env::current_exe()?;
                let spawned = tokio::task::spawn_blocking(move || {
                    let args: Vec<std::ffi::OsString> =
                        ["fake-api-server", "--listen", "127.0.0.1:0"]
                            .into_iter()
                            .map(Into::into)
                            .collect();
                    super::emu::spawn_server(
                        &exe,
                        &args,
                        "Fake Kubernetes API server listening on ",
                    )
                })
                .await??;
                let (child, url) = spawned;
                Ok(Self::Process(ChildFake {
                    child,
                    url,
                    http: reqwest::Client::new(),
                }))
            }
        }
    }

    /// A `kube::Client` for it (plain HTTP on loopback, no auth).
    ///
    /// # Errors
    /// When the URL does not parse.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        match self {
            Self::InProcess(f) => Ok(f.client()),
            Self::Process(c) => {
                let config = kube::Config::new(c.url.parse()?);
                Ok(kube::Client::try_from(config)?)
            }
        }
    }

    /// Creates or replaces `objects` in order, as a user would (not in the request log).
    ///
    /// # Errors
    /// The API's `Status` message of the first object refused, or the HTTP failure.
    pub async fn put_all(&self, objects: Vec<Value>) -> anyhow::Result<()> {
        match self {
            Self::InProcess(f) => {
                for o in objects {
                    f.put(o).map_err(|s| anyhow::anyhow!("{}", s.message))?;
                }
            }
            Self::Process(c) => {
                let resp = c
                    .http
                    .post(format!("{}/_fake/objects", c.url))
                    .json(&objects)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    let code = resp.status();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    anyhow::bail!(
                        "fake API server refused an object ({code}): {}",
                        body["message"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        Ok(())
    }

    /// Requests received since the last clear, by method, watches apart as `WATCH`.
    ///
    /// # Errors
    /// When the child does not answer.
    pub async fn request_counts(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        Ok(match self {
            Self::InProcess(f) => f.request_counts(),
            Self::Process(c) => {
                c.http
                    .get(format!("{}/_fake/requests/counts", c.url))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?
            }
        })
    }

    /// Empties the request log.
    ///
    /// # Errors
    /// When the child does not answer.
    pub async fn clear_requests(&self) -> anyhow::Result<()> {
        match self {
            Self::InProcess(f) => f.clear_requests(),
            Self::Process(c) => {
                c.http
                    .delete(format!("{}/_fake/requests", c.url))
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }
        Ok(())
    }

    /// CPU seconds of a child so far (`None` in-process: see the thread split).
    pub fn child_cpu_seconds(&self) -> Option<f64> {
        match self {
            Self::InProcess(_) => None,
            Self::Process(c) => super::sys::process_cpu_seconds(c.child.id()),
        }
    }

    /// Peak resident memory of a child so far (`VmHWM`).
    pub fn child_peak_rss_bytes(&self) -> Option<u64> {
        match self {
            Self::InProcess(_) => None,
            Self::Process(c) => super::sys::process_hwm_bytes(c.child.id()),
        }
    }

    /// Stops it.
    pub async fn shutdown(self) {
        match self {
            Self::InProcess(f) => f.shutdown().await,
            // Drop kills and reaps the child.
            Self::Process(c) => {
                let _ = tokio::task::spawn_blocking(move || drop(c)).await;
            }
        }
    }
}

impl Drop for ChildFake {
    fn drop(&mut self) {
        // Never leave a fake behind, whatever path the benchmark leaves by.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
