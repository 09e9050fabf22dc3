//! The capture loop: one thread, one `poll` over every replica's stdout/stderr/stdin pipe, tmr's own
//! stdin, tmr's own output (streamed delivery) and the signal self-pipe. No reader threads: tmr forks,
//! and forking a multi-threaded process is a trap. The loop only turns readiness into events for the
//! pure [`Supervisor`] (timeouts, escalation, stop signals, the leak window) and the stream hub
//! (committing and delivering output, pacing), and carries out what they decide.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use regex::bytes::Regex;

use super::capture::{Capture, Captured};
use super::hub::{StreamHub, StreamPlan};
use super::reap;
use super::signals::Signals;
use super::spawn::{exec_result, spawn, Caught, ChildSetup, ExecImage, ExecResult};
use super::stdin::{set_nonblocking, Feed, StdinSource};
use crate::fingerprint::{Fingerprint, Outcome, StreamSummary};
use crate::memvote::MemSnapshot;
use crate::stream::Divergence;
use crate::supervisor::{Action, Event, Limits, Supervisor};
use crate::trace::snapfile;
use crate::units::Timeout;

/// Up to a pipe's worth ([`PIPE_SIZE`]) is read from each ready pipe per wake-up. Reading a pipe again
/// at once, while its writer refills it, makes reader and writer fight over the pipe's lock (draining each
/// pipe to empty cost 1.45× a bare drain); reading only 64 KiB per wake-up woke the writers 16 times per
/// pipe's worth: 50,000 context switches per 3 GiB flood against the bare drain's 4,000, and 1.28–1.33×
/// its wall.
const READ_BUF: usize = 1 << 20;
/// That pipe's worth is read in turns of this size across the ready pipes ([`read_ready`]), so that the
/// leader's bytes are still in cache when the other replicas' bytes are compared with them and when the
/// committed stream is hashed: one 1 MiB read per pipe moved 3 MiB through a 2 MiB L2 between the
/// leader's read and the last comparison. Measured on the 3 × 1 GiB flood (`/tmp`-free A/B, 12 and 15
/// interleaved rounds): 1.04× and 1.05× a bare drain with 256 KiB turns, against 1.14× with one 1 MiB
/// read; 128 and 512 KiB turns were in between (1.07–1.10×).
const READ_TURN: usize = 256 << 10;
/// While a replica is held back, the poll loop looks again this often (milliseconds): a cycle of holds
/// shows as a turn in which nothing was read (`StreamHub::plan_holds`).
const HOLD_CHECK_MS: u16 = 20;
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
    /// The command is a text file without `#!`: run it with /bin/sh if the kernel refuses it.
    pub script: bool,
    /// Run each job elsewhere (`--launcher slurm`): its argv is prefixed with the placement's, and its
    /// node's health is checked when it ends (see `Harness::node_check`).
    pub placement: Option<std::rc::Rc<dyn super::placement::Placement>>,
    /// A private directory that lives as long as the launcher: the memory monitor's answer logs.
    pub scratch: Option<crate::scratch::Scratch>,
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
        const INTERNAL: [&str; 7] = [
            "TMR_REPLICA",
            "TMR_REPLICAS",
            "TMR_ROUND",
            "TMR_PAD",
            crate::inject::ENV,
            "TMR_REPLOG",
            "TMR_FORK",
        ];
        let base_env = std::env::vars_os()
            .filter(|(k, _)| !k.to_str().is_some_and(|k| INTERNAL.contains(&k)))
            .map(|(mut k, v)| {
                k.push("=");
                k.push(v);
                c(k)
            })
            .collect::<Result<Vec<_>>>()?;
        let script = super::spawn::looks_like_script(std::path::Path::new(&path));
        Ok(Launcher {
            path: c(path)?,
            argv,
            base_env,
            pad_env: false,
            script,
            placement: None,
            scratch: None,
        })
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
    /// For a relative timeout: the median wall time that `Nx` multiplies, when known in advance. Reruns
    /// have no siblings to take a median from, so they use the voted round's majority median; without
    /// it, a lone rerun of a hung replica would never time out.
    pub reference_wall: Option<f64>,
    /// Keep every job's output in a spool (the sequential voted round, `hunt --keep`), up to this many
    /// bytes per stream (`--buffer-limit`).
    pub keep: Option<u64>,
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
    /// Where its streamed stdout/stderr first differed from what a majority committed.
    pub divergence: [Option<Divergence>; 2],
    /// The node it ran on (`--launcher slurm`).
    pub node: Option<String>,
    /// It reran this job because the node named here failed under the first attempt.
    pub rescheduled_from: Option<String>,
    /// It was still running when tmr passed on a stop signal to it: how it ended is no evidence about
    /// the command (hunt and `tmr test` leave it out of their counts).
    pub stopped: bool,
    /// With a regular file on stdin: the offset this replica's reading ended at.
    pub stdin_end: Option<u64>,
}

