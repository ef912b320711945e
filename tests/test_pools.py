"""API pools: bounded login roles, served lists and reach.

Each pool has its own login role (`supabase_connector_pool_<name>`, its
password in OpenBao at `<path>/pools/<name>`), member of its projects' class
roles only, with its own `pgrst.db_schemas` and `pgrst.db_pre_request`. A
pool's PostgREST is played by the PostgREST-faithful helper connected as
that login role."""

from __future__ import annotations

import concurrent.futures
import json
import urllib.request
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import psycopg
import pytest

import pgrest
from conftest import Admin, connector_config, info, new_slug
from stack import hs256_jwt
from supabase_connector import Conflict, InvalidParams, SupabaseExecutor, create_executor

SERVICE = {"type": "service", "id": "project"}
ALICE = "00000000-0000-4000-8000-00000000a11c"

TENANT_CODE = """
create table items (id int primary key, v text);
insert into items values (1, '{tag}');
create policy items_read on items for select to authenticated using (true);
create function hop(target text) returns text language plpgsql as $$
begin
  perform set_config('role', target, true);
  return current_user;
end $$;
create function hop_set(target text) returns text language plpgsql as $$
begin
  execute format('set local role %I', target);
  return current_user;
end $$;
"""


def bao_secret(stack: Any, path: str) -> Dict[str, Any]:
    req = urllib.request.Request(f"{info(stack, 'bao_addr')}/v1/secret/data/connectors/supabase/{path}",
                                 headers={"X-Vault-Token": str(info(stack, "bao_token"))})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return dict(json.load(resp)["data"]["data"])


def pool_names(n: int) -> List[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"p{tag}{chr(ord('a') + i)}" for i in range(n)]


def pooled_executor(stack: Any, pools: List[Dict[str, Any]]) -> SupabaseExecutor:
    return create_executor(connector_config(stack, api={"url": "http://kong:8000", "pools": pools}))


def pool_client(stack: Any, pool: str, jwt_secret: str) -> pgrest.Client:
    password = bao_secret(stack, f"pools/{pool}")["AUTHENTICATOR_PASSWORD"]
    dsn = (f"postgresql://supabase_connector_pool_{pool}:{password}@{info(stack, 'host')}:{info(stack, 'port')}"
           "/postgres")
    return pgrest.Client(dsn, jwt_secret, anon_role="supabase_connector_pool_anon")


def served(admin: Admin, login: str) -> List[str]:
    value = admin.value(
        "select substr(c, length('pgrst.db_schemas=') + 1) from pg_db_role_setting s, unnest(s.setconfig) c "
        "where s.setrole = %s::regrole and s.setdatabase = 0 and c like 'pgrst.db\\_schemas=%%'",
        (login,),
    )
    return value.split(",") if value else []


def pool_of(admin: Admin, slug: str) -> str:
    return str(admin.value("select pool from supabase_connector.projects where slug = %s", (slug,)))


# ------------------------------------------------------------ placement


