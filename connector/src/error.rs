//! The connector's single error type and its stable codes (the table in
//! `docs/reference.md#errors`: CLI exit codes and Python exceptions).

use serde_json::{json, Value};
use std::fmt;
use std::sync::Arc;
use tokio_postgres::error::SqlState;

/// Stable error codes shared by the CLI, the library and the Python bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidParams,
    NotFound,
    Conflict,
    Forbidden,
    SecretsUnavailable,
    DatabaseUnavailable,
    MigrationFailed,
    /// The server is not set up as the connector requires (bootstrap's
    /// preconditions, a missing or other registry version).
    PreconditionFailed,
    Internal,
}

impl ErrorCode {
    /// The code as written in JSON (`invalid_params`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::SecretsUnavailable => "secrets_unavailable",
            ErrorCode::DatabaseUnavailable => "database_unavailable",
            ErrorCode::MigrationFailed => "migration_failed",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::Internal => "internal",
        }
    }

    /// The CLI's exit status for this code.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::Internal => 1,
            ErrorCode::InvalidParams => 2,
            ErrorCode::NotFound => 3,
            ErrorCode::Conflict => 4,
            ErrorCode::Forbidden => 5,
            ErrorCode::SecretsUnavailable => 6,
            ErrorCode::DatabaseUnavailable => 7,
            ErrorCode::MigrationFailed => 8,
            ErrorCode::PreconditionFailed => 9,
        }
    }

    /// Every code, in exit-code order.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::Internal,
        ErrorCode::InvalidParams,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::Forbidden,
        ErrorCode::SecretsUnavailable,
        ErrorCode::DatabaseUnavailable,
        ErrorCode::MigrationFailed,
        ErrorCode::PreconditionFailed,
    ];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as data: a code, a human message and structured details.
///
/// Messages and details never carry secrets: every constructor is fed
/// identifiers and PostgreSQL/OpenBao messages only.
#[derive(Debug, Clone)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    /// The error it came from, when there is one (a PostgreSQL error).
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            details: Value::Null,
            source: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Keep the error this one comes from (`std::error::Error::source`).
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn secrets(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::SecretsUnavailable, message)
    }
    pub fn database(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::DatabaseUnavailable, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PreconditionFailed, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// `invalid_params` for a single violation at a JSON pointer.
    pub fn invalid_at(pointer: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::invalid(format!("{pointer}: {message}"))
            .with_details(json!({"violations": [{"path": pointer, "message": message}]}))
    }

    /// The JSON shape of an error: `{"code", "message", "details"}`.
    pub fn to_json(&self) -> Value {
        json!({"code": self.code.as_str(), "message": self.message, "details": self.details})
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// SQLSTATE the bootstrap's functions raise when a project limit is reached
/// (`limits.max_database_leases`): a `conflict`.
pub const LIMIT_REACHED: &str = "SC409";

/// The SQLSTATE bootstrap's precondition checks raise (`sql/bootstrap/`):
/// the server is not set up as the connector requires.
pub const PRECONDITION_SQLSTATE: &str = "SC412";

/// SQLSTATE classes that mean "the server went away", not "the SQL was wrong".
fn is_connection_state(code: &SqlState) -> bool {
    let text = code.code();
    text.starts_with("08") // connection exception
        || text.starts_with("57P") // admin/crash shutdown, cannot connect now
        || *code == SqlState::TOO_MANY_CONNECTIONS
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            let message = if e.is_closed()
                || e.to_string().contains("connection")
                || e.to_string().contains("timed out")
            {
                format!("PostgreSQL connection lost: {e}")
            } else {
                format!("PostgreSQL: {e}")
            };
            return Error::database(message).caused_by(e);
        };
        let code = db.code();
        let details = json!({
            "sqlstate": code.code(),
            "detail": db.detail(),
            "hint": db.hint(),
        });
        let (kind, message) = if is_connection_state(code) {
            (
                ErrorCode::DatabaseUnavailable,
                format!("PostgreSQL: {}", db.message()),
            )
        } else if [
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
        ]
        .contains(code)
        {
            // deadlock, lock timeout, statement timeout: the action rolled back
            (
                ErrorCode::DatabaseUnavailable,
                format!("PostgreSQL: {}", db.message()),
            )
        } else if *code == SqlState::from_code(LIMIT_REACHED) {
            // a project limit the bootstrap's functions enforce
            (ErrorCode::Conflict, db.message().to_string())
        } else if *code == SqlState::from_code(PRECONDITION_SQLSTATE) {
            (
                ErrorCode::PreconditionFailed,
                format!("PostgreSQL: {}", db.message()),
            )
        } else {
            (ErrorCode::Internal, format!("PostgreSQL: {}", db.message()))
        };
        Error::new(kind, message).with_details(details).caused_by(e)
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => {
                let mut err = Error::from(e);
                if err.code == ErrorCode::Internal {
                    err.code = ErrorCode::DatabaseUnavailable;
                }
                err
            }
            deadpool_postgres::PoolError::Timeout(_) => {
                Error::database("no database connection became free in time (pool exhausted)")
            }
            other => Error::database(format!("cannot get a database connection: {other}")),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::internal(format!("JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_documents_every_code_and_exit_status() {
        let doc = include_str!("../../docs/reference.md");
        let start = doc.find("\n## Errors\n").expect("an Errors section");
        let rows: Vec<(String, i32)> = doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (
                    cells[1].trim_matches('`').to_string(),
                    cells[2].parse().unwrap(),
                )
            })
            .collect();
        let codes: Vec<(String, i32)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), c.exit_code()))
            .collect();
        assert_eq!(rows, codes, "docs/reference.md#errors vs ErrorCode");
    }

    #[test]
    fn bootstraps_refusals_are_precondition_failed() {
        assert_eq!(PRECONDITION_SQLSTATE.len(), 5);
        assert!(include_str!("../../sql/bootstrap/v1.sql")
            .contains(&format!("errcode = '{PRECONDITION_SQLSTATE}'")));
    }
}
