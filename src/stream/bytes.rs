//! The committed offset of one compared stream, byte by byte: the longest prefix on which a strict
//! majority of replicas agree. Strict majorities intersect, so every committed byte belongs to whichever
//! output finally wins the vote, if any does: it can be delivered at once and never taken back.
//!
//! Pure: chunks in, committed bytes out, plus each replica's digest (of all it wrote, [`crate::digest`]) at the
//! end, computed without hashing agreeing bytes twice: the committed stream is hashed once, and a
//! replica's digest is that state at its own length (or its own hasher from where it diverged).
//!
//! Storage: one shared *log* holds the bytes the replicas agree on, from the slowest follower's offset
//! to the furthest one: the committed bytes still needed, then the bytes beyond the committed offset
//! that replicas *on the log* wrote identically. A replica's bytes are copied once, by the first
//! replica to write them; the others only compare theirs with the log. A replica that writes something
//! else beyond the committed offset leaves the log and keeps its own copy from there, and when a
//! majority commits bytes of such a copy, that copy becomes the log. In the common case (replicas that
//! agree) this costs one copy, one comparison per other replica, and one hash per byte of output.
//!
//! Cost: every byte is compared once with each other replica's byte at the same offset (when the later
//! of the two arrives), kept as a matrix of agreement lengths, so deciding a commit costs no byte work.
//! A replica whose bytes differ from what a majority committed has *diverged*: it can never join a
//! committing majority again, and keeps nothing. A replica far ahead is either worth waiting for
//! ([`ByteCommitter::should_wait`]: others can still catch up and agree) or *hopeless* (too few others
//! can ever write the same bytes), in which case it keeps nothing either ([`ByteCommitter::give_up`]).
//!
//! A replica far *behind* the committed offset (a starved or slower process) would make the log keep
//! everything committed since its offset. Past a lag limit it is only hashed instead, from the digest
//! state of the committed stream where it fell behind, and checked when it catches up with the oldest
//! byte the log still holds: the same digest state there means the same bytes, and it rejoins the log;
//! another means it diverged somewhere in between (reported as a range, not a byte). Memory stays
//! bounded whatever the replicas' relative speeds, and no byte goes to disk.

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
    /// 0 when `offset` is the first differing byte. Otherwise the replica lagged too far behind to be
    /// compared byte by byte: it differs somewhere in the `within` bytes from `offset` (and `line`,
    /// `before`, `majority` and `replica` are unknown: 0 and empty).
    pub within: u64,
    /// The majority's stream ends where its window `majority` ends (empty: at `offset`, and this
    /// replica wrote more), rather than being cut there or not seen further.
    pub majority_ended: bool,
    /// This replica's stream ends where its window `replica` ends (known only for a divergence found once
    /// it ended: a replica that stopped short, or a trailing difference).
    pub replica_ended: bool,
}

#[derive(Default)]
struct Lane {
    /// Bytes this replica has written.
    len: u64,
    /// Its own copy of its bytes beyond the committed offset, once they differ from the log's; `None`
    /// while they are a prefix of the log's (the lane is *on the log*).
    copy: Option<Fifo>,
    diverged: Option<Divergence>,
    /// Its own digest state once it no longer follows the committed stream (diverged or given up).
    own: Option<StreamHasher>,
    /// While it lags too far behind: the offset it fell behind at (equal to the committed stream up to
    /// there) and the digest state of everything it wrote.
    behind: Option<(u64, StreamHasher)>,
    finished: bool,
    digest: Option<Digest>,
    /// A replica that ended on the log at or before the committed offset: where it stopped, its line and
    /// context, and the committed bytes after its end as they come (up to 64), in case the winner wrote
    /// more than it (found only at the vote).
    short: Option<Divergence>,
}

impl Lane {
    fn follows(&self) -> bool {
        self.own.is_none() && self.behind.is_none()
    }

    /// Following, or lagging behind and maybe still equal: it may yet agree with what is committed.
    fn may_agree(&self) -> bool {
        self.own.is_none()
    }

    fn on_log(&self) -> bool {
        self.follows() && self.copy.is_none()
    }
}

