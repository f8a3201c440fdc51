//! Certificates are checked before they are sent (`InvalidCertificate`): the
//! engine against the emulator over HTTP refuses, with no Azure write, a Custom certificate
//! that does not cover `tls.cname` or has expired — also as a rotation of a serving one,
//! which keeps serving the old certificate.

mod common;

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
