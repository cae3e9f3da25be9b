//! API conformance through the `kube` client, both in-process and over a socket.

mod common;

use std::collections::BTreeMap;

use common::{BOTH, Options, Transport, start, start_quiet, start_with};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde_json::json;

fn service(name: &str, port: i32) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app": "test"}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port, "targetPort": 8080}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn crud_round_trip() {
    for t in BOTH {
        let srv = start(t).await;
        let api: Api<Service> = Api::namespaced(srv.client.clone(), "default");
        let created = api
            .create(&PostParams::default(), &service("web", 80))
            .await
            .unwrap();
        let spec = created.spec.clone().unwrap();
        let ip: std::net::IpAddr = spec.cluster_ip.clone().unwrap().parse().unwrap();
        assert!(
            "10.96.0.0/12"
                .parse::<ipnet::IpNet>()
                .unwrap()
                .contains(&ip),
            "{t:?}: {ip}"
        );
        assert_eq!(
            spec.ports.as_ref().unwrap()[0].protocol.as_deref(),
            Some("TCP")
        );
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert!(created.metadata.uid.is_some());

        let got = api.get("web").await.unwrap();
        assert_eq!(
            got.metadata.resource_version,
            created.metadata.resource_version
        );

        let mut changed = got.clone();
        changed
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "fe".into());
        let replaced = api
            .replace("web", &PostParams::default(), &changed)
            .await
            .unwrap();
        assert_ne!(
            replaced.metadata.resource_version,
            got.metadata.resource_version
        );
        assert_eq!(
            replaced.spec.unwrap().cluster_ip,
            spec.cluster_ip,
            "{t:?}: clusterIP kept"
        );

        let names: Vec<String> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        assert_eq!(names, vec!["kubernetes", "web"]);
        let selected = api
            .list(&ListParams::default().labels("tier=fe"))
            .await
            .unwrap();
        assert_eq!(selected.items.len(), 1);
        let by_field = api
            .list(&ListParams::default().fields("metadata.name=kubernetes"))
            .await
            .unwrap();
        assert_eq!(by_field.items.len(), 1);

        api.delete("web", &DeleteParams::default()).await.unwrap();
        let err = api.get("web").await.unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 404),
            "{t:?}: {err}"
        );
        // The address is free again: asking for it explicitly works.
        let mut again = service("web2", 80);
        again.spec.as_mut().unwrap().cluster_ip = spec.cluster_ip.clone();
        api.create(&PostParams::default(), &again).await.unwrap();
    }
}

#[tokio::test]
async fn list_pages_with_limit_and_continue() {
    for t in BOTH {
        let srv = start_quiet(t).await;
        let api: Api<Service> = Api::namespaced(srv.client.clone(), "default");
        for i in 0..25 {
            api.create(&PostParams::default(), &service(&format!("svc-{i:02}"), 80))
                .await
                .unwrap();
        }
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        let mut first_rv = None;
        loop {
            let mut lp = ListParams::default().limit(10);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = api.list(&lp).await.unwrap();
            first_rv.get_or_insert(page.metadata.resource_version.clone());
            assert_eq!(
                page.metadata.resource_version,
                *first_rv.as_ref().unwrap(),
                "pages share one revision"
            );
            pages += 1;
            names.extend(page.items.into_iter().filter_map(|s| s.metadata.name));
            token = page.metadata.continue_.filter(|c| !c.is_empty());
            if token.is_none() {
                break;
            }
        }
        assert_eq!(pages, 3, "{t:?}");
        assert_eq!(names.len(), 26);
        let mut sorted = names.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 26);
    }
}

