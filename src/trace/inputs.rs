//! Input replication in the tracer (`--mem-det clock,urandom`): the replica's nondeterministic inputs
//! are answered from the run's shared answer log ([`super::replog`]), so every replica of every round
//! reads the same clock and the same random bytes.
//!
//! - **clock**: at every exec stop the auxiliary vector's `AT_SYSINFO_EHDR` is turned into `AT_IGNORE`,
//!   so the C library (glibc, musl, Go's runtime) finds no vDSO and reads the clock with real system
//!   calls. The seccomp filter stops `clock_gettime`, `gettimeofday` and `time`; the tracer answers
//!   them (the first replica's real reading, logged) and skips the real call. CPU-time clocks are not
//!   replicated: the tracer cannot read the replica's CPU time for it, and CPU time differs anyway.
//!   `sysinfo` (uptime, load, free memory: `sort` sizes its buffer from it) is trapped too and given a
//!   steady answer, the same in every replica (no log entry).
//! - **urandom**: the filter stops `open`/`openat`; a read-only open of `/dev/urandom` or `/dev/random`
//!   is redirected to a file of [`URANDOM_BYTES`] real random bytes that the first replica to make that
//!   open (the k-th of its kind) created, so every replica reads the same bytes. Reads are not trapped,
//!   which keeps the cost to one stop per open.
//!
//! Every question also feeds a per-kind digest of the question sequence; tmr votes those digests, so a
//! replica whose control flow asked other questions is reported (`memvote::vote_sequences`).
//!
//! Register access is x86-64 only and lives in [`arch`].

use std::path::PathBuf;

use nix::sys::ptrace;
use nix::unistd::Pid;

use super::replog::{Answer, Kind, RepLog, Reply, Why, DATA, KINDS};
use crate::memvote::{InputStats, KindStats};

/// The environment variable naming the run's private log directory; the monitor removes it before the
/// command runs.
pub const ENV: &str = "TMR_REPLOG";
/// Bytes of each replicated /dev/urandom stream; reading past them gets end-of-file.
pub const URANDOM_BYTES: usize = 256 << 10;

const AT_IGNORE: u64 = 1;
const AT_SYSINFO_EHDR: u64 = 33;

/// Register access for the syscalls handled here.
#[cfg(target_arch = "x86_64")]
mod arch {
    pub type Regs = libc::user_regs_struct;
    pub fn nr(r: &Regs) -> u64 {
        r.orig_rax
    }
    pub fn arg(r: &Regs, i: usize) -> u64 {
        [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9][i]
    }
    pub fn set_arg(r: &mut Regs, i: usize, v: u64) {
        *[&mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.r10, &mut r.r8, &mut r.r9][i] = v;
    }
    pub fn sp(r: &Regs) -> u64 {
        r.rsp
    }
    /// Skip the system call; `ret` is what it returns.
    pub fn skip(r: &mut Regs, ret: i64) {
        r.orig_rax = u64::MAX;
        r.rax = ret as u64;
    }
    pub const CLOCK: [i64; 3] = [libc::SYS_clock_gettime, libc::SYS_gettimeofday, libc::SYS_time];
    pub const SYSINFO: i64 = libc::SYS_sysinfo;
    pub const OPEN: [i64; 2] = [libc::SYS_open, libc::SYS_openat];
}

/// The syscalls the seccomp filter must stop for these steps.
pub fn trapped(clock: bool, urandom: bool) -> Vec<u32> {
    let mut v = Vec::new();
    if clock {
        v.extend(arch::CLOCK.iter().map(|&n| n as u32));
        v.push(arch::SYSINFO as u32);
    }
    if urandom {
        v.extend(arch::OPEN.iter().map(|&n| n as u32));
    }
    v
}

/// Where this replica's log lives: the run's directory, taken from the environment
/// before the command runs (and removed from it, so the command never sees it).
#[derive(Debug, Clone)]
pub struct Place {
    dir: PathBuf,
}

impl Place {
    pub fn take_from_env() -> Option<Place> {
        let dir = std::env::var_os(ENV)?;
        std::env::remove_var(ENV);
        Some(Place { dir: dir.into() })
    }
}

/// The tracer's side of input replication.
pub struct Inputs {
    /// The replica's own process (its main thread): the questions whose sequence is voted.
    main: Pid,
    clock: bool,
    urandom: bool,
    place: Option<Place>,
    log: Option<RepLog>,
    stats: [KindStats; 4],
    digests: [u64; 4],
    mismatch: Option<String>,
    notes: Vec<String>,
}

