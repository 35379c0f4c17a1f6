//! Interop with an independent WebRTC stack and the real pusher-js client: headless Chromium runs
//! the demo page (`/demo/`) against the reference servers and calls, and is called by, the Rust
//! reference peer; two browser tabs also call each other. Every media fact is read from the
//! browser's own `getStats`.
//!
//! Needs Debian's `chromium` and an `npm ci` of `tests/interop/pusher-js`; without them the tests
//! say what they skipped and why, unless `DOMVIA_REQUIRE_INTEROP=1` (set by CI) makes that a
//! failure.
#![cfg(feature = "conform")]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use domvia_calls::call::Phase;
use domvia_calls::conform::{SecondPeer, Verdict};
use domvia_calls::interop::chromium::{self, Chromium, Page};
use domvia_calls::media::PeerOptions;
use domvia_calls::session::{Inbox, RunUntil};
use domvia_calls::stack::RunningStack;
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(30);

fn pusher_js() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop/pusher-js/node_modules/pusher-js/dist/web/pusher.min.js")
}

/// Chromium's path when the test should run here; `None` when it was skipped or already ran in
/// a loopback-only network namespace.
fn prerequisites(test: &str) -> Option<PathBuf> {
    let Some(bin) = chromium::binary() else {
        common::interop::skip(test, "Chromium is not installed (apt-get install chromium)");
        return None;
    };
    if !pusher_js().is_file() {
        common::interop::skip(
            test,
            "pusher-js is not installed (npm ci --prefix tests/interop/pusher-js)",
        );
        return None;
    }
    match common::interop::rerun_isolated(test)? {
        true => None,
        false => Some(bin),
    }
}

async fn stack(tag: &str) -> RunningStack {
    common::calls::stack(tag, |cfg| cfg.trusted.pusher_js = Some(pusher_js())).await
}

/// The demo page signed in as `user`, with test traffic kept on loopback.
async fn open_as(browser: &Chromium, s: &RunningStack, user: &str, extra: &str) -> Page {
    let url = format!(
        "http://{}/demo/?user={user}&token={user}-token&loopback=1{extra}",
        s.trusted.addr()
    );
    let page = browser.open(&url).await.unwrap();
    if let Err(e) = page
        .wait_for("window.domvia && window.domvia.ready === true", WITHIN)
        .await
    {
        panic!(
            "{user}'s page did not sign in: {e}\n{:#?}",
            page.console().await
        );
    }
    page
}

async fn report(page: &Page) -> Value {
    page.eval("domvia.report()").await.unwrap()
}

/// Waits until the page's call is connected with the data channel echo done and audio packets
/// received, as the browser's own statistics say.
async fn browser_media_up(page: &Page, who: &str) -> Value {
    let condition = "domvia.report().then(r => !!r.call && r.call.phase === 'connected' \
                     && r.call.data_channel.echoed && r.call.inbound_audio_packets > 0)";
    if let Err(e) = page.wait_for(condition, WITHIN).await {
        panic!(
            "{who}'s browser media did not come up: {e}\nreport: {:#}\nconsole: {:#?}",
            report(page).await,
            page.console().await
        );
    }
    report(page).await
}

