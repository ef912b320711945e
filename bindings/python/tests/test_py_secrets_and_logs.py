"""Secrets stay out of what Python shows: the `repr` of the executor and of
exceptions, and the log records the connector hands to `logging` (captured
at DEBUG while actions that mint passwords and tokens run, and while
actions fail with a password or token in the configuration).

Results themselves are plain dicts that carry the lease's
credentials by design; there is no wrapper object whose repr could mask them.
Also here: the records are real (one per action, on the calling thread,
with the caller's context variables from `execute_async`)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import uuid
from typing import Any, Dict, Iterator, List

import pytest

from conftest import connector_config, info, new_slug
from supabase_connector import ConnectorError, NotFound, SupabaseExecutor, create_executor

SERVICE = {"type": "service", "id": "project"}
FAKE_PASSWORD = "FakePassw0rdThatMustNotLeak"
FAKE_TOKEN = "s.FakeTokenThatMustNotLeak"


def lease_secrets(lease: Dict[str, Any]) -> List[str]:
    out = [lease["api"]["access_token"], lease["env"]["SUPABASE_ACCESS_TOKEN"]]
    if lease["api"].get("publishable_token"):
        out.append(lease["api"]["publishable_token"])
    if lease.get("database"):
        out += [lease["database"]["password"], lease["database"]["url"], lease["env"]["DATABASE_URL"]]
    return out


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could print of a record."""
    return "\n".join([
        logging.Formatter("%(name)s %(levelname)s %(pathname)s:%(lineno)d %(message)s").format(record),
        repr(record.args),
        json.dumps(getattr(record, "connector_fields", None)),
        repr(record.__dict__),
    ])


@pytest.fixture
def connector_records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def test_no_secret_in_reprs_or_log_records(stack: Any, connector_records: pytest.LogCaptureFixture) -> None:
    stack_secrets = [str(v) for v in info(stack, "secrets").values()] + [
        info(stack, "bao_token"), info(stack, "admin_password"), info(stack, "authenticator_password"),
        FAKE_PASSWORD, FAKE_TOKEN,
    ]
    minted: List[str] = []
    shown: List[str] = []
    slug = new_slug("sec")
    user = {"type": "user", "id": str(uuid.uuid4())}
    # the runtime URL with its password, so the executor holds one
    with create_executor(connector_config(stack, database={"url": info(stack, "runtime_url")})) as ex:
        shown += [repr(ex), str(ex)]
        state = ex.execute("upsert_database_project_access", {"project": slug})
        minted += lease_secrets(state["lease"])
        granted = ex.execute("upsert_database_access", {"project": slug, "principal": user, "platform_role": "project_contributor"})
        minted += lease_secrets(granted["lease"])
        issued = ex.execute("issue_database_lease", {"project": slug, "principal": SERVICE})["lease"]
        minted += lease_secrets(issued)
        renewed = ex.execute("renew_database_lease", {"lease_id": issued["lease_id"], "ttl_seconds": 600})["lease"]
        minted += lease_secrets(renewed)
        ex.execute("apply_database_migrations", {"project": slug, "migrations": [  # logs in with a lease of its own
            {"version": "1", "name": "t", "sql": "create table t (id int);"}]})
        ex.execute("revoke_database_lease", {"lease_id": issued["lease_id"]})
        ex.execute("reap_expired_leases", {})
        shown.append(repr(ex))
        for call in (
            lambda: ex.execute("renew_database_lease", {"lease_id": str(uuid.uuid4())}),
            lambda: ex.execute("issue_database_lease", {"project": slug, "principal": {"type": "user", "id": str(uuid.uuid4())}}),
            lambda: ex.execute("upsert_database_project_access", {"project": "Bad Slug", "password": FAKE_PASSWORD}),
        ):
            with pytest.raises(ConnectorError) as err:
                call()
            shown += [repr(err.value), str(err.value), json.dumps(err.value.details)]
    failing = [
        connector_config(stack, database={"url": f"postgresql://postgres:{FAKE_PASSWORD}@{info(stack, 'host')}:{info(stack, 'port')}/postgres"}),
        connector_config(stack, database={"url": f"postgresql://postgres:{FAKE_PASSWORD}@127.0.0.1:9/postgres", "pool_timeout_seconds": 2}),
        connector_config(stack, openbao={"token": FAKE_TOKEN}),
        connector_config(stack, openbao={"addr": "http://127.0.0.1:9", "token": FAKE_TOKEN}),
    ]
    for config in failing:
        with create_executor(config) as ex:
            shown.append(repr(ex))
            with pytest.raises(ConnectorError) as err:
                ex.execute("describe_database_project", {"project": slug})
            shown += [repr(err.value), str(err.value), json.dumps(err.value.details)]
    records = [r for r in connector_records.records if r.name.startswith("supabase_connector")]
    # the records are real: every action above left one, failures at WARNING
    assert sum(r.getMessage().startswith("action done") for r in records) >= 7
    assert sum(r.levelno == logging.WARNING for r in records) >= 2 + len(failing)  # invalid params: not logged
    texts = shown + [record_text(r) for r in records]
    assert len(minted) >= 12
    for secret in stack_secrets + minted:
        for text in texts:
            assert secret not in text, f"a secret shows in: {text[:200]}"


