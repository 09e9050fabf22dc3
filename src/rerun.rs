//! Settling a run's class by re-running it: drives the pure [`Classifier`] with fresh executions from the
//! harness until it is settled or the budget is spent, and turns its verdict into report data.

use anyhow::Result;

use crate::classify::{Classifier, Policy, Verdict};
use crate::config::{Config, RerunMode};
use crate::fingerprint::{Fingerprint, Key};
use crate::replica::{BatchOpts, Control, Harness, Job, RunRecord};
use crate::report::{ClassReport, OutcomeEntry, RunEntry};

pub struct Reruns {
    pub verdict: Verdict<Key>,
    pub runs: Vec<RunEntry>,
    /// One fingerprint per distinct key, to describe outcomes in reports.
    samples: Vec<(Key, Fingerprint)>,
    pub swept: usize,
}

/// Rerun the command as the classifier asks. `initial` are the voted round's records.
pub fn settle(
    config: &Config,
    harness: &mut Harness,
    initial_keys: &[Key],
    initial: &[RunRecord],
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
    let majority_failed = voted.representative().is_some_and(|w| !initial[w].outcome.is_success());
    let mut classifier =
        Classifier::new(keys, majority_failed, Policy { budget: c.reruns, confidence: c.confidence });
    let mut runs = Vec::new();
    let mut swept = 0;
    if classifier.wants_rerun() && harness.interrupted.is_none() {
        // Reruns start after the voted round consumed stdin: they need all of it, from the spool.
        harness.finish_stdin()?;
        let n = config.replicas;
        // Sequential: one batch, one job at a time. Parallel: whole rounds of N, each waiting for the last,
        // so every rerun runs beside exactly the siblings of its own round.
        let (round_size, parallel) = match c.rerun_mode {
            RerunMode::Sequential => (c.reruns, 1),
            RerunMode::Parallel => (n, n),
        };
        let opts = BatchOpts { parallel, ..opts };
        let mut done = 0;
        let mut round = 1;
        while done < c.reruns && classifier.wants_rerun() && harness.interrupted.is_none() {
            let size = round_size.min(c.reruns - done);
            let jobs: Vec<Job> = match c.rerun_mode {
                RerunMode::Sequential => {
                    (0..size).map(|i| Job { replica: 0, replicas: 1, round: round + i }).collect()
                }
                RerunMode::Parallel => (0..size).map(|i| Job { replica: i, replicas: n, round }).collect(),
            };
            swept += harness.run_jobs(&jobs, &opts, &mut |rec| {
                let fp = rec.fingerprint();
                let key = key_of(&rec);
                if !samples.iter().any(|(s, _)| *s == key) {
                    samples.push((key, fp));
                }
                classifier.record(key);
                runs.push(crate::round::run_entry(&rec));
                Ok(if classifier.wants_rerun() { Control::Continue } else { Control::Stop })
            })?;
            done += size;
            round += if c.rerun_mode == RerunMode::Parallel { 1 } else { size };
        }
    }
    Ok(Reruns { verdict: classifier.verdict(), runs, samples, swept })
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
            unstable: v.unstable,
            emerged: v.emerged.and_then(|k| v.outcomes.iter().position(|o| o.key == k)),
            outcomes,
            rerun_runs: self.runs.clone(),
        }
    }
}
