//! Server-side apply scenarios after structured-merge-diff's and kube-apiserver's tests:
//! shared ownership, conflicts, force, removal of fields a manager stopped applying, updaters
//! taking fields, the before-first-apply manager, the update-manager cap and kubectl's
//! client-side-apply migration. managedFields are checked against golden files.

use serde_json::{Value, json};

use super::*;

const T1: &str = "2026-12-01T10:00:00Z";
const T2: &str = "2026-12-01T10:00:05Z";
const T3: &str = "2026-12-01T10:00:09Z";

fn req<'a>(manager: &'a str, now: &'a str) -> Request<'a> {
    Request {
        kind: "Service",
        manager,
        api_version: "v1",
        subresource: "",
        reset: &["status"],
        now,
    }
}

fn service(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn managers_of(obj: &Value) -> Managers {
    match obj["metadata"].get("managedFields") {
        Some(v) => Managers::decode(v).expect("valid managedFields"),
        None => Managers::default(),
    }
}

fn with_managers(mut obj: Value, m: &Managers) -> Value {
    if m.is_empty() {
        if let Some(meta) = obj["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = m.encode();
    }
    obj
}

/// An apply as the API server runs it: the live object's managers, the result's managers.
fn do_apply(
    live: Option<&Value>,
    config: &Value,
    r: &Request,
    force: bool,
) -> Result<Value, ApplyError> {
    let m = live.map(managers_of).unwrap_or_default();
    let applied = apply(live, config, m, r, force)?;
    Ok(with_managers(applied.object, &applied.managers))
}

fn do_update(live: Option<&Value>, new: &Value, r: &Request) -> Value {
    let m = live.map(managers_of).unwrap_or_default();
    let m = update(live, new, m, r).expect("update tracks");
    with_managers(new.clone(), &m)
}

fn conflict_paths(e: ApplyError) -> Vec<(String, String)> {
    match e {
        ApplyError::Conflicts(c) => c
            .into_iter()
            .map(|c| (c.manager.describe(), path_string(&c.path)))
            .collect(),
        other => panic!("expected conflicts, got {other:?}"),
    }
}

fn owners(obj: &Value, path: &[PathElement]) -> Vec<String> {
    managers_of(obj)
        .0
        .iter()
        .filter(|(_, e)| e.set.has(path))
        .map(|(id, _)| id.manager.clone())
        .collect()
}

fn f(n: &str) -> PathElement {
    PathElement::Field(n.into())
}

fn port_key(p: i64) -> PathElement {
    PathElement::Key(vec![
        ("port".into(), json!(p)),
        ("protocol".into(), json!("TCP")),
    ])
}

#[test]
fn create_via_apply_owns_exactly_the_configuration() {
    let cfg =
        service(json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}));
    let obj = do_apply(None, &cfg, &req("alice", T1), false).unwrap();
    insta::assert_json_snapshot!(obj["metadata"]["managedFields"]);
    // The key picked up the protocol default; the applier does not own the protocol.
    assert!(!managers_of(&obj).0.values().any(|e| e.set.has(&[
        f("spec"),
        f("ports"),
        port_key(80),
        f("protocol")
    ])));
}

