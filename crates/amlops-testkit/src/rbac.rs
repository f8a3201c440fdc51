//! The Kubernetes API calls `amlops run` may make, read from `deploy/rbac-requirements.yaml`
//! (the list the Helm chart's and `deploy/`'s RBAC are checked against). Tests map every
//! request the controller really sends to a (group, resource, verb) and check it is listed.

use serde::Deserialize;

/// The list, compiled in.
pub const REQUIREMENTS_YAML: &str = include_str!("../../../deploy/rbac-requirements.yaml");

/// One rule of the list.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// API group (`""` for core).
    pub api_group: String,
    /// Resource, with `/subresource` when it is one.
    pub resource: String,
    /// Verbs.
    pub verbs: Vec<String>,
    /// Where the rule is granted.
    pub scope: String,
    /// Only with leader election.
    #[serde(default)]
    pub leader_election_only: bool,
}

#[derive(Deserialize)]
struct File {
    rules: Vec<Rule>,
}

/// The rules of the list.
pub fn rules() -> Vec<Rule> {
    serde_saphyr::from_str::<File>(REQUIREMENTS_YAML)
        .map(|f| f.rules)
        .unwrap_or_default()
}

/// What RBAC checks for one HTTP request: (group, resource[/subresource], verb).
pub fn attributes(method: &str, path: &str, query: &str) -> Option<(String, String, String)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] => (String::new(), rest),
        ["apis", g, _v, rest @ ..] => ((*g).to_string(), rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named) = match rest {
        [r] => ((*r).to_string(), false),
        [r, _name] => ((*r).to_string(), true),
        [r, _name, sub] => (format!("{r}/{sub}"), true),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some((group, resource, verb.into()))
}

/// Whether `rules` grant the request.
pub fn covers(rules: &[Rule], method: &str, path: &str, query: &str) -> bool {
    attributes(method, path, query).is_some_and(|(g, r, v)| {
        rules
            .iter()
            .any(|rule| rule.api_group == g && rule.resource == r && rule.verbs.contains(&v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_parses() {
        let rules = rules();
        assert!(rules.len() >= 8, "{rules:?}");
        assert!(rules.iter().all(|r| !r.verbs.is_empty()));
    }

    #[test]
    fn requests_map_to_rbac_attributes() {
        let cases = [
            (
                "GET",
                "/apis/amlops.dev/v1alpha1/inferenceclusters",
                "limit=500",
                "amlops.dev",
                "inferenceclusters",
                "list",
            ),
            (
                "GET",
                "/apis/amlops.dev/v1alpha1/namespaces/a/clusterattachments",
                "watch=true&resourceVersion=5",
                "amlops.dev",
                "clusterattachments",
                "watch",
            ),
            (
                "PATCH",
                "/apis/amlops.dev/v1alpha1/namespaces/a/inferenceclusters/x/status",
                "fieldManager=amlops&force=true",
                "amlops.dev",
                "inferenceclusters/status",
                "patch",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/secrets/tls",
                "",
                "",
                "secrets",
                "get",
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/a/events",
                "",
                "events.k8s.io",
                "events",
                "create",
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/sys/leases/amlops",
                "",
                "coordination.k8s.io",
                "leases",
                "update",
            ),
            (
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/inferenceclusters.amlops.dev",
                "",
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "get",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/a/secrets/x",
                "",
                "",
                "secrets",
                "delete",
            ),
        ];
        for (m, p, q, g, r, v) in cases {
            assert_eq!(
                attributes(m, p, q),
                Some((g.to_string(), r.to_string(), v.to_string())),
                "{m} {p}?{q}"
            );
        }
    }

    #[test]
    fn coverage_follows_the_list() {
        let rules = rules();
        assert!(covers(
            &rules,
            "PATCH",
            "/apis/amlops.dev/v1alpha1/namespaces/a/inferenceclusters/x",
            ""
        ));
        assert!(!covers(
            &rules,
            "DELETE",
            "/apis/amlops.dev/v1alpha1/namespaces/a/inferenceclusters/x",
            ""
        ));
        assert!(!covers(&rules, "PUT", "/api/v1/namespaces/a/secrets/x", ""));
        assert!(!covers(
            &rules,
            "GET",
            "/api/v1/namespaces/a/configmaps/x",
            ""
        ));
    }
}
