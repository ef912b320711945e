//! The actual state of a project as the catalogs and the registry have it:
//! what `inspect` reads and the diff compares against the desired state.
//! Pure data.

use crate::domain::{Isolation, Lifecycle, TenantCode};
use serde::Deserialize;
use serde_json::Value;

/// The registry row of a project.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ProjectRow {
    pub state: Lifecycle,
    pub exposed: bool,
    pub isolation: Isolation,
    pub tenant_code: TenantCode,
    /// The project's resolved limits (`{}` before any were recorded).
    pub limits: Value,
    /// The API pool it is placed on.
    pub pool: String,
}

/// Attributes of one role.
#[derive(Debug, Clone, Deserialize)]
pub struct RoleState {
    pub name: String,
    pub login: bool,
    pub inherit: bool,
    pub superuser: bool,
    pub createrole: bool,
    pub createdb: bool,
    pub replication: bool,
    pub bypassrls: bool,
}

/// One direct `pg_auth_members` row. `inherit`/`set` exist on PostgreSQL 16+.
#[derive(Debug, Clone, Deserialize)]
pub struct Membership {
    pub role: String,
    pub member: String,
    pub inherit: Option<bool>,
    pub set: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AclEntry {
    pub grantee: String,
    pub privilege: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SchemaState {
    pub owner: String,
    /// Grants other than the owner's own.
    pub grants: Vec<AclEntry>,
}

/// One entry of the owner's default privileges (`pg_default_acl`).
#[derive(Debug, Clone, Deserialize)]
pub struct DefaultAcl {
    pub in_schema: bool,
    /// `r` tables, `S` sequences, `f` functions, `T` types, `n` schemas.
    pub objtype: String,
    pub grantee: String,
    pub privilege: String,
}

/// A class role lacking privileges on an existing object.
#[derive(Debug, Clone, Deserialize)]
pub struct MissingGrant {
    /// `TABLE`, `SEQUENCE` or `ROUTINE`.
    pub kind: String,
    /// Qualified, quoted by PostgreSQL.
    pub object: String,
    pub role: String,
    pub privileges: Vec<String>,
}

/// One role setting (`ALTER ROLE … SET name = value`, all databases).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RoleSetting {
    pub role: String,
    pub name: String,
    pub value: String,
}

/// A pool's registry row.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PoolRow {
    pub url: Option<String>,
    pub max_projects: i32,
}

/// A configured API pool as the catalog and registry have it.
#[derive(Debug, Clone, Deserialize)]
pub struct PoolState {
    pub name: String,
    pub registry: Option<PoolRow>,
    /// Its login role.
    pub role: Option<RoleState>,
    pub statement_timeout: Option<String>,
    /// Its login role may switch to the pools' anonymous role.
    pub anon_member: bool,
}

/// Everything `upsert_database_project_access` compares against.
#[derive(Debug, Clone, Deserialize)]
pub struct ProjectState {
    pub registry: Option<ProjectRow>,
    /// Another slug already mapped to this schema name.
    pub schema_taken_by: Option<String>,
    pub roles: Vec<RoleState>,
    pub memberships: Vec<Membership>,
    /// Settings of the project's roles.
    pub settings: Vec<RoleSetting>,
    pub schema: Option<SchemaState>,
    pub default_acl: Vec<DefaultAcl>,
    pub functions_public_revoked: bool,
    pub tables_without_rls: Vec<String>,
    pub views_without_invoker: Vec<String>,
    pub missing_grants: Vec<MissingGrant>,
    pub matviews_with_class_grants: Vec<String>,
    /// The schema is in the served `pgrst.db_schemas` list.
    pub listed: bool,
    /// The login role of the pool the project is on runs the connector's
    /// `pre_request`.
    pub pre_request_set: bool,
    /// The configured pool the state was read for (none for `central`).
    pub pool: Option<PoolState>,
    pub exposure_settings: Option<Value>,
    pub active_leases: i64,
}

impl ProjectState {
    pub fn role(&self, name: &str) -> Option<&RoleState> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// Every grant of `role` to `member` (on 16+ one per grantor).
    pub fn memberships_of<'a>(
        &'a self,
        role: &'a str,
        member: &'a str,
    ) -> impl Iterator<Item = &'a Membership> + 'a {
        self.memberships
            .iter()
            .filter(move |m| m.role == role && m.member == member)
    }

    pub fn membership(&self, role: &str, member: &str) -> Option<&Membership> {
        self.memberships
            .iter()
            .find(|m| m.role == role && m.member == member)
    }

    /// Whether the runtime role holds the owner directly, with its
    /// privileges (a membership kept by an earlier version).
    pub fn holds_owner(&self, owner: &str, runtime: &str) -> bool {
        self.memberships_of(owner, runtime)
            .any(|m| m.inherit.unwrap_or(true) && m.set.unwrap_or(true))
    }

    /// A role setting's value, when set.
    pub fn setting(&self, role: &str, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|s| s.role == role && s.name == name)
            .map(|s| s.value.as_str())
    }
}
