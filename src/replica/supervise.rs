//! The capture loop: one thread, one `poll` over every replica's stdout/stderr/stdin pipe, tmr's own stdin
//! and the signal self-pipe, with timers for timeouts, kill escalation and leak windows. No reader threads:
//! tmr forks, and forking a multi-threaded process is a trap.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use regex::bytes::Regex;

use super::capture::{Capture, Captured, Reference};
use super::reap;
use super::signals::Signals;
use super::spawn::{exec_result, spawn, Caught, ChildSetup, ExecImage, ExecResult};
use super::stdin::{set_nonblocking, Feed, StdinSource};
use crate::config::{Timeout, RELATIVE_TIMEOUT_FLOOR};
use crate::fingerprint::{Fingerprint, Outcome};
use crate::memvote::MemSnapshot;

/// After a replica exits, how long its pipes may stay open (held by a grandchild) before tmr kills its
/// process group and stops reading: the leak window.
pub const LEAK_WINDOW: Duration = Duration::from_millis(500);
/// Between SIGTERM (timeout) or a forwarded stop signal and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
const READ_BUF: usize = 1 << 16;
const PIPE_SIZE: libc::c_int = 1 << 20;

/// The command, resolved and converted for execve once, before any replica starts.
pub struct Launcher {
    pub path: CString,
    pub argv: Vec<CString>,
    /// tmr's environment without tmr's internal variables (TMR_REPLICA, TMR_REPLICAS, TMR_ROUND, TMR_PAD,
    /// TMR_INJECT): each replica gets the first four afresh, and TMR_INJECT only from `--inject`.
    pub base_env: Vec<CString>,
    /// Append TMR_PAD so the TMR_* variables always take the same number of bytes (memory voting:
    /// `TMR_ROUND=10` must not shift every later byte of the stack against `TMR_ROUND=9`).
    pub pad_env: bool,
}

/// Digits of TMR_REPLICA, TMR_REPLICAS and TMR_ROUND plus TMR_PAD's value, whatever the numbers.
const PADDED_DIGITS: usize = 48;

impl Launcher {
    pub fn new(path: OsString, command: &[OsString]) -> Result<Self> {
        let c = |s: OsString| CString::new(s.into_vec()).context("an argument contains a NUL byte");
        let argv = command.iter().cloned().map(c).collect::<Result<Vec<_>>>()?;
        // tmr's internal variables, as tmr's own environment may carry them (tmr run by a replica, or a
        // stray export): an inherited TMR_INJECT would inject a hidden fault. tmr sets afresh the ones
        // it means (`env_for`, `set_env`).
        const INTERNAL: [&str; 5] =
            ["TMR_REPLICA", "TMR_REPLICAS", "TMR_ROUND", "TMR_PAD", crate::inject::ENV];
        let base_env = std::env::vars_os()
            .filter(|(k, _)| !k.to_str().is_some_and(|k| INTERNAL.contains(&k)))
            .map(|(mut k, v)| {
                k.push("=");
                k.push(v);
                c(k)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Launcher { path: c(path)?, argv, base_env, pad_env: false })
    }

    /// Set (or replace) one variable of every replica's environment.
    pub fn set_env(&mut self, key: &str, value: &str) -> Result<()> {
        let prefix = format!("{key}=");
        self.base_env.retain(|e| !e.as_bytes().starts_with(prefix.as_bytes()));
        self.base_env.push(CString::new(format!("{key}={value}")).context("NUL in an environment value")?);
        Ok(())
    }

    fn env_for(&self, job: &Job) -> Vec<CString> {
        let mut env = self.base_env.clone();
        for (k, v) in [("TMR_REPLICA", job.replica), ("TMR_REPLICAS", job.replicas), ("TMR_ROUND", job.round)]
        {
            env.push(CString::new(format!("{k}={v}")).expect("no NUL in a number"));
        }
        if self.pad_env {
            let digits: usize =
                [job.replica, job.replicas, job.round].iter().map(|n| n.to_string().len()).sum();
            let pad = "x".repeat(PADDED_DIGITS.saturating_sub(digits));
            env.push(CString::new(format!("TMR_PAD={pad}")).expect("no NUL in padding"));
        }
        env
    }
}

/// One execution to run: replica `replica` of `replicas` in round `round` (0 is the voted round).
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub replica: usize,
    pub replicas: usize,
    pub round: usize,
}

