"""Requests the way PostgREST makes them: verify the JWT (HS256, `exp`),
connect as the API's login role (`authenticator`, a pool's or an isolated
project's), and in one transaction set `search_path`, `role` and
`request.jwt.claims` with `set_config(…, true)`, run the `db-pre-request`
function (`supabase_connector_api.pre_request()`, as the connector configures
PostgREST), then the statement. Anything PostgREST would refuse raises
`ApiError`; a `PTxxx` SQLSTATE raised by the pre-request function becomes
that HTTP status, as PostgREST answers it."""

from __future__ import annotations

import json
from typing import Any, List, Optional, Sequence

import jwt as pyjwt
import psycopg


class ApiError(Exception):
    """A refused request. `kind`: jwt_invalid, jwt_expired, role_switch,
    pre_request, db; `pgcode`: the SQLSTATE for database errors; `status`:
    the HTTP status PostgREST answers with."""

    def __init__(self, kind: str, message: str, pgcode: Optional[str] = None, status: int = 400) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.pgcode = pgcode
        self.status = status


#: PostgREST's `db-pre-request` as the connector configures it.
PRE_REQUEST = "supabase_connector_api.pre_request"


def _status(sqlstate: Optional[str], anonymous: bool) -> int:
    """The HTTP status PostgREST gives a database error."""
    if sqlstate and sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:])
    if sqlstate == "42501":
        return 401 if anonymous else 403
    if sqlstate == "57014":
        return 500
    return 400


class Client:
    """One connection as `authenticator`, reused across requests like
    PostgREST's pool."""

    def __init__(self, dsn: str, jwt_secret: str, anon_role: str = "anon", pre_request: Optional[str] = PRE_REQUEST) -> None:
        self.dsn = dsn
        self.jwt_secret = jwt_secret
        self.anon_role = anon_role
        self.pre_request = pre_request
        self._conn: Optional[psycopg.Connection] = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn)
        return self._conn

    def claims(self, token: str) -> dict:
        try:
            return dict(pyjwt.decode(token, self.jwt_secret, algorithms=["HS256"], options={"verify_aud": False}))
        except pyjwt.ExpiredSignatureError as e:
            raise ApiError("jwt_expired", str(e), status=401) from None
        except pyjwt.InvalidTokenError as e:
            raise ApiError("jwt_invalid", str(e), status=401) from None

    #: Whether the last request's statement returned rows (a result set).
    last_had_result = False

    def request(
        self, token: Optional[str], schema: str, sql: str, params: Sequence[Any] = (), rollback: bool = False
    ) -> List[tuple]:
        """Run `sql` as the token's role (the anonymous role without a token)
        with `schema` as the profile; returns rows. With `rollback`, the
        transaction is rolled back afterwards."""
        claims = self.claims(token) if token is not None else {}
        role = str(claims.get("role", self.anon_role))
        anonymous = token is None
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
                        raise ApiError("role_switch", str(e).strip(), e.sqlstate, _status(e.sqlstate, anonymous)) from None
                    # PostgREST applies the settings of the role it switched
                    # to (not of that role's parents), such as statement_timeout:
                    # as its queryRoleSettings reads them, cluster-wide settings
                    # of roles its login role is a direct member of, that a
                    # session may set, values lowercased
                    cur.execute(
                        "with kv as (select r.rolname, substr(c, 1, strpos(c, '=') - 1) as key, "
                        "lower(substr(c, strpos(c, '=') + 1)) as value "
                        "from pg_auth_members m join pg_roles r on r.oid = m.roleid, unnest(r.rolconfig) c "
                        "where m.member = session_user::regrole) "
                        "select kv.key, kv.value from kv join pg_settings ps on ps.name = kv.key "
                        "where kv.rolname = %s and (ps.context = 'user' "
                        "or has_parameter_privilege(session_user::regrole::oid, ps.name, 'set'))",
                        (role,),
                    )
                    for name, value in cur.fetchall():
                        cur.execute("select set_config(%s, %s, true)", (name, value))
                    if self.pre_request:
                        try:
                            cur.execute(f"select {self.pre_request}()")
                        except psycopg.Error as e:
                            raise ApiError("pre_request", str(e).strip(), e.sqlstate, _status(e.sqlstate, anonymous)) from None
                    try:
                        cur.execute(sql, params)
                        out = cur.fetchall() if cur.description else []
                        self.last_had_result = cur.description is not None
                    except psycopg.Error as e:
                        raise ApiError("db", str(e).strip(), e.sqlstate, _status(e.sqlstate, anonymous)) from None
                if rollback:
                    raise psycopg.Rollback()
        except psycopg.OperationalError:
            self.close()
            raise
        return out

    def allowed(self, token: Optional[str], schema: str, sql: str, params: Sequence[Any] = ()) -> bool:
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
