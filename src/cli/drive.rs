//! `domvia-calls drive`: the reference client behind the client-driver contract
//! (`conformance/client-driver.md`): commands as JSON lines on stdin, reports as JSON lines on
//! stdout. It is the Rust client the client-role runner tests, and a worked example of a driver.
//!
//! One loop: commands are read by a task and queued; a call in progress runs in short slices
//! between them (a slice always runs to its end, so no media operation is cut in half); while
//! idle or calling out, an inbox task waits for the next invitation.

use std::io::Write;
use std::time::Duration;

use domvia_calls::call::{Crossing, Role};
use domvia_calls::conform::driver::{DriverCommand, DriverReport, phase_name};
use domvia_calls::event::{AudioState, MediaStateBody, ScreenState, VideoState};
use domvia_calls::media::PeerOptions;
use domvia_calls::session::{CallSession, Device, Inbox, Invitation, RunUntil, SessionError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::CliResult;

/// How long a call runs between two looks at the command queue.
const SLICE: Duration = Duration::from_millis(20);

/// Writes one report line and flushes it: the runner reads line by line.
pub(super) fn report(r: &impl serde::Serialize) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, r);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

pub(super) fn error(command: &str, message: impl std::fmt::Display) {
    report(&DriverReport::Error {
        command: command.to_owned(),
        message: message.to_string(),
    });
}

/// A call in progress and what has been reported of it.
struct Call {
    session: CallSession,
    phase: String,
    refusals: usize,
    media_reported: bool,
}

impl Call {
    fn new(session: CallSession) -> Call {
        let mut call = Call {
            session,
            phase: String::new(),
            refusals: 0,
            media_reported: false,
        };
        call.report_changes();
        call
    }

    fn id(&self) -> String {
        self.session.call_id().to_string()
    }

    /// Reports what changed since the last look: the phase, new refusals, media up.
    fn report_changes(&mut self) {
        let (phase, reason) = phase_name(self.session.phase());
        if phase != self.phase {
            self.phase = phase.to_owned();
            report(&DriverReport::Phase {
                call_id: self.id(),
                phase: phase.to_owned(),
                reason,
            });
        }
        let refusals = self.session.refusals().to_vec();
        for r in &refusals[self.refusals..] {
            report(&DriverReport::Refused {
                call_id: self.id(),
                event_name: r.event.clone(),
                code: r.code.to_owned(),
                requirement: r.requirement.map(str::to_owned),
            });
        }
        self.refusals = refusals.len();
        if !self.media_reported && self.session.media_up() {
            self.media_reported = true;
            report(&DriverReport::MediaUp { call_id: self.id() });
        }
    }

    fn ended(&self) -> bool {
        self.phase == "ended"
    }
}

/// The call in progress, or an `error` report naming the command.
fn in_call<'a>(call: &'a mut Option<Call>, command: &str) -> Option<&'a mut CallSession> {
    let session = call.as_mut().map(|c| &mut c.session);
    if session.is_none() {
        error(command, "there is no call");
    }
    session
}

/// What the inbox listener hands the main loop: an invitation not answered yet, with the inbox
/// it came on (joining the call uses that inbox's connection).
type Heard = Result<(Inbox, Invitation), SessionError>;

/// Waits for the next invitation on an open inbox.
async fn listen(mut inbox: Inbox, heard: mpsc::UnboundedSender<Heard>) {
    let invitation = inbox
        .wait_for_invitation(Duration::from_secs(24 * 3600))
        .await;
    let _ = heard.send(invitation.map(|i| (inbox, i)));
}

