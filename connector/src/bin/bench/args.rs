//! Command line and the parameters of a run (full or `--quick`).

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Measure the connector on the ephemeral stack, on PostgreSQL 15 and 18")]
pub struct Args {
    /// Tiny counts on PostgreSQL 15 only (unless --pg says otherwise): a
    /// smoke run that keeps the benchmark from rotting.
    #[arg(long)]
    pub quick: bool,
    /// PostgreSQL versions, measured one after the other (default 15,18;
    /// with --quick, 15).
    #[arg(long, value_delimiter = ',')]
    pub pg: Option<Vec<String>>,
    /// Project counts to measure at.
    #[arg(long, value_delimiter = ',', default_value = "10,1000,5000,10000")]
    pub scales: Vec<usize>,
    /// Samples per action and project count.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Live leases held from the first project count on.
    #[arg(long, default_value_t = 20_000)]
    pub live_leases: usize,
    /// Percentage of the live leases with a database login role (the rest
    /// are API-only).
    #[arg(long, default_value_t = 50)]
    pub database_share: usize,
    /// Tables each provisioned project gets (created by its owner role, as
    /// a migration would), so the catalogs have the size real projects give
    /// them.
    #[arg(long, default_value_t = 1)]
    pub tables_per_project: usize,
    /// Leases issued per throughput row.
    #[arg(long, default_value_t = 2_000)]
    pub throughput_leases: usize,
    /// Samples of PostgREST's role switch per case.
    #[arg(long, default_value_t = 400)]
    pub switch_samples: usize,
    /// Projects served by one login role at each point of the pool sizing curve.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "25,50,75,100,150,200,250,300,400,500,750,1000,1500,2000"
    )]
    pub curve: Vec<usize>,
    /// Time budget, in seconds, of each login role at each curve point
    /// (samples stop early past it; at least 50 are taken).
    #[arg(long, default_value_t = 20)]
    pub curve_seconds: u64,
    /// Actions run by the long-lived executor before its peak RSS is read.
    #[arg(long, default_value_t = 10_000)]
    pub memory_actions: usize,
    /// Skip OpenBao's database secrets engine comparison.
    #[arg(long)]
    pub no_openbao_engine: bool,
    /// Skip the process comparison (our CLI and pgroles).
    #[arg(long)]
    pub no_processes: bool,
    /// Skip the pool sizing curve.
    #[arg(long)]
    pub no_curve: bool,
    /// Only the profile of the lease actions, on a small registry (a
    /// development aid: seconds, printed only).
    #[arg(long)]
    pub profile_only: bool,
    /// Leave each version's stack running at the end (to look at the
    /// cluster the run left: EXPLAIN, catalogs); the line to stop it is
    /// printed.
    #[arg(long)]
    pub keep_stack: bool,
    /// Where to write the report (default: bench/RESULTS.md, quick runs:
    /// nowhere); the plots go next to it.
    #[arg(long)]
    pub out: Option<String>,
}

/// What one run measures.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub versions: Vec<String>,
    pub scales: Vec<usize>,
    pub samples: usize,
    pub live_leases: usize,
    pub database_share: usize,
    pub tables_per_project: usize,
    pub throughput_leases: usize,
    pub callers: Vec<usize>,
    pub switch_samples: usize,
    pub overhead_pairs: usize,
    pub curve: Vec<usize>,
    pub curve_seconds: u64,
    pub memory_actions: usize,
    pub engine: bool,
    pub processes: usize,
    pub out: Option<std::path::PathBuf>,
    /// Whether any count differs from the default full run.
    pub reduced: bool,
    pub profile_only: bool,
    pub keep_stack: bool,
}

impl Plan {
    pub fn from_args(a: &Args) -> Plan {
        let versions = a.pg.clone().unwrap_or_else(|| match a.quick {
            true => vec!["15".into()],
            false => vec!["15".into(), "18".into()],
        });
        if a.quick {
            return Plan {
                quick: true,
                versions,
                scales: vec![5, 20],
                samples: 5,
                live_leases: 40,
                database_share: a.database_share,
                tables_per_project: a.tables_per_project,
                throughput_leases: 40,
                callers: vec![1, 4],
                switch_samples: 20,
                overhead_pairs: 50,
                curve: vec![5, 10],
                curve_seconds: 2,
                memory_actions: 30,
                engine: false,
                processes: if a.no_processes { 0 } else { 2 },
                out: a.out.clone().map(Into::into),
                reduced: true,
                profile_only: a.profile_only,
                keep_stack: a.keep_stack,
            };
        }
        let defaults = Args::parse_from(["bench"]);
        Plan {
            quick: false,
            versions,
            scales: a.scales.clone(),
            samples: a.samples.max(1),
            live_leases: a.live_leases,
            database_share: a.database_share.min(100),
            tables_per_project: a.tables_per_project,
            throughput_leases: a.throughput_leases.max(16),
            callers: vec![1, 4, 16],
            switch_samples: a.switch_samples.max(1),
            overhead_pairs: 5_000,
            curve: if a.no_curve { vec![] } else { a.curve.clone() },
            curve_seconds: a.curve_seconds,
            memory_actions: a.memory_actions,
            engine: !a.no_openbao_engine,
            processes: if a.no_processes { 0 } else { 10 },
            out: Some(
                a.out
                    .clone()
                    .unwrap_or_else(|| "bench/RESULTS.md".into())
                    .into(),
            ),
            reduced: a.scales != defaults.scales
                || a.samples != defaults.samples
                || a.live_leases != defaults.live_leases
                || a.switch_samples != defaults.switch_samples
                || a.tables_per_project != defaults.tables_per_project
                || a.curve != defaults.curve
                || a.no_curve,
            profile_only: a.profile_only,
            keep_stack: a.keep_stack,
        }
    }

    /// The largest project count measured.
    pub fn largest(&self) -> usize {
        self.scales.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_measure_both_versions() {
        let p = Plan::from_args(&Args::parse_from(["bench"]));
        assert_eq!(p.versions, ["15", "18"]);
        assert_eq!(p.scales, [10, 1000, 5000, 10000]);
        assert!(!p.reduced && !p.quick);
        assert_eq!(p.largest(), 10000);
    }

    #[test]
    fn quick_is_small_and_on_15() {
        let p = Plan::from_args(&Args::parse_from(["bench", "--quick"]));
        assert_eq!(p.versions, ["15"]);
        assert!(p.quick && p.out.is_none() && p.samples <= 10);
        let p = Plan::from_args(&Args::parse_from(["bench", "--quick", "--pg", "15,18"]));
        assert_eq!(p.versions, ["15", "18"]);
    }
}
