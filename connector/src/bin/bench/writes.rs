//! Rows written to `pg_authid` and `pg_auth_members` by an action: what
//! resets every session's cached role memberships (PostgreSQL registers its
//! membership cache on those catalogs' syscaches).
//!
//! Method: before, a transaction takes an xid `x0` (`txid_current()`) and
//! counts both catalogs; after, the rows whose `xmin` is above `x0` are the
//! row versions the action wrote (inserted, or rewritten by an update), and
//! `count_before - (count_after - new)` the rows it removed (deleted, or
//! replaced by an update). The run is sequential, so nothing else writes
//! meanwhile; on the stack's fresh cluster the xid epoch is 0, so the
//! 32-bit `xmin` compares with `x0` directly. [`method_check`] verifies it
//! on a known `CREATE ROLE … ; GRANT` and `DROP ROLE`.

use super::setup::{pg_err, Bench, R};

/// Catalog state before an action.
pub struct Snapshot {
    x0: i64,
    authid: i64,
    members: i64,
}

/// Rows written over `calls` calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct Writes {
    pub calls: usize,
    pub authid_new: i64,
    pub authid_gone: i64,
    pub members_new: i64,
    pub members_gone: i64,
}

impl Writes {
    /// Rows written or removed in both catalogs, per call.
    pub fn per_call(&self) -> f64 {
        (self.authid_new + self.authid_gone + self.members_new + self.members_gone) as f64
            / self.calls.max(1) as f64
    }

    /// `+new / −gone` per call, for one catalog.
    pub fn cell(new: i64, gone: i64, calls: usize) -> String {
        let c = calls.max(1) as f64;
        format!("+{} / −{}", trim(new as f64 / c), trim(gone as f64 / c))
    }
}

fn trim(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

impl Bench {
    pub async fn snapshot(&self) -> R<Snapshot> {
        let row = self
            .admin
            .query_one(
                "select txid_current() % 4294967296, (select count(*) from pg_authid),
                        (select count(*) from pg_auth_members)",
                &[],
            )
            .await
            .map_err(|e| format!("catalog snapshot: {}", pg_err(e)))?;
        Ok(Snapshot {
            x0: row.get(0),
            authid: row.get(1),
            members: row.get(2),
        })
    }

    pub async fn writes_since(&self, s: &Snapshot, calls: usize) -> R<Writes> {
        let row = self
            .admin
            .query_one(
                "select (select count(*) from pg_authid where xmin::text::bigint > $1),
                        (select count(*) from pg_authid),
                        (select count(*) from pg_auth_members where xmin::text::bigint > $1),
                        (select count(*) from pg_auth_members)",
                &[&s.x0],
            )
            .await
            .map_err(|e| format!("catalog writes: {}", pg_err(e)))?;
        let (authid_new, authid, members_new, members): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        Ok(Writes {
            calls,
            authid_new,
            authid_gone: s.authid - (authid - authid_new),
            members_new,
            members_gone: s.members - (members - members_new),
        })
    }
}

/// The method on known statements: `CREATE ROLE x; GRANT anon TO x` must
/// read `+1 / −0` in both catalogs, `DROP ROLE x` `+0 / −1`.
pub async fn method_check(b: &Bench) -> R<(Writes, Writes)> {
    let s = b.snapshot().await?;
    b.admin
        .batch_execute("create role bench_probe; grant anon to bench_probe")
        .await
        .map_err(|e| format!("method check: {}", pg_err(e)))?;
    let created = b.writes_since(&s, 1).await?;
    let s = b.snapshot().await?;
    b.admin
        .batch_execute("drop role bench_probe")
        .await
        .map_err(|e| format!("method check: {}", pg_err(e)))?;
    let dropped = b.writes_since(&s, 1).await?;
    Ok((created, dropped))
}

/// Whether the method check read what it must.
pub fn method_ok(created: &Writes, dropped: &Writes) -> bool {
    (
        created.authid_new,
        created.authid_gone,
        created.members_new,
        created.members_gone,
    ) == (1, 0, 1, 0)
        && (
            dropped.authid_new,
            dropped.authid_gone,
            dropped.members_new,
            dropped.members_gone,
        ) == (0, 1, 0, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_totals() {
        let w = Writes {
            calls: 4,
            authid_new: 4,
            authid_gone: 0,
            members_new: 2,
            members_gone: 0,
        };
        assert_eq!(
            Writes::cell(w.authid_new, w.authid_gone, w.calls),
            "+1 / −0"
        );
        assert_eq!(
            Writes::cell(w.members_new, w.members_gone, w.calls),
            "+0.50 / −0"
        );
        assert_eq!(w.per_call(), 1.5);
    }
}
