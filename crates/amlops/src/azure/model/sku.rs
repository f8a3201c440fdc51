//! Resource SKUs (`Microsoft.Compute/skus`, 2021-07-01) reduced to a VM size catalogue, and
//! the AKS Kubernetes version list.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// One resource SKU (subset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSku {
    /// `virtualMachines`, `disks`, …
    #[serde(default)]
    pub resource_type: Option<String>,
    /// SKU name, e.g. `Standard_D3_v2`.
    #[serde(default)]
    pub name: Option<String>,
    /// Tier.
    #[serde(default)]
    pub tier: Option<String>,
    /// Size.
    #[serde(default)]
    pub size: Option<String>,
    /// Family.
    #[serde(default)]
    pub family: Option<String>,
    /// Locations the SKU is offered in.
    #[serde(default)]
    pub locations: Vec<String>,
    /// Capabilities: name/value strings (`vCPUs`, `MemoryGB`, …).
    #[serde(default)]
    pub capabilities: Vec<SkuCapability>,
    /// Restrictions (e.g. `NotAvailableForSubscription`).
    #[serde(default)]
    pub restrictions: Vec<SkuRestriction>,
}

impl ResourceSku {
    /// The value of capability `name` (case-insensitive).
    pub fn capability(&self, name: &str) -> Option<&str> {
        self.capabilities
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .map(|c| c.value.as_str())
    }

    /// Number of vCPUs, parsed from the `vCPUs` capability string.
    pub fn vcpus(&self) -> Option<u32> {
        parse_vcpus(self.capability("vCPUs")?)
    }

    /// True when the SKU cannot be used in its location by this subscription.
    pub fn is_restricted(&self) -> bool {
        self.restrictions
            .iter()
            .any(|r| r.restriction_type.as_deref() == Some("Location"))
    }
}

/// Parses a vCPU count. Azure sends integers as strings (`"4"`); anything else is rejected
/// rather than guessed.
pub(crate) fn parse_vcpus(value: &str) -> Option<u32> {
    value.trim().parse::<u32>().ok()
}

/// A capability name/value pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuCapability {
    /// Capability name.
    #[serde(default)]
    pub name: String,
    /// Value (always a string).
    #[serde(default)]
    pub value: String,
}

/// A SKU restriction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkuRestriction {
    /// `Location` or `Zone`.
    #[serde(rename = "type", default)]
    pub restriction_type: Option<String>,
    /// Locations or zones restricted.
    #[serde(default)]
    pub values: Vec<String>,
    /// `QuotaId` or `NotAvailableForSubscription`.
    #[serde(default)]
    pub reason_code: Option<String>,
}

/// What the operator needs to know about one VM size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSizeInfo {
    /// Name as Azure spells it.
    pub name: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Not available to this subscription in this location.
    pub restricted: bool,
}

/// The VM sizes of one location, looked up case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmSizeCatalog {
    sizes: HashMap<String, VmSizeInfo>,
}

impl VmSizeCatalog {
    /// Builds the catalogue from resource SKUs, keeping `virtualMachines` with a parseable
    /// vCPU count.
    pub fn from_skus(skus: impl IntoIterator<Item = ResourceSku>) -> Self {
        let mut sizes = HashMap::new();
        for sku in skus {
            let is_vm = sku
                .resource_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("virtualMachines"));
            let (Some(name), Some(vcpus)) = (sku.name.clone(), sku.vcpus()) else {
                continue;
            };
            if !is_vm {
                continue;
            }
            let restricted = sku.is_restricted();
            sizes.insert(
                name.to_ascii_lowercase(),
                VmSizeInfo {
                    name,
                    vcpus,
                    restricted,
                },
            );
        }
        Self { sizes }
    }

    /// Information about `size`, if it exists in the location.
    pub fn get(&self, size: &str) -> Option<&VmSizeInfo> {
        self.sizes.get(&size.to_ascii_lowercase())
    }

    /// vCPUs of `size`, if it exists in the location.
    pub fn vcpus(&self, size: &str) -> Option<u32> {
        self.get(size).map(|s| s.vcpus)
    }

    /// Number of sizes known.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// True when no size is known.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Map size name → vCPUs.
    pub fn to_map(&self) -> BTreeMap<String, u32> {
        self.sizes
            .values()
            .map(|s| (s.name.clone(), s.vcpus))
            .collect()
    }
}

/// AKS `kubernetesVersions` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KubernetesVersionList {
    /// Minor versions.
    #[serde(default)]
    pub values: Vec<KubernetesVersion>,
}

impl KubernetesVersionList {
    /// All patch versions (`1.25.4`, …), sorted numerically.
    pub fn patch_versions(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .values
            .iter()
            .flat_map(|v| v.patch_versions.keys().cloned())
            .collect();
        all.sort_by_key(|v| version_key(v));
        all.dedup();
        all
    }

