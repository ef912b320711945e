-- supabase-connector bootstrap, version 1.
--
-- Run once, as a superuser (`supabase_admin` on Supabase), by
-- `supabase-connector bootstrap`, inside one transaction. Idempotent: running
-- it again changes nothing. The runtime role (the role every action runs as,
-- `postgres` on Supabase) is passed as the transaction-local setting
-- `supabase_connector.runtime_role`; it is never spliced into this text.

-- 1. Preconditions: Supabase's roles and auth helpers exist; on PostgreSQL 16+
--    the runtime role holds ADMIN OPTION on the API roles it must grant. Each
--    refusal raises SQLSTATE SC412, which the connector reports as the error
--    code precondition_failed (the server is not set up as required).
do $$
declare
  v_runtime text := current_setting('supabase_connector.runtime_role');
  v_role text;
begin
  if not exists (select 1 from pg_roles where rolname = v_runtime) then
    raise exception 'runtime role % does not exist', v_runtime using errcode = 'SC412';
  end if;
  foreach v_role in array array['anon', 'authenticated', 'service_role', 'authenticator'] loop
    if not exists (select 1 from pg_roles where rolname = v_role) then
      raise exception 'role % does not exist: this database is not shaped like Supabase''s', v_role
        using errcode = 'SC412';
    end if;
  end loop;
  if to_regprocedure('auth.uid()') is null or to_regprocedure('auth.role()') is null
     or to_regprocedure('auth.jwt()') is null or to_regclass('auth.users') is null then
    raise exception 'auth.users, auth.uid(), auth.role() and auth.jwt() must exist (Supabase''s auth schema)'
      using errcode = 'SC412';
  end if;
  if current_setting('server_version_num')::int >= 160000 then
    foreach v_role in array array['anon', 'authenticated'] loop
      if not exists (
        select 1 from pg_auth_members m
        where m.roleid = v_role::regrole and m.member = v_runtime::regrole and m.admin_option
      ) then
        raise exception 'runtime role % lacks ADMIN OPTION on role %', v_runtime, v_role
          using errcode = 'SC412', hint = format('as a superuser: GRANT %I TO %I WITH ADMIN OPTION (Supabase''s PostgreSQL 16+ images do this)', v_role, v_runtime);
      end if;
    end loop;
  end if;
end
$$;

-- 2. The registry: never exposed, nothing for PUBLIC or the API roles.
create schema if not exists supabase_connector;
revoke all on schema supabase_connector from public;

create table if not exists supabase_connector.meta (
  key   text primary key,
  value jsonb not null
);

create table if not exists supabase_connector.projects (
  slug        text primary key,
  schema_name text not null unique,
  state       text not null default 'active' check (state in ('active', 'archived')),
  exposed     boolean not null default true,
  isolation   text not null default 'shared' check (isolation in ('shared', 'isolated')),
  tenant_code text not null default 'allow' check (tenant_code in ('allow', 'deny')),
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);

create table if not exists supabase_connector.grants (
  project        text not null references supabase_connector.projects (slug) on delete cascade,
  principal_type text not null check (principal_type in ('user', 'service')),
  principal_id   text not null,
  platform_role  text not null,
  access_class   text not null check (access_class in ('service_role', 'authenticated', 'anon')),
  created_at     timestamptz not null default now(),
  updated_at     timestamptz not null default now(),
  primary key (project, principal_type, principal_id)
);

create table if not exists supabase_connector.teams (
  project       text not null references supabase_connector.projects (slug) on delete cascade,
  team_id       text not null,
  platform_role text not null,
  access_class  text not null check (access_class in ('service_role', 'authenticated', 'anon')),
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  primary key (project, team_id)
);

create table if not exists supabase_connector.team_members (
  project text not null,
  team_id text not null,
  user_id uuid not null,
  primary key (project, team_id, user_id),
  foreign key (project, team_id) references supabase_connector.teams (project, team_id) on delete cascade
);
create index if not exists team_members_user on supabase_connector.team_members (project, user_id);

create table if not exists supabase_connector.leases (
  lease_id       uuid primary key,
  project        text not null references supabase_connector.projects (slug) on delete cascade,
  role_name      text not null unique,
  anon_role_name text,
  principal_type text not null,
  principal_id   text not null,
  platform_role  text not null,
  access_class   text not null check (access_class in ('service_role', 'authenticated', 'anon')),
  database       boolean not null,
  issued_at      timestamptz not null,
  expires_at     timestamptz not null,
  renewed_at     timestamptz,
  revoked_at     timestamptz,
  revoke_reason  text
);
create index if not exists leases_active_by_project on supabase_connector.leases (project) where revoked_at is null;
create index if not exists leases_active_by_expiry on supabase_connector.leases (expires_at) where revoked_at is null;
create index if not exists leases_active_by_principal on supabase_connector.leases (project, principal_type, principal_id) where revoked_at is null;

