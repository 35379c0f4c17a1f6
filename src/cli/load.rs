//! `domvia-calls load`: the flags, the reference server it starts when no target is given, the
//! saturation search's driver loop, and the three outputs (text with a progress bar, JSON, HTML).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use domvia_calls::load::stats::{self, Percentiles, Step, Totals};
use domvia_calls::load::{self, LoadOptions, Outcome};
use domvia_calls::signing::Secret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::CliResult;
use super::bench::ChildServer;

#[derive(Debug, clap::Subcommand)]
pub enum LoadAction {
    /// Put several `--report-json` files side by side: one row per implementation, each figure
    /// also as a ratio to the first report's (the baseline, measured in the same run).
    Compare {
        /// Report files; the first is the baseline.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write the comparison as JSON here too.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LoadArgs {
    #[command(subcommand)]
    action: Option<LoadAction>,
    /// WebSocket base URL of the target node (`ws://host:port` or `wss://host:port`). Without it,
    /// a reference realtime server is started as a child process and loaded.
    #[arg(long)]
    target: Option<String>,
    /// The app key (clients connect to `/app/{key}`).
    #[arg(long, visible_alias = "app-key")]
    key: Option<String>,
    /// The app secret: the generator signs its own subscriptions with it.
    #[arg(
        long,
        visible_alias = "app-secret",
        env = "DOMVIA_CONFORM_SECRET",
        hide_env_values = true
    )]
    secret: Option<String>,
    /// A TOML file with the target settings of `conform --config` (`targets`, `key`, `secret`;
    /// other keys are ignored here). Flags win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also trust the CA certificates of this PEM file for `wss://` (a private CA).
    #[arg(long, env = "DOMVIA_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The target's process id, to report its CPU and memory (Linux).
    #[arg(long)]
    pid: Option<u32>,
    /// The implementation's name in the reports.
    #[arg(long)]
    label: Option<String>,
    /// New calls per second, placed open-loop.
    #[arg(long, default_value_t = 20.0)]
    calls_per_second: f64,
    /// Seconds during which calls are placed.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// How long each call is held between setup and hang-up, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    hold_ms: u64,
    /// Each side sends a media-state change this often while held, in milliseconds (0: never).
    #[arg(long, default_value_t = 500)]
    media_state_every_ms: u64,
    /// Size of each offer and answer SDP, in bytes (chunked when over the target's limit).
    #[arg(long, default_value_t = 3000)]
    sdp_bytes: usize,
    /// ICE candidates each side sends.
    #[arg(long, default_value_t = 4)]
    candidates: usize,
    /// The call channels' kind: `presence` (the protocol's default for calls, where the server
    /// adds each sender's verified user_id) or `private`.
    #[arg(long, value_enum, default_value = "presence")]
    channel_kind: ChannelKindArg,
    /// Extra connections that only stay subscribed, for the memory and CPU they cost.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Connection pairs (the most calls in progress at once); by default enough that calls
    /// never wait for a free pair at the rate asked.
    #[arg(long)]
    pairs: Option<usize>,
    /// An expected event later than this fails its call as stalled, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    event_timeout_ms: u64,
    /// Raise the rate step by step (×1.5) until p99 passes --p99-bound-ms or an event is lost,
    /// and report the highest rate that held.
    #[arg(long)]
    find_saturation: bool,
    /// The p99 latency (from the scheduled send) a rate must stay within to hold.
    #[arg(long, default_value_t = 50.0)]
    p99_bound_ms: f64,
    /// Seconds of each step of the saturation search.
    #[arg(long, default_value_t = 5.0)]
    step_duration: f64,
    /// The saturation search stops at this many calls per second.
    #[arg(long, default_value_t = 5000.0)]
    max_rate: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Write a self-contained HTML page with latency-over-time and percentile plots here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ChannelKindArg {
    Presence,
    Private,
}

/// The target settings `load` reads from a `conform --config` file.
#[derive(Debug, Default, Deserialize)]
struct TargetFile {
    #[serde(default)]
    targets: Vec<String>,
    key: Option<String>,
    secret: Option<String>,
}

/// The key and secret of the reference server `load` starts itself.
const OWN_KEY: &str = "load-key";
const OWN_SECRET: &str = "load-secret";

