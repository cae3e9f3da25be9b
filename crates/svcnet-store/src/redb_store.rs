//! The embedded default backend: redb with a group-committing writer thread.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread;

use bytes::Bytes;
use futures::StreamExt;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use crate::{
    BoxFuture, Error, Event, EventType, KeyValue, ListResult, Precondition, Result, Revision,
    Store, WatchStream,
};

/// `key -> create_revision(8) | mod_revision(8) | value`
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// `revision -> kind(1) | create_revision(8) | key_len(4) | key | value`
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// `"revision"`, `"compacted"`
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Most writes gathered into one transaction.
const MAX_BATCH: usize = 512;

#[derive(Clone, Debug)]
pub struct RedbStoreConfig {
    /// Events kept for watch replay; older ones are compacted away automatically.
    pub history: u64,
    /// Capacity of the live event fan-out; a watcher further behind than this is closed.
    pub fanout_capacity: usize,
}

impl Default for RedbStoreConfig {
    fn default() -> Self {
        Self {
            history: 100_000,
            fanout_capacity: 65_536,
        }
    }
}

enum WriteOp {
    Put {
        key: String,
        value: Bytes,
        pre: Precondition,
    },
    Delete {
        key: String,
        pre: Precondition,
    },
    Compact(Revision),
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<Option<KeyValue>>>,
}

struct Shared {
    db: Database,
    events: broadcast::Sender<Arc<Event>>,
}

/// The redb-backed [`Store`].
pub struct RedbStore {
    shared: Arc<Shared>,
    writer: Option<std_mpsc::Sender<WriteRequest>>,
    writer_thread: Option<thread::JoinHandle<()>>,
}

impl Drop for RedbStore {
    /// Closes the writer and waits for it, so the file is released when the store is dropped.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

impl RedbStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path, config: RedbStoreConfig) -> Result<Self> {
        let db = Database::create(path).map_err(backend)?;
        {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(OBJECTS).map_err(backend)?;
            txn.open_table(EVENTS).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
            txn.commit().map_err(backend)?;
        }
        let (events, _) = broadcast::channel(config.fanout_capacity);
        let shared = Arc::new(Shared { db, events });
        let (writer, rx) = std_mpsc::channel();
        let writer_shared = shared.clone();
        let writer_thread = thread::Builder::new()
            .name("svcnet-store-writer".into())
            .spawn(move || writer_loop(writer_shared, rx, config.history))
            .map_err(backend)?;
        Ok(Self {
            shared,
            writer: Some(writer),
            writer_thread: Some(writer_thread),
        })
    }

    async fn write(&self, op: WriteOp) -> Result<Option<KeyValue>> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .as_ref()
            .ok_or(Error::Closed)?
            .send(WriteRequest { op, reply })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    fn meta(&self, name: &str) -> Result<Revision> {
        let txn = self.shared.db.begin_read().map_err(backend)?;
        read_meta(&txn.open_table(META).map_err(backend)?, name)
    }
}

/// A counter in the meta table (`revision`, `compacted`); 0 before the first write.
fn read_meta(meta: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<Revision> {
    Ok(meta.get(name).map_err(backend)?.map_or(0, |v| v.value()))
}

// === encoding ===

fn encode_object(create: Revision, modified: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create.to_be_bytes());
    out.extend_from_slice(&modified.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode_object(key: &str, raw: &[u8]) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        create_revision: u64::from_be_bytes(raw[0..8].try_into().expect("8 bytes")),
        mod_revision: u64::from_be_bytes(raw[8..16].try_into().expect("8 bytes")),
        value: Bytes::copy_from_slice(&raw[16..]),
    }
}

fn encode_event(event: &Event) -> Vec<u8> {
    let key = event.kv.key.as_bytes();
    let mut out = Vec::with_capacity(13 + key.len() + event.kv.value.len());
    out.push(match event.kind {
        EventType::Put => 0,
        EventType::Delete => 1,
    });
    out.extend_from_slice(&event.kv.create_revision.to_be_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&event.kv.value);
    out
}

