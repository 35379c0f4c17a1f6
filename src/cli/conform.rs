//! `domvia-calls conform`: flags and configuration into a [`Target`], the run, and the reports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use domvia_calls::conform::embedded::{Embedded, EmbeddedOptions};
use domvia_calls::conform::expected::Expected;
use domvia_calls::conform::verdict::diff_expected;
use domvia_calls::conform::{
    self, Feature, KnownFailing, LevelFilter, RunOptions, SecondPeer, Selection, Target,
    TargetUser, Verdict, report,
};
use domvia_calls::signing::Secret;
use serde::Deserialize;

use super::CliResult;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LevelArg {
    Must,
    Should,
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PeerArg {
    Rust,
    Chromium,
    Aiortc,
}

impl PeerArg {
    fn second_peer(self) -> SecondPeer {
        match self {
            PeerArg::Rust => SecondPeer::Rust,
            PeerArg::Chromium => SecondPeer::Chromium,
            PeerArg::Aiortc => SecondPeer::Aiortc,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ConformAction {
    /// Render several reports (`--report-json` files) side by side as one HTML page:
    /// implementations as columns, cases as rows.
    Matrix {
        /// Report files, one column each, in this order.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Where to write the page.
        #[arg(long, short, default_value = "conformance-matrix.html")]
        output: PathBuf,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConformArgs {
    #[command(subcommand)]
    action: Option<ConformAction>,
    /// Test a call client instead of a server: the command of its driver, which speaks the
    /// client-driver contract (conformance/client-driver.md), e.g. "node driver.js"; `rust` is
    /// the reference client (`domvia-calls drive`), `browser` the demo page's JavaScript client
    /// in headless Chromium (`domvia-calls drive --browser`), `aiortc` the Python peer
    /// (`python3 tests/interop/aiortc/peer.py --driver`). The runner starts the reference servers
    /// behind an instrumented proxy and plays the other party.
    #[arg(long, value_name = "CMD")]
    client: Option<String>,
    /// The implementation's name in the reports and the results matrix.
    #[arg(long)]
    label: Option<String>,
    /// WebSocket base URL of a node of the target (`ws://host:port`); repeat for the nodes of one
    /// cluster. Without it, the reference servers are started in-process and tested.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// The app id (the HTTP API's `/apps/{id}`).
    #[arg(long)]
    app_id: Option<String>,
    /// The app key (clients connect to `/app/{key}`).
    #[arg(long, visible_alias = "app-key")]
    key: Option<String>,
    /// The app secret (lets the runner sign subscriptions and HTTP API requests itself).
    #[arg(
        long,
        visible_alias = "app-secret",
        env = "DOMVIA_CONFORM_SECRET",
        hide_env_values = true
    )]
    secret: Option<String>,
    /// HTTP API base URL (`http://host:port`).
    #[arg(long)]
    http_api: Option<String>,
    /// The trusted server's channel authorization endpoint (`http://host/realtime/auth`).
    #[arg(long)]
    auth_endpoint: Option<String>,
    /// A user of the trusted server as NAME=TOKEN; give three: a caller, a callee in the same
    /// scope, and a user outside it.
    #[arg(long = "user")]
    users: Vec<String>,
    /// The call scope (`TYPE/ID`) the first two users share.
    #[arg(long)]
    scope: Option<String>,
    /// Listen here for the target's webhooks (configure the target to deliver to this address).
    #[arg(long)]
    webhook_listen: Option<SocketAddr>,
    /// Pass every received webhook on to this URL (the deployment's own receiver).
    #[arg(long)]
    webhook_forward: Option<String>,
    /// TURN server URL (`turn:host:port`).
    #[arg(long)]
    turn: Option<String>,
    /// The TURN server's shared secret (coturn `static-auth-secret`), to check credentials.
    #[arg(long, env = "DOMVIA_CONFORM_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,
    /// The callee of the WebRTC cases: the reference Rust peer, headless Chromium running the demo
    /// page with pusher-js, or aiortc (Python).
    #[arg(long, value_enum, default_value = "rust")]
    peer: PeerArg,
    /// pusher-js browser bundle for `--peer chromium` (found in an npm install of the interop
    /// tests by default).
    #[arg(long)]
    pusher_js: Option<PathBuf>,
    /// The features the target offers, comma-separated (default: inferred from the other flags).
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// Client events per second and burst the target enforces, as RATE/BURST.
    #[arg(long)]
    rate_limit: Option<String>,
    /// Largest event data the target accepts, in bytes.
    #[arg(long)]
    max_event_bytes: Option<usize>,
    /// Distinct users one presence channel takes.
    #[arg(long)]
    max_presence_members: Option<usize>,
    /// A TOML file with any of the target settings above (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also trust the CA certificates of this PEM file for `wss://` and `https://` (a private CA).
    #[arg(long, env = "DOMVIA_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Which cases to run by level.
    #[arg(long, value_enum, default_value = "all")]
    level: LevelArg,
    /// Run only cases matching this id, area prefix or `*` pattern (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Skip cases matching this pattern (repeatable).
    #[arg(long)]
    skip: Vec<String>,
    /// Cases expected to fail, one id or pattern per line; they become known_failing, or fixed
    /// (which fails the run) once they pass.
    #[arg(long)]
    known_failing: Option<PathBuf>,
    /// Write the whole report as JSON here (the input of `conform matrix`).
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Write JUnit XML here, for CI systems (one suite per area).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Seed of the hostile-input cases; the same seed sends the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run every case this many times; the worst outcome counts.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Keep the wire trace of every case in the reports, not only of failures.
    #[arg(long)]
    trace: bool,
    /// Skip the preflight (one check of each setting before the cases run, which stops the run
    /// with a message naming a wrong key, secret, address, token or webhook URL).
    #[arg(long)]
    no_preflight: bool,
    /// Keep up to this many bytes of each frame in traces (longer frames end with `…`).
    #[arg(long, default_value_t = domvia_calls::conform::wire::TRACE_TEXT_BYTES)]
    trace_bytes: usize,
    /// Print the cases (id, level, requirements, title) and exit.
    #[arg(long)]
    list: bool,
    /// Compare the verdicts with this expected-results file; any difference fails the run.
    #[arg(long)]
    expected: Option<PathBuf>,
    /// Write the verdicts of this run as an expected-results file.
    #[arg(long)]
    write_expected: Option<PathBuf>,
    /// Test-only: give the embedded realtime server this deliberate defect.
    #[cfg(feature = "defects")]
    #[arg(long, hide = true)]
    defect: Option<String>,
}

/// The target settings a `--config` file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    #[serde(default)]
    targets: Vec<String>,
    app_id: Option<String>,
    key: Option<String>,
    secret: Option<String>,
    http_api: Option<String>,
    auth_endpoint: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, String>,
    scope: Option<String>,
    webhook_listen: Option<SocketAddr>,
    webhook_forward: Option<String>,
    turn: Option<String>,
    turn_secret: Option<String>,
    features: Option<Vec<String>>,
    rate_limit: Option<String>,
    max_event_bytes: Option<usize>,
    max_presence_members: Option<usize>,
    ca_file: Option<PathBuf>,
}

/// The `ca_file` of the `--config` file, if there is one that says so.
fn config_ca_file(a: &ConformArgs) -> Option<PathBuf> {
    let text = std::fs::read_to_string(a.config.as_ref()?).ok()?;
    toml::from_str::<TargetFile>(&text).ok()?.ca_file
}

fn parse_rate(s: &str) -> Result<(u32, u32), String> {
    let (r, b) = s.split_once('/').unwrap_or((s, s));
    match (r.parse(), b.parse()) {
        (Ok(r), Ok(b)) if r > 0 && b > 0 => Ok((r, b)),
        _ => Err(format!(
            "--rate-limit {s:?} is not RATE/BURST with positive integers"
        )),
    }
}

fn build_target(a: &ConformArgs) -> Result<Target, String> {
    let file: TargetFile = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => TargetFile::default(),
    };
    let given = if a.targets.is_empty() {
        file.targets.clone()
    } else {
        a.targets.clone()
    };
    let mut nodes = Vec::with_capacity(given.len());
    let mut key = a.key.clone().or(file.key);
    for g in &given {
        let node = conform::target::normalize_node(g)?;
        if let Some(k) = node.key {
            match &key {
                Some(given_key) if *given_key != k => {
                    return Err(format!(
                        "--target {g:?} names app key {k:?} but --key is {given_key:?}"
                    ));
                }
                _ => key = Some(k),
            }
        }
        nodes.push(node.base);
    }
    let app_id = a
        .app_id
        .clone()
        .or(file.app_id)
        .ok_or("--app-id is required with --target")?;
    let key = key.ok_or("--key is required with --target (or end the target in /app/KEY)")?;
    let mut t = Target::new(nodes, &app_id, &key);
    // An empty value (`DOMVIA_CONFORM_SECRET=` in a script) means "not given", never "the empty
    // secret": it must not hide the config file's.
    let given = |v: &Option<String>, name: &str| match v.as_deref() {
        Some("") => {
            eprintln!("warning: {name} is empty; ignoring it");
            None
        }
        other => other.map(str::to_owned),
    };
    t.secret = given(
        &a.secret,
        "the app secret (--secret or DOMVIA_CONFORM_SECRET)",
    )
    .or(file.secret)
    .map(|s| Secret::new(&s));
    t.http_api = a.http_api.clone().or(file.http_api);
    t.auth_endpoint = a.auth_endpoint.clone().or(file.auth_endpoint);
    let users: Vec<(String, String)> = if a.users.is_empty() {
        file.users.into_iter().collect()
    } else {
        a.users
            .iter()
            .map(|u| {
                u.split_once('=')
                    .map(|(n, t)| (n.to_owned(), t.to_owned()))
                    .ok_or(format!("--user {u:?} is not NAME=TOKEN"))
            })
            .collect::<Result<_, _>>()?
    };
    t.users = users
        .into_iter()
        .map(|(name, token)| TargetUser { name, token })
        .collect();
    t.scope = a.scope.clone().or(file.scope);
    t.webhook_listen = a.webhook_listen.or(file.webhook_listen);
    t.webhook_forward = a.webhook_forward.clone().or(file.webhook_forward);
    t.turn = a.turn.clone().or(file.turn);
    t.turn_secret = a
        .turn_secret
        .clone()
        .or(file.turn_secret)
        .map(|s| Secret::new(&s));
    if let Some(r) = a.rate_limit.clone().or(file.rate_limit) {
        t.rate_limit = parse_rate(&r)?;
        t.limits_source = conform::target::LimitsSource::Configured;
    }
    if let Some(m) = a.max_event_bytes.or(file.max_event_bytes) {
        t.max_event_bytes = m;
        t.limits_source = conform::target::LimitsSource::Configured;
    }
    if let Some(m) = a.max_presence_members.or(file.max_presence_members) {
        t.max_presence_members = m;
    }
    t.features = match a.features.clone().or(file.features) {
        Some(list) => list
            .iter()
            .map(|f| {
                Feature::parse(f.trim()).ok_or_else(|| {
                    format!(
                        "unknown feature {f:?}; known: {}",
                        Feature::ALL.map(Feature::name).join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        None => t.infer_features(),
    };
    Ok(t)
}

/// The client-role cases (`--list --client ...`).
fn list_client_role() -> CliResult {
    for c in conform::client_role::cases() {
        println!(
            "{:<44} {:<6} {:<40} {}",
            c.id,
            c.level.name(),
            c.requirements.join(","),
            c.title
        );
    }
    Ok(true)
}

fn list() -> CliResult {
    for c in conform::cases::all() {
        let needs: Vec<&str> = c.info.needs.iter().map(|f| f.name()).collect();
        println!(
            "{:<44} {:<6} {:<40} {}{}",
            c.info.id,
            c.info.level.name(),
            c.info.requirements.join(","),
            c.info.title,
            if needs.is_empty() {
                String::new()
            } else {
                format!(" [needs {}]", needs.join(", "))
            }
        );
    }
    Ok(true)
}

fn write(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn matrix(reports: &[PathBuf], output: &PathBuf) -> CliResult {
    let runs = reports
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            serde_json::from_str::<conform::Report>(&text)
                .map_err(|e| format!("{} is not a conform --report-json file: {e}", p.display()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    write(output, &conform::matrix::html(&runs))?;
    println!(
        "wrote {} ({} runs: {})",
        output.display(),
        runs.len(),
        runs.iter()
            .map(conform::matrix::column_name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(true)
}

pub fn run(a: ConformArgs) -> CliResult {
    if let Some(ConformAction::Matrix { reports, output }) = &a.action {
        return matrix(reports, output);
    }
    if a.list {
        return if a.client.is_some() {
            list_client_role()
        } else {
            list()
        };
    }
    if let Some(client) = &a.client {
        let report = client_role(&a, client)?;
        return finish(&a, report);
    }
    let opts = RunOptions {
        selection: Selection {
            only: a.only.clone(),
            skip: a.skip.clone(),
            level: match a.level {
                LevelArg::Must => LevelFilter::Must,
                LevelArg::Should => LevelFilter::Should,
                LevelArg::All => LevelFilter::All,
            },
        },
        known_failing: match &a.known_failing {
            Some(p) => KnownFailing::parse(
                &std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            ),
            None => KnownFailing::default(),
        },
        seed: a.seed,
        repeat: a.repeat.max(1),
        trace_all: a.trace,
        trace_text_bytes: a.trace_bytes,
        progress: true,
        // Against a deployment, settings are checked first; the embedded servers are set up
        // right by construction.
        preflight: !a.no_preflight,
        label: a.label.clone(),
    };
    if let Some(ca) = a.ca_file.clone().or_else(|| config_ca_file(&a)) {
        domvia_calls::net::trust_ca_file(&ca).map_err(|e| format!("--ca-file: {e}"))?;
    }
    if conform::selected(&opts.selection).is_empty() {
        return Err(format!(
            "no case matches the selection (--only {:?}, --skip {:?}): each --only or --skip is \
             one id, area or `*` pattern (repeat the flag for more); see --list",
            opts.selection.only, opts.selection.skip
        ));
    }
    let ids: Vec<&str> = conform::cases::all().iter().map(|c| c.info.id).collect();
    for stale in opts.known_failing.unmatched(&ids) {
        eprintln!("warning: known-failing entry {stale:?} matches no case");
    }
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        if a.targets.is_empty() && a.config.is_none() {
            #[allow(unused_mut)]
            let mut options = EmbeddedOptions::default();
            #[cfg(feature = "defects")]
            if let Some(d) = &a.defect {
                options.defect = Some(
                    domvia_calls::realtime::Defect::ALL
                        .into_iter()
                        .find(|x| x.name() == *d)
                        .ok_or_else(|| format!("unknown defect {d:?}"))?,
                );
            }
            if let (Some(url), Some(secret)) = (&a.turn, &a.turn_secret) {
                options.turn = Some((url.clone(), Secret::new(secret)));
            }
            let mut embedded = Embedded::start(options).await?;
            embedded.target.second_peer = a.peer.second_peer();
            embedded.target.pusher_js = a.pusher_js.clone();
            eprintln!(
                "testing the embedded reference servers: realtime {}, trusted {}",
                embedded.target.nodes[0],
                embedded.target.auth_endpoint.as_deref().unwrap_or("-")
            );
            let embedded_opts = RunOptions {
                preflight: false,
                ..opts.clone()
            };
            let report = conform::run(
                embedded.target.clone(),
                &embedded_opts,
                Some(embedded.webhooks.clone()),
            )
            .await
            .map_err(String::from);
            embedded.shutdown().await;
            report
        } else {
            let mut target = build_target(&a)?;
            target.second_peer = a.peer.second_peer();
            target.pusher_js = a.pusher_js.clone();
            if target.nodes.is_empty() {
                return Err("give at least one --target".to_owned());
            }
            eprintln!(
                "testing {} (features: {})",
                target.nodes.join(", "),
                target
                    .features
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            conform::run(target, &opts, None)
                .await
                .map_err(String::from)
        }
    })?;
    finish(&a, report)
}

/// Reports, expected-results comparison and the exit status, for both roles.
fn finish(a: &ConformArgs, report: conform::Report) -> CliResult {
    // The expected file's reasons travel into the reports, so the results matrix can show why.
    let expected = match &a.expected {
        Some(p) => Some(
            Expected::parse(
                &std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            )
            .map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let mut report = report;
    if let Some(e) = &expected {
        for c in &mut report.cases {
            c.expected_reason = e
                .cases
                .get(&c.id)
                .filter(|x| x.verdict == c.verdict)
                .and_then(|x| x.reason.clone());
        }
    }
    print!("{}", report::summary_text(&report));
    if let Some(p) = &a.report_json {
        write(
            p,
            &serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
        )?;
    }
    if let Some(p) = &a.junit {
        write(p, &report::junit(&report)?)?;
    }
    if let Some(p) = &a.html {
        write(p, &report::html(&report))?;
    }
    let verdicts = report.verdicts();
    if let Some(p) = &a.write_expected {
        let previous = std::fs::read_to_string(p)
            .ok()
            .and_then(|t| Expected::parse(&t).ok())
            .unwrap_or_default();
        let updated = previous.updated(&report);
        write(p, &updated.to_json())?;
        let unexplained = updated.unexplained();
        if !unexplained.is_empty() {
            eprintln!(
                "{}: write a reason for {} case(s) marked {}: {}",
                p.display(),
                unexplained.len(),
                conform::expected::UNEXPLAINED,
                unexplained.join(", ")
            );
        }
    }
    let mut ok = !report.failed();
    if let (Some(p), Some(expected)) = (&a.expected, &expected) {
        let changes = diff_expected(&expected.verdicts(), &verdicts);
        for c in &changes {
            eprintln!(
                "expected-results difference: {} was {} and is now {}",
                c.case,
                c.expected.map_or("absent", Verdict::name),
                c.actual.map_or("absent", Verdict::name)
            );
        }
        if changes.is_empty() {
            println!("verdicts match {}", p.display());
            // A run that matches its expected file succeeds even with failing cases: the file
            // says why each one fails, and any change is what this comparison catches.
            ok = true;
        } else {
            ok = false;
        }
    }
    Ok(ok)
}

/// Runs the client-role cases against the driver `client` (`rust`: this binary's `drive`).
fn client_role(a: &ConformArgs, client: &str) -> Result<conform::Report, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    // Kept until the run ends: the aiortc driver runs from this file.
    let mut script = None;
    let command: Vec<String> = match client {
        "aiortc" => {
            let file = domvia_calls::interop::aiortc::ScriptFile::write()?;
            let command = file.driver_command();
            script = Some(file);
            command
        }
        "rust" => vec![exe.to_string_lossy().into_owned(), "drive".to_owned()],
        "browser" => vec![
            exe.to_string_lossy().into_owned(),
            "drive".to_owned(),
            "--browser".to_owned(),
        ],
        _ => client.split_whitespace().map(str::to_owned).collect(),
    };
    if command.is_empty() {
        return Err("--client needs the driver's command".to_owned());
    }
    let opts = conform::client_role::ClientRoleOptions {
        command,
        label: a.label.clone().or_else(|| Some(client.to_owned())),
        only: a.only.clone(),
        env: Vec::new(),
    };
    if !conform::client_role::cases()
        .iter()
        .any(|c| opts.selects(c.id))
    {
        return Err(format!(
            "no client-role case matches --only {:?}: each --only is one id, group (`client.glare`) \
             or `*` pattern (repeat the flag for more); see --list --client rust",
            opts.only
        ));
    }
    let runtime = super::runtime()?;
    eprintln!("testing the client {client:?} through the client-driver contract");
    let report = runtime
        .block_on(conform::client_role::run(&opts))
        .map_err(String::from);
    drop(script);
    report
}
