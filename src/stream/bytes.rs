//! The committed offset of one compared stream, byte by byte: the longest prefix on which a strict
//! majority of replicas agree. Strict majorities intersect, so every committed byte belongs to whichever
//! output finally wins the vote, if any does: it can be delivered at once and never taken back.
//!
//! Pure: chunks in, committed bytes out. Each replica's bytes are kept only while they lie beyond the
//! committed offset, and committed bytes only while a replica that still agrees has not reached them
//! (a laggard is compared with them when it gets there). A replica whose bytes differ from the committed
//! prefix, or from the bytes a majority commits past the point where it stands, has *diverged*: it can
//! never be part of a committing majority again, so its later bytes are not kept.

use std::collections::VecDeque;

/// Committed bytes kept for the report's context around a divergence.
const CONTEXT: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Stream offset of the first byte where this replica differs from the committing majority.
    pub offset: u64,
    /// Up to [`CONTEXT`] committed bytes just before `offset` (the line it began, usually).
    pub before: Vec<u8>,
    /// What the majority committed at `offset` (as far as known when the divergence was seen).
    pub majority: Vec<u8>,
    /// What this replica wrote at `offset` (a short window).
    pub replica: Vec<u8>,
}

#[derive(Debug, Default)]
struct Lane {
    /// Bytes this replica has written.
    len: u64,
    /// Its bytes beyond the committed offset, while it agrees.
    pending: Vec<u8>,
    diverged: Option<Divergence>,
}

#[derive(Debug)]
pub struct ByteCommitter {
    majority: usize,
    committed: u64,
    /// Committed bytes from `base` up to `committed`, kept for agreeing replicas that lag behind.
    tail: VecDeque<u8>,
    base: u64,
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
            recent: VecDeque::new(),
            lanes: (0..replicas).map(|_| Lane::default()).collect(),
        }
    }

    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Bytes held beyond the committed offset and behind it (for laggards): what streaming costs in RAM.
    pub fn held(&self) -> usize {
        self.tail.len() + self.lanes.iter().map(|l| l.pending.len()).sum::<usize>()
    }

    pub fn divergence(&self, replica: usize) -> Option<&Divergence> {
        self.lanes[replica].diverged.as_ref()
    }

    /// The bytes `replica` wrote beyond the committed offset (all of its output past it, while it agrees
    /// with the committed prefix): what is left to deliver if it wins the vote.
    pub fn remainder(&self, replica: usize) -> Option<&[u8]> {
        let lane = &self.lanes[replica];
        (lane.diverged.is_none() && lane.len >= self.committed).then_some(&lane.pending[..])
    }

    /// `replica` wrote `chunk` (appended to what it wrote before). Returns the bytes this commits, which
    /// extend the committed prefix in order and are final.
    pub fn push(&mut self, replica: usize, chunk: &[u8]) -> Vec<u8> {
        let at = self.lanes[replica].len;
        self.lanes[replica].len += chunk.len() as u64;
        if self.lanes[replica].diverged.is_some() {
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
                self.diverge(replica, offset, majority, &chunk[j..]);
                self.trim_tail();
                return Vec::new();
            }
            chunk = &chunk[k..];
            self.trim_tail();
        }
        self.lanes[replica].pending.extend_from_slice(chunk);
        self.try_commit()
    }

    /// Extend the committed prefix as far as a strict majority of agreeing replicas share it.
    fn try_commit(&mut self) -> Vec<u8> {
        let alive: Vec<usize> = (0..self.lanes.len()).filter(|&i| self.lanes[i].diverged.is_none()).collect();
        if alive.len() < self.majority {
            return Vec::new();
        }
        // Any committing majority contains one of the first (alive - majority + 1) agreeing replicas.
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
                let theirs = self.lanes[s].pending[same..].to_vec();
                self.diverge(s, offset, majority, &theirs);
            } else {
                self.lanes[s].pending.drain(..have.min(e));
            }
        }
        let new_committed = self.committed + e as u64;
        // Keep the committed bytes that an agreeing laggard has yet to write.
        if self.lanes.iter().any(|l| l.diverged.is_none() && l.len < new_committed) {
            if self.tail.is_empty() {
                self.base = self.committed;
            }
            self.tail.extend(&bytes);
        }
        self.committed = new_committed;
        self.trim_tail();
        self.recent.extend(&bytes);
        let over = self.recent.len().saturating_sub(CONTEXT);
        self.recent.drain(..over);
        bytes
    }

    fn diverge(&mut self, replica: usize, offset: u64, majority: Vec<u8>, theirs: &[u8]) {
        let keep_before = (self.committed.min(offset)) as usize;
        let before_len = CONTEXT.min(keep_before);
        // Context: committed bytes before the divergence, from the tail if it reaches back, else recent.
        let before: Vec<u8> = if offset < self.committed && offset >= self.base && !self.tail.is_empty() {
            let end = (offset - self.base) as usize;
            self.tail.range(end.saturating_sub(before_len)..end).copied().collect()
        } else {
            let skip = self.recent.len().saturating_sub(before_len);
            self.recent.range(skip..).copied().collect()
        };
        let lane = &mut self.lanes[replica];
        lane.pending = Vec::new();
        lane.diverged =
            Some(Divergence { offset, before, majority, replica: theirs.iter().take(64).copied().collect() });
    }

    /// Drop committed bytes every agreeing replica has passed.
    fn trim_tail(&mut self) {
        let slowest = self
            .lanes
            .iter()
            .filter(|l| l.diverged.is_none())
            .map(|l| l.len)
            .min()
            .unwrap_or(self.committed)
            .min(self.committed);
        if slowest > self.base {
            let drop = ((slowest - self.base) as usize).min(self.tail.len());
            self.tail.drain(..drop);
            self.base = slowest;
        }
        if self.tail.is_empty() {
            self.base = self.committed;
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
