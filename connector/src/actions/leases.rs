//! `issue_database_lease`, `renew_database_lease`, `revoke_database_lease`,
//! `reap_expired_leases`.

use super::{audit, context};
use crate::apply::{dry_run_result, Audit};
use crate::db::{Conn, Lock};
use crate::error::{Error, Result};
use crate::lease::{self, lease_json, LeaseRequest, LeaseView, PlannedLease};
use crate::model::Principal;
use crate::names::{lease_login_role, ProjectNames};
use crate::plan::PlanContext;
use crate::registry;
use crate::render::render_all;
use crate::requests::{IssueLease, ReapLeases, RenewLease, RevokeLease};
use crate::Connector;
use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

/// Plan a lease at the principal's effective access (`forbidden` without
/// any), inside the caller's transaction.
pub(crate) async fn plan_for(
    c: &Connector,
    conn: &Conn,
    names: &ProjectNames,
    principal: &Principal,
    ttl: u64,
    database: bool,
) -> Result<PlannedLease> {
    let found = registry::access(conn, names, principal).await?;
    let Some((class, platform_role)) = found.access else {
        return Err(Error::forbidden(format!(
            "{} {} has no access to project {:?}",
            principal.kind(),
            principal.id(),
            names.slug.as_str()
        )));
    };
    Ok(lease::plan_issue(
        LeaseRequest {
            names: names.clone(),
            principal: principal.clone(),
            platform_role,
            class,
            ttl_seconds: ttl,
            database,
            api_url: lease::api_url(&c.config, names, found.api.isolation, &found.api.pool),
        },
        Utc::now(),
    ))
}

pub async fn issue(c: &Connector, req: &IssueLease, params: &Value) -> Result<Value> {
    const ACTION: &str = "issue_database_lease";
    let names = ProjectNames::new(&req.project);
    let ttl = lease::ttl(req.lease_ttl_seconds, &c.config, "/lease_ttl_seconds")?;
    let db = c.db().await?;
    let ctx = context(c, db);
    let conn = db.conn().await?;
    if req.dry_run {
        let planned = plan_for(c, &conn, &names, &req.principal, ttl, req.database).await?;
        return Ok(dry_run_result(
            ACTION,
            &planned.changes,
            &ctx,
            json!({"access_class": planned_class(&planned)}),
        ));
    }
    let tx = conn.transaction(Lock::ProjectShared(&names.schema));
    let planned = plan_for(c, &tx, &names, &req.principal, ttl, req.database).await?;
    // Awaited only now: the action's check of the secrets in OpenBao ran
    // alongside the database work (an unreachable OpenBao rolls it back).
    let secrets = c.secrets().await?;
    let out = json!({"lease": planned.to_json(&secrets, &c.config, &db.server, true)});
    let audit = Audit {
        action: ACTION,
        project: Some(names.slug.as_str()),
        lease_id: Some(planned.lease_id),
        changed: true,
        params,
        outcome: out.clone(),
    };
    tx.commit(render_all(&planned.changes, &ctx), audit).await?;
    Ok(out)
}

fn planned_class(planned: &PlannedLease) -> Value {
    planned
        .changes
        .iter()
        .find_map(|c| match c {
            crate::plan::Change::RecordLease { access_class, .. } => Some(json!(access_class)),
            _ => None,
        })
        .unwrap_or(Value::Null)
}

pub async fn renew(c: &Connector, req: &RenewLease, params: &Value) -> Result<Value> {
    const ACTION: &str = "renew_database_lease";
    let lease_id = req.lease_id;
    let ttl = lease::ttl(req.ttl_seconds, &c.config, "/ttl_seconds")?;
    let db = c.db().await?;
    let ctx = context(c, db);
    let conn = db.conn().await?;
    let tx = conn.transaction(Lock::None);
    let lease = registry::lease_for_update(&tx, lease_id).await?;
    let now = Utc::now();
    let max_lifetime = c.config.lease.max_lifetime_seconds;
    if lease.revoked {
        return Err(Error::conflict(format!(
            "lease {lease_id} was revoked; issue a new one"
        )));
    }
    if lease.expires_at <= now {
        return Err(Error::conflict(format!(
            "lease {lease_id} expired at {}; issue a new one",
            lease.expires_at
        )));
    }
    let max_expires = lease.issued_at + chrono::Duration::seconds(max_lifetime as i64);
    if max_expires <= now || lease.expires_at >= max_expires {
        return Err(Error::conflict(format!(
            "lease {lease_id} reached its maximum lifetime ({max_lifetime} s, lease.max_lifetime_seconds); issue a new one"
        )));
    }
    let new_expires = std::cmp::min(now + chrono::Duration::seconds(ttl as i64), max_expires);
    let (changes, password) = lease::plan_renew(lease_id, lease.login, new_expires);
    if req.dry_run {
        return Ok(dry_run_result(
            ACTION,
            &changes,
            &ctx,
            json!({}),
        ));
    }
    let api_url = lease::api_url(
        &c.config,
        &lease.names,
        lease.api.isolation,
        &lease.api.pool,
    );
    let login_role = lease_login_role(lease_id);
    // the action's check of the secrets ran alongside the query above
    let secrets = c.secrets().await?;
    let out = json!({"lease": lease_json(&LeaseView {
        lease_id,
        names: &lease.names,
        principal: &lease.principal,
        platform_role: &lease.platform_role,
        class: lease.class,
        issued_at: now,
        expires_at: new_expires,
        login: password.as_ref().map(|pw| (login_role.as_str(), pw)),
        api_url: api_url.as_deref(),
        renewable: new_expires < max_expires,
        secrets: &secrets,
        config: &c.config,
        server: &db.server,
    })});
    let audit = Audit {
        action: ACTION,
        project: Some(lease.names.slug.as_str()),
        lease_id: Some(lease_id),
        changed: true,
        params,
        outcome: out.clone(),
    };
    tx.commit(render_all(&changes, &ctx), audit).await?;
    Ok(out)
}

