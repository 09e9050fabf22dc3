//! `--fork`: exec the command once, stop it at its entry point (AT_ENTRY, after the dynamic loader has
//! mapped and relocated everything and run the libraries' constructors, before the program's own code),
//! and make it fork the other replicas there, so that they start from byte-identical memory by
//! construction instead of by determinization.
//!
//! tmr itself is the tracer here, for a few milliseconds: the original was spawned with PTRACE_TRACEME
//! (`ChildSetup::trace_me`), so its exec stops it. tmr plants an int3 at AT_ENTRY, and once it is hit
//! writes `syscall; int3` there and injects system calls one at a time (set the registers, continue,
//! wait for the int3): `clone(CLONE_PARENT|SIGCHLD)` once per extra replica, so that each copy is tmr's
//! own child (waited on, rusage'd, killed by group exactly like an exec'd replica); then, in each copy,
//! `dup2` of its own pipes (passed down without CLOEXEC at whatever numbers tmr had) onto 0/1/2, `close`
//! of every passed pipe, `setpgid(0, 0)` and `PR_SET_PDEATHSIG` (fork clears it). Its `TMR_REPLICA`
//! digit is rewritten in place (same length: at most 10 replicas), and glibc's cached thread id in its
//! TCB is set to its own pid (glibc's fork does that through CLONE_CHILD_SETTID; a raw clone does not).
//! Last, the original bytes and registers are put back in every process and each is detached.
//!
//! With `--mem` the original runs under the memory monitor, whose tracer does the same at the entry
//! point ([`plant`], [`fork_in_tracer`]; the plan travels in [`ENV`]), then leaves each copy in a
//! SIGSTOP group-stop and reports its pid to tmr, which starts a tracer of its own for it
//! (`tmr __tmr-monitor --adopt PID CALLS`, `monitor.rs`): that one seizes it, sends SIGCONT and traces
//! it to its exit stop like any replica's tracer. A copy's tracer starts with the original's count of
//! answered getrandom calls, but not its place in the clock/urandom answer log (the loader reads
//! neither).
//!
//! Must not: decide anything about the run (the harness turns the pids into ordinary replicas), or
//! leave a process behind on failure (everything it made is SIGKILLed and reaped before it returns an
//! error; PTRACE_O_EXITKILL covers tmr's own death meanwhile). tmr's waits are bounded by [`DEADLINE`];
//! the monitor's tracer blocks, as it does for every stop of its replica.

use super::remote::{read_remote_exact, write_remote};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const AT_ENTRY: u64 = 9;
/// How long the loader may take to reach the entry point, and each injected call to return.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// `syscall; int3`: the trampoline written at the entry point while calls are injected.
const TRAMPOLINE: [u8; 3] = [0x0f, 0x05, 0xcc];

/// One replica to fork off the original: its number and the fds (in the original, after exec) that
/// become its stdin, stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub replica: usize,
    pub stdio: [RawFd; 3],
}

pub enum Forked {
    /// The extra replicas' pids, in the order they were asked for; each runs in its own process group.
    Started(Vec<Pid>),
    /// The command ended before its entry point (its exec failed, or the loader gave up). It is left
    /// unreaped for the harness, which starts the other replicas the ordinary way.
    Ended,
}

/// A process tmr is injecting calls into, and a signal that arrived meanwhile, delivered at detach.
struct Tracee {
    pid: Pid,
    pending: Option<Signal>,
}

/// The entry point, its original 8 bytes, and the registers there (identical in every copy).
struct Site {
    entry: u64,
    word: i64,
    regs: libc::user_regs_struct,
}

