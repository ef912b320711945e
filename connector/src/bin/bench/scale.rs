//! Rounds at growing project counts: provision with 4 callers, hold the
//! live leases, then measure every action, the lease throughput (first and
//! last round), PostgREST's role switch on the fullest pool and the
//! pre-request overhead.

use super::actions::{self, Step};
use super::args::Plan;
use super::drive::{concurrently, service};
use super::setup::{pg_err, Bench, POOL_SIZE, R};
use super::switch::{self, Overhead, Switch};
use super::throughput::{self, Throughput};
use serde_json::json;
use std::time::Instant;

/// Everything measured at one project count.
#[derive(Debug, Clone, Default)]
pub struct AtScale {
    pub scale: usize,
    /// Registered projects when measured (the round's own included).
    pub projects: i64,
    pub pools: usize,
    pub roles: i64,
    pub live_leases: i64,
    pub steps: Vec<Step>,
    pub throughput: Option<Throughput>,
    pub switch: Switch,
    pub overhead: Overhead,
}

/// Time spent provisioning `scale…` projects, per segment.
#[derive(Debug, Clone, Default)]
pub struct Provisioning {
    /// (from, to, seconds)
    pub segments: Vec<(usize, usize, f64)>,
    /// Seconds to issue the live leases, and how many.
    pub live: (usize, f64),
    /// Seconds spent creating the projects' tables (not counted above).
    pub tables_s: f64,
}

impl Provisioning {
    pub fn total_s(&self) -> f64 {
        self.segments.iter().map(|s| s.2).sum()
    }

    pub fn projects(&self) -> usize {
        self.segments.iter().map(|s| s.1 - s.0).sum()
    }
}

/// Provision `scale<i>` for `i` in `from..to` (no lease), 4 callers. Their
/// `max_database_leases` is lifted: the live leases of the first round
/// crowd on few of them.
pub async fn provision(b: &Bench, from: usize, to: usize) -> R<f64> {
    let t = Instant::now();
    concurrently(
        &b.connector,
        4,
        to.saturating_sub(from),
        "upsert_database_project_access",
        move |i| {
            json!({"project": format!("scale{:05}", from + i), "issue_lease": false,
                   "limits": {"max_database_leases": 0}})
        },
    )
    .await?;
    Ok(t.elapsed().as_secs_f64())
}

