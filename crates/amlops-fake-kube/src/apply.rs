//! Server-side apply (`application/apply-patch+yaml`), approximated without
//! `managedFields`: each (field manager, subresource) keeps its last applied configuration,
//! which stands in for the fields it owns.

use serde_json::{Map, Value, json};

use super::errors::ApiError;
use super::patch::{deep_merge, get_path, leaves, remove_path};
use super::store::{AppliedConfigs, State, Sub, TypeInfo, meta_mut, meta_str};

/// Leaves `null`s out of an applied configuration: SSA treats them as "not specified".
fn strip_nulls(v: &mut Value) {
    if let Value::Object(map) = v {
        map.retain(|_, child| !child.is_null());
        for child in map.values_mut() {
            strip_nulls(child);
        }
    }
}

/// The part of an applied object that counts as the manager's field set.
pub(crate) fn applied_config(ty: &TypeInfo, applied: &Value, sub: Sub) -> Value {
    let mut cfg = Map::new();
    let Some(obj) = applied.as_object() else {
        return Value::Object(cfg);
    };
    for (key, value) in obj {
        match (key.as_str(), sub) {
            ("status", Sub::Status) => {
                cfg.insert(key.clone(), value.clone());
            }
            (_, Sub::Status) | ("apiVersion" | "kind", _) => {}
            ("status", Sub::Main) if ty.status_subresource => {}
            ("metadata", Sub::Main) => {
                let mut m = Map::new();
                if let Some(user) = value.as_object() {
                    for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(v) = user.get(f) {
                            m.insert(f.to_string(), v.clone());
                        }
                    }
                }
                if !m.is_empty() {
                    cfg.insert(key.clone(), Value::Object(m));
                }
            }
            _ => {
                cfg.insert(key.clone(), value.clone());
            }
        }
    }
    let mut cfg = Value::Object(cfg);
    strip_nulls(&mut cfg);
    cfg
}

fn dotted(path: &[String]) -> String {
    format!(".{}", path.join("."))
}

impl State {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_create(
        &mut self,
        ty: &TypeInfo,
        version: &str,
        ns: &str,
        name: &str,
        body: &Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        Self::check_applied(name, body)?;
        let mut obj = body.clone();
        strip_nulls(&mut obj);
        meta_mut(&mut obj).insert("name".into(), json!(name));
        let created = self.create(ty, version, ns, obj, dry_run)?;
        if !dry_run {
            self.record_apply(ty, ns, name, manager, Sub::Main, body, Vec::new());
        }
        Ok((created, true))
    }

    /// An applied configuration names its kind and, if it names the object, the URL's.
    fn check_applied(name: &str, body: &Value) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request("an apply patch must be an object"));
        }
        for field in ["apiVersion", "kind"] {
            if body
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(&format!(
                    "error decoding patch: Object '{}' is missing",
                    if field == "kind" { "Kind" } else { field }
                )));
            }
        }
        if let Some(n) = meta_str(body, "name")
            && n != name
        {
            return Err(ApiError::bad_request(&format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        Ok(())
    }

    /// Server-side apply, approximated: fields this manager applied last time and omits
    /// now are removed (unless another manager applied them or someone changed them since),
    /// then the configuration is deep-merged. Conflicts are detected only against other
    /// apply managers. Returns the candidate and the (manager, path)s a force took over.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    pub(crate) fn apply_candidate(
        &self,
        ty: &TypeInfo,
        version: &str,
        ns: &str,
        name: &str,
        old: &Value,
        body: &Value,
        sub: Sub,
        manager: &str,
        force: bool,
    ) -> Result<(Value, Vec<((String, Sub), Vec<String>)>), ApiError> {
        Self::check_applied(name, body)?;
        self.check_type_meta(ty, version, body)?;
        if let Some(rv) = meta_str(body, "resourceVersion")
            && Some(rv) != meta_str(old, "resourceVersion")
        {
            return Err(ApiError::conflict(ty, name));
        }
        let cfg = applied_config(ty, body, sub);
        let empty = AppliedConfigs::new();
        let configs = self
            .applied
            .get(&(ty.key(), ns.to_string(), name.to_string()))
            .unwrap_or(&empty);
        let mine = (manager.to_string(), sub);
        let mut conflicts = Vec::new();
        let mut forced = Vec::new();
        for (other, other_cfg) in configs.iter().filter(|(k, _)| **k != mine) {
            for (path, value) in leaves(&cfg) {
                if let Some(theirs) = get_path(other_cfg, &path)
                    && *theirs != value
                    && get_path(old, &path) == Some(theirs)
                {
                    if force {
                        forced.push((other.clone(), path));
                    } else {
                        conflicts.push(format!("conflict with {:?}: {}", other.0, dotted(&path)));
                    }
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(ApiError::apply_conflict(&format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                conflicts.join(", ")
            )));
        }
        let mut candidate = old.clone();
        if let Some(prev) = configs.get(&mine) {
            for (path, prev_value) in leaves(prev) {
                let still_applied = get_path(&cfg, &path).is_some();
                let owned_elsewhere = configs
                    .iter()
                    .any(|(k, c)| *k != mine && get_path(c, &path).is_some());
                let unchanged = get_path(&candidate, &path) == Some(&prev_value);
                if !still_applied && !owned_elsewhere && unchanged {
                    remove_path(&mut candidate, &path);
                }
            }
        }
        deep_merge(&mut candidate, &cfg);
        Ok((candidate, forced))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_apply(
        &mut self,
        ty: &TypeInfo,
        ns: &str,
        name: &str,
        manager: &str,
        sub: Sub,
        body: &Value,
        forced_away: Vec<((String, Sub), Vec<String>)>,
    ) {
        let key = (ty.key(), ns.to_string(), name.to_string());
        if self.get(ty, ns, name).is_none() {
            // The apply finished a deletion (finalizers emptied): nothing to own.
            self.applied.remove(&key);
            return;
        }
        let cfg = applied_config(ty, body, sub);
        let configs = self.applied.entry(key).or_default();
        for (other, path) in forced_away {
            if let Some(c) = configs.get_mut(&other) {
                remove_path(c, &path);
            }
        }
        configs.insert((manager.to_string(), sub), cfg);
    }
}
