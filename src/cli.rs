//! Command-line parsing: the only module that knows clap. Turns argv into a validated [`Config`]; every
//! mistake becomes a one-line error with exit code 125, never clap's 2, which commands use themselves.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use regex::bytes::Regex;

use crate::classify::Class;
use crate::config::{
    parse_classes, parse_duration, parse_timeout, CampaignConfig, ClassifyConfig, Config, Format, HuntConfig,
    RerunMode, Timeout,
};
use crate::exit;
use crate::fingerprint::Compare;
use crate::inject::{InjectSpec, Rng};
use crate::replica::monitor::Det;

const EXAMPLES: &str = "\
EXAMPLES
  tmr cargo test                            3 replicas, voted output and exit code
  tmr -n 5 -- ./solver --input x.dat        5 replicas; `--` ends tmr's options
  tmr --sequential -- make check            one replica after another (shared ports, files)
  tmr --timeout 30s -- ./flaky.sh           a replica running 30 s is killed: outcome \"timeout\"
  tmr --timeout 3x -- ./job                 killed when 3x slower than the finished majority
  tmr --mask '[0-9.]+ ?m?s' -- cargo bench  blank out durations before comparing
  tmr --format json -o report.json -- ./job machine-readable report

  tmr --fail-on transient,nondeterministic -- ./test.sh   fail CI on any flake
  tmr --compare exit --junit junit.xml --github -- cargo test   reports for CI dashboards
  tmr hunt --runs 200 --jobs 4 -- ./flaky-test.sh  hunt a flaky test (see tmr hunt --help)

Disagreements are settled by reruns (--reruns): the class (unanimous, transient, nondeterministic,
deterministic, no-majority) is reported with its evidence; tmr still exits with the voted outcome
unless --fail-on names the class.
Each replica gets TMR_REPLICA (0..N-1), TMR_REPLICAS (N) and TMR_ROUND (0 for the voted round;
reruns count up from 1 and run as replica 0 of 1 unless --rerun-mode parallel).
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

    /// Per-replica limit: a duration (500ms, 30s, 2m, 1h) or Nx, a multiple of the finished majority's
    /// median wall time (floor 1s). A timed-out replica gets SIGTERM, then SIGKILL 2s later.
    #[arg(long, value_name = "DURATION|Nx", value_parser = parse_timeout)]
    timeout: Option<Timeout>,

    /// Exit 121 when any replica disagreed, even if a majority won.
    #[arg(long)]
    strict: bool,

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
    /// tsc (rdtsc trapping: it nearly stops the replicas' clocks, so only on request), all (every
    /// step including tsc), none. Default: every step but tsc. Add strict-threads to vote the memory of
    /// multithreaded replicas too (by default they abstain: scheduling makes their heaps differ).
    #[arg(long, value_name = "STEPS", default_value = DEFAULT_DET, value_parser = parse_det, help_heading = "Memory voting")]
    mem_det: Det,

    /// Inject a fault into one replica of the voted round, e.g. flip:replica=1,after=50ms,region=heap
    /// or reg:reg=rip,after=20ms (keys: replica, after=DUR|exit, region=heap|stack|data|anon|any, bits,
    /// page, offset, bit, reg, seed; open choices are drawn from the seed). Runs replicas under the monitor.
    #[arg(long, value_name = "SPEC", value_parser = parse_inject, help_heading = "Fault injection")]
    inject: Option<InjectSpec>,

    /// Most reruns spent to classify a disagreement or a unanimous failure (0: no reruns).
    /// Default: enough to bound a flake's rate below --min-flake-rate (29 at the defaults).
    #[arg(long, value_name = "R", help_heading = "Classification")]
    reruns: Option<usize>,

    /// Confidence of the reported intervals and bounds.
    #[arg(long, value_name = "C", default_value_t = 0.95, value_parser = parse_confidence, help_heading = "Classification")]
    confidence: f64,

    /// The smallest flake rate the default rerun budget must not mistake for a one-off fault.
    #[arg(long, value_name = "P", default_value_t = 0.1, value_parser = parse_rate, help_heading = "Classification")]
    min_flake_rate: f64,

    /// Reruns one at a time (no contention) or as rounds of N parallel replicas.
    #[arg(long, value_enum, default_value = "sequential", help_heading = "Classification")]
    rerun_mode: RerunModeArg,

    /// Exit 122 when the run is classified as one of these (comma-separated): transient,
    /// nondeterministic, deterministic, no-majority, unanimous.
    #[arg(long, value_name = "CLASSES", value_parser = parse_class, value_delimiter = ',', help_heading = "Classification")]
    fail_on: Vec<Class>,

    /// Write a JUnit XML report (one test case; flaky runs as flakyFailure) to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Classification")]
    junit: Option<PathBuf>,

    /// Append a Markdown summary to $GITHUB_STEP_SUMMARY (default when GITHUB_ACTIONS=true).
    #[arg(long, help_heading = "Classification")]
    github: bool,

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
    let n: usize = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(1..=256).contains(&n) {
        return Err(format!("must be between 1 and 256, got {n}"));
    }
    Ok(n)
}

