//! Memory-state voting, the pure half: each replica's exit-time snapshot is a list of writable regions
//! with one digest per 4 KiB page; pages are voted address by address. A page where a strict majority
//! agrees and a minority differs is a *divergence* of that minority (latent corruption that may never
//! reach the output); a page with no majority is *noise* — counted and listed, because every noise page
//! is a blind spot. No processes here: snapshots come from the per-replica monitor (`trace::monitor`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::units::PAGE;

/// What one replica's monitor saw at its exit stop.
///
/// It travels from the monitor to tmr as a binary file (`trace::snapfile`): the regions' digests and
/// the pid pages as raw bytes, the rest (small and structured) as JSON, hence the `skip`s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemSnapshot {
    #[serde(skip)]
    pub regions: Vec<Region>,
    /// Threads seen over the replica's life (clone events + 1).
    pub threads: usize,
    /// Determinization that did not apply, and other caveats.
    pub notes: Vec<String>,
    /// Why no snapshot could be taken (ptrace refused, exit stop missed); outputs are still voted.
    pub unavailable: Option<String>,
    /// Bytes read and hashed, and the time it took inside the monitor.
    pub bytes: u64,
    pub cost_ms: f64,
    /// The fault injected into this replica (`--inject`), or why it could not be.
    #[serde(default)]
    pub injected: Option<crate::inject::Injected>,
    #[serde(default)]
    pub inject_error: Option<String>,
    /// The pid whose copies are blanked (the `tid` step), and the pages that hold it, whole.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(skip)]
    pub pid_pages: Vec<PidPage>,
    /// Set when the monitor hit [`MAX_PID_PAGES`]: pages that hold the pid at or above this address
    /// were not all shipped.
    #[serde(default)]
    pub pid_pages_from: Option<u64>,
    /// Input replication (`--mem-det clock,urandom`): what this replica asked and how it was answered.
    #[serde(default)]
    pub inputs: Option<InputStats>,
    /// `--checkpoint`: the checkpoints taken and the rollbacks done in this replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<crate::epoch::CheckpointLog>,
}

/// One replica's replicated inputs, per kind of question.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputStats {
    pub kinds: Vec<KindStats>,
    /// The first entry of the answer log where another replica had asked a different question.
    pub mismatch: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindStats {
    pub kind: String,
    /// Questions asked, and how they were answered: from another replica's logged answer, first (the
    /// real answer, logged for the others), or for real without replication (log full, say why in notes).
    pub asked: u64,
    pub replicated: u64,
    pub first: u64,
    pub unreplicated: u64,
    /// A digest of the sequence of questions (syscall and argument): equal in replicas that asked the same.
    pub sequence: String,
}

/// A replica whose sequence of questions of one kind differs from the one a strict majority asked: its
/// control flow left theirs (a fault), even if its memory and outputs happen to agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequenceDivergence {
    pub replica: usize,
    pub kind: String,
    pub asked: u64,
    pub majority_asked: u64,
    /// Where the monitors saw the questions part (a replica's `InputStats::mismatch`), when one did.
    pub detail: Option<String>,
}

/// Vote the question sequences kind by kind among the replicas with a snapshot.
pub fn vote_sequences(snaps: &[Option<&MemSnapshot>]) -> Vec<SequenceDivergence> {
    let mut out = Vec::new();
    let inputs: Vec<Option<&InputStats>> = snaps.iter().map(|s| s.and_then(|s| s.inputs.as_ref())).collect();
    // Children's questions are replicated but not voted: concurrent children ask in the scheduler's order.
    let kinds: std::collections::BTreeSet<&str> = inputs
        .iter()
        .flatten()
        .flat_map(|i| i.kinds.iter().map(|k| k.kind.as_str()))
        .filter(|k| !k.ends_with("-children"))
        .collect();
    let voters: Vec<usize> = (0..snaps.len()).filter(|&i| inputs[i].is_some()).collect();
    let detail = inputs.iter().flatten().find_map(|i| i.mismatch.clone());
    for kind in kinds {
        let seen: Vec<(u64, &str)> = voters
            .iter()
            .map(|&i| {
                let k = inputs[i].and_then(|s| s.kinds.iter().find(|k| k.kind == kind));
                k.map_or((0, ""), |k| (k.asked, k.sequence.as_str()))
            })
            .collect();
        let v = crate::vote::vote(&seen);
        let Some(g) = v.majority() else { continue };
        for (j, &i) in voters.iter().enumerate() {
            if seen[j] != g.key {
                out.push(SequenceDivergence {
                    replica: i,
                    kind: kind.to_string(),
                    asked: seen[j].0,
                    majority_asked: g.key.0,
                    detail: inputs[i].and_then(|s| s.mismatch.clone()).or_else(|| detail.clone()),
                });
            }
        }
    }
    out
}