impl Inputs {
    pub fn new(main: Pid, clock: bool, urandom: bool, place: Option<Place>) -> Inputs {
        let log = place.as_ref().and_then(|p| RepLog::open(&p.dir.join("answers.log")).ok());
        let mut notes = Vec::new();
        if (clock || urandom) && log.is_none() {
            notes.push("no answer log: clock and /dev/urandom answers were not replicated".into());
        }
        Inputs {
            main,
            clock,
            urandom,
            place,
            log,
            stats: KINDS.map(|k| KindStats { kind: k.name().into(), ..Default::default() }),
            digests: [0; 4],
            mismatch: None,
            notes,
        }
    }

    pub fn enabled(&self) -> bool {
        self.clock || self.urandom
    }

    /// The exec stop of `tid`: hide the vDSO from the new image, so its clock reads are system calls.
    pub fn on_exec(&mut self, tid: Pid) {
        if self.clock && hide_vdso(tid).is_err() {
            self.note("could not hide the vDSO at an exec: that image's clock reads were not replicated");
        }
    }

    fn note(&mut self, n: &str) {
        if !self.notes.iter().any(|m| m == n) {
            self.notes.push(n.into());
        }
    }

    /// A seccomp stop for one of [`trapped`]'s syscalls. Returns whether it was one of them.
    pub fn on_seccomp(&mut self, tid: Pid, regs: &mut arch::Regs) -> bool {
        let nr = arch::nr(regs) as i64;
        if arch::CLOCK.contains(&nr) {
            self.on_clock(tid, regs, nr);
            true
        } else if nr == arch::SYSINFO {
            self.on_sysinfo(tid, regs);
            true
        } else if arch::OPEN.contains(&nr) {
            self.on_open(tid, regs, nr);
            true
        } else {
            false
        }
    }

    /// Ask the log; count and digest the question.
    fn ask(&mut self, tid: Pid, kind: Kind, question: u64, real: impl FnOnce() -> Answer) -> Option<Answer> {
        let kind = if tid == self.main { kind } else { kind.of_child() };
        let i = kind as usize;
        let k = self.stats[i].asked;
        self.stats[i].asked += 1;
        let d =
            twox_hash::XxHash3_64::oneshot(&[self.digests[i].to_le_bytes(), question.to_le_bytes()].concat());
        self.digests[i] = d;
        self.stats[i].sequence = format!("{d:016x}");
        let Some(log) = self.log.as_mut() else {
            self.stats[i].unreplicated += 1;
            return None;
        };
        let asked = log.ask(kind, k, question, real);
        if let (Some(other), None, true) = (asked.other, &self.mismatch, tid == self.main) {
            self.mismatch = Some(format!(
                "{} question #{k}: asked {} where another replica had asked {}",
                kind.name(),
                describe(question),
                describe(other)
            ));
        }
        match asked.reply {
            Reply::Logged(a) => {
                self.stats[i].replicated += 1;
                Some(a)
            }
            Reply::First(a) => {
                self.stats[i].first += 1;
                Some(a)
            }
            Reply::Unreplicated(why) => {
                self.stats[i].unreplicated += 1;
                self.note(&match why {
                    Why::Full => format!(
                        "the answer log's {} entries for {} questions were used up: later ones were not replicated",
                        super::replog::CAPACITY[i],
                        kind.name()
                    ),
                    Why::Stuck => format!(
                        "a {} answer stayed half-written in the log past its wait: answered for real",
                        kind.name()
                    ),
                    Why::Variants => {
                        format!("too many different {} questions at one log entry: answered for real", kind.name())
                    }
                });
                None
            }
        }
    }

