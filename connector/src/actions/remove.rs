//! `remove_database_project`: revoke every lease, unlist the schema, then
//! archive (data kept, access blocked) or drop schema and roles.

use super::{audit, dry_run, in_transaction, project_names};
use crate::apply::{dry_run_result, Audit};
use crate::db::Lock;
use crate::domain::Lifecycle;
use crate::error::{Error, Result};
use crate::inspect::project_state;
use crate::lease;
use crate::names::ProjectNames;
use crate::plan::{borrow_owner, render_all, Change, PlanContext};
use crate::sql::{Param, Statement};
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

pub async fn remove(c: &Connector, p: &Value) -> Result<Value> {
    const ACTION: &str = "remove_database_project";
    let names = project_names(p)?;
    let drop_data = p.get("drop_data").and_then(Value::as_bool).unwrap_or(false);
    let db = c.db().await?;
    let ctx = PlanContext {
        server: &db.server,
        exposure: &c.config.exposure,
        pools: &c.config.api.pools,
    };
    let conn = db.conn().await?;
    conn.begin(Lock::Project(&names.schema)).await?;
    let slug = names.slug.as_str();
    let body = async {
        let state = project_state(&conn, &db.server, &names, None).await?;
        let Some(row) = &state.registry else {
            return Err(Error::not_found(format!(
                "project {slug:?} is not provisioned"
            )));
        };
        let changes = plan_removal(&names, drop_data, &state, &db.server.runtime_role);
        let mut statements = vec![Statement::with(
            "update supabase_connector.projects set state = 'archived', updated_at = now() where slug = $1",
            vec![Param::Text(slug.into())],
        )];
        statements.extend(render_all(&changes, &ctx));
        if drop_data {
            statements.push(Statement::with(
                "delete from supabase_connector.projects where slug = $1",
                vec![Param::Text(slug.into())],
            ));
        }
        if dry_run(p) {
            return Ok(dry_run_result(
                ACTION,
                &changes,
                &statements,
                json!({"active_leases": state.active_leases}),
            ));
        }
        let already_archived = !drop_data && row.state == Lifecycle::Archived;
        let targets = super::leases::project_leases(&conn, slug).await?;
        let terminated = lease::revoke(&conn, targets.clone(), "project removed").await?;
        if !already_archived {
            conn.run(&statements).await?;
        }
        let out = json!({
            "project": slug,
            "schema": names.schema,
            "state": if drop_data { "dropped" } else { "archived" },
            "revoked_leases": targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "terminated_sessions": terminated,
        });
        audit(
            &conn,
            Audit {
                action: ACTION,
                project: Some(slug),
                lease_id: None,
                changed: !already_archived || !targets.is_empty(),
                statements: conn.stats.statements(),
                params: p,
                outcome: out.clone(),
            },
        )
        .await?;
        Ok(out)
    };
    in_transaction(&conn, body).await
}
