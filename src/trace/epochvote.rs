//! Aligned epochs and the epoch vote (`--checkpoint` with parallel replicas), inside each replica's
//! tracer. Two parts:
//!
//! - **The meeting place** ([`EpochArea`]): one shared file per round in the run's checkpoint directory,
//!   mapped by every replica's tracer, as `replog.rs` shares answers. Epoch k has one slot: which
//!   replicas arrived and their syscall counts, the boundary, one digest per replica, and the words of
//!   a repair in place (`scrub.rs`: who asked for a donation, who got one). Every change
//!   bumps a sequence word that waiters futex-wait on, always with a bound.
//! - **Page digests** ([`PageDigests`]): the tracer's hash of its replica's writable memory, one term per
//!   page, kept up to date by rehashing only the pages written since the previous checkpoint.
//!
//! Alignment: the progress measure is the count of syscall-entry stops (the tracer resumes the running
//! process with PTRACE_SYSCALL throughout). Deterministic programs make the same calls in the same order,
//! since input replication makes them answer alike. A tracer whose timer fired (or that sees a sibling
//! arrive) *arrives* at epoch k at its next syscall entry with its count; when every live replica has
//! arrived, the boundary is the largest count, and the replicas behind run on until their count reaches
//! it. A replica that does not arrive within the bound closes the epoch: it is skipped by all.
//!
//! The digest is a commutative sum (four wrapping 64-bit lanes) of blake3(address ‖ masked page) over
//! the non-zero pages, plus a term for the syscall number and instruction pointer at the boundary; a
//! page rehashed replaces its old term. Masks as the exit vote's: bytes below the stack pointer, the
//! TMR_* strings, and the replica's pid in aligned words of the stack and the thread control block.
//! Only written pages are hashed: present, anonymous and exclusively mapped (a page of a file that was
//! only read is exclusive or not depending on whether a sibling maps it at that instant). When no
//! digest has a strict majority, the replicas exchange their page terms (files `epochs.<round>.terms.
//! <epoch>.<replica>`, written only then) and leave out the pages on which no majority agrees (noise).
//! Limits: a TMR_* string straddling two pages is not masked; a stack or TCB word that happens to equal
//! one replica's pid is blanked in that replica only; a real copy of the pid elsewhere makes its page
//! noise.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::unistd::Pid;

use super::memsnap::writable_mappings;
use crate::memvote::PAGE;

/// Replicas a meeting place has room for (bits of the arrival mask).
pub const MAX_REPLICAS: usize = 16;
/// Epochs per round; past it, checkpoints are no longer aligned (the log says so).
pub const MAX_EPOCHS: u32 = 4096;

const HEADER: u64 = 4096;
const SLOT: u64 = 1024;
// Header words.
const SEQ: u64 = 0;
const GONE: u64 = 4;
const MAX_ARRIVED: u64 = 8;
// Slot words (offsets inside a slot).
const MASK: u64 = 0;
const BOUNDARY: u64 = 8;
const COUNTS: u64 = 16;
const GENS: u64 = COUNTS + 8 * MAX_REPLICAS as u64;
const DIGESTS: u64 = 256;
const TERMS_WRITTEN: u64 = DIGESTS + 32 * MAX_REPLICAS as u64;
/// Repair in place (`scrub.rs`), one word per replica: the donation for it (0 none yet, [`DONATED`],
/// [`REFUSED`]), and whether it published its want.
const SCRUB: u64 = TERMS_WRITTEN + 4 * MAX_REPLICAS as u64;
const WANTS: u64 = SCRUB + 4 * MAX_REPLICAS as u64;
const _: () = assert!(WANTS + 4 * MAX_REPLICAS as u64 <= SLOT);
pub const DONATED: u32 = 1;
pub const REFUSED: u32 = 2;
/// The boundary word of a closed epoch (not everybody arrived in time).
const CLOSED: u64 = u64::MAX;

/// A replica's epoch digest.
pub type Digest = [u64; 4];

/// The shared file of one round.
pub struct EpochArea {
    map: memmap2::MmapMut,
}

