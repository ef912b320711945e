//! Hostile input, at unit level (no server): slugs, team ids, principal ids,
//! migration names and versions, and every string that reaches SQL. Quotes,
//! backslashes, `$$`, NUL, Unicode confusables, 10 kB strings and SQL
//! keywords either fail validation (`invalid_params`, with the JSON pointer
//! of the field) or come out correctly quoted: `ident()` and `literal()`
//! round-trip through PostgreSQL's quoting rules, and a rendered statement
//! stays one statement.
//!
//! Every property runs 256 cases from a fixed seed (`PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` change them).
//! The reference checkers below are written from the documented patterns
//! (`docs/reference.md#types`),
//! independently of the code under test.

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::{json, Value};
use supabase_connector::actions::migrations;
use supabase_connector::apply::redact;
use supabase_connector::catalog::{action_names, validate};
use supabase_connector::config::{Config, ExposureConfig, Secret};
use supabase_connector::db::ServerInfo;
use supabase_connector::lease::{jwt, set_password};
use supabase_connector::model::Principal;
use supabase_connector::names::{ident, lease_login_role, literal, ProjectNames, Slug};
use supabase_connector::plan::{is_plain_identifier, Change, PlanContext};
use supabase_connector::render::render;
use supabase_connector::requests::{MigrationFile, Request};
use supabase_connector::sqlscan;
use supabase_connector::ErrorCode;

// ------------------------------------------------------------ references

fn ascii_all(s: &str, first: fn(char) -> bool, rest: fn(char) -> bool, max_rest: usize) -> bool {
    let mut it = s.chars();
    match it.next() {
        Some(c) if first(c) => {}
        _ => return false,
    }
    let tail: Vec<char> = it.collect();
    tail.len() <= max_rest && tail.into_iter().all(rest)
}

/// `^[a-z][a-z0-9_-]{0,38}[a-z0-9]$`
fn ref_slug(s: &str) -> bool {
    let c: Vec<char> = s.chars().collect();
    (2..=40).contains(&c.len())
        && c[0].is_ascii_lowercase()
        && (c[c.len() - 1].is_ascii_lowercase() || c[c.len() - 1].is_ascii_digit())
        && c.iter()
            .all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_' || x == '-')
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`
fn ref_team_id(s: &str) -> bool {
    ascii_all(s, alnum, |c| alnum(c) || "._:-".contains(c), 127)
}

/// `^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`
fn ref_service_id(s: &str) -> bool {
    ascii_all(s, alnum, |c| alnum(c) || "._:@-".contains(c), 127)
}

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$`
fn ref_migration_name(s: &str) -> bool {
    ascii_all(s, alnum, |c| alnum(c) || "_.-".contains(c), 199)
}

/// `^[0-9]{1,20}$`
fn ref_version(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// A hyphenated UUID, either case.
fn ref_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Read one quoted token from the start of `s` by PostgreSQL's rules with
/// `standard_conforming_strings = on`: a doubled quote stands for itself,
/// a backslash is an ordinary character. Returns the value and the bytes
/// the token took.
fn unquote(s: &str, q: char) -> Option<(String, usize)> {
    if !s.starts_with(q) {
        return None;
    }
    let mut out = String::new();
    let mut it = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = it.next() {
        if c == q {
            if matches!(it.peek(), Some(&(_, n)) if n == q) {
                it.next();
                out.push(q);
            } else {
                return Some((out, i + c.len_utf8()));
            }
        } else {
            out.push(c);
        }
    }
    None
}

fn violation_paths(e: &supabase_connector::Error) -> Vec<String> {
    e.details["violations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["path"].as_str().map(str::to_string))
        .collect()
}

fn assert_invalid_at(result: Result<Value, supabase_connector::Error>, pointer: &str) {
    let e = result.expect_err("hostile value accepted");
    assert_eq!(e.code, ErrorCode::InvalidParams, "{e}");
    let paths = violation_paths(&e);
    assert!(
        paths.iter().any(|p| p.starts_with(pointer)),
        "no violation at {pointer}: {paths:?}"
    );
    // a 10 kB value does not make a 10 kB message (it ends up in logs)
    assert!(
        e.message.len() <= 4096,
        "message of {} bytes",
        e.message.len()
    );
}

// ------------------------------------------------------------ strategies

/// Pieces an attacker would put in a name or a string.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "'",
            "''",
            "\"",
            "\\",
            "\\'",
            "$$",
            "$tag$",
            "$1",
            "\0",
            ";",
            "--",
            "/*",
            "*/",
            "\n",
            "\r\n",
            " ",
            "\t",
            "%",
            "_",
            "-",
            "@",
            ":",
            ".",
            "/",
            "&",
            "(",
            ")",
            ",",
            // confusables: zero-width space, Cyrillic a, fullwidth e, dotless i, long s, Kelvin sign,
            // combining acute, right-to-left override, BOM, non-breaking space
            "\u{200b}",
            "\u{430}",
            "\u{ff45}",
            "\u{131}",
            "\u{17f}",
            "\u{212a}",
            "e\u{301}",
            "\u{202e}",
            "\u{feff}",
            "\u{a0}",
            "DROP ROLE postgres",
            "SELECT",
            "select",
            "commit",
            "BEGIN",
            "proj_",
            "_owner",
            "public",
            "postgres",
            "supabase_admin",
            "lease_",
            "pg_catalog",
            "NULL",
            "true",
            "E'",
            "U&'",
        ])
        .prop_map(str::to_string),
        "[a-z0-9]{1,8}",
        "[A-Za-z0-9._:@-]{1,6}",
        "\\PC{1,3}",
        any::<char>().prop_map(String::from),
    ]
}

