//! The per-replica monitor for `--mem` (and `--inject`): tmr re-executes itself as
//! `tmr __tmr-monitor [OPTIONS] -- PATH ARGV...`. That process becomes the replica: it starts a tracer
//! (a clone child that sends no SIGCHLD, so the command's wait(2) never sees it), lets it PTRACE_SEIZE
//! it, and execs the command. tmr's child is therefore the command itself — same pid, process group, exit
//! status, rusage and signals as without `--mem`. The tracer determinizes the replica (ASLR off,
//! AT_RANDOM pinned, getrandom answered with fixed bytes, rdtsc optionally trapped, the clock and
//! /dev/urandom replicated across the round's replicas by `super::inputs`), passes every signal
//! on and keeps group-stops stopped (PTRACE_LISTEN), hashes the writable memory at the exit stop, writes
//! the snapshot to fd 3 (`snapfile.rs`), and exits, which detaches it from the replica and its children before
//! tmr can see the replica's exit. It ignores the signals sent to its group, so `kill -TERM 0` in the
//! command or a signal tmr forwards reaches only the command. Process isolation as the lecture teaches
//! it: if reading one replica's memory crashes, only that tracer dies, and replicas are hashed in
//! parallel because each has its own tracer.
//!
//! With `--checkpoint` the tracer also checkpoints the replica by injected forks and may resume a
//! checkpoint in its place (`checkpoint.rs`), or repair it in place at an epoch vote (`scrub.rs`; the
//! recovery comes in `crate::epoch::ENV`, removed before the command runs); `Tracer::pid` is then the running process and `original`
//! the replica tmr waits on. The replica's stdout/stderr then go through the tracer, which passes on each
//! epoch's output at the next checkpoint (`hold.rs`) and leaves only after passing on the rest.
//!
//! With `--fork --mem` the tracer also forks the other replicas at the command's entry point
//! (`forkrun.rs`), and `__tmr-monitor --adopt PID CALLS` is the tracer of one such fork: it seizes it
//! instead of exec'ing anything.
//!
//! Limits: children still running when the replica exits are no longer traced; they keep the seccomp
//! filter, so a trapped call of theirs (getrandom; with `clock`/`urandom`, clock_gettime, gettimeofday,
//! time, open and openat) fails with ENOSYS from then on (and with the `tsc` step, rdtsc kills them).
//! tmr sweeps such leftovers when the batch ends.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::checkpoint::Checkpointer;
use super::memsnap::{hash_memory, writable_mappings, Masks};
use super::remote::read_remote_exact;
pub use super::remote::write_remote;
use crate::det::Det;
use crate::inject::{
    choose_flip, Candidate, FlipChoice, InjectSpec, Injected, InjectedWhat, Rng, Target, REGISTERS,
};
use crate::memvote::{MemSnapshot, PAGE};

pub const ARG: &str = "__tmr-monitor";

/// How every tracer seizes its replica (the original, or a `--fork` copy it adopts).
fn trace_options() -> Options {
    Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACEEXIT
        | Options::PTRACE_O_TRACESECCOMP
        | Options::PTRACE_O_TRACECLONE
        // Children inherit the seccomp filter and the rdtsc trap: they must be traced too, or their
        // getrandom fails with ENOSYS and their rdtsc kills them.
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK
        // Syscall stops (only while a checkpoint is due) report as such, not as SIGTRAP.
        | Options::PTRACE_O_TRACESYSGOOD
}
/// Whether this build can trace replicas (`--mem`, `--inject`, `--checkpoint`): see `trace::no_tracer`.
pub const SUPPORTED: bool = true;
/// The fd on which the monitor writes its snapshot.
pub const SNAPSHOT_FD: i32 = 3;
/// The memory note of a replica found hung that could not be rolled back, and so was killed.
const ENDED_HUNG: &str =
    "tmr ended the replica with SIGKILL (hung, and no rollback was possible); memory was not captured";

const AT_RANDOM: u64 = 25;
/// Bytes every replica sees as its AT_RANDOM (stack canary and pointer guard seed).
const PINNED_RANDOM: [u8; 16] = *b"tmr-pinned-bytes";

/// Entry point of the monitor process, which becomes the replica: it starts its tracer, waits until the
/// tracer has attached, applies the determinization that must happen before exec, and execs the command.
/// Returns only on an error (exit code 125, or 126/127 when the command cannot be executed).
pub fn main(args: &[OsString]) -> i32 {
    if let Err(e) = launched_by_tmr() {
        eprintln!("tmr: {ARG} is tmr's internal memory monitor and runs only under tmr --mem/--inject: {e}");
        return 125;
    }
    let mut det = Det::default();
    let mut checkpoint = None;
    let mut peers = None;
    // `--fork --mem`: trace a forked replica that another tracer left stopped (`forkrun.rs`).
    let mut adopt: Option<(i32, u64)> = None;
    let mut i = 0;
    while i < args.len() && args[i] != "--" {
        if args[i] == "--adopt" && i + 2 < args.len() {
            match (args[i + 1].to_string_lossy().parse(), args[i + 2].to_string_lossy().parse()) {
                (Ok(pid), Ok(calls)) if pid > 0 => adopt = Some((pid, calls)),
                _ => {
                    eprintln!("tmr monitor: bad --adopt {:?} {:?}", args[i + 1], args[i + 2]);
                    return 125;
                }
            }
            i += 3;
        } else if args[i] == "--checkpoint-ms" && i + 1 < args.len() {
            match args[i + 1].to_string_lossy().parse::<u64>() {
                Ok(ms) if ms > 0 => checkpoint = Some(std::time::Duration::from_millis(ms)),
                _ => {
                    eprintln!("tmr monitor: bad --checkpoint-ms {:?}", args[i + 1]);
                    return 125;
                }
            }
            i += 2;
        } else if args[i] == "--checkpoint-dir" && i + 1 < args.len() {
            peers = Some(std::path::PathBuf::from(&args[i + 1]));
            i += 2;
        } else if args[i] == "--det" && i + 1 < args.len() {
            match Det::parse(&args[i + 1].to_string_lossy()) {
                Ok(d) => det = d,
                Err(e) => {
                    eprintln!("tmr monitor: {e}");
                    return 125;
                }
            }
            i += 2;
        } else {
            eprintln!("tmr monitor: unexpected argument {:?}", args[i]);
            return 125;
        }
    }
    if let Some((pid, calls)) = adopt {
        adopt_main(Pid::from_raw(pid), det, calls)
    }
    let command = &args[(i + 1).min(args.len())..];
    if command.len() < 2 {
        eprintln!("tmr monitor: usage: {ARG} [--det LIST] -- PATH ARGV0 [ARGS...]");
        return 125;
    }
    match become_replica(command, det, checkpoint.map(|d| (d, peers))) {
        Ok(never) => match never {},
        Err((code, e)) => {
            eprintln!("tmr: {e:#}");
            code
        }
    }
}