    fn on_clock(&mut self, tid: Pid, regs: &mut arch::Regs, nr: i64) {
        let (a0, a1) = (arch::arg(regs, 0), arch::arg(regs, 1));
        let (question, real): (u64, fn(u64) -> Answer) = match nr {
            libc::SYS_clock_gettime => {
                let id = a0 as i32;
                if !replicable_clock(id) {
                    return; // CPU-time clocks and other processes' clocks run for real.
                }
                (((nr as u64) << 32) | id as u32 as u64, |id| {
                    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                    // SAFETY: a valid timespec on the stack.
                    let rc = unsafe { libc::clock_gettime(id as i32 as libc::clockid_t, &mut ts) };
                    answer(if rc == 0 { 0 } else { -errno() }, &[ts.tv_sec, ts.tv_nsec])
                })
            }
            libc::SYS_gettimeofday => ((nr as u64) << 32, |_| {
                let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
                let mut tz = [0i32; 2];
                // SAFETY: valid timeval and struct timezone (two ints) on the stack.
                let rc = unsafe { libc::gettimeofday(&mut tv, tz.as_mut_ptr().cast()) };
                let tz = (tz[0] as u32 as i64) | ((tz[1] as i64) << 32);
                answer(if rc == 0 { 0 } else { -errno() }, &[tv.tv_sec, tv.tv_usec, tz])
            }),
            _ => ((nr as u64) << 32, |_| {
                // SAFETY: time(NULL) writes nothing.
                let t = unsafe { libc::time(std::ptr::null_mut()) };
                answer(t, &[t])
            }),
        };
        let Some(a) = self.ask(tid, Kind::Clock, question, || real(a0)) else { return };
        let mut ret = a.ret;
        let word = |i: usize| &a.data[8 * i..8 * i + 8];
        let writes: Vec<(u64, &[u8])> = match nr {
            libc::SYS_clock_gettime if ret == 0 => vec![(a1, &a.data[..16])],
            libc::SYS_gettimeofday if ret == 0 => vec![(a0, &a.data[..16]), (a1, word(2))],
            libc::SYS_time => vec![(a0, word(0))],
            _ => vec![],
        };
        for (addr, bytes) in writes {
            if addr != 0 && super::remote::write_remote(tid, addr, bytes).is_err() {
                ret = -libc::EFAULT as i64;
            }
        }
        arch::skip(regs, ret);
        let _ = ptrace::setregs(tid, *regs);
    }

    /// sysinfo(2): uptime, load and free memory, which `sort` sizes its buffer from and keeps on its
    /// stack, so replicas that read different values laid out their memory differently. The answer is
    /// made steady rather than replicated (the same in every replica and every round, with no log
    /// entry): the totals are real, free RAM reads as half the total, free swap as all of it, uptime,
    /// loads and the other counters as 0, the process count as 1 ([`steady_sysinfo`], which the
    /// aligned-epoch checkpointer also applies when the clock step is off).
    fn on_sysinfo(&mut self, tid: Pid, regs: &mut arch::Regs) {
        let buf = arch::arg(regs, 0);
        // SAFETY: an all-zero sysinfo (padding included) is a valid value for the call to overwrite.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        // SAFETY: a valid, writable sysinfo on the stack.
        let mut ret = if unsafe { libc::sysinfo(&mut info) } == 0 { 0 } else { -errno() };
        if ret == 0 {
            let mut bytes = [0u8; SYSINFO_SIZE];
            // SAFETY: `info` is plain data whose every byte is initialized (zeroed, then written by the
            // kernel), and exactly its size is copied.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (&info as *const libc::sysinfo).cast(),
                    bytes.as_mut_ptr(),
                    SYSINFO_SIZE,
                )
            };
            steady_sysinfo(&mut bytes);
            if buf == 0 || super::remote::write_remote(tid, buf, &bytes).is_err() {
                ret = -libc::EFAULT as i64;
            }
        }
        arch::skip(regs, ret);
        let _ = ptrace::setregs(tid, *regs);
    }

    fn on_open(&mut self, tid: Pid, regs: &mut arch::Regs, nr: i64) {
        let (path_arg, flags) =
            if nr == libc::SYS_openat { (1, arch::arg(regs, 2)) } else { (0, arch::arg(regs, 1)) };
        if flags as i32 & libc::O_ACCMODE != libc::O_RDONLY {
            return;
        }
        let mut path = [0u8; 16];
        let addr = arch::arg(regs, path_arg);
        let remote = [nix::sys::uio::RemoteIoVec { base: addr as usize, len: path.len() }];
        // A short read is fine: the two names are shorter than the buffer and end in a NUL.
        let _ = nix::sys::uio::process_vm_readv(tid, &mut [std::io::IoSliceMut::new(&mut path)], &remote);
        let which: u64 = if path.starts_with(b"/dev/urandom\0") {
            9
        } else if path.starts_with(b"/dev/random\0") {
            8
        } else {
            return;
        };
        let Some(place) = self.place.clone() else { return };
        let kind = if tid == self.main { Kind::Urandom } else { Kind::ChildUrandom };
        let k = self.stats[kind as usize].asked;
        let file = place.dir.join(format!("{}-{k}", kind.name()));
        let question = ((nr as u64) << 32) | which;
        let made = self.ask(tid, Kind::Urandom, question, || {
            let ok = fill_random_file(&file).is_ok();
            answer(if ok { 0 } else { -1 }, &[])
        });
        if made.is_none_or(|a| a.ret != 0) {
            return;
        }
        let mut name = file.into_os_string().into_encoded_bytes();
        name.push(0);
        // Below the red zone of the stopped thread's stack: free, and mapped in all but pathological cases
        // (a write that fails leaves the open as it was).
        let at = (arch::sp(regs) - 1024 - name.len() as u64) & !15;
        if super::remote::write_remote(tid, at, &name).is_err() {
            self.note("could not redirect an open of /dev/urandom: its bytes were not replicated");
            return;
        }
        arch::set_arg(regs, path_arg, at);
        let _ = ptrace::setregs(tid, *regs);
    }

    pub fn stats(&self) -> Option<InputStats> {
        self.enabled().then(|| InputStats {
            kinds: KINDS
                .iter()
                .filter(|k| match k {
                    Kind::Clock | Kind::ChildClock => self.clock,
                    Kind::Urandom | Kind::ChildUrandom => self.urandom,
                })
                .map(|&k| self.stats[k as usize].clone())
                .collect(),
            mismatch: self.mismatch.clone(),
        })
    }

    /// What did not work as intended, for the snapshot's notes.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

