"""Issue 8: a project's life after provisioning, against the real stack.

- `apply_database_migrations`: a realistic migration set (tests/fixtures/migrations)
  applies once, in version order, as the project; what it built then behaves as
  the documentation says through leases and the PostgREST-style client; a changed
  applied file is a conflict; a failing file rolls back alone and is reported
  with its file, statement, line and PostgreSQL's message; the CLI's
  `migrate --project P DIR`; nothing a migration does reaches outside its project.
- `remove_database_project`: archive keeps the data and blocks every access until
  a re-upsert restores it; drop removes everything the project had; the served
  `pgrst.db_schemas` never names a schema that does not exist, watched by a
  concurrent poller while projects are removed and created.
- `verify_database_project`: every finding code, made by hand as a superuser
  would, is reported with its object, repaired (where the runtime role can), and
  a second verify is clean.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import threading
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import psycopg
import pytest

import pgrest
from conftest import Admin, catalog_snapshot, cli, connector_config, info, new_slug, result_violations
from supabase_connector import Conflict, InvalidParams, MigrationFailed, MigrationsResult, NotFound, SupabaseExecutor, catalog

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "migrations"

# Seeded in tests/stack/supabase_init.sql, as GoTrue would have created them.
ALICE = "00000000-0000-4000-8000-00000000a11c"
BOB = "00000000-0000-4000-8000-000000000b0b"
CAROL = "00000000-0000-4000-8000-0000000ca201"

SERVED_SQL = (
    "select coalesce((select substr(c, length('pgrst.db_schemas=') + 1) from pg_db_role_setting s, unnest(s.setconfig) c "
    "where s.setrole = 'authenticator'::regrole and s.setdatabase = 0 and c like 'pgrst.db\\_schemas=%%'), '')"
)


def fixture_migrations() -> List[Dict[str, str]]:
    """The files of tests/fixtures/migrations as action parameters."""
    out = []
    for path in sorted(FIXTURES.glob("*.sql")):
        version, name = path.stem.split("_", 1)
        out.append({"version": version, "name": name, "sql": path.read_text()})
    assert len(out) == 3
    return out


def upsert(executor: SupabaseExecutor, slug: str, **params: Any) -> Dict[str, Any]:
    return executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False, **params})


def migrate(executor: SupabaseExecutor, slug: str, migrations: List[Dict[str, str]]) -> Dict[str, Any]:
    return executor.execute("apply_database_migrations", {"project": slug, "migrations": migrations})


def served(admin: Admin) -> List[str]:
    return [s for s in admin.value(SERVED_SQL).split(",") if s]


def applied_rows(admin: Admin, slug: str) -> List[tuple]:
    return admin.rows(
        "select version, name, checksum, applied_at from supabase_connector.migrations where project = %s order by version",
        (slug,),
    )


def live_lease_roles(admin: Admin, schema: str) -> List[str]:
    """Lease roles that are members of one of the project's class roles."""
    return [r[0] for r in admin.rows(
        "select distinct r.rolname from pg_roles r join pg_auth_members m on m.member = r.oid join pg_roles g on g.oid = m.roleid "
        "where r.rolname like 'lease\\_%%' and g.rolname in (%s, %s, %s) order by 1",
        (f"{schema}_service_role", f"{schema}_authenticated", f"{schema}_anon"),
    )]


def user_token(executor: SupabaseExecutor, slug: str, uid: str) -> str:
    lease = executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "user", "id": uid}})["lease"]
    return str(lease["api"]["access_token"])


def service_lease(executor: SupabaseExecutor, slug: str) -> Dict[str, Any]:
    principal = {"type": "service", "id": "project"}
    return dict(executor.execute("issue_database_lease", {"project": slug, "principal": principal})["lease"])


# ------------------------------------------------------------ migrations


@dataclass
class Blog:
    slug: str
    schema: str
    first: Dict[str, Any]
    second: Dict[str, Any]
    registry_after_first: List[tuple]


@pytest.fixture(scope="module")
def blog(executor: SupabaseExecutor, admin: Admin) -> Blog:
    """A project with the fixture migrations applied (given in reverse order), twice."""
    slug = new_slug("blog")
    upsert(executor, slug)
    files = fixture_migrations()
    first = migrate(executor, slug, list(reversed(files)))
    registry = applied_rows(admin, slug)
    second = migrate(executor, slug, files)
    return Blog(slug, f"proj_{slug}", first, second, registry)


def test_migrations_apply_in_version_order_then_nothing(blog: Blog, admin: Admin) -> None:
    files = fixture_migrations()
    versions = [f["version"] for f in files]
    assert [(m["version"], m["name"]) for m in blog.first["applied"]] == [(f["version"], f["name"]) for f in files]
    assert blog.first["skipped"] == []
    # the second run applies nothing and touches no registry row
    assert blog.second["applied"] == []
    assert [m["version"] for m in blog.second["skipped"]] == versions
    assert applied_rows(admin, blog.slug) == blog.registry_after_first
    assert [r[:2] for r in blog.registry_after_first] == [(f["version"], f["name"]) for f in files]
    assert [r[2] for r in blog.registry_after_first] == [m["checksum"] for m in blog.first["applied"]]
    # the short-lived lease the run logged in with is gone, role and all
    assert admin.value(
        "select count(*) from supabase_connector.leases where project = %s and revoked_at is null", (blog.slug,)) == 0
    # (one lease for the run that applied something, none for the run with nothing pending)
    assert admin.value("select count(*) from supabase_connector.leases where project = %s", (blog.slug,)) == 1
    assert live_lease_roles(admin, blog.schema) == []


def test_migrations_result_has_one_shape(executor: SupabaseExecutor, admin: Admin) -> None:
    """applied, skipped, pending and dry_run in every result: a run that
    applies, a dry run, a run with nothing pending (and the catalog says so)."""
    slug = new_slug("shape")
    upsert(executor, slug)
    first, second = fixture_migrations()[:2]
    ref = lambda m: {"version": m["version"], "name": m["name"]}  # noqa: E731
    ran = migrate(executor, slug, [first])
    planned = executor.execute("apply_database_migrations", {"project": slug, "migrations": [first, second], "dry_run": True})
    idle = migrate(executor, slug, [first])
    assert {k: v for k, v in ran.items() if k != "applied"} == {"project": slug, "skipped": [], "pending": [], "dry_run": False}
    assert [ref(m) for m in ran["applied"]] == [ref(first)]
    assert planned == {"project": slug, "applied": [], "skipped": [ref(first)], "pending": [ref(second)], "dry_run": True}
    assert idle == {"project": slug, "applied": [], "skipped": [ref(first)], "pending": [], "dry_run": False}
    assert [r[0] for r in applied_rows(admin, slug)] == [first["version"]]  # the dry run applied nothing
    for result in (ran, planned, idle):
        assert result_violations("apply_database_migrations", result) == []
    # the catalog requires every key, so a result without one would not pass
    assert result_violations("apply_database_migrations", {k: v for k, v in ran.items() if k != "pending"})
    # and the Python type names the same keys
    assert MigrationsResult.__required_keys__ == set(catalog()["actions"]["apply_database_migrations"]["result"]["required"])


