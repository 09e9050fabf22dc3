//! The committed prefix of one compared stream under `--mask`, line by line: a line is committed when a
//! strict majority of agreeing replicas wrote the same *masked* line at the same line number, and the
//! raw line delivered is that of the lowest-numbered replica in the majority (so timestamps and pids in
//! the delivered output are one real replica's, never a blend within a line).
//!
//! Pure: chunks in, committed raw lines out. A line longer than [`crate::mask::MAX_LINE`] is cut into
//! pieces where the masked digest cuts it ([`crate::mask::piece_end`]), so committing and voting agree. Replicas that lag are compared
//! with the masked digests of lines already committed, kept until every agreeing replica has passed them.

use std::collections::VecDeque;

use regex::bytes::Regex;

use super::bytes::Divergence;
use crate::mask::{mask_line, piece_end, MaskedHasher, MAX_LINE, OVERLAP};

use crate::digest::{Digest, StreamHasher};

struct Unit {
    raw: Vec<u8>,
    masked: Digest,
}

#[derive(Default)]
struct Lane {
    carry: Vec<u8>,
    /// Complete lines beyond the committed ones, while it agrees.
    units: VecDeque<Unit>,
    /// Lines this replica has completed.
    count: u64,
    done: bool,
    diverged: Option<Divergence>,
    /// Raw bytes written, to report where a divergence starts.
    bytes: u64,
    /// The masked digest of everything it wrote (what the vote compares).
    hasher: Option<MaskedHasher>,
    digest: Option<Digest>,
}

pub struct LineCommitter {
    masks: Vec<Regex>,
    majority: usize,
    committed: u64,
    committed_bytes: u64,
    /// Masked digests of committed lines from line `base` on, for agreeing replicas that lag behind.
    tail: VecDeque<Digest>,
    base: u64,
    lanes: Vec<Lane>,
}

impl LineCommitter {
    pub fn new(replicas: usize, masks: Vec<Regex>) -> Self {
        LineCommitter {
            majority: replicas / 2 + 1,
            committed: 0,
            committed_bytes: 0,
            tail: VecDeque::new(),
            base: 0,
            lanes: (0..replicas)
                .map(|_| Lane { hasher: Some(MaskedHasher::new(masks.clone())), ..Lane::default() })
                .collect(),
            masks,
        }
    }

    /// The masked digest of everything `replica` wrote, once its stream has ended.
    pub fn digest(&self, replica: usize) -> Option<Digest> {
        self.lanes[replica].digest
    }

    pub fn committed_bytes(&self) -> u64 {
        self.committed_bytes
    }

    pub fn divergence(&self, replica: usize) -> Option<&Divergence> {
        self.lanes[replica].diverged.as_ref()
    }

    /// Raw bytes held: uncommitted lines and partial lines.
    pub fn held(&self) -> usize {
        self.lanes.iter().map(|l| l.carry.len() + l.units.iter().map(|u| u.raw.len()).sum::<usize>()).sum()
    }

    /// What `replica` wrote beyond the committed lines (its uncommitted lines and its last partial line),
    /// if it still agrees: what is left to deliver if it wins.
    pub fn remainder(&self, replica: usize) -> Option<Vec<u8>> {
        let lane = &self.lanes[replica];
        if lane.diverged.is_some() || lane.count < self.committed {
            return None;
        }
        let mut out: Vec<u8> = lane.units.iter().flat_map(|u| u.raw.iter().copied()).collect();
        out.extend_from_slice(&lane.carry);
        Some(out)
    }

    pub fn push(&mut self, replica: usize, mut chunk: &[u8]) -> Vec<u8> {
        self.lanes[replica].bytes += chunk.len() as u64;
        if let Some(h) = self.lanes[replica].hasher.as_mut() {
            h.update(chunk);
        }
        let mut out = Vec::new();
        while !chunk.is_empty() && self.lanes[replica].diverged.is_none() {
            let (take, complete) = match memchr::memchr(b'\n', chunk) {
                Some(nl) => (nl + 1, true),
                None => (chunk.len(), false),
            };
            // A long line is cut into pieces exactly where the masked digest cuts it (`piece_end`).
            let line = if complete { &chunk[..take - 1] } else { chunk };
            self.lanes[replica].carry.extend_from_slice(line);
            while self.lanes[replica].carry.len() >= MAX_LINE + OVERLAP
                && self.lanes[replica].diverged.is_none()
            {
                let cut = piece_end(&self.masks, &self.lanes[replica].carry[..MAX_LINE + OVERLAP]);
                let piece: Vec<u8> = self.lanes[replica].carry.drain(..cut).collect();
                self.add_unit(replica, piece, &mut out);
            }
            if complete && self.lanes[replica].diverged.is_none() {
                let mut raw = std::mem::take(&mut self.lanes[replica].carry);
                raw.push(b'\n');
                self.add_unit(replica, raw, &mut out);
            }
            chunk = &chunk[take..];
        }
        out
    }

