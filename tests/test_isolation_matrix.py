"""Issue 10: try to break isolation. Every kind of credential a caller can
hold (project A's tokens and database leases, an API-only lease's token, the
central anon key, a plain GoTrue token, expired, revoked, wrongly signed and
hand-edited tokens, tokens naming roles they should not, tokens hand-signed
with `JWT_SECRET` naming a project's class role without a live lease) against
every target worth reaching (A's and B's tables, views, functions and
sequences, `public`, `auth.users`, the registry (its tables, the pool loads and
the role functions), `pg_authid`, role
switching, `CREATE SCHEMA`, `ALTER ROLE`, `COPY … TO PROGRAM`, `lo_import`).
The expected outcome of each cell is written down in `EXPECTED` below and
every cell is asserted.

API cells are requests the way PostgREST makes them (tests/pgrest.py: verify
the JWT, connect as `authenticator`, `set_config('role', <claim>, true)`, run
`db-pre-request` (`supabase_connector_api.pre_request()`), run the
statement), rolled back afterwards. A token naming a project's class role is
worth only its lease: `pre_request` refuses it (401) unless its `jti` is a
live lease of that project and class. Database cells log in with the lease's
own connection string, each statement in a transaction rolled back.

Second part: hostile strings through the executor are `invalid_params` and
change nothing in the catalog; strange but valid names work end to end."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import psycopg
import pytest

import pgrest
from conftest import Admin, info, new_slug
from stack import hs256_jwt
from supabase_connector import InvalidParams, SupabaseExecutor

ALICE = "00000000-0000-4000-8000-00000000a11c"
BOB = "00000000-0000-4000-8000-000000000b0b"

MIGRATION = """
create table items (id bigint generated always as identity primary key, owner uuid default auth.uid(), v text);
create policy items_read on items for select to authenticated using (true);
create view items_v as select id, v from items;
create function answer() returns int language sql stable as $$ select 42 $$;
create sequence counter;
insert into items (v) values ('{tag}-data');
"""

# --------------------------------------------------------------- the matrix

# Outcomes: rows (succeeded, rows back), empty (succeeded, RLS hid every row),
# ok (succeeded, no result set), denied (SQLSTATE 42501), jwt (signature or
# format refused), expired (exp passed), role (the API cannot switch to the
# token's role), lease (`pre_request` refused it: SQLSTATE PT401, HTTP 401,
# "lease revoked or expired"), login (the database refuses the login).

TARGETS: Dict[str, str] = {
    "a_table": "select v from {a}.items",
    "a_insert": "insert into {a}.items (v) values ('x') returning id",
    "a_view": "select v from {a}.items_v",
    "a_function": "select {a}.answer()",
    "a_sequence": "select nextval('{a}.counter')",
    "b_table": "select v from {b}.items",
    "b_insert": "insert into {b}.items (v) values ('x') returning id",
    "b_view": "select v from {b}.items_v",
    "b_function": "select {b}.answer()",
    "b_sequence": "select nextval('{b}.counter')",
    "public_read": "select note from public.{public}",
    "public_create": "create table public.{public}_evil (x int)",
    "auth_users": "select email from auth.users",
    "registry": "select slug from supabase_connector.projects",
    "pool_load": "select pool, projects from supabase_connector.pool_served",
    "role_functions": """select supabase_connector.roles_apply('[["role_grant", "{b}_owner", "{a}_owner"]]')""",
    "pg_authid": "select rolpassword from pg_authid",
    "set_role_postgres": "set role postgres",
    "create_schema": "create schema {public}_evil",
    "alter_role": "alter role {b}_anon connection limit 7",
    "copy_program": "copy (select 1) to program 'true'",
    "lo_import": "select lo_import('/etc/hostname')",
}
# Database sessions only: an API request's session user is the central
# `authenticator`, so a raw SET ROLE there says nothing about the token
# (PostgREST never sends one; tenant code doing it is test_trust_boundary.py).
DB_TARGETS: Dict[str, str] = {
    "set_role_own_owner": "set role {a}_owner",
    "set_role_other_project": "set role {b}_owner",
    "set_role_other_lease": "set role {b_lease}",
}

DENIED_ALL = {t: "denied" for t in TARGETS}

# What each class of A may do in A (docs/reference.md#platform-roles-and-access-classes);
# everything else denied.
SERVICE_IN_A = {"a_table": "rows", "a_insert": "rows", "a_view": "rows", "a_function": "rows", "a_sequence": "rows"}
AUTHENTICATED_IN_A = {"a_table": "rows", "a_view": "rows", "a_function": "rows", "a_sequence": "rows",
                      "public_read": "rows"}  # insert: no policy for it under RLS; public: via global `authenticated`
ANON_IN_A = {"a_table": "empty", "a_view": "empty", "a_function": "rows", "public_read": "rows"}

API_EXPECTED: Dict[str, Dict[str, str]] = {
    # project A's own credentials, through the central API
    "a_service_token": {**DENIED_ALL, **SERVICE_IN_A},
    "a_service_publishable_token": {**DENIED_ALL, **ANON_IN_A},
    "a_authenticated_token": {**DENIED_ALL, **AUTHENTICATED_IN_A},
    "a_anon_token": {**DENIED_ALL, **ANON_IN_A},
    # an API-only lease (`database: false`): the same class role, no role of its own
    "a_api_only_token": {**DENIED_ALL, **AUTHENTICATED_IN_A},
    # central credentials a browser may hold: reach the base schemas only
    "central_anon_key": {**DENIED_ALL, "public_read": "rows"},
    "gotrue_authenticated": {**DENIED_ALL, "public_read": "rows"},
    # dead or bad tokens: refused before any SQL runs (an expired `exp` by
    # the JWT check; a revoked lease, or one whose registry expiry passed
    # while its token's `exp` did not, by `pre_request`, although the class
    # role it names exists and the API may switch to it)
    "a_expired_token": {t: "expired" for t in TARGETS},
    "a_revoked_token": {t: "lease" for t in TARGETS},
    "a_revoked_api_only_token": {t: "lease" for t in TARGETS},
    "a_expired_in_registry_token": {t: "lease" for t in TARGETS},
    "wrong_secret": {t: "jwt" for t in TARGETS},
    "role_edited_to_b": {t: "jwt" for t in TARGETS},
    "role_edited_to_postgres": {t: "jwt" for t in TARGETS},
    # tokens only the holder of JWT_SECRET could sign (the connector never
    # hands it out): the API still cannot become a superuser or `postgres`;
    # `service_role` is the central secret key's role (auth, base schemas,
    # never a project schema); a project's class role needs a live lease of
    # that project and class as `jti`: none, a made-up one, or one of
    # another project (or class) is refused by `pre_request`
    "signed_role_postgres": {t: "role" for t in TARGETS},
    "signed_role_supabase_admin": {t: "role" for t in TARGETS},
    "signed_role_service_role": {**DENIED_ALL, "public_read": "rows", "auth_users": "rows"},
    "signed_role_b_service": {t: "lease" for t in TARGETS},
    "forged_jti_a_authenticated": {t: "lease" for t in TARGETS},
    "forged_jti_b_service_with_a_lease": {t: "lease" for t in TARGETS},
    "forged_jti_a_service_with_authenticated_lease": {t: "lease" for t in TARGETS},
}

DB_DENIED_ALL = {t: "denied" for t in [*TARGETS, *DB_TARGETS]}
DB_EXPECTED: Dict[str, Dict[str, str]] = {
    # the service lease logs in as itself and works as the project owner
    "a_service_db": {**DB_DENIED_ALL, **SERVICE_IN_A, "set_role_own_owner": "ok"},
    "a_authenticated_db": {**DB_DENIED_ALL, **AUTHENTICATED_IN_A},
    "a_anon_db": {**DB_DENIED_ALL, **ANON_IN_A},
    "a_expired_db": {t: "login" for t in DB_DENIED_ALL},
    "a_revoked_db": {t: "login" for t in DB_DENIED_ALL},
}

CELLS: List[Tuple[str, str]] = [(c, t) for c, row in API_EXPECTED.items() for t in row] + [
    (c, t) for c, row in DB_EXPECTED.items() for t in row
]


def test_matrix_covers_every_cell() -> None:
    """Every credential row lists every target of its kind (the count is in the test ids)."""
    for row in API_EXPECTED.values():
        assert set(row) == set(TARGETS)
    for row in DB_EXPECTED.values():
        assert set(row) == set(TARGETS) | set(DB_TARGETS)
    assert len(CELLS) == len(API_EXPECTED) * len(TARGETS) + len(DB_EXPECTED) * (len(TARGETS) + len(DB_TARGETS)) == 587




class RollbackClient(pgrest.Client):
    """pgrest.Client's request, rolled back afterwards so a cell leaves nothing behind."""

    def request(self, token: str, schema: str, sql: str, params: Sequence[Any] = (), rollback: bool = True) -> List[tuple]:
        return super().request(token, schema, sql, params, rollback=rollback)


