//! `upsert_database_project_access` and `describe_database_project`.

use super::{audit, dry_run, in_transaction, project_names};
use crate::apply::{dry_run_result, Audit};
use crate::db::Lock;
use crate::error::{Error, Result};
use crate::inspect::project_state;
use crate::lease::{self, LeaseRequest};
use crate::lease::{revoke_targets, REVOKE_TARGETS_SQL};
use crate::model::{DesiredProject, Principal};
use crate::names::{AccessClass, ProjectNames};
use crate::plan::{diff_project, render_all, Change, PlanContext};
use crate::Connector;
use serde_json::{json, Value};

const ACTION: &str = "upsert_database_project_access";

/// What a project's isolation mode does and does not isolate
/// (`docs/security.md`), stated wherever the mode shows.
pub fn trust_boundary(isolation: &str) -> &'static str {
    if isolation == "isolated" {
        "isolated: served by the project's own PostgREST and authenticator; code the project installs reaches nothing outside it"
    } else {
        "shared: no credential of another project reaches this one, but code a project installs in its own schema runs through the \
         central authenticator, which can switch to every project's roles; use tenant_code=deny or isolation=isolated for untrusted code"
    }
}

fn roles_json(n: &ProjectNames) -> Value {
    json!({"owner": n.owner, "service_role": n.service_role, "authenticated": n.authenticated, "anon": n.anon})
}

