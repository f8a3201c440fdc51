//! `amlops-dev demo`: the emulator in process, the example manifests through the real engine with
//! an in-memory Kubernetes store, phases shown live, then a TLS-changing reattach that keeps
//! the certificate, and deletion; then the Kubernetes compute path (examples/06): two
//! `KubernetesCompute`s on one cluster that runs the Azure ML extension, attached and
//! detached.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use amlops::azure::{
    ArmClient, ArmClientConfig, AzureCloud, CredentialConfig, config::Secret as Token,
};
use amlops::crd::{ClusterStatus, SecretRef, TlsMode};
use amlops::engine::store::Claim;
use amlops::engine::{Desired, Engine, EngineConfig};
use amlops::validate::{check_value, parse_documents};
use amlops_emulator::{ClusterSeed, Emulator, EmulatorConfig};
use amlops_testkit::MemoryStore;
use amlops_testkit::{
    EXAMPLES, EXTENSION_EXAMPLE, KUBERNETES_COMPUTE_EXAMPLE, self_signed_tls_secret,
};

/// One resource the demo drives.
struct Item {
    desired: Desired,
    status: ClusterStatus,
    next: Instant,
    finished: bool,
    history: Vec<String>,
}

/// What the demo observed, for the summary and for tests.
#[derive(Debug, Default)]
pub struct Summary {
    /// Final phase history per resource.
    pub histories: BTreeMap<String, Vec<String>>,
    /// Certificate fingerprint served before and after the reattach.
    pub fingerprint_before: Option<String>,
    /// Same, after.
    pub fingerprint_after: Option<String>,
    /// ARM requests the emulator received, and how many were writes.
    pub requests: usize,
    /// PUT/POST-write/DELETE count.
    pub writes: usize,
    /// Computes left in the emulator at the end (both paths).
    pub computes_left: usize,
    /// Condition reasons each `KubernetesCompute` went through (`Gone` once detached).
    pub kubernetes_computes: BTreeMap<String, Vec<String>>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Run the demo; `op_duration` is the emulated Azure operation time; `live` redraws a table.
pub async fn run(
    op_duration: Duration,
    out: &mut (dyn Write + Send),
    live: bool,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut config = EmulatorConfig::demo();
    config.op_seconds = op_duration.as_secs_f64();
    let emu = Emulator::start(config).await?;
    let sub = "00000000-0000-0000-0000-000000000000";
    emu.seed_aks_cluster(
        sub,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "dev".into(),
            ..Default::default()
        },
    );
    let mut arm_config = ArmClientConfig::new(
        AzureCloud::custom(emu.base_url().parse()?),
        CredentialConfig::StaticToken(Token::new(emu.token())),
    );
    // The emulator does not throttle the demo; pacing the handful of example resources to
    // half of ARM's token buckets would only add waits to what the demo shows.
    arm_config.rate_limits = amlops::azure::RateLimitConfig::unpaced();
    let arm = ArmClient::new(arm_config)?;
    let store = MemoryStore::default();
    store.insert_secret(self_signed_tls_secret(
        "ml-platform",
        "scoring-tls",
        "scoring.contoso.com",
    )?);
    let engine = Engine {
        arm,
        store: store.clone(),
        config: EngineConfig {
            busy_poll: Duration::from_millis(200),
            retry_base: Duration::from_millis(200),
            ..Default::default()
        },
    };
    let mut items = Vec::new();
    for (file, text) in EXAMPLES {
        for doc in parse_documents(file, text) {
            let value = doc.value.map_err(anyhow::Error::msg)?;
            let manifest =
                check_value(&value, None).map_err(|f| anyhow::anyhow!("{file}: {f:?}"))?;
            let desired = manifest.desired();
            store.set_claim(Claim::of(&desired));
            items.push(Item {
                desired,
                status: ClusterStatus::default(),
                next: Instant::now(),
                finished: false,
                history: vec![],
            });
        }
    }
    writeln!(
        out,
        "amlops-dev demo — Azure emulator on {} (operations take {:.1}s)\n",
        emu.base_url(),
        op_duration.as_secs_f64()
    )?;

    writeln!(out, "▶ applying {} manifests from examples/", items.len())?;
    converge(&engine, &mut items, out, live, |i| {
        i.status.phase == Some(amlops::crd::Phase::Ready)
    })
    .await?;

