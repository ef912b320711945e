//! `issue_database_lease`, `renew_database_lease`, `revoke_database_lease`,
//! `reap_expired_leases`.

use super::{audit, dry_run, in_transaction, project_names, str_param};
use crate::apply::Audit;
use crate::db::{Conn, Lock};
use crate::domain::Isolation;
use crate::error::{Error, Result};
use crate::lease::{self, lease_json, LeaseRequest, LeaseView};
use crate::model::Principal;
use crate::names::{lease_login_role, AccessClass, ProjectNames};
use crate::Connector;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// A principal's effective access on a project: the highest of its direct
/// grant and its teams' grants, with the platform role that gives it.
pub(crate) async fn effective_access(
    conn: &Conn,
    names: &ProjectNames,
    principal: &Principal,
) -> Result<(Api, Option<(AccessClass, String)>)> {
    let user: Option<Uuid> = match principal {
        Principal::User(u) => Some(*u),
        _ => None,
    };
    let row = conn
        .query_opt(
            "select p.state, p.isolation, p.pool, coalesce((select json_agg(json_build_object('platform_role', e.platform_role, 'access_class', e.access_class))
               from (select g.platform_role, g.access_class from supabase_connector.grants g
                     where g.project = p.slug and g.principal_type = $2 and g.principal_id = $3
                     union all
                     select t.platform_role, t.access_class from supabase_connector.teams t
                     join supabase_connector.team_members m on m.project = t.project and m.team_id = t.team_id
                     where t.project = p.slug and m.user_id = $4) e), '[]')
             from supabase_connector.projects p where p.slug = $1",
            &[&names.slug.as_str(), &principal.kind(), &principal.id(), &user],
        )
        .await?
        .ok_or_else(|| Error::not_found(format!("project {:?} is not provisioned", names.slug.as_str())))?;
    let state: String = row.get(0);
    if state != "active" {
        return Err(Error::conflict(format!(
            "project {:?} is archived: upsert it to restore access",
            names.slug.as_str()
        )));
    }
    let api = Api {
        isolation: Isolation::parse(row.get(1))?,
        pool: row.get(2),
    };
    if *principal == Principal::Project {
        return Ok((
            api,
            Some((AccessClass::ServiceRole, "project_owner".into())),
        ));
    }
    let grants: Value = row.get(3);
    let best = grants
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| {
            let class = AccessClass::parse(g["access_class"].as_str()?)?;
            Some((class, g["platform_role"].as_str()?.to_string()))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
    Ok((api, best))
}

/// Which API serves a project: its isolation and pool.
pub(crate) struct Api {
    pub isolation: Isolation,
    pub pool: String,
}

/// Issue a lease inside an open transaction; returns its JSON. Its
/// statements are sent with the rest of the transaction (`finish`).
pub(crate) async fn plan_issue_in_tx(
    c: &Connector,
    conn: &Conn,
    names: &ProjectNames,
    principal: &Principal,
    ttl: u64,
    database: bool,
) -> Result<lease::PlannedLease> {
    let (api, access) = effective_access(conn, names, principal).await?;
    let Some((class, platform_role)) = access else {
        return Err(Error::forbidden(format!(
            "{} {} has no access to project {:?}",
            principal.kind(),
            principal.id(),
            names.slug.as_str()
        )));
    };
    let request = LeaseRequest {
        names: names.clone(),
        principal: principal.clone(),
        platform_role,
        class,
        ttl_seconds: ttl,
        database,
        api_url: lease::api_url(&c.config, names, api.isolation, &api.pool),
    };
    Ok(lease::plan_issue(request, Utc::now()))
}

