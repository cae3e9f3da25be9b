//! The EndpointSlice controller, run inside the API server process as a client of the
//! [`Registry`].
//!
//! It keeps caches of Services, Pods and managed EndpointSlices fed by store watches, marks
//! Services dirty when they or a Pod they select (before or after the change) change, and
//! reconciles dirty Services by writing the difference between [`svcnet_core::endpoints::desired`]
//! and what exists, through the registry (so writes get validation and resourceVersions).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use svcnet_core::endpoints::{self, MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use svcnet_store::{EventType, Revision};

use crate::error::{ApiError, Result};
use crate::health::{ControllerState, Health};
use crate::kinds::{ENDPOINT_SLICES, ENDPOINTS, PODS, SERVICES};
use crate::registry::{DeleteOptions, Registry, WriteOptions, now_rfc3339, without_managed_fields};
use crate::resources::Resource;

/// The field manager of this controller's writes, as kube-controller-manager's.
const MANAGER: &str = "endpointslice-controller";
pub(crate) const HEALTH_NAME: &str = "endpointslice";

type Key = (String, String);

#[derive(Default)]
struct Caches {
    services: HashMap<Key, Service>,
    /// Pods by namespace, then name.
    pods: HashMap<String, BTreeMap<String, Pod>>,
    /// Managed slices by (namespace, service name), then slice name.
    slices: HashMap<Key, BTreeMap<String, EndpointSlice>>,
    endpoints: HashMap<Key, Endpoints>,
}

fn key_of(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn has_selector(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty())
}

fn managed(slice: &EndpointSlice) -> Option<Key> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    Some((
        slice.metadata.namespace.clone().unwrap_or_default(),
        labels.get(SERVICE_NAME_LABEL)?.clone(),
    ))
}

/// Whether two slices say the same, ignoring the metadata the server or time sets.
fn same_content(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.address_type == b.address_type
        && a.endpoints == b.endpoints
        && a.ports == b.ports
        && a.metadata.labels == b.metadata.labels
}

/// The kinds this controller follows.
const WATCHED: [&Resource; 4] = [&SERVICES, &PODS, &ENDPOINT_SLICES, &ENDPOINTS];

/// An object from the store (its bytes) or from a write's answer.
enum Obj<'a> {
    Stored(&'a [u8]),
    Json(Value),
}

impl Obj<'_> {
    /// The typed object, straight from the bytes when there are some.
    fn parse<T: serde::de::DeserializeOwned>(self) -> Option<T> {
        match self {
            Obj::Stored(raw) => serde_json::from_slice(&without_managed_fields(raw)).ok(),
            Obj::Json(mut v) => {
                if let Some(m) = v["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
                serde_json::from_value(v).ok()
            }
        }
    }
}

pub struct EndpointSliceController {
    reg: Arc<Registry>,
    health: Arc<Health>,
    caches: Caches,
    /// The store prefixes of [`WATCHED`].
    prefixes: Vec<String>,
}

impl EndpointSliceController {
    pub fn new(reg: Arc<Registry>, health: Arc<Health>) -> Self {
        health.register(HEALTH_NAME);
        Self {
            reg,
            health,
            caches: Caches::default(),
            prefixes: WATCHED.iter().map(|r| r.prefix(None)).collect(),
        }
    }

