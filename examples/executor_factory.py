"""How a host platform wires the connector into its ``executor_factory``.

The platform builds one executor per process from its own configuration
(here: a mapping, with the environment as fallback, contract §7) and calls
it when a project attaches the database asset, and again whenever someone
opens a workspace of the project. Both a synchronous and an asyncio variant
are shown; the executor is safe to share between threads and tasks.

Run against a stack started with ``tests/stack/stack.py up``::

    eval "$(python3 tests/stack/stack.py env DIR)"
    python examples/executor_factory.py acme 00000000-0000-4000-8000-00000000a11c
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Dict, Mapping, Optional

from supabase_connector import Forbidden, SupabaseExecutor, create_executor

#: Keys of the lease's ``env`` a workspace needs; the rest stays with the platform.
WORKSPACE_ENV = ("SUPABASE_URL", "SUPABASE_ANON_KEY", "SUPABASE_ACCESS_TOKEN", "SUPABASE_DB_SCHEMA", "DATABASE_URL")


def executor_factory(settings: Optional[Mapping[str, Any]] = None) -> SupabaseExecutor:
    """Build the executor from the platform's settings; anything missing
    comes from the environment (``SUPABASE_CONNECTOR_DATABASE_URL``,
    ``BAO_ADDR``, ``BAO_TOKEN``, ``SUPABASE_CONNECTOR_API_URL``)."""
    config: Dict[str, Any] = {}
    if settings:
        config.update(settings)
    return create_executor(config or None)


def attach_database(executor: SupabaseExecutor, project: str) -> Dict[str, Any]:
    """The asset is attached: provision (idempotent) and return the project's
    state with its service-class lease, for the project's own pipelines."""
    return executor.execute("upsert_database_project_access", {"project": project})


def open_workspace(executor: SupabaseExecutor, project: str, user_id: str) -> Optional[Dict[str, str]]:
    """A person opens a workspace: a lease at their effective class, reduced
    to the environment the workspace gets. None when they have no access."""
    try:
        result = executor.execute(
            "issue_database_lease",
            {"project": project, "principal": {"type": "user", "id": user_id}},
        )
    except Forbidden:
        return None
    env: Dict[str, str] = result["lease"]["env"]
    return {k: v for k, v in env.items() if k in WORKSPACE_ENV}


async def open_workspace_async(executor: SupabaseExecutor, project: str, user_id: str) -> Optional[Dict[str, str]]:
    """The same for an asyncio platform: the call does not block the loop."""
    try:
        result = await executor.execute_async(
            "issue_database_lease",
            {"project": project, "principal": {"type": "user", "id": user_id}},
        )
    except Forbidden:
        return None
    env: Dict[str, str] = result["lease"]["env"]
    return {k: v for k, v in env.items() if k in WORKSPACE_ENV}


def main(argv: list[str]) -> int:
    project, user_id = argv[1], argv[2]
    with executor_factory({"api": {"url": os.environ.get("SUPABASE_CONNECTOR_API_URL", "http://localhost:8000")}}) as ex:
        state = attach_database(ex, project)
        print(f"project {state['project']}: schema {state['schema']}, lease {state['lease']['lease_id']}")
        ex.execute(
            "upsert_database_access",
            {"project": project, "principal": {"type": "user", "id": user_id}, "platform_role": "project_contributor", "issue_lease": False},
        )
        env = asyncio.run(open_workspace_async(ex, project, user_id))
        print("workspace env:", sorted(env) if env else "no access")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