/// Stop `original` (spawned with `trace_me`, its exec stop pending) at its entry point and fork the
/// `extras` there. `wake` is readable when a SIGCHLD arrived (tmr's signal self-pipe), `drain` empties it.
pub fn fork_after_load(
    original: Pid,
    extras: &[Extra],
    replica_of_original: usize,
    wake: BorrowedFd,
    drain: &dyn Fn(),
) -> Result<Forked> {
    let waiter = Waiter { wake, drain, deadline: Instant::now() + DEADLINE };
    let mut made: Vec<Pid> = Vec::new();
    let result = run(original, extras, replica_of_original, &waiter, &mut made);
    if result.is_err() {
        // Nothing half made survives: the original and every copy are killed and reaped (a stopped tracee
        // dies of SIGKILL too).
        for &pid in made.iter().chain(std::iter::once(&original)) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
        for &pid in &made {
            let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
        }
        // On failure the harness never learns of the original (it makes a replica of it only on
        // success), so it is reaped here too.
        let _ = waitpid(original, Some(WaitPidFlag::__WALL));
    }
    result
}

fn run(
    original: Pid,
    extras: &[Extra],
    replica_of_original: usize,
    w: &Waiter,
    made: &mut Vec<Pid>,
) -> Result<Forked> {
    // The exec stop (a plain SIGTRAP under PTRACE_TRACEME), or the child's exit when exec failed.
    match w.stop(original)? {
        None => return Ok(Forked::Ended),
        Some(WaitStatus::Stopped(_, Signal::SIGTRAP)) => {}
        Some(other) => bail!("unexpected first stop of the command: {other:?}"),
    }
    ptrace::setoptions(original, Options::PTRACE_O_TRACEFORK | Options::PTRACE_O_EXITKILL)
        .context("setting the ptrace options of the command")?;
    let planted = plant(original)?;
    // Run the loader until the breakpoint; signals it gets on the way are delivered as usual.
    let mut deliver = None;
    let regs = loop {
        ptrace::cont(original, deliver.take()).context("resuming the command's loader")?;
        match w.stop(original)? {
            None => return Ok(Forked::Ended),
            Some(WaitStatus::Stopped(_, Signal::SIGTRAP)) => {
                let regs = ptrace::getregs(original).context("reading the registers at the entry point")?;
                if planted.hit(&regs) {
                    break regs;
                }
            }
            Some(WaitStatus::Stopped(_, sig)) => deliver = Some(sig),
            Some(_) => {}
        }
    };
    let mut me = Tracee { pid: original, pending: None };
    let plan = ForkPlan { report_fd: -1, original_replica: replica_of_original, extras: extras.to_vec() };
    let children = fork_at(&mut me, &planted.site(regs), w, &plan, made, false)?;
    ptrace::detach(original, me.pending).context("detaching the command")?;
    Ok(Forked::Started(children))
}

/// The entry point with an int3 planted on it, to be hit once the loader is done.
pub struct Planted {
    entry: u64,
    word: i64,
}

impl Planted {
    /// Whether a SIGTRAP stop with these registers is the planted breakpoint.
    pub fn hit(&self, regs: &libc::user_regs_struct) -> bool {
        regs.rip == self.entry + 1
    }

    fn site(&self, regs: libc::user_regs_struct) -> Site {
        Site { entry: self.entry, word: self.word, regs: libc::user_regs_struct { rip: self.entry, ..regs } }
    }
}

/// At the exec stop: find AT_ENTRY and plant an int3 there.
pub fn plant(pid: Pid) -> Result<Planted> {
    let entry = entry_point(pid)?;
    let word = ptrace::read(pid, entry as ptrace::AddressType)
        .with_context(|| format!("reading the entry point at {entry:#x}"))?;
    poke(pid, entry, with_bytes(word, &[0xcc]))?;
    Ok(Planted { entry, word })
}

