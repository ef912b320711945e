"""A role graph that stays flat: what the redesign of tokens, leases and
role statements must guarantee, against the real stack.

- API tokens name the project's class role and are worth their lease: the
  API's `pre_request` refuses a revoked, an expired or a made-up lease at
  once (401), and lets Supabase's own tokens through.
- A token of project A reads nothing of project B, whatever schema profile
  it asks for.
- API-only leases touch no role: `pg_authid` and `pg_auth_members` are the
  same before and after a hundred issue/renew/revoke cycles.
- The role functions refuse (42501, nothing changed) every role, name and
  membership the design does not define, and the registry they read cannot
  be made to point them outside the connector's own names.
- The runtime role holds no membership in any project or lease role, on
  PostgreSQL 18 with `createrole_self_grant` unset and `'set, inherit'` and on
  the session stacks.
- Archive takes every class off the schema and the service class off the
  owner; restore brings it all back.
- Bootstrap version 2 upgrades a version-1 registry with live projects and
  leases in place (tests/fixtures/v1_state.sql).

API requests are made the way PostgREST makes them (tests/pgrest.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import psycopg
import pytest

import pgrest
from conftest import VERSIONS, Admin, Stack, bootstrap, cli, connector_config, info, new_slug
from stack import hs256_jwt
from supabase_connector import SupabaseExecutor, create_executor

ROOT = Path(__file__).resolve().parent.parent
ALICE = "00000000-0000-4000-8000-00000000a11c"  # seeded in auth.users
BOB = "00000000-0000-4000-8000-000000000b0b"
SERVICE = {"type": "project"}
CLASSES = ("service_role", "authenticated", "anon")

TABLE = """
create table items (id bigint generated always as identity primary key, owner uuid default auth.uid(), body text);
create policy items_read on items for select to authenticated, anon using (true);
create policy items_write on items for insert to authenticated with check (owner = auth.uid());
insert into items (body) values ('{tag}-1'), ('{tag}-2');
"""


# ------------------------------------------------------------ helpers


def upsert(ex: SupabaseExecutor, slug: str, **params: Any) -> Dict[str, Any]:
    return dict(ex.execute("upsert_database_project_access", {"project": slug, **params}))


def issue(ex: SupabaseExecutor, slug: str, principal: Optional[Dict[str, str]] = None, **params: Any) -> Dict[str, Any]:
    return dict(ex.execute("issue_database_lease", {"project": slug, "principal": principal or SERVICE, **params})["lease"])


def migrate(ex: SupabaseExecutor, slug: str, tag: str) -> None:
    ex.execute("apply_database_migrations",
               {"project": slug, "migrations": [{"version": "1", "name": "items", "sql": TABLE.format(tag=tag)}]})


def claims_of(token: str) -> Dict[str, Any]:
    """A token's claims, unverified (its signature is checked where it is used)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def refused_by_lease_check(api: pgrest.Client, token: Optional[str], schema: str,
                           message: str = "lease revoked or expired") -> None:
    """The request passes the JWT check and the role switch (the role the
    token names exists and the API may switch to it), and `pre_request`
    answers 401."""
    with pytest.raises(pgrest.ApiError) as err:
        api.request(token, schema, "select 1")
    e = err.value
    assert (e.kind, e.pgcode, e.status) == ("pre_request", "PT401", 401), e
    assert message in str(e), e


def refused_at_role_switch(api: pgrest.Client, token: str, schema: str, reason: str) -> None:
    with pytest.raises(pgrest.ApiError) as err:
        api.request(token, schema, "select 1")
    assert err.value.kind == "role_switch" and reason in str(err.value), err.value


def role_catalog(admin: Admin) -> Dict[str, List[tuple]]:
    """Every row of `pg_authid` (password hashes as digests, so a failure
    prints none), `pg_auth_members` and `pg_db_role_setting`."""
    return {
        "pg_authid": admin.rows(
            "select (to_jsonb(a) - 'rolpassword' || jsonb_build_object('rolpassword', md5(coalesce(a.rolpassword, ''))))::text "
            "from pg_authid a order by a.rolname"),
        "pg_auth_members": admin.rows("select to_jsonb(m)::text from pg_auth_members m order by m.roleid, m.member, m.grantor"),
        "pg_db_role_setting": admin.rows(
            "select setrole::regrole::text, setdatabase, setconfig::text from pg_db_role_setting order by 1, 2"),
    }


def runtime_memberships(admin: Admin) -> List[tuple]:
    """Every membership (ADMIN-only ones included) the runtime role holds in
    a project's or a lease's role, and every such role it reaches at all."""
    rows = admin.rows(
        "select g.rolname::text, a.admin_option, a.grantor::regrole::text from pg_auth_members a "
        "join pg_roles g on g.oid = a.roleid where a.member = 'postgres'::regrole "
        "and (g.rolname like 'proj\\_%%' or g.rolname like 'lease\\_%%') order by 1")
    reached = admin.rows(
        "select rolname::text, 'reached' from pg_roles where (rolname like 'proj\\_%%' or rolname like 'lease\\_%%') "
        "and pg_has_role('postgres', oid, 'MEMBER') order by 1")
    return rows + reached


def expiry(lease: Dict[str, Any]) -> float:
    return datetime.fromisoformat(lease["expires_at"].replace("Z", "+00:00")).timestamp()


def api_client(s: Stack) -> pgrest.Client:
    return pgrest.Client(info(s, "authenticator_url"), str(info(s, "secrets")["JWT_SECRET"]))


def set_privilege(admin: Admin) -> str:
    """The pg_has_role privilege that means "may SET ROLE to it" (15 has no SET)."""
    return "SET" if int(admin.value("show server_version_num")) >= 160000 else "MEMBER"


