//! The EndpointSlice controller, observed through the API.

mod common;

use std::time::Duration;

use common::{Transport, start};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i32) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x",
            "ports": [{"name": port_name, "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .unwrap()
}

async fn create_pod(api: &Api<Pod>, p: Pod) {
    // Status is a subresource: create, then write the status the agent would report.
    let name = p.metadata.name.clone().unwrap();
    let status = p.status.clone();
    api.create(&PostParams::default(), &p).await.unwrap();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap();
}

/// Polls until `check` holds for the Service's slices (the controller is asynchronous).
async fn wait_slices<F>(
    api: &Api<EndpointSlice>,
    svc: &str,
    what: &str,
    check: F,
) -> Vec<EndpointSlice>
where
    F: Fn(&[EndpointSlice]) -> bool,
{
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let slices = api.list(&lp).await.unwrap().items;
        if check(&slices) {
            return slices;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {slices:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn addresses(slices: &[EndpointSlice], ready: bool) -> Vec<String> {
    let mut out: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(ready))
        .flat_map(|e| e.addresses.clone())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_follow_pods_readiness_named_ports_and_deletion() {
    let srv = start(Transport::InProcess).await;
    let services: Api<Service> = Api::namespaced(srv.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(srv.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(srv.client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(srv.client.clone(), "default");

    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http-alt"}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let empty = wait_slices(&slices, "web", "an empty slice", |s| s.len() == 1).await;
    assert!(empty[0].endpoints.is_empty());
    let ann = empty[0].metadata.annotations.clone().unwrap_or_default();
    assert!(
        ann.contains_key("endpoints.kubernetes.io/last-change-trigger-time"),
        "{ann:?}"
    );

    create_pod(&pods, pod("a", "10.244.0.5", true, "http-alt", 8080)).await;
    create_pod(&pods, pod("b", "10.244.0.6", false, "http-alt", 8080)).await;
    create_pod(&pods, pod("c", "10.244.0.7", true, "http-alt", 9090)).await;
    let got = wait_slices(&slices, "web", "three endpoints", |s| {
        s.iter().map(|x| x.endpoints.len()).sum::<usize>() == 3
    })
    .await;
    assert_eq!(addresses(&got, true), vec!["10.244.0.5", "10.244.0.7"]);
    assert_eq!(addresses(&got, false), vec!["10.244.0.6"]);
    // Named target ports resolve per pod, so pods with different numbers get different slices.
    let mut ports: Vec<i32> = got
        .iter()
        .filter_map(|s| s.ports.as_ref()?.first()?.port)
        .collect();
    ports.sort();
    assert_eq!(ports, vec![8080, 9090]);
    let e = got
        .iter()
        .flat_map(|s| &s.endpoints)
        .find(|e| e.addresses[0] == "10.244.0.5")
        .unwrap();
    assert_eq!(e.node_name.as_deref(), Some("node1"));
    assert_eq!(e.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));

    // The legacy Endpoints object says the same (written beside the slices, so polled too).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ep = endpoints.get("web").await.unwrap();
        let ready: usize = ep
            .subsets
            .iter()
            .flatten()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        let not_ready: usize = ep
            .subsets
            .iter()
            .flatten()
            .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
            .sum();
        if (ready, not_ready) == (2, 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Endpoints: {ready} ready, {not_ready} not ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Readiness flips are reflected.
    pods.patch_status(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    wait_slices(&slices, "web", "b ready", |s| addresses(s, true).len() == 3).await;

    // A bound pod being deleted stays as a terminating, not-ready endpoint during its grace period.
    pods.delete("a", &DeleteParams::default().grace_period(30))
        .await
        .unwrap();
    let got = wait_slices(&slices, "web", "a terminating", |s| {
        s.iter()
            .flat_map(|x| &x.endpoints)
            .any(|e| e.conditions.as_ref().and_then(|c| c.terminating) == Some(true))
    })
    .await;
    let a = got
        .iter()
        .flat_map(|s| &s.endpoints)
        .find(|e| e.addresses[0] == "10.244.0.5")
        .unwrap();
    let c = a.conditions.clone().unwrap();
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(false), Some(true), Some(true))
    );
    // Gone for good with grace period 0.
    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_slices(&slices, "web", "a gone", |s| {
        !addresses(s, false).contains(&"10.244.0.5".to_string())
            && !addresses(s, true).contains(&"10.244.0.5".to_string())
    })
    .await;

    // Deleting the Service removes its slices and Endpoints.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_slices(&slices, "web", "no slices", |s| s.is_empty()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while endpoints.get_opt("web").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Endpoints not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_services_split_into_slices_of_100_and_selectorless_ones_are_left_alone() {
    let srv = start(Transport::InProcess).await;
    let services: Api<Service> = Api::namespaced(srv.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(srv.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(srv.client.clone(), "default");
    for i in 0..230 {
        create_pod(
            &pods,
            pod(
                &format!("p{i}"),
                &format!("10.244.{}.{}", i / 200, i % 200 + 1),
                true,
                "http",
                80,
            ),
        )
        .await;
    }
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let got = wait_slices(&slices, "web", "230 endpoints", |s| {
        s.iter().map(|x| x.endpoints.len()).sum::<usize>() == 230
    })
    .await;
    let mut sizes: Vec<usize> = got.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![30, 100, 100]);

    // A Service without a selector: the user's own slice is kept as written.
    let manual: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"},
        "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let mine: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "manual-1", "labels": {"kubernetes.io/service-name": "manual"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.10"]}],
        "ports": [{"port": 80}]
    }))
    .unwrap();
    slices.create(&PostParams::default(), &mine).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=manual"))
        .await
        .unwrap()
        .items;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].endpoints[0].addresses, vec!["192.0.2.10"]);
}
