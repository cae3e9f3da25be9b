//! `svcnet bench apiserver`: API throughput and watch fan-out latency, with the embedded store's
//! own write and range-read rates measured in the same run as the anchor.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use svcnet_apiserver::{ApiServer, Config};
use svcnet_store::{Precondition, RedbStore, RedbStoreConfig, Store};

#[derive(Args, Clone, Debug)]
pub struct ApiserverBench {
    /// Services to create through the API.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Requests in flight while creating.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Concurrent watchers for the fan-out measurement.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Services created (one at a time) while the watchers listen.
    #[arg(long, default_value_t = 200)]
    watch_events: usize,
    /// Run the EndpointSlice controller during the run, as `svcnet up` does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    controllers: bool,
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"bench": "svcnet"}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
    .expect("valid Service")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Starts an API server inside this process on a free loopback port, its store in `dir`, and
/// returns its address and a client for it. With `controllers` its background tasks (the
/// EndpointSlice controller, the pod reaper) run too. It serves until the process exits.
pub(crate) async fn in_process_api(
    dir: &Path,
    controllers: bool,
) -> anyhow::Result<(SocketAddr, kube::Client)> {
    let store = Arc::new(RedbStore::open(
        &dir.join("store.redb"),
        RedbStoreConfig::default(),
    )?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = Config {
        advertise: addr,
        ..Default::default()
    };
    let server = ApiServer::new(store, config)
        .await
        .map_err(anyhow::Error::msg)?;
    if controllers {
        // Dropping the handles detaches the tasks; they keep running.
        server.spawn_background();
    }
    tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse()?))?;
    Ok((addr, client))
}

pub async fn run(args: ApiserverBench) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let (_, client) = in_process_api(dir.path(), args.controllers).await?;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    println!(
        "svcnet bench apiserver: {} Services, {} in flight, {} watchers, controllers {}",
        args.services,
        args.concurrency,
        args.watchers,
        if args.controllers { "on" } else { "off" }
    );

    // 1. Create through the API.
    let start = Instant::now();
    futures::stream::iter(0..args.services)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &service(&format!("bench-{i:05}")))
                    .await
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await
        .context("creating Services")?;
    let create = start.elapsed();
    let create_rate = args.services as f64 / create.as_secs_f64();
    println!(
        "create: {} Services in {:.2} s = {:.0} objects/s",
        args.services,
        create.as_secs_f64(),
        create_rate
    );

    // The controller writes an EndpointSlice and an Endpoints object per Service; wait until
    // it has caught up so the reads below measure the API, not contention with it.
    if args.controllers {
        let settle = Instant::now();
        let lp = ListParams::default()
            .labels("endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io")
            .limit(1);
        let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
            Api::namespaced(client.clone(), "default");
        loop {
            let page = slices.list(&lp).await?;
            let ep: Api<k8s_openapi::api::core::v1::Endpoints> =
                Api::namespaced(client.clone(), "default");
            let have_slices = page.metadata.continue_.is_some() || !page.items.is_empty();
            let last = ep
                .get_opt(&format!("bench-{:05}", args.services - 1))
                .await?
                .is_some();
            let count = slices
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len();
            if have_slices && last && count > args.services {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "controller: EndpointSlices and Endpoints for all {} Services written {:.2} s after the last create ({:.0} Services/s end to end)",
            args.services,
            settle.elapsed().as_secs_f64(),
            args.services as f64 / (create + settle.elapsed()).as_secs_f64()
        );
    }

    // 2. List them: one response, and in pages of 500 as informers do.
    let start = Instant::now();
    let all = api.list(&ListParams::default()).await?;
    let list_one = start.elapsed();
    let start = Instant::now();
    let mut paged = 0;
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        paged += page.items.len();
        token = page.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            break;
        }
    }
    let list_paged = start.elapsed();
    let raw_client = client;
    let start = Instant::now();
    let body = raw_client
        .request_text(http::Request::get("/api/v1/namespaces/default/services").body(Vec::new())?)
        .await?;
    let list_raw = start.elapsed();
    println!(
        "list: {} bytes served in {} (server and transfer only, no client decoding)",
        body.len(),
        ms(list_raw)
    );
    println!(
        "list: {} objects in {} (one request), {} objects in {} (pages of 500)",
        all.items.len(),
        ms(list_one),
        paged,
        ms(list_paged)
    );

    // 3. Watch fan-out: every watcher sees every new Service; latency from just before the
    //    create request to the event arriving at each watcher.
    let rv = all.metadata.resource_version.clone().unwrap_or_default();
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let mut handles = Vec::new();
    for _ in 0..args.watchers {
        let api = api.clone();
        let sent = sent.clone();
        let rv = rv.clone();
        let want = args.watch_events;
        let mut stream = api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(want);
            while lat.len() < want {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(s))) => {
                        let name = s.metadata.name.unwrap_or_default();
                        if !name.starts_with("fan-") {
                            continue;
                        }
                        let at = Instant::now();
                        if let Some(t0) = sent.lock().expect("lock").get(&name) {
                            lat.push(at - *t0);
                        }
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            lat
        }));
    }
    for i in 0..args.watch_events {
        let name = format!("fan-{i:04}");
        sent.lock()
            .expect("lock")
            .insert(name.clone(), Instant::now());
        api.create(&PostParams::default(), &service(&name)).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await?);
    }
    lat.sort();
    println!(
        "watch fan-out: {} deliveries to {} watchers: p50 {} p99 {} max {}",
        lat.len(),
        args.watchers,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default())
    );

    // Anchor: the same store, written and read directly (no HTTP, JSON, validation).
    let anchor_dir = tempfile::tempdir()?;
    let raw = Arc::new(RedbStore::open(
        &anchor_dir.path().join("anchor.redb"),
        RedbStoreConfig::default(),
    )?);
    let payload = Bytes::from(serde_json::to_vec(&service("anchor-00000"))?);
    let start = Instant::now();
    futures::stream::iter(0..args.services)
        .map(|i| {
            let raw = raw.clone();
            let payload = payload.clone();
            async move {
                raw.put(
                    &format!("/anchor/{i:05}"),
                    payload,
                    Precondition::MustNotExist,
                )
                .await
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let raw_write = start.elapsed();
    let raw_rate = args.services as f64 / raw_write.as_secs_f64();
    let start = Instant::now();
    let n = raw.list("/anchor/", None, None, None).await?.items.len();
    let raw_list = start.elapsed();
    println!(
        "anchor (store alone, same run): {raw_rate:.0} puts/s, range read of {n} in {}",
        ms(raw_list)
    );
    println!(
        "ratios: API create / store put = {:.2}x; API list / store range = {:.1}x slower",
        create_rate / raw_rate,
        list_one.as_secs_f64() / raw_list.as_secs_f64()
    );
    Ok(())
}
