//! Desired state: what a project should look like, from the action's
//! parameters, the stored settings and the configuration, and the
//! memberships its roles should have.

use crate::config::{Config, Limits};
use crate::domain::{Isolation, Lifecycle, TenantCode};
use crate::error::Result;
use crate::names::{pool_authenticator, ProjectNames, AUTH_ROLE, CENTRAL_POOL};
use crate::requests::ProjectSettings;
use crate::state::ProjectRow;
use serde_json::Value;

/// The desired state of one project.
#[derive(Debug, Clone)]
pub struct DesiredProject {
    pub names: ProjectNames,
    pub exposed: bool,
    pub isolation: Isolation,
    pub tenant_code: TenantCode,
    pub limits: Limits,
    /// The API pool serving it when shared (`central`: Supabase's own).
    pub pool: String,
}

impl DesiredProject {
    /// The settings given win; omitted ones keep their stored values; a
    /// new project takes the configured defaults. `limits` merges key by key.
    pub fn new(
        names: ProjectNames,
        given: &ProjectSettings,
        stored: Option<&ProjectRow>,
        config: &Config,
    ) -> Result<DesiredProject> {
        let base = match stored.map(|s| &s.limits) {
            Some(v) if v.as_object().is_some_and(|o| !o.is_empty()) => config.limits.merged(v)?,
            _ => config.limits.clone(),
        };
        let limits = match &given.limits {
            Some(partial) => base.merged(partial)?,
            None => base,
        };
        Ok(DesiredProject {
            exposed: given.expose.or(stored.map(|s| s.exposed)).unwrap_or(true),
            isolation: given
                .isolation
                .or(stored.map(|s| s.isolation))
                .unwrap_or(config.api.isolation),
            tenant_code: given
                .tenant_code
                .or(stored.map(|s| s.tenant_code))
                .unwrap_or(config.api.tenant_code),
            limits,
            pool: given
                .pool
                .clone()
                .or_else(|| stored.map(|s| s.pool.clone()))
                .unwrap_or_else(|| CENTRAL_POOL.to_string()),
            names,
        })
    }

    /// As stored (what `verify` holds the catalog against).
    pub fn stored(
        names: ProjectNames,
        stored: &ProjectRow,
        config: &Config,
    ) -> Result<DesiredProject> {
        DesiredProject::new(names, &ProjectSettings::default(), Some(stored), config)
    }

    /// The registry row this project should have.
    pub fn row(&self) -> ProjectRow {
        ProjectRow {
            state: Lifecycle::Active,
            exposed: self.exposed,
            isolation: self.isolation,
            tenant_code: self.tenant_code,
            limits: serde_json::to_value(&self.limits).unwrap_or_default(),
            pool: self.pool.clone(),
        }
    }

    /// Whether the schema belongs in its pool's served list.
    pub fn listed(&self) -> bool {
        self.exposed && self.isolation == Isolation::Shared
    }

    /// The login role that serves this project's API and switches to its
    /// class roles: its own when isolated, else its pool's while the
    /// project is exposed; none otherwise.
    pub fn api_authenticator(&self) -> Option<String> {
        if self.isolation == Isolation::Isolated {
            Some(self.names.authenticator.clone())
        } else if self.exposed {
            Some(pool_authenticator(&self.pool))
        } else {
            None
        }
    }

    /// Every membership the project's roles should have. The runtime role
    /// holds none: it borrows the owner for one transaction when a plan
    /// needs it.
    pub fn memberships(&self) -> Vec<WantedMembership> {
        let n = &self.names;
        let inherit = |role: &str, member: &str| WantedMembership {
            role: role.to_string(),
            member: member.to_string(),
            kind: MembershipKind::Inherit,
        };
        let inherit_only = |role: &str, member: &str| WantedMembership {
            kind: MembershipKind::InheritOnly,
            ..inherit(role, member)
        };
        let mut out = vec![
            inherit(&n.owner, &n.service_role),
            inherit_only("authenticated", &n.authenticated),
            inherit_only("anon", &n.anon),
            inherit(AUTH_ROLE, &n.owner),
        ];
        if let Some(api) = self.api_authenticator() {
            for class in [&n.service_role, &n.authenticated, &n.anon] {
                out.push(WantedMembership {
                    role: class.clone(),
                    member: api.clone(),
                    kind: MembershipKind::Set,
                });
            }
        }
        out
    }
}