def test_records_name_level_thread_and_fields(executor: SupabaseExecutor, connector_records: pytest.LogCaptureFixture, slug: str) -> None:
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    missing = new_slug("gone")
    with pytest.raises(NotFound):
        executor.execute("describe_database_project", {"project": missing})
    done = [r for r in connector_records.records if getattr(r, "connector_fields", {}).get("project") == slug and r.levelno >= logging.INFO]
    failed = [r for r in connector_records.records if getattr(r, "connector_fields", {}).get("project") == missing]
    assert len(done) == 1 and len(failed) == 1
    ok, ko = done[0], failed[0]
    assert ok.name == "supabase_connector" and ok.levelno == logging.INFO
    assert ok.connector_fields["action"] == "upsert_database_project_access"  # type: ignore[attr-defined]
    assert float(ok.connector_fields["elapsed_ms"]) > 0  # type: ignore[attr-defined]
    assert ok.pathname.endswith(".rs") and ok.lineno > 0
    assert ok.threadName == threading.current_thread().name  # emitted on the calling thread
    assert ko.levelno == logging.WARNING and ko.connector_fields["code"] == "not_found"  # type: ignore[attr-defined]
    assert missing in ko.getMessage()


def test_logger_levels_are_respected(executor: SupabaseExecutor, caplog: pytest.LogCaptureFixture, slug: str) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="supabase_connector")
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    with pytest.raises(NotFound):
        executor.execute("describe_database_project", {"project": new_slug("gone")})
    levels = [r.levelno for r in caplog.records if r.name.startswith("supabase_connector")]
    assert levels == [logging.WARNING]


def test_library_adds_only_a_null_handler() -> None:
    handlers = logging.getLogger("supabase_connector").handlers
    assert handlers and all(isinstance(h, logging.NullHandler) for h in handlers)


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def test_async_records_carry_the_callers_context(executor: SupabaseExecutor, connector_records: pytest.LogCaptureFixture) -> None:
    """A host tags records with a request id kept in a context variable:
    records of `execute_async` calls carry the id of the task that made them."""
    prefix = new_slug("ctx")
    projects = {f"{prefix}-{i}": f"req-{i}" for i in range(8)}
    connector_records.handler.addFilter(RequestIdFilter())

    async def one(project: str, request_id: str) -> None:
        REQUEST_ID.set(request_id)
        with pytest.raises(NotFound):
            await executor.execute_async("describe_database_project", {"project": project})

    async def main() -> None:
        await asyncio.gather(*[one(p, r) for p, r in projects.items()])

    asyncio.run(main())
    seen = {
        r.connector_fields["project"]: getattr(r, "request_id", None)  # type: ignore[attr-defined]
        for r in connector_records.records
        if getattr(r, "connector_fields", {}).get("project") in projects
    }
    assert seen == projects
