//! What the interop tests share: reporting a skipped test past the harness's output capture,
//! making a missing system component fatal under `DOMVIA_REQUIRE_INTEROP=1` (CI sets it), and
//! running a test again inside a network namespace that has only loopback.
//!
//! Chromium gathers ICE candidates on every interface of the machine and sends connectivity checks
//! from all of them, even when the page signals only its loopback candidates. In a namespace made
//! by `unshare --net`, loopback is the only interface, so no packet of the test can go elsewhere.

use std::io::Write;

#[cfg(feature = "conform")]
use domvia_calls::interop::netns;

/// Writes a line where `cargo test` shows it even for a passing test.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Reports that `test` cannot run because of `why`; panics instead when CI requires interop.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("DOMVIA_REQUIRE_INTEROP").is_some() {
        panic!("{test}: {why}, and DOMVIA_REQUIRE_INTEROP is set");
    }
    // A line of its own, even when the harness has written "test NAME ... " without a newline.
    say(&format!("\nSKIPPED interop test {test}: {why}"));
}

/// Runs the test `test` of this binary again in a new network namespace with only loopback up,
/// unless this process already is in one. Returns `true` when the test ran there (and passed;
/// a failure there fails the caller), `false` when the caller should run the test itself, and
/// `None` when no namespace can be made (the test was reported as skipped).
#[cfg(feature = "conform")]
pub fn rerun_isolated(test: &str) -> Option<bool> {
    if netns::only_loopback() {
        return Some(false);
    }
    if let Some(why) = netns::unavailable() {
        skip(test, why);
        return None;
    }
    let args: Vec<std::ffi::OsString> = [test, "--exact", "--nocapture", "--test-threads=1"]
        .iter()
        .map(Into::into)
        .collect();
    // The run's own harness output ("running 1 test ...") would repeat ours: it is shown only
    // when the run fails, and a skip notice it printed is passed on.
    let out = netns::self_isolated(&args)
        .expect("unshare is available")
        .output()
        .expect("unshare starts");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if !out.status.success() {
        say(&format!("{stdout}\n{stderr}"));
        panic!("{test} failed in its loopback-only network namespace (its output is above)");
    }
    for line in stderr.lines().filter(|l| l.starts_with("SKIPPED")) {
        say(line);
    }
    Some(true)
}

/// Runs the one conformance case `id` against `embedded`; returns its verdict and the case's
/// JSON report (for assertions on the note or the failure).
#[cfg(feature = "conform")]
pub async fn run_case(
    embedded: &domvia_calls::conform::embedded::Embedded,
    id: &str,
) -> (domvia_calls::conform::Verdict, String) {
    use domvia_calls::conform::{self, RunOptions, Selection};
    let opts = RunOptions {
        selection: Selection {
            only: vec![id.to_owned()],
            ..Selection::default()
        },
        ..RunOptions::default()
    };
    let report = conform::run(
        embedded.target.clone(),
        &opts,
        Some(embedded.webhooks.clone()),
    )
    .await
    .unwrap();
    let case = &report.cases[0];
    (case.verdict, serde_json::to_string(case).unwrap())
}

/// Runs `webrtc.presence.handshake` against the embedded reference servers with `peer` as the callee.
#[cfg(feature = "conform")]
pub async fn run_webrtc_case(
    peer: domvia_calls::conform::SecondPeer,
    pusher_js: Option<std::path::PathBuf>,
) -> (domvia_calls::conform::Verdict, String) {
    use domvia_calls::conform::embedded::{Embedded, EmbeddedOptions};
    let mut embedded = Embedded::start(EmbeddedOptions::default()).await.unwrap();
    embedded.target.second_peer = peer;
    embedded.target.pusher_js = pusher_js;
    let result = run_case(&embedded, "webrtc.presence.handshake").await;
    embedded.shutdown().await;
    result
}
