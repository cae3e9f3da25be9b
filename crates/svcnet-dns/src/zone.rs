//! The cluster zone as DNS data: which owner names exist and what records each one has, per the
//! Kubernetes DNS specification (schema 1.1.0) and CoreDNS's reading of it; then the answer
//! templates for every (name, type) a client can ask about.
//!
//! Owner names here are lowercase and without the trailing dot. Pod names
//! (`<a-b-c-d>.<ns>.pod.<zone>`) are not listed: they are answered from the query name itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};

use crate::model::{NamedPort, ServiceKind, ServiceRecord, SliceRecord};
use crate::names::{NameTable, NameTableBuilder};
use crate::template::{Sections, Template};
use crate::wire::{rcode, rtype};

/// The DNS schema version served at `dns-version.<zone>`.
pub(crate) const SCHEMA_VERSION: &str = "1.1.0";
/// How many CNAMEs an answer follows inside the zone before giving up (loops end sooner).
const MAX_CHASE: usize = 8;
/// The Service whose cluster IPs serve as glue for `ns.dns.<zone>`, as kubeadm names it.
const DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");
/// Types prepared for a CNAME owner; any other type gets the owner's fallback template.
const CHASED_TYPES: [u16; 7] = [
    rtype::A,
    rtype::AAAA,
    rtype::SRV,
    rtype::PTR,
    rtype::TXT,
    rtype::NS,
    rtype::SOA,
];
/// Type 0 is reserved, so no owner has records of it: resolving it yields only CNAMEs.
const NO_TYPE: u16 = 0;

/// One record of an owner name. The variant order is the order of types in an ANY answer.
///
/// Targets are shared: a ClusterIP Service's name is the target of its SRV and PTR records.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rec {
    /// SOA and NS: the zone apex.
    Apex,
    Txt(&'static str),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Rc<str>),
    Ptr(Rc<str>),
    /// (target, port)
    Srv(Rc<str>, u16),
}

/// The records of one owner name; sorted and without duplicates once the zone is built.
///
/// One vector of records rather than a set per type: the zone exists only while an index is
/// built, but at 10,000 Services a node with a `BTreeSet` per type (most of them empty, the
/// rest holding one element in an 11-slot tree leaf) took ~25 MB of the build's peak.
#[derive(Debug, Default)]
struct Node(Vec<Rec>);

impl Node {
    fn add(&mut self, rec: Rec) {
        // A name has one CNAME: the last one set.
        if matches!(rec, Rec::Cname(_)) {
            self.0.retain(|r| !matches!(r, Rec::Cname(_)));
        }
        // Most names have one or two records: grow from one instead of the default four.
        if self.0.len() == self.0.capacity() {
            self.0.reserve_exact(self.0.len().max(1));
        }
        self.0.push(rec);
    }

    fn finish(&mut self) {
        self.0.sort_unstable();
        self.0.dedup();
    }

    fn is_apex(&self) -> bool {
        self.0.first() == Some(&Rec::Apex)
    }

    fn txt(&self) -> Option<&'static str> {
        self.0.iter().find_map(|r| match r {
            Rec::Txt(t) => Some(*t),
            _ => None,
        })
    }

    fn a(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.0.iter().filter_map(|r| match r {
            Rec::A(ip) => Some(*ip),
            _ => None,
        })
    }

    fn aaaa(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.0.iter().filter_map(|r| match r {
            Rec::Aaaa(ip) => Some(*ip),
            _ => None,
        })
    }

    fn cname(&self) -> Option<&str> {
        self.0.iter().find_map(|r| match r {
            Rec::Cname(t) => Some(&**t),
            _ => None,
        })
    }

    fn ptr(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().filter_map(|r| match r {
            Rec::Ptr(t) => Some(&**t),
            _ => None,
        })
    }

    fn srv(&self) -> impl Iterator<Item = (&str, u16)> + '_ {
        self.0.iter().filter_map(|r| match r {
            Rec::Srv(t, port) => Some((&**t, *port)),
            _ => None,
        })
    }

    fn types(&self) -> Vec<u16> {
        let mut types = Vec::new();
        for r in &self.0 {
            let of = match r {
                Rec::Apex => &[rtype::SOA, rtype::NS][..],
                Rec::Txt(_) => &[rtype::TXT],
                Rec::A(_) => &[rtype::A],
                Rec::Aaaa(_) => &[rtype::AAAA],
                Rec::Cname(_) => &[rtype::CNAME],
                Rec::Ptr(_) => &[rtype::PTR],
                Rec::Srv(..) => &[rtype::SRV],
            };
            if types.last() != of.last() {
                types.extend_from_slice(of);
            }
        }
        types
    }
}

