//! `tmr campaign --faults K`, `--checkpoint I` and `--compare-recovery I`: trials with K faults in K
//! different replicas at different times, run with recovery (checkpoints and rollback), without, or
//! both with the same faults, and tallied side by side.
//!
//! A trial's result is what the vote delivered: *corrected* (the golden result), *failed* (a majority
//! crashed or hung alike: tmr reports that failure and delivers no answer), *no-majority*, or *escaped*
//! (a majority ended normally with a wrong result: a wrong answer delivered). A trial in which fewer than K faults landed is *not-injected* and left
//! out of the shares. Each fault also gets its own effect on its replica's final result (masked,
//! recovered by a rollback, memory-only, wrong result, crash, hang). Pure except [`Live`], the
//! process-backed [`Trials`]: the loop, the draws, the categories and the exit code are unit-tested on
//! a scripted fake.

use std::time::Duration;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::epoch::Rollback;
use crate::events::{Event, Reporter};
use crate::fingerprint::{signal_name, Compare, Key, Outcome};
use crate::inject::{InjectSpec, Injected, Rng, When};
use crate::memvote::{vote_pages, MemSnapshot};
use crate::replica::{BatchOpts, Harness, Job};
pub use crate::report::campaign::multi::{
    render, Column, FaultEffect, FaultEntry, MultiReport, ReplicaRollbacks, Row, RunEntry, TrialEntry,
    TrialResult,
};
use crate::stats::wilson;
use crate::vote::vote;

/// The vote of one trial, against golden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voted {
    Golden,
    /// A majority that ended normally (an exit code) with another result.
    Wrong,
    /// A majority that crashed or hung alike.
    Failed,
    None,
}

/// One replica of one trial, reduced to what the categories depend on.
#[derive(Debug, Clone)]
pub struct ReplicaRun {
    /// Its final result (exit and stdout) equals golden.
    pub golden: bool,
    pub outcome: Outcome,
    /// Its memory differed from the page majority (only with `--mem`).
    pub mem_diverged: bool,
    pub injected: Option<Injected>,
    pub inject_error: Option<String>,
    pub rollbacks: Vec<Rollback>,
    /// Why checkpointing stopped early in this replica (threads, a child process…).
    pub checkpoint_stopped: Option<String>,
}

/// One trial's replicas and vote.
#[derive(Debug, Clone)]
pub struct TrialRun {
    pub voted: Voted,
    pub replicas: Vec<ReplicaRun>,
}

/// The process layer of the loop: run one trial with the faults of `specs` (joined, for the monitors)
/// with recovery on or off. `None` when a stop signal ended it.
pub trait Trials {
    fn run(&mut self, specs: &str, recovery: bool) -> Result<Option<TrialRun>>;
    fn interrupted(&self) -> Option<i32>;
}

/// The real process layer: N replicas under the monitor, its argv switched between recovery on
/// (`--checkpoint-ms`) and off between trials. The single-fault loop uses it too, recovery off only.
pub struct Live<'a> {
    pub harness: &'a mut Harness,
    /// Recovery on and off: each with its hang limit, from its own golden run.
    pub opts_on: &'a BatchOpts,
    pub opts_off: &'a BatchOpts,
    pub replicas: usize,
    pub golden: Key,
    /// What a replica's result is compared on (exit and stdout).
    pub compare: Compare,
    /// `--mem`: a replica whose memory differs from the page majority is noted.
    pub mem: bool,
    /// The monitor's executable and its two argvs.
    pub exe: OsString,
    pub argv_on: Vec<OsString>,
    pub argv_off: Vec<OsString>,
    /// Where the tracers of a checkpointed trial report their walls (emptied before each).
    pub checkpoint_dir: Option<PathBuf>,
    pub current: Option<bool>,
}

