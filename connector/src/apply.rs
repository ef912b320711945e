//! Applying: the audit row every action writes, with secrets and migration
//! text redacted, and the JSON a dry run returns.

use crate::plan::{Change, PlanContext};
use crate::render::render_all;
use crate::sql::{Param, Statement};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Keys whose values never reach the audit log.
const SECRET_KEYS: [&str; 6] = [
    "password",
    "access_token",
    "publishable_token",
    "apikey",
    "token",
    "secret_id",
];

/// A copy of `value` fit for the audit log: secrets removed, migration SQL
/// replaced by its size and checksum.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                if SECRET_KEYS.contains(&k.as_str())
                    || k.ends_with("_KEY")
                    || k.ends_with("_TOKEN")
                    || k == "DATABASE_URL"
                    || k == "url" && v.as_str().is_some_and(|u| u.contains('@'))
                {
                    out.insert(k.clone(), json!("***"));
                } else if k == "sql" {
                    let text = v.as_str().unwrap_or_default();
                    out.insert(
                        k.clone(),
                        json!({"bytes": text.len(), "sha256": checksum(text)}),
                    );
                } else {
                    out.insert(k.clone(), redact(v));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Hex SHA-256 of a text (migration checksums).
pub fn checksum(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The audit row of one action.
pub struct Audit<'a> {
    pub action: &'a str,
    pub project: Option<&'a str>,
    pub lease_id: Option<Uuid>,
    pub changed: bool,
    pub params: &'a Value,
    pub outcome: Value,
}

impl Audit<'_> {
    /// The row's insert; `statements`: how many the action ran, this one included.
    pub fn statement(&self, statements: u32) -> Statement {
        Statement::with(
            "insert into supabase_connector.audit_log (action, project, lease_id, changed, statements, params, outcome) \
             values ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                Param::Text(self.action.into()),
                Param::OptText(self.project.map(str::to_string)),
                Param::OptUuid(self.lease_id),
                Param::Bool(self.changed),
                Param::Int(statements as i32),
                Param::Json(redact(self.params)),
                Param::Json(redact(&self.outcome)),
            ],
        )
    }
}

/// What `dry_run` returns: the typed changes and the SQL they render to.
pub fn dry_run_result(action: &str, changes: &[Change], ctx: &PlanContext, extra: Value) -> Value {
    let statements = render_all(changes, ctx);
    let mut out = json!({
        "dry_run": true,
        "action": action,
        "changes": changes,
        "statements": statements.iter().map(Statement::display).collect::<Vec<_>>(),
    });
    if let (Some(o), Value::Object(extra)) = (out.as_object_mut(), extra) {
        o.extend(extra);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_and_sql() {
        let v = json!({"lease": {"database": {"password": "p4ss", "url": "postgresql://u:p4ss@h/db"},
                                 "api": {"access_token": "ey.x.y", "apikey": "k"},
                                 "env": {"DATABASE_URL": "postgresql://u:p4ss@h/db", "SUPABASE_ANON_KEY": "k", "SUPABASE_DB_SCHEMA": "proj_a"}},
                       "migrations": [{"version": "1", "sql": "create table t()"}]});
        let r = redact(&v).to_string();
        assert!(
            !r.contains("p4ss") && !r.contains("ey.x.y") && !r.contains("\"k\""),
            "{r}"
        );
        assert!(r.contains("proj_a") && r.contains("sha256"));
    }
}
