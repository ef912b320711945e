//! The SQL of every [`Change`]: the one place the connector writes the
//! statements it sends. Registry writes and role changes are parameterized
//! statements (role changes call the bootstrap's role functions, which pick
//! the server version's syntax); DDL on a project's own objects quotes
//! every name it is given.

use crate::names::ident;
use crate::plan::{Change, PlanContext};
use crate::registry::registry_sql;
use crate::sql::{Param, Statement};
use serde_json::{json, Value};

/// A parameterized statement over the registry (`{registry}` in `sql`).
fn registry(sql: &str, params: Vec<Param>) -> Vec<Statement> {
    vec![Statement::with(registry_sql(sql), params)]
}

fn text(s: &str) -> Param {
    Param::Text(s.to_string())
}

/// Render one change as SQL for the server at hand.
pub fn render(change: &Change, ctx: &PlanContext) -> Vec<Statement> {
    match change {
        Change::RecordProject { slug, schema, state, exposed, isolation, tenant_code, limits, pool } => registry(
            "insert into {registry}.projects (slug, schema_name, state, exposed, isolation, tenant_code, limits, pool) \
             values ($1, $2, $3, $4, $5, $6, $7, $8) \
             on conflict (slug) do update set state = excluded.state, exposed = excluded.exposed, \
             isolation = excluded.isolation, tenant_code = excluded.tenant_code, limits = excluded.limits, \
             pool = excluded.pool, updated_at = now()",
            vec![
                text(slug),
                text(schema),
                text(state.as_str()),
                Param::Bool(*exposed),
                text(isolation.as_str()),
                text(tenant_code.as_str()),
                Param::Json(limits.clone()),
                text(pool),
            ],
        ),
        Change::RecordPool { name, authenticator, url, max_projects } => registry(
            "insert into {registry}.pools (name, authenticator, url, max_projects) values ($1, $2, $3, $4) \
             on conflict (name) do update set url = excluded.url, max_projects = excluded.max_projects, updated_at = now()",
            vec![text(name), text(authenticator), Param::OptText(url.clone()), Param::Int(*max_projects as i32)],
        ),
        Change::ArchiveProject { slug } => registry(
            "update {registry}.projects set state = 'archived', updated_at = now() where slug = $1",
            vec![text(slug)],
        ),
        Change::ForgetProject { slug } => registry("delete from {registry}.projects where slug = $1", vec![text(slug)]),
        Change::RecordGrant { project, principal, platform_role, access_class } => registry(
            "insert into {registry}.grants (project, principal_type, principal_id, platform_role, access_class) \
             values ($1, $2, $3, $4, $5) \
             on conflict (project, principal_type, principal_id) do update set platform_role = excluded.platform_role, \
             access_class = excluded.access_class, updated_at = now()",
            vec![
                text(project),
                text(principal.kind()),
                Param::Text(principal.id()),
                text(platform_role),
                text(access_class.as_str()),
            ],
        ),
        Change::DeleteGrant { project, principal } => registry(
            "delete from {registry}.grants where project = $1 and principal_type = $2 and principal_id = $3",
            vec![text(project), text(principal.kind()), Param::Text(principal.id())],
        ),
        Change::RecordTeam { project, team_id, platform_role, access_class } => registry(
            "insert into {registry}.teams (project, team_id, platform_role, access_class) values ($1, $2, $3, $4) \
             on conflict (project, team_id) do update set platform_role = excluded.platform_role, \
             access_class = excluded.access_class, updated_at = now()",
            vec![text(project), text(team_id), text(platform_role), text(access_class.as_str())],
        ),
        Change::AddTeamMembers { project, team_id, members } => registry(
            "insert into {registry}.team_members (project, team_id, user_id) select $1, $2, unnest($3::uuid[])",
            vec![text(project), text(team_id), Param::UuidArray(members.clone())],
        ),
        Change::RemoveTeamMembers { project, team_id, members } => registry(
            "delete from {registry}.team_members where project = $1 and team_id = $2 and user_id = any($3)",
            vec![text(project), text(team_id), Param::UuidArray(members.clone())],
        ),
        Change::DeleteTeam { project, team_id } => registry(
            "delete from {registry}.teams where project = $1 and team_id = $2",
            vec![text(project), text(team_id)],
        ),
        Change::RecordMigration { project, version, name, checksum } => registry(
            "insert into {registry}.migrations (project, version, name, checksum) values ($1, $2, $3, $4)",
            vec![text(project), text(version), text(name), text(checksum)],
        ),
        Change::RecordLease {
            lease_id,
            project,
            login_role,
            principal,
            platform_role,
            access_class,
            issued_at,
            expires_at,
        } => registry(
            "insert into {registry}.leases (lease_id, project, role_name, principal_type, \
             principal_id, platform_role, access_class, database, issued_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![
                Param::Uuid(*lease_id),
                text(project),
                Param::OptText(login_role.clone()),
                text(principal.kind()),
                Param::Text(principal.id()),
                text(platform_role),
                text(access_class.as_str()),
                Param::Bool(login_role.is_some()),
                Param::Time(*issued_at),
                Param::Time(*expires_at),
            ],
        ),
        Change::CreateLeaseLogin { lease_id, verifier } => registry(
            "select {registry}.lease_role_create($1, $2)",
            vec![Param::Uuid(*lease_id), Param::Secret(verifier.clone())],
        ),
        Change::ExtendLease { lease_id, expires_at } => registry(
            "update {registry}.leases set expires_at = $2, renewed_at = now() where lease_id = $1",
            vec![Param::Uuid(*lease_id), Param::Time(*expires_at)],
        ),
        Change::RenewLeaseLogin { lease_id, verifier } => registry(
            "select {registry}.lease_role_renew($1, $2)",
            vec![Param::Uuid(*lease_id), Param::Secret(verifier.clone())],
        ),
        Change::RevokeLeases { lease_ids, reason } => registry(
            "select {registry}.lease_revoke($1, $2)",
            vec![Param::UuidArray(lease_ids.clone()), text(reason)],
        ),
        Change::SetLoginPassword { role, verifier } => registry(
            "select {registry}.role_password($1, $2)",
            vec![text(role), Param::Secret(verifier.clone())],
        ),
        Change::CreateRole { role } => registry("select {registry}.role_create($1)", vec![text(role)]),
        Change::AlterRole { role, attributes } => registry(
            "select {registry}.role_alter($1, $2)",
            vec![text(role), Param::TextArray(attributes.clone())],
        ),
        Change::SetRoleSetting { role, name, value } => registry(
            "select {registry}.role_set($1, $2, $3)",
            vec![text(role), text(name), Param::OptText(value.clone())],
        ),
        Change::GrantRole { role, member } | Change::BorrowOwner { owner: role, runtime: member } => {
            registry("select {registry}.role_grant($1, $2)", vec![text(role), text(member)])
        }
        Change::RevokeRole { role, member } | Change::ReturnOwner { owner: role, runtime: member } => {
            registry("select {registry}.role_revoke($1, $2)", vec![text(role), text(member)])
        }
        Change::DropRole { role } => registry("select {registry}.role_drop($1)", vec![text(role)]),
        Change::DropProject { slug } => registry("select {registry}.project_drop($1)", vec![text(slug)]),
        Change::ApplyLeaseLimits { slug } => {
            registry("select {registry}.project_lease_limits($1)", vec![text(slug)])
        }
        Change::DropOrphanLeaseRole { role, slug } => registry(
            "select {registry}.lease_role_drop_orphan($1, $2)",
            vec![text(role), text(slug)],
        ),
        Change::RevokeForeignDefaultAcl { role, schema, objects, grantee } => registry(
            "select {registry}.role_default_acl_revoke($1, $2, $3, $4)",
            vec![text(role), Param::OptText(schema.clone()), text(objects), text(grantee)],
        ),
        Change::ApplyExposure { pools } => registry(
            "select {registry}.apply_exposure($1, $2, $3)",
            vec![
                text(ctx.exposure.mode.as_str()),
                Param::TextArray(ctx.exposure.base_schemas.clone()),
                Param::TextArray(pools.clone()),
            ],
        ),
        ddl => vec![Statement::ddl(render_ddl(ddl))],
    }
}

