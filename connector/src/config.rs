//! Configuration (`docs/reference.md#configuration`): a JSON object with an
//! environment fallback for the keys that have one. Secrets inside it are
//! wrapped in [`Secret`] so `Debug` never prints them.

use crate::domain::{ExposureMode, Isolation, TenantCode};
use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// A string that never shows itself in `Debug` or `Display`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call sites are few and easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The secret as an owned string's reference (for binding it as a
    /// statement parameter).
    pub(crate) fn expose_string(&self) -> &String {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything the connector reads from its configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub openbao: OpenBaoConfig,
    pub api: ApiConfig,
    pub lease: LeaseConfig,
    pub exposure: ExposureConfig,
    /// Default per-project limits (a project's `limits` parameter overrides them).
    pub limits: Limits,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgresql://user[:password]@host:port/db`; without a password the
    /// connector reads `POSTGRES_PASSWORD` from OpenBao.
    pub url: Option<Secret>,
    pub pool_size: usize,
    /// `disable`, `prefer` or `require`.
    pub sslmode: String,
    pub ca_file: Option<String>,
    /// Seconds to wait for a free pooled connection before `database_unavailable`.
    pub pool_timeout_seconds: u64,
    /// Server-side `statement_timeout` for action transactions, in milliseconds (0 = none).
    pub statement_timeout_ms: u64,
    /// Server-side `lock_timeout` for action transactions, in milliseconds (0 = none).
    pub lock_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            pool_size: 8,
            sslmode: "prefer".into(),
            ca_file: None,
            pool_timeout_seconds: 10,
            statement_timeout_ms: 30_000,
            lock_timeout_ms: 10_000,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|u| redact_url(u.expose())))
            .field("pool_size", &self.pool_size)
            .field("sslmode", &self.sslmode)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// A URL with its password replaced by `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenBaoConfig {
    pub addr: Option<String>,
    pub token: Option<Secret>,
    pub approle: Option<AppRoleConfig>,
    pub mount: String,
    pub path: String,
    /// How long secrets read from OpenBao are reused, in seconds, as long
    /// as their KV v2 version is unchanged (it is checked before every
    /// signing, so a rotation is seen at once).
    pub cache_seconds: u64,
    /// How long, in milliseconds, a check of the secrets' version stays
    /// good for the leases signed after it. 0 (the default): every action
    /// that signs tokens checks, so a lease issued after a rotation of
    /// `JWT_SECRET` carries tokens of the new secret. A few hundred
    /// milliseconds spare lease-heavy executors most checks; a rotation is
    /// then seen within that time.
    pub signing_check_ms: u64,
    pub timeout_seconds: u64,
}

