//! Invalid Services get kube-apiserver's 422 `Status` with the exact field path and cause
//! reason, and nothing is stored. Malformed requests get 400/413/415.

mod common;

use axum::body::Body;
use common::{Options, Transport, start_quiet, start_with};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use svcnet_apiserver::Config;
use tower::ServiceExt;

const SERVICES: &str = "/api/v1/namespaces/default/services";

/// (case, spec overrides merged over a valid base, metadata overrides, expected field, reason)
fn cases() -> Vec<(&'static str, Value, Value, &'static str, &'static str)> {
    let none = json!({});
    vec![
        (
            "name with underscore",
            none.clone(),
            json!({"name": "bad_name"}),
            "metadata.name",
            "FieldValueInvalid",
        ),
        (
            "name starts with digit",
            none.clone(),
            json!({"name": "1abc"}),
            "metadata.name",
            "FieldValueInvalid",
        ),
        (
            "name too long",
            none.clone(),
            json!({"name": "a".repeat(64)}),
            "metadata.name",
            "FieldValueInvalid",
        ),
        (
            "name missing",
            none.clone(),
            json!({"name": null}),
            "metadata.name",
            "FieldValueRequired",
        ),
        (
            "bad label key",
            none.clone(),
            json!({"labels": {"bad key": "x"}}),
            "metadata.labels",
            "FieldValueInvalid",
        ),
        (
            "bad label value",
            none.clone(),
            json!({"labels": {"k": "-x"}}),
            "metadata.labels",
            "FieldValueInvalid",
        ),
        (
            "no ports",
            json!({"ports": null}),
            none.clone(),
            "spec.ports",
            "FieldValueRequired",
        ),
        (
            "port zero",
            json!({"ports": [{"port": 0}]}),
            none.clone(),
            "spec.ports[0].port",
            "FieldValueInvalid",
        ),
        (
            "port too big",
            json!({"ports": [{"port": 70000}]}),
            none.clone(),
            "spec.ports[0].port",
            "FieldValueInvalid",
        ),
        (
            "unknown protocol",
            json!({"ports": [{"port": 80, "protocol": "HTTP"}]}),
            none.clone(),
            "spec.ports[0].protocol",
            "FieldValueNotSupported",
        ),
        (
            "second port unnamed",
            json!({"ports": [{"name": "a", "port": 80}, {"port": 81}]}),
            none.clone(),
            "spec.ports[1].name",
            "FieldValueRequired",
        ),
        (
            "port name underscore",
            json!({"ports": [{"name": "123_abc", "port": 80}]}),
            none.clone(),
            "spec.ports[0].name",
            "FieldValueInvalid",
        ),
        (
            "port name leading dash",
            json!({"ports": [{"name": "-web", "port": 80}]}),
            none.clone(),
            "spec.ports[0].name",
            "FieldValueInvalid",
        ),
        (
            "port name upper case",
            json!({"ports": [{"name": "Web", "port": 80}]}),
            none.clone(),
            "spec.ports[0].name",
            "FieldValueInvalid",
        ),
        (
            "duplicate port names",
            json!({"ports": [{"name": "web", "port": 80}, {"name": "web", "port": 81}]}),
            none.clone(),
            "spec.ports[1].name",
            "FieldValueDuplicate",
        ),
        (
            "duplicate port and protocol",
            json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}),
            none.clone(),
            "spec.ports[1]",
            "FieldValueDuplicate",
        ),
        (
            "target port too big",
            json!({"ports": [{"port": 80, "targetPort": 70000}]}),
            none.clone(),
            "spec.ports[0].targetPort",
            "FieldValueInvalid",
        ),
        (
            "target port name too long",
            json!({"ports": [{"port": 80, "targetPort": "averyverylongname"}]}),
            none.clone(),
            "spec.ports[0].targetPort",
            "FieldValueInvalid",
        ),
        (
            "target port name double dash",
            json!({"ports": [{"port": 80, "targetPort": "a--b"}]}),
            none.clone(),
            "spec.ports[0].targetPort",
            "FieldValueInvalid",
        ),
        (
            "target port name no letter",
            json!({"ports": [{"port": 80, "targetPort": "8-0"}]}),
            none.clone(),
            "spec.ports[0].targetPort",
            "FieldValueInvalid",
        ),
        (
            "bad appProtocol",
            json!({"ports": [{"port": 80, "appProtocol": "bad proto!"}]}),
            none.clone(),
            "spec.ports[0].appProtocol",
            "FieldValueInvalid",
        ),
        (
            "unknown type",
            json!({"type": "Foo"}),
            none.clone(),
            "spec.type",
            "FieldValueNotSupported",
        ),
        (
            "nodePort on ClusterIP",
            json!({"ports": [{"port": 80, "nodePort": 30080}]}),
            none.clone(),
            "spec.ports[0].nodePort",
            "FieldValueForbidden",
        ),
        (
            "nodePort out of range",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]}),
            none.clone(),
            "spec.ports[0].nodePort",
            "FieldValueInvalid",
        ),
        (
            "duplicate nodePort",
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30080}]}),
            none.clone(),
            "spec.ports[1].nodePort",
            // The allocator refuses it first: "provided port is already allocated".
            "FieldValueInvalid",
        ),
        (
            "duplicate nodePort on one port number",
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30081}, {"name": "b", "port": 80, "nodePort": 30081}]}),
            none.clone(),
            "spec.ports[1].nodePort",
            "FieldValueDuplicate",
        ),
        (
            "unknown affinity",
            json!({"sessionAffinity": "Sticky"}),
            none.clone(),
            "spec.sessionAffinity",
            "FieldValueNotSupported",
        ),
        (
            "affinity timeout zero",
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
            none.clone(),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "FieldValueInvalid",
        ),
        (
            "affinity timeout too long",
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}),
            none.clone(),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "FieldValueInvalid",
        ),
        (
            "clusterIP not an IP",
            json!({"clusterIP": "abc"}),
            none.clone(),
            "spec.clusterIPs[0]",
            "FieldValueInvalid",
        ),
        (
            "clusterIP outside range",
            json!({"clusterIP": "1.2.3.4"}),
            none.clone(),
            "spec.clusterIPs",
            "FieldValueInvalid",
        ),
        (
            "clusterIP already allocated",
            json!({"clusterIP": "10.96.0.1"}),
            none.clone(),
            "spec.clusterIPs",
            "FieldValueInvalid",
        ),
        (
            "headless NodePort",
            json!({"type": "NodePort", "clusterIP": "None"}),
            none.clone(),
            "spec.clusterIPs[0]",
            "FieldValueInvalid",
        ),
        (
            "clusterIPs disagree",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.21"]}),
            none.clone(),
            "spec.clusterIPs",
            "FieldValueInvalid",
        ),
        (
            "ExternalName without name",
            json!({"type": "ExternalName", "ports": null}),
            none.clone(),
            "spec.externalName",
            "FieldValueRequired",
        ),
        (
            "ExternalName bad name",
            json!({"type": "ExternalName", "externalName": "foo_bar.com"}),
            none.clone(),
            "spec.externalName",
            "FieldValueInvalid",
        ),
        (
            "ExternalName with clusterIP",
            json!({"type": "ExternalName", "externalName": "example.com", "clusterIP": "10.96.0.30"}),
            none.clone(),
            "spec.clusterIPs",
            "FieldValueForbidden",
        ),
        (
            "unknown IP family",
            json!({"ipFamilies": ["IPv5"]}),
            none.clone(),
            "spec.ipFamilies[0]",
            "FieldValueNotSupported",
        ),
        (
            "unknown family policy",
            json!({"ipFamilyPolicy": "Whatever"}),
            none.clone(),
            "spec.ipFamilyPolicy",
            "FieldValueNotSupported",
        ),
        (
            "dual stack required on single stack",
            json!({"ipFamilyPolicy": "RequireDualStack"}),
            none.clone(),
            "spec.ipFamilyPolicy",
            "FieldValueInvalid",
        ),
        (
            "family not configured",
            json!({"ipFamilies": ["IPv6"]}),
            none.clone(),
            "spec.ipFamilies[0]",
            "FieldValueInvalid",
        ),
        (
            "bad external IP",
            json!({"externalIPs": ["x"]}),
            none.clone(),
            "spec.externalIPs[0]",
            "FieldValueInvalid",
        ),
        (
            "source ranges on ClusterIP",
            json!({"loadBalancerSourceRanges": ["10.0.0.0/8"]}),
            none.clone(),
            "spec.LoadBalancerSourceRanges",
            "FieldValueForbidden",
        ),
        (
            "bad source range",
            json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"]}),
            none.clone(),
            "spec.LoadBalancerSourceRanges",
            "FieldValueInvalid",
        ),
        (
            "eTP on ClusterIP",
            json!({"externalTrafficPolicy": "Local"}),
            none.clone(),
            "spec.externalTrafficPolicy",
            "FieldValueInvalid",
        ),
        (
            "unknown eTP",
            json!({"type": "NodePort", "externalTrafficPolicy": "Foo"}),
            none.clone(),
            "spec.externalTrafficPolicy",
            "FieldValueNotSupported",
        ),
        (
            "unknown iTP",
            json!({"internalTrafficPolicy": "Foo"}),
            none.clone(),
            "spec.internalTrafficPolicy",
            "FieldValueNotSupported",
        ),
        (
            "allocateLoadBalancerNodePorts on ClusterIP",
            json!({"allocateLoadBalancerNodePorts": true}),
            none.clone(),
            "spec.allocateLoadBalancerNodePorts",
            "FieldValueForbidden",
        ),
        (
            "LB exposes kubelet port",
            json!({"type": "LoadBalancer", "ports": [{"port": 10250}]}),
            none.clone(),
            "spec.ports[0]",
            "FieldValueInvalid",
        ),
        (
            "healthCheckNodePort on ClusterIP",
            json!({"healthCheckNodePort": 30100}),
            none.clone(),
            "spec.healthCheckNodePort",
            "FieldValueInvalid",
        ),
        (
            "bad selector key",
            json!({"selector": {"bad key": "x"}}),
            none.clone(),
            "spec.selector",
            "FieldValueInvalid",
        ),
        (
            "bad selector value",
            json!({"selector": {"app": "-x"}}),
            none.clone(),
            "spec.selector",
            "FieldValueInvalid",
        ),
        (
            "clusterIPs without clusterIP",
            json!({"clusterIPs": ["10.96.0.20"]}),
            none.clone(),
            "spec.clusterIPs",
            "FieldValueInvalid",
        ),
        (
            "IPv6 clusterIP on an IPv4 cluster",
            json!({"clusterIP": "fd00::10"}),
            none.clone(),
            "spec.clusterIPs[0]",
            "FieldValueInvalid",
        ),
        (
            "two clusterIPs without a dual-stack policy",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"]}),
            none.clone(),
            "spec.ipFamilyPolicy",
            "FieldValueInvalid",
        ),
        (
            "two clusterIPs of one family",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "10.96.0.21"], "ipFamilyPolicy": "RequireDualStack"}),
            none.clone(),
            "spec.clusterIPs",
            "FieldValueInvalid",
        ),
        (
            "headless LoadBalancer",
            json!({"type": "LoadBalancer", "clusterIP": "None"}),
            none.clone(),
            "spec.clusterIPs[0]",
            "FieldValueInvalid",
        ),
        (
            "link-local external IP",
            json!({"externalIPs": ["169.254.1.1"]}),
            none.clone(),
            "spec.externalIPs[0]",
            "FieldValueInvalid",
        ),
        (
            "loopback external IP",
            json!({"externalIPs": ["127.0.0.1"]}),
            none.clone(),
            "spec.externalIPs[0]",
            "FieldValueInvalid",
        ),
        (
            "eTP on ClusterIP with externalIPs",
            json!({"externalIPs": ["1.2.3.4"], "externalTrafficPolicy": "Local"}),
            none.clone(),
            "spec.externalTrafficPolicy",
            "FieldValueInvalid",
        ),
        (
            "source-ranges annotation on ClusterIP",
            none.clone(),
            json!({"annotations": {"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8"}}),
            "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]",
            "FieldValueForbidden",
        ),
        (
            "bad source-ranges annotation",
            json!({"type": "LoadBalancer"}),
            json!({"annotations": {"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8,nope"}}),
            "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]",
            "FieldValueInvalid",
        ),
        (
            "loadBalancerClass on ClusterIP",
            json!({"loadBalancerClass": "example.com/lb"}),
            none.clone(),
            "spec.loadBalancerClass",
            "FieldValueForbidden",
        ),
        (
            "bad loadBalancerClass",
            json!({"type": "LoadBalancer", "loadBalancerClass": "bad class"}),
            none.clone(),
            "spec.loadBalancerClass",
            "FieldValueInvalid",
        ),
        (
            "empty iTP",
            json!({"internalTrafficPolicy": ""}),
            none.clone(),
            "spec.internalTrafficPolicy",
            "FieldValueNotSupported",
        ),
        (
            "port name with a dot",
            json!({"ports": [{"name": "a.b", "port": 80}]}),
            none.clone(),
            "spec.ports[0].name",
            "FieldValueInvalid",
        ),
        (
            "topology annotations disagree",
            none.clone(),
            json!({"annotations": {"service.kubernetes.io/topology-aware-hints": "auto", "service.kubernetes.io/topology-mode": "Auto"}}),
            "metadata.annotations[service.kubernetes.io/topology-mode]",
            "FieldValueInvalid",
        ),
        (
            "bad generateName",
            none.clone(),
            json!({"name": null, "generateName": "Bad-"}),
            "metadata.generateName",
            "FieldValueInvalid",
        ),
        (
            "conflicting finalizers",
            none.clone(),
            json!({"finalizers": ["orphan", "foregroundDeletion"]}),
            "metadata.finalizers",
            "FieldValueInvalid",
        ),
        (
            "owner reference without uid",
            none.clone(),
            json!({"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": ""}]}),
            "metadata.ownerReferences.uid",
            "FieldValueInvalid",
        ),
        (
            // A 1.33 field, kept: svcnet serves 1.33's schema.
            "unknown traffic distribution",
            json!({"trafficDistribution": "Anywhere"}),
            none.clone(),
            "spec.trafficDistribution",
            "FieldValueNotSupported",
        ),
    ]
}

