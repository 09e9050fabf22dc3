//! Checkpoints by injected fork (`--checkpoint`), inside the per-replica tracer of `monitor.rs`.
//!
//! - **Taking one.** A timer marks a checkpoint due and interrupts the replica; from then on the tracer
//!   resumes it with PTRACE_SYSCALL, and at the next syscall-entry stop rewrites the call into
//!   `clone(flags = 0)` (rr's remote syscall). Flags 0 means a fork whose child sends no SIGCHLD, so the
//!   command's own wait(2) never sees it. At the syscall-exit stop both processes get the original
//!   registers back with `rip` rewound by 2 and `rax` = the original call, so the original call runs again
//!   when each resumes. The child gets PR_SET_PDEATHSIG(SIGKILL) by a second remote syscall (a fork clears
//!   it) and stays stopped: it is the checkpoint, costing only the pages the replica writes afterwards.
//! - **Aligned epochs and their vote** (parallel replicas: `epochvote.rs`). The running process is resumed
//!   with PTRACE_SYSCALL throughout and its syscall entries are counted (a call rewound after a fork is
//!   not counted twice). When the timer fires, or a sibling already arrived, the tracer arrives at the
//!   next epoch with its count; the replicas behind run on to the largest count, and at that entry stop
//!   each hashes the pages written since its previous checkpoint and votes. In the majority: the fork is
//!   taken, output is committed, and it replaces the kept checkpoint (the last *voted-good* one is the
//!   only one kept). In the minority: rolled back to the kept one ("epoch-divergence"), or with
//!   `--recover scrub` repaired in place from the majority's pages (`scrub.rs`; `auto`, the default:
//!   rolled back where an exact rollback is allowed, else repaired), falling back to the
//!   rollback where a repair cannot work. No majority:
//!   noise pages are sorted out page by page (`EpochSync::reconcile`). Too few replicas left to vote (the
//!   others finished): no checkpoint, no more epochs. sysinfo(2) answers are made steady, since
//!   programs keep free-memory figures. The timer then never interrupts the replica (an interrupted
//!   blocking call restarts and would count twice), and no checkpoint is taken outside a system call.
//! - **Pages written per epoch.** Just before each fork, the pages of the replica's writable mappings that
//!   are present and *exclusively mapped* (bit 56 of /proc/PID/pagemap) are those it wrote (or first
//!   touched) since the previous fork: the copy-on-write broke their sharing with the checkpoint. Aligned
//!   epochs hash exactly those; unaligned ones (one replica at a time) count them and keep the two
//!   newest checkpoints.
//! - **Rollback.** When the running process is about to die of an uncaught crash signal and
//!   `crate::epoch::Lineage` allows it, the failed process is kept stopped (it is tmr's child: its pid,
//!   exit status and process group are what tmr waits on), and the checkpoint is resumed in its place.
//!   When the resumed process ends, the original one is made to end the same way (a remote
//!   `exit_group(code)`, or the same signal), so tmr sees one replica with one outcome.
//!
//! - **Hangs.** Each tracer writes its replica's wall into a directory tmr made for the run when the
//!   replica exits. A replica still running at `crate::epoch::HANG_FACTOR` × the median wall of a
//!   majority of finished siblings is interrupted and rolled back the same way ("hang").
//!
//! A resumed process keeps the original's thread id in its thread control block (a raw clone does not
//! do glibc's fork bookkeeping): glibc ≥ 2.34 asks the kernel (gettid) where it matters (raise), and the
//! memory vote blanks the original pid, which is also what the copies made before the checkpoint hold.
//!
//! Limits: single-threaded replicas without child processes only (checkpointing stops, with a note,
//! at the first thread or child); CPU-bound code that makes no system call is checkpointed at its next
//! one (with aligned epochs, always); group-stops resumed by PTRACE_LISTEN are not counted exactly; killed checkpoints stay zombies of the replica until it exits; `getppid()` in a resumed process is
//! the failed one's pid.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::epochvote::{regs_term, Arrival, EpochSync, PageDigests, PageMasks, DONATED, MAX_EPOCHS, REFUSED};
use super::hold::Hold;
use super::memsnap::writable_mappings;
use super::scrub;
use crate::epoch::{
    CheckpointLog, Decision, Epoch, EpochVerdict, EpochVote, Lineage, Recover, Repair, Rollback, Schedule,
    MAX_REPAIRS, MAX_SCRUB_PAGES,
};

/// A file tmr puts in the checkpoint directory when replicas run one at a time: no epoch vote.
pub const SOLO: &str = super::CHECKPOINT_SOLO;
use crate::memvote::PAGE;

/// Set by the timer's signal: a checkpoint is due.
static DUE: AtomicBool = AtomicBool::new(false);
/// The running process, for the timer handler to interrupt (0 before the first arming).
static RUNNING: AtomicI32 = AtomicI32::new(0);
/// A checkpoint is already wanted: the running process stops at its next system call anyway, and an
/// interrupt now would only make the injected clone fail (a pending stop makes fork restart).
static WANTED: AtomicBool = AtomicBool::new(false);
/// Epochs are aligned by syscall counts: the timer must not interrupt the replica (an interrupted
/// blocking call restarts, and counts one more entry in this replica only).
static ALIGNED: AtomicBool = AtomicBool::new(false);

/// The timer's handler interrupted the running process since the last [`Checkpointer::poll`].
static SENT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_timer(_: libc::c_int) {
    DUE.store(true, Ordering::SeqCst);
    let pid = RUNNING.load(Ordering::SeqCst);
    if pid > 0 && !WANTED.load(Ordering::SeqCst) && !ALIGNED.load(Ordering::SeqCst) {
        // SAFETY: ptrace(2) is a plain system call, async-signal-safe; no pointers.
        if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0) } == 0 {
            SENT.store(true, Ordering::SeqCst);
        }
    }
}

/// A stopped fork of the replica, and the replica's I/O counters when it was taken.
struct Kept {
    pid: Pid,
    epoch: u32,
    /// rchar and wchar of the replica when it was taken.
    io: (u64, u64),
    /// When it was taken (since the tracer attached).
    at: Duration,
    /// The process it is a fork of, and a `syscall` instruction in it (where it was taken).
    from: Pid,
    gadget: u64,
    /// The syscall count at which it was taken (aligned epochs).
    count: u64,
}

/// The checkpoint the running process was resumed from, for judging a rollback past it.
struct Resumed {
    epoch: u32,
    from: Pid,
    /// rchar/wchar of `from` at that checkpoint, and of the resumed process when it was resumed.
    io_at_checkpoint: (u64, u64),
    io_at_resume: (u64, u64),
}

fn io_diff(now: (u64, u64), then: (u64, u64)) -> u64 {
    if now.0 == u64::MAX || then.0 == u64::MAX {
        return u64::MAX;
    }
    now.0.saturating_sub(then.0).saturating_add(now.1.saturating_sub(then.1))
}

/// Where the replicas' tracers of one run tell each other that their replica finished (a directory tmr
/// made for the run): `done.<round>.<replica>` holds its wall in ms. Hang detection reads it.
struct Peers {
    dir: std::path::PathBuf,
    replica: usize,
    replicas: usize,
    round: usize,
}