    /// Runs until the store closes. Restarts its watch after errors.
    pub async fn run(mut self) {
        loop {
            match self.run_once().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "endpointslice controller restarting");
                    self.health
                        .report(HEALTH_NAME, ControllerState::Failing(e.to_string()));
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn load(&mut self, res: &Resource) -> Result<Revision> {
        let page = self
            .reg
            .store()
            .list(&res.prefix(None), None, None, None)
            .await?;
        for kv in &page.items {
            self.apply_event(res, EventType::Put, Obj::Stored(&kv.value));
        }
        Ok(page.revision)
    }

    async fn run_once(&mut self) -> Result<()> {
        self.caches = Caches::default();
        // Each list is its own snapshot; watching from the oldest of them replays whatever
        // happened between them (applying an event twice is harmless).
        let mut rev = u64::MAX;
        for res in WATCHED {
            rev = rev.min(self.load(res).await?);
        }
        // Everything may have changed while we were away.
        let all: BTreeSet<Key> = self
            .caches
            .services
            .keys()
            .cloned()
            .chain(self.caches.slices.keys().cloned())
            .collect();
        let mut retry = self.reconcile_all(all).await;
        self.report(&retry);

        // One watch over the whole registry, filtered here.
        let mut events = self.reg.store().watch("/registry/", rev).await?;
        let mut backoff = RETRY_MIN;
        loop {
            let mut dirty = BTreeSet::new();
            tokio::select! {
                ev = events.next() => {
                    let Some(first) = ev else { return Ok(()) };
                    self.handle(first?, &mut dirty)?;
                }
                // Failed writes are retried even when nothing else happens to their Service.
                _ = tokio::time::sleep(backoff), if !retry.is_empty() => {
                    dirty.append(&mut retry);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
            // Drain what is already queued so a burst is reconciled once.
            while let Some(Some(ev)) = futures::FutureExt::now_or_never(events.next()) {
                self.handle(ev?, &mut dirty)?;
            }
            let failed = self.reconcile_all(dirty).await;
            if failed.is_empty() && retry.is_empty() {
                backoff = RETRY_MIN;
            }
            retry.extend(failed);
            self.report(&retry);
        }
    }

    /// Healthy while every Service's endpoints were written.
    fn report(&self, failing: &BTreeSet<Key>) {
        let state = match failing.iter().next() {
            None => ControllerState::Synced,
            Some((ns, name)) => ControllerState::Failing(format!(
                "endpoints of {} Service(s) not written, e.g. {ns}/{name}",
                failing.len()
            )),
        };
        self.health.report(HEALTH_NAME, state);
    }

    fn handle(&mut self, ev: svcnet_store::Event, dirty: &mut BTreeSet<Key>) -> Result<()> {
        let res = WATCHED
            .iter()
            .zip(self.prefixes.iter())
            .find(|(_, p)| ev.kv.key.starts_with(p.as_str()))
            .map(|(r, _)| *r);
        let Some(res) = res else { return Ok(()) };
        dirty.extend(self.apply_event(res, ev.kind, Obj::Stored(&ev.kv.value)));
        Ok(())
    }

    /// Updates the caches; returns the Services whose endpoints may need work.
    fn apply_event(&mut self, res: &Resource, kind: EventType, obj: Obj) -> Vec<Key> {
        let deleted = kind == EventType::Delete;
        match res {
            r if *r == SERVICES => {
                let Some(svc) = obj.parse::<Service>() else {
                    return vec![];
                };
                let k = key_of(&svc.metadata);
                if deleted {
                    self.caches.services.remove(&k);
                } else {
                    self.caches.services.insert(k.clone(), svc);
                }
                vec![k]
            }
            r if *r == PODS => {
                let Some(pod) = obj.parse::<Pod>() else {
                    return vec![];
                };
                let (ns, name) = key_of(&pod.metadata);
                let pods = self.caches.pods.entry(ns.clone()).or_default();
                let old = if deleted {
                    pods.remove(&name)
                } else {
                    pods.insert(name, pod.clone())
                };
                self.caches
                    .services
                    .iter()
                    .filter(|(k, svc)| {
                        k.0 == ns
                            && (endpoints::selects(svc, &pod)
                                || old.as_ref().is_some_and(|o| endpoints::selects(svc, o)))
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            }
            r if *r == ENDPOINT_SLICES => {
                let Some(slice) = obj.parse::<EndpointSlice>() else {
                    return vec![];
                };
                let Some(owner) = managed(&slice) else {
                    return vec![];
                };
                let name = slice.metadata.name.clone().unwrap_or_default();
                let entry = self.caches.slices.entry(owner.clone()).or_default();
                if deleted {
                    entry.remove(&name);
                } else {
                    entry.insert(name, slice);
                }
                vec![owner]
            }
            r if *r == ENDPOINTS => {
                let Some(ep) = obj.parse::<Endpoints>() else {
                    return vec![];
                };
                let k = key_of(&ep.metadata);
                if deleted {
                    self.caches.endpoints.remove(&k);
                } else {
                    self.caches.endpoints.insert(k.clone(), ep);
                }
                vec![k]
            }
            _ => vec![],
        }
    }

    /// Plans the writes for every dirty Service from the caches, runs them concurrently (so
    /// they share the store's group commits), then folds the results back into the caches.
    /// Returns the Services whose writes failed, to be retried.
    async fn reconcile_all(&mut self, dirty: BTreeSet<Key>) -> BTreeSet<Key> {
        let mut ops: Vec<(Key, Op)> = Vec::new();
        for k in &dirty {
            let mut mine = Vec::new();
            self.plan(k, &mut mine);
            ops.extend(mine.into_iter().map(|op| (k.clone(), op)));
        }
        let reg = self.reg.clone();
        let mut failed = BTreeSet::new();
        let results: Vec<(Key, Op, Result<Option<Value>>)> = futures::stream::iter(ops)
            .map(|(k, op)| {
                let reg = reg.clone();
                async move {
                    let r = op.run(&reg).await;
                    (k, op, r)
                }
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        for (k, op, result) in results {
            match result {
                Ok(Some(obj)) => {
                    let kind = if matches!(op, Op::Delete { .. }) {
                        EventType::Delete
                    } else {
                        EventType::Put
                    };
                    self.apply_event(op.resource(), kind, Obj::Json(obj));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(object = %op.describe(), error = %e, "endpoints write failed; will retry");
                    failed.insert(k);
                }
            }
        }
        failed
    }

    /// The writes that bring one Service's EndpointSlices and Endpoints to the desired state.
    fn plan(&self, k: &Key, ops: &mut Vec<Op>) {
        let ns = k.0.clone();
        let existing = self.caches.slices.get(k);
        let svc = self.caches.services.get(k).filter(|s| has_selector(s));
        let Some(svc) = svc else {
            // Gone, or no longer selects: its managed objects go.
            for name in existing.into_iter().flat_map(BTreeMap::keys) {
                ops.push(Op::Delete {
                    res: &ENDPOINT_SLICES,
                    ns: ns.clone(),
                    name: name.clone(),
                });
            }
            let managed_ep = self.caches.endpoints.get(k).is_some_and(|ep| {
                ep.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(endpoints::TRIGGER_TIME_ANNOTATION))
            });
            if managed_ep && !self.caches.services.contains_key(k) {
                ops.push(Op::Delete {
                    res: &ENDPOINTS,
                    ns,
                    name: k.1.clone(),
                });
            }
            return;
        };
        let pods: Vec<Pod> = self
            .caches
            .pods
            .get(&k.0)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let want = endpoints::desired(svc, &pods, &now_rfc3339());
        let mut keep = BTreeSet::new();
        for slice in &want.slices {
            let name = slice.metadata.name.clone().unwrap_or_default();
            keep.insert(name.clone());
            let have = existing.and_then(|e| e.get(&name));
            if have.is_some_and(|h| same_content(h, slice)) {
                continue;
            }
            ops.push(Op::Write {
                res: &ENDPOINT_SLICES,
                ns: ns.clone(),
                name,
                value: serde_json::to_value(slice).expect("serializable"),
                exists: have.is_some(),
            });
        }
        for name in existing
            .into_iter()
            .flat_map(BTreeMap::keys)
            .filter(|n| !keep.contains(*n))
        {
            ops.push(Op::Delete {
                res: &ENDPOINT_SLICES,
                ns: ns.clone(),
                name: name.clone(),
            });
        }
        let have_ep = self.caches.endpoints.get(k);
        let same = have_ep.is_some_and(|h| {
            h.subsets == want.endpoints.subsets
                && h.metadata.labels == want.endpoints.metadata.labels
        });
        if !same {
            ops.push(Op::Write {
                res: &ENDPOINTS,
                ns,
                name: k.1.clone(),
                value: serde_json::to_value(&want.endpoints).expect("serializable"),
                exists: have_ep.is_some(),
            });
        }
    }
}

const RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(200);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes the controller issues concurrently.
const WRITES_IN_FLIGHT: usize = 64;

/// One write the controller decided on.
enum Op {
    Write {
        res: &'static Resource,
        ns: String,
        name: String,
        value: Value,
        exists: bool,
    },
    Delete {
        res: &'static Resource,
        ns: String,
        name: String,
    },
}

impl Op {
    fn resource(&self) -> &'static Resource {
        match self {
            Op::Write { res, .. } | Op::Delete { res, .. } => res,
        }
    }

    fn describe(&self) -> String {
        match self {
            Op::Write { res, ns, name, .. } | Op::Delete { res, ns, name } => {
                format!("{}/{ns}/{name}", res.plural)
            }
        }
    }

    /// The stored (or deleted) object, or `None` when the cache was stale and the watch will
    /// bring the truth for another pass.
    async fn run(&self, reg: &Registry) -> Result<Option<Value>> {
        let opts = WriteOptions::by(MANAGER);
        let result = match self {
            Op::Write {
                res,
                ns,
                name,
                value,
                exists: true,
            } => reg
                .update(res, Some(ns), name, value.clone(), &opts)
                .await
                .map(|w| w.object),
            Op::Write {
                res,
                ns,
                value,
                exists: false,
                ..
            } => reg
                .create(res, Some(ns), value.clone(), &opts)
                .await
                .map(|w| w.object),
            Op::Delete { res, ns, name } => reg
                .delete(res, Some(ns), name, &DeleteOptions::default())
                .await
                .map(|d| d.object),
        };
        match result {
            Ok(v) => Ok(Some(v)),
            Err(
                ApiError::AlreadyExists { .. }
                | ApiError::NotFound { .. }
                | ApiError::Conflict { .. },
            ) => Ok(None),
            // The namespace is going away.
            Err(ApiError::Forbidden(_) | ApiError::Denied { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
