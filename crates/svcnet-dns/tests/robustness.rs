//! Properties over arbitrary and mutated packets, and an ignored throughput check.

mod common;

use std::sync::OnceLock;

use common::*;
use hickory_proto::rr::RecordType;
use proptest::prelude::*;
use svcnet_dns::{Answer, Index, PodsMode, answer};

fn shared_index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| index_with(&cluster(), PodsMode::Insecure))
}

/// What every reply must satisfy, whatever the packet: an echo of the ID, QR set, within the
/// transport's limit, and no amplification: a reply longer than its query is a real answer
/// from our zones (AA, NOERROR or NXDOMAIN, not truncated).
fn check_reply(query: &[u8], max_udp: Option<usize>, a: &Answer) {
    match a {
        Answer::Drop => assert!(query.len() < 12 || query[2] & 0x80 != 0),
        Answer::Forward => {}
        Answer::Reply(r) => {
            assert!(query.len() >= 12 && query[2] & 0x80 == 0);
            assert!(r.len() >= 12);
            assert_eq!(&r[..2], &query[..2]);
            assert!(r[2] & 0x80 != 0, "QR set");
            let cap = max_udp.map_or(65535, |m| m.max(512));
            assert!(r.len() <= cap, "{} > {cap}", r.len());
            if r.len() > query.len() {
                let rcode = r[3] & 0x0f;
                assert!(rcode == 0 || rcode == 3, "rcode {rcode}");
                assert!(r[2] & 0x04 != 0, "AA");
                assert!(r[2] & 0x02 == 0, "not TC");
            }
        }
    }
}

fn max_udp() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        Just(None),
        Just(Some(512)),
        Just(Some(1232)),
        (0usize..70_000).prop_map(Some),
    ]
}

const PREFIXES: &[&str] = &[
    "",
    "web.default.svc.",
    "_http._tcp.web.default.svc.",
    "db.default.svc.",
    "db-0.db.default.svc.",
    "big.default.svc.",
    "three.default.svc.",
    "alias.default.svc.",
    "chain.default.svc.",
    "loop-a.default.svc.",
    "ext.default.svc.",
    "empty.default.svc.",
    "nope.default.svc.",
    "default.svc.",
    "svc.",
    "pod.",
    "1-2-3-4.default.pod.",
    "fd00--1.default.pod.",
    "*.default.svc.",
    "dns-version.",
    "10.0.96.",
    "4.0.0.",
];
const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::TXT,
    RecordType::CNAME,
    RecordType::SOA,
    RecordType::NS,
    RecordType::MX,
    RecordType::ANY,
    RecordType::AXFR,
];

