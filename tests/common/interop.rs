//! What the interop tests share: reporting a skipped test past the harness's output capture,
//! making a missing system component fatal under `DOMVIA_REQUIRE_INTEROP=1` (CI sets it), and
//! running a test again inside a network namespace that has only loopback.
//!
//! Chromium gathers ICE candidates on every interface of the machine and sends connectivity checks
//! from all of them, even when the page signals only its loopback candidates. In a namespace made
//! by `unshare --net`, loopback is the only interface, so no packet of the test can go elsewhere.

use std::io::Write;
use std::process::Command;

/// Writes a line where `cargo test` shows it even for a passing test.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Reports that `test` cannot run because of `why`; panics instead when CI requires interop.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("DOMVIA_REQUIRE_INTEROP").is_some() {
        panic!("{test}: {why}, and DOMVIA_REQUIRE_INTEROP is set");
    }
    say(&format!("SKIPPED interop test {test}: {why}"));
}

/// Whether this process's network namespace has no interface but `lo`.
pub fn only_loopback() -> bool {
    std::fs::read_to_string("/proc/net/dev").is_ok_and(|dev| {
        dev.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .all(|name| name.trim() == "lo")
    })
}

fn found(program: &str, version_flag: &str) -> bool {
    Command::new(program)
        .arg(version_flag)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the test `test` of this binary again in a new network namespace with only loopback up,
/// unless this process already is in one. Returns `true` when the test ran there (and passed;
/// a failure there fails the caller), `false` when the caller should run the test itself, and
/// `None` when no namespace can be made (the test was reported as skipped).
pub fn rerun_isolated(test: &str) -> Option<bool> {
    if only_loopback() {
        return Some(false);
    }
    if !found("unshare", "--version") || !found("ip", "-V") {
        skip(
            test,
            "it needs a network namespace with only loopback, and `unshare` (util-linux) or `ip` (iproute2) is missing",
        );
        return None;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let status = Command::new("unshare")
        .args(["--net", "--map-root-user", "--", "sh", "-c"])
        .arg("ip link set lo up && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .status()
        .expect("unshare starts");
    assert!(
        status.success(),
        "{test} failed in its loopback-only network namespace (its output is above)"
    );
    Some(true)
}