pub struct Checkpointer {
    schedule: Schedule,
    lineage: Lineage,
    pub log: CheckpointLog,
    /// Oldest first; mirrors `lineage.kept`.
    kept: Vec<Kept>,
    resumed: Option<Resumed>,
    /// A checkpoint is due: resume the running process with PTRACE_SYSCALL until the next entry stop.
    want: bool,
    /// Why checkpoints are no longer taken.
    off: bool,
    /// Remote forks interrupted in a row.
    retries: u32,
    /// A `syscall` instruction in the vDSO (the same in every process of the replica's lineage).
    vdso_gadget: Option<u64>,
    /// The original replica (tmr's child), held stopped once a checkpoint runs in its place, and a
    /// `syscall` instruction in it (to make it exit).
    proxy: Option<(Pid, u64)>,
    /// Resumed processes that failed in turn: held stopped (their checkpoints are their children, and
    /// would die with them), killed at the end.
    held: Vec<Pid>,
    timer: Option<libc::timer_t>,
    /// The replica's stdout/stderr, held back until the next checkpoint.
    hold: Option<Hold>,
    started: Instant,
    peers: Option<Peers>,
    /// The running process was found hung: roll back at its next stop.
    hang_pending: bool,
    /// The running process was found hung, could not be rolled back, and was killed.
    pub ended_hung: bool,
    /// Time lost to rollbacks (failure time minus checkpoint time, summed): not counted against the
    /// resumed process when judging a hang.
    lost: Duration,
    /// A wait status for the running process seen while taking a checkpoint, for the trace loop.
    pub pending: Option<WaitStatus>,
    /// Aligned epochs and their vote (parallel replicas): see `epochvote.rs`.
    sync: Option<EpochSync>,
    pages: PageDigests,
    /// Syscall entries of the running process since exec (counted once checkpoints started).
    count: u64,
    counting: bool,
    /// The next entry stop re-executes a call rewound after a checkpoint: not counted again.
    rerun_entry: bool,
    /// The last epoch this replica arrived at (or skipped).
    epoch: u32,
    /// An epoch's boundary (epoch, syscall count) this replica is running on to.
    target: Option<(u32, u64)>,
    /// The replica itself, whose pid the memory holds (masked in digests).
    original: Pid,
    /// How an outvoted replica is brought back, and how often it was repaired in place.
    recover: Recover,
    repairs: u32,
}

impl Checkpointer {
    pub fn new(interval: Duration, started: Instant) -> Self {
        Checkpointer {
            schedule: Schedule::new(interval),
            lineage: Lineage::default(),
            log: CheckpointLog { interval_ms: interval.as_secs_f64() * 1e3, ..Default::default() },
            kept: Vec::new(),
            resumed: None,
            want: false,
            off: false,
            retries: 0,
            vdso_gadget: None,
            proxy: None,
            held: Vec::new(),
            timer: None,
            hold: None,
            started,
            peers: None,
            hang_pending: false,
            ended_hung: false,
            lost: Duration::ZERO,
            pending: None,
            sync: None,
            pages: PageDigests::default(),
            count: 0,
            counting: false,
            rerun_entry: false,
            epoch: 0,
            target: None,
            original: Pid::from_raw(0),
            recover: Recover::DEFAULT,
            repairs: 0,
        }
    }

    /// Judge hangs against the sibling replicas that report in `dir` (their numbers from TMR_REPLICA,
    /// TMR_REPLICAS and TMR_ROUND, which tmr sets for every replica). `vote` (from
    /// [`crate::epoch::ENV`]) turns epoch votes on with that recovery even in a directory marked solo.
    pub fn with_peers(mut self, dir: std::path::PathBuf, vote: Option<Recover>) -> Self {
        if let Some(r) = vote {
            self.recover = r;
        }
        let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
        if let (Some(replica), Some(replicas), Some(round)) =
            (var("TMR_REPLICA"), var("TMR_REPLICAS"), var("TMR_ROUND"))
        {
            // Parallel replicas meet at aligned epochs and vote; not when tmr runs them one at a time.
            if vote.is_some() || !dir.join(SOLO).exists() {
                let path = dir.join(format!("epochs.{round}"));
                match EpochSync::open(&path, replica, replicas, self.schedule.interval()) {
                    Ok(sync) => self.sync = sync,
                    Err(e) => self.log.stopped = Some(format!("no epoch vote: {e:#}")),
                }
            }
            // Epoch votes asked for by the environment, and no sibling to vote with (a campaign's golden
            // run): no checkpoints at all, as aligned epochs with too few replicas left, so that its wall
            // is that of the trials' replicas, not of unaligned checkpoints.
            if vote.is_some() && self.sync.is_none() && self.log.stopped.is_none() {
                self.off = true;
                self.log.stopped = Some("epoch votes with no sibling replica: no checkpoints".into());
            }
            self.peers = Some(Peers { dir, replica, replicas, round });
        }
        self
    }

    fn aligned(&self) -> bool {
        self.sync.is_some() && !self.off
    }

    /// Hold the replica's output back until each checkpoint (see `hold.rs`).
    pub fn with_hold(mut self, hold: Hold) -> Self {
        if self.off {
            hold.passthrough();
        }
        self.hold = Some(hold);
        self
    }

    /// Tell the siblings this replica finished (at its exit stop, with wait status `status`). A replica
    /// killed by a signal (a crash left to stand) did not finish its work: its short wall must not make a
    /// healthy sibling look hung.
    pub fn done(&self, status: Option<i32>) {
        if status.is_some_and(|s| libc::WIFSIGNALED(s)) {
            return;
        }
        if let Some(p) = &self.peers {
            let wall = self.now().saturating_sub(self.lost).as_secs_f64() * 1e3;
            let _ = std::fs::write(p.dir.join(format!("done.{}.{}", p.round, p.replica)), format!("{wall}"));
        }
    }