@pytest.fixture(scope="module")
def world(executor: SupabaseExecutor) -> Dict[str, Any]:
    """Projects A and B, each with a table `items` of two rows; alice
    contributes to A."""
    a, b = new_slug("rga"), new_slug("rgb")
    for slug, tag in ((a, "a"), (b, "b")):
        upsert(executor, slug, issue_lease=False)
        migrate(executor, slug, tag)
    executor.execute("upsert_database_access", {"project": a, "principal": {"type": "user", "id": ALICE},
                                                "platform_role": "project_contributor", "issue_lease": False})
    executor.execute("upsert_database_access", {"project": a, "principal": {"type": "service", "id": "viewer"},
                                                "platform_role": "project_viewer", "issue_lease": False})
    return {"a": a, "b": b, "sa": f"proj_{a}", "sb": f"proj_{b}"}


# ------------------------------------------------------------ tokens


def test_dead_and_forged_tokens_are_refused_at_once(
    stack: Stack, world: Dict[str, Any], executor: SupabaseExecutor, api: pgrest.Client, admin: Admin, jwt_secret: str
) -> None:
    a, s = world["a"], world["sa"]
    live = issue(executor, a, database=False)
    victim = issue(executor, a, database=False)
    ended = issue(executor, a, database=False)
    now = int(time.time())
    # the registry's expiry passed; the token's `exp` is 15 minutes away
    admin.run("update supabase_connector.leases set expires_at = now() - interval '1 second' where lease_id = %s",
              (ended["lease_id"],))
    live_claims = claims_of(live["api"]["access_token"])
    assert (live_claims["role"], live_claims["jti"], live_claims["iss"]) == (f"{s}_service_role", live["lease_id"],
                                                                             "supabase-connector")
    forged = {
        # a lease id nobody issued
        "made-up jti": hs256_jwt({**live_claims, "jti": str(uuid.uuid4())}, jwt_secret),
        # a class role without any lease
        "no jti": hs256_jwt({k: v for k, v in live_claims.items() if k != "jti"}, jwt_secret),
        "jti not a uuid": hs256_jwt({**live_claims, "jti": "' or true --"}, jwt_secret),
        # the connector's issuer naming a Supabase role: only leases carry it
        "connector-issued anon": hs256_jwt({"role": "anon", "iss": "supabase-connector", "exp": now + 600}, jwt_secret),
    }
    # before: the victim's tokens work, on the API's pooled connection
    assert api.request(victim["api"]["access_token"], s, "select count(*) from items") == [(2,)]
    assert api.request(victim["api"]["publishable_token"], s, "select count(*) from items") == [(2,)]
    roles = role_catalog(admin)

    assert executor.execute("revoke_database_lease", {"lease_id": victim["lease_id"]})["revoked"] is True
    # at once, on the same connection, with no reload of anything: refused
    for token in (victim["api"]["access_token"], victim["api"]["publishable_token"]):
        refused_by_lease_check(api, token, s)
    assert role_catalog(admin) == roles, "revoking an API-only lease touched a role"
    refused_by_lease_check(api, ended["api"]["access_token"], s)
    for name, token in forged.items():
        with pytest.raises(pgrest.ApiError) as err:
            api.request(token, s, "select 1")
        assert (err.value.kind, err.value.status, err.value.pgcode) == ("pre_request", 401, "PT401"), name

    # a live lease works, both its tokens
    assert api.request(live["api"]["access_token"], s, "select current_user, count(*) from items group by 1") == [
        (f"{s}_service_role", 2)]
    assert api.request(live["api"]["publishable_token"], s, "select current_user, count(*) from items group by 1") == [
        (f"{s}_anon", 2)]
    # Supabase's own tokens pass the check: the central publishable key,
    # a GoTrue user's token, and no token at all (the API's anonymous role)
    central = str(info(stack, "secrets")["SUPABASE_PUBLISHABLE_KEY"])
    gotrue = hs256_jwt({"aud": "authenticated", "exp": now + 600, "iat": now, "iss": "http://kong:8000/auth/v1",
                        "sub": ALICE, "email": "alice@example.test", "role": "authenticated", "aal": "aal1",
                        "session_id": str(uuid.uuid4()), "is_anonymous": False}, jwt_secret)
    assert api.request(central, s, "select current_user") == [("anon",)]
    assert api.request(None, s, "select current_user") == [("anon",)]
    assert api.request(gotrue, s, "select current_user, auth.uid()::text") == [("authenticated", ALICE)]
    # ... and reach nothing of a project: what stops them is the schema's privileges
    for token in (central, gotrue):
        with pytest.raises(pgrest.ApiError) as err:
            api.request(token, s, f"select count(*) from {s}.items")
        assert (err.value.kind, err.value.pgcode) == ("db", "42501")


def test_a_token_of_one_project_reads_nothing_of_another(
    world: Dict[str, Any], executor: SupabaseExecutor, api: pgrest.Client, admin: Admin
) -> None:
    a, sa, sb = world["a"], world["sa"], world["sb"]
    service = issue(executor, a, database=False)
    tokens = {
        "service_role": service["api"]["access_token"],
        "authenticated": issue(executor, a, {"type": "user", "id": ALICE}, database=False)["api"]["access_token"],
        "anon": service["api"]["publishable_token"],
    }
    b_rows = admin.rows(f"select * from {sb}.items order by id")
    for cls, token in tokens.items():
        assert claims_of(token)["role"] == f"{sa}_{cls}"
        assert api.request(token, sa, "select count(*) from items") == [(2,)]  # live: its own project works
        # B's schema as the profile: the request passes the lease check and
        # PostgreSQL refuses it, for want of privilege on B's schema
        for sql in (f"select count(*) from {sb}.items", f"insert into {sb}.items (body) values ('x')",
                    f"update {sb}.items set body = 'x'", f"delete from {sb}.items"):
            with pytest.raises(pgrest.ApiError) as err:
                api.request(token, sb, sql)
            assert (err.value.kind, err.value.pgcode, err.value.status) == ("db", "42501", 403), (cls, sql)
            assert f"permission denied for schema {sb}" in str(err.value)
        # unqualified, B's table is not even visible under B's profile
        with pytest.raises(pgrest.ApiError) as err:
            api.request(token, sb, "select count(*) from items")
        assert err.value.pgcode == "42P01", cls
        assert admin.value("select has_schema_privilege(%s, %s, 'USAGE')", (f"{sa}_{cls}", sb)) is False
        for other in ("owner", *CLASSES):
            assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (f"{sa}_{cls}", f"{sb}_{other}")) is False
    assert admin.rows(f"select * from {sb}.items order by id") == b_rows