pub struct ByteCommitter {
    majority: usize,
    committed: u64,
    /// Stream bytes from offset `base`: committed ones that a lagging follower or the caller still
    /// needs, then, past the committed offset, what the lanes on the log wrote.
    log: Fifo,
    base: u64,
    /// Digest state of the committed stream's first `base` bytes, and their number of newlines.
    hasher: StreamHasher,
    base_lines: u64,
    /// The last committed bytes, for divergence context.
    recent: Fifo,
    lanes: Vec<Lane>,
    /// `agree[i][j]`: how many of the first bytes of lanes i's and j's bytes beyond the committed offset
    /// are equal.
    agree: Vec<Vec<usize>>,
    /// Committed bytes below this offset may be hashed and dropped; the ones above it were just handed
    /// to the caller (borrowed from the log until its next call).
    hold: u64,
    /// How far behind the committed offset a replica may lag before it is only hashed.
    lag_limit: u64,
}

impl ByteCommitter {
    /// `lag_limit`: bytes a replica may lag behind the committed offset and still be compared byte by
    /// byte (the log keeps them for it); beyond, it is hashed and checked when it catches up.
    pub fn new(replicas: usize, lag_limit: u64) -> Self {
        ByteCommitter {
            lag_limit,
            majority: replicas / 2 + 1,
            committed: 0,
            log: Fifo::default(),
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

    /// Bytes held in RAM: the log, and the copies of lanes off it.
    pub fn held(&self) -> usize {
        self.log.len() + self.lanes.iter().filter_map(|l| l.copy.as_ref()).map(Fifo::len).sum::<usize>()
    }

    /// Bytes `replica` holds beyond the committed offset.
    pub fn ahead(&self, replica: usize) -> usize {
        if self.lanes[replica].follows() {
            self.view_len(replica)
        } else {
            0
        }
    }

    pub fn divergence(&self, replica: usize) -> Option<&Divergence> {
        self.lanes[replica].diverged.as_ref()
    }

    /// The bytes `replica` wrote beyond the committed offset, while it follows the committed prefix:
    /// what is left to deliver if it wins the vote.
    pub fn remainder(&self, replica: usize) -> Option<&[u8]> {
        let lane = &self.lanes[replica];
        (lane.follows() && lane.len >= self.committed).then(|| self.view(replica))
    }

    /// `replica` wrote `chunk` (appended to what it wrote before). Returns the bytes this commits, which
    /// extend the committed prefix in order and are final (borrowed until the next call: deliver them,
    /// no copy is made).
    pub fn push(&mut self, replica: usize, chunk: &[u8]) -> &[u8] {
        let before = self.committed;
        self.hold = self.committed;
        self.absorb(replica, chunk);
        self.trim_log();
        let from = (before - self.base) as usize;
        let to = (self.committed - self.base) as usize;
        &self.log.as_slice()[from..to]
    }

    /// Room to read `replica`'s next bytes into, straight into the log, when that is where they would
    /// be copied: it is on the log and furthest ahead, so whatever it writes next is new to the log. The
    /// leader's bytes then cost no copy (the flood's largest user-space cost after the comparisons).
    /// Write into it, then call [`ByteCommitter::push_room`] with the count.
    pub fn room(&mut self, replica: usize, n: usize) -> Option<&mut [u8]> {
        let lane = &self.lanes[replica];
        (lane.on_log() && lane.len >= self.committed && lane.len == self.frontier()).then(|| self.log.room(n))
    }

    /// `replica` wrote the first `n` bytes of the last [`ByteCommitter::room`]: as [`ByteCommitter::push`]
    /// of those bytes.
    pub fn push_room(&mut self, replica: usize, n: usize) -> &[u8] {
        let before = self.committed;
        self.hold = self.committed;
        let old = self.view_len(replica);
        let at = self.lanes[replica].len;
        self.log.commit(n);
        self.lanes[replica].len += n as u64;
        self.compare_new(replica, old, at, n, None);
        self.try_commit();
        self.trim_log();
        let from = (before - self.base) as usize;
        let to = (self.committed - self.base) as usize;
        &self.log.as_slice()[from..to]
    }

    /// Where the log ends.
    fn frontier(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// A following lane's bytes beyond the committed offset.
    fn view(&self, i: usize) -> &[u8] {
        let lane = &self.lanes[i];
        match &lane.copy {
            Some(copy) => copy.as_slice(),
            None if lane.len > self.committed => {
                &self.log.as_slice()[(self.committed - self.base) as usize..(lane.len - self.base) as usize]
            }
            None => &[],
        }
    }

    fn view_len(&self, i: usize) -> usize {
        self.lanes[i].len.saturating_sub(self.committed) as usize
    }

    fn absorb(&mut self, replica: usize, chunk: &[u8]) {
        if self.lanes[replica].behind.is_some() {
            return self.absorb_behind(replica, chunk);
        }
        let mut at = self.lanes[replica].len;
        if let Some(own) = self.lanes[replica].own.as_mut() {
            own.update(chunk);
            self.lanes[replica].len += chunk.len() as u64;
            return;
        }
        let mut chunk = chunk;
        if at < self.committed {
            // A laggard (on the log): what it wrote must repeat committed bytes, which the log holds.
            let k = ((self.committed - at) as usize).min(chunk.len());
            let from = (at - self.base) as usize;
            let same = lcp(&self.log.as_slice()[from..from + k], &chunk[..k]);
            if same < k {
                let offset = at + same as u64;
                let end = (self.committed - self.base) as usize;
                let majority = self.log.as_slice()[from + same..end].iter().take(64).copied().collect();
                let mut own = self.state_at(offset, &[]);
                own.update(&chunk[same..]);
                self.lanes[replica].len += chunk.len() as u64;
                self.diverge(replica, offset, &[], majority, &chunk[same..], own);
                return;
            }
            self.lanes[replica].len += k as u64;
            at += k as u64;
            chunk = &chunk[k..];
        }
        if chunk.is_empty() {
            return;
        }
        let old = self.view_len(replica);
        if self.lanes[replica].on_log() {
            let start = (at - self.base) as usize;
            let overlap = ((self.frontier() - at) as usize).min(chunk.len());
            let same = lcp(&self.log.as_slice()[start..start + overlap], &chunk[..overlap]);
            if same < overlap {
                // It wrote something else than the log holds: from here on it keeps its own copy.
                let mut copy = Fifo::default();
                copy.extend(&self.log.as_slice()[(self.committed - self.base) as usize..start]);
                self.lanes[replica].copy = Some(copy);
            } else {
                // The log's bytes, then new ones: the only copy these bytes get.
                self.log.extend(&chunk[overlap..]);
            }
        }
        self.lanes[replica].len += chunk.len() as u64;
        self.compare_new(replica, old, at, chunk.len(), Some(chunk));
        if let Some(copy) = self.lanes[replica].copy.as_mut() {
            copy.extend(chunk);
        }
        self.try_commit();
    }

    /// Compare `replica`'s `n` new bytes (from stream offset `at`, its `old` bytes beyond the committed
    /// offset before them) once with every other following lane's bytes at the same offsets; two lanes
    /// on the log agree as far as both got, with no byte work. `chunk`: the new bytes, or `None` when
    /// they are in the log already.
    fn compare_new(&mut self, replica: usize, old: usize, at: u64, n: usize, chunk: Option<&[u8]>) {
        let on_log = self.lanes[replica].on_log();
        for j in 0..self.lanes.len() {
            if j == replica || !self.lanes[j].follows() || self.agree[replica][j] != old {
                continue;
            }
            let more = if on_log && self.lanes[j].on_log() {
                self.view_len(j).min(old + n) - old
            } else {
                let mine = match chunk {
                    Some(c) => c,
                    None => {
                        let start = (at - self.base) as usize;
                        &self.log.as_slice()[start..start + n]
                    }
                };
                let theirs = self.view(j);
                let overlap = theirs.len().saturating_sub(old).min(n);
                lcp(&theirs[old..old + overlap], &mine[..overlap])
            };
            self.agree[replica][j] += more;
            self.agree[j][replica] += more;
        }
    }

    /// A lagging replica's bytes: hashed until it reaches the log's oldest byte (`base`); there its
    /// digest state either equals the committed stream's, and it rejoins the log with the rest of the
    /// chunk, or not, and it has diverged somewhere since it fell behind.
    fn absorb_behind(&mut self, replica: usize, chunk: &[u8]) {
        let at = self.lanes[replica].len;
        let split = (self.base.saturating_sub(at) as usize).min(chunk.len());
        let (head, rest) = chunk.split_at(split);
        let lane = &mut self.lanes[replica];
        let (from, hasher) = lane.behind.as_mut().expect("a lagging lane");
        hasher.update(head);
        lane.len += head.len() as u64;
        if lane.len < self.base {
            return;
        }
        let from = *from;
        let (_, hasher) = lane.behind.take().expect("a lagging lane");
        if hasher.finalize() == self.hasher.finalize() {
            // Equal to the committed stream up to `base`, which the log holds from: back on it.
            self.absorb(replica, rest);
            return;
        }
        let mut own = hasher;
        own.update(rest);
        self.lanes[replica].len += rest.len() as u64;
        let offset = from;
        self.lanes[replica].own = Some(own);
        self.forget_agreement(replica);
        self.lanes[replica].diverged = Some(Divergence {
            offset,
            line: 0,
            before: Vec::new(),
            majority: Vec::new(),
            replica: Vec::new(),
            within: self.base - from,
            majority_ended: false,
            replica_ended: false,
        });
    }

    /// `replica`'s stream ended.
    pub fn finish(&mut self, replica: usize) {
        self.hold = self.committed;
        let lane = &mut self.lanes[replica];
        lane.finished = true;
        if let Some((_, hasher)) = lane.behind.take() {
            // It ended before catching up: shorter than the committed stream, so different from it.
            lane.digest = Some(hasher.finalize());
            lane.own = Some(hasher);
        } else if let Some(own) = &lane.own {
            lane.digest = Some(own.finalize());
        } else if lane.len <= self.committed {
            let len = lane.len;
            self.lanes[replica].digest = Some(self.state_at(len, &[]).finalize());
            self.lanes[replica].short = Some(self.ended_at(len));
        }
        self.trim_log();
    }

    /// The divergence of a replica that ended at `len` (between `base` and the committed offset) from one
    /// that wrote more: its line, its context, and the committed bytes after it that are known now.
    fn ended_at(&self, len: u64) -> Divergence {
        let committed_in_log = (self.committed - self.base) as usize;
        let held = &self.log.as_slice()[..committed_in_log];
        let at = (len - self.base) as usize;
        Divergence {
            offset: len,
            line: self.base_lines + super::newlines(&held[..at]) + 1,
            before: context_before(len, self.base, held, self.committed, self.recent.as_slice()),
            majority: held[at..].iter().take(64).copied().collect(),
            replica: Vec::new(),
            within: 0,
            majority_ended: false,
            replica_ended: true,
        }
    }

    /// The digest of everything `replica` wrote, once its stream has ended.
    pub fn digest(&self, replica: usize) -> Option<Digest> {
        let lane = &self.lanes[replica];
        if !lane.finished {
            return None;
        }
        lane.digest.or_else(|| {
            // It ended ahead of the committed offset: the committed stream, then its own remainder.
            Some(self.state_at(self.committed, self.view(replica)).finalize())
        })
    }

    /// Whether holding `replica`'s lead (not reading it for now) can pay off: another following replica
    /// that has not finished lags behind it and has so far written the same bytes. Waiting for a
    /// replica that may never catch up would only stall this one; see [`ByteCommitter::hopeless`].
    pub fn should_wait(&self, replica: usize) -> bool {
        self.waits_for(replica).next().is_some()
    }

    /// The replicas that make holding `replica` pay off ([`ByteCommitter::should_wait`]).
    pub fn waits_for(&self, replica: usize) -> impl Iterator<Item = usize> + '_ {
        let r = &self.lanes[replica];
        let follows = r.follows();
        self.lanes.iter().enumerate().filter_map(move |(s, l)| {
            (follows
                && s != replica
                && l.may_agree()
                && !l.finished
                && l.len < r.len
                && (l.behind.is_some() || self.agrees_so_far(s, replica)))
            .then_some(s)
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
            .filter(|(s, l)| l.may_agree() && (*s == replica || !l.finished || l.len >= r.len))
            .filter(|(s, l)| l.behind.is_some() || self.agrees_so_far(*s, replica))
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
            lane.copy = None;
            lane.own = Some(StreamHasher::new());
        } else {
            let len = self.lanes[replica].len.min(self.committed);
            let own = self.state_at(len, self.view(replica));
            self.lanes[replica].copy = None;
            self.lanes[replica].own = Some(own);
        }
        self.shrink_log();
        self.trim_log();
    }

    /// Lanes `a` and `b` wrote the same bytes as far as both got (one is a prefix of the other).
    fn agrees_so_far(&self, a: usize, b: usize) -> bool {
        a == b || self.agree[a][b] == self.view_len(a).min(self.view_len(b))
    }

    /// The committed stream's digest state at `offset` (between `base` and `committed`), then `extra`.
    fn state_at(&self, offset: u64, extra: &[u8]) -> StreamHasher {
        let mut h = self.hasher.clone();
        let upto = (offset.min(self.committed).saturating_sub(self.base)) as usize;
        h.update(&self.log.as_slice()[..upto]);
        h.update(extra);
        h
    }

    /// Extend the committed prefix as far as a strict majority of following replicas share it.
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
            shared.extend(alive.iter().map(|&s| if s == r { self.view_len(r) } else { self.agree[r][s] }));
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
        if !self.lanes[r].on_log() {
            self.rebase(r);
        }
        // The committed bytes are the log's, from the committed offset.
        let start = (self.committed - self.base) as usize;
        for &s in &alive {
            let have = self.view_len(s);
            let same = if s == r { have } else { self.agree[r][s] };
            if same < have.min(e) {
                // It wrote something else where the majority committed: diverged. (Only a lane off
                // the log can: the log's lanes agree with `r`, which is on it.)
                let offset = self.committed + same as u64;
                let bytes = &self.log.as_slice()[start..start + e];
                let majority = bytes[same..].iter().take(64).copied().collect();
                let before = bytes[..same].to_vec();
                let theirs = match self.lanes[s].copy.take() {
                    Some(mut copy) => copy.take(),
                    None => self.view(s).to_vec(),
                };
                let mut own = self.state_at(self.committed, &before);
                own.update(&theirs[same..]);
                self.diverge(s, offset, &before, majority, &theirs[same..], own);
            } else if let Some(copy) = self.lanes[s].copy.as_mut() {
                if same == have {
                    // Everything it wrote is on the log after all: it needs no copy.
                    self.lanes[s].copy = None;
                } else {
                    copy.consume(e);
                }
            }
        }
        for &s in &alive {
            for &t in &alive {
                self.agree[s][t] = self.agree[s][t].saturating_sub(e);
            }
        }
        self.committed += e as u64;
        // Replicas that stopped short: the committed bytes just after their ends, for the report.
        let log = self.log.as_slice();
        for short in self.lanes.iter_mut().filter_map(|l| l.short.as_mut()) {
            let next = short.offset + short.majority.len() as u64;
            let until = self.committed.min(short.offset + 64);
            if next >= self.base && next < until {
                short.majority.extend(&log[(next - self.base) as usize..(until - self.base) as usize]);
            }
        }
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
        let end = (self.committed - self.base) as usize;
        let bytes = &self.log.as_slice()[end - keep..end];
        self.recent.extend(bytes);
        self.recent.consume(self.recent.len().saturating_sub(CONTEXT));
    }

    /// A majority commits bytes of `r`'s own copy: that copy becomes the log beyond the committed
    /// offset. Lanes on the old log whose bytes are not a prefix of it take their own copies.
    fn rebase(&mut self, r: usize) {
        let copy = self.lanes[r].copy.take().map(|mut c| c.take()).unwrap_or_default();
        for s in 0..self.lanes.len() {
            if s == r || !self.lanes[s].on_log() {
                continue;
            }
            let have = self.view_len(s);
            if have > 0 && !(have <= copy.len() && self.agree[r][s] == have) {
                let mut own = Fifo::default();
                own.extend(self.view(s));
                self.lanes[s].copy = Some(own);
            }
        }
        self.log.truncate((self.committed - self.base) as usize);
        self.log.extend(&copy);
    }

    /// After a lane left the log: the log beyond the committed offset needs to reach only as far as the
    /// furthest lane still on it.
    fn shrink_log(&mut self) {
        let furthest =
            self.lanes.iter().filter(|l| l.on_log()).map(|l| l.len).max().unwrap_or(0).max(self.committed);
        if furthest < self.frontier() {
            self.log.truncate((furthest - self.base) as usize);
        }
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
        // Context: committed bytes before the divergence, from the log if it reaches back, else the
        // most recent committed bytes and the part of the current commit before `offset`.
        let committed_in_log = (self.committed - self.base) as usize;
        let before: Vec<u8> = if offset < self.committed {
            let held = &self.log.as_slice()[..committed_in_log];
            context_before(offset, self.base, held, self.committed, self.recent.as_slice())
        } else {
            let mut b: Vec<u8> = [self.recent.as_slice(), pending_before].concat();
            b.drain(..b.len().saturating_sub(CONTEXT));
            b
        };
        // Its line: the newlines of the committed stream before `offset` (hashed, in the log, or in the
        // bytes being committed right now).
        let in_log = (offset.min(self.committed).saturating_sub(self.base) as usize).min(committed_in_log);
        let mut newlines = self.base_lines + super::newlines(&self.log.as_slice()[..in_log]);
        if offset > self.committed {
            newlines += super::newlines(pending_before);
        }
        self.forget_agreement(replica);
        let lane = &mut self.lanes[replica];
        lane.copy = None;
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
            within: 0,
            majority_ended: false,
            replica_ended: false,
        });
        self.shrink_log();
    }