    /// Is the running process hung (or, `overdue_only`, just overdue), judged against the siblings
    /// that finished?
    fn judge(&self, overdue_only: bool) -> bool {
        let Some(p) = &self.peers else { return false };
        let walls: Vec<Duration> = (0..p.replicas)
            .filter(|&j| j != p.replica)
            .filter_map(|j| std::fs::read_to_string(p.dir.join(format!("done.{}.{j}", p.round))).ok())
            .filter_map(|t| t.trim().parse::<f64>().ok())
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1e3))
            .collect();
        let elapsed = self.now().saturating_sub(self.lost);
        if overdue_only {
            return crate::epoch::overdue(elapsed, &walls, p.replicas);
        }
        crate::epoch::hung(elapsed, &walls, p.replicas, crate::epoch::hang_floor(self.schedule.interval()))
    }

    fn set_want(&mut self, want: bool) {
        self.want = want;
        WANTED.store(want, Ordering::SeqCst);
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Install the timer for the first checkpoint, one interval after the command's exec (`running` is
    /// the replica). Once.
    pub fn start(&mut self, running: Pid) {
        if self.timer.is_some() || self.off {
            return;
        }
        self.schedule.taken(self.now());
        RUNNING.store(running.as_raw(), Ordering::SeqCst);
        self.original = running;
        self.counting = self.sync.is_some();
        ALIGNED.store(self.counting, Ordering::SeqCst);
        if let Err(e) = self.install_timer() {
            self.stop(format!("no checkpoint timer: {e:#}"));
            return;
        }
        self.arm();
    }

    fn install_timer(&mut self) -> Result<()> {
        let signo = timer_signal();
        // nix's Signal has no real-time signals: install with libc directly. No SA_RESTART, so a
        // waitpid in the trace loop returns EINTR at the tick.
        // SAFETY: a zeroed sigaction with a handler that only stores to atomics and calls ptrace(2),
        // both async-signal-safe.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_timer as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigaction(signo, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!("sigaction: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a zeroed sigevent is valid; the fields set below are the ones SIGEV_SIGNAL reads.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = signo;
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to locals; the timer id is written by the kernel.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) } != 0 {
            bail!("timer_create: {}", std::io::Error::last_os_error());
        }
        self.timer = Some(timer);
        Ok(())
    }

    fn arm(&mut self) {
        let Some(timer) = self.timer else { return };
        // Periodic: ticks also come while no checkpoint can be taken (no system call), to judge hangs.
        let wait = self.schedule.wait(self.now()).max(Duration::from_micros(1));
        let every = self.schedule.interval();
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: every.as_secs() as i64,
                tv_nsec: every.subsec_nanos() as i64,
            },
            it_value: libc::timespec { tv_sec: wait.as_secs() as i64, tv_nsec: wait.subsec_nanos() as i64 },
        };
        // SAFETY: `timer` was created by timer_create; the spec is a valid local.
        unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) };
    }

    /// Called at the top of the trace loop: turn a timer tick into a wish to checkpoint.
    pub fn poll(&mut self) {
        if !DUE.swap(false, Ordering::SeqCst) {
            return;
        }
        let full = super::hold::FULL.swap(false, Ordering::SeqCst);
        let sent = SENT.swap(false, Ordering::SeqCst);
        let due = self.schedule.due(self.now());
        if crate::epoch::checkpoint_wanted(self.off, full, due, || self.judge(true)) {
            if crate::epoch::must_interrupt(self.want, sent, self.aligned()) {
                let _ = ptrace::interrupt(Pid::from_raw(RUNNING.load(Ordering::SeqCst)));
            }
            self.set_want(true);
        }
        if !self.hang_pending && self.judge(false) {
            self.hang_pending = true;
            // It may be spinning without a system call: make it stop.
            let _ = ptrace::interrupt(Pid::from_raw(RUNNING.load(Ordering::SeqCst)));
        }
    }

    /// Any stop of the running process `r`: if it was found hung, roll it back now. Returns the
    /// resumed checkpoint's pid (the caller must not resume `r`).
    pub fn at_stop(&mut self, r: Pid, original: Pid) -> Option<Pid> {
        if !self.hang_pending {
            return None;
        }
        self.hang_pending = false;
        let had_checkpoint = !(self.kept.is_empty() && self.lineage.resumed_from.is_none());
        let resumed = self.roll(r, original, "hang".into());
        if resumed.is_none() {
            // No rollback: end it, as a relative timeout would. A majority of its siblings finished long
            // ago; waiting for a hang would only keep tmr from delivering their answer.
            self.peers = None;
            self.ended_hung = true;
            self.log.ended_hung = true;
            let ended = "ended with SIGKILL: hung, and no rollback was possible";
            match self.log.rollbacks.last_mut().filter(|_| had_checkpoint) {
                Some(last) => last.note = format!("{}; {ended}", last.note),
                None => self.log.rollbacks.push(Rollback {
                    at_ms: self.now().as_secs_f64() * 1e3,
                    cause: "hang".into(),
                    resumed_epoch: None,
                    note: format!("no checkpoint to roll back to; {ended}"),
                }),
            }
            let _ = nix::sys::signal::kill(r, Signal::SIGKILL);
        }
        resumed
    }

    /// Resume `tid` (the running process gets PTRACE_SYSCALL while a checkpoint is wanted).
    pub fn resume(&self, tid: Pid, running: Pid, sig: Option<Signal>) {
        if (self.want || (self.counting && self.aligned())) && tid == running {
            let _ = ptrace::syscall(tid, sig);
        } else {
            let _ = ptrace::cont(tid, sig);
        }
    }

    /// Stop taking checkpoints, with the reason in the log; the kept one is released.
    pub fn stop(&mut self, why: String) {
        if self.off {
            return;
        }
        self.off = true;
        self.set_want(false);
        ALIGNED.store(false, Ordering::SeqCst);
        if let Some(sync) = &self.sync {
            sync.leave();
        }
        self.log.stopped = Some(why);
        if let Some(h) = &self.hold {
            h.passthrough();
        }
        for k in self.kept.drain(..) {
            kill_stopped(k.pid);
        }
        self.lineage.kept.clear();
    }

    /// A syscall stop of the running process: take the checkpoint at an entry stop if one is wanted.
    /// Returns the resumed checkpoint's pid when an epoch vote rolled the running process back (the
    /// caller must not resume `running` then).
    ///
    /// `may_take` is false at the stop where a fault was just injected: a checkpoint taken there would
    /// keep the fault, and a rollback to it would fail again (aligned epochs still count the stop; their
    /// vote judges the checkpoint before it is kept as good).
    pub fn at_syscall_stop(&mut self, running: Pid, may_take: bool) -> Option<Pid> {
        if self.aligned() && self.counting {
            return self.aligned_stop(running);
        }
        if may_take {
            self.unaligned_stop(running);
        }
        None
    }

    fn unaligned_stop(&mut self, running: Pid) {
        if !self.want || self.off || syscall_op(running) != Some(PTRACE_SYSCALL_INFO_ENTRY) {
            return;
        }
        let Ok(regs) = ptrace::getregs(running) else { return };
        if skip(regs.orig_rax as i64) {
            return;
        }
        self.take(running, regs, None);
    }

    /// Aligned epochs: count syscall entries; arrive at the next epoch when the timer fired or a
    /// sibling already arrived; checkpoint and vote at the boundary.
    fn aligned_stop(&mut self, running: Pid) -> Option<Pid> {
        match syscall_op(running) {
            Some(PTRACE_SYSCALL_INFO_ENTRY) => {}
            Some(PTRACE_SYSCALL_INFO_EXIT) => {
                steady_sysinfo(running);
                return None;
            }
            _ => return None,
        }
        if std::mem::take(&mut self.rerun_entry) {
            return None;
        }
        self.count += 1;
        loop {
            if let Some((k, b)) = self.target {
                if self.count < b {
                    return None;
                }
                self.target = None;
                self.epoch = k;
                if self.count == b {
                    return self.take_aligned(running, k, b);
                }
                continue;
            }
            let sync = self.sync.as_ref()?;
            let next = self.epoch + 1;
            if !(self.want || sync.max_arrived() >= next) {
                return None;
            }
            let regs = ptrace::getregs(running).ok()?;
            if skip(regs.orig_rax as i64) {
                return None; // the next entry stop will do
            }
            if next >= MAX_EPOCHS {
                self.stop(format!("more than {MAX_EPOCHS} epochs"));
                return None;
            }
            if !sync.quorum() {
                // Too few replicas left to vote: no more epochs.
                self.epoch = next;
                self.done_wanting();
                return None;
            }
            if self.judge(true) {
                // Overdue (maybe hung): no checkpoint may land in a hang, and the finished siblings
                // are gone from the meeting place anyway.
                self.epoch = next;
                self.done_wanting();
                return None;
            }
            match sync.arrive(next, self.count) {
                Arrival::Boundary(b) => self.target = Some((next, b)),
                Arrival::Skipped => {
                    self.epoch = next;
                    self.done_wanting();
                }
            }
        }
    }

    fn done_wanting(&mut self) {
        self.set_want(false);
        self.schedule.taken(self.now());
        self.arm();
    }

    /// At the boundary of epoch `k` (syscall count `b`): hash the pages written since the previous
    /// checkpoint, vote, and then checkpoint (in the majority, or too few left to vote), roll back (in
    /// the minority) or go on unchanged (no majority).
    fn take_aligned(&mut self, running: Pid, k: u32, b: u64) -> Option<Pid> {
        let out = self.vote_at(running, k, b);
        // The next epoch is due an interval after this one ended, not after it began: on a loaded
        // machine hashing and waiting can take longer than an interval.
        self.done_wanting();
        out
    }

    fn vote_at(&mut self, running: Pid, k: u32, b: u64) -> Option<Pid> {
        let t0 = Instant::now();
        let at_ms = self.now().as_secs_f64() * 1e3;
        let regs = ptrace::getregs(running).ok()?;
        let env = ["TMR_REPLICA", "TMR_REPLICAS", "TMR_ROUND", "TMR_PAD"]
            .iter()
            .filter_map(|key| std::env::var(key).ok().map(|v| format!("{key}={v}").into_bytes()))
            .collect();
        let masks =
            PageMasks { rsp: regs.rsp, pid: self.original.as_raw() as u32, fs_base: regs.fs_base, env };
        let hashed = match self.pages.update(running, &masks, false) {
            Ok(n) => n,
            Err(e) => {
                self.stop(format!("hashing the replica's pages failed: {e:#}"));
                return None;
            }
        };
        let digest = if skip(regs.orig_rax as i64) {
            // Not at the call the others checkpointed at: its control flow differs.
            [u64::MAX - u64::from(k); 4]
        } else {
            self.pages.digest(regs.orig_rax, regs.rip)
        };
        let hash_ms = t0.elapsed().as_secs_f64() * 1e3;
        let sync = self.sync.as_ref()?;
        let t1 = Instant::now();
        let (mut verdict, digests) = sync.vote_digests(k, digest);
        // Who is the donor of a repair in place, and who dissents: from the digests, or after noise
        // was sorted out, from the page terms.
        let mut standing = scrub::donor(&digests);
        // No strict majority at all: page by page, to tell noise (pages on which no majority agrees,
        // left out from now on by every replica alike) from a real difference. Every replica that saw
        // the same digests reaches this, so all take part.
        if verdict == EpochVerdict::NoMajority {
            let regs_term =
                if skip(regs.orig_rax as i64) { digest } else { regs_term(regs.orig_rax, regs.rip) };
            let (v, noise, s) = sync.reconcile(k, &self.pages, regs_term);
            if !noise.is_empty() {
                self.pages.exclude(&noise);
                self.log.noise_pages = self.pages.noise();
            }
            verdict = v;
            standing = s;
        }
        if self.recover != Recover::Rollback && verdict == EpochVerdict::Good {
            self.donate(running, k, &regs, &masks, standing.as_ref());
        }
        let wait_ms = t1.elapsed().as_secs_f64() * 1e3;
        self.log.votes.push(EpochVote {
            epoch: k,
            boundary: b,
            verdict,
            pages_hashed: hashed,
            hash_ms,
            wait_ms,
            short_reads: self.pages.short_reads,
        });
        if verdict != EpochVerdict::Minority {
            // Not outvoted here: a donor that saw it dissent need not wait for a want.
            if let Some(sync) = &self.sync {
                sync.decline(k);
            }
        }
        match verdict {
            // Unvoted (the others left, or did not come in time): the kept checkpoint stays. A replica
            // whose siblings finished may be hung, and a checkpoint must not land in its hang.
            EpochVerdict::Good if !skip(regs.orig_rax as i64) => {
                self.checkpoint_good(running, regs, k, at_ms, hashed, t0, t1.elapsed());
                None
            }
            EpochVerdict::Minority => {
                self.log.divergent_epochs.push(k);
                let scrub = match self.recover {
                    Recover::Scrub => true,
                    Recover::Rollback => false,
                    // An exact rollback re-executes everything (registers and noise pages too): take it
                    // where it is allowed; repair in place where it is refused.
                    Recover::Auto => !self.would_roll(running, "epoch-divergence"),
                };
                if !scrub {
                    if let Some(sync) = &self.sync {
                        sync.decline(k);
                    }
                } else {
                    let at_ms = self.now().as_secs_f64() * 1e3;
                    let repaired = match standing {
                        Some(_) => self.scrub(running, k, &regs, &masks),
                        None => Err("no majority on its registers' term".into()),
                    };
                    match repaired {
                        Ok((pages, fixed, changed)) => {
                            let mut at: Vec<String> =
                                pages.iter().take(8).map(|a| format!("{a:#x}")).collect();
                            if pages.len() > 8 {
                                at.push("…".into());
                            }
                            self.log.repairs.push(Repair {
                                epoch: k,
                                at_ms,
                                pages: Some(pages.len() as u64),
                                note: format!(
                                    "copied from the majority: {changed} register(s), pages at {}",
                                    at.join(", ")
                                ),
                            });
                            // Checkpointed with its repaired registers (the fork puts them back).
                            self.checkpoint_good(running, fixed, k, at_ms, hashed, t0, t1.elapsed());
                            return None;
                        }
                        Err(note) => self.log.repairs.push(Repair { epoch: k, at_ms, pages: None, note }),
                    }
                }
                let resumed = self.roll(running, self.original, "epoch-divergence".into());
                if resumed.is_none() {
                    self.stop(format!("its memory diverged at epoch {k} and it was not rolled back"));
                }
                resumed
            }
            _ => None,
        }
    }

    /// In the majority at epoch `k` with `--recover scrub` or `auto`: if this replica is the donor (the
    /// first of the majority), give each dissenter that asks the pages it wants (see `scrub.rs`).
    fn donate(
        &self,
        running: Pid,
        k: u32,
        regs: &libc::user_regs_struct,
        masks: &PageMasks,
        standing: Option<&super::epochvote::Standing>,
    ) {
        let Some(sync) = &self.sync else { return };
        let Some((first, dissenters)) = standing else { return };
        if *first != sync.me() {
            return;
        }
        let held = self.hold.as_ref().map_or(0, Hold::held);
        let digest = self.pages.digest(regs.orig_rax, regs.rip);
        let term = regs_term(regs.orig_rax, regs.rip);
        for &j in dissenters {
            let gift = sync
                .wait_want(k, j)
                .then(|| std::fs::read(sync.scrub_path(k, j, "want")).ok())
                .flatten()
                .and_then(|b| scrub::Want::decode(&b).ok())
                .and_then(|w| {
                    scrub::donation(running, self.pages.terms(), (term, digest), regs, held, &w, masks).ok()
                })
                .and_then(|d| scrub::publish(&sync.scrub_path(k, j, "gift"), &d.encode()).ok());
            sync.donated(k, j, if gift.is_some() { DONATED } else { REFUSED });
        }
    }

    /// Outvoted at epoch `k` with `--recover scrub` (or `auto` where a rollback is refused): ask the
    /// donor for the pages that differ, copy them and its registers in (see `scrub.rs`) and check that
    /// the digest is now the majority's. Returns the pages copied, the registers as repaired and how many
    /// changed, or why it could not be repaired (the caller then rolls back).
    fn scrub(
        &mut self,
        running: Pid,
        k: u32,
        regs: &libc::user_regs_struct,
        masks: &PageMasks,
    ) -> Result<(Vec<u64>, libc::user_regs_struct, usize), String> {
        let sync = self.sync.as_ref().ok_or("no epoch vote")?;
        // The want is published whatever happens next: the donor waits for it.
        let held = self.hold.as_ref().map_or(0, Hold::held);
        let my_regs = regs_term(regs.orig_rax, regs.rip);
        let mut terms = self.pages.terms().clone();
        terms.insert(scrub::REGS, my_regs);
        let published =
            scrub::publish(&sync.scrub_path(k, sync.me(), "want"), &scrub::Want { terms, held }.encode());
        sync.wanted(k);
        published.map_err(|e| format!("{e:#}"))?;
        match sync.wait_donation(k) {
            Some(DONATED) => {}
            Some(_) => {
                return Err(format!(
                    "the majority did not donate its pages (more than {MAX_SCRUB_PAGES} differ, or it could not read them)"
                ))
            }
            None => return Err("the majority's pages did not come in time".into()),
        }
        let bytes = std::fs::read(sync.scrub_path(k, sync.me(), "gift"))
            .map_err(|e| format!("reading the donation: {e}"))?;
        let donation = scrub::Donation::decode(&bytes).map_err(|e| format!("{e:#}"))?;
        if self.repairs >= MAX_REPAIRS {
            return Err(format!("already repaired in place {MAX_REPAIRS} times"));
        }
        if skip(regs.orig_rax as i64) || donation.regs != my_regs {
            return Err(
                "its registers differ from the majority's (instruction pointer or system call)".into()
            );
        }
        if held > 0 {
            // Its held output may be wrong already, and only its length could be compared here.
            return Err(format!("it wrote {held} bytes of output in the epoch, which a repair cannot check"));
        }
        let written = scrub::repair(running, &donation, masks)?;
        scrub::rehash(running, &written, masks, &mut self.pages).map_err(|e| format!("rehashing: {e:#}"))?;
        if self.pages.digest(regs.orig_rax, regs.rip) != donation.digest {
            return Err(format!(
                "its memory still differs from the majority's after copying {} pages",
                written.len()
            ));
        }
        let mut fixed = *regs;
        let changed = scrub::repair_registers(&mut fixed, running.as_raw() as u64, &donation);
        if changed > 0 {
            ptrace::setregs(running, fixed).map_err(|e| format!("setting its registers: {e}"))?;
        }
        self.repairs += 1;
        Ok((written, fixed, changed))
    }

    /// Fork the checkpoint of epoch `k`, voted good: it replaces the previous good one.
    #[allow(clippy::too_many_arguments)]
    fn checkpoint_good(
        &mut self,
        running: Pid,
        regs: libc::user_regs_struct,
        k: u32,
        at_ms: f64,
        hashed: u64,
        t0: Instant,
        waited: Duration,
    ) {
        let t2 = Instant::now();
        match self.fork_at(running, regs, None) {
            Ok(Some(child)) => {
                self.rerun_entry = true;
                for e in self.lineage.good(k) {
                    if let Some(pos) = self.kept.iter().position(|x| x.epoch == e) {
                        kill_stopped(self.kept.remove(pos).pid);
                    }
                }
                let (io, at) = (io_counts(running), self.now());
                self.kept.push(Kept {
                    pid: child,
                    epoch: k,
                    io,
                    at,
                    from: running,
                    gadget: regs.rip - 2,
                    count: self.count,
                });
                self.pages.good();
                if let Some(h) = &self.hold {
                    h.commit();
                }
                self.log.epochs.push(Epoch {
                    index: k,
                    at_ms,
                    dirty_pages: hashed,
                    cost_ms: t0.elapsed().saturating_sub(waited).as_secs_f64() * 1e3,
                    fork_ms: t2.elapsed().as_secs_f64() * 1e3,
                });
            }
            // Interrupted (the call was rewound all the same) or the process went away (`pending`):
            // no checkpoint at this epoch.
            Ok(None) => self.rerun_entry = self.pending.is_none(),
            Err(e) => self.stop(format!("a remote fork failed: {e:#}")),
        }
    }

    /// An interrupt stop of the running process (the timer's): if it is in user space, not inside a
    /// system call, take the checkpoint right here through a `syscall` instruction of its vDSO, so that
    /// code computing without system calls is checkpointed on time too.
    /// Never at the stop where a fault was just injected (`may_take` false: see [`Self::at_syscall_stop`]).
    pub fn at_interrupt(&mut self, running: Pid, may_take: bool) {
        if !may_take || !self.want || self.off || self.aligned() {
            return;
        }
        let Ok(regs) = ptrace::getregs(running) else { return };
        if regs.orig_rax as i64 != -1 {
            return; // inside a system call: the next entry stop will do
        }
        if let Some(g) = self.vdso_gadget.or_else(|| vdso_syscall(running)) {
            self.vdso_gadget = Some(g);
            self.take(running, regs, Some(g));
        }
    }

    fn take(&mut self, running: Pid, regs: libc::user_regs_struct, via: Option<u64>) {
        let t0 = Instant::now();
        let at_ms = self.now().as_secs_f64() * 1e3;
        let dirty = written_pages(running).unwrap_or(0);
        let scanned = t0.elapsed();
        if dirty == 0 && !self.kept.is_empty() && self.hold.as_ref().is_none_or(|h| h.held() == 0) {
            // Nothing written since the newest checkpoint: its memory is this one's. A process spinning
            // in a hang writes nothing, and must not fill the kept checkpoints with its hang. Output
            // held since then is not covered by it (a rollback would write it again): a real checkpoint
            // then, or the hold, full, would never be committed.
            self.set_want(false);
            self.schedule.taken(self.now());
            self.arm();
            return;
        }
        let gadget = via.unwrap_or(regs.rip - 2);
        match self.fork_at(running, regs, via) {
            Ok(Some(child)) => {
                let (epoch, released) = self.lineage.checkpoint();
                if let Some(pos) = released.and_then(|e| self.kept.iter().position(|k| k.epoch == e)) {
                    kill_stopped(self.kept.remove(pos).pid);
                }
                let io = io_counts(running);
                let at = self.now();
                self.kept.push(Kept { pid: child, epoch, io, at, from: running, gadget, count: self.count });
                if let Some(h) = &self.hold {
                    h.commit();
                }
                self.log.epochs.push(Epoch {
                    index: epoch,
                    at_ms,
                    dirty_pages: dirty,
                    cost_ms: t0.elapsed().as_secs_f64() * 1e3,
                    fork_ms: (t0.elapsed() - scanned).as_secs_f64() * 1e3,
                });
            }
            // The replica went away (`pending` has its status), or the clone was interrupted by a stop
            // request and must be retried at the next entry stop (bounded).
            Ok(None) => {
                self.retries += 1;
                if self.pending.is_none() && self.retries > 1000 {
                    self.stop("the remote fork was interrupted 1000 times in a row".into());
                }
                return;
            }
            Err(e) => self.stop(format!("a remote fork failed: {e:#}")),
        }
        self.retries = 0;
        self.set_want(false);
        self.schedule.taken(self.now());
        self.arm();
    }

    /// Fork `r` with clone(0), then give both processes `r`'s registers back. At a syscall-entry stop
    /// (`via` None) the call is rewritten, and both are rewound to run the original call again. At a stop
    /// in user space, the clone runs at `via` (a `syscall` instruction) and both resume where `r` was.
    fn fork_at(&mut self, r: Pid, regs: libc::user_regs_struct, via: Option<u64>) -> Result<Option<Pid>> {
        let mut call = regs;
        match via {
            None => call.orig_rax = libc::SYS_clone as u64,
            Some(g) => (call.rip, call.rax, call.orig_rax) = (g, libc::SYS_clone as u64, u64::MAX),
        }
        (call.rdi, call.rsi, call.rdx, call.r10, call.r8) = (0, 0, 0, 0, 0);
        ptrace::setregs(r, call).context("setting the clone registers")?;
        ptrace::syscall(r, None)?;
        let mut child = None;
        // Through a gadget, the first syscall stop is the clone's entry.
        let mut entry = via.is_some();
        loop {
            match wait(r)? {
                WaitStatus::PtraceSyscall(_) if entry => {
                    entry = false;
                    ptrace::syscall(r, None)?;
                }
                WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_CLONE) => {
                    child = Some(Pid::from_raw(ptrace::getevent(r)? as i32));
                    ptrace::syscall(r, None)?;
                }
                WaitStatus::PtraceSyscall(_) => break,
                other => {
                    // Stopped before the clone ran (an interrupt or a signal caught it at the gadget):
                    // put the replica's own registers back, or the trace loop would resume it into a
                    // clone of its own (seen as "started a thread"), and a checkpoint taken at that
                    // stop would copy the call's registers as the replica's.
                    // Killed meanwhile (SIGKILL from tmr), or stopped as above: the trace loop gets
                    // the status.
                    self.pending = Some(other);
                    if entry && matches!(other, WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..)) {
                        ptrace::setregs(r, regs).context("restoring the replica's registers")?;
                    }
                    return Ok(None);
                }
            }
        }
        let ret = ptrace::getregs(r)?.rax;
        let mut back = regs;
        if via.is_none() {
            back.rax = regs.orig_rax;
            back.rip = regs.rip - 2;
        }
        ptrace::setregs(r, back).context("restoring the replica's registers")?;
        let Some(child) = child else {
            // The original call runs again either way (registers restored above). A signal or stop
            // request pending at the clone makes it fail with ERESTARTNOINTR: retry later.
            let rc = ret as i64;
            if rc == -513 || rc == -(libc::EINTR as i64) || rc == -(libc::EAGAIN as i64) {
                return Ok(None);
            }
            bail!("clone returned {rc}");
        };
        // The child's first stop (it was attached automatically).
        loop {
            match wait(child)? {
                WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_STOP) => break,
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => bail!("the checkpoint died at birth"),
                _ => {}
            }
        }
        let set = remote_syscall(
            child,
            regs,
            via.unwrap_or(regs.rip - 2),
            libc::SYS_prctl as u64,
            [libc::PR_SET_PDEATHSIG as u64, libc::SIGKILL as u64, 0],
        );
        if let Err(e) = set.and_then(|rc| if rc == 0 { Ok(()) } else { Err(anyhow!("prctl returned {rc}")) })
        {
            kill_stopped(child);
            return Err(e.context("PR_SET_PDEATHSIG in the checkpoint"));
        }
        ptrace::setregs(child, back).context("setting the checkpoint's registers")?;
        Ok(Some(child))
    }

    /// The running process `r` is about to receive `sig`. If that would kill it and a rollback is
    /// allowed, resume the kept checkpoint instead and return its pid (the new running process); the
    /// caller then must not resume `r`.
    pub fn on_signal(&mut self, r: Pid, original: Pid, sig: Signal) -> Option<Pid> {
        let crash = matches!(
            sig,
            Signal::SIGSEGV | Signal::SIGBUS | Signal::SIGILL | Signal::SIGFPE | Signal::SIGABRT
        );
        if !crash || caught(r, sig) {
            return None;
        }
        self.roll(r, original, crate::fingerprint::signal_name(sig as i32))
    }

    /// The running process `r` failed with `cause`: resume the kept checkpoint in its place if the
    /// lineage allows it, and log either way.
    fn roll(&mut self, r: Pid, original: Pid, cause: String) -> Option<Pid> {
        if self.kept.is_empty() && self.lineage.resumed_from.is_none() {
            return None;
        }
        let at_ms = self.now().as_secs_f64() * 1e3;
        let (decision, lineage) = self.decide(r, &cause);
        self.lineage = lineage;
        self.carry_out(r, original, cause, at_ms, decision)
    }

    /// Would a failure of `r` with `cause` be rolled back now? (`--recover auto` asks before choosing.)
    fn would_roll(&self, r: Pid, cause: &str) -> bool {
        !(self.kept.is_empty() && self.lineage.resumed_from.is_none())
            && matches!(self.decide(r, cause).0, Decision::Rollback(_))
    }

    /// The decision on a failure of `r` with `cause`, and the lineage as it would be after it.
    fn decide(&self, r: Pid, cause: &str) -> (Decision, Lineage) {
        let mut lineage = self.lineage.clone();
        // Reads, and writes other than to stdout/stderr (those are held, and dropped below), since the
        // checkpoint: they cannot be taken back.
        let held = self.hold.as_ref().map_or(0, Hold::held);
        let now_io = io_counts(r);
        let (kept, resumed) = (&self.kept, &self.resumed);
        let io_since = |epoch: u32| {
            let Some(k) = kept.iter().find(|k| k.epoch == epoch) else { return u64::MAX };
            let since = if k.from == r {
                io_diff(now_io, k.io)
            } else {
                // An older checkpoint, of the process the running one was resumed from: its I/O
                // between the two checkpoints (committed output included), plus ours since resuming.
                match resumed {
                    Some(res) if res.from == k.from && res.epoch > epoch => {
                        io_diff(res.io_at_checkpoint, k.io).saturating_add(io_diff(now_io, res.io_at_resume))
                    }
                    _ => u64::MAX,
                }
            };
            since.saturating_sub(held)
        };
        let decision = if self.off {
            Decision::Stand("checkpointing had stopped".into())
        } else if let Some(why) = shared_with_the_outside(r) {
            Decision::Stand(why)
        } else {
            lineage.on_failure(cause, io_since)
        };
        (decision, lineage)
    }

    fn carry_out(
        &mut self,
        r: Pid,
        original: Pid,
        cause: String,
        at_ms: f64,
        decision: Decision,
    ) -> Option<Pid> {
        match decision {
            Decision::Stand(note) => {
                self.log.rollbacks.push(Rollback { at_ms, cause, resumed_epoch: None, note });
                None
            }
            Decision::Rollback(epoch) => {
                // Newer checkpoints are futures of the failed run: release them.
                for k in self.kept.iter().filter(|k| k.epoch > epoch) {
                    kill_stopped(k.pid);
                }
                self.kept.retain(|k| k.epoch <= epoch);
                let pos = self.kept.iter().position(|k| k.epoch == epoch)?;
                let kept = self.kept.remove(pos);
                if r == original {
                    self.proxy = Some((r, kept.gadget));
                } else {
                    self.held.push(r);
                }
                if let Some(h) = &self.hold {
                    h.discard();
                }
                let resumed = if self.aligned() {
                    ptrace::syscall(kept.pid, None)
                } else {
                    ptrace::cont(kept.pid, None)
                };
                if resumed.is_err() {
                    return None;
                }
                // Its count and its page digests are the checkpoint's; its first entry stop is the
                // call rewound when it was taken.
                self.pages.back();
                self.count = kept.count;
                self.rerun_entry = true;
                self.epoch = epoch;
                self.target = None;
                RUNNING.store(kept.pid.as_raw(), Ordering::SeqCst);
                self.lost += self.now().saturating_sub(kept.at);
                self.resumed = Some(Resumed {
                    epoch,
                    from: kept.from,
                    io_at_checkpoint: kept.io,
                    io_at_resume: io_counts(kept.pid),
                });
                self.log.rollbacks.push(Rollback {
                    at_ms,
                    cause,
                    resumed_epoch: Some(epoch),
                    note: format!("resumed checkpoint {epoch} in place of the failed process"),
                });
                self.set_want(false);
                self.schedule.taken(self.now());
                self.arm();
                Some(kept.pid)
            }
        }
    }

    /// The running process is ending with wait status `status` (None: gone without one). Release the
    /// checkpoint, and make the original replica end the same way if a checkpoint ran in its place.
    pub fn finish(&mut self, running: Pid, status: Option<i32>) {
        if let Some(sync) = &self.sync {
            sync.leave();
        }
        if let Some(timer) = self.timer.take() {
            // SAFETY: created by timer_create, deleted once.
            unsafe { libc::timer_delete(timer) };
        }
        for k in self.kept.drain(..) {
            kill_stopped(k.pid);
        }
        for h in std::mem::take(&mut self.held) {
            kill_stopped(h);
        }
        let hold = self.hold.take();
        self.end_proxy(running, status);
        // Everything left is committed and passed on before the tracer leaves (and tmr sees EOF).
        if let Some(h) = hold {
            h.finish();
        }
    }

    fn end_proxy(&mut self, running: Pid, status: Option<i32>) {
        let Some((proxy, gadget)) = self.proxy.take() else { return };
        if status.is_some() {
            // Let the resumed process finish exiting first, so that tmr, which sees the original one end,
            // never finds it still running (a leftover).
            let _ = ptrace::cont(running, None);
            for _ in 0..16 {
                match wait(running) {
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => break,
                    Ok(_) => {
                        let _ = ptrace::cont(running, None);
                    }
                }
            }
        }
        let ended = match status {
            Some(s) if libc::WIFEXITED(s) => exit_proxy(proxy, gadget, libc::WEXITSTATUS(s)),
            Some(s) if libc::WIFSIGNALED(s) => {
                let sig = Signal::try_from(libc::WTERMSIG(s)).ok();
                match sig.filter(|s| !caught(proxy, *s) && *s != Signal::SIGKILL) {
                    Some(s) => ptrace::cont(proxy, s).is_ok(),
                    None => false,
                }
            }
            _ => false,
        };
        if !ended {
            let _ = nix::sys::signal::kill(proxy, Signal::SIGKILL);
        }
    }
}

