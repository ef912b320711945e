//! Diff and plan: compare actual with desired state and produce a typed
//! list of [`Change`]s. Every write the connector makes is a `Change`; its
//! SQL is written in one place, `render`.

use crate::config::{default_max_projects, Config, ExposureConfig, PoolConfig, Secret};
use crate::domain::{ExposureMode, Isolation, Lifecycle, TenantCode};
use crate::error::{Error, Result};
use crate::model::Principal;
use crate::model::{DesiredProject, MembershipKind};
use crate::names::AccessClass;
use crate::names::{pool_authenticator, ProjectNames, CENTRAL_POOL, POOL_ANON_ROLE};
use crate::sql::ServerInfo;
use crate::state::{Membership, PoolRow, PoolState, ProjectState, RoleState};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// What version-dependent rendering needs to know.
pub struct PlanContext<'a> {
    pub server: &'a ServerInfo,
    pub exposure: &'a ExposureConfig,
    /// The configured API pools.
    pub pools: &'a [PoolConfig],
}

impl<'a> PlanContext<'a> {
    /// Plans for `server`, with the exposure and pools `config` gives.
    pub fn new(server: &'a ServerInfo, config: &'a Config) -> Self {
        PlanContext {
            server,
            exposure: &config.exposure,
            pools: &config.api.pools,
        }
    }
}

/// One typed change to the database. Role changes render as calls of the
/// bootstrap's role functions (which check them against the registry and
/// pick the PostgreSQL version's syntax); the rest is plain DDL on the
/// project's schema, made with the owner's privileges borrowed for the
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Insert or update the project's registry row: first, since the role
    /// functions check names against it.
    RecordProject {
        slug: String,
        schema: String,
        state: Lifecycle,
        exposed: bool,
        isolation: Isolation,
        tenant_code: TenantCode,
        limits: serde_json::Value,
        pool: String,
    },
    /// A project role (`NOLOGIN INHERIT`) or an API login role (`LOGIN
    /// NOINHERIT`, its password generated apart and kept in OpenBao only).
    CreateRole {
        role: String,
    },
    /// `ALTER ROLE` with only the attributes that differ.
    AlterRole {
        role: String,
        attributes: Vec<String>,
    },
    /// `ALTER ROLE … SET name = value` (`None`: `RESET`).
    SetRoleSetting {
        role: String,
        name: String,
        value: Option<String>,
    },
    /// Make `member` a member of `role`, with the options the connector
    /// uses for that pair.
    GrantRole {
        role: String,
        member: String,
    },
    /// Remove every grant of `role` to `member`.
    RevokeRole {
        role: String,
        member: String,
    },
    /// `DROP ROLE` of an API login role that serves nothing any more.
    DropRole {
        role: String,
    },
    CreateSchema {
        schema: String,
        owner: String,
    },
    AlterSchemaOwner {
        schema: String,
        owner: String,
    },
    /// `GRANT USAGE ON SCHEMA` to the class roles that lack it (one statement).
    GrantSchemaUsage {
        schema: String,
        roles: Vec<String>,
    },
    RevokeSchema {
        schema: String,
        grantee: String,
    },
    /// `ALTER DEFAULT PRIVILEGES FOR ROLE owner [IN SCHEMA s] GRANT|REVOKE …`
    DefaultPrivileges {
        owner: String,
        schema: Option<String>,
        grant: bool,
        privileges: String,
        objects: String,
        grantee: String,
    },
    EnableRowLevelSecurity {
        table: String,
    },
    SetSecurityInvoker {
        view: String,
    },
    /// `GRANT privileges ON kind object TO role` for an existing object.
    GrantOn {
        kind: String,
        object: String,
        privileges: String,
        role: String,
    },
    RevokeAllOn {
        kind: String,
        object: String,
        role: String,
    },
    /// Insert or update an API pool's registry row: before its login role
    /// is made, since the role functions check names against it.
    RecordPool {
        name: String,
        authenticator: String,
        url: Option<String>,
        max_projects: u32,
    },
    /// Recompute and apply the served schema lists of these pools.
    ApplyExposure {
        pools: Vec<String>,
    },
    /// Bring the login roles of the project's live database leases in line
    /// with its limits (connections, timeouts).
    ApplyLeaseLimits {
        slug: String,
    },
    /// Drop the schema with everything in it and the project's roles
    /// (removal with `drop_data`, once the project is unlisted).
    DropProject {
        slug: String,
    },
    /// Grant the owner to the runtime role for the rest of this transaction:
    /// the changes after it act on the owner's objects. Paired with
    /// [`Change::ReturnOwner`]; see `docs/decisions.md` for why the
    /// membership is never kept.
    BorrowOwner {
        owner: String,
        runtime: String,
    },
    /// Ends a [`Change::BorrowOwner`] (or gives up a membership kept by an
    /// earlier version).
    ReturnOwner {
        owner: String,
        runtime: String,
    },
    /// Mark the project archived (data kept, every access blocked).
    ArchiveProject {
        slug: String,
    },
    /// Delete the project's registry rows (its grants, teams, leases and
    /// migrations go with them).
    ForgetProject {
        slug: String,
    },
    /// Insert or update a principal's direct grant.
    RecordGrant {
        project: String,
        principal: Principal,
        platform_role: String,
        access_class: AccessClass,
    },
    DeleteGrant {
        project: String,
        principal: Principal,
    },
    /// Insert or update a team's grant.
    RecordTeam {
        project: String,
        team_id: String,
        platform_role: String,
        access_class: AccessClass,
    },
    AddTeamMembers {
        project: String,
        team_id: String,
        members: Vec<Uuid>,
    },
    RemoveTeamMembers {
        project: String,
        team_id: String,
        members: Vec<Uuid>,
    },
    DeleteTeam {
        project: String,
        team_id: String,
    },
    /// A migration that committed on the lease session.
    RecordMigration {
        project: String,
        version: String,
        name: String,
        checksum: String,
    },
    /// A lease's registry row (what `pre_request` checks tokens against).
    RecordLease {
        lease_id: Uuid,
        project: String,
        login_role: Option<String>,
        principal: Principal,
        platform_role: String,
        access_class: AccessClass,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    /// The login role of a database lease, made from its registry row
    /// (`lease_role_create`), with the connector's SCRAM verifier.
    CreateLeaseLogin {
        lease_id: Uuid,
        #[serde(serialize_with = "hidden")]
        verifier: Secret,
    },
    /// A renewal: the new expiry.
    ExtendLease {
        lease_id: Uuid,
        expires_at: DateTime<Utc>,
    },
    /// A renewal's new password and `VALID UNTIL` (`lease_role_renew`).
    RenewLeaseLogin {
        lease_id: Uuid,
        #[serde(serialize_with = "hidden")]
        verifier: Secret,
    },
    /// Mark leases revoked and take their login roles apart (`lease_revoke`).
    RevokeLeases {
        lease_ids: Vec<Uuid>,
        reason: String,
    },
    /// An API login role's password (`role_password`).
    SetLoginPassword {
        role: String,
        #[serde(serialize_with = "hidden")]
        verifier: Secret,
    },
    /// `REVOKE ALL ON kind object FROM grantee` of a grant to a role outside
    /// the project (names as PostgreSQL quoted them).
    RevokeForeignGrant {
        kind: String,
        object: String,
        grantee: String,
    },
    /// The same for one column.
    RevokeForeignColumnGrant {
        table: String,
        column: String,
        grantee: String,
    },
    /// Default privileges a project's role gave outside the project
    /// (`role_default_acl_revoke`; `schema`: none for those without `IN
    /// SCHEMA`).
    RevokeForeignDefaultAcl {
        role: String,
        schema: Option<String>,
        objects: String,
        grantee: String,
    },
    /// Take apart a lease-shaped role no live lease has (`lease_role_drop_orphan`).
    DropOrphanLeaseRole {
        role: String,
        slug: String,
    },
}