pub struct BatchOpts {
    /// How many jobs run at once (1 = sequential).
    pub parallel: usize,
    pub timeout: Option<Timeout>,
    pub stdout_masks: Vec<Regex>,
    pub stderr_masks: Vec<Regex>,
    pub setup: ChildSetup,
    /// The command runs under the memory monitor: give each job a snapshot file as fd 3.
    pub mem: bool,
}

/// Everything known about one finished execution.
#[derive(Debug)]
pub struct RunRecord {
    pub job: Job,
    pub pid: i32,
    pub outcome: Outcome,
    pub stdout: Captured,
    pub stderr: Captured,
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
    pub max_rss_kib: u64,
    /// Its output pipes were still held open after it exited (a leaked grandchild); its group was killed.
    pub leaked: bool,
    /// The memory monitor's snapshot (`--mem`); `None` without `--mem` or when the monitor wrote none.
    pub mem: Option<MemSnapshot>,
    /// This replica's memory key from the page vote, set by the caller after voting.
    pub mem_key: Option<[u8; 32]>,
}

impl RunRecord {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            outcome: self.outcome,
            stdout: self.stdout.summary,
            stderr: self.stderr.summary,
            mem: self.mem_key,
        }
    }
}

pub struct Batch {
    /// Finished executions in job order; jobs never started because of a stop signal are missing.
    pub records: Vec<RunRecord>,
    /// Leftover processes (re-parented orphans) killed after the batch.
    pub swept: usize,
}

/// What a batch's consumer wants after each finished execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Start no further jobs; the ones running finish normally.
    Stop,
}

/// State that lives across batches: signal handling, the stdin spool, the prepared command.
pub struct Harness {
    signals: Signals,
    /// Signals with tmr handlers, for each child to reset before exec.
    caught: Caught,
    stdin: StdinSource,
    launcher: Launcher,
    buf: Vec<u8>,
    /// The stop signal tmr received, if any: no further replica is started once it is set.
    pub interrupted: Option<i32>,
}

struct Stream {
    fd: Option<OwnedFd>,
    cap: Capture,
}

struct Running {
    job: Job,
    pid: Pid,
    started: Instant,
    out: Stream,
    err: Stream,
    feed: Option<Feed>,
    /// The exec-error pipe until it reports; then the errno if exec failed.
    exec_report: Option<OwnedFd>,
    exec_errno: Option<i32>,
    mem_file: Option<std::fs::File>,
    exited_at: Option<Instant>,
    leak_deadline: Option<Instant>,
    timed_out: bool,
    kill_at: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq)]
enum Slot {
    Signal,
    Stdin,
    Out(usize),
    Err(usize),
    Feed(usize),
    Exec(usize),
}

impl Slot {
    /// The same kind of slot for another replica.
    fn with_index(self, i: usize) -> Slot {
        match self {
            Slot::Out(_) => Slot::Out(i),
            Slot::Err(_) => Slot::Err(i),
            other => other,
        }
    }
}

impl Harness {
    pub fn new(launcher: Launcher) -> Result<Self> {
        super::ensure_standard_fds();
        reap::become_subreaper()?;
        let signals = Signals::install()?;
        let caught = Caught::now();
        let stdin = StdinSource::detect()?;
        Ok(Harness { signals, caught, stdin, launcher, buf: vec![0; READ_BUF], interrupted: None })
    }

