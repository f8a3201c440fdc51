//! Certificate and key checks.
//!
//! Two levels:
//! - [`verify_pair`]: both parse and the key belongs to the certificate. Enough to *keep*
//!   material (a backup of `azuremlfessl` is worth keeping even when it has expired).
//! - [`check_serving`]: what a certificate must also satisfy before it is *sent* to Azure ML
//!   to be served: inside its validity period, valid for `tls.cname` (subjectAltName DNS
//!   names, RFC 6125 wildcard rules, as browsers and rustls match them), and a chain in
//!   serving order (leaf first, each certificate issued by the next). Azure ML accepts a
//!   PEM that fails these and the endpoint then fails every TLS handshake, so the operator
//!   refuses it first (`InvalidCertificate`).

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

use super::TlsError;

/// Facts about a verified certificate (no secret in here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the leaf certificate's DER, lowercase hex.
    pub sha256_fingerprint: String,
    /// Start of validity (`notBefore`), RFC 3339.
    pub not_before: String,
    /// Expiry (`notAfter`), RFC 3339.
    pub not_after: String,
    /// Subject common name or first DNS name, when present.
    pub hostname: Option<String>,
    /// The subjectAltName DNS names (wildcards as written, e.g. `*.contoso.com`).
    pub dns_names: Vec<String>,
}

impl CertInfo {
    /// `notAfter` as a timestamp (`None` when it could not be represented).
    pub fn not_after_timestamp(&self) -> Option<jiff::Timestamp> {
        self.not_after.parse().ok()
    }
}

fn invalid(m: impl Into<String>) -> TlsError {
    TlsError::InvalidCertificate(m.into())
}

/// Every `CERTIFICATE` block of `cert_pem`, in order, as DER.
fn pem_chain(cert_pem: &str) -> Result<Vec<Pem>, TlsError> {
    let not_pem = || invalid("the certificate is not PEM (expected -----BEGIN CERTIFICATE-----)");
    let mut chain = Vec::new();
    for block in Pem::iter_from_buffer(cert_pem.as_bytes()) {
        let block = block.map_err(|_| not_pem())?;
        if block.label == "CERTIFICATE" {
            chain.push(block);
        }
    }
    if chain.is_empty() {
        return Err(not_pem());
    }
    Ok(chain)
}

fn parse(pem: &Pem) -> Result<X509Certificate<'_>, TlsError> {
    pem.parse_x509()
        .map_err(|_| invalid("the certificate PEM does not hold an X.509 certificate"))
}

fn timestamp(t: x509_parser::time::ASN1Time) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_second(t.timestamp()).ok()
}

fn subject(cert: &X509Certificate<'_>) -> String {
    cert.subject().to_string()
}

/// Parse `cert_pem` (the first certificate of the chain) and `key_pem` (PKCS#8) and check
/// that the key's public key is the certificate's.
///
/// # Errors
/// [`TlsError::InvalidCertificate`] with what is wrong (never any key material).
pub fn verify_pair(cert_pem: &str, key_pem: &str) -> Result<CertInfo, TlsError> {
    let chain = pem_chain(cert_pem)?;
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|_| {
        invalid("the key is not a PKCS#8 PEM private key (convert with `openssl pkcs8 -topk8 -nocrypt`)")
    })?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let leaf = parse(&chain[0])?;
    if spki != leaf.public_key().raw {
        // A chain pasted issuer-first is a common mistake: say so rather than "no match".
        for (i, pem) in chain.iter().enumerate().skip(1) {
            if parse(pem).is_ok_and(|c| spki == c.public_key().raw) {
                return Err(invalid(format!(
                    "the certificate chain is out of order: the private key belongs to certificate {} of {} ({}); put that certificate first, then each issuer",
                    i + 1,
                    chain.len(),
                    parse(pem).map(|c| subject(&c)).unwrap_or_default()
                )));
            }
        }
        return Err(invalid(
            "the private key does not belong to the certificate",
        ));
    }
    let dns_names: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let hostname = dns_names.first().cloned().or_else(|| {
        leaf.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok().map(str::to_string))
    });
    let rfc3339 = |t| timestamp(t).map(|t| t.to_string()).unwrap_or_default();
    Ok(CertInfo {
        sha256_fingerprint: hex::encode(Sha256::digest(&chain[0].contents)),
        not_before: rfc3339(leaf.validity().not_before),
        not_after: rfc3339(leaf.validity().not_after),
        hostname,
        dns_names,
    })
}

