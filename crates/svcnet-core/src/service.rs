//! Service defaulting and validation, as kube-apiserver does them.
//!
//! The order is the registry's: [`prepare_for_create`] (defaults and IP-family fields) or
//! [`prepare_for_update`] (keeps allocated values the client omitted, drops fields the new type
//! cannot have), then [`validate_create`] / [`validate_update`], then allocation
//! ([`crate::service_alloc`]).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{BadValue, ErrorList, FieldError};
use crate::{meta, names};

pub const DEFAULT_CLIENT_IP_TIMEOUT: i32 = 10800;
pub const MAX_CLIENT_IP_TIMEOUT: i32 = 86400;

/// An IP family as spelled in `spec.ipFamilies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(IpFamily::V4),
            "IPv6" => Some(IpFamily::V6),
            _ => None,
        }
    }
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }
    pub fn other(self) -> Self {
        match self {
            IpFamily::V4 => IpFamily::V6,
            IpFamily::V6 => IpFamily::V4,
        }
    }
}

/// What the cluster's Service CIDRs allow: the primary family, and the secondary when the
/// cluster is dual-stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub primary: IpFamily,
    pub secondary: Option<IpFamily>,
}

impl ServiceNetwork {
    pub fn supports(&self, f: IpFamily) -> bool {
        self.primary == f || self.secondary == Some(f)
    }
}

pub fn spec_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("ClusterIP")
}

pub fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some("None")
}

/// Types that carry a cluster IP (all but ExternalName).
pub fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    spec_type(spec) != "ExternalName"
}

pub fn needs_node_ports(spec: &ServiceSpec) -> bool {
    match spec_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => spec.allocate_load_balancer_node_ports.unwrap_or(true),
        _ => false,
    }
}

pub fn needs_health_check_node_port(spec: &ServiceSpec) -> bool {
    spec_type(spec) == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local")
}

fn externally_accessible(spec: &ServiceSpec) -> bool {
    matches!(spec_type(spec), "NodePort" | "LoadBalancer")
        || spec.external_ips.as_ref().is_some_and(|v| !v.is_empty())
}

fn is_zero_target(tp: &Option<IntOrString>) -> bool {
    match tp {
        None => true,
        Some(IntOrString::Int(0)) => true,
        Some(IntOrString::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// `SetDefaults_Service` plus the registry's create-time field initialisation. Returns errors
/// for IP-family requests the cluster cannot satisfy.
pub fn prepare_for_create(svc: &mut Service, net: ServiceNetwork) -> ErrorList {
    svc.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
        load_balancer: Some(Default::default()),
        conditions: None,
    });
    let spec = svc.spec.get_or_insert_with(Default::default);
    apply_spec_defaults(spec);
    init_ip_family_fields(spec, net)
}

fn apply_spec_defaults(spec: &mut ServiceSpec) {
    if spec.type_.as_deref().unwrap_or("").is_empty() {
        spec.type_ = Some("ClusterIP".into());
    }
    if spec.session_affinity.as_deref().unwrap_or("").is_empty() {
        spec.session_affinity = Some("None".into());
    }
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let cfg = spec
            .session_affinity_config
            .get_or_insert_with(SessionAffinityConfig::default)
            .client_ip
            .get_or_insert_with(ClientIPConfig::default);
        cfg.timeout_seconds.get_or_insert(DEFAULT_CLIENT_IP_TIMEOUT);
    }
    for port in spec.ports.iter_mut().flatten() {
        if port.protocol.as_deref().unwrap_or("").is_empty() {
            port.protocol = Some("TCP".into());
        }
        if is_zero_target(&port.target_port) {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let ty = spec_type(spec).to_owned();
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer")
        && spec
            .external_traffic_policy
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        spec.external_traffic_policy = Some("Cluster".into());
    }
    if ty != "ExternalName"
        && spec
            .internal_traffic_policy
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }
    // clusterIP and clusterIPs[0] describe the same thing; fill whichever is missing.
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let ips = spec.cluster_ips.clone().unwrap_or_default();
    if !ip.is_empty() && ips.is_empty() {
        spec.cluster_ips = Some(vec![ip]);
    } else if ip.is_empty() && !ips.is_empty() {
        spec.cluster_ip = Some(ips[0].clone());
    }
}

