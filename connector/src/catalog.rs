//! The embedded connector catalog (`catalog/connector-catalog.json`): the
//! single source of truth for actions and their parameter schemas.

use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const CATALOG_JSON: &str = include_str!("../../catalog/connector-catalog.json");

/// The parsed catalog.
pub fn catalog() -> &'static Value {
    static CATALOG: OnceLock<Value> = OnceLock::new();
    CATALOG.get_or_init(|| {
        serde_json::from_str(CATALOG_JSON).expect("the embedded catalog is valid JSON")
    })
}

/// Names of every action, in catalog order.
pub fn action_names() -> Vec<&'static str> {
    catalog()["actions"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The validator of `action`, compiled on first use: compiling them all
/// costs a short-lived CLI process more than the action itself.
fn validator(action: &str) -> Option<&'static jsonschema::Validator> {
    static VALIDATORS: OnceLock<BTreeMap<String, OnceLock<jsonschema::Validator>>> =
        OnceLock::new();
    let cells = VALIDATORS.get_or_init(|| {
        action_names()
            .into_iter()
            .map(|name| (name.to_string(), OnceLock::new()))
            .collect()
    });
    let cell = cells.get(action)?;
    Some(cell.get_or_init(|| {
        jsonschema::options()
            .with_draft(VALIDATION_DRAFT)
            .should_validate_formats(false)
            .build(&params_schema(action))
            .unwrap_or_else(|e| panic!("catalog schema of {action} is invalid: {e}"))
    }))
}

/// An action's parameter schema with the definitions it refers to.
fn params_schema(action: &str) -> Value {
    let params = &catalog()["actions"][action]["params"];
    let mut schema = params.as_object().cloned().unwrap_or_default();
    schema.insert("$defs".into(), Value::Object(referenced_defs(params)));
    Value::Object(schema)
}

/// The rules parameters are checked with. The catalog is a JSON Schema
/// 2020-12 document, but it uses no keyword whose meaning differs in
/// Draft 7 (no `$ref` beside other assertions, no tuple `items`, none of
/// the 2019+ keywords; a test keeps it so), and building a 2020-12
/// validator first checks the schema against the 2020-12 meta-schema, whose
/// `$dynamicRef`s cost a short-lived CLI process about 25 ms. The tests
/// check the catalog against that meta-schema instead. Formats are not
/// asserted, as 2020-12 has it.
const VALIDATION_DRAFT: jsonschema::Draft = jsonschema::Draft::Draft7;

/// The `$defs` a schema refers to, directly or through each other. Only
/// these are compiled: the validator compiles every definition it is given,
/// and the result definitions (leases, plans, findings) would triple the
/// start-up cost of a CLI run.
fn referenced_defs(schema: &Value) -> Map<String, Value> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(name) = m
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                {
                    out.push(name.to_string());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let defs = &catalog()["$defs"];
    let mut found = Map::new();
    let mut todo = Vec::new();
    refs(schema, &mut todo);
    while let Some(name) = todo.pop() {
        if found.contains_key(&name) {
            continue;
        }
        let def = defs[name.as_str()].clone();
        refs(&def, &mut todo);
        found.insert(name, def);
    }
    found
}

/// Validate `params` for `action` and return them with schema defaults filled
/// in. Every violation is listed with its JSON pointer.
pub fn validate(action: &str, params: &Value) -> Result<Value> {
    let Some(validator) = validator(action) else {
        return Err(Error::invalid(format!("unknown action {action:?}"))
            .with_details(json!({"violations": [{"path": "", "message": "unknown action"}], "actions": action_names()})));
    };
    let params = match params {
        Value::Null => Value::Object(Map::new()),
        p => p.clone(),
    };
    let violations: Vec<Value> = validator
        .iter_errors(&params)
        .map(|e| {
            let path = e.instance_path.to_string();
            json!({"path": if path.is_empty() { "/".to_string() } else { path }, "message": short(&e.to_string())})
        })
        .collect();
    if !violations.is_empty() {
        let summary: Vec<String> = violations
            .iter()
            .map(|v| {
                format!(
                    "{}: {}",
                    v["path"].as_str().unwrap_or(""),
                    v["message"].as_str().unwrap_or("")
                )
            })
            .collect();
        return Err(Error::invalid(format!(
            "invalid parameters for {action}: {}",
            summary.join("; ")
        ))
        .with_details(json!({"violations": violations})));
    }
    let mut params = params;
    integral_floats(&mut params);
    Ok(with_defaults(action, params))
}