/// Create or bring a project in line, and (by default) issue its service-class lease.
pub async fn upsert(c: &Connector, p: &Value) -> Result<Value> {
    let names = project_names(p)?;
    let issue_lease = p
        .get("issue_lease")
        .and_then(Value::as_bool)
        .unwrap_or(true);
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
    // Secrets first: an unreachable OpenBao must fail before anything changes.
    let secrets = match (issue_lease, dry_run(p)) {
        (true, false) => Some(c.secrets().await?),
        _ => None,
    };
    let ctx = PlanContext {
        server: &db.server,
        exposure: &c.config.exposure,
    };
    let conn = db.conn().await?;

    // Optimistic read: a no-op re-upsert costs one query and the audit row.
    let state = project_state(&conn, &db.server, &names).await?;
    let desired = DesiredProject::from_params(names.clone(), p, state.registry.as_ref(), &c.config);
    let changes = diff_project(&state, &desired, &ctx)?;
    if dry_run(p) {
        let statements = render_all(&changes, &ctx);
        let extra = json!({"project": names.slug.as_str(), "lease": issue_lease.then(|| json!({"access_class": "service_role", "would_issue": true}))});
        return Ok(dry_run_result(ACTION, &changes, &statements, extra));
    }
    let summary = |created: bool, changed: bool, statements: u32| {
        let mut out = json!({
            "project": names.slug.as_str(),
            "schema": names.schema,
            "state": "active",
            "created": created,
            "changed": changed,
            "statements": statements,
            "isolation": desired.isolation,
            "tenant_code": desired.tenant_code,
            "exposed": desired.exposed,
            "exposure": {"mode": c.config.exposure.mode, "listed": desired.listed_centrally()},
            "trust_boundary": trust_boundary(&desired.isolation),
            "roles": roles_json(&names),
        });
        if desired.isolation == "isolated" {
            out["postgrest"] = dedicated_postgrest(c, &db.server, &names);
        }
        out
    };
    if changes.is_empty() && !issue_lease {
        let out = summary(false, false, 0);
        audit(
            &conn,
            Audit {
                action: ACTION,
                project: Some(names.slug.as_str()),
                lease_id: None,
                changed: false,
                statements: 0,
                params: p,
                outcome: out.clone(),
            },
        )
        .await?;
        return Ok(out);
    }

    conn.begin(Lock::Project(&names.schema)).await?;
    let body = async {
        // Re-read under the lock: another upsert may have won the race.
        let state = project_state(&conn, &db.server, &names).await?;
        let desired =
            DesiredProject::from_params(names.clone(), p, state.registry.as_ref(), &c.config);
        let changes = diff_project(&state, &desired, &ctx)?;
        if desired.tenant_code == "deny"
            && state
                .registry
                .as_ref()
                .is_some_and(|r| r.tenant_code != "deny")
        {
            refuse_existing_tenant_code(&conn, &names).await?;
        }
        // Switching modes moves the API login role: leases granted to the
        // old one would keep the old reach, so they go first.
        let revoked_leases = match &state.registry {
            Some(r) if r.isolation != desired.isolation => {
                let rows = conn
                    .query(
                        &format!(
                            "{REVOKE_TARGETS_SQL} where l.project = $1 and l.revoked_at is null"
                        ),
                        &[&names.slug.as_str()],
                    )
                    .await?;
                let targets = revoke_targets(&rows);
                lease::revoke(&conn, &db.server, &targets, "isolation changed").await?;
                targets.len()
            }
            _ => 0,
        };
        let mut statements = render_all(&changes, &ctx);
        if changes
            .iter()
            .any(|ch| matches!(ch, Change::CreateLoginRole { .. }))
        {
            // The dedicated PostgREST's password lives in OpenBao only; it is
            // written before the role exists, so a failure changes nothing.
            let password = lease::scram::new_password();
            c.openbao()?
                .write_kv(
                    &authenticator_secret_path(&names),
                    json!({ AUTHENTICATOR_PASSWORD_KEY: password.expose() }),
                )
                .await?;
            statements.push(lease::password_statement(&names.authenticator, &password));
        }
        conn.run(&statements).await?;
        let mut out = summary(
            state.registry.is_none(),
            !changes.is_empty(),
            statements.len() as u32,
        );
        let mut lease_id = None;
        if let (Some(ttl), Some(secrets)) = (ttl, &secrets) {
            let request = LeaseRequest {
                names: names.clone(),
                principal: Principal::Project,
                platform_role: "project_owner".into(),
                class: AccessClass::ServiceRole,
                ttl_seconds: ttl,
                database: true,
                api_authenticator: lease::api_authenticator(&names, &desired.isolation),
                api_url: c.config.api.url.clone(),
            };
            let planned = lease::plan_issue(request, chrono::Utc::now());
            conn.run(&planned.statements).await?;
            lease_id = Some(planned.lease_id);
            out["lease"] = planned.to_json(secrets, &c.config, &db.server, true);
        }
        if revoked_leases > 0 {
            out["revoked_leases"] = json!(revoked_leases);
        }
        audit(
            &conn,
            Audit {
                action: ACTION,
                project: Some(names.slug.as_str()),
                lease_id,
                changed: !changes.is_empty() || lease_id.is_some(),
                statements: conn.stats.statements(),
                params: p,
                outcome: out.clone(),
            },
        )
        .await?;
        Ok(out)
    };
    let out = in_transaction(&conn, body).await?;
    if desired.isolation == "shared" && state.role(&names.authenticator).is_some() {
        // Back to shared: the dedicated PostgREST's password is now useless.
        if let Err(e) = c
            .openbao()?
            .delete_kv(&authenticator_secret_path(&names))
            .await
        {
            tracing::warn!(error = %e, "could not delete the former API login role's secret");
        }
    }
    tracing::debug!(
        statements = conn.stats.statements(),
        round_trips = conn.stats.round_trips(),
        "upsert applied"
    );
    Ok(out)
}

/// Key of an isolated project's API login password in OpenBao.
pub const AUTHENTICATOR_PASSWORD_KEY: &str = "AUTHENTICATOR_PASSWORD";

/// Where an isolated project's API login password lives, under the
/// connector's OpenBao path (`docs/reference.md#secrets-in-openbao`).
pub fn authenticator_secret_path(names: &ProjectNames) -> String {
    format!("projects/{}", names.slug.as_str())
}