/// Make the held original replica call exit_group(code) when it resumes, at `gadget` (a `syscall`
/// instruction in it, checked).
fn exit_proxy(proxy: Pid, gadget: u64, code: i32) -> bool {
    let Ok(mut regs) = ptrace::getregs(proxy) else { return false };
    if ptrace::read(proxy, gadget as ptrace::AddressType).map(|w| (w as u64) & 0xffff) != Ok(0x050f) {
        return false;
    }
    regs.rip = gadget;
    regs.rax = libc::SYS_exit_group as u64;
    regs.orig_rax = u64::MAX;
    regs.rdi = code as u64;
    ptrace::setregs(proxy, regs).is_ok() && ptrace::cont(proxy, None).is_ok()
}

const PTRACE_SYSCALL_INFO_ENTRY: u8 = 1;
const PTRACE_SYSCALL_INFO_EXIT: u8 = 2;

/// At the exit of a sysinfo(2) call: make the answer the same in every replica. Free memory, loads,
/// uptime and the process count change from one call to the next, and programs keep what they read
/// (`sort` sizes its buffer from free memory and keeps the number on its stack), which the epoch vote
/// would see as a divergence in whichever replica read a different value. The totals stay; free RAM reads
/// as half the total, free swap as all of it, the rest as 0 (the process count as 1).
fn steady_sysinfo(pid: Pid) {
    let Ok(regs) = ptrace::getregs(pid) else { return };
    if regs.orig_rax != libc::SYS_sysinfo as u64 || regs.rax != 0 {
        return;
    }
    let mut info = [0u8; std::mem::size_of::<libc::sysinfo>()];
    let remote = [nix::sys::uio::RemoteIoVec { base: regs.rdi as usize, len: info.len() }];
    let read = nix::sys::uio::process_vm_readv(pid, &mut [std::io::IoSliceMut::new(&mut info)], &remote);
    if read != Ok(info.len()) {
        return;
    }
    super::inputs::steady_sysinfo(&mut info);
    let _ = nix::sys::uio::process_vm_writev(pid, &[std::io::IoSlice::new(&info)], &remote);
}

