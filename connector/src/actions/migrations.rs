//! `apply_database_migrations`: pending migrations in version order, each in
//! its own transaction, over a session logged in as a short-lived
//! service-class lease (so `SET ROLE`/`RESET ROLE` cannot reach beyond the
//! project), with `search_path` set to the project schema.

use super::{audit, context};
use crate::apply::{checksum, Audit};
use crate::db::{Conn, Lock};
use crate::error::{Error, ErrorCode, Result};
use crate::lease::{self, LeaseRequest};
use crate::model::Principal;
use crate::names::{ident, AccessClass, ProjectNames};
use crate::plan::Change;
use crate::registry;
use crate::render::render_all;
use crate::requests::{ApplyMigrations, MigrationFile};
use crate::sqlscan;
use crate::Connector;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ACTION: &str = "apply_database_migrations";
/// Lifetime of the lease a migration run logs in with.
const MIGRATION_LEASE_SECONDS: u64 = 900;

/// One migration file.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: String,
    pub name: String,
    pub sql: String,
    pub checksum: String,
}

/// Order and check the files before anything touches the database.
pub fn check(files: &[MigrationFile]) -> Result<Vec<Migration>> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for (i, m) in files.iter().enumerate() {
        let (version, name, sql) = (m.version.clone(), m.name.clone(), m.sql.clone());
        if let Some(prev) = seen.insert(version.clone(), i) {
            return Err(Error::invalid_at(
                &format!("/migrations/{i}/version"),
                format!("version {version} repeats /migrations/{prev}"),
            ));
        }
        if sql.contains('\0') {
            return Err(Error::invalid_at(
                &format!("/migrations/{i}/sql"),
                "contains a NUL byte",
            ));
        }
        if let Some(s) = sqlscan::statements(&sql)
            .into_iter()
            .find(sqlscan::is_transaction_control)
        {
            let (statement, line) = sqlscan::locate(&sql, s.start);
            return Err(Error::invalid_at(
                &format!("/migrations/{i}/sql"),
                format!("{version}_{name}.sql: statement {statement} (line {line}) is {}: each migration already runs in its own transaction", s.keyword),
            ));
        }
        out.push(Migration {
            checksum: checksum(&sql),
            version,
            name,
            sql,
        });
    }
    // numeric order for digit strings of different lengths
    out.sort_by(|a, b| (a.version.len(), &a.version).cmp(&(b.version.len(), &b.version)));
    Ok(out)
}

/// Which files are pending; a changed checksum of an applied one is a conflict.
async fn pending(
    conn: &Conn,
    names: &ProjectNames,
    files: &[Migration],
) -> Result<(Vec<Migration>, Vec<Value>)> {
    let applied = registry::applied_migrations(conn, names.slug.as_str()).await?;
    let mut todo = Vec::new();
    let mut skipped = Vec::new();
    for m in files {
        match applied.get(&m.version) {
            Some(sum) if sum != &m.checksum => {
                return Err(Error::conflict(format!(
                    "migration {}_{} was applied with another checksum: applied migrations cannot change; add a new one",
                    m.version, m.name
                ))
                .with_details(json!({"version": m.version, "name": m.name, "applied_checksum": sum, "checksum": m.checksum})));
            }
            Some(_) => skipped.push(json!({"version": m.version, "name": m.name})),
            None => todo.push(m.clone()),
        }
    }
    Ok((todo, skipped))
}

/// Apply the pending migrations. The result has one shape whatever
/// happened: `applied` (by this call), `skipped` (applied before), `pending`
/// (what a run would apply: empty after a run, the list with `dry_run`) and
/// `dry_run`.
pub async fn apply(c: &Connector, req: &ApplyMigrations, params: &Value) -> Result<Value> {
    let names = ProjectNames::new(&req.project);
    let files = check(&req.migrations)?;
    let db = c.db().await?;
    let conn = db.conn().await?;
    // One run per project at a time: a session-level lock on the project
    // key, held across the per-migration transactions.
    let key = format!("project:{}", names.schema);
    conn.hold_session_lock(&key).await?;
    let result = run(c, &conn, &names, req, &files, params).await;
    conn.release_session_lock(&key).await?;
    result
}

async fn run(
    c: &Connector,
    conn: &Conn,
    names: &ProjectNames,
    req: &ApplyMigrations,
    files: &[Migration],
    params: &Value,
) -> Result<Value> {
    let db = c.db().await?;
    let ctx = context(c, db);
    let slug = names.slug.as_str();
    registry::require_active(conn, names).await?;
    let (todo, skipped) = pending(conn, names, files).await?;
    if req.dry_run || todo.is_empty() {
        let out = json!({"project": slug, "applied": [], "skipped": skipped, "dry_run": req.dry_run,
                         "pending": todo.iter().map(|m| json!({"version": m.version, "name": m.name})).collect::<Vec<_>>()});
        if !req.dry_run {
            let audit_row = Audit {
                action: ACTION,
                project: Some(slug),
                lease_id: None,
                changed: false,
                params,
                outcome: out.clone(),
            };
            audit(conn, audit_row).await?;
        }
        return Ok(out);
    }
    // A short-lived service-class lease to log in with.
    let (planned, user, password) = migration_lease(conn, &ctx, names).await?;
    let outcome = run_pending(c, conn, names, &todo, &user, &password).await;

    // The lease goes away whatever happened; the audit row goes with it.
    let (applied, failure) = match outcome {
        Ok(done) => done,
        Err(e) => {
            let tx = conn.transaction(Lock::None);
            lease::revoke_now(&tx, &ctx, vec![planned.lease_id], "migration run finished").await?;
            tx.commit_without_audit().await?;
            return Err(e);
        }
    };
    let mut out = json!({"project": slug, "applied": applied, "skipped": skipped, "pending": [], "dry_run": false});
    if let Some(f) = &failure {
        out["failed"] = f.details.clone();
    }
    let tx = conn.transaction(Lock::None);
    let revoke = render_all(
        &[lease::revoke(
            vec![planned.lease_id],
            "migration run finished",
        )],
        &ctx,
    );
    let audit_row = Audit {
        action: ACTION,
        project: Some(slug),
        lease_id: Some(planned.lease_id),
        changed: !applied.is_empty(),
        params,
        outcome: out.clone(),
    };
    tx.commit(revoke, audit_row).await?;
    match failure {
        Some(mut e) => {
            if let Value::Object(d) = &mut e.details {
                d.insert("applied".into(), out["applied"].clone());
            }
            Err(e)
        }
        None => Ok(out),
    }
}

