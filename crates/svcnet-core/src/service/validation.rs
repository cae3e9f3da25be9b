//! `ValidateService`, `ValidateServiceUpdate` and `ValidateServiceStatusUpdate`
//! (`pkg/apis/core/validation/validation.go`), in kube's order so that multi-error messages
//! read the same.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::ip_families::{IP_DETAIL, validate_cluster_ips_related};
use super::{
    default_old, families_of, health_check_node_port, ips_of, is_headless_ips,
    needs_external_traffic_policy, needs_health_check_node_port, node_port, str_of, ty,
};
use crate::field::{BadValue, ErrorList, FieldError, go_quote};
use crate::{ip, meta, names};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const KUBELET_PORT: i32 = 10250;
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
const ANNOTATION_TOPOLOGY_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
const ANNOTATION_SOURCE_RANGES: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

fn valid_port(p: i32) -> bool {
    (1..=65535).contains(&p)
}

/// `ValidateServiceCreate`, which is `ValidateService`. Called after allocation.
pub fn validate_create(svc: &Service) -> ErrorList {
    validate_service(svc)
}

/// `ValidateServiceUpdate`: metadata update rules, dual-stack upgrade and downgrade of
/// `clusterIPs` and `ipFamilies`, `loadBalancerClass`, `healthCheckNodePort` immutability,
/// then everything [`validate_create`] checks.
pub fn validate_update(new: &Service, old: &Service) -> ErrorList {
    let old = default_old(old);
    let empty = ServiceSpec::default();
    let (ns, os) = (
        new.spec.as_ref().unwrap_or(&empty),
        old.spec.as_ref().unwrap_or(&empty),
    );
    let mut errs = meta::validate_update_meta(&new.metadata, &old.metadata);
    upgrade_downgrade_cluster_ips(os, ns, &mut errs);
    upgrade_downgrade_ip_families(os, ns, &mut errs);
    validate_load_balancer_class(Some(os), ns, &mut errs);
    if needs_health_check_node_port(os)
        && needs_health_check_node_port(ns)
        && health_check_node_port(os) != health_check_node_port(ns)
    {
        errs.push(FieldError::forbidden(
            "spec.healthCheckNodePort",
            "field is immutable",
        ));
    }
    errs.extend(validate_service(new));
    errs
}