impl Trials for Live<'_> {
    fn run(&mut self, specs: &str, recovery: bool) -> Result<Option<TrialRun>> {
        if self.current != Some(recovery) {
            let argv = if recovery { &self.argv_on } else { &self.argv_off };
            self.harness.set_command(self.exe.clone(), argv)?;
            self.current = Some(recovery);
        }
        if let (true, Some(dir)) = (recovery, &self.checkpoint_dir) {
            // The previous trial's walls would make this trial's replicas look hung, or not.
            for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
                let path = e?.path();
                if path.file_name().is_some_and(|n| n == crate::trace::CHECKPOINT_SOLO) {
                    continue;
                }
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        self.harness.set_env(crate::inject::ENV, specs)?;
        let jobs: Vec<Job> =
            (0..self.replicas).map(|r| Job { replica: r, replicas: self.replicas, round: 0 }).collect();
        let opts = if recovery { self.opts_on } else { self.opts_off };
        let mut records = self.harness.run_batch(&jobs, opts)?.records;
        if self.harness.interrupted.is_some() || records.len() < self.replicas {
            return Ok(None);
        }
        let snaps: Vec<Option<&MemSnapshot>> =
            records.iter().map(|r| r.mem.as_ref().filter(|s| s.unavailable.is_none())).collect();
        let pages = vote_pages(&snaps);
        for (r, k) in records.iter_mut().zip(&pages.keys) {
            r.mem_key = Some(*k);
        }
        let keys: Vec<Key> = records.iter().map(|r| r.fingerprint().key(self.compare)).collect();
        let voted = match vote(&keys).majority().map(|g| (g.key, records[g.members[0]].outcome)) {
            Some((k, _)) if k == self.golden => Voted::Golden,
            Some((_, Outcome::Exited { .. })) => Voted::Wrong,
            Some(_) => Voted::Failed,
            None => Voted::None,
        };
        let replicas = records
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (rec, key))| {
                let snap = rec.mem.as_ref();
                let log = snap.and_then(|s| s.checkpoints.as_ref());
                ReplicaRun {
                    golden: *key == self.golden,
                    outcome: rec.outcome,
                    mem_diverged: self.mem && pages.divergent.iter().any(|d| d.replica == i),
                    injected: snap.and_then(|s| s.injected.clone()),
                    inject_error: snap.and_then(|s| s.inject_error.clone()),
                    rollbacks: log.map(|l| l.rollbacks.clone()).unwrap_or_default(),
                    checkpoint_stopped: log.and_then(|l| l.stopped.clone()),
                }
            })
            .collect();
        Ok(Some(TrialRun { voted, replicas }))
    }

    fn interrupted(&self) -> Option<i32> {
        self.harness.interrupted
    }
}

/// The trial's result from its vote and how many of its faults landed.
pub fn trial_result(voted: Voted, planned: usize, landed: usize) -> TrialResult {
    match voted {
        _ if landed < planned => TrialResult::NotInjected,
        Voted::Golden => TrialResult::Corrected,
        Voted::Failed => TrialResult::Failed,
        Voted::None => TrialResult::NoMajority,
        Voted::Wrong => TrialResult::Escaped,
    }
}

/// The fault's effect on its replica, from the replica's final state. A rollback that did not end in
/// the golden result is not a recovery: the final state (crash, hang, wrong) is the effect.
pub fn fault_effect(r: &ReplicaRun) -> FaultEffect {
    let rolled_back = r.rollbacks.iter().any(|b| b.resumed_epoch.is_some());
    match r.outcome {
        _ if r.injected.is_none() => FaultEffect::NotInjected,
        Outcome::TimedOut => FaultEffect::Hang,
        Outcome::Signaled { .. } => FaultEffect::Crash,
        _ if !r.golden => FaultEffect::WrongResult,
        _ if rolled_back => FaultEffect::Recovered,
        _ if r.mem_diverged => FaultEffect::MemoryOnly,
        _ => FaultEffect::Masked,
    }
}

/// Where fault times are drawn: from the first checkpoint (when recovery is on and it comes before the
/// golden run's end: a fault before any checkpoint cannot be rolled back) to the golden run's end.
pub fn fault_window(golden_wall: Duration, checkpoint: Option<Duration>) -> (Duration, Duration) {
    let from = checkpoint.filter(|&i| i < golden_wall).unwrap_or(Duration::ZERO);
    (from, golden_wall.max(from + Duration::from_micros(1)))
}

