//! Headless Chromium driven over the DevTools protocol, as an independent WebRTC and pusher-js
//! peer for interop tests and the conformance runner.
//!
//! The browser starts with fake capture devices (a tone and a test pattern), no permission
//! prompts, 127.0.0.1 among its ICE host candidates and mDNS hiding off, and with the background
//! networking that would try to reach the internet turned off. Pages are opened as targets of one
//! browser; [`Page::eval`] runs an expression (awaiting a promise) and returns its JSON value.
//!
//! Invariants: every command gets exactly one answer or an error when the browser goes away; the
//! browser process and its profile directory are gone once [`Chromium::close`] returned or the
//! value was dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Where Debian installs Chromium; `DOMVIA_CHROMIUM` overrides it.
pub const DEFAULT_BINARY: &str = "/usr/bin/chromium";

/// How long the browser may take to open its DevTools port.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium binary to use, if one is installed.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("DOMVIA_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY));
    path.is_file().then_some(path)
}

type Pending = HashMap<u64, oneshot::Sender<Result<Value, String>>>;

struct Shared {
    pending: Mutex<Pending>,
    /// Console lines and uncaught exceptions per DevTools session.
    console: Mutex<HashMap<String, Vec<String>>>,
}

/// The DevTools connection, shared by the browser and its pages.
struct Connection {
    outgoing: mpsc::UnboundedSender<String>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

/// A running headless Chromium.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    conn: Arc<Connection>,
}

/// One page (tab) of the browser; usable until the browser closes.
pub struct Page {
    conn: Arc<Connection>,
    session: String,
    target: String,
}

fn console_line(params: &Value) -> String {
    let args = params["args"].as_array().map_or(String::new(), |args| {
        args.iter()
            .map(|a| match &a["value"] {
                Value::String(s) => s.clone(),
                Value::Null => a["description"].as_str().unwrap_or("").to_owned(),
                v => v.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    format!("{}: {args}", params["type"].as_str().unwrap_or("log"))
}

impl Chromium {
    /// Starts `binary` headless with a fresh profile and connects to it.
    pub async fn launch(binary: &Path) -> Result<Chromium, crate::error::ToolError> {
        let profile = std::env::temp_dir().join(format!(
            "domvia-chromium-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&profile).map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-domain-reliability",
                "--disable-breakpad",
                "--metrics-recording-only",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                // ICE host candidates on 127.0.0.1, in clear (not behind mDNS names).
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let port_file = profile.join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + LAUNCH_TIMEOUT;
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            if tokio::time::Instant::now() > deadline {
                let _ = std::fs::remove_dir_all(&profile);
                return Err("Chromium did not open its DevTools port within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(&endpoint)
            .await
            .map_err(|e| format!("DevTools connection: {e}"))?;
        let (mut sink, mut stream) = socket.split();
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            console: Mutex::new(HashMap::new()),
        });
        let (outgoing, mut queue) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = queue.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let reader = shared.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = v["id"].as_u64() {
                    if let Some(tx) = reader.pending.lock().await.remove(&id) {
                        let result = match v.get("error") {
                            Some(e) => Err(e.to_string()),
                            None => Ok(v["result"].clone()),
                        };
                        let _ = tx.send(result);
                    }
                    continue;
                }
                let session = v["sessionId"].as_str().unwrap_or_default().to_owned();
                let line = match v["method"].as_str() {
                    Some("Runtime.consoleAPICalled") => console_line(&v["params"]),
                    Some("Runtime.exceptionThrown") => format!(
                        "exception: {}",
                        v["params"]["exceptionDetails"]["exception"]["description"]
                            .as_str()
                            .unwrap_or("?")
                    ),
                    _ => continue,
                };
                reader
                    .console
                    .lock()
                    .await
                    .entry(session)
                    .or_default()
                    .push(line);
            }
            // The browser went away: fail every command still waiting.
            for (_, tx) in reader.pending.lock().await.drain() {
                let _ = tx.send(Err("the browser closed its DevTools connection".into()));
            }
        });
        Ok(Chromium {
            child,
            profile,
            conn: Arc::new(Connection {
                outgoing,
                shared,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// Opens `url` in a new tab and waits until its `load` event.
    pub async fn open(&self, url: &str) -> Result<Page, crate::error::ToolError> {
        let step = Duration::from_secs(10);
        let target = self
            .conn
            .command(
                None,
                "Target.createTarget",
                json!({ "url": "about:blank" }),
                step,
            )
            .await?["targetId"]
            .as_str()
            .ok_or("Target.createTarget gave no targetId")?
            .to_owned();
        let session = self
            .conn
            .command(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
                step,
            )
            .await?["sessionId"]
            .as_str()
            .ok_or("Target.attachToTarget gave no sessionId")?
            .to_owned();
        let page = Page {
            conn: self.conn.clone(),
            session,
            target,
        };
        page.call("Runtime.enable", json!({})).await?;
        page.call("Page.enable", json!({})).await?;
        page.call("Page.navigate", json!({ "url": url })).await?;
        page.wait_for("document.readyState === 'complete'", step)
            .await?;
        Ok(page)
    }

    /// Stops the browser and removes its profile.
    pub async fn close(mut self) {
        let _ = self
            .conn
            .command(None, "Browser.close", json!({}), Duration::from_secs(5))
            .await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Connection {
    async fn command(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        within: Duration,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().await.insert(id, tx);
        self.outgoing
            .send(msg.to_string())
            .map_err(|_| "the DevTools connection is closed".to_owned())?;
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(result)) => result.map_err(|e| format!("{method}: {e}")),
            Ok(Err(_)) => Err(format!("{method}: no answer")),
            Err(_) => {
                self.shared.pending.lock().await.remove(&id);
                Err(format!("{method}: no answer within {within:?}"))
            }
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.conn
            .command(Some(&self.session), method, params, Duration::from_secs(10))
            .await
    }

    /// Evaluates `expression` in the page, awaiting it if it is a promise, and returns its value
    /// as JSON. A thrown error comes back as `Err` with its description.
    pub async fn eval_within(
        &self,
        expression: &str,
        within: Duration,
    ) -> Result<Value, crate::error::ToolError> {
        let result = self
            .conn
            .command(
                Some(&self.session),
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "awaitPromise": true,
                    "returnByValue": true,
                }),
                within,
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("exception");
            return Err(format!("{expression}: {text}").into());
        }
        Ok(result["result"]["value"].clone())
    }

    /// [`Page::eval_within`] with a 10 s limit.
    pub async fn eval(&self, expression: &str) -> Result<Value, crate::error::ToolError> {
        self.eval_within(expression, Duration::from_secs(10)).await
    }

    /// Polls `condition` (a JavaScript expression) until it is true.
    pub async fn wait_for(
        &self,
        condition: &str,
        within: Duration,
    ) -> Result<(), crate::error::ToolError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.eval(condition).await? == Value::Bool(true) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("`{condition}` still false after {within:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the page logged to its console and the exceptions it threw, so far.
    pub async fn console(&self) -> Vec<String> {
        self.conn
            .shared
            .console
            .lock()
            .await
            .get(&self.session)
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of what the page shows now (for failure reports and for looking at the page).
    pub async fn screenshot(&self) -> Result<Vec<u8>, crate::error::ToolError> {
        use base64::Engine;
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|e| format!("screenshot: {e}").into())
    }

    /// Closes the tab.
    pub async fn close(self) {
        let _ = self
            .conn
            .command(
                None,
                "Target.closeTarget",
                json!({ "targetId": self.target }),
                Duration::from_secs(5),
            )
            .await;
    }
}
