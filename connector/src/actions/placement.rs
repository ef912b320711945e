//! Placing a shared project on an API pool: the configured pool with the
//! most room (ties by name), where it then stays; `central` while no pool
//! is configured. Placements are serialized by one advisory lock, held to
//! the end of the transaction, so concurrent upserts never overfill a pool.

use crate::config::{default_max_projects, Config};
use crate::db::{lock_key, Conn};
use crate::error::{Error, Result};
use crate::names::CENTRAL_POOL;
use crate::sql::{Param, ServerInfo, Statement};
use serde_json::json;

/// The pool a project goes to. `requested`: the upsert's `pool` parameter;
/// `stored`: where it is now (none for a new project).
pub(crate) async fn choose(
    conn: &Conn,
    config: &Config,
    server: &ServerInfo,
    requested: Option<&str>,
    stored: Option<&str>,
) -> Result<String> {
    let pools = &config.api.pools;
    let capacity = |name: &str| {
        pools.iter().find(|p| p.name == name).map(|p| {
            p.max_projects
                .unwrap_or_else(|| default_max_projects(server.version_num))
        })
    };
    if let Some(name) = requested {
        if name != CENTRAL_POOL && capacity(name).is_none() {
            return Err(Error::invalid_at(
                "/pool",
                format!(
                    "no API pool {name:?} is configured (api.pools has {})",
                    pools
                        .iter()
                        .map(|p| p.name.as_str())
                        .chain([CENTRAL_POOL])
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if Some(name) == stored || name == CENTRAL_POOL {
            return Ok(name.to_string());
        }
    } else if let Some(stored) = stored {
        return Ok(stored.to_string());
    } else if pools.is_empty() {
        return Ok(CENTRAL_POOL.to_string());
    }
    let candidates: Vec<&str> = match requested {
        Some(name) => vec![name],
        None => pools.iter().map(|p| p.name.as_str()).collect(),
    };
    // The lock first, the counts in a statement of their own: its snapshot
    // is taken once the lock is held, so it sees every placement before it.
    let rows = conn
        .run_rows(&[
            Statement::with(
                "select pg_advisory_xact_lock($1)",
                vec![Param::Int8(lock_key("placement"))],
            ),
            Statement::with(
                "select coalesce((select count(*) from supabase_connector.projects p
                         where p.pool = c.name and p.state = 'active' and p.exposed and p.isolation = 'shared'), 0), c.name
                 from unnest($1::text[]) c(name)",
                vec![Param::TextArray(candidates.iter().map(|c| c.to_string()).collect())],
            ),
        ])
        .await?
        .pop()
        .unwrap_or_default();
    let mut best: Option<(i64, &str)> = None;
    let mut load = serde_json::Map::new();
    for row in &rows {
        let served: i64 = row.get(0);
        let name: String = row.get(1);
        let Some(name) = candidates.iter().copied().find(|c| *c == name) else {
            continue;
        };
        let max = i64::from(capacity(name).unwrap_or(0));
        load.insert(
            name.into(),
            json!({"projects": served, "max_projects": max}),
        );
        let room = max - served;
        if room > 0 && best.is_none_or(|(r, n)| room > r || (room == r && name < n)) {
            best = Some((room, name));
        }
    }
    match best {
        Some((_, name)) => Ok(name.to_string()),
        None => Err(Error::conflict(match requested {
            Some(name) => format!("API pool {name:?} is full (its max_projects in api.pools)"),
            None => "every API pool is full: add a pool or raise max_projects in api.pools".into(),
        })
        .with_details(json!({"setting": "api.pools", "pools": load}))),
    }
}
