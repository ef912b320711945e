//! Leases (docs/leases.md): a registry row the API checks on every request,
//! tokens naming the project's class role, and for database access one
//! login role; their renewal and revocation.
//!
//! Every change that issues, renews or revokes a lease is planned here (its
//! SQL is in `render`); the login role itself is made and taken apart by
//! the bootstrap's role functions (`lease_role_create`, `lease_role_renew`,
//! `lease_revoke`).

pub mod jwt;
pub mod scram;

use crate::config::{Config, Secret};
use crate::domain::Isolation;
use crate::error::{Error, Result};
use crate::model::Principal;
use crate::names::{lease_login_role, AccessClass, ProjectNames};
use crate::plan::{Change, PlanContext};
use crate::render::render;
use crate::secrets::ConnectorSecrets;
use crate::sql::ServerInfo;
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
    /// With a database login role (`false`: API tokens only, no role).
    pub database: bool,
    pub api_url: Option<String>,
}

/// A planned lease: its changes and the secrets to hand out once they commit.
pub struct PlannedLease {
    pub lease_id: Uuid,
    /// The login role, for a lease with database access.
    pub login_role: Option<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub changes: Vec<Change>,
    password: Option<Secret>,
    request: LeaseRequest,
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

/// The TTL of the lease an action issues along (`issue`), checked as
/// [`ttl`]; none when it issues none.
pub fn ttl_if(issue: bool, requested: Option<u64>, config: &Config) -> Result<Option<u64>> {
    issue
        .then(|| ttl(requested, config, "/lease_ttl_seconds"))
        .transpose()
}

fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Plan a lease: its registry row and, for database access, its login role
/// (made by `lease_role_create` from that row, with a SCRAM verifier
/// computed here). An API-only lease is the row alone: no role change.
pub fn plan_issue(request: LeaseRequest, now: DateTime<Utc>) -> PlannedLease {
    let lease_id = Uuid::new_v4();
    let expires_at = now + chrono::Duration::seconds(request.ttl_seconds as i64);
    let login_role = request.database.then(|| lease_login_role(lease_id));
    let password = request.database.then(scram::new_password);
    let mut changes = vec![Change::RecordLease {
        lease_id,
        project: request.names.slug.as_str().into(),
        login_role: login_role.clone(),
        principal: request.principal.clone(),
        platform_role: request.platform_role.clone(),
        access_class: request.class,
        issued_at: now,
        expires_at,
    }];
    if let Some(password) = &password {
        changes.push(Change::CreateLeaseLogin {
            lease_id,
            verifier: Secret::new(scram::new_verifier(password)),
        });
    }
    PlannedLease {
        lease_id,
        login_role,
        issued_at: now,
        expires_at,
        changes,
        password,
        request,
    }
}

/// A renewal: the new expiry and, for database access, a new password.
/// Returns the changes and the password.
pub fn plan_renew(
    lease_id: Uuid,
    login: bool,
    expires_at: DateTime<Utc>,
) -> (Vec<Change>, Option<Secret>) {
    let mut changes = vec![Change::ExtendLease {
        lease_id,
        expires_at,
    }];
    let password = login.then(scram::new_password);
    if let Some(password) = &password {
        // The old connection string stops working for new logins; open
        // sessions continue.
        changes.push(Change::RenewLeaseLogin {
            lease_id,
            verifier: Secret::new(scram::new_verifier(password)),
        });
    }
    (changes, password)
}

/// Revoke leases: mark their rows (their tokens are refused from that
/// commit on) and take their login roles apart (`NOLOGIN`, end sessions,
/// `REASSIGN OWNED` to the owner with the class grants, `DROP OWNED`, `DROP
/// ROLE`).
pub fn revoke(lease_ids: Vec<Uuid>, reason: &str) -> Change {
    Change::RevokeLeases {
        lease_ids,
        reason: reason.into(),
    }
}

/// Revoke leases in the caller's transaction now; the number of sessions
/// ended.
pub async fn revoke_now(
    conn: &crate::db::Conn,
    ctx: &PlanContext<'_>,
    lease_ids: Vec<Uuid>,
    reason: &str,
) -> Result<i64> {
    if lease_ids.is_empty() {
        return Ok(0);
    }
    let rows = conn
        .run_rows(&render(&revoke(lease_ids, reason), ctx))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .map(|r| r.get::<_, i32>(0) as i64)
        .unwrap_or(0))
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
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            login: self.login_role.as_deref().zip(self.password.as_ref()),
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
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The login role and its password, for database access.
    pub login: Option<(&'a str, &'a Secret)>,
    pub api_url: Option<&'a str>,
    pub renewable: bool,
    pub secrets: &'a ConnectorSecrets,
    pub config: &'a Config,
    pub server: &'a ServerInfo,
}

