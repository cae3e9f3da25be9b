//! Answering one query packet from an [`Index`]: the function the server calls per datagram
//! or TCP message.

use crate::index::{Index, Lookup};
use crate::wire::{Query, Reject, SOA_LEN, header_reply, rcode, write_address, write_soa};

/// What to do with one received packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// The name is not in the cluster's zones: forward the query upstream unchanged.
    Forward,
    /// Send nothing: not a query at all (too short, or a response).
    Drop,
}

/// Answers one query packet.
///
/// `max_udp` is the largest datagram the server sends (its buffer size): `Some` over UDP, where
/// the reply must also fit the client's limit (its EDNS payload size, at least 512; 512 without
/// EDNS) or it is sent emptied with TC set; `None` over TCP, where only the 65535-byte framing
/// limit applies.
///
/// The reply echoes the query's ID and question bytes (letter case included), copies RD and CD,
/// sets RA, sets AA on answers from the zones, and carries an OPT record when the query did.
/// Replies to malformed or refused queries are never longer than the query.
pub fn answer(index: &Index, query: &[u8], max_udp: Option<usize>) -> Answer {
    let q = match Query::parse(query) {
        Ok(q) => q,
        Err(Reject::Drop) => return Answer::Drop,
        Err(Reject::Header(rcode)) => return Answer::Reply(header_reply(query, rcode)),
    };
    if q.edns.is_some_and(|e| e.version != 0) {
        return Answer::Reply(q.empty_reply(rcode::BADVERS, false));
    }
    let limit = q.reply_limit(max_udp);
    let reply = match index.lookup(&q) {
        Lookup::Forward => return Answer::Forward,
        Lookup::Empty { rcode } => q.empty_reply(rcode, false),
        Lookup::Template(t) => q.reply_with(t.rcode, t.counts, t.bytes, limit),
        Lookup::Negative { rcode, zone_at } => {
            let mut soa = Vec::with_capacity(SOA_LEN);
            write_soa(&mut soa, zone_at, index.ttl(), index.serial());
            q.reply_with(rcode, [0, 1, 0], &soa, limit)
        }
        Lookup::Address(ip) => {
            let mut record = Vec::with_capacity(28);
            write_address(&mut record, ip, index.ttl());
            q.reply_with(rcode::NOERROR, [1, 0, 0], &record, limit)
        }
    };
    Answer::Reply(reply)
}

/// A SERVFAIL reply to `query`, for when forwarding it failed; `None` when the packet does not
/// deserve a reply at all. Never longer than the query.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    error_reply(query, rcode::SERVFAIL)
}

/// A REFUSED reply to `query`, for names outside the cluster's zones when the server does not
/// forward (authoritative only) or cannot take more forwarded queries; `None` when the packet
/// does not deserve a reply at all. Never longer than the query.
pub fn refused(query: &[u8]) -> Option<Vec<u8>> {
    error_reply(query, rcode::REFUSED)
}

/// A FORMERR reply to `query`, for a datagram too long for the server's buffer (it arrived
/// cut); `None` when the packet does not deserve a reply at all. Never longer than the query.
pub(crate) fn formerr(query: &[u8]) -> Option<Vec<u8>> {
    error_reply(query, rcode::FORMERR)
}

fn error_reply(query: &[u8], rcode: u16) -> Option<Vec<u8>> {
    match Query::parse(query) {
        Ok(q) => Some(q.empty_reply(rcode, false)),
        Err(Reject::Drop) => None,
        Err(Reject::Header(_)) => Some(header_reply(query, rcode)),
    }
}
