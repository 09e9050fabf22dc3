//! `tmr hunt`: the job of go's `stress` or `nextest --stress-count` — run a command K times, J at a time,
//! tally the distinct outcomes, estimate the failure rate with its Wilson interval, keep the failing runs'
//! output, and say what N-way voting would make of that rate. The loop tells each run to its reporters
//! (`reporters`: the progress line, `--keep`, the summary); the report and its rendering are `report::hunt`.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::config::HuntConfig;
use crate::events::{Event, Reporter, Reporters};
use crate::exit;
use crate::fingerprint::{signal_name, Fingerprint, Key};
use crate::replica::{BatchOpts, ChildSetup, Control, Harness, Job, Launcher, RunRecord, Runner};
pub use crate::report::hunt::{render, HuntOutcome, HuntReport, VotingEstimate};
use crate::reporters::{Keep, Progress, Summary};
use crate::stats::{majority_failure_probability, rule_of_three, wilson};

/// Exit code of a hunt that saw at least one failing run.
pub const FOUND_FAILURES: i32 = 1;

struct Tally {
    /// Each distinct outcome: its key, a sample, its count, its lowest run index, and whether it passed.
    outcomes: Vec<(Key, Fingerprint, usize, usize, bool)>,
    /// The lowest-numbered passing run (its index and key): with outputs compared, a run that differs
    /// from it fails. The lowest-numbered, not the first to finish: with -j > 1 runs finish in any order,
    /// and the hunt's answer must not depend on it.
    reference: Option<(usize, Key)>,
    /// Outputs are compared (`--compare` names stdout or stderr).
    compares_output: bool,
    runs: usize,
    failures: usize,
    /// `--launcher slurm`: runs and failing runs per node.
    per_node: Vec<crate::launch::NodeTally>,
}

pub fn execute(cfg: &HuntConfig) -> Result<i32> {
    // Both checked before anything runs: a report path or a --keep directory that cannot be used wastes
    // no hunt.
    let summary =
        Summary::new(cfg.format, cfg.output.as_deref().map(crate::report::create_file).transpose()?, false);
    let keep = cfg.keep.as_deref().map(Keep::new).transpose()?;
    let path = crate::resolve::resolve(&cfg.command[0])?;
    let mut launcher = Launcher::new(path.into_os_string(), &cfg.command)?;
    // --launcher slurm: each run is an srun step, round robin over the allocation's nodes (src/launch).
    let cluster = crate::launch::attach(&cfg.launch, &mut launcher, cfg.jobs)?;
    let mut harness = Harness::new(launcher)?;
    let masks = |on: bool| if on { cfg.masks.clone() } else { Vec::new() };
    let opts = BatchOpts {
        parallel: cfg.jobs,
        timeout: cfg.timeout,
        stdout_masks: masks(cfg.compare.stdout),
        stderr_masks: masks(cfg.compare.stderr),
        setup: ChildSetup::default(),
        mem: false,
        reference_wall: None,
        keep: cfg.keep.is_some().then_some(u64::MAX),
    };
    // The progress line first: it is cleared before the summary is written under it.
    let mut reporters = Reporters::new();
    reporters.add(Progress::hunt(cfg.runs));
    if let Some(keep) = keep {
        reporters.add(keep);
    }
    reporters.add(summary);
    let started = Instant::now();
    let hunted = hunt(&mut harness, cfg, &opts, &mut reporters)?;
    let Hunted { tally, stopped, swept, exit_code } = hunted;
    let mut report = tally.report(cfg, stopped, started.elapsed(), swept, exit_code);
    let per_node = tally.per_node;
    report.slurm = cluster.map(|c| crate::launch::SlurmReport {
        allocation: c.info(),
        replica_nodes: Vec::new(),
        node_failures: harness.node_failures.clone(),
        suspect: None,
        per_node,
    });
    reporters.event(&Event::HuntFinished { report: &report })?;
    Ok(exit_code)
}

