//! The EndpointSlice controller's pure part: which EndpointSlices (and which legacy Endpoints
//! object) a Service with a selector should have, given the Pods of its namespace.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::service::{self, IpFamily};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Set on the EndpointSlices and Endpoints of headless Services (kube-proxy skips them).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What the controller should make exist for one Service.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredEndpoints {
    pub slices: Vec<EndpointSlice>,
    pub endpoints: Endpoints,
}

/// A Pod's readiness as the endpoint conditions see it.
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a Pod has ended (phase Succeeded or Failed): it serves nothing any more.
pub fn pod_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A Pod's addresses: `status.podIPs`, else `status.podIP`.
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status.pod_ip.as_deref().and_then(|s| s.parse().ok())
    {
        ips.push(ip);
    }
    ips
}

/// The container port a Service port's `targetPort` names on this Pod, if any.
pub fn resolve_target_port(pod: &Pod, target: &IntOrString, protocol: &str) -> Option<i32> {
    match target {
        IntOrString::Int(p) => Some(*p),
        IntOrString::String(name) => pod.spec.as_ref()?.containers.iter().find_map(|c| {
            c.ports.iter().flatten().find_map(|p| {
                let proto = p.protocol.as_deref().unwrap_or("TCP");
                (p.name.as_deref() == Some(name.as_str()) && proto == protocol)
                    .then_some(p.container_port)
            })
        }),
    }
}

/// Whether a Pod is one of this Service's endpoints at all (selected, not finished).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
    else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    pod.metadata.namespace == svc.metadata.namespace
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        && !pod_finished(pod)
}

fn short_hash(parts: &[&str]) -> String {
    // FNV-1a, then the generateName alphabet: stable names across restarts.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|i| ALPHABET[((h >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// A Service's ports resolved for one Pod: (port name, protocol, container port).
type PortKey = Vec<(String, String, Option<i32>)>;

struct PodEndpoint<'a> {
    pod: &'a Pod,
    ip: IpAddr,
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// Computes the EndpointSlices and Endpoints for `svc` from all `pods` (any namespace; only
/// selected ones are used). `trigger_time` goes into the last-change-trigger-time annotation.
pub fn desired(svc: &Service, pods: &[Pod], trigger_time: &str) -> DesiredEndpoints {
    let spec = svc.spec.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let svc_ports = spec.ports.clone().unwrap_or_default();
    let families: Vec<IpFamily> = match spec.ip_families.as_ref().filter(|f| !f.is_empty()) {
        Some(f) => f.iter().filter_map(|s| IpFamily::parse(s)).collect(),
        None => vec![IpFamily::V4],
    };

    let mut labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
    labels.retain(|k, _| k != HEADLESS_LABEL);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if service::is_headless(&spec) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let annotations: BTreeMap<String, String> =
        [(TRIGGER_TIME_ANNOTATION.to_owned(), trigger_time.to_owned())].into();

    // Selected pods with an address, with their conditions.
    let mut selected: Vec<PodEndpoint> = Vec::new();
    for pod in pods.iter().filter(|p| selects(svc, p)) {
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = pod_ready(pod);
        let ready = publish_not_ready || (serving && !terminating);
        for ip in pod_ips(pod) {
            selected.push(PodEndpoint {
                pod,
                ip,
                ready,
                serving: serving || publish_not_ready,
                terminating,
            });
        }
    }
    selected.sort_by_key(|e| e.ip);

    // Group by resolved port set: endpoints in one slice share their ports.
    let resolve = |pod: &Pod| -> PortKey {
        svc_ports
            .iter()
            .map(|p| {
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
                (
                    p.name.clone().unwrap_or_default(),
                    proto.clone(),
                    resolve_target_port(pod, &target, &proto),
                )
            })
            .collect()
    };

    let mut slices = Vec::new();
    for fam in &families {
        let mut groups: BTreeMap<PortKey, Vec<&PodEndpoint>> = BTreeMap::new();
        for ep in selected.iter().filter(|e| IpFamily::of(e.ip) == *fam) {
            groups.entry(resolve(ep.pod)).or_default().push(ep);
        }
        if groups.is_empty() {
            // One empty slice per family says "no endpoints" explicitly.
            groups.insert(Vec::new(), Vec::new());
        }
        for (ports, eps) in &groups {
            let slice_ports: Vec<SlicePort> = ports
                .iter()
                .filter(|(_, _, port)| port.is_some())
                .map(|(n, proto, port)| SlicePort {
                    name: Some(n.clone()),
                    protocol: Some(proto.clone()),
                    port: *port,
                    app_protocol: svc_ports
                        .iter()
                        .find(|p| p.name.as_deref().unwrap_or("") == n)
                        .and_then(|p| p.app_protocol.clone()),
                })
                .collect();
            let port_sig: Vec<String> = ports
                .iter()
                .map(|(n, p, port)| format!("{n}/{p}/{port:?}"))
                .collect();
            let chunks: Vec<&[&PodEndpoint]> = if eps.is_empty() {
                vec![&[]]
            } else {
                eps.chunks(MAX_ENDPOINTS_PER_SLICE).collect()
            };
            for (i, chunk) in chunks.iter().enumerate() {
                let idx = i.to_string();
                let suffix =
                    short_hash(&[&namespace, &name, fam.as_str(), &port_sig.join(","), &idx]);
                slices.push(EndpointSlice {
                    metadata: ObjectMeta {
                        name: Some(format!("{name}-{suffix}")),
                        namespace: Some(namespace.clone()),
                        labels: Some(labels.clone()),
                        annotations: Some(annotations.clone()),
                        owner_references: Some(vec![owner.clone()]),
                        ..Default::default()
                    },
                    address_type: fam.as_str().into(),
                    endpoints: chunk
                        .iter()
                        .map(|e| slice_endpoint(e, &name, &namespace))
                        .collect(),
                    ports: (!chunk.is_empty() || !slice_ports.is_empty())
                        .then_some(slice_ports.clone())
                        .filter(|p| !p.is_empty()),
                });
            }
        }
    }

    DesiredEndpoints {
        slices,
        endpoints: legacy_endpoints(svc, &selected, &svc_ports, &annotations, resolve),
    }
}

fn slice_endpoint(e: &PodEndpoint, svc_name: &str, namespace: &str) -> Endpoint {
    let pod_spec = e.pod.spec.as_ref();
    let hostname = pod_spec
        .filter(|s| {
            s.subdomain.as_deref() == Some(svc_name)
                && e.pod.metadata.namespace.as_deref() == Some(namespace)
        })
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    Endpoint {
        addresses: vec![e.ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(e.ready),
            serving: Some(e.serving),
            terminating: Some(e.terminating),
        }),
        hostname,
        node_name: pod_spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_ref(e.pod)),
        ..Default::default()
    }
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

