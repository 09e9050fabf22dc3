//! The validated run configuration and the parsers for its value syntaxes (durations, timeouts). Plain data
//! plus pure parsing: clap lives in `cli.rs`, and nothing here starts a process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use regex::bytes::Regex;

use crate::classify::Class;
use crate::fingerprint::Compare;
use crate::replica::monitor::Det;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The command exactly as given; `argv[0]` is resolved against PATH before any replica starts.
    pub command: Vec<OsString>,
    pub replicas: usize,
    pub sequential: bool,
    pub compare: Compare,
    pub masks: Vec<Regex>,
    pub timeout: Option<Timeout>,
    pub strict: bool,
    pub quiet: bool,
    pub output: Option<PathBuf>,
    pub format: Format,
    /// Memory voting (`--mem`) and its determinization steps.
    pub mem: Option<Det>,
    /// A fault to inject into one replica of the voted round (`--inject`), its replica already chosen.
    pub inject: Option<crate::inject::InjectSpec>,
    pub classify: ClassifyConfig,
}

/// `tmr campaign`: a golden run, then K TMR rounds with one injected fault each.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    pub command: Vec<OsString>,
    pub trials: usize,
    pub seed: u64,
    pub replicas: usize,
    /// The fault template; open choices are drawn per trial.
    pub inject: crate::inject::InjectSpec,
    /// The template fixed the fault time (`after=`); otherwise it is drawn over the golden run's time.
    pub inject_has_time: bool,
    pub timeout: Option<Duration>,
    /// Count a faulty replica whose memory diverged as detected, not masked.
    pub mem: bool,
    pub det: Det,
    pub output: Option<PathBuf>,
    pub format: Format,
}

/// `tmr hunt`: K single executions, J at a time.
#[derive(Debug, Clone)]
pub struct HuntConfig {
    pub command: Vec<OsString>,
    pub runs: usize,
    pub jobs: usize,
    pub until_fail: bool,
    pub duration: Option<Duration>,
    pub keep: Option<PathBuf>,
    pub compare: Compare,
    pub masks: Vec<Regex>,
    pub timeout: Option<Timeout>,
    pub confidence: f64,
    pub output: Option<PathBuf>,
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerunMode {
    /// One execution at a time: no contention.
    Sequential,
    /// Rounds of N replicas in parallel, like the voted round.
    Parallel,
}

/// How disagreements are settled by reruns and turned into exit codes and CI reports.
#[derive(Debug, Clone)]
pub struct ClassifyConfig {
    /// Most reruns to spend; by default enough to bound a flake's rate below `min_flake_rate`.
    pub reruns: usize,
    /// Most time to spend on reruns (`--rerun-budget`); whichever budget runs out first ends them.
    pub time_budget: crate::classify::TimeBudget,
    pub confidence: f64,
    pub min_flake_rate: f64,
    pub rerun_mode: RerunMode,
    pub fail_on: Vec<Class>,
    pub junit: Option<PathBuf>,
    /// Append a Markdown summary to $GITHUB_STEP_SUMMARY.
    pub github: bool,
}

/// `a,b,c` class names for `--fail-on`.
pub fn parse_classes(text: &str) -> Result<Vec<Class>, String> {
    text.split(',')
        .map(|t| {
            Class::parse(t.trim()).ok_or_else(|| {
                let names: Vec<&str> = Class::ALL.iter().map(|c| c.name()).collect();
                format!("unknown class '{t}': expected one of {}", names.join(", "))
            })
        })
        .collect()
}

/// `500ms`, `30s`, `1.5m`, `2h`, or a bare number of seconds. Zero and negative durations are refused:
/// a replica cannot do anything in no time.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 =
        num.parse().map_err(|_| format!("invalid duration '{text}': expected e.g. 500ms, 30s, 2m, 1h"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("invalid duration unit in '{text}': use ms, s, m or h")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("invalid duration '{text}': must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--rerun-budget`: a duration (see [`parse_duration`]) or `Kx`, K times the voted round's wall time
/// (K ≥ 0; `0x` means no reruns).
pub fn parse_time_budget(text: &str) -> Result<crate::classify::TimeBudget, String> {
    use crate::classify::TimeBudget;
    if let Some(factor) = text.trim().strip_suffix('x') {
        let k: f64 =
            factor.parse().map_err(|_| format!("invalid rerun budget '{text}': expected e.g. 2x or 1m"))?;
        if !k.is_finite() || !(0.0..=1e6).contains(&k) {
            return Err(format!("invalid rerun budget '{text}': the factor must be between 0 and 1000000"));
        }
        return Ok(TimeBudget::Relative(k));
    }
    parse_duration(text).map(TimeBudget::Absolute)
}

/// A duration (see [`parse_duration`]) or `Nx`, a factor of the majority's median wall time (N > 1).
pub fn parse_timeout(text: &str) -> Result<Timeout, String> {
    if let Some(factor) = text.trim().strip_suffix('x') {
        let f: f64 =
            factor.parse().map_err(|_| format!("invalid relative timeout '{text}': expected e.g. 3x"))?;
        if !f.is_finite() || f <= 1.0 {
            return Err(format!("invalid relative timeout '{text}': the factor must be greater than 1"));
        }
        return Ok(Timeout::Relative(f));
    }
    parse_duration(text).map(Timeout::Absolute)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in ["", "0", "0s", "-1s", "abc", "10 parsecs", "1d", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn relative_timeouts() {
        assert_eq!(parse_timeout("3x"), Ok(Timeout::Relative(3.0)));
        assert_eq!(parse_timeout("2.5x"), Ok(Timeout::Relative(2.5)));
        assert!(parse_timeout("1x").is_err());
        assert!(parse_timeout("x").is_err());
        assert_eq!(parse_timeout("10s"), Ok(Timeout::Absolute(Duration::from_secs(10))));
    }
}
