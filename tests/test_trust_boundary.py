"""Issue 6: the trust boundary of one central PostgREST
(docs/security.md#what-does-not-isolate-projects).

Shared mode: code a project installs can switch, through the central
`authenticator`, into another project's roles. This is a statement of fact
the tests keep checking, so a change in behaviour is noticed. Isolated mode:
the project's own API login role reaches nothing outside the project.
`tenant_code: deny`: the guard refuses project code in a shared project."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator

import psycopg
import pytest

import pgrest
from conftest import Admin, catalog_snapshot, info, new_slug
from supabase_connector import Conflict, SupabaseExecutor

HOP = """
create function {schema}.hop(target text) returns text language plpgsql as $$
begin
  execute format('set local role %I', target);
  return current_user;
end $$;
"""


def upsert(executor: SupabaseExecutor, slug: str, **params: Any) -> Dict[str, Any]:
    return executor.execute("upsert_database_project_access", {"project": slug, **params})


def bao_kv(stack: Any, path: str) -> Dict[str, Any] | None:
    """Read a KV v2 secret with the dev server's root token; None when absent."""
    req = urllib.request.Request(
        f"{info(stack, 'bao_addr')}/v1/secret/data/{path}", headers={"X-Vault-Token": info(stack, "bao_token")}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return dict(json.load(resp)["data"]["data"])
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def run_as_lease(lease: Dict[str, Any], sql: str) -> None:
    with psycopg.connect(lease["database"]["url"], autocommit=True) as conn:
        conn.execute(sql)


def dedicated_api(stack: Any, state: Dict[str, Any], jwt_secret: str) -> pgrest.Client:
    """A PostgREST-style client logged in as the project's own authenticator,
    with the password read from where the project state says it is."""
    pg = state["postgrest"]
    secret = bao_kv(stack, pg["db_password"]["path"])
    assert secret is not None
    password = secret[pg["db_password"]["key"]]
    dsn = pg["PGRST_DB_URI"].replace("postgresql://", "postgresql://", 1)
    user_host = dsn.split("://", 1)[1]
    user, rest = user_host.split("@", 1)
    return pgrest.Client(f"postgresql://{user}:{password}@{rest}", jwt_secret, anon_role=pg["PGRST_DB_ANON_ROLE"],
                         pre_request=pg["PGRST_DB_PRE_REQUEST"])


@pytest.fixture(scope="module")
def victim(executor: SupabaseExecutor, admin: Admin) -> Iterator[str]:
    """Project B, shared, with a table worth reaching and a live
    service-class lease (the central authenticator reaches B's roles through
    B's live lease roles)."""
    slug = new_slug("victim")
    upsert(executor, slug)
    s = f"proj_{slug}"
    admin.run(f"set role {s}_owner")
    admin.run(f"create table {s}.secrets (v text)")
    admin.run(f"insert into {s}.secrets values ('b-data')")
    admin.run("reset role")
    yield slug


def test_shared_mode_hop_reaches_other_projects(executor: SupabaseExecutor, api: pgrest.Client, victim: str) -> None:
    """The documented limit: a function of project A, called through the
    central authenticator, can switch into B's owner."""
    a = upsert(executor, new_slug("hopper"))
    s = a["schema"]
    run_as_lease(a["lease"], HOP.format(schema=s))
    token = a["lease"]["api"]["access_token"]
    rows = api.request(token, s, f"select {s}.hop(%s)", (f"proj_{victim}_owner",))
    assert rows == [(f"proj_{victim}_owner",)]
    rows = api.request(token, s, f"select {s}.hop('service_role')")
    assert rows == [("service_role",)]
    assert "tenant_code=deny" in a["trust_boundary"]


@pytest.fixture(scope="module")
def isolated(executor: SupabaseExecutor) -> Dict[str, Any]:
    return upsert(executor, new_slug("iso"), isolation="isolated")


def test_isolated_state_and_catalog(stack: Any, isolated: Dict[str, Any], admin: Admin) -> None:
    s = isolated["schema"]
    pg = isolated["postgrest"]
    assert isolated["isolation"] == "isolated" and isolated["exposure"]["listed"] is False
    assert pg["PGRST_DB_SCHEMAS"] == s and pg["PGRST_DB_ANON_ROLE"] == f"{s}_anon"
    assert pg["PGRST_DB_URI"].startswith(f"postgresql://{s}_authenticator@") and ":" not in pg["PGRST_DB_URI"].split("//")[1].split("@")[0]
    assert pg["jwt_secret"]["key"] == "JWT_SECRET"
    # the password is in OpenBao only, never in the result or the registry
    secret = bao_kv(stack, pg["db_password"]["path"])
    assert secret is not None and len(secret["AUTHENTICATOR_PASSWORD"]) >= 40
    assert secret["AUTHENTICATOR_PASSWORD"] not in json.dumps(isolated)
    registry = admin.rows("select row_to_json(p)::text from supabase_connector.projects p where slug = %s", (isolated["project"],))
    audit = admin.rows("select params::text || outcome::text from supabase_connector.audit_log where project = %s", (isolated["project"],))
    assert all(secret["AUTHENTICATOR_PASSWORD"] not in r[0] for r in registry + audit)
    attrs = admin.rows("select rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolbypassrls from pg_roles where rolname = %s", (f"{s}_authenticator",))
    assert attrs == [(True, False, False, False, False)]
    # the central authenticator cannot reach any of the project's roles
    for cls in ("owner", "service_role", "authenticated", "anon"):
        assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (f"{s}_{cls}",)) is False, cls
        if cls != "owner":
            assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (f"{s}_authenticator", f"{s}_{cls}")) is True
    # the project's class roles are granted to its own authenticator (16+:
    # SET without INHERIT); no authenticator holds a lease's login role
    can_set = "SET" if int(info(stack, "pg_version")) >= 16 else "MEMBER"
    for cls in ("service_role", "authenticated", "anon"):
        assert admin.value(f"select pg_has_role(%s, %s, '{can_set}')", (f"{s}_authenticator", f"{s}_{cls}")) is True, cls
        assert admin.value("select pg_has_role(%s, %s, 'USAGE')", (f"{s}_authenticator", f"{s}_{cls}")) is False, cls
    lease_role = isolated["lease"]["database"]["user"]
    for login in ("authenticator", f"{s}_authenticator"):
        assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (login, lease_role)) is False, login
    # its PostgREST checks every request's lease
    assert isolated["postgrest"]["PGRST_DB_PRE_REQUEST"] == "supabase_connector_api.pre_request"
    served = admin.value("select array_to_string(setconfig, ',') from pg_db_role_setting where setrole = 'authenticator'::regrole and setdatabase = 0")
    assert s not in served.split("=", 1)[1].split(",")


