//! Table tests of the legacy kinds' decisions ([`super::decide`]): a row per situation —
//! desired state, what Azure and Kubernetes show, the status — and the plan that must follow.

use super::*;
use crate::azure::OperationHandle;
use crate::azure::model::ManagedCluster;
use crate::crd::{ClusterPurpose, LoadBalancerSpec, SecretRef, TlsMode, TlsSpec, WorkspaceRef};
use crate::engine::body::TlsMaterial;
use crate::engine::observe::{ObservedCluster, ObservedPool, needs_node_count};
use crate::engine::plan::{BackupPurpose, Write};
use crate::engine::settle::{Done, WriteFailure, settle};
use crate::tls::CertInfo;
use crate::tls::TlsError;

const AKS: &str =
    "/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/shared";

/// The managed cluster with its first pool at `count` nodes.
fn cluster(count: i32, autoscaling: bool) -> Lookup<ObservedCluster> {
    Lookup::Found(ObservedCluster {
        id: AKS.parse().expect("id"),
        cluster: ManagedCluster::default(),
        pool: Some(ObservedPool {
            name: "agentpool".into(),
            count: Some(count),
            autoscaling,
            min_count: autoscaling.then_some(1),
            max_count: autoscaling.then_some(10),
        }),
    })
}

/// A verified certificate with fingerprint `fp`.
fn verified(fp: &str) -> VerifiedTls {
    VerifiedTls {
        material: TlsMaterial {
            cert: "cert".into(),
            key: "key".into(),
            cname: "a.contoso.com".into(),
        },
        info: CertInfo {
            sha256_fingerprint: fp.into(),
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2030-01-01T00:00:00Z".into(),
            hostname: Some("a.contoso.com".into()),
            dns_names: vec!["a.contoso.com".into()],
        },
    }
}

fn desired(create: bool) -> Desired {
    Desired {
        kind: if create {
            "InferenceCluster"
        } else {
            "ClusterAttachment"
        },
        namespace: "ml".into(),
        name: "c".into(),
        workspace: WorkspaceRef {
            subscription_id: "00000000-0000-0000-0000-000000000000".into(),
            resource_group: "ml-rg".into(),
            name: "ml-ws".into(),
        },
        compute_name: "aks1".into(),
        flavor: if create {
            Flavor::Create {
                location: None,
                agent_count: 3,
                vm_size: "Standard_D3_v2".into(),
                network: None,
            }
        } else {
            Flavor::Attach { aks_id: "/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/shared".into() }
        },
        purpose: ClusterPurpose::FastProd,
        description: None,
        load_balancer: LoadBalancerSpec::default(),
        tls: TlsSpec::default(),
        deletion_policy: if create {
            DeletionPolicy::Delete
        } else {
            DeletionPolicy::Detach
        },
        manual_reattach: false,
        reattach_token: None,
        renew_token: None,
        adopt: false,
        max_retries: 3,
        deleting: false,
        generation: Some(1),
        created: None,
    }
}

fn compute(state: AzState) -> ObservedCompute {
    ObservedCompute {
        state,
        raw_state: format!("{state:?}"),
        errors: vec![],
        attached: false,
        aks_id: Some("/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/shared".into()),
        description: None,
        lb_type: LoadBalancerType::PublicIp,
        lb_subnet: None,
        tls_enabled: false,
        tls_auto: false,
        fqdn: None,
        purpose: Some("FastProd".into()),
    }
}

fn owned(d: &Desired, phase: Phase) -> ClusterStatus {
    ClusterStatus {
        phase: Some(phase),
        observed_generation: d.generation,
        compute_id: Some(d.compute_id()),
        last_applied_hash: Some(d.attach_hash()),
        ..Default::default()
    }
}

trait WithRetries {
    fn with_retries(self, n: u32) -> Self;
}

impl WithRetries for ClusterStatus {
    fn with_retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }
}

fn obs(c: Option<ObservedCompute>) -> Observed {
    Observed {
        cluster: if c.is_some() {
            cluster(3, false)
        } else {
            Lookup::NotRead
        },
        compute: c,
        ..Observed::default()
    }
}