/// Start the tracer, then exec the command in this very process: tmr's child is the replica itself, so
/// its pid, process group, exit status, rusage and signals are exactly those without `--mem`.
///
/// The tracer is a child of this process created with no exit signal (a "clone child"): wait(2) in the
/// command, which only sees children that signal SIGCHLD, never waits for it. It detaches (by exiting) at
/// the replica's exit stop, before the replica's exit is visible to tmr, so tmr never sees it running.
fn become_replica(
    command: &[OsString],
    det: Det,
    checkpoint: Option<(std::time::Duration, Option<std::path::PathBuf>)>,
) -> Result<std::convert::Infallible, (i32, anyhow::Error)> {
    let fail = |e: anyhow::Error| (125, e);
    let c = |s: &OsString| CString::new(s.clone().into_vec()).context("NUL in an argument");
    let path = c(&command[0]).map_err(fail)?;
    let argv: Vec<CString> = command[1..].iter().map(c).collect::<Result<_>>().map_err(fail)?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let inject = take_inject_spec();
    // Epoch votes and their recovery (`--recover`, or a campaign's environment): the tracer's, not the
    // command's.
    let vote = std::env::var(crate::epoch::ENV).ok().and_then(|v| crate::epoch::Recover::parse(&v).ok());
    std::env::remove_var(crate::epoch::ENV);
    let fork = std::env::var(super::forkrun::ENV).ok().and_then(|t| super::forkrun::ForkPlan::parse(&t));
    std::env::remove_var(super::forkrun::ENV);
    if let Some(plan) = &fork {
        // The report pipe is the tracer's alone; the copies' pipes stay open for the command's copies.
        let cloexec = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC);
        let _ = nix::fcntl::fcntl(plan.report_fd, cloexec);
    }
    let place = super::inputs::Place::take_from_env();
    let mut trapped = super::inputs::trapped(det.clock, det.urandom);
    if checkpoint.is_some() {
        // With checkpoints the checkpointer makes sysinfo steady at the call's exit instead (aligned
        // epochs only). With both, one CI run under load saw sort outvoted at its first epoch; the cause
        // was not pinned down, and the checkpointer's way had passed its tests beside CPU hogs.
        trapped.retain(|&nr| nr != libc::SYS_sysinfo as u32);
    }
    if det.getrandom {
        trapped.push(libc::SYS_getrandom as u32);
    }
    let filter = trap_filter(&trapped);
    let prog =
        libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    // The snapshot fd stays open only in the tracer.
    let _ = nix::fcntl::fcntl(SNAPSHOT_FD, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .context("creating the tracer's pipe")
        .map_err(fail)?;
    let replica = nix::unistd::getpid();
    let tmr = nix::unistd::getppid().as_raw();
    // `--checkpoint`: stdout and stderr go through the tracer, which holds each epoch back (hold.rs).
    let interposed = match checkpoint {
        Some(_) => Some(super::hold::interpose().map_err(fail)?),
        None => None,
    };
    // SAFETY: a raw clone without CLONE_VM is a fork whose child sends no SIGCHLD (exit signal 0). This
    // process is single-threaded, so the child's copy of every lock is free. The child never returns
    // from `tracer_main`.
    let clone =
        || unsafe { libc::syscall(libc::SYS_clone, 0 as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    let mut tracer = clone();
    // EAGAIN is a momentary shortage (a pids cgroup or RLIMIT_NPROC full of other replicas and their
    // tracers, which come and go): wait for one to end rather than fail the replica. Bounded: ~2 s.
    for attempt in 0..40 {
        if tracer >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5 * (attempt + 1).min(10)));
        tracer = clone();
    }
    if tracer < 0 {
        return Err(fail(anyhow::anyhow!("starting the tracer: {}", std::io::Error::last_os_error())));
    }
    if tracer == 0 {
        drop(go_r);
        tracer_main(
            replica.as_raw(),
            tmr,
            Plan { det, inject, place, checkpoint, vote, interposed, fork },
            go_w,
        )
    }
    drop(go_w);
    // Yama's ptrace_scope=1 lets only ancestors trace: name the tracer (fails harmlessly without Yama).
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PTRACER, tracer as libc::c_ulong, 0, 0, 0) };
    let mut go = [0u8];
    // 0: not traced; 1: traced; 2: traced, and the tracer copies stdout/stderr (hold.rs).
    let traced = loop {
        match nix::unistd::read(go_r.as_raw_fd(), &mut go) {
            Ok(1) => break go[0] >= 1,
            // The tracer died before attaching: run the command anyway; tmr finds no snapshot.
            Ok(_) => break false,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break false,
        }
    };
    drop(go_r);
    if let Some(i) = interposed.filter(|_| go[0] == 2) {
        i.in_replica();
    }
    // SAFETY: plain syscalls on values prepared above; the process execs right after.
    unsafe {
        if traced {
            if det.aslr {
                libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
            }
            if det.tsc {
                libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV);
            }
            if !trapped.is_empty() {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                );
            }
        }
        // Rust's runtime ignored SIGPIPE in this process; the command gets the default, as without --mem.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::execv(path.as_ptr(), argv_ptrs.as_ptr());
    }
    let err = std::io::Error::last_os_error();
    let code = if err.raw_os_error() == Some(libc::ENOENT) { 127 } else { 126 };
    Err((code, anyhow::Error::new(err).context(format!("cannot run {}", path.to_string_lossy()))))
}

