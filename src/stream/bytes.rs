//! The committed offset of one compared stream, byte by byte: the longest prefix on which a strict
//! majority of replicas agree. Strict majorities intersect, so every committed byte belongs to whichever
//! output finally wins the vote, if any does: it can be delivered at once and never taken back.
//!
//! Pure: chunks in, committed bytes out, plus each replica's digest (blake3 of all it wrote) at the
//! end, computed without hashing agreeing bytes twice: the committed stream is hashed once, and a
//! replica's digest is that state at its own length (or its own hasher from where it diverged).
//!
//! Memory: a replica's bytes are kept only while they lie beyond the committed offset, and committed
//! bytes only while an agreeing replica has not reached them. A replica whose bytes differ from what a
//! majority committed has *diverged*: it can never join a committing majority again, and keeps nothing.
//! A replica far ahead is either worth waiting for ([`ByteCommitter::should_wait`]: others can still
//! catch up and agree) or *hopeless* (too few others can ever write the same bytes), in which case it
//! keeps nothing either ([`ByteCommitter::give_up`]).

use std::collections::VecDeque;

/// Committed bytes kept for the report's context around a divergence.
const CONTEXT: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Stream offset of the first byte where this replica differs from the committing majority.
    pub offset: u64,
    /// The 1-based line that byte is on.
    pub line: u64,
    /// Up to [`CONTEXT`] committed bytes just before `offset` (the line it began, usually).
    pub before: Vec<u8>,
    /// What the majority committed at `offset` (as far as known when the divergence was seen).
    pub majority: Vec<u8>,
    /// What this replica wrote at `offset` (a short window).
    pub replica: Vec<u8>,
}

#[derive(Default)]
struct Lane {
    /// Bytes this replica has written.
    len: u64,
    /// Its bytes beyond the committed offset, while it may still take part in a commit.
    pending: Vec<u8>,
    diverged: Option<Divergence>,
    /// Its own digest state once it no longer follows the committed stream (diverged or given up).
    own: Option<blake3::Hasher>,
    finished: bool,
    digest: Option<[u8; 32]>,
}

impl Lane {
    fn follows(&self) -> bool {
        self.own.is_none()
    }
}

pub struct ByteCommitter {
    majority: usize,
    committed: u64,
    /// Committed bytes from `base` up to `committed`, kept for following replicas that lag behind.
    tail: VecDeque<u8>,
    base: u64,
    /// Digest state of the committed stream's first `base` bytes, and their number of newlines.
    hasher: blake3::Hasher,
    base_lines: u64,
    /// The last committed bytes, for divergence context.
    recent: VecDeque<u8>,
    lanes: Vec<Lane>,
}

impl ByteCommitter {
    pub fn new(replicas: usize) -> Self {
        ByteCommitter {
            majority: replicas / 2 + 1,
            committed: 0,
            tail: VecDeque::new(),
            base: 0,
            hasher: blake3::Hasher::new(),
            base_lines: 0,
            recent: VecDeque::new(),
            lanes: (0..replicas).map(|_| Lane::default()).collect(),
        }
    }

    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Bytes held in RAM, beyond the committed offset and behind it (for laggards).
    pub fn held(&self) -> usize {
        self.tail.len() + self.lanes.iter().map(|l| l.pending.len()).sum::<usize>()
    }

    /// Bytes `replica` holds beyond the committed offset.
    pub fn ahead(&self, replica: usize) -> usize {
        self.lanes[replica].pending.len()
    }

    pub fn len(&self, replica: usize) -> u64 {
        self.lanes[replica].len
    }

    pub fn divergence(&self, replica: usize) -> Option<&Divergence> {
        self.lanes[replica].diverged.as_ref()
    }

    /// The bytes `replica` wrote beyond the committed offset, while it follows the committed prefix:
    /// what is left to deliver if it wins the vote.
    pub fn remainder(&self, replica: usize) -> Option<&[u8]> {
        let lane = &self.lanes[replica];
        (lane.follows() && lane.len >= self.committed).then_some(&lane.pending[..])
    }

    /// `replica` wrote `chunk` (appended to what it wrote before). Returns the bytes this commits, which
    /// extend the committed prefix in order and are final.
    pub fn push(&mut self, replica: usize, chunk: &[u8]) -> Vec<u8> {
        let at = self.lanes[replica].len;
        self.lanes[replica].len += chunk.len() as u64;
        if let Some(own) = self.lanes[replica].own.as_mut() {
            own.update(chunk);
            return Vec::new();
        }
        let mut chunk = chunk;
        if at < self.committed {
            // A laggard: what it wrote must repeat committed bytes, which the tail still holds.
            let k = ((self.committed - at) as usize).min(chunk.len());
            let from = (at - self.base) as usize;
            if let Some(j) = (0..k).find(|&j| self.tail[from + j] != chunk[j]) {
                let offset = at + j as u64;
                let majority: Vec<u8> = self.tail.range(from + j..).take(64).copied().collect();
                let mut own = self.state_at(offset, &[]);
                own.update(&chunk[j..]);
                self.diverge(replica, offset, &[], majority, &chunk[j..], own);
                self.trim_tail();
                return Vec::new();
            }
            chunk = &chunk[k..];
            self.trim_tail();
        }
        self.lanes[replica].pending.extend_from_slice(chunk);
        self.try_commit()
    }

