//! The lab leaves nothing behind: dropping it (also while a test panics) removes every
//! namespace and kills what ran inside, and a new lab sweeps namespaces of runs that died.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{netns_list, process_gone};
use svcnet_lab::{Lab, NETNS_PREFIX, skip_unless_privileged};

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A namespace made by hand, deleted however the test ends.
struct HandMadeNetns(String);

impl HandMadeNetns {
    fn add(name: String) -> Self {
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name}");
        Self(name)
    }
}

impl Drop for HandMadeNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn dropping_the_lab_removes_namespaces_and_processes() {
    if !skip_unless_privileged("dropping_the_lab_removes_namespaces_and_processes") {
        return;
    }
    let mut lab = Lab::new("drop").unwrap();
    let node = lab.add_node("node1").unwrap();
    let pod = lab.add_pod(&node, "sleeper").unwrap();
    let guarded = lab.spawn(&pod.netns, "sleep", &["1000"]).unwrap();
    // Started without a guard, as a server launched by other means would be.
    let mut unguarded = lab
        .command(&node.netns, "sleep")
        .unwrap()
        .arg("1000")
        .spawn()
        .unwrap();
    lab.wait_until_inside(&node.netns, unguarded.id(), || false);
    let names = lab.namespaces().to_vec();
    assert_eq!(names.len(), 4, "fabric, control, node, pod: {names:?}");
    let listed = netns_list();
    assert!(names.iter().all(|name| listed.contains(name)), "{listed:?}");

    drop(lab);
    let listed = netns_list();
    assert!(
        names.iter().all(|name| !listed.contains(name)),
        "left: {listed:?}"
    );
    // A killed process leaves its namespaces early in its exit, so it can still be listed
    // for a moment after the namespace is gone: wait for it to be reaped or a zombie.
    wait_until("the guarded process is gone", || process_gone(guarded.id()));
    wait_until("the unguarded process is gone", || {
        process_gone(unguarded.id())
    });
    let _ = unguarded.wait();
    drop(guarded);
}

#[test]
fn a_panicking_test_still_removes_its_namespaces() {
    if !skip_unless_privileged("a_panicking_test_still_removes_its_namespaces") {
        return;
    }
    let mut names = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lab = Lab::new("panic").unwrap();
        let node = lab.add_node("node1").unwrap();
        lab.add_pod(&node, "doomed").unwrap();
        names = lab.namespaces().to_vec();
        panic!("deliberate panic with a live lab");
    }));
    assert!(outcome.is_err());
    assert_eq!(names.len(), 4);
    let listed = netns_list();
    assert!(
        names.iter().all(|name| !listed.contains(name)),
        "left: {listed:?}"
    );
}

#[test]
fn new_labs_sweep_namespaces_whose_creator_died() {
    if !skip_unless_privileged("new_labs_sweep_namespaces_whose_creator_died") {
        return;
    }
    // No process can have a PID above pid_max, so this creator is certainly dead.
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stale = HandMadeNetns::add(format!("{NETNS_PREFIX}{}-0-x", pid_max + 1));
    // A process left running in it, as a crashed run's server would be.
    let mut leftover = Command::new("ip")
        .args(["netns", "exec", &stale.0, "sleep", "1000"])
        .spawn()
        .unwrap();
    // PID 1 is alive: its namespaces stand for a concurrently running test and must stay.
    let live = HandMadeNetns::add(format!("{NETNS_PREFIX}1-0-x"));
    // Not of our naming scheme at all.
    let foreign = HandMadeNetns::add(format!("{NETNS_PREFIX}not-a-pid-{}", std::process::id()));

    let lab = Lab::new("sweep").unwrap();
    let listed = netns_list();
    assert!(
        !listed.contains(&stale.0),
        "stale namespace survived: {listed:?}"
    );
    assert!(
        listed.contains(&live.0),
        "live creator's namespace was swept"
    );
    assert!(listed.contains(&foreign.0), "foreign namespace was swept");
    wait_until("the leftover process is killed", || {
        process_gone(leftover.id())
    });
    let _ = leftover.wait();
    drop(lab);
}
