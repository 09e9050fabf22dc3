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

    /// A digest state for the reference's first `len` bytes (the bytes a follower repeated without
    /// hashing): its own state if it stands there, else re-hashed from the spool (only when a follower
    /// differs, or ends, behind the reference).
    fn hasher_at(&self, len: u64) -> Result<MaskedHasher> {
        let mut h = self.hasher.borrow().clone();
        if len == self.len.get() {
            return Ok(h);
        }
        h.reset();
        if len > 0 {
            let file = self.file.get().context("the reference spool is missing")?;
            hash_range(file, 0, len, &mut h)?;
        }
        Ok(h)
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
    len: u64,
    role: Role,
}

enum Role {
    Reference(Rc<Reference>),
    Follower(Box<Follower>),
}

struct Follower {
    reference: Rc<Reference>,
    /// Its own spool, created when it first has to store something.
    spool: Option<File>,
    /// Sorted, non-overlapping, coalesced byte ranges stored in `spool` at their own offsets.
    stored: Vec<(u64, u64)>,
    state: State,
}

/// Where a follower stands against the reference. Hashing is deferred while it only repeats the
/// reference: in a flood, hashing two followers' identical bytes was a third of tmr's time.
enum State {
    /// Every byte so far equals the reference's bytes at the same offsets, and none was hashed: the
    /// reference's digest state at the same length stands for them.
    Repeating,
    /// Bytes [from, len) were read before the reference wrote them (it was not producing and the follower
    /// is never held back then): stored, not compared yet, not hashed; `at` is the reference's digest
    /// state at `from`. Settled when the reference catches up.
    Ahead { from: u64, at: MaskedHasher },
    /// It differed from the reference: every byte from there on is hashed here and stored.
    Diverged(MaskedHasher),
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
            hasher: RefCell::new(MaskedHasher::new(masks)),
            digest: Cell::new(None),
        });
        let role = Role::Reference(Rc::clone(&reference));
        (Capture { len: 0, role }, reference)
    }

    /// Its masks are the reference's (one `BatchOpts` sets both).
    pub fn new_follower(reference: Rc<Reference>) -> Self {
        let f = Follower { reference, spool: None, stored: Vec::new(), state: State::Repeating };
        Capture { len: 0, role: Role::Follower(Box::new(f)) }
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
            Role::Follower(f) => f.push(offset, chunk)?,
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
            Role::Follower(f) if !matches!(f.state, State::Diverged(_)) => {
                Some(f.reference.len.get().saturating_sub(self.len))
            }
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Result<Captured> {
        let len = self.len;
        match self.role {
            Role::Reference(r) => {
                let digest = r.hasher.borrow().clone().finalize();
                r.digest.set(Some(digest));
                Ok(Captured { summary: StreamSummary { len, digest }, spool: r.shared_file()?, delta: None })
            }
            Role::Follower(f) => f.finish(len),
        }
    }
}

impl Follower {
    fn push(&mut self, offset: u64, chunk: &[u8]) -> Result<()> {
        let end = offset + chunk.len() as u64;
        self.settle(offset)?;
        let rl = self.reference.len.get();
        match &mut self.state {
            State::Repeating => {
                // The part the reference has already written is compared now; the rest is ahead of it.
                let split = (rl.clamp(offset, end) - offset) as usize;
                if !self.reference.matches(offset, &chunk[..split])? {
                    let mut h = self.reference.hasher_at(offset)?;
                    h.update(chunk);
                    self.state = State::Diverged(h);
                    return self.store(offset, chunk);
                }
                if split < chunk.len() {
                    // The reference stands exactly at offset + split: its digest state is that of the
                    // follower's bytes so far.
                    let at = self.reference.hasher.borrow().clone();
                    self.state = State::Ahead { from: offset + split as u64, at };
                    return self.store(offset + split as u64, &chunk[split..]);
                }
                Ok(())
            }
            State::Ahead { .. } => self.store(offset, chunk),
            State::Diverged(h) => {
                h.update(chunk);
                self.store(offset, chunk)
            }
        }
    }

    /// Once the reference has written everything an `Ahead` follower read first, compare: equal bytes
    /// make it `Repeating` again (their stored copy is dropped), a difference makes it `Diverged`.
    fn settle(&mut self, len: u64) -> Result<()> {
        let State::Ahead { from, .. } = self.state else { return Ok(()) };
        if self.reference.len.get() < len {
            return Ok(());
        }
        let spool = self.spool.as_ref().context("a follower's ahead bytes are not stored")?;
        let mut buf = vec![0u8; 1 << 16];
        let mut at = from;
        let mut same = true;
        while same && at < len {
            let n = ((len - at) as usize).min(buf.len());
            spool.read_exact_at(&mut buf[..n], at).context("reading a follower's spool")?;
            same = self.reference.matches(at, &buf[..n])?;
            at += n as u64;
        }
        let State::Ahead { at: mut h, .. } = std::mem::replace(&mut self.state, State::Repeating) else {
            unreachable!("checked above")
        };
        if same {
            // Only the ahead bytes are stored while repeating: the rebuild takes them from the reference.
            self.stored.clear();
        } else {
            hash_range(spool, from, len, &mut h)?;
            self.state = State::Diverged(h);
        }
        Ok(())
    }

