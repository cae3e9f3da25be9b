//! The cluster DNS server: the IO around [`crate::answer`].
//!
//! [`DnsServer::start`] binds UDP and TCP on one port, starts watches over the API's
//! Services and EndpointSlices (and Pods in [`PodsMode::Verified`]), and serves
//! [`Index::empty_not_synced`] (SERVFAIL for cluster names) until every watch has listed
//! once. After that each burst of changes rebuilds the index from the watches' stores (of
//! compact records, not whole objects) and swaps it in whole; the UDP threads (batches of
//! datagrams per system call, see the `udp` module) and TCP connections read it without locks.
//!
//! Names outside the cluster's zones go to the configured upstreams (see the `forward` module
//! for the transport and cache rules), or get REFUSED when forwarding is off. `/health`,
//! `/ready` and `/metrics` are served over HTTP on [`DnsConfig::health_listen`]. [`run`] is
//! the whole server as one future for the binary.

mod forward;
mod metrics;
mod udp;
mod watch;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use self::forward::Forwarder;
use self::metrics::{DnsMetrics, Proto, RequestCounters};
use self::udp::UdpWorkers;
use self::watch::IndexCell;
use crate::answer::{Answer, answer, refused};
use crate::index::{Index, PodsMode};

/// The largest UDP reply we send (the DNS flag day 2020 size); a client's smaller EDNS
/// payload size, or 512 without EDNS, still applies.
pub const UDP_MAX_REPLY: usize = 1232;
/// A TCP connection with no complete query for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connections served at once; more are closed at accept.
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// Forwarded UDP queries in flight at once; more get REFUSED (CoreDNS's `max_concurrent`).
pub const MAX_CONCURRENT_FORWARDS: usize = 1000;

/// Everything the DNS server is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Where to listen, for UDP and TCP on the same port. Port 0 picks a port free for both.
    pub listen: SocketAddr,
    /// The cluster domain.
    pub zone: String,
    /// The TTL of every answer from the cluster's zones.
    pub ttl: u32,
    pub pods_mode: PodsMode,
    /// Resolvers for names outside the cluster's zones; empty means no forwarding. The caller
    /// must leave out addresses that lead back to this server (a loop): see
    /// [`read_resolv_conf`].
    pub upstreams: Vec<SocketAddr>,
    /// Forward at all; when false (or with no upstreams) other names get REFUSED.
    pub forward: bool,
    /// Where to serve `/health`, `/ready` and `/metrics` over HTTP.
    pub health_listen: Option<SocketAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: (IpAddr::from([0, 0, 0, 0]), 53).into(),
            zone: "cluster.local".into(),
            ttl: 5,
            pods_mode: PodsMode::default(),
            upstreams: Vec::new(),
            forward: true,
            health_listen: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Zone(#[from] crate::Error),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// What the UDP threads, TCP connections, rebuild task and health server share.
struct Shared {
    index: Arc<IndexCell>,
    /// Set at the first index built from synced data.
    ready: AtomicBool,
    metrics: Arc<DnsMetrics>,
    /// `None` when not forwarding.
    forwarder: Option<Forwarder>,
    forward_slots: Arc<Semaphore>,
}

/// A running DNS server: its bound addresses and its tasks, which stop when it is shut down
/// or dropped.
pub struct DnsServer {
    /// Where UDP queries are answered.
    pub udp_addr: SocketAddr,
    /// Where TCP queries are answered (the same port as UDP).
    pub tcp_addr: SocketAddr,
    /// Where `/health`, `/ready` and `/metrics` are served, if anywhere.
    pub health_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    udp: UdpWorkers,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("udp_addr", &self.udp_addr)
            .field("tcp_addr", &self.tcp_addr)
            .field("health_addr", &self.health_addr)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// Runs the DNS server until `shutdown` completes.
///
/// This is the server as a process of its own: on Linux it first opts the process out of
/// transparent huge pages, which at 10,000 Services kept ~10 MB more resident for nothing.
pub async fn run(
    client: kube::Client,
    config: DnsConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    opt_out_of_huge_pages();
    let server = DnsServer::start(client, config).await?;
    tracing::info!(udp = %server.udp_addr, tcp = %server.tcp_addr, health = ?server.health_addr, "DNS server listening");
    shutdown.await;
    server.shutdown().await;
    Ok(())
}

/// Opts the process out of transparent huge pages (Linux; best effort).
///
/// The allocator asks for huge pages on its arenas, so every 2 MiB range that still holds one
/// live block stays resident whole; what the index build and the initial lists free in between
/// is not given back. At 10,000 Services that kept ~10 MB more resident (`svcnet bench dns`:
/// 40-46 MB with huge pages, 31-32 MB without) for no measurable gain in queries per second.
fn opt_out_of_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "cannot opt out of transparent huge pages");
    }
}

