//! The targets the figures are held against, per version.

use super::actions::{
    self, fmt_ms, p50, ALL, API_ISSUE, API_RENEW, API_REVOKE, COLD, DB_ISSUE, DB_REVOKE, NOOP,
};
use super::curve::{largest_within_target, TARGET_P99_MS};
use super::run::VersionRun;
use super::scale::AtScale;

pub const FLAT: f64 = 1.3;
pub const API_P50_MS: f64 = 0.3;
pub const API_PER_S_AT_4: f64 = 5_000.0;
pub const DB_P50_MS: f64 = 1.5;
pub const PRE_REQUEST_MS: f64 = 0.05;
pub const PROVISION_S: f64 = 180.0;
pub const NOOP_P50_MS: f64 = 1.0;
pub const NOOP_ROUND_TRIPS: f64 = 2.0;
pub const COLD_P50_MS: f64 = 5.0;
/// Our CLI process against pgroles': at most this share of its time.
pub const CLI_SHARE_OF_PGROLES: f64 = 1.0 / 3.0;
/// "Same as warm": p50 right after an API-only issue within this factor.
pub const SAME_AS_WARM: f64 = 1.15;

/// One target: what, and per version the figure and whether it is met
/// (`None`: not measured in this run).
pub struct Target {
    pub what: String,
    pub cells: Vec<(String, Option<bool>)>,
}

