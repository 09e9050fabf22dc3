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

/// The reference stream as followers see it: its spool and how much of it exists so far.
pub struct Reference {
    /// Created on the first byte: most streams of most commands (stderr, `true`) stay empty.
    file: OnceCell<File>,
    len: Cell<u64>,
    scratch: RefCell<Vec<u8>>,
}

impl Reference {
    fn matches(&self, offset: u64, chunk: &[u8]) -> Result<bool> {
        let Some(file) = self.file.get() else { return Ok(chunk.is_empty()) };
        let mut scratch = self.scratch.borrow_mut();
        scratch.resize(chunk.len(), 0);
        file.read_exact_at(&mut scratch, offset).context("reading the reference spool")?;
        Ok(scratch[..] == *chunk)
    }

    fn shared_file(&self) -> Result<Option<File>> {
        self.file.get().map(|f| f.try_clone().context("sharing the reference spool")).transpose()
    }
}

pub struct Capture {
    /// A follower's own spool, created when it first has to store something.
    spool: Option<File>,
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
        });
        let role = Role::Reference(Rc::clone(&reference));
        (Capture { spool: None, hasher: MaskedHasher::new(masks), len: 0, role }, reference)
    }

    pub fn new_follower(masks: Vec<Regex>, reference: Rc<Reference>) -> Self {
        let role = Role::Follower { reference, stored: Vec::new(), diverged: false };
        Capture { spool: None, hasher: MaskedHasher::new(masks), len: 0, role }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        let offset = self.len;
        match &mut self.role {
            Role::Reference(r) => {
                if r.file.get().is_none() {
                    let _ = r.file.set(new_spool()?);
                }
                let mut file = r.file.get().expect("just set");
                file.write_all(chunk).context(SPOOL_ERROR)?;
                r.len.set(offset + chunk.len() as u64);
            }
            Role::Follower { reference, stored, diverged } => {
                let end = offset + chunk.len() as u64;
                let same = !*diverged && end <= reference.len.get() && reference.matches(offset, chunk)?;
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

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Result<Captured> {
        let summary = StreamSummary { len: self.len, digest: self.hasher.finalize() };
        let (spool, delta) = match self.role {
            Role::Reference(r) => (r.shared_file()?, None),
            Role::Follower { reference, stored, .. } => {
                let gaps = gaps(&stored, self.len);
                match reference.shared_file()? {
                    Some(f) if !gaps.is_empty() => (self.spool, Some((f, gaps))),
                    _ => (self.spool, None),
                }
            }
        };
        Ok(Captured { summary, spool, delta })
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
        let (mut r, shared) = Capture::new_reference(vec![]);
        let mut f = Capture::new_follower(vec![], shared);
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
        let (mut rc, mut fc) = (r.finish().unwrap(), f.finish().unwrap());
        (contents(&mut rc), contents(&mut fc), stored)
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
    fn gaps_are_the_complement_of_stored_ranges() {
        assert_eq!(gaps(&[], 5), vec![(0, 5)]);
        assert_eq!(gaps(&[(0, 2), (4, 5)], 7), vec![(2, 4), (5, 7)]);
        assert_eq!(gaps(&[(0, 7)], 7), vec![]);
    }
}
