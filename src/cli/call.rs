//! `domvia-calls call`: a real call. With no flags it starts the embedded servers, alice calls bob
//! all the way to connected media, prints a timeline of both sides, hangs up and shows the stored
//! call record. With flags it joins a real deployment as one party (placing or answering a call).

use std::time::Duration;

use clap::Args;
use domvia_calls::media::PeerOptions;
use domvia_calls::session::{CallSession, Device, Inbox, RunUntil, Timeline};
use domvia_calls::stack::{self, StackConfig};
use serde_json::{Value, json};

use super::CliResult;

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Realtime server WebSocket URL, `ws://host:port/app/{key}` (joins a deployment).
    #[arg(long, requires_all = ["trusted_url", "token", "user"])]
    realtime_url: Option<String>,
    /// Trusted server base URL, `http://host:port`.
    #[arg(long)]
    trusted_url: Option<String>,
    /// Bearer token of the user.
    #[arg(long, env = "DOMVIA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The user this device belongs to.
    #[arg(long)]
    user: Option<String>,
    /// Call this user on the deployment (with --scope and --scope-id); without it, wait for a
    /// call and answer it.
    #[arg(long, requires = "realtime_url")]
    to: Option<String>,
    /// The scope type of the call (`room`, `trip`, ...): who may join.
    #[arg(long, default_value = "room")]
    scope: String,
    /// The scope id: the room (or trip, ...) the call belongs to.
    #[arg(long, default_value = "chat-room-42")]
    scope_id: String,
    /// `standard`, or `strong` (offer, answer, candidates and media state sealed end to end).
    #[arg(long, value_enum, default_value = "standard")]
    privacy: PrivacyArg,
    /// Stay in the call this many seconds after media is up, then hang up.
    #[arg(long, default_value_t = 1)]
    seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PrivacyArg {
    Standard,
    Strong,
}

impl PrivacyArg {
    fn name(self) -> &'static str {
        match self {
            PrivacyArg::Standard => "standard",
            PrivacyArg::Strong => "strong",
        }
    }
}

const WITHIN: Duration = Duration::from_secs(60);

/// Both sides' timelines as one, in the order things happened (times from the earlier start).
fn print_timelines(sides: &[(&str, &Timeline)]) {
    let epoch = sides.iter().filter_map(|(_, t)| t.began()).min();
    let mut lines: Vec<(Duration, &str, &str)> = Vec::new();
    for (who, t) in sides {
        let offset = match (epoch, t.began()) {
            (Some(e), Some(b)) => b.duration_since(e),
            _ => Duration::ZERO,
        };
        lines.extend(
            t.entries
                .iter()
                .map(|(at, what)| (*at + offset, *who, what.as_str())),
        );
    }
    lines.sort_by_key(|(at, _, _)| *at);
    for (at, who, what) in lines {
        println!("  {:>9.1} ms  {who:<5} {what}", at.as_secs_f64() * 1000.0);
    }
}

/// A `ws://host:port/app/KEY` URL, or why not (a URL without the app path would connect to a
/// path the server refuses, and the client would retry for ever).
fn check_realtime_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| format!("--realtime-url {url} must start with ws:// or wss://"))?;
    match rest.split_once("/app/") {
        Some((host, key)) if !host.is_empty() && !key.is_empty() && !key.contains('/') => Ok(()),
        _ => Err(format!(
            "--realtime-url {url} must name the app: ws://HOST:PORT/app/KEY (the reference server: \
             ws://127.0.0.1:6001/app/domvia-key)"
        )),
    }
}

pub fn run(args: CallArgs) -> CliResult {
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        match args.realtime_url.clone() {
            None => demo(&args).await,
            Some(url) => {
                check_realtime_url(&url)?;
                join(&args, &url).await
            }
        }
    })
}

async fn demo(args: &CallArgs) -> CliResult {
    let data_dir = std::env::temp_dir().join(format!("domvia-call-demo-{}", std::process::id()));
    let mut cfg = StackConfig::development(
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    cfg.trusted.data_dir = data_dir.clone();
    let s = stack::start(cfg).await?;
    let (r, t) = (s.realtime.addr(), s.trusted.addr());
    println!("embedded servers: realtime ws://{r}/app/domvia-key, trusted http://{t}");
    let device = |user: &str| {
        Device::new(
            &format!("ws://{r}/app/domvia-key"),
            &format!("http://{t}"),
            &format!("{user}-token"),
            user,
        )
    };
    let (alice, bob) = (device("alice")?, device("bob")?);
    let inbox = Inbox::open(&bob).await?;
    let request = json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"], "privacy": args.privacy.name()});
    let (mut caller, placed) = CallSession::place(&alice, request, PeerOptions::default()).await?;
    println!(
        "alice calls bob: call {} on {}",
        placed.call_id, placed.channel
    );
    let mut callee = inbox.next_call(PeerOptions::default(), WITHIN).await?;
    callee.accept().await?;
    let (a, b) = tokio::join!(
        caller.run(RunUntil::MediaUp, WITHIN),
        callee.run(RunUntil::MediaUp, WITHIN)
    );
    let (a, b) = (a?, b?);
    println!("timeline:");
    print_timelines(&[("alice", caller.timeline()), ("bob", callee.timeline())]);
    println!(
        "client events sent: alice {}, bob {}; rate-limit refusals: {}",
        a.events_sent,
        b.events_sent,
        a.throttled + b.throttled
    );
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    caller.hang_up().await?;
    let (_, ended) = tokio::join!(
        caller.run(RunUntil::Ended, WITHIN),
        callee.run(RunUntil::Ended, WITHIN)
    );
    println!("bob's side: {}", ended?.phase);
    // The record the trusted server kept (it learns the end through the realtime webhooks).
    let mut record = Value::Null;
    for _ in 0..100 {
        let resp = domvia_calls::net::http_client()
            .get(format!("http://{t}/calls/{}", placed.call_id))
            .header("authorization", "Bearer alice-token")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        record = serde_json::from_str(&resp.text().await.map_err(|e| e.to_string())?)
            .unwrap_or(Value::Null);
        if record["call"]["state"] == "ended" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "stored call record:\n{}",
        serde_json::to_string_pretty(&record).unwrap_or_default()
    );
    caller.close().await;
    callee.close().await;
    s.shutdown().await;
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(record["call"]["state"] == "ended")
}

async fn join(args: &CallArgs, realtime_url: &str) -> CliResult {
    let (Some(trusted), Some(token), Some(user)) = (&args.trusted_url, &args.token, &args.user)
    else {
        return Err("--trusted-url, --token and --user are needed with --realtime-url".into());
    };
    let device = Device::new(realtime_url, trusted, token, user)?;
    let mut session = match &args.to {
        Some(callee) => {
            let request = json!({"scope": args.scope, "scope_id": args.scope_id, "callees": [callee], "privacy": args.privacy.name()});
            let (session, placed) =
                CallSession::place(&device, request, PeerOptions::default()).await?;
            println!(
                "calling {callee}: call {} on {}",
                placed.call_id, placed.channel
            );
            session
        }
        None => {
            let inbox = Inbox::open(&device).await?;
            println!("waiting for a call to {user} (inbox open)");
            let mut session = inbox
                .next_call(PeerOptions::default(), Duration::from_secs(3600))
                .await?;
            session.accept().await?;
            session
        }
    };
    let out = session.run(RunUntil::MediaUp, WITHIN).await?;
    print_timelines(&[(user.as_str(), session.timeline())]);
    println!("media up ({}); staying {} s", out.phase, args.seconds);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    session.hang_up().await.ok();
    session.close().await;
    Ok(true)
}
