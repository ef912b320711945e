//! Actual state, read from the catalogs and the registry in as few queries
//! as possible (one per question), aware of the server version.

use crate::db::Conn;
use crate::error::Result;
use crate::names::ProjectNames;
use crate::sql::ServerInfo;
use crate::state::{PoolState, ProjectState};
use serde_json::Value;

/// The pools a state read looks at: `stored_pool`, the project's own (its
/// login role, `auth`), and `wanted_pool`, the one named by the parameter
/// `pool` (else its own). `$1` is the slug.
fn pool_ctes(pool: &str) -> String {
    format!(
        "stored_pool as (
  select case when p.pool = 'central' then 'authenticator' else 'supabase_connector_pool_' || p.pool end as auth
  from (select coalesce((select pool from supabase_connector.projects where slug = $1::text), 'central') as pool) p
), wanted_pool as (
  select x.name, case when x.name = 'central' then 'authenticator' else 'supabase_connector_pool_' || x.name end as auth
  from (select coalesce({pool}::text, (select pool from supabase_connector.projects where slug = $1::text), 'central') as name) x
)"
    )
}

/// Another slug already mapped to the schema (`$3`) of this one (`$1`).
const SCHEMA_TAKEN_BY: &str =
    "(select slug from supabase_connector.projects where schema_name = $3::text and slug <> $1::text)";

/// The exposure settings the last `apply_exposure` recorded.
const EXPOSURE_SETTINGS: &str = "(select value from supabase_connector.meta where key = 'exposure')";

/// The served login role runs the connector's `pre_request`.
const PRE_REQUEST_SET: &str = "coalesce(supabase_connector.served_pre_request((select auth from stored_pool))
                              = 'supabase_connector_api.pre_request', false)";

/// The schema (`$3`) is in the served login role's `pgrst.db_schemas`.
const LISTED: &str = "$3::text = any(string_to_array(coalesce(
      supabase_connector.served_setting((select auth from stored_pool), 'pgrst.db_schemas'), ''), ','))";

/// A configured pool's state as JSON, from `q` (`name`, `auth`: its login role).
const POOL_STATE: &str = "json_build_object(
      'name', q.name,
      'registry', (select row_to_json(po) from (select url, max_projects from supabase_connector.pools where name = q.name) po),
      'role', (select json_build_object(
          'name', rolname, 'login', rolcanlogin, 'inherit', rolinherit, 'superuser', rolsuper,
          'createrole', rolcreaterole, 'createdb', rolcreatedb, 'replication', rolreplication,
          'bypassrls', rolbypassrls) from pg_roles where rolname = q.auth),
      'statement_timeout', supabase_connector.served_setting(q.auth, 'statement_timeout'),
      'anon_member', exists (select 1 from pg_auth_members a where a.roleid = to_regrole('supabase_connector_pool_anon')
                             and a.member = to_regrole(quote_ident(q.auth))))";

