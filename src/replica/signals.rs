//! tmr's own signals, turned into poll events: SIGCHLD, SIGTSTP and the stop signals (SIGINT, SIGTERM,
//! SIGHUP) each write a byte to a self-pipe that the capture loop polls, and the stop signals also record
//! which one arrived. No code runs in a signal handler beyond signal-hook's async-signal-safe write.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

pub const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

pub struct Signals {
    wake: UnixStream,
    /// The last stop signal received and not yet taken, 0 for none.
    pending: Arc<AtomicUsize>,
    /// SIGTSTP (Ctrl-Z) arrived: suspend the replicas, then tmr.
    suspend: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> Result<Self> {
        let (read, write) = UnixStream::pair().context("creating the signal self-pipe")?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let pending = Arc::new(AtomicUsize::new(0));
        for sig in STOP_SIGNALS {
            signal_hook::flag::register_usize(sig, Arc::clone(&pending), sig as usize)
                .with_context(|| format!("installing the handler for signal {sig}"))?;
        }
        // Ctrl-Z reaches only tmr's group (the replicas have sessions of their own): tmr passes it on,
        // as a shell suspends a whole job.
        let suspend = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(libc::SIGTSTP, Arc::clone(&suspend))
            .context("installing the handler for SIGTSTP")?;
        for sig in STOP_SIGNALS.into_iter().chain([libc::SIGCHLD, libc::SIGTSTP]) {
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)
                .with_context(|| format!("installing the wake-up for signal {sig}"))?;
        }
        Ok(Signals { wake: read, pending, suspend })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empty the self-pipe after poll reported it readable.
    pub fn drain(&self) {
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Whether Ctrl-Z (SIGTSTP) arrived since the last call.
    pub fn take_suspend(&self) -> bool {
        self.suspend.swap(false, Ordering::SeqCst)
    }

    /// A stop signal that arrived since the last call.
    pub fn take_stop(&self) -> Option<i32> {
        match self.pending.swap(0, Ordering::SeqCst) {
            0 => None,
            sig => Some(sig as i32),
        }
    }
}
