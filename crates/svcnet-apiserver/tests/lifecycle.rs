//! Object lifecycles: field validation modes, namespace deletion, graceful Pod deletion,
//! streaming lists and bookmarks.

mod common;

use std::time::Duration;

use axum::body::Body;
use common::{Options, Transport, start, start_quiet, start_with};
use futures::StreamExt;
use serde_json::{Value, json};
use svcnet_apiserver::Config;
use tower::ServiceExt;

const SVC: &str = "/api/v1/namespaces/default/services";

#[tokio::test]
async fn field_validation_strict_warn_ignore() {
    let srv = start_quiet(Transport::InProcess).await;
    let typo = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "t"},
        "spec": {"ports": [{"port": 80, "nodeport": 1}], "selectr": {"a": "b"}}});
    let (code, s) = srv
        .post_json(&format!("{SVC}?fieldValidation=Strict"), &typo)
        .await;
    assert_eq!(code, 400, "{s}");
    let msg = s["message"].as_str().unwrap();
    assert!(
        msg.contains(r#"strict decoding error: unknown field "spec.ports[0].nodeport""#),
        "{msg}"
    );
    assert!(msg.contains(r#"unknown field "spec.selectr""#), "{msg}");

    let req = http::Request::post(format!("{SVC}?fieldValidation=Warn"))
        .header("content-type", "application/json")
        .body(Body::from(typo.to_string()))
        .unwrap();
    let resp = srv.server.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let warnings: Vec<String> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("299 - "), "{warnings:?}");

    let mut ok = typo.clone();
    ok["metadata"]["name"] = json!("u");
    let (code, _) = srv
        .post_json(&format!("{SVC}?fieldValidation=Ignore"), &ok)
        .await;
    assert_eq!(code, 201);
    let (code, _) = srv
        .post_json(&format!("{SVC}?fieldValidation=Sometimes"), &ok)
        .await;
    assert_eq!(
        code, 422,
        "an invalid option is refused, as kube-apiserver's CreateOptions"
    );
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_content_then_itself() {
    // The namespace controller empties and finalizes it.
    let srv = start(Transport::InProcess).await;
    let (code, _) = srv
        .post_json(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        )
        .await;
    assert_eq!(code, 201);
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.99", "ports": [{"port": 80}]}});
    assert_eq!(
        srv.post_json("/api/v1/namespaces/team/services", &svc)
            .await
            .0,
        201
    );
    let (code, ns) = srv
        .raw("DELETE", "/api/v1/namespaces/team", "application/json", "")
        .await;
    assert_eq!(code, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = srv.get("/api/v1/namespaces/team").await;
        if code == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, list) = srv.get("/api/v1/namespaces/team/services").await;
    assert_eq!(list["items"], json!([]));
    // Its Service's address was released with it.
    let again = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s2"}, "spec": {"clusterIP": "10.96.0.99", "ports": [{"port": 80}]}});
    assert_eq!(srv.post_json(SVC, &again).await.0, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_pods_terminate_gracefully_and_unbound_ones_go_at_once() {
    let srv = start(Transport::InProcess).await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "x"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    assert_eq!(
        srv.post_json(pods, &pod("bound", Some("node1"))).await.0,
        201
    );
    assert_eq!(srv.post_json(pods, &pod("loose", None)).await.0, 201);
    let (code, body) = srv
        .raw("DELETE", &format!("{pods}/loose"), "application/json", "")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(srv.get(&format!("{pods}/loose")).await.0, 404);

    let (code, body) = srv
        .raw(
            "DELETE",
            &format!("{pods}/bound"),
            "application/json",
            json!({"gracePeriodSeconds": 1}).to_string(),
        )
        .await;
    assert_eq!(code, 200);
    assert!(body["metadata"]["deletionTimestamp"].is_string(), "{body}");
    let (code, got) = srv.get(&format!("{pods}/bound")).await;
    assert_eq!(code, 200, "still there during the grace period");
    assert_eq!(got["metadata"]["deletionGracePeriodSeconds"], 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while srv.get(&format!("{pods}/bound")).await.0 != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reaped after its grace period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn watch_lines(srv: &common::TestServer, uri: &str, n: usize) -> Vec<Value> {
    let req = http::Request::get(uri).body(Body::empty()).unwrap();
    let resp = srv.server.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            out.push(serde_json::from_slice(&line).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn streaming_lists_and_bookmarks() {
    let cfg = Config {
        bookmark_interval: Duration::from_millis(100),
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
    let lines = watch_lines(&srv, &format!("{SVC}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"), 2).await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "kubernetes");
    assert_eq!(lines[1]["type"], "BOOKMARK");
    assert_eq!(
        lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // Periodic bookmarks carry a resourceVersion to resume from.
    let (_, list) = srv.get(SVC).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let lines = watch_lines(
        &srv,
        &format!("{SVC}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"),
        1,
    )
    .await;
    assert_eq!(lines[0]["type"], "BOOKMARK");
    assert_eq!(lines[0]["object"]["metadata"]["resourceVersion"], rv);
    // Table watches carry rows.
    let req = http::Request::get(format!("{SVC}?watch=1"))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Body::empty())
        .unwrap();
    let resp = srv.server.router().oneshot(req).await.unwrap();
    let mut body = resp.into_body().into_data_stream();
    let chunk = body.next().await.unwrap().unwrap();
    let ev: Value = serde_json::from_slice(chunk.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(ev["object"]["kind"], "Table");
    assert_eq!(ev["object"]["rows"][0]["cells"][0], "kubernetes");
}

#[tokio::test]
async fn delete_collection_honours_selectors_and_releases_addresses() {
    let srv = start_quiet(Transport::InProcess).await;
    for (name, tier, ip) in [
        ("a", "fe", "10.96.0.50"),
        ("b", "fe", "10.96.0.51"),
        ("c", "be", "10.96.0.52"),
    ] {
        let s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"tier": tier}},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]}});
        assert_eq!(srv.post_json(SVC, &s).await.0, 201);
    }
    let (code, body) = srv
        .raw(
            "DELETE",
            &format!("{SVC}?labelSelector=tier%3Dfe"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    let (_, list) = srv.get(SVC).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["c", "kubernetes"]);
    let reuse = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "d"}, "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}});
    assert_eq!(srv.post_json(SVC, &reuse).await.0, 201);
}

#[tokio::test]
async fn filtered_watches_see_objects_enter_and_leave_the_selection() {
    let srv = start_quiet(Transport::InProcess).await;
    let (_, list) = srv.get(SVC).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "labels": {"tier": "fe"}}, "spec": {"ports": [{"port": 80}]}});
    srv.post_json(SVC, &svc).await;
    let relabel = |tier: &str| json!({"metadata": {"labels": {"tier": tier}}}).to_string();
    let a = format!("{SVC}/a");
    srv.raw("PATCH", &a, "application/merge-patch+json", relabel("be"))
        .await;
    srv.raw("PATCH", &a, "application/merge-patch+json", relabel("fe"))
        .await;
    srv.raw(
        "PATCH",
        &a,
        "application/merge-patch+json",
        json!({"metadata": {"annotations": {"x": "1"}}}).to_string(),
    )
    .await;
    srv.raw("DELETE", &a, "application/json", "").await;
    let lines = watch_lines(
        &srv,
        &format!("{SVC}?watch=1&resourceVersion={rv}&labelSelector=tier%3Dfe"),
        5,
    )
    .await;
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "DELETED", "ADDED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn a_namespace_waits_for_finalizers_before_it_goes() {
    let srv = start(Transport::InProcess).await;
    srv.post_json(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "held"}}),
    )
    .await;
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "finalizers": ["example.com/hold"]}, "spec": {"ports": [{"port": 80}]}});
    assert_eq!(
        srv.post_json("/api/v1/namespaces/held/services", &svc)
            .await
            .0,
        201
    );
    assert_eq!(
        srv.raw("DELETE", "/api/v1/namespaces/held", "application/json", "")
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, ns) = srv.get("/api/v1/namespaces/held").await;
    assert_eq!(
        (code, ns["status"]["phase"].as_str()),
        (200, Some("Terminating")),
        "kept while content remains"
    );
    let (_, s) = srv.get("/api/v1/namespaces/held/services/s").await;
    assert!(s["metadata"]["deletionTimestamp"].is_string(), "{s}");
    let (code, _) = srv
        .raw(
            "PATCH",
            "/api/v1/namespaces/held/services/s",
            "application/merge-patch+json",
            json!({"metadata": {"finalizers": null}}).to_string(),
        )
        .await;
    assert_eq!(code, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while srv.get("/api/v1/namespaces/held").await.0 != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace not removed after its content went"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// PUT creates a missing object for the kinds kube-apiserver allows it for (Services with
/// their allocation, Endpoints, Events) and answers 404 for the others; PATCH never creates.
#[tokio::test]
async fn put_creates_where_kube_apiserver_allows_it() {
    let srv = start_quiet(Transport::InProcess).await;
    let put = |uri: &str, body: Value| {
        let uri = uri.to_owned();
        let srv = &srv;
        async move {
            srv.raw("PUT", &uri, "application/json", body.to_string())
                .await
        }
    };
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "made", "resourceVersion": "123"},
        "spec": {"ports": [{"port": 80}]}});
    let (code, s) = put(&format!("{SVC}/made"), svc.clone()).await;
    assert_eq!(code, 201, "{s}");
    assert!(
        s["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.")),
        "{s}"
    );
    let (code, _) = put(&format!("{SVC}/made"), {
        let mut v = s.clone();
        v["metadata"]["labels"] = json!({"a": "b"});
        v
    })
    .await;
    assert_eq!(code, 200, "an existing one is updated");
    // The name must be in the body and match.
    let mut nameless = svc.clone();
    nameless["metadata"].as_object_mut().unwrap().remove("name");
    assert_eq!(put(&format!("{SVC}/other"), nameless).await.0, 400);
    // A uid is a precondition, which a missing object cannot meet.
    let mut with_uid = svc.clone();
    with_uid["metadata"] = json!({"name": "ghost", "uid": "0000"});
    let (code, s) = put(&format!("{SVC}/ghost"), with_uid).await;
    assert_eq!(code, 409, "{s}");
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}});
    assert_eq!(
        put("/api/v1/namespaces/default/endpoints/e", ep).await.0,
        201
    );
    for (uri, body) in [
        (
            "/api/v1/namespaces/default/pods/p",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
        ),
        (
            "/api/v1/namespaces/n",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}),
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/s",
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": []}),
        ),
        (
            "/api/v1/namespaces/default/services/nostatus/status",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nostatus"}, "spec": {"ports": [{"port": 80}]}}),
        ),
    ] {
        let (code, s) = put(uri, body).await;
        assert_eq!(code, 404, "{uri}: {s}");
    }
    let (code, _) = srv
        .raw(
            "PATCH",
            &format!("{SVC}/absent"),
            "application/merge-patch+json",
            "{}",
        )
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn system_namespaces_cannot_be_deleted() {
    let srv = start_quiet(Transport::InProcess).await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        for uri in [
            format!("/api/v1/namespaces/{ns}"),
            format!("/api/v1/namespaces/{ns}?dryRun=All"),
        ] {
            let (code, s) = srv.raw("DELETE", &uri, "application/json", "").await;
            assert_eq!(code, 403, "{uri}: {s}");
            assert_eq!(s["reason"], "Forbidden");
            assert_eq!(
                s["message"],
                format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted")
            );
            assert_eq!(s["details"], json!({"name": ns, "kind": "namespaces"}));
        }
        let (code, s) = srv.get(&format!("/api/v1/namespaces/{ns}")).await;
        assert_eq!((code, &s["status"]["phase"]), (200, &json!("Active")));
    }
    // deletecollection of namespaces skips none silently: it stops at the first refusal.
    let (code, _) = srv
        .raw("DELETE", "/api/v1/namespaces", "application/json", "")
        .await;
    assert_eq!(code, 403);
}

