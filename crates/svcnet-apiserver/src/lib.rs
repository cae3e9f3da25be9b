//! svcnet's Kubernetes-compatible API server.
//!
//! The layers import one way: `http` (routing, options, watch, health) → `Registry` (the
//! generic store over a [`svcnet_store::Store`]: keys, `resourceVersion`, preconditions, dry
//! run, `managedFields` and server-side apply, graceful deletion, paged lists at one revision)
//! → one `Strategy` per kind in `kinds` (defaults, validation, Service IP and NodePort
//! allocation, graceful deletion, table columns) → `svcnet-core`. The controllers
//! (EndpointSlice, namespace, Pod GC) are the registry's clients.
//!
//! [`ApiServer`] serves it as the Kubernetes REST subset `kubectl` and the `kube` crate use.

mod config;
mod controller;
mod discovery;
mod error;
mod fieldmanager;
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod http;
mod kinds;
mod printers;
mod protobuf;
mod registry;
mod resources;
mod strategy;
mod table;

use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use discovery::KUBERNETES_VERSION;
pub use error::ApiError;
use registry::Registry;

/// How long a stopping server waits for open requests before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// The API server: build it over a store, serve [`ApiServer::router`], run
/// [`ApiServer::spawn_background`] for the controllers, and [`ApiServer::close`] at the end.
#[derive(Clone)]
pub struct ApiServer {
    registry: Arc<Registry>,
    health: Arc<health::Health>,
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

/// The running controllers; [`Background::stop`] ends them.
pub struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// The tasks, for callers that manage them themselves.
    pub fn into_handles(self) -> Vec<tokio::task::JoinHandle<()>> {
        self.tasks
    }

    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

impl ApiServer {
    /// Restores allocations from the stored Services and creates the bootstrap objects.
    pub async fn new(store: Arc<dyn svcnet_store::Store>, config: Config) -> Result<Self, String> {
        let registry = Registry::new(store, config).await?;
        controller::bootstrap::run(&registry)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            registry,
            health: health::Health::new(),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
        })
    }

    pub fn router(&self) -> axum::Router {
        http::router(http::AppState {
            reg: self.registry.clone(),
            health: self.health.clone(),
            stopping: self.stopping.subscribe(),
        })
    }

    /// Serves the API on `listener` until `shutdown` completes, then stops: `/readyz` fails,
    /// open watches end, requests in flight get [`SHUTDOWN_GRACE`] to finish. Sockets get
    /// `TCP_NODELAY`: watch streams are many small writes, which Nagle's algorithm would hold
    /// back behind the client's delayed ACKs (a 40 ms tail per event).
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
        let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
        let me = self.clone();
        let signal = async move {
            shutdown.await;
            me.begin_stop();
            let _ = fired_tx.send(());
        };
        let server = axum::serve(listener, self.router()).with_graceful_shutdown(signal);
        let server = std::future::IntoFuture::into_future(server);
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => r,
            _ = async {
                if fired_rx.await.is_ok() {
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!("requests still open after the shutdown grace period; closing them");
                Ok(())
            }
        }
    }

    /// Marks the server as stopping: `/readyz` fails and open watches end.
    pub fn begin_stop(&self) {
        self.health.set_stopping();
        let _ = self.stopping.send(true);
    }

    /// Starts the EndpointSlice controller, the namespace controller and the Pod reaper.
    pub fn spawn_background(&self) -> Background {
        let reg = self.registry.clone();
        let health = self.health.clone();
        let endpoints =
            controller::endpointslice::EndpointSliceController::new(reg.clone(), health.clone());
        let namespaces =
            controller::namespace::NamespaceController::new(reg.clone(), health.clone());
        Background {
            tasks: vec![
                tokio::spawn(endpoints.run()),
                tokio::spawn(namespaces.run()),
                tokio::spawn(controller::pod_gc::run(reg, health)),
            ],
        }
    }

    /// Waits for the store's pending writes and closes it. Call after [`Self::serve`] and
    /// [`Background::stop`] returned.
    pub async fn close(&self) -> Result<(), svcnet_store::Error> {
        self.registry.store().close().await
    }
}
