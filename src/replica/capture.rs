//! One output stream of a replica that is not streamed to the user (reruns, hunt runs, campaign trials,
//! `--sequential` replicas): hashed as it arrives (masked when asked), and kept in a private spool file
//! only when someone will need the bytes afterwards (the sequential voted round's winner and its diffs,
//! `hunt --keep`). The voted round of parallel replicas is streamed instead (`hub.rs`).
//! Also where tmr's private files are made: spools, and the snapshot file each memory monitor fills.

use std::fs::File;
use std::io::Write;

use anyhow::{Context, Result};
use regex::bytes::Regex;

use crate::fingerprint::StreamSummary;
use crate::mask::MaskedHasher;

pub struct Capture {
    len: u64,
    hasher: MaskedHasher,
    /// Keep the bytes, up to this many (`--buffer-limit`): past it they are dropped and only hashed, so
    /// that a faulty replica's flood cannot fill the disk, nor stop a run whose majority agrees without
    /// it. Delivering a stream that was dropped is an error (see [`Captured::over_limit`]).
    keep: Option<u64>,
    /// The limit this stream passed, if it did.
    over: Option<u64>,
    /// Created on the first byte: most streams of most commands (stderr, `true`) stay empty.
    spool: Option<File>,
}

/// A finished stream: its summary, and its bytes when they were kept.
#[derive(Debug)]
pub struct Captured {
    pub summary: StreamSummary,
    spool: Option<File>,
    /// The `--buffer-limit` this stream passed: its bytes were dropped, and it cannot be delivered.
    pub over_limit: Option<u64>,
}

const SPOOL_ERROR: &str = "writing an output spool in $TMPDIR";

impl Capture {
    pub fn new(masks: Vec<Regex>, keep: Option<u64>) -> Self {
        Capture { len: 0, hasher: MaskedHasher::new(masks), keep, over: None, spool: None }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.len += chunk.len() as u64;
        self.hasher.update(chunk);
        if let Some(limit) = self.keep.filter(|limit| self.len > *limit) {
            self.forget();
            self.over = Some(limit);
        }
        if self.keep.is_some() && !chunk.is_empty() {
            if self.spool.is_none() {
                self.spool = Some(private_tempfile().context("creating an output spool file in $TMPDIR")?);
            }
            self.spool.as_mut().expect("just set").write_all(chunk).context(SPOOL_ERROR)?;
        }
        Ok(())
    }

    /// Stop keeping the bytes (and drop those kept): only the digest goes on.
    pub fn forget(&mut self) {
        self.keep = None;
        self.spool = None;
    }

    pub fn finish(self) -> Captured {
        Captured {
            summary: StreamSummary { len: self.len, digest: self.hasher.finalize() },
            spool: self.spool,
            over_limit: self.over,
        }
    }
}

impl Captured {
    /// The kept bytes, taken out (`None` when they were not kept or already taken).
    pub fn take_spool(&mut self) -> Option<File> {
        self.spool.take()
    }

    /// A stream that was streamed (its bytes went to the user, or nowhere): only its summary remains.
    pub fn summarised(summary: StreamSummary) -> Self {
        Captured { summary, spool: None, over_limit: None }
    }

    /// The kept bytes, if they were kept.
    pub fn kept(&self) -> Option<&File> {
        self.spool.as_ref()
    }

    /// The kept bytes as a file (an empty one when nothing was written).
    pub fn file(&mut self) -> Result<&File> {
        if self.spool.is_none() {
            self.spool = Some(private_tempfile().context("creating an output spool file in $TMPDIR")?);
        }
        Ok(self.spool.as_ref().expect("just set"))
    }
}

/// An anonymous temporary file only its owner can read: `O_TMPFILE` with mode 0600 (tempfile's own
/// anonymous files were created 0644), falling back to tempfile's named-then-unlinked file.
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

/// A new, empty snapshot file for one replica's monitor (`trace::snapfile`): a memfd (close-on-exec; the
/// spawn code dups it to fd 3), or where memfds are unavailable an unlinked temporary file.
pub fn snapshot_file() -> Result<File> {
    match nix::sys::memfd::memfd_create(c"tmr-snapshot", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC) {
        Ok(fd) => Ok(File::from(fd)),
        Err(_) => private_tempfile().context("creating a snapshot file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    #[test]
    fn a_kept_stream_is_hashed_and_spooled_privately() {
        use std::os::unix::fs::MetadataExt;
        let mut c = Capture::new(vec![], Some(u64::MAX));
        c.push(b"secret ").unwrap();
        c.push(b"bytes").unwrap();
        let mut done = c.finish();
        assert_eq!(done.summary.len, 12);
        assert_eq!(done.summary.digest, crate::digest::digest(b"secret bytes"));
        let mut f = done.file().unwrap().try_clone().unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o600);
        let mut text = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "secret bytes");
    }

    #[test]
    fn an_unkept_stream_keeps_nothing() {
        let mut c = Capture::new(vec![Regex::new("[0-9]+").unwrap()], None);
        c.push(b"took 5ms\n").unwrap();
        let done = c.finish();
        assert!(done.kept().is_none());
        let mut h = MaskedHasher::new(vec![Regex::new("[0-9]+").unwrap()]);
        h.update(b"took 7ms\n");
        assert_eq!(done.summary.digest, h.finalize(), "the digest is of the masked stream");
    }
}
