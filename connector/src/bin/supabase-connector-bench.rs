//! Benchmark: per-action latency, statements and round trips, lease
//! throughput, behaviour at 10 to 5,000 projects, memory, and side by side
//! with OpenBao's database secrets engine and pgroles, all on the ephemeral
//! stack (`tests/stack/stack.py`).
//!
//!     cargo run --release -p supabase-connector --bin supabase-connector-bench
//!     cargo run -p supabase-connector --bin supabase-connector-bench -- --quick   # smoke run, seconds
//!
//! The full run writes `bench/RESULTS.md` and `bench/scaling.svg`; the quick
//! run only prints (or writes where `--out` says).

#[path = "bench/report.rs"]
mod report;
#[path = "bench/sides.rs"]
mod sides;

use clap::Parser;
use report::Sample;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use supabase_connector::config::{Config, Secret};
use supabase_connector::stack::Stack;
use supabase_connector::{Connector, Error};

#[derive(Parser)]
#[command(about = "Measure the connector on the ephemeral stack")]
struct Args {
    /// Tiny counts: a smoke run that keeps the benchmark from rotting.
    #[arg(long)]
    quick: bool,
    /// PostgreSQL version of the stack.
    #[arg(long, default_value = "15")]
    pg: String,
    /// Project counts to measure at (full mode).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,5000")]
    scales: Vec<usize>,
    /// Samples per action and scale (full mode).
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Live leases to hold while measuring at the largest scale (full mode).
    #[arg(long, default_value_t = 20_000)]
    live_leases: usize,
    /// Leases issued per throughput measurement (full mode).
    #[arg(long, default_value_t = 2_000)]
    throughput_leases: usize,
    /// Actions run by the long-lived executor before its peak RSS is read (full mode).
    #[arg(long, default_value_t = 10_000)]
    memory_actions: usize,
    /// Verify all projects in one call only up to this many (it grows
    /// faster than linearly); one-project verifies are measured at every count.
    #[arg(long, default_value_t = 1_000)]
    verify_all_max: usize,
    /// Skip OpenBao's database secrets engine comparison.
    #[arg(long)]
    no_openbao_engine: bool,
    /// Skip the process comparison (our CLI and pgroles).
    #[arg(long)]
    no_processes: bool,
    /// Where to write the report (full mode default: bench/RESULTS.md; the
    /// plot goes next to it as scaling.svg).
    #[arg(long)]
    out: Option<String>,
}

/// The targets the figures are held against.
const TARGET_ISSUE_P50_MS: f64 = 1.5;
const TARGET_LEASES_PER_S_AT_4: f64 = 1_000.0;
const TARGET_REVOKE_P50_MS: f64 = 1.0;
const TARGET_COLD_P50_MS: f64 = 5.0;
const TARGET_NOOP_P50_MS: f64 = 1.0;
const TARGET_NOOP_ROUND_TRIPS: f64 = 2.0;
const TARGET_SCALING: f64 = 1.5;

const COLD: &str = "upsert (cold, with lease)";
const COLD_NO_LEASE: &str = "upsert (cold, issue_lease=false)";
const NOOP: &str = "upsert (no-op)";
const ISSUE: &str = "issue_database_lease";
const RENEW: &str = "renew_database_lease";
const REVOKE: &str = "revoke_database_lease";
const TEAM: &str = "team upsert (50 members)";
const EXPOSURE: &str = "exposure recompute";

struct Bench {
    connector: Arc<Connector>,
    /// A session logged in as `authenticator`, the way PostgREST is.
    api: tokio_postgres::Client,
    report: String,
    /// Where the report goes; rewritten as it grows, so an interrupted run
    /// leaves what it measured.
    out: Option<std::path::PathBuf>,
}

impl Bench {
    async fn totals(&self) -> (u64, u64) {
        self.connector
            .database()
            .await
            .expect("database")
            .totals
            .get()
    }

    /// Run `f` `n` times sequentially, timing each call and counting the
    /// statements and round trips the connector sent meanwhile.
    async fn measure<F, Fut>(&self, n: usize, mut f: F) -> Sample
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut s = Sample::default();
        let (st0, rt0) = self.totals().await;
        for i in 0..n {
            let t = Instant::now();
            f(i).await;
            s.ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (st1, rt1) = self.totals().await;
        s.statements = st1 - st0;
        s.round_trips = rt1 - rt0;
        s
    }

    async fn run(&self, action: &str, params: Value) -> Value {
        run(&self.connector, action, params).await
    }

