//! Shared set-up for the API server's integration tests: a server over a temporary store,
//! reachable in-process (the axum router as a tower service) or over a loopback socket.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use serde_json::Value;
use svcnet_apiserver::{ApiServer, Config};
use svcnet_store::{RedbStore, RedbStoreConfig};
use tower::ServiceExt;

#[derive(Clone, Copy, Debug)]
pub enum Transport {
    InProcess,
    Socket,
}

pub const BOTH: [Transport; 2] = [Transport::InProcess, Transport::Socket];

pub struct TestServer {
    pub server: ApiServer,
    pub client: kube::Client,
    pub addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub struct Options {
    pub history: u64,
    pub config: Config,
    pub controllers: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            history: 100_000,
            config: Config::default(),
            controllers: true,
        }
    }
}

impl Options {
    /// The defaults without the background tasks (EndpointSlice controller, Pod reaper).
    pub fn quiet() -> Self {
        Self {
            controllers: false,
            ..Default::default()
        }
    }
}

pub async fn start(transport: Transport) -> TestServer {
    start_with(transport, Options::default()).await
}

/// A server without the background tasks (EndpointSlice controller, Pod reaper).
pub async fn start_quiet(transport: Transport) -> TestServer {
    start_with(transport, Options::quiet()).await
}

pub async fn start_with(transport: Transport, mut opts: Options) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = match transport {
        Transport::Socket => Some(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback"),
        ),
        Transport::InProcess => None,
    };
    let addr = listener
        .as_ref()
        .map(|l| l.local_addr().expect("local addr"));
    if let Some(a) = addr {
        opts.config.advertise = a;
    }
    let store = RedbStore::open(
        &dir.path().join("store.redb"),
        RedbStoreConfig {
            history: opts.history,
            ..Default::default()
        },
    )
    .expect("open store");
    let server = ApiServer::new(Arc::new(store), opts.config)
        .await
        .expect("server starts");
    let mut tasks = if opts.controllers {
        server.spawn_background().into_handles()
    } else {
        Vec::new()
    };
    let client = match listener {
        Some(l) => {
            let serving = server.clone();
            tasks.push(tokio::spawn(async move {
                serving
                    .serve(l, std::future::pending())
                    .await
                    .expect("serve");
            }));
            let url: http::Uri = format!("http://{}", addr.expect("bound"))
                .parse()
                .expect("uri");
            kube::Client::try_from(kube::Config::new(url)).expect("client")
        }
        None => kube::Client::new(server.router(), "default"),
    };
    TestServer {
        server,
        client,
        addr,
        dir,
        tasks,
    }
}

impl TestServer {
    /// A raw request through the router; returns status and the body's bytes.
    async fn send(&self, method: &str, uri: &str, content_type: &str, body: Body) -> (u16, Bytes) {
        let mut req = http::Request::builder().method(method).uri(uri);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let resp = self
            .server
            .router()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("router answers");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, bytes)
    }

    /// A raw request through the router; returns status and JSON body.
    pub async fn raw(
        &self,
        method: &str,
        uri: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> (u16, Value) {
        let (status, bytes) = self.send(method, uri, content_type, body.into()).await;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v)
    }

    /// A GET through the router; returns status and JSON body.
    pub async fn get(&self, uri: &str) -> (u16, Value) {
        self.raw("GET", uri, "application/json", "").await
    }

    /// A raw GET-like request; returns status and the body as text.
    pub async fn raw_text(&self, method: &str, uri: &str) -> (u16, String) {
        let (status, bytes) = self.send(method, uri, "", Body::empty()).await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn post_json(&self, uri: &str, v: &Value) -> (u16, Value) {
        self.raw(
            "POST",
            uri,
            "application/json",
            serde_json::to_vec(v).expect("json"),
        )
        .await
    }
}

/// Under CI a missing tool is a failure; elsewhere the test says why it did nothing.
pub fn require_tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{name} is required under CI but is not installed");
        }
        eprintln!("skipping: {name} is not installed");
    }
    found
}
