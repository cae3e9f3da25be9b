//! The DNS wire format on the hot path: reading a query's header, its one question and its OPT
//! record, and writing replies around bytes prepared elsewhere.
//!
//! Everything here works on borrowed packet bytes and fixed-size buffers; hickory-proto is only
//! used to build answer templates (see [`crate::template`]) and in tests.

pub(crate) const HEADER_LEN: usize = 12;
/// Longest domain name in wire form, including the root label (RFC 1035 §2.3.4).
pub(crate) const MAX_NAME_LEN: usize = 255;
const MAX_LABELS: usize = 128;
/// Offset of the question name in every message; answer templates point here.
pub(crate) const QNAME_OFFSET: u16 = HEADER_LEN as u16;
/// The largest message TCP framing can carry.
pub(crate) const MAX_MESSAGE_LEN: usize = 65535;
/// The UDP limit without EDNS, and the floor of any EDNS payload size (RFC 6891 §6.2.5).
pub(crate) const MIN_UDP_LEN: usize = 512;
/// The UDP payload size we advertise in our OPT record (the DNS flag day 2020 value).
pub(crate) const ADVERTISED_PAYLOAD: u16 = 1232;
/// Our OPT record: root owner, type, class (payload), TTL (extended rcode, version, flags),
/// RDLENGTH.
pub(crate) const OPT_LEN: usize = 11;
/// A negative answer's SOA record as [`write_soa`] writes it.
pub(crate) const SOA_LEN: usize = 2 + 10 + (1 + 2 + 1 + 3 + 2) + (1 + 10 + 2) + 20;

pub(crate) mod rtype {
    pub(crate) const A: u16 = 1;
    pub(crate) const NS: u16 = 2;
    pub(crate) const CNAME: u16 = 5;
    pub(crate) const SOA: u16 = 6;
    pub(crate) const PTR: u16 = 12;
    pub(crate) const TXT: u16 = 16;
    pub(crate) const AAAA: u16 = 28;
    pub(crate) const SRV: u16 = 33;
    pub(crate) const OPT: u16 = 41;
    pub(crate) const ANY: u16 = 255;
}

pub(crate) mod class {
    pub(crate) const IN: u16 = 1;
    pub(crate) const ANY: u16 = 255;
}

/// Response codes; values above 15 travel partly in the OPT record (RFC 6891 §6.1.3).
pub(crate) mod rcode {
    pub(crate) const NOERROR: u16 = 0;
    pub(crate) const FORMERR: u16 = 1;
    pub(crate) const SERVFAIL: u16 = 2;
    pub(crate) const NXDOMAIN: u16 = 3;
    pub(crate) const NOTIMP: u16 = 4;
    pub(crate) const REFUSED: u16 = 5;
    pub(crate) const BADVERS: u16 = 16;
}

/// Why a packet is not a query we can look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Not worth a reply: too short to carry a header, or a response (replying to responses
    /// invites reflection loops).
    Drop,
    /// Reply with a bare header carrying this rcode.
    Header(u16),
}

/// The EDNS parameters of a query's OPT record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Edns {
    pub(crate) payload: u16,
    pub(crate) version: u8,
}

/// A query whose header, question and additional records parsed.
pub(crate) struct Query<'a> {
    pub(crate) packet: &'a [u8],
    /// End of the question section; everything before it is echoed in the reply.
    pub(crate) question_end: usize,
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
    pub(crate) edns: Option<Edns>,
    lname: [u8; MAX_NAME_LEN],
    lname_len: usize,
    label_starts: [u8; MAX_LABELS],
    label_count: usize,
}

impl<'a> Query<'a> {
    /// Reads a query. Only the first question name is parsed strictly (no compression: it is
    /// the first name in the message, so there is nothing to point at).
    pub(crate) fn parse(packet: &'a [u8]) -> Result<Self, Reject> {
        if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
            return Err(Reject::Drop);
        }
        if opcode(packet) != 0 {
            return Err(Reject::Header(rcode::NOTIMP));
        }
        if count(packet, 4) != 1 {
            return Err(Reject::Header(rcode::FORMERR));
        }
        let formerr = Reject::Header(rcode::FORMERR);