/// All owner names of the cluster zone and its reverse zones, with their records.
pub(crate) struct ZoneData {
    zone: String,
    ttl: u32,
    serial: u32,
    nodes: BTreeMap<Box<str>, Node>,
}

/// The objects the zone is built from.
pub(crate) struct Objects<'a> {
    pub(crate) services: &'a [&'a ServiceRecord],
    pub(crate) slices: &'a [&'a SliceRecord],
}

impl ZoneData {
    pub(crate) fn build(zone: &str, ttl: u32, serial: u32, objects: &Objects<'_>) -> Self {
        let mut z = ZoneData {
            zone: zone.to_owned(),
            ttl,
            serial,
            nodes: BTreeMap::new(),
        };
        z.node(zone).add(Rec::Apex);
        z.node(&format!("dns-version.{zone}"))
            .add(Rec::Txt(SCHEMA_VERSION));
        z.node(&format!("svc.{zone}"));
        z.node(&format!("pod.{zone}"));

        let mut slices: HashMap<(&str, &str), Vec<&SliceRecord>> = HashMap::new();
        for slice in objects.slices {
            if let (Some(ns), Some(svc)) = (slice.namespace.as_deref(), slice.service.as_deref()) {
                slices.entry((ns, svc)).or_default().push(slice);
            }
        }

        for svc in objects.services {
            let (Some(name), Some(ns)) = (svc.name.as_deref(), svc.namespace.as_deref()) else {
                continue;
            };
            if matches!(svc.kind, ServiceKind::NoSpec) {
                continue;
            }
            z.node(&format!("{ns}.svc.{zone}").to_ascii_lowercase());
            let base = format!("{name}.{ns}.svc.{zone}").to_ascii_lowercase();
            match &svc.kind {
                ServiceKind::NoSpec => {}
                ServiceKind::ExternalName(target) => z.add_external_name(base, target.as_deref()),
                ServiceKind::Headless { publish_not_ready } => {
                    let own = slices.get(&(ns, name)).map_or(&[][..], Vec::as_slice);
                    z.add_headless(&base, *publish_not_ready, own);
                }
                ServiceKind::ClusterIp => z.add_cluster_ip(&base, &svc.cluster_ips, &svc.ports),
            }
        }

        if let Some(svc) = objects.services.iter().find(|s| {
            s.namespace.as_deref() == Some(DNS_SERVICE.0)
                && s.name.as_deref() == Some(DNS_SERVICE.1)
        }) {
            let ns_name = format!("ns.dns.{zone}");
            for ip in &svc.cluster_ips {
                z.add_ip(&ns_name, *ip);
            }
        }

        z.add_empty_non_terminals();
        for node in z.nodes.values_mut() {
            node.finish();
        }
        z
    }

    /// The node of `name`, added if missing (only then is the name copied).
    fn node(&mut self, name: &str) -> &mut Node {
        if !self.nodes.contains_key(name) {
            self.nodes.insert(name.into(), Node::default());
        }
        self.nodes.get_mut(name).expect("inserted above")
    }

    fn add_ip(&mut self, name: &str, ip: IpAddr) {
        self.node(name).add(match ip {
            IpAddr::V4(v4) => Rec::A(v4),
            IpAddr::V6(v6) => Rec::Aaaa(v6),
        });
    }

