"""Issue 5: team and individual access, effective classes, cascading
revocation; API access checked the PostgREST way."""

from __future__ import annotations

import concurrent.futures
import random
import uuid
from typing import Any, Dict, Iterator, List

import psycopg
import pytest

import pgrest
from conftest import Admin, catalog_snapshot, new_slug
from supabase_connector import Forbidden, InvalidParams, SupabaseExecutor

CLASS_OF = {
    "project_owner": "service_role",
    "maintainer": "service_role",
    "project_maintainer": "service_role",
    "solution_admin": "service_role",
    "project_contributor": "authenticated",
    "team_member": "authenticated",
    "solution_user": "authenticated",
    "project_viewer": "anon",
    "solution_viewer": "anon",
}
ALICE = "00000000-0000-4000-8000-00000000a11c"
BOB = "00000000-0000-4000-8000-000000000b0b"
CAROL = "00000000-0000-4000-8000-0000000ca201"


def user(uid: str) -> Dict[str, str]:
    return {"type": "user", "id": uid}


def issue(executor: SupabaseExecutor, slug: str, uid: str, **params: Any) -> Dict[str, Any]:
    return executor.execute("issue_database_lease", {"project": slug, "principal": user(uid), **params})["lease"]


@pytest.fixture(scope="module")
def pair(executor: SupabaseExecutor) -> Iterator[Dict[str, str]]:
    """Projects A and B with a table `notes` (a row per user, a permissive
    read policy for everyone, writes for authenticated users)."""
    out = {}
    for name in ("a", "b"):
        state = executor.execute("upsert_database_project_access", {"project": new_slug(f"ac{name}")})
        with psycopg.connect(state["lease"]["database"]["url"], autocommit=True) as conn:
            conn.execute("create table notes (id bigserial primary key, owner uuid default auth.uid(), body text)")
            conn.execute("create policy read_all on notes for select using (true)")
            conn.execute("create policy write_own on notes for insert to authenticated with check (owner = auth.uid())")
            conn.execute("insert into notes (owner, body) values (null, 'seed')")
        out[name] = state["project"]
    yield out


def capabilities(api: pgrest.Client, token: str, schema: str) -> Dict[str, bool]:
    return {
        "read": api.allowed(token, schema, "select count(*) from notes"),
        "write": api.allowed(token, schema, "insert into notes (body) values ('x')"),
        "ddl": api.allowed(token, schema, "create table ddl_probe (id int)") and api.allowed(token, schema, "drop table ddl_probe"),
    }


EXPECTED = {
    "service_role": {"read": True, "write": True, "ddl": True},
    "authenticated": {"read": True, "write": True, "ddl": False},
    "anon": {"read": True, "write": False, "ddl": False},
}


@pytest.mark.parametrize("platform_role", sorted(CLASS_OF))
def test_each_platform_role(executor: SupabaseExecutor, api: pgrest.Client, pair: Dict[str, str], platform_role: str) -> None:
    uid = str(uuid.uuid4())  # a user of its own: grants of one case do not leak into another
    a, b = pair["a"], pair["b"]
    result = executor.execute(
        "upsert_database_access", {"project": a, "principal": user(uid), "platform_role": platform_role}
    )
    lease = result["lease"]
    cls = CLASS_OF[platform_role]
    assert result["access_class"] == cls and lease["access_class"] == cls and lease["platform_role"] == platform_role
    token = lease["api"]["access_token"]
    assert capabilities(api, token, f"proj_{a}") == EXPECTED[cls]
    # nothing in the second project, whatever the class
    assert capabilities(api, token, f"proj_{b}") == {"read": False, "write": False, "ddl": False}
    assert not api.allowed(token, f"proj_{a}", f"select count(*) from proj_{b}.notes")
    # a lease for B is forbidden: the grant is on A only
    with pytest.raises(Forbidden):
        issue(executor, b, uid)


def test_unknown_platform_role_names_the_allowed_ones(executor: SupabaseExecutor, pair: Dict[str, str]) -> None:
    with pytest.raises(InvalidParams) as err:
        executor.execute("upsert_database_access", {"project": pair["a"], "principal": user(ALICE), "platform_role": "admin"})
    text = str(err.value) + str(err.value.details)
    for role in CLASS_OF:
        assert role in text


def test_two_teams_then_downgrade(executor: SupabaseExecutor, api: pgrest.Client, admin: Admin) -> None:
    slug = new_slug("teams")
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    uid = str(uuid.uuid4())
    executor.execute("upsert_database_team_access", {"project": slug, "team_id": "viewers", "platform_role": "project_viewer", "members": [uid]})
    executor.execute("upsert_database_team_access", {"project": slug, "team_id": "writers", "platform_role": "project_contributor", "members": [uid]})
    lease = issue(executor, slug, uid)
    assert lease["access_class"] == "authenticated"
    result = executor.execute("revoke_database_team_access", {"project": slug, "team_id": "writers"})
    assert result["revoked_leases"] == [lease["lease_id"]]
    assert not api.allowed(lease["api"]["access_token"], f"proj_{slug}", "select 1")
    assert admin.value("select count(*) from pg_roles where rolname = %s", (lease["database"]["user"],)) == 0
    again = issue(executor, slug, uid)
    assert again["access_class"] == "anon"
    # a viewer's lease survives removing another team it is not in
    executor.execute("upsert_database_team_access", {"project": slug, "team_id": "others", "platform_role": "project_owner", "members": [CAROL]})
    assert executor.execute("revoke_database_team_access", {"project": slug, "team_id": "others"})["revoked_leases"] == []
    assert api.allowed(again["api"]["access_token"], f"proj_{slug}", "select 1")


