//! Team and direct grants: `upsert_database_team_access`,
//! `upsert_database_access`, `revoke_database_access`,
//! `revoke_database_team_access`. Every removal or downgrade revokes, in
//! the same transaction, the leases that now exceed their principal's access.

use super::context;
use super::leases::{plan_for, revoke_downgraded};
use crate::apply::{dry_run_result, Audit};
use crate::db::{Conn, Lock};
use crate::error::{Error, Result};
use crate::lease;
use crate::model::Principal;
use crate::names::{AccessClass, ProjectNames};
use crate::plan::{Change, PlanContext};
use crate::registry;
use crate::render::render_all;
use crate::requests::{RevokeAccess, RevokeTeam, UpsertAccess, UpsertTeam};
use crate::Connector;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

fn ids(targets: &[Uuid]) -> Vec<String> {
    targets.iter().map(Uuid::to_string).collect()
}

/// Apply `changes`, then revoke what now exceeds its principal's access.
async fn apply_and_revoke(
    conn: &Conn,
    ctx: &PlanContext<'_>,
    project: &str,
    changes: &[Change],
) -> Result<Vec<Uuid>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    conn.run(&render_all(changes, ctx)).await?;
    revoke_downgraded(conn, ctx, project).await
}

/// The changes that make a team's stored role and members the requested ones.
fn team_changes(
    req: &UpsertTeam,
    class: AccessClass,
    stored: &registry::TeamRecord,
) -> Vec<Change> {
    let (project, team_id) = (req.project.as_str().to_string(), req.team_id.clone());
    let members: BTreeSet<Uuid> = req.members.iter().copied().collect();
    let added: Vec<Uuid> = members.difference(&stored.members).copied().collect();
    let removed: Vec<Uuid> = stored.members.difference(&members).copied().collect();
    let mut changes = Vec::new();
    if stored.platform_role.as_deref() != Some(req.platform_role.as_str()) {
        changes.push(Change::RecordTeam {
            project: project.clone(),
            team_id: team_id.clone(),
            platform_role: req.platform_role.clone(),
            access_class: class,
        });
    }
    if !removed.is_empty() {
        changes.push(Change::RemoveTeamMembers {
            project: project.clone(),
            team_id: team_id.clone(),
            members: removed,
        });
    }
    if !added.is_empty() {
        changes.push(Change::AddTeamMembers {
            project,
            team_id,
            members: added,
        });
    }
    changes
}

pub async fn upsert_team(c: &Connector, req: &UpsertTeam, params: &Value) -> Result<Value> {
    const ACTION: &str = "upsert_database_team_access";
    let names = ProjectNames::new(&req.project);
    let class = AccessClass::of_platform_role(&req.platform_role)?;
    let db = c.db().await?;
    let ctx = context(c, db);
    let conn = db.conn().await?;
    let slug = names.slug.as_str();
    let tx = conn.transaction(Lock::Project(&names.schema));
    registry::require_active(&tx, &names).await?;
    let stored = registry::team_for_update(&tx, slug, &req.team_id).await?;
    let changes = team_changes(req, class, &stored);
    let (added, removed) = changes.iter().fold((vec![], vec![]), |(mut a, mut r), ch| {
        match ch {
            Change::AddTeamMembers { members, .. } => a.extend(members.iter().copied()),
            Change::RemoveTeamMembers { members, .. } => r.extend(members.iter().copied()),
            _ => {}
        }
        (a, r)
    });
    if req.dry_run {
        return Ok(dry_run_result(
            ACTION,
            &changes,
            &ctx,
            json!({"added": added, "removed": removed}),
        ));
    }
    let revoked = apply_and_revoke(&tx, &ctx, slug, &changes).await?;
    let members: BTreeSet<Uuid> = req.members.iter().copied().collect();
    let out = json!({
        "project": slug, "team_id": req.team_id, "platform_role": req.platform_role,
        "access_class": class.as_str(), "members": members, "added": added, "removed": removed,
        "changed": !changes.is_empty(), "revoked_leases": ids(&revoked),
    });
    let audit = Audit {
        action: ACTION,
        project: Some(slug),
        lease_id: None,
        changed: !changes.is_empty(),
        params,
        outcome: out.clone(),
    };
    tx.commit(Vec::new(), audit).await?;
    Ok(out)
}

/// A direct grant's principal: a user or a service, never the project itself.
fn direct_principal(principal: &Principal) -> Result<&Principal> {
    match principal {
        Principal::Project => Err(Error::invalid_at(
            "/principal",
            "the project itself always has service-class access; grant users or services",
        )),
        other => Ok(other),
    }
}

