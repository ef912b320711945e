//! The report: machine facts, then every figure with PostgreSQL 15 and 18
//! side by side (`bench/RESULTS.md`).

use super::actions::{self, fmt_ms, ALL};
use super::args::Plan;
use super::report_api;
use super::report_sides;
use super::run::VersionRun;
use super::targets::{self, verdict};
use super::writes::{method_ok, Writes};

/// Peak resident set size of this process (`VmHWM`), in MiB.
pub fn peak_rss_mib() -> f64 {
    proc_kib("/proc/self/status", "VmHWM:").map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Current resident set size of this process (`VmRSS`), in MiB.
pub fn rss_mib() -> f64 {
    proc_kib("/proc/self/status", "VmRSS:").map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Start the peak RSS over (Linux: `5` to `/proc/self/clear_refs`), so
/// each version's peak is its own.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn proc_kib(file: &str, key: &str) -> Option<f64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// "N cores (model), M GiB".
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = proc_kib("/proc/meminfo", "MemTotal:").map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({model}), {mem:.0} GiB memory")
}

/// `12345` as `12,345`.
pub fn thousands(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits: Vec<char> = n.abs().to_string().chars().rev().collect();
    let groups: Vec<String> = digits
        .chunks(3)
        .map(|g| g.iter().rev().collect())
        .rev()
        .collect();
    let out = groups.join(",");
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A markdown table: first column left-aligned, the others right-aligned.
pub fn table(out: &mut String, head: &[String], rows: &[Vec<String>]) {
    out.push_str(&format!("| {} |\n", head.join(" | ")));
    let align: Vec<&str> = (0..head.len())
        .map(|i| if i == 0 { "---" } else { "---:" })
        .collect();
    out.push_str(&format!("|{}|\n", align.join("|")));
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out.push('\n');
}

/// "PG 15", "PG 18".
pub fn pg(run: &VersionRun) -> String {
    format!("PG {}", run.pg)
}

/// The whole report.
pub fn render(plan: &Plan, runs: &[VersionRun], total_s: f64) -> String {
    let mut out = String::new();
    header(&mut out, plan, runs, total_s);
    targets_section(&mut out, runs);
    per_scale(&mut out, runs);
    flat(&mut out, runs);
    writes_section(&mut out, runs);
    report_api::throughput(&mut out, runs);
    report_api::switch(&mut out, runs);
    report_api::overhead(&mut out, runs);
    report_api::curve(&mut out, runs);
    let profiles: Vec<(String, &super::profile::Profile)> = runs
        .iter()
        .filter_map(|r| Some((pg(r), r.profile.as_ref()?)))
        .collect();
    report_api::profile(&mut out, &profiles);
    report_sides::provisioning(&mut out, runs);
    report_sides::engine(&mut out, runs);
    report_sides::processes(&mut out, runs);
    report_sides::memory(&mut out, runs);
    out
}

fn header(out: &mut String, plan: &Plan, runs: &[VersionRun], total_s: f64) {
    out.push_str("# Benchmark results\n\n");
    out.push_str(&format!(
        "Made by `supabase-connector-bench{}` on the ephemeral stack (`tests/stack/stack.py`), one PostgreSQL version after the other, each on a fresh stack of its own. What is measured and how, and what the figures show: `bench/README.md`.\n\n",
        if plan.quick { " --quick" } else { "" }
    ));
    out.push_str(&format!("- Machine: {}\n", machine()));
    for r in runs {
        out.push_str(&format!(
            "- PostgreSQL {} ({}; a throwaway server: durability off); OpenBao {}, dev server (in memory); measured in {:.0} s\n",
            r.facts.version, r.facts.settings, r.facts.bao, r.elapsed_s
        ));
    }
    let caps: Vec<String> = runs
        .iter()
        .map(|r| format!("{} on {}", r.pool_cap, pg(r)))
        .collect();
    out.push_str(&format!(
        "- Connector: the library in this process, {} pooled connections, exposure mode `role_setting`, {} build; API pools `p000`, `p001`, … of `default_max_projects` projects each ({}), as many as the project count needs plus one spare\n",
        super::setup::POOL_SIZE,
        if cfg!(debug_assertions) { "debug" } else { "release" },
        caps.join(", ")
    ));
    out.push_str(&format!(
        "- Parameters: project counts {}, each with {} table(s) made by its owner role, {} samples per action and count, {} live leases ({} % with a database login role) held from the first count on, {} leases per throughput row, {} role-switch samples per case, sizing curve at {:?} projects per login role{}\n",
        plan.scales.iter().map(|s| thousands(*s as i64)).collect::<Vec<_>>().join(" / "),
        plan.tables_per_project,
        plan.samples,
        thousands(plan.live_leases as i64),
        plan.database_share,
        thousands(plan.throughput_leases as i64),
        plan.switch_samples,
        plan.curve,
        if plan.reduced && !plan.quick { " (reduced from the defaults: see `bench/README.md`)" } else { "" }
    ));
    out.push_str("- Latency: wall-clock per call of `Connector::execute` (validation; for the actions that sign tokens, the check of the JWT secret's version in OpenBao, which runs alongside the SQL; the SQL), one caller, calls in sequence. Statements and round trips: counted by the connector's database layer (`Database::totals`).\n");
    out.push_str(&format!("- Whole run: {total_s:.0} s.\n\n"));
}

fn targets_section(out: &mut String, runs: &[VersionRun]) {
    out.push_str("## Targets\n\n");
    let mut head = vec!["target".to_string()];
    for r in runs {
        head.push(pg(r));
        head.push(String::new());
    }
    let rows: Vec<Vec<String>> = targets::evaluate(runs)
        .into_iter()
        .map(|t| {
            let mut row = vec![t.what];
            for (text, ok) in t.cells {
                row.push(text);
                row.push(verdict(ok).to_string());
            }
            row
        })
        .collect();
    table(out, &head, &rows);
}

fn per_scale(out: &mut String, runs: &[VersionRun]) {
    let Some(base) = runs.first() else { return };
    for (i, at) in base.rounds.iter().enumerate() {
        out.push_str(&format!("## {} projects\n\n", thousands(at.scale as i64)));
        for r in runs {
            if let Some(a) = r.rounds.get(i) {
                out.push_str(&format!(
                    "- {}: {} projects registered, {} API pools, {} roles, {} live leases\n",
                    pg(r),
                    thousands(a.projects),
                    a.pools,
                    thousands(a.roles),
                    thousands(a.live_leases)
                ));
            }
        }
        out.push('\n');
        let mut head = vec!["action (ms)".to_string()];
        for r in runs {
            for c in ["p50", "p95", "p99", "statements / round trips"] {
                head.push(format!("{} {c}", pg(r)));
            }
        }
        let rows: Vec<Vec<String>> = ALL
            .iter()
            .map(|name| {
                let mut row = vec![name.to_string()];
                for r in runs {
                    match r.rounds.get(i).and_then(|a| actions::find(&a.steps, name)) {
                        Some(s) => row.extend([
                            fmt_ms(s.sample.p50()),
                            fmt_ms(s.sample.p95()),
                            fmt_ms(s.sample.p99()),
                            format!(
                                "{:.1} / {:.1}",
                                s.sample.statements_per_call(),
                                s.sample.round_trips_per_call()
                            ),
                        ]),
                        None => row.extend(["—".to_string(), "—".into(), "—".into(), "—".into()]),
                    }
                }
                row
            })
            .collect();
        table(out, &head, &rows);
    }
}

fn flat(out: &mut String, runs: &[VersionRun]) {
    let (lo, hi) = targets::scales(runs);
    out.push_str(&format!(
        "## Flat? p50 at {} vs {} projects\n\n",
        thousands(hi as i64),
        thousands(lo as i64)
    ));
    let mut head = vec!["action (ms)".to_string()];
    for r in runs {
        head.extend([
            format!("{} at {lo}", pg(r)),
            format!("{} at {}", pg(r), thousands(hi as i64)),
            format!("{} ×", pg(r)),
        ]);
    }
    let rows: Vec<Vec<String>> = ALL
        .iter()
        .map(|name| {
            let mut row = vec![name.to_string()];
            for r in runs {
                let a = r.first().map_or(f64::NAN, |x| actions::p50(&x.steps, name));
                let b = r.last().map_or(f64::NAN, |x| actions::p50(&x.steps, name));
                let ratio = b / a;
                let shown = match ratio > targets::FLAT {
                    true => format!("**{ratio:.2}**"),
                    false => format!("{ratio:.2}"),
                };
                row.extend([fmt_ms(a), fmt_ms(b), shown]);
            }
            row
        })
        .collect();
    table(out, &head, &rows);
    out.push_str(&format!(
        "Ratios above the target ({}×) are in bold.\n\n",
        targets::FLAT
    ));
}

fn writes_section(out: &mut String, runs: &[VersionRun]) {
    let (_, hi) = targets::scales(runs);
    out.push_str(&format!(
        "## Rows written to `pg_authid` and `pg_auth_members` per action (at {} projects)\n\n",
        thousands(hi as i64)
    ));
    out.push_str("New row versions (`xmin` above an xid taken just before) / rows removed (count before − surviving old rows), per call. Any of them resets every session's cached role memberships in the cluster.\n\n");
    let mut head = vec!["action".to_string()];
    for r in runs {
        head.extend([
            format!("{} pg_authid", pg(r)),
            format!("{} pg_auth_members", pg(r)),
        ]);
    }
    let rows: Vec<Vec<String>> = ALL
        .iter()
        .map(|name| {
            let mut row = vec![name.to_string()];
            for r in runs {
                match r.last().and_then(|a| actions::find(&a.steps, name)) {
                    Some(s) => {
                        let w = &s.writes;
                        row.push(Writes::cell(w.authid_new, w.authid_gone, w.calls));
                        row.push(Writes::cell(w.members_new, w.members_gone, w.calls));
                    }
                    None => row.extend(["—".to_string(), "—".into()]),
                }
            }
            row
        })
        .collect();
    table(out, &head, &rows);
    for r in runs {
        let (c, d) = &r.method;
        out.push_str(&format!(
            "Method check on {}: `CREATE ROLE x; GRANT anon TO x` read {} and {}; `DROP ROLE x` read {} and {}: {}.\n",
            pg(r),
            Writes::cell(c.authid_new, c.authid_gone, 1),
            Writes::cell(c.members_new, c.members_gone, 1),
            Writes::cell(d.authid_new, d.authid_gone, 1),
            Writes::cell(d.members_new, d.members_gone, 1),
            if method_ok(c, d) { "as expected" } else { "**not as expected: the figures above are not reliable**" }
        ));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(-1234567), "-1,234,567");
    }

    #[test]
    fn tables_align_numbers_right() {
        let mut out = String::new();
        table(
            &mut out,
            &["a".into(), "b".into()],
            &[vec!["x".into(), "1".into()]],
        );
        assert_eq!(out, "| a | b |\n|---|---:|\n| x | 1 |\n\n");
    }
}
