//! The `userspace` mode: the proxy itself accepts each connection on a per-service-port
//! socket (nftables redirects the VIP to it), picks a backend with the configured scheduler,
//! retries another backend when a connect fails, and relays bytes both ways. UDP gets
//! per-client sessions with an idle timeout.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::balancer::Balancer;
use crate::model::{Protocol, ProxyState, ServicePortInfo, ServicePortName};
use crate::nft::{self, Vip, VipAction};
use crate::scheduler::SchedulerKind;
use crate::{BoxFuture, Dataplane, Error};

/// kube-proxy's userspace connect timeouts: each failed attempt moves to another backend.
pub const CONNECT_SCHEDULE: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Concurrent UDP sessions per service port.
const MAX_UDP_SESSIONS: usize = 16_384;

/// Relay buffer per direction. tokio's default (8 KiB) costs a syscall pair per 8 KiB; 64 KiB
/// measured 40% faster on a 1 GiB transfer here (docs/BENCHMARKS.md).
const RELAY_BUFFER: usize = 64 * 1024;

/// How a TCP connection's bytes are moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// `copy_bidirectional` with [`RELAY_BUFFER`]-sized buffers.
    Copy,
    /// splice(2) through a pipe, no user-space copy.
    Splice,
}

impl std::str::FromStr for Relay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "copy" => Ok(Relay::Copy),
            "splice" => Ok(Relay::Splice),
            other => Err(format!("unknown relay {other:?}: expected copy or splice")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct UserspaceConfig {
    pub scheduler: SchedulerKind,
    pub relay: Relay,
    /// A UDP session with no traffic for this long is closed.
    pub udp_idle: Duration,
    /// Where the per-port sockets listen (the nftables redirect reaches any local address).
    /// `::` listens for IPv4 too (dual stack), so IPv6 cluster IPs reach the same port.
    pub bind: IpAddr,
}

impl Default for UserspaceConfig {
    fn default() -> Self {
        Self {
            scheduler: SchedulerKind::Rr,
            relay: Relay::Splice,
            udp_idle: Duration::from_millis(250),
            bind: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        }
    }
}

struct PortProxy {
    local_port: u16,
    balancer: Arc<Mutex<Balancer>>,
    accept: JoinHandle<()>,
}

impl Drop for PortProxy {
    fn drop(&mut self) {
        // Closing the listener; relays already running carry on.
        self.accept.abort();
    }
}

pub struct Userspace {
    config: UserspaceConfig,
    ports: HashMap<ServicePortName, PortProxy>,
    seed: u64,
}

impl Userspace {
    pub fn new(config: UserspaceConfig) -> Self {
        Self {
            config,
            ports: HashMap::new(),
            seed: rand::random(),
        }
    }

    async fn open(
        &mut self,
        name: &ServicePortName,
        info: &ServicePortInfo,
    ) -> Result<PortProxy, Error> {
        let vip = info
            .cluster_ips
            .first()
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.seed = self.seed.wrapping_add(1);
        let balancer = Arc::new(Mutex::new(Balancer::new(
            self.config.scheduler,
            self.seed,
            vip,
        )));
        let bind = SocketAddr::new(self.config.bind, 0);
        let (local_port, accept) = match info.protocol {
            Protocol::Tcp => {
                let listener =
                    TcpListener::from_std(bind_socket(bind, socket2::Type::STREAM)?.into())
                        .map_err(Error::Io)?;
                let port = listener.local_addr().map_err(Error::Io)?.port();
                (
                    port,
                    tokio::spawn(accept_tcp(
                        listener,
                        balancer.clone(),
                        name.to_string(),
                        self.config.relay,
                    )),
                )
            }
            Protocol::Udp => {
                let socket = UdpSocket::from_std(bind_socket(bind, socket2::Type::DGRAM)?.into())
                    .map_err(Error::Io)?;
                let port = socket.local_addr().map_err(Error::Io)?.port();
                let idle = self.config.udp_idle;
                (
                    port,
                    tokio::spawn(serve_udp(
                        Arc::new(socket),
                        balancer.clone(),
                        idle,
                        name.to_string(),
                    )),
                )
            }
            Protocol::Sctp => {
                return Err(Error::Unsupported(format!(
                    "{name}: SCTP is not supported in userspace mode"
                )));
            }
        };
        tracing::debug!(service = %name, local_port, "listening");
        Ok(PortProxy {
            local_port,
            balancer,
            accept,
        })
    }
}

impl Dataplane for Userspace {
    fn name(&self) -> &'static str {
        "userspace"
    }

    fn sync<'a>(&'a mut self, state: &'a ProxyState) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.ports
                .retain(|name, _| state.services.contains_key(name));
            let mut rules = Vec::new();
            for (name, info) in &state.services {
                if info.protocol == Protocol::Sctp {
                    tracing::warn!(service = %name, "SCTP is not supported in userspace mode; skipped");
                    continue;
                }
                if !self.ports.contains_key(name) {
                    let p = self.open(name, info).await?;
                    self.ports.insert(name.clone(), p);
                }
                let port = self.ports.get_mut(name).expect("just inserted");
                let backends: Vec<SocketAddr> = info
                    .usable()
                    .into_iter()
                    .map(|e| SocketAddr::new(e.ip, e.port))
                    .collect();
                port.balancer
                    .lock()
                    .expect("balancer lock")
                    .update(&backends, info.affinity);
                let action = if !backends.is_empty() {
                    VipAction::Redirect(port.local_port)
                } else {
                    VipAction::Reject
                };
                for ip in &info.cluster_ips {
                    rules.push((
                        Vip {
                            ip: *ip,
                            port: info.port,
                            protocol: info.protocol,
                        },
                        action.clone(),
                    ));
                }
            }
            rules.sort();
            // Applied on every sync, identical or not: the periodic sync is what repairs a
            // table changed behind the proxy's back.
            nft::apply(&nft::render(&rules)).await.map_err(Error::Nft)
        })
    }

    fn cleanup(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.ports.clear();
            nft::delete_table().await.map_err(Error::Nft)
        })
    }
}

