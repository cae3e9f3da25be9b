//! Paged lists are consistent: every page of a `limit`/`continue` list is read at the revision
//! of the first, whatever is written meanwhile; an expired continue token answers 410 with a
//! fresh token; `resourceVersion`/`resourceVersionMatch` pick the revision a list reads.

mod common;

use std::collections::BTreeMap;

use common::{Options, Transport, start_quiet, start_with};
use serde_json::{Value, json};

const SVC: &str = "/api/v1/namespaces/default/services";

fn svc(name: &str, generation: u32) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"gen": generation.to_string()}},
        "spec": {"ports": [{"port": 80}]}})
}

/// name -> (gen label, resourceVersion) of a list's items.
fn content(list: &Value) -> BTreeMap<String, (String, String)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap().to_owned(),
                (
                    i["metadata"]["labels"]["gen"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    i["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_list_across_concurrent_writes_returns_one_revisions_content() {
    let srv = std::sync::Arc::new(start_quiet(Transport::InProcess).await);
    for i in 0..200 {
        assert_eq!(
            srv.post_json(SVC, &svc(&format!("s{i:03}"), 0)).await.0,
            201
        );
    }
    let (_, before) = srv.get(SVC).await;
    let want = content(&before);
    let (_, first) = srv.get(&format!("{SVC}?limit=30")).await;
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut got = content(&first);
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_owned();

    // Writers change, delete and add Services while the pages are read.
    let writer = {
        let srv = srv.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                let name = format!("s{:03}", 199 - i);
                let patch = json!({"metadata": {"labels": {"gen": "1"}}}).to_string();
                srv.raw(
                    "PATCH",
                    &format!("{SVC}/{name}"),
                    "application/merge-patch+json",
                    patch,
                )
                .await;
                srv.raw(
                    "DELETE",
                    &format!("{SVC}/s{:03}", i),
                    "application/json",
                    "",
                )
                .await;
                srv.post_json(SVC, &svc(&format!("new{i:03}"), 1)).await;
            }
        })
    };
    let mut pages = 1;
    while !token.is_empty() {
        let (code, page) = srv.get(&format!("{SVC}?limit=30&continue={token}")).await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(
            page["metadata"]["resourceVersion"],
            rv.as_str(),
            "every page at one revision"
        );
        got.extend(content(&page));
        token = page["metadata"]["continue"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        pages += 1;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(pages >= 7);
    assert_eq!(got, want, "the pages hold the content at revision {rv}");

    // An exact read at that revision gives the same; the newest state differs.
    let (_, exact) = srv
        .get(&format!(
            "{SVC}?resourceVersion={rv}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(content(&exact), want);
    let (_, now) = srv.get(SVC).await;
    assert_ne!(content(&now), want);
    // NotOlderThan is served at the newest revision; a revision not reached yet is a 504.
    let (_, newer) = srv
        .get(&format!(
            "{SVC}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan"
        ))
        .await;
    assert_eq!(content(&newer), content(&now));
    let future = now["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap()
        + 100;
    let (code, s) = srv
        .get(&format!(
            "{SVC}?resourceVersion={future}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(code, 504, "{s}");
    assert_eq!(
        s["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
}

#[tokio::test]
async fn an_expired_continue_token_answers_410_with_a_token_for_the_rest() {
    let srv = start_with(
        Transport::InProcess,
        Options {
            history: 20,
            ..Options::quiet()
        },
    )
    .await;
    for i in 0..10 {
        srv.post_json(SVC, &svc(&format!("a{i}"), 0)).await;
    }
    let (_, first) = srv.get(&format!("{SVC}?limit=4")).await;
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // Enough writes for the history to be compacted past the first page's revision.
    for i in 0..40 {
        srv.post_json(SVC, &svc(&format!("b{i:02}"), 0)).await;
    }
    let (code, s) = srv.get(&format!("{SVC}?limit=4&continue={token}")).await;
    assert_eq!(code, 410, "{s}");
    assert_eq!(s["reason"], "Expired");
    let fresh = s["metadata"]["continue"].as_str().expect("a fresh token");
    // The fresh token reads the rest at the newest revision.
    let (code, rest) = srv.get(&format!("{SVC}?limit=100&continue={fresh}")).await;
    assert_eq!(code, 200, "{rest}");
    assert_ne!(rest["metadata"]["resourceVersion"], rv.as_str());
    assert!(
        content(&rest).keys().all(|k| k.as_str() > "a3"),
        "after the first page"
    );
    let (code, _) = srv
        .get(&format!(
            "{SVC}?resourceVersion={rv}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(code, 410);
}
