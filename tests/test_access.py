"""Access: the platform-role mapping
(docs/reference.md#platform-roles-and-access-classes) end to end (what each
class can do in its project, and nothing in another one), teams and direct
grants, downgrades, idempotent upserts and concurrent changes. API access is
checked the way PostgREST does it (tests/pgrest.py)."""

from __future__ import annotations

import concurrent.futures
import uuid
from typing import Any, Dict, Iterator, List, Set

import psycopg
import pytest

import pgrest
from conftest import Admin, catalog_snapshot, new_slug
from supabase_connector import Forbidden, InvalidParams, SupabaseExecutor

ALICE = "00000000-0000-4000-8000-00000000a11c"
BOB = "00000000-0000-4000-8000-000000000b0b"
CAROL = "00000000-0000-4000-8000-0000000ca201"

# all nine platform roles (docs/reference.md#platform-roles-and-access-classes)
MAPPING = [
    ("project_owner", "service_role"),
    ("maintainer", "service_role"),
    ("project_maintainer", "service_role"),
    ("solution_admin", "service_role"),
    ("project_contributor", "authenticated"),
    ("team_member", "authenticated"),
    ("solution_user", "authenticated"),
    ("project_viewer", "anon"),
    ("solution_viewer", "anon"),
]
RANK = {"anon": 1, "authenticated": 2, "service_role": 3}
ROLE_CLASS = dict(MAPPING)


def user(uid: str) -> Dict[str, str]:
    return {"type": "user", "id": uid}


def issue(executor: SupabaseExecutor, slug: str, principal: Dict[str, str], **params: Any) -> Dict[str, Any]:
    return executor.execute("issue_database_lease", {"project": slug, "principal": principal, **params})["lease"]


def grant(executor: SupabaseExecutor, slug: str, principal: Dict[str, str], platform_role: str, **params: Any) -> Dict[str, Any]:
    return executor.execute(
        "upsert_database_access", {"project": slug, "principal": principal, "platform_role": platform_role, **params}
    )


def team(executor: SupabaseExecutor, slug: str, team_id: str, platform_role: str, members: List[str]) -> Dict[str, Any]:
    return executor.execute(
        "upsert_database_team_access",
        {"project": slug, "team_id": team_id, "platform_role": platform_role, "members": members},
    )


def new_project(executor: SupabaseExecutor, prefix: str) -> Dict[str, Any]:
    """A project with a table `notes`: a public row and rows of alice and
    bob; everyone reads public rows, the authenticated class reads and
    writes its own (`owner = auth.uid()`)."""
    state = executor.execute("upsert_database_project_access", {"project": new_slug(prefix)})
    with psycopg.connect(state["lease"]["database"]["url"], autocommit=True) as conn:
        conn.execute(
            "create table notes (id bigserial primary key, owner uuid, body text not null, public boolean not null default false)"
        )
        conn.execute("create policy notes_public on notes for select using (public)")
        conn.execute(
            "create policy notes_own on notes for all to authenticated using (owner = auth.uid()) with check (owner = auth.uid())"
        )
        conn.execute(
            "insert into notes (owner, body, public) values (%s, 'alice', false), (%s, 'bob', false), (null, 'pub', true)",
            (ALICE, BOB),
        )
    return state


@pytest.fixture(scope="module")
def two(executor: SupabaseExecutor) -> Iterator[Dict[str, Dict[str, Any]]]:
    yield {"a": new_project(executor, "acca"), "b": new_project(executor, "accb")}


def lease_roles(admin: Admin, slug: str, active: bool) -> Set[str]:
    """The login roles of a project's database leases (API-only leases have none)."""
    cond = "is null" if active else "is not null"
    return {r[0] for r in admin.rows(
        f"select role_name from supabase_connector.leases where project = %s and revoked_at {cond} and role_name is not null",
        (slug,))}


def existing_roles(admin: Admin, names: Set[str]) -> Set[str]:
    return {r[0] for r in admin.rows("select rolname from pg_roles where rolname = any(%s)", (list(names),))}


def bodies(api: pgrest.Client, token: str, schema: str) -> Set[str]:
    return {r[0] for r in api.request(token, schema, "select body from notes")}


