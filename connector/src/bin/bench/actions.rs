//! Latency per action at the current project count: each action called
//! `samples` times in sequence by one caller, with its statements, round
//! trips and catalog writes.

use super::drive::{service, LONG_TTL};
use super::sample::Sample;
use super::setup::{pg_err, Bench, R};
use super::writes::Writes;
use serde_json::{json, Value};
use std::future::Future;

pub const API_ISSUE: &str = "API-only lease: issue";
pub const API_RENEW: &str = "API-only lease: renew";
pub const API_REVOKE: &str = "API-only lease: revoke";
pub const DB_ISSUE: &str = "database lease: issue";
pub const DB_RENEW: &str = "database lease: renew";
pub const DB_REVOKE: &str = "database lease: revoke";
pub const COLD: &str = "upsert, cold, with lease";
pub const COLD_NO_LEASE: &str = "upsert, cold, without lease";
pub const NOOP: &str = "upsert, no-op";
pub const TEAM: &str = "team upsert (50 members)";
pub const VERIFY: &str = "verify one project";
pub const EXPOSE_POOL: &str = "exposure recompute: one pool";
pub const EXPOSE_CENTRAL: &str = "exposure recompute: central";

/// Every action row, in report order.
pub const ALL: [&str; 13] = [
    API_ISSUE,
    API_RENEW,
    API_REVOKE,
    DB_ISSUE,
    DB_RENEW,
    DB_REVOKE,
    COLD,
    COLD_NO_LEASE,
    NOOP,
    TEAM,
    VERIFY,
    EXPOSE_POOL,
    EXPOSE_CENTRAL,
];

const UPSERT: &str = "upsert_database_project_access";
const ISSUE: &str = "issue_database_lease";
const RENEW: &str = "renew_database_lease";
const REVOKE: &str = "revoke_database_lease";

/// One action's figures.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub sample: Sample,
    pub writes: Writes,
}

/// Time `fut` (which returns its samples) between two catalog snapshots.
async fn tracked<T>(
    b: &Bench,
    steps: &mut Vec<Step>,
    name: &'static str,
    fut: impl Future<Output = R<(Sample, T)>>,
) -> R<T> {
    let snap = b.snapshot().await?;
    let (sample, out) = fut.await?;
    let writes = b.writes_since(&snap, sample.len()).await?;
    steps.push(Step {
        name,
        sample,
        writes,
    });
    Ok(out)
}

/// Projects made by a round tagged `tag`: `c<tag>x<i>` (cold, with its
/// lease) and `n<tag>x<i>` (cold without lease, then the no-op).
pub fn cold_project(tag: &str, i: usize) -> String {
    format!("c{tag}x{i}")
}

/// Every action row of one round. Leases are spread over the round's cold
/// projects (each gets at most three, far from `max_database_leases`).
pub async fn measure_all(b: &Bench, tag: &str, s: usize) -> R<Vec<Step>> {
    let mut steps = Vec::new();
    let c = |i: usize| cold_project(tag, i);
    let n = |i: usize| json!({"project": format!("n{tag}x{i}"), "issue_lease": false});
    let st = &mut steps;
    tracked(
        b,
        st,
        COLD,
        b.timed(s, UPSERT, |i| json!({"project": c(i)})),
    )
    .await?;
    tracked(b, st, COLD_NO_LEASE, b.timed(s, UPSERT, n)).await?;
    tracked(b, st, NOOP, b.timed(s, UPSERT, n)).await?;
    for (database, names) in [
        (false, [API_ISSUE, API_RENEW, API_REVOKE]),
        (true, [DB_ISSUE, DB_RENEW, DB_REVOKE]),
    ] {
        let issue = |i: usize| json!({"project": c(i), "principal": service(), "database": database, "lease_ttl_seconds": LONG_TTL});
        let ids = tracked(b, st, names[0], b.timed_leases(s, ISSUE, issue)).await?;
        let renew = |i: usize| json!({"lease_id": ids[i], "ttl_seconds": LONG_TTL});
        tracked(b, st, names[1], b.timed(ids.len(), RENEW, renew)).await?;
        let revoke = |i: usize| json!({"lease_id": ids[i]});
        tracked(b, st, names[2], b.timed(ids.len(), REVOKE, revoke)).await?;
    }
    let team = |i: usize| {
        let members: Vec<String> = (0..50).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        json!({"project": c(i), "team_id": format!("team-{i}"),
               "platform_role": "project_contributor", "members": members})
    };
    let verify = |i: usize| json!({"project": c(i)});
    tracked(b, st, TEAM, b.timed(s, "upsert_database_team_access", team)).await?;
    tracked(b, st, VERIFY, b.timed(s, "verify_database_project", verify)).await?;
    let pool = b.pool_of(&c(0)).await?;
    for (name, target) in [(EXPOSE_POOL, pool.as_str()), (EXPOSE_CENTRAL, "central")] {
        tracked(b, st, name, async {
            Ok((exposure(b, target, s).await?, ()))
        })
        .await?;
    }
    Ok(steps)
}

/// The served list of one pool recomputed from the registry and compared
/// with (and, were it different, written to) its login role's setting:
/// what every change of exposure runs, here as its own statement.
pub async fn exposure(b: &Bench, pool: &str, n: usize) -> R<Sample> {
    let exposure = &b.connector.config().exposure;
    let (mode, base) = (exposure.mode.to_string(), exposure.base_schemas.clone());
    let pools = vec![pool.to_string()];
    b.timed_sql(
        n,
        "select supabase_connector.apply_exposure($1, $2, $3)",
        &[&mode, &base, &pools],
    )
    .await
}

impl Bench {
    /// The pool a project is placed on.
    pub async fn pool_of(&self, project: &str) -> R<String> {
        let row = self
            .admin
            .query_one(
                "select pool from supabase_connector.projects where slug = $1",
                &[&project],
            )
            .await
            .map_err(|e| format!("pool of {project}: {}", pg_err(e)))?;
        Ok(row.get(0))
    }
}

/// A row by name.
pub fn find<'a>(steps: &'a [Step], name: &str) -> Option<&'a Step> {
    steps.iter().find(|s| s.name == name)
}

/// A sample's p50, or NaN when absent.
pub fn p50(steps: &[Step], name: &str) -> f64 {
    find(steps, name).map_or(f64::NAN, |s| s.sample.p50())
}

/// A value to show in a table.
pub fn fmt_ms(x: f64) -> String {
    if x.is_nan() {
        "—".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// JSON of a lease's access token claims (the JWT's payload).
pub fn token_claims(lease: &Value) -> R<String> {
    use base64::Engine as _;
    let token = lease["lease"]["api"]["access_token"]
        .as_str()
        .ok_or("no access token in the lease")?;
    let payload = token.split('.').nth(1).ok_or("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| format!("token payload: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("token payload: {e}"))
}
