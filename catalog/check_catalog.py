#!/usr/bin/env python3
"""Check catalog/connector-catalog.json.

Structural checks need only the standard library. With `jsonschema`
installed (pip install jsonschema), every params and result schema is also
checked as a draft 2020-12 schema, built the way the Rust side builds it
({"$defs": catalog["$defs"], **schema}), and example objects are validated:
valid ones must pass, invalid ones must fail at the expected JSON pointer.

Usage: python3 catalog/check_catalog.py [path/to/connector-catalog.json]
Exit status 0 when every check passes.
"""

import copy
import json
import pathlib
import re
import sys

PATH = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).with_name("connector-catalog.json")

ACTIONS = [
    "upsert_database_project_access",
    "upsert_database_team_access",
    "upsert_database_access",
    "issue_database_lease",
    "renew_database_lease",
    "revoke_database_lease",
    "revoke_database_access",
    "revoke_database_team_access",
    "remove_database_project",
    "apply_database_migrations",
    "verify_database_project",
    "describe_database_project",
    "reap_expired_leases",
]

# Optional keys deliberately without a schema default: omitting them means
# "keep the stored value", "use the configured value" or "all projects".
NO_DEFAULT = {
    ("upsert_database_project_access", "expose"),
    ("upsert_database_project_access", "isolation"),
    ("upsert_database_project_access", "tenant_code"),
    ("upsert_database_project_access", "limits"),
    ("upsert_database_project_access", "pool"),
    ("upsert_database_project_access", "lease_ttl_seconds"),
    ("upsert_database_access", "lease_ttl_seconds"),
    ("issue_database_lease", "lease_ttl_seconds"),
    ("renew_database_lease", "ttl_seconds"),
    ("verify_database_project", "project"),
}

DRY_RUN = {"type": "boolean", "default": False, "description": "return the plan (SQL) instead of applying it"}

# Actions whose dry run returns their own result shape (with "dry_run": true)
# instead of $defs/plan.
OWN_DRY_RUN = {"apply_database_migrations"}

failures = []
passes = 0


def check(cond, what):
    global passes
    if cond:
        passes += 1
    else:
        failures.append(what)


# ---------------------------------------------------------------- structure

cat = json.loads(PATH.read_text(encoding="utf-8"))
defs = cat["$defs"]
actions = cat["actions"]

for key in ["id", "name", "version", "kind", "scope", "targets", "description", "secrets", "role_mapping", "$defs", "actions"]:
    check(key in cat, f"top-level key {key} missing")
check(cat["id"] == "supabase", "id is not supabase")
check(set(cat["secrets"]["reads"]) <= set(cat["secrets"]["keys"]), "secrets.reads not a subset of secrets.keys")
check(set(cat["role_mapping"]) == set(defs["platform_role"]["enum"]), "role_mapping keys != $defs.platform_role")
check(set(cat["role_mapping"].values()) <= set(defs["access_class"]["enum"]), "role_mapping values outside $defs.access_class")
check(list(actions) == ACTIONS, f"actions differ from the expected list: {sorted(set(actions) ^ set(ACTIONS))}")


def walk(node, pointer):
    """Yield (pointer, node) for every dict in the tree."""
    if isinstance(node, dict):
        yield pointer, node
        for k, v in node.items():
            yield from walk(v, f"{pointer}/{k}")
    elif isinstance(node, list):
        for n, v in enumerate(node):
            yield from walk(v, f"{pointer}/{n}")


for pointer, node in walk({"$defs": defs, "actions": actions}, ""):
    ref = node.get("$ref")
    if ref is not None:
        m = re.fullmatch(r"#/\$defs/([A-Za-z0-9_]+)", ref)
        check(m is not None and m.group(1) in defs, f"{pointer}: bad $ref {ref!r}")
    if isinstance(node.get("pattern"), str):
        try:
            re.compile(node["pattern"])
            check(True, "")
        except re.error as e:
            check(False, f"{pointer}: pattern does not compile: {e}")
    props = node.get("properties")
    if isinstance(props, dict) and not pointer.endswith("/properties"):
        for name, sub in props.items():
            check(isinstance(sub, dict) and "description" in sub, f"{pointer}/properties/{name}: no description")

