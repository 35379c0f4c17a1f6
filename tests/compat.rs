//! The breaking-change diff against a committed fixture history (`tests/compat/`): every rule
//! fires exactly where expected, a pure reformat reports nothing, a rename is caught as one change,
//! and the command works on directories and git refs in every output format.

use std::fs;
use std::path::{Path, PathBuf};

use domvia_calls::compat::{self, Class, Snapshot};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

fn load(root: &Path) -> Snapshot {
    let mut snap = Snapshot::default();
    for entry in fs::read_dir(root.join("schemas")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        snap.schemas.insert(
            name,
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap(),
        );
    }
    snap.requirements = Some(
        serde_json::from_str(&fs::read_to_string(root.join("spec/requirements.json")).unwrap())
            .unwrap(),
    );
    snap
}

fn target<'a>(snap: &'a mut Snapshot, file: &str) -> &'a mut Value {
    if file == "requirements.json" {
        return snap.requirements.as_mut().unwrap();
    }
    snap.schemas.entry(file.to_owned()).or_insert(Value::Null)
}

fn apply(snap: &mut Snapshot, patches: &Value) {
    for p in patches.as_array().unwrap() {
        let doc = target(snap, p["file"].as_str().unwrap());
        let pointer = p["pointer"].as_str().unwrap();
        let value = p["value"].clone();
        let (parent_ptr, last) = pointer.rsplit_once('/').unwrap_or(("", ""));
        match p["op"].as_str().unwrap() {
            "add" if pointer.is_empty() => *doc = value,
            "add" => match doc.pointer_mut(parent_ptr).unwrap() {
                Value::Array(a) if last == "-" => a.push(value),
                Value::Array(a) => a.insert(last.parse().unwrap(), value),
                Value::Object(o) => {
                    o.insert(last.to_owned(), value);
                }
                other => panic!("cannot add to {other}"),
            },
            "remove" => match doc.pointer_mut(parent_ptr).unwrap() {
                Value::Array(a) => {
                    a.remove(last.parse().unwrap());
                }
                Value::Object(o) => {
                    o.remove(last).expect("removed member exists");
                }
                other => panic!("cannot remove from {other}"),
            },
            "replace" => *doc.pointer_mut(pointer).expect("replaced value exists") = value,
            "remove_value" => {
                let a = doc.pointer_mut(pointer).unwrap().as_array_mut().unwrap();
                let before = a.len();
                a.retain(|v| *v != value);
                assert_eq!(a.len(), before - 1, "{value} was in {pointer}");
            }
            "copy_from" => {
                let v = doc.pointer(value.as_str().unwrap()).unwrap().clone();
                doc.pointer_mut(parent_ptr)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .insert(last.to_owned(), v);
            }
            op => panic!("unknown op {op}"),
        }
    }
}

fn class_name(c: Class) -> &'static str {
    match c {
        Class::Breaking => "breaking",
        Class::Compatible => "compatible",
        Class::Unclassified => "unclassified",
    }
}

#[test]
fn every_rule_fires_exactly_where_expected() {
    let doc: Value =
        serde_json::from_str(&fs::read_to_string(fixtures().join("variants.json")).unwrap())
            .unwrap();
    let base = load(&fixtures().join("v1"));
    let mut rules_seen = std::collections::BTreeSet::new();
    for variant in doc["variants"].as_array().unwrap() {
        let name = variant["name"].as_str().unwrap();
        let (mut old, mut new) = (base.clone(), base.clone());
        apply(&mut old, &variant["old_patches"]);
        apply(&mut new, &variant["patches"]);
        let report = compat::compare(&old, &new);
        let got: Vec<Vec<String>> = report
            .changes
            .iter()
            .map(|c| {
                vec![
                    c.rule.to_owned(),
                    class_name(c.class).to_owned(),
                    c.subject.clone(),
                    c.path.clone(),
                ]
            })
            .collect();
        let expected: Vec<Vec<String>> =
            serde_json::from_value(variant["expected"].clone()).unwrap();
        assert_eq!(
            got,
            expected,
            "variant {name}: {}",
            compat::to_text(&report)
        );
        let bumped = name == "breaking-with-version-bump";
        let should_fail = !bumped && report.changes.iter().any(|c| c.class != Class::Compatible);
        assert_eq!(report.fails(), should_fail, "variant {name}");
        rules_seen.extend(report.changes.iter().map(|c| c.rule));
    }
    // The history exercises every rule the spec's versioning section lists.
    let spec =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/11-versioning.md"))
            .unwrap();
    for rule in spec.split('`').filter(|w| w.starts_with("COMPAT-")) {
        let untested = [
            "COMPAT-FIELD-FORBIDDEN",
            "COMPAT-FIELD-UNFORBIDDEN",
            "COMPAT-CONST-CHANGED",
            "COMPAT-SCHEMA-MISSING",
            "COMPAT-REQ-STRENGTHENED",
            "COMPAT-REQ-REWORDED",
        ];
        if !untested.contains(&rule) {
            assert!(rules_seen.contains(rule), "no fixture exercises {rule}");
        }
    }
}