impl EpochArea {
    /// Open (creating if needed) the meeting place at `path`; every tracer sizes it alike.
    pub fn open(path: &Path) -> Result<EpochArea> {
        let file = super::replog::open_shared(path, "the epoch file")?;
        file.set_len(HEADER + SLOT * u64::from(MAX_EPOCHS)).context("sizing the epoch file")?;
        // SAFETY: the file is private to this run (0600, in tmr's private directory) and is only ever
        // accessed through the atomics below.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.context("mapping the epoch file")?;
        Ok(EpochArea { map })
    }

    fn u32_at(&self, offset: u64) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset + 4 <= self.map.len() as u64);
        // SAFETY: in bounds and aligned (checked; the mapping is page-aligned); lives as long as `self`;
        // AtomicU32 has the layout of u32.
        unsafe { &*(self.map.as_ptr().add(offset as usize) as *const AtomicU32) }
    }

    fn u64_at(&self, offset: u64) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.map.len() as u64);
        // SAFETY: as in `u32_at`, for 8 bytes.
        unsafe { &*(self.map.as_ptr().add(offset as usize) as *const AtomicU64) }
    }

    fn slot(k: u32) -> u64 {
        HEADER + SLOT * u64::from(k)
    }

    /// Something changed: wake every waiter.
    fn bump(&self) {
        let seq = self.u32_at(SEQ);
        seq.fetch_add(1, Ordering::AcqRel);
        // SAFETY: a futex wake on a word of a shared mapping; no memory is passed.
        unsafe { libc::syscall(libc::SYS_futex, seq.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
    }

    /// Wait until `done` returns Some, or `until`; re-checked at every change (futex, 50 ms slices).
    fn wait<T>(&self, until: Instant, mut done: impl FnMut(&Self) -> Option<T>) -> Option<T> {
        loop {
            let seq = self.u32_at(SEQ).load(Ordering::Acquire);
            if let Some(t) = done(self) {
                return Some(t);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let slice = left.min(Duration::from_millis(50));
            let ts = libc::timespec { tv_sec: 0, tv_nsec: slice.as_nanos() as i64 };
            // SAFETY: a futex wait on a word of a shared mapping that outlives the call, with a valid
            // timeout; it returns at once if the word changed since it was read.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.u32_at(SEQ).as_ptr(),
                    libc::FUTEX_WAIT,
                    seq,
                    &ts as *const libc::timespec,
                )
            };
        }
    }
}

/// Who is who at an epoch vote: the first replica of the majority (the donor of a repair in place)
/// and the replicas outside it.
pub type Standing = (usize, Vec<usize>);

/// What arriving at an epoch gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Checkpoint at this syscall count.
    Boundary(u64),
    /// Not aligned (someone did not come in time, or this replica is past the boundary): no checkpoint.
    Skipped,
}

/// One tracer's view of the meeting place.
pub struct EpochSync {
    area: EpochArea,
    me: usize,
    n: usize,
    /// The longest wait for the siblings, at arrival and at the vote.
    pub bound: Duration,
    /// Where the page terms are exchanged when digests disagree: `<prefix>.<epoch>.<replica>`.
    terms: std::path::PathBuf,
}

impl EpochSync {
    /// `None` when the round has fewer than 2 or more than [`MAX_REPLICAS`] replicas.
    pub fn open(path: &Path, me: usize, n: usize, interval: Duration) -> Result<Option<EpochSync>> {
        if !(2..=MAX_REPLICAS).contains(&n) || me >= n {
            return Ok(None);
        }
        let bound = (interval * 20).clamp(Duration::from_secs(2), Duration::from_secs(10));
        let terms = path.with_extension(format!(
            "{}.terms",
            path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()
        ));
        Ok(Some(EpochSync { area: EpochArea::open(path)?, me, n, bound, terms }))
    }

    fn all(&self) -> u64 {
        (1u64 << self.n) - 1
    }

    fn live(&self) -> u64 {
        self.all() & !u64::from(self.area.u32_at(GONE).load(Ordering::Acquire))
    }

    /// This replica will come to no more epochs (it exited, or stopped checkpointing).
    pub fn leave(&self) {
        self.area.u32_at(GONE).fetch_or(1 << self.me, Ordering::AcqRel);
        self.area.bump();
    }

