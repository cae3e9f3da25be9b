//! Invalid Services get kube-apiserver's 422 `Status` with the exact field path and cause
//! reason, and nothing is stored. Malformed requests get 400/413/415.

mod common;

use common::{Options, Transport, start_quiet, start_with};
use serde_json::{Value, json};
use svcnet_apiserver::Config;

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
            "metadata.labels[k]",
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
            "affinity config without ClientIP",
            json!({"sessionAffinity": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}}),
            none.clone(),
            "spec.sessionAffinityConfig",
            "FieldValueForbidden",
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
            "spec.loadBalancerSourceRanges",
            "FieldValueForbidden",
        ),
        (
            "bad source range",
            json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"]}),
            none.clone(),
            "spec.loadBalancerSourceRanges[0]",
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
            "spec.ports[0].port",
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
            "spec.selector[app]",
            "FieldValueInvalid",
        ),
        (
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
    let (code, list) = srv
        .raw("GET", "/api/v1/services", "application/json", "")
        .await;
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
        "Service \"y\" is invalid: spec.clusterIPs: Invalid value: [\"1.2.3.4\"]: failed to allocate IP 1.2.3.4: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
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
