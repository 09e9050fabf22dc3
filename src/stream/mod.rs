//! Streaming delivery of compared output: what a strict majority of replicas agrees on is committed as
//! it arrives (`bytes`: byte by byte; `lines`: line by line under `--mask`), so it can be written to
//! tmr's stdout at once and never taken back. Pure: no processes, no files; property-tested against the
//! final vote over whole outputs.

pub mod bytes;
pub mod fifo;
pub mod lines;
#[cfg(test)]
mod reference;

pub use bytes::{ByteCommitter, Divergence};

/// Bytes a replica may lag behind the committed offset and still be compared byte by byte.
pub const LAG_LIMIT: u64 = 1 << 20;
pub use lines::LineCommitter;

use regex::bytes::Regex;

use crate::digest::Digest;

/// One compared stream's committer: byte-wise, or line-wise when masks apply.
pub enum Committer {
    Bytes(Box<ByteCommitter>),
    Lines(LineCommitter),
}

impl Committer {
    pub fn new(replicas: usize, masks: Vec<Regex>) -> Self {
        if masks.is_empty() {
            Committer::Bytes(Box::new(ByteCommitter::new(replicas, LAG_LIMIT)))
        } else {
            Committer::Lines(LineCommitter::new(replicas, masks))
        }
    }

    /// `replica` wrote `chunk`; returns the bytes this commits (deliver them now).
    pub fn push(&mut self, replica: usize, chunk: &[u8]) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Committer::Bytes(c) => std::borrow::Cow::Borrowed(c.push(replica, chunk)),
            Committer::Lines(c) => std::borrow::Cow::Owned(c.push(replica, chunk)),
        }
    }

    /// `replica`'s stream ended (EOF); returns what this commits.
    pub fn finish(&mut self, replica: usize) -> Vec<u8> {
        match self {
            Committer::Bytes(c) => {
                c.finish(replica);
                Vec::new()
            }
            Committer::Lines(c) => c.finish(replica),
        }
    }

    pub fn committed_bytes(&self) -> u64 {
        match self {
            Committer::Bytes(c) => c.committed(),
            Committer::Lines(c) => c.committed_bytes(),
        }
    }

    /// What is left to deliver if `replica` wins: its output past the committed prefix.
    pub fn remainder(&self, replica: usize) -> Option<Vec<u8>> {
        match self {
            Committer::Bytes(c) => c.remainder(replica).map(<[u8]>::to_vec),
            Committer::Lines(c) => c.remainder(replica),
        }
    }

    /// The digest the vote compares (of the masked stream under masks), once `replica`'s stream ended.
    pub fn digest(&self, replica: usize) -> Option<Digest> {
        match self {
            Committer::Bytes(c) => c.digest(replica),
            Committer::Lines(c) => c.digest(replica),
        }
    }

    /// See [`ByteCommitter::tail_divergence`] (under masks, lines are compared whole: `None`).
    pub fn tail_divergence(&self, replica: usize, winner: usize) -> Option<Divergence> {
        match self {
            Committer::Bytes(c) => c.tail_divergence(replica, winner),
            Committer::Lines(_) => None,
        }
    }

    pub fn divergence(&self, replica: usize) -> Option<&Divergence> {
        match self {
            Committer::Bytes(c) => c.divergence(replica),
            Committer::Lines(c) => c.divergence(replica),
        }
    }

    /// Bytes held in RAM for the stream (ahead of and behind the committed prefix).
    pub fn held(&self) -> usize {
        match self {
            Committer::Bytes(c) => c.held(),
            Committer::Lines(c) => c.held(),
        }
    }
}

