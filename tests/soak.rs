//! Soak and faults: the reference realtime and trusted servers as two processes (as operators run
//! them) under call traffic, hostile load and faults, with every call's record checked at the end.
//!
//! Caller/callee pairs place, answer, decline, cancel and miss calls (each call's fate follows from
//! its id) while an attacker churns public subscriptions (each one a webhook) and reads a long call
//! history in a loop, and stalls many connections of one user on a channel flooded with 10 KB
//! events (slow consumers). Meanwhile the trusted server is SIGKILLed and restarted, then the realtime
//! server, then the webhook endpoint is unreachable for a while (a proxy in front of it refuses
//! every connection). A sentinel pair exchanges client events throughout. At the end:
//! - every call in the callers' histories appears once and has ended;
//! - a call its callee accepted is recorded as answered by that callee and missed by nobody, a
//!   declined one as declined, and every other call is missed by its callee exactly once;
//! - the outbox holds nothing pending, and SQLite's integrity check passes;
//! - each server's peak memory (VmRSS) stays under [`MEMORY_BOUND_KIB`], and the realtime server
//!   gives back what the attack cost once the attackers are gone;
//! - the sentinel's longest silence stays under [`SENTINEL_MAX_GAP`].
//!
//! Short by default (the CI form). The long form, with its figures printed:
//! `DOMVIA_SOAK_SECS=600 DOMVIA_SOAK_PAIRS=16 cargo test --release --test soak -- --nocapture`
//! (`DOMVIA_SOAK_WEBHOOK_DOWN_SECS`, default 30, and `DOMVIA_SOAK_FLOOD_PER_SEC`, default 2000
//! subscription frames per second per attacker connection, tune the faults; `DOMVIA_SOAK_KEEP=1`
//! keeps the servers' logs and database).
#![cfg(all(feature = "cli", feature = "trusted", feature = "media"))]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domvia_calls::call::{Action, Phase};
use domvia_calls::client::{Auth, ClientConfig, ClientEvent, RealtimeClient};
use domvia_calls::session::{Device, Inbox, Signaling};
use domvia_calls::signing::Secret;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Peak resident memory either server may reach under this load.
const MEMORY_BOUND_KIB: u64 = 256 * 1024;
/// What the realtime server may keep, above its size at start, once every attacker connection
/// closed (freed queues go back to the operating system).
const RETAINED_AFTER_ATTACK_KIB: u64 = 24 * 1024;
/// The sentinel's longest silence, the realtime restart included (restart, reconnect back-off,
/// re-subscription).
const SENTINEL_MAX_GAP: Duration = Duration::from_secs(8);
const RING_TIMEOUT_MS: u64 = 5_000;
/// A callee answers only a call younger than this, so that an answer never races the ring timeout
/// (a user does not pick up a call that is about to stop ringing).
const ANSWER_ONLY_WITHIN: Duration = Duration::from_millis(2_000);
const KEY: &str = "soak-key";
const SECRET: &str = "soak-app-secret";
const SCOPE: &str = "soak-room";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a call's callee does, decided from the call id so both ends agree without talking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Answer,
    Decline,
    /// Nobody answers: the ring timeout ends it.
    Ignore,
    /// The callee does not answer and the caller hangs up after a second.
    CallerCancels,
}

fn fate(call_id: &str) -> Fate {
    let h = call_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    match h % 4 {
        0 => Fate::Answer,
        1 => Fate::Decline,
        2 => Fate::Ignore,
        _ => Fate::CallerCancels,
    }
}

/// What a callee did, by call id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Did {
    Accepted,
    Declined,
    /// Saw the invitation and let it ring.
    LetRing,
}

