//! The spec's requirement markup: IDs unique and well formed, every cross-reference resolves, and
//! the machine-readable export is current.

use std::fs;
use std::path::Path;

use domvia_calls::spec::{self, Level};

fn spec_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let text = fs::read_to_string(dir.join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

#[test]
fn requirement_ids_are_unique_and_well_formed() {
    let reqs = spec::collect(&spec_files()).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(reqs.len() >= 100, "only {} requirements", reqs.len());
    // Every protocol area of the brief has normative text.
    for (area, _) in spec::AREAS {
        assert!(
            reqs.iter()
                .any(|r| r.area == area && r.level == Level::Must),
            "area {area} has no MUST requirement"
        );
    }
}

#[test]
fn every_cross_reference_names_a_defined_requirement() {
    let files = spec_files();
    let reqs = spec::collect(&files).unwrap();
    let mut dangling = Vec::new();
    for (name, text) in &files {
        let mut rest = text.as_str();
        while let Some(start) = rest.find('[') {
            rest = &rest[start + 1..];
            let Some(end) = rest.find(']') else { break };
            let candidate = &rest[..end];
            let looks_like_id = candidate.split_once('-').is_some_and(|(a, n)| {
                !a.is_empty()
                    && a.bytes().all(|b| b.is_ascii_uppercase())
                    && n.len() == 3
                    && n.bytes().all(|b| b.is_ascii_digit())
            });
            if looks_like_id && !reqs.iter().any(|r| r.id == candidate) {
                dangling.push(format!("{name}: [{candidate}]"));
            }
        }
    }
    assert!(dangling.is_empty(), "dangling references: {dangling:?}");
}

#[test]
fn the_export_is_current() {
    let reqs = spec::collect(&spec_files()).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("spec")
        .join(spec::EXPORT_FILE);
    let committed = fs::read_to_string(path).unwrap();
    assert!(
        committed == spec::export(&reqs),
        "spec/requirements.json is stale: run `domvia-calls spec export`"
    );
    let parsed: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(parsed["requirements"].as_array().unwrap().len(), reqs.len());
}