for name, action in actions.items():
    for key in ["description", "mutates", "issues_lease", "params", "result"]:
        check(key in action, f"{name}: {key} missing")
    p = action["params"]
    check(p.get("type") == "object", f"{name}: params type is not object")
    check(p.get("additionalProperties") is False, f"{name}: params allow unknown keys")
    check(isinstance(p.get("required"), list), f"{name}: params list no required")
    if name in OWN_DRY_RUN:
        dry = p["properties"].get("dry_run", {})
        check(dry.get("type") == "boolean" and dry.get("default") is False and "description" in dry,
              f"{name}: dry_run property missing or not a boolean defaulting to false")
    else:
        check(p["properties"].get("dry_run") == DRY_RUN, f"{name}: dry_run property missing or different")
    for req in p.get("required", []):
        check(req in p["properties"], f"{name}: required {req} is not a property")
    for key, sub in p["properties"].items():
        if key in p.get("required", []):
            check("default" not in sub, f"{name}.{key}: required key has a default")
        elif (name, key) in NO_DEFAULT:
            check("default" not in sub, f"{name}.{key}: should have no default (omitted has a meaning)")
        else:
            check("default" in sub, f"{name}.{key}: optional key without a default")
    r = action["result"]
    if name in OWN_DRY_RUN:
        check("dry_run" in r.get("required", []), f"{name}: its own dry-run result does not require dry_run")
    elif action["mutates"]:
        alts = r.get("anyOf", [])
        check({"$ref": "#/$defs/plan"} in [{"$ref": a.get("$ref")} for a in alts if "$ref" in a],
              f"{name}: mutating action whose result does not admit the plan")
    if action["issues_lease"]:
        normal = r["anyOf"][0] if "anyOf" in r else r
        check("lease" in normal["properties"], f"{name}: issues_lease but no lease in the result")

print(f"structure: {len(actions)} actions, {len(defs)} $defs, {passes} checks, {len(failures)} failures")

# ---------------------------------------------------------------- jsonschema

try:
    from jsonschema import Draft202012Validator
except ImportError:
    print("jsonschema not installed: schema and example checks skipped (pip install jsonschema)")
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


def build(schema):
    """As the Rust side does: the action's schema with the shared $defs."""
    full = dict(schema)
    full["$defs"] = defs
    Draft202012Validator.check_schema(full)
    return Draft202012Validator(full)


params_v, result_v = {}, {}
for name, action in actions.items():
    for kind, store in (("params", params_v), ("result", result_v)):
        try:
            store[name] = build(action[kind])
            check(True, "")
        except Exception as e:  # noqa: BLE001 - report every schema error
            check(False, f"{name}.{kind}: not a valid draft 2020-12 schema: {e}")
def_v = {}
for d in defs:
    try:
        def_v[d] = build({"$ref": f"#/$defs/{d}"})
        check(True, "")
    except Exception as e:  # noqa: BLE001
        check(False, f"$defs/{d}: invalid: {e}")
if failures:
    for f in failures:
        print("FAIL", f)
    sys.exit(1)
print(f"schemas: {len(params_v)} params + {len(result_v)} result + {len(def_v)} $defs validators compile (draft 2020-12)")

# defaults must satisfy their own schema
for name, action in actions.items():
    for key, sub in action["params"]["properties"].items():
        if "default" in sub:
            errs = list(build(sub).iter_errors(sub["default"]))
            check(not errs, f"{name}.{key}: default {sub['default']!r} fails its own schema")


def pointers(validator, instance):
    return sorted({"/" + "/".join(str(p) for p in e.absolute_path) for e in validator.iter_errors(instance)})


U1 = "3f1c2b9e-8a4d-4c6e-9b2a-1d5e7f8a9b0c"
U2 = "A1B2C3D4-E5F6-4789-8ABC-DEF012345678"
LEASE_ID = "0b6f8a52-5d1e-4c0f-9e3a-7b2d4c6e8f10"

