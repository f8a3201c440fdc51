//! The flags of ARM's throttling model and of the steady-state resync (shared by `amlops run`
//! and `amlops-dev bench`; the chart's `controller.arm*` values).

use std::time::Duration;

use clap::builder::TypedValueParser;

use crate::azure::{ArmBucket, ArmLimits, ArmThrottling, RateLimitConfig, ThrottlingModel};
use crate::engine::resync::ResyncPolicy;

/// `token-bucket` or `hourly`, listed in `--help` (the domain enum carries no clap derive).
fn model_parser() -> impl TypedValueParser<Value = ThrottlingModel> {
    clap::builder::PossibleValuesParser::new(ThrottlingModel::ALL.map(ThrottlingModel::as_str)).map(
        |s| {
            s.parse::<ThrottlingModel>()
                .expect("one of the possible values")
        },
    )
}

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err("must be in (0, 1]".into())
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err("must be a positive number of seconds".into())
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err("must be a positive number".into())
    }
}

/// ARM's throttling model and figures, and the shares of them the operator may use (flags
/// shared by `amlops run` and `amlops-dev bench`; the chart's `controller.arm*` values).
#[derive(Clone, Copy, Debug, PartialEq, clap::Args)]
pub struct ArmThrottlingArgs {
    /// ARM's throttling model assumed for a subscription until its
    /// `x-ms-ratelimit-remaining-subscription-*` headers show which one it is under.
    #[arg(
        long,
        default_value = "token-bucket",
        env = "AMLOPS_ARM_THROTTLING",
        value_parser = model_parser()
    )]
    pub arm_throttling: ThrottlingModel,
    /// Token-bucket model: read bucket size (requests) per subscription and principal.
    #[arg(long, default_value_t = 250.0, value_parser = parse_positive, env = "AMLOPS_ARM_READ_BUCKET")]
    pub arm_read_bucket: f64,
    /// Token-bucket model: reads refilled per second.
    #[arg(long, default_value_t = 25.0, value_parser = parse_positive, env = "AMLOPS_ARM_READ_REFILL")]
    pub arm_read_refill: f64,
    /// Token-bucket model: write bucket size (requests).
    #[arg(long, default_value_t = 200.0, value_parser = parse_positive, env = "AMLOPS_ARM_WRITE_BUCKET")]
    pub arm_write_bucket: f64,
    /// Token-bucket model: writes refilled per second.
    #[arg(long, default_value_t = 10.0, value_parser = parse_positive, env = "AMLOPS_ARM_WRITE_REFILL")]
    pub arm_write_refill: f64,
    /// Token-bucket model: delete bucket size (requests).
    #[arg(long, default_value_t = 200.0, value_parser = parse_positive, env = "AMLOPS_ARM_DELETE_BUCKET")]
    pub arm_delete_bucket: f64,
    /// Token-bucket model: deletes refilled per second.
    #[arg(long, default_value_t = 10.0, value_parser = parse_positive, env = "AMLOPS_ARM_DELETE_REFILL")]
    pub arm_delete_refill: f64,
    /// Token-bucket model: the global subscription bucket (all principals) as a multiple of
    /// one principal's.
    #[arg(long, default_value_t = 15.0, value_parser = parse_positive, env = "AMLOPS_ARM_GLOBAL_FACTOR")]
    pub arm_global_factor: f64,
    /// Hourly model: reads per hour per subscription and principal.
    #[arg(long, default_value_t = 12_000, env = "AMLOPS_ARM_READ_BUDGET")]
    pub arm_read_budget: u64,
    /// Hourly model: writes per hour.
    #[arg(long, default_value_t = 1_200, env = "AMLOPS_ARM_WRITE_BUDGET")]
    pub arm_write_budget: u64,
    /// Hourly model: deletes per hour.
    #[arg(long, default_value_t = 15_000, env = "AMLOPS_ARM_DELETE_BUDGET")]
    pub arm_delete_budget: u64,
    /// Share of the read refill (or of the hourly read budget) that steady-state resyncs may
    /// use, in (0, 1].
    #[arg(long, default_value_t = 0.5, value_parser = parse_share, env = "AMLOPS_ARM_READ_SHARE")]
    pub arm_read_share: f64,
    /// Share of each of ARM's limits the operator's own requests are paced to (client-side
    /// buckets of share × size refilled at share × refill), in (0, 1].
    #[arg(long, default_value_t = 0.5, value_parser = parse_share, env = "AMLOPS_ARM_REQUEST_SHARE")]
    pub arm_request_share: f64,
}