/// `ValidateServiceStatusUpdate`: metadata update rules and the load balancer ingress points.
pub fn validate_status_update(new: &Service, old: &Service) -> ErrorList {
    let mut errs = meta::validate_update_meta(&new.metadata, &old.metadata);
    let ingress = new
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or(&[]);
    for (i, ing) in ingress.iter().enumerate() {
        let path = format!("status.loadBalancer.ingress[{i}]");
        let ip = str_of(&ing.ip);
        if !ip.is_empty() && ip::parse_ip_sloppy(ip).is_none() {
            errs.push(FieldError::invalid(
                format!("{path}.ip"),
                ip,
                "must be a valid IP address",
            ));
        }
        let host = str_of(&ing.hostname);
        if !host.is_empty() {
            for m in names::dns1123_subdomain(host) {
                errs.push(FieldError::invalid(format!("{path}.hostname"), host, m));
            }
            if ip::parse_ip_sloppy(host).is_some() {
                errs.push(FieldError::invalid(
                    format!("{path}.hostname"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
    errs
}

/// `validateUpgradeDowngradeClusterIPs`. The value is always the whole new list.
fn upgrade_downgrade_cluster_ips(old: &ServiceSpec, new: &ServiceSpec, errs: &mut ErrorList) {
    if ty(new) == "ExternalName" || ty(old) == "ExternalName" {
        return;
    }
    if is_headless_ips(old) && is_headless_ips(new) {
        return;
    }
    let (o, n) = (ips_of(old), ips_of(new));
    let value = || BadValue::slice("string", new.cluster_ips.as_deref());
    let changed = || FieldError::invalid("spec.clusterIPs[0]", value(), "may not change once set");
    match o.len().cmp(&n.len()) {
        std::cmp::Ordering::Equal => {
            for (i, ip) in o.iter().enumerate() {
                if *ip != n[i] {
                    errs.push(FieldError::invalid(
                        format!("spec.clusterIPs[{i}]"),
                        value(),
                        "may not change once set",
                    ));
                }
            }
        }
        std::cmp::Ordering::Greater => {
            if n.is_empty() {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    value(),
                    "primary clusterIP can not be unset",
                ));
            }
            if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
                errs.push(changed());
            }
            if n.len() == 1 && str_of(&new.ip_family_policy) != "SingleStack" {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    new.ip_family_policy.as_deref(),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        }
        std::cmp::Ordering::Less => {
            if !o.is_empty() && n[0] != o[0] {
                errs.push(changed());
            }
        }
    }
}

/// `validateUpgradeDowngradeIPFamilies`. kube names `ipFamilies[0]` for every index, and
/// shows `clusterIPs` as the value when the primary family changed.
fn upgrade_downgrade_ip_families(old: &ServiceSpec, new: &ServiceSpec, errs: &mut ErrorList) {
    if ty(new) == "ExternalName" || ty(old) == "ExternalName" {
        return;
    }
    if is_headless_ips(old) || is_headless_ips(new) {
        return;
    }
    let (o, n) = (families_of(old), families_of(new));
    let families = || BadValue::slice("core.IPFamily", new.ip_families.as_deref());
    let ips = || BadValue::slice("string", new.cluster_ips.as_deref());
    const PATH: &str = "spec.ipFamilies[0]";
    match o.len().cmp(&n.len()) {
        std::cmp::Ordering::Equal => {
            for (i, f) in o.iter().enumerate() {
                if *f != n[i] {
                    errs.push(FieldError::invalid(
                        PATH,
                        families(),
                        "may not change once set",
                    ));
                }
            }
        }
        std::cmp::Ordering::Greater => {
            if ips_of(new).is_empty() {
                errs.push(FieldError::invalid(
                    PATH,
                    families(),
                    "primary ipFamily can not be unset",
                ));
            }
            if !n.is_empty() && n[0] != o[0] {
                errs.push(FieldError::invalid(PATH, ips(), "may not change once set"));
            }
            if n.len() == 1 && str_of(&new.ip_family_policy) != "SingleStack" {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    new.ip_family_policy.as_deref(),
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                ));
            }
        }
        std::cmp::Ordering::Less => {
            if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
                errs.push(FieldError::invalid(PATH, ips(), "may not change once set"));
            }
        }
    }
}

/// `validateLoadBalancerClassField`: fixed once a LoadBalancer has one (or none), a qualified
/// name, and only on LoadBalancers.
fn validate_load_balancer_class(
    old: Option<&ServiceSpec>,
    new: &ServiceSpec,
    errs: &mut ErrorList,
) {
    const PATH: &str = "spec.loadBalancerClass";
    if let Some(old) = old
        && ty(old) == "LoadBalancer"
        && ty(new) == "LoadBalancer"
        && old.load_balancer_class != new.load_balancer_class
    {
        errs.push(FieldError::invalid(
            PATH,
            new.load_balancer_class.as_deref(),
            "may not change once set",
        ));
    }
    match (&new.load_balancer_class, ty(new) == "LoadBalancer") {
        (Some(class), true) => {
            for m in names::qualified_name(class) {
                errs.push(FieldError::invalid(PATH, class, m));
            }
        }
        (Some(_), false) => errs.push(FieldError::forbidden(
            PATH,
            "may only be used when `type` is 'LoadBalancer'",
        )),
        (None, _) => {}
    }
}

/// `%#v` of the `core.ServicePort` key kube uses to find duplicate ports.
fn go_service_port_key(protocol: &str, port: i32) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        go_quote(protocol)
    )
}

/// `ValidateService`.
fn validate_service(svc: &Service) -> ErrorList {
    let mut errs = meta::validate_object_meta(&svc.metadata, true, names::dns1035_label);
    let annotations = svc.metadata.annotations.as_ref();
    let annotation = |k: &str| annotations.and_then(|a| a.get(k));
    if let (Some(hints), Some(mode)) = (
        annotation(ANNOTATION_TOPOLOGY_HINTS),
        annotation(ANNOTATION_TOPOLOGY_MODE),
    ) && hints != mode
    {
        errs.push(FieldError::invalid(
            format!("metadata.annotations[{ANNOTATION_TOPOLOGY_MODE}]"),
            mode,
            format!("must match annotations[{ANNOTATION_TOPOLOGY_HINTS}] when both are specified"),
        ));
    }
    let empty = ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&empty);
    let ty = ty(spec);
    let headless = is_headless_ips(spec);
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match ty {
        "LoadBalancer" => {
            for (i, p) in ports.iter().enumerate() {
                if p.port == KUBELET_PORT {
                    errs.push(FieldError::invalid(
                        format!("spec.ports[{i}]"),
                        p.port,
                        format!(
                            "may not expose port {KUBELET_PORT} externally since it is used by kubelet"
                        ),
                    ));
                }
            }
            if headless {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    "None",
                    "may not be set to 'None' for LoadBalancer services",
                ));
            }
        }
        "NodePort" if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            "None",
            "may not be set to 'None' for NodePort services",
        )),
        "ExternalName" => validate_external_name(spec, &mut errs),
        _ => {}
    }
    let mut names_seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        validate_port(port, i, ports.len() > 1, &mut names_seen, &mut errs);
    }
    if spec.selector.is_some() {
        meta::validate_labels(spec.selector.as_ref(), "spec.selector", &mut errs);
    }
    validate_session_affinity(spec, &mut errs);
    errs.extend(validate_cluster_ips_related(spec));
    validate_external_ips(spec, &mut errs);
    if ty.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", ty, TYPES));
    }
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if node_port(p) != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = node_port(p);
        if np != 0 && !node_ports.insert((str_of(&p.protocol), np)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}].nodePort"),
                np,
            ));
        }
    }
    let mut port_keys = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = str_of(&p.protocol);
        if !port_keys.insert((proto, p.port)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}]"),
                BadValue::Raw(go_service_port_key(proto, p.port)),
            ));
        }
    }
    validate_source_ranges(svc, spec, &mut errs);
    if spec.allocate_load_balancer_node_ports.is_some() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        // Sic: kube's path has no `spec.`.
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    validate_load_balancer_class(None, spec, &mut errs);
    validate_external_traffic_policy(spec, &mut errs);
    validate_internal_traffic_policy(spec, &mut errs);
    // A 1.33 field, kept with its own rule.
    if let Some(td) = spec.traffic_distribution.as_deref()
        && !["PreferClose", "PreferSameZone", "PreferSameNode"].contains(&td)
    {
        errs.push(FieldError::not_supported(
            "spec.trafficDistribution",
            td,
            &["PreferClose", "PreferSameNode", "PreferSameZone"],
        ));
    }
    errs
}

