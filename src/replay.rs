//! Delivering the winner's output: the spooled bytes are copied to tmr's stdout/stderr byte for byte
//! (the kernel's copy_file_range/splice where std can use them). A reader that goes away (`tmr … | head`)
//! ends the copy quietly: a closed pipe is not an error of the command's.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use anyhow::{Context, Result};

/// Copy `spool` from its start to `out`. Returns false when the reader went away (EPIPE).
pub fn replay(spool: &File, out: &mut impl Write) -> Result<bool> {
    let mut spool = spool;
    spool.seek(SeekFrom::Start(0)).context("rewinding an output spool")?;
    match std::io::copy(&mut spool, out).and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing the voted output"),
    }
}
