//! The reference WebRTC peer (webrtc-rs 0.21 on tokio): offer/answer, trickle ICE with explicit
//! end of candidates, a data channel with an echo, and an Opus audio track whose RTP really flows.
//!
//! The peer reports what happens as [`PeerSignal`]s; the session decides what to send. Remote
//! candidates that arrive before the remote description are queued and applied right after it
//! (webrtc-rs refuses them earlier). Audio starts only once the connection is up, since RTP
//! written before DTLS completes is dropped.
//!
//! Host candidates are exactly the addresses bound, so tests bind 127.0.0.1 only; mDNS is off.
//! Peers run on [`FlushingRuntime`], so webrtc-rs sends what its events and relayed reads queue
//! without waiting for its next protocol deadline (see that module).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{Mutex, mpsc};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceConnectionState, RTCIceGatheringState,
    RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, Registry, SettingEngineBuilder, register_default_interceptors,
};
use webrtc::runtime::Runtime;

mod flushing_runtime;
pub use flushing_runtime::FlushingRuntime;

use crate::event::{CandidateLine, IceCandidate, SdpMid, UsernameFragment};

/// The data channel every call opens; the callee echoes what the caller sends.
pub const DATA_CHANNEL_LABEL: &str = "domvia";
const ECHO_PREFIX: &str = "echo:";
/// An Opus frame of silence (TOC byte for 20 ms CELT, then padding-free silence).
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

/// What the peer reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerSignal {
    LocalCandidate(IceCandidate),
    /// ICE gathering finished: send `end_of_candidates`.
    GatheringComplete,
    /// ICE selected a working candidate pair (DTLS starts on it next).
    IceConnected,
    /// ICE and DTLS are up: media can flow.
    Connected,
    Failed(String),
    DataChannelOpen,
    /// A text message: the caller receives `echo:...` back from the callee.
    DataMessage(String),
    FirstRtp,
}

/// A candidate as ICE sees it: its type and transport address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateAddress {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub kind: String,
    pub address: String,
    pub port: u16,
}

impl CandidateAddress {
    fn of(c: &rtc::peer_connection::transport::RTCIceCandidate) -> CandidateAddress {
        CandidateAddress {
            kind: c.typ.to_string(),
            address: c.address.clone(),
            port: c.port,
        }
    }
}

/// The candidate pair media flows over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedPair {
    pub local: CandidateAddress,
    pub remote: CandidateAddress,
}

/// How to build a peer.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// `RTCIceServer`s as the trusted server returns them: `(urls, username, credential)`.
    pub ice_servers: Vec<crate::trusted::api::IceServer>,
    /// Use TURN relay candidates only.
    pub relay_only: bool,
    /// Local UDP addresses to bind; each becomes one host candidate.
    pub binds: Vec<String>,
    /// How long media may take to connect after the call was accepted before the call ends with
    /// `ice_failed`.
    pub connect_timeout: Duration,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            ice_servers: Vec::new(),
            relay_only: false,
            binds: vec!["127.0.0.1:0".into()],
            connect_timeout: Duration::from_millis(crate::limits::MEDIA_CONNECT_TIMEOUT_MS),
        }
    }
}

struct Handler {
    signals: mpsc::UnboundedSender<PeerSignal>,
}

fn to_candidate(init: RTCIceCandidateInit) -> Option<IceCandidate> {
    Some(IceCandidate {
        candidate: CandidateLine::parse(&init.candidate).ok()?,
        sdp_mid: init.sdp_mid.and_then(|m| SdpMid::parse(&m).ok()),
        sdp_mline_index: init.sdp_mline_index,
        username_fragment: init
            .username_fragment
            .and_then(|u| UsernameFragment::parse(&u).ok()),
    })
}

