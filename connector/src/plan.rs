//! Diff and plan: compare actual with desired state, produce a typed list of
//! [`Change`]s, and render each as SQL for the server's version. All the
//! DDL the connector runs for a project is written here.

use crate::config::ExposureConfig;
use crate::db::{Param, ServerInfo, Statement};
use crate::error::{Error, Result};
use crate::inspect::{Membership, ProjectState, RoleState};
use crate::model::{DesiredProject, MembershipKind};
use crate::names::ident;
use serde::Serialize;

/// What version-dependent rendering needs to know.
pub struct PlanContext<'a> {
    pub server: &'a ServerInfo,
    pub exposure: &'a ExposureConfig,
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
        state: String,
        exposed: bool,
        isolation: String,
        tenant_code: String,
        limits: serde_json::Value,
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
    GrantSchemaUsage {
        schema: String,
        role: String,
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
    /// Recompute and apply the served schema list.
    ApplyExposure,
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

/// Compare a project's actual state with the desired one.
pub fn diff_project(
    current: &ProjectState,
    desired: &DesiredProject,
    ctx: &PlanContext,
) -> Result<Vec<Change>> {
    let n = &desired.names;
    refuse_takeover(current, n)?;
    let mut changes = Vec::new();

    // 1. The registry row first: the role functions check names against it.
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
        });
    }

    // 2. Roles, with only the attributes the connector manages.
    for role in [&n.owner, &n.service_role, &n.authenticated, &n.anon] {
        match current.role(role) {
            None => changes.push(Change::CreateRole { role: role.clone() }),
            Some(r) => alter_role(&mut changes, r, false),
        }
    }
    let isolated = desired.isolation == "isolated";
    match (isolated, current.role(&n.authenticator)) {
        (true, None) => changes.push(Change::CreateRole {
            role: n.authenticator.clone(),
        }),
        (true, Some(r)) => alter_role(&mut changes, r, true),
        (false, Some(_)) => changes.push(Change::DropRole {
            role: n.authenticator.clone(),
        }),
        (false, None) => {}
    }

    // 3. Role settings: the class roles' statement timeouts (PostgREST
    //    applies the settings of the role it switches to), and the API
    //    login role's, as Supabase sets its authenticator's.
    let timeouts = &desired.limits.statement_timeout;
    let mut settings = vec![
        (&n.service_role, timeouts.service_role),
        (&n.authenticated, timeouts.authenticated),
        (&n.anon, timeouts.anon),
    ];
    if isolated {
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

    // 4. Memberships: exactly the wanted ones (the runtime role's borrowed
    //    owner aside, see the end).
    let runtime = ctx.server.runtime_role.as_str();
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
    let borrow_at = changes.len();

    // 5. The schema, owned by the project owner, USAGE for the class roles only.
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
    for role in class_roles {
        if !schema_grants
            .iter()
            .any(|g| &g.grantee == role && g.privilege == "USAGE")
        {
            changes.push(Change::GrantSchemaUsage {
                schema: n.schema.clone(),
                role: role.clone(),
            });
        }
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

    // 6. Default privileges for objects created later by the owner.
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

    // 7. Existing objects brought in line.
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

    // 8. The exposure (the schema exists by now).
    if exposure_outdated(current, desired, ctx.exposure) {
        changes.push(Change::ApplyExposure);
    }
    borrow_owner(
        &mut changes,
        borrow_at,
        &n.owner,
        runtime,
        current.holds_owner(&n.owner, runtime),
    );
    Ok(changes)
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
    match exposure.mode.as_str() {
        "role_setting" => current.listed != desired.listed_centrally() || !current.pre_request_set,
        // pre_config and none: the list follows the registry row
        _ => {
            let was = current
                .registry
                .as_ref()
                .is_some_and(|r| r.state == "active" && r.exposed && r.isolation == "shared");
            was != desired.listed_centrally()
        }
    }
}

/// The role function a role change calls.
fn role_function(sql: &str, args: Vec<Param>) -> Vec<Statement> {
    vec![Statement::with(sql, args)]
}

/// Render one change as SQL for the server at hand.
pub fn render(change: &Change, ctx: &PlanContext) -> Vec<Statement> {
    let text = |s: &String| Param::Text(s.clone());
    let sql = match change {
        Change::RecordProject { slug, schema, state, exposed, isolation, tenant_code, limits } => {
            return vec![Statement::with(
                "insert into supabase_connector.projects (slug, schema_name, state, exposed, isolation, tenant_code, limits) \
                 values ($1, $2, $3, $4, $5, $6, $7) \
                 on conflict (slug) do update set state = excluded.state, exposed = excluded.exposed, \
                 isolation = excluded.isolation, tenant_code = excluded.tenant_code, limits = excluded.limits, updated_at = now()",
                vec![
                    text(slug),
                    text(schema),
                    text(state),
                    Param::Bool(*exposed),
                    text(isolation),
                    text(tenant_code),
                    Param::Json(limits.clone()),
                ],
            )]
        }
        Change::CreateRole { role } => {
            return role_function("select supabase_connector.role_create($1)", vec![text(role)])
        }
        Change::AlterRole { role, attributes } => {
            return role_function(
                "select supabase_connector.role_alter($1, $2)",
                vec![text(role), Param::TextArray(attributes.clone())],
            )
        }
        Change::SetRoleSetting { role, name, value } => {
            return role_function(
                "select supabase_connector.role_set($1, $2, $3)",
                vec![text(role), text(name), Param::OptText(value.clone())],
            )
        }
        Change::GrantRole { role, member } | Change::BorrowOwner { owner: role, runtime: member } => {
            return role_function("select supabase_connector.role_grant($1, $2)", vec![text(role), text(member)])
        }
        Change::RevokeRole { role, member } | Change::ReturnOwner { owner: role, runtime: member } => {
            return role_function("select supabase_connector.role_revoke($1, $2)", vec![text(role), text(member)])
        }
        Change::DropRole { role } => {
            return role_function("select supabase_connector.role_drop($1)", vec![text(role)])
        }
        Change::DropProject { slug } => {
            return role_function("select supabase_connector.project_drop($1)", vec![text(slug)])
        }
        Change::ApplyExposure => {
            return vec![Statement::with(
                "select supabase_connector.apply_exposure($1, $2)",
                vec![Param::Text(ctx.exposure.mode.clone()), Param::TextArray(ctx.exposure.base_schemas.clone())],
            )]
        }
        Change::CreateSchema { schema, owner } => {
            format!("CREATE SCHEMA {} AUTHORIZATION {}", ident(schema), ident(owner))
        }
        Change::AlterSchemaOwner { schema, owner } => format!("ALTER SCHEMA {} OWNER TO {}", ident(schema), ident(owner)),
        Change::GrantSchemaUsage { schema, role } => format!("GRANT USAGE ON SCHEMA {} TO {}", ident(schema), ident(role)),
        Change::RevokeSchema { schema, grantee } => {
            format!("REVOKE ALL ON SCHEMA {} FROM {}", ident(schema), grantee_sql(grantee))
        }
        Change::DefaultPrivileges { owner, schema, grant, privileges, objects, grantee } => {
            let in_schema = schema.as_ref().map(|s| format!(" IN SCHEMA {}", ident(s))).unwrap_or_default();
            let (verb, prep) = if *grant { ("GRANT", "TO") } else { ("REVOKE", "FROM") };
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {}{in_schema} {verb} {privileges} ON {objects} {prep} {}",
                ident(owner),
                grantee_sql(grantee)
            )
        }
        // Object names below come from the catalog, already qualified and
        // quoted by PostgreSQL (format('%I.%I'), regprocedure).
        Change::EnableRowLevelSecurity { table } => format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
        Change::SetSecurityInvoker { view } => format!("ALTER VIEW {view} SET (security_invoker = true)"),
        Change::GrantOn { kind, object, privileges, role } => {
            format!("GRANT {privileges} ON {kind} {object} TO {}", ident(role))
        }
        Change::RevokeAllOn { kind, object, role } => format!("REVOKE ALL ON {kind} {object} FROM {}", ident(role)),
    };
    vec![Statement::ddl(sql)]
}

