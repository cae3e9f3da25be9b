//! `GetWarningsForService` (`pkg/api/service/warnings.go`): the `Warning` headers of a
//! Service create or update. The texts are kube's, word for word.

use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use super::{str_of, ty};
use crate::field::go_quote;
use crate::ip;

const ANNOTATION_TOPOLOGY_HINTS: &str = "service.kubernetes.io/topology-aware-hints";

/// Addresses that validation accepted (it reads `010.0.0.1` as `10.0.0.1`) but the strict
/// parser refuses, or IPv6 not written in RFC 5952 form.
fn ip_warning(path: &str, address: &str) -> Option<String> {
    match ip::parse_addr_strict(address) {
        Err(e) => Some(format!(
            "{path}: IP address was accepted, but will be invalid in a future Kubernetes release: {e}"
        )),
        Ok(addr) if addr.is_ipv6() && ip::netip_string(addr) != address => Some(format!(
            "{path}: IPv6 address {} is not in RFC 5952 canonical format ({}), which may cause controller apply-loops",
            go_quote(address),
            go_quote(&ip::netip_string(addr))
        )),
        Ok(_) => None,
    }
}

fn cidr_warning(path: &str, cidr: &str) -> Option<String> {
    match ip::parse_prefix_strict(cidr) {
        Err(e) => Some(format!(
            "{path}: IP prefix was accepted, but will be invalid in a future Kubernetes release: {e}"
        )),
        Ok((addr, bits)) => {
            let canonical = format!("{}/{bits}", ip::netip_string(addr));
            (addr.is_ipv6() && canonical != cidr).then(|| {
                format!(
                    "{path}: IPv6 prefix {} is not in RFC 5952 canonical format ({}), which may cause controller apply-loops",
                    go_quote(cidr),
                    go_quote(&canonical)
                )
            })
        }
    }
}

/// The warnings kube returns for writing `new` (the old version does not matter in 1.28).
pub fn warnings(new: &Service, _old: Option<&Service>) -> Vec<String> {
    let mut out = Vec::new();
    if new
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_TOPOLOGY_HINTS))
    {
        out.push(format!(
            "annotation {ANNOTATION_TOPOLOGY_HINTS} is deprecated, please use service.kubernetes.io/topology-mode instead"
        ));
    }
    let empty = ServiceSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&empty);
    let cluster_ip = str_of(&spec.cluster_ip);
    if !cluster_ip.is_empty() && cluster_ip != "None" {
        for (i, v) in spec.cluster_ips.iter().flatten().enumerate() {
            out.extend(ip_warning(&format!("spec.clusterIPs[{i}]"), v));
        }
    }
    for (i, v) in spec.external_ips.iter().flatten().enumerate() {
        out.extend(ip_warning(&format!("spec.externalIPs[{i}]"), v));
    }
    let lb_ip = str_of(&spec.load_balancer_ip);
    if !lb_ip.is_empty() {
        out.extend(ip_warning("spec.loadBalancerIP", lb_ip));
    }
    for (i, v) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        out.extend(cidr_warning(
            &format!("spec.loadBalancerSourceRanges[{i}]"),
            v,
        ));
    }
    if ty(spec) == "ExternalName" && spec.external_ips.as_ref().is_some_and(|v| !v.is_empty()) {
        out.push("spec.externalIPs is ignored when spec.type is \"ExternalName\"".into());
    }
    if ty(spec) != "ExternalName" && !str_of(&spec.external_name).is_empty() {
        out.push("spec.externalName is ignored when spec.type is not \"ExternalName\"".into());
    }
    out
}
