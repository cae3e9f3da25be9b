use super::*;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn svc(ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some([("app".to_string(), "web".to_string())].into()),
            ports: Some(ports),
            ip_families: Some(vec!["IPv4".into()]),
            ..Default::default()
        }),
        status: None,
    }
}

fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        protocol: Some("TCP".into()),
        target_port: Some(target),
        ..Default::default()
    }
}

fn pod(name: &str, ip: &str, ready: bool, container_port: Option<(&str, i32)>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node1".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: container_port.map(|(n, p)| {
                    vec![ContainerPort {
                        name: Some(n.into()),
                        container_port: p,
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.into()),
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

#[test]
fn named_target_ports_resolve_per_pod_into_separate_slices() {
    let s = svc(vec![port("http", 80, IntOrString::String("web".into()))]);
    let pods = vec![
        pod("a", "10.0.0.1", true, Some(("web", 8080))),
        pod("b", "10.0.0.2", true, Some(("web", 9090))),
    ];
    let d = desired(&s, &pods, "t");
    assert_eq!(d.slices.len(), 2);
    let mut ports: Vec<i32> = d
        .slices
        .iter()
        .map(|s| s.ports.as_ref().unwrap()[0].port.unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, vec![8080, 9090]);
    for slice in &d.slices {
        let labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(
            slice.metadata.annotations.as_ref().unwrap()[TRIGGER_TIME_ANNOTATION],
            "t"
        );
    }
    assert_eq!(d.endpoints.subsets.as_ref().unwrap().len(), 2);
}

#[test]
fn conditions_follow_readiness_and_deletion() {
    let s = svc(vec![port("http", 80, IntOrString::Int(8080))]);
    let mut terminating = pod("c", "10.0.0.3", true, None);
    terminating.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    let pods = vec![
        pod("a", "10.0.0.1", true, None),
        pod("b", "10.0.0.2", false, None),
        terminating,
    ];
    let d = desired(&s, &pods, "t");
    assert_eq!(d.slices.len(), 1);
    let conds: Vec<(bool, bool, bool)> = d.slices[0]
        .endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.as_ref().unwrap();
            (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
        })
        .collect();
    assert_eq!(
        conds,
        vec![
            (true, true, false),
            (false, false, false),
            (false, true, true)
        ]
    );
    assert_eq!(d.slices[0].endpoints[0].node_name.as_deref(), Some("node1"));
    let subset = &d.endpoints.subsets.as_ref().unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap().len(), 1);
    assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 1);

    let mut pnr = s.clone();
    pnr.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let d = desired(&pnr, &pods, "t");
    assert!(
        d.slices[0]
            .endpoints
            .iter()
            .all(|e| e.conditions.as_ref().unwrap().ready == Some(true))
    );
}

#[test]
fn at_most_100_endpoints_per_slice_and_an_empty_slice_without_pods() {
    let s = svc(vec![port("http", 80, IntOrString::Int(8080))]);
    let pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.0.{}.{}", i / 200, i % 200 + 1),
                true,
                None,
            )
        })
        .collect();
    let d = desired(&s, &pods, "t");
    let sizes: Vec<usize> = d.slices.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let mut names: Vec<_> = d
        .slices
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3);
    let empty = desired(&s, &[], "t");
    assert_eq!(empty.slices.len(), 1);
    assert!(empty.slices[0].endpoints.is_empty());
    assert!(empty.endpoints.subsets.is_none());
}

#[test]
fn hostname_only_with_matching_subdomain_and_unselected_pods_are_ignored() {
    let s = svc(vec![port("http", 80, IntOrString::Int(8080))]);
    let mut a = pod("a", "10.0.0.1", true, None);
    a.spec.as_mut().unwrap().hostname = Some("host-a".into());
    a.spec.as_mut().unwrap().subdomain = Some("web".into());
    let mut b = pod("b", "10.0.0.2", true, None);
    b.spec.as_mut().unwrap().hostname = Some("host-b".into());
    let mut other = pod("x", "10.0.0.9", true, None);
    other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    let mut done = pod("y", "10.0.0.8", true, None);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let d = desired(&s, &[a, b, other, done], "t");
    let eps = &d.slices[0].endpoints;
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0].hostname.as_deref(), Some("host-a"));
    assert_eq!(eps[1].hostname, None);
}