/// [`verify_pair`], plus what serving needs at `now`: every certificate of the chain within
/// its validity period, the leaf valid for `cname` (when given), and the chain in serving
/// order — leaf first, each certificate issued (name and signature) by the next one, as
/// TLS 1.2/1.3 require (RFC 8446 §4.4.2 keeps the leaf first).
///
/// Hostname matching is rustls-webpki's (RFC 6125: subjectAltName DNS names only — the
/// subject common name is ignored, as by every current browser — and a wildcard covers
/// exactly one leftmost label).
///
/// # Errors
/// [`TlsError::InvalidCertificate`] naming the first problem and how to fix it.
pub fn check_serving(
    cert_pem: &str,
    key_pem: &str,
    cname: Option<&str>,
    now: jiff::Timestamp,
) -> Result<CertInfo, TlsError> {
    let info = verify_pair(cert_pem, key_pem)?;
    let chain = pem_chain(cert_pem)?;
    let certs = chain.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
    for (i, cert) in certs.iter().enumerate() {
        let which = if i == 0 {
            "the certificate".to_string()
        } else {
            format!("chain certificate {} ({})", i + 1, subject(cert))
        };
        let validity = cert.validity();
        if let Some(nb) = timestamp(validity.not_before)
            && now < nb
        {
            return Err(invalid(format!(
                "{which} is not valid yet: its validity starts at {nb} (notBefore); use a certificate valid now or wait"
            )));
        }
        if let Some(na) = timestamp(validity.not_after)
            && now >= na
        {
            return Err(invalid(format!(
                "{which} expired at {na} (notAfter): renew it and update the Secret"
            )));
        }
    }
    for pair in certs.windows(2) {
        let (child, issuer) = (&pair[0], &pair[1]);
        let signed = child.issuer() == issuer.subject()
            && child.verify_signature(Some(issuer.public_key())).is_ok();
        if !signed {
            return Err(invalid(format!(
                "the certificate chain is out of order or incomplete: {} was not issued by the certificate that follows it ({}); order the PEM leaf first, then each issuer up to the root",
                subject(child),
                subject(issuer)
            )));
        }
    }
    if let Some(cname) = cname {
        covers(&chain[0], cname, &info)?;
    }
    Ok(info)
}

