//! Each action's parameters as a typed request, read once after the
//! catalog's JSON Schema accepted them (and filled their defaults). Actions
//! take these, never the JSON.

use crate::domain::{Isolation, TenantCode};
use crate::error::{Error, Result};
use crate::model::Principal;
use crate::names::Slug;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// Any action's request.
#[derive(Debug, Clone)]
pub enum Request {
    UpsertProject(UpsertProject),
    DescribeProject(DescribeProject),
    UpsertTeam(UpsertTeam),
    UpsertAccess(UpsertAccess),
    RevokeAccess(RevokeAccess),
    RevokeTeam(RevokeTeam),
    IssueLease(IssueLease),
    RenewLease(RenewLease),
    RevokeLease(RevokeLease),
    ReapLeases(ReapLeases),
    RemoveProject(RemoveProject),
    ApplyMigrations(ApplyMigrations),
    VerifyProjects(VerifyProjects),
}

impl Request {
    /// The request of `action` from parameters the catalog has validated.
    pub fn parse(action: &str, p: &Value) -> Result<Request> {
        Ok(match action {
            "upsert_database_project_access" => Request::UpsertProject(parse(action, p)?),
            "describe_database_project" => Request::DescribeProject(parse(action, p)?),
            "upsert_database_team_access" => Request::UpsertTeam(parse(action, p)?),
            "upsert_database_access" => Request::UpsertAccess(parse(action, p)?),
            "revoke_database_access" => Request::RevokeAccess(parse(action, p)?),
            "revoke_database_team_access" => Request::RevokeTeam(parse(action, p)?),
            "issue_database_lease" => Request::IssueLease(parse(action, p)?),
            "renew_database_lease" => Request::RenewLease(parse(action, p)?),
            "revoke_database_lease" => Request::RevokeLease(parse(action, p)?),
            "reap_expired_leases" => Request::ReapLeases(parse(action, p)?),
            "remove_database_project" => Request::RemoveProject(parse(action, p)?),
            "apply_database_migrations" => Request::ApplyMigrations(parse(action, p)?),
            "verify_database_project" => Request::VerifyProjects(parse(action, p)?),
            other => return Err(Error::invalid(format!("unknown action {other:?}"))),
        })
    }
}

/// Read a request from parameters the catalog has validated.
fn parse<T: DeserializeOwned>(action: &str, params: &Value) -> Result<T> {
    serde_json::from_value(params.clone())
        .map_err(|e| Error::invalid(format!("invalid parameters for {action}: {e}")))
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Slug::parse(&text).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Principal::from_json(&value).map_err(|e| serde::de::Error::custom(e.message))
    }
}

fn yes() -> bool {
    true
}

/// A project's settings an upsert may give; omitted ones keep their stored
/// values (the configured defaults for a new project).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProjectSettings {
    pub expose: Option<bool>,
    pub isolation: Option<Isolation>,
    pub tenant_code: Option<TenantCode>,
    /// Merged key by key over the stored limits.
    pub limits: Option<Value>,
    /// An API pool's name, or `central`.
    pub pool: Option<String>,
}

/// `upsert_database_project_access`.
#[derive(Debug, Clone, Deserialize)]
pub struct UpsertProject {
    pub project: Slug,
    #[serde(flatten)]
    pub settings: ProjectSettings,
    #[serde(default = "yes")]
    pub issue_lease: bool,
    #[serde(default = "yes")]
    pub database: bool,
    pub lease_ttl_seconds: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// `upsert_database_team_access`.
#[derive(Debug, Clone, Deserialize)]
pub struct UpsertTeam {
    pub project: Slug,
    pub team_id: String,
    pub platform_role: String,
    pub members: Vec<Uuid>,
    #[serde(default)]
    pub dry_run: bool,
}

/// `upsert_database_access`.
#[derive(Debug, Clone, Deserialize)]
pub struct UpsertAccess {
    pub project: Slug,
    pub principal: Principal,
    pub platform_role: String,
    #[serde(default = "yes")]
    pub issue_lease: bool,
    #[serde(default = "yes")]
    pub database: bool,
    pub lease_ttl_seconds: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// `issue_database_lease`.
#[derive(Debug, Clone, Deserialize)]
pub struct IssueLease {
    pub project: Slug,
    pub principal: Principal,
    pub lease_ttl_seconds: Option<u64>,
    #[serde(default = "yes")]
    pub database: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// `renew_database_lease`.
#[derive(Debug, Clone, Deserialize)]
pub struct RenewLease {
    pub lease_id: Uuid,
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// `revoke_database_lease`.
#[derive(Debug, Clone, Deserialize)]
pub struct RevokeLease {
    pub lease_id: Uuid,
    #[serde(default)]
    pub dry_run: bool,
}

/// `revoke_database_access`.
#[derive(Debug, Clone, Deserialize)]
pub struct RevokeAccess {
    pub project: Slug,
    pub principal: Principal,
    #[serde(default)]
    pub dry_run: bool,
}

/// `revoke_database_team_access`.
#[derive(Debug, Clone, Deserialize)]
pub struct RevokeTeam {
    pub project: Slug,
    pub team_id: String,
    #[serde(default)]
    pub dry_run: bool,
}

/// `remove_database_project`.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoveProject {
    pub project: Slug,
    #[serde(default)]
    pub drop_data: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// One migration file of `apply_database_migrations`.
#[derive(Debug, Clone, Deserialize)]
pub struct MigrationFile {
    pub version: String,
    pub name: String,
    pub sql: String,
}

/// `apply_database_migrations`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApplyMigrations {
    pub project: Slug,
    pub migrations: Vec<MigrationFile>,
    #[serde(default)]
    pub dry_run: bool,
}

/// `verify_database_project` (every project when none is named).
#[derive(Debug, Clone, Deserialize)]
pub struct VerifyProjects {
    pub project: Option<Slug>,
    #[serde(default)]
    pub repair: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// `describe_database_project`.
#[derive(Debug, Clone, Deserialize)]
pub struct DescribeProject {
    pub project: Slug,
}

/// `reap_expired_leases`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReapLeases {
    #[serde(default)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_read_the_catalogs_parameters() {
        let r: UpsertProject = parse(
            "upsert_database_project_access",
            &json!({"project": "acme", "isolation": "isolated", "limits": {"connection_limit": 3},
                    "issue_lease": true, "database": false, "dry_run": false}),
        )
        .unwrap();
        assert_eq!(r.project.as_str(), "acme");
        assert_eq!(r.settings.isolation, Some(Isolation::Isolated));
        assert!(r.settings.expose.is_none() && !r.database);
        let r: IssueLease = parse(
            "issue_database_lease",
            &json!({"project": "acme", "principal": {"type": "service", "id": "project"}}),
        )
        .unwrap();
        assert_eq!(r.principal, Principal::Project);
        assert!(r.database, "database access unless asked otherwise");
        let e = parse::<IssueLease>("issue_database_lease", &json!({"project": "Not A Slug"}))
            .unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_params");
    }
}