    /// `replica`'s stream ended.
    pub fn finish(&mut self, replica: usize) {
        let lane = &mut self.lanes[replica];
        lane.finished = true;
        if let Some(own) = &lane.own {
            lane.digest = Some(*own.finalize().as_bytes());
        } else if lane.len <= self.committed {
            let len = lane.len;
            self.lanes[replica].digest = Some(*self.state_at(len, &[]).finalize().as_bytes());
        }
        self.trim_tail();
    }

    /// The digest of everything `replica` wrote, once its stream has ended.
    pub fn digest(&self, replica: usize) -> Option<[u8; 32]> {
        let lane = &self.lanes[replica];
        if !lane.finished {
            return None;
        }
        lane.digest.or_else(|| {
            // It ended ahead of the committed offset: the committed stream, then its own remainder.
            let mut h = self.state_at(self.committed, &[]);
            h.update(&lane.pending);
            Some(*h.finalize().as_bytes())
        })
    }

    /// Whether holding `replica`'s lead (not reading it for now) can pay off: another following replica
    /// that has not finished lags behind it and has so far written the same bytes. Waiting for a
    /// replica that may never catch up would only stall this one; see [`ByteCommitter::hopeless`].
    pub fn should_wait(&self, replica: usize) -> bool {
        let r = &self.lanes[replica];
        r.follows()
            && self.lanes.iter().enumerate().any(|(s, l)| {
                s != replica && l.follows() && !l.finished && l.len < r.len && self.agrees_so_far(s, replica)
            })
    }

    /// Whether `replica`'s bytes beyond the committed offset can never be committed: fewer than a
    /// majority of following replicas (itself included) agree with it so far and can still write more or
    /// already have. Its bytes then matter only for its digest.
    pub fn hopeless(&self, replica: usize) -> bool {
        let r = &self.lanes[replica];
        if !r.follows() {
            return false;
        }
        let hopeful = self
            .lanes
            .iter()
            .enumerate()
            .filter(|(s, l)| l.follows() && (*s == replica || !l.finished || l.len >= r.len))
            .filter(|(s, _)| self.agrees_so_far(*s, replica))
            .count();
        hopeful < self.majority
    }

    /// Stop keeping `replica`'s bytes: it only hashes from now on (it was found hopeless).
    pub fn give_up(&mut self, replica: usize) {
        if !self.lanes[replica].follows() {
            return;
        }
        if self.lanes[replica].finished {
            // Its digest is final already (or computable now): keep that, drop the bytes.
            let digest = self.digest(replica);
            let lane = &mut self.lanes[replica];
            lane.digest = digest;
            lane.pending = Vec::new();
            lane.own = Some(blake3::Hasher::new());
            return;
        }
        let len = self.lanes[replica].len.min(self.committed);
        let mut own = self.state_at(len, &[]);
        own.update(&std::mem::take(&mut self.lanes[replica].pending));
        self.lanes[replica].own = Some(own);
        self.trim_tail();
    }

    /// Lanes `a` and `b` wrote the same bytes as far as both got (one is a prefix of the other).
    fn agrees_so_far(&self, a: usize, b: usize) -> bool {
        let (pa, pb) = (&self.lanes[a].pending, &self.lanes[b].pending);
        lcp(pa, pb) == pa.len().min(pb.len())
    }

    /// The committed stream's digest state at `offset` (between `base` and `committed`), then `extra`.
    fn state_at(&self, offset: u64, extra: &[u8]) -> blake3::Hasher {
        let mut h = self.hasher.clone();
        let upto = (offset.saturating_sub(self.base) as usize).min(self.tail.len());
        let (a, b) = self.tail.as_slices();
        let first = upto.min(a.len());
        h.update(&a[..first]);
        h.update(&b[..upto - first]);
        h.update(extra);
        h
    }

