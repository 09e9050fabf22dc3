//! The policies of one batch of running replicas, as a pure state machine: when a replica counts as
//! hung (`--timeout`, absolute or relative to the finished majority), when a polite signal becomes
//! SIGKILL, how stop signals are forwarded and escalated, and how long a replica that exited may leave
//! its output pipes open (the leak window). The poll loop (`replica::supervise`) only turns what the OS
//! says into [`Event`]s and carries out the [`Action`]s; this module never touches a process, a file or
//! the clock (every event carries its time), so each policy is unit-tested with a fake clock.

use std::time::{Duration, Instant};

use crate::units::{scale_duration, Timeout, RELATIVE_TIMEOUT_FLOOR};

/// After a replica exits, how long its pipes may stay open (held by a grandchild) before its process
/// group is killed and its output closed: the leak window.
pub const LEAK_WINDOW: Duration = Duration::from_millis(500);
/// Between SIGTERM (a timeout, or a forwarded stop signal) and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Replica slot `slot` was started.
    Launched { slot: usize },
    /// Its process has exited (it is not reaped yet, so its process group id is still its own).
    Exited { slot: usize },
    /// Both of its output pipes reached EOF.
    Closed { slot: usize },
    /// tmr holds back reading one of its pipes for now (a replica far ahead of others that agree with it
    /// so far): an EOF there cannot be seen, so the leak window starts again from now. Checks no
    /// deadline: the loop tells every held slot first, so that one slot's deadline is not judged before
    /// its own `Held` of the same turn.
    Held { slot: usize },
    /// tmr received a stop signal (SIGINT, SIGTERM, SIGHUP).
    Stop { signal: i32 },
    /// Time passed: check the deadlines.
    Tick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `signal` to the slot's process group.
    Signal { slot: usize, signal: i32 },
    /// The slot is done: kill what is left of its group, take its last output, reap it.
    Finalize { slot: usize, leaked: bool },
}

#[derive(Debug, Clone, Default)]
struct Slot {
    started: Option<Instant>,
    exited: Option<Instant>,
    /// Where the leak window starts: its exit, or the last time tmr held back reading its pipes since.
    quiet_since: Option<Instant>,
    /// The last time tmr held back reading its pipes.
    last_held: Option<Instant>,
    closed: bool,
    timed_out: bool,
    kill_at: Option<Instant>,
    done: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub timeout: Option<Timeout>,
    /// For a relative timeout: a known median wall time to multiply (reruns use the voted round's).
    pub reference_wall: Option<Duration>,
    /// How many finished replicas make the median a relative timeout multiplies.
    pub majority: usize,
    pub grace: Duration,
    pub leak_window: Duration,
}

impl Limits {
    pub fn new(timeout: Option<Timeout>, reference_wall: Option<Duration>, parallel: usize) -> Self {
        Limits {
            timeout,
            reference_wall,
            majority: parallel.max(1) / 2 + 1,
            grace: KILL_GRACE,
            leak_window: LEAK_WINDOW,
        }
    }
}

pub struct Supervisor {
    limits: Limits,
    slots: Vec<Slot>,
    /// Wall times of the finished replicas (for a relative timeout).
    walls: Vec<Duration>,
    /// The first stop signal, once received.
    pub stopped_by: Option<i32>,
}

impl Supervisor {
    pub fn new(limits: Limits) -> Self {
        Supervisor { limits, slots: Vec::new(), walls: Vec::new(), stopped_by: None }
    }

