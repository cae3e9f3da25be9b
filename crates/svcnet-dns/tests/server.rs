//! The DNS server end to end: svcnet's API server in-process on a loopback socket, the DNS
//! server watching it, a fake upstream resolver on loopback, and the real `dig` asking.
//!
//! Nothing here talks to the machine's resolver or any outside server: every `dig` runs as
//! `dig @127.0.0.1 -p PORT +time=.. +tries=1`. Without `dig` the dig-based tests print a skip
//! message and pass, except under `CI=true`, where they fail.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use svcnet_apiserver::{ApiServer, Config};
use svcnet_dns::PodsMode;
use svcnet_dns::server::{DnsConfig, DnsServer};
use svcnet_store::{RedbStore, RedbStoreConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// The address the fake upstream answers for `example.test.` and names under it.
const UPSTREAM_ANSWER: &str = "192.0.2.53";
/// How long a change may take to show in answers before the test fails.
const CHANGE_BOUND: Duration = Duration::from_secs(10);

// === fixtures ===

/// svcnet's API server on a loopback socket, with its EndpointSlice controller.
struct Cluster {
    client: kube::Client,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn start_cluster() -> anyhow::Result<Cluster> {
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let store = RedbStore::open(&dir.path().join("store.redb"), RedbStoreConfig::default())?;
    let config = Config {
        service_cidrs: vec!["10.96.0.0/16".parse()?, "fd00:10:96::/112".parse()?],
        advertise: addr,
        ..Default::default()
    };
    let server = ApiServer::new(Arc::new(store), config)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut tasks = server.spawn_background().into_handles();
    tasks.push(tokio::spawn(async move {
        server
            .serve(listener, std::future::pending())
            .await
            .expect("API server serves");
    }));
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse()?))?;
    Ok(Cluster {
        client,
        tasks,
        _dir: dir,
    })
}

/// A resolver on loopback answering `A 192.0.2.53` (TTL 60) for `example.test.` and names
/// under it, NXDOMAIN for the rest, and counting the queries it gets. `many.example.test.` has
/// [`MANY`] addresses: over UDP it only ever gets an empty reply with TC set, over TCP (same
/// port) the full answer.
struct FakeUpstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

const MANY: usize = 40;

async fn fake_upstream() -> anyhow::Result<FakeUpstream> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    let tcp = TcpListener::bind(addr).await?;
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = queries.clone();
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            if let Some(reply) = upstream_reply(&buf[..n], false) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            tokio::spawn(async move {
                while let Ok(len) = stream.read_u16().await {
                    let mut query = vec![0u8; usize::from(len)];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    let Some(reply) = upstream_reply(&query, true) else {
                        return;
                    };
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(FakeUpstream {
        addr,
        queries,
        tasks: vec![udp_task, tcp_task],
    })
}

fn upstream_reply(query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    let name = labels.join(".");
    let ours = name == "example.test" || name.ends_with(".example.test");
    let mut out = query.get(..question_end)?.to_vec();
    out[2] = 0x80 | (query[2] & 0x01);
    out[3] = 0x80 | if ours { 0 } else { 3 };
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    if name == "many.example.test" && qtype == 1 {
        if !tcp {
            out[2] |= 0x02;
            return Some(out);
        }
        out[6..8].copy_from_slice(&(MANY as u16).to_be_bytes());
        for i in 0..MANY {
            out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100]);
            out.push(i as u8 + 1);
        }
    } else if ours && qtype == 1 {
        out[7] = 1;
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 53]);
    }
    Some(out)
}

/// A UDP socket on loopback that never answers.
async fn black_hole() -> anyhow::Result<(SocketAddr, UdpSocket)> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    Ok((socket.local_addr()?, socket))
}

fn dns_config(upstreams: Vec<SocketAddr>, forward: bool) -> DnsConfig {
    DnsConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        zone: "cluster.local".into(),
        ttl: 5,
        pods_mode: PodsMode::Insecure,
        upstreams,
        forward,
        health_listen: Some("127.0.0.1:0".parse().expect("address")),
    }
}

/// A DNS server whose API address has nothing listening: it never syncs (cluster names get
/// SERVFAIL), which is all a test of the transport or of forwarding needs.
async fn unsynced_dns(upstreams: Vec<SocketAddr>, forward: bool) -> anyhow::Result<DnsServer> {
    unsynced_dns_with(dns_config(upstreams, forward)).await
}

