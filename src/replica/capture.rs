//! One captured output stream: bytes are hashed as they arrive (masked when asked) and spooled to an
//! anonymous temporary file, never kept in RAM, so a 1 GiB flood costs tmr a 1 MiB buffer.
//!
//! Spooling is deduplicated against a *reference* stream (the first job of a batch): replicas almost
//! always agree, so a follower stores only the byte ranges it produced before the reference did, or after
//! it first differed; every range it did not store is known to equal the reference's bytes at the same
//! offsets. Writing pages into the page cache is the dominant cost of capture here (≈0.6 GB/s measured
//! for ext4 and tmpfs alike), so three agreeing replicas cost one copy instead of three. The full stream
//! is rebuilt only when it is needed: replaying a follower that won, or diffing a dissenter.

use std::cell::{Cell, OnceCell, RefCell};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use anyhow::{Context, Result};
use regex::bytes::Regex;

use crate::fingerprint::StreamSummary;
use crate::mask::MaskedHasher;

/// The reference stream as followers see it: its spool, how much of it exists so far, its newest bytes,
/// and its running digest.
pub struct Reference {
    /// Created on the first byte: most streams of most commands (stderr, `true`) stay empty.
    file: OnceCell<File>,
    len: Cell<u64>,
    scratch: RefCell<Vec<u8>>,
    recent: RefCell<Window>,
    /// Shared so that a follower that only ever repeated the reference can take its digest from the
    /// reference's state at the same length instead of hashing the same bytes again.
    hasher: RefCell<MaskedHasher>,
    /// The reference's digest once it has finished (its hasher is then complete).
    digest: Cell<Option<[u8; 32]>>,
}

/// The reference's newest bytes, as a ring: followers run at most a few pipe-fulls behind the
/// reference, so their comparisons are served from RAM instead of copying the bytes back out of the
/// spool (2 GiB of pread in a 3 x 1 GiB flood). Zero-filled pages are only touched as bytes arrive.
struct Window {
    ring: Vec<u8>,
}

const WINDOW: usize = 4 << 20;

impl Window {
    /// Store the bytes at stream offset `offset` (appended in order).
    fn push(&mut self, offset: u64, chunk: &[u8]) {
        if self.ring.is_empty() {
            self.ring = vec![0; WINDOW];
        }
        let skip = chunk.len().saturating_sub(WINDOW);
        let (offset, chunk) = (offset + skip as u64, &chunk[skip..]);
        let at = offset as usize % WINDOW;
        let first = chunk.len().min(WINDOW - at);
        self.ring[at..at + first].copy_from_slice(&chunk[..first]);
        self.ring[..chunk.len() - first].copy_from_slice(&chunk[first..]);
    }

    /// Compare with the bytes at `offset`, if the window (ending at stream length `len`) still holds them.
    fn matches(&self, offset: u64, chunk: &[u8], len: u64) -> Option<bool> {
        let end = offset + chunk.len() as u64;
        if self.ring.is_empty() || end > len || offset < len.saturating_sub(WINDOW as u64) {
            return None;
        }
        let at = offset as usize % WINDOW;
        let first = chunk.len().min(WINDOW - at);
        Some(
            self.ring[at..at + first] == chunk[..first] && self.ring[..chunk.len() - first] == chunk[first..],
        )
    }
}

impl Reference {
    fn matches(&self, offset: u64, chunk: &[u8]) -> Result<bool> {
        if let Some(same) = self.recent.borrow().matches(offset, chunk, self.len.get()) {
            return Ok(same);
        }
        let Some(file) = self.file.get() else { return Ok(chunk.is_empty()) };
        let mut scratch = self.scratch.borrow_mut();
        scratch.resize(chunk.len(), 0);
        file.read_exact_at(&mut scratch, offset).context("reading the reference spool")?;
        Ok(scratch[..] == *chunk)
    }

    /// Feed the reference's bytes [0, len) to `hasher`: a follower that repeated them without hashing
    /// has to catch up once it stops repeating them.
    fn hash_prefix(&self, len: u64, hasher: &mut MaskedHasher) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let file = self.file.get().context("the reference spool is missing")?;
        let mut buf = vec![0u8; 1 << 16];
        let mut at = 0;
        while at < len {
            let n = ((len - at) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], at).context("reading the reference spool")?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(())
    }

    /// The digest of the reference's first `len` bytes, if its state at that length is at hand.
    fn digest_at(&self, len: u64) -> Option<[u8; 32]> {
        (len == self.len.get())
            .then(|| self.digest.get().unwrap_or_else(|| self.hasher.borrow().clone().finalize()))
    }

    fn shared_file(&self) -> Result<Option<File>> {
        self.file.get().map(|f| f.try_clone().context("sharing the reference spool")).transpose()
    }
}

