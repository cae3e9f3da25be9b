//! SIGINT and SIGTERM for every long-running command: the first one starts a clean stop
//! (the command has a couple of seconds to finish what it holds), a second one exits at once
//! with status 130.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves once the first signal arrived; cheap to clone, so start-up steps and the running
/// command can all wait on it.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Installs the handlers (at start, so a signal during set-up is not lost) and the task
    /// that turns the first signal into a stop and the second into an exit.
    pub fn install() -> std::io::Result<Self> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("svcnet: stopping (press Ctrl-C again to exit at once)");
            let _ = tx.send(true);
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("svcnet: exiting at once");
            std::process::exit(130);
        });
        Ok(Self(rx))
    }

    /// Waits for the first signal.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    /// Runs `step` unless a signal comes first (`None`).
    pub async fn unless<T>(&self, step: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            v = step => Some(v),
            _ = self.clone().wait() => None,
        }
    }
}
