//! A fake process layer for unit tests of the loops above it (rerun, hunt): each job's exit code comes
//! from a script, and every batch takes a fixed time on a fake clock. No process is started.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::capture::Captured;
use super::{BatchOpts, Control, Job, RunRecord, Runner};
use crate::fingerprint::{Outcome, StreamSummary};

/// A fake process layer: each job's outcome comes from `script(job)`, and every job takes `wall` on
/// a fake clock (a round of parallel jobs takes `wall` once).
pub struct Fake {
    pub script: Box<dyn Fn(&Job) -> i32>,
    pub wall: Duration,
    pub clock: Rc<Cell<Instant>>,
    pub ran: Vec<Job>,
    pub interrupted: Option<i32>,
    pub replayable: bool,
    /// Every job takes `wall` (jobs run one after another), not every batch.
    pub per_job: bool,
}

impl Fake {
    pub fn new(wall_ms: u64, script: impl Fn(&Job) -> i32 + 'static) -> Self {
        Fake {
            script: Box::new(script),
            wall: Duration::from_millis(wall_ms),
            clock: Rc::new(Cell::new(Instant::now())),
            ran: Vec::new(),
            interrupted: None,
            replayable: true,
            per_job: false,
        }
    }
}

pub fn record(job: Job, code: i32) -> RunRecord {
    let summary = StreamSummary { len: 0, digest: [0; 16] };
    RunRecord {
        job,
        pid: 0,
        outcome: Outcome::Exited { code },
        stdout: Captured::summarised(summary),
        stderr: Captured::summarised(summary),
        wall: Duration::ZERO,
        user: Duration::ZERO,
        sys: Duration::ZERO,
        max_rss_kib: 0,
        leaked: false,
        mem: None,
        mem_key: None,
        divergence: [None, None],
        node: None,
        rescheduled_from: None,
        stopped: false,
        stdin_end: None,
    }
}

impl Runner for Fake {
    fn run_jobs(
        &mut self,
        jobs: &mut dyn Iterator<Item = Job>,
        _opts: &BatchOpts,
        sink: &mut dyn FnMut(RunRecord) -> Result<Control>,
    ) -> Result<usize> {
        self.clock.set(self.clock.get() + self.wall);
        for job in jobs {
            if self.per_job && !self.ran.is_empty() {
                self.clock.set(self.clock.get() + self.wall);
            }
            self.ran.push(job);
            if sink(record(job, (self.script)(&job)))? == Control::Stop {
                break;
            }
        }
        Ok(0)
    }
    fn interrupted(&self) -> Option<i32> {
        self.interrupted
    }
    fn stdin_replayable(&self) -> bool {
        self.replayable
    }
    fn now(&self) -> Instant {
        self.clock.get()
    }
    fn clock(&self) -> super::Clock {
        let clock = Rc::clone(&self.clock);
        Rc::new(move || clock.get())
    }
}
