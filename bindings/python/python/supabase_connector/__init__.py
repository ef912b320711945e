"""Python bindings of the supabase connector.

A host platform's ``executor_factory`` creates one executor and calls
``execute(action, params)`` whenever a project attaches the database::

    from supabase_connector import create_executor

    with create_executor({"database": {"url": "postgresql://postgres@db:5432/postgres"}}) as ex:
        state = ex.execute("upsert_database_project_access", {"project": "acme"})
        workspace_env = state["lease"]["env"]

The Rust core does all the work; this module converts dicts to JSON and
error codes to exception classes.
"""

from __future__ import annotations

import asyncio
import functools
import json
from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Type

from . import _native

__all__ = [
    "ACTIONS",
    "Conflict",
    "ConnectorError",
    "DatabaseUnavailable",
    "Forbidden",
    "InvalidParams",
    "MigrationFailed",
    "NotFound",
    "SecretsUnavailable",
    "SupabaseExecutor",
    "__version__",
    "catalog",
    "create_executor",
]

__version__: str = _native.__version__

#: Every action the connector declares, in catalog order.
ACTIONS: List[str] = list(_native.action_names())


class ConnectorError(Exception):
    """Base of every connector error; ``code`` and ``details`` as in the contract."""

    code: str = "internal"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidParams(ConnectorError):
    code = "invalid_params"


class NotFound(ConnectorError):
    code = "not_found"


class Conflict(ConnectorError):
    code = "conflict"


class Forbidden(ConnectorError):
    code = "forbidden"


class SecretsUnavailable(ConnectorError):
    code = "secrets_unavailable"


class DatabaseUnavailable(ConnectorError):
    code = "database_unavailable"


class MigrationFailed(ConnectorError):
    code = "migration_failed"


_BY_CODE: Dict[str, Type[ConnectorError]] = {
    cls.code: cls
    for cls in (InvalidParams, NotFound, Conflict, Forbidden, SecretsUnavailable, DatabaseUnavailable, MigrationFailed)
}


def _raise(err: "_native.NativeError") -> "ConnectorError":
    code, message, details = err.args
    cls = _BY_CODE.get(code, ConnectorError)
    exc = cls(message, json.loads(details))
    if cls is ConnectorError:
        exc.code = code
    return exc


def catalog() -> Dict[str, Any]:
    """The connector catalog: actions and their JSON Schemas."""
    result: Dict[str, Any] = json.loads(_native.catalog_json())
    return result


class SupabaseExecutor:
    """Runs connector actions. Safe to share between threads and asyncio tasks."""

    def __init__(self, config: Optional[Mapping[str, Any]] = None) -> None:
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping or None, not {type(config).__name__}")
        try:
            self._native = _native.NativeExecutor(None if config is None else json.dumps(dict(config)))
        except _native.NativeError as err:
            raise _raise(err) from None
        self._closed = False

    def execute(self, action: str, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Run ``action`` with ``params``; returns the result as a dict."""
        if not isinstance(action, str):
            raise TypeError(f"action must be a str, not {type(action).__name__}")
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise InvalidParams(
                f"params must be a mapping, not {type(params).__name__}",
                {"violations": [{"path": "/", "message": "params must be a JSON object"}]},
            )
        try:
            payload = json.dumps(dict(params))
        except (TypeError, ValueError) as err:
            raise InvalidParams(f"params are not JSON-serialisable: {err}", {"violations": [{"path": "/", "message": str(err)}]}) from None
        try:
            result: Dict[str, Any] = json.loads(self._native.execute(action, payload))
        except _native.NativeError as err:
            raise _raise(err) from None
        return result

    async def execute_async(self, action: str, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """``execute`` for asyncio: runs in the default executor; the GIL is released while it waits."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.execute, action, params))

    def catalog(self) -> Dict[str, Any]:
        """The connector catalog."""
        return catalog()

    def close(self) -> None:
        """Close the connection pool."""
        if not self._closed:
            self._native.close()
            self._closed = True

    def __enter__(self) -> "SupabaseExecutor":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    async def __aenter__(self) -> "SupabaseExecutor":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SupabaseExecutor(closed={self._closed})"


def create_executor(config: Optional[Mapping[str, Any]] = None) -> SupabaseExecutor:
    """An executor for ``config`` (contract §7), or the environment when None."""
    return SupabaseExecutor(config)