        let mut q = Query {
            packet,
            question_end: 0,
            qtype: 0,
            qclass: 0,
            edns: None,
            lname: [0; MAX_NAME_LEN],
            lname_len: 0,
            label_starts: [0; MAX_LABELS],
            label_count: 0,
        };
        let mut pos = HEADER_LEN;
        loop {
            let len = usize::from(*packet.get(pos).ok_or(formerr)?);
            if len == 0 {
                pos += 1;
                break;
            }
            if len > 63 || q.label_count == MAX_LABELS {
                return Err(formerr);
            }
            let rel = pos - HEADER_LEN;
            // The label, its length byte and the root byte still to come must fit.
            if rel + 1 + len + 1 > MAX_NAME_LEN || pos + 1 + len > packet.len() {
                return Err(formerr);
            }
            q.label_starts[q.label_count] = rel as u8;
            q.label_count += 1;
            pos += 1 + len;
        }
        let name_len = pos - HEADER_LEN;
        q.lname[..name_len].copy_from_slice(&packet[HEADER_LEN..pos]);
        // Length bytes are below 64, so lowercasing the whole wire name only touches letters.
        q.lname[..name_len].make_ascii_lowercase();
        q.lname_len = name_len;

        let fixed = packet.get(pos..pos + 4).ok_or(formerr)?;
        q.qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        q.qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
        pos += 4;
        q.question_end = pos;

        let skipped = usize::from(count(packet, 6)) + usize::from(count(packet, 8));
        for _ in 0..skipped {
            pos = skip_record(packet, pos).ok_or(formerr)?.end;
        }
        for _ in 0..count(packet, 10) {
            let rr = skip_record(packet, pos).ok_or(formerr)?;
            if rr.rtype == rtype::OPT {
                // One OPT, owned by the root (RFC 6891 §6.1.1).
                if q.edns.is_some() || rr.name_end != pos + 1 || packet[pos] != 0 {
                    return Err(formerr);
                }
                q.edns = Some(Edns {
                    payload: rr.class,
                    version: (rr.ttl >> 16) as u8,
                });
            }
            pos = rr.end;
        }
        Ok(q)
    }

    /// The question name in lowercase wire form, root label included.
    pub(crate) fn lname(&self) -> &[u8] {
        &self.lname[..self.lname_len]
    }

    /// Offsets (within the name) where each label starts.
    pub(crate) fn label_starts(&self) -> &[u8] {
        &self.label_starts[..self.label_count]
    }

    /// The `i`th label's bytes, lowercased.
    pub(crate) fn label(&self, i: usize) -> &[u8] {
        let start = usize::from(self.label_starts[i]);
        let len = usize::from(self.lname[start]);
        &self.lname[start + 1..start + 1 + len]
    }

    /// Where `suffix` (a lowercase wire name) starts inside the question name, if the name ends
    /// with it at a label boundary.
    pub(crate) fn suffix_offset(&self, suffix: &[u8]) -> Option<usize> {
        let name = self.lname();
        if !name.ends_with(suffix) {
            return None;
        }
        let at = name.len() - suffix.len();
        // The root name is a suffix of every name and starts after the last label.
        (at == name.len() - 1 || self.label_starts().contains(&(at as u8))).then_some(at)
    }

    /// The largest reply this query may get: TCP's framing limit, or over UDP the client's
    /// EDNS payload size (512 without EDNS, never below 512) capped by the server's buffer.
    pub(crate) fn reply_limit(&self, max_udp: Option<usize>) -> usize {
        match max_udp {
            None => MAX_MESSAGE_LEN,
            Some(server) => {
                let client = self
                    .edns
                    .map_or(MIN_UDP_LEN, |e| usize::from(e.payload).max(MIN_UDP_LEN));
                client.min(server.max(MIN_UDP_LEN))
            }
        }
    }

    fn opt_len(&self) -> usize {
        if self.edns.is_some() { OPT_LEN } else { 0 }
    }

    /// Starts a reply: the query's header and question, with the flags and counts of a
    /// response. Sections are appended by the caller; [`Query::finish`] adds the OPT record.
    pub(crate) fn begin(&self, out: &mut Vec<u8>, rcode: u16, aa: bool, counts: [u16; 3]) {
        out.clear();
        out.extend_from_slice(&self.packet[..self.question_end]);
        write_flags(out, self.packet, rcode, aa);
        out[4..6].copy_from_slice(&1u16.to_be_bytes());
        out[6..8].copy_from_slice(&counts[0].to_be_bytes());
        out[8..10].copy_from_slice(&counts[1].to_be_bytes());
        let ar = counts[2].saturating_add(u16::from(self.edns.is_some()));
        out[10..12].copy_from_slice(&ar.to_be_bytes());
    }

    /// Appends our OPT record when the query had one.
    pub(crate) fn finish(&self, out: &mut Vec<u8>, rcode: u16) {
        if self.edns.is_some() {
            out.push(0);
            out.extend_from_slice(&rtype::OPT.to_be_bytes());
            out.extend_from_slice(&ADVERTISED_PAYLOAD.to_be_bytes());
            out.push((rcode >> 4) as u8);
            out.extend_from_slice(&[0, 0, 0, 0, 0]);
        }
    }

    /// A reply with no records: header, question and OPT.
    pub(crate) fn empty_reply(&self, rcode: u16, aa: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.question_end + self.opt_len());
        self.begin(&mut out, rcode, aa, [0; 3]);
        self.finish(&mut out, rcode);
        out
    }

    /// An emptied reply with TC set, so the client retries over TCP; `aa` for answers from
    /// the cluster's zones.
    pub(crate) fn truncated_reply(&self, rcode: u16, aa: bool) -> Vec<u8> {
        let mut out = self.empty_reply(rcode, aa);
        out[2] |= 0x02;
        out
    }

    /// A reply whose sections are `body` (counts `counts`), or the truncated reply when it does
    /// not fit in `limit`.
    pub(crate) fn reply_with(
        &self,
        rcode: u16,
        counts: [u16; 3],
        body: &[u8],
        limit: usize,
    ) -> Vec<u8> {
        let len = self.question_end + body.len() + self.opt_len();
        if len > limit {
            return self.truncated_reply(rcode, true);
        }
        let mut out = Vec::with_capacity(len);
        self.begin(&mut out, rcode, true, counts);
        out.extend_from_slice(body);
        self.finish(&mut out, rcode);
        out
    }
}

