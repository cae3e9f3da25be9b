//! Prometheus metrics under kube-proxy's names, and the health state behind `/healthz`.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct ProxyMetrics {
    registry: Registry,
    pub sync_duration: Histogram,
    pub last_sync: Gauge<f64, AtomicU64>,
    pub programming_duration: Histogram,
    pub endpoint_changes: Counter,
    pub service_changes: Counter,
    pub sync_failures: Counter,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    last_ok: Option<Instant>,
    /// The oldest change not yet programmed.
    pending_since: Option<Instant>,
}

impl ProxyMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let sync_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let last_sync = Gauge::<f64, AtomicU64>::default();
        let programming_duration = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        let endpoint_changes = Counter::default();
        let service_changes = Counter::default();
        let sync_failures = Counter::default();
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            last_sync.clone(),
        );
        registry.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            programming_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules EndpointSlice changes",
            endpoint_changes.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            service_changes.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_failures",
            "Cumulative failed proxy rule syncs",
            sync_failures.clone(),
        );
        Self {
            registry,
            sync_duration,
            last_sync,
            programming_duration,
            endpoint_changes,
            service_changes,
            sync_failures,
            health: Mutex::default(),
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn change_queued(&self, now: Instant) {
        self.health
            .lock()
            .expect("health lock")
            .pending_since
            .get_or_insert(now);
    }

    pub fn synced(&self, took: Duration, now: Instant) {
        self.sync_duration.observe(took.as_secs_f64());
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.last_sync.set(wall.as_secs_f64());
        let mut h = self.health.lock().expect("health lock");
        h.last_ok = Some(now);
        h.pending_since = None;
    }

    /// kube-proxy's rule: healthy once synced, unless a change has waited longer than
    /// `allowed` without being programmed.
    pub fn healthy(&self, now: Instant, allowed: Duration) -> bool {
        let h = self.health.lock().expect("health lock");
        h.last_ok.is_some()
            && h.pending_since
                .is_none_or(|p| now.duration_since(p) <= allowed)
    }
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_health() {
        let m = ProxyMetrics::new();
        let t0 = Instant::now();
        assert!(
            !m.healthy(t0, Duration::from_secs(1)),
            "not healthy before the first sync"
        );
        m.synced(Duration::from_millis(3), t0);
        assert!(m.healthy(t0, Duration::from_secs(1)));
        m.change_queued(t0);
        assert!(m.healthy(t0 + Duration::from_millis(500), Duration::from_secs(1)));
        assert!(!m.healthy(t0 + Duration::from_secs(2), Duration::from_secs(1)));
        let text = m.encode();
        for name in [
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
            "kubeproxy_network_programming_duration_seconds",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