def test_isolated_mode_hop_is_refused(
    stack: Any, executor: SupabaseExecutor, api: pgrest.Client, jwt_secret: str, isolated: Dict[str, Any], victim: str
) -> None:
    s = isolated["schema"]
    run_as_lease(isolated["lease"], HOP.format(schema=s))
    own = dedicated_api(stack, isolated, jwt_secret)
    token = isolated["lease"]["api"]["access_token"]
    try:
        # the function works inside the project (so the refusals below mean something)
        assert own.request(token, s, f"select {s}.hop(%s)", (f"{s}_owner",)) == [(f"{s}_owner",)]
        for target in (f"proj_{victim}_owner", f"proj_{victim}_anon", "service_role", "authenticator", "postgres", "supabase_admin"):
            with pytest.raises(pgrest.ApiError) as err:
                own.request(token, s, f"select {s}.hop(%s)", (target,))
            assert err.value.pgcode == "42501", target
        # A's tokens work through A's authenticator, not through the central one
        assert own.allowed(isolated["lease"]["api"]["publishable_token"], s, "select 1")
        # a request without a token runs as the anonymous role (`PGRST_DB_ANON_ROLE`
        # = the project's anon class role), and the lease check refuses it
        with pytest.raises(pgrest.ApiError) as err:
            own.request(None, s, "select 1")
        assert (err.value.kind, err.value.pgcode, err.value.status) == ("pre_request", "PT401", 401)
        assert "a lease's token is required" in str(err.value)
        with pytest.raises(pgrest.ApiError) as err:
            api.request(token, s, "select 1")
        assert err.value.kind == "role_switch"
        # B's tokens do not work through A's authenticator
        b = executor.execute("issue_database_lease", {"project": victim, "principal": {"type": "service", "id": "project"}, "database": False})
        with pytest.raises(pgrest.ApiError) as err:
            own.request(b["lease"]["api"]["access_token"], f"proj_{victim}", "select 1")
        assert err.value.kind == "role_switch"
    finally:
        own.close()


