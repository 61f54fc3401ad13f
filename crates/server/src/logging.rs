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

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a log level without applying it: comma-separated items, each a
/// level (`info`) or `module=level` (`meridian_repl=debug`), the form
/// `docs/openapi.yaml` documents. (`MERIDIAN_LOG` takes any env-filter
/// directive; this setting takes only this form.)
pub fn parse(directive: &str) -> Result<EnvFilter, String> {
    let bad = |why: &str| {
        format!("log level {directive:?}: {why}; use e.g. info or warn,meridian_repl=debug")
    };
    if directive.is_empty() {
        return Err(bad("empty"));
    }
    for item in directive.split(',') {
        let level = match item.split_once('=') {
            None => item,
            Some((module, level)) => {
                let module_ok = module.split("::").all(|part| {
                    part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                        && part
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
                if !module_ok {
                    return Err(bad(&format!("{module:?} is not a module path")));
                }
                level
            }
        };
        if !LEVELS.contains(&level) {
            return Err(bad(&format!(
                "{level:?} is not one of {}",
                LEVELS.join(", ")
            )));
        }
    }
    EnvFilter::try_new(directive).map_err(|e| bad(&e.to_string()))
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
        assert!(
            super::parse("__main__").is_err(),
            "a bare module is not a level"
        );
        assert!(super::parse("info,Bad=debug").is_err());
        assert!(super::parse("meridian_repl::sender=trace,warn").is_ok());
    }
}