    fn add_external_name(&mut self, base: String, external_name: Option<&str>) {
        let Some(target) = external_name
            .map(|t| t.trim_end_matches('.'))
            .filter(|t| !t.is_empty())
        else {
            return;
        };
        // CoreDNS answers nothing for an ExternalName that is an IP address.
        if target.parse::<IpAddr>().is_ok() || dns_name(target).is_none() {
            return;
        }
        self.node(&base).add(Rec::Cname(target.into()));
    }

    fn add_cluster_ip(&mut self, base: &str, ips: &[IpAddr], ports: &[NamedPort]) {
        if ips.is_empty() {
            return;
        }
        let target: Rc<str> = base.into();
        for ip in ips {
            self.add_ip(base, *ip);
            self.node(&reverse_name(*ip)).add(Rec::Ptr(target.clone()));
        }
        for p in ports {
            let srv_name = format!("{}.{base}", p.labels);
            let srv = Rec::Srv(target.clone(), p.port);
            self.node(&srv_name).add(srv.clone());
            self.node(base).add(srv);
        }
    }

    fn add_headless(&mut self, base: &str, publish_not_ready: bool, slices: &[&SliceRecord]) {
        for slice in slices {
            for ep in &slice.endpoints {
                if !ep.ready && !publish_not_ready {
                    continue;
                }
                for &ip in &ep.addresses {
                    let host = ep
                        .hostname
                        .as_deref()
                        .filter(|h| !h.is_empty() && !h.contains('.'))
                        .map_or_else(|| dashed(ip), str::to_ascii_lowercase);
                    let ep_name = format!("{host}.{base}");
                    let target: Rc<str> = ep_name.as_str().into();
                    self.add_ip(base, ip);
                    self.add_ip(&ep_name, ip);
                    self.node(&reverse_name(ip)).add(Rec::Ptr(target.clone()));
                    for p in &slice.ports {
                        let srv_name = format!("{}.{base}", p.labels);
                        let srv = Rec::Srv(target.clone(), p.port);
                        self.node(&srv_name).add(srv.clone());
                        self.node(base).add(srv.clone());
                        self.node(&ep_name).add(srv);
                    }
                }
            }
        }
    }

    /// Every ancestor of an in-zone name exists (RFC 8020: NXDOMAIN means nothing below).
    fn add_empty_non_terminals(&mut self) {
        let suffix = format!(".{}", self.zone);
        let mut missing = Vec::new();
        for name in self.nodes.keys() {
            let mut rest = &**name;
            while rest.ends_with(&suffix) {
                let Some((_, parent)) = rest.split_once('.') else {
                    break;
                };
                if parent.len() < self.zone.len() {
                    break;
                }
                if !self.nodes.contains_key(parent) {
                    missing.push(parent.to_owned());
                }
                rest = parent;
            }
        }
        for name in missing {
            self.node(&name);
        }
    }

    fn in_zone(&self, name: &str) -> bool {
        name == self.zone || is_below(name, &self.zone)
    }

    fn is_pod_name(&self, name: &str) -> bool {
        name.strip_suffix(self.zone.as_str())
            .is_some_and(|rest| rest.ends_with(".pod."))
    }

    // === answers ===

