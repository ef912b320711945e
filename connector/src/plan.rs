//! Diff and plan: compare actual with desired state, produce a typed list of
//! [`Change`]s, and render each as SQL for the server's version. All the
//! DDL the connector runs for a project is written here.

use crate::config::ExposureConfig;
use crate::db::{Param, ServerInfo, Statement};
use crate::error::{Error, Result};
use crate::inspect::ProjectState;
use crate::model::DesiredProject;
use crate::names::{ident, AUTH_ROLE};
use serde::Serialize;

/// What version-dependent rendering needs to know.
pub struct PlanContext<'a> {
    pub server: &'a ServerInfo,
    pub exposure: &'a ExposureConfig,
}

/// One typed change to the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// `CREATE ROLE … NOLOGIN INHERIT`
    CreateRole {
        role: String,
    },
    /// `ALTER ROLE` with only the attributes that differ.
    AlterRole {
        role: String,
        attributes: Vec<String>,
    },
    /// Make `member` a member of `role`, inheriting its privileges (and,
    /// with `set`, able to `SET ROLE` to it).
    GrantRole {
        role: String,
        member: String,
        set: bool,
    },
    RevokeRole {
        role: String,
        member: String,
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
    /// Insert or update the project's registry row.
    RecordProject {
        slug: String,
        schema: String,
        state: String,
        exposed: bool,
        isolation: String,
        tenant_code: String,
    },
    /// Recompute and apply the served schema list (`docs/operations.md`, exposure).
    ApplyExposure,
    /// `DROP SCHEMA … CASCADE` (removal with `drop_data`).
    DropSchema {
        schema: String,
    },
    /// `DROP OWNED BY …` then `DROP ROLE …`.
    DropRoles {
        roles: Vec<String>,
    },
    /// `CREATE ROLE … LOGIN NOINHERIT`: an isolated project's own API login
    /// role. Its password is generated apart and kept in OpenBao only.
    CreateLoginRole {
        role: String,
    },
    /// Let a login role `SET ROLE` to `role` without inheriting its
    /// privileges (how `authenticator` holds the API roles).
    GrantToLoginRole {
        role: String,
        member: String,
    },
    /// `DROP ROLE` of a role that owns nothing (a shared project's leftover
    /// API login role).
    DropRole {
        role: String,
    },
    /// Grant the owner to the runtime role for the rest of this transaction
    /// (`WITH INHERIT TRUE, SET TRUE` on 16+): the changes after it act on
    /// the owner's objects. Paired with [`Change::ReturnOwner`]; see
    /// `docs/decisions.md` for why the membership is never kept.
    BorrowOwner {
        owner: String,
        runtime: String,
    },
    /// `REVOKE owner FROM runtime`: ends a [`Change::BorrowOwner`].
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
                | Change::DropSchema { .. }
        )
    }
}

