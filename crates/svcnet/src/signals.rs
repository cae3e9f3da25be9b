//! SIGINT and SIGTERM for every long-running command: the first one starts a clean stop
//! (the command has a couple of seconds to finish what it holds), a second one exits at once.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Handlers installed at start, so a signal that arrives while the command is still setting
/// up is not lost (or fatal).
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the first SIGINT or SIGTERM, says that the command is stopping, and from
    /// then on exits the process (status 130) on the next one.
    pub async fn first(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        eprintln!("svcnet: stopping (press Ctrl-C again to exit at once)");
        tokio::spawn(async move {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
            eprintln!("svcnet: exiting at once");
            std::process::exit(130);
        });
    }
}
