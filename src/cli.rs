//! Command-line parsing: the only module that knows clap. Turns argv into a validated [`Config`]; every
//! mistake becomes a one-line error with exit code 125, never clap's 2, which commands use themselves.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use regex::bytes::Regex;

use crate::classify::Class;
use crate::config::{
    parse_classes, parse_duration, parse_time_budget, parse_timeout, CampaignConfig, ClassifyConfig, Config,
    Format, HuntConfig, RerunMode, Timeout, MAX_HUNT_RUNS, MAX_RERUNS, MAX_TRIALS, MIN_FLAKE_RATE,
};
use crate::det::Det;
use crate::exit;
use crate::fingerprint::Compare;
use crate::inject::{InjectSpec, Rng};

/// Help texts: a preformatted line (indented) stays under 80 columns, so clap never wraps it; a paragraph
/// is one source line, so clap wraps it whole at the terminal's width instead of breaking it mid-phrase.
const EXAMPLES: &str = "\
EXAMPLES
  tmr test -- cargo test
      a test suite: vote per test, rerun only the failing ones (tmr test --help)
  tmr -- sort data.txt
      3 replicas, voted output and exit code
  tmr -n 5 -- ./solver --input x.dat
      5 replicas; `--` ends tmr's options
  tmr --sequential -- make
      one replica after another (a build writes its tree; shared ports)
  tmr --timeout 30s -- ./flaky.sh
      a replica running 30 s is killed: outcome \"timeout\"
  tmr --timeout 3x -- ./job
      killed when 3x slower than the finished majority
  tmr --mask '[0-9.]+ ?m?s' -- cargo bench
      blank out durations before comparing
  tmr --format json -o report.json -- ./job
      machine-readable report
  tmr --fail-on transient,nondeterministic -- ./test.sh
      fail CI on any flake
  tmr --compare exit -- ./integration.sh
      a single test: vote on the exit status only
  tmr hunt --runs 200 --jobs 4 -- ./flaky-test.sh
      hunt a flaky test (see tmr hunt --help)
  tmr --launcher slurm -- ./solver x.dat
      each replica as a Slurm job step on a node of its own
  tmr record -o run-$HOST.json -- ./job; tmr vote run-*.json
      one run per machine (e.g. a CI matrix), voted on one of them

The vote says what came out (unanimous, majority, no-majority); the class says why, settled by reruns within --reruns and --rerun-budget (default 2x: a failing run costs about 3x its own time): none, transient, nondeterministic, deterministic. tmr exits with the voted outcome unless --fail-on names the class.
Each replica gets TMR_REPLICA (0..N-1), TMR_REPLICAS (N) and TMR_ROUND (0 for the voted round; reruns count rounds up from 1; with --rerun-mode sequential each rerun is replica 0 of 1).
stdin is read once and given to every replica; a terminal is not shared (replicas read /dev/null).
";

#[derive(Debug, Parser)]
#[command(
    name = "tmr",
    version,
    about = "Run a command as N replicas, majority-vote their exit status and output, and deliver the winner.",
    long_about = None,
    after_help = format!("{EXAMPLES}\n{}", exit::TABLE),
    override_usage = "tmr [OPTIONS] [--] COMMAND [ARGS]...",
)]
struct RunArgs {
    /// Number of replicas (1 or more). An even number detects disagreement but cannot always decide it.
    #[arg(short = 'n', long = "replicas", value_name = "N", default_value_t = 3, value_parser = parse_replicas)]
    replicas: usize,

    /// Run replicas one after another instead of in parallel.
    #[arg(long)]
    sequential: bool,

    /// Which results must agree, comma-separated [default: exit,stdout; with --mem: exit,stdout,mem].
    #[arg(long, value_name = "FIELDS", value_enum, value_delimiter = ',')]
    compare: Vec<Field>,

    /// Regex blanked out of each compared line before voting (repeatable). Delivered output stays raw.
    #[arg(long = "mask", value_name = "REGEX", value_parser = parse_mask)]
    masks: Vec<Regex>,

    /// Per-replica limit: a duration (500ms, 30s, 2m, 1h; at most 365d) or Nx, a multiple of the finished
    /// majority's median wall time (1 < N <= 1000; floor 1s). A timed-out replica gets SIGTERM, then
    /// SIGKILL 2s later.
    #[arg(long, value_name = "DURATION|Nx", value_parser = parse_timeout)]
    timeout: Option<Timeout>,

    /// Exit 121 when any replica disagreed, even if a majority won.
    #[arg(long)]
    strict: bool,

    /// Deliver nothing until every replica has finished and the vote is in; then the winner's output
    /// whole, or nothing without a majority. For output that goes to a file which must never hold a
    /// partial result. By default, output a majority agrees on is delivered as it arrives.
    #[arg(long)]
    buffered: bool,

    /// With --buffered or --sequential: the most output tmr keeps on disk until the vote, per stream
    /// (K, M, G, T). Output held back until the vote cannot be cut short, and an endless command would
    /// otherwise fill the disk: past the limit, a majority's output stops the run; a single replica's is
    /// only hashed, so it can still be outvoted. Either way, a winner's output that was not kept is not
    /// delivered, and tmr exits 125 [default: 1G].
    #[arg(long, value_name = "SIZE", value_parser = parse_buffer_limit)]
    buffer_limit: Option<u64>,

    /// No summary when all replicas agree.
    #[arg(short, long)]
    quiet: bool,

    /// Write the report to FILE instead of stderr.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    format: FormatArg,

    /// Also vote on each replica's writable memory at exit, page by page (runs replicas under ptrace).
    #[arg(long, help_heading = "Memory voting")]
    mem: bool,

    /// Determinization steps for --mem, comma-separated: aslr, at-random, rseq, getrandom, tid, stack,
    /// clock and urandom (input replication: every replica of a round reads the clock and /dev/urandom
    /// answers the first one got), tsc (rdtsc trapping: it nearly stops the replicas' clocks, so only on
    /// request), all (every
    /// step including tsc), none. Default: every step but tsc. Add strict-threads to vote the memory of
    /// multithreaded replicas too (by default they abstain: scheduling makes their heaps differ).
    #[arg(long, value_name = "STEPS", default_value = DEFAULT_DET, value_parser = parse_det, help_heading = "Memory voting")]
    mem_det: Det,

    /// Checkpoint the replicas by injected forks about every INTERVAL (at least 10ms); resume its last
    /// checkpoint in place of a replica that crashes or hangs, if it did no I/O since. Single-threaded
    /// replicas without child processes only. Runs replicas under the monitor.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_checkpoint, help_heading = "Checkpoints")]
    checkpoint: Option<std::time::Duration>,

    /// With --checkpoint: take each checkpoint at the same system call count in every replica and vote
    /// on their memory there (only pages written since the last one are hashed); a replica outvoted is
    /// rolled back to its last good checkpoint. Code that makes no system call is checkpointed only at
    /// its next one, so CPU-bound loops get few checkpoints.
    #[arg(long, requires = "checkpoint", help_heading = "Checkpoints")]
    epoch_vote: bool,

    /// With --epoch-vote: how a replica outvoted at an epoch is brought back. rollback: resume its last
    /// good checkpoint (refused if it did I/O since); scrub: copy the majority's differing pages and
    /// registers into it in place, as ECC scrubbing does, so it re-runs nothing (where that cannot work,
    /// e.g. its instruction pointer differs, it is rolled back); auto (the default): rollback where it is
    /// allowed, else scrub.
    #[arg(long, value_name = "HOW", value_parser = parse_recover, requires = "epoch_vote", help_heading = "Checkpoints")]
    recover: Option<crate::epoch::Recover>,

    /// Exec the command once, stop it at its entry point (after the dynamic loader), and fork the other
    /// replicas there: they start with byte-identical memory, so --mem needs no ASLR/AT_RANDOM pinning.
    /// Each fork gets its own pipes, process group and TMR_REPLICA. Parallel replicas only (at most 10),
    /// not with --inject, --checkpoint or --launcher slurm; x86-64 only (ptrace). A wrapper script that
    /// execs the real program (a pyenv shim) is forked before that exec, which then loads afresh.
    #[arg(long, help_heading = "Fork after load")]
    fork: bool,

