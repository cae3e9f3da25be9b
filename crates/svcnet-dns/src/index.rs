//! The immutable lookup index: one snapshot of Services, EndpointSlices and Pods turned into
//! prepared answers, plus what the hot path needs to answer names that are not prepared
//! (pod names, negative answers).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{PodRecord, Records, ServiceRecord, SliceRecord};
use crate::names::{NameEntry, NameTable, TemplateRef};
use crate::wire::{Query, class, rcode, rtype};
use crate::zone::{Objects, ZoneData, dns_name, is_below, wire_key};

const IN_ADDR_ARPA: &[u8] = b"\x07in-addr\x04arpa\x00";
const IP6_ARPA: &[u8] = b"\x03ip6\x04arpa\x00";

/// How `<a-b-c-d>.<ns>.pod.<zone>` names are answered (CoreDNS's `pods` option).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodsMode {
    /// Always NXDOMAIN.
    #[default]
    Disabled,
    /// Answer the address spelled in the name without checking it (kube-dns compatible).
    Insecure,
    /// Answer only if a Pod in that namespace has that address.
    Verified,
}

/// What an [`Index`] is built from: the full lists of objects as the watchers hold them.
#[derive(Clone, Copy, Debug)]
pub struct IndexInput<'a> {
    pub services: &'a [Service],
    pub slices: &'a [EndpointSlice],
    /// Only read in [`PodsMode::Verified`]; other modes may pass an empty list.
    pub pods: &'a [Pod],
    /// The cluster domain, for example `cluster.local` (a trailing dot is allowed).
    pub zone: &'a str,
    /// The TTL of every record, the SOA minimum included.
    pub ttl: u32,
    pub pods_mode: PodsMode,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid cluster domain {zone:?}: {reason}")]
    InvalidZone { zone: String, reason: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One immutable snapshot of the cluster's DNS data, read by [`crate::answer`].
///
/// The control side builds a new index after each change and swaps it in whole; the hot path
/// only reads.
pub struct Index {
    synced: bool,
    zone: String,
    zone_wire: Box<[u8]>,
    ttl: u32,
    serial: u32,
    pods_mode: PodsMode,
    names: NameTable,
    /// Pod addresses and their namespaces ([`PodsMode::Verified`] only).
    pod_ips: HashMap<IpAddr, Vec<Box<str>>>,
    /// Namespaces that have a Service or a Pod.
    namespaces: HashSet<Box<str>>,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("zone", &self.zone)
            .field("synced", &self.synced)
            .field("serial", &self.serial)
            .field("names", &self.names.len())
            .field("pods_mode", &self.pods_mode)
            .finish_non_exhaustive()
    }
}

/// How the hot path answers one query.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// Not a name of ours: the server forwards it upstream.
    Forward,
    /// A reply without records.
    Empty { rcode: u16 },
    /// A prepared answer.
    Template(TemplateRef<'a>),
    /// NXDOMAIN or NODATA, with the SOA of the zone that starts `zone_at` bytes into the name.
    Negative { rcode: u16, zone_at: usize },
    /// One address record owned by the question name (pod names).
    Address(IpAddr),
}

impl Index {
    /// Builds the index of one consistent snapshot.
    pub fn build(input: &IndexInput<'_>) -> Result<Self> {
        let services: Vec<ServiceRecord> = input.services.iter().map(ServiceRecord::new).collect();
        let slices: Vec<SliceRecord> = input.slices.iter().map(SliceRecord::new).collect();
        let pods: Vec<PodRecord> = input.pods.iter().map(PodRecord::new).collect();
        let records = Records {
            services: services.iter().collect(),
            slices: slices.iter().collect(),
            pods: pods.iter().collect(),
        };
        Self::from_records(&records, input.zone, input.ttl, input.pods_mode)
    }

    /// Builds the index of one consistent snapshot of records (the server's path: it keeps
    /// records, not objects).
    pub(crate) fn from_records(
        records: &Records<'_>,
        zone: &str,
        ttl: u32,
        pods_mode: PodsMode,
    ) -> Result<Self> {
        let (zone, zone_wire) = parse_zone(zone)?;
        let serial = serial(records);
        let objects = Objects {
            services: &records.services,
            slices: &records.slices,
        };
        let names = ZoneData::build(&zone, ttl, serial, &objects).entries();

        let mut pod_ips: HashMap<IpAddr, Vec<Box<str>>> = HashMap::new();
        let mut namespaces: HashSet<Box<str>> = HashSet::new();
        // Looked up before copying: most Services share a few namespaces.
        for svc in &records.services {
            if let Some(ns) = svc.namespace.as_deref()
                && !namespaces.contains(ns)
            {
                namespaces.insert(ns.into());
            }
        }
        for pod in &records.pods {
            let Some(ns) = pod.namespace.as_deref() else {
                continue;
            };
            if !namespaces.contains(ns) {
                namespaces.insert(ns.into());
            }
            if pods_mode != PodsMode::Verified {
                continue;
            }
            for &ip in &pod.ips {
                let list = pod_ips.entry(ip).or_default();
                if !list.iter().any(|n| &**n == ns) {
                    list.push(ns.into());
                }
            }
        }

        Ok(Index {
            synced: true,
            zone,
            zone_wire,
            ttl,
            serial,
            pods_mode,
            names,
            pod_ips,
            namespaces,
        })
    }