/// A page in which the replica found its own pid (an aligned 32-bit word equal to it), shipped whole
/// rather than blanked in the monitor. A word equal to the pid is not always a copy of it: a malloc chunk
/// size or a counter can equal a low pid in one replica only, and blanking it there alone would make that
/// replica's page differ. Only the voter, which sees every replica, can tell a pid slot (the word holds
/// each replica's own pid, in a majority of them) from a coincidence, so the bytes travel to it.
#[derive(Debug, Clone, PartialEq)]
pub struct PidPage {
    pub addr: u64,
    /// The page's bytes ([`PAGE`] of them).
    pub bytes: Vec<u8>,
}

/// One writable private mapping and the digests of its pages, in address order.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    pub start: u64,
    pub end: u64,
    pub digests: PageDigests,
}

impl Region {
    pub fn pages(&self) -> impl Iterator<Item = PageDigest> + '_ {
        self.digests.pages()
    }

    pub fn page_count(&self) -> usize {
        self.digests.page_count() as usize
    }
}

/// A page's XXH3-128 digest, as its 16 little-endian bytes.
pub type PageDigest = [u8; 16];

/// Stands for a page that could not be read. Not an XXH3 output by construction, only by chance
/// (2^-128 per page), which is the chance the digests already accept for a missed flip.
pub const UNREADABLE: PageDigest = *b"tmr:unreadable!\0";

/// What a run unit of [`PageDigests`] stands for.
const RUN_ZEROS: u64 = 0;
const RUN_UNREADABLE: u64 = 1;

/// A region's page digests, 16 bytes per unit: a unit is one page's digest, or, when its index is listed
/// in `runs`, a run of pages that read as zeros or could not be read (its count, then its kind, as two
/// little-endian u64). A never-touched page of a 16 GiB `MAP_NORESERVE` mapping costs nothing to read
/// (the monitor skips it, see `trace::memsnap`), and must cost nothing to ship, parse and vote either.
/// This is also the layout of the snapshot file (`trace::snapfile`), so reading one is a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageDigests {
    units: Vec<PageDigest>,
    /// Indices into `units` of the runs, increasing.
    runs: Vec<u64>,
}

impl PageDigests {
    /// One digest per page, no runs (tests, and pages already hashed elsewhere).
    pub fn from_digests(units: Vec<PageDigest>) -> Self {
        PageDigests { units, runs: Vec::new() }
    }

    /// Units and run indices as stored in a snapshot file, checked: every run index in bounds and
    /// increasing, every run of a known kind and at least one page long.
    pub fn from_parts(units: Vec<PageDigest>, runs: Vec<u64>) -> Result<Self, String> {
        let mut last = None;
        for &r in &runs {
            if last.is_some_and(|l| r <= l) {
                return Err(format!("run index {r} is not after the previous one"));
            }
            let unit = units.get(r as usize).ok_or_else(|| format!("run index {r} is past the units"))?;
            let (n, kind) = run_of(unit);
            if n == 0 || kind > RUN_UNREADABLE {
                return Err(format!("run at unit {r} has {n} pages of kind {kind}"));
            }
            last = Some(r);
        }
        Ok(PageDigests { units, runs })
    }

    pub fn units(&self) -> &[PageDigest] {
        &self.units
    }

    pub fn runs(&self) -> &[u64] {
        &self.runs
    }

    /// The units as bytes (runs included), for a digest of the whole region in reports.
    pub fn as_bytes(&self) -> &[u8] {
        self.units.as_flattened()
    }

    /// Each page's digest in order; a run yields the zero digest or [`UNREADABLE`] once per page.
    pub fn pages(&self) -> impl Iterator<Item = PageDigest> + '_ {
        let mut runs = self.runs.iter().peekable();
        self.units.iter().enumerate().flat_map(move |(i, u)| {
            if runs.next_if(|&&r| r == i as u64).is_some() {
                let (n, kind) = run_of(u);
                let d = if kind == RUN_ZEROS { zero_digest() } else { UNREADABLE };
                std::iter::repeat_n(d, n as usize)
            } else {
                std::iter::repeat_n(*u, 1)
            }
        })
    }

    /// Pages covered, saturating (a checked file cannot overflow: see `trace::snapfile`).
    pub fn page_count(&self) -> u64 {
        let runs: u64 =
            self.runs.iter().map(|&r| run_of(&self.units[r as usize]).0).fold(0, u64::saturating_add);
        runs.saturating_add((self.units.len() - self.runs.len()) as u64)
    }
}

