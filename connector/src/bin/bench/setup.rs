//! The stack and the connector under measurement: prerequisites, start,
//! bootstrap, the configured API pools, and sessions logged in the way
//! PostgREST logs in.

use serde_json::{json, Value};
use std::process::Command;
use std::sync::Arc;
use supabase_connector::config::{default_max_projects, Config, Secret};
use supabase_connector::stack::Stack;
use supabase_connector::Connector;
use tokio_postgres::{Client, NoTls};

/// A failure of the run, as one line.
pub type R<T> = Result<T, String>;

/// Pooled connections of the connector (also the callers' ceiling).
pub const POOL_SIZE: usize = 16;
/// The pool sized for the sizing curve (pinned projects only).
pub const CURVE_POOL: &str = "curve";

/// Check, before anything starts, that every requested PostgreSQL version
/// and OpenBao are installed: the stack script's own lookups, so the
/// answer is the one it would give, in one line.
pub fn preflight(versions: &[String]) -> R<()> {
    let script = supabase_connector::stack::stack_script().map_err(|e| e.message)?;
    let dir = script.parent().unwrap_or(&script).to_path_buf();
    for v in versions {
        if v != "15" && v != "18" {
            return Err(format!(
                "PostgreSQL {v} is not one the stack runs (15 or 18)"
            ));
        }
        let check = format!(
            "import sys; sys.path.insert(0, {dir:?}); import stack; stack._find_pg_bin({v:?}); stack._find_bao()",
            dir = dir.display().to_string()
        );
        let out = Command::new("python3")
            .args(["-c", &check])
            .output()
            .map_err(|e| {
                format!(
                    "python3 is missing ({e}): install Python 3, then run tests/stack/install.sh"
                )
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let line = line.trim().trim_start_matches("stack: ");
            return Err(if line.is_empty() {
                format!("the stack for PostgreSQL {v} cannot start: run tests/stack/install.sh")
            } else {
                line.to_string()
            });
        }
    }
    Ok(())
}

/// Server facts shown with the figures.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub version: String,
    pub version_num: i32,
    pub settings: String,
    pub bao: String,
}

/// One version's stack, the connector, and a superuser session.
pub struct Bench {
    pub stack: Stack,
    pub connector: Arc<Connector>,
    /// `supabase_admin`: catalog counts, role changes "elsewhere".
    pub admin: Client,
    pub facts: Facts,
    /// `default_max_projects` for this server: the size of every bench pool.
    pub pool_cap: u32,
    /// Configured pools (`p000`, `p001`, …).
    pub pools: usize,
    /// Capacity of the sizing-curve pool, when configured.
    pub curve_cap: Option<usize>,
}

/// A PostgreSQL error with the server's message (tokio-postgres shows
/// only "db error" otherwise).
pub fn pg_err(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Connect without TLS (the stack listens on loopback).
pub async fn connect(url: &str) -> R<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("cannot connect to the stack's PostgreSQL: {}", pg_err(e)))?;
    tokio::spawn(conn);
    Ok(client)
}

/// The connector's configuration: the stack, `n` API pools at the default
/// size, and the curve pool when asked. TTLs up to a day, so leases
/// measured late in a run outlive it.
fn config(stack: &Stack, pools: usize, curve_cap: Option<usize>) -> R<Config> {
    let mut list: Vec<Value> = (0..pools)
        .map(|i| json!({"name": pool_name(i), "url": format!("http://localhost:8000/pools/{}", pool_name(i))}))
        .collect();
    if let Some(cap) = curve_cap {
        list.push(json!({"name": CURVE_POOL, "url": "http://localhost:8000/pools/curve", "max_projects": cap}));
    }
    let mut config = Config::from_json(Some(json!({
        "database": {"url": stack.get("runtime_url_nopw"), "sslmode": "disable"},
        "openbao": {"addr": stack.get("bao_addr"), "token": stack.get("bao_token")},
        "api": {"url": "http://localhost:8000", "pools": list},
        "lease": {"max_ttl_seconds": 86_400, "max_lifetime_seconds": 86_400},
    })))
    .map_err(|e| format!("bench configuration: {}", e.message))?;
    config.database.pool_size = POOL_SIZE;
    Ok(config)
}