impl Default for OpenBaoConfig {
    fn default() -> Self {
        OpenBaoConfig {
            addr: None,
            token: None,
            approle: None,
            mount: "secret".into(),
            path: "connectors/supabase".into(),
            cache_seconds: 30,
            signing_check_ms: 0,
            timeout_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleConfig {
    pub role_id: String,
    pub secret_id: Secret,
    #[serde(default = "default_approle_mount")]
    pub mount: String,
}

fn default_approle_mount() -> String {
    "approle".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The public URL of the gateway (Kong) in front of PostgREST.
    pub url: Option<String>,
    /// Isolation of new projects.
    pub isolation: Isolation,
    /// Tenant-code guard of new projects.
    pub tenant_code: TenantCode,
    /// URL of an isolated project's dedicated PostgREST; `{project}` and
    /// `{schema}` are replaced.
    pub isolated_url_template: Option<String>,
    /// API pools: each a login role and a PostgREST serving a bounded set of
    /// projects (docs/operations.md "API pools"). Empty: every shared
    /// project is served by Supabase's own API (`central`).
    pub pools: Vec<PoolConfig>,
}

/// One configured API pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// `^[a-z][a-z0-9_]{0,29}$`; its login role is `supabase_connector_pool_<name>`.
    pub name: String,
    /// The URL its leases point to (a gateway route in front of its PostgREST).
    pub url: Option<String>,
    /// Projects it serves at most; default by server version
    /// ([`default_max_projects`]).
    pub max_projects: Option<u32>,
}

/// The default capacity of a pool: after any role change in the cluster,
/// each of a pool's PostgREST sessions re-checks its login role's
/// memberships (3 per project) on its next request, quadratically before
/// PostgreSQL 17 and linearly from 17 on. These are the largest pool sizes
/// whose role switch right after a role change elsewhere stayed within
/// 2 ms at p99 on the benchmark's machine (2 shared cores): 75 projects on
/// PostgreSQL 15, 200 on 18 (bench/README.md "Pool sizing" has the curve).
/// 16 is taken to behave like 15 and 17 like 18 (same membership code), not
/// measured. A membership change (every database lease issued or revoked)
/// costs more than the bare role change on 18, which bench/README.md shows
/// too.
pub fn default_max_projects(server_version_num: i32) -> u32 {
    if server_version_num >= 170000 {
        200
    } else {
        75
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            url: None,
            isolation: Isolation::Shared,
            tenant_code: TenantCode::Allow,
            isolated_url_template: None,
            pools: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    pub database_host: Option<String>,
    pub database_port: Option<u16>,
    pub default_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
    pub max_lifetime_seconds: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            database_host: None,
            database_port: None,
            default_ttl_seconds: 900,
            max_ttl_seconds: 3600,
            max_lifetime_seconds: 86_400,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExposureConfig {
    pub mode: ExposureMode,
    /// Schemas served before the project schemas (a list or a comma-separated string).
    #[serde(deserialize_with = "list_or_csv")]
    pub base_schemas: Vec<String>,
}

impl Default for ExposureConfig {
    fn default() -> Self {
        ExposureConfig {
            mode: ExposureMode::RoleSetting,
            base_schemas: vec!["public".into(), "storage".into(), "graphql_public".into()],
        }
    }
}

fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(v) => v,
        ListOrCsv::Csv(s) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
    })
}

/// Statement timeouts of a project's access classes, in milliseconds (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassTimeouts {
    pub anon: u64,
    pub authenticated: u64,
    pub service_role: u64,
}

impl Default for ClassTimeouts {
    /// Stock Supabase's: `anon` 3 s, `authenticated` 8 s, `service_role` none.
    fn default() -> Self {
        ClassTimeouts {
            anon: 3000,
            authenticated: 8000,
            service_role: 0,
        }
    }
}

/// What one project may take of the shared database (docs/operations.md
/// "Limits"). Durations in milliseconds, 0 = none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Per access class: a role setting of the class role (what PostgREST
    /// applies per request) and of database leases of that class.
    pub statement_timeout: ClassTimeouts,
    /// For database lease sessions.
    pub idle_in_transaction_session_timeout: u64,
    /// `CONNECTION LIMIT` of each lease login role.
    pub connection_limit: u32,
    /// Live database leases of the project at once (0: no limit).
    pub max_database_leases: u32,
    /// Size above which `describe` and `verify` warn (nothing is blocked).
    pub max_size_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            statement_timeout: ClassTimeouts::default(),
            idle_in_transaction_session_timeout: 60_000,
            connection_limit: 10,
            max_database_leases: 50,
            max_size_bytes: None,
        }
    }
}

impl Limits {
    /// `self` with the keys present in `partial` (the JSON of a `limits`
    /// parameter, already schema-checked) taken from it.
    pub fn merged(&self, partial: &Value) -> Result<Limits> {
        let mut merged = serde_json::to_value(self)?;
        merge_json(&mut merged, partial);
        serde_json::from_value(merged)
            .map_err(|e| Error::invalid_at("/limits", format!("invalid limits: {e}")))
    }
}