/// The tracer process: attach to the replica, let it exec, trace it to its exit stop, publish the
/// snapshot on fd 3, and leave (which detaches every tracee and lets the replica finish exiting).
/// What the tracer is asked to do to its replica.
struct Plan {
    det: Det,
    inject: Option<InjectSpec>,
    /// Input replication: this replica's place in the run's answer log.
    place: Option<super::inputs::Place>,
    /// `--checkpoint`: the interval, and where the tracers report their walls.
    checkpoint: Option<(std::time::Duration, Option<std::path::PathBuf>)>,
    /// Epoch votes with this recovery, even when tmr marked the checkpoint directory solo.
    vote: Option<crate::epoch::Recover>,
    interposed: Option<super::hold::Interposed>,
    /// `--fork --mem`: the replicas to fork at the command's entry point.
    fork: Option<super::forkrun::ForkPlan>,
}

fn tracer_main(replica: i32, tmr: i32, plan: Plan, go: OwnedFd) -> ! {
    let Plan { det, inject, place, checkpoint, vote, interposed, fork } = plan;
    // tmr's pipes stay with the replica: a tracer holding them would keep tmr waiting for EOF.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    ignore_group_signals();
    // The copies' pipes belong to the command: a tracer holding them would keep tmr waiting for EOF.
    for fd in fork.iter().flat_map(|p| p.fds()) {
        let _ = nix::unistd::close(fd);
    }
    // SAFETY: fd 3 was set up by tmr for this purpose (dup2 before exec); only the tracer uses it.
    let out = unsafe { std::fs::File::from_raw_fd(SNAPSHOT_FD) };
    let pid = Pid::from_raw(replica);
    let traced = ptrace::seize(pid, trace_options()).is_ok();
    let mut tracer = Tracer::new(pid, tmr, det, inject, out);
    // SAFETY: tmr passed this fd (its pipe's write end) for this purpose; only the tracer holds it now.
    tracer.fork = fork.map(|p| (unsafe { std::fs::File::from_raw_fd(p.report_fd) }, p, None));
    tracer.inputs = super::inputs::Inputs::new(pid, det.clock, det.urandom, place);
    let mut copying = false;
    tracer.ckpt = checkpoint.filter(|_| traced).map(|(d, peers)| {
        let mut c = Checkpointer::new(d, tracer.started);
        if let Some(dir) = peers {
            c = c.with_peers(dir, vote);
        }
        match interposed.map(|i| i.in_tracer(super::checkpoint::timer_signal())) {
            Some(Ok(hold)) => {
                copying = true;
                c.with_hold(hold)
            }
            Some(Err(e)) => {
                c.stop(format!("could not hold output back: {e:#}"));
                c
            }
            None => c,
        }
    });
    if !traced {
        // The kernel refused ptrace (a container's seccomp, yama): vote on outputs only.
        tracer.snap.unavailable = Some("ptrace is not permitted here; memory was not captured".into());
        if tracer.inject.is_some() {
            tracer.snap.inject_error = Some("ptrace is not permitted here".into());
        }
    } else if let Some(spec) = &tracer.inject {
        tracer.snap.inject_error = Some(match spec.when {
            crate::inject::When::After(d) => {
                format!("the replica ended before the injection time ({:.1} ms)", d.as_secs_f64() * 1e3)
            }
            crate::inject::When::Exit => "the replica was killed before its exit stop".into(),
        });
    }
    tracer.publish();
    if traced {
        if let Some(crate::inject::When::After(d)) = tracer.inject.as_ref().map(|s| s.when) {
            TRACEE.store(replica, Ordering::SeqCst);
            if let Err(e) = arm_alarm(d) {
                tracer.snap.inject_error = Some(format!("{e:#}"));
                tracer.inject = None;
                tracer.publish();
            }
        }
    }
    let _ = nix::unistd::write(&go, &[u8::from(traced) + u8::from(copying)]);
    drop(go);
    if traced {
        tracer.trace();
    }
    // SAFETY: leaving without running exit handlers: this process is a copy of the monitor, and nothing
    // of its state needs flushing (the snapshot is written and flushed by `publish`).
    unsafe { libc::_exit(0) }
}

/// `tmr __tmr-monitor --adopt PID CALLS`: the tracer of a replica forked by another replica's tracer
/// (`--fork --mem`). The copy waits in a SIGSTOP group-stop; this process seizes it, continues it, and
/// traces it as [`tracer_main`] does from here on. CALLS: getrandom calls the original had answered,
/// so that the copy's next answers are the original's next ones.
fn adopt_main(pid: Pid, det: Det, getrandom_calls: u64) -> ! {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    ignore_group_signals();
    // SAFETY: fd 3 is tmr's snapshot file for this replica (checked by `launched_by_tmr`).
    let out = unsafe { std::fs::File::from_raw_fd(SNAPSHOT_FD) };
    let tmr = nix::unistd::getppid().as_raw();
    let mut tracer = Tracer::new(pid, tmr, det, None, out);
    tracer.getrandom_calls = getrandom_calls;
    tracer.inputs =
        super::inputs::Inputs::new(pid, det.clock, det.urandom, super::inputs::Place::take_from_env());
    let traced = ptrace::seize(pid, trace_options()).is_ok();
    if !traced {
        tracer.snap.unavailable = Some("ptrace is not permitted here; memory was not captured".into());
    }
    tracer.publish();
    if traced {
        // Seizing a stopped process makes it report the stop; then it may go on.
        let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
    }
    let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
    if traced {
        let _ = ptrace::cont(pid, None);
        tracer.trace();
    }
    // SAFETY: as in `tracer_main`: nothing of this process's state needs flushing.
    unsafe { libc::_exit(0) }
}

