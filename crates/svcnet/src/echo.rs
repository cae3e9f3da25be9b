//! `svcnet echo`: the backend of the end-to-end tests. On TCP it first sends one line,
//! `<name> <client address>`, then echoes what it receives; on UDP it answers each datagram
//! with that line followed by the datagram.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

#[derive(Args, Clone, Debug)]
pub struct EchoArgs {
    /// Address for both the TCP and the UDP socket.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Name to answer with (defaults to $POD_NAME, then the host name).
    #[arg(long)]
    name: Option<String>,
}

fn default_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "echo".into())
}

pub async fn run(args: EchoArgs) -> anyhow::Result<()> {
    let name = args.name.unwrap_or_else(default_name);
    let tcp = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding TCP {}", args.listen))?;
    let udp = UdpSocket::bind(args.listen)
        .await
        .with_context(|| format!("binding UDP {}", args.listen))?;
    tracing::info!(listen = %args.listen, %name, "echo ready");
    let udp_name = name.clone();
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            let mut reply = format!("{udp_name} {peer}\n").into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = udp.send_to(&reply, peer).await;
        }
    });
    loop {
        let (mut conn, peer) = tcp.accept().await.context("accepting")?;
        let line = format!("{name} {peer}\n");
        tokio::spawn(async move {
            if conn.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        if udp_task.is_finished() {
            anyhow::bail!("the UDP side stopped");
        }
    }
}

/// `svcnet probe`: connects to a service address repeatedly and reports, one line per attempt,
/// `ok <backend name> <ms>` or `err <refused|timeout|reset|…> <ms>`. The end-to-end tests use
/// it from inside lab namespaces.
#[derive(Args, Clone, Debug)]
pub struct ProbeArgs {
    /// Address to connect to.
    target: SocketAddr,
    /// Attempts.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Use UDP instead of TCP.
    #[arg(long)]
    udp: bool,
    /// Per-attempt timeout.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Pause between attempts.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    interval: std::time::Duration,
    /// Bind the client to this local port (to look like one client to affinity and hashing).
    #[arg(long)]
    source_port: Option<u16>,
}

async fn probe_once(args: &ProbeArgs) -> Result<String, String> {
    use std::io::ErrorKind;
    let classify = |e: std::io::Error| match e.kind() {
        ErrorKind::ConnectionRefused => "refused".to_owned(),
        ErrorKind::ConnectionReset => "reset".to_owned(),
        ErrorKind::TimedOut => "timeout".to_owned(),
        ErrorKind::UnexpectedEof => "eof".to_owned(),
        _ => format!("io:{}", e.kind()),
    };
    if args.udp {
        let bind: SocketAddr = if args.target.is_ipv4() {
            ([0, 0, 0, 0], args.source_port.unwrap_or(0)).into()
        } else {
            (
                std::net::Ipv6Addr::UNSPECIFIED,
                args.source_port.unwrap_or(0),
            )
                .into()
        };
        let sock = UdpSocket::bind(bind).await.map_err(classify)?;
        sock.connect(args.target).await.map_err(classify)?;
        sock.send(b"probe").await.map_err(classify)?;
        let mut buf = vec![0u8; 2048];
        let n = sock.recv(&mut buf).await.map_err(classify)?;
        let text = String::from_utf8_lossy(&buf[..n]);
        return Ok(text.split_whitespace().next().unwrap_or("").to_owned());
    }
    let socket = if args.target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(classify)?;
    if let Some(p) = args.source_port {
        let _ = socket.set_reuseaddr(true);
        let local: SocketAddr = if args.target.is_ipv4() {
            ([0, 0, 0, 0], p).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, p).into()
        };
        socket.bind(local).map_err(classify)?;
    }
    let mut conn = socket.connect(args.target).await.map_err(classify)?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = conn.read(&mut byte).await.map_err(classify)?;
        if n == 0 {
            return Err("eof".into());
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&line);
    Ok(text.split_whitespace().next().unwrap_or("").to_owned())
}

pub async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    for i in 0..args.count {
        let start = std::time::Instant::now();
        let result = tokio::time::timeout(args.timeout, probe_once(&args)).await;
        let ms = start.elapsed().as_millis();
        match result {
            Ok(Ok(name)) => println!("ok {name} {ms}"),
            Ok(Err(kind)) => println!("err {kind} {ms}"),
            Err(_) => println!("err timeout {ms}"),
        }
        if i + 1 < args.count && !args.interval.is_zero() {
            tokio::time::sleep(args.interval).await;
        }
    }
    Ok(())
}