    // A TLS change that keeps the certificate: the Auto cluster switches to Custom, serving its
    // backed-up Microsoft certificate under the same host name — in place, as the SDK's
    // `AksCompute.update` does (no detach: the endpoint keeps serving).
    let idx = items
        .iter()
        .position(|i| i.desired.tls.mode == TlsMode::Auto)
        .ok_or_else(|| anyhow::anyhow!("no Auto TLS example"))?;
    let aks = items[idx]
        .status
        .aks_resource_id
        .clone()
        .unwrap_or_default();
    let served = |emu_state: &amlops_emulator::StateSnapshot| {
        emu_state
            .clusters
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(&aks))
            .and_then(|c| c.azuremlfessl.as_ref())
            .and_then(|t| amlops::tls::verify_pair(&t.cert_pem, &t.key_pem).ok())
            .map(|i| i.sha256_fingerprint)
    };
    let before = served(&emu.state());
    let tls_status = items[idx].status.tls.clone().unwrap_or_default();
    let host = tls_status.hostname.clone().unwrap_or_default();
    let backup = tls_status.backup_secret_name.clone().unwrap_or_default();
    writeln!(
        out,
        "\n▶ {}: tls Auto → Custom {host} from backup Secret {backup} (in place, no detach)",
        items[idx].desired.name
    )?;
    let d = &mut items[idx].desired;
    d.tls.mode = TlsMode::Custom;
    d.tls.leaf_domain_label = None;
    d.tls.cname = Some(host);
    d.tls.secret_ref = Some(SecretRef { name: backup });
    d.generation = d.generation.map(|g| g + 1).or(Some(2));
    items[idx].next = Instant::now();
    converge(&engine, &mut items, out, live, |i| {
        i.status.phase == Some(amlops::crd::Phase::Ready)
            && i.status.operation.is_none()
            && i.status.observed_generation == i.desired.generation
    })
    .await?;
    let after = served(&emu.state());
    writeln!(
        out,
        "  certificate before {} / after {} → {}",
        short(&before),
        short(&after),
        if before.is_some() && before == after {
            "preserved ✔"
        } else {
            "CHANGED ✘"
        }
    )?;

    writeln!(out, "\n▶ deleting everything (policies: Delete, Detach)")?;
    for i in items.iter_mut() {
        i.desired.deleting = true;
        i.next = Instant::now();
    }
    converge(&engine, &mut items, out, live, |i| i.finished).await?;

    let kubernetes_computes = kubernetes_compute_path(&emu, &engine, out).await?;

    let requests = emu.requests();
    let writes = requests
        .iter()
        .filter(|r| matches!(r.method.as_str(), "PUT" | "DELETE"))
        .count();
    let summary = Summary {
        histories: items
            .iter()
            .map(|i| {
                (
                    format!("{} {}", i.desired.kind, i.desired.name),
                    i.history.clone(),
                )
            })
            .collect(),
        fingerprint_before: before,
        fingerprint_after: after,
        requests: requests.len(),
        writes,
        computes_left: emu.state().computes.len() + emu.state().kubernetes_computes.len(),
        kubernetes_computes,
        elapsed: started.elapsed(),
    };
    writeln!(out, "\n== summary ({:.1}s)", summary.elapsed.as_secs_f64())?;
    for (name, h) in summary.histories.iter().chain(&summary.kubernetes_computes) {
        writeln!(out, "  {name:<36} {}", h.join(" → "))?;
    }
    writeln!(
        out,
        "  ARM requests: {} ({} writes); computes left in Azure: {}",
        summary.requests, summary.writes, summary.computes_left
    )?;
    emu.shutdown().await;
    Ok(summary)
}

/// Appends the reason of the condition that holds (`Gone` once `finished`) to `history`
/// and prints it, when it differs from the last one.
fn record_reason(
    history: &mut Vec<String>,
    out: &mut (dyn Write + Send),
    kind: &str,
    name: &str,
    finished: bool,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> std::io::Result<()> {
    let reason = if finished {
        "Gone".to_string()
    } else {
        conditions
            .iter()
            .find(|c| c.status == "True")
            .map(|c| c.reason.clone())
            .unwrap_or_default()
    };
    if history.last() != Some(&reason) {
        writeln!(out, "  {kind:<18} {name:<16} {reason}")?;
        history.push(reason);
    }
    Ok(())
}

/// Reconciles the extension of examples/07 until `done`, printing each new condition reason
/// into `history`; returns the last outcome.
async fn drive_extension(
    engine: &Engine<MemoryStore>,
    d: &amlops::engine::azureml_extension::ExtensionDesired,
    history: &mut Vec<String>,
    out: &mut (dyn Write + Send),
    done: impl Fn(&amlops::engine::azureml_extension::ExtensionOutcome) -> bool,
) -> anyhow::Result<amlops::crd::AzureMlExtensionStatus> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if Instant::now() > deadline {
            anyhow::bail!("the AzureMLExtension did not converge in 120 s");
        }
        let status = engine.store.extension_status(&d.key).unwrap_or_default();
        let o = engine.reconcile_extension(d, status).await?;
        record_reason(
            history,
            out,
            "AzureMLExtension",
            &d.key.name,
            o.finished,
            &o.status.conditions,
        )?;
        if done(&o) {
            return Ok(o.status);
        }
        let wait = o.requeue.unwrap_or(Duration::from_millis(200));
        tokio::time::sleep(wait.clamp(Duration::from_millis(20), Duration::from_millis(200))).await;
    }
}

