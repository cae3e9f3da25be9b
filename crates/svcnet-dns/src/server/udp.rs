//! The UDP side of the server: OS threads that read the socket in batches (`recvmmsg`), answer
//! every query of a batch from the index, and send the replies in one call (`sendmmsg`).
//!
//! A tokio task per socket costs a readiness round trip (an `epoll_wait`, a wake-up) whenever
//! the socket runs dry, plus one system call per datagram each way. Under load a batch holds
//! many queries, so the system calls per query fall from two to a fraction; that is how NSD
//! and other fast authoritative servers read UDP, and what lets one core keep up with a
//! loopback load generator (docs/BENCHMARKS.md).
//!
//! The threads block in `recvmmsg` with a receive timeout, so they notice [`UdpWorkers::stop`]
//! within [`STOP_CHECK`] at the latest; `stop` also shuts the socket's read side, which wakes
//! them at once. Queries for names outside the cluster's zones are handed to the tokio runtime
//! (see `forward_udp`); their replies are sent with `MSG_DONTWAIT` so no runtime thread
//! ever blocks on the socket.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, Shutdown, SockaddrStorage, recvmmsg, shutdown};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};

use super::metrics::{Proto, RequestCounters};
use super::{Shared, UDP_MAX_REPLY};
use crate::answer::{Answer, answer, formerr, refused};

/// Datagrams read (and replies sent) per system call at most.
pub(crate) const BATCH: usize = 64;
/// The receive buffer per datagram. A longer query arrives cut (`MSG_TRUNC`) and is answered
/// FORMERR; real queries are under 512 bytes, and EDNS clients stay under 1232.
pub(crate) const SLOT: usize = 4096;
/// How long a thread blocks in `recvmmsg` before it looks at the stop flag again.
pub(crate) const STOP_CHECK: Duration = Duration::from_millis(200);
/// The socket's receive and send buffer sizes, as NSD sets them: with the kernel's default
/// (208 KiB, about 200 queries of skb overhead) a burst arriving while the threads are off the
/// CPU overflows the queue and queries are lost.
pub(crate) const SOCKET_BUFFER: usize = 1 << 20;