impl Default for ArmThrottlingArgs {
    fn default() -> Self {
        let tb = ArmLimits::TOKEN_BUCKET;
        let h = ArmLimits::HOURLY;
        Self {
            arm_throttling: ThrottlingModel::default(),
            arm_read_bucket: tb.reads.size,
            arm_read_refill: tb.reads.refill_per_second,
            arm_write_bucket: tb.writes.size,
            arm_write_refill: tb.writes.refill_per_second,
            arm_delete_bucket: tb.deletes.size,
            arm_delete_refill: tb.deletes.refill_per_second,
            arm_global_factor: tb.global_factor,
            arm_read_budget: h.reads.size as u64,
            arm_write_budget: h.writes.size as u64,
            arm_delete_budget: h.deletes.size as u64,
            arm_read_share: 0.5,
            arm_request_share: 0.5,
        }
    }
}

impl ArmThrottlingArgs {
    /// ARM's figures these flags describe.
    pub fn arm(&self) -> ArmThrottling {
        ArmThrottling {
            model: self.arm_throttling,
            token_bucket: ArmLimits {
                reads: ArmBucket::new(self.arm_read_bucket, self.arm_read_refill),
                writes: ArmBucket::new(self.arm_write_bucket, self.arm_write_refill),
                deletes: ArmBucket::new(self.arm_delete_bucket, self.arm_delete_refill),
                global_factor: self.arm_global_factor,
            },
            hourly: ArmLimits {
                reads: ArmBucket::per_hour(self.arm_read_budget as f64),
                writes: ArmBucket::per_hour(self.arm_write_budget as f64),
                deletes: ArmBucket::per_hour(self.arm_delete_budget as f64),
                global_factor: 0.0,
            },
        }
    }

    /// The ARM client's rate limits: paced to `arm_request_share` of these figures.
    pub fn rate_limits(&self) -> RateLimitConfig {
        RateLimitConfig {
            arm: self.arm(),
            share: Some(self.arm_request_share),
            ..RateLimitConfig::default()
        }
    }

    /// The policy resyncing every `base` within these limits (other fields at their defaults).
    pub fn policy(&self, base: Duration) -> ResyncPolicy {
        ResyncPolicy {
            base,
            arm: self.arm(),
            share: self.arm_read_share,
            ..ResyncPolicy::default()
        }
    }
}

/// Command-line settings of the policy for `amlops-dev bench` (`#[command(flatten)]` them).
#[derive(Clone, Debug, clap::Args)]
pub struct ResyncArgs {
    /// Steady-state resync interval of a Ready resource when the ARM budget allows it, in
    /// seconds (jittered ±10 %; stretched when many resources share a subscription).
    #[arg(long, default_value_t = 600.0, value_parser = parse_seconds, env = "AMLOPS_RESYNC_SECONDS")]
    pub resync_seconds: f64,
    /// ARM's throttling.
    #[command(flatten)]
    pub throttling: ArmThrottlingArgs,
}

impl ResyncArgs {
    /// The policy these settings describe (other fields at their defaults).
    pub fn policy(&self) -> ResyncPolicy {
        self.throttling
            .policy(Duration::from_secs_f64(self.resync_seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::ThrottlingModel::Hourly as HOURLY;

    #[test]
    fn args_build_the_policy_and_the_limits() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            r: ResyncArgs,
        }
        let c = Cli::try_parse_from(["x", "--resync-seconds", "300", "--arm-read-share", "0.25"])
            .unwrap();
        let p = c.r.policy();
        assert_eq!(p.base, Duration::from_secs(300));
        assert_eq!(p.share, 0.25);
        assert_eq!(p.arm, ArmThrottling::default());
        assert_eq!(
            c.r.throttling,
            ArmThrottlingArgs {
                arm_read_share: 0.25,
                ..ArmThrottlingArgs::default()
            }
        );
        let c = Cli::try_parse_from([
            "x",
            "--arm-throttling",
            "hourly",
            "--arm-read-budget",
            "6000",
            "--arm-read-refill",
            "50",
            "--arm-request-share",
            "0.2",
        ])
        .unwrap();
        let arm = c.r.throttling.arm();
        assert_eq!(arm.model, HOURLY);
        assert_eq!(arm.hourly.reads, ArmBucket::per_hour(6_000.0));
        assert_eq!(arm.token_bucket.reads, ArmBucket::new(250.0, 50.0));
        assert_eq!(c.r.throttling.rate_limits().share, Some(0.2));
        for bad in [
            ["--arm-read-share", "0"],
            ["--arm-read-share", "1.5"],
            ["--arm-request-share", "0"],
            ["--resync-seconds", "-1"],
            ["--arm-read-refill", "0"],
            ["--arm-throttling", "daily"],
        ] {
            assert!(
                Cli::try_parse_from(["x", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }
}
