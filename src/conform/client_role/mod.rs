//! Client-role conformance: the runner plays everything around a call client under test (the
//! realtime server, through an instrumented proxy in front of the reference server; the trusted
//! server; a scripted remote party running the reference call session) and drives the client
//! through the client-driver contract (`conformance/client-driver.md`), one fresh child process
//! per case.
//!
//! Verdicts rest on the wire: each case judges the frames the client sent, as the proxy recorded
//! them, and uses the driver's reports only for what the app would see (a phase, media up).

mod cases;
pub mod proxy;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::verdict::{Failure, Level, Outcome, Verdict, decide};
use super::wire::TraceEntry;
use super::{CaseResult, Report};
use crate::error::ToolError;
use crate::session::Device;
use crate::stack::{self, RunningStack, StackConfig};
use proxy::{Proxy, Way};

/// The development app's key, which the embedded realtime server serves.
const APP_KEY: &str = "domvia-key";
/// How long a step that should be prompt may take.
const PROMPT: Duration = Duration::from_secs(20);

/// What a client-role run needs.
#[derive(Debug, Clone)]
pub struct ClientRoleOptions {
    /// The driver: program and arguments.
    pub command: Vec<String>,
    /// The client's name in reports.
    pub label: Option<String>,
    /// Only the cases whose id starts with one of these (all when empty).
    pub only: Vec<String>,
    /// Environment variables for the driver (its settings, beside the inherited environment).
    pub env: Vec<(String, String)>,
}

impl ClientRoleOptions {
    /// Whether the case `id` is selected: no `only`, or an id, group or `*` pattern that
    /// matches it, as in the server-role runner.
    pub fn selects(&self, id: &str) -> bool {
        self.only.is_empty()
            || self
                .only
                .iter()
                .any(|p| crate::conform::verdict::pattern_matches(p, id))
    }
}

/// How a case ends early: with its outcome.
type Step<T> = Result<T, Outcome>;

fn failed(message: &str, expected: impl Into<String>, actual: impl Into<String>) -> Outcome {
    Outcome::Failed(Failure {
        message: message.to_owned(),
        expected: expected.into(),
        actual: actual.into(),
    })
}

fn errored(what: impl std::fmt::Display) -> Outcome {
    Outcome::Errored(what.to_string())
}

/// A client under test, started by a case through its driver.
struct Client {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    reports: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: Vec<Value>,
}

impl Client {
    async fn send(&mut self, command: Value) -> Step<()> {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| errored(format!("the driver's stdin: {e}")))?;
        self.stdin
            .flush()
            .await
            .map_err(|e| errored(format!("the driver's stdin: {e}")))
    }

    /// Waits up to `within` for a report whose members include every member of `want`.
    async fn expect(&mut self, want: Value, within: Duration) -> Step<Value> {
        match self.watch(&want, within).await? {
            Some(report) => Ok(report),
            None => Err(failed(
                "the client did not report what the case waits for",
                want.to_string(),
                format!("reports so far: {}", Value::Array(self.seen.clone())),
            )),
        }
    }

    /// The first report within `within` whose members include every member of `want`, or
    /// `None` when none came (for what a client must not report).
    async fn watch(&mut self, want: &Value, within: Duration) -> Step<Option<Value>> {
        let deadline = Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.reports.next_line()).await;
            let report = match line {
                Ok(Ok(Some(line))) => match serde_json::from_str::<Value>(&line) {
                    Ok(v) => v,
                    Err(_) => {
                        return Err(errored(format!(
                            "the driver wrote a line that is not JSON: {line}"
                        )));
                    }
                },
                Ok(_) => return Err(errored("the driver exited")),
                Err(_) => return Ok(None),
            };
            self.seen.push(report.clone());
            let matches = want
                .as_object()
                .is_some_and(|w| w.iter().all(|(k, v)| report.get(k) == Some(v)));
            if matches {
                return Ok(Some(report));
            }
        }
    }
}

/// What the drivers of a case wrote to stderr: `(when, driver index, line)`.
type DriverLog = std::sync::Arc<std::sync::Mutex<Vec<(Instant, usize, String)>>>;

