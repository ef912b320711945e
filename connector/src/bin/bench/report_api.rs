//! Report sections about the API side: lease throughput, PostgREST's role
//! switch, the pre-request overhead and the pool sizing curve.

use super::actions::fmt_ms;
use super::curve::{largest_within, largest_within_target, TARGET_P99_MS};
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
    out.push_str("As the login role of the fullest API pool (topped up to the default pool size at the largest count), one round trip: `BEGIN; select set_config('role', <class role>, true), set_config('request.jwt.claims', <claims>, true); select supabase_connector_api.pre_request(); COMMIT`. Warm: repeated at once. After a read-only action: right after the connector ran `describe_database_project` (no role, no lease written), same token: the control for the next column. After an API-only issue: the first request with the new lease's token. After a role change: right after `CREATE ROLE x; DROP ROLE x` in another session. After a membership change: right after `CREATE ROLE x IN ROLE anon; DROP ROLE x` (what every database lease issued or revoked anywhere in the cluster writes).\n\n");
    let head: Vec<String> = [
        "projects in the cluster",
        "version",
        "pool: projects / memberships",
        "warm",
        "after a read-only action",
        "after an API-only issue",
        "after a role change",
        "after a membership change",
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
                p50_p99(&s.after_read),
                p50_p99(&s.after_api_issue),
                p50_p99(&s.after_change),
                p50_p99(&s.after_membership_change),
                s.warm.len().to_string(),
            ]);
        }
    }
    table(out, &head, &rows);
    out.push_str("Each cell: p50 / p99 in milliseconds.\n\n");
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
    out.push_str(&format!("PostgREST's role switch right after a role change elsewhere, as a function of the projects one login role serves: a configured pool's login role (projects pinned to pool `curve`) and Supabase's `authenticator` (projects pinned to `central`), each project with one database lease, on the cluster the rounds above left behind; and the served list recomputed for each. Cells: p50 / p99 in milliseconds. Target: p99 ≤ {TARGET_P99_MS} ms after a role change.\n\n"));
    let head: Vec<String> = [
        "projects per login role",
        "version",
        "pool: after a role change",
        "pool: after a membership change",
        "pool: warm",
        "central: after a role change",
        "central: after a membership change",
        "recompute p50: pool / central",
        "samples",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut sizes: Vec<usize> = runs
        .iter()
        .flat_map(|r| r.curve.iter().map(|p| p.projects))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut rows = Vec::new();
    for k in sizes {
        for r in runs {
            let Some(p) = r.curve.iter().find(|p| p.projects == k) else {
                continue;
            };
            rows.push(vec![
                thousands(k as i64),
                pg(r),
                p50_p99(&p.pool.after_change),
                p50_p99(&p.pool.after_membership_change),
                p50_p99(&p.pool.warm),
                p50_p99(&p.central.after_change),
                p50_p99(&p.central.after_membership_change),
                format!(
                    "{} / {}",
                    fmt_ms(p.recompute_pool.p50()),
                    fmt_ms(p.recompute_central.p50())
                ),
                format!(
                    "{} / {}",
                    p.pool.after_change.len(),
                    p.central.after_change.len()
                ),
            ]);
        }
    }
    table(out, &head, &rows);
    for r in runs.iter().filter(|r| !r.curve.is_empty()) {
        let membership = largest_within(&r.curve, |p| &p.pool.after_membership_change);
        out.push_str(&format!(
            "- {}: the largest size measured with p99 ≤ {TARGET_P99_MS} ms after a role change: {} (after a membership change: {}); `default_max_projects` for this server: {}.\n",
            pg(r),
            largest_within_target(&r.curve).map_or("none".into(), |k| thousands(k as i64)),
            membership.map_or("none".into(), |k| thousands(k as i64)),
            r.pool_cap
        ));
    }
    out.push('\n');
}

/// One figure of a profile.
type Figure = fn(&super::profile::Profile) -> f64;