    /// Are enough replicas left (a strict majority) to hold a vote?
    pub fn quorum(&self) -> bool {
        self.live().count_ones() as usize > self.n / 2
    }

    /// The newest epoch any replica arrived at.
    pub fn max_arrived(&self) -> u32 {
        self.area.u32_at(MAX_ARRIVED).load(Ordering::Acquire)
    }

    /// Arrive at epoch `k` with syscall count `count`; wait (bounded) for the boundary.
    pub fn arrive(&self, k: u32, count: u64) -> Arrival {
        if k == 0 || k >= MAX_EPOCHS {
            return Arrival::Skipped;
        }
        let s = EpochArea::slot(k);
        self.area.u64_at(s + COUNTS + 8 * self.me as u64).store(count, Ordering::Release);
        self.area.u64_at(s + MASK).fetch_or(1 << self.me, Ordering::AcqRel);
        self.area.u32_at(MAX_ARRIVED).fetch_max(k, Ordering::AcqRel);
        self.area.bump();
        let until = Instant::now() + self.bound;
        let boundary = self.area.wait(until, |a| {
            let b = a.u64_at(s + BOUNDARY).load(Ordering::Acquire);
            if b != 0 {
                return Some(b);
            }
            let arrived = a.u64_at(s + MASK).load(Ordering::Acquire);
            let live = self.live();
            if arrived & live != live {
                return None;
            }
            let max = (0..self.n)
                .filter(|j| arrived >> j & 1 == 1)
                .map(|j| a.u64_at(s + COUNTS + 8 * j as u64).load(Ordering::Acquire))
                .max()
                .unwrap_or(count);
            let b = match a.u64_at(s + BOUNDARY).compare_exchange(
                0,
                max + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => max + 1,
                Err(other) => other,
            };
            a.bump();
            Some(b)
        });
        let b = boundary.unwrap_or_else(|| {
            let b = match self.area.u64_at(s + BOUNDARY).compare_exchange(
                0,
                CLOSED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => CLOSED,
                Err(other) => other,
            };
            self.area.bump();
            b
        });
        match b {
            CLOSED => Arrival::Skipped,
            b if b - 1 < count => Arrival::Skipped,
            b => Arrival::Boundary(b - 1),
        }
    }

    /// Publish this replica's digest for epoch `k`, wait (bounded) for every live sibling's, and vote.
    #[cfg(test)]
    pub fn vote(&self, k: u32, digest: Digest) -> crate::epoch::EpochVerdict {
        self.vote_digests(k, digest).0
    }

    /// As [`Self::vote`], with every replica's digest as read (None: not in time, or gone).
    pub fn vote_digests(&self, k: u32, digest: Digest) -> (crate::epoch::EpochVerdict, Vec<Option<Digest>>) {
        let s = EpochArea::slot(k);
        let gen = self.area.u32_at(s + GENS + 4 * self.me as u64);
        let g = gen.load(Ordering::Acquire);
        gen.store(g | 1, Ordering::Release);
        for (i, w) in digest.iter().enumerate() {
            self.area.u64_at(s + DIGESTS + 32 * self.me as u64 + 8 * i as u64).store(*w, Ordering::Release);
        }
        gen.store((g | 1) + 1, Ordering::Release);
        self.area.bump();
        let until = Instant::now() + self.bound;
        let read = |a: &EpochArea, j: usize| -> Option<Digest> {
            let gen = a.u32_at(s + GENS + 4 * j as u64);
            loop {
                let g1 = gen.load(Ordering::Acquire);
                if g1 == 0 || g1 & 1 == 1 {
                    return None;
                }
                let mut d = [0u64; 4];
                for (i, w) in d.iter_mut().enumerate() {
                    *w = a.u64_at(s + DIGESTS + 32 * j as u64 + 8 * i as u64).load(Ordering::Acquire);
                }
                if gen.load(Ordering::Acquire) == g1 {
                    return Some(d);
                }
            }
        };
        let collect = |a: &EpochArea| -> Vec<Option<Digest>> { (0..self.n).map(|j| read(a, j)).collect() };
        let all_in = self.area.wait(until, |a| {
            let live = self.live();
            let ds = collect(a);
            (0..self.n).all(|j| live >> j & 1 == 0 || ds[j].is_some()).then_some(ds)
        });
        let ds = all_in.unwrap_or_else(|| collect(&self.area));
        (crate::epoch::epoch_verdict(self.me, self.n, &ds), ds)
    }