/// Fills `ipFamilyPolicy` and `ipFamilies` (registry `initIPFamilyFields`).
fn init_ip_family_fields(spec: &mut ServiceSpec, net: ServiceNetwork) -> ErrorList {
    let mut errs = ErrorList::default();
    if spec_type(spec) == "ExternalName" {
        return errs;
    }
    let headless = is_headless(spec);
    let ip_families: Vec<IpFamily> = spec
        .cluster_ips
        .iter()
        .flatten()
        .filter_map(|s| s.parse::<IpAddr>().ok().map(IpFamily::of))
        .collect();
    if spec.ip_family_policy.as_deref().unwrap_or("").is_empty() {
        let no_selector = spec.selector.as_ref().is_none_or(BTreeMap::is_empty);
        let no_families = spec.ip_families.as_ref().is_none_or(Vec::is_empty);
        let dual = ip_families.len() == 2
            || (headless && no_selector && net.secondary.is_some() && no_families)
            || spec.ip_families.as_ref().is_some_and(|f| f.len() == 2);
        let policy = if dual {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        spec.ip_family_policy = Some(policy.into());
    }
    let policy = spec.ip_family_policy.clone().unwrap_or_default();
    if policy == "RequireDualStack" && net.secondary.is_none() {
        errs.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            policy.as_str(),
            "this cluster is not configured for dual-stack services",
        ));
        return errs;
    }
    let mut families: Vec<String> = spec.ip_families.clone().unwrap_or_default();
    if families.is_empty() {
        families = ip_families.iter().map(|f| f.as_str().to_owned()).collect();
    }
    if families.is_empty() {
        families.push(net.primary.as_str().to_owned());
    }
    if matches!(policy.as_str(), "RequireDualStack" | "PreferDualStack")
        && families.len() == 1
        && let (Some(first), Some(_)) = (IpFamily::parse(&families[0]), net.secondary)
    {
        families.push(first.other().as_str().to_owned());
    }
    for (i, f) in families.iter().enumerate() {
        if let Some(fam) = IpFamily::parse(f)
            && !net.supports(fam)
        {
            errs.push(FieldError::invalid(
                format!("spec.ipFamilies[{i}]"),
                f.as_str(),
                "not configured on this cluster",
            ));
        }
    }
    spec.ip_families = Some(families);
    errs
}

/// Update-time preparation: keep allocated values the client left out (`patchAllocatedValues`)
/// and clear fields the new type no longer has (`dropTypeDependentFields`).
pub fn prepare_for_update(new: &mut Service, old: &Service, net: ServiceNetwork) -> ErrorList {
    new.status = old.status.clone();
    let old_spec = old.spec.clone().unwrap_or_default();
    let spec = new.spec.get_or_insert_with(Default::default);
    if needs_cluster_ip(&old_spec) && needs_cluster_ip(spec) {
        if spec.cluster_ip.as_deref().unwrap_or("").is_empty() {
            spec.cluster_ip = old_spec.cluster_ip.clone();
        }
        if spec.cluster_ips.as_ref().is_none_or(Vec::is_empty)
            && spec.cluster_ip == old_spec.cluster_ip
        {
            spec.cluster_ips = old_spec.cluster_ips.clone();
        }
    }
    if needs_node_ports(&old_spec) && needs_node_ports(spec) {
        let old_ports = old_spec.ports.clone().unwrap_or_default();
        for port in spec.ports.iter_mut().flatten() {
            if port.node_port.unwrap_or(0) == 0
                && let Some(o) = old_ports
                    .iter()
                    .find(|o| o.port == port.port && o.protocol == port.protocol)
            {
                port.node_port = o.node_port;
            }
        }
    }
    if needs_health_check_node_port(&old_spec)
        && needs_health_check_node_port(spec)
        && spec.health_check_node_port.unwrap_or(0) == 0
    {
        spec.health_check_node_port = old_spec.health_check_node_port;
    }
    if spec.ip_families.as_ref().is_none_or(Vec::is_empty) && needs_cluster_ip(spec) {
        spec.ip_families = old_spec.ip_families.clone();
    }
    if spec.ip_family_policy.is_none() && needs_cluster_ip(spec) {
        spec.ip_family_policy = old_spec.ip_family_policy.clone();
    }
    apply_spec_defaults(spec);
    // dropTypeDependentFields: values the client did not touch go away with the type.
    if needs_cluster_ip(&old_spec) && !needs_cluster_ip(spec) {
        if spec.cluster_ips == old_spec.cluster_ips && spec.cluster_ip == old_spec.cluster_ip {
            spec.cluster_ip = None;
            spec.cluster_ips = None;
        }
        if spec.ip_families == old_spec.ip_families {
            spec.ip_families = None;
        }
        if spec.ip_family_policy == old_spec.ip_family_policy {
            spec.ip_family_policy = None;
        }
    }
    if needs_node_ports(&old_spec) && !needs_node_ports(spec) {
        for port in spec.ports.iter_mut().flatten() {
            let same = old_spec
                .ports
                .iter()
                .flatten()
                .any(|o| o.port == port.port && o.node_port == port.node_port);
            if same {
                port.node_port = None;
            }
        }
    }
    if needs_health_check_node_port(&old_spec)
        && !needs_health_check_node_port(spec)
        && spec.health_check_node_port == old_spec.health_check_node_port
    {
        spec.health_check_node_port = None;
    }
    if externally_accessible(&old_spec)
        && !externally_accessible(spec)
        && spec.external_traffic_policy == old_spec.external_traffic_policy
    {
        spec.external_traffic_policy = None;
    }
    if spec_type(spec) != "LoadBalancer" && spec_type(&old_spec) == "LoadBalancer" {
        spec.allocate_load_balancer_node_ports = None;
    }
    if spec_type(spec) == "ExternalName" {
        spec.internal_traffic_policy = None;
        spec.external_traffic_policy = None;
    }
    if !needs_cluster_ip(&old_spec) && needs_cluster_ip(spec) {
        return init_ip_family_fields(spec, net);
    }
    ErrorList::default()
}

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// `ValidateService`: everything that can be checked from the object alone.
pub fn validate_create(svc: &Service) -> ErrorList {
    let mut errs = meta::validate_object_meta(&svc.metadata, true, names::dns1035_label);
    let Some(spec) = svc.spec.as_ref() else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    validate_spec(spec, &mut errs);
    errs
}

