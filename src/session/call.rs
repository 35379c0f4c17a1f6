//! A call in progress with the reference WebRTC peer: [`Signaling`] plus a [`MediaPeer`], the
//! endpoint's actions carried out on the peer and the peer's signals fed back.

use std::time::Duration;

use serde_json::Value;

use super::{
    Device, Inbox, Invitation, Outcome, PlacedCall, RunUntil, SessionError, Signaling, Timeline,
};
use crate::call::{Action, Phase, Role};
use crate::channel::CallChannel;
use crate::event::{EndReason, Refusal};
use crate::ids::CallId;
use crate::media::{MediaPeer, PeerOptions, PeerSignal};

/// A call in progress on this device: [`Signaling`] plus the reference WebRTC peer.
pub struct CallSession {
    sig: Signaling,
    peer: MediaPeer,
    media_flags: (bool, bool),
}

impl Inbox {
    /// Waits for an invitation and joins it with the reference WebRTC peer, adding the ICE
    /// servers (TURN credentials included) the trusted server gives this user.
    pub async fn next_call(
        mut self,
        peer_options: PeerOptions,
        within: Duration,
    ) -> Result<CallSession, SessionError> {
        let invitation = self.wait_for_invitation(within).await?;
        self.join_call(invitation, peer_options).await
    }

    /// [`Inbox::join`] with the reference WebRTC peer and the trusted server's ICE servers.
    pub async fn join_call(
        self,
        invitation: Invitation,
        peer_options: PeerOptions,
    ) -> Result<CallSession, SessionError> {
        let device = self.device.clone();
        let mut sig = self.join(invitation).await?;
        let mut options = peer_options;
        match device.ice_servers().await {
            Ok(list) => options.ice_servers.extend(list.ice_servers),
            Err(e) => sig.timeline.note(format!("no ICE servers: {e}")),
        }
        CallSession::new(sig, options).await
    }
}

impl CallSession {
    /// A call session around signaling joined by the app (see [`Signaling::join`]), with the
    /// reference WebRTC peer.
    pub async fn with_signaling(
        sig: Signaling,
        peer_options: PeerOptions,
    ) -> Result<CallSession, SessionError> {
        CallSession::new(sig, peer_options).await
    }

    async fn new(
        mut sig: Signaling,
        peer_options: PeerOptions,
    ) -> Result<CallSession, SessionError> {
        sig.endpoint
            .set_connect_timeout(peer_options.connect_timeout.as_millis() as u64);
        Ok(CallSession {
            sig,
            peer: MediaPeer::new(&peer_options).await?,
            media_flags: (false, false),
        })
    }

    /// Starts a call through the trusted server (`POST /calls`) and joins its channel with the
    /// reference WebRTC peer, using the ICE servers the trusted server returned.
    pub async fn place(
        device: &Device,
        request: Value,
        peer_options: PeerOptions,
    ) -> Result<(CallSession, PlacedCall), SessionError> {
        let (sig, placed) = Signaling::place(device, request).await?;
        let mut options = peer_options;
        options
            .ice_servers
            .extend(placed.ice_servers.iter().cloned());
        Ok((CallSession::new(sig, options).await?, placed))
    }

    pub fn role(&self) -> Role {
        self.sig.role()
    }
    pub fn phase(&self) -> Phase {
        self.sig.phase()
    }
    pub fn channel(&self) -> &CallChannel {
        self.sig.channel()
    }
    pub fn call_id(&self) -> &CallId {
        self.sig.call_id()
    }
    /// See [`Signaling::started`].
    pub fn started(&self) -> Option<&crate::event::StartedBody> {
        self.sig.started()
    }
    /// See [`Signaling::crossing`].
    pub fn crossing(&self, invitation: &Invitation) -> crate::call::Crossing {
        self.sig.crossing(invitation)
    }
    /// Whether media flows both ways: the data channel carried the ping and its echo, and RTP
    /// arrived.
    pub fn media_up(&self) -> bool {
        self.media_flags == (true, true)
    }
    /// Sends this device's media state (mute, camera, screen, hold).
    pub fn send_media_state(
        &mut self,
        state: crate::event::MediaStateBody,
    ) -> Result<(), SessionError> {
        self.sig.send_media_state(state)
    }
    pub fn timeline(&self) -> &Timeline {
        &self.sig.timeline
    }
    /// See [`Signaling::refusals`].
    pub fn refusals(&self) -> &[Refusal] {
        self.sig.refusals()
    }
    /// The candidate pair the media flows over, once ICE selected one.
    pub async fn selected_pair(&self) -> Option<crate::media::SelectedPair> {
        self.peer.selected_pair().await
    }
    /// The local ICE candidates gathered so far.
    pub async fn local_candidates(&self) -> Vec<crate::media::CandidateAddress> {
        self.peer.local_candidates().await
    }