    /// Inject a fault into one replica of the voted round, e.g. flip:replica=1,after=50ms,region=heap
    /// or reg:reg=rip,after=20ms (keys: replica, after=DUR|exit, region=heap|stack|data|anon|any, bits,
    /// page, offset, bit, reg, seed; open choices are drawn from the seed). Runs replicas under the monitor.
    #[arg(long, value_name = "SPEC", value_parser = parse_inject, help_heading = "Fault injection")]
    inject: Option<InjectSpec>,

    /// Most reruns spent to classify a disagreement or a unanimous failure (0: no reruns; at most 100000).
    /// Default: enough to bound a flake's rate below --min-flake-rate (29 at the defaults).
    #[arg(long, value_name = "R", value_parser = parse_reruns, help_heading = "Classification")]
    reruns: Option<usize>,

    /// Confidence of the reported intervals and bounds.
    #[arg(long, value_name = "C", default_value_t = 0.95, value_parser = parse_confidence, help_heading = "Classification")]
    confidence: f64,

    /// The smallest flake rate the default rerun budget must not mistake for a one-off fault (at least
    /// 0.0001).
    #[arg(long, value_name = "P", default_value_t = 0.1, value_parser = parse_rate, help_heading = "Classification")]
    min_flake_rate: f64,

    /// Most time spent on reruns: a duration (30s, 5m) or Kx, K times the voted round's wall time (at
    /// least 250ms; 0x: no reruns). Reruns end when this or --reruns runs out. The default keeps a
    /// failing run within about 3x its own time; raise it for a stronger claim.
    #[arg(long, value_name = "DURATION|Kx", default_value = "2x", value_parser = parse_time_budget, help_heading = "Classification")]
    rerun_budget: crate::classify::TimeBudget,

    /// Reruns as rounds of N parallel replicas, like the voted round (default), or one at a time
    /// (default with --sequential). Every rerun is a sample.
    #[arg(long, value_enum, help_heading = "Classification")]
    rerun_mode: Option<RerunModeArg>,

    /// Exit 122 when the run is classified as one of these (comma-separated): none, transient,
    /// nondeterministic, deterministic.
    #[arg(long, value_name = "CLASSES", value_parser = parse_class, value_delimiter = ',', help_heading = "Classification")]
    fail_on: Vec<Class>,

    /// Write a JUnit XML report (one test case; flaky runs as flakyFailure) to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Classification")]
    junit: Option<PathBuf>,

    /// Append a Markdown summary to $GITHUB_STEP_SUMMARY (default when GITHUB_ACTIONS=true).
    #[arg(long, help_heading = "Classification")]
    github: bool,

    #[command(flatten)]
    launch: LaunchArgs,

    /// The command to run, and its arguments (passed through untouched).
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Field {
    Exit,
    Stdout,
    Stderr,
    Mem,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RerunModeArg {
    Sequential,
    Parallel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Human,
    Json,
}

fn parse_replicas(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("'{}' is not a number", s.escape_debug()))?;
    if !(1..=256).contains(&n) {
        return Err(format!("must be between 1 and 256, got {n}"));
    }
    Ok(n)
}

fn parse_inject(s: &str) -> Result<InjectSpec, String> {
    InjectSpec::parse(s)
}

/// Every determinization step but rdtsc trapping, which would nearly stop the replicas' clocks.
const DEFAULT_DET: &str = "aslr,at-random,rseq,getrandom,tid,stack,clock,urandom";

/// A checkpoint interval: a duration of at least 10ms (the remote fork must not dominate the run).
fn parse_checkpoint(text: &str) -> Result<std::time::Duration, String> {
    let d = crate::config::parse_duration(text)?;
    if d < std::time::Duration::from_millis(10) {
        return Err(format!("checkpoint interval '{}' is below 10ms", text.escape_debug()));
    }
    Ok(d)
}

fn parse_recover(s: &str) -> Result<crate::epoch::Recover, String> {
    crate::epoch::Recover::parse(s)
}

fn parse_det(s: &str) -> Result<Det, String> {
    Det::parse(s)
}

fn parse_class(s: &str) -> Result<Class, String> {
    parse_classes(s).map(|v| v[0])
}

fn parse_confidence(s: &str) -> Result<f64, String> {
    let c: f64 = s.parse().map_err(|_| format!("'{}' is not a number", s.escape_debug()))?;
    if !(0.5..1.0).contains(&c) {
        return Err(format!("must be at least 0.5 and below 1, got {c}"));
    }
    Ok(c)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("'{}' is not a number", s.escape_debug()))?;
    if !(MIN_FLAKE_RATE..1.0).contains(&p) {
        return Err(format!("must be at least {MIN_FLAKE_RATE} and below 1, got {}", s.escape_debug()));
    }
    Ok(p)
}

fn parse_reruns(s: &str) -> Result<usize, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{}' is not a count", s.escape_debug()));
    }
    match s.parse::<usize>() {
        Ok(n) if n <= MAX_RERUNS => Ok(n),
        _ => Err(format!("must be at most {MAX_RERUNS}, got {s}")),
    }
}

fn parse_mask(s: &str) -> Result<Regex, String> {
    // regex's own message spans several lines (the pattern, a caret, the reason): keep the reason.
    Regex::new(s).map_err(|e| {
        let text = e.to_string();
        let reason = text.lines().rev().find_map(|l| l.trim().strip_prefix("error: ")).unwrap_or(text.trim());
        format!("invalid regex: {}", reason.escape_debug())
    })
}

/// What the caller should do after parsing.
pub enum Parsed {
    Run(Config),
    Test(crate::testrun::TestConfig),
    Hunt(HuntConfig),
    Campaign(CampaignConfig),
    /// `tmr record`: run once, write what happened to `out`.
    Record {
        argv: Vec<OsString>,
        out: PathBuf,
        max_output: u64,
    },
    /// `tmr vote`: vote on record files.
    Vote {
        files: Vec<PathBuf>,
        on: crate::record::VoteOn,
        strict: bool,
        quiet: bool,
    },
    /// `--help`, `--version` or an error: print `text` to stdout (code 0) or stderr, and exit with `code`.
    Exit {
        text: String,
        code: i32,
    },
}

/// `tmr hunt …` is hunt mode; anything else is a command to run (`tmr -- hunt` runs a program named hunt).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Parsed {
    let args: Vec<OsString> = args.into_iter().collect();
    let hunt = args.get(1).is_some_and(|a| a == "hunt");
    let campaign = args.get(1).is_some_and(|a| a == "campaign");
    let test = args.get(1).is_some_and(|a| a == "test");
    let sub = args.get(1).and_then(|a| a.to_str()).filter(|a| matches!(*a, "record" | "vote"));
    let parsed = if let Some(sub) = sub {
        let name = format!("tmr {sub}");
        let rest = std::iter::once(OsString::from(&name)).chain(args[2..].iter().cloned());
        let parsed = if sub == "record" {
            RecordArgs::try_parse_from(rest).map(RecordArgs::into_parsed)
        } else {
            VoteArgs::try_parse_from(rest).and_then(VoteArgs::into_parsed)
        };
        return match parsed {
            Ok(p) => p,
            Err(e) => exit_for(e, &name),
        };
    } else if test {
        let rest = std::iter::once(OsString::from("tmr test")).chain(args[2..].iter().cloned());
        TestArgs::try_parse_from(rest).and_then(|a| a.into_config()).map(Parsed::Test)
    } else if campaign {
        let rest = std::iter::once(OsString::from("tmr campaign")).chain(args[2..].iter().cloned());
        CampaignArgs::try_parse_from(rest).and_then(|a| a.into_config()).map(Parsed::Campaign)
    } else if hunt {
        let rest = std::iter::once(OsString::from("tmr hunt")).chain(args[2..].iter().cloned());
        HuntArgs::try_parse_from(rest).and_then(|a| a.into_config()).map(Parsed::Hunt)
    } else {
        RunArgs::try_parse_from(args).and_then(|a| a.into_config()).map(Parsed::Run)
    };
    match parsed {
        Ok(Parsed::Run(c)) if c.inject.as_ref().and_then(|s| s.replica).is_some_and(|r| r >= c.replicas) => {
            Parsed::Exit {
                text: format!(
                    "tmr: --inject names replica {} but there are only {} (0..{})\n",
                    c.inject.as_ref().and_then(|s| s.replica).unwrap_or(0),
                    c.replicas,
                    c.replicas - 1
                ),
                code: exit::TMR_ERROR,
            }
        }
        Ok(Parsed::Run(c)) if matches!(c.timeout, Some(Timeout::Relative(_))) && c.replicas < 3 => {
            Parsed::Exit {
                text: format!(
                "tmr: --timeout Nx is a multiple of the finished majority's median wall time, and with {} \
                 replica(s) no majority finishes before the others: give a duration (e.g. --timeout 30s) or \
                 at least 3 replicas\n",
                c.replicas
            ),
                code: exit::TMR_ERROR,
            }
        }
        Ok(p) => p,
        Err(e) => {
            let name = if test {
                "tmr test"
            } else if hunt {
                "tmr hunt"
            } else if campaign {
                "tmr campaign"
            } else {
                "tmr"
            };
            exit_for(e, name)
        }
    }
}

