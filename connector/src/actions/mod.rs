//! One module per group of actions: params → model → plan → apply → result.

pub mod access;
pub mod leases;
pub mod migrations;
mod placement;
pub mod project;
pub mod remove;
pub mod verify;

use crate::apply::Audit;
use crate::db::Conn;
use crate::error::{Error, Result};
use crate::names::{ProjectNames, Slug};
use crate::sql::Statement;
use crate::Connector;
use serde_json::Value;

/// Route an action (already validated against the catalog).
pub async fn dispatch(c: &Connector, action: &str, p: &Value) -> Result<Value> {
    match action {
        "upsert_database_project_access" => project::upsert(c, p).await,
        "describe_database_project" => project::describe(c, p).await,
        "upsert_database_team_access" => access::upsert_team(c, p).await,
        "upsert_database_access" => access::upsert_direct(c, p).await,
        "revoke_database_access" => access::revoke_direct(c, p).await,
        "revoke_database_team_access" => access::revoke_team(c, p).await,
        "issue_database_lease" => leases::issue(c, p).await,
        "renew_database_lease" => leases::renew(c, p).await,
        "revoke_database_lease" => leases::revoke(c, p).await,
        "reap_expired_leases" => leases::reap(c, p).await,
        "remove_database_project" => remove::remove(c, p).await,
        "apply_database_migrations" => migrations::apply(c, p).await,
        "verify_database_project" => verify::verify(c, p).await,
        other => Err(Error::invalid(format!("unknown action {other:?}"))),
    }
}

/// The project named by `params.project`.
pub(crate) fn project_names(p: &Value) -> Result<ProjectNames> {
    let slug = p
        .get("project")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_at("/project", "required"))?;
    Ok(ProjectNames::new(&Slug::parse(slug)?))
}

pub(crate) fn dry_run(p: &Value) -> bool {
    p.get("dry_run").and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn str_param<'a>(p: &'a Value, key: &str) -> Result<&'a str> {
    p.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_at(&format!("/{key}"), "required"))
}

/// Run `body` inside the connection's open transaction: commit on success,
/// roll back on failure.
pub(crate) async fn in_transaction<T>(
    conn: &Conn,
    body: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match body.await {
        Ok(v) => {
            conn.commit().await?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.rollback().await;
            Err(e)
        }
    }
}

/// Write the audit row (inside the current transaction, if any).
pub(crate) async fn audit(conn: &Conn, audit: Audit<'_>) -> Result<()> {
    let statement: Statement = audit.statement();
    conn.run(std::slice::from_ref(&statement)).await
}

/// A project's registry row, or `not_found`.
pub(crate) struct ProjectRecord {
    pub state: String,
}

pub(crate) async fn project_record(
    conn: &Conn,
    names: &ProjectNames,
    lock: bool,
) -> Result<ProjectRecord> {
    let sql = if lock {
        "select state from supabase_connector.projects where slug = $1 for update"
    } else {
        "select state from supabase_connector.projects where slug = $1"
    };
    let row = conn
        .query_opt(sql, &[&names.slug.as_str()])
        .await?
        .ok_or_else(|| {
            Error::not_found(format!(
                "project {:?} is not provisioned",
                names.slug.as_str()
            ))
        })?;
    Ok(ProjectRecord { state: row.get(0) })
}
