//! Database access: the pool, the server facts read once per pool, and
//! [`Conn`], a pooled connection that counts statements and round trips and
//! never returns to the pool with a transaction open.

use crate::config::{Config, Secret};
use crate::error::{Error, Result};
use crate::tls::LazyTls;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

/// The bootstrap version this build of the connector works with.
pub const BOOTSTRAP_VERSION: i32 = 1;

/// Facts about the server, read once per pool.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `server_version_num`, e.g. 150018 or 180006.
    pub version_num: i32,
    /// The role actions run as (`postgres` on Supabase).
    pub runtime_role: String,
    pub dbname: String,
    pub host: String,
    pub port: u16,
}

impl ServerInfo {
    /// PostgreSQL 16 changed the rules for granting roles.
    pub fn pg16_grants(&self) -> bool {
        self.version_num >= 160000
    }
}

/// A bind parameter of a planned statement.
#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    OptText(Option<String>),
    TextArray(Vec<String>),
    Bool(bool),
    Int(i32),
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    UuidArray(Vec<Uuid>),
    Time(DateTime<Utc>),
    Json(Value),
}

impl Param {
    pub fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Text(v) => v,
            Param::OptText(v) => v,
            Param::TextArray(v) => v,
            Param::Bool(v) => v,
            Param::Int(v) => v,
            Param::Uuid(v) => v,
            Param::OptUuid(v) => v,
            Param::UuidArray(v) => v,
            Param::Time(v) => v,
            Param::Json(v) => v,
        }
    }

    fn display(&self) -> Value {
        match self {
            Param::Text(v) => Value::from(v.as_str()),
            Param::OptText(v) => v.as_deref().map(Value::from).unwrap_or(Value::Null),
            Param::TextArray(v) => Value::from(v.clone()),
            Param::Bool(v) => Value::from(*v),
            Param::Int(v) => Value::from(*v),
            Param::Uuid(v) => Value::from(v.to_string()),
            Param::OptUuid(v) => v.map(|u| Value::from(u.to_string())).unwrap_or(Value::Null),
            Param::UuidArray(v) => Value::from(v.iter().map(Uuid::to_string).collect::<Vec<_>>()),
            Param::Time(v) => Value::from(v.to_rfc3339()),
            Param::Json(v) => v.clone(),
        }
    }
}

/// One SQL statement of a plan. DDL carries no parameters (PostgreSQL does
/// not take them there); registry writes always do.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Statement {
    pub fn ddl(sql: impl Into<String>) -> Statement {
        Statement {
            sql: sql.into(),
            params: vec![],
        }
    }
    pub fn with(sql: impl Into<String>, params: Vec<Param>) -> Statement {
        Statement {
            sql: sql.into(),
            params,
        }
    }
    /// The statement as shown by `dry_run` and `plan`: parameters follow as a comment.
    pub fn display(&self) -> String {
        if self.params.is_empty() {
            self.sql.clone()
        } else {
            let params: Vec<Value> = self.params.iter().map(Param::display).collect();
            format!("{} -- {}", self.sql, Value::from(params))
        }
    }
}

/// A key for `pg_advisory_xact_lock`, stable across processes.
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("supabase_connector:{name}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Which advisory lock a transaction takes first.
#[derive(Debug, Clone, Copy)]
pub enum Lock<'a> {
    /// Exclusive on a project (by schema name): changes to it.
    Project(&'a str),
    /// Shared on a project: lease issue, which must not race a revocation.
    ProjectShared(&'a str),
    /// No project lock (reaping, lease revoke by id: row locks suffice).
    None,
}

/// Statement and round-trip counts of one action.
#[derive(Debug, Default)]
pub struct Stats {
    statements: AtomicU32,
    round_trips: AtomicU32,
}

impl Stats {
    fn add(&self, statements: u32, round_trips: u32) {
        self.statements.fetch_add(statements, Ordering::Relaxed);
        self.round_trips.fetch_add(round_trips, Ordering::Relaxed);
    }
    pub fn statements(&self) -> u32 {
        self.statements.load(Ordering::Relaxed)
    }
    pub fn round_trips(&self) -> u32 {
        self.round_trips.load(Ordering::Relaxed)
    }
}

/// Statements and round trips over the life of a pool (for benchmarks).
#[derive(Debug, Default)]
pub struct Totals {
    statements: AtomicU64,
    round_trips: AtomicU64,
}

impl Totals {
    /// `(statements, round_trips)` so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.statements.load(Ordering::Relaxed),
            self.round_trips.load(Ordering::Relaxed),
        )
    }
}

