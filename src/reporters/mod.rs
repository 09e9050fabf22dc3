//! The reporters: every output of a run, a hunt or a campaign is one of these, fed by the loops'
//! [`Event`]s through `events::Reporters`. Each turns events into bytes with the pure renderers of
//! `report/` and owns where they go: a report file (replaced only once complete), stderr (where a
//! closed or full stream never fails the run), the GitHub job summary, the progress line (`progress`), the
//! kept failing runs of `tmr hunt --keep` (`keep`).

use std::io::Write;

use anyhow::{Context, Result};

use crate::config::Format;
use crate::events::{Event, Reporter};
use crate::report::{self, human, ReportFile};

mod keep;
mod progress;

pub use keep::Keep;
pub use progress::Progress;

/// Where a summary goes.
pub enum Out {
    /// `-o FILE`: written whole, then put in place of the target.
    File(Option<ReportFile>),
    /// tmr's stderr: a closed or full stderr (`2>/dev/full`) is not the run's error.
    Stderr,
    /// Any writer (tests).
    Writer(Box<dyn Write>),
}

impl Out {
    pub fn new(file: Option<ReportFile>) -> Self {
        match file {
            Some(f) => Out::File(Some(f)),
            None => Out::Stderr,
        }
    }

    fn is_file(&self) -> bool {
        matches!(self, Out::File(_))
    }

    /// Write `text`, naming the report as `what` in an error ("writing the report").
    fn write_as(&mut self, text: &str, what: &'static str) -> Result<()> {
        match self {
            Out::File(f) => match f.take() {
                Some(mut f) => {
                    f.file().write_all(text.as_bytes()).context(what)?;
                    f.persist()
                }
                None => Ok(()),
            },
            Out::Stderr => {
                let _ = std::io::stderr().write_all(text.as_bytes());
                Ok(())
            }
            Out::Writer(w) => w.write_all(text.as_bytes()).context(what),
        }
    }
}

/// The summary of `--format`: human or JSON, on stderr or in `-o FILE`, once the run (hunt, campaign)
/// has finished.
pub struct Summary {
    pub format: Format,
    pub out: Out,
    /// `--quiet`: no human summary on stderr for a unanimous, uninterrupted run.
    pub quiet: bool,
    /// Colour on stderr (never in a file).
    pub color: bool,
}

impl Summary {
    pub fn new(format: Format, file: Option<ReportFile>, quiet: bool) -> Self {
        Summary { format, out: Out::new(file), quiet, color: use_color() }
    }
}

impl Summary {
    /// The report of a hunt or a campaign in `--format`: pretty JSON, or its human text (no colour).
    fn render<R: serde::Serialize>(&self, report: &R, human: fn(&R) -> String) -> String {
        match self.format {
            Format::Json => serde_json::to_string_pretty(report).expect("a report always serialises") + "\n",
            Format::Human => human(report),
        }
    }
}

impl Reporter for Summary {
    fn event(&mut self, event: &Event) -> Result<()> {
        let r = match event {
            Event::RunFinished { report } => report,
            Event::HuntFinished { report } => {
                return self.out.write_as(&self.render(*report, report::hunt::render), "writing the report")
            }
            Event::CampaignFinished { report } => {
                return self
                    .out
                    .write_as(&self.render(*report, report::campaign::render), "writing the report")
            }
            Event::MultiCampaignFinished { report } => {
                return self
                    .out
                    .write_as(&self.render(*report, report::campaign::multi::render), "writing the report")
            }
            _ => return Ok(()),
        };
        let text = match self.format {
            Format::Json => report::to_json(r),
            Format::Human if self.out.is_file() => human::render(r, &human::Style { color: false }),
            // The command could not start: tmr's error line on stderr has said so already.
            Format::Human if r.runs.is_empty() => return Ok(()),
            Format::Human if self.quiet && r.vote.unanimous && r.interrupted_by.is_none() => return Ok(()),
            Format::Human => human::render(r, &human::Style { color: self.color }),
        };
        self.out.write_as(&text, "writing the report")
    }
}

/// `--junit FILE`: one test case for the command.
pub struct Junit {
    pub out: Out,
}

impl Reporter for Junit {
    fn event(&mut self, event: &Event) -> Result<()> {
        let Event::RunFinished { report: r } = event else { return Ok(()) };
        self.out.write_as(&report::junit::render(r), "writing the JUnit report")
    }
}

/// `--github`: the job summary appended to $GITHUB_STEP_SUMMARY. A convenience (on by default under
/// GitHub Actions): one that cannot be written is a warning, never the run's exit code.
pub struct GithubSummary {
    pub file: Box<dyn Write>,
}