    /// Run `jobs`, at most `opts.parallel` at a time, and keep every record, in job order.
    pub fn run_batch(&mut self, jobs: &[Job], opts: &BatchOpts) -> Result<Batch> {
        let mut records = Vec::new();
        let swept = self.run_jobs(jobs, opts, &mut |rec| {
            records.push(rec);
            Ok(Control::Continue)
        })?;
        records.sort_by_key(|r| (r.job.round, r.job.replica));
        Ok(Batch { records, swept })
    }

    /// Run `jobs`, at most `opts.parallel` at a time, handing each finished execution to `sink` as it
    /// completes (so thousands of runs never pile up open spool files). Returns the number of leftover
    /// processes killed afterwards.
    pub fn run_jobs(
        &mut self,
        jobs: &[Job],
        opts: &BatchOpts,
        sink: &mut dyn FnMut(RunRecord) -> Result<Control>,
    ) -> Result<usize> {
        let mut pending: VecDeque<usize> = (0..jobs.len()).collect();
        let mut running: Vec<Running> = Vec::new();
        let mut walls: Vec<f64> = Vec::new();
        let majority = opts.parallel.clamp(1, jobs.len().max(1)) / 2 + 1;
        let mut refs = None;
        let mut stop = false;
        let mut leftovers = std::collections::HashSet::new();
        let result = (|| -> Result<()> {
            loop {
                if let Some(sig) = self.signals.take_stop() {
                    self.on_stop(sig, &mut running);
                }
                while !stop && self.interrupted.is_none() && running.len() < opts.parallel.max(1) {
                    let Some(j) = pending.pop_front() else { break };
                    running.push(self.launch(jobs[j], opts, &mut refs)?);
                }
                if running.is_empty() {
                    return Ok(());
                }
                for rec in self.step(&mut running, &mut walls, opts, majority, &mut leftovers)? {
                    stop |= sink(rec)? == Control::Stop;
                }
            }
        })();
        if result.is_err() {
            for r in &running {
                let _ = killpg(r.pid, Signal::SIGKILL);
            }
            for r in running.drain(..) {
                let _ = nix::sys::wait::waitpid(r.pid, None);
            }
        }
        reap::sweep(&mut leftovers);
        let swept = leftovers.len();
        result?;
        Ok(swept)
    }

    fn on_stop(&mut self, sig: i32, running: &mut [Running]) {
        let now = Instant::now();
        let escalate = self.interrupted.is_some();
        self.interrupted.get_or_insert(sig);
        for r in running.iter_mut() {
            if escalate {
                let _ = killpg(r.pid, Signal::SIGKILL);
            } else {
                let _ = killpg(r.pid, Signal::try_from(sig).ok());
                r.kill_at.get_or_insert(now + KILL_GRACE);
            }
        }
    }