/// In the memory monitor's tracer (`--fork --mem`), stopped at the planted breakpoint: fork the plan's
/// replicas, set them up, and leave each detached in a SIGSTOP group-stop for a tracer of its own
/// (`tmr __tmr-monitor --adopt PID`) to seize and continue. The original is left stopped and whole (code
/// and registers restored) for the caller to resume. On failure every copy made is killed and the
/// original is restored as far as possible; it then runs on as the only replica of its group.
pub fn fork_in_tracer(pid: Pid, planted: &Planted, plan: &ForkPlan) -> Result<Vec<Pid>> {
    let regs = ptrace::getregs(pid).context("reading the registers at the entry point")?;
    let site = planted.site(regs);
    let mut me = Tracee { pid, pending: None };
    let mut made = Vec::new();
    let result = fork_at(&mut me, &site, &Blocking, plan, &mut made, true);
    if result.is_err() {
        for &copy in &made {
            let _ = nix::sys::signal::kill(copy, Signal::SIGKILL);
            let _ = waitpid(copy, Some(WaitPidFlag::__WALL));
        }
        let _ = restore(pid, &site);
    }
    if let Some(sig) = me.pending {
        let _ = nix::sys::signal::kill(pid, sig);
    }
    result
}

/// Fork the plan's replicas from `me`, stopped at the entry point `site`, and set each up; restore
/// code and registers everywhere. Each copy is detached: running on (or, with `handover`, in a SIGSTOP
/// group-stop for another tracer). `me` stays attached and stopped.
fn fork_at(
    me: &mut Tracee,
    site: &Site,
    w: &dyn Stops,
    plan: &ForkPlan,
    made: &mut Vec<Pid>,
    handover: bool,
) -> Result<Vec<Pid>> {
    poke(me.pid, site.entry, with_bytes(site.word, &TRAMPOLINE))?;
    let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as u64;
    let mut children = Vec::new();
    for extra in &plan.extras {
        let (ret, child) = inject(me, site, w, libc::SYS_clone, [flags, 0, 0, 0, 0, 0])?;
        if ret < 0 {
            bail!("the injected fork failed: {}", Errno::from_raw(-ret as i32));
        }
        let child = child.unwrap_or(Pid::from_raw(ret as i32));
        made.push(child);
        // The auto-attached copy starts with a stop of its own.
        if w.stop(child)?.is_none() {
            bail!("replica {} ended right after the fork", extra.replica);
        }
        // Its parent (tmr, when tmr traces) sets the group too, so no signal sent from now on misses it.
        let _ = nix::unistd::setpgid(child, child);
        let mut t = Tracee { pid: child, pending: None };
        set_up_copy(&mut t, site, w, extra, plan, me.pid)?;
        children.push(t);
    }
    for extra in &plan.extras {
        for fd in extra.stdio {
            call(me, site, w, libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
        }
    }
    for t in children.iter().chain(std::iter::once(&*me)) {
        restore(t.pid, site)?;
    }
    for t in &children {
        let sig = if handover { Some(Signal::SIGSTOP) } else { t.pending };
        ptrace::detach(t.pid, sig).with_context(|| format!("detaching pid {}", t.pid))?;
    }
    Ok(children.iter().map(|t| t.pid).collect())
}

/// What the memory monitor's tracer is asked to fork (`--fork --mem`), passed in [`ENV`]: the fd to
/// report the copies on, the original's replica number, and each copy's number and stdio fds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkPlan {
    pub report_fd: RawFd,
    pub original_replica: usize,
    pub extras: Vec<Extra>,
}

/// The environment variable that carries a [`ForkPlan`] to the monitor (removed before the command runs).
pub const ENV: &str = "TMR_FORK";

impl ForkPlan {
    /// `REPORT_FD ORIGINAL R:IN,OUT,ERR ...`
    pub fn to_env(&self) -> String {
        let mut s = format!("{} {}", self.report_fd, self.original_replica);
        for e in &self.extras {
            s.push_str(&format!(" {}:{},{},{}", e.replica, e.stdio[0], e.stdio[1], e.stdio[2]));
        }
        s
    }