# ------------------------------------------------------------ API-only leases touch no role


def test_api_only_leases_leave_the_role_catalog_untouched(
    world: Dict[str, Any], executor: SupabaseExecutor, api: pgrest.Client, admin: Admin
) -> None:
    a, s = world["a"], world["sa"]
    before = role_catalog(admin)
    principals = [SERVICE, {"type": "user", "id": ALICE}, {"type": "service", "id": "viewer"}]
    for i in range(100):
        principal = principals[i % 3]
        lease = issue(executor, a, principal, database=False, lease_ttl_seconds=60)
        assert lease["database"] is None
        assert admin.value("select count(*) from pg_roles where rolname = %s",
                           ("lease_" + lease["lease_id"].replace("-", ""),)) == 0, "an API-only lease created a role"
        renewed = executor.execute("renew_database_lease", {"lease_id": lease["lease_id"], "ttl_seconds": 120})["lease"]
        assert renewed["database"] is None and renewed["api"]["access_token"] != lease["api"]["access_token"]
        if i % 10 == 0:  # the tokens are live in between (a sample keeps the loop short)
            for token in (lease["api"]["access_token"], renewed["api"]["access_token"]):
                assert api.request(token, s, "select current_user") == [(f"{s}_{lease['access_class']}",)]
        assert executor.execute("revoke_database_lease", {"lease_id": lease["lease_id"]})["revoked"] is True
        if i % 10 == 0:
            refused_by_lease_check(api, renewed["api"]["access_token"], s)
    assert role_catalog(admin) == before
    rows = admin.rows("select count(*), count(role_name), bool_and(not database), bool_and(revoked_at is not null), "
                      "bool_and(renewed_at is not null) from supabase_connector.leases l where project = %s "
                      "and exists (select 1 from supabase_connector.audit_log x where x.lease_id = l.lease_id "
                      "and x.action = 'renew_database_lease' and x.params ->> 'ttl_seconds' = '120')", (a,))
    assert rows == [(100, 0, True, True, True)]


# ------------------------------------------------------------ the role functions refuse


VERIFIER = "SCRAM-SHA-256$256:c2FsdHNhbHRzYWx0c2FsdA==$c3RvcmVkc3RvcmVkc3RvcmVkc3RvcmVkc3RvcmVkMTI=:c2VydmVyc2VydmVyc2VydmVyc2VydmVyc2VydmVyMTI="


def catalog_and_registry(admin: Admin) -> Dict[str, Any]:
    out: Dict[str, Any] = dict(role_catalog(admin))
    out["schemas"] = admin.rows("select nspname, nspowner::regrole::text, nspacl::text from pg_namespace order by 1")
    out["default_acl"] = admin.rows(
        "select defaclrole::regrole::text, defaclnamespace, defaclobjtype, defaclacl::text from pg_default_acl order by 1, 2, 3")
    for table in ("projects", "leases", "pools", "meta"):
        out[table] = admin.rows(f"select to_jsonb(x)::text from supabase_connector.{table} x order by 1")
    return out


@pytest.fixture(scope="module")
def refusals(world: Dict[str, Any], executor: SupabaseExecutor, admin: Admin) -> Iterator[Dict[str, Any]]:
    """What the refusal cases need: a hidden (unexposed) and an isolated
    project, a live database lease, an API-only one, a revoked one, one
    expired in the registry, and a role of lease shape no lease has."""
    hidden, isolated = new_slug("rgh"), new_slug("rgi")
    upsert(executor, hidden, expose=False, issue_lease=False)
    upsert(executor, isolated, isolation="isolated", issue_lease=False)
    db = issue(executor, world["a"])
    api_only = issue(executor, world["a"], database=False)
    revoked = issue(executor, world["a"])
    executor.execute("revoke_database_lease", {"lease_id": revoked["lease_id"]})
    expired = issue(executor, world["a"], database=False)
    admin.run("update supabase_connector.leases set expires_at = now() - interval '1 second' where lease_id = %s",
              (expired["lease_id"],))
    stray = "lease_" + uuid.uuid4().hex
    admin.run(f"create role {stray} nologin")
    yield {"h": f"proj_{hidden}", "i": f"proj_{isolated}", "hidden": hidden, "isolated": isolated, "db": db,
           "api_only": api_only, "revoked": revoked, "expired": expired, "stray": stray}
    admin.run(f"drop role if exists {stray}")


