//! Logging setup shared by the binaries.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global tracing subscriber. `RUST_LOG` overrides
/// `default_filter` (e.g. `"info,headroom_extender=debug"`); an invalid filter
/// falls back to `info` with a warning. Calling it again is a no-op.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let (filter, filter_error) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(env_err) => {
            // RUST_LOG unset is the common case and not worth a warning.
            let env_problem =
                std::env::var_os(EnvFilter::DEFAULT_ENV).map(|_| format!("RUST_LOG: {env_err}"));
            match EnvFilter::try_new(default_filter) {
                Ok(filter) => (filter, env_problem),
                Err(e) => (
                    EnvFilter::new("info"),
                    Some(format!("default filter {default_filter:?}: {e}")),
                ),
            }
        }
    };
    // Colour only on a terminal: logs in files and collectors stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    if installed.is_ok()
        && let Some(problem) = filter_error
    {
        tracing::warn!(%problem, "invalid log filter, using a fallback");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn log_format_parses_from_cli_values() {
        assert_eq!(LogFormat::from_str("json", true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", true), Ok(LogFormat::Text));
        assert!(LogFormat::from_str("xml", true).is_err());
    }

    #[test]
    fn init_twice_does_not_panic() {
        init_tracing(LogFormat::Json, "not a [valid filter");
        init_tracing(LogFormat::Text, "info");
        tracing::info!("still logging");
    }
}
