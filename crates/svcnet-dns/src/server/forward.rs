//! Forwarding names outside the cluster's zones to upstream resolvers, with a small reply
//! cache in front.
//!
//! Queries go to the upstreams over UDP, round robin, one try each (at most
//! [`MAX_ATTEMPTS`]) with a [`UPSTREAM_TIMEOUT`] per try. A query that came over TCP and whose
//! UDP reply is truncated is asked again over TCP to the same upstream, so UDP-only and
//! TCP-capable upstreams both work. Each try uses a fresh connected socket and a random
//! message ID, so a spoofed reply has to guess both the port and the ID.
//!
//! Replies are cached by (lowercased name, type, class) for the smallest TTL of their answer
//! and authority records (negative answers: the SOA's TTL or minimum, whichever is smaller),
//! capped at [`MAX_CACHE_TTL`]; an upstream SERVFAIL is cached for [`SERVFAIL_TTL`], a
//! truncated reply never. A cache hit gets the new query's ID, question spelling, RD and CD
//! bits, and TTLs lowered by the entry's age.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout};

use super::metrics::DnsMetrics;
use crate::answer::servfail;
use crate::wire::{HEADER_LEN, Query, count, rcode, rtype, skip_name, skip_record};

/// How long one upstream has to answer before the next is tried.
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstreams tried per query (each at most once).
pub(crate) const MAX_ATTEMPTS: usize = 3;
/// The longest a reply stays cached, whatever its TTL.
pub(crate) const MAX_CACHE_TTL: u32 = 30;
/// How long an upstream SERVFAIL is cached.
pub(crate) const SERVFAIL_TTL: u32 = 5;
/// Entries kept (CoreDNS's cache holds 9984).
pub(crate) const CACHE_CAPACITY: usize = 10_000;

/// Sends queries upstream and caches the replies.
pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    upstream_names: Vec<String>,
    next: AtomicUsize,
    cache: ReplyCache,
    metrics: Arc<DnsMetrics>,
}

impl Forwarder {
    /// `None` when there is nothing to forward to.
    pub(crate) fn new(upstreams: Vec<SocketAddr>, metrics: Arc<DnsMetrics>) -> Option<Self> {
        if upstreams.is_empty() {
            return None;
        }
        Some(Forwarder {
            upstream_names: upstreams.iter().map(ToString::to_string).collect(),
            next: AtomicUsize::new(rand::random::<u32>() as usize),
            cache: ReplyCache::new(CACHE_CAPACITY),
            upstreams,
            metrics,
        })
    }

    /// The reply to a query the index said to forward: from the cache, from an upstream, or
    /// SERVFAIL when every upstream failed. `max_udp` is `Some(server buffer)` for a UDP
    /// client (the reply is emptied with TC set if it does not fit the client's limit) and
    /// `None` for TCP. `None` means send nothing.
    pub(crate) async fn resolve(&self, query: &[u8], max_udp: Option<usize>) -> Option<Vec<u8>> {
        let Ok(q) = Query::parse(query) else {
            return servfail(query);
        };
        let limit = q.reply_limit(max_udp);
        let key = CacheKey::of(&q);
        let now = Instant::now();
        if let Some(hit) = self.cache.get(&key, now) {
            self.metrics.cache_hits.inc();
            return Some(for_client(hit.reply, &hit.shape, &q, hit.age, limit));
        }
        self.metrics.cache_misses.inc();

        let Some(reply) = self.exchange(query, max_udp.is_none()).await else {
            return servfail(query);
        };
        let Some(shape) = ReplyShape::inspect(&reply) else {
            // Our ID and question, but the records do not parse: relay it uncached.
            return Some(reply);
        };
        if let Some(ttl) = shape.cache_ttl {
            self.cache
                .insert(key, reply.clone(), shape.clone(), ttl, now);
        }
        Some(for_client(reply, &shape, &q, 0, limit))
    }

