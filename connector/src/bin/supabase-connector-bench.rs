//! Benchmark: the connector at 10 to 10,000 projects on PostgreSQL 15 and
//! 18, side by side: latency, statements, round trips and catalog writes
//! per action; lease throughput; PostgREST's role switch and the
//! pre-request check; the pool sizing curve; provisioning time; memory;
//! and OpenBao's database secrets engine and pgroles on the same stack.
//!
//!     cargo run --release -p supabase-connector --bin supabase-connector-bench
//!     cargo run -p supabase-connector --bin supabase-connector-bench -- --quick   # smoke run, seconds
//!
//! The full run writes `bench/RESULTS.md` and its plots; the quick run only
//! prints (or writes where `--out` says). `bench/README.md` explains.

#[path = "bench/actions.rs"]
mod actions;
#[path = "bench/args.rs"]
mod args;
#[path = "bench/curve.rs"]
mod curve;
#[path = "bench/drive.rs"]
mod drive;
#[path = "bench/plots.rs"]
mod plots;
#[path = "bench/profile.rs"]
mod profile;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/report_api.rs"]
mod report_api;
#[path = "bench/report_sides.rs"]
mod report_sides;
#[path = "bench/run.rs"]
mod run;
#[path = "bench/sample.rs"]
mod sample;
#[path = "bench/scale.rs"]
mod scale;
#[path = "bench/setup.rs"]
mod setup;
#[path = "bench/sides.rs"]
mod sides;
#[path = "bench/svg.rs"]
mod svg;
#[path = "bench/switch.rs"]
mod switch;
#[path = "bench/targets.rs"]
mod targets;
#[path = "bench/throughput.rs"]
mod throughput;
#[path = "bench/versus.rs"]
mod versus;
#[path = "bench/writes.rs"]
mod writes;

use args::{Args, Plan};
use clap::Parser;
use run::VersionRun;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let plan = Plan::from_args(&Args::parse());
    if let Err(e) = setup::preflight(&plan.versions) {
        eprintln!("supabase-connector-bench: {e}");
        std::process::exit(2);
    }
    if let Err(e) = measure(&plan).await {
        eprintln!("supabase-connector-bench: {e}");
        std::process::exit(1);
    }
}

/// Every version in turn; the report rewritten after each, so an
/// interrupted run keeps what it finished.
async fn measure(plan: &Plan) -> setup::R<()> {
    let started = Instant::now();
    if plan.profile_only {
        for pg in &plan.versions {
            let p = run::profile_only(plan, pg).await?;
            let mut out = String::new();
            report_api::profile(&mut out, &[(format!("PG {pg}"), &p)]);
            println!("{out}");
        }
        return Ok(());
    }
    let mut runs: Vec<VersionRun> = Vec::new();
    for pg in &plan.versions {
        runs.push(run::version(plan, pg).await?);
        write(plan, &runs, started.elapsed().as_secs_f64())?;
    }
    let text = report::render(plan, &runs, started.elapsed().as_secs_f64());
    println!("{text}");
    if let Some(path) = &plan.out {
        println!("wrote {} and its plots", path.display());
    }
    Ok(())
}

/// Write the report and its plots where the plan says (nowhere for a
/// quick run without `--out`).
fn write(plan: &Plan, runs: &[VersionRun], elapsed_s: f64) -> setup::R<()> {
    let Some(path) = &plan.out else {
        return Ok(());
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut text = report::render(plan, runs, elapsed_s);
    for (file, what) in plots::write(path, runs)? {
        text.push_str(&format!("![{what}]({file})\n\n"));
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
