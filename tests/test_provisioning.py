"""Issue 3: bootstrap and project provisioning, end to end, as the runtime
role `postgres` (not a superuser) against a real PostgreSQL."""

from __future__ import annotations

import concurrent.futures
from typing import Any, Dict

import psycopg
import pytest

from conftest import Admin, catalog_snapshot, info, new_slug
from supabase_connector import Conflict, InvalidParams, SupabaseExecutor


def upsert(executor: SupabaseExecutor, slug: str, **params: Any) -> Dict[str, Any]:
    return executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False, **params})


def test_runtime_role_is_not_superuser(admin: Admin) -> None:
    assert admin.value("select rolsuper from pg_roles where rolname = 'postgres'") is False


def test_every_object_of_a_project(executor: SupabaseExecutor, admin: Admin) -> None:
    a, b = new_slug("a"), new_slug("b")
    upsert(executor, a)
    upsert(executor, b)
    for slug in (a, b):
        s = f"proj_{slug}"
        roles = {r[0]: r[1:] for r in admin.rows(
            "select rolname, rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
            "from pg_roles where rolname like %s", (s + "\\_%",))}
        assert set(roles) == {f"{s}_owner", f"{s}_service_role", f"{s}_authenticated", f"{s}_anon"}
        for attrs in roles.values():
            assert attrs == (False, True, False, False, False, False, False), attrs  # NOLOGIN INHERIT, nothing else
        # memberships of docs/architecture.md#role-graph
        def member(role: str, of: str, how: str = "USAGE") -> bool:
            return bool(admin.value("select pg_has_role(%s, %s, %s)", (role, of, how)))
        assert member(f"{s}_service_role", f"{s}_owner")
        assert member(f"{s}_authenticated", "authenticated")
        assert member(f"{s}_anon", "anon")
        assert member(f"{s}_owner", "supabase_connector_auth")
        # the runtime role borrows the owner inside an action, never keeps it
        # (docs/decisions.md: a kept membership per project slows every check)
        assert not member("postgres", f"{s}_owner", "USAGE")
        assert not member(f"{s}_anon", "authenticated")
        assert not member(f"{s}_authenticated", f"{s}_owner")
        assert not member(f"{s}_service_role", "service_role")
        # schema: owned by the owner, USAGE for exactly the three class roles
        owner, acl = admin.rows("select nspowner::regrole::text, nspacl::text from pg_namespace where nspname = %s", (s,))[0]
        assert owner == f"{s}_owner"
        entries = sorted(acl.strip("{}").split(","))
        assert entries == sorted([
            f"{s}_owner=UC/{s}_owner",
            f"{s}_service_role=U/{s}_owner",
            f"{s}_authenticated=U/{s}_owner",
            f"{s}_anon=U/{s}_owner",
        ])
        # PUBLIC and the global API roles have nothing in the schema
        for role in ("anon", "authenticated", "service_role", "authenticator", "public"):
            assert admin.value("select has_schema_privilege(%s, %s, 'USAGE')", (role, s)) is False, role
        # default privileges for objects created later
        defaults = {(r[0], r[1]) for r in admin.rows(
            "select defaclobjtype, defaclacl::text from pg_default_acl where defaclrole = %s::regrole and defaclnamespace = %s::regnamespace",
            (f"{s}_owner", s))}
        assert ("r", "{" + f"{s}_authenticated=arwd/{s}_owner,{s}_anon=r/{s}_owner" + "}") in defaults
        assert ("S", "{" + f"{s}_authenticated=rU/{s}_owner" + "}") in defaults
        assert ("f", "{" + f"{s}_authenticated=X/{s}_owner,{s}_anon=X/{s}_owner" + "}") in defaults
        # EXECUTE revoked from PUBLIC with the form that works (no IN SCHEMA)
        assert admin.value(
            "select defaclacl::text from pg_default_acl where defaclrole = %s::regrole and defaclnamespace = 0 and defaclobjtype = 'f'",
            (f"{s}_owner",)) == "{" + f"{s}_owner=X/{s}_owner" + "}"
    # project A's roles have no privilege in B
    for cls in ("owner", "service_role", "authenticated", "anon"):
        assert admin.value("select has_schema_privilege(%s, %s, 'USAGE')", (f"proj_{a}_{cls}", f"proj_{b}")) is False
        assert admin.value("select has_schema_privilege(%s, %s, 'CREATE')", (f"proj_{a}_{cls}", f"proj_{b}")) is False


def test_registry_is_closed_to_api_roles(admin: Admin) -> None:
    for role in ("anon", "authenticated", "service_role", "authenticator", "public"):
        assert admin.value("select has_schema_privilege(%s, 'supabase_connector', 'USAGE')", (role,)) is False, role


