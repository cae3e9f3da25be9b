//! Namespace life cycle through the `ip` command: names that record their creator, creation,
//! teardown, the sweep of namespaces whose creator died, and the privilege probe.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Every namespace the crate creates starts with this, followed by the creating process's PID:
/// `svcnet-test-<pid>-<lab>-<tag>-<role>`. The sweep only ever looks at names of this shape.
pub const NETNS_PREFIX: &str = "svcnet-test-";

/// How long teardown waits for killed processes to leave a namespace before deleting it anyway.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Numbers the labs (and privilege probes) of this process, so parallel tests never collide.
static NEXT_SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// `svcnet-test-<pid>-<n>-`: the start of every namespace name of one lab.
pub(crate) fn lab_prefix() -> String {
    let sequence = NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{NETNS_PREFIX}{}-{sequence}-", std::process::id())
}

/// The PID encoded in a namespace name of ours, or `None` for any other name.
pub(crate) fn creator_pid(netns: &str) -> Option<u32> {
    let rest = netns.strip_prefix(NETNS_PREFIX)?;
    let (pid, rest) = rest.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || rest.is_empty() {
        return None;
    }
    pid.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

// === running commands ===

fn describe(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a set-up command to completion and fails unless it exits with success.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<Output> {
    let command = describe(program, args);
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

/// `ip <args>`.
pub(crate) fn ip(args: &[&str]) -> Result<Output> {
    run("ip", args)
}

/// `ip -n <netns> <args>`: the namespace is always explicit, so a missing `-n` can never
/// turn into a change in the host namespace.
pub(crate) fn ip_in(netns: &str, args: &[&str]) -> Result<Output> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    ip(&full)
}

/// `sysctl -w key=value` inside a namespace.
pub(crate) fn sysctl_in(netns: &str, key: &str, value: &str) -> Result<()> {
    let setting = format!("{key}={value}");
    run(
        "ip",
        &["netns", "exec", netns, "sysctl", "-q", "-w", &setting],
    )?;
    Ok(())
}

// === namespace life cycle ===

/// Names of all namespaces `ip netns` knows, ours or not.
pub(crate) fn list() -> Result<Vec<String>> {
    let output = ip(&["netns", "list"])?;
    // Lines look like `name` or `name (id: 3)`.
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

pub(crate) fn add(netns: &str) -> Result<()> {
    ip(&["netns", "add", netns])?;
    Ok(())
}

/// Kills every process inside the namespace and waits (bounded) until none is left, so that
/// deleting it really frees its links and addresses instead of leaving them held by a process.
/// Whether process `pid` has entered namespace `netns` (the same nsfs inode as its bind mount
/// under /run/netns).
pub(crate) fn is_inside(netns: &str, pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::metadata(Path::new("/run/netns").join(netns));
    let own = std::fs::metadata(format!("/proc/{pid}/ns/net"));
    matches!((target, own), (Ok(t), Ok(o)) if t.dev() == o.dev() && t.ino() == o.ino())
}

pub(crate) fn kill_all(netns: &str) -> Result<()> {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let output = ip(&["netns", "pids", netns])?;
        let pids: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            // Never signal ourselves, even if a caller moved this process in somehow.
            .filter(|pid| *pid != std::process::id().to_string())
            .map(str::to_owned)
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                netns,
                ?pids,
                "processes survived SIGKILL; deleting namespace anyway"
            );
            return Ok(());
        }
        let mut args = vec!["-KILL"];
        args.extend(pids.iter().map(String::as_str));
        // A process may exit between listing and killing; `kill` then fails for that PID only.
        let _ = Command::new("kill")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn delete(netns: &str) -> Result<()> {
    ip(&["netns", "delete", netns])?;
    Ok(())
}

/// Kills what runs in the namespace and deletes it, logging rather than failing: teardown
/// should get as far as it can.
pub(crate) fn teardown(netns: &str) {
    if let Err(error) = kill_all(netns) {
        tracing::warn!(netns, %error, "could not list processes in namespace");
    }
    if let Err(error) = delete(netns) {
        tracing::warn!(netns, %error, "could not delete namespace");
    }
}

/// Removes namespaces named by this crate whose creating process is gone (a test run that was
/// killed or aborted before its [`crate::Lab`] was dropped), killing anything still running in
/// them. Namespaces of live processes, including concurrently running tests, and names of any
/// other shape are left alone. Returns the names removed.
///
/// [`crate::Lab::new`] calls this; it is public for a `svcnet lab clean`-style command.
pub fn sweep_stale_namespaces() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for netns in list()? {
        let Some(pid) = creator_pid(&netns) else {
            continue;
        };
        if pid == std::process::id() || pid_alive(pid) {
            continue;
        }
        tracing::info!(netns, pid, "removing stale lab namespace");
        teardown(&netns);
        removed.push(netns);
    }
    Ok(removed)
}

// === privileges ===

/// Tells whether this process can build labs: it must be able to create a namespace and
/// configure a link in it (in practice: root, with iproute2 installed). The answer is probed
/// once, with a throw-away namespace, and remembered.
pub fn require_privileges() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe_privileges).clone()
}

fn probe_privileges() -> Result<(), String> {
    let netns = format!("{}probe", lab_prefix());
    let describe_failure = |error: Error| {
        let euid = effective_uid().map_or_else(|| "unknown".to_owned(), |uid| uid.to_string());
        format!("cannot create network namespaces (euid {euid}): {error}")
    };
    add(&netns).map_err(describe_failure)?;
    let configured = ip_in(&netns, &["link", "set", "lo", "up"]).map_err(describe_failure);
    teardown(&netns);
    configured.map(drop)
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The privilege check as a test wants it: `true` when labs can be built; otherwise, under
/// `CI=true` it panics (a CI run must not pass by skipping), and elsewhere it prints why the test
/// is skipped and returns `false`.
///
/// ```no_run
/// if !svcnet_lab::skip_unless_privileged("pod_to_pod") {
///     return;
/// }
/// ```
pub fn skip_unless_privileged(test: &str) -> bool {
    match require_privileges() {
        Ok(()) => true,
        Err(why) if running_in_ci() => {
            panic!("{test}: network namespaces are required when CI=true: {why}")
        }
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creator_pid_reads_only_our_names() {
        assert_eq!(creator_pid("svcnet-test-1234-0-e2e-fabric"), Some(1234));
        assert_eq!(creator_pid("svcnet-test-999999-0-x"), Some(999_999));
        assert_eq!(creator_pid("svcnet-test-1234-"), None);
        assert_eq!(creator_pid("svcnet-test-1234"), None);
        assert_eq!(creator_pid("svcnet-test-abc-0-x"), None);
        assert_eq!(creator_pid("svcnet-test--0-x"), None);
        assert_eq!(creator_pid("svcnet-test-+12-0-x"), None);
        assert_eq!(creator_pid("svcnet-1234-0-x"), None);
        assert_eq!(creator_pid("cni-1234-0-x"), None);
    }

    #[test]
    fn lab_prefixes_are_unique_and_parse_back() {
        let first = lab_prefix();
        let second = lab_prefix();
        assert_ne!(first, second);
        assert_eq!(
            creator_pid(&format!("{first}fabric")),
            Some(std::process::id())
        );
    }
}
