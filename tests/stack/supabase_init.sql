-- Shape a fresh cluster like Supabase's database (run as the superuser
-- `supabase_admin` in database `postgres`). Roles and attributes as in
-- Supabase's Postgres image; `postgres` is NOT a superuser.
-- psql variables: postgres_password, authenticator_password, pg16 (true/false).

\set ON_ERROR_STOP on

create role postgres login nosuperuser createrole createdb replication bypassrls
  password :'postgres_password';
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit password :'authenticator_password';
create role supabase_auth_admin login noinherit createrole;
create role supabase_storage_admin nologin noinherit createrole;

grant anon, authenticated, service_role to authenticator;

-- Supabase's 16+ images give `postgres` ADMIN OPTION on the API roles.
\if :pg16
grant anon, authenticated, service_role to postgres with admin option;
\else
grant anon, authenticated, service_role to postgres;
\endif

grant all on database postgres to postgres;
grant all on schema public to postgres;

-- auth: owned by supabase_auth_admin, as GoTrue's migrations leave it.
create schema auth authorization supabase_auth_admin;
create table auth.users (
  instance_id uuid,
  id uuid primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255) unique,
  encrypted_password varchar(255),
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
alter table auth.users owner to supabase_auth_admin;

create function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
create function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
create function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;

grant usage on schema auth to anon, authenticated, service_role, postgres;
grant all on all tables in schema auth to postgres, service_role;
grant execute on all functions in schema auth to anon, authenticated, service_role, postgres;

-- The other schemas of a Supabase database that PostgREST serves or needs.
create schema storage authorization supabase_storage_admin;
grant usage on schema storage to anon, authenticated, service_role, postgres;
create table storage.buckets (id text primary key, name text not null, public boolean default false);
alter table storage.buckets owner to supabase_storage_admin;
create schema graphql_public;
grant usage on schema graphql_public to anon, authenticated, service_role, postgres;
create schema extensions;
grant usage on schema extensions to anon, authenticated, service_role, postgres;
grant all on schema extensions to postgres;

-- A few users, as GoTrue would have created them.
insert into auth.users (id, aud, role, email) values
  ('00000000-0000-4000-8000-00000000a11c', 'authenticated', 'authenticated', 'alice@example.test'),
  ('00000000-0000-4000-8000-000000000b0b', 'authenticated', 'authenticated', 'bob@example.test'),
  ('00000000-0000-4000-8000-0000000ca201', 'authenticated', 'authenticated', 'carol@example.test');
