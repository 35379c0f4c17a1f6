//! `domvia-calls load` against the reference realtime server on loopback: every event of a
//! short run is delivered exactly once and counted; refusals and losses injected by a proxy are
//! counted as such; a server that drops the verified user id fails presence calls with the rule
//! named; a run over `wss://` (a private CA) delivers every event too; the command writes its
//! text, JSON and HTML. Every run is a few seconds at most.

mod common;

use std::time::Duration;

use domvia_calls::conform::client_role::proxy::Proxy;
use domvia_calls::load::{self, LoadOptions};
use domvia_calls::signing::Secret;

fn options(node: String, calls_per_second: f64, seconds: f64) -> LoadOptions {
    let hold = Duration::from_millis(300);
    LoadOptions {
        node,
        key: common::KEY.into(),
        secret: Secret::new(common::SECRET),
        presence: true,
        scope_id: format!("t{:08x}", rand::random::<u32>()),
        calls_per_second,
        duration: Duration::from_secs_f64(seconds),
        hold,
        media_state_every: Some(Duration::from_millis(100)),
        sdp_bytes: 3000,
        candidates: 4,
        idle: 5,
        pairs: LoadOptions::pairs_for(calls_per_second, hold),
        event_timeout: Duration::from_secs(2),
        server_pid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_a_short_run_is_delivered_once_and_counted() {
    let server = common::start().await;
    let opts = options(format!("ws://{}", server.addr()), 10.0, 2.0);
    let out = load::run(&opts, &|_| {}).await.unwrap();
    let t = &out.totals;
    assert_eq!(out.calls_placed, 20);
    assert_eq!(
        (t.calls_completed, t.calls_failed),
        (20, 0),
        "{:?}",
        t.failures
    );
    let all = t.all();
    assert!(all.sent > 0);
    assert_eq!((all.delivered, all.lost, all.duplicated), (all.sent, 0, 0));
    for name in [
        "client-call.started",
        "client-call.ringing",
        "client-call.accepted",
        "client-call.offer",
        "client-call.answer",
        "client-call.ended",
    ] {
        assert_eq!(t.kinds[name].sent, 20, "{name}: one per call");
    }
    // Each side's candidates, and at least one media-state change each way while held.
    assert!(t.kinds["client-call.ice_candidate"].sent >= 40);
    assert!(t.kinds["client-call.media_state"].sent >= 40);
    assert_eq!(t.setup_from_scheduled.len(), 20);
    assert_eq!(t.rate_refused, 0);
    assert_eq!(out.pairs_lost, 0);
    // The generator measured itself.
    assert!(out.generator.cpu_percent > 0.0);
    assert!(out.server.is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_wss_delivers_every_event() {
    let (ca, cert, key) = common::tls::private_ca();
    domvia_calls::net::trust_ca_pem(ca.as_bytes(), "the test CA").unwrap();
    let server = domvia_calls::server::start(domvia_calls::server::ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        apps: vec![common::app()],
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Default::default()
    })
    .await
    .unwrap();
    let opts = options(format!("wss://{}", server.addr()), 10.0, 1.0);
    let out = load::run(&opts, &|_| {}).await.unwrap();
    let t = &out.totals;
    assert_eq!(
        (t.calls_completed, t.calls_failed),
        (10, 0),
        "{:?}",
        t.failures
    );
    let all = t.all();
    assert!(all.sent >= 10 * 8, "{all:?}");
    assert_eq!((all.delivered, all.lost, all.duplicated), (all.sent, 0, 0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_refused_with_4301_are_counted_and_lost() {
    let server = common::start().await;
    let proxy = Proxy::start(server.addr()).await.unwrap();
    let mut opts = options(format!("ws://{}", proxy.addr()), 5.0, 1.0);
    opts.idle = 0;
    // The first three client events of the run are refused instead of relayed: the first
    // calls' call.started never arrives, so those calls stall.
    proxy.refuse_client_events(3);
    let out = load::run(&opts, &|_| {}).await.unwrap();
    let t = &out.totals;
    assert_eq!(t.rate_refused, 3);
    let all = t.all();
    assert_eq!(all.lost, 3, "the refused events never arrived");
    assert_eq!(all.delivered + all.lost, all.sent);
    assert_eq!(t.calls_failed, 3, "{:?}", t.failures);
    assert_eq!(
        t.failures.get("stalled before the callee saw call.started"),
        Some(&3)
    );
    assert_eq!(t.calls_completed as u64, out.calls_placed - 3);
    server.shutdown().await;
}

#[cfg(feature = "defects")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_verified_user_id_fails_presence_calls_by_rule() {
    let mut app = common::app();
    app.defect = Some(domvia_calls::realtime::Defect::DropPresenceUserId);
    let server = common::start_with(vec![app], 1024).await;
    let mut opts = options(format!("ws://{}", server.addr()), 5.0, 1.0);
    let out = load::run(&opts, &|_| {}).await.unwrap();
    assert_eq!(out.totals.calls_completed, 0);
    assert_eq!(
        out.totals
            .failures
            .get("the callee refused call.started: event.missing_verified_user")
            .copied(),
        Some(out.calls_placed as usize)
    );
    // The same server carries private calls, where no verified user id is promised.
    opts.presence = false;
    let out = load::run(&opts, &|_| {}).await.unwrap();
    assert_eq!(out.totals.calls_failed, 0, "{:?}", out.totals.failures);
    server.shutdown().await;
}

#[test]
fn the_command_loads_its_own_reference_server_and_writes_every_output() {
    let dir = std::env::temp_dir().join(format!("domvia-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, html) = (dir.join("load.json"), dir.join("load.html"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_domvia-calls"))
        .args([
            "load",
            "--duration",
            "1",
            "--hold-ms",
            "200",
            "--idle",
            "10",
        ])
        .arg("--report-json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("call setup"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let run = &report["results"]["run"];
    assert_eq!(run["calls"]["completed"], run["calls"]["placed"]);
    assert_eq!(run["events"]["lost"], 0);
    // The server it started is sampled: its memory at least.
    assert!(run["server"]["rss_bytes_peak"].as_u64().unwrap() > 1_000_000);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("Latency over time"));
    // Two reports side by side: the same report twice is 1.00× everywhere.
    let table = dir.join("compare.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_domvia-calls"))
        .args(["load", "compare"])
        .args([&json, &json])
        .arg("--json")
        .arg(&table)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("events/s") && stdout.contains("(1.00×)"),
        "{stdout}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&table).unwrap()).unwrap();
    assert_eq!(rows["comparison"][0]["values"][1]["ratio_to_first"], 1.0);
    // Anything but a load report is refused with a reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_domvia-calls"))
        .args(["load", "compare"])
        .arg(&table)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a `load --report-json` file"));
    let _ = std::fs::remove_dir_all(&dir);
}
