//! Isolated network-namespace topologies for svcnet's end-to-end tests, benchmarks and
//! `svcnet lab`.
//!
//! A [`Lab`] builds a small cluster network out of network namespaces and owns every one of
//! them: a fabric namespace whose bridge joins the [`Node`]s and the control [`Host`] (where the
//! API server runs), and [`Pod`] namespaces attached to their node's `cbr0` bridge. Nodes are set
//! up the way a proxy expects a real node to be (reference/kube-proxy.md §9): `ip_forward`,
//! `bridge-nf-call-iptables`, hairpin on bridge ports and a route for the service CIDR. Programs
//! run inside the namespaces through [`Lab::exec`] and [`Lab::spawn`] (`ip netns exec`); spawned
//! programs come back as a [`LabProcess`] guard.
//!
//! Nothing here touches the host namespace: every address, route and link lives in a namespace
//! the lab created, and none of them is linked to the host. Dropping the [`Lab`] (also while
//! unwinding from a panic) kills what runs inside its namespaces and deletes them, and
//! [`Lab::new`] first sweeps namespaces left by earlier runs that crashed (see
//! [`sweep_stale_namespaces`]). Tests call [`skip_unless_privileged`] (or
//! [`require_privileges`]) first, since namespaces need root.
//!
//! Everything is done with the `ip` command (iproute2) rather than netlink syscalls, which keeps
//! the crate free of `unsafe` and makes each step easy to replay by hand.
//!
//! Addresses, all of them only inside the lab's namespaces:
//!
//! | what | address | interface |
//! | --- | --- | --- |
//! | node *N* (1, 2, …) | `192.168.77.N/24` | `eth0` in the node, port `nN` on the fabric `br0` |
//! | control host | `192.168.77.254/24` | `eth0`, port `h254` on the fabric |
//! | extra hosts ([`Lab::add_host`]) | `192.168.77.253/24` downwards | `eth0`, port `hX` |
//! | node *N*'s pod CIDR | `10.244.N.0/24`, gateway `10.244.N.1` on the node's `cbr0` | |
//! | pods | `10.244.N.2` … `.254` | `eth0` in the pod, port `vethK` on `cbr0` |

mod lab;
mod netns;
mod process;

use std::process::ExitStatus;

pub use lab::{
    DEFAULT_SERVICE_CIDR, FABRIC_BRIDGE, FABRIC_CIDR, Host, Lab, NODE_BRIDGE, Node, POD_CIDR,
    POD_INTERFACE, Pod, UPLINK_INTERFACE,
};
pub use netns::{NETNS_PREFIX, require_privileges, skip_unless_privileged, sweep_stale_namespaces};
pub use process::LabProcess;

/// Errors from building or using a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command (`ip`, `kill`, or a program run in a namespace) could not be started.
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A set-up command ran but failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    /// A lab tag, node, host or pod name that cannot be part of a namespace name.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// A node or host with this name is already in the lab.
    #[error("{kind} {name:?} already exists in this lab")]
    Duplicate { kind: &'static str, name: String },
    /// No node with this name in the lab.
    #[error("no node {0:?} in this lab")]
    UnknownNode(String),
    /// No live pod with this namespace in the lab (never added, or already removed).
    #[error("no pod in namespace {0:?} in this lab")]
    UnknownPod(String),
    /// The namespace was not created by this lab, so the lab refuses to run anything in it.
    #[error("namespace {0:?} does not belong to this lab")]
    UnknownNamespace(String),
    /// An address range ran out (fabric addresses or a node's pod CIDR).
    #[error("no free address left for {0}")]
    Exhausted(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
