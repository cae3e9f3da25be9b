//! The REST surface: path routing, request options ([`options`]), content negotiation, patch
//! types, watch streams ([`watch`]), health endpoints. Handlers are thin; object semantics
//! live in the [`Registry`].

mod options;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};

use crate::discovery;
use crate::error::{ApiError, Result};
use crate::health::{self, Health};
use crate::registry::{self, Patch, Registry, Written};
use crate::resources::{Resource, Subresource};
use crate::table;
use options::{Query, Verb};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub reg: Arc<Registry>,
    pub health: Arc<Health>,
    /// Turns true when the server stops: open watches end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { axum::Json(discovery::version()) }),
        )
        .route("/healthz", any(health_root))
        .route("/livez", any(health_root))
        .route("/readyz", any(health_root))
        .route("/healthz/{*check}", any(health_check))
        .route("/livez/{*check}", any(health_check))
        .route("/readyz/{*check}", any(health_check))
        .route(
            "/api",
            get(|State(s): State<AppState>| async move {
                axum::Json(discovery::api_versions(
                    &s.reg.config().advertise.to_string(),
                ))
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
        .with_state(state)
}

fn health_endpoint(path: &str) -> health::Endpoint {
    match path.trim_start_matches('/').split('/').next() {
        Some("livez") => health::Endpoint::Livez,
        Some("readyz") => health::Endpoint::Readyz,
        _ => health::Endpoint::Healthz,
    }
}

async fn health_root(State(s): State<AppState>, uri: axum::http::Uri) -> Response {
    health_response(&s, &uri, None).await
}

async fn health_check(State(s): State<AppState>, uri: axum::http::Uri) -> Response {
    let check = uri
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .map(|(_, c)| c.to_owned());
    health_response(&s, &uri, check.as_deref()).await
}

async fn health_response(s: &AppState, uri: &axum::http::Uri, check: Option<&str>) -> Response {
    let q = Query::parse(uri.query()).unwrap_or_else(|_| Query::parse(None).expect("empty"));
    let exclude = q.all("exclude");
    let (code, body) = health::answer(
        &s.reg,
        &s.health,
        health_endpoint(uri.path()),
        check,
        q.has("verbose"),
        &exclude,
    )
    .await;
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// JSON, indented when the request asked for `pretty`.
fn json_response(code: StatusCode, v: &Value, pretty: bool) -> Response {
    let body = if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    }
    .unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn raw_response(code: StatusCode, body: Vec<u8>, pretty: bool) -> Response {
    if pretty && let Ok(v) = serde_json::from_slice::<Value>(&body) {
        return json_response(code, &v, true);
    }
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Where a request points.
struct Target {
    res: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Subresource,
}

enum Route {
    Resource(Target),
    Document(Value),
}

fn route(reg: &Registry, path: &str) -> Result<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if let ["openapi", "v3", rest @ ..] = segs.as_slice() {
        return discovery::openapi_v3_group(&rest.join("/"))
            .map(Route::Document)
            .ok_or(ApiError::NoRoute);
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group] => {
            return discovery::api_group(group)
                .map(Route::Document)
                .ok_or(ApiError::NoRoute);
        }
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::NoRoute),
    };
    if rest.is_empty() {
        return discovery::resource_list(group, version)
            .map(Route::Document)
            .ok_or(ApiError::NoRoute);
    }
    let find = |plural: &str| reg.find(group, version, plural).ok_or(ApiError::NoRoute);
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
    let subresource = match sub {
        None => Subresource::Main,
        Some(s) => res.subresource(s).ok_or(ApiError::NoRoute)?,
    };
    Ok(Route::Resource(Target {
        res,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource,
    }))
}

async fn dispatch(State(s): State<AppState>, req: Request) -> Response {
    let pretty = Query::parse(req.uri().query()).is_ok_and(|q| q.flag("pretty"));
    // A write runs to its end on its own task even when the client goes away mid-request (as
    // kube-apiserver's finishRequest does): dropped half-way, it could commit in the store
    // after its ClusterIPs and NodePorts were rolled back, or never release the old ones.
    let result = if matches!(*req.method(), Method::GET | Method::HEAD) {
        handle(s, req).await
    } else {
        // A panic stays a panic (as on the read path), so the fuzz target still sees it.
        tokio::spawn(handle(s, req))
            .await
            .unwrap_or_else(|e| match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => Err(ApiError::Internal(format!(
                    "the request was cancelled: {e}"
                ))),
            })
    };
    match result {
        Ok(r) => r,
        Err(e) if pretty => json_response(e.code(), &e.status(), true),
        Err(e) => e.into_response(),
    }
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

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

fn yaml_to_json(body: &[u8]) -> Result<Value> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the request body is not UTF-8".into()))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")))
}

/// Decodes a JSON, YAML or protobuf request body into a JSON value.
fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    if is_blank(body) {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    let ct = content_type(headers);
    if ct == crate::protobuf::CONTENT_TYPE {
        return crate::protobuf::decode(body);
    }
    if ct.contains("yaml") {
        yaml_to_json(body)
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

fn decode_patch(ct: &str, body: &[u8], force: bool) -> Result<Patch> {
    let json = || -> Result<Value> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))
    };
    match ct {
        "application/json-patch+json" => Ok(Patch::Json(
            serde_json::from_value(json()?)
                .map_err(|e| ApiError::BadRequest(format!("error decoding JSON patch: {e}")))?,
        )),
        "application/merge-patch+json" => Ok(Patch::Merge(json()?)),
        "application/strategic-merge-patch+json" => Ok(Patch::Strategic(json()?)),
        "application/apply-patch+yaml" => {
            let config = yaml_to_json(body).map_err(|e| match e {
                ApiError::BadRequest(m) => {
                    ApiError::BadRequest(format!("error encoding patch: {m}"))
                }
                other => other,
            })?;
            Ok(Patch::Apply { config, force })
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
        ))),
    }
}

