//! Database access: the pool, the server facts read once per pool, and
//! [`Conn`], a pooled connection that counts statements and round trips and
//! never returns to the pool with a transaction open.

use crate::apply::Audit;
use crate::config::{Config, Secret};
use crate::error::{Error, Result};
pub use crate::sql::{Param, ServerInfo, Statement};
use crate::tls::LazyTls;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use sha2::{Digest, Sha256};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// The bootstrap version this build of the connector works with.
pub const BOOTSTRAP_VERSION: i32 = 3;

/// A planned statement's parameter, bound.
pub(crate) fn bind(param: &Param) -> &(dyn ToSql + Sync) {
    match param {
        Param::Text(v) => v,
        Param::OptText(v) => v,
        Param::TextArray(v) => v,
        Param::Bool(v) => v,
        Param::Int(v) => v,
        Param::Int8(v) => v,
        Param::Uuid(v) => v,
        Param::OptUuid(v) => v,
        Param::UuidArray(v) => v,
        Param::Time(v) => v,
        Param::Json(v) => v,
        Param::Secret(v) => v.expose_string(),
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
    #[cfg(feature = "internals")]
    pub fn get(&self) -> (u64, u64) {
        (
            self.statements.load(Ordering::Relaxed),
            self.round_trips.load(Ordering::Relaxed),
        )
    }
}

/// A pooled connection for one action.
///
/// `BEGIN` (with the action's advisory lock) is not sent on its own: it
/// travels in the same round trip as the first statement after it, and
/// [`Conn::commit_after`] sends the last statements and `COMMIT` together.
pub struct Conn {
    obj: Option<Object>,
    in_tx: AtomicBool,
    session_lock: AtomicBool,
    /// `BEGIN; …` waiting to go out with the next statement.
    pending_begin: std::sync::Mutex<Option<String>>,
    /// A transaction given up after `BEGIN` was sent: `ROLLBACK` goes first.
    pending_rollback: AtomicBool,
    pub stats: Stats,
    totals: Arc<Totals>,
}

type Pending<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a>,
>;

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

    /// What must go before the next statement: a `ROLLBACK` of a given-up
    /// transaction, a `BEGIN` not sent yet.
    fn take_begin(&self) -> Option<String> {
        let begin = self
            .pending_begin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match (self.pending_rollback.swap(false, Ordering::Relaxed), begin) {
            (true, Some(begin)) => Some(format!("ROLLBACK; {begin}")),
            (true, None) => Some("ROLLBACK".into()),
            (false, begin) => begin,
        }
    }

    /// Prepare every parameterized statement not yet prepared on this
    /// connection (their Parse messages pipelined: one round trip, none when
    /// all are cached). Every statement text is a constant of the connector
    /// (values go as parameters), so the per-connection cache stays small.
    async fn prepare_all(&self, statements: &[&str]) -> Result<()> {
        let obj = self.obj.as_ref().expect("connection present");
        let before = obj.statement_cache.size();
        futures_util::future::try_join_all(statements.iter().map(|s| obj.prepare_cached(s)))
            .await?;
        if obj.statement_cache.size() != before {
            self.count(0, 1);
        }
        Ok(())
    }

    /// Send statements in order, in one round trip (after any pending
    /// `BEGIN`, and followed by `COMMIT` with `commit`), and return each
    /// one's rows (parameterless statements, sent as one simple-protocol
    /// batch, return none).
    ///
    /// Statements are all prepared before anything is sent: one that still
    /// had to be prepared would otherwise go out only after that round trip,
    /// behind later ones, out of the plan's order.
    async fn pipeline(&self, statements: &[Statement], commit: bool) -> Result<Vec<Vec<Row>>> {
        let with_params: Vec<&str> = statements
            .iter()
            .filter(|s| !s.params.is_empty())
            .map(|s| s.sql.as_str())
            .collect();
        self.prepare_all(&with_params).await?;
        let client = self.client();
        let obj = self.obj.as_ref().expect("connection present");
        let begin = self.take_begin();
        let mut futures: Vec<Pending<'_>> = Vec::new();
        // which future answers which statement (None: a batch of DDL)
        let mut owners: Vec<Option<usize>> = Vec::new();
        let mut sent = 0u32;
        let batch = |sql: String| -> Pending<'_> {
            Box::pin(async move { client.batch_execute(&sql).await.map(|_| Vec::new()) })
        };
        if let Some(sql) = begin {
            futures.push(batch(sql));
            owners.push(None);
        }
        let mut ddl = String::new();
        for (i, s) in statements.iter().enumerate() {
            sent += 1;
            if s.params.is_empty() {
                ddl.push_str(&s.sql);
                ddl.push_str(";\n");
                continue;
            }
            if !ddl.is_empty() {
                futures.push(batch(std::mem::take(&mut ddl)));
                owners.push(None);
            }
            futures.push(Box::pin(async move {
                let params: Vec<&(dyn ToSql + Sync)> = s.params.iter().map(bind).collect();
                let statement = obj.prepare_cached(&s.sql).await?;
                client.query(&statement, &params).await
            }));
            owners.push(Some(i));
        }
        if commit {
            ddl.push_str("COMMIT");
            sent += 1;
        }
        if !ddl.is_empty() {
            futures.push(batch(ddl));
            owners.push(None);
        }
        if futures.is_empty() {
            return Ok(vec![Vec::new(); statements.len()]);
        }
        let result = futures_util::future::try_join_all(futures).await;
        self.count(sent, 1);
        let answers = result?;
        if commit {
            self.in_tx.store(false, Ordering::Relaxed);
        }
        let mut rows = vec![Vec::new(); statements.len()];
        for (owner, answer) in owners.into_iter().zip(answers) {
            if let Some(i) = owner {
                rows[i] = answer;
            }
        }
        Ok(rows)
    }

    async fn one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.prepare_all(&[sql]).await?;
        let obj = self.obj.as_ref().expect("connection present");
        let statement = obj.prepare_cached(sql).await?;
        let client = self.client();
        let rows = match self.take_begin() {
            Some(begin) => {
                self.count(1, 0);
                let (_, rows) = futures_util::future::try_join(
                    client.batch_execute(&begin),
                    client.query(&statement, params),
                )
                .await?;
                rows
            }
            None => client.query(&statement, params).await?,
        };
        self.count(1, 1);
        Ok(rows)
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.one(sql, params).await
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let mut rows = self.one(sql, params).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(Error::internal(format!(
                "expected one row, the query returned {n}"
            ))),
        }
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let mut rows = self.one(sql, params).await?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(Some(rows.remove(0))),
            n => Err(Error::internal(format!(
                "expected at most one row, the query returned {n}"
            ))),
        }
    }

    /// A statement's affected row count.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.prepare_all(&[sql]).await?;
        let obj = self.obj.as_ref().expect("connection present");
        let statement = obj.prepare_cached(sql).await?;
        let client = self.client();
        let n = match self.take_begin() {
            Some(begin) => {
                self.count(1, 0);
                futures_util::future::try_join(
                    client.batch_execute(&begin),
                    client.execute(&statement, params),
                )
                .await?
                .1
            }
            None => client.execute(&statement, params).await?,
        };
        self.count(1, 1);
        Ok(n)
    }

    /// A planned statement's affected row count.
    pub async fn execute_statement(&self, statement: &Statement) -> Result<u64> {
        let params: Vec<&(dyn ToSql + Sync)> = statement.params.iter().map(bind).collect();
        self.execute(&statement.sql, &params).await
    }

    /// Several parameterless statements in one round trip (simple protocol).
    pub async fn batch(&self, sql: &str, statements: u32) -> Result<()> {
        let sql = match self.take_begin() {
            Some(begin) => {
                self.count(1, 0);
                format!("{begin};\n{sql}")
            }
            None => sql.to_string(),
        };
        self.count(statements, 1);
        Ok(self.client().batch_execute(&sql).await?)
    }

    /// Run planned statements in order, pipelined: one round trip in all.
    pub async fn run(&self, statements: &[Statement]) -> Result<()> {
        if statements.is_empty() {
            return Ok(());
        }
        self.pipeline(statements, false).await.map(|_| ())
    }

    /// Run planned statements and return each one's rows.
    pub async fn run_rows(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>> {
        self.pipeline(statements, false).await
    }

    /// Run the last statements of a transaction and `COMMIT`, in one round trip.
    pub async fn commit_after(&self, statements: &[Statement]) -> Result<()> {
        self.pipeline(statements, true).await.map(|_| ())
    }

    /// A transaction, under the action's advisory lock.
    pub fn transaction(&self, lock: Lock<'_>) -> Tx<'_> {
        self.start(lock);
        Tx {
            conn: self,
            open: true,
        }
    }

    /// Give up the open transaction: nothing to send when its `BEGIN` never
    /// went out; else `ROLLBACK` goes before the next statement.
    fn abort(&self) {
        if !self.in_tx.swap(false, Ordering::Relaxed) {
            return;
        }
        let unsent = self
            .pending_begin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if unsent.is_none() {
            self.pending_rollback.store(true, Ordering::Relaxed);
        }
    }

    fn start(&self, lock: Lock<'_>) {
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
        *self.pending_begin.lock().unwrap_or_else(|e| e.into_inner()) = Some(sql);
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
}

/// An open transaction: `BEGIN` with the action's advisory lock (sent with
/// the first statement). [`Tx::commit`] sends the last statements, the
/// action's audit row and `COMMIT` in one round trip; a `Tx` dropped without
/// it (an error returned with `?`) rolls the transaction back: before the
/// connection's next statement, or by the server when the connection is
/// closed.
pub struct Tx<'c> {
    conn: &'c Conn,
    open: bool,
}

impl std::ops::Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Tx<'_> {
    /// Apply the last statements and the audit row, and commit.
    pub async fn commit(mut self, mut statements: Vec<Statement>, audit: Audit<'_>) -> Result<()> {
        let total = self.conn.stats.statements() + statements.len() as u32 + 1;
        statements.push(audit.statement(total));
        self.open = false;
        let result = self.conn.commit_after(&statements).await;
        if result.is_err() {
            self.conn.abort();
        }
        result
    }
}