def refusal_cases(w: Dict[str, Any], r: Dict[str, Any]) -> List[Tuple[str, str, Sequence[Any]]]:
    """(what, the call, its arguments): each must be refused."""
    A, B, H, I = w["sa"], w["sb"], r["h"], r["i"]  # noqa: N806 (schemas, for readability)
    lease = r["db"]["database"]["user"]
    unregistered = str(uuid.uuid4())
    cases: List[Tuple[str, str, Sequence[Any]]] = []

    def add(what: str, fn: str, *args: Any) -> None:
        placeholders = ", ".join(f"%s::{t}" for t in _arg_types(fn))
        cases.append((what, f"select supabase_connector.{fn}({placeholders})", args))
        if fn in ("role_create", "role_alter", "role_grant", "role_revoke", "role_set"):
            # the same call through `roles_apply`, after one it allows: the
            # whole statement is refused and the first call undone
            calls = [["role_set", f"{A}_anon", "statement_timeout", "1234"], [fn, *args]]
            cases.append((f"roles_apply: {what}", "select supabase_connector.roles_apply(%s::jsonb)", (json.dumps(calls),)))

    for role in ("anon", "authenticated", "authenticator", "service_role", "supabase_admin", "postgres",
                 "a_foreign_role", f"{A}_authenticator", f"proj_{uuid.uuid4().hex[:10]}_owner", f'{A}_owner"; drop role x; --',
                 f"{A}.owner", "lease_" + uuid.uuid4().hex):
        add(f"create {role}", "role_create", role)
    for role, attributes in (("anon", ["NOLOGIN"]), ("authenticator", ["NOINHERIT"]), ("supabase_admin", ["NOSUPERUSER"]),
                             ("postgres", ["NOCREATEROLE"]), (f"{A}_owner", ["SUPERUSER"]), (f"{A}_owner", ["LOGIN"]),
                             (f"{A}_anon", ["BYPASSRLS"]), (f"{A}_owner", ["NOLOGIN", "CREATEROLE"]),
                             (f"{A}_anon", ["NOLOGIN PASSWORD NULL"]), (f"{A}_anon", ["NOLOGIN; drop role x"]),
                             (lease, ["NOLOGIN"]), ("pg_monitor", ["NOLOGIN"])):
        add(f"alter {role} {attributes}", "role_alter", role, attributes)
    for role, member in (
        (f"{A}_owner", f"{B}_anon"),             # another project's class into A's owner
        ("service_role", f"{A}_anon"),           # a Supabase role into a project's class
        (f"{H}_anon", "authenticator"),          # an unexposed project's class to the central API
        (f"{A}_anon", f"{I}_authenticator"),     # another project's API login role
        (f"{I}_anon", "authenticator"),          # an isolated project's class to the central API
        (f"{A}_owner", "authenticator"),         # the owner to any API login role
        ("postgres", f"{A}_owner"), ("supabase_admin", f"{A}_owner"), ("pg_read_server_files", f"{A}_owner"),
        ("pg_execute_server_program", "postgres"),
        ("authenticated", f"{A}_anon"),          # the anon class into `authenticated`
        (f"{A}_owner", f"{A}_anon"), (f"{A}_service_role", f"{A}_authenticated"),
        (f"{A}_service_role", "postgres"),       # the runtime role borrows owners only
        (lease, "authenticator"),                # a lease's role to an API login role (version 1's way)
        (f"{A}_service_role", lease),            # lease roles are made by lease_role_create only
        (f"{A}_owner", 'postgres"; drop role x; --'), (f"{A}.owner", "postgres"),
    ):
        add(f"grant {role} to {member}", "role_grant", role, member)
    for role, member in (("anon", "authenticator"), ("service_role", "postgres"), ("pg_monitor", "postgres"),
                         ("authenticated", "authenticator"), ("supabase_admin", "postgres")):
        add(f"revoke {role} from {member}", "role_revoke", role, member)
    for role, name, value in (("authenticator", "statement_timeout", "1"), ("anon", "statement_timeout", "1"),
                              (f"{A}_owner", "statement_timeout", "1"), (f"{A}_anon", "search_path", "public"),
                              (f"{A}_anon", "role", "postgres"), (f"{A}_anon", "session_authorization", "postgres"),
                              (f"{A}_anon", "statement_timeout", "1'; alter role postgres superuser; --"),
                              (lease, "statement_timeout", "1"), ("postgres", "statement_timeout", "1")):
        add(f"set {name} on {role}", "role_set", role, name, value)
    for role, verifier in (("authenticator", VERIFIER), ("postgres", VERIFIER), ("supabase_admin", VERIFIER),
                           (f"{A}_owner", VERIFIER), (lease, VERIFIER), (f"{I}_authenticator", "a-plaintext-password")):
        add(f"password of {role}", "role_password", role, verifier)
    for role in ("anon", "postgres", "authenticator", "supabase_admin", f"{A}_owner", f"{A}_anon", f"{I}_authenticator", lease):
        add(f"drop {role}", "role_drop", role)
    for calls in ([["role_drop", f"{A}_anon"]], [["lease_role_create", unregistered, VERIFIER]], [["role_password", f"{I}_authenticator", VERIFIER]],
                  [["ROLE_CREATE", f"{A}_owner"]], {"role_create": f"{A}_owner"}, "role_create", None):
        cases.append((f"roles_apply: {calls}", "select supabase_connector.roles_apply(%s::jsonb)", (json.dumps(calls),)))
    for slug in (w["a"], "no-such-project", "x'; drop schema auth cascade; --"):
        add(f"drop project {slug}", "project_drop", slug)
    for role, schema, objects in (("postgres", None, "TABLES"), ("supabase_admin", None, "TABLES"),
                                  (f"{A}_owner", B, "TABLES"), (f"{A}_owner", None, "DATABASES")):
        add(f"default privileges of {role} in {schema}", "role_default_acl_revoke", role, schema, objects, "anon")
    for what, lease_id, verifier in (("unregistered", unregistered, VERIFIER), ("API-only", r["api_only"]["lease_id"], VERIFIER),
                                     ("revoked", r["revoked"]["lease_id"], VERIFIER), ("expired", r["expired"]["lease_id"], VERIFIER),
                                     ("plaintext password", r["db"]["lease_id"], "a-plaintext-password")):
        add(f"lease_role_create: {what}", "lease_role_create", lease_id, verifier)
        add(f"lease_role_renew: {what}", "lease_role_renew", lease_id, verifier)
    for role, slug in (("anon", w["a"]), ("supabase_admin", w["a"]), (f"{A}_owner", w["a"]), (lease, w["a"]),
                       (r["stray"], w["a"]), (lease, "no-such-project"), (f'{lease}"; drop role x; --', w["a"])):
        add(f"drop orphan {role} of {slug}", "lease_role_drop_orphan", role, slug)
    return cases


def _arg_types(fn: str) -> List[str]:
    return {
        "role_create": ["text"], "role_alter": ["text", "text[]"], "role_grant": ["text", "text"],
        "role_revoke": ["text", "text"], "role_set": ["text", "text", "text"], "role_password": ["text", "text"],
        "role_drop": ["text"], "project_drop": ["text"], "role_default_acl_revoke": ["text", "text", "text", "text"],
        "lease_role_create": ["uuid", "text"], "lease_role_renew": ["uuid", "text"], "lease_role_drop_orphan": ["text", "text"],
    }[fn]


