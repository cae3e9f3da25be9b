//! Answers for every record type and rcode rule, decoded with hickory-proto.

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use svcnet_dns::{Answer, Error, Index, IndexInput, PodsMode, answer};

fn assert_soa_authority(msg: &Message, zone: &str) {
    assert_eq!(msg.authorities.len(), 1, "{msg:?}");
    let soa = &msg.authorities[0];
    assert_eq!(soa.name.to_string(), format!("{zone}."));
    assert_eq!(soa.ttl, TTL);
    let RData::SOA(data) = &soa.data else {
        panic!("not an SOA: {soa:?}");
    };
    assert_eq!(data.mname.to_string(), format!("ns.dns.{zone}."));
    assert_eq!(data.rname.to_string(), format!("hostmaster.{zone}."));
    assert_eq!(
        (data.refresh, data.retry, data.expire, data.minimum),
        (7200, 1800, 86400, TTL)
    );
}

fn assert_nxdomain(index: &Index, name: &str, qtype: RecordType) {
    let msg = ask(index, name, qtype);
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "{name}");
    assert!(msg.answers.is_empty(), "{name}: {:?}", msg.answers);
    assert!(msg.metadata.authoritative);
    assert_soa_authority(&msg, ZONE);
}

fn assert_nodata(index: &Index, name: &str, qtype: RecordType) {
    let msg = ask(index, name, qtype);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{name}");
    assert!(msg.answers.is_empty(), "{name} {qtype}: {:?}", msg.answers);
    assert!(msg.metadata.authoritative);
    assert_soa_authority(&msg, ZONE);
}

fn srv(r: &Record) -> (u16, u16, u16, String) {
    let RData::SRV(s) = &r.data else {
        panic!("not an SRV: {r:?}");
    };
    (s.priority, s.weight, s.port, s.target.to_string())
}

// === zone apex and schema version ===