fn errno() -> i64 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL) as i64
}

fn answer(ret: i64, words: &[i64]) -> Answer {
    let mut data = [0u8; DATA];
    for (i, w) in words.iter().enumerate() {
        data[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
    Answer { ret, data }
}

/// Clocks whose reading the tracer can take for the replica: system-wide ones. CPU-time clocks (2, 3 and
/// the negative ids of clock_getcpuclockid) measure the caller.
fn replicable_clock(id: i32) -> bool {
    matches!(
        id,
        libc::CLOCK_REALTIME
            | libc::CLOCK_MONOTONIC
            | libc::CLOCK_MONOTONIC_RAW
            | libc::CLOCK_REALTIME_COARSE
            | libc::CLOCK_MONOTONIC_COARSE
            | libc::CLOCK_BOOTTIME
            | libc::CLOCK_REALTIME_ALARM
            | libc::CLOCK_BOOTTIME_ALARM
            | libc::CLOCK_TAI
    )
}

/// Bytes of a `struct sysinfo`.
pub const SYSINFO_SIZE: usize = std::mem::size_of::<libc::sysinfo>();

/// Turn a real sysinfo(2) answer, as bytes, into the steady one every replica gets: the totals (RAM,
/// swap, high memory, the unit) stay, free RAM reads as half the total, free swap as all of it, uptime,
/// loads and the other counters as 0, the process count as 1. Bytes rather than the struct because the
/// checkpointer edits the answer the kernel already wrote into the replica; one function for both, so
/// the answer cannot depend on which of them gave it.
pub fn steady_sysinfo(info: &mut [u8; SYSINFO_SIZE]) {
    use std::mem::offset_of;
    const WORD: usize = std::mem::size_of::<libc::c_ulong>();
    let word = |info: &[u8; SYSINFO_SIZE], at: usize| {
        let mut w = [0u8; WORD];
        w.copy_from_slice(&info[at..at + WORD]);
        libc::c_ulong::from_ne_bytes(w)
    };
    let (totalram, totalswap) =
        (word(info, offset_of!(libc::sysinfo, totalram)), word(info, offset_of!(libc::sysinfo, totalswap)));
    let mut put = |at: usize, v: libc::c_ulong| info[at..at + WORD].copy_from_slice(&v.to_ne_bytes());
    for at in [
        offset_of!(libc::sysinfo, uptime),
        offset_of!(libc::sysinfo, sharedram),
        offset_of!(libc::sysinfo, bufferram),
        offset_of!(libc::sysinfo, freehigh),
    ] {
        put(at, 0);
    }
    for i in 0..3 {
        put(offset_of!(libc::sysinfo, loads) + i * WORD, 0);
    }
    put(offset_of!(libc::sysinfo, freeram), totalram / 2);
    put(offset_of!(libc::sysinfo, freeswap), totalswap);
    let procs = offset_of!(libc::sysinfo, procs);
    info[procs..procs + 2].copy_from_slice(&1u16.to_ne_bytes());
}

/// A question as the report names it.
pub fn describe(question: u64) -> String {
    let (nr, arg) = ((question >> 32) as i64, question as u32);
    match nr {
        libc::SYS_clock_gettime => format!("clock_gettime({})", clock_name(arg as i32)),
        libc::SYS_gettimeofday => "gettimeofday".into(),
        libc::SYS_time => "time".into(),
        libc::SYS_open | libc::SYS_openat => {
            format!("open(/dev/{})", if arg == 8 { "random" } else { "urandom" })
        }
        _ => format!("syscall {nr}"),
    }
}

fn clock_name(id: i32) -> String {
    match id {
        libc::CLOCK_REALTIME => "CLOCK_REALTIME".into(),
        libc::CLOCK_MONOTONIC => "CLOCK_MONOTONIC".into(),
        libc::CLOCK_MONOTONIC_RAW => "CLOCK_MONOTONIC_RAW".into(),
        libc::CLOCK_REALTIME_COARSE => "CLOCK_REALTIME_COARSE".into(),
        libc::CLOCK_MONOTONIC_COARSE => "CLOCK_MONOTONIC_COARSE".into(),
        libc::CLOCK_BOOTTIME => "CLOCK_BOOTTIME".into(),
        libc::CLOCK_TAI => "CLOCK_TAI".into(),
        other => format!("clock {other}"),
    }
}

fn fill_random_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = vec![0u8; URANDOM_BYTES];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: writes at most the rest of `bytes`.
        let n = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        filled += n as usize;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o400).open(path)?;
    f.write_all(&bytes)
}