def refused(api: pgrest.Client, token: str, schema: str, sql: str, params: Any = ()) -> str:
    """The request fails; returns how (`kind` or the SQLSTATE)."""
    with pytest.raises(pgrest.ApiError) as err:
        api.request(token, schema, sql, params)
    return err.value.pgcode or err.value.kind


def lease_refused(api: pgrest.Client, token: str, schema: str) -> None:
    """The token is refused because its lease was revoked: the role it names
    (the project's class role) still exists and the API switches to it, then
    `pre_request` answers 401. Not the JWT, not the role switch."""
    with pytest.raises(pgrest.ApiError) as err:
        api.request(token, schema, "select 1")
    e = err.value
    assert (e.kind, e.pgcode, e.status) == ("pre_request", "PT401", 401) and "lease revoked or expired" in str(e), e


# ------------------------------------------------------------ the role mapping


@pytest.mark.parametrize("platform_role,access_class", MAPPING)
def test_platform_role_mapping(
    platform_role: str, access_class: str, executor: SupabaseExecutor, two: Dict[str, Dict[str, Any]],
    api: pgrest.Client, admin: Admin,
) -> None:
    a, b = two["a"], two["b"]
    sa, sb = a["schema"], b["schema"]
    # alternate principal types: users and named services behave alike
    if MAPPING.index((platform_role, access_class)) % 2 == 0:
        principal = user(str(uuid.uuid4()))
    else:
        principal = {"type": "service", "id": f"svc-{platform_role}-{uuid.uuid4().hex[:6]}"}
    result = grant(executor, a["project"], principal, platform_role)
    assert result["access_class"] == access_class and result["changed"] is True
    lease = result["lease"]
    assert (lease["platform_role"], lease["access_class"], lease["principal"]) == (platform_role, access_class, principal)
    claims = api.claims(lease["api"]["access_token"])
    # the token names the project's class role; the lease is its `jti`
    assert (claims["role"], claims["access_class"], claims["platform_role"], claims["project"], claims["jti"]) == (
        f"{sa}_{access_class}", access_class, platform_role, a["project"], lease["lease_id"])
    assert ("publishable_token" in lease["api"]) is (access_class == "service_role")
    if access_class == "service_role":
        assert api.claims(lease["api"]["publishable_token"])["role"] == f"{sa}_anon"
    # the lease's login role sits under exactly its class role of the project,
    # and no API login role can switch to it
    role = lease["database"]["user"]
    assert role == "lease_" + lease["lease_id"].replace("-", "")
    assert admin.value("select pg_has_role('authenticator', %s, 'MEMBER')", (role,)) is False
    for cls in ("service_role", "authenticated", "anon"):
        assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (role, f"{sa}_{cls}")) is (cls == access_class), cls
    assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (role, f"{sa}_owner")) is (access_class == "service_role")
    for other in ("owner", "service_role", "authenticated", "anon"):
        assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (role, f"{sb}_{other}")) is False

    token = lease["api"]["access_token"]
    mine = f"mine-{platform_role}-{uuid.uuid4().hex[:6]}"
    # read
    seen = bodies(api, token, sa)
    if access_class == "service_role":
        assert {"alice", "bob", "pub"} <= seen  # RLS bypassed in its own schema
    else:
        assert seen & {"alice", "bob", "pub"} == {"pub"}  # under RLS
    # write
    insert = "insert into notes (owner, body) values (auth.uid(), %s) returning owner::text"
    if access_class == "anon":
        assert refused(api, token, sa, insert, (mine,)) == "42501"
        assert refused(api, token, sa, "delete from notes where body = 'pub'") == "42501"
    else:
        assert api.request(token, sa, insert, (mine,)) == [(claims["sub"],)]
        assert mine in bodies(api, token, sa)
    if access_class == "authenticated":
        # its own rows only: another user's row is invisible to update and
        # cannot be written in their name
        assert api.request(token, sa, "update notes set body = body where body = 'alice' returning id") == []
        assert refused(api, token, sa, "insert into notes (owner, body) values (%s, 'forged')", (ALICE,)) == "42501"
    if access_class == "service_role":
        assert len(api.request(token, sa, "update notes set body = body where body in ('alice', 'bob') returning id")) == 2
    # DDL through the database lease
    with psycopg.connect(lease["database"]["url"], autocommit=True) as conn:
        assert conn.execute("select current_schema()").fetchone() == (sa,)
        table = f"ddl_{uuid.uuid4().hex[:8]}"
        if access_class == "service_role":
            conn.execute(f"create table {table} (id int)")
            assert admin.value("select relowner::regrole::text from pg_class where oid = %s::regclass",
                               (f"{sa}.{table}",)) == f"{sa}_owner"
            assert admin.value("select relrowsecurity from pg_class where oid = %s::regclass", (f"{sa}.{table}",)) is True
        else:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"create table {table} (id int)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("alter table notes add column extra int")
        # nothing in project B, even for the service class
        for sql in (f"select count(*) from {sb}.notes", f"insert into {sb}.notes (body) values ('x')",
                    f"create table {sb}.{table} (id int)", f"set role {sb}_owner"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    # nothing in project B through the API either
    for sql in (f"select count(*) from {sb}.notes", f"insert into {sb}.notes (body) values ('x')",
                f"update {sb}.notes set body = 'x'"):
        assert refused(api, token, sb, sql) == "42501", sql
    assert refused(api, token, sb, "select count(*) from notes") == "42P01"  # the schema is not on its path
    # and no lease for B: the grant is on A only
    with pytest.raises(Forbidden):
        issue(executor, b["project"], principal)
    assert admin.value("select count(*) from supabase_connector.leases where project = %s and principal_id = %s",
                       (b["project"], principal["id"])) == 0


# ------------------------------------------------------------ teams and grants


def test_two_teams_highest_class_then_downgrade(
    executor: SupabaseExecutor, two: Dict[str, Dict[str, Any]], api: pgrest.Client, admin: Admin,
) -> None:
    slug, s = two["a"]["project"], two["a"]["schema"]
    member = str(uuid.uuid4())
    suffix = uuid.uuid4().hex[:6]
    viewers, contributors = f"viewers-{suffix}", f"contributors-{suffix}"
    team(executor, slug, viewers, "project_viewer", [member])
    team(executor, slug, contributors, "project_contributor", [member, BOB])
    old = issue(executor, slug, user(member))
    assert (old["access_class"], old["platform_role"]) == ("authenticated", "project_contributor")
    token = old["api"]["access_token"]
    assert api.request(token, s, "insert into notes (owner, body) values (auth.uid(), 'by-contributor') returning body") \
        == [("by-contributor",)]
    session = psycopg.connect(old["database"]["url"], autocommit=True)
    try:
        assert session.execute("select count(*) from notes where body = 'pub'").fetchone() == (1,)
        removed = executor.execute("revoke_database_team_access", {"project": slug, "team_id": contributors})
        assert removed["removed"] is True
        assert removed["revoked_leases"] == [old["lease_id"]]
        # the old token fails at once (its role is gone), its session is over
        lease_refused(api, token, s)
        with pytest.raises(psycopg.OperationalError):
            session.execute("select 1")
    finally:
        session.close()
    assert existing_roles(admin, {old["database"]["user"]}) == set()
    assert admin.rows("select revoke_reason from supabase_connector.leases where lease_id = %s", (old["lease_id"],)) \
        == [("access removed",)]
    # what it wrote stays
    assert admin.value(f"select count(*) from {s}.notes where body = 'by-contributor'") == 1
    # a new lease is anon-class: it reads, it cannot write
    new = issue(executor, slug, user(member))
    assert (new["access_class"], new["platform_role"]) == ("anon", "project_viewer")
    assert bodies(api, new["api"]["access_token"], s) & {"pub", "by-contributor"} == {"pub"}
    assert refused(api, new["api"]["access_token"], s, "insert into notes (owner, body) values (auth.uid(), 'x')") == "42501"
    # removing a team it is not in leaves its lease alone
    others = f"others-{suffix}"
    team(executor, slug, others, "project_owner", [CAROL])
    assert executor.execute("revoke_database_team_access", {"project": slug, "team_id": others})["revoked_leases"] == []
    assert api.allowed(new["api"]["access_token"], s, "select 1")


def test_non_member_is_forbidden(executor: SupabaseExecutor, two: Dict[str, Dict[str, Any]], admin: Admin) -> None:
    slug = two["a"]["project"]
    team(executor, slug, f"others-{uuid.uuid4().hex[:6]}", "project_owner", [ALICE])
    stranger = str(uuid.uuid4())
    for principal in (user(stranger), {"type": "service", "id": f"nobody-{uuid.uuid4().hex[:6]}"}):
        with pytest.raises(Forbidden) as err:
            issue(executor, slug, principal)
        assert principal["id"] in str(err.value)
    assert admin.value("select count(*) from supabase_connector.leases where principal_id = %s", (stranger,)) == 0


def test_removed_member_token_fails_at_once(
    executor: SupabaseExecutor, two: Dict[str, Dict[str, Any]], api: pgrest.Client, admin: Admin,
) -> None:
    slug, s = two["a"]["project"], two["a"]["schema"]
    stays, leaves = str(uuid.uuid4()), str(uuid.uuid4())
    crew = f"crew-{uuid.uuid4().hex[:6]}"
    team(executor, slug, crew, "team_member", [stays, leaves])
    roles_before = admin.value("select count(*) from pg_roles")
    keep = issue(executor, slug, user(stays), database=False)
    gone = issue(executor, slug, user(leaves), database=False)
    # API tokens only: the class role, no role of the lease's own
    assert gone["database"] is None and keep["database"] is None
    assert api.claims(gone["api"]["access_token"])["role"] == f"{s}_authenticated"
    assert admin.value("select count(*) from pg_roles") == roles_before
    assert admin.rows("select role_name, database from supabase_connector.leases where lease_id = any(%s::uuid[])",
                      ([keep["lease_id"], gone["lease_id"]],)) == [(None, False)] * 2
    gone_role = "lease_" + gone["lease_id"].replace("-", "")
    for lease in (keep, gone):
        assert api.request(lease["api"]["access_token"], s, "select auth.uid()::text") == [(lease["principal"]["id"],)]
    result = team(executor, slug, crew, "team_member", [stays])
    assert (result["removed"], result["added"], result["revoked_leases"]) == ([leaves], [], [gone["lease_id"]])
    lease_refused(api, gone["api"]["access_token"], s)
    assert api.request(keep["api"]["access_token"], s, "select auth.uid()::text") == [(stays,)]
    with pytest.raises(Forbidden):
        issue(executor, slug, user(leaves))
    assert existing_roles(admin, {gone_role}) == set()
    # the team itself downgraded to viewer: the remaining contributor lease goes
    result = team(executor, slug, crew, "solution_viewer", [stays])
    assert (result["access_class"], result["revoked_leases"]) == ("anon", [keep["lease_id"]])
    lease_refused(api, keep["api"]["access_token"], s)
    assert issue(executor, slug, user(stays))["access_class"] == "anon"


def test_grant_on_one_project_only(
    executor: SupabaseExecutor, two: Dict[str, Dict[str, Any]], api: pgrest.Client, admin: Admin,
) -> None:
    a, b = two["a"], two["b"]
    someone = str(uuid.uuid4())
    lease_a = grant(executor, a["project"], user(someone), "project_contributor")["lease"]
    crew = f"only-a-{uuid.uuid4().hex[:6]}"
    team(executor, a["project"], crew, "project_owner", [someone])
    owner_lease = issue(executor, a["project"], user(someone))
    assert owner_lease["access_class"] == "service_role"
    with pytest.raises(Forbidden):
        issue(executor, b["project"], user(someone))
    # removing the direct grant leaves the team's class: the contributor
    # lease stays (its class is still covered)
    assert executor.execute("revoke_database_access", {"project": a["project"], "principal": user(someone)})["revoked_leases"] == []
    assert api.allowed(lease_a["api"]["access_token"], a["schema"], "select 1")
    # with the team gone too, nothing is left: every lease of it is revoked
    result = executor.execute("revoke_database_team_access", {"project": a["project"], "team_id": crew})
    assert sorted(result["revoked_leases"]) == sorted([lease_a["lease_id"], owner_lease["lease_id"]])
    for lease in (lease_a, owner_lease):
        lease_refused(api, lease["api"]["access_token"], a["schema"])
    with pytest.raises(Forbidden):
        issue(executor, a["project"], user(someone))
    assert admin.value("select count(*) from supabase_connector.leases where project = %s and principal_id = %s",
                       (b["project"], someone)) == 0


def test_direct_grant_downgrade(
    executor: SupabaseExecutor, two: Dict[str, Dict[str, Any]], api: pgrest.Client, admin: Admin,
) -> None:
    slug, s = two["a"]["project"], two["a"]["schema"]
    principal = {"type": "service", "id": f"pipeline-{uuid.uuid4().hex[:6]}"}
    old = grant(executor, slug, principal, "solution_admin")["lease"]
    assert old["access_class"] == "service_role"
    assert api.allowed(old["api"]["access_token"], s, "select count(*) from notes")
    # the same grant, lower: the service-class lease goes in the same call that
    # hands out the new, lower one
    result = grant(executor, slug, principal, "solution_user")
    assert (result["changed"], result["access_class"], result["revoked_leases"]) == (True, "authenticated", [old["lease_id"]])
    assert result["lease"]["access_class"] == "authenticated"
    lease_refused(api, old["api"]["access_token"], s)
    lease_refused(api, old["api"]["publishable_token"], s)
    assert existing_roles(admin, {old["database"]["user"]}) == set()
    new_token = result["lease"]["api"]["access_token"]
    assert bodies(api, new_token, s) & {"alice", "bob", "pub"} == {"pub"}
    # raising it again revokes nothing
    up = grant(executor, slug, principal, "maintainer", issue_lease=False)
    assert (up["changed"], up["revoked_leases"]) == (True, [])
    assert api.allowed(new_token, s, "select 1")


def test_unknown_platform_role_is_refused(executor: SupabaseExecutor, two: Dict[str, Dict[str, Any]]) -> None:
    slug = two["a"]["project"]
    for action, params in (
        ("upsert_database_access", {"principal": user(ALICE), "platform_role": "admin"}),
        ("upsert_database_team_access", {"team_id": "x", "platform_role": "admin", "members": []}),
    ):
        with pytest.raises(InvalidParams) as err:
            executor.execute(action, {"project": slug, **params})
        assert "/platform_role" in str(err.value) + str(err.value.details)
    described = executor.execute("describe_database_project", {"project": slug})
    assert "x" not in [x["team_id"] for x in described["teams"]]
    assert ALICE not in [g["principal"]["id"] for g in described["grants"]]


def registry_state(admin: Admin, slug: str) -> Dict[str, Any]:
    return {
        "project": admin.rows("select * from supabase_connector.projects where slug = %s", (slug,)),
        "grants": admin.rows("select * from supabase_connector.grants where project = %s order by 2, 3", (slug,)),
        "teams": admin.rows("select * from supabase_connector.teams where project = %s order by 2", (slug,)),
        "members": admin.rows("select * from supabase_connector.team_members where project = %s order by 2, 3", (slug,)),
        "leases": admin.rows("select * from supabase_connector.leases where project = %s order by 1", (slug,)),
    }


def test_upserting_twice_changes_nothing(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("idem")
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    first_team = team(executor, slug, "devs", "project_contributor", [ALICE, BOB])
    first_grant = grant(executor, slug, user(CAROL), "project_viewer", issue_lease=False)
    assert first_team["changed"] is True and first_grant["changed"] is True
    catalog = catalog_snapshot(admin, f"proj_{slug}")
    registry = registry_state(admin, slug)
    changes = admin.value("select count(*) from supabase_connector.audit_log where project = %s and changed", (slug,))
    last_id = admin.value("select max(id) from supabase_connector.audit_log")

    again_team = team(executor, slug, "devs", "project_contributor", [BOB, ALICE])  # same set, other order
    again_grant = grant(executor, slug, user(CAROL), "project_viewer", issue_lease=False)
    assert (again_team["changed"], again_team["added"], again_team["removed"], again_team["revoked_leases"]) == (False, [], [], [])
    assert (again_grant["changed"], again_grant["revoked_leases"]) == (False, [])
    assert catalog_snapshot(admin, f"proj_{slug}") == catalog
    assert registry_state(admin, slug) == registry
    assert admin.value("select count(*) from supabase_connector.audit_log where project = %s and changed", (slug,)) == changes
    # each call is audited, as no change
    assert admin.rows(
        "select action, changed from supabase_connector.audit_log where project = %s and id > %s order by id", (slug, last_id)
    ) == [("upsert_database_team_access", False), ("upsert_database_access", False)]


def test_concurrent_team_updates_and_issues(executor: SupabaseExecutor, api: pgrest.Client, admin: Admin) -> None:
    slug = new_slug("conc")
    s = f"proj_{slug}"
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    users = [str(uuid.uuid4()) for _ in range(4)]
    for u in users:  # a floor, so an issue is never forbidden
        grant(executor, slug, user(u), "project_viewer", issue_lease=False)
    cycle = ["project_contributor", "project_owner", "solution_viewer", "team_member"]
    jobs: List[Dict[str, Any]] = []
    for i in range(32):
        if i % 2 == 0:
            members = [u for j, u in enumerate(users) if (i // 2 + j) % 3 != 0]
            jobs.append({"kind": "team", "team_id": f"team{i % 3}", "platform_role": cycle[(i // 2) % 4], "members": members})
        else:
            jobs.append({"kind": "issue", "user": users[i % 4], "database": i % 3 == 0})

    def run(job: Dict[str, Any]) -> Dict[str, Any]:
        if job["kind"] == "team":
            return team(executor, slug, job["team_id"], job["platform_role"], job["members"])
        return issue(executor, slug, user(job["user"]), database=job["database"], lease_ttl_seconds=600)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, jobs))
    issued = [r for job, r in zip(jobs, results) if job["kind"] == "issue"]
    assert len({x["lease_id"] for x in issued}) == 16

    # each team ends as its last applied update (the project lock orders them;
    # the audit log records that order)
    last: Dict[str, Any] = {}
    for params, in admin.rows(
        "select params from supabase_connector.audit_log where project = %s and action = 'upsert_database_team_access' order by id",
        (slug,),
    ):
        last[params["team_id"]] = params
    assert len(last) == 3
    stored = {r[0]: (r[1], sorted(r[2] or [])) for r in admin.rows(
        "select t.team_id, t.platform_role, array(select m.user_id::text from supabase_connector.team_members m "
        "where m.project = t.project and m.team_id = t.team_id) from supabase_connector.teams t where t.project = %s", (slug,))}
    assert stored == {t: (p["platform_role"], sorted(p["members"])) for t, p in last.items()}

    # no active lease exceeds its holder's effective class now
    def effective(u: str) -> int:
        ranks = [RANK["anon"]]  # the direct viewer grant
        ranks += [RANK[ROLE_CLASS[p["platform_role"]]] for p in last.values() if u in p["members"]]
        return max(ranks)

    active = admin.rows(
        "select lease_id::text, principal_id, access_class, role_name from supabase_connector.leases "
        "where project = %s and revoked_at is null", (slug,))
    for lease_id, holder, cls, _ in active:
        assert RANK[cls] <= effective(holder), (lease_id, holder, cls)
    # registry and catalog agree: active leases have roles, revoked ones none
    assert existing_roles(admin, lease_roles(admin, slug, active=True)) == lease_roles(admin, slug, active=True)
    assert existing_roles(admin, lease_roles(admin, slug, active=False)) == set()
    for lease_id, _, cls, role in active:
        database = next(x["database"] is not None for x in issued if x["lease_id"] == lease_id)
        assert (role is not None) is database, lease_id  # an API-only lease has no role
        if role is not None:
            assert admin.value("select pg_has_role(%s, %s, 'MEMBER')", (role, f"{s}_{cls}")) is True
    active_ids = {r[0] for r in active}
    revoked = dict(admin.rows("select lease_id::text, revoke_reason from supabase_connector.leases "
                              "where project = %s and revoked_at is not null", (slug,)))
    assert set(revoked.values()) <= {"access removed"}
    for x in issued:
        assert (x["lease_id"] in active_ids) != (x["lease_id"] in revoked)
        assert api.allowed(x["api"]["access_token"], s, "select 1") is (x["lease_id"] in active_ids)
    report = executor.execute("verify_database_project", {"project": slug})
    assert report["clean"] is True, report["findings"]
    assert executor.execute("describe_database_project", {"project": slug})["active_leases"] == len(active)