/// What a case works with.
struct Env<'a> {
    stack: &'a RunningStack,
    proxy: &'a Proxy,
    /// The remote parties' way to the realtime server: a proxy of their own, so a case can hold
    /// back one of their events (the ringing race).
    remote_proxy: &'a Proxy,
    command: &'a [String],
    vars: &'a [(String, String)],
    clients: Vec<Client>,
    log: DriverLog,
    /// The embedded trusted server's privacy master key: the runner derives channel keys as
    /// that server does, to read and forge strong-privacy events.
    master_key: &'a [u8],
}

impl Env<'_> {
    /// A device of demo user `user` that talks to the servers directly (the scripted party).
    fn remote(&self, user: &str) -> Step<Device> {
        Device::new(
            &self.remote_proxy.url(APP_KEY),
            &format!("http://{}", self.stack.trusted.addr()),
            &format!("{user}-token"),
            user,
        )
        .map_err(errored)
    }

    /// Starts the client under test as demo user `user`, connected through the proxy; returns
    /// its index once it reported `ready`.
    async fn client(&mut self, user: &str) -> Step<usize> {
        let (program, args) = self
            .command
            .split_first()
            .ok_or_else(|| errored("no driver command"))?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| errored(format!("cannot start the driver {program}: {e}")))?;
        // The driver's log, kept for the report of a case that does not pass.
        if let Some(stderr) = child.stderr.take() {
            let log = self.log.clone();
            let index = self.clients.len();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut l) = log.lock() {
                        l.push((Instant::now(), index, line));
                    }
                }
            });
        }
        let stdin = child.stdin.take().ok_or_else(|| errored("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| errored("no stdout"))?;
        let mut client = Client {
            child,
            stdin,
            reports: tokio::io::BufReader::new(stdout).lines(),
            seen: Vec::new(),
        };
        client
            .send(
                json!({"cmd": "connect", "realtime_url": self.proxy.url(APP_KEY),
                "trusted_url": format!("http://{}", self.stack.trusted.addr()),
                "token": format!("{user}-token"), "user": user}),
            )
            .await?;
        client
            .expect(json!({"event": "ready"}), PROMPT)
            .await
            .map_err(|_| errored("the client did not report ready after connect"))?;
        self.clients.push(client);
        Ok(self.clients.len() - 1)
    }

    fn at(&mut self, i: usize) -> &mut Client {
        &mut self.clients[i]
    }

    /// The client events the client sent so far, parsed: `(time, event name, data)`.
    fn sent_events(&self) -> Vec<(Instant, String, Value)> {
        self.proxy
            .frames()
            .into_iter()
            .filter(|t| t.way == Way::FromClient)
            .filter_map(|t| {
                let frame = t.frame()?;
                if !frame.event.starts_with("client-") {
                    return None;
                }
                let data = frame
                    .data
                    .as_ref()
                    .and_then(|d| d.to_object().ok())
                    .map_or(Value::Null, Value::Object);
                Some((t.at, frame.event, data))
            })
            .collect()
    }
}

/// One client-role case.
pub struct ClientCase {
    pub id: &'static str,
    pub level: Level,
    pub requirements: &'static [&'static str],
    pub title: &'static str,
    run: for<'a> fn(&'a mut Env<'_>) -> futures_util::future::BoxFuture<'a, Step<Option<String>>>,
}

/// Every client-role case, in run order.
pub fn cases() -> Vec<ClientCase> {
    cases::all()
}

