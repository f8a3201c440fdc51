//! Scenario tests of the whole engine against the emulator over real HTTP, fault-free, with
//! exact counts of the writes Azure accepted (the scenarios live in `common/scenarios.rs`;
//! `engine_faults.rs` runs the same ones under injected faults).

use amlops_testkit as common;

use common::{World, scenarios};

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let w = World::new().await;
                scenarios::$name(&w).await;
            }
        )*

        /// Every scenario of the fault run has a fault-free test here.
        #[test]
        fn every_scenario_has_a_test() {
            let here = [$(stringify!($name)),*];
            assert_eq!(here.as_slice(), scenarios::ALL);
        }
    };
}

scenarios!(
    create_ready,
    attach_custom_tls,
    auto_tls_reattach_keeps_certificate,
    custom_certificate_rotation,
    scale_3_to_5,
    ilb_switch_in_place,
    conflict_already_attached_no_write,
    conflict_claimed_by_another_resource_no_write,
    fastprod_too_few_vcpus_no_write,
    delete_created,
    delete_created_then_reattached,
    detach_keeps_tls_backup,
    orphan_touches_nothing,
    adopt_annotation,
    drift_recreated_with_warning,
    failed_compute_retry_bounded,
    failed_reattach_of_created_cluster_reattaches_same_cluster,
    failed_detach_during_reattach_keeps_cluster_and_certificate,
    manual_reattach_policy_waits_for_annotation,
    dynamic_checks_stall_without_write,
    never_detach_without_a_verified_certificate,
);