fn validate_external_name(spec: &ServiceSpec, errs: &mut ErrorList) {
    if !ips_of(spec).is_empty() {
        errs.push(FieldError::forbidden(
            "spec.clusterIPs",
            "may not be set for ExternalName services",
        ));
    }
    if !families_of(spec).is_empty() {
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
    // The name may end in a dot to say it is fully qualified.
    let name = str_of(&spec.external_name);
    let cname = name.strip_suffix('.').unwrap_or(name);
    if cname.is_empty() {
        errs.push(FieldError::required("spec.externalName", ""));
    } else {
        for m in names::dns1123_subdomain(cname) {
            errs.push(FieldError::invalid("spec.externalName", cname, m));
        }
    }
}

/// `validateServicePort`.
fn validate_port(
    port: &ServicePort,
    i: usize,
    require_name: bool,
    seen: &mut HashSet<String>,
    errs: &mut ErrorList,
) {
    let base = format!("spec.ports[{i}]");
    let name = str_of(&port.name);
    if require_name && name.is_empty() {
        errs.push(FieldError::required(format!("{base}.name"), ""));
    } else if !name.is_empty() {
        for m in names::dns1123_label(name) {
            errs.push(FieldError::invalid(format!("{base}.name"), name, m));
        }
        if !seen.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(format!("{base}.name"), name));
        }
    }
    if !valid_port(port.port) {
        errs.push(FieldError::invalid(
            format!("{base}.port"),
            port.port,
            PORT_RANGE,
        ));
    }
    match str_of(&port.protocol) {
        "" => errs.push(FieldError::required(format!("{base}.protocol"), "")),
        p if !PROTOCOLS.contains(&p) => errs.push(FieldError::not_supported(
            format!("{base}.protocol"),
            p,
            PROTOCOLS,
        )),
        _ => {}
    }
    // An absent targetPort is Go's zero IntOrString, the number 0.
    match port.target_port.as_ref().unwrap_or(&IntOrString::Int(0)) {
        IntOrString::Int(t) if !valid_port(*t) => errs.push(FieldError::invalid(
            format!("{base}.targetPort"),
            *t,
            PORT_RANGE,
        )),
        IntOrString::String(s) => {
            for m in names::iana_svc_name(s) {
                errs.push(FieldError::invalid(format!("{base}.targetPort"), s, m));
            }
        }
        IntOrString::Int(_) => {}
    }
    if let Some(ap) = port.app_protocol.as_deref() {
        for m in names::qualified_name(ap) {
            errs.push(FieldError::invalid(format!("{base}.appProtocol"), ap, m));
        }
    }
}

