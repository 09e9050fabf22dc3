//! The voted round's output, streamed to the user as replicas write it. A compared stream goes through
//! a [`Committer`]: what a strict majority has written identically is delivered at once and never taken
//! back. A stream that is not compared is shown live from one replica (replica 0) and only hashed for
//! the others. Everything is written without ever blocking tmr: into a private pipe and on with
//! non-blocking `splice` when tmr's output is a pipe, straight from a small queue otherwise; while the
//! reader is slow, replicas are not read (they wait, as they would in a shell pipeline).
//!
//! Memory stays bounded: a replica far ahead of the others is held back (not read) while one that agrees
//! with it so far is catching up ([`ByteCommitter::should_wait`]); one whose lead can never be committed
//! is only hashed from then on ([`ByteCommitter::hopeless`]).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use regex::bytes::Regex;
use serde::Serialize;

use super::capture::{private_tempfile, Capture};
use crate::fingerprint::StreamSummary;
use crate::stream::fifo::Fifo;
use crate::stream::{Committer, Divergence};

/// Bytes a replica may run ahead of the committed offset before it is held back (or given up).
pub const WINDOW: usize = 1 << 20;
/// Bytes waiting for tmr's reader before replicas stop being read.
const SINK_LIMIT: usize = 1 << 20;

/// How one of the two streams is treated.
#[derive(Debug, Clone)]
pub enum Treatment {
    /// Voted: streamed as a majority agrees (masks, if any, make it line by line).
    Compared(Vec<Regex>),
    /// Not voted: replica 0's is shown live; the others' are kept in spools, in case replica 0 ends up
    /// outside the majority (then a majority member's follows, see [`StreamHub::conclude`]).
    Shown,
}

#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub stdout: Treatment,
    pub stderr: Treatment,
    /// `--buffered`: deliver nothing until the vote; then the winner's stream (if any).
    pub buffered: bool,
    /// `--buffer-limit`: the most a `--buffered` spool may hold; past it the run stops.
    pub limit: u64,
}

/// The replica whose uncompared streams are shown live.
pub const SHOWN: usize = 0;
/// Bytes of an uncompared stream kept per other replica, in case it must follow the shown one (disk
/// beyond a small RAM buffer). Past this the stream is only hashed, and no switch can deliver it.
pub const SHOWN_SPOOL_LIMIT: u64 = 64 << 20;
/// The most a replica read out of a cycle of holds (see `stuck`) may run ahead of the
/// committed offset: past it, comparing the replicas would keep unbounded memory (an outside trial: `yes`
/// against `yes >&2` grew tmr by 500 MB/s), and the run stops with an error instead.
pub const OUT_OF_ORDER_LIMIT: usize = 64 << 20;

/// A replica ahead by more than [`OUT_OF_ORDER_LIMIT`]: only one read out of a cycle of holds gets
/// there (a held one stops a window ahead, a hopeless one keeps nothing).
fn out_of_order(ahead: usize, lane: usize, stream: usize) -> Result<()> {
    if ahead > OUT_OF_ORDER_LIMIT {
        anyhow::bail!(
            "the replicas write stdout and stderr in different orders: over {} of replica {lane}'s {name} \
             would have to be kept in memory to compare them (--compare stdout,stderr); compare one \
             stream (--compare stdout)",
            crate::units::size(OUT_OF_ORDER_LIMIT as u64),
            name = ["stdout", "stderr"][stream],
        );
    }
    Ok(())
}

enum Kind {
    Compared(Committer),
    /// `held`: `--buffered` stdout that is not compared (`--compare exit`): nothing is shown live, every
    /// replica's stream is kept (up to `--buffer-limit`), and the winner's is delivered after the vote.
    Shown {
        caps: Vec<Option<Capture>>,
        summaries: Vec<Option<StreamSummary>>,
        spools: Vec<Option<File>>,
        held: Option<u64>,
    },
}