    pub fn parse(text: &str) -> Option<ForkPlan> {
        let mut words = text.split_whitespace();
        let report_fd = words.next()?.parse().ok()?;
        let original_replica = words.next()?.parse().ok()?;
        let extras = words
            .map(|w| {
                let (r, fds) = w.split_once(':')?;
                let fds: Vec<RawFd> = fds.split(',').map(|f| f.parse().ok()).collect::<Option<_>>()?;
                Some(Extra { replica: r.parse().ok()?, stdio: fds.try_into().ok()? })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ForkPlan { report_fd, original_replica, extras })
    }

    /// Every fd the plan passes down (the copies' stdio).
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.extras.iter().flat_map(|e| e.stdio)
    }
}

/// Make a fresh copy into replica `extra.replica`: its own stdio, no other replica's pipes, its own
/// process group, death with tmr, its own number and thread id.
fn set_up_copy(
    t: &mut Tracee,
    site: &Site,
    w: &dyn Stops,
    extra: &Extra,
    plan: &ForkPlan,
    original: Pid,
) -> Result<()> {
    for (target, fd) in extra.stdio.iter().enumerate() {
        call(t, site, w, libc::SYS_dup2, [*fd as u64, target as u64, 0, 0, 0, 0])?;
    }
    for fd in plan.fds() {
        call(t, site, w, libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
    }
    call(t, site, w, libc::SYS_setpgid, [0; 6])?;
    call(t, site, w, libc::SYS_prctl, [libc::PR_SET_PDEATHSIG as u64, libc::SIGKILL as u64, 0, 0, 0, 0])?;
    renumber(t.pid, plan.original_replica, extra.replica)?;
    fix_tid(t.pid, site.regs.fs_base, original);
    Ok(())
}

/// An injected call that must succeed.
fn call(t: &mut Tracee, site: &Site, w: &dyn Stops, nr: i64, args: [u64; 6]) -> Result<i64> {
    let (ret, _) = inject(t, site, w, nr, args)?;
    if ret < 0 {
        bail!("injected system call {nr} failed in pid {}: {}", t.pid, Errno::from_raw(-ret as i32));
    }
    Ok(ret)
}

/// Run one system call in `t` through the trampoline; returns its result and, for a fork, the new pid
/// reported by the fork event.
fn inject(t: &mut Tracee, site: &Site, w: &dyn Stops, nr: i64, args: [u64; 6]) -> Result<(i64, Option<Pid>)> {
    let regs = libc::user_regs_struct {
        rax: nr as u64,
        rdi: args[0],
        rsi: args[1],
        rdx: args[2],
        r10: args[3],
        r8: args[4],
        r9: args[5],
        rip: site.entry,
        orig_rax: u64::MAX,
        ..site.regs
    };
    ptrace::setregs(t.pid, regs).context("setting the registers of an injected call")?;
    ptrace::cont(t.pid, None)?;
    let mut child = None;
    loop {
        match w.stop(t.pid)? {
            None => bail!("pid {} ended during an injected system call", t.pid),
            Some(WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_FORK)) => {
                child = Some(Pid::from_raw(ptrace::getevent(t.pid)? as i32));
            }
            Some(WaitStatus::Stopped(_, Signal::SIGTRAP)) => break,
            // A signal sent meanwhile is kept for the detach, when the program runs again.
            Some(WaitStatus::Stopped(_, sig)) => t.pending = Some(sig),
            Some(_) => {}
        }
        ptrace::cont(t.pid, None)?;
    }
    let after = ptrace::getregs(t.pid)?;
    if after.rip != site.entry + TRAMPOLINE.len() as u64 {
        bail!(
            "an injected system call in pid {} stopped at {:#x}, not after the trampoline",
            t.pid,
            after.rip
        );
    }
    Ok((after.rax as i64, child))
}

/// Put the entry point's bytes and the registers back, so the program starts as if nothing happened.
fn restore(pid: Pid, site: &Site) -> Result<()> {
    poke(pid, site.entry, site.word)?;
    ptrace::setregs(pid, site.regs).with_context(|| format!("restoring the registers of pid {pid}"))
}