#[test]
fn equal_values_are_shared_and_different_ones_conflict() {
    let a = service(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
    let live = do_apply(None, &a, &req("alice", T1), false).unwrap();
    let b = do_apply(Some(&live), &a, &req("bob", T2), false).unwrap();
    assert_eq!(owners(&b, &[f("spec"), f("type")]), ["alice", "bob"]);
    assert_eq!(b["spec"], live["spec"]);

    let change = service(json!({"type": "NodePort"}));
    let err = do_apply(Some(&b), &change, &req("carol", T3), false).unwrap_err();
    assert_eq!(
        conflict_paths(err),
        [
            ("\"alice\"".to_owned(), ".spec.type".to_owned()),
            ("\"bob\"".to_owned(), ".spec.type".to_owned())
        ]
    );
    // Forced, carol takes the field from both.
    let forced = do_apply(Some(&b), &change, &req("carol", T3), true).unwrap();
    assert_eq!(forced["spec"]["type"], "NodePort");
    assert_eq!(owners(&forced, &[f("spec"), f("type")]), ["carol"]);
    insta::assert_json_snapshot!(forced["metadata"]["managedFields"]);
}

#[test]
fn a_field_another_manager_owns_stays_when_one_stops_applying_it() {
    let both = service(json!({"ports": [{"port": 80}], "selector": {"app": "web"}}));
    let live = do_apply(None, &both, &req("alice", T1), false).unwrap();
    let live = do_apply(Some(&live), &both, &req("bob", T2), false).unwrap();
    let without = service(json!({"ports": [{"port": 80}]}));
    let obj = do_apply(Some(&live), &without, &req("alice", T3), false).unwrap();
    assert_eq!(obj["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(owners(&obj, &[f("spec"), f("selector")]), ["bob"]);
}

#[test]
fn fields_and_items_only_the_applier_owned_are_removed() {
    let two =
        service(json!({"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}));
    let mut live = do_apply(None, &two, &req("alice", T1), false).unwrap();
    live["metadata"]["labels"] = json!({"tier": "web"});
    let one = service(json!({"ports": [{"port": 80, "name": "http"}]}));
    let obj = do_apply(Some(&live), &one, &req("alice", T2), false).unwrap();
    assert_eq!(obj["spec"]["ports"], json!([{"port": 80, "name": "http"}]));
    // A label nobody applied is not touched.
    assert_eq!(obj["metadata"]["labels"], json!({"tier": "web"}));
    insta::assert_json_snapshot!(obj["metadata"]["managedFields"]);
}

#[test]
fn a_dropped_item_goes_even_when_an_updater_changed_a_field_in_it() {
    let two = service(json!({"ports": [{"port": 80}, {"port": 443, "targetPort": 8443}]}));
    let live = do_apply(None, &two, &req("alice", T1), false).unwrap();
    let mut edited = live.clone();
    edited["spec"]["ports"][1]["targetPort"] = json!(9443);
    let live = do_update(Some(&live), &edited, &req("kubectl-edit", T2));
    assert_eq!(
        owners(
            &live,
            &[f("spec"), f("ports"), port_key(443), f("targetPort")]
        ),
        ["kubectl-edit"]
    );
    let one = service(json!({"ports": [{"port": 80}]}));
    let obj = do_apply(Some(&live), &one, &req("alice", T3), false).unwrap();
    assert_eq!(obj["spec"]["ports"], json!([{"port": 80}]));
    assert!(
        !managers_of(&obj)
            .0
            .keys()
            .any(|id| id.manager == "kubectl-edit")
    );
}

#[test]
fn an_updater_owns_what_it_changes_and_the_applier_then_conflicts() {
    let cfg = service(json!({"selector": {"app": "a"}, "ports": [{"port": 80}]}));
    let live = do_apply(None, &cfg, &req("alice", T1), false).unwrap();
    let mut edited = live.clone();
    edited["spec"]["selector"] = json!({"app": "b"});
    let live = do_update(Some(&live), &edited, &req("kubectl-edit", T2));
    assert_eq!(owners(&live, &[f("spec"), f("selector")]), ["kubectl-edit"]);
    let err = do_apply(Some(&live), &cfg, &req("alice", T3), false).unwrap_err();
    assert_eq!(
        conflict_paths(err),
        [(
            "\"kubectl-edit\" using v1".to_owned(),
            ".spec.selector".to_owned()
        )]
    );
}

#[test]
fn a_creator_owns_defaulted_fields_so_changing_them_by_apply_conflicts() {
    let created = service(
        json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "sessionAffinity": "None", "type": "ClusterIP"}),
    );
    let live = do_update(None, &created, &req("kubectl-create", T1));
    insta::assert_json_snapshot!(live["metadata"]["managedFields"]);
    let same = service(json!({"sessionAffinity": "None"}));
    let shared = do_apply(Some(&live), &same, &req("alice", T2), false).unwrap();
    assert_eq!(
        owners(&shared, &[f("spec"), f("sessionAffinity")]),
        ["alice", "kubectl-create"]
    );
    let other = service(json!({"sessionAffinity": "ClientIP"}));
    let err = do_apply(Some(&live), &other, &req("alice", T2), false).unwrap_err();
    assert_eq!(
        conflict_paths(err),
        [(
            "\"kubectl-create\" using v1".to_owned(),
            ".spec.sessionAffinity".to_owned()
        )]
    );
}

#[test]
fn the_same_name_as_updater_and_applier_are_two_managers() {
    let live = do_update(None, &service(json!({"type": "ClusterIP"})), &req("m", T1));
    let err = do_apply(
        Some(&live),
        &service(json!({"type": "NodePort"})),
        &req("m", T2),
        false,
    )
    .unwrap_err();
    assert_eq!(
        conflict_paths(err),
        [("\"m\" using v1".to_owned(), ".spec.type".to_owned())]
    );
}

#[test]
fn atomic_maps_conflict_as_a_whole_and_sets_merge_by_value() {
    let live = do_apply(
        None,
        &service(json!({"selector": {"app": "a"}})),
        &req("alice", T1),
        false,
    )
    .unwrap();
    let err = do_apply(
        Some(&live),
        &service(json!({"selector": {"app": "a", "tier": "x"}})),
        &req("bob", T2),
        false,
    )
    .unwrap_err();
    assert_eq!(
        conflict_paths(err),
        [("\"alice\"".to_owned(), ".spec.selector".to_owned())]
    );

    let fin = |list: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "finalizers": list}});
    let live = do_apply(None, &fin(json!(["a.io/a"])), &req("alice", T1), false).unwrap();
    let live = do_apply(Some(&live), &fin(json!(["b.io/b"])), &req("bob", T2), false).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["a.io/a", "b.io/b"]));
    let live = do_apply(Some(&live), &fin(json!([])), &req("alice", T3), false).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["b.io/b"]));
}

