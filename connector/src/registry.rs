//! Every read of the registry (`supabase_connector`), one function each,
//! rows as named structs. Writes are [`crate::plan::Change`]s, rendered in
//! `render`. The schema's name is [`names::REGISTRY_SCHEMA`]: queries here
//! say `{registry}` for it.

use crate::db::Conn;
use crate::domain::{Isolation, Lifecycle};
use crate::error::{Error, Result};
use crate::model::Principal;
use crate::names::{self, AccessClass, ProjectNames};
use crate::sql::{Param, Statement};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;
use uuid::Uuid;

/// A query of the registry, its schema named once.
pub(crate) struct Query(LazyLock<String>);

impl Query {
    const fn new(f: fn() -> String) -> Query {
        Query(LazyLock::new(f))
    }
    pub(crate) fn text(&self) -> &str {
        &self.0
    }
}

/// `text` with `{registry}` replaced by the registry schema's name.
pub(crate) fn registry_sql(text: &str) -> String {
    text.replace("{registry}", names::REGISTRY_SCHEMA)
}

macro_rules! query {
    ($name:ident, $text:literal) => {
        static $name: Query = Query::new(|| registry_sql($text));
    };
}

// A live lease, in every query here and in the bootstrap's functions
// (`pre_request`, `lease_role_create`): `revoked_at is null and expires_at
// > now()`.

/// `not_found` for a slug nobody provisioned.
pub fn unknown_project(names: &ProjectNames) -> Error {
    Error::not_found(format!(
        "project {:?} is not provisioned",
        names.slug.as_str()
    ))
}

query!(
    LIFECYCLE,
    "select state from {registry}.projects where slug = $1"
);
query!(
    LIFECYCLE_LOCKED,
    "select state from {registry}.projects where slug = $1 for update"
);

/// A project's state (`not_found` when it is not registered); `lock`: for
/// the rest of the transaction.
pub async fn lifecycle(conn: &Conn, names: &ProjectNames, lock: bool) -> Result<Lifecycle> {
    let q = if lock { &LIFECYCLE_LOCKED } else { &LIFECYCLE };
    let row = conn
        .query_opt(q.text(), &[&names.slug.as_str()])
        .await?
        .ok_or_else(|| unknown_project(names))?;
    Lifecycle::parse(row.get(0))
}

/// `conflict` unless the project is active.
pub async fn require_active(conn: &Conn, names: &ProjectNames) -> Result<()> {
    match lifecycle(conn, names, false).await? {
        Lifecycle::Active => Ok(()),
        Lifecycle::Archived => Err(archived(names)),
    }
}

fn archived(names: &ProjectNames) -> Error {
    Error::conflict(format!(
        "project {:?} is archived: upsert it to restore access",
        names.slug.as_str()
    ))
}

/// Which API serves a project.
#[derive(Debug, Clone)]
pub struct Api {
    pub isolation: Isolation,
    pub pool: String,
}

/// A principal's access to an active project, and the API serving it.
#[derive(Debug, Clone)]
pub struct ProjectAccess {
    pub api: Api,
    /// The highest class of its grants and teams, with the platform role
    /// that gives it; none without access.
    pub access: Option<(AccessClass, String)>,
}

query!(
    ACCESS,
    "select p.state, p.isolation, p.pool, a.access_class, a.platform_role
     from {registry}.projects p
     left join lateral {registry}.effective_access(p.slug, $2, $3) a on true
     where p.slug = $1"
);

/// A principal's effective access (`supabase_connector.effective_access`).
pub async fn access(
    conn: &Conn,
    names: &ProjectNames,
    principal: &Principal,
) -> Result<ProjectAccess> {
    let row = conn
        .query_opt(
            ACCESS.text(),
            &[&names.slug.as_str(), &principal.kind(), &principal.id()],
        )
        .await?
        .ok_or_else(|| unknown_project(names))?;
    if Lifecycle::parse(row.get(0))? != Lifecycle::Active {
        return Err(archived(names));
    }
    let class: Option<&str> = row.get(3);
    Ok(ProjectAccess {
        api: Api {
            isolation: Isolation::parse(row.get(1))?,
            pool: row.get(2),
        },
        access: class
            .and_then(AccessClass::parse)
            .map(|c| (c, row.get::<_, String>(4))),
    })
}