/// The newlines in `bytes`, for the line numbers of divergences. memchr's count took 23% of the
/// committer's time in the flood (it finds each match, and there is one every 64 bytes); bytecount
/// counts 32 bytes per vector compare (AVX2 chosen at run time).
pub fn newlines(bytes: &[u8]) -> u64 {
    bytecount::count(bytes, b'\n') as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The strict-majority winner among whole outputs compared by `key`, if any.
    fn winner<K: PartialEq>(keys: &[K]) -> Option<usize> {
        (0..keys.len()).find(|&i| keys.iter().filter(|k| **k == keys[i]).count() * 2 > keys.len())
    }

    /// Feed every replica's output in the given chunk sizes, interleaved by `schedule`, then finish all.
    fn feed(c: &mut Committer, outputs: &[Vec<u8>], chunks: &[usize], schedule: &[usize]) -> Vec<u8> {
        let n = outputs.len();
        let mut at = vec![0usize; n];
        let mut delivered = Vec::new();
        let mut step = 0;
        let mut turn = 0;
        while at.iter().zip(outputs).any(|(a, o)| *a < o.len()) {
            let pick = (schedule.get(turn % schedule.len().max(1)).copied().unwrap_or(0) + turn / 7) % n;
            turn += 1;
            // Some schedules pick only finished replicas, forever (a CI run hung on one: 14 entries, the
            // first 7 even and the last 7 odd, never pick replica 1 of 2): take the next unfinished one.
            let Some(r) = (0..n).map(|k| (pick + k) % n).find(|&r| at[r] < outputs[r].len()) else { break };
            let size = chunks.get(step % chunks.len().max(1)).copied().unwrap_or(1).max(1);
            step += 1;
            let end = (at[r] + size).min(outputs[r].len());
            let bytes = &outputs[r][at[r]..end];
            match c {
                // Every other chunk is read in place when the committer offers room (as the hub reads a
                // leader), with garbage after it that must never be taken for output.
                Committer::Bytes(b) if step % 2 == 0 => {
                    let roomy = match b.room(r, bytes.len() + 2) {
                        Some(room) => {
                            room[..bytes.len()].copy_from_slice(bytes);
                            room[bytes.len()..].fill(b'X');
                            true
                        }
                        None => false,
                    };
                    let got = if roomy { b.push_room(r, bytes.len()) } else { b.push(r, bytes) };
                    delivered.extend(got.iter());
                }
                _ => delivered.extend(c.push(r, bytes).iter()),
            }
            at[r] = end;
            // What the capture loop does with a replica whose lead can never be committed.
            if let Committer::Bytes(b) = c {
                if b.hopeless(r) {
                    b.give_up(r);
                }
            }
        }
        for r in 0..n {
            delivered.extend(c.finish(r));
        }
        delivered
    }

    /// Outputs: a common text, and each replica either keeps it or diverges at some point.
    fn outputs() -> impl Strategy<Value = Vec<Vec<u8>>> {
        (1usize..6, prop::collection::vec(prop::sample::select(b"ab\n".to_vec()), 0..200)).prop_flat_map(
            |(n, base)| {
                let len = base.len();
                prop::collection::vec(
                    (
                        any::<bool>(),
                        0..=len,
                        prop::collection::vec(prop::sample::select(b"abc\n".to_vec()), 0..40),
                    ),
                    n,
                )
                .prop_map(move |specs| {
                    specs
                        .into_iter()
                        .map(|(same, cut, tail)| {
                            if same {
                                base.clone()
                            } else {
                                let mut o = base[..cut].to_vec();
                                o.extend(tail);
                                o
                            }
                        })
                        .collect()
                })
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the interleaving and chunking: the committed bytes are a prefix of the winner's
        /// output, and the committed bytes plus the winner's remainder are its output byte for byte.
        /// With no winner, the committed bytes are still a prefix shared by a strict majority.
        #[test]
        fn committed_bytes_always_belong_to_the_winner(
            outs in outputs(),
            chunks in prop::collection::vec(1usize..50, 1..10),
            schedule in prop::collection::vec(0usize..6, 1..20),
            lag in prop::sample::select(vec![0u64, 3, 17, LAG_LIMIT]),
        ) {
            // Small lag limits make replicas fall behind and catch up (or not) all the time.
            let mut c = Committer::Bytes(Box::new(ByteCommitter::new(outs.len(), lag)));
            let delivered = feed(&mut c, &outs, &chunks, &schedule);
            prop_assert_eq!(delivered.len() as u64, c.committed_bytes());
            // Every replica's digest is the digest of exactly what it wrote, though agreeing bytes were
            // hashed once for all.
            for (r, o) in outs.iter().enumerate() {
                prop_assert_eq!(c.digest(r), Some(crate::digest::digest(o)), "replica {}", r);
            }
            match winner(&outs) {
                Some(w) => {
                    prop_assert!(outs[w].starts_with(&delivered));
                    let mut all = delivered.clone();
                    all.extend(c.remainder(w).expect("the winner agrees with every commit"));
                    prop_assert_eq!(&all, &outs[w]);
                }
                None => {
                    let sharing = outs.iter().filter(|o| o.starts_with(&delivered)).count();
                    prop_assert!(sharing * 2 > outs.len() || delivered.is_empty());
                }
            }
        }

        /// Under masks: lines commit when a majority's masked lines agree; delivered raw lines come from
        /// real replicas, and with a winner, the delivered stream masks to the winner's masked stream.
        #[test]
        fn committed_lines_mask_to_the_winners_lines(
            lines in prop::collection::vec((0u8..3, 0u32..1000), 0..30),
            diverge in prop::collection::vec(proptest::option::of((0usize..30, 0u8..3)), 1..6),
            chunks in prop::collection::vec(1usize..30, 1..10),
            schedule in prop::collection::vec(0usize..6, 1..20),
        ) {
            let mask = Regex::new("[0-9]+").unwrap();
            let n = diverge.len();
            // Replica r prints each line with its own number (masked away), and maybe another word at one
            // line, from where it diverges.
            let outs: Vec<Vec<u8>> = (0..n)
                .map(|r| {
                    let mut o = Vec::new();
                    for (i, (word, num)) in lines.iter().enumerate() {
                        let w = match diverge[r] { Some((at, other)) if i >= at => other + 10, _ => *word };
                        o.extend(format!("w{w} t={}\n", num + r as u32).into_bytes());
                    }
                    o
                })
                .collect();
            let masked = |o: &[u8]| mask_line(std::slice::from_ref(&mask), o).into_owned();
            let mut c = Committer::new(n, vec![mask.clone()]);
            let delivered = feed(&mut c, &outs, &chunks, &schedule);
            let keys: Vec<Vec<u8>> = outs.iter().map(|o| masked(o)).collect();
            for (r, o) in outs.iter().enumerate() {
                let mut h = crate::mask::MaskedHasher::new(vec![mask.clone()]);
                h.update(o);
                prop_assert_eq!(c.digest(r), Some(h.finalize()), "replica {}", r);
            }
            if let Some(w) = winner(&keys) {
                let mut all = delivered.clone();
                all.extend(c.remainder(w).expect("the winner agrees with every committed line"));
                prop_assert_eq!(masked(&all), keys[w].clone());
            }
            for line in delivered.split_inclusive(|b| *b == b'\n') {
                prop_assert!(outs.iter().any(|o| o.split_inclusive(|b| *b == b'\n').any(|l| l == line)));
            }
        }
    }

    use crate::mask::mask_line;

    /// The helper itself must end whatever the schedule: this one picks replica 0 at every turn.
    #[test]
    fn feeding_ends_even_when_the_schedule_never_picks_a_replica() {
        let schedule = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1];
        let outs = vec![b"a\n".to_vec(), b"a\nb\n".to_vec()];
        let mut c = Committer::new(2, vec![]);
        let delivered = feed(&mut c, &outs, &[1], &schedule);
        assert_eq!(delivered, b"a\n".to_vec(), "both wrote a line; only replica 1 wrote the second");
    }

    /// A laggard that differs at the very byte where it stands (the oldest one kept) still gets the
    /// committed bytes before it as context: from the last committed bytes, since the log's are hashed.
    #[test]
    fn a_laggard_that_differs_where_it_stands_still_gets_context() {
        let majority = [vec![b'a'; 599], b"x".to_vec()].concat();
        let mut c = Committer::new(3, vec![]);
        c.push(0, &majority);
        c.push(1, &majority);
        c.push(2, &majority[..599]);
        c.push(2, b"y");
        let d = c.divergence(2).expect("replica 2 diverged").clone();
        assert_eq!((d.offset, d.line), (599, 1));
        assert!(d.before.len() >= 255 && d.before.iter().all(|&b| b == b'a'), "{:?}", d.before);
        assert_eq!(d.majority, b"x");
    }

    /// A replica that stops early on a strict prefix of what the others go on to commit wrote different
    /// output: its digest must not become the longer committed stream's.
    #[test]
    fn a_replica_that_ends_on_a_prefix_keeps_its_own_digest() {
        let mut c = Committer::new(3, vec![]);
        c.push(0, b"abc");
        c.finish(0);
        c.push(1, b"abcd");
        c.push(2, b"abcd");
        c.finish(1);
        c.finish(2);
        assert_eq!(c.digest(0), Some(crate::digest::digest(b"abc")));
        assert_eq!(c.digest(1), Some(crate::digest::digest(b"abcd")));

        // The same under masks, line by line.
        let mask = Regex::new("[0-9]+").unwrap();
        let masked = |o: &[u8]| {
            let mut h = crate::mask::MaskedHasher::new(vec![mask.clone()]);
            h.update(o);
            h.finalize()
        };
        let mut c = Committer::new(3, vec![mask.clone()]);
        c.push(0, b"a1\nb2\n");
        c.finish(0);
        c.push(1, b"a1\nb2\nc3\n");
        c.push(2, b"a1\nb2\nc3\n");
        c.finish(1);
        c.finish(2);
        assert_eq!(c.digest(0), Some(masked(b"a1\nb2\n")));
        assert_eq!(c.digest(1), Some(masked(b"a1\nb2\nc3\n")));
    }

    #[test]
    fn a_line_written_by_a_majority_commits_before_anyone_finishes() {
        let mut c = Committer::new(3, vec![]);
        assert_eq!(c.push(0, b"1\n").to_vec(), b"".to_vec());
        assert_eq!(c.push(2, b"1\n").to_vec(), b"1\n".to_vec(), "two of three agree: committed at once");
        assert_eq!(c.push(1, b"1\n").to_vec(), b"".to_vec(), "the laggard is checked, nothing new");
        assert_eq!(c.push(1, b"x").to_vec(), b"".to_vec());
        assert_eq!(c.push(0, b"2").to_vec(), b"".to_vec());
        assert!(c.divergence(1).is_none());
        assert_eq!(c.push(2, b"2").to_vec(), b"2".to_vec());
        let d = c.divergence(1).expect("replica 1 wrote x where the majority wrote 2");
        assert_eq!(
            (d.offset, d.line, d.before.as_slice(), d.replica.as_slice()),
            (2, 2, &b"1\n"[..], &b"x"[..])
        );
    }

    #[test]
    fn a_laggard_that_differs_from_committed_bytes_diverges_and_costs_no_memory() {
        let mut c = Committer::new(3, vec![]);
        c.push(0, &[b'a'; 1000]);
        c.push(1, &[b'a'; 1000]);
        assert_eq!(c.committed_bytes(), 1000);
        assert_eq!(c.held(), 1000, "the committed bytes are kept for replica 2, which has not written them");
        c.push(2, b"aab");
        let d = c.divergence(2).expect("diverged");
        assert_eq!((d.offset, d.replica.as_slice(), d.majority.first()), (2, &b"b"[..], Some(&b'a')));
        assert_eq!(c.held(), 0, "nobody agreeing lags any more");
    }

    #[test]
    fn masked_lines_deliver_the_lowest_numbered_replica_of_the_majority() {
        let mask = Regex::new("[0-9]+").unwrap();
        let mut c = Committer::new(3, vec![mask]);
        assert_eq!(c.push(2, b"took 3ms\n").to_vec(), b"".to_vec());
        assert_eq!(
            c.push(1, b"took 5ms\n").to_vec(),
            b"took 5ms\n".to_vec(),
            "replica 1 is the lowest of replicas 1 and 2"
        );
        assert_eq!(c.push(0, b"took 9ms\nend").to_vec(), b"".to_vec());
        assert_eq!(c.remainder(0).unwrap(), b"end");
    }

    proptest! {
        #[test]
        fn newlines_are_counted_as_memchr_counts_them(bytes in prop::collection::vec(prop::sample::select(vec![b'\n', b'a', 0xff]), 0..20_000)) {
            prop_assert_eq!(newlines(&bytes), memchr::memchr_iter(b'\n', &bytes).count() as u64);
        }
    }

    #[test]
    fn a_run_of_newlines_fills_each_byte_accumulator_without_overflow() {
        assert_eq!(newlines(&[b'\n'; 32 * 255 * 3 + 7]), 32 * 255 * 3 + 7);
    }
}