/// Turn the new image's `AT_SYSINFO_EHDR` into `AT_IGNORE`. At the exec stop the stack pointer points at
/// argc, followed by argv, NULL, envp, NULL and the auxiliary vector.
fn hide_vdso(tid: Pid) -> anyhow::Result<()> {
    let sp = arch::sp(&ptrace::getregs(tid)?);
    let word = |i: u64| -> anyhow::Result<u64> {
        Ok(ptrace::read(tid, (sp + 8 * i) as ptrace::AddressType)? as u64)
    };
    let argc = word(0)?;
    let mut i = argc + 2;
    // Bounded: the kernel limits the whole of argv and envp to a fraction of the stack.
    while word(i)? != 0 {
        i += 1;
        anyhow::ensure!(i < 1 << 22, "no end of the environment");
    }
    i += 1;
    loop {
        match word(i)? {
            0 => return Ok(()),
            AT_SYSINFO_EHDR => {
                ptrace::write(tid, (sp + 8 * i) as ptrace::AddressType, AT_IGNORE as libc::c_long)?;
                return Ok(());
            }
            _ => i += 2,
        }
        anyhow::ensure!(i < 1 << 22, "no end of the auxiliary vector");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steady_sysinfo_keeps_the_totals_and_fixes_the_rest() {
        // SAFETY: a sysinfo read for real, as the tracer does: all-zero bytes, then the kernel's.
        let mut real: libc::sysinfo = unsafe { std::mem::zeroed() };
        // SAFETY: a valid, writable sysinfo on the stack.
        assert_eq!(unsafe { libc::sysinfo(&mut real) }, 0);
        real.freeram = 12345;
        real.procs = 77;
        let mut bytes = [0u8; SYSINFO_SIZE];
        // SAFETY: as in `on_sysinfo`: every byte of `real` is initialized, exactly its size is copied.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&real as *const libc::sysinfo).cast(),
                bytes.as_mut_ptr(),
                SYSINFO_SIZE,
            )
        };
        steady_sysinfo(&mut bytes);
        // SAFETY: any bytes are a valid sysinfo (integers only).
        let got: libc::sysinfo = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        assert_eq!(
            (got.totalram, got.totalswap, got.totalhigh, got.mem_unit),
            (real.totalram, real.totalswap, real.totalhigh, real.mem_unit)
        );
        assert_eq!((got.freeram, got.freeswap, got.procs), (real.totalram / 2, real.totalswap, 1));
        assert_eq!((got.uptime, got.loads, got.sharedram, got.bufferram, got.freehigh), (0, [0; 3], 0, 0, 0));
    }
}