def test_placement_fills_by_room_then_conflicts(stack: Any, admin: Admin) -> None:
    a, b = pool_names(2)
    ex = pooled_executor(stack, [{"name": a, "url": f"http://kong:8000/pools/{a}", "max_projects": 2},
                                 {"name": b, "url": f"http://kong:8000/pools/{b}", "max_projects": 1}])
    try:
        placed = []
        for _ in range(3):
            state = ex.execute("upsert_database_project_access", {"project": new_slug("pl")})
            placed.append((state["project"], state["pool"]))
            assert state["lease"]["api"]["url"] == f"http://kong:8000/pools/{state['pool']}"
            assert state["lease"]["env"]["SUPABASE_URL"] == state["lease"]["api"]["url"]
            assert state["postgrest"]["PGRST_DB_URI"].startswith(f"postgresql://supabase_connector_pool_{state['pool']}@")
            assert state["postgrest"]["PGRST_DB_ANON_ROLE"] == "supabase_connector_pool_anon"
            assert state["postgrest"]["db_password"]["path"].endswith(f"/pools/{state['pool']}")
        # most room first (ties by name): a (2 free) , then a/b tie at 1 → a, then b
        assert [p for _, p in placed] == [a, a, b], placed
        # each pool's list holds its projects only; central holds none of them
        assert sorted(served(admin, f"supabase_connector_pool_{a}")) == sorted(f"proj_{s}" for s, p in placed if p == a)
        assert served(admin, f"supabase_connector_pool_{b}") == [f"proj_{placed[2][0]}"]
        assert not set(f"proj_{s}" for s, _ in placed) & set(served(admin, "authenticator"))
        # every pool full: conflict naming the setting, nothing changed
        before = admin.value("select count(*) from supabase_connector.projects")
        roles = admin.value("select count(*) from pg_roles")
        slug = new_slug("pl")
        with pytest.raises(Conflict) as err:
            ex.execute("upsert_database_project_access", {"project": slug})
        assert "api.pools" in str(err.value) and err.value.details["setting"] == "api.pools"
        assert admin.value("select count(*) from supabase_connector.projects") == before
        assert admin.value("select count(*) from pg_roles") == roles
        assert admin.value("select to_regnamespace(%s)", (f"proj_{slug}",)) is None
        # a placed project stays where it is, whatever the room
        again = ex.execute("upsert_database_project_access", {"project": placed[2][0], "issue_lease": False})
        assert again["pool"] == b and again["changed"] is False
        # pinning to central always works; to an unknown pool is invalid
        pinned = ex.execute("upsert_database_project_access", {"project": slug, "pool": "central", "issue_lease": False})
        assert pinned["pool"] == "central" and f"proj_{slug}" in served(admin, "authenticator")
        with pytest.raises(InvalidParams):
            ex.execute("upsert_database_project_access", {"project": new_slug("pl"), "pool": "nosuchpool"})
        described = ex.execute("describe_database_project", {"project": placed[0][0]})
        assert described["pool"] == a and described["postgrest"]["pool"] == a
        report = ex.execute("verify_database_project", {})
        assert [f for f in report["findings"] if f.get("pool") in (a, b)] == [], report["findings"]
    finally:
        ex.close()


def test_moving_a_project_revokes_its_leases_and_updates_both_lists(stack: Any, admin: Admin, jwt_secret: str) -> None:
    a, b = pool_names(2)
    ex = pooled_executor(stack, [{"name": a, "max_projects": 5}, {"name": b, "max_projects": 5}])
    try:
        slug = new_slug("mv")
        state = ex.execute("upsert_database_project_access", {"project": slug, "pool": a})
        s = state["schema"]
        assert state["pool"] == a
        lease = state["lease"]
        api_a = pool_client(stack, a, jwt_secret)
        try:
            assert api_a.request(lease["api"]["access_token"], s, "select 1") == [(1,)]
        finally:
            api_a.close()
        listener = psycopg.connect(info(stack, "admin_url"), autocommit=True)
        listener.execute("listen pgrst")
        moved = ex.execute("upsert_database_project_access", {"project": slug, "pool": b, "issue_lease": False})
        assert moved["pool"] == b and moved["revoked_leases"] == 1
        payloads = {n.payload for n in listener.notifies(timeout=2, stop_after=2)}
        listener.close()
        assert payloads == {"reload config", "reload schema"}
        assert s not in served(admin, f"supabase_connector_pool_{a}")
        assert s in served(admin, f"supabase_connector_pool_{b}")
        assert admin.value("select revoked_at is not null from supabase_connector.leases where lease_id = %s",
                           (lease["lease_id"],)) is True
        # the class roles moved with it
        for login, held in ((f"supabase_connector_pool_{a}", False), (f"supabase_connector_pool_{b}", True)):
            assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (login, f"{s}_anon")) is held
        fresh = ex.execute("issue_database_lease", {"project": slug, "principal": SERVICE, "database": False})["lease"]
        api_b = pool_client(stack, b, jwt_secret)
        api_a = pool_client(stack, a, jwt_secret)
        try:
            assert api_b.request(fresh["api"]["access_token"], s, "select 1") == [(1,)]
            with pytest.raises(pgrest.ApiError) as err:
                api_a.request(fresh["api"]["access_token"], s, "select 1")
            assert err.value.kind == "role_switch"
        finally:
            api_a.close()
            api_b.close()
        assert ex.execute("verify_database_project", {"project": slug})["clean"] is True
    finally:
        ex.close()


