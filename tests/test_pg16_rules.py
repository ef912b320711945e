"""Issue 12: PostgreSQL 16+ role-grant rules. Each case starts a stack of
its own on 18 (`createrole_self_grant` empty, and `'set, inherit'`), and one
where the runtime role lacks ADMIN OPTION on `authenticated`."""

from __future__ import annotations

import json
from typing import Any, Iterator

import psycopg
import pytest

from conftest import VERSIONS, Admin, bootstrap, cli, connector_config, info, new_slug
from stack import Stack
from supabase_connector import SupabaseExecutor, create_executor

needs_18 = pytest.mark.skipif("18" not in VERSIONS, reason="PostgreSQL 18 is not in STACK_PG_VERSIONS")


@pytest.fixture(scope="module", params=["", "set, inherit"], ids=["self_grant_empty", "self_grant_set_inherit"])
def stack18(request: pytest.FixtureRequest) -> Iterator[Stack]:
    if "18" not in VERSIONS:
        pytest.skip("PostgreSQL 18 is not in STACK_PG_VERSIONS")
    s = Stack.up(pg="18", createrole_self_grant=request.param)
    try:
        bootstrap(s)
        yield s
    finally:
        s.down()


@needs_18
def test_provision_revoke_drop_on_18(stack18: Stack) -> None:
    admin = Admin(stack18.admin_url)
    assert admin.value("show createrole_self_grant") == stack18.createrole_self_grant
    with create_executor(connector_config(stack18)) as ex:
        slug = new_slug("r18")
        s = f"proj_{slug}"
        state = ex.execute("upsert_database_project_access", {"project": slug})
        assert ex.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})["statements"] == 0
        # the runtime role holds the owner with INHERIT and SET, checked the way PostgreSQL does
        assert admin.value("select pg_has_role('postgres', %s, 'USAGE') and pg_has_role('postgres', %s, 'SET')", (f"{s}_owner", f"{s}_owner"))
        lease = state["lease"]
        session = psycopg.connect(lease["database"]["url"], autocommit=True)
        session.execute("create table made_by_lease (id int)")
        revoked = ex.execute("revoke_database_lease", {"lease_id": lease["lease_id"]})
        assert revoked["terminated_sessions"] == 1
        session.close()
        assert admin.value("select relowner::regrole::text from pg_class where oid = %s::regclass", (f"{s}.made_by_lease",)) == f"{s}_owner"
        assert admin.value("select count(*) from pg_roles where rolname like %s", (lease["database"]["user"] + "%",)) == 0
        assert ex.execute("verify_database_project", {"project": slug})["clean"] is True
        # isolated mode works too (a login role granted the class roles)
        ex.execute("upsert_database_project_access", {"project": slug, "isolation": "isolated", "issue_lease": False})
        assert ex.execute("verify_database_project", {"project": slug})["clean"] is True
        dropped = ex.execute("remove_database_project", {"project": slug, "drop_data": True})
        assert dropped["state"] == "dropped"
        assert admin.value("select count(*) from pg_roles where rolname like %s", (s + "\\_%",)) == 0
        assert admin.value("select count(*) from pg_namespace where nspname = %s", (s,)) == 0
    admin.conn.close()


@needs_18
def test_bootstrap_refuses_without_admin_option() -> None:
    with Stack.up(pg="18") as s:
        s.psql("revoke admin option for authenticated from postgres granted by supabase_admin")
        admin = Admin(s.admin_url)
        roles_before = admin.value("select count(*) from pg_roles")
        proc = cli("bootstrap", "--database-url", s.admin_url, "--output", "json")
        assert proc.returncode != 0
        assert "ADMIN OPTION" in proc.stderr and "authenticated" in proc.stderr
        assert admin.value("select count(*) from pg_namespace where nspname = 'supabase_connector'") == 0
        assert admin.value("select count(*) from pg_roles") == roles_before
        admin.conn.close()


def test_plan_shows_the_version_specific_grants(stack: Any, executor: SupabaseExecutor) -> None:
    plan = executor.execute("upsert_database_project_access", {"project": new_slug("plan"), "dry_run": True})
    grants = [s for s in plan["statements"] if s.startswith("GRANT") and "_owner\" TO \"postgres\"" in s]
    assert len(grants) == 1
    if int(info(stack, "pg_version")) >= 16:
        assert grants[0].endswith("WITH INHERIT TRUE, SET TRUE")
    else:
        assert "WITH" not in grants[0]
    # the CLI's plan shows the same statements
    proc = cli("plan", "upsert_database_project_access", "--params", json.dumps({"project": "plan-cli"}), "--output", "json",
               config=connector_config(stack))
    assert proc.returncode == 0, proc.stderr
    assert any(s.endswith("WITH INHERIT TRUE, SET TRUE") == (int(info(stack, "pg_version")) >= 16)
               for s in json.loads(proc.stdout)["statements"] if "TO \"postgres\"" in s)
