//! Leases per second with 1, 4 and 16 concurrent callers sharing the
//! connector's pool, API-only and with a database login role; then the
//! revocation of the same leases at the same concurrency.

use super::actions::cold_project;
use super::drive::{concurrently, service, LONG_TTL};
use super::sample::Sample;
use super::setup::{Bench, R};
use serde_json::{json, Value};

/// One row: calls per second and their latencies.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    pub callers: usize,
    pub per_s: f64,
    pub sample: Sample,
}

/// Issue and revoke rates, API-only and database leases.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub api_issue: Vec<Rate>,
    pub api_revoke: Vec<Rate>,
    pub db_issue: Vec<Rate>,
    pub db_revoke: Vec<Rate>,
    /// Database leases per row (fewer than `api` when the round's projects
    /// would pass `max_database_leases`).
    pub db_total: usize,
    pub api_total: usize,
}

impl Throughput {
    pub fn api_at(&self, callers: usize) -> f64 {
        at(&self.api_issue, callers)
    }
}

pub fn at(rates: &[Rate], callers: usize) -> f64 {
    rates
        .iter()
        .find(|r| r.callers == callers)
        .map_or(f64::NAN, |r| r.per_s)
}

/// Measure on the round `tag`'s projects: API-only leases all on one
/// project; database leases spread over the round's `2 × samples` projects,
/// at most 40 live on each (under the default `max_database_leases` of 50).
pub async fn measure(
    b: &Bench,
    tag: &str,
    samples: usize,
    total: usize,
    callers: &[usize],
) -> R<Throughput> {
    let db_total = total.min(40 * 2 * samples);
    let mut t = Throughput {
        db_total,
        api_total: total,
        ..Throughput::default()
    };
    for &n in callers {
        let project = cold_project(tag, 0);
        let (issue, revoke) = row(b, n, total, move |_| {
            json!({"project": project, "principal": service(), "database": false, "lease_ttl_seconds": LONG_TTL})
        })
        .await?;
        t.api_issue.push(issue);
        t.api_revoke.push(revoke);
        let tag = tag.to_string();
        let (issue, revoke) = row(b, n, db_total, move |i| {
            let project = match i % 2 {
                0 => cold_project(&tag, (i / 2) % samples),
                _ => format!("n{tag}x{}", (i / 2) % samples),
            };
            json!({"project": project, "principal": service(), "lease_ttl_seconds": LONG_TTL})
        })
        .await?;
        t.db_issue.push(issue);
        t.db_revoke.push(revoke);
    }
    Ok(t)
}

/// `total` issues over `callers`, then their revocations.
async fn row(
    b: &Bench,
    callers: usize,
    total: usize,
    params: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> R<(Rate, Rate)> {
    let (per_s, sample, ids) =
        concurrently(&b.connector, callers, total, "issue_database_lease", params).await?;
    let issue = Rate {
        callers,
        per_s,
        sample,
    };
    let (per_s, sample, _) = concurrently(
        &b.connector,
        callers,
        ids.len(),
        "revoke_database_lease",
        move |i| json!({"lease_id": ids[i]}),
    )
    .await?;
    Ok((
        issue,
        Rate {
            callers,
            per_s,
            sample,
        },
    ))
}
