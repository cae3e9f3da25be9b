//! The control side: reflectors over the API's Services, EndpointSlices and (for verified pod
//! records) Pods, and the task that rebuilds the [`Index`] from them and swaps it in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;
use crate::index::{Index, IndexInput, PodsMode};

/// A burst of changes is folded into one rebuild once no change has come for this long...
pub(crate) const DEBOUNCE_QUIET: Duration = Duration::from_millis(10);
/// ...or once the first change of the burst is this old.
pub(crate) const DEBOUNCE_MAX: Duration = Duration::from_millis(50);

// === impl IndexCell ===

/// The current index, swapped whole by the control side. Readers keep their own `Arc` and only
/// touch the lock when the generation moved, so answering never holds it.
pub(crate) struct IndexCell {
    generation: AtomicU64,
    current: RwLock<Arc<Index>>,
}

impl IndexCell {
    pub(crate) fn new(index: Index) -> Self {
        IndexCell {
            generation: AtomicU64::new(0),
            current: RwLock::new(Arc::new(index)),
        }
    }

    pub(crate) fn store(&self, index: Arc<Index>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = index;
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn load(&self) -> Arc<Index> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn reader(self: &Arc<Self>) -> IndexReader {
        IndexReader {
            generation: self.generation.load(Ordering::Acquire),
            index: self.load(),
            cell: self.clone(),
        }
    }
}

/// One worker's view of the [`IndexCell`].
pub(crate) struct IndexReader {
    cell: Arc<IndexCell>,
    generation: u64,
    index: Arc<Index>,
}

impl IndexReader {
    /// The newest index: one atomic load when nothing changed.
    pub(crate) fn get(&mut self) -> &Index {
        let generation = self.cell.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.index = self.cell.load();
            self.generation = generation;
        }
        &self.index
    }
}

// === the watch tasks ===

/// The reflector stores and the signals between the watch streams and the rebuild task.
pub(crate) struct Watches {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    pods: Option<Store<Pod>>,
    /// One flag per watch, set at its first complete list.
    listed: Vec<Arc<AtomicBool>>,
    changed: Arc<Notify>,
}

/// A reflector's driving future, to spawn.
pub(crate) type Driver = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts the reflectors; returns the stores and the futures that drive them.
pub(crate) fn watch(client: &kube::Client, pods_mode: PodsMode) -> (Watches, Vec<Driver>) {
    let changed = Arc::new(Notify::new());
    let mut listed = Vec::new();
    let mut drivers: Vec<Driver> = Vec::new();

    let (services, writer) = reflector::store::<Service>();
    let flag = Arc::new(AtomicBool::new(false));
    drivers.push(Box::pin(drive(
        Api::<Service>::all(client.clone()),
        writer,
        flag.clone(),
        changed.clone(),
        "Service",
        strip_service,
    )));
    listed.push(flag);

    let (slices, writer) = reflector::store::<EndpointSlice>();
    let flag = Arc::new(AtomicBool::new(false));
    drivers.push(Box::pin(drive(
        Api::<EndpointSlice>::all(client.clone()),
        writer,
        flag.clone(),
        changed.clone(),
        "EndpointSlice",
        strip_slice,
    )));
    listed.push(flag);

    let pods = (pods_mode == PodsMode::Verified).then(|| {
        let (pods, writer) = reflector::store::<Pod>();
        let flag = Arc::new(AtomicBool::new(false));
        drivers.push(Box::pin(drive(
            Api::<Pod>::all(client.clone()),
            writer,
            flag.clone(),
            changed.clone(),
            "Pod",
            strip_pod,
        )));
        listed.push(flag);
        pods
    });

    let watches = Watches {
        services,
        slices,
        pods,
        listed,
        changed,
    };
    (watches, drivers)
}

// The caches keep only what answers need: at 10,000 Services the full objects (annotations
// such as kubectl's last-applied-configuration, managed fields, status) were most of the
// server's memory.

fn strip_meta(m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    m.annotations = None;
    m.managed_fields = None;
    m.owner_references = None;
    m.finalizers = None;
    m.generate_name = None;
    m.uid = None;
    m.creation_timestamp = None;
}

fn strip_service(s: &mut Service) {
    strip_meta(&mut s.metadata);
    s.metadata.labels = None;
    s.status = None;
    if let Some(spec) = s.spec.as_mut() {
        spec.selector = None;
        spec.session_affinity_config = None;
        spec.load_balancer_source_ranges = None;
    }
}

fn strip_slice(s: &mut EndpointSlice) {
    strip_meta(&mut s.metadata);
    if let Some(l) = s.metadata.labels.as_mut() {
        l.retain(|k, _| k == "kubernetes.io/service-name");
    }
    for e in &mut s.endpoints {
        e.target_ref = None;
        e.hints = None;
        e.deprecated_topology = None;
    }
}