    /// The prepared answers of every owner name, keyed by lowercase wire name.
    pub(crate) fn entries(&self) -> NameTable {
        let mut out = NameTableBuilder::with_capacity(self.nodes.len());
        for (owner, node) in &self.nodes {
            let Some(qname) = dns_name(owner) else {
                tracing::debug!(name = %owner, "skipping a name that is not a valid DNS name");
                continue;
            };
            let key = wire_key(&qname);
            let mut templates = Vec::new();
            let mut fallback = None;
            let prepare = |qtype: u16, sections: Option<Sections>| {
                sections
                    .and_then(|s| Template::encode(&qname, &key, s))
                    .map(|t| (qtype, t))
            };
            if node.cname().is_some() {
                for qtype in CHASED_TYPES {
                    templates.extend(prepare(qtype, self.resolve(owner, qtype)));
                }
                for qtype in [rtype::CNAME, rtype::ANY] {
                    templates.extend(prepare(qtype, self.resolve(owner, rtype::CNAME)));
                }
                fallback = prepare(NO_TYPE, self.resolve(owner, NO_TYPE)).map(|(_, t)| t);
            } else {
                for qtype in node.types() {
                    templates.extend(prepare(qtype, self.resolve(owner, qtype)));
                }
                templates.extend(prepare(rtype::ANY, self.resolve(owner, rtype::ANY)));
            }
            if !out.push(&key, templates, fallback) {
                tracing::warn!(name = %owner, "skipping a name the index has no room for");
            }
        }
        out.finish()
    }

    /// The answer to `qtype` at `owner`, following CNAMEs inside the zone. `None` when the
    /// name has no such records (the caller answers NODATA).
    fn resolve(&self, owner: &str, qtype: u16) -> Option<Sections> {
        let node = self.nodes.get(owner)?;
        let Some(target) = node
            .cname()
            .filter(|_| qtype != rtype::CNAME && qtype != rtype::ANY)
        else {
            let (answers, additionals) = self.rrset(owner, node, qtype);
            return (!answers.is_empty()).then_some(Sections {
                answers,
                additionals,
                ..Sections::default()
            });
        };

        let mut s = Sections::default();
        s.answers.push(record(owner, self.ttl, cname(target)?)?);
        let mut seen = HashSet::from([owner.to_owned()]);
        let mut current = target.to_ascii_lowercase();
        loop {
            if !self.in_zone(&current)
                || self.is_pod_name(&current)
                || !seen.insert(current.clone())
                || seen.len() > MAX_CHASE
            {
                return Some(s);
            }
            let Some(next) = self.nodes.get(current.as_str()) else {
                s.rcode = rcode::NXDOMAIN;
                s.authorities.extend(self.soa());
                return Some(s);
            };
            if let Some(t) = next.cname() {
                s.answers.push(record(&current, self.ttl, cname(t)?)?);
                current = t.to_ascii_lowercase();
                continue;
            }
            let (answers, additionals) = self.rrset(&current, next, qtype);
            if answers.is_empty() {
                s.authorities.extend(self.soa());
            }
            s.answers.extend(answers);
            s.additionals = additionals;
            return Some(s);
        }
    }

    /// The records of one type at one owner, and the additional records that go with them.
    fn rrset(&self, owner: &str, node: &Node, qtype: u16) -> (Vec<Record>, Vec<Record>) {
        let ttl = self.ttl;
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let any = qtype == rtype::ANY;
        if node.is_apex() && (any || qtype == rtype::SOA) {
            answers.extend(self.soa());
        }
        if node.is_apex() && (any || qtype == rtype::NS) {
            let ns_name = format!("ns.dns.{}", self.zone);
            answers.extend(dns_name(&ns_name).and_then(|n| record(owner, ttl, RData::NS(NS(n)))));
            if !any {
                additionals.extend(self.addresses(&ns_name));
            }
        }
        if let Some(txt) = node.txt().filter(|_| any || qtype == rtype::TXT) {
            let data = RData::TXT(TXT::new(vec![txt.to_owned()]));
            answers.extend(record(owner, ttl, data));
        }
        if any || qtype == rtype::A {
            for ip in node.a() {
                answers.extend(record(owner, ttl, RData::A(A(ip))));
            }
        }
        if any || qtype == rtype::AAAA {
            for ip in node.aaaa() {
                answers.extend(record(owner, ttl, RData::AAAA(AAAA(ip))));
            }
        }
        if let Some(target) = node.cname().filter(|_| any || qtype == rtype::CNAME) {
            answers.extend(cname(target).and_then(|c| record(owner, ttl, c)));
        }
        if any || qtype == rtype::PTR {
            for target in node.ptr() {
                answers
                    .extend(dns_name(target).and_then(|n| record(owner, ttl, RData::PTR(PTR(n)))));
            }
        }
        let srv_count = node.srv().count();
        if (any || qtype == rtype::SRV) && srv_count > 0 {
            // CoreDNS: priority 0, weight floor(100 / number of records).
            let weight = u16::try_from(100 / srv_count).unwrap_or(0);
            let mut targets: Vec<&str> = Vec::new();
            for (target, port) in node.srv() {
                let Some(target_name) = dns_name(target) else {
                    continue;
                };
                let data = RData::SRV(SRV::new(0, weight, port, target_name));
                answers.extend(record(owner, ttl, data));
                if !targets.contains(&target) {
                    targets.push(target);
                }
            }
            if !any {
                for target in targets {
                    additionals.extend(self.addresses(target));
                }
            }
        }
        (answers, additionals)
    }

