//! The project's ephemeral stack (real PostgreSQL shaped like Supabase's
//! database and a real OpenBao dev server), driven through
//! `tests/stack/stack.py`: used by the demo and the benchmark.

use crate::error::{Error, Result};
use serde_json::Value;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Exit status of `stack.py up` when a program the stack needs is missing
/// (its last stderr line says which and how to install it).
const EXIT_MISSING: i32 = 3;

/// Where the stack script lives: `SUPABASE_CONNECTOR_STACK`, else
/// `tests/stack/stack.py` above the current directory or the executable.
pub fn stack_script() -> Result<PathBuf> {
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
        .ok_or_else(|| Error::precondition("cannot find tests/stack/stack.py: run this from the repository, or set SUPABASE_CONNECTOR_STACK"))
}

/// A running stack, stopped on drop unless kept.
pub struct Stack {
    pub script: PathBuf,
    pub info: Value,
    /// Leave the servers running when dropped.
    pub keep: bool,
}

impl Stack {
    /// Start a stack with PostgreSQL `pg` ("15" or "18"). The script's
    /// progress goes to stderr as it comes; when it fails, its last line
    /// becomes the error's message (not printed twice). A missing program
    /// (`bao`, PostgreSQL, `python3`) is `precondition_failed`, its message
    /// saying how to install it.
    pub fn up(pg: &str) -> Result<Stack> {
        let script = stack_script()?;
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["up", "--pg", pg])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::precondition(
                    "python3 is not installed: the stack needs it (then run tests/stack/install.sh)",
                ),
                _ => Error::internal(format!("cannot run {}: {e}", script.display())),
            })?;
        let stderr = child.stderr.take();
        let forward = std::thread::spawn(move || {
            let mut last: Option<String> = None;
            for line in stderr
                .map(std::io::BufReader::new)
                .into_iter()
                .flat_map(|r| r.lines())
                .map_while(std::result::Result::ok)
            {
                if let Some(previous) = last.replace(line) {
                    eprintln!("{previous}");
                }
            }
            last
        });
        let mut stdout = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_end(&mut stdout)
                .map_err(|e| Error::internal(format!("reading the stack's facts: {e}")))?;
        }
        let status = child
            .wait()
            .map_err(|e| Error::internal(format!("waiting for {}: {e}", script.display())))?;
        let last = forward.join().ok().flatten();
        if !status.success() {
            let said = last
                .as_deref()
                .map(|l| l.trim_start_matches("stack: ").to_string())
                .unwrap_or_else(|| format!("it exited with {status}"));
            return Err(if status.code() == Some(EXIT_MISSING) {
                Error::precondition(said)
            } else {
                Error::internal(format!("the stack did not start: {said}"))
            });
        }
        if let Some(line) = last {
            eprintln!("{line}");
        }
        let info: Value = serde_json::from_slice(&stdout)?;
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
            let _ = Command::new("python3")
                .arg(&self.script)
                .args(["down", &self.get("dir")])
                .status();
        }
    }
}