def edit_payload(token: str, **changes: Any) -> str:
    """The same token with claims changed by hand and the old signature kept."""
    import base64

    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


@pytest.fixture(scope="module")
def world(stack: Any, executor: SupabaseExecutor, admin: Admin, jwt_secret: str) -> Iterator[Dict[str, Any]]:
    """One pair of projects (A attacked, B the neighbour) and every credential."""
    a_slug, b_slug = new_slug("ma"), new_slug("mb")
    a = executor.execute("upsert_database_project_access", {"project": a_slug})
    b = executor.execute("upsert_database_project_access", {"project": b_slug})
    for slug, tag in ((a_slug, "a"), (b_slug, "b")):
        executor.execute(
            "apply_database_migrations",
            {"project": slug, "migrations": [{"version": "1", "name": "objects", "sql": MIGRATION.format(tag=tag)}]},
        )
    pub = "qa_matrix_" + uuid.uuid4().hex[:10]
    admin.run(f"create table public.{pub} (note text)")
    admin.run(f"insert into public.{pub} values ('shared')")
    admin.run(f"grant select on public.{pub} to anon, authenticated, service_role")

    def grant(principal: Dict[str, str], platform_role: str) -> Dict[str, Any]:
        return executor.execute(
            "upsert_database_access", {"project": a_slug, "principal": principal, "platform_role": platform_role}
        )["lease"]

    authenticated = grant({"type": "user", "id": ALICE}, "project_contributor")
    anon = grant({"type": "service", "id": "viewer-app"}, "project_viewer")
    revoked = grant({"type": "user", "id": BOB}, "project_contributor")
    executor.execute("revoke_database_lease", {"lease_id": revoked["lease_id"]})

    def api_only(principal: Dict[str, str]) -> Dict[str, Any]:
        out = executor.execute("issue_database_lease", {"project": a_slug, "principal": principal, "database": False})["lease"]
        assert out["database"] is None and out["access_class"] == "authenticated"
        return dict(out)

    api_lease = api_only({"type": "user", "id": ALICE})
    revoked_api = api_only({"type": "user", "id": BOB})
    executor.execute("revoke_database_lease", {"lease_id": revoked_api["lease_id"]})
    # the registry says this lease has ended; its token's `exp` is 15 minutes away
    ended_api = api_only({"type": "user", "id": ALICE})
    admin.run("update supabase_connector.leases set expires_at = now() - interval '1 second' where lease_id = %s",
              (ended_api["lease_id"],))
    expiring = executor.execute(
        "issue_database_lease", {"project": a_slug, "principal": {"type": "project"}, "lease_ttl_seconds": 1}
    )["lease"]

    now = int(time.time())
    service_token = a["lease"]["api"]["access_token"]
    b_lease_role = b["lease"]["database"]["user"]
    tokens = {
        "a_service_token": service_token,
        "a_service_publishable_token": a["lease"]["api"]["publishable_token"],
        "a_authenticated_token": authenticated["api"]["access_token"],
        "a_anon_token": anon["api"]["access_token"],
        "central_anon_key": info(stack, "secrets")["SUPABASE_PUBLISHABLE_KEY"],
        "gotrue_authenticated": hs256_jwt(
            {"aud": "authenticated", "exp": now + 3600, "iat": now, "iss": "http://kong:8000/auth/v1", "sub": ALICE,
             "email": "alice@example.test", "phone": "", "role": "authenticated", "app_metadata": {}, "user_metadata": {},
             "aal": "aal1", "amr": [{"method": "password", "timestamp": now}], "session_id": str(uuid.uuid4()),
             "is_anonymous": False},
            jwt_secret,
        ),
        "a_expired_token": expiring["api"]["access_token"],
        "a_revoked_token": revoked["api"]["access_token"],
        "wrong_secret": hs256_jwt(pgrest.Client("", jwt_secret).claims(service_token), "x" * 40),
        "role_edited_to_b": edit_payload(service_token, role=b_lease_role),
        "role_edited_to_postgres": edit_payload(service_token, role="postgres"),
        "signed_role_postgres": hs256_jwt({"role": "postgres", "exp": now + 3600}, jwt_secret),
        "signed_role_supabase_admin": hs256_jwt({"role": "supabase_admin", "exp": now + 3600}, jwt_secret),
        "signed_role_service_role": info(stack, "secrets")["SUPABASE_SECRET_KEY"],
        "signed_role_b_service": hs256_jwt(
            {"role": f"{b['schema']}_service_role", "aud": "authenticated", "exp": now + 3600}, jwt_secret
        ),
        "a_api_only_token": api_lease["api"]["access_token"],
        "a_revoked_api_only_token": revoked_api["api"]["access_token"],
        "a_expired_in_registry_token": ended_api["api"]["access_token"],
        # the claims of a lease's token, signed by hand: a made-up lease id ...
        "forged_jti_a_authenticated": hs256_jwt(
            {**lease_claims(api_lease), "jti": str(uuid.uuid4())}, jwt_secret
        ),
        # ... a live lease of A presented for B's service class ...
        "forged_jti_b_service_with_a_lease": hs256_jwt(
            {**lease_claims(a["lease"]), "role": f"{b['schema']}_service_role", "project": b_slug}, jwt_secret
        ),
        # ... and a live authenticated-class lease of A raised to A's service class
        "forged_jti_a_service_with_authenticated_lease": hs256_jwt(
            {**lease_claims(api_lease), "role": f"{a['schema']}_service_role", "access_class": "service_role"}, jwt_secret
        ),
    }
    # the forged tokens name roles that exist and that the API may switch to:
    # what refuses them is the lease check alone
    can_set = "SET" if int(admin.value("show server_version_num")) >= 160000 else "MEMBER"  # 15: any membership allows SET ROLE
    for role in (f"{a['schema']}_authenticated", f"{a['schema']}_service_role", f"{b['schema']}_service_role"):
        assert admin.value(f"select pg_has_role('authenticator', %s, '{can_set}')", (role,)) is True, role
    # wait until the 1-second lease has expired (token `exp`, role VALID UNTIL)
    exp = expiring_exp(expiring)
    while time.time() < exp + 1.2:
        time.sleep(0.1)

    urls = {
        "a_service_db": a["lease"]["database"]["url"],
        "a_authenticated_db": authenticated["database"]["url"],
        "a_anon_db": anon["database"]["url"],
        "a_expired_db": expiring["database"]["url"],
        "a_revoked_db": revoked["database"]["url"],
    }
    conns: Dict[str, Any] = {}
    for name, url in urls.items():
        try:
            conns[name] = psycopg.connect(url, connect_timeout=10)
        except psycopg.OperationalError as e:
            conns[name] = e
    dsn = f"postgresql://authenticator:{info(stack, 'authenticator_password')}@{info(stack, 'host')}:{info(stack, 'port')}/postgres"
    client = RollbackClient(dsn, jwt_secret)
    names = {"a": a["schema"], "b": b["schema"], "public": pub, "b_lease": b_lease_role}
    yield {"tokens": tokens, "conns": conns, "client": client, "names": names, "a": a, "b": b}
    client.close()
    for c in conns.values():
        if isinstance(c, psycopg.Connection):
            c.close()
    admin.run(f"drop table if exists public.{pub}")