impl DnsServer {
    /// Binds the sockets and spawns the server's tasks on the current tokio runtime.
    pub async fn start(client: kube::Client, config: DnsConfig) -> Result<Self, ServerError> {
        let initial = Index::empty_not_synced(&config.zone)?;
        let (udp, tcp) = bind_dns(config.listen).await?;
        let udp_addr = local_addr(&udp, config.listen, "UDP")?;
        let tcp_addr = tcp.local_addr().map_err(|source| ServerError::Bind {
            what: "TCP",
            addr: config.listen,
            source,
        })?;
        let health = match config.health_listen {
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ServerError::Bind {
                            what: "HTTP (health)",
                            addr,
                            source,
                        })?,
                )
            }
            None => None,
        };
        let health_addr = health.as_ref().and_then(|l| l.local_addr().ok());

        let metrics = Arc::new(DnsMetrics::new());
        let forwarder = if config.forward {
            Forwarder::new(config.upstreams.clone(), metrics.clone())
        } else {
            None
        };
        let shared = Arc::new(Shared {
            index: Arc::new(IndexCell::new(initial)),
            ready: AtomicBool::new(false),
            metrics,
            forwarder,
            forward_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_FORWARDS)),
        });

        // One UDP thread per core this process may run on (its CPU affinity).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8));
        let udp = UdpWorkers::start(udp, shared.clone(), threads).map_err(|source| {
            ServerError::Bind {
                what: "UDP (threads)",
                addr: udp_addr,
                source,
            }
        })?;
        let mut tasks = Vec::new();
        let (watches, drivers) = watch::watch(&client, config.pods_mode);
        tasks.extend(drivers.into_iter().map(tokio::spawn));
        tasks.push(tokio::spawn(watch::maintain_index(
            watches,
            shared.clone(),
            config.zone.clone(),
            config.ttl,
            config.pods_mode,
        )));

        tasks.push(tokio::spawn(tcp_acceptor(tcp, shared.clone())));
        if let Some(listener) = health {
            tasks.push(tokio::spawn(serve_health(listener, shared.clone())));
        }

        Ok(DnsServer {
            udp_addr,
            tcp_addr,
            health_addr,
            shared,
            tasks,
            udp,
        })
    }

    /// Whether the index holds synced data (what `/ready` reports).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The index answers come from now.
    pub fn index(&self) -> Arc<Index> {
        self.shared.index.load()
    }

    /// The metrics in the text format `/metrics` serves.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.encode()
    }

    /// Stops every task and UDP thread (open TCP connections are closed) and waits for them
    /// to end, so the port is free again when this returns (unless forwarded queries are still
    /// waiting for an upstream: each holds the socket to send its reply, for at most the
    /// forwarding timeout).
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        let threads = self.udp.stop();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Upstream resolvers from a resolv.conf: each `nameserver` address on port 53, in file order.
/// A missing or unreadable file gives none. Link-local IPv6 addresses with a zone (`%eth0`)
/// are skipped.
///
/// The caller must drop addresses that would route queries back to this server, such as
/// systemd-resolved's `127.0.0.53` on a node whose resolver is the cluster DNS, or the
/// server's own listen address: forwarding to ourselves loops until every try times out.
pub fn read_resolv_conf(path: impl AsRef<Path>) -> Vec<SocketAddr> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_resolv_conf(&text),
        Err(_) => Vec::new(),
    }
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

