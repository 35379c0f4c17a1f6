//! The committed schemas are exactly what the types generate, and every schema is valid JSON
//! Schema 2020-12 that accepts what the core serializes.

use std::fs;
use std::path::Path;

use domvia_calls::schema::{self, Drift};

fn schemas_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn on_disk() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(schemas_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn committed_schemas_have_no_drift() {
    let drift = schema::drift(&on_disk(), |n| {
        fs::read_to_string(schemas_dir().join(n)).ok()
    });
    assert!(
        drift.is_empty(),
        "run `cargo run -- schemas write`: {drift:?}"
    );
}

#[test]
fn drift_detection_sees_every_kind_of_change() {
    let generated = schema::files();
    let (first, _) = &generated[1];
    let mut existing: Vec<String> = generated.iter().map(|(n, _)| n.clone()).collect();
    existing.push("call.transfer.json".into());
    let drift = schema::drift(&existing, |n| {
        let (_, contents) = generated.iter().find(|(g, _)| g == n)?;
        match n {
            "index.json" => None,
            n if n == first => Some(contents.replace("\"type\"", "\"typ\"")),
            _ => Some(contents.clone()),
        }
    });
    assert_eq!(
        drift,
        vec![
            Drift::Missing("index.json".into()),
            Drift::Changed(first.clone()),
            Drift::Extra("call.transfer.json".into()),
        ]
    );
}

#[test]
fn every_schema_compiles_as_2020_12() {
    for (name, contents) in schema::files() {
        let value: serde_json::Value = serde_json::from_str(&contents).unwrap();
        if name == schema::INDEX_FILE {
            continue;
        }
        assert_eq!(
            value["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        jsonschema::draft202012::meta::validate(&value)
            .unwrap_or_else(|e| panic!("{name} is not a valid 2020-12 schema: {e}"));
    }
}

#[test]
fn asyncapi_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(domvia_calls::asyncapi::FILE);
    let committed = fs::read_to_string(path).expect("spec/asyncapi.json exists");
    assert!(
        committed == domvia_calls::asyncapi::text(),
        "spec/asyncapi.json is stale: run `cargo run -- asyncapi write`"
    );
}
