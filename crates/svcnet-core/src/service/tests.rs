//! Service behaviour against kube-apiserver 1.28.7, through the same steps the API server
//! runs: defaults, prepare, allocate, finish and validate.

use super::*;
use crate::field::ErrorList;
use crate::service_alloc::{Allocation, ServiceAllocators};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

const V4: ServiceNetwork = ServiceNetwork {
    primary: IpFamily::V4,
    secondary: None,
};

fn allocators(cidrs: &[&str]) -> ServiceAllocators {
    let cidrs: Vec<ipnet::IpNet> = cidrs.iter().map(|c| c.parse().unwrap()).collect();
    ServiceAllocators::new(&cidrs, "30000-32767".parse().unwrap()).unwrap()
}

fn single() -> ServiceAllocators {
    allocators(&["10.96.0.0/12"])
}

fn dual() -> ServiceAllocators {
    allocators(&["10.96.0.0/12", "fd00:10:96::/112"])
}

/// A Service named `s` with a selector and one port, with `spec` merged over it.
fn body(spec: Value) -> Value {
    let mut base = json!({"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80}]});
    for (k, v) in spec.as_object().unwrap() {
        base[k] = v.clone();
    }
    json!({"metadata": {"name": "s", "namespace": "default"}, "spec": base})
}

fn parse(v: Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn to_json(svc: &Service) -> Value {
    serde_json::to_value(svc).unwrap()
}

fn messages(errs: &ErrorList) -> Vec<String> {
    errs.0.iter().map(ToString::to_string).collect()
}

fn fields(errs: &ErrorList) -> Vec<&str> {
    errs.0.iter().map(|e| e.field.as_str()).collect()
}

/// The create path; `Err` carries the errors of whichever phase refused it.
fn create_in(a: &mut ServiceAllocators, v: Value) -> Result<Service, ErrorList> {
    let mut svc = parse(v);
    set_defaults(&mut svc);
    prepare_for_create(&mut svc, a.network())?;
    let mut spec = svc.spec.take().unwrap();
    let fresh = a
        .allocate(
            &mut spec,
            &Allocation::default(),
            &mut StdRng::seed_from_u64(1),
        )
        .map_err(|e| match e {
            crate::service_alloc::AllocateError::Invalid(errs) => errs,
            other => panic!("{other}"),
        })?;
    svc.spec = Some(spec);
    let errs = validate_create(&svc);
    if errs.is_empty() {
        Ok(svc)
    } else {
        a.release(&fresh);
        Err(errs)
    }
}

fn create(v: Value) -> Result<Service, ErrorList> {
    create_in(&mut single(), v)
}

fn create_spec(spec: Value) -> Result<Service, ErrorList> {
    create(body(spec))
}

/// The update path with `new` as the request body (a PUT, or a patch result).
fn update_in(a: &mut ServiceAllocators, old: &Service, new: Value) -> Result<Service, ErrorList> {
    let mut svc = parse(new);
    set_defaults(&mut svc);
    prepare_for_update(&mut svc, old, a.network())?;
    let mut spec = svc.spec.take().unwrap();
    a.allocate_update(
        &mut spec,
        old.spec.as_ref().unwrap(),
        &mut StdRng::seed_from_u64(2),
    )
    .map_err(|e| match e {
        crate::service_alloc::AllocateError::Invalid(errs) => errs,
        other => panic!("{other}"),
    })?;
    svc.spec = Some(spec);
    finish_update(&mut svc, old);
    let errs = validate_update(&svc, old);
    if errs.is_empty() { Ok(svc) } else { Err(errs) }
}

/// RFC 7386 merge patch, as `kubectl patch --type merge` sends.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn patch_in(a: &mut ServiceAllocators, old: &Service, patch: Value) -> Result<Service, ErrorList> {
    let mut doc = to_json(old);
    merge(&mut doc, &patch);
    update_in(a, old, doc)
}

// === defaulting ===

#[test]
fn affinity_none_drops_the_config() {
    for affinity in [json!("None"), json!("")] {
        let mut svc = parse(body(json!({
            "sessionAffinity": affinity,
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}
        })));
        set_defaults(&mut svc);
        let spec = svc.spec.as_ref().unwrap();
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert!(spec.session_affinity_config.is_none());
    }
    let svc = create_spec(json!({
        "sessionAffinity": "None",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}
    }))
    .unwrap();
    assert!(to_json(&svc)["spec"].get("sessionAffinityConfig").is_none());
}

