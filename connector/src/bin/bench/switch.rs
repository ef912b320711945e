//! PostgREST's role switch, done per request by an API login role:
//! `BEGIN; select set_config('role', <class role>, true),
//! set_config('request.jwt.claims', <claims>, true); select
//! supabase_connector_api.pre_request(); COMMIT`, one round trip (simple
//! protocol). PostgreSQL checks the switch against the session user's
//! memberships, cached per session and dropped by any change to
//! `pg_authid` or `pg_auth_members` anywhere in the cluster.

use super::actions::token_claims;
use super::drive::{service, LONG_TTL};
use super::sample::Sample;
use super::setup::{pg_err, Bench, R};
use serde_json::json;
use std::time::{Duration, Instant};
use supabase_connector::names::literal;
use tokio_postgres::Client;

/// A request as PostgREST sends it for a token of `role` with `claims`.
pub fn request_sql(role: &str, claims: &str, pre_request: bool) -> String {
    format!(
        "BEGIN; select set_config('role', {}, true), set_config('request.jwt.claims', {}, true);{} COMMIT",
        literal(role),
        literal(claims),
        if pre_request {
            " select supabase_connector_api.pre_request();"
        } else {
            ""
        }
    )
}

async fn timed_request(api: &Client, sql: &str) -> R<f64> {
    let t = Instant::now();
    api.batch_execute(sql)
        .await
        .map_err(|e| format!("PostgREST-style request: {}", pg_err(e)))?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// A role change elsewhere in the cluster, from another session: `CREATE
/// ROLE x; DROP ROLE x` (rows of `pg_authid` only), or with `membership`
/// also a row of `pg_auth_members` (`… IN ROLE anon`), as every database
/// lease issued or revoked anywhere writes. PostgreSQL drops every
/// session's cached membership lists on the first, and its cached
/// `pg_auth_members` lookups too on the second.
pub async fn churn(b: &Bench, membership: bool) -> R<()> {
    let sql = match membership {
        false => "create role bench_churn; drop role bench_churn",
        true => "create role bench_churn in role anon; drop role bench_churn",
    };
    b.admin
        .batch_execute(sql)
        .await
        .map_err(|e| format!("role churn: {}", pg_err(e)))
}

/// The switch as one login role, for one project it serves.
#[derive(Debug, Clone, Default)]
pub struct Switch {
    /// The login role.
    pub login: String,
    /// Projects that login role serves.
    pub projects: i64,
    /// Its memberships (rows of `pg_auth_members` with it as member).
    pub memberships: i64,
    pub warm: Sample,
    /// Control: right after a connector action that writes no role and no
    /// lease (`describe_database_project`), the same token as warm.
    pub after_read: Sample,
    pub after_api_issue: Sample,
    pub after_change: Sample,
    pub after_membership_change: Sample,
}

/// A served project's class role and a live API-only token's claims.
pub async fn api_token(b: &Bench, project: &str) -> R<(String, String, String)> {
    let v = b
        .run(
            "issue_database_lease",
            json!({"project": project, "principal": service(), "database": false, "lease_ttl_seconds": LONG_TTL}),
        )
        .await?;
    let role = format!("proj_{}_service_role", project.replace('-', "_"));
    Ok((role, token_claims(&v)?, super::drive::lease_id(&v)?))
}

/// Warm, right after an API-only issue, and right after a role change
/// elsewhere: `n` of each, interleaved, for `project` as `login`.
pub async fn measure(b: &Bench, api: &Client, login: &str, project: &str, n: usize) -> R<Switch> {
    let (role, claims, first) = api_token(b, project).await?;
    let mut ids = vec![first];
    let mut s = Switch {
        login: login.to_string(),
        ..Switch::default()
    };
    let sql = request_sql(&role, &claims, true);
    timed_request(api, &sql).await?;
    for _ in 0..n {
        churn(b, false).await?;
        s.after_change.ms.push(timed_request(api, &sql).await?);
        s.warm.ms.push(timed_request(api, &sql).await?);
        churn(b, true).await?;
        s.after_membership_change
            .ms
            .push(timed_request(api, &sql).await?);
        timed_request(api, &sql).await?;
        b.run("describe_database_project", json!({"project": project}))
            .await?;
        s.after_read.ms.push(timed_request(api, &sql).await?);
        let (_, fresh, id) = api_token(b, project).await?;
        ids.push(id);
        let fresh_sql = request_sql(&role, &fresh, true);
        s.after_api_issue
            .ms
            .push(timed_request(api, &fresh_sql).await?);
    }
    revoke_quietly(b, ids).await?;
    s.projects = served_projects(b, login).await?;
    s.memberships = memberships(b, login).await?;
    Ok(s)
}

/// Only the switch after a role change, and warm, within a time budget
/// (at least `min` samples): the sizing curve's figure.
pub async fn after_change(
    b: &Bench,
    api: &Client,
    login: &str,
    project: &str,
    n: usize,
    budget: Duration,
) -> R<Switch> {
    let (role, claims, id) = api_token(b, project).await?;
    let sql = request_sql(&role, &claims, true);
    let mut s = Switch {
        login: login.to_string(),
        ..Switch::default()
    };
    timed_request(api, &sql).await?;
    let started = Instant::now();
    for i in 0..n {
        if i >= n.min(50) && started.elapsed() > budget {
            break;
        }
        churn(b, false).await?;
        s.after_change.ms.push(timed_request(api, &sql).await?);
        s.warm.ms.push(timed_request(api, &sql).await?);
        churn(b, true).await?;
        s.after_membership_change
            .ms
            .push(timed_request(api, &sql).await?);
    }
    revoke_quietly(b, vec![id]).await?;
    s.projects = served_projects(b, login).await?;
    s.memberships = memberships(b, login).await?;
    Ok(s)
}

async fn revoke_quietly(b: &Bench, ids: Vec<String>) -> R<()> {
    for id in ids {
        b.run("revoke_database_lease", json!({"lease_id": id}))
            .await?;
    }
    Ok(())
}

async fn served_projects(b: &Bench, login: &str) -> R<i64> {
    let row = b
        .admin
        .query_one(
            "select count(*) from supabase_connector.projects p
             where p.state = 'active' and p.exposed and p.isolation = 'shared'
               and (case when p.pool = 'central' then 'authenticator'
                         else 'supabase_connector_pool_' || p.pool end) = $1",
            &[&login],
        )
        .await
        .map_err(|e| format!("projects served by {login}: {}", pg_err(e)))?;
    Ok(row.get(0))
}

async fn memberships(b: &Bench, login: &str) -> R<i64> {
    let row = b
        .admin
        .query_one(
            "select count(*) from pg_auth_members where member = $1::text::regrole",
            &[&login],
        )
        .await
        .map_err(|e| format!("memberships of {login}: {}", pg_err(e)))?;
    Ok(row.get(0))
}

/// `pre_request`'s cost per API request.
#[derive(Debug, Clone, Default)]
pub struct Overhead {
    pub with: Sample,
    pub without: Sample,
    /// Per call inside the server: 20,000 calls in one statement, less the
    /// same statement without them, divided by 20,000 (milliseconds).
    pub server_ms: f64,
}

impl Overhead {
    /// p50 with, less p50 without.
    pub fn p50_delta(&self) -> f64 {
        self.with.p50() - self.without.p50()
    }
}

/// The same warm request with and without `pre_request`, `n` pairs,
/// alternating which goes first.
pub async fn overhead(b: &Bench, api: &Client, project: &str, n: usize) -> R<Overhead> {
    let (role, claims, id) = api_token(b, project).await?;
    let (with, without) = (
        request_sql(&role, &claims, true),
        request_sql(&role, &claims, false),
    );
    let mut o = Overhead::default();
    for _ in 0..20 {
        timed_request(api, &with).await?;
    }
    for i in 0..n {
        let order = if i % 2 == 0 {
            [(&with, true), (&without, false)]
        } else {
            [(&without, false), (&with, true)]
        };
        for (sql, is_with) in order {
            let ms = timed_request(api, sql).await?;
            if is_with { &mut o.with } else { &mut o.without }
                .ms
                .push(ms);
        }
    }
    o.server_ms = server_side(api, &role, &claims).await?;
    revoke_quietly(b, vec![id]).await?;
    Ok(o)
}

/// `pre_request` called 20,000 times in one statement, as the class role
/// with the token's claims; per call, less the bare loop (best of 5 each).
async fn server_side(api: &Client, role: &str, claims: &str) -> R<f64> {
    const CALLS: i32 = 20_000;
    let setup = format!(
        "select set_config('role', {}, true), set_config('request.jwt.claims', {}, true)",
        literal(role),
        literal(claims)
    );
    let mut best = [f64::INFINITY; 2];
    for (k, sql) in [
        "select count(supabase_connector_api.pre_request()) from generate_series(1, $1) g",
        "select count(g) from generate_series(1, $1) g",
    ]
    .iter()
    .enumerate()
    {
        for _ in 0..5 {
            api.batch_execute(&format!("BEGIN; {setup}"))
                .await
                .map_err(|e| format!("server-side pre_request: {}", pg_err(e)))?;
            let t = Instant::now();
            let r = api.query_one(*sql, &[&CALLS]).await;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            api.batch_execute("COMMIT")
                .await
                .map_err(|e| format!("server-side pre_request: {}", pg_err(e)))?;
            r.map_err(|e| format!("server-side pre_request: {}", pg_err(e)))?;
            best[k] = best[k].min(ms);
        }
    }
    Ok((best[0] - best[1]) / f64::from(CALLS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_one_transaction() {
        let sql = request_sql("proj_a_anon", r#"{"role":"proj_a_anon","x":"it's"}"#, true);
        assert!(sql.starts_with("BEGIN;") && sql.ends_with("COMMIT"));
        assert!(sql.contains("it''s") && sql.contains("pre_request()"));
        assert!(!request_sql("r", "{}", false).contains("pre_request"));
    }
}
