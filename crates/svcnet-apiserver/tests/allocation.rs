//! Service IP and NodePort allocation through the API: requested and dynamic values, dual
//! stack, release on delete and on type change, and a full range.

mod common;

use common::{Options, Transport, start_with};
use serde_json::{Value, json};
use svcnet_apiserver::Config;

const URI: &str = "/api/v1/namespaces/default/services";

fn svc(name: &str, spec: Value) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}});
    for (k, v) in spec.as_object().unwrap() {
        s["spec"][k] = v.clone();
    }
    s
}

fn opts(cidrs: &[&str], ports: &str) -> Options {
    Options {
        config: Config {
            service_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            node_port_range: ports.parse().unwrap(),
            ..Default::default()
        },
        ..Options::quiet()
    }
}

#[tokio::test]
async fn node_ports_are_allocated_refused_and_released() {
    let srv = start_with(Transport::InProcess, opts(&["10.96.0.0/24"], "30000-30099")).await;
    let (code, a) = srv
        .post_json(
            URI,
            &svc(
                "a",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30050}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{a}");
    let (code, s) = srv
        .post_json(
            URI,
            &svc(
                "b",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30050}]}),
            ),
        )
        .await;
    assert_eq!(code, 422);
    assert_eq!(
        s["message"],
        "Service \"b\" is invalid: spec.ports[0].nodePort: Invalid value: 30050: provided port is already allocated"
    );
    let (code, s) = srv
        .post_json(
            URI,
            &svc(
                "b",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 31000}]}),
            ),
        )
        .await;
    assert_eq!(code, 422);
    assert!(
        s["message"].as_str().unwrap().ends_with(
            "provided port is not in the valid range. The range of valid ports is 30000-30099"
        ),
        "{s}"
    );
    let (code, dynamic) = srv
        .post_json(URI, &svc("c", json!({"type": "NodePort"})))
        .await;
    assert_eq!(code, 201);
    let np = dynamic["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=30099).contains(&np));

    // NodePort -> ClusterIP releases the port; delete releases the other one.
    let (code, body) = srv
        .raw(
            "PATCH",
            &format!("{URI}/a"),
            "application/merge-patch+json",
            json!({"spec": {"type": "ClusterIP"}}).to_string(),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["spec"]["ports"][0].get("nodePort").is_none(), "{body}");
    let (code, _) = srv
        .post_json(
            URI,
            &svc(
                "d",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30050}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "port released by the type change");
    srv.raw("DELETE", &format!("{URI}/c"), "application/json", "")
        .await;
    let (code, _) = srv
        .post_json(
            URI,
            &svc(
                "e",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": np}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "port released by the delete");
}

#[tokio::test]
async fn dual_stack_services_get_one_address_per_family() {
    let srv = start_with(
        Transport::InProcess,
        opts(&["10.96.0.0/16", "fd00:10:96::/112"], "30000-32767"),
    )
    .await;
    let (code, s) = srv.post_json(URI, &svc("single", json!({}))).await;
    assert_eq!(code, 201);
    assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(s["spec"]["ipFamilyPolicy"], "SingleStack");
    let (code, s) = srv
        .post_json(
            URI,
            &svc("dual", json!({"ipFamilyPolicy": "PreferDualStack"})),
        )
        .await;
    assert_eq!(code, 201, "{s}");
    assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
    let ips = s["spec"]["clusterIPs"].as_array().unwrap();
    assert_eq!(ips.len(), 2);
    assert!(
        ips[1].as_str().unwrap().starts_with("fd00:10:96::"),
        "{ips:?}"
    );
    let (code, s) = srv
        .post_json(URI, &svc("v6", json!({"ipFamilies": ["IPv6"]})))
        .await;
    assert_eq!(code, 201, "{s}");
    assert!(s["spec"]["clusterIP"].as_str().unwrap().contains(':'));
    let (code, s) = srv
        .post_json(
            URI,
            &svc(
                "v6first",
                json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{s}");
    assert!(s["spec"]["clusterIPs"][0].as_str().unwrap().contains(':'));
    assert!(s["spec"]["clusterIPs"][1].as_str().unwrap().contains('.'));
    let (code, s) = srv
        .post_json(
            URI,
            &svc(
                "chosen",
                json!({"clusterIPs": ["10.96.0.77", "fd00:10:96::77"], "clusterIP": "10.96.0.77"}),
            ),
        )
        .await;
    // Without a policy the Service is single-stack, which two addresses contradict (as
    // kube-apiserver answers).
    assert_eq!(code, 422, "{s}");
    assert_eq!(
        s["details"]["causes"][0]["field"], "spec.ipFamilyPolicy",
        "{s}"
    );
    let (code, s) = srv
        .post_json(
            URI,
            &svc(
                "chosen",
                json!({"clusterIPs": ["10.96.0.77", "fd00:10:96::77"], "clusterIP": "10.96.0.77",
                    "ipFamilyPolicy": "PreferDualStack"}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{s}");
    assert_eq!(
        s["spec"]["clusterIPs"],
        json!(["10.96.0.77", "fd00:10:96::77"])
    );
    let (code, s) = srv
        .post_json(URI, &svc("headless", json!({"clusterIP": "None"})))
        .await;
    assert_eq!(code, 201, "{s}");
    assert_eq!(s["spec"]["clusterIPs"], json!(["None"]));
}

#[tokio::test]
async fn a_full_range_gives_a_clear_error_and_frees_on_delete() {
    // A /28 has 14 usable addresses; the kubernetes Service holds one.
    let srv = start_with(Transport::InProcess, opts(&["10.96.0.0/28"], "30000-32767")).await;
    for i in 0..13 {
        let (code, s) = srv.post_json(URI, &svc(&format!("s{i}"), json!({}))).await;
        assert_eq!(code, 201, "{s}");
    }
    let (code, s) = srv.post_json(URI, &svc("one-too-many", json!({}))).await;
    assert_eq!(code, 500, "{s}");
    assert_eq!(
        s["message"],
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    );
    srv.raw("DELETE", &format!("{URI}/s3"), "application/json", "")
        .await;
    let (code, _) = srv.post_json(URI, &svc("one-too-many", json!({}))).await;
    assert_eq!(code, 201);
}

/// A client that goes away mid-request (its request future dropped at any point after the
/// server took it) does not stop the write half-way: the delete is carried out and its
/// NodePort and ClusterIP are free again, every time.
#[tokio::test]
async fn a_write_whose_client_goes_away_still_completes_and_leaks_nothing() {
    use tower::ServiceExt;

    let srv = start_with(Transport::InProcess, opts(&["10.0.0.0/24"], "30000-30010")).await;
    let spec = json!({"type": "NodePort", "clusterIP": "10.0.0.50",
        "ports": [{"port": 80, "nodePort": 30005}]});
    // A dropped request may still be finishing when the object is gone: give it a moment.
    let create = async |name: &str| {
        let mut created = (0, Value::Null);
        for _ in 0..200 {
            created = srv.post_json(URI, &svc(name, spec.clone())).await;
            if created.0 == 201 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        created
    };
    for polls in 1..=12 {
        let (code, body) = create("gone").await;
        assert_eq!(code, 201, "create before drop {polls}: {body}");
        let req = http::Request::builder()
            .method("DELETE")
            .uri(format!("{URI}/gone"))
            .body(axum::body::Body::empty())
            .unwrap();
        let mut fut = Box::pin(srv.server.router().oneshot(req));
        for _ in 0..polls {
            if futures::poll!(&mut fut).is_ready() {
                break;
            }
            tokio::task::yield_now().await;
        }
        drop(fut);
        // The delete that was started completes; then the same IP and port can be taken again.
        let mut gone = false;
        for _ in 0..200 {
            let (code, _) = srv.raw_text("GET", &format!("{URI}/gone")).await;
            if code == 404 {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            gone,
            "delete dropped after {polls} polls was not carried out"
        );
    }
    let (code, body) = create("again").await;
    assert_eq!(code, 201, "{body}");
}