fn strip_pod(p: &mut Pod) {
    strip_meta(&mut p.metadata);
    p.metadata.labels = None;
    p.spec = None;
    if let Some(st) = p.status.as_mut() {
        st.conditions = None;
        st.container_statuses = None;
        st.init_container_statuses = None;
        st.ephemeral_container_statuses = None;
    }
}

/// Runs one reflector forever (the watcher backs off and relists on errors), raising `listed`
/// at its first complete list and signalling `changed` after every change to its store.
async fn drive<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    listed: Arc<AtomicBool>,
    changed: Arc<Notify>,
    kind: &'static str,
    strip: fn(&mut K),
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(strip)
        .reflect(writer)
        .for_each(|event| {
            match event {
                Ok(watcher::Event::InitDone) => {
                    if !listed.swap(true, Ordering::AcqRel) {
                        tracing::debug!(kind, "initial list complete");
                    }
                    changed.notify_one();
                }
                // The store swaps in a relist only at its InitDone.
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => changed.notify_one(),
                Err(e) => tracing::warn!(kind, error = %e, "watch failed; retrying"),
            }
            futures::future::ready(())
        })
        .await;
}

/// Waits for a burst of changes to end: until no change came for [`DEBOUNCE_QUIET`], or the
/// burst is [`DEBOUNCE_MAX`] old. Changes that arrive meanwhile are folded in.
async fn settle(changed: &Notify) {
    let first = Instant::now();
    loop {
        let left = DEBOUNCE_MAX.saturating_sub(first.elapsed());
        let quiet = DEBOUNCE_QUIET.min(left);
        if quiet.is_zero()
            || tokio::time::timeout(quiet, changed.notified())
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Rebuilds the index after changes, forever: waits for a change, lets the burst settle
/// ([`DEBOUNCE_QUIET`], at most [`DEBOUNCE_MAX`]), and once every watch has listed builds a
/// new index from the stores off the async threads and swaps it in.
pub(crate) async fn maintain_index(
    watches: Watches,
    shared: Arc<Shared>,
    zone: String,
    ttl: u32,
    pods_mode: PodsMode,
) {
    loop {
        watches.changed.notified().await;
        settle(&watches.changed).await;
        if !watches.listed.iter().all(|f| f.load(Ordering::Acquire)) {
            continue;
        }
        let services: Vec<Service> = watches
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let slices: Vec<EndpointSlice> = watches
            .slices
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let pods: Vec<Pod> = watches
            .pods
            .as_ref()
            .map(|p| p.state().iter().map(|p| (**p).clone()).collect())
            .unwrap_or_default();
        let zone = zone.clone();
        let started = Instant::now();
        let built = tokio::task::spawn_blocking(move || {
            Index::build(&IndexInput {
                services: &services,
                slices: &slices,
                pods: &pods,
                zone: &zone,
                ttl,
                pods_mode,
            })
        })
        .await;
        match built {
            Ok(Ok(index)) => {
                tracing::debug!(?index, took = ?started.elapsed(), "index rebuilt");
                shared.index.store(Arc::new(index));
                shared.metrics.index_built(started.elapsed());
                if !shared.ready.swap(true, Ordering::AcqRel) {
                    tracing::info!("initial sync complete; answering cluster names");
                }
            }
            // The zone was validated at start, so this does not happen.
            Ok(Err(e)) => tracing::error!(error = %e, "index build failed"),
            Err(e) => tracing::error!(error = %e, "index build task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lone_change_settles_after_the_quiet_time() {
        let changed = Notify::new();
        let start = Instant::now();
        settle(&changed).await;
        assert_eq!(start.elapsed(), DEBOUNCE_QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_folded_in() {
        let changed = Arc::new(Notify::new());
        let signal = changed.clone();
        // Three more changes 4 ms apart, then silence.
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(4)).await;
                signal.notify_one();
            }
        });
        let start = Instant::now();
        settle(&changed).await;
        assert_eq!(start.elapsed(), Duration::from_millis(12) + DEBOUNCE_QUIET);
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_stream_settles_at_the_cap() {
        let changed = Arc::new(Notify::new());
        let signal = changed.clone();
        let noise = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(3)).await;
                signal.notify_one();
            }
        });
        let start = Instant::now();
        settle(&changed).await;
        assert_eq!(start.elapsed(), DEBOUNCE_MAX);
        noise.abort();
    }

    #[test]
    fn readers_follow_swaps() {
        let cell = Arc::new(IndexCell::new(
            Index::empty_not_synced("cluster.local").unwrap(),
        ));
        let mut reader = cell.reader();
        assert!(!reader.get().is_synced());
        let synced = Index::build(&IndexInput {
            services: &[],
            slices: &[],
            pods: &[],
            zone: "cluster.local",
            ttl: 5,
            pods_mode: PodsMode::Disabled,
        })
        .unwrap();
        cell.store(Arc::new(synced));
        assert!(reader.get().is_synced());
        assert!(cell.load().is_synced());
    }
}
