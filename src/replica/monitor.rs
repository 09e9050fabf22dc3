//! The per-replica monitor for `--mem` (and `--inject`): tmr re-executes itself as
//! `tmr __tmr-monitor [OPTIONS] -- PATH ARGV...`; the monitor starts the real replica under ptrace,
//! determinizes it (ASLR off, AT_RANDOM pinned, getrandom answered with fixed bytes, rdtsc optionally
//! trapped), hashes its writable memory at the exit stop, writes the snapshot as JSON to fd 3, and exits
//! the way the replica did. Process isolation as the lecture teaches it: if reading one replica's memory
//! crashes, only that monitor dies, and replicas are hashed in parallel because each has its own monitor.

use std::ffi::{CString, OsString};
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStringExt;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::memsnap::{hash_memory, writable_mappings, Masks};
use crate::inject::{
    choose_flip, Candidate, FlipChoice, InjectSpec, Injected, InjectedWhat, Rng, Target, REGISTERS,
};
use crate::memvote::{MemSnapshot, PAGE};

pub const ARG: &str = "__tmr-monitor";
/// The fd on which the monitor writes its snapshot.
pub const SNAPSHOT_FD: i32 = 3;
const AT_RANDOM: u64 = 25;
/// Bytes every replica sees as its AT_RANDOM (stack canary and pointer guard seed).
const PINNED_RANDOM: [u8; 16] = *b"tmr-pinned-bytes";

/// Determinization steps, each switchable for diagnosis (`--mem-det`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Det {
    pub aslr: bool,
    pub at_random: bool,
    pub rseq: bool,
    pub getrandom: bool,
    pub tid: bool,
    pub stack: bool,
    pub tsc: bool,
}

impl Default for Det {
    fn default() -> Self {
        Det { aslr: true, at_random: true, rseq: true, getrandom: true, tid: true, stack: true, tsc: false }
    }
}

