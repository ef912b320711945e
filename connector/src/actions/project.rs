//! `upsert_database_project_access` and `describe_database_project`.

use super::{audit, context, placement};
use crate::apply::{dry_run_result, Audit};
use crate::db::{Conn, Lock, ServerInfo};
use crate::domain::{Isolation, TenantCode};
use crate::error::{Error, Result};
use crate::inspect::{absent_project_state, pool_state, project_state};
use crate::lease::{self, LeaseRequest};
use crate::model::{DesiredProject, Principal};
use crate::names::{pool_authenticator, AccessClass, ProjectNames, CENTRAL_POOL, POOL_ANON_ROLE};
use crate::plan::{diff_project, Change, PlanContext};
use crate::registry;
use crate::render::{render, render_all};
use crate::requests::{DescribeProject, UpsertProject};
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

/// Create or bring a project in line, and (by default) issue its service-class lease.
pub async fn upsert(c: &Connector, req: &UpsertProject, params: &Value) -> Result<Value> {
    let names = ProjectNames::new(&req.project);
    let lease_ttl = lease::ttl_if(req.issue_lease, req.lease_ttl_seconds, &c.config)?;
    let db = c.db().await?;
    let ctx = context(c, db);
    let conn = db.conn().await?;

    // Optimistic read: a no-op re-upsert costs one query and the audit row.
    let requested_pool = req.settings.pool.as_deref();
    let state = read_state(c, &conn, &db.server, &names, requested_pool).await?;
    if req.dry_run || state.registry.is_some() {
        let (desired, changes) = plan_upsert(&conn, c, &ctx, req, &state, false).await?;
        if req.dry_run {
            let extra = json!({"project": names.slug.as_str(), "pool": desired.pool,
                               "lease": lease_ttl.map(|_| json!({"access_class": "service_role", "would_issue": true}))});
            return Ok(dry_run_result(ACTION, &changes, &ctx, extra));
        }
        if changes.is_empty() && lease_ttl.is_none() {
            let out = summary(c, &db.server, &desired, false, false, 0);
            let audit_row = Audit {
                action: ACTION,
                project: Some(names.slug.as_str()),
                lease_id: None,
                changed: false,
                params,
                outcome: out.clone(),
            };
            audit(&conn, audit_row).await?;
            return Ok(out);
        }
    }

    let tx = conn.transaction(Lock::Project(&names.schema));
    // Re-read under the lock: another upsert may have won the race.
    let state = read_state(c, &tx, &db.server, &names, requested_pool).await?;
    let (desired, changes) = plan_upsert(&tx, c, &ctx, req, &state, true).await?;
    let mut statements = apply_statements(c, &tx, &ctx, &names, &state, &desired, &changes).await?;
    let mut out = summary(
        c,
        &db.server,
        &desired,
        state.registry.is_none(),
        !changes.is_empty(),
        statements.len() as u32,
    );
    if statements.iter().any(|s| s.sql.contains(".lease_revoke(")) {
        out["revoked_leases"] = json!(true);
    }
    let lease_id = match lease_ttl {
        Some(ttl) => {
            let planned = project_lease(c, &names, &desired, ttl, req.database);
            // the action's check of the secrets ran alongside the work above;
            // an unreachable OpenBao rolls everything back
            let secrets = c.secrets().await?;
            statements.extend(render_all(&planned.changes, &ctx));
            out["lease"] = planned.to_json(&secrets, &c.config, &db.server, true);
            Some(planned.lease_id)
        }
        None => None,
    };
    let audit_row = Audit {
        action: ACTION,
        project: Some(names.slug.as_str()),
        lease_id,
        changed: !changes.is_empty() || lease_id.is_some(),
        params,
        outcome: out.clone(),
    };
    tx.commit(statements, audit_row).await?;
    c.note_registered(names.slug.as_str());
    if desired.isolation == Isolation::Shared && state.role(&names.authenticator).is_some() {
        forget_login_password(c, &names).await;
    }
    tracing::debug!(
        statements = conn.stats.statements(),
        round_trips = conn.stats.round_trips(),
        "upsert applied"
    );
    Ok(out)
}

/// The project's state. A project this connector has not found registered
/// may be new: the light query answers for one that has nothing yet, and
/// spares the whole query's planning, which a new schema anywhere (the
/// previous new project) makes PostgreSQL redo (about 3 ms). A registered
/// project's is read whole at once, so its no-op upsert stays at two round
/// trips.
async fn read_state(
    c: &Connector,
    conn: &Conn,
    server: &ServerInfo,
    names: &ProjectNames,
    pool: Option<&str>,
) -> Result<ProjectState> {
    if !c.known_registered(names.slug.as_str()) {
        if let Some(state) = absent_project_state(conn, names, pool).await? {
            return Ok(state);
        }
    }
    let state = project_state(conn, server, names, pool).await?;
    if state.registry.is_some() {
        c.note_registered(names.slug.as_str());
    }
    Ok(state)
}

