//! Cluster extensions (`Microsoft.KubernetesConfiguration/extensions`), api-version
//! 2025-03-01 (`kubernetesconfiguration-2025-03-01/extensions.excerpt.json`).
//!
//! [`Extension`] is what a GET returns; it has no field for
//! `configurationProtectedSettings`, so protected values are never read back (Azure does not
//! return them either: "not retrievable using GET"). What is sent is a separate type,
//! [`ExtensionRequest`] (PUT) or [`ExtensionPatch`] (PATCH), whose protected settings are
//! [`ProtectedSettings`]: serialised into the body, redacted in `Debug`, never deserialised.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::azure::error::ArmErrorDetail;

string_enum! {
    /// `provisioningState` of an extension (`ProvisioningStateDefinition`, modelAsString).
    /// Azure ML's docs add that a new extension "might show `provisioningState: Pending` for
    /// the first few minutes": unknown values are kept in `Other` and count as running.
    ExtensionProvisioningState {
        /// `Succeeded`.
        Succeeded = "Succeeded",
        /// `Failed`.
        Failed = "Failed",
        /// `Canceled`.
        Canceled = "Canceled",
        /// `Creating`.
        Creating = "Creating",
        /// `Updating`.
        Updating = "Updating",
        /// `Deleting`.
        Deleting = "Deleting",
    }
}

impl ExtensionProvisioningState {
    /// True for `Succeeded`, `Failed` and `Canceled`; every other value (including unknown
    /// ones such as `Pending`) means Azure is still working.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }
}

string_enum! {
    /// `autoUpgradeMode` (new in 2025-03-01; default `compatible`).
    AutoUpgradeMode {
        /// No automatic upgrade.
        None = "none",
        /// Patch versions only.
        Patch = "patch",
        /// Compatible (minor) versions.
        Compatible = "compatible",
    }
}

/// Configuration settings that must not leak: `configurationProtectedSettings`
/// (swagger `x-ms-secret`). Serialised as a plain map into request bodies; `Debug` prints
/// only the keys. There is no `Deserialize`: Azure never returns them.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ProtectedSettings(BTreeMap<String, String>);

impl ProtectedSettings {
    /// Empty settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) one setting.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// The keys (safe to log).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// True when a key is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// A value. Call only where the value is sent to its destination or compared.
    pub fn expose(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// True when there is no setting.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ProtectedSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// `scope`: the AzureML extension is always cluster-scoped in namespace `azureml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionScope {
    /// Cluster-wide installation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ScopeCluster>,
    /// Namespace-scoped installation (not used by Azure ML).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<ScopeNamespace>,
}

/// `scope.cluster`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeCluster {
    /// Namespace of the Helm release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_namespace: Option<String>,
}

/// `scope.namespace`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeNamespace {
    /// Target namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
}

/// The extension's own identity (common-types `Identity`); Azure ML's CLI and template
/// send `{type: SystemAssigned}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionIdentity {
    /// `SystemAssigned`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub principal_id: Option<String>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub tenant_id: Option<String>,
}

impl ExtensionIdentity {
    /// `{type: SystemAssigned}`.
    pub fn system_assigned() -> Self {
        Self {
            identity_type: Some("SystemAssigned".to_owned()),
            ..Default::default()
        }
    }
}

/// One entry of `statuses[]` (what the agent reports).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionStatus {
    /// Status code.
    pub code: Option<String>,
    /// Short description.
    pub display_status: Option<String>,
    /// `Error`, `Warning` or `Information`.
    pub level: Option<String>,
    /// Detailed message (e.g. the Helm error).
    pub message: Option<String>,
    /// RFC 3339.
    pub time: Option<String>,
}

/// An extension as Azure returns it (GET, LIST, PUT/PATCH answers).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Extension {
    /// ARM id.
    pub id: Option<String>,
    /// Extension name.
    pub name: Option<String>,
    /// `Microsoft.KubernetesConfiguration/extensions`.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// The extension's identity.
    pub identity: Option<ExtensionIdentity>,
    /// ARM's `systemData` (common-types `systemData`): when the resource was last changed.
    pub system_data: Option<SystemData>,
    /// Properties.
    pub properties: ExtensionProperties,
}

/// ARM's `systemData` (common-types v3+), the part amlops reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SystemData {
    /// When the resource was last modified (RFC 3339).
    pub last_modified_at: Option<String>,
}

impl Extension {
    /// When Azure last modified the extension (`systemData.lastModifiedAt`), if it said
    /// and the time parses.
    pub fn last_modified(&self) -> Option<jiff::Timestamp> {
        self.system_data
            .as_ref()?
            .last_modified_at
            .as_deref()?
            .parse()
            .ok()
    }
}

impl Extension {
    /// Provisioning state, if Azure reported one.
    pub fn provisioning_state(&self) -> Option<&ExtensionProvisioningState> {
        self.properties.provisioning_state.as_ref()
    }

    /// A configuration setting.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.properties
            .configuration_settings
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}

/// `properties` of an extension as returned (never the protected settings).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionProperties {
    /// E.g. `Microsoft.AzureML.Kubernetes` (Azure may return it in another case).
    pub extension_type: Option<String>,
    /// Auto-upgrade mode.
    pub auto_upgrade_mode: Option<AutoUpgradeMode>,
    /// Auto-upgrade of minor versions (Azure's default: true).
    pub auto_upgrade_minor_version: Option<bool>,
    /// Release train (only with auto-upgrade).
    pub release_train: Option<String>,
    /// Pinned version (only without auto-upgrade).
    pub version: Option<String>,
    /// Installation scope.
    pub scope: Option<ExtensionScope>,
    /// Configuration settings.
    pub configuration_settings: Option<BTreeMap<String, String>>,
    /// Read-only: installed version.
    pub current_version: Option<String>,
    /// Read-only.
    pub provisioning_state: Option<ExtensionProvisioningState>,
    /// Agent statuses.
    pub statuses: Option<Vec<ExtensionStatus>>,
    /// Read-only: the agent's error (e.g. Helm's).
    pub error_info: Option<ArmErrorDetail>,
    /// Read-only: e.g. `Ready`.
    pub extension_state: Option<String>,
    /// Read-only.
    pub is_system_extension: Option<bool>,
    /// Read-only: the identity AKS assigned to the extension.
    pub aks_assigned_identity: Option<serde_json::Value>,
}

