//! Where a lease action's time goes: the whole `execute` beside its parts
//! measured alone (parameter validation, the OpenBao secret's version check
//! that runs alongside the SQL, the
//! pool checkout, the two JWT signatures, the audit redaction), the same
//! SQL sent by a bare client with the same pipelining (the floor the
//! database and the network set), and for database leases the server time
//! inside each role function (`track_functions`); and the CPU an API-only
//! issue costs this process and PostgreSQL at 4 callers.

use super::drive::{call, concurrently, lease_id, service, LONG_TTL};
use super::sample::Sample;
use super::scale::progress;
use super::setup::{connect, pg_err, Bench, R};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use supabase_connector::apply::redact;
use supabase_connector::lease::jwt;
use supabase_connector::Connector;
use tokio_postgres::Client;
use uuid::Uuid;

/// `openbao.signing_check_ms` of the windowed comparison.
pub const SIGNING_CHECK_MS: u64 = 500;

/// The parts, p50 each.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub api_issue: Sample,
    pub api_issue_sql: Sample,
    pub api_revoke: Sample,
    pub api_revoke_sql: Sample,
    /// The API-only issue through a connector whose version checks stay
    /// good for [`SIGNING_CHECK_MS`], sequential and at 4 callers.
    pub api_issue_windowed: Sample,
    pub windowed_per_s_at_4: f64,
    pub validate: Sample,
    pub secrets: Sample,
    pub checkout: Sample,
    pub sign_two: Sample,
    pub redact: Sample,
    /// Server time inside each function during `n` database lease issues
    /// and revocations, and during cold upserts.
    pub functions: Functions,
    pub upsert_functions: Functions,
    pub cold_upsert: Sample,
    /// The same objects as raw SQL, one round trip ([`provision_floor`]).
    pub cold_floor: Sample,
    pub db_issue: Sample,
    pub db_revoke: Sample,
    /// CPU per API-only issue at 4 callers.
    pub cpu: Cpu,
}

/// The statement the connector sends to find a principal's access (as
/// logged by the server): `effective_access` in `actions/leases.rs`.
const EFFECTIVE_ACCESS: &str = "select p.state, p.isolation, p.pool, coalesce((select json_agg(json_build_object('platform_role', e.platform_role, 'access_class', e.access_class))
   from (select g.platform_role, g.access_class from supabase_connector.grants g
         where g.project = p.slug and g.principal_type = $2 and g.principal_id = $3
         union all
         select t.platform_role, t.access_class from supabase_connector.teams t
         join supabase_connector.team_members m on m.project = t.project and m.team_id = t.team_id
         where t.project = p.slug and m.user_id = $4) e), '[]')
 from supabase_connector.projects p where p.slug = $1";
const INSERT_LEASE: &str =
    "insert into supabase_connector.leases (lease_id, project, role_name, principal_type, \
     principal_id, platform_role, access_class, database, issued_at, expires_at) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const INSERT_AUDIT: &str = "insert into supabase_connector.audit_log (action, project, lease_id, changed, statements, params, outcome) \
     values ($1, $2, $3, $4, $5, $6, $7)";