/// A secret field of a change, as a plan shows it.
fn hidden<S: serde::Serializer>(_: &Secret, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str("***")
}

impl Change {
    /// Whether applying this change needs the privileges of the project's
    /// owner (it acts on the schema or on objects the owner owns).
    pub fn needs_owner(&self) -> bool {
        matches!(
            self,
            Change::CreateSchema { .. }
                | Change::AlterSchemaOwner { .. }
                | Change::GrantSchemaUsage { .. }
                | Change::RevokeSchema { .. }
                | Change::DefaultPrivileges { .. }
                | Change::EnableRowLevelSecurity { .. }
                | Change::SetSecurityInvoker { .. }
                | Change::GrantOn { .. }
                | Change::RevokeAllOn { .. }
        )
    }
}

/// Wrap the changes from `at` on in a borrowed owner membership when one of
/// them needs it: the membership lasts only as long as the transaction that
/// applies the plan. A membership the runtime role already holds (`held`,
/// kept by an earlier version) is given up at the end all the same.
pub fn borrow_owner(changes: &mut Vec<Change>, at: usize, owner: &str, runtime: &str, held: bool) {
    let needed = changes[at..].iter().any(Change::needs_owner);
    let (owner, runtime) = (owner.to_string(), runtime.to_string());
    if needed && !held {
        changes.insert(
            at,
            Change::BorrowOwner {
                owner: owner.clone(),
                runtime: runtime.clone(),
            },
        );
    }
    if needed || held {
        changes.push(Change::ReturnOwner { owner, runtime });
    }
}