    pub async fn accept(&mut self) -> Result<(), SessionError> {
        self.sig.accept()
    }
    pub async fn decline(&mut self, busy: bool) -> Result<(), SessionError> {
        self.sig.decline(busy)
    }
    pub async fn hang_up(&mut self) -> Result<(), SessionError> {
        self.sig.hang_up()
    }
    /// Ends this device's outgoing call because a crossing call won the glare ([FLOW-008]).
    pub async fn replaced(&mut self) -> Result<(), SessionError> {
        self.sig.fail(EndReason::Replaced);
        Ok(())
    }

    /// Acts on one signaling notice with the media peer.
    async fn act(&mut self, action: Action) -> Result<(), SessionError> {
        match action {
            Action::CreateOffer { to } => {
                self.sig.timeline.note(format!("accepted by {to}"));
                let sdp = self.peer.create_offer().await?;
                self.sig.send_offer(&sdp, false)?;
            }
            Action::RemoteOffer {
                sdp,
                negotiation_id,
                ice_restart,
                rollback,
                ..
            } => {
                self.sig.timeline.note(format!(
                    "offer received{}{}",
                    if ice_restart { " (ICE restart)" } else { "" },
                    if rollback { "; rolling back ours" } else { "" }
                ));
                let answer = self.peer.accept_offer(&sdp, rollback).await?;
                self.sig.send_answer(&answer, negotiation_id)?;
            }
            Action::RemoteAnswer { sdp } => {
                self.sig.timeline.note("answer received");
                self.peer.accept_answer(&sdp).await?;
            }
            Action::RemoteCandidates {
                candidates,
                end_of_candidates,
            } => {
                for c in &candidates {
                    self.peer.add_remote_candidate(c).await?;
                }
                if end_of_candidates {
                    self.sig.timeline.note("remote end of candidates");
                }
            }
            Action::Ended { .. } => self.peer.close().await,
            Action::Send(_)
            | Action::PeerRinging { .. }
            | Action::PeerAccepted { .. }
            | Action::RemoteMediaState(_) => {}
        }
        Ok(())
    }

    fn on_signal(&mut self, signal: PeerSignal) {
        match signal {
            PeerSignal::LocalCandidate(c) => self.sig.add_local_candidate(c),
            PeerSignal::GatheringComplete => self.sig.local_candidates_complete(),
            PeerSignal::Connected => {
                self.sig.media_connected();
                self.peer.start_audio(Duration::from_secs(30));
            }
            PeerSignal::IceConnected => self.sig.timeline.note("ICE connected"),
            PeerSignal::DataChannelOpen => self.sig.timeline.note("data channel open (SCTP up)"),
            PeerSignal::DataMessage(m) => {
                self.sig
                    .timeline
                    .note(format!("data channel message {m:?}"));
                // The caller is done when its ping came back; the callee once it echoed it.
                let caller = self.sig.role() == Role::Caller;
                if caller == m.starts_with("echo:") {
                    self.media_flags.0 = true;
                }
            }
            PeerSignal::FirstRtp => {
                self.sig.timeline.note("first RTP packet");
                self.media_flags.1 = true;
            }
            PeerSignal::Failed(e) => {
                self.sig.timeline.note(format!("media failed: {e}"));
                self.sig.fail(EndReason::IceFailed);
            }
        }
    }

    /// Runs the session until `until` (or the call ends), or fails after `within`.
    pub async fn run(
        &mut self,
        until: RunUntil,
        within: Duration,
    ) -> Result<Outcome, SessionError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if matches!(self.sig.phase(), Phase::Ended(_)) && self.sig.notices.is_empty() {
                break;
            }
            if until == RunUntil::MediaUp && self.media_flags == (true, true) {
                break;
            }
            tokio::select! {
                action = self.sig.next_event(deadline) => match action? {
                    Some(a) => self.act(a).await?,
                    None if until == RunUntil::Elapsed => break,
                    None => {
                        let last = self.sig.timeline.entries.last().map_or_else(String::new, |(at, what)| {
                            format!("; the last thing that happened: {what} ({} ms in)", at.as_millis())
                        });
                        return Err(SessionError::TimedOut(format!(
                            "gave up after {} s: the call was {}{last}",
                            within.as_secs(),
                            self.sig.phase()
                        )));
                    }
                },
                signal = self.peer.next_signal() => match signal {
                    Some(s) => self.on_signal(s),
                    None => return Err(SessionError::Protocol("media peer stopped".into())),
                },
            }
        }
        Ok(self.sig.outcome())
    }

    pub async fn close(self) {
        self.peer.close().await;
        self.sig.close().await;
    }
}
