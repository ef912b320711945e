//! The pool sizing curve: PostgREST's role switch right after a role change
//! elsewhere, as a function of how many projects one login role serves,
//! with the real role graph (class roles inside Supabase's roles, one
//! database lease role inside each project's service class). Measured for
//! a configured pool's login role (pinned projects on pool `curve`) and for
//! Supabase's `authenticator` (projects pinned to `central`), on the
//! cluster the rounds left behind.

use super::actions::{exposure, fmt_ms};
use super::args::Plan;
use super::drive::{concurrently, service, LONG_TTL};
use super::sample::Sample;
use super::scale::progress;
use super::setup::{Bench, CURVE_POOL, R};
use super::switch::{self, Switch};
use serde_json::json;
use std::time::Duration;

/// The role switch's target: p99 within this, in milliseconds.
pub const TARGET_P99_MS: f64 = 2.0;

/// One point of the curve.
#[derive(Debug, Clone, Default)]
pub struct Point {
    pub projects: usize,
    pub pool: Switch,
    pub central: Switch,
    /// The served list recomputed (`apply_exposure`), pool and central.
    pub recompute_pool: Sample,
    pub recompute_central: Sample,
}

/// Measure the curve at each size of `plan.curve`.
pub async fn measure(b: &mut Bench, plan: &Plan) -> R<Vec<Point>> {
    let Some(&largest) = plan.curve.iter().max() else {
        return Ok(vec![]);
    };
    b.pools_for(0, Some(largest)).await?;
    let mut sizes = plan.curve.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let (mut have, mut points) = (0usize, Vec::new());
    for k in sizes {
        progress(b, &format!("sizing curve: {k} projects per login role"));
        grow(b, have, k).await?;
        have = k;
        let budget = Duration::from_secs(plan.curve_seconds);
        let n = plan.switch_samples;
        let api = b.pool_login(CURVE_POOL).await?;
        let login = format!("supabase_connector_pool_{CURVE_POOL}");
        let pool = switch::after_change(b, &api, &login, "k0000", n, budget).await?;
        let api = b.central_login().await?;
        let central = switch::after_change(b, &api, "authenticator", "z0000", n, budget).await?;
        eprintln!(
            "bench:   {k} projects: pool p50 {} p99 {}, central p50 {} p99 {} (ms, after a role change)",
            fmt_ms(pool.after_change.p50()),
            fmt_ms(pool.after_change.p99()),
            fmt_ms(central.after_change.p50()),
            fmt_ms(central.after_change.p99())
        );
        points.push(Point {
            projects: k,
            pool,
            central,
            recompute_pool: exposure(b, CURVE_POOL, 50).await?,
            recompute_central: exposure(b, "central", 50).await?,
        });
    }
    Ok(points)
}

/// Grow both login roles from `from` to `to` projects: `k<i>` pinned to the
/// curve pool, `z<i>` to central, each with one database lease.
async fn grow(b: &Bench, from: usize, to: usize) -> R<()> {
    let n = to.saturating_sub(from);
    for (prefix, pool) in [("k", CURVE_POOL), ("z", "central")] {
        concurrently(
            &b.connector,
            4,
            n,
            "upsert_database_project_access",
            move |i| json!({"project": format!("{prefix}{:04}", from + i), "issue_lease": false, "pool": pool}),
        )
        .await?;
        concurrently(&b.connector, 4, n, "issue_database_lease", move |i| {
            json!({"project": format!("{prefix}{:04}", from + i), "principal": service(),
                   "lease_ttl_seconds": LONG_TTL})
        })
        .await?;
    }
    Ok(())
}

/// The largest measured size whose p99 after a role change meets the
/// target, for the pool's login role (none when every size misses). The
/// switch's own cost only grows with the size; the machine's noise only
/// adds to a sample, never takes away: a size that meets the target does,
/// even when a smaller one missed it through noise.
pub fn largest_within_target(points: &[Point]) -> Option<usize> {
    largest_within(points, |p| &p.pool.after_change)
}

/// The same rule on another of each point's samples.
pub fn largest_within(points: &[Point], sample: impl Fn(&Point) -> &Sample) -> Option<usize> {
    points
        .iter()
        .filter(|p| sample(p).p99() <= TARGET_P99_MS)
        .map(|p| p.projects)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Sample;

    fn point(projects: usize, p99: f64) -> Point {
        let mut p = Point {
            projects,
            ..Point::default()
        };
        p.pool.after_change = Sample {
            ms: vec![p99],
            ..Sample::default()
        };
        p
    }

    #[test]
    fn picks_the_largest_size_within_target() {
        let pts = [point(100, 1.9), point(25, 2.5), point(250, 2.5)];
        assert_eq!(largest_within_target(&pts), Some(100));
        assert_eq!(largest_within_target(&[point(25, 3.0)]), None);
    }
}