    /// `n` sequential calls of `action`, the i-th with `params(i)`.
    async fn measure_action(
        &self,
        n: usize,
        action: &str,
        params: impl Fn(usize) -> Value,
    ) -> Sample {
        let c = self.connector.clone();
        self.measure(n, |i| {
            let (c, p) = (c.clone(), params(i));
            async move {
                run(&c, action, p).await;
            }
        })
        .await
    }

    fn line(&mut self, s: &str) {
        println!("{s}");
        self.report.push_str(s);
        self.report.push('\n');
        if let Some(out) = &self.out {
            if let Err(e) = std::fs::write(out, &self.report) {
                eprintln!("bench: cannot write {}: {e}", out.display());
            }
        }
    }
}

async fn run(c: &Connector, action: &str, params: Value) -> Value {
    match c.execute(action, params).await {
        Ok(v) => v,
        Err(e) => panic!("{action} failed: {} {}", e.code.as_str(), e.message),
    }
}

fn lease_id(v: &Value) -> String {
    v["lease"]["lease_id"]
        .as_str()
        .expect("lease id")
        .to_string()
}

fn service() -> Value {
    json!({"type": "service", "id": "project"})
}

/// The longest lease TTL the default config allows: leases measured later
/// in a round (renew, revoke) must outlive the slow parts before them.
const LONG_TTL: u64 = 3600;

/// Run `per_task(task, i)` for `i` in `0..n`, spread over `tasks` callers.
async fn spread<F, Fut>(tasks: usize, n: usize, per_task: F)
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(per_task);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            for i in (t..n).step_by(tasks) {
                f(t, i).await;
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
}

/// Provision `scale{i}` projects (no lease) until `count` exist, 4 callers.
async fn provision_to(connector: &Arc<Connector>, have: &mut usize, count: usize) {
    if count <= *have {
        return;
    }
    let (from, c) = (*have, connector.clone());
    spread(4, count - from, move |_, i| {
        let c = c.clone();
        async move {
            run(
                &c,
                "upsert_database_project_access",
                json!({"project": format!("scale{:05}", from + i), "issue_lease": false}),
            )
            .await;
        }
    })
    .await;
    *have = count;
}

/// Leases per second with `callers` concurrent callers issuing `total`
/// leases; the leases' ids go to `issued`.
async fn throughput(
    connector: &Arc<Connector>,
    project: &str,
    callers: usize,
    total: usize,
    issued: &mut Vec<String>,
) -> (f64, Sample) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let c = connector.clone();
        let project = project.to_string();
        let n = (total / callers).max(1);
        tasks.push(tokio::spawn(async move {
            let (mut ms, mut ids) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let t = Instant::now();
                let v = run(
                    &c,
                    "issue_database_lease",
                    json!({"project": project, "principal": service()}),
                )
                .await;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                ids.push(lease_id(&v));
            }
            (ms, ids)
        }));
    }
    let mut all = Sample::default();
    for t in tasks {
        let (ms, ids) = t.await.expect("task");
        all.ms.extend(ms);
        issued.extend(ids);
    }
    (all.ms.len() as f64 / started.elapsed().as_secs_f64(), all)
}

/// Revoke leases by id, 4 callers.
async fn revoke_all(connector: &Arc<Connector>, ids: Vec<String>) {
    let (c, ids) = (connector.clone(), Arc::new(ids));
    let n = ids.len();
    spread(4, n, move |_, i| {
        let (c, ids) = (c.clone(), ids.clone());
        async move {
            run(&c, "revoke_database_lease", json!({"lease_id": ids[i]})).await;
        }
    })
    .await;
}