#[test]
fn status_is_not_owned_through_the_object() {
    let mut cfg = service(json!({"type": "ClusterIP"}));
    cfg["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}});
    let obj = do_apply(None, &cfg, &req("alice", T1), false).unwrap();
    let m = managers_of(&obj);
    assert!(
        m.0.values()
            .all(|e| e.set.child(&f("status")).is_none() && !e.set.has(&[f("status")]))
    );
}

#[test]
fn an_untracked_object_belongs_to_before_first_apply() {
    let live = service(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
    let untracked = do_update(Some(&live), &live, &req("kubectl-edit", T1));
    assert!(
        untracked["metadata"].get("managedFields").is_none(),
        "updates of untracked objects stay untracked"
    );
    let err = do_apply(
        Some(&live),
        &service(json!({"type": "NodePort"})),
        &req("alice", T2),
        false,
    )
    .unwrap_err();
    assert_eq!(
        conflict_paths(err),
        [(
            "\"before-first-apply\" using v1".to_owned(),
            ".spec.type".to_owned()
        )]
    );
    let ok = do_apply(
        Some(&live),
        &service(json!({"type": "ClusterIP"})),
        &req("alice", T2),
        false,
    )
    .unwrap();
    assert_eq!(
        owners(&ok, &[f("spec"), f("type")]),
        ["alice", "before-first-apply"]
    );
}

#[test]
fn requested_managed_fields_reset_replace_or_are_ignored() {
    assert_eq!(requested(None), Requested::Keep);
    assert_eq!(requested(Some(&json!([]))), Requested::Reset);
    assert_eq!(requested(Some(&json!([{}]))), Requested::Reset);
    assert_eq!(
        requested(Some(
            &json!([{"manager": "x", "operation": "Foo", "apiVersion": "v1", "fieldsType": "FieldsV1"}])
        )),
        Requested::Keep
    );
    let valid = json!([{"manager": "x", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:type": {}}}}]);
    match requested(Some(&valid)) {
        Requested::Replace(m) => assert!(m.0.keys().any(|id| id.manager == "x")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn conflict_messages_are_worded_like_kube_apiserver() {
    let live = do_apply(
        None,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "a"}}}),
        &req("bar", T1),
        false,
    )
    .unwrap();
    let live = do_update(
        Some(&live),
        &{
            let mut l = live.clone();
            l["spec"] = json!({"type": "NodePort", "ports": [{"port": 80, "targetPort": 1}]});
            l
        },
        &req("foo", T2),
    );
    let cfg = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "b"}},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": 2}]}});
    let Err(ApplyError::Conflicts(c)) = do_apply(Some(&live), &cfg, &req("me", T3), false) else {
        panic!("expected conflicts")
    };
    assert_eq!(
        conflicts_message(&c),
        "Apply failed with 3 conflicts: conflicts with \"bar\":\n- .metadata.labels.app\nconflicts with \"foo\" using v1:\n- .spec.type\n- .spec.ports[port=80,protocol=\"TCP\"].targetPort"
    );
    assert_eq!(
        conflicts_message(&c[..1]),
        "Apply failed with 1 conflict: conflict with \"bar\": .metadata.labels.app"
    );
}

#[test]
fn update_managers_beyond_ten_fold_into_ancient_changes() {
    let mut live = do_update(
        None,
        &service(json!({"ports": [{"port": 80}]})),
        &req("m00", "2026-12-01T10:00:00Z"),
    );
    for i in 1..=11 {
        let now = format!("2026-12-01T10:00:{i:02}Z");
        let mut next = live.clone();
        next["metadata"]["labels"] = json!({format!("l{i}"): "x"});
        if let Some(l) = live["metadata"]["labels"].as_object() {
            for (k, v) in l {
                next["metadata"]["labels"][k] = v.clone();
            }
        }
        live = do_update(Some(&live), &next, &req(&format!("m{i:02}"), &now));
    }
    let m = managers_of(&live);
    let names: Vec<&str> = m.0.keys().map(|id| id.manager.as_str()).collect();
    assert_eq!(m.0.len(), 10, "{names:?}");
    assert!(names.contains(&"ancient-changes"), "{names:?}");
    assert!(
        !names.contains(&"m00") && !names.contains(&"m01") && !names.contains(&"m02"),
        "{names:?}"
    );
}

#[test]
fn a_no_op_apply_keeps_the_time() {
    let cfg = service(json!({"type": "ClusterIP"}));
    let live = do_apply(None, &cfg, &req("alice", T1), false).unwrap();
    let again = do_apply(Some(&live), &cfg, &req("alice", T2), false).unwrap();
    assert_eq!(again, live);
}

#[test]
fn kubectl_takes_over_fields_client_side_apply_set_to_their_live_value() {
    // Created by client-side `kubectl apply`: the manager is kubectl-client-side-apply and
    // the annotation holds the manifest.
    let manifest = service(json!({"ports": [{"port": 80, "targetPort": 8080}]}));
    let mut created = manifest.clone();
    created["metadata"]["annotations"] =
        json!({LAST_APPLIED: serde_json::to_string(&manifest).unwrap()});
    let live = do_update(None, &created, &req("kubectl-client-side-apply", T1));
    let changed = service(json!({"ports": [{"port": 80, "targetPort": 9090}]}));
    let obj = do_apply(Some(&live), &changed, &req("kubectl", T2), false).unwrap();
    assert_eq!(obj["spec"]["ports"][0]["targetPort"], 9090);
    assert_eq!(
        owners(
            &obj,
            &[f("spec"), f("ports"), port_key(80), f("targetPort")]
        ),
        ["kubectl"]
    );
    let ann = obj["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .unwrap();
    assert!(ann.ends_with('\n') && ann.contains("9090"), "{ann}");
    // Another manager gets no such pass.
    let err = do_apply(Some(&live), &changed, &req("other", T2), false).unwrap_err();
    assert_eq!(
        conflict_paths(err),
        [(
            "\"kubectl-client-side-apply\" using v1".to_owned(),
            ".spec.ports[port=80,protocol=\"TCP\"].targetPort".to_owned()
        )]
    );
}

#[test]
fn merged_lists_keep_structured_merge_diff_order_and_refuse_duplicate_keys() {
    let live = service(json!({"ports": [{"port": 1}, {"port": 2}, {"port": 3}]}));
    let cfg = service(json!({"ports": [{"port": 3}, {"port": 1}]}));
    let merged = merge("Service", &live, &cfg).unwrap();
    assert_eq!(
        merged["spec"]["ports"],
        json!([{"port": 2}, {"port": 3}, {"port": 1}])
    );
    let cfg = service(json!({"ports": [{"port": 1}, {"port": 4}]}));
    let merged = merge("Service", &live, &cfg).unwrap();
    assert_eq!(
        merged["spec"]["ports"],
        json!([{"port": 1}, {"port": 2}, {"port": 3}, {"port": 4}])
    );
    let dup = service(json!({"ports": [{"port": 1}, {"port": 1, "protocol": "TCP"}]}));
    assert!(matches!(merge("Service", &live, &dup), Err(e) if e.contains("duplicate entries")));
}

#[test]
fn duplicates_far_apart_in_long_lists_are_found_and_compared_by_group() {
    // 5,000 finalizers (a set) with one value repeated at both ends: duplicates are found
    // wherever they are, and a duplicated element is owned as a whole.
    let mut fins: Vec<Value> = (0..5000).map(|i| json!(format!("e.com/f{i}"))).collect();
    fins.push(json!("e.com/f0"));
    let mut obj = service(json!({"ports": [{"port": 80}]}));
    obj["metadata"]["finalizers"] = json!(fins);
    let set = field_set("Service", &obj).unwrap();
    let fin = |v: &str| [f("metadata"), f("finalizers"), PathElement::Value(json!(v))];
    assert!(set.has(&fin("e.com/f0")) && set.has(&fin("e.com/f4999")));
    // An update that changes one item of the long list is one modified element.
    let mut changed = obj.clone();
    changed["metadata"]["finalizers"][2500] = json!("e.com/new");
    let cmp = compare("Service", &obj, &changed).unwrap();
    assert!(cmp.added.has(&fin("e.com/new")), "{cmp:?}");
    assert!(cmp.removed.has(&fin("e.com/f2500")), "{cmp:?}");
    let mut dup_cfg = service(json!({}));
    dup_cfg["metadata"]["finalizers"] = json!(["a", "b", "a"]);
    let live = service(json!({}));
    assert!(
        matches!(merge("Service", &live, &dup_cfg), Err(e) if e.contains("duplicate entries")),
        "a set with a repeated value is refused"
    );
}

#[test]
fn keyed_lists_refuse_items_that_are_not_objects() {
    for bad in [json!([null]), json!([1, 2]), json!(["x"])] {
        let cfg = service(json!({"ports": bad}));
        let err = field_set("Service", &cfg).unwrap_err();
        assert!(err.contains("may not have non-map elements"), "{err}");
    }
}

#[test]
fn kinds_without_spec_or_status_get_none_when_created_by_apply() {
    let r = Request {
        kind: "EndpointSlice",
        manager: "ctl",
        api_version: "discovery.k8s.io/v1",
        subresource: "",
        reset: &[],
        now: T1,
    };
    let cfg = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "s", "namespace": "default"}, "addressType": "IPv4", "endpoints": []});
    let obj = apply(None, &cfg, Managers::default(), &r, false)
        .unwrap()
        .object;
    assert!(
        obj.get("spec").is_none() && obj.get("status").is_none(),
        "{obj}"
    );
}