def test_role_functions_refuse_what_the_design_does_not_define(
    stack: Stack, world: Dict[str, Any], refusals: Dict[str, Any], admin: Admin
) -> None:
    cases = refusal_cases(world, refusals)
    assert len(cases) > 90
    before = catalog_and_registry(admin)
    with psycopg.connect(info(stack, "runtime_url"), autocommit=True) as runtime:
        assert runtime.execute("select current_user").fetchone() == ("postgres",)
        for what, sql, args in cases:
            with pytest.raises(psycopg.Error) as err:
                runtime.execute(sql, args)
            assert err.value.sqlstate == "42501", f"{what}: {err.value.sqlstate} {err.value}"
            assert str(err.value).startswith("refused: "), f"{what}: {err.value}"
        # a revocation of leases nobody registered revokes nothing: no row, no role
        assert runtime.execute("select supabase_connector.lease_revoke(%s::uuid[], 'x')", ([str(uuid.uuid4())],)).fetchone() == (0,)
    assert catalog_and_registry(admin) == before


def test_the_registry_cannot_point_role_functions_elsewhere(
    stack: Stack, world: Dict[str, Any], refusals: Dict[str, Any], admin: Admin
) -> None:
    """The runtime role writes the registry the role functions read: no row
    it can write names a schema or role outside the connector's own
    (`proj_<slug>`, `lease_<its id>`, `supabase_connector_pool_<name>`), and
    the runtime role recorded in `meta`, the one member that may borrow an
    owner, is not its to change."""
    a, lease = world["a"], refusals["db"]
    before = catalog_and_registry(admin)
    writes = [
        ("a project on a foreign schema", "insert into supabase_connector.projects (slug, schema_name, state) "
         "values ('rg-evil', 'auth', 'archived')", ()),
        ("a project moved onto another schema", "update supabase_connector.projects set schema_name = 'public' where slug = %s", (a,)),
        ("a lease naming a foreign role", "insert into supabase_connector.leases (lease_id, project, role_name, principal_type, "
         "principal_id, platform_role, access_class, database, issued_at, expires_at) values (gen_random_uuid(), %s, "
         "'supabase_admin', 'service', 'x', 'project_owner', 'service_role', true, now(), now() + interval '1 hour')", (a,)),
        ("a lease renamed", "update supabase_connector.leases set role_name = 'authenticator' where lease_id = %s", (lease["lease_id"],)),
        ("a lease's second role renamed", "update supabase_connector.leases set anon_role_name = 'anon' where lease_id = %s",
         (lease["lease_id"],)),
        ("a pool on a foreign login role", "insert into supabase_connector.pools (name, authenticator, max_projects) "
         "values ('evil', 'supabase_admin', 1)", ()),
    ]
    with psycopg.connect(info(stack, "runtime_url"), autocommit=True) as runtime:
        for what, sql, args in writes:
            with pytest.raises(psycopg.errors.CheckViolation):
                runtime.execute(sql, args)
        for sql in ("update supabase_connector.meta set value = '\"anon\"' where key = 'runtime_role'",
                    "delete from supabase_connector.meta where key = 'runtime_role'",
                    "insert into supabase_connector.meta (key, value) values ('x', '1')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                runtime.execute(sql)
        assert runtime.execute("select value #>> '{}' from supabase_connector.meta where key = 'runtime_role'").fetchone() == (
            "postgres",)
    assert catalog_and_registry(admin) == before


# ------------------------------------------------------------ the runtime role keeps nothing


def exercise(ex: SupabaseExecutor, admin: Admin, api: pgrest.Client) -> List[str]:
    """Provision projects of every kind, with database and API-only leases,
    then issue, renew, revoke, migrate, archive and restore, verify and
    repair, reap. Returns the slugs."""
    shared, isolated, hidden = new_slug("rx"), new_slug("rx"), new_slug("rx")
    state = upsert(ex, shared)
    upsert(ex, isolated, isolation="isolated", issue_lease=False)
    upsert(ex, hidden, expose=False, issue_lease=False)
    slugs = [shared, isolated, hidden]
    for slug in slugs:
        migrate(ex, slug, slug)
    ex.execute("upsert_database_access", {"project": shared, "principal": {"type": "user", "id": ALICE},
                                         "platform_role": "project_contributor", "issue_lease": False})
    leases = [issue(ex, slug, database=db) for slug in slugs for db in (True, False)]
    leases.append(issue(ex, shared, {"type": "user", "id": ALICE}))
    with psycopg.connect(state["lease"]["database"]["url"], autocommit=True) as conn:  # a database session works
        assert conn.execute("select count(*) from items").fetchone() == (2,)
    assert api.request(leases[-1]["api"]["access_token"], f"proj_{shared}", "select count(*) from items") == [(2,)]
    for lease in leases[::2]:
        ex.execute("renew_database_lease", {"lease_id": lease["lease_id"]})
    for lease in leases[1::2]:
        ex.execute("revoke_database_lease", {"lease_id": lease["lease_id"]})
    short = [issue(ex, shared, {"type": "user", "id": ALICE}, database=db, lease_ttl_seconds=1) for db in (True, False)]
    ex.execute("remove_database_project", {"project": hidden})
    upsert(ex, hidden, issue_lease=False)
    for slug in slugs:
        assert ex.execute("verify_database_project", {"project": slug, "repair": True})["clean"] is True
    # (the lease JSON shows the expiry to the second; the registry's is up to a second later)
    time.sleep(max(0.0, max(expiry(x) for x in short) + 1.05 - time.time()))
    assert {x["lease_id"] for x in short} <= set(ex.execute("reap_expired_leases", {})["reaped"])
    assert api.request(leases[-1]["api"]["access_token"], f"proj_{shared}", "select count(*) from items") == [(2,)]
    return slugs


def test_runtime_role_holds_no_project_or_lease_role(
    world: Dict[str, Any], executor: SupabaseExecutor, admin: Admin, api: pgrest.Client
) -> None:
    exercise(executor, admin, api)
    assert admin.value("select count(*) from pg_roles where rolname like 'lease\\_%%'") > 0
    assert runtime_memberships(admin) == []


@pytest.fixture(scope="module", params=["", "set, inherit"], ids=["self_grant_empty", "self_grant_set_inherit"])
def pg18(request: pytest.FixtureRequest) -> Iterator[Tuple[Stack, Admin, SupabaseExecutor, pgrest.Client]]:
    """A fresh PostgreSQL 18 stack with `createrole_self_grant` set, bootstrapped."""
    if "18" not in VERSIONS:
        pytest.skip("PostgreSQL 18 is not in STACK_PG_VERSIONS")
    s = Stack.up(pg="18", createrole_self_grant=request.param)
    admin = ex = api = None
    try:
        admin = Admin(info(s, "admin_url"))
        assert admin.value("show createrole_self_grant") == request.param
        bootstrap(s)
        ex = create_executor(connector_config(s))
        api = api_client(s)
        yield s, admin, ex, api
    finally:
        for closing in (api, ex):
            if closing is not None:
                closing.close()
        if admin is not None:
            admin.conn.close()
        s.down()


def test_runtime_role_holds_no_project_or_lease_role_on_pg18(
    pg18: Tuple[Stack, Admin, SupabaseExecutor, pgrest.Client]
) -> None:
    _, admin, ex, api = pg18
    slugs = exercise(ex, admin, api)
    assert admin.value("select count(*) from pg_roles where rolname like 'lease\\_%%'") > 0
    assert runtime_memberships(admin) == []
    # the memberships the design defines, with their options, and no other
    s = f"proj_{slugs[0]}"
    assert admin.rows(
        "select g.rolname::text, m.rolname::text, a.admin_option, a.inherit_option, a.set_option from pg_auth_members a "
        "join pg_roles g on g.oid = a.roleid join pg_roles m on m.oid = a.member "
        "where (g.rolname like %s or m.rolname like %s) and m.rolname not like 'lease\\_%%' order by 1, 2",
        (s + "\\_%", s + "\\_%")) == sorted([
            # Supabase's roles are held without SET: no login role that
            # switches to a class role can go on to them
            ("anon", f"{s}_anon", False, True, False),
            ("authenticated", f"{s}_authenticated", False, True, False),
            (f"{s}_anon", "authenticator", False, False, True),
            (f"{s}_authenticated", "authenticator", False, False, True),
            (f"{s}_owner", f"{s}_service_role", False, True, True),
            (f"{s}_service_role", "authenticator", False, False, True),
            ("supabase_connector_auth", f"{s}_owner", False, True, True),
        ])
    # lease login roles: members of one class role each, of nothing else, and nothing is a member of them
    assert admin.rows(
        "select r.rolname from pg_roles r where r.rolname like 'lease\\_%%' and ("
        "(select count(*) from pg_auth_members a where a.member = r.oid) <> 1 "
        "or exists (select 1 from pg_auth_members a where a.roleid = r.oid))") == []


# ------------------------------------------------------------ archive and restore


def archive_and_restore(ex: SupabaseExecutor, admin: Admin, api: pgrest.Client) -> None:
    slug = new_slug("ar")
    s = f"proj_{slug}"
    state = upsert(ex, slug)
    migrate(ex, slug, "ar")
    ex.execute("upsert_database_access", {"project": slug, "principal": {"type": "user", "id": ALICE},
                                         "platform_role": "project_contributor", "issue_lease": False})
    tokens = {"service_role": state["lease"]["api"]["access_token"],
              "authenticated": issue(ex, slug, {"type": "user", "id": ALICE}, database=False)["api"]["access_token"],
              "anon": state["lease"]["api"]["publishable_token"]}
    for token in tokens.values():
        assert api.request(token, s, "select count(*) from items") == [(2,)]
    can_set = set_privilege(admin)

    ex.execute("remove_database_project", {"project": slug})
    for cls, token in tokens.items():
        role = f"{s}_{cls}"
        assert admin.value("select has_schema_privilege(%s, %s, 'USAGE')", (role, s)) is False, cls
        assert admin.value(f"select pg_has_role('authenticator', %s, '{can_set}')", (role,)) is False, cls
        # the API cannot switch to the class role any more (and the lease is revoked)
        refused_at_role_switch(api, token, s, "permission denied to set role")
    assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (f"{s}_service_role", f"{s}_owner")) is False
    # even a session that could switch to a class role reads nothing
    admin.run(f"set role {s}_service_role")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.run(f"select count(*) from {s}.items")
    finally:
        admin.run("reset role")
    assert runtime_memberships(admin) == []

    restored = upsert(ex, slug)
    for cls in CLASSES:
        assert admin.value("select has_schema_privilege(%s, %s, 'USAGE')", (f"{s}_{cls}", s)) is True, cls
        assert admin.value(f"select pg_has_role('authenticator', %s, '{can_set}')", (f"{s}_{cls}",)) is True, cls
    assert admin.value("select pg_has_role(%s, %s, 'USAGE')", (f"{s}_service_role", f"{s}_owner")) is True
    fresh = {"service_role": restored["lease"]["api"]["access_token"],
             "authenticated": issue(ex, slug, {"type": "user", "id": ALICE}, database=False)["api"]["access_token"],
             "anon": restored["lease"]["api"]["publishable_token"]}
    for cls, token in fresh.items():
        assert api.request(token, s, "select current_user, count(*) from items group by 1") == [(f"{s}_{cls}", 2)]
    with psycopg.connect(restored["lease"]["database"]["url"], autocommit=True) as conn:
        assert conn.execute("select current_user, count(*) from items group by 1").fetchone() == (f"{s}_owner", 2)
    # the leases the archive revoked stay dead
    for token in tokens.values():
        refused_by_lease_check(api, token, s)
    assert ex.execute("verify_database_project", {"project": slug})["clean"] is True
    assert runtime_memberships(admin) == []