// === binding ===

/// Binds UDP and TCP on the same address and port; with port 0, retries until a port is free
/// for both.
async fn bind_dns(listen: SocketAddr) -> Result<(std::net::UdpSocket, TcpListener), ServerError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = std::net::UdpSocket::bind(listen).map_err(|source| ServerError::Bind {
            what: "UDP",
            addr: listen,
            source,
        })?;
        let addr = local_addr(&udp, listen, "UDP")?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && attempt < 32 => {
                tracing::debug!(%addr, error = %e, "TCP port taken; trying another");
            }
            Err(source) => {
                return Err(ServerError::Bind {
                    what: "TCP",
                    addr,
                    source,
                });
            }
        }
    }
}

fn local_addr(
    udp: &std::net::UdpSocket,
    listen: SocketAddr,
    what: &'static str,
) -> Result<SocketAddr, ServerError> {
    udp.local_addr().map_err(|source| ServerError::Bind {
        what,
        addr: listen,
        source,
    })
}

// === TCP ===

async fn tcp_acceptor(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TCP connections; closing");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_tcp(stream, &shared).await {
                tracing::trace!(%peer, error = %e, "TCP connection ended");
            }
        });
    }
}

/// Answers length-prefixed queries on one connection, in order, until the client closes it or
/// stays idle for [`TCP_IDLE_TIMEOUT`]. Queries to forward are forwarded before the next is
/// read.
async fn serve_tcp(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = shared.index.reader();
    let mut counters = RequestCounters::default();
    let mut query = Vec::new();
    let mut out = Vec::new();
    loop {
        let len = match timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        query.resize(len, 0);
        match timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut query)).await {
            Ok(result) => result?,
            Err(_) => return Ok(()),
        };
        let started = Instant::now();
        let reply = match answer(reader.get(), &query, None) {
            Answer::Reply(reply) => reply,
            Answer::Drop => {
                shared.metrics.dropped();
                continue;
            }
            Answer::Forward => {
                let reply = match &shared.forwarder {
                    Some(forwarder) => forwarder.resolve(&query, None).await,
                    None => refused(&query),
                };
                match reply {
                    Some(reply) => reply,
                    None => continue,
                }
            }
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            continue;
        };
        out.clear();
        out.extend_from_slice(&reply_len.to_be_bytes());
        out.extend_from_slice(&reply);
        match timeout(TCP_IDLE_TIMEOUT, stream.write_all(&out)).await {
            Ok(result) => result?,
            Err(_) => return Ok(()),
        }
        counters.replied(
            &shared.metrics,
            Proto::Tcp,
            &query,
            &reply,
            started.elapsed(),
        );
    }
}

// === health ===

async fn serve_health(listener: TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "health server failed");
    }
}

async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "OK")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not synced with the API yet",
        )
    }
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let text = "# generated\nsearch default.svc.cluster.local svc.cluster.local\n\
                    nameserver 10.0.0.10\nnameserver   fd00::53 # comment\n\
                    nameserver fe80::1%eth0\n;nameserver 1.1.1.1\nnameserver\n\
                    options ndots:5\nnameserver not-an-ip\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "10.0.0.10:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
        assert!(read_resolv_conf("/nonexistent/resolv.conf").is_empty());
    }

    #[tokio::test]
    async fn binds_udp_and_tcp_on_one_port() {
        let (udp, tcp) = bind_dns("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (u, t) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        assert_eq!(u, t);
        assert_ne!(u.port(), 0);
    }
}
