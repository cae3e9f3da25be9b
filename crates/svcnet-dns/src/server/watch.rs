//! The control side: watches over the API's Services, EndpointSlices and (for verified pod
//! records) Pods, kept as the records DNS needs, and the task that rebuilds the [`Index`] from
//! them and swaps it in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;
use crate::index::{Index, PodsMode};
use crate::model::{PodRecord, Records, ServiceRecord, SliceRecord};

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

/// Objects per page of a watch's list. With kube's default of 500, each page of a
/// 10,000-Service list is a ~350 KB response decoded into 500 objects at once; those larger
/// buffers left `svcnet dns` ~4 MB more resident after the list (and its peak ~5 MB higher)
/// than pages of 100, which sync as fast on loopback.
const LIST_PAGE_SIZE: u32 = 100;

/// One watch's objects, as the records DNS needs ([`crate::model`]), keyed by namespace and
/// name.
///
/// This replaces kube's reflector stores, which hold whole k8s-openapi objects: even stripped
/// of annotations and status they took ~1.3 KB per Service (the struct alone is 824 bytes),
/// 13 MB at 10,000 Services, and each rebuild deep-cloned all of them (another 11 MB at the
/// peak). A record with its key is ~300 bytes, and a rebuild only clones `Arc`s.
pub(crate) struct RecordStore<T> {
    records: RwLock<HashMap<ObjectKey, Arc<T>>>,
}

/// An object's namespace and name.
type ObjectKey = (Option<Box<str>>, Box<str>);

fn object_key(meta: &ObjectMeta) -> ObjectKey {
    (
        meta.namespace.as_deref().map(Box::from),
        meta.name.as_deref().unwrap_or_default().into(),
    )
}

impl<T> RecordStore<T> {
    fn new() -> Arc<Self> {
        Arc::new(RecordStore {
            records: RwLock::new(HashMap::new()),
        })
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ObjectKey, Arc<T>>> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every record now, for a rebuild.
    fn snapshot(&self) -> Vec<Arc<T>> {
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner);
        records.values().cloned().collect()
    }
}

/// The record stores and the signals between the watch streams and the rebuild task.
pub(crate) struct Watches {
    services: Arc<RecordStore<ServiceRecord>>,
    slices: Arc<RecordStore<SliceRecord>>,
    pods: Option<Arc<RecordStore<PodRecord>>>,
    /// One flag per watch, set at its first complete list.
    listed: Vec<Arc<AtomicBool>>,
    changed: Arc<Notify>,
}

/// A watch's driving future, to spawn.
pub(crate) type Driver = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts the watches; returns the stores and the futures that drive them.
pub(crate) fn watch(client: &kube::Client, pods_mode: PodsMode) -> (Watches, Vec<Driver>) {
    let changed = Arc::new(Notify::new());
    let mut listed = Vec::new();
    let mut drivers: Vec<Driver> = Vec::new();

    let services = RecordStore::new();
    let flag = Arc::new(AtomicBool::new(false));
    drivers.push(Box::pin(drive(
        Api::<Service>::all(client.clone()),
        services.clone(),
        ServiceRecord::new,
        flag.clone(),
        changed.clone(),
        "Service",
    )));
    listed.push(flag);

    let slices = RecordStore::new();
    let flag = Arc::new(AtomicBool::new(false));
    drivers.push(Box::pin(drive(
        Api::<EndpointSlice>::all(client.clone()),
        slices.clone(),
        SliceRecord::new,
        flag.clone(),
        changed.clone(),
        "EndpointSlice",
    )));
    listed.push(flag);

    let pods = (pods_mode == PodsMode::Verified).then(|| {
        let pods = RecordStore::new();
        let flag = Arc::new(AtomicBool::new(false));
        drivers.push(Box::pin(drive(
            Api::<Pod>::all(client.clone()),
            pods.clone(),
            PodRecord::new,
            flag.clone(),
            changed.clone(),
            "Pod",
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

/// Runs one watch forever (the watcher backs off and relists on errors), keeping `store` in
/// step with it, raising `listed` at its first complete list and signalling `changed` after
/// every change to the store.
async fn drive<K, T>(
    api: Api<K>,
    store: Arc<RecordStore<T>>,
    record: fn(&K) -> T,
    listed: Arc<AtomicBool>,
    changed: Arc<Notify>,
    kind: &'static str,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    // A relist is collected here and swapped in whole at its InitDone, as kube's reflector
    // does: until then answers come from the previous list.
    let mut relist: HashMap<ObjectKey, Arc<T>> = HashMap::new();
    let config = watcher::Config::default().page_size(LIST_PAGE_SIZE);
    watcher(api, config)
        .default_backoff()
        .for_each(|event| {
            match event {
                Ok(watcher::Event::Init) => relist.clear(),
                Ok(watcher::Event::InitApply(obj)) => {
                    relist.insert(object_key(obj.meta()), Arc::new(record(&obj)));
                }
                Ok(watcher::Event::InitDone) => {
                    let mut listed_now = std::mem::take(&mut relist);
                    listed_now.shrink_to_fit();
                    *store.write() = listed_now;
                    if !listed.swap(true, Ordering::AcqRel) {
                        tracing::debug!(kind, "initial list complete");
                    }
                    changed.notify_one();
                }
                Ok(watcher::Event::Apply(obj)) => {
                    let key = object_key(obj.meta());
                    store.write().insert(key, Arc::new(record(&obj)));
                    changed.notify_one();
                }
                Ok(watcher::Event::Delete(obj)) => {
                    store.write().remove(&object_key(obj.meta()));
                    changed.notify_one();
                }
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
        // The records are shared with the stores, not copied.
        let services = watches.services.snapshot();
        let slices = watches.slices.snapshot();
        let pods = watches
            .pods
            .as_ref()
            .map(|p| p.snapshot())
            .unwrap_or_default();
        let zone = zone.clone();
        let started = Instant::now();
        let built = tokio::task::spawn_blocking(move || {
            let records = Records {
                services: services.iter().map(|s| &**s).collect(),
                slices: slices.iter().map(|s| &**s).collect(),
                pods: pods.iter().map(|p| &**p).collect(),
            };
            Index::from_records(&records, &zone, ttl, pods_mode)
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
    use crate::index::IndexInput;

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
