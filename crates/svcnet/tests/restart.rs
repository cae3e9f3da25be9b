//! Durability: 1,000 Services survive a SIGKILL of the API server, with every allocation.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use common::{Running, free_port};

fn spawn(addr: SocketAddr, data: &Path) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_svcnet"))
            .args(["apiserver", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("svcnet starts"),
    )
}

async fn wait_ready(client: &kube::Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.apiserver_version().await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "API server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Allocated = BTreeMap<String, (String, Vec<i32>)>;

async fn snapshot(api: &Api<Service>) -> Allocated {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            let spec = s.spec.unwrap();
            let node_ports = spec
                .ports
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p.node_port)
                .collect();
            (
                s.metadata.name.unwrap(),
                (spec.cluster_ip.unwrap_or_default(), node_ports),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_services_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let addr = free_port();
    let mut child = spawn(addr, data.path());
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap()))
            .unwrap();
    wait_ready(&client).await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");

    let creates = futures::stream::iter(0..1000).map(|i| {
        let api = api.clone();
        async move {
            let ty = if i % 5 == 0 { "NodePort" } else { "ClusterIP" };
            let svc: Service = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i:04}")},
                "spec": {"type": ty, "selector": {"app": format!("a{i}")}, "ports": [{"port": 80}]}
            }))
            .unwrap();
            api.create(&PostParams::default(), &svc)
                .await
                .expect("create");
        }
    });
    creates.buffer_unordered(32).collect::<Vec<_>>().await;
    let before = snapshot(&api).await;
    assert_eq!(before.len(), 1001);

    // Child::kill sends SIGKILL: no shutdown path runs.
    child.0.kill().expect("SIGKILL");
    child.0.wait().unwrap();
    drop(child);

    let _child = spawn(addr, data.path());
    wait_ready(&client).await;
    let after = snapshot(&api).await;
    assert_eq!(before, after, "every object and allocation is back");

    // The allocators were repaired: taken values are refused, new ones do not collide.
    let (taken_ip, _) = &after["svc-0001"];
    let (_, taken_ports) = &after["svc-0000"];
    let dup_ip: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "dup-ip"}, "spec": {"clusterIP": taken_ip, "ports": [{"port": 80}]}}))
    .unwrap();
    let err = api
        .create(&PostParams::default(), &dup_ip)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("provided IP is already allocated"),
        "{err}"
    );
    let dup_port: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "dup-port"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": taken_ports[0]}]}})).unwrap();
    let err = api
        .create(&PostParams::default(), &dup_port)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("provided port is already allocated"),
        "{err}"
    );
    let mut ips: HashSet<String> = after.values().map(|(ip, _)| ip.clone()).collect();
    for i in 0..50 {
        let svc: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("new-{i}")}, "spec": {"ports": [{"port": 80}]}}))
        .unwrap();
        let created = api.create(&PostParams::default(), &svc).await.unwrap();
        assert!(
            ips.insert(created.spec.unwrap().cluster_ip.unwrap()),
            "double allocation after restart"
        );
    }
}