/// The project's own service-class lease, on the API that serves it.
fn project_lease(
    c: &Connector,
    names: &ProjectNames,
    desired: &DesiredProject,
    ttl: u64,
    database: bool,
) -> lease::PlannedLease {
    let request = LeaseRequest {
        names: names.clone(),
        principal: Principal::Project,
        platform_role: "project_owner".into(),
        class: AccessClass::ServiceRole,
        ttl_seconds: ttl,
        database,
        api_url: lease::api_url(&c.config, names, desired.isolation, &desired.pool),
    };
    lease::plan_issue(request, chrono::Utc::now())
}

/// Back to shared: the dedicated PostgREST's password is now useless.
async fn forget_login_password(c: &Connector, names: &ProjectNames) {
    let deleted = match c.openbao() {
        Ok(bao) => bao.delete_kv(&authenticator_secret_path(names)).await,
        Err(e) => Err(e),
    };
    if let Err(e) = deleted {
        tracing::warn!(error = %e, "could not delete the former API login role's secret");
    }
}

/// The desired state and the plan. A new shared project is placed on an API
/// pool first (`place`: under the placement lock, inside the transaction).
async fn plan_upsert(
    conn: &Conn,
    c: &Connector,
    ctx: &PlanContext<'_>,
    req: &UpsertProject,
    state: &ProjectState,
    place: bool,
) -> Result<(DesiredProject, Vec<Change>)> {
    let names = ProjectNames::new(&req.project);
    let mut desired = DesiredProject::new(
        names.clone(),
        &req.settings,
        state.registry.as_ref(),
        &c.config,
    )?;
    let requested = req.settings.pool.as_deref();
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
            let pool = pool_state(conn, &desired.pool).await?;
            state = std::borrow::Cow::Owned(ProjectState {
                pool,
                ..state.into_owned()
            });
        }
    }
    let changes = diff_project(&state, &desired, ctx)?;
    Ok((desired, changes))
}

/// The statements of an upsert's plan, in the open transaction: first the
/// revocation of its leases when the project moves to another API, then the
/// plan, with the password of each new API login role (kept in OpenBao
/// only, written before its role exists, so a failure changes nothing).
async fn apply_statements(
    c: &Connector,
    conn: &Conn,
    ctx: &PlanContext<'_>,
    names: &ProjectNames,
    state: &ProjectState,
    desired: &DesiredProject,
    changes: &[Change],
) -> Result<Vec<crate::sql::Statement>> {
    if desired.tenant_code == TenantCode::Deny
        && state
            .registry
            .as_ref()
            .is_some_and(|r| r.tenant_code != TenantCode::Deny)
    {
        refuse_existing_tenant_code(conn, names).await?;
    }
    let mut statements = Vec::new();
    // A project that moves to another API (isolation, pool): its leases'
    // tokens and URLs point to the old one, so they go first.
    if let Some(r) = &state.registry {
        if r.isolation != desired.isolation || r.pool != desired.pool {
            let ids = registry::project_leases(conn, names.slug.as_str()).await?;
            if !ids.is_empty() {
                statements.extend(render(&lease::revoke(ids, "moved to another API"), ctx));
            }
        }
    }
    let mut planned = Vec::with_capacity(changes.len());
    for change in changes {
        planned.push(change.clone());
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
            planned.push(lease::set_password(role, &password));
        }
    }
    statements.extend(render_all(&planned, ctx));
    Ok(statements)
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
async fn refuse_existing_tenant_code(conn: &Conn, names: &ProjectNames) -> Result<()> {
    let objects = registry::tenant_code_objects(conn, &names.schema).await?;
    if objects.is_empty() {
        return Ok(());
    }
    Err(Error::conflict(format!(
        "project {:?} cannot switch to tenant_code=deny: its schema holds {}",
        names.slug.as_str(),
        objects.join("; ")
    ))
    .with_details(json!({"objects": objects})))
}

/// A project's state: roles, grants, teams, lease count, exposure, migrations.
pub async fn describe(c: &Connector, req: &DescribeProject) -> Result<Value> {
    let names = ProjectNames::new(&req.project);
    let db = c.db().await?;
    let conn = db.conn().await?;
    let mut state = registry::describe(&conn, &names).await?;
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
