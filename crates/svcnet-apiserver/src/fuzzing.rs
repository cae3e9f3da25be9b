//! The request path for the API fuzz target (`fuzz/fuzz_targets/api_request.rs`): arbitrary
//! bytes become a Service, Pod or EndpointSlice body and a patch (merge, JSON, strategic or
//! apply), sent through the router over an in-memory store. Whatever the bytes, nothing
//! panics and every failure is a `Status` whose code is the response's.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::{ApiServer, Config};

struct Harness {
    runtime: tokio::runtime::Runtime,
    server: ApiServer,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let store = svcnet_store::RedbStore::in_memory(Default::default()).expect("a store");
        let server = runtime
            .block_on(ApiServer::new(Arc::new(store), Config::default()))
            .expect("the server starts");
        Harness { runtime, server }
    })
}

const KINDS: [&str; 3] = [
    "/api/v1/namespaces/default/services",
    "/api/v1/namespaces/default/pods",
    "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
];

const PATCHES: [&str; 4] = [
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Sends one request; panics if the answer is not a success or a consistent `Status`.
async fn send(router: &axum::Router, method: &str, uri: &str, ct: &str, body: Vec<u8>) {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ct)
        .body(Body::from(body))
        .expect("a request");
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .expect("the router answers");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
    let v: Value = serde_json::from_slice(&bytes).expect("every answer is JSON");
    if code >= 400 {
        assert_eq!(v["kind"], "Status", "{method} {uri} -> {code}: {v}");
        assert_eq!(v["code"].as_u64(), Some(u64::from(code)), "{v}");
        assert!(v["message"].is_string(), "{v}");
    } else {
        assert!(v.is_object(), "{v}");
    }
}

/// One fuzz input: `[kind, mode, body…, 0xff, patch…]`.
pub fn request_path(data: &[u8]) {
    let [kind, mode, rest @ ..] = data else {
        return;
    };
    let base = KINDS[usize::from(*kind) % KINDS.len()];
    let (body, patch) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let body_type = if mode & 1 == 0 {
        "application/json"
    } else {
        "application/yaml"
    };
    let validation = if mode & 2 == 0 { "Strict" } else { "Warn" };
    let patch_type = PATCHES[usize::from(mode >> 2) % PATCHES.len()];
    let h = harness();
    let router = h.server.router();
    h.runtime.block_on(async {
        send(
            &router,
            "POST",
            &format!("{base}?fieldValidation={validation}"),
            body_type,
            body.to_vec(),
        )
        .await;
        let manager = if patch_type.contains("apply") {
            "&fieldManager=fuzz&force=true"
        } else {
            ""
        };
        send(
            &router,
            "PATCH",
            &format!("{base}/fuzz?fieldValidation={validation}{manager}"),
            patch_type,
            patch.to_vec(),
        )
        .await;
        send(
            &router,
            "PUT",
            &format!("{base}/fuzz"),
            body_type,
            body.to_vec(),
        )
        .await;
        send(
            &router,
            "DELETE",
            &format!("{base}/fuzz"),
            "application/json",
            Vec::new(),
        )
        .await;
    });
}
