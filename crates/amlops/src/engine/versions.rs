//! The Kubernetes versions Azure ML attaches: a range of *minor* versions that lags behind
//! what AKS offers (AKS's list of versions for new clusters is not it: a running 1.30.5 is
//! fine while AKS lists only 1.30.4 and 1.30.7, and a minor AKS already offers may not be
//! attachable yet). Azure ML publishes the range only in its refusal, "Specified kubernetes
//! version V is not supported. Supported versions are between A - B": the operator starts
//! from a configured range (`--azureml-kubernetes-versions`) and replaces it, per
//! subscription and region, with the range Azure last answered there.

use std::collections::HashMap;
use std::sync::Mutex;

/// A Kubernetes `major.minor`.
pub type Minor = (u32, u32);

/// The `major.minor` of a version (`1.30.5`, `v1.30`, `1.30.5-hotfix`); `None` when it has
/// no two numeric parts.
pub fn minor_of(version: &str) -> Option<Minor> {
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// An inclusive range of Kubernetes minor versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinorRange {
    /// Lowest minor attached.
    pub min: Minor,
    /// Highest minor attached.
    pub max: Minor,
}

impl MinorRange {
    /// Parses `1.33-1.35` or `1.33.0 - 1.35.3` (patches are ignored).
    ///
    /// # Errors
    /// A message saying what is wrong, for the command line.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid version range {s:?}: use e.g. 1.33-1.35");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (min, max) = (minor_of(a).ok_or_else(bad)?, minor_of(b).ok_or_else(bad)?);
        if min > max {
            return Err(format!("invalid version range {s:?}: {a} is above {b}"));
        }
        Ok(Self { min, max })
    }

    /// The range in Azure ML's refusal, "… Supported versions are between A - B".
    pub fn from_azure_message(message: &str) -> Option<Self> {
        const LEAD: &str = "supported versions are between ";
        let at = message.to_ascii_lowercase().find(LEAD)? + LEAD.len();
        let rest = &message[at..];
        let (a, b) = rest.split_once(" - ")?;
        let b: String = b
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let (min, max) = (minor_of(a)?, minor_of(b.trim_end_matches('.'))?);
        (min <= max).then_some(Self { min, max })
    }

    /// Whether `version`'s minor is in the range (`None`: not a version).
    pub fn contains(&self, version: &str) -> Option<bool> {
        minor_of(version).map(|m| self.min <= m && m <= self.max)
    }
}

impl std::fmt::Display for MinorRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{} to {}.{}",
            self.min.0, self.min.1, self.max.0, self.max.1
        )
    }
}

/// Where a range comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSource {
    /// Azure ML's own answer to an attach in this subscription and region.
    Azure,
    /// The operator's `--azureml-kubernetes-versions`.
    Configured,
}

/// The configured range and the ranges Azure answered, by (subscription, region). Shared by
/// every reconcile of the process (in memory: after a restart the configured range holds
/// until Azure answers again).
#[derive(Debug, Default)]
pub struct AzureMlVersions {
    configured: Option<MinorRange>,
    learned: Mutex<HashMap<(String, String), MinorRange>>,
}

/// Azure ML's range when this operator version was written (Azure ML lags AKS by about a
/// minor). Override with `--azureml-kubernetes-versions`; Azure's own answer replaces it.
pub const DEFAULT_AZUREML_VERSIONS: MinorRange = MinorRange {
    min: (1, 33),
    max: (1, 35),
};

impl AzureMlVersions {
    /// Starting from `configured` (`None`: no check until Azure answers).
    pub fn new(configured: Option<MinorRange>) -> Self {
        Self {
            configured,
            learned: Mutex::default(),
        }
    }

    fn key(subscription: &str, location: &str) -> (String, String) {
        (
            subscription.to_ascii_lowercase(),
            location.to_ascii_lowercase().replace(' ', ""),
        )
    }

    /// Remembers the range Azure answered for `subscription` and `location`.
    pub fn learn(&self, subscription: &str, location: &str, range: MinorRange) {
        self.learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(Self::key(subscription, location), range);
    }

    /// The range to check against in `subscription` and `location`, and where it is from.
    pub fn range_for(
        &self,
        subscription: &str,
        location: &str,
    ) -> Option<(MinorRange, RangeSource)> {
        let learned = self
            .learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&Self::key(subscription, location))
            .copied();
        learned
            .map(|r| (r, RangeSource::Azure))
            .or(self.configured.map(|r| (r, RangeSource::Configured)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minors_not_patches() {
        let r = MinorRange::parse("1.29-1.31").unwrap();
        let rows = [
            ("1.30.5", Some(true)),
            ("1.29.0", Some(true)),
            ("1.31.99", Some(true)),
            ("v1.31.2", Some(true)),
            ("1.28.15", Some(false)),
            ("1.32.0", Some(false)),
            ("2.0.0", Some(false)),
            ("latest", None),
        ];
        for (v, want) in rows {
            assert_eq!(r.contains(v), want, "{v}");
        }
    }

    #[test]
    fn parses_flags_and_azures_wording() {
        assert_eq!(
            MinorRange::parse("1.33.0 - 1.35.3"),
            Ok(MinorRange {
                min: (1, 33),
                max: (1, 35)
            })
        );
        for bad in ["", "1.33", "1.35-1.33", "a-b", "1-2"] {
            assert!(MinorRange::parse(bad).is_err(), "{bad}");
        }
        let m = "Specified kubernetes version 1.24.9 is not supported. Supported versions are between 1.29.0 - 1.31.2";
        assert_eq!(
            MinorRange::from_azure_message(m),
            Some(MinorRange {
                min: (1, 29),
                max: (1, 31)
            })
        );
        assert_eq!(
            MinorRange::from_azure_message(&format!("BadRequest: {m}.")),
            MinorRange::from_azure_message(m)
        );
        assert_eq!(
            MinorRange::from_azure_message("At least 3 machine(s)"),
            None
        );
    }

    #[test]
    fn azures_answer_replaces_the_configured_range_where_it_was_given() {
        let v = AzureMlVersions::new(Some(DEFAULT_AZUREML_VERSIONS));
        let azure = MinorRange::parse("1.31-1.34").unwrap();
        v.learn("SUB", "East US", azure);
        assert_eq!(
            v.range_for("sub", "eastus"),
            Some((azure, RangeSource::Azure))
        );
        assert_eq!(
            v.range_for("sub", "westeurope"),
            Some((DEFAULT_AZUREML_VERSIONS, RangeSource::Configured))
        );
        assert_eq!(AzureMlVersions::new(None).range_for("sub", "eastus"), None);
    }
}