    /// Asks the upstreams in turn; the reply still carries our random ID.
    async fn exchange(&self, query: &[u8], client_tcp: bool) -> Option<Vec<u8>> {
        let mut sent = query.to_vec();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.upstreams.len();
        for i in 0..n.min(MAX_ATTEMPTS) {
            let at = (start + i) % n;
            let (upstream, name) = (self.upstreams[at], &self.upstream_names[at]);
            let id: u16 = rand::random();
            sent[..2].copy_from_slice(&id.to_be_bytes());
            self.metrics.forwarded(name);
            let mut result = timeout(UPSTREAM_TIMEOUT, exchange_udp(upstream, &sent)).await;
            if client_tcp && matches!(&result, Ok(Ok(r)) if r[2] & 0x02 != 0) {
                // The client can take the whole reply: ask again over TCP. An upstream that
                // does not do TCP leaves us with the truncated reply, which we relay.
                match timeout(UPSTREAM_TIMEOUT, exchange_tcp(upstream, &sent)).await {
                    Ok(Ok(full)) => result = Ok(Ok(full)),
                    Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "upstream TCP failed"),
                    Err(_) => tracing::debug!(%upstream, "upstream TCP timed out"),
                }
            }
            match result {
                Ok(Ok(mut reply)) => {
                    reply[..2].copy_from_slice(&query[..2]);
                    return Some(reply);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%upstream, error = %e, "upstream query failed");
                }
                Err(_) => tracing::debug!(%upstream, "upstream query timed out"),
            }
            self.metrics.forward_failed(name);
        }
        None
    }
}

async fn exchange_udp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        if is_reply_to(query, &buf[..n]) {
            // A copy of the reply's size, not the 64 KiB buffer (up to 1000 are in flight).
            return Ok(buf[..n].to_vec());
        }
    }
}

async fn exchange_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let len = u16::try_from(query.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    loop {
        let len = usize::from(stream.read_u16().await?);
        let mut reply = vec![0u8; len];
        stream.read_exact(&mut reply).await?;
        if is_reply_to(query, &reply) {
            return Ok(reply);
        }
    }
}

/// Whether `reply` answers `query`: same ID, a response, and the same question (or, for
/// errors, none at all).
fn is_reply_to(query: &[u8], reply: &[u8]) -> bool {
    if reply.len() < HEADER_LEN || reply[..2] != query[..2] || reply[2] & 0x80 == 0 {
        return false;
    }
    let Ok(q) = Query::parse(query) else {
        return false;
    };
    match count(reply, 4) {
        0 => reply[3] & 0x0f != 0,
        1 => reply
            .get(HEADER_LEN..q.question_end)
            .is_some_and(|r| r.eq_ignore_ascii_case(&query[HEADER_LEN..q.question_end])),
        _ => false,
    }
}

/// What the cache and the client adaptation need to know about a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplyShape {
    /// Where the TTL of each record (OPT excluded) sits.
    ttl_offsets: Vec<usize>,
    /// The OPT record, to strip for clients that did not use EDNS.
    opt: Option<Range<usize>>,
    /// How long the reply may be cached, if at all.
    cache_ttl: Option<u32>,
}

