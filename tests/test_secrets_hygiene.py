"""Issue 10: secrets hygiene (docs/security.md#secrets-hygiene: no secret, password or token in a
log line, an error message, an audit row or a `Debug` print).

One module-scoped transcript runs a spread of actions and failures through
the CLI (`--log-format json --verbose`, plus one run with every crate's log
at TRACE) and through the Python executor (its `logging` records), and
records every secret that exists along the way: the stack's secrets, the
OpenBao token and AppRole secret id, the database passwords, every lease's
password, connection string and tokens, an isolated project's API login
password, and the wrong credentials fed to the failures. The tests then
look for each of them in the logs, the error messages, the audit rows, the
registry, the server log, the stored role passwords, and the results (a
result may hold its own lease's credentials and the central publishable
key, nothing else)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import urllib.request
import uuid
from typing import Any, Dict, Iterator, List, Optional, Set

import pytest

from conftest import BIN, Admin, connector_config, info, new_slug
from supabase_connector import ConnectorError, SupabaseExecutor, create_executor

ALICE = "00000000-0000-4000-8000-00000000a11c"
GOOD_MIGRATION = {"version": "1", "name": "init", "sql": "create table notes (id int primary key, body text)"}
BAD_MIGRATION = {"version": "2", "name": "broken", "sql": "insert into notes values (1, 'a'); insert into notes values (1, 'b')"}


class Transcript:
    def __init__(self) -> None:
        self.logs: List[str] = []  # log lines, CLI stderr, Python log records
        self.errors: List[str] = []  # error messages and details, CLI error JSON, repr() of exceptions
        self.results: List[tuple] = []  # (result JSON text, secrets it may hold)
        self.secrets: Set[str] = set()
        self.slugs: List[str] = []
        self.audit_from = 0

    def add_secret(self, *values: Optional[str]) -> None:
        for v in values:
            if v and len(v) >= 8:
                self.secrets.add(v)

    def add_lease(self, lease: Optional[Dict[str, Any]]) -> Set[str]:
        """Record a lease's secrets; returns them (what its own result may show)."""
        if not lease:
            return set()
        own = {lease["api"]["access_token"], lease["api"].get("publishable_token"), lease["api"]["apikey"]}
        if lease.get("database"):
            own |= {lease["database"]["password"], lease["database"]["url"]}
        own.discard(None)
        self.add_secret(*own)
        return own


class LogCapture(logging.Handler):
    def __init__(self, sink: List[str]) -> None:
        super().__init__(level=logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name} {record.levelname} {record.getMessage()} {record.__dict__!r}")


def run_cli(t: Transcript, config: Dict[str, Any], *args: str, env: Optional[Dict[str, str]] = None,
            verbose: bool = True) -> subprocess.CompletedProcess:
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    flags = ["--log-format", "json", "--verbose"] if verbose else ["--log-format", "json"]
    try:
        proc = subprocess.run([BIN, "--config", path, *flags, *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(env or {})})
    finally:
        os.unlink(path)
    t.logs.append(proc.stderr)
    if proc.returncode != 0:
        t.errors.append(proc.stderr[proc.stderr.rfind('{\n  "error"'):])
    return proc


def cli_action(t: Transcript, config: Dict[str, Any], action: str, params: Dict[str, Any], ok: bool = True,
               **kw: Any) -> Optional[Dict[str, Any]]:
    """Run an action through the CLI; `ok`: whether it must succeed (else fail)."""
    proc = run_cli(t, config, "run", action, "--params", json.dumps(params), **kw)
    assert (proc.returncode == 0) == ok, (action, proc.returncode, proc.stderr[-3000:])
    if proc.returncode != 0:
        return None
    result: Dict[str, Any] = json.loads(proc.stdout)
    own = t.add_lease(result.get("lease"))
    t.results.append((proc.stdout, own))
    return result