impl RunRecord {
    /// Stream `k`: 0 stdout, 1 stderr.
    pub fn stream(&self, k: usize) -> &Captured {
        if k == 0 {
            &self.stdout
        } else {
            &self.stderr
        }
    }

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

/// State that lives across batches: signal handling, the stdin spool, the prepared command, and the
/// voted round's stream hub.
pub struct Harness {
    signals: Signals,
    /// Signals with tmr handlers, for each child to reset before exec.
    caught: Caught,
    stdin: StdinSource,
    launcher: Launcher,
    buf: Vec<u8>,
    /// The stop signal tmr received, if any: no further replica is started once it is set. SIGPIPE
    /// when tmr's reader closed its output.
    pub interrupted: Option<i32>,
    /// How many replicas were running when that signal came (each was sent it).
    pub stopped: usize,
    /// Streams the next batch's output to the user (the voted round), when set.
    hub: Option<StreamHub>,
    /// tmr's stdout is a pipe or socket, so its reader can leave: POLLERR on its write end.
    watch_stdout: bool,
    /// Watch for that now ([`Harness::watch_reader`]): while nothing is written to stdout yet
    /// (`--buffered`, `--sequential`, `tmr test`), not while output flows to it.
    watching: bool,
    /// That reader has left.
    stdout_gone: bool,
    /// Slots the supervisor said are done, waiting to be finalized by the loop.
    done: Vec<(usize, bool)>,
    /// Jobs whose node failed under them (`--launcher slurm`), each rerun on another node.
    pub node_failures: Vec<super::placement::NodeFailure>,
}

/// One output stream of a running replica: its pipe until EOF, and where its bytes go.
struct Stream {
    fd: Option<OwnedFd>,
    /// Hashed (and maybe kept) here, or `None` when the hub takes its bytes.
    cap: Option<Capture>,
    /// The stream was finished in the hub (EOF reported once).
    ended: bool,
}

struct Running {
    job: Job,
    /// Its slot in the supervisor.
    slot: usize,
    pid: Pid,
    started: Instant,
    streams: [Stream; 2],
    feed: Option<Feed>,
    /// The exec-error pipe until it reports; then the errno if exec failed.
    exec_report: Option<OwnedFd>,
    exec_errno: Option<i32>,
    mem_file: Option<std::fs::File>,
    exited: bool,
    /// A regular file on stdin: this replica's own open of it, whose offset after the replica ends is
    /// how far it read (the caller's offset is left there for the winner, as without tmr).
    stdin_pos: Option<OwnedFd>,
    /// Still running when tmr passed on a stop signal (Ctrl-C): its end is tmr's doing, not its own.
    stopped: bool,
    closed_reported: bool,
    node: Option<String>,
    rescheduled_from: Option<String>,
    /// `--fork --mem`: the tracer tmr started for this forked replica (`__tmr-monitor --adopt`), reaped
    /// with it.
    helper: Option<Pid>,
}

/// A process just started, with tmr's ends of its pipes.
struct Started {
    pid: Pid,
    started: Instant,
    out_r: OwnedFd,
    err_r: OwnedFd,
    feed: Option<super::stdin::Feed>,
    exec_report: Option<OwnedFd>,
}

#[derive(Clone, Copy, PartialEq)]
enum Ready {
    Signal,
    Stdin,
    Output(usize, usize),
    Feed(usize),
    Exec(usize),
    Deliver(usize),
    /// tmr's stdout reported POLLERR: its reader has left.
    StdoutGone,
}

impl Harness {
    pub fn new(launcher: Launcher) -> Result<Self> {
        super::ensure_standard_fds();
        reap::become_subreaper()?;
        let signals = Signals::install()?;
        let caught = Caught::now();
        let stdin = StdinSource::detect()?;
        Ok(Harness {
            signals,
            caught,
            stdin,
            launcher,
            buf: vec![0; READ_BUF],
            interrupted: None,
            watch_stdout: nix::sys::stat::fstat(libc::STDOUT_FILENO)
                .map(|st| matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK))
                .unwrap_or(false),
            watching: true,
            stdout_gone: false,
            stopped: 0,
            hub: None,
            done: Vec::new(),
            node_failures: Vec::new(),
        })
    }

    /// Stream the next batch's output to the user as `plan` says (the voted round of parallel replicas).
    pub fn stream_next(&mut self, plan: &StreamPlan, replicas: usize) -> Result<()> {
        self.hub = Some(StreamHub::new(plan, replicas)?);
        Ok(())
    }

    /// Whether the next batches end when tmr's reader leaves (on by default). Off where output flows to
    /// tmr's stdout as the replicas run, or where none will: as in a shell pipeline, a reader that left
    /// then ends a replica only when there is something to write (EPIPE on tmr's write). Watching there
    /// SIGPIPE'd replicas that would never write again (`tmr -- sh -c 'echo ready; sleep 1; touch f' |
    /// grep -q ready` lost `f` and exited 141; `tmr -- seq 100 | head -1` exited 141 in one run in two).
    pub fn watch_reader(&mut self, on: bool) {
        self.watching = on;
    }

    /// The stream hub of the last streamed batch, for its reports and the end of its delivery.
    pub fn hub(&mut self) -> Option<&mut StreamHub> {
        self.hub.as_mut()
    }

    /// Run `jobs`, at most `opts.parallel` at a time, and keep every record, in job order.
    pub fn run_batch(&mut self, jobs: &[Job], opts: &BatchOpts) -> Result<Batch> {
        let mut records = Vec::new();
        let swept = self.run_jobs(&mut jobs.iter().copied(), opts, &mut |rec| {
            records.push(rec);
            Ok(Control::Continue)
        })?;
        records.sort_by_key(|r| (r.job.round, r.job.replica));
        Ok(Batch { records, swept })
    }