    fn store(&mut self, offset: u64, chunk: &[u8]) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        if self.spool.is_none() {
            self.spool = Some(new_spool()?);
        }
        let spool = self.spool.as_ref().expect("just set");
        spool.write_all_at(chunk, offset).context(SPOOL_ERROR)?;
        let end = offset + chunk.len() as u64;
        match self.stored.last_mut() {
            Some((_, e)) if *e == offset => *e = end,
            _ => self.stored.push((offset, end)),
        }
        Ok(())
    }

    fn finish(mut self, len: u64) -> Result<Captured> {
        self.settle(len)?;
        let digest = match std::mem::replace(&mut self.state, State::Repeating) {
            State::Repeating => match self.reference.digest_at(len) {
                Some(d) => d,
                // A strict prefix of the reference, which has moved on: hash it from the spool.
                None => self.reference.hasher_at(len)?.finalize(),
            },
            State::Ahead { from, mut at } => {
                let spool = self.spool.as_ref().context("a follower's ahead bytes are not stored")?;
                hash_range(spool, from, len, &mut at)?;
                at.finalize()
            }
            State::Diverged(h) => h.finalize(),
        };
        let gaps = gaps(&self.stored, len);
        let delta = match self.reference.shared_file()? {
            Some(f) if !gaps.is_empty() => Some((f, gaps)),
            _ => None,
        };
        Ok(Captured { summary: StreamSummary { len, digest }, spool: self.spool, delta })
    }
}

/// Feed `file`'s bytes [from, to) to `hasher`.
fn hash_range(file: &File, from: u64, to: u64, hasher: &mut MaskedHasher) -> Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at).context("reading an output spool")?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

const SPOOL_ERROR: &str = "writing an output spool file (is $TMPDIR full?)";

fn new_spool() -> Result<File> {
    private_tempfile().context("creating an output spool file in $TMPDIR")
}

