//! `svcnet bench dns`: `dnsperf` against `svcnet dns` and, in the same run, against NSD serving
//! a zone with the same Services' records; QPS, latency and server RSS.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};
use svcnet_apiserver::{ApiServer, Config};
use svcnet_store::{RedbStore, RedbStoreConfig};

#[derive(Args, Clone, Debug)]
pub struct DnsBench {
    /// ClusterIP Services in the cluster (and A records in NSD's zone).
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Seconds per dnsperf run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// dnsperf client threads / outstanding queries.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    #[arg(long, default_value_t = 200)]
    outstanding: usize,
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    // A port free for both UDP and TCP on loopback.
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = u.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn dig_ok(port: u16, name: &str) -> bool {
    Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+time=1",
            "+tries=1",
            name,
            "A",
        ])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())
}

struct Perf {
    qps: f64,
    avg_ms: f64,
    lost: String,
}

fn dnsperf(port: u16, queries: &std::path::Path, args: &DnsBench) -> anyhow::Result<Perf> {
    let out = Command::new("dnsperf")
        .args([
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-d",
            queries.to_str().context("path")?,
            "-l",
            &args.seconds.to_string(),
            "-c",
            &args.clients.to_string(),
            "-T",
            &args.clients.to_string(),
            "-q",
            &args.outstanding.to_string(),
        ])
        .output()
        .context("running dnsperf (apt-get install dnsperf)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(|l| l.trim().to_owned())
            .unwrap_or_default()
    };
    let num = |line: String| {
        line.split_whitespace()
            .find_map(|w| w.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(Perf {
        qps: num(field("Queries per second:")),
        avg_ms: num(field("Average Latency (s):")) * 1e3,
        lost: field("Queries lost:"),
    })
}

pub async fn run(args: DnsBench) -> anyhow::Result<()> {
    for tool in ["dnsperf", "nsd", "dig"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            bail!("{tool} is not installed (apt-get install dnsperf nsd dnsutils)");
        }
    }
    let dir = tempfile::tempdir()?;
    let store = RedbStore::open(&dir.path().join("store.redb"), RedbStoreConfig::default())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = listener.local_addr()?;
    let server = ApiServer::new(
        Arc::new(store),
        Config {
            advertise: api_addr,
            ..Default::default()
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let serving = server.clone();
    tokio::spawn(async move {
        let _ = serving.serve(listener, std::future::pending()).await;
    });
    let client = kube::Client::try_from(kube::Config::new(format!("http://{api_addr}").parse()?))?;
    let api: Api<Service> = Api::namespaced(client, "default");
    futures::stream::iter(0..args.services)
        .map(|i| {
            let api = api.clone();
            async move {
                let svc: Service = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": format!("svc-{i:05}")}, "spec": {"ports": [{"name": "http", "port": 80}]}}))?;
                api.create(&PostParams::default(), &svc).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let services = api.list(&ListParams::default()).await?.items;

    // The same names and addresses as an NSD zone.
    let mut zone = String::from(
        "$TTL 5\n$ORIGIN cluster.local.\n@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5\n@ IN NS ns.dns.cluster.local.\nns.dns IN A 127.0.0.1\n",
    );
    let mut queries = String::new();
    for s in &services {
        let name = s.metadata.name.clone().unwrap_or_default();
        let ip = s
            .spec
            .as_ref()
            .and_then(|p| p.cluster_ip.clone())
            .unwrap_or_default();
        zone.push_str(&format!("{name}.default.svc IN A {ip}\n"));
        queries.push_str(&format!("{name}.default.svc.cluster.local A\n"));
    }
    let zdir = dir.path().join("nsd");
    std::fs::create_dir_all(&zdir)?;
    std::fs::write(zdir.join("cluster.local.zone"), zone)?;
    let qfile = dir.path().join("queries.txt");
    std::fs::write(&qfile, queries)?;
    let last = format!("svc-{:05}.default.svc.cluster.local", args.services - 1);

    // svcnet dns as its own process, so its RSS is its own.
    let svc_port = free_port()?;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let ours = Killed(
        Command::new(&exe)
            .args([
                "dns",
                "--master",
                &format!("http://{api_addr}"),
                "--listen",
                &format!("127.0.0.1:{svc_port}"),
                "--no-forward",
                "--health-listen",
                "",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let nsd_port = free_port()?;
    let conf = zdir.join("nsd.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  ip-address: 127.0.0.1@{nsd_port}\n  port: {nsd_port}\n  username: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  server-count: 2\n  verbosity: 0\n  hide-version: yes\nremote-control:\n  control-enable: no\nzone:\n  name: cluster.local\n  zonefile: cluster.local.zone\n",
            d = zdir.display()
        ),
    )?;
    let nsd = Killed(
        Command::new("nsd")
            .args(["-d", "-c", conf.to_str().context("path")?])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(dig_ok(svc_port, &last) && dig_ok(nsd_port, &last)) {
        if Instant::now() > deadline {
            bail!("servers not answering {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "svcnet bench dns: {} Services; dnsperf -c {} -T {} -q {} -l {} over loopback, random cluster names (A); NSD 4 with server-count 2",
        args.services, args.clients, args.clients, args.outstanding, args.seconds
    );
    let a = dnsperf(svc_port, &qfile, &args)?;
    let a_rss = rss_kib(ours.0.id());
    let b = dnsperf(nsd_port, &qfile, &args)?;
    let nsd_rss: u64 = Command::new("pgrep")
        .args(["-f", &conf.display().to_string()])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .map(rss_kib)
                .sum()
        })
        .unwrap_or(0);
    println!(
        "svcnet dns: {:.0} QPS, avg latency {:.3} ms, RSS {:.1} MB ({})",
        a.qps,
        a.avg_ms,
        a_rss as f64 / 1024.0,
        a.lost
    );
    println!(
        "nsd:        {:.0} QPS, avg latency {:.3} ms, RSS {:.1} MB over all its processes ({})",
        b.qps,
        b.avg_ms,
        nsd_rss as f64 / 1024.0,
        b.lost
    );
    println!(
        "ratio svcnet/nsd: QPS {:.2}x, latency {:.2}x (nsd/svcnet)",
        a.qps / b.qps,
        b.avg_ms / a.avg_ms
    );
    drop(nsd);
    drop(ours);
    Ok(())
}