const DEFAULT_GRANTS: [(&str, &str, Class); 5] = [
    (
        "SELECT, INSERT, UPDATE, DELETE",
        "TABLES",
        Class::Authenticated,
    ),
    ("SELECT", "TABLES", Class::Anon),
    ("USAGE, SELECT", "SEQUENCES", Class::Authenticated),
    ("EXECUTE", "FUNCTIONS", Class::Authenticated),
    ("EXECUTE", "FUNCTIONS", Class::Anon),
];

#[derive(Clone, Copy)]
enum Class {
    Authenticated,
    Anon,
}

/// `pg_default_acl.defaclobjtype` of a default-privileges object class.
fn objtype(objects: &str) -> &'static str {
    match objects {
        "TABLES" => "r",
        "SEQUENCES" => "S",
        _ => "f",
    }
}

/// A lowercase PostgreSQL identifier that needs no quoting.
pub fn is_plain_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// Compare a project's actual state with the desired one. The steps run
/// in this order: each one's statements may rely on the earlier ones.
pub fn diff_project(
    current: &ProjectState,
    desired: &DesiredProject,
    ctx: &PlanContext,
) -> Result<Vec<Change>> {
    let n = &desired.names;
    refuse_takeover(current, n)?;
    let mut changes = Vec::new();
    let pool_changed = registry_changes(&mut changes, current, desired, ctx)?;
    role_changes(&mut changes, current, desired);
    setting_changes(&mut changes, current, desired);
    let runtime = ctx.server.runtime_role.as_str();
    membership_changes(&mut changes, current, desired, runtime);
    let borrow_at = changes.len();
    schema_changes(&mut changes, current, n);
    default_privilege_changes(&mut changes, current, n);
    object_changes(&mut changes, current, n);
    exposure_changes(&mut changes, current, desired, ctx, pool_changed);
    borrow_owner(
        &mut changes,
        borrow_at,
        &n.owner,
        runtime,
        current.holds_owner(&n.owner, runtime),
    );
    Ok(changes)
}

/// Step 1: the pool serving it (its registry row and login role), then the
/// project's registry row: the role functions check names against them.
/// Whether the pool changed.
fn registry_changes(
    changes: &mut Vec<Change>,
    current: &ProjectState,
    desired: &DesiredProject,
    ctx: &PlanContext,
) -> Result<bool> {
    let n = &desired.names;
    let pool_changed = match (&current.pool, desired.pool.as_str()) {
        (_, CENTRAL_POOL) => false,
        (Some(pool), name) if pool.name == name => {
            let before = changes.len();
            diff_pool(changes, pool, ctx)?;
            changes.len() != before
        }
        (_, name) => {
            return Err(Error::internal(format!(
                "the state of pool {name:?} was not read"
            )))
        }
    };
    let row = desired.row();
    if current.registry.as_ref() != Some(&row) {
        changes.push(Change::RecordProject {
            slug: n.slug.as_str().into(),
            schema: n.schema.clone(),
            state: row.state,
            exposed: row.exposed,
            isolation: row.isolation,
            tenant_code: row.tenant_code,
            limits: row.limits,
            pool: row.pool,
        });
    }
    // Live database leases follow a change of the limits.
    if current
        .registry
        .as_ref()
        .is_some_and(|r| r.limits != row_limits(desired))
    {
        changes.push(Change::ApplyLeaseLimits {
            slug: n.slug.as_str().into(),
        });
    }
    Ok(pool_changed)
}

/// Step 2: roles, with only the attributes the connector manages.
fn role_changes(changes: &mut Vec<Change>, current: &ProjectState, desired: &DesiredProject) {
    let n = &desired.names;
    for role in [&n.owner, &n.service_role, &n.authenticated, &n.anon] {
        match current.role(role) {
            None => changes.push(Change::CreateRole { role: role.clone() }),
            Some(r) => alter_role(changes, r, false),
        }
    }
    match (desired.isolation == Isolation::Isolated, current.role(&n.authenticator)) {
        (true, None) => changes.push(Change::CreateRole {
            role: n.authenticator.clone(),
        }),
        (true, Some(r)) => alter_role(changes, r, true),
        (false, Some(_)) => changes.push(Change::DropRole {
            role: n.authenticator.clone(),
        }),
        (false, None) => {}
    }
}

/// Step 3: role settings: the class roles' statement timeouts (PostgREST
/// applies the settings of the role it switches to), and the API login
/// role's, as Supabase sets its authenticator's.
fn setting_changes(changes: &mut Vec<Change>, current: &ProjectState, desired: &DesiredProject) {
    let n = &desired.names;
    let timeouts = &desired.limits.statement_timeout;
    let mut settings = vec![
        (&n.service_role, timeouts.service_role),
        (&n.authenticated, timeouts.authenticated),
        (&n.anon, timeouts.anon),
    ];
    if desired.isolation == Isolation::Isolated {
        settings.push((&n.authenticator, AUTHENTICATOR_STATEMENT_TIMEOUT_MS));
    }
    for (role, ms) in settings {
        let want = (ms > 0).then(|| ms.to_string());
        if current.setting(role, "statement_timeout") != want.as_deref() {
            changes.push(Change::SetRoleSetting {
                role: role.clone(),
                name: "statement_timeout".into(),
                value: want,
            });
        }
    }
}