async fn unsynced_dns_with(config: DnsConfig) -> anyhow::Result<DnsServer> {
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{closed}").parse()?))?;
    Ok(DnsServer::start(client, config).await?)
}

/// A UDP socket on loopback connected to `server`.
async fn udp_client(server: SocketAddr) -> anyhow::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    Ok(socket)
}

async fn wait_ready(dns: &DnsServer) {
    let deadline = Instant::now() + CHANGE_BOUND;
    while !dns.is_ready() {
        assert!(Instant::now() < deadline, "DNS server never synced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// === asking ===

/// Whether `dig` can run here; under `CI=true` its absence fails the test.
fn have_dig() -> bool {
    let found = std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dig is required under CI=true (install bind9-dnsutils)"
        );
        eprintln!("skipping: dig is not installed");
    }
    found
}

/// Runs `dig @127.0.0.1 -p PORT +time=2 +tries=1 ARGS...` and returns its standard output.
async fn dig(port: u16, args: &[&str]) -> String {
    dig_with_time(port, 2, args).await
}

async fn dig_with_time(port: u16, time: u32, args: &[&str]) -> String {
    let out = tokio::process::Command::new("dig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .arg(format!("+time={time}"))
        .arg("+tries=1")
        .args(args)
        .output()
        .await
        .expect("dig runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !stdout.contains("malformed"),
        "dig {args:?} saw a malformed reply:\n{stdout}"
    );
    stdout
}

/// `dig +short` answer lines, sorted (comment lines such as the TCP retry notice dropped).
async fn short(port: u16, args: &[&str]) -> Vec<String> {
    let mut all = vec!["+short"];
    all.extend_from_slice(args);
    let mut lines: Vec<String> = dig(port, &all)
        .await
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The `status:` dig reports (NOERROR, NXDOMAIN, ...).
async fn status(port: u16, args: &[&str]) -> String {
    let mut all = vec!["+noall", "+comments"];
    all.extend_from_slice(args);
    let out = dig(port, &all).await;
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig output:\n{out}"))
        .to_owned()
}

/// One query over UDP without dig, for fast polling.
async fn ask(addr: SocketAddr, name: &str, qtype: RecordType) -> Option<Message> {
    let socket = udp_client(addr).await.ok()?;
    socket.send(&common::query(name, qtype)).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Message::from_vec(&buf[..n]).ok()
}

fn addresses(msg: &Message) -> Vec<String> {
    let mut out: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// Polls (every 2 ms) until the answer to `name` satisfies `check`; returns how long it took.
async fn wait_answer<F>(addr: SocketAddr, name: &str, what: &str, check: F) -> Duration
where
    F: Fn(&Message) -> bool,
{
    let started = Instant::now();
    loop {
        if let Some(msg) = ask(addr, name, RecordType::A).await
            && check(&msg)
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < CHANGE_BOUND,
            "{what}: not seen within {CHANGE_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `GET path` on the health listener: status code and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("health listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: dns\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

// === objects ===

async fn create_service(api: &Api<Service>, v: serde_json::Value) -> Service {
    let svc: Service = serde_json::from_value(v).expect("service JSON");
    api.create(&PostParams::default(), &svc)
        .await
        .expect("service created")
}

/// Creates a Pod and then reports it running and ready (status is a subresource).
async fn create_ready_pod(api: &Api<Pod>, name: &str, app: &str, ip: &str, host: Option<&str>) {
    let mut spec = json!({"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]});
    if let Some(h) = host {
        spec["hostname"] = json!(h);
        spec["subdomain"] = json!(app);
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": spec,
    }))
    .expect("pod JSON");
    api.create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("pod status patched");
}

fn cluster_ips(svc: &Service) -> Vec<String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ips.clone())
        .unwrap_or_default()
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_cluster_names_with_dig() -> anyhow::Result<()> {
    if !have_dig() {
        return Ok(());
    }
    let cluster = start_cluster().await?;
    let upstream = fake_upstream().await?;
    let dns = DnsServer::start(
        cluster.client.clone(),
        dns_config(vec![upstream.addr], true),
    )
    .await?;
    let port = dns.udp_addr.port();
    assert_eq!(dns.udp_addr, dns.tcp_addr);
    wait_ready(&dns).await;
    let health = dns.health_addr.expect("health listener");
    assert_eq!(http_get(health, "/health").await.0, 200);
    assert_eq!(http_get(health, "/ready").await.0, 200);

    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client.clone(), "default");

    // A dual-stack ClusterIP Service with two named ports. The time from the create call to
    // the first answer is the change-to-answer latency (API watch + debounce + rebuild).
    let before = Instant::now();
    let web = create_service(
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"ipFamilyPolicy": "RequireDualStack",
                "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
    )
    .await;
    let ips = cluster_ips(&web);
    assert_eq!(ips.len(), 2, "dual-stack cluster IPs: {ips:?}");
    let (v4, v6) = (ips[0].clone(), ips[1].clone());
    wait_answer(dns.udp_addr, "web.default.svc.cluster.local.", "web", |m| {
        addresses(m) == vec![v4.clone()]
    })
    .await;
    let created_latency = before.elapsed();
    eprintln!("change-to-answer latency, Service created -> A answered: {created_latency:?}");

    assert_eq!(
        short(port, &["web.default.svc.cluster.local", "A"]).await,
        vec![v4.clone()]
    );
    assert_eq!(
        short(port, &["WEB.Default.SVC.cluster.local.", "AAAA"]).await,
        vec![v6.clone()]
    );
    assert_eq!(
        short(port, &["+tcp", "web.default.svc.cluster.local", "A"]).await,
        vec![v4.clone()]
    );
    assert_eq!(
        short(port, &["_http._tcp.web.default.svc.cluster.local", "SRV"]).await,
        vec!["0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(
        short(port, &["_dns._udp.web.default.svc.cluster.local", "SRV"]).await,
        vec!["0 100 53 web.default.svc.cluster.local."]
    );
    assert_eq!(
        short(port, &["web.default.svc.cluster.local", "SRV"]).await,
        vec![
            "0 50 53 web.default.svc.cluster.local.",
            "0 50 80 web.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        short(port, &["-x", &v4]).await,
        vec!["web.default.svc.cluster.local."]
    );
    assert_eq!(
        short(port, &["-x", &v6]).await,
        vec!["web.default.svc.cluster.local."]
    );
    let flags = dig(
        port,
        &["+noall", "+comments", "web.default.svc.cluster.local"],
    )
    .await;
    assert!(
        flags.contains("status: NOERROR") && flags.contains(" aa "),
        "{flags}"
    );

    // Negative answers.
    assert_eq!(
        status(port, &["nosuch.default.svc.cluster.local"]).await,
        "NXDOMAIN"
    );
    assert_eq!(
        status(port, &["web.default.svc.cluster.local", "TXT"]).await,
        "NOERROR"
    );
    assert!(
        short(port, &["web.default.svc.cluster.local", "TXT"])
            .await
            .is_empty()
    );

    // A headless Service whose Pods have hostname and subdomain.
    create_service(
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"},
                "ports": [{"name": "pg", "port": 5432}]}}),
    )
    .await;
    create_ready_pod(&pods, "db-0", "db", "10.244.0.10", Some("db-0")).await;
    create_ready_pod(&pods, "db-1", "db", "10.244.0.11", Some("db-1")).await;
    wait_answer(
        dns.udp_addr,
        "db.default.svc.cluster.local.",
        "db endpoints",
        |m| addresses(m).len() == 2,
    )
    .await;
    assert_eq!(
        short(port, &["db.default.svc.cluster.local", "A"]).await,
        vec!["10.244.0.10", "10.244.0.11"]
    );
    assert_eq!(
        short(port, &["db-0.db.default.svc.cluster.local", "A"]).await,
        vec!["10.244.0.10"]
    );
    assert_eq!(
        short(port, &["_pg._tcp.db.default.svc.cluster.local", "SRV"]).await,
        vec![
            "0 50 5432 db-0.db.default.svc.cluster.local.",
            "0 50 5432 db-1.db.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        short(port, &["-x", "10.244.0.11"]).await,
        vec!["db-1.db.default.svc.cluster.local."]
    );
    // Pod records ("pods insecure").
    assert_eq!(
        short(port, &["10-244-0-10.default.pod.cluster.local", "A"]).await,
        vec!["10.244.0.10"]
    );

    // An endpoint added: a third ready Pod appears (this includes the EndpointSlice
    // controller's reaction time).
    let before = Instant::now();
    create_ready_pod(&pods, "db-2", "db", "10.244.0.12", Some("db-2")).await;
    wait_answer(
        dns.udp_addr,
        "db.default.svc.cluster.local.",
        "db-2 added",
        |m| addresses(m).len() == 3,
    )
    .await;
    let endpoint_latency = before.elapsed();
    eprintln!(
        "change-to-answer latency, Pod created and made ready -> endpoint answered \
         (includes the EndpointSlice controller): {endpoint_latency:?}"
    );
    assert_eq!(
        short(port, &["db-2.db.default.svc.cluster.local"]).await,
        vec!["10.244.0.12"]
    );

    // ExternalName: a CNAME to the external name.
    create_service(
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.test"}}),
    )
    .await;
    wait_answer(dns.udp_addr, "ext.default.svc.cluster.local.", "ext", |m| {
        m.answers.iter().any(|r| matches!(r.data, RData::CNAME(_)))
    })
    .await;
    let ext = short(port, &["ext.default.svc.cluster.local", "CNAME"]).await;
    assert_eq!(ext, vec!["example.test."]);

    // 60 endpoints: too many for 512 bytes, so UDP without EDNS is truncated...
    create_service(
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "big"},
            "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    let endpoints: Vec<_> = (1..=60)
        .map(|i| json!({"addresses": [format!("10.244.1.{i}")], "conditions": {"ready": true}}))
        .collect();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "big-manual", "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))?;
    slices.create(&PostParams::default(), &slice).await?;
    wait_answer(dns.udp_addr, "big.default.svc.cluster.local.", "big", |m| {
        m.metadata.truncation || addresses(m).len() == 60
    })
    .await;
    let truncated = dig(
        port,
        &[
            "+noedns",
            "+ignore",
            "+noall",
            "+comments",
            "big.default.svc.cluster.local",
            "A",
        ],
    )
    .await;
    assert!(truncated.contains(" tc "), "expected TC:\n{truncated}");
    assert!(truncated.contains("ANSWER: 0"), "{truncated}");
    // ...and dig retries over TCP by itself and gets all 60.
    let all = short(port, &["+noedns", "big.default.svc.cluster.local", "A"]).await;
    assert_eq!(all.len(), 60, "{all:?}");
    assert_eq!(
        short(port, &["+tcp", "big.default.svc.cluster.local", "A"])
            .await
            .len(),
        60
    );
    // With EDNS (dig's default 1232 bytes) the 60 records fit in one datagram.
    assert_eq!(
        short(port, &["+ignore", "big.default.svc.cluster.local", "A"])
            .await
            .len(),
        60
    );

    // A Service deleted: NXDOMAIN.
    let before = Instant::now();
    services.delete("web", &DeleteParams::default()).await?;
    wait_answer(
        dns.udp_addr,
        "web.default.svc.cluster.local.",
        "web deleted",
        |m| m.metadata.response_code == ResponseCode::NXDomain,
    )
    .await;
    eprintln!(
        "change-to-answer latency, Service deleted -> NXDOMAIN: {:?}",
        before.elapsed()
    );
    assert_eq!(
        status(port, &["web.default.svc.cluster.local"]).await,
        "NXDOMAIN"
    );
    assert!(short(port, &["-x", &v4]).await.is_empty());

    // Forwarding to the fake upstream, with the reply cache in front.
    assert_eq!(
        short(port, &["example.test", "A"]).await,
        vec![UPSTREAM_ANSWER]
    );
    let asked = upstream.queries.load(Ordering::SeqCst);
    assert!(asked >= 1);
    assert_eq!(
        short(port, &["EXAMPLE.test", "A"]).await,
        vec![UPSTREAM_ANSWER]
    );
    assert_eq!(
        short(port, &["+tcp", "example.test", "A"]).await,
        vec![UPSTREAM_ANSWER]
    );
    assert_eq!(
        upstream.queries.load(Ordering::SeqCst),
        asked,
        "repeated questions come from the cache"
    );
    let cached = dig(port, &["+noall", "+answer", "+ttlid", "example.test", "A"]).await;
    assert!(cached.contains("IN\tA\t192.0.2.53"), "{cached}");
    assert_eq!(
        short(port, &["+tcp", "www.example.test", "A"]).await,
        vec![UPSTREAM_ANSWER]
    );
    assert_eq!(status(port, &["nosuch.test"]).await, "NXDOMAIN");
    // Truncated upstream UDP replies: relayed with TC to UDP clients; dig then asks us over
    // TCP and we ask the upstream over TCP.
    let truncated = dig(
        port,
        &["+ignore", "+noall", "+comments", "many.example.test"],
    )
    .await;
    assert!(truncated.contains(" tc "), "expected TC:\n{truncated}");
    assert_eq!(short(port, &["many.example.test"]).await.len(), MANY);
    assert_eq!(
        short(port, &["+tcp", "many.example.test"]).await.len(),
        MANY
    );

    // Metrics.
    let (code, metrics) = http_get(health, "/metrics").await;
    assert_eq!(code, 200);
    for needle in [
        r#"svcnet_dns_requests_total{proto="udp",qtype="A",rcode="NOERROR"}"#,
        r#"svcnet_dns_requests_total{proto="tcp",qtype="A",rcode="NOERROR"}"#,
        r#"svcnet_dns_requests_total{proto="udp",qtype="A",rcode="NXDOMAIN"}"#,
        "svcnet_dns_request_duration_seconds_bucket",
        "svcnet_dns_cache_hits_total",
        &format!(
            r#"svcnet_dns_forward_requests_total{{upstream="{}"}}"#,
            upstream.addr
        ),
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("svcnet_dns_cache_hits_total 0\n"),
        "{metrics}"
    );

    // The same cluster through a server that does not forward: REFUSED outside the zone.
    let auth_only = DnsServer::start(
        cluster.client.clone(),
        dns_config(vec![upstream.addr], false),
    )
    .await?;
    wait_ready(&auth_only).await;
    let p2 = auth_only.udp_addr.port();
    assert_eq!(status(p2, &["example.test"]).await, "REFUSED");
    assert_eq!(status(p2, &["+tcp", "example.test"]).await, "REFUSED");
    assert_eq!(
        short(p2, &["db-0.db.default.svc.cluster.local"]).await,
        vec!["10.244.0.10"]
    );

    // Verified pod records: only addresses a Pod in that namespace has (this server also
    // watches Pods); the insecure server echoes any address.
    let mut config = dns_config(Vec::new(), false);
    config.pods_mode = PodsMode::Verified;
    let verified = DnsServer::start(cluster.client.clone(), config).await?;
    wait_ready(&verified).await;
    let p3 = verified.udp_addr.port();
    assert_eq!(
        short(p3, &["10-244-0-11.default.pod.cluster.local"]).await,
        vec!["10.244.0.11"]
    );
    assert_eq!(
        status(p3, &["10-244-9-9.default.pod.cluster.local"]).await,
        "NXDOMAIN"
    );
    assert_eq!(
        short(port, &["10-244-9-9.default.pod.cluster.local"]).await,
        vec!["10.244.9.9"]
    );

    verified.shutdown().await;
    auth_only.shutdown().await;
    dns.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_upstream_after_timeout_and_servfail_when_all_fail() -> anyhow::Result<()> {
    if !have_dig() {
        return Ok(());
    }
    let cluster = start_cluster().await?;
    let upstream = fake_upstream().await?;
    let (hole, _hole_socket) = black_hole().await?;

    // One silent upstream and one good one: every query is answered, some after the 2 s
    // timeout of the silent one.
    let dns = DnsServer::start(
        cluster.client.clone(),
        dns_config(vec![hole, upstream.addr], true),
    )
    .await?;
    let port = dns.udp_addr.port();
    for name in ["a.example.test", "b.example.test", "c.example.test"] {
        assert_eq!(
            dig_with_time(port, 5, &["+short", name, "A"]).await.trim(),
            UPSTREAM_ANSWER,
            "{name}"
        );
    }

    // Only the silent one: SERVFAIL once it times out.
    let dead = DnsServer::start(cluster.client.clone(), dns_config(vec![hole], true)).await?;
    let started = Instant::now();
    let out = dig_with_time(
        dead.udp_addr.port(),
        5,
        &["+noall", "+comments", "example.test"],
    )
    .await;
    assert!(out.contains("status: SERVFAIL"), "{out}");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

/// Before the first sync with the API, cluster names get SERVFAIL (not a cacheable NXDOMAIN)
/// and `/ready` says 503; other names are still forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_until_synced() -> anyhow::Result<()> {
    // An API address where nothing listens.
    let upstream = fake_upstream().await?;
    let dns = unsynced_dns(vec![upstream.addr], true).await?;

    let reply = ask(
        dns.udp_addr,
        "web.default.svc.cluster.local.",
        RecordType::A,
    )
    .await
    .expect("a reply");
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let reply = ask(dns.udp_addr, "example.test.", RecordType::A)
        .await
        .expect("a reply");
    assert_eq!(addresses(&reply), vec![UPSTREAM_ANSWER]);

    let health = dns.health_addr.expect("health listener");
    assert_eq!(http_get(health, "/health").await.0, 200);
    assert_eq!(http_get(health, "/ready").await.0, 503);
    assert!(!dns.is_ready());
    Ok(())
}

/// Garbage on either transport gets no panic and no reply bigger than itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_garbage() -> anyhow::Result<()> {
    let dns = unsynced_dns(Vec::new(), false).await?;
    let socket = udp_client(dns.udp_addr).await?;
    let mut buf = vec![0u8; 65535];
    let packets: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 5],
        vec![0xff; 12],
        vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1],
        vec![0, 2, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a'],
        (0..600u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ];
    for p in &packets {
        socket.send(p).await?;
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
        {
            assert!(
                n <= p.len().max(12),
                "reply of {n} bytes to {} bytes",
                p.len()
            );
        }
    }
    // Still answering afterwards, over UDP (REFUSED: not forwarding) and TCP.
    let reply = ask(dns.udp_addr, "example.test.", RecordType::A)
        .await
        .expect("a reply");
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);

    let mut tcp = TcpStream::connect(dns.tcp_addr).await?;
    tcp.write_all(&[0, 3, 1, 2, 3]).await?;
    let query = common::query("example.test.", RecordType::A);
    tcp.write_all(&(query.len() as u16).to_be_bytes()).await?;
    tcp.write_all(&query).await?;
    let len = tcp.read_u16().await?;
    let mut reply = vec![0u8; usize::from(len)];
    tcp.read_exact(&mut reply).await?;
    let reply = Message::from_vec(&reply)?;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    Ok(())
}

/// The value of an unlabelled metric line (`name value`) in the `/metrics` text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics:\n{text}"))
}

/// Many clients with queries in flight at once. The UDP threads take several datagrams per
/// receive call (recvmmsg) and send the replies in one call (sendmmsg): every reply must reach
/// the socket that asked, once, with its query's ID and the answer to the name that query
/// asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_are_answered_in_batches_each_reply_to_its_sender() -> anyhow::Result<()> {
    const CLIENTS: usize = 4;
    const PER_CLIENT: u16 = 300;
    const WINDOW: u16 = 16;
    let cluster = start_cluster().await?;
    let dns = DnsServer::start(cluster.client.clone(), dns_config(Vec::new(), false)).await?;
    wait_ready(&dns).await;
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    let mut expected = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let svc = create_service(
            &services,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"ports": [{"port": 80}]}}),
        )
        .await;
        let ip = cluster_ips(&svc)[0].clone();
        let fqdn = format!("{name}.default.svc.cluster.local.");
        wait_answer(dns.udp_addr, &fqdn, name, |m| {
            addresses(m) == vec![ip.clone()]
        })
        .await;
        expected.push((fqdn, ip));
    }
    let before = dns.metrics_text();
    let expected = Arc::new(expected);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (expected, server) = (expected.clone(), dns.udp_addr);
        clients.push(tokio::spawn(async move {
            let socket = udp_client(server).await?;
            // Query `id` of client `c` asks for name (id + c) mod 3.
            let asked = |id: u16| &expected[(usize::from(id) + c) % expected.len()];
            let packet = |id: u16| {
                let mut q = common::query(&asked(id).0, RecordType::A);
                q[..2].copy_from_slice(&id.to_be_bytes());
                q
            };
            let mut sent = 0;
            while sent < WINDOW {
                socket.send(&packet(sent)).await?;
                sent += 1;
            }
            let mut answered = vec![false; usize::from(PER_CLIENT)];
            let mut buf = vec![0u8; 2048];
            for _ in 0..PER_CLIENT {
                let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
                    .await
                    .map_err(|_| anyhow::anyhow!("client {c}: a reply is missing"))??;
                let msg = Message::from_vec(&buf[..n])?;
                let id = msg.metadata.id;
                anyhow::ensure!(
                    id < PER_CLIENT && !answered[usize::from(id)],
                    "client {c}: unexpected or repeated ID {id}"
                );
                answered[usize::from(id)] = true;
                let (name, ip) = asked(id);
                anyhow::ensure!(
                    addresses(&msg) == vec![ip.clone()],
                    "client {c}, query {id} for {name}: got {:?}",
                    addresses(&msg)
                );
                if sent < PER_CLIENT {
                    socket.send(&packet(sent)).await?;
                    sent += 1;
                }
            }
            // Nothing more comes: a reply sent twice would show up here.
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
            {
                anyhow::bail!("client {c}: an extra reply of {n} bytes");
            }
            anyhow::Ok(())
        }));
    }
    for c in clients {
        c.await??;
    }
    let after = dns.metrics_text();
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    let queries = (CLIENTS * usize::from(PER_CLIENT)) as f64;
    assert_eq!(
        delta("svcnet_dns_udp_batch_size_sum"),
        queries,
        "every datagram is counted in exactly one batch"
    );
    let calls = delta("svcnet_dns_udp_batch_size_count");
    assert!(
        calls < queries,
        "{queries} queries took {calls} receive calls: no batch held more than one datagram"
    );
    dns.shutdown().await;
    Ok(())
}