/// The key of an encoded event, without decoding the rest.
fn event_key(raw: &[u8]) -> &[u8] {
    let key_len = u32::from_be_bytes(raw[9..13].try_into().expect("4 bytes")) as usize;
    &raw[13..13 + key_len]
}

fn decode_event(revision: Revision, raw: &[u8]) -> Event {
    let kind = if raw[0] == 0 {
        EventType::Put
    } else {
        EventType::Delete
    };
    let create_revision = u64::from_be_bytes(raw[1..9].try_into().expect("8 bytes"));
    let key_bytes = event_key(raw);
    let key_len = key_bytes.len();
    let key = String::from_utf8_lossy(key_bytes).into_owned();
    Event {
        kind,
        kv: KeyValue {
            key,
            value: Bytes::copy_from_slice(&raw[13 + key_len..]),
            create_revision,
            mod_revision: revision,
        },
    }
}

// === writer ===

fn writer_loop(shared: Arc<Shared>, rx: std_mpsc::Receiver<WriteRequest>, history: u64) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        match apply_batch(&shared.db, &batch, history) {
            Ok((results, events)) => {
                for event in events {
                    // No receivers is fine: nobody is watching.
                    let _ = shared.events.send(Arc::new(event));
                }
                for (req, result) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                for req in batch {
                    let _ = req.reply.send(Err(Error::Backend(e.to_string())));
                }
            }
        }
    }
}

type BatchOutcome = (Vec<Result<Option<KeyValue>>>, Vec<Event>);

fn apply_batch(db: &Database, batch: &[WriteRequest], history: u64) -> Result<BatchOutcome> {
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_durability(Durability::Immediate).map_err(backend)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    {
        let mut objects = txn.open_table(OBJECTS).map_err(backend)?;
        let mut log = txn.open_table(EVENTS).map_err(backend)?;
        let mut meta = txn.open_table(META).map_err(backend)?;
        let mut revision = read_meta(&meta, "revision")?;
        let mut compacted = read_meta(&meta, "compacted")?;

        for req in batch {
            let (key, pre) = match &req.op {
                WriteOp::Put { key, pre, .. } | WriteOp::Delete { key, pre } => (key, *pre),
                WriteOp::Compact(up_to) => {
                    let up_to = (*up_to).min(revision);
                    if up_to > compacted {
                        log.retain_in(compacted..=up_to, |_, _| false)
                            .map_err(backend)?;
                        compacted = up_to;
                    }
                    results.push(Ok(None));
                    continue;
                }
            };
            let existing = objects
                .get(key.as_str())
                .map_err(backend)?
                .map(|raw| decode_object(key, raw.value()));
            let check = match (pre, &existing) {
                (Precondition::MustNotExist, Some(_)) => Err(Error::AlreadyExists),
                (Precondition::MustExist | Precondition::ModRevision(_), None) => {
                    Err(Error::NotFound)
                }
                (Precondition::ModRevision(want), Some(kv)) if kv.mod_revision != want => {
                    Err(Error::Conflict {
                        current: kv.mod_revision,
                    })
                }
                _ => Ok(()),
            };
            if let Err(e) = check {
                results.push(Err(e));
                continue;
            }
            let event = match &req.op {
                WriteOp::Put { value, .. } => {
                    revision += 1;
                    let create = existing.as_ref().map_or(revision, |kv| kv.create_revision);
                    objects
                        .insert(
                            key.as_str(),
                            encode_object(create, revision, value).as_slice(),
                        )
                        .map_err(backend)?;
                    Event {
                        kind: EventType::Put,
                        kv: KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: create,
                            mod_revision: revision,
                        },
                    }
                }
                WriteOp::Delete { .. } => {
                    let Some(prev) = existing else {
                        results.push(Err(Error::NotFound));
                        continue;
                    };
                    revision += 1;
                    objects.remove(key.as_str()).map_err(backend)?;
                    Event {
                        kind: EventType::Delete,
                        kv: KeyValue {
                            mod_revision: revision,
                            ..prev
                        },
                    }
                }
                WriteOp::Compact(_) => unreachable!("handled above"),
            };
            log.insert(revision, encode_event(&event).as_slice())
                .map_err(backend)?;
            results.push(Ok(Some(event.kv.clone())));
            events.push(event);
        }

        // Keep a bounded history; compact in chunks so the cost is amortised.
        if revision > compacted + history + history / 10 + 1 {
            let up_to = revision - history;
            log.retain_in(compacted..=up_to, |_, _| false)
                .map_err(backend)?;
            compacted = up_to;
        }
        meta.insert("revision", revision).map_err(backend)?;
        meta.insert("compacted", compacted).map_err(backend)?;
    }
    txn.commit().map_err(backend)?;
    Ok((results, events))
}