/// DDL on a project's own schema and objects.
fn render_ddl(change: &Change) -> String {
    match change {
        Change::CreateSchema { schema, owner } => {
            format!(
                "CREATE SCHEMA {} AUTHORIZATION {}",
                ident(schema),
                ident(owner)
            )
        }
        Change::AlterSchemaOwner { schema, owner } => {
            format!("ALTER SCHEMA {} OWNER TO {}", ident(schema), ident(owner))
        }
        Change::GrantSchemaUsage { schema, roles } => format!(
            "GRANT USAGE ON SCHEMA {} TO {}",
            ident(schema),
            roles
                .iter()
                .map(|r| ident(r))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Change::RevokeSchema { schema, grantee } => {
            format!(
                "REVOKE ALL ON SCHEMA {} FROM {}",
                ident(schema),
                grantee_sql(grantee)
            )
        }
        Change::DefaultPrivileges {
            owner,
            schema,
            grant,
            privileges,
            objects,
            grantee,
        } => {
            let in_schema = schema
                .as_ref()
                .map(|s| format!(" IN SCHEMA {}", ident(s)))
                .unwrap_or_default();
            let (verb, prep) = if *grant {
                ("GRANT", "TO")
            } else {
                ("REVOKE", "FROM")
            };
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {}{in_schema} {verb} {privileges} ON {objects} {prep} {}",
                ident(owner),
                grantee_sql(grantee)
            )
        }
        // Object names below come from the catalog, already qualified and
        // quoted by PostgreSQL (format('%I.%I'), regprocedure, regrole).
        Change::EnableRowLevelSecurity { table } => {
            format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        }
        Change::SetSecurityInvoker { view } => {
            format!("ALTER VIEW {view} SET (security_invoker = true)")
        }
        Change::GrantOn {
            kind,
            object,
            privileges,
            role,
        } => {
            format!("GRANT {privileges} ON {kind} {object} TO {}", ident(role))
        }
        Change::RevokeAllOn { kind, object, role } => {
            format!("REVOKE ALL ON {kind} {object} FROM {}", ident(role))
        }
        Change::RevokeForeignGrant {
            kind,
            object,
            grantee,
        } => format!("REVOKE ALL ON {kind} {object} FROM {grantee}"),
        Change::RevokeForeignColumnGrant {
            table,
            column,
            grantee,
        } => {
            format!("REVOKE ALL ({column}) ON TABLE {table} FROM {grantee}")
        }
        other => unreachable!("{other:?} renders as a parameterized statement"),
    }
}

