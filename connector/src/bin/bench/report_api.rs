//! Report sections about the API side: lease throughput, PostgREST's role
//! switch, the pre-request overhead and the pool sizing curve.

use super::actions::fmt_ms;
use super::curve::{largest_within_target, TARGET_P99_MS};
use super::report::{pg, table, thousands};
use super::run::VersionRun;
use super::sample::Sample;
use super::throughput::{at, Rate};

fn rate(rates: &[Rate], callers: usize) -> String {
    let x = at(rates, callers);
    if x.is_nan() {
        "—".into()
    } else {
        format!("{x:.0}")
    }
}

pub fn throughput(out: &mut String, runs: &[VersionRun]) {
    out.push_str("## Lease throughput\n\n");
    out.push_str("Leases per second with concurrent callers sharing the connector's pool: API-only leases all on one project, database leases spread over the round's projects (under `max_database_leases`); then the same leases revoked at the same concurrency. Measured at the first and the last project count.\n\n");
    let Some(base) = runs.first() else { return };
    for (i, at_scale) in base.rounds.iter().enumerate() {
        if at_scale.throughput.is_none() {
            continue;
        }
        let t = at_scale
            .throughput
            .as_ref()
            .map_or((0, 0), |t| (t.api_total, t.db_total));
        out.push_str(&format!(
            "At {} projects ({} API-only and {} database leases per row):\n\n",
            thousands(at_scale.scale as i64),
            thousands(t.0 as i64),
            thousands(t.1 as i64)
        ));
        let mut head = vec!["callers".to_string()];
        for r in runs {
            for c in [
                "API-only issue/s",
                "API-only revoke/s",
                "database issue/s",
                "database revoke/s",
                "API-only issue p50 / p99 ms",
            ] {
                head.push(format!("{} {c}", pg(r)));
            }
        }
        let callers: Vec<usize> = at_scale
            .throughput
            .as_ref()
            .map(|t| t.api_issue.iter().map(|r| r.callers).collect())
            .unwrap_or_default();
        let rows: Vec<Vec<String>> = callers
            .iter()
            .map(|&c| {
                let mut row = vec![c.to_string()];
                for r in runs {
                    match r.rounds.get(i).and_then(|a| a.throughput.as_ref()) {
                        Some(t) => {
                            let s = t
                                .api_issue
                                .iter()
                                .find(|x| x.callers == c)
                                .map(|x| &x.sample);
                            row.extend([
                                rate(&t.api_issue, c),
                                rate(&t.api_revoke, c),
                                rate(&t.db_issue, c),
                                rate(&t.db_revoke, c),
                                s.map_or("—".into(), |s| {
                                    format!("{} / {}", fmt_ms(s.p50()), fmt_ms(s.p99()))
                                }),
                            ]);
                        }
                        None => row.extend(vec!["—".to_string(); 5]),
                    }
                }
                row
            })
            .collect();
        table(out, &head, &rows);
    }
}

fn p50_p99(s: &Sample) -> String {
    format!("{} / {}", fmt_ms(s.p50()), fmt_ms(s.p99()))
}

