//! `supabase-connector`: the command line over the library. Thin: every
//! command maps to one library call; results go to stdout as JSON, errors
//! to stderr as `{"error": {"code", "message", "details"}}` with the exit
//! codes of `docs/reference.md#errors`.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use supabase_connector::{Config, Connector, Error};

#[derive(Parser)]
#[command(
    name = "supabase-connector",
    version,
    about = "Share one self-hosted Supabase between many projects: a schema, roles, RLS and PostgREST exposure per project, and short-lived leases minted from OpenBao secrets.",
    long_about = None,
    after_help = "Configuration comes from --config (JSON) with environment fallbacks: SUPABASE_CONNECTOR_DATABASE_URL, BAO_ADDR/VAULT_ADDR, BAO_TOKEN/VAULT_TOKEN, SUPABASE_CONNECTOR_API_URL.\n\nFirst time: `supabase-connector bootstrap --database-url postgresql://supabase_admin@…` (as a superuser), then `supabase-connector run upsert_database_project_access --params '{\"project\": \"acme\"}'`.\nTry it all locally: `supabase-connector demo`.\nReference (configuration, error codes and exit statuses, every action's parameters and result): docs/reference.md."
)]
struct Cli {
    /// JSON configuration file (keys: docs/reference.md#configuration); unset keys fall back to the environment.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output format; JSON when stdout is not a terminal.
    #[arg(long, global = true, value_enum)]
    output: Option<Output>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    log_format: LogFormat,
    /// Log more, including the SQL of each plan.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Output {
    Json,
    Table,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[derive(Subcommand)]
enum Command {
    /// Install or upgrade the registry, event trigger and exposure functions (run once, as a superuser).
    Bootstrap {
        /// Superuser connection URL (default: database.url).
        #[arg(long, env = "SUPABASE_CONNECTOR_BOOTSTRAP_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The role actions will run as (`postgres` on Supabase).
        #[arg(long, default_value = "postgres")]
        runtime_role: String,
    },
    /// Run an action: `run upsert_database_project_access --params '{"project": "acme"}'`.
    Run {
        /// Action name (see `catalog`).
        action: String,
        /// Parameters: inline JSON, @FILE, or - for stdin.
        #[arg(long, default_value = "{}")]
        params: String,
    },
    /// Show the SQL an action would apply, without applying it (`dry_run`).
    Plan {
        /// Action name (see `catalog`).
        action: String,
        /// Parameters: inline JSON, @FILE, or - for stdin (`dry_run` is added).
        #[arg(long, default_value = "{}")]
        params: String,
    },
    /// Print the connector catalog: actions and their JSON Schemas.
    Catalog,
    /// Compare projects with their model and report drift; --repair fixes what is safe.
    Verify {
        /// Only this project (default: every project in the registry).
        #[arg(long)]
        project: Option<String>,
        /// Fix the drift found, where that is safe.
        #[arg(long)]
        repair: bool,
    },
    /// Revoke expired leases (drop their roles, end their sessions).
    Reap,
    /// Apply a directory of Supabase-style migrations (`<version>_<name>.sql`) to a project.
    Migrate {
        /// The project (slug) whose schema the migrations run in.
        #[arg(long)]
        project: String,
        /// Directory of `<version>_<name>.sql` files, applied in version order.
        dir: PathBuf,
    },
    /// Run the whole thing locally: an ephemeral PostgreSQL + OpenBao, two projects, leases, isolation shown live.
    Demo {
        /// Leave the stack running and print how to connect.
        #[arg(long)]
        keep: bool,
        /// Print secrets in the final env instead of masking them.
        #[arg(long)]
        show_secrets: bool,
        /// PostgreSQL major version of the stack (15 or 18).
        #[arg(long, default_value = "15")]
        pg: String,
        /// SQL run as the superuser before the isolation table (shows the table is measured).
        #[arg(long, hide = true)]
        sabotage_sql: Option<String>,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

fn read_params(spec: &str) -> Result<Value, Error> {
    let text = if spec == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::invalid(format!("reading stdin: {e}")))?;
        s
    } else if let Some(path) = spec.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| Error::invalid(format!("reading {path}: {e}")))?
    } else {
        spec.to_string()
    };
    serde_json::from_str(&text).map_err(|e| Error::invalid(format!("--params is not JSON: {e}")))
}

fn load_config(path: &Option<PathBuf>) -> Result<Config, Error> {
    let value = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Error::invalid(format!("reading {}: {e}", p.display())))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| Error::invalid(format!("{} is not JSON: {e}", p.display())))?,
            )
        }
        None => None,
    };
    Config::from_json(value)
}