#[test]
fn affinity_none_after_a_merge_patch_drops_the_config() {
    let mut a = single();
    let old = create_in(
        &mut a,
        body(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}})),
    )
    .unwrap();
    let new = patch_in(&mut a, &old, json!({"spec": {"sessionAffinity": "None"}})).unwrap();
    assert!(new.spec.unwrap().session_affinity_config.is_none());
}

#[test]
fn client_ip_defaulting_replaces_an_incomplete_config() {
    for cfg in [json!(null), json!({}), json!({"clientIP": {}})] {
        let mut svc = parse(body(
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": cfg}),
        ));
        set_defaults(&mut svc);
        let cfg = svc.spec.unwrap().session_affinity_config.unwrap();
        assert_eq!(cfg.client_ip.unwrap().timeout_seconds, Some(10800));
    }
}

#[test]
fn unknown_affinity_keeps_the_config_and_gets_one_error() {
    let errs = create_spec(json!({
        "sessionAffinity": "Sticky",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}
    }))
    .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None""#
        ]
    );
}

#[test]
fn affinity_timeout_bounds() {
    for t in [0, 86401] {
        let errs = create_spec(json!({
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": t}}
        }))
        .unwrap_err();
        assert_eq!(
            messages(&errs),
            vec![format!(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: {t}: must be greater than 0 and less than 86400"
            )]
        );
    }
    create_spec(json!({
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}
    }))
    .unwrap();
}

/// Unreachable through defaulting, but kube's text when validation sees it.
#[test]
fn affinity_config_with_none_without_defaulting_is_forbidden() {
    let mut svc = create_spec(json!({})).unwrap();
    svc.spec.as_mut().unwrap().session_affinity_config = Some(Default::default());
    assert_eq!(
        messages(&validate_create(&svc)),
        vec![
            "spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"
        ]
    );
}

#[test]
fn traffic_policies_are_defaulted_per_type() {
    let defaulted = |ty: &str| {
        let mut svc = parse(body(json!({"type": ty})));
        set_defaults(&mut svc);
        svc.spec.unwrap()
    };
    for ty in ["ClusterIP", "NodePort", "LoadBalancer"] {
        assert_eq!(
            defaulted(ty).internal_traffic_policy.as_deref(),
            Some("Cluster")
        );
    }
    for ty in ["ExternalName", "Foo"] {
        assert_eq!(defaulted(ty).internal_traffic_policy, None, "{ty}");
    }
    assert_eq!(
        defaulted("NodePort").external_traffic_policy.as_deref(),
        Some("Cluster")
    );
    assert_eq!(defaulted("ClusterIP").external_traffic_policy, None);
    assert_eq!(
        defaulted("LoadBalancer").allocate_load_balancer_node_ports,
        Some(true)
    );
    assert_eq!(
        defaulted("NodePort").allocate_load_balancer_node_ports,
        None
    );
    // An empty iTP is a value (the API field is a pointer), and not a supported one.
    let errs = create_spec(json!({"internalTrafficPolicy": ""})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.internalTrafficPolicy: Unsupported value: "": supported values: "Cluster", "Local""#
        ]
    );
}

/// An unknown type is not asked for an internalTrafficPolicy.
#[test]
fn unknown_type_only_fails_on_the_type() {
    let errs = create_spec(json!({"type": "Foo"})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#
        ]
    );
}

// === cluster IPs and families on create ===

#[test]
fn cluster_ips_without_cluster_ip_are_refused() {
    let errs = create_spec(json!({"clusterIPs": ["10.96.0.20"]})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.clusterIPs: Invalid value: []string{"10.96.0.20"}: must be empty when `clusterIP` is not specified"#
        ]
    );
}

