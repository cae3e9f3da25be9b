//! The namespace controller: empties namespaces that are being deleted, then removes their
//! `kubernetes` finalizer through the `finalize` subresource, which lets the registry remove
//! them. It watches the namespaces, so deletions left unfinished by a previous run resume at
//! start.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::{ApiError, Result};
use crate::health::{ControllerState, Health};
use crate::kinds::{self, NAMESPACES, namespace::FINALIZER};
use crate::registry::{DeleteOptions, ListOptions, Registry, WriteOptions, decode};
use crate::resources::Subresource;

pub(crate) const HEALTH_NAME: &str = "namespace";
const MANAGER: &str = "namespace-controller";

pub struct NamespaceController {
    reg: Arc<Registry>,
    health: Arc<Health>,
    /// Namespaces being emptied now.
    busy: Arc<Mutex<HashSet<String>>>,
}

impl NamespaceController {
    pub fn new(reg: Arc<Registry>, health: Arc<Health>) -> Self {
        health.register(HEALTH_NAME);
        Self {
            reg,
            health,
            busy: Arc::default(),
        }
    }

    /// Runs until the store closes; restarts its watch after errors.
    pub async fn run(self) {
        loop {
            match self.run_once().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "namespace controller restarting");
                    self.health
                        .report(HEALTH_NAME, ControllerState::Failing(e.to_string()));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn run_once(&self) -> Result<()> {
        let page = self
            .reg
            .store()
            .list(&NAMESPACES.prefix(None), None, None, None)
            .await?;
        for kv in &page.items {
            self.consider(&decode(kv)?);
        }
        self.health.report(HEALTH_NAME, ControllerState::Synced);
        let mut events = self
            .reg
            .store()
            .watch(&NAMESPACES.prefix(None), page.revision)
            .await?;
        while let Some(ev) = events.next().await {
            let ev = ev?;
            if ev.kind == svcnet_store::EventType::Put {
                self.consider(&decode(&ev.kv)?);
            }
        }
        Ok(())
    }

    /// Starts emptying `ns` if it is being deleted and nobody is at it yet.
    fn consider(&self, ns: &Value) {
        if ns["status"]["phase"] != "Terminating" {
            return;
        }
        let name = ns["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !self.busy.lock().expect("busy lock").insert(name.clone()) {
            return;
        }
        let reg = self.reg.clone();
        let busy = self.busy.clone();
        tokio::spawn(async move {
            finish(&reg, &name).await;
            busy.lock().expect("busy lock").remove(&name);
        });
    }
}

/// Deletes everything in `ns`, retrying while objects remain (finalizers, failed deletes),
/// then finalizes it.
async fn finish(reg: &Registry, ns: &str) {
    let opts = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let mut pause = Duration::from_millis(100);
    loop {
        let mut left = 0;
        for res in kinds::resources().filter(|r| r.namespaced) {
            if let Err(e) = reg
                .delete_collection(res, Some(ns), &ListOptions::default(), &opts)
                .await
            {
                tracing::warn!(namespace = %ns, resource = res.plural, error = %e, "namespace cleanup failed");
            }
            match reg
                .store()
                .list(&res.prefix(Some(ns)), None, Some(1), None)
                .await
            {
                Ok(page) => left += page.items.len(),
                Err(_) => left += 1,
            }
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
    if let Err(e) = finalize(reg, ns).await {
        tracing::warn!(namespace = %ns, error = %e, "namespace finalize failed");
    }
}

/// Removes the `kubernetes` finalizer, as the namespace controller does through `finalize`.
async fn finalize(reg: &Registry, ns: &str) -> Result<()> {
    let mut obj = match reg.get(&NAMESPACES, None, ns).await {
        Ok(o) => o,
        Err(ApiError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let remaining: Vec<Value> = obj["spec"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f.as_str() != Some(FINALIZER))
        .cloned()
        .collect();
    obj["spec"]["finalizers"] = json!(remaining);
    // Unconditional: the finalizers are all this write changes.
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let opts = WriteOptions {
        subresource: Subresource::Finalize,
        ..WriteOptions::by(MANAGER)
    };
    match reg.update(&NAMESPACES, None, ns, obj, &opts).await {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
