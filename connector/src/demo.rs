//! `supabase-connector demo`: the main job on an embedded default. Starts
//! the project's ephemeral stack (real PostgreSQL shaped like Supabase's
//! database, real OpenBao dev server), bootstraps, provisions two projects,
//! applies a migration to each, issues leases of each class, and shows
//! isolation live with real queries made the way PostgREST makes them; then
//! two API pools, each with a project, and what a token or a project's own
//! code can reach through each pool's PostgREST.

use crate::config::{Config, Secret};
use crate::error::{Error, Result};
use crate::lease::jwt;
use crate::stack::Stack;
use crate::Connector;
use serde_json::{json, Value};
use std::time::Instant;

/// Options of the demo.
pub struct DemoOptions {
    pub keep: bool,
    pub show_secrets: bool,
    pub pg: String,
    /// SQL run as the superuser after provisioning, to show that the
    /// isolation table is measured, not printed (used by the tests).
    pub sabotage_sql: Option<String>,
}

/// Progress lines with timings.
struct Steps {
    started: Instant,
}

impl Steps {
    fn step<T>(&self, what: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let v = f();
        println!("  {:>8.1} ms  {what}", t.elapsed().as_secs_f64() * 1e3);
        v
    }
    async fn astep<T, F: std::future::Future<Output = T>>(&self, what: &str, f: F) -> T {
        let t = Instant::now();
        let v = f.await;
        println!("  {:>8.1} ms  {what}", t.elapsed().as_secs_f64() * 1e3);
        v
    }
}

/// One API request the way PostgREST makes it: verify the JWT, then in one
/// transaction as the API's login role (`login_url`) set role, claims and search_path, run the
/// `db-pre-request` check (`supabase_connector_api.pre_request()`: a token
/// naming a project's class role needs a live lease), and run the
/// statement. Returns "ALLOWED", or "DENIED (reason)".
async fn api_request(
    authenticator_url: &str,
    jwt_secret: &Secret,
    token: &str,
    schema: &str,
    sql: &str,
) -> String {
    let Some(claims) = jwt::verify(token, jwt_secret) else {
        return "DENIED (bad signature)".into();
    };
    if claims["exp"].as_i64().unwrap_or(0) < chrono::Utc::now().timestamp() {
        return "DENIED (expired)".into();
    }
    let role = claims["role"].as_str().unwrap_or_default().to_string();
    let result = async {
        let (client, conn) = tokio_postgres::connect(authenticator_url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute("BEGIN").await?;
        client
            .query(
                "select set_config('search_path', $1, true), set_config('role', $2, true), set_config('request.jwt.claims', $3, true)",
                &[&format!("{schema}, public"), &role, &claims.to_string()],
            )
            .await?;
        client
            .batch_execute("select supabase_connector_api.pre_request()")
            .await?;
        client.query(sql, &[]).await?;
        client.batch_execute("ROLLBACK").await
    }
    .await;
    outcome(result)
}

/// "ALLOWED", or "DENIED (PostgreSQL's message)"; a `PTxxx` SQLSTATE (raised
/// by the pre-request check) is the HTTP status PostgREST answers with.
fn outcome(result: std::result::Result<(), tokio_postgres::Error>) -> String {
    match result {
        Ok(()) => "ALLOWED".into(),
        Err(e) => match e.as_db_error() {
            Some(d) if d.code().code().starts_with("PT") => {
                format!("DENIED ({}: {})", &d.code().code()[2..], d.message())
            }
            Some(d) => format!("DENIED ({})", d.message()),
            None => format!("DENIED ({e})"),
        },
    }
}

/// A query over a direct database session (a database lease's URL).
async fn db_request(url: &str, sql: &str) -> String {
    let result = async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.query(sql, &[]).await.map(|_| ())
    }
    .await;
    outcome(result)
}

fn mask(value: &str, show: bool) -> String {
    if show || value.len() < 12 {
        value.to_string()
    } else {
        format!("{}…(masked, {} chars)", &value[..6], value.len())
    }
}

const MIGRATION: &str = "create table notes (
  id bigint generated always as identity primary key,
  owner_id uuid not null default auth.uid(),
  body text not null
);
create policy \"read own notes\" on notes for select to authenticated using (auth.uid() = owner_id);
create policy \"write own notes\" on notes for insert to authenticated with check (auth.uid() = owner_id);
insert into notes (owner_id, body) values ('00000000-0000-0000-0000-000000000000', 'hello from the service lease');";

