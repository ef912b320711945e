"""Issue 9: the demo and the operator CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from conftest import BIN, cli, connector_config, new_slug

SUBCOMMANDS = ["bootstrap", "run", "plan", "catalog", "verify", "reap", "migrate", "demo", "completions"]


def run_demo(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("BAO_ADDR", None)
    return subprocess.run([BIN, "demo", *args], capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)


def stack_dir(stderr: str) -> str:
    match = re.search(r"down (\S+sbstack-\S+)", stderr)
    assert match, stderr
    return match.group(1)


def leftovers(directory: str) -> Dict[str, Any]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return {"dir": Path(directory).exists(), "processes": [p for p in ps.splitlines() if directory in p and "ps -eo" not in p]}


@pytest.fixture(scope="module")
def demo() -> Iterator[subprocess.CompletedProcess]:
    yield run_demo()


def test_demo_runs_to_completion_and_cleans_up(demo: subprocess.CompletedProcess) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    for step in ("bootstrap", "upsert_database_project_access acme", "apply_database_migrations globex", "revoke_database_lease"):
        assert step in out
    assert "Every cell matched the contract" in out
    assert re.search(r"alice's token after revoke:\s+DENIED", out)
    assert leftovers(stack_dir(demo.stderr)) == {"dir": False, "processes": []}


def test_demo_masks_secrets(demo: subprocess.CompletedProcess) -> None:
    env_section = demo.stdout.split("The env a workspace of acme gets", 1)[1]
    assert "masked" in env_section
    # no token and no connection string with a password anywhere in the output
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", demo.stdout)
    assert not re.search(r"postgresql://lease_[0-9a-f]+:[^@\s]+@", demo.stdout)


def test_demo_table_is_measured() -> None:
    """Break one grant on purpose: the demo must see it and fail."""
    sabotage = (
        "grant usage on schema proj_globex to proj_acme_authenticated; "
        "grant select on all tables in schema proj_globex to proj_acme_authenticated"
    )
    proc = run_demo("--sabotage-sql", sabotage)
    assert proc.returncode != 0
    assert "UNEXPECTED" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if "acme alice (authenticated)" in line)
    # globex.notes, reached through the sabotaged grant, is flagged; the rest is as expected
    assert re.search(r"ALLOWED\s+ALLOWED !!\s+DENIED\s+DENIED", row), row
    assert leftovers(stack_dir(proc.stderr)) == {"dir": False, "processes": []}


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help(sub: str | None) -> None:
    args = [BIN] + ([sub] if sub else []) + ["--help"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    if sub is None:
        for s in SUBCOMMANDS:
            assert s in proc.stdout
    else:
        assert len(proc.stdout.splitlines()) >= 3


def test_completions() -> None:
    proc = subprocess.run([BIN, "completions", "bash"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "complete" in proc.stdout and "supabase-connector" in proc.stdout


def test_output_json_parses(stack: Any) -> None:
    config = connector_config(stack)
    slug = new_slug("cli")
    catalog = json.loads(cli("catalog", "--output", "json", check=True).stdout)
    assert "upsert_database_project_access" in json.dumps(catalog)
    plan = json.loads(cli("plan", "upsert_database_project_access", "--params", json.dumps({"project": slug}), "--output", "json",
                          config=config, check=True).stdout)
    assert plan["dry_run"] is True and plan["statements"]
    created = json.loads(cli("run", "upsert_database_project_access", "--params", json.dumps({"project": slug, "issue_lease": False}),
                             "--output", "json", config=config, check=True).stdout)
    assert created["created"] is True
    verify = json.loads(cli("verify", "--project", slug, "--output", "json", config=config, check=True).stdout)
    assert verify["clean"] is True
    table = cli("verify", "--project", slug, "--output", "table", config=config, check=True).stdout
    assert slug in table


def cli_error(stderr: str) -> Dict[str, Any]:
    """The `{"error": …}` object the CLI prints on stderr (after any log lines)."""
    start = stderr.index('{\n  "error"') if '{\n  "error"' in stderr else stderr.index('{"error"')
    return dict(json.loads(stderr[start:])["error"])


def test_errors_are_json_with_exit_codes(stack: Any) -> None:
    config = connector_config(stack)
    bad = cli("run", "upsert_database_project_access", "--params", json.dumps({"project": "Bad Slug"}), config=config)
    assert bad.returncode == 2
    err = cli_error(bad.stderr)
    assert err["code"] == "invalid_params" and err["details"]["violations"][0]["path"] == "/project"
    missing = cli("run", "describe_database_project", "--params", json.dumps({"project": new_slug("none")}), config=config)
    assert missing.returncode == 3
    assert cli_error(missing.stderr)["code"] == "not_found"


def test_json_logs_carry_spans_not_secrets(stack: Any) -> None:
    config = connector_config(stack)
    slug = new_slug("log")
    proc = cli("--log-format", "json", "--verbose", "run", "upsert_database_project_access", "--params", json.dumps({"project": slug}),
               config=config, check=True)
    lease = json.loads(proc.stdout)["lease"]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert events, proc.stderr
    assert any(slug in json.dumps(e) for e in events)
    for secret in (lease["database"]["password"], lease["api"]["access_token"], lease["api"]["publishable_token"],
                   stack.secrets["JWT_SECRET"], stack.bao_token, stack.postgres_password):
        assert secret not in proc.stderr
