//! `verify_database_project` (filled in below).
use crate::error::{Error, Result};
use crate::Connector;
use serde_json::Value;

pub async fn verify(_c: &Connector, _p: &Value) -> Result<Value> {
    Err(Error::internal("verify_database_project: pending"))
}
