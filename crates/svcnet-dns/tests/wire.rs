//! Header flags, EDNS, truncation and malformed packets.

mod common;

use common::*;
use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use svcnet_dns::{Answer, answer, servfail};

const BIG: &str = "big.default.svc.cluster.local.";

#[test]
fn header_flags() {
    let index = index();
    let q = query("web.default.svc.cluster.local.", RecordType::A);
    let msg = decode(&reply(answer(&index, &q, Some(512))));
    assert_eq!(msg.metadata.id, ID);
    assert_eq!(
        msg.metadata.message_type,
        hickory_proto::op::MessageType::Response
    );
    assert_eq!(msg.metadata.op_code, OpCode::Query);
    assert!(msg.metadata.authoritative);
    assert!(msg.metadata.recursion_desired);
    assert!(msg.metadata.recursion_available);
    assert!(!msg.metadata.truncation);
    assert!(msg.edns.is_none());

    // RD is copied, not forced.
    let mut m = query_message("web.default.svc.cluster.local.", RecordType::A);
    m.metadata.recursion_desired = false;
    m.metadata.checking_disabled = true;
    let msg = decode(&reply(answer(&index, &m.to_vec().unwrap(), None)));
    assert!(!msg.metadata.recursion_desired);
    assert!(msg.metadata.checking_disabled);
    assert!(msg.metadata.recursion_available);
}

#[test]
fn edns_query_gets_an_opt_record() {
    let index = index();
    let q = query_edns("web.default.svc.cluster.local.", RecordType::A, 4096);
    let msg = decode(&reply(answer(&index, &q, Some(65535))));
    let edns = msg.edns.expect("OPT in reply");
    assert_eq!(edns.version(), 0);
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(a_records(&msg.answers), ["10.96.0.10"]);
    // Negative answers too.
    let q = query_edns("nope.cluster.local.", RecordType::A, 1232);
    let msg = decode(&reply(answer(&index, &q, Some(65535))));
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    assert!(msg.edns.is_some());
}

#[test]
fn udp_512_truncates_a_large_headless_answer() {
    let index = index();
    let q = query(BIG, RecordType::A);
    let r = reply(answer(&index, &q, Some(65535)));
    assert!(r.len() <= 512);
    let msg = decode(&r);
    assert!(msg.metadata.truncation);
    assert!(msg.metadata.authoritative);
    assert!(msg.answers.is_empty() && msg.authorities.is_empty() && msg.additionals.is_empty());
    assert_eq!(msg.queries.len(), 1);
    assert_eq!(&r[12..], &q[12..]);
}

#[test]
fn tcp_carries_the_whole_answer() {
    let msg = ask(&index(), BIG, RecordType::A);
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 100);
}

#[test]
fn edns_payload_size_is_honoured() {
    let index = index();
    // 100 A records are about 1.6 kB.
    let q = query_edns(BIG, RecordType::A, 4096);
    let r = reply(answer(&index, &q, Some(4096)));
    let msg = decode(&r);
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 100);
    assert!(msg.edns.is_some());

    let q = query_edns(BIG, RecordType::A, 1232);
    let r = reply(answer(&index, &q, Some(4096)));
    assert!(r.len() <= 1232);
    let msg = decode(&r);
    assert!(msg.metadata.truncation);
    assert!(msg.answers.is_empty());
    assert!(msg.edns.is_some(), "the truncated reply keeps the OPT");

    // The server's own limit caps the client's.
    let q = query_edns(BIG, RecordType::A, 4096);
    let msg = decode(&reply(answer(&index, &q, Some(1500))));
    assert!(msg.metadata.truncation);
}

#[test]
fn edns_payload_below_512_counts_as_512() {
    let index = index();
    let mut q = query_edns("web.default.svc.cluster.local.", RecordType::SRV, 512);
    // The OPT record is last: its class (payload size) sits 8..10 bytes from the end.
    let at = q.len() - 8;
    q[at..at + 2].copy_from_slice(&100u16.to_be_bytes());
    let msg = decode(&reply(answer(&index, &q, Some(4096))));
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 2);
}

#[test]
fn unsupported_edns_version_is_badvers() {
    let index = index();
    let mut q = query_edns("web.default.svc.cluster.local.", RecordType::A, 1232);
    // TTL of the OPT record: extended rcode, version, flags.
    let at = q.len() - 5;
    q[at] = 1;
    let r = reply(answer(&index, &q, Some(512)));
    assert!(r.len() <= q.len());
    let msg = decode(&r);
    assert_eq!(u16::from(msg.metadata.response_code), 16);
    assert!(msg.answers.is_empty());
}

