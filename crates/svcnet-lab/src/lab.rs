//! The lab topology: a fabric bridge joining nodes and hosts, pods on each node's bridge.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

use ipnet::Ipv4Net;

use crate::netns::{self, ip_in, sysctl_in};
use crate::{Error, LabProcess, Result};

/// The network that joins nodes and hosts (node *N* is `.N`, the control host `.254`).
pub const FABRIC_CIDR: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 77, 0), 24);
/// The cluster's pod network (what a proxy takes as `--cluster-cidr`); node *N* owns
/// `10.244.N.0/24` of it.
pub const POD_CIDR: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 244, 0, 0), 16);
/// The service CIDR nodes route to their bridge unless [`Lab::with_service_cidr`] says otherwise
/// (kube-apiserver's default `--service-cluster-ip-range`).
pub const DEFAULT_SERVICE_CIDR: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 96, 0, 0), 12);

/// The bridge in the fabric namespace that every node and host plugs into.
pub const FABRIC_BRIDGE: &str = "br0";
/// The bridge in each node namespace that its pods plug into, holding the pod gateway address.
pub const NODE_BRIDGE: &str = "cbr0";
/// The fabric-facing interface of a node or host.
pub const UPLINK_INTERFACE: &str = "eth0";
/// The interface inside each pod.
pub const POD_INTERFACE: &str = "eth0";

/// The control host's address on the fabric; extra hosts count down from just below it.
const CONTROL_OCTET: u8 = 254;

/// A machine on the fabric that is not a node: the control host (API server) or an outside
/// client added with [`Lab::add_host`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub netns: String,
    /// Its address on [`FABRIC_CIDR`], on [`UPLINK_INTERFACE`].
    pub ip: Ipv4Addr,
}

/// A node: a namespace on the fabric that routes for its pods, as a Kubernetes node does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub netns: String,
    /// 1 for the first node added, 2 for the next, …; the last octet of [`Node::ip`] and the
    /// third octet of [`Node::pod_cidr`].
    pub index: u8,
    /// The node's address on [`FABRIC_CIDR`] (its InternalIP), on [`UPLINK_INTERFACE`].
    pub ip: Ipv4Addr,
    /// `10.244.<index>.0/24`: the Node object's `spec.podCIDR`.
    pub pod_cidr: Ipv4Net,
    /// The first address of the pod CIDR, on [`NODE_BRIDGE`]: the pods' default gateway.
    pub bridge_ip: Ipv4Addr,
}

/// A pod: a namespace with one interface on its node's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub netns: String,
    /// Taken from the node's pod CIDR, on [`POD_INTERFACE`].
    pub ip: Ipv4Addr,
    /// The [`Node::name`] of the node it runs on.
    pub node: String,
    /// The node-side end of the pod's veth, a port of [`NODE_BRIDGE`] with hairpin on.
    pub host_veth: String,
}

/// An isolated cluster network made of network namespaces, which it owns: dropping it kills
/// every process inside them and deletes them all.
///
/// A failed [`Lab::add_node`] may leave the lab half-built (a test usually ends there anyway);
/// a failed [`Lab::add_pod`] is undone.
///
/// ```text
///  fabric netns: br0 ─┬─ n1 ══ eth0 node1 (192.168.77.1)  cbr0 10.244.1.1 ─┬─ veth0 ══ eth0 pod (10.244.1.2)
///                     ├─ n2 ══ eth0 node2 (192.168.77.2)  cbr0 10.244.2.1 ─┴─ …
///                     └─ h254 ══ eth0 control (192.168.77.254)
/// ```
#[derive(Debug)]
pub struct Lab {
    /// `svcnet-test-<pid>-<n>-<tag>-`, the start of every namespace name of this lab.
    prefix: String,
    service_cidr: Ipv4Net,
    fabric: String,
    /// The control host first, then hosts from [`Lab::add_host`].
    hosts: Vec<Host>,
    nodes: Vec<NodeState>,
    pods: Vec<Pod>,
    /// Every namespace created and not yet deleted, in creation order; teardown goes backwards.
    namespaces: Vec<String>,
    /// Numbers pods lab-wide, so pod namespaces and node-side veth names never repeat.
    next_pod: u32,
}

