//! The benchmark's Azure emulator: by default a child process (`amlops-dev emulator`), so that
//! the memory and CPU the benchmark reports for its own process are the operator's alone;
//! or in-process on its own runtime (`--emulator in-process`), which needs no executable.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use amlops_emulator::{Budget, Emulator, EmulatorConfig, EmulatorHandle, Throttling};

/// Where the benchmark runs the emulator.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmulatorMode {
    /// A child process of the same executable: the process figures are the operator's.
    Process,
    /// On a runtime of the benchmark's process (its CPU is told apart by thread name; its
    /// memory is counted in the process's).
    InProcess,
}

/// A running emulator.
pub enum Emu {
    /// In this process.
    InProcess(EmulatorHandle),
    /// A child process.
    Process(ChildEmulator),
}

/// An `amlops-dev emulator` child process, driven through its admin endpoints.
pub struct ChildEmulator {
    child: Child,
    base_url: String,
    token: String,
    http: reqwest::Client,
    config: PathBuf,
}

impl Emu {
    /// Starts an emulator seeded with `config`.
    pub async fn start(
        mode: EmulatorMode,
        config: EmulatorConfig,
        rt: &tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        match mode {
            EmulatorMode::InProcess => {
                Ok(Self::InProcess(rt.spawn(Emulator::start(config)).await??))
            }
            EmulatorMode::Process => {
                let token = config.token.clone();
                // Seeding thousands of clusters is quicker through the config file.
                static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = std::env::temp_dir().join(format!(
                    "amlops-bench-emulator-{}-{run}.yaml",
                    std::process::id()
                ));
                std::fs::write(&path, serde_saphyr::to_string(&config)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                let exe = std::env::current_exe()?;
                let config_path = path.clone();
                let spawned =
                    tokio::task::spawn_blocking(move || spawn_child(exe, &config_path)).await?;
                let (child, base_url) = match spawned {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        return Err(e);
                    }
                };
                Ok(Self::Process(ChildEmulator {
                    child,
                    base_url,
                    token,
                    http: reqwest::Client::new(),
                    config: path,
                }))
            }
        }
    }

    /// ARM endpoint.
    pub fn base_url(&self) -> String {
        match self {
            Self::InProcess(h) => h.base_url().to_string(),
            Self::Process(c) => c.base_url.clone(),
        }
    }

    /// ARM bearer token.
    pub fn token(&self) -> String {
        match self {
            Self::InProcess(h) => h.token(),
            Self::Process(c) => c.token.clone(),
        }
    }

    /// Enforces (or lifts) ARM's per-subscription budget; counters restart.
    pub async fn set_budget(&self, budget: Option<Budget>) -> anyhow::Result<()> {
        match self {
            Self::InProcess(h) => h.set_budget(budget),
            Self::Process(c) => {
                let url = format!("{}/admin/budget", c.base_url);
                let req = match &budget {
                    Some(b) => c.http.put(url).json(b),
                    None => c.http.delete(url),
                };
                req.send().await?.error_for_status()?;
            }
        }
        Ok(())
    }

    /// Sets ARM's throttling (model per subscription, enforced or not); counters restart.
    pub async fn set_throttling(&self, throttling: Throttling) -> anyhow::Result<()> {
        match self {
            Self::InProcess(h) => h.set_throttling(throttling),
            Self::Process(c) => {
                c.http
                    .put(format!("{}/admin/throttling", c.base_url))
                    .json(&throttling)
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }
        Ok(())
    }

    /// Empties the request log (it is the emulator's memory, not the operator's).
    pub async fn clear_requests(&self) -> anyhow::Result<()> {
        match self {
            Self::InProcess(h) => h.clear_requests(),
            Self::Process(c) => {
                c.http
                    .delete(format!("{}/admin/requests", c.base_url))
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }
        Ok(())
    }

    /// Reads (GET, HEAD) and writes in the emulator's request log, counted by the emulator
    /// (`GET /admin/requests/counts`): the log itself, 60,000 records at 10,000 resources,
    /// would pass through this process and count in its peak RSS.
    pub async fn reads_and_writes(&self) -> anyhow::Result<(u64, u64)> {
        let counts: std::collections::BTreeMap<String, u64> = match self {
            Self::InProcess(h) => h.request_counts(),
            Self::Process(c) => {
                c.http
                    .get(format!("{}/admin/requests/counts", c.base_url))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?
            }
        };
        let reads = counts
            .iter()
            .filter(|(m, _)| matches!(m.as_str(), "GET" | "HEAD"))
            .map(|(_, n)| n)
            .sum();
        Ok((reads, counts.values().sum::<u64>() - reads))
    }

    /// CPU seconds of a child emulator so far (`None` in-process: see the thread split).
    pub fn child_cpu_seconds(&self) -> Option<f64> {
        match self {
            Self::InProcess(_) => None,
            Self::Process(c) => super::sys::process_cpu_seconds(c.child.id()),
        }
    }

    /// Peak resident memory of a child emulator so far.
    pub fn child_peak_rss_bytes(&self) -> Option<u64> {
        match self {
            Self::InProcess(_) => None,
            Self::Process(c) => super::sys::process_hwm_bytes(c.child.id()),
        }
    }

    /// Stops the emulator.
    pub async fn shutdown(self) {
        match self {
            Self::InProcess(h) => h.shutdown().await,
            // Drop kills and reaps the child and removes its config file.
            Self::Process(c) => {
                let _ = tokio::task::spawn_blocking(move || drop(c)).await;
            }
        }
    }
}

impl Drop for ChildEmulator {
    fn drop(&mut self) {
        // Never leave an emulator behind, whatever path the benchmark leaves by.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Starts `exe emulator` on a free loopback port and reads the address it printed.
fn spawn_child(exe: PathBuf, config: &std::path::Path) -> anyhow::Result<(Child, String)> {
    let mut args: Vec<std::ffi::OsString> = ["emulator", "--listen", "127.0.0.1:0", "--config"]
        .into_iter()
        .map(Into::into)
        .collect();
    args.push(config.into());
    spawn_server(&exe, &args, "Azure emulator listening on ")
}

/// Starts `exe args…` (a server of the same executable), reads the URL it prints after
/// `prefix` on a line of its stdout, and keeps draining its stdout.
///
/// # Errors
/// When it cannot be started or exits before printing the line.
pub(super) fn spawn_server(
    exe: &std::path::Path,
    args: &[std::ffi::OsString],
    prefix: &str,
) -> anyhow::Result<(Child, String)> {
    let what = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut child = Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} {what}", exe.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix(prefix) {
                    break url.trim().trim_end_matches('/').to_string();
                }
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the {what} child exited before listening");
            }
        }
    };
    // Keep draining its stdout so that it never blocks on a full pipe.
    std::thread::Builder::new()
        .name(format!("bench-{what}-out"))
        .spawn(move || lines.for_each(drop))?;
    // Give the listener a moment to be served before the first seeded request.
    std::thread::sleep(Duration::from_millis(20));
    Ok((child, url))
}
