//! The aiortc peer (`tests/interop/aiortc/peer.py`, compiled in) as a child process: a Python
//! WebRTC stack with its own Pusher-protocol client, as the other party of a call.
//!
//! The script prints `READY` once it listens for invitations and `RESULT {json}` as its last line;
//! its log goes to standard error and is kept for failure messages.

use crate::error::ToolError;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

/// The peer script, so an installed binary does not need a checkout.
pub const SCRIPT: &str = include_str!("../../tests/interop/aiortc/peer.py");

/// The Python interpreter; `DOMVIA_PYTHON` overrides it.
fn python() -> String {
    std::env::var("DOMVIA_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `Ok` when Python with aiortc and websockets is installed, else what is missing.
pub async fn available() -> Result<(), crate::error::ToolError> {
    let out = Command::new(python())
        .args(["-c", "import aiortc, websockets"])
        .output()
        .await
        .map_err(|e| format!("{} cannot run: {e}", python()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "Python cannot import aiortc and websockets (pip install -r tests/interop/aiortc/requirements.txt): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ).into())
    }
}

/// The arguments of a peer that signs in to the reference servers `stack` as the demo user
/// `user` (token `{user}-token`), followed by `extra` (`--call USER`, `--hang-up`, ...).
pub fn args(stack: &crate::stack::RunningStack, user: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--realtime-url".to_owned(),
        format!("ws://{}/app/domvia-key", stack.realtime.addr()),
        "--trusted-url".to_owned(),
        format!("http://{}", stack.trusted.addr()),
        "--user".to_owned(),
        user.to_owned(),
        "--token".to_owned(),
        format!("{user}-token"),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// The peer script written to a file of its own, removed when the value is dropped; for running
/// the peer as a client under test (`peer.py --driver`).
pub struct ScriptFile(pub PathBuf);

impl ScriptFile {
    pub fn write() -> Result<ScriptFile, crate::error::ToolError> {
        let path = std::env::temp_dir().join(format!(
            "domvia-aiortc-driver-{}-{:016x}.py",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, SCRIPT).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ScriptFile(path))
    }

    /// The command of the client-driver contract: Python, the script, `--driver`.
    pub fn driver_command(&self) -> Vec<String> {
        vec![
            python(),
            self.0.to_string_lossy().into_owned(),
            "--driver".to_owned(),
        ]
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running aiortc peer.
pub struct AiortcPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    log: Arc<Mutex<String>>,
    script: PathBuf,
}

impl AiortcPeer {
    /// Starts the peer with `args` (see `peer.py --help`).
    pub async fn spawn(args: &[String]) -> Result<AiortcPeer, crate::error::ToolError> {
        let script = std::env::temp_dir().join(format!(
            "domvia-aiortc-peer-{}-{:016x}.py",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
        let mut child = Command::new(python())
            .arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the aiortc peer: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .await
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Ok(AiortcPeer {
            child,
            stdin,
            stdout,
            log,
            script,
        })
    }

    /// What the peer logged so far.
    pub async fn log(&self) -> String {
        self.log.lock().await.clone()
    }

    /// Waits for the next line of standard output that starts with `prefix` and returns the rest
    /// of it; lines before it are skipped.
    async fn line_starting(&mut self, prefix: &str, within: Duration) -> Result<String, String> {
        let wait = async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Some(rest.trim().to_owned());
                }
            }
            None
        };
        match tokio::time::timeout(within, wait).await {
            Ok(Some(rest)) => Ok(rest),
            Ok(None) => Err(format!(
                "the aiortc peer exited before printing {prefix}:\n{}",
                self.log().await
            )),
            Err(_) => Err(format!(
                "the aiortc peer printed no {prefix} within {within:?}:\n{}",
                self.log().await
            )),
        }
    }

    /// Waits for the `READY` line: the peer waits for a call.
    pub async fn ready(&mut self, within: Duration) -> Result<(), crate::error::ToolError> {
        Ok(self.line_starting("READY", within).await.map(|_| ())?)
    }

    /// Lets a caller started with `--wait-go` place its call.
    pub async fn go(&mut self) -> Result<(), crate::error::ToolError> {
        let stdin = self.stdin.as_mut().ok_or("stdin is closed")?;
        stdin.write_all(b"go\n").await.map_err(|e| e.to_string())?;
        stdin.flush().await.map_err(|e| ToolError(e.to_string()))
    }

    /// Waits for the `UP` line, printed the moment the peer's media is up.
    pub async fn up(&mut self, within: Duration) -> Result<(), crate::error::ToolError> {
        Ok(self.line_starting("UP", within).await.map(|_| ())?)
    }

    /// Waits for the `MEDIA` line and returns what the peer saw once media was up: `connected`,
    /// `echo`, `inbound_audio_packets`, `selected_pair`, ...
    pub async fn media_up(&mut self, within: Duration) -> Result<Value, crate::error::ToolError> {
        let json = self.line_starting("MEDIA ", within).await?;
        serde_json::from_str(&json)
            .map_err(|e| ToolError(format!("the MEDIA line is not JSON: {e}")))
    }

    /// Waits for the peer to exit and returns its `RESULT` and whether it exited with 0.
    pub async fn finish(
        mut self,
        within: Duration,
    ) -> Result<(Value, bool), crate::error::ToolError> {
        let mut result = None;
        let read = async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                if let Some(json) = line.strip_prefix("RESULT ") {
                    result = serde_json::from_str::<Value>(json).ok();
                }
            }
            self.child.wait().await
        };
        let status = tokio::time::timeout(within, read).await;
        let log = self.log().await;
        let _ = std::fs::remove_file(&self.script);
        match (status, result) {
            (Ok(Ok(status)), Some(result)) => Ok((result, status.success())),
            (Ok(Err(e)), _) => Err(format!("waiting for the aiortc peer: {e}\n{log}").into()),
            (Ok(Ok(_)), None) => Err(format!("the aiortc peer gave no RESULT:\n{log}").into()),
            (Err(_), _) => {
                Err(format!("the aiortc peer did not finish within {within:?}:\n{log}").into())
            }
        }
    }
}

impl Drop for AiortcPeer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.script);
    }
}