struct Hubbed {
    kind: Kind,
    sink: Sink,
    lens: Vec<u64>,
    /// An uncompared stream whose shown replica ended outside the majority: the majority member whose
    /// stream was delivered after it (or, held back with `--buffered`, the winner's, delivered whole).
    switched: Option<usize>,
    /// The majority member whose stream should have followed but passed [`SHOWN_SPOOL_LIMIT`], so was
    /// not kept: the report says so rather than nothing.
    not_kept: Option<usize>,
}

pub struct StreamHub {
    streams: [Hubbed; 2],
    /// Per replica, the bytes read from it (both streams) at the last [`StreamHub::plan_holds`].
    seen: Vec<u64>,
    /// Per replica and stream, a hold lifted because it was part of a cycle (latched until the replica no
    /// longer runs a window ahead on that stream).
    lifted: Vec<[bool; 2]>,
}

/// What a stream's report says about its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub bytes: u64,
    /// The replica whose uncompared output was shown, if the stream was not compared.
    pub shown: Option<usize>,
    /// The majority member whose uncompared output followed, when the shown one was not the winner's.
    pub switched: Option<usize>,
    /// The majority member whose uncompared output should have followed but was past the spool limit.
    pub not_kept: Option<usize>,
}

impl StreamHub {
    pub fn new(plan: &StreamPlan, replicas: usize) -> Result<Self> {
        let make = |t: &Treatment, fd: RawFd| -> Result<Hubbed> {
            let kind = match t {
                Treatment::Compared(masks) => Kind::Compared(Committer::new(replicas, masks.clone())),
                Treatment::Shown => {
                    // `--buffered` promises a stdout that never holds a partial result, compared or not.
                    let held = (plan.buffered && fd == libc::STDOUT_FILENO).then_some(plan.limit);
                    // Past its limit a stream is only hashed (the capture forgets it): if it wins,
                    // nothing can be delivered.
                    let keep = |r: usize| match held {
                        Some(limit) => Some(limit),
                        None => (r != SHOWN).then_some(SHOWN_SPOOL_LIMIT),
                    };
                    Kind::Shown {
                        caps: (0..replicas).map(|r| Some(Capture::new(Vec::new(), keep(r)))).collect(),
                        summaries: vec![None; replicas],
                        spools: (0..replicas).map(|_| None).collect(),
                        held,
                    }
                }
            };
            // An uncompared stderr is shown live even with --buffered: it is not voted, so there is
            // nothing to wait for (and it is where progress goes).
            let buffered = plan.buffered && matches!(t, Treatment::Compared(_));
            Ok(Hubbed {
                kind,
                sink: Sink::new(fd, buffered.then_some(plan.limit))?,
                lens: vec![0; replicas],
                switched: None,
                not_kept: None,
            })
        };
        Ok(StreamHub {
            streams: [make(&plan.stdout, libc::STDOUT_FILENO)?, make(&plan.stderr, libc::STDERR_FILENO)?],
            seen: vec![0; replicas],
            lifted: vec![[false; 2]; replicas],
        })
    }

    /// Read `lane`'s `stream` from `fd`, at most `buf.len()` bytes, and take them as [`StreamHub::push`]
    /// does. A compared stream's leader is read straight into the committer's log (its bytes are new
    /// there, so this saves their one copy); any other read goes through `buf`. Returns `read`'s answer.
    pub fn read(
        &mut self,
        lane: usize,
        stream: usize,
        fd: RawFd,
        buf: &mut [u8],
    ) -> Result<nix::Result<usize>> {
        let h = &mut self.streams[stream];
        if let Kind::Compared(Committer::Bytes(b)) = &mut h.kind {
            if let Some(room) = b.room(lane, buf.len()) {
                let got = nix::unistd::read(fd, room);
                if let Ok(n @ 1..) = got {
                    h.lens[lane] += n as u64;
                    let committed = b.push_room(lane, n);
                    h.sink.queue(committed)?;
                    if b.ahead(lane) >= WINDOW && b.hopeless(lane) {
                        b.give_up(lane);
                    }
                    out_of_order(b.ahead(lane), lane, stream)?;
                }
                return Ok(got);
            }
        }
        let got = nix::unistd::read(fd, buf);
        if let Ok(n @ 1..) = got {
            self.push(lane, stream, &buf[..n])?;
        }
        Ok(got)
    }

