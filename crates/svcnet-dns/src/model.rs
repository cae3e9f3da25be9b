//! What the DNS data needs from each Kubernetes object, kept small.
//!
//! The server keeps one record per watched object instead of the object: a k8s-openapi
//! `Service` is 824 bytes before any of its strings, and at 10,000 Services the (already
//! stripped) objects in kube's reflector stores held ~13 MB, the largest part of the server's
//! memory. A [`ServiceRecord`] of a ClusterIP Service is about 200 bytes all told.
//! [`crate::Index::build`] converts its input through the same functions, so the server and
//! the library build from the same data.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use svcnet_core::endpoints::{SERVICE_NAME_LABEL, pod_finished, pod_ips};
use svcnet_core::service::{is_headless, spec_type};

/// A Service as DNS sees it.
#[derive(Debug)]
pub(crate) struct ServiceRecord {
    pub(crate) namespace: Option<Box<str>>,
    pub(crate) name: Option<Box<str>>,
    /// The resourceVersion, when it is a number (for the SOA serial).
    pub(crate) version: Option<u64>,
    pub(crate) kind: ServiceKind,
    /// `spec.clusterIPs` (else `spec.clusterIP`) that parse as addresses.
    pub(crate) cluster_ips: Box<[IpAddr]>,
    /// Named ports with a number that fits 16 bits.
    pub(crate) ports: Box<[NamedPort]>,
}

#[derive(Debug)]
pub(crate) enum ServiceKind {
    /// No spec: the Service has no records.
    NoSpec,
    /// `spec.externalName`, as written.
    ExternalName(Option<Box<str>>),
    Headless {
        publish_not_ready: bool,
    },
    ClusterIp,
}

/// A named port: the SRV labels in front of the owner name, and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPort {
    /// `_<name>._<protocol>` in lowercase (the protocol defaults to TCP).
    pub(crate) labels: Box<str>,
    pub(crate) port: u16,
}

/// An EndpointSlice as DNS sees it.
#[derive(Debug)]
pub(crate) struct SliceRecord {
    pub(crate) namespace: Option<Box<str>>,
    /// The `kubernetes.io/service-name` label.
    pub(crate) service: Option<Box<str>>,
    pub(crate) version: Option<u64>,
    pub(crate) ports: Box<[NamedPort]>,
    pub(crate) endpoints: Box<[EndpointRecord]>,
}

#[derive(Debug)]
pub(crate) struct EndpointRecord {
    /// `conditions.ready`, true when unset.
    pub(crate) ready: bool,
    pub(crate) hostname: Option<Box<str>>,
    /// The addresses that parse.
    pub(crate) addresses: Box<[IpAddr]>,
}

/// A Pod as DNS sees it.
#[derive(Debug)]
pub(crate) struct PodRecord {
    pub(crate) namespace: Option<Box<str>>,
    pub(crate) version: Option<u64>,
    /// The Pod's addresses; none while it is deleting or once it finished, since its address
    /// may already belong to another Pod.
    pub(crate) ips: Box<[IpAddr]>,
}

fn boxed(s: Option<&str>) -> Option<Box<str>> {
    s.map(Box::from)
}

fn version(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

fn port_labels(name: Option<&str>, protocol: Option<&str>, port: i32) -> Option<NamedPort> {
    let name = name.filter(|n| !n.is_empty())?;
    let port = u16::try_from(port).ok()?;
    let protocol = protocol.unwrap_or("TCP");
    Some(NamedPort {
        labels: format!("_{name}._{protocol}").to_ascii_lowercase().into(),
        port,
    })
}

impl ServiceRecord {
    pub(crate) fn new(svc: &Service) -> Self {
        let meta = &svc.metadata;
        let mut record = ServiceRecord {
            namespace: boxed(meta.namespace.as_deref()),
            name: boxed(meta.name.as_deref()),
            version: version(meta),
            kind: ServiceKind::NoSpec,
            cluster_ips: Box::default(),
            ports: Box::default(),
        };
        let Some(spec) = svc.spec.as_ref() else {
            return record;
        };
        let listed = spec.cluster_ips.as_deref().filter(|ips| !ips.is_empty());
        record.cluster_ips = listed
            .unwrap_or(spec.cluster_ip.as_slice())
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        record.kind = if spec_type(spec) == "ExternalName" {
            ServiceKind::ExternalName(boxed(spec.external_name.as_deref()))
        } else if is_headless(spec) {
            ServiceKind::Headless {
                publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
            }
        } else {
            ServiceKind::ClusterIp
        };
        if matches!(record.kind, ServiceKind::ClusterIp) {
            record.ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| port_labels(p.name.as_deref(), p.protocol.as_deref(), p.port))
                .collect();
        }
        record
    }
}

impl SliceRecord {
    pub(crate) fn new(slice: &EndpointSlice) -> Self {
        let meta = &slice.metadata;
        let service = meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        SliceRecord {
            namespace: boxed(meta.namespace.as_deref()),
            service: boxed(service.map(String::as_str)),
            version: version(meta),
            ports: slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| port_labels(p.name.as_deref(), p.protocol.as_deref(), p.port?))
                .collect(),
            endpoints: slice
                .endpoints
                .iter()
                .map(|ep| EndpointRecord {
                    ready: ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                    hostname: boxed(ep.hostname.as_deref()),
                    addresses: ep.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                })
                .collect(),
        }
    }
}

impl PodRecord {
    pub(crate) fn new(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let ips = if meta.deletion_timestamp.is_none() && !pod_finished(pod) {
            pod_ips(pod).into_boxed_slice()
        } else {
            Box::default()
        };
        PodRecord {
            namespace: boxed(meta.namespace.as_deref()),
            version: version(meta),
            ips,
        }
    }
}

/// One consistent snapshot of records, the input of an index build.
#[derive(Debug, Default)]
pub(crate) struct Records<'a> {
    pub(crate) services: Vec<&'a ServiceRecord>,
    pub(crate) slices: Vec<&'a SliceRecord>,
    pub(crate) pods: Vec<&'a PodRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    #[test]
    fn ports_keep_named_numbered_ones() {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                resource_version: Some("17".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.0.0.1".into()),
                ports: Some(vec![
                    ServicePort {
                        name: Some("HTTP".into()),
                        port: 80,
                        ..Default::default()
                    },
                    ServicePort {
                        name: Some("dns".into()),
                        port: 53,
                        protocol: Some("UDP".into()),
                        ..Default::default()
                    },
                    ServicePort {
                        port: 81,
                        ..Default::default()
                    },
                    ServicePort {
                        name: Some("big".into()),
                        port: 70000,
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            status: None,
        };
        let r = ServiceRecord::new(&svc);
        assert_eq!(r.version, Some(17));
        assert!(matches!(r.kind, ServiceKind::ClusterIp));
        assert_eq!(&*r.cluster_ips, &["10.0.0.1".parse::<IpAddr>().unwrap()]);
        let ports: Vec<(&str, u16)> = r.ports.iter().map(|p| (&*p.labels, p.port)).collect();
        assert_eq!(ports, [("_http._tcp", 80), ("_dns._udp", 53)]);
    }
}
