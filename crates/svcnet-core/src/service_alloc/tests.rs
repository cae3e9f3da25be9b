use super::*;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

fn allocs() -> ServiceAllocators {
    ServiceAllocators::new(
        &["10.96.0.0/24".parse().unwrap()],
        "30000-30099".parse().unwrap(),
    )
    .unwrap()
}

fn dual() -> ServiceAllocators {
    ServiceAllocators::new(
        &[
            "10.96.0.0/24".parse().unwrap(),
            "fd00::/120".parse().unwrap(),
        ],
        "30000-30099".parse().unwrap(),
    )
    .unwrap()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(1)
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

/// A Service from its spec as a client would send it, defaulted and prepared for create.
fn prepared(a: &ServiceAllocators, spec: Value) -> ServiceSpec {
    let mut svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "s", "namespace": "default"},
        "spec": spec,
    }))
    .unwrap();
    service::set_defaults(&mut svc);
    service::prepare_for_create(&mut svc, a.network()).unwrap();
    svc.spec.unwrap()
}

fn created(a: &mut ServiceAllocators, spec: Value) -> ServiceSpec {
    let mut s = prepared(a, spec);
    a.allocate(&mut s, &Allocation::default(), &mut rng())
        .unwrap();
    s
}

/// The new spec of an update, prepared against `old`.
fn updated(a: &ServiceAllocators, old: &ServiceSpec, spec: Value) -> ServiceSpec {
    let old_svc = Service {
        metadata: Default::default(),
        spec: Some(old.clone()),
        status: None,
    };
    let mut svc: Service = serde_json::from_value(json!({"spec": spec})).unwrap();
    service::set_defaults(&mut svc);
    service::prepare_for_update(&mut svc, &old_svc, a.network()).unwrap();
    svc.spec.unwrap()
}

