//! `svcnet bench proxy` (root): the userspace relay against HAProxy in TCP mode, in one lab,
//! with the same backends and the same load generator (`svcnet bench client`, run inside a
//! client pod). Reports new connections per second, p99 connect-to-first-byte latency and the
//! throughput of a 1 GiB transfer, each as a ratio to HAProxy measured in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use svcnet_lab::Lab;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN_SELF: &str = "/proc/self/exe";

#[derive(Args, Clone, Debug)]
pub struct ProxyBench {
    /// Seconds of connection churn per contender.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The relay the proxy uses: splice or copy.
    #[arg(long, default_value = "splice", value_parser = ["splice", "copy"])]
    relay: String,
    /// Bytes for the throughput run (sent through the relay and echoed back).
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
}

/// `svcnet bench client`: the load generator (runs inside a lab pod).
#[derive(Args, Clone, Debug)]
pub struct BenchClient {
    target: std::net::SocketAddr,
    /// `conns` (connect, read the greeting, close) or `throughput`.
    #[arg(long, default_value = "conns")]
    mode: String,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
}

async fn one_conn(target: std::net::SocketAddr) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut c = tokio::net::TcpStream::connect(target).await?;
    let mut buf = [0u8; 256];
    let mut got = 0;
    loop {
        let n = c.read(&mut buf[got..]).await?;
        if n == 0 {
            bail!("closed before the greeting");
        }
        got += n;
        if buf[..got].contains(&b'\n') || got == buf.len() {
            break;
        }
    }
    Ok(start.elapsed())
}

pub async fn client(args: BenchClient) -> anyhow::Result<()> {
    match args.mode.as_str() {
        "conns" => {
            let deadline = Instant::now() + Duration::from_secs(args.seconds);
            let mut tasks = Vec::new();
            for _ in 0..args.concurrency {
                let target = args.target;
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut errors = 0u64;
                    while Instant::now() < deadline {
                        match one_conn(target).await {
                            Ok(d) => lat.push(d),
                            Err(_) => errors += 1,
                        }
                    }
                    (lat, errors)
                }));
            }
            let start = Instant::now();
            let mut lat = Vec::new();
            let mut errors = 0;
            for t in tasks {
                let (l, e) = t.await?;
                lat.extend(l);
                errors += e;
            }
            let took = start.elapsed().as_secs_f64();
            lat.sort();
            let p = |q: f64| {
                lat.get(((lat.len() as f64 - 1.0) * q) as usize)
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3)
            };
            println!(
                "{}",
                serde_json::json!({"conns": lat.len(), "errors": errors, "per_sec": lat.len() as f64 / took, "p50_ms": p(0.5), "p99_ms": p(0.99)})
            );
        }
        "throughput" => {
            let c = tokio::net::TcpStream::connect(args.target).await?;
            c.set_nodelay(true)?;
            let (mut rd, mut wr) = c.into_split();
            let total = args.bytes;
            let start = Instant::now();
            let writer = tokio::spawn(async move {
                let chunk = vec![7u8; 256 * 1024];
                let mut sent = 0u64;
                while sent < total {
                    let n = chunk.len().min((total - sent) as usize);
                    wr.write_all(&chunk[..n]).await?;
                    sent += n as u64;
                }
                wr.shutdown().await?;
                anyhow::Ok(())
            });
            let mut buf = vec![0u8; 256 * 1024];
            let mut received = 0u64;
            let mut greeting = true;
            loop {
                let n = rd.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                let mut data = &buf[..n];
                if greeting {
                    if let Some(pos) = data.iter().position(|&b| b == b'\n') {
                        data = &data[pos + 1..];
                        greeting = false;
                    } else {
                        continue;
                    }
                }
                received += data.len() as u64;
                if received >= total {
                    break;
                }
            }
            writer.await??;
            let took = start.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"bytes": received, "seconds": took, "gbit_per_sec": received as f64 * 8.0 / took / 1e9})
            );
        }
        other => bail!("unknown --mode {other:?}; use conns or throughput"),
    }
    Ok(())
}

