"""Issue 8: migrations, removal, and drift verification with repair."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List

import psycopg
import pytest

import pgrest
from conftest import Admin, cli, connector_config, info, new_slug
from supabase_connector import Conflict, MigrationFailed, NotFound, SupabaseExecutor

ALICE = "00000000-0000-4000-8000-00000000a11c"
BOB = "00000000-0000-4000-8000-000000000b0b"

MIGRATIONS = [
    ("20240101000000", "tables", """
create table profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  display_name text not null
);
create table posts (
  id bigserial primary key,
  author uuid not null default auth.uid() references profiles (id),
  title text not null,
  updated_at timestamptz
);
"""),
    ("20240102000000", "policies", """
create policy "read own posts" on posts for select to authenticated using (author = auth.uid());
create policy "write own posts" on posts for insert to authenticated with check (author = auth.uid());
create policy "profiles are public" on profiles for select using (true);
"""),
    ("20240103000000", "trigger_and_view", """
create function touch() returns trigger language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end $$;
create trigger posts_touch before insert or update on posts for each row execute function touch();
create view post_titles as select id, title from posts;
"""),
]


def migrations(items: List[Any] = MIGRATIONS) -> List[Dict[str, str]]:
    return [{"version": v, "name": n, "sql": s} for v, n, s in items]


def apply(executor: SupabaseExecutor, slug: str, items: List[Dict[str, str]]) -> Dict[str, Any]:
    return executor.execute("apply_database_migrations", {"project": slug, "migrations": items})


def test_realistic_migrations(executor: SupabaseExecutor, admin: Admin, api: pgrest.Client) -> None:
    slug = new_slug("mig")
    s = f"proj_{slug}"
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    first = apply(executor, slug, migrations())
    assert [m["version"] for m in first["applied"]] == [v for v, _, _ in MIGRATIONS]
    second = apply(executor, slug, migrations())
    assert second["applied"] == [] and len(second["skipped"]) == 3
    # everything belongs to the project, RLS on, the view runs as the caller
    owners = admin.rows("select relname, relowner::regrole::text, relrowsecurity from pg_class where relnamespace = %s::regnamespace and relkind in ('r', 'v') order by 1", (s,))
    assert owners == [("post_titles", f"{s}_owner", False), ("posts", f"{s}_owner", True), ("profiles", f"{s}_owner", True)]
    assert admin.value("select reloptions::text from pg_class where oid = %s::regclass", (f"{s}.post_titles",)) == "{security_invoker=true}"
    # PostgREST-style access after migrations: alice sees and writes her own posts only
    for uid in (ALICE, BOB):
        executor.execute("upsert_database_access", {"project": slug, "principal": {"type": "user", "id": uid},
                                                    "platform_role": "project_contributor", "issue_lease": False})
    alice = executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "user", "id": ALICE}})["lease"]
    bob = executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "user", "id": BOB}})["lease"]
    service = executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "service", "id": "project"}})["lease"]
    api.request(service["api"]["access_token"], s, "insert into profiles values (%s, 'alice'), (%s, 'bob')", (ALICE, BOB))
    api.request(alice["api"]["access_token"], s, "insert into posts (title) values ('hello from alice')")
    api.request(bob["api"]["access_token"], s, "insert into posts (title) values ('hello from bob')")
    assert api.request(alice["api"]["access_token"], s, "select title, updated_at is not null from posts") == [("hello from alice", True)]
    assert api.request(bob["api"]["access_token"], s, "select title from post_titles") == [("hello from bob",)]
    with pytest.raises(pgrest.ApiError):
        api.request(alice["api"]["access_token"], s, "insert into posts (author, title) values (%s, 'forged')", (BOB,))
    assert api.request(service["api"]["access_token"], s, "select count(*) from posts") == [(2,)]
    # a modified applied file is a conflict and changes nothing
    changed = migrations()
    changed[1]["sql"] += "\ncreate table sneaky (id int);"
    with pytest.raises(Conflict) as err:
        apply(executor, slug, changed)
    assert err.value.details["version"] == "20240102000000"
    assert admin.value("select to_regclass(%s)", (f"{s}.sneaky",)) is None


def test_cli_migrate_reads_a_directory(stack: Any, executor: SupabaseExecutor, tmp_path: Path, admin: Admin) -> None:
    slug = new_slug("dir")
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    for version, name, sql in MIGRATIONS:
        (tmp_path / f"{version}_{name}.sql").write_text(sql)
    (tmp_path / "README.md").write_text("not a migration")
    proc = cli("migrate", "--project", slug, str(tmp_path), "--output", "json", config=connector_config(stack))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [m["name"] for m in out["applied"]] == ["tables", "policies", "trigger_and_view"]
    proc = cli("migrate", "--project", slug, str(tmp_path), "--output", "json", config=connector_config(stack))
    assert json.loads(proc.stdout)["applied"] == []


def test_failing_migration_rolls_back_alone(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("fail")
    s = f"proj_{slug}"
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    items = migrations(MIGRATIONS[:1]) + [
        {"version": "20240109000000", "name": "broken", "sql": "create table half (id int);\ninsert into half values (1);\nselect * from missing_table;"},
        {"version": "20240110000000", "name": "after", "sql": "create table after_broken (id int);"},
    ]
    with pytest.raises(MigrationFailed) as err:
        apply(executor, slug, items)
    d = err.value.details
    assert d["file"].startswith("20240109000000_broken") and d["statement"] == 3 and d["line"] == 3
    assert d["sqlstate"] == "42P01" and "missing_table" in d["message"]
    assert admin.value("select to_regclass(%s)", (f"{s}.profiles",)) is not None  # the earlier one stays
    assert admin.value("select to_regclass(%s)", (f"{s}.half",)) is None  # the failing one rolled back whole
    assert admin.value("select to_regclass(%s)", (f"{s}.after_broken",)) is None  # nothing after it ran
    assert [r[0] for r in admin.rows("select version from supabase_connector.migrations where project = %s", (slug,))] == ["20240101000000"]


FORBIDDEN = [
    "create table public.escape (id int)",
    "create schema escape",
    "set role postgres",
    "reset role; create table public.escape (id int)",
    "set role service_role",
    "create table t (id int); grant select on t to anon",
    "alter role postgres nosuperuser",
    "create extension if not exists pgcrypto",
    "copy (select 1) to program 'id'",
    "select * from auth.users",
    "select * from supabase_connector.projects",
    "alter default privileges in schema {s} grant select on tables to anon",
    "create table t2 (id int); alter table t2 owner to postgres",
]


@pytest.fixture(scope="module")
def sandbox(executor: SupabaseExecutor) -> str:
    slug = new_slug("sbx")
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    return slug


@pytest.mark.parametrize("sql", FORBIDDEN)
def test_migration_cannot_leave_its_project(executor: SupabaseExecutor, admin: Admin, sandbox: str, sql: str) -> None:
    s = f"proj_{sandbox}"

    def state() -> Any:
        return (
            admin.rows("select relname from pg_class where relnamespace in (%s::regnamespace, 'public'::regnamespace) order by 1", (s,)),
            admin.rows("select nspname from pg_namespace order by 1"),
            admin.rows("select rolname, rolsuper, rolcreaterole from pg_roles where rolname not like 'lease\\_%%' order by 1"),
            admin.rows("select extname from pg_extension order by 1"),
        )

    before = state()
    with pytest.raises((MigrationFailed, Conflict)):
        apply(executor, sandbox, [{"version": str(uuid.uuid4().int)[:14], "name": "escape", "sql": sql.format(s=s)}])
    assert state() == before


def test_archive_then_restore(executor: SupabaseExecutor, admin: Admin, api: pgrest.Client) -> None:
    slug = new_slug("arch")
    s = f"proj_{slug}"
    state = executor.execute("upsert_database_project_access", {"project": slug})
    with psycopg.connect(state["lease"]["database"]["url"], autocommit=True) as conn:
        conn.execute("create table kept (v text)")
        conn.execute("insert into kept values ('data')")
    lease = executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "service", "id": "project"}})["lease"]
    removed = executor.execute("remove_database_project", {"project": slug})
    assert removed["state"] == "archived" and lease["lease_id"] in removed["revoked_leases"]
    assert not api.allowed(lease["api"]["access_token"], s, "select 1")
    assert admin.value(f"select count(*) from {s}.kept") == 1  # data kept
    for cls in ("service_role", "authenticated", "anon"):
        assert admin.value("select has_schema_privilege(%s, %s, 'USAGE')", (f"{s}_{cls}", s)) is False
    assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (f"{s}_service_role", f"{s}_owner")) is False
    with pytest.raises(Conflict):
        executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "service", "id": "project"}})
    served = admin.value("select array_to_string(setconfig, ',') from pg_db_role_setting where setrole = 'authenticator'::regrole and setdatabase = 0")
    assert s not in served
    # a later upsert restores it exactly
    restored = executor.execute("upsert_database_project_access", {"project": slug})
    assert api.request(restored["lease"]["api"]["access_token"], s, "select v from kept") == [("data",)]
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True


def test_drop_removes_everything_and_never_lists_a_missing_schema(stack: Any, executor: SupabaseExecutor, admin: Admin) -> None:
    slugs = [new_slug("drop") for _ in range(4)]
    for slug in slugs:
        executor.execute("upsert_database_project_access", {"project": slug})
    stop = threading.Event()
    violations: List[str] = []
    polls = [0]

    def poll() -> None:
        with psycopg.connect(info(stack, "admin_url"), autocommit=True) as conn:
            while not stop.is_set():
                listed, existing = conn.execute(
                    "select (select c from pg_db_role_setting s, unnest(s.setconfig) c where s.setrole = 'authenticator'::regrole "
                    "and s.setdatabase = 0 and c like 'pgrst.db\\_schemas=%%'), array(select nspname::text from pg_namespace)"
                ).fetchone()
                polls[0] += 1
                for schema in (listed or "=").split("=", 1)[1].split(","):
                    if schema and schema not in existing:
                        violations.append(schema)

    poller = threading.Thread(target=poll)
    poller.start()
    while polls[0] == 0 and poller.is_alive():
        threading.Event().wait(0.01)
    try:
        for slug in slugs:
            out = executor.execute("remove_database_project", {"project": slug, "drop_data": True})
            assert out["state"] == "dropped"
    finally:
        stop.set()
        poller.join()
    assert polls[0] > 0 and violations == []
    for slug in slugs:
        s = f"proj_{slug}"
        assert admin.value("select count(*) from pg_namespace where nspname = %s", (s,)) == 0
        assert admin.value("select count(*) from pg_roles where rolname like %s", (s + "\\_%",)) == 0
        assert admin.value("select count(*) from pg_roles r join supabase_connector.leases l on r.rolname = l.role_name where l.project = %s", (slug,)) == 0
        assert admin.value("select count(*) from supabase_connector.projects where slug = %s and state <> 'dropped'", (slug,)) == 0
    with pytest.raises(NotFound):
        executor.execute("remove_database_project", {"project": new_slug("never")})


# ---------------------------------------------------------------- drift

Drift = Callable[[Admin, str, str], None]


def _as_postgres(admin: Admin, sql: str) -> None:
    admin.run("set role postgres")
    try:
        admin.run(sql)
    finally:
        admin.run("reset role")


def _without_event_trigger(admin: Admin, sql: str) -> None:
    """The event trigger puts RLS and security_invoker back at once; a
    superuser can still get past it (event triggers do not fire in replica
    mode)."""
    admin.run("set session_replication_role = replica")
    try:
        admin.run(sql)
    finally:
        admin.run("set session_replication_role = origin")


DRIFTS: Dict[str, Drift] = {
    "role_attributes": lambda a, s, slug: a.run(f"alter role {s}_anon login"),
    "membership_missing": lambda a, s, slug: _as_postgres(a, f"revoke {s}_owner from {s}_service_role"),
    "membership_extra": lambda a, s, slug: _as_postgres(a, f"grant {s}_authenticated to {s}_anon"),
    "schema_usage_missing": lambda a, s, slug: a.run(f"revoke usage on schema {s} from {s}_anon"),
    "schema_grant_extra": lambda a, s, slug: a.run(f"grant usage on schema {s} to authenticated"),
    "default_privileges_missing": lambda a, s, slug: a.run(
        f"alter default privileges for role {s}_owner in schema {s} revoke select on tables from {s}_anon"),
    "rls_disabled": lambda a, s, slug: _without_event_trigger(a, f"alter table {s}.t disable row level security"),
    "view_without_security_invoker": lambda a, s, slug: _without_event_trigger(a, f"alter view {s}.v reset (security_invoker)"),
    "privileges_missing": lambda a, s, slug: a.run(f"revoke select on {s}.t from {s}_anon"),
    "foreign_grant": lambda a, s, slug: a.run(f"grant select on {s}.t to anon"),
    "security_definer_function": lambda a, s, slug: a.run(f"alter function {s}.f() security definer"),
    "role_privileged_attribute": lambda a, s, slug: a.run(f"alter role {s}_anon bypassrls"),
    "exposure_mismatch": lambda a, s, slug: a.run("alter role authenticator set pgrst.db_schemas = 'public,storage,graphql_public'"),
    # the registry row of a live lease edited away by hand: its roles stay behind
    "lease_role_orphan": lambda a, s, slug: a.run(
        f"update supabase_connector.leases set revoked_at = now() where project = '{slug}' and revoked_at is null"),
    "matview_class_grant": lambda a, s, slug: a.run(f"grant select on {s}.mv to {s}_anon"),
}
# drifts that need a superuser to undo are reported, not repaired
NOT_REPAIRABLE = {"security_definer_function", "role_privileged_attribute"}


def _drop_lease_role(admin: Admin, slug: str) -> None:
    role = admin.value("select role_name from supabase_connector.leases where project = %s and revoked_at is null limit 1", (slug,))
    admin.run(f'drop owned by "{role}"')
    admin.run(f'drop role "{role}"')


DRIFTS["lease_role_missing"] = lambda a, s, slug: _drop_lease_role(a, slug)


@pytest.mark.parametrize("code", sorted(DRIFTS))
def test_drift_is_found_and_repaired(executor: SupabaseExecutor, admin: Admin, code: str) -> None:
    slug = new_slug("dr")
    s = f"proj_{slug}"
    state = executor.execute("upsert_database_project_access", {"project": slug, "lease_ttl_seconds": 600})
    with psycopg.connect(state["lease"]["database"]["url"], autocommit=True) as conn:
        conn.execute("create table t (id int)")
        conn.execute("create view v as select id from t")
        conn.execute("create materialized view mv as select id from t")
        conn.execute("create function f() returns int language sql as 'select 1'")
    baseline = executor.execute("verify_database_project", {"project": slug})
    assert baseline["clean"] is True, [f for f in baseline["projects"][0]["findings"] if f["severity"] == "error"]
    DRIFTS[code](admin, s, slug)
    try:
        report = executor.execute("verify_database_project", {"project": slug})
        found = [f for f in report["projects"][0]["findings"] if f["code"] == code]
        assert found, report
        assert all({"code", "severity", "object", "expected", "actual"} <= set(f) for f in found)
        if code in NOT_REPAIRABLE:
            assert all(f["repairable"] is False for f in found)
            return
        repaired = executor.execute("verify_database_project", {"project": slug, "repair": True})
        assert all(f["repaired"] for f in repaired["projects"][0]["findings"] if f["code"] == code)
        after = executor.execute("verify_database_project", {"project": slug})
        assert [f for f in after["projects"][0]["findings"] if f["code"] == code] == []
        assert after["clean"] is True, after
    finally:
        if code == "role_privileged_attribute":
            admin.run(f"alter role {s}_anon nobypassrls")
        if code == "security_definer_function":
            admin.run(f"alter function {s}.f() security invoker")
