//! `verify_database_project`: compare the live catalog with the model and
//! report drift as findings with stable codes; `repair` fixes what is safe.

use super::{audit, in_transaction, project_names};
use crate::apply::Audit;
use crate::db::{Conn, Lock, Param, ServerInfo, Statement};
use crate::error::{Error, Result};
use crate::inspect::{project_state, Membership, ProjectState};
use crate::model::DesiredProject;
use crate::names::{ident, LeaseRoles, ProjectNames, Slug, AUTH_ROLE};
use crate::plan::{diff_project, grant_role_sql, render, revoke_role_sql, Change, PlanContext};
use crate::Connector;
use serde_json::{json, Value};

/// One drift finding.
#[derive(Debug, Clone)]
pub struct Finding {
    pub code: &'static str,
    pub severity: &'static str,
    pub object: String,
    pub expected: String,
    pub actual: String,
    /// SQL that repairs it, when repairing is safe.
    pub repair: Vec<Statement>,
}

impl Finding {
    fn to_json(&self, repaired: bool) -> Value {
        json!({"code": self.code, "severity": self.severity, "object": self.object,
               "expected": self.expected, "actual": self.actual, "repairable": !self.repair.is_empty(),
               "repaired": repaired && !self.repair.is_empty()})
    }
}

/// Findings from the diff between the model and the catalog.
fn from_change(change: &Change, ctx: &PlanContext) -> Option<Finding> {
    let (code, object, expected, actual) = match change {
        Change::CreateRole { role } => (
            "role_missing",
            format!("role {role}"),
            "exists".into(),
            "missing".into(),
        ),
        Change::AlterRole { role, attributes } => (
            "role_attributes",
            format!("role {role}"),
            attributes.join(" "),
            "differs".into(),
        ),
        Change::GrantRole { role, member, .. } => (
            "membership_missing",
            format!("{member} in {role}"),
            "member (inherit)".into(),
            "not a member".into(),
        ),
        Change::CreateSchema { schema, .. } => (
            "schema_missing",
            format!("schema {schema}"),
            "exists".into(),
            "missing".into(),
        ),
        Change::AlterSchemaOwner { schema, owner } => (
            "schema_owner",
            format!("schema {schema}"),
            format!("owner {owner}"),
            "another owner".into(),
        ),
        Change::GrantSchemaUsage { schema, role } => (
            "schema_usage_missing",
            format!("schema {schema}"),
            format!("USAGE for {role}"),
            "no USAGE".into(),
        ),
        Change::RevokeSchema { schema, grantee } => (
            "schema_grant_extra",
            format!("schema {schema}"),
            "privileges only for the project's roles".into(),
            format!("granted to {grantee}"),
        ),
        Change::DefaultPrivileges {
            owner,
            schema,
            privileges,
            objects,
            grantee,
            grant,
            ..
        } => (
            "default_privileges_missing",
            format!(
                "default privileges of {owner}{}",
                schema
                    .as_ref()
                    .map(|s| format!(" in {s}"))
                    .unwrap_or_default()
            ),
            format!(
                "{} {privileges} ON {objects} {} {grantee}",
                if *grant { "GRANT" } else { "REVOKE" },
                if *grant { "TO" } else { "FROM" }
            ),
            "missing".into(),
        ),
        Change::EnableRowLevelSecurity { table } => (
            "rls_disabled",
            format!("table {table}"),
            "row level security enabled".into(),
            "disabled".into(),
        ),
        Change::SetSecurityInvoker { view } => (
            "view_without_security_invoker",
            format!("view {view}"),
            "security_invoker = true".into(),
            "runs with the owner's rights".into(),
        ),
        Change::GrantOn {
            kind,
            object,
            privileges,
            role,
        } => (
            "privileges_missing",
            format!("{} {object}", kind.to_lowercase()),
            format!("{privileges} for {role}"),
            "missing".into(),
        ),
        Change::RevokeAllOn { object, role, .. } => (
            "matview_class_grant",
            format!("materialized view {object}"),
            format!("nothing for {role} (filled with the owner's rights, past RLS)"),
            format!("granted to {role}"),
        ),
        Change::ApplyExposure => (
            "exposure_mismatch",
            "pgrst.db_schemas".to_string(),
            "the list computed from the registry".into(),
            "differs for this project".into(),
        ),
        Change::CreateLoginRole { role } => (
            "role_missing",
            format!("role {role}"),
            "exists (the isolated project's API login role)".into(),
            "missing".into(),
        ),
        Change::GrantToLoginRole { role, member } => (
            "membership_missing",
            format!("{member} in {role}"),
            "member (set role, no inherit)".into(),
            "not a member".into(),
        ),
        Change::DropRole { role } => (
            "role_extra",
            format!("role {role}"),
            "absent (the project is served by the central API)".into(),
            "exists".into(),
        ),
        Change::RecordProject { .. }
        | Change::RevokeRole { .. }
        | Change::DropSchema { .. }
        | Change::DropRoles { .. }
        | Change::BorrowOwner { .. }
        | Change::ReturnOwner { .. } => return None,
    };
    Some(Finding {
        code,
        severity: "error",
        object,
        expected,
        actual,
        repair: render(change, ctx),
    })
}