#[derive(Debug)]
struct NodeState {
    node: Node,
    addresses: PodAddresses,
}

// === impl Lab ===

impl Lab {
    /// Builds the fabric (a namespace with bridge [`FABRIC_BRIDGE`]) and the control host at
    /// `192.168.77.254`, after sweeping namespaces left by crashed runs. `tag` (letters, digits,
    /// `-`, `_`, `.`) goes into every namespace name to tell labs apart in `ip netns list`.
    /// Nodes route [`DEFAULT_SERVICE_CIDR`] to their bridge.
    pub fn new(tag: &str) -> Result<Lab> {
        Self::with_service_cidr(tag, DEFAULT_SERVICE_CIDR)
    }

    /// [`Lab::new`] with another service CIDR for the nodes' route.
    pub fn with_service_cidr(tag: &str, service_cidr: Ipv4Net) -> Result<Lab> {
        validate_name("lab tag", tag)?;
        let removed = netns::sweep_stale_namespaces()?;
        if !removed.is_empty() {
            tracing::info!(?removed, "swept stale lab namespaces");
        }
        let prefix = format!("{}{tag}-", netns::lab_prefix());
        let mut lab = Lab {
            fabric: format!("{prefix}fabric"),
            prefix,
            service_cidr: service_cidr.trunc(),
            hosts: Vec::new(),
            nodes: Vec::new(),
            pods: Vec::new(),
            namespaces: Vec::new(),
            next_pod: 0,
        };
        // From here on a failure drops `lab`, which removes whatever was already made.
        lab.create_netns("fabric")?;
        ip_in(
            &lab.fabric,
            &["link", "add", FABRIC_BRIDGE, "type", "bridge"],
        )?;
        ip_in(&lab.fabric, &["link", "set", FABRIC_BRIDGE, "up"])?;
        lab.attach_host("control", CONTROL_OCTET)?;
        Ok(lab)
    }

    /// The control host at `192.168.77.254`, meant for the API server. It has a route to every
    /// node's pod CIDR via that node, like a control-plane machine of a real cluster, so pods
    /// can reach it through a Service without masquerading.
    pub fn control(&self) -> &Host {
        &self.hosts[0]
    }

    /// Adds a host on the fabric outside the cluster (e.g. a client of NodePorts), at
    /// `192.168.77.253` and downwards. Unlike the control host it has no routes to pods.
    pub fn add_host(&mut self, name: &str) -> Result<Host> {
        validate_name("host name", name)?;
        if self.hosts.iter().any(|host| host.name == name) {
            return Err(Error::Duplicate {
                kind: "host",
                name: name.to_owned(),
            });
        }
        let lowest = self.hosts.iter().map(|host| host.ip.octets()[3]).min();
        let octet = lowest.unwrap_or(CONTROL_OCTET + 1) - 1;
        if usize::from(octet) <= self.nodes.len() {
            return Err(Error::Exhausted("a host on the fabric".to_owned()));
        }
        self.attach_host(name, octet)
    }

