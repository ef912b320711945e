-- supabase-connector bootstrap, version 3: provisioning in fewer, cheaper
-- statements.
--
-- Applied after v2.sql, in the same transaction, as the same superuser;
-- idempotent like it. Nothing a version-2 registry holds changes meaning.
--
-- What changes:
-- * `pool_served` counts each API pool's served projects (shared, active,
--   exposed), kept by a trigger on `projects`: placing a new project reads
--   one row per pool instead of counting every project.
-- * `roles_apply(calls)` runs a list of role-function calls in one
--   statement: a project's provisioning sends one call instead of one per
--   role, setting and membership. Each call is the role function itself,
--   with its own checks; `roles_apply` adds no privilege of its own
--   (SECURITY INVOKER).

-- 1. Served projects per API pool --------------------------------------------

create table if not exists supabase_connector.pool_served (
  pool     text primary key,
  projects integer not null default 0 check (projects >= 0)
);

-- Whether a registry row counts toward its pool's load. Supabase's own
-- API (`central`) is not counted: it has no limit, and one counter row for
-- every central project would serialize their upserts.
create or replace function supabase_connector.pool_served_delta()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op in ('UPDATE', 'DELETE') and old.pool <> 'central'
     and old.state = 'active' and old.exposed and old.isolation = 'shared' then
    update supabase_connector.pool_served set projects = projects - 1 where pool = old.pool;
  end if;
  if tg_op in ('INSERT', 'UPDATE') and new.pool <> 'central'
     and new.state = 'active' and new.exposed and new.isolation = 'shared' then
    insert into supabase_connector.pool_served (pool, projects) values (new.pool, 1)
    on conflict (pool) do update set projects = supabase_connector.pool_served.projects + 1;
  end if;
  return null;
end
$$;

drop trigger if exists pool_served_insert_delete on supabase_connector.projects;
create trigger pool_served_insert_delete
  after insert or delete on supabase_connector.projects
  for each row execute function supabase_connector.pool_served_delta();
-- an update counts only when it moves a row in or out of a pool's load
drop trigger if exists pool_served_update on supabase_connector.projects;
create trigger pool_served_update
  after update of pool, state, exposed, isolation on supabase_connector.projects
  for each row
  when (old.pool is distinct from new.pool or old.state is distinct from new.state
        or old.exposed is distinct from new.exposed or old.isolation is distinct from new.isolation)
  execute function supabase_connector.pool_served_delta();

-- Recounted at every bootstrap: exact whatever came before.
lock table supabase_connector.projects in share mode;
delete from supabase_connector.pool_served;
insert into supabase_connector.pool_served (pool, projects)
select pool, count(*) from supabase_connector.projects
where pool <> 'central' and state = 'active' and exposed and isolation = 'shared'
group by pool;

-- 2. Role-function calls in one statement -----------------------------------

-- `p_calls`: a JSON array of calls, each `[function, arguments...]`, run in
-- order: `["role_create", role]`, `["role_alter", role, [attribute...]]`,
-- `["role_set", role, name, value-or-null]`, `["role_grant", role, member]`,
-- `["role_revoke", role, member]`. SECURITY INVOKER: each call runs with the
-- caller's EXECUTE on that role function and that function's own checks.
create or replace function supabase_connector.roles_apply(p_calls jsonb)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  v_call jsonb;
begin
  if jsonb_typeof(p_calls) is distinct from 'array' then
    perform supabase_connector.refuse('roles_apply takes a JSON array of calls');
  end if;
  for v_call in select c from jsonb_array_elements(p_calls) c loop
    case v_call ->> 0
      when 'role_create' then
        perform supabase_connector.role_create(v_call ->> 1);
      when 'role_alter' then
        perform supabase_connector.role_alter(
          v_call ->> 1, array(select jsonb_array_elements_text(v_call -> 2)));
      when 'role_set' then
        perform supabase_connector.role_set(v_call ->> 1, v_call ->> 2, v_call ->> 3);
      when 'role_grant' then
        perform supabase_connector.role_grant(v_call ->> 1, v_call ->> 2);
      when 'role_revoke' then
        perform supabase_connector.role_revoke(v_call ->> 1, v_call ->> 2);
      else
        perform supabase_connector.refuse(format('role call %s', v_call));
    end case;
  end loop;
end
$$;

-- 3. Who may call what ----------------------------------------------------------

revoke all on function supabase_connector.pool_served_delta() from public;
revoke all on function supabase_connector.roles_apply(jsonb) from public;
revoke all on supabase_connector.pool_served from public;
do $$
declare
  v_runtime text := current_setting('supabase_connector.runtime_role');
begin
  execute format('grant select on supabase_connector.pool_served to %I', v_runtime);
  execute format('grant execute on function supabase_connector.roles_apply(jsonb) to %I', v_runtime);
  -- `roles_apply` runs as its caller and refuses through it (it only raises)
  execute format('grant execute on function supabase_connector.refuse(text) to %I', v_runtime);
end
$$;

insert into supabase_connector.meta (key, value) values ('bootstrap_version', '3')
on conflict (key) do update set value = excluded.value;