def test_objects_created_later(executor: SupabaseExecutor, admin: Admin, slug: str) -> None:
    upsert(executor, slug)
    s = f"proj_{slug}"
    with admin.conn.cursor() as cur:
        cur.execute(f"set role {s}_owner")
        cur.execute(f"create table {s}.items (id bigserial primary key, owner uuid references auth.users (id), body text)")
        cur.execute(f"create view {s}.items_v as select * from {s}.items")
        cur.execute(f"create materialized view {s}.items_mv as select * from {s}.items")
        cur.execute(f"create function {s}.f() returns int language sql as 'select 1'")
        cur.execute("reset role")
    assert admin.value("select relrowsecurity from pg_class where oid = %s::regclass", (f"{s}.items",)) is True
    assert admin.value("select reloptions::text from pg_class where oid = %s::regclass", (f"{s}.items_v",)) == "{security_invoker=true}"
    assert admin.value("select has_table_privilege(%s, %s, 'SELECT,INSERT,UPDATE,DELETE')", (f"{s}_authenticated", f"{s}.items")) is True
    assert admin.value("select has_table_privilege(%s, %s, 'INSERT')", (f"{s}_anon", f"{s}.items")) is False
    assert admin.value("select has_table_privilege(%s, %s, 'SELECT')", (f"{s}_anon", f"{s}.items")) is True
    assert admin.value("select has_sequence_privilege(%s, %s, 'USAGE')", (f"{s}_authenticated", f"{s}.items_id_seq")) is True
    # materialized views are filled with the owner's rights: no class access
    for cls in ("authenticated", "anon"):
        assert admin.value("select has_table_privilege(%s, %s, 'SELECT')", (f"{s}_{cls}", f"{s}.items_mv")) is False
    assert admin.value("select has_function_privilege('public', %s, 'EXECUTE')", (f"{s}.f()",)) is False
    assert admin.value("select has_function_privilege(%s, %s, 'EXECUTE')", (f"{s}_anon", f"{s}.f()")) is True
    # a re-upsert finds nothing to do
    assert upsert(executor, slug)["statements"] == 0


def test_existing_objects_brought_in_line(executor: SupabaseExecutor, admin: Admin, slug: str) -> None:
    upsert(executor, slug)
    s = f"proj_{slug}"
    admin.run(f"set session_replication_role = replica")  # event triggers off, as a careless superuser
    admin.run(f"create table {s}.raw (id int)")
    admin.run(f"alter table {s}.raw owner to {s}_owner")
    admin.run("set session_replication_role = origin")
    assert admin.value("select relrowsecurity from pg_class where oid = %s::regclass", (f"{s}.raw",)) is False
    result = upsert(executor, slug)
    assert result["changed"] is True
    assert admin.value("select relrowsecurity from pg_class where oid = %s::regclass", (f"{s}.raw",)) is True
    assert admin.value("select has_table_privilege(%s, %s, 'SELECT')", (f"{s}_anon", f"{s}.raw")) is True


def test_exposure_and_notifications(stack: Any, executor: SupabaseExecutor, admin: Admin) -> None:
    listener = psycopg.connect(info(stack, "admin_url"), autocommit=True)
    listener.execute("listen pgrst")
    a, b = new_slug("x"), new_slug("y")
    upsert(executor, a)
    upsert(executor, b)
    got = [n.payload for n in listener.notifies(timeout=2, stop_after=4)]
    listener.close()
    assert "reload config" in got and "reload schema" in got
    served = admin.value(
        "select c from pg_db_role_setting s, unnest(s.setconfig) c where s.setrole = 'authenticator'::regrole and c like 'pgrst.db\\_schemas=%%'"
    )
    schemas = served.split("=", 1)[1].split(",")
    assert schemas[:3] == ["public", "storage", "graphql_public"]
    assert f"proj_{a}" in schemas and f"proj_{b}" in schemas
    registered = [r[0] for r in admin.rows(
        "select schema_name from supabase_connector.projects where state = 'active' and exposed and isolation = 'shared' "
        "and pool = 'central' order by 1")]
    assert schemas[3:] == registered  # computed from the registry, in a stable order
    # expose=false takes it out, and the stored setting sticks on a later upsert
    upsert(executor, a, expose=False)
    upsert(executor, a)
    served = admin.value("select array_to_string(setconfig, ',') from pg_db_role_setting where setrole = 'authenticator'::regrole and setdatabase = 0")
    assert f"proj_{a}" not in served.split("=", 1)[1].split(",")


def test_second_upsert_plans_nothing(executor: SupabaseExecutor, admin: Admin, slug: str) -> None:
    first = upsert(executor, slug)
    assert first["created"] is True and first["statements"] > 0
    before = catalog_snapshot(admin, f"proj_{slug}")
    plan = executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False, "dry_run": True})
    assert plan["statements"] == [] and plan["changes"] == []
    second = upsert(executor, slug)
    assert second["changed"] is False and second["statements"] == 0
    assert catalog_snapshot(admin, f"proj_{slug}") == before


def test_dry_run_changes_nothing(executor: SupabaseExecutor, admin: Admin, slug: str) -> None:
    plan = executor.execute("upsert_database_project_access", {"project": slug, "dry_run": True})
    assert plan["dry_run"] is True
    assert any(s.startswith(f'CREATE SCHEMA "proj_{slug}"') for s in plan["statements"])
    assert admin.value("select count(*) from pg_roles where rolname like %s", (f"proj_{slug}\\_%",)) == 0
    assert admin.value("select count(*) from supabase_connector.projects where slug = %s", (slug,)) == 0


