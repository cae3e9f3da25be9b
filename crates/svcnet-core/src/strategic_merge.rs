//! Strategic merge patch for svcnet's kinds, with the Kubernetes patch-merge keys and the
//! directives `kubectl apply` sends (`$patch`, `$setElementOrder/…`, `$retainKeys`,
//! `$deleteFromPrimitiveList/…`). No maintained crate implements it; the merge keys are the
//! `patchMergeKey` tags of the Kubernetes API types, kept in [`crate::schema`].

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the original (atomic lists, the default).
    Replace,
    /// Elements are matched by this key and merged.
    MergeByKey(&'static str),
    /// A set of scalars: the union, with deletions by directive.
    MergePrimitives,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("invalid patch: {0}")]
    Invalid(String),
}

/// The list strategy for the field at `path` (field names, no indices) of `kind`, from the
/// types' merge keys in [`crate::schema`].
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    match crate::schema::list_type(kind, path) {
        crate::schema::ListType::Atomic => ListStrategy::Replace,
        crate::schema::ListType::Set => ListStrategy::MergePrimitives,
        crate::schema::ListType::Map { merge_key, .. } => ListStrategy::MergeByKey(merge_key),
    }
}

/// Applies `patch` to `original` for an object of `kind`.
pub fn apply(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let (Value::Object(o), Value::Object(p)) = (original, patch) else {
        return Err(PatchError::Invalid(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let mut path = Vec::new();
    Ok(merge_map(kind, o, p, &mut path)?
        .map(Value::Object)
        .unwrap_or(Value::Null))
}

/// Removes directive keys from a value that is inserted wholesale.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| !(e.is_object() && e.get("$patch").is_some()))
                .map(strip)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `None` means the map itself is deleted (`$patch: delete`).
fn merge_map<'a>(
    kind: &str,
    original: &Map<String, Value>,
    patch: &'a Map<String, Value>,
    path: &mut Vec<&'a str>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let Value::Object(m) = strip(&Value::Object(patch.clone())) else {
                unreachable!()
            };
            return Ok(Some(m));
        }
        Some("delete") => return Ok(None),
        Some(other) => return Err(PatchError::Invalid(format!("unknown patch type {other:?}"))),
        None => {}
    }
    let mut out = original.clone();
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        path.push(k.as_str());
        match v {
            Value::Null => {
                out.remove(k);
            }
            Value::Object(pm) => match out.get(k) {
                Some(Value::Object(om)) => match merge_map(kind, om, pm, path)? {
                    Some(m) => {
                        out.insert(k.clone(), Value::Object(m));
                    }
                    None => {
                        out.remove(k);
                    }
                },
                _ => {
                    if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                        out.remove(k);
                    } else {
                        out.insert(k.clone(), strip(v));
                    }
                }
            },
            Value::Array(pa) => {
                let merged = match (list_strategy(kind, path), out.get(k)) {
                    (ListStrategy::MergeByKey(key), Some(Value::Array(oa))) => {
                        merge_list_by_key(kind, oa, pa, key, path)?
                    }
                    (ListStrategy::MergePrimitives, Some(Value::Array(oa))) => {
                        let mut res = oa.clone();
                        for e in pa {
                            if !res.contains(e) {
                                res.push(e.clone());
                            }
                        }
                        res
                    }
                    _ => match strip(v) {
                        Value::Array(a) => a,
                        _ => unreachable!(),
                    },
                };
                out.insert(k.clone(), Value::Array(merged));
            }
            scalar => {
                out.insert(k.clone(), scalar.clone());
            }
        }
        path.pop();
    }
    // Directives that refer to sibling fields.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|e| !remove.contains(e));
            }
        } else if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let order = v.as_array().cloned().unwrap_or_default();
            path.push(field);
            let strategy = list_strategy(kind, path);
            path.pop();
            if let Some(Value::Array(list)) = out.get_mut(field) {
                reorder(list, &order, strategy);
            }
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Some(out))
}

