//! The reference realtime client: the tokio driver around [`crate::pusher_client::PusherClient`],
//! the pure machine that decides everything (pacing, the ping fence, 4301 retries, reconnect
//! backoff, restoring subscriptions). This module only opens sockets, moves frames, signs
//! channels through a trusted server's auth endpoint (or a local signer) and hands results to
//! the app's futures.
//!
//! One task per client runs the machine's driving rule: drain `poll_transmit`, then
//! `poll_output`, then wait for a frame, a command, a signature or `poll_timeout`.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::ids::SocketId;
use crate::pusher::ChannelType;
pub use crate::pusher_client::{ChannelGrant, ClientError, ClientEvent, Subscription};
use crate::pusher_client::{ClientOutput, GrantRefused, PusherClient, TriggerId};
use crate::signing::{self, Secret};

/// How subscriptions to protected channels get their signature.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A trusted server's `POST /realtime/auth` with a bearer token (form-encoded, as pusher-js).
    Endpoint { url: String, token: String },
    /// Sign locally with the app secret (tools and tests; real clients never hold the secret).
    Signer {
        key: String,
        secret: Secret,
        /// Presence identity: user id and info.
        presence_user: Option<(String, Value)>,
    },
}

/// Which way a traced frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireDirection {
    Sent,
    Received,
    /// Not a frame: the connection opened or closed.
    Note,
}

/// What a [`WireTap`] calls for every frame.
pub type WireObserver = dyn Fn(WireDirection, &str) + Send + Sync;

/// Sees every frame a client sends and receives, e.g. for the conformance runner's wire trace.
#[derive(Clone)]
pub struct WireTap(pub std::sync::Arc<WireObserver>);

impl std::fmt::Debug for WireTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WireTap")
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:port/app/{key}` or `wss://...`; `?protocol=7&client=...` is added.
    pub url: String,
    pub auth: Auth,
    /// Client events per second to pace at; by default 90% of the server's announced limit.
    pub events_per_second: Option<f64>,
    /// Sees every frame, if set.
    pub tap: Option<WireTap>,
    /// Test-only: one deliberate protocol violation.
    #[cfg(feature = "defects")]
    pub defect: Option<crate::client_defect::ClientDefect>,
}

impl ClientConfig {
    /// A client of `url` with `auth`, paced by the server's announced limit, untraced.
    pub fn new(url: impl Into<String>, auth: Auth) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            auth,
            events_per_second: None,
            tap: None,
            #[cfg(feature = "defects")]
            defect: None,
        }
    }

    fn trace(&self, direction: WireDirection, text: &str) {
        if let Some(tap) = &self.tap {
            (tap.0)(direction, text);
        }
    }
}

enum Cmd {
    Subscribe {
        channel: String,
        reply: oneshot::Sender<Result<Subscription, ClientError>>,
    },
    Trigger {
        channel: String,
        event: String,
        data: Value,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Close,
}

/// A cloneable handle that only sends client events (for a sender task beside the reader).
#[derive(Clone)]
pub struct ClientSender {
    commands: mpsc::Sender<Cmd>,
}

impl ClientSender {
    /// Same as [`RealtimeClient::trigger`].
    pub async fn trigger(
        &self,
        channel: &str,
        event: &str,
        data: Value,
    ) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Cmd::Trigger {
                channel: channel.to_owned(),
                event: event.to_owned(),
                data,
                reply,
            })
            .await
            .map_err(|_| ClientError::Closed(None))?;
        answer.await.map_err(|_| ClientError::Closed(None))?
    }
}

/// A handle to the connection task.
pub struct RealtimeClient {
    commands: mpsc::Sender<Cmd>,
    events: mpsc::Receiver<ClientEvent>,
    socket_id: String,
    max_event_bytes: usize,
    #[cfg(feature = "defects")]
    defect: Option<crate::client_defect::ClientDefect>,
}

impl RealtimeClient {
    /// Test-only: the deliberate defect this client was configured with.
    #[cfg(feature = "defects")]
    pub fn defect(&self) -> Option<crate::client_defect::ClientDefect> {
        self.defect
    }

