//! Mapping Azure's answers to the engine's observed state.

use crate::azure::model::{
    ComputeResource, LoadBalancerType as AzLb, ProvisioningState, SslConfigStatus,
};
use crate::crd::LoadBalancerType;

use super::decide::{AzState, ObservedCompute};

/// Reduce a compute GET to what `decide` needs.
pub fn observe_compute(c: &ComputeResource) -> ObservedCompute {
    let p = &c.properties;
    let inner = p.properties.clone().unwrap_or_default();
    let state = match p.provisioning_state.as_ref() {
        Some(ProvisioningState::Succeeded) => AzState::Succeeded,
        Some(ProvisioningState::Failed | ProvisioningState::Canceled) => AzState::Failed,
        _ => AzState::Busy,
    };
    ObservedCompute {
        state,
        raw_state: p
            .provisioning_state
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "Unknown".into()),
        errors: p.provisioning_error_messages(),
        attached: p.is_attached_compute.unwrap_or(false),
        aks_id: p.resource_id.clone(),
        description: p.description.clone(),
        lb_type: match inner.load_balancer_type {
            Some(AzLb::InternalLoadBalancer) => LoadBalancerType::InternalLoadBalancer,
            _ => LoadBalancerType::PublicIp,
        },
        lb_subnet: inner.load_balancer_subnet.clone(),
        tls_enabled: inner
            .ssl_configuration
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some_and(|s| !matches!(s, SslConfigStatus::Disabled)),
        fqdn: inner.cluster_fqdn.clone(),
        purpose: inner
            .cluster_purpose
            .as_ref()
            .map(|p| p.as_str().to_string()),
    }
}
