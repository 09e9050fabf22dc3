//! The byte committer as it was before the shared log (one copy of each replica's pending bytes, and a
//! separate tail of committed bytes): simple, slower, and kept as the oracle the log-based committer is
//! checked against, decision by decision, over random schedules.
#![allow(dead_code)]

use super::fifo::Fifo;
use crate::digest::{Digest, StreamHasher};

/// Committed bytes kept for the report's context around a divergence.
const CONTEXT: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Stream offset of the first byte where this replica differs from the committing majority.
    pub offset: u64,
    /// The 1-based line that byte is on.
    pub line: u64,
    /// Up to 256 committed bytes just before `offset` (the line it began, usually).
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
    pending: Fifo,
    diverged: Option<Divergence>,
    /// Its own digest state once it no longer follows the committed stream (diverged or given up).
    own: Option<StreamHasher>,
    finished: bool,
    digest: Option<Digest>,
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
    tail: Fifo,
    base: u64,
    /// Digest state of the committed stream's first `base` bytes, and their number of newlines.
    hasher: StreamHasher,
    base_lines: u64,
    /// The last committed bytes, for divergence context.
    recent: Fifo,
    lanes: Vec<Lane>,
    /// `agree[i][j]`: how many of the first bytes of lanes i's and j's pending bytes are equal.
    agree: Vec<Vec<usize>>,
    /// Committed bytes below this offset may be hashed and dropped; the ones above it were just handed
    /// to the caller (borrowed from the tail until its next call).
    hold: u64,
}