    /// `lane` wrote `chunk` on `stream` (0: stdout, 1: stderr).
    pub fn push(&mut self, lane: usize, stream: usize, chunk: &[u8]) -> Result<()> {
        let h = &mut self.streams[stream];
        h.lens[lane] += chunk.len() as u64;
        match &mut h.kind {
            Kind::Compared(c) => {
                let committed = c.push(lane, chunk);
                h.sink.queue(&committed)?;
                drop(committed);
                if let Committer::Bytes(b) = c {
                    if b.ahead(lane) >= WINDOW && b.hopeless(lane) {
                        b.give_up(lane);
                    }
                    out_of_order(b.ahead(lane), lane, stream)?;
                }
            }
            Kind::Shown { caps, held, .. } => {
                if let Some(cap) = caps[lane].as_mut() {
                    cap.push(chunk)?;
                }
                if lane == SHOWN && held.is_none() {
                    h.sink.queue(chunk)?;
                }
            }
        }
        Ok(())
    }

    /// `lane`'s `stream` reached EOF.
    pub fn finish(&mut self, lane: usize, stream: usize) -> Result<()> {
        let h = &mut self.streams[stream];
        match &mut h.kind {
            Kind::Compared(c) => {
                let committed = c.finish(lane);
                h.sink.queue(&committed)?;
            }
            Kind::Shown { caps, summaries, spools, .. } => {
                if let Some(cap) = caps[lane].take() {
                    let mut done = cap.finish();
                    summaries[lane] = Some(done.summary);
                    spools[lane] = done.take_spool();
                }
            }
        }
        Ok(())
    }

    /// The length and digest of `lane`'s `stream`, once finished.
    pub fn summary(&self, lane: usize, stream: usize) -> Option<StreamSummary> {
        let h = &self.streams[stream];
        match &h.kind {
            Kind::Compared(c) => c.digest(lane).map(|digest| StreamSummary { len: h.lens[lane], digest }),
            Kind::Shown { summaries, .. } => summaries[lane],
        }
    }

    pub fn divergence(&self, lane: usize, stream: usize) -> Option<&Divergence> {
        match &self.streams[stream].kind {
            Kind::Compared(c) => c.divergence(lane),
            Kind::Shown { .. } => None,
        }
    }

    /// Where `lane`'s compared `stream` leaves `winner`'s past the committed offset (trailing output
    /// one of them wrote and the other did not).
    pub fn tail_divergence(&self, lane: usize, stream: usize, winner: usize) -> Option<Divergence> {
        match &self.streams[stream].kind {
            Kind::Compared(c) => c.tail_divergence(lane, winner),
            Kind::Shown { .. } => None,
        }
    }

    /// Whether to read `lane`'s `stream` now: not while tmr's reader lags, and not while this replica
    /// runs far ahead of another that agrees with it so far and is still writing.
    pub fn may_read(&self, lane: usize, stream: usize) -> bool {
        let h = &self.streams[stream];
        if h.sink.is_full() {
            return match &h.kind {
                Kind::Compared(_) => false,
                Kind::Shown { .. } => lane != SHOWN,
            };
        }
        // Held, unless the hold was lifted as part of a cycle (see `plan_holds`).
        !self.is_held(lane, stream) || self.lifted[lane][stream]
    }

