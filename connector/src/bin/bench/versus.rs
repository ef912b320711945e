//! Side by side on the same stack: OpenBao's database secrets engine
//! against our leases, and our CLI as a process against `pgroles apply`;
//! then the memory of this long-lived executor.

use super::drive::{lease_id, service};
use super::report;
use super::sample::Sample;
use super::scale::progress;
use super::setup::{Bench, R};
use super::sides::{self, ProcessTimes};
use serde_json::json;
use std::time::Instant;

/// Our leases and OpenBao's credentials, issued then revoked one by one.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    /// Authenticated class (a user with a direct grant): one login role.
    pub db_issue: Sample,
    pub db_revoke: Sample,
    pub api_issue: Sample,
    pub api_revoke: Sample,
    pub theirs_issue: Sample,
    pub theirs_revoke: Sample,
    /// OpenBao credentials per second, by callers.
    pub theirs_rates: Vec<(usize, f64)>,
}

pub const VERSUS: &str = "versus";

/// `n` of each, sequentially; OpenBao's throughput at `callers`.
pub async fn engine(b: &Bench, n: usize, callers: &[usize], total: usize) -> R<Engine> {
    progress(b, "side by side with OpenBao's database engine");
    let user = json!({"type": "user", "id": uuid::Uuid::new_v4().to_string()});
    b.run(
        "upsert_database_project_access",
        json!({"project": VERSUS, "issue_lease": false}),
    )
    .await?;
    b.run(
        "upsert_database_access",
        json!({"project": VERSUS, "principal": user, "platform_role": "project_contributor", "issue_lease": false}),
    )
    .await?;
    let mut e = Engine::default();
    for database in [true, false] {
        let (mut issue, mut revoke) = (Sample::default(), Sample::default());
        for _ in 0..n {
            let t = Instant::now();
            let v = b
                .run(
                    "issue_database_lease",
                    json!({"project": VERSUS, "principal": user, "database": database}),
                )
                .await?;
            issue.push_since(t);
            let t = Instant::now();
            b.run("revoke_database_lease", json!({"lease_id": lease_id(&v)?}))
                .await?;
            revoke.push_since(t);
        }
        match database {
            true => (e.db_issue, e.db_revoke) = (issue, revoke),
            false => (e.api_issue, e.api_revoke) = (issue, revoke),
        }
    }
    let bao = sides::Bao::new(&b.stack);
    bao.setup_engine(&b.stack.get("admin_url"), &format!("proj_{VERSUS}"))
        .await?;
    (e.theirs_issue, e.theirs_revoke) = bao.issue_then_revoke(n).await?;
    for &c in callers {
        e.theirs_rates.push((c, bao.throughput(c, total).await?.0));
        bao.revoke_all().await?;
    }
    Ok(e)
}

/// Our CLI and pgroles as processes (each `Err` says why it was skipped).
#[derive(Debug)]
pub struct Processes {
    pub ours: Result<ProcessTimes, String>,
    pub pgroles: Result<(String, ProcessTimes), String>,
}

/// `n` cold runs and `n` no-op runs of each; our CLI's projects are
/// removed afterwards (the CLI has no pools configured, so they land on
/// the central API, whose size the sizing curve controls).
pub async fn processes(b: &Bench, n: usize) -> R<Processes> {
    progress(b, "side by side as processes: our CLI and pgroles");
    let ours = match sides::cli_path() {
        Some(cli) => sides::our_cli(&cli, &b.stack, n),
        None => Err("skipped: the `supabase-connector` binary is not next to this one (build it with `cargo build -p supabase-connector --bins`, in the same profile)".into()),
    };
    let pgroles = sides::pgroles(&b.stack, n).await;
    for i in 0..n {
        let _ = b
            .run(
                "remove_database_project",
                json!({"project": format!("cli{i}"), "drop_data": true}),
            )
            .await;
    }
    Ok(Processes { ours, pgroles })
}

/// Resident memory of this process, a long-lived executor.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub rss_start: f64,
    pub peak_before: f64,
    pub peak_after: f64,
    pub rss_now: f64,
    pub actions: usize,
}

/// `n` more actions on one project (no-op upserts, API-only and database
/// issue + revoke pairs, describes), then the peak RSS.
pub async fn memory(b: &Bench, n: usize, rss_start: f64) -> R<Memory> {
    progress(b, &format!("memory over {n} actions"));
    let peak_before = report::peak_rss_mib();
    let project = "memory";
    let upsert = json!({"project": project, "issue_lease": false});
    b.run("upsert_database_project_access", upsert.clone())
        .await?;
    for i in 0..n {
        match i % 4 {
            0 => {
                b.run("upsert_database_project_access", upsert.clone())
                    .await?;
            }
            1 | 2 => {
                let v = b
                    .run(
                        "issue_database_lease",
                        json!({"project": project, "principal": service(), "database": i % 4 == 2}),
                    )
                    .await?;
                b.run("revoke_database_lease", json!({"lease_id": lease_id(&v)?}))
                    .await?;
            }
            _ => {
                b.run("describe_database_project", json!({"project": project}))
                    .await?;
            }
        }
    }
    Ok(Memory {
        rss_start,
        peak_before,
        peak_after: report::peak_rss_mib(),
        rss_now: report::rss_mib(),
        actions: n,
    })
}