    fn launch(
        &mut self,
        job: Job,
        opts: &BatchOpts,
        refs: &mut Option<(Rc<Reference>, Rc<Reference>)>,
    ) -> Result<Running> {
        let env = self.launcher.env_for(&job);
        let image = ExecImage::new(&self.launcher.path, &self.launcher.argv, &env);
        let (stdin_child, feed) = self.stdin.open_for_replica()?;
        let (out_r, out_w) = output_pipe()?;
        let (err_r, err_w) = output_pipe()?;
        let stdio = [stdin_child.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        let mem_file =
            if opts.mem { Some(tempfile::tempfile().context("creating a snapshot file")?) } else { None };
        let setup = ChildSetup { fd3: mem_file.as_ref().map(|f| f.as_raw_fd()), ..opts.setup };
        let started = Instant::now();
        let spawned = spawn(&image, stdio, setup, &self.caught)?;
        // Close the child's ends now, or this replica's EOF would wait for the next replica to exit.
        drop((stdin_child, out_w, err_w));
        let (out, err) = match refs {
            Some((o, e)) => (Capture::new_follower(Rc::clone(o)), Capture::new_follower(Rc::clone(e))),
            None => {
                let (out, o) = Capture::new_reference(opts.stdout_masks.clone());
                let (err, e) = Capture::new_reference(opts.stderr_masks.clone());
                *refs = Some((o, e));
                (out, err)
            }
        };
        Ok(Running {
            job,
            pid: spawned.pid,
            started,
            out: Stream { fd: Some(out_r), cap: out },
            err: Stream { fd: Some(err_r), cap: err },
            feed,
            exec_report: Some(spawned.exec_report),
            mem_file,
            exec_errno: None,
            exited_at: None,
            leak_deadline: None,
            timed_out: false,
            kill_at: None,
        })
    }

    /// One turn of the loop: wait for something to happen (or a deadline), then act on it.
    fn step(
        &mut self,
        running: &mut Vec<Running>,
        walls: &mut Vec<f64>,
        opts: &BatchOpts,
        majority: usize,
        leftovers: &mut std::collections::HashSet<i32>,
    ) -> Result<Vec<RunRecord>> {
        self.retire_finished_feeds(running);
        let now = Instant::now();
        let deadline = running
            .iter()
            .flat_map(|r| [r.kill_at, r.leak_deadline, timeout_deadline(r, opts, walls, majority)])
            .flatten()
            .min();
        let wait_ms = deadline
            .map(|d| d.saturating_duration_since(now).as_millis().min(1000) as u16 + 1)
            .unwrap_or(1000);

        let stdin = std::io::stdin();
        let ready = {
            let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
            let mut slots = vec![Slot::Signal];
            if let Some(spool) = self.stdin.spool() {
                let caught_up = running.iter().any(|r| matches!(r.feed, Some((_, o)) if o == spool.len()));
                if !spool.eof() && caught_up {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                    slots.push(Slot::Stdin);
                }
            }
            let spool_len = self.stdin.spool().map(|s| s.len()).unwrap_or(0);
            for (i, r) in running.iter().enumerate() {
                if let Some(fd) = &r.out.fd {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    slots.push(Slot::Out(i));
                }
                if let Some(fd) = &r.err.fd {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    slots.push(Slot::Err(i));
                }
                if let Some(fd) = &r.exec_report {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    slots.push(Slot::Exec(i));
                }
                if let Some((fd, offset)) = &r.feed {
                    if *offset < spool_len {
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                        slots.push(Slot::Feed(i));
                    }
                }
            }
            match nix::poll::poll(&mut fds, PollTimeout::from(wait_ms)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            fds.iter()
                .zip(slots)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
        };

        // The reference's streams first, and followers paced behind it while it is producing: a follower
        // that reads ahead of the reference must store what it read, and with replicas flooding output
        // in parallel that would be every byte (capture's dedup saves a spool copy per follower). A
        // follower is read in full while the reference's pipe is empty and once the follower has exited
        // (its output is final; holding it would only delay its EOF). The price: while the reference
        // keeps its pipe busy with bytes a follower has not compared yet, that follower runs at the
        // reference's pace (measured: letting followers past once half their pipe was pending made them
        // store 1-2 GiB of a 3 x 1 GiB flood again, 3 s -> 6 s).
        let reference = running.iter().position(|r| r.out.cap.is_reference());
        let mut ready = ready;
        ready.sort_by_key(|s| !matches!(s, Slot::Out(i) | Slot::Err(i) if Some(*i) == reference));
        let producing = |slot: Slot| reference.is_some_and(|ri| ready.contains(&slot.with_index(ri)));
        let limit = |r: &Running, s: &Stream, slot: Slot| -> usize {
            let full = PIPE_SIZE as usize;
            match s.cap.compare_room() {
                Some(room) if producing(slot) && r.exited_at.is_none() => (room as usize).min(full),
                _ => full,
            }
        };
        for &slot in &ready {
            match slot {
                Slot::Signal => self.signals.drain(),
                Slot::Stdin => {
                    if let Some(spool) = self.stdin.spool() {
                        spool.pull(&mut self.buf)?;
                    }
                }
                Slot::Out(i) => {
                    let n = limit(&running[i], &running[i].out, slot);
                    read_stream(&mut running[i].out, &mut self.buf, n)?
                }
                Slot::Err(i) => {
                    let n = limit(&running[i], &running[i].err, slot);
                    read_stream(&mut running[i].err, &mut self.buf, n)?
                }
                Slot::Exec(i) => check_exec(&mut running[i]),
                Slot::Feed(i) => {
                    if let (Some(spool), Some((fd, offset))) = (self.stdin.spool(), running[i].feed.as_mut())
                    {
                        if !spool.push(fd, offset, &mut self.buf) {
                            running[i].feed = None;
                        }
                    }
                }
            }
        }
        if let Some(sig) = self.signals.take_stop() {
            self.on_stop(sig, running);
        }

        let now = Instant::now();
        for r in running.iter_mut() {
            if r.exited_at.is_none() && has_exited(r.pid) {
                r.exited_at = Some(now);
                r.feed = None;
                r.leak_deadline = Some(now + LEAK_WINDOW);
            }
            if r.exited_at.is_none() {
                if r.kill_at.is_some_and(|at| now >= at) {
                    let _ = killpg(r.pid, Signal::SIGKILL);
                    r.kill_at = None;
                } else if !r.timed_out && timeout_deadline(r, opts, walls, majority).is_some_and(|d| now >= d)
                {
                    r.timed_out = true;
                    let _ = killpg(r.pid, Signal::SIGTERM);
                    r.kill_at = Some(now + KILL_GRACE);
                }
            }
        }
        let mut finished = Vec::new();
        let mut i = running.len();
        while i > 0 {
            i -= 1;
            let r = &running[i];
            let streams_closed = r.out.fd.is_none() && r.err.fd.is_none();
            let leak_over = r.leak_deadline.is_some_and(|d| now >= d);
            if r.exited_at.is_some() && (streams_closed || leak_over) {
                // What the replica left running must be seen before its group is killed.
                let pids: Vec<Pid> = running.iter().map(|r| r.pid).collect();
                reap::leftovers(&pids, leftovers);
                let rec = finalize(running.swap_remove(i), &mut self.buf)?;
                walls.push(rec.wall.as_secs_f64());
                finished.push(rec);
            }
        }
        Ok(finished)
    }

    /// A feed that delivered everything and saw EOF is closed, so the replica sees EOF too.
    fn retire_finished_feeds(&mut self, running: &mut [Running]) {
        let Some(spool) = self.stdin.spool() else {
            return;
        };
        for r in running.iter_mut() {
            if let Some((fd, offset)) = r.feed.as_mut() {
                if (spool.eof() && *offset >= spool.len())
                    || (*offset < spool.len() && !spool.push(fd, offset, &mut self.buf))
                {
                    r.feed = None;
                }
            }
        }
    }

    /// Set (or replace) one variable of every replica started from now on.
    pub fn set_env(&mut self, key: &str, value: &str) -> Result<()> {
        self.launcher.set_env(key, value)
    }

    /// Read the rest of tmr's stdin into the spool, so a later round sees all of it.
    pub fn finish_stdin(&mut self) -> Result<()> {
        if let Some(spool) = self.stdin.spool() {
            spool.pull_to_eof(&mut self.buf)?;
        }
        Ok(())
    }
}

fn output_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("creating an output pipe")?;
    // A bigger pipe means fewer wake-ups: measured 1.13 -> 3.44 GB/s here. Refusal (pipe-max-size) is fine.
    let _ = nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    set_nonblocking(&r)?;
    Ok((r, w))
}

/// When the running replica `r` counts as hung, if a timeout applies to it yet.
fn timeout_deadline(r: &Running, opts: &BatchOpts, walls: &[f64], majority: usize) -> Option<Instant> {
    if r.exited_at.is_some() || r.timed_out {
        return None;
    }
    match opts.timeout? {
        Timeout::Absolute(d) => Some(r.started + d),
        Timeout::Relative(factor) => {
            if walls.len() < majority {
                return None;
            }
            let mut w = walls.to_vec();
            let median = crate::stats::median(&mut w)?;
            let limit = Duration::from_secs_f64(median * factor).max(RELATIVE_TIMEOUT_FLOOR);
            Some(r.started + limit)
        }
    }
}

/// Read what a ready pipe holds, in cache-sized pieces, up to one pipe's worth per wake-up so that one
/// flooding replica cannot starve the others (or the signal pipe) of turns.
/// Read what the pipe holds, at most `budget` bytes (a pipe-full, or a follower's compare room).
fn read_stream(s: &mut Stream, buf: &mut [u8], mut budget: usize) -> Result<()> {
    while let Some(fd) = s.fd.as_ref().filter(|_| budget > 0) {
        let want = budget.min(buf.len());
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[..want]) {
            Ok(0) => s.fd = None,
            Ok(n) => {
                s.cap.push(&buf[..n])?;
                budget -= n;
                if n < want || budget == 0 {
                    return Ok(());
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(()),
            Err(_) => s.fd = None,
        }
    }
    Ok(())
}

/// Has `pid` exited? Leaves it a zombie (WNOWAIT), so its process-group id cannot be reused before tmr
/// has killed the group.
fn has_exited(pid: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive) | Err(Errno::EINTR))
}