/// A pooled connection for one action.
pub struct Conn {
    obj: Option<Object>,
    in_tx: AtomicBool,
    session_lock: AtomicBool,
    pub stats: Stats,
    totals: Arc<Totals>,
}

impl Conn {
    fn count(&self, statements: u32, round_trips: u32) {
        self.stats.add(statements, round_trips);
        self.totals
            .statements
            .fetch_add(statements as u64, Ordering::Relaxed);
        self.totals
            .round_trips
            .fetch_add(round_trips as u64, Ordering::Relaxed);
    }

    fn client(&self) -> &tokio_postgres::Client {
        self.obj.as_ref().expect("connection present")
    }

    /// `sql` prepared once per connection: later calls skip the Parse round
    /// trip and, once PostgreSQL settles on a generic plan, the planning.
    /// Every statement text passed here is a constant of the connector (no
    /// values spliced in), so the per-connection cache stays small.
    async fn prepared(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        let obj = self.obj.as_ref().expect("connection present");
        let before = obj.statement_cache.size();
        let statement = obj.prepare_cached(sql).await?;
        if obj.statement_cache.size() != before {
            self.count(0, 1);
        }
        Ok(statement)
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let statement = self.prepared(sql).await?;
        self.count(1, 1);
        Ok(self.client().query(&statement, params).await?)
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let statement = self.prepared(sql).await?;
        self.count(1, 1);
        Ok(self.client().query_one(&statement, params).await?)
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let statement = self.prepared(sql).await?;
        self.count(1, 1);
        Ok(self.client().query_opt(&statement, params).await?)
    }

    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = self.prepared(sql).await?;
        self.count(1, 1);
        Ok(self.client().execute(&statement, params).await?)
    }

    /// Several parameterless statements in one round trip (simple protocol).
    pub async fn batch(&self, sql: &str, statements: u32) -> Result<()> {
        self.count(statements, 1);
        Ok(self.client().batch_execute(sql).await?)
    }

    /// Run planned statements in order, pipelined: one round trip in all.
    pub async fn run(&self, statements: &[Statement]) -> Result<()> {
        if statements.is_empty() {
            return Ok(());
        }
        let client = self.client();
        let obj = self.obj.as_ref().expect("connection present");
        // Parameterized statements not yet prepared on this connection cost
        // one more round trip (their Parse, pipelined together).
        let cache_size = obj.statement_cache.size();
        // Parse them all before anything is sent: a statement that still had
        // to be prepared would send its Execute only after that round trip,
        // behind later statements, out of the plan's order (a lease role
        // dropped before its sessions are terminated, the exposure computed
        // before the registry row it reads is written).
        futures_util::future::try_join_all(
            statements
                .iter()
                .filter(|s| !s.params.is_empty())
                .map(|s| obj.prepare_cached(&s.sql)),
        )
        .await?;
        let mut futures = Vec::new();
        let mut ddl = String::new();
        let flush = |ddl: &mut String, futures: &mut Vec<_>| {
            if !ddl.is_empty() {
                let sql = std::mem::take(ddl);
                futures.push(
                    Box::pin(async move { client.batch_execute(&sql).await.map(|_| ()) })
                        as std::pin::Pin<
                            Box<
                                dyn std::future::Future<Output = Result<(), tokio_postgres::Error>>
                                    + Send
                                    + '_,
                            >,
                        >,
                );
            }
        };
        for s in statements {
            if s.params.is_empty() {
                ddl.push_str(&s.sql);
                ddl.push_str(";\n");
            } else {
                flush(&mut ddl, &mut futures);
                futures.push(Box::pin(async move {
                    let params: Vec<&(dyn ToSql + Sync)> =
                        s.params.iter().map(Param::as_sql).collect();
                    let statement = obj.prepare_cached(&s.sql).await?;
                    client.execute(&statement, &params).await.map(|_| ())
                }));
            }
        }
        flush(&mut ddl, &mut futures);
        let result = futures_util::future::try_join_all(futures).await;
        let parsed = u32::from(obj.statement_cache.size() != cache_size);
        self.count(statements.len() as u32, 1 + parsed);
        result?;
        Ok(())
    }

    /// `BEGIN` and the action's advisory lock, in one round trip.
    pub async fn begin(&self, lock: Lock<'_>) -> Result<()> {
        let sql = match lock {
            Lock::Project(schema) => format!(
                "BEGIN; SELECT pg_advisory_xact_lock({})",
                lock_key(&format!("project:{schema}"))
            ),
            Lock::ProjectShared(schema) => {
                format!(
                    "BEGIN; SELECT pg_advisory_xact_lock_shared({})",
                    lock_key(&format!("project:{schema}"))
                )
            }
            Lock::None => "BEGIN".to_string(),
        };
        self.in_tx.store(true, Ordering::Relaxed);
        let n = if matches!(lock, Lock::None) { 1 } else { 2 };
        self.batch(&sql, n).await
    }

    /// Take a session-level advisory lock; until it is released the
    /// connection is closed instead of reused if dropped.
    pub async fn hold_session_lock(&self, name: &str) -> Result<()> {
        self.session_lock.store(true, Ordering::Relaxed);
        self.batch(&format!("SELECT pg_advisory_lock({})", lock_key(name)), 1)
            .await
    }

    pub async fn release_session_lock(&self, name: &str) -> Result<()> {
        self.batch(&format!("SELECT pg_advisory_unlock({})", lock_key(name)), 1)
            .await?;
        self.session_lock.store(false, Ordering::Relaxed);
        Ok(())
    }

    pub async fn commit(&self) -> Result<()> {
        self.batch("COMMIT", 1).await?;
        self.in_tx.store(false, Ordering::Relaxed);
        Ok(())
    }

    pub async fn rollback(&self) -> Result<()> {
        let r = self.batch("ROLLBACK", 1).await;
        if r.is_ok() {
            self.in_tx.store(false, Ordering::Relaxed);
        }
        r
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A connection left inside a transaction (an error, a cancelled
        // future) is closed rather than reused: the server rolls it back.
        if *self.in_tx.get_mut() || *self.session_lock.get_mut() {
            if let Some(obj) = self.obj.take() {
                drop(Object::take(obj));
            }
        }
    }
}

