//! Leases (`docs/leases.md`; the format in `docs/reference.md#the-lease`):
//! the roles behind them, their tokens and connection strings, and their
//! revocation.

pub mod jwt;
pub mod scram;

use crate::config::{Config, Secret};
use crate::db::{Conn, Param, ServerInfo, Statement};
use crate::error::{Error, Result};
use crate::model::Principal;
use crate::names::{ident, literal, AccessClass, LeaseRoles, ProjectNames, AUTHENTICATOR};
use crate::plan::{grant_role_sql, revoke_role_sql};
use crate::secrets::ConnectorSecrets;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// What a new lease is for.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub names: ProjectNames,
    pub principal: Principal,
    pub platform_role: String,
    pub class: AccessClass,
    pub ttl_seconds: u64,
    pub database: bool,
    /// The login role PostgREST uses for this project (`authenticator`, or
    /// the project's own in isolated mode).
    pub api_authenticator: String,
    pub api_url: Option<String>,
}

/// A planned lease: its statements and the secrets to hand out once they commit.
pub struct PlannedLease {
    pub lease_id: Uuid,
    pub roles: LeaseRoles,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub statements: Vec<Statement>,
    password: Option<Secret>,
    request: LeaseRequest,
}

impl std::fmt::Debug for PlannedLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedLease")
            .field("lease_id", &self.lease_id)
            .field("role", &self.roles.main)
            .finish_non_exhaustive()
    }
}

/// The TTL to use: the request's, else the default; above the maximum is an error.
pub fn ttl(requested: Option<u64>, config: &Config, pointer: &str) -> Result<u64> {
    let ttl = requested.unwrap_or(config.lease.default_ttl_seconds);
    if ttl == 0 || ttl > config.lease.max_ttl_seconds {
        return Err(Error::invalid_at(
            pointer,
            format!(
                "must be between 1 and {} seconds (lease.max_ttl_seconds)",
                config.lease.max_ttl_seconds
            ),
        ));
    }
    Ok(ttl)
}

fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `CREATE ROLE` clauses for a lease role's login.
fn login_clause(password: Option<&Secret>, expires_at: &DateTime<Utc>) -> String {
    match password {
        Some(p) => format!(
            "LOGIN PASSWORD {} VALID UNTIL {}",
            literal(&scram::new_verifier(p)),
            literal(&timestamp(expires_at))
        ),
        None => "NOLOGIN".into(),
    }
}

/// Plan a lease: one role (two for the service class), granted to the API's
/// login role, and its registry row. The runtime role is not made a member:
/// it takes the membership only inside the revocation that needs it (see
/// `docs/decisions.md`).
pub fn plan_issue(request: LeaseRequest, now: DateTime<Utc>) -> PlannedLease {
    let lease_id = Uuid::new_v4();
    let roles = LeaseRoles::new(lease_id);
    let expires_at = now + chrono::Duration::seconds(request.ttl_seconds as i64);
    let password = request.database.then(scram::new_password);
    let n = &request.names;
    let members = format!("ROLE {}", ident(&request.api_authenticator));
    let mut statements = vec![Statement::ddl(format!(
        "CREATE ROLE {} {} INHERIT IN ROLE {} {members}",
        ident(&roles.main),
        login_clause(password.as_ref(), &expires_at),
        ident(n.class_role(request.class)),
    ))];
    if request.class == AccessClass::ServiceRole {
        if request.database {
            // objects a database session creates belong to the project
            statements.push(Statement::ddl(format!(
                "ALTER ROLE {} SET role = {}",
                ident(&roles.main),
                literal(&n.owner)
            )));
        }
        statements.push(Statement::ddl(format!(
            "CREATE ROLE {} NOLOGIN INHERIT IN ROLE {} {members}",
            ident(&roles.anon),
            ident(&n.anon)
        )));
    }
    statements.push(Statement::with(
        "insert into supabase_connector.leases (lease_id, project, role_name, anon_role_name, principal_type, \
         principal_id, platform_role, access_class, database, issued_at, expires_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        vec![
            Param::Uuid(lease_id),
            Param::Text(n.slug.as_str().into()),
            Param::Text(roles.main.clone()),
            Param::OptText((request.class == AccessClass::ServiceRole).then(|| roles.anon.clone())),
            Param::Text(request.principal.kind().into()),
            Param::Text(request.principal.id()),
            Param::Text(request.platform_role.clone()),
            Param::Text(request.class.as_str().into()),
            Param::Bool(request.database),
            Param::Time(now),
            Param::Time(expires_at),
        ],
    ));
    PlannedLease {
        lease_id,
        roles,
        issued_at: now,
        expires_at,
        statements,
        password,
        request,
    }
}