pub async fn upsert_direct(c: &Connector, req: &UpsertAccess, params: &Value) -> Result<Value> {
    const ACTION: &str = "upsert_database_access";
    let names = ProjectNames::new(&req.project);
    let principal = direct_principal(&req.principal)?;
    let class = AccessClass::of_platform_role(&req.platform_role)?;
    let ttl = lease::ttl_if(req.issue_lease, req.lease_ttl_seconds, &c.config)?;
    let db = c.db().await?;
    let ctx = context(c, db);
    let conn = db.conn().await?;
    let slug = names.slug.as_str();
    let tx = conn.transaction(Lock::Project(&names.schema));
    registry::require_active(&tx, &names).await?;
    let stored = registry::grant_for_update(&tx, slug, principal).await?;
    let changed = stored.as_deref() != Some(req.platform_role.as_str());
    let changes: Vec<Change> = changed
        .then(|| Change::RecordGrant {
            project: slug.into(),
            principal: principal.clone(),
            platform_role: req.platform_role.clone(),
            access_class: class,
        })
        .into_iter()
        .collect();
    if req.dry_run {
        return Ok(dry_run_result(
            ACTION,
            &changes,
            &ctx,
            json!({"lease": req.issue_lease.then(|| json!({"would_issue": true}))}),
        ));
    }
    let revoked = apply_and_revoke(&tx, &ctx, slug, &changes).await?;
    let mut out = json!({
        "project": slug, "principal": principal.to_json(), "platform_role": req.platform_role,
        "access_class": class.as_str(), "changed": changed, "revoked_leases": ids(&revoked),
    });
    let mut lease_id = None;
    let mut statements = Vec::new();
    if let Some(ttl) = ttl {
        let planned = plan_for(c, &tx, &names, principal, ttl, req.database).await?;
        // the action's check of the secrets ran alongside the work above
        let secrets = c.secrets().await?;
        lease_id = Some(planned.lease_id);
        out["lease"] = planned.to_json(&secrets, &c.config, &db.server, true);
        statements = render_all(&planned.changes, &ctx);
    }
    let audit = Audit {
        action: ACTION,
        project: Some(slug),
        lease_id,
        changed: changed || lease_id.is_some(),
        params,
        outcome: out.clone(),
    };
    tx.commit(statements, audit).await?;
    Ok(out)
}

/// Shared body of the two revocations: delete the grant row(s), then revoke
/// what now exceeds its access.
async fn revoke_grant(
    c: &Connector,
    names: &ProjectNames,
    dry_run: bool,
    action: &str,
    delete: Change,
    params: &Value,
) -> Result<Value> {
    let db = c.db().await?;
    let ctx = context(c, db);
    let conn = db.conn().await?;
    let slug = names.slug.as_str();
    let tx = conn.transaction(Lock::Project(&names.schema));
    registry::lifecycle(&tx, names, false).await?;
    if dry_run {
        return Ok(dry_run_result(action, &[delete], &ctx, json!({})));
    }
    let statements = render_all(std::slice::from_ref(&delete), &ctx);
    let removed = tx.execute_statement(&statements[0]).await? > 0;
    let revoked = match removed {
        true => revoke_downgraded(&tx, &ctx, slug).await?,
        false => vec![],
    };
    let out = json!({"project": slug, "removed": removed, "revoked_leases": ids(&revoked)});
    let audit = Audit {
        action,
        project: Some(slug),
        lease_id: None,
        changed: removed,
        params,
        outcome: out.clone(),
    };
    tx.commit(Vec::new(), audit).await?;
    Ok(out)
}

pub async fn revoke_direct(c: &Connector, req: &RevokeAccess, params: &Value) -> Result<Value> {
    let names = ProjectNames::new(&req.project);
    let delete = Change::DeleteGrant {
        project: names.slug.as_str().into(),
        principal: direct_principal(&req.principal)?.clone(),
    };
    revoke_grant(
        c,
        &names,
        req.dry_run,
        "revoke_database_access",
        delete,
        params,
    )
    .await
}

pub async fn revoke_team(c: &Connector, req: &RevokeTeam, params: &Value) -> Result<Value> {
    let names = ProjectNames::new(&req.project);
    let delete = Change::DeleteTeam {
        project: names.slug.as_str().into(),
        team_id: req.team_id.clone(),
    };
    revoke_grant(
        c,
        &names,
        req.dry_run,
        "revoke_database_team_access",
        delete,
        params,
    )
    .await
}