/// The tracer sits in the replica's process group, so a signal the command sends its group (`kill -TERM
/// 0`) or that tmr forwards reaches it too; it must not die or stop from those, or the replica would be
/// killed (or frozen) with it. SIGKILL still ends it; synchronous faults keep their defaults.
fn ignore_group_signals() {
    let keep = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGCHLD,
        libc::SIGALRM,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGABRT,
        libc::SIGTRAP,
        libc::SIGSYS,
    ];
    for sig in 1..32 {
        if !keep.contains(&sig) {
            // SAFETY: setting a disposition to SIG_IGN has no memory-safety requirements.
            unsafe { libc::signal(sig, libc::SIG_IGN) };
        }
    }
}

/// Was this monitor started by tmr for a replica? tmr hands it an unlinked snapshot file as fd 3 and keeps
/// that file open itself; run by hand (or by a replica), fd 3 is missing, a named file, or not tmr's.
/// Checked before anything runs, so a stray `tmr __tmr-monitor` neither runs a command under ptrace nor
/// writes a snapshot into whatever fd 3 happens to be.
fn launched_by_tmr() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let own = nix::sys::stat::fstat(SNAPSHOT_FD).map_err(|_| format!("fd {SNAPSHOT_FD} is not open"))?;
    if own.st_mode & libc::S_IFMT != libc::S_IFREG || own.st_nlink != 0 {
        return Err(format!("fd {SNAPSHOT_FD} is not tmr's snapshot file"));
    }
    let parent = nix::unistd::getppid();
    let fds = std::fs::read_dir(format!("/proc/{parent}/fd"))
        .map_err(|e| format!("cannot check the parent process: {e}"))?;
    let held = fds
        .flatten()
        .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == own.st_dev && m.ino() == own.st_ino));
    if held {
        Ok(())
    } else {
        Err("the parent process did not hand it its snapshot file".into())
    }
}

struct Tracer {
    pid: Pid,
    /// The replica itself (tmr's child); differs from `pid` after a rollback.
    original: Pid,
    det: Det,
    getrandom_calls: u64,
    tsc: u64,
    snap: MemSnapshot,
    /// The snapshot file (fd 3), rewritten whole whenever what tmr should read changes.
    out: std::fs::File,
    saw_glibc: bool,
    /// A fault still to inject into this replica.
    inject: Option<InjectSpec>,
    /// The time of a timed injection has come: inject at the replica's next stop.
    stop_requested: bool,
    started: Instant,
    /// The last fault delivered (thread, rip) and how often in a row.
    last_fault: Option<(Pid, u64, u32)>,
    /// tmr's pid (the replica's parent), and the stop signal it sent the replica, if any.
    tmr: i32,
    stopped_by_tmr: Option<Signal>,
    /// Input replication: clock and /dev/urandom answers shared with the other replicas.
    inputs: super::inputs::Inputs,
    /// `--checkpoint`: the checkpoints of this replica. `pid` is the running process: the replica, or
    /// after a rollback the checkpoint resumed in its place.
    ckpt: Option<Checkpointer>,
    /// `--fork --mem`: where to report the copies, what to fork, and the breakpoint once planted.
    fork: Option<(std::fs::File, super::forkrun::ForkPlan, Option<super::forkrun::Planted>)>,
}

fn is_fault(s: Signal) -> bool {
    matches!(s, Signal::SIGSEGV | Signal::SIGBUS | Signal::SIGILL | Signal::SIGFPE)
}

/// What to do about a fault that keeps coming back (see [`Tracer::fault_loop`]).
enum FaultLoop {
    No,
    /// Deliver it so that it kills.
    Break,
    /// That did not end it either (an alternate signal stack): SIGKILL.
    Kill,
}

fn is_stop_signal(s: Signal) -> bool {
    matches!(s, Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU)
}

impl Tracer {
    fn new(pid: Pid, tmr: i32, det: Det, inject: Option<InjectSpec>, out: std::fs::File) -> Self {
        let snap = MemSnapshot {
            threads: 1,
            // What tmr reads if the replica never reaches its exit stop (SIGKILL): replaced there.
            unavailable: Some("the replica was killed before its exit stop; memory was not captured".into()),
            ..Default::default()
        };
        Tracer {
            pid,
            original: pid,
            det,
            getrandom_calls: 0,
            tsc: 0,
            snap,
            out,
            saw_glibc: false,
            inject,
            stop_requested: false,
            started: Instant::now(),
            last_fault: None,
            tmr,
            stopped_by_tmr: None,
            inputs: super::inputs::Inputs::new(pid, false, false, None),
            ckpt: None,
            fork: None,
        }
    }

    /// Replace the snapshot file's contents (`super::snapfile`). Always done while the replica is held
    /// (before it runs, in a ptrace stop), so tmr, which reads the file after the replica has exited,
    /// reads a whole snapshot.
    fn publish(&mut self) {
        let _ = super::snapfile::write(&mut self.out, &self.snap);
    }

