//! `/healthz`, `/livez` and `/readyz` as kube-apiserver answers them: `ok`, or with
//! `?verbose` one `[+]check ok` line per check; a failing check makes the answer a 500 that
//! always lists the checks; `?exclude=check` skips one; `/readyz/<check>` asks for one.
//!
//! Checks: `ping`, `store` (a read of the store's revision), one per controller (`ok` once it
//! has synced, failing while its last pass failed) and, for readiness, `shutdown` (failing
//! once the server has begun to stop).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::registry::Registry;

/// The state a controller reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerState {
    Starting,
    Synced,
    Failing(String),
}

/// Shared by the server, its controllers and the health endpoints.
#[derive(Default)]
pub struct Health {
    controllers: Mutex<BTreeMap<&'static str, ControllerState>>,
    stopping: AtomicBool,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a controller (as starting) so readiness waits for it.
    pub fn register(&self, name: &'static str) {
        self.controllers
            .lock()
            .expect("health lock")
            .insert(name, ControllerState::Starting);
    }

    pub fn report(&self, name: &'static str, state: ControllerState) {
        self.controllers
            .lock()
            .expect("health lock")
            .insert(name, state);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Which endpoint is asked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Healthz,
    Livez,
    Readyz,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Healthz => "healthz",
            Endpoint::Livez => "livez",
            Endpoint::Readyz => "readyz",
        }
    }
}

/// The outcome of every check of `endpoint`, in order: name and `Err(reason)` when failing.
async fn run_checks(
    reg: &Registry,
    health: &Health,
    endpoint: Endpoint,
) -> Vec<(String, Result<(), String>)> {
    let mut out = vec![("ping".to_owned(), Ok(()))];
    out.push((
        "store".to_owned(),
        reg.check_store().await.map_err(|e| e.to_string()),
    ));
    if endpoint == Endpoint::Readyz {
        let controllers = health.controllers.lock().expect("health lock").clone();
        for (name, state) in controllers {
            let r = match state {
                ControllerState::Synced => Ok(()),
                ControllerState::Starting => Err("not finished".to_owned()),
                ControllerState::Failing(e) => Err(e),
            };
            out.push((format!("controller/{name}"), r));
        }
        out.push((
            "shutdown".to_owned(),
            if health.is_stopping() {
                Err("process is shutting down".to_owned())
            } else {
                Ok(())
            },
        ));
    }
    out
}

/// The status code and text body of `GET /<endpoint>[/<check>]?verbose&exclude=…`.
pub async fn answer(
    reg: &Registry,
    health: &Health,
    endpoint: Endpoint,
    check: Option<&str>,
    verbose: bool,
    exclude: &[&str],
) -> (u16, String) {
    let results = run_checks(reg, health, endpoint).await;
    if let Some(one) = check {
        return match results.iter().find(|(n, _)| n == one) {
            None => (404, "404 page not found\n".to_owned()),
            Some((_, Ok(()))) => (200, "ok".to_owned()),
            Some((_, Err(e))) => (500, format!("internal server error: {e}\n")),
        };
    }
    let mut body = String::new();
    let mut failed = false;
    for (name, result) in &results {
        if exclude.contains(&name.as_str()) {
            body.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        match result {
            Ok(()) => body.push_str(&format!("[+]{name} ok\n")),
            Err(_) => {
                failed = true;
                body.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
    }
    let mut unmatched: Vec<&str> = exclude
        .iter()
        .copied()
        .filter(|e| !results.iter().any(|(n, _)| n == e))
        .collect();
    unmatched.sort_unstable();
    if !unmatched.is_empty() {
        let names: Vec<String> = unmatched.iter().map(|n| format!("{n:?}")).collect();
        body.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            names.join(",")
        ));
    }
    let name = endpoint.name();
    if failed {
        body.push_str(&format!("{name} check failed\n"));
        return (500, body);
    }
    if !verbose {
        return (200, "ok".to_owned());
    }
    body.push_str(&format!("{name} check passed\n"));
    (200, body)
}