    /// This replica's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Where replica `j`'s want (`kind` "want") or the donation for it ("gift") at epoch `k` is written.
    pub fn scrub_path(&self, k: u32, j: usize, kind: &str) -> std::path::PathBuf {
        let mut p = self.terms.clone().into_os_string();
        p.push(format!(".{k}.{kind}.{j}"));
        p.into()
    }

    /// This replica published its want for epoch `k`.
    pub fn wanted(&self, k: u32) {
        self.area.u32_at(EpochArea::slot(k) + WANTS + 4 * self.me as u64).store(1, Ordering::Release);
        self.area.bump();
    }

    /// This replica will not ask for a donation at epoch `k` (it rolls back, or was not outvoted): a
    /// donor that counted it as a dissenter need not wait for its want.
    pub fn decline(&self, k: u32) {
        let word = self.area.u32_at(EpochArea::slot(k) + WANTS + 4 * self.me as u64);
        if word.compare_exchange(0, 2, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.area.bump();
        }
    }

    /// Wait (bounded) for replica `j`'s want at epoch `k`: true if it published one.
    pub fn wait_want(&self, k: u32, j: usize) -> bool {
        let word = EpochArea::slot(k) + WANTS + 4 * j as u64;
        let until = Instant::now() + self.bound;
        self.area.wait(until, |a| Some(a.u32_at(word).load(Ordering::Acquire)).filter(|&w| w != 0)) == Some(1)
    }

    /// The donor of epoch `k` wrote its donation for replica `j` (`DONATED`) or will not (`REFUSED`).
    pub fn donated(&self, k: u32, j: usize, state: u32) {
        self.area.u32_at(EpochArea::slot(k) + SCRUB + 4 * j as u64).store(state, Ordering::Release);
        self.area.bump();
    }

    /// Wait (bounded) for the donation to this replica at epoch `k`: `Some(DONATED | REFUSED)`, or None
    /// if the donor did not say in time.
    pub fn wait_donation(&self, k: u32) -> Option<u32> {
        let word = EpochArea::slot(k) + SCRUB + 4 * self.me as u64;
        let until = Instant::now() + self.bound;
        self.area.wait(until, |a| Some(a.u32_at(word).load(Ordering::Acquire)).filter(|&s| s != 0))
    }
}

impl EpochSync {
    fn terms_path(&self, k: u32, j: usize) -> std::path::PathBuf {
        let mut p = self.terms.clone().into_os_string();
        p.push(format!(".{k}.{j}"));
        p.into()
    }