def test_archive_then_restore(executor: SupabaseExecutor, admin: Admin, api: pgrest.Client) -> None:
    archive_and_restore(executor, admin, api)


def test_archive_then_restore_on_pg18(pg18: Tuple[Stack, Admin, SupabaseExecutor, pgrest.Client]) -> None:
    _, admin, ex, api = pg18
    archive_and_restore(ex, admin, api)


# ------------------------------------------------------------ bootstrap upgrade from version 1


def scram_verifier(password: str, iterations: int = 256) -> str:
    """What version 1 sent as a lease's password (RFC 5802/7677)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}"


def v1_token(jwt_secret: str, role: str, lease_id: str, slug: str, principal: str, platform_role: str, access_class: str,
             expires: datetime) -> str:
    """A token as version 1 signed it: `role` is the lease's own role."""
    now = int(time.time())
    sub = principal if access_class == "authenticated" else str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"urn:supabase-connector:{slug}:service:project"))
    return hs256_jwt({"iss": "supabase-connector", "role": role, "aud": "authenticated", "iat": now,
                      "exp": int(expires.timestamp()), "jti": lease_id, "sub": sub, "project": slug,
                      "platform_role": platform_role, "access_class": access_class}, jwt_secret)


def memberships_but_the_runtime_roles(admin: Admin) -> List[tuple]:
    """(role, member, admin, inherit, set) of every membership whose member is
    not the runtime role (inherit and set: None before PostgreSQL 16)."""
    return sorted(admin.rows(
        "select g.rolname::text, m.rolname::text, a.admin_option, to_jsonb(a) ->> 'inherit_option', "
        "to_jsonb(a) ->> 'set_option' from pg_auth_members a join pg_roles g on g.oid = a.roleid "
        "join pg_roles m on m.oid = a.member where m.rolname <> 'postgres'"), key=repr)