/// `Warning: 299 - "…"` headers, quoted as Go quotes them (only `"` and `\` escaped).
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let quoted = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = header::HeaderValue::from_str(&format!("299 - \"{quoted}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn written(w: Written, pretty: bool) -> Response {
    let code = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    with_warnings(json_response(code, &w.object, pretty), &w.warnings)
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

fn parse_items(page: &registry::ListPage) -> Result<Vec<Value>> {
    page.items
        .iter()
        .map(|b| serde_json::from_slice(b).map_err(|e| ApiError::Internal(e.to_string())))
        .collect()
}

/// The body of a DELETE: the object for kinds that return it, else a success `Status`.
fn deleted_body(res: &Resource, returns_object: bool, obj: &Value) -> Value {
    if returns_object {
        return obj.clone();
    }
    let mut details = json!({
        "name": obj["metadata"]["name"],
        "kind": res.plural,
        "uid": obj["metadata"]["uid"],
    });
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

async fn handle(s: AppState, req: Request) -> Result<Response> {
    let (parts, body) = req.into_parts();
    let q = Query::parse(parts.uri.query())?;
    let reg = s.reg.clone();
    let pretty = q.flag("pretty");
    let target = match route(&reg, parts.uri.path())? {
        Route::Resource(t) => t,
        Route::Document(v) => {
            if parts.method != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            return Ok(json_response(StatusCode::OK, &v, pretty));
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
    let include = q.get("includeObject").unwrap_or("").to_owned();
    let headers = parts.headers;
    let strategy = reg.strategy(res);

    match (parts.method, name) {
        (Method::GET, None) if subresource == Subresource::Main && q.flag("watch") => {
            let opts = options::watch_options(&q)?;
            Ok(watch::watch(
                reg,
                s.stopping.clone(),
                res,
                namespace,
                opts,
                table,
                include,
            )?)
        }
        (Method::GET, None) => {
            let opts = options::list_options(&q)?;
            let page = reg.list(res, ns, &opts).await?;
            if table {
                let items = parse_items(&page)?;
                let t = table::table(
                    strategy,
                    &items,
                    &page.revision.to_string(),
                    page.continue_token.as_deref(),
                    &include,
                    true,
                );
                return Ok(json_response(StatusCode::OK, &t, pretty));
            }
            Ok(raw_response(StatusCode::OK, list_body(res, &page), pretty))
        }
        (Method::GET, Some(name)) => {
            let obj = match q.get("resourceVersion").unwrap_or("") {
                "" | "0" => reg.get(res, ns, &name).await?,
                rv => {
                    reg.get_not_older_than(res, ns, &name, registry::parse_rv(rv)?)
                        .await?
                }
            };
            if table {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(strategy, &[obj], &rv, None, &include, true),
                    pretty,
                ));
            }
            Ok(json_response(StatusCode::OK, &obj, pretty))
        }
        (Method::POST, None) if subresource == Subresource::Main => {
            let (opts, _) = options::write_options(&q, &headers, Verb::Create, subresource)?;
            let body = read_body(&reg, body).await?;
            let obj = decode_body(&headers, &body)?;
            let mut w = reg.create(res, ns, obj, &opts).await?;
            w.created = true;
            Ok(written(w, pretty))
        }
        (Method::PUT, Some(name)) => {
            let (opts, _) = options::write_options(&q, &headers, Verb::Update, subresource)?;
            let body = read_body(&reg, body).await?;
            let obj = decode_body(&headers, &body)?;
            Ok(written(
                reg.update(res, ns, &name, obj, &opts).await?,
                pretty,
            ))
        }
        (Method::PATCH, Some(name)) => {
            let ct = content_type(&headers);
            let apply = ct == "application/apply-patch+yaml";
            let (opts, force) =
                options::write_options(&q, &headers, Verb::Patch { apply }, subresource)?;
            let body = read_body(&reg, body).await?;
            let patch = decode_patch(&ct, &body, force)?;
            Ok(written(
                reg.patch(res, ns, &name, &patch, &opts).await?,
                pretty,
            ))
        }
        (Method::DELETE, Some(name)) if subresource == Subresource::Main => {
            let body = read_body(&reg, body).await?;
            let given = (!is_blank(&body))
                .then(|| decode_body(&headers, &body))
                .transpose()?;
            let orphan_false = given.as_ref().map_or(
                q.has("orphanDependents") && !q.flag("orphanDependents"),
                |b| b["orphanDependents"] == false,
            );
            let opts = options::delete_options(&q, given)?;
            let d = reg.delete(res, ns, &name, &opts).await?;
            // 202 when the object stays for now and dependents were not to be orphaned.
            let code = if !d.removed && orphan_false {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok(json_response(
                code,
                &deleted_body(res, strategy.returns_deleted_object(), &d.object),
                pretty,
            ))
        }
        (Method::DELETE, None) if subresource == Subresource::Main => {
            let body = read_body(&reg, body).await?;
            let given = (!is_blank(&body))
                .then(|| decode_body(&headers, &body))
                .transpose()?;
            let opts = options::delete_options(&q, given)?;
            let list = options::list_options(&q)?;
            let items = reg.delete_collection(res, ns, &list, &opts).await?;
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
            Ok(raw_response(StatusCode::OK, list_body(res, &page), pretty))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}