/// Starts the embedded servers and the proxy, runs the selected cases against the driver, and
/// reports as the server-role runner does.
pub async fn run(opts: &ClientRoleOptions) -> Result<Report, ToolError> {
    let began = Instant::now();
    let data_dir = std::env::temp_dir().join(format!(
        "domvia-client-role-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let mut cfg = StackConfig::development(
        "127.0.0.1:0".parse().expect("an address"),
        "127.0.0.1:0".parse().expect("an address"),
    );
    cfg.trusted.data_dir = data_dir.clone();
    cfg.trusted.watchdog_interval_ms = 50;
    cfg.realtime.webhook_batch_ms = 10;
    let master_key = cfg.trusted.master_key().map_err(ToolError)?;
    let stack = stack::start(cfg).await?;
    let proxy = Proxy::start(stack.realtime.addr())
        .await
        .map_err(|e| ToolError(format!("the runner's proxy: {e}")))?;
    let remote_proxy = Proxy::start(stack.realtime.addr())
        .await
        .map_err(|e| ToolError(format!("the runner's proxy: {e}")))?;
    let mut results = Vec::new();
    for case in cases().into_iter().filter(|c| opts.selects(c.id)) {
        proxy.reset();
        remote_proxy.reset();
        let case_began = Instant::now();
        let mut env = Env {
            stack: &stack,
            proxy: &proxy,
            remote_proxy: &remote_proxy,
            command: &opts.command,
            vars: &opts.env,
            clients: Vec::new(),
            log: DriverLog::default(),
            master_key: &master_key,
        };
        let outcome =
            match tokio::time::timeout(Duration::from_secs(90), (case.run)(&mut env)).await {
                Ok(Ok(note)) => Outcome::Passed { note },
                Ok(Err(outcome)) => outcome,
                Err(_) => Outcome::Errored("the case took longer than 90 s".into()),
            };
        for mut c in env.clients.drain(..) {
            let _ = c.send(json!({"cmd": "quit"})).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), c.child.wait()).await;
        }
        let log = std::mem::take(&mut *env.log.lock().unwrap_or_else(|e| e.into_inner()));
        results.push(result(&case, &outcome, case_began, &proxy, log));
    }
    stack.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        *summary.entry(r.verdict.name().to_owned()).or_default() += 1;
    }
    Ok(Report {
        tool: format!("domvia-calls {} (client role)", env!("CARGO_PKG_VERSION")),
        label: opts.label.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol_version: crate::limits::PROTOCOL_VERSION,
        seed: 0,
        repeat: 1,
        target: json!({"client": opts.command}),
        duration_ms: began.elapsed().as_millis() as u64,
        summary,
        cases: results,
    })
}

fn result(
    case: &ClientCase,
    outcome: &Outcome,
    began: Instant,
    proxy: &Proxy,
    log: Vec<(Instant, usize, String)>,
) -> CaseResult {
    let verdict = decide(case.level, outcome, false);
    let (note, failure, reason) = match outcome {
        Outcome::Passed { note } => (note.clone(), None, None),
        Outcome::PassedNonStrict { note, deviation } => {
            (note.clone(), Some(deviation.clone()), None)
        }
        Outcome::Failed(f) => (None, Some(f.clone()), None),
        Outcome::Unsupported(r) | Outcome::Errored(r) => (None, None, Some(r.clone())),
    };
    // The wire as the client saw it, and the driver's log beside it, for anything but a pass.
    let trace = if verdict == Verdict::Pass {
        Vec::new()
    } else {
        let at_ms = |t: Instant| t.saturating_duration_since(began).as_millis() as u64;
        let mut trace: Vec<TraceEntry> = proxy
            .frames()
            .into_iter()
            .map(|t| TraceEntry {
                at_ms: at_ms(t.at),
                conn: format!("client#{}", t.conn),
                dir: match t.way {
                    Way::FromClient => "<".into(),
                    Way::ToClient => ">".into(),
                },
                text: t.text,
            })
            .collect();
        trace.extend(log.into_iter().map(|(t, driver, line)| TraceEntry {
            at_ms: at_ms(t),
            conn: format!("driver#{}", driver + 1),
            dir: "!".into(),
            text: line,
        }));
        trace.sort_by_key(|e| e.at_ms);
        trace
    };
    CaseResult {
        id: case.id.to_owned(),
        area: "client".to_owned(),
        level: case.level,
        title: case.title.to_owned(),
        requirements: case.requirements.iter().map(|r| (*r).to_owned()).collect(),
        verdict,
        duration_ms: began.elapsed().as_millis() as u64,
        note,
        failure,
        reason,
        expected_reason: None,
        trace,
    }
}
