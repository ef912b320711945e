//! `verify_database_project`: compare the live catalog with the model and
//! report drift as findings with stable codes; `repair` applies the changes
//! that fix what is safe, in one transaction per project.

use super::{audit, context};
use crate::apply::Audit;
use crate::config::Limits;
use crate::db::{Conn, Lock};
use crate::domain::{ExposureMode, FindingCode, Isolation, Lifecycle, Severity};
use crate::error::Result;
use crate::inspect::project_state;
use crate::lease;
use crate::model::DesiredProject;
use crate::names::{pool_authenticator, ProjectNames, CENTRAL_POOL};
use crate::plan::{diff_project, Change, PlanContext};
use crate::registry::{self, PoolStatus, ProjectExtras};
use crate::render::render_all;
use crate::requests::VerifyProjects;
use crate::state::{ProjectRow, ProjectState};
use crate::Connector;
use serde_json::{json, Value};

use super::project::{authenticator_secret_path, pool_secret_path, AUTHENTICATOR_PASSWORD_KEY};

/// One drift finding, and the changes that repair it when repairing is safe.
#[derive(Debug, Clone)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    pub object: String,
    pub expected: String,
    pub actual: String,
    pub repair: Vec<Change>,
    /// The API pool it concerns (database-wide findings).
    pub pool: Option<String>,
}