pub fn pool_name(i: usize) -> String {
    format!("p{i:03}")
}

impl Bench {
    /// Start the stack for `pg`, bootstrap the registry, connect.
    pub async fn start(pg: &str) -> R<Bench> {
        let stack = Stack::up(pg)
            .map_err(|e| format!("the PostgreSQL {pg} stack did not start: {}", e.message))?;
        let base = config(&stack, 0, None)?;
        let mut admin_config = base.clone();
        admin_config.database.url = Some(Secret::new(stack.get("admin_url")));
        supabase_connector::bootstrap::run(&admin_config, None, "postgres")
            .await
            .map_err(|e| format!("bootstrap failed: {}", e.message))?;
        let admin = connect(&stack.get("admin_url")).await?;
        let facts = server_facts(&admin).await?;
        let pool_cap = default_max_projects(facts.version_num);
        let connector = Arc::new(
            Connector::new(base)
                .await
                .map_err(|e| format!("connector: {}", e.message))?,
        );
        Ok(Bench {
            stack,
            connector,
            admin,
            facts,
            pool_cap,
            pools: 0,
            curve_cap: None,
        })
    }

    /// Pools enough for `projects` at the default size (plus one spare);
    /// a new connector when the list changes (configuration is fixed per
    /// connector). Pools are only ever added.
    pub async fn pools_for(&mut self, projects: usize, curve_cap: Option<usize>) -> R<()> {
        let want = (projects.div_ceil(self.pool_cap as usize) + 1).max(self.pools);
        if want == self.pools && curve_cap == self.curve_cap {
            return Ok(());
        }
        let config = config(&self.stack, want, curve_cap)?;
        self.connector.close();
        self.connector = Arc::new(
            Connector::new(config)
                .await
                .map_err(|e| format!("connector: {}", e.message))?,
        );
        self.pools = want;
        self.curve_cap = curve_cap;
        Ok(())
    }

    /// A session logged in as a pool's login role (password from OpenBao).
    pub async fn pool_login(&self, pool: &str) -> R<Client> {
        let kv = self
            .connector
            .openbao()
            .map_err(|e| e.message)?
            .read_kv(&format!("pools/{pool}"))
            .await
            .map_err(|e| format!("pool {pool}'s password: {}", e.message))?;
        let password = kv
            .get("AUTHENTICATOR_PASSWORD")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("pool {pool}'s password is not in OpenBao"))?;
        let mut c = tokio_postgres::Config::new();
        c.host(self.stack.get("host"))
            .port(self.stack.get("port").parse().unwrap_or(5432))
            .user(format!("supabase_connector_pool_{pool}"))
            .password(password)
            .dbname("postgres");
        let (client, conn) = c
            .connect(NoTls)
            .await
            .map_err(|e| format!("cannot log in as pool {pool}'s login role: {}", pg_err(e)))?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// A session logged in as Supabase's `authenticator` (the central API).
    pub async fn central_login(&self) -> R<Client> {
        connect(&self.stack.get("authenticator_url")).await
    }

    /// One value from the superuser session.
    pub async fn admin_i64(&self, sql: &str) -> R<i64> {
        let row = self
            .admin
            .query_one(sql, &[])
            .await
            .map_err(|e| format!("{sql}: {}", pg_err(e)))?;
        Ok(row.get(0))
    }
}

async fn server_facts(admin: &Client) -> R<Facts> {
    let row = admin
        .query_one(
            "select current_setting('server_version'), current_setting('server_version_num')::int,
                    (select string_agg(name || '=' || current_setting(name), ', ' order by name)
                     from pg_settings where name in ('fsync', 'synchronous_commit', 'full_page_writes',
                       'max_connections', 'shared_buffers', 'wal_level', 'password_encryption'))",
            &[],
        )
        .await
        .map_err(|e| format!("server facts: {}", pg_err(e)))?;
    Ok(Facts {
        version: row.get(0),
        version_num: row.get(1),
        settings: row.get(2),
        bao: String::new(),
    })
}