/// Drift the model-based diff cannot see: foreign grants, SECURITY DEFINER
/// functions, privileged attributes, extra memberships, lease roles out of
/// step with the registry.
async fn extra_findings(
    conn: &Conn,
    server: &ServerInfo,
    names: &ProjectNames,
    state: &ProjectState,
    isolation: &str,
) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let row = conn
        .query_one(
            "select
               coalesce((select json_agg(json_build_object('kind', kind, 'object', object, 'grantee', grantee, 'privilege', privilege))
                         from supabase_connector.foreign_grants($1)), '[]'),
               coalesce((select json_agg(p.oid::regprocedure::text order by 1) from pg_proc p
                         where p.pronamespace = to_regnamespace($1) and p.prosecdef), '[]'),
               (select count(*) from pg_proc p where p.pronamespace = to_regnamespace($1)),
               coalesce((select json_agg(json_build_object('role', r.rolname, 'member', pg_has_role(current_user, r.oid, 'USAGE'),
                                  'admin', exists (select 1 from pg_auth_members a where a.roleid = r.oid
                                                   and a.member = (select oid from pg_roles where rolname = current_user) and a.admin_option))
                                  order by r.rolname)
                         -- from the class roles' members (offset 0 keeps it the driving side)
                         from (select distinct m.member from pg_auth_members m join pg_roles g on g.oid = m.roleid
                               where g.rolname = any($2) offset 0) cm
                         join pg_roles r on r.oid = cm.member
                         where r.rolname::text ~ '^lease_[0-9a-f]{32}(_anon)?$'
                           and not exists (select 1 from supabase_connector.leases l where l.revoked_at is null
                                           and r.rolname in (l.role_name, l.anon_role_name))), '[]'),
               coalesce((select json_agg(json_build_object('lease_id', l.lease_id,
                                  'anon_role', (select r.rolname from pg_roles r where r.rolname = l.anon_role_name))
                                  order by l.lease_id) from supabase_connector.leases l
                         where l.project = $3 and l.revoked_at is null
                           and not exists (select 1 from pg_roles r where r.rolname = l.role_name)), '[]')",
            &[&names.schema, &vec![names.service_role.clone(), names.authenticated.clone(), names.anon.clone()], &names.slug.as_str()],
        )
        .await?;
    let foreign: Value = row.get(0);
    for g in foreign.as_array().into_iter().flatten() {
        let kind = g["kind"].as_str().unwrap_or_default();
        let object = g["object"].as_str().unwrap_or_default();
        let grantee = g["grantee"].as_str().unwrap_or_default();
        let privilege = g["privilege"].as_str().unwrap_or_default();
        // Catalog output: names already quoted by PostgreSQL.
        let repair = match kind {
            "SCHEMA" | "TABLE" | "SEQUENCE" | "ROUTINE" | "TYPE" => vec![Statement::ddl(format!("REVOKE ALL ON {kind} {object} FROM {grantee}"))],
            k if k.starts_with("DEFAULT ") => vec![Statement::ddl(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {object} IN SCHEMA {} REVOKE ALL ON {} FROM {grantee}",
                ident(&names.schema),
                &k["DEFAULT ".len()..]
            ))],
            k if k.starts_with("GLOBAL DEFAULT ") => {
                let mut repair = Vec::new();
                if LeaseRoles::is_lease_role(object) {
                    // the runtime role holds no lease role until it revokes it
                    repair.push(Statement::ddl(grant_role_sql(object, &server.runtime_role, false, server)));
                }
                repair.push(Statement::ddl(format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {object} REVOKE ALL ON {} FROM {grantee}",
                    &k["GLOBAL DEFAULT ".len()..]
                )));
                repair
            }
            "COLUMN" => split_column(object)
                .map(|(table, column)| vec![Statement::ddl(format!("REVOKE ALL ({column}) ON TABLE {table} FROM {grantee}"))])
                .unwrap_or_default(),
            _ => vec![],
        };
        out.push(Finding {
            code: "foreign_grant",
            severity: "error",
            object: format!("{} {object}", kind.to_lowercase()),
            expected: "privileges only for the project's own roles".into(),
            actual: format!("{privilege} granted to {grantee}"),
            repair,
        });
    }
    let definers: Value = row.get(1);
    for f in definers.as_array().into_iter().flatten() {
        out.push(Finding {
            code: "security_definer_function",
            severity: "warning",
            object: format!("function {}", f.as_str().unwrap_or_default()),
            expected: "SECURITY INVOKER".into(),
            actual: "SECURITY DEFINER: runs with its owner's rights".into(),
            repair: vec![],
        });
    }
    let functions: i64 = row.get(2);
    if isolation == "shared" && functions > 0 {
        out.push(Finding {
            code: "tenant_code_in_shared_mode",
            severity: "warning",
            object: format!("schema {}", names.schema),
            expected: "no project code when the central authenticator is shared".into(),
            actual: format!("{functions} function(s): code called through the central API can switch to other projects' roles"),
            repair: vec![],
        });
    }
    for role in [
        &names.owner,
        &names.service_role,
        &names.authenticated,
        &names.anon,
    ] {
        if let Some(r) = state.role(role) {
            for (flag, name) in [
                (r.superuser, "SUPERUSER"),
                (r.replication, "REPLICATION"),
                (r.bypassrls, "BYPASSRLS"),
            ] {
                if flag {
                    out.push(Finding {
                        code: "role_privileged_attribute",
                        severity: "error",
                        object: format!("role {role}"),
                        expected: format!("NO{name}"),
                        actual: name.into(),
                        // only a superuser may take these away
                        repair: vec![],
                    });
                }
            }
        }
    }
    // Memberships the model does not have.
    let runtime = server.runtime_role.as_str();
    let allowed = |role: &str, member: &str| {
        (role == names.owner && (member == names.service_role || member == runtime))
            || (role == "authenticated" && member == names.authenticated)
            || (role == "anon" && member == names.anon)
            || (role == AUTH_ROLE && member == names.owner)
            || ([
                &names.service_role,
                &names.authenticated,
                &names.anon,
                &names.authenticator,
            ]
            .contains(&&role.to_string())
                && member == runtime)
            || (member == runtime && role == names.authenticator)
            || (isolation == "isolated"
                && member == names.authenticator
                && [&names.service_role, &names.authenticated, &names.anon]
                    .contains(&&role.to_string()))
    };
    // On 16+ a membership can only be revoked by its grantor (or a
    // superuser): one granted by a superuser is reported, not repaired.
    let revocable = |m: &Membership| {
        !server.pg16_grants() || m.grantor.as_deref().unwrap_or(runtime) == runtime
    };
    for m in &state.memberships {
        if m.role == names.owner && m.member == runtime && !m.admin {
            // Borrowed per transaction, never kept: a lasting grant (from an
            // earlier version) makes every membership check of the runtime
            // role walk one more role per project.
            if revocable(m) {
                out.push(Finding {
                    code: "membership_lasting",
                    severity: "warning",
                    object: format!("{} in {}", m.member, m.role),
                    expected: "borrowed only while an action needs it".into(),
                    actual: "kept".into(),
                    repair: vec![Statement::ddl(revoke_role_sql(&m.role, &m.member))],
                });
            }
            continue;
        }
        if !allowed(&m.role, &m.member) {
            let grantor = m.grantor.as_deref().unwrap_or(runtime);
            let revocable = revocable(m);
            out.push(Finding {
                code: "membership_extra",
                severity: "error",
                object: format!("{} in {}", m.member, m.role),
                expected: "not a member".into(),
                actual: if revocable {
                    "member".into()
                } else {
                    format!("member, granted by {grantor}: revoke it as {grantor} or a superuser")
                },
                repair: if revocable {
                    vec![Statement::ddl(revoke_role_sql(&m.role, &m.member))]
                } else {
                    vec![]
                },
            });
        }
    }
    let orphans: Value = row.get(3);
    for o in orphans.as_array().into_iter().flatten() {
        let r = o["role"].as_str().unwrap_or_default();
        let member = o["member"].as_bool().unwrap_or(false);
        let admin = o["admin"].as_bool().unwrap_or(false);
        // Dropping what it owns needs its privileges: on 15 CREATEROLE may
        // grant them; on 16+ only a role made by the runtime role (which
        // holds ADMIN OPTION on it) can be taken apart (others are reported).
        let repair = match (member, server.pg16_grants() && !admin) {
            (true, _) => drop_lease_role(r, &names.owner, None),
            (false, false) => drop_lease_role(r, &names.owner, Some(server)),
            (false, true) => vec![],
        };
        out.push(Finding {
            code: "lease_role_orphan",
            severity: "error",
            object: format!("role {r}"),
            expected: "a live lease in the registry".into(),
            actual: "no live lease".into(),
            repair,
        });
    }
    let missing: Value = row.get(4);
    for m in missing.as_array().into_iter().flatten() {
        let id = m["lease_id"].as_str().unwrap_or_default();
        let lease_id = uuid::Uuid::parse_str(id).map_err(|_| Error::internal("bad lease id"))?;
        let mut repair = vec![Statement::with(
            "update supabase_connector.leases set revoked_at = now(), revoke_reason = 'role missing (verify)' where lease_id = $1",
            vec![Param::Uuid(lease_id)],
        )];
        if let Some(anon) = m["anon_role"].as_str() {
            // the rest of the lease goes with it
            repair.extend(drop_lease_role(anon, &names.owner, Some(server)));
        }
        out.push(Finding {
            code: "lease_role_missing",
            severity: "error",
            object: format!("lease {id}"),
            expected: "its role exists".into(),
            actual: "role missing".into(),
            repair,
        });
    }
    Ok(out)
}

