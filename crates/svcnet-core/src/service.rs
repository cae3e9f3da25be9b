//! Service defaulting, preparation, validation and warnings, as kube-apiserver 1.28 does them.
//!
//! The API server calls these in kube's order (`pkg/registry/core/service`):
//!
//! * every request body and patch result: [`set_defaults`] (`SetDefaults_Service`);
//! * create: [`prepare_for_create`] (status reset, `normalizeClusterIPs`,
//!   `initIPFamilyFields`), then allocation ([`crate::service_alloc`]), then
//!   [`validate_create`] and [`warnings`];
//! * update: [`prepare_for_update`] (`patchAllocatedValues`, `normalizeClusterIPs`,
//!   `initIPFamilyFields` with dual-stack upgrade and downgrade), then allocation, then
//!   [`finish_update`] (`PrepareForUpdate`: old status, `dropTypeDependentFields`), then
//!   [`validate_update`] and [`warnings`];
//! * `/status`: [`validate_status_update`];
//! * every Service read from storage or returned by a write: [`default_on_read`].
//!
//! Each phase that can fail returns only its own errors, so an IP-family problem hides the
//! rest of validation, exactly as kube's short-circuits do.

mod ip_families;
mod validation;
mod warnings;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::ErrorList;

pub use validation::{validate_create, validate_status_update, validate_update};
pub use warnings::warnings;

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
    /// The family of a parsed address (an IPv4-mapped IPv6 address is IPv6 here; use
    /// [`crate::ip::family_of`] for Go's view).
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
    fn dual_stack(&self) -> bool {
        self.secondary.is_some()
    }
}

// === predicates ===

/// The type, with the API default (`ClusterIP`) when unset. For consumers of stored Services.
pub fn spec_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("ClusterIP")
}

/// Whether the Service has no cluster IP (`clusterIP: None`). For consumers of stored Services.
pub fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some("None")
}

/// The type as sent; validation must see an empty one.
fn ty(spec: &ServiceSpec) -> &str {
    str_of(&spec.type_)
}