/// Polls a data channel: reports opening and messages; the callee side echoes text back.
fn watch_data_channel(
    dc: Arc<dyn DataChannel>,
    signals: mpsc::UnboundedSender<PeerSignal>,
    echo: bool,
) {
    tokio::spawn(async move {
        while let Some(event) = dc.poll().await {
            match event {
                DataChannelEvent::OnOpen => {
                    let _ = signals.send(PeerSignal::DataChannelOpen);
                    if !echo {
                        let _ = dc.send_text("ping").await;
                    }
                }
                DataChannelEvent::OnMessage(msg) if msg.is_string => {
                    let text = String::from_utf8_lossy(&msg.data).into_owned();
                    if echo && !text.starts_with(ECHO_PREFIX) {
                        let _ = dc.send_text(&format!("{ECHO_PREFIX}{text}")).await;
                    }
                    let _ = signals.send(PeerSignal::DataMessage(text));
                }
                DataChannelEvent::OnClose => break,
                _ => {}
            }
        }
    });
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Some(c) = event.candidate.to_json().ok().and_then(to_candidate) {
            let _ = self.signals.send(PeerSignal::LocalCandidate(c));
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.signals.send(PeerSignal::GatheringComplete);
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        if state == RTCIceConnectionState::Connected {
            let _ = self.signals.send(PeerSignal::IceConnected);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let signal = match state {
            RTCPeerConnectionState::Connected => PeerSignal::Connected,
            RTCPeerConnectionState::Failed => PeerSignal::Failed("connection failed".into()),
            _ => return,
        };
        let _ = self.signals.send(signal);
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        watch_data_channel(dc, self.signals.clone(), true);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let signals = self.signals.clone();
        tokio::spawn(async move {
            let mut first = true;
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(_) if first => {
                        first = false;
                        let _ = signals.send(PeerSignal::FirstRtp);
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// Why the WebRTC stack refused an operation: the operation, and webrtc-rs's reason as text (its
/// error type changes between releases, so it is not part of this API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {detail}")]
pub struct MediaError {
    pub operation: &'static str,
    pub detail: String,
}

impl MediaError {
    fn new(operation: &'static str, detail: impl std::fmt::Display) -> MediaError {
        MediaError {
            operation,
            detail: detail.to_string(),
        }
    }
}

/// For tools that report every error as text.
impl From<MediaError> for String {
    fn from(e: MediaError) -> String {
        e.to_string()
    }
}

async fn ice_transport_of(
    pc: &Arc<dyn PeerConnection>,
) -> Option<Arc<dyn webrtc::peer_connection::transport::IceTransport>> {
    Some(pc.sctp().await?.transport().ice_transport())
}

async fn selected_pair_of(pc: &Arc<dyn PeerConnection>) -> Option<SelectedPair> {
    let pair = ice_transport_of(pc)
        .await?
        .get_selected_candidate_pair()
        .await
        .ok()??;
    Some(SelectedPair {
        local: CandidateAddress::of(pair.local()),
        remote: CandidateAddress::of(pair.remote()),
    })
}

/// One side of a call's media.
pub struct MediaPeer {
    pc: Arc<dyn PeerConnection>,
    signals: mpsc::UnboundedReceiver<PeerSignal>,
    signal_tx: mpsc::UnboundedSender<PeerSignal>,
    queued: Mutex<Vec<RTCIceCandidateInit>>,
    remote_set: Mutex<bool>,
    audio: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    runtime: FlushingRuntime,
}

impl MediaPeer {
    pub async fn new(options: &PeerOptions) -> Result<MediaPeer, MediaError> {
        let err = |e: webrtc::error::Error| MediaError::new("set up the peer connection", e);
        let (signal_tx, signals) = mpsc::unbounded_channel();
        let mut media = MediaEngine::default();
        media
            .register_default_codecs()
            .map_err(|e| MediaError::new("set up the peer connection", e))?;
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .map_err(|e| MediaError::new("set up the peer connection", e))?;
        // Measured on loopback: short check intervals and no wait for peer-reflexive candidates
        // take connection setup from ~1.2 s worst case to tens of milliseconds. The driver also
        // moves DTLS on at the agent's check tick, so the interval is the floor RFC 8445 allows
        // for Ta (5 ms; 200 attempts keep the 1 s give-up of 20 ms × 50): DTLS up went from
        // ~60 to ~16 ms after call.started.
        let mut settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_ice_connection_attempts(Some(Duration::from_millis(5)), Some(200))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO));
        if options.relay_only {
            // A relay pair normally waits 2 s in case a direct one works; relay-only has none.
            settings = settings.with_relay_acceptance_min_wait(Some(Duration::ZERO));
        }
        let settings = settings.build();
        let servers = options
            .ice_servers
            .iter()
            .map(|server| RTCIceServer {
                urls: server.urls.clone(),
                username: server.username.clone().unwrap_or_default(),
                credential: server.credential.clone().unwrap_or_default(),
            })
            .collect();
        // webrtc-rs 0.21's driver sleeps on packets that events and relayed reads make the core
        // write; this runtime makes the passes that send them (see `flushing_runtime`).
        let runtime = FlushingRuntime::new();
        let mut config = RTCConfigurationBuilder::new().with_ice_servers(servers);
        if options.relay_only {
            config = config.with_ice_transport_policy(RTCIceTransportPolicy::Relay);
        }
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config.build())
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .with_runtime(Arc::new(runtime.clone()) as Arc<dyn Runtime>)
            .with_handler(Arc::new(Handler {
                signals: signal_tx.clone(),
            }))
            .with_udp_addrs(options.binds.clone())
            .build()
            .await
            .map_err(err)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let ssrc = rand::random::<u32>() | 1;
        let codec = RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        };
        let track = MediaStreamTrack::new(
            "domvia-call".to_owned(),
            format!("audio-{ssrc:x}"),
            "microphone".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        let audio =
            Arc::new(TrackLocalStaticSample::new(std::time::Instant::now(), track).map_err(err)?);
        pc.add_track(audio.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(err)?;
        Ok(MediaPeer {
            pc,
            signals,
            signal_tx,
            queued: Mutex::new(Vec::new()),
            remote_set: Mutex::new(false),
            audio,
            ssrc,
            runtime,
        })
    }

    /// The next signal of the peer.
    /// Cancel-safe: a signal is only taken when this returns it.
    pub async fn next_signal(&mut self) -> Option<PeerSignal> {
        let signal = self.signals.recv().await;
        if signal == Some(PeerSignal::DataChannelOpen) {
            // Setup is over. Only a local relay candidate routes writes through the TURN client,
            // which needs the runtime's prompt passes for as long as the call lasts. Looked up
            // on a task of its own, so that no await follows taking the signal.
            let (pc, runtime) = (self.pc.clone(), self.runtime.clone());
            tokio::spawn(async move {
                let local_relay = selected_pair_of(&pc)
                    .await
                    .is_none_or(|pair| pair.local.kind == "relay");
                if !local_relay {
                    runtime.settle();
                }
            });
        }
        signal
    }

    /// Caller: opens the data channel and creates the offer (set as local description).
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        let err = |e: webrtc::error::Error| MediaError::new("create the offer", e);
        let dc = self
            .pc
            .create_data_channel(DATA_CHANNEL_LABEL, None)
            .await
            .map_err(err)?;
        watch_data_channel(dc, self.signal_tx.clone(), false);
        let offer = self.pc.create_offer(None).await.map_err(err)?;
        let sdp = offer.sdp.clone();
        self.pc.set_local_description(offer).await.map_err(err)?;
        Ok(sdp)
    }

    /// Applies a remote offer and returns the answer (set as local description). `rollback`:
    /// our own offer collided with it and we are the polite peer, so it is rolled back first
    /// (the call machine decides; see [`crate::call::Action::RemoteOffer`]).
    pub async fn accept_offer(&self, sdp: &str, rollback: bool) -> Result<String, MediaError> {
        let err = |e: webrtc::error::Error| MediaError::new("apply the remote offer", e);
        if rollback {
            let undo = RTCSessionDescription::rollback(None)
                .map_err(|e| MediaError::new("roll back the local offer", e))?;
            self.pc
                .set_local_description(undo)
                .await
                .map_err(|e| MediaError::new("roll back the local offer", e))?;
        }
        let offer = RTCSessionDescription::offer(sdp.to_owned()).map_err(err)?;
        self.pc.set_remote_description(offer).await.map_err(err)?;
        self.release_queued().await?;
        let answer = self.pc.create_answer(None).await.map_err(err)?;
        let sdp = answer.sdp.clone();
        self.pc.set_local_description(answer).await.map_err(err)?;
        Ok(sdp)
    }

    /// Caller: applies the answer.
    pub async fn accept_answer(&self, sdp: &str) -> Result<(), MediaError> {
        let err = |e: webrtc::error::Error| MediaError::new("apply the remote answer", e);
        let answer = RTCSessionDescription::answer(sdp.to_owned()).map_err(err)?;
        self.pc.set_remote_description(answer).await.map_err(err)?;
        self.release_queued().await
    }

    async fn release_queued(&self) -> Result<(), MediaError> {
        *self.remote_set.lock().await = true;
        let queued: Vec<_> = self.queued.lock().await.drain(..).collect();
        for c in queued {
            self.pc
                .add_ice_candidate(c)
                .await
                .map_err(|e| MediaError::new("add a queued remote candidate", e))?;
        }
        Ok(())
    }

    /// A remote candidate; queued until the remote description is set.
    pub async fn add_remote_candidate(&self, c: &IceCandidate) -> Result<(), MediaError> {
        let init = RTCIceCandidateInit {
            candidate: c.candidate.to_string(),
            sdp_mid: c.sdp_mid.as_ref().map(ToString::to_string),
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment.as_ref().map(ToString::to_string),
            ..Default::default()
        };
        if *self.remote_set.lock().await {
            self.pc
                .add_ice_candidate(init)
                .await
                .map_err(|e| MediaError::new("add a remote candidate", e))
        } else {
            self.queued.lock().await.push(init);
            Ok(())
        }
    }

    /// Sends 20 ms Opus frames of silence for `duration` (call after `Connected`).
    pub fn start_audio(&self, duration: Duration) {
        let audio = self.audio.clone();
        let ssrc = self.ssrc;
        let pc = self.pc.clone();
        tokio::spawn(async move {
            let payload_type = match pc.get_senders().await.first() {
                Some(sender) => sender
                    .get_parameters()
                    .await
                    .ok()
                    .and_then(|p| p.rtp_parameters.codecs.first().map(|c| c.payload_type))
                    .unwrap_or(111),
                None => 111,
            };
            let frames = duration.as_millis() / 20;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for _ in 0..frames {
                tick.tick().await;
                let sample = rtc::media::Sample {
                    data: Bytes::from_static(&OPUS_SILENCE),
                    timestamp: std::time::Instant::now(),
                    duration: Duration::from_millis(20),
                    packet_timestamp: 0,
                    prev_dropped_packets: 0,
                    prev_padding_packets: 0,
                };
                if audio
                    .write_sample(ssrc, payload_type, &sample, &[])
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }

    async fn ice_transport(
        &self,
    ) -> Option<Arc<dyn webrtc::peer_connection::transport::IceTransport>> {
        ice_transport_of(&self.pc).await
    }

    /// The candidate pair ICE selected, once it has selected one.
    pub async fn selected_pair(&self) -> Option<SelectedPair> {
        selected_pair_of(&self.pc).await
    }

    /// The local candidates gathered so far (after the transport policy: relay-only keeps relay
    /// candidates alone).
    pub async fn local_candidates(&self) -> Vec<CandidateAddress> {
        match self.ice_transport().await {
            Some(ice) => ice
                .get_local_candidates()
                .await
                .unwrap_or_default()
                .iter()
                .map(CandidateAddress::of)
                .collect(),
            None => Vec::new(),
        }
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}
