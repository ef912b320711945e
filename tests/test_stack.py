"""Issue 3: the ephemeral stack itself. Two stacks at once get their own
ports and directories; stopping leaves no process and no directory; the
database is shaped like Supabase's and OpenBao holds the seeded secrets."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg

from conftest import ROOT, VERSIONS
from stack import Stack

SCRIPT = ROOT / "tests" / "stack" / "stack.py"


def processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eo" not in line]


def test_two_stacks_at_once_then_clean_stop() -> None:
    version = VERSIONS[0]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        stacks = list(pool.map(lambda _: Stack.up(pg=version), range(2)))
    try:
        assert stacks[0].port != stacks[1].port and stacks[0].bao_port != stacks[1].bao_port
        assert stacks[0].dir != stacks[1].dir
        for s in stacks:
            with psycopg.connect(s.runtime_url) as conn:
                assert conn.execute("select current_user, (select rolsuper from pg_roles where rolname = current_user)").fetchone() == ("postgres", False)
    finally:
        for s in stacks:
            s.down()
    for s in stacks:
        assert not Path(s.dir).exists()
        assert processes_mentioning(s.dir) == []
        assert processes_mentioning(f"127.0.0.1:{s.bao_port}") == []


def test_cli_up_env_down() -> None:
    up = subprocess.run([sys.executable, str(SCRIPT), "up", "--pg", VERSIONS[0]], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    facts = json.loads(up.stdout)
    try:
        env = subprocess.run([sys.executable, str(SCRIPT), "env", facts["dir"]], capture_output=True, text=True, check=True).stdout
        assert f"export BAO_ADDR='{facts['bao_addr']}'" in env
        req = urllib.request.Request(
            f"{facts['bao_addr']}/v1/secret/data/connectors/supabase", headers={"X-Vault-Token": facts["bao_token"]}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            data = json.load(resp)["data"]["data"]
        for key in ("JWT_SECRET", "SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY", "POSTGRES_PASSWORD", "SECRET_KEY_BASE",
                    "VAULT_ENC_KEY", "PG_META_CRYPTO_KEY"):
            assert data[key], key
        assert data["POSTGRES_PASSWORD"] == facts["postgres_password"]
    finally:
        down = subprocess.run([sys.executable, str(SCRIPT), "down", facts["dir"]], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not os.path.exists(facts["dir"])
    assert processes_mentioning(facts["dir"]) == []


def test_database_is_shaped_like_supabase(stack: Stack) -> None:
    with psycopg.connect(stack.admin_url) as conn:
        roles = dict(
            (r[0], r[1:])
            for r in conn.execute(
                "select rolname, rolsuper, rolcanlogin, rolinherit, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
                "from pg_roles where rolname in ('supabase_admin', 'postgres', 'anon', 'authenticated', 'service_role', 'authenticator')"
            ).fetchall()
        )
        assert roles["supabase_admin"][0] is True
        assert roles["postgres"] == (False, True, True, True, True, True, True)
        assert roles["anon"] == (False, False, False, False, False, False, False)
        assert roles["authenticated"] == (False, False, False, False, False, False, False)
        assert roles["service_role"] == (False, False, False, False, False, False, True)
        assert roles["authenticator"] == (False, True, False, False, False, False, False)
        for api_role in ("anon", "authenticated", "service_role"):
            assert conn.execute("select pg_has_role('authenticator', %s, 'MEMBER')", (api_role,)).fetchone() == (True,)
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": "00000000-0000-4000-8000-00000000a11c", "role": "authenticated"}),))
        assert conn.execute("select auth.uid()::text, auth.role(), auth.jwt() ->> 'role'").fetchone() == (
            "00000000-0000-4000-8000-00000000a11c", "authenticated", "authenticated")
    # password auth over TCP: a wrong password is refused
    bad = stack.runtime_url.replace(stack.postgres_password, "wrong")
    try:
        psycopg.connect(bad).close()
        raise AssertionError("a wrong password was accepted")
    except psycopg.OperationalError as e:
        assert "password authentication failed" in str(e)
