//! A runtime for webrtc-rs 0.21 whose driver does not sleep on packets it has yet to send.
//!
//! **Why.** On every wake (a packet, an application call or a deadline) the peer connection's
//! driver makes one pass: `poll_writes` (the TURN client's queue, then the core's writes, which on
//! a relayed pair go into the TURN client's queue), `poll_events` (where, among others, DTLS
//! completing starts the SCTP association and SCTP completing sends the data channel's open
//! message), `poll_reads` (where data that came through a TURN relay reaches the core); then it
//! sleeps until the core's next deadline or the next packet. Whatever the events and the relayed
//! reads make the core write waits for the next wake, and on a relayed pair a core write needs one
//! more pass to leave the TURN client. Before ICE connects the 5 ms check timer hides this. After
//! it the next deadline is far (DTLS retransmission 1 s, SCTP 200 ms, ICE keepalive 2 s): through
//! TURN, DTLS came up ~1.7 s and the data channel ~3.5 s after the offer instead of ~25 and ~40 ms;
//! on direct pairs the SCTP start waited for the next audio frame (up to 20 ms). Reproduction:
//! `cargo run --release --example relay_stall`; the patch proposed upstream and the measurements
//! are in `docs/webrtc-rs-driver-passes.md`.
//!
//! **What this does.** It is webrtc-rs's tokio runtime except for `sleep`: after every wake of the
//! driver the next [`FLUSH_PASSES`] sleeps return at once, so the driver makes the passes that
//! carry the new packets out. Idle connections stay idle: a prompt pass that nothing interrupts
//! owes nothing further. Once a connection is up on a direct pair, [`FlushingRuntime::settle`]
//! turns the passes off (the reference peer does so when its data channel opens); on a relayed
//! pair they stay, since there every write needs one.
//!
//! **Invariant.** Sleeps only ever end earlier than asked, never later, and every protocol timer
//! in webrtc-rs compares against its own deadline, so an early `handle_timeout` changes nothing but
//! the flushing. Other sleeps on the same runtime (a data channel's back-pressure backstop, the
//! 100 ms wait in `close`) may also be cut short while passes are owed; both only re-check a
//! condition or stop waiting sooner.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

/// Prompt passes after a wake: an event raised in the waking pass makes the core write in the
/// next, the pass after moves that into the TURN client's queue, and the third sends it. (Measured
/// with the reproduction: 2 passes leave the data channel open at ~420 ms through TURN, 3 at ~40,
/// 4 no better.)
pub const FLUSH_PASSES: u8 = 3;

/// webrtc-rs's tokio runtime with prompt passes after every driver wake (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct FlushingRuntime {
    /// Prompt passes still owed to the driver.
    owed: Arc<AtomicU8>,
    /// Set once prompt passes have nothing left to carry (see [`FlushingRuntime::settle`]).
    settled: Arc<AtomicBool>,
}

impl FlushingRuntime {
    pub fn new() -> FlushingRuntime {
        FlushingRuntime::default()
    }

    /// Stops the prompt passes for good: from now on this is webrtc-rs's tokio runtime. For a
    /// connection that is up on a direct (not TURN-relayed) pair: what is left to send there is
    /// written in the pass that reads or wakes for it, so the passes would only cost CPU (measured:
    /// about 0.4 s of CPU per 20 s of a call with audio for the two peers).
    pub fn settle(&self) {
        self.settled.store(true, Ordering::Release);
    }
}

/// A sleep that owes the driver [`FLUSH_PASSES`] prompt passes when it ends by a wake: by its
/// deadline, or dropped because something else woke the driver first. A prompt pass's own sleep
/// owes nothing when it simply runs out, so idle connections go quiet after their passes.
struct OwingSleep {
    sleep: Pin<Box<dyn Future<Output = ()> + Send + 'static>>,
    owed: Arc<AtomicU8>,
    prompt: bool,
    finished: bool,
}

impl Future for OwingSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.finished = true;
                if !this.prompt {
                    this.owed.store(FLUSH_PASSES, Ordering::Release);
                }
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for OwingSleep {
    fn drop(&mut self) {
        if !self.finished {
            self.owed.store(FLUSH_PASSES, Ordering::Release);
        }
    }
}

impl Runtime for FlushingRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        TokioRuntime.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        TokioRuntime.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        TokioRuntime.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        TokioRuntime.resolve_host(host)
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        if self.settled.load(Ordering::Acquire) {
            return TokioRuntime.sleep(duration);
        }
        let prompt = self
            .owed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        let duration = if prompt { Duration::ZERO } else { duration };
        Box::pin(OwingSleep {
            sleep: TokioRuntime.sleep(duration),
            owed: self.owed.clone(),
            prompt,
            finished: false,
        })
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        TokioRuntime.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        TokioRuntime.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (flushing)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a wake the next FLUSH_PASSES sleeps are prompt, whatever they ask for; after those
    /// the runtime sleeps as asked again.
    #[tokio::test]
    async fn a_wake_owes_exactly_the_flush_passes() {
        let rt = FlushingRuntime::new();
        // A sleep cut short by other work (dropped unfinished) is a wake.
        drop(rt.sleep(Duration::from_secs(3600)));
        for _ in 0..FLUSH_PASSES {
            let started = Instant::now();
            rt.sleep(Duration::from_secs(3600)).await;
            assert!(started.elapsed() < Duration::from_secs(1));
        }
        let long = rt.sleep(Duration::from_secs(3600));
        let waited = tokio::time::timeout(Duration::from_millis(50), long).await;
        assert!(
            waited.is_err(),
            "the sleep after the passes must wait as asked"
        );
    }

    /// Once settled, sleeps are as asked whatever happened before.
    #[tokio::test]
    async fn a_settled_runtime_owes_nothing() {
        let rt = FlushingRuntime::new();
        drop(rt.sleep(Duration::from_secs(3600)));
        rt.settle();
        let long = rt.sleep(Duration::from_secs(3600));
        let waited = tokio::time::timeout(Duration::from_millis(50), long).await;
        assert!(waited.is_err(), "a settled runtime sleeps as asked");
    }

    /// A sleep that runs to its deadline is a wake too (a protocol timer fired).
    #[tokio::test]
    async fn a_deadline_owes_passes_and_idle_passes_owe_nothing() {
        let rt = FlushingRuntime::new();
        rt.sleep(Duration::from_millis(1)).await;
        assert_eq!(rt.owed.load(Ordering::Acquire), FLUSH_PASSES);
        for _ in 0..FLUSH_PASSES {
            rt.sleep(Duration::from_secs(3600)).await;
        }
        assert_eq!(
            rt.owed.load(Ordering::Acquire),
            0,
            "idle passes re-arm nothing"
        );
    }
}