def test_isolated_leases_point_to_the_dedicated_api(stack: Any, isolated: Dict[str, Any]) -> None:
    from conftest import connector_config
    from supabase_connector import create_executor

    config = connector_config(stack, api={"isolated_url_template": "http://pgrst-{project}:3000"})
    with create_executor(config) as ex:
        lease = ex.execute(
            "issue_database_lease", {"project": isolated["project"], "principal": {"type": "service", "id": "project"}, "database": False}
        )["lease"]
        assert lease["api"]["url"] == f"http://pgrst-{isolated['project']}:3000"
        described = ex.execute("describe_database_project", {"project": isolated["project"]})
        assert described["postgrest"]["url"] == lease["api"]["url"]
        assert described["isolation"] == "isolated"


def test_mode_switches_both_ways(stack: Any, executor: SupabaseExecutor, admin: Admin, api: pgrest.Client) -> None:
    slug = new_slug("sw")
    s = f"proj_{slug}"
    upsert(executor, slug, issue_lease=False)
    before = catalog_snapshot(admin, s)
    shared_lease = executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "service", "id": "project"}})["lease"]
    assert api.allowed(shared_lease["api"]["access_token"], s, "select 1")

    to_isolated = upsert(executor, slug, isolation="isolated", issue_lease=False)
    assert to_isolated["changed"] is True and to_isolated["revoked_leases"] == 1
    # the old lease kept no reach: its role is gone, its token fails
    assert admin.value("select count(*) from pg_roles where rolname = %s", (shared_lease["database"]["user"],)) == 0
    assert not api.allowed(shared_lease["api"]["access_token"], s, "select 1")
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
    iso_lease = executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "service", "id": "project"}})["lease"]

    back = upsert(executor, slug, isolation="shared", issue_lease=False)
    assert back["revoked_leases"] == 1 and "postgrest" not in back
    assert admin.value("select count(*) from pg_roles where rolname in (%s, %s)", (f"{s}_authenticator", iso_lease["database"]["user"])) == 0
    assert bao_kv(stack, f"connectors/supabase/projects/{slug}") is None
    # nothing of the isolated path is left: the catalog is as it was
    assert catalog_snapshot(admin, s) == before
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
    assert upsert(executor, slug, issue_lease=False)["statements"] == 0


def test_isolated_verify_finds_and_repairs_drift(stack: Any, executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("isv")
    s = f"proj_{slug}"
    upsert(executor, slug, isolation="isolated", issue_lease=False)
    # drift made as the superuser: the runtime role holds no ADMIN option on
    # the project's roles (16+), so it could not make it, and it cannot repair
    # it by hand either; the role functions do
    admin.run(f"revoke {s}_anon from {s}_authenticator")
    admin.run(f"grant {s}_anon to authenticator")
    if int(admin.value("show server_version_num")) >= 160000:
        for sql in (f"revoke {s}_anon from authenticator", f"grant {s}_anon to {s}_authenticator"):
            with psycopg.connect(info(stack, "runtime_url"), autocommit=True) as runtime:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    runtime.execute(sql)
    report = executor.execute("verify_database_project", {"project": slug})
    codes = {f["code"] for f in report["projects"][0]["findings"]}
    assert {"membership_missing", "membership_extra"} <= codes
    executor.execute("verify_database_project", {"project": slug, "repair": True})
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
    assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (f"{s}_anon",)) is False


