//! `bootstrap`: install or upgrade the registry, the event trigger and the
//! exposure functions. Needs a superuser; actions never do.

use crate::config::Config;
use crate::db::{Database, BOOTSTRAP_VERSION};
use crate::error::{Error, Result};
use crate::names::ident;
use serde_json::{json, Value};

/// The bootstrap scripts, applied in order in one transaction; each is
/// idempotent and brings a registry of the version before it up to its own.
const SCRIPTS: [&str; 3] = [
    include_str!("../../sql/bootstrap/v1.sql"),
    include_str!("../../sql/bootstrap/v2.sql"),
    include_str!("../../sql/bootstrap/v3.sql"),
];

/// Run the bootstrap SQL in one transaction as the configured superuser.
/// `runtime_role` is the role actions will run as (`postgres` on Supabase).
pub async fn run(
    config: &Config,
    password: Option<&crate::config::Secret>,
    runtime_role: &str,
) -> Result<Value> {
    if !crate::plan::is_plain_identifier(runtime_role) {
        return Err(Error::invalid(format!(
            "runtime role {runtime_role:?} is not a plain role name"
        )));
    }
    let db = Database::connect(config, password, false).await?;
    let conn = db.conn().await?;
    let is_super: bool = conn
        .query_one(
            "select rolsuper from pg_roles where rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    if !is_super {
        return Err(Error::precondition(format!(
            "bootstrap must run as a superuser (supabase_admin on Supabase); {} is not one",
            ident(&db.server.runtime_role)
        )));
    }
    let before: Option<i32> = conn
        .query_one(
            "select case when to_regclass('supabase_connector.meta') is null then null else 0 end",
            &[],
        )
        .await?
        .get(0);
    let before = match before {
        None => None,
        Some(_) => conn
            .query_opt("select (value #>> '{}')::int from supabase_connector.meta where key = 'bootstrap_version'", &[])
            .await?
            .map(|r| r.get::<_, i32>(0)),
    };
    if before.is_some_and(|v| v > BOOTSTRAP_VERSION) {
        return Err(Error::precondition(format!(
            "the registry is at bootstrap version {}, newer than this connector's {BOOTSTRAP_VERSION}",
            before.unwrap_or_default()
        )));
    }
    // One transaction: a failure (a precondition refused) changes nothing.
    let tx = conn.transaction(crate::db::Lock::None);
    tx.execute(
        "select set_config('supabase_connector.runtime_role', $1, true)",
        &[&runtime_role],
    )
    .await?;
    for script in SCRIPTS {
        tx.batch(script, 1).await?;
    }
    tx.commit_without_audit().await?;
    Ok(json!({
        "bootstrap_version": BOOTSTRAP_VERSION,
        "previous_version": before,
        "runtime_role": runtime_role,
        "server_version_num": db.server.version_num,
    }))
}
