//! The signals the agent answers, installed before capture goes live.
//!
//! SIGINT and SIGTERM stop it cleanly (final drain, `sensor_stop`). SIGHUP
//! reopens the outputs (logrotate's `postrotate` sends it) and reloads the
//! policy, if there is one. SIGUSR1 is logged and ignored: it must not
//! stop the audit either.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks of the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Stop(&'static str),
    /// Load the policy again.
    Reload(&'static str),
    Ignore(&'static str),
}

pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    user1: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.interrupt.recv() => Request::Stop("SIGINT"),
            _ = self.terminate.recv() => Request::Stop("SIGTERM"),
            _ = self.hangup.recv() => Request::Reload("SIGHUP"),
            _ = self.user1.recv() => Request::Ignore("SIGUSR1"),
        }
    }
}