fn merge(base: &mut Value, over: &Value) {
    for (k, v) in over.as_object().unwrap() {
        base[k] = v.clone();
    }
}

async fn service_count(srv: &common::TestServer) -> usize {
    let (code, list) = srv.get("/api/v1/services").await;
    assert_eq!(code, 200);
    list["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn invalid_services_get_422_with_field_causes() {
    let srv = start_quiet(Transport::InProcess).await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let before = service_count(&srv).await;
    for (what, spec, meta, field, reason) in cases {
        let mut obj = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "x"},
            "spec": {"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80}]}
        });
        merge(&mut obj["spec"], &spec);
        merge(&mut obj["metadata"], &meta);
        let (code, status) = srv
            .post_json("/api/v1/namespaces/default/services", &obj)
            .await;
        assert_eq!(code, 422, "{what}: {status}");
        assert_eq!(status["kind"], "Status", "{what}");
        assert_eq!(status["status"], "Failure", "{what}");
        assert_eq!(status["reason"], "Invalid", "{what}");
        assert_eq!(status["code"], 422, "{what}");
        assert_eq!(status["details"]["kind"], "Service", "{what}");
        let causes = status["details"]["causes"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no causes: {status}"));
        assert!(
            causes
                .iter()
                .any(|c| c["field"] == field && c["reason"] == reason),
            "{what}: expected {field} {reason}, got {causes:?}"
        );
    }
    assert_eq!(
        service_count(&srv).await,
        before,
        "nothing stored from rejected requests"
    );
}

