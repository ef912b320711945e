//! Benchmark: per-action latency, statements and round trips, lease
//! throughput, behaviour at 10 to 5,000 projects, memory, and OpenBao's
//! database secrets engine side by side, all on the ephemeral stack.
//!
//!     cargo run --release -p supabase-connector --bin supabase-connector-bench
//!     cargo run -p supabase-connector --bin supabase-connector-bench -- --quick   # smoke run, seconds
//!
//! The full run writes `bench/RESULTS.md` and `bench/scaling.svg`.

use clap::Parser;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;
use supabase_connector::config::{Config, Secret};
use supabase_connector::stack::Stack;
use supabase_connector::Connector;

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
    /// Samples per action and scale.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Live leases to hold at the largest scale.
    #[arg(long, default_value_t = 20_000)]
    live_leases: usize,
    /// Skip OpenBao's database secrets engine comparison.
    #[arg(long)]
    no_openbao_engine: bool,
    /// Where to write the report (full mode default: bench/RESULTS.md).
    #[arg(long)]
    out: Option<String>,
}

/// Latency samples of one action, with its statement and round-trip counts.
#[derive(Default, Clone)]
struct Sample {
    ms: Vec<f64>,
    statements: u64,
    round_trips: u64,
}

impl Sample {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i]
    }
    fn per_call(&self, total: u64) -> f64 {
        total as f64 / self.ms.len().max(1) as f64
    }
}

struct Bench {
    connector: Arc<Connector>,
    report: String,
}

impl Bench {
    async fn totals(&self) -> (u64, u64) {
        self.connector.db().await.expect("database").totals.get()
    }

    /// Run `f` `n` times sequentially, timing each call and counting SQL.
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
        match self.connector.execute(action, params).await {
            Ok(v) => v,
            Err(e) => panic!("{action} failed: {} {}", e.code.as_str(), e.message),
        }
    }

    fn line(&mut self, s: &str) {
        println!("{s}");
        self.report.push_str(s);
        self.report.push('\n');
    }
}

fn lease_id(v: &Value) -> String {
    v["lease"]["lease_id"]
        .as_str()
        .expect("lease id")
        .to_string()
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cores} cores, {mem:.0} GiB")
}

/// Provision projects until `count` exist (4 callers, no leases).
async fn provision_to(connector: &Arc<Connector>, have: &mut usize, count: usize) {
    let todo: Vec<usize> = (*have..count).collect();
    let chunks: Vec<Vec<usize>> = todo
        .chunks(todo.len().div_ceil(4).max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let c = connector.clone();
        tasks.push(tokio::spawn(async move {
            for i in chunk {
                c.execute(
                    "upsert_database_project_access",
                    json!({"project": format!("scale{i:05}"), "issue_lease": false}),
                )
                .await
                .expect("provision");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    *have = count;
}

/// Leases per second with `callers` concurrent callers issuing `total` leases.
async fn throughput(
    connector: &Arc<Connector>,
    project: &str,
    callers: usize,
    total: usize,
) -> (f64, Sample) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let c = connector.clone();
        let project = project.to_string();
        let n = total / callers;
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                c.execute(
                    "issue_database_lease",
                    json!({"project": project, "principal": {"type": "service", "id": "project"}}),
                )
                .await
                .expect("lease");
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ms
        }));
    }
    let mut all = Sample::default();
    for t in tasks {
        all.ms.extend(t.await.expect("task"));
    }
    (all.ms.len() as f64 / started.elapsed().as_secs_f64(), all)
}