    /// Where `replica`'s stream leaves `winner`'s when neither left the committed prefix and both reached
    /// the committed offset: one wrote more than the other past it (those bytes are still held). `None`
    /// when the two are the same past the committed offset, or either left the prefix (its own
    /// divergence says where).
    pub fn tail_divergence(&self, replica: usize, winner: usize) -> Option<Divergence> {
        let (a, b) = (&self.lanes[replica], &self.lanes[winner]);
        if let (Some(short), true) = (&a.short, b.follows() && b.len > a.len) {
            // It stopped short of the winner, inside the committed stream.
            let mut d = short.clone();
            let rest = (b.len - a.len) as usize;
            d.majority.truncate(rest);
            d.majority_ended = rest <= d.majority.len();
            return Some(d);
        }
        if !a.follows() || !b.follows() || a.len < self.committed || b.len < self.committed {
            return None;
        }
        let (mine, theirs) = (self.view(replica), self.view(winner));
        let k = lcp(mine, theirs);
        if k == mine.len() && k == theirs.len() {
            return None;
        }
        let committed_in_log = (self.committed - self.base) as usize;
        let newlines = self.base_lines
            + super::newlines(&self.log.as_slice()[..committed_in_log])
            + super::newlines(&theirs[..k]);
        let mut before: Vec<u8> = [self.recent.as_slice(), &theirs[..k]].concat();
        before.drain(..before.len().saturating_sub(CONTEXT));
        Some(Divergence {
            offset: self.committed + k as u64,
            line: newlines + 1,
            before,
            majority: theirs[k..].iter().take(64).copied().collect(),
            replica: mine[k..].iter().take(64).copied().collect(),
            within: 0,
            majority_ended: theirs.len() - k <= 64,
            replica_ended: mine.len() - k <= 64,
        })
    }