    /// Once per turn of the poll loop, before [`StreamHub::may_read`]: lift the holds of replicas held in
    /// a cycle ([`stuck`]) of which nothing was read since the last turn, so each is blocked
    /// on a pipe tmr does not read. A replica that still writes its other stream (another thread) is not
    /// lifted: its hold throttles it, as it should (lifting it would let the skew grow up to
    /// [`OUT_OF_ORDER_LIMIT`] and end the run for nothing). A lifted hold stays lifted until the replica
    /// no longer runs a window ahead on that stream. Returns whether any replica is held: the loop then
    /// wakes up soon to look again.
    pub fn plan_holds(&mut self) -> bool {
        let n = self.seen.len();
        let read: Vec<u64> = (0..n).map(|l| self.streams.iter().map(|h| h.lens[l]).sum()).collect();
        let idle: Vec<bool> = read.iter().zip(&self.seen).map(|(now, before)| now == before).collect();
        self.seen = read;
        // The holds of this turn, once: per replica, per stream, the replicas it is held for.
        let holds: Vec<Vec<Option<Vec<usize>>>> =
            (0..n).map(|l| (0..self.streams.len()).map(|k| self.holds(l, k)).collect()).collect();
        let stuck = stuck(&holds, &idle);
        for (l, per_stream) in holds.iter().enumerate() {
            for (k, waits) in per_stream.iter().enumerate() {
                match waits {
                    None => self.lifted[l][k] = false,
                    Some(w) if stuck[l] && w.iter().all(|&j| stuck[j]) => self.lifted[l][k] = true,
                    Some(_) => {}
                }
            }
        }
        holds.iter().flatten().any(Option::is_some)
    }

    /// `lane` is held on `stream` ([`StreamHub::holds`], without listing for whom).
    fn is_held(&self, lane: usize, stream: usize) -> bool {
        match &self.streams[stream].kind {
            Kind::Compared(Committer::Bytes(b)) => b.ahead(lane) >= WINDOW && b.should_wait(lane),
            _ => false,
        }
    }

    /// The replicas `lane` is held for on `stream`, if it is held: it runs a window ahead of replicas
    /// that agree with it so far and still write.
    fn holds(&self, lane: usize, stream: usize) -> Option<Vec<usize>> {
        match &self.streams[stream].kind {
            Kind::Compared(Committer::Bytes(b)) if b.ahead(lane) >= WINDOW => {
                let waits: Vec<usize> = b.waits_for(lane).collect();
                (!waits.is_empty()).then_some(waits)
            }
            _ => None,
        }
    }