#[tokio::test]
async fn status_body_is_shaped_like_kube_apiserver() {
    let srv = start_quiet(Transport::InProcess).await;
    let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": 0, "targetPort": 80}]}});
    let (_, status) = srv
        .post_json("/api/v1/namespaces/default/services", &obj)
        .await;
    assert_eq!(
        status,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Service \"x\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "reason": "Invalid",
            "details": {"name": "x", "kind": "Service", "causes": [{
                "reason": "FieldValueInvalid",
                "message": "Invalid value: 0: must be between 1 and 65535, inclusive",
                "field": "spec.ports[0].port"}]},
            "code": 422
        })
    );
    let out = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "y"}, "spec": {"clusterIP": "1.2.3.4", "ports": [{"port": 80}]}});
    let (_, status) = srv
        .post_json("/api/v1/namespaces/default/services", &out)
        .await;
    assert_eq!(
        status["message"],
        "Service \"y\" is invalid: spec.clusterIPs: Invalid value: []string{\"1.2.3.4\"}: failed to allocate IP 1.2.3.4: the provided IP (1.2.3.4) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    );
}

#[tokio::test]
async fn immutable_cluster_ip_and_update_validation() {
    let srv = start_quiet(Transport::InProcess).await;
    let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.40", "ports": [{"port": 80}]}});
    let (code, _) = srv
        .post_json("/api/v1/namespaces/default/services", &obj)
        .await;
    assert_eq!(code, 201);
    let patch = json!({"spec": {"clusterIP": "10.96.0.41", "clusterIPs": ["10.96.0.41"]}});
    let (code, status) = srv
        .raw(
            "PATCH",
            "/api/v1/namespaces/default/services/s",
            "application/merge-patch+json",
            patch.to_string(),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.clusterIPs[0]"
    );
    // Changing to ExternalName releases the address; it can then be taken by another Service.
    let to_ext = json!({"spec": {"type": "ExternalName", "externalName": "example.com", "clusterIP": null, "clusterIPs": null}});
    let (code, body) = srv
        .raw(
            "PATCH",
            "/api/v1/namespaces/default/services/s",
            "application/merge-patch+json",
            to_ext.to_string(),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["spec"].get("clusterIP").is_none(), "{body}");
    let reuse = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "t"}, "spec": {"clusterIP": "10.96.0.40", "ports": [{"port": 80}]}});
    let (code, body) = srv
        .post_json("/api/v1/namespaces/default/services", &reuse)
        .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn malformed_requests_get_400_413_415() {
    let cfg = Config {
        max_body_bytes: 64 * 1024,
        ..Default::default()
    };
    let srv = start_with(
        Transport::InProcess,
        Options {
            config: cfg,
            ..Options::quiet()
        },
    )
    .await;
    let uri = "/api/v1/namespaces/default/services";
    let (code, s) = srv.raw("POST", uri, "application/json", "{not json").await;
    assert_eq!(
        (code, s["reason"].as_str()),
        (400, Some("BadRequest")),
        "{s}"
    );
    let (code, s) = srv
        .raw("POST", uri, "application/yaml", "kind: [unclosed")
        .await;
    assert_eq!(code, 400, "{s}");
    let wrong_kind = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}});
    assert_eq!(srv.post_json(uri, &wrong_kind).await.0, 400);
    let wrong_version = json!({"apiVersion": "v2", "kind": "Service", "metadata": {"name": "x"}});
    assert_eq!(srv.post_json(uri, &wrong_version).await.0, 400);
    let wrong_ns = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "other"}, "spec": {"ports": [{"port": 80}]}});
    let (code, s) = srv.post_json(uri, &wrong_ns).await;
    assert_eq!(code, 400, "{s}");
    let wrong_type = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": "eighty"}});
    assert_eq!(srv.post_json(uri, &wrong_type).await.0, 400);
    let big = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "annotations": {"a": "x".repeat(100_000)}}});
    let (code, s) = srv.post_json(uri, &big).await;
    assert_eq!(
        (code, s["reason"].as_str()),
        (413, Some("RequestEntityTooLarge")),
        "{s}"
    );
    let (code, _) = srv.raw("POST", uri, "text/plain", "hello").await;
    assert_eq!(code, 415);
    let (code, s) = srv.post_json("/api/v1/namespaces/missing/services", &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}]}})).await;
    assert_eq!(code, 404, "{s}");
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: from-yaml}\nspec:\n  ports: [{port: 80}]\n";
    let (code, s) = srv.raw("POST", uri, "application/yaml", yaml).await;
    assert_eq!(code, 201, "{s}");
    assert_eq!(
        service_count(&srv).await,
        2,
        "only the valid YAML one was stored"
    );
}

