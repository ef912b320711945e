"""Python bindings of the supabase connector.

A host platform's ``executor_factory`` creates one executor and calls
``execute(action, params)`` whenever a project attaches the database::

    from supabase_connector import create_executor

    with create_executor({"database": {"url": "postgresql://postgres@db:5432/postgres"}}) as ex:
        state = ex.execute("upsert_database_project_access", {"project": "acme"})
        workspace_env = state["lease"]["env"]

The Rust core does all the work, parameter validation included; this module
converts values to and from JSON and error codes to exception classes
(docs/reference.md#errors). Calls release the GIL while the connector waits on
PostgreSQL and OpenBao.

Log records: the connector's events go to the ``logging`` loggers
``supabase_connector.*`` (the Rust module path), emitted on the calling
thread when the call returns; their structured fields are in the record's
``connector_fields`` attribute. They never carry passwords or tokens. The
package adds a ``NullHandler`` to ``supabase_connector``: nothing is printed
unless the host configures logging.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import json
import logging
import threading
import uuid
from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypedDict

from . import _native

__all__ = [
    "ACTIONS",
    "ASYNC_THREADS",
    "AppliedMigration",
    "Conflict",
    "ConnectorError",
    "DatabaseUnavailable",
    "Forbidden",
    "InvalidParams",
    "MigrationFailed",
    "MigrationRef",
    "MigrationsResult",
    "NotFound",
    "PreconditionFailed",
    "SecretsUnavailable",
    "SupabaseExecutor",
    "__version__",
    "catalog",
    "create_executor",
]

__version__: str = _native.__version__

# A library logs, the host decides where records go: without this, Python's
# last-resort handler would print the connector's warnings to stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Every action the connector declares, in catalog order.
ACTIONS: List[str] = list(_native.action_names())


class ConnectorError(Exception):
    """Base of every connector error: ``code``, ``message`` and ``details``
    (docs/reference.md#errors). Raised as is for ``internal`` (and any code
    this version does not know)."""

    code: str = "internal"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.message, self.details), dict(self.__dict__))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidParams(ConnectorError):
    """Schema validation, bad slug, unknown role or action, bad config;
    ``details["violations"]`` lists each with its JSON pointer."""

    code = "invalid_params"


class NotFound(ConnectorError):
    """Unknown project or lease."""

    code = "not_found"


class Conflict(ConnectorError):
    """Slug collision, changed migration checksum, a name owned by something else."""

    code = "conflict"


class Forbidden(ConnectorError):
    """The principal has no effective access for a lease."""

    code = "forbidden"


class SecretsUnavailable(ConnectorError):
    """OpenBao down, sealed, denied, or a key missing."""

    code = "secrets_unavailable"


class DatabaseUnavailable(ConnectorError):
    """Cannot connect, connection lost mid-action (nothing half-applied), or the executor is closed."""

    code = "database_unavailable"


class MigrationFailed(ConnectorError):
    """A migration failed; ``details`` name the file, the statement and PostgreSQL's error."""

    code = "migration_failed"


class PreconditionFailed(ConnectorError):
    """The server is not set up as the connector requires: the registry is
    missing or of another version (run ``supabase-connector bootstrap``), or
    bootstrap's checks refused (not a superuser, a Supabase role or the
    ``auth`` schema missing, no ADMIN OPTION on ``anon``/``authenticated``)."""

    code = "precondition_failed"


_BY_CODE: Dict[str, Type[ConnectorError]] = {
    cls.code: cls
    for cls in (
        InvalidParams,
        NotFound,
        Conflict,
        Forbidden,
        SecretsUnavailable,
        DatabaseUnavailable,
        MigrationFailed,
        PreconditionFailed,
    )
}


def _error(err: _native.NativeError) -> ConnectorError:
    """The exception class of a native error's code."""
    code, message, details = err.args
    cls = _BY_CODE.get(code, ConnectorError)
    exc = cls(message, json.loads(details))
    if cls is ConnectorError:
        exc.code = code
    return exc