/// A run unit's (page count, kind).
fn run_of(unit: &PageDigest) -> (u64, u64) {
    let (n, kind) = unit.split_at(8);
    (
        u64::from_le_bytes(n.try_into().expect("8 bytes")),
        u64::from_le_bytes(kind.try_into().expect("8 bytes")),
    )
}

fn run_unit(n: u64, kind: u64) -> PageDigest {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&n.to_le_bytes());
    u[8..].copy_from_slice(&kind.to_le_bytes());
    u
}

/// The digest of a page of zeros.
pub fn zero_digest() -> PageDigest {
    static ZERO: std::sync::OnceLock<PageDigest> = std::sync::OnceLock::new();
    *ZERO.get_or_init(|| page_digest(&[0u8; PAGE as usize]))
}

/// Builds [`PageDigests`]: one digest per page, with runs of zero pages and of unreadable pages folded
/// into one unit each.
#[derive(Debug, Default)]
pub struct Digests {
    out: PageDigests,
    zeros: u64,
}

impl Digests {
    /// Hash one page's bytes.
    pub fn push_page(&mut self, page: &[u8]) {
        let d = page_digest(page);
        if d == zero_digest() {
            self.zeros += 1;
        } else {
            self.flush();
            self.out.units.push(d);
        }
    }

    /// Pages known to read as zeros without reading them.
    pub fn push_zeros(&mut self, n: usize) {
        self.zeros += n as u64;
    }

    pub fn push_unreadable(&mut self) {
        self.flush();
        let out = &mut self.out;
        if let Some(&last) = out.runs.last().filter(|&&r| r + 1 == out.units.len() as u64) {
            let (n, kind) = run_of(&out.units[last as usize]);
            if kind == RUN_UNREADABLE {
                out.units[last as usize] = run_unit(n + 1, kind);
                return;
            }
        }
        out.runs.push(out.units.len() as u64);
        out.units.push(run_unit(1, RUN_UNREADABLE));
    }

    fn flush(&mut self) {
        let n = std::mem::take(&mut self.zeros);
        if n > 0 {
            self.out.runs.push(self.out.units.len() as u64);
            self.out.units.push(run_unit(n, RUN_ZEROS));
        }
    }

