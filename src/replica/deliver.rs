//! Writing a spooled output to tmr's stdout or stderr without ever blocking where a stop signal could
//! go unheard. A regular file or a device takes writes at once, so it gets plain blocking copies. A pipe
//! or socket whose reader may stall is written with `splice(SPLICE_F_NONBLOCK)` after `poll` says it has
//! room, with tmr's signal self-pipe in the same poll: the shared file description is never switched to
//! O_NONBLOCK (that flag would leak into every other process writing to the same pipe).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Most bytes moved per call: large enough to amortise the system calls, small enough that a stop
/// signal is looked at every few milliseconds on the slowest writes.
const CHUNK: usize = 1 << 20;

pub enum Sent {
    /// Some bytes went out (or none could yet); call again.
    More,
    Done,
    /// EPIPE: the reader closed its end.
    ReaderGone,
}

pub struct Output {
    fd: RawFd,
    /// A pipe or socket: wait for room with poll, write with non-blocking splice.
    stream: bool,
    /// The spool, mapped once for writes to files and devices (no read copy).
    map: Option<memmap2::Mmap>,
}

impl Output {
    pub fn new(fd: RawFd) -> Self {
        let stream = nix::sys::stat::fstat(fd)
            .map(|m| matches!(m.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK))
            .unwrap_or(false);
        Output { fd, stream, map: None }
    }

    /// Move the next piece of `spool` from offset `at`, waiting at most until the signal pipe wakes.
    pub fn send(&mut self, spool: &File, at: &mut u64, signals: BorrowedFd) -> Result<Sent> {
        let len = spool.metadata().context("reading an output spool's size")?.len();
        if *at >= len {
            return Ok(Sent::Done);
        }
        let want = ((len - *at) as usize).min(CHUNK);
        if self.stream {
            // SAFETY: `self.fd` is tmr's own stdout/stderr, open for the whole run.
            let out = unsafe { BorrowedFd::borrow_raw(self.fd) };
            let mut fds =
                [PollFd::new(out.as_fd(), PollFlags::POLLOUT), PollFd::new(signals, PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("waiting for tmr's output to take more"),
            }
            let ready = fds[0].revents().unwrap_or(PollFlags::empty());
            if ready.is_empty() {
                return Ok(Sent::More);
            }
            let mut off = *at as libc::loff_t;
            // SAFETY: both fds are open for the call; `off` is a valid local the kernel advances.
            let n = unsafe {
                libc::splice(
                    spool.as_raw_fd(),
                    &mut off,
                    self.fd,
                    std::ptr::null_mut(),
                    want,
                    libc::SPLICE_F_NONBLOCK,
                )
            };
            if n >= 0 {
                *at = off as u64;
                return Ok(Sent::More);
            }
            return match Errno::last() {
                Errno::EAGAIN | Errno::EINTR => Ok(Sent::More),
                Errno::EPIPE => Ok(Sent::ReaderGone),
                // A socket or pipe splice cannot serve (an odd file system): fall back to writes of at
                // most PIPE_BUF, which poll's POLLOUT guarantees will not block.
                Errno::EINVAL => self.write_from(spool, at, want.min(libc::PIPE_BUF)),
                e => Err(e).context("writing the voted output"),
            };
        }
        self.write_from(spool, at, want)
    }

    fn write_from(&mut self, spool: &File, at: &mut u64, want: usize) -> Result<Sent> {
        if self.map.is_none() {
            // SAFETY: the spool is tmr's own unlinked temporary file, complete and no longer written
            // while it is delivered, so the mapping cannot change or shrink under us.
            self.map = Some(unsafe { memmap2::Mmap::map(spool) }.context("mapping an output spool")?);
        }
        let map = self.map.as_ref().expect("just set");
        let start = (*at as usize).min(map.len());
        let got = want.min(map.len() - start);
        if got == 0 {
            return Ok(Sent::Done);
        }
        let bytes = &map[start..start + got];
        let mut done = 0;
        while done < got {
            match nix::unistd::write(
                // SAFETY: as above, tmr's own stdout/stderr.
                unsafe { BorrowedFd::borrow_raw(self.fd) },
                &bytes[done..],
            ) {
                Ok(n) => done += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EPIPE) => return Ok(Sent::ReaderGone),
                // tmr's own stderr on a full disk is not worth stopping the run for.
                Err(Errno::ENOSPC) if self.fd == libc::STDERR_FILENO => return Ok(Sent::Done),
                Err(e) => return Err(e).context("writing the voted output"),
            }
        }
        *at += got as u64;
        Ok(Sent::More)
    }
}

/// Whether fd 1 was closed when tmr started (`tmr … >&-`). Rust's runtime reopens a closed fd 0, 1 or 2
/// on /dev/null before `main` runs, which would make the voted output vanish with exit 0 where `cat
/// >&-` fails with EBADF; this check runs earlier, from the ELF init array.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn note_closed_stdout() {
    // SAFETY: F_GETFD only asks whether fd 1 is open; it changes nothing.
    if unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFD) } == -1 {
        STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[used]
#[link_section = ".init_array"]
static NOTE_CLOSED_STDOUT: extern "C" fn() = note_closed_stdout;

/// See [`STDOUT_CLOSED`].
pub fn stdout_was_closed() -> bool {
    STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed)
}