impl ByteCommitter {
    pub fn new(replicas: usize) -> Self {
        ByteCommitter {
            majority: replicas / 2 + 1,
            committed: 0,
            tail: Fifo::default(),
            base: 0,
            hasher: StreamHasher::new(),
            base_lines: 0,
            recent: Fifo::default(),
            lanes: (0..replicas).map(|_| Lane::default()).collect(),
            agree: vec![vec![0; replicas]; replicas],
            hold: 0,
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

    pub fn divergence(&self, replica: usize) -> Option<&Divergence> {
        self.lanes[replica].diverged.as_ref()
    }

    /// The bytes `replica` wrote beyond the committed offset, while it follows the committed prefix:
    /// what is left to deliver if it wins the vote.
    pub fn remainder(&self, replica: usize) -> Option<&[u8]> {
        let lane = &self.lanes[replica];
        (lane.follows() && lane.len >= self.committed).then_some(lane.pending.as_slice())
    }

    /// `replica` wrote `chunk` (appended to what it wrote before). Returns the bytes this commits, which
    /// extend the committed prefix in order and are final (borrowed until the next call: deliver them,
    /// no copy is made).
    pub fn push(&mut self, replica: usize, chunk: &[u8]) -> &[u8] {
        let before = self.committed;
        self.hold = self.committed;
        self.absorb(replica, chunk);
        self.trim_tail();
        let from = (before - self.base) as usize;
        &self.tail.as_slice()[from..]
    }

    fn absorb(&mut self, replica: usize, chunk: &[u8]) {
        let at = self.lanes[replica].len;
        self.lanes[replica].len += chunk.len() as u64;
        if let Some(own) = self.lanes[replica].own.as_mut() {
            own.update(chunk);
            return;
        }
        let mut chunk = chunk;
        if at < self.committed {
            // A laggard: what it wrote must repeat committed bytes, which the tail still holds.
            let k = ((self.committed - at) as usize).min(chunk.len());
            let from = (at - self.base) as usize;
            let same = lcp(&self.tail.as_slice()[from..from + k], &chunk[..k]);
            if same < k {
                let offset = at + same as u64;
                let majority = self.tail.as_slice()[from + same..].iter().take(64).copied().collect();
                let mut own = self.state_at(offset, &[]);
                own.update(&chunk[same..]);
                self.diverge(replica, offset, &[], majority, &chunk[same..], own);
                return;
            }
            chunk = &chunk[k..];
        }
        if chunk.is_empty() {
            return;
        }
        // Compare the new bytes once with every other following lane's bytes at the same offsets.
        let old = self.lanes[replica].pending.len();
        for j in 0..self.lanes.len() {
            if j == replica || !self.lanes[j].follows() || self.agree[replica][j] != old {
                continue;
            }
            let theirs = self.lanes[j].pending.as_slice();
            let overlap = theirs.len().saturating_sub(old).min(chunk.len());
            let more = lcp(&theirs[old..old + overlap], &chunk[..overlap]);
            self.agree[replica][j] += more;
            self.agree[j][replica] += more;
        }
        self.lanes[replica].pending.extend(chunk);
        self.try_commit();
    }

    /// `replica`'s stream ended.
    pub fn finish(&mut self, replica: usize) {
        self.hold = self.committed;
        let lane = &mut self.lanes[replica];
        lane.finished = true;
        if let Some(own) = &lane.own {
            lane.digest = Some(own.finalize());
        } else if lane.len <= self.committed {
            let len = lane.len;
            self.lanes[replica].digest = Some(self.state_at(len, &[]).finalize());
        }
        self.trim_tail();
    }

    /// The digest of everything `replica` wrote, once its stream has ended.
    pub fn digest(&self, replica: usize) -> Option<Digest> {
        let lane = &self.lanes[replica];
        if !lane.finished {
            return None;
        }
        lane.digest.or_else(|| {
            // It ended ahead of the committed offset: the committed stream, then its own remainder.
            Some(self.state_at(self.committed, lane.pending.as_slice()).finalize())
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
        self.hold = self.committed;
        if !self.lanes[replica].follows() {
            return;
        }
        if self.lanes[replica].finished {
            // Its digest is final already (or computable now): keep that, drop the bytes.
            let digest = self.digest(replica);
            let lane = &mut self.lanes[replica];
            lane.digest = digest;
            lane.pending.clear();
            lane.own = Some(StreamHasher::new());
            return;
        }
        let len = self.lanes[replica].len.min(self.committed);
        let own = self.state_at(len, self.lanes[replica].pending.as_slice());
        self.lanes[replica].pending.clear();
        self.lanes[replica].own = Some(own);
        self.trim_tail();
    }

    /// Lanes `a` and `b` wrote the same bytes as far as both got (one is a prefix of the other).
    fn agrees_so_far(&self, a: usize, b: usize) -> bool {
        a == b || self.agree[a][b] == self.lanes[a].pending.len().min(self.lanes[b].pending.len())
    }

    /// The committed stream's digest state at `offset` (between `base` and `committed`), then `extra`.
    fn state_at(&self, offset: u64, extra: &[u8]) -> StreamHasher {
        let mut h = self.hasher.clone();
        let upto = (offset.saturating_sub(self.base) as usize).min(self.tail.len());
        h.update(&self.tail.as_slice()[..upto]);
        h.update(extra);
        h
    }

    /// Extend the committed prefix as far as a strict majority of following replicas share it; the
    /// committed bytes are appended to the tail.
    fn try_commit(&mut self) {
        let alive: Vec<usize> = (0..self.lanes.len()).filter(|&i| self.lanes[i].follows()).collect();
        if alive.len() < self.majority {
            return;
        }
        // Any committing majority contains one of the first (alive - majority + 1) following replicas.
        let mut best = (0usize, alive[0]);
        let mut shared: Vec<usize> = Vec::with_capacity(alive.len());
        for &r in &alive[..=alive.len() - self.majority] {
            shared.clear();
            shared.extend(alive.iter().map(|&s| {
                if s == r {
                    self.lanes[r].pending.len()
                } else {
                    self.agree[r][s]
                }
            }));
            shared.sort_unstable_by(|a, b| b.cmp(a));
            let e = shared[self.majority - 1];
            if e > best.0 {
                best = (e, r);
            }
        }
        let (e, r) = best;
        if e == 0 {
            return;
        }
        self.tail.extend(&self.lanes[r].pending.as_slice()[..e]);
        let start = self.tail.len() - e;
        for &s in &alive {
            let have = self.lanes[s].pending.len();
            let same = if s == r { have } else { self.agree[r][s] };
            if same < have.min(e) {
                // It wrote something else where the majority committed: diverged.
                let offset = self.committed + same as u64;
                let bytes = &self.tail.as_slice()[start..];
                let majority = bytes[same..].iter().take(64).copied().collect();
                let before = bytes[..same].to_vec();
                let theirs = self.lanes[s].pending.take();
                let mut own = self.state_at(self.committed, &before);
                own.update(&theirs[same..]);
                self.diverge(s, offset, &before, majority, &theirs[same..], own);
            } else {
                self.lanes[s].pending.consume(e);
            }
        }
        for &s in &alive {
            for &t in &alive {
                self.agree[s][t] = self.agree[s][t].saturating_sub(e);
            }
        }
        self.committed += e as u64;
        // A finished replica that the commit passed wrote a strict prefix of the committed stream: its
        // digest is the committed stream's state at its length, taken now, before those bytes are hashed
        // and dropped.
        for &s in &alive {
            let lane = &self.lanes[s];
            if lane.finished && lane.digest.is_none() && lane.follows() && lane.len <= self.committed {
                let digest = self.state_at(lane.len, &[]).finalize();
                self.lanes[s].digest = Some(digest);
            }
        }
        let keep = e.min(CONTEXT);
        let bytes = &self.tail.as_slice()[self.tail.len() - keep..];
        self.recent.extend(bytes);
        self.recent.consume(self.recent.len().saturating_sub(CONTEXT));
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
        own: StreamHasher,
    ) {
        // Context: committed bytes before the divergence, from the tail if it reaches back, else the
        // most recent committed bytes and the part of the current commit before `offset`.
        let before: Vec<u8> = if offset < self.committed {
            super::bytes::context_before(
                offset,
                self.base,
                self.tail.as_slice(),
                self.committed,
                self.recent.as_slice(),
            )
        } else {
            let mut b: Vec<u8> = [self.recent.as_slice(), pending_before].concat();
            b.drain(..b.len().saturating_sub(CONTEXT));
            b
        };
        // Its line: the newlines of the committed stream before `offset` (hashed, in the tail, or in the
        // bytes being committed right now).
        let in_tail = (offset.min(self.committed).saturating_sub(self.base) as usize).min(self.tail.len());
        let mut newlines =
            self.base_lines + memchr::memchr_iter(b'\n', &self.tail.as_slice()[..in_tail]).count() as u64;
        if offset > self.committed {
            newlines += memchr::memchr_iter(b'\n', pending_before).count() as u64;
        }
        for row in &mut self.agree {
            row[replica] = 0;
        }
        self.agree[replica].iter_mut().for_each(|a| *a = 0);
        let lane = &mut self.lanes[replica];
        lane.pending.clear();
        if lane.finished {
            lane.digest = Some(own.finalize());
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

    /// Hash and drop committed bytes every following, unfinished replica has passed (and the caller has
    /// taken).
    fn trim_tail(&mut self) {
        let slowest = self
            .lanes
            .iter()
            .filter(|l| l.follows() && !l.finished)
            .map(|l| l.len)
            .min()
            .unwrap_or(self.committed)
            .min(self.hold);
        if slowest > self.base {
            let n = ((slowest - self.base) as usize).min(self.tail.len());
            let done = &self.tail.as_slice()[..n];
            self.hasher.update(done);
            self.base_lines += memchr::memchr_iter(b'\n', done).count() as u64;
            self.tail.consume(n);
            self.base += n as u64;
        }
    }
}

/// Length of the longest common prefix, compared a block at a time.
fn lcp(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 256 <= n && a[i..i + 256] == b[i..i + 256] {
        i += 256;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::super::bytes::ByteCommitter as Fast;
    use super::ByteCommitter as Oracle;
    use proptest::prelude::*;

    /// Outputs sharing a text, each replica keeping it or leaving it at some point, so that minority
    /// leaders, late majorities and exact prefixes all happen.
    fn outputs() -> impl Strategy<Value = Vec<Vec<u8>>> {
        (1usize..6, prop::collection::vec(prop::sample::select(b"ab\n".to_vec()), 0..120)).prop_flat_map(
            |(n, base)| {
                let len = base.len();
                prop::collection::vec(
                    (0u8..3, 0..=len, prop::collection::vec(prop::sample::select(b"abc\n".to_vec()), 0..30)),
                    n,
                )
                .prop_map(move |specs| {
                    specs
                        .into_iter()
                        .map(|(kind, cut, tail)| match kind {
                            0 => base.clone(),
                            1 => base[..cut].to_vec(),
                            _ => [&base[..cut], &tail[..]].concat(),
                        })
                        .collect()
                })
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Same commits at every step, same waits and give-ups, same divergences, remainders and digests.
        #[test]
        fn the_log_decides_exactly_as_the_oracle(
            outs in outputs(),
            steps in prop::collection::vec((0usize..6, 1usize..40, any::<bool>()), 1..200),
        ) {
            let n = outs.len();
            let mut fast = Fast::new(n, u64::MAX);
            let mut oracle = Oracle::new(n);
            let mut at = vec![0usize; n];
            let mut finished = vec![false; n];
            let mut step = 0;
            while at.iter().zip(&outs).any(|(a, o)| *a < o.len()) {
                let (who, size, cap) = steps[step % steps.len()];
                step += 1;
                let r = (who + step / steps.len()) % n;
                if at[r] >= outs[r].len() {
                    continue;
                }
                let end = (at[r] + size).min(outs[r].len());
                let a = fast.push(r, &outs[r][at[r]..end]).to_vec();
                let b = oracle.push(r, &outs[r][at[r]..end]).to_vec();
                prop_assert_eq!(a, b);
                at[r] = end;
                if at[r] == outs[r].len() && cap {
                    fast.finish(r);
                    oracle.finish(r);
                    finished[r] = true;
                }
                for s in 0..n {
                    prop_assert_eq!(fast.ahead(s), oracle.ahead(s), "ahead {}", s);
                    prop_assert_eq!(fast.should_wait(s), oracle.should_wait(s), "wait {}", s);
                    prop_assert_eq!(fast.hopeless(s), oracle.hopeless(s), "hopeless {}", s);
                }
                if fast.hopeless(r) {
                    fast.give_up(r);
                    oracle.give_up(r);
                }
                prop_assert!(fast.held() <= oracle.held() + 1, "held {} vs {}", fast.held(), oracle.held());
            }
            for (r, done) in finished.iter().enumerate() {
                if !done {
                    fast.finish(r);
                    oracle.finish(r);
                }
            }
            prop_assert_eq!(fast.committed(), oracle.committed());
            for (r, out) in outs.iter().enumerate() {
                prop_assert_eq!(fast.digest(r), oracle.digest(r), "digest {}", r);
                prop_assert_eq!(fast.digest(r), Some(crate::digest::digest(out)));
                prop_assert_eq!(fast.remainder(r), oracle.remainder(r), "remainder {}", r);
                let (x, y) = (fast.divergence(r), oracle.divergence(r));
                prop_assert_eq!(x.is_some(), y.is_some(), "diverged {}", r);
                if let (Some(x), Some(y)) = (x, y) {
                    prop_assert_eq!((x.offset, x.line, &x.before, &x.majority, &x.replica),
                                    (y.offset, y.line, &y.before, &y.majority, &y.replica), "divergence {}", r);
                }
            }
        }
    }
}