pub fn run(a: LoadArgs) -> CliResult {
    if let Some(LoadAction::Compare { reports, json }) = &a.action {
        return compare(reports, json.as_deref());
    }
    if let Some(ca) = &a.ca_file {
        domvia_calls::net::trust_ca_file(ca).map_err(|e| format!("--ca-file: {e}"))?;
    }
    // NaN is refused along with zero and negatives.
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(a.calls_per_second) || !positive(a.duration) || !positive(a.step_duration) {
        return Err("--calls-per-second, --duration and --step-duration must be above 0".into());
    }
    let file: TargetFile = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => TargetFile::default(),
    };
    let target = a.target.clone().or_else(|| file.targets.first().cloned());
    // Without a target: the reference realtime server as a child process, so its CPU and
    // memory are its own and not the generator's.
    let (own, node, key, secret, pid) = match target {
        Some(t) => {
            let key = a
                .key
                .clone()
                .or(file.key.clone())
                .ok_or("--key is needed with --target (the app key clients connect with)")?;
            let secret = a.secret.clone().or(file.secret.clone()).ok_or(
                "--secret (or DOMVIA_CONFORM_SECRET) is needed with --target: the generator signs its own subscriptions",
            )?;
            (None, t, key, secret, a.pid)
        }
        None => {
            let server = start_reference()?;
            let node = format!("ws://{}", server.addr);
            let pid = server.pid();
            (
                Some(server),
                node,
                OWN_KEY.to_owned(),
                OWN_SECRET.to_owned(),
                Some(pid),
            )
        }
    };
    let label = a.label.clone().unwrap_or_else(|| {
        if own.is_some() {
            "reference (started by load)".into()
        } else {
            node.clone()
        }
    });
    let hold = Duration::from_millis(a.hold_ms);
    let base = LoadOptions {
        node,
        key,
        secret: Secret::new(secret),
        presence: a.channel_kind == ChannelKindArg::Presence,
        scope_id: format!("r{:08x}", rand::random::<u32>()),
        calls_per_second: a.calls_per_second,
        duration: Duration::from_secs_f64(a.duration),
        hold,
        media_state_every: (a.media_state_every_ms > 0)
            .then(|| Duration::from_millis(a.media_state_every_ms)),
        sdp_bytes: a.sdp_bytes,
        candidates: a.candidates,
        idle: a.idle,
        pairs: a
            .pairs
            .unwrap_or_else(|| LoadOptions::pairs_for(a.calls_per_second, hold)),
        event_timeout: Duration::from_millis(a.event_timeout_ms),
        server_pid: pid,
    };
    // One thread: measured here, the multi-threaded runtime spent a third of the generator's CPU
    // on waking its workers, which stole CPU from the server under test on a small machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(async {
        if a.find_saturation {
            saturation_search(&a, base).await
        } else {
            let outcome = measure(&a, &base).await?;
            Ok(json!({ "run": run_json(&base, &outcome) }))
        }
    })?;
    drop(own);
    let result = json!({
        "benchmark": "load",
        "label": label,
        "generator_version": env!("CARGO_PKG_VERSION"),
        "results": result,
    });
    print_summary(&result);
    if let Some(path) = &a.report_json {
        let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &a.html {
        std::fs::write(path, html(&result)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(true)
}

fn start_reference() -> Result<ChildServer, String> {
    let config = format!(
        "[realtime]\nbind = \"127.0.0.1:0\"\n[[realtime.apps]]\nid = \"load\"\nkey = \"{OWN_KEY}\"\n\
         secret = \"{OWN_SECRET}\"\nmax_connections = 100000\nmax_connections_per_address = 100000\n"
    );
    ChildServer::realtime(&config, "load")
}

/// One measured run with a progress bar on a terminal.
async fn measure(a: &LoadArgs, opts: &LoadOptions) -> Result<Outcome, String> {
    let bar = if a.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(opts.duration.as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
                .map_err(|e| e.to_string())?
                .progress_chars("=> "),
        );
        bar
    };
    eprintln!(
        "load: {} calls/s for {:.0} s on {} connection pairs{}",
        opts.calls_per_second,
        opts.duration.as_secs_f64(),
        opts.pairs,
        if opts.idle > 0 {
            format!(" and {} idle connections", opts.idle)
        } else {
            String::new()
        }
    );
    let shown = bar.clone();
    let outcome = load::run(opts, &move |p| {
        shown.set_position((p.elapsed.as_millis() as u64).min(p.planned.as_millis() as u64));
        shown.set_message(format!(
            "{:.1} s · {} calls placed, {} done",
            p.elapsed.as_secs_f64(),
            p.calls_placed,
            p.calls_done
        ));
    })
    .await
    .map_err(String::from)?;
    bar.finish_and_clear();
    Ok(outcome)
}

/// Raises the rate ×1.5 per step until a step does not hold.
async fn saturation_search(a: &LoadArgs, base: LoadOptions) -> Result<Value, String> {
    let mut steps: Vec<Step> = Vec::new();
    let mut runs = Vec::new();
    let mut rate = base.calls_per_second;
    loop {
        let opts = LoadOptions {
            calls_per_second: rate,
            duration: Duration::from_secs_f64(a.step_duration),
            pairs: a
                .pairs
                .unwrap_or_else(|| LoadOptions::pairs_for(rate, base.hold)),
            scope_id: format!("{}s{}", base.scope_id, steps.len()),
            ..base.clone()
        };
        let outcome = measure(a, &opts).await?;
        let run = run_json(&opts, &outcome);
        let all = outcome.totals.all();
        let step = Step {
            calls_per_second: rate,
            events_per_second: all.delivered as f64 / outcome.elapsed.as_secs_f64(),
            p99_ms: all.from_scheduled.percentiles().p99,
            lost: all.lost,
            failed_calls: outcome.totals.calls_failed,
            generator_trusted: run["generator"]["trusted"] == true,
        };
        eprintln!(
            "  {rate:.1} calls/s: {:.0} events/s, p99 {:.2} ms, {} lost, {} calls failed{}",
            step.events_per_second,
            step.p99_ms,
            step.lost,
            step.failed_calls,
            if step.generator_trusted {
                ""
            } else {
                " (the generator was the bottleneck)"
            }
        );
        steps.push(step);
        runs.push(run);
        match stats::next_rate(&steps, a.p99_bound_ms, 1.5, a.max_rate) {
            Some(next) => rate = next,
            None => break,
        }
    }
    let held = stats::saturation(&steps, a.p99_bound_ms);
    let last = steps.last().copied();
    Ok(json!({
        "saturation": {
            "p99_bound_ms": a.p99_bound_ms,
            "highest_rate_held": held,
            "stopped_by": last.map(|s| {
                if !s.generator_trusted { "the generator was the bottleneck" }
                else if s.lost > 0 { "events were lost" }
                else if s.failed_calls > 0 { "calls failed" }
                else if s.p99_ms > a.p99_bound_ms { "p99 passed the bound" }
                else { "--max-rate" }
            }),
            "steps": steps,
        },
        "runs": runs,
    }))
}

fn percentiles_json(p: Percentiles) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

/// One run's results as JSON.
fn run_json(opts: &LoadOptions, o: &Outcome) -> Value {
    let t: &Totals = &o.totals;
    let seconds = o.elapsed.as_secs_f64().max(0.001);
    let mut kinds = serde_json::Map::new();
    for (kind, k) in &t.kinds {
        kinds.insert(
            kind.clone(),
            json!({
                "sent": k.sent,
                "delivered": k.delivered,
                "lost": k.lost,
                "duplicated": k.duplicated,
                "out_of_order": k.out_of_order,
                "latency_ms": percentiles_json(k.from_sent.percentiles()),
                "latency_from_scheduled_ms": percentiles_json(k.from_scheduled.percentiles()),
            }),
        );
    }
    let all = t.all();
    let lag = t.schedule_lag.percentiles();
    let mut why_not = Vec::new();
    if lag.p99 > 20.0 {
        why_not.push(format!(
            "its sends were late: schedule lag p99 {:.1} ms (over 20 ms)",
            lag.p99
        ));
    }
    // The generator runs on one thread: near a full core it is the bottleneck.
    if o.generator.cpu_percent > 85.0 {
        why_not.push(format!(
            "it used {:.0}% of the one core it runs on",
            o.generator.cpu_percent
        ));
    }
    let timeline: Vec<Value> = t
        .per_second
        .iter()
        .map(|(second, s)| {
            let p = s.percentiles();
            json!({"second": second, "events": p.count, "p50_ms": p.p50, "p99_ms": p.p99, "max_ms": p.max})
        })
        .collect();
    json!({
        "plan": {
            "calls_per_second": opts.calls_per_second,
            "duration_s": opts.duration.as_secs_f64(),
            "hold_ms": opts.hold.as_millis() as u64,
            "media_state_every_ms": opts.media_state_every.map(|d| d.as_millis() as u64),
            "channel_kind": if opts.presence { "presence" } else { "private" },
            "sdp_bytes": opts.sdp_bytes,
            "candidates_per_side": opts.candidates,
            "pairs": opts.pairs,
            "idle_connections": opts.idle,
        },
        "elapsed_s": seconds,
        "calls": {
            "placed": o.calls_placed,
            "completed": t.calls_completed,
            "failed": t.calls_failed,
            "failures": t.failures,
            "setup_ms": percentiles_json(t.setup_from_scheduled.percentiles()),
            "setup_from_start_ms": percentiles_json(t.setup_from_start.percentiles()),
        },
        "events": {
            "per_second": all.delivered as f64 / seconds,
            "sent": all.sent,
            "delivered": all.delivered,
            "lost": all.lost,
            "duplicated": all.duplicated,
            "out_of_order": all.out_of_order,
            "rate_refused_4301": t.rate_refused,
            "latency_ms": percentiles_json(all.from_sent.percentiles()),
            "latency_from_scheduled_ms": percentiles_json(all.from_scheduled.percentiles()),
            "by_kind": kinds,
        },
        "server": o.server,
        "generator": {
            "cpu_percent": o.generator.cpu_percent,
            "schedule_lag_ms": percentiles_json(lag),
            "trusted": why_not.is_empty(),
            "why_not": why_not,
        },
        "pairs_lost": o.pairs_lost,
        "timeline": timeline,
    })
}

fn print_summary(result: &Value) {
    let results = &result["results"];
    let runs = runs_of(results);
    println!("load: {}", result["label"].as_str().unwrap_or_default());
    for run in runs {
        let plan = &run["plan"];
        let calls = &run["calls"];
        let ev = &run["events"];
        println!(
            "\n{} calls/s for {} s (hold {} ms, media state every {} ms, {} B SDP): {} calls, {} completed, {} failed",
            plan["calls_per_second"],
            plan["duration_s"],
            plan["hold_ms"],
            plan["media_state_every_ms"],
            plan["sdp_bytes"],
            calls["placed"],
            calls["completed"],
            calls["failed"]
        );
        if calls["failed"].as_u64().unwrap_or(0) > 0 {
            println!("  failures: {}", calls["failures"]);
        }
        println!(
            "  call setup (scheduled start → answer at the caller): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            f(&calls["setup_ms"]["p50"]),
            f(&calls["setup_ms"]["p99"]),
            f(&calls["setup_ms"]["max"])
        );
        println!(
            "  events: {:.0}/s delivered; {} sent, {} lost, {} duplicated, {} out of order, {} refused (4301)",
            f(&ev["per_second"]),
            ev["sent"],
            ev["lost"],
            ev["duplicated"],
            ev["out_of_order"],
            ev["rate_refused_4301"]
        );
        println!(
            "  {:<26} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}   (ms from the scheduled send)",
            "event", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let mut rows: Vec<(String, &Value)> = ev["by_kind"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v)).collect())
            .unwrap_or_default();
        rows.push(("all".into(), ev));
        for (kind, k) in rows {
            let p = &k["latency_from_scheduled_ms"];
            println!(
                "  {:<26} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                kind,
                p["count"],
                f(&p["p50"]),
                f(&p["p90"]),
                f(&p["p99"]),
                f(&p["p999"]),
                f(&p["max"])
            );
        }
        if let Some(s) = run["server"].as_object() {
            println!(
                "  server (pid {}): {:.0}% CPU, RSS {:.1} MiB → peak {:.1} MiB",
                s["pid"],
                f(&s["cpu_percent"]),
                f(&s["rss_bytes_start"]) / 1048576.0,
                f(&s["rss_bytes_peak"]) / 1048576.0
            );
        }
        let g = &run["generator"];
        println!(
            "  generator: {:.0}% CPU, schedule lag p99 {:.2} ms{}",
            f(&g["cpu_percent"]),
            f(&g["schedule_lag_ms"]["p99"]),
            if g["trusted"] == true {
                String::new()
            } else {
                format!(
                    "; TOO BUSY TO TRUST: {}",
                    g["why_not"]
                        .as_array()
                        .map(|w| w
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("; "))
                        .unwrap_or_default()
                )
            }
        );
    }
    if let Some(sat) = results.get("saturation") {
        match sat["highest_rate_held"].as_object() {
            Some(h) => println!(
                "\nsaturation: {:.1} calls/s held ({:.0} events/s, p99 {:.2} ms within {} ms); stopped because {}",
                f(&h["calls_per_second"]),
                f(&h["events_per_second"]),
                f(&h["p99_ms"]),
                sat["p99_bound_ms"],
                sat["stopped_by"].as_str().unwrap_or("?")
            ),
            None => println!(
                "\nsaturation: no rate held; stopped because {}",
                sat["stopped_by"].as_str().unwrap_or("?")
            ),
        }
    }
}

