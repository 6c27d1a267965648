//! Tracing subscriber (pretty locally, JSON in production) and the process panic hook.

use crate::settings::{LogFormat, LoggingSettings};
use std::sync::OnceLock;
use tokio::sync::watch;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber once; later calls are ignored (tests build several apps).
pub fn init(settings: &LoggingSettings) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&settings.level));
    // Colour codes only on a terminal: a log redirected to a file or a pipe stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let res = match settings.format {
        LogFormat::Json => fmt()
            .json()
            .with_ansi(false)
            .with_env_filter(filter)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => fmt()
            .with_ansi(ansi)
            .with_env_filter(filter)
            .with_target(false)
            .try_init(),
    };
    if res.is_err() {
        tracing::debug!("tracing subscriber already installed");
    }
}

static FATAL: OnceLock<watch::Sender<Option<String>>> = OnceLock::new();

/// A receiver that yields once a panic happened outside any supervised handler.
pub fn fatal_panics() -> watch::Receiver<Option<String>> {
    FATAL.get_or_init(|| watch::channel(None).0).subscribe()
}

/// Routes panics through tracing. A panic inside a guarded actor handler is a supervised crash
/// (the guard restarts the actor); any other panic is fatal: it is reported to `main`, which
/// drains and exits non-zero.
pub fn install_panic_hook() {
    let tx = FATAL.get_or_init(|| watch::channel(None).0).clone();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        if triplegain_actors::supervision::in_guarded_handler() {
            tracing::error!(%location, panic = %payload, "panic inside a supervised handler");
            return;
        }
        tracing::error!(%location, panic = %payload, event = "fatal_panic", "panic outside any supervised handler; shutting down");
        let _ = tx.send(Some(format!("{payload} at {location}")));
    }));
}