/// The driver's stdin, line by line. Reading stdin blocks; a thread of its own keeps it out of
/// the runtime.
pub(super) fn command_lines() -> mpsc::UnboundedReceiver<String> {
    let (lines_tx, lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

pub fn run() -> CliResult {
    let runtime = super::runtime()?;
    runtime.block_on(drive())
}

/// The driver's state. The device listens for invitations whenever it is idle or calling out
/// (an invitation then may cross its own call: glare, [FLOW-008]); `ready` is reported once per
/// idle spell, when the listener is subscribed.
struct Driver {
    device: Option<Device>,
    listener: Option<JoinHandle<()>>,
    heard: mpsc::UnboundedSender<Heard>,
    call: Option<Call>,
    /// After the inbox itself failed (its connection closed for good, e.g. with 4001), it is
    /// not opened again: reconnecting is the client's decision, and it made it.
    listening_failed: bool,
    ready_reported: bool,
}

async fn drive() -> CliResult {
    let mut lines = command_lines();
    let (heard, mut invitations) = mpsc::unbounded_channel::<Heard>();
    let mut d = Driver {
        device: None,
        listener: None,
        heard,
        call: None,
        listening_failed: false,
        ready_reported: false,
    };
    loop {
        // Run the call for one slice, or wait for a command or an invitation.
        let mut pending: Vec<String> = Vec::new();
        if let Some(c) = d.call.as_mut() {
            if let Err(e) = c.session.run(RunUntil::Elapsed, SLICE).await {
                error("run", e);
            }
            c.report_changes();
            while let Ok(h) = invitations.try_recv() {
                d.heard(h).await;
            }
        } else {
            tokio::select! {
                line = lines.recv() => match line {
                    Some(l) => pending.push(l),
                    None => return Ok(true),
                },
                Some(h) = invitations.recv() => d.heard(h).await,
            }
        }
        while let Ok(line) = lines.try_recv() {
            pending.push(line);
        }
        if d.call.as_ref().is_some_and(Call::ended)
            && let Some(c) = d.call.take()
        {
            c.session.close().await;
        }
        for line in pending {
            let command = match serde_json::from_str::<DriverCommand>(&line) {
                Ok(c) => c,
                Err(e) => {
                    error(&line, format!("not a command of the contract: {e}"));
                    continue;
                }
            };
            if command == DriverCommand::Quit {
                if let Some(c) = d.call.take() {
                    c.session.close().await;
                }
                return Ok(true);
            }
            d.handle(command).await;
        }
        d.keep_listening().await;
    }
}

impl Driver {
    /// Opens the inbox again when the device should listen and does not, and reports `ready`
    /// when idle and listening.
    async fn keep_listening(&mut self) {
        let calling_out = self
            .call
            .as_ref()
            .is_none_or(|c| c.session.role() == Role::Caller);
        if calling_out
            && self.listener.is_none()
            && !self.listening_failed
            && let Some(device) = &self.device
        {
            // Subscribed before `ready`, so an invitation sent after it is never missed.
            match Inbox::open(device).await {
                Ok(inbox) => self.listener = Some(tokio::spawn(listen(inbox, self.heard.clone()))),
                Err(e) => {
                    self.listening_failed = true;
                    error("listen", e);
                }
            }
        }
        if self.call.is_none() && self.listener.is_some() && !self.ready_reported {
            self.ready_reported = true;
            if let Some(device) = &self.device {
                report(&DriverReport::Ready {
                    user: device.user.to_string(),
                });
            }
        }
    }

    /// An invitation arrived: ring for it, unless this device's own call wins the glare or is
    /// another call altogether (then it is set aside; the listener opens again).
    async fn heard(&mut self, heard: Heard) {
        self.listener = None;
        let (inbox, invitation) = match heard {
            Ok(h) => h,
            Err(e) => {
                self.listening_failed = true;
                return error("listen", e);
            }
        };
        if let Some(c) = self.call.as_mut() {
            match c.session.crossing(&invitation) {
                Crossing::YieldToTheirs => {
                    // The crossing call has the lower id: ours ends with `replaced`.
                    let _ = c.session.replaced().await;
                    c.report_changes();
                    if let Some(c) = self.call.take() {
                        c.session.close().await;
                    }
                }
                Crossing::KeepMine | Crossing::Unrelated => {
                    inbox.close().await;
                    return;
                }
            }
        }
        match inbox.join_call(invitation, PeerOptions::default()).await {
            Ok(session) => {
                let caller = session
                    .started()
                    .map(|s| s.caller.to_string())
                    .unwrap_or_default();
                report(&DriverReport::Incoming {
                    call_id: session.call_id().to_string(),
                    caller,
                });
                self.ready_reported = false;
                self.call = Some(Call::new(session));
            }
            Err(e) => error("listen", e),
        }
    }

    async fn handle(&mut self, command: DriverCommand) {
        let call = &mut self.call;
        match command {
            DriverCommand::Connect {
                realtime_url,
                trusted_url,
                token,
                user,
            } => match Device::new(&realtime_url, &trusted_url, &token, &user) {
                #[allow(unused_mut)]
                Ok(mut d) => {
                    // Test-only: a deliberate defect, so the client-role cases can be seen to
                    // catch it.
                    #[cfg(feature = "defects")]
                    if let Ok(name) = std::env::var("DOMVIA_CLIENT_DEFECT") {
                        d.defect = domvia_calls::client_defect::ClientDefect::from_name(&name);
                    }
                    // Connected means listening: the inbox is subscribed before `ready`.
                    match Inbox::open(&d).await {
                        Ok(inbox) => {
                            self.listener = Some(tokio::spawn(listen(inbox, self.heard.clone())));
                            self.device = Some(d);
                        }
                        Err(e) => error("connect", e),
                    }
                }
                Err(e) => error("connect", e),
            },
            DriverCommand::Place { request } => {
                let Some(d) = self.device.as_ref() else {
                    return error("place", "connect first");
                };
                if call.is_some() {
                    return error("place", "already in a call");
                }
                // The listener goes on: an invitation from the callee may cross this call.
                match CallSession::place(d, request, PeerOptions::default()).await {
                    Ok((session, placed)) => {
                        report(&DriverReport::Placed {
                            call_id: placed.call_id.to_string(),
                            channel: placed.channel.to_string(),
                        });
                        self.ready_reported = false;
                        *call = Some(Call::new(session));
                    }
                    Err(e) => error("place", e),
                }
            }
            DriverCommand::Answer => {
                if let Some(s) = in_call(call, "answer")
                    && let Err(e) = s.accept().await
                {
                    error("answer", e);
                }
            }
            DriverCommand::Decline { busy } => {
                if let Some(s) = in_call(call, "decline")
                    && let Err(e) = s.decline(busy).await
                {
                    error("decline", e);
                }
            }
            DriverCommand::HangUp => {
                if let Some(s) = in_call(call, "hang_up")
                    && let Err(e) = s.hang_up().await
                {
                    error("hang_up", e);
                }
            }
            DriverCommand::Mute { muted } => {
                let state = MediaStateBody {
                    audio: AudioState { muted },
                    video: VideoState { enabled: false },
                    screen: ScreenState { sharing: false },
                    on_hold: false,
                };
                if let Some(s) = in_call(call, "mute")
                    && let Err(e) = s.send_media_state(state)
                {
                    error("mute", e);
                }
            }
            DriverCommand::Quit => {}
        }
        if let Some(c) = self.call.as_mut() {
            c.report_changes();
        }
    }
}
