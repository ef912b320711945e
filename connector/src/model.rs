//! Desired state: what a project should look like, from the action's
//! parameters, the stored settings and the configuration.

use crate::config::Config;
use crate::inspect::ProjectRow;
use crate::names::ProjectNames;
use serde_json::Value;

/// The desired state of one project.
#[derive(Debug, Clone)]
pub struct DesiredProject {
    pub names: ProjectNames,
    pub exposed: bool,
    /// `shared` or `isolated`.
    pub isolation: String,
    /// `allow` or `deny`.
    pub tenant_code: String,
}

impl DesiredProject {
    /// Parameters win; omitted settings keep their stored values; a new
    /// project takes the configured defaults (`api.isolation`, `api.tenant_code`).
    pub fn from_params(
        names: ProjectNames,
        params: &Value,
        stored: Option<&ProjectRow>,
        config: &Config,
    ) -> DesiredProject {
        let text = |key: &str, stored: Option<&String>, default: &str| -> String {
            params
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| stored.cloned())
                .unwrap_or_else(|| default.to_string())
        };
        DesiredProject {
            exposed: params
                .get("expose")
                .and_then(Value::as_bool)
                .or(stored.map(|s| s.exposed))
                .unwrap_or(true),
            isolation: text(
                "isolation",
                stored.map(|s| &s.isolation),
                &config.api.isolation,
            ),
            tenant_code: text(
                "tenant_code",
                stored.map(|s| &s.tenant_code),
                &config.api.tenant_code,
            ),
            names,
        }
    }

    /// The registry row this project should have.
    pub fn row(&self) -> ProjectRow {
        ProjectRow {
            state: "active".into(),
            exposed: self.exposed,
            isolation: self.isolation.clone(),
            tenant_code: self.tenant_code.clone(),
        }
    }

    /// Whether the schema belongs in the central `pgrst.db_schemas`.
    pub fn listed_centrally(&self) -> bool {
        self.exposed && self.isolation == "shared"
    }
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