/// The measured runs of a result: the one run, or every step of a saturation search.
fn runs_of(results: &Value) -> Vec<&Value> {
    match results.get("run") {
        Some(r) => vec![r],
        None => results["runs"]
            .as_array()
            .map(|v| v.iter().collect())
            .unwrap_or_default(),
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The HTML page: a summary table, latency over time (p50 and p99 per second) and the
/// percentiles per event kind, drawn as inline SVG so the page needs nothing else.
fn html(result: &Value) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let results = &result["results"];
    let runs = runs_of(results);
    let mut body = format!(
        "<h1>Load: {}</h1><p>domvia-calls {}; latencies in milliseconds, measured from when each event was meant to leave.</p>",
        esc(result["label"].as_str().unwrap_or_default()),
        esc(result["generator_version"].as_str().unwrap_or_default())
    );
    if let Some(sat) = results.get("saturation") {
        body.push_str(&format!(
            "<p class=verdict>Saturation (p99 within {} ms, nothing lost): {}</p>",
            sat["p99_bound_ms"],
            match sat["highest_rate_held"].as_object() {
                Some(h) => format!(
                    "{:.1} calls/s held, {:.0} events/s; the search stopped because {}",
                    f(&h["calls_per_second"]),
                    f(&h["events_per_second"]),
                    esc(sat["stopped_by"].as_str().unwrap_or("?"))
                ),
                None => format!(
                    "no rate held; the search stopped because {}",
                    esc(sat["stopped_by"].as_str().unwrap_or("?"))
                ),
            }
        ));
    }
    for run in runs {
        let plan = &run["plan"];
        let ev = &run["events"];
        let calls = &run["calls"];
        let trusted = run["generator"]["trusted"] == true;
        body.push_str(&format!(
            "<h2>{} calls/s for {} s</h2><table><tr><th>calls</th><td>{} placed, {} completed, {} failed</td></tr>\
             <tr><th>call setup</th><td>p50 {:.1} · p99 {:.1} · max {:.1}</td></tr>\
             <tr><th>events</th><td>{:.0}/s delivered · {} lost · {} duplicated · {} out of order · {} refused (4301)</td></tr>\
             <tr><th>server</th><td>{}</td></tr><tr><th>generator</th><td class={}>{:.0}% CPU · schedule lag p99 {:.2} ms{}</td></tr></table>",
            plan["calls_per_second"], plan["duration_s"], calls["placed"], calls["completed"], calls["failed"],
            f(&calls["setup_ms"]["p50"]), f(&calls["setup_ms"]["p99"]), f(&calls["setup_ms"]["max"]),
            f(&ev["per_second"]), ev["lost"], ev["duplicated"], ev["out_of_order"], ev["rate_refused_4301"],
            match run["server"].as_object() {
                Some(s) => format!("{:.0}% CPU · RSS peak {:.1} MiB", f(&s["cpu_percent"]), f(&s["rss_bytes_peak"]) / 1048576.0),
                None => "not sampled (give --pid)".into(),
            },
            if trusted { "ok" } else { "bad" },
            f(&run["generator"]["cpu_percent"]), f(&run["generator"]["schedule_lag_ms"]["p99"]),
            if trusted { String::new() } else { " · too busy to trust".into() },
        ));
        body.push_str("<h3>Latency over time (per second: p50, p99)</h3>");
        body.push_str(&timeline_svg(&run["timeline"]));
        body.push_str("<h3>Percentiles per event kind</h3>");
        body.push_str(&percentile_svg(&ev["by_kind"]));
    }
    format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>domvia-calls load</title><style>\
         body{{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0}}th,td{{text-align:left;padding:.2em .8em;border-bottom:1px solid #ddd}}\
         .bad{{color:#b00020;font-weight:600}}.verdict{{font-size:1.1em;font-weight:600}}\
         svg{{background:#fafafa;border:1px solid #ddd}}text{{font:12px system-ui,sans-serif;fill:#333}}\
         </style><body>{body}</body></html>\n"
    )
}

fn timeline_svg(timeline: &Value) -> String {
    let points: Vec<(f64, f64, f64)> = timeline
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| (f(&p["second"]), f(&p["p50_ms"]), f(&p["p99_ms"])))
                .collect()
        })
        .unwrap_or_default();
    if points.is_empty() {
        return "<p>No events were delivered.</p>".into();
    }
    let (w, h, pad) = (900.0, 260.0, 45.0);
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.iter().map(|p| p.2).fold(0.1, f64::max) * 1.1;
    let x = |s: f64| pad + s / max_x * (w - 2.0 * pad);
    let y = |ms: f64| h - pad - ms / max_y * (h - 2.0 * pad);
    let line = |pick: fn(&(f64, f64, f64)) -> f64| {
        points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(pick(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "<svg width={w} height={h} role=img aria-label='latency over time'>\
         <line x1={pad} y1={b} x2={r} y2={b} stroke=#999 /><line x1={pad} y1={pad} x2={pad} y2={b} stroke=#999 />\
         <text x={pad} y={t}>{max_y:.1} ms</text><text x={pad} y={bl}>0</text><text x={r} y={bl} text-anchor=end>{max_x:.0} s</text>\
         <polyline fill=none stroke=#1f77b4 stroke-width=2 points='{p50}' /><polyline fill=none stroke=#d62728 stroke-width=2 points='{p99}' />\
         <text x={lx} y={t} style='fill:#1f77b4;font-weight:600'>p50</text><text x={lx2} y={t} style='fill:#d62728;font-weight:600'>p99</text></svg>",
        b = h - pad,
        r = w - pad,
        t = pad - 8.0,
        bl = h - pad + 16.0,
        lx = w - 160.0,
        lx2 = w - 110.0,
        p50 = line(|p| p.1),
        p99 = line(|p| p.2),
    )
}

fn percentile_svg(by_kind: &Value) -> String {
    let rows: Vec<(String, [f64; 4])> = by_kind
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let p = &v["latency_from_scheduled_ms"];
                    (
                        k.clone(),
                        [f(&p["p50"]), f(&p["p90"]), f(&p["p99"]), f(&p["max"])],
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return String::new();
    }
    let (w, row_h, label_w) = (900.0, 26.0, 220.0);
    let h = row_h * rows.len() as f64 + 40.0;
    let max = rows.iter().map(|r| r.1[3]).fold(0.1, f64::max) * 1.05;
    let scale = |ms: f64| ms / max * (w - label_w - 80.0);
    let colours = ["#1f77b4", "#ff7f0e", "#d62728", "#7f7f7f"];
    let mut svg =
        format!("<svg width={w} height={h} role=img aria-label='percentiles per event kind'>");
    for (i, (kind, ps)) in rows.iter().enumerate() {
        let top = 10.0 + i as f64 * row_h;
        svg.push_str(&format!(
            "<text x=4 y={:.1}>{}</text>",
            top + 15.0,
            kind.replace('<', "&lt;")
        ));
        // Widest first, so each shorter bar stays visible on top.
        for j in (0..4).rev() {
            svg.push_str(&format!(
                "<rect x={label_w} y={top:.1} width={:.1} height=18 fill={} />",
                scale(ps[j]).max(1.0),
                colours[j]
            ));
        }
        svg.push_str(&format!(
            "<text x={:.1} y={:.1}>{:.2} ms</text>",
            label_w + scale(ps[3]) + 4.0,
            top + 14.0,
            ps[2]
        ));
    }
    // The legend: one coloured word per bar.
    let mut x = label_w;
    for (name, colour) in ["p50", "p90", "p99", "max"].iter().zip(colours) {
        svg.push_str(&format!(
            "<text x={x:.1} y={:.1} style='fill:{colour};font-weight:600'>{name}</text>",
            h - 8.0
        ));
        x += 40.0;
    }
    svg.push_str(&format!(
        "<text x={x:.1} y={:.1}>(ms; the number is p99)</text></svg>",
        h - 8.0
    ));
    svg
}

/// The figures `compare` puts side by side, read from one report: `(name, value, higher is
/// better)`.
fn headline(report: &Value) -> Vec<(&'static str, Option<f64>, bool)> {
    let results = &report["results"];
    if let Some(sat) = results.get("saturation") {
        let held = &sat["highest_rate_held"];
        return vec![
            (
                "saturation calls/s",
                held["calls_per_second"].as_f64(),
                true,
            ),
            (
                "saturation events/s",
                held["events_per_second"].as_f64(),
                true,
            ),
            ("p99 at saturation ms", held["p99_ms"].as_f64(), false),
        ];
    }
    let run = &results["run"];
    let ev = &run["events"];
    let lat = &ev["latency_from_scheduled_ms"];
    vec![
        ("events/s", ev["per_second"].as_f64(), true),
        ("lost", ev["lost"].as_f64(), false),
        ("latency p50 ms", lat["p50"].as_f64(), false),
        ("latency p99 ms", lat["p99"].as_f64(), false),
        ("latency p99.9 ms", lat["p999"].as_f64(), false),
        (
            "setup p50 ms",
            run["calls"]["setup_ms"]["p50"].as_f64(),
            false,
        ),
        (
            "setup p99 ms",
            run["calls"]["setup_ms"]["p99"].as_f64(),
            false,
        ),
        ("server CPU %", run["server"]["cpu_percent"].as_f64(), false),
        (
            "server RSS peak MiB",
            run["server"]["rss_bytes_peak"]
                .as_f64()
                .map(|b| b / 1048576.0),
            false,
        ),
    ]
}

fn compare(paths: &[PathBuf], out: Option<&std::path::Path>) -> CliResult {
    let mut reports = Vec::new();
    for p in paths {
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        if v["benchmark"] != "load" {
            return Err(format!(
                "{} is not a `load --report-json` file",
                p.display()
            ));
        }
        reports.push(v);
    }
    let base = headline(&reports[0]);
    let mut rows = Vec::new();
    println!(
        "{:<34} {}",
        "",
        reports
            .iter()
            .map(|r| format!("{:>24}", truncate(r["label"].as_str().unwrap_or("?"), 24)))
            .collect::<String>()
    );
    for (i, (name, base_value, _)) in base.iter().enumerate() {
        let mut line = format!("{name:<34}");
        let mut cells = Vec::new();
        for r in &reports {
            let value = headline(r).get(i).and_then(|h| h.1);
            let ratio = match (value, base_value) {
                (Some(v), Some(b)) if *b != 0.0 => Some(v / b),
                _ => None,
            };
            line.push_str(&format!(
                "{:>24}",
                match (value, ratio) {
                    (Some(v), Some(q)) => format!("{v:.2} ({q:.2}×)"),
                    (Some(v), None) => format!("{v:.2}"),
                    _ => "-".into(),
                }
            ));
            cells.push(json!({"label": r["label"], "value": value, "ratio_to_first": ratio}));
        }
        println!("{line}");
        rows.push(json!({"figure": name, "higher_is_better": base[i].2, "values": cells}));
    }
    println!("(ratios are to the first report, {})", reports[0]["label"]);
    if let Some(path) = out {
        let text = serde_json::to_string_pretty(&json!({"comparison": rows}))
            .map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(true)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}
