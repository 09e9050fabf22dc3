//! The live progress line of a hunt or a campaign: drawn on a terminal only (nothing in a pipe or a CI
//! log), counted from the events it sees, and cleared when the loop finishes, before the summary.

use anyhow::Result;

use crate::events::{Event, Reporter};

pub struct Progress {
    bar: indicatif::ProgressBar,
    runs: usize,
    failures: usize,
    /// Campaigns: escaped single-fault trials; K-fault runs that had no majority or escaped, by recovery
    /// mode (off, on), and the modes each trial runs in.
    escaped: usize,
    bad: [usize; 2],
    modes: Vec<bool>,
}

impl Progress {
    /// A hunt of `runs` runs.
    pub fn hunt(runs: usize) -> Self {
        let p = Self::with(crate::report::progress_bar(
            runs as u64,
            "tmr hunt: {pos}/{len} runs · {msg} · {rate} · ETA {eta}",
        ));
        p.bar.set_message(p.first_message(true));
        p
    }

    /// A campaign of `trials` trials, each run in `modes` (recovery on/off) when they are K-fault ones.
    pub fn campaign(trials: usize, modes: &[bool]) -> Self {
        let bar = crate::report::progress_bar(
            trials as u64,
            "tmr campaign: {pos}/{len} trials · {msg} · ETA {eta}",
        );
        let p = Progress { modes: modes.to_vec(), ..Self::with(bar) };
        p.bar.set_message(p.first_message(false));
        p
    }

    fn with(bar: indicatif::ProgressBar) -> Self {
        Progress { bar, runs: 0, failures: 0, escaped: 0, bad: [0; 2], modes: Vec::new() }
    }

    /// What the line says before the first run or trial ends (the field used to be empty:
    /// `0/20 runs ·  · 0/s`).
    fn first_message(&self, hunt: bool) -> String {
        match (hunt, self.modes.as_slice()) {
            (true, _) => "0 failing".into(),
            (false, []) => "0 escaped".into(),
            (false, [true, false]) => "no majority or escaped: 0 with recovery, 0 without".into(),
            (false, _) => "0 no majority or escaped".into(),
        }
    }

    /// What the line says after an event, or `None` when the line is done with (or unchanged).
    fn message(&mut self, event: &Event) -> Option<String> {
        match event {
            Event::HuntRunFinished { failing, .. } => {
                self.runs += 1;
                self.failures += usize::from(*failing);
                Some(format!(
                    "{} failing ({:.1}%)",
                    self.failures,
                    100.0 * self.failures as f64 / self.runs as f64
                ))
            }
            Event::CampaignTrialFinished { trial } => {
                self.escaped += usize::from(trial.category == crate::report::campaign::Category::Escaped);
                Some(format!("{} escaped", self.escaped))
            }
            Event::MultiTrialFinished { trial } => {
                use crate::report::campaign::multi::TrialResult;
                for r in &trial.runs {
                    self.bad[usize::from(r.recovery)] +=
                        usize::from(matches!(r.result, TrialResult::NoMajority | TrialResult::Escaped));
                }
                let bad = |recovery: bool| self.bad[usize::from(recovery)];
                Some(match self.modes.as_slice() {
                    [true, false] => {
                        format!("no majority or escaped: {} with recovery, {} without", bad(true), bad(false))
                    }
                    [m] => format!("{} no majority or escaped", bad(*m)),
                    _ => String::new(),
                })
            }
            _ => None,
        }
    }
}

impl Reporter for Progress {
    fn event(&mut self, event: &Event) -> Result<()> {
        if let Some(text) = self.message(event) {
            self.bar.inc(1);
            self.bar.set_message(text);
        } else if matches!(
            event,
            Event::HuntFinished { .. } | Event::CampaignFinished { .. } | Event::MultiCampaignFinished { .. }
        ) {
            self.bar.finish_and_clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::campaign::multi::{RunEntry, TrialEntry, TrialResult};

    fn hidden(modes: &[bool]) -> Progress {
        Progress { modes: modes.to_vec(), ..Progress::with(indicatif::ProgressBar::hidden()) }
    }

    /// The line is counted from the events alone: a hunt's failing share, a campaign's bad runs per mode.
    #[test]
    fn the_line_counts_what_the_events_tell() {
        assert_eq!(hidden(&[]).first_message(true), "0 failing");
        assert_eq!(hidden(&[]).first_message(false), "0 escaped");
        assert_eq!(
            hidden(&[true, false]).first_message(false),
            "no majority or escaped: 0 with recovery, 0 without"
        );
        assert_eq!(crate::report::rate_text(19.5327), "19.5/s");
        assert_eq!(crate::report::rate_text(2.4444), "2.44/s");
        assert_eq!(crate::report::rate_text(0.35291), "0.353/s");
        assert_eq!(crate::report::rate_text(1234.7), "1235/s");
        assert_eq!(crate::report::rate_text(20.0), "20/s");
        assert_eq!(crate::report::rate_text(f64::NAN), "0/s");
        let mut p = hidden(&[]);
        let rec = crate::replica::fake::record(crate::replica::Job { replica: 0, replicas: 1, round: 0 }, 1);
        assert_eq!(
            p.message(&Event::HuntRunFinished { record: &rec, failing: false }).unwrap(),
            "0 failing (0.0%)"
        );
        assert_eq!(
            p.message(&Event::HuntRunFinished { record: &rec, failing: true }).unwrap(),
            "1 failing (50.0%)"
        );
        let run = |recovery, result| RunEntry {
            recovery,
            result,
            faults: vec![],
            rollbacks: vec![],
            checkpoint_stopped: vec![],
        };
        let trial = |runs| TrialEntry { trial: 0, seed: 0, specs: String::new(), runs };
        let mut p = hidden(&[true, false]);
        let t = trial(vec![run(true, TrialResult::Corrected), run(false, TrialResult::Escaped)]);
        p.message(&Event::MultiTrialFinished { trial: &t });
        let t = trial(vec![run(true, TrialResult::NoMajority), run(false, TrialResult::Failed)]);
        assert_eq!(
            p.message(&Event::MultiTrialFinished { trial: &t }).unwrap(),
            "no majority or escaped: 1 with recovery, 1 without"
        );
    }
}