    /// The digests disagreed at epoch `k`: compare page by page. Every replica that published a digest
    /// writes its terms (`regs` under address u64::MAX), then reads everyone's. A page where no strict
    /// majority of the replicas agrees (present or absent alike) is *noise*, as in the exit vote (the
    /// clock reading glibc's loader keeps, say): it is returned, for every replica to leave out from
    /// now on, identically, since all read the same files. The verdict is then on the other pages; with
    /// it, every replica's standing as all of them see it: the first replica in the majority and those
    /// in the minority (the donor and the dissenters of a repair in place).
    pub fn reconcile(
        &self,
        k: u32,
        pages: &PageDigests,
        regs: Digest,
    ) -> (crate::epoch::EpochVerdict, Vec<u64>, Option<Standing>) {
        use crate::epoch::EpochVerdict;
        let mine: Vec<(u64, Digest)> =
            pages.terms.iter().map(|(a, t)| (*a, *t)).chain([(u64::MAX, regs)]).collect();
        let mut bytes = Vec::with_capacity(mine.len() * 40);
        for (a, t) in &mine {
            bytes.extend_from_slice(&a.to_le_bytes());
            for w in t {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
        }
        let s = EpochArea::slot(k);
        let flag = self.area.u32_at(s + TERMS_WRITTEN + 4 * self.me as u64);
        if std::fs::write(self.terms_path(k, self.me), &bytes).is_ok() {
            flag.store(1, Ordering::Release);
        }
        self.area.bump();
        let voted = |a: &EpochArea, j: usize| a.u32_at(s + GENS + 4 * j as u64).load(Ordering::Acquire) != 0;
        let until = Instant::now() + self.bound;
        let _ = self.area.wait(until, |a| {
            let live = self.live();
            (0..self.n)
                .all(|j| {
                    live >> j & 1 == 0
                        || !voted(a, j)
                        || a.u32_at(s + TERMS_WRITTEN + 4 * j as u64).load(Ordering::Acquire) == 1
                })
                .then_some(())
        });
        let mut all: Vec<HashMap<u64, Digest>> = Vec::new();
        let mut who: Vec<usize> = Vec::new();
        for j in 0..self.n {
            if self.area.u32_at(s + TERMS_WRITTEN + 4 * j as u64).load(Ordering::Acquire) != 1 {
                continue;
            }
            let Ok(b) = std::fs::read(self.terms_path(k, j)) else { continue };
            let map = b
                .chunks_exact(40)
                .map(|c| {
                    let w = |i: usize| u64::from_le_bytes(c[8 * i..8 * i + 8].try_into().expect("8 bytes"));
                    (w(0), [w(1), w(2), w(3), w(4)])
                })
                .collect();
            all.push(map);
            who.push(j);
        }
        let need = self.n / 2 + 1;
        if all.len() < need {
            return (EpochVerdict::TooFew, Vec::new(), None);
        }
        let addrs: std::collections::BTreeSet<u64> = all.iter().flat_map(|m| m.keys().copied()).collect();
        let mine: HashMap<u64, Digest> = mine.into_iter().collect();
        let (mut noise, mut minority) = (Vec::new(), false);
        // Per replica that wrote terms: outside the majority on some page (or with no majority on the
        // registers: then nobody is good).
        let mut outvoted = vec![false; all.len()];
        let mut nobody = false;
        for a in addrs {
            let values: Vec<Option<&Digest>> = all.iter().map(|m| m.get(&a)).collect();
            match values.iter().find(|v| values.iter().filter(|w| w == v).count() >= need) {
                None if a != u64::MAX => noise.push(a),
                None => {
                    minority = true;
                    nobody = true;
                }
                Some(v) => {
                    minority |= *v != mine.get(&a);
                    for (i, w) in values.iter().enumerate() {
                        outvoted[i] |= w != v;
                    }
                }
            }
        }
        let verdict = if minority { EpochVerdict::Minority } else { EpochVerdict::Good };
        let standing = (!nobody)
            .then(|| who.iter().zip(&outvoted).find(|(_, o)| !**o).map(|(j, _)| *j))
            .flatten()
            .map(|first| (first, who.iter().zip(&outvoted).filter(|(_, o)| **o).map(|(j, _)| *j).collect()));
        (verdict, noise, standing)
    }
}

/// The per-page terms of one replica's memory, and their sum.
#[derive(Default)]
pub struct PageDigests {
    /// Pages left out: noise found by [`EpochSync::reconcile`].
    noise: std::collections::HashSet<u64>,
    terms: HashMap<u64, Digest>,
    sum: Digest,
    /// Terms replaced since the last good checkpoint (address, old term), to go back to it.
    undo: Vec<(u64, Option<Digest>)>,
    /// Pages that process_vm_readv did not read and /proc/PID/mem did (see `hash_runs`).
    pub short_reads: u64,
}

/// What to blank in a page before hashing it.
pub struct PageMasks {
    pub rsp: u64,
    /// The replica's pid (the original's) and its thread control block (fs_base): the pid is blanked in
    /// aligned words of the stack and the TCB's pages, where the C library keeps it. Not elsewhere: a
    /// heap word that equals one replica's pid by chance (Python's int objects over a range) would be
    /// blanked in that replica only, a false divergence; a real copy of the pid on the heap makes its
    /// page differ in every replica, which the vote then leaves out as noise.
    pub pid: u32,
    pub fs_base: u64,
    pub env: Vec<Vec<u8>>,
}

fn add(a: &mut Digest, b: &Digest) {
    for i in 0..4 {
        a[i] = a[i].wrapping_add(b[i]);
    }
}

fn sub(a: &mut Digest, b: &Digest) {
    for i in 0..4 {
        a[i] = a[i].wrapping_sub(b[i]);
    }
}

/// The registers' term: the syscall number and instruction pointer at the boundary.
pub fn regs_term(nr: u64, rip: u64) -> Digest {
    term(u64::MAX, &[nr.to_le_bytes(), rip.to_le_bytes()].concat())
}

/// The term of the page at `addr` with (masked) contents `bytes`.
pub fn term(addr: u64, bytes: &[u8]) -> Digest {
    let h = blake3::Hasher::new().update(&addr.to_le_bytes()).update(bytes).finalize();
    let b = h.as_bytes();
    std::array::from_fn(|i| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes")))
}

/// Blank `page` (at `addr`, in a mapping called `name`) as the exit vote would.
pub fn mask_page(page: &mut [u8], addr: u64, name: &str, m: &PageMasks) {
    if name == "[stack]" && m.rsp >= addr && m.rsp < addr + PAGE {
        page[..(m.rsp - addr) as usize].fill(0);
    }
    // One search for the shared prefix, then the strings where it is found.
    let mut at = 0;
    while let Some(i) = memchr::memmem::find(&page[at..], b"TMR_") {
        let start = at + i;
        at = start + 1;
        if let Some(p) = m.env.iter().find(|p| page[start..].starts_with(p)) {
            page[start..start + p.len()].fill(0);
            at = start + p.len();
        }
    }
    let near_tcb = addr + PAGE > m.fs_base.saturating_sub(PAGE) && addr < m.fs_base + PAGE;
    if m.pid != 0 && (name == "[stack]" || near_tcb) {
        let v = m.pid.to_le_bytes();
        for w in page.chunks_exact_mut(4) {
            if *w == v {
                w.fill(0);
            }
        }
    }
}

impl PageDigests {
    /// Replace the term of the page at `addr` by that of `bytes` (masked already); a zero page has none,
    /// as an absent one.
    pub fn set(&mut self, addr: u64, bytes: &[u8]) {
        let new = (!bytes.iter().all(|&b| b == 0) && !self.noise.contains(&addr)).then(|| term(addr, bytes));
        let old = match new {
            Some(t) => self.terms.insert(addr, t),
            None => self.terms.remove(&addr),
        };
        if old == new {
            return;
        }
        if let Some(o) = &old {
            sub(&mut self.sum, o);
        }
        if let Some(t) = &new {
            add(&mut self.sum, t);
        }
        self.undo.push((addr, old));
    }

    /// The digest with the registers at the boundary (syscall number and instruction pointer).
    pub fn digest(&self, nr: u64, rip: u64) -> Digest {
        let mut d = self.sum;
        add(&mut d, &regs_term(nr, rip));
        d
    }

    /// Leave these pages out from now on (noise), for good: also from the state a rollback restores.
    pub fn exclude(&mut self, pages: &[u64]) {
        for &a in pages {
            self.noise.insert(a);
            if let Some(t) = self.terms.remove(&a) {
                sub(&mut self.sum, &t);
            }
            self.undo.retain(|(u, _)| *u != a);
        }
    }

    pub fn noise(&self) -> usize {
        self.noise.len()
    }

    /// The state is now a good checkpoint's.
    pub fn good(&mut self) {
        self.undo.clear();
    }

    /// Back to the last good checkpoint's state.
    pub fn back(&mut self) {
        while let Some((addr, old)) = self.undo.pop() {
            if let Some(t) = self.terms.remove(&addr) {
                sub(&mut self.sum, &t);
            }
            if let Some(o) = old {
                add(&mut self.sum, &o);
                self.terms.insert(addr, o);
            }
        }
    }

    #[cfg(test)]
    pub fn pages(&self) -> usize {
        self.terms.len()
    }

    /// Every page's term (noise left out).
    pub fn terms(&self) -> &HashMap<u64, Digest> {
        &self.terms
    }

    /// Rehash the pages of `pid` written since its last fork (present and exclusively mapped, or every
    /// present one with `all`), masked. Returns the pages hashed.
    pub fn update(&mut self, pid: Pid, masks: &PageMasks, all: bool) -> Result<u64> {
        use std::os::unix::fs::FileExt;
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).context("reading maps")?;
        let pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).context("opening pagemap")?;
        let mut entries = vec![0u8; 8 * 4096];
        let mut hashed = 0;
        for m in writable_mappings(&maps) {
            // Runs of consecutive written pages, read with one process_vm_readv each (up to 16 pages).
            let mut runs: Vec<(u64, u64)> = Vec::new();
            let mut at = m.start;
            while at < m.end {
                let n = (((m.end - at) / PAGE) as usize).clamp(1, 4096);
                let buf = &mut entries[..8 * n];
                let got = pagemap.read_at(buf, at / PAGE * 8).unwrap_or(0) / 8;
                for (i, e) in buf.chunks_exact(8).take(got).enumerate() {
                    let e = u64::from_ne_bytes(e.try_into().expect("8 bytes"));
                    // Present, and written: an anonymous page (bit 61 clear: a written page of a private
                    // file mapping is an anonymous copy) mapped by this process alone (bit 56). A page
                    // of a file that was only read is left out: whether another process maps it too
                    // (a sibling replica that got there first) is a matter of timing.
                    if e >> 63 & 1 == 0 || e >> 61 & 1 == 1 || (!all && e >> 56 & 1 == 0) {
                        continue;
                    }
                    let addr = at + i as u64 * PAGE;
                    match runs.last_mut() {
                        Some((start, len)) if *start + *len * PAGE == addr && *len < RUN => *len += 1,
                        _ => runs.push((addr, 1)),
                    }
                }
                at += n as u64 * PAGE;
            }
            hashed += self.hash_runs(pid, &runs, &m.name, masks);
        }
        Ok(hashed)
    }