    /// The fds of tmr's own output that have bytes waiting for room (poll them for POLLOUT).
    pub fn waiting(&self) -> impl Iterator<Item = (usize, RawFd)> + '_ {
        self.streams.iter().enumerate().filter(|(_, h)| h.sink.has_queued()).map(|(i, h)| (i, h.sink.fd))
    }

    /// Move queued bytes of `stream` on to tmr's output, as far as it takes them without blocking.
    pub fn flush(&mut self, stream: usize) -> Result<()> {
        self.streams[stream].sink.flush()
    }

    /// tmr's stdout (or stderr) was closed by its reader.
    pub fn reader_gone(&self) -> bool {
        self.streams.iter().any(|h| h.sink.gone)
    }

    /// tmr's `stream` (0: stdout, 1: stderr) was closed by its reader.
    pub fn sink_gone(&self, stream: usize) -> bool {
        self.streams[stream].sink.gone
    }

    /// After the vote: queue what is left of the winner's compared streams (the bytes past the last
    /// commit, when the winner's group ended together there are none), and hand back the spools to
    /// deliver: with `--buffered`, the winner's streams (nothing without a winner); for an uncompared
    /// stream whose shown replica ended outside the majority (`shown_lost`) and wrote something else
    /// than the winner, the winner's (the caller says so first: the shown bytes were already delivered).
    pub fn conclude(&mut self, winner: Option<usize>, shown_lost: bool) -> Result<Vec<(File, RawFd)>> {
        let mut spools = Vec::new();
        for h in &mut self.streams {
            if let (Kind::Compared(c), Some(w)) = (&h.kind, winner) {
                if let Some(rest) = c.remainder(w) {
                    h.sink.queue(&rest)?;
                }
            }
            if let (Kind::Shown { summaries, spools: kept, held: Some(limit), .. }, Some(w)) =
                (&mut h.kind, winner)
            {
                // Held back for the vote: the winner's stream, whole, or an error if it was not kept.
                let len = summaries[w].map_or(0, |s| s.len);
                if len > 0 {
                    let file = kept[w].take().with_context(|| {
                        format!(
                            "the --buffered stdout of replica {w} (the winner's) passed --buffer-limit ({}) \
                             before the vote: nothing was delivered (raise --buffer-limit)",
                            crate::units::size(*limit)
                        )
                    })?;
                    h.sink.delivered += len;
                    h.switched = Some(w);
                    spools.push((file, h.sink.fd));
                }
                continue;
            }
            if let (Kind::Shown { summaries, spools: kept, .. }, Some(w)) = (&mut h.kind, winner) {
                let len = summaries[w].map_or(0, |s| s.len);
                // Over SHOWN_SPOOL_LIMIT the winner's stream was not kept: nothing can follow.
                let kept_all = kept[w].is_some() || len == 0;
                if shown_lost && w != SHOWN && summaries[w] != summaries[SHOWN] {
                    if kept_all {
                        h.switched = Some(w);
                        h.sink.delivered += len;
                        if let Some(file) = kept[w].take() {
                            spools.push((file, h.sink.fd));
                        }
                    } else {
                        h.not_kept = Some(w);
                    }
                }
            }
            if let Some(file) = h.sink.take_spool(winner.is_some()) {
                spools.push((file, h.sink.fd));
            }
        }
        Ok(spools)
    }

    pub fn delivered(&self, stream: usize) -> Delivered {
        let h = &self.streams[stream];
        match h.kind {
            // Held back (`--buffered`): only the winner's was delivered, whole, after the vote.
            Kind::Shown { held: Some(_), .. } => {
                Delivered { bytes: h.sink.reached(), shown: h.switched, switched: None, not_kept: None }
            }
            Kind::Shown { held: None, .. } => Delivered {
                bytes: h.sink.reached(),
                shown: Some(SHOWN),
                switched: h.switched,
                not_kept: h.not_kept,
            },
            Kind::Compared(_) => {
                Delivered { bytes: h.sink.reached(), shown: None, switched: None, not_kept: None }
            }
        }
    }

    /// `--buffered`: a compared stream went to a spool, not to tmr's output, until the vote.
    pub fn is_buffered(&self) -> bool {
        self.streams.iter().any(|h| matches!(h.sink.mode, Mode::Spool { .. }))
    }

    /// Bytes held in RAM by the committers (reported, and bounded by [`WINDOW`] per replica).
    pub fn held(&self) -> usize {
        self.streams
            .iter()
            .map(|h| match &h.kind {
                Kind::Compared(c) => c.held(),
                Kind::Shown { .. } => 0,
            })
            .sum()
    }
}

enum Mode {
    /// tmr's output is a pipe: bytes go into a private pipe (and a RAM overflow when that is full), and
    /// on with non-blocking `splice`, so a reader that stops reading never blocks tmr.
    Pipe { read: OwnedFd, write: OwnedFd, queued: usize, overflow: Fifo },
    /// A file, a device, a terminal or a socket: written from a queue.
    Direct { queue: Fifo, socket: bool },
    /// `--buffered`: kept in a spool until the vote, up to `limit` bytes.
    Spool { file: Option<File>, limit: u64 },
}

struct Sink {
    fd: RawFd,
    mode: Mode,
    /// Bytes that reached tmr's output (or, buffered, its spool).
    delivered: u64,
    /// `--buffered`: the spool was handed out for delivery (there was a winner).
    handed: bool,
    gone: bool,
}

