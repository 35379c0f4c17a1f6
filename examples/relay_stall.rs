//! Minimal reproduction: webrtc-rs 0.21's driver sleeps on packets it has yet to send, so through a
//! TURN relay DTLS and SCTP wait for protocol timers (seconds, on loopback).
//!
//! Two bare webrtc-rs peers in one process, relay-only through a coturn this program starts on
//! 127.0.0.1 (Debian's `coturn`; `--turnserver PATH` to use another binary), one data channel,
//! candidates handed over in memory. For each runtime it reports the medians, from setting the
//! offer, of: ICE connected, DTLS up (peer connection connected) and the data channel open on both
//! sides. The first runtime is webrtc-rs's own tokio runtime; the second is the workaround,
//! `domvia_calls::media::FlushingRuntime`, which only makes the driver loop run three more
//! passes after every wake.
//!
//! ```text
//! cargo run --release --example relay_stall -- --runs 10
//! ```
//!
//! Why, and the patch proposed upstream: `docs/webrtc-rs-driver-passes.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceConnectionState, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, SettingEngineBuilder,
};
use webrtc::runtime::{Runtime, TokioRuntime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Milestone {
    IceConnected,
    DtlsUp,
    DataChannelOpen,
}

enum Note {
    Candidate(webrtc::peer_connection::RTCIceCandidateInit),
    Reached(Milestone, Instant),
}

struct Handler(mpsc::UnboundedSender<Note>);

fn watch(dc: Arc<dyn DataChannel>, notes: mpsc::UnboundedSender<Note>) {
    tokio::spawn(async move {
        while let Some(event) = dc.poll().await {
            if let DataChannelEvent::OnOpen = event {
                let _ = notes.send(Note::Reached(Milestone::DataChannelOpen, Instant::now()));
            }
        }
    });
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.0.send(Note::Candidate(init));
        }
    }
    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if state == RTCIceConnectionState::Connected {
            let _ = self
                .0
                .send(Note::Reached(Milestone::IceConnected, Instant::now()));
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self
                .0
                .send(Note::Reached(Milestone::DtlsUp, Instant::now()));
        }
    }
    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        watch(dc, self.0.clone());
    }
}

async fn peer(
    turn_url: &str,
    runtime: Arc<dyn Runtime>,
) -> (Arc<dyn PeerConnection>, mpsc::UnboundedReceiver<Note>) {
    let (tx, rx) = mpsc::unbounded_channel();
    // The settings that make direct pairs connect in milliseconds, so the relay's delay stands out.
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_ice_connection_attempts(Some(Duration::from_millis(5)), Some(200))
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        .with_relay_acceptance_min_wait(Some(Duration::ZERO))
        .build();
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(vec![RTCIceServer {
            urls: vec![turn_url.to_owned()],
            username: "stall".into(),
            credential: "stall".into(),
        }])
        .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_setting_engine(settings)
        .with_runtime(runtime)
        .with_handler(Arc::new(Handler(tx)))
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .expect("build a peer connection");
    (Arc::new(pc), rx)
}

/// One connection; the milestones of both sides, from setting the offer.
/// Makes the runtime each peer connection is built with.
type MakeRuntime = fn() -> Arc<dyn Runtime>;

async fn connect(turn_url: &str, runtime: MakeRuntime) -> [Duration; 3] {
    let (offerer, mut offerer_notes) = peer(turn_url, runtime()).await;
    let (answerer, mut answerer_notes) = peer(turn_url, runtime()).await;
    let dc = offerer
        .create_data_channel("stall", None)
        .await
        .expect("data channel");
    let (open_tx, mut open_rx) = mpsc::unbounded_channel();
    watch(dc, open_tx);

    let started = Instant::now();
    let offer = offerer.create_offer(None).await.expect("offer");
    offerer
        .set_local_description(offer.clone())
        .await
        .expect("local offer");
    answerer
        .set_remote_description(offer)
        .await
        .expect("remote offer");
    let answer = answerer.create_answer(None).await.expect("answer");
    answerer
        .set_local_description(answer.clone())
        .await
        .expect("local answer");
    offerer
        .set_remote_description(answer)
        .await
        .expect("remote answer");

    // Milestone reached on both sides = the later of the two.
    let mut reached: [[Option<Instant>; 2]; 3] = [[None; 2]; 3];
    let index = |m: Milestone| match m {
        Milestone::IceConnected => 0,
        Milestone::DtlsUp => 1,
        Milestone::DataChannelOpen => 2,
    };
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    while reached
        .iter()
        .any(|sides| sides.iter().any(Option::is_none))
    {
        tokio::select! {
            Some(note) = offerer_notes.recv() => match note {
                Note::Candidate(c) => answerer.add_ice_candidate(c).await.expect("candidate"),
                Note::Reached(m, at) => reached[index(m)][0] = Some(at),
            },
            Some(note) = answerer_notes.recv() => match note {
                Note::Candidate(c) => offerer.add_ice_candidate(c).await.expect("candidate"),
                Note::Reached(m, at) => reached[index(m)][1] = Some(at),
            },
            Some(Note::Reached(m, at)) = open_rx.recv() => reached[index(m)][0] = Some(at),
            () = &mut deadline => panic!("not connected within 20 s: {reached:?}"),
        }
    }
    let _ = offerer.close().await;
    let _ = answerer.close().await;
    reached.map(|sides| {
        sides
            .into_iter()
            .flatten()
            .max()
            .expect("both sides")
            .duration_since(started)
    })
}

/// coturn on loopback with one long-term user, relaying on 127.0.0.1.
fn start_coturn(binary: &str) -> (std::process::Child, u16) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new(binary)
        .args([
            "-n",
            "--no-cli",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            "--allow-loopback-peers",
            "--lt-cred-mech",
            "--user=stall:stall",
            "--realm=stall.test",
            "--no-tls",
            "--no-dtls",
            "--min-port=21000",
            "--max-port=21999",
            "--log-file=stdout",
            &format!("--listening-port={port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary} (apt-get install coturn): {e}"));
    std::thread::sleep(Duration::from_millis(300));
    (child, port)
}

fn median(mut values: Vec<Duration>) -> f64 {
    values.sort();
    values[values.len() / 2].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let runs: usize = flag("--runs").and_then(|r| r.parse().ok()).unwrap_or(10);
    let binary = flag("--turnserver").unwrap_or_else(|| "turnserver".into());
    let (mut coturn, port) = start_coturn(&binary);
    let turn_url = format!("turn:127.0.0.1:{port}?transport=udp");

    let runtimes: [(&str, MakeRuntime); 2] = [
        ("webrtc-rs TokioRuntime", || Arc::new(TokioRuntime)),
        ("FlushingRuntime (workaround)", || {
            Arc::new(domvia_calls::media::FlushingRuntime::new())
        }),
    ];
    println!(
        "relay-only through coturn on loopback, {runs} runs each, medians from setting the offer"
    );
    println!(
        "{:<32} {:>14} {:>10} {:>18}",
        "runtime", "ICE connected", "DTLS up", "data channel open"
    );
    for (name, runtime) in runtimes {
        let mut milestones: [Vec<Duration>; 3] = Default::default();
        for _ in 0..runs {
            let times = connect(&turn_url, runtime).await;
            for (all, t) in milestones.iter_mut().zip(times) {
                all.push(t);
            }
        }
        let [ice, dtls, open] = milestones.map(median);
        println!("{name:<32} {ice:>11.1} ms {dtls:>7.1} ms {open:>15.1} ms");
    }
    let _ = coturn.kill();
    let _ = coturn.wait();
}
