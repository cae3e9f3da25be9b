//! Assigning cluster IPs and NodePorts to Services, over the [`crate::allocator`] bitmaps.
//!
//! The API server holds one [`ServiceAllocators`]; it allocates before it writes a Service,
//! rolls back if the write fails, and releases what an updated or deleted Service no longer
//! holds only after the write succeeded. At start it is rebuilt from the stored Services
//! ([`ServiceAllocators::repair`]), so allocations survive restarts without leaks.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::ServiceSpec;
use rand::Rng;

use crate::allocator::{AllocError, ClusterIpAllocator, NodePortAllocator, PortRange};
use crate::field::{BadValue, ErrorList, FieldError};
use crate::service::{self, IpFamily, ServiceNetwork};

/// Values a Service holds in the allocators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    pub ips: Vec<IpAddr>,
    pub node_ports: Vec<i32>,
}

impl Allocation {
    /// What a stored Service holds.
    pub fn held_by(spec: &ServiceSpec) -> Self {
        let mut a = Allocation::default();
        if service::needs_cluster_ip(spec) {
            a.ips = spec
                .cluster_ips
                .iter()
                .flatten()
                .filter_map(|s| s.parse().ok())
                .collect();
        }
        for p in spec.ports.iter().flatten() {
            if let Some(np) = p.node_port.filter(|&n| n != 0)
                && !a.node_ports.contains(&np)
            {
                a.node_ports.push(np);
            }
        }
        if let Some(h) = spec.health_check_node_port.filter(|&n| n != 0)
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

#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    /// A requested value is out of range or taken (HTTP 422).
    #[error("{0}")]
    Invalid(ErrorList),
    /// The range has no free value left (HTTP 500, as kube-apiserver answers).
    #[error("{0}")]
    Exhausted(String),
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
            if let Some(alloc) = self.family(IpFamily::of(*ip)) {
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
            match self.family(IpFamily::of(ip)) {
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

    /// Fills `spec`'s cluster IPs and NodePorts, allocating what is requested or missing.
    /// Values in `already` (what the previous version held) are kept without allocating.
    /// Returns the newly allocated values, for rollback if the write fails.
    pub fn allocate(
        &mut self,
        spec: &mut ServiceSpec,
        already: &Allocation,
        rng: &mut impl Rng,
    ) -> Result<Allocation, AllocateError> {
        let mut fresh = Allocation::default();
        let result = self.allocate_inner(spec, already, &mut fresh, rng);
        if result.is_err() {
            self.release(&fresh);
        }
        result.map(|()| fresh)
    }

    fn allocate_inner(
        &mut self,
        spec: &mut ServiceSpec,
        already: &Allocation,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<(), AllocateError> {
        if service::needs_cluster_ip(spec) {
            if service::is_headless(spec) {
                spec.cluster_ips = Some(vec!["None".into()]);
            } else {
                self.allocate_ips(spec, already, fresh, rng)?;
            }
        }
        if service::needs_node_ports(spec) {
            let ports = spec.ports.get_or_insert_with(Vec::new);
            // Requested ports first, so a dynamic pick never takes one asked for later.
            for i in 0..ports.len() {
                if let Some(np) = ports[i].node_port.filter(|&n| n != 0) {
                    let shared = ports[..i].iter().any(|p| p.node_port == Some(np));
                    if shared || already.node_ports.contains(&np) || fresh.node_ports.contains(&np)
                    {
                        continue;
                    }
                    self.take_node_port(np, format!("spec.ports[{i}].nodePort"), fresh)?;
                }
            }
            for i in 0..ports.len() {
                if ports[i].node_port.unwrap_or(0) != 0 {
                    continue;
                }
                let same_port = ports
                    .iter()
                    .find(|p| p.port == ports[i].port && p.node_port.unwrap_or(0) != 0)
                    .and_then(|p| p.node_port);
                let np = match same_port {
                    Some(np) => np,
                    None => self.next_node_port(fresh, rng)?,
                };
                ports[i].node_port = Some(np);
            }
        }
        if service::needs_health_check_node_port(spec) {
            match spec.health_check_node_port.filter(|&n| n != 0) {
                Some(h) if already.node_ports.contains(&h) => {}
                Some(h) => self.take_node_port(h, "spec.healthCheckNodePort".into(), fresh)?,
                None => spec.health_check_node_port = Some(self.next_node_port(fresh, rng)?),
            }
        }
        Ok(())
    }

    /// Takes the node port a Service asked for; `field` names it in the error.
    fn take_node_port(
        &mut self,
        port: i32,
        field: String,
        fresh: &mut Allocation,
    ) -> Result<(), AllocateError> {
        self.node_ports.allocate(port).map_err(|e| {
            AllocateError::Invalid(FieldError::invalid(field, port, e.to_string()).into())
        })?;
        fresh.node_ports.push(port);
        Ok(())
    }

    /// Takes any free node port.
    fn next_node_port(
        &mut self,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<i32, AllocateError> {
        let port = self.node_ports.allocate_next(rng).map_err(|_| {
            AllocateError::Exhausted("failed to allocate a nodePort: range is full".into())
        })?;
        fresh.node_ports.push(port);
        Ok(port)
    }

    fn allocate_ips(
        &mut self,
        spec: &mut ServiceSpec,
        already: &Allocation,
        fresh: &mut Allocation,
        rng: &mut impl Rng,
    ) -> Result<(), AllocateError> {
        let requested = spec.cluster_ips.clone().unwrap_or_default();
        let families: Vec<IpFamily> = spec
            .ip_families
            .iter()
            .flatten()
            .filter_map(|f| IpFamily::parse(f))
            .collect();
        let mut out = Vec::new();
        for (i, fam) in families.iter().enumerate() {
            let want = requested.get(i).filter(|s| !s.is_empty());
            let Some(alloc) = self.family(*fam) else {
                return Err(AllocateError::Invalid(
                    FieldError::invalid(
                        format!("spec.ipFamilies[{i}]"),
                        fam.as_str(),
                        "not configured on this cluster",
                    )
                    .into(),
                ));
            };
            let ip = match want {
                Some(s) => {
                    let ip: IpAddr = s.parse().map_err(|_| {
                        AllocateError::Invalid(
                            FieldError::invalid(
                                format!("spec.clusterIPs[{i}]"),
                                s,
                                "must be a valid IP address",
                            )
                            .into(),
                        )
                    })?;
                    if !already.ips.contains(&ip) {
                        alloc.allocate(ip).map_err(|e| {
                            AllocateError::Invalid(
                                FieldError::invalid(
                                    "spec.clusterIPs",
                                    BadValue::list(&requested),
                                    format!("failed to allocate IP {ip}: {e}"),
                                )
                                .into(),
                            )
                        })?;
                        fresh.ips.push(ip);
                    }
                    ip
                }
                None => {
                    let ip = alloc.allocate_next(rng).map_err(|e| match e {
                        AllocError::Full => AllocateError::Exhausted(
                            "failed to allocate a serviceIP: range is full".into(),
                        ),
                        other => AllocateError::Exhausted(other.to_string()),
                    })?;
                    fresh.ips.push(ip);
                    ip
                }
            };
            out.push(ip.to_string());
        }
        spec.cluster_ip = out.first().cloned();
        spec.cluster_ips = Some(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServicePort;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn allocs() -> ServiceAllocators {
        ServiceAllocators::new(
            &["10.96.0.0/24".parse().unwrap()],
            "30000-30099".parse().unwrap(),
        )
        .unwrap()
    }

    fn spec(ty: &str, ip: Option<&str>) -> ServiceSpec {
        ServiceSpec {
            type_: Some(ty.into()),
            cluster_ip: ip.map(Into::into),
            cluster_ips: ip.map(|i| vec![i.into()]),
            ip_families: Some(vec!["IPv4".into()]),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn requested_ip_in_and_out_of_range() {
        let mut a = allocs();
        let mut rng = StdRng::seed_from_u64(1);
        let mut s = spec("ClusterIP", Some("10.96.0.50"));
        a.allocate(&mut s, &Allocation::default(), &mut rng)
            .unwrap();
        let mut dup = spec("ClusterIP", Some("10.96.0.50"));
        let AllocateError::Invalid(e) = a
            .allocate(&mut dup, &Allocation::default(), &mut rng)
            .unwrap_err()
        else {
            panic!()
        };
        assert_eq!(
            e.to_string(),
            r#"spec.clusterIPs: Invalid value: ["10.96.0.50"]: failed to allocate IP 10.96.0.50: provided IP is already allocated"#
        );
        let mut out = spec("ClusterIP", Some("1.2.3.4"));
        let AllocateError::Invalid(e) = a
            .allocate(&mut out, &Allocation::default(), &mut rng)
            .unwrap_err()
        else {
            panic!()
        };
        assert!(e.to_string().ends_with(
            "failed to allocate IP 1.2.3.4: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/24"
        ));
    }

    #[test]
    fn failed_node_port_rolls_back_the_ip() {
        let mut a = allocs();
        let mut rng = StdRng::seed_from_u64(1);
        let mut s = spec("NodePort", None);
        s.ports.as_mut().unwrap()[0].node_port = Some(40000);
        assert!(
            a.allocate(&mut s, &Allocation::default(), &mut rng)
                .is_err()
        );
        assert_eq!(a.ip_allocators()[0].bitmap().used(), 0);
        assert_eq!(a.node_port_allocator().bitmap().used(), 0);
    }

    #[test]
    fn update_keeps_held_values_and_reports_released_ones() {
        let mut a = allocs();
        let mut rng = StdRng::seed_from_u64(1);
        let mut s = spec("NodePort", None);
        a.allocate(&mut s, &Allocation::default(), &mut rng)
            .unwrap();
        let held = Allocation::held_by(&s);
        assert_eq!((held.ips.len(), held.node_ports.len()), (1, 1));
        // Same values again: nothing new is allocated.
        let mut again = s.clone();
        assert!(a.allocate(&mut again, &held, &mut rng).unwrap().is_empty());
        // NodePort -> ClusterIP: the node port is released after the write.
        let mut cip = s.clone();
        cip.type_ = Some("ClusterIP".into());
        cip.ports.as_mut().unwrap()[0].node_port = None;
        a.allocate(&mut cip, &held, &mut rng).unwrap();
        let released = held.minus(&Allocation::held_by(&cip));
        assert_eq!(released.node_ports.len(), 1);
        a.release(&released);
        assert_eq!(a.node_port_allocator().bitmap().used(), 0);
        assert_eq!(a.ip_allocators()[0].bitmap().used(), 1);
    }

    #[test]
    fn tcp_and_udp_on_one_port_share_a_node_port() {
        let mut a = allocs();
        let mut rng = StdRng::seed_from_u64(3);
        let mut s = spec("NodePort", None);
        s.ports.as_mut().unwrap().push(ServicePort {
            port: 80,
            protocol: Some("UDP".into()),
            ..Default::default()
        });
        a.allocate(&mut s, &Allocation::default(), &mut rng)
            .unwrap();
        let ports = s.ports.unwrap();
        assert_eq!(ports[0].node_port, ports[1].node_port);
        assert_eq!(a.node_port_allocator().bitmap().used(), 1);
    }
}
