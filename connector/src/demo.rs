//! `supabase-connector demo` (filled in below).
use crate::error::{Error, Result};
use serde_json::Value;

/// Options of the demo.
pub struct DemoOptions {
    pub keep: bool,
    pub show_secrets: bool,
    pub pg: String,
}

pub async fn run(_o: DemoOptions) -> Result<Value> {
    Err(Error::internal("demo: pending"))
}