def test_migrated_objects_belong_to_the_project(blog: Blog, admin: Admin) -> None:
    s = blog.schema
    owner = f"{s}_owner"
    rels = {r[0]: r[1:] for r in admin.rows(
        "select relname, relkind::text, relowner::regrole::text, relrowsecurity, coalesce(reloptions::text, '') "
        "from pg_class where relnamespace = %s::regnamespace", (s,))}
    assert {n for n, (kind, *_) in rels.items() if kind == "r"} == {"profiles", "posts", "comments"}
    assert {n for n, (kind, *_) in rels.items() if kind == "v"} == {"post_summaries"}
    assert all(o == owner for _, o, _, _ in rels.values()), rels  # tables, sequences, indexes, the view
    assert all(rls for kind, _, rls, _ in rels.values() if kind == "r")
    assert rels["post_summaries"][3] == "{security_invoker=true}"
    fks = admin.rows(
        "select conrelid::regclass::text, confrelid::regclass::text from pg_constraint "
        "where connamespace = %s::regnamespace and contype = 'f' order by 1, 2", (s,))
    assert fks == [(f"{s}.comments", "auth.users"), (f"{s}.comments", f"{s}.posts"),
                   (f"{s}.posts", f"{s}.profiles"), (f"{s}.profiles", "auth.users")]
    assert admin.value("select count(*) from pg_policies where schemaname = %s", (s,)) == 10
    fn = f"{s}.set_updated_at()"
    assert admin.rows("select proowner::regrole::text, prosecdef from pg_proc where oid = %s::regprocedure", (fn,)) == [(owner, False)]
    assert admin.value("select has_function_privilege('public', %s, 'EXECUTE')", (fn,)) is False
    assert admin.value("select has_function_privilege(%s, %s, 'EXECUTE')", (f"{s}_authenticated", fn)) is True
    assert admin.value("select count(*) from pg_trigger where tgrelid = %s::regclass and not tgisinternal", (f"{s}.posts",)) == 1
    # nothing landed outside the schema
    assert admin.value(
        "select count(*) from pg_class where relowner = %s::regrole and relnamespace not in (%s::regnamespace, 'pg_toast'::regnamespace)",
        (owner, s)) == 0


def test_access_after_migrations_follows_the_policies(blog: Blog, executor: SupabaseExecutor, api: pgrest.Client) -> None:
    s, slug = blog.schema, blog.slug
    for uid, role in ((ALICE, "project_contributor"), (BOB, "team_member"), (CAROL, "project_viewer")):
        executor.execute("upsert_database_access", {"project": slug, "principal": {"type": "user", "id": uid},
                                                    "platform_role": role, "issue_lease": False})
    alice, bob, carol = (user_token(executor, slug, u) for u in (ALICE, BOB, CAROL))
    service = service_lease(executor, slug)

    def denied(token: str, sql: str, params: Tuple[Any, ...] = ()) -> str:
        with pytest.raises(pgrest.ApiError) as err:
            api.request(token, s, sql, params)
        return str(err.value.pgcode)

    # profiles: each user creates their own; the FK to auth.users holds
    api.request(alice, s, "insert into profiles (id, username) values (%s, 'alice')", (ALICE,))
    api.request(bob, s, "insert into profiles (id, username) values (%s, 'bob')", (BOB,))
    assert denied(alice, "insert into profiles (id, username) values (%s, 'mallory')", (CAROL,)) == "42501"
    assert denied(service["api"]["access_token"], "insert into profiles (id, username) values (%s, 'ghost')",
                  (str(uuid.uuid4()),)) == "23503"
    # posts: the author defaults to auth.uid(); nobody writes as someone else
    api.request(alice, s, "insert into posts (title, published) values ('alice public', true), ('alice draft', false)")
    api.request(alice, s, "insert into posts (title, updated_at) values ('alice old', '2000-01-01')")
    api.request(bob, s, "insert into posts (title) values ('bob draft')")
    assert denied(alice, "insert into posts (author_id, title) values (%s, 'forged')", (BOB,)) == "42501"
    assert sorted(api.request(alice, s, "select title from posts")) == [("alice draft",), ("alice old",), ("alice public",)]
    assert sorted(api.request(bob, s, "select title from posts")) == [("alice public",), ("bob draft",)]
    # the anon class reads what the policies give `anon`, and writes nothing
    assert api.request(carol, s, "select title from posts") == [("alice public",)]
    assert sorted(api.request(carol, s, "select username from profiles")) == [("alice",), ("bob",)]
    assert denied(carol, "insert into posts (author_id, title) values (%s, 'x')", (CAROL,)) == "42501"
    # bob cannot touch alice's rows; the trigger stamps alice's edit
    assert api.request(bob, s, "update posts set title = 'defaced' where title = 'alice public' returning id") == []
    assert api.request(bob, s, "delete from posts where title = 'alice draft' returning id") == []
    assert api.request(alice, s, "update posts set body = 'edited' where title = 'alice old' "
                                 "returning updated_at > '2020-01-01'") == [(True,)]
    # comments reference auth.users directly
    api.request(bob, s, "insert into comments (post_id, body) select id, 'nice' from posts where title = 'alice public'")
    # the view runs with the caller's rights (security_invoker set by the guard)
    assert sorted(api.request(bob, s, "select title, author, comments from post_summaries")) == [
        ("alice public", "alice", 1), ("bob draft", "bob", 0)]
    assert api.request(carol, s, "select title, comments from post_summaries") == [("alice public", 0)]
    # the service class bypasses RLS in its own project, through the API and a database session
    assert api.request(service["api"]["access_token"], s, "select count(*) from post_summaries") == [(4,)]
    with psycopg.connect(service["database"]["url"], autocommit=True) as conn:
        assert conn.execute("select count(*) from posts").fetchone() == (4,)
        assert conn.execute("select count(*) from comments").fetchone() == (1,)
        assert conn.execute("select current_user").fetchone() == (f"{s}_owner",)