/// A lease as a renewal reads it.
#[derive(Debug, Clone)]
pub struct LeaseRecord {
    pub names: ProjectNames,
    pub principal: Principal,
    pub platform_role: String,
    pub class: AccessClass,
    /// It has a login role.
    pub login: bool,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
    pub api: Api,
}

query!(
    LEASE_LOCKED,
    "select l.project, l.principal_type, l.principal_id, l.platform_role, l.access_class,
            l.database and l.role_name is not null, l.issued_at, l.expires_at, l.revoked_at is not null,
            p.isolation, p.pool
     from {registry}.leases l join {registry}.projects p on p.slug = l.project
     where l.lease_id = $1 for update of l"
);

/// A lease, locked for the rest of the transaction (`not_found` when unknown).
pub async fn lease_for_update(conn: &Conn, lease_id: Uuid) -> Result<LeaseRecord> {
    let row = conn
        .query_opt(LEASE_LOCKED.text(), &[&lease_id])
        .await?
        .ok_or_else(|| Error::not_found(format!("lease {lease_id} does not exist")))?;
    Ok(LeaseRecord {
        names: ProjectNames::new(&names::Slug::parse(row.get(0))?),
        principal: Principal::from_row(row.get(1), row.get(2)),
        platform_role: row.get(3),
        class: AccessClass::parse(row.get(4))
            .ok_or_else(|| Error::internal("bad access class in the registry"))?,
        login: row.get(5),
        issued_at: row.get(6),
        expires_at: row.get(7),
        revoked: row.get(8),
        api: Api {
            isolation: Isolation::parse(row.get(9))?,
            pool: row.get(10),
        },
    })
}

query!(
    LEASE_STATE_LOCKED,
    "select project, revoked_at is not null from {registry}.leases where lease_id = $1 for update"
);

/// A lease's project and whether it is revoked, locked: the first statement
/// of a revocation, pipelined with it (an unknown id gives no row).
pub fn lease_state_for_update(lease_id: Uuid) -> Statement {
    Statement::with(LEASE_STATE_LOCKED.text(), vec![Param::Uuid(lease_id)])
}

query!(
    PROJECT_LEASES,
    "select lease_id from {registry}.leases where project = $1 and revoked_at is null
     order by lease_id for update"
);

/// Every unrevoked lease of a project, locked.
pub async fn project_leases(conn: &Conn, project: &str) -> Result<Vec<Uuid>> {
    ids(conn.query(PROJECT_LEASES.text(), &[&project]).await?)
}

query!(
    DOWNGRADED_LEASES,
    "select l.lease_id from {registry}.leases l
     where l.project = $1 and l.revoked_at is null
       and coalesce((select array_position(array['anon', 'authenticated', 'service_role'], a.access_class)
                     from {registry}.effective_access(l.project, l.principal_type, l.principal_id) a), 0)
           < array_position(array['anon', 'authenticated', 'service_role'], l.access_class)
     order by l.lease_id for update of l"
);

/// Every live lease of a project whose principal's effective class is now
/// below the lease's class, locked.
pub async fn downgraded_leases(conn: &Conn, project: &str) -> Result<Vec<Uuid>> {
    ids(conn.query(DOWNGRADED_LEASES.text(), &[&project]).await?)
}

query!(
    EXPIRED_LEASES,
    "select lease_id from {registry}.leases where revoked_at is null and expires_at <= now()
     order by lease_id limit $1 for update skip locked"
);
query!(
    EXPIRED_COUNT,
    "select count(*) from {registry}.leases where revoked_at is null and expires_at <= now()"
);

/// Up to `batch` expired, unrevoked leases, locked (others' locks skipped).
pub async fn expired_leases(conn: &Conn, batch: i64) -> Result<Vec<Uuid>> {
    ids(conn.query(EXPIRED_LEASES.text(), &[&batch]).await?)
}

/// How many expired leases wait to be reaped.
pub async fn expired_count(conn: &Conn) -> Result<i64> {
    Ok(conn.query_one(EXPIRED_COUNT.text(), &[]).await?.get(0))
}