/// A hostile string: pieces glued together, a 10 kB one, a near-valid one, or anything.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(piece(), 0..10).prop_map(|v| v.concat()),
        1 => ("[a-z]{1,3}", piece()).prop_map(|(a, p)| format!("{a}{}", p.repeat(10_240 / p.len().max(1) + 1))),
        2 => ("[a-z][a-z0-9_-]{0,38}[a-z0-9]", piece(), 0usize..42)
            .prop_map(|(s, p, at)| { let mut s = s; let at = at.min(s.len()); s.insert_str(at, &p); s }),
        2 => "[a-z][a-z0-9_-]{0,38}[a-z0-9]",
        1 => any::<String>(),
    ]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        hostile().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "project",
                    "team_id",
                    "principal",
                    "type",
                    "id",
                    "platform_role",
                    "members",
                    "lease_id",
                    "migrations",
                    "version",
                    "name",
                    "sql",
                    "lease_ttl_seconds",
                    "ttl_seconds",
                    "dry_run",
                    "bogus",
                ]),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// Complete PostgreSQL tokens (each lexes as whole tokens on its own),
/// several of which hide `;` and transaction control inside a string, a
/// comment, a dollar quote or a quoted identifier, or look like they open
/// one without doing so (`a$$` is an identifier, `somee'…'` is an
/// identifier and a plain string, `begin atomic` in a SELECT is a column
/// and its alias).
const TOKENS: &[&str] = &[
    "1",
    "x",
    "as",
    ",",
    "+",
    "a$$",
    "b$$",
    "x$1",
    "\u{e9}$$",
    "\u{fc}$t$",
    "somee'\\'",
    "E'\\''",
    "e'a\\\\'",
    "E'x''y'",
    "'\\'",
    "'a''b'",
    "'; commit; '",
    "$$ ; commit; $$",
    "$t$ $$ ; rollback; $t$",
    "$\u{e9}$ ; begin; $\u{e9}$",
    "\"a\"\";commit;\"",
    "\"$$\"",
    "/* ; commit; /* nested; */ */",
    "-- ; commit\n",
    "(select 1)",
    "begin",
    "atomic",
    "begin atomic",
    "case when true then 1 end",
    "U&'\\0041'",
    "N'x'",
    "\u{17f}elect",
    "E'\\\\' ",
    "e'\\'; commit; '",
];