    /// Trace until the replica's exit stop (or its death without one).
    fn trace(&mut self) {
        loop {
            if ALARM.swap(false, Ordering::SeqCst) && self.inject.is_some() {
                self.stop_requested = true;
                if !STOP_SENT.load(Ordering::SeqCst) {
                    let _ = ptrace::interrupt(self.pid);
                }
            }
            if let Some(c) = &mut self.ckpt {
                c.poll();
            }
            let pending = self.ckpt.as_mut().and_then(|c| c.pending.take());
            let status = match pending.map_or_else(|| waitpid(None, Some(WaitPidFlag::__WALL)), Ok) {
                Ok(s) => s,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            };
            // A timed injection lands at the replica's first stop after its time, whatever the stop:
            // with aligned epochs the running process stops at every system call, and the alarm's
            // interrupt may come while it is in such a stop already (then no other stop follows until
            // its exit: the fault would land there, not at its time).
            let mut injected_here = false;
            if self.stop_requested && status.pid() == Some(self.pid) {
                if let WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..) | WaitStatus::PtraceSyscall(..) =
                    status
                {
                    self.stop_requested = false;
                    if let Some(spec) = self.inject.take() {
                        self.inject_now(&spec);
                        self.publish();
                        injected_here = true;
                    }
                }
            }
            // A replica found hung (by the checkpoint timer) is rolled back at its next stop.
            if let Some(c) = self.ckpt.as_mut().filter(|_| status.pid() == Some(self.pid)) {
                let stop = match status {
                    WaitStatus::PtraceEvent(_, _, e) => e != libc::PTRACE_EVENT_EXIT,
                    WaitStatus::PtraceSyscall(_) | WaitStatus::Stopped(..) => true,
                    _ => false,
                };
                if let Some(resumed) = stop.then(|| c.at_stop(self.pid, self.original)).flatten() {
                    self.pid = resumed;
                    TRACEE.store(resumed.as_raw(), Ordering::SeqCst);
                    self.last_fault = None;
                    continue;
                }
                if c.ended_hung {
                    // Its memory is wherever the hang left it, not a result. A process killed with
                    // SIGKILL may die without its exit stop, where the log is published: publish it now.
                    self.stopped_by_tmr.get_or_insert(Signal::SIGKILL);
                    self.snap.checkpoints = Some(c.log.clone());
                    self.snap.unavailable = Some(ENDED_HUNG.into());
                    self.publish();
                }
            }
            match status {
                WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _) if p == self.pid => {
                    if let Some(c) = &mut self.ckpt {
                        c.finish(p, None);
                    }
                    return;
                }
                WaitStatus::PtraceSyscall(tid) => {
                    if let Some(c) = self.ckpt.as_mut().filter(|_| tid == self.pid) {
                        if let Some(resumed) = c.at_syscall_stop(tid, !injected_here) {
                            // An epoch vote found it in the minority: its last good checkpoint runs on.
                            self.pid = resumed;
                            TRACEE.store(resumed.as_raw(), Ordering::SeqCst);
                            self.last_fault = None;
                            continue;
                        }
                        if c.pending.is_some() {
                            continue;
                        }
                    }
                    self.resume(tid, None);
                    continue;
                }
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {}
                WaitStatus::PtraceEvent(tid, sig, event) => {
                    match event {
                        libc::PTRACE_EVENT_EXEC if tid == self.pid && self.fork.is_some() => {
                            self.inputs.on_exec(tid);
                            self.on_exec();
                            // No entry point to stop at: tmr gets no copies and starts the rest itself.
                            match super::forkrun::plant(tid) {
                                Ok(p) => self.fork.as_mut().expect("checked").2 = Some(p),
                                Err(_) => self.fork = None,
                            }
                        }
                        libc::PTRACE_EVENT_EXEC => {
                            self.inputs.on_exec(tid);
                            self.on_exec();
                            // Checkpoints start with the command, not with tmr's monitor before its exec.
                            if let Some(c) = self.ckpt.as_mut().filter(|_| tid == self.pid) {
                                c.start(tid);
                            }
                        }
                        libc::PTRACE_EVENT_SECCOMP => self.on_seccomp(tid),
                        libc::PTRACE_EVENT_CLONE if tid == self.pid => {
                            self.snap.threads += 1;
                            if let Some(c) = &mut self.ckpt {
                                c.stop("the replica started a thread: a fork would copy only one".into());
                            }
                        }
                        libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK if tid == self.pid => {
                            if let Some(c) = &mut self.ckpt {
                                c.stop(
                                    "the replica started a child process, which a rollback would orphan"
                                        .into(),
                                );
                            }
                        }
                        libc::PTRACE_EVENT_EXIT if tid == self.pid => {
                            self.on_exit();
                            if let Some(c) = &mut self.ckpt {
                                let status = ptrace::getevent(tid).ok().map(|s| s as i32);
                                c.done(status);
                                self.snap.checkpoints = Some(c.log.clone());
                                c.finish(tid, status);
                            }
                            self.publish();
                            // Leaving detaches every tracee: the replica finishes exiting, its children
                            // run on untraced, as they would without --mem.
                            return;
                        }
                        // The checkpoint timer's interrupt: a checkpoint may be taken right here.
                        libc::PTRACE_EVENT_STOP
                            if tid == self.pid && sig == Signal::SIGTRAP && self.ckpt.is_some() =>
                        {
                            if let Some(c) = &mut self.ckpt {
                                c.at_interrupt(tid, !injected_here);
                                if c.pending.is_some() {
                                    continue;
                                }
                            }
                        }
                        // A group-stop (SIGSTOP, SIGTSTP, ...): stay stopped, as without a tracer, until
                        // a SIGCONT; PTRACE_CONT here would resume the replica at once.
                        libc::PTRACE_EVENT_STOP if is_stop_signal(sig) => {
                            // SAFETY: PTRACE_LISTEN takes no pointers.
                            unsafe { libc::ptrace(libc::PTRACE_LISTEN, tid.as_raw(), 0, 0) };
                            continue;
                        }
                        _ => {}
                    }
                    self.resume(tid, None);
                }
                // A signal-delivery-stop: deliver the signal, as the kernel would have.
                WaitStatus::Stopped(tid, Signal::SIGTRAP) if tid == self.pid && self.at_fork_point(tid) => {
                    self.fork_copies(tid);
                    self.resume(tid, None);
                }
                WaitStatus::Stopped(tid, sig) => {
                    if matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP) {
                        self.note_stop_by_tmr(tid, sig);
                    }
                    let deliver = match sig {
                        Signal::SIGSEGV if self.det.tsc && self.emulate_rdtsc(tid) => None,
                        s => Some(s),
                    };
                    if let (Some(c), Some(s)) = (self.ckpt.as_mut().filter(|_| tid == self.pid), deliver) {
                        if let Some(resumed) = c.on_signal(tid, self.original, s) {
                            // The failed process stays stopped; its checkpoint runs on as the replica.
                            self.pid = resumed;
                            TRACEE.store(resumed.as_raw(), Ordering::SeqCst);
                            self.last_fault = None;
                            continue;
                        }
                    }
                    if let Some(s) = deliver.filter(|s| is_fault(*s)) {
                        match self.fault_loop(tid, s) {
                            FaultLoop::No => {}
                            FaultLoop::Break => {
                                // The kernel keeps re-raising the fault without the program getting
                                // anywhere (a handler that returns to an unusable instruction pointer):
                                // deliver it with an unusable stack pointer, so the handler cannot run
                                // and the kernel ends the replica with SIGSEGV, as a crash would.
                                if let Ok(mut regs) = ptrace::getregs(tid) {
                                    regs.rsp = 0;
                                    let _ = ptrace::setregs(tid, regs);
                                }
                                let _ = ptrace::cont(tid, Signal::SIGSEGV);
                                continue;
                            }
                            FaultLoop::Kill => {
                                let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
                                continue;
                            }
                        }
                    }
                    self.resume(tid, deliver);
                }
                _ => {}
            }
        }
    }

    /// Whether the replica stopped at the entry-point breakpoint planted for `--fork`.
    fn at_fork_point(&self, tid: Pid) -> bool {
        let Some((_, _, Some(planted))) = &self.fork else { return false };
        ptrace::getregs(tid).is_ok_and(|r| planted.hit(&r))
    }

    /// Fork the copies and report each as `PID GETRANDOM_CALLS` to tmr; nothing when it failed, and tmr
    /// then starts the other replicas itself. Closing the report ends it either way.
    fn fork_copies(&mut self, tid: Pid) {
        use std::io::Write;
        let Some((mut report, plan, Some(planted))) = self.fork.take() else { return };
        match super::forkrun::fork_in_tracer(tid, &planted, &plan) {
            Ok(pids) => {
                let lines: String = pids.iter().map(|p| format!("{p} {}\n", self.getrandom_calls)).collect();
                let _ = report.write_all(lines.as_bytes());
            }
            Err(e) => self.snap.notes.push(format!("--fork: forking at the entry point failed: {e:#}")),
        }
    }

    /// Resume a stopped tracee; while a checkpoint is due, the running process stops at its next syscall.
    fn resume(&self, tid: Pid, sig: Option<Signal>) {
        match &self.ckpt {
            Some(c) => c.resume(tid, self.pid, sig),
            None => {
                let _ = ptrace::cont(tid, sig);
            }
        }
    }

    /// tmr sends SIGTERM to a replica's group at its timeout and forwards SIGINT/SIGHUP/SIGTERM when it is
    /// stopped itself: memory at that moment is wherever the replica happened to be, not a result.
    fn note_stop_by_tmr(&mut self, tid: Pid, sig: Signal) {
        let Ok(info) = ptrace::getsiginfo(tid) else { return };
        // SAFETY: for SI_USER (kill/killpg) the siginfo holds the sender's pid.
        let sender = unsafe { info.si_pid() };
        if info.si_code == libc::SI_USER && sender == self.tmr {
            self.stopped_by_tmr.get_or_insert(sig);
        }
    }

    /// The exec stop: the new image is mapped, nothing of it has run yet.
    fn on_exec(&mut self) {
        if !self.det.at_random {
            return;
        }
        let Ok(auxv) = std::fs::read(format!("/proc/{}/auxv", self.pid)) else { return };
        for pair in auxv.chunks_exact(16) {
            let key = u64::from_ne_bytes(pair[..8].try_into().expect("8 bytes"));
            let val = u64::from_ne_bytes(pair[8..].try_into().expect("8 bytes"));
            if key == AT_RANDOM && write_remote(self.pid, val, &PINNED_RANDOM).is_err() {
                self.snap.notes.push("could not pin AT_RANDOM".into());
            }
        }
    }

    /// A getrandom(2) stopped by the seccomp filter: fill the buffer with the same bytes in every
    /// replica and skip the real call. The other trapped calls are input replication's.
    fn on_seccomp(&mut self, tid: Pid) {
        let Ok(mut regs) = ptrace::getregs(tid) else { return };
        if regs.orig_rax != libc::SYS_getrandom as u64 {
            self.inputs.on_seccomp(tid, &mut regs);
            return;
        }
        let (buf, len) = (regs.rdi, regs.rsi as usize);
        let mut bytes = vec![0u8; len.min(1 << 20)];
        let mut xof = blake3::Hasher::new_derive_key("tmr getrandom v1")
            .update(&self.getrandom_calls.to_le_bytes())
            .finalize_xof();
        xof.fill(&mut bytes);
        self.getrandom_calls += 1;
        regs.rax = match write_remote(tid, buf, &bytes) {
            Ok(()) => bytes.len() as u64,
            Err(_) => (-libc::EFAULT) as i64 as u64,
        };
        regs.orig_rax = u64::MAX; // -1: skip the real system call; rax is its return value.
        let _ = ptrace::setregs(tid, regs);
    }

    fn on_exit(&mut self) {
        self.snap.inputs = self.inputs.stats();
        self.snap.notes.extend(self.inputs.notes().iter().cloned());
        if self.ckpt.as_ref().is_some_and(|c| c.ended_hung) {
            // Whether or not its exit stop came before it died: one wording.
            self.snap.unavailable = Some(ENDED_HUNG.into());
            return;
        }
        if let Some(sig) = self.stopped_by_tmr {
            self.snap.unavailable = Some(format!(
                "tmr stopped the replica with {} (timeout or interrupt); memory was not captured",
                crate::fingerprint::signal_name(sig as i32)
            ));
            return;
        }
        if self.snap.threads > 1 && !self.det.strict_threads {
            // Still inject (the report shows what was flipped), but vote nothing of this replica's memory.
            if let Some(spec) = self.inject.take_if(|s| s.when == crate::inject::When::Exit) {
                self.inject_now(&spec);
            }
            self.snap.unavailable = Some(format!(
                "multithreaded ({} threads): thread scheduling makes heaps differ between runs, so this \
                 replica's memory was not voted (--mem-det ...,strict-threads votes it anyway)",
                self.snap.threads
            ));
            return;
        }
        let started = Instant::now();
        self.snap.unavailable = None;
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)) {
            self.saw_glibc = maps.contains("libc.so") || maps.contains("libc-");
        }
        let regs = ptrace::getregs(self.pid).ok();
        if let Some(spec) = self.inject.take_if(|s| s.when == crate::inject::When::Exit) {
            self.inject_now(&spec);
        }
        let masks = Masks {
            rsp: regs.filter(|_| self.det.stack).map(|r| r.rsp),
            // After a rollback the resumed process holds the original pid wherever it was copied before
            // the checkpoint (its own shows only where it called getpid since): blank the original.
            tid: regs.filter(|_| self.det.tid).map(|r| (self.original.as_raw() as u32, r.fs_base)),
            replica_env: ["TMR_REPLICA", "TMR_REPLICAS", "TMR_ROUND", "TMR_PAD"]
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}").into_bytes()))
                .collect(),
        };
        match hash_memory(self.pid, &masks) {
            Ok(h) => {
                self.snap.regions = h.regions;
                self.snap.bytes = h.bytes;
                self.snap.pid = masks.tid.map(|t| t.0);
                self.snap.pid_pages = h.pid_pages;
                self.snap.pid_pages_from = h.pid_pages_from;
                if h.pid_pages_dropped > 0 {
                    self.snap.notes.push(format!(
                        "the pid appeared in {} more pages than the {} shipped for pid blanking; this replica \
                         abstains on those where the others found pid slots",
                        h.pid_pages_dropped,
                        crate::memvote::MAX_PID_PAGES
                    ));
                }
            }
            Err(e) => self.snap.unavailable = Some(format!("reading memory failed: {e:#}")),
        }
        self.snap.cost_ms = started.elapsed().as_secs_f64() * 1e3;
        if self.det.rseq && !self.saw_glibc {
            self.snap
                .notes
                .push("no glibc mapped (static or non-glibc program): the rseq tunable had no effect".into());
        }
        if self.snap.threads > 1 {
            self.snap.notes.push(format!(
                "multithreaded ({} threads): thread scheduling can make heaps differ between replicas",
                self.snap.threads
            ));
        }
        if self.det.getrandom && self.getrandom_calls > 0 {
            self.snap
                .notes
                .push(format!("answered {} getrandom call(s) with fixed bytes", self.getrandom_calls));
        }
    }

    /// Flip the chosen bits now (the replica is in a ptrace stop). Every open choice is drawn from the
    /// spec's seed, and every value drawn is recorded so the trial can be replayed.
    fn inject_now(&mut self, spec: &InjectSpec) {
        let mut rng = Rng::new(spec.seed ^ 0x746d_7220_666c_6970);
        let at_ms = self.started.elapsed().as_secs_f64() * 1e3;
        let replica = spec.replica.unwrap_or(0);
        let result = match &spec.target {
            Target::Flip { region, bits, page, offset, bit } => {
                let rsp = ptrace::getregs(self.pid).map(|r| r.rsp).unwrap_or(0);
                let candidates: Vec<Candidate> = std::fs::read_to_string(format!("/proc/{}/maps", self.pid))
                    .map(|m| writable_mappings(&m))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| {
                        let start = if m.name == "[stack]" && rsp > m.start && rsp < m.end {
                            rsp & !(PAGE - 1)
                        } else {
                            m.start
                        };
                        (m.name, start, m.end)
                    })
                    .collect();
                choose_flip(&mut rng, &candidates, *region, *bits, *page, *offset, *bit).and_then(
                    |FlipChoice { region: ri, page: pi, flips }| {
                        let (name, start, _) = &candidates[ri];
                        let page_addr = start + pi * PAGE;
                        let (mut before, mut after, mut bits_out) = (Vec::new(), Vec::new(), Vec::new());
                        for (off, b) in &flips {
                            let addr = page_addr + off;
                            let mut byte = [0u8];
                            read_remote_exact(self.pid, addr, &mut byte).map_err(|e| e.to_string())?;
                            let flipped = [byte[0] ^ (1 << b)];
                            write_remote(self.pid, addr, &flipped).map_err(|e| e.to_string())?;
                            before.push(byte[0]);
                            after.push(flipped[0]);
                            bits_out.push(*b);
                        }
                        Ok(InjectedWhat::Memory {
                            region: name.clone(),
                            region_start: *start,
                            page: pi,
                            addr: page_addr + flips[0].0,
                            bits: bits_out,
                            before,
                            after,
                        })
                    },
                )
            }
            Target::Reg { reg, bit } => (|| {
                let mut regs = ptrace::getregs(self.pid).map_err(|e| e.to_string())?;
                let name = reg
                    .clone()
                    .unwrap_or_else(|| REGISTERS[rng.below(REGISTERS.len() as u64) as usize].to_string());
                let bit = bit.unwrap_or_else(|| rng.below(64) as u8);
                let slot = register(&mut regs, &name).ok_or_else(|| format!("unknown register {name}"))?;
                let before = *slot;
                *slot ^= 1 << bit;
                let after = *slot;
                ptrace::setregs(self.pid, regs).map_err(|e| e.to_string())?;
                Ok(InjectedWhat::Register { reg: name, bit, before, after })
            })(),
        };
        match result {
            Ok(what) => {
                self.snap.injected = Some(Injected { replica, at_ms, seed: spec.seed, what });
                self.snap.inject_error = None;
            }
            Err(e) => self.snap.inject_error = Some(e),
        }
    }

    /// Whether the same fault keeps arriving at the same instruction without the program running.
    fn fault_loop(&mut self, tid: Pid, _sig: Signal) -> FaultLoop {
        let rip = ptrace::getregs(tid).map(|r| r.rip).unwrap_or(0);
        let count = match self.last_fault {
            Some((t, r, n)) if t == tid && r == rip => n + 1,
            _ => 1,
        };
        self.last_fault = Some((tid, rip, count));
        match count {
            0..=16 => FaultLoop::No,
            17 => FaultLoop::Break,
            _ => FaultLoop::Kill,
        }
    }

    /// With PR_SET_TSC(SIGSEGV), rdtsc/rdtscp fault: answer them from a counter every replica shares.
    fn emulate_rdtsc(&mut self, tid: Pid) -> bool {
        let Ok(mut regs) = ptrace::getregs(tid) else { return false };
        let Ok(word) = ptrace::read(tid, regs.rip as ptrace::AddressType) else { return false };
        let code = (word as u64).to_le_bytes();
        let len = match code {
            [0x0f, 0x31, ..] => 2,
            [0x0f, 0x01, 0xf9, ..] => 3,
            _ => return false,
        };
        self.tsc += 1000;
        regs.rax = self.tsc & 0xffff_ffff;
        regs.rdx = self.tsc >> 32;
        if len == 3 {
            regs.rcx = 0;
        }
        regs.rip += len;
        ptrace::setregs(tid, regs).is_ok()
    }
}

