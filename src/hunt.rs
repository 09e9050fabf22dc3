//! `tmr hunt`: the job of go's `stress` or `nextest --stress-count` — run a command K times, J at a time,
//! tally the distinct outcomes, estimate the failure rate with its Wilson interval, keep the failing runs'
//! output, and say what N-way voting would make of that rate.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::{Format, HuntConfig};
use crate::exit::{self, ExitError};
use crate::fingerprint::{signal_name, Fingerprint, Key};
use crate::replica::{BatchOpts, ChildSetup, Control, Harness, Job, Launcher, RunRecord, Runner};
use crate::report::StreamEntry;
use crate::stats::{majority_failure_probability, rule_of_three, wilson, Interval};

/// Exit code of a hunt that saw at least one failing run.
pub const FOUND_FAILURES: i32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct HuntReport {
    pub schema: &'static str,
    pub version: u32,
    pub command: Vec<String>,
    pub runs_planned: usize,
    pub runs: usize,
    pub jobs: usize,
    /// Why the hunt ended: completed, until-fail, duration, or the signal that stopped it.
    pub stopped: String,
    pub wall_s: f64,
    pub failures: usize,
    pub failure_rate: f64,
    pub confidence: f64,
    pub interval: Interval,
    /// With no failure: the rule-of-three upper bound on the failure rate.
    pub upper_bound_if_none: Option<f64>,
    pub outcomes: Vec<HuntOutcome>,
    /// What a strict-majority vote of N replicas would make of this failure rate (independent failures).
    pub voting: Vec<VotingEstimate>,
    pub kept: Option<String>,
    pub leaked_processes: usize,
    /// `--launcher slurm`: the allocation, node failures, and runs per node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<crate::launch::SlurmReport>,
    pub exit_code: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct HuntOutcome {
    pub outcome: crate::fingerprint::Outcome,
    pub stdout: StreamEntry,
    pub stderr: StreamEntry,
    pub count: usize,
    pub rate: f64,
    pub failing: bool,
    pub first_run: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct VotingEstimate {
    pub replicas: u64,
    pub failure_probability: f64,
    /// The same at the upper end of the failure rate's interval.
    pub at_upper_bound: f64,
}

struct Tally {
    outcomes: Vec<(Key, Fingerprint, usize, usize, bool)>,
    /// The first passing run's key: with outputs compared, a run that differs from it fails.
    reference: Option<Key>,
    runs: usize,
    failures: usize,
}

pub fn execute(cfg: &HuntConfig) -> Result<i32> {
    let report_file = cfg.output.as_deref().map(crate::report::create_file).transpose()?;
    if let Some(dir) = &cfg.keep {
        prepare_keep_dir(dir)?;
    }
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
        keep: cfg.keep.is_some(),
    };
    let progress = crate::report::progress_bar(
        cfg.runs as u64,
        "tmr hunt: {pos}/{len} runs · {msg} · {per_sec} · ETA {eta}",
    );
    let started = Instant::now();
    let mut index = None;
    let mut per_node = Vec::new();
    let hunted = hunt(&mut harness, cfg, &opts, &mut |rec, failing, tally| {
        if let Some(node) = &rec.node {
            crate::launch::tally(&mut per_node, node, failing);
        }
        if failing {
            if let Some(dir) = &cfg.keep {
                keep_run(dir, rec, &mut index)?;
            }
        }
        progress.inc(1);
        progress.set_message(format!(
            "{} failing ({:.1}%)",
            tally.failures,
            100.0 * tally.failures as f64 / tally.runs as f64
        ));
        Ok(())
    })?;
    progress.finish_and_clear();
    let Hunted { tally, stopped, swept, exit_code } = hunted;
    let mut report = tally.report(cfg, stopped, started.elapsed(), swept, exit_code);
    report.slurm = cluster.map(|c| crate::launch::SlurmReport {
        allocation: c.info(),
        replica_nodes: Vec::new(),
        node_failures: harness.node_failures.clone(),
        suspect: None,
        per_node,
    });
    let text = match cfg.format {
        Format::Json => serde_json::to_string_pretty(&report).expect("serialisable") + "\n",
        Format::Human => render(&report),
    };
    crate::report::emit(report_file, &text)?;
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

/// The hunt's loop and its policy (when to stop, the exit code), on any process layer: `each` sees every
/// run with whether it failed (to keep it, count it per node, show progress).
fn hunt(
    runner: &mut dyn Runner,
    cfg: &HuntConfig,
    opts: &BatchOpts,
    each: &mut dyn FnMut(&mut RunRecord, bool, &Tally) -> Result<()>,
) -> Result<Hunted> {
    // Drawn lazily: a hunt of a billion runs allocates nothing up front.
    let mut jobs = (0..cfg.runs).map(|i| Job { replica: 0, replicas: 1, round: i });
    let clock = runner.clock();
    let started = clock();
    let mut tally = Tally { outcomes: Vec::new(), reference: None, runs: 0, failures: 0 };
    let mut stopped = "completed".to_string();
    let swept = runner.run_jobs(&mut jobs, opts, &mut |mut rec| {
        // A run that tmr's own Ctrl-C ended says nothing about the command.
        if rec.stopped {
            return Ok(Control::Stop);
        }
        let failing = tally.add(&rec, cfg);
        each(&mut rec, failing, &tally)?;
        if failing && cfg.until_fail {
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
    /// Count one run; returns whether it failed.
    fn add(&mut self, rec: &RunRecord, cfg: &HuntConfig) -> bool {
        let fp = rec.fingerprint();
        let key = fp.key(cfg.compare);
        let passed = rec.outcome.is_success();
        if passed && self.reference.is_none() {
            self.reference = Some(key);
        }
        let compares_output = cfg.compare.stdout || cfg.compare.stderr;
        let failing = !passed || (compares_output && self.reference.is_some_and(|r| r != key));
        self.runs += 1;
        self.failures += failing as usize;
        match self.outcomes.iter_mut().find(|o| o.0 == key) {
            Some(o) => {
                o.2 += 1;
                // Runs finish out of order with -j > 1: keep the lowest run index.
                o.3 = o.3.min(rec.job.round);
            }
            None => self.outcomes.push((key, fp, 1, rec.job.round, failing)),
        }
        failing
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
            .map(|(_, fp, count, first, failing)| HuntOutcome {
                outcome: fp.outcome,
                stdout: fp.stdout.into(),
                stderr: fp.stderr.into(),
                count: *count,
                rate: *count as f64 / n.max(1) as f64,
                failing: *failing,
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

fn pct(p: f64) -> String {
    if p > 0.0 && p < 0.001 {
        format!("{:.2e}", p)
    } else {
        format!("{:.2}%", p * 100.0)
    }
}

pub fn render(r: &HuntReport) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str("tmr hunt: ");
        out.push_str(&s);
        out.push('\n');
    };
    let why = match r.stopped.as_str() {
        "completed" => String::new(),
        "until-fail" => " (stopped at the first failure)".into(),
        "duration" => " (stopped: --duration reached)".into(),
        sig => format!(" (interrupted by {sig})"),
    };
    line(format!(
        "{} of {} runs of `{}` ({} at a time) in {:.1}s{why}",
        r.runs,
        r.runs_planned,
        r.command.join(" "),
        r.jobs,
        r.wall_s
    ));
    line("distinct outcomes:".into());
    for o in &r.outcomes {
        line(format!(
            "  {:>6}  {:>7}  {}, stdout {} B {}{}",
            o.count,
            pct(o.rate),
            o.outcome.describe(),
            o.stdout.bytes,
            &o.stdout.xxh128[..8],
            if o.failing { format!("  FAIL, first at run {}", o.first_run) } else { String::new() }
        ));
    }
    let conf = format!("{:.0}%", r.confidence * 100.0);
    match r.upper_bound_if_none {
        Some(b) => line(format!(
            "no failure in {} runs: the failure rate is below {} ({conf} confidence)",
            r.runs,
            pct(b)
        )),
        None => line(format!(
            "failure rate {} ({}/{}), {conf} interval [{}, {}]",
            pct(r.failure_rate),
            r.failures,
            r.runs,
            pct(r.interval.lo),
            pct(r.interval.hi)
        )),
    }
    if r.failures > 0 {
        let v: Vec<String> = r
            .voting
            .iter()
            .map(|e| {
                format!(
                    "{}-way {} (at most {})",
                    e.replicas,
                    pct(e.failure_probability),
                    pct(e.at_upper_bound)
                )
            })
            .collect();
        line(format!(
            "with majority voting (tmr -n N), independent failures at this rate become: {} \
             [3-way: P = 3p² − 2p³]",
            v.join(", ")
        ));
    }
    if let Some(slurm) = &r.slurm {
        for text in crate::launch::human_lines(slurm) {
            line(text);
        }
    }
    if let Some(dir) = &r.kept {
        if r.failures > 0 {
            line(format!("kept the failing runs' output in {dir}/ (index.tsv)"));
        }
    }
    if r.leaked_processes > 0 {
        line(format!("killed {} leftover process(es) the runs left behind", r.leaked_processes));
    }
    out
}

fn prepare_keep_dir(dir: &Path) -> Result<()> {
    // create_new: an index.tsv already there is an earlier hunt's, whose run-<i> files this one would
    // overwrite; it is refused before anything runs.
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::OpenOptions::new().write(true).create_new(true).open(dir.join("index.tsv")))
        .and_then(|mut f| f.write_all(b"run\toutcome\texit_code\twall_ms\tstdout_bytes\tstdout_xxh128\n"))
        .map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
                "it holds an earlier hunt's files (index.tsv), which this one would overwrite: give a new or \
                 empty directory"
                    .to_string()
            } else {
                e.to_string()
            };
            ExitError {
                code: exit::TMR_ERROR,
                message: format!("tmr: cannot use --keep {}: {why}", dir.display()),
            }
            .into()
        })
}

/// Keep a failing run's stdout and stderr in `dir` and add its row to index.tsv. On any failure (a full
/// disk) nothing of the run is left behind: its files are removed and index.tsv is cut back to its last
/// complete row, so the directory only ever holds whole runs.
fn keep_run(dir: &Path, rec: &mut RunRecord, index: &mut Option<File>) -> Result<()> {
    let run = rec.job.round;
    let mut created = Vec::new();
    let kept = keep_streams(dir, rec, &mut created).and_then(|()| append_index_row(dir, rec, index));
    if kept.is_err() {
        for path in &created {
            let _ = std::fs::remove_file(path);
        }
    }
    kept.with_context(|| format!("keeping failing run {run} in {} (--keep)", dir.display()))
}

fn keep_streams(dir: &Path, rec: &mut RunRecord, created: &mut Vec<PathBuf>) -> Result<()> {
    let run = rec.job.round;
    for (name, cap) in [("stdout", &mut rec.stdout), ("stderr", &mut rec.stderr)] {
        let path: PathBuf = dir.join(format!("run-{run}.{name}"));
        let mut out = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        created.push(path.clone());
        if cap.summary.len > 0 {
            let mut spool = cap.file()?;
            copy_kept(&mut spool, &mut out).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Copy a spool from its start into a kept file.
fn copy_kept(spool: &mut &File, out: &mut impl Write) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    spool.seek(SeekFrom::Start(0))?;
    std::io::copy(spool, out)?;
    out.flush()
}

fn append_index_row(dir: &Path, rec: &RunRecord, index: &mut Option<File>) -> Result<()> {
    if index.is_none() {
        let path = dir.join("index.tsv");
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        *index = Some(f);
    }
    let f = index.as_mut().expect("just set");
    let row = format!(
        "{}\t{}\t{}\t{:.1}\t{}\t{}\n",
        rec.job.round,
        rec.outcome.describe(),
        rec.outcome.exit_code(),
        rec.wall.as_secs_f64() * 1e3,
        rec.stdout.summary.len,
        rec.stdout.summary.hex()
    );
    write_row(f, row.as_bytes()).context("writing index.tsv")
}

/// Append one whole row, or none: a partial write is cut off again.
fn write_row(f: &mut File, row: &[u8]) -> std::io::Result<()> {
    let before = f.metadata()?.len();
    f.write_all(row).inspect_err(|_| {
        let _ = f.set_len(before);
    })
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

    fn run(args: &[&str], fake: &mut Fake) -> Hunted {
        let cfg = config(args);
        let opts = BatchOpts {
            parallel: 1,
            timeout: None,
            stdout_masks: Vec::new(),
            stderr_masks: Vec::new(),
            setup: ChildSetup::default(),
            mem: false,
            reference_wall: None,
            keep: false,
        };
        hunt(fake, &cfg, &opts, &mut |_, _, _| Ok(())).unwrap()
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
}
