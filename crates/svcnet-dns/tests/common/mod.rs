//! Fixtures shared by the integration tests: Kubernetes objects, query packets, decoding.
#![allow(dead_code)]

use std::collections::BTreeMap;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, PodIP, PodStatus, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use svcnet_dns::{Answer, Index, IndexInput, PodsMode, answer};

pub const ZONE: &str = "cluster.local";
pub const TTL: u32 = 30;
pub const ID: u16 = 0xbeef;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        resource_version: Some("42".into()),
        ..Default::default()
    }
}

/// A port: (name or "" for unnamed, number, protocol).
pub type PortSpec<'a> = (&'a str, i32, &'a str);

fn service_ports(ports: &[PortSpec<'_>]) -> Vec<ServicePort> {
    ports
        .iter()
        .map(|(name, port, proto)| ServicePort {
            name: (!name.is_empty()).then(|| name.to_string()),
            port: *port,
            protocol: Some(proto.to_string()),
            ..Default::default()
        })
        .collect()
}

pub fn cluster_ip(ns: &str, name: &str, ips: &[&str], ports: &[PortSpec<'_>]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(ips[0].into()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(service_ports(ports)),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn headless(ns: &str, name: &str, publish_not_ready: bool, ports: &[PortSpec<'_>]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            cluster_ips: Some(vec!["None".into()]),
            ports: Some(service_ports(ports)),
            publish_not_ready_addresses: publish_not_ready.then_some(true),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn external_name(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// An endpoint: address, hostname, `conditions.ready`.
pub fn endpoint(ip: &str, hostname: Option<&str>, ready: Option<bool>) -> Endpoint {
    Endpoint {
        addresses: vec![ip.into()],
        hostname: hostname.map(Into::into),
        conditions: Some(EndpointConditions {
            ready,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn slice(
    ns: &str,
    service: &str,
    suffix: &str,
    ports: &[PortSpec<'_>],
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let mut m = meta(ns, &format!("{service}-{suffix}"));
    m.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        service.to_string(),
    )]));
    let v6 = endpoints.iter().any(|e| e.addresses[0].contains(':'));
    EndpointSlice {
        address_type: if v6 { "IPv6" } else { "IPv4" }.into(),
        endpoints,
        metadata: m,
        ports: Some(
            ports
                .iter()
                .map(|(name, port, proto)| EndpointPort {
                    name: Some(name.to_string()),
                    port: Some(*port),
                    protocol: Some(proto.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

pub fn pod(ns: &str, name: &str, ips: &[&str]) -> Pod {
    Pod {
        metadata: meta(ns, name),
        spec: None,
        status: Some(PodStatus {
            pod_ip: Some(ips[0].into()),
            pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
            phase: Some("Running".into()),
            ..Default::default()
        }),
    }
}

/// The objects every test starts from.
pub struct Cluster {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub pods: Vec<Pod>,
}

pub fn cluster() -> Cluster {
    let big: Vec<Endpoint> = (0..100)
        .map(|i| endpoint(&format!("10.2.{}.{}", i / 250, i % 250 + 1), None, None))
        .collect();
    Cluster {
        services: vec![
            cluster_ip(
                "default",
                "web",
                &["10.96.0.10"],
                &[
                    ("http", 80, "TCP"),
                    ("metrics", 9090, "TCP"),
                    ("", 8080, "TCP"),
                ],
            ),
            cluster_ip("default", "dns", &["10.96.0.20"], &[("dns", 53, "UDP")]),
            cluster_ip(
                "default",
                "dual",
                &["10.96.0.11", "fd00:96::11"],
                &[("http", 80, "TCP")],
            ),
            cluster_ip(
                "kube-system",
                "kube-dns",
                &["10.96.0.2"],
                &[("dns", 53, "UDP")],
            ),
            headless("default", "db", false, &[("pg", 5432, "TCP")]),
            headless("default", "empty", false, &[("pg", 5432, "TCP")]),
            headless("default", "warm", true, &[]),
            headless("default", "three", false, &[]),
            headless("default", "big", false, &[]),
            headless("default", "db6", false, &[]),
            external_name("default", "ext", "Example.COM."),
            external_name("default", "alias", "web.default.svc.cluster.local"),
            external_name("default", "dangling", "nothing.default.svc.cluster.local"),
            external_name("default", "chain", "alias.default.svc.cluster.local"),
            external_name("default", "loop-a", "loop-b.default.svc.cluster.local"),
            external_name("default", "loop-b", "loop-a.default.svc.cluster.local"),
        ],
        slices: vec![
            slice(
                "default",
                "db",
                "abc",
                &[("pg", 5432, "TCP")],
                vec![
                    endpoint("10.0.0.4", Some("db-0"), Some(true)),
                    endpoint("10.0.0.5", None, None),
                    endpoint("10.0.0.6", Some("db-2"), Some(false)),
                ],
            ),
            slice(
                "default",
                "empty",
                "abc",
                &[("pg", 5432, "TCP")],
                vec![endpoint("10.0.1.1", None, Some(false))],
            ),
            slice(
                "default",
                "warm",
                "abc",
                &[],
                vec![endpoint("10.0.2.1", Some("warm-0"), Some(false))],
            ),
            slice(
                "default",
                "three",
                "abc",
                &[("a", 1, "TCP"), ("b", 2, "TCP")],
                vec![
                    endpoint("10.0.3.1", None, Some(true)),
                    endpoint("10.0.3.2", None, Some(true)),
                    endpoint("10.0.3.3", None, Some(true)),
                ],
            ),
            slice("default", "big", "abc", &[], big),
            slice(
                "default",
                "db6",
                "abc",
                &[],
                vec![endpoint("fd00:10::5", None, Some(true))],
            ),
            // Same service name in another namespace: must not leak into default/db.
            slice(
                "other",
                "db",
                "xyz",
                &[("pg", 5432, "TCP")],
                vec![endpoint("10.9.9.9", None, Some(true))],
            ),
        ],
        pods: vec![
            pod("default", "pod-a", &["10.1.0.7", "fd00:1::7"]),
            pod("team", "pod-b", &["10.1.0.8"]),
        ],
    }
}

pub fn index_with(c: &Cluster, pods_mode: PodsMode) -> Index {
    Index::build(&IndexInput {
        services: &c.services,
        slices: &c.slices,
        pods: &c.pods,
        zone: ZONE,
        ttl: TTL,
        pods_mode,
    })
    .expect("index builds")
}

pub fn index() -> Index {
    index_with(&cluster(), PodsMode::Disabled)
}

pub fn query_message(name: &str, qtype: RecordType) -> Message {
    let mut msg = Message::new(ID, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg
}

pub fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    query_message(name, qtype).to_vec().unwrap()
}

pub fn query_edns(name: &str, qtype: RecordType, payload: u16) -> Vec<u8> {
    let mut msg = query_message(name, qtype);
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    msg.set_edns(edns);
    msg.to_vec().unwrap()
}

pub fn reply(a: Answer) -> Vec<u8> {
    match a {
        Answer::Reply(bytes) => bytes,
        other => panic!("expected a reply, got {other:?}"),
    }
}

pub fn decode(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).expect("reply decodes")
}

/// Asks over TCP (no size limit) and decodes.
pub fn ask(index: &Index, name: &str, qtype: RecordType) -> Message {
    decode(&reply(answer(index, &query(name, qtype), None)))
}

pub fn names(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.name.to_string()).collect()
}

pub fn rdata(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.data.to_string()).collect()
}

pub fn a_records(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}
