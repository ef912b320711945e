//! Placing a shared project on an API pool: the configured pool with the
//! most room (ties by name), where it then stays; `central` while no pool
//! is configured. Placements are serialized by one advisory lock, held to
//! the end of the transaction, so concurrent upserts never overfill a pool.

use crate::config::{default_max_projects, Config};
use crate::db::Conn;
use crate::error::{Error, Result};
use crate::names::CENTRAL_POOL;
use crate::sql::ServerInfo;
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
    let load = crate::registry::pool_load(conn, &candidates).await?;
    let mut best: Option<(i64, &str)> = None;
    let mut report = serde_json::Map::new();
    for (name, served) in &load {
        let Some(name) = candidates.iter().copied().find(|c| c == name) else {
            continue;
        };
        let max = i64::from(capacity(name).unwrap_or(0));
        report.insert(
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
        .with_details(json!({"setting": "api.pools", "pools": report}))),
    }
}