fn validate_session_affinity(spec: &ServiceSpec, errs: &mut ErrorList) {
    const DETAIL: &str = "when session affinity type is ClientIP";
    match str_of(&spec.session_affinity) {
        "" => errs.push(FieldError::required("spec.sessionAffinity", "")),
        "ClientIP" => {
            let path = "spec.sessionAffinityConfig";
            let Some(cfg) = spec.session_affinity_config.as_ref() else {
                errs.push(FieldError::required(path, DETAIL));
                return;
            };
            let Some(client_ip) = cfg.client_ip.as_ref() else {
                errs.push(FieldError::required(format!("{path}.clientIP"), DETAIL));
                return;
            };
            let path = format!("{path}.clientIP.timeoutSeconds");
            match client_ip.timeout_seconds {
                None => errs.push(FieldError::required(path, DETAIL)),
                Some(t) if t <= 0 || t > super::MAX_CLIENT_IP_TIMEOUT => {
                    errs.push(FieldError::invalid(
                        path,
                        t,
                        format!(
                            "must be greater than 0 and less than {}",
                            super::MAX_CLIENT_IP_TIMEOUT
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        // Defaulting drops the config, so this is only reachable without it.
        "None" if spec.session_affinity_config.is_some() => errs.push(FieldError::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        )),
        "None" => {}
        other => errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            other,
            &["ClientIP", "None"],
        )),
    }
}

/// externalIPs must be IPs, and not unspecified, loopback, link-local or link-local
/// multicast (`ValidateNonSpecialIP`); other multicast addresses are allowed.
fn validate_external_ips(spec: &ServiceSpec, errs: &mut ErrorList) {
    for (i, v) in spec.external_ips.iter().flatten().enumerate() {
        let path = format!("spec.externalIPs[{i}]");
        let Some(addr) = ip::parse_ip_sloppy(v) else {
            errs.push(FieldError::invalid(path, v, IP_DETAIL));
            continue;
        };
        if ip::is_unspecified(addr) {
            errs.push(FieldError::invalid(
                path.clone(),
                v,
                format!("may not be unspecified ({v})"),
            ));
        }
        if ip::is_loopback(addr) {
            errs.push(FieldError::invalid(
                path.clone(),
                v,
                "may not be in the loopback range (127.0.0.0/8, ::1/128)",
            ));
        }
        if ip::is_link_local_unicast(addr) {
            errs.push(FieldError::invalid(
                path.clone(),
                v,
                "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
            ));
        }
        if ip::is_link_local_multicast(addr) {
            errs.push(FieldError::invalid(
                path,
                v,
                "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
            ));
        }
    }
}

/// `spec.loadBalancerSourceRanges`, or when it is empty the source-ranges annotation: only on
/// LoadBalancers, and one error for the whole value if any range is bad.
fn validate_source_ranges(svc: &Service, spec: &ServiceSpec, errs: &mut ErrorList) {
    let ranges = spec.load_balancer_source_ranges.as_deref().unwrap_or(&[]);
    let annotation = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SOURCE_RANGES));
    let (path, value, specs): (String, String, Vec<String>) = if !ranges.is_empty() {
        (
            // Sic: kube spells the path with a capital L.
            "spec.LoadBalancerSourceRanges".into(),
            format!("[{}]", ranges.join(" ")),
            ranges.to_vec(),
        )
    } else if let Some(val) = annotation {
        let trimmed = val.trim();
        let list = if trimmed.is_empty() {
            "0.0.0.0/0"
        } else {
            trimmed
        };
        (
            format!("metadata.annotations[{ANNOTATION_SOURCE_RANGES}]"),
            val.clone(),
            list.split(',').map(str::to_owned).collect(),
        )
    } else {
        return;
    };
    if ty(spec) != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            path.clone(),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if specs
        .iter()
        .any(|r| ip::parse_cidr_sloppy(r.trim()).is_none())
    {
        errs.push(FieldError::invalid(
            path,
            value,
            "must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 ",
        ));
    }
}

/// `validateServiceExternalTrafficPolicy`: 1.28 ties the policy to NodePort and LoadBalancer
/// only (later releases also allow it with externalIPs), and the health check node port to
/// LoadBalancer with `Local`.
fn validate_external_traffic_policy(spec: &ServiceSpec, errs: &mut ErrorList) {
    let policy = str_of(&spec.external_traffic_policy);
    if !needs_external_traffic_policy(spec) {
        if !policy.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                policy,
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            ));
        }
    } else if policy.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !["Cluster", "Local"].contains(&policy) {
        errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            policy,
            &["Cluster", "Local"],
        ));
    }
    let hc = health_check_node_port(spec);
    if !needs_health_check_node_port(spec) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc == 0 {
        errs.push(FieldError::required("spec.healthCheckNodePort", ""));
    } else if !valid_port(hc) {
        errs.push(FieldError::invalid(
            "spec.healthCheckNodePort",
            hc,
            PORT_RANGE,
        ));
    }
}

/// `validateServiceInternalTrafficFieldsValue`: required only for ClusterIP, NodePort and
/// LoadBalancer (unknown types are not asked for it).
fn validate_internal_traffic_policy(spec: &ServiceSpec, errs: &mut ErrorList) {
    match spec.internal_traffic_policy.as_deref() {
        None if matches!(ty(spec), "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
        Some(p) if !["Cluster", "Local"].contains(&p) => errs.push(FieldError::not_supported(
            "spec.internalTrafficPolicy",
            p,
            &["Cluster", "Local"],
        )),
        _ => {}
    }
}
