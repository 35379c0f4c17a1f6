//! Debian's coturn as a TURN relay on loopback for interop tests and benchmarks: REST credentials
//! (`use-auth-secret`, the scheme of [`crate::signing::turn_credential`]), loopback peers
//! allowed, relay addresses on 127.0.0.1 in [`TURN_RELAY_PORTS`]. The process stops when the
//! value is dropped.

use std::process::Command;

/// Relay ports coturn hands out here: far from the ephemeral range Linux uses for `:0`.
pub const TURN_RELAY_PORTS: std::ops::RangeInclusive<u16> = 20000..=20999;

/// A coturn process on 127.0.0.1 with REST credentials (`use-auth-secret`) and loopback peers
/// allowed, relaying on 127.0.0.1 only. Stopped when dropped.
pub struct Coturn {
    child: std::process::Child,
    dir: std::path::PathBuf,
    pub port: u16,
}

/// coturn's server program: `turnserver` on the PATH (Debian's `coturn` package), or
/// `DOMVIA_TURNSERVER`.
fn binary() -> String {
    std::env::var("DOMVIA_TURNSERVER").unwrap_or_else(|_| "turnserver".into())
}

impl Coturn {
    pub fn installed() -> bool {
        Command::new(binary())
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Starts coturn with `secret` and waits until it answers a STUN binding request.
    pub fn start(secret: &str) -> Result<Coturn, crate::error::ToolError> {
        let dir = std::env::temp_dir().join(format!(
            "domvia-coturn-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for _ in 0..5 {
            // A free UDP port, released just before coturn takes it.
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let child = Command::new(binary())
                .args([
                    "-n",
                    "--no-cli",
                    "--listening-ip=127.0.0.1",
                    "--relay-ip=127.0.0.1",
                    "--allow-loopback-peers",
                    "--use-auth-secret",
                    "--realm=domvia.test",
                    "--no-tls",
                    "--no-dtls",
                    "--no-tcp-relay",
                    "--fingerprint",
                    "--simple-log",
                ])
                .arg(format!("--static-auth-secret={secret}"))
                .arg(format!("--listening-port={port}"))
                .arg(format!("--min-port={}", TURN_RELAY_PORTS.start()))
                .arg(format!("--max-port={}", TURN_RELAY_PORTS.end()))
                .arg(format!("--userdb={}", dir.join("turndb").display()))
                .arg(format!("--pidfile={}", dir.join("pid").display()))
                .arg(format!("--log-file={}", dir.join("turn.log").display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", binary()))?;
            let mut coturn = Coturn {
                child,
                dir: dir.clone(),
                port,
            };
            if coturn.answers_stun() {
                return Ok(coturn);
            }
            let _ = coturn.child.kill();
        }
        Err(format!(
            "coturn did not answer STUN on 127.0.0.1; see {}",
            dir.join("turn.log").display()
        )
        .into())
    }

    fn answers_stun(&mut self) -> bool {
        let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        if socket
            .set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .is_err()
        {
            return false;
        }
        // RFC 5389 Binding request: type, zero length, magic cookie, transaction id.
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(b"domvia-ready");
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let _ = socket.send_to(&request, ("127.0.0.1", self.port));
            let mut buf = [0u8; 512];
            if let Ok((n, _)) = socket.recv_from(&mut buf)
                && n >= 20
                && buf[..2] == [0x01, 0x01]
            {
                return true;
            }
        }
        false
    }

    /// `turn:` URL of this server over UDP.
    pub fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
