//! The one event stream of a run, a hunt and a campaign, after nextest's reporter design: the loops
//! (`round`, `rerun`, `hunt`, `campaign`) say what happened as typed [`Event`]s and never render; every
//! output (the human summary, JSON, JUnit, the GitHub summary, the progress line, `--keep`) is a
//! [`Reporter`] in `reporters` that consumes them. The loops reach their reporters only through the
//! [`Reporter`] trait, so no loop calls up into its caller and each is tested with a [`Recorder`].
//!
//! Events borrow the loop's data: a reporter that needs it later copies what it needs.

use anyhow::Result;

use crate::replica::RunRecord;
use crate::report::campaign::{self, multi, CampaignReport};
use crate::report::hunt::HuntReport;
use crate::report::{RunEntry, RunReport, VoteEntry};

/// What happened, in the order it happened.
#[derive(Debug)]
pub enum Event<'a> {
    /// `tmr CMD`: the voted round is about to start.
    RunStarted {
        replicas: usize,
    },
    /// A replica of the voted round (round 0) or a rerun (round ≥ 1) ended.
    ReplicaFinished {
        run: &'a RunEntry,
    },
    /// The voted round's vote.
    RoundVoted {
        vote: &'a VoteEntry,
    },
    /// A round of reruns, of `size` executions, is about to start.
    RerunRoundStarted {
        round: usize,
        size: usize,
    },
    /// The whole run ended: its report is final.
    RunFinished {
        report: &'a RunReport,
    },
    /// `tmr hunt`: one run ended (its record holds its spooled output with `--keep`). Runs that tmr's own
    /// stop signal cut short are not told.
    HuntRunFinished {
        record: &'a RunRecord,
        failing: bool,
    },
    /// The hunt ended: its report is final.
    HuntFinished {
        report: &'a HuntReport,
    },
    /// `tmr campaign`: one single-fault trial was run and categorized.
    CampaignTrialFinished {
        trial: &'a campaign::TrialEntry,
    },
    /// `tmr campaign --faults K`/`--checkpoint`: one trial was run in each recovery mode.
    MultiTrialFinished {
        trial: &'a multi::TrialEntry,
    },
    /// The campaign ended: its report is final.
    CampaignFinished {
        report: &'a CampaignReport,
    },
    MultiCampaignFinished {
        report: &'a multi::MultiReport,
    },
}

impl Event<'_> {
    /// A short stable name, for tests and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run-started",
            Event::ReplicaFinished { .. } => "replica-finished",
            Event::RoundVoted { .. } => "round-voted",
            Event::RerunRoundStarted { .. } => "rerun-round-started",
            Event::RunFinished { .. } => "run-finished",
            Event::HuntRunFinished { .. } => "hunt-run-finished",
            Event::HuntFinished { .. } => "hunt-finished",
            Event::CampaignTrialFinished { .. } => "campaign-trial-finished",
            Event::MultiTrialFinished { .. } => "multi-trial-finished",
            Event::CampaignFinished { .. } => "campaign-finished",
            Event::MultiCampaignFinished { .. } => "multi-campaign-finished",
        }
    }
}

/// Consumes events. An error ends the run with that error (a report file that cannot be written); a
/// reporter whose failure must not change the exit code (the GitHub summary) warns and returns `Ok`.
pub trait Reporter {
    fn event(&mut self, event: &Event) -> Result<()>;
}

/// The fan-out: every event goes to each reporter in the order they were added (a progress line is
/// added first, so that it is cleared before a summary is written under it).
#[derive(Default)]
pub struct Reporters {
    list: Vec<Box<dyn Reporter>>,
}

impl Reporters {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, reporter: impl Reporter + 'static) -> &mut Self {
        self.list.push(Box::new(reporter));
        self
    }
}

impl Reporter for Reporters {
    /// The first error stops the fan-out: what a later reporter would have written waits on it.
    fn event(&mut self, event: &Event) -> Result<()> {
        self.list.iter_mut().try_for_each(|r| r.event(event))
    }
}

/// A reporter for nobody (a loop run for its result alone).
pub struct Nobody;

impl Reporter for Nobody {
    fn event(&mut self, _: &Event) -> Result<()> {
        Ok(())
    }
}

/// Records each event as one line (its name and the facts tests check): the loops' tests read the
/// sequence they emitted.
#[derive(Default, Debug)]
pub struct Recorder {
    pub lines: Vec<String>,
}

impl Reporter for Recorder {
    fn event(&mut self, event: &Event) -> Result<()> {
        let detail = match event {
            Event::RunStarted { replicas } => format!("{replicas}"),
            Event::ReplicaFinished { run } => {
                format!("round {} replica {}: {}", run.round, run.replica, run.outcome.describe())
            }
            Event::RoundVoted { vote } => vote.result.to_string(),
            Event::RerunRoundStarted { round, size } => format!("round {round} of {size}"),
            Event::RunFinished { report } => format!("exit {}", report.exit_code),
            Event::HuntRunFinished { record, failing } => {
                format!(
                    "run {}: {}{}",
                    record.job.round,
                    record.outcome.describe(),
                    if *failing { " FAIL" } else { "" }
                )
            }
            Event::CampaignTrialFinished { trial } => {
                format!("trial {}: {}", trial.trial, trial.category.name())
            }
            Event::MultiTrialFinished { trial } => {
                let runs: Vec<String> = trial
                    .runs
                    .iter()
                    .map(|r| format!("{} {}", if r.recovery { "on" } else { "off" }, r.result.name()))
                    .collect();
                format!("trial {}: {}", trial.trial, runs.join(", "))
            }
            Event::CampaignFinished { report } => format!("{} escaped: {}", report.escaped, report.stopped),
            Event::MultiCampaignFinished { report } => {
                format!("{} trials: {}", report.trials, report.stopped)
            }
            Event::HuntFinished { report } => {
                format!("{} of {} failing: {}", report.failures, report.runs, report.stopped)
            }
        };
        self.lines.push(format!("{} {detail}", event.name()).trim_end().to_string());
        Ok(())
    }
}
