//! `domvia-calls bench realtime`: measures the reference realtime server against a bare
//! tokio-tungstenite echo server started in the same run, so results are ratios that survive a
//! noisy shared machine.
//!
//! Both servers run as child processes of this one (so their memory can be read from /proc without
//! the clients' share); every load goes to 127.0.0.1 only and every loop is bounded.
//!
//! - latency: one pair; the sender waits for each message to arrive before sending the next
//!   (domvia: client event A→server→B; echo: client→server→same client). p50 and p99.
//! - throughput: several pairs sending as fast as they can; messages delivered per second.
//! - memory: resident memory added per idle connection at 1k and 10k connections.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use domvia_calls::ids::SocketId;
use domvia_calls::signing::{self, Secret};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::CliResult;

const KEY: &str = "bench-key";
const SECRET: &str = "bench-secret";
const CHANNEL: &str = "private-call.room.bench.call-1";

#[derive(Debug, Subcommand)]
pub enum BenchKind {
    /// Relay latency, throughput and memory per idle connection, each against a bare echo server.
    Realtime(RealtimeArgs),
    /// Call setup through the reference servers (call.started to data channel echo and to first
    /// RTP, medians of repeated calls, events per side) against a direct WebRTC handshake.
    #[cfg(all(feature = "media", feature = "trusted"))]
    Call(CallBenchArgs),
    /// Call setup time per pairing of WebRTC implementations (Rust, Chromium, aiortc, a relay
    /// through coturn) through the reference servers, as ratios to Rust calling Rust.
    #[cfg(feature = "conform")]
    Interop(super::bench_interop::InteropBenchArgs),
    /// The bare tokio-tungstenite echo server used as the baseline (started by `realtime`).
    #[command(hide = true)]
    EchoServer,
}

#[derive(Debug, Args)]
pub struct CallBenchArgs {
    /// Calls to make (and direct handshakes for the baseline).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RealtimeArgs {
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A small, fast run that only proves the benchmark works.
    #[arg(long)]
    quick: bool,
}

struct Plan {
    latency_samples: usize,
    pairs: usize,
    per_pair: usize,
    idle_steps: Vec<usize>,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn run(kind: BenchKind) -> CliResult {
    #[cfg(feature = "conform")]
    if let BenchKind::Interop(args) = kind {
        return super::bench_interop::run(args);
    }
    let runtime = super::runtime()?;
    match kind {
        BenchKind::EchoServer => runtime.block_on(echo_server()),
        BenchKind::Realtime(args) => runtime.block_on(realtime(args)),
        #[cfg(all(feature = "media", feature = "trusted"))]
        BenchKind::Call(args) => runtime.block_on(call_bench::run(args)),
        #[cfg(feature = "conform")]
        BenchKind::Interop(_) => unreachable!("handled before the runtime starts"),
    }
}

async fn echo_server() -> CliResult {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            // The same buffer sizes the reference server uses, so the ratio shows its own cost.
            let config = WebSocketConfig::default()
                .read_buffer_size(4 * 1024)
                .write_buffer_size(0);
            let Ok(mut ws) =
                tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
            else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() && ws.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A child server process and its address.
pub(super) struct ChildServer {
    child: Child,
    pub(super) addr: SocketAddr,
}

impl ChildServer {
    /// The reference realtime server (`serve --role realtime`) with the TOML `config`, written
    /// to a temporary file named after `tag` and removed once the server listens.
    pub(super) fn realtime(config: &str, tag: &str) -> Result<ChildServer, String> {
        let path = std::env::temp_dir().join(format!("domvia-{tag}-{}.toml", std::process::id()));
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let server = ChildServer::spawn(
            &[
                "serve",
                "--role",
                "realtime",
                "--config",
                path.to_str().unwrap_or_default(),
            ],
            &[],
        );
        let _ = std::fs::remove_file(&path);
        server
    }

    /// The child's process id (`load` samples its CPU and memory).
    #[cfg(feature = "client")]
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Result<ChildServer, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {args:?}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .ok_or("server exited before listening")?
                .map_err(|e| e.to_string())?;
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().parse().map_err(|e| format!("{rest}: {e}"))?;
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(ChildServer { child, addr })
    }

    fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(url: &str) -> Result<Ws, String> {
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| format!("{url}: {e}"))
}

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.to_string()),
            Ok(Some(Ok(_))) => continue,
            Ok(_) => return Err("connection closed".into()),
            Err(_) => return Err("no message within 10 s".into()),
        }
    }
}