/// The configuration of an isolated project's dedicated PostgREST, for the
/// deploy plane: no secret values, only where they are kept.
fn dedicated_postgrest(
    c: &Connector,
    server: &crate::db::ServerInfo,
    names: &ProjectNames,
) -> Value {
    let host = c
        .config
        .lease
        .database_host
        .clone()
        .unwrap_or_else(|| server.host.clone());
    let port = c.config.lease.database_port.unwrap_or(server.port);
    let bao = &c.config.openbao;
    json!({
        "PGRST_DB_URI": format!("postgresql://{}@{}:{}/{}", names.authenticator, host, port, server.dbname),
        "PGRST_DB_SCHEMAS": names.schema,
        "PGRST_DB_ANON_ROLE": names.anon,
        "PGRST_DB_CHANNEL_ENABLED": "true",
        "PGRST_DB_EXTRA_SEARCH_PATH": "public, extensions",
        "jwt_secret": {"mount": bao.mount, "path": bao.path, "key": "JWT_SECRET"},
        "db_password": {"mount": bao.mount,
                        "path": format!("{}/{}", bao.path, authenticator_secret_path(names)),
                        "key": AUTHENTICATOR_PASSWORD_KEY},
        "url": lease::api_url(&c.config, names, "isolated"),
    })
}

/// Switching a project to `tenant_code = deny` needs its schema free of code.
async fn refuse_existing_tenant_code(conn: &crate::db::Conn, names: &ProjectNames) -> Result<()> {
    let rows = conn
        .query("select kind || ' ' || object || ': ' || reason from supabase_connector.tenant_code_objects($1)", &[&names.schema])
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let objects: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Err(Error::conflict(format!(
        "project {:?} cannot switch to tenant_code=deny: its schema holds {}",
        names.slug.as_str(),
        objects.join("; ")
    ))
    .with_details(json!({"objects": objects})))
}

/// A project's state: roles, grants, teams, lease count, exposure, migrations.
pub async fn describe(c: &Connector, p: &Value) -> Result<Value> {
    let names = project_names(p)?;
    let db = c.db().await?;
    let conn = db.conn().await?;
    let row = conn
        .query_opt(
            "select json_build_object(
               'state', p.state, 'isolation', p.isolation, 'tenant_code', p.tenant_code, 'exposed', p.exposed,
               'created_at', p.created_at, 'updated_at', p.updated_at,
               'grants', coalesce((select json_agg(json_build_object(
                   'principal', json_build_object('type', g.principal_type, 'id', g.principal_id),
                   'platform_role', g.platform_role, 'access_class', g.access_class)
                   order by g.principal_type, g.principal_id)
                 from supabase_connector.grants g where g.project = p.slug), '[]'),
               'teams', coalesce((select json_agg(json_build_object(
                   'team_id', t.team_id, 'platform_role', t.platform_role, 'access_class', t.access_class,
                   'members', coalesce((select json_agg(m.user_id order by m.user_id) from supabase_connector.team_members m
                                        where m.project = t.project and m.team_id = t.team_id), '[]'))
                   order by t.team_id)
                 from supabase_connector.teams t where t.project = p.slug), '[]'),
               'active_leases', (select count(*) from supabase_connector.leases l
                                 where l.project = p.slug and l.revoked_at is null and l.expires_at > now()),
               'migrations', coalesce((select json_agg(json_build_object(
                   'version', m.version, 'name', m.name, 'checksum', m.checksum, 'applied_at', m.applied_at)
                   order by length(m.version), m.version)
                 from supabase_connector.migrations m where m.project = p.slug), '[]'),
               'listed', p.schema_name = any(string_to_array(coalesce(supabase_connector.served_db_schemas(), ''), ','))
             ) from supabase_connector.projects p where p.slug = $1",
            &[&names.slug.as_str()],
        )
        .await?
        .ok_or_else(|| Error::not_found(format!("project {:?} is not provisioned", names.slug.as_str())))?;
    let state: Value = row.get(0);
    let isolation = state["isolation"].as_str().unwrap_or("shared").to_string();
    let listed = state["listed"].clone();
    let mut out = json!({
        "project": names.slug.as_str(),
        "schema": names.schema,
        "roles": roles_json(&names),
        "trust_boundary": trust_boundary(&isolation),
        "exposure": {"mode": c.config.exposure.mode, "listed": listed},
    });
    if isolation == "isolated" {
        out["postgrest"] = dedicated_postgrest(c, &db.server, &names);
    }
    if let (Some(o), Value::Object(s)) = (out.as_object_mut(), state) {
        for (k, v) in s {
            if k != "listed" {
                o.insert(k, v);
            }
        }
    }
    Ok(out)
}
