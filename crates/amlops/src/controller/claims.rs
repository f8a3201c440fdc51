//! The sibling claims of the cluster kinds, indexed by what they claim in Azure (the
//! compute's ARM id, the AKS cluster an attachment names) and kept up to date by the same
//! watch events that fill the controllers' reflector caches.
//!
//! A claim check ([`KubeStore::claims`](crate::engine::store::KubeStore::claims)) runs on
//! every reconcile of a resource whose compute does not exist yet. Walking the caches for
//! it cost O(n) per check, O(n²) to converge n resources: at 10,000 resources it was half
//! of the operator's CPU (BENCHMARKS.md, "10,000 resources"). With the index a check costs
//! the contenders it returns; an `Apply` or `Delete` costs the few objects that share its
//! targets, and the end of a re-list one pass over the index.
//!
//! kube-runtime's `reflector::Store` offers no index and no change notification of its
//! own, so the index follows the watch events itself: an `Apply` replaces, a `Delete`
//! removes, and a re-list (`Init` … `InitApply`s … `InitDone`) removes at its end whatever
//! it did not list (objects deleted during a watch gap get no `Delete` event). Unlike the
//! reflector, which swaps in the listed objects at `InitDone`, the index applies each
//! listed object as it arrives: a listed object is at least as new as the one it replaces.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::core::DeserializeGuard;
use kube::runtime::watcher;

use crate::engine::store::{Claim, ObjKey};

use super::typed::{TypedKind, key_of};

/// The claims of the watched objects, by object and by target. Cheap to share behind an
/// `Arc`; every method takes `&self`.
#[derive(Debug, Default)]
pub struct ClaimIndex {
    inner: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// Each object's current claim (objects that claim nothing are absent).
    claims: HashMap<ObjKey, Claim>,
    /// Object keys by [`target`] (a compute, or an AKS cluster to attach).
    by_target: HashMap<String, Vec<ObjKey>>,
    /// Per kind, the objects listed so far by a re-list in progress.
    relisting: HashMap<&'static str, HashSet<ObjKey>>,
}

/// Index key of a compute id or an AKS id: ARM ids compare case-insensitively, and the two
/// kinds of targets must not meet.
fn target(kind: char, arm_id: &str) -> String {
    let mut t = String::with_capacity(arm_id.len() + 2);
    t.push(kind);
    t.push(':');
    t.extend(arm_id.chars().map(|c| c.to_ascii_lowercase()));
    t
}

/// The targets `claim` is found under.
fn targets(claim: &Claim) -> impl Iterator<Item = String> + '_ {
    std::iter::once(target('c', &claim.compute_id))
        .chain(claim.aks_id.as_deref().map(|a| target('a', a)))
}

impl Index {
    fn remove(&mut self, key: &ObjKey) {
        let Some(old) = self.claims.remove(key) else {
            return;
        };
        for t in targets(&old) {
            if let Some(keys) = self.by_target.get_mut(&t) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.by_target.remove(&t);
                }
            }
        }
    }

    fn set(&mut self, key: ObjKey, claim: Option<Claim>) {
        if let (Some(new), Some(old)) = (&claim, self.claims.get_mut(&key))
            && old.compute_id == new.compute_id
            && old.aks_id == new.aks_id
        {
            // Same targets (a status write, most often): no index change.
            *old = new.clone();
            return;
        }
        self.remove(&key);
        let Some(claim) = claim else {
            return;
        };
        for t in targets(&claim) {
            self.by_target.entry(t).or_default().push(key.clone());
        }
        self.claims.insert(key, claim);
    }
}

