//! Certificate and key checks: both parse, the key belongs to the certificate.

use sha2::{Digest, Sha256};
use x509_parser::pem::parse_x509_pem;

use super::TlsError;

/// Facts about a verified certificate (no secret in here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub sha256_fingerprint: String,
    /// Expiry, RFC 3339.
    pub not_after: String,
    /// Subject common name or first DNS name, when present.
    pub hostname: Option<String>,
}

/// Parse `cert_pem` (first certificate of the chain) and `key_pem` (PKCS#8) and check that
/// the key's public key is the certificate's.
pub fn verify_pair(cert_pem: &str, key_pem: &str) -> Result<CertInfo, TlsError> {
    let invalid = |m: String| TlsError::InvalidCertificate(m);
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).map_err(|_| {
        invalid("the certificate is not PEM (expected -----BEGIN CERTIFICATE-----)".into())
    })?;
    let cert = pem
        .parse_x509()
        .map_err(|_| invalid("the certificate PEM does not hold an X.509 certificate".into()))?;
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|_| {
        invalid("the key is not a PKCS#8 PEM private key (convert with `openssl pkcs8 -topk8 -nocrypt`)".into())
    })?;
    if rcgen::PublicKeyData::subject_public_key_info(&key) != cert.public_key().raw {
        return Err(invalid(
            "the private key does not belong to the certificate".into(),
        ));
    }
    let not_after = cert.validity().not_after.to_datetime();
    let not_after = jiff::Timestamp::from_second(not_after.unix_timestamp())
        .map(|t| t.to_string())
        .unwrap_or_default();
    let hostname = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
        })
        .or_else(|| {
            cert.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok().map(str::to_string))
        });
    Ok(CertInfo {
        sha256_fingerprint: hex::encode(Sha256::digest(&pem.contents)),
        not_after,
        hostname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn matching_pair_is_accepted() {
        let (cert, key) = pair("scoring.contoso.com");
        let info = verify_pair(&cert, &key).unwrap();
        assert_eq!(info.sha256_fingerprint.len(), 64);
        assert_eq!(info.hostname.as_deref(), Some("scoring.contoso.com"));
        assert!(info.not_after.starts_with(char::is_numeric));
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
}