/// JSON Schema counts `60.0` as an integer; store it as one, so that the
/// actions' `as_u64()` reads the value asked for (a lease TTL of `60.0`
/// silently became the 900 s default before).
fn integral_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats),
        Value::Object(map) => map.values_mut().for_each(integral_floats),
        _ => {}
    }
}

/// Keep messages readable when the offending value is a 10 kB string.
fn short(message: &str) -> String {
    const MAX: usize = 300;
    if message.len() <= MAX {
        return message.to_string();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

fn with_defaults(action: &str, mut params: Value) -> Value {
    let props = &catalog()["actions"][action]["params"]["properties"];
    if let (Some(obj), Some(props)) = (params.as_object_mut(), props.as_object()) {
        for (key, schema) in props {
            if let Some(default) = schema.get("default") {
                obj.entry(key.clone()).or_insert_with(|| default.clone());
            }
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_declared() {
        let names = action_names();
        for a in [
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
        ] {
            assert!(names.contains(&a), "{a} missing from the catalog");
        }
        assert_eq!(catalog()["id"], "supabase");
        // every validator compiles
        for name in &names {
            assert!(validator(name).is_some(), "{name} has no validator");
        }
    }

    #[test]
    fn lists_every_violation_with_its_pointer() {
        let err = validate(
            "upsert_database_project_access",
            &json!({"project": "Bad Slug", "expose": "yes", "bogus": 1}),
        )
        .unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_params");
        let paths: Vec<&str> = err.details["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["path"].as_str().unwrap())
            .collect();
        assert!(paths.contains(&"/project"), "{paths:?}");
        assert!(paths.contains(&"/expose"), "{paths:?}");
        assert!(paths.contains(&"/"), "{paths:?}"); // the unknown key
    }

    #[test]
    fn the_catalog_is_a_valid_2020_12_schema() {
        for name in action_names() {
            if let Err(e) = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&params_schema(name))
            {
                panic!("{name}: {e}");
            }
        }
    }

    /// Parameters are checked with the Draft 7 rules: nothing in the
    /// catalog may mean something else there than in 2020-12.
    #[test]
    fn no_keyword_means_something_else_under_draft_7() {
        const ASSERTIONS_BESIDE_REF_ALLOWED: [&str; 5] =
            ["$ref", "description", "default", "title", "examples"];
        const NEWER_KEYWORDS: [&str; 8] = [
            "prefixItems",
            "unevaluatedProperties",
            "unevaluatedItems",
            "dependentRequired",
            "dependentSchemas",
            "$dynamicRef",
            "$anchor",
            "minContains",
        ];
        fn walk(v: &Value, path: &str, problems: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if m.contains_key("$ref") {
                        for k in m.keys() {
                            if !ASSERTIONS_BESIDE_REF_ALLOWED.contains(&k.as_str()) {
                                problems.push(format!("{path}: {k} beside $ref"));
                            }
                        }
                    }
                    if m.get("items").is_some_and(Value::is_array) {
                        problems.push(format!("{path}: tuple items"));
                    }
                    for (k, x) in m {
                        if NEWER_KEYWORDS.contains(&k.as_str()) && !path.ends_with("/properties") {
                            problems.push(format!("{path}: {k}"));
                        }
                        walk(x, &format!("{path}/{k}"), problems);
                    }
                }
                Value::Array(a) => {
                    for (i, x) in a.iter().enumerate() {
                        walk(x, &format!("{path}/{i}"), problems);
                    }
                }
                _ => {}
            }
        }
        let mut problems = Vec::new();
        walk(catalog(), "", &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn only_referenced_definitions_are_compiled() {
        let params = &catalog()["actions"]["upsert_database_access"]["params"];
        let defs = referenced_defs(params);
        // direct ($defs/principal) and indirect (principal -> uuid, service_id)
        for name in ["project", "principal", "uuid", "service_id"] {
            assert!(defs.contains_key(name), "{name} missing: {:?}", defs.keys());
        }
        assert!(!defs.contains_key("lease") && !defs.contains_key("finding"));
    }

    #[test]
    fn fills_defaults() {
        let p = validate("remove_database_project", &json!({"project": "acme"})).unwrap();
        assert_eq!(p["drop_data"], false);
        assert_eq!(p["dry_run"], false);
    }

    #[test]
    fn unknown_action() {
        assert_eq!(
            validate("nope", &json!({})).unwrap_err().code.as_str(),
            "invalid_params"
        );
    }
}
