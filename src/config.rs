//! The validated run configuration and the parsers for its value syntaxes (durations, timeouts). Plain data
//! plus pure parsing: clap lives in `cli.rs`, and nothing here starts a process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use regex::bytes::Regex;

use crate::classify::Class;
use crate::det::Det;
use crate::fingerprint::Compare;
pub use crate::units::{
    parse_duration, scale_duration, Timeout, MAX_DURATION, MAX_TIMEOUT_FACTOR, RELATIVE_TIMEOUT_FLOOR,
};

/// Most replicas `--fork` makes: each fork's one-digit TMR_REPLICA is rewritten in place.
pub const FORK_MAX_REPLICAS: usize = 10;

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
    /// `--buffered`: deliver nothing until the vote, then the winner's output whole (or nothing).
    pub buffered: bool,
    /// `--buffer-limit`: the most output kept on disk until the vote (`--buffered`, `--sequential`).
    pub buffer_limit: u64,
    pub quiet: bool,
    pub output: Option<PathBuf>,
    pub format: Format,
    /// Memory voting (`--mem`) and its determinization steps.
    pub mem: Option<Det>,
    /// A fault to inject into one replica of the voted round (`--inject`), its replica already chosen.
    pub inject: Option<crate::inject::InjectSpec>,
    /// `--checkpoint INTERVAL`: checkpoint and roll back replicas (implies the monitor).
    pub checkpoint: Option<Duration>,
    /// `--epoch-vote`: align the checkpoints at equal system call counts and vote on memory there.
    pub epoch_vote: bool,
    /// `--recover`: how an outvoted replica recovers at an epoch vote (the tracer's default when `None`).
    pub recover: Option<crate::epoch::Recover>,
    /// `--fork`: exec once, fork the other replicas after the loader (`trace/forkrun.rs`).
    pub fork: bool,
    pub classify: ClassifyConfig,
    /// Where replicas run (`--launcher`, `--spread`, `--slurm-opt`).
    pub launch: crate::launch::LaunchConfig,
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
    /// Faults per trial (`--faults`), each in a different replica: 1..=replicas.
    pub faults: usize,
    /// Recovery: checkpoint replicas every INTERVAL and roll back failed ones (`--checkpoint`, or
    /// `--compare-recovery`, which also runs every trial without).
    pub checkpoint: Option<Duration>,
    /// Run every trial twice, recovery on and off, with the same faults (`--compare-recovery`).
    pub compare_recovery: bool,
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
    /// Where runs execute (`--launcher`, `--spread`, `--slurm-opt`).
    pub launch: crate::launch::LaunchConfig,
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

/// Most reruns `--reruns` (or the budget derived from `--min-flake-rate`) may ask for. Reruns run one
/// after another, so 100000 of even a 10 ms command take 17 minutes, and they already bound a flake's
/// rate below 0.003% (rule of three at 95%): more buys no useful claim, only time and memory.
pub const MAX_RERUNS: usize = 100_000;

/// The smallest `--min-flake-rate`: 1e-4 needs 29956 reruns at 95% confidence, well within
/// [`MAX_RERUNS`]; much smaller rates ask for budgets no run can spend.
pub const MIN_FLAKE_RATE: f64 = 1e-4;

/// Most `tmr hunt --runs`: a million runs of a 1 ms command take 17 minutes and bound a failure rate
/// below 0.0003%; more is a typo, and each run costs tmr a few bytes of bookkeeping.
pub const MAX_HUNT_RUNS: u64 = 1_000_000;

/// Most `tmr campaign --trials`: each trial is a voted round under ptrace, and its spec is kept for the
/// trial log.
pub const MAX_TRIALS: u64 = 100_000;

/// `--rerun-budget`: a duration (see [`parse_duration`]) or `Kx`, K times the voted round's wall time
/// (K ≥ 0; `0x` means no reruns).
pub fn parse_time_budget(text: &str) -> Result<crate::classify::TimeBudget, String> {
    use crate::classify::TimeBudget;
    if let Some(factor) = text.trim().strip_suffix('x') {
        let shown = text.trim().escape_debug();
        let k: f64 =
            factor.parse().map_err(|_| format!("invalid rerun budget '{shown}': expected e.g. 2x or 1m"))?;
        if !k.is_finite() || !(0.0..=MAX_TIMEOUT_FACTOR).contains(&k) {
            return Err(format!(
                "invalid rerun budget '{shown}': the factor must be between 0 and {MAX_TIMEOUT_FACTOR}"
            ));
        }
        return Ok(TimeBudget::Relative(k));
    }
    parse_duration(text).map(TimeBudget::Absolute)
}

/// A duration (see [`parse_duration`]) or `Nx`, a factor of the majority's median wall time
/// (1 < N <= [`MAX_TIMEOUT_FACTOR`]).
pub fn parse_timeout(text: &str) -> Result<Timeout, String> {
    if let Some(factor) = text.trim().strip_suffix('x') {
        let shown = text.trim().escape_debug();
        let f: f64 =
            factor.parse().map_err(|_| format!("invalid relative timeout '{shown}': expected e.g. 3x"))?;
        if f.is_nan() || f <= 1.0 {
            return Err(format!("invalid relative timeout '{shown}': the factor must be greater than 1"));
        }
        if f > MAX_TIMEOUT_FACTOR {
            return Err(format!(
                "invalid relative timeout '{shown}': the factor must be at most {MAX_TIMEOUT_FACTOR}"
            ));
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
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 2d "), Ok(Duration::from_secs(2 * 86400)));
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in ["", "0", "0s", "-1s", "abc", "10 parsecs", "1X", "s", "."] {
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

    #[test]
    fn durations_and_factors_are_bounded_with_the_right_message() {
        let year = MAX_DURATION.as_secs();
        assert_eq!(parse_duration(&year.to_string()), Ok(MAX_DURATION));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        for past in [(year + 1).to_string(), "1000000001".into(), "366d".into(), "1e300".into()] {
            let e = parse_duration(&past).unwrap_err();
            assert!(!e.contains("positive") && !e.contains('\n'), "{past}: {e}");
        }
        for past in [(year + 1).to_string(), "1000000001".into(), "366d".into()] {
            assert!(parse_duration(&past).unwrap_err().contains("at most 365d"), "{past}");
        }
        for huge in ["99999999999999999999999s", "1e300s", "18446744073709551616s", "99999999999999999999999"]
        {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
        assert_eq!(parse_timeout("1000x"), Ok(Timeout::Relative(1000.0)));
        for past in ["1000.5x", "1e300x", "infx", "NaNx"] {
            let e = parse_timeout(past).unwrap_err();
            assert!(!e.contains('\n') && e.contains("factor"), "{past}: {e}");
        }
    }
}
