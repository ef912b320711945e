//! `upsert_database_project_access` and `describe_database_project`.

use super::{audit, dry_run, in_transaction, placement, project_names};
use crate::apply::{dry_run_result, Audit};
use crate::db::{Conn, Lock};
use crate::domain::{Isolation, TenantCode};
use crate::error::{Error, Result};
use crate::inspect::project_state;
use crate::lease::{self, LeaseRequest};
use crate::model::{DesiredProject, Principal};
use crate::names::{pool_authenticator, AccessClass, ProjectNames, CENTRAL_POOL, POOL_ANON_ROLE};
use crate::plan::{diff_project, render, render_all, Change, PlanContext};
use crate::sql::ServerInfo;
use crate::state::ProjectState;
use crate::Connector;
use serde_json::{json, Value};

const ACTION: &str = "upsert_database_project_access";

/// What a project's mode isolates, stated wherever its mode shows.
pub fn trust_boundary(isolation: Isolation, pool: &str) -> String {
    if isolation == Isolation::Isolated {
        "isolated: served by the project's own PostgREST and login role; code the project installs reaches nothing outside it"
            .into()
    } else if pool == CENTRAL_POOL {
        "shared, on the central API: no credential of another project reaches this one, but code a project installs in its \
         own schema runs through Supabase's authenticator, which can switch to the roles of every project on the central API \
         and to service_role; use an API pool, tenant_code=deny or isolation=isolated for untrusted code"
            .into()
    } else {
        format!(
            "shared, on API pool {pool}: no credential of another project reaches this one; code a project installs in its own \
             schema can switch to the roles of the other projects on pool {pool} only (never service_role); use \
             tenant_code=deny or isolation=isolated for untrusted code"
        )
    }
}

fn roles_json(n: &ProjectNames) -> Value {
    json!({"owner": n.owner, "service_role": n.service_role, "authenticated": n.authenticated, "anon": n.anon})
}

/// What the upsert's parameters ask besides the project's desired state.
struct UpsertRequest {
    names: ProjectNames,
    /// The TTL of the project's lease, when one is issued.
    lease_ttl: Option<u64>,
    database: bool,
}

impl UpsertRequest {
    fn from_params(c: &Connector, p: &Value) -> Result<UpsertRequest> {
        let issue_lease = p
            .get("issue_lease")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let lease_ttl = match issue_lease {
            true => Some(lease::ttl(
                p.get("lease_ttl_seconds").and_then(Value::as_u64),
                &c.config,
                "/lease_ttl_seconds",
            )?),
            false => None,
        };
        Ok(UpsertRequest {
            names: project_names(p)?,
            lease_ttl,
            database: p.get("database").and_then(Value::as_bool).unwrap_or(true),
        })
    }
}

