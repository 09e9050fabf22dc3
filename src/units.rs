//! Plain quantities every layer shares: the page size, durations and their syntax, the timeout rule.
//! A leaf on purpose (it imports nothing from this crate), so that the configuration, the tracer, the
//! supervisor and the reports can all use these without import cycles between them.

use std::time::Duration;

/// The page size the memory vote, the injector and the checkpoints work in: x86-64's 4 KiB (the tracer
/// is built for x86-64 only, see `trace::no_tracer`).
pub const PAGE: u64 = 4096;

/// A byte count as a user would write it (`1G`, `512M`), or in bytes when no suffix divides it.
pub fn size(n: u64) -> String {
    for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{suffix}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// `--timeout`: a fixed limit per replica, or a multiple of the finished majority's median wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timeout {
    Absolute(Duration),
    /// Once a majority has finished, a replica still running after `factor` × their median wall time is
    /// hung. The master's health check: no absolute time to guess.
    Relative(f64),
}

/// Floor for a relative timeout, so that a command taking 1 ms does not get its slow-to-schedule third
/// replica killed after 3 ms on a loaded machine.
pub const RELATIVE_TIMEOUT_FLOOR: Duration = Duration::from_secs(1);

/// `base × factor`, saturating at `Duration::MAX` instead of panicking for huge factors (`1e300x`);
/// a negative or NaN factor gives zero.
pub fn scale_duration(base: Duration, factor: f64) -> Duration {
    let secs = base.as_secs_f64() * factor;
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

/// The longest duration any option accepts: a year. Longer is a typo, and bounding it keeps every
/// `Instant + Duration` in tmr far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const MAX_DURATION_TEXT: &str = "365d (a year)";

/// The largest `Nx` factor of a relative timeout. A replica 1000 times slower than its finished
/// siblings is hung by any standard; past that the factor only risks arithmetic overflow.
pub const MAX_TIMEOUT_FACTOR: f64 = 1000.0;

/// `500ms`, `30s`, `1.5m`, `2h`, `1h 30m` (humantime's syntax), or a bare number of seconds. Zero is
/// refused (a replica cannot do anything in no time), and so is anything above [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let shown = t.escape_debug();
    let d = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| format!("invalid duration '{shown}': not a number"))?;
        if secs > MAX_DURATION.as_secs_f64() {
            return Err(format!("invalid duration '{shown}': at most {MAX_DURATION_TEXT}"));
        }
        Duration::from_secs_f64(secs)
    } else {
        humantime::parse_duration(t)
            .map_err(|e| format!("invalid duration '{shown}': {e} (e.g. 500ms, 30s, 2m, 1h)"))?
    };
    if d.is_zero() {
        return Err(format!("invalid duration '{shown}': must be more than zero"));
    }
    if d > MAX_DURATION {
        return Err(format!("invalid duration '{shown}': at most {MAX_DURATION_TEXT}"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_typed() {
        assert_eq!(
            [size(1 << 30), size(512 << 20), size(3 << 10), size(1 << 40), size(1000)],
            ["1G", "512M", "3K", "1T", "1000 bytes"].map(String::from)
        );
        assert_eq!(size(u64::MAX), format!("{} bytes", u64::MAX));
    }
}
