//! `remove_database_project`: revoke every lease, unlist the schema, then
//! archive (data kept, access blocked) or drop schema and roles.

use super::context;
use crate::apply::{dry_run_result, Audit};
use crate::db::Lock;
use crate::domain::Lifecycle;
use crate::error::Result;
use crate::inspect::project_state;
use crate::lease;
use crate::names::ProjectNames;
use crate::plan::{borrow_owner, Change};
use crate::registry;
use crate::render::render_all;
use crate::requests::RemoveProject;
use crate::Connector;
use serde_json::{json, Value};

/// The plan after leases are gone: unlist first, then archive (no class
/// reaches the schema any more) or drop schema and roles.
fn plan_removal(
    names: &ProjectNames,
    drop_data: bool,
    state: &crate::state::ProjectState,
    runtime: &str,
) -> Vec<Change> {
    // The registry row first (archived: out of every served list), then
    // the list recomputed without it.
    let pool = state
        .registry
        .as_ref()
        .map_or(crate::names::CENTRAL_POOL, |r| r.pool.as_str());
    let mut changes = vec![Change::ApplyExposure {
        pools: vec![pool.to_string()],
    }];
    if drop_data {
        changes.push(Change::DropProject {
            slug: names.slug.as_str().into(),
        });
        return changes;
    }
    // No API login role switches to the class roles any more, the service
    // class stops acting as the owner, and no class keeps USAGE.
    let class_roles = [&names.service_role, &names.authenticated, &names.anon];
    let mut api_memberships: Vec<(&str, &str)> = state
        .memberships
        .iter()
        .filter(|m| class_roles.contains(&&m.role) && m.member != names.owner)
        .filter(|m| !m.member.starts_with("proj_") || m.member == names.authenticator)
        .map(|m| (m.role.as_str(), m.member.as_str()))
        .collect();
    api_memberships.sort_unstable();
    api_memberships.dedup();
    for (role, member) in api_memberships {
        changes.push(Change::RevokeRole {
            role: role.into(),
            member: member.into(),
        });
    }
    if state
        .membership(&names.owner, &names.service_role)
        .is_some()
    {
        changes.push(Change::RevokeRole {
            role: names.owner.clone(),
            member: names.service_role.clone(),
        });
    }
    let at = changes.len();
    if let Some(schema) = &state.schema {
        for role in class_roles {
            if schema.grants.iter().any(|g| &g.grantee == role) {
                changes.push(Change::RevokeSchema {
                    schema: names.schema.clone(),
                    grantee: role.clone(),
                });
            }
        }
    }
    borrow_owner(
        &mut changes,
        at,
        &names.owner,
        runtime,
        state.holds_owner(&names.owner, runtime),
    );
    changes
}

pub async fn remove(c: &Connector, req: &RemoveProject, params: &Value) -> Result<Value> {
    const ACTION: &str = "remove_database_project";
    let names = ProjectNames::new(&req.project);
    let db = c.db().await?;
    let ctx = context(c, db);
    let conn = db.conn().await?;
    let slug = names.slug.as_str();
    let tx = conn.transaction(Lock::Project(&names.schema));
    let state = project_state(&tx, &db.server, &names, None).await?;
    let Some(row) = &state.registry else {
        return Err(registry::unknown_project(&names));
    };
    // the registry row first: archived, the project is out of every list
    let mut changes = vec![Change::ArchiveProject { slug: slug.into() }];
    changes.extend(plan_removal(
        &names,
        req.drop_data,
        &state,
        &db.server.runtime_role,
    ));
    if req.drop_data {
        changes.push(Change::ForgetProject { slug: slug.into() });
    }
    if req.dry_run {
        return Ok(dry_run_result(
            ACTION,
            &changes,
            &ctx,
            json!({"active_leases": state.active_leases}),
        ));
    }
    let already_archived = !req.drop_data && row.state == Lifecycle::Archived;
    let leases = registry::project_leases(&tx, slug).await?;
    let terminated = lease::revoke_now(&tx, &ctx, leases.clone(), "project removed").await?;
    let statements = match already_archived {
        true => Vec::new(),
        false => render_all(&changes, &ctx),
    };
    let out = json!({
        "project": slug,
        "schema": names.schema,
        "state": if req.drop_data { "dropped" } else { "archived" },
        "revoked_leases": leases.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "terminated_sessions": terminated,
    });
    let audit = Audit {
        action: ACTION,
        project: Some(slug),
        lease_id: None,
        changed: !already_archived || !leases.is_empty(),
        params,
        outcome: out.clone(),
    };
    tx.commit(statements, audit).await?;
    Ok(out)
}