def lease_claims(lease: Dict[str, Any]) -> Dict[str, Any]:
    """The claims of a lease's access token (its signature is checked by the stack's secret later)."""
    import base64

    payload = lease["api"]["access_token"].split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def expiring_exp(lease: Dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(lease["expires_at"].replace("Z", "+00:00")).timestamp()


def classify_rows(rows: Optional[List[tuple]], had_result: bool) -> str:
    if not had_result:
        return "ok"
    return "rows" if rows else "empty"


def api_outcome(world: Dict[str, Any], cred: str, sql: str) -> str:
    client: RollbackClient = world["client"]
    client.last_had_result = False
    try:
        rows = client.request(world["tokens"][cred], world["names"]["a"], sql)
    except pgrest.ApiError as e:
        if e.kind == "jwt_invalid":
            return "jwt"
        if e.kind == "jwt_expired":
            return "expired"
        if e.kind == "role_switch":
            return "role"
        if e.kind == "pre_request":
            ok = e.pgcode == "PT401" and e.status == 401 and "lease revoked or expired" in str(e)
            return "lease" if ok else f"pre_request {e.pgcode} {e.status}: {e}"
        return "denied" if e.pgcode == "42501" else f"error {e.pgcode}: {e}"
    return classify_rows(rows, client.last_had_result)


def db_outcome(world: Dict[str, Any], cred: str, sql: str) -> str:
    conn = world["conns"][cred]
    if isinstance(conn, Exception):
        return "login"
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall() if cur.description else None
            return classify_rows(rows, cur.description is not None)
    except psycopg.Error as e:
        return "denied" if e.sqlstate == "42501" else f"error {e.sqlstate}: {e}"
    finally:
        conn.rollback()


@pytest.mark.parametrize("cred,target", CELLS, ids=[f"{c}-{t}" for c, t in CELLS])
def test_cell(world: Dict[str, Any], cred: str, target: str) -> None:
    sql = {**TARGETS, **DB_TARGETS}[target].format(**world["names"])
    if cred in API_EXPECTED:
        expected, actual = API_EXPECTED[cred][target], api_outcome(world, cred, sql)
    else:
        expected, actual = DB_EXPECTED[cred][target], db_outcome(world, cred, sql)
    assert actual == expected, f"{cred} × {target}: {sql}"


def test_matrix_left_nothing_behind(world: Dict[str, Any], admin: Admin) -> None:
    """Runs after the cells: no object was created, no role changed, B untouched."""
    n = world["names"]
    assert admin.value("select to_regclass(%s)", (f"public.{n['public']}_evil",)) is None
    assert admin.value("select count(*) from pg_namespace where nspname = %s", (f"{n['public']}_evil",)) == 0
    assert admin.value("select rolconnlimit from pg_roles where rolname = %s", (f"{n['b']}_anon",)) == -1
    assert admin.rows(f"select v from {n['b']}.items") == [("b-data",)]
    assert admin.rows(f"select v from {n['a']}.items") == [("a-data",)]


# --------------------------------------------------------------- hostile input

HOSTILE = [
    "a'; drop role postgres; --",
    'a"b',
    "a\\b",
    "$$",
    "a$$b",
    "a\x00b",
    "\uff41\uff43\uff4d\uff45",  # fullwidth
    "\u0430cme",  # Cyrillic a
    "acme\n",
    "acme ",
    " acme",
    "acme\u200b",
    "x" * 10240,
    "select 1;",
    'proj_x_owner"; grant postgres to anon; --',
    "../../etc/passwd",
    "%s%s%n",
    "\u202eemca",
    "",
]

FIELDS: Dict[str, Tuple[str, Any, str]] = {
    "project": ("upsert_database_project_access", lambda s: {"project": s}, "/project"),
    "team_id": ("upsert_database_team_access",
                lambda s: {"project": "acme", "team_id": s, "platform_role": "team_member", "members": []}, "/team_id"),
    "service_id": ("upsert_database_access",
                   lambda s: {"project": "acme", "principal": {"type": "service", "id": s}, "platform_role": "project_viewer"},
                   "/principal"),
    "user_id": ("issue_database_lease", lambda s: {"project": "acme", "principal": {"type": "user", "id": s}}, "/principal"),
    "migration_name": ("apply_database_migrations",
                       lambda s: {"project": "acme", "migrations": [{"version": "1", "name": s, "sql": "select 1"}]},
                       "/migrations/0/name"),
    "migration_version": ("apply_database_migrations",
                          lambda s: {"project": "acme", "migrations": [{"version": s, "name": "m", "sql": "select 1"}]},
                          "/migrations/0/version"),
    "lease_id": ("revoke_database_lease", lambda s: {"lease_id": s}, "/lease_id"),
}


def catalog_fingerprint(admin: Admin) -> Tuple[Any, ...]:
    return tuple(
        admin.rows(
            "select (select count(*) from pg_roles), (select count(*) from pg_namespace), "
            "(select count(*) from supabase_connector.projects), (select count(*) from supabase_connector.grants), "
            "(select count(*) from supabase_connector.teams), (select count(*) from supabase_connector.team_members), "
            "(select count(*) from supabase_connector.leases), (select count(*) from supabase_connector.migrations), "
            "(select count(*) from supabase_connector.audit_log), "
            "(select array_to_string(setconfig, ',') from pg_db_role_setting "
            " where setrole = 'authenticator'::regrole and setdatabase = 0)"
        )[0]
    )


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:24])
def test_hostile_value_is_invalid_and_changes_nothing(executor: SupabaseExecutor, admin: Admin, field: str, value: str) -> None:
    action, build, pointer = FIELDS[field]
    before = catalog_fingerprint(admin)
    with pytest.raises(InvalidParams) as err:
        executor.execute(action, build(value))
    paths = [v["path"] for v in err.value.details["violations"]]
    assert any(p.startswith(pointer) for p in paths), paths
    assert len(err.value.message) < 4096  # a 10 kB value does not come back whole
    assert catalog_fingerprint(admin) == before


