"""Fixtures of the integration suite: a real stack per PostgreSQL version
(PostgreSQL shaped like Supabase's database + an OpenBao dev server),
bootstrapped once, and helpers to look at the catalog as a superuser and to
make requests the way PostgREST does."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "stack"))
sys.path.insert(0, str(ROOT / "tests"))

from stack import Stack  # noqa: E402
import pgrest  # noqa: E402

from supabase_connector import SupabaseExecutor, create_executor  # noqa: E402

VERSIONS = [v.strip() for v in os.environ.get("STACK_PG_VERSIONS", "15").split(",") if v.strip()]
BIN = os.environ.get("SUPABASE_CONNECTOR_BIN", str(ROOT / "target" / "debug" / "supabase-connector"))


def info(stack: Stack, key: str) -> Any:
    """A stack fact by name (attribute or info entry)."""
    value = getattr(stack, key, None)
    if value is None and hasattr(stack, "info"):
        value = stack.info.get(key)
    return value


def connector_config(stack: Stack, **overrides: Any) -> Dict[str, Any]:
    """The connector's config for a stack: runtime role `postgres`, its
    password from OpenBao, the OpenBao dev server's root token."""
    config: Dict[str, Any] = {
        "database": {"url": info(stack, "runtime_url_nopw"), "sslmode": "disable", "pool_size": 8},
        "openbao": {"addr": info(stack, "bao_addr"), "token": info(stack, "bao_token")},
        "api": {"url": "http://kong:8000"},
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    return config


def cli(*args: str, config: Optional[Dict[str, Any]] = None, input: Optional[str] = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI; with a config, it is passed as a file."""
    argv = [BIN]
    path = None
    if config is not None:
        import tempfile

        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        argv += ["--config", path]
    try:
        proc = subprocess.run(argv + list(args), capture_output=True, text=True, input=input, timeout=300)
    finally:
        if path:
            os.unlink(path)
    if check and proc.returncode != 0:
        shown = [re.sub(r"://([^:/@\s]+):[^@\s]+@", r"://\1:***@", a) for a in argv + list(args)]
        raise AssertionError(f"{shown} exited {proc.returncode}: {proc.stderr}")
    return proc


def result_violations(action: str, result: Any) -> List[str]:
    """Where `result` breaks the catalog's result schema of `action` (built
    as the Rust side builds schemas: the action's schema with the shared
    $defs); empty when it conforms."""
    import jsonschema

    from supabase_connector import catalog

    cat = catalog()
    schema = dict(cat["actions"][action]["result"], **{"$defs": cat["$defs"]})
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(result))


def bootstrap(stack: Stack) -> None:
    cli("bootstrap", "--database-url", info(stack, "admin_url"), "--output", "json", check=True)


@contextlib.contextmanager
def bootstrapped_stack(pg: str) -> Iterator[Stack]:
    """A stack of its own, bootstrapped, stopped afterwards."""
    s = Stack.up(pg=pg)
    try:
        bootstrap(s)
        yield s
    finally:
        s.down()


@pytest.fixture(scope="session", params=VERSIONS, ids=lambda v: f"pg{v}")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with bootstrapped_stack(request.param) as s:
        yield s


@pytest.fixture(scope="session")
def executor(stack: Stack) -> Iterator[SupabaseExecutor]:
    ex = create_executor(connector_config(stack))
    yield ex
    ex.close()


class Admin:
    """Superuser access to the catalog, for assertions and for drift made by hand."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def rows(self, sql: str, params: Any = None) -> List[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def value(self, sql: str, params: Any = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def run(self, sql: str, params: Any = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)


@pytest.fixture(scope="session")
def admin(stack: Stack) -> Iterator[Admin]:
    a = Admin(info(stack, "admin_url"))
    yield a
    a.conn.close()


@pytest.fixture(scope="session")
def jwt_secret(stack: Stack) -> str:
    secrets = info(stack, "secrets")
    return str(secrets["JWT_SECRET"])


@pytest.fixture(scope="session")
def api(stack: Stack, jwt_secret: str) -> "pgrest.Client":
    """Requests the PostgREST way, as the central `authenticator`."""
    dsn = f"postgresql://authenticator:{info(stack, 'authenticator_password')}@{info(stack, 'host')}:{info(stack, 'port')}/postgres"
    return pgrest.Client(dsn, jwt_secret)


def role_calls(statements: List[str]) -> List[List[Any]]:
    """The role-function calls of a plan's statements, in order, each
    `[function, arguments...]`: a `roles_apply` statement holds several."""
    calls: List[List[Any]] = []
    for st in statements:
        head, _, params = st.partition(" -- ")
        if head == "select supabase_connector.roles_apply($1)":
            calls.extend(json.loads(params)[0])
        elif head.startswith("select supabase_connector.role_"):
            calls.append([head[len("select supabase_connector."):head.index("(")], *json.loads(params)])
    return calls


def new_slug(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def slug() -> str:
    return new_slug()


@pytest.fixture
def project(executor: SupabaseExecutor, slug: str) -> Dict[str, Any]:
    """A fresh project with its service-class lease."""
    return executor.execute("upsert_database_project_access", {"project": slug})


def catalog_snapshot(admin: Admin, schema: str) -> Dict[str, Any]:
    """Everything PostgreSQL records about a project's roles and schema."""
    like = schema + "\\_%"
    return {
        "roles": admin.rows(
            "select rolname, rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolvaliduntil "
            "from pg_roles where rolname like %s and rolname not like 'lease\\_%%' order by 1",
            (like,),
        ),
        "members": admin.rows(
            "select g.rolname, m.rolname, a.admin_option from pg_auth_members a join pg_roles g on g.oid = a.roleid "
            "join pg_roles m on m.oid = a.member where (g.rolname like %s or m.rolname like %s) order by 1, 2, 3",
            (like, like),
        ),
        "schema": admin.rows("select nspowner::regrole::text, nspacl::text from pg_namespace where nspname = %s", (schema,)),
        "default_acl": admin.rows(
            "select defaclrole::regrole::text, defaclnamespace, defaclobjtype, defaclacl::text from pg_default_acl "
            "where defaclrole::regrole::text like %s order by 1, 2, 3",
            (like,),
        ),
        "relations": admin.rows(
            "select relname, relkind, relrowsecurity, relacl::text, reloptions::text from pg_class "
            "where relnamespace = to_regnamespace(%s) order by 1",
            (schema,),
        ),
        "served": admin.value(
            "select array_to_string(setconfig, ',') from pg_db_role_setting where setrole = 'authenticator'::regrole and setdatabase = 0"
        ),
    }