fn grantee_sql(grantee: &str) -> String {
    if grantee == "PUBLIC" {
        "PUBLIC".into()
    } else {
        ident(grantee)
    }
}

/// Render a whole plan.
pub fn render_all(changes: &[Change], ctx: &PlanContext) -> Vec<Statement> {
    changes.iter().flat_map(|c| render(c, ctx)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::names::{ProjectNames, Slug};

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
        serde_json::from_value(serde_json::json!({
            "registry": null, "schema_taken_by": null, "roles": [], "memberships": [], "settings": [],
            "runtime_inherits_owner": false, "runtime_can_set_owner": false, "schema": null,
            "default_acl": [], "functions_public_revoked": false, "tables_without_rls": [],
            "views_without_invoker": [], "missing_grants": [], "matviews_with_class_grants": [],
            "listed": false, "pre_request_set": false, "exposure_settings": null, "active_leases": 0
        }))
        .unwrap()
    }

    fn desired() -> DesiredProject {
        let names = ProjectNames::new(&Slug::parse("acme").unwrap());
        DesiredProject::from_params(names, &serde_json::json!({}), None, &Config::default())
            .unwrap()
    }

    /// The cold plan as `dry_run` shows it (role functions with their arguments).
    fn sql_for(version: i32) -> Vec<String> {
        let config = Config::default();
        let server = server(version);
        let ctx = PlanContext {
            server: &server,
            exposure: &config.exposure,
        };
        let changes = diff_project(&empty_state(), &desired(), &ctx).unwrap();
        render_all(&changes, &ctx)
            .into_iter()
            .map(|s| s.display())
            .collect()
    }

    #[test]
    fn cold_plan_creates_everything_in_order() {
        let sql = sql_for(150018);
        let pos = |needle: &str| {
            sql.iter()
                .position(|s| s.contains(needle))
                .unwrap_or_else(|| panic!("{needle} missing in {sql:#?}"))
        };
        // the registry row first: the role functions check names against it
        assert_eq!(pos("insert into supabase_connector.projects"), 0);
        assert!(
            pos(r#"role_create($1) -- ["proj_acme_owner"]"#)
                < pos("CREATE SCHEMA \"proj_acme\" AUTHORIZATION \"proj_acme_owner\"")
        );
        let borrow =
            r#"select supabase_connector.role_grant($1, $2) -- ["proj_acme_owner","postgres"]"#;
        assert!(pos(borrow) < pos("CREATE SCHEMA"));
        // the owner is borrowed for the plan, not kept
        assert_eq!(
            sql.last().unwrap(),
            r#"select supabase_connector.role_revoke($1, $2) -- ["proj_acme_owner","postgres"]"#
        );
        assert!(pos("CREATE SCHEMA") < pos("apply_exposure"));
        assert!(sql.iter().any(|s| s == "ALTER DEFAULT PRIVILEGES FOR ROLE \"proj_acme_owner\" REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC"));
        // every role statement is a role function call: no role DDL in the plan
        assert!(!sql.iter().any(|s| {
            let upper = s.to_uppercase();
            upper.starts_with("CREATE ROLE")
                || upper.starts_with("ALTER ROLE")
                || upper.starts_with("GRANT \"")
                || upper.starts_with("REVOKE \"")
                || upper.starts_with("DROP ROLE")
        }));
        // the central authenticator switches to the class roles
        for class in ["service_role", "authenticated", "anon"] {
            pos(&format!(
                r#"role_grant($1, $2) -- ["proj_acme_{class}","authenticator"]"#
            ));
        }
    }

    #[test]
    fn plans_are_the_same_on_every_version() {
        // the role functions pick the version's grant options themselves
        assert_eq!(sql_for(150018), sql_for(180006));
    }

    #[test]
    fn foreign_objects_are_a_conflict() {
        let mut state = empty_state();
        state.roles = vec![serde_json::from_value(serde_json::json!({
            "name": "proj_acme_owner", "login": false, "inherit": true, "superuser": false,
            "createrole": false, "createdb": false, "replication": false, "bypassrls": false
        }))
        .unwrap()];
        let config = Config::default();
        let server = server(150018);
        let ctx = PlanContext {
            server: &server,
            exposure: &config.exposure,
        };
        let err = diff_project(&state, &desired(), &ctx).unwrap_err();
        assert_eq!(err.code.as_str(), "conflict");
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
        // nothing acts on the owner's objects: nothing borrowed
        let mut changes = vec![create.clone(), Change::ApplyExposure];
        borrow_owner(&mut changes, 1, "proj_acme_owner", "postgres", false);
        assert_eq!(changes.len(), 2);
        // the runtime role already holds it (kept by an earlier version):
        // nothing borrowed, and the kept membership is given up at the end
        let mut changes = vec![create.clone(), grant_on.clone()];
        borrow_owner(&mut changes, 1, "proj_acme_owner", "postgres", true);
        assert_eq!(changes.len(), 3);
        assert!(!changes
            .iter()
            .any(|c| matches!(c, Change::BorrowOwner { .. })));
        assert!(matches!(changes.last(), Some(Change::ReturnOwner { .. })));
        // borrowed after the role exists, given back at the end
        let mut changes = vec![create.clone(), grant_on.clone(), Change::ApplyExposure];
        borrow_owner(&mut changes, 1, "proj_acme_owner", "postgres", false);
        assert!(matches!(changes[1], Change::BorrowOwner { .. }));
        assert!(matches!(changes.last(), Some(Change::ReturnOwner { .. })));
        assert_eq!(changes.len(), 5);
    }

    #[test]
    fn a_cold_plan_borrows_once() {
        let config = Config::default();
        let server = server(150018);
        let ctx = PlanContext {
            server: &server,
            exposure: &config.exposure,
        };
        let cold = diff_project(&empty_state(), &desired(), &ctx).unwrap();
        let borrows = cold
            .iter()
            .filter(|c| matches!(c, Change::BorrowOwner { .. }))
            .count();
        assert_eq!(borrows, 1);
        let returns = cold
            .iter()
            .filter(|c| matches!(c, Change::ReturnOwner { .. }))
            .count();
        assert_eq!(returns, 1);
    }

    #[test]
    fn plain_identifiers() {
        assert!(is_plain_identifier("graphql_public"));
        assert!(!is_plain_identifier("Public"));
        assert!(!is_plain_identifier("a;b"));
        assert!(!is_plain_identifier(""));
    }
}
