//! `domvia-calls bench interop`: call setup time per pairing of WebRTC implementations through
//! the reference servers, as a ratio to Rust calling Rust in the same run.
//!
//! Pairings (caller -> callee): the reference Rust peer, headless Chromium running the demo page
//! (pusher-js for signaling), aiortc (Python), and a relay-only Rust caller through coturn.
//! Time runs from the moment the caller places the call (`POST /calls`) until both sides report
//! media up themselves: connected, the data channel echo done, audio packets received. Pairings
//! whose component is missing are reported as skipped with the reason.
//!
//! Chromium sends ICE checks from every interface it has, so with Chromium installed the command
//! runs itself again inside a network namespace with only loopback (`unshare`); coturn is started
//! by the command in the same namespace.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use domvia_calls::interop::aiortc::{self, AiortcPeer};
use domvia_calls::interop::chromium::{self, Chromium, Page};
use domvia_calls::interop::coturn::Coturn;
use domvia_calls::interop::netns;
use domvia_calls::media::PeerOptions;
use domvia_calls::session::{CallSession, Device, Inbox, RunUntil};
use domvia_calls::signing::Secret;
use domvia_calls::stack::{self, RunningStack, StackConfig};
use serde_json::{Map, Value, json};

use super::CliResult;

const WITHIN: Duration = Duration::from_secs(30);
const TURN_SECRET: &str = "bench-interop-turn-secret";

#[derive(Debug, Args)]
pub struct InteropBenchArgs {
    /// Calls per pairing.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// pusher-js browser bundle for the demo page (found in an npm install of the interop tests
    /// by default).
    #[arg(long)]
    pusher_js: Option<PathBuf>,
    /// Measure only the pairings whose name contains this text (repeatable; e.g. `relay`).
    /// Rust calling Rust is always measured: it is the baseline of the ratios.
    #[arg(long, value_name = "TEXT")]
    only: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Rust,
    /// The Rust peer, relay-only through coturn.
    RustRelay,
    Chromium,
    Aiortc,
}

const PAIRINGS: [(Side, Side, &str); 7] = [
    (Side::Rust, Side::Rust, "rust->rust"),
    (Side::Rust, Side::Chromium, "rust->chromium"),
    (Side::Chromium, Side::Rust, "chromium->rust"),
    (Side::Chromium, Side::Chromium, "chromium->chromium"),
    (Side::Rust, Side::Aiortc, "rust->aiortc"),
    (Side::Aiortc, Side::Rust, "aiortc->rust"),
    (
        Side::RustRelay,
        Side::Rust,
        "rust(relay-only)->rust via coturn",
    ),
];

/// What this machine has for the pairings.
struct Components {
    chromium: Result<Chromium, String>,
    aiortc: Result<(), String>,
    coturn: Result<Coturn, String>,
}

/// When a party's media came up, and the party.
type UpResult = Result<(Instant, Party), String>;

/// A party whose media is up, kept until the call is hung up.
enum Party {
    Rust(Box<CallSession>),
    Page(Page),
    Aiortc(Box<AiortcPeer>),
}

impl Party {
    async fn hang_up(&mut self) {
        match self {
            Party::Rust(s) => {
                let _ = s.hang_up().await;
            }
            Party::Page(p) => {
                let _ = p.eval("domvia.hangUp()").await;
            }
            Party::Aiortc(_) => {}
        }
    }

    async fn close(self) {
        match self {
            Party::Rust(mut s) => {
                let _ = s.run(RunUntil::Ended, Duration::from_secs(5)).await;
                s.close().await;
            }
            Party::Page(p) => {
                let _ = p
                    .wait_for(
                        "!domvia.page.call || domvia.page.call.phase === 'ended'",
                        Duration::from_secs(5),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(1200)).await;
                p.close().await;
            }
            Party::Aiortc(a) => {
                let _ = a.finish(Duration::from_secs(10)).await;
            }
        }
    }
}

struct Bench {
    stack: RunningStack,
    relay_stack: Option<RunningStack>,
    components: Components,
}

fn device(s: &RunningStack, user: &str) -> Result<Device, String> {
    Device::new(
        &format!("ws://{}/app/domvia-key", s.realtime.addr()),
        &format!("http://{}", s.trusted.addr()),
        &format!("{user}-token"),
        user,
    )
    .map_err(String::from)
}