fn validate_spec(spec: &ServiceSpec, errs: &mut ErrorList) {
    let ty = spec.type_.as_deref().unwrap_or("");
    if ty.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", ty, TYPES));
    }
    let headless = is_headless(spec);
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    if ty == "ExternalName" {
        validate_external_name(spec, errs);
    }
    let mut names_seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        validate_port(port, i, ports.len() > 1, &mut names_seen, errs);
    }
    let mut seen_ports = HashSet::new();
    let mut seen_node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let proto = port.protocol.clone().unwrap_or_default();
        if !seen_ports.insert((port.port, proto.clone())) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}]"),
                BadValue::Raw(format!("{{port: {}, protocol: {proto:?}}}", port.port)),
            ));
        }
        if let Some(np) = port.node_port.filter(|&n| n != 0) {
            if ty == "ClusterIP" {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if !(1..=65535).contains(&np) {
                errs.push(FieldError::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    np,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if !seen_node_ports.insert((np, proto)) {
                errs.push(FieldError::duplicate(
                    format!("spec.ports[{i}].nodePort"),
                    np,
                ));
            }
        }
        if ty == "LoadBalancer" && port.port == 10250 {
            errs.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                port.port,
                "may not expose port 10250 externally since it is used by kubelet",
            ));
        }
    }
    validate_selector(spec.selector.as_ref(), errs);
    validate_affinity(spec, errs);
    if ty != "ExternalName" {
        validate_cluster_ips(spec, ty, errs);
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        let path = format!("spec.externalIPs[{i}]");
        match ip.parse::<IpAddr>() {
            Err(_) => errs.push(FieldError::invalid(path, ip, IP_DETAIL)),
            Ok(a) if a.is_unspecified() || a.is_loopback() || a.is_multicast() => {
                errs.push(FieldError::invalid(
                    path,
                    ip,
                    "may not be unspecified, loopback or multicast",
                ));
            }
            Ok(_) => {}
        }
    }
    if let Some(ranges) = &spec.load_balancer_source_ranges {
        if ty != "LoadBalancer" && !ranges.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.loadBalancerSourceRanges",
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            if r.trim().parse::<ipnet::IpNet>().is_err() {
                errs.push(FieldError::invalid(
                    format!("spec.loadBalancerSourceRanges[{i}]"),
                    r,
                    "must be a valid CIDR",
                ));
            }
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        errs.push(FieldError::required(
            "spec.allocateLoadBalancerNodePorts",
            "",
        ));
    }
    match spec.external_traffic_policy.as_deref() {
        None | Some("") => {
            if externally_accessible(spec) && ty != "ClusterIP" {
                errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
            }
        }
        Some(p) if !externally_accessible(spec) => errs.push(FieldError::invalid(
            "spec.externalTrafficPolicy",
            p,
            "may only be set for externally-accessible services",
        )),
        Some(p) if !["Cluster", "Local"].contains(&p) => errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            p,
            &["Cluster", "Local"],
        )),
        Some(_) => {}
    }
    match (
        spec.health_check_node_port,
        needs_health_check_node_port(spec),
    ) {
        (Some(p), false) if p != 0 => errs.push(FieldError::invalid(
            "spec.healthCheckNodePort",
            p,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        )),
        (Some(p), true) if !(1..=65535).contains(&p) => errs.push(FieldError::invalid(
            "spec.healthCheckNodePort",
            p,
            "must be between 1 and 65535, inclusive",
        )),
        _ => {}
    }
    match spec.internal_traffic_policy.as_deref() {
        None | Some("") if ty != "ExternalName" => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
        Some(p) if !["Cluster", "Local"].contains(&p) => errs.push(FieldError::not_supported(
            "spec.internalTrafficPolicy",
            p,
            &["Cluster", "Local"],
        )),
        _ => {}
    }
    if let Some(td) = spec.traffic_distribution.as_deref()
        && !["PreferClose", "PreferSameZone", "PreferSameNode"].contains(&td)
    {
        errs.push(FieldError::not_supported(
            "spec.trafficDistribution",
            td,
            &["PreferClose", "PreferSameNode", "PreferSameZone"],
        ));
    }
}

