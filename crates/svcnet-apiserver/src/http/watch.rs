//! Watch streams: the initial state when asked for, then the store's events from a revision,
//! bookmarks, `as=Table` rows, filtered watches that see objects enter and leave the
//! selection, and an end when the server stops.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use svcnet_store::EventType;
use tokio::sync::mpsc;

use super::options::WatchOptions;
use crate::error::{ApiError, Result};
use crate::registry::{self, ListAt, ListOptions, Registry, decode_at};
use crate::resources::Resource;
use crate::table;

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

struct Stream {
    opts: WatchOptions,
    table: bool,
    include: String,
}

pub fn watch(
    reg: Arc<Registry>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    res: &'static Resource,
    ns: Option<String>,
    opts: WatchOptions,
    table: bool,
    include: String,
) -> Result<Response> {
    registry::check_field_selector(res, &opts.list.fields)?;
    let params = Stream {
        opts,
        table,
        include,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        tokio::select! {
            r = run_watch(&reg, res, ns.as_deref(), params, &tx) => {
                if let Err(e) = r {
                    let _ = tx.send(event_line("ERROR", &e.status())).await;
                }
            }
            // The server is stopping: end the stream so the connection can close.
            _ = async { let _ = stopping.wait_for(|s| *s).await; } => {}
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
    p: Stream,
    tx: &mpsc::Sender<Bytes>,
) -> Result<()> {
    let strategy = reg.strategy(res);
    let o = &p.opts;
    let deadline = tokio::time::Instant::now() + o.timeout;
    let mut first_table = true;
    let filtered = !o.list.labels.is_empty() || !o.list.fields.0.is_empty();
    // Watch lines from stored bytes; objects are parsed only to filter or print a table row.
    // A filtered watch tracks which objects the client holds (`held`, below), so an object
    // that starts matching arrives as ADDED and one that stops matching as DELETED (as
    // kube-apiserver's watch cache does).
    let line = |held: &mut HashSet<String>,
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
            let now =
                kind != "DELETED" && registry::matches(res, &obj, &o.list.labels, &o.list.fields);
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
            strategy,
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
    let initial = match (o.send_initial, o.resource_version) {
        (Some(s), _) => s,
        (None, None) => true,
        (None, Some(_)) => false,
    };
    let head = reg.store().revision().await?;
    // A resourceVersion the store has not reached yet: wait for it, as kube-apiserver's watch
    // cache does, and send only what comes after it.
    let mut last_rv: u64 = o.resource_version.unwrap_or(head);
    let from = last_rv.min(head);
    // What the client holds when the stream starts: the initial list it is sent, or, when it
    // resumes from a resourceVersion, what matched at that revision (410 once compacted), so
    // an object deleted or relabelled out since then still reaches it as DELETED.
    let page = if initial || filtered {
        let opts = ListOptions {
            labels: o.list.labels.clone(),
            fields: o.list.fields.clone(),
            at: if initial {
                ListAt::Latest
            } else {
                ListAt::Exact(from)
            },
            ..Default::default()
        };
        Some(reg.list(res, ns, &opts).await?)
    } else {
        None
    };
    let mut held: HashSet<String> = HashSet::new();
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
    let mut from = from;
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
                    strategy,
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
        from = page.revision;
        if o.send_initial == Some(true) {
            let bm = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {
                "resourceVersion": last_rv.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                return Ok(());
            }
        }
    }
    let skip_through = last_rv;
    let mut events = reg.store().watch(&res.prefix(ns), from).await?;
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
                if ev.kv.mod_revision <= skip_through {
                    continue;
                }
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
            _ = bookmark.tick(), if o.bookmarks => {
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
