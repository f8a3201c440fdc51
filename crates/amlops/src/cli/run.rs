//! `amlops run`: the flags of the controller and the command itself.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ArmThrottlingArgs, AzureArgs};
use crate::controller::{Backoff, LeaseConfig, Operator, Options};
use crate::engine::EngineConfig;
use crate::engine::versions::{AzureMlVersions, MinorRange};

/// Log output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (log collectors).
    Json,
}

/// Parses `90s`, `10m`, `1h30m`, `500ms`, or a bare number of seconds.
///
/// # Errors
/// A message for the command line when `s` is empty, zero, negative, fractional, or has a
/// unit other than `ms`, `s`, `m` and `h`, or is too long for a `Duration`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return (secs > 0)
            .then(|| Duration::from_secs(secs))
            .ok_or_else(|| format!("duration {s:?} must be more than zero"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || unit_len == 0 {
            return Err(format!("invalid duration {s:?}: use e.g. 30s, 10m, 1h30m"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        let unit = &rest[digits..digits + unit_len];
        let too_long = || format!("duration {s:?} is too long");
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(too_long)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(too_long)?),
            _ => {
                return Err(format!(
                    "invalid duration unit {unit:?} in {s:?}: use ms, s, m or h"
                ));
            }
        };
        total = total.checked_add(part).ok_or_else(too_long)?;
        rest = &rest[digits + unit_len..];
    }
    if total.is_zero() {
        return Err(format!("duration {s:?} must be more than zero"));
    }
    Ok(total)
}

/// Flags of `amlops run`; each has an environment fallback (flags win).
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Azure cloud and credential.
    #[command(flatten)]
    pub azure: AzureArgs,
    /// Address of /healthz, /readyz and /metrics (loopback by default; the chart sets 0.0.0.0:8080).
    #[arg(long, env = "AMLOPS_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Steady-state resync of each Ready resource (an `InferenceCluster`'s or
    /// `ClusterAttachment`'s answered by a listing of its workspace, renewed after half the
    /// period; an `AzureMLExtension`'s or `KubernetesCompute`'s one `GET`), stretched when
    /// the resources of one subscription, of all kinds, would spend more than the ARM read
    /// share.
    #[arg(long, env = "AMLOPS_RESYNC", default_value = "10m", value_parser = parse_duration)]
    pub resync: Duration,
    /// ARM's throttling model and figures, and the shares of them the operator uses.
    #[command(flatten)]
    pub throttling: ArmThrottlingArgs,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "AMLOPS_NAMESPACE")]
    pub namespace: Option<String>,
    /// Resources reconciled at once per kind (0: unbounded).
    #[arg(long, env = "AMLOPS_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Log format.
    #[arg(long, env = "AMLOPS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Elect a leader over a Lease (needed with more than one replica).
    #[arg(long, env = "AMLOPS_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "AMLOPS_LEASE_NAME", default_value = "amlops-leader")]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: the pod's namespace, POD_NAMESPACE).
    #[arg(long, env = "AMLOPS_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease and in Events (default: POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// The operator's own namespace, where the TLS backup of a resource goes when its
    /// namespace is being deleted (default: POD_NAMESPACE; unset: such a backup is skipped
    /// with a Warning).
    #[arg(long, env = "AMLOPS_BACKUP_NAMESPACE")]
    pub backup_namespace: Option<String>,
    /// Namespace of the `azuremlfessl` Secret on the AKS clusters.
    #[arg(long, env = "AMLOPS_TLS_NAMESPACE", default_value = "default")]
    pub tls_namespace: String,
    /// Kubernetes minors Azure ML attaches (`MIN-MAX`), checked before an attach; Azure
    /// ML's own refusal ("Supported versions are between A - B") replaces it for its
    /// subscription and region.
    #[arg(long, env = "AMLOPS_AZUREML_KUBERNETES_VERSIONS", default_value = "1.33-1.35", value_parser = MinorRange::parse)]
    pub azureml_kubernetes_versions: MinorRange,
    /// Poll interval of a running Azure operation when Azure gives no Retry-After.
    #[arg(long, env = "AMLOPS_BUSY_POLL", default_value = "15s", value_parser = parse_duration)]
    pub busy_poll: Duration,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl RunArgs {
    /// The operator's options from these flags.
    pub fn options(&self) -> Options {
        let identity = self
            .identity
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| format!("amlops-{}", uuid::Uuid::new_v4()));
        let lease_namespace = self
            .lease_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "default".into());
        Options {
            namespace: self.namespace.clone().filter(|s| !s.is_empty()),
            concurrency: self.concurrency,
            engine: EngineConfig {
                tls_namespace: self.tls_namespace.clone(),
                // Empty is unset (a chart value left blank), as for the other namespaces.
                backup_namespace: self
                    .backup_namespace
                    .clone()
                    .filter(|s| !s.is_empty())
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .filter(|s| !s.is_empty()),
                resync: self.throttling.policy(self.resync),
                busy_poll: self.busy_poll,
                azureml_versions: std::sync::Arc::new(AzureMlVersions::new(Some(
                    self.azureml_kubernetes_versions,
                ))),
                ..EngineConfig::default()
            },
            backoff: Backoff::default(),
            leader: self
                .leader_election
                .then(|| LeaseConfig::new(&self.lease_name, &lease_namespace, &identity)),
            metrics_addr: self.metrics_addr,
            identity,
            crd_poll: Duration::from_secs(2),
        }
    }
}

