//! `tmr campaign`: the fault-tolerance experiment of the literature. One golden run, then K TMR rounds,
//! each with one fault injected into one replica; every trial is classified as masked (the faulty
//! replica's result equals golden), detected-corrected (it differed, the vote delivered golden), crash or
//! hang of the faulty replica (corrected), or escaped (the voted result is not golden: with one fault in
//! three replicas this must never happen). Every trial's seed and drawn values are recorded for replay.
//!
//! With `--faults K` (K > 1), `--checkpoint I` or `--compare-recovery I`, the trials are those of
//! `multi`: K faults in K different replicas, recovery on, off, or both, each trial tallied by what the
//! vote delivered (corrected, failed, no-majority, escaped), after three golden runs of each kind.
//!
//! Both loops run their trials through `multi::Trials` (processes in `multi::Live`, a scripted fake in
//! the unit tests) and tell each trial and the final report as events to their reporters (the progress
//! line, the summary); the reports and their rendering are `report::campaign`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::{CampaignConfig, Timeout};
use crate::events::{Event, Reporter, Reporters};
use crate::exit;
use crate::fingerprint::{signal_name, Compare, Key, Outcome};
use crate::inject::{InjectSpec, Rng, When};
use crate::replica::{BatchOpts, ChildSetup, Harness, Job, RunRecord};
pub use crate::report::campaign::{render, CampaignReport, Category, CategoryCount, GoldenEntry, TrialEntry};
use crate::reporters::{Progress, Summary};
use crate::stats::wilson;

pub mod multi;

/// What one trial produced, reduced to what its category depends on.
pub struct TrialFacts<K> {
    pub injected: bool,
    pub golden: K,
    pub faulty: K,
    pub faulty_outcome: Outcome,
    /// The faulty replica's memory differed from the page-majority (with `--mem`).
    pub faulty_memory_diverged: bool,
    /// The voted result, None without a majority.
    pub voted: Option<K>,
}

/// The standard categories. Escape is checked first: a wrong delivered result is what TMR must prevent,
/// whatever happened to the faulty replica.
pub fn categorize<K: PartialEq>(t: &TrialFacts<K>) -> Category {
    if !t.injected {
        return Category::NotInjected;
    }
    if t.voted.as_ref() != Some(&t.golden) {
        return Category::Escaped;
    }
    match t.faulty_outcome {
        Outcome::TimedOut => Category::Hang,
        Outcome::Signaled { .. } => Category::Crash,
        _ if t.faulty == t.golden && !t.faulty_memory_diverged => Category::Masked,
        _ => Category::DetectedCorrected,
    }
}

