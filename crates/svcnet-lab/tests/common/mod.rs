//! Shared helpers for the lab's end-to-end tests: a TCP echo server and client run inside lab
//! namespaces with python3 (the test process itself cannot enter a namespace without `unsafe`
//! setns), and a view of `ip netns list`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use svcnet_lab::{Lab, LabProcess};

/// Accepts connections forever; answers each with what it received plus ` from <peer ip>`, so
/// a test also sees which source address arrived (i.e. that nothing was NATed on the way).
const ECHO_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    with c:
        data = c.recv(1024)
        c.sendall(data + b" from " + peer[0].encode())
"#;

const ECHO_CLIENT: &str = r#"
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as c:
    c.sendall(sys.argv[3].encode())
    print(c.recv(1024).decode())
"#;

/// Starts the echo server in `netns` and waits until it listens.
pub fn echo_server(lab: &Lab, netns: &str, port: u16) -> LabProcess {
    let mut server = lab
        .spawn(netns, "python3", &["-c", ECHO_SERVER, &port.to_string()])
        .expect("spawn echo server");
    let stdout = server.stdout.take().expect("piped stdout");
    let (lines, ready) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = lines.send(line);
    });
    match ready.recv_timeout(Duration::from_secs(10)) {
        Ok(line) if line.trim() == "ready" => server,
        other => {
            let _ = server.kill();
            let output = server.try_wait();
            panic!("echo server in {netns} did not start: {other:?} {output:?}");
        }
    }
}

/// Connects from `netns` to `ip:port`, sends `message` and returns the answer (or the client's
/// error output).
pub fn echo(
    lab: &Lab,
    netns: &str,
    ip: Ipv4Addr,
    port: u16,
    message: &str,
) -> Result<String, String> {
    let output = lab
        .exec(
            netns,
            "python3",
            &[
                "-c",
                ECHO_CLIENT,
                &ip.to_string(),
                &port.to_string(),
                message,
            ],
        )
        .expect("run echo client");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Every namespace name `ip netns list` shows.
pub fn netns_list() -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(output.status.success(), "ip netns list failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Whether a process is gone (or only a zombie waiting to be reaped by its parent).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}
