//! The command-line tool end to end: exit codes of the checks, the embedded vectors, and the
//! signature helper against Pusher's published example.
#![cfg(feature = "cli")]

use std::fs;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_domvia-calls"))
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("domvia-calls-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn schemas_check_passes_on_the_repository_and_fails_on_drift() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let ok = bin()
        .args(["schemas", "check", "--dir"])
        .arg(format!("{repo}/schemas"))
        .output()
        .unwrap();
    assert!(ok.status.success());

    let dir = temp_dir("schemas");
    let written = bin()
        .args(["schemas", "write", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(written.status.success());
    let check = || {
        bin()
            .args(["schemas", "check", "--dir"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    assert!(check().status.success());
    let file = dir.join("call.offer.json");
    let edited = fs::read_to_string(&file)
        .unwrap()
        .replace("\"sdp\"", "\"sdp2\"");
    fs::write(&file, edited).unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("call.offer.json"));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn embedded_vectors_are_the_committed_ones() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let embedded = bin().arg("vectors").output().unwrap();
    let on_disk = bin()
        .args(["vectors", "--dir"])
        .arg(format!("{repo}/conformance/vectors"))
        .output()
        .unwrap();
    assert!(embedded.status.success() && on_disk.status.success());
    assert_eq!(
        String::from_utf8_lossy(&embedded.stdout),
        String::from_utf8_lossy(&on_disk.stdout),
        "a vector file was added or changed without updating EMBEDDED_VECTORS"
    );
}

#[test]
fn default_command_runs_the_self_check() {
    let out = bin().output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("check: ok"));
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = bin().args(["check", "--root", repo]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn vector_failures_give_exit_code_one() {
    let dir = temp_dir("vectors");
    fs::write(
        dir.join("bad.json"),
        r#"{"groups":[{"op":"parse_channel_name","cases":[{"id":"x","name":"private-call.a.b.c","error":"channel.scope.empty"}]}]}"#,
    )
    .unwrap();
    let out = bin().args(["vectors", "--dir"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL bad.json/parse_channel_name/x"));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sign_reproduces_and_verifies_pusher_presence_example() {
    let out = bin()
        .args([
            "sign",
            "presence",
            "--key",
            "278d425bdf160c739803",
            "--socket-id",
            "1234.1234",
            "--channel",
            "presence-foobar",
            "--channel-data",
            r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#,
            "--verify",
            "278d425bdf160c739803:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c",
        ])
        .env("DOMVIA_APP_SECRET", "7ad3773142a6692b25b8")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("verify:         OK"));
    assert!(
        !stdout.contains("7ad3773142a6692b25b8"),
        "the secret must not be printed"
    );
}

#[test]
fn sign_reports_a_mismatch_with_its_code() {
    let out = bin()
        .args([
            "sign",
            "private",
            "--key",
            "k",
            "--secret",
            "s",
            "--socket-id",
            "1.2",
            "--channel",
            "private-call.room.a.b",
            "--verify",
            "k:00",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[signature.mismatch]"));
}

#[test]
fn sign_http_round_trips_through_verify() {
    let signed = bin()
        .args([
            "sign",
            "http",
            "--key",
            "k",
            "--secret",
            "s",
            "--path",
            "/apps/1/events",
            "--body",
            "{}",
            "--timestamp",
            "1000",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&signed.stdout);
    let query = stdout
        .lines()
        .find_map(|l| l.strip_prefix("query:"))
        .unwrap()
        .trim()
        .to_owned();
    let verify = |now: &str| {
        bin()
            .args([
                "sign",
                "http",
                "--key",
                "k",
                "--secret",
                "s",
                "--path",
                "/apps/1/events",
                "--body",
                "{}",
                "--verify-query",
                &query,
                "--now",
                now,
            ])
            .output()
            .unwrap()
            .status
    };
    assert!(verify("1100").success());
    assert_eq!(verify("1601").code(), Some(1));
}

#[test]
fn bad_usage_exits_two() {
    let out = bin()
        .args([
            "sign",
            "private",
            "--key",
            "k",
            "--secret",
            "s",
            "--socket-id",
            "nope",
            "--channel",
            "c",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("socket_id"));
}

#[cfg(all(feature = "media", feature = "trusted"))]
#[test]
fn call_with_no_flags_makes_a_real_call_and_shows_the_record() {
    let out = bin()
        .args(["call", "--seconds", "0"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "alice ICE connected, DTLS up",
        "bob   first RTP packet",
        "echo:ping",
        "\"end_reason\": \"hangup\"",
        "\"accepted_by\": \"bob\"",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