/// Profile the lease actions on `project`, `n` times each; the server
/// time per function too when `functions` (it waits twice for the
/// statistics to be flushed: about 25 s).
pub async fn measure(b: &Bench, project: &str, n: usize, functions: bool) -> R<Profile> {
    progress(b, "profile of the lease actions");
    b.run(
        "upsert_database_project_access",
        json!({"project": project, "issue_lease": false, "limits": {"max_database_leases": 0}}),
    )
    .await?;
    let mut p = Profile::default();
    let issue = json!({"project": project, "principal": service(), "database": false, "lease_ttl_seconds": LONG_TTL});
    let bare = Bare::new(&b.stack.get("runtime_url"), project).await?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let v = b.run("issue_database_lease", issue.clone()).await?;
        p.api_issue.push_since(t);
        ours.push(lease_id(&v)?);
        let (ms, id) = bare.issue().await?;
        p.api_issue_sql.ms.push(ms);
        theirs.push(id);
    }
    for (mine, bare_id) in ours.iter().zip(&theirs) {
        let t = Instant::now();
        b.run("revoke_database_lease", json!({"lease_id": mine}))
            .await?;
        p.api_revoke.push_since(t);
        p.api_revoke_sql.ms.push(bare.revoke(*bare_id).await?);
    }
    windowed(b, &mut p, project, &issue, n).await?;
    let sample_lease = b.run("issue_database_lease", issue.clone()).await?;
    parts(b, &mut p, &issue, &sample_lease, n).await?;
    p.cpu = cpu_per_issue(b, project, 4, n * 10).await?;
    if functions {
        role_functions(b, project, n.min(200), &mut p).await?;
    }
    p.cold_floor = provision_floor(b, project, n.min(100)).await?;
    Ok(p)
}

/// What PostgreSQL itself takes to make a new project's objects: the four
/// roles, their two settings and eight memberships, the schema, its grant
/// and six default privileges, a served-list setting and the NOTIFY, as
/// raw SQL in one round trip (one transaction) as the superuser, with the
/// event triggers on. No registry, no role-function checks, no lease: the
/// floor under a cold upsert. Dropped again afterwards.
async fn provision_floor(b: &Bench, project: &str, n: usize) -> R<Sample> {
    let login = format!("{project}_floor_login");
    admin(b, &format!("create role \"{login}\" login noinherit")).await?;
    let mut sample = Sample::default();
    let names: Vec<String> = (0..n)
        .map(|i| format!("{project}_floor{i}").replace('-', "_"))
        .collect();
    for s in &names {
        let sql = format!(
            "begin;
             create role \"{s}_owner\" nologin inherit; create role \"{s}_service_role\" nologin inherit;
             create role \"{s}_authenticated\" nologin inherit; create role \"{s}_anon\" nologin inherit;
             alter role \"{s}_authenticated\" set statement_timeout = '8000';
             alter role \"{s}_anon\" set statement_timeout = '3000';
             grant \"{s}_owner\" to \"{s}_service_role\"; grant authenticated to \"{s}_authenticated\";
             grant anon to \"{s}_anon\"; grant \"{s}_owner\" to supabase_connector_auth;
             grant \"{s}_service_role\" to \"{login}\"; grant \"{s}_authenticated\" to \"{login}\";
             grant \"{s}_anon\" to \"{login}\"; grant \"{s}_owner\" to postgres;
             create schema \"{s}\" authorization \"{s}_owner\";
             grant usage on schema \"{s}\" to \"{s}_service_role\", \"{s}_authenticated\", \"{s}_anon\";
             alter default privileges for role \"{s}_owner\" in schema \"{s}\" grant select, insert, update, delete on tables to \"{s}_authenticated\";
             alter default privileges for role \"{s}_owner\" in schema \"{s}\" grant select on tables to \"{s}_anon\";
             alter default privileges for role \"{s}_owner\" in schema \"{s}\" grant usage, select on sequences to \"{s}_authenticated\";
             alter default privileges for role \"{s}_owner\" in schema \"{s}\" grant execute on functions to \"{s}_authenticated\";
             alter default privileges for role \"{s}_owner\" in schema \"{s}\" grant execute on functions to \"{s}_anon\";
             alter default privileges for role \"{s}_owner\" revoke execute on functions from public;
             alter role \"{login}\" set pgrst.db_schemas = 'public,storage,graphql_public,{s}';
             notify pgrst, 'reload config';
             revoke \"{s}_owner\" from postgres;
             commit;"
        );
        let t = Instant::now();
        admin(b, &sql).await?;
        sample.push_since(t);
    }
    for s in &names {
        admin(b, &format!(
            "drop schema \"{s}\" cascade; drop owned by \"{s}_owner\", \"{s}_service_role\", \"{s}_authenticated\", \"{s}_anon\";
             drop role \"{s}_owner\", \"{s}_service_role\", \"{s}_authenticated\", \"{s}_anon\""
        ))
        .await?;
    }
    admin(b, &format!("drop role \"{login}\"")).await?;
    Ok(sample)
}

