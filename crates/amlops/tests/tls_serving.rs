//! Certificates are checked before they are sent (`InvalidCertificate`): the
//! engine against the emulator over HTTP refuses, with no Azure write, a Custom certificate
//! that does not cover `tls.cname` or has expired — also as a rotation of a serving one,
//! which keeps serving the old certificate.

use amlops_testkit as common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

/// A self-signed certificate for `host` valid from `from_days` to `to_days` around now.
fn secret_with(name: &str, host: &str, from_days: i64, to_days: i64) -> Secret {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).expect("params");
    let day = |days: i64| {
        let z = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * days))
            .expect("date")
            .to_zoned(jiff::tz::TimeZone::UTC);
        rcgen::date_time_ymd(i32::from(z.year()), z.month() as u8, z.day() as u8)
    };
    params.not_before = day(from_days);
    params.not_after = day(to_days);
    let cert = params.self_signed(&key).expect("cert");
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".into(), ByteString(cert.pem().into_bytes())),
            (
                "tls.key".into(),
                ByteString(key.serialize_pem().into_bytes()),
            ),
        ])),
        ..Default::default()
    }
}

fn stall_message(st: &amlops::crd::ClusterStatus) -> String {
    condition(st, "Stalled")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused_before_any_write() {
    let w = World::new().await;
    w.store
        .insert_secret(secret_with("wrong-tls", "api.contoso.com", -1, 90));
    let d = ca(
        "wronghost",
        "shared",
        "tls: {mode: Custom, cname: scoring.contoso.com, secretRef: {name: wrong-tls}}",
    );
    let st = w.stalled(&d, "InvalidCertificate").await;
    let m = stall_message(&st);
    assert!(
        m.contains("not valid for tls.cname scoring.contoso.com") && m.contains("api.contoso.com"),
        "{m}"
    );
    assert!(w.writes().is_empty(), "no Azure write: {:?}", w.brief_log());
    // Fixed in place: the Secret now covers the cname, and the attach goes ahead.
    w.store
        .insert_secret(secret_with("wrong-tls", "scoring.contoso.com", -1, 90));
    w.ready(&d).await;
}

#[tokio::test]
async fn an_expired_rotation_keeps_the_old_certificate_serving() {
    let w = World::new().await;
    let (good, fp) = tls_secret("rot-tls", "scoring.contoso.com");
    w.store.insert_secret(good);
    let d = ca(
        "expiredrot",
        "shared",
        "tls: {mode: Custom, cname: scoring.contoso.com, secretRef: {name: rot-tls}}",
    );
    w.ready(&d).await;
    let writes = w.writes().len();
    w.store
        .insert_secret(secret_with("rot-tls", "scoring.contoso.com", -100, -1));
    let st = w.stalled(&d, "InvalidCertificate").await;
    assert!(
        stall_message(&st).contains("expired at"),
        "{}",
        stall_message(&st)
    );
    assert_eq!(
        w.writes().len(),
        writes,
        "no detach, no update: {:?}",
        w.brief_log()
    );
    assert_eq!(
        w.served_fingerprint(&aks_id("shared")),
        Some(fp),
        "the old certificate keeps serving"
    );
}

fn ready_message(s: &amlops::crd::ClusterStatus) -> String {
    condition(s, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Azure refuses the in-place TLS change (400): the rotation goes through detach +
/// reattach instead, the certificate backed up first, and a Warning says so.
#[tokio::test]
async fn a_refused_in_place_change_falls_back_to_a_reattach() {
    use amlops_emulator::{FaultKind, FaultMatch, FaultRule};
    let w = World::new().await;
    let (a, _) = tls_secret("fb-tls", "scoring.contoso.com");
    w.store.insert_secret(a);
    let d = ca(
        "fallback1",
        "shared",
        "tls: {mode: Custom, cname: scoring.contoso.com, secretRef: {name: fb-tls}}",
    );
    w.ready(&d).await;
    w.emu.clear_requests();
    w.emu.inject_fault(FaultRule {
        id: 0,
        matcher: FaultMatch {
            method: Some("PUT".into()),
            path: Some("/computes/fallback1".into()),
            operation: None,
        },
        kind: FaultKind::BadRequest {
            code: "BadArgument".into(),
            message: "SSL configuration cannot be updated for this compute.".into(),
        },
        times: Some(1),
        probability: None,
    });
    let (b, fb) = tls_secret("fb-tls", "scoring.contoso.com");
    w.store.insert_secret(b);
    let st = w
        .converge(&d, "serving the rotated certificate", |s, _| {
            is_ready(s, &d) && tls_fp(s).as_deref() == Some(fb.as_str())
        })
        .await;
    assert_eq!(w.served_fingerprint(&aks_id("shared")), Some(fb.clone()));
    assert!(st.reattach_required.is_none());
    let refused = w
        .events(&d)
        .into_iter()
        .find(|e| e.reason == "TLSUpdateRefused")
        .expect("an Event says why it detaches");
    assert!(
        refused.warning
            && refused
                .message
                .contains("SSL configuration cannot be updated")
            && refused.message.contains("detach + reattach"),
        "{refused:?}"
    );
    let log = w.emu.requests();
    let at = |m: &str, p: &str| {
        log.iter()
            .position(|r| r.method == m && r.path.contains(p) && (200..300).contains(&r.status))
    };
    let read = at("GET", "azuremlfessl").expect("backup read");
    let detach = at("DELETE", "/computes/fallback1").expect("detach");
    assert!(read < detach, "backed up before the detach");
    assert_eq!(
        w.accepted("DELETE", "/computes/fallback1", "Detach").len(),
        1
    );
}

/// Microsoft-issued certificates: a Warning and a line on Ready within 30 days of
/// `notAfter`, once per threshold; renewal in place by annotation (same host name, new
/// certificate, no detach); `tls.autoRenew` renews once and not again while the renewed
/// certificate is young.
#[tokio::test]
async fn auto_certificates_are_watched_and_renewed_in_place() {
    let w = World::new().await;
    w.emu
        .set_auto_certificate_lifetime(std::time::Duration::from_secs(20 * 86_400));
    let d = ic("expiring", "tls: {mode: Auto, leafDomainLabel: contoso}");
    let st = w
        .converge(&d, "Ready with the certificate read", |s, _| {
            is_ready(s, &d) && tls_fp(s).is_some()
        })
        .await;
    let host = st.cluster_fqdn.clone().expect("fqdn");
    let first = tls_fp(&st).expect("fingerprint");
    // The status is written again on the next reconcile, with the expiry line.
    let st = w.ready(&d).await;
    let msg = ready_message(&st);
    assert!(
        msg.contains("day(s)") && msg.contains("amlops.dev/renew-certificate"),
        "{msg}"
    );
    w.ready(&d).await;
    let expiring = |d: &amlops::engine::Desired| {
        w.events(d)
            .into_iter()
            .filter(|e| e.reason == "CertificateExpiring")
            .count()
    };
    assert_eq!(expiring(&d), 1, "one Warning per threshold");
    assert_eq!(st.certificate_expiry_warning, Some(30));

    // Renewal by annotation.
    w.emu.clear_requests();
    let mut d2 = d.clone();
    d2.renew_token = Some("r1".into());
    let st = w
        .converge(&d2, "renewed", |s, _| {
            is_ready(s, &d2)
                && s.last_renew_token.as_deref() == Some("r1")
                && tls_fp(s).is_some_and(|f| f != first)
        })
        .await;
    assert_eq!(st.cluster_fqdn.as_deref(), Some(host.as_str()), "same host");
    assert_eq!(
        w.served_fingerprint(&st.aks_resource_id.clone().expect("aks")),
        tls_fp(&st)
    );
    assert_eq!(w.accepted("PUT", "/computes/expiring", "").len(), 1);
    assert!(w.accepted("DELETE", "", "").is_empty(), "no detach");
    assert!(
        w.events(&d2)
            .iter()
            .any(|e| e.reason == "CertificateRenewing")
    );

    // autoRenew from the start: one renewal, then quiet (the renewed certificate has 20
    // days too, but was renewed less than a day ago).
    let auto = ic(
        "autorenew",
        "tls: {mode: Auto, leafDomainLabel: fabrikam, autoRenew: true}",
    );
    w.emu.clear_requests();
    w.converge(&auto, "renewed on its own", |s, _| {
        is_ready(s, &auto) && s.certificate_renewed_at.is_some() && tls_fp(s).is_some()
    })
    .await;
    for _ in 0..4 {
        w.ready(&auto).await;
    }
    assert_eq!(
        w.accepted("PUT", "/computes/autorenew", "").len(),
        2,
        "create + one renewal"
    );
}

/// A private cluster's API server cannot be reached from the operator: the backup of an
/// Auto certificate goes through AKS Run Command (item: backups where the API server is not
/// reachable), is verified and recorded, and a reattach then goes ahead.
#[tokio::test]
async fn a_private_cluster_is_backed_up_through_run_command() {
    use amlops_emulator::ClusterSeed;
    let w = World::new().await;
    w.emu.seed_aks_cluster(
        SUB,
        ClusterSeed {
            resource_group: "aks-rg".into(),
            name: "private2".into(),
            private: true,
            private_public_fqdn: Some(false),
            ..ClusterSeed::default()
        },
    );
    let d = ca(
        "privrc",
        "private2",
        "tls: {mode: Auto, leafDomainLabel: privrc}",
    );
    let st = w
        .converge(&d, "Ready with the certificate backed up", |s, _| {
            is_ready(s, &d) && tls_fp(s).is_some()
        })
        .await;
    let aks = aks_id("private2");
    assert_eq!(tls_fp(&st), w.served_fingerprint(&aks));
    assert_eq!(
        secret_fingerprint(&w.store, "privrc-tls-backup"),
        w.served_fingerprint(&aks)
    );
    assert!(
        !w.accepted("POST", "/runCommand", "").is_empty(),
        "read through AKS Run Command"
    );
    assert!(
        !w.events(&d).iter().any(|e| e.reason == "TLSBackupFailed"),
        "{:?}",
        w.events(&d)
    );
}
