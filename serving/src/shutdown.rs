//! One shutdown signal, fanned out to every listener and connection.

use tokio::sync::watch;

/// A cloneable handle that resolves once shutdown has been asked for.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    // Keeps the sender of `never()` alive so that it never resolves.
    _never: Option<std::sync::Arc<watch::Sender<bool>>>,
}

/// The side that asks for shutdown.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, Shutdown { rx, _never: None })
    }

    /// A shutdown that never comes: for listeners that live as long as the process.
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            _never: Some(std::sync::Arc::new(tx)),
        }
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when shutdown is triggered, or when the trigger is dropped.
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means: stop.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// Triggers shutdown on SIGTERM or SIGINT.
pub fn on_signals(trigger: ShutdownTrigger) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down: draining in-flight requests");
        trigger.trigger();
    });
    Ok(())
}