/// A reply that is only a header (all counts zero), for packets whose question did not parse.
pub(crate) fn header_reply(packet: &[u8], rcode: u16) -> Vec<u8> {
    let mut out = packet[..HEADER_LEN].to_vec();
    write_flags(&mut out, packet, rcode, false);
    out[4..12].fill(0);
    out
}

fn write_flags(out: &mut [u8], packet: &[u8], rcode: u16, aa: bool) {
    // QR, the query's opcode, AA, the query's RD (TC clear).
    out[2] = 0x80 | (packet[2] & 0x79) | (u8::from(aa) << 2);
    // RA, the query's CD, the low rcode bits.
    out[3] = 0x80 | (packet[3] & 0x10) | (rcode & 0x0f) as u8;
}

fn opcode(packet: &[u8]) -> u8 {
    (packet[2] >> 3) & 0x0f
}

/// The 16-bit header field at `at` (4: QDCOUNT, 6: ANCOUNT, 8: NSCOUNT, 10: ARCOUNT).
pub(crate) fn count(packet: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([packet[at], packet[at + 1]])
}

/// Where one resource record sits in a message.
pub(crate) struct RecordSpan {
    /// End of the owner name: the type, class, TTL and RDLENGTH follow.
    pub(crate) name_end: usize,
    pub(crate) rtype: u16,
    pub(crate) class: u16,
    pub(crate) ttl: u32,
    pub(crate) end: usize,
}

/// Walks over one resource record without decoding its name or data.
pub(crate) fn skip_record(packet: &[u8], pos: usize) -> Option<RecordSpan> {
    let name_end = skip_name(packet, pos)?;
    let fixed = packet.get(name_end..name_end + 10)?;
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let end = name_end + 10 + rdlen;
    if end > packet.len() {
        return None;
    }
    Some(RecordSpan {
        name_end,
        rtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        class: u16::from_be_bytes([fixed[2], fixed[3]]),
        ttl: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        end,
    })
}