/// OpenBao's database secrets engine issuing an equivalent credential.
async fn openbao_engine(
    stack: &Stack,
    project_schema: &str,
    n: usize,
    callers: usize,
) -> Result<(Sample, f64, Sample), String> {
    let addr = stack.get("bao_addr");
    let token = stack.get("bao_token");
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let req = http
            .request(method, format!("{addr}/v1/{path}"))
            .header("X-Vault-Token", &token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        async move {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("HTTP {status}: {text}"));
            }
            Ok::<Value, String>(serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    };
    call(
        reqwest::Method::POST,
        "sys/mounts/database",
        Some(json!({"type": "database"})),
    )
    .await?;
    let admin = url_parts(&stack.get("admin_url"));
    call(
        reqwest::Method::POST,
        "database/config/pg",
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@{}/postgres?sslmode=disable", admin.1),
            "username": "supabase_admin", "password": admin.0, "allowed_roles": "*",
            "verify_connection": true,
        })),
    )
    .await?;
    let creation = format!(
        "CREATE ROLE \"{{{{name}}}}\" LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{project_schema}_authenticated\";"
    );
    call(
        reqwest::Method::POST,
        "database/roles/lease",
        Some(json!({"db_name": "pg", "creation_statements": [creation], "default_ttl": "15m", "max_ttl": "1h"})),
    )
    .await?;
    let mut issue = Sample::default();
    let mut leases = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let v = call(reqwest::Method::GET, "database/creds/lease", None).await?;
        issue.ms.push(t.elapsed().as_secs_f64() * 1e3);
        leases.push(v["lease_id"].as_str().unwrap_or_default().to_string());
    }
    let mut revoke = Sample::default();
    for id in leases {
        let t = Instant::now();
        call(
            reqwest::Method::PUT,
            "sys/leases/revoke",
            Some(json!({"lease_id": id})),
        )
        .await?;
        revoke.ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // throughput with concurrent callers
    let started = Instant::now();
    let per = n / callers;
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let http = http.clone();
        let (addr, token) = (addr.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                let r = http
                    .get(format!("{addr}/v1/database/creds/lease"))
                    .header("X-Vault-Token", &token)
                    .send()
                    .await;
                if !r.map(|r| r.status().is_success()).unwrap_or(false) {
                    return Err("creds request failed".to_string());
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let per_second = (per * callers) as f64 / started.elapsed().as_secs_f64();
    Ok((issue, per_second, revoke))
}

/// (password, host:port) of a PostgreSQL URL.
fn url_parts(url: &str) -> (String, String) {
    let rest = url.split("://").nth(1).unwrap_or_default();
    let (userinfo, hostpart) = rest.split_once('@').unwrap_or(("", rest));
    let password = userinfo.split_once(':').map(|x| x.1).unwrap_or_default();
    let hostport = hostpart.split('/').next().unwrap_or_default();
    (password.to_string(), hostport.to_string())
}

/// A small SVG line plot: p50 of each action against the project count.
fn svg(series: &[(String, Vec<(usize, f64)>)]) -> String {
    let (w, h, pad) = (720.0, 420.0, 60.0);
    let max_y = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(0.0_f64, f64::max)
        .max(0.1)
        * 1.1;
    let xs: Vec<usize> = series
        .first()
        .map(|s| s.1.iter().map(|p| p.0).collect())
        .unwrap_or_default();
    let xpos = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (xs.len().max(2) - 1) as f64;
    let ypos = |y: f64| h - pad - (h - 2.0 * pad) * y / max_y;
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    ];
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{pad}' y='24' font-size='15'>p50 latency (ms) per action vs provisioned projects</text>\n\
         <line x1='{pad}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{}' stroke='black'/>\n",
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    for (i, x) in xs.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x='{}' y='{}' text-anchor='middle'>{x}</text>",
            xpos(i),
            h - pad + 18.0
        );
    }
    for k in 0..=4 {
        let y = max_y * k as f64 / 4.0;
        let _ = writeln!(
            out,
            "<text x='{}' y='{}' text-anchor='end'>{y:.1}</text>",
            pad - 6.0,
            ypos(y) + 4.0
        );
    }
    for (j, (name, points)) in series.iter().enumerate() {
        let color = colors[j % colors.len()];
        let path: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", xpos(i), ypos(p.1)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill='none' stroke='{color}' stroke-width='2' points='{}'/>",
            path.join(" ")
        );
        let _ = writeln!(
            out,
            "<text x='{}' y='{}' fill='{color}'>{name}</text>",
            w - pad - 170.0,
            pad + 16.0 * j as f64
        );
    }
    out.push_str("</svg>\n");
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    let (scales, samples, callers_list, throughput_total) = if args.quick {
        (vec![10], 10, vec![1, 4], 40)
    } else {
        (args.scales.clone(), args.samples, vec![1, 4, 16], 2_000)
    };
    let stack = Stack::up(&args.pg).expect("stack");
    let mut config = Config::from_json(Some(json!({
        "database": {"url": stack.get("runtime_url_nopw"), "sslmode": "disable", "pool_size": 16},
        "openbao": {"addr": stack.get("bao_addr"), "token": stack.get("bao_token")},
        "api": {"url": "http://localhost:8000"},
    })))
    .expect("config");
    let mut admin = config.clone();
    admin.database.url = Some(Secret::new(stack.get("admin_url")));
    supabase_connector::bootstrap::run(&admin, None, "postgres")
        .await
        .expect("bootstrap");
    config.database.pool_size = 16;
    let connector = Arc::new(Connector::new(config).await.expect("connector"));
    let mut b = Bench {
        connector: connector.clone(),
        report: String::new(),
    };
    let server = connector.db().await.expect("db").server.version_num;
    b.line("# Benchmark results\n");
    b.line(&format!(
        "Machine: {}. PostgreSQL {} (server_version_num {server}) from the ephemeral stack: fsync=off, synchronous_commit=off, \
         full_page_writes=off, max_connections=300, shared_buffers=128MB; OpenBao dev server (in memory). Pool: 16 connections. \
         Build: {}. Mode: {}.\n",
        machine(),
        args.pg,
        if cfg!(debug_assertions) { "debug" } else { "release" },
        if args.quick { "quick (smoke)" } else { "full" }
    ));

    // ------------------------------------------------------------ per action, per scale
    let mut have = 0usize;
    let mut series: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    let mut push =
        |name: &str, scale: usize, p50: f64| match series.iter_mut().find(|s| s.0 == name) {
            Some(s) => s.1.push((scale, p50)),
            None => series.push((name.to_string(), vec![(scale, p50)])),
        };
    let mut run_id = 0usize;
    for &scale in &scales {
        provision_to(&connector, &mut have, scale).await;
        if scale == *scales.last().unwrap_or(&0) && !args.quick {
            // live leases at the largest scale, spread over the projects
            let per_project = args.live_leases / scale.max(1) + 1;
            let mut tasks = Vec::new();
            for w in 0..4 {
                let c = connector.clone();
                let n = args.live_leases / 4;
                tasks.push(tokio::spawn(async move {
                    for i in 0..n {
                        let p = format!("scale{:05}", ((w * n + i) / per_project) % scale);
                        c.execute(
                            "issue_database_lease",
                            json!({"project": p, "principal": {"type": "service", "id": "project"}, "lease_ttl_seconds": 3600, "database": false}),
                        )
                        .await
                        .expect("live lease");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
        }
        b.line(&format!(
            "\n## {scale} provisioned projects (plus {} made by earlier measurements)\n",
            (run_id) * 2 * samples
        ));
        b.line("| action | p50 ms | p95 ms | p99 ms | statements/call | round trips/call |");
        b.line("|---|---:|---:|---:|---:|---:|");
        let mut rows: Vec<(&str, Sample)> = Vec::new();
        run_id += 1;
        let r = run_id;
        let s = b
            .measure(samples, |i| {
                let c = connector.clone();
                async move {
                    c.execute(
                        "upsert_database_project_access",
                        json!({"project": format!("cold{r}x{i}")}),
                    )
                    .await
                    .expect("cold");
                }
            })
            .await;
        rows.push(("upsert (cold, with lease)", s));
        let s = b
            .measure(samples, |i| {
                let c = connector.clone();
                async move {
                    c.execute(
                        "upsert_database_project_access",
                        json!({"project": format!("nolease{r}x{i}"), "issue_lease": false}),
                    )
                    .await
                    .expect("cold");
                }
            })
            .await;
        rows.push(("upsert (cold, issue_lease=false)", s));
        let s = b
            .measure(samples, |i| {
                let c = connector.clone();
                async move {
                    c.execute(
                        "upsert_database_project_access",
                        json!({"project": format!("nolease{r}x{i}"), "issue_lease": false}),
                    )
                    .await
                    .expect("noop");
                }
            })
            .await;
        rows.push(("upsert (no-op)", s));
        let project = format!("cold{r}x0");
        let issued = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = b
            .measure(samples, |_| {
                let c = connector.clone();
                let project = project.clone();
                let issued = issued.clone();
                async move {
                    let v = c
                        .execute("issue_database_lease", json!({"project": project, "principal": {"type": "service", "id": "project"}}))
                        .await
                        .expect("issue");
                    issued.lock().expect("lock").push(lease_id(&v));
                }
            })
            .await;
        rows.push(("issue_database_lease", s));
        let ids: Vec<String> = issued.lock().expect("lock").clone();
        let s = b
            .measure(ids.len(), |i| {
                let c = connector.clone();
                let id = ids[i].clone();
                async move {
                    c.execute("renew_database_lease", json!({"lease_id": id}))
                        .await
                        .expect("renew");
                }
            })
            .await;
        rows.push(("renew_database_lease", s));
        let s = b
            .measure(ids.len(), |i| {
                let c = connector.clone();
                let id = ids[i].clone();
                async move {
                    c.execute("revoke_database_lease", json!({"lease_id": id}))
                        .await
                        .expect("revoke");
                }
            })
            .await;
        rows.push(("revoke_database_lease", s));
        let s = b
            .measure(samples.min(50), |i| {
                let c = connector.clone();
                let project = project.clone();
                let members: Vec<String> = (0..50).map(|_| uuid::Uuid::new_v4().to_string()).collect();
                async move {
                    c.execute(
                        "upsert_database_team_access",
                        json!({"project": project, "team_id": format!("team-{i}"), "platform_role": "project_contributor", "members": members}),
                    )
                    .await
                    .expect("team");
                }
            })
            .await;
        rows.push(("team upsert (50 members)", s));
        // exposure recompute and apply, as the runtime role
        let db = connector.db().await.expect("db");
        let s = b
            .measure(samples.min(50), |_| {
                let db = db;
                async move {
                    let conn = db.conn().await.expect("conn");
                    conn.query(
                        "select supabase_connector.apply_exposure($1, $2)",
                        &[
                            &"role_setting",
                            &vec![
                                "public".to_string(),
                                "storage".into(),
                                "graphql_public".into(),
                            ],
                        ],
                    )
                    .await
                    .expect("exposure");
                }
            })
            .await;
        rows.push(("exposure recompute + apply", s));
        for (name, s) in &rows {
            b.line(&format!(
                "| {name} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
                s.pct(50.0),
                s.pct(95.0),
                s.pct(99.0),
                s.per_call(s.statements),
                s.per_call(s.round_trips)
            ));
            push(name, scale, s.pct(50.0));
        }
        let t = Instant::now();
        let v = b.run("verify_database_project", json!({})).await;
        let n = v["projects"].as_array().map(Vec::len).unwrap_or(0);
        b.line(&format!(
            "\nverify over all {n} projects: {:.0} ms ({:.2} ms per project)",
            t.elapsed().as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3 / n.max(1) as f64
        ));
    }

    // ------------------------------------------------------------ throughput
    b.line("\n## Lease throughput (issue_database_lease, service class, with database login)\n");
    b.line("| callers | leases/s | p50 ms | p99 ms |");
    b.line("|---:|---:|---:|---:|");
    b.run(
        "upsert_database_project_access",
        json!({"project": "throughput", "issue_lease": false}),
    )
    .await;
    let mut ours_at_4 = 0.0;
    for &callers in &callers_list {
        let (per_second, s) = throughput(&connector, "throughput", callers, throughput_total).await;
        if callers == 4 {
            ours_at_4 = per_second;
        }
        b.line(&format!(
            "| {callers} | {per_second:.0} | {:.2} | {:.2} |",
            s.pct(50.0),
            s.pct(99.0)
        ));
    }

    // ------------------------------------------------------------ OpenBao's database engine
    if !args.quick && !args.no_openbao_engine {
        b.line(
            "\n## Side by side: OpenBao database secrets engine (same PostgreSQL, same stack)\n",
        );
        let n = samples.max(50);
        let mut ours = Sample::default();
        let mut ours_revoke = Sample::default();
        for _ in 0..n {
            let t = Instant::now();
            let v = b
                .run("issue_database_lease", json!({"project": "throughput", "principal": {"type": "service", "id": "project"}}))
                .await;
            ours.ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            b.run("revoke_database_lease", json!({"lease_id": lease_id(&v)}))
                .await;
            ours_revoke.ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        match openbao_engine(&stack, "proj_throughput", n, 4).await {
            Ok((issue, per_second, revoke)) => {
                b.line("| | ours p50 ms | OpenBao p50 ms | ratio (ours / theirs) |");
                b.line("|---|---:|---:|---:|");
                b.line(&format!(
                    "| issue | {:.2} | {:.2} | {:.2} |",
                    ours.pct(50.0),
                    issue.pct(50.0),
                    ours.pct(50.0) / issue.pct(50.0)
                ));
                b.line(&format!(
                    "| revoke | {:.2} | {:.2} | {:.2} |",
                    ours_revoke.pct(50.0),
                    revoke.pct(50.0),
                    ours_revoke.pct(50.0) / revoke.pct(50.0)
                ));
                b.line(&format!(
                    "| throughput, 4 callers (per s) | {ours_at_4:.0} | {per_second:.0} | {:.2} |",
                    ours_at_4 / per_second
                ));
            }
            Err(e) => b.line(&format!(
                "skipped: OpenBao's database engine could not be set up: {e}"
            )),
        }
        b.line("\npgroles: not measured in this run (it is not installed on this machine class; `cargo install pgroles-cli` and compare `pgroles apply` with `supabase-connector run upsert_database_project_access` as processes).");
    }

    // ------------------------------------------------------------ memory
    let before = peak_rss_mib();
    let n = if args.quick { 50 } else { 10_000 };
    for i in 0..n {
        b.run(
            "upsert_database_project_access",
            json!({"project": format!("nolease1x{}", i % samples.max(1)), "issue_lease": false}),
        )
        .await;
    }
    b.line(&format!(
        "\n## Memory\n\npeak RSS of this long-lived executor: {before:.1} MiB before, {:.1} MiB after {n} more actions\n",
        peak_rss_mib()
    ));

    if !args.quick {
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| "bench/RESULTS.md".into());
        if let Some(dir) = std::path::Path::new(&out).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&out, &b.report).expect("write report");
        let svg_path = std::path::Path::new(&out).with_file_name("scaling.svg");
        std::fs::write(&svg_path, svg(&series)).expect("write svg");
        println!("\nwrote {out} and {}", svg_path.display());
    } else if let Some(out) = &args.out {
        std::fs::write(out, &b.report).expect("write report");
    }
    connector.close();
    drop(stack);
}
