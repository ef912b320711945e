//! Statements as plans hold them: SQL text with typed bind parameters, and
//! the facts about the server that rendering depends on. Pure data: the
//! database layer (`db`) binds and sends them.

use crate::config::Secret;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// Facts about the server, read once per pool.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `server_version_num`, e.g. 150018 or 180006.
    pub version_num: i32,
    /// The role actions run as (`postgres` on Supabase).
    pub runtime_role: String,
    pub dbname: String,
    pub host: String,
    pub port: u16,
}

impl ServerInfo {
    /// PostgreSQL 16 changed the rules for granting roles.
    pub fn pg16_grants(&self) -> bool {
        self.version_num >= 160000
    }
}

/// A bind parameter of a planned statement.
#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    OptText(Option<String>),
    TextArray(Vec<String>),
    Bool(bool),
    Int(i32),
    Int8(i64),
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    UuidArray(Vec<Uuid>),
    Time(DateTime<Utc>),
    Json(Value),
    /// A secret value (a SCRAM verifier): sent as a parameter, shown as `***`.
    Secret(Secret),
}

impl Param {
    fn display(&self) -> Value {
        match self {
            Param::Text(v) => Value::from(v.as_str()),
            Param::OptText(v) => v.as_deref().map(Value::from).unwrap_or(Value::Null),
            Param::TextArray(v) => Value::from(v.clone()),
            Param::Bool(v) => Value::from(*v),
            Param::Int(v) => Value::from(*v),
            Param::Int8(v) => Value::from(*v),
            Param::Uuid(v) => Value::from(v.to_string()),
            Param::OptUuid(v) => v.map(|u| Value::from(u.to_string())).unwrap_or(Value::Null),
            Param::UuidArray(v) => Value::from(v.iter().map(Uuid::to_string).collect::<Vec<_>>()),
            Param::Time(v) => Value::from(v.to_rfc3339()),
            Param::Json(v) => v.clone(),
            Param::Secret(_) => Value::from("***"),
        }
    }
}

/// One SQL statement of a plan. DDL carries no parameters (PostgreSQL does
/// not take them there); registry writes always do.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Statement {
    pub fn ddl(sql: impl Into<String>) -> Statement {
        Statement {
            sql: sql.into(),
            params: vec![],
        }
    }
    pub fn with(sql: impl Into<String>, params: Vec<Param>) -> Statement {
        Statement {
            sql: sql.into(),
            params,
        }
    }
    /// The statement as shown by `dry_run` and `plan`: parameters follow as a comment.
    pub fn display(&self) -> String {
        if self.params.is_empty() {
            self.sql.clone()
        } else {
            let params: Vec<Value> = self.params.iter().map(Param::display).collect();
            format!("{} -- {}", self.sql, Value::from(params))
        }
    }
}