#[derive(Default)]
struct Truth {
    /// Call id → when its caller learned it (the answer of `POST /calls`).
    placed: HashMap<String, Instant>,
    /// Call id → what its callee did.
    did: HashMap<String, Did>,
    place_failures: u64,
    /// Invitations that would have been answered or declined but arrived too late for that.
    late: u64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One server process, restartable with the same arguments.
struct Server {
    name: &'static str,
    args: Vec<String>,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
    peak_rss_kib: Arc<AtomicU64>,
}

impl Server {
    fn new(name: &'static str, config: &Path, port: u16, dir: &Path) -> Server {
        Server {
            name,
            args: vec![
                "serve".into(),
                "--role".into(),
                name.into(),
                "--config".into(),
                config.display().to_string(),
            ],
            log: dir.join(format!("{name}.log")),
            port,
            child: None,
            peak_rss_kib: Arc::new(AtomicU64::new(0)),
        }
    }

    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_domvia-calls"))
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let began = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "the {} server did not start; see {}",
                self.name,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn sample(&self) -> Option<u64> {
        let rss = self.rss_kib()?;
        self.peak_rss_kib.fetch_max(rss, Ordering::Relaxed);
        Some(rss)
    }

    fn log_lines_with(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP forwarder in front of the trusted server's webhook endpoint that can be switched off:
/// while `down`, every connection is closed at once, as an unreachable endpoint looks to the
/// sender.
async fn webhook_proxy(listen: u16, upstream: u16, down: Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", listen))
        .await
        .unwrap();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        if down.load(Ordering::Relaxed) {
            drop(inbound);
            continue;
        }
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
            {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

fn device(realtime: u16, trusted: u16, user: &str) -> Device {
    Device::new(
        &format!("ws://127.0.0.1:{realtime}/app/{KEY}"),
        &format!("http://127.0.0.1:{trusted}"),
        &format!("{user}-token"),
        user,
    )
    .unwrap()
}

async fn caller_loop(dev: Device, callee: String, truth: Arc<Mutex<Truth>>, until: Instant) {
    while Instant::now() < until {
        let request = json!({
            "scope": "room", "scope_id": SCOPE, "callees": [callee],
            "ring_timeout_ms": RING_TIMEOUT_MS,
        });
        let placed =
            tokio::time::timeout(Duration::from_secs(10), Signaling::place(&dev, request)).await;
        let Ok(Ok((mut sig, placed))) = placed else {
            truth.lock().unwrap().place_failures += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let started = Instant::now();
        truth
            .lock()
            .unwrap()
            .placed
            .insert(placed.call_id.to_string(), started);
        let cancels = fate(placed.call_id.as_str()) == Fate::CallerCancels;
        let give_up = tokio::time::Instant::now()
            + Duration::from_millis(RING_TIMEOUT_MS)
            + Duration::from_secs(6);
        loop {
            if matches!(sig.phase(), Phase::Ended(_)) {
                break;
            }
            let step = if cancels {
                (tokio::time::Instant::from_std(started) + Duration::from_secs(1)).min(give_up)
            } else {
                give_up
            };
            match sig.next_event(step).await {
                Ok(Some(Action::PeerAccepted { .. })) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = sig.hang_up();
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) if cancels && tokio::time::Instant::now() < give_up => {
                    let _ = sig.hang_up();
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        // Let the last event leave before the connection closes.
        let _ = sig
            .next_event(tokio::time::Instant::now() + Duration::from_millis(200))
            .await;
        sig.close().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A callee device: always one inbox subscribed and waiting (the next one opens as soon as an
/// invitation arrives), each call handled on its own task.
async fn callee_loop(dev: Device, truth: Arc<Mutex<Truth>>, until: Instant) {
    let mut calls = Vec::new();
    while Instant::now() < until {
        let Ok(Ok(inbox)) = tokio::time::timeout(Duration::from_secs(10), Inbox::open(&dev)).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let waiting = until.saturating_duration_since(Instant::now());
        if let Ok(sig) = inbox.next_invitation(waiting).await {
            calls.push(tokio::spawn(answer_as_fated(sig, truth.clone())));
        }
    }
    for call in calls {
        let _ = call.await;
    }
}

async fn answer_as_fated(mut sig: Signaling, truth: Arc<Mutex<Truth>>) {
    let call_id = sig.call_id().to_string();
    let age = truth
        .lock()
        .unwrap()
        .placed
        .get(&call_id)
        .map(Instant::elapsed);
    let fresh = age.is_some_and(|a| a < ANSWER_ONLY_WITHIN);
    let did = match fate(&call_id) {
        Fate::Answer if fresh => sig.accept().map(|()| Did::Accepted),
        Fate::Decline if fresh => sig.decline(false).map(|()| Did::Declined),
        Fate::Answer | Fate::Decline => {
            truth.lock().unwrap().late += 1;
            Ok(Did::LetRing)
        }
        Fate::Ignore | Fate::CallerCancels => Ok(Did::LetRing),
    };
    if let Ok(did) = did {
        truth.lock().unwrap().did.insert(call_id, did);
    }
    let give_up = tokio::time::Instant::now()
        + Duration::from_millis(RING_TIMEOUT_MS)
        + Duration::from_secs(6);
    while !matches!(sig.phase(), Phase::Ended(_)) {
        match sig.next_event(give_up).await {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let _ = sig
        .next_event(tokio::time::Instant::now() + Duration::from_millis(200))
        .await;
    sig.close().await;
}

/// Two connections on one private channel; one sends a numbered client event every 200 ms, the
/// other records when each arrives. Returns the longest silence and the count received.
async fn sentinel(realtime: u16, until: Instant) -> (Duration, u64) {
    let config = || {
        ClientConfig::new(
            format!("ws://127.0.0.1:{realtime}/app/{KEY}"),
            Auth::Signer {
                key: KEY.into(),
                secret: Secret::new(SECRET),
                presence_user: None,
            },
        )
    };
    let channel = "private-soak-sentinel";
    let sender = RealtimeClient::connect(config()).await.unwrap();
    sender.subscribe(channel).await.unwrap();
    let mut receiver = RealtimeClient::connect(config()).await.unwrap();
    receiver.subscribe(channel).await.unwrap();
    let beat = tokio::spawn(async move {
        let mut n = 0u64;
        while Instant::now() < until {
            n += 1;
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                sender.trigger(channel, "client-beat", json!({ "n": n })),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sender.close().await;
    });
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    let mut received = 0;
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(500), receiver.next_event()).await {
            Ok(Some(ClientEvent::Event { event, .. })) if event == "client-beat" => {
                longest = longest.max(last.elapsed());
                last = Instant::now();
                received += 1;
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => break,
        }
    }
    longest = longest.max(last.elapsed());
    let _ = beat.await;
    receiver.close().await;
    (longest, received)
}

/// Churns public channels: subscribes to a hundred, unsubscribes them, again, at `per_sec` frames
/// a second, reconnecting whenever the server closes the connection. Each subscription is a
/// `channel_occupied` and a `channel_vacated` webhook. Returns the frames sent.
async fn subscription_flood(realtime: u16, attacker: usize, per_sec: u64, until: Instant) -> u64 {
    let mut sent = 0u64;
    let mut round = 0u64;
    while Instant::now() < until {
        let url = format!("ws://127.0.0.1:{realtime}/app/{KEY}?protocol=7");
        let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let (mut write, mut read) = ws.split();
        let drain = tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
        'conn: while Instant::now() < until {
            let began = Instant::now();
            for verb in ["pusher:subscribe", "pusher:unsubscribe"] {
                for k in 0..100 {
                    let frame = json!({
                        "event": verb,
                        "data": { "channel": format!("flood-{attacker}-{round}-{k}") },
                    });
                    if write
                        .send(Message::Text(frame.to_string().into()))
                        .await
                        .is_err()
                    {
                        break 'conn;
                    }
                    sent += 1;
                }
            }
            round += 1;
            let budget = Duration::from_millis(200 * 1000 / per_sec.max(1));
            tokio::time::sleep(budget.saturating_sub(began.elapsed())).await;
        }
        drain.abort();
    }
    sent
}

/// What the slow-consumer attack achieved.
#[derive(Debug, Default)]
struct SlowConsumerAttack {
    /// Inbox subscriptions granted to connections that then stopped reading.
    stalled: u64,
    /// Inbox subscriptions refused for the per-user connection cap.
    refused_for_cap: u64,
    /// 10 KB client events the senders got relayed.
    relayed: u64,
    /// Stalled connections the server closed with 4100 (its outbound queue for them was full).
    closed_as_slow: u64,
}

/// One user's own inbox as a memory bomb: senders relay 10 KB client events as fast as the rate
/// limit lets them while many more connections of the same user subscribe and stop reading, so
/// every relayed event queues up on each of them. Each stalled connection holds on for 12 s, then
/// reads what is left and comes back. The server must bound what a stalled connection queues (in bytes) and how many
/// connections one user has.
async fn slow_consumers(realtime: u16, trusted: u16, until: Instant) -> SlowConsumerAttack {
    const SENDERS: usize = 6;
    const STALLERS: usize = 36;
    let inbox = "private-call-inbox.mallory";
    let attack = Arc::new(Mutex::new(SlowConsumerAttack::default()));
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let attack = attack.clone();
        tasks.push(tokio::spawn(async move {
            let dev = device(realtime, trusted, "mallory");
            while Instant::now() < until {
                let connected = RealtimeClient::connect(ClientConfig::new(
                    dev.realtime_url.clone(),
                    Auth::Endpoint {
                        url: format!("{}/realtime/auth", dev.trusted_url),
                        token: dev.token.clone(),
                    },
                ));
                let Ok(Ok(mut client)) =
                    tokio::time::timeout(Duration::from_secs(5), connected).await
                else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                if client.subscribe(inbox).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                let sender = client.sender();
                let attack = attack.clone();
                let send = tokio::spawn(async move {
                    let junk = "x".repeat(10_000);
                    while Instant::now() < until {
                        let sent = tokio::time::timeout(
                            Duration::from_secs(2),
                            sender.trigger(inbox, "client-junk", json!({ "junk": junk })),
                        )
                        .await;
                        if !matches!(sent, Ok(Ok(()))) {
                            return;
                        }
                        attack.lock().unwrap().relayed += 1;
                    }
                });
                // This sender reads what the others send, so it is not a slow consumer itself.
                while !send.is_finished() {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), client.next_event()).await;
                }
                client.close().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..STALLERS {
        let attack = attack.clone();
        tasks.push(tokio::spawn(async move {
            let client = domvia_calls::net::http_client();
            while Instant::now() < until {
                let url = format!("ws://127.0.0.1:{realtime}/app/{KEY}?protocol=7");
                let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                let Some(Ok(Message::Text(first))) = ws.next().await else {
                    continue;
                };
                let first: Value = serde_json::from_str(&first).unwrap_or_default();
                let data: Value = serde_json::from_str(first["data"].as_str().unwrap_or("{}"))
                    .unwrap_or_default();
                let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
                let grant = client
                    .post(format!("http://127.0.0.1:{trusted}/realtime/auth"))
                    .header("authorization", "Bearer mallory-token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("socket_id={socket_id}&channel_name={inbox}"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(grant) = grant else { continue };
                let grant: Value = serde_json::from_str(&grant.text().await.unwrap_or_default())
                    .unwrap_or_default();
                let subscribe = json!({"event": "pusher:subscribe",
                    "data": {"channel": inbox, "auth": grant["auth"]}});
                if ws
                    .send(Message::Text(subscribe.to_string().into()))
                    .await
                    .is_err()
                {
                    continue;
                }
                // Read up to the answer, then stop reading for 5 s.
                let answer = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Some(Ok(m)) = ws.next().await {
                        if let Message::Text(t) = m {
                            let f: Value = serde_json::from_str(&t).unwrap_or_default();
                            if f["channel"] == inbox || f["event"] == "pusher:subscription_error" {
                                return f["event"].as_str().unwrap_or_default().to_owned();
                            }
                        }
                    }
                    String::new()
                })
                .await
                .unwrap_or_default();
                match answer.as_str() {
                    "pusher_internal:subscription_succeeded" => attack.lock().unwrap().stalled += 1,
                    "pusher:subscription_error" => attack.lock().unwrap().refused_for_cap += 1,
                    _ => {}
                }
                let stall =
                    Duration::from_secs(12).min(until.saturating_duration_since(Instant::now()));
                tokio::time::sleep(stall).await;
                // What the server did meanwhile: read what it had queued, up to its close.
                let closed = tokio::time::timeout(Duration::from_secs(3), async {
                    while let Some(Ok(m)) = ws.next().await {
                        if let Message::Close(Some(frame)) = m {
                            return u16::from(frame.code) == 4100;
                        }
                    }
                    false
                })
                .await
                .unwrap_or(false);
                if closed {
                    attack.lock().unwrap().closed_as_slow += 1;
                }
                drop(ws);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(attack)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}

/// Reads a long history page after page, as fast as the server answers. Returns the requests made.
async fn history_reader(trusted: u16, user: &str, until: Instant) -> u64 {
    let client = domvia_calls::net::http_client();
    let mut requests = 0;
    while Instant::now() < until {
        let r = client
            .get(format!(
                "http://127.0.0.1:{trusted}/calls/history?limit=200"
            ))
            .header("authorization", format!("Bearer {user}-token"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        requests += 1;
        if r.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    requests
}

/// Every entry of a paged listing (`history` or `missed`) for `user`.
async fn all_pages(trusted: u16, user: &str, listing: &str, key: &str) -> Vec<Value> {
    let client = domvia_calls::net::http_client();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("http://127.0.0.1:{trusted}/calls/{listing}?limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let text = client
            .get(url)
            .header("authorization", format!("Bearer {user}-token"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let page: Value = serde_json::from_str(&text).unwrap();
        out.extend(page[key].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

fn write_files(dir: &Path, pairs: usize, realtime: u16, trusted: u16, proxy: u16) -> PathBuf {
    let mut users = vec!["mallory".to_owned(), "sink".to_owned()];
    for i in 0..pairs {
        users.push(format!("caller-{i}"));
        users.push(format!("callee-{i}"));
    }
    let mut fixture = String::new();
    for u in &users {
        fixture.push_str(&format!(
            "[[users]]\nid = \"{u}\"\nname = \"{u}\"\ntoken = \"{u}-token\"\n"
        ));
    }
    let members: Vec<String> = users.iter().map(|u| format!("\"{u}\"")).collect();
    fixture.push_str(&format!(
        "[scopes.room]\n\"{SCOPE}\" = [{}]\n",
        members.join(", ")
    ));
    std::fs::write(dir.join("users.toml"), fixture).unwrap();
    let config = format!(
        r#"[realtime]
bind = "127.0.0.1:{realtime}"
[[realtime.apps]]
id = "soak"
key = "{KEY}"
secret = "{SECRET}"
webhook_url = "http://127.0.0.1:{proxy}/realtime/webhooks"

[trusted]
bind = "127.0.0.1:{trusted}"
data_dir = "{data}"
fixture = "{fixture}"
realtime_api_url = "http://127.0.0.1:{realtime}"
app_id = "soak"
app_key = "{KEY}"
app_secret = "{SECRET}"
calls_per_minute = 6000
call_burst = 500
reconcile_interval_ms = 1000
"#,
        data = dir.join("data").display(),
        fixture = dir.join("users.toml").display(),
    );
    let path = dir.join("soak.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_recorded_exactly_once_through_floods_and_kills() {
    let secs = setting("DOMVIA_SOAK_SECS", 75);
    let pairs = setting("DOMVIA_SOAK_PAIRS", 4) as usize;
    let webhook_down = Duration::from_secs(setting("DOMVIA_SOAK_WEBHOOK_DOWN_SECS", 30));
    let flood_per_sec = setting("DOMVIA_SOAK_FLOOD_PER_SEC", 2000);
    let run = Duration::from_secs(secs);

    let dir = std::env::temp_dir().join(format!(
        "domvia-soak-{}-{:x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(free_port())
    ));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let (rt_port, tr_port, proxy_port) = (free_port(), free_port(), free_port());
    let config = write_files(&dir, pairs, rt_port, tr_port, proxy_port);
    let mut realtime = Server::new("realtime", &config, rt_port, &dir);
    let mut trusted = Server::new("trusted", &config, tr_port, &dir);
    realtime.start().await;
    trusted.start().await;
    let webhook_off = Arc::new(AtomicBool::new(false));
    tokio::spawn(webhook_proxy(proxy_port, tr_port, webhook_off.clone()));
    let baseline = (realtime.sample(), trusted.sample());

    // A long history for the history reader: calls to a user nobody answers for.
    let mallory = device(rt_port, tr_port, "mallory");
    let client = domvia_calls::net::http_client();
    for _ in 0..150 {
        let r = client
            .post(format!("http://127.0.0.1:{tr_port}/calls"))
            .header("authorization", "Bearer mallory-token")
            .header("content-type", "application/json")
            .body(
                json!({"scope": "room", "scope_id": SCOPE, "callees": ["sink"],
                       "ring_timeout_ms": RING_TIMEOUT_MS})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "seeding a history: {}", r.status());
    }
    drop(mallory);

    let began = Instant::now();
    let until = began + run;
    let truth = Arc::new(Mutex::new(Truth::default()));
    let mut actors = Vec::new();
    for i in 0..pairs {
        let caller = device(rt_port, tr_port, &format!("caller-{i}"));
        let callee = device(rt_port, tr_port, &format!("callee-{i}"));
        actors.push(tokio::spawn(callee_loop(callee, truth.clone(), until)));
        actors.push(tokio::spawn(caller_loop(
            caller,
            format!("callee-{i}"),
            truth.clone(),
            until,
        )));
    }
    let sentinel = tokio::spawn(sentinel(rt_port, until));
    let floods: Vec<_> = (0..2)
        .map(|a| tokio::spawn(subscription_flood(rt_port, a, flood_per_sec, until)))
        .collect();
    let slow = tokio::spawn(slow_consumers(rt_port, tr_port, until));
    let readers: Vec<_> = (0..10)
        .map(|_| tokio::spawn(history_reader(tr_port, "mallory", until)))
        .collect();

    // The faults, at fixed points of the run, with memory sampled all along.
    let at = |fraction: f64| began + run.mul_f64(fraction);
    let mut faults = Vec::new();
    async fn sleep_sampling(t: Instant, servers: [&Server; 2]) {
        while Instant::now() < t {
            for s in servers {
                s.sample();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    sleep_sampling(at(0.15), [&realtime, &trusted]).await;
    trusted.kill();
    faults.push("SIGKILL trusted server");
    tokio::time::sleep(Duration::from_secs(1)).await;
    trusted.start().await;
    sleep_sampling(at(0.30), [&realtime, &trusted]).await;
    realtime.kill();
    faults.push("SIGKILL realtime server");
    tokio::time::sleep(Duration::from_secs(1)).await;
    realtime.start().await;
    sleep_sampling(at(0.45), [&realtime, &trusted]).await;
    webhook_off.store(true, Ordering::Relaxed);
    faults.push("webhook endpoint unreachable");
    sleep_sampling(Instant::now() + webhook_down, [&realtime, &trusted]).await;
    webhook_off.store(false, Ordering::Relaxed);
    sleep_sampling(until, [&realtime, &trusted]).await;

    // Every task stops by itself at the end of the run; one that does not is a hang to report,
    // not a reason to wait for ever.
    let finish_by = tokio::time::Instant::now() + Duration::from_secs(30);
    async fn finish<T>(
        name: String,
        task: tokio::task::JoinHandle<T>,
        by: tokio::time::Instant,
    ) -> T {
        match tokio::time::timeout_at(by, task).await {
            Ok(done) => done.unwrap(),
            Err(_) => panic!("{name} did not stop within 30 s of the end of the run"),
        }
    }
    for (i, a) in actors.into_iter().enumerate() {
        finish(
            format!(
                "actor {i} (pair {}, {})",
                i / 2,
                if i % 2 == 0 { "callee" } else { "caller" }
            ),
            a,
            finish_by,
        )
        .await;
    }
    let (longest_silence, beats) = finish("the sentinel".into(), sentinel, finish_by).await;
    let mut flood_frames = 0;
    for (i, f) in floods.into_iter().enumerate() {
        flood_frames += finish(format!("flood attacker {i}"), f, finish_by).await;
    }
    let slow = finish("the slow-consumer attack".into(), slow, finish_by).await;
    let mut history_reads = 0;
    for (i, r) in readers.into_iter().enumerate() {
        history_reads += finish(format!("history reader {i}"), r, finish_by).await;
    }
    let peak = (realtime.sample(), trusted.sample());

    // Settle: every call ends (ring timeout, reports, reconciliation); nothing stays pending.
    let settle_began = Instant::now();
    let (records, missed) = loop {
        let mut records = BTreeMap::new();
        let mut duplicates = Vec::new();
        for i in 0..pairs {
            for r in all_pages(tr_port, &format!("caller-{i}"), "history", "calls").await {
                let id = r["call_id"].as_str().unwrap().to_owned();
                if records.insert(id.clone(), (i, r)).is_some() {
                    duplicates.push(id);
                }
            }
        }
        assert!(duplicates.is_empty(), "calls listed twice: {duplicates:?}");
        let open = records
            .values()
            .filter(|(_, r)| r["state"] != "ended")
            .count();
        if open == 0 || settle_began.elapsed() > Duration::from_secs(40) {
            let mut missed: HashMap<String, usize> = HashMap::new();
            for i in 0..pairs {
                for m in all_pages(tr_port, &format!("callee-{i}"), "missed", "missed").await {
                    *missed
                        .entry(m["call_id"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                }
            }
            break (records, missed);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let settle = settle_began.elapsed();
    // Memory after every attacker connection closed, once the servers had a few idle seconds.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after_close = (realtime.rss_kib(), trusted.rss_kib());

    // Every record against what its callee did.
    let truth = std::mem::take(&mut *truth.lock().unwrap());
    let mut wrong = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, (i, r)) in &records {
        let callee = format!("callee-{i}");
        let missed_n = missed.get(id).copied().unwrap_or(0);
        let state = r["state"].as_str().unwrap_or("?");
        let reason = r["end_reason"].as_str().unwrap_or("-");
        let accepted_by = r["accepted_by"].as_str();
        let expected = match truth.did.get(id) {
            Some(Did::Accepted) => {
                counts
                    .entry("answered")
                    .and_modify(|n| *n += 1)
                    .or_insert(1);
                state == "ended" && accepted_by == Some(callee.as_str()) && missed_n == 0
            }
            Some(Did::Declined) => {
                counts
                    .entry("declined")
                    .and_modify(|n| *n += 1)
                    .or_insert(1);
                state == "ended" && accepted_by.is_none() && reason == "declined" && missed_n == 0
            }
            Some(Did::LetRing) | None => {
                counts.entry("missed").and_modify(|n| *n += 1).or_insert(1);
                if !truth.did.contains_key(id) {
                    counts
                        .entry("of them never seen by the callee")
                        .and_modify(|n| *n += 1)
                        .or_insert(1);
                }
                state == "ended"
                    && accepted_by.is_none()
                    && matches!(reason, "no_answer" | "cancelled")
                    && missed_n == 1
            }
        };
        if !expected {
            wrong.push(format!(
                "{id}: callee did {:?}; record {state}/{reason}, accepted_by {accepted_by:?}, missed {missed_n} time(s)",
                truth.did.get(id)
            ));
        }
    }
    // Calls the callers were told about are all recorded.
    let unrecorded: Vec<&String> = truth
        .placed
        .keys()
        .filter(|id| !records.contains_key(*id))
        .collect();

    // The store, read beside the running server: nothing pending, integrity intact.
    let url = format!("sqlite://{}?mode=rw", dir.join("data/calls.db").display());
    let store = domvia_calls::trusted_server::Store::connect(&url)
        .await
        .unwrap();
    let outbox = store.outbox_counts().await.unwrap();
    let dead = store.dead_letters(20).await.unwrap();
    store.close().await;
    let integrity = {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let ok: (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        ok.0
    };
    let dropped = realtime.log_lines_with("dropped");

    println!(
        "soak: {secs} s, {pairs} pairs; calls recorded {} ({}), invitations seen too late to answer {}, place attempts refused or failed {}; \
         faults: {}, webhook endpoint down {} s; attacker: {flood_frames} public subscription frames, \
         {history_reads} history pages of 200, {slow:?}; sentinel: {beats} events, longest silence {:?}; \
         settle {:?}; outbox pending {}, dead {}; realtime log lines about drops {dropped}; \
         memory KiB (realtime, trusted): baseline {baseline:?}, peak ({}, {}), end of run {peak:?}, \
         idle after the attackers left {after_close:?}",
        records.len(),
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        truth.late,
        truth.place_failures,
        faults.join(", "),
        webhook_down.as_secs(),
        longest_silence,
        settle,
        outbox.pending,
        outbox.dead,
        realtime.peak_rss_kib.load(Ordering::Relaxed),
        trusted.peak_rss_kib.load(Ordering::Relaxed),
    );

    assert!(
        wrong.is_empty(),
        "{} of {} records disagree with what happened:\n{}",
        wrong.len(),
        records.len(),
        wrong.join("\n")
    );
    assert!(
        unrecorded.is_empty(),
        "calls never recorded: {unrecorded:?}"
    );
    assert!(
        counts.get("answered").copied().unwrap_or(0) > 0
            && counts.get("declined").copied().unwrap_or(0) > 0
            && counts.get("missed").copied().unwrap_or(0) > 0,
        "every fate happened at least once: {counts:?}"
    );
    assert_eq!(outbox.pending, 0, "outbox entries still pending");
    assert!(
        dead.iter()
            .all(|d| d["last_error"].as_str().is_some_and(|e| !e.is_empty())),
        "every dead letter says why: {dead:?}"
    );
    assert_eq!(integrity, "ok");
    for s in [&realtime, &trusted] {
        let peak = s.peak_rss_kib.load(Ordering::Relaxed);
        assert!(
            peak < MEMORY_BOUND_KIB,
            "the {} server peaked at {peak} KiB (bound {MEMORY_BOUND_KIB})",
            s.name
        );
    }
    // Memory comes back once the attackers are gone: the realtime server (restarted mid-run, so
    // compared with the first process's start) keeps at most RETAINED_AFTER_ATTACK_KIB more.
    let (realtime_idle, realtime_start) = (after_close.0.unwrap_or(0), baseline.0.unwrap_or(0));
    assert!(
        realtime_idle <= realtime_start + RETAINED_AFTER_ATTACK_KIB,
        "the realtime server kept {realtime_idle} KiB after the attackers left (started at {realtime_start})"
    );
    assert!(
        longest_silence < SENTINEL_MAX_GAP,
        "the sentinel pair went silent for {longest_silence:?}"
    );
    assert!(beats > 0);
    realtime.kill();
    trusted.kill();
    if std::env::var_os("DOMVIA_SOAK_KEEP").is_some() {
        println!("soak: logs and database kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