    /// Adds a node: a namespace with [`UPLINK_INTERFACE`] at `192.168.77.<index>/24` on the
    /// fabric and a bridge [`NODE_BRIDGE`] holding `10.244.<index>.1/24`, with
    /// `net.ipv4.ip_forward=1` and `net.bridge.bridge-nf-call-iptables=1`. Routes: the service
    /// CIDR to the bridge (without it a local connect to a ClusterIP fails with "Network is
    /// unreachable" before any netfilter hook sees it), and each other node's pod CIDR via that
    /// node's IP, in both directions; the control host gets a route to the new pod CIDR too.
    pub fn add_node(&mut self, name: &str) -> Result<Node> {
        validate_name("node name", name)?;
        if self.nodes.iter().any(|state| state.node.name == name) {
            return Err(Error::Duplicate {
                kind: "node",
                name: name.to_owned(),
            });
        }
        let lowest_host = self.hosts.iter().map(|host| host.ip.octets()[3]).min();
        let index = u8::try_from(self.nodes.len() + 1)
            .ok()
            .filter(|index| lowest_host.is_none_or(|lowest| *index < lowest))
            .ok_or_else(|| Error::Exhausted("a node on the fabric".to_owned()))?;

        let netns = self.create_netns(&format!("node-{name}"))?;
        let ip = self.attach_to_fabric(&netns, index, &format!("n{index}"))?;
        let pod_cidr = Ipv4Net::new_assert(Ipv4Addr::new(10, 244, index, 0), 24);
        let bridge_ip = Ipv4Addr::new(10, 244, index, 1);

        // A bridge takes the lowest MAC of its ports unless given one, so its MAC would change
        // as pods come and go and the pods' cached gateway entry would point at a pod's veth.
        let mac = format!("02:00:0a:f4:{index:02x}:01");
        ip_in(
            &netns,
            &[
                "link",
                "add",
                NODE_BRIDGE,
                "address",
                &mac,
                "type",
                "bridge",
            ],
        )?;
        ip_in(
            &netns,
            &[
                "addr",
                "add",
                &format!("{bridge_ip}/24"),
                "dev",
                NODE_BRIDGE,
            ],
        )?;
        ip_in(&netns, &["link", "set", NODE_BRIDGE, "up"])?;

        sysctl_in(&netns, "net.ipv4.ip_forward", "1")?;
        // Per namespace, and without it pod → ClusterIP traffic that stays on the bridge skips
        // the NAT rules. It only exists when the host kernel has br_netfilter loaded, which the
        // lab must not do itself, so a failure is reported rather than fatal.
        if let Err(error) = sysctl_in(&netns, "net.bridge.bridge-nf-call-iptables", "1") {
            tracing::warn!(netns, %error, "bridge-nf-call-iptables unavailable (br_netfilter not loaded?)");
        }

        ip_in(
            &netns,
            &[
                "route",
                "add",
                &self.service_cidr.to_string(),
                "dev",
                NODE_BRIDGE,
            ],
        )?;
        for other in &self.nodes {
            let other = &other.node;
            route_via(&netns, other.pod_cidr, other.ip)?;
            route_via(&other.netns, pod_cidr, ip)?;
        }
        route_via(&self.hosts[0].netns, pod_cidr, ip)?;

        let node = Node {
            name: name.to_owned(),
            netns,
            index,
            ip,
            pod_cidr,
            bridge_ip,
        };
        self.nodes.push(NodeState {
            node: node.clone(),
            addresses: PodAddresses::new(pod_cidr),
        });
        Ok(node)
    }

    /// Adds a pod on `node`: a namespace whose [`POD_INTERFACE`] gets the next free address of
    /// the node's pod CIDR and a default route via [`Node::bridge_ip`], `lo` up; the other end of
    /// its veth ([`Pod::host_veth`]) is a port of the node's bridge with hairpin on, as kubelet
    /// sets it, so a pod can reach itself through a Service.
    pub fn add_pod(&mut self, node: &Node, name: &str) -> Result<Pod> {
        validate_name("pod name", name)?;
        let state = self
            .nodes
            .iter_mut()
            .find(|state| state.node.name == node.name && state.node.netns == node.netns)
            .ok_or_else(|| Error::UnknownNode(node.name.clone()))?;
        let ip = state.addresses.allocate().ok_or_else(|| {
            Error::Exhausted(format!("a pod on node {:?} ({})", node.name, node.pod_cidr))
        })?;
        let node = state.node.clone();
        let sequence = self.next_pod;
        self.next_pod += 1;
        let role = format!("pod{sequence}-{name}");
        let pod = Pod {
            name: name.to_owned(),
            netns: format!("{}{role}", self.prefix),
            ip,
            node: node.name.clone(),
            host_veth: format!("veth{sequence}"),
        };
        match self.build_pod(&node, &pod, &role) {
            Ok(()) => {
                self.pods.push(pod.clone());
                Ok(pod)
            }
            Err(error) => {
                if self.namespaces.contains(&pod.netns) {
                    netns::teardown(&pod.netns);
                    self.namespaces.retain(|netns| *netns != pod.netns);
                }
                self.release_pod_ip(&pod);
                Err(error)
            }
        }
    }

