//! Settling a run's class by re-running it: drives the pure [`Classifier`] with fresh executions from the
//! harness until it is settled or the budget is spent, telling each round and execution as events, and
//! turns its verdict into report data. Executions that tmr's own stop signal ended are no evidence: they
//! are not recorded, and the verdict becomes `interrupted` in the report.

use std::time::Duration;

use anyhow::Result;

use crate::classify::{next_round, Classifier, Policy, Verdict};
use crate::config::{Config, RerunMode};
use crate::events::{Event, Reporter};
use crate::fingerprint::{Fingerprint, Key, Outcome};
use crate::replica::{BatchOpts, Control, Job, RunRecord, Runner};
use crate::report::{ClassReport, OutcomeEntry, RunClass, RunEntry, StreamEntry};

pub struct Reruns {
    pub verdict: Verdict<Key>,
    pub runs: Vec<RunEntry>,
    /// One fingerprint per distinct key, to describe outcomes in reports.
    samples: Vec<(Key, Fingerprint)>,
    pub swept: usize,
    /// Time spent on reruns, and the time budget they had.
    pub spent: Duration,
    pub time_budget: Duration,
    /// Why reruns were not run or stopped short, when it is not the classifier's doing.
    pub note: Option<String>,
    /// tmr's own stop signal came: the class is `interrupted`, whatever the classifier had seen.
    pub interrupted: bool,
}

/// Reruns are tmr's own extra work, so they are bounded even without `--timeout`: a rerun still running
/// at [`RERUN_HANG_FACTOR`] times `reference` (the voted majority's median wall), and at least
/// [`RERUN_HANG_FLOOR`], is hung. A rerun that hung kept tmr from ever ending, after the voted output had
/// been delivered (an outside trial); a hang is an outcome like any other, and its rate classifies the
/// run. The bound is loose on purpose: a rerun that is only slow (a loaded machine, a test waiting on a
/// handshake) must not become a `timeout` that makes the run look flaky; `--timeout 4x` was too tight.
pub fn rerun_timeout(
    given: Option<crate::units::Timeout>,
    reference: Duration,
) -> Option<crate::units::Timeout> {
    let own = crate::units::scale_duration(reference, RERUN_HANG_FACTOR).max(RERUN_HANG_FLOOR);
    given.or(Some(crate::units::Timeout::Absolute(own)))
}

/// See [`rerun_timeout`].
pub const RERUN_HANG_FACTOR: f64 = 10.0;
/// See [`rerun_timeout`].
pub const RERUN_HANG_FLOOR: Duration = Duration::from_secs(10);