def test_changed_applied_migration_is_a_conflict(blog: Blog, executor: SupabaseExecutor, admin: Admin) -> None:
    files = fixture_migrations()
    later = {"version": "20240201120000", "name": "tags", "sql": "create table tags (name text primary key);"}
    changed = [dict(f) for f in files]
    changed[1]["sql"] += "\n-- a harmless-looking edit\ncreate policy \"sneaky\" on posts for select to anon using (true);\n"
    before = applied_rows(admin, blog.slug)
    with pytest.raises(Conflict) as err:
        migrate(executor, blog.slug, changed + [later])
    assert err.value.details["version"] == files[1]["version"]
    assert err.value.details["applied_checksum"] == before[1][2]
    assert files[1]["name"] in str(err.value)
    # nothing ran: not the edit, not the new file after it
    assert applied_rows(admin, blog.slug) == before
    assert admin.value("select count(*) from pg_policies where schemaname = %s and policyname = 'sneaky'", (blog.schema,)) == 0
    assert admin.value("select to_regclass(%s)", (f"{blog.schema}.tags",)) is None
    # the unchanged files plus a new one: only the new one runs
    out = migrate(executor, blog.slug, files + [later])
    assert [m["version"] for m in out["applied"]] == [later["version"]]
    assert len(out["skipped"]) == 3
    assert admin.value("select relowner::regrole::text from pg_class where oid = %s::regclass",
                       (f"{blog.schema}.tags",)) == f"{blog.schema}_owner"


def test_cli_migrate_reads_a_directory(stack: Any, executor: SupabaseExecutor, admin: Admin, tmp_path: Path) -> None:
    slug = new_slug("cli")
    upsert(executor, slug)
    config = connector_config(stack)
    migrations = tmp_path / "migrations"
    shutil.copytree(FIXTURES, migrations)
    (migrations / "README.md").write_text("not a migration\n")

    def run() -> Tuple[int, Any, Any]:
        proc = cli("migrate", "--project", slug, str(migrations), "--output", "json", config=config)
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        err = None
        if proc.returncode:  # the `{"error": …}` document comes last on stderr, after any log lines
            start = re.search(r'^\{\s*"error"', proc.stderr, re.M)
            assert start, proc.stderr
            err = json.loads(proc.stderr[start.start():])
        return proc.returncode, out, err

    code, out, _ = run()
    assert code == 0
    assert [m["name"] for m in out["applied"]] == ["tables", "policies", "triggers_and_views"]
    assert admin.value("select count(*) from pg_class where relnamespace = %s::regnamespace and relkind = 'r'",
                       (f"proj_{slug}",)) == 3
    code, out, _ = run()
    assert code == 0 and out["applied"] == [] and len(out["skipped"]) == 3
    # an edited applied file: exit 4, a conflict naming the file
    tables = migrations / "20240101120000_tables.sql"
    tables.write_text(tables.read_text() + "\n-- edited\n")
    code, _, err = run()
    assert code == 4 and err["error"]["code"] == "conflict"
    assert err["error"]["details"]["version"] == "20240101120000"
    shutil.copy(FIXTURES / tables.name, tables)
    # a failing new file: exit 8, naming the file, statement and PostgreSQL's message
    (migrations / "20240301120000_broken.sql").write_text("create table fine (id int);\n\nselect * from no_such_table;\n")
    code, _, err = run()
    assert code == 8 and err["error"]["code"] == "migration_failed"
    d = err["error"]["details"]
    assert (d["file"], d["statement"], d["line"], d["sqlstate"]) == ("20240301120000_broken.sql", 2, 3, "42P01")
    assert admin.value("select to_regclass(%s)", (f"proj_{slug}.fine",)) is None