fn grantee_sql(grantee: &str) -> String {
    if grantee == "PUBLIC" {
        "PUBLIC".into()
    } else {
        ident(grantee)
    }
}

/// Render a whole plan. Consecutive role changes go out as one
/// `roles_apply` call (each still the role function with its checks).
pub fn render_all(changes: &[Change], ctx: &PlanContext) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut role_changes: Vec<&Change> = Vec::new();
    for change in changes {
        if role_call(change).is_some() {
            role_changes.push(change);
        } else {
            out.extend(render_role_changes(&std::mem::take(&mut role_changes), ctx));
            out.extend(render(change, ctx));
        }
    }
    out.extend(render_role_changes(&role_changes, ctx));
    out
}

/// Role changes in a row: one `roles_apply` for two or more, the role
/// function's own statement for one.
fn render_role_changes(changes: &[&Change], ctx: &PlanContext) -> Vec<Statement> {
    match changes {
        [] => vec![],
        [one] => render(one, ctx),
        many => registry(
            "select {registry}.roles_apply($1)",
            vec![Param::Json(Value::Array(many.iter().filter_map(|c| role_call(c)).collect()))],
        ),
    }
}

/// A change that is a call of one of the role functions `roles_apply`
/// runs: `[function, arguments...]`.
fn role_call(change: &Change) -> Option<Value> {
    Some(match change {
        Change::CreateRole { role } => json!(["role_create", role]),
        Change::AlterRole { role, attributes } => json!(["role_alter", role, attributes]),
        Change::SetRoleSetting { role, name, value } => json!(["role_set", role, name, value]),
        Change::GrantRole { role, member } | Change::BorrowOwner { owner: role, runtime: member } => {
            json!(["role_grant", role, member])
        }
        Change::RevokeRole { role, member } | Change::ReturnOwner { owner: role, runtime: member } => {
            json!(["role_revoke", role, member])
        }
        _ => return None,
    })
}
