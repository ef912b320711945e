//! One PostgreSQL version, start to finish: its own stack, the rounds, the
//! side-by-side comparisons after the first round, the sizing curve last.

use super::args::Plan;
use super::curve::{self, Point};
use super::profile::{self, Profile};
use super::report;
use super::scale::{self, AtScale, Provisioning};
use super::setup::{Bench, Facts, R};
use super::sides::Bao;
use super::versus::{self, Engine, Memory, Processes};
use super::writes::{self, Writes};
use std::time::Instant;

/// Everything measured on one version.
#[derive(Debug)]
pub struct VersionRun {
    pub pg: String,
    pub facts: Facts,
    /// `default_max_projects` for this server (the bench pools' size).
    pub pool_cap: u32,
    pub rounds: Vec<AtScale>,
    pub provisioning: Provisioning,
    pub curve: Vec<Point>,
    pub engine: Option<Result<Engine, String>>,
    pub processes: Option<Processes>,
    pub memory: Memory,
    /// Where the lease actions' time goes, at the largest count.
    pub profile: Option<Profile>,
    /// The catalog-writes method on known statements (create, drop).
    pub method: (Writes, Writes),
    pub elapsed_s: f64,
}

impl VersionRun {
    pub fn first(&self) -> Option<&AtScale> {
        self.rounds.first()
    }

    pub fn last(&self) -> Option<&AtScale> {
        self.rounds.last()
    }
}

/// Measure one version on a stack of its own (stopped at the end).
pub async fn version(plan: &Plan, pg: &str) -> R<VersionRun> {
    let started = Instant::now();
    report::reset_peak_rss();
    let rss_start = report::rss_mib();
    let mut b = Bench::start(pg).await?;
    b.facts.bao = Bao::new(&b.stack).version().await;
    scale::progress(&b, "started");
    let method = writes::method_check(&b).await?;
    let (mut have, mut prov) = (0usize, Provisioning::default());
    let mut rounds = Vec::new();
    let (mut engine, mut processes, mut memory) = (None, None, Memory::default());
    for r in 0..plan.scales.len() {
        rounds.push(scale::round(&mut b, plan, r, &mut have, &mut prov).await?);
        if r == 0 {
            if plan.engine {
                let n = plan.samples.max(50);
                let creds = plan.throughput_leases.min(600);
                engine = Some(versus::engine(&b, n, &plan.callers, creds).await);
            }
            if plan.processes > 0 {
                processes = Some(versus::processes(&b, plan.processes).await?);
            }
            memory = versus::memory(&b, plan.memory_actions, rss_start).await?;
        }
    }
    let n = if plan.quick {
        20
    } else {
        plan.samples.max(200)
    };
    let profile = Some(profile::measure(&b, "profile", n, !plan.quick).await?);
    let curve = curve::measure(&mut b, plan).await?;
    b.connector.close();
    let run = VersionRun {
        pg: pg.to_string(),
        facts: b.facts.clone(),
        pool_cap: b.pool_cap,
        rounds,
        provisioning: prov,
        curve,
        engine,
        processes,
        memory,
        profile,
        method,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    if plan.keep_stack {
        b.stack.keep = true;
        eprintln!(
            "bench: PostgreSQL {pg}'s stack is left running; stop it with: python3 tests/stack/stack.py down {}",
            b.stack.get("dir")
        );
    }
    drop(b);
    Ok(run)
}

/// Only the profile, on a registry of 10 projects with their live leases.
pub async fn profile_only(plan: &Plan, pg: &str) -> R<Profile> {
    let b = Bench::start(pg).await?;
    scale::provision(&b, 0, 10).await?;
    scale::hold_live_leases(&b, plan.live_leases.min(2_000), 10, plan.database_share).await?;
    let p = profile::measure(&b, "profile", plan.samples.max(200), true).await?;
    b.connector.close();
    Ok(p)
}
