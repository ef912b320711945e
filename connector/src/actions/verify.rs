//! `verify_database_project`: compare the live catalog with the model and
//! report drift as findings with stable codes; `repair` fixes what is safe.

use super::{audit, in_transaction, project_names};
use crate::apply::Audit;
use crate::config::Limits;
use crate::db::{Conn, Lock};
use crate::domain::{ExposureMode, Isolation, Lifecycle};
use crate::error::{Error, Result};
use crate::inspect::project_state;
use crate::model::DesiredProject;
use crate::names::{ProjectNames, Slug};
use crate::plan::{diff_project, render, Change, PlanContext};
use crate::sql::{Param, Statement};
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
        Change::AlterRole { role, attributes } => {
            let privileged = attributes
                .iter()
                .any(|a| ["NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS"].contains(&a.as_str()));
            (
                if privileged {
                    "role_privileged_attribute"
                } else {
                    "role_attributes"
                },
                format!("role {role}"),
                attributes.join(" "),
                "differs".into(),
            )
        }
        Change::SetRoleSetting { role, name, value } => (
            "role_setting",
            format!("role {role}"),
            match value {
                Some(v) => format!("{name} = {v}"),
                None => format!("{name} not set"),
            },
            "differs".into(),
        ),
        Change::GrantRole { role, member } => (
            "membership_missing",
            format!("{member} in {role}"),
            "member".into(),
            "not a member, or with other options".into(),
        ),
        Change::RevokeRole { role, member } => (
            "membership_extra",
            format!("{member} in {role}"),
            "not a member".into(),
            "member".into(),
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
        Change::GrantSchemaUsage { schema, roles } => (
            "schema_usage_missing",
            format!("schema {schema}"),
            format!("USAGE for {}", roles.join(", ")),
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
        Change::ApplyExposure { .. } => (
            "exposure_mismatch",
            "pgrst.db_schemas".to_string(),
            "the list computed from the registry, and the pre-request check".into(),
            "differs for this project".into(),
        ),
        Change::DropRole { role } => (
            "role_extra",
            format!("role {role}"),
            "absent (the project is served by the central API)".into(),
            "exists".into(),
        ),
        Change::ApplyLeaseLimits { .. }
        | Change::RecordPool { .. }
        | Change::RecordProject { .. }
        | Change::DropProject { .. }
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
/// functions, lease roles out of step with the registry.
async fn extra_findings(
    conn: &Conn,
    names: &ProjectNames,
    isolation: Isolation,
    limits: &Limits,
    ctx: &PlanContext<'_>,
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
               coalesce((select json_agg(r.rolname::text order by r.rolname)
                         -- from the class roles' members (offset 0 keeps it the driving side)
                         from (select distinct m.member from pg_auth_members m join pg_roles g on g.oid = m.roleid
                               where g.rolname = any($2) offset 0) cm
                         join pg_roles r on r.oid = cm.member
                         where r.rolname::text ~ '^lease_[0-9a-f]{32}(_anon)?$'
                           and not exists (select 1 from supabase_connector.leases l where l.revoked_at is null
                                           and r.rolname in (l.role_name, l.anon_role_name))), '[]'),
               coalesce((select json_agg(l.lease_id order by l.lease_id) from supabase_connector.leases l
                         where l.project = $3 and l.revoked_at is null and l.role_name is not null
                           and not exists (select 1 from pg_roles r where r.rolname = l.role_name)), '[]'),
               coalesce((select json_agg(json_build_object('role', r.rolname, 'class', l.access_class,
                                  'connection_limit', r.rolconnlimit, 'settings', coalesce(s.setconfig, '{}')) order by r.rolname)
                         from supabase_connector.leases l join pg_roles r on r.rolname = l.role_name
                         left join pg_db_role_setting s on s.setrole = r.oid and s.setdatabase = 0
                         where l.project = $3 and l.revoked_at is null), '[]'),
               (select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint from pg_class c
                where c.relnamespace = to_regnamespace($1) and c.relkind in ('r', 'p', 'm'))",
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
        let default_acl = |scope: Option<&str>, objects: &str| {
            Statement::with(
                "select supabase_connector.role_default_acl_revoke($1, $2, $3, $4)",
                vec![
                    Param::Text(object.trim_matches('"').replace("\"\"", "\"")),
                    Param::OptText(scope.map(str::to_string)),
                    Param::Text(objects.into()),
                    Param::Text(grantee.trim_matches('"').replace("\"\"", "\"")),
                ],
            )
        };
        let repair = match kind {
            "SCHEMA" | "TABLE" | "SEQUENCE" | "ROUTINE" | "TYPE" => vec![Statement::ddl(format!(
                "REVOKE ALL ON {kind} {object} FROM {grantee}"
            ))],
            k if k.starts_with("DEFAULT ") => {
                vec![default_acl(Some(&names.schema), &k["DEFAULT ".len()..])]
            }
            k if k.starts_with("GLOBAL DEFAULT ") => {
                vec![default_acl(None, &k["GLOBAL DEFAULT ".len()..])]
            }
            "COLUMN" => split_column(object)
                .map(|(table, column)| {
                    vec![Statement::ddl(format!(
                        "REVOKE ALL ({column}) ON TABLE {table} FROM {grantee}"
                    ))]
                })
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
    if isolation == Isolation::Shared && functions > 0 {
        out.push(Finding {
            code: "tenant_code_in_shared_mode",
            severity: "warning",
            object: format!("schema {}", names.schema),
            expected: "no project code when the central authenticator is shared".into(),
            actual: format!("{functions} function(s): code called through the central API can switch to other projects' roles"),
            repair: vec![],
        });
    }
    let orphans: Value = row.get(3);
    for o in orphans.as_array().into_iter().flatten() {
        let r = o.as_str().unwrap_or_default();
        out.push(Finding {
            code: "lease_role_orphan",
            severity: "error",
            object: format!("role {r}"),
            expected: "a live lease in the registry".into(),
            actual: "no live lease".into(),
            repair: vec![Statement::with(
                "select supabase_connector.lease_role_drop_orphan($1, $2)",
                vec![
                    Param::Text(r.into()),
                    Param::Text(names.slug.as_str().into()),
                ],
            )],
        });
    }
    let missing: Value = row.get(4);
    for m in missing.as_array().into_iter().flatten() {
        let id = m.as_str().unwrap_or_default();
        let lease_id = uuid::Uuid::parse_str(id).map_err(|_| Error::internal("bad lease id"))?;
        out.push(Finding {
            code: "lease_role_missing",
            severity: "error",
            object: format!("lease {id}"),
            expected: "its role exists".into(),
            actual: "role missing".into(),
            // the rest of the lease goes with it
            repair: vec![crate::lease::revoke_statement(
                vec![lease_id],
                "role missing (verify)",
            )],
        });
    }
    let lease_roles: Value = row.get(5);
    let drifted: Vec<&str> = lease_roles
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| !lease_role_fits(r, limits))
        .filter_map(|r| r["role"].as_str())
        .collect();
    for role in drifted {
        out.push(Finding {
            code: "lease_role_limits",
            severity: "error",
            object: format!("role {role}"),
            expected: format!(
                "CONNECTION LIMIT {}, its class's statement_timeout and idle_in_transaction_session_timeout {}",
                limits.connection_limit, limits.idle_in_transaction_session_timeout
            ),
            actual: "differs".into(),
            // one call brings every live lease role of the project in line
            // (repeated repairs run once)
            repair: render(
                &Change::ApplyLeaseLimits {
                    slug: names.slug.as_str().into(),
                },
                ctx,
            ),
        });
    }
    let size: i64 = row.get(6);
    if let Some(max) = limits.max_size_bytes {
        if size as u64 > max {
            out.push(Finding {
                code: "size_over_limit",
                severity: "warning",
                object: format!("schema {}", names.schema),
                expected: format!("at most {max} bytes (limits.max_size_bytes)"),
                actual: format!("{size} bytes"),
                repair: vec![],
            });
        }
    }
    Ok(out)
}

/// Whether a live lease's login role carries its project's limits: the
/// connection limit and the two timeouts of its class (absent when 0).
fn lease_role_fits(role: &Value, limits: &Limits) -> bool {
    let class = role["class"].as_str().unwrap_or_default();
    let statement = match class {
        "anon" => limits.statement_timeout.anon,
        "authenticated" => limits.statement_timeout.authenticated,
        _ => limits.statement_timeout.service_role,
    };
    let settings: Vec<&str> = role["settings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let has = |name: &str, ms: u64| {
        let found = settings
            .iter()
            .find_map(|s| s.strip_prefix(name).and_then(|v| v.strip_prefix('=')));
        match (ms, found) {
            (0, found) => found.is_none(),
            (ms, Some(v)) => v == ms.to_string(),
            _ => false,
        }
    };
    role["connection_limit"].as_i64() == Some(i64::from(limits.connection_limit))
        && has("statement_timeout", statement)
        && has(
            "idle_in_transaction_session_timeout",
            limits.idle_in_transaction_session_timeout,
        )
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

/// The repairs in order: the diff's own plan (registry row, roles,
/// memberships, then the owner's objects with the owner borrowed), then the
/// other findings' repairs, which act on the owner's objects too, before
/// the owner is given back. `passwords` (of recreated API login roles)
/// follow their role's creation.
fn repair_statements(
    changes: &[Change],
    extra: &[Finding],
    names: &ProjectNames,
    ctx: &PlanContext,
    passwords: &[(String, Statement)],
) -> Vec<Statement> {
    let runtime = ctx.server.runtime_role.clone();
    let owner = names.owner.clone();
    let (body, give_back): (Vec<&Change>, bool) = match changes.last() {
        Some(Change::ReturnOwner { .. }) => (changes[..changes.len() - 1].iter().collect(), true),
        _ => (changes.iter().collect(), false),
    };
    let mut out = Vec::new();
    for change in body {
        out.extend(render(change, ctx));
        if let Change::CreateRole { role } = change {
            // a recreated API login role gets the password just kept in OpenBao
            out.extend(
                passwords
                    .iter()
                    .filter(|(r, _)| r == role)
                    .map(|(_, s)| s.clone()),
            );
        }
    }
    // repairs shared by several findings run once
    let mut seen = std::collections::HashSet::new();
    let extra: Vec<Statement> = extra
        .iter()
        .flat_map(|f| f.repair.iter().cloned())
        .filter(|s| seen.insert(s.display()))
        .collect();
    let borrowed = give_back;
    if !extra.is_empty() && !borrowed {
        out.extend(render(
            &Change::BorrowOwner {
                owner: owner.clone(),
                runtime: runtime.clone(),
            },
            ctx,
        ));
    }
    let any_extra = !extra.is_empty();
    out.extend(extra);
    if borrowed || any_extra {
        out.extend(render(&Change::ReturnOwner { owner, runtime }, ctx));
    }
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
        pools: &c.config.api.pools,
    };
    if repair {
        conn.begin(Lock::Project(&names.schema)).await?;
    }
    let body = async {
        let state = project_state(conn, &db.server, names, None).await?;
        let Some(row) = state.registry.clone() else {
            return Err(Error::not_found(format!(
                "project {:?} is not provisioned",
                names.slug.as_str()
            )));
        };
        let runtime = &db.server.runtime_role;
        let mut findings = Vec::new();
        let mut changes = Vec::new();
        let mut passwords = Vec::new();
        if row.state == Lifecycle::Active {
            let desired =
                DesiredProject::from_params(names.clone(), &json!({}), Some(&row), &c.config)?;
            changes = diff_project(&state, &desired, &ctx)?;
            for ch in &changes {
                let Some(mut finding) = from_change(ch, &ctx) else {
                    continue;
                };
                if let (true, Change::CreateRole { role }) = (repair, ch) {
                    // As upsert does: a recreated API login role gets a new
                    // password, kept in OpenBao only (written first).
                    let path = if *role == names.authenticator {
                        Some(super::project::authenticator_secret_path(names))
                    } else if *role == crate::names::pool_authenticator(&row.pool) {
                        Some(super::project::pool_secret_path(&row.pool))
                    } else {
                        None
                    };
                    if let Some(path) = path {
                        let secret = crate::lease::scram::new_password();
                        c.openbao()?
                            .write_kv(
                                &path,
                                json!({ super::project::AUTHENTICATOR_PASSWORD_KEY: secret.expose() }),
                            )
                            .await?;
                        let statement = crate::lease::password_statement(role, &secret);
                        finding.repair.push(statement.clone());
                        passwords.push((role.clone(), statement));
                    }
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
                repair: render(
                    &Change::ApplyExposure {
                        pools: vec![row.pool.clone()],
                    },
                    &ctx,
                ),
            });
        }
        if state.holds_owner(&names.owner, runtime) {
            // Borrowed per transaction, never kept: a lasting grant (from an
            // earlier version) makes every membership check of the runtime
            // role walk one more role per project.
            findings.push(Finding {
                code: "membership_lasting",
                severity: "warning",
                object: format!("{runtime} in {}", names.owner),
                expected: "borrowed only while an action needs it".into(),
                actual: "kept".into(),
                repair: render(
                    &Change::ReturnOwner {
                        owner: names.owner.clone(),
                        runtime: runtime.clone(),
                    },
                    &ctx,
                ),
            });
        }
        let limits =
            DesiredProject::from_params(names.clone(), &json!({}), Some(&row), &c.config)?.limits;
        let extra = extra_findings(conn, names, row.isolation, &limits, &ctx).await?;
        if repair {
            let mut statements = repair_statements(&changes, &extra, names, &ctx, &passwords);
            if changes.is_empty() && extra.is_empty() {
                // only a lasting membership, or an archived project's listing
                statements = findings.iter().flat_map(|f| f.repair.clone()).collect();
            }
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
                    outcome: json!({"findings": findings.len() + extra.len()}),
                },
            )
            .await?;
        }
        findings.extend(extra);
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
    // Database-wide: every API pool's served list, pre-request hook,
    // memberships and password.
    let global = if p.get("project").is_none() {
        verify_pools(c, &conn, repair).await?
    } else {
        Vec::new()
    };
    let clean = results.iter().all(|r| r["clean"] == true)
        && global
            .iter()
            .all(|f| f["severity"] != "error" || f["repaired"] == true);
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
    for f in &global {
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

/// Findings about the API pools (`central` and the registered ones): each
/// login role's served list and pre-request hook (role_setting mode), a
/// membership in a project role it does not serve (or, for a configured
/// pool, in any role but its projects' class roles and the pools'
/// anonymous role), a pool login role whose password is not in OpenBao.
async fn verify_pools(c: &Connector, conn: &Conn, repair: bool) -> Result<Vec<Value>> {
    let db = c.db().await?;
    let ctx = PlanContext {
        server: &db.server,
        exposure: &c.config.exposure,
        pools: &c.config.api.pools,
    };
    let rows = conn
        .query(
            "select po.name, po.authenticator, to_regrole(quote_ident(po.authenticator)) is not null,
                    supabase_connector.served_setting(po.authenticator, 'pgrst.db_schemas'),
                    supabase_connector.db_schemas_list_for(po.name, $1),
                    supabase_connector.served_pre_request(po.authenticator),
                    coalesce((select json_agg(g.rolname::text order by g.rolname)
                              from pg_auth_members a join pg_roles g on g.oid = a.roleid
                              where a.member = to_regrole(quote_ident(po.authenticator))
                                and g.rolname <> 'supabase_connector_pool_anon'
                                and (po.name <> 'central' or exists (select 1 from supabase_connector.project_role(g.rolname)))
                                and not exists (select 1 from supabase_connector.projects p
                                                where p.pool = po.name and p.state = 'active' and p.exposed
                                                  and p.isolation = 'shared'
                                                  and g.rolname in (p.schema_name || '_service_role',
                                                                    p.schema_name || '_authenticated', p.schema_name || '_anon'))), '[]')
             from (select 'central' as name, 'authenticator' as authenticator
                   union all select name, authenticator from supabase_connector.pools) po
             order by po.name = 'central' desc, po.name",
            &[&c.config.exposure.base_schemas],
        )
        .await?;
    let mut findings = Vec::new();
    let mut statements = Vec::new();
    for row in &rows {
        let pool: String = row.get(0);
        let login: String = row.get(1);
        if !row.get::<_, bool>(2) {
            // made by the next upsert of one of its projects
            findings.push(json!({"code": "role_missing", "severity": "error", "project": null, "pool": pool,
                                 "object": format!("role {login}"), "expected": "exists", "actual": "missing",
                                 "repairable": false, "repaired": false}));
            continue;
        }
        let served: Option<String> = row.get(3);
        let computed: Option<String> = row.get(4);
        let pre_request: Option<String> = row.get(5);
        let apply = render(
            &Change::ApplyExposure {
                pools: vec![pool.clone()],
            },
            &ctx,
        );
        if c.config.exposure.mode == ExposureMode::RoleSetting {
            if served != computed {
                findings.push(json!({"code": "exposure_list_drift", "severity": "error", "project": null, "pool": pool,
                                     "object": "pgrst.db_schemas", "role": login, "expected": computed,
                                     "actual": served, "repairable": true, "repaired": repair}));
                statements.extend(apply.clone());
            }
            if pre_request.as_deref() != Some("supabase_connector_api.pre_request") {
                findings.push(json!({"code": "pre_request_missing", "severity": "error", "project": null, "pool": pool,
                                     "object": "pgrst.db_pre_request", "role": login,
                                     "expected": "supabase_connector_api.pre_request", "actual": pre_request,
                                     "repairable": true, "repaired": repair}));
                statements.extend(apply);
            }
        }
        let extra: Value = row.get(6);
        for role in extra
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            findings.push(json!({"code": "membership_extra", "severity": "error", "project": null, "pool": pool,
                                 "object": format!("{login} in {role}"), "expected": "not a member (a role of no project this pool serves)",
                                 "actual": "member", "repairable": true, "repaired": repair}));
            statements.extend(render(
                &Change::RevokeRole {
                    role: role.into(),
                    member: login.clone(),
                },
                &ctx,
            ));
        }
        if pool != crate::names::CENTRAL_POOL {
            let path = super::project::pool_secret_path(&pool);
            let stored = c.openbao()?.read_kv(&path).await;
            let present = matches!(&stored, Ok(kv) if kv.contains_key(super::project::AUTHENTICATOR_PASSWORD_KEY));
            if !present {
                if repair {
                    let password = crate::lease::scram::new_password();
                    c.openbao()?
                        .write_kv(&path, json!({ super::project::AUTHENTICATOR_PASSWORD_KEY: password.expose() }))
                        .await?;
                    statements.push(crate::lease::password_statement(&login, &password));
                }
                findings.push(json!({"code": "pool_password_missing", "severity": "error", "project": null, "pool": pool,
                                     "object": format!("OpenBao {}/{path}", c.config.openbao.path),
                                     "expected": "the login role's password", "actual": "missing",
                                     "repairable": true, "repaired": repair}));
            }
        }
    }
    if repair && !statements.is_empty() {
        let mut seen = std::collections::HashSet::new();
        statements.retain(|s| seen.insert(s.display()));
        conn.begin(Lock::None).await?;
        in_transaction(conn, conn.run(&statements)).await?;
    }
    Ok(findings)
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
