//! What replicas read on stdin. tmr's stdin is read once and spooled to an anonymous file; every replica
//! is fed from that spool at its own offset, so a replica that stops reading (or exits) never stalls the
//! others, nothing is held in RAM, and later rounds (reruns, sequential replicas) get the same bytes.
//! tmr reads its stdin only as fast as the fastest running replica asks for it: input nobody reads is
//! never spooled (`yes | tmr -- head -c 10` reads a pipe-full, not the endless stream), and the spool is
//! bounded (see [`SPOOL_LIMIT`]).
//! A regular file on stdin is simply reopened for each replica; a terminal is never shared (replicas get
//! /dev/null), because N processes cannot sensibly read one keyboard.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;

pub enum StdinSource {
    Null,
    /// tmr's stdin is a terminal: replicas read /dev/null, and the user is told why.
    Terminal,
    /// tmr's stdin is a regular file: each replica opens it afresh at this offset.
    File {
        offset: u64,
    },
    Broadcast(Spool),
}

pub struct Spool {
    /// Created on the first byte of input.
    file: Option<File>,
    len: u64,
    eof: bool,
    /// Most bytes kept on disk. Past it the spool keeps only what a running replica has yet to read
    /// (the prefix every reader has passed is punched out of the file), and the input can no longer be
    /// replayed to a replica that starts later.
    limit: u64,
    /// Bytes before this offset were punched out: the spool cannot feed a new replica from the start.
    punched: u64,
}

/// Default for [`Spool`]'s limit: 1 GiB of piped stdin is kept for replicas that start later (reruns,
/// `--sequential`). `TMR_STDIN_SPOOL_LIMIT` (bytes) overrides it.
pub const SPOOL_LIMIT: u64 = 1 << 30;

/// A pipe tmr writes the spool into: the write end, and how far this replica has got.
pub type Feed = (OwnedFd, u64);

impl StdinSource {
    pub fn detect() -> Result<Self> {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Ok(StdinSource::Terminal);
        }
        let meta = match nix::sys::stat::fstat(0) {
            Ok(m) => m,
            Err(_) => return Ok(StdinSource::Null),
        };
        // /dev/null (char device 1:3): nothing to broadcast, and no spool or pipes to set up.
        if meta.st_mode & libc::S_IFMT == libc::S_IFCHR && meta.st_rdev == libc::makedev(1, 3) {
            return Ok(StdinSource::Null);
        }
        if meta.st_mode & libc::S_IFMT == libc::S_IFREG {
            let offset = nix::unistd::lseek(0, 0, nix::unistd::Whence::SeekCur).unwrap_or(0);
            return Ok(StdinSource::File { offset: offset.max(0) as u64 });
        }
        let limit =
            std::env::var("TMR_STDIN_SPOOL_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(SPOOL_LIMIT);
        Ok(StdinSource::Broadcast(Spool { file: None, len: 0, eof: false, limit: limit.max(1), punched: 0 }))
    }

    /// Whether a replica started now gets the same input as the first ones did.
    pub fn replayable(&self) -> bool {
        match self {
            StdinSource::Broadcast(s) => s.punched == 0,
            _ => true,
        }
    }

    /// The stdin end to hand to one new replica, and what tmr keeps to feed it.
    /// Returns (fd for the child, feed state kept by tmr if any).
    pub fn open_for_replica(&self) -> Result<(OwnedFd, Option<Feed>)> {
        match self {
            StdinSource::Null | StdinSource::Terminal => Ok((open_cloexec("/dev/null")?, None)),
            StdinSource::File { offset } => {
                let fd = open_cloexec("/proc/self/fd/0")?;
                nix::unistd::lseek(fd.as_raw_fd(), *offset as i64, nix::unistd::Whence::SeekSet)
                    .context("seeking the reopened stdin file")?;
                Ok((fd, None))
            }
            StdinSource::Broadcast(s) if s.punched > 0 => anyhow::bail!(
                "stdin was longer than the {} bytes tmr keeps ({} read): it cannot be replayed to \
                 another replica; give it as a file instead (tmr … < FILE)",
                s.limit,
                s.len
            ),
            StdinSource::Broadcast(_) => {
                let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("creating a stdin pipe")?;
                set_nonblocking(&w)?;
                Ok((r, Some((w, 0))))
            }
        }
    }

    pub fn spool(&mut self) -> Option<&mut Spool> {
        match self {
            StdinSource::Broadcast(s) => Some(s),
            _ => None,
        }
    }
}

impl Spool {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn eof(&self) -> bool {
        self.eof
    }

    /// Whether to read more of tmr's stdin, given the offset of the slowest running reader: not while
    /// that reader lags a whole limit behind (the fast ones wait, as they would behind `tee`).
    pub fn wants_more(&self, slowest: u64) -> bool {
        !self.eof && self.len.saturating_sub(slowest) < self.limit
    }

    /// Past the limit, drop what every running reader has passed (`slowest`): disk use stays bounded by
    /// the distance between the slowest and the fastest reader, at the price of replaying.
    pub fn trim(&mut self, slowest: u64) -> Result<()> {
        let slowest = slowest.min(self.len);
        if self.len <= self.limit || slowest <= self.punched {
            return Ok(());
        }
        let Some(file) = &self.file else { return Ok(()) };
        let flags = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        nix::fcntl::fallocate(file.as_raw_fd(), flags, 0, slowest as i64)
            .context("freeing the part of the stdin spool every replica has read")?;
        self.punched = slowest;
        Ok(())
    }

    /// Read once from tmr's stdin (poll said it is readable) and append to the spool. fd 0 is never made
    /// non-blocking: that flag would leak into the shell that shares the file description.
    pub fn pull(&mut self, buf: &mut [u8]) -> Result<()> {
        match nix::unistd::read(0, buf) {
            Ok(0) => self.eof = true,
            Ok(n) => {
                if self.file.is_none() {
                    self.file =
                        Some(super::capture::private_tempfile().context("creating the stdin spool file")?);
                }
                let mut file = self.file.as_ref().expect("just set");
                file.write_all(&buf[..n]).context("writing the stdin spool")?;
                self.len += n as u64;
            }
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            // An unreadable stdin ends like an empty one: replicas see EOF.
            Err(_) => self.eof = true,
        }
        Ok(())
    }

    /// Write as much of the spool as the pipe takes. Returns false when this feed is finished (all input
    /// delivered and EOF, or the replica closed its end) and should be closed.
    pub fn push(&self, write: &OwnedFd, offset: &mut u64, buf: &mut [u8]) -> bool {
        while *offset < self.len {
            let want = ((self.len - *offset) as usize).min(buf.len());
            let Some(file) = &self.file else { return false };
            let Ok(got) = file.read_at(&mut buf[..want], *offset) else {
                return false;
            };
            if got == 0 {
                return false;
            }
            match nix::unistd::write(write, &buf[..got]) {
                Ok(n) => *offset += n as u64,
                Err(Errno::EAGAIN) => return true,
                Err(Errno::EINTR) => continue,
                // EPIPE: the replica closed its stdin; it wants no more.
                Err(_) => return false,
            }
        }
        !self.eof
    }
}

fn open_cloexec(path: &str) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .with_context(|| format!("opening {path}"))?;
    // SAFETY: `open` just returned this fd and nothing else owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

pub fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}
