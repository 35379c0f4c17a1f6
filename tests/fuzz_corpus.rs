//! Replays every committed fuzz corpus file through its entry point on the stable toolchain, so
//! `cargo test` covers what the fuzzers found interesting (and every regression input added).

use std::fs;
use std::path::Path;

use domvia_calls::call::Phase;
use domvia_calls::event::EndReason;
use domvia_calls::fuzz_entry::{TARGETS, call_machine_run, hub_run};

#[test]
fn every_corpus_file_replays_without_a_finding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for (name, entry) in TARGETS {
        let dir = root.join(name);
        let files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for target {name} at {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            files.len() >= 4,
            "target {name} has only {} seeds",
            files.len()
        );
        for file in files {
            let data = fs::read(&file).unwrap();
            // A panic here names the target and file, which is the reproducer.
            eprintln!("replaying {}", file.display());
            entry(&data);
            total += 1;
        }
    }
    assert!(total > 300, "only {total} corpus files");
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let manifest =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lacks target {name}"
        );
        let src =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/fuzz_targets/{name}.rs"));
        let text =
            fs::read_to_string(&src).unwrap_or_else(|_| panic!("{} is missing", src.display()));
        assert!(
            text.contains(&format!("fuzz_entry::{name}(")),
            "{} does not call fuzz_entry::{name}",
            src.display()
        );
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    fs::read_dir(dir)
        .unwrap()
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .collect()
}

/// The seeds made from recorded calls (fuzz/transcripts/, by fuzz/seed.py) start the fuzzers
/// deep in the state machines: on the hub both parties subscribe with valid signatures and the
/// call's events are delivered; the callee's call machine goes through Connecting to Active and
/// ends by the caller's hang-up.
#[test]
fn seeds_from_recorded_calls_reach_deep_states() {
    let best = corpus("hub")
        .iter()
        .map(|d| hub_run(d))
        .max_by_key(|r| r.call_events_delivered)
        .unwrap();
    assert_eq!(best.subscriptions_succeeded, 2, "{best:?}");
    assert!(best.call_events_delivered >= 5, "{best:?}");
    let reached_through_a_call = corpus("call_machine").iter().any(|d| {
        let phases = call_machine_run(d);
        phases.contains(&Phase::Connecting)
            && phases.contains(&Phase::Active)
            && phases.last() == Some(&Phase::Ended(EndReason::Hangup))
    });
    assert!(reached_through_a_call);
}