    pub fn finish(mut self) -> PageDigests {
        self.flush();
        self.out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageDivergence {
    pub replica: usize,
    pub region: String,
    pub region_start: u64,
    pub region_end: u64,
    pub addr: u64,
    /// Page index within the region.
    pub page: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoisePage {
    pub region: String,
    pub addr: u64,
    /// How many distinct values the replicas had for it.
    pub distinct: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemVerdict {
    pub pages_compared: usize,
    pub divergent: Vec<PageDivergence>,
    pub noise: Vec<NoisePage>,
    /// Replicas that asked other questions than the majority (input replication).
    pub sequences: Vec<SequenceDivergence>,
    /// Per replica: a digest of its divergent pages, equal for every replica that agrees with the
    /// page-majority everywhere, so memory can join the fingerprint without noise pages breaking ties.
    #[serde(skip)]
    pub keys: Vec<[u8; 32]>,
}

/// One replica's view of one page: digest, region name, region start and end.
type PageSeen<'a> = (PageDigest, &'a str, u64, u64);

/// XXH3-128 of one page. Page digests guard against random faults, not adversaries, so a
/// non-cryptographic 128-bit hash is enough (a random flip collides with probability 2^-128), and it
/// runs 4x faster than blake3 on 4 KiB pages here (0.11 vs 0.48 ms/MB), leaving the cross-process
/// read as the main cost. Output streams use the same hash (`crate::digest`).
pub fn page_digest(page: &[u8]) -> PageDigest {
    twox_hash::XxHash3_128::oneshot(page).to_le_bytes()
}

/// Offsets of the aligned 32-bit words equal to `pid`.
pub fn pid_words(page: &[u8], pid: u32) -> Vec<usize> {
    let v = pid.to_le_bytes();
    page.chunks_exact(4).enumerate().filter(|(_, w)| *w == v).map(|(i, _)| 4 * i).collect()
}

/// How the voter sees the pages that hold the replicas' pids.
struct PidView {
    /// Per replica: page address -> digest with only its *pid slots* blanked (the words where a strict
    /// majority of the voters hold their own pid), overriding its region digest. A word that equals the
    /// pid in one replica only is a coincidence and keeps its bytes, so it compares equal with the same
    /// bytes in the others. A replica that lacks the pid in a slot keeps what it has there, a real
    /// difference: the blanked offsets are part of the digest, so even a slot zeroed by a fault differs
    /// from a blanked one.
    digests: Vec<BTreeMap<u64, PageDigest>>,
    /// Per replica: pages it cannot be compared on. A monitor ships at most [`MAX_PID_PAGES`] pages that
    /// hold its pid; on a page past its cap where the others found pid slots, its raw digest says nothing.
    abstain: Vec<std::collections::BTreeSet<u64>>,
}

/// Most pages a monitor ships whole for pid blanking (each costs the snapshot 4 KiB, 256 digests' worth).
pub const MAX_PID_PAGES: usize = 256;

fn pid_view(snaps: &[Option<&MemSnapshot>]) -> PidView {
    /// Replica, page bytes, offsets of its pid words.
    type Holder = (usize, Vec<u8>, Vec<usize>);
    let mut pages: BTreeMap<u64, Vec<Holder>> = BTreeMap::new();
    for (i, snap) in snaps.iter().enumerate() {
        let Some(snap) = snap else { continue };
        let Some(pid) = snap.pid else { continue };
        for p in snap.pid_pages.iter().filter(|p| p.bytes.len() == PAGE as usize) {
            let words = pid_words(&p.bytes, pid);
            pages.entry(p.addr).or_default().push((i, p.bytes.clone(), words));
        }
    }
    let mut view = PidView {
        digests: vec![BTreeMap::new(); snaps.len()],
        abstain: vec![Default::default(); snaps.len()],
    };
    for (addr, seen) in pages {
        let capped: Vec<usize> = (0..snaps.len())
            .filter(|&i| {
                snaps[i].is_some_and(|s| s.pid_pages_from.is_some_and(|from| addr >= from))
                    && !seen.iter().any(|h| h.0 == i)
            })
            .collect();
        let voters = snaps.iter().flatten().count() - capped.len();
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for w in seen.iter().flat_map(|s| &s.2) {
            *counts.entry(*w).or_default() += 1;
        }
        let slot = |w: &usize| counts[w] * 2 > voters;
        if seen.iter().any(|h| h.2.iter().any(slot)) {
            for &i in &capped {
                view.abstain[i].insert(addr);
            }
        }
        for (i, mut bytes, words) in seen {
            let blanked: Vec<usize> = words.into_iter().filter(slot).collect();
            for &w in &blanked {
                bytes[w..w + 4].fill(0);
            }
            bytes.extend(blanked.iter().flat_map(|&w| (w as u16).to_le_bytes()));
            view.digests[i].insert(addr, page_digest(&bytes));
        }
    }
    view
}

/// Regions (start, end) that every voter has with the same bounds and identical digests, and no pid
/// page in: they agree everywhere and skip the per-page vote (a 100 MiB heap is 25,600 pages, and this
/// runs in tmr after the last monitor has finished). Also their page count.
fn agreeing_regions(
    snaps: &[Option<&MemSnapshot>],
    pid: &PidView,
) -> (std::collections::HashSet<(u64, u64)>, usize) {
    let mut voters = snaps.iter().flatten();
    let Some(first) = voters.next() else { return Default::default() };
    let others: Vec<&&MemSnapshot> = voters.collect();
    let mut agreeing = std::collections::HashSet::new();
    let mut pages = 0;
    for r in &first.regions {
        let same = |s: &&&MemSnapshot| {
            s.regions.iter().any(|o| o.start == r.start && o.end == r.end && o.digests == r.digests)
        };
        let pid_free = pid.digests.iter().all(|d| d.range(r.start..r.end).next().is_none());
        if pid_free && others.iter().all(same) {
            agreeing.insert((r.start, r.end));
            pages += r.page_count();
        }
    }
    (agreeing, pages)
}

/// Regions outside `agreeing` that every voter has with the same bounds: walked page by page in
/// lockstep, so that only pages that differ are stored (a 16 GiB sparse mapping is 4 M pages, and tmr's
/// memory must not grow with it).
fn same_bounds(
    snaps: &[Option<&MemSnapshot>],
    agreeing: &std::collections::HashSet<(u64, u64)>,
) -> std::collections::BTreeSet<(u64, u64)> {
    let mut voters = snaps.iter().flatten();
    let Some(first) = voters.next() else { return Default::default() };
    let others: Vec<&&MemSnapshot> = voters.collect();
    first
        .regions
        .iter()
        .map(|r| (r.start, r.end))
        .filter(|b| !agreeing.contains(b))
        .filter(|&(s, e)| others.iter().all(|o| o.regions.iter().any(|r| r.start == s && r.end == e)))
        .collect()
}

/// Walk the region `bounds` of every voter in lockstep; hand `found` (replica, address, digest, region)
/// for each page where they do not all agree (or a pid page overrides a digest). Returns the number of
/// pages where all agree.
fn differing_pages<'a>(
    snaps: &[Option<&'a MemSnapshot>],
    pid: &'a PidView,
    (start, end): (u64, u64),
    found: &mut dyn FnMut(usize, u64, PageDigest, &'a Region),
) -> usize {
    let regions: Vec<(usize, &'a Region)> = snaps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            s.and_then(|s| s.regions.iter().find(|r| r.start == start && r.end == end)).map(|r| (i, r))
        })
        .collect();
    let mut iters: Vec<_> = regions.iter().map(|(_, r)| r.pages()).collect();
    let mut row: Vec<PageDigest> = Vec::with_capacity(regions.len());
    let (mut addr, mut equal) = (start, 0);
    loop {
        row.clear();
        row.extend(iters.iter_mut().map_while(Iterator::next));
        if row.len() < regions.len() || row.is_empty() {
            return equal;
        }
        let overridden = regions.iter().any(|(i, _)| pid.digests[*i].contains_key(&addr));
        if !overridden && row.iter().all(|d| *d == row[0]) {
            equal += 1;
        } else {
            for (&(i, r), d) in regions.iter().zip(&row) {
                found(i, addr, pid.digests[i].get(&addr).copied().unwrap_or(*d), r);
            }
        }
        addr += PAGE;
    }
}

/// Vote page by page across replicas. `None` snapshots (memory voting unavailable for that replica)
/// take no part; a page missing from a replica counts as a different value.
pub fn vote_pages(snaps: &[Option<&MemSnapshot>]) -> MemVerdict {
    // addr -> per-replica (digest, region name, region bounds)
    let mut pages: BTreeMap<u64, Vec<Option<PageSeen>>> = BTreeMap::new();
    let n = snaps.len();
    let pid = pid_view(snaps);
    let (agreeing, agreeing_pages) = agreeing_regions(snaps, &pid);
    let lockstep = same_bounds(snaps, &agreeing);
    let mut equal_pages = 0;
    for &bounds in &lockstep {
        equal_pages += differing_pages(snaps, &pid, bounds, &mut |i, addr, digest, r| {
            let slot = pages.entry(addr).or_insert_with(|| vec![None; n]);
            slot[i] = Some((digest, r.name.as_str(), r.start, r.end));
        });
    }
    for (i, snap) in snaps.iter().enumerate() {
        let Some(snap) = snap else { continue };
        for r in snap
            .regions
            .iter()
            .filter(|r| !agreeing.contains(&(r.start, r.end)) && !lockstep.contains(&(r.start, r.end)))
        {
            for (p, digest) in r.pages().enumerate() {
                let addr = r.start + p as u64 * PAGE;
                let digest = pid.digests[i].get(&addr).copied().unwrap_or(digest);
                let slot = pages.entry(addr).or_insert_with(|| vec![None; n]);
                slot[i] = Some((digest, r.name.as_str(), r.start, r.end));
            }
        }
    }
    let voters: Vec<usize> = (0..n).filter(|&i| snaps[i].is_some()).collect();
    let mut divergent = Vec::new();
    let mut noise = Vec::new();
    let mut per_replica: Vec<blake3::Hasher> = (0..n).map(|_| blake3::Hasher::new()).collect();
    for (addr, values) in &pages {
        let voters: Vec<usize> = voters.iter().copied().filter(|&i| !pid.abstain[i].contains(addr)).collect();
        let keys: Vec<Option<PageDigest>> = voters.iter().map(|&i| values[i].map(|v| v.0)).collect();
        let v = crate::vote::vote(&keys);
        let (name, start, end) =
            values.iter().flatten().map(|v| (v.1, v.2, v.3)).next().expect("a page seen by someone");
        match v.majority() {
            // Most replicas lack the page: a layout difference, not corruption of the one that has it.
            Some(g) if g.key.is_none() => {
                noise.push(NoisePage { region: name.to_string(), addr: *addr, distinct: v.groups.len() })
            }
            Some(g) => {
                for (j, &i) in voters.iter().enumerate() {
                    if keys[j] != g.key {
                        divergent.push(PageDivergence {
                            replica: i,
                            region: name.to_string(),
                            region_start: start,
                            region_end: end,
                            addr: *addr,
                            page: (addr - start) / PAGE,
                        });
                        per_replica[i].update(&addr.to_le_bytes());
                        per_replica[i].update(keys[j].as_ref().map_or(b"-" as &[u8], |d| d));
                    }
                }
            }
            None => noise.push(NoisePage { region: name.to_string(), addr: *addr, distinct: v.groups.len() }),
        }
    }
    let sequences = vote_sequences(snaps);
    for d in &sequences {
        per_replica[d.replica].update(b"questions");
        per_replica[d.replica].update(d.kind.as_bytes());
    }
    MemVerdict {
        pages_compared: pages.len() + agreeing_pages + equal_pages,
        divergent,
        noise,
        sequences,
        keys: per_replica.into_iter().map(|h| *h.finalize().as_bytes()).collect(),
    }
}

/// A single replica's memory key against a reference snapshot (the voted replica's), for reruns that
/// have no siblings to vote with: consistent with [`vote_pages`]' keys, and blind to known noise pages.
/// Pid slots are the words where both hold their own pid.
pub fn key_against(reference: &MemSnapshot, other: &MemSnapshot, noise: &[NoisePage]) -> [u8; 32] {
    let both = [Some(reference), Some(other)];
    let pid = pid_view(&both);
    let (agreeing, _) = agreeing_regions(&both, &pid);
    let lockstep = same_bounds(&both, &agreeing);
    // addr -> (reference's digest, other's digest), for the pages where they differ.
    let mut differ: BTreeMap<u64, (Option<PageDigest>, Option<PageDigest>)> = BTreeMap::new();
    for &bounds in &lockstep {
        differing_pages(&both, &pid, bounds, &mut |i, addr, digest, _| {
            let e = differ.entry(addr).or_default();
            *(if i == 0 { &mut e.0 } else { &mut e.1 }) = Some(digest);
        });
    }
    let index = |s: &MemSnapshot, pid_digests: &BTreeMap<u64, PageDigest>| -> BTreeMap<u64, PageDigest> {
        s.regions
            .iter()
            .filter(|r| !agreeing.contains(&(r.start, r.end)) && !lockstep.contains(&(r.start, r.end)))
            .flat_map(|r| r.pages().enumerate().map(move |(i, d)| (r.start + i as u64 * PAGE, d)))
            .map(|(addr, d)| (addr, pid_digests.get(&addr).copied().unwrap_or(d)))
            .collect()
    };
    let (a, b) = (index(reference, &pid.digests[0]), index(other, &pid.digests[1]));
    let addrs: std::collections::BTreeSet<u64> = a.keys().chain(b.keys()).copied().collect();
    for addr in addrs {
        differ.insert(addr, (a.get(&addr).copied(), b.get(&addr).copied()));
    }
    let mut noisy: std::collections::HashSet<u64> = noise.iter().map(|n| n.addr).collect();
    noisy.extend(pid.abstain.iter().flatten());
    let mut h = blake3::Hasher::new();
    for (addr, (x, y)) in differ {
        if x != y && !noisy.contains(&addr) {
            h.update(&addr.to_le_bytes());
            h.update(y.as_ref().map_or(b"-" as &[u8], |d| d));
        }
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(heap: &[&str], stack: &[&str]) -> MemSnapshot {
        let region = |name: &str, start: u64, pages: &[&str]| Region {
            name: name.into(),
            start,
            end: start + pages.len() as u64 * PAGE,
            digests: PageDigests::from_digests(pages.iter().map(|s| page_digest(s.as_bytes())).collect()),
        };
        MemSnapshot {
            regions: vec![region("[heap]", 0x1000_0000, heap), region("[stack]", 0x7fff_0000, stack)],
            threads: 1,
            ..Default::default()
        }
    }

    #[test]
    fn identical_replicas_have_no_divergence_and_no_noise() {
        let a = snap(&["a", "b"], &["s"]);
        let v = vote_pages(&[Some(&a), Some(&a.clone()), Some(&a.clone())]);
        assert_eq!((v.pages_compared, v.divergent.len(), v.noise.len()), (3, 0, 0));
        assert!(v.keys.iter().all(|k| *k == v.keys[0]));
    }

    #[test]
    fn a_flipped_page_is_blamed_on_its_replica_at_its_address() {
        let a = snap(&["a", "b"], &["s"]);
        let flipped = snap(&["a", "B"], &["s"]);
        let v = vote_pages(&[Some(&a), Some(&flipped), Some(&a.clone())]);
        assert_eq!(
            v.divergent,
            vec![PageDivergence {
                replica: 1,
                region: "[heap]".into(),
                region_start: 0x1000_0000,
                region_end: 0x1000_2000,
                addr: 0x1000_1000,
                page: 1
            }]
        );
        assert_eq!(v.keys[0], v.keys[2]);
        assert_ne!(v.keys[0], v.keys[1]);
    }

    #[test]
    fn all_distinct_pages_are_noise_not_divergence_and_do_not_split_keys() {
        let v = vote_pages(&[
            Some(&snap(&["a"], &["1"])),
            Some(&snap(&["a"], &["2"])),
            Some(&snap(&["a"], &["3"])),
        ]);
        assert_eq!(v.divergent.len(), 0);
        assert_eq!(v.noise, vec![NoisePage { region: "[stack]".into(), addr: 0x7fff_0000, distinct: 3 }]);
        assert!(v.keys.iter().all(|k| *k == v.keys[0]));
    }

    #[test]
    fn a_rerun_key_matches_the_majority_key_when_memory_agrees() {
        let a = snap(&["a", "b"], &["s"]);
        let flipped = snap(&["a", "B"], &["s"]);
        let v = vote_pages(&[Some(&a), Some(&flipped), Some(&a.clone())]);
        assert_eq!(key_against(&a, &a.clone(), &v.noise), v.keys[0]);
        assert_eq!(key_against(&a, &flipped, &v.noise), v.keys[1]);
        // Known noise pages never split a rerun off.
        let noisy = snap(&["a", "b"], &["t"]);
        assert_eq!(
            key_against(
                &a,
                &noisy,
                &[NoisePage { region: "[stack]".into(), addr: 0x7fff_0000, distinct: 3 }]
            ),
            v.keys[0]
        );
    }

    fn asked(kinds: &[(&str, u64, &str)], mismatch: Option<&str>) -> MemSnapshot {
        let kinds = kinds
            .iter()
            .map(|&(kind, asked, sequence)| KindStats {
                kind: kind.into(),
                asked,
                sequence: sequence.into(),
                ..Default::default()
            })
            .collect();
        MemSnapshot {
            inputs: Some(InputStats { kinds, mismatch: mismatch.map(str::to_string) }),
            ..snap(&["a"], &["s"])
        }
    }

    #[test]
    fn the_replica_that_asked_other_questions_dissents_whoever_saw_the_difference() {
        let same = asked(&[("clock", 2, "aa"), ("clock-children", 5, "c1")], Some("clock question #1: …"));
        let odd = asked(&[("clock", 3, "bb"), ("clock-children", 7, "c2")], None);
        let snaps = [same.clone(), odd, asked(&[("clock", 2, "aa"), ("clock-children", 1, "c3")], None)];
        let v = verdict(&snaps);
        assert_eq!(v.sequences.len(), 1, "children's questions are not voted: {:?}", v.sequences);
        let d = &v.sequences[0];
        assert_eq!((d.replica, d.kind.as_str(), d.asked, d.majority_asked), (1, "clock", 3, 2));
        assert_eq!(d.detail.as_deref(), Some("clock question #1: …"), "the detail another replica saw");
        assert!(v.divergent.is_empty());
        assert_eq!(v.keys[0], v.keys[2]);
        assert_ne!(v.keys[0], v.keys[1], "the odd replica's memory key dissents");
        // No majority (all three differ): nobody is named.
        let three = [same, asked(&[("clock", 3, "bb")], None), asked(&[("clock", 4, "cc")], None)];
        assert!(verdict(&three).sequences.is_empty());
    }

    #[test]
    fn a_replica_without_a_snapshot_abstains() {
        let a = snap(&["a"], &["s"]);
        let b = snap(&["x"], &["s"]);
        let v = vote_pages(&[Some(&a), None, Some(&b)]);
        // Two voters disagreeing on the heap page: no strict majority of 2 -> noise.
        assert_eq!(v.noise.len(), 1);
        assert_eq!(v.divergent.len(), 0);
    }

    /// A one-page heap snapshot of replica `pid` from real bytes, shipped whole when it holds the pid,
    /// as the monitor does.
    fn heap_of(pid: u32, words: &[(usize, u32)]) -> MemSnapshot {
        let mut page = vec![7u8; PAGE as usize];
        for &(at, v) in words {
            page[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        let digests = PageDigests::from_digests(vec![page_digest(&page)]);
        let holds = !pid_words(&page, pid).is_empty();
        MemSnapshot {
            regions: vec![Region { name: "[heap]".into(), start: 0x1000, end: 0x2000, digests }],
            pid: Some(pid),
            pid_pages: if holds { vec![PidPage { addr: 0x1000, bytes: page }] } else { vec![] },
            ..Default::default()
        }
    }

    fn verdict(snaps: &[MemSnapshot]) -> MemVerdict {
        vote_pages(&snaps.iter().map(Some).collect::<Vec<_>>())
    }

    #[test]
    fn each_replica_keeping_its_own_pid_in_the_same_word_agrees() {
        let v = verdict(&[heap_of(500, &[(8, 500)]), heap_of(501, &[(8, 501)]), heap_of(502, &[(8, 502)])]);
        assert_eq!((v.divergent.len(), v.noise.len()), (0, 0), "{v:?}");
    }

    #[test]
    fn data_that_happens_to_equal_one_replicas_pid_is_not_blanked_there_alone() {
        // A chunk size of 501 in every replica; replica 1's pid is 501.
        let v =
            verdict(&[heap_of(500, &[(16, 501)]), heap_of(501, &[(16, 501)]), heap_of(502, &[(16, 501)])]);
        assert_eq!((v.divergent.len(), v.noise.len()), (0, 0), "{v:?}");
        // The same, in a page that also holds a real pid copy: only the shared slot is blanked.
        let v = verdict(&[
            heap_of(500, &[(8, 500), (16, 501)]),
            heap_of(501, &[(8, 501), (16, 501)]),
            heap_of(502, &[(8, 502), (16, 501)]),
        ]);
        assert_eq!((v.divergent.len(), v.noise.len()), (0, 0), "{v:?}");
    }

    #[test]
    fn a_flipped_pid_word_is_still_a_divergence() {
        let v =
            verdict(&[heap_of(500, &[(8, 500)]), heap_of(501, &[(8, 501 ^ 4)]), heap_of(502, &[(8, 502)])]);
        assert_eq!(v.divergent.iter().map(|d| d.replica).collect::<Vec<_>>(), [1]);
        // A flip elsewhere in a page that holds the pid, too.
        let v = verdict(&[
            heap_of(500, &[(8, 500)]),
            heap_of(501, &[(8, 501), (100, 9)]),
            heap_of(502, &[(8, 502)]),
        ]);
        assert_eq!(v.divergent.iter().map(|d| d.replica).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_pid_slot_zeroed_by_a_fault_is_a_divergence() {
        // 4096 ^ 4096 = 0: the one replica now holds no pid word at all, and ships no page.
        let v =
            verdict(&[heap_of(4095, &[(8, 4095)]), heap_of(4096, &[(8, 0)]), heap_of(4097, &[(8, 4097)])]);
        assert_eq!(v.divergent.iter().map(|d| d.replica).collect::<Vec<_>>(), [1], "{v:?}");
    }

    #[test]
    fn a_rerun_key_blanks_the_pid_slots_it_shares_with_the_reference() {
        let (a, b, c) = (
            heap_of(500, &[(8, 500), (16, 501)]),
            heap_of(501, &[(8, 501), (16, 501)]),
            heap_of(502, &[(8, 502), (16, 501)]),
        );
        let v = verdict(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(key_against(&a, &b, &v.noise), v.keys[0]);
        assert_eq!(key_against(&a, &c, &v.noise), v.keys[0]);
        assert_ne!(key_against(&a, &heap_of(503, &[(8, 503), (16, 502)]), &v.noise), v.keys[0]);
    }

    #[test]
    fn zero_and_unreadable_runs_fold_and_expand_to_the_same_pages() {
        let page = |b: u8| vec![b; PAGE as usize];
        let mut d = Digests::default();
        d.push_page(&page(1));
        d.push_page(&page(0));
        d.push_zeros(1 << 16);
        d.push_page(&page(0));
        d.push_page(&page(2));
        d.push_page(&page(0));
        d.push_unreadable();
        d.push_unreadable();
        d.push_page(&page(3));
        let folded = d.finish();
        assert_eq!(folded.units().len(), 6, "{folded:?}");
        assert_eq!(folded.runs(), [1, 3, 4]);
        let pages: Vec<PageDigest> = folded.pages().collect();
        assert_eq!(folded.page_count() as usize, pages.len());
        assert_eq!(pages.len(), 1 + 1 + (1 << 16) + 1 + 1 + 1 + 2 + 1);
        assert_eq!(
            (pages[0], pages[1], pages[(1 << 16) + 2]),
            (page_digest(&page(1)), zero_digest(), zero_digest())
        );
        assert_eq!(pages[(1 << 16) + 3], page_digest(&page(2)));
        assert_eq!(pages[(1 << 16) + 4], zero_digest());
        assert_eq!(pages[(1 << 16) + 5..(1 << 16) + 7], [UNREADABLE, UNREADABLE]);
        assert_eq!(pages[(1 << 16) + 7], page_digest(&page(3)));
        assert_eq!(
            PageDigests::from_parts(folded.units().to_vec(), folded.runs().to_vec()),
            Ok(folded.clone())
        );
    }

    #[test]
    fn stored_runs_are_checked() {
        let units = vec![run_unit(3, RUN_ZEROS), page_digest(b"x"), run_unit(0, RUN_ZEROS), run_unit(1, 7)];
        assert!(PageDigests::from_parts(units.clone(), vec![0]).is_ok());
        assert!(PageDigests::from_parts(units.clone(), vec![4]).is_err(), "past the units");
        assert!(PageDigests::from_parts(units.clone(), vec![0, 0]).is_err(), "not increasing");
        assert!(PageDigests::from_parts(units.clone(), vec![2]).is_err(), "an empty run");
        assert!(PageDigests::from_parts(units, vec![3]).is_err(), "an unknown kind");
    }
}
