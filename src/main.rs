//! The `ringsq` binary: parse nsqd's flags, run the broker (one `io_uring` runtime per shard)
//! until SIGTERM/SIGINT; or, when the first argument names one, run an offline subcommand
//! (`ringsq check`, `ringsq dump`: `ringsq::app::tools`).

use ringsq::options::{self, LogFormat, Options, Parsed};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = ringsq::app::tools::main(&args) {
        return code;
    }
    let options = match options::parse(args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Version) => {
            println!("{}", options::VERSION);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Help(h)) => {
            println!("{h}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Go's flag package exits 2 on a bad flag; nsqd exits 1 on a bad config or check.
            eprintln!("ringsq: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    init_tracing(&options);
    for key in &options.ignored_config_keys {
        tracing::warn!("config file: unknown key {key:?} ignored (as nsqd does)");
    }
    let result = ringsq::app::server::run(options, shutdown_signal());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ringsq: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(options: &Options) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // nsqd's levels, with "fatal" shown as tracing's "error".
    fn filter(level: options::LogLevel) -> tracing_subscriber::EnvFilter {
        tracing_subscriber::EnvFilter::new(match level {
            options::LogLevel::Fatal => "error",
            other => other.as_str(),
        })
    }
    let (layer, handle) = tracing_subscriber::reload::Layer::new(filter(options.log_level));
    let registry = tracing_subscriber::registry().with(layer);
    match options.log_format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(prefixed_stderr(&options.log_prefix))
                    .with_ansi(false)
                    .with_target(false),
            )
            .init(),
        // JSON lines must parse: no prefix in front of them.
        LogFormat::Json => registry
            .with(ringsq::app::log_json::SpanFields)
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(ringsq::app::log_json::JsonLines)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    // `PUT /config/log_level` changes the filter at run time.
    ringsq::app::node::set_log_level_hook(Box::new(move |level| {
        if let Err(e) = handle.reload(filter(level)) {
            tracing::error!("cannot change the log level: {e}");
        }
    }));
}

/// stderr with nsqd's `--log-prefix` (default `[nsqd] `) in front of every line. The fmt layer
/// writes each event with one `write_all`, and `write` here always takes the whole buffer.
fn prefixed_stderr(prefix: &str) -> impl Fn() -> PrefixedStderr + use<> {
    let prefix: std::sync::Arc<[u8]> = prefix.as_bytes().into();
    move || PrefixedStderr {
        prefix: std::sync::Arc::clone(&prefix),
    }
}

struct PrefixedStderr {
    prefix: std::sync::Arc<[u8]>,
}

impl std::io::Write for PrefixedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut line = Vec::with_capacity(self.prefix.len() + buf.len());
        line.extend_from_slice(&self.prefix);
        line.extend_from_slice(buf);
        std::io::stderr().lock().write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("signal: terminated"),
        _ = int.recv() => tracing::info!("signal: interrupt"),
    }
}