VALID = [
    ("upsert_database_project_access", {"project": "acme"}),
    ("upsert_database_project_access", {"project": "acme-web_2", "expose": False, "isolation": "isolated",
                                        "tenant_code": "deny", "issue_lease": False, "lease_ttl_seconds": 60, "dry_run": True}),
    ("upsert_database_project_access", {"project": "a" * 40}),
    ("upsert_database_team_access", {"project": "acme", "team_id": "team:data.eng-1", "platform_role": "team_member", "members": [U1, U2]}),
    ("upsert_database_team_access", {"project": "acme", "team_id": "t", "platform_role": "project_viewer", "members": []}),
    ("upsert_database_access", {"project": "acme", "principal": {"type": "user", "id": U1}, "platform_role": "project_contributor"}),
    ("upsert_database_access", {"project": "acme", "principal": {"type": "service", "id": "etl@nightly"}, "platform_role": "maintainer",
                                "issue_lease": False, "lease_ttl_seconds": 3600}),
    ("upsert_database_access", {"project": "acme", "principal": {"type": "project"}, "platform_role": "project_owner"}),
    ("issue_database_lease", {"project": "acme", "principal": {"type": "service", "id": "project"}}),
    ("issue_database_lease", {"project": "acme", "principal": {"type": "user", "id": U2}, "lease_ttl_seconds": 1, "database": False}),
    ("renew_database_lease", {"lease_id": U2}),
    ("renew_database_lease", {"lease_id": LEASE_ID, "ttl_seconds": 86400}),
    ("revoke_database_lease", {"lease_id": LEASE_ID, "dry_run": True}),
    ("revoke_database_access", {"project": "acme", "principal": {"type": "user", "id": U1}}),
    ("revoke_database_team_access", {"project": "acme", "team_id": "team-1"}),
    ("remove_database_project", {"project": "acme", "drop_data": True}),
    ("apply_database_migrations", {"project": "acme", "migrations": [
        {"version": "20240101120000", "name": "0001_init.sql", "sql": "create table notes (id bigint primary key);"},
        {"version": "2", "name": "0002_policies.sql", "sql": "create policy p on notes for select to authenticated using (true);"}]}),
    ("apply_database_migrations", {"project": "acme", "migrations": []}),
    ("verify_database_project", {}),
    ("verify_database_project", {"project": "acme", "repair": True, "dry_run": True}),
    ("describe_database_project", {"project": "acme"}),
    ("reap_expired_leases", {}),
    ("reap_expired_leases", {"dry_run": True}),
]

