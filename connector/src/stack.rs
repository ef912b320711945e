//! The project's ephemeral stack (real PostgreSQL shaped like Supabase's
//! database and a real OpenBao dev server), driven through
//! `tests/stack/stack.py`: used by the demo and the benchmark.

use crate::error::{Error, Result};
use serde_json::Value;
use std::path::PathBuf;

/// Where the stack script lives: `SUPABASE_CONNECTOR_STACK`, else
/// `tests/stack/stack.py` above the current directory or the executable.
fn stack_script() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SUPABASE_CONNECTOR_STACK") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = vec![];
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|a| a.join("tests/stack/stack.py")));
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().map(|a| a.join("tests/stack/stack.py")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| Error::internal("cannot find tests/stack/stack.py: run the demo from the repository, or set SUPABASE_CONNECTOR_STACK"))
}

/// A running stack, stopped on drop unless kept.
pub struct Stack {
    pub script: PathBuf,
    pub info: Value,
    /// Leave the servers running when dropped.
    pub keep: bool,
}

impl Stack {
    /// Start a stack with PostgreSQL `pg` ("15" or "18").
    pub fn up(pg: &str) -> Result<Stack> {
        let script = stack_script()?;
        let out = std::process::Command::new("python3")
            .arg(&script)
            .args(["up", "--pg", pg])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Error::internal(format!("cannot run {}: {e}", script.display())))?;
        if !out.status.success() {
            return Err(Error::internal(format!(
                "the stack did not start ({})",
                out.status
            )));
        }
        let info: Value = serde_json::from_slice(&out.stdout)?;
        Ok(Stack {
            script,
            info,
            keep: false,
        })
    }

    /// A fact of the stack as a string (empty when absent).
    pub fn get(&self, key: &str) -> String {
        match &self.info[key] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::process::Command::new("python3")
                .arg(&self.script)
                .args(["down", &self.get("dir")])
                .status();
        }
    }
}