/// `--help`/`--version` (exit 0, on stdout) or a usage error (one line, exit 125).
fn exit_for(e: clap::Error, name: &str) -> Parsed {
    let code = match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
        _ => exit::TMR_ERROR,
    };
    let text = if code == 0 { e.render().to_string() } else { one_line_error(&e, name) };
    Parsed::Exit { text, code }
}

/// clap's error as one line saying what is wrong, and one pointing to --help. clap spreads its messages
/// over several lines (the missing arguments, the possible values, a tip) before its usage block: those
/// lines are kept, joined; the usage block is dropped; a value with control characters is escaped.
fn one_line_error(e: &clap::Error, name: &str) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    let what = match e.kind() {
        ErrorKind::MissingRequiredArgument
            if context(ContextKind::InvalidArg).is_some_and(|a| a.contains("<COMMAND>")) =>
        {
            format!("no command given: {name} [OPTIONS] [--] COMMAND [ARGS]...")
        }
        ErrorKind::ValueValidation => match (
            context(ContextKind::InvalidArg),
            context(ContextKind::InvalidValue),
            std::error::Error::source(e),
        ) {
            (Some(arg), Some(value), Some(why)) => {
                format!("invalid value '{}' for '{arg}': {why}", value.escape_debug())
            }
            _ => rendered_lines(e),
        },
        ErrorKind::InvalidValue => match (
            context(ContextKind::InvalidArg),
            context(ContextKind::InvalidValue),
            context(ContextKind::ValidValue),
        ) {
            (Some(arg), Some(value), Some(valid)) => {
                format!("invalid value '{}' for '{arg}': possible values: {valid}", value.escape_debug())
            }
            _ => rendered_lines(e),
        },
        _ => rendered_lines(e),
    };
    format!("tmr: {}\ntmr: try '{name} --help'\n", crate::report::one_line(&what))
}

/// clap's rendered message up to its usage block, as one line. Values quoted in it are escaped first, so
/// that a newline inside one is not taken for the end of a line.
fn rendered_lines(e: &clap::Error) -> String {
    let mut rendered = e.render().to_string();
    for (_, value) in e.context() {
        let values = match value {
            clap::error::ContextValue::String(s) => vec![s.as_str()],
            clap::error::ContextValue::Strings(v) => v.iter().map(String::as_str).collect(),
            _ => vec![],
        };
        for v in values.into_iter().filter(|v| v.contains(char::is_control)) {
            rendered = rendered.replace(v, &crate::report::one_line(v));
        }
    }
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    // A line ending in ':' introduces the next ("…were not provided:" / "--output <FILE>").
    let mut text = String::new();
    for l in lines {
        if !text.is_empty() {
            text.push_str(if text.ends_with(':') { " " } else { "; " });
        }
        text.push_str(l);
    }
    let text = text.trim_start_matches("error: ");
    if text.is_empty() {
        "invalid arguments".into()
    } else {
        text.to_string()
    }
}

impl RunArgs {
    fn into_config(self) -> Result<Config, clap::Error> {
        // --mem votes memory unless --compare says otherwise; --compare mem needs --mem's monitor.
        let mut compare = if self.compare.is_empty() {
            compare_of(&[Field::Exit, Field::Stdout])
        } else {
            compare_of(&self.compare)
        };
        if self.mem && self.compare.is_empty() {
            compare.mem = true;
        }
        if self.fork {
            fork_refusal(&self)?;
        }
        if self.buffer_limit.is_some() && !self.buffered && !self.sequential {
            // Streamed output keeps nothing on disk: a limit there would silently mean nothing.
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                "--buffer-limit applies only with --buffered or --sequential (streamed output keeps nothing on disk)\n",
            ));
        }
        let mem = (self.mem || compare.mem || self.inject.is_some() || self.checkpoint.is_some())
            .then_some(self.mem_det);
        let inject = self.inject.map(|mut spec| {
            spec.replica.get_or_insert_with(|| Rng::new(spec.seed).below(self.replicas as u64) as usize);
            spec
        });
        let reruns = match self.reruns {
            Some(r) => r,
            None => default_reruns(self.min_flake_rate, self.confidence)?,
        };
        Ok(Config {
            command: self.command,
            replicas: self.replicas,
            sequential: self.sequential,
            compare,
            masks: self.masks,
            timeout: self.timeout,
            strict: self.strict,
            buffered: self.buffered,
            buffer_limit: self.buffer_limit.unwrap_or(DEFAULT_BUFFER_LIMIT),
            quiet: self.quiet,
            output: self.output,
            format: format(self.format),
            mem,
            inject,
            checkpoint: self.checkpoint,
            epoch_vote: self.epoch_vote,
            recover: self.recover,
            fork: self.fork,
            classify: ClassifyConfig {
                reruns,
                confidence: self.confidence,
                min_flake_rate: self.min_flake_rate,
                time_budget: self.rerun_budget,
                rerun_mode: match self.rerun_mode {
                    Some(RerunModeArg::Sequential) => RerunMode::Sequential,
                    Some(RerunModeArg::Parallel) => RerunMode::Parallel,
                    None if self.sequential => RerunMode::Sequential,
                    None => RerunMode::Parallel,
                },
                fail_on: self.fail_on,
                junit: self.junit,
                github: self.github || std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true"),
            },
            launch: self.launch.config(),
        })
    }
}

/// Why `--fork` cannot be combined with what else was asked, if it cannot.
fn fork_refusal(args: &RunArgs) -> Result<(), clap::Error> {
    let why = if !crate::trace::monitor::SUPPORTED {
        Some("--fork needs an x86-64 build of tmr".to_string())
    } else if args.inject.is_some() || args.checkpoint.is_some() {
        Some("--fork does not combine with --inject or --checkpoint yet".into())
    } else if args.sequential {
        Some("--fork needs parallel replicas: one exec'd replica forks the others at once".into())
    } else if matches!(args.launch.launcher, LauncherArg::Slurm) {
        Some("--fork cannot fork replicas onto other nodes: not with --launcher slurm".into())
    } else if args.replicas > crate::config::FORK_MAX_REPLICAS {
        Some(format!(
            "--fork runs at most {} replicas (each fork's TMR_REPLICA digit is rewritten in place)",
            crate::config::FORK_MAX_REPLICAS
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, format!("{why}\n"))),
        None => Ok(()),
    }
}

/// The rerun budget that bounds a flake's rate below `rate` at `confidence`, refused past [`MAX_RERUNS`]
/// (a rate near the floor at a confidence near 1 would ask for more).
fn default_reruns(rate: f64, confidence: f64) -> Result<usize, clap::Error> {
    let n = crate::stats::runs_to_bound(rate, confidence);
    match usize::try_from(n) {
        Ok(n) if n <= MAX_RERUNS => Ok(n),
        _ => Err(clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!(
                "--min-flake-rate {rate} at --confidence {confidence} needs {n} reruns, more than the \
                 {MAX_RERUNS} allowed: raise the rate, lower the confidence, or give --reruns\n"
            ),
        )),
    }
}

fn format(f: FormatArg) -> Format {
    match f {
        FormatArg::Human => Format::Human,
        FormatArg::Json => Format::Json,
    }
}

fn compare_of(fields: &[Field]) -> Compare {
    Compare {
        exit: fields.contains(&Field::Exit),
        stdout: fields.contains(&Field::Stdout),
        stderr: fields.contains(&Field::Stderr),
        mem: fields.contains(&Field::Mem),
    }
}