/// `amlops run`: runs until SIGTERM/Ctrl-C; `Ok(true)` after a clean shutdown.
///
/// # Errors
/// No Kubernetes configuration; invalid Azure flags ([`AzureArgs::config`]); an ARM client that
/// cannot be built ([`Operator::new`]); a probe address that cannot be bound ([`Operator::start`]);
/// the operator's task ending abnormally ([`Running::join`](crate::controller::Running::join)).
/// [`exit_code`](super::exit_code) prints it and exits 2.
pub async fn run(args: RunArgs) -> anyhow::Result<bool> {
    init_logging(args.log_format);
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no Kubernetes configuration (in-cluster or KUBECONFIG): {e}")
    })?;
    let mut config = args.azure.config()?;
    config.rate_limits.share = Some(args.throttling.arm_request_share);
    let operator = Operator::new(client, config, args.options())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = operator.start(stop_rx).await?;
    tracing::info!(addr = %running.addr, "amlops running; /healthz /readyz /metrics served");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing reconciles in progress, then releasing the Lease");
    let _ = stop_tx.send(true);
    running.join().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn throttling_flags_as_the_chart_passes_them() {
        let cli = Cli::try_parse_from([
            "amlops",
            "--resync=10m",
            "--arm-throttling=token-bucket",
            "--arm-read-bucket=250",
            "--arm-read-refill=25",
            "--arm-write-bucket=200",
            "--arm-write-refill=10",
            "--arm-delete-bucket=200",
            "--arm-delete-refill=10",
            "--arm-global-factor=15",
            "--arm-read-budget=12000",
            "--arm-write-budget=1200",
            "--arm-delete-budget=15000",
            "--arm-read-share=0.5",
            "--arm-request-share=0.5",
        ])
        .unwrap();
        assert_eq!(cli.run.throttling, ArmThrottlingArgs::default());
        let p = cli.run.throttling.policy(cli.run.resync);
        assert_eq!(p.base, Duration::from_secs(600));
        assert_eq!(p.arm, crate::azure::ArmThrottling::default());
        assert_eq!(p.share, 0.5);
        for bad in [
            "--arm-read-share=0",
            "--arm-read-share=1.5",
            "--arm-read-budget=-1",
            "--arm-throttling=none",
        ] {
            assert!(Cli::try_parse_from(["amlops", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn azureml_versions_flag_defaults_to_the_engines_range() {
        let cli = Cli::try_parse_from(["amlops"]).unwrap();
        assert_eq!(
            cli.run.azureml_kubernetes_versions,
            crate::engine::versions::DEFAULT_AZUREML_VERSIONS
        );
        let cli = Cli::try_parse_from(["amlops", "--azureml-kubernetes-versions=1.30-1.32"]);
        assert_eq!(
            cli.unwrap().run.azureml_kubernetes_versions,
            MinorRange::parse("1.30-1.32").unwrap()
        );
        assert!(Cli::try_parse_from(["amlops", "--azureml-kubernetes-versions=1.32"]).is_err());
    }

    #[test]
    fn durations() {
        let ok = [
            ("600", 600_000),
            ("10m", 600_000),
            ("90s", 90_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in [
            "",
            "0",
            "m",
            "10x",
            "1.5m",
            "0s",
            "-5s",
            "99999999999999999h",
            "5124095576030431h1h",
            "18446744073709551615s1s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }
}