BROKEN = {
    # (statement that fails, SQLSTATE, words of PostgreSQL's message)
    "missing_relation": ("select * from no_such_table;", "42P01", 'relation "no_such_table" does not exist'),
    "syntax_error": ("create tabel oops (id int);", "42601", 'syntax error at or near "tabel"'),
    "unique_violation": ("insert into half values (1);", "23505", 'duplicate key value violates unique constraint "half_pkey"'),
    "division_by_zero": ("select 1 / (count(*) - 1) from half;", "22012", "division by zero"),
    "check_violation": ("alter table half add constraint positive check (id < 0);", "23514", 'is violated by some row'),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_failing_migration_rolls_back_alone(executor: SupabaseExecutor, admin: Admin, kind: str) -> None:
    bad, sqlstate, message = BROKEN[kind]
    slug = new_slug("fail")
    s = f"proj_{slug}"
    upsert(executor, slug)
    good = {"version": "1", "name": "first", "sql": "create table first (id int);"}
    broken = {"version": "2", "name": "broken", "sql":
              "create table half (id int primary key);\ninsert into half values (1);\n\n-- this one fails:\n" + bad +
              "\ncreate table after_error (id int);\n"}
    third = {"version": "10", "name": "third", "sql": "create table third (id int);"}
    with pytest.raises(MigrationFailed) as err:
        migrate(executor, slug, [third, broken, good])
    d = err.value.details
    assert (d["file"], d["version"], d["name"]) == ("2_broken.sql", "2", "broken")
    assert (d["statement"], d["line"]) == (3, 5), d
    assert d["sqlstate"] == sqlstate and message in d["message"], d
    assert "2_broken.sql" in str(err.value) and message in str(err.value)
    assert [m["version"] for m in d["applied"]] == ["1"]
    # the earlier file stays, the failing one left nothing, the later one never ran
    assert admin.value("select to_regclass(%s)", (f"{s}.first",)) is not None
    for table in ("half", "after_error", "third"):
        assert admin.value("select to_regclass(%s)", (f"{s}.{table}",)) is None, table
    assert [r[0] for r in applied_rows(admin, slug)] == ["1"]
    assert live_lease_roles(admin, s) == []
    # the failed file was never applied, so fixing it is not a conflict
    fixed = dict(broken, sql=broken["sql"].replace(bad, "select 1;"))
    out = migrate(executor, slug, [good, fixed, third])
    assert [m["version"] for m in out["applied"]] == ["2", "10"] and [m["version"] for m in out["skipped"]] == ["1"]
    assert [r[0] for r in applied_rows(admin, slug)] == ["1", "10", "2"]  # text order in the registry


def test_statements_are_split_as_postgresql_does(executor: SupabaseExecutor, admin: Admin) -> None:
    """Semicolons inside strings, comments, dollar-quoted and BEGIN ATOMIC bodies
    and multi-action rules do not end a statement; the failing one is named."""
    slug = new_slug("split")
    s = f"proj_{slug}"
    upsert(executor, slug)
    sql = "\n".join([
        "create table log (msg text default 'a;b');  -- a comment; with a semicolon",
        "create function shout(t text) returns text language plpgsql as $body$ begin return upper(t) || ';'; end $body$;",
        "create function twice(i int) returns int language sql begin atomic select i * 2; end;",
        "create table src (id int);",
        "/* block; comment */ create rule src_log as on insert to src do also",
        "  (insert into log values (shout('one')); insert into log values (twice(new.id)::text));",
        "insert into src values (21);",
        "insert into src values (1 / 0);",
    ])
    with pytest.raises(MigrationFailed) as err:
        migrate(executor, slug, [{"version": "1", "name": "split", "sql": sql}])
    assert (err.value.details["statement"], err.value.details["line"], err.value.details["sqlstate"]) == (7, 8, "22012")
    assert admin.value("select to_regclass(%s)", (f"{s}.log",)) is None
    migrate(executor, slug, [{"version": "1", "name": "split", "sql": sql.replace("1 / 0", "2")}])
    assert admin.rows(f"select msg from {s}.log order by msg") == [("4",), ("42",), ("ONE;",), ("ONE;",)]


def test_transaction_control_is_rejected_before_anything_runs(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("tx")
    upsert(executor, slug)
    files = [{"version": "1", "name": "ok", "sql": "create table ok (id int);"},
             {"version": "2", "name": "tx", "sql": "create table a (id int);\ncommit;\ncreate table b (id int);"}]
    with pytest.raises(InvalidParams) as err:
        migrate(executor, slug, files)
    assert "/migrations/1/sql" in json.dumps(err.value.details) and "COMMIT" in str(err.value)
    assert applied_rows(admin, slug) == []
    assert admin.value("select to_regclass(%s)", (f"proj_{slug}.ok",)) is None
    with pytest.raises(NotFound):
        migrate(executor, new_slug("nope"), files[:1])


# Statements a migration must not be able to run: each is preceded by a harmless
# `create table`, so "unchanged" also shows the whole file rolled back.
# {s}: the project's schema; {o}: a neighbour project's schema.
FORBIDDEN = {
    "create_in_public": "create table public.escape (id int)",
    "create_schema": "create schema escape",
    "drop_own_schema": "drop schema {s} cascade",
    "drop_owned_by_owner": "drop owned by {s}_owner",
    "drop_own_schema_as_lease": "set role none; drop schema {s} cascade",
    "set_role_runtime": "set role postgres",
    "reset_role_then_public": "reset role; create table public.escape (id int)",
    "set_role_global_service": "set role none; set role service_role",
    "set_config_role": "select set_config('role', 'service_role', false)",
    "session_authorization": "set session authorization postgres",
    "grant_table_to_anon": "create table t (id int); grant select on t to anon",
    "grant_table_to_public": "create table t (id int); grant select on t to public",
    "grant_column_to_authenticated": "create table t (id int); grant select (id) on t to authenticated",
    "grant_table_to_neighbour": "create table t (id int); grant select on t to {o}_anon",
    "grant_schema_to_anon": "grant usage on schema {s} to anon",
    "default_privileges_in_schema_to_anon": "alter default privileges in schema {s} grant select on tables to anon",
    "global_default_privileges_to_anon": "alter default privileges grant select on tables to anon; create table t (id int)",
    "lease_global_default_privileges": "set role none; alter default privileges grant select on tables to anon",
    "alter_own_role": "alter role {s}_anon bypassrls",
    "alter_role_login": "alter role {s}_owner login",
    "alter_authenticator": "alter role authenticator set pgrst.db_schemas = 'public,{s}'",
    "create_role": "create role escape",
    "grant_membership": "grant {s}_owner to {s}_anon",
    "create_trusted_extension": "create extension if not exists citext",
    "create_untrusted_extension": "create extension if not exists dblink",
    "copy_to_program": "copy (select 1) to program 'id'",
    "read_auth_users": "create table stolen as select * from auth.users",
    "read_registry": "create table stolen as select * from supabase_connector.projects",
    "write_neighbour": "insert into {o}.t values (1)",
    "create_in_neighbour": "create table {o}.escape (id int)",
    "give_table_away": "create table t (id int); alter table t owner to postgres",
    "event_trigger": "create event trigger escape on ddl_command_start execute function pg_catalog.now()",
}


@pytest.fixture(scope="module")
def neighbour(executor: SupabaseExecutor, admin: Admin) -> str:
    slug = new_slug("nbr")
    upsert(executor, slug)
    migrate(executor, slug, [{"version": "1", "name": "t", "sql": "create table t (id int);"}])
    return slug


@pytest.fixture(scope="module")
def sandbox(executor: SupabaseExecutor) -> str:
    slug = new_slug("sbx")
    upsert(executor, slug)
    return slug


def world(admin: Admin, slugs: List[str]) -> Dict[str, Any]:
    """What a migration could change outside its own objects, and its own."""
    return {
        "projects": {slug: catalog_snapshot(admin, f"proj_{slug}") for slug in slugs},
        "registry": admin.rows("select project, version from supabase_connector.migrations where project = any(%s) order by 1, 2", (slugs,)),
        "neighbour_rows": admin.value(f"select count(*) from proj_{slugs[1]}.t"),
        "public": admin.rows("select relname from pg_class where relnamespace = 'public'::regnamespace order by 1"),
        "schemas": admin.rows("select nspname, nspowner::regrole::text from pg_namespace order by 1"),
        "roles": admin.rows("select rolname, rolsuper, rolcanlogin, rolbypassrls from pg_roles where rolname not like 'lease\\_%%' order by 1"),
        "role_settings": admin.rows("select setrole::regrole::text, setdatabase, setconfig::text from pg_db_role_setting order by 1, 2"),
        "extensions": admin.rows("select extname from pg_extension order by 1"),
        "event_triggers": admin.rows("select evtname from pg_event_trigger order by 1"),
        "global_defaults": admin.rows("select defaclrole::regrole::text, defaclobjtype::text, defaclacl::text from pg_default_acl where defaclnamespace = 0 order by 1, 2"),
    }


@pytest.mark.parametrize("case", sorted(FORBIDDEN))
def test_migration_cannot_leave_its_project(executor: SupabaseExecutor, admin: Admin, sandbox: str, neighbour: str, case: str) -> None:
    s, o = f"proj_{sandbox}", f"proj_{neighbour}"
    sql = "create table marker (id int);\n" + FORBIDDEN[case].format(s=s, o=o) + ";\n"
    before = world(admin, [sandbox, neighbour])
    version = str(uuid.uuid4().int)[:12]
    with pytest.raises(MigrationFailed) as err:
        migrate(executor, sandbox, [{"version": version, "name": case, "sql": sql}])
    d = err.value.details
    assert d["file"] == f"{version}_{case}.sql" and d["statement"] >= 2 and d["message"], d
    assert d["sqlstate"] == "42501", d  # refused for want of privilege, not by accident
    assert world(admin, [sandbox, neighbour]) == before
    assert executor.execute("verify_database_project", {"project": sandbox})["clean"] is True


# ------------------------------------------------------------ removal


def test_archive_blocks_access_and_upsert_restores_it(executor: SupabaseExecutor, admin: Admin, api: pgrest.Client) -> None:
    slug = new_slug("arch")
    s = f"proj_{slug}"
    state = executor.execute("upsert_database_project_access", {"project": slug})
    migrate(executor, slug, fixture_migrations())
    executor.execute("upsert_database_access", {"project": slug, "principal": {"type": "user", "id": ALICE},
                                                "platform_role": "project_contributor", "issue_lease": False})
    alice_lease = executor.execute("issue_database_lease", {"project": slug, "principal": {"type": "user", "id": ALICE}})["lease"]
    alice = alice_lease["api"]["access_token"]
    api.request(alice, s, "insert into profiles (id, username) values (%s, 'alice')", (ALICE,))
    api.request(alice, s, "insert into posts (title) values ('kept')")
    service = state["lease"]
    session = psycopg.connect(service["database"]["url"], autocommit=True)  # an open session must end too
    roles = live_lease_roles(admin, s)
    assert sorted(roles) == sorted([service["database"]["user"], alice_lease["database"]["user"]])  # one per database lease
    class_roles = [f"{s}_{cls}" for cls in ("service_role", "authenticated", "anon")]

    removed = executor.execute("remove_database_project", {"project": slug})
    assert removed["state"] == "archived"
    assert sorted(removed["revoked_leases"]) == sorted([service["lease_id"], alice_lease["lease_id"]])
    # every credential stops working: tokens, database logins, open sessions.
    # The API no longer switches to the project's class roles (`authenticator`
    # gave them up), so a token is refused at the role switch, before the
    # lease check (which would refuse it too: its lease is revoked).
    for role in class_roles:
        assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (role,)) is False, role
    for token in (alice, service["api"]["access_token"], service["api"]["publishable_token"]):
        with pytest.raises(pgrest.ApiError) as err:
            api.request(token, s, "select 1")
        assert (err.value.kind, err.value.pgcode) == ("role_switch", "42501"), err.value
        assert "permission denied to set role" in str(err.value)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(service["database"]["url"], connect_timeout=5).close()
    with pytest.raises(psycopg.OperationalError):
        session.execute("select 1")
    session.close()
    assert admin.value("select count(*) from pg_roles where rolname = any(%s)", (roles,)) == 0
    assert admin.value("select count(*) from supabase_connector.leases where project = %s and revoked_at is null", (slug,)) == 0
    # the data and the registry stay; the class roles lose the schema; not served
    assert admin.value(f"select title from {s}.posts") == "kept"
    assert admin.value("select state from supabase_connector.projects where slug = %s", (slug,)) == "archived"
    assert admin.value("select count(*) from supabase_connector.grants where project = %s", (slug,)) == 1
    assert len(applied_rows(admin, slug)) == 3
    for cls in ("service_role", "authenticated", "anon"):
        assert admin.value("select has_schema_privilege(%s, %s, 'USAGE')", (f"{s}_{cls}", s)) is False
    assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (f"{s}_service_role", f"{s}_owner")) is False
    assert s not in served(admin)
    with pytest.raises(Conflict):
        service_lease(executor, slug)
    with pytest.raises(Conflict):
        migrate(executor, slug, fixture_migrations())
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
    # archiving again is a no-op
    again = executor.execute("remove_database_project", {"project": slug})
    assert again["state"] == "archived" and again["revoked_leases"] == []

    # a re-upsert restores access, with the stored grants
    restored = executor.execute("upsert_database_project_access", {"project": slug})
    assert s in served(admin)
    for role in class_roles:
        assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (role,)) is True, role
    assert api.request(restored["lease"]["api"]["access_token"], s, "select title from posts") == [("kept",)]
    alice_again = user_token(executor, slug, ALICE)
    assert api.request(alice_again, s, "select title from posts") == [("kept",)]
    # the tokens of the leases the archive revoked stay dead: the API switches
    # to their roles again, and the lease check refuses them
    for token in (alice, service["api"]["access_token"]):
        with pytest.raises(pgrest.ApiError) as err:
            api.request(token, s, "select 1")
        assert (err.value.kind, err.value.pgcode, err.value.status) == ("pre_request", "PT401", 401)
        assert "lease revoked or expired" in str(err.value)
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True