/// A request through the router that also returns the `Warning` headers.
async fn send(
    srv: &common::TestServer,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Value,
) -> (u16, Vec<String>, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = srv
        .server
        .router()
        .oneshot(req)
        .await
        .expect("router answers");
    let code = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().expect("ascii warning").to_owned())
        .collect();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (code, warnings, v)
}

fn svc(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

async fn merge_patch(srv: &common::TestServer, name: &str, patch: Value) -> (u16, Value) {
    srv.raw(
        "PATCH",
        &format!("{SERVICES}/{name}"),
        "application/merge-patch+json",
        patch.to_string(),
    )
    .await
}

/// `sessionAffinity: None` drops `sessionAffinityConfig` in defaulting, on every write path.
#[tokio::test]
async fn affinity_none_drops_the_config_on_create_put_and_patch() {
    let srv = start_quiet(Transport::InProcess).await;
    let spec = json!({"sessionAffinity": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}, "ports": [{"port": 80}]});
    let (code, body) = srv.post_json(SERVICES, &svc("a", spec.clone())).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["sessionAffinity"], "None");
    assert!(
        body["spec"].get("sessionAffinityConfig").is_none(),
        "{body}"
    );
    // PUT of the same spec on the existing Service.
    let (code, _, body) = send(
        &srv,
        "PUT",
        &format!("{SERVICES}/a"),
        "application/json",
        svc("a", spec),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body["spec"].get("sessionAffinityConfig").is_none(),
        "{body}"
    );
    // Patches from ClientIP to None: the merged document still has the config.
    for (name, content_type) in [
        ("b", "application/merge-patch+json"),
        ("c", "application/strategic-merge-patch+json"),
    ] {
        let client_ip = json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}, "ports": [{"port": 80}]});
        let (code, body) = srv.post_json(SERVICES, &svc(name, client_ip)).await;
        assert_eq!(code, 201, "{body}");
        let (code, body) = srv
            .raw(
                "PATCH",
                &format!("{SERVICES}/{name}"),
                content_type,
                json!({"spec": {"sessionAffinity": "None"}}).to_string(),
            )
            .await;
        assert_eq!(code, 200, "{content_type}: {body}");
        assert!(
            body["spec"].get("sessionAffinityConfig").is_none(),
            "{content_type}: {body}"
        );
    }
    // ClientIP with an incomplete config gets the whole default one.
    let (code, body) = srv
        .post_json(SERVICES, &svc("d", json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {}, "ports": [{"port": 80}]})))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
}