pub async fn revoke(c: &Connector, req: &RevokeLease, params: &Value) -> Result<Value> {
    const ACTION: &str = "revoke_database_lease";
    let lease_id = req.lease_id;
    let db = c.db().await?;
    let ctx = context(c, db);
    let conn = db.conn().await?;
    let change = lease::revoke(vec![lease_id], "revoked");
    if req.dry_run {
        return Ok(dry_run_result(ACTION, &[change], &ctx, json!({})));
    }
    let tx = conn.transaction(Lock::None);
    // The lease row (locked) and its revocation, in one round trip: an
    // unknown id revokes nothing and is `not_found`.
    let mut statements = vec![registry::lease_state_for_update(lease_id)];
    statements.extend(render_all(std::slice::from_ref(&change), &ctx));
    let rows = tx.run_rows(&statements).await?;
    let Some(row) = rows[0].first() else {
        return Err(Error::not_found(format!("lease {lease_id} does not exist")));
    };
    let project: String = row.get(0);
    let already: bool = row.get(1);
    let terminated = rows[1].first().map(|r| r.get::<_, i32>(0)).unwrap_or(0);
    let out = json!({"lease_id": lease_id, "revoked": !already, "terminated_sessions": terminated});
    let audit = Audit {
        action: ACTION,
        project: Some(&project),
        lease_id: Some(lease_id),
        changed: !already,
        params,
        outcome: out.clone(),
    };
    tx.commit(Vec::new(), audit).await?;
    Ok(out)
}

/// Revoke, within the current transaction, every active lease of a project
/// whose principal's effective class is now below the lease's class.
pub(crate) async fn revoke_downgraded(
    conn: &Conn,
    ctx: &PlanContext<'_>,
    project: &str,
) -> Result<Vec<Uuid>> {
    let ids = registry::downgraded_leases(conn, project).await?;
    lease::revoke_now(conn, ctx, ids.clone(), "access removed").await?;
    Ok(ids)
}

/// Leases reaped per transaction: keeps each transaction and its lock set small.
const REAP_BATCH: i64 = 500;

pub async fn reap(c: &Connector, req: &ReapLeases, params: &Value) -> Result<Value> {
    const ACTION: &str = "reap_expired_leases";
    let db = c.db().await?;
    let ctx = context(c, db);
    let conn = db.conn().await?;
    if req.dry_run {
        let expired = registry::expired_count(&conn).await?;
        return Ok(
            json!({"dry_run": true, "action": ACTION, "expired": expired, "changes": [], "statements": []}),
        );
    }
    let mut reaped: Vec<String> = Vec::new();
    let mut terminated = 0;
    loop {
        let tx = conn.transaction(Lock::None);
        let batch = registry::expired_leases(&tx, REAP_BATCH).await?;
        terminated += lease::revoke_now(&tx, &ctx, batch.clone(), "expired").await?;
        tx.commit_without_audit().await?;
        let done = (batch.len() as i64) < REAP_BATCH;
        reaped.extend(batch.iter().map(Uuid::to_string));
        if done {
            break;
        }
    }
    let out = json!({"reaped": reaped, "terminated_sessions": terminated});
    audit(
        &conn,
        Audit {
            action: ACTION,
            project: None,
            lease_id: None,
            changed: !reaped.is_empty(),
            params,
            outcome: out.clone(),
        },
    )
    .await?;
    Ok(out)
}