    /// Run `jobs`, at most `opts.parallel` at a time, handing each finished execution to `sink` as it
    /// completes (so thousands of runs never pile up open spool files). Jobs are drawn from the iterator
    /// only as slots free up, so a million-run hunt allocates nothing up front. Returns the number of
    /// leftover processes killed afterwards.
    pub fn run_jobs(
        &mut self,
        jobs: &mut dyn Iterator<Item = Job>,
        opts: &BatchOpts,
        sink: &mut dyn FnMut(RunRecord) -> Result<Control>,
    ) -> Result<usize> {
        let reference = opts.reference_wall.map(Duration::from_secs_f64);
        let mut sup = Supervisor::new(Limits::new(opts.timeout, reference, opts.parallel));
        let mut running: Vec<Running> = Vec::new();
        let mut next_slot = 0;
        let mut stop = false;
        let mut leftovers = std::collections::HashSet::new();
        // Jobs to run again because their node failed, with that node: they go before new jobs.
        let mut retry: Vec<(Job, String)> = Vec::new();
        // `--fork`: a job drawn for a group that belongs to the next round, started with that round.
        let mut carry: Option<Job> = None;
        let result = (|| -> Result<()> {
            loop {
                self.take_signals(&mut sup, &mut running);
                while !stop && self.interrupted.is_none() && running.len() < opts.parallel.max(1) {
                    let (job, from) = match retry.pop() {
                        Some((job, node)) => (job, Some(node)),
                        None => match carry.take().or_else(|| jobs.next()) {
                            Some(job) => (job, None),
                            None => break,
                        },
                    };
                    if opts.setup.fork && from.is_none() && self.launcher.placement.is_none() {
                        // One exec'd replica forks the rest of its round's jobs that have a free slot.
                        let mut group = vec![job];
                        while running.len() + group.len() < opts.parallel.max(1) {
                            match jobs.next() {
                                Some(j) if j.round == job.round => group.push(j),
                                Some(j) => {
                                    carry = Some(j);
                                    break;
                                }
                                None => break,
                            }
                        }
                        for r in self.launch_group(&group, next_slot, opts)? {
                            self.act(sup.handle(Event::Launched { slot: r.slot }, r.started), &mut running);
                            next_slot += 1;
                            running.push(r);
                        }
                        continue;
                    }
                    let r = self.launch(job, next_slot, opts, from)?;
                    self.act(sup.handle(Event::Launched { slot: next_slot }, r.started), &mut running);
                    next_slot += 1;
                    running.push(r);
                }
                // Retries wait for a launch, which a stop or a signal prevents.
                if running.is_empty() && (retry.is_empty() || stop || self.interrupted.is_some()) {
                    return Ok(());
                }
                let finished = self.step(&mut sup, &mut running, &mut leftovers)?;
                let ended = Instant::now();
                for rec in finished {
                    if let Some(rec) = self.node_check(rec, ended, &mut retry)? {
                        stop |= sink(rec)? == Control::Stop;
                    }
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

    /// Stop signals (and a reader that closed tmr's output) become supervisor events. Ctrl-Z suspends the
    /// replicas' groups, then tmr itself; when the shell continues tmr, tmr continues them.
    fn take_signals(&mut self, sup: &mut Supervisor, running: &mut [Running]) {
        if self.signals.take_suspend() {
            let live: Vec<Pid> = running.iter().filter(|r| !r.exited).map(|r| r.pid).collect();
            for &pid in &live {
                let _ = killpg(pid, Signal::SIGSTOP);
            }
            let _ = nix::sys::signal::raise(Signal::SIGSTOP);
            for &pid in &live {
                let _ = killpg(pid, Signal::SIGCONT);
            }
        }
        let gone = (self.stdout_gone || self.hub.as_ref().is_some_and(|h| h.reader_gone()))
            && self.interrupted.is_none();
        if gone {
            self.close_gone_streams(running);
        }
        let signal = if gone { Some(libc::SIGPIPE) } else { self.signals.take_stop() };
        if let Some(signal) = signal {
            if self.interrupted.is_none() {
                self.stopped = running.iter().filter(|r| !r.exited).count();
            }
            for r in running.iter_mut().filter(|r| !r.exited) {
                r.stopped = true;
            }
            self.interrupted.get_or_insert(signal);
            let actions = sup.handle(Event::Stop { signal }, Instant::now());
            self.act(actions, running);
        }
    }

    /// tmr's reader left: close the replicas' pipes of that stream, so that their next write fails
    /// with EPIPE as in a shell pipeline. A program that ignores SIGPIPE (Python does) would otherwise
    /// write on into pipes tmr drains for nobody, until the grace period's SIGKILL, 2 s later.
    fn close_gone_streams(&mut self, running: &mut [Running]) {
        for k in 0..2 {
            let hub_gone = self.hub.as_ref().is_some_and(|h| h.sink_gone(k));
            if !(hub_gone || (k == 0 && self.stdout_gone)) {
                continue;
            }
            for r in running.iter_mut() {
                let lane = r.job.replica;
                let s = &mut r.streams[k];
                if s.fd.take().is_some() {
                    // Ends the lane in the hub (a stream without capture); its record says what was read.
                    let _ = end_stream(s, lane, k, self.hub.as_mut());
                }
            }
        }
    }

    /// Carry out the supervisor's signals now; slots to finalize wait in `self.done` for the loop, which
    /// owns the records.
    fn act(&mut self, actions: Vec<Action>, running: &mut [Running]) {
        for a in actions {
            match a {
                Action::Signal { slot, signal } => {
                    if let Some(r) = running.iter().find(|r| r.slot == slot) {
                        let _ = killpg(r.pid, Signal::try_from(signal).ok());
                    }
                }
                Action::Finalize { slot, leaked } => self.done.push((slot, leaked)),
            }
        }
    }

    /// A record whose node failed under it is not the program's outcome: it is noted, and its job goes
    /// back in the queue (the placement has excluded the node). Everything else passes through.
    /// `ended`: every record of this batch had ended by then (one Slurm query can answer for all of them).
    fn node_check(
        &mut self,
        rec: RunRecord,
        ended: Instant,
        retry: &mut Vec<(Job, String)>,
    ) -> Result<Option<RunRecord>> {
        let (Some(placement), Some(node)) = (self.launcher.placement.clone(), rec.node.clone()) else {
            return Ok(Some(rec));
        };
        if self.interrupted.is_some()
            || placement.health(&node, ended)? == super::placement::NodeHealth::Healthy
        {
            return Ok(Some(rec));
        }
        self.node_failures.push(super::placement::NodeFailure {
            replica: rec.job.replica,
            round: rec.job.round,
            node: node.clone(),
            rescheduled_on: None,
        });
        retry.push((rec.job, node));
        Ok(None)
    }

    fn launch(&mut self, job: Job, slot: usize, opts: &BatchOpts, from: Option<String>) -> Result<Running> {
        let env = self.launcher.env_for(&job);
        // Under a placement the command runs as `srun … -w NODE -- PATH ARGS…`.
        let placed = match &self.launcher.placement {
            Some(p) => {
                let w = p.wrap(&job)?;
                let mut argv = w.prefix;
                // slurmstepd's execve has no /bin/sh fallback for a script without `#!` (exit 8).
                if self.launcher.script && !has_shebang(&self.launcher.path) {
                    argv.push(c"/bin/sh".to_owned());
                }
                argv.push(self.launcher.path.clone());
                argv.extend(self.launcher.argv.iter().skip(1).cloned());
                if let Some(f) = self.node_failures.iter_mut().rev().find(|f| from.as_ref() == Some(&f.node))
                {
                    f.rescheduled_on = Some(w.node.clone());
                }
                Some((w.path, argv, w.node))
            }
            None => None,
        };
        let (path, argv) = match &placed {
            Some((path, argv, _)) => (path, argv),
            None => (&self.launcher.path, &self.launcher.argv),
        };
        let image = ExecImage::new(path, argv, &env, self.launcher.script && placed.is_none());
        let (stdin_child, feed) = self.stdin.open_for_replica()?;
        let stdin_pos = match self.stdin {
            super::stdin::StdinSource::File { .. } => stdin_child.try_clone().ok(),
            _ => None,
        };
        let (out_r, out_w) = output_pipe()?;
        let (err_r, err_w) = output_pipe()?;
        let stdio = [stdin_child.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        let mem_file = if opts.mem { Some(super::capture::snapshot_file()?) } else { None };
        let setup =
            ChildSetup { fd3: mem_file.as_ref().map(|f| f.as_raw_fd()), trace_me: false, ..opts.setup };
        let started = Instant::now();
        let spawned = spawn(&image, stdio, setup, &self.caught)?;
        // Close the child's ends now, or this replica's EOF would wait for the next replica to exit.
        drop((stdin_child, out_w, err_w));
        let ends =
            Started { pid: spawned.pid, started, out_r, err_r, feed, exec_report: Some(spawned.exec_report) };
        let mut r = self.running(job, slot, opts, from, ends);
        r.mem_file = mem_file;
        r.stdin_pos = stdin_pos;
        r.node = placed.map(|(_, _, node)| node);
        Ok(r)
    }

    /// The bookkeeping of a replica just started.
    fn running(&self, job: Job, slot: usize, opts: &BatchOpts, from: Option<String>, s: Started) -> Running {
        // A rerun after a node failure cannot join the hub's lane, which already ended: it is captured,
        // and kept, in case it must be delivered from its spool.
        let hubbed = self.hub.is_some() && from.is_none();
        let keep = opts.keep.or((self.hub.is_some() && from.is_some()).then_some(u64::MAX));
        let cap = |masks: &Vec<Regex>| (!hubbed).then(|| Capture::new(masks.clone(), keep));
        Running {
            job,
            slot,
            pid: s.pid,
            started: s.started,
            streams: [
                Stream { fd: Some(s.out_r), cap: cap(&opts.stdout_masks), ended: false },
                Stream { fd: Some(s.err_r), cap: cap(&opts.stderr_masks), ended: false },
            ],
            feed: s.feed,
            exec_report: s.exec_report,
            mem_file: None,
            exec_errno: None,
            exited: false,
            stdin_pos: None,
            stopped: false,
            closed_reported: false,
            node: None,
            rescheduled_from: from,
            helper: None,
        }
    }

    /// `--fork`: exec the group's first job, and fork the others from it after its loader
    /// (`trace/forkrun.rs`); each gets its own pipes, made here like any replica's. A command that ends
    /// before its entry point (an exec error) is a replica like any other, and the rest of the group
    /// is then started the ordinary way.
    #[cfg(target_arch = "x86_64")]
    fn launch_group(&mut self, group: &[Job], first_slot: usize, opts: &BatchOpts) -> Result<Vec<Running>> {
        use crate::trace::forkrun::{fork_after_load, Extra, ForkPlan, Forked, ENV as FORK_ENV};
        if group.len() == 1 {
            return Ok(vec![self.launch(group[0], first_slot, opts, None)?]);
        }
        let mut env = self.launcher.env_for(&group[0]);
        let mut ends = Vec::new();
        for _ in group {
            let (stdin_child, feed) = self.stdin.open_for_replica()?;
            let (out_r, out_w) = output_pipe()?;
            let (err_r, err_w) = output_pipe()?;
            let mem_file = match opts.mem {
                true => Some(super::capture::snapshot_file()?),
                false => None,
            };
            ends.push(([stdin_child, out_w, err_w], out_r, err_r, feed, mem_file));
        }
        let keep_open = || nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty());
        // The copies' ends must survive the exec: the original holds them until the copies take theirs.
        for (child, ..) in &ends[1..] {
            for fd in child {
                nix::fcntl::fcntl(fd.as_raw_fd(), keep_open())
                    .context("passing a replica's pipe to the original")?;
            }
        }
        let extras: Vec<Extra> = ends[1..]
            .iter()
            .zip(&group[1..])
            .map(|((child, ..), job)| Extra {
                replica: job.replica,
                stdio: child.each_ref().map(|f| f.as_raw_fd()),
            })
            .collect();
        // With --mem the original's tracer forks the copies and reports them on this pipe.
        let report = match opts.mem {
            true => {
                let (r, w) =
                    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("creating the --fork report pipe")?;
                nix::fcntl::fcntl(w.as_raw_fd(), keep_open()).context("passing the --fork report pipe")?;
                let plan = ForkPlan {
                    report_fd: w.as_raw_fd(),
                    original_replica: group[0].replica,
                    extras: extras.clone(),
                };
                env.push(CString::new(format!("{FORK_ENV}={}", plan.to_env())).expect("no NUL in numbers"));
                Some((r, w))
            }
            false => None,
        };
        let image = ExecImage::new(&self.launcher.path, &self.launcher.argv, &env, self.launcher.script);
        let stdio = [&ends[0].0[0], &ends[0].0[1], &ends[0].0[2]].map(|fd| fd.as_raw_fd());
        let fd3 = ends[0].4.as_ref().map(|f| f.as_raw_fd());
        let setup = ChildSetup { fd3, trace_me: !opts.mem, ..opts.setup };
        let started = Instant::now();
        let spawned = spawn(&image, stdio, setup, &self.caught)?;
        let signals = &self.signals;
        let (forked, calls) = match report {
            None => {
                let forked = fork_after_load(spawned.pid, &extras, group[0].replica, signals.fd(), &|| {
                    signals.drain()
                })
                .context("--fork: forking the replicas after the loader")?;
                (forked, Vec::new())
            }
            Some((r, w)) => {
                drop(w);
                for (child, ..) in &mut ends[1..] {
                    // Only the original may hold the copies' ends now, or their EOF would wait for tmr.
                    *child = [open_null()?, open_null()?, open_null()?];
                }
                set_nonblocking(&r)?;
                let copies = read_fork_report(&r, signals.fd(), &|| signals.drain())?;
                let forked = match !copies.is_empty() && copies.len() == extras.len() {
                    true => Forked::Started(copies.iter().map(|c| c.0).collect()),
                    false => Forked::Ended,
                };
                (forked, copies.iter().map(|c| c.1).collect::<Vec<u64>>())
            }
        };
        let mut out = Vec::new();
        let mut ends = ends.into_iter();
        let (child, out_r, err_r, feed, mem_file) = ends.next().expect("a group has a first job");
        drop(child);
        let first =
            Started { pid: spawned.pid, started, out_r, err_r, feed, exec_report: Some(spawned.exec_report) };
        let mut r = self.running(group[0], first_slot, opts, None, first);
        r.mem_file = mem_file;
        out.push(r);
        match forked {
            Forked::Started(pids) => {
                for (k, ((child, out_r, err_r, feed, mem_file), pid)) in ends.zip(pids).enumerate() {
                    drop(child);
                    let job = group[k + 1];
                    let helper = match &mem_file {
                        Some(f) => Some(self.adopt(job, pid, calls[k], f)?),
                        None => None,
                    };
                    let s = Started { pid, started, out_r, err_r, feed, exec_report: None };
                    let mut r = self.running(job, first_slot + k + 1, opts, None, s);
                    r.mem_file = mem_file;
                    r.helper = helper;
                    out.push(r);
                }
            }
            Forked::Ended => {
                drop(ends);
                for (k, job) in group.iter().enumerate().skip(1) {
                    out.push(self.launch(*job, first_slot + k, opts, None)?);
                }
            }
        }
        Ok(out)
    }

    /// `--fork --mem`: start the tracer of a forked replica (`tmr __tmr-monitor --adopt PID CALLS`, with
    /// the monitor's own options), which seizes it from its group-stop and lets it run.
    #[cfg(target_arch = "x86_64")]
    fn adopt(&mut self, job: Job, pid: Pid, calls: u64, mem_file: &std::fs::File) -> Result<Pid> {
        let argv = &self.launcher.argv;
        let options = argv.iter().skip(2).take_while(|a| a.as_bytes() != b"--");
        let adopt_argv: Vec<CString> = argv[..2]
            .iter()
            .cloned()
            .chain([c"--adopt".to_owned(), cstring(pid.as_raw()), cstring(calls)])
            .chain(options.cloned())
            .collect();
        let env = self.launcher.env_for(&job);
        let image = ExecImage::new(&self.launcher.path, &adopt_argv, &env, false);
        let null = [open_null()?, open_null()?, open_null()?];
        let setup =
            ChildSetup { fd3: Some(mem_file.as_raw_fd()), trace_me: false, fork: false, personality: None };
        let spawned = spawn(&image, null.each_ref().map(|f| f.as_raw_fd()), setup, &self.caught)
            .context("--fork --mem: starting a forked replica's tracer")?;
        Ok(spawned.pid)
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn launch_group(&mut self, _: &[Job], _: usize, _: &BatchOpts) -> Result<Vec<Running>> {
        anyhow::bail!("--fork needs an x86-64 build")
    }

    /// One turn of the loop: wait for something to happen (or a deadline), then act on it.
    fn step(
        &mut self,
        sup: &mut Supervisor,
        running: &mut Vec<Running>,
        leftovers: &mut std::collections::HashSet<i32>,
    ) -> Result<Vec<RunRecord>> {
        self.retire_finished_feeds(running);
        let now = Instant::now();
        let wait_ms = sup
            .next_deadline()
            .map(|d| d.saturating_duration_since(now).as_millis().min(1000) as u16 + 1)
            .unwrap_or(1000);
        // A held replica may be part of a cycle of holds, which only a turn without progress shows.
        let wait_ms = match self.hub.as_mut().is_some_and(|h| h.plan_holds()) {
            true => wait_ms.min(HOLD_CHECK_MS),
            false => wait_ms,
        };

        let stdin = std::io::stdin();
        let mut held = Vec::new();
        let ready = {
            let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
            let mut slots = vec![Ready::Signal];
            if let Some(spool) = self.stdin.spool() {
                let caught_up = running.iter().any(|r| matches!(r.feed, Some((_, o)) if o == spool.len()));
                if caught_up && spool.wants_more(slowest_feed(running)) {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                    slots.push(Ready::Stdin);
                }
            }
            let spool_len = self.stdin.spool().map(|s| s.len()).unwrap_or(0);
            let outputs: Vec<(usize, std::os::fd::RawFd)> =
                self.hub.as_ref().map(|h| h.waiting().collect()).unwrap_or_default();
            for &(stream, fd) in &outputs {
                // SAFETY: `fd` is tmr's own stdout or stderr, open for the whole run.
                let out = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                fds.push(PollFd::new(out, PollFlags::POLLOUT));
                slots.push(Ready::Deliver(stream));
            }
            if self.watch_stdout && self.watching && !self.stdout_gone {
                // SAFETY: fd 1 is open for tmr's whole life (`ensure_standard_fds`).
                let out = unsafe { std::os::fd::BorrowedFd::borrow_raw(libc::STDOUT_FILENO) };
                fds.push(PollFd::new(out, PollFlags::empty()));
                slots.push(Ready::StdoutGone);
            }
            for (i, r) in running.iter().enumerate() {
                for (k, s) in r.streams.iter().enumerate() {
                    if let Some(fd) = &s.fd {
                        let may = self.hub.as_ref().is_none_or(|h| h.may_read(r.job.replica, k));
                        if may {
                            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                            slots.push(Ready::Output(i, k));
                        } else {
                            held.push(r.slot);
                        }
                    }
                }
                if let Some(fd) = &r.exec_report {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    slots.push(Ready::Exec(i));
                }
                if let Some((fd, offset)) = &r.feed {
                    if *offset < spool_len {
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                        slots.push(Ready::Feed(i));
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

        let outputs: Vec<(usize, usize)> = ready
            .iter()
            .filter_map(|s| match *s {
                Ready::Output(i, k) => Some((i, k)),
                _ => None,
            })
            .collect();
        let mut outputs_read = false;
        for &slot in &ready {
            match slot {
                Ready::Signal => self.signals.drain(),
                Ready::Stdin => {
                    let slowest = slowest_feed(running);
                    if let Some(spool) = self.stdin.spool() {
                        spool.pull(&mut self.buf)?;
                        spool.trim(slowest)?;
                    }
                }
                // All of them at the first: in turns (after the signal pipe and tmr's own outputs).
                Ready::Output(..) if !outputs_read => {
                    outputs_read = true;
                    self.read_ready(running, &outputs)?;
                }
                Ready::Output(..) => {}
                Ready::Exec(i) => check_exec(&mut running[i]),
                Ready::Feed(i) => {
                    if let (Some(spool), Some((fd, offset))) = (self.stdin.spool(), running[i].feed.as_mut())
                    {
                        if !spool.push(fd, offset, &mut self.buf) {
                            running[i].feed = None;
                        }
                    }
                }
                Ready::Deliver(stream) => {
                    if let Some(h) = self.hub.as_mut() {
                        h.flush(stream)?;
                    }
                }
                Ready::StdoutGone => self.stdout_gone = true,
            }
        }
        self.take_signals(sup, running);

        let now = Instant::now();
        // Held slots first: see `Event::Held`.
        let mut events: Vec<Event> = held.into_iter().map(|slot| Event::Held { slot }).collect();
        for r in running.iter_mut() {
            if !r.exited && has_exited(r.pid) {
                r.exited = true;
                r.feed = None;
                events.push(Event::Exited { slot: r.slot });
            }
            if r.exited && !r.closed_reported && r.streams.iter().all(|s| s.fd.is_none()) {
                r.closed_reported = true;
                events.push(Event::Closed { slot: r.slot });
            }
        }
        events.push(Event::Tick);
        for e in events {
            let actions = sup.handle(e, now);
            self.act(actions, running);
        }
        let mut finished = Vec::new();
        for (slot, leaked) in std::mem::take(&mut self.done) {
            let Some(i) = running.iter().position(|r| r.slot == slot) else { continue };
            // What the replica left running must be seen before its group is killed.
            let pids: Vec<Pid> =
                running.iter().flat_map(|r| std::iter::once(r.pid).chain(r.helper)).collect();
            reap::leftovers(&pids, leftovers);
            let r = running.swap_remove(i);
            let timed_out = sup.timed_out(slot);
            let exited_at = sup.exited_at(slot);
            finished.push(self.finalize(r, leaked, timed_out, exited_at)?);
        }
        Ok(finished)
    }

    /// Read the ready output pipes (`(running index, stream)`, in replica order) in turns of
    /// [`READ_TURN`], up to [`READ_BUF`] each: a pipe leaves the turns once a read leaves it empty.
    fn read_ready(&mut self, running: &mut [Running], outputs: &[(usize, usize)]) -> Result<()> {
        let mut left: Vec<(usize, usize, usize)> = outputs.iter().map(|&(i, k)| (i, k, READ_BUF)).collect();
        while !left.is_empty() {
            let mut next = Vec::with_capacity(left.len());
            for (i, k, budget) in left {
                let lane = running[i].job.replica;
                let want = budget.min(READ_TURN);
                let more =
                    read_once(&mut running[i].streams[k], lane, k, self.hub.as_mut(), &mut self.buf[..want])?;
                if more && budget > want {
                    next.push((i, k, budget - want));
                }
            }
            left = next;
        }
        Ok(())
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

    /// Kill what is left of the replica's group, take its last buffered output, and reap it with rusage.
    fn finalize(
        &mut self,
        mut r: Running,
        leaked: bool,
        timed_out: bool,
        exited_at: Option<Instant>,
    ) -> Result<RunRecord> {
        // The child wrote its exec errno before exiting, so it is there to read now.
        check_exec(&mut r);
        let _ = killpg(r.pid, Signal::SIGKILL);
        let lane = r.job.replica;
        let mut summaries = [StreamSummary { len: 0, digest: [0; 16] }; 2];
        let mut captured: Vec<Captured> = Vec::new();
        for (k, s) in r.streams.iter_mut().enumerate() {
            // Whatever is already in the pipe was written by the replica's tree: keep it. One pipe's
            // worth, no more: a leaked writer in another session could otherwise keep tmr here forever.
            read_stream(s, lane, k, self.hub.as_mut(), &mut self.buf, PIPE_SIZE as usize)?;
            s.fd = None;
            end_stream(s, lane, k, self.hub.as_mut())?;
            match s.cap.take() {
                Some(cap) => captured.push(cap.finish()),
                None => {
                    let hub = self.hub.as_ref().context("a streamed replica without its hub")?;
                    summaries[k] = hub.summary(lane, k).context("a finished stream without its digest")?;
                    captured.push(Captured::summarised(summaries[k]));
                }
            }
        }
        let (status, usage) = wait4(r.pid)?;
        if let Some(helper) = r.helper {
            // The replica's tracer published its snapshot before the replica could exit.
            let _ = nix::sys::signal::kill(helper, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(helper, None);
        }
        let wall = exited_at.unwrap_or_else(Instant::now).saturating_duration_since(r.started);
        let mem = r.mem_file.take().and_then(read_snapshot);
        // A replica its tracer ended as hung (`--checkpoint`) was stopped by tmr, as a timeout would.
        let ended_hung = mem.as_ref().and_then(|m| m.checkpoints.as_ref()).is_some_and(|c| c.ended_hung);
        let outcome = if let Some(errno) = r.exec_errno {
            Outcome::FailedToStart { errno }
        } else if timed_out || ended_hung {
            Outcome::TimedOut
        } else if libc::WIFSIGNALED(status) {
            Outcome::Signaled { signal: libc::WTERMSIG(status) }
        } else {
            Outcome::Exited { code: libc::WEXITSTATUS(status) }
        };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        let mut captured = captured.into_iter();
        Ok(RunRecord {
            job: r.job,
            pid: r.pid.as_raw(),
            outcome,
            stdout: captured.next().expect("two streams"),
            stderr: captured.next().expect("two streams"),
            wall,
            user: tv(usage.ru_utime),
            sys: tv(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss.max(0) as u64,
            leaked,
            mem,
            mem_key: None,
            divergence: [None, None],
            node: r.node,
            rescheduled_from: r.rescheduled_from,
            stopped: r.stopped,
            stdin_end: r.stdin_pos.as_ref().and_then(|fd| {
                nix::unistd::lseek(fd.as_raw_fd(), 0, nix::unistd::Whence::SeekCur).ok().map(|p| p as u64)
            }),
        })
    }

    /// Set (or replace) one variable of every replica started from now on.
    pub fn set_env(&mut self, key: &str, value: &str) -> Result<()> {
        self.launcher.set_env(key, value)
    }

    /// Run another command (already resolved to `path`) in replicas started from now on, with the same
    /// environment: `tmr test` reruns one test at a time through the runner's own filter.
    pub fn set_command(&mut self, path: OsString, command: &[OsString]) -> Result<()> {
        let fresh = Launcher::new(path, command)?;
        self.launcher.path = fresh.path;
        self.launcher.argv = fresh.argv;
        self.launcher.script = fresh.script;
        Ok(())
    }

    /// A line to show the user before the run when tmr's stdin is a terminal, which replicas never share.
    pub fn stdin_note(&self) -> Option<&'static str> {
        matches!(self.stdin, super::stdin::StdinSource::Terminal).then_some(
            "tmr: stdin is a terminal, which replicas cannot share: they read /dev/null (pipe input in)",
        )
    }

    /// Take a stop signal that arrived while no batch was running (between rounds, while reporting).
    pub fn check_stop(&mut self) {
        if let Some(sig) = self.signals.take_stop() {
            self.interrupted.get_or_insert(sig);
        }
    }

    /// After the vote on a streamed batch: deliver what is left for the winner (with `--buffered`, its
    /// whole output; nothing without a winner), wait (watching for stop signals) until tmr's output has
    /// taken it, and stop streaming: later batches (reruns) are only hashed.
    /// `shown_lost`: the replica whose uncompared streams were shown ended outside the majority.
    pub fn finish_streaming(
        &mut self,
        winner: Option<usize>,
        shown_lost: bool,
    ) -> Result<super::hub::OutputReport> {
        let Some(hub) = self.hub.as_mut() else { return Ok(super::hub::OutputReport::spooled()) };
        let spools = if self.interrupted.is_none() { hub.conclude(winner, shown_lost)? } else { Vec::new() };
        self.drain_hub()?;
        let hub = self.hub.take().expect("checked above");
        // A stream shown live that the majority's replaced (not a --buffered one, never shown).
        let switched =
            |k: usize| Some(hub.delivered(k)).filter(|d| d.shown.is_some()).and_then(|d| d.switched);
        for (file, fd) in &spools {
            let stream = if *fd == libc::STDOUT_FILENO { 0 } else { 1 };
            if let (Some(w), None) = (switched(stream), self.interrupted) {
                let name = ["stdout", "stderr"][stream];
                crate::text::say(&format!(
                    "tmr: replica {shown}'s {name} (not compared) was shown live, but the majority's replica {w} \
                     wrote another: replica {w}'s {name} follows",
                    shown = super::hub::SHOWN
                ));
            }
            if self.interrupted.is_none() {
                self.deliver(file, *fd)?;
            }
        }
        let buffered = hub.is_buffered();
        let entry = |k: usize| {
            let d = hub.delivered(k);
            super::hub::DeliveredEntry {
                bytes: d.bytes,
                shown_replica: d.shown,
                switched_to: d.switched,
                not_kept: d.not_kept,
            }
        };
        Ok(super::hub::OutputReport { streamed: true, buffered, stdout: entry(0), stderr: entry(1) })
    }

    /// Where each record's streamed output left what a majority committed, known only once the whole
    /// batch has run (a replica may finish before the bytes it differs from are committed).
    pub fn note_divergences(&self, records: &mut [RunRecord]) {
        if let Some(hub) = &self.hub {
            for r in records.iter_mut().filter(|r| r.rescheduled_from.is_none()) {
                let lane = r.job.replica;
                r.divergence = [hub.divergence(lane, 0).cloned(), hub.divergence(lane, 1).cloned()];
            }
        }
    }

    /// A regular file on stdin is reopened for each replica, so reading it never moved the caller's
    /// offset: leave it where the winner's reading ended, as `{ head -n1; cat; } < FILE` expects.
    pub fn leave_stdin_at(&self, winner: &RunRecord) {
        if let (super::stdin::StdinSource::File { .. }, Some(end)) = (&self.stdin, winner.stdin_end) {
            let _ = nix::unistd::lseek(libc::STDIN_FILENO, end as i64, nix::unistd::Whence::SeekSet);
        }
    }

    /// After the vote: a record that never left the committed prefix but still differs from the winner
    /// (it wrote more past the end, or less) gets a divergence where the two part, so the summary can
    /// show the line.
    pub fn note_tail_divergences(&self, records: &mut [RunRecord], winner: usize) {
        let Some(hub) = &self.hub else { return };
        let w = records[winner].job.replica;
        for r in records.iter_mut().filter(|r| r.rescheduled_from.is_none() && r.job.replica != w) {
            for k in 0..2 {
                if r.divergence[k].is_none() {
                    r.divergence[k] = hub.tail_divergence(r.job.replica, k, w);
                }
            }
        }
    }

    /// Finish delivering the streamed batch: what the hub still holds for tmr's output goes out, while
    /// stop signals are watched (a reader that stops reading must not make tmr deaf to them).
    pub fn drain_hub(&mut self) -> Result<()> {
        loop {
            self.check_stop();
            let Some(hub) = self.hub.as_mut() else { return Ok(()) };
            if hub.reader_gone() {
                // The reader left before taking everything: as in a pipeline, that is SIGPIPE.
                self.interrupted.get_or_insert(libc::SIGPIPE);
                return Ok(());
            }
            let waiting: Vec<(usize, std::os::fd::RawFd)> = hub.waiting().collect();
            if waiting.is_empty() || self.interrupted.is_some() {
                return Ok(());
            }
            let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
            for &(_, fd) in &waiting {
                // SAFETY: `fd` is tmr's own stdout or stderr, open for the whole run.
                fds.push(PollFd::new(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, PollFlags::POLLOUT));
            }
            match nix::poll::poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            self.signals.drain();
            let hub = self.hub.as_mut().expect("checked above");
            for (stream, _) in waiting {
                hub.flush(stream)?;
            }
        }
    }

    /// Copy `spool` from its start to `fd` (tmr's stdout or stderr), watching for stop signals the whole
    /// time: a reader that stops reading must not make tmr deaf to SIGINT/SIGTERM. A reader that goes
    /// away (EPIPE) ends the copy quietly. Returns the spool offset delivered up to.
    pub fn deliver(&mut self, spool: &std::fs::File, fd: std::os::fd::RawFd) -> Result<u64> {
        self.deliver_from(spool, fd, 0)
    }

    /// [`Harness::deliver`] from offset `at` of the spool.
    pub fn deliver_from(
        &mut self,
        spool: &std::fs::File,
        fd: std::os::fd::RawFd,
        mut at: u64,
    ) -> Result<u64> {
        let mut out = super::deliver::Output::new(fd);
        loop {
            self.check_stop();
            if self.interrupted.is_some() {
                return Ok(at);
            }
            match out.send(spool, &mut at, self.signals.fd())? {
                super::deliver::Sent::More => {}
                super::deliver::Sent::Done => return Ok(at),
                super::deliver::Sent::ReaderGone => {
                    self.interrupted.get_or_insert(libc::SIGPIPE);
                    return Ok(at);
                }
            }
            self.signals.drain();
        }
    }

    /// Whether replicas started from now on get the same stdin as the first ones (see `stdin::Spool`).
    pub fn stdin_replayable(&self) -> bool {
        self.stdin.replayable()
    }
}

/// Whether the file starts with `#!` (read per remote launch: a step costs ~0.1 s anyway).
fn has_shebang(path: &std::ffi::CStr) -> bool {
    use std::io::Read;
    let mut head = [0u8; 2];
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == *b"#!"
}

/// The offset of the slowest running replica still reading stdin (the spool's length when none is).
fn slowest_feed(running: &[Running]) -> u64 {
    running.iter().filter_map(|r| r.feed.as_ref().map(|(_, o)| *o)).min().unwrap_or(u64::MAX)
}

fn output_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("creating an output pipe")?;
    // A bigger pipe means fewer wake-ups: measured 1.13 -> 3.44 GB/s here. Refusal (pipe-max-size) is fine.
    let _ = nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    set_nonblocking(&r)?;
    Ok((r, w))
}

/// Read what the pipe holds, up to `budget` bytes, in reads of `buf`'s size (a pipe's worth when the
/// replica has ended; see [`Harness::read_ready`] while it runs). The bytes go to the hub (streamed) or to
/// the stream's capture.
fn read_stream(
    s: &mut Stream,
    lane: usize,
    stream: usize,
    mut hub: Option<&mut StreamHub>,
    buf: &mut [u8],
    mut budget: usize,
) -> Result<()> {
    while budget > 0 {
        let want = budget.min(buf.len());
        if !read_once(s, lane, stream, hub.as_deref_mut(), &mut buf[..want])? {
            break;
        }
        budget -= want;
    }
    Ok(())
}

/// One read of up to `buf.len()` bytes from the stream's pipe. Returns whether it filled `buf`, so the
/// pipe may hold more; at EOF or on an error the stream is closed and its end reported to the hub.
fn read_once(
    s: &mut Stream,
    lane: usize,
    stream: usize,
    mut hub: Option<&mut StreamHub>,
    buf: &mut [u8],
) -> Result<bool> {
    loop {
        let Some(fd) = s.fd.as_ref() else { return Ok(false) };
        let got = match (s.cap.as_mut(), hub.as_deref_mut()) {
            (None, Some(h)) => h.read(lane, stream, fd.as_raw_fd(), buf)?,
            (cap, _) => {
                let got = nix::unistd::read(fd.as_raw_fd(), buf);
                if let (Ok(n @ 1..), Some(cap)) = (got, cap) {
                    cap.push(&buf[..n])?;
                }
                got
            }
        };
        return match got {
            Ok(n @ 1..) => Ok(n == buf.len()),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => Ok(false),
            Ok(0) | Err(_) => {
                s.fd = None;
                end_stream(s, lane, stream, hub)?;
                Ok(false)
            }
        };
    }
}

/// Tell the hub once that a streamed stream ended.
fn end_stream(s: &mut Stream, lane: usize, stream: usize, hub: Option<&mut StreamHub>) -> Result<()> {
    if s.cap.is_none() && !s.ended {
        s.ended = true;
        if let Some(h) = hub {
            h.finish(lane, stream)?;
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

/// The monitor's snapshot (`trace::snapfile`); a monitor that died mid-write leaves a damaged file, which
/// makes this replica's memory unavailable, saying why, rather than an error of tmr's.
fn read_snapshot(f: std::fs::File) -> Option<MemSnapshot> {
    snapfile::read(&f).unwrap_or_else(|e| Some(snapfile::unreadable(&e)))
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

#[cfg(target_arch = "x86_64")]
fn cstring(n: impl std::fmt::Display) -> CString {
    CString::new(n.to_string()).expect("no NUL in a number")
}

#[cfg(target_arch = "x86_64")]
fn open_null() -> Result<OwnedFd> {
    // std opens with O_CLOEXEC.
    let f =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("opening /dev/null")?;
    Ok(OwnedFd::from(f))
}

/// `--fork --mem`: the copies the original's tracer made, as `PID GETRANDOM_CALLS` lines, read until the
/// tracer closes the pipe (none: it could not fork, or the command ended first). Bounded by
/// `forkrun::DEADLINE`.
#[cfg(target_arch = "x86_64")]
fn read_fork_report(r: &OwnedFd, wake: std::os::fd::BorrowedFd, drain: &dyn Fn()) -> Result<Vec<(Pid, u64)>> {
    let deadline = Instant::now() + crate::trace::forkrun::DEADLINE;
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match nix::unistd::read(r.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {}
            Err(e) => return Err(e).context("reading the --fork report"),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!("--fork: the command's tracer did not report its copies in time");
        }
        let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN), PollFd::new(wake, PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(left.as_millis().min(1000) as u16)) {
            Ok(_) | Err(Errno::EINTR) => drain(),
            Err(e) => return Err(e).context("poll"),
        }
    }
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| {
            let (pid, calls) = l.split_once(' ')?;
            Some((Pid::from_raw(pid.parse().ok()?), calls.parse().ok()?))
        })
        .collect())
}