impl Sink {
    /// `buffered`: the spool's limit, with `--buffered`.
    fn new(fd: RawFd, buffered: Option<u64>) -> Result<Self> {
        let kind = nix::sys::stat::fstat(fd).map(|m| m.st_mode & libc::S_IFMT).unwrap_or(0);
        let mode = if let Some(limit) = buffered {
            Mode::Spool { file: None, limit }
        } else if kind == libc::S_IFIFO {
            let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
            let (read, write) = nix::unistd::pipe2(flags).context("creating the delivery pipe")?;
            // A refusal (pipe-max-size) leaves the default size: the overflow queue takes the rest.
            let _ =
                nix::fcntl::fcntl(write.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(SINK_LIMIT as i32));
            Mode::Pipe { read, write, queued: 0, overflow: Fifo::default() }
        } else {
            Mode::Direct { queue: Fifo::default(), socket: kind == libc::S_IFSOCK }
        };
        Ok(Sink { fd, mode, delivered: 0, handed: false, gone: false })
    }

    fn backlog(&self) -> usize {
        match &self.mode {
            Mode::Pipe { queued, overflow, .. } => queued + overflow.len(),
            Mode::Direct { queue, .. } => queue.len(),
            Mode::Spool { .. } => 0,
        }
    }

    /// A sink whose reader has gone is never full: what is queued will never leave, and the replicas'
    /// pipes must still be read to their end (or tmr waits out the leak window for an EOF it stopped
    /// reading towards).
    fn is_full(&self) -> bool {
        !self.gone && self.backlog() >= SINK_LIMIT
    }

    fn has_queued(&self) -> bool {
        !self.gone && self.backlog() > 0
    }

    fn queue(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() || self.gone {
            return Ok(());
        }
        match &mut self.mode {
            Mode::Pipe { write, queued, overflow, .. } => {
                let mut done = 0;
                if overflow.is_empty() {
                    while done < bytes.len() {
                        match nix::unistd::write(&*write, &bytes[done..]) {
                            Ok(n) => {
                                done += n;
                                *queued += n;
                            }
                            Err(Errno::EINTR) => {}
                            Err(Errno::EAGAIN) => break,
                            Err(e) => return Err(e).context("queueing output for delivery"),
                        }
                    }
                }
                overflow.extend(&bytes[done..]);
                Ok(())
            }
            Mode::Direct { queue, .. } => {
                if queue.is_empty() {
                    // A file or device takes writes at once: straight from the committed bytes.
                    let done = self.write_direct(bytes)?;
                    if let Mode::Direct { queue, .. } = &mut self.mode {
                        queue.extend(&bytes[done..]);
                    }
                    return Ok(());
                }
                queue.extend(bytes);
                self.flush()
            }
            Mode::Spool { file, limit } => {
                if self.delivered + bytes.len() as u64 > *limit {
                    // Held back until the vote, the output cannot be cut short: stop before the disk fills.
                    anyhow::bail!(
                        "the --buffered output passed --buffer-limit ({}) before the vote: the run was \
                         stopped and nothing was delivered (raise --buffer-limit, or bound the command)",
                        crate::units::size(*limit)
                    );
                }
                if file.is_none() {
                    *file = Some(private_tempfile().context("creating the --buffered spool")?);
                }
                file.as_mut().expect("just set").write_all(bytes).context("writing the --buffered spool")?;
                self.delivered += bytes.len() as u64;
                Ok(())
            }
        }
    }