/// Rerun the command as the classifier asks, in rounds paced by the count and time budgets
/// ([`next_round`]). `initial` are the voted round's records and `voted_wall` its wall time; `reference_wall`
/// is the voted round's majority median, which a relative timeout multiplies for reruns. Each rerun round
/// and execution is told to `reporter` as it happens.
#[allow(clippy::too_many_arguments)]
pub fn settle(
    config: &Config,
    harness: &mut dyn Runner,
    initial_keys: &[Key],
    initial: &[RunRecord],
    voted_wall: Duration,
    opts: BatchOpts,
    key_of: &dyn Fn(&RunRecord) -> Key,
    reporter: &mut dyn Reporter,
) -> Result<Reruns> {
    let c = &config.classify;
    // A replica tmr's own stop signal ended says nothing about the command: it is left out, as hunt and
    // `tmr test` leave theirs out.
    let kept: Vec<usize> = (0..initial.len()).filter(|&i| !initial[i].stopped).collect();
    let keys: Vec<Key> = kept.iter().map(|&i| initial_keys[i]).collect();
    let mut samples: Vec<(Key, Fingerprint)> = Vec::new();
    for (k, r) in keys.iter().zip(kept.iter().map(|&i| &initial[i])) {
        if !samples.iter().any(|(s, _)| s == k) {
            samples.push((*k, r.fingerprint()));
        }
    }
    let voted = crate::vote::vote(&keys);
    let winner = voted.majority().map(|g| {
        let members: Vec<usize> = g.members.iter().map(|&m| kept[m]).collect();
        initial[representative(initial, &members)].outcome
    });
    let majority_failed = winner.is_some_and(|o| !o.is_success());
    let exec_failed = matches!(winner, Some(Outcome::FailedToStart { .. }));
    let mut classifier = Classifier::new(
        keys,
        majority_failed,
        exec_failed,
        Policy { budget: c.reruns, confidence: c.confidence },
    );
    let time_budget = c.time_budget.resolve(voted_wall);
    let mut runs = Vec::new();
    let mut swept = 0;
    let mut note = None;
    let began = harness.now();
    if classifier.wants_rerun() && harness.interrupted().is_none() && !harness.stdin_replayable() {
        note = Some("not rerun: stdin was too long to keep for replaying (see TMR_STDIN_SPOOL_LIMIT)".into());
    } else if classifier.wants_rerun() && harness.interrupted().is_none() {
        let n = config.replicas;
        // Sequential: rounds of one. Parallel: whole rounds of N, each waiting for the last, so every
        // rerun runs beside exactly the siblings of its own round, as in the voted round.
        let (round_size, parallel) = match c.rerun_mode {
            RerunMode::Sequential => (1, 1),
            RerunMode::Parallel => (n, n),
        };
        let opts = BatchOpts { parallel, ..opts };
        let mut done = 0;
        let mut round = 1;
        let mut round_walls: Vec<f64> = Vec::new();
        while classifier.wants_rerun() && harness.interrupted().is_none() {
            let predicted = match crate::stats::median(&mut round_walls.clone()) {
                Some(m) => Duration::from_secs_f64(m),
                None => voted_wall,
            };
            let spent = harness.now().saturating_duration_since(began);
            let size = next_round(round_size, c.reruns - done, time_budget, spent, predicted);
            if size == 0 {
                break;
            }
            let jobs = (0..size).map(|i| match c.rerun_mode {
                RerunMode::Sequential => Job { replica: 0, replicas: 1, round },
                RerunMode::Parallel => Job { replica: i, replicas: n, round },
            });
            reporter.event(&Event::RerunRoundStarted { round, size })?;
            let round_began = harness.now();
            swept += harness.run_jobs(&mut jobs.into_iter(), &opts, &mut |rec| {
                if rec.stopped {
                    return Ok(Control::Stop);
                }
                let fp = rec.fingerprint();
                let key = key_of(&rec);
                if !samples.iter().any(|(s, _)| *s == key) {
                    samples.push((key, fp));
                }
                classifier.record(key);
                let entry = run_entry(&rec);
                reporter.event(&Event::ReplicaFinished { run: &entry })?;
                runs.push(entry);
                Ok(if classifier.wants_rerun() { Control::Continue } else { Control::Stop })
            })?;
            round_walls.push(harness.now().saturating_duration_since(round_began).as_secs_f64());
            done += size;
            round += 1;
        }
    }
    Ok(Reruns {
        verdict: classifier.verdict(),
        runs,
        samples,
        swept,
        spent: harness.now().saturating_duration_since(began),
        time_budget,
        note,
        interrupted: harness.interrupted().is_some(),
    })
}

/// One finished execution as the report lists it.
pub fn run_entry(r: &RunRecord) -> RunEntry {
    RunEntry {
        replica: r.job.replica,
        round: r.job.round,
        pid: r.pid,
        outcome: r.outcome,
        stdout: StreamEntry::from(r.stdout.summary),
        stderr: StreamEntry::from(r.stderr.summary),
        wall_ms: r.wall.as_secs_f64() * 1e3,
        user_ms: r.user.as_secs_f64() * 1e3,
        sys_ms: r.sys.as_secs_f64() * 1e3,
        max_rss_kib: r.max_rss_kib,
        leaked: r.leaked,
        node: r.node.clone(),
        rescheduled_from: r.rescheduled_from.clone(),
    }
}

impl Reruns {
    pub fn report(&self, config: &Config) -> ClassReport {
        let v = &self.verdict;
        let entry = |key: &Key| self.samples.iter().find(|(k, _)| k == key).map(|(_, fp)| *fp);
        let outcomes: Vec<OutcomeEntry> = v
            .outcomes
            .iter()
            .filter_map(|o| {
                let fp = entry(&o.key)?;
                Some(OutcomeEntry {
                    outcome: fp.outcome,
                    stdout: fp.stdout.into(),
                    stderr: fp.stderr.into(),
                    initial: o.initial,
                    reruns: o.reruns,
                    rate: o.rate,
                    interval: o.interval,
                    majority: o.majority,
                })
            })
            .collect();
        ClassReport {
            class: if self.interrupted { RunClass::Interrupted } else { v.class.into() },
            reruns: v.reruns,
            budget: v.budget,
            confidence: v.confidence,
            rerun_mode: match config.classify.rerun_mode {
                RerunMode::Sequential => "sequential",
                RerunMode::Parallel => "parallel",
            },
            settled_early: v.settled_early,
            odd_rate_bound: v.odd_rate_bound,
            observations: v.observations,
            exec_failed: v.exec_failed,
            time_budget_ms: self.time_budget.as_secs_f64() * 1e3,
            spent_ms: self.spent.as_secs_f64() * 1e3,
            note: self.note.clone(),
            unstable: v.unstable,
            emerged: v.emerged.and_then(|k| v.outcomes.iter().position(|o| o.key == k)),
            outcomes,
            rerun_runs: self.runs.clone(),
        }
    }
}