create table if not exists supabase_connector.migrations (
  project    text not null references supabase_connector.projects (slug) on delete cascade,
  version    text not null,
  name       text not null,
  checksum   text not null,
  applied_at timestamptz not null default now(),
  primary key (project, version)
);

create table if not exists supabase_connector.audit_log (
  id         bigint generated always as identity primary key,
  at         timestamptz not null default now(),
  actor      text not null default current_user,
  action     text not null,
  project    text,
  lease_id   uuid,
  changed    boolean not null,
  statements integer not null default 0,
  params     jsonb not null default '{}',
  outcome    jsonb not null default '{}'
);
create index if not exists audit_log_project on supabase_connector.audit_log (project, at);

-- The runtime role works the registry; the audit log is append-only for it.
revoke all on all tables in schema supabase_connector from public, anon, authenticated, service_role, authenticator;
do $$
declare
  v_runtime text := current_setting('supabase_connector.runtime_role');
begin
  execute format('grant usage on schema supabase_connector to %I', v_runtime);
  execute format('grant select, insert, update, delete on supabase_connector.meta, supabase_connector.projects,
                  supabase_connector.grants, supabase_connector.teams, supabase_connector.team_members,
                  supabase_connector.leases, supabase_connector.migrations to %I', v_runtime);
  execute format('grant select, insert on supabase_connector.audit_log to %I', v_runtime);
  execute format('revoke update, delete, truncate on supabase_connector.audit_log from %I', v_runtime);
end
$$;

-- 3. The role that lets project owners write `auth.uid()` in policies and
--    `references auth.users (id)`, granted to owners by the runtime role.
do $$
declare
  v_runtime text := current_setting('supabase_connector.runtime_role');
begin
  if not exists (select 1 from pg_roles where rolname = 'supabase_connector_auth') then
    create role supabase_connector_auth nologin noinherit;
  end if;
  if current_setting('server_version_num')::int >= 160000 then
    if not exists (
      select 1 from pg_auth_members
      where roleid = 'supabase_connector_auth'::regrole and member = v_runtime::regrole and admin_option
    ) then
      execute format('grant supabase_connector_auth to %I with admin true, inherit false, set false', v_runtime);
    end if;
  end if;
end
$$;
grant usage on schema auth to supabase_connector_auth;
grant execute on function auth.uid(), auth.role(), auth.jwt() to supabase_connector_auth;
grant references (id) on auth.users to supabase_connector_auth;

-- 4. Exposure through PostgREST: the served list is computed from the
--    registry, never edited in place.
create or replace function supabase_connector.db_schemas_list(p_base text[] default null)
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  with base as (
    select s, ord
    from unnest(coalesce(
      p_base,
      (select array(select jsonb_array_elements_text(value -> 'base_schemas'))
         from supabase_connector.meta where key = 'exposure'),
      array['public', 'storage', 'graphql_public'])) with ordinality as b(s, ord)
  ), projects as (
    select schema_name as s
    from supabase_connector.projects
    where state = 'active' and exposed and isolation = 'shared'
      and to_regnamespace(quote_ident(schema_name)) is not null
  )
  select string_agg(s, ',' order by grp, ord, s)
  from (
    select s, 0 as grp, ord from base
    union all
    select s, 1, 0 from projects where s not in (select s from base)
  ) all_schemas
$$;

create or replace function supabase_connector.served_db_schemas()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select substr(c, length('pgrst.db_schemas=') + 1)
  from pg_db_role_setting s, unnest(s.setconfig) c
  where s.setrole = 'authenticator'::regrole and s.setdatabase = 0
    and c like 'pgrst.db\_schemas=%'
$$;

create or replace function supabase_connector.apply_exposure(p_mode text, p_base text[])
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_base text;
  v_list text;
  v_changed boolean := false;
begin
  -- Every change of the list is serialized (project locks are taken first).
  perform pg_advisory_xact_lock(hashtextextended('supabase_connector:exposure', 0));
  if p_mode not in ('role_setting', 'pre_config', 'none') then
    raise exception 'unknown exposure mode %', p_mode;
  end if;
  foreach v_base in array p_base loop
    if v_base !~ '^[a-z_][a-z0-9_]{0,62}$'
       or v_base in ('supabase_connector', 'auth', 'pg_catalog', 'information_schema', 'pg_toast')
       or v_base like 'proj\_%' then
      raise exception 'schema % cannot be a base schema of the API', v_base;
    end if;
  end loop;
  insert into supabase_connector.meta (key, value)
  values ('exposure', jsonb_build_object('mode', p_mode, 'base_schemas', to_jsonb(p_base)))
  on conflict (key) do update set value = excluded.value
  where supabase_connector.meta.value is distinct from excluded.value;

  v_list := supabase_connector.db_schemas_list(p_base);
  if p_mode = 'role_setting' then
    if supabase_connector.served_db_schemas() is distinct from v_list then
      execute format('alter role authenticator set pgrst.db_schemas = %L', v_list);
      v_changed := true;
    end if;
  elsif p_mode = 'pre_config' then
    v_changed := true;
  end if;
  if v_changed then
    perform pg_notify('pgrst', 'reload config');
    perform pg_notify('pgrst', 'reload schema');
  end if;
  return jsonb_build_object('mode', p_mode, 'schemas', to_jsonb(string_to_array(v_list, ',')), 'changed', v_changed);
end
$$;

-- For `exposure.mode = pre_config`: set PGRST_DB_PRE_CONFIG to
-- `supabase_connector_pgrst.pre_config`. It lives in a schema of its own so
-- that `authenticator` gets nothing in the registry schema.
create schema if not exists supabase_connector_pgrst;
revoke all on schema supabase_connector_pgrst from public;
create or replace function supabase_connector_pgrst.pre_config()
returns void
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select set_config('pgrst.db_schemas', supabase_connector.db_schemas_list(), true);
$$;

-- 5. The guard on project schemas: RLS on every table, security_invoker on
--    every view, no class-role access to materialized views, and no grant by
--    a project's role to anything outside that project.

-- The project a role belongs to (its class roles, owner, dedicated
-- authenticator, or one of its leases), or null. Index lookups only (it
-- runs on every GRANT and drop): the schema is the role name less its
-- suffix, and a lease's anon role is its role name plus `_anon`.
create or replace function supabase_connector.project_of_role(p_role text)
returns text
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  -- plpgsql, so that a session plans it once: the event triggers call it
  return (select p.schema_name
  from supabase_connector.projects p
  where p.schema_name = any (array[
          case when p_role like '%\_owner' then left(p_role, -6) end,
          case when p_role like '%\_service\_role' then left(p_role, -13) end,
          case when p_role like '%\_authenticated' then left(p_role, -14) end,
          case when p_role like '%\_anon' then left(p_role, -5) end,
          case when p_role like '%\_authenticator' then left(p_role, -14) end])
  union all
  select p.schema_name
  from supabase_connector.leases l join supabase_connector.projects p on p.slug = l.project
  where l.role_name in (p_role, left(p_role, -5))
    and (l.role_name = p_role or l.anon_role_name = p_role)
  limit 1);
end
$$;

-- Every ACL entry in a project schema whose grantee is outside the project:
-- the kind and SQL name of the object (quoted by PostgreSQL), the grantee
-- ('PUBLIC' or a quoted role name) and the privilege.
create or replace function supabase_connector.foreign_grants(p_schema text)
returns table (kind text, object text, grantee text, privilege text)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  -- plpgsql, so that each session plans this once, not at every call
  return query
  with nsp as (
    select oid, nspname, nspowner, nspacl from pg_namespace where nspname = p_schema
  ), allowed as (
    select r.oid from pg_roles r, nsp
    where r.rolname in (nsp.nspname || '_owner', nsp.nspname || '_service_role',
                        nsp.nspname || '_authenticated', nsp.nspname || '_anon',
                        nsp.nspname || '_authenticator')
  ), project_roles as (
    select oid from allowed
    union
    select r.oid
    from supabase_connector.leases l
    cross join lateral unnest(array[l.role_name, l.anon_role_name]) x(name)
    join pg_roles r on r.rolname = x.name
    where l.project = (select p.slug from supabase_connector.projects p where p.schema_name = p_schema)
      and l.revoked_at is null
  ), members as (
    -- what the schema holds, through each object's recorded dependency on
    -- it (indexed): pg_class, pg_type and pg_default_acl have no index by
    -- namespace
    select d.classid, d.objid from nsp
    join pg_depend d on d.refclassid = 'pg_namespace'::regclass and d.refobjid = nsp.oid and d.refobjsubid = 0
  ), rels as (
    select c.* from members m join pg_class c on c.oid = m.objid, nsp
    where m.classid = 'pg_class'::regclass and c.relnamespace = nsp.oid
  ), acls as (
    select 'SCHEMA' as kind, quote_ident(nsp.nspname) as object, nsp.nspowner as owner,
           coalesce(nsp.nspacl, acldefault('n', nsp.nspowner)) as acl
    from nsp
    union all
    select case when c.relkind = 'S' then 'SEQUENCE' else 'TABLE' end, c.oid::regclass::text,
           c.relowner, coalesce(c.relacl, acldefault(case when c.relkind = 'S' then 's'::"char" else 'r'::"char" end, c.relowner))
    from rels c where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
    union all
    select 'COLUMN', format('%s (%I)', c.oid::regclass, a.attname), c.relowner, a.attacl
    from pg_attribute a join rels c on c.oid = a.attrelid
    where a.attacl is not null and a.attnum > 0
    union all
    select 'ROUTINE', p.oid::regprocedure::text, p.proowner, coalesce(p.proacl, acldefault('f', p.proowner))
    from members m join pg_proc p on p.oid = m.objid, nsp
    where m.classid = 'pg_proc'::regclass and p.pronamespace = nsp.oid
    union all
    select 'TYPE', t.oid::regtype::text, t.typowner, t.typacl
    from members m join pg_type t on t.oid = m.objid, nsp
    where m.classid = 'pg_type'::regclass and t.typnamespace = nsp.oid and t.typacl is not null
    union all
    select 'DEFAULT ' || case d.defaclobjtype when 'r' then 'TABLES' when 'S' then 'SEQUENCES'
                              when 'f' then 'FUNCTIONS' when 'T' then 'TYPES' else 'SCHEMAS' end,
           d.defaclrole::regrole::text, d.defaclrole, d.defaclacl
    from members m join pg_default_acl d on d.oid = m.objid, nsp
    where m.classid = 'pg_default_acl'::regclass and d.defaclnamespace = nsp.oid
    union all
    -- defaults without IN SCHEMA of the project's roles and leases: they
    -- apply to what those roles create in the project schema too
    select 'GLOBAL DEFAULT ' || case d.defaclobjtype when 'r' then 'TABLES' when 'S' then 'SEQUENCES'
                              when 'f' then 'FUNCTIONS' when 'T' then 'TYPES' when 'n' then 'SCHEMAS'
                              else 'LARGE OBJECTS' end,
           d.defaclrole::regrole::text, d.defaclrole, d.defaclacl
    from project_roles pr join pg_default_acl d on d.defaclrole = pr.oid and d.defaclnamespace = 0
  )
  select a.kind, a.object,
         case when x.grantee = 0 then 'PUBLIC' else x.grantee::regrole::text end,
         x.privilege_type
  from acls a, aclexplode(a.acl) x
  where x.grantee <> a.owner
    and x.grantee not in (select oid from allowed)
    -- PUBLIC's default USAGE on types is PostgreSQL's own, not a grant.
    and not (a.kind = 'TYPE' and x.grantee = 0 and x.privilege_type = 'USAGE');
end
$$;

-- Code a project installed in its schema: functions and procedures, and
-- stored expressions that call pg_catalog.set_config (which could switch
-- roles through the shared authenticator). pg_depend records no dependency
-- on built-in functions, so the stored expression trees are read.
create or replace function supabase_connector.tenant_code_objects(p_schema text)
returns table (kind text, object text, reason text)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  -- plpgsql, so that each session plans this once, not at every call
  return query
  with nsp as (select oid from pg_namespace where nspname = p_schema),
  -- what the schema holds, through each object's recorded dependency on it
  -- (indexed): pg_class, pg_type and pg_constraint have no index by namespace
  members as (
    select d.classid, d.objid from nsp
    join pg_depend d on d.refclassid = 'pg_namespace'::regclass and d.refobjid = nsp.oid and d.refobjsubid = 0
  ),
  rels as (select c.oid from members m join pg_class c on c.oid = m.objid, nsp
           where m.classid = 'pg_class'::regclass and c.relnamespace = nsp.oid),
  pattern as (select ':funcid ' || 'pg_catalog.set_config(text,text,boolean)'::regprocedure::oid::text || '[^0-9]' as re)
  select case p.prokind when 'p' then 'procedure' when 'a' then 'aggregate' when 'w' then 'window function' else 'function' end,
         p.oid::regprocedure::text, 'project code is not allowed (tenant_code = deny)'
  from members m join pg_proc p on p.oid = m.objid, nsp
  where m.classid = 'pg_proc'::regclass and p.pronamespace = nsp.oid
  union all
  select 'policy', format('%I on %s', pol.polname, pol.polrelid::regclass), 'calls set_config'
  from pg_policy pol, pattern
  where pol.polrelid in (select oid from rels)
    and (pol.polqual::text ~ pattern.re or pol.polwithcheck::text ~ pattern.re)
  union all
  select 'default', format('%s.%I', d.adrelid::regclass, a.attname), 'calls set_config'
  from pg_attrdef d join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum, pattern
  where d.adrelid in (select oid from rels) and d.adbin::text ~ pattern.re
  union all
  select 'constraint', format('%I', con.conname), 'calls set_config'
  from pg_constraint con, pattern
  where con.conrelid in (select oid from rels) and con.conbin::text ~ pattern.re
  union all
  select 'constraint', format('%I', con.conname), 'calls set_config'
  from pg_constraint con, pattern
  where con.contypid in (select m.objid from members m where m.classid = 'pg_type'::regclass)
    and con.conbin::text ~ pattern.re
  union all
  select 'view or rule', r.ev_class::regclass::text, 'calls set_config'
  from pg_rewrite r, pattern
  where r.ev_class in (select oid from rels) and r.ev_action::text ~ pattern.re
  union all
  select 'trigger', format('%I on %s', t.tgname, t.tgrelid::regclass), 'calls set_config'
  from pg_trigger t, pattern
  where t.tgrelid in (select oid from rels) and t.tgqual::text ~ pattern.re
  union all
  select 'index', i.indexrelid::regclass::text, 'calls set_config'
  from pg_index i, pattern
  where i.indrelid in (select oid from rels)
    and (i.indexprs::text ~ pattern.re or i.indpred::text ~ pattern.re)
  union all
  select 'domain', t.oid::regtype::text, 'calls set_config'
  from members m join pg_type t on t.oid = m.objid, nsp, pattern
  where m.classid = 'pg_type'::regclass and t.typnamespace = nsp.oid and t.typdefaultbin::text ~ pattern.re;
end
$$;

create or replace function supabase_connector.on_ddl_command_end()
returns event_trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_cmd record;
  v_rel record;
  v_actor text;
  v_schema text;
  v_tenant_code text;
  v_deny text[] := '{}';
  v_bad record;
begin
  -- One command at a time, each looked up by index: this runs after every
  -- DDL statement in the database, whatever the number of projects.
  for v_cmd in select c.classid, c.objid, c.schema_name from pg_event_trigger_ddl_commands() c loop
    v_schema := v_cmd.schema_name;
    -- Policies, rules and triggers have no schema of their own: their table's counts.
    if v_schema is null and v_cmd.classid in ('pg_policy'::regclass, 'pg_rewrite'::regclass, 'pg_trigger'::regclass) then
      select n.nspname into v_schema
      from pg_class rel join pg_namespace n on n.oid = rel.relnamespace
      where rel.oid = case v_cmd.classid
                        when 'pg_policy'::regclass then (select polrelid from pg_policy where oid = v_cmd.objid)
                        when 'pg_rewrite'::regclass then (select ev_class from pg_rewrite where oid = v_cmd.objid)
                        else (select tgrelid from pg_trigger where oid = v_cmd.objid)
                      end;
    end if;
    continue when v_schema is null;
    select p.tenant_code into v_tenant_code from supabase_connector.projects p where p.schema_name = v_schema;
    continue when not found;
    if v_tenant_code = 'deny' and not v_schema = any(v_deny) then
      v_deny := v_deny || v_schema;
    end if;
    continue when v_cmd.classid <> 'pg_class'::regclass;

    select c.oid, c.relkind, c.relrowsecurity,
           coalesce((select option_value::boolean from pg_options_to_table(c.reloptions)
                     where option_name = 'security_invoker'), false) as security_invoker
      into v_rel
      from pg_class c where c.oid = v_cmd.objid;
    if not found then
      continue;
    end if;
    if v_rel.relkind in ('r', 'p') and not v_rel.relrowsecurity then
      execute format('alter table %s enable row level security', v_rel.oid::regclass);
    elsif v_rel.relkind = 'v' and not v_rel.security_invoker then
      execute format('alter view %s set (security_invoker = true)', v_rel.oid::regclass);
    elsif v_rel.relkind = 'm' then
      -- filled with the owner's rights, so it would show rows past RLS
      execute format('revoke all on %s from %I, %I', v_rel.oid::regclass,
                     v_schema || '_authenticated', v_schema || '_anon');
    end if;
  end loop;

  -- tenant_code = deny: no functions, no set_config in stored expressions.
  foreach v_schema in array v_deny loop
    select * into v_bad from supabase_connector.tenant_code_objects(v_schema) limit 1;
    if found then
      raise exception 'refused in project schema %: % % %', v_schema, v_bad.kind, v_bad.object, v_bad.reason
        using errcode = '42501',
              hint = 'this project runs with tenant_code = deny: its schema holds tables, views and policies only';
    end if;
  end loop;

  if tg_tag in ('GRANT', 'ALTER DEFAULT PRIVILEGES') then
    -- The acting role: SET ROLE's target, else the session user. Only grants
    -- made by a project's own roles are checked; the runtime role and
    -- superusers are trusted.
    v_actor := nullif(current_setting('role'), 'none');
    v_actor := coalesce(v_actor, session_user::text);
    v_schema := supabase_connector.project_of_role(v_actor);
    if v_schema is not null then
      select * into v_bad from supabase_connector.foreign_grants(v_schema) limit 1;
      if found then
        raise exception 'grant refused: % % in project schema % would give % to %, which is outside the project',
          lower(v_bad.kind), v_bad.object, v_schema, v_bad.privilege, v_bad.grantee
          using errcode = '42501',
                hint = 'grant only to the project''s own roles (' || v_schema || '_authenticated, ' || v_schema || '_anon)';
      end if;
    end if;
  end if;
end
$$;

-- A project's roles own its schema, so PostgreSQL alone would let a migration
-- drop it (DROP SCHEMA, DROP OWNED BY the owner) while it is still listed in
-- pgrst.db_schemas, which breaks the whole API. Only remove_database_project
-- (the runtime role, after unlisting it) drops a registered project schema.
create or replace function supabase_connector.on_sql_drop()
returns event_trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_actor text := coalesce(nullif(current_setting('role'), 'none'), session_user::text);
  v_schema text;
begin
  if supabase_connector.project_of_role(v_actor) is null then
    return;
  end if;
  select o.object_name into v_schema
  from pg_event_trigger_dropped_objects() o
  join supabase_connector.projects p on p.schema_name = o.object_name
  where o.object_type = 'schema'
  limit 1;
  if found then
    raise exception 'refused: schema % is a project schema; only remove_database_project drops it', v_schema
      using errcode = '42501',
            hint = 'drop the objects in it instead';
  end if;
end
$$;

do $$
begin
  if not exists (select 1 from pg_event_trigger where evtname = 'supabase_connector_drop') then
    create event trigger supabase_connector_drop on sql_drop
      execute function supabase_connector.on_sql_drop();
  end if;
  if not exists (select 1 from pg_event_trigger where evtname = 'supabase_connector_ddl') then
    create event trigger supabase_connector_ddl on ddl_command_end
      execute function supabase_connector.on_ddl_command_end();
  end if;
end
$$;

-- The registry's functions: nothing for PUBLIC; the runtime role may apply
-- the exposure; PostgREST may call the pre-config hook.
revoke all on all functions in schema supabase_connector from public;
do $$
declare
  v_runtime text := current_setting('supabase_connector.runtime_role');
begin
  execute format('grant execute on function supabase_connector.apply_exposure(text, text[]),
                  supabase_connector.db_schemas_list(text[]), supabase_connector.served_db_schemas(),
                  supabase_connector.foreign_grants(text), supabase_connector.tenant_code_objects(text) to %I', v_runtime);
end
$$;
revoke all on function supabase_connector_pgrst.pre_config() from public;
grant usage on schema supabase_connector_pgrst to authenticator;
grant execute on function supabase_connector_pgrst.pre_config() to authenticator;

-- 6. Record the version last.
insert into supabase_connector.meta (key, value) values ('bootstrap_version', '1')
on conflict (key) do update set value = excluded.value;
insert into supabase_connector.meta (key, value)
values ('runtime_role', to_jsonb(current_setting('supabase_connector.runtime_role')))
on conflict (key) do update set value = excluded.value;
