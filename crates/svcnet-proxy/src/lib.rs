//! svcnet's service proxy: one per node, it watches Services and EndpointSlices and makes every
//! `clusterIP:port` reach a ready backend.
//!
//! [`model::desired_state`] turns the watched objects into a [`model::ProxyState`]; a
//! [`Dataplane`] programs it. [`userspace::Userspace`] is the first dataplane. [`run`] is the
//! control loop: watches through the `kube` crate (so it works against any kube-apiserver),
//! rate-limited syncs (`min_sync_period`, periodic `sync_period`), `/healthz` and Prometheus
//! `/metrics` with kube-proxy's metric names.

pub mod balancer;
pub mod metrics;
pub mod model;
pub mod nft;
pub mod scheduler;
pub mod splice;
pub mod userspace;

mod control;

use std::future::Future;
use std::pin::Pin;

pub use control::{ProxyConfig, run};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    #[error("{0}")]
    Unsupported(String),
    #[error("API server: {0}")]
    Api(String),
}

/// A way of programming the node. Adding kernel modes means adding implementations; the
/// control loop does not change.
pub trait Dataplane: Send {
    fn name(&self) -> &'static str;
    /// Makes the node match `state` (the whole desired state, every time).
    fn sync<'a>(&'a mut self, state: &'a model::ProxyState) -> BoxFuture<'a, Result<(), Error>>;
    /// Removes everything this dataplane ever installed.
    fn cleanup(&mut self) -> BoxFuture<'_, Result<(), Error>>;
}
