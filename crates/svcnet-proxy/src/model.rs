//! The proxy's desired state: a pure function from cached Services and EndpointSlices to
//! "for each service port, its virtual IPs, port, protocol, affinity and endpoints".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use svcnet_core::endpoints::{HEADLESS_LABEL, SERVICE_NAME_LABEL};

pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
    /// The nftables spelling.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// `namespace/name:portname` plus the protocol, as kube-proxy keys service ports.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    pub port: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}:{}/{}",
            self.namespace,
            self.name,
            self.port,
            self.protocol.as_str()
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortInfo {
    pub cluster_ips: Vec<IpAddr>,
    pub port: u16,
    pub protocol: Protocol,
    /// `Some(timeout)` when `sessionAffinity: ClientIP`.
    pub affinity: Option<Duration>,
    /// Every endpoint known for this port, sorted; see [`ServicePortInfo::usable`].
    pub endpoints: Vec<Endpoint>,
    /// `internalTrafficPolicy: Local`: only endpoints on this node (named here) are used.
    pub local_node: Option<String>,
}

impl ServicePortInfo {
    /// The endpoints new connections may go to, as kube-proxy chooses them: only this node's
    /// when `internalTrafficPolicy` is Local; the ready ones; and when none is ready, those
    /// still serving while terminating (a rolling update drains instead of refusing).
    pub fn usable(&self) -> Vec<&Endpoint> {
        let candidates: Vec<&Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| {
                self.local_node
                    .as_ref()
                    .is_none_or(|n| e.node.as_ref() == Some(n))
            })
            .collect();
        let ready: Vec<&Endpoint> = candidates.iter().copied().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        candidates
            .into_iter()
            .filter(|e| e.serving && e.terminating)
            .collect()
    }
}

/// Everything a dataplane needs to program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyState {
    pub services: BTreeMap<ServicePortName, ServicePortInfo>,
}

/// Whether kube-proxy would program this Service at all.
pub fn is_proxied(svc: &Service) -> bool {
    let labels = svc.metadata.labels.as_ref();
    if labels
        .is_some_and(|l| l.contains_key(HEADLESS_LABEL) || l.contains_key(SERVICE_PROXY_NAME_LABEL))
    {
        return false;
    }
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    matches!(spec.cluster_ip.as_deref(), Some(ip) if !ip.is_empty() && ip != "None")
}