#[test]
fn cluster_ip_fills_cluster_ips() {
    let svc = create_spec(json!({"clusterIP": "10.96.0.20"})).unwrap();
    assert_eq!(
        svc.spec.unwrap().cluster_ips,
        Some(vec!["10.96.0.20".to_owned()])
    );
}

#[test]
fn family_errors_from_ip_family_fields_come_alone() {
    let errs = create_spec(json!({"clusterIP": "fd00::10", "ports": [{"port": 0}]})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.clusterIPs[0]: Invalid value: []string{"fd00::10"}: IPv6 is not configured on this cluster"#
        ]
    );
    let errs = create_spec(json!({"clusterIP": "abc", "ports": [{"port": 0}]})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.clusterIPs[0]: Invalid value: "abc": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#
        ]
    );
    // RequireDualStack and an unconfigured family are reported together.
    let errs = create_spec(json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"]}))
        .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#,
            r#"spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster"#,
        ]
    );
}

#[test]
fn two_cluster_ips_need_a_dual_stack_policy() {
    let mut a = dual();
    let errs = create_in(
        &mut a,
        body(json!({"clusterIP": "10.96.0.77", "clusterIPs": ["10.96.0.77", "fd00:10:96::77"]})),
    )
    .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.ipFamilyPolicy: Invalid value: "SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"#
        ]
    );
    let errs = create_in(
        &mut a,
        body(json!({"clusterIP": "10.96.0.77", "clusterIPs": ["10.96.0.77", "10.96.0.78"], "ipFamilyPolicy": "RequireDualStack"})),
    )
    .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.clusterIPs: Invalid value: []string{"10.96.0.77", "10.96.0.78"}: may specify no more than one IP for each IP family"#
        ]
    );
    let svc = create_in(
        &mut a,
        body(json!({"clusterIP": "10.96.0.77", "clusterIPs": ["10.96.0.77", "fd00:10:96::77"], "ipFamilyPolicy": "PreferDualStack"})),
    )
    .unwrap();
    assert_eq!(
        svc.spec.unwrap().ip_families,
        Some(vec!["IPv4".to_owned(), "IPv6".to_owned()])
    );
}

/// Headless and selectorless: RequireDualStack with both families on any cluster.
#[test]
fn headless_selectorless_defaults_to_dual_stack_everywhere() {
    let svc = create(json!({"metadata": {"name": "s", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}))
    .unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.ip_family_policy.as_deref(), Some("RequireDualStack"));
    assert_eq!(
        spec.ip_families,
        Some(vec!["IPv4".to_owned(), "IPv6".to_owned()])
    );
    let svc = create(json!({"metadata": {"name": "s", "namespace": "default"},
        "spec": {"clusterIP": "None", "ipFamilies": ["IPv6"], "ports": [{"port": 80}]}}))
    .unwrap();
    assert_eq!(
        svc.spec.unwrap().ip_families,
        Some(vec!["IPv6".to_owned(), "IPv4".to_owned()])
    );
    // With a selector it is an ordinary single-stack Service.
    let svc = create_spec(json!({"clusterIP": "None"})).unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_owned()]));
}

// === cluster IP changes on update (report §4) ===

fn existing(a: &mut ServiceAllocators) -> Service {
    create_in(a, body(json!({"clusterIP": "10.96.0.5"}))).unwrap()
}

#[test]
fn patching_cluster_ip_alone_is_a_change_of_cluster_ips_0() {
    let mut a = single();
    let old = existing(&mut a);
    let errs = patch_in(&mut a, &old, json!({"spec": {"clusterIP": "10.96.0.6"}})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.clusterIPs[0]: Invalid value: []string{"10.96.0.6"}: may not change once set"#
        ]
    );
    assert_eq!(
        errs.aggregate_message(),
        r#"spec.clusterIPs[0]: Invalid value: []string{"10.96.0.6"}: may not change once set"#
    );
    let errs = patch_in(&mut a, &old, json!({"spec": {"clusterIP": "None"}})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![r#"spec.clusterIPs[0]: Invalid value: []string{"None"}: may not change once set"#]
    );
    let errs = patch_in(&mut a, &old, json!({"spec": {"clusterIP": "abc"}})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.clusterIPs[0]: Invalid value: "abc": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#
        ]
    );
}