/// `table (column)` as `foreign_grants` writes it (both quoted by
/// PostgreSQL where needed) split into its two names.
fn split_column(object: &str) -> Option<(&str, &str)> {
    let inner = object.strip_suffix(')')?;
    // the last " (" outside a quoted name
    inner.rmatch_indices(" (").map(|(i, _)| i).find_map(|i| {
        let (table, column) = (&inner[..i], &inner[i + 2..]);
        let balanced = |s: &str| s.matches('"').count().is_multiple_of(2);
        (balanced(table) && balanced(column) && !column.is_empty()).then_some((table, column))
    })
}

/// Statements taking a leftover lease role apart (as a revocation does),
/// after granting it to the runtime role of `grant_to` when that role lacks
/// its privileges.
fn drop_lease_role(role: &str, owner: &str, grant_to: Option<&ServerInfo>) -> Vec<Statement> {
    let mut out = Vec::new();
    if let Some(server) = grant_to {
        out.push(Statement::ddl(grant_role_sql(
            role,
            &server.runtime_role,
            false,
            server,
        )));
    }
    out.extend([
        Statement::ddl(format!("ALTER ROLE {} NOLOGIN", ident(role))),
        Statement::with(
            "select pg_terminate_backend(pid, 5000) from pg_stat_activity where usename = $1",
            vec![Param::Text(role.into())],
        ),
        Statement::ddl(format!(
            "REASSIGN OWNED BY {} TO {}",
            ident(role),
            ident(owner)
        )),
        Statement::ddl(format!("DROP OWNED BY {}", ident(role))),
        Statement::ddl(format!("DROP ROLE {}", ident(role))),
    ]);
    out
}