    /// The replica's stream ended: its last partial line is a line.
    pub fn finish(&mut self, replica: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let lane = &mut self.lanes[replica];
        lane.done = true;
        lane.digest = lane.hasher.take().map(MaskedHasher::finalize);
        if lane.diverged.is_none() && !lane.carry.is_empty() {
            let raw = std::mem::take(&mut lane.carry);
            self.add_unit(replica, raw, &mut out);
        }
        out
    }

    fn unit_digest(&self, raw: &[u8]) -> Digest {
        let (line, nl) = match raw.strip_suffix(b"\n") {
            Some(l) => (l, true),
            None => (raw, false),
        };
        let mut h = StreamHasher::new();
        h.update(&mask_line(&self.masks, line));
        h.update(if nl { b"\n" } else { b"" });
        h.finalize()
    }

    fn add_unit(&mut self, replica: usize, raw: Vec<u8>, out: &mut Vec<u8>) {
        let masked = self.unit_digest(&raw);
        let index = self.lanes[replica].count;
        self.lanes[replica].count += 1;
        if index < self.committed {
            let expected = self.tail[(index - self.base) as usize];
            if expected != masked {
                let offset = self.lanes[replica].bytes - raw.len() as u64;
                self.diverge(replica, offset, index, &[], &raw);
            }
            self.trim_tail();
            return;
        }
        self.lanes[replica].units.push_back(Unit { raw, masked });
        while let Some(bytes) = self.commit_one() {
            out.extend_from_slice(&bytes);
        }
    }

    /// Commit the next line if a strict majority of agreeing replicas wrote it the same way.
    fn commit_one(&mut self) -> Option<Vec<u8>> {
        let mut groups: Vec<(Digest, Vec<usize>)> = Vec::new();
        for (i, lane) in self.lanes.iter().enumerate() {
            if lane.diverged.is_some() {
                continue;
            }
            if let Some(u) = lane.units.front() {
                match groups.iter_mut().find(|(d, _)| *d == u.masked) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((u.masked, vec![i])),
                }
            }
        }
        let (digest, members) = groups.into_iter().find(|(_, m)| m.len() >= self.majority)?;
        let raw = self.lanes[members[0]].units.front().map(|u| u.raw.clone())?;
        let offset_of = |lane: &Lane| {
            lane.bytes - lane.units.iter().map(|u| u.raw.len() as u64).sum::<u64>() - lane.carry.len() as u64
        };
        for i in 0..self.lanes.len() {
            if self.lanes[i].diverged.is_some() {
                continue;
            }
            match self.lanes[i].units.front().map(|u| u.masked) {
                Some(d) if d == digest => {
                    self.lanes[i].units.pop_front();
                }
                Some(_) => {
                    let offset = offset_of(&self.lanes[i]);
                    let theirs = self.lanes[i].units.front().map(|u| u.raw.clone()).unwrap_or_default();
                    let index = self.committed;
                    self.diverge(i, offset, index, &raw, &theirs);
                }
                None => {}
            }
        }
        if self.lanes.iter().any(|l| l.diverged.is_none() && l.count <= self.committed) {
            if self.tail.is_empty() {
                self.base = self.committed;
            }
            self.tail.push_back(digest);
        }
        self.committed += 1;
        self.committed_bytes += raw.len() as u64;
        self.trim_tail();
        Some(raw)
    }

    /// `index`: the 0-based line (unit) where it differs; `majority`: the committed raw line there, when
    /// known (a laggard is compared with digests only).
    fn diverge(&mut self, replica: usize, offset: u64, index: u64, majority: &[u8], theirs: &[u8]) {
        let lane = &mut self.lanes[replica];
        lane.units.clear();
        lane.carry = Vec::new();
        lane.diverged = Some(Divergence {
            offset,
            line: index + 1,
            before: Vec::new(),
            majority: majority.iter().take(256).copied().collect(),
            replica: theirs.iter().take(256).copied().collect(),
            within: 0,
            majority_ended: false,
            replica_ended: false,
        });
    }

    fn trim_tail(&mut self) {
        let slowest = self
            .lanes
            .iter()
            .filter(|l| l.diverged.is_none())
            .map(|l| l.count)
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
