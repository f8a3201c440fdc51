//! Every engine scenario again, with the emulator refusing ~30% of ARM requests (429 and
//! 503, both with `Retry-After: 1`) and failing one long-running compute operation per
//! scenario. Each must still converge to the same outcome, Azure's Retry-After must be
//! honoured (checked on the emulator's request log), and writes may only grow by the
//! retries of failed operations.
//!
//! The scenarios run concurrently, one emulator each, so the test takes about as long as
//! the slowest one (most of it is spent waiting out Retry-After).

use amlops_testkit as common;

use std::time::Instant;

use common::{World, scenarios};

#[derive(Default)]
struct Totals {
    requests: usize,
    refused: usize,
    retries_checked: usize,
    failed_operations: usize,
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_converges_under_throttling_and_a_failed_operation() {
    let started = Instant::now();
    let tasks: Vec<_> = scenarios::ALL
        .iter()
        .map(|name| {
            let task = tokio::spawn(async move {
                let t0 = Instant::now();
                let w = World::with_faults().await;
                scenarios::run(name, &w).await;
                let checked = w.assert_retry_after_honoured();
                let log = w.emu.requests();
                let refused = log
                    .iter()
                    .filter(|r| r.status == 429 || r.status == 503)
                    .count();
                (
                    log.len(),
                    refused,
                    checked,
                    w.failed_operations(),
                    t0.elapsed(),
                )
            });
            (*name, task)
        })
        .collect();
    let mut failures = Vec::new();
    let mut t = Totals::default();
    for (name, task) in tasks {
        match task.await {
            Ok((requests, refused, checked, failed, took)) => {
                eprintln!(
                    "{name:<62} {requests:>4} requests, {refused:>3} refused, {failed} failed operation(s), {:.1}s",
                    took.as_secs_f64()
                );
                t.requests += requests;
                t.refused += refused;
                t.retries_checked += checked;
                t.failed_operations += failed;
            }
            Err(e) => failures.push(format!("{name}: {}", panic_text(e))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!(
        "total: {} requests, {} refused with 429/503 ({:.0}%), {} retries checked against Retry-After, {} failed operations, {:.1}s",
        t.requests,
        t.refused,
        100.0 * t.refused as f64 / t.requests.max(1) as f64,
        t.retries_checked,
        t.failed_operations,
        started.elapsed().as_secs_f64()
    );
    // The faults really happened (else this test proves nothing).
    let rate = t.refused as f64 / t.requests.max(1) as f64;
    assert!(rate > 0.15, "only {:.0}% of requests refused", rate * 100.0);
    assert!(
        t.retries_checked > 20,
        "{} retries checked",
        t.retries_checked
    );
    assert!(
        t.failed_operations >= scenarios::ALL.len() - 3,
        "{} failed operations",
        t.failed_operations
    );
}

/// Azure answers the credential calls of the TLS backup 503 with a Retry-After longer than
/// the ARM client waits within one call (45 s > its 30 s budget): the call comes back at
/// once and the engine asks again only after that Retry-After — on Ready (a certificate
/// without a backup) and before a detach (which waits for the backup and never happens
/// without it). Before 1772a5c both paths came back after `busy_poll` (20 ms here).
/// (A 429 instead pauses the whole subscription in the client: every call fails fast with
/// the Retry-After, and the controller's error policy waits it out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_backup_refused_by_azure_is_asked_again_only_after_its_retry_after() {
    use amlops_emulator::{FaultKind, FaultMatch, FaultRule};
    use std::time::Duration;

    let w = World::new().await;
    for op in ["listClusterUserCredential", "listClusterAdminCredential"] {
        w.emu.inject_fault(FaultRule {
            id: 0,
            matcher: FaultMatch {
                path: Some(op.into()),
                ..Default::default()
            },
            kind: FaultKind::Status {
                status: 503,
                retry_after_secs: Some(45),
            },
            times: None,
            probability: None,
        });
    }
    let d = common::ic(
        "tlsra",
        "vmSize: Standard_D4_v2\ntls: {mode: Auto, leafDomainLabel: contoso}",
    );
    w.ready(&d).await;
    let credential_calls = || {
        w.emu
            .requests()
            .iter()
            .filter(|r| r.path.contains("Credential"))
            .count()
    };

    // Ready, certificate not backed up yet: the next try waits for Azure.
    let before = credential_calls();
    let started = std::time::Instant::now();
    let out = w.engine.reconcile(&d, w.status(&d)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the client must not sit out a 45 s Retry-After inside the reconcile"
    );
    assert!(common::is_ready(&out.status, &d), "Ready either way");
    assert_eq!(
        credential_calls() - before,
        1,
        "a passing failure of the user credential is waited out, not escalated to the admin credential"
    );
    assert!(
        out.requeue >= Some(Duration::from_secs(45)),
        "asked again after {:?}, Azure said 45 s",
        out.requeue
    );

    // A reattach needs the backup first: it waits for Azure too, and does not detach.
    let mut d2 = d.clone();
    d2.reattach_token = Some("r1".into());
    let out = w.engine.reconcile(&d2, w.status(&d2)).await.unwrap();
    let reconciling = common::condition(&out.status, "Reconciling").expect("Reconciling");
    assert_eq!(reconciling.reason, "TLSBackupRetrying", "{reconciling:?}");
    assert!(
        out.requeue >= Some(Duration::from_secs(45)),
        "asked again after {:?}, Azure said 45 s",
        out.requeue
    );
    w.expect_accepted("DELETE", "", "", 0, "no detach without the certificate");
}
