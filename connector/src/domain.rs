//! The values of the connector's vocabulary, as types: what a project's
//! settings, states and findings can be. Each serializes as the string the
//! catalog, the registry and the configuration use.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The word as the catalog, the registry and the configuration spell it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value a word names (as the registry stores it).
            pub fn parse(text: &str) -> crate::error::Result<Self> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(crate::error::Error::internal(format!(
                        "{other:?} is not a {}", stringify!($name)
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// Which API serves a project.
    #[derive(Default)]
    Isolation {
        /// A shared API pool (`central`, or a configured one).
        #[default]
        Shared = "shared",
        /// Its own login role and PostgREST.
        Isolated = "isolated",
    }
}

vocabulary! {
    /// Whether a project may install code (functions, `set_config` in
    /// stored expressions) in its schema.
    #[derive(Default)]
    TenantCode {
        #[default]
        Allow = "allow",
        Deny = "deny",
    }
}

vocabulary! {
    /// How PostgREST learns the served schemas.
    #[derive(Default)]
    ExposureMode {
        /// `pgrst.*` role settings of each API login role.
        #[default]
        RoleSetting = "role_setting",
        /// `supabase_connector_pgrst.pre_config()` as `PGRST_DB_PRE_CONFIG`.
        PreConfig = "pre_config",
        /// Reported only; the operator manages the environment.
        None = "none",
    }
}

vocabulary! {
    /// A project's state in the registry.
    Lifecycle {
        Active = "active",
        /// Data kept, every access blocked.
        Archived = "archived",
    }
}

vocabulary! {
    /// How much a `verify` finding matters: a project is clean when it has
    /// no `error` finding.
    Severity {
        Error = "error",
        Warning = "warning",
    }
}

vocabulary! {
    /// What a `verify` finding is about (stable codes, documented in
    /// docs/operations.md).
    FindingCode {
        RoleMissing = "role_missing",
        RoleAttributes = "role_attributes",
        RolePrivilegedAttribute = "role_privileged_attribute",
        RoleSetting = "role_setting",
        RoleExtra = "role_extra",
        MembershipMissing = "membership_missing",
        MembershipExtra = "membership_extra",
        MembershipLasting = "membership_lasting",
        SchemaMissing = "schema_missing",
        SchemaOwner = "schema_owner",
        SchemaUsageMissing = "schema_usage_missing",
        SchemaGrantExtra = "schema_grant_extra",
        DefaultPrivilegesMissing = "default_privileges_missing",
        RlsDisabled = "rls_disabled",
        ViewWithoutSecurityInvoker = "view_without_security_invoker",
        PrivilegesMissing = "privileges_missing",
        MatviewClassGrant = "matview_class_grant",
        ExposureMismatch = "exposure_mismatch",
        ExposureListDrift = "exposure_list_drift",
        PreRequestMissing = "pre_request_missing",
        ForeignGrant = "foreign_grant",
        SecurityDefinerFunction = "security_definer_function",
        TenantCodeInSharedMode = "tenant_code_in_shared_mode",
        LeaseRoleOrphan = "lease_role_orphan",
        LeaseRoleMissing = "lease_role_missing",
        LeaseRoleLimits = "lease_role_limits",
        SizeOverLimit = "size_over_limit",
        PoolPasswordMissing = "pool_password_missing",
    }
}

vocabulary! {
    /// A kind of object privileges are granted on.
    ObjectKind {
        Table = "TABLE",
        Sequence = "SEQUENCE",
        Routine = "ROUTINE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_through_serde() {
        for mode in [
            ExposureMode::RoleSetting,
            ExposureMode::PreConfig,
            ExposureMode::None,
        ] {
            let text = serde_json::to_value(mode).unwrap();
            assert_eq!(text, mode.as_str());
            assert_eq!(serde_json::from_value::<ExposureMode>(text).unwrap(), mode);
        }
        assert_eq!(Isolation::Isolated.to_string(), "isolated");
        assert!(serde_json::from_value::<TenantCode>(serde_json::json!("maybe")).is_err());
    }
}
