//! Report sections: provisioning time, the side-by-side comparisons
//! (OpenBao's database engine, pgroles) and memory.

use super::actions::fmt_ms;
use super::report::{pg, table, thousands};
use super::run::VersionRun;
use super::sides::ProcessTimes;
use super::throughput::at;

pub fn provisioning(out: &mut String, runs: &[VersionRun]) {
    out.push_str("## Provisioning with 4 callers\n\n");
    out.push_str("`upsert_database_project_access` without lease for the `scale…` projects, 4 concurrent callers, in the segments between the rounds (each round's own measurements in between are not counted).\n\n");
    let mut head = vec!["segment".to_string()];
    head.extend(runs.iter().map(|r| format!("{} seconds", pg(r))));
    head.extend(runs.iter().map(|r| format!("{} projects/s", pg(r))));
    let segments: Vec<(usize, usize)> = runs
        .first()
        .map(|r| r.provisioning.segments.iter().map(|s| (s.0, s.1)).collect())
        .unwrap_or_default();
    let mut rows: Vec<Vec<String>> = segments
        .iter()
        .enumerate()
        .map(|(i, (from, to))| {
            let mut row = vec![format!(
                "{} → {}",
                thousands(*from as i64),
                thousands(*to as i64)
            )];
            let secs: Vec<Option<f64>> = runs
                .iter()
                .map(|r| r.provisioning.segments.get(i).map(|s| s.2))
                .collect();
            row.extend(
                secs.iter()
                    .map(|s| s.map_or("—".into(), |s| format!("{s:.1}"))),
            );
            row.extend(
                secs.iter()
                    .map(|s| s.map_or("—".into(), |s| format!("{:.0}", (to - from) as f64 / s))),
            );
            row
        })
        .collect();
    let mut total = vec!["total".to_string()];
    total.extend(
        runs.iter()
            .map(|r| format!("**{:.1}**", r.provisioning.total_s())),
    );
    total.extend(runs.iter().map(|r| {
        format!(
            "{:.0}",
            r.provisioning.projects() as f64 / r.provisioning.total_s()
        )
    }));
    rows.push(total);
    table(out, &head, &rows);
    for r in runs {
        if r.provisioning.tables_s > 0.0 {
            out.push_str(&format!(
                "- {}: creating the projects' tables took {:.1} s more (as the superuser, not counted above).\n",
                pg(r),
                r.provisioning.tables_s
            ));
        }
        let (n, s) = r.provisioning.live;
        if n > 0 {
            out.push_str(&format!(
                "- {}: the {} live leases took {s:.1} s to issue with 4 callers ({:.0}/s).\n",
                pg(r),
                thousands(n as i64),
                n as f64 / s
            ));
        }
    }
    out.push('\n');
}

pub fn engine(out: &mut String, runs: &[VersionRun]) {
    if runs.iter().all(|r| r.engine.is_none()) {
        return;
    }
    out.push_str("## Side by side: OpenBao's database secrets engine\n\n");
    out.push_str("Same stack, after the first round: OpenBao's `database/` engine (postgresql plugin, connected as `supabase_admin`), role `lease` with `CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE proj_versus_authenticated`; `GET /v1/database/creds/lease` and `PUT /v1/sys/leases/revoke`. Ours: `issue_database_lease` for a user with a direct `project_contributor` grant (authenticated class), with a database login role (the engine's equivalent) and API-only, each revoked right after.\n\n");
    let mut head = vec!["ms".to_string()];
    for r in runs {
        head.extend(
            [
                "ours, database",
                "ours, API-only",
                "OpenBao engine",
                "ours (database) / OpenBao",
            ]
            .map(|c| format!("{} {c}", pg(r))),
        );
    }
    let mut rows = Vec::new();
    for (label, pick) in [("issue p50", 0), ("issue p99", 1), ("revoke p50", 2)] {
        let mut row = vec![label.to_string()];
        for r in runs {
            match &r.engine {
                Some(Ok(e)) => {
                    let [db, api, theirs] = engine_figures(e, pick);
                    row.extend([
                        fmt_ms(db),
                        fmt_ms(api),
                        fmt_ms(theirs),
                        format!("{:.2}", db / theirs),
                    ]);
                }
                _ => row.extend(vec!["—".to_string(); 4]),
            }
        }
        rows.push(row);
    }
    table(out, &head, &rows);
    engine_rates(out, runs);
    for r in runs {
        if let Some(Err(e)) = &r.engine {
            out.push_str(&format!("- {}: skipped: {e}\n", pg(r)));
        }
    }
    out.push('\n');
}

/// Ours with a database role, ours API-only, OpenBao: issue p50 (0),
/// issue p99 (1) or revoke p50 (2).
fn engine_figures(e: &super::versus::Engine, pick: usize) -> [f64; 3] {
    match pick {
        0 => [e.db_issue.p50(), e.api_issue.p50(), e.theirs_issue.p50()],
        1 => [e.db_issue.p99(), e.api_issue.p99(), e.theirs_issue.p99()],
        _ => [e.db_revoke.p50(), e.api_revoke.p50(), e.theirs_revoke.p50()],
    }
}

