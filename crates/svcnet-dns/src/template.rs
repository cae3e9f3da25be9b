//! Precomputed answer bytes: everything a reply carries after its question section.
//!
//! hickory-proto encodes a whole response whose question is the owner name in lowercase wire
//! form; the header and question are cut off and the rest kept. Names in the kept part compress
//! against offset 12, where every query carries its question name, and against each other, so
//! the bytes stay valid behind any query for the same name in any letter case (same labels,
//! same lengths, same offsets).

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::{Name, Record, RecordType};

use crate::wire::HEADER_LEN;

/// One prepared answer: rcode, section counts (answer, authority, additional) and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) rcode: u16,
    pub(crate) counts: [u16; 3],
    pub(crate) bytes: Box<[u8]>,
}

/// The sections of one answer, before encoding.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sections {
    pub(crate) rcode: u16,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
}

impl Template {
    /// Encodes `sections` as answered to a question for `qname` (whose lowercase wire form is
    /// `key`). A message too large for TCP loses its additional records, then answers, until
    /// it fits.
    pub(crate) fn encode(qname: &Name, key: &[u8], sections: Sections) -> Option<Self> {
        let mut msg = Message::response(0, OpCode::Query);
        // The type here is irrelevant: only the question name is ever pointed at.
        msg.add_query(Query::query(qname.clone(), RecordType::A));
        msg.answers = sections.answers;
        msg.authorities = sections.authorities;
        msg.additionals = sections.additionals;
        loop {
            match Self::try_encode(qname, key, &msg, sections.rcode) {
                Some(t) => return Some(t),
                None if !msg.additionals.is_empty() => msg.additionals.clear(),
                None if msg.answers.len() > 1 => {
                    let keep = msg.answers.len() / 2;
                    msg.answers.truncate(keep);
                }
                None => return None,
            }
        }
    }

    fn try_encode(qname: &Name, key: &[u8], msg: &Message, rcode: u16) -> Option<Self> {
        let bytes = msg.to_vec().ok()?;
        let body_start = HEADER_LEN + key.len() + 4;
        if bytes.get(HEADER_LEN..HEADER_LEN + key.len()) != Some(key) {
            // Only possible if hickory spelled the name differently from our key.
            tracing::warn!(name = %qname, "answer template question does not match its key");
            return None;
        }
        // The real reply still needs room for the question and an OPT record.
        if bytes.len() + crate::wire::OPT_LEN > crate::wire::MAX_MESSAGE_LEN {
            return None;
        }
        Some(Template {
            rcode,
            counts: [
                u16::try_from(msg.answers.len()).ok()?,
                u16::try_from(msg.authorities.len()).ok()?,
                u16::try_from(msg.additionals.len()).ok()?,
            ],
            bytes: bytes[body_start..].into(),
        })
    }
}