const IP_DETAIL: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

fn validate_external_name(spec: &ServiceSpec, errs: &mut ErrorList) {
    if spec.cluster_ips.as_ref().is_some_and(|v| !v.is_empty())
        || spec.cluster_ip.as_deref().is_some_and(|s| !s.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.clusterIPs",
            "may not be set for ExternalName services",
        ));
    }
    if spec.ip_families.as_ref().is_some_and(|v| !v.is_empty()) {
        errs.push(FieldError::forbidden(
            "spec.ipFamilies",
            "may not be set for ExternalName services",
        ));
    }
    if spec.ip_family_policy.is_some() {
        errs.push(FieldError::forbidden(
            "spec.ipFamilyPolicy",
            "may not be set for ExternalName services",
        ));
    }
    let name = spec.external_name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required("spec.externalName", ""));
    } else {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        for m in names::dns1123_subdomain(trimmed) {
            errs.push(FieldError::invalid("spec.externalName", name, m));
        }
    }
}

fn validate_port(
    port: &ServicePort,
    i: usize,
    many: bool,
    seen: &mut HashSet<String>,
    errs: &mut ErrorList,
) {
    let base = format!("spec.ports[{i}]");
    let name = port.name.as_deref().unwrap_or("");
    if name.is_empty() {
        if many {
            errs.push(FieldError::required(format!("{base}.name"), ""));
        }
    } else {
        for m in names::dns1123_label(name) {
            errs.push(FieldError::invalid(format!("{base}.name"), name, m));
        }
        if !seen.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(format!("{base}.name"), name));
        }
    }
    if !(1..=65535).contains(&port.port) {
        errs.push(FieldError::invalid(
            format!("{base}.port"),
            port.port,
            "must be between 1 and 65535, inclusive",
        ));
    }
    match port.protocol.as_deref() {
        None | Some("") => errs.push(FieldError::required(format!("{base}.protocol"), "")),
        Some(p) if !PROTOCOLS.contains(&p) => {
            errs.push(FieldError::not_supported(
                format!("{base}.protocol"),
                p,
                PROTOCOLS,
            ));
        }
        _ => {}
    }
    match &port.target_port {
        Some(IntOrString::Int(t)) if !(1..=65535).contains(t) => errs.push(FieldError::invalid(
            format!("{base}.targetPort"),
            *t,
            "must be between 1 and 65535, inclusive",
        )),
        Some(IntOrString::String(s)) => {
            for m in names::iana_svc_name(s) {
                errs.push(FieldError::invalid(format!("{base}.targetPort"), s, m));
            }
        }
        None => errs.push(FieldError::required(format!("{base}.targetPort"), "")),
        _ => {}
    }
    if let Some(ap) = port.app_protocol.as_deref() {
        for m in names::qualified_name(ap) {
            errs.push(FieldError::invalid(format!("{base}.appProtocol"), ap, m));
        }
    }
}

fn validate_selector(selector: Option<&BTreeMap<String, String>>, errs: &mut ErrorList) {
    for (k, v) in selector.into_iter().flatten() {
        for m in names::qualified_name(k) {
            errs.push(FieldError::invalid("spec.selector", k, m));
        }
        for m in names::label_value(v) {
            errs.push(FieldError::invalid(format!("spec.selector[{k}]"), v, m));
        }
    }
}