fn engine_rates(out: &mut String, runs: &[VersionRun]) {
    let mut head = vec!["callers".to_string()];
    for r in runs {
        head.extend(
            [
                "ours API-only/s",
                "ours database/s",
                "OpenBao creds/s",
                "ours (database) / OpenBao",
            ]
            .map(|c| format!("{} {c}", pg(r))),
        );
    }
    let callers: Vec<usize> = runs
        .iter()
        .find_map(|r| match &r.engine {
            Some(Ok(e)) => Some(e.theirs_rates.iter().map(|x| x.0).collect()),
            _ => None,
        })
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = callers
        .iter()
        .map(|&c| {
            let mut row = vec![c.to_string()];
            for r in runs {
                let ours = r.first().and_then(|a| a.throughput.as_ref());
                match (&r.engine, ours) {
                    (Some(Ok(e)), Some(t)) => {
                        let theirs = e
                            .theirs_rates
                            .iter()
                            .find(|x| x.0 == c)
                            .map_or(f64::NAN, |x| x.1);
                        let (api, db) = (at(&t.api_issue, c), at(&t.db_issue, c));
                        row.extend([
                            format!("{api:.0}"),
                            format!("{db:.0}"),
                            format!("{theirs:.0}"),
                            format!("{:.2}", db / theirs),
                        ]);
                    }
                    _ => row.extend(vec!["—".to_string(); 4]),
                }
            }
            row
        })
        .collect();
    out.push_str("Throughput (ours: the first round's figures above):\n\n");
    table(out, &head, &rows);
}

pub fn processes(out: &mut String, runs: &[VersionRun]) {
    if runs.iter().all(|r| r.processes.is_none()) {
        return;
    }
    out.push_str("## Side by side: provisioning one project as a process\n\n");
    out.push_str("Wall-clock of one process run, p50: our `supabase-connector run upsert_database_project_access --params '{\"project\": …, \"issue_lease\": false}'` (runtime role; reads its password from OpenBao; no pools configured, so on the central API) vs `pgroles apply -f <manifest>` (as `supabase_admin`) with a manifest giving the same four roles, memberships, schema/table/sequence grants and default privileges (the schema is created beforehand: pgroles does not create schemas; ours also creates the schema, registers the project, enables RLS on existing tables and updates the API exposure).\n\n");
    let mut head = vec!["ms".to_string()];
    for r in runs {
        head.extend(["ours", "pgroles", "ours / pgroles"].map(|c| format!("{} {c}", pg(r))));
    }
    let pick = |t: &ProcessTimes, cold: bool| if cold { t.cold.p50() } else { t.noop.p50() };
    let mut rows = Vec::new();
    for (label, cold) in [("cold (new project)", true), ("no-op re-run", false)] {
        let mut row = vec![label.to_string()];
        for r in runs {
            let Some(p) = &r.processes else {
                row.extend(vec!["—".to_string(); 3]);
                continue;
            };
            let ours = p.ours.as_ref().map(|t| pick(t, cold)).ok();
            let theirs = p.pgroles.as_ref().map(|t| pick(&t.1, cold)).ok();
            row.push(ours.map_or("—".into(), |x| format!("{x:.1}")));
            row.push(theirs.map_or("—".into(), |x| format!("{x:.1}")));
            row.push(match (ours, theirs) {
                (Some(a), Some(b)) => format!("{:.2}", a / b),
                _ => "—".into(),
            });
        }
        rows.push(row);
    }
    table(out, &head, &rows);
    for r in runs {
        let Some(p) = &r.processes else { continue };
        if let Err(e) = &p.ours {
            out.push_str(&format!("- {} our CLI: {e}\n", pg(r)));
        }
        match &p.pgroles {
            Ok((version, _)) => out.push_str(&format!("- {} pgroles: {version}\n", pg(r))),
            Err(e) => out.push_str(&format!("- {} pgroles: {e}\n", pg(r))),
        }
    }
    out.push('\n');
}

pub fn memory(out: &mut String, runs: &[VersionRun]) {
    out.push_str("## Memory\n\n");
    out.push_str("This process is a long-lived executor (one `Connector` at a time, 16 pooled connections); the peak is reset at the start of each version.\n\n");
    let head: Vec<String> = [
        "version",
        "RSS at start MiB",
        "peak RSS after the first round MiB",
        "peak RSS after N more actions MiB",
        "N",
        "RSS then MiB",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let m = &r.memory;
            vec![
                pg(r),
                format!("{:.1}", m.rss_start),
                format!("{:.1}", m.peak_before),
                format!("{:.1}", m.peak_after),
                thousands(m.actions as i64),
                format!("{:.1}", m.rss_now),
            ]
        })
        .collect();
    table(out, &head, &rows);
    out.push_str("The N actions: no-op upserts, API-only and database issue + revoke pairs, describes, on one project.\n\n");
}