/// `/readyz` reports the store and every controller; `?verbose` lists them, `?exclude=`
/// skips one, `/readyz/<check>` asks for one, and a stopping server is not ready.
#[tokio::test]
async fn readiness_reports_the_store_and_the_controllers() {
    let srv = start(Transport::InProcess).await;
    let text = |srv: &common::TestServer, uri: &'static str| {
        let router = srv.server.router();
        async move {
            let resp = router
                .oneshot(http::Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let code = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (code, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let verbose = poll_ready(|| text(&srv, "/readyz?verbose")).await;
    for check in [
        "[+]ping ok",
        "[+]store ok",
        "[+]controller/endpointslice ok",
        "[+]controller/namespace ok",
        "[+]controller/pod-gc ok",
        "[+]shutdown ok",
        "readyz check passed",
    ] {
        assert!(verbose.lines().any(|l| l == check), "{check} in {verbose}");
    }
    assert_eq!(text(&srv, "/readyz").await, (200, "ok".into()));
    assert_eq!(text(&srv, "/livez").await, (200, "ok".into()));
    assert_eq!(text(&srv, "/readyz/store").await, (200, "ok".into()));
    assert_eq!(text(&srv, "/readyz/nothing").await.0, 404);
    let (_, ex) = text(&srv, "/readyz?verbose&exclude=ping&exclude=bogus").await;
    assert!(ex.contains("[+]ping excluded: ok"), "{ex}");
    assert!(ex.contains("no matches for \"bogus\""), "{ex}");
    srv.server.begin_stop();
    let (code, body) = text(&srv, "/readyz").await;
    assert_eq!(code, 500);
    assert!(
        body.contains("[-]shutdown failed: reason withheld"),
        "{body}"
    );
    assert!(body.ends_with("readyz check failed\n"), "{body}");
    assert_eq!(text(&srv, "/livez").await.0, 200, "stopping is not dead");
}

/// Polls `/readyz?verbose` until the controllers have synced.
async fn poll_ready<F, Fut>(mut f: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (u16, String)>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = f().await;
        if code == 200 {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A filtered watch resumed from a resourceVersion starts from what matched then: an object
/// deleted or relabelled out since still reaches the client as DELETED, and one relabelled in
/// as ADDED (an informer re-watching from its last version must not keep ghosts).
#[tokio::test]
async fn a_resumed_filtered_watch_starts_from_what_matched_at_its_version() {
    let srv = start_quiet(Transport::InProcess).await;
    for (name, tier) in [("gone", "fe"), ("out", "fe"), ("in", "be")] {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"tier": tier}}, "spec": {"ports": [{"port": 80}]}});
        assert_eq!(srv.post_json(SVC, &svc).await.0, 201);
    }
    let (_, list) = srv.get(&format!("{SVC}?labelSelector=tier%3Dfe")).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let relabel = |tier: &str| json!({"metadata": {"labels": {"tier": tier}}}).to_string();
    srv.raw("DELETE", &format!("{SVC}/gone"), "application/json", "")
        .await;
    srv.raw(
        "PATCH",
        &format!("{SVC}/out"),
        "application/merge-patch+json",
        relabel("be"),
    )
    .await;
    srv.raw(
        "PATCH",
        &format!("{SVC}/in"),
        "application/merge-patch+json",
        relabel("fe"),
    )
    .await;
    let lines = watch_lines(
        &srv,
        &format!("{SVC}?watch=1&resourceVersion={rv}&labelSelector=tier%3Dfe"),
        3,
    )
    .await;
    let seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["type"].as_str().unwrap(),
                l["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("DELETED", "gone"), ("DELETED", "out"), ("ADDED", "in")]
    );
}

/// Server-side apply edge cases against kube-apiserver's answers: an apply to a subresource
/// of a missing object is 404 (never a create); a kind without spec or status created by apply
/// passes strict field validation (kubectl's default); a watch asking for an enormous timeout
/// is served.
#[tokio::test]
async fn apply_to_a_missing_status_is_not_found_and_slices_apply_strictly() {
    let srv = start_quiet(Transport::InProcess).await;
    let cfg = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nope"},
        "spec": {"ports": [{"port": 80}]}});
    let (code, body) = srv
        .raw(
            "PATCH",
            &format!("{SVC}/nope/status?fieldManager=x"),
            "application/apply-patch+yaml",
            cfg.to_string(),
        )
        .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(srv.raw("GET", &format!("{SVC}/nope"), "", "").await.0, 404);

    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1"}, "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.5"]}], "ports": [{"name": "http", "port": 8080}]});
    let (code, body) = srv
        .raw(
            "PATCH",
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-1?fieldManager=kubectl&fieldValidation=Strict",
            "application/apply-patch+yaml",
            slice.to_string(),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(
        body.get("spec").is_none() && body.get("status").is_none(),
        "{body}"
    );

    let watch = tokio::spawn({
        let router = srv.server.router();
        async move {
            use tower::ServiceExt;
            let req =
                http::Request::get(format!("{SVC}?watch=1&timeoutSeconds=9223372036854775807"))
                    .body(Body::empty())
                    .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let mut body = resp.into_body().into_data_stream();
            tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "w"}, "spec": {"ports": [{"port": 80}]}});
    assert_eq!(srv.post_json(SVC, &svc).await.0, 201);
    let line = watch.await.unwrap();
    assert!(String::from_utf8_lossy(&line).contains("\"ADDED\""));
}