/// A datagram longer than the server's receive slot arrives cut short: it gets FORMERR, not an
/// answer made from part of a packet. The same query padded to fit is answered normally
/// (trailing bytes after the records are ignored), which is what the cut one would have got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_datagram_is_formerr() -> anyhow::Result<()> {
    let dns = unsynced_dns(Vec::new(), false).await?;
    let socket = udp_client(dns.udp_addr).await?;
    let mut buf = vec![0u8; 65535];
    for (padded_to, rcode) in [
        (3000, ResponseCode::Refused),
        (5000, ResponseCode::FormErr),
        (60000, ResponseCode::FormErr),
    ] {
        let mut q = common::query("example.test.", RecordType::A);
        q.resize(padded_to, 0);
        socket.send(&q).await?;
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .expect("a reply")?;
        let reply = Message::from_vec(&buf[..n])?;
        assert_eq!(
            reply.metadata.response_code, rcode,
            "{padded_to}-byte query"
        );
        assert_eq!(reply.metadata.id, common::ID);
        assert!(n < padded_to);
    }
    dns.shutdown().await;
    Ok(())
}

/// `shutdown` returns only when the UDP threads have let go of the socket: the port can be
/// bound again at once (a restart on the same port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_frees_the_port() -> anyhow::Result<()> {
    let dns = unsynced_dns(Vec::new(), false).await?;
    let addr = dns.udp_addr;
    let reply = ask(addr, "example.test.", RecordType::A).await;
    assert!(reply.is_some(), "answering before shutdown");
    let started = Instant::now();
    dns.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown hangs");
    std::net::UdpSocket::bind(addr).expect("UDP port free after shutdown");
    std::net::TcpListener::bind(addr).expect("TCP port free after shutdown");
    Ok(())
}

/// An IPv6 listener answers IPv6 peers through the same batched path (their addresses go
/// through recvmmsg and sendmmsg as `sockaddr_in6`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_ipv6_loopback() -> anyhow::Result<()> {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no IPv6 loopback under CI=true"
        );
        eprintln!("skipping: no IPv6 loopback here");
        return Ok(());
    }
    let dns = unsynced_dns_with(DnsConfig {
        listen: "[::1]:0".parse()?,
        ..dns_config(Vec::new(), false)
    })
    .await?;
    let socket = UdpSocket::bind("[::1]:0").await?;
    socket.connect(dns.udp_addr).await?;
    let mut buf = vec![0u8; 2048];
    for id in 0..32u16 {
        let mut q = common::query("example.test.", RecordType::A);
        q[..2].copy_from_slice(&id.to_be_bytes());
        socket.send(&q).await?;
    }
    let mut seen = Vec::new();
    for _ in 0..32 {
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .expect("a reply over IPv6")?;
        let reply = Message::from_vec(&buf[..n])?;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        seen.push(reply.metadata.id);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..32).collect::<Vec<_>>());
    dns.shutdown().await;
    Ok(())
}
