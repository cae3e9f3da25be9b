//! `svcnet`: Kubernetes Service networking in one binary.
//!
//! Subcommands: `apiserver` (the control plane) and `up` (a local cluster with defaults).
//! Later subcommands add the proxy, DNS and node agent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use svcnet_apiserver::{ApiServer, Config};
use svcnet_core::allocator::PortRange;
use svcnet_store::{RedbStore, RedbStoreConfig};

mod api_client;

// mimalloc hands memory back to the system after bursts (index rebuilds, big lists) where
// glibc's allocator kept it: svcnet dns at 10,000 Services held 73 MB resident with glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_dns;
mod bench_proxy;
mod dns_cmd;
mod echo;
mod proxy_cmd;
mod signals;

#[derive(Parser)]
#[command(
    name = "svcnet",
    version,
    about = "Kubernetes Service networking, in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kubernetes-compatible API server.
    Apiserver(ApiserverArgs),
    /// Run a local single-node cluster with defaults (data in ./svcnet-data).
    Up(UpArgs),
    /// Run the cluster DNS server.
    Dns(dns_cmd::DnsArgs),
    /// Print the service environment variables a pod in a namespace gets.
    Env(dns_cmd::EnvArgs),
    /// Run the service proxy (kube-proxy) for one node.
    Proxy(proxy_cmd::ProxyArgs),
    /// A TCP and UDP echo server that says who it is and who called (test backend).
    Echo(echo::EchoArgs),
    /// Connect to an address repeatedly and report which backend answered (test client).
    Probe(echo::ProbeArgs),
    /// Measure svcnet against an anchor measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// API create/list throughput and watch fan-out latency, against the bare store.
    Apiserver(bench::ApiserverBench),
    /// The userspace relay against HAProxy in a network-namespace lab (root).
    Proxy(bench_proxy::ProxyBench),
    /// dnsperf against svcnet dns and NSD with the same records.
    Dns(bench_dns::DnsBench),
    /// The load generator `bench proxy` runs inside the lab.
    Client(bench_proxy::BenchClient),
}

#[derive(Args, Clone)]
struct ApiserverArgs {
    /// Address to serve plain HTTP on (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Directory for the embedded store.
    #[arg(long, default_value = "svcnet-data")]
    data_dir: PathBuf,
    /// Service CIDR, or an IPv4 and an IPv6 CIDR separated by a comma for dual stack.
    #[arg(long, default_value = "10.96.0.0/12", value_parser = parse_cidrs)]
    service_cluster_ip_range: ServiceCidrs,
    /// NodePort range, LOW-HIGH.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: PortRange,
    /// Write a kubeconfig pointing at this server to PATH.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Events kept for watch replay before older ones are compacted (410 Expired beyond).
    #[arg(long, default_value_t = 100_000)]
    watch_history: u64,
}

#[derive(Args)]
struct UpArgs {
    /// Address of the API server.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where the cluster keeps its data and kubeconfig.
    #[arg(long, default_value = "svcnet-data")]
    data_dir: PathBuf,
    /// Cluster DNS address (UDP and TCP; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:1053")]
    dns_listen: SocketAddr,
}

/// One CIDR, or one per family for dual stack.
#[derive(Clone, Debug)]
struct ServiceCidrs(Vec<IpNet>);

fn parse_cidrs(s: &str) -> Result<ServiceCidrs, String> {
    let cidrs = s
        .split(',')
        .map(|c| {
            let c = c.trim();
            let net: IpNet = c.parse().map_err(|_| format!("{c:?} is not a CIDR"))?;
            if net.trunc() != net {
                return Err(format!(
                    "{c:?} has host bits set; did you mean {}?",
                    net.trunc()
                ));
            }
            Ok(net)
        })
        .collect::<Result<Vec<_>, _>>()?;
    svcnet_core::service_alloc::ServiceAllocators::new(&cidrs, Config::default().node_port_range)?;
    Ok(ServiceCidrs(cidrs))
}

fn parse_port_range(s: &str) -> Result<PortRange, String> {
    s.parse()
}

fn kubeconfig(server: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: svcnet\n  cluster:\n    server: http://{server}\ncontexts:\n- name: svcnet\n  context:\n    cluster: svcnet\n    user: svcnet\n    namespace: default\ncurrent-context: svcnet\nusers:\n- name: svcnet\n  user: {{}}\n"
    )
}

