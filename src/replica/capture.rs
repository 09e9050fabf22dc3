//! One captured output stream: bytes are hashed as they arrive (masked when asked) and spooled to an
//! anonymous temporary file, never kept in RAM, so a 1 GiB flood costs tmr a 1 MiB buffer.

use std::fs::File;
use std::io::Write;

use anyhow::{Context, Result};
use regex::bytes::Regex;

use crate::fingerprint::StreamSummary;
use crate::mask::MaskedHasher;

pub struct Capture {
    spool: File,
    hasher: MaskedHasher,
    len: u64,
}

/// A finished stream: its summary, and the spool holding its raw bytes for replay and diffs.
#[derive(Debug)]
pub struct Captured {
    pub summary: StreamSummary,
    pub spool: File,
}

impl Capture {
    pub fn new(masks: Vec<Regex>) -> Result<Self> {
        let spool = tempfile::tempfile().context("creating an output spool file in $TMPDIR")?;
        Ok(Capture { spool, hasher: MaskedHasher::new(masks), len: 0 })
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.spool.write_all(chunk).context("writing an output spool file (is $TMPDIR full?)")?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Captured {
        Captured {
            summary: StreamSummary { len: self.len, digest: self.hasher.finalize() },
            spool: self.spool,
        }
    }
}