#[test]
fn response_packets_and_runts_are_dropped() {
    let index = index();
    let mut q = query("web.default.svc.cluster.local.", RecordType::A);
    q[2] |= 0x80;
    assert_eq!(answer(&index, &q, Some(512)), Answer::Drop);
    assert_eq!(answer(&index, &q[..11], Some(512)), Answer::Drop);
    assert_eq!(answer(&index, &[], None), Answer::Drop);
    assert_eq!(servfail(&q), None);
}

#[test]
fn truncated_question_is_formerr() {
    let index = index();
    let q = query("web.default.svc.cluster.local.", RecordType::A);
    for cut in [12, 13, 20, q.len() - 4, q.len() - 1] {
        let r = reply(answer(&index, &q[..cut], Some(512)));
        assert_eq!(r.len(), 12, "cut at {cut}");
        let msg = decode(&r);
        assert_eq!(msg.metadata.id, ID);
        assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
        assert!(msg.queries.is_empty());
    }
}

#[test]
fn garbage_after_the_question_is_formerr() {
    let index = index();
    let mut q = query("web.default.svc.cluster.local.", RecordType::A);
    // Claims one additional record that is not there.
    q[11] = 1;
    q.extend_from_slice(&[0, 0, 41]);
    let msg = decode(&reply(answer(&index, &q, Some(512))));
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn question_count_must_be_one() {
    let index = index();
    let mut q = query("web.default.svc.cluster.local.", RecordType::A);
    q[5] = 0;
    let msg = decode(&reply(answer(&index, &q, Some(512))));
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
    q[5] = 2;
    let msg = decode(&reply(answer(&index, &q, Some(512))));
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn other_opcodes_are_notimp() {
    let index = index();
    for op in [OpCode::Status, OpCode::Notify, OpCode::Update] {
        let mut m = query_message("web.default.svc.cluster.local.", RecordType::A);
        m.metadata.op_code = op;
        let q = m.to_vec().unwrap();
        let r = reply(answer(&index, &q, Some(512)));
        assert!(r.len() <= q.len());
        let msg = decode(&r);
        assert_eq!(msg.metadata.response_code, ResponseCode::NotImp);
        assert_eq!(msg.metadata.op_code, op);
    }
}

#[test]
fn zone_transfers_and_other_classes_are_refused() {
    let index = index();
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let q = query("cluster.local.", qtype);
        let r = reply(answer(&index, &q, None));
        assert!(r.len() <= q.len());
        assert_eq!(decode(&r).metadata.response_code, ResponseCode::Refused);
    }
    let mut m = query_message("web.default.svc.cluster.local.", RecordType::A);
    m.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    let r = reply(answer(&index, &m.to_vec().unwrap(), None));
    assert_eq!(decode(&r).metadata.response_code, ResponseCode::Refused);
    // Other classes outside the zone are not ours to judge.
    let mut m = query_message("version.bind.", RecordType::TXT);
    m.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    assert_eq!(answer(&index, &m.to_vec().unwrap(), None), Answer::Forward);
}

#[test]
fn servfail_for_forwarding_failures() {
    let q = query_edns("Example.COM.", RecordType::AAAA, 1232);
    let r = servfail(&q).unwrap();
    assert!(r.len() <= q.len());
    let msg = decode(&r);
    assert_eq!(msg.metadata.id, ID);
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(msg.queries[0].name().to_string(), "Example.COM.");
    assert!(msg.edns.is_some());
    assert!(!msg.metadata.authoritative);

    let r = servfail(&q[..20]).unwrap();
    assert_eq!(decode(&r).metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn replies_to_error_rcodes_are_not_larger_than_the_query() {
    let index = index();
    let not_synced = svcnet_dns::Index::empty_not_synced(ZONE).unwrap();
    let q = query("x.cluster.local.", RecordType::A);
    let r = reply(answer(&not_synced, &q, Some(512)));
    assert_eq!(r.len(), q.len());
    let q = query_edns("x.cluster.local.", RecordType::A, 1232);
    let r = reply(answer(&not_synced, &q, Some(512)));
    assert_eq!(r.len(), q.len());
    let q = query("cluster.local.", RecordType::AXFR);
    assert_eq!(reply(answer(&index, &q, Some(512))).len(), q.len());
}
