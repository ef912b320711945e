"""Errors through Python: each error code raises its class with
`code`, `message` and `details`; what Python hands over that is not the
right type raises `InvalidParams` or `TypeError`, never a panic, and the
executor keeps working afterwards."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple, Type

import pytest

from conftest import connector_config, info, new_slug
from supabase_connector import (
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
    _BY_CODE,
    _error,
    _native,
    create_executor,
)

CLASSES: List[Tuple[str, Type[ConnectorError]]] = [
    ("invalid_params", InvalidParams),
    ("not_found", NotFound),
    ("conflict", Conflict),
    ("forbidden", Forbidden),
    ("secrets_unavailable", SecretsUnavailable),
    ("database_unavailable", DatabaseUnavailable),
    ("migration_failed", MigrationFailed),
    ("precondition_failed", PreconditionFailed),
]

SERVICE = {"type": "service", "id": "project"}


def raised(cls: Type[ConnectorError], call: Callable[[], Any]) -> ConnectorError:
    """The exception `call` raises: exactly `cls`, with code, message and details."""
    with pytest.raises(ConnectorError) as info_:
        call()
    err = info_.value
    assert type(err) is cls, f"expected {cls.__name__}, got {type(err).__name__}: {err}"
    assert err.code == cls.code and isinstance(err.code, str)
    assert isinstance(err.message, str) and err.message and str(err) == err.message
    assert err.details is None or isinstance(err.details, dict)
    return err


def test_class_hierarchy() -> None:
    for code, cls in CLASSES:
        assert cls.code == code and issubclass(cls, ConnectorError) and issubclass(cls, Exception)
    assert ConnectorError.code == "internal"


def test_invalid_params(executor: SupabaseExecutor) -> None:
    err = raised(InvalidParams, lambda: executor.execute("upsert_database_project_access", {"project": "Bad Slug", "nope": 1}))
    paths = sorted(v["path"] for v in err.details["violations"])
    assert paths == ["/", "/project"]
    err = raised(InvalidParams, lambda: executor.execute(
        "upsert_database_access", {"project": "acme", "principal": {"type": "user", "id": str(uuid.uuid4())}, "platform_role": "superuser"}))
    assert "/platform_role" in [v["path"] for v in err.details["violations"]]
    err = raised(InvalidParams, lambda: executor.execute("no_such_action", {}))
    assert "upsert_database_project_access" in err.details["actions"]


def test_not_found(executor: SupabaseExecutor) -> None:
    raised(NotFound, lambda: executor.execute("describe_database_project", {"project": new_slug("nf")}))
    raised(NotFound, lambda: executor.execute("renew_database_lease", {"lease_id": str(uuid.uuid4())}))


def test_conflict(executor: SupabaseExecutor, slug: str) -> None:
    executor.execute("upsert_database_project_access", {"project": f"{slug}-x", "issue_lease": False})
    err = raised(Conflict, lambda: executor.execute("upsert_database_project_access", {"project": f"{slug}_x", "issue_lease": False}))
    assert f"{slug}-x" in err.message


def test_forbidden(executor: SupabaseExecutor, slug: str) -> None:
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    user = {"type": "user", "id": str(uuid.uuid4())}
    raised(Forbidden, lambda: executor.execute("issue_database_lease", {"project": slug, "principal": user}))


def test_migration_failed(executor: SupabaseExecutor, slug: str) -> None:
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    good = {"version": "1", "name": "good", "sql": "create table t (id int);"}
    bad = {"version": "2", "name": "bad", "sql": "create table u (id int);\nselect * from missing_table;"}
    err = raised(MigrationFailed, lambda: executor.execute("apply_database_migrations", {"project": slug, "migrations": [good, bad]}))
    d = err.details
    assert (d["file"], d["statement"], d["line"], d["sqlstate"]) == ("2_bad.sql", 2, 2, "42P01")
    assert [m["version"] for m in d["applied"]] == ["1"]  # the earlier one stays applied
    assert "missing_table" in d["message"]


def test_secrets_unavailable(stack: Any) -> None:
    """OpenBao unreachable or denying: no fallback, its own class; the token is not repeated."""
    token = "s.NotTheRealToken0123456789"
    for openbao in ({"addr": "http://127.0.0.1:9", "token": token}, {"addr": info(stack, "bao_addr"), "token": token}):
        with create_executor(connector_config(stack, openbao=openbao)) as ex:
            err = raised(SecretsUnavailable, lambda: ex.execute("upsert_database_project_access", {"project": new_slug("sb")}))
        assert token not in repr(err) and token not in str(err.details)


def test_database_unavailable(stack: Any) -> None:
    password = "NotTheRealPassword0123"
    url = f"postgresql://postgres:{password}@127.0.0.1:9/postgres"
    with create_executor(connector_config(stack, database={"url": url, "pool_timeout_seconds": 2})) as ex:
        err = raised(DatabaseUnavailable, lambda: ex.execute("describe_database_project", {"project": "acme"}))
    assert password not in repr(err) and password not in str(err.details)


def test_precondition_failed(stack: Any) -> None:
    """A database the connector was never bootstrapped in: the server is not
    set up as required, which is neither a conflict nor an internal error."""
    url = str(info(stack, "runtime_url_nopw")).rsplit("/", 1)[0] + "/template1"
    with create_executor(connector_config(stack, database={"url": url})) as ex:
        err = raised(PreconditionFailed, lambda: ex.execute("describe_database_project", {"project": "acme"}))
    assert "bootstrap" in err.message


def test_closed_executor(stack: Any) -> None:
    ex = create_executor(connector_config(stack))
    assert ex.execute("reap_expired_leases", {"dry_run": True})["dry_run"] is True
    assert not ex.closed
    with ex:
        pass
    assert ex.closed and repr(ex) == "SupabaseExecutor(closed=True)"
    raised(DatabaseUnavailable, lambda: ex.execute("reap_expired_leases", {}))
    ex.close()  # twice is fine


def test_the_reference_names_each_exception() -> None:
    """docs/reference.md#errors: one row per code, with its Python class."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "reference.md").read_text()
    table = doc[doc.index("\n## Errors\n") :].split("\n\n|", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in ("|" + table).splitlines()[2:]:
        cells = [c.strip() for c in line.split("|")]
        rows[cells[1].strip("`")] = cells[3].split("`")[1]
    assert rows == {code: _BY_CODE.get(code, ConnectorError).__name__ for code in rows}
    assert set(rows) == set(_BY_CODE) | {"internal"}


def test_internal_and_unknown_codes_are_the_base_class() -> None:
    err = _error(_native.NativeError("internal", "boom", '{"where": "x"}'))
    assert type(err) is ConnectorError and err.code == "internal" and err.details == {"where": "x"}
    err = _error(_native.NativeError("rate_limited", "later", "null"))
    assert type(err) is ConnectorError and err.code == "rate_limited" and err.details is None


@pytest.mark.parametrize("code, cls", CLASSES)
def test_exceptions_pickle(code: str, cls: Type[ConnectorError]) -> None:
    err = _error(_native.NativeError(code, "msg", '{"violations": []}'))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and (back.code, back.message, back.details) == (code, "msg", {"violations": []})
    odd = pickle.loads(pickle.dumps(_error(_native.NativeError("odd", "m", "null"))))
    assert odd.code == "odd"


BAD_PARAMS: List[Any] = [
    ["project", "x"],
    ("project", "x"),
    "project=x",
    42,
    3.5,
    True,
    b"{}",
    {"project": object()},
    {"project": b"bytes"},
    {"project": {1, 2}},
    {"project": float("nan")},
    {"project": float("inf")},
    {"project": "x" * 100_000},
    {"project": "a\x00b"},
    {"project": "\ud800"},
    {"project": 10**40},
    {("tuple", "key"): 1},
    {1: "int key"},
    {"project": "acme", "lease_ttl_seconds": "900"},
    {"project": "acme", "issue_lease": "yes"},
    {"project": "acme", "expose": None},
]


def nested(depth: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for _ in range(depth):
        out = {"a": out}
    return out


@pytest.mark.parametrize("params", BAD_PARAMS + [nested(300), {"project": nested(100_000)}], ids=lambda p: type(p).__name__)
def test_bad_params_are_invalid_params(executor: SupabaseExecutor, params: Any) -> None:
    raised(InvalidParams, lambda: executor.execute("upsert_database_project_access", params))


@pytest.mark.parametrize("action", [None, 42, b"describe_database_project", ["describe_database_project"], {"a": 1}])
def test_non_str_action_is_type_error(executor: SupabaseExecutor, action: Any) -> None:
    with pytest.raises(TypeError):
        executor.execute(action, {"project": "acme"})


@pytest.mark.parametrize("action", ["", "describe_database_project\x00", "\ud800", "DESCRIBE_DATABASE_PROJECT", "x" * 10_000])
def test_odd_action_names_are_invalid_params(executor: SupabaseExecutor, action: str) -> None:
    raised(InvalidParams, lambda: executor.execute(action, {"project": "acme"}))


def test_bad_config(stack: Any) -> None:
    for config in ([1], "postgresql://x", 42):
        with pytest.raises(TypeError):
            create_executor(config)  # type: ignore[arg-type]
    for config in (
        {"database": {"pool_size": "eight"}},
        {"database": {"url": "postgresql://x@h/db"}, "no_such_section": {}},
        {"database": {"url": object()}},
        {"lease": {"default_ttl_seconds": -1}},
    ):
        raised(InvalidParams, lambda: create_executor(config))


def test_native_layer_type_errors(stack: Any) -> None:
    """The native class checks its own arguments too: TypeError, not a crash."""
    with pytest.raises(TypeError):
        _native.NativeExecutor(123)  # type: ignore[arg-type]
    native = _native.NativeExecutor(json.dumps(connector_config(stack)))
    for args in ((1, "{}"), ("x", None), ("x",), ("x", "{}", "extra")):
        with pytest.raises(TypeError):
            native.execute(*args)  # type: ignore[arg-type]
    with pytest.raises(_native.NativeError) as err:
        native.execute("describe_database_project", "{not json")
    assert err.value.args[0] == "invalid_params"
    native.close()


def test_executor_still_works_after_bad_calls(executor: SupabaseExecutor, slug: str) -> None:
    for params in BAD_PARAMS:
        with pytest.raises((InvalidParams, TypeError)):
            executor.execute("upsert_database_project_access", params)
    assert executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})["created"] is True