const TEST_EXAMPLES: &str = "\
EXAMPLES
  tmr test -- cargo test
      libtest, auto-detected
  tmr test -- pytest -q tests/
      pytest (tmr adds a per-replica --junitxml)
  tmr test -- bats test/
      TAP (bats, prove)
  tmr test --junit-in 'out/{r}/*.xml' -- ./run-suite.sh
      any runner that writes JUnit XML ({r}: the replica, also in $TMR_REPLICA)
  tmr test --junit report.xml --github -- cargo test
      CI: nextest-style JUnit, GitHub annotations and step summary
  tmr test --timeout 5m --fail-on nondeterministic -- go test ./...
      fail CI on any flaky test too

Each replica runs the whole suite, in parallel. Every test's outcome is voted across the replicas, so the order, timings and seeds in the runner's output do not matter. Failing and disagreeing tests, and only those, are rerun alone through the runner's own filter (cargo test -- --exact NAME, pytest NODEID, bats -f, go test -run) within --reruns per test and --rerun-budget overall, and classed: flaky (nondeterministic, with its failure rate and interval), deterministic (failed every run, with a bound), transient (never failed again).
The runners' own output is not shown while they run (replicas interleave): on a terminal a progress line, elsewhere a line per phase. The summary names the flaky and failing tests with their first lines of output; --keep DIR keeps every failing run's section.
Exit status: 0 when every test's voted outcome is a pass or a skip and no test's class is in --fail-on; 1 when a test failed (or the runners did not finish); 122 when only --fail-on matched; 125 on tmr's own errors; 127/126 when the runner is not found/not executable; 129/130/143 when stopped by a signal.
";

/// `tmr test`: vote per test across replicas of a suite, rerun only the tests that fail or disagree.
#[derive(Debug, Parser)]
#[command(
    name = "tmr test",
    about = "Run a test suite as N replicas, vote per test, rerun only the failing and disagreeing tests alone, name the flaky ones.",
    after_help = TEST_EXAMPLES,
    override_usage = "tmr test [OPTIONS] [--] COMMAND [ARGS]...",
)]
struct TestArgs {
    /// The runner (libtest, pytest, tap, junit, go); detected from the command when not given.
    #[arg(long, value_name = "NAME", value_parser = parse_runner)]
    runner: Option<crate::suite::Runner>,

    /// Where each replica's runner writes JUnit XML: a path whose last component may hold * and ?, with
    /// {r} for the replica number (the runner sees it as $TMR_REPLICA). Implies --runner junit.
    #[arg(long, value_name = "PATTERN", value_parser = parse_junit_in)]
    junit_in: Option<String>,

    /// Number of replicas of the suite (1 or more).
    #[arg(short = 'n', long = "replicas", value_name = "N", default_value_t = 3, value_parser = parse_replicas)]
    replicas: usize,

    /// Per-run limit (a replica of the suite, or a rerun of one test): a duration or Nx (see tmr --help).
    /// The test a killed replica was in is named when the runner's format says which tests started.
    #[arg(long, value_name = "DURATION|Nx", value_parser = parse_timeout)]
    timeout: Option<Timeout>,

    /// Most reruns of each failing or disagreeing test (0: no reruns; at most 100000) [default: 29, enough
    /// to bound a 10% flake]. Given, a flaky test is rerun this many times (within --rerun-budget) to
    /// measure its failure rate; by default its reruns stop once it is known to be flaky.
    #[arg(long, value_name = "R", value_parser = parse_reruns)]
    reruns: Option<usize>,

    /// Most time spent on reruns, all tests together: a duration or Kx, K times the voted round's wall
    /// time (at least 250ms; 0x: no reruns).
    #[arg(long, value_name = "DURATION|Kx", default_value = "2x", value_parser = parse_time_budget)]
    rerun_budget: crate::classify::TimeBudget,

    /// Confidence of the reported intervals and bounds.
    #[arg(long, value_name = "C", default_value_t = 0.95, value_parser = parse_confidence)]
    confidence: f64,

    /// Exit 122 when any test is classed as one of these (comma-separated): none, transient,
    /// nondeterministic, deterministic.
    #[arg(long, value_name = "CLASSES", value_parser = parse_class, value_delimiter = ',')]
    fail_on: Vec<Class>,

    /// Write a nextest-style JUnit XML report (one test case per test) to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,

    /// Write the JSON report (schema tmr-test-report) to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// GitHub annotations on stdout and a summary table in $GITHUB_STEP_SUMMARY (default when
    /// GITHUB_ACTIONS=true).
    #[arg(long)]
    github: bool,

    /// Keep every failing or dissenting run's output section in DIR (and a replica's whole output when
    /// its runner did not finish), with an index.tsv. DIR must be new or empty. The summary, JSON and
    /// JUnit show the output of each test's first 5 failing reruns; DIR has every one.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,

    /// No progress and no summary when the suite passes.
    #[arg(short, long)]
    quiet: bool,

    #[command(flatten)]
    launch: LaunchArgs,

    /// The test command, and its arguments.
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

fn parse_runner(s: &str) -> Result<crate::suite::Runner, String> {
    crate::suite::Runner::from_name(s)
        .ok_or_else(|| "possible values: libtest, pytest, tap, junit, go".into())
}

fn parse_junit_in(s: &str) -> Result<String, String> {
    if !s.contains("{r}") {
        return Err("needs {r} (the replica number): replicas must not write the same file".into());
    }
    if std::path::Path::new(s).parent().is_some_and(|d| d.to_string_lossy().contains(['*', '?'])) {
        return Err("* and ? only in the file name, not in directories".into());
    }
    Ok(s.to_string())
}

impl TestArgs {
    fn into_config(self) -> Result<crate::testrun::TestConfig, clap::Error> {
        Ok(crate::testrun::TestConfig {
            command: self.command,
            runner: self.runner,
            junit_in: self.junit_in,
            replicas: self.replicas,
            timeout: self.timeout,
            reruns: match self.reruns {
                Some(r) => r,
                None => default_reruns(0.1, self.confidence)?,
            },
            measure: self.reruns.is_some(),
            time_budget: self.rerun_budget,
            confidence: self.confidence,
            fail_on: self.fail_on,
            junit: self.junit,
            json: self.json,
            github: self.github || std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true"),
            keep: self.keep,
            quiet: self.quiet,
            launch: self.launch.config(),
        })
    }
}

const CAMPAIGN_EXAMPLES: &str = "\
EXAMPLES
  tmr campaign --trials 1000 --seed 7 -- ./solver x.dat
  tmr campaign --trials 200 --inject flip:region=heap,bits=2 -- sort big.txt
  tmr campaign --trials 100 --inject reg:reg=any -- python3 job.py

Each trial runs N replicas with one fault in one replica (replica, time, page, bit drawn from the seed; \
the time uniformly over the golden run's wall time unless the spec has after=).
Categories: masked, detected-corrected, crash, hang (all corrected by the vote), escaped (the voted \
result differs from the golden run), not-injected (the replica ended before the fault's time).
Replay a trial with `tmr --inject <spec from the JSON trial log> -- CMD`.

Several faults, recovery on and off (issue 12):
  tmr campaign --faults 2 --compare-recovery 20ms --trials 50 -- ./solver x.dat
puts K faults per trial into K different replicas, the j-th at a time drawn in the j-th of K slices of the golden run (from the first checkpoint on), and runs each trial with checkpoints and rollback (--checkpoint I alone: only with) and without, same faults. Each trial is corrected, no-majority or escaped by what the vote delivered; each fault is masked, recovered, memory-only, wrong-result, crash or hang by its replica's final state.
Exit status: 0 when nothing escaped (no-majority is not an escape), 1 otherwise; with --compare-recovery, the recovery-off column is the baseline and only the recovery-on one counts.
";

/// `tmr campaign`: measure, fault by fault, that the vote masks injected bit flips.
#[derive(Debug, Parser)]
#[command(
    name = "tmr campaign",
    about = "Fault-injection campaign: a golden run, then voted rounds with injected faults (one, or --faults K), tallied.",
    after_help = CAMPAIGN_EXAMPLES,
    override_usage = "tmr campaign [OPTIONS] [--] COMMAND [ARGS]...",
)]
struct CampaignArgs {
    /// Number of trials (voted rounds with one fault each, or --faults K; at most 100000).
    #[arg(long, value_name = "T", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_TRIALS))]
    trials: u64,