    fn build_pod(&mut self, node: &Node, pod: &Pod, role: &str) -> Result<()> {
        let netns = self.create_netns(role)?;
        ip_in(&netns, &["link", "set", "lo", "up"])?;
        ip_in(
            &netns,
            &[
                "link",
                "add",
                POD_INTERFACE,
                "type",
                "veth",
                "peer",
                "name",
                &pod.host_veth,
                "netns",
                &node.netns,
            ],
        )?;
        ip_in(
            &node.netns,
            &["link", "set", &pod.host_veth, "master", NODE_BRIDGE],
        )?;
        ip_in(
            &node.netns,
            &[
                "link",
                "set",
                &pod.host_veth,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ],
        )?;
        ip_in(&node.netns, &["link", "set", &pod.host_veth, "up"])?;
        ip_in(
            &netns,
            &[
                "addr",
                "add",
                &format!("{}/24", pod.ip),
                "dev",
                POD_INTERFACE,
            ],
        )?;
        ip_in(&netns, &["link", "set", POD_INTERFACE, "up"])?;
        ip_in(
            &netns,
            &[
                "route",
                "add",
                "default",
                "via",
                &node.bridge_ip.to_string(),
                "dev",
                POD_INTERFACE,
            ],
        )?;
        Ok(())
    }

    /// Removes a pod: kills what runs in it, deletes its veth and namespace and frees its
    /// address for later pods on the node.
    pub fn remove_pod(&mut self, pod: &Pod) -> Result<()> {
        let position = self
            .pods
            .iter()
            .position(|known| known.netns == pod.netns)
            .ok_or_else(|| Error::UnknownPod(pod.netns.clone()))?;
        let pod = self.pods.remove(position);
        netns::kill_all(&pod.netns)?;
        // Deleting the veth from the node side takes the pod off the bridge at once, instead of
        // whenever the kernel gets round to cleaning up the namespace.
        if let Some(state) = self.nodes.iter().find(|state| state.node.name == pod.node) {
            ip_in(&state.node.netns, &["link", "del", &pod.host_veth])?;
        }
        netns::delete(&pod.netns)?;
        self.namespaces.retain(|netns| *netns != pod.netns);
        self.release_pod_ip(&pod);
        Ok(())
    }

    fn release_pod_ip(&mut self, pod: &Pod) {
        if let Some(state) = self
            .nodes
            .iter_mut()
            .find(|state| state.node.name == pod.node)
        {
            state.addresses.release(pod.ip);
        }
    }

    /// The pods not yet removed, in the order they were added.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Every namespace this lab currently owns, in creation order.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    // === running programs ===

