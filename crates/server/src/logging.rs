//! Structured logs on stderr (text or JSON) with a filter that can change
//! while the process runs: `PUT /v1/log-level`, or `log-level` in the config
//! file followed by SIGHUP or `POST /v1/reload`.

use std::sync::OnceLock;

use parking_lot::Mutex;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

struct Filter {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<String>,
}

static FILTER: OnceLock<Filter> = OnceLock::new();

/// Installs the process's subscriber. `MERIDIAN_LOG` (an env-filter
/// directive such as `warn,meridian_repl=debug`) wins over `level`.
pub fn init(json: bool, level: &str) {
    let directive = std::env::var("MERIDIAN_LOG").unwrap_or_else(|_| level.to_string());
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"));
    let (layer, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(layer);
    let installed = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    if installed.is_ok() {
        let _ = FILTER.set(Filter {
            handle,
            current: Mutex::new(directive),
        });
    }
}

/// Checks an env-filter directive without applying it.
pub fn parse(directive: &str) -> Result<EnvFilter, String> {
    if directive.trim().is_empty() {
        return Err("the log level is empty; use e.g. info or warn,meridian_repl=debug".into());
    }
    EnvFilter::try_new(directive).map_err(|e| format!("log level {directive:?}: {e}"))
}

/// Replaces the filter of the running process.
pub fn set(directive: &str) -> Result<(), String> {
    let filter = parse(directive)?;
    let Some(f) = FILTER.get() else {
        return Err("logging is not initialised in this process".into());
    };
    f.handle
        .reload(filter)
        .map_err(|e| format!("changing the log level: {e}"))?;
    *f.current.lock() = directive.to_string();
    Ok(())
}

/// The directive in force.
pub fn current() -> String {
    FILTER
        .get()
        .map(|f| f.current.lock().clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bad_directives_are_refused_with_the_reason() {
        assert!(super::parse("info").is_ok());
        assert!(super::parse("warn,meridian_repl=debug").is_ok());
        assert!(super::parse("").is_err());
        assert!(super::parse("meridian=loud").is_err());
    }
}
