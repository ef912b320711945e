"""Issue 10: reliability under faults, on a stack of this module's own (the
servers get stopped and secrets rotated, so the session stack is left alone).

- PostgreSQL stopped between actions and restarted in the middle of one:
  `database_unavailable`, nothing half-applied, the retry succeeds.
- The pool exhausted: a clear error after `database.pool_timeout_seconds`.
- A lock held elsewhere on the project: `database_unavailable` after
  `database.lock_timeout_ms`, never a hang (actions and migrations alike).
- OpenBao stopped: `secrets_unavailable`, no fallback, nothing changed;
  revocation still works; back up, the retry succeeds.
- AppRole login instead of a token.
- `JWT_SECRET` rotated in OpenBao: the next lease a running executor issues
  (or renews) is signed with the new secret, old tokens are refused.
- 64 mixed actions on 8 projects at once, then every project verifies clean
  and no lease role is orphaned."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import random
import threading
import time
import urllib.request
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import psycopg
import pytest

import pgrest
from conftest import VERSIONS, bootstrapped_stack, cli, connector_config, new_slug
from stack import Stack, hs256_jwt
from supabase_connector import (
    Conflict,
    DatabaseUnavailable,
    MigrationFailed,
    NotFound,
    SecretsUnavailable,
    SupabaseExecutor,
    create_executor,
)

USERS = [str(uuid.UUID(int=i, version=4)) for i in range(1, 13)]


@pytest.fixture(scope="module", params=VERSIONS, ids=lambda v: f"pg{v}")
def fstack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with bootstrapped_stack(request.param) as s:
        yield s


def config(stack: Stack, **database: Any) -> Dict[str, Any]:
    return connector_config(stack, database=database) if database else connector_config(stack)


@pytest.fixture(scope="module")
def fex(fstack: Stack) -> Iterator[SupabaseExecutor]:
    ex = create_executor(config(fstack))
    yield ex
    ex.close()


def admin_conn(stack: Stack, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(stack.admin_url, autocommit=autocommit)


def value(stack: Stack, sql: str, params: Any = None) -> Any:
    with admin_conn(stack) as c:
        row = c.execute(sql, params).fetchone()
        return row[0] if row else None


def lock_key(name: str) -> int:
    """The connector's advisory lock key (db.rs `lock_key`)."""
    digest = hashlib.sha256(f"supabase_connector:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def wait_for_blocked(stack: Stack, timeout: float = 15.0) -> None:
    """Until a connector backend waits on a lock."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = value(
            stack,
            "select count(*) from pg_stat_activity where application_name like 'supabase-connector%' and wait_event_type = 'Lock'",
        )
        if n:
            return
        time.sleep(0.02)
    raise AssertionError("no connector backend ever waited on a lock")


class Background:
    """Run one call in a thread and keep its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as e:  # noqa: BLE001 (kept for the test to look at)
            self.error = e

    def join(self, timeout: float = 30.0) -> "Background":
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the action hung"
        return self


def clean(ex: SupabaseExecutor, slug: str) -> List[Dict[str, Any]]:
    """Error findings of verify (empty when clean)."""
    out = ex.execute("verify_database_project", {"project": slug})
    return [f for f in out["findings"] if f["severity"] == "error"]


def project_with_table(ex: SupabaseExecutor, stack: Stack) -> str:
    slug = new_slug("f")
    ex.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    with admin_conn(stack) as c:
        c.execute(f"set role proj_{slug}_owner")
        c.execute(f"create table proj_{slug}.t (x int)")
    return slug


def disable_rls(stack: Stack, table: str) -> None:
    """Drift by hand: the connector's event trigger turns RLS back on, so
    this runs with event triggers off (session_replication_role = replica)."""
    with admin_conn(stack) as c:
        c.execute("set session_replication_role = replica")
        c.execute(f"alter table {table} disable row level security")
    assert value(stack, "select relrowsecurity from pg_class where oid = %s::regclass", (table,)) is False


def cli_error(proc: Any) -> Dict[str, Any]:
    """The CLI's error object (stderr ends with it; log lines come before)."""
    return dict(json.loads(proc.stderr[proc.stderr.rindex('{\n  "error"'):])["error"])


def audit_count(stack: Stack, slug: str) -> int:
    return int(value(stack, "select count(*) from supabase_connector.audit_log where project = %s", (slug,)))


def lease_count(stack: Stack, slug: str) -> int:
    return int(value(stack, "select count(*) from supabase_connector.leases where project = %s", (slug,)))


# ------------------------------------------------------------- PostgreSQL


def test_postgres_down_between_actions(fstack: Stack, fex: SupabaseExecutor) -> None:
    slug = new_slug("f")
    fex.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    fstack.stop_postgres()
    try:
        started = time.time()
        with pytest.raises(DatabaseUnavailable):
            fex.execute("describe_database_project", {"project": slug})
        with pytest.raises(DatabaseUnavailable):
            fex.execute("upsert_database_project_access", {"project": new_slug("f")})
        proc = cli("run", "describe_database_project", "--params", json.dumps({"project": slug}), config=config(fstack))
        assert proc.returncode == 7 and cli_error(proc)["code"] == "database_unavailable", proc.stderr
        assert time.time() - started < 20
    finally:
        fstack.start_postgres()
    # the pool drops its dead connections: the next calls just work
    assert fex.execute("describe_database_project", {"project": slug})["state"] == "active"
    other = new_slug("f")
    assert fex.execute("upsert_database_project_access", {"project": other})["lease"]
    assert clean(fex, slug) == [] and clean(fex, other) == []


def test_sslmode_against_a_server_without_tls(fstack: Stack) -> None:
    """The stack's server has no TLS: `prefer` falls back to a plain
    connection, `require` refuses clearly (TLS is set up only when a server
    accepts it, so neither pays for it)."""
    with create_executor(connector_config(fstack, database={"sslmode": "prefer"})) as ex:
        assert ex.execute("reap_expired_leases", {})["reaped"] is not None
    with create_executor(connector_config(fstack, database={"sslmode": "require"})) as ex:
        with pytest.raises(DatabaseUnavailable) as err:
            ex.execute("reap_expired_leases", {})
        assert "TLS" in str(err.value) or "ssl" in str(err.value).lower(), str(err.value)


def test_postgres_restart_in_the_middle_of_an_action(fstack: Stack) -> None:
    """An upsert that has already granted schema USAGE waits for a table lock
    (to enable RLS) when PostgreSQL goes down: afterwards neither change is
    there, no audit row either; the retry applies both."""
    ex = create_executor(config(fstack, lock_timeout_ms=60_000))
    try:
        slug = project_with_table(ex, fstack)
        s = f"proj_{slug}"
        with admin_conn(fstack) as c:  # drift for the upsert to repair, in plan order
            c.execute(f"revoke usage on schema {s} from {s}_anon")
        disable_rls(fstack, f"{s}.t")
        audits, leases = audit_count(fstack, slug), lease_count(fstack, slug)
        locker = admin_conn(fstack, autocommit=False)
        locker.execute(f"lock table {s}.t in access exclusive mode")
        run = Background(lambda: ex.execute("upsert_database_project_access", {"project": slug}))
        wait_for_blocked(fstack)
        fstack.stop_postgres(mode="fast")
        fstack.start_postgres()
        run.join()
        locker.close()
        assert isinstance(run.error, DatabaseUnavailable), run.error
        assert value(fstack, "select has_schema_privilege(%s, %s, 'USAGE')", (f"{s}_anon", s)) is False
        assert value(fstack, "select relrowsecurity from pg_class where oid = %s::regclass", (f"{s}.t",)) is False
        assert (audit_count(fstack, slug), lease_count(fstack, slug)) == (audits, leases)
        # retry
        out = ex.execute("upsert_database_project_access", {"project": slug})
        assert out["changed"] is True and out["lease"]
        assert value(fstack, "select has_schema_privilege(%s, %s, 'USAGE')", (f"{s}_anon", s)) is True
        assert value(fstack, "select relrowsecurity from pg_class where oid = %s::regclass", (f"{s}.t",)) is True
        assert clean(ex, slug) == []
    finally:
        ex.close()


def test_pool_exhausted_is_a_clear_error_after_a_bounded_wait(fstack: Stack) -> None:
    ex = create_executor(config(fstack, pool_size=1, pool_timeout_seconds=1, lock_timeout_ms=20_000))
    slug, other = new_slug("f"), new_slug("f")
    holder = admin_conn(fstack)
    try:
        ex.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
        ex.execute("upsert_database_project_access", {"project": other, "issue_lease": False})
        holder.execute("select pg_advisory_lock(%s)", (lock_key(f"project:proj_{slug}"),))
        run = Background(lambda: ex.execute("issue_database_lease", {"project": slug, "principal": {"type": "project"}}))
        wait_for_blocked(fstack)  # the only pooled connection waits on the project lock
        started = time.time()
        with pytest.raises(DatabaseUnavailable) as err:
            ex.execute("describe_database_project", {"project": other})
        waited = time.time() - started
        assert 0.9 <= waited < 5, waited
        assert "pool exhausted" in err.value.message
        holder.execute("select pg_advisory_unlock(%s)", (lock_key(f"project:proj_{slug}"),))
        run.join()
        assert run.error is None and run.result["lease"]
        assert ex.execute("describe_database_project", {"project": other})["state"] == "active"
    finally:
        holder.close()
        ex.close()


def test_lock_timeout_is_a_clear_error_not_a_hang(fstack: Stack) -> None:
    ex = create_executor(config(fstack, lock_timeout_ms=800))
    try:
        slug = project_with_table(ex, fstack)
        s = f"proj_{slug}"
        audits, leases = audit_count(fstack, slug), lease_count(fstack, slug)
        # 1. another connector (or a stuck one) holds the project lock
        with admin_conn(fstack) as holder:
            holder.execute("select pg_advisory_lock(%s)", (lock_key(f"project:{s}"),))
            for action, params in (
                ("upsert_database_project_access", {"project": slug}),
                ("issue_database_lease", {"project": slug, "principal": {"type": "project"}}),
                ("upsert_database_team_access", {"project": slug, "team_id": "t", "platform_role": "team_member", "members": []}),
                ("apply_database_migrations", {"project": slug, "migrations": [{"version": "1", "name": "m", "sql": "select 1"}]}),
            ):
                started = time.time()
                with pytest.raises(DatabaseUnavailable) as err:
                    ex.execute(action, params)
                assert time.time() - started < 5, action
                assert "lock timeout" in err.value.message and err.value.details["sqlstate"] == "55P03", (action, err.value)
        assert (audit_count(fstack, slug), lease_count(fstack, slug)) == (audits, leases)
        # 2. a session holds a table of the project that the upsert must alter
        disable_rls(fstack, f"{s}.t")
        locker = admin_conn(fstack, autocommit=False)
        try:
            locker.execute(f"lock table {s}.t in access exclusive mode")
            started = time.time()
            with pytest.raises(DatabaseUnavailable) as err:
                ex.execute("upsert_database_project_access", {"project": slug})
            assert time.time() - started < 5 and "lock timeout" in err.value.message
            assert value(fstack, "select relrowsecurity from pg_class where oid = %s::regclass", (f"{s}.t",)) is False
            # a migration waiting for the same table is bounded too
            started = time.time()
            run = Background(lambda: ex.execute(
                "apply_database_migrations",
                {"project": slug, "migrations": [{"version": "1", "name": "add_y", "sql": "alter table t add column y int"}]},
            ))
            run.thread.join(10)
            hung = run.thread.is_alive()
        finally:
            locker.close()
        run.join()
        assert not hung, "the migration waited for the lock with no timeout"
        assert time.time() - started < 5
        assert isinstance(run.error, MigrationFailed) and "lock timeout" in run.error.message, run.error
        assert run.error.details["sqlstate"] == "55P03" and run.error.details["file"] == "1_add_y.sql"
        assert ex.execute("upsert_database_project_access", {"project": slug})["changed"] is True
        assert ex.execute(
            "apply_database_migrations",
            {"project": slug, "migrations": [{"version": "1", "name": "add_y", "sql": "alter table t add column y int"}]},
        )["applied"]
        assert clean(ex, slug) == []
    finally:
        ex.close()


def test_revoke_ends_a_lease_session_holding_a_lock(fstack: Stack, fex: SupabaseExecutor) -> None:
    """A lease session idle in a transaction with a lock does not hang its revocation."""
    slug = project_with_table(fex, fstack)
    lease = fex.execute("issue_database_lease", {"project": slug, "principal": {"type": "project"}})["lease"]
    session = psycopg.connect(lease["database"]["url"])
    session.execute("lock table t in access exclusive mode")  # idle in transaction from here
    started = time.time()
    out = fex.execute("revoke_database_lease", {"lease_id": lease["lease_id"]})
    assert time.time() - started < 8
    assert out["revoked"] is True and out["terminated_sessions"] >= 1
    with pytest.raises(psycopg.OperationalError):
        session.execute("select 1")
    session.close()
    assert value(fstack, "select count(*) from pg_roles where rolname = %s", (lease["database"]["user"],)) == 0


# ------------------------------------------------------------- OpenBao


def test_openbao_down_means_secrets_unavailable_and_no_fallback(fstack: Stack) -> None:
    ex = create_executor(connector_config(fstack, openbao={"cache_seconds": 0}))
    slug = new_slug("f")
    try:
        live = ex.execute("upsert_database_project_access", {"project": slug})["lease"]
        leases = lease_count(fstack, slug)
        fstack.stop_bao()
        try:
            fresh_slug = new_slug("f")
            started = time.time()
            with pytest.raises(SecretsUnavailable) as err:
                ex.execute("upsert_database_project_access", {"project": fresh_slug})
            assert "OpenBao" in err.value.message
            with pytest.raises(SecretsUnavailable):
                ex.execute("issue_database_lease", {"project": slug, "principal": {"type": "project"}})
            with pytest.raises(SecretsUnavailable):
                ex.execute("renew_database_lease", {"lease_id": live["lease_id"]})
            # a new connector cannot even get the database password: no default, no empty password
            fresh = create_executor(config(fstack))
            with pytest.raises(SecretsUnavailable):
                fresh.execute("describe_database_project", {"project": slug})
            fresh.close()
            proc = cli("run", "describe_database_project", "--params", json.dumps({"project": slug}), config=config(fstack))
            assert proc.returncode == 6 and cli_error(proc)["code"] == "secrets_unavailable"
            assert time.time() - started < 30
            # nothing changed
            assert value(fstack, "select to_regnamespace(%s)::text", (f"proj_{fresh_slug}",)) is None
            assert value(fstack, "select count(*) from supabase_connector.projects where slug = %s", (fresh_slug,)) == 0
            assert lease_count(fstack, slug) == leases
            # taking access away needs no secret: it works while OpenBao is down
            out = ex.execute("revoke_database_lease", {"lease_id": live["lease_id"]})
            assert out["revoked"] is True
        finally:
            fstack.start_bao()
        assert ex.execute("upsert_database_project_access", {"project": new_slug("f")})["lease"]
        assert ex.execute("issue_database_lease", {"project": slug, "principal": {"type": "project"}})["lease"]
    finally:
        ex.close()


def test_approle_login(fstack: Stack) -> None:
    approle = {"role_id": fstack.approle_role_id, "secret_id": fstack.approle_secret_id}
    cfg = connector_config(fstack)
    cfg["openbao"] = {"addr": fstack.bao_addr, "approle": approle}
    with create_executor(cfg) as ex:
        out = ex.execute("upsert_database_project_access", {"project": new_slug("f")})
        assert out["lease"]["api"]["access_token"]
    wrong = dict(approle, secret_id=str(uuid.uuid4()))
    cfg["openbao"] = {"addr": fstack.bao_addr, "approle": wrong}
    with create_executor(cfg) as ex:
        with pytest.raises(SecretsUnavailable) as err:
            ex.execute("upsert_database_project_access", {"project": new_slug("f")})
        assert "AppRole" in err.value.message and wrong["secret_id"] not in repr(err.value) + json.dumps(err.value.details)


# ------------------------------------------------------------- JWT rotation


def write_secrets(stack: Stack, secrets: Dict[str, Any]) -> None:
    req = urllib.request.Request(
        f"{stack.bao_addr}/v1/secret/data/connectors/supabase",
        data=json.dumps({"data": secrets}).encode(),
        method="POST",
        headers={"X-Vault-Token": stack.bao_token, "Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=5).read()


def rotate_jwt_secret(fstack: Stack) -> Tuple[str, Dict[str, str]]:
    """Write a new JWT_SECRET (and keys signed with it) to OpenBao."""
    new_secret = "rotated-" + uuid.uuid4().hex + uuid.uuid4().hex
    now = int(time.time())
    rotated = dict(
        fstack.secrets,
        JWT_SECRET=new_secret,
        SUPABASE_PUBLISHABLE_KEY=hs256_jwt({"role": "anon", "iss": "supabase", "iat": now, "exp": now + 86400}, new_secret),
        SUPABASE_SECRET_KEY=hs256_jwt({"role": "service_role", "iss": "supabase", "iat": now, "exp": now + 86400}, new_secret),
    )
    write_secrets(fstack, rotated)
    fstack.info["secrets"] = rotated  # what a restart of the dev server re-seeds
    return new_secret, rotated


def test_jwt_secret_rotation(fstack: Stack) -> None:
    """Running executors, with the default openbao.cache_seconds and secrets
    already cached, sign the first lease issued after a rotation with the
    new secret: one whose token may read the secret's metadata (a version
    check), and an AppRole whose policy may not (a full read each time)."""
    ex = create_executor(config(fstack))
    approle = {"role_id": fstack.approle_role_id, "secret_id": fstack.approle_secret_id}
    ex_approle = create_executor(dict(connector_config(fstack), openbao={"addr": fstack.bao_addr, "approle": approle}))
    try:
        slug = new_slug("f")
        old_secret = fstack.secrets["JWT_SECRET"]
        before = ex.execute("upsert_database_project_access", {"project": slug})["lease"]
        ex_approle.execute("issue_database_lease", {"project": slug, "principal": {"type": "project"}})
        new_secret, rotated = rotate_jwt_secret(fstack)
        # right away: no waiting for a cache to expire
        after = ex.execute("issue_database_lease", {"project": slug, "principal": {"type": "project"}})["lease"]
        after_approle = ex_approle.execute("issue_database_lease", {"project": slug, "principal": {"type": "project"}})["lease"]
        renewed = ex.execute("renew_database_lease", {"lease_id": before["lease_id"]})["lease"]
        with create_executor(config(fstack)) as fresh:
            third = fresh.execute("issue_database_lease", {"project": slug, "principal": {"type": "project"}})["lease"]
        api_new = pgrest.Client(fstack.authenticator_url, new_secret)
        api_old = pgrest.Client(fstack.authenticator_url, old_secret)
        try:
            for lease in (after, after_approle, renewed, third):
                assert lease["api"]["apikey"] == rotated["SUPABASE_PUBLISHABLE_KEY"]
                for token, cls in ((lease["api"]["access_token"], "service_role"), (lease["api"]["publishable_token"], "anon")):
                    assert api_new.request(token, lease["schema"], "select current_user") == [(f"{lease['schema']}_{cls}",)]
                    with pytest.raises(pgrest.ApiError) as err:
                        api_old.claims(token)
                    assert err.value.kind == "jwt_invalid"
            # tokens signed before the rotation are refused by an API using the new secret
            for token in (before["api"]["access_token"], before["api"]["publishable_token"], before["api"]["apikey"]):
                with pytest.raises(pgrest.ApiError) as err:
                    api_new.request(token, before["schema"], "select 1")
                assert err.value.kind == "jwt_invalid"
            # database leases do not depend on the JWT secret
            with psycopg.connect(after["database"]["url"]) as c:
                assert c.execute("select 1").fetchone() == (1,)
        finally:
            api_new.close()
            api_old.close()
    finally:
        ex.close()
        ex_approle.close()


def test_jwt_secret_rotation_with_a_signing_check_window(fstack: Stack) -> None:
    """With openbao.signing_check_ms set, a version check stays good that
    long: a lease issued inside the window after a rotation still carries
    tokens of the old secret, and the first one issued after it carries
    tokens of the new one, without a restart."""
    window_ms = 3000
    cfg = config(fstack)
    ex = create_executor(dict(cfg, openbao=dict(cfg["openbao"], signing_check_ms=window_ms)))
    principal = {"type": "project"}
    try:
        slug = new_slug("f")
        old_secret = fstack.secrets["JWT_SECRET"]
        checked = time.monotonic()  # the upsert's check starts after this
        ex.execute("upsert_database_project_access", {"project": slug})
        new_secret, rotated = rotate_jwt_secret(fstack)
        inside = ex.execute("issue_database_lease", {"project": slug, "principal": principal, "database": False})["lease"]
        assert time.monotonic() - checked < window_ms / 1000, "the machine was too slow to stay inside the window"
        time.sleep(window_ms / 1000 + 0.2)
        after = ex.execute("issue_database_lease", {"project": slug, "principal": principal, "database": False})["lease"]
        api_new = pgrest.Client(fstack.authenticator_url, new_secret)
        api_old = pgrest.Client(fstack.authenticator_url, old_secret)
        try:
            assert api_old.claims(inside["api"]["access_token"])["jti"] == inside["lease_id"]
            assert inside["api"]["apikey"] != rotated["SUPABASE_PUBLISHABLE_KEY"]
            assert after["api"]["apikey"] == rotated["SUPABASE_PUBLISHABLE_KEY"]
            token = after["api"]["access_token"]
            assert api_new.request(token, after["schema"], "select current_user") == [(f"{after['schema']}_service_role",)]
            with pytest.raises(pgrest.ApiError) as err:
                api_old.claims(token)
            assert err.value.kind == "jwt_invalid"
        finally:
            api_new.close()
            api_old.close()
    finally:
        ex.close()


# ------------------------------------------------------------- concurrency


def test_64_mixed_actions_on_8_projects_at_once(fstack: Stack) -> None:
    ex = create_executor(config(fstack))
    rng = random.Random(10)
    try:
        slugs = [new_slug("c") for _ in range(8)]
        states = {s: ex.execute("upsert_database_project_access", {"project": s}) for s in slugs}
        removed = {slugs[6]: False, slugs[7]: True}  # archive one, drop one
        live = slugs[:6]
        # leases to renew and revoke later, two per project, set up serially
        spare: Dict[str, List[str]] = {
            s: [ex.execute("issue_database_lease", {"project": s, "principal": {"type": "project"}})["lease"]["lease_id"]
                for _ in range(2)]
            for s in slugs
        }
        actions: List[Tuple[str, Dict[str, Any], bool]] = []  # (action, params, must succeed)
        for s in live:
            team = {"project": s, "team_id": "crew", "platform_role": "team_member"}
            actions += [
                ("upsert_database_project_access", {"project": s}, True),
                ("upsert_database_team_access", {**team, "members": rng.sample(USERS, 4)}, True),
                ("upsert_database_team_access", {**team, "members": rng.sample(USERS, 3), "platform_role": "project_viewer"}, True),
                ("upsert_database_access", {"project": s, "principal": {"type": "user", "id": rng.choice(USERS)},
                                            "platform_role": rng.choice(["project_contributor", "project_viewer"])}, True),
                ("upsert_database_access", {"project": s, "principal": {"type": "service", "id": "etl"},
                                            "platform_role": "project_owner"}, True),
                ("issue_database_lease", {"project": s, "principal": {"type": "project"}}, True),
                ("renew_database_lease", {"lease_id": spare[s][0], "ttl_seconds": 600}, True),
                ("revoke_database_lease", {"lease_id": spare[s][1]}, True),
                ("revoke_database_team_access", {"project": s, "team_id": "crew"}, True) if s in live[:3] else
                ("revoke_database_access", {"project": s, "principal": {"type": "service", "id": "etl"}}, True),
            ]
        for s, drop in removed.items():
            actions += [
                ("remove_database_project", {"project": s, "drop_data": drop}, True),
                # these race the removal: done before it, or refused cleanly after it
                ("renew_database_lease", {"lease_id": spare[s][0]}, False),
                ("revoke_database_lease", {"lease_id": spare[s][1]}, False),
                ("issue_database_lease", {"project": s, "principal": {"type": "project"}}, False),
                ("upsert_database_team_access", {"project": s, "team_id": "crew", "platform_role": "team_member",
                                                 "members": USERS[:2]}, False),
            ]
        assert len(actions) == 64
        rng.shuffle(actions)

        def run(item: Tuple[str, Dict[str, Any], bool]) -> Tuple[str, Optional[BaseException]]:
            try:
                ex.execute(item[0], item[1])
                return item[0], None
            except Exception as e:  # noqa: BLE001
                return item[0], e

        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(run, actions))
        assert time.time() - started < 60
        for (action, params, must), (_, error) in zip(actions, results):
            if must:
                assert error is None, (action, params, error)
            else:
                assert error is None or isinstance(error, (Conflict, NotFound)), (action, params, error)

        # every remaining project is clean, the dropped one is gone
        for s in live + [slugs[6]]:
            assert clean(ex, s) == [], s
        assert value(fstack, "select to_regnamespace(%s)::text", (f"proj_{slugs[7]}",)) is None
        assert value(fstack, "select state from supabase_connector.projects where slug = %s", (slugs[6],)) == "archived"
        # leases and roles agree: every live lease has its role, no lease role is orphaned
        with admin_conn(fstack) as c:
            missing = c.execute(
                "select l.lease_id from supabase_connector.leases l where l.revoked_at is null and l.expires_at > now() "
                "and l.project = any(%s) and not exists (select 1 from pg_roles r where r.rolname = l.role_name)",
                (slugs,),
            ).fetchall()
            orphans = c.execute(
                "select r.rolname from pg_roles r where r.rolname like 'lease\\_%%' and not exists ("
                " select 1 from supabase_connector.leases l where l.revoked_at is null "
                " and r.rolname in (l.role_name, l.anon_role_name))"
            ).fetchall()
            dead = c.execute(
                "select count(*) from supabase_connector.leases l where l.project = any(%s) and l.revoked_at is null "
                "and l.project in (select slug from supabase_connector.projects where state <> 'active')",
                (slugs,),
            ).fetchone()[0]
        assert missing == [] and orphans == [] and dead == 0, (missing, orphans, dead)
        assert states  # every project started with its lease
    finally:
        ex.close()