fn check_exec(r: &mut Running) {
    if let Some(fd) = &r.exec_report {
        match exec_result(fd) {
            ExecResult::Pending => {}
            ExecResult::Started => r.exec_report = None,
            ExecResult::Failed(errno) => {
                r.exec_errno = Some(errno);
                r.exec_report = None;
            }
        }
    }
}

/// Kill what is left of the replica's group, take its last buffered output, and reap it with rusage.
fn finalize(mut r: Running, buf: &mut [u8]) -> Result<RunRecord> {
    // The child wrote its exec errno before exiting, so it is there to read now.
    check_exec(&mut r);
    let leaked = r.out.fd.is_some() || r.err.fd.is_some();
    let _ = killpg(r.pid, Signal::SIGKILL);
    for s in [&mut r.out, &mut r.err] {
        // Whatever is already in the pipe was written by the replica's tree: keep it. One pipe's worth,
        // no more: a leaked writer in another session could otherwise keep tmr here forever.
        read_stream(s, buf, PIPE_SIZE as usize)?;
        s.fd = None;
    }
    let (status, usage) = wait4(r.pid)?;
    let wall = r.exited_at.unwrap_or_else(Instant::now) - r.started;
    let outcome = if let Some(errno) = r.exec_errno {
        Outcome::FailedToStart { errno }
    } else if r.timed_out {
        Outcome::TimedOut
    } else if libc::WIFSIGNALED(status) {
        Outcome::Signaled { signal: libc::WTERMSIG(status) }
    } else {
        Outcome::Exited { code: libc::WEXITSTATUS(status) }
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(RunRecord {
        job: r.job,
        pid: r.pid.as_raw(),
        outcome,
        stdout: r.out.cap.finish()?,
        stderr: r.err.cap.finish()?,
        wall,
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
        leaked,
        mem: r.mem_file.and_then(read_snapshot),
        mem_key: None,
    })
}

/// The monitor's JSON snapshot; a monitor that died mid-write leaves an unparsable file, which reads as
/// "no snapshot" rather than an error of tmr's.
fn read_snapshot(mut f: std::fs::File) -> Option<MemSnapshot> {
    use std::io::{Read, Seek};
    f.rewind().ok()?;
    let mut text = Vec::new();
    f.read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Reap `pid` and get its own resource usage. nix does not wrap wait4; getrusage(RUSAGE_CHILDREN) would
/// mix concurrent replicas.
fn wait4(pid: Pid) -> Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; zero is a valid initial value that wait4 overwrites.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own child.
        let rc = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut usage) };
        if rc >= 0 {
            return Ok((status, usage));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err).with_context(|| format!("waiting for replica pid {pid}"));
        }
    }
}