fn validate_affinity(spec: &ServiceSpec, errs: &mut ErrorList) {
    match spec.session_affinity.as_deref() {
        None | Some("") => errs.push(FieldError::required("spec.sessionAffinity", "")),
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match timeout {
                None => errs.push(FieldError::required(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    "",
                )),
                Some(t) if t <= 0 || t > MAX_CLIENT_IP_TIMEOUT => errs.push(FieldError::invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    t,
                    format!("must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}"),
                )),
                Some(_) => {}
            }
        }
        Some("None") => {
            if spec
                .session_affinity_config
                .as_ref()
                .is_some_and(|c| c.client_ip.is_some())
            {
                errs.push(FieldError::forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when `sessionAffinity` is None",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            other,
            &["ClientIP", "None"],
        )),
    }
}

fn validate_cluster_ips(spec: &ServiceSpec, ty: &str, errs: &mut ErrorList) {
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    let ips = spec.cluster_ips.as_deref().unwrap_or(&[]);
    if ips.first().map(String::as_str).unwrap_or("") != ip {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            BadValue::list(ips),
            "first value must match `clusterIP`",
        ));
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            BadValue::list(ips),
            "may only hold up to 2 values",
        ));
    }
    let mut families = Vec::new();
    for (i, v) in ips.iter().enumerate() {
        let path = format!("spec.clusterIPs[{i}]");
        if v == "None" {
            if i > 0 || ips.len() > 1 {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    "must be a valid IP address or 'None' as the only value",
                ));
            } else if ty == "NodePort" || ty == "LoadBalancer" {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!("may not be set to 'None' for {ty} services"),
                ));
            }
            continue;
        }
        match v.parse::<IpAddr>() {
            Err(_) => errs.push(FieldError::invalid(path, v, IP_DETAIL)),
            Ok(a) => {
                let fam = IpFamily::of(a);
                if families.contains(&fam) {
                    errs.push(FieldError::invalid(
                        path.clone(),
                        BadValue::list(ips),
                        "may specify no more than one IP for each IP family",
                    ));
                }
                families.push(fam);
                if let Some(want) = spec.ip_families.as_ref().and_then(|f| f.get(i))
                    && IpFamily::parse(want).is_some_and(|w| w != fam)
                {
                    errs.push(FieldError::invalid(
                        path,
                        v,
                        format!("expected an {want} value as indicated by `ipFamilies[{i}]`"),
                    ));
                }
            }
        }
    }
    let fams = spec.ip_families.as_deref().unwrap_or(&[]);
    let mut seen = HashSet::new();
    for (i, f) in fams.iter().enumerate() {
        if IpFamily::parse(f).is_none() {
            errs.push(FieldError::not_supported(
                format!("spec.ipFamilies[{i}]"),
                f,
                &["IPv4", "IPv6"],
            ));
        } else if !seen.insert(f) {
            errs.push(FieldError::duplicate(format!("spec.ipFamilies[{i}]"), f));
        }
    }
    if fams.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.ipFamilies",
            BadValue::list(fams),
            "may only hold up to 2 values",
        ));
    }
    match spec.ip_family_policy.as_deref() {
        None => {}
        Some(p @ "SingleStack") if fams.len() > 1 || ips.len() > 1 => {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                p,
                "must be RequireDualStack or PreferDualStack when multiple IP families are specified",
            ));
        }
        Some("SingleStack" | "PreferDualStack" | "RequireDualStack") => {}
        Some(p) => errs.push(FieldError::not_supported(
            "spec.ipFamilyPolicy",
            p,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        )),
    }
}

/// `ValidateServiceUpdate`: the create checks plus immutability rules.
pub fn validate_update(new: &Service, old: &Service) -> ErrorList {
    let mut errs = validate_create(new);
    errs.extend(meta::validate_update_meta(&new.metadata, &old.metadata));
    let (ns, os) = (
        new.spec.clone().unwrap_or_default(),
        old.spec.clone().unwrap_or_default(),
    );
    // Moving to or from ExternalName is the one way to change the address.
    if needs_cluster_ip(&ns) && needs_cluster_ip(&os) {
        let old_ips = os.cluster_ips.clone().unwrap_or_default();
        let new_ips = ns.cluster_ips.clone().unwrap_or_default();
        if let Some(first) = old_ips.first()
            && new_ips.first() != Some(first)
        {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                BadValue::list(&new_ips),
                "may not change once set",
            ));
        }
        if let (Some(o), Some(n)) = (old_ips.get(1), new_ips.get(1))
            && o != n
        {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[1]",
                n,
                "may not change once set",
            ));
        }
        let (of, nf) = (
            os.ip_families.clone().unwrap_or_default(),
            ns.ip_families.clone().unwrap_or_default(),
        );
        if !of.is_empty() && nf.first() != of.first() {
            errs.push(FieldError::invalid(
                "spec.ipFamilies[0]",
                BadValue::list(&nf),
                "may not change once set",
            ));
        }
    }
    errs
}