pub struct Capture {
    /// A follower's own spool, created when it first has to store something.
    spool: Option<File>,
    /// A follower's digest state; the reference's lives in [`Reference`].
    hasher: MaskedHasher,
    len: u64,
    role: Role,
}

enum Role {
    Reference(Rc<Reference>),
    Follower {
        reference: Rc<Reference>,
        /// Sorted, non-overlapping, coalesced byte ranges stored in `spool` at their own offsets.
        stored: Vec<(u64, u64)>,
        /// Once a byte differed from the reference, everything after it is stored.
        diverged: bool,
        /// While every byte so far repeated the reference, hashing waits: `Some(n)` means bytes [0, n)
        /// equal the reference's and are not in `hasher` yet.
        unhashed: Option<u64>,
    },
}

/// A finished stream: its summary, and where its bytes are.
#[derive(Debug)]
pub struct Captured {
    pub summary: StreamSummary,
    spool: Option<File>,
    /// For a follower: the reference spool and the ranges not stored in `spool`'s own file.
    delta: Option<(File, Vec<(u64, u64)>)>,
}

impl Capture {
    /// The stream every other stream of the same kind in the batch is compared with.
    pub fn new_reference(masks: Vec<Regex>) -> (Self, Rc<Reference>) {
        let reference = Rc::new(Reference {
            file: OnceCell::new(),
            len: Cell::new(0),
            scratch: RefCell::new(Vec::new()),
            recent: RefCell::new(Window { ring: Vec::new() }),
            hasher: RefCell::new(MaskedHasher::new(masks.clone())),
            digest: Cell::new(None),
        });
        let role = Role::Reference(Rc::clone(&reference));
        (Capture { spool: None, hasher: MaskedHasher::new(masks), len: 0, role }, reference)
    }