pub fn execute(cfg: &CampaignConfig) -> Result<i32> {
    // Checked before anything runs: a report path that cannot be written wastes no campaign.
    let summary =
        Summary::new(cfg.format, cfg.output.as_deref().map(crate::report::create_file).transpose()?, false);
    let path = crate::resolve::resolve(&cfg.command[0])?;
    // Recovery on: the tracers' argv with the checkpoint interval and the directory where they report
    // their walls to each other (the hang judgement), one for the whole campaign, emptied per trial.
    let checkpoint_dir = cfg
        .checkpoint
        .map(|_| crate::scratch::Scratch::new("tmr-checkpoint-", None))
        .transpose()
        .context("creating the directory where replicas report to each other")?;
    if let Some(dir) = &checkpoint_dir {
        // Campaigns roll back on crash and hang, with unaligned checkpoints: aligned epochs (tmr
        // --epoch-vote) checkpoint CPU-bound code only at its next system call.
        std::fs::write(dir.path().join(crate::trace::CHECKPOINT_SOLO), b"")
            .context("marking the checkpoint directory")?;
    }
    let argv_on = match (cfg.checkpoint, &checkpoint_dir) {
        (Some(i), Some(dir)) => {
            let on = crate::monitored::monitor_launcher_with(
                path.clone().into_os_string(),
                &cfg.command,
                cfg.det,
                Some((i, dir.path())),
            )?;
            on.argv.into_iter().map(|a| OsString::from_vec(a.into_bytes())).collect()
        }
        _ => Vec::new(),
    };
    let launcher = crate::monitored::monitor_launcher(path.into_os_string(), &cfg.command, cfg.det)?;
    let exe = OsString::from_vec(launcher.path.as_bytes().to_vec());
    let argv_off: Vec<OsString> =
        launcher.argv.iter().map(|a| OsString::from_vec(a.as_bytes().to_vec())).collect();
    let mut harness = Harness::new(launcher)?;
    let compare = Compare { exit: true, stdout: true, stderr: false, mem: cfg.mem };
    let started = Instant::now();

    // The golden run: one execution, no fault, under the same monitor as the trials.
    let golden_opts = golden_opts_again(cfg);
    let golden_batch = harness.run_batch(&[Job { replica: 0, replicas: 1, round: 0 }], &golden_opts)?;
    let golden = golden_batch.records.into_iter().next().context("the golden run did not finish")?;
    if harness.interrupted.is_some() {
        return Ok(exit::for_signal(harness.interrupted.unwrap_or(libc::SIGINT)));
    }
    if !golden.outcome.is_success() {
        crate::text::say(&format!(
            "tmr campaign: {}",
            crate::report::campaign::golden_failed_warning(&golden.outcome)
        ));
    }
    let golden_fp = golden.fingerprint();
    let golden_key = Compare { mem: false, ..compare };
    let golden_entry = GoldenEntry {
        outcome: golden.outcome,
        stdout_bytes: golden.stdout.summary.len,
        stdout_xxh128: golden.stdout.summary.hex(),
        wall_ms: golden.wall.as_secs_f64() * 1e3,
    };
    // A replica is hung when it runs 10x longer than the golden run (at least 2 s), unless told otherwise.
    let hang_limit = cfg.timeout.unwrap_or_else(|| (golden.wall * 10).max(Duration::from_secs(2)));
    let opts =
        BatchOpts { parallel: cfg.replicas, timeout: Some(Timeout::Absolute(hang_limit)), ..golden_opts };

    let modes = match (cfg.checkpoint, cfg.compare_recovery) {
        (Some(_), true) => vec![true, false],
        (Some(_), false) => vec![true],
        (None, _) => vec![false],
    };
    // The progress line first: it is cleared before the summary is written under it.
    let mut reporters = Reporters::new();
    reporters.add(Progress::campaign(cfg.trials, &modes));
    reporters.add(summary);
    if cfg.faults > 1 || cfg.checkpoint.is_some() {
        // One golden run's wall is at the mercy of the machine's load: three of each kind, the shortest
        // sets where fault times are drawn (so that they land), the longest sets the hang limit.
        // Checkpoints cost time (a fork and a page scan per interval): recovery-on trials get their
        // own golden runs, which must compute the golden result too.
        let mut notes = Vec::new();
        let Some(plain) = golden_runs(&mut harness, cfg, 2, &golden_fp.key(golden_key), golden_key)? else {
            return Ok(exit::for_signal(harness.interrupted.unwrap_or(libc::SIGINT)));
        };
        let (plain_min, plain_max) = (plain.shortest.min(golden.wall), plain.longest.max(golden.wall));
        if !plain.agree {
            notes.push(
                "the golden runs disagree: the program is not deterministic, so a trial's category is not \
                        the fault's alone (mask what varies, or fix the program's inputs)"
                    .to_string(),
            );
        }
        let hang_limit =
            |wall: Duration| cfg.timeout.unwrap_or_else(|| (wall * 10).max(Duration::from_secs(2)));
        let mut opts = opts;
        opts.timeout = Some(Timeout::Absolute(hang_limit(plain_max)));
        let mut golden_entry = golden_entry;
        golden_entry.wall_ms = plain_min.as_secs_f64() * 1e3;
        let mut golden_recovery = None;
        let mut recovery_min = plain_min;
        let mut opts_on =
            BatchOpts { parallel: cfg.replicas, timeout: opts.timeout, ..golden_opts_again(cfg) };
        if cfg.checkpoint.is_some() {
            harness.set_command(exe.clone(), &argv_on)?;
            let Some(GoldenRuns { shortest: min, longest: max, agree, first }) =
                golden_runs(&mut harness, cfg, 3, &golden_fp.key(golden_key), golden_key)?
            else {
                return Ok(exit::for_signal(harness.interrupted.unwrap_or(libc::SIGINT)));
            };
            if !agree {
                notes.push(
                    "a golden run with checkpoints did not compute the golden result: checkpointing changes what \
                     this program computes, so the recovery-on column measures that too"
                        .to_string(),
                );
            }
            opts_on.timeout = Some(Timeout::Absolute(hang_limit(max)));
            recovery_min = min;
            golden_recovery = first.map(|g| GoldenEntry {
                outcome: g.outcome,
                stdout_bytes: g.stdout.summary.len,
                stdout_xxh128: g.stdout.summary.hex(),
                wall_ms: min.as_secs_f64() * 1e3,
            });
        }
        let limit_ms = |o: &BatchOpts| match o.timeout {
            Some(Timeout::Absolute(d)) => Some(d.as_secs_f64() * 1e3),
            _ => None,
        };
        let hang_limit_ms = [limit_ms(&opts_on).filter(|_| cfg.checkpoint.is_some()), limit_ms(&opts)];
        let window = (!cfg.inject_has_time).then(|| multi::fault_window(plain_min, cfg.checkpoint));
        if let (Some(i), Some((from, to))) = (cfg.checkpoint, window) {
            if plain_min <= i {
                notes.push(format!(
                    "the golden run ({:.1} ms) is shorter than the checkpoint interval ({} ms): faults land \
                     before the first checkpoint, where no rollback is possible",
                    plain_min.as_secs_f64() * 1e3,
                    i.as_millis()
                ));
            } else if (to - from) / (cfg.faults as u32) < i {
                notes.push(format!(
                    "each fault's slice ({:.1} ms) is shorter than the checkpoint interval ({} ms): two faults \
                     may fall between the same two checkpoints",
                    ((to - from) / cfg.faults as u32).as_secs_f64() * 1e3,
                    i.as_millis()
                ));
            }
        }
        let plan = multi::Plan {
            template: &cfg.inject,
            seed: cfg.seed,
            trials: cfg.trials,
            replicas: cfg.replicas,
            faults: cfg.faults,
            window,
            modes: modes.clone(),
            recovery_time_scale: (recovery_min.as_secs_f64() / plain_min.as_secs_f64().max(1e-6)).max(1.0),
        };
        let recovery_time_scale =
            (window.is_some() && golden_recovery.is_some()).then_some(plan.recovery_time_scale);
        let mut live = multi::Live {
            harness: &mut harness,
            opts_on: &opts_on,
            opts_off: &opts,
            replicas: cfg.replicas,
            golden: golden_fp.key(golden_key),
            compare: golden_key,
            mem: cfg.mem,
            exe,
            argv_on,
            argv_off,
            checkpoint_dir: checkpoint_dir.as_ref().map(|d| d.path().to_path_buf()),
            current: None,
        };
        let (log, stopped) = multi::run_trials(&mut live, &plan, &mut reporters)?;
        let columns: Vec<multi::Column> =
            modes.iter().map(|&m| multi::column(&log, m, cfg.checkpoint)).collect();
        let exit_code = multi::exit_code(harness.interrupted, &columns);
        let report = multi::MultiReport {
            schema: "tmr-campaign-report",
            version: 2,
            mode: "multi-fault",
            command: cfg.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            replicas: cfg.replicas,
            faults: cfg.faults,
            seed: cfg.seed,
            trials_planned: cfg.trials,
            trials: log.len(),
            golden: golden_entry,
            golden_recovery,
            notes,
            recovery_time_scale,
            hang_limit_ms,
            fault_window_ms: window.map(|(a, b)| [a.as_secs_f64() * 1e3, b.as_secs_f64() * 1e3]),
            columns,
            trial_log: log,
            stopped,
            wall_s: started.elapsed().as_secs_f64(),
            exit_code,
        };
        reporters.event(&Event::MultiCampaignFinished { report: &report })?;
        return Ok(exit_code);
    }
    let mut live = multi::Live {
        harness: &mut harness,
        opts_on: &opts,
        opts_off: &opts,
        replicas: cfg.replicas,
        golden: golden_fp.key(golden_key),
        compare: golden_key,
        mem: cfg.mem,
        exe,
        argv_on: Vec::new(),
        argv_off,
        checkpoint_dir: None,
        current: Some(false),
    };
    let spec_of = |t: usize| trial_spec(cfg, t, golden.wall);
    let (log, stopped) = run_single(&mut live, cfg.trials, &spec_of, &mut reporters)?;
    let exit_code = single_exit_code(harness.interrupted, &log);
    let report = build(cfg, golden_entry, log, stopped, started.elapsed(), exit_code);
    reporters.event(&Event::CampaignFinished { report: &report })?;
    Ok(exit_code)
}