fn register<'a>(regs: &'a mut libc::user_regs_struct, name: &str) -> Option<&'a mut u64> {
    Some(match name {
        "rax" => &mut regs.rax,
        "rbx" => &mut regs.rbx,
        "rcx" => &mut regs.rcx,
        "rdx" => &mut regs.rdx,
        "rsi" => &mut regs.rsi,
        "rdi" => &mut regs.rdi,
        "rbp" => &mut regs.rbp,
        "rsp" => &mut regs.rsp,
        "rip" => &mut regs.rip,
        "r8" => &mut regs.r8,
        "r9" => &mut regs.r9,
        "r10" => &mut regs.r10,
        "r11" => &mut regs.r11,
        "r12" => &mut regs.r12,
        "r13" => &mut regs.r13,
        "r14" => &mut regs.r14,
        "r15" => &mut regs.r15,
        _ => return None,
    })
}

/// Set by SIGALRM: the time of a timed injection has come.
static ALARM: AtomicBool = AtomicBool::new(false);
/// The traced replica, for the SIGALRM handler (0 until the tracer has attached).
static TRACEE: AtomicI32 = AtomicI32::new(0);
/// The handler already interrupted the replica (PTRACE_INTERRUPT).
static STOP_SENT: AtomicBool = AtomicBool::new(false);