/// The API-only issue when a version check stays good for a while
/// (`openbao.signing_check_ms`): one caller, then 4.
async fn windowed(b: &Bench, p: &mut Profile, project: &str, issue: &Value, n: usize) -> R<()> {
    let mut config = b.connector.config().clone();
    config.openbao.signing_check_ms = SIGNING_CHECK_MS;
    config.database.pool_size = 4;
    let c = Arc::new(Connector::new(config).await.map_err(|e| e.message)?);
    let mut ids = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let v = call(&c, "issue_database_lease", issue.clone()).await?;
        p.api_issue_windowed.push_since(t);
        ids.push(lease_id(&v)?);
    }
    let project = project.to_string();
    let (per_s, _, more) = concurrently(&c, 4, n * 5, "issue_database_lease", move |_| {
        json!({"project": project, "principal": service(), "database": false, "lease_ttl_seconds": LONG_TTL})
    })
    .await?;
    p.windowed_per_s_at_4 = per_s;
    let all: Vec<String> = ids.iter().map(ToString::to_string).chain(more).collect();
    concurrently(
        &c,
        4,
        all.len(),
        "revoke_database_lease",
        move |i| json!({"lease_id": all[i]}),
    )
    .await?;
    c.close();
    Ok(())
}

/// The client-side parts, each alone.
async fn parts(b: &Bench, p: &mut Profile, params: &Value, lease: &Value, n: usize) -> R<()> {
    let secrets = b.connector.signing_secrets().await.map_err(|e| e.message)?;
    let claims: Value =
        serde_json::from_str(&super::actions::token_claims(lease)?).map_err(|e| e.to_string())?;
    let db = b.connector.database().await.map_err(|e| e.message)?;
    for _ in 0..n {
        let t = Instant::now();
        supabase_connector::catalog::validate("issue_database_lease", params)
            .map_err(|e| e.message)?;
        p.validate.push_since(t);
        let t = Instant::now();
        b.connector.signing_secrets().await.map_err(|e| e.message)?;
        p.secrets.push_since(t);
        let t = Instant::now();
        drop(db.conn().await.map_err(|e| e.message)?);
        p.checkout.push_since(t);
        let t = Instant::now();
        std::hint::black_box((
            jwt::sign(&claims, &secrets.jwt_secret),
            jwt::sign(&claims, &secrets.jwt_secret),
        ));
        p.sign_two.push_since(t);
        let t = Instant::now();
        std::hint::black_box((redact(params), redact(lease)));
        p.redact.push_since(t);
    }
    Ok(())
}

/// A bare client sending an API-only lease's statements as the connector
/// does (as the server logs them), over the same TCP loopback.
struct Bare {
    c: Client,
    begin: String,
    project: String,
    access: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
    audit: tokio_postgres::Statement,
    row: tokio_postgres::Statement,
    revoke: tokio_postgres::Statement,
}

fn bare_err(e: tokio_postgres::Error) -> String {
    format!("bare client: {}", pg_err(e))
}

impl Bare {
    async fn new(url: &str, project: &str) -> R<Bare> {
        let c = connect(url).await?;
        let prepare = |sql: &'static str| c.prepare(sql);
        let (access, insert, audit) = (
            prepare(EFFECTIVE_ACCESS).await.map_err(bare_err)?,
            prepare(INSERT_LEASE).await.map_err(bare_err)?,
            prepare(INSERT_AUDIT).await.map_err(bare_err)?,
        );
        let row = prepare("select project, revoked_at is not null from supabase_connector.leases where lease_id = $1 for update").await.map_err(bare_err)?;
        let revoke = prepare("select supabase_connector.lease_revoke($1, $2)")
            .await
            .map_err(bare_err)?;
        let lock = supabase_connector::db::lock_key(&format!(
            "project:proj_{}",
            project.replace('-', "_")
        ));
        Ok(Bare {
            begin: format!("BEGIN; SELECT pg_advisory_xact_lock_shared({lock})"),
            project: project.to_string(),
            c,
            access,
            insert,
            audit,
            row,
            revoke,
        })
    }

