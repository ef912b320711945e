"""The Python surface returns what the CLI returns, for every action.

Two ways to compare:

* same input, same state: the outputs must be equal as JSON, with no
  masking at all (the catalog, plans of `dry_run`, describe, verify, errors);
* twin projects: one scenario is played through the CLI on project A and
  through Python on project B, step by step. Outputs must be equal once A's
  slug is written as B's and the values that differ by nature are masked
  (lease ids by order of appearance, tokens, passwords, lease role names,
  timestamps): the masks keep the key and its type, so a missing or extra
  field still fails.

Errors are compared the same way, as `{"code", "message", "details"}` plus
the CLI's exit status against the Python exception class (docs/reference.md#errors).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from conftest import cli, connector_config, new_slug
from supabase_connector import (
    ACTIONS,
    Conflict,
    ConnectorError,
    DatabaseUnavailable,
    Forbidden,
    InvalidParams,
    MigrationFailed,
    NotFound,
    PreconditionFailed,
    SecretsUnavailable,
    SupabaseExecutor,
)

#: Exit status and exception class per code (docs/reference.md#errors).
EXIT = {
    "internal": (1, ConnectorError),
    "invalid_params": (2, InvalidParams),
    "not_found": (3, NotFound),
    "conflict": (4, Conflict),
    "forbidden": (5, Forbidden),
    "secrets_unavailable": (6, SecretsUnavailable),
    "database_unavailable": (7, DatabaseUnavailable),
    "migration_failed": (8, MigrationFailed),
    "precondition_failed": (9, PreconditionFailed),
}

U1 = "00000000-0000-4000-8000-0000000000a1"
U2 = "00000000-0000-4000-8000-0000000000b2"
KNOWN_UUIDS = {U1, U2}

Outcome = Tuple[int, Any]


def run_cli(stack: Any, action: str, params: Any) -> Outcome:
    """(0, result) or (exit status, the error object printed on stderr)."""
    proc = cli("run", action, "--params", json.dumps(params), "--output", "json", config=connector_config(stack))
    if proc.returncode == 0:
        return 0, json.loads(proc.stdout)
    start = proc.stderr.rfind('{\n  "error"')
    assert start >= 0, proc.stderr
    return proc.returncode, json.loads(proc.stderr[start:])["error"]


def run_py(executor: SupabaseExecutor, action: str, params: Any) -> Outcome:
    """The same shape from Python; the exit status is the one of the exception's code."""
    try:
        return 0, executor.execute(action, params)
    except ConnectorError as err:
        status, cls = EXIT[err.code]
        assert type(err) is cls, f"{err.code} raised as {type(err).__name__}"
        return status, {"code": err.code, "message": err.message, "details": err.details}


# --------------------------------------------------------------- masking

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LEASE_ROLE_RE = re.compile(r"lease_[0-9a-f]{32}")
#: Values that differ between two runs by nature: masked by key.
VOLATILE_KEYS = {
    "access_token", "publishable_token", "password", "url_with_password",
    "SUPABASE_ACCESS_TOKEN", "SUPABASE_PUBLISHABLE_TOKEN", "DATABASE_URL",
    "elapsed_ms", "checksum_time",
}


class Masker:
    """Masks one side's volatile values; lease ids become `<lease#n>` in
    order of first appearance, so the two sides' ids line up."""

    def __init__(self) -> None:
        self.ids: Dict[str, str] = {}

    def _id(self, value: str) -> str:
        return self.ids.setdefault(value, f"<lease#{len(self.ids)}>")

    def _text(self, value: str) -> str:
        value = UUID_RE.sub(lambda m: m.group(0) if m.group(0) in KNOWN_UUIDS else self._id(m.group(0)), value)
        return LEASE_ROLE_RE.sub(
            lambda m: self._id(str(uuid.UUID(m.group(0)[len("lease_"):]))), value
        )

    def __call__(self, value: Any, key: Optional[str] = None) -> Any:
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            out = [self(v) for v in value]
            if out and all(isinstance(v, str) and v.startswith("<lease#") for v in out):
                out.sort()
            return out
        if isinstance(value, str):
            if key in VOLATILE_KEYS or (key or "").endswith("_at"):
                return f"<{key}>"
            if key == "url" and "@" in value:
                return "<url with credentials>"
            return self._text(value)
        return value


def differences(x: Any, y: Any, path: str = "") -> List[str]:
    """Where two JSON values differ, as pointers with both sides."""
    if isinstance(x, dict) and isinstance(y, dict):
        return [d for k in sorted(set(x) | set(y)) for d in differences(x.get(k, "<missing>"), y.get(k, "<missing>"), f"{path}/{k}")]
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        return [d for i, (u, v) in enumerate(zip(x, y)) for d in differences(u, v, f"{path}/{i}")]
    return [] if x == y else [f"{path}: {x!r} != {y!r}"]


