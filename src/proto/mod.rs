//! The pure protocol core: every decision of the protocol, with no async runtime, no sockets, no
//! clock reads and no random source. Time (milliseconds on the caller's monotonic clock) and
//! randomness (nonces, socket-id entropy) are arguments. `cargo build --no-default-features`
//! builds exactly this folder, and CI checks that its dependency tree has no runtime or socket
//! crate.
//!
//! State machines, each with its driving rule (what to call after each input, and in which order
//! to drain its outputs) documented once on its type:
//! - [`pusher_client::PusherClient`]: one Pusher client connection (pacing, the ping fence,
//!   4301 retries, reconnect backoff, subscription restore);
//! - [`call::CallMachine`]: one device's state of one call;
//! - [`call_endpoint::CallEndpoint`]: a device's end of a call on its channel (receive pipeline,
//!   sealing, candidate batching, reports), around a `CallMachine`;
//! - [`realtime::Hub`]: the realtime server (connections, channels, presence, limits, HTTP API);
//! - [`realtime::webhook_queue::WebhookQueue`]: the realtime server's webhook batching and retry;
//! - [`trusted`]: the trusted server's decisions (authorization, call records, outbox).
//!
//! Wire vocabulary: [`channel`], [`event`] (call events, `seq`, chunking, the sealed form),
//! [`envelope`] (sealing and opening), [`signing`], [`pusher`] (frames, codes, protocol events,
//! webhooks), [`ids`], [`limits`], [`error`].
//!
//! The kit's machine-readable artifacts: [`schema`], [`asyncapi`], [`spec`], [`vectors`],
//! [`compat`] (the breaking-change diff) and [`fuzz_entry`] (the fuzz targets' entry points).

pub mod asyncapi;
pub mod call;
pub mod call_endpoint;
pub mod channel;
pub mod client_defect;
pub mod compat;
pub mod envelope;
pub mod error;
pub mod event;
// Public only for the fuzz crate: entry points, not an API.
#[doc(hidden)]
pub mod fuzz_entry;
pub mod ids;
pub mod limits;
pub mod pusher;
pub mod pusher_client;
pub mod realtime;
pub mod schema;
pub mod signing;
pub mod spec;
pub mod trusted;
pub mod vectors;

#[cfg(test)]
mod purity {
    //! The dependency tree keeps runtimes and sockets out of the core (CI checks it on the
    //! `--no-default-features` build); this keeps out what compiles anyway: clock reads, sleeping,
    //! files, processes and the environment.

    use std::path::Path;

    const FORBIDDEN: [&str; 8] = [
        "Instant::now(",
        "SystemTime::now(",
        "thread::sleep(",
        "std::fs",
        "std::process",
        "std::env::var",
        "std::net::TcpStream",
        "std::net::UdpSocket",
    ];

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_core_reads_no_clock_and_touches_no_file_process_or_socket() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto");
        let mut files = Vec::new();
        sources(&root, &mut files);
        assert!(files.len() > 20, "found the core's sources");
        let mut found = Vec::new();
        for file in files {
            // The core's own tests may use what they like (this one reads files).
            let name = file.to_string_lossy();
            if name.ends_with("tests.rs") || name.ends_with("proto/mod.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for word in FORBIDDEN {
                    if code.contains(word) {
                        let shown = file.strip_prefix(&root).unwrap_or(&file).display();
                        found.push(format!("src/proto/{shown}:{}: {word}", n + 1));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "the pure core reads the world: {found:#?}"
        );
    }
}