/// The member of the majority whose output is delivered and whose exit code is tmr's. All members agree
/// on the compared fields; the fields left out of `--compare` (the exit status with `--compare stdout`,
/// stderr by default) did not vote, so the member taken is one whose whole fingerprint is the most common
/// in the majority (ties: the lowest replica), never an odd one that merely came first. A replica rerun
/// after a node failure has no lane in the stream hub and is taken only when nothing else agrees.
pub fn representative(records: &[RunRecord], members: &[usize]) -> usize {
    let all = crate::fingerprint::Compare { exit: true, stdout: true, stderr: true, mem: false };
    let full: Vec<Key> = members.iter().map(|&i| records[i].fingerprint().key(all)).collect();
    let count = |k: &Key| full.iter().filter(|f| *f == k).count();
    let mut best: Option<(usize, usize)> = None;
    for (pos, &i) in members.iter().enumerate() {
        let score = 2 * count(&full[pos]) + usize::from(records[i].rescheduled_from.is_none());
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map_or(members[0], |(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::fake::{record, Fake};

    fn config(args: &[&str]) -> Config {
        let argv = ["tmr"].iter().chain(args).chain(&["true"]).map(std::ffi::OsString::from);
        match crate::cli::parse(argv) {
            crate::cli::Parsed::Run(c) => c,
            _ => panic!("bad test arguments {args:?}"),
        }
    }

    /// Settle a voted round whose replicas exited with `initial` codes, as `settle` does in a run.
    fn settle_with(args: &[&str], fake: &mut Fake, initial: &[i32], voted_ms: u64) -> Reruns {
        let config = config(args);
        let n = initial.len();
        let records: Vec<RunRecord> = initial
            .iter()
            .enumerate()
            .map(|(i, &code)| record(Job { replica: i, replicas: n, round: 0 }, code))
            .collect();
        let key_of = |r: &RunRecord| r.fingerprint().key(config.compare);
        let keys: Vec<Key> = records.iter().map(key_of).collect();
        let opts = crate::round::batch_opts(&config);
        let mut nobody = crate::events::Nobody;
        settle(&config, fake, &keys, &records, Duration::from_millis(voted_ms), opts, &key_of, &mut nobody)
            .unwrap()
    }

    #[test]
    fn reruns_are_bounded_without_a_timeout_and_keep_the_one_given() {
        use crate::units::Timeout;
        let s = Duration::from_secs;
        assert_eq!(
            rerun_timeout(None, Duration::from_millis(5)),
            Some(Timeout::Absolute(s(10))),
            "the floor"
        );
        assert_eq!(rerun_timeout(None, s(60)), Some(Timeout::Absolute(s(600))), "10x the voted median");
        let given = Some(Timeout::Relative(2.0));
        assert_eq!(rerun_timeout(given, s(60)), given, "--timeout, as given");
    }

    #[test]
    fn a_unanimous_failure_gets_two_parallel_rounds_under_the_default_budget() {
        let mut fake = Fake::new(1000, |_| 3);
        let r = settle_with(&[], &mut fake, &[3, 3, 3], 1000);
        assert_eq!(r.verdict.class, crate::classify::Class::Deterministic);
        assert_eq!((r.runs.len(), r.verdict.observations), (6, 9));
        let rounds: Vec<(usize, usize)> = fake.ran.iter().map(|j| (j.round, j.replica)).collect();
        assert_eq!(rounds, [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]);
        assert_eq!(r.spent, Duration::from_secs(2));
    }

    #[test]
    fn an_odd_outcome_that_comes_back_stops_the_reruns() {
        // Replica 1 of the voted round failed; in round 2, replica 2 fails too.
        let mut fake = Fake::new(10, |j| if j.round == 2 && j.replica == 2 { 1 } else { 0 });
        let r = settle_with(&["--rerun-budget", "1h"], &mut fake, &[0, 1, 0], 10);
        assert_eq!(r.verdict.class, crate::classify::Class::Nondeterministic);
        assert_eq!(fake.ran.len(), 6, "no round after the one where the odd outcome came back");
    }

    #[test]
    fn the_count_budget_caps_the_last_round_and_sequential_runs_one_at_a_time() {
        let mut fake = Fake::new(1, |_| 0);
        let r = settle_with(&["--reruns", "4", "--rerun-budget", "1h"], &mut fake, &[0, 1, 0], 1);
        assert_eq!((r.runs.len(), fake.ran.len()), (4, 4));
        assert_eq!(fake.ran.last().map(|j| (j.round, j.replica)), Some((2, 0)), "a round of 1 after 3");
        let mut fake = Fake::new(1, |_| 0);
        settle_with(
            &["--reruns", "3", "--rerun-mode", "sequential", "--rerun-budget", "1h"],
            &mut fake,
            &[0, 1, 0],
            1,
        );
        let seen: Vec<(usize, usize, usize)> =
            fake.ran.iter().map(|j| (j.round, j.replica, j.replicas)).collect();
        assert_eq!(seen, [(1, 0, 1), (2, 0, 1), (3, 0, 1)]);
    }

    #[test]
    fn no_reruns_when_interrupted_when_stdin_cannot_be_replayed_or_when_unanimous() {
        let mut fake = Fake::new(1, |_| 3);
        fake.interrupted = Some(libc::SIGINT);
        assert!(settle_with(&[], &mut fake, &[3, 3, 3], 1).runs.is_empty());
        let mut fake = Fake::new(1, |_| 3);
        fake.replayable = false;
        let r = settle_with(&[], &mut fake, &[3, 3, 3], 1);
        assert!(r.runs.is_empty() && r.note.is_some());
        let mut fake = Fake::new(1, |_| 0);
        assert!(settle_with(&[], &mut fake, &[0, 0, 0], 1).runs.is_empty());
        assert!(fake.ran.is_empty());
    }

    /// The reruns are told as they happen: each round before it starts, each execution as it ends, and
    /// the round that settles the class is the last one told.
    #[test]
    fn reruns_emit_a_round_then_its_executions() {
        let config = config(&["--reruns", "4", "--rerun-budget", "1h"]);
        let mut fake = Fake::new(1, |_| 0);
        let records: Vec<RunRecord> = [0, 1, 0]
            .iter()
            .enumerate()
            .map(|(i, &c)| record(Job { replica: i, replicas: 3, round: 0 }, c))
            .collect();
        let key_of = |r: &RunRecord| r.fingerprint().key(config.compare);
        let keys: Vec<Key> = records.iter().map(key_of).collect();
        let opts = crate::round::batch_opts(&config);
        let mut seen = crate::events::Recorder::default();
        settle(&config, &mut fake, &keys, &records, Duration::from_millis(1), opts, &key_of, &mut seen)
            .unwrap();
        assert_eq!(
            seen.lines,
            [
                "rerun-round-started round 1 of 3",
                "replica-finished round 1 replica 0: exit 0",
                "replica-finished round 1 replica 1: exit 0",
                "replica-finished round 1 replica 2: exit 0",
                "rerun-round-started round 2 of 1",
                "replica-finished round 2 replica 0: exit 0",
            ]
        );
    }

    /// tmr's own stop signal during the first round of reruns: each execution it ends is `stopped`.
    struct StoppedInReruns(Fake);

    impl Runner for StoppedInReruns {
        fn run_jobs(
            &mut self,
            jobs: &mut dyn Iterator<Item = Job>,
            opts: &BatchOpts,
            sink: &mut dyn FnMut(RunRecord) -> Result<Control>,
        ) -> Result<usize> {
            self.0.interrupted = Some(libc::SIGINT);
            self.0.run_jobs(jobs, opts, &mut |mut rec| {
                rec.stopped = true;
                rec.outcome = crate::fingerprint::Outcome::Signaled { signal: libc::SIGINT };
                sink(rec)
            })
        }
        fn interrupted(&self) -> Option<i32> {
            self.0.interrupted
        }
        fn stdin_replayable(&self) -> bool {
            true
        }
        fn now(&self) -> std::time::Instant {
            self.0.now()
        }
        fn clock(&self) -> crate::replica::Clock {
            self.0.clock()
        }
    }

    /// Reruns ended by tmr's Ctrl-C used to be counted as a SIGINT outcome that "came back", making a
    /// unanimous failure `nondeterministic`. They are not recorded, and the class is `interrupted`.
    #[test]
    fn reruns_ended_by_tmrs_stop_signal_are_no_evidence() {
        let config = config(&[]);
        let records: Vec<RunRecord> =
            (0..3).map(|i| record(Job { replica: i, replicas: 3, round: 0 }, 3)).collect();
        let key_of = |r: &RunRecord| r.fingerprint().key(config.compare);
        let keys: Vec<Key> = records.iter().map(key_of).collect();
        let mut runner = StoppedInReruns(Fake::new(1, |_| 3));
        let opts = crate::round::batch_opts(&config);
        let mut nobody = crate::events::Nobody;
        let r = settle(
            &config,
            &mut runner,
            &keys,
            &records,
            Duration::from_millis(1),
            opts,
            &key_of,
            &mut nobody,
        )
        .unwrap();
        assert!(r.runs.is_empty(), "{:?}", r.runs);
        let report = r.report(&config);
        assert_eq!(report.class, RunClass::Interrupted);
        assert!(report.outcomes.iter().all(|o| o.outcome == crate::fingerprint::Outcome::Exited { code: 3 }));
    }
}
