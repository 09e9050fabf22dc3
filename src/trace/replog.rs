//! The replicated answer log of input replication (`--mem-det clock,urandom`): one shared file per run,
//! mapped by the monitor of every replica of every round. Reruns replay the voted round's answers, so a
//! rerun that repeats a replica's work repeats its memory too, and is compared with it for what it is
//! (a rerun with fresh clock readings would differ from the voted round wherever the time is stored,
//! and turn a one-off fault into "nondeterministic"). Replicas ask nondeterministic questions
//! (what time is it, which random bytes do I get) in their own order; the k-th question of a kind is
//! answered by entry k of that kind. The first replica to reach entry k gets the real answer and writes
//! it; every later replica gets the logged answer, so all replicas see the same inputs and their memory
//! can be voted.
//!
//! An entry has a few *variants*, one per distinct question: a replica that asks something else at k
//! (another syscall, another clock) writes its own variant instead of taking a wrong answer. Replicas
//! that agree with each other still share answers even when a deviant replica got to k first; which
//! replica deviated is decided later by tmr's vote on the question sequences (`memvote`).
//!
//! No replica waits for another, except for a variant whose writer has claimed it and not yet
//! published it (microseconds: the writer holds no lock across a syscall of the replica). That wait is
//! a futex wait on the shared file, bounded by [`WAIT`]; past it the question is answered for real and
//! reported. The log has a fixed capacity per kind ([`CAPACITY`]): questions beyond it are answered
//! for real (not replicated), and the report says so.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Kinds of questions, each with its own sequence numbers. The replica's own process asks in an order
/// its program fixes; its children (a shell's commands) share a second set of sequences, because
/// concurrent children ask in whatever order the scheduler picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Clock = 0,
    Urandom = 1,
    ChildClock = 2,
    ChildUrandom = 3,
}

pub const KINDS: [Kind; 4] = [Kind::Clock, Kind::Urandom, Kind::ChildClock, Kind::ChildUrandom];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Clock => "clock",
            Kind::Urandom => "urandom",
            Kind::ChildClock => "clock-children",
            Kind::ChildUrandom => "urandom-children",
        }
    }

    /// The same kind asked by one of the replica's children.
    pub fn of_child(self) -> Kind {
        match self {
            Kind::Clock | Kind::ChildClock => Kind::ChildClock,
            Kind::Urandom | Kind::ChildUrandom => Kind::ChildUrandom,
        }
    }
}

/// Entries per kind. A clock entry is 256 bytes, so a run's log is at most 48 MiB of a sparse file,
/// of which only the entries asked for are ever touched.
pub const CAPACITY: [u64; 4] = [1 << 17, 1 << 8, 1 << 16, 1 << 8];
/// Distinct questions one entry can answer.
const VARIANTS: usize = 4;
/// Bytes of answer data per variant.
pub const DATA: usize = 40;
/// The longest wait for a variant being written. Writing takes microseconds, but on a loaded machine
/// (CI running ptrace-heavy tests side by side on 2 cores) the writing tracer can be off the CPU for
/// seconds, and an answer given for real past the wait is a false divergence in a program that stores
/// it (`ls -la` under load: 1 run in about 1,000). A dead writer costs each later replica this wait once.
const WAIT: Duration = Duration::from_secs(10);

const HEADER: u64 = 4096;
const VARIANT_SIZE: u64 = 64;
const ENTRY_SIZE: u64 = VARIANT_SIZE * VARIANTS as u64;

const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const READY: u32 = 2;

fn base(kind: Kind) -> u64 {
    HEADER + CAPACITY[..kind as usize].iter().sum::<u64>() * ENTRY_SIZE
}

fn file_size() -> u64 {
    HEADER + CAPACITY.iter().sum::<u64>() * ENTRY_SIZE
}

/// What a question is answered with: the syscall's return value and the bytes it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub ret: i64,
    pub data: [u8; DATA],
}

/// How a question was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Another replica had asked it first: its answer.
    Logged(Answer),
    /// This replica was first: the real answer, now logged.
    First(Answer),
    /// Not replicated (log full, an entry left half-written, every variant taken): answer for real.
    Unreplicated(Why),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Full,
    Stuck,
    Variants,
}

/// The outcome of [`RepLog::ask`], with the first other question found at the same entry, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub reply: Reply,
    pub other: Option<u64>,
}

/// One run's log, mapped shared.
pub struct RepLog {
    map: memmap2::MmapMut,
}

impl RepLog {
    /// Open (creating if needed) the log at `path`. Every replica sizes the file to the same length, so
    /// whoever comes first, no replica maps past its end.
    pub fn open(path: &Path) -> Result<RepLog> {
        let file = open_shared(path, "the answer log")?;
        file.set_len(file_size()).context("sizing the answer log")?;
        // SAFETY: the file is private to this run (0600, in tmr's private directory) and is only ever
        // accessed through atomics on the state words and plain copies guarded by them (see `ask`).
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.context("mapping the answer log")?;
        Ok(RepLog { map })
    }