/// The single-fault loop: trial `t` injects `spec_of(t)` into the replica it names, recovery off, and
/// is told to `reporter` as it ends. Pure but for `trials` (the same process seam as the multi-fault
/// loop's), so the categories and the stop are unit-tested on a scripted fake. Returns the trials and
/// how the loop ended ("completed", or the stop signal's name).
pub fn run_single(
    trials: &mut dyn multi::Trials,
    n: usize,
    spec_of: &dyn Fn(usize) -> InjectSpec,
    reporter: &mut dyn Reporter,
) -> Result<(Vec<TrialEntry>, String)> {
    let mut log = Vec::new();
    for trial in 0..n {
        let spec = spec_of(trial);
        let replica = spec.replica.unwrap_or(0);
        let Some(run) = trials.run(&spec.to_text(), false)? else {
            return Ok((log, signal_name(trials.interrupted().unwrap_or(libc::SIGINT))));
        };
        let faulty = run
            .replicas
            .get(replica)
            .with_context(|| format!("trial {trial}: no record of replica {replica}, the faulty one"))?;
        // Keys reduced to "is it golden": the categories only compare with golden.
        let facts = TrialFacts {
            injected: faulty.injected.is_some(),
            golden: true,
            faulty: faulty.golden,
            faulty_outcome: faulty.outcome,
            faulty_memory_diverged: faulty.mem_diverged,
            voted: match run.voted {
                multi::Voted::Golden => Some(true),
                multi::Voted::Wrong | multi::Voted::Failed => Some(false),
                multi::Voted::None => None,
            },
        };
        log.push(TrialEntry {
            trial,
            category: categorize(&facts),
            spec: spec.to_text(),
            replica,
            injected: faulty.injected.clone(),
            error: match (&faulty.injected, &faulty.inject_error) {
                (Some(_), _) => None,
                (None, Some(e)) => Some(e.clone()),
                (None, None) => Some("the monitor reported nothing".into()),
            },
            faulty_outcome: faulty.outcome,
        });
        reporter.event(&Event::CampaignTrialFinished { trial: log.last().expect("just pushed") })?;
    }
    Ok((log, "completed".into()))
}