impl Det {
    pub const NAMES: [&'static str; 7] = ["aslr", "at-random", "rseq", "getrandom", "tid", "stack", "tsc"];

    pub fn parse(list: &str) -> Result<Det, String> {
        let mut d = Det {
            aslr: false,
            at_random: false,
            rseq: false,
            getrandom: false,
            tid: false,
            stack: false,
            tsc: false,
        };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
            match item {
                "all" => d = Det { tsc: true, ..Det::default() },
                "aslr" => d.aslr = true,
                "at-random" => d.at_random = true,
                "rseq" => d.rseq = true,
                "getrandom" => d.getrandom = true,
                "tid" => d.tid = true,
                "stack" => d.stack = true,
                "tsc" => d.tsc = true,
                other => {
                    return Err(format!(
                        "unknown determinization step '{other}': use {}, all or none",
                        Det::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(d)
    }

    pub fn to_list(self) -> String {
        let on = [self.aslr, self.at_random, self.rseq, self.getrandom, self.tid, self.stack, self.tsc];
        let names: Vec<&str> = Det::NAMES.iter().zip(on).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}

/// Entry point of the monitor process. Returns only on a usage error; otherwise it exits like the replica.
pub fn main(args: &[OsString]) -> i32 {
    if let Err(e) = launched_by_tmr() {
        eprintln!("tmr: {ARG} is tmr's internal memory monitor and runs only under tmr --mem/--inject: {e}");
        return 125;
    }
    let mut det = Det::default();
    let mut i = 0;
    while i < args.len() && args[i] != "--" {
        if args[i] == "--det" && i + 1 < args.len() {
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
    let command = &args[(i + 1).min(args.len())..];
    if command.len() < 2 {
        eprintln!("tmr monitor: usage: {ARG} [--det LIST] -- PATH ARGV0 [ARGS...]");
        return 125;
    }
    // SAFETY: fd 3 was set up by tmr for this purpose (dup2 before exec); we own it from here on.
    let mut out = unsafe { std::fs::File::from_raw_fd(SNAPSHOT_FD) };
    let _ = nix::fcntl::fcntl(SNAPSHOT_FD, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    let (status, snap) = match run(command, det) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tmr monitor: {e:#}");
            return 125;
        }
    };
    let _ = out.write_all(&serde_json::to_vec(&snap).expect("a snapshot serialises"));
    drop(out);
    mirror(status)
}

/// Was this monitor started by tmr for a replica? tmr hands it an unlinked snapshot file as fd 3 and keeps
/// that file open itself; run by hand (or by a replica), fd 3 is missing, a named file, or not tmr's.
/// Checked before anything runs, so a stray `tmr __tmr-monitor` neither runs a command under ptrace nor
/// writes JSON into whatever fd 3 happens to be.
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

fn run(command: &[OsString], det: Det) -> Result<(WaitStatus, MemSnapshot)> {
    let c = |s: &OsString| CString::new(s.clone().into_vec()).context("NUL in an argument");
    let path = c(&command[0])?;
    let argv: Vec<CString> = command[1..].iter().map(c).collect::<Result<_>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let inject = take_inject_spec();
    if let Some(spec) = &inject {
        if let crate::inject::When::After(d) = spec.when {
            arm_alarm(d)?;
        }
    }
    trace_child(&path, &argv_ptrs, det, inject)
}

fn trace_child(
    path: &CString,
    argv_ptrs: &[*const libc::c_char],
    det: Det,
    inject: Option<InjectSpec>,
) -> Result<(WaitStatus, MemSnapshot)> {
    let filter = getrandom_filter();
    let prog =
        libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };

    // SAFETY: the monitor is single-threaded; the child only makes raw syscalls on data prepared above
    // and then execs or `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork failed: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: freshly forked child of a single-threaded process; see `child`.
        unsafe { child(path, argv_ptrs, &prog, det) }
    }
    TRACEE.store(pid, Ordering::SeqCst);
    let pid = Pid::from_raw(pid);
    let mut snap = MemSnapshot { threads: 1, ..Default::default() };
    let stopped = waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WUNTRACED))?;
    let traced = matches!(stopped, WaitStatus::Stopped(_, Signal::SIGSTOP))
        && ptrace::setoptions(
            pid,
            Options::PTRACE_O_EXITKILL
                | Options::PTRACE_O_TRACEEXEC
                | Options::PTRACE_O_TRACEEXIT
                | Options::PTRACE_O_TRACESECCOMP
                | Options::PTRACE_O_TRACECLONE
                // Children inherit the seccomp filter and the rdtsc trap: they must be traced too, or their
                // getrandom fails with ENOSYS and their rdtsc kills them.
                | Options::PTRACE_O_TRACEFORK
                | Options::PTRACE_O_TRACEVFORK,
        )
        .is_ok();
    if !traced {
        // The kernel refused ptrace (a container's seccomp, yama): run without it, vote on outputs only.
        snap.unavailable = Some("ptrace is not permitted here; memory was not captured".into());
        let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
        loop {
            match waitpid(pid, None)? {
                s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok((s, snap)),
                _ => continue,
            }
        }
    }
    ptrace::cont(pid, None)?;
    let mut tracer = Tracer {
        pid,
        det,
        getrandom_calls: 0,
        tsc: 0,
        snap,
        saw_exit_stop: false,
        saw_glibc: false,
        inject,
        stop_requested: false,
        started: Instant::now(),
        last_fault: None,
        forced: None,
    };
    let status = tracer.trace()?;
    if let Some(spec) = &tracer.inject {
        tracer.snap.inject_error.get_or_insert_with(|| match spec.when {
            crate::inject::When::After(d) => {
                format!("the replica ended before the injection time ({:.1} ms)", d.as_secs_f64() * 1e3)
            }
            crate::inject::When::Exit => "the replica was killed before its exit stop".into(),
        });
    }
    let mut snap = tracer.snap;
    if !tracer.saw_exit_stop && snap.unavailable.is_none() {
        snap.unavailable =
            Some("the replica was killed before its exit stop; memory was not captured".into());
    }
    if det.rseq && !tracer.saw_glibc {
        snap.notes
            .push("no glibc mapped (static or non-glibc program): the rseq tunable had no effect".into());
    }
    if snap.threads > 1 {
        snap.notes.push(format!(
            "multithreaded ({} threads): thread scheduling can make heaps differ between replicas",
            snap.threads
        ));
    }
    if det.getrandom && tracer.getrandom_calls > 0 {
        snap.notes.push(format!("answered {} getrandom call(s) with fixed bytes", tracer.getrandom_calls));
    }
    Ok((status, snap))
}

struct Tracer {
    pid: Pid,
    det: Det,
    getrandom_calls: u64,
    tsc: u64,
    snap: MemSnapshot,
    saw_exit_stop: bool,
    saw_glibc: bool,
    /// A fault still to inject into this replica.
    inject: Option<InjectSpec>,
    /// tmr sent the replica SIGSTOP for a timed injection and waits for that stop.
    stop_requested: bool,
    started: Instant,
    /// The last fault delivered (thread, rip) and how often in a row.
    last_fault: Option<(Pid, u64, u32)>,
    /// A fault that looped and was turned into the replica's death.
    forced: Option<Signal>,
}

fn is_fault(s: Signal) -> bool {
    matches!(s, Signal::SIGSEGV | Signal::SIGBUS | Signal::SIGILL | Signal::SIGFPE)
}

impl Tracer {
    fn trace(&mut self) -> Result<WaitStatus> {
        loop {
            // The SIGALRM handler already sent the SIGSTOP; from here on, its stop is the injection point.
            if ALARM.swap(false, Ordering::SeqCst) && self.inject.is_some() {
                self.stop_requested = true;
                if !STOP_SENT.load(Ordering::SeqCst) {
                    let _ = nix::sys::signal::kill(self.pid, Signal::SIGSTOP);
                }
            }
            let status = match waitpid(None, Some(WaitPidFlag::__WALL)) {
                Ok(s) => s,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("waitpid"),
            };
            match status {
                WaitStatus::Signaled(p, _, core) if p == self.pid && self.forced.is_some() => {
                    return Ok(WaitStatus::Signaled(p, self.forced.expect("checked"), core));
                }
                WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _) if p == self.pid => {
                    return Ok(status)
                }
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {}
                WaitStatus::PtraceEvent(tid, _, event) => {
                    match event {
                        libc::PTRACE_EVENT_EXEC => self.on_exec(),
                        libc::PTRACE_EVENT_SECCOMP => self.on_seccomp(tid),
                        libc::PTRACE_EVENT_CLONE if tid == self.pid => self.snap.threads += 1,
                        libc::PTRACE_EVENT_EXIT if tid == self.pid => self.on_exit(),
                        _ => {}
                    }
                    let _ = ptrace::cont(tid, None);
                }
                WaitStatus::Stopped(tid, sig) => {
                    let deliver = match sig {
                        // New threads start with a SIGSTOP of their own: not the program's signal.
                        Signal::SIGSTOP if tid != self.pid => None,
                        Signal::SIGSTOP if self.stop_requested => {
                            self.stop_requested = false;
                            if let Some(spec) = self.inject.take() {
                                self.inject_now(&spec);
                            }
                            None
                        }
                        Signal::SIGSEGV if self.det.tsc && self.emulate_rdtsc(tid) => None,
                        Signal::SIGTRAP => None,
                        s => Some(s),
                    };
                    if let Some(s) = deliver.filter(|s| is_fault(*s)) {
                        if self.fault_loop(tid, s) {
                            // The kernel keeps re-raising the fault without ever running the program (an
                            // unusable instruction pointer): end it the way the fault would have.
                            self.forced = Some(s);
                            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
                            continue;
                        }
                    }
                    let _ = ptrace::cont(tid, deliver);
                }
                _ => {}
            }
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
    /// replica and skip the real call.
    fn on_seccomp(&mut self, tid: Pid) {
        let Ok(mut regs) = ptrace::getregs(tid) else { return };
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
        self.saw_exit_stop = true;
        let started = Instant::now();
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)) {
            self.saw_glibc = maps.contains("libc.so") || maps.contains("libc-");
        }
        let regs = ptrace::getregs(self.pid).ok();
        if let Some(spec) = self.inject.take_if(|s| s.when == crate::inject::When::Exit) {
            self.inject_now(&spec);
        }
        let masks = Masks {
            rsp: regs.filter(|_| self.det.stack).map(|r| r.rsp),
            tid: regs.filter(|_| self.det.tid).map(|r| (self.pid.as_raw() as u32, r.fs_base)),
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
            Ok(what) => self.snap.injected = Some(Injected { replica, at_ms, seed: spec.seed, what }),
            Err(e) => self.snap.inject_error = Some(e),
        }
    }

    /// True when the same fault keeps arriving at the same instruction without the program running.
    fn fault_loop(&mut self, tid: Pid, _sig: Signal) -> bool {
        let rip = ptrace::getregs(tid).map(|r| r.rip).unwrap_or(0);
        let count = match self.last_fault {
            Some((t, r, n)) if t == tid && r == rip => n + 1,
            _ => 1,
        };
        self.last_fault = Some((tid, rip, count));
        count > 16
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

fn read_remote_exact(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<()> {
    let remote = [nix::sys::uio::RemoteIoVec { base: addr as usize, len: buf.len() }];
    let n = nix::sys::uio::process_vm_readv(pid, &mut [std::io::IoSliceMut::new(buf)], &remote)?;
    if n != buf.len() {
        bail!("short read from the replica");
    }
    Ok(())
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
/// The traced replica, for the SIGALRM handler (0 until it is forked).
static TRACEE: AtomicI32 = AtomicI32::new(0);
/// The handler sent the replica its SIGSTOP.
static STOP_SENT: AtomicBool = AtomicBool::new(false);

/// Stops the replica right away: the tracer may be blocked in waitpid on a replica that computes without
/// a single system call, so it could not do this itself in time.
extern "C" fn on_alarm(_: libc::c_int) {
    let pid = TRACEE.load(Ordering::SeqCst);
    // SAFETY: kill(2) is async-signal-safe.
    if pid > 0 && unsafe { libc::kill(pid, libc::SIGSTOP) } == 0 {
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
    let spec = InjectSpec::parse(&text).ok()?;
    let me: usize = std::env::var("TMR_REPLICA").ok()?.parse().ok()?;
    let round: usize = std::env::var("TMR_ROUND").ok()?.parse().ok()?;
    (spec.replica == Some(me) && round == 0).then_some(spec)
}

pub fn write_remote(pid: Pid, addr: u64, bytes: &[u8]) -> Result<()> {
    let remote = [nix::sys::uio::RemoteIoVec { base: addr as usize, len: bytes.len() }];
    let n = nix::sys::uio::process_vm_writev(pid, &[std::io::IoSlice::new(bytes)], &remote)?;
    if n != bytes.len() {
        bail!("short write into the replica");
    }
    Ok(())
}

/// A seccomp filter that stops getrandom(2) for the tracer and allows everything else.
fn getrandom_filter() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        f(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        f(JEQ_K, 0, 1, libc::SYS_getrandom as u32),
        f(RET_K, 0, 0, libc::SECCOMP_RET_TRACE),
        f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Runs in the monitor's forked child: only raw syscalls, then exec.
///
/// # Safety
/// Call only in a child just forked from the single-threaded monitor.
unsafe fn child(path: &CString, argv: &[*const libc::c_char], prog: &libc::sock_fprog, det: Det) -> ! {
    if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0 {
        if det.aslr {
            libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
        }
        if det.tsc {
            libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV);
        }
        // Wait here until the monitor has set its ptrace options (seccomp stops need them).
        libc::raise(libc::SIGSTOP);
        if det.getrandom {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, prog as *const libc::sock_fprog);
        }
    } else {
        libc::raise(libc::SIGSTOP);
    }
    libc::execv(path.as_ptr(), argv.as_ptr());
    libc::_exit(127)
}

/// End the monitor the way the replica ended, so tmr sees the replica's own status.
fn mirror(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => {
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: plain syscalls on values owned here; the process ends right after.
            unsafe {
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                libc::signal(sig as i32, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig as i32);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::raise(sig as i32);
            }
            128 + sig as i32
        }
        _ => 125,
    }
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
    }
}