fn invalid(e: AllocateError) -> String {
    match e {
        AllocateError::Invalid(errs) => errs.to_string(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn requested_ip_in_and_out_of_range() {
    let mut a = allocs();
    let mut rng = rng();
    let mut s = spec("ClusterIP", Some("10.96.0.50"));
    a.allocate(&mut s, &Allocation::default(), &mut rng)
        .unwrap();
    let mut dup = spec("ClusterIP", Some("10.96.0.50"));
    let e = a
        .allocate(&mut dup, &Allocation::default(), &mut rng)
        .unwrap_err();
    assert_eq!(
        invalid(e),
        r#"spec.clusterIPs: Invalid value: []string{"10.96.0.50"}: failed to allocate IP 10.96.0.50: provided IP is already allocated"#
    );
    let mut out = spec("ClusterIP", Some("1.2.3.4"));
    let e = a
        .allocate(&mut out, &Allocation::default(), &mut rng)
        .unwrap_err();
    assert_eq!(
        invalid(e),
        r#"spec.clusterIPs: Invalid value: []string{"1.2.3.4"}: failed to allocate IP 1.2.3.4: the provided IP (1.2.3.4) is not in the valid range. The range of valid IPs is 10.96.0.0/24"#
    );
}

/// A requested address with leading zeros is allocated as its decimal value and stored as
/// written, like kube's ParseIPSloppy.
#[test]
fn requested_ip_with_leading_zeros_is_kept_as_written() {
    let mut a = allocs();
    let s = created(
        &mut a,
        json!({"clusterIP": "010.96.0.010", "ports": [{"port": 80}]}),
    );
    assert_eq!(s.cluster_ip.as_deref(), Some("010.96.0.010"));
    assert_eq!(s.cluster_ips, Some(vec!["010.96.0.010".to_owned()]));
    assert!(a.ip_allocators()[0].bitmap().is_set(9));
    assert_eq!(
        Allocation::held_by(&s).ips,
        vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
    );
}

/// The marker for the family still to pick shows in the error value, as in kube.
#[test]
fn dual_stack_error_value_carries_the_marker() {
    let mut a = dual();
    created(
        &mut a,
        json!({"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}),
    );
    let mut s = prepared(
        &a,
        json!({"clusterIP": "10.96.0.9", "ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]}),
    );
    let e = a
        .allocate(&mut s, &Allocation::default(), &mut rng())
        .unwrap_err();
    assert_eq!(
        invalid(e),
        r#"spec.clusterIPs: Invalid value: []string{"10.96.0.9", ""}: failed to allocate IP 10.96.0.9: provided IP is already allocated"#
    );
    assert_eq!(a.ip_allocators()[1].bitmap().used(), 0, "rolled back");
}

#[test]
fn failed_node_port_rolls_back_the_ip() {
    let mut a = allocs();
    let mut rng = rng();
    let mut s = spec("NodePort", None);
    s.ports.as_mut().unwrap()[0].node_port = Some(40000);
    let e = a
        .allocate(&mut s, &Allocation::default(), &mut rng)
        .unwrap_err();
    assert_eq!(
        invalid(e),
        "spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-30099"
    );
    assert_eq!(a.ip_allocators()[0].bitmap().used(), 0);
    assert_eq!(a.node_port_allocator().bitmap().used(), 0);
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

/// Two different ports asking for one node port: the allocator refuses the second, before
/// validation's Duplicate could (`initNodePorts`).
#[test]
fn one_node_port_for_two_port_numbers_is_already_allocated() {
    let mut a = allocs();
    let mut s = prepared(
        &a,
        json!({"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 30080},
            {"name": "b", "port": 81, "nodePort": 30080}]}),
    );
    let e = a
        .allocate(&mut s, &Allocation::default(), &mut rng())
        .unwrap_err();
    assert_eq!(
        invalid(e),
        "spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    assert_eq!(a.node_port_allocator().bitmap().used(), 0);
}

/// With `allocateLoadBalancerNodePorts: false`, requested node ports are still reserved.
#[test]
fn lb_without_node_port_allocation_still_reserves_requested_ports() {
    let mut a = allocs();
    let s = created(
        &mut a,
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [
            {"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81}]}),
    );
    let ports = s.ports.as_ref().unwrap();
    assert_eq!(ports[0].node_port, Some(30080));
    assert_eq!(ports[1].node_port, None);
    assert_eq!(a.node_port_allocator().bitmap().used(), 1);
    assert_eq!(Allocation::held_by(&s).node_ports, vec![30080]);
}

#[test]
fn health_check_node_port_failures_are_internal_errors() {
    let mut a = allocs();
    created(
        &mut a,
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30010}]}),
    );
    let mut s = prepared(
        &a,
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30010,
               "ports": [{"port": 80}]}),
    );
    let e = a
        .allocate(&mut s, &Allocation::default(), &mut rng())
        .unwrap_err();
    let AllocateError::Internal(msg) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        msg,
        "failed to allocate requested HealthCheck NodePort 30010: provided port is already allocated"
    );
    assert_eq!(a.ip_allocators()[0].bitmap().used(), 1, "IP rolled back");
    assert_eq!(
        a.node_port_allocator().bitmap().used(),
        1,
        "node port rolled back"
    );
    // Dynamic: one is picked and held.
    let s = created(
        &mut a,
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
    );
    let h = s.health_check_node_port.unwrap();
    assert!(Allocation::held_by(&s).node_ports.contains(&h));
}

#[test]
fn full_ranges_are_internal_errors() {
    let mut a = ServiceAllocators::new(
        &["10.96.0.0/28".parse().unwrap()],
        "30000-30000".parse().unwrap(),
    )
    .unwrap();
    created(&mut a, json!({"type": "NodePort", "ports": [{"port": 80}]}));
    let mut s = prepared(&a, json!({"type": "NodePort", "ports": [{"port": 80}]}));
    let e = a
        .allocate(&mut s, &Allocation::default(), &mut rng())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to allocate a nodePort: range is full"
    );
    assert!(matches!(e, AllocateError::Internal(_)));
    for _ in 0..13 {
        created(&mut a, json!({"ports": [{"port": 80}]}));
    }
    let mut s = prepared(&a, json!({"ports": [{"port": 80}]}));
    let e = a
        .allocate(&mut s, &Allocation::default(), &mut rng())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to allocate a serviceIP: range is full"
    );
}

#[test]
fn update_keeps_held_values_and_reports_released_ones() {
    let mut a = allocs();
    let old = created(&mut a, json!({"type": "NodePort", "ports": [{"port": 80}]}));
    let held = Allocation::held_by(&old);
    assert_eq!((held.ips.len(), held.node_ports.len()), (1, 1));
    // The same manifest again: the allocated values are patched in, nothing new is taken.
    let mut again = updated(
        &a,
        &old,
        json!({"type": "NodePort", "ports": [{"port": 80}]}),
    );
    assert!(
        a.allocate_update(&mut again, &old, &mut rng())
            .unwrap()
            .is_empty()
    );
    assert_eq!(again.ports, old.ports);
    // NodePort -> ClusterIP: the node port is released after the write, before or after the
    // fields were dropped.
    let mut cip = updated(
        &a,
        &old,
        json!({"type": "ClusterIP", "ports": [{"port": 80}]}),
    );
    assert!(
        a.allocate_update(&mut cip, &old, &mut rng())
            .unwrap()
            .is_empty()
    );
    let released = held.minus(&Allocation::held_by(&cip));
    assert_eq!(released.node_ports.len(), 1);
    assert!(released.ips.is_empty());
    a.release(&released);
    assert_eq!(a.node_port_allocator().bitmap().used(), 0);
    assert_eq!(a.ip_allocators()[0].bitmap().used(), 1);
}

/// On update each new port without a node port gets its own (no TCP/UDP sharing), and a
/// repeated (protocol, nodePort) pair is a plain error.
#[test]
fn update_node_ports() {
    let mut a = allocs();
    let old = created(
        &mut a,
        json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}]}),
    );
    let mut new = updated(
        &a,
        &old,
        json!({"type": "NodePort", "ports": [
            {"name": "a", "port": 80},
            {"name": "dns", "port": 53, "protocol": "TCP"},
            {"name": "dns-udp", "port": 53, "protocol": "UDP"}]}),
    );
    let fresh = a.allocate_update(&mut new, &old, &mut rng()).unwrap();
    let ports = new.ports.as_ref().unwrap();
    assert_eq!(ports[0].node_port, old.ports.as_ref().unwrap()[0].node_port);
    assert_ne!(ports[1].node_port, ports[2].node_port);
    assert_eq!(fresh.node_ports.len(), 2);

    let before = a.node_port_allocator().bitmap().used();
    let mut dup = updated(
        &a,
        &old,
        json!({"type": "NodePort", "ports": [
            {"name": "a", "port": 80},
            {"name": "b", "port": 81, "nodePort": 30090},
            {"name": "c", "port": 82, "nodePort": 30090}]}),
    );
    let e = a.allocate_update(&mut dup, &old, &mut rng()).unwrap_err();
    let AllocateError::Unexpected(msg) = e else {
        panic!("{e:?}")
    };
    assert_eq!(msg, "duplicate nodePort: {TCP 30090}");
    assert_eq!(
        a.node_port_allocator().bitmap().used(),
        before,
        "rolled back"
    );
}