/// Stops the replica right away: the tracer may be blocked in waitpid on a replica that computes without
/// a single system call, so it could not do this itself in time. PTRACE_INTERRUPT, not SIGSTOP: the stop
/// is the tracer's, and the program never sees a signal it did not get without --mem.
extern "C" fn on_alarm(_: libc::c_int) {
    let pid = TRACEE.load(Ordering::SeqCst);
    // SAFETY: ptrace(2) is a plain system call, safe in a handler; this handler runs on the tracer thread.
    if pid > 0 && unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0) } == 0 {
        STOP_SENT.store(true, Ordering::SeqCst);
    }
    ALARM.store(true, Ordering::SeqCst);
}

/// SIGALRM after `d`, without SA_RESTART, so the tracer's waitpid returns EINTR at that moment.
fn arm_alarm(d: std::time::Duration) -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(SigHandler::Handler(on_alarm), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGALRM, &action) }.context("installing the SIGALRM handler")?;
    let micros = d.as_micros().max(1);
    let it = libc::itimerval {
        it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
        it_value: libc::timeval { tv_sec: (micros / 1_000_000) as i64, tv_usec: (micros % 1_000_000) as i64 },
    };
    // SAFETY: a valid itimerval on the stack; no old value requested.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) } != 0 {
        bail!("setitimer: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The injection meant for this replica in the voted round, from TMR_INJECT, which is removed from the
/// environment either way so the command never sees it.
fn take_inject_spec() -> Option<InjectSpec> {
    let text = std::env::var(crate::inject::ENV).ok()?;
    std::env::remove_var(crate::inject::ENV);
    let me: usize = std::env::var("TMR_REPLICA").ok()?.parse().ok()?;
    let round: usize = std::env::var("TMR_ROUND").ok()?.parse().ok()?;
    // Several specs (a multi-fault campaign trial) each name their replica.
    crate::inject::spec_for(&text, me).filter(|_| round == 0)
}

/// A seccomp filter that stops the `trapped` syscalls (getrandom, input replication's) for the tracer
/// and allows everything else.
fn trap_filter(trapped: &[u32]) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let n = trapped.len() as u8;
    let mut prog = vec![
        f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        f(JEQ_K, 0, n + 1, AUDIT_ARCH_X86_64),
        f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
    ];
    // The i-th comparison jumps over the remaining ones to RET_TRACE.
    for (i, &nr) in trapped.iter().enumerate() {
        prog.push(f(JEQ_K, n - i as u8, 0, nr));
    }
    prog.push(f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    prog.push(f(RET_K, 0, 0, libc::SECCOMP_RET_TRACE));
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn determinization_lists_round_trip() {
        assert_eq!(Det::parse("all").unwrap(), Det { tsc: true, ..Det::default() });
        assert_eq!(Det::parse(&Det::default().to_list()).unwrap(), Det::default());
        assert_eq!(Det::parse("none").unwrap().to_list(), "none");
        let d = Det::parse("aslr,tsc").unwrap();
        assert!(d.aslr && d.tsc && !d.getrandom);
        assert!(Det::parse("aslr,bogus").is_err());
        assert!(!Det::parse("all").unwrap().strict_threads, "a policy, not a step: not in all");
        let strict = Det::parse("aslr,strict-threads").unwrap();
        assert!(strict.strict_threads && Det::parse(&strict.to_list()).unwrap() == strict);
    }
}