@pytest.mark.parametrize("pg", VERSIONS, ids=lambda v: f"pg{v}")
def test_bootstrap_upgrades_a_version_1_registry(pg: str) -> None:
    s = Stack.up(pg=pg)
    admin = Admin(info(s, "admin_url"))
    jwt_secret = str(info(s, "secrets")["JWT_SECRET"])
    api = api_client(s)
    try:
        # version 1, as its bootstrap installed it
        with psycopg.connect(info(s, "admin_url")) as conn:
            with conn.transaction():
                conn.execute("select set_config('supabase_connector.runtime_role', 'postgres', true)")
                conn.execute((ROOT / "sql" / "bootstrap" / "v1.sql").read_text())
        assert admin.value("select value #>> '{}' from supabase_connector.meta where key = 'bootstrap_version'") == "1"
        # live projects and leases, made as version 1 made them, as the runtime role
        a, b = new_slug("va"), new_slug("vb")
        sa = f"proj_{a}"
        pg16 = int(admin.value("show server_version_num")) >= 160000
        lease_id, api_lease_id = str(uuid.uuid4()), str(uuid.uuid4())
        lease, api_lease = "lease_" + lease_id.replace("-", ""), "lease_" + api_lease_id.replace("-", "")
        password = uuid.uuid4().hex + uuid.uuid4().hex
        expires = (datetime.now(timezone.utc) + timedelta(minutes=15)).replace(microsecond=0)
        sql = (ROOT / "tests" / "fixtures" / "v1_state.sql").read_text().format(
            a=a, b=b, with_inherit_set=" WITH INHERIT TRUE, SET TRUE" if pg16 else "",
            with_inherit=" WITH INHERIT TRUE" if pg16 else "", lease=lease, lease_id=lease_id,
            verifier=scram_verifier(password), valid_until=expires.isoformat(), api_lease=api_lease,
            api_lease_id=api_lease_id, api_expires=expires.isoformat(), user=ALICE)
        with psycopg.connect(info(s, "runtime_url")) as conn:
            with conn.transaction():
                assert conn.execute("select current_user").fetchone() == ("postgres",)
                conn.execute(sql)
        url = (f"postgresql://{lease}:{password}@{info(s, 'host')}:{info(s, 'port')}/postgres"
               f"?options=-c%20search_path%3D{sa}")
        with psycopg.connect(url, autocommit=True) as conn:  # the v1 service lease's session builds data
            assert conn.execute("select current_user").fetchone() == (f"{sa}_owner",)
            conn.execute(TABLE.format(tag="v1"))
        tokens = {
            "service": v1_token(jwt_secret, lease, lease_id, a, "project", "project_owner", "service_role", expires),
            "publishable": v1_token(jwt_secret, lease + "_anon", lease_id, a, "project", "project_owner", "anon", expires),
            "user": v1_token(jwt_secret, api_lease, api_lease_id, a, ALICE, "project_contributor", "authenticated", expires),
        }
        v1_api = pgrest.Client(info(s, "authenticator_url"), jwt_secret, pre_request=None)
        try:
            for token in tokens.values():  # version 1 served them without a pre-request check
                assert v1_api.request(token, sa, "select count(*) from items") == [(2,)]
        finally:
            v1_api.close()
        if pg16:  # version 1 left the runtime role an ADMIN membership in each role it created
            assert len(runtime_memberships(admin)) >= 8 + 3
        registry = {t: admin.rows(f"select to_jsonb(x)::text from supabase_connector.{t} x order by 1")
                    for t in ("grants", "leases", "migrations", "teams", "team_members")}
        projects = admin.rows("select slug, schema_name, state, exposed, isolation, tenant_code, created_at "
                              "from supabase_connector.projects order by 1")
        data = admin.rows(f"select * from {sa}.items order by id")
        roles = admin.rows("select rolname from pg_roles order by 1")
        members = memberships_but_the_runtime_roles(admin)

        out = cli("bootstrap", "--database-url", info(s, "admin_url"), "--output", "json", check=True)
        assert (json.loads(out.stdout)["previous_version"], json.loads(out.stdout)["bootstrap_version"]) == (1, 3)

        # nothing lost: registry, data, roles
        assert {t: admin.rows(f"select to_jsonb(x)::text from supabase_connector.{t} x order by 1") for t in registry} == registry
        assert admin.rows("select slug, schema_name, state, exposed, isolation, tenant_code, created_at "
                          "from supabase_connector.projects order by 1") == projects
        assert admin.rows(f"select * from {sa}.items order by id") == data
        # roles: the same, and the pools' anonymous role version 2 adds
        assert admin.rows("select rolname from pg_roles where rolname <> 'supabase_connector_pool_anon' order by 1") == roles
        assert admin.value("select count(*) from pg_roles where rolname = 'supabase_connector_pool_anon'") == 1
        # every membership but the runtime role's is kept, with its options (on
        # 16+ granted again by the superuser where the runtime role had granted
        # it); the served project's class roles are added for `authenticator`
        added = [(f"{sa}_{cls}", "authenticator", False, "false" if pg16 else None, "true" if pg16 else None)
                 for cls in CLASSES]
        # on 16+ class roles hold Supabase's anon and authenticated without SET
        kept = [(r, m, adm, inh, "false" if pg16 and r in ("anon", "authenticated") and m.startswith("proj_") else st)
                for (r, m, adm, inh, st) in members]
        assert memberships_but_the_runtime_roles(admin) == sorted(kept + added, key=repr)
        # the upgraded graph: the runtime role holds nothing of the projects and
        # leases; `authenticator` holds the class roles of the served project
        # (not of the unexposed one) and runs the lease check
        assert runtime_memberships(admin) == []
        can_set = set_privilege(admin)
        for cls in CLASSES:
            assert admin.value(f"select pg_has_role('authenticator', %s, '{can_set}')", (f"{sa}_{cls}",)) is True, cls
            assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (f"proj_{b}_{cls}",)) is False, cls
        assert admin.value(
            "select c from pg_db_role_setting s, unnest(s.setconfig) c where s.setrole = 'authenticator'::regrole "
            "and s.setdatabase = 0 and c like 'pgrst.db\\_pre\\_request=%%'") == "pgrst.db_pre_request=supabase_connector_api.pre_request"
        # the version-1 lease lives on: its database login, and its tokens through the lease check
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("select current_user, count(*) from items group by 1").fetchone() == (f"{sa}_owner", 2)
        for name, role in (("service", lease), ("publishable", lease + "_anon"), ("user", api_lease)):
            assert api.request(tokens[name], sa, "select current_user, count(*) from items group by 1") == [(role, 2)], name

        with create_executor(connector_config(s)) as ex:
            # a version-1 lease whose time is up (in the registry) is refused by the
            # lease check at once, though its role is still there ...
            admin.run("update supabase_connector.leases set expires_at = now() - interval '1 second' where lease_id = %s",
                      (api_lease_id,))
            assert admin.value("select count(*) from pg_roles where rolname = %s", (api_lease,)) == 1
            refused_by_lease_check(api, tokens["user"], sa)
            # ... and reaping drops it
            assert ex.execute("reap_expired_leases", {})["reaped"] == [api_lease_id]
            assert admin.value("select count(*) from pg_roles where rolname = %s", (api_lease,)) == 0
            # revoking the version-1 service lease drops both its roles and ends its
            # logins; its tokens name roles that are gone, so the switch to them fails
            session = psycopg.connect(url, autocommit=True)
            revoked = ex.execute("revoke_database_lease", {"lease_id": lease_id})
            assert (revoked["revoked"], revoked["terminated_sessions"]) == (True, 1)
            with pytest.raises(psycopg.OperationalError):
                session.execute("select 1")
            session.close()
            assert admin.value("select count(*) from pg_roles where rolname in (%s, %s)", (lease, lease + "_anon")) == 0
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(url, connect_timeout=5).close()
            for name in ("service", "publishable"):
                refused_at_role_switch(api, tokens[name], sa, "does not exist")
            assert runtime_memberships(admin) == []

            # before their next upsert, the old projects lack only what version 2
            # adds: their class roles' statement timeouts (per-project limits)
            for slug in (a, b):
                findings = ex.execute("verify_database_project", {"project": slug})["projects"][0]["findings"]
                assert sorted((f["code"], f["object"], f["expected"]) for f in findings) == [
                    ("role_setting", f"role proj_{slug}_anon", "statement_timeout = 3000"),
                    ("role_setting", f"role proj_{slug}_authenticated", "statement_timeout = 8000")], findings
            # the old projects upsert and verify clean, and leases work the new way
            for slug in (a, b):
                upsert(ex, slug, issue_lease=False)
                report = ex.execute("verify_database_project", {"project": slug})
                assert report["clean"] is True and report["projects"][0]["findings"] == [], report
            assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (f"proj_{b}_anon",)) is False
            new = issue(ex, a)
            user = issue(ex, a, {"type": "user", "id": ALICE}, database=False)
            assert claims_of(new["api"]["access_token"])["role"] == f"{sa}_service_role"
            assert api.request(new["api"]["access_token"], sa, "select count(*) from items") == [(2,)]
            assert api.request(user["api"]["access_token"], sa, "select current_user, auth.uid()::text") == [
                (f"{sa}_authenticated", ALICE)]
            with psycopg.connect(new["database"]["url"], autocommit=True) as conn:
                assert conn.execute("select current_user, count(*) from items group by 1").fetchone() == (f"{sa}_owner", 2)
            renewed = ex.execute("renew_database_lease", {"lease_id": new["lease_id"]})["lease"]
            assert api.request(renewed["api"]["access_token"], sa, "select 1") == [(1,)]
            for x in (new, user):
                ex.execute("revoke_database_lease", {"lease_id": x["lease_id"]})
            refused_by_lease_check(api, renewed["api"]["access_token"], sa)
            refused_by_lease_check(api, user["api"]["access_token"], sa)
            assert admin.value("select count(*) from pg_roles where rolname like 'lease\\_%%'") == 0
            assert runtime_memberships(admin) == []
    finally:
        api.close()
        admin.conn.close()
        s.down()