fn write_kubeconfig(path: &Path, server: SocketAddr) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, kubeconfig(server)).with_context(|| format!("writing {}", path.display()))
}

/// Runs the API server; with `dns` (as `svcnet up` does) also cluster DNS on that address, and
/// prints a banner saying how to use them. Stops cleanly on SIGINT or SIGTERM: DNS first (a
/// client of the API), then the API server (watches end, requests in flight finish), then its
/// controllers, then the store.
async fn run_apiserver(args: ApiserverArgs, dns: Option<SocketAddr>) -> anyhow::Result<()> {
    let shutdown = signals::Shutdown::install()?;
    let banner = dns.is_some();
    if !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "serving plain HTTP without authentication on a non-loopback address");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let db = args.data_dir.join("store.redb");
    let store = RedbStore::open(
        &db,
        RedbStoreConfig {
            history: args.watch_history,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening store {}", db.display()))?;
    let config = Config {
        service_cidrs: args.service_cluster_ip_range.0.clone(),
        node_port_range: args.service_node_port_range,
        advertise: args.listen,
        ..Default::default()
    };
    let server = ApiServer::new(Arc::new(store), config)
        .await
        .map_err(anyhow::Error::msg)?;
    if let Some(path) = &args.write_kubeconfig {
        write_kubeconfig(path, args.listen)?;
    }
    let background = server.spawn_background();
    tracing::info!(listen = %args.listen, data = %args.data_dir.display(), "svcnet apiserver ready");
    let serving = server.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut api = tokio::spawn(async move {
        serving
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
    });
    // `svcnet up` runs cluster DNS next to the API, reading it like any client would.
    let dns = match dns {
        Some(listen) => {
            let client = kube::Client::try_from(kube::Config::new(
                format!("http://{}", args.listen).parse()?,
            ))?;
            let config = svcnet_dns::DnsConfig {
                listen,
                upstreams: dns_cmd::upstreams(&[], listen)?,
                health_listen: None,
                ..Default::default()
            };
            Some(
                svcnet_dns::DnsServer::start(client, config)
                    .await
                    .context("starting DNS")?,
            )
        }
        None => None,
    };
    if banner {
        println!("svcnet is up: API server on http://{}", args.listen);
        if let Some(d) = &dns {
            println!(
                "  cluster DNS on {} (UDP and TCP): dig @{} -p {} kubernetes.default.svc.cluster.local",
                d.udp_addr,
                d.udp_addr.ip(),
                d.udp_addr.port()
            );
        }
        // `svcnet up` always writes one.
        if let Some(kc) = &args.write_kubeconfig {
            println!("  export KUBECONFIG={}", kc.display());
        }
        println!("  kubectl get svc -A");
        println!(
            "Stop with Ctrl-C; data stays in {}.",
            args.data_dir.display()
        );
    }
    let early = shutdown.unless(&mut api).await;
    if let Some(d) = dns {
        d.shutdown().await;
    }
    let served = match early {
        Some(r) => r,
        None => {
            let _ = stop.send(());
            api.await
        }
    };
    background.stop().await;
    server.close().await.context("closing the store")?;
    served.context("API server task")?.context("serving HTTP")?;
    tracing::info!("svcnet stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Apiserver(args) => run_apiserver(args, None).await,
        Command::Bench(BenchCommand::Apiserver(args)) => bench::run(args).await,
        Command::Bench(BenchCommand::Proxy(args)) => bench_proxy::run(args).await,
        Command::Bench(BenchCommand::Dns(args)) => bench_dns::run(args).await,
        Command::Bench(BenchCommand::Client(args)) => bench_proxy::client(args).await,
        Command::Proxy(args) => proxy_cmd::run(args).await,
        Command::Dns(args) => dns_cmd::run(args).await,
        Command::Env(args) => dns_cmd::env(args).await,
        Command::Echo(args) => echo::run(args).await,
        Command::Probe(args) => echo::probe(args).await,
        Command::Up(up) => {
            let dns_listen = up.dns_listen;
            let kubeconfig = up.data_dir.join("kubeconfig");
            let defaults = Config::default();
            let args = ApiserverArgs {
                listen: up.listen,
                data_dir: up.data_dir,
                service_cluster_ip_range: ServiceCidrs(defaults.service_cidrs),
                service_node_port_range: defaults.node_port_range,
                write_kubeconfig: Some(kubeconfig),
                watch_history: RedbStoreConfig::default().history,
            };
            run_apiserver(args, Some(dns_listen)).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("svcnet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