const CONTROL: &[&str] = &[
    "commit",
    "COMMIT",
    "CoMmIt and chain",
    "rollback",
    "end",
    "abort",
    "begin",
    "BEGIN ISOLATION LEVEL SERIALIZABLE",
    "start transaction",
    "savepoint s",
    "release s",
    "release savepoint s",
    "prepare transaction 'x'",
];

/// `select <tokens>`: one statement, no transaction control at top level.
fn select_statement() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..8)
        .prop_map(|t| format!("select {}", t.join(" ")))
}

fn server() -> ServerInfo {
    ServerInfo {
        version_num: 180006,
        runtime_role: "postgres".into(),
        dbname: "postgres".into(),
        host: "db".into(),
        port: 5432,
    }
}

/// 256 cases from a fixed seed, so a run is repeatable; `PROPTEST_CASES`
/// and `PROPTEST_RNG_SEED` explore further.
fn config() -> ProptestConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: env("PROPTEST_CASES").map(|n: u64| n as u32).unwrap_or(256),
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(10)),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------ properties

proptest! {
    #![proptest_config(config())]

    /// A slug is accepted exactly when it matches the documented pattern, by
    /// `Slug::parse` and by the catalog of every action that takes one; an
    /// accepted slug gives plain identifiers that fit PostgreSQL's 63 bytes.
    #[test]
    fn slugs(s in hostile()) {
        let ok = ref_slug(&s);
        prop_assert_eq!(Slug::parse(&s).is_ok(), ok, "Slug::parse({:?})", s);
        let uuid = "00000000-0000-4000-8000-000000000001";
        let per_action = [
            ("upsert_database_project_access", json!({"project": s})),
            ("upsert_database_team_access", json!({"project": s, "team_id": "t", "platform_role": "team_member", "members": []})),
            ("upsert_database_access", json!({"project": s, "principal": {"type": "user", "id": uuid}, "platform_role": "project_viewer"})),
            ("issue_database_lease", json!({"project": s, "principal": {"type": "project"}})),
            ("revoke_database_access", json!({"project": s, "principal": {"type": "service", "id": "etl"}})),
            ("revoke_database_team_access", json!({"project": s, "team_id": "t"})),
            ("remove_database_project", json!({"project": s, "drop_data": true})),
            ("apply_database_migrations", json!({"project": s, "migrations": []})),
            ("verify_database_project", json!({"project": s, "repair": true})),
            ("describe_database_project", json!({"project": s})),
        ];
        for (action, params) in per_action {
            let r = validate(action, &params);
            if ok {
                prop_assert!(r.is_ok(), "{} rejected {:?}: {:?}", action, s, r.err());
            } else {
                assert_invalid_at(r, "/project");
            }
        }
        if ok {
            let n = ProjectNames::new(&Slug::parse(&s).unwrap());
            prop_assert_eq!(&n.schema, &format!("proj_{}", s.replace('-', "_")));
            for name in [&n.schema, &n.owner, &n.service_role, &n.authenticated, &n.anon, &n.authenticator] {
                prop_assert!(is_plain_identifier(name) && name.len() <= 63, "{}", name);
                prop_assert_eq!(ident(name), format!("\"{name}\""));
            }
        }
    }

    /// Team ids, service ids, user ids, lease ids: accepted exactly when they
    /// match their pattern; what is accepted is stored as given (user ids in
    /// canonical lowercase, so two spellings are one principal).
    #[test]
    fn team_and_principal_ids(s in hostile()) {
        let team = validate("upsert_database_team_access",
            &json!({"project": "acme", "team_id": s, "platform_role": "team_member", "members": []}));
        let team_revoke = validate("revoke_database_team_access", &json!({"project": "acme", "team_id": s}));
        if ref_team_id(&s) {
            prop_assert!(team.is_ok() && team_revoke.is_ok(), "team id {:?}", s);
        } else {
            assert_invalid_at(team, "/team_id");
            assert_invalid_at(team_revoke, "/team_id");
        }

        let service = json!({"type": "service", "id": s});
        let direct = validate("upsert_database_access",
            &json!({"project": "acme", "principal": service, "platform_role": "project_viewer"}));
        if ref_service_id(&s) {
            let p = direct.expect("valid service id rejected");
            let principal = Principal::from_json(&p["principal"]).unwrap();
            if s == "project" {
                prop_assert_eq!(&principal, &Principal::Project);
            } else {
                prop_assert_eq!(principal.id(), s.clone());
                prop_assert_eq!(principal.kind(), "service");
                prop_assert_ne!(principal.subject("acme"), principal.subject("other"));
                prop_assert_eq!(principal.subject("acme"), principal.subject("acme"));
            }
        } else {
            assert_invalid_at(direct, "/principal");
        }

        let user = validate("issue_database_lease",
            &json!({"project": "acme", "principal": {"type": "user", "id": s}}));
        let renew = validate("renew_database_lease", &json!({"lease_id": s}));
        if ref_uuid(&s) {
            let p = user.expect("valid user id rejected");
            let principal = Principal::from_json(&p["principal"]).unwrap();
            prop_assert_eq!(principal.id(), s.to_ascii_lowercase());
            let upper = Principal::from_json(&json!({"type": "user", "id": s.to_ascii_uppercase()})).unwrap();
            prop_assert_eq!(principal, upper);
            prop_assert!(renew.is_ok());
        } else {
            assert_invalid_at(user, "/principal");
            assert_invalid_at(renew, "/lease_id");
        }
    }

    /// Migration names and versions follow their patterns; the SQL may be
    /// anything but NUL or transaction control, and reading it never panics.
    #[test]
    fn migration_fields(name in hostile(), version in prop_oneof![hostile(), "[0-9]{1,24}"], sql in hostile()) {
        let params = json!({"project": "acme", "migrations": [{"version": version, "name": name, "sql": sql}]});
        let r = validate("apply_database_migrations", &params);
        match (ref_version(&version), ref_migration_name(&name)) {
            (true, true) => {
                let p = r.expect("valid migration rejected");
                match migration_files(&p) {
                    Ok(files) => {
                        prop_assert!(!sql.contains('\0'));
                        prop_assert_eq!(files.len(), 1);
                        prop_assert_eq!(&files[0].name, &name);
                        prop_assert_eq!(&files[0].sql, &sql);
                    }
                    Err(e) => {
                        prop_assert_eq!(e.code, ErrorCode::InvalidParams);
                        prop_assert_eq!(violation_paths(&e), vec!["/migrations/0/sql".to_string()]);
                    }
                }
            }
            (false, _) => assert_invalid_at(r, "/migrations/0/version"),
            (true, false) => assert_invalid_at(r, "/migrations/0/name"),
        }
    }

    /// Whatever JSON arrives, validation answers `invalid_params` or
    /// accepts; it never panics, and what it accepts the actions can read.
    #[test]
    fn any_json_any_action(params in any_json(), which in 0usize..64) {
        let names = action_names();
        let action = names[which % names.len()];
        match validate(action, &params) {
            Ok(p) => {
                prop_assert!(p.is_object());
                if let Some(principal) = p.get("principal") {
                    prop_assert!(Principal::from_json(principal).is_ok());
                }
                // what the catalog accepts, the action's typed request reads
                prop_assert!(Request::parse(action, &p).is_ok(), "{} {}", action, p);
                if p.get("migrations").is_some() {
                    // the files may still be refused (NUL, transaction control), never panic
                    let _ = migration_files(&p);
                }
            }
            Err(e) => prop_assert_eq!(e.code, ErrorCode::InvalidParams),
        }
    }

    /// TTLs: an integral number (`60`, `60.0`, `6e1`) is read as asked;
    /// fractions, zero, negatives and values above the catalog's maximum are refused.
    #[test]
    fn ttl_numbers(n in -100_000i64..200_000, frac in prop::sample::select(vec![0.0f64, 0.5, 0.25])) {
        let as_float = Value::from(n as f64 + frac);
        for (action, key, params) in [
            ("issue_database_lease", "lease_ttl_seconds", json!({"project": "acme", "principal": {"type": "project"}, "lease_ttl_seconds": as_float})),
            ("renew_database_lease", "ttl_seconds", json!({"lease_id": "00000000-0000-4000-8000-000000000001", "ttl_seconds": as_float})),
        ] {
            let r = validate(action, &params);
            if frac == 0.0 && (1..=86_400).contains(&n) {
                let p = r.expect("integral TTL rejected");
                prop_assert_eq!(p[key].as_u64(), Some(n as u64), "{} read back as {}", n, p[key]);
            } else {
                assert_invalid_at(r, &format!("/{key}"));
            }
        }
    }

    /// `ident()` and `literal()` round-trip through PostgreSQL's quoting:
    /// the quoted token is the whole output and reads back as the input.
    /// `literal()` refuses NUL (there is no way to write one in a literal).
    #[test]
    fn quoting_round_trips(s in hostile()) {
        if !s.contains('\0') {
            let q = ident(&s);
            prop_assert_eq!(unquote(&q, '"'), Some((s.clone(), q.len())));
            let l = literal(&s);
            prop_assert_eq!(unquote(&l, '\''), Some((s.clone(), l.len())));
            // embedded in a statement, neither can end it early
            for sql in [format!("GRANT {q} TO {q}"), format!("ALTER ROLE {q} SET role = {l}")] {
                let st = sqlscan::statements(&sql);
                prop_assert_eq!(st.len(), 1, "{:?}", sql);
                prop_assert!(!st.iter().any(sqlscan::is_transaction_control));
            }
        } else {
            let caught = std::panic::catch_unwind(|| literal(&s));
            prop_assert!(caught.is_err(), "literal() accepted a NUL");
        }
    }

    /// Every statement the plan renders from a name keeps it inside an
    /// identifier or a bind parameter: DDL quotes it and stays one
    /// statement; role function calls carry it as a parameter only (their
    /// SQL text does not depend on the name).
    #[test]
    fn rendered_ddl_stays_one_statement(a in hostile(), b in hostile()) {
        prop_assume!(!a.contains('\0') && !b.contains('\0'));
        let server = server();
        let exposure = ExposureConfig::default();
        let ctx = PlanContext { server: &server, exposure: &exposure, pools: &[] };
        let changes = |a: &String, b: &String| vec![
            Change::CreateRole { role: a.clone() },
            Change::AlterRole { role: a.clone(), attributes: vec!["NOLOGIN".into()] },
            Change::SetRoleSetting { role: a.clone(), name: "statement_timeout".into(), value: Some(b.clone()) },
            Change::GrantRole { role: a.clone(), member: b.clone() },
            Change::RevokeRole { role: a.clone(), member: b.clone() },
            Change::DropRole { role: b.clone() },
            Change::DropProject { slug: a.clone() },
            Change::BorrowOwner { owner: a.clone(), runtime: b.clone() },
            Change::CreateSchema { schema: a.clone(), owner: b.clone() },
            Change::AlterSchemaOwner { schema: a.clone(), owner: b.clone() },
            Change::GrantSchemaUsage { schema: a.clone(), roles: vec![b.clone(), a.clone()] },
            Change::RevokeSchema { schema: a.clone(), grantee: b.clone() },
            Change::DefaultPrivileges { owner: a.clone(), schema: Some(b.clone()), grant: true,
                privileges: "SELECT".into(), objects: "TABLES".into(), grantee: b.clone() },
        ];
        let plain = changes(&"x".to_string(), &"y".to_string());
        for (change, reference) in changes(&a, &b).iter().zip(&plain) {
            for (st, st_ref) in render(change, &ctx).into_iter().zip(render(reference, &ctx)) {
                let scanned = sqlscan::statements(&st.sql);
                prop_assert_eq!(scanned.len(), 1, "{:?}", st.sql);
                if st.params.is_empty() {
                    prop_assert!(st.sql.contains(&ident(&a)) || st.sql.contains(&ident(&b)), "{}", st.sql);
                } else {
                    prop_assert_eq!(&st.sql, &st_ref.sql, "a name reached the SQL text");
                }
            }
        }
    }

    /// A password statement carries a SCRAM verifier as a secret parameter,
    /// never the password, and never shows it.
    #[test]
    fn password_statements_hide_the_password(role in hostile(), password in "[A-Za-z0-9+/=_-]{16,64}") {
        prop_assume!(!role.contains('\0'));
        let change = set_password(&role, &Secret::new(password.clone()));
        let server = server();
        let exposure = ExposureConfig::default();
        let ctx = PlanContext { server: &server, exposure: &exposure, pools: &[] };
        let st = render(&change, &ctx).remove(0);
        prop_assert_eq!(st.sql.as_str(), "select supabase_connector.role_password($1, $2)");
        let shown = format!("{} {:?} {:?} {}", st.display(), st, change, serde_json::to_string(&change).unwrap());
        prop_assert!(!shown.contains(&password) && !shown.contains("SCRAM-SHA-256$"), "{}", shown);
        prop_assert_eq!(sqlscan::statements(&st.sql).len(), 1);
    }

    /// Audit redaction: whatever the secrets look like, none survives.
    #[test]
    fn audit_rows_keep_no_secret(
        password in "[A-Za-z0-9]{20,64}", token in "[A-Za-z0-9._-]{20,64}", apikey in "[A-Za-z0-9._-]{20,64}",
        secret_id in "[A-Za-z0-9-]{20,40}", extra in hostile(),
    ) {
        let url = format!("postgresql://lease_x:{password}@db:5432/postgres");
        let v = json!({
            "lease": {"database": {"password": password, "url": url, "user": "lease_x"},
                      "api": {"access_token": token, "publishable_token": token, "apikey": apikey, "schema": extra},
                      "env": {"DATABASE_URL": url, "SUPABASE_ANON_KEY": apikey, "SUPABASE_ACCESS_TOKEN": token,
                              "SUPABASE_PUBLISHABLE_TOKEN": token, "SUPABASE_DB_SCHEMA": extra}},
            "openbao": {"approle": {"secret_id": secret_id}, "token": token},
            "migrations": [{"version": "1", "name": "x", "sql": format!("alter role x password '{password}'")}],
        });
        let out = redact(&v).to_string();
        for secret in [&password, &token, &apikey, &secret_id] {
            prop_assert!(!out.contains(secret.as_str()), "{} survived redaction: {}", secret, out);
        }
    }

    /// Tokens: a claim value of any shape round-trips; changing the payload,
    /// or the secret, makes verification fail.
    #[test]
    fn tokens(role in hostile(), secret in "[A-Za-z0-9]{32,64}", other in "[A-Za-z0-9]{32,64}") {
        prop_assume!(secret != other);
        let key = Secret::new(secret);
        let token = jwt::sign(&json!({"role": role, "exp": 1}), &key);
        let claims = jwt::verify(&token, &key).expect("own token");
        prop_assert_eq!(claims["role"].as_str(), Some(role.as_str()));
        prop_assert!(jwt::verify(&token, &Secret::new(other)).is_none());
        let parts: Vec<&str> = token.split('.').collect();
        use base64::Engine;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"role": format!("{role}-edited"), "exp": 1}).to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        prop_assert!(jwt::verify(&tampered, &key).is_none());
    }

    /// Config: a base schema that is not a plain identifier is refused
    /// before anything connects (it is listed in `pgrst.db_schemas`).
    #[test]
    fn base_schemas(s in hostile()) {
        let r = Config::from_json(Some(json!({"exposure": {"base_schemas": [s]}})));
        prop_assert_eq!(r.is_ok(), is_plain_identifier(&s), "{:?}", s);
        if let Err(e) = r {
            prop_assert_eq!(e.code, ErrorCode::InvalidParams);
        }
    }

    /// Lease role names are plain identifiers for every lease id.
    #[test]
    fn lease_roles(id in any::<u128>()) {
        let r = lease_login_role(uuid::Uuid::from_u128(id));
        prop_assert!(is_plain_identifier(&r) && r.len() <= 63);
    }

    /// The migration scanner never panics, and its statements are slices of the input.
    #[test]
    fn scanner_total(sql in prop_oneof![hostile(), any::<String>()]) {
        let st = sqlscan::statements(&sql);
        let mut last = 0;
        for s in &st {
            prop_assert!(s.start >= last && s.start <= s.end && s.end <= sql.len());
            prop_assert!(sql.is_char_boundary(s.start) && sql.is_char_boundary(s.end));
            last = s.end;
        }
        for (k, _) in sql.char_indices().step_by(7) {
            let (n, line) = sqlscan::locate(&sql, k);
            prop_assert!(n >= 1 && line >= 1);
        }
    }

    /// The scanner splits where PostgreSQL's lexer splits: `k` SELECT
    /// statements of hostile-looking tokens are `k` statements, none of them
    /// transaction control ...
    #[test]
    fn scanner_splits_like_postgres(stmts in prop::collection::vec(select_statement(), 1..5)) {
        let sql = stmts.join(";\n");
        let st = sqlscan::statements(&sql);
        prop_assert_eq!(st.len(), stmts.len(), "{:?}", sql);
        prop_assert!(st.iter().all(|s| s.keyword == "SELECT"), "{:?}", st);
        let p = json!({"migrations": [{"version": "1", "name": "m", "sql": sql}]});
        prop_assert!(migration_files(&p).is_ok());
    }

    /// ... and transaction control between such statements, which
    /// PostgreSQL would run, is always found and refused.
    #[test]
    fn hidden_transaction_control_is_refused(
        before in select_statement(), control in prop::sample::select(CONTROL), after in select_statement(),
    ) {
        let sql = format!("{before};\n{control};\n{after}");
        let p = json!({"migrations": [{"version": "7", "name": "m", "sql": sql}]});
        let e = migration_files(&p).expect_err("transaction control slipped through");
        prop_assert_eq!(e.code, ErrorCode::InvalidParams);
        prop_assert!(e.message.contains("statement 2"), "{}", e.message);
    }
}

