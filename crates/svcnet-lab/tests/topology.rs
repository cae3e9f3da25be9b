//! End-to-end checks of the lab topology: traffic between pods, nodes and the control host,
//! and the node set-up a service proxy relies on (reference/kube-proxy.md §9).

mod common;

use std::net::Ipv4Addr;

use common::{echo, echo_server, netns_list};
use svcnet_lab::{Error, Lab, NODE_BRIDGE, skip_unless_privileged};

fn stdout_of(lab: &Lab, netns: &str, program: &str, args: &[&str]) -> String {
    let output = lab.exec(netns, program, args).expect("exec");
    assert!(
        output.status.success(),
        "{program} {args:?} in {netns} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn pods_on_two_nodes_reach_each_other_without_nat() {
    if !skip_unless_privileged("pods_on_two_nodes_reach_each_other_without_nat") {
        return;
    }
    let mut lab = Lab::new("p2p").unwrap();
    let node1 = lab.add_node("node1").unwrap();
    let node2 = lab.add_node("node2").unwrap();
    let client = lab.add_pod(&node1, "client").unwrap();
    let server = lab.add_pod(&node2, "server").unwrap();
    assert_eq!(node1.ip, Ipv4Addr::new(192, 168, 77, 1));
    assert_eq!(node2.ip, Ipv4Addr::new(192, 168, 77, 2));
    assert_eq!(client.ip, Ipv4Addr::new(10, 244, 1, 2));
    assert_eq!(server.ip, Ipv4Addr::new(10, 244, 2, 2));

    let _server = echo_server(&lab, &server.netns, 8080);
    let answer = echo(&lab, &client.netns, server.ip, 8080, "hello").unwrap();
    assert_eq!(answer, format!("hello from {}", client.ip));

    // And back the other way, so both nodes' routes to the other's pod CIDR are used.
    let _client_side = echo_server(&lab, &client.netns, 8081);
    let answer = echo(&lab, &server.netns, client.ip, 8081, "back").unwrap();
    assert_eq!(answer, format!("back from {}", server.ip));
}

#[test]
fn nodes_reach_pods_and_the_control_host() {
    if !skip_unless_privileged("nodes_reach_pods_and_the_control_host") {
        return;
    }
    let mut lab = Lab::new("reach").unwrap();
    let node1 = lab.add_node("node1").unwrap();
    let node2 = lab.add_node("node2").unwrap();
    let pod = lab.add_pod(&node1, "web").unwrap();
    let control = lab.control().clone();
    assert_eq!(control.ip, Ipv4Addr::new(192, 168, 77, 254));

    let _web = echo_server(&lab, &pod.netns, 80);
    // Its own node reaches the pod over the bridge (source: the gateway address) …
    assert_eq!(
        echo(&lab, &node1.netns, pod.ip, 80, "local").unwrap(),
        format!("local from {}", node1.bridge_ip)
    );
    // … another node through the fabric, with its node IP.
    assert_eq!(
        echo(&lab, &node2.netns, pod.ip, 80, "remote").unwrap(),
        format!("remote from {}", node2.ip)
    );

    let _api = echo_server(&lab, &control.netns, 6443);
    assert_eq!(
        echo(&lab, &node2.netns, control.ip, 6443, "node").unwrap(),
        format!("node from {}", node2.ip)
    );
    // A pod reaches the control host with its own address, which the control host routes back.
    assert_eq!(
        echo(&lab, &pod.netns, control.ip, 6443, "pod").unwrap(),
        format!("pod from {}", pod.ip)
    );

    // An extra host sits on the fabric but, being outside the cluster, has no pod routes.
    let outside = lab.add_host("client").unwrap();
    assert_eq!(outside.ip, Ipv4Addr::new(192, 168, 77, 253));
    assert_eq!(
        echo(&lab, &outside.netns, control.ip, 6443, "outside").unwrap(),
        format!("outside from {}", outside.ip)
    );
    assert!(echo(&lab, &outside.netns, pod.ip, 80, "lost").is_err());
}

#[test]
fn nodes_are_set_up_like_real_nodes() {
    if !skip_unless_privileged("nodes_are_set_up_like_real_nodes") {
        return;
    }
    let mut lab = Lab::with_service_cidr("setup", "10.100.0.0/16".parse().unwrap()).unwrap();
    let node1 = lab.add_node("node1").unwrap();
    let pod = lab.add_pod(&node1, "web").unwrap();
    // Added after node1, so node1's routes must have been updated.
    let node2 = lab.add_node("node2").unwrap();

    let sysctl = |name: &str| stdout_of(&lab, &node1.netns, "sysctl", &["-n", name]);
    assert_eq!(sysctl("net.ipv4.ip_forward").trim(), "1");
    assert_eq!(sysctl("net.bridge.bridge-nf-call-iptables").trim(), "1");

    let route = stdout_of(&lab, &node1.netns, "ip", &["route", "get", "10.100.0.10"]);
    assert!(route.contains(&format!("dev {NODE_BRIDGE}")), "{route}");
    let route = stdout_of(&lab, &node1.netns, "ip", &["route", "get", "10.244.2.7"]);
    assert!(route.contains(&format!("via {}", node2.ip)), "{route}");
    let route = stdout_of(&lab, &node2.netns, "ip", &["route", "get", "10.244.1.7"]);
    assert!(route.contains(&format!("via {}", node1.ip)), "{route}");
    let route = stdout_of(
        &lab,
        &lab.control().netns,
        "ip",
        &["route", "get", "10.244.2.7"],
    );
    assert!(route.contains(&format!("via {}", node2.ip)), "{route}");

    let port = stdout_of(
        &lab,
        &node1.netns,
        "ip",
        &["-d", "link", "show", &pod.host_veth],
    );
    assert!(port.contains(&format!("master {NODE_BRIDGE}")), "{port}");
    assert!(port.contains("hairpin on"), "{port}");

    let default = stdout_of(&lab, &pod.netns, "ip", &["route", "show", "default"]);
    assert!(
        default.contains(&format!("via {}", node1.bridge_ip)),
        "{default}"
    );

    // The lab runs nothing outside its own namespaces.
    assert!(matches!(
        lab.exec("not-a-lab-namespace", "true", &[]),
        Err(Error::UnknownNamespace(_))
    ));
    assert!(matches!(
        lab.add_node("node1"),
        Err(Error::Duplicate { kind: "node", .. })
    ));
    assert!(matches!(
        lab.add_pod(&node1, "bad/name"),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn pods_reach_themselves_and_neighbours_on_the_same_node() {
    if !skip_unless_privileged("pods_reach_themselves_and_neighbours_on_the_same_node") {
        return;
    }
    let mut lab = Lab::new("local").unwrap();
    let node = lab.add_node("node1").unwrap();
    let a = lab.add_pod(&node, "a").unwrap();
    let b = lab.add_pod(&node, "b").unwrap();
    let _server = echo_server(&lab, &b.netns, 9000);
    assert_eq!(
        echo(&lab, &a.netns, b.ip, 9000, "hi").unwrap(),
        format!("hi from {}", a.ip)
    );
    assert_eq!(
        echo(&lab, &b.netns, b.ip, 9000, "self").unwrap(),
        format!("self from {}", b.ip)
    );
}

#[test]
fn removing_a_pod_deletes_its_namespace_and_veth() {
    if !skip_unless_privileged("removing_a_pod_deletes_its_namespace_and_veth") {
        return;
    }
    let mut lab = Lab::new("remove").unwrap();
    let node = lab.add_node("node1").unwrap();
    let pod = lab.add_pod(&node, "gone").unwrap();
    let _server = echo_server(&lab, &pod.netns, 80);

    lab.remove_pod(&pod).unwrap();
    assert!(!netns_list().contains(&pod.netns));
    assert!(!lab.namespaces().contains(&pod.netns));
    assert!(lab.pods().is_empty());
    let veth = lab
        .exec(&node.netns, "ip", &["link", "show", &pod.host_veth])
        .unwrap();
    assert!(!veth.status.success(), "{} still exists", pod.host_veth);
    assert!(matches!(lab.remove_pod(&pod), Err(Error::UnknownPod(_))));

    // A new pod works, and does not get the just-freed address straight away.
    let next = lab.add_pod(&node, "next").unwrap();
    assert_ne!(next.ip, pod.ip);
    let _next = echo_server(&lab, &next.netns, 80);
    assert_eq!(
        echo(&lab, &node.netns, next.ip, 80, "up").unwrap(),
        format!("up from {}", node.bridge_ip)
    );
}
