//! Side by side: OpenBao's database secrets engine, pgroles, and our CLI as
//! a process, all against the same ephemeral stack.

use super::sample::Sample;
use super::setup::pg_err;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use supabase_connector::stack::Stack;

/// The stack's OpenBao dev server over HTTP.
#[derive(Clone)]
pub struct Bao {
    http: reqwest::Client,
    addr: String,
    token: String,
}

impl Bao {
    pub fn new(stack: &Stack) -> Bao {
        Bao {
            http: reqwest::Client::new(),
            addr: stack.get("bao_addr"),
            token: stack.get("bao_token"),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let req = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: HTTP {status}: {}", text.trim()));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The server's version (from the unauthenticated seal status).
    pub async fn version(&self) -> String {
        self.call(reqwest::Method::GET, "sys/seal-status", None)
            .await
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }

    /// Mount `database/`, connect it to the stack's PostgreSQL as
    /// `supabase_admin`, and define role `lease` whose credentials are login
    /// roles in `<project_schema>_authenticated`.
    pub async fn setup_engine(&self, admin_url: &str, project_schema: &str) -> Result<(), String> {
        use reqwest::Method;
        self.call(
            Method::POST,
            "sys/mounts/database",
            Some(json!({"type": "database"})),
        )
        .await?;
        let (password, hostport) = url_parts(admin_url);
        self.call(
            Method::POST,
            "database/config/pg",
            Some(json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@{hostport}/postgres?sslmode=disable"),
                "username": "supabase_admin",
                "password": password,
                "allowed_roles": "*",
                "verify_connection": true,
            })),
        )
        .await?;
        let creation = format!(
            "CREATE ROLE \"{{{{name}}}}\" LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}' IN ROLE {project_schema}_authenticated;"
        );
        self.call(
            Method::POST,
            "database/roles/lease",
            Some(json!({"db_name": "pg", "creation_statements": [creation], "default_ttl": "15m", "max_ttl": "1h"})),
        )
        .await?;
        Ok(())
    }

    /// `n` sequential `GET database/creds/lease`, then the revocation of each.
    pub async fn issue_then_revoke(&self, n: usize) -> Result<(Sample, Sample), String> {
        let mut issue = Sample::default();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let v = self
                .call(reqwest::Method::GET, "database/creds/lease", None)
                .await?;
            issue.ms.push(t.elapsed().as_secs_f64() * 1e3);
            ids.push(v["lease_id"].as_str().unwrap_or_default().to_string());
        }
        let mut revoke = Sample::default();
        for id in ids {
            let t = Instant::now();
            self.call(
                reqwest::Method::PUT,
                "sys/leases/revoke",
                Some(json!({"lease_id": id})),
            )
            .await?;
            revoke.ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok((issue, revoke))
    }

    /// Revoke every credential the engine issued (so its roles do not
    /// weigh on later measurements).
    pub async fn revoke_all(&self) -> Result<(), String> {
        self.call(
            reqwest::Method::PUT,
            "sys/leases/revoke-prefix/database/creds/lease",
            Some(json!({"sync": true})),
        )
        .await
        .map(|_| ())
    }

    /// Credentials per second with `callers` concurrent callers.
    pub async fn throughput(&self, callers: usize, total: usize) -> Result<(f64, Sample), String> {
        let started = Instant::now();
        let per = (total / callers).max(1);
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let bao = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut ms = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    bao.call(reqwest::Method::GET, "database/creds/lease", None)
                        .await?;
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok::<_, String>(ms)
            }));
        }
        let mut all = Sample::default();
        for t in tasks {
            all.ms.extend(t.await.map_err(|e| e.to_string())??);
        }
        Ok((all.ms.len() as f64 / started.elapsed().as_secs_f64(), all))
    }
}

/// (password, host:port) of a PostgreSQL URL.
pub fn url_parts(url: &str) -> (String, String) {
    let rest = url.split("://").nth(1).unwrap_or_default();
    let (userinfo, hostpart) = rest.rsplit_once('@').unwrap_or(("", rest));
    let password = userinfo.split_once(':').map(|x| x.1).unwrap_or_default();
    let hostport = hostpart.split('/').next().unwrap_or_default();
    (password.to_string(), hostport.to_string())
}

/// Cold and no-op wall-clock times of a provisioning tool run as a process.
#[derive(Debug, Clone)]
pub struct ProcessTimes {
    pub cold: Sample,
    pub noop: Sample,
}

fn time_process(cmd: &mut Command) -> Result<f64, String> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{:?} exited with {}: {}",
            cmd.get_program(),
            out.status,
            err.trim()
        ));
    }
    Ok(ms)
}

/// A file on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Our CLI (`supabase-connector`, next to this executable).
pub fn cli_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.with_file_name("supabase-connector");
    p.is_file().then_some(p)
}

