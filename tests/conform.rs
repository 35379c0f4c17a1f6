//! The conformance runner against the reference servers: every MUST case passes, the verdicts
//! equal the committed expected-results file, and every MUST requirement of the spec has a case
//! or a written reason why it is not checked over the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use domvia_calls::conform::embedded::{Embedded, EmbeddedOptions};
use domvia_calls::conform::verdict::diff_expected;
use domvia_calls::conform::{self, Level, RunOptions, Verdict};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn requirements() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("spec/requirements.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["requirements"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_servers_pass_and_match_the_expected_results() {
    let embedded = Embedded::start(EmbeddedOptions::default()).await.unwrap();
    let report = conform::run(
        embedded.target.clone(),
        &RunOptions::default(),
        Some(embedded.webhooks.clone()),
    )
    .await
    .unwrap();
    embedded.shutdown().await;
    let failed: Vec<String> = report
        .cases
        .iter()
        .filter(|c| c.verdict.fails_run() || c.verdict == Verdict::NonStrict)
        .map(|c| {
            format!(
                "{} {}: {}",
                c.verdict,
                c.id,
                domvia_calls::conform::report::failure_text(c)
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "the reference servers fail cases:\n{}",
        failed.join("\n")
    );
    let expected: BTreeMap<String, Verdict> = serde_json::from_str(
        &std::fs::read_to_string(root().join("conformance/expected/reference.json")).unwrap(),
    )
    .unwrap();
    let changes = diff_expected(&expected, &report.verdicts());
    assert!(
        changes.is_empty(),
        "verdicts differ from conformance/expected/reference.json (regenerate with `domvia-calls conform --write-expected conformance/expected/reference.json` if intended): {changes:?}"
    );
}

#[test]
fn every_must_requirement_has_a_case_or_a_reason() {
    let reqs = requirements();
    let ids: BTreeSet<&str> = reqs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let must: BTreeSet<&str> = reqs
        .iter()
        .filter(|r| r["level"] == "must")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let cases = conform::cases::all();
    let mut covered = BTreeSet::new();
    for c in &cases {
        for r in c.info.requirements {
            assert!(
                ids.contains(r),
                "case {} cites {r}, which spec/ does not define",
                c.info.id
            );
            covered.insert(*r);
        }
    }
    let reasons = conform::cases::not_over_the_wire();
    let reasons = reasons["requirements"].as_object().unwrap();
    for (id, reason) in reasons {
        assert!(
            must.contains(id.as_str()),
            "not-over-the-wire.json lists {id}, which is not a MUST requirement"
        );
        assert!(
            !covered.contains(id.as_str()),
            "{id} has a case; drop its not-over-the-wire reason"
        );
        assert!(
            reason.as_str().is_some_and(|r| r.len() > 40),
            "{id} needs a real reason"
        );
    }
    let missing: Vec<&&str> = must
        .iter()
        .filter(|id| !covered.contains(**id) && !reasons.contains_key(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "MUST requirements with neither a case nor a reason: {missing:?}"
    );
}

#[test]
fn case_ids_are_unique_and_well_formed() {
    let cases = conform::cases::all();
    let mut seen = BTreeSet::new();
    for c in &cases {
        let id = c.info.id;
        assert!(seen.insert(id), "duplicate case id {id}");
        let (area, name) = id
            .split_once('.')
            .unwrap_or_else(|| panic!("{id} is not area.name"));
        assert_eq!(area, c.info.area.name(), "{id} is filed under another area");
        assert!(
            name.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.'),
            "{id}"
        );
        assert!(!c.info.requirements.is_empty(), "{id} cites no requirement");
        assert!(!c.info.title.is_empty());
    }
    assert!(cases.iter().any(|c| c.info.level == Level::Should));
}

#[test]
fn the_expected_results_name_only_existing_cases() {
    let expected: BTreeMap<String, Verdict> = serde_json::from_str(
        &std::fs::read_to_string(root().join("conformance/expected/reference.json")).unwrap(),
    )
    .unwrap();
    let ids: BTreeSet<&str> = conform::cases::all().iter().map(|c| c.info.id).collect();
    for id in expected.keys() {
        assert!(
            ids.contains(id.as_str()),
            "expected results name {id}, which is not a case"
        );
    }
}
