//! The REST surface: path parsing, query options, content negotiation, patch types, watch
//! streams. Handlers are thin; object semantics live in [`crate::registry`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::{Value, json};
use svcnet_core::selector::{FieldSelector, LabelSelector};
use svcnet_store::EventType;
use tokio::sync::mpsc;

use crate::discovery;
use crate::error::{ApiError, Result};
use crate::registry::{self, DeleteOptions, ListOptions, Registry, decode_at};
use crate::resources::{self, Resource};
use crate::table;

type Params = HashMap<String, String>;

pub fn router(reg: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { axum::Json(discovery::version()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/api",
            get(|State(reg): State<Arc<Registry>>| async move {
                axum::Json(discovery::api_versions(&reg.config().advertise.to_string()))
            }),
        )
        .route(
            "/apis",
            get(|| async { axum::Json(discovery::api_group_list()) }),
        )
        .route(
            "/openapi/v3",
            get(|| async { axum::Json(discovery::openapi_v3_root()) }),
        )
        .fallback(dispatch)
        .with_state(reg)
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Where a request points.
struct Target {
    res: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

enum Route {
    Resource(Target),
    ResourceList(Value),
    Group(Value),
    OpenApi(Value),
}

fn route(path: &str) -> Result<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if let ["openapi", "v3", rest @ ..] = segs.as_slice() {
        return discovery::openapi_v3_group(&rest.join("/"))
            .map(Route::OpenApi)
            .ok_or(ApiError::NoRoute);
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group] => {
            return discovery::api_group(group)
                .map(Route::Group)
                .ok_or(ApiError::NoRoute);
        }
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::NoRoute),
    };
    if rest.is_empty() {
        return discovery::resource_list(group, version)
            .map(Route::ResourceList)
            .ok_or(ApiError::NoRoute);
    }
    let find = |plural: &str| resources::find(group, version, plural).ok_or(ApiError::NoRoute);
    let (res, namespace, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            let res = find(plural)?;
            if !res.namespaced {
                return Err(ApiError::NoRoute);
            }
            match tail {
                [] => (res, Some(*ns), None, None),
                [name] => (res, Some(*ns), Some(*name), None),
                [name, sub] => (res, Some(*ns), Some(*name), Some(*sub)),
                _ => return Err(ApiError::NoRoute),
            }
        }
        [plural, tail @ ..] => {
            let res = find(plural)?;
            match tail {
                [] => (res, None, None, None),
                [_, ..] if res.namespaced => return Err(ApiError::NoRoute),
                [name] => (res, None, Some(*name), None),
                [name, sub] => (res, None, Some(*name), Some(*sub)),
                _ => return Err(ApiError::NoRoute),
            }
        }
        [] => return Err(ApiError::NoRoute),
    };
    if let Some(s) = sub
        && !(s == "status" && res.has_status || (s == "finalize" && res.plural == "namespaces"))
    {
        return Err(ApiError::NoRoute);
    }
    Ok(Route::Resource(Target {
        res,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: sub.map(str::to_owned),
    }))
}

async fn dispatch(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    match handle(reg, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn list_options(p: &Params) -> Result<ListOptions> {
    let labels = LabelSelector::parse(p.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let fields = FieldSelector::parse(p.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = match p.get("limit").filter(|s| !s.is_empty()) {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::BadRequest(format!("invalid limit {l:?}")))?,
        ),
        None => None,
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: p.get("continue").cloned(),
    })
}

fn flag(p: &Params, k: &str) -> bool {
    matches!(p.get(k).map(String::as_str), Some("true" | "1"))
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

async fn read_body(reg: &Registry, body: Body) -> Result<Bytes> {
    axum::body::to_bytes(body, reg.config().max_body_bytes)
        .await
        .map_err(|_| ApiError::TooLarge(reg.config().max_body_bytes))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a JSON or YAML request body into a JSON value.
fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    let ct = content_type(headers);
    if ct == crate::protobuf::CONTENT_TYPE {
        return crate::protobuf::decode(body);
    }
    if ct.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::BadRequest("the request body is not UTF-8".into()))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")))
    } else if ct.is_empty() || ct.contains("json") || ct == "*/*" {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}"))
        })
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, and application/vnd.kubernetes.protobuf for Namespaces and Services (got {ct})"
        )))
    }
}