impl ClaimIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one watch event of `K`'s watch (after its reflector applied it). Objects
    /// that do not decode claim nothing.
    pub fn apply<K: TypedKind>(&self, event: &watcher::Event<DeserializeGuard<K>>) {
        let claim_of = |o: &DeserializeGuard<K>| o.0.as_ref().ok().and_then(TypedKind::claim);
        let mut index = self.lock();
        match event {
            watcher::Event::Apply(o) => index.set(key_of::<K>(o), claim_of(o)),
            watcher::Event::Delete(o) => index.remove(&key_of::<K>(o)),
            watcher::Event::Init => {
                index.relisting.insert(K::KIND, HashSet::new());
            }
            watcher::Event::InitApply(o) => {
                let key = key_of::<K>(o);
                let claim = claim_of(o);
                // Only objects that claim something are in the index, so only they need
                // to be remembered as listed.
                if claim.is_some() {
                    index
                        .relisting
                        .entry(K::KIND)
                        .or_default()
                        .insert(key.clone());
                }
                index.set(key, claim);
            }
            watcher::Event::InitDone => {
                // kube-runtime's watcher always sends `Init` first; without one, there is
                // no list to compare with.
                let Some(listed) = index.relisting.remove(K::KIND) else {
                    return;
                };
                let gone: Vec<ObjKey> = index
                    .claims
                    .keys()
                    .filter(|k| k.kind == K::KIND && !listed.contains(*k))
                    .cloned()
                    .collect();
                for key in &gone {
                    index.remove(key);
                }
            }
        }
    }

    /// The claims of objects other than `key` that contend with `(compute_id, aks_id)`
    /// ([`Claim::contends_with`]), each once.
    pub fn contenders(&self, key: &ObjKey, compute_id: &str, aks_id: Option<&str>) -> Vec<Claim> {
        let index = self.lock();
        let mut seen: Vec<&ObjKey> = Vec::new();
        let wanted = std::iter::once(target('c', compute_id)).chain(aks_id.map(|a| target('a', a)));
        for t in wanted {
            for k in index.by_target.get(&t).into_iter().flatten() {
                if k != key && !seen.contains(&k) {
                    seen.push(k);
                }
            }
        }
        seen.into_iter()
            .filter_map(|k| index.claims.get(k).cloned())
            .collect()
    }

    /// How many objects claim something (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lock().claims.len()
    }

    /// Whether no object claims anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ClusterAttachment, InferenceCluster};
    use serde_json::json;

    const SUB: &str = "00000000-0000-0000-0000-000000000000";

    fn ic(
        name: &str,
        compute: &str,
        generation: i64,
        owns: bool,
    ) -> DeserializeGuard<InferenceCluster> {
        let mut v = json!({
            "apiVersion": "amlops.dev/v1alpha1", "kind": "InferenceCluster",
            "metadata": {"name": name, "namespace": "ml", "generation": generation,
                         "uid": format!("uid-{name}"),
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"workspace": {"subscriptionId": SUB, "resourceGroup": "ml-rg", "name": "ml-ws"},
                     "computeName": compute}
        });
        if owns {
            v["status"] = json!({"computeId": "/subscriptions/x"});
        }
        DeserializeGuard(Ok(serde_json::from_value(v).unwrap()))
    }

    fn ca(name: &str, compute: &str, aks: &str) -> DeserializeGuard<ClusterAttachment> {
        DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "amlops.dev/v1alpha1", "kind": "ClusterAttachment",
            "metadata": {"name": name, "namespace": "ml", "uid": format!("uid-{name}")},
            "spec": {"workspace": {"subscriptionId": SUB, "resourceGroup": "ml-rg", "name": "ml-ws"},
                     "computeName": compute, "aksCluster": {"resourceId": aks}}
        }))
        .unwrap()))
    }

    fn key(kind: &str, name: &str) -> ObjKey {
        ObjKey {
            kind: kind.into(),
            namespace: "ml".into(),
            name: name.into(),
        }
    }

    fn compute(name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws/computes/{name}"
        )
    }

    const AKS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/prod";

    fn names(claims: &[Claim]) -> Vec<String> {
        let mut n: Vec<String> = claims.iter().map(|c| c.key.name.clone()).collect();
        n.sort();
        n
    }

    #[test]
    fn contenders_follow_applies_spec_changes_status_and_deletions() {
        let index = ClaimIndex::default();
        let me = key("InferenceCluster", "me");
        index.apply(&watcher::Event::Apply(ic("me", "shared", 1, false)));
        index.apply(&watcher::Event::Apply(ic("a", "shared", 1, false)));
        index.apply(&watcher::Event::Apply(ic("b", "other", 1, false)));
        // Its own claim is not a contender; the compute id compares case-insensitively.
        let got = index.contenders(&me, &compute("shared").to_uppercase(), None);
        assert_eq!(names(&got), ["a"]);
        assert!(!got[0].owns);
        // A status write that records the compute makes `a` its owner.
        index.apply(&watcher::Event::Apply(ic("a", "shared", 1, true)));
        assert!(index.contenders(&me, &compute("shared"), None)[0].owns);
        // A new spec moves `a` away, `b` comes to the contested name.
        index.apply(&watcher::Event::Apply(ic("a", "elsewhere", 2, true)));
        index.apply(&watcher::Event::Apply(ic("b", "shared", 2, false)));
        assert_eq!(
            names(&index.contenders(&me, &compute("shared"), None)),
            ["b"]
        );
        assert_eq!(
            names(&index.contenders(&me, &compute("elsewhere"), None)),
            ["a"]
        );
        // A deleted object claims nothing any more.
        index.apply(&watcher::Event::Delete(ic("b", "shared", 2, false)));
        assert!(index.contenders(&me, &compute("shared"), None).is_empty());
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn attachments_contend_for_the_cluster_as_well_as_the_compute() {
        let index = ClaimIndex::default();
        index.apply(&watcher::Event::Apply(ca("x", "one", AKS)));
        index.apply(&watcher::Event::Apply(ca("y", "two", &AKS.to_uppercase())));
        let me = key("ClusterAttachment", "z");
        // Another compute name, the same AKS cluster: both contend.
        assert_eq!(
            names(&index.contenders(&me, &compute("three"), Some(AKS))),
            ["x", "y"]
        );
        // The compute and the cluster of `x`: `x` is listed once.
        let x = index.contenders(&me, &compute("one"), Some(AKS));
        assert_eq!(names(&x), ["x", "y"]);
        // Without a cluster (an InferenceCluster), only the compute counts.
        assert_eq!(names(&index.contenders(&me, &compute("two"), None)), ["y"]);
        // A compute id never matches an AKS id of the same text.
        assert!(index.contenders(&me, AKS, None).is_empty());
    }

    #[test]
    fn a_relist_forgets_what_it_did_not_list_of_its_own_kind_only() {
        let index = ClaimIndex::default();
        index.apply(&watcher::Event::Apply(ic("kept", "c1", 1, false)));
        index.apply(&watcher::Event::Apply(ic("gone", "c2", 1, false)));
        index.apply(&watcher::Event::Apply(ca("att", "c3", AKS)));
        index.apply(&watcher::Event::<DeserializeGuard<InferenceCluster>>::Init);
        index.apply(&watcher::Event::InitApply(ic("kept", "c1", 1, false)));
        index.apply(&watcher::Event::InitApply(ic("new", "c4", 1, false)));
        // Until the list ends, nothing is forgotten.
        assert_eq!(index.len(), 4);
        index.apply(&watcher::Event::<DeserializeGuard<InferenceCluster>>::InitDone);
        let me = key("InferenceCluster", "me");
        assert!(
            index.contenders(&me, &compute("c2"), None).is_empty(),
            "deleted in a gap"
        );
        assert_eq!(
            names(&index.contenders(&me, &compute("c1"), None)),
            ["kept"]
        );
        assert_eq!(names(&index.contenders(&me, &compute("c4"), None)), ["new"]);
        // The other kind's objects are not part of this list.
        assert_eq!(names(&index.contenders(&me, &compute("c3"), None)), ["att"]);
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn an_object_that_no_longer_decodes_claims_nothing() {
        let index = ClaimIndex::default();
        index.apply(&watcher::Event::Apply(ic("a", "shared", 1, false)));
        let broken: DeserializeGuard<InferenceCluster> = serde_json::from_value(json!({
            "apiVersion": "amlops.dev/v1alpha1", "kind": "InferenceCluster",
            "metadata": {"name": "a", "namespace": "ml", "generation": 2},
            "spec": {"workspace": 7}
        }))
        .unwrap();
        assert!(broken.0.is_err());
        index.apply(&watcher::Event::Apply(broken));
        assert!(index.is_empty());
    }
}