pub fn switch(out: &mut String, runs: &[VersionRun]) {
    out.push_str("## PostgREST's role switch per request\n\n");
    out.push_str("As the login role of the fullest API pool (topped up to the default pool size at the largest count), one round trip: `BEGIN; select set_config('role', <class role>, true), set_config('request.jwt.claims', <claims>, true); select supabase_connector_api.pre_request(); COMMIT`. Warm: repeated at once. After an API-only issue: the first request with the new lease's token. After a role change: right after `CREATE ROLE x; DROP ROLE x` in another session.\n\n");
    let head: Vec<String> = [
        "projects in the cluster",
        "version",
        "login role: projects / memberships",
        "warm p50 / p99 ms",
        "after an API-only issue p50 / p99 ms",
        "after a role change p50 / p99 ms",
        "samples",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    let scales = runs.first().map_or(0, |r| r.rounds.len());
    for i in 0..scales {
        for r in runs {
            let Some(a) = r.rounds.get(i) else { continue };
            let s = &a.switch;
            rows.push(vec![
                thousands(a.projects),
                pg(r),
                format!(
                    "`{}`: {} / {}",
                    s.login.trim_start_matches("supabase_connector_pool_"),
                    s.projects,
                    thousands(s.memberships)
                ),
                p50_p99(&s.warm),
                p50_p99(&s.after_api_issue),
                p50_p99(&s.after_change),
                s.warm.len().to_string(),
            ]);
        }
    }
    table(out, &head, &rows);
}

pub fn overhead(out: &mut String, runs: &[VersionRun]) {
    out.push_str("## `pre_request` overhead per API request\n\n");
    out.push_str("The same warm request as above with and without `select supabase_connector_api.pre_request()`, in alternating pairs; and inside the server, 20,000 calls in one statement less the same statement without them.\n\n");
    let head: Vec<String> = [
        "projects in the cluster",
        "version",
        "with p50 ms",
        "without p50 ms",
        "difference of p50s ms",
        "server side per call ms",
        "pairs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    let scales = runs.first().map_or(0, |r| r.rounds.len());
    for i in 0..scales {
        for r in runs {
            let Some(a) = r.rounds.get(i) else { continue };
            let o = &a.overhead;
            rows.push(vec![
                thousands(a.projects),
                pg(r),
                format!("{:.3}", o.with.p50()),
                format!("{:.3}", o.without.p50()),
                format!("{:.3}", o.p50_delta()),
                format!("{:.4}", o.server_ms),
                o.with.len().to_string(),
            ]);
        }
    }
    table(out, &head, &rows);
}

pub fn curve(out: &mut String, runs: &[VersionRun]) {
    if runs.iter().all(|r| r.curve.is_empty()) {
        return;
    }
    out.push_str("## Pool sizing curve\n\n");
    out.push_str(&format!("PostgREST's role switch right after a role change elsewhere, as a function of the projects one login role serves: a configured pool's login role (projects pinned to pool `curve`) and Supabase's `authenticator` (projects pinned to `central`), each project with one database lease, on the cluster the rounds above left behind. Target: p99 ≤ {TARGET_P99_MS} ms.\n\n"));
    let mut head = vec!["projects per login role".to_string()];
    for r in runs {
        head.extend([
            format!("{} pool p50 / p99 ms", pg(r)),
            format!("{} central p50 / p99 ms", pg(r)),
            format!("{} pool warm p50", pg(r)),
            format!("{} samples", pg(r)),
        ]);
    }
    let sizes: Vec<usize> = runs
        .iter()
        .find(|r| !r.curve.is_empty())
        .map(|r| r.curve.iter().map(|p| p.projects).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = sizes
        .iter()
        .map(|&k| {
            let mut row = vec![thousands(k as i64)];
            for r in runs {
                match r.curve.iter().find(|p| p.projects == k) {
                    Some(p) => row.extend([
                        p50_p99(&p.pool.after_change),
                        p50_p99(&p.central.after_change),
                        fmt_ms(p.pool.warm.p50()),
                        format!(
                            "{} / {}",
                            p.pool.after_change.len(),
                            p.central.after_change.len()
                        ),
                    ]),
                    None => row.extend(vec!["—".to_string(); 4]),
                }
            }
            row
        })
        .collect();
    table(out, &head, &rows);
    for r in runs.iter().filter(|r| !r.curve.is_empty()) {
        out.push_str(&format!(
            "- {}: the largest size measured with p99 ≤ {TARGET_P99_MS} ms (and every smaller one within it too): {}; `default_max_projects` for this server: {}.\n",
            pg(r),
            largest_within_target(&r.curve).map_or("none".into(), |k| thousands(k as i64)),
            r.pool_cap
        ));
    }
    out.push('\n');
}