#[test]
fn decide_table() {
    let ic = desired(true);
    let ca = desired(false);
    let ready = |d: &Desired| owned(d, Phase::Ready);
    let with = |f: &dyn Fn(&mut Desired)| {
        let mut d = desired(true);
        f(&mut d);
        d
    };
    let attached = |s: AzState| ObservedCompute {
        attached: true,
        ..compute(s)
    };
    let tls_on = ObservedCompute {
        tls_enabled: true,
        ..compute(AzState::Succeeded)
    };
    // A failure a retry may fix.
    let failed = ObservedCompute {
        errors: vec![(
            "InternalServerError".into(),
            "An internal server error occurred.".into(),
        )],
        ..compute(AzState::Failed)
    };
    // A failure a retry reproduces.
    let unsupported = ObservedCompute {
        attached: true,
        errors: vec![(
            "BadRequest".into(),
            "Specified kubernetes version 1.24.9 is not supported. Supported versions are between 1.29.0 - 1.31.2".into(),
        )],
        ..compute(AzState::Failed)
    };
    let upgraded = |version: &str| {
        let mut c = ManagedCluster::default();
        c.properties.kubernetes_version = Some(version.into());
        Observed {
            cluster: Lookup::Found(ObservedCluster {
                id: AKS.parse().expect("id"),
                cluster: c,
                pool: None,
            }),
            ..obs(Some(unsupported.clone()))
        }
    };
    let attached_at = |version: &str| ClusterStatus {
        kubernetes_version: Some(version.into()),
        ..owned(&desired(false), Phase::Attaching)
    };
    let autoscaled = |c: ObservedCompute| Observed {
        cluster: cluster(3, true),
        ..obs(Some(c))
    };
    let attached_failed = ObservedCompute {
        attached: true,
        ..failed.clone()
    };
    let auto_on = ObservedCompute {
        tls_enabled: true,
        tls_auto: true,
        ..compute(AzState::Succeeded)
    };
    let auto_label = with(&|d| {
        d.tls = TlsSpec {
            mode: TlsMode::Auto,
            leaf_domain_label: Some("contoso".into()),
            ..Default::default()
        }
    });
    let auto_renew_token = {
        let mut d = auto_label.clone();
        d.renew_token = Some("r1".into());
        d
    };
    let auto_renew = {
        let mut d = auto_label.clone();
        d.tls.auto_renew = true;
        d
    };
    let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
    // Azure serves an Auto certificate; the operator observes at `now`.
    let serving_auto = || Observed {
        now: Some(now),
        ..obs(Some(auto_on.clone()))
    };
    // The certificate in status expires `days` from now (plus an hour: whole days left).
    let expires = |d: &Desired, days: i64, renewed_secs_ago: Option<i64>| ClusterStatus {
        tls: Some(crate::crd::TlsStatus {
            mode: Some(TlsMode::Auto),
            not_after: Some((now + jiff::SignedDuration::from_hours(24 * days + 1)).to_string()),
            sha256_fingerprint: Some("aaaa".into()),
            ..Default::default()
        }),
        certificate_renewed_at: renewed_secs_ago
            .map(|s| (now - jiff::SignedDuration::from_secs(s)).to_string()),
        ..ready(d)
    };
    let rotated_secret = |fp: &str| Observed {
        user_tls: Some(Ok(verified(fp))),
        ..obs(Some(tls_on.clone()))
    };
    let sent = |d: &Desired, fp: &str| ClusterStatus {
        tls: Some(crate::crd::TlsStatus {
            sha256_fingerprint: Some(fp.into()),
            ..Default::default()
        }),
        ..ready(d)
    };
    let retries = |n: u32| ClusterStatus {
        retries: Some(n),
        ..ready(&ic)
    };
    let new_tls = with(&|d| {
        d.tls = TlsSpec {
            mode: TlsMode::Auto,
            leaf_domain_label: Some("new".into()),
            ..Default::default()
        }
    });
    let new_purpose = with(&|d| d.purpose = ClusterPurpose::DevTest);
    let token = with(&|d| d.reattach_token = Some("t1".into()));
    let token_done = ClusterStatus {
        last_reattach_token: Some("t1".into()),
        ..ready(&token)
    };
    let manual = |tok: Option<&str>| {
        let mut d = desired(false);
        d.manual_reattach = true;
        d.purpose = ClusterPurpose::DevTest;
        d.reattach_token = tok.map(str::to_string);
        d
    };
    let adopt_ca = {
        let mut d = desired(false);
        d.adopt = true;
        d
    };
    let adopt_other = ObservedCompute { aks_id: Some("/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/other".into()), ..compute(AzState::Succeeded) };
    let scaled = with(&|d| {
        if let Flavor::Create { agent_count, .. } = &mut d.flavor {
            *agent_count = 5
        }
    });
    let ilb = with(&|d| {
        d.load_balancer = LoadBalancerSpec {
            type_: LoadBalancerType::InternalLoadBalancer,
            subnet: Some("aks".into()),
        }
    });
    let described = with(&|d| d.description = Some("scoring".into()));
    let deleting = |policy: DeletionPolicy, create: bool| {
        let mut d = desired(create);
        d.deleting = true;
        d.deletion_policy = policy;
        d
    };
    let custom = with(&|d| {
        d.tls = TlsSpec {
            mode: TlsMode::Custom,
            cname: Some("a.contoso.com".into()),
            secret_ref: Some(SecretRef { name: "s".into() }),
            ..Default::default()
        }
    });

    // (row, desired, observed, status, expected)
    let rows: Vec<(&str, Desired, Observed, ClusterStatus, Action)> = vec![
        (
            "new create",
            ic.clone(),
            obs(None),
            ClusterStatus::default(),
            Action::Provision { drift: false },
        ),
        (
            "new attach",
            ca.clone(),
            obs(None),
            ClusterStatus::default(),
            Action::Provision { drift: false },
        ),
        (
            "intent recorded, PUT lost",
            ic.clone(),
            obs(None),
            owned(&ic, Phase::Creating),
            Action::Provision { drift: false },
        ),
        (
            "deleted outside the operator",
            ic.clone(),
            obs(None),
            ready(&ic),
            Action::Provision { drift: true },
        ),
        (
            "created compute detached outside, cluster still there: reattach it",
            ic.clone(),
            Observed {
                cluster: cluster(3, false),
                ..obs(None)
            },
            ready(&ic),
            Action::Reattach { drift: true },
        ),
        (
            "created compute deleted outside with its cluster: create again",
            ic.clone(),
            Observed {
                cluster: Lookup::Missing,
                ..obs(None)
            },
            ready(&ic),
            Action::Provision { drift: true },
        ),
        (
            "attachment removed outside: attach again (through the checks)",
            ca.clone(),
            Observed {
                cluster: cluster(3, false),
                ..obs(None)
            },
            ready(&ca),
            Action::Provision { drift: true },
        ),
        (
            "404 after our detach = reattach",
            ca.clone(),
            obs(None),
            owned(&ca, Phase::Detaching),
            Action::Reattach { drift: false },
        ),
        (
            "404 while reattaching = reattach",
            ca.clone(),
            obs(None),
            owned(&ca, Phase::Reattaching),
            Action::Reattach { drift: false },
        ),
        (
            "exists, never ours",
            ic.clone(),
            obs(Some(compute(AzState::Succeeded))),
            ClusterStatus::default(),
            Action::Stall(Stall {
                reason: "ComputeExists",
                message: String::new(),
            }),
        ),
        (
            "adopt matching attach",
            adopt_ca.clone(),
            obs(Some(compute(AzState::Succeeded))),
            ClusterStatus::default(),
            Action::Adopt { in_sync: true },
        ),
        (
            "adopt, purpose differs: adopt, reattach next",
            {
                let mut d = adopt_ca.clone();
                d.purpose = ClusterPurpose::DevTest;
                d
            },
            obs(Some(compute(AzState::Succeeded))),
            ClusterStatus::default(),
            Action::Adopt { in_sync: false },
        ),
        (
            "adopt, TLS on in Azure but off in spec: adopt, reattach next",
            adopt_ca.clone(),
            obs(Some(ObservedCompute {
                tls_enabled: true,
                ..compute(AzState::Succeeded)
            })),
            ClusterStatus::default(),
            Action::Adopt { in_sync: false },
        ),
        (
            "adopt non-matching",
            adopt_ca.clone(),
            obs(Some(adopt_other)),
            ClusterStatus::default(),
            Action::Stall(Stall {
                reason: "ComputeExists",
                message: String::new(),
            }),
        ),
        (
            "creating: wait",
            ic.clone(),
            obs(Some(compute(AzState::Busy))),
            owned(&ic, Phase::Creating),
            Action::Wait,
        ),
        (
            "failed create that never served: delete and create again",
            ic.clone(),
            obs(Some(failed.clone())),
            ClusterStatus {
                retries: Some(0),
                ..owned(&ic, Phase::Creating)
            },
            Action::RetryFailed {
                detach: false,
                then: Phase::Creating,
            },
        ),
        (
            "failed after serving (update): keep the cluster, detach + reattach",
            ic.clone(),
            obs(Some(failed.clone())),
            ClusterStatus {
                retries: Some(0),
                ..owned(&ic, Phase::Updating)
            },
            Action::RetryFailed {
                detach: true,
                then: Phase::Reattaching,
            },
        ),
        (
            "failed reattach of a created cluster: detach, attach the same cluster",
            ic.clone(),
            obs(Some(attached_failed.clone())),
            owned(&ic, Phase::Reattaching),
            Action::RetryFailed {
                detach: true,
                then: Phase::Reattaching,
            },
        ),
        (
            "failed detach during a reattach: detach again, never delete",
            ic.clone(),
            obs(Some(failed.clone())),
            owned(&ic, Phase::Reattaching),
            Action::RetryFailed {
                detach: true,
                then: Phase::Reattaching,
            },
        ),
        (
            "failed first attach: detach, then the checks and attach again",
            ca.clone(),
            obs(Some(attached_failed.clone())),
            ClusterStatus {
                retries: Some(1),
                ..owned(&ca, Phase::Attaching)
            },
            Action::RetryFailed {
                detach: true,
                then: Phase::Attaching,
            },
        ),
        (
            "failed attachment that served: detach + reattach",
            ca.clone(),
            obs(Some(attached_failed.clone())),
            ready(&ca),
            Action::RetryFailed {
                detach: true,
                then: Phase::Reattaching,
            },
        ),
        (
            "failed for a cause a retry reproduces: stall at once, no detach",
            ca.clone(),
            upgraded("1.24.9"),
            attached_at("1.24.9"),
            Action::Stall(Stall::new("UnsupportedKubernetesVersion", "m")),
        ),
        (
            "... the cluster was upgraded since: detach and attach again",
            ca.clone(),
            upgraded("1.30.4"),
            attached_at("1.24.9"),
            Action::RetryFailed {
                detach: true,
                then: Phase::Attaching,
            },
        ),
        (
            "... the spec changed since: try again",
            ca.clone(),
            upgraded("1.24.9"),
            ClusterStatus {
                observed_generation: Some(0),
                ..attached_at("1.24.9")
            },
            Action::RetryFailed {
                detach: true,
                then: Phase::Attaching,
            },
        ),
        (
            "3 machines required: stall at once",
            ic.clone(),
            obs(Some(ObservedCompute {
                errors: vec![(
                    "BadArgument".into(),
                    "At least 3 machine(s) are required for cluster with purpose 'FastProd'. Available machine(s) : 2".into(),
                )],
                ..compute(AzState::Failed)
            })),
            owned(&ic, Phase::Creating),
            Action::Stall(Stall::new("InsufficientNodes", "m")),
        ),
        (
            "autoscaler on: agentCount not enforced",
            scaled.clone(),
            autoscaled(compute(AzState::Succeeded)),
            ready(&ic),
            Action::Ready,
        ),
        (
            "autoscaler on: the description is still applied",
            with(&|d| {
                d.description = Some("scoring".into());
                if let Flavor::Create { agent_count, .. } = &mut d.flavor {
                    *agent_count = 5
                }
            }),
            autoscaled(compute(AzState::Succeeded)),
            ready(&ic),
            Action::UpdateInPlace,
        ),
        (
            "adopted out of sync: reattach",
            ca.clone(),
            obs(Some(tls_on.clone())),
            ClusterStatus {
                reattach_required: Some("adopted".into()),
                ..ready(&ca)
            },
            Action::BackupTls,
        ),
        (
            "failed: retries exhausted",
            ic.clone(),
            obs(Some(failed.clone())),
            retries(3),
            Action::Stall(Stall {
                reason: "ComputeFailed",
                message: String::new(),
            }),
        ),
        (
            "failed, retries exhausted, spec changed since: try again",
            ic.clone(),
            obs(Some(failed.clone())),
            ClusterStatus {
                observed_generation: Some(0),
                ..owned(&ic, Phase::Creating)
            }
            .with_retries(3),
            Action::RetryFailed {
                detach: false,
                then: Phase::Creating,
            },
        ),
        (
            "failed, retries exhausted, new reattach annotation: try again",
            token.clone(),
            obs(Some(failed.clone())),
            owned(&token, Phase::Creating).with_retries(3),
            Action::RetryFailed {
                detach: false,
                then: Phase::Creating,
            },
        ),
        (
            "steady state",
            ic.clone(),
            obs(Some(compute(AzState::Succeeded))),
            ready(&ic),
            Action::Ready,
        ),
        (
            "scale 3 -> 5",
            scaled.clone(),
            obs(Some(compute(AzState::Succeeded))),
            ready(&ic),
            Action::Scale {
                pool: "agentpool".into(),
                from: 3,
                to: 5,
            },
        ),
        (
            "ILB in place",
            ilb.clone(),
            obs(Some(compute(AzState::Succeeded))),
            ready(&ilb),
            Action::UpdateInPlace,
        ),
        (
            "description in place",
            described.clone(),
            obs(Some(compute(AzState::Succeeded))),
            ready(&described),
            Action::UpdateInPlace,
        ),
        (
            "tls change, tls off: in place, no detach",
            new_tls.clone(),
            obs(Some(compute(AzState::Succeeded))),
            ready(&ic),
            Action::UpdateTls { renew: false },
        ),
        (
            "tls change, tls on: in place, no detach",
            custom.clone(),
            obs(Some(tls_on.clone())),
            ready(&ic),
            Action::UpdateTls { renew: false },
        ),
        (
            "tls change, purpose not reported by Azure: reattach (sends everything)",
            custom.clone(),
            obs(Some(ObservedCompute {
                purpose: None,
                ..tls_on.clone()
            })),
            ready(&ic),
            Action::BackupTls,
        ),
        (
            "tls and purpose change together: reattach",
            {
                let mut d = custom.clone();
                d.purpose = ClusterPurpose::DevTest;
                d
            },
            obs(Some(tls_on.clone())),
            ready(&ic),
            Action::BackupTls,
        ),
        (
            "Azure refused the in-place TLS change earlier: reattach",
            custom.clone(),
            obs(Some(tls_on.clone())),
            ClusterStatus {
                reattach_required: Some("Azure refused the in-place TLS change".into()),
                ..ready(&custom)
            },
            Action::BackupTls,
        ),
        (
            "failed after serving, TLS on, no certificate held: back up before the detach",
            ic.clone(),
            obs(Some(ObservedCompute {
                tls_enabled: true,
                ..failed.clone()
            })),
            owned(&ic, Phase::Updating),
            Action::BackupTls,
        ),
        (
            "failed after serving, TLS on, backup held: detach and reattach",
            ic.clone(),
            obs(Some(ObservedCompute {
                tls_enabled: true,
                ..failed.clone()
            })),
            ClusterStatus {
                tls: Some(crate::crd::TlsStatus {
                    backup_secret_name: Some("aks1-tls-backup".into()),
                    ..Default::default()
                }),
                ..owned(&ic, Phase::Updating)
            },
            Action::RetryFailed {
                detach: true,
                then: Phase::Reattaching,
            },
        ),
        (
            "renew annotation on an Auto certificate: renew in place",
            auto_renew_token.clone(),
            obs(Some(auto_on.clone())),
            ready(&auto_renew_token),
            Action::UpdateTls { renew: true },
        ),
        (
            "renew annotation already acted on",
            auto_renew_token.clone(),
            obs(Some(auto_on.clone())),
            ClusterStatus {
                last_renew_token: Some("r1".into()),
                ..ready(&auto_renew_token)
            },
            Action::Ready,
        ),
        (
            "renew annotation while Azure serves no Auto certificate: nothing to renew",
            auto_renew_token.clone(),
            obs(Some(tls_on.clone())),
            ready(&auto_renew_token),
            Action::Ready,
        ),
        (
            "autoRenew, 31 days left: not yet",
            auto_renew.clone(),
            serving_auto(),
            expires(&auto_renew, 31, None),
            Action::Ready,
        ),
        (
            "autoRenew, 30 days left: renew in place",
            auto_renew.clone(),
            serving_auto(),
            expires(&auto_renew, 30, None),
            Action::UpdateTls { renew: true },
        ),
        (
            "autoRenew, 5 days left but renewed an hour ago: not again",
            auto_renew.clone(),
            serving_auto(),
            expires(&auto_renew, 5, Some(3_600)),
            Action::Ready,
        ),
        (
            "autoRenew, 5 days left, renewed two days ago: again",
            auto_renew.clone(),
            serving_auto(),
            expires(&auto_renew, 5, Some(2 * 86_400)),
            Action::UpdateTls { renew: true },
        ),
        (
            "no autoRenew, 1 day left: only the warning",
            auto_label.clone(),
            serving_auto(),
            expires(&auto_label, 1, None),
            Action::Ready,
        ),
        (
            "purpose change: reattach",
            new_purpose.clone(),
            obs(Some(tls_on.clone())),
            ready(&ic),
            Action::BackupTls,
        ),
        (
            "reattach annotation",
            token.clone(),
            obs(Some(compute(AzState::Succeeded))),
            ready(&token),
            Action::Detach,
        ),
        (
            "reattach annotation already done",
            token.clone(),
            obs(Some(compute(AzState::Succeeded))),
            token_done,
            Action::Ready,
        ),
        (
            "custom cert rotated in the Secret: in place",
            custom.clone(),
            rotated_secret("bbbb"),
            sent(&custom, "aaaa"),
            Action::UpdateTls { renew: false },
        ),
        (
            "custom cert unchanged (case-insensitive hex)",
            custom.clone(),
            rotated_secret("AAAA"),
            sent(&custom, "aaaa"),
            Action::Ready,
        ),
        (
            "custom Secret unreadable: keep serving",
            custom.clone(),
            obs(Some(tls_on.clone())),
            sent(&custom, "aaaa"),
            Action::Ready,
        ),
        (
            "rotation under reattachPolicy Manual: in place (no downtime, no wait)",
            {
                let mut d = custom.clone();
                d.manual_reattach = true;
                d
            },
            rotated_secret("bbbb"),
            sent(&custom, "aaaa"),
            Action::UpdateTls { renew: false },
        ),
        (
            "resume backup after crash",
            ic.clone(),
            obs(Some(tls_on.clone())),
            owned(&ic, Phase::BackingUpTls),
            Action::BackupTls,
        ),
        (
            "resume detach after crash",
            ic.clone(),
            obs(Some(tls_on.clone())),
            owned(&ic, Phase::Detaching),
            Action::Detach,
        ),
        (
            "manual policy waits",
            manual(None),
            obs(Some(attached(AzState::Succeeded))),
            ready(&desired(false)),
            Action::ReattachPending,
        ),
        (
            "manual policy + annotation",
            manual(Some("now")),
            obs(Some(attached(AzState::Succeeded))),
            ready(&desired(false)),
            Action::Detach,
        ),
        (
            "delete: orphan",
            deleting(DeletionPolicy::Orphan, true),
            obs(Some(compute(AzState::Succeeded))),
            ready(&ic),
            Action::Finished,
        ),
        (
            "delete: created compute",
            deleting(DeletionPolicy::Delete, true),
            obs(Some(compute(AzState::Succeeded))),
            ready(&ic),
            Action::DeleteCompute,
        ),
        (
            "delete: compute attached after reattach",
            deleting(DeletionPolicy::Delete, true),
            obs(Some(attached(AzState::Succeeded))),
            ready(&ic),
            Action::Detach,
        ),
        (
            "delete: then the AKS cluster",
            deleting(DeletionPolicy::Delete, true),
            Observed {
                cluster: cluster(3, false),
                ..obs(None)
            },
            ClusterStatus {
                is_attached_compute: Some(true),
                ..ready(&ic)
            },
            Action::DeleteAks,
        ),
        (
            "delete: AKS gone",
            deleting(DeletionPolicy::Delete, true),
            Observed {
                cluster: Lookup::Missing,
                ..obs(None)
            },
            ClusterStatus {
                is_attached_compute: Some(true),
                ..ready(&ic)
            },
            Action::Finished,
        ),
        (
            "delete: never ours (stalled ComputeExists), someone else's compute is left alone",
            deleting(DeletionPolicy::Delete, true),
            obs(Some(compute(AzState::Succeeded))),
            ClusterStatus::default(),
            Action::Finished,
        ),
        (
            "detach: never ours, someone else's attachment is left alone",
            deleting(DeletionPolicy::Detach, false),
            obs(Some(tls_on.clone())),
            ClusterStatus::default(),
            Action::Finished,
        ),
        (
            "delete: busy",
            deleting(DeletionPolicy::Delete, true),
            obs(Some(compute(AzState::Busy))),
            ready(&ic),
            Action::Wait,
        ),
        (
            "detach: tls on, backup first",
            deleting(DeletionPolicy::Detach, false),
            obs(Some(tls_on.clone())),
            ready(&ca),
            Action::BackupTls,
        ),
        (
            "detach: after backup",
            deleting(DeletionPolicy::Detach, false),
            obs(Some(tls_on.clone())),
            owned(&ca, Phase::Detaching),
            Action::Detach,
        ),
        (
            "detach: tls off",
            deleting(DeletionPolicy::Detach, false),
            obs(Some(compute(AzState::Succeeded))),
            ready(&ca),
            Action::Detach,
        ),
        (
            "detach: gone",
            deleting(DeletionPolicy::Detach, false),
            obs(None),
            ready(&ca),
            Action::Finished,
        ),
    ];
    let mut failures = Vec::new();
    for (row, d, o, s, expected) in rows {
        let got = choose(&d, &o, &s);
        let same = match (&got, &expected) {
            (Action::Stall(a), Action::Stall(b)) => a.reason == b.reason && !a.message.is_empty(),
            (a, b) => a == b,
        };
        if !same {
            failures.push(format!("{row}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn node_count_is_read_only_when_not_known_to_match() {
    let d = desired(true);
    let steady = ClusterStatus {
        agent_count: Some(3),
        kubernetes_version: Some("1.30.4".into()),
        ..owned(&d, Phase::Ready)
    };
    let cases: [(&str, ClusterStatus, bool); 6] = [
        ("steady resync", steady.clone(), false),
        (
            "new generation (maybe a new agentCount)",
            ClusterStatus {
                observed_generation: Some(0),
                ..steady.clone()
            },
            true,
        ),
        (
            "count differs from the spec",
            ClusterStatus {
                agent_count: Some(5),
                ..steady.clone()
            },
            true,
        ),
        (
            "never read",
            ClusterStatus {
                agent_count: None,
                kubernetes_version: None,
                ..steady.clone()
            },
            true,
        ),
        (
            "not Ready yet",
            ClusterStatus {
                phase: Some(Phase::Creating),
                ..steady.clone()
            },
            true,
        ),
        (
            "an attachment's cluster is not ours to count",
            steady.clone(),
            false,
        ),
    ];
    for (i, (why, st, want)) in cases.into_iter().enumerate() {
        let d = if i == 5 { desired(false) } else { d.clone() };
        assert_eq!(needs_node_count(&d, &st), want, "{why}");
    }
}

/// Which write a plan holds, as a short name (bodies are checked by the scenario tests).
fn write_name(w: &Option<Write>) -> &'static str {
    match w {
        None => "-",
        Some(Write::PutCompute { kind, .. }) => match kind {
            OperationKind::Create => "PutCompute(Create)",
            OperationKind::Attach => "PutCompute(Attach)",
            OperationKind::Update => "PutCompute(Update)",
            _ => "PutCompute(?)",
        },
        Some(Write::DeleteCompute { action, .. }) => match action {
            UnderlyingResourceAction::Delete => "DeleteCompute(Delete)",
            UnderlyingResourceAction::Detach => "DeleteCompute(Detach)",
        },
        Some(Write::ScalePool { .. }) => "ScalePool",
        Some(Write::DeleteManagedCluster { .. }) => "DeleteManagedCluster",
        Some(Write::BackUpTls {
            purpose: BackupPurpose::BeforeDetach { .. },
            ..
        }) => "BackUpTls(BeforeDetach)",
        Some(Write::BackUpTls {
            purpose: BackupPurpose::Opportunistic,
            ..
        }) => "BackUpTls(Opportunistic)",
    }
}

/// What the create/attach checks find in a healthy subscription.
fn provisionable(c: Option<ObservedCompute>) -> Observed {
    Observed {
        provision: Some(crate::engine::observe::ProvisionFacts {
            workspace_location: Some("eastus".into()),
            vm_vcpus: Some(("eastus".into(), Some(4))),
            pool_vcpus: vec![(3, Some(4))],
            ..Default::default()
        }),
        cluster: cluster(3, false),
        ..obs(c)
    }
}

/// Every `Write` variant and every phase transition, each reached from a row: (row,
/// desired, observed, status, expected write, expected phase once the plan is saved).
#[test]
fn plan_table() {
    let ic = desired(true);
    let ca = desired(false);
    let tls = |mut d: Desired| {
        d.tls = TlsSpec {
            mode: TlsMode::Auto,
            leaf_domain_label: Some("contoso".into()),
            ..Default::default()
        };
        d
    };
    let tls_on = ObservedCompute {
        tls_enabled: true,
        ..compute(AzState::Succeeded)
    };
    let deleting = |mut d: Desired, policy: DeletionPolicy| {
        d.deleting = true;
        d.deletion_policy = policy;
        d
    };
    let regen = |mut d: Desired| {
        d.generation = Some(2);
        d
    };
    let failed = ObservedCompute {
        errors: vec![("InternalServerError".into(), "x".into())],
        ..compute(AzState::Failed)
    };
    let cfg = EngineConfig::default();
    // An attachment of a cluster in the workspace's subscription (the checks pass).
    let ca = {
        let mut d = ca;
        d.flavor = Flavor::Attach {
            aks_id: AKS.replace(
                "/subscriptions/s/",
                "/subscriptions/00000000-0000-0000-0000-000000000000/",
            ),
        };
        d
    };
    let raw = |o: Observed| Observed {
        compute_raw: Some(crate::azure::model::AksComputeResource::default()),
        ..o
    };
    let rows: Vec<(&str, Desired, Observed, ClusterStatus, &str, Phase)> = vec![
        (
            "create",
            ic.clone(),
            provisionable(None),
            ClusterStatus::default(),
            "PutCompute(Create)",
            Phase::Creating,
        ),
        (
            "attach",
            ca.clone(),
            provisionable(None),
            ClusterStatus::default(),
            "PutCompute(Attach)",
            Phase::Attaching,
        ),
        (
            "created",
            ic.clone(),
            obs(Some(compute(AzState::Succeeded))),
            owned(&ic, Phase::Creating),
            "-",
            Phase::Ready,
        ),
        (
            "attached",
            ca.clone(),
            obs(Some(compute(AzState::Succeeded))),
            owned(&ca, Phase::Attaching),
            "-",
            Phase::Ready,
        ),
        (
            "description in place",
            with_description(&ic),
            raw(obs(Some(compute(AzState::Succeeded)))),
            owned(&ic, Phase::Ready),
            "PutCompute(Update)",
            Phase::Updating,
        ),
        (
            "updated",
            ic.clone(),
            obs(Some(compute(AzState::Succeeded))),
            owned(&ic, Phase::Updating),
            "-",
            Phase::Ready,
        ),
        (
            "scale",
            with_agents(&ic, 5),
            obs(Some(compute(AzState::Succeeded))),
            owned(&ic, Phase::Ready),
            "ScalePool",
            Phase::Scaling,
        ),
        (
            "scaled",
            ic.clone(),
            obs(Some(compute(AzState::Succeeded))),
            owned(&ic, Phase::Scaling),
            "-",
            Phase::Ready,
        ),
        (
            "purpose change, TLS on: back up first",
            regen(ClusterPurposeChange::devtest(tls(ca.clone()))),
            obs(Some(tls_on.clone())),
            owned(&tls(ca.clone()), Phase::Ready),
            "BackUpTls(BeforeDetach)",
            Phase::BackingUpTls,
        ),
        (
            "purpose change, TLS off: detach",
            regen(ClusterPurposeChange::devtest(ca.clone())),
            obs(Some(compute(AzState::Succeeded))),
            owned(&ca, Phase::Ready),
            "DeleteCompute(Detach)",
            Phase::Detaching,
        ),
        (
            "backed up: detach",
            tls(ca.clone()),
            obs(Some(tls_on.clone())),
            owned(&tls(ca.clone()), Phase::Detaching),
            "DeleteCompute(Detach)",
            Phase::Detaching,
        ),
        (
            "detached: attach again",
            ca.clone(),
            provisionable(None),
            owned(&ca, Phase::Reattaching),
            "PutCompute(Attach)",
            Phase::Reattaching,
        ),
        (
            "reattached",
            ca.clone(),
            obs(Some(compute(AzState::Succeeded))),
            owned(&ca, Phase::Reattaching),
            "-",
            Phase::Ready,
        ),
        (
            "TLS served, never backed up",
            tls(ic.clone()),
            obs(Some(tls_on.clone())),
            ClusterStatus {
                aks_resource_id: Some(AKS.into()),
                ..owned(&tls(ic.clone()), Phase::Ready)
            },
            "BackUpTls(Opportunistic)",
            Phase::Ready,
        ),
        (
            "failed create: delete it",
            ic.clone(),
            obs(Some(failed.clone())),
            owned(&ic, Phase::Creating),
            "DeleteCompute(Delete)",
            Phase::Creating,
        ),
        (
            "failed after serving: detach it",
            ic.clone(),
            obs(Some(failed.clone())),
            owned(&ic, Phase::Ready),
            "DeleteCompute(Detach)",
            Phase::Reattaching,
        ),
        (
            "delete",
            deleting(ic.clone(), DeletionPolicy::Delete),
            obs(Some(compute(AzState::Succeeded))),
            owned(&ic, Phase::Ready),
            "DeleteCompute(Delete)",
            Phase::Deleting,
        ),
        (
            "delete after a reattach: the cluster directly",
            deleting(ic.clone(), DeletionPolicy::Delete),
            Observed {
                cluster: cluster(3, false),
                ..obs(None)
            },
            ClusterStatus {
                is_attached_compute: Some(true),
                ..owned(&ic, Phase::Deleting)
            },
            "DeleteManagedCluster",
            Phase::Deleting,
        ),
        (
            "detach on delete",
            deleting(ca.clone(), DeletionPolicy::Detach),
            obs(Some(compute(AzState::Succeeded))),
            owned(&ca, Phase::Ready),
            "DeleteCompute(Detach)",
            Phase::Deleting,
        ),
        (
            "gone",
            deleting(ca.clone(), DeletionPolicy::Detach),
            obs(None),
            owned(&ca, Phase::Deleting),
            "-",
            Phase::Deleting,
        ),
        (
            "busy",
            ic.clone(),
            obs(Some(compute(AzState::Busy))),
            owned(&ic, Phase::Creating),
            "-",
            Phase::Creating,
        ),
        (
            "stall keeps a new resource Pending",
            ic.clone(),
            obs(None),
            ClusterStatus::default(),
            "-",
            Phase::Pending,
        ),
    ];
    let mut failures = Vec::new();
    for (row, d, o, s, write, phase) in rows {
        let plan = decide(&d, &o, &s, &cfg);
        let got = (
            write_name(&plan.write),
            plan.status.phase.unwrap_or_default(),
        );
        if got != (write, phase) {
            failures.push(format!("{row}: expected {write} in {phase:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn with_description(d: &Desired) -> Desired {
    let mut d = d.clone();
    d.description = Some("scoring".into());
    d
}

fn with_agents(d: &Desired, n: i32) -> Desired {
    let mut d = d.clone();
    if let Flavor::Create { agent_count, .. } = &mut d.flavor {
        *agent_count = n;
    }
    d
}

struct ClusterPurposeChange;

impl ClusterPurposeChange {
    fn devtest(mut d: Desired) -> Desired {
        d.purpose = ClusterPurpose::DevTest;
        d
    }
}

/// The transitions that follow a write's result: the pure completion of a plan.
#[test]
fn settle_table() {
    let ca = desired(false);
    let cfg = EngineConfig::default();
    let handle = OperationHandle {
        kind: OperationKind::Detach,
        style: crate::azure::LroStyle::AsyncOperation,
        url: "https://management.azure.com/op".into(),
        retry_after: Some(Duration::from_secs(7)),
    };
    let tls_on = ObservedCompute {
        tls_enabled: true,
        ..compute(AzState::Succeeded)
    };
    let mut purpose = ca.clone();
    purpose.purpose = ClusterPurpose::DevTest;
    purpose.generation = Some(2);
    let status = ClusterStatus {
        aks_resource_id: Some(AKS.into()),
        ..owned(&ca, Phase::Ready)
    };
    let o = obs(Some(compute(AzState::Succeeded)));
    // Detach on the way to a reattach: Reattaching once Azure accepted it.
    let plan = decide(&purpose, &o, &status, &cfg);
    assert_eq!(plan.status.phase, Some(Phase::Detaching));
    let done = settle(
        &purpose,
        &o,
        plan.clone(),
        Ok(Done::Started(Some(handle.clone()))),
        &cfg,
    );
    assert_eq!(done.status.phase, Some(Phase::Reattaching));
    assert_eq!(
        done.status.operation.as_ref().map(|op| op.kind),
        Some(OperationKind::Detach)
    );
    assert_eq!(
        done.requeue,
        Some(Duration::from_secs(7)),
        "Azure's Retry-After"
    );
    // The same write refused with 403: a stall, no operation, no timer.
    let forbidden = crate::azure::error::ApiError::from_response(
        "compute.delete",
        reqwest::StatusCode::FORBIDDEN,
        br#"{"error":{"code":"AuthorizationFailed","message":"no"}}"#,
        Default::default(),
        None,
    );
    let refused = settle(
        &purpose,
        &o,
        plan,
        Err(WriteFailure::Azure(forbidden.into())),
        &cfg,
    );
    assert!(refused.status.operation.is_none());
    assert_eq!(refused.requeue, None);
    assert!(
        matches!(&refused.verdict, Some(Verdict::Stall(s)) if s.reason == "AuthorizationFailed")
    );
    // Backup before a detach: Detaching once the certificate is verified.
    let o = obs(Some(tls_on));
    let mut tls = purpose.clone();
    tls.tls = TlsSpec {
        mode: TlsMode::Auto,
        leaf_domain_label: Some("contoso".into()),
        ..Default::default()
    };
    let plan = decide(&tls, &o, &status, &cfg);
    assert_eq!(plan.status.phase, Some(Phase::BackingUpTls));
    let info = verified("ab".repeat(32).as_str()).info;
    let done = settle(
        &tls,
        &o,
        plan.clone(),
        Ok(Done::BackedUp {
            info,
            stored: crate::engine::settle::Stored::Here,
        }),
        &cfg,
    );
    assert_eq!(done.status.phase, Some(Phase::Detaching));
    assert_eq!(done.requeue, Some(Duration::ZERO));
    assert!(done.events.iter().any(|e| e.reason == "TLSBackedUp"));
    // A backup that cannot be taken, no certificate held elsewhere: never detach.
    let failed = settle(
        &tls,
        &o,
        plan,
        Err(WriteFailure::Tls(TlsError::BackupFailed(
            "private cluster".into(),
        ))),
        &cfg,
    );
    assert_eq!(failed.status.phase, Some(Phase::BackingUpTls));
    assert!(
        failed
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.reason == "TLSBackupFailed" && c.status == "True")
    );
    // An earlier verified backup holds the certificate. A passing failure of the fresh read
    // (503 with Retry-After) is still waited out: no detach on the older copy while the one
    // serving now can be read in a moment.
    let held = Observed {
        backup: Some(verified("aaaa")),
        ..obs(Some(ObservedCompute {
            tls_enabled: true,
            ..compute(AzState::Succeeded)
        }))
    };
    let plan = decide(&tls, &held, &status, &cfg);
    assert_eq!(write_name(&plan.write), "BackUpTls(BeforeDetach)");
    let passing = settle(
        &tls,
        &held,
        plan.clone(),
        Err(WriteFailure::Tls(TlsError::Unavailable(
            "the API server answered 503".into(),
            Some(Duration::from_secs(9)),
        ))),
        &cfg,
    );
    assert_eq!(passing.status.phase, Some(Phase::BackingUpTls));
    assert!(
        passing.requeue >= Some(Duration::from_secs(9)),
        "{:?}",
        passing.requeue
    );
    assert!(
        passing
            .events
            .iter()
            .any(|e| e.warning && e.reason == "TLSBackupRetrying")
    );
    assert!(
        !passing
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );
    // A read that cannot succeed (the cluster cannot be reached) goes on with the held copy.
    let unreachable = settle(
        &tls,
        &held,
        plan,
        Err(WriteFailure::Tls(TlsError::BackupFailed(
            "private cluster".into(),
        ))),
        &cfg,
    );
    assert_eq!(unreachable.status.phase, Some(Phase::Detaching));
    assert_eq!(unreachable.requeue, Some(Duration::ZERO));
    assert!(unreachable.events.iter().any(|e| e.warning
        && e.reason == "TLSBackupFailed"
        && e.message.contains("certificate already held")));
}

/// The claim precedence rule, the same in `amlops run`, the demo, the bench and the tests.
#[test]
fn claims_precedence() {
    let d = {
        let mut d = desired(true);
        d.created = Some("2026-01-02T00:00:00Z".parse().unwrap());
        d
    };
    let other = |owns: bool, created: &str, name: &str| crate::engine::store::Claim {
        key: crate::engine::ObjKey {
            name: name.into(),
            ..d.key()
        },
        compute_id: d.compute_id(),
        aks_id: None,
        owns,
        created: created.parse().ok(),
    };
    let cases = [
        ("older", other(false, "2026-01-01T00:00:00Z", "x"), true),
        ("newer", other(false, "2026-01-03T00:00:00Z", "x"), false),
        (
            "newer but owns its compute",
            other(true, "2026-01-03T00:00:00Z", "x"),
            true,
        ),
        (
            "same time, name first",
            other(false, "2026-01-02T00:00:00Z", "a"),
            true,
        ),
        (
            "same time, name after",
            other(false, "2026-01-02T00:00:00Z", "z"),
            false,
        ),
    ];
    for (why, claim, wins) in cases {
        assert_eq!(
            crate::engine::checks::takes_precedence(&claim, &d),
            wins,
            "{why}"
        );
        let stalls = crate::engine::checks::check_claims(&d, std::slice::from_ref(&claim)).is_err();
        assert_eq!(stalls, wins, "{why}");
    }
}

/// `sslConfiguration` of a plan's PUT, as JSON (the key redacted by `Secret`'s Serialize
/// is not asserted on).
fn sent_ssl(plan: &Plan) -> serde_json::Value {
    let Some(Write::PutCompute { body, .. }) = &plan.write else {
        panic!("expected a PUT, got {:?}", plan.write);
    };
    let body = serde_json::to_value(body.as_ref()).expect("json");
    body["properties"]["properties"]["sslConfiguration"].clone()
}

/// TLS changes in place (issue: no detach for a TLS change, a rotation or a renewal), the
/// fallback when Azure refuses, the expiry warnings, and an Auto reattach that stays Auto.
#[test]
fn tls_in_place() {
    let cfg = EngineConfig::default();
    let now = jiff::Timestamp::from_second(1_800_000_000).expect("time");
    let raw: crate::azure::model::AksComputeResource = serde_json::from_value(serde_json::json!({
        "location": "eastus",
        "properties": {
            "computeType": "AKS",
            "description": "kept",
            "properties": {
                "clusterPurpose": "FastProd",
                "loadBalancerType": "PublicIp",
                "sslConfiguration": {"status": "Auto", "leafDomainLabel": "contoso",
                                     "overwriteExistingDomain": false}
            }
        }
    }))
    .expect("compute");
    let serving = |c: ObservedCompute| Observed {
        compute_raw: Some(raw.clone()),
        now: Some(now),
        ..obs(Some(c))
    };
    let auto_on = ObservedCompute {
        tls_enabled: true,
        tls_auto: true,
        ..compute(AzState::Succeeded)
    };
    let mut auto = desired(false);
    // An attachment of a cluster in the workspace's subscription (the checks pass).
    auto.flavor = Flavor::Attach {
        aks_id: AKS.replace(
            "/subscriptions/s/",
            "/subscriptions/00000000-0000-0000-0000-000000000000/",
        ),
    };
    auto.tls = TlsSpec {
        mode: TlsMode::Auto,
        leaf_domain_label: Some("contoso".into()),
        ..Default::default()
    };
    let ready_auto = owned(&auto, Phase::Ready);

    // Auto → Custom: Enabled with cname, certificate and key; the rest of the compute as
    // read; the new certificate's facts in status; Updating, no detach.
    let mut custom = auto.clone();
    custom.tls = TlsSpec {
        mode: TlsMode::Custom,
        cname: Some("a.contoso.com".into()),
        secret_ref: Some(SecretRef { name: "s".into() }),
        ..Default::default()
    };
    custom.generation = Some(2);
    let o = Observed {
        user_tls: Some(Ok(verified("bbbb"))),
        ..serving(auto_on.clone())
    };
    let plan = decide(&custom, &o, &ready_auto, &cfg);
    assert_eq!(write_name(&plan.write), "PutCompute(Update)");
    assert_eq!(plan.status.phase, Some(Phase::Updating));
    let ssl = sent_ssl(&plan);
    assert_eq!(ssl["status"], "Enabled");
    assert_eq!(ssl["cname"], "a.contoso.com");
    assert_eq!(ssl["cert"], "cert");
    assert!(ssl.get("leafDomainLabel").is_none(), "{ssl}");
    let Some(Write::PutCompute { body, .. }) = &plan.write else {
        unreachable!()
    };
    assert_eq!(body.properties.description.as_deref(), Some("kept"));
    // The intent record keeps the old hash: a PUT that fails is tried again…
    assert_eq!(plan.status.last_applied_hash, ready_auto.last_applied_hash);
    // …and Azure's acceptance records the new certificate and hash.
    let accepted = settle(&custom, &o, plan.clone(), Ok(Done::Started(None)), &cfg);
    assert_eq!(
        accepted
            .status
            .tls
            .as_ref()
            .and_then(|t| t.sha256_fingerprint.as_deref()),
        Some("bbbb")
    );
    assert_eq!(
        accepted.status.last_applied_hash,
        Some(custom.attach_hash())
    );
    let busy = crate::azure::error::ApiError::from_response(
        "compute.put",
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        br#"{"error":{"code":"ServiceUnavailable","message":"later"}}"#,
        Default::default(),
        None,
    );
    let retried = settle(
        &custom,
        &o,
        plan.clone(),
        Err(WriteFailure::Azure(busy.into())),
        &cfg,
    );
    let again = decide(&custom, &o, &retried.status, &cfg);
    assert_eq!(
        write_name(&again.write),
        "PutCompute(Update)",
        "a failed in-place change is sent again"
    );
    assert!(plan.after.fallback_reattach);
    assert!(plan.events.iter().any(|e| e.reason == "TLSUpdating"));

    // Azure refuses it: detach + reattach instead, backed up first, and an Event says so.
    let bad_request = crate::azure::error::ApiError::from_response(
        "compute.put",
        reqwest::StatusCode::BAD_REQUEST,
        br#"{"error":{"code":"BadArgument","message":"The certificate cannot be updated in place."}}"#,
        Default::default(),
        None,
    );
    let refused = settle(
        &custom,
        &o,
        plan,
        Err(WriteFailure::Azure(bad_request.into())),
        &cfg,
    );
    assert!(
        refused
            .events
            .iter()
            .any(|e| e.warning && e.reason == "TLSUpdateRefused"),
        "{:?}",
        refused.events
    );
    assert!(refused.status.reattach_required.is_some());
    assert_eq!(refused.requeue, Some(Duration::ZERO));
    let next = decide(&custom, &o, &refused.status, &cfg);
    assert_eq!(write_name(&next.write), "BackUpTls(BeforeDetach)");

    // Auto → Disabled.
    let mut off = auto.clone();
    off.tls = TlsSpec::default();
    off.generation = Some(2);
    let plan = decide(&off, &serving(auto_on.clone()), &ready_auto, &cfg);
    assert_eq!(sent_ssl(&plan), serde_json::json!({"status": "Disabled"}));

    // Custom → Auto: status Auto with label and overwriteExistingDomain, no material.
    let ready_custom = owned(&custom, Phase::Ready);
    let mut back = auto.clone();
    back.generation = Some(3);
    back.tls.overwrite_existing_domain = true;
    let tls_on = ObservedCompute {
        tls_enabled: true,
        ..compute(AzState::Succeeded)
    };
    let plan = decide(&back, &serving(tls_on.clone()), &ready_custom, &cfg);
    assert_eq!(
        sent_ssl(&plan),
        serde_json::json!({"status": "Auto", "leafDomainLabel": "contoso",
                           "overwriteExistingDomain": true})
    );

    // Renewal by annotation: the compute's own Auto configuration plus renew: true.
    let mut renew = auto.clone();
    renew.renew_token = Some("r1".into());
    let plan = decide(&renew, &serving(auto_on.clone()), &ready_auto, &cfg);
    assert_eq!(
        sent_ssl(&plan),
        serde_json::json!({"status": "Auto", "leafDomainLabel": "contoso",
                           "overwriteExistingDomain": false, "renew": true})
    );
    let accepted = settle(
        &renew,
        &serving(auto_on.clone()),
        plan.clone(),
        Ok(Done::Started(None)),
        &cfg,
    );
    assert_eq!(accepted.status.last_renew_token.as_deref(), Some("r1"));
    assert_eq!(
        accepted.status.certificate_renewed_at,
        Some(now.to_string())
    );
    assert!(!plan.after.fallback_reattach);
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "CertificateRenewing")
    );

    // Expiry: one Warning per threshold crossed (30, 7, 1 days), the line on Ready while
    // 30 days or less are left; cleared once a certificate with more serves.
    let expiring = |days: i64, warned: Option<i64>| ClusterStatus {
        tls: Some(crate::crd::TlsStatus {
            mode: Some(TlsMode::Auto),
            not_after: Some((now + jiff::SignedDuration::from_hours(24 * days + 1)).to_string()),
            sha256_fingerprint: Some("aaaa".into()),
            hostname: Some("contoso123456.eastus.cloudapp.azure.com".into()),
            ..Default::default()
        }),
        certificate_expiry_warning: warned,
        ..ready_auto.clone()
    };
    let ready_message = |p: &Plan| {
        p.status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let warnings = |p: &Plan| {
        p.events
            .iter()
            .filter(|e| e.warning && e.reason == "CertificateExpiring")
            .count()
    };
    for (days, warned, events, recorded) in [
        (45, None, 0, None),
        (45, Some(7), 0, None),
        (30, None, 1, Some(30)),
        (29, Some(30), 0, Some(30)),
        (7, Some(30), 1, Some(7)),
        (1, Some(7), 1, Some(1)),
        (-2, Some(1), 0, Some(1)),
    ] {
        let plan = decide(
            &auto,
            &serving(auto_on.clone()),
            &expiring(days, warned),
            &cfg,
        );
        assert_eq!(write_name(&plan.write), "-", "{days} days");
        assert_eq!(warnings(&plan), events, "{days} days, warned {warned:?}");
        assert_eq!(plan.status.certificate_expiry_warning, recorded, "{days}");
        let msg = ready_message(&plan);
        match days {
            d if d > 30 => assert!(!msg.contains("certificate"), "{msg}"),
            d if d < 0 => assert!(msg.contains("expired at"), "{msg}"),
            d => assert!(
                msg.contains(&format!("expires in {d} day(s)"))
                    && msg.contains("amlops.dev/renew-certificate"),
                "{msg}"
            ),
        }
    }

    // Internal load balancer switch: in place, with a Warning to repoint DNS.
    let mut ilb = custom.clone();
    ilb.load_balancer = LoadBalancerSpec {
        type_: LoadBalancerType::InternalLoadBalancer,
        subnet: None,
    };
    let o = Observed {
        user_tls: Some(Ok(verified("bbbb"))),
        ..serving(tls_on.clone())
    };
    let plan = decide(&ilb, &o, &owned(&ilb, Phase::Ready), &cfg);
    assert_eq!(write_name(&plan.write), "PutCompute(Update)");
    let warning = plan
        .events
        .iter()
        .find(|e| e.warning && e.reason == "LoadBalancerChanged")
        .expect("LoadBalancerChanged");
    assert!(
        warning
            .message
            .contains("repoint the DNS record of a.contoso.com"),
        "{}",
        warning.message
    );

    // An Auto reattach stays Auto: same label, overwriteExistingDomain, no certificate —
    // even with a verified backup in hand.
    let reattaching = ClusterStatus {
        aks_resource_id: Some(AKS.into()),
        ..owned(&auto, Phase::Reattaching)
    };
    let o = Observed {
        backup: Some(verified("aaaa")),
        provision: provisionable(None).provision,
        cluster: cluster(3, false),
        ..obs(None)
    };
    let plan = decide(&auto, &o, &reattaching, &cfg);
    assert_eq!(
        write_name(&plan.write),
        "PutCompute(Attach)",
        "{:?}",
        plan.status.conditions
    );
    assert_eq!(
        sent_ssl(&plan),
        serde_json::json!({"status": "Auto", "leafDomainLabel": "contoso",
                           "overwriteExistingDomain": true})
    );
}
