//! `domvia-calls load`: call-shaped load against any Pusher-compatible realtime server.
//!
//! Calls are placed open-loop: call `k` is scheduled at `k / calls_per_second` from the start,
//! whatever happened to earlier calls, and every latency is measured both from the moment an
//! event was meant to leave (so a late generator or a slow server shows up instead of hiding:
//! coordinated omission) and from the moment it actually left. Each call runs on a pair of
//! pooled connections, connected before the clock starts, with the reference call endpoints
//! deciding every event ([`call`]); [`stats`] keeps the counts and percentiles without I/O.
//!
//! The generator measures itself too: its CPU and how late it sent what it meant to send. When
//! either says it was the bottleneck, the report says so instead of blaming the server.

pub mod call;
pub mod conn;
pub mod stats;

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::ToolError;
use crate::signing::Secret;
use call::{Clock, Pair};
use conn::Conn;
use stats::Totals;

/// What to load and how hard.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The node's WebSocket base URL (`ws://host:port` or `wss://...`).
    pub node: String,
    pub key: String,
    pub secret: Secret,
    /// Calls on `presence-call.` channels (the protocol's default for calls) or `private-call.`.
    pub presence: bool,
    /// The scope id of this run's call channels (fresh per run, so runs never mix).
    pub scope_id: String,
    pub calls_per_second: f64,
    /// How long new calls are placed.
    pub duration: Duration,
    /// How long each call is held between setup and hang-up.
    pub hold: Duration,
    /// Each side changes its media state this often while the call is held.
    pub media_state_every: Option<Duration>,
    pub sdp_bytes: usize,
    /// Local ICE candidates per side.
    pub candidates: usize,
    /// Extra connections that only stay subscribed (one private channel each).
    pub idle: usize,
    /// Connection pairs in the pool: the most calls that can be in progress at once.
    pub pairs: usize,
    /// An expected event later than this fails its call as stalled.
    pub event_timeout: Duration,
    /// The target's process, to sample its CPU and memory (Linux `/proc`).
    pub server_pid: Option<u32>,
}

impl LoadOptions {
    fn url(&self) -> String {
        format!(
            "{}/app/{}?protocol=7&client=domvia-load&version={}",
            self.node.trim_end_matches('/'),
            self.key,
            env!("CARGO_PKG_VERSION")
        )
    }

    /// Pairs needed so that calls never wait for a free pair at this rate: the calls in
    /// progress at once (rate × (hold + a second of setup and drain)), with a quarter spare.
    pub fn pairs_for(calls_per_second: f64, hold: Duration) -> usize {
        ((calls_per_second * (hold.as_secs_f64() + 1.0)) * 1.25).ceil() as usize + 2
    }
}

/// How a run is going, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub elapsed: Duration,
    pub planned: Duration,
    pub calls_placed: u64,
    pub calls_done: u64,
}

/// CPU and memory of one process over the measured time.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub pid: u32,
    /// Percent of one core, averaged over the run.
    pub cpu_percent: f64,
    pub rss_bytes_start: u64,
    pub rss_bytes_peak: u64,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub totals: Totals,
    pub calls_placed: u64,
    pub elapsed: Duration,
    pub server: Option<Usage>,
    pub generator: Usage,
    /// Pairs lost to broken connections during the run.
    pub pairs_lost: usize,
}