/// Builds the desired state from the caches, for the node named `node`.
pub fn desired_state(services: &[Service], slices: &[EndpointSlice], node: &str) -> ProxyState {
    // Endpoints per (namespace, service, port name, protocol).
    let mut eps: BTreeMap<(String, String, String, Protocol), BTreeSet<Endpoint>> = BTreeMap::new();
    for slice in slices {
        let Some(svc_name) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        for port in slice.ports.iter().flatten() {
            let (Some(number), Some(proto)) =
                (port.port, Protocol::parse(port.protocol.as_deref()))
            else {
                continue;
            };
            let Ok(number) = u16::try_from(number) else {
                continue;
            };
            let key = (
                ns.clone(),
                svc_name.clone(),
                port.name.clone().unwrap_or_default(),
                proto,
            );
            for ep in &slice.endpoints {
                let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                    continue;
                };
                let c = ep.conditions.clone().unwrap_or_default();
                let ready = c.ready.unwrap_or(true);
                eps.entry(key.clone()).or_default().insert(Endpoint {
                    ip,
                    port: number,
                    ready,
                    serving: c.serving.unwrap_or(ready),
                    terminating: c.terminating.unwrap_or(false),
                    node: ep.node_name.clone(),
                });
            }
        }
    }
    let mut state = ProxyState::default();
    for svc in services.iter().filter(|s| is_proxied(s)) {
        let spec = svc.spec.as_ref().expect("checked by is_proxied");
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let cluster_ips: Vec<IpAddr> = match spec.cluster_ips.as_ref().filter(|v| !v.is_empty()) {
            Some(ips) => ips.iter().filter_map(|s| s.parse().ok()).collect(),
            None => spec
                .cluster_ip
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let t = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(svcnet_core::service::DEFAULT_CLIENT_IP_TIMEOUT);
            Duration::from_secs(u64::try_from(t).unwrap_or(0))
        });
        for p in spec.ports.iter().flatten() {
            let (Some(protocol), Ok(port)) = (
                Protocol::parse(p.protocol.as_deref()),
                u16::try_from(p.port),
            ) else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let key = (ns.clone(), name.clone(), port_name.clone(), protocol);
            state.services.insert(
                ServicePortName {
                    namespace: ns.clone(),
                    name: name.clone(),
                    port: port_name,
                    protocol,
                },
                ServicePortInfo {
                    cluster_ips: cluster_ips.clone(),
                    port,
                    protocol,
                    affinity,
                    endpoints: eps
                        .get(&key)
                        .map(|s| s.iter().cloned().collect())
                        .unwrap_or_default(),
                    local_node: (spec.internal_traffic_policy.as_deref() == Some("Local"))
                        .then(|| node.to_owned()),
                },
            );
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_ports_protocols_readiness_and_ignored_services() {
        let services = vec![
            svc(
                json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"], "sessionAffinity": "ClientIP",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
            ),
            svc(
                json!({"metadata": {"name": "hl", "namespace": "default"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            ),
            svc(
                json!({"metadata": {"name": "ext", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "x.com"}}),
            ),
            svc(
                json!({"metadata": {"name": "other", "namespace": "default", "labels": {"service.kubernetes.io/service-proxy-name": "foo"}},
                "spec": {"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}}),
            ),
            svc(
                json!({"metadata": {"name": "hl2", "namespace": "default", "labels": {"service.kubernetes.io/headless": ""}},
                "spec": {"clusterIP": "10.96.0.12", "ports": [{"port": 80}]}}),
            ),
        ];
        let slices = vec![slice(
            json!({"metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "nodeName": "n1"},
                          {"addresses": ["10.244.0.6"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                          {"addresses": ["10.244.0.7"]}]}),
        )];
        let state = desired_state(&services, &slices, "n1");
        assert_eq!(state.services.len(), 2, "{state:#?}");
        let http = state
            .services
            .values()
            .find(|s| s.protocol == Protocol::Tcp)
            .unwrap();
        assert_eq!(http.port, 80);
        assert_eq!(http.affinity, Some(Duration::from_secs(10800)));
        let ready: Vec<String> = http
            .usable()
            .into_iter()
            .map(|e| format!("{}:{}", e.ip, e.port))
            .collect();
        assert_eq!(ready, vec!["10.244.0.5:8080", "10.244.0.7:8080"]);
        let dns = state
            .services
            .iter()
            .find(|(k, _)| k.port == "dns")
            .unwrap();
        assert_eq!(dns.0.to_string(), "default/web:dns/UDP");
        assert_eq!(dns.1.endpoints[0].port, 5353);
    }

    fn ep(ip: &str, ready: bool, terminating: bool, node: &str) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port: 80,
            ready,
            serving: ready || terminating,
            terminating,
            node: Some(node.into()),
        }
    }

    #[test]
    fn terminating_fallback_and_internal_traffic_policy_local() {
        let mut info = ServicePortInfo {
            cluster_ips: vec![],
            port: 80,
            protocol: Protocol::Tcp,
            affinity: None,
            endpoints: vec![
                ep("10.0.0.1", false, true, "n1"),
                ep("10.0.0.2", false, true, "n2"),
                ep("10.0.0.3", false, false, "n1"),
            ],
            local_node: None,
        };
        let ips = |i: &ServicePortInfo| {
            i.usable()
                .iter()
                .map(|e| e.ip.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ips(&info),
            vec!["10.0.0.1", "10.0.0.2"],
            "no ready endpoint: serving terminating ones"
        );
        info.endpoints.push(ep("10.0.0.4", true, false, "n2"));
        assert_eq!(ips(&info), vec!["10.0.0.4"], "ready ones win");
        info.local_node = Some("n1".into());
        assert_eq!(ips(&info), vec!["10.0.0.1"], "iTP=Local: this node only");
        info.local_node = Some("n3".into());
        assert!(ips(&info).is_empty());
    }
}