/// Report §4 c1 and c2: exact Status bodies for clusterIP and ipFamilies changes.
#[tokio::test]
async fn cluster_ip_and_family_changes_get_kubes_status() {
    let srv = start_quiet(Transport::InProcess).await;
    let (code, body) = srv
        .post_json(
            SERVICES,
            &svc(
                "s",
                json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, status) = merge_patch(&srv, "s", json!({"spec": {"clusterIP": "10.96.0.6"}})).await;
    assert_eq!(code, 422);
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Service \"s\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.6\"}: may not change once set",
            "reason": "Invalid",
            "details": {"name": "s", "kind": "Service", "causes": [
                {"reason": "FieldValueInvalid", "message": "Invalid value: []string{\"10.96.0.6\"}: may not change once set", "field": "spec.clusterIPs[0]"}]},
            "code": 422})
    );
    let (code, status) =
        merge_patch(&srv, "s", json!({"spec": {"clusterIPs": ["10.96.0.6"]}})).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "Service \"s\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.6\"}: first value must match `clusterIP`"
    );
    let (code, status) = merge_patch(&srv, "s", json!({"spec": {"ipFamilies": ["IPv6"]}})).await;
    assert_eq!(code, 422);
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Service \"s\" is invalid: spec.clusterIPs[0]: Invalid value: \"10.96.0.5\": expected an IPv6 value as indicated by `ipFamilies[0]`",
            "reason": "Invalid",
            "details": {"name": "s", "kind": "Service", "causes": [
                {"reason": "FieldValueInvalid", "message": "Invalid value: \"10.96.0.5\": expected an IPv6 value as indicated by `ipFamilies[0]`", "field": "spec.clusterIPs[0]"}]},
            "code": 422})
    );
    let (code, status) = merge_patch(&srv, "s", json!({"spec": {"clusterIP": "None"}})).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "Service \"s\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"None\"}: may not change once set"
    );
}

