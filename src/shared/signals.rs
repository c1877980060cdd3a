//! The process signals every long-running command handles, in one place:
//! SIGTERM and SIGINT stop it (after in-flight work finishes), SIGHUP asks
//! the DNS daemon to reload. Commands that do not reload leave SIGHUP
//! alone.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// SIGHUP: reload.
    Hangup,
    /// SIGTERM or SIGINT: stop.
    Stop,
}

/// The signal handlers of one command, installed once.
pub struct Signals {
    hangup: Option<Signal>,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    /// SIGTERM and SIGINT only. Needs a tokio runtime.
    pub fn stop_only() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: None,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// SIGTERM, SIGINT and SIGHUP. Needs a tokio runtime.
    pub fn with_hangup() -> std::io::Result<Signals> {
        let mut signals = Signals::stop_only()?;
        signals.hangup = Some(signal(SignalKind::hangup())?);
        Ok(signals)
    }

    /// The next signal.
    pub async fn next(&mut self) -> Received {
        let hangup = async {
            match &mut self.hangup {
                Some(hangup) => {
                    hangup.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = hangup => Received::Hangup,
            _ = self.terminate.recv() => Received::Stop,
            _ = self.interrupt.recv() => Received::Stop,
        }
    }
}

/// Resolves on SIGTERM or SIGINT. When the handlers cannot be installed it
/// says so and never resolves (the process is then stopped by SIGKILL, as
/// it would be without handlers).
pub async fn shutdown() {
    match Signals::stop_only() {
        Ok(mut signals) => {
            signals.next().await;
        }
        Err(error) => {
            tracing::error!(%error, "cannot install signal handlers");
            std::future::pending::<()>().await;
        }
    }
}