fn legacy_endpoints<F>(
    svc: &Service,
    selected: &[PodEndpoint],
    svc_ports: &[k8s_openapi::api::core::v1::ServicePort],
    annotations: &BTreeMap<String, String>,
    resolve: F,
) -> Endpoints
where
    F: Fn(&Pod) -> PortKey,
{
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut subsets: BTreeMap<PortKey, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    let primary = svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .and_then(|f| IpFamily::parse(f))
        .unwrap_or(IpFamily::V4);
    for e in selected.iter().filter(|e| IpFamily::of(e.ip) == primary) {
        if e.terminating && !publish_not_ready {
            continue;
        }
        let ports = resolve(e.pod);
        if !svc_ports.is_empty() && ports.iter().all(|(_, _, p)| p.is_none()) {
            continue;
        }
        let addr = EndpointAddress {
            ip: e.ip.to_string(),
            hostname: e
                .pod
                .spec
                .as_ref()
                .filter(|s| s.subdomain.as_deref() == svc.metadata.name.as_deref())
                .and_then(|s| s.hostname.clone()),
            node_name: e
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(pod_ref(e.pod)),
        };
        let entry = subsets.entry(ports).or_default();
        if e.ready {
            entry.0.push(addr)
        } else {
            entry.1.push(addr)
        }
    }
    let subsets: Vec<EndpointSubset> = subsets
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: Some(
                ports
                    .into_iter()
                    .filter_map(|(n, proto, p)| {
                        p.map(|port| EndpointPort {
                            name: (!n.is_empty()).then_some(n),
                            port,
                            protocol: Some(proto),
                            app_protocol: None,
                        })
                    })
                    .collect(),
            )
            .filter(|p: &Vec<EndpointPort>| !p.is_empty()),
        })
        .collect();
    let mut labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
    if svc.spec.as_ref().is_some_and(service::is_headless) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(annotations.clone()),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

#[cfg(test)]
mod tests;
