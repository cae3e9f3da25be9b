//! `application/json;as=Table` responses, so `kubectl get` prints the columns it prints
//! against kube-apiserver. The columns and cells are each kind's ([`Strategy::columns`]).

use serde_json::{Value, json};

use crate::strategy::Strategy;

/// The row's `object`: PartialObjectMetadata unless the full object was asked for.
fn row_object(obj: &Value, include_object: &str) -> Value {
    match include_object {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }),
    }
}

pub fn table(
    strategy: &dyn Strategy,
    objs: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include_object: &str,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| json!({"cells": strategy.cells(o), "object": row_object(o, include_object)}))
        .collect();
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": if with_columns { Value::Array(strategy.columns()) } else { Value::Null },
        "rows": rows,
    })
}