    /// `BEGIN` with the shared project lock and the access query in one
    /// round trip; the lease row, the audit row and `COMMIT` in the second.
    async fn issue(&self) -> R<(f64, Uuid)> {
        let (c, project) = (&self.c, self.project.as_str());
        let (id, now) = (Uuid::new_v4(), chrono::Utc::now());
        let expires = now + chrono::Duration::seconds(900);
        let (params, outcome) = (
            json!({"project": project}),
            json!({"lease": {"lease_id": id}}),
        );
        let (none, role): (Option<Uuid>, Option<&str>) = (None, None);
        let t = Instant::now();
        futures_util::future::try_join(
            c.batch_execute(&self.begin),
            c.query(&self.access, &[&project, &"service", &"project", &none]),
        )
        .await
        .map_err(bare_err)?;
        futures_util::future::try_join3(
            c.execute(
                &self.insert,
                &[
                    &id,
                    &project,
                    &role,
                    &"service",
                    &"project",
                    &"project_owner",
                    &"service_role",
                    &false,
                    &now,
                    &expires,
                ],
            ),
            c.execute(
                &self.audit,
                &[
                    &"issue_database_lease",
                    &project,
                    &id,
                    &true,
                    &3i32,
                    &params,
                    &outcome,
                ],
            ),
            c.batch_execute("COMMIT"),
        )
        .await
        .map_err(bare_err)?;
        Ok((t.elapsed().as_secs_f64() * 1e3, id))
    }

    /// `BEGIN`, the row locked and `lease_revoke` in one round trip; the
    /// audit row and `COMMIT` in the second.
    async fn revoke(&self, id: Uuid) -> R<f64> {
        let c = &self.c;
        let (params, outcome) = (
            json!({"lease_id": id}),
            json!({"lease_id": id, "revoked": true}),
        );
        let t = Instant::now();
        futures_util::future::try_join3(
            c.batch_execute("BEGIN"),
            c.query(&self.row, &[&id]),
            c.query(&self.revoke, &[&vec![id], &"revoked"]),
        )
        .await
        .map_err(bare_err)?;
        futures_util::future::try_join(
            c.execute(
                &self.audit,
                &[
                    &"revoke_database_lease",
                    &self.project,
                    &id,
                    &true,
                    &3i32,
                    &params,
                    &outcome,
                ],
            ),
            c.batch_execute("COMMIT"),
        )
        .await
        .map_err(bare_err)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }
}

/// CPU time per API-only issue with `callers` callers: this process (the
/// connector) and PostgreSQL's processes, in microseconds, and the rate
/// reached meanwhile.
async fn cpu_per_issue(b: &Bench, project: &str, callers: usize, n: usize) -> R<Cpu> {
    let pg: u32 = b
        .stack
        .get("pg_pid")
        .parse()
        .map_err(|_| "the stack's PostgreSQL pid is unknown".to_string())?;
    let (own0, pg0) = (cpu_ticks(std::process::id()), children_ticks(pg));
    let project = project.to_string();
    let (per_s, _, ids) = concurrently(&b.connector, callers, n, "issue_database_lease", move |_| {
        json!({"project": project, "principal": service(), "database": false, "lease_ttl_seconds": LONG_TTL})
    })
    .await?;
    let (own1, pg1) = (cpu_ticks(std::process::id()), children_ticks(pg));
    let tick_us = 1e6 / 100.0;
    concurrently(
        &b.connector,
        callers,
        ids.len(),
        "revoke_database_lease",
        move |i| json!({"lease_id": ids[i]}),
    )
    .await?;
    Ok(Cpu {
        callers,
        per_s,
        client_us: (own1 - own0) as f64 * tick_us / n as f64,
        server_us: (pg1 - pg0) as f64 * tick_us / n as f64,
    })
}