/// Opens `pairs` connection pairs (and the idle connections), then places calls for
/// `opts.duration` at `opts.calls_per_second` and waits for them to finish.
pub async fn run(
    opts: &LoadOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Outcome, ToolError> {
    let url = opts.url();
    let tag = &opts.scope_id;
    let pairs: Vec<Result<Pair, String>> = futures_util::stream::iter(0..opts.pairs)
        .map(|i| {
            let url = url.clone();
            async move {
                Ok(Pair {
                    caller: Conn::open(&url, &format!("{tag}-a{i}")).await?,
                    callee: Conn::open(&url, &format!("{tag}-b{i}")).await?,
                })
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let (free_tx, mut free) = mpsc::unbounded_channel::<Pair>();
    for p in pairs {
        free_tx
            .send(p.map_err(|e| ToolError(format!("opening the connection pool: {e}")))?)
            .map_err(|_| ToolError("the pool closed".into()))?;
    }
    let mut idle = open_idle(opts, &url).await?;
    let clock = Clock(Instant::now());
    let server = opts.server_pid.map(Sampler::start);
    let generator = Sampler::start(std::process::id());
    let interval = Duration::from_secs_f64(1.0 / opts.calls_per_second.max(0.001));
    let shared = std::sync::Arc::new((opts.clone(), call::Template::new(opts)));
    let mut tasks: JoinSet<Totals> = JoinSet::new();
    let mut totals = Totals::default();
    let (mut placed, mut done) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    loop {
        let scheduled = clock.0 + interval * placed as u32;
        if scheduled.saturating_duration_since(clock.0) >= opts.duration {
            break;
        }
        // Finished calls hand their pair back; collect their results meanwhile.
        tokio::select! {
            biased;
            Some(r) = tasks.join_next() => {
                done += 1;
                totals.merge(r.map_err(|e| ToolError(format!("a call task failed: {e}")))?);
                continue;
            }
            _ = tokio::time::sleep_until(scheduled) => {}
        }
        let pair = loop {
            tokio::select! {
                p = free.recv() => break p,
                Some(r) = tasks.join_next() => {
                    done += 1;
                    totals.merge(r.map_err(|e| ToolError(format!("a call task failed: {e}")))?);
                }
            }
        };
        let Some(pair) = pair else {
            return Err(ToolError("every connection pair broke".into()));
        };
        let (call_opts, free_tx, k) = (shared.clone(), free_tx.clone(), placed);
        tasks.spawn(async move {
            let (opts, template) = &*call_opts;
            let (pair, totals) = call::run_call(pair, k, scheduled, clock, opts, template).await;
            if let Some(p) = pair {
                let _ = free_tx.send(p);
            }
            totals
        });
        placed += 1;
        if last_progress.elapsed() >= Duration::from_millis(200) {
            last_progress = Instant::now();
            progress(Progress {
                elapsed: clock.0.elapsed(),
                planned: opts.duration,
                calls_placed: placed,
                calls_done: done,
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        done += 1;
        totals.merge(r.map_err(|e| ToolError(format!("a call task failed: {e}")))?);
        progress(Progress {
            elapsed: clock.0.elapsed(),
            planned: opts.duration,
            calls_placed: placed,
            calls_done: done,
        });
    }
    let elapsed = clock.0.elapsed();
    let server = match server {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let generator = generator.finish().await;
    drop(free_tx);
    let mut returned = 0;
    while let Ok(p) = free.try_recv() {
        returned += 1;
        p.caller.close().await;
        p.callee.close().await;
    }
    idle.abort_all();
    Ok(Outcome {
        totals,
        calls_placed: placed,
        elapsed,
        server,
        generator,
        pairs_lost: opts.pairs.saturating_sub(returned),
    })
}

/// The idle connections, each subscribed to a private channel of its own and kept reading (so
/// pings are answered) until the run ends.
async fn open_idle(opts: &LoadOptions, url: &str) -> Result<JoinSet<()>, ToolError> {
    let conns: Vec<Result<Conn, String>> = futures_util::stream::iter(0..opts.idle)
        .map(|i| async move {
            let mut c = Conn::open(url, &format!("{}-idle{i}", opts.scope_id)).await?;
            c.subscribe(
                &opts.key,
                &opts.secret,
                &format!("private-load.{}.idle{i}", opts.scope_id),
            )
            .await?;
            Ok(c)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut set = JoinSet::new();
    for c in conns {
        let mut c = c.map_err(|e| ToolError(format!("opening the idle connections: {e}")))?;
        set.spawn(async move { while c.next_frame().await.is_ok() {} });
    }
    Ok(set)
}

/// Samples a process's CPU time and resident memory from `/proc` until finished.
struct Sampler {
    pid: u32,
    began: Instant,
    ticks_start: Option<u64>,
    rss_start: u64,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let rss_start = rss_bytes(pid).unwrap_or(0);
        let watched = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_bytes(pid) {
                    watched.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Sampler {
            pid,
            began: Instant::now(),
            ticks_start: cpu_ticks(pid),
            rss_start,
            peak,
            task,
        }
    }

    async fn finish(self) -> Usage {
        self.task.abort();
        let seconds = self.began.elapsed().as_secs_f64().max(0.001);
        let ticks = match (self.ticks_start, cpu_ticks(self.pid)) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        Usage {
            pid: self.pid,
            cpu_percent: ticks as f64 / clock_ticks_per_second() / seconds * 100.0,
            rss_bytes_start: self.rss_start,
            rss_bytes_peak: self
                .peak
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(self.rss_start),
        }
    }
}

/// User plus system CPU time of `pid`, in clock ticks (fields 14 and 15 of `/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are counted from its `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Linux reports CPU time in USER_HZ ticks, 100 per second on every mainstream configuration.
fn clock_ticks_per_second() -> f64 {
    100.0
}
