//! Reading `azuremlfessl` from an AKS cluster the way that works for it, against the
//! emulator over HTTP: the user kubeconfig for a reachable API server, the AKS Run Command
//! API for a private one (up front, or after the connection fails).

use amlops_testkit as common;

use amlops::tls::{self, TlsError};
use amlops_emulator::ClusterSeed;
use common::{SUB, World, aks_id, ca};

fn seed(w: &World, name: &str, private: bool) {
    w.emu.seed_aks_cluster(
        SUB,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: name.into(),
            private,
            // Azure ML attaches a private cluster only without its public FQDN.
            private_public_fqdn: Some(false),
            ..ClusterSeed::default()
        },
    );
}

/// Attach `aks` with a Microsoft-issued certificate, so that Azure ML writes `azuremlfessl`.
async fn attached_with_tls(w: &World, aks: &str) -> String {
    seed(w, aks, aks.starts_with("private"));
    let d = ca(
        &format!("{aks}att"),
        aks,
        &format!("clusterPurpose: DevTest\ntls: {{mode: Auto, leafDomainLabel: {aks}}}"),
    );
    w.ready(&d).await;
    w.emu
        .state()
        .cluster(aks)
        .and_then(|c| c.azuremlfessl.clone())
        .expect("azuremlfessl on the cluster")
        .cert_pem
}

fn run_commands(w: &World) -> (usize, usize) {
    let log = w.emu.requests();
    let count = |m: &str, p: &str| {
        log.iter()
            .filter(|r| r.method == m && r.path.contains(p))
            .count()
    };
    (
        count("POST", "/runCommand"),
        count("GET", "/commandResults/"),
    )
}

fn id(name: &str) -> amlops::azure::ResourceId {
    aks_id(name).parse().expect("AKS id")
}

#[tokio::test]
async fn a_reachable_cluster_is_read_through_its_kubeconfig() {
    let w = World::new().await;
    let want = attached_with_tls(&w, "public1").await;
    w.emu.clear_requests();
    let (cert, key) =
        tls::read_azuremlfessl_from_aks(&w.engine.arm, &id("public1"), "default", false)
            .await
            .expect("read");
    assert_eq!(cert, want);
    assert!(tls::verify_pair(&cert, &key).is_ok());
    assert_eq!(
        run_commands(&w),
        (0, 0),
        "no Run Command when the API server answers"
    );
}

#[tokio::test]
async fn a_private_cluster_is_read_through_run_command() {
    let w = World::new().await;
    let want = attached_with_tls(&w, "private1").await;
    // Known private (apiServerAccessProfile.enablePrivateCluster): straight to Run Command.
    w.emu.clear_requests();
    let (cert, _) =
        tls::read_azuremlfessl_from_aks(&w.engine.arm, &id("private1"), "default", true)
            .await
            .expect("read through Run Command");
    assert_eq!(cert, want);
    let (posts, polls) = run_commands(&w);
    assert_eq!(posts, 1, "one command");
    assert!(polls >= 1, "its result is polled");
    // Not known private: the direct read fails to connect, then Run Command.
    w.emu.clear_requests();
    let (cert, _) =
        tls::read_azuremlfessl_from_aks(&w.engine.arm, &id("private1"), "default", false)
            .await
            .expect("fallback to Run Command");
    assert_eq!(cert, want);
    assert_eq!(run_commands(&w).0, 1);
}

#[tokio::test]
async fn run_command_reports_a_missing_secret_and_never_quotes_its_output() {
    let w = World::new().await;
    seed(&w, "private2", true);
    let err = tls::read_azuremlfessl_from_aks(&w.engine.arm, &id("private2"), "default", true)
        .await
        .expect_err("nothing to read");
    assert!(
        matches!(&err, TlsError::BackupFailed(m) if m.contains("default/azuremlfessl does not exist")),
        "{err}"
    );
    assert_eq!(err.reason(), "TLSBackupFailed");
    // A namespace that is not a DNS label never reaches the command line.
    let err = tls::read_azuremlfessl_by_run_command(
        &w.engine.arm,
        &id("private2"),
        "default; rm -rf /",
        None,
        tls::RUN_COMMAND_DEADLINE,
    )
    .await
    .expect_err("refused");
    assert!(
        err.to_string().contains("not a Kubernetes namespace name"),
        "{err}"
    );
    assert_eq!(run_commands(&w).0, 1, "only the first call ran a command");
}

#[tokio::test]
async fn run_command_output_never_reaches_errors_or_debug() {
    let w = World::new().await;
    let cert = attached_with_tls(&w, "private3").await;
    // The command's output holds the key: Debug of every stage shows its length only.
    let arm = &w.engine.arm;
    let poll = arm
        .run_command(
            &id("private3"),
            "kubectl get secret azuremlfessl -n default -o json",
            None,
        )
        .await
        .expect("started");
    let shown = format!("{poll:?}");
    assert!(!shown.contains("BEGIN"), "{shown}");
    let mut poll = poll;
    for _ in 0..100 {
        match poll {
            amlops::azure::run_command::CommandPoll::Running { location, .. } => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                poll = arm.command_result(&location).await.expect("poll");
            }
            amlops::azure::run_command::CommandPoll::Finished(ref r) => {
                let shown = format!("{r:?}");
                assert!(!shown.contains("key.pem"), "{shown}");
                assert!(r.logs.expose().contains("cert.pem"));
                assert!(!cert.is_empty());
                return;
            }
        }
    }
    panic!("the command did not finish");
}
