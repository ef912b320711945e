#!/usr/bin/env python3
"""Per-call overhead of the Python bindings over the Rust crate.

The operation is a no-op re-upsert (``upsert_database_project_access`` with
``issue_lease: false`` on a project that is already in its desired state):
the connector inspects, finds nothing to change, writes its audit row and
returns ~1 KB of JSON, so the call is short and I/O-bound.

How it is measured, honestly: every call goes through
``execute_timed``, which returns the result together with the seconds the
native side spent on it, timed with ``Instant`` inside the GIL-free block
(parse the params JSON, ``Connector::execute`` — the same future the Rust
API runs —, serialise the result). The Python layer's overhead of that call
is its wall time minus that Rust time: dict → JSON, the pyo3 call, releasing
and re-taking the GIL, handing log records to ``logging``, JSON → dict.
Both numbers come from the same call, so the server's noise cancels out
instead of being compared across runs.

Printed (p50 and p95 over ``--samples`` calls, after a warm-up):

* ``SupabaseExecutor.execute_timed``: wall, Rust part, and overhead;
* the native class called directly with prebuilt JSON text (no dict
  conversion): what the pyo3 boundary and GIL hand-off alone cost;
* ``SupabaseExecutor.execute`` wall time, interleaved with the above, to
  show the timed variant costs the same as the public call;
* the "upsert (no-op)" rows of ``bench/RESULTS.md`` when the Rust benchmark
  (``supabase-connector-bench``) has written it: a separate run, for
  orientation, not for subtraction.

The build profile of the installed wheel is printed too: ``maturin build``
without ``--release`` gives a debug build, whose Rust part is slower (the
overhead, mostly Python-side, much less so). Logging is left unconfigured
(the package's ``NullHandler``): the connector's one INFO record per call
is filtered by ``isEnabledFor`` before a record is made.

    python bench/python_overhead.py                   # starts a PostgreSQL 15 + OpenBao stack
    python bench/python_overhead.py --pg 18 --samples 2000
    python bench/python_overhead.py --stack-dir DIR   # a stack from tests/stack/stack.py up --dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "stack"))

from stack import Stack  # noqa: E402

from supabase_connector import SupabaseExecutor, _native, create_executor  # noqa: E402


def pct(values: List[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def config(stack: Stack) -> Dict[str, Any]:
    return {
        "database": {"url": stack.info["runtime_url_nopw"], "sslmode": "disable", "pool_size": 4},
        "openbao": {"addr": stack.info["bao_addr"], "token": stack.info["bao_token"]},
        "api": {"url": "http://kong:8000"},
    }


def bootstrap(stack: Stack) -> None:
    binary = os.environ.get("SUPABASE_CONNECTOR_BIN") or next(
        (str(p) for p in (ROOT / "target" / "release" / "supabase-connector", ROOT / "target" / "debug" / "supabase-connector") if p.exists()),
        "supabase-connector",
    )
    subprocess.run([binary, "bootstrap", "--database-url", stack.info["admin_url"], "--output", "json"],
                   check=True, capture_output=True, text=True)


def measure(samples: int, calls: Dict[str, Callable[[], Tuple[float, float]]]) -> Dict[str, Tuple[List[float], List[float]]]:
    """Interleave the variants call by call; each returns (wall, rust) seconds."""
    out: Dict[str, Tuple[List[float], List[float]]] = {name: ([], []) for name in calls}
    for _ in range(samples):
        for name, call in calls.items():
            wall, rust = call()
            out[name][0].append(wall)
            out[name][1].append(rust)
    return out


def run(executor: SupabaseExecutor, cfg: Dict[str, Any], samples: int) -> None:
    project = f"bench{uuid.uuid4().hex[:10]}"
    params = {"project": project, "issue_lease": False}
    executor.execute("upsert_database_project_access", params)
    native = _native.NativeExecutor(json.dumps(cfg))
    text = json.dumps(params)
    clock = time.perf_counter

    def timed() -> Tuple[float, float]:
        t = clock()
        result, rust = executor.execute_timed("upsert_database_project_access", params)
        wall = clock() - t
        assert result["changed"] is False
        return wall, rust

    def direct() -> Tuple[float, float]:
        t = clock()
        _, rust = native.execute_timed("upsert_database_project_access", text)
        return clock() - t, rust

    def public() -> Tuple[float, float]:
        t = clock()
        executor.execute("upsert_database_project_access", params)
        return clock() - t, float("nan")

    calls = {"execute_timed": timed, "native direct": direct, "execute": public}
    measure(max(20, samples // 10), calls)  # warm-up: pools, secrets cache, code paths
    data = measure(samples, calls)
    native.close()

    us = 1e6
    print(f"no-op upsert, {samples} samples per variant, wheel build: {_native.BUILD_PROFILE}, Python {sys.version.split()[0]}")
    print(f"{'call':<16} {'wall p50':>10} {'rust p50':>10} {'overhead p50':>13} {'overhead p95':>13}   (microseconds)")
    for name, (wall, rust) in data.items():
        if name == "execute":
            print(f"{name:<16} {pct(wall, 50) * us:>10.1f} {'-':>10} {'-':>13} {'-':>13}")
            continue
        over = [w - r for w, r in zip(wall, rust)]
        print(f"{name:<16} {pct(wall, 50) * us:>10.1f} {pct(rust, 50) * us:>10.1f} {pct(over, 50) * us:>13.1f} {pct(over, 95) * us:>13.1f}")
    wall, rust = data["execute_timed"]
    share = statistics.median([(w - r) / w for w, r in zip(wall, rust)]) * 100
    print(f"Python layer share of an execute call (p50): {share:.1f} %")
    results = ROOT / "bench" / "RESULTS.md"
    if results.exists():  # the Rust benchmark's own figure: another run, for orientation only
        for line in results.read_text().splitlines():
            if "upsert (no-op)" in line:
                print(f"Rust benchmark ({results.relative_to(ROOT)}, separate run): {line.strip()}")


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default="15", choices=["15", "18"])
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--stack-dir", help="use a running stack instead of starting one")
    args = p.parse_args(argv)
    stack = Stack.load(args.stack_dir) if args.stack_dir else Stack.up(pg=args.pg)
    try:
        if not args.stack_dir:
            bootstrap(stack)
        cfg = config(stack)
        with create_executor(cfg) as executor:
            run(executor, cfg, args.samples)
    finally:
        if not args.stack_dir:
            stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