#[tokio::test]
async fn watch_replays_from_a_revision_in_order() {
    for t in BOTH {
        let srv = start_quiet(t).await;
        let api: Api<Service> = Api::namespaced(srv.client.clone(), "default");
        let a = api
            .create(&PostParams::default(), &service("a", 80))
            .await
            .unwrap();
        let from = a.metadata.resource_version.clone().unwrap();
        api.create(&PostParams::default(), &service("b", 80))
            .await
            .unwrap();
        api.patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
        )
        .await
        .unwrap();
        api.delete("a", &DeleteParams::default()).await.unwrap();
        let mut stream = api
            .watch(&WatchParams::default().timeout(5), &from)
            .await
            .unwrap()
            .boxed();
        let mut seen = Vec::new();
        for _ in 0..3 {
            match stream.try_next().await.unwrap().unwrap() {
                WatchEvent::Added(s) => seen.push(format!("ADDED {}", s.metadata.name.unwrap())),
                WatchEvent::Modified(s) => {
                    seen.push(format!("MODIFIED {}", s.metadata.name.unwrap()))
                }
                WatchEvent::Deleted(s) => {
                    seen.push(format!("DELETED {}", s.metadata.name.unwrap()))
                }
                other => panic!("{t:?}: unexpected {other:?}"),
            }
        }
        assert_eq!(seen, vec!["ADDED b", "MODIFIED b", "DELETED a"], "{t:?}");
        // Live events follow the replay.
        api.create(&PostParams::default(), &service("c", 80))
            .await
            .unwrap();
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(s) => assert_eq!(s.metadata.name.unwrap(), "c"),
            other => panic!("{t:?}: unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn compacted_revisions_answer_410() {
    for t in BOTH {
        let srv = start_with(
            t,
            Options {
                history: 5,
                ..Options::quiet()
            },
        )
        .await;
        let api: Api<Service> = Api::namespaced(srv.client.clone(), "default");
        let first = api
            .create(&PostParams::default(), &service("s0", 80))
            .await
            .unwrap();
        let page = api.list(&ListParams::default().limit(1)).await.unwrap();
        let token = page.metadata.continue_.clone().unwrap();
        for i in 1..30 {
            api.create(&PostParams::default(), &service(&format!("s{i}"), 80))
                .await
                .unwrap();
        }
        let rv = first.metadata.resource_version.unwrap();
        let mut stream = api
            .watch(&WatchParams::default().timeout(5), &rv)
            .await
            .unwrap()
            .boxed();
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Error(e) => {
                assert_eq!(e.code, 410, "{t:?}");
                assert_eq!(e.reason, "Expired");
            }
            other => panic!("{t:?}: expected 410, got {other:?}"),
        }
        let err = api
            .list(&ListParams::default().limit(1).continue_token(&token))
            .await
            .unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 410),
            "{t:?}: {err}"
        );
    }
}

#[tokio::test]
async fn stale_resource_version_conflicts() {
    for t in BOTH {
        let srv = start(t).await;
        let api: Api<Service> = Api::namespaced(srv.client.clone(), "default");
        let created = api
            .create(&PostParams::default(), &service("web", 80))
            .await
            .unwrap();
        let mut fresh = created.clone();
        fresh.metadata.labels = Some(BTreeMap::from([("v".into(), "1".into())]));
        api.replace("web", &PostParams::default(), &fresh)
            .await
            .unwrap();
        let mut stale = created.clone();
        stale.metadata.labels = Some(BTreeMap::from([("v".into(), "2".into())]));
        let err = api
            .replace("web", &PostParams::default(), &stale)
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 409, "{t:?}");
                assert_eq!(s.reason, "Conflict");
                assert!(
                    s.message.contains("the object has been modified"),
                    "{}",
                    s.message
                );
            }
            other => panic!("{t:?}: {other}"),
        }
        let dup = api
            .create(&PostParams::default(), &service("web", 80))
            .await
            .unwrap_err();
        assert!(
            matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
            "{dup}"
        );
        // The rejected writes left the stored object as it was.
        let now = api.get("web").await.unwrap();
        assert_eq!(now.metadata.labels.unwrap()["v"], "1");
    }
}