# (action, params, a JSON pointer that must be among the violations)
INVALID = [
    ("upsert_database_project_access", {"project": "Bad Slug"}, "/project"),
    ("upsert_database_project_access", {"project": "a"}, "/project"),
    ("upsert_database_project_access", {"project": "acme-"}, "/project"),
    ("upsert_database_project_access", {"project": "1acme"}, "/project"),
    ("upsert_database_project_access", {"project": "a" * 41}, "/project"),
    ("upsert_database_project_access", {"project": "acme", "bogus": 1}, "/"),
    ("upsert_database_project_access", {"project": "acme", "expose": "yes"}, "/expose"),
    ("upsert_database_project_access", {"project": "acme", "isolation": "private"}, "/isolation"),
    ("upsert_database_project_access", {"project": "acme", "tenant_code": True}, "/tenant_code"),
    ("upsert_database_project_access", {"project": "acme", "lease_ttl_seconds": 0}, "/lease_ttl_seconds"),
    ("upsert_database_project_access", {"project": "acme", "lease_ttl_seconds": 86401}, "/lease_ttl_seconds"),
    ("upsert_database_project_access", {"project": "acme", "lease_ttl_seconds": 1.5}, "/lease_ttl_seconds"),
    ("upsert_database_project_access", {"project": "acme", "lease_ttl_seconds": "900"}, "/lease_ttl_seconds"),
    ("upsert_database_project_access", {"project": "acme", "dry_run": "yes"}, "/dry_run"),
    ("upsert_database_project_access", {}, "/"),
    ("upsert_database_project_access", [], "/"),
    ("upsert_database_team_access", {"project": "acme", "team_id": "t", "platform_role": "team_member", "members": [U1, U1]}, "/members"),
    ("upsert_database_team_access", {"project": "acme", "team_id": "t", "platform_role": "team_member", "members": ["nope"]}, "/members/0"),
    ("upsert_database_team_access", {"project": "acme", "team_id": "t", "platform_role": "team_member",
                                     "members": [f"00000000-0000-4000-8000-{n:012x}" for n in range(10001)]}, "/members"),
    ("upsert_database_team_access", {"project": "acme", "team_id": "-t", "platform_role": "team_member", "members": []}, "/team_id"),
    ("upsert_database_team_access", {"project": "acme", "team_id": "t", "platform_role": "owner", "members": []}, "/platform_role"),
    ("upsert_database_team_access", {"project": "acme", "team_id": "t", "members": []}, "/"),
    ("upsert_database_access", {"project": "acme", "principal": {"type": "user", "id": "not-a-uuid"}, "platform_role": "maintainer"}, "/principal"),
    ("upsert_database_access", {"project": "acme", "principal": {"type": "project", "id": "x"}, "platform_role": "maintainer"}, "/principal"),
    ("upsert_database_access", {"project": "acme", "principal": {"type": "group", "id": "x"}, "platform_role": "maintainer"}, "/principal"),
    ("upsert_database_access", {"project": "acme", "principal": {"type": "service", "id": "a b"}, "platform_role": "maintainer"}, "/principal"),
    ("upsert_database_access", {"project": "acme", "principal": "project", "platform_role": "maintainer"}, "/principal"),
    ("issue_database_lease", {"project": "acme", "principal": {"type": "project"}, "database": "no"}, "/database"),
    ("renew_database_lease", {"lease_id": "uuid"}, "/lease_id"),
    ("renew_database_lease", {"lease_id": LEASE_ID, "lease_ttl_seconds": 60}, "/"),
    ("revoke_database_lease", {}, "/"),
    ("remove_database_project", {"project": "acme", "drop_data": 1}, "/drop_data"),
    ("apply_database_migrations", {"project": "acme", "migrations": [{"version": "1", "name": "x.sql"}]}, "/migrations/0"),
    ("apply_database_migrations", {"project": "acme", "migrations": [{"version": "v1", "name": "x.sql", "sql": ""}]}, "/migrations/0/version"),
    ("apply_database_migrations", {"project": "acme", "migrations": [{"version": "1", "name": "../x", "sql": ""}]}, "/migrations/0/name"),
    ("apply_database_migrations", {"project": "acme", "migrations": [{"version": "1", "name": "x", "sql": "", "checksum": "0"}]}, "/migrations/0"),
    ("apply_database_migrations", {"project": "acme"}, "/"),
    ("verify_database_project", {"repair": "true"}, "/repair"),
    ("describe_database_project", {}, "/"),
    ("reap_expired_leases", {"project": "acme"}, "/"),
]

for action, params in VALID:
    errs = pointers(params_v[action], params)
    check(not errs, f"valid {action} {json.dumps(params)[:80]} rejected at {errs}")
for action, params, pointer in INVALID:
    errs = pointers(params_v[action], params)
    check(pointer in errs, f"invalid {action} {json.dumps(params)[:80]}: expected a violation at {pointer}, got {errs}")

# every violation is reported, each with its pointer (what the Rust test expects)
errs = pointers(params_v["upsert_database_project_access"], {"project": "Bad Slug", "expose": "yes", "bogus": 1})
check(errs == ["/", "/expose", "/project"], f"combined violations: {errs}")


def with_defaults(action, params):
    """What the Rust side does after validation: fill top-level defaults."""
    out = dict(params)
    for key, sub in actions[action]["params"]["properties"].items():
        if "default" in sub:
            out.setdefault(key, copy.deepcopy(sub["default"]))
    return out


check(with_defaults("remove_database_project", {"project": "acme"}) == {"project": "acme", "drop_data": False, "dry_run": False},
      "defaults of remove_database_project")
filled = with_defaults("upsert_database_project_access", {"project": "acme"})
check(filled == {"project": "acme", "issue_lease": True, "database": True, "dry_run": False},
      f"defaults of upsert_database_project_access: {filled}")
print(f"params: {len(VALID)} valid examples pass, {len(INVALID)} invalid examples fail at the expected pointer")

# ---------------------------------------------------------------- results