/// The address of a `syscall` instruction (0f 05) in `pid`'s vDSO. Any two such bytes will do, even
/// inside another instruction: execution jumps straight to them and stops at the call's exit.
fn vdso_syscall(pid: Pid) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
    let (range, _) = line.split_once(' ')?;
    let (a, b) = range.split_once('-')?;
    let (start, end) = (u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?);
    let mut code = vec![0u8; (end - start) as usize];
    let remote = [nix::sys::uio::RemoteIoVec { base: start as usize, len: code.len() }];
    let n = nix::sys::uio::process_vm_readv(pid, &mut [std::io::IoSliceMut::new(&mut code)], &remote).ok()?;
    code[..n].windows(2).position(|w| w == [0x0f, 0x05]).map(|i| start + i as u64)
}

/// The kind of syscall stop `pid` is in (PTRACE_GET_SYSCALL_INFO: 1 entry, 2 exit, 3 seccomp).
fn syscall_op(pid: Pid) -> Option<u8> {
    let mut info = [0u8; 88];
    // SAFETY: the kernel writes at most `info.len()` bytes into the buffer.
    let rc =
        unsafe { libc::ptrace(libc::PTRACE_GET_SYSCALL_INFO, pid.as_raw(), info.len(), info.as_mut_ptr()) };
    (rc > 0).then_some(info[0])
}

