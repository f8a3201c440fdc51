//! The demo as a scenario test: the engine drives every example against the emulator over
//! real HTTP to Ready, switches TLS in place to the backed-up certificate (same fingerprint
//! served afterwards, no detach before the deletion), and deletes everything.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_converges_and_preserves_the_certificate() {
    let mut out = Vec::new();
    let s = amlops_dev::demo::run(std::time::Duration::from_millis(50), &mut out, false)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(s.fingerprint_before.is_some(), "{text}");
    assert_eq!(s.fingerprint_before, s.fingerprint_after, "{text}");
    assert_eq!(s.computes_left, 0, "{text}");
    let public = &s.histories["InferenceCluster public-scoring"];
    for phase in ["Creating", "Ready", "Updating", "Gone"] {
        assert!(
            public.iter().any(|p| p == phase),
            "{phase} missing from {public:?}\n{text}"
        );
    }
    // Ready → Updating → Ready: the TLS change did not go through Detaching/Reattaching.
    let updating = public
        .iter()
        .position(|p| p == "Updating")
        .expect("Updating");
    assert_eq!(
        public.get(updating + 1).map(String::as_str),
        Some("Ready"),
        "the TLS change detached: {public:?}"
    );
    assert_eq!(
        public.iter().filter(|p| *p == "Reattaching").count(),
        0,
        "{public:?}"
    );
    // The Kubernetes compute path: both computes attached (team-a's namespace created
    // first), then detached.
    let a = &s.kubernetes_computes["KubernetesCompute team-a"];
    for reason in ["CreatingNamespace", "Attaching", "Attached", "Gone"] {
        assert!(
            a.iter().any(|r| r == reason),
            "{reason} missing from {a:?}\n{text}"
        );
    }
    let b = &s.kubernetes_computes["KubernetesCompute team-b"];
    assert!(!b.iter().any(|r| r == "CreatingNamespace"), "{b:?}");
    assert_eq!(b.last().map(String::as_str), Some("Gone"), "{b:?}");
    assert!(b.iter().any(|r| r == "Attached"), "{b:?}");
    // The extension of examples/07, installed by amlops before the computes attach, its
    // instance types applied once the InstanceType CRD appeared, uninstalled at the end.
    let e = &s.kubernetes_computes["AzureMLExtension shared-azureml"];
    for reason in [
        "Installing",
        "WaitingForInstanceTypeCRD",
        "ApplyingInstanceTypes",
        "Installed",
        "Gone",
    ] {
        assert!(
            e.iter().any(|r| r == reason),
            "{reason} missing from {e:?}\n{text}"
        );
    }
    assert!(
        text.contains("instance types defaultinstancetype, gpu-small"),
        "{text}"
    );
    for (name, h) in &s.histories {
        assert!(
            h.contains(&"Ready".to_string()) && h.last().map(String::as_str) == Some("Gone"),
            "{name}: {h:?}"
        );
    }
}
