//! The control loop against an in-process API server: the first sync sees the cluster,
//! changes reach the dataplane, and syncs are rate-limited by `min_sync_period`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use svcnet_proxy::model::ProxyState;
use svcnet_proxy::{BoxFuture, Dataplane, Error, ProxyConfig};

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(Instant, usize)>>>);

impl Dataplane for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn sync<'a>(&'a mut self, state: &'a ProxyState) -> BoxFuture<'a, Result<(), Error>> {
        let n = state.services.len();
        self.0.lock().unwrap().push((Instant::now(), n));
        Box::pin(async { Ok(()) })
    }
    fn cleanup(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

fn service(name: &str) -> Service {
    serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_follow_changes_and_respect_the_minimum_period() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        svcnet_store::RedbStore::open(&dir.path().join("s.redb"), Default::default()).unwrap();
    let server = svcnet_apiserver::ApiServer::new(Arc::new(store), Default::default())
        .await
        .unwrap();
    let client = kube::Client::new(server.router(), "default");
    let rec = Recorder::default();
    let min = Duration::from_millis(300);
    let config = ProxyConfig {
        node_name: "n1".into(),
        min_sync_period: min,
        sync_period: Duration::from_secs(3600),
        healthz: None,
        metrics: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(svcnet_proxy::run(
        client.clone(),
        config,
        Box::new(rec.clone()),
        async {
            let _ = stop_rx.await;
        },
    ));
    let api: Api<Service> = Api::namespaced(client, "default");
    let wait_for = |want: usize| {
        let rec = rec.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if rec
                    .0
                    .lock()
                    .unwrap()
                    .last()
                    .is_some_and(|(_, n)| *n == want)
                {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "no sync with {want} service ports: {:?}",
                    rec.0.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // The kubernetes Service exists from the start.
    wait_for(1).await;
    for i in 0..20 {
        api.create(&PostParams::default(), &service(&format!("s{i}")))
            .await
            .unwrap();
    }
    wait_for(21).await;
    api.delete("s0", &DeleteParams::default()).await.unwrap();
    wait_for(20).await;
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();

    let syncs = rec.0.lock().unwrap().clone();
    assert!(
        syncs.len() < 20,
        "a burst of 21 changes was batched into few syncs: {}",
        syncs.len()
    );
    for pair in syncs.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= min,
            "two syncs closer than min_sync_period: {syncs:?}"
        );
    }
}