/// Where the lease actions' time goes (see `profile.rs`), per version.
pub fn profile(out: &mut String, profiles: &[(String, &super::profile::Profile)]) {
    if profiles.is_empty() {
        return;
    }
    out.push_str("## Where a lease action's time goes\n\n");
    out.push_str("p50 of the whole `execute` beside its parts measured alone, and the same SQL sent by a bare `tokio-postgres` client over the same TCP loopback with the same pipelining (the floor PostgreSQL and the network set).\n\n");
    let mut head = vec!["ms (p50)".to_string()];
    head.extend(profiles.iter().map(|p| p.0.clone()));
    let rows_of: [(&str, Figure); 10] = [
        ("API-only issue: whole `execute`", |p| p.api_issue.p50()),
        ("… its SQL from a bare client (2 round trips)", |p| {
            p.api_issue_sql.p50()
        }),
        ("… parameter validation (JSON Schema)", |p| {
            p.validate.p50()
        }),
        (
            "… OpenBao secret version check (runs alongside the SQL)",
            |p| p.secrets.p50(),
        ),
        ("… pool checkout", |p| p.checkout.p50()),
        ("… two JWT signatures", |p| p.sign_two.p50()),
        ("… audit redaction (params and lease)", |p| p.redact.p50()),
        (
            "… the rest (whole − the above but the version check)",
            |p| {
                p.api_issue.p50()
                    - p.api_issue_sql.p50()
                    - p.validate.p50()
                    - p.checkout.p50()
                    - p.sign_two.p50()
                    - p.redact.p50()
            },
        ),
        ("API-only revoke: whole `execute`", |p| p.api_revoke.p50()),
        ("… its SQL from a bare client (2 round trips)", |p| {
            p.api_revoke_sql.p50()
        }),
    ];
    let rows: Vec<Vec<String>> = rows_of
        .iter()
        .map(|(label, f)| {
            let mut row = vec![label.to_string()];
            row.extend(profiles.iter().map(|p| format!("{:.3}", f(p.1))));
            row
        })
        .collect();
    table(out, &head, &rows);
    function_table(
        out,
        profiles,
        "database lease issues and revocations",
        |p| &p.functions,
    );
    function_table(out, profiles, "cold upserts (without lease)", |p| {
        &p.upsert_functions
    });
    for p in profiles {
        let cpu = &p.1.cpu;
        out.push_str(&format!(
            "- {}: database lease issue p50 {} ms, revoke p50 {} ms, cold upsert p50 {} ms over the calls above. CPU per API-only issue at {} callers ({:.0}/s): {:.0} µs in this process (the connector), {:.0} µs in PostgreSQL's processes; the machine's cores allow at most {:.0}/s at that cost.\n",
            p.0,
            fmt_ms(p.1.db_issue.p50()),
            fmt_ms(p.1.db_revoke.p50()),
            fmt_ms(p.1.cold_upsert.p50()),
            cpu.callers,
            cpu.per_s,
            cpu.client_us,
            cpu.server_us,
            cpu.ceiling()
        ));
        if !p.1.cold_floor.ms.is_empty() {
            out.push_str(&format!(
                "- {}: the floor under a cold upsert: the same roles, settings, memberships, schema, grant, default privileges, served-list setting and NOTIFY as raw SQL in one round trip, as the superuser, event triggers on, no registry and no role-function checks: {} ms p50 (a cold upsert without lease: {} ms).\n",
                p.0,
                fmt_ms(p.1.cold_floor.p50()),
                fmt_ms(p.1.cold_upsert.p50()),
            ));
        }
        out.push_str(&format!(
            "- {}: with `openbao.signing_check_ms` = {} (a version check stays good that long) the API-only issue takes {} ms p50 (against {} ms checking every time) and reaches {:.0}/s at 4 callers.\n",
            p.0,
            super::profile::SIGNING_CHECK_MS,
            fmt_ms(p.1.api_issue_windowed.p50()),
            fmt_ms(p.1.api_issue.p50()),
            p.1.windowed_per_s_at_4
        ));
    }
    out.push('\n');
}

/// Server time per call inside each function (`track_functions = pl`).
fn function_table(
    out: &mut String,
    profiles: &[(String, &super::profile::Profile)],
    during: &str,
    pick: fn(&super::profile::Profile) -> &super::profile::Functions,
) {
    if profiles.iter().all(|p| pick(p.1).is_empty()) {
        return;
    }
    out.push_str(&format!("Server time inside the connector's functions during {during} (`track_functions = pl`), per call of each:\n\n"));
    let mut head = vec!["function".to_string()];
    for p in profiles {
        head.extend([
            format!("{} calls", p.0),
            format!("{} total ms/call", p.0),
            format!("{} self ms/call", p.0),
        ]);
    }
    let mut names: Vec<String> = Vec::new();
    for f in profiles.iter().flat_map(|p| pick(p.1)) {
        if !names.contains(&f.0) {
            names.push(f.0.clone());
        }
    }
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|name| {
            let mut row = vec![format!("`{name}`")];
            for p in profiles {
                match pick(p.1).iter().find(|f| &f.0 == name) {
                    Some((_, calls, total, own)) => {
                        let c = (*calls).max(1) as f64;
                        row.extend([
                            calls.to_string(),
                            format!("{:.3}", total / c),
                            format!("{:.3}", own / c),
                        ]);
                    }
                    None => row.extend(vec!["—".to_string(); 3]),
                }
            }
            row
        })
        .collect();
    table(out, &head, &rows);
}