def test_concurrent_placements_never_overfill(stack: Any, admin: Admin) -> None:
    names = pool_names(3)
    ex = pooled_executor(stack, [{"name": n, "max_projects": 10} for n in names])
    try:
        slugs = [new_slug("cc") for _ in range(32)]

        def upsert(slug: str) -> Tuple[str, Optional[str]]:
            try:
                return slug, ex.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})["pool"]
            except Conflict:
                return slug, None

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(upsert, slugs))
        placed = [p for _, p in results if p is not None]
        assert len(placed) == 30 and sum(p is None for _, p in results) == 2, results
        for n in names:
            assert placed.count(n) == 10
            assert admin.value("select count(*) from supabase_connector.projects where pool = %s", (n,)) == 10
            assert len(served(admin, f"supabase_connector_pool_{n}")) == 10
        for slug, p in results:
            if p is None:
                assert admin.value("select count(*) from supabase_connector.projects where slug = %s", (slug,)) == 0
        report = ex.execute("verify_database_project", {})
        mine = [r for r in report["projects"] if r["project"] in slugs]
        assert len(mine) == 30 and all(r["clean"] for r in mine), [r for r in mine if not r["clean"]]
        assert [f for f in report["findings"] if f.get("pool") in names] == []
    finally:
        ex.close()


def test_pool_load_follows_every_change_of_a_project(stack: Any, admin: Admin) -> None:
    """Placement reads each pool's load from `pool_served`, which a trigger
    keeps: after every kind of change it equals a count of the registry, and
    a pool's room comes back when a project leaves it."""
    a, b = pool_names(2)
    ex = pooled_executor(stack, [{"name": a, "max_projects": 3}, {"name": b, "max_projects": 3}])

    def counted() -> Dict[str, int]:
        return dict(admin.rows("select pool, projects from supabase_connector.pool_served where pool = any(%s) and projects > 0",
                               ([a, b],)))

    def recount() -> Dict[str, int]:
        return dict(admin.rows("select pool, count(*)::int from supabase_connector.projects where pool = any(%s) "
                               "and state = 'active' and exposed and isolation = 'shared' group by pool", ([a, b],)))

    def upsert(slug: str, **params: Any) -> Dict[str, Any]:
        return dict(ex.execute("upsert_database_project_access", {"project": slug, "issue_lease": False, **params}))

    try:
        x, y, z, w = (new_slug("ld") for _ in range(4))
        steps = [
            ("placed", lambda: [upsert(x, pool=a), upsert(y, pool=a), upsert(z, pool=b)], {a: 2, b: 1}),
            ("no-op", lambda: upsert(x), {a: 2, b: 1}),
            ("unexposed", lambda: upsert(x, expose=False), {a: 1, b: 1}),
            ("exposed again", lambda: upsert(x, expose=True), {a: 2, b: 1}),
            ("isolated", lambda: upsert(y, isolation="isolated"), {a: 1, b: 1}),
            ("archived", lambda: ex.execute("remove_database_project", {"project": z}), {a: 1}),
            ("restored", lambda: upsert(z), {a: 1, b: 1}),
            ("moved", lambda: upsert(x, pool=b), {b: 2}),
            ("dropped", lambda: ex.execute("remove_database_project", {"project": z, "drop_data": True}), {b: 1}),
            ("placed by room", lambda: upsert(w), {a: 1, b: 1}),
        ]
        for what, step, expected in steps:
            step()
            assert counted() == recount() == expected, what
        assert pool_of(admin, w) == a, "the pool with the most room"
    finally:
        ex.close()