pub async fn run(options: DemoOptions) -> Result<Value> {
    let steps = Steps {
        started: Instant::now(),
    };
    println!("supabase-connector demo: an ephemeral PostgreSQL {} + OpenBao, two projects, leases, isolation shown live\n", options.pg);
    let mut stack = steps.step(
        "start the stack (PostgreSQL shaped like Supabase's database, OpenBao dev server)",
        || Stack::up(&options.pg),
    )?;
    stack.keep = options.keep;
    let run = demo_body(&steps, &stack, &options);
    let result = tokio::select! {
        r = run => r,
        _ = tokio::signal::ctrl_c() => Err(Error::internal("interrupted")),
    };
    if options.keep {
        println!("\nThe stack keeps running (--keep). Connect with:");
        println!("  psql '{}'", stack.get("admin_url"));
        println!(
            "  export BAO_ADDR={} BAO_TOKEN={}",
            stack.get("bao_addr"),
            stack.get("bao_token")
        );
        println!(
            "Stop it with: python3 {} down {}",
            stack.script.display(),
            stack.get("dir")
        );
    }
    println!("\ntotal {:.1} s", steps.started.elapsed().as_secs_f64());
    drop(stack);
    result
}

async fn demo_body(steps: &Steps, stack: &Stack, o: &DemoOptions) -> Result<Value> {
    let admin_url = stack.get("admin_url");
    let mut config = Config::from_json(Some(json!({
        "database": {"url": stack.get("runtime_url_nopw"), "sslmode": "disable"},
        "openbao": {"addr": stack.get("bao_addr"), "token": stack.get("bao_token")},
        "api": {"url": "http://localhost:8000"},
    })))?;
    config.database.pool_size = 4;
    let mut admin = config.clone();
    admin.database.url = Some(Secret::new(admin_url.clone()));
    steps
        .astep(
            "bootstrap the registry, event trigger and exposure functions (as supabase_admin)",
            crate::bootstrap::run(&admin, None, "postgres"),
        )
        .await?;
    let connector = Connector::new(config.clone()).await?;
    let jwt_secret = connector.secrets().await?.jwt_secret;

    let mut service = std::collections::BTreeMap::new();
    for project in ["acme", "globex"] {
        let state = steps
            .astep(&format!("upsert_database_project_access {project}: schema, roles, grants, exposure, service lease"),
                   connector.execute("upsert_database_project_access", json!({"project": project})))
            .await?;
        steps
            .astep(&format!("apply_database_migrations {project}: a notes table with RLS policies"),
                   connector.execute("apply_database_migrations", json!({"project": project, "migrations": [{"version": "20260101000000", "name": "notes", "sql": MIGRATION}]})))
            .await?;
        service.insert(project, state["lease"].clone());
    }
    let alice = "11111111-1111-4111-8111-111111111111";
    let bob = "22222222-2222-4222-8222-222222222222";
    let contributor = steps
        .astep("upsert_database_access acme: alice as project_contributor (authenticated class)",
               connector.execute("upsert_database_access", json!({"project": "acme", "principal": {"type": "user", "id": alice}, "platform_role": "project_contributor"})))
        .await?["lease"]
        .clone();
    let viewer = steps
        .astep("upsert_database_team_access acme: team 'readers' = {bob} as project_viewer; issue bob's lease",
               async {
                   connector.execute("upsert_database_team_access", json!({"project": "acme", "team_id": "readers", "platform_role": "project_viewer", "members": [bob]})).await?;
                   connector.execute("issue_database_lease", json!({"project": "acme", "principal": {"type": "user", "id": bob}})).await
               })
        .await?["lease"]
        .clone();
    if let Some(sql) = &o.sabotage_sql {
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(sql).await?;
        println!("  (sabotage applied as superuser: {sql})");
    }

    // The isolation table: every credential against every target, for real.
    let authenticator_url = format!(
        "postgresql://authenticator:{}@{}:{}/postgres",
        stack.get("authenticator_password"),
        stack.get("host"),
        stack.get("port")
    );
    let credentials: Vec<(&str, &Value, &str)> = vec![
        ("acme service token", &service["acme"], "access_token"),
        (
            "acme publishable token",
            &service["acme"],
            "publishable_token",
        ),
        ("acme alice (authenticated)", &contributor, "access_token"),
        ("acme bob (anon)", &viewer, "access_token"),
        ("globex service token", &service["globex"], "access_token"),
    ];
    let targets = [
        ("acme.notes", "proj_acme", "select * from proj_acme.notes"),
        (
            "globex.notes",
            "proj_globex",
            "select * from proj_globex.notes",
        ),
        ("auth.users", "proj_acme", "select * from auth.users"),
        (
            "registry",
            "proj_acme",
            "select * from supabase_connector.projects",
        ),
    ];
    let expected = |cred: &str, target: &str| -> bool {
        match target {
            "acme.notes" => cred.starts_with("acme"),
            "globex.notes" => cred.starts_with("globex"),
            _ => false,
        }
    };
    println!("\nIsolation, measured (each cell is a real query; API cells the PostgREST way, as authenticator):\n");
    print!("  {:<28}", "credential \\ target");
    for (t, _, _) in &targets {
        print!("{t:<16}");
    }
    println!();
    let mut surprises = Vec::new();
    let mut matrix = Vec::new();
    for (name, lease, key) in &credentials {
        print!("  {name:<28}");
        let token = lease["api"][*key].as_str().unwrap_or_default();
        for (t, schema, sql) in &targets {
            let outcome = api_request(&authenticator_url, &jwt_secret, token, schema, sql).await;
            let allowed = outcome == "ALLOWED";
            let mark = if allowed == expected(name, t) {
                ""
            } else {
                " !!"
            };
            if !mark.is_empty() {
                surprises.push(format!("{name} -> {t}: {outcome}"));
            }
            print!(
                "{:<16}",
                format!("{}{mark}", if allowed { "ALLOWED" } else { "DENIED" })
            );
            matrix.push(json!({"credential": name, "target": t, "outcome": outcome, "expected_allowed": expected(name, t)}));
        }
        println!();
    }
    // The acme service-class database lease, over a direct session.
    let db_url = service["acme"]["database"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    print!("  {:<28}", "acme database lease (psql)");
    for (t, _, sql) in &targets {
        let outcome = db_request(&db_url, sql).await;
        let allowed = outcome == "ALLOWED";
        let exp = *t == "acme.notes";
        if allowed != exp {
            surprises.push(format!("acme database lease -> {t}: {outcome}"));
        }
        print!(
            "{:<16}",
            format!(
                "{}{}",
                if allowed { "ALLOWED" } else { "DENIED" },
                if allowed == exp { "" } else { " !!" }
            )
        );
        matrix.push(json!({"credential": "acme database lease", "target": t, "outcome": outcome, "expected_allowed": exp}));
    }
    println!();

    // Revoke alice's lease: her token stops working at once (the class role
    // it names stays; the pre-request check finds the lease revoked).
    let alice_token = contributor["api"]["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = api_request(
        &authenticator_url,
        &jwt_secret,
        &alice_token,
        "proj_acme",
        "select * from proj_acme.notes",
    )
    .await;
    println!();
    steps
        .astep(
            "revoke_database_lease (alice): lease marked revoked, its login role NOLOGIN, sessions ended, dropped",
            connector.execute(
                "revoke_database_lease",
                json!({"lease_id": contributor["lease_id"]}),
            ),
        )
        .await?;
    let after = api_request(
        &authenticator_url,
        &jwt_secret,
        &alice_token,
        "proj_acme",
        "select * from proj_acme.notes",
    )
    .await;
    println!("  alice's token before revoke: {before}");
    println!("  alice's token after revoke:  {after}");
    if before != "ALLOWED" {
        surprises.push(format!("live token refused: {before}"));
    }
    if after != "DENIED (401: lease revoked or expired)" {
        surprises.push(format!(
            "revoked token not refused by the lease check: {after}"
        ));
    }

    let pools = pools_section(steps, stack, &config, &jwt_secret, &mut surprises).await?;

    println!("\nThe env a workspace of acme gets (secrets masked; --show-secrets prints them):\n");
    if let Some(env) = service["acme"]["env"].as_object() {
        for (k, v) in env {
            let v = v.as_str().unwrap_or_default();
            let secret = k.contains("KEY") || k.contains("TOKEN") || k == "DATABASE_URL";
            println!(
                "  {k}={}",
                if secret {
                    mask(v, o.show_secrets)
                } else {
                    v.to_string()
                }
            );
        }
    }
    connector.close();
    if surprises.is_empty() {
        println!("\nEvery cell matched the expected isolation: no credential reached another project, auth.users or the registry,");
        println!(
            "and no token or project code on one API pool reached another pool or service_role."
        );
        Ok(json!({"matrix": matrix, "pools": pools, "surprises": []}))
    } else {
        println!("\nUNEXPECTED ({}):", surprises.len());
        for s in &surprises {
            println!("  {s}");
        }
        Err(
            Error::internal(format!("isolation check failed: {}", surprises.join("; ")))
                .with_details(json!({"matrix": matrix})),
        )
    }
}

/// The API pools, measured: two pools, a project on each with code of its
/// own; each pool's PostgREST played by a session logged in as its login
/// role. A token works only through its own pool, and the project's code
/// cannot switch into the other pool's roles or Supabase's `service_role`.
async fn pools_section(
    steps: &Steps,
    stack: &Stack,
    base: &Config,
    jwt_secret: &Secret,
    surprises: &mut Vec<String>,
) -> Result<Vec<Value>> {
    let mut config = base.clone();
    config.api.pools = ["eu1", "us1"]
        .iter()
        .map(|name| crate::config::PoolConfig {
            name: name.to_string(),
            url: Some(format!("http://localhost:8000/pools/{name}")),
            max_projects: Some(10),
        })
        .collect();
    let connector = Connector::new(config).await?;
    let mut tokens = std::collections::BTreeMap::new();
    for (project, pool) in [("initech", "eu1"), ("umbrella", "us1")] {
        let state = steps
            .astep(
                &format!("upsert_database_project_access {project} on API pool {pool}: its login role holds this project's roles only"),
                connector.execute("upsert_database_project_access", json!({"project": project, "pool": pool, "database": false})),
            )
            .await?;
        steps
            .astep(
                &format!("apply_database_migrations {project}: notes, and a function that tries to switch roles"),
                connector.execute("apply_database_migrations", json!({"project": project, "migrations": [
                    {"version": "20260101000000", "name": "notes", "sql": MIGRATION},
                    {"version": "20260101000001", "name": "hop", "sql": HOP}]})),
            )
            .await?;
        let token = state["lease"]["api"]["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        tokens.insert(project, (token, pool));
    }
    let login_url = |pool: &str, password: &str| {
        format!(
            "postgresql://supabase_connector_pool_{pool}:{password}@{}:{}/postgres",
            stack.get("host"),
            stack.get("port")
        )
    };
    let mut urls = std::collections::BTreeMap::new();
    for pool in ["eu1", "us1"] {
        let kv = connector
            .openbao()?
            .read_kv(&format!("pools/{pool}"))
            .await?;
        let password = kv
            .get("AUTHENTICATOR_PASSWORD")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        urls.insert(pool, login_url(pool, &password));
    }
    println!("\nAPI pools, measured (each cell a real request the PostgREST way, as the pool's login role):\n");
    let mut cells = Vec::new();
    let (initech, _) = &tokens["initech"];
    let mut cell = |what: String, outcome: String, expect: bool, surprises: &mut Vec<String>| {
        let allowed = outcome == "ALLOWED";
        let mark = if allowed == expect { "" } else { " !!" };
        if !mark.is_empty() {
            surprises.push(format!("{what}: {outcome}"));
        }
        println!(
            "  {what:<70} {}{mark}",
            if allowed { "ALLOWED" } else { "DENIED" }
        );
        cells.push(json!({"cell": what, "outcome": outcome, "expected_allowed": expect}));
    };
    for (project, (token, home)) in &tokens {
        for pool in ["eu1", "us1"] {
            let schema = format!("proj_{project}");
            let outcome = api_request(
                &urls[pool],
                jwt_secret,
                token,
                &schema,
                &format!("select * from {schema}.notes"),
            )
            .await;
            cell(
                format!("{project} service token through pool {pool}"),
                outcome,
                pool == *home,
                surprises,
            );
        }
    }
    for target in [
        "proj_umbrella_service_role",
        "proj_umbrella_anon",
        "service_role",
        "authenticator",
    ] {
        let outcome = api_request(
            &urls["eu1"],
            jwt_secret,
            initech,
            "proj_initech",
            &format!("select proj_initech.hop('{target}')"),
        )
        .await;
        cell(
            format!("initech's own function switching into {target}"),
            outcome,
            false,
            surprises,
        );
    }
    let outcome = api_request(
        &urls["eu1"],
        jwt_secret,
        initech,
        "proj_initech",
        "select proj_initech.hop('proj_initech_anon')",
    )
    .await;
    cell(
        "initech's own function switching into proj_initech_anon (its own)".into(),
        outcome,
        true,
        surprises,
    );
    connector.close();
    Ok(cells)
}

/// A function a project installs that switches roles the way tenant code
/// could, through the API's session.
const HOP: &str = "create function hop(target text) returns text language plpgsql as $$
begin
  perform set_config('role', target, true);
  return current_user;
end $$;";