pub async fn issue(c: &Connector, p: &Value) -> Result<Value> {
    let names = project_names(p)?;
    let principal = Principal::from_json(&p["principal"])?;
    let ttl = lease::ttl(
        p.get("lease_ttl_seconds").and_then(Value::as_u64),
        &c.config,
        "/lease_ttl_seconds",
    )?;
    let database = p.get("database").and_then(Value::as_bool).unwrap_or(true);
    let db = c.db().await?;
    let conn = db.conn().await?;
    if dry_run(p) {
        let (_, access) = effective_access(&conn, &names, &principal).await?;
        return Ok(json!({"dry_run": true, "action": "issue_database_lease",
                         "access_class": access.map(|a| a.0.as_str()), "statements": []}));
    }
    conn.begin(Lock::ProjectShared(&names.schema)).await?;
    let body = async {
        let planned = plan_issue_in_tx(c, &conn, &names, &principal, ttl, database).await?;
        // Awaited only now: the action's check of the secrets in OpenBao ran
        // alongside the database work (an unreachable OpenBao rolls it back).
        let secrets = c.secrets().await?;
        let out = json!({"lease": planned.to_json(&secrets, &c.config, &db.server, true)});
        let mut statements = planned.statements.clone();
        statements.push(
            Audit {
                action: "issue_database_lease",
                project: Some(names.slug.as_str()),
                lease_id: Some(planned.lease_id),
                changed: true,
                statements: conn.stats.statements() + statements.len() as u32,
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

fn lease_id_param(p: &Value) -> Result<Uuid> {
    Uuid::parse_str(str_param(p, "lease_id")?)
        .map_err(|_| Error::invalid_at("/lease_id", "not a UUID"))
}

pub async fn renew(c: &Connector, p: &Value) -> Result<Value> {
    let lease_id = lease_id_param(p)?;
    let ttl = lease::ttl(
        p.get("ttl_seconds").and_then(Value::as_u64),
        &c.config,
        "/ttl_seconds",
    )?;
    let db = c.db().await?;
    let conn = db.conn().await?;
    conn.begin(Lock::None).await?;
    let body = async {
        let row = conn
            .query_opt(
                "select l.project, l.principal_type, l.principal_id, l.platform_role, l.access_class,
                        l.database and l.role_name is not null, l.issued_at, l.expires_at, l.revoked_at, p.isolation, p.pool
                 from supabase_connector.leases l join supabase_connector.projects p on p.slug = l.project
                 where l.lease_id = $1 for update of l",
                &[&lease_id],
            )
            .await?
            .ok_or_else(|| Error::not_found(format!("lease {lease_id} does not exist")))?;
        let slug: String = row.get(0);
        let names = ProjectNames::new(&crate::names::Slug::parse(&slug)?);
        let principal = Principal::from_row(row.get(1), row.get(2));
        let platform_role: String = row.get(3);
        let class = AccessClass::parse(row.get(4))
            .ok_or_else(|| Error::internal("bad access class in registry"))?;
        let database: bool = row.get(5);
        let issued_at: DateTime<Utc> = row.get(6);
        let expires_at: DateTime<Utc> = row.get(7);
        let revoked_at: Option<DateTime<Utc>> = row.get(8);
        let now = Utc::now();
        if revoked_at.is_some() {
            return Err(Error::conflict(format!(
                "lease {lease_id} was revoked; issue a new one"
            )));
        }
        if expires_at <= now {
            return Err(Error::conflict(format!(
                "lease {lease_id} expired at {expires_at}; issue a new one"
            )));
        }
        let max_expires =
            issued_at + chrono::Duration::seconds(c.config.lease.max_lifetime_seconds as i64);
        if max_expires <= now || expires_at >= max_expires {
            return Err(Error::conflict(format!(
                "lease {lease_id} reached its maximum lifetime ({} s, lease.max_lifetime_seconds); issue a new one",
                c.config.lease.max_lifetime_seconds
            )));
        }
        let new_expires = std::cmp::min(now + chrono::Duration::seconds(ttl as i64), max_expires);
        let (mut statements, password) = lease::plan_renew(lease_id, database, new_expires);
        let isolation = Isolation::parse(row.get(9))?;
        let pool: String = row.get(10);
        let api_url = lease::api_url(&c.config, &names, isolation, &pool);
        let login_role = lease_login_role(lease_id);
        // the action's check of the secrets ran alongside the query above
        let secrets = c.secrets().await?;
        let lease = lease_json(&LeaseView {
            lease_id,
            names: &names,
            principal: &principal,
            platform_role: &platform_role,
            class,
            issued_at: now,
            expires_at: new_expires,
            login: password.as_ref().map(|pw| (login_role.as_str(), pw)),
            api_url: api_url.as_deref(),
            renewable: new_expires < max_expires,
            secrets: &secrets,
            config: &c.config,
            server: &db.server,
        });
        let out = json!({"lease": lease});
        statements.push(
            Audit {
                action: "renew_database_lease",
                project: Some(&slug),
                lease_id: Some(lease_id),
                changed: true,
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

pub async fn revoke(c: &Connector, p: &Value) -> Result<Value> {
    let lease_id = lease_id_param(p)?;
    let db = c.db().await?;
    let conn = db.conn().await?;
    conn.begin(Lock::None).await?;
    let body = async {
        // The lease row (locked) and its revocation, in one round trip: an
        // unknown id revokes nothing and is `not_found`.
        let rows = conn
            .run_rows(&[
                crate::db::Statement::with(
                    "select project, revoked_at is not null from supabase_connector.leases where lease_id = $1 for update",
                    vec![crate::db::Param::Uuid(lease_id)],
                ),
                lease::revoke_statement(vec![lease_id], "revoked"),
            ])
            .await?;
        let Some(row) = rows[0].first() else {
            return Err(Error::not_found(format!("lease {lease_id} does not exist")));
        };
        let project: String = row.get(0);
        let already: bool = row.get(1);
        let terminated = rows[1].first().map(|r| r.get::<_, i32>(0)).unwrap_or(0);
        let out =
            json!({"lease_id": lease_id, "revoked": !already, "terminated_sessions": terminated});
        conn.commit_after(&[Audit {
            action: "revoke_database_lease",
            project: Some(&project),
            lease_id: Some(lease_id),
            changed: !already,
            statements: conn.stats.statements() + 1,
            params: p,
            outcome: out.clone(),
        }
        .statement()])
            .await?;
        Ok(out)
    };
    in_transaction(&conn, body).await
}

/// Revoke, within the current transaction, every active lease of a project
/// whose principal's effective class is now below the lease's class.
pub(crate) async fn revoke_downgraded(conn: &Conn, project: &str) -> Result<Vec<Uuid>> {
    let rows = conn
        .query(
            "select l.lease_id from supabase_connector.leases l
             where l.project = $1 and l.revoked_at is null
               and not (l.principal_type = 'service' and l.principal_id = 'project')
               and coalesce((
                 select max(array_position(array['anon', 'authenticated', 'service_role'], e.access_class))
                 from (select g.access_class from supabase_connector.grants g
                       where g.project = l.project and g.principal_type = l.principal_type and g.principal_id = l.principal_id
                       union all
                       select t.access_class from supabase_connector.teams t
                       join supabase_connector.team_members m on m.project = t.project and m.team_id = t.team_id
                       where t.project = l.project and l.principal_type = 'user' and m.user_id::text = l.principal_id) e), 0)
                   < array_position(array['anon', 'authenticated', 'service_role'], l.access_class)
             order by l.lease_id for update of l",
            &[&project],
        )
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    lease::revoke(conn, ids.clone(), "access removed").await?;
    Ok(ids)
}

/// Every unrevoked lease of a project, locked: the ones a removal or a
/// change of its API revokes.
pub(crate) async fn project_leases(conn: &Conn, project: &str) -> Result<Vec<Uuid>> {
    let rows = conn
        .query(
            "select lease_id from supabase_connector.leases where project = $1 and revoked_at is null
             order by lease_id for update",
            &[&project],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Leases reaped per transaction: keeps each transaction and its lock set small.
const REAP_BATCH: i64 = 500;

pub async fn reap(c: &Connector, p: &Value) -> Result<Value> {
    let db = c.db().await?;
    let conn = db.conn().await?;
    if dry_run(p) {
        let n: i64 = conn
            .query_one("select count(*) from supabase_connector.leases where revoked_at is null and expires_at <= now()", &[])
            .await?
            .get(0);
        return Ok(
            json!({"dry_run": true, "action": "reap_expired_leases", "expired": n, "statements": []}),
        );
    }
    let mut reaped: Vec<String> = Vec::new();
    let mut terminated = 0;
    loop {
        conn.begin(Lock::None).await?;
        let body = async {
            let rows = conn
                .query(
                    "select lease_id from supabase_connector.leases where revoked_at is null and expires_at <= now()
                     order by lease_id limit $1 for update skip locked",
                    &[&REAP_BATCH],
                )
                .await?;
            let targets: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
            let t = lease::revoke(&conn, targets.clone(), "expired").await?;
            Ok((targets, t))
        };
        let (targets, t) = in_transaction(&conn, body).await?;
        terminated += t;
        let done = (targets.len() as i64) < REAP_BATCH;
        reaped.extend(targets.into_iter().map(|t| t.to_string()));
        if done {
            break;
        }
    }
    let out = json!({"reaped": reaped, "terminated_sessions": terminated});
    audit(
        &conn,
        Audit {
            action: "reap_expired_leases",
            project: None,
            lease_id: None,
            changed: !reaped.is_empty(),
            statements: conn.stats.statements(),
            params: p,
            outcome: out.clone(),
        },
    )
    .await?;
    Ok(out)
}