def test_drop_removes_everything(executor: SupabaseExecutor, admin: Admin, api: pgrest.Client) -> None:
    slug = new_slug("drop")
    s = f"proj_{slug}"
    state = executor.execute("upsert_database_project_access", {"project": slug})
    migrate(executor, slug, fixture_migrations())
    executor.execute("upsert_database_access", {"project": slug, "principal": {"type": "user", "id": BOB},
                                                "platform_role": "project_contributor", "issue_lease": False})
    executor.execute("upsert_database_team_access", {"project": slug, "team_id": "writers",
                                                     "platform_role": "team_member", "members": [ALICE]})
    alice = user_token(executor, slug, ALICE)
    roles = live_lease_roles(admin, s)
    assert len(roles) == 2  # the service lease's and alice's login roles
    registry_tables = ("projects", "grants", "teams", "team_members", "leases", "migrations")

    def registry_rows() -> Dict[str, int]:
        out = {}
        for table in registry_tables:
            column = "slug" if table == "projects" else "project"
            out[table] = admin.value(f"select count(*) from supabase_connector.{table} where {column} = %s", (slug,))
        return out

    assert all(registry_rows().values())
    out = executor.execute("remove_database_project", {"project": slug, "drop_data": True})
    assert out["state"] == "dropped" and len(out["revoked_leases"]) == 2
    assert admin.value("select count(*) from pg_namespace where nspname = %s", (s,)) == 0
    assert admin.rows("select rolname from pg_roles where rolname like %s or rolname = any(%s)", (s + "\\_%", roles)) == []
    assert admin.value("select count(*) from pg_default_acl where defaclrole::regrole::text like %s", (s + "\\_%",)) == 0
    assert registry_rows() == {t: 0 for t in registry_tables}
    assert s not in served(admin)
    # the class roles the tokens name are gone with the project
    for token in (alice, state["lease"]["api"]["access_token"]):
        with pytest.raises(pgrest.ApiError) as err:
            api.request(token, s, "select 1")
        assert (err.value.kind, err.value.pgcode) == ("role_switch", "22023") and "does not exist" in str(err.value), err.value
    # the audit log keeps the history
    assert admin.value("select count(*) from supabase_connector.audit_log where project = %s and action = 'remove_database_project'",
                       (slug,)) == 1
    with pytest.raises(NotFound):
        executor.execute("remove_database_project", {"project": slug, "drop_data": True})
    with pytest.raises(NotFound):
        executor.execute("verify_database_project", {"project": slug})
    # the slug can start over, empty
    upsert(executor, slug)
    assert admin.value("select count(*) from pg_class where relnamespace = %s::regnamespace", (s,)) == 0
    assert applied_rows(admin, slug) == []