/// The single-fault campaign's exit code: the stop signal's, else 1 when a wrong answer escaped the vote.
pub fn single_exit_code(interrupted: Option<i32>, log: &[TrialEntry]) -> i32 {
    match interrupted {
        Some(sig) => exit::for_signal(sig),
        None if log.iter().any(|t| t.category == Category::Escaped) => 1,
        None => 0,
    }
}

/// Golden runs of one kind: their shortest and longest walls, whether each computed the expected
/// result, and the first one's record.
struct GoldenRuns {
    shortest: Duration,
    longest: Duration,
    agree: bool,
    first: Option<RunRecord>,
}

/// `n` more golden runs with the harness's current command. `None` when a stop signal ended them.
fn golden_runs(
    harness: &mut Harness,
    cfg: &CampaignConfig,
    n: usize,
    expect: &Key,
    compare: Compare,
) -> Result<Option<GoldenRuns>> {
    let (mut min, mut max, mut agree, mut first) = (Duration::MAX, Duration::ZERO, true, None);
    for _ in 0..n {
        let batch =
            harness.run_batch(&[Job { replica: 0, replicas: 1, round: 0 }], &golden_opts_again(cfg))?;
        if harness.interrupted.is_some() {
            return Ok(None);
        }
        let g = batch.records.into_iter().next().context("a golden run did not finish")?;
        min = min.min(g.wall);
        max = max.max(g.wall);
        agree &= g.fingerprint().key(compare) == *expect;
        first.get_or_insert(g);
    }
    Ok(Some(GoldenRuns { shortest: min, longest: max, agree, first }))
}

