//! One module per group of actions: request → model → plan → apply → result.

pub mod access;
pub mod leases;
pub mod migrations;
mod placement;
pub mod project;
pub mod remove;
pub mod verify;

use crate::apply::Audit;
use crate::db::{Conn, Database};
use crate::error::Result;
use crate::plan::PlanContext;
use crate::requests::Request;
use crate::Connector;
use serde_json::Value;

/// Route an action (already validated against the catalog) to its module,
/// its parameters read into the action's request (`params`, redacted, go to
/// the audit row).
pub async fn dispatch(c: &Connector, action: &str, params: &Value) -> Result<Value> {
    let p = params;
    match Request::parse(action, params)? {
        Request::UpsertProject(r) => project::upsert(c, &r, p).await,
        Request::DescribeProject(r) => project::describe(c, &r).await,
        Request::UpsertTeam(r) => access::upsert_team(c, &r, p).await,
        Request::UpsertAccess(r) => access::upsert_direct(c, &r, p).await,
        Request::RevokeAccess(r) => access::revoke_direct(c, &r, p).await,
        Request::RevokeTeam(r) => access::revoke_team(c, &r, p).await,
        Request::IssueLease(r) => leases::issue(c, &r, p).await,
        Request::RenewLease(r) => leases::renew(c, &r, p).await,
        Request::RevokeLease(r) => leases::revoke(c, &r, p).await,
        Request::ReapLeases(r) => leases::reap(c, &r, p).await,
        Request::RemoveProject(r) => remove::remove(c, &r, p).await,
        Request::ApplyMigrations(r) => migrations::apply(c, &r, p).await,
        Request::VerifyProjects(r) => verify::verify(c, &r, p).await,
    }
}

/// What plans are rendered for: the server, the exposure and the pools.
pub(crate) fn context<'a>(c: &'a Connector, db: &'a Database) -> PlanContext<'a> {
    PlanContext::new(&db.server, &c.config)
}

/// Write the audit row of an action that ran outside a transaction.
pub(crate) async fn audit(conn: &Conn, audit: Audit<'_>) -> Result<()> {
    let statements = conn.stats.statements() + 1;
    conn.run(std::slice::from_ref(&audit.statement(statements)))
        .await
}