    /// A command that runs `program` inside `netns` (`ip netns exec`), for callers that want to
    /// choose arguments, environment and stdio themselves. Only namespaces of this lab are
    /// accepted. Unlike [`Lab::spawn`], a child started from it is not guarded, but the lab still
    /// kills it on drop while it is inside one of the lab's namespaces.
    pub fn command(&self, netns: &str, program: &str) -> Result<Command> {
        if !self.namespaces.iter().any(|owned| owned == netns) {
            return Err(Error::UnknownNamespace(netns.to_owned()));
        }
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns, program]);
        Ok(command)
    }

    /// Runs `program args…` inside `netns` to completion and returns its output, whatever its
    /// exit status; stdin is empty. Put a timeout on anything that might wait on the network.
    pub fn exec(&self, netns: &str, program: &str, args: &[&str]) -> Result<Output> {
        let mut command = self.command(netns, program)?;
        command.args(args).stdin(Stdio::null());
        command.output().map_err(|source| Error::Spawn {
            command: describe_program(netns, program, args),
            source,
        })
    }

    /// Starts `program args…` inside `netns` with stdin empty and stdout and stderr piped (read
    /// them, or a chatty program blocks once a pipe fills; use [`Lab::command`] for other
    /// stdio). The returned guard kills the program when dropped.
    pub fn spawn(&self, netns: &str, program: &str, args: &[&str]) -> Result<LabProcess> {
        let mut command = self.command(netns, program)?;
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            command: describe_program(netns, program, args),
            source,
        })?;
        // Returned only once inside, so dropping the lab right after still finds and kills it.
        self.wait_until_inside(netns, child.id(), || {
            child.try_wait().ok().flatten().is_some()
        });
        Ok(LabProcess::new(child))
    }

    /// Waits (up to a second) until process `pid`, started with [`Lab::command`], has entered
    /// `netns`, or `exited()` says it is gone. `ip netns exec` enters the namespace only after
    /// it started; until then the lab's teardown cannot see the process there.
    pub fn wait_until_inside(&self, netns: &str, pid: u32, mut exited: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !netns::is_inside(netns, pid) && !exited() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    // === building blocks ===

    /// Creates `<prefix><role>` and records it for teardown before anything else can fail.
    fn create_netns(&mut self, role: &str) -> Result<String> {
        let name = format!("{}{role}", self.prefix);
        netns::add(&name)?;
        self.namespaces.push(name.clone());
        Ok(name)
    }

    fn attach_host(&mut self, name: &str, octet: u8) -> Result<Host> {
        let netns = self.create_netns(&format!("host-{name}"))?;
        let ip = self.attach_to_fabric(&netns, octet, &format!("h{octet}"))?;
        let host = Host {
            name: name.to_owned(),
            netns,
            ip,
        };
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// Plugs `netns` into the fabric bridge with a veth ([`UPLINK_INTERFACE`] inside, `port` in
    /// the fabric) and gives it `192.168.77.<octet>/24`. The veth is created inside `netns` with
    /// its peer placed straight into the fabric, so no interface ever exists in the host
    /// namespace, even briefly.
    fn attach_to_fabric(&self, netns: &str, octet: u8, port: &str) -> Result<Ipv4Addr> {
        let ip = Ipv4Addr::new(192, 168, 77, octet);
        ip_in(netns, &["link", "set", "lo", "up"])?;
        ip_in(
            netns,
            &[
                "link",
                "add",
                UPLINK_INTERFACE,
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                &self.fabric,
            ],
        )?;
        ip_in(
            &self.fabric,
            &["link", "set", port, "master", FABRIC_BRIDGE, "up"],
        )?;
        ip_in(
            netns,
            &["addr", "add", &format!("{ip}/24"), "dev", UPLINK_INTERFACE],
        )?;
        ip_in(netns, &["link", "set", UPLINK_INTERFACE, "up"])?;
        Ok(ip)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Kill everything first: a process left in any namespace would keep it (and the veths
        // into its neighbours) alive after `ip netns delete`.
        for netns in self.namespaces.iter().rev() {
            if let Err(error) = netns::kill_all(netns) {
                tracing::warn!(netns, %error, "could not list processes in lab namespace");
            }
        }
        for netns in self.namespaces.iter().rev() {
            if let Err(error) = netns::delete(netns) {
                tracing::warn!(netns, %error, "could not delete lab namespace");
            }
        }
        self.namespaces.clear();
    }
}

fn route_via(netns: &str, destination: Ipv4Net, gateway: Ipv4Addr) -> Result<()> {
    ip_in(
        netns,
        &[
            "route",
            "add",
            &destination.to_string(),
            "via",
            &gateway.to_string(),
            "dev",
            UPLINK_INTERFACE,
        ],
    )?;
    Ok(())
}

fn describe_program(netns: &str, program: &str, args: &[&str]) -> String {
    let mut words = vec!["ip", "netns", "exec", netns, program];
    words.extend_from_slice(args);
    words.join(" ")
}

/// Names become part of namespace names (files under /run/netns), so keep them to a safe
/// alphabet and length.
fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > 63 {
        Some("must be at most 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some("may contain only ASCII letters, digits, '-', '_' and '.'")
    } else if name.starts_with(['-', '.']) {
        Some("must not start with '-' or '.'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: format!("{kind} {name}"),
            reason,
        }),
        None => Ok(()),
    }
}

// === impl PodAddresses ===

/// Hands out a /24 pod CIDR's host addresses (`.2` to `.254`; `.1` is the gateway) the way the
/// host-local IPAM plugin does: round robin from the last one given, so a just-freed address is
/// reused as late as possible and stale conntrack entries or ARP caches for it have aged out.
#[derive(Debug)]
struct PodAddresses {
    network: Ipv4Net,
    in_use: BTreeSet<u8>,
    /// Where the next search starts, as an offset from [`PodAddresses::FIRST`].
    next: u16,
}

impl PodAddresses {
    const FIRST: u8 = 2;
    const LAST: u8 = 254;
    const COUNT: u16 = (Self::LAST - Self::FIRST + 1) as u16;

    fn new(network: Ipv4Net) -> Self {
        Self {
            network,
            in_use: BTreeSet::new(),
            next: 0,
        }
    }

    fn allocate(&mut self) -> Option<Ipv4Addr> {
        let (offset, octet) = (0..Self::COUNT)
            .map(|step| (self.next + step) % Self::COUNT)
            .filter_map(|offset| {
                let octet = u8::try_from(offset).ok()?.checked_add(Self::FIRST)?;
                Some((offset, octet))
            })
            .find(|(_, octet)| !self.in_use.contains(octet))?;
        self.in_use.insert(octet);
        self.next = (offset + 1) % Self::COUNT;
        let [a, b, c, _] = self.network.network().octets();
        Some(Ipv4Addr::new(a, b, c, octet))
    }

    fn release(&mut self, ip: Ipv4Addr) {
        if self.network.contains(&ip) {
            self.in_use.remove(&ip.octets()[3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr() -> Ipv4Net {
        "10.244.3.0/24".parse().unwrap()
    }

    #[test]
    fn pod_addresses_start_after_the_gateway() {
        let mut addresses = PodAddresses::new(cidr());
        assert_eq!(addresses.allocate(), Some(Ipv4Addr::new(10, 244, 3, 2)));
        assert_eq!(addresses.allocate(), Some(Ipv4Addr::new(10, 244, 3, 3)));
    }

    #[test]
    fn pod_addresses_reuse_freed_ones_last() {
        let mut addresses = PodAddresses::new(cidr());
        let first = addresses.allocate().unwrap();
        addresses.release(first);
        assert_eq!(addresses.allocate(), Some(Ipv4Addr::new(10, 244, 3, 3)));
    }

    #[test]
    fn pod_addresses_run_out_then_wrap_to_freed() {
        let mut addresses = PodAddresses::new(cidr());
        let all: Vec<_> = std::iter::from_fn(|| addresses.allocate()).collect();
        assert_eq!(all.len(), 253);
        assert_eq!(all.last(), Some(&Ipv4Addr::new(10, 244, 3, 254)));
        assert!(!all.contains(&Ipv4Addr::new(10, 244, 3, 1)));
        addresses.release(Ipv4Addr::new(10, 244, 3, 100));
        assert_eq!(addresses.allocate(), Some(Ipv4Addr::new(10, 244, 3, 100)));
        assert_eq!(addresses.allocate(), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("pod name", "web-0.a_b").is_ok());
        assert!(validate_name("pod name", "").is_err());
        assert!(validate_name("pod name", "a/b").is_err());
        assert!(validate_name("pod name", "-a").is_err());
        assert!(validate_name("pod name", "..").is_err());
        assert!(validate_name("pod name", &"a".repeat(64)).is_err());
    }
}