#[test]
fn patching_cluster_ips_alone_must_match_cluster_ip() {
    let mut a = single();
    let old = existing(&mut a);
    let errs = patch_in(&mut a, &old, json!({"spec": {"clusterIPs": ["10.96.0.6"]}})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.clusterIPs: Invalid value: []string{"10.96.0.6"}: first value must match `clusterIP`"#
        ]
    );
}

/// The family mismatch stops the update before `ValidateServiceUpdate` could add its own.
#[test]
fn changing_the_family_reports_only_the_mismatch() {
    let mut a = single();
    let old = existing(&mut a);
    let errs = patch_in(&mut a, &old, json!({"spec": {"ipFamilies": ["IPv6"]}})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            "spec.clusterIPs[0]: Invalid value: \"10.96.0.5\": expected an IPv6 value as indicated by `ipFamilies[0]`"
        ]
    );
}

/// A re-sent manifest (PUT of the original body) keeps the allocated values.
#[test]
fn put_of_the_original_manifest_is_accepted() {
    let mut a = single();
    let old = create_in(&mut a, body(json!({"type": "NodePort"}))).unwrap();
    let new = update_in(&mut a, &old, body(json!({"type": "NodePort"}))).unwrap();
    assert_eq!(new.spec, old.spec);
}

#[test]
fn releasing_the_secondary_needs_single_stack() {
    let mut a = dual();
    let old = create_in(&mut a, body(json!({"ipFamilyPolicy": "RequireDualStack"}))).unwrap();
    let primary = old.spec.as_ref().unwrap().cluster_ips.as_ref().unwrap()[0].clone();
    let errs = patch_in(
        &mut a,
        &old,
        json!({"spec": {"clusterIPs": [primary], "ipFamilies": ["IPv4"]}}),
    )
    .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": must be 'SingleStack' to release the secondary cluster IP"#,
            r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": must be 'SingleStack' to release the secondary IP family"#,
        ]
    );
    let new = patch_in(
        &mut a,
        &old,
        json!({"spec": {"ipFamilyPolicy": "SingleStack"}}),
    )
    .unwrap();
    let spec = new.spec.unwrap();
    assert_eq!(spec.cluster_ips, Some(vec![primary]));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_owned()]));
}

#[test]
fn prefer_dual_stack_is_left_alone_when_nothing_changed() {
    // Created on a single-stack cluster, updated after the cluster became dual-stack.
    let mut a = single();
    let old = create_in(&mut a, body(json!({"ipFamilyPolicy": "PreferDualStack"}))).unwrap();
    let mut d = dual();
    let new = update_in(&mut d, &old, to_json(&old)).unwrap();
    assert_eq!(new.spec.unwrap().ip_families, Some(vec!["IPv4".to_owned()]));
    // Switching to RequireDualStack upgrades it.
    let new = patch_in(
        &mut d,
        &old,
        json!({"spec": {"ipFamilyPolicy": "RequireDualStack"}}),
    )
    .unwrap();
    assert_eq!(new.spec.unwrap().cluster_ips.unwrap().len(), 2);
}