impl Finding {
    fn error(
        code: FindingCode,
        object: String,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Finding {
        Finding {
            code,
            severity: Severity::Error,
            object,
            expected: expected.into(),
            actual: actual.into(),
            repair: Vec::new(),
            pool: None,
        }
    }

    fn warning(
        code: FindingCode,
        object: String,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Finding {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(code, object, expected, actual)
        }
    }

    fn repaired_by(mut self, changes: Vec<Change>) -> Finding {
        self.repair = changes;
        self
    }

    fn to_json(&self, repaired: bool) -> Value {
        let mut out = json!({"code": self.code, "severity": self.severity, "object": self.object,
               "expected": self.expected, "actual": self.actual, "repairable": !self.repair.is_empty(),
               "repaired": repaired && !self.repair.is_empty()});
        if let Some(pool) = &self.pool {
            out["project"] = Value::Null;
            out["pool"] = json!(pool);
        }
        out
    }
}

/// The finding a change of the diff stands for (none for the bookkeeping
/// ones: the registry row, the borrowed owner).
fn from_change(change: &Change) -> Option<Finding> {
    use FindingCode as C;
    let found = |code, object: String, expected: String, actual: &str| {
        Some(Finding::error(code, object, expected, actual).repaired_by(vec![change.clone()]))
    };
    match change {
        Change::CreateRole { role } => found(
            C::RoleMissing,
            format!("role {role}"),
            "exists".into(),
            "missing",
        ),
        Change::AlterRole { role, attributes } => {
            let privileged = attributes
                .iter()
                .any(|a| ["NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS"].contains(&a.as_str()));
            let code = if privileged {
                C::RolePrivilegedAttribute
            } else {
                C::RoleAttributes
            };
            found(
                code,
                format!("role {role}"),
                attributes.join(" "),
                "differs",
            )
        }
        Change::SetRoleSetting { role, name, value } => {
            let expected = match value {
                Some(v) => format!("{name} = {v}"),
                None => format!("{name} not set"),
            };
            found(C::RoleSetting, format!("role {role}"), expected, "differs")
        }
        Change::GrantRole { role, member } => found(
            C::MembershipMissing,
            format!("{member} in {role}"),
            "member".into(),
            "not a member, or with other options",
        ),
        Change::RevokeRole { role, member } => found(
            C::MembershipExtra,
            format!("{member} in {role}"),
            "not a member".into(),
            "member",
        ),
        Change::DropRole { role } => found(
            C::RoleExtra,
            format!("role {role}"),
            "absent (the project is served by a shared API)".into(),
            "exists",
        ),
        Change::CreateSchema { schema, .. } => found(
            C::SchemaMissing,
            format!("schema {schema}"),
            "exists".into(),
            "missing",
        ),
        Change::AlterSchemaOwner { schema, owner } => found(
            C::SchemaOwner,
            format!("schema {schema}"),
            format!("owner {owner}"),
            "another owner",
        ),
        Change::GrantSchemaUsage { schema, roles } => found(
            C::SchemaUsageMissing,
            format!("schema {schema}"),
            format!("USAGE for {}", roles.join(", ")),
            "no USAGE",
        ),
        Change::RevokeSchema { schema, grantee } => found(
            C::SchemaGrantExtra,
            format!("schema {schema}"),
            "privileges only for the project's roles".into(),
            &format!("granted to {grantee}"),
        ),
        Change::DefaultPrivileges {
            owner,
            schema,
            grant,
            privileges,
            objects,
            grantee,
        } => found(
            C::DefaultPrivilegesMissing,
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
            "missing",
        ),
        Change::EnableRowLevelSecurity { table } => found(
            C::RlsDisabled,
            format!("table {table}"),
            "row level security enabled".into(),
            "disabled",
        ),
        Change::SetSecurityInvoker { view } => found(
            C::ViewWithoutSecurityInvoker,
            format!("view {view}"),
            "security_invoker = true".into(),
            "runs with the owner's rights",
        ),
        Change::GrantOn {
            kind,
            object,
            privileges,
            role,
        } => found(
            C::PrivilegesMissing,
            format!("{} {object}", kind.to_lowercase()),
            format!("{privileges} for {role}"),
            "missing",
        ),
        Change::RevokeAllOn { object, role, .. } => found(
            C::MatviewClassGrant,
            format!("materialized view {object}"),
            format!("nothing for {role} (filled with the owner's rights, past RLS)"),
            &format!("granted to {role}"),
        ),
        Change::ApplyExposure { .. } => found(
            C::ExposureMismatch,
            "pgrst.db_schemas".into(),
            "the list computed from the registry, and the pre-request check".into(),
            "differs for this project",
        ),
        _ => None,
    }
}

/// Findings the diff cannot see, from what `registry::project_extras` read.
fn extra_findings(
    x: &ProjectExtras,
    names: &ProjectNames,
    isolation: Isolation,
    limits: &Limits,
) -> Vec<Finding> {
    use FindingCode as C;
    let mut out: Vec<Finding> = x
        .foreign_grants
        .iter()
        .map(|g| foreign_grant(g, names))
        .collect();
    for f in &x.security_definers {
        out.push(Finding::warning(
            C::SecurityDefinerFunction,
            format!("function {f}"),
            "SECURITY INVOKER",
            "SECURITY DEFINER: runs with its owner's rights",
        ));
    }
    if isolation == Isolation::Shared && x.functions > 0 {
        out.push(Finding::warning(
            C::TenantCodeInSharedMode,
            format!("schema {}", names.schema),
            "no project code when the API's login role is shared",
            format!(
                "{} function(s): code called through the API can switch to the other projects' roles its login role holds",
                x.functions
            ),
        ));
    }
    out.extend(lease_findings(x, names, limits));
    if let Some(max) = limits.max_size_bytes {
        if x.size_bytes as u64 > max {
            out.push(Finding::warning(
                C::SizeOverLimit,
                format!("schema {}", names.schema),
                format!("at most {max} bytes (limits.max_size_bytes)"),
                format!("{} bytes", x.size_bytes),
            ));
        }
    }
    out
}

/// Lease roles out of step with the registry or the project's limits.
fn lease_findings(x: &ProjectExtras, names: &ProjectNames, limits: &Limits) -> Vec<Finding> {
    use FindingCode as C;
    let mut out = Vec::new();
    for role in &x.orphan_lease_roles {
        let drop = Change::DropOrphanLeaseRole {
            role: role.clone(),
            slug: names.slug.as_str().into(),
        };
        out.push(
            Finding::error(
                C::LeaseRoleOrphan,
                format!("role {role}"),
                "a live lease in the registry",
                "no live lease",
            )
            .repaired_by(vec![drop]),
        );
    }
    for id in &x.leases_without_role {
        // the rest of the lease goes with it
        out.push(
            Finding::error(
                C::LeaseRoleMissing,
                format!("lease {id}"),
                "its role exists",
                "role missing",
            )
            .repaired_by(vec![lease::revoke(vec![*id], "role missing (verify)")]),
        );
    }
    for role in x.lease_roles.iter().filter(|r| !lease_role_fits(r, limits)) {
        let role = role["role"].as_str().unwrap_or_default();
        let expected = format!(
            "CONNECTION LIMIT {}, its class's statement_timeout and idle_in_transaction_session_timeout {}",
            limits.connection_limit, limits.idle_in_transaction_session_timeout
        );
        // one call brings every live lease role of the project in line
        // (repeated repairs run once)
        let fix = Change::ApplyLeaseLimits {
            slug: names.slug.as_str().into(),
        };
        out.push(
            Finding::error(
                C::LeaseRoleLimits,
                format!("role {role}"),
                expected,
                "differs",
            )
            .repaired_by(vec![fix]),
        );
    }
    out
}

/// A grant to a role outside the project (`foreign_grants`: names as
/// PostgreSQL quoted them), and the revocation that repairs it.
fn foreign_grant(g: &Value, names: &ProjectNames) -> Finding {
    let field = |k: &str| g[k].as_str().unwrap_or_default().to_string();
    let (kind, object, grantee, privilege) = (
        field("kind"),
        field("object"),
        field("grantee"),
        field("privilege"),
    );
    let unquoted = |s: &str| s.trim_matches('"').replace("\"\"", "\"");
    let default_acl = |schema: Option<String>, objects: &str| Change::RevokeForeignDefaultAcl {
        role: unquoted(&object),
        schema,
        objects: objects.into(),
        grantee: unquoted(&grantee),
    };
    let repair = match kind.as_str() {
        "SCHEMA" | "TABLE" | "SEQUENCE" | "ROUTINE" | "TYPE" => vec![Change::RevokeForeignGrant {
            kind: kind.clone(),
            object: object.clone(),
            grantee: grantee.clone(),
        }],
        k if k.starts_with("GLOBAL DEFAULT ") => {
            vec![default_acl(None, &k["GLOBAL DEFAULT ".len()..])]
        }
        k if k.starts_with("DEFAULT ") => vec![default_acl(
            Some(names.schema.clone()),
            &k["DEFAULT ".len()..],
        )],
        "COLUMN" => split_column(&object)
            .map(|(table, column)| {
                vec![Change::RevokeForeignColumnGrant {
                    table: table.into(),
                    column: column.into(),
                    grantee: grantee.clone(),
                }]
            })
            .unwrap_or_default(),
        _ => vec![],
    };
    Finding::error(
        FindingCode::ForeignGrant,
        format!("{} {object}", kind.to_lowercase()),
        "privileges only for the project's own roles",
        format!("{privilege} granted to {grantee}"),
    )
    .repaired_by(repair)
}

/// Whether a live lease's login role carries its project's limits: the
/// connection limit and the two timeouts of its class (absent when 0).
fn lease_role_fits(role: &Value, limits: &Limits) -> bool {
    let statement = match role["class"].as_str().unwrap_or_default() {
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
/// memberships, then the owner's objects with the owner borrowed, the
/// passwords of recreated login roles after their creation), then the
/// other findings' repairs (which act on the owner's objects too) before
/// the owner is given back. A repair several findings share runs once.
fn repair_plan(
    changes: &[Change],
    extra: &[Finding],
    names: &ProjectNames,
    runtime: &str,
    passwords: &[Change],
) -> Vec<Change> {
    let (body, borrowed) = match changes.last() {
        Some(Change::ReturnOwner { .. }) => (&changes[..changes.len() - 1], true),
        _ => (changes, false),
    };
    let mut out = Vec::new();
    for change in body {
        out.push(change.clone());
        if let Change::CreateRole { role } = change {
            out.extend(
                passwords
                    .iter()
                    .filter(|p| matches!(p, Change::SetLoginPassword { role: r, .. } if r == role))
                    .cloned(),
            );
        }
    }
    let mut later: Vec<Change> = Vec::new();
    for change in extra.iter().flat_map(|f| f.repair.iter()) {
        if !later.contains(change) {
            later.push(change.clone());
        }
    }
    let (owner, runtime) = (names.owner.clone(), runtime.to_string());
    if !later.is_empty() && !borrowed {
        out.push(Change::BorrowOwner {
            owner: owner.clone(),
            runtime: runtime.clone(),
        });
    }
    let give_back = borrowed || !later.is_empty();
    out.extend(later);
    if give_back {
        out.push(Change::ReturnOwner { owner, runtime });
    }
    out
}

/// A new password for an API login role the repair recreates, written to
/// OpenBao first (as the upsert does).
async fn new_login_password(c: &Connector, role: &str, path: &str) -> Result<Change> {
    let secret = lease::scram::new_password();
    c.openbao()?
        .write_kv(path, json!({ AUTHENTICATOR_PASSWORD_KEY: secret.expose() }))
        .await?;
    Ok(lease::set_password(role, &secret))
}

/// What the project's state shows besides the diff: an archived project
/// still listed, an owner the runtime role kept.
fn state_findings(state: &ProjectState, row: &ProjectRow, names: &ProjectNames, runtime: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    if row.state == Lifecycle::Archived && state.listed {
        let unlist = Change::ApplyExposure { pools: vec![row.pool.clone()] };
        out.push(
            Finding::error(FindingCode::ExposureMismatch, "pgrst.db_schemas".into(), "archived project not listed", "listed")
                .repaired_by(vec![unlist]),
        );
    }
    if state.holds_owner(&names.owner, runtime) {
        // Borrowed per transaction, never kept: a lasting grant (from an
        // earlier version) makes every membership check of the runtime
        // role walk one more role per project.
        let give_up = Change::ReturnOwner { owner: names.owner.clone(), runtime: runtime.into() };
        out.push(
            Finding::warning(
                FindingCode::MembershipLasting,
                format!("{runtime} in {}", names.owner),
                "borrowed only while an action needs it",
                "kept",
            )
            .repaired_by(vec![give_up]),
        );
    }
    out
}

/// New passwords for the API login roles a repair recreates (the
/// project's own when isolated, its pool's).
async fn login_passwords(c: &Connector, changes: &[Change], names: &ProjectNames, pool: &str) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    for change in changes {
        if let Change::CreateRole { role } = change {
            if *role == names.authenticator {
                out.push(new_login_password(c, role, &authenticator_secret_path(names)).await?);
            } else if *role == pool_authenticator(pool) {
                out.push(new_login_password(c, role, &pool_secret_path(pool)).await?);
            }
        }
    }
    Ok(out)
}

/// Verify (and optionally repair) one project.
async fn verify_project(
    c: &Connector,
    conn: &Conn,
    names: &ProjectNames,
    repair: bool,
) -> Result<Value> {
    let db = c.db().await?;
    let ctx = context(c, db);
    let tx = conn.transaction(if repair {
        Lock::Project(&names.schema)
    } else {
        Lock::None
    });
    let state = project_state(&tx, &db.server, names, None).await?;
    let Some(row) = state.registry.clone() else {
        return Err(registry::unknown_project(names));
    };
    let runtime = &db.server.runtime_role;
    let desired = DesiredProject::stored(names.clone(), &row, &c.config)?;
    let changes = match row.state {
        Lifecycle::Active => diff_project(&state, &desired, &ctx)?,
        Lifecycle::Archived => Vec::new(),
    };
    let mut findings: Vec<Finding> = changes.iter().filter_map(from_change).collect();
    let passwords = match repair {
        true => login_passwords(c, &changes, names, &row.pool).await?,
        false => Vec::new(),
    };
    findings.extend(state_findings(&state, &row, names, runtime));
    let extras = registry::project_extras(&tx, names).await?;
    let extra = extra_findings(&extras, names, row.isolation, &desired.limits);
    if repair {
        let plan = match changes.is_empty() && extra.is_empty() {
            // only a lasting membership, or an archived project's listing
            true => findings.iter().flat_map(|f| f.repair.clone()).collect(),
            false => repair_plan(&changes, &extra, names, runtime, &passwords),
        };
        let audit_row = Audit {
            action: "verify_database_project",
            project: Some(names.slug.as_str()),
            lease_id: None,
            changed: !plan.is_empty(),
            params: &json!({"repair": true, "project": names.slug.as_str()}),
            outcome: json!({"findings": findings.len() + extra.len()}),
        };
        tx.commit(render_all(&plan, &ctx), audit_row).await?;
    }
    findings.extend(extra);
    let clean = findings
        .iter()
        .all(|f| f.severity != Severity::Error || (repair && !f.repair.is_empty()));
    Ok(json!({
        "project": names.slug.as_str(),
        "clean": clean,
        "findings": findings.iter().map(|f| f.to_json(repair)).collect::<Vec<_>>(),
    }))
}

pub async fn verify(c: &Connector, req: &VerifyProjects, params: &Value) -> Result<Value> {
    let repair = req.repair && !req.dry_run;
    let db = c.db().await?;
    let conn = db.conn().await?;
    let projects = match &req.project {
        Some(slug) => vec![ProjectNames::new(slug)],
        None => registry::projects(&conn).await?,
    };
    let mut results = Vec::new();
    for names in &projects {
        results.push(verify_project(c, &conn, names, repair).await?);
    }
    // Database-wide: every API pool's served list, pre-request hook,
    // memberships and password.
    let global = match req.project {
        None => verify_pools(c, &conn, repair).await?,
        Some(_) => Vec::new(),
    };
    let clean = results.iter().all(|r| r["clean"] == true)
        && global
            .iter()
            .all(|f| f.severity != Severity::Error || (repair && !f.repair.is_empty()));
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
    findings.extend(global.iter().map(|f| f.to_json(repair)));
    if !repair {
        let audit_row = Audit {
            action: "verify_database_project",
            project: req.project.as_ref().map(|s| s.as_str()),
            lease_id: None,
            changed: false,
            params,
            outcome: json!({"clean": clean}),
        };
        audit(&conn, audit_row).await?;
    }
    Ok(json!({"projects": results, "findings": findings, "clean": clean}))
}

/// Findings about one API pool: its served list and pre-request hook
/// (role_setting mode), memberships in roles of projects it does not serve
/// (for a configured pool, in any role but its projects' class roles and the
/// pools' anonymous role), and a configured pool's password in OpenBao.
async fn pool_findings(c: &Connector, pool: &PoolStatus, repair: bool) -> Result<Vec<Finding>> {
    use FindingCode as C;
    let login = &pool.authenticator;
    let at = |f: Finding| Finding {
        pool: Some(pool.name.clone()),
        ..f
    };
    if !pool.role_exists {
        // made by the next upsert of one of its projects
        return Ok(vec![at(Finding::error(
            C::RoleMissing,
            format!("role {login}"),
            "exists",
            "missing",
        ))]);
    }
    let mut out = Vec::new();
    let apply = Change::ApplyExposure {
        pools: vec![pool.name.clone()],
    };
    if c.config.exposure.mode == ExposureMode::RoleSetting {
        if pool.served != pool.computed {
            let f = Finding::error(
                C::ExposureListDrift,
                "pgrst.db_schemas".into(),
                pool.computed.clone().unwrap_or_default(),
                pool.served.clone().unwrap_or_default(),
            );
            out.push(at(f.repaired_by(vec![apply.clone()])));
        }
        if pool.pre_request.as_deref() != Some("supabase_connector_api.pre_request") {
            let f = Finding::error(
                C::PreRequestMissing,
                "pgrst.db_pre_request".into(),
                "supabase_connector_api.pre_request",
                pool.pre_request.clone().unwrap_or_default(),
            );
            out.push(at(f.repaired_by(vec![apply])));
        }
    }
    for role in &pool.extra_memberships {
        let revoke = Change::RevokeRole {
            role: role.clone(),
            member: login.clone(),
        };
        let f = Finding::error(
            C::MembershipExtra,
            format!("{login} in {role}"),
            "not a member (a role of no project this pool serves)",
            "member",
        );
        out.push(at(f.repaired_by(vec![revoke])));
    }
    if pool.name != CENTRAL_POOL {
        let path = pool_secret_path(&pool.name);
        let stored = c.openbao()?.read_kv(&path).await;
        if !matches!(&stored, Ok(kv) if kv.contains_key(AUTHENTICATOR_PASSWORD_KEY)) {
            let fix = match repair {
                true => vec![new_login_password(c, login, &path).await?],
                false => vec![lease::set_password(login, &lease::scram::new_password())],
            };
            let f = Finding::error(
                C::PoolPasswordMissing,
                format!("OpenBao {}/{path}", c.config.openbao.path),
                "the login role's password",
                "missing",
            );
            out.push(at(f.repaired_by(fix)));
        }
    }
    Ok(out)
}

/// Every API pool's findings (`central` first), repaired in one transaction.
async fn verify_pools(c: &Connector, conn: &Conn, repair: bool) -> Result<Vec<Finding>> {
    let db = c.db().await?;
    let ctx: PlanContext = context(c, db);
    let mut findings = Vec::new();
    for pool in registry::pools(conn, &c.config.exposure.base_schemas).await? {
        findings.extend(pool_findings(c, &pool, repair).await?);
    }
    let mut plan: Vec<Change> = Vec::new();
    for change in findings.iter().flat_map(|f| f.repair.iter()) {
        if !plan.contains(change) {
            plan.push(change.clone());
        }
    }
    if repair && !plan.is_empty() {
        let tx = conn.transaction(Lock::None);
        tx.run(&render_all(&plan, &ctx)).await?;
        tx.commit_without_audit().await?;
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