/// Read `DIR/<version>_<name>.sql` files into the migrations parameter.
fn read_migrations(dir: &PathBuf) -> Result<Value, Error> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::invalid(format!("reading {}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::invalid(e.to_string()))?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        let (version, name) = stem
            .split_once('_')
            .ok_or_else(|| Error::invalid(format!("{file}: expected <version>_<name>.sql")))?;
        let sql = std::fs::read_to_string(&path)
            .map_err(|e| Error::invalid(format!("reading {file}: {e}")))?;
        out.push(json!({"version": version, "name": name, "sql": sql}));
    }
    out.sort_by(|a, b| a["version"].as_str().cmp(&b["version"].as_str()));
    Ok(Value::from(out))
}

fn init_logging(cli: &Cli) {
    let default = if cli.verbose {
        "supabase_connector=debug"
    } else {
        "supabase_connector=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUPABASE_CONNECTOR_LOG")
        .unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
}

/// Render a result as a two-column table (for people at a terminal).
fn table(value: &Value) -> String {
    fn walk(prefix: &str, v: &Value, rows: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, rows);
                }
            }
            Value::String(s) => rows.push((prefix.into(), s.clone())),
            other => rows.push((prefix.into(), other.to_string())),
        }
    }
    let mut rows = Vec::new();
    walk("", value, &mut rows);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:width$}  {v}\n"))
        .collect()
}

async fn run(cli: &Cli) -> Result<Value, Error> {
    match &cli.command {
        Command::Catalog => Ok(supabase_connector::catalog().clone()),
        Command::Completions { .. } => unreachable!("handled before the runtime starts"),
        Command::Demo {
            keep,
            show_secrets,
            pg,
            sabotage_sql,
        } => {
            supabase_connector::demo::run(supabase_connector::demo::DemoOptions {
                keep: *keep,
                show_secrets: *show_secrets,
                pg: pg.clone(),
                sabotage_sql: sabotage_sql.clone(),
            })
            .await
        }
        Command::Bootstrap {
            database_url,
            runtime_role,
        } => {
            let mut config = load_config(&cli.config)?;
            if let Some(url) = database_url {
                config.database.url = Some(supabase_connector::config::Secret::new(url.clone()));
            }
            supabase_connector::bootstrap::run(&config, None, runtime_role).await
        }
        command => {
            let connector = std::sync::Arc::new(Connector::new(load_config(&cli.config)?).await?);
            // connect on the other worker while this one validates; a
            // failure shows again, with its error, in the action itself
            let warm = connector.clone();
            tokio::spawn(async move { warm.connect().await.ok() });
            let (action, params) = match command {
                Command::Run { action, params } => (action.clone(), read_params(params)?),
                Command::Plan { action, params } => {
                    let mut p = read_params(params)?;
                    if let Some(o) = p.as_object_mut() {
                        o.insert("dry_run".into(), Value::Bool(true));
                    }
                    (action.clone(), p)
                }
                Command::Verify { project, repair } => {
                    let mut p = json!({"repair": repair});
                    if let Some(project) = project {
                        p["project"] = json!(project);
                    }
                    ("verify_database_project".into(), p)
                }
                Command::Reap => ("reap_expired_leases".into(), json!({})),
                Command::Migrate { project, dir } => (
                    "apply_database_migrations".into(),
                    json!({"project": project, "migrations": read_migrations(dir)?}),
                ),
                _ => unreachable!(),
            };
            let result = connector.execute(&action, params).await;
            if cli.verbose {
                if let Ok(v) = &result {
                    for s in v["statements"].as_array().into_iter().flatten() {
                        tracing::debug!(sql = %s.as_str().unwrap_or_default(), "plan");
                    }
                }
            }
            connector.close();
            result
        }
    }
}

/// Write the result to stdout; a reader that went away (`| head`) is not an
/// error worth a panic.
fn write_stdout(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Command::Completions { shell } = &cli.command {
        let mut script = Vec::new();
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "supabase-connector",
            &mut script,
        );
        if *shell == clap_complete::Shell::Bash {
            // clap_complete 4.6 spells the hyphenated bin name one way in the
            // dispatch loop and another in the case arms (clap-rs/clap#6421),
            // so no subcommand's options would ever complete: align the arms.
            let text = String::from_utf8_lossy(&script)
                .replace("supabase__subcmd__connector", "supabase__connector");
            script = text.into_bytes();
        }
        write_stdout(&script);
        return;
    }
    init_logging(&cli);
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(run(&cli)));
    let output = cli.output.unwrap_or(if std::io::stdout().is_terminal() {
        Output::Table
    } else {
        Output::Json
    });
    match result {
        Ok(value) => {
            if matches!(cli.command, Command::Demo { .. }) {
                return;
            }
            let text = match output {
                Output::Json => {
                    format!("{}\n", serde_json::to_string_pretty(&value).expect("JSON"))
                }
                Output::Table => table(&value),
            };
            write_stdout(text.as_bytes());
        }
        Err(e) => {
            eprintln!(
                "{}",
                serde_json::to_string_pretty(&json!({"error": e.to_json()})).expect("JSON")
            );
            std::process::exit(e.code.exit_code());
        }
    }
}
