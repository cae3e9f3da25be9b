//! Assigning cluster IPs and NodePorts to Services, over the [`crate::allocator`] bitmaps,
//! with kube-apiserver 1.28's rules (`pkg/registry/core/service/storage/alloc.go`).
//!
//! The API server holds one [`ServiceAllocators`]. A create runs
//! [`ServiceAllocators::allocate`] after [`crate::service::prepare_for_create`]; an update
//! runs [`ServiceAllocators::allocate_update`] after [`crate::service::prepare_for_update`].
//! Both return what they newly took, to release if the write fails. What an update or delete
//! gives back is `Allocation::held_by(old).minus(&Allocation::held_by(new))`, released only
//! after the write succeeded. At start the allocators are rebuilt from the stored Services
//! ([`ServiceAllocators::repair`]), so allocations survive restarts without leaks.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::ServiceSpec;
use rand::Rng;

use crate::allocator::{AllocError, ClusterIpAllocator, NodePortAllocator, PortRange};
use crate::field::{BadValue, ErrorList, FieldError, go_quote};
use crate::ip;
use crate::service::{self, IpFamily, ServiceNetwork};

/// Values a Service holds in the allocators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    pub ips: Vec<IpAddr>,
    pub node_ports: Vec<i32>,
}

fn ty(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("")
}

fn node_port(p: &k8s_openapi::api::core::v1::ServicePort) -> i32 {
    p.node_port.unwrap_or(0)
}

impl Allocation {
    /// What a Service of this spec holds: its cluster IPs unless it is ExternalName or
    /// headless, its node ports if it is NodePort or LoadBalancer, and its health check node
    /// port if it needs one. Because this looks at the type, `held_by(old).minus(held_by(new))`
    /// is what an update releases, before or after `finish_update` dropped the fields.
    pub fn held_by(spec: &ServiceSpec) -> Self {
        let mut a = Allocation::default();
        let ips = spec.cluster_ips.as_deref().unwrap_or(&[]);
        if service::needs_cluster_ip(spec) && ips.first().is_none_or(|f| f != "None") {
            a.ips = ips
                .iter()
                .filter_map(|s| ip::parse_ip_sloppy(s).map(ip::canonical))
                .collect();
        }
        if service::needs_node_ports(spec) {
            for np in spec.ports.iter().flatten().map(node_port) {
                if np != 0 && !a.node_ports.contains(&np) {
                    a.node_ports.push(np);
                }
            }
        }
        if service::needs_health_check_node_port(spec)
            && let Some(h) = spec.health_check_node_port.filter(|&n| n != 0)
            && !a.node_ports.contains(&h)
        {
            a.node_ports.push(h);
        }
        a
    }

    /// Values in `self` that `other` does not hold.
    pub fn minus(&self, other: &Allocation) -> Allocation {
        Allocation {
            ips: self
                .ips
                .iter()
                .filter(|ip| !other.ips.contains(ip))
                .copied()
                .collect(),
            node_ports: self
                .node_ports
                .iter()
                .filter(|p| !other.node_ports.contains(p))
                .copied()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.node_ports.is_empty()
    }
}

/// Why allocation refused a Service; each maps to the answer kube gives.
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    /// A requested value is out of range or taken: 422 with these causes.
    #[error("{0}")]
    Invalid(ErrorList),
    /// kube's `NewInternalError`: 500, reason `InternalError`, message
    /// `Internal error occurred: <this>` (a full range, an unavailable health check node port).
    #[error("{0}")]
    Internal(String),
    /// A plain Go error: 500 with no reason and exactly this message (`duplicate nodePort:
    /// {TCP 30080}` on update).
    #[error("{0}")]
    Unexpected(String),
}

fn invalid(e: FieldError) -> AllocateError {
    AllocateError::Invalid(e.into())
}

#[derive(Clone, Debug)]
pub struct ServiceAllocators {
    ips: Vec<ClusterIpAllocator>,
    node_ports: NodePortAllocator,
}

impl ServiceAllocators {
    /// One or two CIDRs (two must be of different families) and the NodePort range.
    pub fn new(cidrs: &[IpNet], node_ports: PortRange) -> Result<Self, String> {
        match cidrs {
            [_] => {}
            [a, b] if IpFamily::of(a.addr()) != IpFamily::of(b.addr()) => {}
            [_, _] => return Err("dual-stack service CIDRs must be one IPv4 and one IPv6".into()),
            _ => return Err("expected one or two service CIDRs".into()),
        }
        let ips: Vec<ClusterIpAllocator> =
            cidrs.iter().map(|c| ClusterIpAllocator::new(*c)).collect();
        if let Some((c, _)) = cidrs.iter().zip(&ips).find(|(_, a)| a.bitmap().size() < 8) {
            return Err(format!("service CIDR {c} is too small"));
        }
        Ok(Self {
            ips,
            node_ports: NodePortAllocator::new(node_ports),
        })
    }