/// How a membership is granted (PostgreSQL 16+ records both per grant; on
/// 15 every membership inherits and allows `SET ROLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipKind {
    /// `INHERIT TRUE, SET TRUE`: the member has the role's privileges.
    Inherit,
    /// `INHERIT TRUE, SET FALSE`: the role's privileges, but no `SET ROLE`
    /// to it (how class roles hold Supabase's `authenticated` and `anon`:
    /// a login role that switches to a class role cannot go on to them).
    InheritOnly,
    /// `INHERIT FALSE, SET TRUE`: an API login role that switches to it.
    Set,
}

/// One membership a project's roles should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedMembership {
    pub role: String,
    pub member: String,
    pub kind: MembershipKind,
}

/// Who gets access: a user, a service or the project itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A GoTrue user.
    User(uuid::Uuid),
    /// An app or pipeline.
    Service(String),
    /// The project itself (its own service-class lease).
    Project,
}

impl serde::Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl Principal {
    /// Parse `{"type": "user"|"service"|"project", "id": …}` (already schema-checked).
    pub fn from_json(v: &Value) -> crate::error::Result<Principal> {
        let id = v.get("id").and_then(Value::as_str);
        match (v.get("type").and_then(Value::as_str), id) {
            (Some("user"), Some(id)) => uuid::Uuid::parse_str(id)
                .map(Principal::User)
                .map_err(|_| crate::error::Error::invalid_at("/principal/id", "not a UUID")),
            (Some("service"), Some("project")) | (Some("project"), _) => Ok(Principal::Project),
            (Some("service"), Some(id)) => Ok(Principal::Service(id.to_string())),
            _ => Err(crate::error::Error::invalid_at(
                "/principal",
                "expected {\"type\": \"user\"|\"service\", \"id\": …}",
            )),
        }
    }

    /// `principal_type` as stored in the registry.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::User(_) => "user",
            Principal::Service(_) | Principal::Project => "service",
        }
    }

    /// `principal_id` as stored in the registry.
    pub fn id(&self) -> String {
        match self {
            Principal::User(u) => u.to_string(),
            Principal::Service(s) => s.clone(),
            Principal::Project => "project".into(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({"type": self.kind(), "id": self.id()})
    }

    /// The token's `sub`: the user's own id, else a stable UUIDv5 so that
    /// `auth.uid()` works and row ownership survives rotation.
    pub fn subject(&self, project: &str) -> uuid::Uuid {
        match self {
            Principal::User(u) => *u,
            _ => uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!(
                    "urn:supabase-connector:{project}:{}:{}",
                    self.kind(),
                    self.id()
                )
                .as_bytes(),
            ),
        }
    }

    /// Rebuild from registry columns.
    pub fn from_row(kind: &str, id: &str) -> Principal {
        match (kind, id) {
            ("service", "project") => Principal::Project,
            ("user", id) => uuid::Uuid::parse_str(id)
                .map(Principal::User)
                .unwrap_or_else(|_| Principal::Service(id.into())),
            (_, id) => Principal::Service(id.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn principal_subjects_are_stable() {
        let p = Principal::from_json(&json!({"type": "service", "id": "etl"})).unwrap();
        assert_eq!(p.subject("acme"), p.subject("acme"));
        assert_ne!(p.subject("acme"), p.subject("other"));
        let u = uuid::Uuid::new_v4();
        assert_eq!(Principal::User(u).subject("acme"), u);
        assert_eq!(
            Principal::from_json(&json!({"type": "project"})).unwrap(),
            Principal::Project
        );
        assert_eq!(
            Principal::Project.to_json(),
            json!({"type": "service", "id": "project"})
        );
    }
}