fn parse_inject(s: &str) -> Result<InjectSpec, String> {
    InjectSpec::parse(s)
}

/// Every determinization step but rdtsc trapping, which would nearly stop the replicas' clocks.
const DEFAULT_DET: &str = "aslr,at-random,rseq,getrandom,tid,stack";

fn parse_det(s: &str) -> Result<Det, String> {
    Det::parse(s)
}

fn parse_class(s: &str) -> Result<Class, String> {
    parse_classes(s).map(|v| v[0])
}

fn parse_confidence(s: &str) -> Result<f64, String> {
    let c: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(0.5..1.0).contains(&c) {
        return Err(format!("must be at least 0.5 and below 1, got {c}"));
    }
    Ok(c)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(p > 0.0 && p < 1.0) {
        return Err(format!("must be between 0 and 1 (exclusive), got {p}"));
    }
    Ok(p)
}

fn parse_mask(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| format!("invalid regex: {e}"))
}

/// What the caller should do after parsing.
pub enum Parsed {
    Run(Config),
    Hunt(HuntConfig),
    Campaign(CampaignConfig),
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
    let parsed = if campaign {
        let rest = std::iter::once(OsString::from("tmr campaign")).chain(args[2..].iter().cloned());
        CampaignArgs::try_parse_from(rest).and_then(|a| a.into_config()).map(Parsed::Campaign)
    } else if hunt {
        let rest = std::iter::once(OsString::from("tmr hunt")).chain(args[2..].iter().cloned());
        HuntArgs::try_parse_from(rest).map(|a| Parsed::Hunt(a.into_config()))
    } else {
        RunArgs::try_parse_from(args).map(|a| Parsed::Run(a.into_config()))
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
        Ok(p) => p,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => exit::TMR_ERROR,
            };
            let name = if hunt {
                "tmr hunt"
            } else if campaign {
                "tmr campaign"
            } else {
                "tmr"
            };
            let text = if code == 0 { e.render().to_string() } else { one_line_error(&e, name) };
            Parsed::Exit { text, code }
        }
    }
}

/// clap's error without its usage block: one line saying what is wrong, one pointing to --help.
fn one_line_error(e: &clap::Error, name: &str) -> String {
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
    format!("tmr: {first}\ntmr: try '{name} --help'\n")
}