#[tokio::test]
async fn accepted_with_warnings_or_defaults() {
    let srv = start_quiet(Transport::InProcess).await;
    // Leading zeros: accepted as written, with kube's warning.
    let (code, warnings, body) = send(
        &srv,
        "POST",
        SERVICES,
        "application/json",
        svc(
            "zeros",
            json!({"clusterIP": "010.96.0.10", "ports": [{"port": 80}]}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["clusterIP"], "010.96.0.10");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("299 - \""), "{warnings:?}");
    assert!(
        warnings[0].contains("spec.clusterIPs[0]: IP address was accepted, but will be invalid in a future Kubernetes release: ParseAddr(\\\"010.96.0.10\\\"): IPv4 field has octet with leading zero"),
        "{warnings:?}"
    );
    // Multicast outside 224.0.0.0/24 is a valid external IP.
    let (code, body) = srv
        .post_json(
            SERVICES,
            &svc(
                "mcast",
                json!({"externalIPs": ["239.1.1.1"], "ports": [{"port": 80}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    // Headless and selectorless: dual-stack families even on a single-stack cluster.
    let (code, body) = srv
        .post_json(
            SERVICES,
            &svc(
                "headless",
                json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["ipFamilyPolicy"], "RequireDualStack");
    assert_eq!(body["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
    // An ExternalName with externalIPs is accepted with a warning.
    let (code, warnings, body) = send(&srv, "POST", SERVICES, "application/json",
        svc("ext", json!({"type": "ExternalName", "externalName": "example.com", "externalIPs": ["1.2.3.4"]}))).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        warnings,
        vec!["299 - \"spec.externalIPs is ignored when spec.type is \\\"ExternalName\\\"\""]
    );
}

#[tokio::test]
async fn load_balancer_updates() {
    let srv = start_quiet(Transport::InProcess).await;
    let (code, body) = srv
        .post_json(
            SERVICES,
            &svc(
                "lb",
                json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/a",
            "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let hc = body["spec"]["healthCheckNodePort"]
        .as_i64()
        .expect("allocated");
    let (code, status) = merge_patch(
        &srv,
        "lb",
        json!({"spec": {"loadBalancerClass": "example.com/b"}}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "Service \"lb\" is invalid: spec.loadBalancerClass: Invalid value: \"example.com/b\": may not change once set"
    );
    let (code, status) =
        merge_patch(&srv, "lb", json!({"spec": {"healthCheckNodePort": hc + 1}})).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "Service \"lb\" is invalid: spec.healthCheckNodePort: Forbidden: field is immutable"
    );
    // A status with an ingress point, then LoadBalancer -> ClusterIP clears it.
    // Without a resourceVersion: an unconditional update of the latest version.
    let mut with_status = body.clone();
    with_status["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    with_status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}});
    let (code, _, body) = send(
        &srv,
        "PUT",
        &format!("{SERVICES}/lb/status"),
        "application/json",
        with_status.clone(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.1"
    );
    with_status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "nope"}]}});
    let (code, _, status) = send(
        &srv,
        "PUT",
        &format!("{SERVICES}/lb/status"),
        "application/json",
        with_status,
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "status.loadBalancer.ingress[0].ip"
    );
    let (code, body) = merge_patch(&srv, "lb", json!({"spec": {"type": "ClusterIP"}})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["loadBalancer"], json!({}), "{body}");
    assert!(body["spec"].get("loadBalancerClass").is_none(), "{body}");
    assert!(body["spec"].get("healthCheckNodePort").is_none(), "{body}");
    assert!(body["spec"]["ports"][0].get("nodePort").is_none(), "{body}");
}

#[tokio::test]
async fn node_port_allocation_rules() {
    let srv = start_quiet(Transport::InProcess).await;
    // A requested health check node port that is taken is a 500, as in kube.
    let (code, body) = srv
        .post_json(
            SERVICES,
            &svc(
                "np",
                json!({"type": "NodePort", "ports": [
            {"name": "http", "port": 80, "nodePort": 30100}, {"name": "https", "port": 443}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let https = body["spec"]["ports"][1]["nodePort"].clone();
    let (code, status) = srv
        .post_json(
            SERVICES,
            &svc(
                "hc",
                json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 30100, "ports": [{"port": 80}]}),
            ),
        )
        .await;
    assert_eq!(code, 500, "{status}");
    assert_eq!(
        status["message"],
        "Internal error occurred: failed to allocate requested HealthCheck NodePort 30100: provided port is already allocated"
    );
    // A PUT without node ports gets them back by port name, even with new port numbers.
    let (code, _, body) = send(&srv, "PUT", &format!("{SERVICES}/np"), "application/json",
        svc("np", json!({"type": "NodePort", "ports": [{"name": "https", "port": 8443}, {"name": "http", "port": 8080}]}))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["ports"][0]["nodePort"], https);
    assert_eq!(body["spec"]["ports"][1]["nodePort"], 30100);
    // On update a repeated (protocol, nodePort) pair is a plain 500.
    let (code, status) = merge_patch(&srv, "np", json!({"spec": {"ports": [
        {"name": "a", "port": 81, "nodePort": 30101}, {"name": "b", "port": 82, "nodePort": 30101}]}})).await;
    assert_eq!(code, 500, "{status}");
    assert_eq!(status["message"], "duplicate nodePort: {TCP 30101}");
    // LoadBalancer without node port allocation still reserves the requested ones.
    let (code, body) = srv
        .post_json(
            SERVICES,
            &svc(
                "lbnp",
                json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
            "ports": [{"name": "a", "port": 80, "nodePort": 30102}, {"name": "b", "port": 81}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"]["ports"][1].get("nodePort").is_none(), "{body}");
    let (code, status) = srv
        .post_json(
            SERVICES,
            &svc(
                "taken",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30102}]}),
            ),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "Service \"taken\" is invalid: spec.ports[0].nodePort: Invalid value: 30102: provided port is already allocated"
    );
}

#[tokio::test]
async fn dual_stack_upgrade_and_downgrade() {
    let srv = start_with(
        Transport::InProcess,
        Options {
            config: Config {
                service_cidrs: vec![
                    "10.96.0.0/16".parse().unwrap(),
                    "fd00:10:96::/112".parse().unwrap(),
                ],
                ..Default::default()
            },
            ..Options::quiet()
        },
    )
    .await;
    let (code, body) = srv
        .post_json(SERVICES, &svc("s", json!({"ports": [{"port": 80}]})))
        .await;
    assert_eq!(code, 201, "{body}");
    let primary = body["spec"]["clusterIP"].clone();
    let (code, body) = merge_patch(
        &srv,
        "s",
        json!({"spec": {"ipFamilyPolicy": "PreferDualStack"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
    assert_eq!(body["spec"]["clusterIPs"][0], primary);
    assert!(
        body["spec"]["clusterIPs"][1]
            .as_str()
            .unwrap()
            .starts_with("fd00:10:96::"),
        "{body}"
    );
    // Dropping the secondary needs SingleStack.
    let (code, status) = merge_patch(
        &srv,
        "s",
        json!({"spec": {"clusterIPs": [primary], "ipFamilies": ["IPv4"]}}),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.ipFamilyPolicy"
    );
    let (code, body) = merge_patch(
        &srv,
        "s",
        json!({"spec": {"ipFamilyPolicy": "SingleStack"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["clusterIPs"], json!([primary]));
    assert_eq!(body["spec"]["ipFamilies"], json!(["IPv4"]));
}
