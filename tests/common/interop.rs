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

/// Relay ports coturn may hand out in tests: far from the ephemeral range Linux uses for `:0`.
pub const TURN_RELAY_PORTS: std::ops::RangeInclusive<u16> = 20000..=20999;

/// A coturn process on 127.0.0.1 with REST credentials (`use-auth-secret`) and loopback peers
/// allowed, relaying on 127.0.0.1 only. Stopped when dropped.
pub struct Coturn {
    child: std::process::Child,
    dir: std::path::PathBuf,
    pub port: u16,
}

impl Coturn {
    /// Where Debian installs coturn's server.
    pub const BINARY: &str = "turnserver";

    pub fn installed() -> bool {
        Command::new(Self::BINARY)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Starts coturn with `secret` and waits until it answers a STUN binding request.
    pub fn start(secret: &str) -> Coturn {
        let dir = super::temp_dir("coturn");
        for _ in 0..5 {
            // A free UDP port, released just before coturn takes it.
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(Self::BINARY)
                .args([
                    "-n",
                    "--no-cli",
                    "--listening-ip=127.0.0.1",
                    "--relay-ip=127.0.0.1",
                    "--allow-loopback-peers",
                    "--use-auth-secret",
                    "--realm=domvia.test",
                    "--no-tls",
                    "--no-dtls",
                    "--no-tcp-relay",
                    "--fingerprint",
                    "--simple-log",
                ])
                .arg(format!("--static-auth-secret={secret}"))
                .arg(format!("--listening-port={port}"))
                .arg(format!("--min-port={}", TURN_RELAY_PORTS.start()))
                .arg(format!("--max-port={}", TURN_RELAY_PORTS.end()))
                .arg(format!("--userdb={}", dir.join("turndb").display()))
                .arg(format!("--pidfile={}", dir.join("pid").display()))
                .arg(format!("--log-file={}", dir.join("turn.log").display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("coturn starts");
            let mut coturn = Coturn {
                child,
                dir: dir.clone(),
                port,
            };
            if coturn.answers_stun() {
                return coturn;
            }
            let _ = coturn.child.kill();
        }
        panic!("coturn did not come up; its log is in {}", dir.display());
    }

    fn answers_stun(&mut self) -> bool {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        // RFC 5389 Binding request: type, zero length, magic cookie, transaction id.
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(b"domvia-ready");
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let _ = socket.send_to(&request, ("127.0.0.1", self.port));
            let mut buf = [0u8; 512];
            if let Ok((n, _)) = socket.recv_from(&mut buf)
                && n >= 20
                && buf[..2] == [0x01, 0x01]
            {
                return true;
            }
        }
        false
    }

    /// `turn:` URL of this server over UDP.
    pub fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the conformance case `webrtc.handshake` against the embedded reference servers with
/// `peer` as the callee; returns its verdict and what the report says about it.
#[cfg(feature = "conform")]
pub async fn run_webrtc_case(
    peer: domvia_calls::conform::SecondPeer,
    pusher_js: Option<std::path::PathBuf>,
) -> (domvia_calls::conform::Verdict, String) {
    use domvia_calls::conform::embedded::{Embedded, EmbeddedOptions};
    use domvia_calls::conform::{self, RunOptions, Selection};
    let mut embedded = Embedded::start(EmbeddedOptions::default()).await.unwrap();
    embedded.target.second_peer = peer;
    embedded.target.pusher_js = pusher_js;
    let opts = RunOptions {
        selection: Selection {
            only: vec!["webrtc.handshake".into()],
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
    embedded.shutdown().await;
    let case = &report.cases[0];
    (
        case.verdict,
        serde_json::to_string(case).unwrap_or_default(),
    )
}
