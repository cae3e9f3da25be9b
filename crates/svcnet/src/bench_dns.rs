//! `svcnet bench dns`: `dnsperf` against `svcnet dns` and, in the same run, against NSD serving
//! a zone with the same Services' records; QPS, latency, server CPU and RSS.
//!
//! The servers take turns in the order A B B A per round (so neither always runs first on a
//! warm or a cold machine), and each side's best run is compared. With `--pin` each server runs
//! on CPU 0 alone and dnsperf (with the API server) on CPU 1, the per-core comparison; without
//! it everything shares both cores, the whole-machine figure. dnsperf sends one datagram per
//! system call, so on this 2-core machine it is often the ceiling rather than the server: the
//! queries per CPU-second of the server process are printed beside the QPS for that reason.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};

#[derive(Args, Clone, Debug)]
pub struct DnsBench {
    /// ClusterIP Services in the cluster (and A records in NSD's zone).
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Seconds per dnsperf run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// dnsperf client threads / outstanding queries.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    #[arg(long, default_value_t = 200)]
    outstanding: usize,
    /// Rounds of A B B A runs (svcnet, NSD, NSD, svcnet); each side's best run counts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Run each server on CPU 0 alone (NSD with one server process) and dnsperf on CPU 1.
    #[arg(long)]
    pin: bool,
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

/// Clock ticks of user and system time of the processes so far (Linux reports them in units
/// of USER_HZ, 100 per second).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which ends at the last ')': state is field 3,
            // utime and stime are fields 14 and 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

const USER_HZ: f64 = 100.0;

struct Perf {
    qps: f64,
    avg_ms: f64,
    lost: String,
    /// Cores the server kept busy while dnsperf ran (CPU seconds per second).
    cores: f64,
    /// Queries answered per second of server CPU time.
    per_cpu_second: f64,
}

fn dnsperf(
    port: u16,
    queries: &std::path::Path,
    args: &DnsBench,
    server_pids: &[u32],
) -> anyhow::Result<Perf> {
    let mut cmd = Command::new(if args.pin { "taskset" } else { "dnsperf" });
    if args.pin {
        cmd.args(["-c", "1", "dnsperf"]);
    }
    let before = cpu_ticks(server_pids);
    let started = Instant::now();
    let out = cmd
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
    // The server's CPU time over the whole dnsperf process (start-up and the wait for the last
    // replies included; the server idles then), against the queries completed in it.
    let cpu_seconds = cpu_ticks(server_pids).saturating_sub(before) as f64 / USER_HZ;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "dnsperf failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
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
    let completed = num(field("Queries completed:"));
    Ok(Perf {
        cores: cpu_seconds / wall,
        per_cpu_second: completed / cpu_seconds.max(1e-9),
        qps: num(field("Queries per second:")),
        avg_ms: num(field("Average Latency (s):")) * 1e3,
        lost: field("Queries lost:")
            .trim_start_matches("Queries lost:")
            .trim()
            .to_owned(),
    })
}

fn print_run(name: &str, p: &Perf) {
    println!(
        "  {name:<10} {:>9.0} QPS  avg {:.3} ms  server CPU {:.2} cores ({:.0} queries per CPU-second)  lost {}",
        p.qps, p.avg_ms, p.cores, p.per_cpu_second, p.lost
    );
}

fn best(runs: &[Perf]) -> &Perf {
    runs.iter()
        .max_by(|a, b| a.qps.total_cmp(&b.qps))
        .expect("at least one run")
}

fn median_qps(runs: &[Perf]) -> f64 {
    let mut q: Vec<f64> = runs.iter().map(|r| r.qps).collect();
    q.sort_by(f64::total_cmp);
    let n = q.len();
    if n % 2 == 1 {
        q[n / 2]
    } else {
        (q[n / 2 - 1] + q[n / 2]) / 2.0
    }
}

fn pids_of(pattern: &str) -> Vec<u32> {
    Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub async fn run(args: DnsBench) -> anyhow::Result<()> {
    for tool in ["dnsperf", "nsd", "dig", "taskset", "pgrep"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            bail!(
                "{tool} is not installed (apt-get install dnsperf nsd dnsutils util-linux procps)"
            );
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.pin && cpus < 2 {
        bail!(
            "--pin needs 2 CPUs (one for the server, one for dnsperf); this process may use {cpus}"
        );
    }
    if args.pin {
        // The API server and the rest of this process go to CPU 1 with dnsperf.
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("taskset could not move the benchmark to CPU 1");
        }
    }
    let dir = tempfile::tempdir()?;
    let (api_addr, client) = crate::bench::in_process_api(dir.path(), false).await?;
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
    let mut names = Vec::new();
    for s in &services {
        let name = s.metadata.name.clone().unwrap_or_default();
        let ip = s
            .spec
            .as_ref()
            .and_then(|p| p.cluster_ip.clone())
            .unwrap_or_default();
        zone.push_str(&format!("{name}.default.svc IN A {ip}\n"));
        names.push(name);
    }
    // Every name 10 times, shuffled with a fixed seed (a xorshift Fisher-Yates), so dnsperf's
    // pass over the file is a random walk over the names that is the same for both servers.
    let mut order: Vec<usize> = (0..names.len() * 10).map(|i| i % names.len()).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for i in (1..order.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let mut queries = String::new();
    for i in order {
        queries.push_str(&format!("{}.default.svc.cluster.local A\n", names[i]));
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
    let pinned = |program: &std::path::Path| {
        if args.pin {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    let ours = Killed(
        pinned(&exe)
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
            "server:\n  ip-address: 127.0.0.1@{nsd_port}\n  port: {nsd_port}\n  username: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  server-count: {count}\n  reuseport: {reuseport}\n  verbosity: 0\n  hide-version: yes\nremote-control:\n  control-enable: no\nzone:\n  name: cluster.local\n  zonefile: cluster.local.zone\n",
            d = zdir.display(),
            count = if args.pin { 1 } else { 2 },
            reuseport = if args.pin { "no" } else { "yes" },
        ),
    )?;
    let nsd = Killed(
        pinned(std::path::Path::new("nsd"))
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
    let nsd_pids = pids_of(&conf.display().to_string());
    // taskset execs the program, so the child's PID is the server's.
    let our_pids = [ours.0.id()];
    println!(
        "svcnet bench dns: {} Services; dnsperf -c {c} -T {c} -q {} -l {} over loopback, {} names in a fixed shuffled order (A); NSD with server-count {}; {}; {} round(s) of A B B A",
        args.services,
        args.outstanding,
        args.seconds,
        names.len() * 10,
        if args.pin { 1 } else { 2 },
        if args.pin {
            "each server pinned to CPU 0, dnsperf and the API server to CPU 1"
        } else {
            "nothing pinned (servers and dnsperf share both CPUs)"
        },
        args.rounds,
        c = args.clients,
    );
    let (mut ours_runs, mut nsd_runs) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        for side in [0, 1, 1, 0] {
            if side == 0 {
                let r = dnsperf(svc_port, &qfile, &args, &our_pids)?;
                print_run("svcnet dns", &r);
                ours_runs.push(r);
            } else {
                let r = dnsperf(nsd_port, &qfile, &args, &nsd_pids)?;
                print_run("nsd", &r);
                nsd_runs.push(r);
            }
        }
    }
    let a_rss = rss_kib(ours.0.id());
    let nsd_rss: u64 = nsd_pids.iter().copied().map(rss_kib).sum();
    let (a, b) = (best(&ours_runs), best(&nsd_runs));
    println!(
        "svcnet dns: best {:.0} QPS (median {:.0}), avg latency {:.3} ms, {:.0} queries per CPU-second, RSS {:.1} MB",
        a.qps,
        median_qps(&ours_runs),
        a.avg_ms,
        a.per_cpu_second,
        a_rss as f64 / 1024.0,
    );
    println!(
        "nsd:        best {:.0} QPS (median {:.0}), avg latency {:.3} ms, {:.0} queries per CPU-second, RSS {:.1} MB over all its processes",
        b.qps,
        median_qps(&nsd_runs),
        b.avg_ms,
        b.per_cpu_second,
        nsd_rss as f64 / 1024.0,
    );
    println!(
        "ratio svcnet/nsd (best runs): QPS {:.2}x, latency {:.2}x (nsd/svcnet), queries per CPU-second {:.2}x",
        a.qps / b.qps,
        b.avg_ms / a.avg_ms,
        a.per_cpu_second / b.per_cpu_second.max(1e-9),
    );
    drop(nsd);
    drop(ours);
    Ok(())
}