/// The project-state query. `$1` slug, `$2` the project's role names, `$3`
/// schema, `$4` owner, `$5` authenticated class, `$6` anon class, `$7` the
/// pool to read (null: the project's own).
fn project_state_sql(server: &ServerInfo) -> String {
    let membership_options = if server.pg16_grants() {
        ", 'inherit', am.inherit_option, 'set', am.set_option"
    } else {
        ""
    };
    let pools = pool_ctes("$7");
    format!(
        r#"
with {pools}, r as (
  select oid, rolname, rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls
  from pg_roles where rolname = any($2::text[])
), nsp as (
  select oid, nspname, nspowner, nspacl from pg_namespace where nspname = $3::text
), own as (
  select oid from r where rolname = $4::text
), rels as (
  -- the schema's relations through their recorded dependency on it
  -- (indexed), not a scan of pg_class
  select n.nspname, c.oid, c.relname, c.relkind, c.relowner, c.relacl, c.relrowsecurity, c.reloptions
  from nsp n
  join pg_depend d on d.refclassid = 'pg_namespace'::regclass and d.refobjid = n.oid
                  and d.refobjsubid = 0 and d.classid = 'pg_class'::regclass
  join pg_class c on c.oid = d.objid and c.relnamespace = n.oid
), procs as (
  select p.oid, p.proowner, p.proacl
  from nsp n
  join pg_depend d on d.refclassid = 'pg_namespace'::regclass and d.refobjid = n.oid
                  and d.refobjsubid = 0 and d.classid = 'pg_proc'::regclass
  join pg_proc p on p.oid = d.objid and p.pronamespace = n.oid
), objects as (
  select 'TABLE' as kind, format('%I.%I', c.nspname, c.relname) as object,
         coalesce(c.relacl, acldefault('r', c.relowner)) as acl
  from rels c where c.relkind in ('r', 'p', 'v', 'f')
  union all
  select 'SEQUENCE', format('%I.%I', c.nspname, c.relname), coalesce(c.relacl, acldefault('s', c.relowner))
  from rels c where c.relkind = 'S'
  union all
  select 'ROUTINE', p.oid::regprocedure::text, coalesce(p.proacl, acldefault('f', p.proowner))
  from procs p
), wanted(kind, role, privileges) as (
  values ('TABLE', $5::text, array['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
         ('TABLE', $6::text, array['SELECT']),
         ('SEQUENCE', $5::text, array['USAGE', 'SELECT']),
         ('ROUTINE', $5::text, array['EXECUTE']),
         ('ROUTINE', $6::text, array['EXECUTE'])
)
select json_build_object(
  'registry', (select row_to_json(p) from (
      select state, exposed, isolation, tenant_code, limits, pool from supabase_connector.projects where slug = $1::text) p),
  'schema_taken_by', {SCHEMA_TAKEN_BY},
  'roles', coalesce((select json_agg(json_build_object(
      'name', rolname, 'login', rolcanlogin, 'inherit', rolinherit, 'superuser', rolsuper,
      'createrole', rolcreaterole, 'createdb', rolcreatedb, 'replication', rolreplication,
      'bypassrls', rolbypassrls)) from r), '[]'),
  'memberships', coalesce((select json_agg(json_build_object(
      'role', (select rolname from pg_roles where oid = am.roleid),
      'member', (select rolname from pg_roles where oid = am.member) {membership_options}))
    from (select distinct x.*
          from r cross join lateral (
            -- role by role, through the indexes: `offset 0` keeps the
            -- planner from a hash join over every membership, which a
            -- generic plan picks when a few roles (Supabase's, a class
            -- role with many lease roles) hold most of them
            select a.* from pg_auth_members a where a.roleid = r.oid
            union all
            select a.* from pg_auth_members a where a.member = r.oid
            offset 0) x) am
    -- a scalar lookup by oid, not NOT EXISTS: that becomes an anti join,
    -- which a generic plan may run as a hash over every role
    where (select rolname from pg_roles where oid = am.member) not like 'lease\_%'), '[]'),
  'settings', coalesce((select json_agg(json_build_object(
      'role', r.rolname, 'name', split_part(c, '=', 1), 'value', substr(c, strpos(c, '=') + 1)))
    from r join pg_db_role_setting s on s.setrole = r.oid and s.setdatabase = 0
    cross join lateral unnest(s.setconfig) c), '[]'),
  'schema', (select json_build_object('owner', nspowner::regrole::text, 'grants', coalesce((
      select json_agg(json_build_object(
        'grantee', case when x.grantee = 0 then 'PUBLIC' else x.grantee::regrole::text end,
        'privilege', x.privilege_type))
      from aclexplode(coalesce(nspacl, acldefault('n', nspowner))) x where x.grantee <> nspowner), '[]'))
    from nsp),
  'default_acl', coalesce((select json_agg(json_build_object(
      'in_schema', d.defaclnamespace <> 0, 'objtype', d.defaclobjtype,
      'grantee', case when x.grantee = 0 then 'PUBLIC' else x.grantee::regrole::text end,
      'privilege', x.privilege_type))
    from pg_default_acl d cross join lateral aclexplode(d.defaclacl) x
    where d.defaclrole = (select oid from own) and x.grantee <> d.defaclrole
      and (d.defaclnamespace = 0 or d.defaclnamespace = (select oid from nsp))), '[]'),
  'functions_public_revoked', exists (
    select 1 from pg_default_acl d
    where d.defaclrole = (select oid from own) and d.defaclnamespace = 0 and d.defaclobjtype = 'f'
      and not exists (select 1 from aclexplode(d.defaclacl) x where x.grantee = 0)),
  'tables_without_rls', coalesce((select json_agg(format('%I.%I', c.nspname, c.relname) order by c.relname)
    from rels c where c.relkind in ('r', 'p') and not c.relrowsecurity), '[]'),
  'views_without_invoker', coalesce((select json_agg(format('%I.%I', c.nspname, c.relname) order by c.relname)
    from rels c
    where c.relkind = 'v' and not coalesce((select option_value::boolean from pg_options_to_table(c.reloptions)
                                            where option_name = 'security_invoker'), false)), '[]'),
  'missing_grants', coalesce((select json_agg(json_build_object(
      'kind', o.kind, 'object', o.object, 'role', w.role, 'privileges', w.privileges) order by o.object, w.role)
    from objects o join wanted w on w.kind = o.kind
    -- a class role that is missing (to be created) lacks them all
    where not (w.privileges <@ array(select x.privilege_type from aclexplode(o.acl) x
                                     where x.grantee = (select oid from pg_roles where rolname = w.role)))), '[]'),
  'matviews_with_class_grants', coalesce((select json_agg(format('%I.%I', c.nspname, c.relname))
    from rels c
    where c.relkind = 'm' and exists (select 1 from aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) x
                                      join pg_roles g on g.oid = x.grantee where g.rolname in ($5::text, $6::text))), '[]'),
  'pre_request_set', {PRE_REQUEST_SET},
  'listed', {LISTED},
  'pool', (select {POOL_STATE} from wanted_pool q where q.name <> 'central'),
  'exposure_settings', {EXPOSURE_SETTINGS},
  'active_leases', (select count(*) from supabase_connector.leases where project = $1::text and revoked_at is null)
)"#
    )
}

/// Read a project's actual state: one query. `pool`: the configured pool
/// to read as well (default: the one the project is on).
pub async fn project_state(
    conn: &Conn,
    server: &ServerInfo,
    names: &ProjectNames,
    pool: Option<&str>,
) -> Result<ProjectState> {
    let row = conn
        .query_one(
            &project_state_sql(server),
            &[
                &names.slug.as_str(),
                &role_names(names),
                &names.schema,
                &names.owner,
                &names.authenticated,
                &names.anon,
                &pool,
            ],
        )
        .await?;
    let value: Value = row.get(0);
    Ok(serde_json::from_value(value)?)
}

/// The state of a project that has nothing yet: no registry row, none of
/// its roles, no schema. `None` when any of them exists (read the whole
/// state then). A new project's state has no catalog part to read, and
/// this query is cheap to plan: the whole one is planned again (about
/// 3 ms) after every schema created anywhere, which is what the previous
/// new project did.
pub async fn absent_project_state(
    conn: &Conn,
    names: &ProjectNames,
    pool: Option<&str>,
) -> Result<Option<ProjectState>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let pools = pool_ctes("$4");
        format!(
            "with {pools}
select case when exists (select 1 from supabase_connector.projects where slug = $1::text)
              or to_regnamespace(quote_ident($3::text)) is not null
              or exists (select 1 from pg_roles where rolname = any($2::text[]))
  then null
  else json_build_object(
    'registry', null,
    'schema_taken_by', {SCHEMA_TAKEN_BY},
    'roles', '[]'::json, 'memberships', '[]'::json, 'settings', '[]'::json, 'schema', null,
    'default_acl', '[]'::json, 'functions_public_revoked', false, 'tables_without_rls', '[]'::json,
    'views_without_invoker', '[]'::json, 'missing_grants', '[]'::json, 'matviews_with_class_grants', '[]'::json,
    'pre_request_set', {PRE_REQUEST_SET},
    'listed', {LISTED},
    'pool', (select {POOL_STATE} from wanted_pool q where q.name <> 'central'),
    'exposure_settings', {EXPOSURE_SETTINGS},
    'active_leases', 0)
  end"
        )
    });
    let row = conn
        .query_one(
            &SQL,
            &[&names.slug.as_str(), &role_names(names), &names.schema, &pool],
        )
        .await?;
    let value: Option<Value> = row.get(0);
    Ok(match value {
        Some(v) => Some(serde_json::from_value(v)?),
        None => None,
    })
}

/// One configured pool's state alone (`pool` is not `central`): what an
/// upsert reads again once placement has chosen the pool.
pub async fn pool_state(conn: &Conn, pool: &str) -> Result<Option<PoolState>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "select {POOL_STATE} from (select $1::text as name, 'supabase_connector_pool_' || $1::text as auth) q"
        )
    });
    let row = conn.query_one(&SQL, &[&pool]).await?;
    let value: Value = row.get(0);
    Ok(serde_json::from_value(value)?)
}

/// The project's role names, as the state queries take them.
fn role_names(names: &ProjectNames) -> Vec<String> {
    vec![
        names.owner.clone(),
        names.service_role.clone(),
        names.authenticated.clone(),
        names.anon.clone(),
        names.authenticator.clone(),
    ]
}