def test_concurrent_upserts(executor: SupabaseExecutor, admin: Admin) -> None:
    one = new_slug("c")
    many = [new_slug("m") for _ in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        same = list(pool.map(lambda _: upsert(executor, one), range(16)))
        different = list(pool.map(lambda s: upsert(executor, s), many))
    assert sum(r["created"] for r in same) == 1
    assert all(r["created"] for r in different)
    for slug in [one, *many]:
        assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
    served = admin.value("select array_to_string(setconfig, ',') from pg_db_role_setting where setrole = 'authenticator'::regrole and setdatabase = 0")
    for slug in [one, *many]:
        assert f"proj_{slug}" in served


@pytest.mark.parametrize(
    "params, pointer",
    [
        ({"project": "Bad Slug"}, "/project"),
        ({"project": "a;drop"}, "/project"),
        ({"project": "a" * 41}, "/project"),
        ({"project": "ok-slug", "bogus": 1}, "/"),
        ({"project": "ok-slug", "expose": "yes"}, "/expose"),
        ({"project": 42}, "/project"),
        ({"project": "ok-slug", "lease_ttl_seconds": 0}, "/lease_ttl_seconds"),
    ],
)
def test_bad_input_changes_nothing(executor: SupabaseExecutor, admin: Admin, params: Dict[str, Any], pointer: str) -> None:
    before = admin.value("select count(*) from pg_roles") , admin.value("select count(*) from supabase_connector.projects")
    with pytest.raises(InvalidParams) as err:
        executor.execute("upsert_database_project_access", params)
    assert err.value.code == "invalid_params"
    assert pointer in [v["path"] for v in err.value.details["violations"]]
    assert (admin.value("select count(*) from pg_roles"), admin.value("select count(*) from supabase_connector.projects")) == before


def test_every_violation_is_listed(executor: SupabaseExecutor) -> None:
    with pytest.raises(InvalidParams) as err:
        executor.execute("upsert_database_project_access", {"project": "Bad Slug", "expose": "yes", "bogus": 1})
    paths = sorted(v["path"] for v in err.value.details["violations"])
    assert paths == ["/", "/expose", "/project"]


def test_slug_collision_is_a_conflict(executor: SupabaseExecutor, admin: Admin) -> None:
    base = new_slug("k")
    upsert(executor, f"{base}-x")
    roles_before = admin.value("select count(*) from pg_roles")
    with pytest.raises(Conflict):
        upsert(executor, f"{base}_x")
    assert admin.value("select count(*) from pg_roles") == roles_before
    assert admin.value("select count(*) from supabase_connector.projects where slug = %s", (f"{base}_x",)) == 0


def test_foreign_objects_are_not_taken_over(executor: SupabaseExecutor, admin: Admin, slug: str) -> None:
    admin.run(f"create role proj_{slug}_owner nologin")
    try:
        with pytest.raises(Conflict):
            upsert(executor, slug)
        assert admin.value("select count(*) from pg_namespace where nspname = %s", (f"proj_{slug}",)) == 0
    finally:
        admin.run(f"drop role proj_{slug}_owner")


def test_a_foreign_schema_is_not_taken_over(executor: SupabaseExecutor, admin: Admin, slug: str) -> None:
    """A schema of the project's name made by hand, with no role and no
    registry row, is found (the read for a project that has nothing yet
    answers for none of it) and refused."""
    admin.run(f"create schema proj_{slug}")
    try:
        roles_before = admin.value("select count(*) from pg_roles")
        with pytest.raises(Conflict):
            upsert(executor, slug)
        assert admin.value("select count(*) from pg_roles") == roles_before
        assert admin.value("select nspowner::regrole::text from pg_namespace where nspname = %s", (f"proj_{slug}",)) == "supabase_admin"
        assert admin.value("select count(*) from supabase_connector.projects where slug = %s", (slug,)) == 0
    finally:
        admin.run(f"drop schema proj_{slug}")


def test_one_audit_row_per_action(executor: SupabaseExecutor, admin: Admin, slug: str) -> None:
    upsert(executor, slug)
    upsert(executor, slug)
    rows = admin.rows("select action, changed from supabase_connector.audit_log where project = %s order by id", (slug,))
    assert rows == [("upsert_database_project_access", True), ("upsert_database_project_access", False)]


def test_grant_outside_the_project_is_refused(executor: SupabaseExecutor, admin: Admin, slug: str) -> None:
    upsert(executor, slug)
    s = f"proj_{slug}"
    admin.run(f"set role {s}_owner")
    admin.run(f"create table {s}.t (id int)")
    for grantee in ("anon", "public", "authenticated", "service_role"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.run(f"grant select on {s}.t to {grantee}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.run(f"alter default privileges in schema {s} grant select on tables to anon")
    admin.run(f"grant select on {s}.t to {s}_anon")  # its own roles are fine
    admin.run("reset role")
    assert admin.value("select has_table_privilege('anon', %s, 'SELECT')", (f"{s}.t",)) is False