/// An anonymous file in $TMPDIR that only tmr's user can read: spools hold the command's output and
/// stdin. `tempfile::tempfile()` opens it with `O_TMPFILE` and the default mode (0666 less the umask:
/// 0644), so it is opened here with 0600; where `O_TMPFILE` is refused, tempfile's named-then-unlinked
/// file is already 0600.
pub fn private_tempfile() -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(&dir)
        .or_else(|_| tempfile::tempfile_in(&dir))
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

    /// Chunk i of each in turn (the follower's first when `follower_first`), either finishing first.
    fn check_masked(
        reference: &[&[u8]],
        follower: &[&[u8]],
        follower_first: bool,
        masks: &[&str],
    ) -> (Vec<u8>, Vec<u8>, usize) {
        let turns = 2 * reference.len().max(follower.len());
        let schedule: Vec<bool> = (0..turns).map(|t| (t % 2 == 0) != follower_first).collect();
        run_schedule(reference, follower, &schedule, follower_first, masks)
    }

    #[test]
    fn an_agreeing_follower_behind_the_reference_stores_nothing() {
        let (r, f, stored) = check(&[b"hello ", b"world\n"], &[b"hello ", b"world\n"], false);
        assert_eq!(r, b"hello world\n");
        assert_eq!(f, b"hello world\n");
        assert_eq!(stored, 0);
    }

    #[test]
    fn a_follower_ahead_of_the_reference_stores_until_the_reference_catches_up() {
        // Each chunk is read before the reference writes it: stored, then dropped once the reference has
        // written the same bytes; only the last one is still held when the pushes end.
        let (_, f, stored) = check(&[b"abc", b"def"], &[b"abc", b"def"], true);
        assert_eq!(f, b"abcdef");
        assert_eq!(stored, 3);
    }

    #[test]
    fn a_follower_ahead_that_turns_out_different_keeps_its_bytes() {
        let (r, f, _) = check(&[b"abc", b"dEf", b"ghi"], &[b"abc", b"def", b"ghi"], true);
        assert_eq!((r.as_slice(), f.as_slice()), (&b"abcdEfghi"[..], &b"abcdefghi"[..]));
        // Ahead and still unsettled when it finishes: the reference stopped short.
        let (_, f, _) = check(&[b"ab"], &[b"abc", b"def"], true);
        assert_eq!(f, b"abcdef");
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

    /// Push the chunks in the order `schedule` says (true: the reference's next chunk; when one side has
    /// none left, the other's), finish in the given order, and check that both streams rebuild to their
    /// own bytes with the digests of those bytes, whatever the follower skipped. Returns both streams
    /// and what the follower held in its own spool before finishing.
    fn run_schedule(
        rc: &[&[u8]],
        fc: &[&[u8]],
        schedule: &[bool],
        follower_finishes_first: bool,
        masks: &[&str],
    ) -> (Vec<u8>, Vec<u8>, usize) {
        let masks: Vec<Regex> = masks.iter().map(|m| Regex::new(m).unwrap()).collect();
        let (mut r, shared) = Capture::new_reference(masks.clone());
        let mut f = Capture::new_follower(shared);
        let (mut ri, mut fi) = (0, 0);
        for &take_ref in schedule.iter().chain(std::iter::repeat_n(&true, rc.len() + fc.len())) {
            if (take_ref && ri < rc.len()) || fi >= fc.len() {
                if ri < rc.len() {
                    r.push(rc[ri]).unwrap();
                    ri += 1;
                }
            } else {
                f.push(fc[fi]).unwrap();
                fi += 1;
            }
        }
        let stored = match &f.role {
            Role::Follower(f) => f.stored.iter().map(|(s, e)| (e - s) as usize).sum(),
            _ => 0,
        };
        let (mut rcap, mut fcap) = if follower_finishes_first {
            let fcap = f.finish().unwrap();
            (r.finish().unwrap(), fcap)
        } else {
            (r.finish().unwrap(), f.finish().unwrap())
        };
        let (rb, fb) = (contents(&mut rcap), contents(&mut fcap));
        assert_eq!(rb, rc.concat());
        assert_eq!(fb, fc.concat());
        let digest = |bytes: &[u8]| {
            let mut h = MaskedHasher::new(masks.clone());
            h.update(bytes);
            h.finalize()
        };
        assert_eq!(rcap.summary.digest, digest(&rb), "reference digest");
        assert_eq!(fcap.summary.digest, digest(&fb), "follower digest");
        assert_eq!((rcap.summary.len, fcap.summary.len), (rb.len() as u64, fb.len() as u64));
        (rb, fb, stored)
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

        /// Any schedule: the follower runs ahead, falls behind, catches up, differs; masks or not.
        #[test]
        fn any_schedule_rebuilds_and_digests_exactly(
            base in proptest::collection::vec(proptest::sample::select(b"ab1\n".to_vec()), 0..120),
            flip in proptest::option::of(0usize..120),
            cut in (1usize..9, 1usize..9),
            schedule in proptest::collection::vec(proptest::bool::ANY, 0..60),
            follower_finishes_first: bool,
            masked: bool,
            length in -5i32..5,
        ) {
            let mut other = base.clone();
            if let Some(i) = flip.filter(|&i| i < other.len()) {
                other[i] = if other[i] == b'a' { b'b' } else { b'a' };
            }
            // Shorter or longer than the reference.
            if length < 0 {
                other.truncate(other.len().saturating_sub(length.unsigned_abs() as usize));
            } else {
                other.extend(std::iter::repeat_n(b'1', length as usize));
            }
            let rc: Vec<&[u8]> = base.chunks(cut.0).collect();
            let fc: Vec<&[u8]> = other.chunks(cut.1).collect();
            let masks: &[&str] = if masked { &["1+"] } else { &[] };
            run_schedule(&rc, &fc, &schedule, follower_finishes_first, masks);
        }
    }

    /// Spools used to be created 0644 (`O_TMPFILE` with the default mode), readable by other users.
    #[test]
    fn spools_are_private() {
        use std::os::unix::fs::MetadataExt;
        let (mut r, shared) = Capture::new_reference(Vec::new());
        let mut f = Capture::new_follower(shared);
        r.push(b"secret").unwrap();
        f.push(b"SECRET").unwrap();
        for mut cap in [r.finish().unwrap(), f.finish().unwrap()] {
            let mode = cap.file().unwrap().metadata().unwrap().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let stdin_spool = private_tempfile().unwrap();
        assert_eq!(stdin_spool.metadata().unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn gaps_are_the_complement_of_stored_ranges() {
        assert_eq!(gaps(&[], 5), vec![(0, 5)]);
        assert_eq!(gaps(&[(0, 2), (4, 5)], 7), vec![(2, 4), (5, 7)]);
        assert_eq!(gaps(&[(0, 7)], 7), vec![]);
    }
}
