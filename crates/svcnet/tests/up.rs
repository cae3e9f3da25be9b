//! `svcnet up` does what the README says: a working API server and a kubeconfig for kubectl.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Running, free_port, poll};

#[test]
fn up_serves_kubectl_with_the_written_kubeconfig() {
    let have_kubectl = Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_kubectl {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl is required under CI"
        );
        eprintln!("skipping: kubectl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let data = dir.path().join("svcnet-data");
    let mut up = Running(
        Command::new(env!("CARGO_BIN_EXE_svcnet"))
            .args([
                "up",
                "--listen",
                &addr.to_string(),
                "--dns-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The banner names the DNS address; keep draining stdout so the server never hits EPIPE.
    let stdout = up.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("cluster DNS on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let dns = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("banner with the DNS address");
    let dns: std::net::SocketAddr = dns.parse().unwrap();
    let kubeconfig = data.join("kubeconfig");
    let out = poll(Duration::from_secs(30), "svcnet up never answered", || {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "get",
                "svc",
                "kubernetes",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ])
            .env("HOME", dir.path())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(out)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "10.96.0.1");
    // DNS answers for the kubernetes Service (polled: the index fills after the first sync).
    if Command::new("sh")
        .args(["-c", "command -v dig"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        poll(Duration::from_secs(30), "no DNS answer", || {
            let out = Command::new("dig")
                .args([
                    &format!("@{}", dns.ip()),
                    "-p",
                    &dns.port().to_string(),
                    "+short",
                    "+time=2",
                    "+tries=1",
                    "kubernetes.default.svc.cluster.local",
                    "A",
                ])
                .output()
                .unwrap();
            let answer = String::from_utf8_lossy(&out.stdout);
            if answer.trim() == "10.96.0.1" {
                Ok(())
            } else {
                Err(answer.into_owned())
            }
        });
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dig is required under CI"
        );
    }
    // svcnet env prints what a pod in `default` gets.
    let out = Command::new(env!("CARGO_BIN_EXE_svcnet"))
        .args([
            "env",
            "--master",
            &format!("http://{addr}"),
            "-n",
            "default",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l == "KUBERNETES_SERVICE_HOST=10.96.0.1"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443"),
        "{text}"
    );
}

#[test]
fn proxy_flags_and_unreachable_api_give_one_line_errors() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_svcnet"))
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    let (code, err) = run(&[
        "proxy",
        "--master",
        "http://127.0.0.1:1",
        "--healthz-bind-address",
        "",
        "--metrics-bind-address",
        "",
    ]);
    assert_ne!(code, Some(0));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot reach the API server at http://127.0.0.1:1"),
        "{err}"
    );
    let (code, err) = run(&[
        "proxy",
        "--master",
        "http://127.0.0.1:1",
        "--proxy-mode",
        "turbo",
    ]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--proxy-mode \"turbo\""), "{err}");
    let (code, err) = run(&["proxy", "--scheduler", "fastest"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown scheduler \"fastest\""), "{err}");
    let (code, err) = run(&["proxy", "--min-sync-period", "soon"]);
    assert_eq!(code, Some(2), "{err}");
}