fn kubectl(lab: &Lab, server: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut full = vec!["--server", server];
    full.extend_from_slice(args);
    let out = lab.exec(&lab.control().netns, "kubectl", &full)?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `bin bench client target extra…` (`bin` is this program) in `ns`; returns its JSON line.
fn run_client(
    lab: &Lab,
    bin: &str,
    ns: &str,
    target: &str,
    extra: &[&str],
) -> anyhow::Result<Value> {
    let mut args = vec!["bench", "client", target];
    args.extend_from_slice(extra);
    let out = lab.exec(ns, bin, &args)?;
    if !out.status.success() {
        bail!(
            "bench client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("bench client printed {text:?}"))
}

pub async fn run(args: ProxyBench) -> anyhow::Result<()> {
    svcnet_lab::require_privileges().map_err(anyhow::Error::msg)?;
    let Ok(haproxy_version) = std::process::Command::new("haproxy").arg("-v").output() else {
        bail!("haproxy is not installed (apt-get install haproxy)");
    };
    let exe = std::fs::read_link(BIN_SELF)?;
    let bin = exe.to_str().context("binary path")?.to_owned();
    let mut lab = Lab::new("bench")?;
    let dir = tempfile::tempdir()?;
    let control = lab.control().clone();
    let server = format!("http://{}:6443", control.ip);
    let data = dir.path().join("api");
    let _api = lab.spawn(
        &control.netns,
        &bin,
        &[
            "apiserver",
            "--listen",
            &format!("{}:6443", control.ip),
            "--data-dir",
            data.to_str().context("path")?,
        ],
    )?;
    let node = lab.add_node("node1")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while kubectl(&lab, &server, &["get", "ns", "default"]).is_err() {
        if Instant::now() > deadline {
            bail!("the API server did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut keep = Vec::new();
    let mut servers = Vec::new();
    for name in ["b1", "b2", "b3"] {
        let pod = lab.add_pod(&node, name)?;
        keep.push(lab.spawn(
            &pod.netns,
            &bin,
            &["echo", "--listen", "0.0.0.0:8080", "--name", name],
        )?);
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: bench}}}}\nspec: {{nodeName: node1, containers: [{{name: c, image: x}}]}}\n"
        );
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, manifest)?;
        kubectl(
            &lab,
            &server,
            &["apply", "-f", path.to_str().context("path")?],
        )?;
        let status = format!(
            r#"{{"status":{{"phase":"Running","podIP":"{}","conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
            pod.ip
        );
        kubectl(
            &lab,
            &server,
            &[
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ],
        )?;
        servers.push(format!("  server {name} {}:8080", pod.ip));
    }
    let svc = dir.path().join("svc.yaml");
    std::fs::write(
        &svc,
        "apiVersion: v1\nkind: Service\nmetadata: {name: bench}\nspec: {selector: {app: bench}, ports: [{port: 80, targetPort: 8080}]}\n",
    )?;
    kubectl(
        &lab,
        &server,
        &["apply", "-f", svc.to_str().context("path")?],
    )?;
    let vip = kubectl(
        &lab,
        &server,
        &["get", "svc", "bench", "-o", "jsonpath={.spec.clusterIP}"],
    )?;
    keep.push(lab.spawn(
        &node.netns,
        &bin,
        &[
            "proxy",
            "--master",
            &server,
            "--hostname-override",
            "node1",
            "--min-sync-period",
            "100ms",
            "--relay",
            &args.relay,
            "--metrics-bind-address",
            "",
            "--healthz-bind-address",
            "",
        ],
    )?);
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\nfrontend f\n  bind {}:18080\n  default_backend b\nbackend b\n  balance roundrobin\n{}\n",
            node.bridge_ip,
            servers.join("\n")
        ),
    )?;
    keep.push(lab.spawn(
        &node.netns,
        "haproxy",
        &["-db", "-f", cfg.to_str().context("path")?],
    )?);
    let client = lab.add_pod(&node, "client")?;
    let ours = format!("{vip}:80");
    let theirs = format!("{}:18080", node.bridge_ip);
    // Wait until both answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = run_client(
            &lab,
            &bin,
            &client.netns,
            &ours,
            &["--seconds", "1", "--concurrency", "1"],
        );
        let b = run_client(
            &lab,
            &bin,
            &client.netns,
            &theirs,
            &["--seconds", "1", "--concurrency", "1"],
        );
        if matches!((&a, &b), (Ok(x), Ok(y)) if x["conns"].as_u64() > Some(0) && y["conns"].as_u64() > Some(0))
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("contenders not ready: {a:?} {b:?}");
        }
    }
    let secs = args.seconds.to_string();
    let conc = args.concurrency.to_string();
    let bytes = args.bytes.to_string();
    println!(
        "svcnet bench proxy: userspace relay vs HAProxy {} (TCP mode), 3 echo backends, client pod on the same node, {} s churn at {} in flight, {} bytes echoed",
        String::from_utf8_lossy(&haproxy_version.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim(),
        args.seconds,
        args.concurrency,
        args.bytes
    );
    let mut rows = Vec::new();
    let first_backend = lab.pods()[0].ip;
    let direct = format!("{first_backend}:8080");
    let c = run_client(
        &lab,
        &bin,
        &client.netns,
        &direct,
        &["--seconds", &secs, "--concurrency", &conc],
    )?;
    println!(
        "direct to one backend (no proxy, for reference): {:.0} conns/s, p99 {:.3} ms",
        c["per_sec"].as_f64().unwrap_or(0.0),
        c["p99_ms"].as_f64().unwrap_or(0.0)
    );
    for (label, target) in [("svcnet userspace", &ours), ("haproxy", &theirs)] {
        let conns = run_client(
            &lab,
            &bin,
            &client.netns,
            target,
            &["--seconds", &secs, "--concurrency", &conc],
        )?;
        let thr = run_client(
            &lab,
            &bin,
            &client.netns,
            target,
            &["--mode", "throughput", "--bytes", &bytes],
        )?;
        println!(
            "{label}: {:.0} conns/s (errors {}), p50 {:.3} ms, p99 {:.3} ms, 1 transfer {:.2} Gbit/s",
            conns["per_sec"].as_f64().unwrap_or(0.0),
            conns["errors"],
            conns["p50_ms"].as_f64().unwrap_or(0.0),
            conns["p99_ms"].as_f64().unwrap_or(0.0),
            thr["gbit_per_sec"].as_f64().unwrap_or(0.0)
        );
        rows.push((conns, thr));
    }
    let (a, b) = (&rows[0], &rows[1]);
    let ratio = |x: &Value, y: &Value| x.as_f64().unwrap_or(0.0) / y.as_f64().unwrap_or(f64::NAN);
    println!(
        "ratios (svcnet / haproxy, higher is better): new conns/s {:.2}x, p99 latency {:.2}x (haproxy p99 / svcnet p99), throughput {:.2}x",
        ratio(&a.0["per_sec"], &b.0["per_sec"]),
        ratio(&b.0["p99_ms"], &a.0["p99_ms"]),
        ratio(&a.1["gbit_per_sec"], &b.1["gbit_per_sec"])
    );
    drop(keep);
    Ok(())
}