/// Create or bring a project in line, and (by default) issue its service-class lease.
pub async fn upsert(c: &Connector, p: &Value) -> Result<Value> {
    let req = UpsertRequest::from_params(c, p)?;
    let names = &req.names;
    let db = c.db().await?;
    let ctx = PlanContext {
        server: &db.server,
        exposure: &c.config.exposure,
        pools: &c.config.api.pools,
    };
    let conn = db.conn().await?;

    // Optimistic read: a no-op re-upsert costs one query and the audit row.
    let requested_pool = p.get("pool").and_then(Value::as_str);
    let state = project_state(&conn, &db.server, names, requested_pool).await?;
    if dry_run(p) || state.registry.is_some() {
        let (desired, changes) = plan_upsert(&conn, c, &ctx, p, &state, false).await?;
        if dry_run(p) {
            let statements = render_all(&changes, &ctx);
            let extra = json!({"project": names.slug.as_str(), "pool": desired.pool,
                               "lease": req.lease_ttl.map(|_| json!({"access_class": "service_role", "would_issue": true}))});
            return Ok(dry_run_result(ACTION, &changes, &statements, extra));
        }
        if changes.is_empty() && req.lease_ttl.is_none() {
            let out = summary(c, &db.server, &desired, false, false, 0);
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
    }

    conn.begin(Lock::Project(&names.schema)).await?;
    let body = async {
        // Re-read under the lock: another upsert may have won the race.
        let state = project_state(&conn, &db.server, names, requested_pool).await?;
        let (desired, changes) = plan_upsert(&conn, c, &ctx, p, &state, true).await?;
        apply_upsert(
            c, &conn, &db.server, &ctx, p, &req, &state, &desired, &changes,
        )
        .await
    };
    let out = in_transaction(&conn, body).await?;
    if out["isolation"] == "shared" && state.role(&names.authenticator).is_some() {
        // Back to shared: the dedicated PostgREST's password is now useless.
        if let Err(e) = c
            .openbao()?
            .delete_kv(&authenticator_secret_path(names))
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

/// The desired state and the plan. A new shared project is placed on an API
/// pool first (`place`: under the placement lock, inside the transaction).
async fn plan_upsert(
    conn: &Conn,
    c: &Connector,
    ctx: &PlanContext<'_>,
    p: &Value,
    state: &ProjectState,
    place: bool,
) -> Result<(DesiredProject, Vec<Change>)> {
    let names = project_names(p)?;
    let mut desired =
        DesiredProject::from_params(names.clone(), p, state.registry.as_ref(), &c.config)?;
    let requested = p.get("pool").and_then(Value::as_str);
    let placing = requested.is_some() || state.registry.is_none();
    let mut state = std::borrow::Cow::Borrowed(state);
    if placing && desired.isolation == Isolation::Shared {
        let stored = state.registry.as_ref().map(|r| r.pool.as_str());
        if place {
            desired.pool =
                placement::choose(conn, &c.config, ctx.server, requested, stored).await?;
        } else if requested.is_none() && !c.config.api.pools.is_empty() {
            // a dry run shows the pool with the most room now
            desired.pool = placement::choose(conn, &c.config, ctx.server, None, None).await?;
        }
        // The pool's state, read again after the placement lock: another
        // upsert may have just set its login role up.
        if desired.pool != CENTRAL_POOL
            && (place
                || state.pool.as_ref().map(|p| p.name.as_str()) != Some(desired.pool.as_str()))
        {
            let db = c.db().await?;
            let placed = project_state(conn, &db.server, &names, Some(&desired.pool)).await?;
            state = std::borrow::Cow::Owned(ProjectState {
                pool: placed.pool,
                ..state.into_owned()
            });
        }
    }
    let changes = diff_project(&state, &desired, ctx)?;
    Ok((desired, changes))
}

/// Apply an upsert's plan and its lease inside the open transaction.
#[allow(clippy::too_many_arguments)]
async fn apply_upsert(
    c: &Connector,
    conn: &Conn,
    server: &ServerInfo,
    ctx: &PlanContext<'_>,
    p: &Value,
    req: &UpsertRequest,
    state: &ProjectState,
    desired: &DesiredProject,
    changes: &[Change],
) -> Result<Value> {
    let names = &req.names;
    if desired.tenant_code == TenantCode::Deny
        && state
            .registry
            .as_ref()
            .is_some_and(|r| r.tenant_code != TenantCode::Deny)
    {
        refuse_existing_tenant_code(conn, names).await?;
    }
    // A project that moves to another API (isolation, pool): its leases'
    // tokens and URLs point to the old one, so they go first.
    let revoked_leases = match &state.registry {
        Some(r) if r.isolation != desired.isolation || r.pool != desired.pool => {
            let ids = super::leases::project_leases(conn, names.slug.as_str()).await?;
            lease::revoke(conn, ids.clone(), "moved to another API").await?;
            ids.len()
        }
        _ => 0,
    };
    // The passwords of new API login roles live in OpenBao only; each is
    // written before its role exists, so a failure changes nothing.
    let mut statements = Vec::new();
    for change in changes {
        statements.extend(render(change, ctx));
        if let Change::CreateRole { role } = change {
            let path = if *role == names.authenticator {
                authenticator_secret_path(names)
            } else if *role == pool_authenticator(&desired.pool) {
                pool_secret_path(&desired.pool)
            } else {
                continue;
            };
            let password = lease::scram::new_password();
            c.openbao()?
                .write_kv(
                    &path,
                    json!({ AUTHENTICATOR_PASSWORD_KEY: password.expose() }),
                )
                .await?;
            statements.push(lease::password_statement(role, &password));
        }
    }
    let mut out = summary(
        c,
        server,
        desired,
        state.registry.is_none(),
        !changes.is_empty(),
        statements.len() as u32,
    );
    let mut lease_id = None;
    if let Some(ttl) = req.lease_ttl {
        // the action's check of the secrets ran alongside the work above;
        // an unreachable OpenBao rolls everything back
        let secrets = c.secrets().await?;
        let request = LeaseRequest {
            names: names.clone(),
            principal: Principal::Project,
            platform_role: "project_owner".into(),
            class: AccessClass::ServiceRole,
            ttl_seconds: ttl,
            database: req.database,
            api_url: lease::api_url(&c.config, names, desired.isolation, &desired.pool),
        };
        let planned = lease::plan_issue(request, chrono::Utc::now());
        statements.extend(planned.statements.iter().cloned());
        lease_id = Some(planned.lease_id);
        out["lease"] = planned.to_json(&secrets, &c.config, server, true);
    }
    if revoked_leases > 0 {
        out["revoked_leases"] = json!(revoked_leases);
    }
    statements.push(
        Audit {
            action: ACTION,
            project: Some(names.slug.as_str()),
            lease_id,
            changed: !changes.is_empty() || lease_id.is_some(),
            statements: conn.stats.statements() + statements.len() as u32 + 1,
            params: p,
            outcome: out.clone(),
        }
        .statement(),
    );
    conn.commit_after(&statements).await?;
    Ok(out)
}

/// The project state an upsert returns.
fn summary(
    c: &Connector,
    server: &ServerInfo,
    desired: &DesiredProject,
    created: bool,
    changed: bool,
    statements: u32,
) -> Value {
    let names = &desired.names;
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
        "pool": desired.pool,
        "limits": desired.limits,
        "exposure": {"mode": c.config.exposure.mode, "listed": desired.listed()},
        "trust_boundary": trust_boundary(desired.isolation, &desired.pool),
        "roles": roles_json(names),
    });
    if let Some(postgrest) = postgrest_config(c, server, names, desired.isolation, &desired.pool) {
        out["postgrest"] = postgrest;
    }
    out
}

/// Key of an API login role's password in OpenBao.
pub const AUTHENTICATOR_PASSWORD_KEY: &str = "AUTHENTICATOR_PASSWORD";

/// Where an isolated project's API login password lives, under the
/// connector's OpenBao path (`docs/reference.md#secrets-in-openbao`).
pub fn authenticator_secret_path(names: &ProjectNames) -> String {
    format!("projects/{}", names.slug.as_str())
}

/// Where a pool's API login password lives, under the connector's OpenBao path.
pub fn pool_secret_path(pool: &str) -> String {
    format!("pools/{pool}")
}

/// The configuration of the PostgREST serving an isolated or pooled project,
/// for the deploy plane: no secret values, only where they are kept. None
/// for the central API (Supabase's own).
fn postgrest_config(
    c: &Connector,
    server: &crate::db::ServerInfo,
    names: &ProjectNames,
    isolation: Isolation,
    pool: &str,
) -> Option<Value> {
    let (login, schemas, anon, secret_path) = if isolation == Isolation::Isolated {
        (
            names.authenticator.clone(),
            json!(names.schema),
            names.anon.clone(),
            authenticator_secret_path(names),
        )
    } else if pool != CENTRAL_POOL {
        (
            pool_authenticator(pool),
            json!(null),
            POOL_ANON_ROLE.to_string(),
            pool_secret_path(pool),
        )
    } else {
        return None;
    };
    let host = c
        .config
        .lease
        .database_host
        .clone()
        .unwrap_or_else(|| server.host.clone());
    let port = c.config.lease.database_port.unwrap_or(server.port);
    let bao = &c.config.openbao;
    let mut out = json!({
        "PGRST_DB_URI": format!("postgresql://{}@{}:{}/{}", login, host, port, server.dbname),
        "PGRST_DB_SCHEMAS": schemas,
        "PGRST_DB_ANON_ROLE": anon,
        "PGRST_DB_PRE_REQUEST": "supabase_connector_api.pre_request",
        "PGRST_DB_CHANNEL_ENABLED": "true",
        "PGRST_DB_EXTRA_SEARCH_PATH": "public, extensions",
        "jwt_secret": {"mount": bao.mount, "path": bao.path, "key": "JWT_SECRET"},
        "db_password": {"mount": bao.mount,
                        "path": format!("{}/{}", bao.path, secret_path),
                        "key": AUTHENTICATOR_PASSWORD_KEY},
        "url": lease::api_url(&c.config, names, isolation, pool),
    });
    if pool != CENTRAL_POOL && isolation != Isolation::Isolated {
        // a pool's list changes with its projects: read from the database
        // (role setting pgrst.db_schemas), never fixed in its environment
        out["PGRST_DB_SCHEMAS"] = json!("(from the database: role setting pgrst.db_schemas)");
        out["pool"] = json!(pool);
    }
    Some(out)
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
               'created_at', p.created_at, 'updated_at', p.updated_at, 'pool', p.pool,
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
               'limits', p.limits,
               'usage', json_build_object(
                 'size_bytes', (select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint from pg_class c
                                where c.relnamespace = to_regnamespace(p.schema_name) and c.relkind in ('r', 'p', 'm')),
                 'database_leases', (select count(*) from supabase_connector.leases l
                                     where l.project = p.slug and l.revoked_at is null and l.database
                                       and l.expires_at > now())),
               'migrations', coalesce((select json_agg(json_build_object(
                   'version', m.version, 'name', m.name, 'checksum', m.checksum, 'applied_at', m.applied_at)
                   order by length(m.version), m.version)
                 from supabase_connector.migrations m where m.project = p.slug), '[]'),
               'listed', p.schema_name = any(string_to_array(coalesce(supabase_connector.served_setting(
                   case when p.isolation = 'isolated' then null
                        when p.pool = 'central' then 'authenticator'
                        else 'supabase_connector_pool_' || p.pool end, 'pgrst.db_schemas'), ''), ','))
             ) from supabase_connector.projects p where p.slug = $1",
            &[&names.slug.as_str()],
        )
        .await?
        .ok_or_else(|| Error::not_found(format!("project {:?} is not provisioned", names.slug.as_str())))?;
    let mut state: Value = row.get(0);
    let isolation = Isolation::parse(state["isolation"].as_str().unwrap_or_default())?;
    let pool = state["pool"].as_str().unwrap_or(CENTRAL_POOL).to_string();
    // limits as they apply: the stored ones over the configured defaults
    let stored = state["limits"].clone();
    state["limits"] = serde_json::to_value(c.config.limits.merged(&stored)?)?;
    let listed = state["listed"].clone();
    let mut out = json!({
        "project": names.slug.as_str(),
        "schema": names.schema,
        "roles": roles_json(&names),
        "trust_boundary": trust_boundary(isolation, &pool),
        "exposure": {"mode": c.config.exposure.mode, "listed": listed},
    });
    if let Some(postgrest) = postgrest_config(c, &db.server, &names, isolation, &pool) {
        out["postgrest"] = postgrest;
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
