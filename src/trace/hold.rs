//! Output commit at checkpoints (`--checkpoint`): the replica's stdout and stderr are pipes to its own
//! tracer, which passes on to tmr only what the replica wrote before its latest good checkpoint (with
//! aligned epochs, committed once the epoch vote put the replica in the majority). A rollback
//! then simply drops what the failed process wrote after that checkpoint, so tmr never sees it, and tmr
//! needs no change at all: it reads the same pipes as before, each epoch's bytes one interval later.
//!
//! A thread of the tracer does the copying (the trace loop blocks in waitpid). Shared state is one
//! mutex: the main thread commits (at a checkpoint), discards (at a rollback) or turns holding off (when
//! checkpointing stops), always while the replica is stopped, after draining what is still in the pipe.
//! The thread never calls ptrace; signals meant for the trace loop are blocked in it.
//!
//! Bounds: at most [`HOLD_LIMIT`] bytes are held per replica; past that the thread stops reading (the
//! replica blocks in write(2), a system call, where the next checkpoint lands) and asks for a
//! checkpoint now. Limit: processes that inherit the replica's stdout and write after it has exited
//! write into a pipe nobody reads any more (EPIPE).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Bytes held back at most before a checkpoint is forced.
pub const HOLD_LIMIT: usize = 8 << 20;

/// The fds made before the tracer is started: each process keeps its half.
pub struct Interposed {
    /// Read ends of the new stdout/stderr pipes (tracer).
    src: [OwnedFd; 2],
    /// tmr's own stdout/stderr pipes, duplicated (tracer).
    dst: [OwnedFd; 2],
    /// Write ends of the new pipes: the replica's fds 1 and 2.
    sink: [OwnedFd; 2],
}

/// Make the pipes (before the tracer is cloned, so both processes hold every fd).
pub fn interpose() -> Result<Interposed> {
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).context("creating an output pipe");
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let dup = |fd: i32| {
        fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3))
            .map(|n| {
                // SAFETY: a fresh fd just returned by F_DUPFD_CLOEXEC, owned by nobody else.
                unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) }
            })
            .context("duplicating tmr's pipe")
    };
    Ok(Interposed { src: [out_r, err_r], dst: [dup(1)?, dup(2)?], sink: [out_w, err_w] })
}

impl Interposed {
    /// In the replica, just before exec: fds 1 and 2 become the new pipes; tmr's are closed here.
    pub fn in_replica(self) {
        for (fd, target) in self.sink.iter().zip([1, 2]) {
            let _ = nix::unistd::dup2(fd.as_raw_fd(), target);
        }
    }

    /// In the tracer: start copying. The replica's ends are closed here. `full_signal` is what the copier
    /// sends the trace loop when the held bytes reach the limit: the checkpoint timer's signal, passed in
    /// so that this module needs nothing of `checkpoint.rs`, which holds a [`Hold`].
    pub fn in_tracer(self, full_signal: i32) -> Result<Hold> {
        let Interposed { src, dst, sink } = self;
        drop(sink);
        for fd in src.iter().chain(&dst) {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).context("O_NONBLOCK")?;
        }
        let (wake_r, wake_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let [s0, s1] = src;
        let [d0, d1] = dst;
        let state = Arc::new(Mutex::new(State {
            streams: [Stream::new(s0, d0), Stream::new(s1, d1)],
            holding: true,
            closing: false,
        }));
        // SAFETY: gettid has no arguments.
        let main_tid = unsafe { libc::gettid() };
        let shared = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("tmr-hold".into())
            .spawn(move || copier(shared, wake_r, main_tid, full_signal))
            .context("starting the output thread")?;
        Ok(Hold { state, wake: wake_w, thread: Some(thread) })
    }
}

struct Stream {
    src: Option<OwnedFd>,
    dst: OwnedFd,
    /// Written since the latest checkpoint.
    held: Vec<u8>,
    /// Committed, not yet passed on.
    out: VecDeque<u8>,
    /// tmr closed its end: drop everything, and close ours so the replica sees EPIPE as it would.
    dead: bool,
}

impl Stream {
    fn new(src: OwnedFd, dst: OwnedFd) -> Self {
        Stream { src: Some(src), dst, held: Vec::new(), out: VecDeque::new(), dead: false }
    }

