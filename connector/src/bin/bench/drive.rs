//! Calling the connector: one action, timed sequences with their statement
//! and round-trip counts, and concurrent callers.

use super::sample::{ms_since, Sample};
use super::setup::{Bench, R};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use supabase_connector::Connector;

/// Leases measured late in a round (renew, revoke) outlive everything
/// before them.
pub const LONG_TTL: u64 = 4 * 3600;

/// Run one action; a failure is a line naming it.
pub async fn call(c: &Connector, action: &str, params: Value) -> R<Value> {
    c.execute(action, params)
        .await
        .map_err(|e| format!("{action} failed: {} {}", e.code.as_str(), e.message))
}

pub fn service() -> Value {
    json!({"type": "service", "id": "project"})
}

pub fn lease_id(v: &Value) -> R<String> {
    v["lease"]["lease_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "no lease in the action's result".to_string())
}

impl Bench {
    pub async fn run(&self, action: &str, params: Value) -> R<Value> {
        call(&self.connector, action, params).await
    }

    /// `(statements, round_trips)` sent by the connector so far.
    pub async fn totals(&self) -> R<(u64, u64)> {
        let db = self.connector.database().await.map_err(|e| e.message)?;
        Ok(db.totals.get())
    }

    /// `n` sequential calls of `action`, the i-th with `params(i)` (built
    /// before its clock starts); the samples and each call's result.
    pub async fn timed(
        &self,
        n: usize,
        action: &str,
        params: impl Fn(usize) -> Value,
    ) -> R<(Sample, Vec<Value>)> {
        let (st0, rt0) = self.totals().await?;
        let mut s = Sample::default();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let p = params(i);
            let t = Instant::now();
            let v = self.run(action, p).await?;
            s.push_since(t);
            out.push(v);
        }
        let (st1, rt1) = self.totals().await?;
        s.statements = st1 - st0;
        s.round_trips = rt1 - rt0;
        Ok((s, out))
    }

    /// Like [`Bench::timed`], keeping each result's lease id.
    pub async fn timed_leases(
        &self,
        n: usize,
        action: &str,
        params: impl Fn(usize) -> Value,
    ) -> R<(Sample, Vec<String>)> {
        let (s, out) = self.timed(n, action, params).await?;
        let ids = out.iter().map(lease_id).collect::<R<Vec<_>>>()?;
        Ok((s, ids))
    }

    /// `n` sequential runs of one SQL statement on a pooled connection of
    /// the connector (counted like the connector's own).
    pub async fn timed_sql(
        &self,
        n: usize,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> R<Sample> {
        let db = self.connector.database().await.map_err(|e| e.message)?;
        let (st0, rt0) = db.totals.get();
        let mut s = Sample::default();
        for _ in 0..n {
            let t = Instant::now();
            let conn = db.conn().await.map_err(|e| e.message)?;
            conn.query(sql, params)
                .await
                .map_err(|e| format!("{sql}: {}", e.message))?;
            s.push_since(t);
        }
        let (st1, rt1) = db.totals.get();
        s.statements = st1 - st0;
        s.round_trips = rt1 - rt0;
        Ok(s)
    }
}

/// Run `f(i)` for `i` in `0..n`, spread over `callers` concurrent tasks;
/// each call's latency and result, in call order of each task.
pub async fn spread<F, Fut>(callers: usize, n: usize, f: F) -> R<(Sample, Vec<Value>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R<Value>> + Send,
{
    let f = Arc::new(f);
    let mut handles = Vec::new();
    for t in 0..callers.max(1) {
        let f = f.clone();
        let step = callers.max(1);
        handles.push(tokio::spawn(async move {
            let (mut ms, mut out) = (Vec::new(), Vec::new());
            for i in (t..n).step_by(step) {
                let started = Instant::now();
                out.push(f(i).await?);
                ms.push(ms_since(started));
            }
            Ok::<_, String>((ms, out))
        }));
    }
    let mut all = Sample::default();
    let mut results = Vec::with_capacity(n);
    for h in handles {
        let (ms, out) = h.await.map_err(|e| format!("a caller stopped: {e}"))??;
        all.ms.extend(ms);
        results.extend(out);
    }
    Ok((all, results))
}

/// `action` with `params(i)` for `i` in `0..n` over `callers` callers of
/// the connector: (calls per second, latencies, the lease ids issued).
/// Only the ids are kept: results hold tokens and would weigh on the
/// memory figure.
pub async fn concurrently(
    c: &Arc<Connector>,
    callers: usize,
    n: usize,
    action: &'static str,
    params: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> R<(f64, Sample, Vec<String>)> {
    let c = c.clone();
    let params = Arc::new(params);
    let started = Instant::now();
    let (s, out) = spread(callers, n, move |i| {
        let (c, params) = (c.clone(), params.clone());
        async move {
            let v = call(&c, action, params(i)).await?;
            Ok(v["lease"]["lease_id"].clone())
        }
    })
    .await?;
    let ids = out
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    Ok((n as f64 / started.elapsed().as_secs_f64(), s, ids))
}