/// Issue (and commit) the short-lived service-class lease a run logs in
/// with: the lease, its login role and password.
async fn migration_lease(
    conn: &Conn,
    ctx: &crate::plan::PlanContext<'_>,
    names: &ProjectNames,
) -> Result<(lease::PlannedLease, String, crate::config::Secret)> {
    let planned = lease::plan_issue(
        LeaseRequest {
            names: names.clone(),
            principal: Principal::Project,
            platform_role: "project_owner".into(),
            class: AccessClass::ServiceRole,
            ttl_seconds: MIGRATION_LEASE_SECONDS,
            database: true,
            api_url: None,
        },
        chrono::Utc::now(),
    );
    let tx = conn.transaction(Lock::None);
    tx.run(&render_all(&planned.changes, ctx)).await?;
    tx.commit_without_audit().await?;
    let password = planned
        .password()
        .cloned()
        .ok_or_else(|| Error::internal("migration lease without password"))?;
    let user = planned
        .login_role
        .clone()
        .ok_or_else(|| Error::internal("migration lease without login role"))?;
    Ok((planned, user, password))
}

/// Run each pending migration in its own transaction on a lease session;
/// record each in the registry once it commits. Stops at the first failure.
async fn run_pending(
    c: &Connector,
    conn: &Conn,
    names: &ProjectNames,
    todo: &[Migration],
    user: &str,
    password: &crate::config::Secret,
) -> Result<(Vec<Value>, Option<Error>)> {
    let db = c.db().await?;
    let session = db.connect_as(user, password).await?;
    // A migration waiting for a lock held elsewhere gives up after
    // database.lock_timeout_ms, as actions do, instead of hanging while the
    // project's lock is held.
    session
        .batch_execute(&format!(
            "SET search_path = {}; SET ROLE {}; SET lock_timeout = {}",
            ident(&names.schema),
            ident(&names.owner),
            c.config.database.lock_timeout_ms
        ))
        .await?;
    let mut applied = Vec::new();
    for m in todo {
        let span = tracing::info_span!("migration", version = %m.version, name = %m.name);
        let _enter = span.enter();
        // One statement at a time, so that an error PostgreSQL reports
        // without a position (a constraint violation, a permission denied)
        // still names its statement.
        let result = async {
            session
                .batch_execute("BEGIN")
                .await
                .map_err(|e| (None, e))?;
            for s in sqlscan::statements(&m.sql) {
                session
                    .batch_execute(&m.sql[s.start..s.end])
                    .await
                    .map_err(|e| (Some(s.start), e))?;
            }
            session.batch_execute("COMMIT").await.map_err(|e| (None, e))
        }
        .await;
        if let Err((start, e)) = result {
            let _ = session.batch_execute("ROLLBACK").await;
            return Ok((applied, Some(migration_error(m, start, &e))));
        }
        let record = Change::RecordMigration {
            project: names.slug.as_str().into(),
            version: m.version.clone(),
            name: m.name.clone(),
            checksum: m.checksum.clone(),
        };
        conn.run(&render_all(&[record], &context(c, db))).await?;
        applied.push(json!({"version": m.version, "name": m.name, "checksum": m.checksum}));
    }
    Ok((applied, None))
}

/// `migration_failed`, naming the file, the statement and PostgreSQL's message.
/// `start`: byte offset in the file of the statement that failed (the text
/// sent), `None` for the transaction's own BEGIN/COMMIT.
fn migration_error(m: &Migration, start: Option<usize>, e: &tokio_postgres::Error) -> Error {
    let file = format!("{}_{}.sql", m.version, m.name);
    let Some(db) = e.as_db_error() else {
        return Error::database(format!("{file}: connection lost while applying: {e}"));
    };
    let (statement, line) = match (db.position(), start) {
        (Some(tokio_postgres::error::ErrorPosition::Original(pos)), Some(start)) => {
            // PostgreSQL counts characters from 1, in the text it was sent
            let byte = m.sql[start..]
                .char_indices()
                .nth((*pos as usize).saturating_sub(1))
                .map(|(b, _)| start + b)
                .unwrap_or(start);
            let (s, l) = sqlscan::locate(&m.sql, byte);
            (Some(s), Some(l))
        }
        // no position: the statement's first token
        (_, Some(start)) => {
            let (s, l) = sqlscan::locate(&m.sql, sqlscan::skip_blank(&m.sql, start));
            (Some(s), Some(l))
        }
        _ => (None, None),
    };
    let where_ = statement
        .map(|s| format!(" (statement {s}, line {})", line.unwrap_or(0)))
        .unwrap_or_default();
    Error::new(
        ErrorCode::MigrationFailed,
        format!("{file}{where_}: {}", db.message()),
    )
    .with_details(json!({
        "file": file,
        "version": m.version,
        "name": m.name,
        "statement": statement,
        "line": line,
        "sqlstate": db.code().code(),
        "message": db.message(),
        "detail": db.detail(),
        "hint": db.hint(),
    }))
}