/// The connection pool and the server facts behind it.
pub struct Database {
    pool: Pool,
    pub server: ServerInfo,
    /// How to reach the server (for sessions logged in as a lease).
    base: tokio_postgres::Config,
    tls: LazyTls,
    /// Statements and round trips of every connection of the pool.
    pub totals: Arc<Totals>,
}

impl Database {
    /// Build the pool and read the server facts (one connection, one query).
    pub async fn connect(
        config: &Config,
        password: Option<&Secret>,
        check_registry: bool,
    ) -> Result<Database> {
        let url = config.database.url.as_ref().ok_or_else(|| {
            Error::invalid("database.url is not configured (or SUPABASE_CONNECTOR_DATABASE_URL)")
        })?;
        let mut pg = tokio_postgres::Config::from_str(url.expose())
            .map_err(|_| Error::invalid("database.url is not a valid PostgreSQL URL"))?;
        if pg.get_password().is_none() {
            let password = password.ok_or_else(|| {
                Error::secrets("database.url has no password and OpenBao has no POSTGRES_PASSWORD")
            })?;
            pg.password(password.expose());
        }
        pg.ssl_mode(match config.database.sslmode.as_str() {
            "disable" => tokio_postgres::config::SslMode::Disable,
            "require" => tokio_postgres::config::SslMode::Require,
            _ => tokio_postgres::config::SslMode::Prefer,
        });
        pg.application_name("supabase-connector");
        pg.connect_timeout(Duration::from_secs(
            config.database.pool_timeout_seconds.clamp(1, 30),
        ));
        pg.options(format!(
            "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout=60000",
            config.database.statement_timeout_ms, config.database.lock_timeout_ms
        ));
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);