/// `fieldValidation`: Strict refuses unknown fields, Warn (the default) reports them in
/// `Warning` headers, Ignore drops them silently.
fn field_validation(res: &Resource, p: &Params, obj: &Value) -> Result<Vec<String>> {
    let mode = p.get("fieldValidation").map_or("Warn", String::as_str);
    if mode == "Ignore" {
        return Ok(Vec::new());
    }
    if !matches!(mode, "Warn" | "Strict") {
        return Err(ApiError::BadRequest(format!(
            "fieldValidation must be one of Ignore, Warn or Strict, not {mode:?}"
        )));
    }
    let unknown: Vec<String> = crate::kinds::unknown_fields(res, obj)
        .into_iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if mode == "Strict" && !unknown.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            res.kind,
            res.version,
            res.kind,
            unknown.join(", ")
        )));
    }
    Ok(unknown)
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = header::HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// The options of a delete, from the query and the (optional) `DeleteOptions` body.
fn delete_options(p: &Params, headers: &HeaderMap, body: &[u8]) -> Result<DeleteOptions> {
    let mut o = DeleteOptions {
        grace_period_seconds: p.get("gracePeriodSeconds").and_then(|s| s.parse().ok()),
        ..Default::default()
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let b = decode_body(headers, body)?;
        if let Some(g) = b["gracePeriodSeconds"].as_i64() {
            o.grace_period_seconds = Some(g);
        }
        o.precondition_uid = b["preconditions"]["uid"].as_str().map(str::to_owned);
        o.precondition_rv = b["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
    }
    Ok(o)
}

/// The list response, assembled from the objects' bytes.
fn list_body(res: &Resource, page: &registry::ListPage) -> Vec<u8> {
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    let head = json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": meta})
        .to_string();
    let size: usize = page.items.iter().map(|i| i.len() + 1).sum();
    let mut out = Vec::with_capacity(head.len() + size + 16);
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    out
}

fn raw_response(code: StatusCode, body: Vec<u8>) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn parse_items(page: &registry::ListPage) -> Result<Vec<Value>> {
    page.items
        .iter()
        .map(|b| serde_json::from_slice(b).map_err(|e| ApiError::Internal(e.to_string())))
        .collect()
}

async fn handle(reg: Arc<Registry>, req: Request) -> Result<Response> {
    let (parts, body) = req.into_parts();
    let params: Params = Query::<Params>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
    let target = match route(parts.uri.path())? {
        Route::Resource(t) => t,
        Route::ResourceList(v) | Route::Group(v) | Route::OpenApi(v) => {
            if parts.method != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            return Ok(json_response(StatusCode::OK, &v));
        }
    };
    let Target {
        res,
        namespace,
        name,
        subresource,
    } = target;
    let ns = namespace.as_deref();
    let table = wants_table(&parts.headers);
    let include = params.get("includeObject").cloned().unwrap_or_default();
    let dry_run = params.get("dryRun").is_some_and(|d| d == "All");
    let status_sub = subresource.as_deref() == Some("status");
    let headers = parts.headers;

    match (parts.method, name) {
        (Method::GET, None) if flag(&params, "watch") => {
            Ok(watch(reg, res, namespace, &params, table, include)?)
        }
        (Method::GET, None) => {
            let opts = list_options(&params)?;
            let page = reg.list(res, ns, &opts).await?;
            if table {
                let items = parse_items(&page)?;
                let t = table::table(
                    res,
                    &items,
                    &page.revision.to_string(),
                    page.continue_token.as_deref(),
                    &include,
                    true,
                );
                return Ok(json_response(StatusCode::OK, &t));
            }
            Ok(raw_response(StatusCode::OK, list_body(res, &page)))
        }
        (Method::GET, Some(name)) => {
            let obj = reg.get(res, ns, &name).await?;
            if table {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(res, &[obj], &rv, None, &include, true),
                ));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        (Method::POST, None) => {
            let body = read_body(&reg, body).await?;
            let obj = decode_body(&headers, &body)?;
            let warnings = field_validation(res, &params, &obj)?;
            let created = reg.create(res, ns, obj, dry_run).await?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &created),
                &warnings,
            ))
        }
        (Method::PUT, Some(name)) => {
            let body = read_body(&reg, body).await?;
            let obj = decode_body(&headers, &body)?;
            let warnings = field_validation(res, &params, &obj)?;
            if subresource.as_deref() == Some("finalize") {
                let updated = reg.update(res, ns, &name, obj, false, dry_run).await?;
                return Ok(json_response(StatusCode::OK, &updated));
            }
            let updated = reg.update(res, ns, &name, obj, status_sub, dry_run).await?;
            Ok(with_warnings(
                json_response(StatusCode::OK, &updated),
                &warnings,
            ))
        }
        (Method::PATCH, Some(name)) => {
            let body = read_body(&reg, body).await?;
            let (patched, warnings) = patch(
                &reg, res, ns, &name, &headers, &params, &body, status_sub, dry_run,
            )
            .await?;
            Ok(with_warnings(
                json_response(StatusCode::OK, &patched),
                &warnings,
            ))
        }
        (Method::DELETE, Some(name)) => {
            let body = read_body(&reg, body).await?;
            let opts = delete_options(&params, &headers, &body)?;
            let deleted = reg.delete(res, ns, &name, &opts).await?;
            Ok(json_response(StatusCode::OK, &deleted))
        }
        (Method::DELETE, None) => {
            let body = read_body(&reg, body).await?;
            let opts = delete_options(&params, &headers, &body)?;
            let items = reg
                .delete_collection(res, ns, &list_options(&params)?, &opts)
                .await?;
            let rev = reg.store().revision().await?;
            let items = items
                .iter()
                .map(|v| Bytes::from(serde_json::to_vec(v).expect("serializable")))
                .collect();
            let page = registry::ListPage {
                items,
                revision: rev,
                continue_token: None,
            };
            Ok(raw_response(StatusCode::OK, list_body(res, &page)))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

#[allow(clippy::too_many_arguments)]
async fn patch(
    reg: &Registry,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    headers: &HeaderMap,
    params: &Params,
    body: &[u8],
    status: bool,
    dry_run: bool,
) -> Result<(Value, Vec<String>)> {
    let ct = content_type(headers);
    let patch: Value = match ct.as_str() {
        "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?,
        "application/apply-patch+yaml" => {
            return Err(ApiError::UnsupportedMediaType(
                "server-side apply is not supported by svcnet; use client-side `kubectl apply`"
                    .into(),
            ));
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other})"
            )));
        }
    };
    for _attempt in 0..8 {
        let current = reg.get(res, ns, name).await?;
        let current_rv = current["metadata"]["resourceVersion"].clone();
        let mut patched = match ct.as_str() {
            "application/json-patch+json" => {
                let p: json_patch::Patch = serde_json::from_value(patch.clone())
                    .map_err(|e| ApiError::BadRequest(format!("error decoding JSON patch: {e}")))?;
                let mut doc = current.clone();
                json_patch::patch(&mut doc, &p).map_err(|e| ApiError::Invalid {
                    group: res.group.into(),
                    kind: res.kind.into(),
                    name: name.into(),
                    errors: svcnet_core::field::FieldError::invalid("", "", e.to_string()).into(),
                })?;
                doc
            }
            "application/merge-patch+json" => {
                let mut doc = current.clone();
                json_patch::merge(&mut doc, &patch);
                doc
            }
            _ => svcnet_core::strategic_merge::apply(res.kind, &current, &patch)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        };
        if !patched.is_object() || !patched["metadata"].is_object() {
            return Err(ApiError::BadRequest(
                "the patch produced something other than an object with metadata".into(),
            ));
        }
        let warnings = field_validation(res, params, &patched)?;
        // A patch that does not name a resourceVersion applies to the version it was built on.
        let pinned = patched["metadata"]["resourceVersion"] != current_rv;
        if patched["metadata"]["resourceVersion"].is_null() {
            patched["metadata"]["resourceVersion"] = current_rv;
        }
        match reg.update(res, ns, name, patched, status, dry_run).await {
            Err(ApiError::Conflict { .. }) if !pinned => continue,
            other => return other.map(|v| (v, warnings)),
        }
    }
    Err(registry::conflict(res, name))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    event_line_raw(kind, &serde_json::to_vec(object).unwrap_or_default())
}