/// Step 4: memberships: exactly the wanted ones (the runtime role's borrowed
/// owner aside, see [`borrow_owner`]).
fn membership_changes(
    changes: &mut Vec<Change>,
    current: &ProjectState,
    desired: &DesiredProject,
    runtime: &str,
) {
    let n = &desired.names;
    let isolated = desired.isolation == Isolation::Isolated;
    let wanted = desired.memberships();
    for w in &wanted {
        let grants: Vec<&Membership> = current.memberships_of(&w.role, &w.member).collect();
        if grants.iter().any(|m| membership_fits(m, w.kind)) {
            continue;
        }
        if !grants.is_empty() {
            changes.push(Change::RevokeRole {
                role: w.role.clone(),
                member: w.member.clone(),
            });
        }
        changes.push(Change::GrantRole {
            role: w.role.clone(),
            member: w.member.clone(),
        });
    }
    let mut extra: Vec<(&str, &str)> = current
        .memberships
        .iter()
        .filter(|m| !(m.role == n.owner && m.member == runtime))
        .filter(|m| {
            !wanted
                .iter()
                .any(|w| w.role == m.role && w.member == m.member)
        })
        // the isolated login role goes with its DROP ROLE
        .filter(|m| isolated || m.member != n.authenticator)
        .map(|m| (m.role.as_str(), m.member.as_str()))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    for (role, member) in extra {
        changes.push(Change::RevokeRole {
            role: role.into(),
            member: member.into(),
        });
    }
}

/// Step 5: the schema, owned by the project owner, USAGE for the class roles only.
fn schema_changes(changes: &mut Vec<Change>, current: &ProjectState, n: &ProjectNames) {
    match &current.schema {
        None => changes.push(Change::CreateSchema {
            schema: n.schema.clone(),
            owner: n.owner.clone(),
        }),
        Some(s) if s.owner != n.owner => changes.push(Change::AlterSchemaOwner {
            schema: n.schema.clone(),
            owner: n.owner.clone(),
        }),
        Some(_) => {}
    }
    let class_roles = [&n.service_role, &n.authenticated, &n.anon];
    let schema_grants = current
        .schema
        .as_ref()
        .map(|s| s.grants.as_slice())
        .unwrap_or_default();
    let lacking: Vec<String> = class_roles
        .into_iter()
        .filter(|role| {
            !schema_grants
                .iter()
                .any(|g| &g.grantee == *role && g.privilege == "USAGE")
        })
        .cloned()
        .collect();
    if !lacking.is_empty() {
        changes.push(Change::GrantSchemaUsage {
            schema: n.schema.clone(),
            roles: lacking,
        });
    }
    let mut foreign: Vec<&String> = schema_grants
        .iter()
        .filter(|g| !class_roles.contains(&&g.grantee) && g.grantee != n.authenticator)
        .map(|g| &g.grantee)
        .collect();
    foreign.dedup();
    for grantee in foreign {
        changes.push(Change::RevokeSchema {
            schema: n.schema.clone(),
            grantee: grantee.clone(),
        });
    }
}

/// Step 6: default privileges for objects created later by the owner.
fn default_privilege_changes(changes: &mut Vec<Change>, current: &ProjectState, n: &ProjectNames) {
    for (privileges, objects, class) in DEFAULT_GRANTS {
        let grantee = match class {
            Class::Authenticated => &n.authenticated,
            Class::Anon => &n.anon,
        };
        let present: Vec<&str> = current
            .default_acl
            .iter()
            .filter(|d| d.in_schema && d.objtype == objtype(objects) && &d.grantee == grantee)
            .map(|d| d.privilege.as_str())
            .collect();
        if !privileges.split(", ").all(|p| present.contains(&p)) {
            changes.push(Change::DefaultPrivileges {
                owner: n.owner.clone(),
                schema: Some(n.schema.clone()),
                grant: true,
                privileges: privileges.into(),
                objects: objects.into(),
                grantee: grantee.clone(),
            });
        }
    }
    if !current.functions_public_revoked {
        changes.push(Change::DefaultPrivileges {
            owner: n.owner.clone(),
            schema: None,
            grant: false,
            privileges: "EXECUTE".into(),
            objects: "FUNCTIONS".into(),
            grantee: "PUBLIC".into(),
        });
    }
}