#[test]
fn primary_family_change_on_upgrade_names_the_cluster_ips() {
    let old = parse(
        json!({"metadata": {"name": "s", "namespace": "default"}, "spec": {
        "type": "ClusterIP", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}}),
    );
    let new = parse(
        json!({"metadata": {"name": "s", "namespace": "default"}, "spec": {
        "type": "ClusterIP", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"],
        "ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "RequireDualStack"}}),
    );
    let errs = validate_update(&new, &old);
    assert!(messages(&errs).contains(
        &r#"spec.ipFamilies[0]: Invalid value: []string{"10.96.0.5", "fd00::5"}: may not change once set"#.to_owned()
    ));
}

// === validation rules (report §5) ===

#[test]
fn external_ips_special_ranges() {
    create_spec(json!({"externalIPs": ["239.1.1.1"]})).unwrap();
    let cases = [
        (
            "169.254.1.1",
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ),
        ("0.0.0.0", "may not be unspecified (0.0.0.0)"),
        (
            "127.0.0.1",
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ),
        (
            "224.0.0.1",
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ),
        (
            "fe80::1",
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ),
        (
            "x",
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ),
    ];
    for (ip, msg) in cases {
        let errs = create_spec(json!({"externalIPs": [ip]})).unwrap_err();
        assert_eq!(
            messages(&errs),
            vec![format!(
                "spec.externalIPs[0]: Invalid value: \"{ip}\": {msg}"
            )]
        );
    }
}

#[test]
fn leading_zeros_are_accepted_with_warnings() {
    let svc =
        create_spec(json!({"clusterIP": "010.96.0.10", "externalIPs": ["010.1.1.1"]})).unwrap();
    assert_eq!(
        svc.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("010.96.0.10")
    );
    assert_eq!(
        warnings(&svc, None),
        vec![
            r#"spec.clusterIPs[0]: IP address was accepted, but will be invalid in a future Kubernetes release: ParseAddr("010.96.0.10"): IPv4 field has octet with leading zero"#,
            r#"spec.externalIPs[0]: IP address was accepted, but will be invalid in a future Kubernetes release: ParseAddr("010.1.1.1"): IPv4 field has octet with leading zero"#,
        ]
    );
}

#[test]
fn warning_texts() {
    let svc = parse(json!({"metadata": {"name": "s", "annotations": {
            "service.kubernetes.io/topology-aware-hints": "auto"}},
        "spec": {"type": "ExternalName", "externalName": "example.com", "externalIPs": ["2001:DB8::1"]}}));
    assert_eq!(
        warnings(&svc, None),
        vec![
            "annotation service.kubernetes.io/topology-aware-hints is deprecated, please use service.kubernetes.io/topology-mode instead",
            r#"spec.externalIPs[0]: IPv6 address "2001:DB8::1" is not in RFC 5952 canonical format ("2001:db8::1"), which may cause controller apply-loops"#,
            r#"spec.externalIPs is ignored when spec.type is "ExternalName""#,
        ]
    );
    let svc = parse(
        json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer",
        "externalName": "x", "loadBalancerIP": "1.2.3.4",
        "loadBalancerSourceRanges": ["010.0.0.0/8", "2001:db8:0::/64", "10.0.0.0/8"]}}),
    );
    assert_eq!(
        warnings(&svc, None),
        vec![
            r#"spec.loadBalancerSourceRanges[0]: IP prefix was accepted, but will be invalid in a future Kubernetes release: netip.ParsePrefix("010.0.0.0/8"): ParseAddr("010.0.0.0"): IPv4 field has octet with leading zero"#,
            r#"spec.loadBalancerSourceRanges[1]: IPv6 prefix "2001:db8:0::/64" is not in RFC 5952 canonical format ("2001:db8::/64"), which may cause controller apply-loops"#,
            r#"spec.externalName is ignored when spec.type is not "ExternalName""#,
        ]
    );
    // No address warnings for headless Services.
    let svc = create_spec(json!({"clusterIP": "None"})).unwrap();
    assert!(warnings(&svc, None).is_empty());
}

/// 1.28 allows externalTrafficPolicy only on NodePort and LoadBalancer, externalIPs or not.
#[test]
fn external_traffic_policy_needs_node_port_or_lb() {
    let errs = create_spec(json!({"externalIPs": ["1.2.3.4"], "externalTrafficPolicy": "Local"}))
        .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.externalTrafficPolicy: Invalid value: "Local": may only be set when `type` is 'NodePort' or 'LoadBalancer'"#
        ]
    );
    let errs =
        create_spec(json!({"type": "NodePort", "externalTrafficPolicy": "Foo"})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.externalTrafficPolicy: Unsupported value: "Foo": supported values: "Cluster", "Local""#
        ]
    );
}