    fn hash_runs(&mut self, pid: Pid, runs: &[(u64, u64)], name: &str, masks: &PageMasks) -> u64 {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; (RUN * PAGE) as usize];
        let mut hashed = 0;
        let mut mem: Option<std::fs::File> = None;
        for &(start, len) in runs {
            let bytes = &mut buf[..(len * PAGE) as usize];
            let remote = [nix::sys::uio::RemoteIoVec { base: start as usize, len: bytes.len() }];
            let mut got =
                nix::sys::uio::process_vm_readv(pid, &mut [std::io::IoSliceMut::new(bytes)], &remote)
                    .unwrap_or(0);
            // A short read (seen under memory pressure) would leave pages unhashed in this replica
            // only: a false divergence. /proc/PID/mem reads what is left, through the kernel's own
            // fault-in path.
            while got < bytes.len() {
                let file = match &mem {
                    Some(f) => f,
                    None => match std::fs::File::open(format!("/proc/{pid}/mem")) {
                        Ok(f) => mem.insert(f),
                        Err(_) => break,
                    },
                };
                match file.read_at(&mut bytes[got..], start + got as u64) {
                    Ok(n) if n > 0 => {
                        self.short_reads += (n as u64).div_ceil(PAGE);
                        got += n;
                    }
                    _ => break,
                }
            }
            for (i, page) in bytes[..got - got % PAGE as usize].chunks_mut(PAGE as usize).enumerate() {
                let addr = start + i as u64 * PAGE;
                mask_page(page, addr, name, masks);
                self.set(addr, page);
                hashed += 1;
            }
        }
        hashed
    }
}