/// The end of the (possibly compressed) name starting at `pos`, without following pointers.
pub(crate) fn skip_name(packet: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *packet.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            0xc0 => {
                packet.get(pos + 1)?;
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
}

/// Appends a zone's SOA record, its owner and names compressed against the zone's suffix of
/// the question name (which starts `zone_at` bytes into the name).
pub(crate) fn write_soa(out: &mut Vec<u8>, zone_at: usize, ttl: u32, serial: u32) {
    let ptr = (0xc000 | (QNAME_OFFSET + zone_at as u16)).to_be_bytes();
    out.extend_from_slice(&ptr);
    out.extend_from_slice(&rtype::SOA.to_be_bytes());
    out.extend_from_slice(&class::IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&((SOA_LEN - 12) as u16).to_be_bytes());
    out.extend_from_slice(b"\x02ns\x03dns");
    out.extend_from_slice(&ptr);
    out.extend_from_slice(b"\x0ahostmaster");
    out.extend_from_slice(&ptr);
    for v in [serial, 7200, 1800, 86400, ttl] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends an address record owned by the question name.
pub(crate) fn write_address(out: &mut Vec<u8>, ip: std::net::IpAddr, ttl: u32) {
    let (t, len) = match ip {
        std::net::IpAddr::V4(_) => (rtype::A, 4u16),
        std::net::IpAddr::V6(_) => (rtype::AAAA, 16u16),
    };
    out.extend_from_slice(&(0xc000 | QNAME_OFFSET).to_be_bytes());
    out.extend_from_slice(&t.to_be_bytes());
    out.extend_from_slice(&class::IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    match ip {
        std::net::IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        std::net::IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, extra: &[u8], arcount: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&arcount.to_be_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p.extend_from_slice(extra);
        p
    }

    const OPT_4096: &[u8] = &[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn parses_question_and_lowercases() {
        let p = query(b"\x03WeB\x07default\x00", rtype::A, &[], 0);
        let q = Query::parse(&p).unwrap();
        assert_eq!(q.lname(), b"\x03web\x07default\x00");
        assert_eq!(q.label_starts(), &[0, 4]);
        assert_eq!(q.label(1), b"default");
        assert_eq!(q.qtype, rtype::A);
        assert_eq!(q.question_end, p.len());
        assert_eq!(q.edns, None);
        assert_eq!(q.suffix_offset(b"\x07default\x00"), Some(4));
        assert_eq!(q.suffix_offset(b"\x03ult\x00"), None);
        assert_eq!(q.suffix_offset(b"\x00"), Some(12));
    }

    #[test]
    fn reads_edns() {
        let p = query(b"\x01a\x00", rtype::A, OPT_4096, 1);
        let q = Query::parse(&p).unwrap();
        assert_eq!(
            q.edns,
            Some(Edns {
                payload: 4096,
                version: 0
            })
        );
        assert_eq!(q.reply_limit(Some(65535)), 4096);
        assert_eq!(q.reply_limit(Some(1232)), 1232);
        assert_eq!(q.reply_limit(Some(100)), 512);
        assert_eq!(q.reply_limit(None), MAX_MESSAGE_LEN);
    }

    #[test]
    fn small_edns_payload_counts_as_512() {
        let p = query(
            b"\x01a\x00",
            rtype::A,
            &[0, 0, 41, 0, 100, 0, 0, 0, 0, 0, 0],
            1,
        );
        assert_eq!(Query::parse(&p).unwrap().reply_limit(Some(4096)), 512);
    }

    #[test]
    fn rejects() {
        assert_eq!(Query::parse(&[0; 11]).err(), Some(Reject::Drop));
        let mut p = query(b"\x01a\x00", rtype::A, &[], 0);
        p[2] |= 0x80;
        assert_eq!(Query::parse(&p).err(), Some(Reject::Drop));
        let mut p = query(b"\x01a\x00", rtype::A, &[], 0);
        p[2] |= 2 << 3;
        assert_eq!(Query::parse(&p).err(), Some(Reject::Header(rcode::NOTIMP)));
        let p = query(b"\x05a\x00", rtype::A, &[], 0);
        assert_eq!(Query::parse(&p).err(), Some(Reject::Header(rcode::FORMERR)));
        let p = query(b"\xc0\x0c", rtype::A, &[], 0);
        assert_eq!(Query::parse(&p).err(), Some(Reject::Header(rcode::FORMERR)));
        let two_opts = [OPT_4096, OPT_4096].concat();
        let p = query(b"\x01a\x00", rtype::A, &two_opts, 2);
        assert_eq!(Query::parse(&p).err(), Some(Reject::Header(rcode::FORMERR)));
        let p = query(b"\x01a\x00", rtype::A, &[], 1);
        assert_eq!(Query::parse(&p).err(), Some(Reject::Header(rcode::FORMERR)));
    }

    #[test]
    fn name_length_limit() {
        let mut name = Vec::new();
        for _ in 0..4 {
            name.push(63);
            name.extend_from_slice(&[b'a'; 63]);
        }
        name.push(0);
        // 4 × 64 + 1 = 257 > 255.
        let p = query(&name, rtype::A, &[], 0);
        assert_eq!(Query::parse(&p).err(), Some(Reject::Header(rcode::FORMERR)));
    }

    #[test]
    fn header_reply_keeps_id_opcode_and_rd() {
        let mut p = query(b"\x01a\x00", rtype::A, &[], 0);
        p[2] |= 4 << 3;
        let r = header_reply(&p, rcode::NOTIMP);
        assert_eq!(r.len(), HEADER_LEN);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2], 0x80 | (4 << 3) | 0x01);
        assert_eq!(r[3], 0x80 | 4);
        assert_eq!(&r[4..], &[0; 8]);
    }
}