/// What a hunt's loop leaves for its report.
struct Hunted {
    tally: Tally,
    /// completed, until-fail, duration, or the stop signal's name.
    stopped: String,
    swept: usize,
    exit_code: i32,
}

/// The hunt's loop and its policy (when to stop, the exit code), on any process layer: `reporter` is
/// told every run with whether it failed (to keep it, show progress).
fn hunt(
    runner: &mut dyn Runner,
    cfg: &HuntConfig,
    opts: &BatchOpts,
    reporter: &mut dyn Reporter,
) -> Result<Hunted> {
    // Drawn lazily: a hunt of a billion runs allocates nothing up front.
    let mut jobs = (0..cfg.runs).map(|i| Job { replica: 0, replicas: 1, round: i });
    let clock = runner.clock();
    let started = clock();
    let mut tally = Tally {
        outcomes: Vec::new(),
        reference: None,
        compares_output: cfg.compare.stdout || cfg.compare.stderr,
        runs: 0,
        failures: 0,
        per_node: Vec::new(),
    };
    let mut stopped = "completed".to_string();
    let swept = runner.run_jobs(&mut jobs, opts, &mut |rec| {
        // A run that tmr's own Ctrl-C ended says nothing about the command.
        if rec.stopped {
            return Ok(Control::Stop);
        }
        let failing = tally.add(&rec, cfg);
        reporter.event(&Event::HuntRunFinished { record: &rec, failing })?;
        // A lower-numbered run that finished late can make an earlier-told run a failing one.
        if (failing || tally.failures > 0) && cfg.until_fail {
            stopped = "until-fail".into();
            return Ok(Control::Stop);
        }
        if cfg.duration.is_some_and(|d| clock().duration_since(started) >= d) {
            stopped = "duration".into();
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    })?;
    if let Some(sig) = runner.interrupted() {
        stopped = signal_name(sig);
    }
    let exit_code = exit_code(runner.interrupted(), tally.failures);
    Ok(Hunted { tally, stopped, swept, exit_code })
}

/// 128+N when a signal stopped the hunt, 1 when any run failed, else 0.
fn exit_code(interrupted: Option<i32>, failures: usize) -> i32 {
    match interrupted {
        Some(sig) => exit::for_signal(sig),
        None if failures > 0 => FOUND_FAILURES,
        None => 0,
    }
}

impl Tally {
    /// Count one run; returns whether it fails against the reference known so far.
    fn add(&mut self, rec: &RunRecord, cfg: &HuntConfig) -> bool {
        let fp = rec.fingerprint();
        let key = fp.key(cfg.compare);
        let passed = rec.outcome.is_success();
        let round = rec.job.round;
        let moved = passed && self.reference.is_none_or(|(r, _)| round < r);
        let changed = moved && self.reference.is_some_and(|(_, k)| k != key);
        if moved {
            self.reference = Some((round, key));
        }
        self.runs += 1;
        match self.outcomes.iter_mut().find(|o| o.0 == key) {
            Some(o) => {
                o.2 += 1;
                // Runs finish out of order with -j > 1: keep the lowest run index.
                o.3 = o.3.min(round);
            }
            None => self.outcomes.push((key, fp, 1, round, passed)),
        }
        let failing = self.fails(&key, passed);
        if changed {
            // Rare (a lower-numbered run finished after a higher one and differs): count afresh.
            self.failures = self.outcomes.iter().filter(|o| self.fails(&o.0, o.4)).map(|o| o.2).sum();
        } else {
            self.failures += failing as usize;
        }
        if let Some(node) = &rec.node {
            crate::launch::tally(&mut self.per_node, node, failing);
        }
        failing
    }

    /// A run fails when it did not pass or, with outputs compared, differs from the reference run.
    fn fails(&self, key: &Key, passed: bool) -> bool {
        !passed || (self.compares_output && self.reference.is_some_and(|(_, r)| r != *key))
    }

    fn report(
        &self,
        cfg: &HuntConfig,
        stopped: String,
        wall: Duration,
        swept: usize,
        exit_code: i32,
    ) -> HuntReport {
        let (k, n) = (self.failures as u64, self.runs as u64);
        let p = if n > 0 { k as f64 / n as f64 } else { 0.0 };
        let interval = wilson(k, n, cfg.confidence);
        let mut outcomes: Vec<HuntOutcome> = self
            .outcomes
            .iter()
            .map(|(key, fp, count, first, passed)| HuntOutcome {
                outcome: fp.outcome,
                stdout: fp.stdout.into(),
                stderr: fp.stderr.into(),
                count: *count,
                rate: *count as f64 / n.max(1) as f64,
                failing: self.fails(key, *passed),
                first_run: *first,
            })
            .collect();
        outcomes.sort_by(|a, b| b.count.cmp(&a.count).then(a.first_run.cmp(&b.first_run)));
        HuntReport {
            schema: "tmr-hunt-report",
            version: 1,
            command: cfg.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            runs_planned: cfg.runs,
            runs: self.runs,
            jobs: cfg.jobs,
            stopped,
            wall_s: wall.as_secs_f64(),
            failures: self.failures,
            failure_rate: p,
            confidence: cfg.confidence,
            interval,
            upper_bound_if_none: (k == 0 && n > 0).then(|| rule_of_three(n, cfg.confidence)),
            outcomes,
            voting: [3, 5]
                .into_iter()
                .map(|replicas| VotingEstimate {
                    replicas,
                    failure_probability: majority_failure_probability(replicas, p),
                    at_upper_bound: majority_failure_probability(replicas, interval.hi),
                })
                .collect(),
            kept: cfg.keep.as_ref().map(|d| d.display().to_string()),
            leaked_processes: swept,
            slurm: None,
            exit_code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::fake::Fake;

    fn config(args: &[&str]) -> HuntConfig {
        let argv = ["tmr", "hunt"].iter().chain(args).chain(&["true"]).map(std::ffi::OsString::from);
        match crate::cli::parse(argv) {
            crate::cli::Parsed::Hunt(h) => h,
            _ => panic!("bad test arguments {args:?}"),
        }
    }

    /// One run at a time, as `--jobs 1` does.
    fn opts() -> BatchOpts {
        BatchOpts {
            parallel: 1,
            timeout: None,
            stdout_masks: Vec::new(),
            stderr_masks: Vec::new(),
            setup: ChildSetup::default(),
            mem: false,
            reference_wall: None,
            keep: None,
        }
    }

    fn run(args: &[&str], fake: &mut Fake) -> Hunted {
        let cfg = config(args);
        hunt(fake, &cfg, &opts(), &mut crate::events::Nobody).unwrap()
    }

    #[test]
    fn every_run_is_counted_and_any_failure_exits_1() {
        let mut fake = Fake::new(10, |j| if j.round % 4 == 3 { 2 } else { 0 });
        let h = run(&["--runs", "100"], &mut fake);
        assert_eq!((h.tally.runs, h.tally.failures, h.exit_code), (100, 25, FOUND_FAILURES));
        assert_eq!(h.stopped, "completed");
        let outcomes: Vec<usize> = h.tally.outcomes.iter().map(|o| o.2).collect();
        assert_eq!(outcomes, vec![75, 25]);
        let mut clean = Fake::new(10, |_| 0);
        assert_eq!(run(&["--runs", "7"], &mut clean).exit_code, 0);
    }

    #[test]
    fn until_fail_stops_at_the_first_failing_run() {
        let mut fake = Fake::new(10, |j| (j.round == 41) as i32);
        let h = run(&["--runs", "1000", "--until-fail"], &mut fake);
        assert_eq!((h.tally.runs, h.stopped.as_str()), (42, "until-fail"));
        assert_eq!(fake.ran.len(), 42);
    }

    #[test]
    fn duration_stops_new_runs_on_the_runners_clock() {
        // 50 ms per run on the fake clock: a 1 s hunt takes 20 runs, whatever the real clock says.
        let mut fake = Fake::new(50, |_| 0);
        fake.per_job = true;
        let h = run(&["--runs", "1000", "--duration", "1s"], &mut fake);
        assert_eq!((h.tally.runs, h.stopped.as_str()), (20, "duration"));
    }

    #[test]
    fn a_stop_signal_is_the_exit_code_and_the_reason() {
        let mut fake = Fake::new(10, |_| 1);
        fake.interrupted = Some(libc::SIGTERM);
        let h = run(&["--runs", "5"], &mut fake);
        assert_eq!((h.exit_code, h.stopped.as_str()), (128 + libc::SIGTERM, "SIGTERM"));
        assert_eq!(exit_code(None, 0), 0);
        assert_eq!(exit_code(Some(libc::SIGINT), 3), 130);
    }

    /// Every counted run is told with whether it failed, in order; a run cut by tmr's own stop is not.
    #[test]
    fn a_hunt_tells_each_run_until_the_first_failure() {
        let cfg = config(&["--runs", "10", "--until-fail"]);
        let mut fake = Fake::new(10, |j| (j.round == 2) as i32 * 3);
        let opts = opts();
        let mut seen = crate::events::Recorder::default();
        let h = hunt(&mut fake, &cfg, &opts, &mut seen).unwrap();
        assert_eq!(
            seen.lines,
            [
                "hunt-run-finished run 0: exit 0",
                "hunt-run-finished run 1: exit 0",
                "hunt-run-finished run 2: exit 3 FAIL",
            ]
        );
        let report = h.tally.report(&cfg, h.stopped, Duration::from_secs(1), h.swept, h.exit_code);
        seen.event(&Event::HuntFinished { report: &report }).unwrap();
        assert_eq!(seen.lines.last().unwrap(), "hunt-finished 1 of 3 failing: until-fail");
    }

    /// Runs that finish in another order than they started (run 1 before run 0), each printing its
    /// index modulo 3.
    struct Swapped(Fake);

    impl Runner for Swapped {
        fn run_jobs(
            &mut self,
            jobs: &mut dyn Iterator<Item = Job>,
            _opts: &BatchOpts,
            sink: &mut dyn FnMut(RunRecord) -> Result<Control>,
        ) -> Result<usize> {
            let mut all: Vec<Job> = jobs.collect();
            all.swap(0, 1);
            for job in all {
                let mut rec = crate::replica::fake::record(job, 0);
                let digest = [(job.round % 3) as u8; 16];
                rec.stdout = crate::replica::Captured::summarised(crate::fingerprint::StreamSummary {
                    len: 2,
                    digest,
                });
                if sink(rec)? == Control::Stop {
                    break;
                }
            }
            Ok(0)
        }
        fn interrupted(&self) -> Option<i32> {
            None
        }
        fn stdin_replayable(&self) -> bool {
            true
        }
        fn now(&self) -> Instant {
            self.0.now()
        }
        fn clock(&self) -> crate::replica::Clock {
            self.0.clock()
        }
    }

    /// `--compare stdout` used to take the first run to finish as the reference: 70% instead of 60%
    /// when run 1 finished before run 0. The reference is the lowest-numbered passing run.
    #[test]
    fn the_reference_output_is_the_lowest_numbered_runs_whatever_finishes_first() {
        let cfg = config(&["--runs", "10", "--compare", "stdout"]);
        let opts = BatchOpts { parallel: 2, ..opts() };
        let mut runner = Swapped(Fake::new(1, |_| 0));
        let h = hunt(&mut runner, &cfg, &opts, &mut crate::events::Nobody).unwrap();
        assert_eq!((h.tally.runs, h.tally.failures), (10, 6));
        let report = h.tally.report(&cfg, h.stopped, Duration::from_secs(1), h.swept, h.exit_code);
        let failing: Vec<(usize, bool)> = report.outcomes.iter().map(|o| (o.first_run, o.failing)).collect();
        assert_eq!(failing, [(0, false), (1, true), (2, true)]);
    }
}
