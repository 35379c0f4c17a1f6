//! Runs every language-neutral vector in `conformance/vectors/` against the core, and validates
//! every event vector's data against the committed JSON Schemas with an independent validator.

use std::fs;
use std::path::Path;

use domvia_calls::vectors::run_file;
use serde_json::Value;

fn vector_files() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/vectors");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("conformance/vectors exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&text).unwrap())
        })
        .collect()
}

#[test]
fn every_vector_passes() {
    let files = vector_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "channel-names.json",
        "envelope.json",
        "events.json",
        "frames.json",
        "signatures.json",
    ] {
        assert!(names.contains(&expected), "{expected} is missing");
    }
    let mut total = 0;
    let mut failures = Vec::new();
    for (name, doc) in &files {
        for r in run_file(name, doc) {
            total += 1;
            if let Some(f) = r.failure {
                failures.push(format!("{}/{}/{}: {f}", r.file, r.op, r.id));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total > 250, "only {total} vectors ran");
}

#[test]
fn a_wrong_expectation_is_reported_not_ignored() {
    let doc: Value = serde_json::json!({"groups": [
        {"op": "parse_channel_name", "cases": [
            {"id": "lies", "name": "private-call.room.a.b", "error": "channel.scope.empty"}
        ]},
        {"op": "no_such_op", "cases": [{"id": "x"}]}
    ]});
    let results = run_file("test.json", &doc);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.failure.is_some()));
}

fn schema_for(schemas: &Path, data: &Value, event: &str) -> Option<Value> {
    let logical = event.strip_prefix("client-").unwrap_or(event);
    let file = if data.get("sealed").is_some() {
        "sealed.json".to_owned()
    } else if domvia_calls::event::EventKind::from_name(logical).is_some() {
        format!("{logical}.json")
    } else {
        return None;
    };
    Some(serde_json::from_str(&fs::read_to_string(schemas.join(file)).unwrap()).unwrap())
}

/// `candidates[0].candidate` → (`/candidates/0/candidate`, `/candidates/0`, `candidate`).
fn pointer_of(field: &str) -> (String, String, String) {
    let segments: Vec<String> = field
        .replace('[', ".")
        .replace(']', "")
        .split('.')
        .map(str::to_owned)
        .collect();
    let pointer = format!("/{}", segments.join("/"));
    let parent = format!("/{}", segments[..segments.len() - 1].join("/"));
    let parent = if parent == "/" { String::new() } else { parent };
    (
        pointer,
        parent,
        segments.last().cloned().unwrap_or_default(),
    )
}

#[test]
fn schema_verdicts_match_the_vectors() {
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for (name, doc) in vector_files() {
        for group in doc["groups"].as_array().unwrap() {
            for case in group["cases"].as_array().unwrap() {
                let Some(expected) = case.get("schema").and_then(Value::as_str) else {
                    continue;
                };
                let data = match &case["data"] {
                    Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                    v => v.clone(),
                };
                let event = case["event"].as_str().unwrap();
                let schema = schema_for(&schemas, &data, event)
                    .unwrap_or_else(|| panic!("{name}/{}: no schema", case["id"]));
                let validator = jsonschema::validator_for(&schema).expect("schema compiles");
                let verdict = if data.is_object() && validator.is_valid(&data) {
                    "valid"
                } else {
                    "invalid"
                };
                checked += 1;
                if let Some(field) = case.get("field").and_then(Value::as_str)
                    && verdict == "invalid"
                {
                    let (pointer, parent, last) = pointer_of(field);
                    let points_at_field = validator.iter_errors(&data).any(|e| {
                        let at = e.instance_path().to_string();
                        at == pointer
                            || at.starts_with(&format!("{pointer}/"))
                            || (at == parent && e.to_string().contains(&format!("\"{last}\"")))
                    });
                    if !points_at_field {
                        mismatches.push(format!(
                            "{name}/{}: no schema error points at `{field}`",
                            case["id"]
                        ));
                    }
                }
                if verdict != expected {
                    let errors: Vec<String> = validator
                        .iter_errors(&data)
                        .map(|e| e.to_string())
                        .collect();
                    mismatches.push(format!(
                        "{name}/{}: schema says {verdict}, vector says {expected} {errors:?}",
                        case["id"]
                    ));
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(checked > 80, "only {checked} schema verdicts checked");
}