# ------------------------------------------------------------ isolation across pools


@pytest.fixture(scope="module")
def pooled(stack: Any) -> Iterator[Dict[str, Any]]:
    """Pools A and B, a project on each and one on central; each project has
    a table, a policy and functions that try to switch roles."""
    a, b = pool_names(2)
    ex = pooled_executor(stack, [{"name": a, "max_projects": 5}, {"name": b, "max_projects": 5}])
    out: Dict[str, Any] = {"executor": ex, "pools": {"a": a, "b": b}}
    try:
        for key, pool in (("a", a), ("b", b), ("c", "central")):
            state = ex.execute("upsert_database_project_access", {"project": new_slug(f"x{key}"), "pool": pool})
            ex.execute("apply_database_migrations", {"project": state["project"], "migrations": [
                {"version": "1", "name": "code", "sql": TENANT_CODE.format(tag=key)}]})
            ex.execute("upsert_database_access", {"project": state["project"], "principal": {"type": "user", "id": ALICE},
                                                  "platform_role": "project_contributor", "issue_lease": False})
            alice = ex.execute("issue_database_lease", {"project": state["project"], "principal": {"type": "user", "id": ALICE},
                                                        "database": False})["lease"]
            out[key] = {"state": state, "alice": alice}
        yield out
    finally:
        ex.close()


def credentials(p: Dict[str, Any]) -> Dict[str, str]:
    lease = p["state"]["lease"]
    return {"service": lease["api"]["access_token"], "publishable": lease["api"]["publishable_token"],
            "alice": p["alice"]["api"]["access_token"]}


def test_tokens_work_only_through_their_own_pool(pooled: Dict[str, Any], stack: Any, jwt_secret: str) -> None:
    clients = {k: pool_client(stack, pooled["pools"][k], jwt_secret) for k in ("a", "b")}
    try:
        for owner in ("a", "b"):
            s = pooled[owner]["state"]["schema"]
            for kind, token in credentials(pooled[owner]).items():
                own = clients[owner].request(token, s, "select count(*) from items")
                assert own == [(1 if kind != "publishable" else 0,)], (owner, kind, own)
                other = "b" if owner == "a" else "a"
                with pytest.raises(pgrest.ApiError) as err:
                    clients[other].request(token, s, "select count(*) from items")
                # the other pool's login role cannot even switch to the token's role
                assert err.value.kind == "role_switch", (owner, kind, err.value)
        # central's tokens do not work on a pool, and the pool's anonymous role reaches nothing
        c = pooled["c"]["state"]["schema"]
        with pytest.raises(pgrest.ApiError) as err:
            clients["a"].request(credentials(pooled["c"])["service"], c, "select 1")
        assert err.value.kind == "role_switch"
        for key in ("a", "b", "c"):
            with pytest.raises(pgrest.ApiError):
                clients["a"].request(None, pooled[key]["state"]["schema"], "select count(*) from items")
        # Supabase's own keys mean nothing on a pool (16+: class roles hold
        # Supabase's anon and authenticated without SET, so a pool's login
        # role cannot switch on to them; on 15 every membership allows it)
        anon_key = info(stack, "secrets")["SUPABASE_PUBLISHABLE_KEY"]
        if int(info(stack, "pg_version")) >= 16:
            with pytest.raises(pgrest.ApiError) as err:
                clients["a"].request(anon_key, "public", "select 1")
            assert err.value.kind == "role_switch"
        else:
            assert clients["a"].request(anon_key, "public", "select current_user") == [("anon",)]
    finally:
        for cl in clients.values():
            cl.close()


