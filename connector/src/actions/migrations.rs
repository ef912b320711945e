//! `apply_database_migrations` (filled in below).
use crate::error::{Error, Result};
use crate::Connector;
use serde_json::Value;

pub async fn apply(_c: &Connector, _p: &Value) -> Result<Value> {
    Err(Error::internal("apply_database_migrations: pending"))
}