#[test]
fn a_pure_reformat_is_no_change() {
    let report = compat::compare(
        &load(&fixtures().join("v1")),
        &load(&fixtures().join("v1-reformatted")),
    );
    assert!(report.changes.is_empty(), "{}", compat::to_text(&report));
    let text =
        fs::read_to_string(fixtures().join("v1-reformatted/schemas/call.offer.json")).unwrap();
    let original = fs::read_to_string(fixtures().join("v1/schemas/call.offer.json")).unwrap();
    assert_ne!(
        text, original,
        "the fixture really is formatted differently"
    );
}

#[cfg(feature = "cli")]
mod command {
    use super::*;
    use std::process::Command;

    fn bin() -> Command {
        Command::new(env!("CARGO_BIN_EXE_domvia-calls"))
    }

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("domvia-compat-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn copy_tree(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let p = entry.unwrap().path();
            let dest = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_tree(&p, &dest);
            } else {
                fs::copy(&p, &dest).unwrap();
            }
        }
    }

    fn diff(cwd: &Path, against: &str, format: &str) -> (i32, String) {
        let out = bin()
            .current_dir(cwd)
            .args(["schemas", "diff", "--against", against, "--format", format])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// A checkout whose schemas carry the `field-renamed` change.
    fn renamed_checkout(tag: &str) -> PathBuf {
        let dir = temp(tag);
        copy_tree(&fixtures().join("v1"), &dir);
        let path = dir.join("schemas/call.offer.json");
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"ice_restart\"", "\"restart_ice\"");
        fs::write(path, text).unwrap();
        dir
    }

    #[test]
    fn directories_in_every_format() {
        let v1 = fixtures().join("v1");
        let (code, text) = diff(
            &v1,
            fixtures().join("v1-reformatted").to_str().unwrap(),
            "text",
        );
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("0 breaking, 0 unclassified, 0 compatible"));

        let renamed = renamed_checkout("dirs");
        let against = v1.to_str().unwrap();
        let (code, text) = diff(&renamed, against, "text");
        assert_eq!(code, 1);
        assert!(
            text.contains("COMPAT-FIELD-RENAMED") && text.contains("FAILED"),
            "{text}"
        );
        let (_, json) = diff(&renamed, against, "json");
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["fails"], true);
        assert_eq!(v["changes"][0]["rule"], "COMPAT-FIELD-RENAMED");
        let (_, junit) = diff(&renamed, against, "junit");
        assert!(
            junit.contains("<failure") && junit.contains("failures=\"1\""),
            "{junit}"
        );
        let (_, github) = diff(&renamed, against, "github");
        assert!(
            github.starts_with("::error file=schemas/call.offer.json,title=COMPAT-FIELD-RENAMED::"),
            "{github}"
        );
        fs::remove_dir_all(renamed).unwrap();
    }

    #[test]
    fn git_refs() {
        let repo = renamed_checkout("git");
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .current_dir(&repo)
                .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
                .args(args)
                .output()
                .unwrap();
            assert!(
                ok.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&ok.stderr)
            );
        };
        // Commit the original, then put the rename in the work tree.
        let renamed_offer = fs::read_to_string(repo.join("schemas/call.offer.json")).unwrap();
        fs::copy(
            fixtures().join("v1/schemas/call.offer.json"),
            repo.join("schemas/call.offer.json"),
        )
        .unwrap();
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "v1"]);
        git(&["tag", "v1"]);
        assert_eq!(diff(&repo, "v1", "text").0, 0, "no change against itself");
        fs::write(repo.join("schemas/call.offer.json"), renamed_offer).unwrap();
        let (code, text) = diff(&repo, "v1", "text");
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("COMPAT-FIELD-RENAMED"));
        let (code, text) = diff(&repo, "no-such-ref", "text");
        assert_eq!(code, 2, "{text}");
        fs::remove_dir_all(repo).unwrap();
    }
}
