"""examples/executor_factory.py does what it says, sync and async, and the
environment it hands a workspace works against the database."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

from conftest import Admin, connector_config

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "executor_factory.py"
WORKSPACE_KEYS = {"SUPABASE_URL", "SUPABASE_ANON_KEY", "SUPABASE_ACCESS_TOKEN", "SUPABASE_DB_SCHEMA", "DATABASE_URL"}


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("executor_factory_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sync_attach(example: ModuleType, stack: Any, admin: Admin, slug: str) -> None:
    user = str(uuid.uuid4())
    with example.executor_factory({"supabase_connector": connector_config(stack)}) as executor:
        env = example.attach_database(executor, slug, user)
        assert env is not None and set(env) >= WORKSPACE_KEYS
        assert env["SUPABASE_DB_SCHEMA"] == f"proj_{slug}"
        # attaching again is idempotent and gives a fresh lease
        again = example.attach_database(executor, slug, user)
        assert again is not None and again["SUPABASE_ACCESS_TOKEN"] != env["SUPABASE_ACCESS_TOKEN"]
        described = executor.execute("describe_database_project", {"project": slug})
        assert [g["principal"]["id"] for g in described["grants"]] == [user]
        assert described["active_leases"] == 2
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        user_role, search_path = conn.execute("select current_user, current_setting('search_path')").fetchone()  # type: ignore[misc]
    assert user_role.startswith("lease_") and search_path == f"proj_{slug}"
    assert admin.value("select pg_has_role(%s, %s, 'member')", (user_role, f"proj_{slug}_authenticated")) is True


def test_async_attach_from_env(example: ModuleType, stack: Any, slug: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_CONNECTOR_CONFIG", json.dumps(connector_config(stack)))
    user = str(uuid.uuid4())

    async def main() -> Any:
        with example.executor_factory() as executor:
            return await asyncio.gather(
                example.attach_database_async(executor, slug, user, "project_viewer"),
                example.attach_database_async(executor, f"{slug}-2", user, "project_owner"),
            )

    viewer, owner = asyncio.run(main())
    assert viewer["SUPABASE_DB_SCHEMA"] == f"proj_{slug}" and owner["SUPABASE_DB_SCHEMA"] == f"proj_{slug}_2"
    with psycopg.connect(viewer["DATABASE_URL"], autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_detach(example: ModuleType, stack: Any, slug: str) -> None:
    with example.executor_factory({"supabase_connector": connector_config(stack)}) as executor:
        env = example.attach_database(executor, slug, str(uuid.uuid4()))
        assert env is not None
        removed = example.detach_database(executor, slug)
        assert removed["state"] == "archived" and len(removed["revoked_leases"]) == 1
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(env["DATABASE_URL"], connect_timeout=5).close()