/// The options of a golden run: one execution, bounded only by `--timeout`.
fn golden_opts_again(cfg: &CampaignConfig) -> BatchOpts {
    BatchOpts {
        parallel: 1,
        timeout: cfg.timeout.map(Timeout::Absolute),
        stdout_masks: vec![],
        stderr_masks: vec![],
        setup: ChildSetup::default(),
        mem: true,
        reference_wall: None,
        keep: None,
    }
}

/// Trial `t`'s spec: the template with its open choices drawn from the campaign seed. A fault time not
/// given is drawn uniformly over the golden run's wall time, so faults land while the program computes.
fn trial_spec(cfg: &CampaignConfig, t: usize, golden_wall: Duration) -> InjectSpec {
    let mut rng = Rng::new(cfg.seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut spec = cfg.inject.clone();
    spec.seed = rng.next_u64();
    spec.replica = Some(spec.replica.unwrap_or_else(|| rng.below(cfg.replicas as u64) as usize));
    if !cfg.inject_has_time {
        let micros = (golden_wall.as_micros() as u64).max(1);
        spec.when = When::After(Duration::from_micros(rng.below(micros)));
    }
    spec
}

fn build(
    cfg: &CampaignConfig,
    golden: GoldenEntry,
    log: Vec<TrialEntry>,
    stopped: String,
    wall: Duration,
    exit_code: i32,
) -> CampaignReport {
    let n = log.len() as u64;
    let injected = log.iter().filter(|t| t.category != Category::NotInjected).count() as u64;
    let count = |c: Category| log.iter().filter(|t| t.category == c).count();
    let table = Category::ALL
        .iter()
        .map(|&c| {
            let k = count(c) as u64;
            let base = if c == Category::NotInjected { n } else { injected };
            CategoryCount {
                category: c,
                count: k as usize,
                rate: if base > 0 { k as f64 / base as f64 } else { 0.0 },
                interval: wilson(k, base, 0.95),
            }
        })
        .collect();
    let unprotected = (count(Category::DetectedCorrected)
        + count(Category::Crash)
        + count(Category::Hang)
        + count(Category::Escaped)) as u64;
    let sdc = log
        .iter()
        .filter(|t| t.category == Category::DetectedCorrected && t.faulty_outcome == golden.outcome)
        .count() as f64;
    CampaignReport {
        schema: "tmr-campaign-report",
        version: 1,
        command: cfg.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        replicas: cfg.replicas,
        seed: cfg.seed,
        trials_planned: cfg.trials,
        trials: log.len(),
        injected: injected as usize,
        golden,
        table,
        unprotected_failure_rate: if injected > 0 { unprotected as f64 / injected as f64 } else { 0.0 },
        unprotected_interval: wilson(unprotected, injected, 0.95),
        unprotected_sdc_rate: if injected > 0 { sdc / injected as f64 } else { 0.0 },
        escaped: count(Category::Escaped),
        trial_log: log,
        stopped,
        wall_s: wall.as_secs_f64(),
        exit_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(faulty: char, outcome: Outcome, voted: Option<char>) -> TrialFacts<char> {
        TrialFacts {
            injected: true,
            golden: 'g',
            faulty,
            faulty_outcome: outcome,
            faulty_memory_diverged: false,
            voted,
        }
    }

    const OK: Outcome = Outcome::Exited { code: 0 };

    #[test]
    fn the_standard_categories() {
        assert_eq!(categorize(&facts('g', OK, Some('g'))), Category::Masked);
        assert_eq!(categorize(&facts('x', OK, Some('g'))), Category::DetectedCorrected);
        assert_eq!(categorize(&facts('x', Outcome::Signaled { signal: 11 }, Some('g'))), Category::Crash);
        assert_eq!(categorize(&facts('x', Outcome::TimedOut, Some('g'))), Category::Hang);
        assert_eq!(categorize(&facts('x', OK, Some('x'))), Category::Escaped);
        assert_eq!(categorize(&facts('x', OK, None)), Category::Escaped);
        let mut f = facts('g', OK, Some('g'));
        f.faulty_memory_diverged = true;
        assert_eq!(categorize(&f), Category::DetectedCorrected);
        f.injected = false;
        assert_eq!(categorize(&f), Category::NotInjected);
    }

    /// A campaign with no fault injected used to conclude "none escaped: every fault was masked or
    /// corrected", and a golden run that failed went unremarked.
    #[test]
    fn a_campaign_without_injected_faults_claims_nothing_and_a_failing_golden_run_is_flagged() {
        let argv = ["tmr", "campaign", "--trials", "1", "true"].map(std::ffi::OsString::from);
        let crate::cli::Parsed::Campaign(cfg) = crate::cli::parse(argv) else { panic!("bad arguments") };
        let golden = GoldenEntry {
            outcome: Outcome::Exited { code: 3 },
            stdout_bytes: 0,
            stdout_xxh128: "0".repeat(32),
            wall_ms: 1.0,
        };
        let trial = TrialEntry {
            trial: 0,
            category: Category::NotInjected,
            spec: String::new(),
            replica: 0,
            injected: None,
            error: Some("the run ended before the fault".into()),
            faulty_outcome: Outcome::Exited { code: 3 },
        };
        let report = build(&cfg, golden, vec![trial], "completed".into(), Duration::from_secs(1), 0);
        let text = crate::report::campaign::render(&report);
        assert!(!text.contains("none escaped"), "{text}");
        assert!(text.contains("no fault was injected in 1 trial:"), "{text}");
        assert!(
            text.contains("1 trial of") && text.contains("warning: the golden run failed (exit 3)"),
            "{text}"
        );
    }

    /// A scripted trial runner: each trial's replicas (golden?, outcome, injected?), then a stop.
    struct Scripted {
        runs: std::collections::VecDeque<multi::TrialRun>,
        specs: Vec<String>,
        interrupted: Option<i32>,
    }

    impl multi::Trials for Scripted {
        fn run(&mut self, specs: &str, recovery: bool) -> Result<Option<multi::TrialRun>> {
            assert!(!recovery, "single-fault trials run without recovery");
            self.specs.push(specs.to_string());
            let run = self.runs.pop_front();
            if run.is_none() {
                self.interrupted = Some(libc::SIGINT);
            }
            Ok(run)
        }
        fn interrupted(&self) -> Option<i32> {
            self.interrupted
        }
    }

    fn trial_run(voted: multi::Voted, replicas: [(bool, Outcome, bool); 3]) -> multi::TrialRun {
        let replicas = replicas
            .iter()
            .enumerate()
            .map(|(i, &(golden, outcome, injected))| multi::ReplicaRun {
                golden,
                outcome,
                mem_diverged: false,
                injected: injected.then(|| crate::inject::Injected {
                    replica: i,
                    at_ms: 1.0,
                    seed: 0,
                    what: crate::inject::InjectedWhat::Register {
                        reg: "rax".into(),
                        bit: 3,
                        before: 0,
                        after: 8,
                    },
                }),
                inject_error: (!injected).then(|| "the run ended before the fault".to_string()),
                rollbacks: Vec::new(),
                checkpoint_stopped: None,
            })
            .collect();
        multi::TrialRun { voted, replicas }
    }

    /// The single-fault loop on a fake: each trial's category comes from its faulty replica (the one its
    /// spec names) and the vote; a stop signal ends the loop with what ran so far, and its code.
    #[test]
    fn the_single_fault_loop_categorizes_each_trial_and_stops_on_a_signal() {
        use multi::Voted;
        let segv = Outcome::Signaled { signal: libc::SIGSEGV };
        let spec_of = |t: usize| {
            let mut spec = InjectSpec::parse("reg:reg=rax,bit=3").unwrap();
            spec.replica = Some([1, 0, 2, 1][t]);
            spec
        };
        let mut fake = Scripted {
            runs: std::collections::VecDeque::from(vec![
                // Replica 1 crashed, the other two won: crash (corrected).
                trial_run(Voted::Golden, [(true, OK, false), (false, segv, true), (true, OK, false)]),
                // Replica 0's result was golden anyway: masked.
                trial_run(Voted::Golden, [(true, OK, true), (true, OK, false), (true, OK, false)]),
                // Replica 2 never got its fault.
                trial_run(Voted::Golden, [(true, OK, false), (true, OK, false), (true, OK, false)]),
            ]),
            specs: Vec::new(),
            interrupted: None,
        };
        let mut seen = crate::events::Recorder::default();
        let (log, stopped) = run_single(&mut fake, 4, &spec_of, &mut seen).unwrap();
        assert_eq!(stopped, "SIGINT");
        assert_eq!(
            log.iter().map(|t| (t.replica, t.category)).collect::<Vec<_>>(),
            [(1, Category::Crash), (0, Category::Masked), (2, Category::NotInjected)]
        );
        assert_eq!(log[2].error.as_deref(), Some("the run ended before the fault"));
        assert_eq!(log[0].error, None);
        assert_eq!(fake.specs.len(), 4, "the fourth trial was started and stopped");
        assert_eq!(
            seen.lines,
            [
                "campaign-trial-finished trial 0: crash",
                "campaign-trial-finished trial 1: masked",
                "campaign-trial-finished trial 2: not-injected"
            ]
        );
        assert_eq!(single_exit_code(fake.interrupted, &log), 130);
    }

    /// A wrong answer that won the vote, or no majority at all, is an escape: exit 1.
    #[test]
    fn an_escape_ends_the_single_fault_campaign_with_1() {
        use multi::Voted;
        let spec_of = |_| {
            let mut spec = InjectSpec::parse("reg:reg=rax,bit=3").unwrap();
            spec.replica = Some(0);
            spec
        };
        for voted in [Voted::Wrong, Voted::None, Voted::Failed] {
            let mut fake = Scripted {
                runs: vec![trial_run(voted, [(false, OK, true), (false, OK, false), (true, OK, false)])]
                    .into(),
                specs: Vec::new(),
                interrupted: None,
            };
            let (log, stopped) =
                run_single(&mut fake, 1, &spec_of, &mut crate::events::Recorder::default()).unwrap();
            assert_eq!((stopped.as_str(), log[0].category), ("completed", Category::Escaped), "{voted:?}");
            assert_eq!(single_exit_code(None, &log), 1);
        }
    }
}
