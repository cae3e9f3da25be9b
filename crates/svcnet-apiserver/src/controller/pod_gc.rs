//! Finishes graceful Pod deletions whose grace period has passed. A node agent normally
//! does this once the containers stopped; without one the grace period is the bound.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::health::{ControllerState, Health};
use crate::kinds::PODS;
use crate::registry::{DeleteOptions, ListOptions, Registry};

pub(crate) const HEALTH_NAME: &str = "pod-gc";

/// Deletes (with a zero grace period) every Pod whose deletion is due; returns how many.
pub async fn reap_expired_pods(reg: &Registry) -> Result<usize> {
    let page = reg.list(&PODS, None, &ListOptions::default()).await?;
    let now = jiff::Timestamp::now();
    let mut reaped = 0;
    for raw in &page.items {
        let obj: serde_json::Value = serde_json::from_slice(raw)
            .map_err(|e| crate::error::ApiError::Internal(e.to_string()))?;
        let due = obj["metadata"]["deletionTimestamp"]
            .as_str()
            .and_then(|ts| ts.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t <= now);
        if !due {
            continue;
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let ns = obj["metadata"]["namespace"].as_str();
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match reg.delete(&PODS, ns, name, &opts).await {
            Ok(d) if d.removed => reaped += 1,
            Ok(_) | Err(crate::error::ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(reaped)
}

/// Runs the reaper once a second until the task is stopped.
pub async fn run(reg: Arc<Registry>, health: Arc<Health>) {
    health.register(HEALTH_NAME);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        match reap_expired_pods(&reg).await {
            Ok(_) => health.report(HEALTH_NAME, ControllerState::Synced),
            Err(e) => {
                tracing::warn!(error = %e, "pod reaper failed");
                health.report(HEALTH_NAME, ControllerState::Failing(e.to_string()));
            }
        }
    }
}