    pub fn network(&self) -> ServiceNetwork {
        ServiceNetwork {
            primary: IpFamily::of(self.ips[0].cidr().addr()),
            secondary: self.ips.get(1).map(|a| IpFamily::of(a.cidr().addr())),
        }
    }

    /// The first address of the primary range, reserved for `default/kubernetes`.
    pub fn first_ip(&self) -> IpAddr {
        self.ips[0].ip_at(0)
    }

    pub fn ip_allocators(&self) -> &[ClusterIpAllocator] {
        &self.ips
    }

    pub fn node_port_allocator(&self) -> &NodePortAllocator {
        &self.node_ports
    }

    fn family(&mut self, f: IpFamily) -> Option<&mut ClusterIpAllocator> {
        self.ips
            .iter_mut()
            .find(|a| IpFamily::of(a.cidr().addr()) == f)
    }

    pub fn release(&mut self, a: &Allocation) {
        for ip in &a.ips {
            if let Some(alloc) = self.family(ip::family_of(*ip)) {
                alloc.release(*ip);
            }
        }
        for p in &a.node_ports {
            self.node_ports.release(*p);
        }
    }

    /// Marks what a stored Service holds; returns the values that were already taken (a
    /// double allocation in the stored data) or out of range.
    pub fn repair(&mut self, spec: &ServiceSpec) -> Vec<String> {
        let held = Allocation::held_by(spec);
        let mut problems = Vec::new();
        for ip in held.ips {
            match self.family(ip::family_of(ip)) {
                Some(a) => {
                    if let Err(e) = a.allocate(ip) {
                        problems.push(format!("{ip}: {e}"));
                    }
                }
                None => problems.push(format!("{ip}: family not configured")),
            }
        }
        for p in held.node_ports {
            if let Err(e) = self.node_ports.allocate(p) {
                problems.push(format!("nodePort {p}: {e}"));
            }
        }
        problems
    }

    /// Allocation for a create (`allocateCreate` after `initIPFamilyFields`): cluster IPs
    /// for every family (requested or next free), node ports (`initNodePorts`: ports with the
    /// same number share one; with `allocateLoadBalancerNodePorts: false` only requested
    /// ones), then the health check node port. Values in `held` are kept without allocating
    /// (pass an empty one for a create). Returns the newly allocated values; on error nothing
    /// stays allocated.
    pub fn allocate(
        &mut self,
        spec: &mut ServiceSpec,
        held: &Allocation,
        rng: &mut impl Rng,
    ) -> Result<Allocation, AllocateError> {
        let mut fresh = Allocation::default();
        let result = self
            .alloc_cluster_ips(spec, held, &mut fresh, rng)
            .and_then(|()| self.init_node_ports(spec, held, &mut fresh, rng))
            .and_then(|()| {
                if service::needs_health_check_node_port(spec) {
                    self.alloc_health_check_node_port(spec, held, &mut fresh, rng)
                } else {
                    Ok(())
                }
            });
        self.finish(result, fresh)
    }

    /// Allocation for an update (`allocateUpdate` after `initIPFamilyFields`, which
    /// [`crate::service::prepare_for_update`] ran): all cluster IPs when leaving
    /// ExternalName, `clusterIPs[1]` on a dual-stack upgrade, new node ports (each port
    /// without one gets its own; requested ones are reserved even with
    /// `allocateLoadBalancerNodePorts: false`), and a health check node port when one becomes
    /// needed. Returns the newly allocated values; on error nothing stays allocated.
    pub fn allocate_update(
        &mut self,
        new: &mut ServiceSpec,
        old: &ServiceSpec,
        rng: &mut impl Rng,
    ) -> Result<Allocation, AllocateError> {
        let mut old = old.clone();
        if old.cluster_ips.as_ref().is_none_or(Vec::is_empty)
            && let Some(ip) = old.cluster_ip.clone().filter(|s| !s.is_empty())
        {
            old.cluster_ips = Some(vec![ip]);
        }
        let mut fresh = Allocation::default();
        let result = self
            .update_cluster_ips(new, &old, &mut fresh, rng)
            .and_then(|()| self.update_node_ports(new, &old, &mut fresh, rng))
            .and_then(|()| {
                if !service::needs_health_check_node_port(&old)
                    && service::needs_health_check_node_port(new)
                {
                    self.alloc_health_check_node_port(new, &Allocation::default(), &mut fresh, rng)
                } else {
                    Ok(())
                }
            });
        self.finish(result, fresh)
    }

