//! VM sizes of a location (Resource SKUs API), cached per (subscription, location):
//! the catalogue changes rarely and its answer is large.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::aks::{check_location, check_subscription};
use super::error::AzureError;
use super::model::{ResourceSku, VmSizeCatalog};
use super::{ArmClient, SKUS_API_VERSION};

type Key = (String, String);

/// Cache of VM size catalogues with a time to live.
#[derive(Debug)]
pub(crate) struct SkuCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, (Instant, Arc<VmSizeCatalog>)>>,
}

impl SkuCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &Key) -> Option<Arc<VmSizeCatalog>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, c)| c.clone())
    }

    fn put(&self, key: Key, catalog: Arc<VmSizeCatalog>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(key, (Instant::now(), catalog));
    }

    fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl ArmClient {
    /// The VM sizes available in `location` (size → vCPUs, restrictions), cached for the
    /// configured `sku_cache_ttl`.
    ///
    /// # Errors
    /// `Config` before any request for an invalid `subscription` or `location` (as for
    /// [`list_kubernetes_versions`](Self::list_kubernetes_versions)); otherwise the
    /// [usual failures](ArmClient#errors-of-every-call) of any page, `Decode` as for
    /// [`list_computes`](Self::list_computes) (SKUs that do not decode are skipped). A cached
    /// catalogue does not fail.
    pub async fn list_vm_skus(
        &self,
        subscription: &str,
        location: &str,
    ) -> Result<Arc<VmSizeCatalog>, AzureError> {
        check_subscription(subscription)?;
        let location = check_location(location)?;
        let key = (subscription.to_ascii_lowercase(), location.clone());
        if let Some(hit) = self.inner.skus.get(&key) {
            return Ok(hit);
        }
        let path = format!("/subscriptions/{subscription}/providers/Microsoft.Compute/skus");
        let filter = format!("location eq '{location}'");
        let url = self
            .transport()
            .url(&path, SKUS_API_VERSION, &[("$filter", &filter)]);
        let skus: Vec<ResourceSku> = self.list_all("skus.list", url).await?;
        let catalog = Arc::new(VmSizeCatalog::from_skus(skus));
        self.inner.skus.put(key, catalog.clone());
        Ok(catalog)
    }

    /// vCPUs of `vm_size` in `location`; `Ok(None)` when the size does not exist there.
    ///
    /// # Errors
    /// As [`list_vm_skus`](Self::list_vm_skus); a size not offered in `location` is `Ok(None)`.
    pub async fn vm_vcpus(
        &self,
        subscription: &str,
        location: &str,
        vm_size: &str,
    ) -> Result<Option<u32>, AzureError> {
        Ok(self
            .list_vm_skus(subscription, location)
            .await?
            .vcpus(vm_size))
    }

    /// Forgets every cached VM size catalogue.
    pub fn clear_sku_cache(&self) {
        self.inner.skus.clear();
    }
}