impl GithubSummary {
    /// `None`, after a warning, when $GITHUB_STEP_SUMMARY is not set or cannot be opened for appending.
    /// Opened before anything runs, as the report files are.
    pub fn open() -> Option<Self> {
        let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
            report::say("tmr: --github: GITHUB_STEP_SUMMARY is not set; no job summary written");
            return None;
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                report::say(&format!(
                    "tmr: warning: cannot open $GITHUB_STEP_SUMMARY ({}): {e}; no job summary written",
                    path.to_string_lossy()
                ))
            })
            .ok()
            .map(|f| GithubSummary { file: Box::new(f) })
    }
}

impl Reporter for GithubSummary {
    fn event(&mut self, event: &Event) -> Result<()> {
        let Event::RunFinished { report: r } = event else { return Ok(()) };
        if let Err(e) = self.file.write_all(report::github::render(r).as_bytes()) {
            report::say(&format!("tmr: warning: writing the GitHub job summary ($GITHUB_STEP_SUMMARY): {e}"));
        }
        Ok(())
    }
}

/// Colour as anstream decides for stderr: a terminal, unless NO_COLOR is set (no-color.org);
/// CLICOLOR_FORCE forces it, CLICOLOR=0 turns it off.
fn use_color() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Reporters;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A writer the test can read after handing it to a reporter.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub Rc<RefCell<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.borrow().clone()).unwrap()
        }
    }

    fn summary(format: Format, quiet: bool, sink: &Shared) -> Summary {
        Summary { format, out: Out::Writer(Box::new(sink.clone())), quiet, color: false }
    }

    /// The renderers are fed a run's event sequence: only its end writes, and each writes its format.
    #[test]
    fn a_run_event_sequence_renders_each_format_once_at_the_end() {
        let (human_out, json_out, junit_out, gh_out) =
            (Shared::default(), Shared::default(), Shared::default(), Shared::default());
        let mut all = Reporters::new();
        all.add(summary(Format::Human, false, &human_out))
            .add(summary(Format::Json, false, &json_out))
            .add(Junit { out: Out::Writer(Box::new(junit_out.clone())) })
            .add(GithubSummary { file: Box::new(gh_out.clone()) });
        let r = report::sample_report(&["x"]);
        let run = r.runs[0].clone();
        all.event(&Event::RunStarted { replicas: 3 }).unwrap();
        all.event(&Event::ReplicaFinished { run: &run }).unwrap();
        all.event(&Event::RoundVoted { vote: &r.vote }).unwrap();
        for out in [&human_out, &json_out, &junit_out, &gh_out] {
            assert!(out.text().is_empty(), "nothing before the run ends");
        }
        all.event(&Event::RunFinished { report: &r }).unwrap();
        assert_eq!(human_out.text(), human::render(&r, &human::Style { color: false }));
        assert_eq!(json_out.text(), report::to_json(&r));
        assert_eq!(junit_out.text(), report::junit::render(&r));
        assert_eq!(gh_out.text(), report::github::render(&r));
    }

    #[test]
    fn quiet_hides_only_a_unanimous_uninterrupted_human_summary() {
        let out = Shared::default();
        let mut quiet = summary(Format::Human, true, &out);
        let mut r = report::sample_report(&["x"]);
        quiet.event(&Event::RunFinished { report: &r }).unwrap();
        assert!(out.text().is_empty());
        r.vote.unanimous = false;
        quiet.event(&Event::RunFinished { report: &r }).unwrap();
        assert!(!out.text().is_empty());
    }

    #[test]
    fn a_hunt_summary_is_written_when_the_hunt_finishes() {
        let (human_out, json_out) = (Shared::default(), Shared::default());
        let mut all = Reporters::new();
        all.add(summary(Format::Human, false, &human_out)).add(summary(Format::Json, false, &json_out));
        let r = crate::report::hunt::sample();
        let rec = crate::replica::fake::record(crate::replica::Job { replica: 0, replicas: 1, round: 0 }, 0);
        all.event(&Event::HuntRunFinished { record: &rec, failing: false }).unwrap();
        assert!(human_out.text().is_empty() && json_out.text().is_empty());
        all.event(&Event::HuntFinished { report: &r }).unwrap();
        assert_eq!(human_out.text(), crate::report::hunt::render(&r));
        assert_eq!(json_out.text(), serde_json::to_string_pretty(&r).unwrap() + "\n");
    }
}