/// Wrap the changes from `at` on in a borrowed owner membership when one of
/// them needs it and the runtime role does not already hold the owner's
/// privileges (`holds`): the membership lasts only as long as the
/// transaction that applies the plan.
pub fn borrow_owner(changes: &mut Vec<Change>, at: usize, owner: &str, runtime: &str, holds: bool) {
    if holds || !changes[at..].iter().any(Change::needs_owner) {
        return;
    }
    let (owner, runtime) = (owner.to_string(), runtime.to_string());
    changes.insert(
        at,
        Change::BorrowOwner {
            owner: owner.clone(),
            runtime: runtime.clone(),
        },
    );
    changes.push(Change::ReturnOwner { owner, runtime });
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

    let mut changes = Vec::new();
    // 1. Roles, with only the attributes the connector manages.
    for role in [&n.owner, &n.service_role, &n.authenticated, &n.anon] {
        match current.role(role) {
            None => changes.push(Change::CreateRole { role: role.clone() }),
            Some(r) => {
                let mut attributes = Vec::new();
                if r.login {
                    attributes.push("NOLOGIN".to_string());
                }
                if !r.inherit {
                    attributes.push("INHERIT".to_string());
                }
                if r.createrole {
                    attributes.push("NOCREATEROLE".to_string());
                }
                if r.createdb {
                    attributes.push("NOCREATEDB".to_string());
                }
                if !attributes.is_empty() {
                    changes.push(Change::AlterRole {
                        role: role.clone(),
                        attributes,
                    });
                }
            }
        }
    }

    // 2. Memberships. The runtime role borrows the owner only while the
    //    plan needs it (see the end); whether it already holds the owner's
    //    privileges and SET is read with pg_has_role, not from a row.
    let borrow_at = changes.len();
    let wanted = [
        (n.owner.as_str(), n.service_role.as_str()),
        ("authenticated", n.authenticated.as_str()),
        ("anon", n.anon.as_str()),
        (AUTH_ROLE, n.owner.as_str()),
    ];
    for (role, member) in wanted {
        let ok = current
            .membership(role, member)
            .is_some_and(|m| m.inherit.unwrap_or(true));
        if !ok {
            changes.push(Change::GrantRole {
                role: role.into(),
                member: member.into(),
                set: false,
            });
        }
    }

    // 2b. Isolated mode: the project's own API login role,
    //     able to switch to its class roles. Shared mode has none.
    let isolated = desired.isolation == "isolated";
    match (isolated, current.role(&n.authenticator)) {
        (true, None) => changes.push(Change::CreateLoginRole {
            role: n.authenticator.clone(),
        }),
        (true, Some(r)) => {
            let mut attributes = Vec::new();
            for (wrong, fix) in [
                (!r.login, "LOGIN"),
                (r.inherit, "NOINHERIT"),
                (r.createrole, "NOCREATEROLE"),
                (r.createdb, "NOCREATEDB"),
                (r.bypassrls, "NOBYPASSRLS"),
                (r.replication, "NOREPLICATION"),
            ] {
                if wrong {
                    attributes.push(fix.to_string());
                }
            }
            if !attributes.is_empty() {
                changes.push(Change::AlterRole {
                    role: n.authenticator.clone(),
                    attributes,
                });
            }
        }
        (false, Some(_)) => changes.push(Change::DropRole {
            role: n.authenticator.clone(),
        }),
        (false, None) => {}
    }
    if isolated {
        for role in [&n.service_role, &n.authenticated, &n.anon] {
            if current.membership(role, &n.authenticator).is_none() {
                changes.push(Change::GrantToLoginRole {
                    role: role.clone(),
                    member: n.authenticator.clone(),
                });
            }
        }
    }

    // 3. The schema, owned by the project owner, USAGE for the class roles only.
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

    // 4. Default privileges for objects created later by the owner.
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

    // 5. Existing objects brought in line.
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

    // 6. The registry row, then the exposure (the schema exists by now).
    let row = desired.row();
    if current.registry.as_ref() != Some(&row) {
        changes.push(Change::RecordProject {
            slug: n.slug.as_str().into(),
            schema: n.schema.clone(),
            state: row.state,
            exposed: row.exposed,
            isolation: row.isolation,
            tenant_code: row.tenant_code,
        });
    }
    if exposure_outdated(current, desired, ctx.exposure) {
        changes.push(Change::ApplyExposure);
    }
    borrow_owner(
        &mut changes,
        borrow_at,
        &n.owner,
        &ctx.server.runtime_role,
        current.runtime_inherits_owner && current.runtime_can_set_owner,
    );
    Ok(changes)
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
        "role_setting" => current.listed != desired.listed_centrally(),
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

/// Render one change as SQL for the server at hand.
pub fn render(change: &Change, ctx: &PlanContext) -> Vec<Statement> {
    let pg16 = ctx.server.pg16_grants();
    let sql = match change {
        Change::CreateRole { role } => format!("CREATE ROLE {} NOLOGIN INHERIT", ident(role)),
        Change::AlterRole { role, attributes } => format!("ALTER ROLE {} {}", ident(role), attributes.join(" ")),
        Change::GrantRole { role, member, set } => grant_role_sql(role, member, *set, ctx.server),
        Change::BorrowOwner { owner, runtime } => grant_role_sql(owner, runtime, true, ctx.server),
        Change::RevokeRole { role, member } | Change::ReturnOwner { owner: role, runtime: member } => {
            revoke_role_sql(role, member)
        }
        Change::CreateLoginRole { role } => format!("CREATE ROLE {} LOGIN NOINHERIT", ident(role)),
        Change::GrantToLoginRole { role, member } => {
            let options = if pg16 { " WITH INHERIT FALSE, SET TRUE" } else { "" };
            format!("GRANT {} TO {}{options}", ident(role), ident(member))
        }
        Change::DropRole { role } => format!("DROP ROLE {}", ident(role)),
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
        Change::RecordProject { slug, schema, state, exposed, isolation, tenant_code } => {
            return vec![Statement::with(
                "insert into supabase_connector.projects (slug, schema_name, state, exposed, isolation, tenant_code) \
                 values ($1, $2, $3, $4, $5, $6) \
                 on conflict (slug) do update set state = excluded.state, exposed = excluded.exposed, \
                 isolation = excluded.isolation, tenant_code = excluded.tenant_code, updated_at = now()",
                vec![
                    Param::Text(slug.clone()),
                    Param::Text(schema.clone()),
                    Param::Text(state.clone()),
                    Param::Bool(*exposed),
                    Param::Text(isolation.clone()),
                    Param::Text(tenant_code.clone()),
                ],
            )]
        }
        Change::DropSchema { schema } => format!("DROP SCHEMA {} CASCADE", ident(schema)),
        Change::DropRoles { roles } => {
            let list = roles.iter().map(|r| ident(r)).collect::<Vec<_>>().join(", ");
            return vec![Statement::ddl(format!("DROP OWNED BY {list}")), Statement::ddl(format!("DROP ROLE {list}"))];
        }
        Change::ApplyExposure => {
            return vec![Statement::with(
                "select supabase_connector.apply_exposure($1, $2)",
                vec![Param::Text(ctx.exposure.mode.clone()), Param::TextArray(ctx.exposure.base_schemas.clone())],
            )]
        }
    };
    vec![Statement::ddl(sql)]
}

/// `GRANT role TO member`, inheriting its privileges (and, with `set`, able
/// to `SET ROLE` to it); PostgreSQL 16+ records both per grant.
pub fn grant_role_sql(role: &str, member: &str, set: bool, server: &ServerInfo) -> String {
    let options = match (server.pg16_grants(), set) {
        (true, true) => " WITH INHERIT TRUE, SET TRUE",
        (true, false) => " WITH INHERIT TRUE",
        (false, _) => "",
    };
    format!("GRANT {} TO {}{options}", ident(role), ident(member))
}

/// `REVOKE role FROM member`: on PostgreSQL 16+ it removes the grant the
/// current role made, not one made by another grantor.
pub fn revoke_role_sql(role: &str, member: &str) -> String {
    format!("REVOKE {} FROM {}", ident(role), ident(member))
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
            "registry": null, "schema_taken_by": null, "roles": [], "memberships": [],
            "runtime_inherits_owner": false, "runtime_can_set_owner": false, "schema": null,
            "default_acl": [], "functions_public_revoked": false, "tables_without_rls": [],
            "views_without_invoker": [], "missing_grants": [], "matviews_with_class_grants": [],
            "listed": false, "exposure_settings": null, "active_leases": 0
        }))
        .unwrap()
    }

    fn desired() -> DesiredProject {
        let names = ProjectNames::new(&Slug::parse("acme").unwrap());
        DesiredProject::from_params(names, &serde_json::json!({}), None, &Config::default())
    }

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
            .map(|s| s.sql)
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
        assert!(
            pos("CREATE ROLE \"proj_acme_owner\"")
                < pos("CREATE SCHEMA \"proj_acme\" AUTHORIZATION \"proj_acme_owner\"")
        );
        assert!(pos("GRANT \"proj_acme_owner\" TO \"postgres\"") < pos("CREATE SCHEMA"));
        // the owner is borrowed for the plan, not kept
        assert_eq!(
            sql.last().unwrap(),
            "REVOKE \"proj_acme_owner\" FROM \"postgres\""
        );
        assert!(pos("CREATE SCHEMA") < pos("apply_exposure"));
        assert!(pos("insert into supabase_connector.projects") < pos("apply_exposure"));
        assert!(sql.iter().any(|s| s == "ALTER DEFAULT PRIVILEGES FOR ROLE \"proj_acme_owner\" REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC"));
        // PostgreSQL 15 has no per-grant options
        assert!(!sql.iter().any(|s| s.contains("WITH INHERIT")));
    }

    #[test]
    fn pg16_grants_carry_inherit_and_set() {
        let sql = sql_for(180006);
        assert!(sql.contains(
            &"GRANT \"proj_acme_owner\" TO \"postgres\" WITH INHERIT TRUE, SET TRUE".to_string()
        ));
        assert!(sql.contains(
            &"GRANT \"authenticated\" TO \"proj_acme_authenticated\" WITH INHERIT TRUE".to_string()
        ));
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
        // the runtime role already holds it: nothing borrowed
        let mut changes = vec![create.clone(), grant_on.clone()];
        borrow_owner(&mut changes, 1, "proj_acme_owner", "postgres", true);
        assert_eq!(changes.len(), 2);
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