    /// Seed of every random choice: the same seed draws the same replicas, pages and bits; fault times
    /// are drawn as fractions of the golden run's measured wall time, so they vary with it (each trial's
    /// exact spec is in the JSON trial log for replay).
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,

    /// Replicas per trial.
    #[arg(short = 'n', long = "replicas", value_name = "N", default_value_t = 3, value_parser = parse_replicas)]
    replicas: usize,

    /// Fault template (see tmr --help, --inject); default: one random bit anywhere in writable memory.
    #[arg(long, value_name = "SPEC", default_value = "flip:region=any,bits=1", value_parser = parse_inject_text)]
    inject: String,

    /// A replica running longer than this is hung [default: 10x the golden run, at least 2s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,

    /// Also vote on memory: a faulty replica whose memory diverged counts as detected, not masked.
    #[arg(long)]
    mem: bool,

    /// Determinization steps of the monitor (see tmr --help, --mem-det).
    #[arg(long, value_name = "STEPS", default_value = DEFAULT_DET, value_parser = parse_det)]
    mem_det: Det,

    /// Write the report to FILE instead of stderr.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    format: FormatArg,

    /// Faults per trial, each in a different replica at a different time (1 to N): times are drawn
    /// each in its own slice of the golden run's wall time (after the first checkpoint with recovery).
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    faults: u64,

    /// Recovery on: checkpoint every replica every INTERVAL (as tmr --checkpoint) and roll back a
    /// replica that crashes or hangs.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_checkpoint, conflicts_with = "compare_recovery")]
    checkpoint: Option<std::time::Duration>,

    /// Run every trial twice with the same faults, recovery on (--checkpoint INTERVAL) and off, and
    /// tabulate both side by side.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_checkpoint)]
    compare_recovery: Option<std::time::Duration>,

    /// The command to run, and its arguments (passed through untouched).
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

fn parse_inject_text(s: &str) -> Result<String, String> {
    InjectSpec::parse(s).map(|_| s.to_string())
}

impl CampaignArgs {
    fn into_config(self) -> Result<CampaignConfig, clap::Error> {
        let inject = InjectSpec::parse(&self.inject).expect("validated by clap");
        if inject.replica.is_some_and(|r| r >= self.replicas) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "--inject names replica {} but there are only {}\n",
                    inject.replica.unwrap_or(0),
                    self.replicas
                ),
            ));
        }
        let faults = self.faults as usize;
        let refuse =
            |message: String| Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, message));
        if faults > self.replicas {
            return refuse(format!(
                "--faults {faults}: each fault goes into a different replica, and there are {}\n",
                self.replicas
            ));
        }
        if faults > 1 && inject.replica.is_some() {
            return refuse(format!(
                "--inject replica={} with --faults {faults}: the {faults} replicas are drawn per trial\n",
                inject.replica.unwrap_or(0)
            ));
        }
        Ok(CampaignConfig {
            faults,
            checkpoint: self.checkpoint.or(self.compare_recovery),
            compare_recovery: self.compare_recovery.is_some(),
            command: self.command,
            trials: self.trials as usize,
            seed: self.seed,
            replicas: self.replicas,
            inject,
            inject_has_time: self.inject.contains("after="),
            timeout: self.timeout,
            mem: self.mem,
            det: self.mem_det,
            output: self.output,
            format: format(self.format),
        })
    }
}

const HUNT_EXAMPLES: &str = "\
EXAMPLES
  tmr hunt --runs 500 --jobs 4 -- cargo test -q my_flaky_test
  tmr hunt --until-fail --duration 10m --keep failures/ -- ./integration.sh
  tmr hunt --runs 1000 --compare exit,stdout --mask 'took [0-9.]+s' -- ./job

A run fails when it does not exit 0 (or, with --compare including stdout/stderr, when its output \
differs from the lowest-numbered passing run's).
Exit status: 0 when every run passed, 1 when any failed, 125 on tmr's own errors, 130/143/129 when \
stopped by a signal.
";

/// `tmr hunt`: run a command many times, one execution each, and measure how often it fails.
#[derive(Debug, Parser)]
#[command(
    name = "tmr hunt",
    about = "Hunt a flaky command: run it many times, count distinct outcomes, estimate its failure rate.",
    after_help = HUNT_EXAMPLES,
    override_usage = "tmr hunt [OPTIONS] [--] COMMAND [ARGS]...",
)]
struct HuntArgs {
    /// Number of runs (at most 1000000).
    #[arg(long, value_name = "K", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_HUNT_RUNS))]
    runs: u64,

    /// Runs at a time (default: the number of CPUs).
    #[arg(short = 'j', long, value_name = "J", value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: Option<u64>,

    /// Stop after the first failing run.
    #[arg(long)]
    until_fail: bool,

    /// Start no new run after this long (500ms, 30s, 10m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<std::time::Duration>,

    /// Keep failing runs' stdout and stderr in DIR, with an index.tsv.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,

    /// Which results define an outcome, comma-separated (exit, stdout, stderr); outputs are compared
    /// with the lowest-numbered passing run's. (`mem` is refused: hunt runs are not traced.)
    #[arg(
        long,
        value_name = "FIELDS",
        value_enum,
        value_delimiter = ',',
        default_value = "exit",
        hide_possible_values = true
    )]
    compare: Vec<Field>,

    /// Regex blanked out of each compared line (repeatable).
    #[arg(long = "mask", value_name = "REGEX", value_parser = parse_mask)]
    masks: Vec<Regex>,

    /// Per-run limit: a duration or Nx (a multiple of the median run's wall time).
    #[arg(long, value_name = "DURATION|Nx", value_parser = parse_timeout)]
    timeout: Option<Timeout>,

    /// Confidence of the failure-rate interval.
    #[arg(long, value_name = "C", default_value_t = 0.95, value_parser = parse_confidence)]
    confidence: f64,

    /// Write the report to FILE instead of stderr.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    format: FormatArg,

    #[command(flatten)]
    launch: LaunchArgs,

    /// The command to run, and its arguments (passed through untouched).
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

/// Where replicas run; shared by every mode that runs the command (flattened into its arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct LaunchArgs {
    /// Where replicas run: on this machine, or each as a Slurm job step (srun) on a node of its own.
    #[arg(long, value_enum, default_value = "local", help_heading = "Launcher")]
    launcher: LauncherArg,

    /// With --launcher slurm: one node per concurrent replica (default; a note says when the cluster has
    /// too few), or wherever Slurm packs them.
    #[arg(long, value_enum, default_value = "nodes", help_heading = "Launcher")]
    spread: SpreadArg,

    /// An option for Slurm's salloc and srun, one value each, e.g. --slurm-opt='-p debug',
    /// --slurm-opt=--account=x, --slurm-opt=--time=10 (repeatable).
    #[arg(long = "slurm-opt", value_name = "OPT", allow_hyphen_values = true, help_heading = "Launcher")]
    slurm_opts: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LauncherArg {
    Local,
    Slurm,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SpreadArg {
    Nodes,
    Any,
}

impl LaunchArgs {
    /// The launch configuration, for any mode's config.
    pub fn config(&self) -> crate::launch::LaunchConfig {
        use crate::launch::{LaunchConfig, LauncherKind, Spread};
        LaunchConfig {
            kind: match self.launcher {
                LauncherArg::Local => LauncherKind::Local,
                LauncherArg::Slurm => LauncherKind::Slurm,
            },
            spread: match self.spread {
                SpreadArg::Nodes => Spread::Nodes,
                SpreadArg::Any => Spread::Any,
            },
            slurm_opts: self.slurm_opts.clone(),
        }
    }
}

impl HuntArgs {
    fn into_config(self) -> Result<HuntConfig, clap::Error> {
        if self.compare.contains(&Field::Mem) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                "--compare mem: hunt runs are not traced, so they have no memory to compare; compare exit, \
                 stdout, stderr (vote memory with tmr --mem)\n",
            ));
        }
        Ok(HuntConfig {
            command: self.command,
            runs: self.runs as usize,
            jobs: self
                .jobs
                .map(|j| j as usize)
                .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
            until_fail: self.until_fail,
            duration: self.duration,
            keep: self.keep,
            compare: compare_of(&self.compare),
            masks: self.masks,
            timeout: self.timeout,
            confidence: self.confidence,
            output: self.output,
            format: format(self.format),
            launch: self.launch.config(),
        })
    }
}

