-- supabase-connector bootstrap, version 2: a role graph that stays flat.
--
-- Applied after v1.sql, in the same transaction, as the same superuser;
-- idempotent like it. Upgrades a version-1 registry in place (projects and
-- live leases are kept; see docs/operations.md "Upgrading").
--
-- What changes:
-- * API tokens name the project's class role (`proj_<s>_<class>`), and
--   `supabase_connector_api.pre_request()` (PostgREST's `db-pre-request`)
--   refuses a token whose lease is unknown, revoked or expired. Issuing or
--   revoking an API token touches no role.
-- * Every role statement of the connector goes through the role functions
--   below: SECURITY DEFINER, owned by this superuser, EXECUTE for the
--   runtime role only. Each checks its arguments against the registry and
--   refuses anything else. The runtime role creates no role itself, so on
--   PostgreSQL 16+ it collects no ADMIN membership per role, and no
--   membership check of it grows with the number of projects and leases.

-- 1. Registry changes -------------------------------------------------------

-- API-only leases have no role.
alter table supabase_connector.leases alter column role_name drop not null;

-- Per-project limits, resolved at upsert (docs/operations.md "Limits").
alter table supabase_connector.projects add column if not exists limits jsonb not null default '{}';

-- API pools (docs/operations.md "API pools"): `central` is Supabase's own
-- authenticator; configured pools get a login role of their own.
create table if not exists supabase_connector.pools (
  name          text primary key check (name ~ '^[a-z][a-z0-9_]{0,29}$'),
  authenticator text not null unique,
  url           text,
  max_projects  integer not null check (max_projects > 0),
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);
-- The pool a project is placed on (`central` for Supabase's own API); an
-- isolated project is served by its own API whatever this says.
alter table supabase_connector.projects add column if not exists pool text not null default 'central';
-- A pool's served list reads its own projects only.
create index if not exists projects_served on supabase_connector.projects (pool, schema_name)
  where state = 'active' and exposed and isolation = 'shared';

-- The anonymous role of the pools' PostgRESTs (`PGRST_DB_ANON_ROLE`): no
-- privileges anywhere.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'supabase_connector_pool_anon') then
    create role supabase_connector_pool_anon nologin noinherit;
  end if;
end
$$;

do $$
declare
  v_runtime text := current_setting('supabase_connector.runtime_role');
begin
  execute format('grant select, insert, update, delete on supabase_connector.pools to %I', v_runtime);
end
$$;
revoke all on supabase_connector.pools from public, anon, authenticated, service_role, authenticator;

-- The role functions act on names they read from the registry, which the
-- runtime role writes: these constraints (which it cannot drop) tie every
-- such name to the connector's own namespace, so no registry row can point
-- a function at a schema or role outside it (a superuser's password, a
-- foreign schema dropped with CASCADE). The runtime role reads `meta` only:
-- the runtime role recorded there is the one member that may borrow owners.
do $$
declare
  v_runtime text := current_setting('supabase_connector.runtime_role');
  v_check record;
begin
  for v_check in
    select * from (values
      ('supabase_connector.projects'::regclass, 'projects_schema_name_is_derived',
       $c$check (schema_name = 'proj_' || replace(slug, '-', '_'))$c$),
      ('supabase_connector.leases'::regclass, 'leases_role_names_are_derived',
       $c$check ((role_name is null or role_name = 'lease_' || replace(lease_id::text, '-', ''))
                 and (anon_role_name is null or anon_role_name = role_name || '_anon'))$c$),
      ('supabase_connector.pools'::regclass, 'pools_authenticator_is_derived',
       $c$check (authenticator = 'supabase_connector_pool_' || name)$c$)) c(tbl, name, def)
  loop
    if not exists (select 1 from pg_constraint where conrelid = v_check.tbl and conname = v_check.name) then
      execute format('alter table %s add constraint %I %s', v_check.tbl, v_check.name, v_check.def);
    end if;
  end loop;
  execute format('revoke insert, update, delete, truncate on supabase_connector.meta from %I', v_runtime);
end
$$;

-- 2. What a role name is ------------------------------------------------------

-- The registered project (slug, schema) and kind of a project role
-- (`owner`, `service_role`, `authenticated`, `anon`, `authenticator`), or
-- no row. Index lookups only.
create or replace function supabase_connector.project_role(p_role text)
returns table (slug text, schema_name text, state text, exposed boolean, isolation text, pool text, kind text)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  -- plpgsql, so that a session plans it once: the role functions call it
  -- for every membership
  return query
  select p.slug, p.schema_name, p.state, p.exposed, p.isolation, p.pool, k.kind
  from (values ('owner'), ('service_role'), ('authenticated'), ('anon'), ('authenticator')) k(kind)
  join supabase_connector.projects p
    on p.schema_name = left(p_role, -(length(k.kind) + 1))
  where right(p_role, length(k.kind) + 1) = '_' || k.kind
  limit 1;
end
$$;

-- The login role that serves a project's API (the role its class roles are
-- granted to), or null when none should: its own authenticator when
-- isolated; else, while it is active and exposed, its pool's
-- (`authenticator` for the central pool).
create or replace function supabase_connector.api_authenticator(p_slug text)
returns text
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return (select case
    when p.isolation = 'isolated' then p.schema_name || '_authenticator'
    when p.state <> 'active' or not p.exposed then null
    when p.pool = 'central' then 'authenticator'
    else (select po.authenticator from supabase_connector.pools po where po.name = p.pool)
  end
  from supabase_connector.projects p
  where p.slug = p_slug);