fn covers(leaf: &Pem, cname: &str, info: &CertInfo) -> Result<(), TlsError> {
    let name = rustls_pki_types::ServerName::try_from(cname)
        .map_err(|_| invalid(format!("tls.cname {cname:?} is not a DNS name")))?;
    let der = rustls_pki_types::CertificateDer::from(leaf.contents.as_slice());
    let ee = webpki::EndEntityCert::try_from(&der).map_err(|e| {
        invalid(format!(
            "the certificate cannot be used by a TLS server ({e:?})"
        ))
    })?;
    ee.verify_is_valid_for_subject_name(&name).map_err(|_| {
        let names = if info.dns_names.is_empty() {
            "it has no subjectAltName DNS names (clients ignore the subject common name)".to_string()
        } else {
            format!("its subjectAltName DNS names are {}", info.dns_names.join(", "))
        };
        invalid(format!(
            "the certificate is not valid for tls.cname {cname}: {names}; issue one that covers {cname} or change tls.cname"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> rcgen::KeyPair {
        rcgen::KeyPair::generate().unwrap()
    }

    fn params(names: &[&str], from_days: i64, to_days: i64) -> rcgen::CertificateParams {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let day = |days: i64| {
            let z = now()
                .checked_add(jiff::SignedDuration::from_hours(24 * days))
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::UTC);
            rcgen::date_time_ymd(i32::from(z.year()), z.month() as u8, z.day() as u8)
        };
        p.not_before = day(from_days);
        p.not_after = day(to_days);
        p
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn pair(host: &str) -> (String, String) {
        let k = key();
        let cert = params(&[host], -1, 90).self_signed(&k).unwrap();
        (cert.pem(), k.serialize_pem())
    }

    /// A leaf issued by an intermediate issued by a root: (leaf, intermediate, root, leaf key).
    fn chain(host: &str) -> (String, String, String, String) {
        let root_key = key();
        let mut rp = params(&[], -10, 3650);
        rp.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rp.distinguished_name
            .push(rcgen::DnType::CommonName, "Test Root");
        let root = rp.self_signed(&root_key).unwrap();
        let root_issuer = rcgen::Issuer::new(rp, &root_key);
        let int_key = key();
        let mut ip = params(&[], -10, 3650);
        ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ip.distinguished_name
            .push(rcgen::DnType::CommonName, "Test Intermediate");
        let int = ip.signed_by(&int_key, &root_issuer).unwrap();
        let int_issuer = rcgen::Issuer::new(ip, &int_key);
        let leaf_key = key();
        let leaf = params(&[host], -1, 90)
            .signed_by(&leaf_key, &int_issuer)
            .unwrap();
        (leaf.pem(), int.pem(), root.pem(), leaf_key.serialize_pem())
    }

    #[test]
    fn matching_pair_is_accepted() {
        let (cert, key) = pair("scoring.contoso.com");
        let info = verify_pair(&cert, &key).unwrap();
        assert_eq!(info.sha256_fingerprint.len(), 64);
        assert_eq!(info.hostname.as_deref(), Some("scoring.contoso.com"));
        assert_eq!(info.dns_names, ["scoring.contoso.com"]);
        assert!(info.not_after.starts_with(char::is_numeric));
        assert!(info.not_after_timestamp().unwrap() > now());
    }

    #[test]
    fn mismatches_and_garbage_are_refused() {
        let (cert, _) = pair("a.contoso.com");
        let (_, other_key) = pair("b.contoso.com");
        let cases = [
            (cert.as_str(), other_key.as_str(), "does not belong"),
            ("not a cert", other_key.as_str(), "not PEM"),
            (cert.as_str(), "garbage", "PKCS#8"),
        ];
        for (c, k, fragment) in cases {
            let err = verify_pair(c, k).unwrap_err().to_string();
            assert!(err.contains(fragment), "{err}");
            assert!(
                !err.contains("PRIVATE KEY-----\n"),
                "no key material in errors"
            );
        }
    }

    /// One row per way a serving certificate goes wrong in real life, with the words the
    /// user sees; `None` means accepted.
    #[test]
    fn serving_checks_table() {
        let (leaf, int, root, leaf_key) = chain("scoring.contoso.com");
        let good_chain = format!("{leaf}{int}{root}");
        let k = key();
        let expired = params(&["scoring.contoso.com"], -100, -1)
            .self_signed(&k)
            .unwrap()
            .pem();
        let future = params(&["scoring.contoso.com"], 2, 90)
            .self_signed(&k)
            .unwrap()
            .pem();
        let wildcard = params(&["*.contoso.com"], -1, 90)
            .self_signed(&k)
            .unwrap()
            .pem();
        let mut cn_only_params = params(&[], -1, 90);
        cn_only_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "scoring.contoso.com");
        let cn_only = cn_only_params.self_signed(&k).unwrap().pem();
        let k_pem = k.serialize_pem();
        let cname = Some("scoring.contoso.com");
        /// (case, certificate chain PEM, key PEM, tls.cname, expected error fragment)
        type Row<'a> = (&'a str, String, &'a str, Option<&'a str>, Option<&'a str>);
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("leaf + intermediate + root", good_chain.clone(), &leaf_key, cname, None),
            ("leaf alone", leaf.clone(), &leaf_key, cname, None),
            ("no cname to check", leaf.clone(), &leaf_key, None, None),
            ("cname case and trailing dot", leaf.clone(), &leaf_key, Some("Scoring.Contoso.com"), None),
            ("other host", leaf.clone(), &leaf_key, Some("api.contoso.com"), Some("not valid for tls.cname api.contoso.com: its subjectAltName DNS names are scoring.contoso.com")),
            ("wildcard covers one label", wildcard.clone(), &k_pem, cname, None),
            ("wildcard does not cover the apex", wildcard.clone(), &k_pem, Some("contoso.com"), Some("not valid for tls.cname contoso.com")),
            ("wildcard does not cover two labels", wildcard.clone(), &k_pem, Some("a.scoring.contoso.com"), Some("*.contoso.com")),
            ("common name only", cn_only, &k_pem, cname, Some("no subjectAltName DNS names")),
            ("expired", expired, &k_pem, cname, Some("expired at")),
            ("not yet valid", future, &k_pem, cname, Some("not valid yet")),
            ("issuer before leaf", format!("{int}{leaf}"), &leaf_key, cname, Some("out of order: the private key belongs to certificate 2 of 2")),
            ("root before intermediate", format!("{leaf}{root}{int}"), &leaf_key, cname, Some("was not issued by the certificate that follows it (CN=Test Root)")),
            ("intermediate missing", format!("{leaf}{root}"), &leaf_key, cname, Some("out of order or incomplete")),
        ];
        let mut failures = Vec::new();
        for (name, cert, key, cname, want) in rows {
            let got = check_serving(&cert, key, cname, now());
            match (want, &got) {
                (None, Ok(_)) => {}
                (Some(fragment), Err(e)) if e.to_string().contains(fragment) => {
                    assert_eq!(e.reason(), "InvalidCertificate");
                }
                _ => failures.push(format!("{name}: want {want:?}, got {got:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