/// `tmr record`: one run on this machine, written down for `tmr vote`.
#[derive(Parser)]
#[command(
    name = "tmr record",
    about = "Run a command once, as `time` would, and record its outcome and output for `tmr vote`.",
    after_help = "EXAMPLES\n  tmr record -o run-$(hostname).json -- make test\n\n\
The command's output passes through live; its exit code is tmr's. The record holds the exit status, \
each stream's length and blake3 digest, and the streams themselves when they fit --max-output.",
    override_usage = "tmr record -o FILE [OPTIONS] [--] COMMAND [ARGS]..."
)]
struct RecordArgs {
    /// Where to write the record (JSON).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    out: PathBuf,

    /// Output kept per stream, in bytes (K, M, G suffixes); beyond it only the digest is recorded, and
    /// `tmr vote` cannot deliver it.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_size)]
    max_output: u64,

    /// The command to run once, and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

impl RecordArgs {
    fn into_parsed(self) -> Parsed {
        Parsed::Record { argv: self.command, out: self.out, max_output: self.max_output }
    }
}

/// `tmr vote`: vote on the records of several machines.
#[derive(Parser)]
#[command(
    name = "tmr vote",
    about = "Majority-vote records written by `tmr record` on several machines; deliver the winner's output.",
    after_help = format!("EXAMPLES\n  tmr vote run-a.json run-b.json run-c.json\n\n\
Records must come from the same command and tmr version. Without reruns a disagreement cannot be \
classified: rerun it with `tmr hunt` on the dissenting machine.\n\n{}", exit::VOTE_TABLE),
    override_usage = "tmr vote [OPTIONS] RECORD RECORD...",
)]
struct VoteArgs {
    /// What defines an outcome, comma-separated (exit, stdout, stderr; records hold no memory).
    #[arg(
        long,
        value_name = "FIELDS",
        value_enum,
        value_delimiter = ',',
        default_value = "exit,stdout",
        hide_possible_values = true
    )]
    compare: Vec<Field>,

    /// Exit 121 when any record disagreed with the majority.
    #[arg(long)]
    strict: bool,

    /// No summary on stderr.
    #[arg(short, long)]
    quiet: bool,

    #[arg(required = true, num_args = 2.., value_name = "RECORD")]
    files: Vec<PathBuf>,
}

impl VoteArgs {
    fn into_parsed(self) -> Result<Parsed, clap::Error> {
        if self.compare.contains(&Field::Mem) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                "--compare mem: records hold no memory; compare exit, stdout, stderr\n",
            ));
        }
        let on = crate::record::VoteOn {
            exit: self.compare.contains(&Field::Exit),
            stdout: self.compare.contains(&Field::Stdout),
            stderr: self.compare.contains(&Field::Stderr),
        };
        Ok(Parsed::Vote { files: self.files, on, strict: self.strict, quiet: self.quiet })
    }
}

/// A byte count with an optional K, M or G suffix (powers of 1024), at most 1 GiB.
fn parse_size(s: &str) -> Result<u64, String> {
    parse_size_upto(s, 1 << 30)
}

/// `--buffer-limit`'s default: 1G.
const DEFAULT_BUFFER_LIMIT: u64 = 1 << 30;

/// `--buffer-limit`: at least 1 byte, at most 1T.
fn parse_buffer_limit(s: &str) -> Result<u64, String> {
    match parse_size_upto(s, 1 << 40)? {
        0 => Err("the limit must be at least 1 byte".into()),
        n => Ok(n),
    }
}

