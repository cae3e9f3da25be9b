//! svcnet's Kubernetes-compatible API server.
//!
//! [`ApiServer`] owns a [`Registry`] (object semantics over a [`svcnet_store::Store`]: keys,
//! `resourceVersion`, preconditions, validation, Service IP and NodePort allocation) and serves
//! it as an axum [`axum::Router`] speaking the Kubernetes REST subset that `kubectl` and the
//! `kube` crate use: discovery, get/list/watch/create/update/patch/delete/deletecollection for
//! Namespaces, Services, Endpoints, Pods, Nodes, Events and EndpointSlices, and `as=Table`
//! output. Background tasks run the EndpointSlice controller and finish graceful Pod deletes.

mod controller;
mod discovery;
mod error;
mod http;
mod kinds;
mod protobuf;
mod registry;
mod resources;
mod table;

use std::sync::Arc;
use std::time::Duration;

pub use controller::EndpointSliceController;
pub use discovery::KUBERNETES_VERSION;
pub use error::ApiError;
pub use registry::{Config, DeleteOptions, ListOptions, Registry};

/// The API server: build it over a store, serve [`ApiServer::router`], and run
/// [`ApiServer::spawn_background`] for the controllers.
#[derive(Clone)]
pub struct ApiServer {
    registry: Arc<Registry>,
}

impl ApiServer {
    /// Repairs allocations from the stored Services and creates the bootstrap objects.
    pub async fn new(store: Arc<dyn svcnet_store::Store>, config: Config) -> Result<Self, String> {
        Ok(Self {
            registry: Registry::new(store, config).await?,
        })
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.registry.clone())
    }

    /// Serves the API on `listener` until `shutdown` completes. Sockets get `TCP_NODELAY`:
    /// watch streams are many small writes, which Nagle's algorithm would hold back behind the
    /// client's delayed ACKs (a 40 ms tail per event).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Starts the EndpointSlice controller and the graceful-deletion reaper.
    pub fn spawn_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let controller = EndpointSliceController::new(self.registry.clone());
        let reaper = self.registry.clone();
        vec![
            tokio::spawn(controller.run()),
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if let Err(e) = reaper.reap_expired_pods().await {
                        tracing::warn!(error = %e, "pod reaper failed");
                    }
                }
            }),
        ]
    }
}