/// A non-blocking socket bound to `addr` (listening, for streams). An IPv6 wildcard also takes
/// IPv4 (`IPV6_V6ONLY` off); where IPv6 is unavailable it falls back to IPv4 only.
fn bind_socket(addr: SocketAddr, ty: socket2::Type) -> Result<socket2::Socket, Error> {
    use socket2::{Domain, Protocol as P, Socket};
    let open = |addr: SocketAddr| -> std::io::Result<Socket> {
        let proto = if ty == socket2::Type::STREAM {
            P::TCP
        } else {
            P::UDP
        };
        let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
        if addr.is_ipv6() {
            s.set_only_v6(false)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        if ty == socket2::Type::STREAM {
            s.listen(1024)?;
        }
        Ok(s)
    };
    match open(addr) {
        Ok(s) => Ok(s),
        Err(e) if addr.is_ipv6() && addr.ip().is_unspecified() => {
            tracing::debug!(error = %e, "no IPv6 here; listening on IPv4 only");
            open(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                addr.port(),
            ))
            .map_err(Error::Io)
        }
        Err(e) => Err(Error::Io(e)),
    }
}

async fn accept_tcp(
    listener: TcpListener,
    balancer: Arc<Mutex<Balancer>>,
    name: String,
    relay: Relay,
) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                tokio::spawn(relay_tcp(
                    client,
                    peer,
                    balancer.clone(),
                    name.clone(),
                    relay,
                ));
            }
            Err(e) => {
                tracing::warn!(service = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Connects to a backend, trying others on failure, then relays until both sides close.
async fn relay_tcp(
    mut client: TcpStream,
    peer: SocketAddr,
    balancer: Arc<Mutex<Balancer>>,
    name: String,
    relay: Relay,
) {
    let mut failed: Vec<SocketAddr> = Vec::new();
    for timeout in CONNECT_SCHEDULE {
        let Some(target) =
            balancer
                .lock()
                .expect("balancer lock")
                .pick(peer.ip(), &failed, Instant::now())
        else {
            break;
        };
        match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Ok(Ok(mut backend)) => {
                let _ = client.set_nodelay(true);
                let _ = backend.set_nodelay(true);
                balancer
                    .lock()
                    .expect("balancer lock")
                    .connection_opened(target);
                let result = match relay {
                    Relay::Copy => tokio::io::copy_bidirectional_with_sizes(
                        &mut client,
                        &mut backend,
                        RELAY_BUFFER,
                        RELAY_BUFFER,
                    )
                    .await
                    .map(|_| ()),
                    Relay::Splice => crate::splice::relay(&client, &backend).await.map(|_| ()),
                };
                balancer
                    .lock()
                    .expect("balancer lock")
                    .connection_closed(target);
                if let Err(e) = result {
                    tracing::trace!(service = %name, %target, error = %e, "relay ended with an error");
                }
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(service = %name, %target, error = %e, "backend refused; trying another")
            }
            Err(_) => {
                tracing::debug!(service = %name, %target, ?timeout, "backend connect timed out; trying another")
            }
        }
        failed.push(target);
        balancer.lock().expect("balancer lock").forget(peer.ip());
    }
    // Nothing to connect to: reset rather than close, so the client sees a refusal.
    tracing::debug!(service = %name, client = %peer, "no backend reachable; resetting");
    // A zero linger makes the close send RST; it never blocks (only a non-zero linger does).
    let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
}

struct UdpSession {
    backend: Arc<UdpSocket>,
    last: Arc<Mutex<Instant>>,
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    balancer: Arc<Mutex<Balancer>>,
    idle: Duration,
    name: String,
) {
    let sessions: Arc<Mutex<HashMap<SocketAddr, UdpSession>>> = Arc::default();
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(service = %name, error = %e, "udp receive failed");
                continue;
            }
        };
        let existing = sessions
            .lock()
            .expect("sessions lock")
            .get(&client)
            .map(|s| (s.backend.clone(), s.last.clone()));
        let (backend, last) = match existing {
            Some(x) => x,
            None if sessions.lock().expect("sessions lock").len() >= MAX_UDP_SESSIONS => {
                // Each session holds a socket and a task; a flood of new sources must not
                // exhaust the process.
                tracing::debug!(service = %name, %client, "too many UDP sessions; dropping");
                continue;
            }
            None => {
                let Some(target) =
                    balancer
                        .lock()
                        .expect("balancer lock")
                        .pick(client.ip(), &[], Instant::now())
                else {
                    continue;
                };
                let bind: SocketAddr = if target.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let Ok(up) = UdpSocket::bind(bind).await else {
                    continue;
                };
                if up.connect(target).await.is_err() {
                    continue;
                }
                let up = Arc::new(up);
                let last = Arc::new(Mutex::new(Instant::now()));
                sessions.lock().expect("sessions lock").insert(
                    client,
                    UdpSession {
                        backend: up.clone(),
                        last: last.clone(),
                    },
                );
                tokio::spawn(udp_replies(
                    socket.clone(),
                    up.clone(),
                    client,
                    last.clone(),
                    idle,
                    sessions.clone(),
                ));
                (up, last)
            }
        };
        *last.lock().expect("last lock") = Instant::now();
        let _ = backend.send(&buf[..n]).await;
    }
}

/// Copies a backend's replies to the client until the session is idle for `idle`.
async fn udp_replies(
    socket: Arc<UdpSocket>,
    backend: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<Mutex<Instant>>,
    idle: Duration,
    sessions: Arc<Mutex<HashMap<SocketAddr, UdpSession>>>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match tokio::time::timeout(idle, backend.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                *last.lock().expect("last lock") = Instant::now();
                let _ = socket.send_to(&buf[..n], client).await;
            }
            Ok(Err(_)) => break,
            Err(_) => {
                if last.lock().expect("last lock").elapsed() >= idle {
                    break;
                }
            }
        }
    }
    sessions.lock().expect("sessions lock").remove(&client);
}
