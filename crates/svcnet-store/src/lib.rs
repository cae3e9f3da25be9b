//! Revisioned key-value storage for svcnet's API server.
//!
//! [`Store`] is the small contract the API server needs from a backend: ordered keys, a single
//! global revision counter bumped by every write (it becomes `resourceVersion`), conditional
//! writes (create-only, compare-and-swap on the mod revision) and a watch that replays history
//! from a revision and then follows new writes. It deliberately mirrors etcd's v3 model so an
//! etcd backend can implement it; nothing in it names redb.
//!
//! [`RedbStore`] is the embedded default: one file, ACID, a write is acknowledged only after its
//! transaction is durable. Concurrent writes are grouped into one transaction (group commit) so
//! many clients share one fsync.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

mod redb_store;

pub use redb_store::{RedbStore, RedbStoreConfig};

/// A store revision; every successful write takes the next one.
pub type Revision = u64;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One stored key with the revisions that created and last modified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The key was created (`create_revision == mod_revision`) or modified.
    Put,
    /// The key was deleted; the event carries its last value and the delete revision.
    Delete,
}

/// A change to one key. For [`EventType::Delete`] `kv.value` is the value before deletion and
/// `kv.mod_revision` the revision of the delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
}

/// The result of a range read, taken from one consistent snapshot.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the range was read at.
    pub revision: Revision,
    /// More keys follow the last returned one.
    pub more: bool,
}

/// A condition checked atomically with a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Create: fails with [`Error::AlreadyExists`] if the key exists.
    MustNotExist,
    /// Update or delete: the key must exist (else [`Error::NotFound`]).
    MustExist,
    /// Compare-and-swap: the key must exist with this mod revision (else [`Error::Conflict`]).
    ModRevision(Revision),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key already exists")]
    AlreadyExists,
    #[error("key not found")]
    NotFound,
    #[error("revision conflict: the key is at revision {current}")]
    Conflict { current: Revision },
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is newer than the store's {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("watch fell too far behind the writer and was closed")]
    WatchLagged,
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("store is closed")]
    Closed,
}

/// The storage contract of the API server. Implementations must be cheap to share (`Arc`).
pub trait Store: Send + Sync + 'static {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>>;

    /// Keys starting with `prefix`, in key order, strictly after `start_after` when given,
    /// at most `limit` of them when given, as they were at `revision` (the current revision
    /// when `None`). [`Error::Compacted`] if `revision` is older than the history kept,
    /// [`Error::FutureRevision`] if it is newer than the store.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
        limit: Option<usize>,
        revision: Option<Revision>,
    ) -> BoxFuture<'a, Result<ListResult>>;

    /// Writes `value` under `key` if `pre` holds; returns the stored key-value.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        pre: Precondition,
    ) -> BoxFuture<'a, Result<KeyValue>>;

    /// Deletes `key` if `pre` holds; returns the deleted value with the delete revision.
    fn delete<'a>(&'a self, key: &'a str, pre: Precondition) -> BoxFuture<'a, Result<KeyValue>>;

    /// Events for keys under `prefix` with revision greater than `after`, first the stored
    /// history, then live ones. [`Error::Compacted`] if `after` is older than the history kept.
    fn watch<'a>(&'a self, prefix: &'a str, after: Revision) -> BoxFuture<'a, Result<WatchStream>>;

    /// The current store revision.
    fn revision(&self) -> BoxFuture<'_, Result<Revision>>;

    /// The oldest revision a watch may start after.
    fn compacted_revision(&self) -> BoxFuture<'_, Result<Revision>>;

    /// Forgets history up to and including `revision`.
    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>>;

    /// Finishes the writes already accepted and stops taking new ones ([`Error::Closed`]);
    /// reads keep working. Idempotent.
    fn close(&self) -> BoxFuture<'_, Result<()>>;
}