/// `supabase-connector run upsert_database_project_access` as a process:
/// `n` cold provisions (no lease, like pgroles), then `n` no-op re-runs.
pub fn our_cli(cli: &Path, stack: &Stack, n: usize) -> Result<ProcessTimes, String> {
    let run = |project: &str| {
        let mut cmd = Command::new(cli);
        cmd.env(
            "SUPABASE_CONNECTOR_DATABASE_URL",
            stack.get("runtime_url_nopw"),
        )
        .env("BAO_ADDR", stack.get("bao_addr"))
        .env("BAO_TOKEN", stack.get("bao_token"))
        .env("SUPABASE_CONNECTOR_API_URL", "http://localhost:8000")
        .env("RUST_LOG", "warn")
        .args(["--output", "json", "--log-format", "json", "run"])
        .arg("upsert_database_project_access")
        .arg("--params")
        .arg(json!({"project": project, "issue_lease": false}).to_string());
        time_process(&mut cmd)
    };
    let mut times = ProcessTimes {
        cold: Sample::default(),
        noop: Sample::default(),
    };
    for i in 0..n {
        times.cold.ms.push(run(&format!("cli{i}"))?);
    }
    for _ in 0..n {
        times.noop.ms.push(run("cli0")?);
    }
    Ok(times)
}

/// A pgroles manifest giving project `p` the same roles, memberships,
/// grants and default privileges as ours (the schema itself is made
/// beforehand: pgroles manages roles and privileges, not schemas).
fn pgroles_manifest(p: &str) -> String {
    let (owner, service, auth, anon) = (
        format!("{p}_owner"),
        format!("{p}_service_role"),
        format!("{p}_authenticated"),
        format!("{p}_anon"),
    );
    format!(
        r#"roles:
  - name: {owner}
  - name: {service}
  - name: {auth}
  - name: {anon}
grants:
  - role: {owner}
    privileges: [USAGE, CREATE]
    object: {{ type: schema, name: {p} }}
  - role: {auth}
    privileges: [USAGE]
    object: {{ type: schema, name: {p} }}
  - role: {anon}
    privileges: [USAGE]
    object: {{ type: schema, name: {p} }}
  - role: {service}
    privileges: [USAGE]
    object: {{ type: schema, name: {p} }}
  - role: {auth}
    privileges: [SELECT, INSERT, UPDATE, DELETE]
    object: {{ type: table, schema: {p}, name: "*" }}
  - role: {auth}
    privileges: [USAGE, SELECT]
    object: {{ type: sequence, schema: {p}, name: "*" }}
  - role: {anon}
    privileges: [SELECT]
    object: {{ type: table, schema: {p}, name: "*" }}
default_privileges:
  - owner: {owner}
    schema: {p}
    grant:
      - role: {auth}
        privileges: [SELECT, INSERT, UPDATE, DELETE]
        on_type: table
      - role: {auth}
        privileges: [USAGE, SELECT]
        on_type: sequence
      - role: {auth}
        privileges: [EXECUTE]
        on_type: function
      - role: {anon}
        privileges: [SELECT]
        on_type: table
      - role: {anon}
        privileges: [EXECUTE]
        on_type: function
memberships:
  - role: {owner}
    members:
      - name: {service}
      - name: postgres
  - role: authenticated
    members:
      - name: {auth}
  - role: anon
    members:
      - name: {anon}
"#
    )
}

/// `pgroles apply` as a process: `n` cold applies (one project each), then
/// `n` no-op re-applies. `Err` says why it was skipped.
pub async fn pgroles(stack: &Stack, n: usize) -> Result<(String, ProcessTimes), String> {
    let Some(bin) = on_path("pgroles") else {
        return Err("skipped: `pgroles` is not on PATH (install it with `cargo install pgroles-cli`, then rerun)".into());
    };
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let help = Command::new(&bin)
        .args(["apply", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    // Additive mode: never revoke what the manifest does not mention (the
    // global `anon`/`authenticated` have other members on this stack).
    let additive = help.contains("--mode");
    let admin_url = stack.get("admin_url");
    let (admin, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect as supabase_admin: {}", pg_err(e)))?;
    let conn = tokio::spawn(conn);
    let dir = std::env::temp_dir().join(format!("pgroles-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let apply = |file: &Path| {
        let mut cmd = Command::new(&bin);
        cmd.arg("apply")
            .arg("-f")
            .arg(file)
            .arg("--database-url")
            .arg(&admin_url);
        if additive {
            cmd.args(["--mode", "additive"]);
        }
        time_process(&mut cmd)
    };
    let mut times = ProcessTimes {
        cold: Sample::default(),
        noop: Sample::default(),
    };
    let result = async {
        for i in 0..n {
            let schema = format!("pgr{i}");
            admin
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .map_err(|e| e.to_string())?;
            let file = dir.join(format!("{schema}.yaml"));
            std::fs::write(&file, pgroles_manifest(&schema)).map_err(|e| e.to_string())?;
            times.cold.ms.push(apply(&file)?);
        }
        let file = dir.join("pgr0.yaml");
        for _ in 0..n {
            times.noop.ms.push(apply(&file)?);
        }
        Ok::<_, String>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(admin);
    let _ = conn.await;
    result.map(|()| (version, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_split() {
        assert_eq!(
            url_parts("postgresql://supabase_admin:s3cr@t@127.0.0.1:5432/postgres"),
            ("s3cr@t".to_string(), "127.0.0.1:5432".to_string())
        );
    }

    #[test]
    fn manifest_names_every_role() {
        let m = pgroles_manifest("pgr0");
        for r in [
            "pgr0_owner",
            "pgr0_service_role",
            "pgr0_authenticated",
            "pgr0_anon",
        ] {
            assert!(m.contains(&format!("- name: {r}")));
        }
    }
}