impl ReplyShape {
    /// Walks a reply's records; `None` when they do not parse.
    pub(crate) fn inspect(reply: &[u8]) -> Option<Self> {
        if reply.len() < HEADER_LEN {
            return None;
        }
        let qdcount = count(reply, 4);
        let mut pos = HEADER_LEN;
        for _ in 0..qdcount {
            pos = skip_name(reply, pos)? + 4;
            if pos > reply.len() {
                return None;
            }
        }
        let an = usize::from(count(reply, 6));
        let ns = usize::from(count(reply, 8));
        let ar = usize::from(count(reply, 10));
        let mut ttl_offsets = Vec::with_capacity(an + ns + ar);
        let mut opt = None;
        let mut min_ttl: Option<u32> = None;
        let mut negative_ttl: Option<u32> = None;
        for i in 0..an + ns + ar {
            let rr = skip_record(reply, pos)?;
            if rr.rtype == rtype::OPT {
                if i < an + ns || opt.is_some() {
                    return None;
                }
                opt = Some(pos..rr.end);
            } else {
                ttl_offsets.push(rr.name_end + 4);
                // RFC 2181 §8: a TTL with the top bit set counts as zero.
                let ttl = if rr.ttl > i32::MAX as u32 { 0 } else { rr.ttl };
                if i < an + ns {
                    min_ttl = Some(min_ttl.map_or(ttl, |m| m.min(ttl)));
                }
                // The SOA of a negative answer: its MINIMUM is the last field of its data.
                if (an..an + ns).contains(&i)
                    && rr.rtype == rtype::SOA
                    && rr.end >= rr.name_end + 10 + 22
                {
                    let m = &reply[rr.end - 4..rr.end];
                    let minimum = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
                    negative_ttl = Some(ttl.min(minimum));
                }
            }
            pos = rr.end;
        }
        let truncated = reply[2] & 0x02 != 0;
        let cache_ttl = match u16::from(reply[3] & 0x0f) {
            _ if truncated || qdcount != 1 => None,
            rcode::NOERROR if an > 0 => min_ttl,
            rcode::NOERROR | rcode::NXDOMAIN => negative_ttl.zip(min_ttl).map(|(n, m)| n.min(m)),
            rcode::SERVFAIL => Some(SERVFAIL_TTL),
            _ => None,
        };
        Some(ReplyShape {
            ttl_offsets,
            opt,
            cache_ttl: cache_ttl.map(|t| t.min(MAX_CACHE_TTL)).filter(|t| *t > 0),
        })
    }
}

/// Makes an upstream (or cached) reply the reply to `q`: its ID, its question's spelling, its
/// RD and CD bits, TTLs lowered by `age` seconds, no OPT record unless the client sent one,
/// and emptied with TC set when it exceeds `limit`.
pub(crate) fn for_client(
    mut reply: Vec<u8>,
    shape: &ReplyShape,
    q: &Query<'_>,
    age: u32,
    limit: usize,
) -> Vec<u8> {
    let packet = q.packet;
    reply[..2].copy_from_slice(&packet[..2]);
    let question = HEADER_LEN..q.question_end;
    if let Some(r) = reply.get_mut(question.clone())
        && r.eq_ignore_ascii_case(&packet[question.clone()])
    {
        r.copy_from_slice(&packet[question]);
    }
    reply[2] = (reply[2] & !0x01) | (packet[2] & 0x01);
    reply[3] = (reply[3] & !0x10) | (packet[3] & 0x10);
    if age > 0 {
        for &at in &shape.ttl_offsets {
            let t = &mut reply[at..at + 4];
            let ttl = u32::from_be_bytes([t[0], t[1], t[2], t[3]]).saturating_sub(age);
            t.copy_from_slice(&ttl.to_be_bytes());
        }
    }
    if q.edns.is_none()
        && let Some(opt) = shape.opt.clone()
    {
        reply.drain(opt);
        let ar = count(&reply, 10).saturating_sub(1);
        reply[10..12].copy_from_slice(&ar.to_be_bytes());
    }
    if reply.len() > limit {
        return q.truncated_reply(u16::from(reply[3] & 0x0f), false);
    }
    reply
}

/// The cache key: what makes two queries ask the same thing.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct CacheKey {
    name: Box<[u8]>,
    qtype: u16,
    qclass: u16,
}

impl CacheKey {
    pub(crate) fn of(q: &Query<'_>) -> Self {
        CacheKey {
            name: q.lname().into(),
            qtype: q.qtype,
            qclass: q.qclass,
        }
    }
}

struct CacheEntry {
    reply: Vec<u8>,
    shape: ReplyShape,
    stored: Instant,
    expires: Instant,
}

/// A cache hit: the stored reply and how old it is, in whole seconds.
pub(crate) struct CacheHit {
    pub(crate) reply: Vec<u8>,
    pub(crate) shape: ReplyShape,
    pub(crate) age: u32,
}

/// Replies by question, each until its TTL runs out. Bounded: when full, expired entries go
/// first, then an arbitrary tenth of the rest.
pub(crate) struct ReplyCache {
    capacity: usize,
    entries: Mutex<HashMap<CacheKey, CacheEntry>>,
}