    /// True when `version` (`1.25` or `1.25.4`) is offered by AKS in this location.
    pub fn contains(&self, version: &str) -> bool {
        let version = version.trim().trim_start_matches('v');
        self.values.iter().any(|v| {
            v.version.as_deref() == Some(version) || v.patch_versions.contains_key(version)
        })
    }

    /// The default minor version.
    pub fn default_version(&self) -> Option<&str> {
        self.values
            .iter()
            .find(|v| v.is_default == Some(true))
            .and_then(|v| v.version.as_deref())
    }
}

/// Numeric sort key of a dotted version; non-numeric parts sort last.
fn version_key(v: &str) -> Vec<u64> {
    v.split('.')
        .map(|p| p.parse::<u64>().unwrap_or(u64::MAX))
        .collect()
}

/// One Kubernetes minor version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesVersion {
    /// `major.minor`.
    #[serde(default)]
    pub version: Option<String>,
    /// Default version for new clusters.
    #[serde(default)]
    pub is_default: Option<bool>,
    /// Preview version.
    #[serde(default)]
    pub is_preview: Option<bool>,
    /// Support plans.
    #[serde(default)]
    pub capabilities: Option<KubernetesVersionCapabilities>,
    /// Patch versions and their upgrade targets.
    #[serde(default)]
    pub patch_versions: BTreeMap<String, KubernetesPatchVersion>,
}

/// Capabilities of a Kubernetes version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesVersionCapabilities {
    /// `KubernetesOfficial`, `AKSLongTermSupport`.
    #[serde(default)]
    pub support_plan: Vec<String>,
}

/// A patch version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KubernetesPatchVersion {
    /// Versions it can upgrade to.
    #[serde(default)]
    pub upgrades: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(path: &str) -> serde_json::Value {
        let full = format!("/work/shared/azure-specs/{path}");
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
    }

    #[test]
    fn vcpu_strings() {
        let cases = [
            ("4", Some(4)),
            (" 16 ", Some(16)),
            ("0", Some(0)),
            ("", None),
            ("2.5", None),
            ("-1", None),
            ("four", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_vcpus(s), want, "{s:?}");
        }
    }

    #[test]
    fn catalog_from_official_example() {
        let v = example(
            "compute-skus-2021-07-01/examples/skus/ListAvailableResourceSkusForARegion.json",
        );
        let page: super::super::Page<ResourceSku> =
            serde_json::from_value(v["responses"]["200"]["body"].clone()).unwrap();
        let cat = VmSizeCatalog::from_skus(page.value);
        assert_eq!(cat.vcpus("Standard_A0"), Some(1));
        assert_eq!(cat.vcpus("standard_a1"), Some(1));
        assert_eq!(cat.vcpus("Standard_D3_v2"), None);
    }

    #[test]
    fn catalog_skips_non_vms_and_flags_restrictions() {
        let skus: Vec<ResourceSku> = serde_json::from_str(
            r#"[
              {"resourceType":"virtualMachines","name":"Standard_D3_v2","capabilities":[{"name":"vCPUs","value":"4"}]},
              {"resourceType":"virtualMachines","name":"Standard_X","capabilities":[{"name":"vCPUs","value":"8"}],
               "restrictions":[{"type":"Location","values":["eastus"],"reasonCode":"NotAvailableForSubscription"}]},
              {"resourceType":"virtualMachines","name":"Broken","capabilities":[{"name":"vCPUs","value":"many"}]},
              {"resourceType":"disks","name":"Premium_LRS","capabilities":[{"name":"vCPUs","value":"2"}]}
            ]"#,
        )
        .unwrap();
        let cat = VmSizeCatalog::from_skus(skus);
        assert_eq!(cat.len(), 2);
        assert_eq!(cat.vcpus("STANDARD_D3_V2"), Some(4));
        assert!(cat.get("Standard_X").unwrap().restricted);
        assert!(cat.get("Broken").is_none());
        assert!(cat.get("Premium_LRS").is_none());
        assert_eq!(cat.to_map().get("Standard_D3_v2"), Some(&4));
    }

    #[test]
    fn kubernetes_versions_example() {
        let v = example("aks-2025-10-01/examples/KubernetesVersions_List.json");
        let list: KubernetesVersionList =
            serde_json::from_value(v["responses"]["200"]["body"].clone()).unwrap();
        assert_eq!(list.values.len(), 4);
        assert_eq!(list.default_version(), Some("1.24"));
        assert!(list.contains("1.25.4"));
        assert!(list.contains("1.26"));
        assert!(!list.contains("1.22.1"));
        let patches = list.patch_versions();
        assert_eq!(patches.first().map(String::as_str), Some("1.23.12"));
        assert_eq!(patches.last().map(String::as_str), Some("1.26.0"));
        assert_eq!(
            list.values[3].capabilities.as_ref().unwrap().support_plan,
            vec!["KubernetesOfficial"]
        );
    }
}