    /// Extend the committed prefix as far as a strict majority of following replicas share it.
    fn try_commit(&mut self) -> Vec<u8> {
        let alive: Vec<usize> = (0..self.lanes.len()).filter(|&i| self.lanes[i].follows()).collect();
        if alive.len() < self.majority {
            return Vec::new();
        }
        // Any committing majority contains one of the first (alive - majority + 1) following replicas.
        let mut best = (0usize, alive[0]);
        for &r in &alive[..=alive.len() - self.majority] {
            let mut shared: Vec<usize> =
                alive.iter().map(|&s| lcp(&self.lanes[r].pending, &self.lanes[s].pending)).collect();
            shared.sort_unstable_by(|a, b| b.cmp(a));
            let e = shared[self.majority - 1];
            if e > best.0 {
                best = (e, r);
            }
        }
        let (e, r) = best;
        if e == 0 {
            return Vec::new();
        }
        let bytes: Vec<u8> = self.lanes[r].pending[..e].to_vec();
        for &s in &alive {
            let have = self.lanes[s].pending.len();
            let same = lcp(&bytes, &self.lanes[s].pending);
            if same < have.min(e) {
                // It wrote something else where the majority committed: diverged.
                let offset = self.committed + same as u64;
                let majority = bytes[same..].iter().take(64).copied().collect();
                let theirs = std::mem::take(&mut self.lanes[s].pending);
                let own = self.state_at(self.committed, &bytes[..same]);
                let mut own = own;
                own.update(&theirs[same..]);
                self.diverge(s, offset, &bytes[..same], majority, &theirs[same..], own);
            } else {
                self.lanes[s].pending.drain(..have.min(e));
            }
        }
        let laggards =
            self.lanes.iter().any(|l| l.follows() && !l.finished && l.len < self.committed + e as u64);
        if laggards || !self.tail.is_empty() {
            self.tail.extend(&bytes);
        } else {
            self.hasher.update(&bytes);
            self.base_lines += memchr::memchr_iter(b'\n', &bytes).count() as u64;
            self.base += e as u64;
        }
        self.committed += e as u64;
        self.trim_tail();
        self.recent.extend(&bytes);
        let over = self.recent.len().saturating_sub(CONTEXT);
        self.recent.drain(..over);
        bytes
    }

    /// `pending_before`: when the divergence lies beyond the committed offset (found while committing),
    /// the bytes being committed between the committed offset and `offset`.
    fn diverge(
        &mut self,
        replica: usize,
        offset: u64,
        pending_before: &[u8],
        majority: Vec<u8>,
        theirs: &[u8],
        own: blake3::Hasher,
    ) {
        // Context: committed bytes before the divergence, from the tail if it reaches back, else the
        // most recent committed bytes and the part of the current commit before `offset`.
        let before: Vec<u8> = if offset < self.committed && offset >= self.base && !self.tail.is_empty() {
            let end = (offset - self.base) as usize;
            self.tail.range(end.saturating_sub(CONTEXT)..end).copied().collect()
        } else {
            let mut b: Vec<u8> = self.recent.iter().copied().chain(pending_before.iter().copied()).collect();
            b.drain(..b.len().saturating_sub(CONTEXT));
            b
        };
        // Its line: the newlines of the committed stream before `offset` (hashed, in the tail, or in the
        // bytes being committed right now, which `majority` starts with when offset >= committed).
        let in_tail = (offset.saturating_sub(self.base) as usize).min(self.tail.len());
        let mut newlines =
            self.base_lines + self.tail.range(..in_tail).filter(|&&b| b == b'\n').count() as u64;
        if offset > self.committed {
            newlines += memchr::memchr_iter(b'\n', pending_before).count() as u64;
        }
        let lane = &mut self.lanes[replica];
        lane.pending = Vec::new();
        if lane.finished {
            lane.digest = Some(*own.finalize().as_bytes());
        }
        lane.own = Some(own);
        lane.diverged = Some(Divergence {
            offset,
            line: newlines + 1,
            before,
            majority,
            replica: theirs.iter().take(64).copied().collect(),
        });
    }

    /// Hash and drop committed bytes every following, unfinished replica has passed.
    fn trim_tail(&mut self) {
        let slowest = self
            .lanes
            .iter()
            .filter(|l| l.follows() && !l.finished)
            .map(|l| l.len)
            .min()
            .unwrap_or(self.committed)
            .min(self.committed);
        if slowest > self.base {
            let n = ((slowest - self.base) as usize).min(self.tail.len());
            let (a, b) = self.tail.as_slices();
            let first = n.min(a.len());
            self.hasher.update(&a[..first]);
            self.hasher.update(&b[..n - first]);
            self.base_lines += (memchr::memchr_iter(b'\n', &a[..first]).count()
                + memchr::memchr_iter(b'\n', &b[..n - first]).count()) as u64;
            self.tail.drain(..n);
            self.base += n as u64;
        }
    }
}

/// Length of the longest common prefix, compared a block at a time.
fn lcp(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 64 <= n && a[i..i + 64] == b[i..i + 64] {
        i += 64;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}
