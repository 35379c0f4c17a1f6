//! The conformance runner against the reference servers: every MUST case passes, the verdicts
//! equal the committed expected-results file, and every MUST requirement of the spec has a case
//! or a written reason why it is not checked over the wire.

use std::collections::BTreeSet;
use std::path::Path;

use domvia_calls::conform::embedded::{Embedded, EmbeddedOptions};
use domvia_calls::conform::expected::Expected;
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
    let expected = Expected::parse(
        &std::fs::read_to_string(root().join("conformance/expected/reference.json")).unwrap(),
    )
    .unwrap();
    let changes = diff_expected(&expected.verdicts(), &report.verdicts());
    assert!(
        changes.is_empty(),
        "verdicts differ from conformance/expected/reference.json (regenerate with `domvia-calls conform --write-expected conformance/expected/reference.json` if intended): {changes:?}"
    );
}

/// Every committed expected-results file (the reference servers, sockudo, ...; `client-*.json`
/// for clients, against the client-role cases) names only cases that exist and says why each
/// case that does not pass does not.
#[test]
fn expected_results_files_explain_every_case_that_does_not_pass() {
    let server_ids: BTreeSet<&str> = conform::cases::all().iter().map(|c| c.info.id).collect();
    let client_ids: BTreeSet<&str> = conform::client_role::cases().iter().map(|c| c.id).collect();
    let dir = root().join("conformance/expected");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        files += 1;
        let for_client = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("client-"));
        let ids = if for_client { &client_ids } else { &server_ids };
        let e = Expected::parse(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(
            e.unexplained().is_empty(),
            "{}: no reason for {:?}",
            path.display(),
            e.unexplained()
        );
        let unknown: Vec<&String> = e
            .cases
            .keys()
            .filter(|k| !ids.contains(k.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{}: unknown cases {unknown:?}",
            path.display()
        );
        let missing: Vec<&&str> = ids.iter().filter(|k| !e.cases.contains_key(**k)).collect();
        assert!(
            missing.is_empty(),
            "{}: cases missing {missing:?}",
            path.display()
        );
    }
    assert!(files >= 2, "the reference and sockudo files are there");
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
fn a_client_rule_the_client_role_suite_checks_names_its_cases() {
    let reasons = conform::cases::not_over_the_wire();
    let reasons = reasons["requirements"].as_object().unwrap();
    for case in conform::client_role::cases() {
        for r in case.requirements {
            assert!(
                spec_ids().contains(*r),
                "client case {} cites {r}, which spec/ does not define",
                case.id
            );
            if let Some(reason) = reasons.get(*r).and_then(Value::as_str) {
                assert!(
                    reason.contains(&format!("`{}`", case.id)),
                    "the not-over-the-wire reason of {r} does not name the client case {}",
                    case.id
                );
            }
        }
    }
}

fn spec_ids() -> BTreeSet<String> {
    requirements()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
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