/// Step 7: existing objects brought in line.
fn object_changes(changes: &mut Vec<Change>, current: &ProjectState, n: &ProjectNames) {
    for table in &current.tables_without_rls {
        changes.push(Change::EnableRowLevelSecurity {
            table: table.clone(),
        });
    }
    for view in &current.views_without_invoker {
        changes.push(Change::SetSecurityInvoker { view: view.clone() });
    }
    for m in &current.missing_grants {
        changes.push(Change::GrantOn {
            kind: m.kind.clone(),
            object: m.object.clone(),
            privileges: m.privileges.join(", "),
            role: m.role.clone(),
        });
    }
    for mv in &current.matviews_with_class_grants {
        for role in [&n.authenticated, &n.anon] {
            changes.push(Change::RevokeAllOn {
                kind: "TABLE".into(),
                object: mv.clone(),
                role: role.clone(),
            });
        }
    }
}

/// Step 8: the exposure (the schema exists by now): the pool it is on, and the
/// one it leaves.
fn exposure_changes(
    changes: &mut Vec<Change>,
    current: &ProjectState,
    desired: &DesiredProject,
    ctx: &PlanContext,
    pool_changed: bool,
) {
    let stored_pool = current.registry.as_ref().map(|r| r.pool.as_str());
    let moved = stored_pool.is_some_and(|p| p != desired.pool);
    if moved || pool_changed || exposure_outdated(current, desired, ctx.exposure) {
        let mut pools = vec![desired.pool.clone()];
        if let Some(old) = stored_pool.filter(|_| moved) {
            pools.insert(0, old.to_string());
        }
        changes.push(Change::ApplyExposure { pools });
    }
}

fn row_limits(desired: &DesiredProject) -> serde_json::Value {
    serde_json::to_value(&desired.limits).unwrap_or_default()
}

/// A configured pool's registry row and login role: LOGIN NOINHERIT, 8 s
/// statement timeout, able to switch to the pools' anonymous role. Its
/// password is generated apart and kept in OpenBao only.
fn diff_pool(changes: &mut Vec<Change>, pool: &PoolState, ctx: &PlanContext) -> Result<()> {
    let authenticator = pool_authenticator(&pool.name);
    // As configured; a pool no longer configured keeps its registry row
    // (its projects stay on it).
    match (
        ctx.pools.iter().find(|p| p.name == pool.name),
        &pool.registry,
    ) {
        (Some(config), registry) => {
            let max_projects = config
                .max_projects
                .unwrap_or_else(|| default_max_projects(ctx.server.version_num));
            let row = PoolRow {
                url: config.url.clone(),
                max_projects: max_projects as i32,
            };
            if registry.as_ref() != Some(&row) {
                changes.push(Change::RecordPool {
                    name: pool.name.clone(),
                    authenticator: authenticator.clone(),
                    url: config.url.clone(),
                    max_projects,
                });
            }
        }
        (None, Some(_)) => {}
        (None, None) => {
            return Err(Error::invalid_at(
                "/pool",
                format!("no API pool {:?} is configured (api.pools)", pool.name),
            ))
        }
    }
    match &pool.role {
        None => changes.push(Change::CreateRole {
            role: authenticator.clone(),
        }),
        Some(r) => alter_role(changes, r, true),
    }
    let timeout = AUTHENTICATOR_STATEMENT_TIMEOUT_MS.to_string();
    if pool.statement_timeout.as_deref() != Some(timeout.as_str()) {
        changes.push(Change::SetRoleSetting {
            role: authenticator.clone(),
            name: "statement_timeout".into(),
            value: Some(timeout),
        });
    }
    if !pool.anon_member {
        changes.push(Change::GrantRole {
            role: POOL_ANON_ROLE.into(),
            member: authenticator,
        });
    }
    Ok(())
}

/// `statement_timeout` of the API login roles the connector creates, as
/// Supabase sets its own `authenticator`'s.
pub const AUTHENTICATOR_STATEMENT_TIMEOUT_MS: u64 = 8000;

/// Roles or a schema of the project's names that no registered project
/// owns are someone else's: never taken over.
fn refuse_takeover(current: &ProjectState, n: &crate::names::ProjectNames) -> Result<()> {
    if let Some(other) = &current.schema_taken_by {
        return Err(Error::conflict(format!(
            "project {:?} maps to schema {}, which project {other:?} already uses",
            n.slug.as_str(),
            n.schema
        ))
        .with_details(serde_json::json!({"schema": n.schema, "project": other})));
    }
    if current.registry.is_none() {
        let mut taken: Vec<String> = current
            .roles
            .iter()
            .map(|r| format!("role {}", r.name))
            .collect();
        if current.schema.is_some() {
            taken.push(format!("schema {}", n.schema));
        }
        if !taken.is_empty() {
            return Err(Error::conflict(format!(
                "{} already exist(s) but belong(s) to no registered project; refusing to take them over",
                taken.join(", ")
            ))
            .with_details(serde_json::json!({"objects": taken})));
        }
    }
    Ok(())
}