    /// Write `bytes` to a direct output until it would block; returns how many went out.
    fn write_direct(&mut self, bytes: &[u8]) -> Result<usize> {
        let socket = matches!(self.mode, Mode::Direct { socket: true, .. });
        let mut done = 0;
        while done < bytes.len() {
            let rest = &bytes[done..];
            // SAFETY: `rest` is a valid slice for the call; `fd` is tmr's own output.
            let n = unsafe {
                if socket {
                    libc::send(
                        self.fd,
                        rest.as_ptr().cast(),
                        rest.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                } else {
                    libc::write(self.fd, rest.as_ptr().cast(), rest.len())
                }
            };
            if n > 0 {
                done += n as usize;
                self.delivered += n as u64;
                continue;
            }
            match Errno::last() {
                Errno::EINTR => {}
                Errno::EAGAIN => break,
                Errno::EPIPE => {
                    self.gone = true;
                    return Ok(bytes.len());
                }
                Errno::ENOSPC if self.fd == libc::STDERR_FILENO => return Ok(bytes.len()),
                e => return Err(e).context("delivering output"),
            }
        }
        Ok(done)
    }

    /// Move the overflow into the private pipe as far as it takes it (never blocks: the pipe is ours
    /// and non-blocking).
    fn refill(&mut self) -> Result<()> {
        let Mode::Pipe { write, queued, overflow, .. } = &mut self.mode else { return Ok(()) };
        while !overflow.is_empty() {
            match nix::unistd::write(&*write, overflow.as_slice()) {
                Ok(n) => {
                    overflow.consume(n);
                    *queued += n;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(e).context("queueing output for delivery"),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.gone {
            return Ok(());
        }
        let fd = self.fd;
        let mut delivered = 0u64;
        let result = match &mut self.mode {
            Mode::Pipe { read, queued, .. } => loop {
                if *queued == 0 {
                    break Ok(());
                }
                // SAFETY: both fds are open; null offsets because both ends are pipes.
                let n = unsafe {
                    libc::splice(
                        read.as_raw_fd(),
                        std::ptr::null_mut(),
                        fd,
                        std::ptr::null_mut(),
                        *queued,
                        libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
                    )
                };
                if n > 0 {
                    *queued -= n as usize;
                    delivered += n as u64;
                    continue;
                }
                break Err(Errno::last());
            },
            Mode::Direct { queue, socket } => loop {
                if queue.is_empty() {
                    break Ok(());
                }
                let a = queue.as_slice();
                // SAFETY: `a` is a valid slice for the call; `fd` is tmr's own output.
                let n = unsafe {
                    if *socket {
                        libc::send(fd, a.as_ptr().cast(), a.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                    } else {
                        libc::write(fd, a.as_ptr().cast(), a.len())
                    }
                };
                if n > 0 {
                    queue.consume(n as usize);
                    delivered += n as u64;
                    continue;
                }
                break Err(Errno::last());
            },
            Mode::Spool { .. } => Ok(()),
        };
        self.delivered += delivered;
        match result {
            Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(Errno::EPIPE) => self.gone = true,
            // tmr's own stderr on a full disk is not worth failing the run for.
            Err(Errno::ENOSPC) if fd == libc::STDERR_FILENO => {
                if let Mode::Direct { queue, .. } = &mut self.mode {
                    queue.clear();
                }
            }
            Err(e) => return Err(e).context("delivering output"),
        }
        self.refill()
    }

    /// The `--buffered` spool, to deliver if there is a winner (else it is dropped).
    fn take_spool(&mut self, deliver: bool) -> Option<File> {
        match &mut self.mode {
            Mode::Spool { file, .. } => {
                let f = file.take().filter(|_| deliver);
                self.handed |= f.is_some();
                f
            }
            _ => None,
        }
    }

    /// Bytes that reached tmr's output: a `--buffered` spool counts only once handed out for delivery
    /// (without a winner, or when tmr was stopped first, nothing was delivered).
    fn reached(&self) -> u64 {
        match self.mode {
            Mode::Spool { .. } if !self.handed => 0,
            _ => self.delivered,
        }
    }
}

/// How the voted round's output reached the user.
#[derive(Debug, Clone, Serialize)]
pub struct OutputReport {
    /// Delivered while the replicas ran, as a majority agreed on it (parallel replicas); otherwise
    /// kept and delivered after the vote (`--sequential`).
    pub streamed: bool,
    /// `--buffered`: streamed into a spool, delivered only once a majority had won.
    pub buffered: bool,
    pub stdout: DeliveredEntry,
    pub stderr: DeliveredEntry,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveredEntry {
    /// Bytes delivered to tmr's stdout (or stderr).
    pub bytes: u64,
    /// A stream that is not compared is shown live from one replica: this one.
    pub shown_replica: Option<usize>,
    /// The shown replica ended outside the majority (or wrote something else than the winner): this
    /// majority member's stream was delivered after it, following a note on stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switched_to: Option<usize>,
    /// The majority member whose stream should have followed the shown one's, but was past the 64 MiB
    /// kept for that (not delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_kept: Option<usize>,
}

impl OutputReport {
    pub fn spooled() -> Self {
        let none = DeliveredEntry { bytes: 0, shown_replica: None, switched_to: None, not_kept: None };
        OutputReport { streamed: false, buffered: false, stdout: none.clone(), stderr: none }
    }
}

/// Replicas held in a cycle: each held on a stream only for replicas that are held too. A held replica
/// soon blocks writing to the pipe tmr does not read, so none of them would ever move on: with both
/// streams compared, a replica that writes its stdout first waited for one that writes its stderr first,
/// held on stderr for the first (an outside trial: two survivors of three, over 3 MiB per stream, hung
/// for good). Reading them anyway costs memory for the difference in order; that is what comparing them
/// needs. `holds`: per replica and stream, the replicas it is held for; `idle`: per replica, nothing of
/// it was read since the last turn (only those can be blocked).
fn stuck(holds: &[Vec<Option<Vec<usize>>>], idle: &[bool]) -> Vec<bool> {
    let mut stuck: Vec<bool> =
        holds.iter().zip(idle).map(|(h, &idle)| idle && h.iter().any(Option::is_some)).collect();
    loop {
        let freed: Vec<usize> = (0..holds.len())
            .filter(|&l| stuck[l] && !holds[l].iter().flatten().any(|w| w.iter().all(|&j| stuck[j])))
            .collect();
        if freed.is_empty() {
            return stuck;
        }
        for l in freed {
            stuck[l] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--buffered --compare exit`: nothing of the uncompared stdout reaches tmr's output before the
    /// vote; the winner's stream is handed out whole; a winner whose stream passed the limit (the
    /// capture forgot it) is an error, not a silently empty delivery.
    fn held_hub(limit: u64) -> StreamHub {
        let plan = StreamPlan { stdout: Treatment::Shown, stderr: Treatment::Shown, buffered: true, limit };
        let mut hub = StreamHub::new(&plan, 3).unwrap();
        for (lane, bytes) in [(0, &b"ok\n"[..]), (1, &[b'x'; 20][..]), (2, &b"ok\n"[..])] {
            hub.push(lane, 0, bytes).unwrap();
            hub.finish(lane, 0).unwrap();
            hub.finish(lane, 1).unwrap();
        }
        hub
    }

    #[test]
    fn a_held_stdout_delivers_the_winners_whole_and_refuses_one_not_kept() {
        let mut hub = held_hub(10);
        assert_eq!(
            hub.delivered(0),
            Delivered { bytes: 0, shown: None, switched: None, not_kept: None },
            "nothing live"
        );
        let spools = hub.conclude(Some(2), false).unwrap();
        assert_eq!(spools.len(), 1);
        assert_eq!(spools[0].0.metadata().unwrap().len(), 3, "replica 2's stream, whole");
        assert_eq!(hub.delivered(0), Delivered { bytes: 3, shown: Some(2), switched: None, not_kept: None });
        let err = held_hub(10).conclude(Some(1), false).unwrap_err();
        assert!(format!("{err:#}").contains("--buffer-limit (10 bytes)"), "{err:#}");
    }
}