/// The claims of a lease's token: `role` is the project's class role, `jti`
/// the lease id, which the API's `pre_request` checks on every request.
pub fn claims(v: &LeaseView, class: AccessClass) -> Value {
    let slug = v.names.slug.as_str();
    json!({
        "iss": "supabase-connector",
        "role": v.names.class_role(class),
        "aud": "authenticated",
        "iat": v.issued_at.timestamp(),
        "exp": v.expires_at.timestamp(),
        "jti": v.lease_id.to_string(),
        "sub": v.principal.subject(slug).to_string(),
        "project": slug,
        "platform_role": v.platform_role,
        "access_class": class.as_str(),
    })
}

/// The startup options of a lease's database sessions: the project schema
/// first on the `search_path`, and for the service class `role` = the
/// project's owner, so that what a session creates belongs to the project
/// (an object a session creates as the lease role itself is given to the
/// owner when the lease ends).
pub fn session_options(names: &ProjectNames, class: AccessClass) -> String {
    let mut options = format!("-c search_path={}", names.schema);
    if class == AccessClass::ServiceRole {
        options.push_str(&format!(" -c role={}", names.owner));
    }
    options
}

/// Build the lease JSON: tokens signed with `JWT_SECRET`, the connection
/// string, and the `env` a workspace gets.
pub fn lease_json(v: &LeaseView) -> Value {
    let access_token = jwt::sign(&claims(v, v.class), &v.secrets.jwt_secret);
    let publishable_token = (v.class == AccessClass::ServiceRole)
        .then(|| jwt::sign(&claims(v, AccessClass::Anon), &v.secrets.jwt_secret));
    let host = v
        .config
        .lease
        .database_host
        .clone()
        .unwrap_or_else(|| v.server.host.clone());
    let port = v.config.lease.database_port.unwrap_or(v.server.port);
    let database = match v.login {
        Some((user, password)) => {
            let options = session_options(v.names, v.class);
            let url = format!(
                "postgresql://{}:{}@{}:{}/{}?options={}",
                user,
                password.expose(),
                host,
                port,
                v.server.dbname,
                options.replace(' ', "%20").replace('=', "%3D")
            );
            json!({"host": host, "port": port, "dbname": v.server.dbname, "user": user,
                   "password": password.expose(), "schema": v.names.schema, "options": options,
                   "url": url})
        }
        None => Value::Null,
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
        "project": v.names.slug.as_str(),
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

/// The API URL a lease of a project points to: for an isolated project its
/// dedicated PostgREST (`api.isolated_url_template` with `{project}` and
/// `{schema}` replaced), for a pooled one its pool's `url`, else (and when
/// those are unset) the central gateway (`api.url`).
pub fn api_url(
    config: &Config,
    names: &ProjectNames,
    isolation: Isolation,
    pool: &str,
) -> Option<String> {
    if isolation == Isolation::Isolated {
        if let Some(template) = &config.api.isolated_url_template {
            return Some(
                template
                    .replace("{project}", names.slug.as_str())
                    .replace("{schema}", &names.schema),
            );
        }
    } else if let Some(url) = config
        .api
        .pools
        .iter()
        .find(|p| p.name == pool)
        .and_then(|p| p.url.clone())
    {
        return Some(url);
    }
    config.api.url.clone()
}

/// Set an API login role's password (`role_password`) with a SCRAM
/// verifier computed here, so the plaintext never reaches the server.
pub fn set_password(role: &str, password: &Secret) -> Change {
    Change::SetLoginPassword {
        role: role.into(),
        verifier: Secret::new(scram::new_verifier(password)),
    }
}