/// Trial `t`'s seed and its K faults: K different replicas in a drawn order, the j-th fault's time
/// uniform in the j-th of K equal slices of `window` (so no two share a slice, and with slices at least
/// one checkpoint interval long, no two share an interval). A template with a fixed time keeps it.
pub fn draw_trial(
    template: &InjectSpec,
    campaign_seed: u64,
    t: usize,
    replicas: usize,
    k: usize,
    window: Option<(Duration, Duration)>,
) -> (u64, Vec<InjectSpec>) {
    let trial_seed = Rng::new(campaign_seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
    let mut rng = Rng::new(trial_seed);
    let mut order: Vec<usize> = (0..replicas).collect();
    // Partial Fisher-Yates: the first k of a uniform permutation.
    for i in 0..k.min(replicas) {
        let j = i + rng.below((replicas - i) as u64) as usize;
        order.swap(i, j);
    }
    let specs = (0..k.min(replicas))
        .map(|j| {
            let mut spec = template.clone();
            spec.seed = rng.next_u64();
            spec.replica = Some(order[j]);
            if let Some((from, to)) = window {
                let (from, to) = (from.as_micros() as u64, to.as_micros() as u64);
                let span = to.saturating_sub(from).max(k as u64);
                let (lo, hi) = (from + span * j as u64 / k as u64, from + span * (j as u64 + 1) / k as u64);
                spec.when = When::After(Duration::from_micros(lo + rng.below((hi - lo).max(1))));
            }
            spec
        })
        .collect();
    (trial_seed, specs)
}

/// What the loop needs to know besides the process layer.
pub struct Plan<'a> {
    pub template: &'a InjectSpec,
    pub seed: u64,
    pub trials: usize,
    pub replicas: usize,
    pub faults: usize,
    pub window: Option<(Duration, Duration)>,
    /// The recovery settings to run each trial with, in order (on first when both).
    pub modes: Vec<bool>,
    /// Drawn fault times are multiplied by this in recovery-on runs (their golden wall over the plain
    /// golden wall), so that a fault hits about the same point of the program in both; 1 for a time
    /// the template fixed.
    pub recovery_time_scale: f64,
}

/// The specs with every drawn time multiplied by `scale`.
pub fn scaled(specs: &[InjectSpec], scale: f64) -> Vec<InjectSpec> {
    specs
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if let When::After(d) = s.when {
                s.when = When::After(d.mul_f64(scale.clamp(0.0, 1e6)));
            }
            s
        })
        .collect()
}

/// The loop: every trial's faults drawn, run once per mode, categorized, and told to `reporter`.
/// Returns the log and why it stopped.
pub fn run_trials(
    trials: &mut dyn Trials,
    plan: &Plan,
    reporter: &mut dyn Reporter,
) -> Result<(Vec<TrialEntry>, String)> {
    let mut log = Vec::new();
    for t in 0..plan.trials {
        let (seed, specs) = draw_trial(plan.template, plan.seed, t, plan.replicas, plan.faults, plan.window);
        let text = crate::inject::join_specs(&specs);
        let mut runs = Vec::new();
        for &recovery in &plan.modes {
            let specs = if recovery && plan.window.is_some() {
                scaled(&specs, plan.recovery_time_scale)
            } else {
                specs.clone()
            };
            let Some(run) = trials.run(&crate::inject::join_specs(&specs), recovery)? else {
                let sig = trials.interrupted().unwrap_or(libc::SIGINT);
                return Ok((log, signal_name(sig)));
            };
            runs.push(entry(&specs, recovery, &run));
        }
        log.push(TrialEntry { trial: t, seed, specs: text, runs });
        reporter.event(&Event::MultiTrialFinished { trial: log.last().expect("just pushed") })?;
    }
    Ok((log, "completed".into()))
}

fn entry(specs: &[InjectSpec], recovery: bool, run: &TrialRun) -> RunEntry {
    let faults: Vec<FaultEntry> = specs
        .iter()
        .map(|spec| {
            let replica = spec.replica.unwrap_or(0);
            let missing = ReplicaRun {
                golden: false,
                outcome: Outcome::TimedOut,
                mem_diverged: false,
                injected: None,
                inject_error: Some("the replica did not report".into()),
                rollbacks: Vec::new(),
                checkpoint_stopped: None,
            };
            let r = run.replicas.get(replica).unwrap_or(&missing);
            FaultEntry {
                replica,
                spec: spec.to_text(),
                effect: fault_effect(r),
                outcome: r.outcome,
                injected: r.injected.clone(),
                error: if r.injected.is_some() {
                    None
                } else {
                    Some(r.inject_error.clone().unwrap_or_else(|| "the monitor reported nothing".into()))
                },
            }
        })
        .collect();
    let landed = faults.iter().filter(|f| f.effect != FaultEffect::NotInjected).count();
    RunEntry {
        recovery,
        result: trial_result(run.voted, specs.len(), landed),
        faults,
        rollbacks: run
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.rollbacks.is_empty())
            .map(|(replica, r)| ReplicaRollbacks { replica, rollbacks: r.rollbacks.clone() })
            .collect(),
        checkpoint_stopped: run
            .replicas
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.checkpoint_stopped.as_ref().map(|s| format!("replica {i}: {s}")))
            .collect(),
    }
}