#[test]
fn dns_version_txt() {
    let msg = ask(&index(), "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(rdata(&msg.answers), ["1.1.0"]);
    assert_eq!(msg.answers[0].ttl, TTL);
    assert_nodata(&index(), "dns-version.cluster.local.", RecordType::A);
}

#[test]
fn apex_soa_and_ns() {
    let index = index();
    let msg = ask(&index, "cluster.local.", RecordType::SOA);
    assert_eq!(msg.answers.len(), 1);
    let RData::SOA(soa) = &msg.answers[0].data else {
        panic!()
    };
    assert_eq!(soa.mname.to_string(), "ns.dns.cluster.local.");
    assert_eq!(soa.rname.to_string(), "hostmaster.cluster.local.");
    assert_eq!(soa.serial, 42);
    assert_eq!(soa.minimum, TTL);

    let msg = ask(&index, "cluster.local.", RecordType::NS);
    assert_eq!(rdata(&msg.answers), ["ns.dns.cluster.local."]);
    // Glue: the kube-system/kube-dns cluster IP.
    assert_eq!(names(&msg.additionals), ["ns.dns.cluster.local."]);
    assert_eq!(a_records(&msg.additionals), ["10.96.0.2"]);
    assert_eq!(
        a_records(&ask(&index, "ns.dns.cluster.local.", RecordType::A).answers),
        ["10.96.0.2"]
    );

    assert_nodata(&index, "cluster.local.", RecordType::A);
}

// === ClusterIP Services ===

#[test]
fn cluster_ip_a() {
    let msg = ask(&index(), "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert_eq!(a_records(&msg.answers), ["10.96.0.10"]);
    assert_eq!(names(&msg.answers), ["web.default.svc.cluster.local."]);
    assert_eq!(msg.answers[0].ttl, TTL);
    assert!(msg.authorities.is_empty());
}

#[test]
fn single_stack_service_has_no_aaaa() {
    assert_nodata(&index(), "web.default.svc.cluster.local.", RecordType::AAAA);
}

#[test]
fn dual_stack_a_and_aaaa() {
    let index = index();
    let a = ask(&index, "dual.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&a.answers), ["10.96.0.11"]);
    let aaaa = ask(&index, "dual.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(a_records(&aaaa.answers), ["fd00:96::11"]);
}

#[test]
fn srv_for_a_named_port() {
    let msg = ask(
        &index(),
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(msg.answers.len(), 1);
    assert_eq!(
        srv(&msg.answers[0]),
        (0, 100, 80, "web.default.svc.cluster.local.".into())
    );
    assert_eq!(names(&msg.additionals), ["web.default.svc.cluster.local."]);
    assert_eq!(a_records(&msg.additionals), ["10.96.0.10"]);
}

#[test]
fn srv_for_the_service_name_lists_named_ports_only() {
    let msg = ask(&index(), "web.default.svc.cluster.local.", RecordType::SRV);
    let mut got: Vec<_> = msg.answers.iter().map(srv).collect();
    got.sort();
    let target = "web.default.svc.cluster.local.".to_string();
    assert_eq!(got, [(0, 50, 80, target.clone()), (0, 50, 9090, target)]);
    // One target, so its address once.
    assert_eq!(a_records(&msg.additionals), ["10.96.0.10"]);
}

#[test]
fn srv_single_record_weight_is_100() {
    let msg = ask(
        &index(),
        "_dns._udp.dns.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        srv(&msg.answers[0]),
        (0, 100, 53, "dns.default.svc.cluster.local.".into())
    );
}

#[test]
fn srv_with_wrong_protocol_or_port_is_nxdomain() {
    let index = index();
    assert_nxdomain(
        &index,
        "_http._udp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_nxdomain(
        &index,
        "_nope._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    // The protocol label alone is an empty non-terminal.
    assert_nodata(
        &index,
        "_tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    // An SRV name has no address records.
    assert_nodata(
        &index,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::A,
    );
}

#[test]
fn ptr_v4_for_cluster_ip() {
    let msg = ask(&index(), "10.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert_eq!(rdata(&msg.answers), ["web.default.svc.cluster.local."]);
    assert_eq!(msg.answers[0].ttl, TTL);
}

#[test]
fn ptr_v6_for_cluster_ip() {
    let name = "1.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.";
    let msg = ask(&index(), name, RecordType::PTR);
    assert_eq!(rdata(&msg.answers), ["dual.default.svc.cluster.local."]);
}

#[test]
fn reverse_name_with_other_type_is_nodata_with_the_reverse_soa() {
    let msg = ask(&index(), "10.0.96.10.in-addr.arpa.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.answers.is_empty());
    assert_soa_authority(&msg, "in-addr.arpa");
}

// === headless Services ===

#[test]
fn headless_a_lists_ready_endpoints() {
    let msg = ask(&index(), "db.default.svc.cluster.local.", RecordType::A);
    let mut got = a_records(&msg.answers);
    got.sort();
    // 10.0.0.6 is not ready; `ready: None` (10.0.0.5) counts as ready.
    assert_eq!(got, ["10.0.0.4", "10.0.0.5"]);
}

#[test]
fn headless_endpoint_names() {
    let index = index();
    let by_hostname = ask(&index, "db-0.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&by_hostname.answers), ["10.0.0.4"]);
    let dashed = ask(
        &index,
        "10-0-0-5.db.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(a_records(&dashed.answers), ["10.0.0.5"]);
    let v6 = ask(
        &index,
        "fd00-10--5.db6.default.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(a_records(&v6.answers), ["fd00:10::5"]);
    // Not ready: no name at all.
    assert_nxdomain(&index, "db-2.db.default.svc.cluster.local.", RecordType::A);
    // The other namespace's slice for a Service called db does not leak in.
    assert_nxdomain(
        &index,
        "10-9-9-9.db.default.svc.cluster.local.",
        RecordType::A,
    );
}

#[test]
fn headless_srv_per_endpoint_and_port() {
    let msg = ask(
        &index(),
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let mut got: Vec<_> = msg.answers.iter().map(srv).collect();
    got.sort();
    assert_eq!(
        got,
        [
            (0, 50, 5432, "10-0-0-5.db.default.svc.cluster.local.".into()),
            (0, 50, 5432, "db-0.db.default.svc.cluster.local.".into()),
        ]
    );
    let mut extra: Vec<_> = msg
        .additionals
        .iter()
        .map(|r| (r.name.to_string(), a_records(std::slice::from_ref(r))))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            (
                "10-0-0-5.db.default.svc.cluster.local.".to_string(),
                vec!["10.0.0.5".to_string()]
            ),
            (
                "db-0.db.default.svc.cluster.local.".to_string(),
                vec!["10.0.0.4".to_string()]
            ),
        ]
    );
}

#[test]
fn srv_weight_for_six_records_is_16() {
    let msg = ask(
        &index(),
        "three.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(msg.answers.len(), 6);
    assert!(msg.answers.iter().all(|r| srv(r).1 == 16));
}

#[test]
fn headless_ptr_names_the_endpoint() {
    let index = index();
    let msg = ask(&index, "4.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdata(&msg.answers), ["db-0.db.default.svc.cluster.local."]);
    let msg = ask(&index, "5.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        rdata(&msg.answers),
        ["10-0-0-5.db.default.svc.cluster.local."]
    );
}

#[test]
fn headless_without_ready_endpoints_is_nxdomain() {
    let index = index();
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::SRV] {
        assert_nxdomain(&index, "empty.default.svc.cluster.local.", qtype);
    }
    assert_nxdomain(
        &index,
        "_pg._tcp.empty.default.svc.cluster.local.",
        RecordType::SRV,
    );
    // A not-ready endpoint's address gets no PTR either: not ours, forwarded.
    assert_eq!(
        answer(
            &index,
            &query("1.1.0.10.in-addr.arpa.", RecordType::PTR),
            None
        ),
        Answer::Forward
    );
}

#[test]
fn publish_not_ready_addresses_counts_every_endpoint() {
    let index = index();
    let msg = ask(&index, "warm.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&msg.answers), ["10.0.2.1"]);
    let msg = ask(
        &index,
        "warm-0.warm.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(a_records(&msg.answers), ["10.0.2.1"]);
}

// === ExternalName ===

#[test]
fn external_name_is_a_cname() {
    let msg = ask(&index(), "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert_eq!(rdata(&msg.answers), ["Example.COM."]);
    assert!(matches!(msg.answers[0].data, RData::CNAME(_)));
    assert_eq!(msg.answers[0].ttl, TTL);
}

#[test]
fn external_name_inside_the_zone_is_chased() {
    let index = index();
    let msg = ask(&index, "alias.default.svc.cluster.local.", RecordType::A);
    assert_eq!(msg.answers.len(), 2);
    assert_eq!(rdata(&msg.answers[..1]), ["web.default.svc.cluster.local."]);
    assert_eq!(names(&msg.answers[1..]), ["web.default.svc.cluster.local."]);
    assert_eq!(a_records(&msg.answers), ["10.96.0.10"]);

    // Two hops.
    let msg = ask(&index, "chain.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        rdata(&msg.answers),
        [
            "alias.default.svc.cluster.local.",
            "web.default.svc.cluster.local.",
            "10.96.0.10"
        ]
    );

    // SRV through the CNAME keeps its additional records.
    let msg = ask(&index, "alias.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(msg.answers.len(), 3);
    assert_eq!(a_records(&msg.additionals), ["10.96.0.10"]);
}

#[test]
fn external_name_chase_ends_in_nxdomain_or_nodata() {
    let index = index();
    let msg = ask(&index, "dangling.default.svc.cluster.local.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(rdata(&msg.answers), ["nothing.default.svc.cluster.local."]);
    assert_soa_authority(&msg, ZONE);

    let msg = ask(&index, "alias.default.svc.cluster.local.", RecordType::TXT);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(rdata(&msg.answers), ["web.default.svc.cluster.local."]);
    assert_soa_authority(&msg, ZONE);

    // A type without a prepared answer still gets the CNAME.
    let msg = ask(&index, "alias.default.svc.cluster.local.", RecordType::MX);
    assert_eq!(rdata(&msg.answers), ["web.default.svc.cluster.local."]);
}

#[test]
fn external_name_cname_query_is_not_chased() {
    let msg = ask(
        &index(),
        "alias.default.svc.cluster.local.",
        RecordType::CNAME,
    );
    assert_eq!(rdata(&msg.answers), ["web.default.svc.cluster.local."]);
}

#[test]
fn external_name_loops_stop() {
    let msg = ask(&index(), "loop-a.default.svc.cluster.local.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        rdata(&msg.answers),
        [
            "loop-b.default.svc.cluster.local.",
            "loop-a.default.svc.cluster.local."
        ]
    );
}

// === pods ===

#[test]
fn pods_disabled_is_nxdomain() {
    let index = index_with(&cluster(), PodsMode::Disabled);
    assert_nxdomain(&index, "10-1-0-7.default.pod.cluster.local.", RecordType::A);
    assert_nxdomain(&index, "default.pod.cluster.local.", RecordType::A);
    assert_nodata(&index, "pod.cluster.local.", RecordType::A);
}

#[test]
fn pods_insecure_answers_the_spelled_address() {
    let index = index_with(&cluster(), PodsMode::Insecure);
    let msg = ask(&index, "1-2-3-4.anywhere.pod.cluster.local.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&msg.answers), ["1.2.3.4"]);
    assert_eq!(names(&msg.answers), ["1-2-3-4.anywhere.pod.cluster.local."]);
    assert_eq!(msg.answers[0].ttl, TTL);

    let msg = ask(
        &index,
        "fd00--7.default.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(a_records(&msg.answers), ["fd00::7"]);

    assert_nodata(
        &index,
        "1-2-3-4.default.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_nodata(&index, "default.pod.cluster.local.", RecordType::A);
    assert_nxdomain(
        &index,
        "not-an-ip.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_nxdomain(
        &index,
        "1-2-3-999.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_nxdomain(
        &index,
        "x.1-2-3-4.default.pod.cluster.local.",
        RecordType::A,
    );
    assert_nxdomain(&index, "1-2-3-4.*.pod.cluster.local.", RecordType::A);
    assert_nxdomain(&index, "1-2-3-4.any.pod.cluster.local.", RecordType::A);
}

#[test]
fn pods_verified_needs_a_pod_with_that_address_in_that_namespace() {
    let index = index_with(&cluster(), PodsMode::Verified);
    let msg = ask(&index, "10-1-0-7.default.pod.cluster.local.", RecordType::A);
    assert_eq!(a_records(&msg.answers), ["10.1.0.7"]);
    let msg = ask(
        &index,
        "fd00-1--7.default.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(a_records(&msg.answers), ["fd00:1::7"]);
    // Another spelling of the same IPv6 address.
    let msg = ask(
        &index,
        "fd00-1-0-0-0-0-0-7.default.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(a_records(&msg.answers), ["fd00:1::7"]);

    assert_nxdomain(&index, "10-1-0-8.default.pod.cluster.local.", RecordType::A);
    assert_nxdomain(&index, "1-2-3-4.default.pod.cluster.local.", RecordType::A);
    let msg = ask(&index, "10-1-0-8.team.pod.cluster.local.", RecordType::A);
    assert_eq!(a_records(&msg.answers), ["10.1.0.8"]);
    assert_nodata(&index, "team.pod.cluster.local.", RecordType::A);
    assert_nxdomain(&index, "nobody.pod.cluster.local.", RecordType::A);
}

// === rcodes ===

#[test]
fn unknown_names_are_nxdomain_with_soa() {
    let index = index();
    assert_nxdomain(&index, "nope.default.svc.cluster.local.", RecordType::A);
    assert_nxdomain(&index, "web.nope.svc.cluster.local.", RecordType::A);
    assert_nxdomain(&index, "nope.svc.cluster.local.", RecordType::A);
    assert_nxdomain(&index, "nope.cluster.local.", RecordType::A);
    assert_nxdomain(&index, "a.b.c.d.e.f.cluster.local.", RecordType::AAAA);
}

#[test]
fn known_names_with_another_type_are_nodata() {
    let index = index();
    assert_nodata(&index, "web.default.svc.cluster.local.", RecordType::TXT);
    assert_nodata(&index, "web.default.svc.cluster.local.", RecordType::MX);
    assert_nodata(&index, "web.default.svc.cluster.local.", RecordType::PTR);
    // Empty non-terminals.
    assert_nodata(&index, "default.svc.cluster.local.", RecordType::A);
    assert_nodata(&index, "svc.cluster.local.", RecordType::A);
}

#[test]
fn wildcard_labels_are_nxdomain() {
    let index = index_with(&cluster(), PodsMode::Insecure);
    for name in [
        "*.default.svc.cluster.local.",
        "any.default.svc.cluster.local.",
        "web.*.svc.cluster.local.",
        "web.any.svc.cluster.local.",
        "*.*.svc.cluster.local.",
        "_http._tcp.*.default.svc.cluster.local.",
        "*.db.default.svc.cluster.local.",
    ] {
        for qtype in [RecordType::A, RecordType::SRV] {
            assert_nxdomain(&index, name, qtype);
        }
    }
}

#[test]
fn comparisons_ignore_case_and_the_question_is_echoed() {
    let index = index();
    let name = "WeB.DeFaUlT.SVC.Cluster.LOCAL.";
    let q = query(name, RecordType::A);
    let r = reply(answer(&index, &q, Some(512)));
    // Header ID and the question bytes exactly as sent.
    assert_eq!(&r[..2], &q[..2]);
    assert_eq!(&r[12..q.len()], &q[12..]);
    let msg = decode(&r);
    assert_eq!(msg.queries[0].name().to_string(), name);
    assert_eq!(a_records(&msg.answers), ["10.96.0.10"]);
    // The answer's owner points at the question, so it carries the same case.
    assert_eq!(names(&msg.answers), [name]);

    let msg = ask(
        &index,
        "_HTTP._Tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(msg.answers.len(), 1);
    let msg = ask(&index, "DB-0.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&msg.answers), ["10.0.0.4"]);
    let msg = ask(&index, "Dns-Version.Cluster.Local.", RecordType::TXT);
    assert_eq!(rdata(&msg.answers), ["1.1.0"]);
    // Negative answers point their SOA owner into the question too.
    let msg = ask(&index, "NOPE.Cluster.Local.", RecordType::A);
    assert_eq!(msg.authorities[0].name.to_string(), "Cluster.Local.");
}

#[test]
fn ttl_is_the_configured_one_everywhere() {
    let index = index();
    let mut records = Vec::new();
    for (name, qtype) in [
        ("web.default.svc.cluster.local.", RecordType::SRV),
        ("db.default.svc.cluster.local.", RecordType::SRV),
        ("cluster.local.", RecordType::NS),
        ("cluster.local.", RecordType::SOA),
        ("dns-version.cluster.local.", RecordType::TXT),
        ("alias.default.svc.cluster.local.", RecordType::A),
        ("10.0.96.10.in-addr.arpa.", RecordType::PTR),
        ("nope.cluster.local.", RecordType::A),
    ] {
        let msg = ask(&index, name, qtype);
        records.extend(msg.answers);
        records.extend(msg.authorities);
        records.extend(msg.additionals);
    }
    assert!(records.len() > 10);
    assert!(records.iter().all(|r| r.ttl == TTL), "{records:?}");
}

#[test]
fn any_query_returns_every_record_of_the_name() {
    let msg = ask(&index(), "web.default.svc.cluster.local.", RecordType::ANY);
    let types: Vec<_> = msg.answers.iter().map(Record::record_type).collect();
    assert_eq!(
        types,
        [RecordType::A, RecordType::SRV, RecordType::SRV],
        "{msg:?}"
    );
}

// === forwarding and sync ===

#[test]
fn names_outside_the_zones_are_forwarded() {
    let index = index();
    for (name, qtype) in [
        ("example.com.", RecordType::A),
        ("cluster.local.example.com.", RecordType::A),
        ("xcluster.local.", RecordType::A),
        (".", RecordType::NS),
        ("1.2.3.4.in-addr.arpa.", RecordType::PTR),
        ("in-addr.arpa.", RecordType::SOA),
        ("96.10.in-addr.arpa.", RecordType::PTR),
        ("ip6.arpa.", RecordType::SOA),
    ] {
        assert_eq!(
            answer(&index, &query(name, qtype), Some(512)),
            Answer::Forward,
            "{name}"
        );
    }
}

#[test]
fn not_synced_is_servfail_inside_the_zone() {
    let index = Index::empty_not_synced("cluster.local").unwrap();
    assert!(!index.is_synced());
    for name in [
        "web.default.svc.cluster.local.",
        "cluster.local.",
        "X.Cluster.Local.",
    ] {
        let msg = ask(&index, name, RecordType::A);
        assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
        assert!(msg.answers.is_empty());
    }
    assert_eq!(
        answer(&index, &query("example.com.", RecordType::A), None),
        Answer::Forward
    );
    assert_eq!(
        answer(
            &index,
            &query("10.0.96.10.in-addr.arpa.", RecordType::PTR),
            None
        ),
        Answer::Forward
    );
}

#[test]
fn is_cluster_name() {
    let index = index();
    assert!(index.is_cluster_name("web.default.svc.cluster.local"));
    assert!(index.is_cluster_name("Anything.Cluster.Local."));
    assert!(index.is_cluster_name("cluster.local"));
    assert!(index.is_cluster_name("10.0.96.10.in-addr.arpa."));
    assert!(!index.is_cluster_name("1.2.3.4.in-addr.arpa."));
    assert!(!index.is_cluster_name("xcluster.local"));
    assert!(!index.is_cluster_name("example.com"));
    assert_eq!(index.zone(), "cluster.local");
}

#[test]
fn zone_is_validated_and_normalised() {
    let c = cluster();
    let input = |zone| IndexInput {
        services: &c.services,
        slices: &c.slices,
        pods: &c.pods,
        zone,
        ttl: TTL,
        pods_mode: PodsMode::Disabled,
    };
    assert!(matches!(
        Index::build(&input("")),
        Err(Error::InvalidZone { .. })
    ));
    assert!(Index::build(&input("bad zone")).is_err());
    assert!(Index::empty_not_synced("..").is_err());
    let index = Index::build(&input("Cluster.Local.")).unwrap();
    assert_eq!(index.zone(), "cluster.local");
    let msg = ask(&index, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&msg.answers), ["10.96.0.10"]);
}

#[test]
fn another_zone_name() {
    let c = cluster();
    let index = Index::build(&IndexInput {
        services: &c.services,
        slices: &c.slices,
        pods: &c.pods,
        zone: "k8s.example.org",
        ttl: 5,
        pods_mode: PodsMode::Disabled,
    })
    .unwrap();
    let msg = ask(&index, "web.default.svc.k8s.example.org.", RecordType::A);
    assert_eq!(a_records(&msg.answers), ["10.96.0.10"]);
    assert_eq!(msg.answers[0].ttl, 5);
    let msg = ask(&index, "10.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdata(&msg.answers), ["web.default.svc.k8s.example.org."]);
    assert_eq!(
        answer(
            &index,
            &query("web.default.svc.cluster.local.", RecordType::A),
            None
        ),
        Answer::Forward
    );
}

#[test]
fn empty_snapshot() {
    let index = Index::build(&IndexInput {
        services: &[],
        slices: &[],
        pods: &[],
        zone: ZONE,
        ttl: TTL,
        pods_mode: PodsMode::Verified,
    })
    .unwrap();
    assert!(index.is_synced());
    assert_nxdomain(&index, "web.default.svc.cluster.local.", RecordType::A);
    assert_nodata(&index, "svc.cluster.local.", RecordType::A);
    let msg = ask(&index, "cluster.local.", RecordType::NS);
    assert!(msg.additionals.is_empty());
}

#[test]
fn index_can_be_shared_across_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Index>();
    shared::<Answer>();
}