def _default(value: Any) -> Any:
    """JSON for the few non-JSON types a host naturally passes."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _to_json(value: Any, what: str) -> str:
    """``value`` as JSON text; what cannot be JSON is ``InvalidParams``.
    Whether it is the right JSON is the Rust side's call."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    try:
        return json.dumps(value, default=_default, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as err:
        raise InvalidParams(
            f"{what}: not JSON: {err}",
            {"violations": [{"path": "/", "message": f"not JSON: {err}"}]},
        ) from None


class MigrationRef(TypedDict):
    """One migration file, by version and name."""

    version: str
    name: str


class AppliedMigration(MigrationRef):
    """A migration this call applied, with the SHA-256 (hex) of its SQL."""

    checksum: str


class MigrationsResult(TypedDict):
    """What ``apply_database_migrations`` returns, with or without
    ``dry_run``: ``applied`` by this call, ``skipped`` (applied before),
    ``pending`` (what a run would apply: empty after a run) and ``dry_run``.
    ``execute`` returns a plain dict; ``typing.cast`` it to this type."""

    project: str
    applied: List[AppliedMigration]
    skipped: List[MigrationRef]
    pending: List[MigrationRef]
    dry_run: bool


def catalog() -> Dict[str, Any]:
    """The connector catalog: actions and their JSON Schemas."""
    result: Dict[str, Any] = json.loads(_native.catalog_json())
    return result


#: Threads an executor lends to ``execute_async`` calls waiting at once.
ASYNC_THREADS = 32


class SupabaseExecutor:
    """Runs connector actions. One per process: it holds the connection
    pool; safe to share between threads and asyncio tasks."""

    def __init__(self, config: Optional[Mapping[str, Any]] = None) -> None:
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping or None, not {type(config).__name__}")
        payload = None if config is None else _to_json(config, "config")
        self._threads: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._lock = threading.Lock()
        try:
            self._native = _native.NativeExecutor(payload)
        except _native.NativeError as err:
            raise _error(err) from None

    def _call(self, action: str, params: Any) -> Tuple[Dict[str, Any], float]:
        if not isinstance(action, str):
            raise TypeError(f"action must be a str, not {type(action).__name__}")
        # A lone surrogate cannot cross into Rust; as "?" it is just an unknown action.
        action = action.encode("utf-8", "replace").decode("utf-8")
        payload = _to_json({} if params is None else params, "params")
        try:
            text, rust_seconds = self._native.execute_timed(action, payload)
        except _native.NativeError as err:
            raise _error(err) from None
        result: Dict[str, Any] = json.loads(text)
        return result, rust_seconds

    def execute(self, action: str, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Run ``action`` with ``params`` (validated against the catalog);
        returns the result as a dict, or raises a :class:`ConnectorError`."""
        return self._call(action, params)[0]

    def execute_timed(self, action: str, params: Optional[Mapping[str, Any]] = None) -> Tuple[Dict[str, Any], float]:
        """``execute``, plus the seconds the call spent on the Rust side
        (parse, action, serialise): the rest of the wall time is this layer's."""
        return self._call(action, params)

    async def execute_async(self, action: str, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """``execute`` for asyncio; the loop keeps running meanwhile. The
        call waits in a thread of the executor's own (up to
        ``ASYNC_THREADS`` at once; the loop's default pool is left alone),
        with the caller's context variables, GIL released. Cancelling the
        task does not cancel the action, which completes or rolls back as
        a whole."""
        if self.closed:
            return self.execute(action, params)  # raises at once
        call = functools.partial(contextvars.copy_context().run, self.execute, action, params)
        return await asyncio.get_running_loop().run_in_executor(self._async_threads(), call)

    def _async_threads(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = concurrent.futures.ThreadPoolExecutor(ASYNC_THREADS, thread_name_prefix="supabase-connector")
            return self._threads

    def catalog(self) -> Dict[str, Any]:
        """The connector catalog."""
        return catalog()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def close(self) -> None:
        """Close the connection pool; later calls raise :class:`DatabaseUnavailable`."""
        self._native.close()
        with self._lock:
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=False)

    def __enter__(self) -> SupabaseExecutor:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    async def __aenter__(self) -> SupabaseExecutor:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SupabaseExecutor(closed={self.closed})"


def create_executor(config: Optional[Mapping[str, Any]] = None) -> SupabaseExecutor:
    """An executor for ``config`` (a dict of the keys in
    docs/reference.md#configuration; every key falls back to the
    environment), or the environment alone when None."""
    return SupabaseExecutor(config)
