//! Logging: `tracing` events to stderr as structured lines (time, level, message, key=value fields), with the
//! level changeable while weftd runs (`weft vlog/set debug`). The datapath logs through rate limits so a
//! failing port cannot flood the log.

use std::sync::OnceLock;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, Registry};

static HANDLE: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();

/// Installs the logger at `level` (once per process).
pub fn init(level: LevelFilter) {
    let (filter, handle) = reload::Layer::new(level);
    let out = fmt::layer().with_writer(std::io::stderr).with_ansi(false).with_target(false);
    if tracing_subscriber::registry().with(filter).with(out).try_init().is_ok() {
        let _ = HANDLE.set(handle);
    }
}

/// Parses a level name as `vlog/set` takes it.
pub fn parse(level: &str) -> Result<LevelFilter, String> {
    match level.to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::OFF),
        "err" | "error" => Ok(LevelFilter::ERROR),
        "warn" | "warning" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "dbg" | "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        other => Err(format!("unknown log level {other:?} (off, error, warn, info, debug, trace)")),
    }
}

/// Changes the level of the running logger.
pub fn set(level: LevelFilter) -> Result<(), String> {
    HANDLE.get().ok_or("no logger")?.modify(|f| *f = level).map_err(|e| e.to_string())
}

/// The level in force.
pub fn current() -> String {
    HANDLE.get().and_then(|h| h.with_current(|f| f.to_string()).ok()).unwrap_or_else(|| "info".into())
}

/// Lets an event through at most once per `interval` nanoseconds and counts what it held back.
#[derive(Debug, Default, Clone, Copy)]
pub struct RateLimit {
    last: u64,
    pub suppressed: u64,
}

impl RateLimit {
    /// True when the event may be logged now (`now` in nanoseconds, any monotonic origin).
    pub fn allow(&mut self, now: u64, interval: u64) -> bool {
        if self.last == 0 || now.saturating_sub(self.last) >= interval {
            self.last = now.max(1);
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit() {
        let mut r = RateLimit::default();
        assert!(r.allow(5, 100));
        assert!(!r.allow(50, 100));
        assert!(!r.allow(104, 100));
        assert!(r.allow(105, 100));
        assert_eq!(r.suppressed, 2);
        assert!(parse("debug").is_ok() && parse("loud").is_err());
    }
}