    /// Whether `slot` was killed for running past its timeout.
    pub fn timed_out(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|s| s.timed_out)
    }

    /// When `slot` exited, if it has.
    pub fn exited_at(&self, slot: usize) -> Option<Instant> {
        self.slots.get(slot).and_then(|s| s.exited)
    }

    /// Replicas started and not yet exited.
    pub fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.started.is_some() && s.exited.is_none() && !s.done).count()
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Launched { slot } => {
                if self.slots.len() <= slot {
                    self.slots.resize(slot + 1, Slot::default());
                }
                self.slots[slot] = Slot { started: Some(now), ..Slot::default() };
                // A replica started after a stop signal (there should be none) gets it at once.
                if let Some(signal) = self.stopped_by {
                    actions.push(Action::Signal { slot, signal });
                    self.slots[slot].kill_at = Some(now + self.limits.grace);
                }
            }
            Event::Exited { slot } => {
                let s = &mut self.slots[slot];
                if s.exited.is_none() {
                    s.exited = Some(now);
                    s.quiet_since = Some(now);
                    s.kill_at = None;
                    if let Some(started) = s.started {
                        self.walls.push(now.saturating_duration_since(started));
                    }
                }
            }
            Event::Closed { slot } => self.slots[slot].closed = true,
            Event::Held { slot } => {
                // After a stop signal nothing waits for output: the window runs from the exit.
                let s = &mut self.slots[slot];
                s.last_held = Some(now);
                if s.exited.is_some() && self.stopped_by.is_none() {
                    s.quiet_since = Some(now);
                }
                return actions;
            }
            Event::Stop { signal } => {
                let escalate = self.stopped_by.is_some();
                self.stopped_by.get_or_insert(signal);
                for (slot, s) in self.slots.iter_mut().enumerate() {
                    if s.done || s.exited.is_some() || s.started.is_none() {
                        continue;
                    }
                    if escalate {
                        actions.push(Action::Signal { slot, signal: libc::SIGKILL });
                    } else {
                        actions.push(Action::Signal { slot, signal });
                        s.kill_at.get_or_insert(now + self.limits.grace);
                    }
                }
            }
            Event::Tick => {}
        }
        self.check(now, &mut actions);
        actions
    }

    /// The next instant at which a deadline may fire (the poll loop sleeps until then at most).
    pub fn next_deadline(&self) -> Option<Instant> {
        (0..self.slots.len())
            .filter_map(|i| {
                let s = &self.slots[i];
                if s.done {
                    return None;
                }
                [s.kill_at, s.quiet_since.map(|e| e + self.limits.leak_window), self.timeout_deadline(i)]
                    .into_iter()
                    .flatten()
                    .min()
            })
            .min()
    }

    fn check(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].done || self.slots[slot].started.is_none() {
                continue;
            }
            let deadline = self.timeout_deadline(slot);
            let grace = self.limits.grace;
            let leak_window = self.limits.leak_window;
            let s = &mut self.slots[slot];
            if let Some(quiet) = s.quiet_since {
                let over = !s.closed && now >= quiet + leak_window;
                if s.closed || over {
                    s.done = true;
                    // Held back within the window (after a stop signal): its EOF could not be seen, so
                    // it is no evidence of a leak.
                    let held = s.last_held.is_some_and(|h| now < h + leak_window);
                    actions.push(Action::Finalize { slot, leaked: over && !held });
                }
                continue;
            }
            if s.kill_at.is_some_and(|at| now >= at) {
                s.kill_at = None;
                actions.push(Action::Signal { slot, signal: libc::SIGKILL });
            } else if deadline.is_some_and(|d| now >= d) {
                s.timed_out = true;
                s.kill_at = Some(now + grace);
                actions.push(Action::Signal { slot, signal: libc::SIGTERM });
            }
        }
    }

    /// When the running replica in `slot` counts as hung, if a timeout applies to it yet.
    fn timeout_deadline(&self, slot: usize) -> Option<Instant> {
        let s = &self.slots[slot];
        if s.exited.is_some() || s.timed_out || s.done {
            return None;
        }
        let started = s.started?;
        let limit = match self.limits.timeout? {
            Timeout::Absolute(d) => d,
            Timeout::Relative(factor) => {
                let median = match self.limits.reference_wall {
                    Some(m) => m,
                    None if self.walls.len() < self.limits.majority => return None,
                    None => {
                        let mut w: Vec<f64> = self.walls.iter().map(Duration::as_secs_f64).collect();
                        Duration::from_secs_f64(crate::stats::median(&mut w)?)
                    }
                };
                scale_duration(median, factor).max(RELATIVE_TIMEOUT_FLOOR)
            }
        };
        started.checked_add(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A fake clock: `t(n)` is n milliseconds after the start.
    struct Clock(Instant);
    impl Clock {
        fn t(&self, n: u64) -> Instant {
            self.0 + ms(n)
        }
    }

    fn start(limits: Limits, n: usize) -> (Supervisor, Clock) {
        let c = Clock(Instant::now());
        let mut s = Supervisor::new(limits);
        for slot in 0..n {
            assert!(s.handle(Event::Launched { slot }, c.t(0)).is_empty());
        }
        (s, c)
    }

    #[test]
    fn an_absolute_timeout_sends_term_then_kill_after_the_grace() {
        let (mut s, c) = start(Limits::new(Some(Timeout::Absolute(ms(1000))), None, 1), 1);
        assert_eq!(s.next_deadline(), Some(c.t(1000)));
        assert!(s.handle(Event::Tick, c.t(999)).is_empty());
        assert_eq!(s.handle(Event::Tick, c.t(1000)), [Action::Signal { slot: 0, signal: libc::SIGTERM }]);
        assert!(s.timed_out(0));
        assert_eq!(s.next_deadline(), Some(c.t(3000)));
        assert!(s.handle(Event::Tick, c.t(2999)).is_empty());
        assert_eq!(s.handle(Event::Tick, c.t(3000)), [Action::Signal { slot: 0, signal: libc::SIGKILL }]);
        // It dies, its pipes close: finalized, not leaked.
        assert!(s.handle(Event::Exited { slot: 0 }, c.t(3001)).is_empty());
        assert_eq!(
            s.handle(Event::Closed { slot: 0 }, c.t(3001)),
            [Action::Finalize { slot: 0, leaked: false }]
        );
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_relative_timeout_waits_for_a_majority_and_multiplies_its_median() {
        let (mut s, c) = start(Limits::new(Some(Timeout::Relative(3.0)), None, 3), 3);
        assert_eq!(s.next_deadline(), None, "no deadline before a majority has finished");
        s.handle(Event::Exited { slot: 0 }, c.t(400));
        s.handle(Event::Closed { slot: 0 }, c.t(400));
        assert_eq!(s.next_deadline(), None);
        s.handle(Event::Exited { slot: 1 }, c.t(600));
        s.handle(Event::Closed { slot: 1 }, c.t(600));
        // The median of 400 and 600 ms is 500 ms: 3x is 1.5 s after the start.
        assert_eq!(s.next_deadline(), Some(c.t(1500)));
        assert_eq!(s.handle(Event::Tick, c.t(1500)), [Action::Signal { slot: 2, signal: libc::SIGTERM }]);
    }

    #[test]
    fn a_relative_timeout_never_goes_below_its_floor_and_reruns_use_a_reference() {
        let limits = Limits::new(Some(Timeout::Relative(3.0)), Some(ms(10)), 1);
        let (mut s, c) = start(limits, 1);
        // 3 x 10 ms is 30 ms, but a slow-to-schedule replica gets at least the floor (1 s).
        assert_eq!(s.next_deadline(), Some(c.t(1000)));
        assert_eq!(s.handle(Event::Tick, c.t(1000)), [Action::Signal { slot: 0, signal: libc::SIGTERM }]);
    }

    #[test]
    fn a_replica_whose_pipes_tmr_holds_back_is_not_leaking_while_held() {
        // An outside trial: replicas held back behind a slower sibling exited with output unread in their
        // pipes, and were reported as leaking processes 500 ms later.
        let (mut s, c) = start(Limits::new(None, None, 1), 1);
        assert_eq!(s.handle(Event::Exited { slot: 0 }, c.t(100)), []);
        assert_eq!(s.handle(Event::Held { slot: 0 }, c.t(500)), []);
        assert_eq!(s.handle(Event::Held { slot: 0 }, c.t(900)), [], "held: no EOF can be seen");
        assert_eq!(s.next_deadline(), Some(c.t(1400)));
        assert_eq!(
            s.handle(Event::Closed { slot: 0 }, c.t(1000)),
            [Action::Finalize { slot: 0, leaked: false }]
        );
        // Released and still open a window later: a leak.
        let (mut s, c) = start(Limits::new(None, None, 1), 1);
        s.handle(Event::Exited { slot: 0 }, c.t(100));
        s.handle(Event::Held { slot: 0 }, c.t(300));
        assert_eq!(s.handle(Event::Tick, c.t(799)), []);
        assert_eq!(s.handle(Event::Tick, c.t(800)), [Action::Finalize { slot: 0, leaked: true }]);
        // After a stop signal a hold no longer postpones the end (tmr's reader may never read again),
        // and a replica held to the end is not called leaking: its EOF could not be seen.
        let (mut s, c) = start(Limits::new(None, None, 1), 1);
        s.handle(Event::Stop { signal: libc::SIGTERM }, c.t(50));
        s.handle(Event::Exited { slot: 0 }, c.t(100));
        s.handle(Event::Held { slot: 0 }, c.t(500));
        assert_eq!(s.handle(Event::Tick, c.t(600)), [Action::Finalize { slot: 0, leaked: false }]);
    }

    #[test]
    fn a_replica_whose_pipes_stay_open_is_finalized_as_leaked_after_the_window() {
        let (mut s, c) = start(Limits::new(None, None, 1), 1);
        s.handle(Event::Exited { slot: 0 }, c.t(100));
        assert_eq!(s.next_deadline(), Some(c.t(600)));
        assert!(s.handle(Event::Tick, c.t(599)).is_empty());
        assert_eq!(s.handle(Event::Tick, c.t(600)), [Action::Finalize { slot: 0, leaked: true }]);
    }

    #[test]
    fn stop_signals_are_forwarded_then_escalated() {
        let (mut s, c) = start(Limits::new(None, None, 2), 2);
        s.handle(Event::Exited { slot: 1 }, c.t(5));
        s.handle(Event::Closed { slot: 1 }, c.t(5));
        let a = s.handle(Event::Stop { signal: libc::SIGINT }, c.t(10));
        assert_eq!(a, [Action::Signal { slot: 0, signal: libc::SIGINT }], "only the running replica");
        assert_eq!(s.stopped_by, Some(libc::SIGINT));
        assert_eq!(s.running(), 1);
        // The grace runs out: SIGKILL.
        assert_eq!(s.handle(Event::Tick, c.t(2010)), [Action::Signal { slot: 0, signal: libc::SIGKILL }]);
        // A second stop signal kills at once.
        let (mut s, c) = start(Limits::new(None, None, 1), 1);
        s.handle(Event::Stop { signal: libc::SIGTERM }, c.t(0));
        assert_eq!(
            s.handle(Event::Stop { signal: libc::SIGTERM }, c.t(1)),
            [Action::Signal { slot: 0, signal: libc::SIGKILL }]
        );
        assert_eq!(s.stopped_by, Some(libc::SIGTERM));
    }

    #[test]
    fn a_replica_that_exits_is_never_killed_for_its_timeout() {
        let (mut s, c) = start(Limits::new(Some(Timeout::Absolute(ms(100))), None, 1), 1);
        s.handle(Event::Exited { slot: 0 }, c.t(50));
        assert!(s.handle(Event::Tick, c.t(200)).iter().all(|a| matches!(a, Action::Finalize { .. })));
        assert!(!s.timed_out(0));
    }
}