    /// Connects and waits for `connection_established`.
    pub async fn connect(config: ClientConfig) -> Result<RealtimeClient, ClientError> {
        let (commands, command_rx) = mpsc::channel(256);
        let (event_tx, mut events) = mpsc::channel(4096);
        #[cfg(feature = "defects")]
        let defect = config.defect;
        tokio::spawn(run(config, command_rx, event_tx));
        loop {
            match events.recv().await {
                Some(ClientEvent::Connected {
                    socket_id,
                    max_event_bytes,
                }) => {
                    return Ok(RealtimeClient {
                        commands,
                        events,
                        socket_id,
                        max_event_bytes,
                        #[cfg(feature = "defects")]
                        defect,
                    });
                }
                Some(ClientEvent::Disconnected {
                    code,
                    reconnecting: false,
                }) => {
                    return Err(ClientError::Closed(code));
                }
                Some(_) => continue,
                None => return Err(ClientError::Connect("connection task ended".into())),
            }
        }
    }

    /// The largest event data the server accepts, as it announced (10 KiB if it did not).
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The socket id of the first connection (it changes on reconnect; see `Connected` events).
    pub fn socket_id(&self) -> &str {
        &self.socket_id
    }

    /// Subscribes (signing through the configured auth) and waits for the server's answer.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Cmd::Subscribe {
                channel: channel.to_owned(),
                reply,
            })
            .await
            .map_err(|_| ClientError::Closed(None))?;
        answer.await.map_err(|_| ClientError::Closed(None))?
    }

    /// Queues a client event; resolves once the server relayed it (or refused it for a reason
    /// other than the rate limit, which is retried).
    pub async fn trigger(
        &self,
        channel: &str,
        event: &str,
        data: Value,
    ) -> Result<(), ClientError> {
        self.sender().trigger(channel, event, data).await
    }

    /// A handle for sending from another task.
    pub fn sender(&self) -> ClientSender {
        ClientSender {
            commands: self.commands.clone(),
        }
    }

    /// The next thing the connection reports.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    pub async fn close(self) {
        let _ = self.commands.send(Cmd::Close).await;
    }
}

/// How long one authorization request may take.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Signs `channel` for `socket_id` with the configured auth.
async fn authorize(
    http: &reqwest::Client,
    auth: &Auth,
    socket_id: &str,
    channel: &str,
) -> Result<ChannelGrant, GrantRefused> {
    match auth {
        Auth::Endpoint { url, token } => {
            let body = format!("socket_id={socket_id}&channel_name={channel}");
            let resp = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", format!("Bearer {token}"))
                .timeout(AUTH_TIMEOUT)
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{status}: {text}").into());
            }
            let grant: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let text_of = |k: &str| grant.get(k).and_then(Value::as_str).map(str::to_owned);
            Ok(ChannelGrant {
                auth: text_of("auth").ok_or("the auth endpoint's answer has no `auth`")?,
                channel_data: text_of("channel_data"),
                shared_secret: text_of("shared_secret"),
            })
        }
        Auth::Signer {
            key,
            secret,
            presence_user,
        } => {
            let socket = SocketId::parse(socket_id).map_err(|e| e.to_string())?;
            let channel_data = match (ChannelType::of(channel), presence_user) {
                (ChannelType::Presence, Some((id, info))) => {
                    Some(json!({ "user_id": id, "user_info": info }).to_string())
                }
                (ChannelType::Presence, None) => {
                    return Err("presence channels need a presence user".into());
                }
                _ => None,
            };
            Ok(ChannelGrant {
                auth: signing::sign_channel(key, secret, &socket, channel, channel_data.as_deref()),
                channel_data,
                shared_secret: None,
            })
        }
    }
}

type Socket = crate::net::WebSocket;