end
$$;

-- Every login role that serves an API: Supabase's `authenticator`, the
-- pools' and the isolated projects'.
create or replace function supabase_connector.is_api_authenticator(p_role text)
returns boolean
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return p_role = 'authenticator'
      or exists (select 1 from supabase_connector.pools where authenticator = p_role)
      or exists (select 1 from supabase_connector.project_role(p_role) r where r.kind = 'authenticator');
end
$$;

-- How a membership the connector makes is granted, or null when it is not
-- one it makes: `inherit` (INHERIT TRUE, SET TRUE), `inherit_only`
-- (INHERIT TRUE, SET FALSE), `set` (INHERIT FALSE, SET TRUE: how an
-- authenticator holds the roles it switches to).
create or replace function supabase_connector.membership_kind(p_role text, p_member text)
returns text
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  r record;
  m record;
begin
  select * into r from supabase_connector.project_role(p_role);
  select * into m from supabase_connector.project_role(p_member);
  -- the project's service class acts as its owner
  if r.kind = 'owner' and m.kind = 'service_role' and r.slug = m.slug then
    return 'inherit';
  end if;
  -- class roles inherit Supabase's, so `TO authenticated` policies work;
  -- without SET, so no login role that switches to a class role can go on
  -- to Supabase's own (PostgreSQL 16+; on 15 every membership allows SET)
  if (p_role = 'authenticated' and m.kind = 'authenticated')
     or (p_role = 'anon' and m.kind = 'anon') then
    return 'inherit_only';
  end if;
  if p_role = 'supabase_connector_auth' and m.kind = 'owner' then
    return 'inherit';
  end if;
  -- a pool's PostgREST answers requests without a token as a role with no privileges
  if p_role = 'supabase_connector_pool_anon'
     and exists (select 1 from supabase_connector.pools where authenticator = p_member) then
    return 'set';
  end if;
  -- the runtime role borrows an owner for one transaction
  if r.kind = 'owner' and p_member = (select value #>> '{}' from supabase_connector.meta where key = 'runtime_role') then
    return 'inherit';
  end if;
  -- the API login role serving the project switches to its class roles
  if r.kind in ('service_role', 'authenticated', 'anon')
     and p_member = supabase_connector.api_authenticator(r.slug) then
    return 'set';
  end if;
  return null;
end
$$;

-- A principal's effective access to a project: the highest class of its
-- direct grant and of the teams it is a member of (the project itself:
-- service_role), with the platform role that gives it. The one place the
-- connector computes it: for issuing a lease and for revoking the leases an
-- access removal leaves above their principal's class.
create or replace function supabase_connector.effective_access(p_project text, p_type text, p_id text)
returns table (access_class text, platform_role text)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  -- PL/pgSQL, so a session plans this once (a SQL function with its own
  -- search_path is not inlined and was planned again at every call)
  return query
  select e.access_class, e.platform_role
  from (
    select 'service_role'::text as access_class, 'project_owner'::text as platform_role
    where p_type = 'service' and p_id = 'project'
    union all
    select g.access_class, g.platform_role
    from supabase_connector.grants g
    where g.project = p_project and g.principal_type = p_type and g.principal_id = p_id
    union all
    select t.access_class, t.platform_role
    from supabase_connector.team_members m
    join supabase_connector.teams t on t.project = m.project and t.team_id = m.team_id
    where p_type = 'user' and m.project = p_project and m.user_id::text = p_id
  ) e
  order by array_position(array['anon', 'authenticated', 'service_role'], e.access_class) desc, e.platform_role
  limit 1;
end
$$;

-- 3. The role functions -------------------------------------------------------

create or replace function supabase_connector.refuse(p_what text)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception 'refused: %', p_what
    using errcode = '42501',
          hint = 'the connector''s role functions act only on the roles and memberships of registered projects, pools and leases';
end
$$;

-- Grant `p_role` to `p_member` with the options the connector uses for that
-- pair (PostgreSQL 16+ records them per grant; 15 has none). A no-op when
-- the membership exists.
create or replace function supabase_connector.role_grant(p_role text, p_member text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_kind text := supabase_connector.membership_kind(p_role, p_member);
  v_options text := '';
begin
  if v_kind is null then
    perform supabase_connector.refuse(format('membership of %s in %s', p_member, p_role));
  end if;
  if exists (select 1 from pg_auth_members a
             where a.roleid = to_regrole(quote_ident(p_role)) and a.member = to_regrole(quote_ident(p_member))
               and (current_setting('server_version_num')::int < 160000
                    or (to_jsonb(a) ->> 'set_option')::boolean = (v_kind <> 'inherit_only')
                       and (to_jsonb(a) ->> 'inherit_option')::boolean = (v_kind <> 'set'))) then
    return;
  end if;
  if current_setting('server_version_num')::int >= 160000 then
    v_options := case v_kind when 'set' then ' with inherit false, set true'
                             when 'inherit_only' then ' with inherit true, set false'
                             else ' with inherit true, set true' end;
  end if;
  execute format('grant %I to %I', p_role, p_member) || v_options;
end
$$;

-- Revoke every grant of `p_role` to `p_member`, whoever granted it (on 16+
-- a plain REVOKE only removes the current grantor's). Allowed when one side
-- is a registered project's role: revoking never widens access.
create or replace function supabase_connector.role_revoke(p_role text, p_member text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_grantor text;
begin
  if not exists (select 1 from supabase_connector.project_role(p_role))
     and not exists (select 1 from supabase_connector.project_role(p_member))
     and not exists (select 1 from supabase_connector.pools where authenticator = p_member) then
    perform supabase_connector.refuse(format('revoking %s from %s', p_role, p_member));
  end if;
  for v_grantor in
    select a.grantor::regrole::text from pg_auth_members a
    where a.roleid = to_regrole(quote_ident(p_role)) and a.member = to_regrole(quote_ident(p_member))
  loop
    if current_setting('server_version_num')::int >= 160000 then
      execute format('revoke %I from %I granted by %s', p_role, p_member, v_grantor);
    else
      execute format('revoke %I from %I', p_role, p_member);
    end if;
  end loop;
end
$$;

-- Create a project role (NOLOGIN INHERIT), an isolated project's API login
-- role, or a pool's (LOGIN NOINHERIT, password set apart).
create or replace function supabase_connector.role_create(p_role text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  r record;
begin
  select * into r from supabase_connector.project_role(p_role);
  if r.kind in ('owner', 'service_role', 'authenticated', 'anon') then
    execute format('create role %I nologin inherit', p_role);
  elsif r.kind = 'authenticator' and r.isolation = 'isolated' then
    execute format('create role %I login noinherit', p_role);
  elsif exists (select 1 from supabase_connector.pools where authenticator = p_role) then
    execute format('create role %I login noinherit', p_role);
    -- its PostgREST may read its settings from the registry (pre_config mode)
    execute format('grant usage on schema supabase_connector_pgrst to %I', p_role);
    execute format('grant execute on function supabase_connector_pgrst.pre_config() to %I', p_role);
  else
    perform supabase_connector.refuse(format('creating role %s', p_role));
  end if;
end
$$;

-- Set attributes of a role `role_create` makes: only the listed ones, and
-- LOGIN only on an API login role.
create or replace function supabase_connector.role_alter(p_role text, p_attributes text[])
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_login boolean := supabase_connector.is_api_authenticator(p_role) and p_role <> 'authenticator';
  v_attribute text;
begin
  if not (v_login or exists (select 1 from supabase_connector.project_role(p_role) r
                             where r.kind in ('owner', 'service_role', 'authenticated', 'anon'))) then
    perform supabase_connector.refuse(format('altering role %s', p_role));
  end if;
  foreach v_attribute in array p_attributes loop
    if not (v_attribute in ('NOLOGIN', 'INHERIT', 'NOCREATEROLE', 'NOCREATEDB', 'NOBYPASSRLS', 'NOREPLICATION', 'NOSUPERUSER')
            or (v_login and v_attribute in ('LOGIN', 'NOINHERIT'))) then
      perform supabase_connector.refuse(format('attribute %s on role %s', v_attribute, p_role));
    end if;
  end loop;
  execute format('alter role %I ', p_role) || array_to_string(p_attributes, ' ');
end
$$;

-- A SCRAM-SHA-256 verifier (never a plaintext password).
create or replace function supabase_connector.is_scram_verifier(p_verifier text)
returns boolean
language sql
immutable
set search_path = pg_catalog, pg_temp
as $$
  select p_verifier ~ '^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*:[A-Za-z0-9+/]+=*$'
$$;

-- The password of a pool's or an isolated project's API login role, as a
-- SCRAM verifier computed by the connector.
create or replace function supabase_connector.role_password(p_role text, p_verifier text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if not supabase_connector.is_api_authenticator(p_role) or p_role = 'authenticator' then
    perform supabase_connector.refuse(format('setting the password of %s', p_role));
  end if;
  if not supabase_connector.is_scram_verifier(p_verifier) then
    perform supabase_connector.refuse('a password that is not a SCRAM-SHA-256 verifier');
  end if;
  execute format('alter role %I password %L', p_role, p_verifier);
end
$$;

-- Role settings of a project's class roles and of API login roles:
-- `statement_timeout` and `idle_in_transaction_session_timeout` in
-- milliseconds (null: RESET).
create or replace function supabase_connector.role_set(p_role text, p_name text, p_value text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if not (supabase_connector.is_api_authenticator(p_role) and p_role <> 'authenticator'
          or exists (select 1 from supabase_connector.project_role(p_role) r
                     where r.kind in ('service_role', 'authenticated', 'anon'))) then
    perform supabase_connector.refuse(format('settings of role %s', p_role));
  end if;
  if p_name not in ('statement_timeout', 'idle_in_transaction_session_timeout')
     or p_value !~ '^[0-9]{1,9}$' then
    perform supabase_connector.refuse(format('setting %s = %s', p_name, p_value));
  end if;
  if p_value is null then
    execute format('alter role %I reset %I', p_role, p_name);
  else
    execute format('alter role %I set %I = %L', p_role, p_name, p_value);
  end if;
end
$$;

-- Drop an API login role that no longer serves anything: an isolated
-- project's once it is shared again, a pool's once it holds no project.
create or replace function supabase_connector.role_drop(p_role text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if not (exists (select 1 from supabase_connector.project_role(p_role) r
                  where r.kind = 'authenticator' and r.isolation <> 'isolated')
          or exists (select 1 from supabase_connector.pools po where po.authenticator = p_role
                     and not exists (select 1 from supabase_connector.projects p where p.pool = po.name))) then
    perform supabase_connector.refuse(format('dropping role %s', p_role));
  end if;
  execute format('drop owned by %I', p_role);
  execute format('drop role %I', p_role);
end
$$;

-- Take back default privileges a project's role (or one of its leases')
-- gave to a role outside the project (a `foreign_grant` verify repairs).
-- `p_schema`: the project's schema, or null for defaults without IN SCHEMA.
create or replace function supabase_connector.role_default_acl_revoke(
  p_role text, p_schema text, p_objects text, p_grantee text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_schema text := supabase_connector.project_of_role(p_role);
begin
  if v_schema is null or (p_schema is not null and p_schema <> v_schema)
     or p_objects not in ('TABLES', 'SEQUENCES', 'FUNCTIONS', 'ROUTINES', 'TYPES', 'SCHEMAS') then
    perform supabase_connector.refuse(format('default privileges of %s', p_role));
  end if;
  execute format('alter default privileges for role %I %s revoke all on %s from %s',
                 p_role,
                 case when p_schema is null then '' else format('in schema %I', v_schema) end,
                 p_objects,
                 case when p_grantee = 'PUBLIC' then 'public' else quote_ident(p_grantee) end);
end
$$;

-- Drop a project's schema and roles (`remove_database_project` with
-- `drop_data`). The project must already be out of every served list.
create or replace function supabase_connector.project_drop(p_slug text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_schema text;
  v_roles text;
begin
  select schema_name into v_schema from supabase_connector.projects where slug = p_slug and state = 'archived';
  if not found then
    perform supabase_connector.refuse(format('dropping project %s (not registered, or not archived first)', p_slug));
  end if;
  execute format('drop schema if exists %I cascade', v_schema);
  select string_agg(quote_ident(rolname), ', ') into v_roles
  from pg_roles
  where rolname in (v_schema || '_owner', v_schema || '_service_role', v_schema || '_authenticated',
                    v_schema || '_anon', v_schema || '_authenticator');
  if v_roles is not null then
    execute 'drop owned by ' || v_roles;
    execute 'drop role ' || v_roles;
  end if;
end
$$;

-- 4. Lease login roles ----------------------------------------------------------

-- The class privileges on objects of a project schema that the owner did
-- not create (reassigned from a lease): what default privileges give the
-- owner's own objects.
create or replace function supabase_connector.grant_class_privileges(p_schema text, p_objects oid[], p_routines oid[])
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_rel record;
  v_proc oid;
begin
  for v_rel in select c.oid, c.relkind from pg_class c where c.oid = any(p_objects) loop
    if v_rel.relkind in ('r', 'p', 'v', 'f') then
      execute format('grant select, insert, update, delete on table %s to %I', v_rel.oid::regclass, p_schema || '_authenticated');
      execute format('grant select on table %s to %I', v_rel.oid::regclass, p_schema || '_anon');
    elsif v_rel.relkind = 'S' then
      execute format('grant usage, select on sequence %s to %I', v_rel.oid::regclass, p_schema || '_authenticated');
    end if;
  end loop;
  foreach v_proc in array p_routines loop
    execute format('revoke execute on routine %s from public', v_proc::regprocedure);
    execute format('grant execute on routine %s to %I, %I', v_proc::regprocedure,
                   p_schema || '_authenticated', p_schema || '_anon');
  end loop;
end
$$;

-- A lease login role's share of its project's limits: CONNECTION LIMIT,
-- its class's `statement_timeout` and `idle_in_transaction_session_timeout`
-- (0: none). `p_limits` is the project's resolved limits; keys it lacks (a
-- project not upserted since version 1) take the defaults.
create or replace function supabase_connector.lease_role_limits(p_role text, p_class text, p_limits jsonb)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_setting record;
begin
  execute format('alter role %I connection limit %s', p_role,
                 coalesce((p_limits ->> 'connection_limit')::int, 10));
  for v_setting in
    select * from (values
      ('statement_timeout', coalesce(p_limits -> 'statement_timeout' ->> p_class,
                                     case p_class when 'anon' then '3000' when 'authenticated' then '8000' else '0' end)),
      ('idle_in_transaction_session_timeout', coalesce(p_limits ->> 'idle_in_transaction_session_timeout', '60000'))
    ) v(name, value)
  loop
    if v_setting.value::bigint = 0 then
      execute format('alter role %I reset %I', p_role, v_setting.name);
    else
      execute format('alter role %I set %I = %L', p_role, v_setting.name, v_setting.value::bigint::text);
    end if;
  end loop;
end
$$;

-- Bring the login roles of a project's live leases in line with its limits
-- (after they change, or drift by hand). Returns how many it touched.
create or replace function supabase_connector.project_lease_limits(p_slug text)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  l record;
  v_count integer := 0;
begin
  for l in
    select le.role_name, le.access_class, p.limits
    from supabase_connector.leases le join supabase_connector.projects p on p.slug = le.project
    where le.project = p_slug and le.revoked_at is null and le.role_name is not null
      and to_regrole(quote_ident(le.role_name)) is not null
    order by le.lease_id
  loop
    perform supabase_connector.lease_role_limits(l.role_name, l.access_class, l.limits);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Create the login role of a registered, live database lease: LOGIN with
-- the connector's SCRAM verifier, VALID UNTIL the lease's expiry, member of
-- the project's class role, the project's limits (connections, timeouts).
-- Refuses past `max_database_leases`. (A service-class lease's sessions
-- act as the owner through `role` in their connection options: PostgreSQL
-- refuses `ALTER ROLE … SET role` inside a SECURITY DEFINER function.)
create or replace function supabase_connector.lease_role_create(p_lease_id uuid, p_verifier text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set datestyle = 'ISO, YMD'
as $$
declare
  l record;
  v_role text := 'lease_' || replace(p_lease_id::text, '-', '');
  v_limits jsonb;
  v_live integer;
  v_max integer;
begin
  select le.*, p.schema_name, p.state, p.limits into l
  from supabase_connector.leases le join supabase_connector.projects p on p.slug = le.project
  where le.lease_id = p_lease_id;
  if not found or not l.database or l.revoked_at is not null or l.expires_at <= now()
     or l.state <> 'active' or l.role_name is distinct from v_role then
    perform supabase_connector.refuse(format('creating a login role for lease %s (not a live database lease)', p_lease_id));
  end if;
  if not supabase_connector.is_scram_verifier(p_verifier) then
    perform supabase_connector.refuse('a password that is not a SCRAM-SHA-256 verifier');
  end if;
  v_limits := l.limits;
  -- live database leases of the project, this one included (serialized per project)
  perform pg_advisory_xact_lock(hashtextextended('supabase_connector:database_leases:' || l.project, 0));
  v_max := coalesce((v_limits ->> 'max_database_leases')::int, 50);
  select count(*) into v_live from supabase_connector.leases
  where project = l.project and revoked_at is null and database and expires_at > now();
  if v_max > 0 and v_live > v_max then
    raise exception 'project % has % live database leases, its limit (limits.max_database_leases)', l.project, v_max
      using errcode = 'SC409', hint = 'revoke one, wait for one to expire, or raise the project''s limits.max_database_leases';
  end if;
  execute format('create role %I login inherit password %L valid until %L in role %I',
                 v_role, p_verifier, l.expires_at, l.schema_name || '_' || l.access_class);
  perform supabase_connector.lease_role_limits(v_role, l.access_class, v_limits);
end
$$;

-- A renewal: a new verifier and the lease's new expiry.
create or replace function supabase_connector.lease_role_renew(p_lease_id uuid, p_verifier text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set datestyle = 'ISO, YMD'
as $$
declare
  l record;
begin
  select * into l from supabase_connector.leases where lease_id = p_lease_id;
  if not found or not l.database or l.revoked_at is not null or l.role_name is null
     or to_regrole(quote_ident(l.role_name)) is null then
    perform supabase_connector.refuse(format('renewing the login role of lease %s', p_lease_id));
  end if;
  if not supabase_connector.is_scram_verifier(p_verifier) then
    perform supabase_connector.refuse('a password that is not a SCRAM-SHA-256 verifier');
  end if;
  execute format('alter role %I password %L valid until %L', l.role_name, p_verifier, l.expires_at);
end
$$;

-- Take a lease-shaped role apart, in the order that cannot hang: no new
-- logins, end its sessions, give what it created to the project's owner
-- (with the class privileges), drop what remains, drop it. Returns the
-- number of sessions ended. Every lookup is by index (what the roles own
-- and hold through pg_shdepend, their sessions without pg_stat_activity's
-- join to every role): a revoke costs the same at any number of projects.
create or replace function supabase_connector.lease_role_teardown(p_roles text[], p_schema text)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_role text;
  v_list text;
  v_oids oid[];
  v_objects oid[];
  v_routines oid[];
  v_terminated integer;
begin
  v_oids := array(select oid from pg_authid where rolname = any(p_roles));
  if cardinality(v_oids) = 0 then
    return 0;
  end if;
  select string_agg(quote_ident(rolname), ', ') into v_list from pg_authid where oid = any(v_oids);
  foreach v_role in array array(select rolname::text from pg_authid where oid = any(v_oids)) loop
    execute format('alter role %I nologin', v_role);
  end loop;
  select count(*) filter (where pg_terminate_backend(s.pid, 5000)) into v_terminated
  from pg_stat_get_activity(null) s where s.usesysid = any(v_oids);
  if exists (select 1 from pg_shdepend d
             where d.refclassid = 'pg_authid'::regclass and d.refobjid = any(v_oids) and d.deptype = 'o') then
    v_objects := array(select c.oid from pg_shdepend d join pg_class c on c.oid = d.objid
                       where d.refclassid = 'pg_authid'::regclass and d.refobjid = any(v_oids) and d.deptype = 'o'
                         and d.classid = 'pg_class'::regclass and d.dbid = (select oid from pg_database where datname = current_database())
                         and c.relnamespace = to_regnamespace(quote_ident(p_schema)));
    v_routines := array(select p.oid from pg_shdepend d join pg_proc p on p.oid = d.objid
                        where d.refclassid = 'pg_authid'::regclass and d.refobjid = any(v_oids) and d.deptype = 'o'
                          and d.classid = 'pg_proc'::regclass and d.dbid = (select oid from pg_database where datname = current_database())
                          and p.pronamespace = to_regnamespace(quote_ident(p_schema)));
    execute format('reassign owned by %s to %I', v_list, p_schema || '_owner');
    if cardinality(v_objects) + cardinality(v_routines) > 0 then
      perform supabase_connector.grant_class_privileges(p_schema, v_objects, v_routines);
    end if;
  end if;
  -- what remains (privileges granted to them, default privileges, objects
  -- elsewhere); most lease roles hold nothing, and DROP OWNED fires every
  -- event trigger in the database
  if exists (select 1 from pg_shdepend d where d.refclassid = 'pg_authid'::regclass and d.refobjid = any(v_oids)) then
    execute 'drop owned by ' || v_list;
  end if;
  execute 'drop role ' || v_list;
  return v_terminated;
end
$$;

-- Drop the roles of registered leases (revoked, or being revoked in this
-- transaction). Returns the number of sessions ended.
create or replace function supabase_connector.lease_roles_drop(p_lease_ids uuid[])
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  l record;
  v_terminated integer := 0;
begin
  for l in
    select le.role_name, le.anon_role_name, p.schema_name
    from supabase_connector.leases le join supabase_connector.projects p on p.slug = le.project
    where le.lease_id = any(p_lease_ids)
      and (le.role_name is not null or le.anon_role_name is not null)
    order by le.lease_id
  loop
    v_terminated := v_terminated + supabase_connector.lease_role_teardown(
      array_remove(array[l.role_name, l.anon_role_name], null), l.schema_name);
  end loop;
  return v_terminated;
end
$$;

-- Revoke leases: mark their rows (their tokens are refused from this
-- transaction's commit on) and drop their roles. Returns the number of
-- sessions ended.
create or replace function supabase_connector.lease_revoke(p_lease_ids uuid[], p_reason text)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  update supabase_connector.leases set revoked_at = now(), revoke_reason = p_reason
  where lease_id = any(p_lease_ids) and revoked_at is null;
  return supabase_connector.lease_roles_drop(p_lease_ids);
end
$$;

-- Drop a lease-shaped role that no live lease has (a leftover `verify`
-- found among a project's class roles' members).
create or replace function supabase_connector.lease_role_drop_orphan(p_role text, p_slug text)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_schema text;
begin
  select schema_name into v_schema from supabase_connector.projects where slug = p_slug;
  if v_schema is null
     or p_role !~ '^lease_[0-9a-f]{32}(_anon)?$'
     or exists (select 1 from supabase_connector.leases l
                where l.revoked_at is null and p_role in (l.role_name, l.anon_role_name))
     or not exists (select 1 from pg_auth_members a join pg_roles g on g.oid = a.roleid
                    where a.member = to_regrole(quote_ident(p_role))
                      and g.rolname in (v_schema || '_service_role', v_schema || '_authenticated', v_schema || '_anon')) then
    perform supabase_connector.refuse(format('dropping role %s', p_role));
  end if;
  return supabase_connector.lease_role_teardown(array[p_role], v_schema);
end
$$;

-- 5. The API's check of every request ----------------------------------------

-- PostgREST's `db-pre-request`: runs after the role switch, before the
-- query. A request whose role is a project's (`proj_…`, or a lease role),
-- or whose token the connector issued, needs a live lease: the token's
-- `jti`, for that project and class, not revoked, not expired. Else 401.
-- Supabase's own tokens (the central keys, GoTrue users) pass untouched.
create schema if not exists supabase_connector_api;
revoke all on schema supabase_connector_api from public;
grant usage on schema supabase_connector_api to public;

create or replace function supabase_connector_api.pre_request()
returns void
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  -- the role PostgREST switched to, and the one the token names (they
  -- differ only when the role's own settings set `role`, as a version-1
  -- service lease's did)
  v_role text := coalesce(nullif(current_setting('role', true), 'none'), '');
  v_claimed text := coalesce(v_claims ->> 'role', v_role);
  v_jti text := v_claims ->> 'jti';
begin
  if not (v_role like 'proj\_%' or v_role like 'lease\_%'
          or v_claimed like 'proj\_%' or v_claimed like 'lease\_%'
          or coalesce(v_claims ->> 'iss', '') = 'supabase-connector') then
    return;
  end if;
  if v_jti ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' and exists (
       select 1
       from supabase_connector.leases l
       cross join lateral (select 'proj_' || replace(l.project, '-', '_') as s) p
       where l.lease_id = v_jti::uuid and l.revoked_at is null and l.expires_at > now()
         and v_claimed in (p.s || '_' || l.access_class, p.s || '_anon', l.role_name, l.anon_role_name)
         and (v_role = v_claimed
              -- a version-1 service lease's role switched on to its owner
              or (l.anon_role_name is not null and l.access_class = 'service_role' and v_role = p.s || '_owner'))) then
    return;
  end if;
  if v_claims is null or v_claims = '{}' then
    -- no token: the anonymous role of an isolated project's PostgREST
    raise sqlstate 'PT401' using message = 'a lease''s token is required';
  end if;
  raise sqlstate 'PT401' using message = 'lease revoked or expired';
end
$$;
revoke all on function supabase_connector_api.pre_request() from public;
grant execute on function supabase_connector_api.pre_request() to public;

-- 6. Exposure: one served list per API pool ------------------------------------

-- The central list: base schemas, then the active, exposed, shared projects
-- on the central pool, in a stable order. Schemas that do not exist are
-- never listed (a listed schema that does not exist breaks the whole API).
create or replace function supabase_connector.db_schemas_list(p_base text[] default null)
returns text
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  -- plpgsql, so that a session plans it once
  return (with base as (
    select s, ord
    from unnest(coalesce(
      p_base,
      (select array(select jsonb_array_elements_text(value -> 'base_schemas'))
         from supabase_connector.meta where key = 'exposure'),
      array['public', 'storage', 'graphql_public'])) with ordinality as b(s, ord)
  ), projects as (
    select schema_name as s
    from supabase_connector.projects
    where pool = 'central' and state = 'active' and exposed and isolation = 'shared'
      -- per row, by index (not a join with every schema)
      and to_regnamespace(quote_ident(schema_name)) is not null
  )
  select string_agg(s, ',' order by grp, ord, s)
  from (
    select s, 0 as grp, ord from base
    union all
    select s, 1, 0 from projects where s not in (select s from base)
  ) all_schemas);
end
$$;

-- The served list of a pool: `central`'s above; a configured pool's, its
-- own projects' schemas only (`supabase_connector_api`, which holds nothing
-- but the pre-request check, while it has none: PostgREST needs one).
create or replace function supabase_connector.db_schemas_list_for(p_pool text, p_base text[] default null)
returns text
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return (select case
    when p_pool = 'central' then supabase_connector.db_schemas_list(p_base)
    else coalesce(
      (select string_agg(schema_name, ',' order by schema_name)
       from supabase_connector.projects
       where pool = p_pool and state = 'active' and exposed and isolation = 'shared'
         -- per row, by index (not a join with every schema)
         and to_regnamespace(quote_ident(schema_name)) is not null),
      'supabase_connector_api')
  end);
end
$$;

-- A `pgrst.*` role setting of an API login role (all databases).
create or replace function supabase_connector.served_setting(p_role text, p_name text)
returns text
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return (select substr(c, length(p_name) + 2)
          from pg_db_role_setting s, unnest(s.setconfig) c
          where s.setrole = to_regrole(quote_ident(p_role)) and s.setdatabase = 0
            and c like replace(p_name, '_', '\_') || '=%'
          limit 1);
end
$$;

create or replace function supabase_connector.served_pre_request(p_role text)
returns text
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return supabase_connector.served_setting(p_role, 'pgrst.db_pre_request');
end
$$;

-- The login role of a pool's PostgREST.
create or replace function supabase_connector.pool_authenticator(p_pool text)
returns text
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return case when p_pool = 'central' then 'authenticator'
              else (select authenticator from supabase_connector.pools where name = p_pool) end;
end
$$;

-- Recompute and apply the served lists of the given pools (each under its
-- own advisory lock, taken in name order; project locks come first), and
-- the pre-request hook beside each. One NOTIFY pair when anything changed.
create or replace function supabase_connector.apply_exposure(p_mode text, p_base text[], p_pools text[])
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_base text;
  v_pool text;
  v_role text;
  v_list text;
  v_lists jsonb := '{}';
  v_changed boolean := false;
begin
  if p_mode not in ('role_setting', 'pre_config', 'none') then
    raise exception 'unknown exposure mode %', p_mode;
  end if;
  foreach v_base in array p_base loop
    if v_base !~ '^[a-z_][a-z0-9_]{0,62}$'
       or v_base in ('supabase_connector', 'supabase_connector_api', 'auth', 'pg_catalog', 'information_schema', 'pg_toast')
       or v_base like 'proj\_%' then
      raise exception 'schema % cannot be a base schema of the API', v_base;
    end if;
  end loop;
  insert into supabase_connector.meta (key, value)
  values ('exposure', jsonb_build_object('mode', p_mode, 'base_schemas', to_jsonb(p_base)))
  on conflict (key) do update set value = excluded.value
  where supabase_connector.meta.value is distinct from excluded.value;

  for v_pool in select distinct x from unnest(p_pools) x order by 1 loop
    v_role := supabase_connector.pool_authenticator(v_pool);
    if v_role is null or to_regrole(quote_ident(v_role)) is null then
      continue;
    end if;
    perform pg_advisory_xact_lock(hashtextextended('supabase_connector:exposure:' || v_pool, 0));
    v_list := supabase_connector.db_schemas_list_for(v_pool, p_base);
    v_lists := v_lists || jsonb_build_object(v_pool, to_jsonb(string_to_array(v_list, ',')));
    if p_mode = 'role_setting' then
      if supabase_connector.served_setting(v_role, 'pgrst.db_schemas') is distinct from v_list then
        execute format('alter role %I set pgrst.db_schemas = %L', v_role, v_list);
        v_changed := true;
      end if;
      if supabase_connector.served_pre_request(v_role) is distinct from 'supabase_connector_api.pre_request' then
        execute format('alter role %I set pgrst.db_pre_request = %L', v_role, 'supabase_connector_api.pre_request');
        v_changed := true;
      end if;
    elsif p_mode = 'pre_config' then
      v_changed := true;
    end if;
  end loop;
  if v_changed then
    perform pg_notify('pgrst', 'reload config');
    perform pg_notify('pgrst', 'reload schema');
  end if;
  return jsonb_build_object('mode', p_mode, 'schemas', coalesce(v_lists -> 'central', '[]'),
                            'pools', v_lists, 'changed', v_changed);
end
$$;

-- The central pool alone (the version-1 signature).
create or replace function supabase_connector.apply_exposure(p_mode text, p_base text[])
returns jsonb
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select supabase_connector.apply_exposure(p_mode, p_base, array['central'])
$$;

-- `PGRST_DB_PRE_CONFIG` (exposure mode `pre_config`): the served list of
-- the pool whose login role calls it, and the pre-request hook.
create or replace function supabase_connector_pgrst.pre_config()
returns void
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select set_config('pgrst.db_schemas', supabase_connector.db_schemas_list_for(
           coalesce((select name from supabase_connector.pools where authenticator = session_user), 'central')), true);
  select set_config('pgrst.db_pre_request', 'supabase_connector_api.pre_request', true);
$$;

-- 7. Upgrade a version-1 registry --------------------------------------------------

do $$
declare
  v_runtime text := current_setting('supabase_connector.runtime_role');
  v_mode text;
  m record;
begin
  -- On 16+ the grants the runtime role made in project and lease roles
  -- (a project's owner to its service class, a lease's role to
  -- `authenticator`, …) hang on the ADMIN option it is about to give up:
  -- this superuser makes them again, with the same options, and the runtime
  -- role's own are revoked (its grants to itself simply go).
  if current_setting('server_version_num')::int >= 160000 then
    for m in
      select g.rolname as role, r.rolname as member, a.admin_option, a.inherit_option, a.set_option
      from pg_auth_members a join pg_roles g on g.oid = a.roleid join pg_roles r on r.oid = a.member
      where a.grantor = v_runtime::regrole
        and (g.rolname ~ '^lease_[0-9a-f]{32}(_anon)?$'
             or exists (select 1 from supabase_connector.project_role(g.rolname)))
      order by g.rolname, r.rolname
    loop
      if m.member <> v_runtime then
        execute format('grant %I to %I with admin %s, inherit %s, set %s',
                       m.role, m.member, m.admin_option::text, m.inherit_option::text, m.set_option::text);
      end if;
      execute format('revoke %I from %I granted by %I', m.role, m.member, v_runtime);
    end loop;
  end if;

  -- The runtime role gives up every membership it holds in project and
  -- lease roles (on 16+ the ADMIN ones its CREATE ROLE left, and those
  -- `createrole_self_grant` added; kept owners of earlier versions).
  for m in
    select g.rolname as role, a.grantor::regrole::text as grantor
    from pg_auth_members a join pg_roles g on g.oid = a.roleid
    where a.member = v_runtime::regrole
      and (g.rolname ~ '^lease_[0-9a-f]{32}(_anon)?$'
           or exists (select 1 from supabase_connector.project_role(g.rolname)))
  loop
    if current_setting('server_version_num')::int >= 160000 then
      execute format('revoke %I from %I granted by %s', m.role, v_runtime, m.grantor);
    else
      execute format('revoke %I from %I', m.role, v_runtime);
    end if;
  end loop;

  -- On 16+ class roles hold Supabase's `authenticated` and `anon` without
  -- SET (see membership_kind): the grants version 1 made with SET change
  -- their options in place.
  if current_setting('server_version_num')::int >= 160000 then
    for m in
      select g.rolname as role, r.rolname as member
      from pg_auth_members a join pg_roles g on g.oid = a.roleid join pg_roles r on r.oid = a.member
      where g.rolname in ('authenticated', 'anon')
        and exists (select 1 from supabase_connector.project_role(r.rolname) x where x.kind = g.rolname)
        and (to_jsonb(a) ->> 'set_option')::boolean
      order by 1, 2
    loop
      perform supabase_connector.role_revoke(m.role, m.member);
      perform supabase_connector.role_grant(m.role, m.member);
    end loop;
  end if;

  -- Tokens now name class roles: the API login role of every served
  -- project holds them. Tokens of version-1 leases (naming lease roles)
  -- keep working until their lease ends: pre_request accepts them.
  for m in
    select c.role, supabase_connector.api_authenticator(p.slug) as member
    from supabase_connector.projects p
    cross join lateral (values (p.schema_name || '_service_role'), (p.schema_name || '_authenticated'),
                               (p.schema_name || '_anon')) c(role)
    where supabase_connector.api_authenticator(p.slug) is not null
      and to_regrole(quote_ident(c.role)) is not null
      and to_regrole(quote_ident(supabase_connector.api_authenticator(p.slug))) is not null
  loop
    perform supabase_connector.role_grant(m.role, m.member);
  end loop;

  -- The central API checks every request from now on.
  select value ->> 'mode' into v_mode from supabase_connector.meta where key = 'exposure';
  if coalesce(v_mode, 'role_setting') = 'role_setting'
     and supabase_connector.served_pre_request('authenticator') is distinct from 'supabase_connector_api.pre_request' then
    alter role authenticator set pgrst.db_pre_request = 'supabase_connector_api.pre_request';
    perform pg_notify('pgrst', 'reload config');
  end if;
end
$$;

-- 8. Who may call what ----------------------------------------------------------------

revoke all on all functions in schema supabase_connector from public;
do $$
declare
  v_runtime text := current_setting('supabase_connector.runtime_role');
begin
  execute format('grant execute on function
                  supabase_connector.apply_exposure(text, text[]), supabase_connector.apply_exposure(text, text[], text[]),
                  supabase_connector.db_schemas_list_for(text, text[]), supabase_connector.served_setting(text, text),
                  supabase_connector.project_role(text), supabase_connector.effective_access(text, text, text),
                  supabase_connector.db_schemas_list(text[]), supabase_connector.served_db_schemas(),
                  supabase_connector.served_pre_request(text),
                  supabase_connector.foreign_grants(text), supabase_connector.tenant_code_objects(text),
                  supabase_connector.role_grant(text, text), supabase_connector.role_revoke(text, text),
                  supabase_connector.role_create(text), supabase_connector.role_alter(text, text[]),
                  supabase_connector.role_password(text, text), supabase_connector.role_set(text, text, text),
                  supabase_connector.role_drop(text), supabase_connector.project_drop(text),
                  supabase_connector.role_default_acl_revoke(text, text, text, text),
                  supabase_connector.lease_role_create(uuid, text), supabase_connector.lease_role_renew(uuid, text),
                  supabase_connector.lease_revoke(uuid[], text), supabase_connector.lease_role_drop_orphan(text, text),
                  supabase_connector.project_lease_limits(text)
                  to %I', v_runtime);
end
$$;

insert into supabase_connector.meta (key, value) values ('bootstrap_version', '2')
on conflict (key) do update set value = excluded.value;