# the lease of docs/reference.md, placeholders replaced by concrete values
LEASE = {
    "lease_id": LEASE_ID, "project": "acme", "schema": "proj_acme",
    "principal": {"type": "service", "id": "project"},
    "platform_role": "project_owner", "access_class": "service_role",
    "issued_at": "2025-01-01T12:00:00Z", "expires_at": "2025-01-01T12:15:00Z", "ttl_seconds": 900, "renewable": True,
    "database": {"host": "", "port": 5432, "dbname": "postgres", "user": "lease_0b6f8a525d1e4c0f9e3a7b2d4c6e8f10",
                 "password": "…", "schema": "proj_acme", "url": "postgresql://…"},
    "api": {"url": "http://kong:8000", "schema": "proj_acme",
            "apikey": "<central publishable key: goes in the apikey header for the gateway>",
            "access_token": "<JWT of this lease's class>",
            "publishable_token": "<anon-class JWT, service-class leases only>"},
    "env": {"SUPABASE_URL": "…", "SUPABASE_ANON_KEY": "…", "SUPABASE_ACCESS_TOKEN": "…",
            "SUPABASE_DB_SCHEMA": "…", "DATABASE_URL": "…"},
}
check(not pointers(def_v["lease"], LEASE), f"documented lease rejected: {pointers(def_v['lease'], LEASE)}")
api_only = dict(LEASE, database=None, principal={"type": "user", "id": U1}, access_class="authenticated",
                platform_role="team_member", api={k: v for k, v in LEASE["api"].items() if k != "publishable_token"})
api_only["env"] = {k: v for k, v in LEASE["env"].items() if k != "DATABASE_URL"}
check(not pointers(def_v["lease"], api_only), "API-only user lease rejected")
check("/" in pointers(def_v["lease"], {k: v for k, v in LEASE.items() if k != "api"}), "lease without api accepted")
check("/lease_id" in pointers(def_v["lease"], dict(LEASE, lease_id="uuid")), "lease_id 'uuid' accepted")
check("/env/SUPABASE_URL" in pointers(def_v["lease"], dict(LEASE, env={"SUPABASE_URL": 1})), "non-string env accepted")

PLAN = {"dry_run": True, "action": "upsert_database_project_access",
        "statements": ["CREATE ROLE proj_acme_owner NOLOGIN"], "changes": [{"kind": "create_role", "role": "proj_acme_owner"}]}
ROLES = {"owner": "proj_acme_owner", "service_role": "proj_acme_service_role",
         "authenticated": "proj_acme_authenticated", "anon": "proj_acme_anon"}
