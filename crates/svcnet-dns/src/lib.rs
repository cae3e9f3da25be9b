//! Cluster DNS for svcnet: the Kubernetes DNS-Based Service Discovery specification (schema
//! 1.1.0) answered the way CoreDNS's `kubernetes` plugin answers it.
//!
//! The answering core is pure, with no sockets and no clock; the [`server`] module is the IO
//! around it ([`DnsServer`], [`run`]): API watches, UDP and TCP, forwarding with a cache,
//! health and metrics.
//!
//! [`Index::build`] turns one snapshot of Services, EndpointSlices and Pods ([`IndexInput`])
//! into an immutable [`Index`] holding the wire bytes of every answer it can give, computed
//! once. [`answer`] takes a query packet and returns an [`Answer`]: reply bytes, "forward this
//! upstream" for names outside the cluster's zones, or "drop". The server swaps in a new
//! [`Index`] after each change, starts with [`Index::empty_not_synced`] (SERVFAIL for cluster
//! names until the first sync) and uses [`servfail`] when forwarding fails and [`refused`]
//! when it does not forward.
//!
//! Records served, with the configured TTL on all of them:
//! - `<svc>.<ns>.svc.<zone>`: A/AAAA of the cluster IPs; for a headless Service the ready
//!   endpoints (NXDOMAIN when there are none); a CNAME for an ExternalName Service, followed
//!   inside the zone.
//! - `<hostname>.<svc>.<ns>.svc.<zone>`: a headless Service's endpoints (hostname, else the
//!   address with `.`/`:` as `-`).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV per named port (and all of them at the
//!   Service name), priority 0, weight ⌊100/records⌋, addresses in the additional section.
//! - PTR in `in-addr.arpa` / `ip6.arpa` for cluster IPs and headless endpoints.
//! - `<a-b-c-d>.<ns>.pod.<zone>` per [`PodsMode`].
//! - `dns-version.<zone>` TXT, SOA and NS at the apex; NXDOMAIN and NODATA carry the SOA.

mod answer;
mod index;
mod model;
mod names;
pub mod server;
mod template;
mod wire;
mod zone;

pub use answer::{Answer, answer, refused, servfail};
pub use index::{Error, Index, IndexInput, PodsMode, Result};
pub use server::{DnsConfig, DnsServer, ServerError, read_resolv_conf, run};