/// Fix the attributes of an existing role the connector manages: a
/// NOLOGIN INHERIT project role, or (`login`) an API login role.
fn alter_role(changes: &mut Vec<Change>, r: &RoleState, login: bool) {
    let mut attributes = Vec::new();
    for (wrong, fix) in [
        (r.login != login, if login { "LOGIN" } else { "NOLOGIN" }),
        (
            r.inherit == login,
            if login { "NOINHERIT" } else { "INHERIT" },
        ),
        (r.createrole, "NOCREATEROLE"),
        (r.createdb, "NOCREATEDB"),
        (r.bypassrls, "NOBYPASSRLS"),
        (r.replication, "NOREPLICATION"),
        (r.superuser, "NOSUPERUSER"),
    ] {
        if wrong {
            attributes.push(fix.to_string());
        }
    }
    if !attributes.is_empty() {
        changes.push(Change::AlterRole {
            role: r.name.clone(),
            attributes,
        });
    }
}

/// Whether a grant has the options a wanted membership needs (on 15 every
/// grant inherits and allows SET).
fn membership_fits(m: &Membership, kind: MembershipKind) -> bool {
    match (m.inherit, m.set, kind) {
        (None, _, _) => true,
        (Some(inherit), set, MembershipKind::Inherit) => inherit && set.unwrap_or(true),
        (Some(inherit), set, MembershipKind::InheritOnly) => inherit && !set.unwrap_or(true),
        (Some(inherit), set, MembershipKind::Set) => !inherit && set.unwrap_or(true),
    }
}