/// A Go `string` field: unset and empty are the same.
fn str_of(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn ips_of(spec: &ServiceSpec) -> &[String] {
    spec.cluster_ips.as_deref().unwrap_or(&[])
}

fn families_of(spec: &ServiceSpec) -> &[String] {
    spec.ip_families.as_deref().unwrap_or(&[])
}

fn has_selector(spec: &ServiceSpec) -> bool {
    spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

/// kube's `isHeadlessService`: `clusterIPs` is exactly `["None"]`.
fn is_headless_ips(spec: &ServiceSpec) -> bool {
    matches!(ips_of(spec), [only] if only == "None")
}

/// Types that carry a cluster IP (all but ExternalName).
pub fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    ty(spec) != "ExternalName"
}

/// NodePort and LoadBalancer Services hold node ports (kube's `needsNodePort`), whatever
/// `allocateLoadBalancerNodePorts` says: with `false`, requested ports are still reserved.
pub fn needs_node_ports(spec: &ServiceSpec) -> bool {
    matches!(ty(spec), "NodePort" | "LoadBalancer")
}

/// Whether ports without a nodePort get one allocated (`shouldAllocateNodePorts`).
pub fn should_allocate_node_ports(spec: &ServiceSpec) -> bool {
    match ty(spec) {
        "NodePort" => true,
        "LoadBalancer" => spec.allocate_load_balancer_node_ports.unwrap_or(true),
        _ => false,
    }
}

/// `apiservice.NeedsHealthCheck`: a LoadBalancer with `externalTrafficPolicy: Local`.
pub fn needs_health_check_node_port(spec: &ServiceSpec) -> bool {
    ty(spec) == "LoadBalancer" && str_of(&spec.external_traffic_policy) == "Local"
}

/// Types for which `externalTrafficPolicy` applies in 1.28 (`needsExternalTrafficPolicy`).
fn needs_external_traffic_policy(spec: &ServiceSpec) -> bool {
    matches!(ty(spec), "NodePort" | "LoadBalancer")
}

fn node_port(p: &k8s_openapi::api::core::v1::ServicePort) -> i32 {
    p.node_port.unwrap_or(0)
}

fn health_check_node_port(spec: &ServiceSpec) -> i32 {
    spec.health_check_node_port.unwrap_or(0)
}

/// `sameClusterIPs` from the allocator: the lists are equal (unset and empty alike).
fn same_cluster_ips(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    ips_of(a) == ips_of(b)
}

/// `sameIPFamilies` from the allocator: the lists are equal (unset and empty alike).
fn same_ip_families(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    families_of(a) == families_of(b)
}

/// `isMatchingPreferDualStackClusterIPFields`: a PreferDualStack Service whose IP fields did
/// not change is neither upgraded nor downgraded when the cluster's stack changed.
pub(crate) fn is_matching_prefer_dual_stack(new: &ServiceSpec, old: Option<&ServiceSpec>) -> bool {
    let Some(old) = old else {
        return false;
    };
    let Some(policy) = new.ip_family_policy.as_deref() else {
        return false;
    };
    ty(old) == ty(new)
        && matches!(ty(new), "ClusterIP" | "NodePort" | "LoadBalancer")
        && policy == "PreferDualStack"
        && old
            .ip_family_policy
            .as_deref()
            .is_none_or(|p| p == "PreferDualStack")
        && same_cluster_ips(old, new)
        && same_ip_families(old, new)
}

// === defaulting ===

fn is_zero_target(tp: &Option<IntOrString>) -> bool {
    match tp {
        None => true,
        Some(IntOrString::Int(0)) => true,
        Some(IntOrString::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// `SetDefaults_Service` (`pkg/apis/core/v1/defaults.go`), which kube runs on every decoded
/// body, including PUT bodies and the result of every kind of patch.
pub fn set_defaults(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    if str_of(&spec.session_affinity).is_empty() {
        spec.session_affinity = Some("None".into());
    }
    match str_of(&spec.session_affinity) {
        "None" => spec.session_affinity_config = None,
        "ClientIP" => {
            let has_timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .is_some_and(|c| c.timeout_seconds.is_some());
            if !has_timeout {
                // The whole config is replaced, not filled in.
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(DEFAULT_CLIENT_IP_TIMEOUT),
                    }),
                });
            }
        }
        _ => {}
    }
    if str_of(&spec.type_).is_empty() {
        spec.type_ = Some("ClusterIP".into());
    }
    for port in spec.ports.iter_mut().flatten() {
        if str_of(&port.protocol).is_empty() {
            port.protocol = Some("TCP".into());
        }
        if is_zero_target(&port.target_port) {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let ty = str_of(&spec.type_).to_owned();
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer")
        && str_of(&spec.external_traffic_policy).is_empty()
    {
        spec.external_traffic_policy = Some("Cluster".into());
    }
    // A pointer in the API: only an absent value is defaulted, and only for these types.
    if spec.internal_traffic_policy.is_none()
        && matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer")
    {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }
}

/// The `status` kube stores for a new Service, `{loadBalancer: {}}`.
fn empty_status() -> ServiceStatus {
    ServiceStatus {
        load_balancer: Some(Default::default()),
        conditions: None,
    }
}

/// `defaultOnRead`, kube's decorator for every Service it returns (get, list, watch and
/// write responses) and for the old object of an update: `clusterIPs` from `clusterIP`,
/// IP-family fields for objects stored without them, and no `internalTrafficPolicy` on an
/// ExternalName Service (older versions defaulted it there).
pub fn default_on_read(svc: &mut Service, net: ServiceNetwork) {
    if let Some(spec) = svc.spec.as_mut() {
        ip_families::default_on_read(spec, Some(net.primary));
    }
}

/// `defaultOnRead` without the family defaults, for the old object where the network is not
/// at hand (stored Services always carry their families).
fn default_old(old: &Service) -> Service {
    let mut old = old.clone();
    if let Some(spec) = old.spec.as_mut() {
        ip_families::default_on_read(spec, None);
    }
    old
}

// === create and update ===

/// The create steps before allocation: `PrepareForCreate` (status reset),
/// `normalizeClusterIPs` and `initIPFamilyFields`. An error is a 422 with only these causes.
pub fn prepare_for_create(svc: &mut Service, net: ServiceNetwork) -> Result<(), ErrorList> {
    svc.status = Some(empty_status());
    let spec = svc.spec.get_or_insert_with(Default::default);
    ip_families::normalize_cluster_ips(spec, None);
    ip_families::init_ip_family_fields(spec, None, net)
}

/// The update steps before allocation (kube's `beginUpdate`): `patchAllocatedValues` (keep
/// what was allocated and the client left out: cluster IPs, node ports matched by port name,
/// the health check node port), `normalizeClusterIPs` and `initIPFamilyFields`, which also
/// trims the secondary IP on a downgrade and adds the second family on an upgrade.
pub fn prepare_for_update(
    new: &mut Service,
    old: &Service,
    net: ServiceNetwork,
) -> Result<(), ErrorList> {
    let mut old = old.clone();
    default_on_read(&mut old, net);
    let old_spec = old.spec.unwrap_or_default();
    let spec = new.spec.get_or_insert_with(Default::default);
    ip_families::patch_allocated_values(spec, &old_spec);
    ip_families::normalize_cluster_ips(spec, Some(&old_spec));
    ip_families::init_ip_family_fields(spec, Some(&old_spec), net)
}

/// The update steps after allocation (`PrepareForUpdate`): the status stays the old one, and
/// fields the new type cannot have are dropped if the client did not change them
/// (`dropTypeDependentFields`), including `status.loadBalancer` when the type is not
/// LoadBalancer.
pub fn finish_update(new: &mut Service, old: &Service) {
    let old = default_old(old);
    let mut status = old.status.clone().unwrap_or_else(empty_status);
    if status.load_balancer.is_none() {
        status.load_balancer = Some(Default::default());
    }
    new.status = Some(status);
    drop_type_dependent_fields(new, &old);
}

/// `dropTypeDependentFields` (`strategy.go`).
fn drop_type_dependent_fields(new: &mut Service, old: &Service) {
    let empty = ServiceSpec::default();
    let os = old.spec.as_ref().unwrap_or(&empty);
    let ns = new.spec.get_or_insert_with(Default::default);
    if needs_cluster_ip(os) && !needs_cluster_ip(ns) {
        if str_of(&os.cluster_ip) == str_of(&ns.cluster_ip) && same_cluster_ips(os, ns) {
            ns.cluster_ip = None;
            ns.cluster_ips = None;
        }
        // reflect.DeepEqual: an empty list is not the same as none.
        if os.ip_families == ns.ip_families {
            ns.ip_families = None;
        }
        if str_of(&os.ip_family_policy) == str_of(&ns.ip_family_policy) {
            ns.ip_family_policy = None;
        }
    }
    if needs_node_ports(os) && !needs_node_ports(ns) {
        // Users may add, remove or change ports, but not add node port values.
        let old_ports: Vec<i32> = os.ports.iter().flatten().map(node_port).collect();
        let superset = ns
            .ports
            .iter()
            .flatten()
            .map(node_port)
            .filter(|&n| n != 0)
            .all(|n| old_ports.contains(&n));
        if superset {
            for p in ns.ports.iter_mut().flatten() {
                p.node_port = None;
            }
        }
    }
    if needs_health_check_node_port(os)
        && !needs_health_check_node_port(ns)
        && health_check_node_port(os) == health_check_node_port(ns)
    {
        ns.health_check_node_port = None;
    }
    if ty(os) == "LoadBalancer" && ty(ns) != "LoadBalancer" {
        if let (Some(o), Some(n)) = (
            os.allocate_load_balancer_node_ports,
            ns.allocate_load_balancer_node_ports,
        ) && o == n
        {
            ns.allocate_load_balancer_node_ports = None;
        }
        if os.load_balancer_class == ns.load_balancer_class {
            ns.load_balancer_class = None;
        }
    }
    if needs_external_traffic_policy(os)
        && !needs_external_traffic_policy(ns)
        && str_of(&os.external_traffic_policy) == str_of(&ns.external_traffic_policy)
    {
        ns.external_traffic_policy = None;
    }
    if ty(ns) != "LoadBalancer" {
        new.status.get_or_insert_with(empty_status).load_balancer = Some(Default::default());
    }
}