/// System calls not to checkpoint at: those that end, replace or clone the process, and those whose
/// rerun after a rewind would differ (sigreturn, restart_syscall), and skipped ones (-1).
fn skip(nr: i64) -> bool {
    nr < 0
        || [
            libc::SYS_exit,
            libc::SYS_exit_group,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_rt_sigreturn,
            libc::SYS_restart_syscall,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_getrandom,
        ]
        .contains(&nr)
}

/// Run one system call in stopped `pid` at `gadget` (a `syscall` instruction), starting from `base`
/// registers; returns its result. The caller restores the registers it wants afterwards.
fn remote_syscall(
    pid: Pid,
    base: libc::user_regs_struct,
    gadget: u64,
    nr: u64,
    args: [u64; 3],
) -> Result<i64> {
    let mut regs = base;
    regs.rip = gadget;
    regs.rax = nr;
    regs.orig_rax = u64::MAX;
    (regs.rdi, regs.rsi, regs.rdx) = (args[0], args[1], args[2]);
    ptrace::setregs(pid, regs)?;
    for _ in 0..2 {
        ptrace::syscall(pid, None)?;
        match wait(pid)? {
            WaitStatus::PtraceSyscall(_) => {}
            other => bail!("unexpected stop in a remote syscall: {other:?}"),
        }
    }
    Ok(ptrace::getregs(pid)?.rax as i64)
}

