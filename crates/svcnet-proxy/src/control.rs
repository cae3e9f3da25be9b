//! The control loop: watch, rate-limit, compute the desired state, hand it to the dataplane.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use svcnet_core::endpoints::TRIGGER_TIME_ANNOTATION;
use tokio::sync::Notify;

use crate::metrics::ProxyMetrics;
use crate::model::desired_state;
use crate::{Dataplane, Error};

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub node_name: String,
    /// At most one sync per this period; changes within it are batched.
    pub min_sync_period: Duration,
    /// A full sync happens at least this often.
    pub sync_period: Duration,
    pub healthz: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            healthz: Some(([0, 0, 0, 0], 10256).into()),
            metrics: Some(([127, 0, 0, 1], 10249).into()),
        }
    }
}

async fn serve_ops(
    addr: SocketAddr,
    metrics: Arc<ProxyMetrics>,
    allowed: Duration,
) -> Result<(), Error> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(Error::Io)?;
    let m1 = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let m = m1.clone();
                async move {
                    let now = jiff::Timestamp::now();
                    let body = format!("{{\"lastUpdated\": \"{now}\",\"currentTime\": \"{now}\"}}");
                    let code = if m.healthy(Instant::now(), allowed) {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, body)
                }
            }),
        )
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.encode() }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}

/// Runs the proxy until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    mut dataplane: Box<dyn Dataplane>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Error> {
    let metrics = Arc::new(ProxyMetrics::new());
    let allowed = config.sync_period * 2 + config.min_sync_period;
    let mut ops: Vec<(SocketAddr, &str)> = Vec::new();
    if let Some(a) = config.healthz {
        ops.push((a, "healthz"));
    }
    if let Some(a) = config.metrics
        && Some(a) != config.healthz
    {
        ops.push((a, "metrics"));
    }
    for (addr, _) in ops {
        serve_ops(addr, metrics.clone(), allowed).await?;
    }

    let notify = Arc::new(Notify::new());
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let svc_stream = reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let slice_stream = reflector(
        slice_writer,
        watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let (n1, n2) = (notify.clone(), notify.clone());
    let (m1, m2) = (metrics.clone(), metrics.clone());
    let watchers = tokio::spawn(async move {
        let a = svc_stream.for_each(|ev| {
            if let Err(e) = ev {
                tracing::warn!(error = %e, "service watch error");
            } else {
                m1.service_changes.inc();
                m1.change_queued(Instant::now());
                n1.notify_one();
            }
            futures::future::ready(())
        });
        let b = slice_stream.for_each(|ev| {
            if let Err(e) = ev {
                tracing::warn!(error = %e, "endpointslice watch error");
            } else {
                m2.endpoint_changes.inc();
                m2.change_queued(Instant::now());
                n2.notify_one();
            }
            futures::future::ready(())
        });
        futures::join!(a, b);
    });
    tokio::pin!(shutdown);
    tokio::select! {
        r = async { tokio::try_join!(services.wait_until_ready(), slices.wait_until_ready()) } => {
            r.map_err(|e| Error::Api(e.to_string()))?;
        }
        _ = &mut shutdown => { watchers.abort(); return Ok(()); }
    }
    tracing::info!(mode = dataplane.name(), node = %config.node_name, "initial sync complete");

    let mut last_sync: Option<Instant> = None;
    let mut seen_triggers: HashMap<String, String> = HashMap::new();
    loop {
        // Respect the minimum period between syncs, batching what arrives meanwhile.
        if let Some(last) = last_sync {
            let ready_at = last + config.min_sync_period;
            tokio::select! {
                _ = tokio::time::sleep_until(ready_at.into()) => {}
                _ = &mut shutdown => break,
            }
        }
        let svc_list: Vec<Service> = services.state().iter().map(|s| Service::clone(s)).collect();
        let slice_list: Vec<EndpointSlice> = slices
            .state()
            .iter()
            .map(|s| EndpointSlice::clone(s))
            .collect();
        let state = desired_state(&svc_list, &slice_list, &config.node_name);
        let started = Instant::now();
        match dataplane.sync(&state).await {
            Ok(()) => {
                metrics.synced(started.elapsed(), Instant::now());
                observe_programming(&metrics, &slice_list, &mut seen_triggers);
                tracing::debug!(service_ports = state.services.len(), took = ?started.elapsed(), "synced");
            }
            Err(e) => {
                metrics.sync_failures.inc();
                tracing::error!(error = %e, "sync failed; will retry");
            }
        }
        last_sync = Some(Instant::now());
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(config.sync_period) => {}
            _ = &mut shutdown => break,
        }
    }
    watchers.abort();
    Ok(())
}

/// `kubeproxy_network_programming_duration_seconds`: from each new trigger time stamped by the
/// EndpointSlice controller to now. `seen` keeps the last trigger per slice, and only for slices
/// that still exist.
fn observe_programming(
    metrics: &ProxyMetrics,
    slices: &[EndpointSlice],
    seen: &mut HashMap<String, String>,
) {
    let now = jiff::Timestamp::now();
    let mut present = HashSet::with_capacity(slices.len());
    for s in slices {
        let key = format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or(""),
            s.metadata.name.as_deref().unwrap_or("")
        );
        present.insert(key.clone());
        let Some(t) = s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRIGGER_TIME_ANNOTATION))
        else {
            continue;
        };
        if seen.get(&key) == Some(t) {
            continue;
        }
        if let Ok(ts) = t.parse::<jiff::Timestamp>()
            && seen.contains_key(&key)
        {
            let secs = now.duration_since(ts).as_secs_f64();
            if secs >= 0.0 {
                metrics.programming_duration.observe(secs);
            }
        }
        seen.insert(key, t.clone());
    }
    seen.retain(|key, _| present.contains(key));
}
