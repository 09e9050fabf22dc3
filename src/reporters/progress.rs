//! The live progress line of a hunt or a campaign: drawn on a terminal only (nothing in a pipe or a CI
//! log), counted from the events it sees, and cleared when the loop finishes, before the summary.

use anyhow::Result;

use crate::events::{Event, Reporter};

pub struct Progress {
    bar: indicatif::ProgressBar,
    runs: usize,
    failures: usize,
}

impl Progress {
    /// A hunt of `runs` runs.
    pub fn hunt(runs: usize) -> Self {
        Self::with(crate::report::progress_bar(
            runs as u64,
            "tmr hunt: {pos}/{len} runs · {msg} · {per_sec} · ETA {eta}",
        ))
    }

    fn with(bar: indicatif::ProgressBar) -> Self {
        Progress { bar, runs: 0, failures: 0 }
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
            _ => None,
        }
    }
}

impl Reporter for Progress {
    fn event(&mut self, event: &Event) -> Result<()> {
        if let Some(text) = self.message(event) {
            self.bar.inc(1);
            self.bar.set_message(text);
        } else if matches!(event, Event::HuntFinished { .. }) {
            self.bar.finish_and_clear();
        }
        Ok(())
    }
}