/// The checked files of an `apply_database_migrations` request.
fn migration_files(
    p: &serde_json::Value,
) -> supabase_connector::Result<Vec<migrations::Migration>> {
    let files: Vec<MigrationFile> = serde_json::from_value(p["migrations"].clone())
        .map_err(|e| supabase_connector::Error::invalid(e.to_string()))?;
    migrations::check(&files)
}

/// The cases that got through before the scanner followed PostgreSQL's
/// lexer (each checked on PostgreSQL 15: the COMMIT runs).
#[test]
fn known_hiding_places() {
    for sql in [
        "create table t1 (); select 1 as a$$; commit; select 1 as b$$;",
        "create table t2 (); select 1 as \u{e9}$$; commit; select 1 as x$$;",
        "create domain somee as text; create table t3 (); select somee'\\'; commit; select '\\';",
        "create table t4 (); select begin atomic from (select 1 as begin) s; commit;",
        "create function f() returns int language sql return (select begin atomic from (select 1 as begin) s); commit;",
    ] {
        let found = sqlscan::statements(sql)
            .iter()
            .any(sqlscan::is_transaction_control);
        assert!(found, "missed the COMMIT in {sql:?}");
    }
    // and what is really inside a body or a quote stays there
    for sql in [
        "select $\u{e9}$ ; commit; $\u{e9}$",
        "create function f() returns int language sql begin atomic select 1; select case when true then 2 end; end; select 1",
        "create or replace procedure p() language sql begin atomic insert into t values (1); end",
    ] {
        let found = sqlscan::statements(sql)
            .iter()
            .any(sqlscan::is_transaction_control);
        assert!(!found, "false alarm in {sql:?}");
    }
}