#[test]
fn kubectl_keeps_the_annotation_in_gos_encoding_and_drops_it_when_too_large() {
    let manifest = service(json!({"ports": [{"port": 80, "name": "a<b>&c"}]}));
    let mut created = manifest.clone();
    created["metadata"]["annotations"] = json!({LAST_APPLIED: "{}"});
    let live = do_update(None, &created, &req("kubectl-client-side-apply", T1));
    let obj = do_apply(Some(&live), &manifest, &req("kubectl", T2), true).unwrap();
    let ann = obj["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .unwrap();
    assert!(ann.contains(r"a\u003cb\u003e\u0026c"), "{ann}");
    // A configuration whose annotation would pass the 256 KiB limit: applied, annotation gone.
    let mut big = manifest.clone();
    big["metadata"]["labels"] = json!({"l": "x"});
    big["metadata"]["annotations"] = json!({"big": "y".repeat(200 * 1024)});
    let obj = do_apply(Some(&live), &big, &req("kubectl", T3), true).unwrap();
    let ann = obj["metadata"]["annotations"].as_object().unwrap();
    assert!(
        ann.contains_key("big") && !ann.contains_key(LAST_APPLIED),
        "{ann:?}"
    );
}

#[test]
fn an_annotation_that_does_not_type_check_leaves_the_conflicts() {
    let mut created = service(json!({"ports": [{"port": 80, "targetPort": 8080}]}));
    // The last-applied configuration has a port list item that is not an object.
    created["metadata"]["annotations"] = json!({LAST_APPLIED: serde_json::to_string(
        &service(json!({"ports": [7]}))).unwrap()});
    let live = do_update(None, &created, &req("kubectl-client-side-apply", T1));
    let changed = service(json!({"ports": [{"port": 80, "targetPort": 9090}]}));
    let err = do_apply(Some(&live), &changed, &req("kubectl", T2), false).unwrap_err();
    assert_eq!(conflict_paths(err).len(), 1);
}