/// CPU per action at some concurrency.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    pub callers: usize,
    pub per_s: f64,
    pub client_us: f64,
    pub server_us: f64,
}

impl Cpu {
    /// Actions per second the machine's cores would allow at this CPU cost.
    pub fn ceiling(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        cores * 1e6 / (self.client_us + self.server_us)
    }
}

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid).map_or(0, |f| f.1)
}

/// (ppid, utime + stime) from `/proc/<pid>/stat`.
fn stat_fields(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (rest.get(11)?.parse().ok()?, rest.get(12)?.parse().ok()?);
    Some((rest.get(1)?.parse().ok()?, utime + stime))
}

/// CPU ticks of a process and its direct children (PostgreSQL's postmaster
/// and its backends).
fn children_ticks(parent: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = cpu_ticks(parent);
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((ppid, ticks)) = stat_fields(pid) {
            if ppid == parent {
                total += ticks;
            }
        }
    }
    total
}

/// Per-function server time: (function, calls, total ms, self ms).
pub type Functions = Vec<(String, i64, f64, f64)>;

/// `n` database lease issues and revocations, then `n` cold upserts, each
/// batch with `track_functions = pl`: the server time inside each function.
async fn role_functions(b: &Bench, project: &str, n: usize, p: &mut Profile) -> R<()> {
    admin(b, "alter system set track_functions = 'pl'").await?;
    admin(b, "select pg_reload_conf()").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let issue = json!({"project": project, "principal": service(), "lease_ttl_seconds": LONG_TTL});
    let mut leases = (Sample::default(), Sample::default());
    p.functions = function_window(b, async {
        let (s, out) = b
            .timed(n, "issue_database_lease", |_| issue.clone())
            .await?;
        let ids = out.iter().map(lease_id).collect::<R<Vec<_>>>()?;
        let revoke = |i: usize| json!({"lease_id": ids[i]});
        leases = (
            s,
            b.timed(ids.len(), "revoke_database_lease", revoke).await?.0,
        );
        Ok(())
    })
    .await?;
    (p.db_issue, p.db_revoke) = leases;
    let mut cold = Sample::default();
    let upsert = |i: usize| json!({"project": format!("{project}-cold{i}"), "issue_lease": false});
    p.upsert_functions = function_window(b, async {
        cold = b
            .timed(n.min(100), "upsert_database_project_access", upsert)
            .await?
            .0;
        Ok(())
    })
    .await?;
    p.cold_upsert = cold;
    admin(b, "alter system reset track_functions").await?;
    admin(b, "select pg_reload_conf()").await
}

async fn admin(b: &Bench, sql: &str) -> R<()> {
    b.admin
        .batch_execute(sql)
        .await
        .map_err(|e| format!("{sql}: {}", pg_err(e)))
}

/// Reset the function statistics, run `body`, wait for the backends to
/// flush theirs (within 10 s of going idle), read them.
async fn function_window(
    b: &Bench,
    body: impl std::future::Future<Output = R<()>>,
) -> R<Functions> {
    admin(b, "select pg_stat_reset()").await?;
    body.await?;
    tokio::time::sleep(Duration::from_secs(11)).await;
    admin(b, "select pg_stat_clear_snapshot()").await?;
    let rows = b
        .admin
        .query(
            "select funcname::text, calls, total_time, self_time from pg_stat_user_functions
             where schemaname = 'supabase_connector' order by total_time desc",
            &[],
        )
        .await
        .map_err(|e| format!("function statistics: {}", pg_err(e)))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}