fn row(name: &'static str, count: usize, base: usize) -> Row {
    Row {
        name,
        count,
        rate: if base > 0 { count as f64 / base as f64 } else { 0.0 },
        interval: wilson(count as u64, base as u64, 0.95),
    }
}

/// One column of the table: the runs of every trial with this recovery setting.
pub fn column(log: &[TrialEntry], recovery: bool, checkpoint: Option<Duration>) -> Column {
    let runs: Vec<&RunEntry> = log.iter().flat_map(|t| &t.runs).filter(|r| r.recovery == recovery).collect();
    let count = |c: TrialResult| runs.iter().filter(|r| r.result == c).count();
    let complete = runs.len() - count(TrialResult::NotInjected);
    let results = TrialResult::ALL
        .iter()
        .map(|&c| row(c.name(), count(c), if c == TrialResult::NotInjected { runs.len() } else { complete }))
        .collect();
    let faults: Vec<&FaultEntry> = runs.iter().flat_map(|r| &r.faults).collect();
    let fcount = |e: FaultEffect| faults.iter().filter(|f| f.effect == e).count();
    let landed = faults.len() - fcount(FaultEffect::NotInjected);
    let fault_rows = FaultEffect::ALL
        .iter()
        .filter(|&&e| recovery || e != FaultEffect::Recovered)
        .map(|&e| row(e.name(), fcount(e), if e == FaultEffect::NotInjected { faults.len() } else { landed }))
        .collect();
    Column {
        recovery,
        checkpoint_ms: checkpoint.filter(|_| recovery).map(|d| d.as_secs_f64() * 1e3),
        trials: runs.len(),
        results,
        faults: fault_rows,
        trials_with_rollback: runs
            .iter()
            .filter(|r| r.rollbacks.iter().any(|b| b.rollbacks.iter().any(|x| x.resumed_epoch.is_some())))
            .count(),
        trials_with_checkpoint_stopped: runs.iter().filter(|r| !r.checkpoint_stopped.is_empty()).count(),
        failed: count(TrialResult::Failed),
        no_majority: count(TrialResult::NoMajority),
        escaped: count(TrialResult::Escaped),
    }
}