/// Overlay `patch` on `base`, object keys recursively.
fn merge_json(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge_json(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

impl Config {
    /// Parse a JSON config (or none) and fill unset keys from the environment.
    pub fn from_json(value: Option<Value>) -> Result<Config> {
        let mut config: Config = match value {
            None | Some(Value::Null) => Config::default(),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| Error::invalid(format!("invalid configuration: {e}")))?,
        };
        config.fill_from_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        config.validate()?;
        Ok(config)
    }

    /// Apply the environment fallbacks (`docs/reference.md#configuration`) to keys left unset.
    pub fn fill_from_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        if self.database.url.is_none() {
            self.database.url = env("SUPABASE_CONNECTOR_DATABASE_URL").map(Secret::new);
        }
        if self.openbao.addr.is_none() {
            self.openbao.addr = env("BAO_ADDR").or_else(|| env("VAULT_ADDR"));
        }
        if self.openbao.token.is_none() && self.openbao.approle.is_none() {
            self.openbao.token = env("BAO_TOKEN")
                .or_else(|| env("VAULT_TOKEN"))
                .map(Secret::new);
        }
        if self.api.url.is_none() {
            self.api.url = env("SUPABASE_CONNECTOR_API_URL");
        }
    }

    /// Reject values that cannot work, before anything connects.
    pub fn validate(&self) -> Result<()> {
        let one_of = |key: &str, v: &str, allowed: &[&str]| {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "config {key}: {v:?} is not one of {allowed:?}"
                )))
            }
        };
        one_of(
            "database.sslmode",
            &self.database.sslmode,
            &["disable", "prefer", "require"],
        )?;
        let mut names = std::collections::BTreeSet::new();
        for pool in &self.api.pools {
            let b = pool.name.as_bytes();
            let ok = !b.is_empty()
                && b.len() <= 30
                && b[0].is_ascii_lowercase()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
            if !ok || pool.name == "central" {
                return Err(Error::invalid(format!(
                    "config api.pools: {:?} is not a pool name (1-30 of a-z, 0-9, '_', starting with a letter; not \"central\")",
                    pool.name
                )));
            }
            if !names.insert(pool.name.as_str()) {
                return Err(Error::invalid(format!(
                    "config api.pools: pool {:?} is listed twice",
                    pool.name
                )));
            }
            if pool.max_projects == Some(0) {
                return Err(Error::invalid(format!(
                    "config api.pools: pool {:?} needs max_projects of at least 1",
                    pool.name
                )));
            }
        }
        for s in &self.exposure.base_schemas {
            if !crate::plan::is_plain_identifier(s) {
                return Err(Error::invalid(format!(
                    "config exposure.base_schemas: {s:?} is not a plain schema name"
                )));
            }
        }
        let l = &self.lease;
        if l.default_ttl_seconds == 0
            || l.default_ttl_seconds > l.max_ttl_seconds
            || l.max_ttl_seconds > l.max_lifetime_seconds
        {
            return Err(Error::invalid(
                "config lease: need 0 < default_ttl_seconds <= max_ttl_seconds <= max_lifetime_seconds",
            ));
        }
        if self.database.pool_size == 0 {
            return Err(Error::invalid(
                "config database.pool_size must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_hides_secrets() {
        let c = Config::from_json(Some(json!({
            "database": {"url": "postgresql://postgres:hunter2@db:5432/postgres"},
            "openbao": {"addr": "http://bao:8200", "token": "s.topsecret",
                        "approle": {"role_id": "r", "secret_id": "sid-secret"}}
        })))
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("topsecret") && !dbg.contains("sid-secret"),
            "{dbg}"
        );
        assert!(dbg.contains("postgres:***@db"));
    }

    #[test]
    fn env_fallbacks_and_defaults() {
        let mut c = Config::default();
        c.fill_from_env(|k| match k {
            "VAULT_ADDR" => Some("http://v:8200".into()),
            "BAO_TOKEN" => Some("t".into()),
            _ => None,
        });
        assert_eq!(c.openbao.addr.as_deref(), Some("http://v:8200"));
        assert_eq!(c.openbao.token.as_ref().unwrap().expose(), "t");
        assert_eq!(c.lease.default_ttl_seconds, 900);
        assert_eq!(
            c.exposure.base_schemas,
            ["public", "storage", "graphql_public"]
        );
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Config::from_json(Some(json!({"exposure": {"mode": "yaml"}}))).is_err());
        assert!(Config::from_json(Some(json!({"unknown": 1}))).is_err());
        assert!(
            Config::from_json(Some(json!({"exposure": {"base_schemas": "public,x;y"}}))).is_err()
        );
        let c =
            Config::from_json(Some(json!({"exposure": {"base_schemas": "public, api"}}))).unwrap();
        assert_eq!(c.exposure.base_schemas, ["public", "api"]);
    }

    /// The rows of the table under `## {section}` in docs/reference.md:
    /// the backticked names of each row's first and second cells.
    fn reference_table(section: &str) -> Vec<(Vec<String>, Vec<String>)> {
        let doc = include_str!("../../docs/reference.md");
        let start = doc
            .find(&format!("\n## {section}\n"))
            .unwrap_or_else(|| panic!("docs/reference.md has no section {section}"));
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| {
                let cells: Vec<&str> = l.split('|').collect();
                (ticked(cells[1]), ticked(cells[2]))
            })
            .collect()
    }

    /// The keys a config struct accepts, from serde's own list (the
    /// message for an unknown key names every known one).
    fn keys<T: serde::de::DeserializeOwned>(prefix: &str) -> Vec<String> {
        let err = serde_json::from_value::<T>(json!({"?": 0}))
            .err()
            .expect("an unknown key is refused")
            .to_string();
        let expected = err.split("expected").nth(1).unwrap_or_default();
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|k| format!("{prefix}{k}"))
            .collect()
    }

    #[test]
    fn the_reference_documents_every_key_and_environment_variable() {
        let documented: Vec<(String, Vec<String>)> = reference_table("Configuration")
            .into_iter()
            .map(|(key, env)| (key[0].clone(), env))
            .collect();
        let mut actual: Vec<String> = [
            keys::<DatabaseConfig>("database."),
            keys::<OpenBaoConfig>("openbao."),
            keys::<AppRoleConfig>("openbao.approle."),
            keys::<ApiConfig>("api."),
            keys::<LeaseConfig>("lease."),
            keys::<ExposureConfig>("exposure."),
            keys::<Limits>("limits."),
        ]
        .concat();
        actual.retain(|k| k != "openbao.approle");
        assert_eq!(keys::<Config>("").len(), 6, "a new config section");
        let mut listed: Vec<String> = documented.iter().map(|(k, _)| k.clone()).collect();
        listed.sort();
        actual.sort();
        assert_eq!(listed, actual, "docs/reference.md#configuration vs Config");

        // each documented variable fills its key, and no other is read
        let value = |c: &Config, key: &str| -> Option<String> {
            match key {
                "database.url" => c.database.url.as_ref().map(|s| s.expose().to_string()),
                "openbao.addr" => c.openbao.addr.clone(),
                "openbao.token" => c.openbao.token.as_ref().map(|s| s.expose().to_string()),
                "api.url" => c.api.url.clone(),
                other => panic!("{other} has an environment variable the test does not know"),
            }
        };
        let mut documented_env = Vec::new();
        for (key, env) in documented.iter().filter(|(_, env)| !env.is_empty()) {
            for var in env {
                let mut c = Config::default();
                c.fill_from_env(|k| (k == var).then(|| "from-env".to_string()));
                assert_eq!(
                    value(&c, key).as_deref(),
                    Some("from-env"),
                    "{var} -> {key}"
                );
                documented_env.push(var.clone());
            }
        }
        let asked = std::cell::RefCell::new(Vec::new());
        Config::default().fill_from_env(|k| {
            asked.borrow_mut().push(k.to_string());
            None
        });
        for var in asked.into_inner() {
            assert!(
                documented_env.contains(&var),
                "{var} is read but not documented"
            );
        }
    }
}