    /// `replica` no longer takes part in commits: nothing it wrote counts as agreeing with anyone.
    fn forget_agreement(&mut self, replica: usize) {
        for row in &mut self.agree {
            row[replica] = 0;
        }
        self.agree[replica].iter_mut().for_each(|a| *a = 0);
    }

    /// Hash and drop committed bytes every following, unfinished replica has passed (and the caller has
    /// taken).
    fn trim_log(&mut self) {
        for s in 0..self.lanes.len() {
            let lane = &self.lanes[s];
            if lane.follows()
                && !lane.finished
                && self.committed - lane.len.min(self.committed) > self.lag_limit
            {
                // Only a lane on the log can lag behind the committed offset.
                let state = self.state_at(lane.len, &[]);
                self.forget_agreement(s);
                self.lanes[s].behind = Some((self.lanes[s].len, state));
            }
        }
        let slowest = self
            .lanes
            .iter()
            .filter(|l| l.follows() && !l.finished)
            .map(|l| l.len)
            .min()
            .unwrap_or(self.committed)
            .min(self.hold);
        if slowest > self.base {
            let n = (slowest - self.base) as usize;
            // Hash and count in L1-sized blocks, so that the second pass reads from cache.
            for block in self.log.as_slice()[..n].chunks(16 << 10) {
                self.hasher.update(block);
                self.base_lines += super::newlines(block);
            }
            self.log.consume(n);
            self.base += n as u64;
        }
    }
}

/// Up to [`CONTEXT`] committed bytes just before `offset`, stitched from the two places that hold some:
/// `held` (the committed bytes from `base` still in memory) and `recent` (the last committed bytes,
/// ending at `committed`). A replica that diverges right where the slowest one stands would otherwise
/// get no context: everything before it was hashed and dropped.
pub(super) fn context_before(offset: u64, base: u64, held: &[u8], committed: u64, recent: &[u8]) -> Vec<u8> {
    let from = offset.saturating_sub(CONTEXT as u64);
    let recent_start = committed - recent.len() as u64;
    let held_end = base + held.len() as u64;
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut pos = offset;
    while pos > from {
        if pos > base && pos <= held_end {
            let lo = from.max(base);
            pieces.push(&held[(lo - base) as usize..(pos - base) as usize]);
            pos = lo;
        } else if pos > recent_start && pos <= committed {
            let lo = from.max(recent_start);
            pieces.push(&recent[(lo - recent_start) as usize..(pos - recent_start) as usize]);
            pos = lo;
        } else {
            break;
        }
    }
    pieces.iter().rev().flat_map(|p| p.iter().copied()).collect()
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