#[tokio::test]
async fn strategic_merge_patch_merges_ports_by_port() {
    for t in BOTH {
        let srv = start(t).await;
        let api: Api<Service> = Api::namespaced(srv.client.clone(), "default");
        let mut svc = service("multi", 80);
        svc.spec.as_mut().unwrap().ports.as_mut().unwrap().push(
            serde_json::from_value(json!({"name": "https", "port": 443, "targetPort": 8443}))
                .unwrap(),
        );
        api.create(&PostParams::default(), &svc).await.unwrap();
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"name": "metrics", "port": 9100}]}});
        let out = api
            .patch("multi", &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .unwrap();
        let ports: Vec<(i32, String)> = out
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    p.port,
                    match p.target_port.unwrap() {
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => {
                            i.to_string()
                        }
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s,
                    },
                )
            })
            .collect();
        assert_eq!(
            ports,
            vec![
                (80, "9090".into()),
                (443, "8443".into()),
                (9100, "9100".into())
            ],
            "{t:?}"
        );
        let del = json!({"spec": {"ports": [{"$patch": "delete", "port": 443}]}});
        let out = api
            .patch("multi", &PatchParams::default(), &Patch::Strategic(del))
            .await
            .unwrap();
        assert_eq!(out.spec.unwrap().ports.unwrap().len(), 2);
        // A patch leaving the object invalid is refused and changes nothing.
        let bad = json!({"spec": {"ports": [{"port": 80, "name": "Bad_Name"}]}});
        let err = api
            .patch("multi", &PatchParams::default(), &Patch::Strategic(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 422),
            "{err}"
        );
        assert_eq!(
            api.get("multi").await.unwrap().spec.unwrap().ports.unwrap()[0]
                .name
                .as_deref(),
            Some("http")
        );
    }
}

#[tokio::test]
async fn runtime_watcher_sees_every_event_in_order() {
    for t in BOTH {
        let srv = start_quiet(t).await;
        let api: Api<Service> = Api::namespaced(srv.client.clone(), "default");
        let mut events =
            watcher(api.clone(), watcher::Config::default().labels("app=test")).boxed();
        // The initial list: empty apart from the markers.
        loop {
            match events.try_next().await.unwrap().unwrap() {
                watcher::Event::InitDone => break,
                watcher::Event::Init | watcher::Event::InitApply(_) => {}
                other => panic!("{t:?}: unexpected {other:?}"),
            }
        }
        let writer = {
            let api = api.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let name = format!("w{i:02}");
                    api.create(&PostParams::default(), &service(&name, 80))
                        .await
                        .unwrap();
                    api.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"annotations": {"n": i.to_string()}}})),
                    )
                    .await
                    .unwrap();
                    if i % 2 == 0 {
                        api.delete(&name, &DeleteParams::default()).await.unwrap();
                    }
                }
            })
        };
        let mut seen = Vec::new();
        while seen.len() < 50 {
            match events.try_next().await.unwrap().unwrap() {
                watcher::Event::Apply(s) => {
                    let ann = s.metadata.annotations.unwrap_or_default().get("n").cloned();
                    seen.push(format!(
                        "apply {} {}",
                        s.metadata.name.unwrap(),
                        ann.unwrap_or_default()
                    ));
                }
                watcher::Event::Delete(s) => {
                    seen.push(format!("delete {}", s.metadata.name.unwrap()))
                }
                other => panic!("{t:?}: unexpected {other:?}"),
            }
        }
        writer.await.unwrap();
        let mut want = Vec::new();
        for i in 0..20 {
            want.push(format!("apply w{i:02} "));
            want.push(format!("apply w{i:02} {i}"));
            if i % 2 == 0 {
                want.push(format!("delete w{i:02}"));
            }
        }
        assert_eq!(seen, want, "{t:?}");
    }
}