def test_served_list_never_names_a_missing_schema(stack: Any, executor: SupabaseExecutor, admin: Admin) -> None:
    """A poller compares `pgrst.db_schemas` with pg_namespace while projects are
    archived, dropped (active and archived ones) and created concurrently."""
    to_archive = [new_slug("pa") for _ in range(3)]
    to_drop = [new_slug("pd") for _ in range(4)]
    archived_then_dropped = [new_slug("pad") for _ in range(2)]
    to_create = [new_slug("pn") for _ in range(4)]
    for slug in to_archive + to_drop + archived_then_dropped:
        executor.execute("upsert_database_project_access", {"project": slug})
    for slug in archived_then_dropped:
        executor.execute("remove_database_project", {"project": slug})
    stop = threading.Event()
    violations: List[Tuple[str, List[str]]] = []
    polls = [0]

    def check(conn: psycopg.Connection) -> None:
        listed, existing = conn.execute(
            SERVED_SQL.replace("%%", "%") + ", array(select nspname::text from pg_namespace)").fetchone()
        missing = [x for x in listed.split(",") if x and x not in existing]
        if missing:
            violations.append((listed, missing))
        polls[0] += 1

    def poll() -> None:
        with psycopg.connect(info(stack, "admin_url"), autocommit=True) as conn:
            while not stop.is_set():
                check(conn)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            jobs = [pool.submit(executor.execute, "remove_database_project", {"project": p}) for p in to_archive]
            jobs += [pool.submit(executor.execute, "remove_database_project", {"project": p, "drop_data": True})
                     for p in to_drop + archived_then_dropped]
            jobs += [pool.submit(upsert, executor, p) for p in to_create]
            results = [j.result(timeout=120) for j in jobs]
    finally:
        stop.set()
        poller.join()
    with psycopg.connect(info(stack, "admin_url"), autocommit=True) as conn:
        check(conn)
    assert polls[0] > 5 and violations == []
    assert [r["state"] for r in results[:len(to_archive)]] == ["archived"] * len(to_archive)
    assert [r["state"] for r in results[len(to_archive):-len(to_create)]] == ["dropped"] * 6
    listed = served(admin)
    for slug in to_archive + to_drop + archived_then_dropped:
        assert f"proj_{slug}" not in listed
    for slug in to_create:
        assert f"proj_{slug}" in listed
    assert len(listed) == len(set(listed))


# ------------------------------------------------------------ drift


BASE_OBJECTS = {"version": "1", "name": "objects", "sql": """
create table t (id bigserial primary key, note text);
create view v as select id, note from t;
create materialized view mv as select id from t;
create function f() returns int language sql as 'select 1';
"""}


@dataclass
class Ctx:
    slug: str
    s: str
    o: str
    pg: int
    lease: Optional[Dict[str, Any]] = None

    def fmt(self, text: str) -> str:
        lease_role = lease_id = ""
        if self.lease:
            lease_role = self.lease["database"]["user"]
            lease_id = self.lease["lease_id"]
        return text.format(s=self.s, o=self.o, lease_role=lease_role, lease_id=lease_id,
                           orphan=f"lease_{'0' * 16}{self.slug[-12:]}{'f' * 4}")


@dataclass
class Drift:
    code: str
    sql: List[str]  # run by the superuser; prefix "postgres:" = as the runtime role, "replica:" = event triggers off
    obj: str
    setup: str = "plain"  # plain | lease (a service lease) | isolated | hidden (expose=false)
    undo: List[str] = ()  # type: ignore[assignment]
    severity: str = "error"  # a warning leaves the project clean


# Drift is made as the superuser (the runtime role holds no ADMIN option on
# a project's roles on PostgreSQL 16+, so it could not make most of it), or
# as the runtime role where it still can ("postgres: "). Either way it is
# repaired on every version, including what only a superuser may set: the
# repairs run through the role functions, owned by the bootstrap superuser,
# which revoke a membership whoever granted it.