impl RunArgs {
    fn into_config(self) -> Config {
        // --mem votes memory unless --compare says otherwise; --compare mem needs --mem's monitor.
        let mut compare = if self.compare.is_empty() {
            compare_of(&[Field::Exit, Field::Stdout])
        } else {
            compare_of(&self.compare)
        };
        if self.mem && self.compare.is_empty() {
            compare.mem = true;
        }
        let mem = (self.mem || compare.mem || self.inject.is_some()).then_some(self.mem_det);
        let inject = self.inject.map(|mut spec| {
            spec.replica.get_or_insert_with(|| Rng::new(spec.seed).below(self.replicas as u64) as usize);
            spec
        });
        Config {
            command: self.command,
            replicas: self.replicas,
            sequential: self.sequential,
            compare,
            masks: self.masks,
            timeout: self.timeout,
            strict: self.strict,
            quiet: self.quiet,
            output: self.output,
            format: format(self.format),
            mem,
            inject,
            classify: ClassifyConfig {
                reruns: self.reruns.unwrap_or_else(|| {
                    crate::stats::runs_to_bound(self.min_flake_rate, self.confidence) as usize
                }),
                confidence: self.confidence,
                min_flake_rate: self.min_flake_rate,
                rerun_mode: match self.rerun_mode {
                    RerunModeArg::Sequential => RerunMode::Sequential,
                    RerunModeArg::Parallel => RerunMode::Parallel,
                },
                fail_on: self.fail_on,
                junit: self.junit,
                github: self.github || std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true"),
            },
        }
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

const CAMPAIGN_EXAMPLES: &str = "\
EXAMPLES
  tmr campaign --trials 1000 --seed 7 -- ./solver x.dat
  tmr campaign --trials 200 --inject flip:region=heap,bits=2 -- sort big.txt
  tmr campaign --trials 100 --inject reg:reg=any -- python3 job.py

Each trial runs N replicas with one fault in one replica (replica, time, page, bit drawn from the seed;
the time uniformly over the golden run's wall time unless the spec has after=). Categories: masked,
detected-corrected, crash, hang (all corrected by the vote), escaped (the voted result differs from the
golden run), not-injected (the replica ended before the fault's time). Replay a trial with
`tmr --inject <spec from the JSON trial log> -- CMD`. Exit status: 0 when nothing escaped, 1 otherwise.
";

/// `tmr campaign`: measure, fault by fault, that the vote masks injected bit flips.
#[derive(Debug, Parser)]
#[command(
    name = "tmr campaign",
    about = "Fault-injection campaign: a golden run, then K voted rounds with one bit flip each, tallied.",
    after_help = CAMPAIGN_EXAMPLES,
    override_usage = "tmr campaign [OPTIONS] [--] COMMAND [ARGS]...",
)]
struct CampaignArgs {
    /// Number of trials (voted rounds with one fault each).
    #[arg(long, value_name = "K", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
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
        Ok(CampaignConfig {
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

A run fails when it does not exit 0 (or, with --compare including stdout/stderr, when its output
differs from the first passing run's). Exit status: 0 when every run passed, 1 when any failed, 125 on
tmr's own errors, 130/143/129 when stopped by a signal.
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
    /// Number of runs.
    #[arg(long, value_name = "K", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
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

    /// Which results define an outcome, comma-separated; outputs are compared with the first run's.
    #[arg(long, value_name = "FIELDS", value_enum, value_delimiter = ',', default_value = "exit")]
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

    /// The command to run, and its arguments (passed through untouched).
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

impl HuntArgs {
    fn into_config(self) -> HuntConfig {
        HuntConfig {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(args: &[&str]) -> Config {
        match parse(args.iter().map(OsString::from)) {
            Parsed::Run(c) => c,
            Parsed::Hunt(_) | Parsed::Campaign(_) => panic!("unexpected subcommand"),
            Parsed::Exit { text, .. } => panic!("unexpected exit: {text}"),
        }
    }

    fn parse_err(args: &[&str]) -> (String, i32) {
        match parse(args.iter().map(OsString::from)) {
            Parsed::Run(_) | Parsed::Hunt(_) | Parsed::Campaign(_) => {
                panic!("expected an error for {args:?}")
            }
            Parsed::Exit { text, code } => (text, code),
        }
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
        assert_eq!(c.classify.rerun_mode, RerunMode::Sequential);
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
    fn help_shows_examples_and_exit_codes() {
        let (text, code) = parse_err(&["tmr", "--help"]);
        assert_eq!(code, 0);
        assert!(text.contains("EXAMPLES") && text.contains("120") && text.contains("--timeout"));
    }
}