/// Missing node ports are filled from the old ports of the same name, not the same number.
#[test]
fn update_patches_node_ports_by_port_name() {
    let mut a = allocs();
    let old = created(
        &mut a,
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}),
    );
    let old_np = |i: usize| old.ports.as_ref().unwrap()[i].node_port;
    let new = updated(
        &a,
        &old,
        json!({"type": "NodePort", "ports": [{"name": "https", "port": 8443}, {"name": "http", "port": 8080}]}),
    );
    let ports = new.ports.as_ref().unwrap();
    assert_eq!(ports[0].node_port, old_np(1));
    assert_eq!(ports[1].node_port, old_np(0));
}

#[test]
fn dual_stack_upgrade_and_downgrade() {
    let mut a = dual();
    let old = created(&mut a, json!({"ports": [{"port": 80}]}));
    assert_eq!(old.ip_families, Some(vec!["IPv4".to_owned()]));
    // Upgrade: the policy asks for two families; the secondary address is allocated.
    let mut up = updated(
        &a,
        &old,
        json!({"ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]}),
    );
    assert_eq!(
        up.ip_families,
        Some(vec!["IPv4".to_owned(), "IPv6".to_owned()])
    );
    let fresh = a.allocate_update(&mut up, &old, &mut rng()).unwrap();
    assert_eq!(fresh.ips.len(), 1);
    let ips = up.cluster_ips.clone().unwrap();
    assert_eq!(ips[0], old.cluster_ips.as_ref().unwrap()[0]);
    assert!(ips[1].starts_with("fd00::"), "{ips:?}");
    // Downgrade: SingleStack with the lists untouched trims them; the secondary is released.
    let mut down = updated(
        &a,
        &up,
        json!({"ipFamilyPolicy": "SingleStack", "ports": [{"port": 80}]}),
    );
    assert_eq!(down.cluster_ips.as_ref().unwrap().len(), 1);
    assert_eq!(down.ip_families, Some(vec!["IPv4".to_owned()]));
    assert!(
        a.allocate_update(&mut down, &up, &mut rng())
            .unwrap()
            .is_empty()
    );
    let released = Allocation::held_by(&up).minus(&Allocation::held_by(&down));
    assert_eq!(released.ips, vec![ips[1].parse::<IpAddr>().unwrap()]);
}

#[test]
fn external_name_transitions() {
    let mut a = allocs();
    let old = created(
        &mut a,
        json!({"type": "ExternalName", "externalName": "example.com"}),
    );
    assert_eq!(a.ip_allocators()[0].bitmap().used(), 0);
    let mut cip = updated(
        &a,
        &old,
        json!({"type": "ClusterIP", "externalName": "example.com", "ports": [{"port": 80}]}),
    );
    let fresh = a.allocate_update(&mut cip, &old, &mut rng()).unwrap();
    assert_eq!(fresh.ips.len(), 1);
    assert!(cip.cluster_ip.is_some());
    let mut back = updated(
        &a,
        &cip,
        json!({"type": "ExternalName", "externalName": "example.com"}),
    );
    assert!(
        a.allocate_update(&mut back, &cip, &mut rng())
            .unwrap()
            .is_empty()
    );
    let released = Allocation::held_by(&cip).minus(&Allocation::held_by(&back));
    assert_eq!(released.ips, fresh.ips);
}

/// What a spec holds depends on its type, so a type change releases even before the fields
/// are dropped.
#[test]
fn held_by_follows_the_type() {
    let mut s = spec("ClusterIP", Some("10.96.0.5"));
    s.ports.as_mut().unwrap()[0].node_port = Some(30001);
    s.health_check_node_port = Some(30002);
    assert_eq!(Allocation::held_by(&s).node_ports, Vec::<i32>::new());
    s.type_ = Some("LoadBalancer".into());
    assert_eq!(Allocation::held_by(&s).node_ports, vec![30001]);
    s.external_traffic_policy = Some("Local".into());
    assert_eq!(Allocation::held_by(&s).node_ports, vec![30001, 30002]);
    s.type_ = Some("ExternalName".into());
    assert!(Allocation::held_by(&s).is_empty());
    let headless = spec("ClusterIP", Some("None"));
    assert!(Allocation::held_by(&headless).ips.is_empty());
}
