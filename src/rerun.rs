//! Settling a run's class by re-running it: drives the pure [`Classifier`] with fresh executions from the
//! harness until it is settled or the budget is spent, and turns its verdict into report data.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::classify::{next_round, Classifier, Policy, Verdict};
use crate::config::{Config, RerunMode};
use crate::fingerprint::{Fingerprint, Key, Outcome};
use crate::replica::{BatchOpts, Control, Harness, Job, RunRecord};
use crate::report::{ClassReport, OutcomeEntry, RunEntry};

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
}

/// Rerun the command as the classifier asks, in rounds paced by the count and time budgets
/// ([`next_round`]). `initial` are the voted round's records and `voted_wall` its wall time; `reference_wall`
/// is the voted round's majority median, which a relative timeout multiplies for reruns.
pub fn settle(
    config: &Config,
    harness: &mut Harness,
    initial_keys: &[Key],
    initial: &[RunRecord],
    voted_wall: Duration,
    opts: BatchOpts,
    key_of: &dyn Fn(&RunRecord) -> Key,
) -> Result<Reruns> {
    let c = &config.classify;
    let keys = initial_keys.to_vec();
    let mut samples: Vec<(Key, Fingerprint)> = Vec::new();
    for (k, r) in keys.iter().zip(initial) {
        if !samples.iter().any(|(s, _)| s == k) {
            samples.push((*k, r.fingerprint()));
        }
    }
    let voted = crate::vote::vote(&keys);
    let winner = voted.representative().map(|w| initial[w].outcome);
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
    let began = Instant::now();
    if classifier.wants_rerun() && harness.interrupted.is_none() && !harness.stdin_replayable() {
        note = Some("not rerun: stdin was too long to keep for replaying (see TMR_STDIN_SPOOL_LIMIT)".into());
    } else if classifier.wants_rerun() && harness.interrupted.is_none() {
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
        while classifier.wants_rerun() && harness.interrupted.is_none() {
            let predicted = match crate::stats::median(&mut round_walls.clone()) {
                Some(m) => Duration::from_secs_f64(m),
                None => voted_wall,
            };
            let size = next_round(round_size, c.reruns - done, time_budget, began.elapsed(), predicted);
            if size == 0 {
                break;
            }
            let jobs = (0..size).map(|i| match c.rerun_mode {
                RerunMode::Sequential => Job { replica: 0, replicas: 1, round },
                RerunMode::Parallel => Job { replica: i, replicas: n, round },
            });
            let round_began = Instant::now();
            swept += harness.run_jobs(&mut jobs.into_iter(), &opts, &mut |rec| {
                let fp = rec.fingerprint();
                let key = key_of(&rec);
                if !samples.iter().any(|(s, _)| *s == key) {
                    samples.push((key, fp));
                }
                classifier.record(key);
                runs.push(crate::round::run_entry(&rec));
                Ok(if classifier.wants_rerun() { Control::Continue } else { Control::Stop })
            })?;
            round_walls.push(round_began.elapsed().as_secs_f64());
            done += size;
            round += 1;
        }
    }
    Ok(Reruns {
        verdict: classifier.verdict(),
        runs,
        samples,
        swept,
        spent: began.elapsed(),
        time_budget,
        note,
    })
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
            class: v.class,
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
