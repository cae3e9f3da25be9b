//! The embedded default backend: redb with a group-committing writer thread.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
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
/// `revision -> kind(1) | create_revision(8) | prev_mod_revision(8) | key_len(4) | key |
/// value_len(4) | value | prev_value`. For a put, `value` is the new value and `prev_*` the
/// version it replaced (0 and empty when it created the key); for a delete, `value` is the
/// deleted version and `prev_mod_revision` its revision. The previous version lets a list be
/// read as of an earlier revision.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// `"revision"`, `"compacted"`, `"format"`
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The event encoding above. Stores written with an older one have their history dropped
/// (compacted) at open: watches from before then get 410 and relist.
const FORMAT: u64 = 2;

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
    writer: Mutex<Option<std_mpsc::Sender<WriteRequest>>>,
    writer_thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Drop for RedbStore {
    /// Closes the writer and waits for it, so the file is released when the store is dropped.
    fn drop(&mut self) {
        self.stop_writer();
    }
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

impl RedbStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path, config: RedbStoreConfig) -> Result<Self> {
        Self::with_database(Database::create(path).map_err(backend)?, config)
    }

    /// A store in memory, gone when dropped: for fuzzing and tests that need no durability.
    pub fn in_memory(config: RedbStoreConfig) -> Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(backend)?;
        Self::with_database(db, config)
    }

    fn with_database(db: Database, config: RedbStoreConfig) -> Result<Self> {
        {
            let txn = db.begin_write().map_err(backend)?;
            txn.open_table(OBJECTS).map_err(backend)?;
            {
                let mut log = txn.open_table(EVENTS).map_err(backend)?;
                let mut meta = txn.open_table(META).map_err(backend)?;
                if read_meta(&meta, "format")? != FORMAT {
                    let revision = read_meta(&meta, "revision")?;
                    if revision > 0 {
                        tracing::info!(revision, "store history from an older format dropped");
                    }
                    log.retain(|_, _| false).map_err(backend)?;
                    meta.insert("compacted", revision).map_err(backend)?;
                    meta.insert("format", FORMAT).map_err(backend)?;
                }
            }
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
            writer: Mutex::new(Some(writer)),
            writer_thread: Mutex::new(Some(writer_thread)),
        })
    }

    async fn write(&self, op: WriteOp) -> Result<Option<KeyValue>> {
        let (reply, rx) = oneshot::channel();
        {
            let writer = self.writer.lock().expect("writer lock");
            writer
                .as_ref()
                .ok_or(Error::Closed)?
                .send(WriteRequest { op, reply })
                .map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Drops the writer's channel (it finishes what it holds, then ends) and waits for it.
    fn stop_writer(&self) {
        self.writer.lock().expect("writer lock").take();
        if let Some(t) = self.writer_thread.lock().expect("writer lock").take() {
            let _ = t.join();
        }
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

/// One event as logged: the event and the version a put replaced (or a delete removed).
struct Logged<'a> {
    event: &'a Event,
    prev_mod_revision: Revision,
    prev_value: &'a [u8],
}

fn encode_event(l: &Logged) -> Vec<u8> {
    let key = l.event.kv.key.as_bytes();
    let value = &l.event.kv.value;
    let mut out = Vec::with_capacity(25 + key.len() + value.len() + l.prev_value.len());
    out.push(match l.event.kind {
        EventType::Put => 0,
        EventType::Delete => 1,
    });
    out.extend_from_slice(&l.event.kv.create_revision.to_be_bytes());
    out.extend_from_slice(&l.prev_mod_revision.to_be_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(l.prev_value);
    out
}

/// Field offsets of an encoded event.
const EV_CREATE: usize = 1;
const EV_PREV: usize = 9;
const EV_KEY_LEN: usize = 17;
const EV_KEY: usize = 21;

fn u64_at(raw: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(raw[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(raw: &[u8], at: usize) -> usize {
    u32::from_be_bytes(raw[at..at + 4].try_into().expect("4 bytes")) as usize
}

/// The key of an encoded event, without decoding the rest.
fn event_key(raw: &[u8]) -> &[u8] {
    &raw[EV_KEY..EV_KEY + u32_at(raw, EV_KEY_LEN)]
}

/// The value and the previous value of an encoded event.
fn event_values(raw: &[u8]) -> (&[u8], &[u8]) {
    let value_at = EV_KEY + u32_at(raw, EV_KEY_LEN);
    let value_len = u32_at(raw, value_at);
    let value = &raw[value_at + 4..value_at + 4 + value_len];
    (value, &raw[value_at + 4 + value_len..])
}

fn decode_event(revision: Revision, raw: &[u8]) -> Event {
    let kind = if raw[0] == 0 {
        EventType::Put
    } else {
        EventType::Delete
    };
    let key = String::from_utf8_lossy(event_key(raw)).into_owned();
    Event {
        kind,
        kv: KeyValue {
            key,
            value: Bytes::copy_from_slice(event_values(raw).0),
            create_revision: u64_at(raw, EV_CREATE),
            mod_revision: revision,
        },
    }
}

/// What key `raw`'s event says about the key's state just before it: `None` if the key did
/// not exist, else the version it had.
fn before_event(raw: &[u8]) -> Option<KeyValue> {
    let create = u64_at(raw, EV_CREATE);
    let prev = u64_at(raw, EV_PREV);
    let (value, prev_value) = event_values(raw);
    let key = String::from_utf8_lossy(event_key(raw)).into_owned();
    match raw[0] {
        // A put that created the key.
        0 if prev == 0 => None,
        0 => Some(KeyValue {
            key,
            value: Bytes::copy_from_slice(prev_value),
            create_revision: create,
            mod_revision: prev,
        }),
        _ => Some(KeyValue {
            key,
            value: Bytes::copy_from_slice(value),
            create_revision: create,
            mod_revision: prev,
        }),
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
            let (event, prev_mod_revision, prev_value) = match &req.op {
                WriteOp::Put { value, .. } => {
                    revision += 1;
                    let create = existing.as_ref().map_or(revision, |kv| kv.create_revision);
                    objects
                        .insert(
                            key.as_str(),
                            encode_object(create, revision, value).as_slice(),
                        )
                        .map_err(backend)?;
                    let event = Event {
                        kind: EventType::Put,
                        kv: KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: create,
                            mod_revision: revision,
                        },
                    };
                    match existing {
                        Some(prev) => (event, prev.mod_revision, prev.value),
                        None => (event, 0, Bytes::new()),
                    }
                }
                WriteOp::Delete { .. } => {
                    let Some(prev) = existing else {
                        results.push(Err(Error::NotFound));
                        continue;
                    };
                    revision += 1;
                    objects.remove(key.as_str()).map_err(backend)?;
                    let prev_mod = prev.mod_revision;
                    let event = Event {
                        kind: EventType::Delete,
                        kv: KeyValue {
                            mod_revision: revision,
                            ..prev
                        },
                    };
                    (event, prev_mod, Bytes::new())
                }
                WriteOp::Compact(_) => unreachable!("handled above"),
            };
            let logged = Logged {
                event: &event,
                prev_mod_revision,
                prev_value: &prev_value,
            };
            log.insert(revision, encode_event(&logged).as_slice())
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
        at: Option<Revision>,
    ) -> BoxFuture<'a, Result<ListResult>> {
        Box::pin(async move {
            let txn = self.shared.db.begin_read().map_err(backend)?;
            let objects = txn.open_table(OBJECTS).map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            let head = read_meta(&meta, "revision")?;
            let revision = at.unwrap_or(head);
            if revision > head {
                return Err(Error::FutureRevision {
                    requested: revision,
                    current: head,
                });
            }
            let start = match start_after {
                Some(after) if after >= prefix => after,
                _ => prefix,
            };
            let in_range = |key: &str| key.starts_with(prefix) && Some(key) != start_after;
            // Keys changed after `revision`, with the version they had then (`None`: absent).
            let mut past: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
            if revision < head {
                let compacted = read_meta(&meta, "compacted")?;
                if revision < compacted {
                    return Err(Error::Compacted {
                        requested: revision,
                        compacted,
                    });
                }
                let log = txn.open_table(EVENTS).map_err(backend)?;
                for entry in log.range(revision + 1..).map_err(backend)? {
                    let (_, raw) = entry.map_err(backend)?;
                    let raw = raw.value();
                    let Ok(key) = std::str::from_utf8(event_key(raw)) else {
                        continue;
                    };
                    if key >= start && in_range(key) && !past.contains_key(key) {
                        past.insert(key.to_owned(), before_event(raw));
                    }
                }
            }
            let mut out = ListResult {
                revision,
                ..Default::default()
            };
            let limit = limit.unwrap_or(usize::MAX);
            let mut emit = |kv: &dyn Fn() -> KeyValue| {
                if out.items.len() == limit {
                    out.more = true;
                    false
                } else {
                    out.items.push(kv());
                    true
                }
            };
            let mut past_iter = past.into_iter().peekable();
            for entry in objects.range(start..).map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                if !in_range(key) {
                    continue;
                }
                // Versions of keys before this one that exist no more (deleted since).
                while let Some((pk, _)) = past_iter.peek() {
                    if pk.as_str() >= key {
                        break;
                    }
                    let (_, then) = past_iter.next().expect("peeked");
                    if let Some(kv) = then
                        && !emit(&|| kv.clone())
                    {
                        return Ok(out);
                    }
                }
                let more = match past_iter.peek() {
                    Some((pk, _)) if pk == key => {
                        let (_, then) = past_iter.next().expect("peeked");
                        match then {
                            Some(kv) => emit(&|| kv.clone()),
                            None => true,
                        }
                    }
                    _ => emit(&|| decode_object(key, v.value())),
                };
                if !more {
                    return Ok(out);
                }
            }
            for (_, then) in past_iter {
                if let Some(kv) = then
                    && !emit(&|| kv.clone())
                {
                    break;
                }
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

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.writer.lock().expect("writer lock").take();
            let thread = self.writer_thread.lock().expect("writer lock").take();
            if let Some(t) = thread {
                // The writer commits what it holds, then ends.
                tokio::task::spawn_blocking(move || t.join())
                    .await
                    .map_err(backend)?
                    .map_err(|_| Error::Backend("the store writer panicked".into()))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
