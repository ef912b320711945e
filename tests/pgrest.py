"""Requests the way PostgREST makes them: verify the
JWT (HS256, `exp`), connect as `authenticator`, and in one transaction set
`search_path`, `role` and `request.jwt.claims` with `set_config(…, true)`,
then run the statement. Anything PostgREST would refuse raises `ApiError`."""

from __future__ import annotations

import json
from typing import Any, List, Optional, Sequence

import jwt as pyjwt
import psycopg


class ApiError(Exception):
    """A refused request. `kind`: jwt_invalid, jwt_expired, role_switch, db;
    `pgcode`: the SQLSTATE for database errors."""

    def __init__(self, kind: str, message: str, pgcode: Optional[str] = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.pgcode = pgcode


class Client:
    """One connection as `authenticator`, reused across requests like
    PostgREST's pool."""

    def __init__(self, dsn: str, jwt_secret: str) -> None:
        self.dsn = dsn
        self.jwt_secret = jwt_secret
        self._conn: Optional[psycopg.Connection] = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn)
        return self._conn

    def claims(self, token: str) -> dict:
        try:
            return dict(pyjwt.decode(token, self.jwt_secret, algorithms=["HS256"], options={"verify_aud": False}))
        except pyjwt.ExpiredSignatureError as e:
            raise ApiError("jwt_expired", str(e)) from None
        except pyjwt.InvalidTokenError as e:
            raise ApiError("jwt_invalid", str(e)) from None

    #: Whether the last request's statement returned rows (a result set).
    last_had_result = False

    def request(
        self, token: str, schema: str, sql: str, params: Sequence[Any] = (), rollback: bool = False
    ) -> List[tuple]:
        """Run `sql` as the token's role with `schema` as the profile; returns
        rows. With `rollback`, the transaction is rolled back afterwards."""
        claims = self.claims(token)
        role = str(claims.get("role", "anon"))
        conn = self._connection()
        out: List[tuple] = []
        try:
            with conn.transaction():
                with conn.cursor() as cur:
                    try:
                        cur.execute(
                            "select set_config('search_path', %s, true), set_config('role', %s, true), "
                            "set_config('request.jwt.claims', %s, true), set_config('request.method', 'POST', true)",
                            (f'"{schema}", public', role, json.dumps(claims)),
                        )
                    except psycopg.Error as e:
                        raise ApiError("role_switch", str(e).strip(), e.sqlstate) from None
                    try:
                        cur.execute(sql, params)
                        out = cur.fetchall() if cur.description else []
                        self.last_had_result = cur.description is not None
                    except psycopg.Error as e:
                        raise ApiError("db", str(e).strip(), e.sqlstate) from None
                if rollback:
                    raise psycopg.Rollback()
        except psycopg.OperationalError:
            self.close()
            raise
        return out

    def allowed(self, token: str, schema: str, sql: str, params: Sequence[Any] = ()) -> bool:
        """True when the request succeeds, False when PostgREST would refuse it."""
        try:
            self.request(token, schema, sql, params)
            return True
        except ApiError:
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
