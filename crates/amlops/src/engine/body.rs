//! ARM request bodies for create, attach, reattach and in-place update (shapes of the `Microsoft.MachineLearningServices` computes API).

use crate::azure::ResourceId;
use crate::azure::config::Secret;
use crate::azure::model::{
    AksCompute, AksComputeResource, AksNetworkingConfiguration, AksProperties,
    ClusterPurpose as AzPurpose, LoadBalancerType as AzLb, SslConfigStatus, SslConfiguration,
};
use crate::crd::{ClusterPurpose, LoadBalancerType, NetworkSpec, TlsMode};

use super::desired::{Desired, Flavor};

/// Certificate and key to send (from the user's Secret or the backup).
#[derive(Clone)]
pub struct TlsMaterial {
    /// Certificate PEM.
    pub cert: String,
    /// Key PEM.
    pub key: String,
    /// Host name to serve (`cname`).
    pub cname: String,
}

fn purpose(p: ClusterPurpose) -> AzPurpose {
    match p {
        ClusterPurpose::FastProd => AzPurpose::FastProd,
        ClusterPurpose::DenseProd => AzPurpose::DenseProd,
        ClusterPurpose::DevTest => AzPurpose::DevTest,
    }
}

fn lb(t: LoadBalancerType) -> AzLb {
    match t {
        LoadBalancerType::PublicIp => AzLb::PublicIp,
        LoadBalancerType::InternalLoadBalancer => AzLb::InternalLoadBalancer,
    }
}

fn network(n: &NetworkSpec, subscription: &str) -> AksNetworkingConfiguration {
    let subnet_id = n.subnet_id.clone().or_else(|| {
        match (&n.vnet_resource_group, &n.vnet_name, &n.subnet_name) {
            (Some(rg), Some(vnet), Some(subnet)) => ResourceId::new(
                subscription,
                rg.as_str(),
                "Microsoft.Network",
                &[("virtualNetworks", vnet), ("subnets", subnet)],
            )
            .ok()
            .map(|id| id.to_string()),
            _ => None,
        }
    });
    AksNetworkingConfiguration {
        subnet_id,
        service_cidr: n.service_cidr.clone(),
        dns_service_ip: n.dns_service_ip.clone(),
        docker_bridge_cidr: n.docker_bridge_cidr.clone(),
    }
}

/// `sslConfiguration` for the desired TLS: Auto with the label, or Enabled with `material`.
/// `material` wins for Auto too when given: that is how a reattach keeps an Auto certificate.
pub fn ssl(d: &Desired, material: Option<&TlsMaterial>) -> SslConfiguration {
    match (d.tls.mode, material) {
        (TlsMode::Disabled, _) => SslConfiguration {
            status: Some(SslConfigStatus::Disabled),
            ..Default::default()
        },
        (_, Some(m)) => SslConfiguration {
            status: Some(SslConfigStatus::Enabled),
            cert: Some(Secret::new(m.cert.clone())),
            key: Some(Secret::new(m.key.clone())),
            cname: Some(m.cname.clone()),
            ..Default::default()
        },
        (TlsMode::Auto, None) => SslConfiguration {
            status: Some(SslConfigStatus::Auto),
            leaf_domain_label: d.tls.leaf_domain_label.clone(),
            overwrite_existing_domain: Some(d.tls.overwrite_existing_domain),
            ..Default::default()
        },
        // Custom without material cannot be built; callers stall with SecretNotFound first.
        (TlsMode::Custom, None) => SslConfiguration {
            status: Some(SslConfigStatus::Enabled),
            cname: d.tls.cname.clone(),
            ..Default::default()
        },
    }
}

/// The PUT body that creates (InferenceCluster) or attaches (ClusterAttachment, or any
/// reattach when `attach_to` is given) the compute in `location`.
pub fn provision_body(
    d: &Desired,
    location: &str,
    material: Option<&TlsMaterial>,
    attach_to: Option<&str>,
) -> AksComputeResource {
    let mut props = AksProperties {
        cluster_purpose: Some(purpose(d.purpose)),
        ssl_configuration: Some(ssl(d, material)),
        load_balancer_type: Some(lb(d.load_balancer.type_)),
        load_balancer_subnet: d.load_balancer.subnet.clone(),
        ..Default::default()
    };
    let mut compute = AksCompute {
        description: d.description.clone(),
        ..Default::default()
    };
    match (&d.flavor, attach_to) {
        (
            Flavor::Create {
                location: loc,
                agent_count,
                vm_size,
                network: net,
            },
            None,
        ) => {
            compute.compute_location = Some(loc.clone().unwrap_or_else(|| location.to_string()));
            props.agent_count = Some(*agent_count);
            props.agent_vm_size = Some(vm_size.clone());
            props.aks_networking_configuration = net
                .as_ref()
                .map(|n| network(n, &d.workspace.subscription_id));
        }
        (Flavor::Attach { aks_id }, None) => compute.resource_id = Some(aks_id.clone()),
        (_, Some(id)) => compute.resource_id = Some(id.to_string()),
    }
    compute.properties = Some(props);
    AksComputeResource::aks(location.to_string(), compute)
}

/// In-place update (the SDK's `AksUpdateConfiguration`): the current compute with the desired
/// load balancer and description.
pub fn update_body(current: &AksComputeResource, d: &Desired) -> AksComputeResource {
    let mut body = current.clone();
    if d.description.is_some() {
        body.properties.description = d.description.clone();
    }
    let props = body
        .properties
        .properties
        .get_or_insert_with(Default::default);
    props.load_balancer_type = Some(lb(d.load_balancer.type_));
    props.load_balancer_subnet = d.load_balancer.subnet.clone();
    // GET never returns the key; sending a partial sslConfiguration back could disable TLS.
    props.ssl_configuration = None;
    body
}

/// In-place TLS change (the SDK's `AksCompute.update` with
/// `AksUpdateConfiguration(ssl_configuration=…)`): the current compute with the desired
/// `sslConfiguration` — `Disabled`; `Enabled` with cname, certificate and key; `Auto` with
/// label and `overwriteExistingDomain` — or, with `renew`, the compute's own `Auto`
/// configuration with `renew: true` (same host name, new certificate).
pub fn tls_update_body(
    current: &AksComputeResource,
    d: &Desired,
    material: Option<&TlsMaterial>,
    renew: bool,
) -> AksComputeResource {
    let mut body = current.clone();
    let props = body
        .properties
        .properties
        .get_or_insert_with(Default::default);
    let ssl = match (renew, props.ssl_configuration.take()) {
        (true, Some(mut own)) => {
            own.cert = None;
            own.key = None;
            own.renew = Some(true);
            own
        }
        (true, None) => SslConfiguration {
            renew: Some(true),
            ..ssl(d, None)
        },
        (false, _) => ssl(d, material),
    };
    props.ssl_configuration = Some(ssl);
    body
}

/// ARM id of the AKS cluster an attachment names (`None` for a create).
pub fn attach_target(d: &Desired) -> Option<&str> {
    match &d.flavor {
        Flavor::Attach { aks_id } => Some(aks_id),
        Flavor::Create { .. } => None,
    }
}
