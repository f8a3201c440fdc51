//! The example manifests of `examples/`, embedded so the demo and the tests run from any
//! directory, and the TLS Secrets they name.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

/// The example manifests, embedded so the demo runs from any directory.
pub const EXAMPLES: [(&str, &str); 5] = [
    (
        "01-minimal-create.yaml",
        include_str!("../../../examples/01-minimal-create.yaml"),
    ),
    (
        "02-create-vnet-ilb.yaml",
        include_str!("../../../examples/02-create-vnet-ilb.yaml"),
    ),
    (
        "03-create-auto-tls.yaml",
        include_str!("../../../examples/03-create-auto-tls.yaml"),
    ),
    (
        "04-attach-custom-tls.yaml",
        include_str!("../../../examples/04-attach-custom-tls.yaml"),
    ),
    (
        "05-attach-devtest.yaml",
        include_str!("../../../examples/05-attach-devtest.yaml"),
    ),
];

/// The Kubernetes compute path's example (shown after the legacy kinds).
pub const KUBERNETES_COMPUTE_EXAMPLE: (&str, &str) = (
    "06-kubernetes-compute-two-teams.yaml",
    include_str!("../../../examples/06-kubernetes-compute-two-teams.yaml"),
);

/// The extension the Kubernetes compute path's computes run on (its `AzureMLExtension`
/// document; the file's `KubernetesCompute` is not used by the demo).
pub const EXTENSION_EXAMPLE: (&str, &str) = (
    "07-extension-inference-tls.yaml",
    include_str!("../../../examples/07-extension-inference-tls.yaml"),
);

/// A `kubernetes.io/tls` Secret with a fresh self-signed certificate for `host`.
pub fn self_signed_tls_secret(namespace: &str, name: &str, host: &str) -> anyhow::Result<Secret> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])?.self_signed(&key)?;
    Ok(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
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
    })
}
