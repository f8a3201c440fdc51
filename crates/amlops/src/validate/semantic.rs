//! Static checks that need arithmetic CEL cannot do on every Kubernetes version
//! (CIDR containment, overlaps): address ranges and subscriptions.

use std::net::Ipv4Addr;

use crate::crd::{ClusterAttachmentSpec, InferenceClusterSpec, NetworkSpec};

use super::Finding;

/// An IPv4 range `a.b.c.d/p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Address as written (host bits may be set, as in Docker's `172.17.0.1/16`).
    pub addr: Ipv4Addr,
    /// Prefix length, 0-32.
    pub prefix: u8,
}

impl Cidr {
    /// Parse `a.b.c.d/p`; `None` when malformed (admission rules report that case).
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = s.split_once('/')?;
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= 32).then_some(Self {
            addr: addr.parse().ok()?,
            prefix,
        })
    }

    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// First address of the range.
    pub fn network(self) -> u32 {
        u32::from(self.addr) & self.mask()
    }

    /// Last address of the range.
    pub fn broadcast(self) -> u32 {
        self.network() | !self.mask()
    }

    /// Whether `ip` is inside the range.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.network()
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(self, other: Cidr) -> bool {
        self.network() <= other.broadcast() && other.network() <= self.broadcast()
    }
}

/// Address checks on a custom network.
pub fn check_network(net: &NetworkSpec, out: &mut Vec<Finding>) {
    let service = net.service_cidr.as_deref().and_then(Cidr::parse);
    let bridge = net.docker_bridge_cidr.as_deref().and_then(Cidr::parse);
    let dns = net
        .dns_service_ip
        .as_deref()
        .and_then(|s| s.parse::<Ipv4Addr>().ok());
    if let (Some(service), Some(dns)) = (service, dns) {
        let first = Ipv4Addr::from(service.network());
        if !service.contains(dns) {
            out.push(Finding::new(
                "spec.network.dnsServiceIP",
                format!(
                    "{dns} is not inside serviceCidr {}/{}: pick an address from that range, e.g. {}",
                    first,
                    service.prefix,
                    Ipv4Addr::from(service.network().saturating_add(10))
                ),
            ));
        } else if u32::from(dns) == service.network()
            || u32::from(dns) == service.network().saturating_add(1)
            || u32::from(dns) == service.broadcast()
        {
            out.push(Finding::new(
                "spec.network.dnsServiceIP",
                format!(
                    "{dns} is reserved in serviceCidr (network address, .1 for the API server, or broadcast): use e.g. {}",
                    Ipv4Addr::from(service.network().saturating_add(10))
                ),
            ));
        }
    }
    if let (Some(service), Some(bridge)) = (service, bridge)
        && service.overlaps(bridge)
    {
        out.push(Finding::new(
            "spec.network.dockerBridgeCidr",
            "overlaps serviceCidr: the Docker bridge and Kubernetes services need separate ranges (e.g. 172.17.0.1/16 and 10.0.0.0/16)",
        ));
    }
}

/// Static checks on an `InferenceCluster` spec.
pub fn check_inference_cluster(spec: &InferenceClusterSpec, out: &mut Vec<Finding>) {
    if let Some(net) = &spec.network {
        check_network(net, out);
    }
}

/// Static checks on a `ClusterAttachment` spec.
pub fn check_cluster_attachment(spec: &ClusterAttachmentSpec, out: &mut Vec<Finding>) {
    if let Some(id) = &spec.aks_cluster.resource_id
        && let Ok(rid) = id.parse::<crate::azure::ResourceId>()
        && let sub = rid.subscription()
        && !sub.eq_ignore_ascii_case(&spec.workspace.subscription_id)
    {
        out.push(Finding::new(
            "spec.aksCluster.resourceId",
            format!(
                "the AKS cluster is in subscription {sub} but the workspace is in {}: Azure ML attaches only clusters of the workspace's subscription",
                spec.workspace.subscription_id
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_math() {
        let c = Cidr::parse("10.0.0.0/16").unwrap();
        assert!(c.contains("10.0.255.255".parse().unwrap()));
        assert!(!c.contains("10.1.0.0".parse().unwrap()));
        assert!(c.overlaps(Cidr::parse("10.0.128.0/24").unwrap()));
        assert!(!c.overlaps(Cidr::parse("172.17.0.1/16").unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().overlaps(c));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("10.0.0/8"), None);
    }
}
