//! Team and direct grants: `upsert_database_team_access`,
//! `upsert_database_access`, `revoke_database_access`,
//! `revoke_database_team_access`. Every removal or downgrade revokes, in
//! the same transaction, the leases that now exceed their principal's access.

use super::leases::{plan_issue_in_tx, revoke_downgraded};
use super::{audit, dry_run, in_transaction, project_names, project_record, str_param};
use crate::apply::{dry_run_result, Audit};
use crate::db::Lock;
use crate::error::{Error, Result};
use crate::lease;
use crate::model::Principal;
use crate::names::{AccessClass, ProjectNames};
use crate::sql::{Param, Statement};
use crate::Connector;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;

fn ids(targets: &[Uuid]) -> Vec<String> {
    targets.iter().map(Uuid::to_string).collect()
}

/// Refuse to touch an archived project's grants (it has no live roles to lease).
async fn active_project(conn: &crate::db::Conn, names: &ProjectNames) -> Result<()> {
    let record = project_record(conn, names, false).await?;
    if record.state != "active" {
        return Err(Error::conflict(format!(
            "project {:?} is archived: upsert it first",
            names.slug.as_str()
        )));
    }
    Ok(())
}

pub async fn upsert_team(c: &Connector, p: &Value) -> Result<Value> {
    const ACTION: &str = "upsert_database_team_access";
    let names = project_names(p)?;
    let team_id = str_param(p, "team_id")?.to_string();
    let platform_role = str_param(p, "platform_role")?.to_string();
    let class = AccessClass::of_platform_role(&platform_role)?;
    let members: BTreeSet<Uuid> = p["members"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| {
            m.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| Error::invalid_at(&format!("/members/{i}"), "not a UUID"))
        })
        .collect::<Result<_>>()?;
    let db = c.db().await?;
    let conn = db.conn().await?;
    conn.begin(Lock::Project(&names.schema)).await?;
    let slug = names.slug.as_str();
    let body = async {
        active_project(&conn, &names).await?;
        let row = conn
            .query_opt(
                "select t.platform_role, array(select m.user_id from supabase_connector.team_members m
                         where m.project = t.project and m.team_id = t.team_id)
                 from supabase_connector.teams t where t.project = $1 and t.team_id = $2 for update",
                &[&slug, &team_id],
            )
            .await?;
        let (stored_role, stored): (Option<String>, BTreeSet<Uuid>) = match &row {
            Some(r) => (
                Some(r.get(0)),
                r.get::<_, Vec<Uuid>>(1).into_iter().collect(),
            ),
            None => (None, BTreeSet::new()),
        };
        let added: Vec<Uuid> = members.difference(&stored).copied().collect();
        let removed: Vec<Uuid> = stored.difference(&members).copied().collect();
        let role_changed = stored_role.as_deref() != Some(platform_role.as_str());
        let mut statements = Vec::new();
        if role_changed {
            statements.push(Statement::with(
                "insert into supabase_connector.teams (project, team_id, platform_role, access_class) values ($1, $2, $3, $4)
                 on conflict (project, team_id) do update set platform_role = excluded.platform_role,
                 access_class = excluded.access_class, updated_at = now()",
                vec![Param::Text(slug.into()), Param::Text(team_id.clone()), Param::Text(platform_role.clone()), Param::Text(class.as_str().into())],
            ));
        }
        if !removed.is_empty() {
            statements.push(Statement::with(
                "delete from supabase_connector.team_members where project = $1 and team_id = $2 and user_id = any($3)",
                vec![Param::Text(slug.into()), Param::Text(team_id.clone()), Param::UuidArray(removed.clone())],
            ));
        }
        if !added.is_empty() {
            statements.push(Statement::with(
                "insert into supabase_connector.team_members (project, team_id, user_id) select $1, $2, unnest($3::uuid[])",
                vec![Param::Text(slug.into()), Param::Text(team_id.clone()), Param::UuidArray(added.clone())],
            ));
        }
        let changed = !statements.is_empty();
        if dry_run(p) {
            return Ok(dry_run_result(
                ACTION,
                &[],
                &statements,
                json!({"added": added, "removed": removed}),
            ));
        }
        conn.run(&statements).await?;
        let revoked = if changed {
            revoke_downgraded(&conn, slug).await?
        } else {
            vec![]
        };
        let out = json!({
            "project": slug, "team_id": team_id, "platform_role": platform_role, "access_class": class.as_str(),
            "members": members, "added": added, "removed": removed, "changed": changed, "revoked_leases": ids(&revoked),
        });
        audit(
            &conn,
            Audit {
                action: ACTION,
                project: Some(slug),
                lease_id: None,
                changed,
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

fn direct_principal(p: &Value) -> Result<Principal> {
    match Principal::from_json(&p["principal"])? {
        Principal::Project => Err(Error::invalid_at(
            "/principal",
            "the project itself always has service-class access; grant users or services",
        )),
        other => Ok(other),
    }
}

pub async fn upsert_direct(c: &Connector, p: &Value) -> Result<Value> {
    const ACTION: &str = "upsert_database_access";
    let names = project_names(p)?;
    let principal = direct_principal(p)?;
    let platform_role = str_param(p, "platform_role")?.to_string();
    let class = AccessClass::of_platform_role(&platform_role)?;
    let issue_lease = p
        .get("issue_lease")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let database = p.get("database").and_then(Value::as_bool).unwrap_or(true);
    let ttl = if issue_lease {
        Some(lease::ttl(
            p.get("lease_ttl_seconds").and_then(Value::as_u64),
            &c.config,
            "/lease_ttl_seconds",
        )?)
    } else {
        None
    };
    let db = c.db().await?;
    let conn = db.conn().await?;
    conn.begin(Lock::Project(&names.schema)).await?;
    let slug = names.slug.as_str();
    let body = async {
        active_project(&conn, &names).await?;
        let stored: Option<String> = conn
            .query_opt(
                "select platform_role from supabase_connector.grants where project = $1 and principal_type = $2 and principal_id = $3 for update",
                &[&slug, &principal.kind(), &principal.id()],
            )
            .await?
            .map(|r| r.get(0));
        let changed = stored.as_deref() != Some(platform_role.as_str());
        let statements = if changed {
            vec![Statement::with(
                "insert into supabase_connector.grants (project, principal_type, principal_id, platform_role, access_class)
                 values ($1, $2, $3, $4, $5)
                 on conflict (project, principal_type, principal_id) do update set platform_role = excluded.platform_role,
                 access_class = excluded.access_class, updated_at = now()",
                vec![Param::Text(slug.into()), Param::Text(principal.kind().into()), Param::Text(principal.id()),
                     Param::Text(platform_role.clone()), Param::Text(class.as_str().into())],
            )]
        } else {
            vec![]
        };
        if dry_run(p) {
            return Ok(dry_run_result(
                ACTION,
                &[],
                &statements,
                json!({"lease": issue_lease.then(|| json!({"would_issue": true}))}),
            ));
        }
        conn.run(&statements).await?;
        let revoked = if changed {
            revoke_downgraded(&conn, slug).await?
        } else {
            vec![]
        };
        let mut out = json!({
            "project": slug, "principal": principal.to_json(), "platform_role": platform_role,
            "access_class": class.as_str(), "changed": changed, "revoked_leases": ids(&revoked),
        });
        let mut lease_id = None;
        let mut statements = Vec::new();
        if let Some(ttl) = ttl {
            let planned = plan_issue_in_tx(c, &conn, &names, &principal, ttl, database).await?;
            // the action's check of the secrets ran alongside the work above
            let secrets = c.secrets().await?;
            lease_id = Some(planned.lease_id);
            out["lease"] = planned.to_json(&secrets, &c.config, &db.server, true);
            statements = planned.statements;
        }
        statements.push(
            Audit {
                action: ACTION,
                project: Some(slug),
                lease_id,
                changed: changed || lease_id.is_some(),
                statements: conn.stats.statements() + statements.len() as u32 + 1,
                params: p,
                outcome: out.clone(),
            }
            .statement(),
        );
        conn.commit_after(&statements).await?;
        Ok(out)
    };
    in_transaction(&conn, body).await
}

/// Shared body of the two revocations: delete the grant row(s), then revoke
/// what now exceeds its access.
async fn revoke_grant(c: &Connector, p: &Value, action: &str, delete: Statement) -> Result<Value> {
    let names = project_names(p)?;
    let db = c.db().await?;
    let conn = db.conn().await?;
    conn.begin(Lock::Project(&names.schema)).await?;
    let slug = names.slug.as_str();
    let body = async {
        project_record(&conn, &names, false).await?;
        if dry_run(p) {
            return Ok(dry_run_result(
                action,
                &[],
                std::slice::from_ref(&delete),
                json!({}),
            ));
        }
        let removed = conn.execute_statement(&delete).await? > 0;
        let revoked = if removed {
            revoke_downgraded(&conn, slug).await?
        } else {
            vec![]
        };
        let out = json!({"project": slug, "removed": removed, "revoked_leases": ids(&revoked)});
        audit(
            &conn,
            Audit {
                action,
                project: Some(slug),
                lease_id: None,
                changed: removed,
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

pub async fn revoke_direct(c: &Connector, p: &Value) -> Result<Value> {
    let principal = direct_principal(p)?;
    let slug = str_param(p, "project")?.to_string();
    let delete = Statement::with(
        "delete from supabase_connector.grants where project = $1 and principal_type = $2 and principal_id = $3",
        vec![Param::Text(slug), Param::Text(principal.kind().into()), Param::Text(principal.id())],
    );
    revoke_grant(c, p, "revoke_database_access", delete).await
}

pub async fn revoke_team(c: &Connector, p: &Value) -> Result<Value> {
    let slug = str_param(p, "project")?.to_string();
    let team_id = str_param(p, "team_id")?.to_string();
    let delete = Statement::with(
        "delete from supabase_connector.teams where project = $1 and team_id = $2",
        vec![Param::Text(slug), Param::Text(team_id)],
    );
    revoke_grant(c, p, "revoke_database_team_access", delete).await
}