@pytest.mark.parametrize("function", ["hop", "hop_set"])
def test_tenant_code_on_a_pool_reaches_nothing_outside_it(pooled: Dict[str, Any], stack: Any, jwt_secret: str,
                                                           admin: Admin, function: str) -> None:
    client = pool_client(stack, pooled["pools"]["a"], jwt_secret)
    try:
        s = pooled["a"]["state"]["schema"]
        token = credentials(pooled["a"])["service"]
        targets = [f"{pooled[k]['state']['schema']}_{cls}" for k in ("b", "c")
                   for cls in ("service_role", "authenticated", "anon", "owner")]
        targets += ["service_role", "authenticator", "postgres", "supabase_admin",
                    f"supabase_connector_pool_{pooled['pools']['b']}"]
        if int(info(stack, "pg_version")) >= 16:
            # Supabase's own API roles: held by class roles without SET on 16+
            targets += ["authenticated", "anon"]
        for target in targets:
            with pytest.raises(pgrest.ApiError) as err:
                client.request(token, s, f"select {function}(%s)", (target,), rollback=True)
            assert err.value.pgcode == "42501", (target, err.value)
        # within its own project it works (the function runs as the service class)
        assert client.request(token, s, f"select {function}(%s)", (f"{s}_anon",), rollback=True) == [(f"{s}_anon",)]
    finally:
        client.close()


def test_pool_login_role_holds_only_its_projects(pooled: Dict[str, Any], admin: Admin, stack: Any) -> None:
    for key in ("a", "b"):
        login = f"supabase_connector_pool_{pooled['pools'][key]}"
        held = {r for (r,) in admin.rows(
            "select g.rolname::text from pg_auth_members m join pg_roles g on g.oid = m.roleid "
            "where m.member = %s::regrole", (login,))}
        s = pooled[key]["state"]["schema"]
        assert held == {f"{s}_service_role", f"{s}_authenticated", f"{s}_anon", "supabase_connector_pool_anon"}
        attrs = admin.rows("select rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolbypassrls from pg_roles "
                           "where rolname = %s", (login,))
        assert attrs == [(True, False, False, False, False)]
        config = admin.value("select setconfig from pg_db_role_setting where setrole = %s::regrole and setdatabase = 0",
                             (login,))
        assert "statement_timeout=8000" in config
        assert "pgrst.db_pre_request=supabase_connector_api.pre_request" in config
        # its password lives in OpenBao only
        assert bao_secret(stack, f"pools/{pooled['pools'][key]}")["AUTHENTICATOR_PASSWORD"]
        assert admin.value("select count(*) from supabase_connector.audit_log where outcome::text like %s",
                           ("%" + bao_secret(stack, f"pools/{pooled['pools'][key]}")["AUTHENTICATOR_PASSWORD"] + "%",)) == 0


def test_verify_finds_and_repairs_pool_drift(pooled: Dict[str, Any], admin: Admin, stack: Any) -> None:
    ex: SupabaseExecutor = pooled["executor"]
    a, b = pooled["pools"]["a"], pooled["pools"]["b"]
    login_a = f"supabase_connector_pool_{a}"
    sb = pooled["b"]["state"]["schema"]
    admin.run(f'grant "{sb}_anon" to "{login_a}"')
    admin.run(f'alter role "{login_a}" set pgrst.db_schemas = \'public\'')
    admin.run(f'alter role "{login_a}" reset pgrst.db_pre_request')
    report = ex.execute("verify_database_project", {})
    mine = {(f["code"], f.get("pool")) for f in report["findings"]}
    assert {("membership_extra", a), ("exposure_list_drift", a), ("pre_request_missing", a)} <= mine, report["findings"]
    assert report["clean"] is False
    ex.execute("verify_database_project", {"repair": True})
    after = ex.execute("verify_database_project", {})
    assert [f for f in after["findings"] if f.get("pool") in (a, b)] == [], after["findings"]
    assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (login_a, f"{sb}_anon")) is False
    assert served(admin, login_a) == [pooled["a"]["state"]["schema"]]