/// The Kubernetes compute path: amlops installs the Azure ML extension of examples/07 on
/// the cluster `shared` (TLS from Secret `scoring-tls`, its instance types applied once it
/// runs); namespace `team-b` is created as a team would; the two computes of examples/06
/// are attached (team-a's namespace created by amlops), then detached, and the extension
/// uninstalled once no compute uses it. Returns the condition reasons each went through.
async fn kubernetes_compute_path(
    emu: &amlops_emulator::EmulatorHandle,
    engine: &Engine<MemoryStore>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    use amlops::crd::KubernetesCompute;
    use amlops::engine::kubernetes_compute::ComputeDesired;
    let (file, text) = KUBERNETES_COMPUTE_EXAMPLE;
    let mut computes = Vec::new();
    for doc in parse_documents(file, text) {
        let value = doc.value.map_err(anyhow::Error::msg)?;
        amlops::validate::check_object(&value, None)
            .map_err(|f| anyhow::anyhow!("{file}: {f:?}"))?;
        let kc: KubernetesCompute = serde_json::from_value(value)?;
        computes.push((ComputeDesired::new(&kc, None), Vec::<String>::new(), false));
    }
    let cluster = computes
        .first()
        .and_then(|(d, _, _)| d.target.as_ref().ok())
        .map(|t| t.cluster.clone())
        .ok_or_else(|| anyhow::anyhow!("{file}: no cluster"))?;
    let (ext_file, ext_text) = EXTENSION_EXAMPLE;
    let mut extension = None;
    for doc in parse_documents(ext_file, ext_text) {
        let value = doc.value.map_err(anyhow::Error::msg)?;
        if value.get("kind").and_then(|k| k.as_str()) == Some("AzureMLExtension") {
            amlops::validate::check_object(&value, None)
                .map_err(|f| anyhow::anyhow!("{ext_file}: {f:?}"))?;
            let ext: amlops::crd::AzureMLExtension = serde_json::from_value(value)?;
            extension = Some(engine.extension_desired(&ext, Vec::new()).await);
        }
    }
    let mut extension =
        extension.ok_or_else(|| anyhow::anyhow!("{ext_file}: no AzureMLExtension"))?;
    emu.seed_kubernetes_path(&amlops_emulator::KubernetesPathSeed {
        // The InstanceType CRD appears 300 ms after the install (Azure: minutes).
        crd_delay_ms: Some(300),
        ..Default::default()
    })
    .map_err(anyhow::Error::msg)?;
    writeln!(
        out,
        "\n▶ the Kubernetes compute path ({ext_file}): the Azure ML extension on {}",
        cluster.name()
    )?;
    let mut ext_history = Vec::new();
    let installed = drive_extension(engine, &extension, &mut ext_history, out, |o| {
        o.status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await?;
    writeln!(
        out,
        "  router {}, instance types {}, certificate {}",
        installed
            .router_address
            .as_deref()
            .unwrap_or("(no address)"),
        installed.instance_types.join(", "),
        short(
            &installed
                .tls
                .as_ref()
                .and_then(|t| t.sha256_fingerprint.clone())
        )
    )?;
    let client = engine
        .arm
        .list_cluster_admin_credential(&cluster)
        .await?
        .client(None)
        .await?;
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::core::ObjectMeta {
            name: Some("team-b".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .create(&Default::default(), &ns)
        .await?;
    writeln!(out, "\n▶ {file}: two teams attach the cluster")?;
    for deleting in [false, true] {
        if deleting {
            writeln!(out, "\n▶ deleting both (policy Detach: the cluster stays)")?;
        }
        for (d, _, done) in computes.iter_mut() {
            d.deleting = deleting;
            *done = false;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while computes.iter().any(|(_, _, done)| !done) {
            if Instant::now() > deadline {
                anyhow::bail!("the Kubernetes computes did not converge in 120 s");
            }
            let mut wait = Duration::from_millis(200);
            for (d, history, done) in computes.iter_mut().filter(|c| !c.2) {
                let status = engine.store.compute_status(&d.key).unwrap_or_default();
                let o = engine.reconcile_compute(d, status).await?;
                record_reason(
                    history,
                    out,
                    "KubernetesCompute",
                    &d.key.name,
                    o.finished,
                    &o.status.conditions,
                )?;
                let ready = o
                    .status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                *done = if deleting { o.finished } else { ready };
                if let Some(after) = o.verdict.as_ref().and_then(|v| v.after()) {
                    wait = wait.max(after);
                }
            }
            tokio::time::sleep(wait).await;
        }
    }
    writeln!(
        out,
        "\n▶ deleting the extension (policy Delete: uninstalled, no compute uses it)"
    )?;
    extension.deleting = true;
    drive_extension(engine, &extension, &mut ext_history, out, |o| o.finished).await?;
    let mut histories: BTreeMap<String, Vec<String>> = computes
        .into_iter()
        .map(|(d, h, _)| (format!("KubernetesCompute {}", d.key.name), h))
        .collect();
    histories.insert(
        format!("AzureMLExtension {}", extension.key.name),
        ext_history,
    );
    Ok(histories)
}

fn short(f: &Option<String>) -> String {
    f.as_deref()
        .map(|f| f[..12].to_string())
        .unwrap_or_else(|| "none".into())
}

async fn converge(
    engine: &Engine<MemoryStore>,
    items: &mut [Item],
    out: &mut (dyn Write + Send),
    live: bool,
    done: impl Fn(&Item) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !items.iter().all(&done) {
        if Instant::now() > deadline {
            anyhow::bail!("did not converge in 120 s");
        }
        let now = Instant::now();
        for item in items.iter_mut().filter(|i| !i.finished && i.next <= now) {
            match engine.reconcile(&item.desired, item.status.clone()).await {
                Ok(o) => {
                    item.status = o.status;
                    item.finished = o.finished;
                    // The demo resyncs quickly so a changed spec is seen at once, but
                    // waits what Azure asked for after a failure.
                    let wait = match o.verdict.as_ref().and_then(|v| v.after()) {
                        Some(after) => {
                            writeln!(out, "  {}: Azure failed, retrying", item.desired.name)?;
                            after
                        }
                        None => o
                            .requeue
                            .unwrap_or(Duration::from_millis(500))
                            .min(Duration::from_millis(500)),
                    };
                    item.next = Instant::now() + wait;
                }
                Err(e) => {
                    writeln!(out, "  {}: retrying after error: {e}", item.desired.name)?;
                    item.next = Instant::now() + Duration::from_millis(500);
                }
            }
            let phase = if item.finished {
                "Gone".to_string()
            } else {
                item.status.phase.unwrap_or_default().as_str().to_string()
            };
            if item.history.last() != Some(&phase) {
                item.history.push(phase.clone());
                if !live {
                    writeln!(
                        out,
                        "  {:<18} {:<16} {phase}",
                        item.desired.kind, item.desired.name
                    )?;
                }
            }
        }
        if live {
            draw(items, out)?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if live {
        draw(items, out)?;
        writeln!(out)?;
    }
    Ok(())
}

fn draw(items: &[Item], out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let mut text = String::new();
    for i in items {
        let phase = if i.finished {
            "Gone"
        } else {
            i.status.phase.unwrap_or_default().as_str()
        };
        let ready = i
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.as_str())
            .unwrap_or("-");
        let mark = match phase {
            "Ready" | "Gone" => "✔",
            _ => "…",
        };
        text.push_str(&format!(
            "\x1b[2K  {mark} {:<18} {:<16} {:<13} Ready={ready:<5}\n",
            i.desired.kind, i.desired.name, phase
        ));
    }
    write!(out, "{text}\x1b[{}A", items.len())?;
    out.flush()?;
    Ok(())
}

/// Entry point of `amlops-dev demo`.
pub async fn run_cli(op_seconds: f64) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout();
    let live = stdout.is_terminal();
    let s = run(Duration::from_secs_f64(op_seconds), &mut stdout, live).await?;
    Ok(s.computes_left == 0
        && s.fingerprint_before.is_some()
        && s.fingerprint_before == s.fingerprint_after)
}