    fn finish(
        &mut self,
        result: Result<(), AllocateError>,
        fresh: Allocation,
    ) -> Result<Allocation, AllocateError> {
        match result {
            Ok(()) => Ok(fresh),
            Err(e) => {
                self.release(&fresh);
                Err(e)
            }
        }
    }

    // === cluster IPs ===

    /// `allocClusterIPs`: one address per family in `ipFamilies`, `""` marking the ones to
    /// pick. Nothing for ExternalName or headless Services.
    fn alloc_cluster_ips(
        &mut self,
        spec: &mut ServiceSpec,
        held: &Allocation,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<(), AllocateError> {
        if ty(spec) == "ExternalName" {
            return Ok(());
        }
        let ips = spec.cluster_ips.get_or_insert_with(Vec::new);
        if ips.first().is_some_and(|f| f == "None") {
            return Ok(());
        }
        let families = spec.ip_families.clone().unwrap_or_default();
        while ips.len() < families.len() {
            ips.push(String::new());
        }
        let wanted: Vec<(usize, String)> =
            (0..families.len()).map(|i| (i, ips[i].clone())).collect();
        let mut picked = Vec::new();
        for (i, want) in wanted {
            let ip = self.alloc_ip(spec, &families[i], &want, held, fresh, rng)?;
            picked.push((i, ip));
        }
        // Written back only once every family has its address.
        let ips = spec.cluster_ips.get_or_insert_with(Vec::new);
        for (i, ip) in picked {
            ips[i] = ip;
        }
        spec.cluster_ip = ips.first().cloned();
        if ips.is_empty() {
            spec.cluster_ips = None;
        }
        Ok(())
    }

    /// `allocIPs` for one family: the requested address (kept as written) or the next free
    /// one.
    fn alloc_ip(
        &mut self,
        spec: &ServiceSpec,
        family: &str,
        want: &str,
        held: &Allocation,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<String, AllocateError> {
        let alloc = IpFamily::parse(family)
            .and_then(|f| self.family(f))
            .ok_or_else(|| {
                AllocateError::Internal(format!(
                    "failed to allocate a serviceIP: family {family} is not configured"
                ))
            })?;
        if want.is_empty() {
            let ip = alloc.allocate_next(rng).map_err(|e| {
                AllocateError::Internal(format!("failed to allocate a serviceIP: {e}"))
            })?;
            fresh.ips.push(ip);
            return Ok(ip.to_string());
        }
        let Some(parsed) = ip::parse_ip_sloppy(want).map(ip::canonical) else {
            return Err(AllocateError::Internal(format!(
                "failed to parse service IP {}",
                go_quote(want)
            )));
        };
        if !held.ips.contains(&parsed) {
            alloc.allocate(parsed).map_err(|e| {
                invalid(FieldError::invalid(
                    "spec.clusterIPs",
                    BadValue::slice("string", spec.cluster_ips.as_deref()),
                    format!("failed to allocate IP {want}: {e}"),
                ))
            })?;
            fresh.ips.push(parsed);
        }
        Ok(want.to_owned())
    }

    /// `updateClusterIPs`: leaving ExternalName allocates everything, a dual-stack upgrade
    /// allocates the secondary; releases (to ExternalName, downgrade) follow from
    /// [`Allocation::held_by`].
    fn update_cluster_ips(
        &mut self,
        new: &mut ServiceSpec,
        old: &ServiceSpec,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<(), AllocateError> {
        if service::is_matching_prefer_dual_stack(new, Some(old)) {
            return Ok(());
        }
        if ty(old) == "ExternalName" && ty(new) != "ExternalName" {
            return self.alloc_cluster_ips(new, &Allocation::default(), fresh, rng);
        }
        let old_ips = old.cluster_ips.as_deref().unwrap_or(&[]);
        if old_ips.first().is_some_and(|f| f == "None") || ty(new) == "ExternalName" {
            return Ok(());
        }
        let old_families = old.ip_families.as_deref().unwrap_or(&[]).len();
        let families = new.ip_families.clone().unwrap_or_default();
        if old_families == 1 && families.len() == 2 {
            let ips = new.cluster_ips.get_or_insert_with(Vec::new);
            if ips.len() < 2 {
                ips.push(String::new());
            }
            let want = ips[1].clone();
            let ip = self.alloc_ip(new, &families[1], &want, &Allocation::default(), fresh, rng)?;
            new.cluster_ips.get_or_insert_with(Vec::new)[1] = ip;
        }
        Ok(())
    }

    // === node ports ===

    /// Takes the node port a Service asked for; `field` names it in the error.
    fn take_node_port(
        &mut self,
        port: i32,
        field: String,
        fresh: &mut Allocation,
    ) -> Result<(), AllocateError> {
        self.node_ports
            .allocate(port)
            .map_err(|e| invalid(FieldError::invalid(field, port, e.to_string())))?;
        fresh.node_ports.push(port);
        Ok(())
    }

    /// Takes any free node port.
    fn next_node_port(
        &mut self,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<i32, AllocError> {
        let port = self.node_ports.allocate_next(rng)?;
        fresh.node_ports.push(port);
        Ok(port)
    }

    fn next_service_node_port(
        &mut self,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<i32, AllocateError> {
        self.next_node_port(fresh, rng)
            .map_err(|e| AllocateError::Internal(format!("failed to allocate a nodePort: {e}")))
    }

    /// `initNodePorts`: ports with the same number share a node port (TCP and UDP on 53); a
    /// value another port number already took is "already allocated".
    fn init_node_ports(
        &mut self,
        spec: &mut ServiceSpec,
        held: &Allocation,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<(), AllocateError> {
        if !service::needs_node_ports(spec) {
            return Ok(());
        }
        let allocate_new = service::should_allocate_node_ports(spec);
        let Some(ports) = spec.ports.as_mut() else {
            return Ok(());
        };
        let mut by_port: HashMap<i32, i32> = HashMap::new();
        for i in 0..ports.len() {
            let np = node_port(&ports[i]);
            if np == 0 && !allocate_new {
                // Do not allocate, but do respect specific requests.
                continue;
            }
            let path = format!("spec.ports[{i}].nodePort");
            match by_port.get(&ports[i].port).copied() {
                None => {
                    let number = ports[i].port;
                    let requested = ports
                        .iter()
                        .find(|p| p.port == number && node_port(p) != 0)
                        .map(node_port);
                    let value = match requested {
                        Some(r) => {
                            if !held.node_ports.contains(&r) {
                                self.take_node_port(r, path, fresh)?;
                            }
                            r
                        }
                        None => self.next_service_node_port(fresh, rng)?,
                    };
                    ports[i].node_port = Some(value);
                    by_port.insert(number, value);
                }
                Some(shared) if np == 0 => ports[i].node_port = Some(shared),
                Some(shared) if np != shared => {
                    if !held.node_ports.contains(&np) {
                        self.take_node_port(np, path, fresh)?;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// `txnUpdateNodePorts`/`updateNodePorts`: values not held before are reserved, each port
    /// without one gets its own, and a repeated (protocol, nodePort) pair is a plain error.
    fn update_node_ports(
        &mut self,
        new: &mut ServiceSpec,
        old: &ServiceSpec,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<(), AllocateError> {
        if !service::needs_node_ports(new) {
            return Ok(());
        }
        let old_ports: Vec<i32> = old
            .ports
            .iter()
            .flatten()
            .map(node_port)
            .filter(|&n| n != 0)
            .collect();
        let allocate_new = service::should_allocate_node_ports(new);
        let mut seen: Vec<(String, i32)> = Vec::new();
        let mut taken: Vec<i32> = Vec::new();
        for (i, port) in new.ports.iter_mut().flatten().enumerate() {
            let mut np = node_port(port);
            if np == 0 && !allocate_new {
                continue;
            }
            if np != 0 {
                if !old_ports.contains(&np) && !taken.contains(&np) {
                    self.take_node_port(np, format!("spec.ports[{i}].nodePort"), fresh)?;
                    taken.push(np);
                }
            } else {
                np = self.next_service_node_port(fresh, rng)?;
                port.node_port = Some(np);
            }
            let key = (port.protocol.clone().unwrap_or_default(), np);
            if seen.contains(&key) {
                return Err(AllocateError::Unexpected(format!(
                    "duplicate nodePort: {{{} {}}}",
                    key.0, key.1
                )));
            }
            seen.push(key);
        }
        Ok(())
    }

    /// `allocHealthCheckNodePort`: failures are internal errors (500), as in kube.
    fn alloc_health_check_node_port(
        &mut self,
        spec: &mut ServiceSpec,
        held: &Allocation,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<(), AllocateError> {
        match spec.health_check_node_port.filter(|&n| n != 0) {
            Some(h) if held.node_ports.contains(&h) => Ok(()),
            Some(h) => {
                self.node_ports.allocate(h).map_err(|e| {
                    AllocateError::Internal(format!(
                        "failed to allocate requested HealthCheck NodePort {h}: {e}"
                    ))
                })?;
                fresh.node_ports.push(h);
                Ok(())
            }
            None => {
                let h = self.next_node_port(fresh, rng).map_err(|e| {
                    AllocateError::Internal(format!(
                        "failed to allocate a HealthCheck NodePort 0: {e}"
                    ))
                })?;
                spec.health_check_node_port = Some(h);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