async fn start_stack(
    turn: Option<&Coturn>,
    pusher_js: Option<PathBuf>,
) -> Result<RunningStack, String> {
    let mut cfg = StackConfig::development(
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    cfg.trusted.data_dir = std::env::temp_dir().join(format!(
        "domvia-bench-interop-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    cfg.trusted.pusher_js = pusher_js;
    if let Some(t) = turn {
        cfg.trusted.turn_urls = vec![t.url()];
        cfg.trusted.turn_secret = Some(Secret::new(TURN_SECRET));
    }
    Ok(stack::start(cfg).await?)
}

impl Bench {
    fn missing(&self, side: Side) -> Option<String> {
        match side {
            Side::Rust => None,
            Side::RustRelay => self.components.coturn.as_ref().err().cloned(),
            Side::Chromium => self.components.chromium.as_ref().err().cloned(),
            Side::Aiortc => self.components.aiortc.as_ref().err().cloned(),
        }
    }

    fn stack_for(&self, caller: Side) -> &RunningStack {
        match (caller, &self.relay_stack) {
            (Side::RustRelay, Some(s)) => s,
            _ => &self.stack,
        }
    }

    async fn page(&self, s: &RunningStack, user: &str, extra: &str) -> Result<Page, String> {
        let browser = self.components.chromium.as_ref().map_err(Clone::clone)?;
        let page = browser
            .open(&format!(
                "http://{}/demo/?user={user}&token={user}-token&loopback=1{extra}",
                s.trusted.addr()
            ))
            .await?;
        page.wait_for("window.domvia && window.domvia.ready === true", WITHIN)
            .await?;
        Ok(page)
    }

    /// One call of `caller` to `callee`; returns the time to media up on both sides.
    async fn one_call(&self, caller: Side, callee: Side) -> Result<Duration, String> {
        let s = self.stack_for(caller);
        // The callee listens first.
        enum Waiting {
            Rust(Box<Inbox>),
            Page(Page),
            Aiortc(Box<AiortcPeer>),
        }
        let waiting = match callee {
            Side::Chromium => Waiting::Page(self.page(s, "bob", "&answer=auto").await?),
            Side::Aiortc => {
                let mut peer = AiortcPeer::spawn(&aiortc::args(s, "bob", &["--hang-up"])).await?;
                peer.ready(WITHIN).await?;
                Waiting::Aiortc(Box::new(peer))
            }
            _ => Waiting::Rust(Box::new(Inbox::open(&device(s, "bob")?).await?)),
        };
        enum Ready {
            Rust(PeerOptions),
            Page(Page),
            Aiortc(Box<AiortcPeer>),
        }
        let ready = match caller {
            Side::Chromium => Ready::Page(self.page(s, "alice", "").await?),
            Side::Aiortc => {
                let mut peer =
                    AiortcPeer::spawn(&aiortc::args(s, "alice", &["--call", "bob", "--wait-go"]))
                        .await?;
                peer.ready(WITHIN).await?;
                Ready::Aiortc(Box::new(peer))
            }
            Side::RustRelay => Ready::Rust(PeerOptions {
                relay_only: true,
                ..PeerOptions::default()
            }),
            Side::Rust => Ready::Rust(PeerOptions::default()),
        };
        let began = Instant::now();
        let calling = async {
            match ready {
                Ready::Rust(options) => {
                    let request =
                        json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"]});
                    let (mut session, _) =
                        CallSession::place(&device(s, "alice")?, request, options).await?;
                    let out = session.run(RunUntil::MediaUp, WITHIN).await?;
                    if out.phase != domvia_calls::call::Phase::Active {
                        return Err(format!("the Rust caller ended: {:?}", out.phase));
                    }
                    Ok((Instant::now(), Party::Rust(Box::new(session))))
                }
                Ready::Page(page) => {
                    page.eval("domvia.call('bob', 'room/chat-room-42', false)")
                        .await?;
                    page.eval_within("domvia.whenMediaUp()", WITHIN).await?;
                    Ok((Instant::now(), Party::Page(page)))
                }
                Ready::Aiortc(mut peer) => {
                    peer.go().await?;
                    peer.up(WITHIN).await?;
                    Ok((Instant::now(), Party::Aiortc(peer)))
                }
            }
        };
        let answering = async {
            match waiting {
                Waiting::Rust(inbox) => {
                    let mut session = (*inbox).next_call(PeerOptions::default(), WITHIN).await?;
                    session.accept().await?;
                    let out = session.run(RunUntil::MediaUp, WITHIN).await?;
                    if out.phase != domvia_calls::call::Phase::Active {
                        return Err(format!("the Rust callee ended: {:?}", out.phase));
                    }
                    Ok((Instant::now(), Party::Rust(Box::new(session))))
                }
                Waiting::Page(page) => {
                    page.eval_within("domvia.whenMediaUp()", WITHIN).await?;
                    Ok((Instant::now(), Party::Page(page)))
                }
                Waiting::Aiortc(mut peer) => {
                    peer.up(WITHIN).await?;
                    Ok((Instant::now(), Party::Aiortc(peer)))
                }
            }
        };
        let (a, b): (UpResult, UpResult) = tokio::join!(calling, answering);
        let ((a_up, mut a), (b_up, b)) = (a?, b?);
        let took = a_up.max(b_up) - began;
        a.hang_up().await;
        tokio::join!(a.close(), b.close());
        Ok(took)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(args: InteropBenchArgs) -> CliResult {
    if chromium::binary().is_some() && !netns::only_loopback() && netns::unavailable().is_none() {
        eprintln!("bench interop: running again in a network namespace with only loopback");
        let again: Vec<OsString> = std::env::args_os().skip(1).collect();
        return Ok(netns::run_self_isolated(&again).map(|s| s.success())?);
    }
    let runtime = super::runtime()?;
    runtime.block_on(measure(args))
}

async fn measure(args: InteropBenchArgs) -> CliResult {
    let runs = args.runs.max(1);
    let pusher_js = domvia_calls::trusted_server::pusher_js_path(args.pusher_js.as_ref());
    let chromium = match (chromium::binary(), &pusher_js, netns::only_loopback()) {
        (None, _, _) => Err("Chromium is not installed (apt-get install chromium)".to_owned()),
        (_, None, _) => Err(
            "pusher-js not found (npm ci --prefix tests/interop/pusher-js, or --pusher-js)"
                .to_owned(),
        ),
        (_, _, false) => Err(netns::unavailable()
            .unwrap_or("not in a loopback-only network namespace")
            .to_owned()),
        (Some(bin), Some(_), true) => Chromium::launch(&bin).await.map_err(String::from),
    };
    let coturn = if Coturn::installed() {
        Coturn::start(TURN_SECRET).map_err(String::from)
    } else {
        Err("coturn is not installed (apt-get install coturn)".to_owned())
    };
    let stack = start_stack(None, pusher_js.clone()).await?;
    let relay_stack = match &coturn {
        Ok(t) => Some(start_stack(Some(t), pusher_js.clone()).await?),
        Err(_) => None,
    };
    let bench = Bench {
        stack,
        relay_stack,
        components: Components {
            chromium,
            aiortc: aiortc::available().await.map_err(String::from),
            coturn,
        },
    };
    let mut results = Map::new();
    let mut skipped = Map::new();
    let mut baseline = None;
    for (caller, callee, name) in PAIRINGS {
        let baseline_pairing = (caller, callee) == (Side::Rust, Side::Rust);
        if !baseline_pairing
            && !args.only.is_empty()
            && !args.only.iter().any(|text| name.contains(text.as_str()))
        {
            continue;
        }
        if let Some(why) = bench.missing(caller).or_else(|| bench.missing(callee)) {
            eprintln!("{name:<36} skipped: {why}");
            skipped.insert(name.to_owned(), json!(why));
            continue;
        }
        let mut times = Vec::with_capacity(runs);
        // One call first to warm up (process start-up, page caches), not counted.
        bench.one_call(caller, callee).await?;
        for _ in 0..runs {
            times.push(bench.one_call(caller, callee).await?.as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median = percentile(&times, 0.5);
        let base = *baseline.get_or_insert(median);
        eprintln!(
            "{name:<36} median {median:7.1} ms  p90 {:7.1} ms  ratio {:.2}",
            percentile(&times, 0.9),
            median / base
        );
        results.insert(
            name.to_owned(),
            json!({
                "median_ms": median,
                "p90_ms": percentile(&times, 0.9),
                "ratio_to_rust_rust": median / base,
            }),
        );
    }
    let result = json!({
        "benchmark": "interop",
        "runs_per_pairing": runs,
        "pairings": Value::Object(results),
        "skipped": Value::Object(skipped),
        "note": "from the caller placing the call (POST /calls) until both sides report media up themselves (connected, data channel echo, audio packets received); every pairing through the same reference servers on loopback",
    });
    if let Ok(browser) = bench.components.chromium {
        browser.close().await;
    }
    bench.stack.shutdown().await;
    if let Some(s) = bench.relay_stack {
        s.shutdown().await;
    }
    super::bench_output::emit(&result, args.json.as_deref())
}