DRIFTS: Dict[str, Drift] = {
    "role_missing": Drift("role_missing", ["drop owned by {s}_anon", "drop role {s}_anon"], "role {s}_anon"),
    "role_attributes_login": Drift("role_attributes", ["alter role {s}_anon login"], "role {s}_anon"),
    "role_attributes_noinherit": Drift("role_attributes", ["alter role {s}_service_role noinherit"], "role {s}_service_role"),
    "role_attributes_createdb": Drift("role_attributes", ["alter role {s}_owner createdb"], "role {s}_owner"),
    "role_privileged_attribute": Drift("role_privileged_attribute", ["alter role {s}_anon bypassrls"], "role {s}_anon"),
    "role_privileged_attribute_superuser": Drift("role_privileged_attribute", ["alter role {s}_owner superuser"],
                                                 "role {s}_owner", undo=["alter role {s}_owner nosuperuser"]),
    "membership_missing_owner": Drift("membership_missing", ["revoke {s}_owner from {s}_service_role"],
                                      "{s}_service_role in {s}_owner"),
    "membership_missing_class": Drift("membership_missing", ["revoke authenticated from {s}_authenticated"],
                                      "{s}_authenticated in authenticated"),
    "membership_missing_auth": Drift("membership_missing", ["revoke supabase_connector_auth from {s}_owner"],
                                     "{s}_owner in supabase_connector_auth"),
    # the runtime role borrows the owner per action; a kept grant is reported
    "membership_lasting_runtime": Drift("membership_lasting", ["grant {s}_owner to postgres"],
                                        "postgres in {s}_owner", severity="warning"),
    "membership_extra_class": Drift("membership_extra", ["grant {s}_authenticated to {s}_anon"],
                                    "{s}_anon in {s}_authenticated"),
    "membership_extra_global": Drift("membership_extra", ["postgres: grant service_role to {s}_service_role"],
                                     "{s}_service_role in service_role"),
    "membership_extra_by_superuser": Drift("membership_extra", ["grant {s}_owner to {s}_anon"], "{s}_anon in {s}_owner",
                                           undo=["revoke {s}_owner from {s}_anon"]),
    "schema_missing": Drift("schema_missing", ["drop schema {s} cascade"], "schema {s}"),
    "schema_owner": Drift("schema_owner", ["alter schema {s} owner to postgres"], "schema {s}"),
    "schema_usage_missing": Drift("schema_usage_missing", ["revoke usage on schema {s} from {s}_anon"], "schema {s}"),
    "schema_grant_extra_role": Drift("schema_grant_extra", ["grant usage on schema {s} to authenticated"], "schema {s}"),
    "schema_grant_extra_public": Drift("schema_grant_extra", ["grant usage on schema {s} to public"], "schema {s}"),
    "default_privileges_missing": Drift("default_privileges_missing",
                                        ["alter default privileges for role {s}_owner in schema {s} revoke select on tables from {s}_anon"],
                                        "default privileges of {s}_owner in {s}"),
    "default_privileges_public_execute": Drift("default_privileges_missing",
                                               ["alter default privileges for role {s}_owner grant execute on functions to public"],
                                               "default privileges of {s}_owner"),
    "rls_disabled": Drift("rls_disabled", ["replica: alter table {s}.t disable row level security"], "table {s}.t"),
    "view_without_security_invoker": Drift("view_without_security_invoker", ["replica: alter view {s}.v reset (security_invoker)"],
                                           "view {s}.v"),
    "privileges_missing_table": Drift("privileges_missing", ["revoke select on {s}.t from {s}_anon"], "table {s}.t"),
    "privileges_missing_sequence": Drift("privileges_missing", ["revoke usage on sequence {s}.t_id_seq from {s}_authenticated"],
                                         "sequence {s}.t_id_seq"),
    "privileges_missing_function": Drift("privileges_missing", ["revoke execute on function {s}.f() from {s}_authenticated"],
                                         "routine {s}.f()"),
    "matview_class_grant": Drift("matview_class_grant", ["grant select on {s}.mv to {s}_anon"], "materialized view {s}.mv"),
    "foreign_grant_anon": Drift("foreign_grant", ["grant select on {s}.t to anon"], "table {s}.t"),
    "foreign_grant_public": Drift("foreign_grant", ["grant select, update on {s}.t to public"], "table {s}.t"),
    "foreign_grant_neighbour": Drift("foreign_grant", ["grant select on {s}.t to {o}_anon"], "table {s}.t"),
    "foreign_grant_column": Drift("foreign_grant", ["grant select (note) on {s}.t to anon"], "column {s}.t (note)"),
    "foreign_grant_sequence": Drift("foreign_grant", ["grant usage on sequence {s}.t_id_seq to authenticated"],
                                    "sequence {s}.t_id_seq"),
    "foreign_grant_function": Drift("foreign_grant", ["grant execute on function {s}.f() to public"], "routine {s}.f()"),
    "foreign_grant_view": Drift("foreign_grant", ["grant select on {s}.v to service_role"], "table {s}.v"),
    "foreign_grant_default_in_schema": Drift("foreign_grant",
                                             ["alter default privileges for role {s}_owner in schema {s} grant select on tables to anon"],
                                             "default tables {s}_owner"),
    "foreign_grant_default_global_lease": Drift("foreign_grant",
                                                ["alter default privileges for role {lease_role} grant select on tables to anon"],
                                                "global default tables {lease_role}", setup="lease"),
    "foreign_grant_default_global": Drift("foreign_grant", ["alter default privileges for role {s}_owner grant select on tables to anon"],
                                          "global default tables {s}_owner"),
    "exposure_mismatch_unlisted": Drift("exposure_mismatch",
                                        ["alter role authenticator set pgrst.db_schemas = 'public,storage,graphql_public'"],
                                        "pgrst.db_schemas"),
    "exposure_mismatch_hidden_listed": Drift(
        "exposure_mismatch",
        ["do $$ begin execute format('alter role authenticator set pgrst.db_schemas = %L', "
         "supabase_connector.served_db_schemas() || ',{s}'); end $$"],
        "pgrst.db_schemas", setup="hidden"),
    "role_extra": Drift("role_extra", ["postgres: create role {s}_authenticator login noinherit"], "role {s}_authenticator"),
    "role_extra_by_superuser": Drift("role_extra", ["create role {s}_authenticator login noinherit"], "role {s}_authenticator",
                                     undo=["drop role if exists {s}_authenticator"]),
    "lease_role_orphan_revoked": Drift("lease_role_orphan",
                                       ["update supabase_connector.leases set revoked_at = now() where lease_id = '{lease_id}'"],
                                       "role {lease_role}", setup="lease"),
    "lease_role_orphan_by_superuser": Drift("lease_role_orphan", ["create role {orphan} nologin in role {s}_authenticated"],
                                            "role {orphan}", undo=["drop role if exists {orphan}"]),
    # the second role of a lease of bootstrap version 1, left behind
    "lease_role_orphan_v1_anon": Drift("lease_role_orphan", ["create role {orphan}_anon nologin in role {s}_anon"],
                                       "role {orphan}_anon", undo=["drop role if exists {orphan}_anon"]),
    "lease_role_missing": Drift("lease_role_missing", ["drop owned by {lease_role}", "drop role {lease_role}"], "lease {lease_id}",
                                setup="lease"),
    "isolated_login_role_missing": Drift("role_missing", ["drop owned by {s}_authenticator", "drop role {s}_authenticator"],
                                         "role {s}_authenticator", setup="isolated"),
    "isolated_membership_missing": Drift("membership_missing", ["revoke {s}_anon from {s}_authenticator"],
                                         "{s}_authenticator in {s}_anon", setup="isolated"),
}


def run_drift(admin: Admin, statements: List[str]) -> None:
    for sql in statements:
        if sql.startswith("postgres: "):
            admin.run("set role postgres")
            try:
                admin.run(sql[len("postgres: "):])
            finally:
                admin.run("reset role")
        elif sql.startswith("replica: "):
            admin.run("set session_replication_role = replica")  # event triggers do not fire
            try:
                admin.run(sql[len("replica: "):])
            finally:
                admin.run("reset session_replication_role")
        else:
            admin.run(sql)


