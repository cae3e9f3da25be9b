//! The DNS request path: any bytes from the network go through `answer` without a panic, and
//! a reply always carries the query's ID and fits the transport's limit.

#![no_main]

use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use libfuzzer_sys::fuzz_target;
use svcnet_dns::{Answer, Index, IndexInput, PodsMode, answer};

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let services: Vec<Service> = serde_json::from_value(serde_json::json!([
            {"metadata": {"name": "web", "namespace": "default"},
             "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"], "ipFamilies": ["IPv4", "IPv6"],
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}},
            {"metadata": {"name": "hl", "namespace": "default"},
             "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}},
            {"metadata": {"name": "ext", "namespace": "default"},
             "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}}
        ]))
        .expect("fixture Services");
        let slices: Vec<EndpointSlice> = serde_json::from_value(serde_json::json!([
            {"metadata": {"name": "hl-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "hl"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
             "endpoints": (0..40).map(|i| serde_json::json!({"addresses": [format!("10.244.0.{}", i + 2)], "hostname": format!("h{i}")})).collect::<Vec<_>>()}
        ]))
        .expect("fixture slices");
        Index::build(&IndexInput {
            services: &services,
            slices: &slices,
            pods: &[],
            zone: "cluster.local",
            ttl: 5,
            pods_mode: PodsMode::Insecure,
        })
        .expect("index")
    })
}

fuzz_target!(|data: &[u8]| {
    for limit in [Some(512), Some(4096), None] {
        if let Answer::Reply(reply) = answer(index(), data, limit) {
            assert!(reply.len() >= 12 && data.len() >= 2);
            assert_eq!(&reply[..2], &data[..2], "the reply echoes the query ID");
            assert!(reply.len() <= limit.unwrap_or(65_535).max(512).max(data.len()));
        }
    }
    let _ = svcnet_dns::servfail(data);
    let _ = svcnet_dns::refused(data);
});