/// Everything measured at one project count.
struct AtScale {
    scale: usize,
    rows: Vec<(&'static str, Sample)>,
    /// verify_database_project for one project.
    verify_one: Sample,
}

/// PostgREST's per-request role switch (`set_config('role', …, true)` as
/// `authenticator`), right after a lease was issued (so after a change of
/// role memberships) and again at once (membership cache warm).
#[derive(Default)]
struct RoleSwitch {
    after_change: Sample,
    warm: Sample,
}

impl AtScale {
    fn get(&self, name: &str) -> Option<&Sample> {
        self.rows.iter().find(|r| r.0 == name).map(|r| &r.1)
    }
}

/// The per-action measurements at the current project count. Projects made
/// here are named `c<round>x<i>` / `n<round>x<i>`.
async fn measure_actions(
    b: &mut Bench,
    round: usize,
    samples: usize,
) -> (Vec<(&'static str, Sample)>, RoleSwitch) {
    let connector = b.connector.clone();
    let mut rows: Vec<(&'static str, Sample)> = Vec::new();
    let c = connector.clone();
    const UPSERT: &str = "upsert_database_project_access";
    let no_lease = |i: usize| json!({"project": format!("n{round}x{i}"), "issue_lease": false});
    let s = b
        .measure_action(
            samples,
            UPSERT,
            |i| json!({"project": format!("c{round}x{i}")}),
        )
        .await;
    rows.push((COLD, s));
    rows.push((
        COLD_NO_LEASE,
        b.measure_action(samples, UPSERT, no_lease).await,
    ));
    rows.push((NOOP, b.measure_action(samples, UPSERT, no_lease).await));
    let project = format!("c{round}x0");
    let issued = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = b
        .measure(samples, |_| {
            let (c, project, issued) = (c.clone(), project.clone(), issued.clone());
            async move {
                let v = run(
                    &c,
                    "issue_database_lease",
                    json!({"project": project, "principal": service(), "lease_ttl_seconds": LONG_TTL}),
                )
                .await;
                issued.lock().expect("lock").push(lease_id(&v));
            }
        })
        .await;
    rows.push((ISSUE, s));
    let mut switch = RoleSwitch::default();
    // At most 50 samples, and no more than a minute of them: each one after
    // a membership change can take seconds at large counts on PostgreSQL 15.
    let started = Instant::now();
    for i in 0..samples.min(50) {
        if i >= 3 && started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let v = run(
            &c,
            "issue_database_lease",
            json!({"project": project, "principal": service(), "lease_ttl_seconds": LONG_TTL}),
        )
        .await;
        let id = lease_id(&v);
        // tokens name the project's class role
        let role = format!("proj_{}_service_role", project.replace('-', "_"));
        let sql = format!("BEGIN; SELECT set_config('role', '{role}', true); COMMIT");
        for sample in [&mut switch.after_change, &mut switch.warm] {
            let t = Instant::now();
            b.api.batch_execute(&sql).await.expect("role switch");
            sample.ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        issued.lock().expect("lock").push(id);
    }
    let ids: Vec<String> = issued.lock().expect("lock").clone();
    let by_id = |i: usize| json!({"lease_id": ids[i]});
    rows.push((
        RENEW,
        b.measure_action(ids.len(), "renew_database_lease", by_id)
            .await,
    ));
    rows.push((
        REVOKE,
        b.measure_action(ids.len(), "revoke_database_lease", by_id)
            .await,
    ));
    let team = |i: usize| {
        let members: Vec<String> = (0..50).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        json!({"project": project, "team_id": format!("team-{i}"),
               "platform_role": "project_contributor", "members": members})
    };
    rows.push((
        TEAM,
        b.measure_action(samples.min(50), "upsert_database_team_access", team)
            .await,
    ));
    // The served list computed from the registry and compared with (and,
    // were it different, written to) authenticator's setting: what every
    // change of exposure runs, here as its own transaction.
    let db = connector.database().await.expect("db");
    let base = connector.config().exposure.base_schemas.clone();
    let mode = connector.config().exposure.mode.to_string();
    let s = b
        .measure(samples.min(50), |_| {
            let (base, mode) = (base.clone(), mode.clone());
            async move {
                let conn = db.conn().await.expect("conn");
                conn.query(
                    "select supabase_connector.apply_exposure($1, $2)",
                    &[&mode, &base],
                )
                .await
                .expect("exposure");
            }
        })
        .await;
    rows.push((EXPOSURE, s));
    (rows, switch)
}

/// Issue `n` live leases (an hour, with database login) spread over the
/// `scale{i}` projects, 4 callers.
async fn hold_live_leases(connector: &Arc<Connector>, n: usize, projects: usize) {
    let c = connector.clone();
    spread(4, n, move |_, i| {
        let c = c.clone();
        async move {
            run(
                &c,
                "issue_database_lease",
                json!({"project": format!("scale{:05}", i % projects.max(1)), "principal": service(), "lease_ttl_seconds": LONG_TTL}),
            )
            .await;
        }
    })
    .await;
}

/// End the run with one line on stderr: a missing program or an unusable
/// environment is not a crash. The stack, if one started, is stopped first.
fn stop(stack: Option<Stack>, e: &Error) -> ! {
    drop(stack);
    eprintln!("supabase-connector-bench: {}", e.message);
    std::process::exit(e.code.exit_code())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let quick = args.quick;
    let scales = if quick { vec![10] } else { args.scales.clone() };
    let samples = if quick { 10 } else { args.samples };
    let callers_list: Vec<usize> = if quick { vec![1, 4] } else { vec![1, 4, 16] };
    let throughput_total = if quick { 40 } else { args.throughput_leases };
    let memory_actions = if quick { 60 } else { args.memory_actions };
    let started = Instant::now();

    let stack = Stack::up(&args.pg).unwrap_or_else(|e| stop(None, &e));
    let pool_size = 16;
    let out = args
        .out
        .clone()
        .or_else(|| (!quick).then(|| "bench/RESULTS.md".to_string()))
        .map(std::path::PathBuf::from);
    let setup = async {
        let mut config = Config::from_json(Some(json!({
            "database": {"url": stack.get("runtime_url_nopw"), "sslmode": "disable"},
            "openbao": {"addr": stack.get("bao_addr"), "token": stack.get("bao_token")},
            "api": {"url": "http://localhost:8000"},
        })))?;
        config.database.pool_size = pool_size;
        let mut admin = config.clone();
        admin.database.url = Some(Secret::new(stack.get("admin_url")));
        supabase_connector::bootstrap::run(&admin, None, "postgres").await?;
        let connector = Arc::new(Connector::new(config).await?);
        let (api, api_conn) =
            tokio_postgres::connect(&stack.get("authenticator_url"), tokio_postgres::NoTls)
                .await
                .map_err(|e| Error::database(format!("connecting as authenticator: {e}")))?;
        tokio::spawn(api_conn);
        if let Some(dir) = out
            .as_ref()
            .and_then(|p| p.parent())
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::invalid(format!("cannot create {}: {e}", dir.display())))?;
        }
        Ok::<_, Error>((connector, api))
    };
    let (connector, api) = match setup.await {
        Ok(v) => v,
        Err(e) => stop(Some(stack), &e),
    };
    let mut b = Bench {
        connector: connector.clone(),
        api,
        report: String::new(),
        out: out.clone(),
    };
    let bao = sides::Bao::new(&stack);
    let bao_version = bao.version().await;
    let db = connector.database().await.expect("db");
    let facts = db
        .conn()
        .await
        .expect("conn")
        .query_one(
            "select current_setting('server_version'),
                    (select string_agg(name || '=' || current_setting(name), ', ' order by name)
                     from pg_settings where name in ('fsync', 'synchronous_commit', 'full_page_writes',
                       'max_connections', 'shared_buffers', 'wal_level', 'password_encryption'))",
            &[],
        )
        .await
        .expect("server facts");
    let (pg_version, pg_settings): (String, String) = (facts.get(0), facts.get(1));
    let rss_at_start = report::rss_mib();

    b.line("# Benchmark results\n");
    b.line(&format!(
        "Made by `supabase-connector-bench`{} on the ephemeral stack (`tests/stack/stack.py up --pg {}`).\n",
        if quick { " --quick" } else { "" },
        args.pg
    ));
    b.line(&format!("- Machine: {}", report::machine()));
    b.line(&format!(
        "- PostgreSQL {pg_version}, settings: {pg_settings} (a throwaway server: durability off)"
    ));
    b.line(&format!("- OpenBao {bao_version}, dev server (in memory)"));
    b.line(&format!(
        "- Connector: library in this process, pool of {pool_size} connections, exposure mode `{}`; build {}; mode {}",
        connector.config().exposure.mode,
        if cfg!(debug_assertions) { "debug" } else { "release" },
        if quick { "quick (smoke run, tiny counts)" } else { "full" }
    ));
    b.line(&format!(
        "- Parameters: project counts {scales:?}, {samples} samples per action and count, {} live leases held at the largest count, \
         {throughput_total} leases per throughput row, {memory_actions} actions for the memory figure{}",
        if quick { 0 } else { args.live_leases },
        if !quick && (args.scales != [10, 100, 1000, 5000] || args.live_leases != 20_000) {
            " (reduced from the default 10/100/1,000/5,000 projects and 20,000 live leases: see the notes)"
        } else {
            ""
        }
    ));
    b.line("- What is measured and how, and what the figures show: `bench/README.md`.");
    b.line("- Latency is wall-clock per call of `Connector::execute` (validation, for lease-signing actions a check of the secret's version in OpenBao, SQL), sequential, one caller.");
    b.line("- Statements and round trips are counted by the connector's database layer (`Database::totals`): a pipelined batch of planned statements is one round trip.");
    // The check a lease-signing action makes before it signs (it runs
    // alongside the action's database work), measured on its own.
    let mut version_check = Sample::default();
    for _ in 0..samples.max(100) {
        let t = Instant::now();
        if let Err(e) = connector.signing_secrets().await {
            stop(Some(stack), &e);
        }
        version_check.ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    b.line(&format!(
        "- OpenBao version check before signing (`Connector::signing_secrets`: the KV v2 metadata read on a kept-alive connection, the secret re-read only after a rotation): p50 {:.3} ms, p99 {:.3} ms over {} calls; inside an action it overlaps the database work.",
        version_check.p50(),
        version_check.pct(99.0),
        version_check.ms.len()
    ));

    // ------------------------------------------------------------ throughput
    b.line("\n## Lease throughput\n");
    b.line("issue_database_lease, service class (login role + anon role, two JWTs), all callers on one project, sharing the pool; measured first, on a near-empty registry, and the leases are revoked after each row.\n");
    b.line("| callers | leases/s | p50 ms | p99 ms |");
    b.line("|---:|---:|---:|---:|");
    b.run(
        "upsert_database_project_access",
        json!({"project": "throughput", "issue_lease": false}),
    )
    .await;
    let mut ours_per_s: Vec<(usize, f64)> = Vec::new();
    for &callers in &callers_list {
        let mut ids = Vec::new();
        let (per_second, s) = throughput(
            &connector,
            "throughput",
            callers,
            throughput_total,
            &mut ids,
        )
        .await;
        revoke_all(&connector, ids).await;
        ours_per_s.push((callers, per_second));
        b.line(&format!(
            "| {callers} | {per_second:.0} | {:.2} | {:.2} |",
            s.p50(),
            s.pct(99.0)
        ));
    }
    let at_4 = ours_per_s
        .iter()
        .find(|x| x.0 == 4)
        .map_or(f64::NAN, |x| x.1);

    // ------------------------------------------------------------ OpenBao's database engine
    if !quick && !args.no_openbao_engine {
        b.line("\n## Side by side: OpenBao's database secrets engine\n");
        b.line("Same stack: OpenBao's `database/` engine (postgresql plugin, connected as `supabase_admin`), role `lease` with `CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE proj_throughput_authenticated`; `GET /v1/database/creds/lease` and `PUT /v1/sys/leases/revoke`. Ours: issue_database_lease for a user with a direct `project_contributor` grant (authenticated class: one login role, one JWT, registry row, audit row) and for the project's service principal (two roles, two JWTs), then revoke_database_lease.\n");
        let n = samples.max(50);
        let user = uuid::Uuid::new_v4().to_string();
        b.run(
            "upsert_database_access",
            json!({"project": "throughput", "principal": {"type": "user", "id": user},
                   "platform_role": "project_contributor", "issue_lease": false}),
        )
        .await;
        let mut ours = Vec::new();
        for principal in [json!({"type": "user", "id": user}), service()] {
            let (mut issue, mut revoke) = (Sample::default(), Sample::default());
            for _ in 0..n {
                let t = Instant::now();
                let v = b
                    .run(
                        "issue_database_lease",
                        json!({"project": "throughput", "principal": principal}),
                    )
                    .await;
                issue.ms.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                b.run("revoke_database_lease", json!({"lease_id": lease_id(&v)}))
                    .await;
                revoke.ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ours.push((issue, revoke));
        }
        let engine = async {
            bao.setup_engine(&stack.get("admin_url"), "proj_throughput")
                .await?;
            let (issue, revoke) = bao.issue_then_revoke(n).await?;
            let mut per_s = Vec::new();
            for &callers in &callers_list {
                per_s.push((callers, bao.throughput(callers, throughput_total).await?.0));
                bao.revoke_all().await?;
            }
            Ok::<_, String>((issue, revoke, per_s))
        }
        .await;
        match engine {
            Ok((issue, revoke, per_s)) => {
                b.line("| | ours, authenticated class | ours, service class | OpenBao engine | ratio ours (authenticated) / OpenBao |");
                b.line("|---|---:|---:|---:|---:|");
                b.line(&format!(
                    "| issue p50 ms | {:.2} | {:.2} | {:.2} | {:.2} |",
                    ours[0].0.p50(),
                    ours[1].0.p50(),
                    issue.p50(),
                    ours[0].0.p50() / issue.p50()
                ));
                b.line(&format!(
                    "| issue p99 ms | {:.2} | {:.2} | {:.2} | {:.2} |",
                    ours[0].0.pct(99.0),
                    ours[1].0.pct(99.0),
                    issue.pct(99.0),
                    ours[0].0.pct(99.0) / issue.pct(99.0)
                ));
                b.line(&format!(
                    "| revoke p50 ms | {:.2} | {:.2} | {:.2} | {:.2} |",
                    ours[0].1.p50(),
                    ours[1].1.p50(),
                    revoke.p50(),
                    ours[0].1.p50() / revoke.p50()
                ));
                b.line("\n| callers | ours leases/s (service class) | OpenBao creds/s | ratio ours / OpenBao |");
                b.line("|---:|---:|---:|---:|");
                for ((callers, theirs), (_, mine)) in per_s.iter().zip(&ours_per_s) {
                    b.line(&format!(
                        "| {callers} | {mine:.0} | {theirs:.0} | {:.2} |",
                        mine / theirs
                    ));
                }
            }
            Err(e) => b.line(&format!(
                "skipped: OpenBao's database engine could not be set up: {e}"
            )),
        }
    }

    // ------------------------------------------------------------ processes: our CLI and pgroles
    if !args.no_processes {
        let n = if quick { 2 } else { 10 };
        b.line("\n## Side by side: provisioning one project as a process\n");
        b.line(&format!("Wall-clock of one process run, p50 of {n}: our `supabase-connector run upsert_database_project_access --params '{{\"project\": …, \"issue_lease\": false}}'` (runtime role; reads its password from OpenBao) vs `pgroles apply -f <manifest>` (as `supabase_admin`) with a manifest giving the same four roles, memberships, schema/table/sequence grants and default privileges (the schema is created beforehand: pgroles does not create schemas; ours also creates the schema, registers the project, enables RLS on existing tables and updates the API exposure).\n"));
        let ours = match sides::cli_path() {
            Some(cli) => sides::our_cli(&cli, &stack, n),
            None => Err("skipped: the `supabase-connector` binary is not next to this one (build it with `cargo build -p supabase-connector --bins`, in the same profile)".into()),
        };
        let theirs = sides::pgroles(&stack, n).await;
        b.line("| | ours p50 ms | pgroles p50 ms | ratio ours / pgroles |");
        b.line("|---|---:|---:|---:|");
        let cell = |r: &Result<sides::ProcessTimes, String>, cold: bool| match r {
            Ok(t) => format!("{:.1}", if cold { t.cold.p50() } else { t.noop.p50() }),
            Err(_) => "—".into(),
        };
        let theirs_t = theirs.as_ref().map(|x| &x.1);
        for (label, cold) in [("cold (new project)", true), ("no-op re-run", false)] {
            let ratio = match (&ours, theirs_t) {
                (Ok(o), Ok(t)) if cold => format!("{:.2}", o.cold.p50() / t.cold.p50()),
                (Ok(o), Ok(t)) => format!("{:.2}", o.noop.p50() / t.noop.p50()),
                _ => "—".into(),
            };
            let theirs_cell = match theirs_t {
                Ok(t) => format!("{:.1}", if cold { t.cold.p50() } else { t.noop.p50() }),
                Err(_) => "—".into(),
            };
            b.line(&format!(
                "| {label} | {} | {theirs_cell} | {ratio} |",
                cell(&ours, cold)
            ));
        }
        if let Err(e) = &ours {
            b.line(&format!("\nour CLI: {e}"));
        }
        match &theirs {
            Ok((version, _)) => b.line(&format!("\npgroles: {version}")),
            Err(e) => b.line(&format!("\npgroles: {e}")),
        }
    }

    // ------------------------------------------------------------ memory
    let before = report::peak_rss_mib();
    let c = connector.clone();
    let project = "throughput";
    for i in 0..memory_actions {
        match i % 3 {
            0 => {
                run(
                    &c,
                    "upsert_database_project_access",
                    json!({"project": project, "issue_lease": false}),
                )
                .await;
            }
            1 => {
                let v = run(
                    &c,
                    "issue_database_lease",
                    json!({"project": project, "principal": service()}),
                )
                .await;
                run(
                    &c,
                    "revoke_database_lease",
                    json!({"lease_id": lease_id(&v)}),
                )
                .await;
            }
            _ => {
                run(&c, "describe_database_project", json!({"project": project})).await;
            }
        }
    }
    let after = report::peak_rss_mib();
    b.line("\n## Memory\n");
    b.line(&format!(
        "This process is a long-lived executor (one `Connector`, pool of {pool_size}): RSS {rss_at_start:.1} MiB after start-up; \
         peak RSS (VmHWM) {before:.1} MiB after the measurements above, {after:.1} MiB after {memory_actions} more actions \
         (no-op upserts, issue + revoke pairs, describes, on the small registry); RSS now {:.1} MiB.",
        report::rss_mib()
    ));

    // ------------------------------------------------------------ per action, per scale
    let mut have = 0usize;
    let mut results: Vec<AtScale> = Vec::new();
    let largest = scales.iter().copied().max().unwrap_or(0);
    for (round, &scale) in scales.iter().enumerate() {
        eprintln!(
            "bench: [{:.0} s] provisioning to {scale} projects",
            started.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        provision_to(&connector, &mut have, scale).await;
        let provision_s = t.elapsed().as_secs_f64();
        let mut live = 0;
        if scale == largest && !quick && args.live_leases > 0 {
            let t = Instant::now();
            hold_live_leases(&connector, args.live_leases, scale).await;
            live = args.live_leases;
            eprintln!(
                "bench: {live} live leases issued in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        let extra = round * (2 * samples + 1);
        b.line(&format!(
            "\n## {scale} provisioned projects{}{}\n",
            if extra > 0 {
                format!(" (+{extra} made by earlier rounds)")
            } else {
                String::new()
            },
            if live > 0 {
                format!(", {live} live leases")
            } else {
                String::new()
            }
        ));
        if scale > 0 {
            b.line(&format!(
                "Provisioning them took {provision_s:.1} s with 4 callers.\n"
            ));
        }
        b.line("| action | p50 ms | p95 ms | p99 ms | statements/call | round trips/call |");
        b.line("|---|---:|---:|---:|---:|---:|");
        let (rows, switch) = measure_actions(&mut b, round, samples).await;
        for (name, s) in &rows {
            b.line(&format!(
                "| {name} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
                s.p50(),
                s.pct(95.0),
                s.pct(99.0),
                s.statements_per_call(),
                s.round_trips_per_call()
            ));
        }
        let counts = db
            .conn()
            .await
            .expect("conn")
            .query_one(
                "select (select count(*) from pg_auth_members where member = current_user::regrole),
                        (select count(*) from pg_auth_members where member = 'authenticator'::regrole),
                        (select count(*) from pg_roles)",
                &[],
            )
            .await
            .expect("membership counts");
        let (runtime_m, api_m, roles): (i64, i64, i64) =
            (counts.get(0), counts.get(1), counts.get(2));
        b.line(&format!(
            "\nPostgREST's role switch as `authenticator` (`set_config('role', <lease role>, true)` in a transaction, one round trip): \
             p50 {:.2} ms (p95 {:.2}) right after a lease was issued, {:.2} ms (p95 {:.2}) when repeated at once. \
             Role memberships at this point: runtime role {runtime_m}, authenticator {api_m}; {roles} roles in all.",
            switch.after_change.p50(),
            switch.after_change.pct(95.0),
            switch.warm.p50(),
            switch.warm.pct(95.0)
        ));
        eprintln!(
            "bench: [{:.0} s] verify at {scale} projects",
            started.elapsed().as_secs_f64()
        );
        // One project at a time over an even sample, at every count; over
        // all projects at once only while that stays affordable.
        let k = samples.clamp(1, 20);
        let mut verify_one = Sample::default();
        for j in 0..k {
            let project = if scale > 0 {
                format!("scale{:05}", j * scale / k)
            } else {
                format!("c{round}x0")
            };
            let t = Instant::now();
            b.run("verify_database_project", json!({"project": project}))
                .await;
            verify_one.ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let registered: i64 = db
            .conn()
            .await
            .expect("conn")
            .query_one("select count(*) from supabase_connector.projects", &[])
            .await
            .expect("project count")
            .get(0);
        b.line(&format!(
            "\nverify_database_project for one project (p50 of {k}, spread over the projects): {:.2} ms (p95 {:.2}).",
            verify_one.p50(),
            verify_one.pct(95.0)
        ));
        if registered as usize <= args.verify_all_max {
            let t = Instant::now();
            let v = b.run("verify_database_project", json!({})).await;
            let verify_ms = t.elapsed().as_secs_f64() * 1e3;
            let n = v["projects"].as_array().map_or(0, Vec::len);
            b.line(&format!(
                "verify_database_project over all {n} projects: {verify_ms:.0} ms ({:.2} ms per project).",
                verify_ms / n.max(1) as f64
            ));
        } else {
            b.line(&format!(
                "verify_database_project over all {registered} projects: not run (more than --verify-all-max {}); at the one-project p50 it would take about {:.0} s.",
                args.verify_all_max,
                verify_one.p50() * registered as f64 / 1e3
            ));
        }
        results.push(AtScale {
            scale,
            rows,
            verify_one,
        });
    }

    // ------------------------------------------------------------ scaling
    if results.len() > 1 {
        let (first, last) = (&results[0], &results[results.len() - 1]);
        b.line(&format!(
            "\n## Scaling: p50 at {} vs {} projects\n",
            last.scale, first.scale
        ));
        b.line(&format!(
            "| action | {} | {} | ratio |",
            first.scale, last.scale
        ));
        b.line("|---|---:|---:|---:|");
        for (name, s) in &first.rows {
            let l = last.get(name).map_or(f64::NAN, Sample::p50);
            b.line(&format!(
                "| {name} | {:.2} | {l:.2} | {:.2} |",
                s.p50(),
                l / s.p50()
            ));
        }
        b.line(&format!(
            "| verify, one project | {:.2} | {:.2} | {:.2} |",
            first.verify_one.p50(),
            last.verify_one.p50(),
            last.verify_one.p50() / first.verify_one.p50()
        ));
    }

    b.line(&format!(
        "\nPeak RSS (VmHWM) of this process at the end of the run: {:.1} MiB.",
        report::peak_rss_mib()
    ));

    // ------------------------------------------------------------ targets
    let first = &results[0];
    let p50 = |name: &str| first.get(name).map_or(f64::NAN, Sample::p50);
    let noop_rt = first
        .get(NOOP)
        .map_or(f64::NAN, Sample::round_trips_per_call);
    b.line(&format!(
        "\n## Targets (latencies at {} projects)\n",
        first.scale
    ));
    b.line("| target | measured | |");
    b.line("|---|---:|---|");
    let mut target = |what: &str, measured: String, ok: bool| {
        b.line(&format!("| {what} | {measured} | {} |", verdict(ok)));
    };
    target(
        &format!("lease issue p50 ≤ {TARGET_ISSUE_P50_MS} ms"),
        format!("{:.2} ms", p50(ISSUE)),
        p50(ISSUE) <= TARGET_ISSUE_P50_MS,
    );
    target(
        &format!("≥ {TARGET_LEASES_PER_S_AT_4:.0} leases/s at 4 callers"),
        format!("{at_4:.0}/s"),
        at_4 >= TARGET_LEASES_PER_S_AT_4,
    );
    target(
        &format!("revoke p50 ≤ {TARGET_REVOKE_P50_MS} ms"),
        format!("{:.2} ms", p50(REVOKE)),
        p50(REVOKE) <= TARGET_REVOKE_P50_MS,
    );
    target(
        &format!("cold provision with lease p50 ≤ {TARGET_COLD_P50_MS} ms"),
        format!("{:.2} ms", p50(COLD)),
        p50(COLD) <= TARGET_COLD_P50_MS,
    );
    target(
        &format!("no-op re-upsert p50 ≤ {TARGET_NOOP_P50_MS} ms"),
        format!("{:.2} ms", p50(NOOP)),
        p50(NOOP) <= TARGET_NOOP_P50_MS,
    );
    target(
        &format!("no-op re-upsert ≤ {TARGET_NOOP_ROUND_TRIPS:.0} round trips"),
        format!("{noop_rt:.1}"),
        noop_rt <= TARGET_NOOP_ROUND_TRIPS,
    );
    if results.len() > 1 {
        let last = &results[results.len() - 1];
        let worst = first
            .rows
            .iter()
            .map(|(name, s)| {
                let l = last.get(name).map_or(f64::NAN, Sample::p50);
                (*name, l / s.p50())
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((name, ratio)) = worst {
            target(
                &format!(
                    "flat scaling: p50 at {} within {TARGET_SCALING}× of {} projects",
                    last.scale, first.scale
                ),
                format!("worst {ratio:.2}× ({name})"),
                ratio <= TARGET_SCALING,
            );
        }
    }
    b.line(&format!(
        "\nWhole run: {:.0} s.",
        started.elapsed().as_secs_f64()
    ));

    // ------------------------------------------------------------ files
    if let Some(path) = &out {
        let mut series: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
        if let Some(first) = results.first() {
            for (name, _) in &first.rows {
                let points = results
                    .iter()
                    .map(|r| (r.scale, r.get(name).map_or(f64::NAN, Sample::p50)))
                    .collect();
                series.push((format!("{name} (p50)"), points));
            }
        }
        series.push((
            "verify, one project (p50)".into(),
            results
                .iter()
                .map(|r| (r.scale, r.verify_one.p50()))
                .collect(),
        ));
        let svg_path = match path.file_stem().and_then(|f| f.to_str()) {
            Some("RESULTS") | None => path.with_file_name("scaling.svg"),
            Some(stem) => path.with_file_name(format!("{stem}-scaling.svg")),
        };
        b.report.push_str(&format!(
            "\n![p50 per action vs provisioned projects]({})\n",
            svg_path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("scaling.svg")
        ));
        let written = std::fs::write(path, &b.report).and_then(|()| {
            std::fs::write(
                &svg_path,
                report::svg("Connector cost vs provisioned projects (ms)", &series),
            )
        });
        if let Err(e) = written {
            let e = Error::invalid(format!("cannot write {}: {e}", path.display()));
            stop(Some(stack), &e);
        }
        println!("\nwrote {} and {}", path.display(), svg_path.display());
    }
    connector.close();
    drop(stack);
}