/// The p50 ratio, largest vs smallest count, of every action; worst first.
pub fn ratios(run: &VersionRun) -> Vec<(&'static str, f64)> {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return vec![];
    };
    let mut v: Vec<(&'static str, f64)> = ALL
        .iter()
        .map(|n| (*n, p50(&last.steps, n) / p50(&first.steps, n)))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

fn cell(
    runs: &[VersionRun],
    f: impl Fn(&VersionRun) -> Option<(String, bool)>,
) -> Vec<(String, Option<bool>)> {
    runs.iter()
        .map(|r| match f(r) {
            Some((text, ok)) => (text, Some(ok)),
            None => ("not measured".into(), None),
        })
        .collect()
}

fn at_both(run: &VersionRun, name: &str, limit: f64) -> Option<(String, bool)> {
    let (first, last) = (run.first()?, run.last()?);
    let (a, b) = (p50(&first.steps, name), p50(&last.steps, name));
    Some((
        format!(
            "{} ms at {}, {} ms at {}",
            fmt_ms(a),
            first.scale,
            fmt_ms(b),
            last.scale
        ),
        a <= limit && b <= limit,
    ))
}

/// Every target, in report order.
pub fn evaluate(runs: &[VersionRun]) -> Vec<Target> {
    let mut t = Vec::new();
    let (lo, hi) = scales(runs);
    t.push(Target {
        what: format!("every action's p50 at {hi} projects within {FLAT}× of {lo}"),
        cells: cell(runs, |r| {
            let worst = *ratios(r).first()?;
            let over = ratios(r).iter().filter(|x| x.1 > FLAT).count();
            Some((
                format!("worst {:.2}× ({}); {over} over", worst.1, worst.0),
                worst.1 <= FLAT,
            ))
        }),
    });
    for (name, limit) in [
        (API_ISSUE, API_P50_MS),
        (API_REVOKE, API_P50_MS),
        (DB_ISSUE, DB_P50_MS),
        (DB_REVOKE, DB_P50_MS),
    ] {
        t.push(Target {
            what: format!("{name} p50 ≤ {limit} ms"),
            cells: cell(runs, |r| at_both(r, name, limit)),
        });
    }
    t.push(Target {
        what: format!("API-only leases ≥ {API_PER_S_AT_4:.0}/s at 4 callers"),
        cells: cell(runs, |r| {
            let rates: Vec<(usize, f64)> = r
                .rounds
                .iter()
                .filter_map(|a| Some((a.scale, a.throughput.as_ref()?.api_at(4))))
                .collect();
            let text = rates
                .iter()
                .map(|(s, x)| format!("{x:.0}/s at {s}"))
                .collect::<Vec<_>>()
                .join(", ");
            (!rates.is_empty()).then(|| (text, rates.iter().all(|x| x.1 >= API_PER_S_AT_4)))
        }),
    });
    t.push(Target {
        what: "API-only issue / renew / revoke write 0 rows to pg_authid and pg_auth_members"
            .into(),
        cells: cell(runs, |r| {
            let rows: f64 = r
                .rounds
                .iter()
                .flat_map(|a| {
                    [API_ISSUE, API_RENEW, API_REVOKE]
                        .map(|n| actions::find(&a.steps, n).map_or(0.0, |s| s.writes.per_call()))
                })
                .sum();
            Some((format!("{rows} rows"), rows == 0.0))
        }),
    });
    switch_targets(runs, &mut t);
    other_targets(runs, &mut t);
    provisioning_targets(runs, &mut t);
    t
}

fn provisioning_targets(runs: &[VersionRun], t: &mut Vec<Target>) {
    t.push(Target {
        what: format!("{NOOP} p50 ≤ {NOOP_P50_MS} ms in ≤ {NOOP_ROUND_TRIPS} round trips"),
        cells: cell(runs, |r| {
            let (text, ok) = at_both(r, NOOP, NOOP_P50_MS)?;
            let trips = r
                .rounds
                .iter()
                .filter_map(|a| actions::find(&a.steps, NOOP))
                .map(|s| s.sample.round_trips_per_call())
                .fold(0.0, f64::max);
            Some((
                format!("{text}; {trips} round trips"),
                ok && trips <= NOOP_ROUND_TRIPS,
            ))
        }),
    });
    t.push(Target {
        what: format!("{COLD} p50 ≤ {COLD_P50_MS} ms"),
        cells: cell(runs, |r| at_both(r, COLD, COLD_P50_MS)),
    });
    t.push(Target {
        what: "our CLI as a process ≤ 1/3 of pgroles' time, cold and no-op (p50)".into(),
        cells: cell(runs, |r| {
            let p = r.processes.as_ref()?;
            let (ours, (_, theirs)) = (p.ours.as_ref().ok()?, p.pgroles.as_ref().ok()?);
            let cold = ours.cold.p50() / theirs.cold.p50();
            let noop = ours.noop.p50() / theirs.noop.p50();
            Some((
                format!(
                    "{:.2}× cold ({} vs {} ms), {:.2}× no-op ({} vs {} ms)",
                    cold,
                    fmt_ms(ours.cold.p50()),
                    fmt_ms(theirs.cold.p50()),
                    noop,
                    fmt_ms(ours.noop.p50()),
                    fmt_ms(theirs.noop.p50())
                ),
                cold <= CLI_SHARE_OF_PGROLES && noop <= CLI_SHARE_OF_PGROLES,
            ))
        }),
    });
}

fn switch_targets(runs: &[VersionRun], t: &mut Vec<Target>) {
    t.push(Target {
        what: format!(
            "role switch right after an API-only issue: same as warm (p50 within {SAME_AS_WARM}×)"
        ),
        cells: cell(runs, |r| {
            let s = &r.last()?.switch;
            let (a, w, c) = (s.after_api_issue.p50(), s.warm.p50(), s.after_read.p50());
            Some((
                format!(
                    "{} vs {} ms warm ({} ms after a read-only action)",
                    fmt_ms(a),
                    fmt_ms(w),
                    fmt_ms(c)
                ),
                a <= w * SAME_AS_WARM,
            ))
        }),
    });
    t.push(Target {
        what: format!("role switch after a role change elsewhere, pool login role at the default size, largest count: p99 ≤ {TARGET_P99_MS} ms"),
        cells: cell(runs, |r| {
            let s = &r.last()?.switch;
            let p99 = s.after_change.p99();
            Some((format!("{} ms ({} projects on the pool)", fmt_ms(p99), s.projects), p99 <= TARGET_P99_MS))
        }),
    });
    t.push(Target {
        what: format!("pool sizing curve: default_max_projects keeps p99 ≤ {TARGET_P99_MS} ms"),
        cells: cell(runs, |r| {
            if r.curve.is_empty() {
                return None;
            }
            let best = largest_within_target(&r.curve);
            let text = format!(
                "default {}; curve: {}",
                r.pool_cap,
                best.map_or("none within target".into(), |b| format!(
                    "≤ {b} within target"
                ))
            );
            Some((text, best.is_some_and(|b| b >= r.pool_cap as usize)))
        }),
    });
}

fn other_targets(runs: &[VersionRun], t: &mut Vec<Target>) {
    t.push(Target {
        what: format!("pre_request overhead per API request ≤ {PRE_REQUEST_MS} ms p50"),
        cells: cell(runs, |r| {
            let o = &r.last()?.overhead;
            Some((
                format!(
                    "{:.3} ms (server side {:.3} ms per call)",
                    o.p50_delta(),
                    o.server_ms
                ),
                o.p50_delta() <= PRE_REQUEST_MS,
            ))
        }),
    });
    t.push(Target {
        what: format!(
            "provisioning {} projects with 4 callers < {} min",
            runs.first().map_or(0, |r| r.provisioning.projects()),
            PROVISION_S / 60.0
        ),
        cells: cell(runs, |r| {
            let s = r.provisioning.total_s();
            (s > 0.0).then(|| (format!("{s:.0} s"), s < PROVISION_S))
        }),
    });
}

/// (smallest, largest) project counts measured.
pub fn scales(runs: &[VersionRun]) -> (usize, usize) {
    let first = runs
        .first()
        .and_then(VersionRun::first)
        .map_or(0, |a: &AtScale| a.scale);
    let last = runs
        .first()
        .and_then(VersionRun::last)
        .map_or(0, |a: &AtScale| a.scale);
    (first, last)
}

pub fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "—",
    }
}