/// Server-side apply through the `kube` client (`Patch::Apply`), as controllers use it: a
/// create, a conflict with another manager (409 with a cause per field), `force`, and
/// `managedFields` kept on every write.
#[tokio::test]
async fn kube_client_server_side_apply() {
    for t in BOTH {
        let srv = start_quiet(t).await;
        let api: Api<Service> = Api::namespaced(srv.client.clone(), "default");
        let config = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ssa"},
            "spec": {"selector": {"app": "a"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
        let created = api
            .patch("ssa", &PatchParams::apply("alpha"), &Patch::Apply(&config))
            .await
            .unwrap();
        assert!(created.spec.as_ref().unwrap().cluster_ip.is_some(), "{t:?}");
        let mf = created.metadata.managed_fields.clone().unwrap();
        assert_eq!(mf.len(), 1);
        assert_eq!(mf[0].manager.as_deref(), Some("alpha"));
        assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

        let mut other = config.clone();
        other["spec"]["ports"][0]["targetPort"] = json!(9090);
        other["spec"]["selector"] = json!({"app": "b"});
        let err = api
            .patch("ssa", &PatchParams::apply("beta"), &Patch::Apply(&other))
            .await
            .unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("{t:?}: {err}")
        };
        assert_eq!(status.code, 409, "{t:?}");
        assert_eq!(status.reason, "Conflict");
        assert!(
            status
                .message
                .starts_with("Apply failed with 2 conflicts: conflicts with \"alpha\":"),
            "{}",
            status.message
        );
        let forced = api
            .patch(
                "ssa",
                &PatchParams::apply("beta").force(),
                &Patch::Apply(&other),
            )
            .await
            .unwrap();
        let spec = forced.spec.unwrap();
        assert_eq!(spec.selector.unwrap()["app"], "b");
        let managers: Vec<String> = forced
            .metadata
            .managed_fields
            .unwrap()
            .into_iter()
            .filter_map(|m| m.manager)
            .collect();
        assert_eq!(managers, ["alpha", "beta"], "{t:?}");

        // A merge patch is recorded as an Update by its manager.
        let patched = api
            .patch(
                "ssa",
                &PatchParams {
                    field_manager: Some("editor".into()),
                    ..Default::default()
                },
                &Patch::Merge(json!({"metadata": {"labels": {"edited": "yes"}}})),
            )
            .await
            .unwrap();
        let editor = patched
            .metadata
            .managed_fields
            .unwrap()
            .into_iter()
            .find(|m| m.manager.as_deref() == Some("editor"))
            .expect("editor's entry");
        assert_eq!(editor.operation.as_deref(), Some("Update"));
    }
}

/// The apply checks kube-apiserver makes before merging.
#[tokio::test]
async fn apply_requests_are_checked() {
    let srv = start_quiet(Transport::InProcess).await;
    let uri = "/api/v1/namespaces/default/services/chk";
    let ct = "application/apply-patch+yaml";
    let good =
        "apiVersion: v1\nkind: Service\nmetadata: {name: chk}\nspec: {ports: [{port: 80}]}\n";
    let (code, s) = srv.raw("PATCH", uri, ct, good).await;
    assert_eq!(code, 422, "no field manager: {s}");
    assert_eq!(s["details"]["kind"], "PatchOptions");
    assert_eq!(s["details"]["causes"][0]["field"], "fieldManager");
    let with = |q: &str| format!("{uri}?fieldManager=me{q}");
    for (body, want) in [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: chk}\n",
            "invalid object type: /v1, Kind=Pod",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: chk, managedFields: []}\n",
            "metadata.managedFields must be nil",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: chk}\nspec: {portz: []}\n",
            ".spec.portz: field not declared in schema",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: chk}\nspec: {ports: [{port: 80}, {port: 80}]}\n",
            "duplicate entries",
        ),
    ] {
        let (code, s) = srv.raw("PATCH", &with(""), ct, body).await;
        assert_eq!(code, 400, "{body}: {s}");
        assert!(s["message"].as_str().unwrap().contains(want), "{s}");
    }
    let (code, s) = srv.raw("PATCH", &with("&dryRun=All"), ct, good).await;
    assert_eq!(code, 201, "{s}");
    assert_eq!(srv.get(uri).await.0, 404, "dry run");
    let (code, _) = srv.raw("PATCH", &with(""), ct, good).await;
    assert_eq!(code, 201, "an apply creates");
    let (code, _) = srv.raw("PATCH", &with(""), ct, good).await;
    assert_eq!(code, 200);
}