fn event_line_raw(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

struct WatchParams {
    labels: LabelSelector,
    fields: FieldSelector,
    /// The revision to watch from; `None` when none (or "0") was given.
    resource_version: Option<u64>,
    send_initial: Option<bool>,
    bookmarks: bool,
    timeout: Duration,
    table: bool,
    include: String,
}

fn watch(
    reg: Arc<Registry>,
    res: &'static Resource,
    ns: Option<String>,
    p: &Params,
    table: bool,
    include: String,
) -> Result<Response> {
    let opts = list_options(p)?;
    registry::check_field_selector(res, &opts.fields)?;
    let timeout = p
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let params = WatchParams {
        labels: opts.labels,
        fields: opts.fields,
        resource_version: match p.get("resourceVersion").map(String::as_str) {
            None | Some("" | "0") => None,
            Some(rv) => Some(registry::parse_rv(rv)?),
        },
        send_initial: p.get("sendInitialEvents").map(|s| s == "true"),
        bookmarks: flag(p, "allowWatchBookmarks"),
        timeout,
        table,
        include,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        if let Err(e) = run_watch(&reg, res, ns.as_deref(), params, &tx).await {
            let _ = tx.send(event_line("ERROR", &e.status())).await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn run_watch(
    reg: &Registry,
    res: &'static Resource,
    ns: Option<&str>,
    p: WatchParams,
    tx: &mpsc::Sender<Bytes>,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + p.timeout;
    let mut first_table = true;
    let filtered = !p.labels.is_empty() || !p.fields.0.is_empty();
    // Watch lines from stored bytes; objects are parsed only to filter or print a table row.
    // A filtered watch tracks which objects the client holds (`held`, below), so an object
    // that starts matching arrives as ADDED and one that stops matching as DELETED (as
    // kube-apiserver's watch cache does).
    let line = |held: &mut std::collections::HashSet<String>,
                kind: &str,
                key: &str,
                raw: &[u8],
                rev: u64,
                first: &mut bool|
     -> Result<Option<Bytes>> {
        if !filtered && !p.table {
            return Ok(Some(event_line_raw(kind, &registry::raw_at(raw, rev)?)));
        }
        let obj = decode_at(raw, rev)?;
        let mut kind = kind;
        if filtered {
            let now = kind != "DELETED" && registry::matches(res, &obj, &p.labels, &p.fields);
            let before = held.contains(key);
            kind = match (before, now) {
                (false, false) => return Ok(None),
                (false, true) => "ADDED",
                (true, true) => kind,
                (true, false) => "DELETED",
            };
            if now {
                held.insert(key.to_owned());
            } else {
                held.remove(key);
            }
        }
        if !p.table {
            return Ok(Some(event_line(kind, &obj)));
        }
        let t = table::table(
            res,
            std::slice::from_ref(&obj),
            &rev.to_string(),
            None,
            &p.include,
            *first,
        );
        *first = false;
        Ok(Some(event_line(kind, &t)))
    };
    // "0" or nothing means "start from now, with the current state first"; sendInitialEvents
    // asks for the same with a marker bookmark at the end of the initial state.
    let initial = match (p.send_initial, p.resource_version) {
        (Some(true), _) => true,
        (Some(false), _) => false,
        (None, None) => true,
        (None, Some(_)) => false,
    };
    let head = reg.store().revision().await?;
    let mut last_rv: u64 = match p.resource_version {
        Some(rv) => rv,
        // No initial state asked for: start from now, not from the beginning of history.
        None => head,
    };
    if last_rv > head {
        return Err(ApiError::Timeout(format!(
            "Too large resource version: {last_rv}, current: {head}"
        )));
    }
    // What the client holds when the stream starts: the initial list it is sent, or, when it
    // resumes from a resourceVersion, the objects matching now (the closest we can know).
    let page = if initial || filtered {
        let opts = ListOptions {
            labels: p.labels.clone(),
            fields: p.fields.clone(),
            limit: None,
            continue_token: None,
        };
        Some(reg.list(res, ns, &opts).await?)
    } else {
        None
    };
    let mut held: std::collections::HashSet<String> = std::collections::HashSet::new();
    if filtered && let Some(page) = &page {
        for raw in &page.items {
            if let Ok(obj) = serde_json::from_slice::<Value>(raw) {
                held.insert(res.key(
                    obj["metadata"]["namespace"].as_str(),
                    obj["metadata"]["name"].as_str().unwrap_or(""),
                ));
            }
        }
    }
    if let Some(page) = page.filter(|_| initial) {
        for raw in &page.items {
            let l = if p.table {
                let obj: Value =
                    serde_json::from_slice(raw).map_err(|e| ApiError::Internal(e.to_string()))?;
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let t = table::table(
                    res,
                    std::slice::from_ref(&obj),
                    &rv,
                    None,
                    &p.include,
                    first_table,
                );
                first_table = false;
                event_line("ADDED", &t)
            } else {
                event_line_raw("ADDED", raw)
            };
            if tx.send(l).await.is_err() {
                return Ok(());
            }
        }
        last_rv = page.revision;
        if p.send_initial == Some(true) {
            let bm = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {
                "resourceVersion": last_rv.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                return Ok(());
            }
        }
    }
    let mut events = reg.store().watch(&res.prefix(ns), last_rv).await?;
    let mut bookmark = tokio::time::interval(reg.config().bookmark_interval);
    bookmark.tick().await;
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return Ok(()) };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(svcnet_store::Error::WatchLagged) => {
                        return Err(ApiError::Gone("the watch fell behind; relist and watch again".into()));
                    }
                    Err(e) => return Err(e.into()),
                };
                last_rv = ev.kv.mod_revision;
                let kind = match ev.kind {
                    EventType::Delete => "DELETED",
                    EventType::Put if ev.kv.create_revision == ev.kv.mod_revision => "ADDED",
                    EventType::Put => "MODIFIED",
                };
                let Some(l) = line(&mut held, kind, &ev.kv.key, &ev.kv.value, ev.kv.mod_revision, &mut first_table)? else { continue };
                if tx.send(l).await.is_err() {
                    return Ok(());
                }
            }
            _ = bookmark.tick(), if p.bookmarks => {
                let bm = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}});
                if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
            _ = tx.closed() => return Ok(()),
        }
    }
}