    /// The index before the first sync with the API: every query inside the cluster domain
    /// gets SERVFAIL (a client retries; an NXDOMAIN would be cached), everything else is
    /// forwarded.
    pub fn empty_not_synced(zone: &str) -> Result<Self> {
        let (zone, zone_wire) = parse_zone(zone)?;
        Ok(Index {
            synced: false,
            zone,
            zone_wire,
            ttl: 0,
            serial: 0,
            pods_mode: PodsMode::Disabled,
            names: NameTable::default(),
            pod_ips: HashMap::new(),
            namespaces: HashSet::new(),
        })
    }

    /// The cluster domain, lowercase, without the trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Whether this index holds synced data (see [`Index::empty_not_synced`]).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Whether this index answers for `name` (dotted, trailing dot optional, any case): names
    /// inside the cluster domain, and reverse names of addresses the index knows.
    pub fn is_cluster_name(&self, name: &str) -> bool {
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        if lower == self.zone || is_below(&lower, &self.zone) {
            return true;
        }
        dns_name(&lower).is_some_and(|n| self.names.contains(&wire_key(&n)))
    }

    pub(crate) fn ttl(&self) -> u32 {
        self.ttl
    }

    pub(crate) fn serial(&self) -> u32 {
        self.serial
    }

    pub(crate) fn lookup(&self, q: &Query<'_>) -> Lookup<'_> {
        if let Some(zone_at) = q.suffix_offset(&self.zone_wire) {
            if !self.synced {
                return Lookup::Empty {
                    rcode: rcode::SERVFAIL,
                };
            }
            if let Some(refusal) = refuse(q) {
                return refusal;
            }
            return match self.names.get(q.lname()) {
                Some(entry) => entry_answer(entry, q.qtype, zone_at),
                None => self.dynamic(q, zone_at),
            };
        }
        let reverse_at = q
            .suffix_offset(IN_ADDR_ARPA)
            .or_else(|| q.suffix_offset(IP6_ARPA));
        if let Some(zone_at) = reverse_at
            && let Some(entry) = self.names.get(q.lname())
        {
            return refuse(q).unwrap_or_else(|| entry_answer(entry, q.qtype, zone_at));
        }
        Lookup::Forward
    }

    /// Names inside the zone without a prepared answer: pod names, or nothing.
    fn dynamic(&self, q: &Query<'_>, zone_at: usize) -> Lookup<'_> {
        let nxdomain = Lookup::Negative {
            rcode: rcode::NXDOMAIN,
            zone_at,
        };
        let nodata = Lookup::Negative {
            rcode: rcode::NOERROR,
            zone_at,
        };
        // Labels in front of the zone.
        let n = q
            .label_starts()
            .iter()
            .take_while(|s| usize::from(**s) < zone_at)
            .count();
        if !(2..=3).contains(&n) || q.label(n - 1) != b"pod" {
            return nxdomain;
        }
        let ns = q.label(n - 2);
        let known_ns = std::str::from_utf8(ns).is_ok_and(|ns| self.namespaces.contains(ns));
        // No wildcards (CoreDNS ≥ 1.9): `*` and `any` are plain labels, and no namespace is
        // called `*`.
        let ns_ok = match self.pods_mode {
            PodsMode::Disabled => false,
            PodsMode::Insecure => ns != b"*" && (ns != b"any" || known_ns),
            PodsMode::Verified => known_ns,
        };
        if !ns_ok {
            return nxdomain;
        }
        if n == 2 {
            return nodata;
        }
        let Some(ip) = pod_address(q.label(0)) else {
            return nxdomain;
        };
        if self.pods_mode == PodsMode::Verified {
            let listed = self
                .pod_ips
                .get(&ip)
                .is_some_and(|nss| nss.iter().any(|n| n.as_bytes() == ns));
            if !listed {
                return nxdomain;
            }
        }
        match (q.qtype, ip) {
            (rtype::A, IpAddr::V4(_)) | (rtype::AAAA, IpAddr::V6(_)) | (rtype::ANY, _) => {
                Lookup::Address(ip)
            }
            _ => nodata,
        }
    }
}

fn entry_answer(entry: NameEntry<'_>, qtype: u16, zone_at: usize) -> Lookup<'_> {
    match entry.find(qtype) {
        Some(t) => Lookup::Template(t),
        None => Lookup::Negative {
            rcode: rcode::NOERROR,
            zone_at,
        },
    }
}

/// Queries for our names that we do not answer: other classes, zone transfers and other meta
/// types, OPT as a question.
fn refuse(q: &Query<'_>) -> Option<Lookup<'static>> {
    let rcode = if q.qtype == rtype::OPT {
        rcode::FORMERR
    } else if !matches!(q.qclass, class::IN | class::ANY) || (128..rtype::ANY).contains(&q.qtype) {
        rcode::REFUSED
    } else {
        return None;
    };
    Some(Lookup::Empty { rcode })
}

/// The address a pod label spells: `1-2-3-4`, or an IPv6 address with `:` as `-`
/// (CoreDNS's rule: three dashes and no `--` mean IPv4).
fn pod_address(label: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(label).ok()?;
    let dashes = s.bytes().filter(|b| *b == b'-').count();
    if dashes == 3 && !s.contains("--") {
        s.replace('-', ".")
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(IpAddr::V4)
    } else {
        s.replace('-', ":")
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6)
    }
}

/// The SOA serial: the newest resourceVersion in the snapshot (they grow with every write),
/// folded into 32 bits.
fn serial(records: &Records<'_>) -> u32 {
    let versions = records
        .services
        .iter()
        .map(|o| o.version)
        .chain(records.slices.iter().map(|o| o.version))
        .chain(records.pods.iter().map(|o| o.version))
        .flatten();
    let newest = versions.max().unwrap_or(1);
    (newest as u32).max(1)
}

/// Validates and normalises the cluster domain: lowercase, no trailing dot, and its wire form.
fn parse_zone(zone: &str) -> Result<(String, Box<[u8]>)> {
    let invalid = |reason| Error::InvalidZone {
        zone: zone.to_owned(),
        reason,
    };
    let lower = zone.trim_end_matches('.').to_ascii_lowercase();
    if lower.is_empty() {
        return Err(invalid("the root zone cannot be the cluster domain"));
    }
    if !lower
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(invalid(
            "only letters, digits, '-', '_' and '.' are allowed",
        ));
    }
    let name = dns_name(&lower).ok_or_else(|| invalid("empty or over-long label"))?;
    let wire = wire_key(&name);
    // Leave room for at least `<label>.<ns>.svc.` in front.
    if wire.len() > 200 {
        return Err(invalid("longer than 200 bytes"));
    }
    Ok((lower, wire.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses() {
        assert_eq!(pod_address(b"10-0-0-5"), Some("10.0.0.5".parse().unwrap()));
        assert_eq!(pod_address(b"fd00--5"), Some("fd00::5".parse().unwrap()));
        assert_eq!(
            pod_address(b"fd00-0-0-0-0-0-0-5"),
            Some("fd00::5".parse().unwrap())
        );
        assert_eq!(pod_address(b"10-0-0"), None);
        assert_eq!(pod_address(b"10-0-0-500"), None);
        assert_eq!(pod_address(b"web"), None);
    }

    /// The packed answers of a ClusterIP Service with one named port (four names: the
    /// Service, its SRV name, the `_tcp` name between them, the reverse name): a regression
    /// guard on the index's size. 671 bytes when written; the map of boxed templates it
    /// replaced took ~1,130.
    #[test]
    fn index_bytes_per_service() {
        use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

        let services: Vec<Service> = (0..2000u32)
            .map(|i| Service {
                metadata: ObjectMeta {
                    name: Some(format!("svc-{i:05}")),
                    namespace: Some("default".into()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    cluster_ip: Some(format!("10.96.{}.{}", i / 250, i % 250 + 1)),
                    ports: Some(vec![ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                status: None,
            })
            .collect();
        let index = Index::build(&IndexInput {
            services: &services,
            slices: &[],
            pods: &[],
            zone: "cluster.local",
            ttl: 5,
            pods_mode: PodsMode::Disabled,
        })
        .unwrap();
        assert!(index.names.len() > 4 * services.len());
        let per_service = index.names.allocated() / services.len();
        assert!(per_service < 800, "{per_service} bytes per Service");
    }

    #[test]
    fn zones() {
        assert_eq!(parse_zone("Cluster.Local.").unwrap().0, "cluster.local");
        assert!(parse_zone(".").is_err());
        assert!(parse_zone("a..b").is_err());
        assert!(parse_zone("a b").is_err());
    }
}