#[test]
fn load_balancer_source_ranges() {
    let errs = create_spec(
        json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8", "10.0.0.0/33"]}),
    )
    .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.LoadBalancerSourceRanges: Invalid value: "[10.0.0.0/8 10.0.0.0/33]": must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 "#
        ]
    );
    let errs = create_spec(json!({"loadBalancerSourceRanges": ["10.0.0.0/8"]})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"
        ]
    );
    create_spec(json!({"type": "LoadBalancer", "loadBalancerSourceRanges": [" 010.0.0.0/8"]}))
        .unwrap();
    let annotated = |value: &str, ty: &str| {
        let mut v = body(json!({"type": ty}));
        v["metadata"]["annotations"] =
            json!({"service.beta.kubernetes.io/load-balancer-source-ranges": value});
        create(v)
    };
    annotated("", "LoadBalancer").unwrap();
    annotated("10.0.0.0/8, 192.168.0.0/16", "LoadBalancer").unwrap();
    let errs = annotated("10.0.0.0/8,nope", "ClusterIP").unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Forbidden: may only be used when `type` is 'LoadBalancer'",
            r#"metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Invalid value: "10.0.0.0/8,nope": must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 "#,
        ]
    );
}

#[test]
fn port_errors() {
    let errs =
        create_spec(json!({"type": "LoadBalancer", "ports": [{"port": 10250}]})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            "spec.ports[0]: Invalid value: 10250: may not expose port 10250 externally since it is used by kubelet"
        ]
    );
    let errs =
        create_spec(json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}))
            .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}"#
        ]
    );
    // Identical (protocol, nodePort) pairs on the same port number pass allocation and are
    // then duplicates.
    let errs = create_spec(json!({"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "nodePort": 30080},
        {"name": "b", "port": 80, "nodePort": 30080}]}))
    .unwrap_err();
    assert_eq!(
        fields(&errs),
        vec!["spec.ports[1].nodePort", "spec.ports[1]"]
    );
    // Other port numbers: the allocator already refuses it.
    let errs = create_spec(json!({"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "nodePort": 30080},
        {"name": "b", "port": 81, "nodePort": 30080}]}))
    .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec!["spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated"]
    );
    let errs = create_spec(json!({"ports": [{"name": "a.b", "port": 80}]})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![r#"spec.ports[0].name: Invalid value: "a.b": must not contain dots"#]
    );
}

#[test]
fn selector_and_label_errors_name_the_map() {
    let errs = create_spec(json!({"selector": {"app": "-x"}})).unwrap_err();
    assert_eq!(fields(&errs), vec!["spec.selector"]);
    let mut v = body(json!({}));
    v["metadata"]["labels"] = json!({"k": "-x"});
    assert_eq!(fields(&create(v).unwrap_err()), vec!["metadata.labels"]);
}

