"""One executor shared by many threads and asyncio tasks at once, and the
GIL released while the connector waits on the server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Any, Dict, List, Tuple, Union

import pytest

from conftest import connector_config, new_slug
from supabase_connector import NotFound, SupabaseExecutor, create_executor

SERVICE = {"type": "service", "id": "project"}
N = 16


def base(executor: SupabaseExecutor, slug: str) -> None:
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})


def test_16_threads_at_once(executor: SupabaseExecutor, slug: str) -> None:
    """16 threads start together (a barrier), each provisioning its own
    project and taking a lease on a shared one: more callers than pool
    connections (8), all succeed, each gets its own result."""
    base(executor, slug)
    barrier = threading.Barrier(N)

    def one(i: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        barrier.wait(timeout=30)
        own = executor.execute("upsert_database_project_access", {"project": f"{slug}-{i}", "issue_lease": False})
        lease = executor.execute("issue_database_lease", {"project": slug, "principal": SERVICE, "database": i % 2 == 0})
        return own, lease["lease"]

    with concurrent.futures.ThreadPoolExecutor(N) as pool:
        results = list(pool.map(one, range(N)))
    assert [own["project"] for own, _ in results] == [f"{slug}-{i}" for i in range(N)]
    assert all(own["created"] for own, _ in results)
    assert len({lease["lease_id"] for _, lease in results}) == N
    assert [lease["database"] is not None for _, lease in results] == [i % 2 == 0 for i in range(N)]
    assert executor.execute("describe_database_project", {"project": slug})["active_leases"] == N


def test_16_asyncio_tasks_at_once(stack: Any, slug: str, caplog: pytest.LogCaptureFixture) -> None:
    """16 tasks gathered on one loop of a new executor, all in flight at
    once (each waits in a thread of the executor's own: the log records
    say which); the loop keeps ticking meanwhile, and one failing task
    fails alone."""
    executor = create_executor(connector_config(stack))
    base(executor, slug)
    caplog.set_level(logging.INFO, logger="supabase_connector")

    async def main() -> Tuple[List[Union[Dict[str, Any], BaseException]], int, float]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.002)
                ticks += 1

        t = asyncio.create_task(ticker())
        started = time.perf_counter()
        calls = [
            executor.execute_async("issue_database_lease", {"project": slug, "principal": SERVICE, "database": i % 2 == 1})
            for i in range(N - 1)
        ]
        calls.append(executor.execute_async("describe_database_project", {"project": new_slug("missing")}))
        results = await asyncio.gather(*calls, return_exceptions=True)
        elapsed = time.perf_counter() - started
        t.cancel()
        return results, ticks, elapsed

    try:
        results, ticks, elapsed = asyncio.run(main())
    finally:
        executor.close()
    leases = [r for r in results if isinstance(r, dict)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(leases) == N - 1 and len({r["lease"]["lease_id"] for r in leases}) == N - 1
    assert len(errors) == 1 and isinstance(errors[0], NotFound)
    # a loop blocked by the calls would not have ticked while they ran
    assert ticks >= min(5, int(elapsed / 0.002) // 4), (ticks, elapsed)
    threads = {
        r.threadName for r in caplog.records
        if getattr(r, "connector_fields", {}).get("action") == "issue_database_lease"
        and r.connector_fields.get("project") == slug  # type: ignore[attr-defined]
    }
    # several of the executor's threads carried them (a thread freed early
    # may pick up another call, so the exact count depends on scheduling)
    assert len(threads) >= 2 and all(t.startswith("supabase-connector") for t in threads), threads


def test_threads_and_tasks_together(executor: SupabaseExecutor, slug: str) -> None:
    """16 threads and 16 tasks in flight at the same time (32 callers)."""
    base(executor, slug)
    barrier = threading.Barrier(N + 1)

    def threaded(i: int) -> str:
        barrier.wait(timeout=30)
        return str(executor.execute("issue_database_lease", {"project": slug, "principal": SERVICE, "database": False})["lease"]["lease_id"])

    async def tasks() -> List[str]:
        barrier.wait(timeout=30)
        out = await asyncio.gather(*[
            executor.execute_async("issue_database_lease", {"project": slug, "principal": SERVICE, "database": False})
            for _ in range(N)
        ])
        return [str(r["lease"]["lease_id"]) for r in out]

    with concurrent.futures.ThreadPoolExecutor(N) as pool:
        futures = [pool.submit(threaded, i) for i in range(N)]
        from_tasks = asyncio.run(tasks())
        from_threads = [f.result() for f in futures]
    assert len(set(from_threads) | set(from_tasks)) == 2 * N
    assert executor.execute("describe_database_project", {"project": slug})["active_leases"] == 2 * N


def test_gil_is_released_while_waiting(executor: SupabaseExecutor, slug: str) -> None:
    """A migration that sleeps 0.5 s in PostgreSQL: a Python thread keeps
    counting the whole time. Had the call held the GIL, the counter would
    have stood still for 0.5 s; its longest pause stays far below that."""
    base(executor, slug)
    stop = threading.Event()
    state = {"n": 0, "gap": 0.0}

    def count() -> None:
        last = time.perf_counter()
        n, gap = 0, 0.0
        while not stop.is_set():
            now = time.perf_counter()
            gap = max(gap, now - last)
            last = now
            n += 1
        state.update(n=n, gap=gap)

    migration = {"version": "1", "name": "slow", "sql": "select pg_sleep(0.5);"}
    counter = threading.Thread(target=count)
    counter.start()
    try:
        time.sleep(0.02)
        started = time.perf_counter()
        result = executor.execute("apply_database_migrations", {"project": slug, "migrations": [migration]})
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        counter.join()
    assert [m["name"] for m in result["applied"]] == ["slow"]
    assert elapsed >= 0.5
    assert state["gap"] < 0.25, state
    assert state["n"] > 10_000, state
