//! Validated names: project slugs, and the schema and role identifiers
//! derived from them (`docs/reference.md#objects-in-the-database`). Every
//! identifier that reaches SQL comes from here and is quoted with [`ident`].

use crate::error::{Error, Result};
use uuid::Uuid;

/// The registry schema installed by bootstrap.
pub const REGISTRY_SCHEMA: &str = "supabase_connector";
/// The NOLOGIN role that carries `USAGE` on `auth` and `EXECUTE` on its helpers.
pub const AUTH_ROLE: &str = "supabase_connector_auth";
/// The central PostgREST login role.
pub const AUTHENTICATOR: &str = "authenticator";
/// The pool Supabase's own API is (its login role is [`AUTHENTICATOR`]).
pub const CENTRAL_POOL: &str = "central";
/// The anonymous role of the pools' PostgRESTs: no privileges anywhere.
pub const POOL_ANON_ROLE: &str = "supabase_connector_pool_anon";

/// The login role of an API pool's PostgREST.
pub fn pool_authenticator(pool: &str) -> String {
    if pool == CENTRAL_POOL {
        AUTHENTICATOR.to_string()
    } else {
        format!("supabase_connector_pool_{pool}")
    }
}

/// A validated project slug: `^[a-z][a-z0-9_-]{0,38}[a-z0-9]$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Slug> {
        let b = s.as_bytes();
        let ok = (2..=40).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-');
        if ok {
            Ok(Slug(s.to_string()))
        } else {
            Err(Error::invalid_at(
                "/project",
                format!(
                    "{s:?} is not a project slug (2-40 chars of a-z, 0-9, '_' and '-', starting with a letter, ending with a letter or digit)"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Slug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The three Supabase access classes, ordered from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessClass {
    Anon,
    Authenticated,
    ServiceRole,
}

impl serde::Serialize for AccessClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl AccessClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessClass::Anon => "anon",
            AccessClass::Authenticated => "authenticated",
            AccessClass::ServiceRole => "service_role",
        }
    }

    pub fn parse(s: &str) -> Option<AccessClass> {
        match s {
            "anon" => Some(AccessClass::Anon),
            "authenticated" => Some(AccessClass::Authenticated),
            "service_role" => Some(AccessClass::ServiceRole),
            _ => None,
        }
    }

    /// The access class of a platform role
    /// (`docs/reference.md#platform-roles-and-access-classes`).
    pub fn of_platform_role(role: &str) -> Result<AccessClass> {
        match role {
            "project_owner" | "maintainer" | "project_maintainer" | "solution_admin" => {
                Ok(AccessClass::ServiceRole)
            }
            "project_contributor" | "team_member" | "solution_user" => {
                Ok(AccessClass::Authenticated)
            }
            "project_viewer" | "solution_viewer" => Ok(AccessClass::Anon),
            other => Err(Error::invalid_at(
                "/platform_role",
                format!(
                    "unknown platform role {other:?}; allowed: {}",
                    PLATFORM_ROLES.join(", ")
                ),
            )),
        }
    }
}

/// Every platform role the mapping accepts.
pub const PLATFORM_ROLES: [&str; 9] = [
    "project_owner",
    "maintainer",
    "project_maintainer",
    "solution_admin",
    "project_contributor",
    "team_member",
    "solution_user",
    "project_viewer",
    "solution_viewer",
];

/// The names of one project's objects (`docs/reference.md#per-project`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectNames {
    pub slug: Slug,
    /// `proj_<slug with - as _>`
    pub schema: String,
    pub owner: String,
    pub service_role: String,
    pub authenticated: String,
    pub anon: String,
    /// Dedicated PostgREST login role of an isolated project.
    pub authenticator: String,
}

impl ProjectNames {
    pub fn new(slug: &Slug) -> ProjectNames {
        let schema = format!("proj_{}", slug.as_str().replace('-', "_"));
        ProjectNames {
            slug: slug.clone(),
            owner: format!("{schema}_owner"),
            service_role: format!("{schema}_service_role"),
            authenticated: format!("{schema}_authenticated"),
            anon: format!("{schema}_anon"),
            authenticator: format!("{schema}_authenticator"),
            schema,
        }
    }

    /// The project's role of an access class.
    pub fn class_role(&self, class: AccessClass) -> &str {
        match class {
            AccessClass::ServiceRole => &self.service_role,
            AccessClass::Authenticated => &self.authenticated,
            AccessClass::Anon => &self.anon,
        }
    }
}

/// The login role of a database lease: `lease_<32 hex of its id>`.
pub fn lease_login_role(lease_id: Uuid) -> String {
    format!("lease_{}", lease_id.simple())
}

/// Whether `name` has the shape of a lease role (`lease_<32 hex>`, or
/// `lease_<32 hex>_anon` as leases of bootstrap version 1 had).
#[cfg(any(test, feature = "internals"))]
pub fn is_lease_role(name: &str) -> bool {
    let hex = name
        .strip_prefix("lease_")
        .map(|rest| rest.strip_suffix("_anon").unwrap_or(rest));
    hex.is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Quote an SQL identifier. Names are validated before they get here; quoting
/// is the second wall, so a bad name can never break out of the identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote an SQL string literal (for the few places DDL cannot take a bind
/// parameter: `VALID UNTIL`, `PASSWORD`, `SET role`). Rejects NUL.
#[cfg(any(test, feature = "internals"))]
pub fn literal(value: &str) -> String {
    assert!(!value.contains('\0'), "NUL in an SQL literal");
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in [
            "ab",
            "acme",
            "a-b",
            "a_b",
            "a1",
            &format!("a{}", "b".repeat(39)),
        ] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "Bad Slug",
            "a;drop",
            "1abc",
            "abc-",
            "ab_",
            "",
            "ábc",
            &format!("a{}", "b".repeat(40)),
            "a\"b",
            "a\0b",
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn project_names() {
        let n = ProjectNames::new(&Slug::parse("my-app").unwrap());
        assert_eq!(n.schema, "proj_my_app");
        assert_eq!(n.owner, "proj_my_app_owner");
        assert_eq!(n.class_role(AccessClass::Anon), "proj_my_app_anon");
        // longest slug still fits PostgreSQL's 63-byte identifiers
        let long = ProjectNames::new(&Slug::parse(&format!("a{}", "b".repeat(39))).unwrap());
        assert!(long.authenticator.len() <= 63 && long.service_role.len() <= 63);
    }

    #[test]
    fn lease_roles_fit() {
        let r = lease_login_role(Uuid::new_v4());
        assert_eq!(r.len(), 38);
        assert!(is_lease_role(&r) && is_lease_role(&format!("{r}_anon")));
        for other in [
            "lease_",
            "lease_xyz",
            "proj_a_owner",
            "postgres",
            &format!("{r}_x"),
            &r.to_uppercase(),
        ] {
            assert!(!is_lease_role(other), "{other}");
        }
    }

    #[test]
    fn classes_order_and_map() {
        assert!(AccessClass::ServiceRole > AccessClass::Authenticated);
        assert!(AccessClass::Authenticated > AccessClass::Anon);
        for r in PLATFORM_ROLES {
            assert!(AccessClass::of_platform_role(r).is_ok());
        }
        let e = AccessClass::of_platform_role("admin").unwrap_err();
        assert!(e.message.contains("project_owner"));
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