fn poke(pid: Pid, addr: u64, word: i64) -> Result<()> {
    ptrace::write(pid, addr as ptrace::AddressType, word)
        .with_context(|| format!("writing the code at {addr:#x} of pid {pid}"))
}

/// `word` with its first bytes replaced (little-endian: the bytes at the lowest addresses).
fn with_bytes(word: i64, bytes: &[u8]) -> i64 {
    let mut b = word.to_le_bytes();
    b[..bytes.len()].copy_from_slice(bytes);
    i64::from_le_bytes(b)
}

fn entry_point(pid: Pid) -> Result<u64> {
    let auxv = std::fs::read(format!("/proc/{pid}/auxv")).context("reading the command's auxv")?;
    auxv_entry(&auxv).context("the command has no AT_ENTRY in its auxv: --fork cannot find where it starts")
}

fn auxv_entry(auxv: &[u8]) -> Option<u64> {
    auxv.chunks_exact(16).find_map(|pair| {
        let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
        let val = u64::from_ne_bytes(pair[8..].try_into().ok()?);
        (key == AT_ENTRY && val != 0).then_some(val)
    })
}

/// Rewrite the digit of `TMR_REPLICA=` in the copy's environment strings (the stack, between
/// /proc/PID/stat's env_start and env_end), so the copy sees its own number as an exec'd replica does.
fn renumber(pid: Pid, from: usize, to: usize) -> Result<()> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/PID/stat")?;
    let Some((start, end)) = env_range(&stat) else { bail!("no environment range in /proc/{pid}/stat") };
    let mut env = vec![0u8; (end - start) as usize];
    read_remote_exact(pid, start, &mut env)?;
    let Some(at) = digit_offset(&env, from) else { return Ok(()) };
    let digit = [b'0' + to as u8];
    write_remote(pid, start + at as u64, &digit)
}

/// /proc/PID/stat fields 50 and 51 (env_start, env_end), counted after the command name's ')'.
fn env_range(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let start = fields.get(47)?.parse().ok()?;
    let end: u64 = fields.get(48)?.parse().ok()?;
    (end > start && end - start < (1 << 24)).then_some((start, end))
}

/// Where the one-digit value `from` of `TMR_REPLICA=` sits in a block of NUL-separated `K=V` strings.
fn digit_offset(env: &[u8], from: usize) -> Option<usize> {
    let key = b"TMR_REPLICA=";
    let want = format!("{from}");
    let mut at = 0;
    for s in env.split(|&b| b == 0) {
        if s.strip_prefix(key.as_slice()) == Some(want.as_bytes()) {
            return Some(at + key.len());
        }
        at += s.len() + 1;
    }
    None
}

/// glibc caches the thread id in the TCB (`struct pthread`'s tid, at the thread pointer); glibc's fork
/// updates it, a raw clone does not. Where the original's pid sits among the TCB's first words, the copy
/// gets its own. No hit (another libc, a static binary without TLS) changes nothing.
fn fix_tid(pid: Pid, fs_base: u64, original: Pid) {
    if fs_base == 0 {
        return;
    }
    let mut tcb = vec![0u8; 0x400];
    if read_remote_exact(pid, fs_base, &mut tcb).is_err() {
        return;
    }
    let old = original.as_raw().to_ne_bytes();
    let hits: Vec<usize> = (0..tcb.len()).step_by(4).filter(|&i| tcb[i..i + 4] == old).collect();
    if hits.len() == 1 {
        let _ = write_remote(pid, fs_base + hits[0] as u64, &pid.as_raw().to_ne_bytes());
    }
}

/// How the injector waits for a tracee's next stop: the consumed stop, or `None` once it has ended.
trait Stops {
    fn stop(&self, pid: Pid) -> Result<Option<WaitStatus>>;
}