    fn word(&self, offset: u64) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset + 4 <= self.map.len() as u64);
        // SAFETY: in bounds and 4-aligned (checked above; the mapping is page-aligned); the memory lives
        // as long as `self`, and AtomicU32 has the layout of u32.
        unsafe { &*(self.map.as_ptr().add(offset as usize) as *const AtomicU32) }
    }

    fn read_variant(&self, at: u64) -> (u64, Answer) {
        let m = &self.map[at as usize..(at + VARIANT_SIZE) as usize];
        let q = u64::from_le_bytes(m[8..16].try_into().expect("8 bytes"));
        let ret = i64::from_le_bytes(m[16..24].try_into().expect("8 bytes"));
        let mut data = [0u8; DATA];
        data.copy_from_slice(&m[24..24 + DATA]);
        (q, Answer { ret, data })
    }

    fn write_variant(&mut self, at: u64, q: u64, a: &Answer) {
        let m = &mut self.map[at as usize..(at + VARIANT_SIZE) as usize];
        m[8..16].copy_from_slice(&q.to_le_bytes());
        m[16..24].copy_from_slice(&a.ret.to_le_bytes());
        m[24..24 + DATA].copy_from_slice(&a.data);
    }

    /// Answer `question`, the `k`-th of `kind` this replica asks. `real` produces the real answer; it
    /// runs only in the first replica to ask this question at `k`.
    pub fn ask(&mut self, kind: Kind, k: u64, question: u64, real: impl FnOnce() -> Answer) -> Asked {
        let mut other = None;
        if k >= CAPACITY[kind as usize] {
            return Asked { reply: Reply::Unreplicated(Why::Full), other };
        }
        let entry = base(kind) + k * ENTRY_SIZE;
        for v in 0..VARIANTS as u64 {
            let at = entry + v * VARIANT_SIZE;
            let state = self.word(at);
            let claimed = state.compare_exchange(EMPTY, WRITING, Ordering::AcqRel, Ordering::Acquire);
            if claimed.is_ok() {
                let answer = real();
                self.write_variant(at, question, &answer);
                let state = self.word(at);
                state.store(READY, Ordering::Release);
                wake(state);
                return Asked { reply: Reply::First(answer), other };
            }
            if !wait_ready(state) {
                return Asked { reply: Reply::Unreplicated(Why::Stuck), other };
            }
            let (q, answer) = self.read_variant(at);
            if q == question {
                return Asked { reply: Reply::Logged(answer), other };
            }
            other.get_or_insert(q);
        }
        Asked { reply: Reply::Unreplicated(Why::Variants), other }
    }
}

/// Wait until a claimed variant is published; false after [`WAIT`].
fn wait_ready(state: &AtomicU32) -> bool {
    let until = Instant::now() + WAIT;
    loop {
        if state.load(Ordering::Acquire) == READY {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let ts = libc::timespec { tv_sec: 0, tv_nsec: left.min(Duration::from_millis(50)).as_nanos() as i64 };
        // SAFETY: a futex wait on a word of a shared mapping that outlives the call, with a valid
        // timeout; it returns at once if the word is no longer WRITING.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                state.as_ptr(),
                libc::FUTEX_WAIT,
                WRITING,
                &ts as *const libc::timespec,
            )
        };
    }
}

fn wake(state: &AtomicU32) {
    // SAFETY: a futex wake on a word of a shared mapping; no memory is passed.
    unsafe { libc::syscall(libc::SYS_futex, state.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// A file the tracers of one round share (created by the first to come, mode 0600, never truncated).
pub(super) fn open_shared(path: &Path, what: &str) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {what} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: u8) -> Answer {
        Answer { ret: n as i64, data: [n; DATA] }
    }

    #[test]
    fn the_first_replica_writes_and_later_ones_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut a = RepLog::open(&path).unwrap();
        let mut b = RepLog::open(&path).unwrap();
        assert_eq!(a.ask(Kind::Clock, 0, 7, || answer(1)).reply, Reply::First(answer(1)));
        let got = b.ask(Kind::Clock, 0, 7, || panic!("not asked: already logged"));
        assert_eq!(got, Asked { reply: Reply::Logged(answer(1)), other: None });
        // Kinds have their own sequences.
        assert_eq!(b.ask(Kind::Urandom, 0, 7, || answer(2)).reply, Reply::First(answer(2)));
    }

    #[test]
    fn a_different_question_gets_its_own_variant_and_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut a, mut b, mut c) =
            (RepLog::open(&path).unwrap(), RepLog::open(&path).unwrap(), RepLog::open(&path).unwrap());
        a.ask(Kind::Clock, 3, 1, || answer(1));
        let deviant = b.ask(Kind::Clock, 3, 2, || answer(2));
        assert_eq!(deviant, Asked { reply: Reply::First(answer(2)), other: Some(1) });
        // A third replica asking the deviant's question shares its answer.
        assert_eq!(c.ask(Kind::Clock, 3, 2, || answer(3)).reply, Reply::Logged(answer(2)));
        for q in 3..=4 {
            a.ask(Kind::Clock, 3, q, || answer(q as u8));
        }
        assert_eq!(c.ask(Kind::Clock, 3, 9, || answer(9)).reply, Reply::Unreplicated(Why::Variants));
    }

    #[test]
    fn past_its_capacity_the_log_answers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = RepLog::open(&dir.path().join("log")).unwrap();
        let k = CAPACITY[Kind::Urandom as usize];
        assert_eq!(a.ask(Kind::Urandom, k, 1, || answer(1)).reply, Reply::Unreplicated(Why::Full));
        assert_eq!(a.ask(Kind::Urandom, k - 1, 1, || answer(1)).reply, Reply::First(answer(1)));
    }

    #[test]
    fn a_half_written_entry_is_waited_for_only_so_long() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = RepLog::open(&dir.path().join("log")).unwrap();
        // A writer that claimed the variant and died.
        a.word(base(Kind::Clock)).store(WRITING, Ordering::Release);
        let got = a.ask(Kind::Clock, 0, 1, || answer(1));
        assert_eq!(got.reply, Reply::Unreplicated(Why::Stuck));
    }
}
