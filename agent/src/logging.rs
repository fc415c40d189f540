//! Where the agent's log goes and in what form (`log` in the settings):
//! plain text or one JSON object a line, to standard error (the journal
//! under systemd) or to files in `log.dir` rotated by time.

use raftgres_config::{LogRotation, LogSettings, LogType};
use std::io::IsTerminal;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Plain text at info to standard error: the keeper, its guard, and the
/// agent until its settings are read.
const DEFAULT_FILTER: &str = "info,openraft=warn";

/// Sets up the process's log; `RUST_LOG`, when set, replaces the levels.
/// The guard flushes the file writer's queue when dropped: keep it for the
/// life of the process.
pub fn init(settings: Option<&LogSettings>) -> anyhow::Result<Option<WorkerGuard>> {
    let directives = settings.map_or(DEFAULT_FILTER, |s| s.filter.as_str());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let json = settings.is_some_and(|s| s.kind == LogType::Json);
    let (layer, guard) = match settings.and_then(|s| s.dir.as_ref().map(|dir| (s, dir))) {
        Some((s, dir)) => {
            let rotation = match s.rotation {
                LogRotation::Hourly => Rotation::HOURLY,
                LogRotation::Daily => Rotation::DAILY,
            };
            let files = RollingFileAppender::builder()
                .rotation(rotation)
                .filename_prefix("raftgres-agent")
                .filename_suffix("log")
                .max_log_files(s.file_num)
                .build(dir)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot write the log in log.dir {}: {e}; create it, owned by the \
                         agent's user",
                        dir.display()
                    )
                })?;
            // Lines wait in a queue for the writer thread instead of being
            // dropped: a missing line about a fence is worse than a slow one.
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .finish(files);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false);
            let layer = if json {
                layer.json().boxed()
            } else {
                layer.boxed()
            };
            (layer, Some(guard))
        }
        None => {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(!json && std::io::stderr().is_terminal());
            let layer = if json {
                layer.json().boxed()
            } else {
                layer.boxed()
            };
            (layer, None)
        }
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up the log: {e}"))?;
    Ok(guard)
}