    pub fn new_follower(masks: Vec<Regex>, reference: Rc<Reference>) -> Self {
        let role = Role::Follower { reference, stored: Vec::new(), diverged: false, unhashed: Some(0) };
        Capture { spool: None, hasher: MaskedHasher::new(masks), len: 0, role }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let offset = self.len;
        match &mut self.role {
            Role::Reference(r) => {
                r.hasher.borrow_mut().update(chunk);
                if r.file.get().is_none() {
                    let _ = r.file.set(new_spool()?);
                }
                let mut file = r.file.get().expect("just set");
                file.write_all(chunk).context(SPOOL_ERROR)?;
                r.recent.borrow_mut().push(offset, chunk);
                r.len.set(offset + chunk.len() as u64);
            }
            Role::Follower { reference, stored, diverged, unhashed } => {
                let end = offset + chunk.len() as u64;
                let same = !*diverged && end <= reference.len.get() && reference.matches(offset, chunk)?;
                if same && *unhashed == Some(offset) {
                    *unhashed = Some(end);
                } else {
                    if let Some(n) = unhashed.take() {
                        reference.hash_prefix(n, &mut self.hasher)?;
                    }
                    self.hasher.update(chunk);
                }
                if !same {
                    *diverged |= end <= reference.len.get();
                    if self.spool.is_none() {
                        self.spool = Some(new_spool()?);
                    }
                    let spool = self.spool.as_ref().expect("just set");
                    spool.write_all_at(chunk, offset).context(SPOOL_ERROR)?;
                    match stored.last_mut() {
                        Some((_, e)) if *e == offset => *e = end,
                        _ => stored.push((offset, end)),
                    }
                }
            }
        }
        self.len += chunk.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_reference(&self) -> bool {
        matches!(self.role, Role::Reference(_))
    }

    /// For a follower still repeating the reference: how many of the reference's bytes it has not
    /// compared yet. Reading more than that would store bytes the reference is about to write anyway.
    pub fn compare_room(&self) -> Option<u64> {
        match &self.role {
            Role::Follower { reference, diverged: false, .. } => {
                Some(reference.len.get().saturating_sub(self.len))
            }
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Result<Captured> {
        let Capture { spool, mut hasher, len, role } = self;
        let (digest, spool, delta) = match role {
            Role::Reference(r) => {
                let digest = r.hasher.borrow().clone().finalize();
                r.digest.set(Some(digest));
                (digest, r.shared_file()?, None)
            }
            Role::Follower { reference, stored, unhashed, .. } => {
                let digest = match unhashed.map(|n| (n, reference.digest_at(n))) {
                    Some((_, Some(d))) => d,
                    Some((n, None)) => {
                        // A strict prefix of the reference (which has moved on): hash it from the spool.
                        reference.hash_prefix(n, &mut hasher)?;
                        hasher.finalize()
                    }
                    None => hasher.finalize(),
                };
                let gaps = gaps(&stored, len);
                match reference.shared_file()? {
                    Some(f) if !gaps.is_empty() => (digest, spool, Some((f, gaps))),
                    _ => (digest, spool, None),
                }
            }
        };
        Ok(Captured { summary: StreamSummary { len, digest }, spool, delta })
    }
}

const SPOOL_ERROR: &str = "writing an output spool file (is $TMPDIR full?)";

fn new_spool() -> Result<File> {
    tempfile::tempfile().context("creating an output spool file in $TMPDIR")
}

/// The ranges of [0, len) not covered by `stored`.
fn gaps(stored: &[(u64, u64)], len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(s, e) in stored {
        if s > at {
            out.push((at, s));
        }
        at = e;
    }
    if at < len {
        out.push((at, len));
    }
    out
}

impl Captured {
    /// The complete stream as a file, rebuilding a follower's unstored ranges from the reference first.
    pub fn file(&mut self) -> Result<&File> {
        if self.spool.is_none() {
            self.spool = Some(new_spool()?);
        }
        let spool = self.spool.as_ref().expect("just set");
        if let Some((reference, gaps)) = self.delta.take() {
            let mut buf = vec![0u8; 1 << 20];
            for (start, end) in gaps {
                let mut at = start;
                while at < end {
                    let n = ((end - at) as usize).min(buf.len());
                    reference.read_exact_at(&mut buf[..n], at).context("reading the reference spool")?;
                    spool.write_all_at(&buf[..n], at).context(SPOOL_ERROR)?;
                    at += n as u64;
                }
            }
        }
        Ok(spool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    fn contents(c: &mut Captured) -> Vec<u8> {
        let mut f = c.file().unwrap().try_clone().unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    }

    /// Interleave reference and follower chunks in the given order and check that the follower's
    /// rebuilt stream is exactly what it produced.
    fn check(reference: &[&[u8]], follower: &[&[u8]], follower_first: bool) -> (Vec<u8>, Vec<u8>, usize) {
        check_masked(reference, follower, follower_first, &[])
    }

    /// Also checks that both digests are those of the streams' own bytes, whatever the follower skipped.
    fn check_masked(
        reference: &[&[u8]],
        follower: &[&[u8]],
        follower_first: bool,
        masks: &[&str],
    ) -> (Vec<u8>, Vec<u8>, usize) {
        let masks: Vec<Regex> = masks.iter().map(|m| Regex::new(m).unwrap()).collect();
        let (mut r, shared) = Capture::new_reference(masks.clone());
        let mut f = Capture::new_follower(masks.clone(), shared);
        let n = reference.len().max(follower.len());
        for i in 0..n {
            if follower_first {
                if let Some(c) = follower.get(i) {
                    f.push(c).unwrap()
                }
            }
            if let Some(c) = reference.get(i) {
                r.push(c).unwrap()
            }
            if !follower_first {
                if let Some(c) = follower.get(i) {
                    f.push(c).unwrap()
                }
            }
        }
        let stored = match &f.role {
            Role::Follower { stored, .. } => stored.iter().map(|(s, e)| (e - s) as usize).sum(),
            _ => 0,
        };
        // Either may finish first.
        let (mut rc, mut fc) = if follower_first {
            let fc = f.finish().unwrap();
            (r.finish().unwrap(), fc)
        } else {
            (r.finish().unwrap(), f.finish().unwrap())
        };
        let (rb, fb) = (contents(&mut rc), contents(&mut fc));
        let digest = |bytes: &[u8]| {
            let mut h = MaskedHasher::new(masks.clone());
            h.update(bytes);
            h.finalize()
        };
        assert_eq!(rc.summary.digest, digest(&rb), "reference digest");
        assert_eq!(fc.summary.digest, digest(&fb), "follower digest");
        assert_eq!((rc.summary.len, fc.summary.len), (rb.len() as u64, fb.len() as u64));
        (rb, fb, stored)
    }

    #[test]
    fn an_agreeing_follower_behind_the_reference_stores_nothing() {
        let (r, f, stored) = check(&[b"hello ", b"world\n"], &[b"hello ", b"world\n"], false);
        assert_eq!(r, b"hello world\n");
        assert_eq!(f, b"hello world\n");
        assert_eq!(stored, 0);
    }

    #[test]
    fn a_follower_ahead_of_the_reference_stores_and_rebuilds() {
        let (_, f, stored) = check(&[b"abc", b"def"], &[b"abc", b"def"], true);
        assert_eq!(f, b"abcdef");
        assert_eq!(stored, 6);
    }

    #[test]
    fn a_diverging_follower_keeps_its_own_bytes() {
        let (r, f, _) = check(&[b"aaaa", b"bbbb", b"cccc"], &[b"aaaa", b"bXbb", b"cccc", b"dd"], false);
        assert_eq!(r, b"aaaabbbbcccc");
        assert_eq!(f, b"aaaabXbbccccdd");
    }

    #[test]
    fn a_shorter_follower_is_rebuilt_from_the_reference_prefix() {
        let (_, f, stored) = check(&[b"12345", b"678"], &[b"12", b"345"], false);
        assert_eq!(f, b"12345");
        assert_eq!(stored, 0);
    }

    #[test]
    fn a_longer_follower_hashes_the_shared_prefix_then_its_own_bytes() {
        let (_, f, _) = check(&[b"12345"], &[b"12345", b"678"], false);
        assert_eq!(f, b"12345678");
        let (_, f, _) = check_masked(&[b"t=1ms\nok\n"], &[b"t=1ms\nok\n", b"t=9ms\n"], false, &["[0-9]+ms"]);
        assert_eq!(f, b"t=1ms\nok\nt=9ms\n");
    }

    #[test]
    fn a_follower_equal_after_masks_gets_the_masked_digest() {
        let (r, f, _) =
            check_masked(&[b"t=1ms\n", b"done\n"], &[b"t=2ms\n", b"done\n"], false, &["[0-9]+ms"]);
        assert_ne!(r, f);
    }

    #[test]
    fn the_window_serves_recent_bytes_and_refuses_old_or_future_ones() {
        let mut w = Window { ring: Vec::new() };
        let big: Vec<u8> = (0..WINDOW + 100).map(|i| (i % 251) as u8).collect();
        w.push(0, &big[..1000]);
        assert_eq!(w.matches(10, &big[10..20], 1000), Some(true));
        assert_eq!(w.matches(10, &big[11..21], 1000), Some(false));
        assert_eq!(w.matches(995, &big[995..1005], 1000), None, "not written yet");
        w.push(1000, &big[1000..]);
        let len = big.len() as u64;
        assert_eq!(w.matches(50, &big[50..60], len), None, "overwritten");
        // A comparison across the ring's wrap point.
        let at = WINDOW - 5;
        assert_eq!(w.matches(at as u64, &big[at..at + 10], len), Some(true));
    }

    proptest::proptest! {
        /// Any interleaving, chunking and divergence: both streams rebuild byte-exact, with their own digests.
        #[test]
        fn any_interleaving_rebuilds_and_digests_exactly(
            base in proptest::collection::vec(0u8..4, 0..200),
            flip in proptest::option::of(0usize..200),
            extra in proptest::collection::vec(0u8..4, 0..20),
            cut in 1usize..17,
            follower_first: bool,
        ) {
            let mut other = base.clone();
            if let Some(i) = flip.filter(|&i| i < other.len()) {
                other[i] ^= 1;
            }
            other.extend_from_slice(&extra);
            let rc: Vec<&[u8]> = base.chunks(cut).collect();
            let fc: Vec<&[u8]> = other.chunks(cut + 3).collect();
            let (r, f, _) = check(&rc, &fc, follower_first);
            proptest::prop_assert_eq!(r, base);
            proptest::prop_assert_eq!(f, other);
        }
    }

    #[test]
    fn gaps_are_the_complement_of_stored_ranges() {
        assert_eq!(gaps(&[], 5), vec![(0, 5)]);
        assert_eq!(gaps(&[(0, 2), (4, 5)], 7), vec![(2, 4), (5, 7)]);
        assert_eq!(gaps(&[(0, 7)], 7), vec![]);
    }
}
