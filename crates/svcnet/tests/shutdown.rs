//! Every long-running command stops cleanly on SIGINT or SIGTERM within two seconds — open
//! watches end, a request still uploading is cut after the grace period, the store is closed —
//! and a second signal exits at once.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Running, free_port, poll};

fn spawn(args: &[&str], data: &Path) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_svcnet"))
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("svcnet starts"),
    )
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits for the child to exit; returns its status and how long that took.
fn wait_exit(child: &mut Child, limit: Duration) -> (ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "still running {limit:?} after the signal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kubectl(addr: SocketAddr) -> Command {
    let mut c = Command::new("kubectl");
    c.args([
        "--server",
        &format!("http://{addr}"),
        "--request-timeout=10s",
    ]);
    c
}

fn have_kubectl() -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl is required under CI"
        );
        eprintln!("skipping: kubectl is not installed");
    }
    found
}

fn wait_ready(addr: SocketAddr) {
    poll(Duration::from_secs(30), "never answered", || {
        kubectl(addr)
            .args(["get", "--raw", "/readyz"])
            .output()
            .map_err(|e| e.to_string())
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&o.stderr).into_owned())
                }
            })
    });
}

/// A request whose body never arrives: the server is still reading it when it stops.
fn wait_listening(addr: SocketAddr) {
    poll(Duration::from_secs(30), "never listened", || {
        TcpStream::connect(addr)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

fn stuck_upload(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/v1/namespaces/default/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"kind\":"
    )
    .unwrap();
    s.flush().unwrap();
    s
}

#[test]
fn up_stops_within_two_seconds_on_sigint_with_watches_open_and_keeps_its_data() {
    if !have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr = free_port();
    let up_args = [
        "up",
        "--listen",
        &addr.to_string(),
        "--dns-listen",
        "127.0.0.1:0",
    ];
    let mut up = spawn(&up_args, &data);
    wait_ready(addr);
    let created = kubectl(addr)
        .args(["create", "service", "clusterip", "kept", "--tcp=80:8080"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    // Watches that would otherwise hold the graceful shutdown open for 30 minutes.
    let watches: Vec<Running> = [["get", "svc", "-A", "-w"], ["get", "pods", "-A", "-w"]]
        .iter()
        .map(|args| {
            Running(
                kubectl(addr)
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    signal(&up.0, "-INT");
    let (status, took) = wait_exit(&mut up.0, Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "after {took:?}");
    drop(watches);
    // The store was closed cleanly: the next start has the Service.
    let mut again = spawn(&up_args, &data);
    wait_ready(addr);
    let got = kubectl(addr)
        .args(["get", "svc", "kept", "-o", "jsonpath={.metadata.name}"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "kept");
    signal(&again.0, "-TERM");
    let (status, _) = wait_exit(&mut again.0, Duration::from_secs(2));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_request_in_flight_gets_the_grace_period_and_a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let args = ["apiserver", "--listen", &addr.to_string()];

    // SIGTERM: the stuck request holds the stop for the grace period, not longer.
    let mut api = spawn(&args, &dir.path().join("a"));
    wait_listening(addr);
    let _upload = stuck_upload(addr);
    std::thread::sleep(Duration::from_millis(200));
    signal(&api.0, "-TERM");
    let (status, took) = wait_exit(&mut api.0, Duration::from_secs(2));
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_millis(1000),
        "the request in flight was given its grace period ({took:?})"
    );

    // Two SIGINTs: the second ends the process while the stop is still waiting.
    let mut api = spawn(&args, &dir.path().join("b"));
    wait_listening(addr);
    let _upload = stuck_upload(addr);
    std::thread::sleep(Duration::from_millis(200));
    signal(&api.0, "-INT");
    std::thread::sleep(Duration::from_millis(200));
    signal(&api.0, "-INT");
    let (status, took) = wait_exit(&mut api.0, Duration::from_secs(1));
    assert_eq!(status.code(), Some(130), "after {took:?}");
    assert!(took < Duration::from_millis(800), "{took:?}");
}

#[test]
fn proxy_and_dns_stop_on_a_signal_even_while_waiting_for_the_api() {
    // An address that accepts connections and never answers: start-up waits on it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let master = format!("http://{}", silent.local_addr().unwrap());
    for args in [
        vec![
            "proxy",
            "--master",
            &master,
            "--healthz-bind-address",
            "",
            "--metrics-bind-address",
            "",
        ],
        vec![
            "dns",
            "--master",
            &master,
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "",
            "--no-forward",
        ],
    ] {
        let mut child = Running(
            Command::new(env!("CARGO_BIN_EXE_svcnet"))
                .args(&args)
                .env("RUST_LOG", "off")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "{} is waiting for the API",
            args[0]
        );
        signal(&child.0, "-INT");
        let (status, _) = wait_exit(&mut child.0, Duration::from_secs(2));
        assert_eq!(status.code(), Some(0), "{}", args[0]);
    }
}