impl PlannedLease {
    /// The database password, for the connector's own lease sessions.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The lease JSON (`docs/reference.md#the-lease`), with its secrets.
    pub fn to_json(
        &self,
        secrets: &ConnectorSecrets,
        config: &Config,
        server: &ServerInfo,
        renewable: bool,
    ) -> Value {
        lease_json(&LeaseView {
            lease_id: self.lease_id,
            names: &self.request.names,
            principal: &self.request.principal,
            platform_role: &self.request.platform_role,
            class: self.request.class,
            roles: &self.roles,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            password: self.password.as_ref(),
            database: self.request.database,
            api_url: self.request.api_url.as_deref(),
            renewable,
            secrets,
            config,
            server,
        })
    }
}

/// Everything the lease JSON is built from.
pub struct LeaseView<'a> {
    pub lease_id: Uuid,
    pub names: &'a ProjectNames,
    pub principal: &'a Principal,
    pub platform_role: &'a str,
    pub class: AccessClass,
    pub roles: &'a LeaseRoles,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub password: Option<&'a Secret>,
    pub database: bool,
    pub api_url: Option<&'a str>,
    pub renewable: bool,
    pub secrets: &'a ConnectorSecrets,
    pub config: &'a Config,
    pub server: &'a ServerInfo,
}

/// Build the lease JSON: tokens signed with `JWT_SECRET`, the connection
/// string, and the `env` a workspace gets.
pub fn lease_json(v: &LeaseView) -> Value {
    let slug = v.names.slug.as_str();
    let claims = |role: &str, class: AccessClass| {
        json!({
            "iss": "supabase-connector",
            "role": role,
            "aud": "authenticated",
            "iat": v.issued_at.timestamp(),
            "exp": v.expires_at.timestamp(),
            "jti": v.lease_id.to_string(),
            "sub": v.principal.subject(slug).to_string(),
            "project": slug,
            "platform_role": v.platform_role,
            "access_class": class.as_str(),
        })
    };
    let access_token = jwt::sign(&claims(&v.roles.main, v.class), &v.secrets.jwt_secret);
    let publishable_token = (v.class == AccessClass::ServiceRole).then(|| {
        jwt::sign(
            &claims(&v.roles.anon, AccessClass::Anon),
            &v.secrets.jwt_secret,
        )
    });
    let host = v
        .config
        .lease
        .database_host
        .clone()
        .unwrap_or_else(|| v.server.host.clone());
    let port = v.config.lease.database_port.unwrap_or(v.server.port);
    let database = match (v.database, v.password) {
        (true, Some(password)) => {
            let url = format!(
                "postgresql://{}:{}@{}:{}/{}?options=-csearch_path%3D{}",
                v.roles.main,
                password.expose(),
                host,
                port,
                v.server.dbname,
                v.names.schema
            );
            json!({"host": host, "port": port, "dbname": v.server.dbname, "user": v.roles.main,
                   "password": password.expose(), "schema": v.names.schema, "url": url})
        }
        _ => Value::Null,
    };
    let mut api = json!({
        "url": v.api_url,
        "schema": v.names.schema,
        "apikey": v.secrets.publishable_key.expose(),
        "access_token": access_token,
    });
    let mut env = json!({
        "SUPABASE_URL": v.api_url.unwrap_or_default(),
        "SUPABASE_ANON_KEY": v.secrets.publishable_key.expose(),
        "SUPABASE_ACCESS_TOKEN": access_token,
        "SUPABASE_DB_SCHEMA": v.names.schema,
    });
    if let Some(t) = &publishable_token {
        api["publishable_token"] = json!(t);
        env["SUPABASE_PUBLISHABLE_TOKEN"] = json!(t);
    }
    if let Some(url) = database.get("url") {
        env["DATABASE_URL"] = url.clone();
    }
    json!({
        "lease_id": v.lease_id.to_string(),
        "project": slug,
        "schema": v.names.schema,
        "principal": v.principal.to_json(),
        "platform_role": v.platform_role,
        "access_class": v.class.as_str(),
        "issued_at": timestamp(&v.issued_at),
        "expires_at": timestamp(&v.expires_at),
        "ttl_seconds": (v.expires_at - v.issued_at).num_seconds().max(0),
        "renewable": v.renewable,
        "database": database,
        "api": api,
        "env": env,
    })
}

/// A lease about to be revoked, as read from the registry and catalog.
#[derive(Debug, Clone)]
pub struct RevokeTarget {
    pub lease_id: Uuid,
    pub owner: String,
    /// Lease roles that still exist.
    pub roles: Vec<String>,
    /// The runtime role already holds the owner's privileges.
    pub holds_owner: bool,
}