def test_unpaired_surrogate_is_invalid(executor: SupabaseExecutor, admin: Admin) -> None:
    before = catalog_fingerprint(admin)
    with pytest.raises(InvalidParams):
        executor.execute("upsert_database_project_access", {"project": "ab\ud800"})
    assert catalog_fingerprint(admin) == before


def test_strange_but_valid_names_work(executor: SupabaseExecutor, admin: Admin, jwt_secret: str, stack: Any) -> None:
    """Keyword slugs, ids with every allowed punctuation mark, and a TTL
    written as a float all work end to end, quoted where they reach SQL."""
    slug = "select"
    state = executor.execute("upsert_database_project_access", {"project": slug, "lease_ttl_seconds": 60.0})
    assert state["schema"] == "proj_select"
    assert state["lease"]["ttl_seconds"] == 60  # not the 900 s default
    team = executor.execute(
        "upsert_database_team_access",
        {"project": slug, "team_id": "Org.team:ops-1", "platform_role": "team_member", "members": [ALICE.upper()]},
    )
    assert team["members"] == [ALICE]
    lease = executor.execute(
        "upsert_database_access",
        {"project": slug, "principal": {"type": "service", "id": "svc@ci.example:deploy-1"}, "platform_role": "project_viewer",
         "lease_ttl_seconds": 30.0},
    )["lease"]
    assert lease["ttl_seconds"] == 30 and lease["principal"] == {"type": "service", "id": "svc@ci.example:deploy-1"}
    applied = executor.execute(
        "apply_database_migrations",
        {"project": slug, "migrations": [{"version": "00000000000000000001", "name": "0001.init-schema_v2",
                                           "sql": 'create table "select" ("from" text); insert into "select" values (\'$$\'\'"\\\');'}]},
    )
    assert [m["name"] for m in applied["applied"]] == ["0001.init-schema_v2"]
    assert admin.rows('select "from" from proj_select."select"') == [("$$'\"\\",)]
    assert admin.value("select count(*) from supabase_connector.teams where project = 'select' and team_id = 'Org.team:ops-1'") == 1
    verify = executor.execute("verify_database_project", {"project": slug})
    assert not [f for f in verify["findings"] if f["severity"] == "error"], verify["findings"]
    executor.execute("remove_database_project", {"project": slug, "drop_data": True})


