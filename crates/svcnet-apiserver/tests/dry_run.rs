//! `dryRun=All` on every write verb — in the query (create, update, patch, deletecollection)
//! and in the `DeleteOptions` body (what `kubectl delete --dry-run=server` sends) — validates,
//! defaults and allocates, answers what would be stored, and leaves the store, the allocators
//! and the watchers untouched. Other values are refused.

mod common;

use common::{Transport, start_quiet};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

const SVC: &str = "/api/v1/namespaces/default/services";

fn node_port_service(name: &str, ip: &str, node_port: i32) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "NodePort", "clusterIP": ip, "ports": [{"port": 80, "nodePort": node_port}]}})
}

async fn names(srv: &common::TestServer) -> Vec<String> {
    let (_, list) = srv.get(SVC).await;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn dry_runs_store_nothing_allocate_nothing_and_notify_nobody() {
    let srv = start_quiet(Transport::Socket).await;
    let api: Api<Service> = Api::namespaced(srv.client.clone(), "default");
    let (code, keep) = srv
        .post_json(SVC, &node_port_service("keep", "10.96.0.40", 30040))
        .await;
    assert_eq!(code, 201, "{keep}");
    let rv = keep["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut events = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();

    // Create: answered like a real create (defaults, addresses), nothing stored.
    let (code, dry) = srv
        .post_json(
            &format!("{SVC}?dryRun=All"),
            &node_port_service("dry", "10.96.0.50", 30050),
        )
        .await;
    assert_eq!(code, 201, "{dry}");
    assert_eq!(dry["spec"]["clusterIP"], "10.96.0.50");
    assert_eq!(dry["spec"]["sessionAffinity"], "None");
    assert!(dry["metadata"]["uid"].is_string());
    // The same through the client (query form).
    let typed: Service =
        serde_json::from_value(node_port_service("dry2", "10.96.0.51", 30051)).unwrap();
    api.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &typed,
    )
    .await
    .unwrap();
    // An existing name is still a conflict.
    let (code, _) = srv
        .post_json(
            &format!("{SVC}?dryRun=All"),
            &node_port_service("keep", "", 0),
        )
        .await;
    assert_eq!(code, 409);

    // Update to ClusterIP would release the node port: a dry run keeps it held.
    let mut changed = keep.clone();
    changed["spec"]["type"] = json!("ClusterIP");
    changed["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    let (code, upd) = srv
        .raw(
            "PUT",
            &format!("{SVC}/keep?dryRun=All"),
            "application/json",
            changed.to_string(),
        )
        .await;
    assert_eq!(code, 200, "{upd}");
    assert_eq!(upd["spec"]["type"], "ClusterIP");
    // ... at the stored version's resourceVersion, as kube-apiserver answers.
    assert_eq!(upd["metadata"]["resourceVersion"], rv.as_str());
    // Patch (query form, through the client).
    let patched = api
        .patch(
            "keep",
            &PatchParams {
                dry_run: true,
                ..Default::default()
            },
            &Patch::Merge(json!({"metadata": {"labels": {"dry": "yes"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["dry"], "yes");
    assert_eq!(
        patched.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    // An apply (what `kubectl apply --server-side --dry-run=server` and `kubectl diff` send).
    let (code, applied) = srv
        .raw(
            "PATCH",
            &format!("{SVC}/keep?dryRun=All&fieldManager=ctl&force=true"),
            "application/apply-patch+yaml",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "keep", "labels": {"dry": "apply"}}}).to_string(),
        )
        .await;
    assert_eq!(code, 200, "{applied}");
    assert_eq!(applied["metadata"]["labels"]["dry"], "apply");
    assert_eq!(applied["metadata"]["resourceVersion"], rv.as_str());

    // Delete, body form (kubectl delete --dry-run=server) and query form, and deletecollection.
    let deleted = api
        .delete(
            "keep",
            &DeleteParams {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(deleted.is_right(), "a success Status for Services");
    let (code, _) = srv
        .raw(
            "DELETE",
            &format!("{SVC}/keep?dryRun=All"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = srv
        .raw(
            "DELETE",
            &format!("{SVC}?dryRun=All"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(code, 200);

    // Nothing changed in the store ...
    let (_, now) = srv.get(&format!("{SVC}/keep")).await;
    assert_eq!(now, keep, "the stored Service is untouched");
    assert_eq!(names(&srv).await, ["keep", "kubernetes"]);
    // ... nor in the allocators: the dry-run addresses are free, keep's are still held.
    for (name, ip, port) in [("a", "10.96.0.50", 30050), ("b", "10.96.0.51", 30051)] {
        let (code, s) = srv.post_json(SVC, &node_port_service(name, ip, port)).await;
        assert_eq!(code, 201, "{name}: {s}");
    }
    let (code, s) = srv
        .post_json(SVC, &node_port_service("c", "10.96.0.40", 0))
        .await;
    assert_eq!(code, 422, "keep's cluster IP is still allocated: {s}");
    let (code, s) = srv.post_json(SVC, &node_port_service("d", "", 30040)).await;
    assert_eq!(code, 422, "keep's node port is still allocated: {s}");

    // ... nor did watchers see anything but the two real creates.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(WatchEvent::Added(s)))) => seen.push(s.metadata.name.unwrap()),
            Ok(Some(Ok(WatchEvent::Bookmark(_)))) => {}
            other => panic!("unexpected watch event: {other:?}"),
        }
    }
    assert_eq!(seen, ["a", "b"]);
}

#[tokio::test]
async fn dry_run_values_other_than_all_are_refused_and_nothing_is_written() {
    let srv = start_quiet(Transport::InProcess).await;
    let svc = node_port_service("x", "", 0);
    let (code, s) = srv.post_json(&format!("{SVC}?dryRun=Maybe"), &svc).await;
    assert_eq!(code, 422, "{s}");
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["details"]["kind"], "CreateOptions");
    assert_eq!(s["details"]["group"], "meta.k8s.io");
    assert_eq!(s["details"]["causes"][0]["field"], "dryRun");
    assert_eq!(
        s["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"Maybe\"}: supported values: \"All\""
    );
    assert_eq!(names(&srv).await, ["kubernetes"]);
    assert_eq!(srv.post_json(SVC, &svc).await.0, 201);
    for (method, uri, body) in [
        ("PUT", format!("{SVC}/x?dryRun=Nope"), svc.to_string()),
        ("PATCH", format!("{SVC}/x?dryRun=Nope"), "{}".to_owned()),
        (
            "DELETE",
            format!("{SVC}/x"),
            json!({"dryRun": ["Nope"]}).to_string(),
        ),
        ("DELETE", format!("{SVC}?dryRun=Nope"), String::new()),
    ] {
        let ct = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let (code, s) = srv.raw(method, &uri, ct, body).await;
        assert_eq!(code, 422, "{method} {uri}: {s}");
        assert_eq!(
            s["details"]["causes"][0]["field"], "dryRun",
            "{method} {uri}"
        );
    }
    assert_eq!(names(&srv).await, ["kubernetes", "x"]);
}

#[tokio::test]
async fn malformed_and_invalid_options_are_refused() {
    let srv = start_quiet(Transport::InProcess).await;
    let svc = node_port_service("y", "", 0);
    assert_eq!(srv.post_json(SVC, &svc).await.0, 201);
    let cases = [
        ("DELETE", format!("{SVC}/y?gracePeriodSeconds=soon"), 400),
        ("DELETE", format!("{SVC}/y?propagationPolicy=Sideways"), 422),
        ("DELETE", format!("{SVC}/y?propagationPolicy=Orphan"), 400),
        ("GET", format!("{SVC}?limit=ten"), 400),
        ("GET", format!("{SVC}?watch=true&timeoutSeconds=later"), 400),
        ("GET", format!("{SVC}?resourceVersionMatch=Exact"), 422),
        (
            "GET",
            format!("{SVC}?resourceVersion=0&resourceVersionMatch=Exact"),
            422,
        ),
        ("POST", format!("{SVC}?fieldValidation=Loose"), 422),
        ("PATCH", format!("{SVC}/y?force=true"), 422),
    ];
    for (method, uri, want) in cases {
        let body = match method {
            "POST" => node_port_service("z", "", 0).to_string(),
            "PATCH" => "{}".to_owned(),
            _ => String::new(),
        };
        let ct = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let (code, s) = srv.raw(method, &uri, ct, body).await;
        assert_eq!(code, want, "{method} {uri}: {s}");
        assert_eq!(s["kind"], "Status", "{method} {uri}");
    }
    // None of them wrote anything.
    assert_eq!(names(&srv).await, ["kubernetes", "y"]);
    // `pretty` indents the answer, errors included.
    for uri in [
        format!("{SVC}/y?pretty=true"),
        format!("{SVC}/nope?pretty=true"),
    ] {
        let (_, body) = srv.raw_text("GET", &uri).await;
        assert!(body.starts_with("{\n  \""), "{uri}: {body}");
    }
}