/// A typical signaling payload: one trickled candidate batch.
fn payload(seq: usize) -> String {
    json!({
        "event": "client-call.ice_candidate",
        "channel": CHANNEL,
        "data": {"v": 1, "call_id": "call-1", "party_id": "bench-party-a", "user_id": "a", "seq": seq,
                 "sent_at_ms": 0, "to_party_id": "bench-party-b",
                 "candidates": [{"candidate": "candidate:842163049 1 udp 1677729535 127.0.0.1 50000 typ host generation 0",
                                 "sdp_mid": "0", "sdp_mline_index": 0, "username_fragment": "EsAw"}],
                 "end_of_candidates": false}
    })
    .to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// p50 and p99 of `samples` round trips (after a 10% warm-up): send on `tx`, wait on `rx`.
async fn latency(
    tx: &mut Ws,
    mut rx: Option<&mut Ws>,
    samples: usize,
) -> Result<(f64, f64), String> {
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let start = Instant::now();
        tx.send(Message::Text(payload(i).into()))
            .await
            .map_err(|e| e.to_string())?;
        match rx.as_deref_mut() {
            Some(rx) => next_text(rx).await?,
            None => next_text(tx).await?,
        };
        if i >= samples / 10 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

async fn domvia_throughput(addr: SocketAddr, pairs: usize, per_pair: usize) -> Result<f64, String> {
    // Each pair gets its own channel so pairs do not see each other's traffic.
    let mut clients = Vec::with_capacity(pairs);
    for p in 0..pairs {
        let channel = format!("private-call.room.bench.pair-{p}");
        let a = domvia_client(addr, &channel).await?;
        let b = domvia_client(addr, &channel).await?;
        clients.push((channel, a, b));
    }
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(pairs);
    for (channel, mut a, mut b) in clients {
        tasks.push(tokio::spawn(async move {
            let receiver = tokio::spawn(async move {
                for _ in 0..per_pair {
                    next_text(&mut b).await?;
                }
                Ok::<_, String>(())
            });
            for i in 0..per_pair {
                let text = payload(i).replace(CHANNEL, &channel);
                a.send(Message::Text(text.into()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            receiver.await.map_err(|e| e.to_string())?
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok((pairs * per_pair) as f64 / start.elapsed().as_secs_f64())
}

/// Connects to the domvia server and subscribes to `channel`.
async fn domvia_client(addr: SocketAddr, channel: &str) -> Result<Ws, String> {
    let mut ws = connect(&format!("ws://{addr}/app/{KEY}?protocol=7")).await?;
    let established: Value =
        serde_json::from_str(&next_text(&mut ws).await?).map_err(|e| e.to_string())?;
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap_or("{}"))
        .map_err(|e| e.to_string())?;
    let socket =
        SocketId::parse(data["socket_id"].as_str().unwrap_or("")).map_err(|e| e.to_string())?;
    let auth = signing::sign_channel(KEY, &Secret::new(SECRET), &socket, channel, None);
    let sub = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .map_err(|e| e.to_string())?;
    next_text(&mut ws).await?;
    Ok(ws)
}

async fn echo_throughput(addr: SocketAddr, pairs: usize, per_pair: usize) -> Result<f64, String> {
    let mut clients = Vec::new();
    for _ in 0..pairs {
        clients.push(connect(&format!("ws://{addr}/")).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for ws in clients {
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let receiver = tokio::spawn(async move {
                for _ in 0..per_pair {
                    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                        Ok(Some(Ok(_))) => {}
                        _ => return Err("echo stalled".to_owned()),
                    }
                }
                Ok(())
            });
            for i in 0..per_pair {
                sink.send(Message::Text(payload(i).into()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            receiver.await.map_err(|e| e.to_string())?
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok((pairs * per_pair) as f64 / start.elapsed().as_secs_f64())
}

/// Resident bytes added per idle connection when `n` connections are open.
async fn idle_memory(
    server: &ChildServer,
    url: &str,
    n: usize,
    handshake: bool,
) -> Result<f64, String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server
        .rss_bytes()
        .ok_or("cannot read the server's memory (needs /proc)")?;
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = connect(url).await?;
        if handshake {
            next_text(&mut ws).await?;
        }
        open.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server
        .rss_bytes()
        .ok_or("cannot read the server's memory")?;
    drop(open);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

async fn realtime(args: RealtimeArgs) -> CliResult {
    let plan = if args.quick {
        Plan {
            latency_samples: 200,
            pairs: 2,
            per_pair: 200,
            idle_steps: vec![200],
        }
    } else {
        Plan {
            latency_samples: 5_000,
            pairs: 20,
            per_pair: 5_000,
            idle_steps: vec![1_000, 10_000],
        }
    };
    let config = format!(
        "[realtime]\nbind = \"127.0.0.1:0\"\noutbound_queue = 65536\n[[realtime.apps]]\nid = \"bench\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\nclient_events_per_second = 1000000000\nclient_event_burst = 1000000000\nmax_connections = 100000\nmax_connections_per_address = 100000\n"
    );
    let domvia = ChildServer::realtime(&config, "bench")?;
    let echo = ChildServer::spawn(&["bench", "echo-server"], &[])?;
    eprintln!(
        "domvia server {} and echo baseline {} started",
        domvia.addr, echo.addr
    );

    let (mut a, mut b) = (
        domvia_client(domvia.addr, CHANNEL).await?,
        domvia_client(domvia.addr, CHANNEL).await?,
    );
    let (d50, d99) = latency(&mut a, Some(&mut b), plan.latency_samples).await?;
    drop((a, b));
    let mut e = connect(&format!("ws://{}/", echo.addr)).await?;
    let (e50, e99) = latency(&mut e, None, plan.latency_samples).await?;
    eprintln!("latency done");
    let d_tput = domvia_throughput(domvia.addr, plan.pairs, plan.per_pair).await?;
    let e_tput = echo_throughput(echo.addr, plan.pairs, plan.per_pair).await?;
    eprintln!("throughput done");
    let mut memory = serde_json::Map::new();
    for &n in &plan.idle_steps {
        let d = idle_memory(
            &domvia,
            &format!("ws://{}/app/{KEY}?protocol=7", domvia.addr),
            n,
            true,
        )
        .await?;
        let e = idle_memory(&echo, &format!("ws://{}/", echo.addr), n, false).await?;
        memory.insert(
            n.to_string(),
            json!({ "domvia_bytes_per_connection": d.round(), "echo_bytes_per_connection": e.round(), "ratio": d / e.max(1.0) }),
        );
        eprintln!("memory at {n} connections done");
    }
    let result = json!({
        "benchmark": "realtime",
        "quick": args.quick,
        "plan": { "latency_samples": plan.latency_samples, "pairs": plan.pairs, "messages_per_pair": plan.per_pair, "payload_bytes": payload(0).len() },
        "latency_us": {
            "domvia": { "p50": d50, "p99": d99 },
            "echo": { "p50": e50, "p99": e99 },
            "ratio": { "p50": d50 / e50, "p99": d99 / e99 },
        },
        "throughput_msgs_per_s": { "domvia": d_tput.round(), "echo": e_tput.round(), "ratio": d_tput / e_tput },
        "idle_memory": memory,
    });
    super::bench_output::emit(&result, args.json.as_deref())
}

#[cfg(all(feature = "media", feature = "trusted"))]
mod call_bench {
    use std::time::{Duration, Instant};

    use domvia_calls::media::{MediaPeer, PeerOptions, PeerSignal};
    use domvia_calls::session::{CallSession, Device, Inbox, RunUntil};
    use domvia_calls::stack::{self, StackConfig};
    use serde_json::json;

    use super::{CallBenchArgs, CliResult};

    /// The phases of call setup: name, whose timeline (0 caller, 1 callee) and the step that
    /// ends the phase there.
    const PHASES: &[(&str, usize, &str)] = &[
        ("1 invitation at the callee", 1, "invitation received"),
        ("2 callee subscribed (auth round trip)", 1, "subscribed to"),
        ("3 acceptance at the caller", 0, "accepted by"),
        ("4 answer at the caller", 0, "answer received"),
        ("5 ICE connected", 0, "ICE connected"),
        ("6 DTLS up", 0, "DTLS up"),
        ("7 first RTP packet", 0, "first RTP packet"),
        ("8 data channel open (SCTP)", 0, "data channel open"),
        ("9 data channel echo", 0, "data channel message"),
    ];

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// Two peers with signaling handed across in memory: the floor any signaling path adds to.
    async fn direct() -> Result<(f64, f64), String> {
        let start = Instant::now();
        let mut caller = MediaPeer::new(&PeerOptions::default()).await?;
        let mut callee = MediaPeer::new(&PeerOptions::default()).await?;
        let answer = callee
            .accept_offer(&caller.create_offer().await?, false)
            .await?;
        caller.accept_answer(&answer).await?;
        let (mut echo, mut rtp) = (None, None);
        while echo.is_none() || rtp.is_none() {
            let step = tokio::time::timeout(Duration::from_secs(10), async {
                tokio::select! { s = caller.next_signal() => (0, s), s = callee.next_signal() => (1, s) }
            })
            .await
            .map_err(|_| "direct handshake timed out".to_owned())?;
            match step {
                (from, Some(PeerSignal::LocalCandidate(c))) => {
                    if from == 0 {
                        callee.add_remote_candidate(&c).await?
                    } else {
                        caller.add_remote_candidate(&c).await?
                    }
                }
                (from, Some(PeerSignal::Connected)) => {
                    if from == 0 {
                        caller.start_audio(Duration::from_secs(5))
                    } else {
                        callee.start_audio(Duration::from_secs(5))
                    }
                }
                (0, Some(PeerSignal::DataMessage(_))) => echo = Some(start.elapsed()),
                (0, Some(PeerSignal::FirstRtp)) => rtp = Some(start.elapsed()),
                (_, None) => return Err("peer stopped".into()),
                _ => {}
            }
        }
        caller.close().await;
        callee.close().await;
        Ok((
            echo.unwrap_or_default().as_secs_f64() * 1e3,
            rtp.unwrap_or_default().as_secs_f64() * 1e3,
        ))
    }

    pub async fn run(args: CallBenchArgs) -> CliResult {
        let runs = args.runs.max(1);
        let data_dir =
            std::env::temp_dir().join(format!("domvia-bench-call-{}", std::process::id()));
        let mut cfg = StackConfig::development(
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.1:0".parse().expect("addr"),
        );
        cfg.trusted.data_dir = data_dir.clone();
        let s = stack::start(cfg).await?;
        let (r, t) = (s.realtime.addr(), s.trusted.addr());
        let device = |user: &str| {
            Device::new(
                &format!("ws://{r}/app/domvia-key"),
                &format!("http://{t}"),
                &format!("{user}-token"),
                user,
            )
        };
        let (mut to_echo, mut to_rtp, mut caller_events, mut callee_events) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut phases: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        for _ in 0..runs {
            let (alice, bob) = (device("alice")?, device("bob")?);
            let inbox = Inbox::open(&bob).await?;
            let request = json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"]});
            let (mut caller, _) =
                CallSession::place(&alice, request, PeerOptions::default()).await?;
            let mut callee = inbox
                .next_call(PeerOptions::default(), Duration::from_secs(20))
                .await?;
            callee.accept().await?;
            let (a, b) = tokio::join!(
                caller.run(RunUntil::MediaUp, Duration::from_secs(20)),
                callee.run(RunUntil::MediaUp, Duration::from_secs(20))
            );
            a?;
            b?;
            let t0 = caller
                .timeline()
                .at("sent client-call.started")
                .ok_or("no call.started")?;
            let ms = |d: Option<Duration>| {
                d.map(|d| (d - t0).as_secs_f64() * 1e3)
                    .ok_or("missing step")
            };
            // Where the time went: each phase's end as the caller saw it (the callee's
            // invitation and acceptance as the callee saw them), from call.started.
            let started_at = caller.timeline().began().map(|b| b + t0);
            for (phase, timeline, step) in PHASES {
                let tl = if *timeline == 0 {
                    caller.timeline()
                } else {
                    callee.timeline()
                };
                // Each timeline has its own start: both are put on the caller's clock.
                let at = tl
                    .began()
                    .zip(tl.at(step))
                    .zip(started_at)
                    .map(|((began, d), t)| (began + d).saturating_duration_since(t));
                if let Some(at) = at {
                    phases
                        .entry(*phase)
                        .or_default()
                        .push(at.as_secs_f64() * 1e3);
                }
            }
            to_echo.push(ms(caller.timeline().at("data channel message"))?);
            to_rtp.push(ms(caller.timeline().at("first RTP packet"))?);
            let sent = |tl: &domvia_calls::session::Timeline| {
                tl.entries
                    .iter()
                    .filter(|(_, e)| e.starts_with("sent "))
                    .count() as f64
            };
            caller_events.push(sent(caller.timeline()));
            callee_events.push(sent(callee.timeline()));
            caller.hang_up().await?;
            let _ = tokio::join!(
                caller.run(RunUntil::Ended, Duration::from_secs(10)),
                callee.run(RunUntil::Ended, Duration::from_secs(10))
            );
            caller.close().await;
            callee.close().await;
        }
        s.shutdown().await;
        let _ = std::fs::remove_dir_all(data_dir);
        let (mut d_echo, mut d_rtp) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (e, r) = direct().await?;
            d_echo.push(e);
            d_rtp.push(r);
        }
        let (echo, rtp, base_echo, base_rtp) = (
            median(to_echo),
            median(to_rtp),
            median(d_echo),
            median(d_rtp),
        );
        let result = json!({
            "benchmark": "call",
            "runs": runs,
            "call_started_to_data_channel_echo_ms": { "median": echo, "direct_handshake_median": base_echo, "ratio": echo / base_echo },
            "call_started_to_first_rtp_ms": { "median": rtp, "direct_handshake_median": base_rtp, "ratio": rtp / base_rtp },
            "client_events_until_media": { "caller_median": median(caller_events), "callee_median": median(callee_events) },
            "phase_end_medians_ms_from_call_started": phases
                .into_iter()
                .map(|(name, v)| (name.to_owned(), json!(median(v))))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "note": "the call path includes the trusted server creating the call, the inbox invitation, ringing, acceptance and the late offer; the direct handshake hands SDP and candidates across in memory",
        });
        super::super::bench_output::emit(&result, args.json.as_deref())
    }
}
