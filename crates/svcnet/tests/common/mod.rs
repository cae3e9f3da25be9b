//! Shared helpers for the `svcnet` binary's tests: a kill-on-drop guard for spawned processes, a
//! free loopback address, and polling until something succeeds.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

/// Kills and reaps the child when the test ends, also on failure.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address whose port was free a moment ago.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Calls `attempt` every 100 ms until it returns `Ok`, and returns that value. Past `timeout`
/// a failed attempt panics with `what` and the attempt's error.
pub fn poll<T>(timeout: Duration, what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(error) => assert!(Instant::now() < deadline, "{what}: {error}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
