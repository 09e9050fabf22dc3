//! Running replicas: spawning them, feeding their stdin, capturing their output, enforcing timeouts and
//! signals, reaping them and whatever they leave behind. tmr's own process plumbing and its `unsafe` live
//! under this module (the monitor's, ptrace's, live under `trace`, which this module imports and which
//! imports nothing of it); what comes out is plain data (`RunRecord`) for the vote and the reports.

pub mod capture;
mod deliver;
#[cfg(test)]
pub mod fake;
pub mod hub;
pub mod placement;
mod reap;
mod signals;
pub mod spawn;
mod stdin;
mod supervise;

pub use capture::Captured;
pub use deliver::stdout_was_closed;
pub use spawn::ChildSetup;
pub use supervise::{Batch, BatchOpts, Control, Harness, Job, Launcher, RunRecord};

/// What the rerun loop needs from the process layer. [`Harness`] is the real one; tests drive the loop
/// with a fake that scripts each job's outcome and advances a fake clock.
pub trait Runner {
    /// Run `jobs` as [`Harness::run_jobs`] does; returns the leftover processes killed afterwards.
    fn run_jobs(
        &mut self,
        jobs: &mut dyn Iterator<Item = Job>,
        opts: &BatchOpts,
        sink: &mut dyn FnMut(RunRecord) -> anyhow::Result<Control>,
    ) -> anyhow::Result<usize>;
    /// The stop signal received, if any: no more jobs are started.
    fn interrupted(&self) -> Option<i32>;
    /// Whether a job started now gets the same stdin as the voted round did.
    fn stdin_replayable(&self) -> bool;
    /// The clock the time budget is measured on.
    fn now(&self) -> std::time::Instant;
    /// The same clock, to read while jobs run (a hunt's `--duration`).
    fn clock(&self) -> Clock {
        std::rc::Rc::new(std::time::Instant::now)
    }
}

/// A clock that can be read while the runner is busy.
pub type Clock = std::rc::Rc<dyn Fn() -> std::time::Instant>;

impl Runner for Harness {
    fn run_jobs(
        &mut self,
        jobs: &mut dyn Iterator<Item = Job>,
        opts: &BatchOpts,
        sink: &mut dyn FnMut(RunRecord) -> anyhow::Result<Control>,
    ) -> anyhow::Result<usize> {
        Harness::run_jobs(self, jobs, opts, sink)
    }

    fn interrupted(&self) -> Option<i32> {
        self.interrupted
    }

    fn stdin_replayable(&self) -> bool {
        Harness::stdin_replayable(self)
    }

    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
}

/// Make sure fds 0, 1 and 2 are open (on /dev/null if tmr was started without them), so that every pipe
/// tmr creates gets a number above 2 and `dup2` in the child never meets its own source fd.
pub fn ensure_standard_fds() {
    for fd in 0..3 {
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            let flags = if fd == 0 { nix::fcntl::OFlag::O_RDONLY } else { nix::fcntl::OFlag::O_WRONLY };
            // The returned fd is the lowest free one, i.e. `fd` itself; it stays open for tmr's lifetime.
            let _ = nix::fcntl::open("/dev/null", flags, nix::sys::stat::Mode::empty());
        }
    }
}