    fn addresses(&self, name: &str) -> Vec<Record> {
        let Some(node) = self.nodes.get(name) else {
            return Vec::new();
        };
        let v4 = node.a().map(|ip| RData::A(A(ip)));
        let v6 = node.aaaa().map(|ip| RData::AAAA(AAAA(ip)));
        v4.chain(v6)
            .filter_map(|data| record(name, self.ttl, data))
            .collect()
    }

    fn soa(&self) -> Option<Record> {
        let zone = &self.zone;
        let data = SOA::new(
            dns_name(&format!("ns.dns.{zone}"))?,
            dns_name(&format!("hostmaster.{zone}"))?,
            self.serial,
            7200,
            1800,
            86400,
            self.ttl,
        );
        record(zone, self.ttl, RData::SOA(data))
    }
}

fn record(owner: &str, ttl: u32, data: RData) -> Option<Record> {
    Some(Record::from_rdata(dns_name(owner)?, ttl, data))
}

fn cname(target: &str) -> Option<RData> {
    Some(RData::CNAME(CNAME(dns_name(target)?)))
}

/// Whether dotted `name` is strictly below `zone` (both lowercase, no trailing dot).
pub(crate) fn is_below(name: &str, zone: &str) -> bool {
    name.len() > zone.len()
        && name.ends_with(zone)
        && name.as_bytes()[name.len() - zone.len() - 1] == b'.'
}

/// An absolute hickory name from a dotted name; `None` if a label is empty or too long.
pub(crate) fn dns_name(name: &str) -> Option<Name> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return None;
    }
    let mut n = Name::from_labels(name.split('.').map(str::as_bytes)).ok()?;
    n.set_fqdn(true);
    Some(n)
}

/// The lowercase wire form of a name, the key the hot path looks up.
pub(crate) fn wire_key(name: &Name) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        key.push(label.len() as u8);
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key.push(0);
    key
}

/// An endpoint's name when it has no hostname: its IP with `.` or `:` turned into `-`.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The PTR owner of an address: `d.c.b.a.in-addr.arpa` or the ip6.arpa nibble form.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("10.96.0.10".parse().unwrap()),
            "10.0.96.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn dashed_names() {
        assert_eq!(dashed("10.0.0.5".parse().unwrap()), "10-0-0-5");
        assert_eq!(dashed("fd00::1".parse().unwrap()), "fd00--1");
    }

    #[test]
    fn wire_keys_are_lowercase() {
        let n = Name::from_ascii("Web.Default.svc.cluster.local.").unwrap();
        assert_eq!(
            wire_key(&n),
            b"\x03web\x07default\x03svc\x07cluster\x05local\x00".to_vec()
        );
        assert_eq!(dns_name("a..b"), None);
        assert!(dns_name("a.b.").unwrap().is_fqdn());
    }

    #[test]
    fn below() {
        assert!(is_below("a.cluster.local", "cluster.local"));
        assert!(!is_below("acluster.local", "cluster.local"));
        assert!(!is_below("cluster.local", "cluster.local"));
    }
}