fn ids(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Uuid>> {
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A team's grant as stored.
#[derive(Debug, Clone, Default)]
pub struct TeamRecord {
    pub platform_role: Option<String>,
    pub members: BTreeSet<Uuid>,
}

query!(
    TEAM_LOCKED,
    "select t.platform_role, array(select m.user_id from {registry}.team_members m
             where m.project = t.project and m.team_id = t.team_id)
     from {registry}.teams t where t.project = $1 and t.team_id = $2 for update"
);

/// A team's role and members, locked (empty when the team is new).
pub async fn team_for_update(conn: &Conn, project: &str, team_id: &str) -> Result<TeamRecord> {
    Ok(conn
        .query_opt(TEAM_LOCKED.text(), &[&project, &team_id])
        .await?
        .map(|r| TeamRecord {
            platform_role: Some(r.get(0)),
            members: r.get::<_, Vec<Uuid>>(1).into_iter().collect(),
        })
        .unwrap_or_default())
}

query!(
    GRANT_LOCKED,
    "select platform_role from {registry}.grants
     where project = $1 and principal_type = $2 and principal_id = $3 for update"
);

/// A principal's direct grant on a project, locked.
pub async fn grant_for_update(
    conn: &Conn,
    project: &str,
    principal: &Principal,
) -> Result<Option<String>> {
    Ok(conn
        .query_opt(
            GRANT_LOCKED.text(),
            &[&project, &principal.kind(), &principal.id()],
        )
        .await?
        .map(|r| r.get(0)))
}

query!(
    APPLIED_MIGRATIONS,
    "select version, checksum from {registry}.migrations where project = $1"
);

/// The migrations applied to a project: version → checksum.
pub async fn applied_migrations(conn: &Conn, project: &str) -> Result<BTreeMap<String, String>> {
    let rows = conn.query(APPLIED_MIGRATIONS.text(), &[&project]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

query!(
    PROJECT_SLUGS,
    "select slug from {registry}.projects order by slug"
);

/// Every registered project.
pub async fn projects(conn: &Conn) -> Result<Vec<ProjectNames>> {
    conn.query(PROJECT_SLUGS.text(), &[])
        .await?
        .iter()
        .map(|r| names::Slug::parse(r.get(0)).map(|s| ProjectNames::new(&s)))
        .collect()
}

query!(
    TENANT_CODE,
    "select kind || ' ' || object || ': ' || reason from {registry}.tenant_code_objects($1)"
);

/// The code a project's schema holds that `tenant_code = deny` refuses.
pub async fn tenant_code_objects(conn: &Conn, schema: &str) -> Result<Vec<String>> {
    let rows = conn.query(TENANT_CODE.text(), &[&schema]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

query!(
    DESCRIBE,
    "select json_build_object(
       'state', p.state, 'isolation', p.isolation, 'tenant_code', p.tenant_code, 'exposed', p.exposed,
       'created_at', p.created_at, 'updated_at', p.updated_at, 'pool', p.pool,
       'grants', coalesce((select json_agg(json_build_object(
           'principal', json_build_object('type', g.principal_type, 'id', g.principal_id),
           'platform_role', g.platform_role, 'access_class', g.access_class)
           order by g.principal_type, g.principal_id)
         from {registry}.grants g where g.project = p.slug), '[]'),
       'teams', coalesce((select json_agg(json_build_object(
           'team_id', t.team_id, 'platform_role', t.platform_role, 'access_class', t.access_class,
           'members', coalesce((select json_agg(m.user_id order by m.user_id) from {registry}.team_members m
                                where m.project = t.project and m.team_id = t.team_id), '[]'))
           order by t.team_id)
         from {registry}.teams t where t.project = p.slug), '[]'),
       'active_leases', (select count(*) from {registry}.leases l
                         where l.project = p.slug and l.revoked_at is null and l.expires_at > now()),
       'limits', p.limits,
       'usage', json_build_object(
         'size_bytes', (select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                        from pg_depend d join pg_class c on c.oid = d.objid
                        where d.refclassid = 'pg_namespace'::regclass and d.refobjid = to_regnamespace(p.schema_name)
                          and d.refobjsubid = 0 and d.classid = 'pg_class'::regclass
                          and c.relnamespace = d.refobjid and c.relkind in ('r', 'p', 'm')),
         'database_leases', (select count(*) from {registry}.leases l
                             where l.project = p.slug and l.revoked_at is null and l.database
                               and l.expires_at > now())),
       'migrations', coalesce((select json_agg(json_build_object(
           'version', m.version, 'name', m.name, 'checksum', m.checksum, 'applied_at', m.applied_at)
           order by length(m.version), m.version)
         from {registry}.migrations m where m.project = p.slug), '[]'),
       'listed', p.schema_name = any(string_to_array(coalesce({registry}.served_setting(
           case when p.isolation = 'isolated' then null
                when p.pool = 'central' then 'authenticator'
                else 'supabase_connector_pool_' || p.pool end, 'pgrst.db_schemas'), ''), ','))
     ) from {registry}.projects p where p.slug = $1"
);

/// What `describe_database_project` reports of the registry and the catalog.
pub async fn describe(conn: &Conn, names: &ProjectNames) -> Result<Value> {
    Ok(conn
        .query_opt(DESCRIBE.text(), &[&names.slug.as_str()])
        .await?
        .ok_or_else(|| unknown_project(names))?
        .get(0))
}

/// How many shared, served projects each candidate pool has, under the
/// placement lock (taken first, held to the end of the transaction: the
/// read, a statement of its own, sees every placement before it). The
/// counts are `pool_served`'s, kept by a trigger on `projects`: one row
/// per pool, however many projects.
pub async fn pool_load(conn: &Conn, candidates: &[&str]) -> Result<Vec<(String, i64)>> {
    let rows = conn
        .run_rows(&[
            Statement::with(
                "select pg_advisory_xact_lock($1)",
                vec![Param::Int8(crate::db::lock_key("placement"))],
            ),
            Statement::with(
                POOL_LOAD.text(),
                vec![Param::TextArray(
                    candidates.iter().map(|c| c.to_string()).collect(),
                )],
            ),
        ])
        .await?
        .pop()
        .unwrap_or_default();
    Ok(rows.iter().map(|r| (r.get(1), r.get(0))).collect())
}

query!(
    POOL_LOAD,
    "select coalesce(s.projects, 0)::int8, c.name
     from unnest($1::text[]) c(name) left join {registry}.pool_served s on s.pool = c.name"
);

/// An API pool's served list, hook, memberships, as `verify` checks them.
#[derive(Debug, Clone)]
pub struct PoolStatus {
    pub name: String,
    pub authenticator: String,
    pub role_exists: bool,
    pub served: Option<String>,
    pub computed: Option<String>,
    pub pre_request: Option<String>,
    /// Roles it holds that it should not.
    pub extra_memberships: Vec<String>,
}

query!(
    POOLS,
    "select po.name, po.authenticator, to_regrole(quote_ident(po.authenticator)) is not null,
            {registry}.served_setting(po.authenticator, 'pgrst.db_schemas'),
            {registry}.db_schemas_list_for(po.name, $1),
            {registry}.served_pre_request(po.authenticator),
            array(select g.rolname::text
                  from pg_auth_members a join pg_roles g on g.oid = a.roleid
                  where a.member = to_regrole(quote_ident(po.authenticator))
                    and g.rolname <> 'supabase_connector_pool_anon'
                    and (po.name <> 'central' or exists (select 1 from {registry}.project_role(g.rolname)))
                    and not exists (select 1 from {registry}.projects p
                                    where p.pool = po.name and p.state = 'active' and p.exposed
                                      and p.isolation = 'shared'
                                      and g.rolname in (p.schema_name || '_service_role',
                                                        p.schema_name || '_authenticated', p.schema_name || '_anon'))
                  order by 1)
     from (select 'central' as name, 'authenticator' as authenticator
           union all select name, authenticator from {registry}.pools) po
     order by po.name = 'central' desc, po.name"
);

/// Every API pool (`central` first) as `verify` checks it.
pub async fn pools(conn: &Conn, base_schemas: &[String]) -> Result<Vec<PoolStatus>> {
    let rows = conn.query(POOLS.text(), &[&base_schemas]).await?;
    Ok(rows
        .iter()
        .map(|r| PoolStatus {
            name: r.get(0),
            authenticator: r.get(1),
            role_exists: r.get(2),
            served: r.get(3),
            computed: r.get(4),
            pre_request: r.get(5),
            extra_memberships: r.get(6),
        })
        .collect())
}

/// What `verify` reads beyond the project state: grants to roles outside
/// the project, SECURITY DEFINER functions, lease roles out of step with
/// the registry, the live lease roles' limits, the schema's size.
#[derive(Debug, Clone)]
pub struct ProjectExtras {
    /// `{kind, object, grantee, privilege}` of each foreign grant.
    pub foreign_grants: Vec<Value>,
    pub security_definers: Vec<String>,
    pub functions: i64,
    /// Lease-shaped roles among the class roles' members with no live lease.
    pub orphan_lease_roles: Vec<String>,
    /// Live leases whose login role is missing.
    pub leases_without_role: Vec<Uuid>,
    /// `{role, class, connection_limit, settings}` of each live lease role.
    pub lease_roles: Vec<Value>,
    pub size_bytes: i64,
}

query!(
    EXTRAS,
    "-- the schema's objects through their recorded dependency on it (indexed)
     with members as (
       select d.classid, d.objid, d.refobjid as nsp from pg_depend d
       where d.refclassid = 'pg_namespace'::regclass and d.refobjid = to_regnamespace($1) and d.refobjsubid = 0
     ), schema_procs as (
       select p.* from members m join pg_proc p on p.oid = m.objid
       where m.classid = 'pg_proc'::regclass and p.pronamespace = m.nsp
     ), schema_rels as (
       select c.* from members m join pg_class c on c.oid = m.objid
       where m.classid = 'pg_class'::regclass and c.relnamespace = m.nsp
     )
     select
       coalesce((select json_agg(json_build_object('kind', kind, 'object', object, 'grantee', grantee, 'privilege', privilege))
                 from {registry}.foreign_grants($1)), '[]'),
       array(select p.oid::regprocedure::text from schema_procs p where p.prosecdef order by 1),
       (select count(*) from schema_procs),
       -- Every lookup below goes by key, one row at a time (scalar
       -- subqueries and lateral `offset 0`): joins here become hash joins
       -- over every role or lease when a generic plan's statistics are off.
       array(select cm.rolname
             -- the class roles' members
             from (select distinct (select rolname::text from pg_roles where oid = m.member) as rolname
                   from unnest($2::text[]) c(name)
                   cross join lateral (select a.member from pg_auth_members a
                                       where a.roleid = to_regrole(quote_ident(c.name)) offset 0) m) cm
             where cm.rolname ~ '^lease_[0-9a-f]{32}(_anon)?$'
               -- a lease role's name holds its lease's id
               and (select count(*) from {registry}.leases l
                    where l.lease_id = substr(cm.rolname, 7, 32)::uuid and l.revoked_at is null
                      and cm.rolname in (l.role_name, l.anon_role_name)) = 0
             order by 1),
       array(select l.lease_id from {registry}.leases l
             where l.project = $3 and l.revoked_at is null and l.role_name is not null
               and to_regrole(quote_ident(l.role_name)) is null
             order by 1),
       coalesce((select json_agg(json_build_object('role', r.rolname, 'class', l.access_class,
                          'connection_limit', r.rolconnlimit,
                          'settings', coalesce((select s.setconfig from pg_db_role_setting s
                                                where s.setrole = r.oid and s.setdatabase = 0), '{}')) order by r.rolname)
                 from {registry}.leases l
                 cross join lateral (select r.oid, r.rolname, r.rolconnlimit from pg_roles r
                                     where r.rolname = l.role_name offset 0) r
                 where l.project = $3 and l.revoked_at is null), '[]'),
       (select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint from schema_rels c
        where c.relkind in ('r', 'p', 'm'))"
);

/// What `verify` reads of one project beyond its state.
pub async fn project_extras(conn: &Conn, names: &ProjectNames) -> Result<ProjectExtras> {
    let classes = vec![
        names.service_role.clone(),
        names.authenticated.clone(),
        names.anon.clone(),
    ];
    let row = conn
        .query_one(
            EXTRAS.text(),
            &[&names.schema, &classes, &names.slug.as_str()],
        )
        .await?;
    let list = |v: Value| v.as_array().cloned().unwrap_or_default();
    Ok(ProjectExtras {
        foreign_grants: list(row.get(0)),
        security_definers: row.get(1),
        functions: row.get(2),
        orphan_lease_roles: row.get(3),
        leases_without_role: row.get(4),
        lease_roles: list(row.get(5)),
        size_bytes: row.get(6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_the_registry_once() {
        assert!(ACCESS.text().contains("supabase_connector.projects"));
        assert!(!DESCRIBE.text().contains("{registry}"));
    }
}
