"""Issue 4: leases against the real stack, API access checked the way
PostgREST does it (tests/pgrest.py)."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from datetime import datetime
from typing import Any, Dict, Iterator

import jwt as pyjwt
import psycopg
import pytest

import pgrest
from conftest import Admin, connector_config, info, new_slug
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


def test_lease_json_and_roles(two: Dict[str, Any], admin: Admin, api: pgrest.Client, stack: Any) -> None:
    lease_ = two["a"]["lease"]
    s, slug = two["a"]["schema"], two["a"]["project"]
    assert lease_["access_class"] == "service_role" and lease_["principal"] == SERVICE
    assert (lease_["project"], lease_["schema"], lease_["platform_role"]) == (slug, s, "project_owner")
    issued, expires = (datetime.fromisoformat(lease_[k].replace("Z", "+00:00")) for k in ("issued_at", "expires_at"))
    assert lease_["ttl_seconds"] == 900 == (expires - issued).total_seconds() and lease_["renewable"] is True
    assert set(lease_["api"]) >= {"url", "schema", "apikey", "access_token", "publishable_token"}
    assert lease_["api"]["schema"] == s and lease_["api"]["apikey"] == info(stack, "secrets")["SUPABASE_PUBLISHABLE_KEY"]
    db = lease_["database"]
    assert (db["dbname"], db["port"], db["schema"]) == ("postgres", int(info(stack, "port")), s)
    assert lease_["env"] == {**lease_["env"], "SUPABASE_ANON_KEY": lease_["api"]["apikey"], "SUPABASE_DB_SCHEMA": s,
                             "SUPABASE_ACCESS_TOKEN": lease_["api"]["access_token"], "DATABASE_URL": db["url"],
                             "SUPABASE_URL": lease_["api"]["url"]}
    # the tokens: HS256 with JWT_SECRET; the claims name the project's
    # class role, the lease as `jti`, issued by the connector
    claims = api.claims(lease_["api"]["access_token"])
    sub = str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:supabase-connector:{slug}:service:project"))
    assert {k: claims[k] for k in ("role", "aud", "iss", "jti", "sub", "project", "platform_role", "access_class", "exp", "iat")} == {
        "role": f"{s}_service_role", "aud": "authenticated", "iss": "supabase-connector", "jti": lease_["lease_id"], "sub": sub,
        "project": slug, "platform_role": "project_owner", "access_class": "service_role",
        "exp": int(expires.timestamp()), "iat": int(issued.timestamp())}
    public = api.claims(lease_["api"]["publishable_token"])
    assert (public["role"], public["access_class"], public["exp"], public["sub"], public["jti"], public["iss"]) == (
        f"{s}_anon", "anon", claims["exp"], sub, lease_["lease_id"], "supabase-connector")
    # the central API switches to the class roles without holding their
    # privileges (`authenticator` is NOINHERIT; PG 16+ grants SET, not INHERIT)
    for cls in ("service_role", "anon"):
        assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (f"{s}_{cls}",)) is True
        assert admin.value("select pg_has_role('authenticator', %s, 'USAGE')", (f"{s}_{cls}",)) is False
    # no password or token is kept in the registry or the audit log
    for secret in (db["password"], lease_["api"]["access_token"], lease_["api"]["publishable_token"]):
        for table in ("leases", "audit_log", "projects"):
            assert admin.value(f"select count(*) from supabase_connector.{table} x where x::text like %s",
                               (f"%{secret}%",)) == 0, table
    role = db["user"]
    assert role == "lease_" + lease_["lease_id"].replace("-", "")
    attrs = admin.rows("select rolcanlogin, rolinherit, rolsuper, rolvaliduntil is not null from pg_roles where rolname = %s", (role,))
    assert attrs == [(True, True, False, True)]
    assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (role, f"{s}_service_role")) is True
    # one role per database lease: no `_anon` sibling; the registry row names it
    assert admin.value("select count(*) from pg_roles where rolname like %s", (role + "%",)) == 1
    assert admin.rows("select role_name, anon_role_name, database from supabase_connector.leases where lease_id = %s",
                      (lease_["lease_id"],)) == [(role, None, True)]
    # no API login role and not the runtime role reaches the lease role:
    # tokens never name it, and the connector keeps no membership in it
    for member in ("authenticator", "postgres"):
        assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (member, role)) is False, member
    assert admin.value("select count(*) from pg_auth_members where roleid = %s::regrole", (role,)) == 0
    # the service class acts as the project's owner through its connection options
    assert db["options"] == f"-c search_path={s} -c role={s}_owner"
    assert "options=-c%20search_path%3D" + s + "%20-c%20role%3D" + s + "_owner" in db["url"]
    assert admin.value("select count(*) from pg_db_role_setting where setrole = %s::regrole and array_to_string(setconfig, ',') like 'role=%%'",
                       (role,)) == 0
    # VALID UNTIL is the registry's expiry (the lease JSON and the token's
    # `exp` show it to the second)
    assert admin.rows("select date_trunc('second', r.rolvaliduntil), r.rolvaliduntil = l.expires_at from pg_roles r "
                      "join supabase_connector.leases l on l.role_name = r.rolname where r.rolname = %s", (role,)) == [(expires, True)]
    # no grant ever names a lease role
    assert admin.value("select count(*) from pg_class where relacl::text like %s", (f"%{role}%",)) == 0
    # the registry keeps no password, the verifier is SCRAM with 256 iterations
    verifier = admin.value("select rolpassword from pg_authid where rolname = %s", (role,))
    assert verifier.startswith("SCRAM-SHA-256$256:")
    assert lease_["database"]["password"] not in verifier


def test_service_and_publishable_tokens(two: Dict[str, Any], api: pgrest.Client, admin: Admin) -> None:
    a, b = two["a"], two["b"]
    s = a["schema"]
    service = a["lease"]["api"]["access_token"]
    publishable = a["lease"]["api"]["publishable_token"]
    # service class: every row (RLS bypassed in its own schema), and writes
    assert api.request(service, s, "select count(*) from items") == [(2,)]
    assert len(api.request(service, s, "update items set body = body returning id")) == 2
    api.request(service, s, "insert into items (body) values ('x') returning id")
    assert api.request(service, s, "delete from items where body = 'x' returning body") == [("x",)]
    # publishable: reads under RLS (anonymous: no rows), cannot write
    assert api.request(publishable, s, "select count(*) from items") == [(0,)]
    for sql in ("insert into items (body) values ('x')", "update items set body = body", "delete from items"):
        with pytest.raises(pgrest.ApiError) as err:
            api.request(publishable, s, sql)
        assert err.value.pgcode == "42501", sql
    for token in (service, publishable):
        for sql in (
            f"select count(*) from {b['schema']}.items",
            "select count(*) from auth.users",
            "select count(*) from supabase_connector.projects",
        ):
            with pytest.raises(pgrest.ApiError) as err:
                api.request(token, s, sql)
            assert err.value.pgcode == "42501", sql
    # B's schema is not reachable by name either (it is not on the path)
    with pytest.raises(pgrest.ApiError) as err:
        api.request(service, b["schema"], "select count(*) from items")
    assert err.value.pgcode == "42P01"
    # the roles behind the tokens reach no other role: SET ROLE needs membership
    others = [f"{b['schema']}_{c}" for c in ("owner", "service_role", "authenticated", "anon")] + [
        b["lease"]["database"]["user"], "service_role", "authenticator", "postgres", "supabase_admin"]
    for token, role in ((service, f"{s}_service_role"), (publishable, f"{s}_anon")):
        assert api.claims(token)["role"] == role
        for other in others:
            assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (role, other)) is False, (role, other)
    # (the class roles sit under the global API roles, as on Supabase; the
    # publishable role under `anon` only)
    anon_role = api.claims(publishable)["role"]
    assert admin.value("select pg_has_role(%s, 'authenticated', 'MEMBER')", (anon_role,)) is False
    for own in (f"{s}_owner", f"{s}_service_role", f"{s}_authenticated"):
        assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (anon_role, own)) is False, own
    # a token is only as good as its signature: a role claim edited by hand is refused
    forged = pyjwt.encode({**api.claims(publishable), "role": f"{b['schema']}_owner"}, "not-the-jwt-secret-of-this-stack-but-32-bytes-long", algorithm="HS256")
    with pytest.raises(pgrest.ApiError) as err:
        api.request(forged, s, "select 1")
    assert err.value.kind == "jwt_invalid"


def test_database_lease_cannot_switch_roles(two: Dict[str, Any]) -> None:
    a, b = two["a"], two["b"]
    targets = (f"{b['schema']}_owner", f"{b['schema']}_service_role", b["lease"]["database"]["user"], "service_role",
               "postgres", "authenticator", "supabase_admin", "anon", "authenticated")
    with psycopg.connect(a["lease"]["database"]["url"], autocommit=True) as conn:
        assert conn.execute("select current_user, session_user").fetchone() == (
            f"{a['schema']}_owner", a["lease"]["database"]["user"])
        for target in targets:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f'set role "{target}"')
        for sql in (f"select count(*) from {b['schema']}.items", "select count(*) from auth.users",
                    "select count(*) from supabase_connector.leases", "select rolpassword from pg_authid limit 1"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        conn.execute("set role none")
        assert conn.execute("select current_user").fetchone() == (a["lease"]["database"]["user"],)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select count(*) from {b['schema']}.items")


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


def test_expired_lease(executor: SupabaseExecutor, two: Dict[str, Any], api: pgrest.Client, admin: Admin) -> None:
    s = two["a"]["schema"]
    short = lease(executor, two["a"]["project"], lease_ttl_seconds=1)  # the catalog's minimum
    assert short["ttl_seconds"] == 1
    assert api.claims(short["api"]["access_token"])["exp"] - api.claims(short["api"]["access_token"])["iat"] == 1
    time.sleep(2.2)
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(short["database"]["url"]).close()
    assert "password authentication failed" in str(err.value)
    for token in (short["api"]["access_token"], short["api"]["publishable_token"]):
        with pytest.raises(pgrest.ApiError) as api_err:
            api.request(token, s, "select 1")
        assert api_err.value.kind == "jwt_expired"
    # an expired lease is not brought back by a renewal
    with pytest.raises(Conflict) as renew_err:
        executor.execute("renew_database_lease", {"lease_id": short["lease_id"]})
    assert "expired" in str(renew_err.value)
    assert admin.value("select rolvaliduntil < now() from pg_roles where rolname = %s", (short["database"]["user"],)) is True
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(short["database"]["url"]).close()


def test_revoke(executor: SupabaseExecutor, two: Dict[str, Any], api: pgrest.Client, admin: Admin) -> None:
    s = two["a"]["schema"]
    victim = lease(executor, two["a"]["project"])
    token = victim["api"]["access_token"]
    session = psycopg.connect(victim["database"]["url"], autocommit=True)
    session.execute("create table kept_after_revoke (id int)")
    session.execute("insert into kept_after_revoke values (1)")
    # a second session steps out of the owner role, creates as the lease
    # itself, and sits idle in a transaction holding a lock on it
    locker = psycopg.connect(victim["database"]["url"])
    locker.autocommit = True
    locker.execute("set role none")
    locker.execute("create table made_as_lease (id int)")
    locker.execute("insert into made_as_lease values (1), (2)")
    locker.autocommit = False
    locker.execute("lock table made_as_lease in access exclusive mode")
    assert admin.value("select relowner::regrole::text from pg_class where oid = %s::regclass",
                       (f"{s}.made_as_lease",)) == victim["database"]["user"]
    assert api.allowed(token, s, "select 1")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # must not hang on the idle session's lock
        result = pool.submit(executor.execute, "revoke_database_lease", {"lease_id": victim["lease_id"]}).result(timeout=30)
    assert result["revoked"] is True and result["terminated_sessions"] == 2
    # the tokens fail at once: the class roles they name are there, the lease is not
    for t in (token, victim["api"]["publishable_token"]):
        with pytest.raises(pgrest.ApiError) as err:
            api.request(t, s, "select 1")
        assert (err.value.kind, err.value.pgcode, err.value.status) == ("pre_request", "PT401", 401)
        assert "lease revoked or expired" in str(err.value)
    # the open sessions were terminated
    for conn in (session, locker):
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
        conn.close()
    # nothing it created is lost; what it owned now belongs to the project
    assert admin.value(f"select count(*) from {s}.kept_after_revoke") == 1
    assert admin.value(f"select count(*) from {s}.made_as_lease") == 2
    assert admin.value("select relowner::regrole::text from pg_class where oid = %s::regclass",
                       (f"{s}.made_as_lease",)) == f"{s}_owner"
    assert admin.value("select count(*) from pg_roles where rolname = %s", (victim["database"]["user"],)) == 0
    assert admin.rows("select revoked_at is not null, revoke_reason from supabase_connector.leases where lease_id = %s",
                      (victim["lease_id"],)) == [(True, "revoked")]
    # the owner was borrowed for the revocation and given back
    assert admin.value("select pg_has_role('postgres', %s, 'USAGE')", (f"{s}_owner",)) is False
    # revoking again changes nothing; renewing is refused, never a resurrection
    assert executor.execute("revoke_database_lease", {"lease_id": victim["lease_id"]})["revoked"] is False
    with pytest.raises(Conflict):
        executor.execute("renew_database_lease", {"lease_id": victim["lease_id"]})
    assert admin.value("select count(*) from pg_roles where rolname = %s", (victim["database"]["user"],)) == 0
    with pytest.raises(NotFound):
        executor.execute("renew_database_lease", {"lease_id": str(uuid.uuid4())})


def test_renew_rotates_and_respects_the_maximum(
    stack: Any, executor: SupabaseExecutor, two: Dict[str, Any], api: pgrest.Client, admin: Admin
) -> None:
    from supabase_connector import create_executor

    with create_executor(connector_config(stack, lease={"default_ttl_seconds": 2, "max_ttl_seconds": 3, "max_lifetime_seconds": 3})) as ex:
        first = lease(ex, two["a"]["project"], lease_ttl_seconds=2)
        renewed = ex.execute("renew_database_lease", {"lease_id": first["lease_id"], "ttl_seconds": 3})["lease"]
        assert renewed["lease_id"] == first["lease_id"]
        assert renewed["database"]["password"] != first["database"]["password"]
        assert renewed["renewable"] is False  # capped by the maximum lifetime
        # fresh tokens carry the new expiry
        first_claims, renewed_claims = (api.claims(x["api"]["access_token"]) for x in (first, renewed))
        assert renewed_claims["exp"] == first_claims["iat"] + 3 > first_claims["exp"]
        assert renewed_claims["jti"] == first["lease_id"] and renewed_claims["role"] == f"{two['a']['schema']}_service_role"
        assert renewed["database"]["user"] == first["database"]["user"]
        # old and new tokens alike are worth the lease: both work until it ends
        for t in (first["api"]["access_token"], renewed["api"]["access_token"]):
            assert api.allowed(t, two["a"]["schema"], "select 1")
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
    # above the configured maximum per issue (3600 s): refused, for issue and renewal alike
    with pytest.raises(InvalidParams) as bad:
        lease(executor, two["a"]["project"], lease_ttl_seconds=3601)
    assert "/lease_ttl_seconds" in str(bad.value) + str(bad.value.details)
    fresh = lease(executor, two["a"]["project"], lease_ttl_seconds=60, database=False)
    with pytest.raises(InvalidParams) as bad:
        executor.execute("renew_database_lease", {"lease_id": fresh["lease_id"], "ttl_seconds": 3601})
    assert "/ttl_seconds" in str(bad.value) + str(bad.value.details)
    roles_before = admin.rows("select rolname, rolvaliduntil from pg_roles order by 1")
    renewed = executor.execute("renew_database_lease", {"lease_id": fresh["lease_id"], "ttl_seconds": 3600})["lease"]
    assert renewed["ttl_seconds"] == 3600 and renewed["renewable"] is True and renewed["database"] is None
    # renewing an API-only lease is a registry write: no role is touched
    assert admin.rows("select rolname, rolvaliduntil from pg_roles order by 1") == roles_before
    assert api.claims(renewed["api"]["access_token"])["exp"] == int(
        datetime.fromisoformat(renewed["expires_at"].replace("Z", "+00:00")).timestamp())
    assert admin.value("select date_trunc('second', expires_at) from supabase_connector.leases where lease_id = %s",
                       (fresh["lease_id"],)) == \
        datetime.fromisoformat(renewed["expires_at"].replace("Z", "+00:00"))


def test_200_concurrent_leases_then_reap(executor: SupabaseExecutor, api: pgrest.Client, admin: Admin) -> None:
    slug = new_slug("many")
    upsert(executor, slug, issue_lease=False, limits={"max_database_leases": 100})  # the default is 50 live ones
    s = f"proj_{slug}"

    def issue(i: int) -> Dict[str, Any]:  # every fourth expires at once; half carry database access
        return lease(executor, slug, lease_ttl_seconds=1 if i % 4 == 0 else 600, database=i % 2 == 1)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        leases = list(pool.map(issue, range(200)))
    ids = {x["lease_id"] for x in leases}
    assert len(ids) == 200
    assert len({x["api"]["access_token"] for x in leases}) == 200
    assert len({x["database"]["user"] for x in leases if x["database"]}) == 100
    assert len({x["database"]["password"] for x in leases if x["database"]}) == 100
    expired = {x["lease_id"] for i, x in enumerate(leases) if i % 4 == 0}
    lasting = [x for i, x in enumerate(leases) if i % 4 != 0]
    # all valid: every lasting token works, every lasting password logs in
    for x in lasting:
        assert api.request(x["api"]["access_token"], s, "select auth.uid()::text, current_user") == [
            (api.claims(x["api"]["access_token"])["sub"], f"{s}_service_role")]
        if x["database"]:
            with psycopg.connect(x["database"]["url"]) as conn:
                assert conn.execute("select session_user").fetchone() == (x["database"]["user"],)
    assert admin.value("select count(*) from supabase_connector.leases where project = %s and revoked_at is null", (slug,)) == 200
    time.sleep(2.2)
    # reap removes exactly the expired leases (of this project and any other)
    due = {r[0] for r in admin.rows(
        "select lease_id::text from supabase_connector.leases where revoked_at is null and expires_at <= now()")}
    assert expired <= due
    reaped = executor.execute("reap_expired_leases", {})
    assert len(reaped["reaped"]) == len(set(reaped["reaped"]))
    assert due <= set(reaped["reaped"])
    # anything beyond the snapshot expired in between (another test's lease), nothing else
    late = admin.rows("select lease_id::text from supabase_connector.leases where lease_id = any(%s::uuid[]) "
                      "and not (expires_at <= now() and revoke_reason = 'expired')", (list(reaped["reaped"]),))
    assert late == []
    assert set(reaped["reaped"]) & ids == expired
    rows = admin.rows("select lease_id::text, revoked_at is not null, revoke_reason from supabase_connector.leases where project = %s", (slug,))
    assert {r[0] for r in rows if r[1]} == expired and {r[2] for r in rows if r[1]} == {"expired"}
    roles = admin.rows(
        "select l.lease_id::text, count(r.rolname) from supabase_connector.leases l "
        "left join pg_roles r on r.rolname = l.role_name where l.project = %s and l.database group by 1", (slug,))
    # the expired database leases' roles are gone, the others' are there
    assert {lid for lid, n in roles if n == 0} == {x["lease_id"] for x in leases if x["database"]} & expired
    assert {lid for lid, n in roles if n == 1} == {x["lease_id"] for x in lasting if x["database"]}
    # and the expired leases' tokens, whose `exp` has passed, would be refused
    # by the lease check too: the registry says they are over
    # again: none of these (another test's short lease may have expired since)
    assert not set(executor.execute("reap_expired_leases", {})["reaped"]) & ids
    for x in lasting[:20]:
        assert api.allowed(x["api"]["access_token"], s, "select 1")
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True


def test_concurrent_revocations_borrow_the_owner_without_conflict(executor: SupabaseExecutor, admin: Admin) -> None:
    """Every revocation borrows the project's owner for its transaction:
    many at once on one project (and on two), mixed with upserts that
    borrow it too, all succeed and leave no membership behind."""
    slugs = [new_slug("rv"), new_slug("rv")]
    for s in slugs:
        upsert(executor, s, issue_lease=False)
    leases = [lease(executor, slugs[i % 2]) for i in range(48)]
    for x in leases[:4]:  # some hold objects, so REASSIGN OWNED has work
        with psycopg.connect(x["database"]["url"], autocommit=True) as conn:
            conn.execute(f"create table t_{x['lease_id'][:8]} (id int)")

    def act(i: int) -> Any:
        if i % 8 == 7:
            return executor.execute("upsert_database_project_access", {"project": slugs[i % 2], "issue_lease": False})
        return executor.execute("revoke_database_lease", {"lease_id": leases[i]["lease_id"]})

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(act, range(48)))
    assert all(r["revoked"] for i, r in enumerate(results) if i % 8 != 7)
    for s in slugs:
        assert admin.value("select pg_has_role('postgres', %s, 'USAGE')", (f"proj_{s}_owner",)) is False
        assert admin.value("select count(*) from pg_tables where schemaname = %s and tableowner <> %s",
                           (f"proj_{s}", f"proj_{s}_owner")) == 0
        assert executor.execute("verify_database_project", {"project": s})["clean"] is True