/// The repairs of all findings, in order, with the owner borrowed from
/// `borrow_at` on when the runtime role does not hold it; a lasting
/// membership is given up last, after the repairs that use it.
fn repair_statements(
    findings: &[Finding],
    borrow_at: Option<usize>,
    holds: bool,
    owner: &str,
    ctx: &PlanContext,
) -> Vec<Statement> {
    let repairs = |fs: &[Finding], lasting: bool| -> Vec<Statement> {
        fs.iter()
            .filter(|f| (f.code == "membership_lasting") == lasting)
            .flat_map(|f| f.repair.iter().cloned())
            .collect()
    };
    let Some(at) = borrow_at.filter(|_| !holds) else {
        let mut out = repairs(findings, false);
        out.extend(repairs(findings, true));
        return out;
    };
    let mut out = repairs(&findings[..at], false);
    let later = repairs(&findings[at..], false);
    if !later.is_empty() {
        let runtime = ctx.server.runtime_role.clone();
        let owner = owner.to_string();
        out.extend(render(
            &Change::BorrowOwner {
                owner: owner.clone(),
                runtime: runtime.clone(),
            },
            ctx,
        ));
        out.extend(later);
        out.extend(render(&Change::ReturnOwner { owner, runtime }, ctx));
    }
    out.extend(repairs(findings, true));
    out
}