@pytest.mark.parametrize(
    "sql",
    [
        "create table hidden_a (); select 1 as a$$; rollback; select 1 as b$$;",
        "create domain somee as text; create table hidden_b (); select somee'\\'; rollback; select '\\';",
        "create table hidden_c (); select begin atomic from (select 1 as begin) s; rollback;",
    ],
    ids=["dollar-identifier", "e-suffixed-identifier", "begin-atomic-column"],
)
def test_hidden_transaction_control_is_refused(executor: SupabaseExecutor, admin: Admin, sql: str) -> None:
    """PostgreSQL runs the ROLLBACK in each of these (checked by hand on 15):
    the migration would be recorded as applied with its objects gone. The
    scanner finds it and nothing runs."""
    slug = new_slug("hx")
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    before = catalog_fingerprint(admin)
    with pytest.raises(InvalidParams) as err:
        executor.execute("apply_database_migrations", {"project": slug, "migrations": [{"version": "1", "name": "m", "sql": sql}]})
    assert "is ROLLBACK" in err.value.message and err.value.details["violations"][0]["path"] == "/migrations/0/sql"
    assert catalog_fingerprint(admin) == before
    assert admin.value("select count(*) from pg_class where relnamespace = to_regnamespace(%s)", (f"proj_{slug}",)) == 0