#[test]
fn external_name_reports_the_trimmed_name() {
    let errs = create(json!({"metadata": {"name": "s", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "foo_bar.com."}}))
    .unwrap_err();
    assert_eq!(errs.0.len(), 1);
    assert!(
        errs.0[0]
            .to_string()
            .starts_with(r#"spec.externalName: Invalid value: "foo_bar.com": "#)
    );
    let errs = create(json!({"metadata": {"name": "s", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": ".", "clusterIP": "10.96.0.30"}}))
    .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
            "spec.externalName: Required value",
        ]
    );
}

#[test]
fn load_balancer_class() {
    let mut a = single();
    let errs = create_in(&mut a, body(json!({"loadBalancerClass": "a"}))).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec!["spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"]
    );
    let errs = create_in(
        &mut a,
        body(json!({"type": "LoadBalancer", "loadBalancerClass": "a b"})),
    )
    .unwrap_err();
    assert_eq!(fields(&errs), vec!["spec.loadBalancerClass"]);
    let old = create_in(
        &mut a,
        body(json!({"type": "LoadBalancer", "loadBalancerClass": "a"})),
    )
    .unwrap();
    let errs = patch_in(&mut a, &old, json!({"spec": {"loadBalancerClass": "b"}})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![r#"spec.loadBalancerClass: Invalid value: "b": may not change once set"#]
    );
    let errs = patch_in(&mut a, &old, json!({"spec": {"loadBalancerClass": null}})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![r#"spec.loadBalancerClass: Invalid value: "null": may not change once set"#]
    );
    // Leaving LoadBalancer drops an unchanged class.
    let new = patch_in(&mut a, &old, json!({"spec": {"type": "ClusterIP"}})).unwrap();
    assert_eq!(new.spec.unwrap().load_balancer_class, None);
}

#[test]
fn health_check_node_port_is_immutable() {
    let mut a = single();
    let old = create_in(
        &mut a,
        body(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"})),
    )
    .unwrap();
    let hc = old.spec.as_ref().unwrap().health_check_node_port.unwrap();
    let errs = patch_in(
        &mut a,
        &old,
        json!({"spec": {"healthCheckNodePort": hc + 1}}),
    )
    .unwrap_err();
    assert_eq!(
        messages(&errs),
        vec!["spec.healthCheckNodePort: Forbidden: field is immutable"]
    );
    // Omitted: the old value is patched back in.
    let mut doc = to_json(&old);
    doc["spec"]
        .as_object_mut()
        .unwrap()
        .remove("healthCheckNodePort");
    let new = update_in(&mut a, &old, doc).unwrap();
    assert_eq!(new.spec.unwrap().health_check_node_port, Some(hc));
}

#[test]
fn leaving_load_balancer_clears_its_status_and_fields() {
    let mut a = single();
    let mut old = create_in(
        &mut a,
        body(json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": true})),
    )
    .unwrap();
    old.status = Some(serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]},
        "conditions": [{"type": "X", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z", "reason": "R", "message": ""}]})).unwrap());
    // LB -> LB keeps the status the client may not set.
    let mut doc = to_json(&old);
    doc["status"] = json!({});
    let same = update_in(&mut a, &old, doc).unwrap();
    assert_eq!(same.status, old.status);
    let new = patch_in(&mut a, &old, json!({"spec": {"type": "ClusterIP"}})).unwrap();
    let v = to_json(&new);
    assert_eq!(v["status"]["loadBalancer"], json!({}));
    assert_eq!(v["status"]["conditions"][0]["type"], "X");
    assert!(
        v["spec"].get("allocateLoadBalancerNodePorts").is_none(),
        "{v}"
    );
    assert!(v["spec"].get("externalTrafficPolicy").is_none(), "{v}");
    assert!(v["spec"]["ports"][0].get("nodePort").is_none(), "{v}");
}

/// Node ports are only wiped when the client added none; `allocateLoadBalancerNodePorts` only
/// when both versions have the same value.
#[test]
fn drop_type_dependent_fields_details() {
    let old = parse(
        json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer",
        "allocateLoadBalancerNodePorts": true, "externalTrafficPolicy": "Cluster",
        "ports": [{"port": 80, "nodePort": 30001}, {"port": 81, "nodePort": 30002}]}}),
    );
    let mut new = parse(
        json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP",
        "allocateLoadBalancerNodePorts": false,
        "ports": [{"port": 80, "nodePort": 30001}, {"port": 81, "nodePort": 30003}]}}),
    );
    finish_update(&mut new, &old);
    let spec = new.spec.unwrap();
    assert_eq!(
        spec.ports.unwrap()[0].node_port,
        Some(30001),
        "a new value keeps them all"
    );
    assert_eq!(spec.allocate_load_balancer_node_ports, Some(false));
    let mut new = parse(
        json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP",
        "ports": [{"port": 80, "nodePort": 30002}]}}),
    );
    finish_update(&mut new, &old);
    assert_eq!(new.spec.unwrap().ports.unwrap()[0].node_port, None);
}

#[test]
fn to_external_name_drops_the_ip_fields() {
    let mut a = single();
    let old = existing(&mut a);
    let new = patch_in(
        &mut a,
        &old,
        json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
    )
    .unwrap();
    let spec = new.spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip, None);
    assert_eq!(spec.cluster_ips, None);
    assert_eq!(spec.ip_families, None);
    assert_eq!(spec.ip_family_policy, None);
    // kube keeps the defaulted iTP in storage and hides it when reading.
    assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
    let mut read = new.clone();
    default_on_read(&mut read, V4);
    assert_eq!(read.spec.unwrap().internal_traffic_policy, None);
}