def py_action(t: Transcript, ex: SupabaseExecutor, action: str, params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    try:
        result = ex.execute(action, params)
    except ConnectorError as e:
        t.errors += [str(e), repr(e), json.dumps(e.details), e.message]
        return None
    own = t.add_lease(result.get("lease"))
    t.results.append((json.dumps(result) + repr(result), own))
    return result


def bao_read(stack: Any, path: str) -> Dict[str, Any]:
    req = urllib.request.Request(f"{info(stack, 'bao_addr')}/v1/secret/data/{path}",
                                 headers={"X-Vault-Token": info(stack, "bao_token")})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return dict(json.load(resp)["data"]["data"])


@pytest.fixture(scope="module")
def transcript(stack: Any, admin: Admin) -> Iterator[Transcript]:
    t = Transcript()
    t.audit_from = int(admin.value("select coalesce(max(id), 0) from supabase_connector.audit_log") or 0)
    for key, v in info(stack, "secrets").items():
        t.add_secret(str(v))
    t.add_secret(info(stack, "bao_token"), info(stack, "approle_secret_id"), info(stack, "admin_password"),
                 info(stack, "postgres_password"), info(stack, "authenticator_password"))
    wrong_token = "s.wrong-" + uuid.uuid4().hex
    wrong_db_password = "wrongpw-" + uuid.uuid4().hex
    wrong_secret_id = str(uuid.uuid4())
    t.add_secret(wrong_token, wrong_db_password, wrong_secret_id)

    cfg = connector_config(stack)
    a, b, iso = new_slug("ha"), new_slug("hb"), new_slug("hi")
    t.slugs += [a, b, iso]

    # ---- the CLI, JSON logs, verbose
    first = cli_action(t, cfg, "upsert_database_project_access", {"project": a})
    assert first and first["lease"]
    second = cli_action(t, cfg, "issue_database_lease", {"project": a, "principal": {"type": "project"}})
    assert second
    renewed = cli_action(t, cfg, "renew_database_lease", {"lease_id": second["lease"]["lease_id"], "ttl_seconds": 600})
    assert renewed and renewed["lease"]["database"]["password"] != second["lease"]["database"]["password"]
    assert cli_action(t, cfg, "upsert_database_access",
                      {"project": a, "principal": {"type": "user", "id": ALICE}, "platform_role": "project_contributor"})
    assert cli_action(t, cfg, "upsert_database_team_access",
                      {"project": a, "team_id": "ops", "platform_role": "team_member", "members": [ALICE]})
    assert cli_action(t, cfg, "apply_database_migrations", {"project": a, "migrations": [GOOD_MIGRATION]})
    cli_action(t, cfg, "apply_database_migrations", {"project": a, "migrations": [GOOD_MIGRATION, BAD_MIGRATION]}, ok=False)
    plan = run_cli(t, cfg, "plan", "upsert_database_project_access", "--params", json.dumps({"project": b}))
    assert plan.returncode == 0
    t.results.append((plan.stdout, set()))
    for args in (["verify", "--project", a], ["reap"]):
        proc = run_cli(t, cfg, *args)
        assert proc.returncode == 0, proc.stderr
        t.results.append((proc.stdout, set()))
    assert cli_action(t, cfg, "describe_database_project", {"project": a})
    isolated = cli_action(t, cfg, "upsert_database_project_access", {"project": iso, "isolation": "isolated"})
    assert isolated and isolated["postgrest"]
    pg = isolated["postgrest"]
    t.add_secret(bao_read(stack, pg["db_password"]["path"])[pg["db_password"]["key"]])
    assert cli_action(t, cfg, "revoke_database_lease", {"lease_id": first["lease"]["lease_id"]})
    # failures
    cli_action(t, cfg, "describe_database_project", {"project": new_slug("nx")}, ok=False)
    cli_action(t, cfg, "upsert_database_project_access", {"project": "Bad Slug", "bogus": wrong_token}, ok=False)
    cli_action(t, connector_config(stack, openbao={"token": wrong_token}), "upsert_database_project_access",
               {"project": b}, ok=False)
    bad_db = connector_config(stack)
    bad_db["database"]["url"] = info(stack, "runtime_url_nopw").replace("postgres@", f"postgres:{wrong_db_password}@")
    cli_action(t, bad_db, "describe_database_project", {"project": a}, ok=False)
    approle_cfg = connector_config(stack)
    approle_cfg["openbao"] = {"addr": info(stack, "bao_addr"),
                              "approle": {"role_id": info(stack, "approle_role_id"), "secret_id": wrong_secret_id}}
    cli_action(t, approle_cfg, "issue_database_lease", {"project": a, "principal": {"type": "project"}}, ok=False)
    # every crate's log at TRACE (an operator's SUPABASE_CONNECTOR_LOG), one lease and one AppRole login
    good_approle = connector_config(stack)
    good_approle["openbao"] = {"addr": info(stack, "bao_addr"),
                               "approle": {"role_id": info(stack, "approle_role_id"),
                                           "secret_id": info(stack, "approle_secret_id")}}
    assert cli_action(t, good_approle, "issue_database_lease", {"project": a, "principal": {"type": "project"}},
                      env={"SUPABASE_CONNECTOR_LOG": "trace"})

    # ---- Python, with the connector's logging records captured
    handler = LogCapture(t.logs)
    logger = logging.getLogger("supabase_connector")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        with create_executor(cfg) as ex:
            t.results.append((repr(ex), set()))
            state = py_action(t, ex, "upsert_database_project_access", {"project": b})
            assert state
            lease = py_action(t, ex, "issue_database_lease", {"project": b, "principal": {"type": "project"}})
            assert lease
            assert py_action(t, ex, "renew_database_lease", {"lease_id": lease["lease"]["lease_id"]})
            assert py_action(t, ex, "apply_database_migrations", {"project": b, "migrations": [GOOD_MIGRATION, BAD_MIGRATION]}) is None
            assert py_action(t, ex, "revoke_database_lease", {"lease_id": lease["lease"]["lease_id"]})
            assert py_action(t, ex, "renew_database_lease", {"lease_id": lease["lease"]["lease_id"]}) is None
            assert py_action(t, ex, "issue_database_lease", {"project": b, "principal": {"type": "user", "id": ALICE}}) is None
            assert py_action(t, ex, "verify_database_project", {"project": b})
            assert py_action(t, ex, "upsert_database_project_access", {"project": iso})
        for bad in (connector_config(stack, openbao={"token": wrong_token}), bad_db, approle_cfg):
            with create_executor(bad) as ex:
                t.results.append((repr(ex), set()))
                assert py_action(t, ex, "upsert_database_project_access", {"project": new_slug("hx")}) is None
        try:
            create_executor({"database": {"url": f"postgresql://postgres:{wrong_db_password}@h:x/db", "bogus": 1}})
        except ConnectorError as e:
            t.errors += [str(e), repr(e), json.dumps(e.details)]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    yield t


def leaks(text: str, secrets: Set[str]) -> List[str]:
    return sorted(s[:6] + "…" for s in secrets if s in text)


def test_the_transcript_saw_secrets_and_logs(transcript: Transcript) -> None:
    """The checks below are only worth something if there was something to find."""
    assert len(transcript.secrets) >= 30
    assert sum(len(x) for x in transcript.logs) > 10_000
    assert any('"level":"DEBUG"' in x for x in transcript.logs)  # verbose JSON logs
    assert any("supabase_connector" in x and "DEBUG" in x for x in transcript.logs if not x.startswith("{"))  # Python records
    assert len(transcript.errors) >= 15


def test_logs_carry_no_secret(transcript: Transcript) -> None:
    for text in transcript.logs:
        assert leaks(text, transcript.secrets) == [], text[:2000]


def test_error_messages_carry_no_secret(transcript: Transcript) -> None:
    for text in transcript.errors:
        assert leaks(text, transcript.secrets) == [], text


def test_results_carry_only_their_own_lease(transcript: Transcript) -> None:
    for text, own in transcript.results:
        assert leaks(text, transcript.secrets - own) == [], text[:2000]


def test_audit_rows_carry_no_secret(transcript: Transcript, admin: Admin) -> None:
    rows = admin.rows("select row_to_json(a)::text from supabase_connector.audit_log a where id > %s", (transcript.audit_from,))
    assert len(rows) >= 15
    for (text,) in rows:
        assert leaks(text, transcript.secrets) == [], text[:2000]


def test_registry_carries_no_secret(transcript: Transcript, admin: Admin) -> None:
    tables = [r[0] for r in admin.rows(
        "select format('%I.%I', schemaname, tablename) from pg_tables where schemaname = 'supabase_connector'")]
    assert len(tables) >= 8
    for table in tables:
        for (text,) in admin.rows(f"select row_to_json(t)::text from {table} t"):
            assert leaks(text, transcript.secrets) == [], (table, text[:500])
    # role settings (pgrst.db_schemas, the service leases' `role`) hold no secret either
    for (text,) in admin.rows("select coalesce(array_to_string(setconfig, ','), '') from pg_db_role_setting"):
        assert leaks(text, transcript.secrets) == []


def test_stored_passwords_are_verifiers(transcript: Transcript, admin: Admin) -> None:
    """Lease and isolated-API roles store a SCRAM verifier; the plaintext
    never reached the server, so it is not in its log either."""
    rows = admin.rows(
        "select rolname, rolpassword from pg_authid where rolpassword is not null and "
        "(rolname like 'lease\\_%%' or rolname like 'proj\\_%%\\_authenticator')"
    )
    assert rows
    for name, stored in rows:
        assert stored.startswith("SCRAM-SHA-256$"), name
        assert leaks(stored, transcript.secrets) == [], name


def test_server_log_carries_no_secret(transcript: Transcript, stack: Any) -> None:
    path = info(stack, "pg_log")
    with open(path, errors="replace") as f:
        text = f.read()
    server_side = transcript.secrets - {info(stack, "admin_password"), info(stack, "postgres_password"),
                                        info(stack, "authenticator_password")}
    assert leaks(text, server_side) == []