/// A byte count with an optional K, M, G or T suffix (powers of 1024), at most `max`.
fn parse_size_upto(s: &str, max: u64) -> Result<u64, String> {
    let shift = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        _ => 0,
    };
    let digits = if shift == 0 { s } else { &s[..s.len() - 1] };
    let n: u64 = digits.parse().map_err(|_| format!("not a size: {s:?} (e.g. 512K, 16M)"))?;
    n.checked_shl(shift)
        .filter(|v| *v <= max && v >> shift == n)
        .ok_or_else(|| format!("{s}: at most {}", crate::units::size(max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(args: &[&str]) -> Config {
        match parse(args.iter().map(OsString::from)) {
            Parsed::Run(c) => c,
            Parsed::Hunt(_)
            | Parsed::Campaign(_)
            | Parsed::Record { .. }
            | Parsed::Vote { .. }
            | Parsed::Test(_) => {
                panic!("unexpected subcommand")
            }
            Parsed::Exit { text, .. } => panic!("unexpected exit: {text}"),
        }
    }

    #[test]
    fn the_buffer_limit_is_a_size_of_at_least_a_byte_and_at_most_1t() {
        assert_eq!(parse_ok(&["tmr", "true"]).buffer_limit, 1 << 30);
        assert_eq!(
            parse_ok(&["tmr", "--buffer-limit", "1t", "--buffered", "--", "true"]).buffer_limit,
            1 << 40
        );
        assert_eq!(parse_ok(&["tmr", "--buffer-limit", "1500", "--sequential", "true"]).buffer_limit, 1500);
        let (msg, _) = parse_err(&["tmr", "--buffer-limit", "1M", "true"]);
        assert!(msg.contains("only with --buffered or --sequential"), "{msg}");
        for bad in ["0", "2T", "1.5G", "G", "x"] {
            let (msg, code) = parse_err(&["tmr", "--buffer-limit", bad, "--buffered", "true"]);
            assert_eq!(code, crate::exit::TMR_ERROR, "{bad}: {msg}");
            assert!(msg.contains("--buffer-limit"), "{bad}: {msg}");
        }
    }

    fn parse_err(args: &[&str]) -> (String, i32) {
        match parse(args.iter().map(OsString::from)) {
            Parsed::Run(_)
            | Parsed::Hunt(_)
            | Parsed::Campaign(_)
            | Parsed::Record { .. }
            | Parsed::Vote { .. }
            | Parsed::Test(_) => {
                panic!("expected an error for {args:?}")
            }
            Parsed::Exit { text, code } => (text, code),
        }
    }

    #[test]
    fn recover_needs_epoch_votes_and_names_its_choices() {
        let (text, code) = parse_err(&["tmr", "--checkpoint", "20ms", "--recover", "scrub", "--", "true"]);
        assert!(text.contains("--epoch-vote") && code != 0, "{text}");
        let (text, _) =
            parse_err(&["tmr", "--checkpoint", "20ms", "--epoch-vote", "--recover", "bogus", "--", "true"]);
        assert!(text.contains("rollback, scrub or auto"), "{text}");
    }

    #[test]
    fn command_flags_pass_through_untouched() {
        let c = parse_ok(&["tmr", "ls", "-l", "--color", "-n", "5"]);
        assert_eq!(c.command, ["ls", "-l", "--color", "-n", "5"]);
        assert_eq!(c.replicas, 3);
        let c = parse_ok(&["tmr", "-n", "5", "--", "--weird-name", "-x"]);
        assert_eq!(c.command, ["--weird-name", "-x"]);
        assert_eq!(c.replicas, 5);
    }

    #[test]
    fn defaults_compare_exit_and_stdout() {
        let c = parse_ok(&["tmr", "true"]);
        assert_eq!(c.compare, Compare { exit: true, stdout: true, stderr: false, mem: false });
        let c = parse_ok(&["tmr", "--compare", "exit,stderr", "true"]);
        assert_eq!(c.compare, Compare { exit: true, stdout: false, stderr: true, mem: false });
        let c = parse_ok(&["tmr", "--mem", "true"]);
        assert_eq!(c.compare, Compare { exit: true, stdout: true, stderr: false, mem: true });
        assert_eq!(c.mem, Some(Det::default()));
        let c = parse_ok(&["tmr", "--mem", "--compare", "exit", "true"]);
        assert!(!c.compare.mem && c.mem.is_some());
    }

    #[test]
    fn mistakes_are_one_line_errors_with_code_125() {
        for args in [
            &["tmr", "--replica", "3", "ls"][..],
            &["tmr", "-n", "0", "true"],
            &["tmr", "--timeout", "soon", "true"],
            &["tmr", "--mask", "(", "true"],
            &["tmr"],
        ] {
            let (text, code) = parse_err(args);
            assert_eq!(code, 125, "{args:?}");
            assert!(text.starts_with("tmr: "), "{text}");
            assert_eq!(text.lines().count(), 2, "{text}");
        }
    }

    #[test]
    fn classification_defaults_bound_flakes_at_ten_percent() {
        let c = parse_ok(&["tmr", "true"]);
        assert_eq!(c.classify.reruns, 29);
        assert_eq!(c.classify.rerun_mode, RerunMode::Parallel);
        assert_eq!(c.classify.time_budget, crate::classify::TimeBudget::Relative(2.0));
        let c = parse_ok(&["tmr", "--sequential", "true"]);
        assert_eq!(c.classify.rerun_mode, RerunMode::Sequential);
        let c = parse_ok(&["tmr", "--rerun-budget", "30s", "--rerun-mode", "sequential", "true"]);
        assert_eq!(
            c.classify.time_budget,
            crate::classify::TimeBudget::Absolute(std::time::Duration::from_secs(30))
        );
        assert_eq!(c.classify.rerun_mode, RerunMode::Sequential);
        assert_eq!(parse_err(&["tmr", "--rerun-budget", "-1x", "true"]).1, 125);
        assert_eq!(parse_err(&["tmr", "--rerun-budget", "1e300x", "true"]).1, 125);
        let c = parse_ok(&["tmr", "--reruns", "0", "--fail-on", "transient,nondeterministic", "true"]);
        assert_eq!(c.classify.reruns, 0);
        assert_eq!(c.classify.fail_on, vec![Class::Transient, Class::Nondeterministic]);
        assert_eq!(parse_err(&["tmr", "--fail-on", "flaky", "true"]).1, 125);
        assert_eq!(parse_err(&["tmr", "--confidence", "1.5", "true"]).1, 125);
    }

    #[test]
    fn hunt_is_a_subcommand_unless_after_double_dash() {
        match parse(["tmr", "hunt", "--runs", "7", "-j", "2", "--", "sh", "-c", "x"].map(OsString::from)) {
            Parsed::Hunt(h) => {
                assert_eq!((h.runs, h.jobs), (7, 2));
                assert_eq!(h.command, ["sh", "-c", "x"]);
            }
            _ => panic!("expected hunt mode"),
        }
        assert_eq!(parse_ok(&["tmr", "--", "hunt"]).command, ["hunt"]);
        assert_eq!(parse_err(&["tmr", "hunt", "--runs", "0", "true"]).1, 125);
    }

    #[test]
    fn inject_and_campaign_validate_replicas_before_running() {
        assert_eq!(parse_err(&["tmr", "--inject", "flip:replica=3", "true"]).1, 125);
        assert_eq!(parse_err(&["tmr", "--inject", "flip:region=moon", "true"]).1, 125);
        let c = parse_ok(&["tmr", "--inject", "flip:seed=5", "true"]);
        assert!(c.inject.as_ref().and_then(|s| s.replica).is_some_and(|r| r < 3));
        assert!(c.mem.is_some() && !c.compare.mem, "injection needs the monitor, not memory voting");
        match parse(
            ["tmr", "campaign", "--trials", "5", "--inject", "flip:after=1ms", "true"].map(OsString::from),
        ) {
            Parsed::Campaign(c) => assert!(c.inject_has_time && c.trials == 5),
            _ => panic!("expected campaign mode"),
        }
        let (text, code) = parse_err(&["tmr", "campaign", "--inject", "flip:replica=5", "true"]);
        assert_eq!(code, 125);
        assert!(text.contains("tmr campaign --help"), "{text}");
    }

    #[test]
    fn campaign_faults_are_bounded_by_the_replicas() {
        let c = campaign_ok(&["tmr", "campaign", "--faults", "3", "--compare-recovery", "20ms", "true"]);
        assert_eq!(
            (c.faults, c.checkpoint, c.compare_recovery),
            (3, Some(std::time::Duration::from_millis(20)), true)
        );
        let c = campaign_ok(&["tmr", "campaign", "-n", "5", "--faults", "5", "--checkpoint", "1s", "true"]);
        assert_eq!((c.faults, c.compare_recovery), (5, false));
        assert_eq!(campaign_ok(&["tmr", "campaign", "true"]).faults, 1);
        assert_one_line_error(&["tmr", "campaign", "--faults", "4", "true"], "--faults 4");
        assert_one_line_error(&["tmr", "campaign", "--faults", "0", "true"], "--faults");
        assert_one_line_error(
            &["tmr", "campaign", "--faults", "2", "--inject", "flip:replica=1", "true"],
            "drawn",
        );
        assert_one_line_error(&["tmr", "campaign", "--compare-recovery", "5ms", "true"], "below 10ms");
        let both = ["tmr", "campaign", "--checkpoint", "20ms", "--compare-recovery", "20ms", "true"];
        assert_eq!(parse_err(&both).1, 125);
    }

    #[test]
    fn help_shows_examples_and_exit_codes() {
        let (text, code) = parse_err(&["tmr", "--help"]);
        assert_eq!(code, 0);
        assert!(text.contains("EXAMPLES") && text.contains("120") && text.contains("--timeout"));
    }

    /// An error as tmr prints it: two lines, the first saying what is wrong, code 125.
    fn assert_one_line_error(args: &[&str], says: &str) {
        let (text, code) = parse_err(args);
        assert_eq!(code, 125, "{args:?}: {text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {text}");
        assert!(lines[0].starts_with("tmr: ") && lines[1].starts_with("tmr: try '"), "{text}");
        assert!(lines[0].contains(says), "{args:?}: expected {says:?} in {text}");
    }

    fn hunt_ok(args: &[&str]) -> HuntConfig {
        match parse(args.iter().map(OsString::from)) {
            Parsed::Hunt(h) => h,
            Parsed::Exit { text, .. } => panic!("unexpected exit: {text}"),
            _ => panic!("expected hunt mode"),
        }
    }

    fn campaign_ok(args: &[&str]) -> CampaignConfig {
        match parse(args.iter().map(OsString::from)) {
            Parsed::Campaign(c) => c,
            Parsed::Exit { text, .. } => panic!("unexpected exit: {text}"),
            _ => panic!("expected campaign mode"),
        }
    }

    #[test]
    fn every_bounded_option_at_its_limit_and_one_past() {
        let max = MAX_RERUNS.to_string();
        assert_eq!(parse_ok(&["tmr", "--reruns", &max, "true"]).classify.reruns, MAX_RERUNS);
        for past in [(MAX_RERUNS + 1).to_string(), u64::MAX.to_string(), "18446744073709551616".into()] {
            assert_one_line_error(&["tmr", "--reruns", &past, "true"], "at most 100000");
        }
        assert_one_line_error(&["tmr", "--reruns", "many", "true"], "not a count");

        // The rate's floor, and the budget it derives at the highest confidence that stays in bounds.
        let c = parse_ok(&["tmr", "--min-flake-rate", "0.0001", "true"]);
        assert_eq!(c.classify.reruns as u64, crate::stats::runs_to_bound(1e-4, 0.95));
        let c = parse_ok(&["tmr", "--min-flake-rate", "0.0001", "--confidence", "0.9999", "true"]);
        assert!(c.classify.reruns <= MAX_RERUNS);
        for past in ["0.0000999", "1e-12", "1e-300", "0", "5e-324"] {
            assert_one_line_error(&["tmr", "--min-flake-rate", past, "true"], "at least 0.0001");
        }
        assert_one_line_error(
            &["tmr", "--min-flake-rate", "0.0001", "--confidence", "0.99999", "true"],
            "needs 115124 reruns",
        );
        // An explicit --reruns does not need the derived budget.
        let c =
            parse_ok(&["tmr", "--min-flake-rate", "0.0001", "--confidence", "0.99999", "--reruns", "3", "x"]);
        assert_eq!(c.classify.reruns, 3);

        assert_eq!(parse_ok(&["tmr", "-n", "256", "true"]).replicas, 256);
        assert_one_line_error(&["tmr", "-n", "257", "true"], "between 1 and 256");

        let year = crate::config::MAX_DURATION;
        assert_eq!(parse_ok(&["tmr", "--timeout", "365d", "true"]).timeout, Some(Timeout::Absolute(year)));
        let past = (year.as_secs() + 1).to_string();
        assert_one_line_error(&["tmr", "--timeout", &past, "true"], "at most 365d");
        assert_one_line_error(&["tmr", "--timeout", "1000000001", "true"], "at most 365d");
        assert_eq!(parse_ok(&["tmr", "--timeout", "1000x", "true"]).timeout, Some(Timeout::Relative(1000.0)));
        assert_one_line_error(&["tmr", "--timeout", "1000.01x", "true"], "at most 1000");
        assert_one_line_error(&["tmr", "--timeout", "1e300x", "true"], "at most 1000");

        let runs = MAX_HUNT_RUNS.to_string();
        assert_eq!(hunt_ok(&["tmr", "hunt", "--runs", &runs, "true"]).runs as u64, MAX_HUNT_RUNS);
        let past = (MAX_HUNT_RUNS + 1).to_string();
        assert_one_line_error(&["tmr", "hunt", "--runs", &past, "true"], "--runs");
        assert_one_line_error(&["tmr", "hunt", "--runs", "100000000000", "true"], "--runs");
        assert_eq!(hunt_ok(&["tmr", "hunt", "-j", "256", "true"]).jobs, 256);
        assert_one_line_error(&["tmr", "hunt", "-j", "257", "true"], "--jobs");
        assert_one_line_error(&["tmr", "hunt", "--timeout", "1e300x", "true"], "at most 1000");
        assert_one_line_error(&["tmr", "hunt", "--duration", "366d", "true"], "at most 365d");

        let trials = MAX_TRIALS.to_string();
        assert_eq!(campaign_ok(&["tmr", "campaign", "--trials", &trials, "true"]).trials as u64, MAX_TRIALS);
        let past = (MAX_TRIALS + 1).to_string();
        assert_one_line_error(&["tmr", "campaign", "--trials", &past, "true"], "--trials");
        assert_one_line_error(&["tmr", "campaign", "--timeout", "1e300s", "true"], "--timeout");
    }

    #[test]
    fn errors_keep_their_substance_on_one_line() {
        assert_one_line_error(&["tmr", "--mask", "(", "true"], "unclosed group");
        assert_one_line_error(&["tmr"], "no command given: tmr [OPTIONS] [--] COMMAND");
        assert_one_line_error(&["tmr", "hunt"], "no command given: tmr hunt [OPTIONS]");
        assert_one_line_error(&["tmr", "campaign", "--trials", "3"], "no command given: tmr campaign");
        assert_one_line_error(&["tmr", "--timeout", "1\n2", "true"], "'1\\n2'");
        assert_one_line_error(&["tmr", "--compare", "exit\nx", "true"], "possible values: exit");
        assert_one_line_error(&["tmr", "--format", "xml", "true"], "possible values: human, json");
        assert_one_line_error(&["tmr", "--replica", "3", "ls"], "a similar argument exists: '--replicas'");
        assert_one_line_error(&["tmr", "--a\nb", "ls"], "unexpected argument '--a\\nb' found");
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// Every input ends in a configuration or in one of the two documented exits: 0 with --help or
        /// --version text, or 125 with a one-line error and a pointer to --help. Never a panic.
        fn check(args: Vec<String>) -> Result<(), TestCaseError> {
            let argv = std::iter::once("tmr".to_string()).chain(args.clone()).map(OsString::from);
            match parse(argv) {
                Parsed::Run(c) => {
                    prop_assert!(!c.command.is_empty());
                    prop_assert!((1..=256).contains(&c.replicas));
                    prop_assert!(c.classify.reruns <= MAX_RERUNS);
                    if let Some(Timeout::Absolute(d)) = c.timeout {
                        prop_assert!(!d.is_zero() && d <= crate::config::MAX_DURATION);
                    }
                }
                Parsed::Hunt(h) => prop_assert!(h.runs as u64 <= MAX_HUNT_RUNS && h.jobs >= 1),
                Parsed::Campaign(c) => prop_assert!(c.trials as u64 <= MAX_TRIALS),
                Parsed::Record { max_output, .. } => prop_assert!(max_output <= 1 << 30),
                Parsed::Vote { files, .. } => prop_assert!(files.len() >= 2),
                Parsed::Test(t) => prop_assert!(!t.command.is_empty() && t.reruns <= MAX_RERUNS),
                Parsed::Exit { text, code: 0 } => prop_assert!(!text.is_empty()),
                Parsed::Exit { text, code } => {
                    prop_assert_eq!(code, 125, "{:?}: {}", args, text);
                    let lines: Vec<&str> = text.lines().collect();
                    prop_assert_eq!(lines.len(), 2, "{:?}: {}", args, text);
                    prop_assert!(lines[0].starts_with("tmr: "), "{}", text);
                    prop_assert!(lines[1].starts_with("tmr: try '"), "{}", text);
                }
            }
            Ok(())
        }

        fn word() -> impl Strategy<Value = String> {
            prop_oneof![
                proptest::sample::select(vec![
                    "hunt",
                    "campaign",
                    "--",
                    "-n",
                    "--replicas",
                    "--timeout",
                    "--mask",
                    "--reruns",
                    "--min-flake-rate",
                    "--confidence",
                    "--inject",
                    "--mem",
                    "--mem-det",
                    "--compare",
                    "--format",
                    "--fail-on",
                    "--runs",
                    "-j",
                    "--trials",
                    "--duration",
                    "--seed",
                    "-o",
                    "--junit",
                    "--sequential",
                    "--strict",
                    "--rerun-mode",
                    "true",
                    "3",
                    "0",
                    "-1",
                    "1e300",
                    "3x",
                    "1e300x",
                    "18446744073709551616",
                    "--help",
                    "--version",
                ])
                .prop_map(String::from),
                any::<String>(),
                "[0-9.ex-]{0,30}",
            ]
        }

        proptest! {
            #[test]
            fn arbitrary_argv_never_panics(args in proptest::collection::vec(word(), 0..8)) {
                check(args)?;
            }

            #[test]
            fn arbitrary_option_values_never_panic(
                opt in proptest::sample::select(vec![
                    "--inject", "--timeout", "--mask", "--reruns", "--min-flake-rate", "-n", "--confidence",
                    "--mem-det", "--fail-on",
                ]),
                value in prop_oneof![any::<String>(), "[0-9.e+x-]{0,40}", "[a-z]{1,8}:[a-z=,0-9]{0,40}"],
            ) {
                check(vec![opt.to_string(), value.clone(), "true".into()])?;
                check(vec!["hunt".into(), "--timeout".into(), value.clone(), "true".into()])?;
                check(vec!["campaign".into(), "--inject".into(), value.clone(), "true".into()])?;
                check(vec!["test".into(), opt.to_string(), value, "true".into()])?;
            }
        }
    }

    /// The after-help texts used to be wrapped by hand at 100 columns, and clap wrapped them again
    /// (`125\non\ntmr's own errors`). At 80 and 100 columns: preformatted lines come out verbatim, and
    /// a paragraph is only ever broken where the next word would not fit.
    #[test]
    fn after_help_wraps_only_where_it_must() {
        use clap::CommandFactory;
        for (mut cmd, source) in [
            (RunArgs::command(), EXAMPLES),
            (HuntArgs::command(), HUNT_EXAMPLES),
            (CampaignArgs::command(), CAMPAIGN_EXAMPLES),
            (TestArgs::command(), TEST_EXAMPLES),
        ] {
            for width in [80, 100] {
                cmd = cmd.term_width(width).max_term_width(width);
                let help = cmd.render_long_help().to_string();
                let start = help.find("EXAMPLES").expect("examples are shown");
                let rendered: Vec<&str> = help[start..].lines().take_while(|l| *l != "EXIT STATUS").collect();
                let sources: Vec<&str> = source.lines().collect();
                for l in &sources {
                    if l.starts_with(' ') {
                        assert!(rendered.contains(l), "{width} columns: {l:?} was wrapped:\n{help}");
                    }
                }
                for pair in rendered.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    assert!(a.chars().count() <= width, "{width} columns: {a:?}");
                    let continuation = !b.is_empty() && !sources.iter().any(|l| l.starts_with(b));
                    if continuation {
                        let word = b.split(' ').next().unwrap_or("");
                        assert!(
                            a.chars().count() + 1 + word.chars().count() > width,
                            "{width} columns: {a:?} broken before {word:?}:\n{help}"
                        );
                    }
                }
            }
        }
    }
}
