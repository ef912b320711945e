"""Issue 4: leases against the real stack, API access checked the way
PostgREST does it (tests/pgrest.py)."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from typing import Any, Dict, Iterator

import psycopg
import pytest

import pgrest
from conftest import Admin, new_slug
from supabase_connector import Conflict, InvalidParams, NotFound, SupabaseExecutor

SERVICE = {"type": "service", "id": "project"}


def upsert(executor: SupabaseExecutor, slug: str, **params: Any) -> Dict[str, Any]:
    return executor.execute("upsert_database_project_access", {"project": slug, **params})


def lease(executor: SupabaseExecutor, slug: str, **params: Any) -> Dict[str, Any]:
    return executor.execute("issue_database_lease", {"project": slug, "principal": SERVICE, **params})["lease"]


@pytest.fixture(scope="module")
def two(executor: SupabaseExecutor, admin: Admin) -> Iterator[Dict[str, Any]]:
    """Projects A and B, each with a table `items` holding two rows owned by
    different users, and a policy letting a user see their own rows."""
    out = {}
    for name in ("a", "b"):
        state = upsert(executor, new_slug(f"l{name}"))
        s = state["schema"]
        with psycopg.connect(state["lease"]["database"]["url"], autocommit=True) as conn:
            conn.execute(
                "create table items (id bigserial primary key, owner uuid references auth.users (id), body text)"
            )
            conn.execute("create policy own_items on items for select using (owner = auth.uid())")
            conn.execute(
                "insert into items (owner, body) values ('00000000-0000-4000-8000-00000000a11c', 'alice'), "
                "('00000000-0000-4000-8000-000000000b0b', 'bob')"
            )
        out[name] = state
    yield out


def test_lease_json_and_roles(two: Dict[str, Any], admin: Admin) -> None:
    lease_ = two["a"]["lease"]
    s = two["a"]["schema"]
    assert lease_["access_class"] == "service_role" and lease_["principal"] == SERVICE
    assert set(lease_["api"]) >= {"url", "schema", "apikey", "access_token", "publishable_token"}
    assert set(lease_["env"]) >= {"SUPABASE_URL", "SUPABASE_ANON_KEY", "SUPABASE_ACCESS_TOKEN", "SUPABASE_DB_SCHEMA", "DATABASE_URL"}
    role = lease_["database"]["user"]
    assert role == "lease_" + lease_["lease_id"].replace("-", "")
    attrs = admin.rows("select rolcanlogin, rolinherit, rolsuper, rolvaliduntil is not null from pg_roles where rolname = %s", (role,))
    assert attrs == [(True, True, False, True)]
    assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (role, f"{s}_service_role")) is True
    assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (role,)) is True
    # no grant ever names a lease role
    assert admin.value("select count(*) from pg_class where relacl::text like %s", (f"%{role}%",)) == 0
    # the registry keeps no password, the verifier is SCRAM with 256 iterations
    verifier = admin.value("select rolpassword from pg_authid where rolname = %s", (role,))
    assert verifier.startswith("SCRAM-SHA-256$256:")
    assert lease_["database"]["password"] not in verifier


def test_service_and_publishable_tokens(two: Dict[str, Any], api: pgrest.Client) -> None:
    a, b = two["a"], two["b"]
    s = a["schema"]
    service = a["lease"]["api"]["access_token"]
    publishable = a["lease"]["api"]["publishable_token"]
    # service class: every row (RLS bypassed in its own schema), and writes
    assert api.request(service, s, "select count(*) from items") == [(2,)]
    api.request(service, s, "insert into items (body) values ('x') returning id")
    api.request(service, s, "delete from items where body = 'x'")
    # publishable: reads under RLS (anonymous: no rows), cannot write
    assert api.request(publishable, s, "select count(*) from items") == [(0,)]
    with pytest.raises(pgrest.ApiError) as err:
        api.request(publishable, s, "insert into items (body) values ('x')")
    assert err.value.pgcode == "42501"
    for token in (service, publishable):
        for sql in (
            f"select count(*) from {b['schema']}.items",
            "select count(*) from auth.users",
            "select count(*) from supabase_connector.projects",
        ):
            with pytest.raises(pgrest.ApiError) as err:
                api.request(token, s, sql)
            assert err.value.pgcode == "42501", sql
    # a role claim naming anything but the lease's roles is not signed by us;
    # SET ROLE is not an API operation (code that runs it: test_trust_boundary)


def test_database_lease_cannot_switch_roles(two: Dict[str, Any]) -> None:
    a, b = two["a"], two["b"]
    targets = (f"{b['schema']}_owner", f"{b['schema']}_service_role", b["lease"]["database"]["user"], "service_role",
               "postgres", "authenticator", "supabase_admin", "anon", "authenticated")
    with psycopg.connect(a["lease"]["database"]["url"], autocommit=True) as conn:
        assert conn.execute("select current_user").fetchone() == (f"{a['schema']}_owner",)
        for target in targets:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f'set role "{target}"')
        for sql in (f"select count(*) from {b['schema']}.items", "select count(*) from auth.users",
                    "select count(*) from supabase_connector.leases", "select rolpassword from pg_authid limit 1"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def test_auth_uid_is_the_token_subject(executor: SupabaseExecutor, two: Dict[str, Any], api: pgrest.Client, jwt_secret: str) -> None:
    slug = two["a"]["project"]
    alice = "00000000-0000-4000-8000-00000000a11c"
    executor.execute("upsert_database_access", {"project": slug, "principal": {"type": "user", "id": alice},
                                                "platform_role": "project_contributor", "issue_lease": False})
    user_lease = executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "user", "id": alice}})["lease"]
    token = user_lease["api"]["access_token"]
    assert api.claims(token)["sub"] == alice
    assert api.request(token, two["a"]["schema"], "select auth.uid()::text") == [(alice,)]
    # the policy uses it: alice sees her row only
    assert api.request(token, two["a"]["schema"], "select body from items") == [("alice",)]
    # a service principal's sub is a stable UUIDv5
    service_sub = api.claims(two["a"]["lease"]["api"]["access_token"])["sub"]
    assert service_sub == str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:supabase-connector:{slug}:service:project"))


def test_database_lease_creates_for_the_project(two: Dict[str, Any], admin: Admin) -> None:
    s = two["a"]["schema"]
    with psycopg.connect(two["a"]["lease"]["database"]["url"], autocommit=True) as conn:
        conn.execute("create table made_by_lease (id int)")
        for sql in ("create table public.escape (id int)", f"create table {two['b']['schema']}.escape (id int)", "create schema escape"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    assert admin.value("select relowner::regrole::text from pg_class where oid = %s::regclass", (f"{s}.made_by_lease",)) == f"{s}_owner"


def test_expired_lease(executor: SupabaseExecutor, two: Dict[str, Any], api: pgrest.Client) -> None:
    short = lease(executor, two["a"]["project"], lease_ttl_seconds=1)
    assert api.allowed(short["api"]["access_token"], two["a"]["schema"], "select 1")
    time.sleep(2.2)
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(short["database"]["url"]).close()
    assert "password authentication failed" in str(err.value)
    with pytest.raises(pgrest.ApiError) as api_err:
        api.request(short["api"]["access_token"], two["a"]["schema"], "select 1")
    assert api_err.value.kind == "jwt_expired"


def test_revoke(executor: SupabaseExecutor, two: Dict[str, Any], api: pgrest.Client, admin: Admin) -> None:
    s = two["a"]["schema"]
    victim = lease(executor, two["a"]["project"])
    token = victim["api"]["access_token"]
    session = psycopg.connect(victim["database"]["url"], autocommit=True)
    session.execute("create table kept_after_revoke (id int)")
    session.execute("insert into kept_after_revoke values (1)")
    assert api.allowed(token, s, "select 1")
    result = executor.execute("revoke_database_lease", {"lease_id": victim["lease_id"]})
    assert result["revoked"] is True and result["terminated_sessions"] == 1
    # the token fails at once: its role no longer exists
    with pytest.raises(pgrest.ApiError) as err:
        api.request(token, s, "select 1")
    assert err.value.kind == "role_switch"
    # the open session was terminated
    with pytest.raises(psycopg.OperationalError):
        session.execute("select 1")
    session.close()
    # nothing it created is lost
    assert admin.value(f"select count(*) from {s}.kept_after_revoke") == 1
    assert admin.value("select count(*) from pg_roles where rolname like %s", (victim["database"]["user"] + "%",)) == 0
    # revoking again changes nothing; renewing is refused, never a resurrection
    assert executor.execute("revoke_database_lease", {"lease_id": victim["lease_id"]})["revoked"] is False
    with pytest.raises(Conflict):
        executor.execute("renew_database_lease", {"lease_id": victim["lease_id"]})
    assert admin.value("select count(*) from pg_roles where rolname = %s", (victim["database"]["user"],)) == 0
    with pytest.raises(NotFound):
        executor.execute("renew_database_lease", {"lease_id": str(uuid.uuid4())})


def test_renew_rotates_and_respects_the_maximum(stack: Any, executor: SupabaseExecutor, two: Dict[str, Any]) -> None:
    from conftest import connector_config
    from supabase_connector import create_executor

    with create_executor(connector_config(stack, lease={"default_ttl_seconds": 2, "max_ttl_seconds": 3, "max_lifetime_seconds": 3})) as ex:
        first = lease(ex, two["a"]["project"], lease_ttl_seconds=2)
        renewed = ex.execute("renew_database_lease", {"lease_id": first["lease_id"], "ttl_seconds": 3})["lease"]
        assert renewed["lease_id"] == first["lease_id"]
        assert renewed["database"]["password"] != first["database"]["password"]
        assert renewed["renewable"] is False  # capped by the maximum lifetime
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(first["database"]["url"]).close()  # the old password is rotated out
        psycopg.connect(renewed["database"]["url"]).close()
        # at its maximum lifetime: a further renewal is refused, clearly
        with pytest.raises(Conflict) as err:
            ex.execute("renew_database_lease", {"lease_id": first["lease_id"]})
        assert "maximum lifetime" in str(err.value)
    with pytest.raises(InvalidParams) as bad:
        lease(executor, two["a"]["project"], lease_ttl_seconds=10**6)
    assert "/lease_ttl_seconds" in [v["path"] for v in bad.value.details["violations"]]


def test_200_concurrent_leases_then_reap(executor: SupabaseExecutor, api: pgrest.Client, admin: Admin) -> None:
    slug = new_slug("many")
    upsert(executor, slug, issue_lease=False)
    s = f"proj_{slug}"

    def issue(i: int) -> Dict[str, Any]:
        return lease(executor, slug, lease_ttl_seconds=1 if i % 4 == 0 else 600, database=i % 2 == 0)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        leases = list(pool.map(issue, range(200)))
    ids = {x["lease_id"] for x in leases}
    assert len(ids) == 200
    assert len({x["api"]["access_token"] for x in leases}) == 200
    for i, x in enumerate(leases):
        if i % 7 == 1 and i % 4 != 0:
            assert api.allowed(x["api"]["access_token"], s, "select 1")
    expired = {x["lease_id"] for i, x in enumerate(leases) if i % 4 == 0}
    time.sleep(2.2)
    reaped = executor.execute("reap_expired_leases", {})
    assert set(reaped["reaped"]) >= expired
    live = admin.rows(
        "select lease_id::text from supabase_connector.leases where project = %s and revoked_at is null", (slug,)
    )
    assert {r[0] for r in live} == ids - expired
    roles_left = admin.value("select count(*) from pg_roles r join supabase_connector.leases l on r.rolname = l.role_name where l.project = %s", (slug,))
    assert roles_left == 150
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