#[test]
fn default_on_read_fills_families_of_old_objects() {
    let mut svc = parse(json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1"}}));
    default_on_read(&mut svc, V4);
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.1".to_owned()]));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_owned()]));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
}

#[test]
fn allocate_load_balancer_node_ports_rules() {
    let errs = create_spec(json!({"allocateLoadBalancerNodePorts": true})).unwrap_err();
    assert_eq!(
        messages(&errs),
        vec![
            "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"
        ]
    );
    let mut svc = create_spec(json!({"type": "LoadBalancer"})).unwrap();
    svc.spec.as_mut().unwrap().allocate_load_balancer_node_ports = None;
    assert_eq!(
        messages(&validate_create(&svc)),
        vec!["allocateLoadBalancerNodePorts: Required value"]
    );
}

#[test]
fn topology_annotations_must_agree() {
    let mut v = body(json!({}));
    v["metadata"]["annotations"] = json!({
        "service.kubernetes.io/topology-aware-hints": "auto",
        "service.kubernetes.io/topology-mode": "Auto"});
    assert_eq!(
        messages(&create(v).unwrap_err()),
        vec![
            r#"metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: "Auto": must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified"#
        ]
    );
}

/// Errors come in `ValidateService`'s order.
#[test]
fn validation_order() {
    let mut v = body(json!({
        "type": "NodePort", "clusterIP": "None",
        "ports": [{"port": 0}, {"port": 70000, "protocol": "HTTP"}],
        "selector": {"app": "-x"}, "externalIPs": ["x"],
        "loadBalancerSourceRanges": ["10.0.0.0/8"],
        "externalTrafficPolicy": "Foo", "internalTrafficPolicy": "Foo",
        "trafficDistribution": "Anywhere"
    }));
    v["metadata"]["name"] = json!("Bad");
    let errs = create(v).unwrap_err();
    assert_eq!(
        fields(&errs),
        vec![
            "metadata.name",
            "spec.clusterIPs[0]",
            "spec.ports[0].name",
            "spec.ports[0].port",
            "spec.ports[0].targetPort",
            "spec.ports[1].name",
            "spec.ports[1].port",
            "spec.ports[1].protocol",
            "spec.ports[1].targetPort",
            "spec.selector",
            "spec.externalIPs[0]",
            "spec.LoadBalancerSourceRanges",
            "spec.externalTrafficPolicy",
            "spec.internalTrafficPolicy",
            "spec.trafficDistribution",
        ]
    );
}

/// `ValidateServiceUpdate` checks metadata and ValidateService both look at labels: the
/// causes repeat, the message does not.
#[test]
fn update_label_errors_are_reported_once_in_the_message() {
    let mut a = single();
    let old = existing(&mut a);
    let errs = patch_in(&mut a, &old, json!({"metadata": {"labels": {"k": "-x"}}})).unwrap_err();
    assert_eq!(fields(&errs), vec!["metadata.labels", "metadata.labels"]);
    assert!(!errs.aggregate_message().starts_with('['));
}

#[test]
fn status_updates_check_ingress_points() {
    let old = existing(&mut single());
    let mut new = old.clone();
    new.status = Some(serde_json::from_value(json!({"loadBalancer": {"ingress": [
        {"ip": "010.1.2.3"}, {"ip": "nope"}, {"hostname": "1.2.3.4"}, {"hostname": "lb.example.com"}]}})).unwrap());
    assert_eq!(
        messages(&validate_status_update(&new, &old)),
        vec![
            r#"status.loadBalancer.ingress[1].ip: Invalid value: "nope": must be a valid IP address"#,
            r#"status.loadBalancer.ingress[2].hostname: Invalid value: "1.2.3.4": must be a DNS name, not an IP address"#,
        ]
    );
}