/// Verify (and optionally repair) one project.
async fn verify_project(
    c: &Connector,
    conn: &Conn,
    names: &ProjectNames,
    repair: bool,
) -> Result<Value> {
    let db = c.db().await?;
    let ctx = PlanContext {
        server: &db.server,
        exposure: &c.config.exposure,
    };
    if repair {
        conn.begin(Lock::Project(&names.schema)).await?;
    }
    let body = async {
        let state = project_state(conn, &db.server, names).await?;
        let Some(row) = state.registry.clone() else {
            return Err(Error::not_found(format!(
                "project {:?} is not provisioned",
                names.slug.as_str()
            )));
        };
        let mut findings = Vec::new();
        // Where the repairs start needing the owner's privileges (after any
        // role the diff recreates).
        let mut borrow_at = None;
        if row.state == "active" {
            let desired =
                DesiredProject::from_params(names.clone(), &json!({}), Some(&row), &c.config);
            for ch in diff_project(&state, &desired, &ctx)? {
                if matches!(ch, Change::BorrowOwner { .. }) {
                    borrow_at = Some(findings.len());
                }
                let Some(mut finding) = from_change(&ch, &ctx) else {
                    continue;
                };
                if let Change::DropRole { role } = &ch {
                    // On 16+ dropping a role needs ADMIN OPTION on it, which
                    // the runtime role lacks on one a superuser created.
                    let runtime = &db.server.runtime_role;
                    let admin = state
                        .memberships
                        .iter()
                        .any(|m| &m.role == role && &m.member == runtime && m.admin);
                    if db.server.pg16_grants() && !admin {
                        finding.repair.clear();
                        finding.actual = format!("exists, and {runtime} holds no ADMIN OPTION on it: drop it as a superuser");
                    }
                }
                if repair && matches!(ch, Change::CreateLoginRole { .. }) {
                    // As upsert does: a recreated API login role gets a new
                    // password, kept in OpenBao only (written first).
                    let password = crate::lease::scram::new_password();
                    c.openbao()?
                        .write_kv(
                            &super::project::authenticator_secret_path(names),
                            json!({ super::project::AUTHENTICATOR_PASSWORD_KEY: password.expose() }),
                        )
                        .await?;
                    finding.repair.push(crate::lease::password_statement(
                        &names.authenticator,
                        &password,
                    ));
                }
                findings.push(finding);
            }
        } else if state.listed {
            findings.push(Finding {
                code: "exposure_mismatch",
                severity: "error",
                object: "pgrst.db_schemas".into(),
                expected: "archived project not listed".into(),
                actual: "listed".into(),
                repair: render(&Change::ApplyExposure, &ctx),
            });
        }
        let borrow_at =
            borrow_at.or_else(|| state.role(&names.owner).is_some().then_some(findings.len()));
        findings.extend(extra_findings(conn, &db.server, names, &state, &row.isolation).await?);
        if repair {
            let holds = state.runtime_inherits_owner && state.runtime_can_set_owner;
            let statements = repair_statements(&findings, borrow_at, holds, &names.owner, &ctx);
            conn.run(&statements).await?;
            audit(
                conn,
                Audit {
                    action: "verify_database_project",
                    project: Some(names.slug.as_str()),
                    lease_id: None,
                    changed: !statements.is_empty(),
                    statements: statements.len() as u32,
                    params: &json!({"repair": true, "project": names.slug.as_str()}),
                    outcome: json!({"findings": findings.len()}),
                },
            )
            .await?;
        }
        let clean = findings
            .iter()
            .all(|f| f.severity != "error" || (repair && !f.repair.is_empty()));
        Ok(json!({
            "project": names.slug.as_str(),
            "clean": clean,
            "findings": findings.iter().map(|f| f.to_json(repair)).collect::<Vec<_>>(),
        }))
    };
    if repair {
        in_transaction(conn, body).await
    } else {
        body.await
    }
}