/// The driver loop: runs until the machine ends (closed for good, or the app closed it).
async fn run(
    config: ClientConfig,
    mut commands: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<ClientEvent>,
) {
    let epoch = Instant::now();
    let now = move || epoch.elapsed().as_millis() as u64;
    let machine = PusherClient::new(&config.url, config.events_per_second, now());
    #[cfg(feature = "defects")]
    let machine = machine.with_defect(config.defect);
    let mut machine = machine;
    let http = crate::net::http_client();
    let (grants_tx, mut grants) = mpsc::unbounded_channel();
    let mut subscribe_replies: HashMap<
        String,
        Vec<oneshot::Sender<Result<Subscription, ClientError>>>,
    > = HashMap::new();
    let mut trigger_replies: HashMap<TriggerId, oneshot::Sender<Result<(), ClientError>>> =
        HashMap::new();
    let mut socket: Option<Socket> = None;
    let mut commands_open = true;
    loop {
        // Drain: frames first, then outputs; an output can queue frames, so go round until both
        // are empty.
        loop {
            let mut progressed = false;
            while let Some(text) = machine.poll_transmit(now()) {
                progressed = true;
                let Some(ws) = socket.as_mut() else { break };
                config.trace(WireDirection::Sent, &text);
                if let Err(e) = ws.send(Message::Text(text.into())).await {
                    config.trace(WireDirection::Note, &format!("connection failed: {e}"));
                    socket = None;
                    machine.handle_closed(None, now());
                }
            }
            while let Some(output) = machine.poll_output() {
                progressed = true;
                match output {
                    ClientOutput::Connect { url } => {
                        config.trace(WireDirection::Note, &format!("connect {url}"));
                        match crate::net::connect_websocket_with(
                            &url,
                            Some(crate::net::call_signaling_config()),
                        )
                        .await
                        {
                            Ok(ws) => {
                                socket = Some(ws);
                                machine.handle_connected(now());
                            }
                            Err(e) => {
                                config.trace(WireDirection::Note, &format!("cannot connect: {e}"));
                                machine.handle_closed(None, now());
                            }
                        }
                    }
                    ClientOutput::Disconnect => {
                        if let Some(mut ws) = socket.take() {
                            let _ = ws.send(Message::Close(None)).await;
                        }
                        machine.handle_closed(Some(1000), now());
                    }
                    ClientOutput::Authorize { socket_id, channel } => {
                        let (http, auth, grants) =
                            (http.clone(), config.auth.clone(), grants_tx.clone());
                        tokio::spawn(async move {
                            let grant = authorize(&http, &auth, &socket_id, &channel).await;
                            let _ = grants.send((socket_id, channel, grant));
                        });
                    }
                    ClientOutput::Subscribed { channel, result } => {
                        for reply in subscribe_replies.remove(&channel).unwrap_or_default() {
                            let _ = reply.send(result.clone());
                        }
                    }
                    ClientOutput::Triggered { id, result } => {
                        if let Some(reply) = trigger_replies.remove(&id) {
                            let _ = reply.send(result);
                        }
                    }
                    ClientOutput::Event(event) => {
                        let _ = events.send(event).await;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        if machine.is_ended() {
            return;
        }
        let wake = machine
            .poll_timeout(now())
            .map(|ms| epoch + Duration::from_millis(ms));
        tokio::select! {
            message = async {
                match socket.as_mut() {
                    Some(ws) => ws.next().await,
                    None => std::future::pending().await,
                }
            } => match message {
                Some(Ok(Message::Text(text))) => {
                    config.trace(WireDirection::Received, &text);
                    machine.handle_text(&text, now());
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    config.trace(WireDirection::Note, &format!("closed by the server: {code:?}"));
                    socket = None;
                    machine.handle_closed(code, now());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    config.trace(WireDirection::Note, &format!("connection failed: {e}"));
                    socket = None;
                    machine.handle_closed(None, now());
                }
                None => {
                    config.trace(WireDirection::Note, "connection ended without a close frame");
                    socket = None;
                    machine.handle_closed(None, now());
                }
            },
            command = commands.recv(), if commands_open => match command {
                None | Some(Cmd::Close) => {
                    commands_open = command.is_some();
                    machine.close();
                }
                Some(Cmd::Subscribe { channel, reply }) => {
                    subscribe_replies.entry(channel.clone()).or_default().push(reply);
                    machine.subscribe(&channel, now());
                }
                Some(Cmd::Trigger { channel, event, data, reply }) => {
                    let id = machine.trigger(&channel, &event, data);
                    trigger_replies.insert(id, reply);
                }
            },
            Some((socket_id, channel, grant)) = grants.recv() => {
                machine.handle_grant(&socket_id, &channel, grant, now());
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(epoch)), if wake.is_some() => {
                machine.handle_timeout(now());
            }
        }
    }
}