/// The threads serving one UDP socket.
pub(crate) struct UdpWorkers {
    socket: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpWorkers {
    /// Starts `count` threads reading `socket` (which they put in blocking mode with a receive
    /// timeout). Must be called inside a tokio runtime: forwarded queries run on it.
    pub(crate) fn start(socket: UdpSocket, shared: Arc<Shared>, count: usize) -> io::Result<Self> {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(STOP_CHECK))?;
        // A send blocked on a full buffer gives up after this too, so stopping never hangs.
        socket.set_write_timeout(Some(STOP_CHECK))?;
        size_buffers(&socket);
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let mut workers = UdpWorkers {
            socket: socket.clone(),
            stop: stop.clone(),
            threads: Vec::new(),
        };
        for i in 0..count.max(1) {
            let worker = Worker {
                socket: socket.clone(),
                shared: shared.clone(),
                runtime: runtime.clone(),
                stop: stop.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || worker.run())?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Tells the threads to stop and wakes them; returns them to be joined.
    pub(crate) fn stop(&mut self) -> Vec<JoinHandle<()>> {
        self.stop.store(true, Ordering::Release);
        // On an unconnected UDP socket this reports ENOTCONN, but it still marks the read side
        // shut and wakes every blocked reader (their recvmmsg returns at once).
        let _ = shutdown(self.socket.as_raw_fd(), Shutdown::Read);
        std::mem::take(&mut self.threads)
    }
}

impl Drop for UdpWorkers {
    fn drop(&mut self) {
        drop(self.stop());
    }
}

struct Worker {
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
}

/// One received datagram of a batch: its length, sender, and whether it was cut short.
#[derive(Clone, Copy)]
struct Received {
    len: usize,
    peer: Option<SocketAddr>,
    truncated: bool,
}

impl Worker {
    fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut buffers = vec![[0u8; SLOT]; BATCH];
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut received: Vec<Received> = Vec::with_capacity(BATCH);
        let mut replies: Vec<(Vec<u8>, SocketAddrAny)> = Vec::with_capacity(BATCH);
        // Which received datagram each reply answers, for the metrics after the send.
        let mut answered: Vec<usize> = Vec::with_capacity(BATCH);
        let mut reader = self.shared.index.reader();
        let mut counters = RequestCounters::default();

        while !self.stop.load(Ordering::Acquire) {
            received.clear();
            {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                    buffers.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                match recvmmsg(
                    fd,
                    &mut headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(batch) => received.extend(batch.map(|m| Received {
                        len: m.bytes,
                        peer: m.address.as_ref().and_then(socket_addr),
                        truncated: m.flags.contains(MsgFlags::MSG_TRUNC),
                    })),
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => {
                        // ICMP errors from earlier sends surface here; anything else (the
                        // socket is gone) must not become a busy loop.
                        tracing::trace!(error = %e, "UDP receive failed");
                        if e != Errno::ECONNREFUSED {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        continue;
                    }
                }
            }
            // Before anything of the batch is used: after `stop` shuts the read side, recvmmsg
            // returns an empty message with no address, and nix then leaves the slot's address
            // from an earlier batch in place.
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            self.shared.metrics.udp_batch(received.len());

            let started = Instant::now();
            let index = reader.get();
            replies.clear();
            answered.clear();
            for (i, r) in received.iter().enumerate() {
                let Some(peer) = r.peer else { continue };
                let query = &buffers[i][..r.len.min(SLOT)];
                let outcome = if r.truncated {
                    formerr(query).map_or(Answer::Drop, Answer::Reply)
                } else {
                    answer(index, query, Some(UDP_MAX_REPLY))
                };
                let reply = match outcome {
                    Answer::Reply(reply) => reply,
                    Answer::Drop => {
                        self.shared.metrics.dropped();
                        continue;
                    }
                    Answer::Forward => match self.forward(query, peer, started) {
                        Some(reply) => reply,
                        None => continue,
                    },
                };
                replies.push((reply, SocketAddrAny::from(peer)));
                answered.push(i);
            }
            send_all(&self.socket, &replies);
            let took = started.elapsed();
            for (&i, (reply, _)) in answered.iter().zip(&replies) {
                let query = &buffers[i][..received[i].len.min(SLOT)];
                counters.replied(&self.shared.metrics, Proto::Udp, query, reply, took);
            }
        }
    }

    /// Hands one query to the runtime to forward; returns the reply to send right away when it
    /// is not forwarded (forwarding off, or too many in flight: REFUSED).
    fn forward(&self, query: &[u8], peer: SocketAddr, started: Instant) -> Option<Vec<u8>> {
        let shared = &self.shared;
        if shared.forwarder.is_none() {
            return refused(query);
        }
        let Ok(permit) = shared.forward_slots.clone().try_acquire_owned() else {
            shared.metrics.forward_refused.inc();
            return refused(query);
        };
        let (shared, socket, query) = (shared.clone(), self.socket.clone(), query.to_vec());
        self.runtime.spawn(async move {
            let _permit = permit;
            let Some(forwarder) = shared.forwarder.as_ref() else {
                return;
            };
            let Some(reply) = forwarder.resolve(&query, Some(UDP_MAX_REPLY)).await else {
                return;
            };
            let peer_any = SocketAddrAny::from(peer);
            if let Err(e) = rustix::net::sendto(&*socket, &reply, SendFlags::DONTWAIT, &peer_any) {
                tracing::trace!(%peer, error = %e, "UDP send failed");
            }
            shared
                .metrics
                .replied(Proto::Udp, &query, &reply, started.elapsed());
        });
        None
    }
}

/// Sends every reply, in as few `sendmmsg` calls as the kernel allows. A reply the kernel
/// refuses (the peer's address is unusable, the buffer is full) is skipped, as a lost datagram.
fn send_all(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddrAny)]) {
    let mut start = 0;
    while start < replies.len() {
        let pending = &replies[start..];
        let iovs: Vec<[IoSlice<'_>; 1]> = pending.iter().map(|(r, _)| [IoSlice::new(r)]).collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = pending
            .iter()
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut messages: Vec<MMsgHdr<'_>> = pending
            .iter()
            .zip(&iovs)
            .zip(controls.iter_mut())
            .map(|(((_, addr), iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
            .collect();
        match sendmmsg(socket, &mut messages, SendFlags::empty()) {
            Ok(0) => start += 1,
            Ok(sent) => start += sent,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::trace!(error = %e, "UDP send failed");
                start += 1;
            }
        }
    }
}

/// Asks for [`SOCKET_BUFFER`]-sized socket buffers: beyond `net.core.[rw]mem_max` when the
/// process may (CAP_NET_ADMIN over the network namespace), else up to that limit. A buffer
/// that is already larger (a big `[rw]mem_default`) is left alone; failing leaves the default.
fn size_buffers(socket: &UdpSocket) {
    use rustix::net::sockopt;
    // The kernel reports twice the size asked for (its bookkeeping share).
    if sockopt::socket_recv_buffer_size(socket).is_ok_and(|now| now < 2 * SOCKET_BUFFER)
        && sockopt::set_socket_recv_buffer_size_force(socket, SOCKET_BUFFER).is_err()
        && let Err(e) = sockopt::set_socket_recv_buffer_size(socket, SOCKET_BUFFER)
    {
        tracing::debug!(error = %e, "cannot size the UDP receive buffer");
    }
    if sockopt::socket_send_buffer_size(socket).is_ok_and(|now| now < 2 * SOCKET_BUFFER)
        && sockopt::set_socket_send_buffer_size_force(socket, SOCKET_BUFFER).is_err()
        && let Err(e) = sockopt::set_socket_send_buffer_size(socket, SOCKET_BUFFER)
    {
        tracing::debug!(error = %e, "cannot size the UDP send buffer");
    }
}

fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel reports twice what was asked; without CAP_NET_ADMIN over the network
    /// namespace the request is capped at `net.core.rmem_max` / `wmem_max`, and a buffer
    /// already larger is never made smaller.
    #[test]
    fn socket_buffers_are_enlarged() {
        use rustix::net::sockopt;
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let limit = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0)
        };
        let recv_before = sockopt::socket_recv_buffer_size(&socket).expect("SO_RCVBUF");
        let send_before = sockopt::socket_send_buffer_size(&socket).expect("SO_SNDBUF");
        size_buffers(&socket);
        let recv = sockopt::socket_recv_buffer_size(&socket).expect("SO_RCVBUF");
        let send = sockopt::socket_send_buffer_size(&socket).expect("SO_SNDBUF");
        let at_least = |max: usize, before: usize| (2 * SOCKET_BUFFER.min(max)).max(before);
        assert!(
            recv >= at_least(limit("rmem_max"), recv_before),
            "receive buffer {recv} (was {recv_before})"
        );
        assert!(
            send >= at_least(limit("wmem_max"), send_before),
            "send buffer {send} (was {send_before})"
        );
    }
}