impl Tx<'_> {
    /// Commit what was sent, without an audit row (one batch of an action
    /// that writes its one audit row at the end).
    pub async fn commit_without_audit(mut self) -> Result<()> {
        self.open = false;
        let result = self.conn.commit_after(&[]).await;
        if result.is_err() {
            self.conn.abort();
        }
        result
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            self.conn.abort();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A connection left inside a transaction (an error, a cancelled
        // future) is closed rather than reused: the server rolls it back.
        if *self.in_tx.get_mut() || *self.session_lock.get_mut() || *self.pending_rollback.get_mut()
        {
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

/// What a new pool learns about its server, in one round trip (simple
/// protocol: nothing to prepare on a connection that may serve only one
/// short CLI action).
struct ServerFacts {
    version_num: i32,
    runtime_role: String,
    dbname: String,
    bootstrap_version: Option<i32>,
}

async fn server_facts(
    client: &tokio_postgres::Client,
    check_registry: bool,
) -> Result<ServerFacts> {
    use tokio_postgres::SimpleQueryMessage;
    let mut sql = String::from(
        "select current_setting('server_version_num'), current_user, current_database()",
    );
    if check_registry {
        sql.push_str(
            "; select value #>> '{}' from supabase_connector.meta where key = 'bootstrap_version'",
        );
    }
    let messages = client.simple_query(&sql).await.map_err(|e| {
        if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
            return Error::precondition(
                "the registry schema supabase_connector is missing: run `supabase-connector bootstrap` as a superuser first",
            );
        }
        let mut e = Error::from(e);
        if check_registry {
            e.message = format!(
                "cannot read the registry ({}): is the runtime role the one bootstrap was run for?",
                e.message
            );
        }
        e
    })?;
    // one row from the first statement, at most one from the second
    let mut rows = messages.into_iter().filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    let first = rows
        .next()
        .ok_or_else(|| Error::internal("the server answered no facts"))?;
    let text = |i: usize| first.get(i).unwrap_or_default().to_string();
    Ok(ServerFacts {
        version_num: text(0)
            .parse()
            .map_err(|_| Error::internal("server_version_num is not a number"))?,
        runtime_role: text(1),
        dbname: text(2),
        bootstrap_version: rows.next().and_then(|r| r.get(0).and_then(|v| v.parse().ok())),
    })
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
        // Generic plans: every statement is prepared once per connection and
        // its parameters never change its best plan (lookups by key), so
        // PostgreSQL should not plan it again on every run (on 15 it keeps
        // re-planning the project-state query: ~0.6 ms a no-op upsert).
        pg.options(format!(
            "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout=60000 \
             -c plan_cache_mode=force_generic_plan",
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
        // Last in, first out: sequential actions keep to the connection used
        // last, whose plans and catalog caches are warm, and the others idle.
        let pool = Pool::builder(manager)
            .max_size(config.database.pool_size)
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .recycle_timeout(Some(wait))
            .build()
            .map_err(|e| Error::internal(format!("pool: {e}")))?;

        let obj = pool.get().await?;
        let facts = server_facts(&obj, check_registry).await?;
        let server = ServerInfo {
            version_num: facts.version_num,
            runtime_role: facts.runtime_role,
            dbname: facts.dbname,
            host,
            port,
        };
        if check_registry && facts.bootstrap_version != Some(BOOTSTRAP_VERSION) {
            return Err(Error::precondition(format!(
                "the registry is at bootstrap version {}, this connector needs {BOOTSTRAP_VERSION}: run `supabase-connector bootstrap`",
                facts.bootstrap_version.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
            )));
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
            pending_begin: std::sync::Mutex::new(None),
            pending_rollback: AtomicBool::new(false),
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