    /// Read what the pipe holds now (non-blocking) into `held` (or `out` when not holding).
    fn drain(&mut self, holding: bool, limit: usize) {
        if !holding {
            // Held bytes are older than anything still in the pipe: they go out first.
            self.commit();
        }
        let mut buf = [0u8; 65536];
        while let Some(src) = &self.src {
            if holding && self.held.len() >= limit {
                return;
            }
            match nix::unistd::read(src.as_raw_fd(), &mut buf) {
                Ok(0) => self.src = None,
                Ok(_) if self.dead => {}
                Ok(n) if holding => self.held.extend_from_slice(&buf[..n]),
                Ok(n) => self.out.extend(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    fn commit(&mut self) {
        self.out.extend(self.held.drain(..));
    }

    /// Pass on what is committed (non-blocking).
    fn flush(&mut self) {
        while !self.out.is_empty() && !self.dead {
            let (a, _) = self.out.as_slices();
            match nix::unistd::write(&self.dst, a) {
                Ok(n) => drop(self.out.drain(..n)),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => {
                    self.dead = true;
                    self.out.clear();
                    self.held.clear();
                    self.src = None;
                }
            }
        }
    }
}

struct State {
    streams: [Stream; 2],
    holding: bool,
    closing: bool,
}

/// The tracer's side of the interposed output.
pub struct Hold {
    state: Arc<Mutex<State>>,
    wake: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hold {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let t = f(&mut s);
        drop(s);
        let _ = nix::unistd::write(&self.wake, &[1]);
        t
    }

    /// At a checkpoint (replica stopped): everything written so far may go to tmr.
    pub fn commit(&self) {
        self.with(|s| {
            let holding = s.holding;
            for st in &mut s.streams {
                st.drain(holding, usize::MAX);
                st.commit();
            }
        });
    }

    /// Bytes written since the latest checkpoint (replica stopped).
    pub fn held(&self) -> u64 {
        self.with(|s| {
            let holding = s.holding;
            s.streams
                .iter_mut()
                .map(|st| {
                    st.drain(holding, usize::MAX);
                    st.held.len() as u64
                })
                .sum()
        })
    }

    /// At a rollback (failed process stopped): drop what it wrote since the checkpoint.
    pub fn discard(&self) {
        self.with(|s| {
            for st in &mut s.streams {
                st.drain(true, usize::MAX);
                st.held.clear();
            }
        });
    }

    /// Checkpointing stopped: pass everything on from now on.
    pub fn passthrough(&self) {
        self.with(|s| {
            s.holding = false;
            for st in &mut s.streams {
                st.drain(false, usize::MAX);
                st.commit();
            }
        });
    }

    /// The replica is exiting (stopped at its exit): commit everything and wait until it has been
    /// passed on (as long as tmr reads, as a replica blocked in write would wait).
    pub fn finish(mut self) {
        self.with(|s| {
            s.holding = false;
            s.closing = true;
            for st in &mut s.streams {
                st.drain(false, usize::MAX);
                st.commit();
            }
        });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Set by the copier when the held bytes reach the limit: the trace loop then checkpoints at once.
pub static FULL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn copier(state: Arc<Mutex<State>>, wake: OwnedFd, main_tid: i32, full_signal: i32) {
    // Signals for the trace loop (its timers) must reach the main thread, not this one.
    let mut all = nix::sys::signal::SigSet::all();
    all.remove(nix::sys::signal::Signal::SIGSEGV);
    let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&all), None);
    loop {
        let (fds, done) = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            let holding = s.holding;
            let mut full = false;
            for st in &mut s.streams {
                st.drain(holding, HOLD_LIMIT);
                st.flush();
                full |= holding && st.held.len() >= HOLD_LIMIT;
            }
            if full && !FULL.swap(true, std::sync::atomic::Ordering::SeqCst) {
                // SAFETY: tgkill with plain integers; the handler of that signal is async-signal-safe.
                unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), main_tid, full_signal) };
            }
            let done = s.closing && s.streams.iter().all(|st| st.out.is_empty() || st.dead);
            let mut fds: Vec<(i32, i16)> = vec![(wake.as_raw_fd(), libc::POLLIN)];
            for st in &s.streams {
                if let Some(src) = st.src.as_ref().filter(|_| !(holding && st.held.len() >= HOLD_LIMIT)) {
                    fds.push((src.as_raw_fd(), libc::POLLIN));
                }
                if !st.out.is_empty() && !st.dead {
                    fds.push((st.dst.as_raw_fd(), libc::POLLOUT));
                }
            }
            (fds, done)
        };
        if done {
            return;
        }
        let mut pfds: Vec<libc::pollfd> =
            fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
        // SAFETY: a valid array of pollfd of the given length. Bounded: 1 s, then the state is re-read.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 1000) };
        let mut b = [0u8; 64];
        while matches!(nix::unistd::read(wake.as_raw_fd(), &mut b), Ok(n) if n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_go_out_before_the_ones_still_in_the_pipe() {
        let (src_r, src_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let (_dst_r, dst_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let mut st = Stream::new(src_r, dst_w);
        nix::unistd::write(&src_w, b"first ").unwrap();
        st.drain(true, usize::MAX);
        nix::unistd::write(&src_w, b"second").unwrap();
        // Holding ends (the replica exits, or checkpointing stops) with bytes still in the pipe.
        st.drain(false, usize::MAX);
        st.commit();
        assert_eq!(st.out.iter().copied().collect::<Vec<u8>>(), b"first second");
    }
}
