//! `domvia-calls drive --browser`: the demo page's JavaScript client (pusher-js and the browser's
//! `RTCPeerConnection`) behind the client-driver contract (`conformance/client-driver.md`), in
//! headless Chromium. The page itself turns commands into calls and its own events into reports
//! (`window.domvia.command`, `window.domvia.takeReports`); this driver only carries lines between
//! stdin/stdout and the page.
//!
//! `connect` opens the page the trusted server serves (`{trusted_url}/demo/`) with the realtime
//! URL of the command, so the page talks to whatever server the runner put there (its proxy);
//! `quit` closes the browser. Everything else is forwarded as it came.

use std::time::Duration;

use domvia_calls::conform::driver::DriverCommand;
use domvia_calls::interop::chromium::{self, Chromium, Page};
use serde_json::Value;

use super::CliResult;
use super::drive::{command_lines, error, report as line};

/// How often the page's reports are collected.
const POLL: Duration = Duration::from_millis(20);
/// How long the page may take to sign in (load pusher-js, connect, subscribe to the inbox).
const SIGN_IN: Duration = Duration::from_secs(20);

pub fn run() -> CliResult {
    let runtime = super::runtime()?;
    runtime.block_on(drive())
}

/// A query-string value, percent-encoded.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts the browser and signs the page in as `user`.
async fn open_page(
    realtime_url: &str,
    trusted_url: &str,
    token: &str,
    user: &str,
) -> Result<(Chromium, Page), String> {
    let binary = chromium::binary().ok_or_else(|| {
        format!(
            "no Chromium at {} (apt-get install chromium, or set DOMVIA_CHROMIUM)",
            chromium::DEFAULT_BINARY
        )
    })?;
    let browser = Chromium::launch(&binary).await.map_err(|e| e.to_string())?;
    // loopback=1: the page signals only its 127.0.0.1 candidates, as every client under test
    // here does (the runner's peers are on this machine).
    let url = format!(
        "{}/demo/?user={}&token={}&realtime={}&loopback=1",
        trusted_url.trim_end_matches('/'),
        encode(user),
        encode(token),
        encode(realtime_url)
    );
    let page = match browser.open(&url).await {
        Ok(p) => p,
        Err(e) => {
            browser.close().await;
            return Err(format!("cannot open {url}: {e}"));
        }
    };
    let signed_in = page
        .wait_for(
            "!!(window.domvia && (window.domvia.ready || window.domvia.page.errors.length))",
            SIGN_IN,
        )
        .await;
    let errors = page
        .eval("window.domvia ? window.domvia.page.errors : ['the page did not load its script']")
        .await
        .unwrap_or(Value::Null);
    let failed = errors.as_array().is_some_and(|e| !e.is_empty());
    if let Err(e) = signed_in.as_ref()
        && !failed
    {
        browser.close().await;
        return Err(format!("the page did not sign in: {e}"));
    }
    if failed {
        browser.close().await;
        return Err(format!("the page could not sign in: {errors}"));
    }
    Ok((browser, page))
}

/// Forwards the page's new reports to stdout; `false` once the page is gone.
async fn forward_reports(page: &Page) -> bool {
    match page.eval("window.domvia.takeReports()").await {
        Ok(Value::Array(reports)) => {
            for r in reports {
                line(&r);
            }
            true
        }
        Ok(_) => true,
        Err(e) => {
            error("report", format!("the page stopped answering: {e}"));
            false
        }
    }
}

async fn drive() -> CliResult {
    let mut lines = command_lines();
    let mut open: Option<(Chromium, Page)> = None;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            l = lines.recv() => {
                let Some(text) = l else { break };
                let command = match serde_json::from_str::<DriverCommand>(&text) {
                    Ok(c) => c,
                    Err(e) => {
                        error(&text, format!("not a command of the contract: {e}"));
                        continue;
                    }
                };
                match command {
                    DriverCommand::Quit => break,
                    DriverCommand::Connect { realtime_url, trusted_url, token, user } => {
                        if open.is_some() {
                            error("connect", "already connected");
                            continue;
                        }
                        match open_page(&realtime_url, &trusted_url, &token, &user).await {
                            Ok(p) => open = Some(p),
                            Err(e) => error("connect", e),
                        }
                    }
                    other => {
                        let Some((_, page)) = open.as_ref() else {
                            error(&text, "connect first");
                            continue;
                        };
                        // Written anew from the parsed command: only JSON reaches the page.
                        let json = serde_json::to_value(&other).unwrap_or(Value::Null);
                        let name = json["cmd"].as_str().unwrap_or_default().to_owned();
                        // The page answers at once; a command's effects arrive as reports.
                        let expression = format!("window.domvia.command({json})");
                        match page.eval_within(&expression, Duration::from_secs(30)).await {
                            Ok(Value::Null) => {}
                            Ok(Value::String(why)) => error(&name, why),
                            Ok(v) => error(&name, format!("unexpected answer {v}")),
                            Err(e) => error(&name, e),
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if let Some((_, page)) = open.as_ref()
                    && !forward_reports(page).await
                {
                    break;
                }
            }
        }
    }
    if let Some((browser, page)) = open.take() {
        // What happened up to the end still reaches the runner.
        forward_reports(&page).await;
        // A hang-up just before quit leaves through the page's pacer: let it go out.
        let _ = page
            .wait_for(
                "!window.domvia.page.pacer || (!window.domvia.page.pacer.inFlight && !window.domvia.page.pacer.queue.length)",
                Duration::from_secs(3),
            )
            .await;
        browser.close().await;
    }
    Ok(true)
}