/// Give the `scale<i>` projects, `i` in `from..to`, `per` tables each
/// (`items<j>`, owned by the project's owner role, with a primary key and
/// a text column: four catalog rows each), as the superuser in batches.
pub async fn add_tables(b: &Bench, from: usize, to: usize, per: usize) -> R<f64> {
    let t = Instant::now();
    let batch = (200 / per.max(1)).max(1);
    let mut i = from;
    while per > 0 && i < to {
        let end = (i + batch).min(to);
        let sql = format!(
            "do $$ declare s text; begin
               for i in {i}..{last} loop
                 s := 'proj_scale' || lpad(i::text, 5, '0');
                 execute format('set local role %I', s || '_owner');
                 for j in 0..{per_last} loop
                   execute format('create table %I.%I (id bigint primary key, body text)', s, 'items' || j);
                 end loop;
                 reset role;
               end loop;
             end $$",
            last = end - 1,
            per_last = per - 1
        );
        b.admin
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("tables of the scale projects: {}", pg_err(e)))?;
        i = end;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// `n` live leases over the `scale<i>` projects (`projects` of them), a
/// `share` percent with a database login role, the rest API-only; 4 callers.
pub async fn hold_live_leases(b: &Bench, n: usize, projects: usize, share: usize) -> R<f64> {
    let t = Instant::now();
    concurrently(&b.connector, 4, n, "issue_database_lease", move |i| {
        json!({"project": format!("scale{:05}", i % projects.max(1)), "principal": service(),
               "database": (i % 100) < share, "lease_ttl_seconds": 6 * 3600})
    })
    .await?;
    Ok(t.elapsed().as_secs_f64())
}

/// One round at `scale` projects.
pub async fn round(
    b: &mut Bench,
    plan: &Plan,
    r: usize,
    have: &mut usize,
    prov: &mut Provisioning,
) -> R<AtScale> {
    let scale = plan.scales[r];
    let (first, last) = (r == 0, scale == plan.largest());
    let s = plan.samples;
    let registered = b
        .admin_i64("select count(*) from supabase_connector.projects")
        .await? as usize;
    // The fullest pool is brought to the default size at the largest
    // count (not in a quick run: it would be most of the run).
    let fill = last && !plan.quick;
    let topup = if fill { b.pool_cap as usize } else { 0 };
    let expected = registered + scale.saturating_sub(*have) + 2 * (s + POOL_SIZE) + topup + 50;
    b.pools_for(expected, b.curve_cap).await?;
    if scale > *have {
        progress(b, &format!("provisioning {} → {scale} projects", *have));
        let secs = provision(b, *have, scale).await?;
        prov.segments.push((*have, scale, secs));
        prov.tables_s += add_tables(b, *have, scale, plan.tables_per_project).await?;
        *have = scale;
    }
    if first && plan.live_leases > 0 {
        progress(b, &format!("issuing {} live leases", plan.live_leases));
        let secs = hold_live_leases(b, plan.live_leases, scale, plan.database_share).await?;
        prov.live = (plan.live_leases, secs);
    }
    // After a burst of thousands of new roles, rows and leases, autovacuum
    // analyzes the catalogs over the next minute, and each ANALYZE makes
    // every session plan its statements again: measured in that minute, an
    // action shows the burst, not its own cost. Settle first, as a running
    // system's autovacuum has.
    progress(b, "settling: VACUUM (ANALYZE)");
    b.admin
        .batch_execute("vacuum (analyze)")
        .await
        .map_err(|e| format!("vacuum (analyze): {}", pg_err(e)))?;
    progress(b, &format!("actions at {scale} projects"));
    actions::measure_all(b, &format!("w{r}"), s.min(POOL_SIZE)).await?;
    let steps = actions::measure_all(b, &r.to_string(), s).await?;
    let throughput = match first || last {
        true => Some(
            throughput::measure(b, &r.to_string(), s, plan.throughput_leases, &plan.callers)
                .await?,
        ),
        false => None,
    };
    if fill {
        fill_fullest_pool(b, r).await?;
    }
    let (switch, overhead) = switch_on_fullest_pool(b, plan).await?;
    Ok(AtScale {
        scale,
        projects: b.admin_i64("select count(*) from supabase_connector.projects").await?,
        pools: b.pools,
        roles: b.admin_i64("select count(*) from pg_roles").await?,
        live_leases: b
            .admin_i64("select count(*) from supabase_connector.leases where revoked_at is null and expires_at > now()")
            .await?,
        steps,
        throughput,
        switch,
        overhead,
    })
}

/// The configured pool serving the most projects, and how many.
async fn fullest_pool(b: &Bench) -> R<(String, i64)> {
    let row = b
        .admin
        .query_one(
            "select pool, count(*) from supabase_connector.projects
             where pool ~ '^p[0-9]+$' and state = 'active' and exposed and isolation = 'shared'
             group by pool order by 2 desc, 1 limit 1",
            &[],
        )
        .await
        .map_err(|e| format!("fullest pool: {}", pg_err(e)))?;
    Ok((row.get(0), row.get(1)))
}

/// Bring the fullest pool to its capacity (the default pool size), with
/// projects pinned to it.
async fn fill_fullest_pool(b: &Bench, r: usize) -> R<()> {
    let (pool, served) = fullest_pool(b).await?;
    let missing = (b.pool_cap as i64 - served).max(0) as usize;
    progress(b, &format!("filling pool {pool} to {}", b.pool_cap));
    concurrently(
        &b.connector,
        4,
        missing,
        "upsert_database_project_access",
        move |i| json!({"project": format!("f{r}x{i}"), "issue_lease": false, "pool": pool}),
    )
    .await?;
    Ok(())
}

async fn switch_on_fullest_pool(b: &Bench, plan: &Plan) -> R<(Switch, Overhead)> {
    let (pool, _) = fullest_pool(b).await?;
    let project: String = b
        .admin
        .query_one(
            "select slug from supabase_connector.projects where pool = $1 order by slug limit 1",
            &[&pool],
        )
        .await
        .map_err(|e| format!("a project on {pool}: {}", pg_err(e)))?
        .get(0);
    let api = b.pool_login(&pool).await?;
    let login = format!("supabase_connector_pool_{pool}");
    progress(b, &format!("role switch as {login}"));
    let sw = switch::measure(b, &api, &login, &project, plan.switch_samples).await?;
    let over = switch::overhead(b, &api, &project, plan.overhead_pairs).await?;
    Ok((sw, over))
}

/// A progress line on stderr, with the seconds since the first one.
pub fn progress(b: &Bench, what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("bench: [{t:.0} s] PostgreSQL {}: {what}", b.facts.version);
}