impl ReplyCache {
    pub(crate) fn new(capacity: usize) -> Self {
        ReplyCache {
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, key: &CacheKey, now: Instant) -> Option<CacheHit> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key)?;
        if now >= entry.expires {
            entries.remove(key);
            return None;
        }
        Some(CacheHit {
            reply: entry.reply.clone(),
            shape: entry.shape.clone(),
            age: now.duration_since(entry.stored).as_secs() as u32,
        })
    }

    pub(crate) fn insert(
        &self,
        key: CacheKey,
        reply: Vec<u8>,
        shape: ReplyShape,
        ttl: u32,
        now: Instant,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.capacity {
                let evict: Vec<CacheKey> = entries
                    .keys()
                    .take(self.capacity.div_ceil(10))
                    .cloned()
                    .collect();
                for k in evict {
                    entries.remove(&k);
                }
            }
        }
        let expires = now + Duration::from_secs(u64::from(ttl));
        entries.insert(
            key,
            CacheEntry {
                reply,
                shape,
                stored: now,
                expires,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (wire form) of type A, with or without an OPT record.
    fn query(id: u16, name: &[u8], edns: bool) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
        p.extend_from_slice(name);
        p.extend_from_slice(&[0, 1, 0, 1]);
        if edns {
            p.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        }
        p
    }

    /// An upstream reply to `query`: `answers` A records with the given TTLs, an OPT record
    /// when the query had one.
    fn reply(query: &[u8], rcode: u8, ttls: &[u32], soa: Option<(u32, u32)>) -> Vec<u8> {
        let q = Query::parse(query).unwrap();
        let mut r = query[..q.question_end].to_vec();
        r[2] = 0x81;
        r[3] = 0x80 | rcode;
        r[6..8].copy_from_slice(&(ttls.len() as u16).to_be_bytes());
        r[8..10].copy_from_slice(&u16::from(soa.is_some()).to_be_bytes());
        r[10..12].copy_from_slice(&u16::from(q.edns.is_some()).to_be_bytes());
        for (i, ttl) in ttls.iter().enumerate() {
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            r.extend_from_slice(&ttl.to_be_bytes());
            r.extend_from_slice(&[0, 4, 192, 0, 2, i as u8]);
        }
        if let Some((ttl, minimum)) = soa {
            r.extend_from_slice(&[0xc0, 12, 0, 6, 0, 1]);
            r.extend_from_slice(&ttl.to_be_bytes());
            r.extend_from_slice(&[0, 22, 0, 0]);
            for v in [1u32, 2, 3, 4, minimum] {
                r.extend_from_slice(&v.to_be_bytes());
            }
        }
        if q.edns.is_some() {
            r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        r
    }

    const NAME: &[u8] = b"\x07example\x04test\x00";

    #[test]
    fn cache_ttl_rules() {
        let q = query(1, NAME, false);
        let ttl = |r: Vec<u8>| ReplyShape::inspect(&r).unwrap().cache_ttl;
        assert_eq!(ttl(reply(&q, 0, &[60, 20], None)), Some(20));
        assert_eq!(ttl(reply(&q, 0, &[3600], None)), Some(MAX_CACHE_TTL));
        assert_eq!(ttl(reply(&q, 0, &[0], None)), None);
        // Negative answers: the SOA's TTL or minimum, whichever is smaller.
        assert_eq!(ttl(reply(&q, 3, &[], Some((900, 7)))), Some(7));
        assert_eq!(ttl(reply(&q, 0, &[], Some((4, 900)))), Some(4));
        assert_eq!(ttl(reply(&q, 3, &[], None)), None);
        assert_eq!(ttl(reply(&q, 2, &[], None)), Some(SERVFAIL_TTL));
        assert_eq!(ttl(reply(&q, 5, &[], None)), None);
        let mut truncated = reply(&q, 0, &[60], None);
        truncated[2] |= 0x02;
        assert_eq!(ttl(truncated), None);
        // A TTL with the top bit set is zero.
        assert_eq!(ttl(reply(&q, 0, &[0x8000_0000], None)), None);
    }

    #[test]
    fn inspect_rejects_garbage() {
        let q = query(1, NAME, false);
        let r = reply(&q, 0, &[60], None);
        assert!(ReplyShape::inspect(&r[..r.len() - 1]).is_none());
        assert!(ReplyShape::inspect(&r[..5]).is_none());
    }

    #[test]
    fn hit_gets_new_id_spelling_flags_and_aged_ttls() {
        let first = query(0x1111, NAME, true);
        let stored = reply(&first, 0, &[30, 20], None);
        let shape = ReplyShape::inspect(&stored).unwrap();

        let mut second = query(0x2222, b"\x07ExAmPlE\x04TEST\x00", false);
        second[2] = 0x00; // RD off
        let q = Query::parse(&second).unwrap();
        let out = for_client(stored.clone(), &shape, &q, 12, 512);
        assert_eq!(&out[..2], &[0x22, 0x22]);
        assert_eq!(&out[12..q.question_end], &second[12..q.question_end]);
        assert_eq!(out[2] & 0x01, 0);
        // The OPT record is gone for a client without EDNS.
        assert_eq!(count(&out, 10), 0);
        assert_eq!(out.len(), stored.len() - 11);
        let shape2 = ReplyShape::inspect(&out).unwrap();
        let ttls: Vec<u32> = shape2
            .ttl_offsets
            .iter()
            .map(|&at| u32::from_be_bytes(out[at..at + 4].try_into().unwrap()))
            .collect();
        assert_eq!(ttls, vec![18, 8]);
    }

    #[test]
    fn oversized_reply_is_truncated_for_udp() {
        let q_bytes = query(7, NAME, false);
        let big = reply(&q_bytes, 0, &[60; 40], None);
        assert!(big.len() > 512);
        let shape = ReplyShape::inspect(&big).unwrap();
        let q = Query::parse(&q_bytes).unwrap();
        let out = for_client(big.clone(), &shape, &q, 0, 512);
        assert_eq!(out[2] & 0x02, 0x02);
        assert_eq!(count(&out, 6), 0);
        assert!(out.len() <= q_bytes.len());
        let out = for_client(big.clone(), &shape, &q, 0, 65535);
        assert_eq!(out.len(), big.len());
    }

    #[test]
    fn reply_matching() {
        let q = query(9, NAME, false);
        let r = reply(&q, 0, &[1], None);
        assert!(is_reply_to(&q, &r));
        let mut wrong_id = r.clone();
        wrong_id[1] = 8;
        assert!(!is_reply_to(&q, &wrong_id));
        let other = reply(&query(9, b"\x07example\x03org\x00", false), 0, &[1], None);
        assert!(!is_reply_to(&q, &other));
        assert!(!is_reply_to(&q, &q));
        let mut bare = r[..12].to_vec();
        bare[4..12].fill(0);
        assert!(!is_reply_to(&q, &bare));
        bare[3] |= 2;
        assert!(is_reply_to(&q, &bare));
    }

    #[test]
    fn cache_expires_and_is_bounded() {
        let cache = ReplyCache::new(20);
        let now = Instant::now();
        let q = query(1, NAME, false);
        let parsed = Query::parse(&q).unwrap();
        let r = reply(&q, 0, &[10], None);
        let shape = ReplyShape::inspect(&r).unwrap();
        cache.insert(CacheKey::of(&parsed), r.clone(), shape.clone(), 10, now);
        let hit = cache
            .get(&CacheKey::of(&parsed), now + Duration::from_millis(3500))
            .unwrap();
        assert_eq!(hit.age, 3);
        assert!(
            cache
                .get(&CacheKey::of(&parsed), now + Duration::from_secs(10))
                .is_none()
        );
        for i in 0..100u8 {
            let name = [&[1, b'a' + (i % 26), 1, b'0' + i / 26][..], b"\x00"].concat();
            let q = query(1, &name, false);
            let parsed = Query::parse(&q).unwrap();
            cache.insert(CacheKey::of(&parsed), r.clone(), shape.clone(), 10, now);
            assert!(cache.len() <= 20);
        }
    }
}