/// waitpid for one tracee, retried when the checkpoint timer's signal interrupts it.
fn wait(pid: Pid) -> nix::Result<WaitStatus> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// SIGKILL a stopped tracee and consume its end (bounded: a killed tracee exits at once).
fn kill_stopped(pid: Pid) {
    if nix::sys::signal::kill(pid, Signal::SIGKILL).is_err() {
        return;
    }
    for _ in 0..16 {
        match wait(pid) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => return,
            Ok(_) => {
                let _ = ptrace::cont(pid, None);
            }
        }
    }
}

/// Does `pid` have a handler for `sig` (then the signal does not end it by itself)?
fn caught(pid: Pid, sig: Signal) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig as i32 - 1)) != 0)
}

/// What a rollback could not take back and /proc/PID/io does not count: a writable shared mapping
/// (the checkpoint shares its pages, so re-executed writes land twice) or a socket (sendto and recvfrom
/// bypass rchar/wchar). Checked when the process fails (issue 12 item 7; `tests/checkpoint_limits.rs`).
fn shared_with_the_outside(pid: Pid) -> Option<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    if let Some(m) = maps
        .lines()
        .find(|l| l.split_whitespace().nth(1).is_some_and(|p| p.starts_with("rw") && p.ends_with('s')))
    {
        let name = m.split_whitespace().nth(5).unwrap_or("anonymous memory");
        return Some(format!(
            "not rolled back: it has a writable shared mapping ({name}), which the checkpoint shares"
        ));
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten();
    let socket = fds
        .filter(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n > 2))
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")));
    socket.map(|e| {
        format!(
            "not rolled back: it has a socket open (fd {}), whose traffic cannot be taken back",
            e.file_name().to_string_lossy()
        )
    })
}