RESULTS = [
    ("upsert_database_project_access", {
        "project": "acme", "schema": "proj_acme", "state": "active", "created": True, "changed": True, "statements": 42,
        "isolation": "shared", "tenant_code": "allow", "exposed": True,
        "exposure": {"mode": "role_setting", "schemas": ["public", "storage", "graphql_public", "proj_acme"]},
        "roles": ROLES, "lease": LEASE}),
    ("upsert_database_project_access", {
        "project": "acme", "schema": "proj_acme", "state": "active", "created": False, "changed": False, "statements": 0,
        "isolation": "isolated", "tenant_code": "deny", "exposed": True,
        "exposure": {"mode": "none", "schemas": ["public", "storage", "graphql_public"]},
        "roles": dict(ROLES, authenticator="proj_acme_authenticator"),
        "postgrest": {"PGRST_DB_URI": "postgresql://proj_acme_authenticator@db:5432/postgres",
                      "PGRST_DB_SCHEMAS": "proj_acme", "PGRST_DB_ANON_ROLE": "proj_acme_anon",
                      "db_password": {"mount": "secret", "path": "connectors/supabase/projects/acme", "key": "AUTHENTICATOR_PASSWORD"},
                      "jwt_secret": {"mount": "secret", "path": "connectors/supabase", "key": "JWT_SECRET"}}}),
    ("upsert_database_project_access", PLAN),
    ("upsert_database_team_access", {"project": "acme", "team_id": "t", "platform_role": "team_member", "access_class": "authenticated",
                                     "members": [U1], "added": [U1], "removed": [], "changed": True, "revoked_leases": []}),
    ("upsert_database_access", {"project": "acme", "principal": {"type": "user", "id": U1}, "platform_role": "project_viewer",
                                "access_class": "anon", "changed": True, "revoked_leases": [LEASE_ID], "lease": api_only}),
    ("issue_database_lease", {"lease": LEASE}),
    ("renew_database_lease", {"lease": LEASE}),
    ("revoke_database_lease", {"lease_id": LEASE_ID, "revoked": False, "terminated_sessions": 0}),
    ("revoke_database_access", {"project": "acme", "removed": True, "revoked_leases": [LEASE_ID]}),
    ("revoke_database_team_access", {"project": "acme", "removed": False, "revoked_leases": []}),
    ("remove_database_project", {"project": "acme", "schema": "proj_acme", "state": "archived", "revoked_leases": [LEASE_ID]}),
    ("apply_database_migrations", {"project": "acme", "applied": [{"version": "2", "name": "0002.sql", "checksum": "ab" * 32}],
                                   "skipped": [{"version": "1", "name": "0001.sql"}], "pending": [], "dry_run": False}),
    ("apply_database_migrations", {"project": "acme", "applied": [], "skipped": [{"version": "1", "name": "0001.sql"}],
                                   "pending": [{"version": "2", "name": "0002.sql"}], "dry_run": True}),
    ("verify_database_project", {"clean": False, "projects": [{"project": "acme", "clean": False, "findings": [
        {"code": "rls_disabled", "severity": "error", "object": "proj_acme.notes", "expected": "rls enabled",
         "actual": "rls disabled", "repairable": True, "repaired": True, "project": "acme"}]}],
        "findings": [{"code": "rls_disabled", "severity": "error", "object": "proj_acme.notes", "expected": "rls enabled",
                      "actual": "rls disabled", "repairable": True, "repaired": True, "project": "acme"},
                     {"code": "exposure_list_drift", "severity": "error", "object": "pgrst.db_schemas", "expected": "a",
                      "actual": "b", "repairable": True, "repaired": False, "project": None}]}),
    ("describe_database_project", {
        "project": "acme", "schema": "proj_acme", "state": "active", "isolation": "shared", "tenant_code": "allow",
        "exposed": True, "trust_boundary": "credentials are confined to the project; tenant code is trusted",
        "roles": ROLES, "grants": [{"principal": {"type": "user", "id": U1}, "platform_role": "project_viewer", "access_class": "anon"}],
        "teams": [{"team_id": "t", "platform_role": "team_member", "access_class": "authenticated", "members": [U1]}],
        "active_leases": 2, "exposure": {"mode": "role_setting", "listed": True},
        "migrations": [{"version": "1", "name": "0001.sql", "checksum": "ab" * 32, "applied_at": "2025-01-01T12:00:00Z"}],
        "created_at": "2025-01-01T12:00:00Z", "updated_at": "2025-01-01T12:00:00Z"}),
    ("reap_expired_leases", {"reaped": [LEASE_ID], "terminated_sessions": 1}),
    ("reap_expired_leases", dict(PLAN, action="reap_expired_leases")),
]
BAD_RESULTS = [
    ("upsert_database_project_access", {"project": "acme"}),
    ("issue_database_lease", {"lease": {"lease_id": LEASE_ID}}),
    ("remove_database_project", {"project": "acme", "schema": "proj_acme", "state": "active", "revoked_leases": []}),
    ("describe_database_project", PLAN),
    ("apply_database_migrations", {"project": "acme", "applied": [], "skipped": []}),
    ("apply_database_migrations", PLAN),
    ("verify_database_project", {"clean": True, "projects": []}),
    ("verify_database_project", {"clean": True, "projects": [], "findings": [{"code": "x", "severity": "error", "object": "o",
                                                                             "expected": 1, "actual": 2, "project": 3}]}),
    ("verify_database_project", {"clean": True, "findings": [], "projects": [{"project": "acme", "clean": True,
                                                              "findings": [{"code": "x", "severity": "info", "object": "o",
                                                                            "expected": 1, "actual": 2}]}]}),
]
for action, res in RESULTS:
    errs = pointers(result_v[action], res)
    check(not errs, f"result of {action} rejected at {errs}")
for action, res in BAD_RESULTS:
    check(bool(pointers(result_v[action], res)), f"bad result of {action} accepted")
print(f"results: the documented lease passes $defs/lease; {len(RESULTS)} valid results pass, {len(BAD_RESULTS)} bad ones fail")

for f in failures:
    print("FAIL", f)
print(f"{'FAILED' if failures else 'OK'}: {passes} checks passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