/// Whether the served list must be recomputed for this project.
fn exposure_outdated(
    current: &ProjectState,
    desired: &DesiredProject,
    exposure: &ExposureConfig,
) -> bool {
    let settings =
        serde_json::json!({"mode": exposure.mode, "base_schemas": exposure.base_schemas});
    if current.exposure_settings.as_ref() != Some(&settings) {
        return true;
    }
    match exposure.mode {
        ExposureMode::RoleSetting => current.listed != desired.listed() || !current.pre_request_set,
        // pre_config and none: the list follows the registry row
        _ => {
            let was = current.registry.as_ref().is_some_and(|r| {
                r.state == Lifecycle::Active && r.exposed && r.isolation == Isolation::Shared
            });
            was != desired.listed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{ProjectNames, Slug};
    use crate::render::render_all;
    use serde_json::json;

    fn server(version_num: i32) -> ServerInfo {
        ServerInfo {
            version_num,
            runtime_role: "postgres".into(),
            dbname: "postgres".into(),
            host: "db".into(),
            port: 5432,
        }
    }

    fn empty_state() -> ProjectState {
        serde_json::from_value(json!({
            "registry": null, "schema_taken_by": null, "roles": [], "memberships": [],
            "settings": [], "schema": null, "default_acl": [], "functions_public_revoked": false,
            "tables_without_rls": [], "views_without_invoker": [], "missing_grants": [],
            "matviews_with_class_grants": [], "listed": false, "pre_request_set": false,
            "pool": null, "exposure_settings": null, "active_leases": 0
        }))
        .unwrap()
    }

    fn desired(params: serde_json::Value) -> DesiredProject {
        let names = ProjectNames::new(&Slug::parse("acme").unwrap());
        let given: crate::requests::ProjectSettings = serde_json::from_value(params).unwrap();
        DesiredProject::new(names, &given, None, &Config::default()).unwrap()
    }

    fn plan(state: &ProjectState, desired: &DesiredProject, config: &Config) -> Vec<Change> {
        let server = server(150018);
        let ctx = PlanContext::new(&server, config);
        diff_project(state, desired, &ctx).unwrap()
    }

    fn position(changes: &[Change], wanted: impl Fn(&Change) -> bool) -> usize {
        changes
            .iter()
            .position(wanted)
            .unwrap_or_else(|| panic!("missing in {changes:#?}"))
    }

    #[test]
    fn cold_plan_creates_everything_in_order() {
        let config = Config::default();
        let changes = plan(&empty_state(), &desired(json!({})), &config);
        // the registry row first: the role functions check names against it
        assert!(matches!(changes[0], Change::RecordProject { .. }));
        let create_owner = position(
            &changes,
            |c| matches!(c, Change::CreateRole { role } if role == "proj_acme_owner"),
        );
        let borrow = position(&changes, |c| matches!(c, Change::BorrowOwner { .. }));
        let schema = position(&changes, |c| matches!(c, Change::CreateSchema { .. }));
        let exposure = position(
            &changes,
            |c| matches!(c, Change::ApplyExposure { pools } if pools == &["central"]),
        );
        assert!(create_owner < borrow && borrow < schema && schema < exposure);
        // the owner is borrowed for the plan, not kept
        assert!(matches!(changes.last(), Some(Change::ReturnOwner { .. })));
        // the central API's login role holds the class roles, without their privileges
        for class in ["service_role", "authenticated", "anon"] {
            let role = format!("proj_acme_{class}");
            position(
                &changes,
                |c| matches!(c, Change::GrantRole { role: r, member } if *r == role && member == "authenticator"),
            );
        }
        // Supabase's default statement timeouts on the class roles
        position(
            &changes,
            |c| matches!(c, Change::SetRoleSetting { role, value: Some(v), .. } if role == "proj_acme_anon" && v == "3000"),
        );
        assert!(changes.iter().any(|c| matches!(c, Change::DefaultPrivileges { schema: None, grant: false, grantee, .. } if grantee == "PUBLIC")));
    }

    #[test]
    fn a_run_of_role_changes_renders_as_one_roles_apply_call() {
        let config = Config::default();
        let server = server(150006);
        let ctx = PlanContext::new(&server, &config);
        let changes = diff_project(&empty_state(), &desired(json!({})), &ctx).unwrap();
        let statements = render_all(&changes, &ctx);
        let batches: Vec<_> = statements
            .iter()
            .filter(|s| s.sql == "select supabase_connector.roles_apply($1)")
            .collect();
        assert_eq!(batches.len(), 1, "{statements:?}");
        let calls = batches[0].display();
        // every role change of the plan but the last (the owner handed back
        // after the schema's DDL), in the plan's order
        let role_changes = changes
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Change::CreateRole { .. }
                        | Change::SetRoleSetting { .. }
                        | Change::GrantRole { .. }
                        | Change::BorrowOwner { .. }
                        | Change::RevokeRole { .. }
                        | Change::ReturnOwner { .. }
                )
            })
            .count();
        assert_eq!(calls.matches("[\"role_").count(), role_changes - 1, "{calls}");
        assert!(calls.contains(r#"["role_create","proj_acme_owner"]"#), "{calls}");
        assert!(calls.contains(r#"["role_grant","proj_acme_owner","postgres"]"#), "{calls}");
        assert_eq!(
            statements.last().unwrap().display(),
            r#"select supabase_connector.role_revoke($1, $2) -- ["proj_acme_owner","postgres"]"#
        );
        // a single role change keeps its own statement
        let one = render_all(&changes[changes.len() - 1..], &ctx);
        assert_eq!(one.len(), 1);
        assert!(one[0].sql.starts_with("select supabase_connector.role_revoke("));
    }

    #[test]
    fn role_changes_are_role_function_calls() {
        let config = Config::default();
        let server = server(180006);
        let ctx = PlanContext::new(&server, &config);
        let changes = diff_project(&empty_state(), &desired(json!({})), &ctx).unwrap();
        for statement in render_all(&changes, &ctx) {
            let sql = statement.sql.to_uppercase();
            assert!(
                !(sql.starts_with("CREATE ROLE")
                    || sql.starts_with("ALTER ROLE")
                    || sql.starts_with("DROP ROLE")
                    || sql.starts_with("GRANT \"")
                    || sql.starts_with("REVOKE \"")),
                "a role statement outside the role functions: {}",
                statement.sql
            );
        }
    }

    #[test]
    fn unexposed_project_has_no_api_login_role() {
        let config = Config::default();
        let changes = plan(&empty_state(), &desired(json!({"expose": false})), &config);
        assert!(!changes
            .iter()
            .any(|c| matches!(c, Change::GrantRole { member, .. } if member == "authenticator")));
    }

    #[test]
    fn foreign_objects_are_a_conflict() {
        let mut state = empty_state();
        state.roles = vec![serde_json::from_value(json!({
            "name": "proj_acme_owner", "login": false, "inherit": true, "superuser": false,
            "createrole": false, "createdb": false, "replication": false, "bypassrls": false
        }))
        .unwrap()];
        let config = Config::default();
        let server = server(150018);
        let ctx = PlanContext::new(&server, &config);
        let err = diff_project(&state, &desired(json!({})), &ctx).unwrap_err();
        assert_eq!(err.code.as_str(), "conflict");
    }

    #[test]
    fn a_pooled_project_sets_its_pool_up_first() {
        let config = Config::from_json(Some(
            json!({"api": {"pools": [{"name": "p1", "max_projects": 5}]}}),
        ))
        .unwrap();
        let mut state = empty_state();
        state.pool = Some(PoolState {
            name: "p1".into(),
            registry: None,
            role: None,
            statement_timeout: None,
            anon_member: false,
        });
        let changes = plan(&state, &desired(json!({"pool": "p1"})), &config);
        let record_pool = position(
            &changes,
            |c| matches!(c, Change::RecordPool { name, max_projects: 5, .. } if name == "p1"),
        );
        let login = position(
            &changes,
            |c| matches!(c, Change::CreateRole { role } if role == "supabase_connector_pool_p1"),
        );
        let record = position(
            &changes,
            |c| matches!(c, Change::RecordProject { pool, .. } if pool == "p1"),
        );
        let grant = position(
            &changes,
            |c| matches!(c, Change::GrantRole { role, member } if member == "supabase_connector_pool_p1" && role.starts_with("proj_acme_")),
        );
        assert!(record_pool < login && login < record && record < grant);
        position(
            &changes,
            |c| matches!(c, Change::GrantRole { role, .. } if role == POOL_ANON_ROLE),
        );
        position(
            &changes,
            |c| matches!(c, Change::ApplyExposure { pools } if pools == &["p1"]),
        );
        assert!(!changes
            .iter()
            .any(|c| matches!(c, Change::GrantRole { member, .. } if member == "authenticator")));
    }

    #[test]
    fn moving_recomputes_both_lists() {
        let config = Config::from_json(Some(
            json!({"api": {"pools": [{"name": "p1"}, {"name": "p2"}]}}),
        ))
        .unwrap();
        let mut state = empty_state();
        state.registry = Some(crate::state::ProjectRow {
            state: Lifecycle::Active,
            exposed: true,
            isolation: Isolation::Shared,
            tenant_code: TenantCode::Allow,
            limits: json!({}),
            pool: "p1".into(),
        });
        state.pool = Some(PoolState {
            name: "p2".into(),
            registry: None,
            role: None,
            statement_timeout: None,
            anon_member: false,
        });
        // roles and schema of a registered project exist: not a takeover
        let changes = plan(&state, &desired(json!({"pool": "p2"})), &config);
        position(
            &changes,
            |c| matches!(c, Change::ApplyExposure { pools } if pools == &["p1", "p2"]),
        );
    }

    #[test]
    fn owner_is_borrowed_only_when_needed() {
        let grant_on = Change::GrantOn {
            kind: "TABLE".into(),
            object: "proj_acme.t".into(),
            privileges: "SELECT".into(),
            role: "proj_acme_anon".into(),
        };
        let create = Change::CreateRole {
            role: "proj_acme_owner".into(),
        };
        let exposure = Change::ApplyExposure {
            pools: vec!["central".into()],
        };
        // nothing acts on the owner's objects: nothing borrowed
        let mut changes = vec![create.clone(), exposure.clone()];
        borrow_owner(&mut changes, 1, "proj_acme_owner", "postgres", false);
        assert_eq!(changes.len(), 2);
        // a membership kept by an earlier version is given up
        let mut changes = vec![create.clone(), exposure.clone()];
        borrow_owner(&mut changes, 1, "proj_acme_owner", "postgres", true);
        assert!(matches!(changes.last(), Some(Change::ReturnOwner { .. })));
        // borrowed after the role exists, given back at the end
        let mut changes = vec![create.clone(), grant_on.clone(), exposure];
        borrow_owner(&mut changes, 1, "proj_acme_owner", "postgres", false);
        assert!(matches!(changes[1], Change::BorrowOwner { .. }));
        assert!(matches!(changes.last(), Some(Change::ReturnOwner { .. })));
        assert_eq!(changes.len(), 5);
    }

    #[test]
    fn membership_options_fit_per_version() {
        let grant = |inherit: Option<bool>, set: Option<bool>| Membership {
            role: "r".into(),
            member: "m".into(),
            inherit,
            set,
        };
        // PostgreSQL 15 records no options: any grant fits
        for kind in [
            MembershipKind::Inherit,
            MembershipKind::InheritOnly,
            MembershipKind::Set,
        ] {
            assert!(membership_fits(&grant(None, None), kind));
        }
        assert!(membership_fits(
            &grant(Some(true), Some(true)),
            MembershipKind::Inherit
        ));
        assert!(!membership_fits(
            &grant(Some(true), Some(true)),
            MembershipKind::InheritOnly
        ));
        assert!(membership_fits(
            &grant(Some(true), Some(false)),
            MembershipKind::InheritOnly
        ));
        assert!(membership_fits(
            &grant(Some(false), Some(true)),
            MembershipKind::Set
        ));
        assert!(!membership_fits(
            &grant(Some(false), Some(false)),
            MembershipKind::Set
        ));
    }

    #[test]
    fn plain_identifiers() {
        assert!(is_plain_identifier("graphql_public"));
        assert!(!is_plain_identifier("Public"));
        assert!(!is_plain_identifier("a;b"));
        assert!(!is_plain_identifier(""));
    }
}
