//! Outbound connections of the shells: WebSocket and HTTP clients over plain TCP or TLS.
//!
//! TLS is rustls with the `ring` provider (the one the WebRTC stack already brings). Servers are
//! trusted when their chain ends at a root of the Mozilla set (`webpki-roots`) or at a CA added
//! with [`trust_ca_file`] / [`trust_ca_pem`] (`--ca-file` for a private CA). Roots are only ever
//! added, never removed, so tests that add their own CA can run in parallel in one process.
//!
//! Invariant: every outbound WebSocket and HTTP client of this crate is built here, so a CA added
//! once reaches the reference client, the trusted server's API calls, webhook delivery and the
//! conformance runner alike.

use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Why a CA could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin} holds no PEM certificate")]
    NoCertificate { origin: String },
    #[error("{origin}: {detail}")]
    Invalid { origin: String, detail: String },
}

/// Roots added at run time, and the TLS configuration and HTTP client built from them (rebuilt
/// when a root is added).
struct Trust {
    extra: Vec<CertificateDer<'static>>,
    config: Option<Arc<rustls::ClientConfig>>,
    http: Option<reqwest::Client>,
}

static TRUST: Mutex<Trust> = Mutex::new(Trust {
    extra: Vec::new(),
    config: None,
    http: None,
});

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Trusts the CA certificates of a PEM file (`--ca-file`) for every later connection.
pub fn trust_ca_file(path: &std::path::Path) -> Result<usize, CaError> {
    let pem = std::fs::read(path).map_err(|source| CaError::Read {
        path: path.display().to_string(),
        source,
    })?;
    trust_ca_pem(&pem, &path.display().to_string())
}

/// Trusts the CA certificates in `pem`; `origin` names it in errors. Returns how many were added.
pub fn trust_ca_pem(pem: &[u8], origin: &str) -> Result<usize, CaError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CaError::Invalid {
            origin: origin.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaError::NoCertificate {
            origin: origin.to_owned(),
        });
    }
    // Check they parse as trust anchors before they can break every later connection.
    let mut probe = rustls::RootCertStore::empty();
    for c in &certs {
        probe.add(c.clone()).map_err(|e| CaError::Invalid {
            origin: origin.to_owned(),
            detail: e.to_string(),
        })?;
    }
    let mut trust = TRUST.lock().unwrap_or_else(|p| p.into_inner());
    let n = certs.len();
    trust.extra.extend(certs);
    trust.config = None;
    trust.http = None;
    Ok(n)
}

/// The TLS client configuration every outbound connection uses.
pub fn tls_client_config() -> Arc<rustls::ClientConfig> {
    let mut trust = TRUST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = &trust.config {
        return c.clone();
    }
    // Also the process default, so a client built elsewhere with reqwest's own builder (a test,
    // an embedding app) finds a provider instead of panicking.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in &trust.extra {
        // Checked when added.
        let _ = roots.add(c.clone());
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    trust.config = Some(config.clone());
    config
}

/// The HTTP client every outbound request uses (`http://` and `https://`), sharing one connection
/// pool. Cheap to call: it clones a cached client.
pub fn http_client() -> reqwest::Client {
    {
        let trust = TRUST.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = &trust.http {
            return h.clone();
        }
    }
    let client = http_client_builder()
        .build()
        .expect("an HTTP client with a preconfigured rustls backend builds");
    let mut trust = TRUST.lock().unwrap_or_else(|p| p.into_inner());
    trust.http = Some(client.clone());
    client
}

/// A builder for an HTTP client of its own (a timeout, say) with the same TLS trust.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured((*tls_client_config()).clone())
}

/// A WebSocket connection over TCP (`ws://`) or TLS (`wss://`).
pub type WebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `url` (`ws://` or `wss://`), verifying TLS servers against the trusted
/// roots.
pub async fn connect_websocket(
    url: &str,
) -> Result<WebSocket, tokio_tungstenite::tungstenite::Error> {
    connect_websocket_with(url, None).await
}

/// The WebSocket configuration of the reference client and the load generator: call events are
/// a few KiB, so a 16 KiB read buffer instead of tungstenite's 128 KiB, which it zeroes on every
/// read and which every open connection holds (larger messages are still read, in more reads).
pub fn call_signaling_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// [`connect_websocket`] with a WebSocket configuration of its own (a smaller read buffer for
/// many connections, say: tungstenite zeroes up to `read_buffer_size` bytes on every read).
pub async fn connect_websocket_with(
    url: &str,
    config: Option<tokio_tungstenite::tungstenite::protocol::WebSocketConfig>,
) -> Result<WebSocket, tokio_tungstenite::tungstenite::Error> {
    let connector = tokio_tungstenite::Connector::Rustls(tls_client_config());
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, config, true, Some(connector))
            .await?;
    Ok(ws)
}

/// A byte stream over TCP or TLS, for raw protocol tests below the WebSocket layer.
pub trait RawStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RawStream for T {}

/// Opens a TCP connection to `authority` (`host:port`, `[v6]:port`, or `host` with the scheme's
/// default port), wrapped in TLS when `tls`; what a `ws://` or `wss://` URL's authority names.
pub async fn connect_raw(tls: bool, authority: &str) -> std::io::Result<Box<dyn RawStream>> {
    let (host, port) = split_authority(authority, if tls { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let _ = tcp.set_nodelay(true);
    if !tls {
        return Ok(Box::new(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = tokio_rustls::TlsConnector::from(tls_client_config())
        .connect(name, tcp)
        .await?;
    Ok(Box::new(stream))
}

/// `host` (brackets of an IPv6 literal removed) and port of an authority.
fn split_authority(authority: &str, default_port: u16) -> (String, u16) {
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        return (host.to_owned(), port);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => {
            (host.to_owned(), port.parse().unwrap_or(default_port))
        }
        _ => (authority.to_owned(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split_authority("h:1", 80), ("h".into(), 1));
        assert_eq!(split_authority("h", 443), ("h".into(), 443));
        assert_eq!(split_authority("[::1]:6001", 80), ("::1".into(), 6001));
        assert_eq!(split_authority("[::1]", 443), ("::1".into(), 443));
        assert_eq!(
            split_authority("127.0.0.1:6001", 80),
            ("127.0.0.1".into(), 6001)
        );
    }

    #[test]
    fn a_pem_without_certificates_is_refused_by_name() {
        let e = trust_ca_pem(b"not a pem", "ca.pem").unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
    }
}