/// In the memory monitor's tracer, which does nothing but trace, a plain blocking wait.
struct Blocking;

impl Stops for Blocking {
    fn stop(&self, pid: Pid) -> Result<Option<WaitStatus>> {
        loop {
            match waitpid(pid, Some(WaitPidFlag::__WALL)) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(None),
                other => return other.map(Some).with_context(|| format!("waiting for pid {pid}")),
            }
        }
    }
}

/// Bounded waits for one tracee's next stop.
struct Waiter<'a> {
    wake: BorrowedFd<'a>,
    drain: &'a dyn Fn(),
    deadline: Instant,
}

impl Stops for Waiter<'_> {
    /// The next stop of `pid` (consumed), or `None` once it has ended (left unreaped). Waits on tmr's
    /// SIGCHLD wake-up pipe, re-checking every few milliseconds in case a wake-up was drained elsewhere.
    fn stop(&self, pid: Pid) -> Result<Option<WaitStatus>> {
        let peek = WaitPidFlag::WEXITED
            | WaitPidFlag::WSTOPPED
            | WaitPidFlag::WNOHANG
            | WaitPidFlag::WNOWAIT
            | WaitPidFlag::__WALL;
        loop {
            match waitid(Id::Pid(pid), peek) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(None),
                Ok(_) => loop {
                    match waitpid(pid, Some(WaitPidFlag::__WALL)) {
                        Err(Errno::EINTR) => continue,
                        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                            bail!("pid {pid} was reaped while tmr forked replicas from it")
                        }
                        other => return other.map(Some).with_context(|| format!("waiting for pid {pid}")),
                    }
                },
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).with_context(|| format!("waiting for pid {pid}")),
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("--fork: pid {pid} did not stop within {} s", DEADLINE.as_secs());
            }
            let ms = left.min(Duration::from_millis(5)).as_millis() as u16;
            let mut fds = [PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(Errno::EINTR) => (self.drain)(),
                Err(e) => return Err(e).context("poll"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_entry_point_in_an_auxv() {
        let mut auxv = Vec::new();
        for (k, v) in [(6u64, 4096u64), (AT_ENTRY, 0x401000), (0, 0)] {
            auxv.extend_from_slice(&k.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(auxv_entry(&auxv), Some(0x401000));
        assert_eq!(auxv_entry(&auxv[..16]), None);
    }

    #[test]
    fn finds_the_replica_digit_only_in_its_own_variable() {
        let env = b"XTMR_REPLICA=0\0TMR_REPLICAS=3\0TMR_REPLICA=0\0";
        assert_eq!(digit_offset(env, 0), Some(15 + 15 + 12));
        assert_eq!(digit_offset(env, 1), None);
        assert_eq!(digit_offset(b"TMR_REPLICA=01\0", 0), None);
    }

    #[test]
    fn reads_the_environment_range_after_an_odd_command_name() {
        let mut fields: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        fields[47] = "1000".into();
        fields[48] = "2000".into();
        let stat = format!("42 (a) b) c) {}", fields.join(" "));
        assert_eq!(env_range(&stat), Some((1000, 2000)));
    }

    #[test]
    fn a_fork_plan_survives_the_environment() {
        let plan = ForkPlan {
            report_fd: 9,
            original_replica: 0,
            extras: vec![
                Extra { replica: 1, stdio: [10, 11, 12] },
                Extra { replica: 2, stdio: [13, 14, 15] },
            ],
        };
        assert_eq!(ForkPlan::parse(&plan.to_env()), Some(plan.clone()));
        assert_eq!(plan.fds().count(), 6);
        assert_eq!(ForkPlan::parse("9 0 1:10,11"), None);
    }

    #[test]
    fn patches_the_lowest_bytes_of_a_word() {
        let w = i64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(with_bytes(w, &TRAMPOLINE).to_le_bytes(), [0x0f, 0x05, 0xcc, 4, 5, 6, 7, 8]);
    }
}