/// The body of a PUT (create, or full replacement): only writable fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionRequest {
    /// Identity of the extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<ExtensionIdentity>,
    /// Properties.
    pub properties: ExtensionRequestProperties,
}

/// Writable `properties` of an extension PUT.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionRequestProperties {
    /// Extension type.
    pub extension_type: String,
    /// Auto-upgrade mode (2025-03-01).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_upgrade_mode: Option<AutoUpgradeMode>,
    /// Auto-upgrade of minor versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_upgrade_minor_version: Option<bool>,
    /// Release train (with auto-upgrade only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_train: Option<String>,
    /// Pinned version (without auto-upgrade only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<ExtensionScope>,
    /// Configuration settings.
    pub configuration_settings: BTreeMap<String, String>,
    /// Protected settings (write-only).
    #[serde(skip_serializing_if = "ProtectedSettings::is_empty")]
    pub configuration_protected_settings: ProtectedSettings,
}

/// The body of a PATCH (`patchExtension`). Azure merges `configurationSettings` and
/// **replaces** `configurationProtectedSettings` when they are sent: "all settings are
/// expected to be provided … If some settings are omitted, those settings would be considered
/// obsolete and deleted".
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionPatch {
    /// Properties.
    pub properties: ExtensionPatchProperties,
}

/// `properties` of a PATCH; absent fields are left unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionPatchProperties {
    /// Auto-upgrade mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_upgrade_mode: Option<AutoUpgradeMode>,
    /// Auto-upgrade of minor versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_upgrade_minor_version: Option<bool>,
    /// Release train.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_train: Option<String>,
    /// Pinned version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Settings to add or change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration_settings: Option<BTreeMap<String, String>>,
    /// The complete new set of protected settings (replace-all), if any changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration_protected_settings: Option<ProtectedSettings>,
}

/// A resource provider's registration (`GET /subscriptions/{s}/providers/{namespace}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderRegistration {
    /// `/subscriptions/{s}/providers/{namespace}`.
    pub id: Option<String>,
    /// E.g. `Microsoft.KubernetesConfiguration`.
    pub namespace: Option<String>,
    /// `Registered`, `NotRegistered`, `Registering`, `Unregistering`.
    pub registration_state: Option<String>,
}

impl ProviderRegistration {
    /// True when the subscription may use the provider.
    pub fn is_registered(&self) -> bool {
        self.registration_state
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Registered"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(path: &str) -> serde_json::Value {
        let full =
            format!("/work/shared/azure-specs/kubernetesconfiguration-2025-03-01/examples/{path}");
        serde_json::from_str(&std::fs::read_to_string(full).unwrap()).unwrap()
    }

    #[test]
    fn official_examples_decode() {
        let get = example("GetExtensionWithExtensionState.json");
        let ext: Extension =
            serde_json::from_value(get["responses"]["200"]["body"].clone()).unwrap();
        assert_eq!(
            ext.provisioning_state(),
            Some(&ExtensionProvisioningState::Succeeded)
        );
        assert_eq!(ext.properties.extension_state.as_deref(), Some("Ready"));
        assert_eq!(
            ext.properties.auto_upgrade_mode,
            Some(AutoUpgradeMode::None)
        );
        assert_eq!(
            ext.setting("omsagent.env.clusterName"),
            Some("clusterName1")
        );
        let create = example("CreateExtension.json");
        let ext: Extension =
            serde_json::from_value(create["responses"]["201"]["body"].clone()).unwrap();
        assert_eq!(
            ext.provisioning_state(),
            Some(&ExtensionProvisioningState::Creating)
        );
    }

    #[test]
    fn unknown_states_are_not_terminal() {
        let cases = [
            ("Succeeded", true),
            ("failed", true),
            ("Canceled", true),
            ("Creating", false),
            ("Updating", false),
            ("Deleting", false),
            ("Pending", false),
            ("SomethingNew", false),
        ];
        for (text, terminal) in cases {
            let s: ExtensionProvisioningState = text.parse().unwrap();
            assert_eq!(s.is_terminal(), terminal, "{text}");
        }
    }

    #[test]
    fn protected_settings_are_sent_but_never_shown() {
        let mut p = ProtectedSettings::new();
        p.insert("scoringFe.sslKey", "S3CRET-KEY");
        let body = ExtensionPatch {
            properties: ExtensionPatchProperties {
                configuration_protected_settings: Some(p.clone()),
                ..Default::default()
            },
        };
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.contains("S3CRET-KEY"), "the body carries the value");
        let debug = format!("{body:?} {p:?}");
        assert!(!debug.contains("S3CRET-KEY"), "{debug}");
        assert!(debug.contains("scoringFe.sslKey"));
        // A GET answer that (wrongly) carried protected settings drops them on decode.
        let ext: Extension = serde_json::from_value(serde_json::json!({
            "properties": {"configurationProtectedSettings": {"k": "S3CRET-KEY"}}
        }))
        .unwrap();
        assert!(!format!("{ext:?}").contains("S3CRET-KEY"));
    }
}