def test_member_removal_and_role_change_cascade(executor: SupabaseExecutor, api: pgrest.Client) -> None:
    slug = new_slug("casc")
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    u1, u2 = str(uuid.uuid4()), str(uuid.uuid4())
    executor.execute("upsert_database_team_access", {"project": slug, "team_id": "t", "platform_role": "project_contributor", "members": [u1, u2]})
    l1, l2 = issue(executor, slug, u1), issue(executor, slug, u2)
    # u1 leaves the team: its live token fails at once
    result = executor.execute("upsert_database_team_access", {"project": slug, "team_id": "t", "platform_role": "project_contributor", "members": [u2]})
    assert result["removed"] == [u1] and result["revoked_leases"] == [l1["lease_id"]]
    assert not api.allowed(l1["api"]["access_token"], f"proj_{slug}", "select 1")
    with pytest.raises(Forbidden):
        issue(executor, slug, u1)
    # the team is downgraded to viewer: u2's authenticated lease goes
    result = executor.execute("upsert_database_team_access", {"project": slug, "team_id": "t", "platform_role": "project_viewer", "members": [u2]})
    assert result["revoked_leases"] == [l2["lease_id"]]
    assert issue(executor, slug, u2)["access_class"] == "anon"
    # a direct grant revoked: its lease goes too
    executor.execute("upsert_database_access", {"project": slug, "principal": user(u1), "platform_role": "project_owner", "issue_lease": False})
    l3 = issue(executor, slug, u1)
    assert l3["access_class"] == "service_role"
    result = executor.execute("revoke_database_access", {"project": slug, "principal": user(u1)})
    assert result["revoked_leases"] == [l3["lease_id"]]
    assert not api.allowed(l3["api"]["access_token"], f"proj_{slug}", "select 1")


def test_non_member_is_forbidden(executor: SupabaseExecutor, pair: Dict[str, str]) -> None:
    with pytest.raises(Forbidden) as err:
        issue(executor, pair["a"], str(uuid.uuid4()))
    assert err.value.code == "forbidden"


def test_upserting_twice_changes_nothing(executor: SupabaseExecutor, admin: Admin) -> None:
    slug = new_slug("idem")
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    team = {"project": slug, "team_id": "t1", "platform_role": "project_contributor", "members": [ALICE, BOB]}
    grant = {"project": slug, "principal": user(CAROL), "platform_role": "project_viewer", "issue_lease": False}
    first_team = executor.execute("upsert_database_team_access", team)
    first_grant = executor.execute("upsert_database_access", grant)
    assert first_team["changed"] is True and first_grant["changed"] is True

    def registry() -> List[Any]:
        return [
            admin.rows("select * from supabase_connector.teams where project = %s order by team_id", (slug,)),
            admin.rows("select project, team_id, user_id from supabase_connector.team_members where project = %s order by 1, 2, 3", (slug,)),
            admin.rows("select * from supabase_connector.grants where project = %s order by principal_id", (slug,)),
        ]

    before = (registry(), catalog_snapshot(admin, f"proj_{slug}"))
    changes_before = admin.value("select count(*) from supabase_connector.audit_log where project = %s and changed", (slug,))
    second_team = executor.execute("upsert_database_team_access", {**team, "members": [BOB, ALICE]})
    second_grant = executor.execute("upsert_database_access", grant)
    assert second_team["changed"] is False and second_team["added"] == [] and second_team["removed"] == []
    assert second_grant["changed"] is False
    assert (registry(), catalog_snapshot(admin, f"proj_{slug}")) == before
    assert admin.value("select count(*) from supabase_connector.audit_log where project = %s and changed", (slug,)) == changes_before


def test_concurrent_team_updates_and_leases(executor: SupabaseExecutor, admin: Admin, api: pgrest.Client) -> None:
    slug = new_slug("conc")
    executor.execute("upsert_database_project_access", {"project": slug, "issue_lease": False})
    people = [str(uuid.uuid4()) for _ in range(8)]
    rng = random.Random(7)
    plans = []
    for i in range(32):
        if i % 2 == 0:
            members = sorted(rng.sample(people, 4))
            role = rng.choice(["project_contributor", "project_viewer", "project_owner"])
            plans.append(("team", f"team{i % 4}", role, members))
        else:
            plans.append(("lease", None, None, [rng.choice(people)]))

    def run(plan: Any) -> Any:
        kind, team, role, members = plan
        if kind == "team":
            return executor.execute("upsert_database_team_access", {"project": slug, "team_id": team, "platform_role": role, "members": members})
        try:
            return issue(executor, slug, members[0], database=False)
        except Forbidden:
            return None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(run, plans))
    # consistent: every live lease is at most its principal's effective class now
    rank = {"anon": 0, "authenticated": 1, "service_role": 2}
    effective: Dict[str, str] = {}
    for team_id, cls in admin.rows("select team_id, access_class from supabase_connector.teams where project = %s", (slug,)):
        for (uid,) in admin.rows("select user_id::text from supabase_connector.team_members where project = %s and team_id = %s", (slug, team_id)):
            if uid not in effective or rank[cls] > rank[effective[uid]]:
                effective[uid] = cls
    live = admin.rows(
        "select principal_id, access_class, role_name from supabase_connector.leases where project = %s and revoked_at is null", (slug,)
    )
    for uid, cls, role in live:
        assert uid in effective and rank[cls] <= rank[effective[uid]], (uid, cls, effective.get(uid))
        assert admin.value("select count(*) from pg_roles where rolname = %s", (role,)) == 1
    assert executor.execute("verify_database_project", {"project": slug})["clean"] is True
