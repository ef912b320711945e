"""Per-project limits: one project must not starve the others.

Statement timeouts per access class are role settings of the class roles,
which PostgREST applies per request (the PostgREST-faithful helper does the
same); database leases carry a connection limit and the timeouts as role
settings of their login role; `max_database_leases` caps live database
leases; `max_size_bytes` is reported, never enforced."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import psycopg
import pytest

import pgrest
from conftest import Admin, info, new_slug
from supabase_connector import Conflict, InvalidParams, SupabaseExecutor

SERVICE = {"type": "service", "id": "project"}
ALICE = "00000000-0000-4000-8000-00000000a11c"


def upsert(executor: SupabaseExecutor, slug: str, **params: Any) -> Dict[str, Any]:
    return executor.execute("upsert_database_project_access", {"project": slug, **params})


def issue(executor: SupabaseExecutor, slug: str, **params: Any) -> Dict[str, Any]:
    return executor.execute("issue_database_lease", {"project": slug, "principal": SERVICE, **params})["lease"]


def timed(call: Callable[[], Any]) -> Tuple[float, Optional[pgrest.ApiError]]:
    started = time.monotonic()
    try:
        call()
        return time.monotonic() - started, None
    except pgrest.ApiError as e:
        return time.monotonic() - started, e


def test_statement_timeouts_per_class(executor: SupabaseExecutor, stack: Any, jwt_secret: str) -> None:
    dsn = info(stack, "authenticator_url")
    default = upsert(executor, new_slug("tmo"))
    tight = upsert(executor, new_slug("tmt"), limits={"statement_timeout": {"anon": 1000}})
    assert tight["limits"]["statement_timeout"] == {"anon": 1000, "authenticated": 8000, "service_role": 0}
    user = executor.execute(
        "upsert_database_access",
        {"project": default["project"], "principal": {"type": "user", "id": ALICE},
         "platform_role": "project_contributor", "database": False},
    )["lease"]
    cases = {
        # (token, schema, seconds to sleep)
        "anon": (default["lease"]["api"]["publishable_token"], default["schema"], 5),
        "authenticated": (user["api"]["access_token"], default["schema"], 5),
        "service_role": (default["lease"]["api"]["access_token"], default["schema"], 5),
        "anon_1s": (tight["lease"]["api"]["publishable_token"], tight["schema"], 5),
    }
    clients = {name: pgrest.Client(dsn, jwt_secret) for name in cases}
    try:
        with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
            futures = {
                name: pool.submit(timed, lambda n=name, c=case: clients[n].request(c[0], c[1], "select pg_sleep(%s)", (c[2],)))
                for name, case in cases.items()
            }
            results = {name: f.result() for name, f in futures.items()}
    finally:
        for c in clients.values():
            c.close()
    elapsed, error = results["anon"]
    assert error is not None and error.pgcode == "57014" and error.status == 500, results
    assert 2.5 < elapsed < 4.5, elapsed
    elapsed, error = results["anon_1s"]
    assert error is not None and error.pgcode == "57014", results
    assert 0.8 < elapsed < 2.5, elapsed
    for name in ("authenticated", "service_role"):
        elapsed, error = results[name]
        assert error is None and elapsed >= 5, (name, results[name])


def test_class_roles_and_api_login_roles_carry_the_settings(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("tms")
    state = upsert(executor, slug, issue_lease=False, isolation="isolated",
                   limits={"statement_timeout": {"service_role": 120000}})
    s = state["schema"]

    def setting(role: str) -> Optional[str]:
        return admin.value(
            "select substr(c, length('statement_timeout=') + 1) from pg_db_role_setting d "
            "join pg_roles r on r.oid = d.setrole, unnest(d.setconfig) c "
            "where r.rolname = %s and d.setdatabase = 0 and c like 'statement\\_timeout=%%'",
            (role,),
        )

    assert setting(f"{s}_anon") == "3000"
    assert setting(f"{s}_authenticated") == "8000"
    assert setting(f"{s}_service_role") == "120000"
    # the isolated project's API login role, as Supabase's authenticator
    assert setting(f"{s}_authenticator") == "8000"
    # 0 means none: the setting goes away
    upsert(executor, slug, issue_lease=False, limits={"statement_timeout": {"service_role": 0}})
    assert setting(f"{s}_service_role") is None
    # omitted keys keep their stored values
    out = upsert(executor, slug, issue_lease=False, limits={"connection_limit": 3})
    assert out["limits"]["connection_limit"] == 3 and out["limits"]["statement_timeout"]["service_role"] == 0
    out = upsert(executor, slug, issue_lease=False, limits={"max_database_leases": 7})
    assert (out["limits"]["connection_limit"], out["limits"]["max_database_leases"]) == (3, 7)
    described = executor.execute("describe_database_project", {"project": slug})
    assert described["limits"] == out["limits"]
    assert described["usage"] == {"size_bytes": 0, "database_leases": 0}


def test_lease_sessions_are_capped_and_idle_transactions_closed(executor: SupabaseExecutor) -> None:
    slug = new_slug("tmc")
    upsert(executor, slug, issue_lease=False,
           limits={"connection_limit": 2, "idle_in_transaction_session_timeout": 1000})
    lease = issue(executor, slug)
    url = lease["database"]["url"]
    sessions = [psycopg.connect(url, autocommit=True) for _ in range(2)]
    try:
        with pytest.raises(psycopg.OperationalError) as err:
            psycopg.connect(url, connect_timeout=5).close()
        assert "too many connections for role" in str(err.value)
        # a session idle inside a transaction past the timeout is closed
        idle = sessions[0]
        idle.autocommit = False
        idle.execute("select 1")
        time.sleep(1.6)
        with pytest.raises(psycopg.Error) as closed:
            idle.execute("select 1")
        assert closed.value.sqlstate == "25P03" or idle.closed, closed.value
        # the freed slot can be used again
        psycopg.connect(url, connect_timeout=5).close()
    finally:
        for s in sessions:
            s.close()


def test_max_database_leases(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("tml")
    upsert(executor, slug, issue_lease=False, limits={"max_database_leases": 2})
    first, second = issue(executor, slug), issue(executor, slug)
    roles_before = admin.value("select count(*) from pg_roles where rolname like 'lease\\_%%'")
    rows_before = admin.value("select count(*) from supabase_connector.leases where project = %s", (slug,))
    with pytest.raises(Conflict) as err:
        issue(executor, slug)
    assert "max_database_leases" in str(err.value)
    # nothing was created: no role, no registry row
    assert admin.value("select count(*) from pg_roles where rolname like 'lease\\_%%'") == roles_before
    assert admin.value("select count(*) from supabase_connector.leases where project = %s", (slug,)) == rows_before
    # API-only leases do not count
    api_only = issue(executor, slug, database=False)
    assert api_only["database"] is None
    # revoking one lets the next succeed
    executor.execute("revoke_database_lease", {"lease_id": first["lease_id"]})
    third = issue(executor, slug)
    assert third["database"]["user"].startswith("lease_")
    described = executor.execute("describe_database_project", {"project": slug})
    assert described["usage"]["database_leases"] == 2 and described["limits"]["max_database_leases"] == 2
    for lease in (second, third, api_only):
        executor.execute("revoke_database_lease", {"lease_id": lease["lease_id"]})


def test_changed_settings_are_found_and_repaired(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("tmd")
    state = upsert(executor, slug)
    s, role = state["schema"], state["lease"]["database"]["user"]
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
    admin.run(f'alter role "{s}_anon" set statement_timeout = 0')
    admin.run(f'alter role "{s}_authenticated" reset statement_timeout')
    admin.run(f'alter role "{role}" connection limit 99')
    admin.run(f'alter role "{role}" reset idle_in_transaction_session_timeout')
    report = executor.execute("verify_database_project", {"project": slug})
    found = {(f["code"], f["object"]) for f in report["projects"][0]["findings"]}
    assert {("role_setting", f"role {s}_anon"), ("role_setting", f"role {s}_authenticated"),
            ("lease_role_limits", f"role {role}")} <= found, report
    assert report["clean"] is False
    executor.execute("verify_database_project", {"project": slug, "repair": True})
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
    assert admin.value("select rolconnlimit from pg_roles where rolname = %s", (role,)) == 10
    config = admin.value(
        "select setconfig from pg_db_role_setting where setrole = %s::regrole and setdatabase = 0", (role,))
    assert "idle_in_transaction_session_timeout=60000" in config


def test_changed_limits_reach_live_leases(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("tmu")
    state = upsert(executor, slug)
    role = state["lease"]["database"]["user"]
    upsert(executor, slug, issue_lease=False, limits={"connection_limit": 4, "idle_in_transaction_session_timeout": 0})
    assert admin.value("select rolconnlimit from pg_roles where rolname = %s", (role,)) == 4
    config = admin.value(
        "select coalesce(setconfig, '{}') from pg_db_role_setting where setrole = %s::regrole and setdatabase = 0", (role,))
    assert not any(c.startswith("idle_in_transaction_session_timeout") for c in (config or []))
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True


def test_size_over_the_limit_is_a_warning(executor: SupabaseExecutor) -> None:
    slug = new_slug("tmz")
    upsert(executor, slug, issue_lease=False, limits={"max_size_bytes": 1})
    executor.execute("apply_database_migrations", {"project": slug, "migrations": [
        {"version": "1", "name": "data", "sql": "create table t (v text); insert into t select repeat('x', 100) from generate_series(1, 100);"}]})
    report = executor.execute("verify_database_project", {"project": slug})
    warnings = [f for f in report["projects"][0]["findings"] if f["code"] == "size_over_limit"]
    assert len(warnings) == 1 and warnings[0]["severity"] == "warning" and warnings[0]["repairable"] is False
    assert report["clean"] is True, report
    usage = executor.execute("describe_database_project", {"project": slug})["usage"]
    assert usage["size_bytes"] > 1
    # nothing is blocked: writes still work
    upsert(executor, slug, issue_lease=False, limits={"max_size_bytes": None})
    report = executor.execute("verify_database_project", {"project": slug})
    assert not [f for f in report["projects"][0]["findings"] if f["code"] == "size_over_limit"]


def test_limits_are_validated(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("tmv")
    with pytest.raises(InvalidParams) as err:
        upsert(executor, slug, limits={"connection_limit": 0, "statement_timeout": {"anon": -1}, "bogus": 1})
    paths = sorted(v["path"] for v in err.value.details["violations"])
    assert paths == ["/limits", "/limits/connection_limit", "/limits/statement_timeout/anon"], paths
    assert admin.value("select count(*) from supabase_connector.projects where slug = %s", (slug,)) == 0