/// Revoke leases inside the caller's transaction, in this order
/// (`docs/leases.md#revocation`):
/// `NOLOGIN`, terminate sessions, `REASSIGN OWNED`, `DROP OWNED`, `DROP
/// ROLE`, mark revoked. Returns the number of sessions terminated.
///
/// Ending a lease role's sessions and taking apart what it owns need its
/// privileges, and reassigning to the owner needs the owner's: the runtime
/// role is granted the lease roles here (the grants go with `DROP ROLE`)
/// and borrows each owner until the end of the transaction.
pub async fn revoke(
    conn: &Conn,
    server: &ServerInfo,
    targets: &[RevokeTarget],
    reason: &str,
) -> Result<i64> {
    if targets.is_empty() {
        return Ok(0);
    }
    let all_roles: Vec<String> = targets
        .iter()
        .flat_map(|t| t.roles.iter().cloned())
        .collect();
    let quoted = |roles: &[String]| {
        roles
            .iter()
            .map(|r| ident(r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let runtime = &server.runtime_role;
    let mut terminated = 0;
    if !all_roles.is_empty() {
        let nologin: String = all_roles
            .iter()
            .map(|r| {
                format!(
                    "{}; ALTER ROLE {} NOLOGIN;",
                    grant_role_sql(r, runtime, false, server),
                    ident(r)
                )
            })
            .collect();
        conn.batch(&nologin, 2 * all_roles.len() as u32).await?;
        let row = conn
            .query_one(
                "select count(*) filter (where pg_terminate_backend(pid, 5000)) from pg_stat_activity where usename = any($1)",
                &[&all_roles],
            )
            .await?;
        terminated = row.get::<_, i64>(0);
    }
    let mut statements = Vec::new();
    let mut returns = Vec::new();
    // Owners in a fixed order, so concurrent revocations borrow them in the
    // same order and cannot deadlock.
    let mut owners: Vec<(&str, bool)> = targets
        .iter()
        .map(|t| (t.owner.as_str(), t.holds_owner))
        .collect();
    owners.sort_unstable();
    owners.dedup_by_key(|o| o.0);
    for (owner, holds) in owners {
        let roles: Vec<String> = targets
            .iter()
            .filter(|t| t.owner == owner)
            .flat_map(|t| t.roles.iter().cloned())
            .collect();
        if roles.is_empty() {
            continue;
        }
        if !holds {
            statements.push(Statement::ddl(grant_role_sql(owner, runtime, true, server)));
            returns.push(Statement::ddl(revoke_role_sql(owner, runtime)));
        }
        statements.push(Statement::ddl(format!(
            "REASSIGN OWNED BY {} TO {}",
            quoted(&roles),
            ident(owner)
        )));
        statements.push(Statement::ddl(format!("DROP OWNED BY {}", quoted(&roles))));
        statements.push(Statement::ddl(format!("DROP ROLE {}", quoted(&roles))));
    }
    statements.extend(returns);
    let ids: Vec<Uuid> = targets.iter().map(|t| t.lease_id).collect();
    statements.push(Statement::with(
        "update supabase_connector.leases set revoked_at = now(), revoke_reason = $2 where lease_id = any($1) and revoked_at is null",
        vec![Param::UuidArray(ids), Param::Text(reason.into())],
    ));
    conn.run(&statements).await?;
    Ok(terminated)
}

/// SQL selecting revoke targets: lease id, owner role, existing lease roles,
/// whether it is already revoked, its project, whether the runtime role
/// holds the owner's privileges. Callers append their own `where` clause
/// over `l` (leases) and `p` (projects).
pub const REVOKE_TARGETS_SQL: &str = "select l.lease_id, p.schema_name || '_owner' as owner, \
     array(select r.rolname::text from pg_roles r where r.rolname in (l.role_name, l.anon_role_name)) as roles, \
     l.revoked_at is not null as revoked, l.project, \
     coalesce((select pg_has_role(current_user, o.oid, 'USAGE') from pg_roles o \
               where o.rolname = p.schema_name || '_owner'), false) as holds_owner \
     from supabase_connector.leases l join supabase_connector.projects p on p.slug = l.project";

/// Map rows of [`REVOKE_TARGETS_SQL`].
pub fn revoke_targets(rows: &[tokio_postgres::Row]) -> Vec<RevokeTarget> {
    rows.iter()
        .map(|r| RevokeTarget {
            lease_id: r.get(0),
            owner: r.get(1),
            roles: r.get(2),
            holds_owner: r.get(5),
        })
        .collect()
}

/// The API URL a lease of a project points to: the central gateway, or for
/// an isolated project its dedicated PostgREST (`api.isolated_url_template`
/// with `{project}` and `{schema}` replaced; the gateway when unset).
pub fn api_url(config: &Config, names: &ProjectNames, isolation: &str) -> Option<String> {
    match (&config.api.isolated_url_template, isolation) {
        (Some(template), "isolated") => Some(
            template
                .replace("{project}", names.slug.as_str())
                .replace("{schema}", &names.schema),
        ),
        _ => config.api.url.clone(),
    }
}

/// `ALTER ROLE … PASSWORD` with a SCRAM verifier computed here, so the
/// plaintext never reaches the server.
pub fn password_statement(role: &str, password: &Secret) -> Statement {
    Statement::ddl(format!(
        "ALTER ROLE {} PASSWORD {}",
        ident(role),
        literal(&scram::new_verifier(password))
    ))
}

/// The API login role for a project in the given isolation mode.
pub fn api_authenticator(names: &ProjectNames, isolation: &str) -> String {
    if isolation == "isolated" {
        names.authenticator.clone()
    } else {
        AUTHENTICATOR.to_string()
    }
}
