//! The DNS server's Prometheus metrics, in one explicit registry served at `/metrics`.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::wire::{HEADER_LEN, rtype, skip_name};

/// The transport a query came over.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    proto: &'static str,
    qtype: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

pub(crate) struct DnsMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    dropped: Counter,
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
    forward_requests: Family<UpstreamLabels, Counter>,
    forward_failures: Family<UpstreamLabels, Counter>,
    pub(crate) forward_refused: Counter,
    pub(crate) index_rebuilds: Counter,
    index_build: Histogram,
    udp_batch: Histogram,
}

impl DnsMetrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // 25 µs to about 1.6 s: in-zone answers take microseconds, forwarded ones milliseconds.
        let duration = Histogram::new(exponential_buckets(0.000_025, 2.0, 17));
        let dropped = Counter::default();
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let forward_requests = Family::<UpstreamLabels, Counter>::default();
        let forward_failures = Family::<UpstreamLabels, Counter>::default();
        let forward_refused = Counter::default();
        let index_rebuilds = Counter::default();
        let index_build = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        // 1, 2, 4, … 64: the batch limit of one receive call.
        let udp_batch = Histogram::new(exponential_buckets(1.0, 2.0, 7));
        registry.register(
            "svcnet_dns_requests",
            "Queries answered, by transport, query type and response code",
            requests.clone(),
        );
        registry.register(
            "svcnet_dns_request_duration_seconds",
            "Time from receiving a query to sending its reply",
            duration.clone(),
        );
        registry.register(
            "svcnet_dns_dropped",
            "Packets received and not answered (responses, runts)",
            dropped.clone(),
        );
        registry.register(
            "svcnet_dns_cache_hits",
            "Forwarded names answered from the reply cache",
            cache_hits.clone(),
        );
        registry.register(
            "svcnet_dns_cache_misses",
            "Forwarded names not found in the reply cache",
            cache_misses.clone(),
        );
        registry.register(
            "svcnet_dns_forward_requests",
            "Queries sent to an upstream resolver",
            forward_requests.clone(),
        );
        registry.register(
            "svcnet_dns_forward_failures",
            "Queries to an upstream resolver that timed out or failed",
            forward_failures.clone(),
        );
        registry.register(
            "svcnet_dns_forward_refused",
            "Queries refused because too many forwarded queries were in flight",
            forward_refused.clone(),
        );
        registry.register(
            "svcnet_dns_index_rebuilds",
            "Rebuilds of the answer index after API changes",
            index_rebuilds.clone(),
        );
        registry.register(
            "svcnet_dns_index_build_seconds",
            "Time to rebuild the answer index",
            index_build.clone(),
        );
        registry.register(
            "svcnet_dns_udp_batch_size",
            "UDP datagrams taken from the socket per receive call (recvmmsg)",
            udp_batch.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            dropped,
            cache_hits,
            cache_misses,
            forward_requests,
            forward_failures,
            forward_refused,
            index_rebuilds,
            index_build,
            udp_batch,
        }
    }

    /// The registry in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts one reply (for callers without a [`RequestCounters`] cache).
    pub(crate) fn replied(&self, proto: Proto, query: &[u8], reply: &[u8], took: Duration) {
        let labels = request_labels(proto, query, reply);
        self.requests.get_or_create(&labels).inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub(crate) fn dropped(&self) {
        self.dropped.inc();
    }

    pub(crate) fn forwarded(&self, upstream: &str) {
        self.forward_requests
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    pub(crate) fn forward_failed(&self, upstream: &str) {
        self.forward_failures
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    pub(crate) fn udp_batch(&self, datagrams: usize) {
        self.udp_batch.observe(datagrams as f64);
    }

    pub(crate) fn index_built(&self, took: Duration) {
        self.index_rebuilds.inc();
        self.index_build.observe(took.as_secs_f64());
    }
}

/// One worker's handles to the request counters, so the hot path does not take the family's
/// lock for every reply.
#[derive(Default)]
pub(crate) struct RequestCounters {
    handles: HashMap<RequestLabels, Counter>,
}

impl RequestCounters {
    pub(crate) fn replied(
        &mut self,
        metrics: &DnsMetrics,
        proto: Proto,
        query: &[u8],
        reply: &[u8],
        took: Duration,
    ) {
        let labels = request_labels(proto, query, reply);
        match self.handles.get(&labels) {
            Some(counter) => {
                counter.inc();
            }
            None => {
                let counter = metrics.requests.get_or_create_owned(&labels);
                counter.inc();
                self.handles.insert(labels, counter);
            }
        }
        metrics.duration.observe(took.as_secs_f64());
    }
}

fn request_labels(proto: Proto, query: &[u8], reply: &[u8]) -> RequestLabels {
    RequestLabels {
        proto: proto.as_str(),
        qtype: qtype_name(question_type(query)),
        rcode: rcode_name(reply.get(3).map_or(0, |b| b & 0x0f)),
    }
}

/// The type of a packet's first question, if it has one.
fn question_type(packet: &[u8]) -> Option<u16> {
    if packet.get(4..6)? == [0, 0] {
        return None;
    }
    let end = skip_name(packet, HEADER_LEN)?;
    let t = packet.get(end..end + 2)?;
    Some(u16::from_be_bytes([t[0], t[1]]))
}

fn qtype_name(t: Option<u16>) -> &'static str {
    match t {
        None => "none",
        Some(rtype::A) => "A",
        Some(rtype::NS) => "NS",
        Some(rtype::CNAME) => "CNAME",
        Some(rtype::SOA) => "SOA",
        Some(rtype::PTR) => "PTR",
        Some(15) => "MX",
        Some(rtype::TXT) => "TXT",
        Some(rtype::AAAA) => "AAAA",
        Some(rtype::SRV) => "SRV",
        Some(64) => "SVCB",
        Some(65) => "HTTPS",
        Some(rtype::ANY) => "ANY",
        Some(_) => "other",
    }
}

fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_packets() {
        let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x00\x00\x21\x00\x01";
        let mut reply = query.to_vec();
        reply[2] |= 0x80;
        reply[3] = 0x83;
        let l = request_labels(Proto::Tcp, query, &reply);
        assert_eq!((l.proto, l.qtype, l.rcode), ("tcp", "SRV", "NXDOMAIN"));
        assert_eq!(question_type(&query[..12]), None);
        assert_eq!(question_type(&query[..14]), None);
    }

    #[test]
    fn encodes() {
        let m = DnsMetrics::new();
        let mut c = RequestCounters::default();
        let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01";
        c.replied(&m, Proto::Udp, query, query, Duration::from_micros(30));
        c.replied(&m, Proto::Udp, query, query, Duration::from_micros(30));
        let text = m.encode();
        assert!(
            text.contains(r#"svcnet_dns_requests_total{proto="udp",qtype="A",rcode="NOERROR"} 2"#),
            "{text}"
        );
        assert!(text.contains("svcnet_dns_request_duration_seconds_count 2"));
    }
}