def errors(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [f for f in report["findings"] if f["severity"] == "error"]


def bao_secret(stack: Any, path: str) -> Dict[str, Any]:
    req = urllib.request.Request(f"{info(stack, 'bao_addr')}/v1/secret/data/connectors/supabase/{path}",
                                 headers={"X-Vault-Token": str(info(stack, "bao_token"))})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return dict(json.load(resp)["data"]["data"])


@pytest.fixture(scope="module")
def pg_version(admin: Admin) -> int:
    return int(admin.value("show server_version_num"))


@pytest.mark.parametrize("case", sorted(DRIFTS))
def test_drift_is_reported_and_repaired(stack: Any, executor: SupabaseExecutor, admin: Admin, neighbour: str,
                                        pg_version: int, case: str) -> None:
    drift = DRIFTS[case]
    slug = new_slug("dr")
    state = executor.execute("upsert_database_project_access", {
        "project": slug, "issue_lease": drift.setup == "lease",
        **({"isolation": "isolated"} if drift.setup == "isolated" else {}),
        **({"expose": False} if drift.setup == "hidden" else {})})
    migrate(executor, slug, [BASE_OBJECTS])
    ctx = Ctx(slug, f"proj_{slug}", f"proj_{neighbour}", pg_version, state.get("lease"))
    obj = ctx.fmt(drift.obj)
    baseline = executor.execute("verify_database_project", {"project": slug})
    assert baseline["clean"] is True and errors(baseline) == [], baseline

    run_drift(admin, [ctx.fmt(sql) for sql in drift.sql])
    try:
        report = executor.execute("verify_database_project", {"project": slug})
        found = [f for f in report["projects"][0]["findings"] if f["code"] == drift.code and f["object"] == obj]
        assert found, json.dumps(report, indent=1)
        for f in found:
            assert f["severity"] == drift.severity and f["repairable"] is True and f["repaired"] is False
            assert f["expected"] and f["actual"] and f["expected"] != f["actual"]
        assert report["clean"] is (drift.severity != "error")
        # the top level holds every finding too, each naming its project
        assert report["findings"] == report["projects"][0]["findings"], json.dumps(report, indent=1)
        assert {f["project"] for f in report["findings"]} == {slug}
        assert result_violations("verify_database_project", report) == []

        repaired = executor.execute("verify_database_project", {"project": slug, "repair": True})
        mine = [f for f in repaired["projects"][0]["findings"] if f["code"] == drift.code and f["object"] == obj]
        assert mine and all(f["repaired"] is True for f in mine)
        after = executor.execute("verify_database_project", {"project": slug})
        left = [f for f in after["projects"][0]["findings"] if f["code"] == drift.code and f["object"] == obj]
        assert left == [] and after["clean"] is True and errors(after) == [], json.dumps(after, indent=1)
    finally:
        for sql in drift.undo:  # only if the repair failed: leave the stack as it was
            admin.run(ctx.fmt(sql))
    if drift.setup == "isolated" and drift.code == "role_missing":
        # the recreated API login role logs in with the password kept in OpenBao
        password = bao_secret(stack, f"projects/{slug}")["AUTHENTICATOR_PASSWORD"]
        try:
            conn = psycopg.connect(host=info(stack, "host"), port=info(stack, "port"), dbname="postgres",
                                   user=f"{ctx.s}_authenticator", password=password, connect_timeout=5)
        except psycopg.OperationalError as e:
            raise AssertionError(f"the recreated login role cannot log in with its password from OpenBao: {e.sqlstate}") from None
        with conn:
            assert conn.execute("select current_user").fetchone() == (f"{ctx.s}_authenticator",)


def test_repairing_an_orphaned_lease_role_ends_its_sessions(executor: SupabaseExecutor, admin: Admin) -> None:
    """The repair takes a leftover lease role apart as a revocation does:
    NOLOGIN, its sessions terminated, then dropped (in that order)."""
    slug = new_slug("orph")
    state = executor.execute("upsert_database_project_access", {"project": slug})
    lease = state["lease"]
    session = psycopg.connect(lease["database"]["url"], autocommit=True)
    try:
        assert session.execute("select 1").fetchone() == (1,)
        admin.run("update supabase_connector.leases set revoked_at = now() where lease_id = %s", (lease["lease_id"],))
        report = executor.execute("verify_database_project", {"project": slug, "repair": True})
        # one role per database lease: the repair drops `lease_<hex>`, and only it
        assert {f["object"] for f in report["projects"][0]["findings"] if f["code"] == "lease_role_orphan" and f["repaired"]} == {
            f"role {lease['database']['user']}"}
        with pytest.raises(psycopg.OperationalError):
            session.execute("select 1")
    finally:
        session.close()
    assert admin.value("select count(*) from pg_stat_activity where usesysid is not null and usename is null") == 0
    assert live_lease_roles(admin, f"proj_{slug}") == []
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True


def test_drift_of_the_whole_served_list(stack: Any, executor: SupabaseExecutor, admin: Admin) -> None:
    """`verify` without a project compares the whole served list with the one
    computed from the registry (a stale entry would break the whole API)."""
    slug = new_slug("ls")
    upsert(executor, slug)
    config = connector_config(stack)
    good = admin.value(SERVED_SQL)
    admin.run(f"alter role authenticator set pgrst.db_schemas = '{good},proj_ghost_of_a_dropped_project'")

    def verify(*args: str) -> Dict[str, Any]:
        proc = cli("verify", *args, "--output", "json", config=config)
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    report = verify()
    drift = [f for f in report["findings"] if f["code"] == "exposure_list_drift"]
    assert len(drift) == 1 and drift[0]["object"] == "pgrst.db_schemas" and drift[0]["severity"] == "error"
    assert drift[0]["project"] is None  # it concerns the whole database
    assert result_violations("verify_database_project", report) == []
    assert "proj_ghost_of_a_dropped_project" in drift[0]["actual"] and "proj_ghost" not in drift[0]["expected"]
    assert report["clean"] is False
    repaired = verify("--repair")
    assert [f["repaired"] for f in repaired["findings"] if f["code"] == "exposure_list_drift"] == [True]
    assert admin.value(SERVED_SQL) == good
    assert [f for f in verify()["findings"] if f["code"] == "exposure_list_drift"] == []


def test_archived_project_listed_again_is_drift(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("al")
    s = f"proj_{slug}"
    upsert(executor, slug)
    executor.execute("remove_database_project", {"project": slug})
    admin.run(f"alter role authenticator set pgrst.db_schemas = '{admin.value(SERVED_SQL)},{s}'")
    report = executor.execute("verify_database_project", {"project": slug})
    assert [(f["code"], f["object"]) for f in errors(report)] == [("exposure_mismatch", "pgrst.db_schemas")]
    executor.execute("verify_database_project", {"project": slug, "repair": True})
    assert s not in served(admin)
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True


def test_project_code_is_reported_as_warnings(executor: SupabaseExecutor, admin: Admin) -> None:
    """Functions in a shared-mode project and SECURITY DEFINER functions are
    warnings: reported, not repaired, and the project stays clean."""
    slug = new_slug("wn")
    s = f"proj_{slug}"
    upsert(executor, slug)
    migrate(executor, slug, [{"version": "1", "name": "t", "sql": "create table t (id int);"}])
    assert executor.execute("verify_database_project", {"project": slug})["projects"][0]["findings"] == []
    migrate(executor, slug, [{"version": "1", "name": "t", "sql": "create table t (id int);"},
                             {"version": "2", "name": "f", "sql": "create function f() returns int language sql as 'select 1';"}])
    admin.run(f"alter function {s}.f() security definer")
    for repair in (False, True):
        report = executor.execute("verify_database_project", {"project": slug, "repair": repair})
        findings = {(f["code"], f["object"], f["severity"], f["repairable"], f["repaired"]) for f in report["projects"][0]["findings"]}
        assert findings == {("tenant_code_in_shared_mode", f"schema {s}", "warning", False, False),
                            ("security_definer_function", f"function {s}.f()", "warning", False, False)}
        assert report["clean"] is True
    assert admin.value("select prosecdef from pg_proc where oid = %s::regprocedure", (f"{s}.f()",)) is True