/// 128+N after a stop signal; 1 when a trial of the configuration under test (recovery on, when it
/// ran) delivered a wrong result; else 0. The recovery-off column of `--compare-recovery` is the
/// baseline: with two faults among three replicas it is expected to fail. No majority is not an
/// escape: tmr says it has no answer rather than delivering a wrong one.
pub fn exit_code(interrupted: Option<i32>, columns: &[Column]) -> i32 {
    let judged = columns.iter().find(|c| c.recovery).or(columns.first());
    match interrupted {
        Some(sig) => crate::exit::for_signal(sig),
        None if judged.is_some_and(|c| c.escaped > 0) => 1,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    const OK: Outcome = Outcome::Exited { code: 0 };

    fn injected(replica: usize) -> Injected {
        Injected {
            replica,
            at_ms: 1.0,
            seed: 0,
            what: crate::inject::InjectedWhat::Register { reg: "rax".into(), bit: 0, before: 0, after: 1 },
        }
    }

    fn replica(golden: bool, outcome: Outcome, fault: Option<usize>, rolled: bool) -> ReplicaRun {
        ReplicaRun {
            golden,
            outcome,
            mem_diverged: false,
            injected: fault.map(injected),
            inject_error: None,
            rollbacks: if rolled {
                vec![Rollback {
                    at_ms: 2.0,
                    cause: "SIGSEGV".into(),
                    resumed_epoch: Some(1),
                    note: String::new(),
                }]
            } else {
                Vec::new()
            },
            checkpoint_stopped: None,
        }
    }

    #[test]
    fn a_trial_is_categorized_by_its_vote_once_every_fault_landed() {
        assert_eq!(trial_result(Voted::Golden, 2, 2), TrialResult::Corrected);
        assert_eq!(trial_result(Voted::None, 2, 2), TrialResult::NoMajority);
        assert_eq!(trial_result(Voted::Wrong, 3, 3), TrialResult::Escaped);
        assert_eq!(trial_result(Voted::Failed, 3, 3), TrialResult::Failed);
        assert_eq!(trial_result(Voted::Golden, 2, 1), TrialResult::NotInjected);
        assert_eq!(trial_result(Voted::Wrong, 2, 0), TrialResult::NotInjected);
    }

    #[test]
    fn a_fault_is_judged_by_its_replica_final_state() {
        assert_eq!(fault_effect(&replica(true, OK, Some(0), false)), FaultEffect::Masked);
        assert_eq!(fault_effect(&replica(true, OK, Some(0), true)), FaultEffect::Recovered);
        assert_eq!(fault_effect(&replica(false, OK, Some(0), true)), FaultEffect::WrongResult);
        let segv = Outcome::Signaled { signal: libc::SIGSEGV };
        assert_eq!(fault_effect(&replica(false, segv, Some(0), true)), FaultEffect::Crash);
        assert_eq!(fault_effect(&replica(false, Outcome::TimedOut, Some(0), false)), FaultEffect::Hang);
        assert_eq!(fault_effect(&replica(true, OK, None, false)), FaultEffect::NotInjected);
        let mut mem = replica(true, OK, Some(0), false);
        mem.mem_diverged = true;
        assert_eq!(fault_effect(&mem), FaultEffect::MemoryOnly);
        // A rollback that was refused (no checkpoint resumed) is no recovery.
        let mut refused = replica(true, OK, Some(0), true);
        refused.rollbacks[0].resumed_epoch = None;
        assert_eq!(fault_effect(&refused), FaultEffect::Masked);
    }

    #[test]
    fn k_faults_go_into_k_different_replicas_each_in_its_own_slice() {
        let template = InjectSpec::parse("flip:region=heap").unwrap();
        let window = (Duration::from_millis(50), Duration::from_millis(350));
        for t in 0..200 {
            for k in 1..=3 {
                let (seed, specs) = draw_trial(&template, 9, t, 3, k, Some(window));
                assert_eq!(specs.len(), k);
                let mut reps: Vec<usize> = specs.iter().map(|s| s.replica.unwrap()).collect();
                reps.sort();
                reps.dedup();
                assert_eq!(reps.len(), k, "different replicas: {specs:?}");
                for (j, s) in specs.iter().enumerate() {
                    let When::After(at) = s.when else { panic!("a drawn time") };
                    let slice = Duration::from_millis(300) / k as u32;
                    let lo = window.0 + slice * j as u32;
                    assert!(at >= lo && at < lo + slice, "fault {j} of {k} at {at:?}");
                }
                // The same seed draws the same trial.
                assert_eq!(draw_trial(&template, 9, t, 3, k, Some(window)), (seed, specs));
            }
        }
        // The template's fixed time is kept; replicas still differ.
        let fixed = InjectSpec::parse("flip:after=exit").unwrap();
        let (_, specs) = draw_trial(&fixed, 1, 0, 3, 3, None);
        assert!(specs.iter().all(|s| s.when == When::Exit));
    }

    #[test]
    fn the_window_starts_at_the_first_checkpoint_when_there_is_room() {
        let ms = Duration::from_millis;
        assert_eq!(fault_window(ms(300), Some(ms(50))), (ms(50), ms(300)));
        assert_eq!(fault_window(ms(300), None), (ms(0), ms(300)));
        assert_eq!(fault_window(ms(30), Some(ms(50))), (ms(0), ms(30)));
    }

    /// Scripted trials: each call pops the next run.
    struct Scripted {
        runs: VecDeque<TrialRun>,
        calls: Vec<(String, bool)>,
        interrupted: Option<i32>,
    }

    impl Trials for Scripted {
        fn run(&mut self, specs: &str, recovery: bool) -> Result<Option<TrialRun>> {
            self.calls.push((specs.to_string(), recovery));
            Ok(self.runs.pop_front())
        }
        fn interrupted(&self) -> Option<i32> {
            self.interrupted
        }
    }

    fn run_of(voted: Voted, replicas: Vec<ReplicaRun>) -> TrialRun {
        TrialRun { voted, replicas }
    }

    #[test]
    fn recovery_on_and_off_run_the_same_faults_and_fill_two_columns() {
        let segv = Outcome::Signaled { signal: libc::SIGSEGV };
        // Each trial has 2 faults in replicas the draw chooses: every replica is scripted as injected,
        // and only the drawn ones are read.
        let all = |g: [bool; 3], o: [Outcome; 3], rolled: bool| {
            (0..3).map(|i| replica(g[i], o[i], Some(i), rolled)).collect()
        };
        let mut fake = Scripted {
            runs: VecDeque::from(vec![
                // Trial 0, on: both faulty replicas were rolled back and agree with golden.
                run_of(Voted::Golden, all([true; 3], [OK; 3], true)),
                // Trial 0, off: both crashed alike: the crash is the majority.
                run_of(Voted::Failed, all([false, false, false], [segv, segv, segv], false)),
                // Trial 1, on: corrected.
                run_of(Voted::Golden, all([true; 3], [OK; 3], false)),
                // Trial 1, off: two agreeing wrong results: escaped.
                run_of(Voted::Wrong, all([false; 3], [OK; 3], false)),
            ]),
            calls: Vec::new(),
            interrupted: None,
        };
        let template = InjectSpec::parse("flip:region=heap").unwrap();
        let plan = Plan {
            template: &template,
            seed: 4,
            trials: 2,
            replicas: 3,
            faults: 2,
            window: Some((Duration::from_millis(10), Duration::from_millis(100))),
            modes: vec![true, false],
            recovery_time_scale: 2.0,
        };
        let mut seen = crate::events::Recorder::default();
        let (log, stopped) = run_trials(&mut fake, &plan, &mut seen).unwrap();
        assert_eq!((stopped.as_str(), log.len()), ("completed", 2));
        // Each trial is told once both of its modes ran, with each mode's result.
        assert_eq!(
            seen.lines,
            [
                "multi-trial-finished trial 0: on corrected, off failed",
                "multi-trial-finished trial 1: on corrected, off escaped",
            ]
        );
        // The same faults in both modes of a trial, on first, its times scaled by the golden walls' ratio.
        assert_eq!((fake.calls[0].1, fake.calls[1].1), (true, false));
        let times = |text: &str| -> Vec<(Option<usize>, When)> {
            text.split(';').map(|t| InjectSpec::parse(t).unwrap()).map(|s| (s.replica, s.when)).collect()
        };
        let (on_times, off_times) = (times(&fake.calls[0].0), times(&fake.calls[1].0));
        for ((r_on, w_on), (r_off, w_off)) in on_times.iter().zip(&off_times) {
            assert_eq!(r_on, r_off);
            let (When::After(a), When::After(b)) = (w_on, w_off) else { panic!("drawn times") };
            assert_eq!(*a, b.mul_f64(2.0));
        }
        assert_eq!(log[0].specs, fake.calls[1].0, "the log keeps the drawn specs");
        assert_eq!(fake.calls[0].0.split(';').count(), 2);
        let on = column(&log, true, Some(Duration::from_millis(20)));
        let off = column(&log, false, Some(Duration::from_millis(20)));
        assert_eq!((on.no_majority, on.escaped, on.results[0].count), (0, 0, 2));
        assert_eq!((off.failed, off.no_majority, off.escaped), (1, 0, 1));
        assert_eq!(on.trials_with_rollback, 1);
        assert_eq!(on.faults.iter().find(|r| r.name == "recovered").map(|r| r.count), Some(2));
        assert!(off.faults.iter().all(|r| r.name != "recovered"), "no recovery row without recovery");
        assert_eq!(off.faults.iter().find(|r| r.name == "crash").map(|r| r.count), Some(2));
        assert_eq!(exit_code(None, &[on.clone(), off.clone()]), 0, "nothing escaped with recovery");
        assert_eq!(exit_code(None, std::slice::from_ref(&off)), 1, "alone, the escape is judged");
        let mut bad = on.clone();
        bad.escaped = 1;
        assert_eq!(exit_code(None, &[bad, off.clone()]), 1, "an escape with recovery fails the campaign");
        assert_eq!(exit_code(Some(libc::SIGINT), &[on, off]), 130);
    }

    #[test]
    fn a_stop_signal_ends_the_loop_with_the_trials_done() {
        let mut fake = Scripted {
            runs: VecDeque::from(vec![run_of(Voted::Golden, vec![replica(true, OK, Some(0), false); 3])]),
            calls: Vec::new(),
            interrupted: Some(libc::SIGTERM),
        };
        let template = InjectSpec::parse("flip:after=exit").unwrap();
        let plan = Plan {
            template: &template,
            seed: 1,
            trials: 5,
            replicas: 3,
            faults: 1,
            window: None,
            modes: vec![false],
            recovery_time_scale: 1.0,
        };
        let (log, stopped) = run_trials(&mut fake, &plan, &mut crate::events::Nobody).unwrap();
        assert_eq!((log.len(), stopped.as_str()), (1, "SIGTERM"));
    }
}