fn recase(name: &str, upper: &[bool]) -> String {
    name.chars()
        .zip(upper.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect()
}

fn valid_query() -> impl Strategy<Value = (String, Vec<u8>, Option<u16>)> {
    (
        prop::sample::select(PREFIXES),
        prop_oneof![
            8 => Just("cluster.local."),
            2 => Just("10.in-addr.arpa."),
            1 => Just("example.com."),
            1 => Just("."),
        ],
        prop::sample::select(TYPES),
        prop::collection::vec(any::<bool>(), 1..8),
        prop::option::of(0u16..5000),
    )
        .prop_filter("root only as a whole name", |(p, s, ..)| {
            *s != "." || p.is_empty()
        })
        .prop_map(|(prefix, suffix, qtype, upper, edns)| {
            let name = recase(&format!("{prefix}{suffix}"), &upper);
            let name = if name.len() > 1 { name } else { ".".into() };
            let bytes = match edns {
                Some(p) => query_edns(&name, qtype, p),
                None => query(&name, qtype),
            };
            (name, bytes, edns)
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), udp in max_udp()) {
        let a = answer(shared_index(), &bytes, udp);
        check_reply(&bytes, udp, &a);
        let _ = svcnet_dns::servfail(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_query_header(
        body in prop::collection::vec(any::<u8>(), 0..300),
        flags in any::<u8>(),
        counts in prop::array::uniform4(0u16..3),
        udp in max_udp(),
    ) {
        let mut q = vec![0xab, 0xcd, flags & 0x7f, 0];
        for c in counts {
            q.extend_from_slice(&c.to_be_bytes());
        }
        q.extend_from_slice(&body);
        let a = answer(shared_index(), &q, udp);
        check_reply(&q, udp, &a);
    }

    #[test]
    fn valid_queries_get_well_formed_replies((name, q, edns) in valid_query(), udp in max_udp()) {
        let index = shared_index();
        let a = answer(index, &q, udp);
        check_reply(&q, udp, &a);
        match a {
            Answer::Drop => prop_assert!(false, "dropped a valid query"),
            Answer::Forward => prop_assert!(!index.is_cluster_name(&name), "{name}"),
            Answer::Reply(r) => {
                prop_assert!(index.is_cluster_name(&name), "{name}");
                let client = edns.map_or(512, |p| usize::from(p).max(512));
                let limit = udp.map_or(65535, |m| client.min(m.max(512)));
                prop_assert!(r.len() <= limit);
                let question_end = q.len() - if edns.is_some() { 11 } else { 0 };
                prop_assert_eq!(&r[12..question_end], &q[12..question_end]);
                let msg = decode(&r);
                prop_assert_eq!(msg.edns.is_some(), edns.is_some());
                if msg.metadata.truncation {
                    prop_assert!(msg.answers.is_empty());
                }
            }
        }
    }

    #[test]
    fn large_answers_fit_or_are_truncated(
        name in prop::sample::select(&["big.default.svc.cluster.local.", "db.default.svc.cluster.local.", "three.default.svc.cluster.local."][..]),
        qtype in prop::sample::select(&[RecordType::A, RecordType::SRV, RecordType::ANY][..]),
        edns in prop::option::of(0u16..5000),
        udp in max_udp(),
    ) {
        let index = shared_index();
        let q = match edns {
            Some(p) => query_edns(name, qtype, p),
            None => query(name, qtype),
        };
        let full = reply(answer(index, &q, None));
        let r = reply(answer(index, &q, udp));
        let client = edns.map_or(512, |p| usize::from(p).max(512));
        let limit = udp.map_or(65535, |m| client.min(m.max(512)));
        let truncated = r[2] & 0x02 != 0;
        prop_assert_eq!(truncated, full.len() > limit);
        if truncated {
            prop_assert!(r.len() <= q.len());
            prop_assert!(decode(&r).answers.is_empty());
        } else {
            prop_assert_eq!(r, full);
        }
    }

    #[test]
    fn mutated_queries_never_panic(
        (_, q, _) in valid_query(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        udp in max_udp(),
    ) {
        let mut q = q;
        for (at, byte) in edits {
            let i = at.index(q.len());
            q[i] = byte;
        }
        q.truncate(cut.index(q.len() + 1).max(1));
        let a = answer(shared_index(), &q, udp);
        check_reply(&q, udp, &a);
    }
}

/// Single-threaded `answer` throughput on a few hot names; run with
/// `cargo test -p svcnet-dns --test robustness -- --ignored --nocapture` (numbers from a debug
/// build only show relative cost).
#[test]
#[ignore]
fn throughput() {
    let index = shared_index();
    let queries: Vec<Vec<u8>> = [
        ("web.default.svc.cluster.local.", RecordType::A),
        ("Web.Default.svc.cluster.local.", RecordType::AAAA),
        ("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
        ("db.default.svc.cluster.local.", RecordType::A),
        ("nope.default.svc.cluster.local.", RecordType::A),
        ("10-1-0-7.default.pod.cluster.local.", RecordType::A),
    ]
    .iter()
    .map(|(n, t)| query_edns(n, *t, 1232))
    .collect();
    let rounds = 200_000;
    let start = std::time::Instant::now();
    let mut bytes = 0usize;
    for i in 0..rounds {
        if let Answer::Reply(r) = answer(index, &queries[i % queries.len()], Some(1232)) {
            bytes += r.len();
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{rounds} answers in {elapsed:?}: {:.0} per second ({bytes} bytes)",
        rounds as f64 / elapsed.as_secs_f64()
    );
}