def twin_text(value: Any, a: str, b: str) -> Any:
    """A's output written as if it were about B."""
    return json.loads(json.dumps(value).replace(a, b).replace(a.replace("-", "_"), b.replace("-", "_")))


def stable(plan: Any) -> Any:
    """A plan with what each run draws anew (a new lease's id, its times)
    replaced by placeholders: the rest must match to the byte."""
    text = json.dumps(plan)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", "<uuid>", text)
    text = re.sub(r"lease_[0-9a-f]{32}", "lease_<id>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "<time>", text)
    return json.loads(text)


# --------------------------------------------------------------- same input


def test_catalog_is_the_clis(stack: Any, executor: SupabaseExecutor) -> None:
    proc = cli("catalog", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert executor.catalog() == json.loads(proc.stdout)
    assert ACTIONS == list(json.loads(proc.stdout)["actions"])


@pytest.mark.parametrize(
    "action, params",
    [
        ("upsert_database_project_access", {"project": "{slug}", "tenant_code": "deny"}),
        ("upsert_database_team_access", {"project": "{slug}", "team_id": "t", "platform_role": "team_member", "members": [U1]}),
        ("upsert_database_access", {"project": "{slug}", "principal": {"type": "user", "id": U1}, "platform_role": "maintainer"}),
        ("issue_database_lease", {"project": "{slug}", "principal": {"type": "service", "id": "project"}}),
        ("revoke_database_access", {"project": "{slug}", "principal": {"type": "user", "id": U2}}),
        ("revoke_database_team_access", {"project": "{slug}", "team_id": "none"}),
        ("remove_database_project", {"project": "{slug}", "drop_data": True}),
        ("apply_database_migrations", {"project": "{slug}", "migrations": [{"version": "1", "name": "t", "sql": "create table t (id int)"}]}),
        ("verify_database_project", {"project": "{slug}", "repair": True}),
    ],
)
def test_plans_are_identical(stack: Any, executor: SupabaseExecutor, project: Dict[str, Any], action: str, params: Dict[str, Any]) -> None:
    """`dry_run` on an existing project: the plan (typed changes and SQL) is
    the same through both, byte for byte; the CLI's `plan` command too."""
    params = json.loads(json.dumps(params).replace("{slug}", project["project"]))
    status, from_cli = run_cli(stack, action, {**params, "dry_run": True})
    assert status == 0, from_cli
    assert stable(executor.execute(action, {**params, "dry_run": True})) == stable(from_cli)
    proc = cli("plan", action, "--params", json.dumps(params), "--output", "json", config=connector_config(stack))
    assert proc.returncode == 0, proc.stderr
    assert stable(json.loads(proc.stdout)) == stable(from_cli)
    if action != "verify_database_project":  # a clean project has nothing to repair: the report
        assert from_cli.get("dry_run") is True


def test_reads_are_identical(stack: Any, executor: SupabaseExecutor, project: Dict[str, Any]) -> None:
    slug = project["project"]
    for action, params in [
        ("describe_database_project", {"project": slug}),
        ("verify_database_project", {"project": slug}),
        ("upsert_database_project_access", {"project": slug, "issue_lease": False}),  # a no-op re-upsert
        ("reap_expired_leases", {"dry_run": True}),
    ]:
        for _ in range(3):  # reap sees the whole server: retry if a lease expired in between
            status, from_cli = run_cli(stack, action, params)
            assert status == 0, from_cli
            if executor.execute(action, params) == from_cli:
                break
        else:
            pytest.fail(f"{action}: Python and CLI disagree")


@pytest.mark.parametrize(
    "action, params",
    [
        ("describe_database_project", {"project": "Not A Slug", "extra": 1}),
        ("describe_database_project", [1, 2]),
        ("describe_database_project", "acme"),
        ("describe_database_project", {}),
        ("no_such_action", {}),
        ("issue_database_lease", {"project": "acme", "principal": {"type": "robot", "id": "x"}}),
        ("upsert_database_access", {"project": "acme", "principal": {"type": "user", "id": "not-a-uuid"}, "platform_role": "root"}),
        ("issue_database_lease", {"project": "acme", "principal": {"type": "service", "id": "project"}, "lease_ttl_seconds": 0}),
        ("describe_database_project", {"project": "{missing}"}),
        ("renew_database_lease", {"lease_id": "00000000-0000-4000-8000-00000000dead"}),
        ("revoke_database_lease", {"lease_id": "not-a-uuid"}),
        ("apply_database_migrations", {"project": "{missing}", "migrations": [{"version": "1", "name": "x", "sql": "begin; commit;"}]}),
    ],
)
def test_errors_are_identical(stack: Any, executor: SupabaseExecutor, action: str, params: Any) -> None:
    params = json.loads(json.dumps(params).replace("{missing}", new_slug("missing")))
    from_cli = run_cli(stack, action, params)
    assert from_cli[0] != 0
    assert run_py(executor, action, params) == from_cli


# --------------------------------------------------------------- twins


def scenario(slug: str) -> List[Tuple[str, Callable[[List[Any]], Any]]]:
    """Every action once or more; a step's params may use earlier results."""
    service = {"type": "service", "id": "project"}
    m1 = {"version": "20240101000000", "name": "items", "sql": "create table items (id bigint primary key, owner uuid default auth.uid());"}
    m2 = {"version": "20240102000000", "name": "broken", "sql": "create table half (id int);\nselect * from missing_table;"}
    return [
        ("upsert_database_project_access", lambda r: {"project": slug, "dry_run": True}),
        ("upsert_database_project_access", lambda r: {"project": slug, "lease_ttl_seconds": 600}),
        ("upsert_database_project_access", lambda r: {"project": slug, "issue_lease": False}),
        ("upsert_database_project_access", lambda r: {"project": slug, "expose": False, "tenant_code": "deny", "dry_run": True}),
        ("upsert_database_team_access", lambda r: {"project": slug, "team_id": "team-1", "platform_role": "project_viewer", "members": [U1]}),
        ("upsert_database_access", lambda r: {"project": slug, "principal": {"type": "user", "id": U2}, "platform_role": "project_contributor"}),
        ("issue_database_lease", lambda r: {"project": slug, "principal": {"type": "user", "id": U1}}),
        ("issue_database_lease", lambda r: {"project": slug, "principal": service, "database": False, "lease_ttl_seconds": 120}),
        ("renew_database_lease", lambda r: {"lease_id": r[6][1]["lease"]["lease_id"], "ttl_seconds": 300}),
        ("revoke_database_lease", lambda r: {"lease_id": r[6][1]["lease"]["lease_id"]}),
        ("revoke_database_lease", lambda r: {"lease_id": r[6][1]["lease"]["lease_id"]}),
        ("renew_database_lease", lambda r: {"lease_id": r[6][1]["lease"]["lease_id"]}),
        ("apply_database_migrations", lambda r: {"project": slug, "migrations": [m1]}),
        ("apply_database_migrations", lambda r: {"project": slug, "migrations": [m1]}),
        ("apply_database_migrations", lambda r: {"project": slug, "migrations": [m1, m2]}),
        ("apply_database_migrations", lambda r: {"project": slug, "migrations": [dict(m1, sql=m1["sql"] + " ")]}),
        ("verify_database_project", lambda r: {"project": slug}),
        ("describe_database_project", lambda r: {"project": slug}),
        ("revoke_database_access", lambda r: {"project": slug, "principal": {"type": "user", "id": U2}}),
        ("revoke_database_team_access", lambda r: {"project": slug, "team_id": "team-1"}),
        ("issue_database_lease", lambda r: {"project": slug, "principal": {"type": "user", "id": U1}}),
        ("remove_database_project", lambda r: {"project": slug, "dry_run": True}),
        ("remove_database_project", lambda r: {"project": slug}),
        ("describe_database_project", lambda r: {"project": slug}),
        ("issue_database_lease", lambda r: {"project": slug, "principal": service}),
        ("remove_database_project", lambda r: {"project": slug, "drop_data": True}),
        ("describe_database_project", lambda r: {"project": slug}),
    ]


def test_twin_projects_every_action(stack: Any, executor: SupabaseExecutor) -> None:
    a, b = new_slug("twa"), new_slug("twb")
    steps_a, steps_b = scenario(a), scenario(b)
    done_a: List[Outcome] = []
    done_b: List[Outcome] = []
    mask_a, mask_b = Masker(), Masker()
    for i, ((action, params_a), (_, params_b)) in enumerate(zip(steps_a, steps_b)):
        done_a.append(run_cli(stack, action, params_a(done_a)))
        done_b.append(run_py(executor, action, params_b(done_b)))
        expected = mask_a(twin_text(done_a[-1], a, b))
        got = mask_b(list(done_b[-1]))
        assert got == expected, f"step {i} {action} (Python != CLI): {differences(got, expected)}"
    covered = {action for action, _ in steps_a} | {"reap_expired_leases"}  # reap: test_reads_are_identical
    assert covered == set(ACTIONS)
    statuses = {s for s, _ in done_b}
    assert statuses == {0, 3, 4, 5, 8}, statuses  # not_found, conflict, forbidden, migration_failed on the way