pub async fn verify(c: &Connector, p: &Value) -> Result<Value> {
    let repair = p.get("repair").and_then(Value::as_bool).unwrap_or(false) && !super::dry_run(p);
    let db = c.db().await?;
    let conn = db.conn().await?;
    let projects: Vec<ProjectNames> = if p.get("project").is_some() {
        vec![project_names(p)?]
    } else {
        conn.query(
            "select slug from supabase_connector.projects order by slug",
            &[],
        )
        .await?
        .iter()
        .map(|r| Slug::parse(r.get(0)).map(|s| ProjectNames::new(&s)))
        .collect::<Result<_>>()?
    };
    let mut results = Vec::new();
    for names in &projects {
        results.push(verify_project(c, &conn, names, repair).await?);
    }
    // The served list as a whole (role_setting mode): computed vs served.
    let mut global = Vec::new();
    if c.config.exposure.mode == "role_setting" && p.get("project").is_none() {
        let row = conn
            .query_one(
                "select supabase_connector.served_db_schemas(), supabase_connector.db_schemas_list($1)",
                &[&c.config.exposure.base_schemas],
            )
            .await?;
        let served: Option<String> = row.get(0);
        let computed: Option<String> = row.get(1);
        if served != computed {
            let ctx = PlanContext {
                server: &db.server,
                exposure: &c.config.exposure,
            };
            let repair_sql = render(&Change::ApplyExposure, &ctx);
            if repair {
                conn.run(&repair_sql).await?;
            }
            global.push(json!({"code": "exposure_list_drift", "severity": "error", "object": "pgrst.db_schemas",
                               "expected": computed, "actual": served, "repairable": true, "repaired": repair}));
        }
    }
    let clean = results.iter().all(|r| r["clean"] == true) && (global.is_empty() || repair);
    // Every finding of the call at the top level, each naming its project
    // (null for what concerns the whole database); `projects[]` keeps them
    // per project.
    let mut findings = Vec::new();
    for r in &mut results {
        let project = r["project"].clone();
        for f in r["findings"].as_array_mut().into_iter().flatten() {
            f["project"] = project.clone();
            findings.push(f.clone());
        }
    }
    for f in &mut global {
        f["project"] = Value::Null;
        findings.push(f.clone());
    }
    if !repair {
        audit(
            &conn,
            Audit {
                action: "verify_database_project",
                project: p.get("project").and_then(Value::as_str),
                lease_id: None,
                changed: false,
                statements: 0,
                params: p,
                outcome: json!({"clean": clean}),
            },
        )
        .await?;
    }
    Ok(json!({"projects": results, "findings": findings, "clean": clean}))
}

#[cfg(test)]
mod tests {
    use super::split_column;

    #[test]
    fn splits_column_objects() {
        assert_eq!(split_column("proj_a.t (note)"), Some(("proj_a.t", "note")));
        assert_eq!(
            split_column(r#"proj_a."odd (t" ("x (y")"#),
            Some((r#"proj_a."odd (t""#, r#""x (y""#))
        );
        assert_eq!(split_column("proj_a.t"), None);
    }
}