def test_superuser_membership_is_repaired_on_every_version(stack: Any, executor: SupabaseExecutor, admin: Admin) -> None:
    """A membership a superuser granted (on 16+ only its grantor or a
    superuser may revoke it) is reported and repaired on every version: the
    repair runs through `role_revoke`, owned by the bootstrap superuser,
    which revokes every grant of it whoever made it."""
    slug = new_slug("isg")
    s = f"proj_{slug}"
    upsert(executor, slug, isolation="isolated", issue_lease=False)
    admin.run(f"grant {s}_anon to authenticator")  # as supabase_admin
    try:
        assert admin.value("select grantor::regrole::text from pg_auth_members where roleid = %s::regrole "
                           "and member = 'authenticator'::regrole", (f"{s}_anon",)) == "supabase_admin"
        report = executor.execute("verify_database_project", {"project": slug, "repair": True})
        extra = [f for f in report["projects"][0]["findings"] if f["code"] == "membership_extra"]
        assert [(f["object"], f["repairable"], f["repaired"]) for f in extra] == [(f"authenticator in {s}_anon", True, True)]
        assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (f"{s}_anon",)) is False
        assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
    finally:
        admin.run(f"revoke {s}_anon from authenticator")  # only if the repair failed


# ---------------------------------------------------------------- tenant_code


@pytest.fixture(scope="module")
def guarded(executor: SupabaseExecutor) -> str:
    slug = new_slug("deny")
    upsert(executor, slug, tenant_code="deny", issue_lease=False)
    return f"proj_{slug}"


REFUSED = {
    "function": "create function {s}.f() returns int language sql as 'select 1'",
    "procedure": "create procedure {s}.p() language sql as 'select 1'",
    "policy": "create policy p on {s}.t using (set_config('role', 'service_role', true) is not null)",
    "default": "alter table {s}.t add column d text default set_config('role', 'x', true)",
    "check": "alter table {s}.t add constraint c check (set_config('role', 'x', true) is not null)",
    "generated": "alter table {s}.t add column g text generated always as (set_config('a.b', id::text, true)) stored",
    "view": "create view {s}.v as select set_config('role', 'service_role', true) as x",
    "rule": "create rule r as on insert to {s}.t do also select set_config('role', 'service_role', true)",
    "trigger_when": "create trigger tr before insert on {s}.t for each row when (set_config('a.b', 'x', true) is not null) execute function suppress_redundant_updates_trigger()",
    "domain": "create domain {s}.d as text check (set_config('a.b', value, true) is not null)",
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_tenant_code_deny_refuses(admin: Admin, guarded: str, kind: str) -> None:
    s = guarded
    admin.run(f"set role {s}_owner")
    try:
        admin.run(f"create table if not exists {s}.t (id int)")
        with pytest.raises(psycopg.Error) as err:
            admin.run(REFUSED[kind].format(s=s))
        if kind == "generated":
            # PostgreSQL itself refuses: set_config is not immutable
            assert err.value.sqlstate == "42P17", str(err.value)
        else:
            assert err.value.sqlstate == "42501", str(err.value)
            assert f"refused in project schema {s}" in str(err.value)
    finally:
        admin.run("reset role")
    assert admin.rows("select * from supabase_connector.tenant_code_objects(%s)", (s,)) == []


def test_tenant_code_deny_accepts_ordinary_objects(admin: Admin, guarded: str) -> None:
    s = guarded
    admin.run(f"set role {s}_owner")
    try:
        admin.run(f"create table {s}.notes (id bigserial primary key, owner uuid default auth.uid(), body text)")
        admin.run(f"create view {s}.notes_v as select id, body from {s}.notes")
        admin.run(f"create policy own on {s}.notes using (owner = auth.uid())")
        admin.run(f"create index on {s}.notes (lower(body))")
    finally:
        admin.run("reset role")
    assert admin.value("select count(*) from pg_policy where polrelid = %s::regclass", (f"{s}.notes",)) == 1


def test_switching_to_deny_with_code_present_is_a_conflict(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("dc")
    s = f"proj_{slug}"
    upsert(executor, slug, issue_lease=False)
    admin.run(f"set role {s}_owner")
    admin.run(f"create function {s}.f() returns int language sql as 'select 1'")
    admin.run("reset role")
    with pytest.raises(Conflict) as err:
        upsert(executor, slug, tenant_code="deny", issue_lease=False)
    assert f"{s}.f()" in str(err.value)
    assert admin.value("select tenant_code from supabase_connector.projects where slug = %s", (slug,)) == "allow"
