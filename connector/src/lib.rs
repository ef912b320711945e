//! The supabase connector: lets many projects share one central,
//! self-hosted Supabase. Each project gets its own schema, roles, row-level
//! security, exposure through the central PostgREST, and short-lived leases
//! minted from secrets held in OpenBao.
//!
//! Every action reads as a pipeline: **model** (desired state from params)
//! → **inspect** (actual state) → **diff** → **plan** (typed changes, then
//! SQL for the server's version) → **apply** (one transaction, advisory
//! locks, one audit row). `dry_run` returns the plan instead.
//!
//! ```no_run
//! # async fn demo() -> Result<(), supabase_connector::Error> {
//! use supabase_connector::{Config, Connector};
//! let connector = Connector::new(Config::from_json(None)?).await?;
//! let state = connector
//!     .execute("upsert_database_project_access", serde_json::json!({"project": "acme"}))
//!     .await?;
//! println!("{}", state["lease"]["env"]["DATABASE_URL"]);
//! # Ok(()) }
//! ```

// The library's surface: the connector, its configuration, its errors,
// the catalog, bootstrap, and the typed requests and vocabulary.
pub mod bootstrap;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod error;
pub mod requests;

/// Modules private to the crate, public with the `internals` feature (the
/// property tests and the benchmark look inside).
macro_rules! internal {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $(
            $(#[$doc])*
            #[cfg(feature = "internals")]
            pub mod $name;
            $(#[$doc])*
            #[cfg(not(feature = "internals"))]
            mod $name;
        )*
    };
}

internal! {
    actions;
    apply;
    db;
    inspect;
    lease;
    model;
    names;
    plan;
    registry;
    render;
    secrets;
    sql;
    sqlscan;
    state;
    tls;
}

// The demo and the stack it starts: for the command line and the benchmark
// (feature `devtools`, on by default; the Python bindings go without).
#[cfg(feature = "devtools")]
pub mod demo;
#[cfg(feature = "devtools")]
pub mod stack;

pub use config::Config;
pub use error::{Error, ErrorCode, Result};
pub use model::Principal;
pub use names::{AccessClass, Slug};

use db::Database;
use secrets::{ConnectorSecrets, OpenBao};
use serde_json::Value;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::OnceCell;
use tracing::Instrument;

/// The secrets of one action, as checked against OpenBao once for it.
type ActionSecrets = Arc<OnceCell<Result<ConnectorSecrets>>>;

tokio::task_local! {
    /// Set while an action runs: the secrets every step of it signs with,
    /// checked against OpenBao's current version once per action.
    static ACTION_SECRETS: ActionSecrets;
}

/// The connector: configuration, the OpenBao client and a lazily opened
/// database pool. Cheap to share (`Arc<Connector>`); every method takes `&self`.
pub struct Connector {
    config: Config,
    openbao: std::result::Result<OpenBao, Error>,
    db: OnceCell<Database>,
    /// Projects this connector has found registered: their upserts read the
    /// whole state at once (see `actions::project`).
    registered: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Build a connector. Nothing connects until the first action needs it.
    pub async fn new(config: Config) -> Result<Connector> {
        config.validate()?;
        let openbao = OpenBao::new(config.openbao.clone());
        Ok(Connector {
            config,
            openbao,
            db: OnceCell::new(),
            registered: Default::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Run one action with JSON parameters (validated against the catalog).
    pub async fn execute(&self, action: &str, params: Value) -> Result<Value> {
        let params = catalog::validate(action, &params)?;
        let project = params
            .get("project")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let lease_id = params
            .get("lease_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let span = tracing::info_span!("action", action, project, lease_id);
        async {
            let started = std::time::Instant::now();
            let result = self.dispatch_checking_secrets(action, &params).await;
            match &result {
                Ok(_) => tracing::info!(
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "action done"
                ),
                Err(e) => {
                    tracing::warn!(code = e.code.as_str(), error = %e.message, "action failed")
                }
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Run the action. One that signs lease tokens starts checking the
    /// secrets' version in OpenBao at once, alongside its database work;
    /// every step of the action then uses what that one check found.
    async fn dispatch_checking_secrets(&self, action: &str, params: &Value) -> Result<Value> {
        let memo = ActionSecrets::default();
        let run = ACTION_SECRETS.scope(memo.clone(), actions::dispatch(self, action, params));
        if !signs_tokens(action, params) {
            return run.await;
        }
        let check = memo.get_or_init(|| self.signing_secrets());
        tokio::pin!(run, check);
        let mut checked = false;
        loop {
            tokio::select! {
                biased;
                result = &mut run => return result,
                _ = &mut check, if !checked => checked = true,
            }
        }
    }

    /// The OpenBao client, or why there is none.
    #[cfg(feature = "internals")]
    pub fn openbao(&self) -> Result<&OpenBao> {
        self.openbao.as_ref().map_err(Clone::clone)
    }

    #[cfg(not(feature = "internals"))]
    pub(crate) fn openbao(&self) -> Result<&OpenBao> {
        self.openbao.as_ref().map_err(Clone::clone)
    }

    /// The secrets leases need. Inside an action: as OpenBao has them when
    /// the action started (their version checked once per action, see
    /// [`Connector::signing_secrets`]); outside one: checked now.
    pub(crate) async fn secrets(&self) -> Result<ConnectorSecrets> {
        match ACTION_SECRETS.try_with(Arc::clone) {
            Ok(memo) => memo.get_or_init(|| self.signing_secrets()).await.clone(),
            Err(_) => self.signing_secrets().await,
        }
    }

    /// The secrets as OpenBao has them now: the secret's version is checked
    /// (one small request on a kept-alive connection) and the secret read
    /// again only when it changed, so tokens signed after a rotation of
    /// `JWT_SECRET` use the new secret.
    #[cfg(feature = "internals")]
    pub async fn signing_secrets(&self) -> Result<ConnectorSecrets> {
        self.openbao()?.secrets_for_signing().await
    }

    #[cfg(not(feature = "internals"))]
    pub(crate) async fn signing_secrets(&self) -> Result<ConnectorSecrets> {
        self.openbao()?.secrets_for_signing().await
    }

    /// The database pool, opened on first use.
    pub(crate) async fn db(&self) -> Result<&Database> {
        self.db
            .get_or_try_init(|| async {
                let password = self.database_password().await?;
                Database::connect(&self.config, password.as_ref(), true).await
            })
            .await
    }

    /// The runtime role's password from OpenBao, when the URL carries none.
    async fn database_password(&self) -> Result<Option<config::Secret>> {
        let url = self.config.database.url.as_ref().ok_or_else(|| {
            Error::invalid("database.url is not configured (or SUPABASE_CONNECTOR_DATABASE_URL)")
        })?;
        let has_password = tokio_postgres::Config::from_str(url.expose())
            .map(|c| c.get_password().is_some())
            .unwrap_or(false);
        if has_password {
            return Ok(None);
        }
        // the password is read once per pool: no version check needed
        let secrets = self.openbao()?.secrets().await?;
        Ok(secrets.postgres_password)
    }

    /// Whether this connector has found `slug` registered before.
    pub(crate) fn known_registered(&self, slug: &str) -> bool {
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(slug)
    }

    /// Remember that `slug` is registered (a hint only: every read checks).
    pub(crate) fn note_registered(&self, slug: &str) {
        let mut seen = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= 1_000_000 {
            seen.clear();
        }
        seen.insert(slug.to_string());
    }

    /// Connect to the database now rather than at the first action. A
    /// process that runs one action (the CLI) starts this first, so the
    /// connection (OpenBao's password, TCP, authentication) overlaps the
    /// validation of the parameters; an action waits for a connection
    /// already being made instead of making another.
    pub async fn connect(&self) -> Result<()> {
        self.db().await.map(|_| ())
    }

    /// The database pool (for the benchmark's counts of statements and
    /// round trips).
    #[cfg(feature = "internals")]
    pub async fn database(&self) -> Result<&Database> {
        self.db().await
    }

    /// Close the pool; later actions fail.
    pub fn close(&self) {
        if let Some(db) = self.db.get() {
            db.close();
        }
    }
}

/// Whether a run of `action` with `params` signs lease tokens (the catalog's
/// `issues_lease`, not for a dry run or with `issue_lease: false`).
fn signs_tokens(action: &str, params: &Value) -> bool {
    catalog()["actions"][action]["issues_lease"] == true
        && params.get("dry_run") != Some(&Value::Bool(true))
        && params.get("issue_lease") != Some(&Value::Bool(false))
}

/// The embedded catalog (actions and their JSON Schemas).
pub fn catalog() -> &'static Value {
    catalog::catalog()
}