fn key_of<'v>(e: &'v Value, key: &str) -> Option<&'v Value> {
    e.as_object()?.get(key)
}

fn merge_list_by_key<'a>(
    kind: &str,
    original: &[Value],
    patch: &'a [Value],
    key: &str,
    path: &mut Vec<&'a str>,
) -> Result<Vec<Value>, PatchError> {
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .map(strip)
            .collect());
    }
    let mut out: Vec<Value> = original.to_vec();
    for pe in patch {
        let Some(pm) = pe.as_object() else {
            out.push(pe.clone());
            continue;
        };
        let Some(kv) = pm.get(key) else {
            if pm.get("$patch").is_none() {
                out.push(strip(pe));
            }
            continue;
        };
        let pos = out.iter().position(|oe| key_of(oe, key) == Some(kv));
        match (pos, pm.get("$patch").and_then(Value::as_str)) {
            (Some(i), Some("delete")) => {
                out.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => {
                let om = out[i].as_object().cloned().unwrap_or_default();
                match merge_map(kind, &om, pm, path)? {
                    Some(m) => out[i] = Value::Object(m),
                    None => {
                        out.remove(i);
                    }
                }
            }
            (None, _) => out.push(strip(pe)),
        }
    }
    Ok(out)
}

/// `$setElementOrder`: listed elements first, in the listed order; the rest keep theirs.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let rank = |e: &Value| -> usize {
        order
            .iter()
            .position(|o| match strategy {
                ListStrategy::MergeByKey(k) => {
                    key_of(o, k).is_some() && key_of(o, k) == key_of(e, k)
                }
                _ => o == e,
            })
            .unwrap_or(usize::MAX)
    };
    let mut indexed: Vec<(usize, usize, Value)> = list
        .drain(..)
        .enumerate()
        .map(|(i, e)| (rank(&e), i, e))
        .collect();
    indexed.sort_by_key(|(r, i, _)| (*r, *i));
    list.extend(indexed.into_iter().map(|(_, _, e)| e));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_ports_merge_by_port() {
        let orig = json!({"spec": {"ports": [{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443, "name": "https"}], "selector": {"app": "a"}}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 8443, "name": "alt"}]}});
        let out = apply("Service", &orig, &patch).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 9090}, {"port": 443, "name": "https"}, {"port": 8443, "name": "alt"}])
        );
        assert_eq!(out["spec"]["selector"], json!({"app": "a"}));
    }

    #[test]
    fn kubectl_apply_directives() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [{"port": 80}, {"port": 443}]}});
        let patch = json!({
            "metadata": {"labels": {"b": null}},
            "spec": {
                "$setElementOrder/ports": [{"port": 443}, {"port": 80}],
                "ports": [{"$patch": "delete", "port": 443}, {"port": 80, "name": "http"}]
            }
        });
        let out = apply("Service", &orig, &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(out["spec"]["ports"], json!([{"port": 80, "name": "http"}]));
        let replace = json!({"spec": {"ports": [{"$patch": "replace"}, {"port": 1}]}});
        assert_eq!(
            apply("Service", &orig, &replace).unwrap()["spec"]["ports"],
            json!([{"port": 1}])
        );
        let order = json!({"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}]}});
        assert_eq!(
            apply("Service", &orig, &order).unwrap()["spec"]["ports"],
            json!([{"port": 443}, {"port": 80}])
        );
    }

    #[test]
    fn atomic_lists_replace_and_primitive_sets_merge() {
        let orig = json!({"spec": {"externalIPs": ["1.1.1.1"]}, "metadata": {"finalizers": ["a"]}});
        let patch = json!({"spec": {"externalIPs": ["2.2.2.2"]}, "metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = apply("Service", &orig, &patch).unwrap();
        assert_eq!(out["spec"]["externalIPs"], json!(["2.2.2.2"]));
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let out = apply(
            "Pod",
            &pod,
            &json!({"spec": {"containers": [{"name": "b", "image": "z"}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["containers"][1]["image"], "z");
        assert_eq!(out["spec"]["containers"][0]["image"], "x");
    }
}
