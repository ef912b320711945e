"""How a host platform wires the connector into its ``executor_factory``.

The platform builds one executor per process from its own configuration
(a mapping of the keys in docs/reference.md#configuration; every key it
leaves out falls back to the environment: ``SUPABASE_CONNECTOR_DATABASE_URL``,
``BAO_ADDR``, ``BAO_TOKEN``, ``SUPABASE_CONNECTOR_API_URL``) and calls it
when a project attaches the database asset:

1. provision the project (idempotent: a re-attach changes nothing),
2. record the principal's access at its platform role,
3. issue a lease for the principal and hand the workspace its ``env``.

A synchronous and an asyncio variant are shown; the executor is safe to
share between threads and tasks, and releases the GIL while it waits.

Run against a stack started with ``tests/stack/stack.py up``::

    eval "$(python3 tests/stack/stack.py env DIR)"
    python examples/executor_factory.py acme 00000000-0000-4000-8000-00000000a11c
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional

from supabase_connector import Forbidden, SupabaseExecutor, create_executor

#: The platform's own configuration key for the connector's section.
SETTINGS_KEY = "supabase_connector"


def executor_factory(settings: Optional[Mapping[str, Any]] = None) -> SupabaseExecutor:
    """Build the executor from the platform's settings.

    ``settings[SETTINGS_KEY]`` is the connector's config
    (docs/reference.md#configuration), e.g. ``{"database": {"url": ...},
    "openbao": {"addr": ..., "token": ...}, "api": {"url": ...}}``; without it, ``SUPABASE_CONNECTOR_CONFIG`` may
    hold the same as JSON, and anything still missing comes from the
    environment variables listed there."""
    section: Optional[Mapping[str, Any]] = None
    if settings is not None and SETTINGS_KEY in settings:
        section = settings[SETTINGS_KEY]
    elif os.environ.get("SUPABASE_CONNECTOR_CONFIG"):
        loaded: Dict[str, Any] = json.loads(os.environ["SUPABASE_CONNECTOR_CONFIG"])
        section = loaded
    return create_executor(section)


def _principal(user_id: str) -> Dict[str, str]:
    return {"type": "user", "id": user_id}


def attach_database(
    executor: SupabaseExecutor, project: str, user_id: str, platform_role: str = "project_contributor"
) -> Optional[Dict[str, str]]:
    """The database asset is attached to ``project`` and ``user_id`` opens a
    workspace: provision, grant, lease; returns the workspace's environment
    (``SUPABASE_URL``, ``SUPABASE_ANON_KEY``, ``SUPABASE_ACCESS_TOKEN``,
    ``SUPABASE_DB_SCHEMA``, ``DATABASE_URL``), or None when the principal
    ends up without access."""
    executor.execute("upsert_database_project_access", {"project": project, "issue_lease": False})
    executor.execute(
        "upsert_database_access",
        {"project": project, "principal": _principal(user_id), "platform_role": platform_role, "issue_lease": False},
    )
    try:
        result = executor.execute("issue_database_lease", {"project": project, "principal": _principal(user_id)})
    except Forbidden:
        return None
    env: Dict[str, str] = result["lease"]["env"]
    return dict(env)


async def attach_database_async(
    executor: SupabaseExecutor, project: str, user_id: str, platform_role: str = "project_contributor"
) -> Optional[Dict[str, str]]:
    """The same for an asyncio platform: no call blocks the event loop."""
    await executor.execute_async("upsert_database_project_access", {"project": project, "issue_lease": False})
    await executor.execute_async(
        "upsert_database_access",
        {"project": project, "principal": _principal(user_id), "platform_role": platform_role, "issue_lease": False},
    )
    try:
        result = await executor.execute_async(
            "issue_database_lease", {"project": project, "principal": _principal(user_id)}
        )
    except Forbidden:
        return None
    env: Dict[str, str] = result["lease"]["env"]
    return dict(env)


def detach_database(executor: SupabaseExecutor, project: str) -> Dict[str, Any]:
    """The asset is detached: revoke every lease and archive (data kept)."""
    return executor.execute("remove_database_project", {"project": project})


def main(argv: List[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} PROJECT USER_UUID", file=sys.stderr)
        return 2
    project, user_id = argv[1], argv[2]
    with executor_factory() as executor:
        env = attach_database(executor, project, user_id)
        print("workspace env (sync):", sorted(env) if env else "no access")
        env = asyncio.run(attach_database_async(executor, project, user_id, "project_viewer"))
        print("workspace env (async):", sorted(env) if env else "no access")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
