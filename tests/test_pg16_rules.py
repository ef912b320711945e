"""Issue 12: PostgreSQL 16+ role-grant rules (checked on 18).

On 16+ granting a role needs ADMIN OPTION on it, a role's creator gets an
ADMIN-only membership (INHERIT FALSE, SET FALSE) unless
`createrole_self_grant` says otherwise, and `GRANT … WITH INHERIT …, SET …`
sets the options per grant. The connector makes every role statement
through the bootstrap's role functions (owned by the superuser), so the
runtime role creates no project or lease role itself and holds no
membership, ADMIN or other, in any of them, whatever
`createrole_self_grant` is; bootstrap must refuse, changing nothing, when
the runtime role lacks ADMIN OPTION on the API roles.

The lifecycle tests start stacks of their own (PostgreSQL 18 only: skipped
unless 18 is in STACK_PG_VERSIONS); the plan test uses the session stack of
every version.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterator, List, Tuple

import psycopg
import pytest

import pgrest
from conftest import VERSIONS, Admin, Stack, bootstrap, cli, connector_config, info, new_slug, role_calls
from supabase_connector import SupabaseExecutor, create_executor

SERVICE = {"type": "service", "id": "project"}
ALICE = "00000000-0000-4000-8000-00000000a11c"

needs_pg18 = pytest.mark.skipif("18" not in VERSIONS, reason="PostgreSQL 18 is not in STACK_PG_VERSIONS")


def global_catalog(admin: Admin) -> Dict[str, Any]:
    """What a project could leave behind anywhere in the cluster: roles, every
    membership with its options and grantor, schemas, relations outside the
    system schemas, default privileges, per-role settings (except
    authenticator's, whose served list changes by design and is checked on
    its own), shared dependencies and event triggers."""
    return {
        "roles": admin.rows("select rolname from pg_roles order by 1"),
        "members": admin.rows(
            "select roleid::regrole::text, member::regrole::text, grantor::regrole::text, admin_option, "
            "inherit_option, set_option from pg_auth_members order by 1, 2, 3"
        ),
        "schemas": admin.rows("select nspname, nspowner::regrole::text, nspacl::text from pg_namespace order by 1"),
        "relations": admin.rows(
            "select n.nspname, c.relname, c.relowner::regrole::text from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname not in ('pg_catalog', 'pg_toast', 'information_schema') order by 1, 2"
        ),
        "default_acl": admin.rows(
            "select defaclrole::regrole::text, defaclnamespace, defaclobjtype, defaclacl::text from pg_default_acl order by 1, 2, 3"
        ),
        "role_settings": admin.rows(
            "select setrole::regrole::text, setdatabase, setconfig::text from pg_db_role_setting "
            "where setrole <> 'authenticator'::regrole order by 1, 2"
        ),
        "shdepend": admin.rows(
            "select classid::regclass::text, objid, refclassid::regclass::text, refobjid, deptype from pg_shdepend "
            "where dbid in (0, (select oid from pg_database where datname = current_database())) order by 1, 2, 3, 4, 5"
        ),
        "event_triggers": admin.rows("select evtname, evtenabled from pg_event_trigger order by 1"),
    }


#: A role statement made directly (the connector makes none: role functions do).
ROLE_DDL = re.compile(r'^\s*((CREATE|ALTER|DROP) ROLE|(GRANT|REVOKE) "[^"]+" (TO|FROM))', re.I)


def runtime_memberships(admin: Admin) -> List[tuple]:
    """Every membership (ADMIN-only ones included) the runtime role holds in
    a project's or a lease's role."""
    return admin.rows(
        "select g.rolname::text, a.admin_option, a.grantor::regrole::text from pg_auth_members a "
        "join pg_roles g on g.oid = a.roleid where a.member = 'postgres'::regrole "
        "and (g.rolname like 'proj\\_%%' or g.rolname like 'lease\\_%%') order by 1"
    )


def served(admin: Admin) -> List[str]:
    value = admin.value(
        "select substr(c, length('pgrst.db_schemas=') + 1) from pg_db_role_setting s, unnest(s.setconfig) c "
        "where s.setrole = 'authenticator'::regrole and s.setdatabase = 0 and c like 'pgrst.db\\_schemas=%%'"
    )
    return value.split(",") if value else []


# ------------------------------------------------------------ own PG 18 stacks


@pytest.fixture(scope="module", params=["", "set, inherit"], ids=["self_grant_empty", "self_grant_set_inherit"])
def pg18(request: pytest.FixtureRequest) -> Iterator[Tuple[Stack, Admin, SupabaseExecutor]]:
    """A fresh PostgreSQL 18 stack with `createrole_self_grant` set, bootstrapped."""
    if "18" not in VERSIONS:
        pytest.skip("PostgreSQL 18 is not in STACK_PG_VERSIONS")
    s = Stack.up(pg="18", createrole_self_grant=request.param)
    admin = ex = None
    try:
        admin = Admin(info(s, "admin_url"))
        assert admin.value("show createrole_self_grant") == request.param
        bootstrap(s)
        ex = create_executor(connector_config(s))
        yield s, admin, ex
    finally:
        if ex is not None:
            ex.close()
        if admin is not None:
            admin.conn.close()
        s.down()


@needs_pg18
def test_bootstrap_on_pg18(pg18: Tuple[Stack, Admin, SupabaseExecutor]) -> None:
    s, admin, _ = pg18
    assert admin.value("select current_setting('server_version_num')::int") >= 180000
    # the runtime role may grant the helper role but is not (usefully) a member of it
    rows = admin.rows(
        "select admin_option, inherit_option, set_option from pg_auth_members "
        "where roleid = 'supabase_connector_auth'::regrole and member = 'postgres'::regrole"
    )
    assert (True, False, False) in rows
    assert admin.value("select pg_has_role('postgres', 'supabase_connector_auth', 'USAGE')") is False
    # idempotent: a second run changes nothing
    before = global_catalog(admin)
    out = cli("bootstrap", "--database-url", info(s, "admin_url"), "--output", "json", check=True)
    assert json.loads(out.stdout)["previous_version"] == 3
    assert global_catalog(admin) == before


@needs_pg18
def test_plan_and_provisioning_on_pg18(pg18: Tuple[Stack, Admin, SupabaseExecutor]) -> None:
    _, admin, ex = pg18
    slug = new_slug("p")
    schema = f"proj_{slug}"
    before = global_catalog(admin)
    plan = ex.execute("upsert_database_project_access", {"project": slug, "dry_run": True})
    # role statements are calls of the role functions, which pick the grant options
    calls = role_calls(plan["statements"])
    assert ["role_create", f"{schema}_owner"] in calls
    assert ["role_grant", f"{schema}_owner", "postgres"] in calls
    assert plan["statements"][-1] == f'select supabase_connector.role_revoke($1, $2) -- ["{schema}_owner","postgres"]', \
        "the owner is borrowed, not kept"
    assert not [st for st in plan["statements"] if ROLE_DDL.match(st)]
    assert global_catalog(admin) == before, "a dry run changed the catalog"

    state = ex.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    assert state["schema"] == schema
    assert admin.value("select nspowner::regrole::text from pg_namespace where nspname = %s", (schema,)) == f"{schema}_owner"
    # the runtime role created none of the project's roles (the role functions
    # did, as the bootstrap superuser): no ADMIN-only membership is left on
    # them, and `createrole_self_grant` adds none; the borrowed owner is given back
    assert runtime_memberships(admin) == []
    for cls in ("owner", "service_role", "authenticated", "anon"):
        for priv in ("USAGE", "SET", "MEMBER"):
            assert admin.value(f"select pg_has_role('postgres', %s, '{priv}')", (f"{schema}_{cls}",)) is False, (cls, priv)
    # the class roles' memberships carry the options the design gives them
    assert admin.rows(
        "select g.rolname::text, m.rolname::text, a.admin_option, a.inherit_option, a.set_option from pg_auth_members a "
        "join pg_roles g on g.oid = a.roleid join pg_roles m on m.oid = a.member "
        "where g.rolname like %s or m.rolname like %s order by 1, 2", (schema + "\\_%", schema + "\\_%")) == sorted([
            # Supabase's roles are held without SET: no login role that
            # switches to a class role can go on to them
            ("anon", f"{schema}_anon", False, True, False),
            ("authenticated", f"{schema}_authenticated", False, True, False),
            (f"{schema}_anon", "authenticator", False, False, True),
            (f"{schema}_authenticated", "authenticator", False, False, True),
            (f"{schema}_owner", f"{schema}_service_role", False, True, True),
            (f"{schema}_service_role", "authenticator", False, False, True),
            ("supabase_connector_auth", f"{schema}_owner", False, True, True),
        ])
    for cls, global_role in (("authenticated", "authenticated"), ("anon", "anon")):
        assert admin.value("select pg_has_role(%s, %s, 'USAGE')", (f"{schema}_{cls}", global_role)) is True
    assert admin.value("select pg_has_role(%s, 'supabase_connector_auth', 'USAGE')", (f"{schema}_owner",)) is True
    # a second upsert has nothing to do, and verify finds no drift
    again = ex.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    assert again["changed"] is False
    report = ex.execute("verify_database_project", {"project": slug})
    assert report["clean"] is True, report
    # isolated mode: the project's own login role may SET ROLE to its roles, without inheriting them
    ex.execute("upsert_database_project_access", {"project": slug, "isolation": "isolated", "issue_lease": False})
    login = f"{schema}_authenticator"
    for cls in ("service_role", "authenticated", "anon"):
        assert admin.value("select pg_has_role(%s, %s, 'SET') and not pg_has_role(%s, %s, 'USAGE')", (login, f"{schema}_{cls}") * 2)
    report = ex.execute("verify_database_project", {"project": slug})
    assert report["clean"] is True, report
    assert runtime_memberships(admin) == []
    ex.execute("remove_database_project", {"project": slug, "drop_data": True})
    assert global_catalog(admin) == before


@needs_pg18
def test_lease_lifecycle_and_drop_on_pg18(pg18: Tuple[Stack, Admin, SupabaseExecutor]) -> None:
    s, admin, ex = pg18
    slug = new_slug("l")
    schema = f"proj_{slug}"
    before = global_catalog(admin)

    state = ex.execute("upsert_database_project_access", {"project": slug})
    lease = state["lease"]
    role = lease["database"]["user"]
    # one login role per database lease, made by `lease_role_create`: the
    # runtime role holds no membership in it
    assert admin.value("select count(*) from pg_roles where rolname like %s", (role + "%",)) == 1
    assert runtime_memberships(admin) == []
    api = pgrest.Client(info(s, "authenticator_url"), str(info(s, "secrets")["JWT_SECRET"]))
    try:
        # a database session of the lease creates a table (owned by the project through
        # `role` in its connection options) and one as the lease role itself (`SET ROLE NONE`)
        work = psycopg.connect(lease["database"]["url"], autocommit=True)
        work.execute("create table notes (id bigint generated always as identity primary key, body text)")
        work.execute("insert into notes (body) values ('one')")
        work.execute("set role none")
        work.execute("create table scratch (id int)")
        assert admin.value("select relowner::regrole::text from pg_class where oid = %s::regclass", (f"{schema}.notes",)) == f"{schema}_owner"
        assert admin.value("select relowner::regrole::text from pg_class where oid = %s::regclass", (f"{schema}.scratch",)) == role
        # and keeps sessions open: one idle in a transaction holding a lock
        holder = psycopg.connect(lease["database"]["url"])
        holder.execute("lock table notes in access share mode")
        assert admin.value("select count(*) from pg_stat_activity where usename = %s", (role,)) == 2

        # the API path works on 18: service token reads, a user's lease reads under RLS
        assert api.request(lease["api"]["access_token"], schema, "select count(*) from notes") == [(1,)]
        user = ex.execute(
            "upsert_database_access",
            {"project": slug, "principal": {"type": "user", "id": ALICE}, "platform_role": "project_contributor"},
        )["lease"]
        assert user["access_class"] == "authenticated"
        assert api.request(user["api"]["access_token"], schema, "select count(*) from notes") == [(0,)]

        revoked = ex.execute("revoke_database_lease", {"lease_id": lease["lease_id"]})
        assert revoked["revoked"] is True and revoked["terminated_sessions"] == 2
        for conn in (work, holder):
            with pytest.raises(psycopg.OperationalError):
                conn.execute("select 1")
            conn.close()
        assert admin.value("select count(*) from pg_roles where rolname = %s", (role,)) == 0
        assert runtime_memberships(admin) == []
        assert admin.value("select relowner::regrole::text from pg_class where oid = %s::regclass", (f"{schema}.scratch",)) == f"{schema}_owner"
        assert admin.value("select count(*) from pg_stat_activity where usename = %s", (role,)) == 0
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(lease["database"]["url"], connect_timeout=5).close()
        with pytest.raises(pgrest.ApiError) as err:
            api.request(lease["api"]["access_token"], schema, "select 1")
        assert (err.value.kind, err.value.status) == ("pre_request", 401)
        # the data stayed, owned by the project, and the revocation gave the reassigned
        # table the class grants the owner's own objects get: nothing to repair
        assert ex.execute("verify_database_project", {"project": slug})["projects"][0]["findings"] == []
        assert admin.value("select has_table_privilege(%s, %s, 'INSERT') and has_table_privilege(%s, %s, 'SELECT')",
                           (f"{schema}_authenticated", f"{schema}.scratch", f"{schema}_anon", f"{schema}.scratch")) is True
        assert api.request(user["api"]["access_token"], schema, "select count(*) from scratch") == [(0,)]
        assert api.request(user["api"]["access_token"], schema, "select count(*) from notes") == [(0,)]

        dropped = ex.execute("remove_database_project", {"project": slug, "drop_data": True})
        assert dropped["state"] == "dropped"
        with pytest.raises(pgrest.ApiError) as err:
            api.request(user["api"]["access_token"], schema, "select 1")
        assert err.value.kind == "role_switch" and "does not exist" in str(err.value)
    finally:
        api.close()

    # nothing of the project is left: roles, memberships, schema, settings, dependencies
    assert global_catalog(admin) == before
    assert schema not in served(admin)
    assert admin.value("select count(*) from supabase_connector.projects where slug = %s", (slug,)) == 0
    assert admin.value("select count(*) from supabase_connector.leases where project = %s and revoked_at is null", (slug,)) == 0


# ------------------------------------------------------------ missing ADMIN OPTION


@needs_pg18
def test_bootstrap_refuses_without_admin_option() -> None:
    s = Stack.up(pg="18")
    admin = Admin(info(s, "admin_url"))
    try:
        admin.run("revoke admin option for authenticated from postgres")
        assert admin.rows(
            "select admin_option, inherit_option, set_option from pg_auth_members "
            "where roleid = 'authenticated'::regrole and member = 'postgres'::regrole"
        ) == [(False, True, True)]
        before = global_catalog(admin)

        proc = cli("bootstrap", "--database-url", info(s, "admin_url"), "--output", "json")
        error = json.loads(proc.stderr)["error"]
        # the server is not set up as required: a code (and exit status) of its own
        assert (proc.returncode, error["code"]) == (9, "precondition_failed"), proc.stderr
        message = error["message"]
        assert "ADMIN OPTION" in message and "authenticated" in message and "postgres" in message, message
        assert "GRANT authenticated TO postgres WITH ADMIN OPTION" in json.dumps(error["details"])
        assert info(s, "admin_password") not in proc.stderr + proc.stdout

        # nothing changed: no registry, no helper role, no event trigger, no grants
        assert global_catalog(admin) == before
        assert admin.value("select to_regnamespace('supabase_connector') is null and to_regnamespace('supabase_connector_pgrst') is null")
        assert admin.value("select count(*) from pg_roles where rolname = 'supabase_connector_auth'") == 0

        # with the grant Supabase's images make, the same command succeeds
        admin.run("grant authenticated to postgres with admin option")
        bootstrap(s)
        assert admin.value("select (value #>> '{}')::int from supabase_connector.meta where key = 'bootstrap_version'") == 3
    finally:
        admin.conn.close()
        s.down()


# ------------------------------------------------------------ the plan, on every version


def test_plan_calls_the_role_functions_on_every_version(stack: Stack, executor: SupabaseExecutor, admin: Admin) -> None:
    """The plan is the same on every version: role statements are calls of
    the role functions (which pick the version's grant options themselves)."""
    slug = new_slug("g")
    schema = f"proj_{slug}"
    plan = executor.execute("upsert_database_project_access", {"project": slug, "dry_run": True})
    assert plan["dry_run"] is True
    calls = role_calls(plan["statements"])
    assert calls[0] == ["role_create", f"{schema}_owner"]
    assert ["role_grant", f"{schema}_owner", "postgres"] in calls
    for cls in ("service_role", "authenticated", "anon"):
        assert ["role_grant", f"{schema}_{cls}", "authenticator"] in calls
    # the project's role changes go out as one statement
    assert sum(st.startswith("select supabase_connector.roles_apply($1)") for st in plan["statements"]) == 1
    assert calls[-1] == ["role_revoke", f"{schema}_owner", "postgres"]
    assert plan["statements"][-1] == f'select supabase_connector.role_revoke($1, $2) -- ["{schema}_owner","postgres"]'
    assert not [st for st in plan["statements"] if ROLE_DDL.match(st) or "WITH INHERIT" in st.upper()], plan["statements"]
    # the plan applied nothing
    assert admin.value("select count(*) from pg_roles where rolname like %s", (schema + "\\_%",)) == 0
    assert admin.value("select to_regnamespace(%s)", (schema,)) is None