/// Pages read at once.
const RUN: u64 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_same_whatever_order_pages_were_hashed_in_and_undo_restores_it() {
        let (a, b) = (vec![1u8; PAGE as usize], vec![2u8; PAGE as usize]);
        let mut x = PageDigests::default();
        x.set(0x1000, &a);
        x.set(0x2000, &b);
        let mut y = PageDigests::default();
        y.set(0x2000, &b);
        y.set(0x1000, &b);
        y.set(0x1000, &a);
        assert_eq!(x.digest(1, 2), y.digest(1, 2));
        assert_ne!(x.digest(1, 2), x.digest(1, 3), "registers count");
        x.good();
        let before = x.digest(0, 0);
        x.set(0x1000, &b);
        x.set(0x3000, &a);
        x.set(0x2000, &vec![0u8; PAGE as usize]);
        assert_ne!(x.digest(0, 0), before);
        x.back();
        assert_eq!(x.digest(0, 0), before);
        assert_eq!(x.pages(), 2);
    }

    #[test]
    fn masks_blank_dead_stack_env_strings_and_the_pid() {
        let masks =
            PageMasks { rsp: 0x1010, pid: 4242, fs_base: 0x9000, env: vec![b"TMR_REPLICA=1".to_vec()] };
        let mut page = vec![7u8; PAGE as usize];
        page[100..113].copy_from_slice(b"TMR_REPLICA=1");
        page[200..204].copy_from_slice(&4242u32.to_le_bytes());
        mask_page(&mut page, 0x1000, "[stack]", &masks);
        assert!(page[..0x10].iter().all(|&b| b == 0) && page[0x10] == 7);
        assert!(page[100..113].iter().all(|&b| b == 0));
        assert_eq!(&page[200..204], &[0; 4], "the pid on the stack");
        let mut tcb = vec![7u8; PAGE as usize];
        tcb[200..204].copy_from_slice(&4242u32.to_le_bytes());
        tcb[302..306].copy_from_slice(&4242u32.to_le_bytes());
        mask_page(&mut tcb, 0x9000, "[anon]", &masks);
        assert_eq!(&tcb[200..204], &[0; 4], "the pid in the thread control block");
        assert_eq!(&tcb[302..306], &4242u32.to_le_bytes(), "only in aligned words");
        let mut heap = vec![7u8; PAGE as usize];
        heap[200..204].copy_from_slice(&4242u32.to_le_bytes());
        mask_page(&mut heap, 0x5000, "[heap]", &masks);
        assert_eq!(&heap[200..204], &4242u32.to_le_bytes(), "a heap word equal to the pid by chance stays");
    }

    #[test]
    fn replicas_meet_at_the_largest_count_and_vote() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("epochs");
        let ms = Duration::from_millis(10);
        let open = |me| EpochSync::open(&path, me, 3, ms).expect("open").expect("3 replicas");
        let (a, b, c) = (open(0), open(1), open(2));
        let got = std::thread::scope(|s| {
            let ta = s.spawn(|| a.arrive(1, 10));
            let tb = s.spawn(|| b.arrive(1, 14));
            let tc = s.spawn(|| c.arrive(1, 12));
            [ta.join().expect("a"), tb.join().expect("b"), tc.join().expect("c")]
        });
        assert_eq!(got, [Arrival::Boundary(14); 3]);
        assert_eq!(a.max_arrived(), 1);
        let good = [1u64, 2, 3, 4];
        let verdicts = std::thread::scope(|s| {
            let ta = s.spawn(|| a.vote(1, good));
            let tb = s.spawn(|| b.vote(1, good));
            let tc = s.spawn(|| c.vote(1, [9, 9, 9, 9]));
            [ta.join().expect("a"), tb.join().expect("b"), tc.join().expect("c")]
        });
        use crate::epoch::EpochVerdict::*;
        assert_eq!(verdicts, [Good, Good, Minority]);
        // Replica 2 leaves; the others close epoch 2 without waiting for it.
        c.leave();
        let got = std::thread::scope(|s| {
            let ta = s.spawn(|| a.arrive(2, 20));
            let tb = s.spawn(|| b.arrive(2, 20));
            [ta.join().expect("a"), tb.join().expect("b")]
        });
        assert_eq!(got, [Arrival::Boundary(20); 2]);
        // A replica past a decided boundary cannot align.
        assert_eq!(c.arrive(2, 21), Arrival::Skipped);
    }
}