/// The selected pair joins this browser's loopback candidate (IPv4 or IPv6: the page signals
/// both, and two browsers may pair over either) to the other side. Chromium hides
/// the address of a peer-reflexive remote candidate (learnt from a check that beat its trickled
/// candidate); every candidate either side signals is on loopback, so that one is too.
fn assert_loopback_pair(r: &Value, who: &str) {
    let pair = &r["call"]["selected_pair"];
    assert!(pair["bytes_received"].as_u64() > Some(0), "{who}: {r:#}");
    assert_eq!(pair["local"]["type"], "host", "{who}: {r:#}");
    let local = pair["local"]["address"].as_str().unwrap_or_default();
    assert!(["127.0.0.1", "::1"].contains(&local), "{who}: {r:#}");
    let remote = pair["remote"]["address"].as_str().unwrap_or_default();
    assert!(
        ["127.0.0.1", "::1", ""].contains(&remote)
            && ["host", "prflx"].contains(&pair["remote"]["type"].as_str().unwrap_or_default()),
        "{who}'s remote candidate is not the other side's loopback one: {r:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_calls_browser() {
    let Some(bin) = prerequisites("browser_calls_browser") else {
        return;
    };
    let s = stack("chromium-b2b").await;
    let browser = Chromium::launch(&bin).await.unwrap();
    let bob = open_as(&browser, &s, "bob", "&answer=auto").await;
    let alice = open_as(&browser, &s, "alice", "").await;
    let began = Instant::now();
    // With the camera: Chromium's fake camera sends a test pattern both ways.
    let call_id = alice
        .eval("domvia.call('bob', 'room/chat-room-42', true)")
        .await
        .unwrap();
    browser_media_up(&alice, "alice").await;
    browser_media_up(&bob, "bob").await;
    let video_in = "domvia.report().then(r => r.call.inbound_video_packets > 0)";
    alice.wait_for(video_in, WITHIN).await.unwrap();
    bob.wait_for(video_in, WITHIN).await.unwrap();
    let a = report(&alice).await;
    let b = report(&bob).await;
    let took = began.elapsed();
    if let Some(dir) = std::env::var_os("DOMVIA_SCREENSHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::write(
            dir.join("alice-in-call.png"),
            alice.screenshot().await.unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("bob-in-call.png"), bob.screenshot().await.unwrap()).unwrap();
    }
    assert_eq!(a["call"]["id"], call_id);
    assert_eq!(b["call"]["id"], call_id);
    assert_eq!(a["call"]["peer_user"], "bob");
    assert_eq!(b["call"]["peer_user"], "alice");
    assert!(b["call"]["data_channel"]["received"][0] == "ping", "{b:#}");
    assert_loopback_pair(&a, "alice");
    assert_loopback_pair(&b, "bob");
    assert!(a["errors"].as_array().unwrap().is_empty(), "{a:#}");
    assert!(b["errors"].as_array().unwrap().is_empty(), "{b:#}");
    alice.eval("domvia.hangUp()").await.unwrap();
    bob.wait_for(
        "domvia.page.call.phase === 'ended' && domvia.page.call.reason === 'hangup'",
        WITHIN,
    )
    .await
    .unwrap();
    let record = common::calls::ended_record(&s, "alice-token", call_id.as_str().unwrap()).await;
    assert_eq!(record["call"]["state"], "ended", "{record:#}");
    assert_eq!(record["call"]["end_reason"], "hangup", "{record:#}");
    common::interop::say(&format!(
        "interop Chromium -> Chromium: media up (connected, echo, audio and video both ways) {} ms after the call was placed",
        took.as_millis()
    ));
    browser.close().await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_peer_calls_browser() {
    let Some(bin) = prerequisites("rust_peer_calls_browser") else {
        return;
    };
    let s = stack("chromium-r2b").await;
    let browser = Chromium::launch(&bin).await.unwrap();
    let bob = open_as(&browser, &s, "bob", "&answer=auto").await;
    let began = Instant::now();
    let (mut alice, placed) =
        common::calls::place_room_call(&s, "alice", "bob", PeerOptions::default()).await;
    let outcome = alice.run(RunUntil::MediaUp, WITHIN).await;
    let rust_up = began.elapsed();
    let b = browser_media_up(&bob, "bob").await;
    let outcome = outcome.unwrap_or_else(|e| panic!("the Rust caller: {e}\nbrowser: {b:#}"));
    assert_eq!(outcome.phase, Phase::Active);
    assert_eq!(b["call"]["id"], placed.call_id.as_str());
    assert_eq!(b["call"]["data_channel"]["received"][0], "ping");
    assert_loopback_pair(&b, "bob");
    alice.hang_up().await.unwrap();
    bob.wait_for("domvia.page.call.phase === 'ended'", WITHIN)
        .await
        .unwrap();
    alice.close().await;
    common::interop::say(&format!(
        "interop Rust -> Chromium: Rust media up {} ms after the call was placed",
        rust_up.as_millis()
    ));
    browser.close().await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_calls_rust_peer() {
    let Some(bin) = prerequisites("browser_calls_rust_peer") else {
        return;
    };
    let s = stack("chromium-b2r").await;
    let browser = Chromium::launch(&bin).await.unwrap();
    let inbox = Inbox::open(&common::calls::device(&s, "bob"))
        .await
        .unwrap();
    let alice = open_as(&browser, &s, "alice", "").await;
    let began = Instant::now();
    let call_id = alice
        .eval("domvia.call('bob', 'room/chat-room-42', false)")
        .await
        .unwrap();
    let mut bob = inbox
        .next_call(PeerOptions::default(), WITHIN)
        .await
        .unwrap();
    assert_eq!(bob.call_id().as_str(), call_id.as_str().unwrap());
    bob.accept().await.unwrap();
    let outcome = bob.run(RunUntil::MediaUp, WITHIN).await;
    let a = browser_media_up(&alice, "alice").await;
    let took = began.elapsed();
    let outcome = outcome.unwrap_or_else(|e| panic!("the Rust callee: {e}\nbrowser: {a:#}"));
    assert_eq!(outcome.phase, Phase::Active);
    assert_eq!(a["call"]["data_channel"]["received"][0], "echo:ping");
    assert_loopback_pair(&a, "alice");
    bob.hang_up().await.unwrap();
    alice
        .wait_for(
            "domvia.page.call.phase === 'ended' && domvia.page.call.reason === 'hangup'",
            WITHIN,
        )
        .await
        .unwrap();
    bob.close().await;
    common::interop::say(&format!(
        "interop Chromium -> Rust: media up on both sides {} ms after the call was placed",
        took.as_millis()
    ));
    browser.close().await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_takes_chromium_as_the_callee_of_its_webrtc_case() {
    let Some(_) = prerequisites("the_runner_takes_chromium_as_the_callee_of_its_webrtc_case")
    else {
        return;
    };
    let report = common::interop::run_webrtc_case(SecondPeer::Chromium, Some(pusher_js())).await;
    assert_eq!(report.0, Verdict::Pass, "{}", report.1);
    assert!(report.1.contains("callee chromium"), "{}", report.1);
}

/// What a person sees: a wrong token is reported on the page; an incoming call shows the caller
/// with Accept and Decline; clicking Accept connects; clicking Hang up ends the call on both pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_can_answer_and_hang_up_with_the_buttons() {
    let Some(bin) = prerequisites("a_person_can_answer_and_hang_up_with_the_buttons") else {
        return;
    };
    let s = stack("chromium-ui").await;
    let browser = Chromium::launch(&bin).await.unwrap();
    let shots = std::env::var_os("DOMVIA_SCREENSHOTS").map(PathBuf::from);
    let shoot = async |page: &Page, name: &str| {
        if let Some(dir) = &shots {
            std::fs::write(dir.join(name), page.screenshot().await.unwrap()).unwrap();
        }
    };
    let text = async |page: &Page, id: &str| -> String {
        page.eval(&format!("document.getElementById('{id}').textContent"))
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    let wrong = browser
        .open(&format!(
            "http://{}/demo/?user=bob&token=not-bobs-token&loopback=1",
            s.trusted.addr()
        ))
        .await
        .unwrap();
    wrong
        .wait_for(
            "document.getElementById('error').textContent !== ''",
            WITHIN,
        )
        .await
        .unwrap();
    let error = text(&wrong, "error").await;
    assert!(
        error.contains("401") || error.contains("403") || error.contains("sign in"),
        "the page names the refusal: {error:?}"
    );
    shoot(&wrong, "wrong-token.png").await;
    // The right token on the same page: signed in, and the old error is gone.
    wrong
        .eval(
            "document.getElementById('token').value = 'bob-token'; \
             document.getElementById('signin-button').click()",
        )
        .await
        .unwrap();
    wrong
        .wait_for(
            "document.getElementById('status').textContent.startsWith('signed in as bob')",
            WITHIN,
        )
        .await
        .unwrap();
    assert_eq!(
        text(&wrong, "error").await,
        "",
        "a success clears the earlier error"
    );
    wrong.close().await;

    let bob = open_as(&browser, &s, "bob", "").await;
    let alice = open_as(&browser, &s, "alice", "").await;
    alice
        .eval("document.getElementById('call-button').click()")
        .await
        .unwrap();
    bob.wait_for(
        "!document.getElementById('incoming').classList.contains('hidden')",
        WITHIN,
    )
    .await
    .unwrap();
    assert!(
        text(&bob, "incoming-text")
            .await
            .contains("alice is calling")
    );
    // bob's ringing reaches alice only if she had joined the call channel by then: the trusted
    // server invites bob as soon as the call exists, so it can ring first. Either way alice's
    // page says the call is under way.
    let status = text(&alice, "status").await;
    assert!(
        status == "calling bob" || status == "ringing at bob",
        "{status:?}"
    );
    shoot(&bob, "incoming.png").await;
    bob.eval("document.getElementById('accept-button').click()")
        .await
        .unwrap();
    browser_media_up(&alice, "alice").await;
    browser_media_up(&bob, "bob").await;
    assert_eq!(text(&bob, "status").await, "in a call with alice");
    bob.eval("document.getElementById('hangup-button').click()")
        .await
        .unwrap();
    alice
        .wait_for(
            "document.getElementById('status').dataset.state === 'ended'",
            WITHIN,
        )
        .await
        .unwrap();
    assert!(
        text(&alice, "status").await.contains("hangup"),
        "{}",
        text(&alice, "status").await
    );
    // Nothing on the page still describes the finished call as live.
    assert_eq!(text(&alice, "fact-ice").await, "connection: closed");
    assert_eq!(
        alice
            .eval("document.getElementById('hangup-button').disabled")
            .await
            .unwrap(),
        serde_json::Value::Bool(true)
    );
    shoot(&alice, "ended.png").await;
    browser.close().await;
    s.shutdown().await;
}
