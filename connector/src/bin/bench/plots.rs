//! The plots beside the report: p50 per action against the project count
//! (one per version) and the pool sizing curve (both versions).

use super::actions::{self, ALL};
use super::curve::TARGET_P99_MS;
use super::run::VersionRun;
use super::svg::{render, Plot, Series};
use std::path::{Path, PathBuf};

/// Write the plots next to `report`; their file names, for the report.
pub fn write(report: &Path, runs: &[VersionRun]) -> Result<Vec<(String, String)>, String> {
    let dir = report.parent().unwrap_or(Path::new("."));
    let stem = match report.file_stem().and_then(|f| f.to_str()) {
        Some("RESULTS") | None => String::new(),
        Some(s) => format!("{s}-"),
    };
    let mut written = Vec::new();
    for r in runs.iter().filter(|r| !r.rounds.is_empty()) {
        let name = format!("{stem}scaling-pg{}.svg", r.pg);
        let title = format!(
            "PostgreSQL {}: p50 per action vs provisioned projects (ms)",
            r.pg
        );
        let series = scaling(r);
        let svg = render(&Plot {
            title: &title,
            x_label: "provisioned projects",
            series: &series,
            hline: None,
        });
        save(&dir.join(&name), &svg)?;
        written.push((
            name,
            format!(
                "p50 per action vs provisioned projects, PostgreSQL {}",
                r.pg
            ),
        ));
    }
    if runs.iter().any(|r| !r.curve.is_empty()) {
        let name = format!("{stem}pool-sizing.svg");
        let series = sizing(runs);
        let label = format!("target p99 {TARGET_P99_MS} ms");
        let svg = render(&Plot {
            title: "Role switch p99 after a role change vs projects per login role (ms)",
            x_label: "projects served by one login role",
            series: &series,
            hline: Some((TARGET_P99_MS, &label)),
        });
        save(&dir.join(&name), &svg)?;
        written.push((name, "pool sizing curve".into()));
    }
    Ok(written)
}

fn save(path: &PathBuf, svg: &str) -> Result<(), String> {
    std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn scaling(r: &VersionRun) -> Vec<Series> {
    ALL.iter()
        .enumerate()
        .map(|(i, name)| Series {
            name: name.to_string(),
            points: r
                .rounds
                .iter()
                .map(|a| (a.scale, actions::p50(&a.steps, name)))
                .collect(),
            dashed: i >= 10,
            color: i,
        })
        .collect()
}

fn sizing(runs: &[VersionRun]) -> Vec<Series> {
    let mut out = Vec::new();
    for (j, r) in runs.iter().enumerate() {
        for (central, who) in [
            (false, "pool login role"),
            (true, "authenticator (central)"),
        ] {
            out.push(Series {
                name: format!("PG {}: {who}", r.pg),
                points: r
                    .curve
                    .iter()
                    .map(|p| {
                        (
                            p.projects,
                            if central {
                                p.central.after_change.p99()
                            } else {
                                p.pool.after_change.p99()
                            },
                        )
                    })
                    .collect(),
                dashed: central,
                color: j,
            });
        }
    }
    out
}