        let root = match &config.database.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| Error::invalid(format!("database.ca_file: {e}")))?;
                Some(
                    native_tls::Certificate::from_pem(&pem)
                        .map_err(|e| Error::invalid(format!("database.ca_file: {e}")))?,
                )
            }
            None => None,
        };
        let tls = LazyTls::new(root);
        let base = pg.clone();
        let manager = Manager::from_config(
            pg,
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let wait = Duration::from_secs(config.database.pool_timeout_seconds.max(1));
        let pool = Pool::builder(manager)
            .max_size(config.database.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .recycle_timeout(Some(wait))
            .build()
            .map_err(|e| Error::internal(format!("pool: {e}")))?;

        let obj = pool.get().await?;
        let row = obj
            .query_one(
                "select current_setting('server_version_num')::int, current_user::text, current_database()::text,
                        to_regclass('supabase_connector.meta') is not null",
                &[],
            )
            .await?;
        let server = ServerInfo {
            version_num: row.get(0),
            runtime_role: row.get(1),
            dbname: row.get(2),
            host,
            port,
        };
        if check_registry {
            let installed: bool = row.get(3);
            if !installed {
                return Err(Error::precondition(
                    "the registry schema supabase_connector is missing: run `supabase-connector bootstrap` as a superuser first",
                ));
            }
            let version: Option<i32> = obj
                .query_opt(
                    "select (value #>> '{}')::int from supabase_connector.meta where key = 'bootstrap_version'",
                    &[],
                )
                .await
                .map_err(|e| {
                    let mut e = Error::from(e);
                    e.message = format!("cannot read the registry ({}): is the runtime role the one bootstrap was run for?", e.message);
                    e
                })?
                .map(|r| r.get(0));
            if version != Some(BOOTSTRAP_VERSION) {
                return Err(Error::precondition(format!(
                    "the registry is at bootstrap version {}, this connector needs {BOOTSTRAP_VERSION}: run `supabase-connector bootstrap`",
                    version.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
                )));
            }
        }
        drop(obj);
        Ok(Database {
            pool,
            server,
            base,
            tls,
            totals: Arc::default(),
        })
    }

    /// A session of its own, logged in as `user` (a lease role): the
    /// connection task runs until the client is dropped.
    pub async fn connect_as(
        &self,
        user: &str,
        password: &Secret,
    ) -> Result<tokio_postgres::Client> {
        let mut pg = self.base.clone();
        pg.user(user)
            .password(password.expose())
            .application_name("supabase-connector migrations");
        pg.options("");
        let (client, connection) = pg.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "lease session ended");
            }
        });
        Ok(client)
    }

    /// A connection for one action.
    pub async fn conn(&self) -> Result<Conn> {
        let obj = self.pool.get().await?;
        Ok(Conn {
            obj: Some(obj),
            in_tx: AtomicBool::new(false),
            session_lock: AtomicBool::new(false),
            stats: Stats::default(),
            totals: self.totals.clone(),
        })
    }

    pub fn close(&self) {
        self.pool.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("project:proj_a"), lock_key("project:proj_a"));
        assert_ne!(lock_key("project:proj_a"), lock_key("project:proj_b"));
    }

    #[test]
    fn display_shows_params() {
        let s = Statement::with("select $1", vec![Param::Text("x".into())]);
        assert_eq!(s.display(), "select $1 -- [\"x\"]");
    }
}
