//! `remove_database_project`: revoke every lease, unlist the schema, then
//! archive (data kept, access blocked) or drop schema and roles.

use super::{audit, dry_run, in_transaction, project_names};
use crate::apply::{dry_run_result, Audit};
use crate::db::{Lock, Param, Statement};
use crate::error::{Error, Result};
use crate::inspect::project_state;
use crate::lease::{self, revoke_targets, REVOKE_TARGETS_SQL};
use crate::names::ProjectNames;
use crate::plan::{borrow_owner, render_all, Change, PlanContext};
use crate::Connector;
use serde_json::{json, Value};

/// The plan after leases are gone: unlist first, then archive or drop.
fn plan_removal(
    names: &ProjectNames,
    drop_data: bool,
    state: &crate::inspect::ProjectState,
    runtime: &str,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let holds = state.runtime_inherits_owner && state.runtime_can_set_owner;
    if drop_data {
        // Unlisted before dropped: the registry row goes first, the list is
        // recomputed without it, then the schema and roles go.
        changes.push(Change::ApplyExposure);
        if !holds && state.role(&names.owner).is_some() {
            // DROP SCHEMA and DROP OWNED act as the owner; the membership
            // goes with the role, so there is nothing to give back.
            changes.push(Change::BorrowOwner {
                owner: names.owner.clone(),
                runtime: runtime.into(),
            });
        }
        if state.schema.is_some() {
            changes.push(Change::DropSchema {
                schema: names.schema.clone(),
            });
        }
        let existing: Vec<String> = [
            &names.owner,
            &names.service_role,
            &names.authenticated,
            &names.anon,
            &names.authenticator,
        ]
        .into_iter()
        .filter(|r| state.role(r).is_some())
        .cloned()
        .collect();
        for role in &existing {
            if role != &names.owner {
                // DROP OWNED needs the runtime role to hold each role's privileges
                changes.push(Change::GrantRole {
                    role: role.clone(),
                    member: runtime.into(),
                    set: false,
                });
            }
        }
        if !existing.is_empty() {
            changes.push(Change::DropRoles { roles: existing });
        }
    } else {
        changes.push(Change::ApplyExposure);
        if state
            .membership(&names.owner, &names.service_role)
            .is_some()
        {
            changes.push(Change::RevokeRole {
                role: names.owner.clone(),
                member: names.service_role.clone(),
            });
        }
        if state.schema.is_some() {
            for role in [&names.service_role, &names.authenticated, &names.anon] {
                changes.push(Change::RevokeSchema {
                    schema: names.schema.clone(),
                    grantee: role.clone(),
                });
            }
        }
        borrow_owner(&mut changes, 0, &names.owner, runtime, holds);
    }
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
    };
    let conn = db.conn().await?;
    conn.begin(Lock::Project(&names.schema)).await?;
    let slug = names.slug.as_str();
    let body = async {
        let state = project_state(&conn, &db.server, &names).await?;
        let Some(row) = &state.registry else {
            return Err(Error::not_found(format!(
                "project {slug:?} is not provisioned"
            )));
        };
        let changes = plan_removal(&names, drop_data, &state, &db.server.runtime_role);
        let registry = if drop_data {
            Statement::with(
                "delete from supabase_connector.projects where slug = $1",
                vec![Param::Text(slug.into())],
            )
        } else {
            Statement::with(
                "update supabase_connector.projects set state = 'archived', updated_at = now() where slug = $1",
                vec![Param::Text(slug.into())],
            )
        };
        let mut statements = vec![registry];
        statements.extend(render_all(&changes, &ctx));
        if dry_run(p) {
            return Ok(dry_run_result(
                ACTION,
                &changes,
                &statements,
                json!({"active_leases": state.active_leases}),
            ));
        }
        let already_archived = !drop_data && row.state == "archived";
        let rows = conn
            .query(&format!("{REVOKE_TARGETS_SQL} where l.project = $1 and l.revoked_at is null order by l.lease_id for update of l"), &[&slug])
            .await?;
        let targets = revoke_targets(&rows);
        let terminated = lease::revoke(&conn, &db.server, &targets, "project removed").await?;
        if !already_archived {
            conn.run(&statements).await?;
        }
        let out = json!({
            "project": slug,
            "schema": names.schema,
            "state": if drop_data { "dropped" } else { "archived" },
            "revoked_leases": targets.iter().map(|t| t.lease_id.to_string()).collect::<Vec<_>>(),
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