// === impl Store ===

impl Store for RedbStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        Box::pin(async move {
            let txn = self.shared.db.begin_read().map_err(backend)?;
            let objects = txn.open_table(OBJECTS).map_err(backend)?;
            Ok(objects
                .get(key)
                .map_err(backend)?
                .map(|raw| decode_object(key, raw.value())))
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<ListResult>> {
        Box::pin(async move {
            let txn = self.shared.db.begin_read().map_err(backend)?;
            let objects = txn.open_table(OBJECTS).map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            let revision = read_meta(&meta, "revision")?;
            let start = match start_after {
                Some(after) if after >= prefix => after,
                _ => prefix,
            };
            let mut out = ListResult {
                revision,
                ..Default::default()
            };
            let limit = limit.unwrap_or(usize::MAX);
            for entry in objects.range(start..).map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                if Some(key) == start_after {
                    continue;
                }
                if out.items.len() == limit {
                    out.more = true;
                    break;
                }
                out.items.push(decode_object(key, v.value()));
            }
            Ok(out)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        pre: Precondition,
    ) -> BoxFuture<'a, Result<KeyValue>> {
        Box::pin(async move {
            let op = WriteOp::Put {
                key: key.to_owned(),
                value,
                pre,
            };
            self.write(op)
                .await?
                .ok_or_else(|| Error::Backend("put returned nothing".into()))
        })
    }

    fn delete<'a>(&'a self, key: &'a str, pre: Precondition) -> BoxFuture<'a, Result<KeyValue>> {
        Box::pin(async move {
            let op = WriteOp::Delete {
                key: key.to_owned(),
                pre,
            };
            self.write(op)
                .await?
                .ok_or_else(|| Error::Backend("delete returned nothing".into()))
        })
    }

    fn watch<'a>(&'a self, prefix: &'a str, after: Revision) -> BoxFuture<'a, Result<WatchStream>> {
        Box::pin(async move {
            // Subscribe before reading history so nothing falls between the two.
            let live = self.shared.events.subscribe();
            let txn = self.shared.db.begin_read().map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            let compacted = read_meta(&meta, "compacted")?;
            if after < compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted,
                });
            }
            let log = txn.open_table(EVENTS).map_err(backend)?;
            let mut replay = Vec::new();
            let Some(first) = after.checked_add(1) else {
                return Err(Error::Backend(format!("revision {after} is out of range")));
            };
            for entry in log.range(first..).map_err(backend)? {
                let (rev, raw) = entry.map_err(backend)?;
                // Only the events under the prefix are decoded (copied out).
                if event_key(raw.value()).starts_with(prefix.as_bytes()) {
                    replay.push(Ok(decode_event(rev.value(), raw.value())));
                }
            }
            let head = read_meta(&meta, "revision")?;
            drop(txn);
            let prefix: Arc<str> = prefix.into();
            let live = futures::stream::unfold(Some(live), move |state| {
                let prefix = prefix.clone();
                async move {
                    let mut rx = state?;
                    loop {
                        match rx.recv().await {
                            Ok(event) => {
                                if event.kv.mod_revision > head
                                    && event.kv.key.starts_with(&*prefix)
                                {
                                    return Some((Ok(Event::clone(&event)), Some(rx)));
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                return Some((Err(Error::WatchLagged), None));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
            let stream = futures::stream::iter(replay).chain(live);
            Ok(Box::pin(stream) as WatchStream)
        })
    }

    fn revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(async move { self.meta("revision") })
    }

    fn compacted_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(async move { self.meta("compacted") })
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.write(WriteOp::Compact(revision)).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