/// Bytes read and bytes written by `pid` so far (rchar, wchar of /proc/PID/io; unreadable: as if huge).
fn io_counts(pid: Pid) -> (u64, u64) {
    let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) else { return (u64::MAX, u64::MAX) };
    let field = |k: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    (field("rchar:"), field("wchar:"))
}

/// The signal of the checkpoint timer (also sent by the output thread when its buffer is full).
pub fn timer_signal() -> i32 {
    libc::SIGRTMIN() + 5
}

/// Pages of `pid`'s writable private mappings that are present and exclusively mapped: written (or
/// first touched) since its last fork. Counted for unaligned checkpoints (replicas run one at a time);
/// aligned epochs read and hash them instead (`PageDigests::update`).
pub fn written_pages(pid: Pid) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).context("reading maps")?;
    let pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).context("opening pagemap")?;
    let mut entries = vec![0u8; 8 * 4096];
    let mut count = 0;
    for m in writable_mappings(&maps) {
        let mut at = m.start;
        while at < m.end {
            let n = (((m.end - at) / PAGE) as usize).min(4096);
            let buf = &mut entries[..8 * n];
            let got = pagemap.read_at(buf, at / PAGE * 8).unwrap_or(0) / 8;
            count += buf
                .chunks_exact(8)
                .take(got)
                .map(|e| u64::from_ne_bytes(e.try_into().expect("8 bytes")))
                .filter(|e| e >> 63 & 1 == 1 && e >> 56 & 1 == 1)
                .count() as u64;
            at += n.max(1) as u64 * PAGE;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sibling whose crash was left to stand ended early without finishing its work: counted as
    /// finished, its short wall made a healthy, slower replica look hung (and, now that a hang with no
    /// rollback is ended, would have had it killed).
    #[test]
    fn a_replica_killed_by_a_signal_does_not_report_itself_finished() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut c = Checkpointer::new(Duration::from_millis(50), Instant::now());
        c.peers = Some(Peers { dir: dir.path().into(), replica: 1, replicas: 3, round: 0 });
        let done = dir.path().join("done.0.1");
        c.done(Some(libc::SIGSEGV));
        assert!(!done.exists(), "killed by SIGSEGV: not finished");
        c.done(Some(1 << 8));
        assert!(done.exists(), "exit 1 is a finished run");
    }

    #[test]
    fn rewinding_is_refused_for_calls_that_end_replace_or_clone() {
        assert!(skip(-1));
        assert!(skip(libc::SYS_exit_group));
        assert!(skip(libc::SYS_execve));
        assert!(!skip(libc::SYS_write));
        assert!(!skip(libc::SYS_getppid));
    }

    /// A stop that catches the replica at the vDSO gadget, before the clone ran (the injection's
    /// interrupt, already pending here), leaves the replica's own registers in place and hands the stop
    /// to the trace loop. Before the fix, the replica was left with the clone's registers, and the
    /// trace loop resumed it into a clone of its own.
    #[test]
    fn a_stop_before_the_remote_clone_gives_the_replica_its_registers_back() {
        // SAFETY: the child only spins (no allocation, no lock) until it is killed.
        let child = match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => loop {
                std::hint::spin_loop();
            },
            nix::unistd::ForkResult::Parent { child } => child,
        };
        struct Reap(Pid);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = nix::sys::signal::kill(self.0, Signal::SIGKILL);
                let _ = waitpid(self.0, Some(WaitPidFlag::__WALL));
            }
        }
        let _reap = Reap(child);
        let options = ptrace::Options::PTRACE_O_TRACECLONE | ptrace::Options::PTRACE_O_TRACESYSGOOD;
        if let Err(e) = ptrace::seize(child, options) {
            // As the integration tests' `require_ptrace!`: a skip fails unless asked for.
            assert!(std::env::var_os("TMR_TEST_ALLOW_SKIP").is_some_and(|v| v == "1"), "ptrace refused: {e}");
            return;
        }
        ptrace::interrupt(child).expect("interrupt");
        assert!(matches!(wait(child), Ok(WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_STOP))));
        // A second interrupt, pending while the replica is stopped: it stops again as soon as it runs.
        ptrace::interrupt(child).expect("interrupt");
        let regs = ptrace::getregs(child).expect("registers");
        let gadget = vdso_syscall(child).expect("a syscall instruction in the vDSO");
        let mut c = Checkpointer::new(Duration::from_secs(1), Instant::now());
        let forked = c.fork_at(child, regs, Some(gadget)).expect("no error");
        assert_eq!(forked, None, "no checkpoint: the clone never ran");
        assert!(
            matches!(c.pending, Some(WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_STOP))),
            "{:?}",
            c.pending
        );
        let after = ptrace::getregs(child).expect("registers");
        assert_eq!(
            (after.rip, after.rax, after.rdi),
            (regs.rip, regs.rax, regs.rdi),
            "the replica's own registers"
        );
    }
}
