//! What replicas read on stdin. tmr's stdin is read once and spooled to an anonymous file; every replica
//! is fed from that spool at its own offset, so a replica that stops reading (or exits) never stalls the
//! others, nothing is held in RAM, and later rounds (reruns, sequential replicas) get the same bytes.
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
}

/// A pipe tmr writes the spool into: the write end, and how far this replica has got.
pub type Feed = (OwnedFd, u64);

impl StdinSource {
    pub fn detect() -> Result<Self> {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Ok(StdinSource::Null);
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
        Ok(StdinSource::Broadcast(Spool { file: None, len: 0, eof: false }))
    }

    /// The stdin end to hand to one new replica, and what tmr keeps to feed it.
    /// Returns (fd for the child, feed state kept by tmr if any).
    pub fn open_for_replica(&self) -> Result<(OwnedFd, Option<Feed>)> {
        match self {
            StdinSource::Null => Ok((open_cloexec("/dev/null")?, None)),
            StdinSource::File { offset } => {
                let fd = open_cloexec("/proc/self/fd/0")?;
                nix::unistd::lseek(fd.as_raw_fd(), *offset as i64, nix::unistd::Whence::SeekSet)
                    .context("seeking the reopened stdin file")?;
                Ok((fd, None))
            }
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

    /// Read all of the remaining stdin, for rounds that start after the first one.
    pub fn pull_to_eof(&mut self, buf: &mut [u8]) -> Result<()> {
        while !self.eof {
            self.pull(buf)?;
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
