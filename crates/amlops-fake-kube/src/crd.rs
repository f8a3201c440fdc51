//! CustomResourceDefinitions: the kind a CRD defines, its server-owned status
//! (NamesAccepted, Established) and serving its kind while it is Established.

use std::sync::Arc;

use serde_json::{Value, json};

use super::store::{
    CRD_GROUP, CRD_PLURAL, ChangeKind, State, Sub, TypeInfo, meta_mut, meta_str, now,
};

/// The kind a CRD object defines, or why it is invalid.
pub(crate) fn crd_type(crd: &Value) -> Result<TypeInfo, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("spec{}: Required value", p.replace('/', ".")))
    };
    let group = s("/group")?;
    let plural = s("/names/plural")?;
    let kind = s("/names/kind")?;
    let namespaced = match s("/scope")?.as_str() {
        "Namespaced" => true,
        "Cluster" => false,
        other => return Err(format!("spec.scope: Unsupported value: {other:?}")),
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value")?;
    let served: Vec<String> = versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let schema = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
        .map(|s| Arc::new(s.clone()));
    let status_subresource = versions
        .iter()
        .any(|v| v.pointer("/subresources/status").is_some());
    let expected = format!("{plural}.{group}");
    if meta_str(crd, "name") != Some(expected.as_str()) {
        return Err(format!(
            "metadata.name: Invalid value: must be spec.names.plural+\".\"+spec.group ({expected})"
        ));
    }
    Ok(TypeInfo {
        group,
        versions: served,
        kind,
        plural,
        namespaced,
        status_subresource,
        has_generation: true,
        custom: true,
        unconditional_update: false,
        served: false,
        schema,
    })
}

impl State {
    /// Server-owned CRD status: names accepted, Established unless held back.
    pub(crate) fn fill_crd_status(&self, crd: &mut Value, old: Option<&Value>) {
        let name = meta_str(crd, "name").unwrap_or_default().to_string();
        let established = !self.held_crds.contains(&name);
        let prior = |ty: &str, status: &str| {
            old.and_then(|o| o.pointer("/status/conditions"))
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter().find(|c| {
                        c.get("type").and_then(Value::as_str) == Some(ty)
                            && c.get("status").and_then(Value::as_str) == Some(status)
                    })
                })
                .cloned()
        };
        let cond = |ty: &str, ok: bool, reason: &str, message: &str| {
            let status = if ok { "True" } else { "False" };
            prior(ty, status).unwrap_or_else(|| {
                json!({"type": ty, "status": status, "lastTransitionTime": now(),
                       "reason": reason, "message": message})
            })
        };
        let stored: Vec<Value> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    .filter_map(|v| v.get("name").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
        crd["status"] = json!({
            "conditions": [
                cond("NamesAccepted", true, "NoConflicts", "no conflicts found"),
                if established {
                    cond("Established", true, "InitialNamesAccepted", "the initial names have been accepted")
                } else {
                    cond("Established", false, "Installing", "the resource is being installed")
                },
            ],
            "acceptedNames": names,
            "storedVersions": stored,
        });
    }

    pub(crate) fn register_crd(&mut self, crd: &Value) {
        if let Ok(mut ty) = crd_type(crd) {
            let name = meta_str(crd, "name").unwrap_or_default();
            ty.served = !self.held_crds.contains(name);
            // Objects stored before this schema get its defaults on their next read, with
            // no new resourceVersion and no watch event (as from the real server's storage).
            if let Some(objs) = self.objects.get_mut(&ty.key()) {
                objs.values_mut().for_each(|o| ty.apply_defaults(o));
            }
            self.types.insert(ty.key(), ty);
        }
    }

    /// A deleted CRD takes its objects with it (at once; the real server uses a finalizer).
    pub(crate) fn unregister_crd(&mut self, ty: &TypeInfo) {
        let key = ty.key();
        let Some(gone) = self.types.remove(&key) else {
            return;
        };
        let objs = self.objects.remove(&key).unwrap_or_default();
        for ((ns, name), mut obj) in objs {
            let rv = self.next_rv();
            meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv));
            self.applied.remove(&(key.clone(), ns.clone(), name));
            self.emit(&gone, &ns, ChangeKind::Deleted, None, obj);
        }
    }

    /// Lets a held CRD become Established (a MODIFIED event, then its kind is served).
    pub fn establish(&mut self, name: &str) -> bool {
        self.held_crds.remove(name);
        let Some(crd_ty) = self
            .types
            .get(&(CRD_GROUP.into(), CRD_PLURAL.into()))
            .cloned()
        else {
            return false;
        };
        let Some(old) = self.get(&crd_ty, "", name).cloned() else {
            return false;
        };
        let mut new = old.clone();
        self.fill_crd_status(&mut new, Some(&old));
        let _ = self.commit_update(&crd_ty, "", name, &old, new, Sub::Status, false);
        self.register_crd(&old);
        true
    }
}
