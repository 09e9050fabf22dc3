//! Checkpoint policy for `--checkpoint` (pure: times are arguments, no processes). The tracer in
//! `trace::checkpoint` asks it when the next checkpoint is due and what to do when its replica fails;
//! the log it fills travels to tmr in the memory snapshot and into the report.
//!
//! With parallel replicas, checkpoints are aligned across replicas (`trace::epochvote`) and voted:
//! a checkpoint is good once the replica's digest is in the strict majority ([`epoch_verdict`]); only
//! the last good one is kept. A replica in the minority is rolled back to it ("epoch-divergence").
//! When fewer than a majority of replicas are left to vote (the others exited), a checkpoint is kept
//! unvoted, as when replicas run one at a time: good then means "taken while running normally".
//! A failed replica is rolled back only when that is exact as far as tmr can tell: it did no read or
//! write (`rchar`/`wchar` of /proc/PID/io) since the checkpoint, because file offsets and pipes are
//! shared with the checkpoint and output already captured by tmr cannot be taken back yet.
//!
//! An outvoted replica may instead be *repaired in place* ([`Recover::Scrub`], as ECC scrubbing does):
//! the majority's differing pages and registers are copied into it at the epoch, so it needs no
//! re-execution and no exact rollback. What a repair cannot cover (a different instruction pointer,
//! more than [`MAX_SCRUB_PAGES`] pages, output written in the epoch) falls back to the rollback; the
//! log says which it was ([`Repair`]). [`Recover::Auto`], the default, rolls back where that is exact
//! and repairs in place where it is refused.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// At most this many rollbacks per replica: a replica that keeps failing from fresh checkpoints is
/// reported, not restarted forever.
pub const MAX_ROLLBACKS: u32 = 8;

/// How an outvoted replica is brought back at an epoch vote (`--recover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recover {
    /// Resume its last good checkpoint: it re-executes the epoch.
    Rollback,
    /// Copy the majority's differing pages into it (falling back to the rollback where that cannot work).
    Scrub,
    /// Roll back where an exact rollback is allowed (no I/O since the checkpoint, not a recurrence, a
    /// checkpoint kept), else repair in place.
    Auto,
}

impl Recover {
    /// The default under `--epoch-vote`: in the README's campaigns (K = 2 and 3 faults on compute,
    /// heapstate and sort) it corrected the most trials; rollback and scrub alone tied.
    pub const DEFAULT: Recover = Recover::Auto;

    pub fn parse(text: &str) -> Result<Recover, String> {
        match text {
            "rollback" => Ok(Recover::Rollback),
            "scrub" => Ok(Recover::Scrub),
            "auto" => Ok(Recover::Auto),
            _ => Err(format!("unknown recovery '{}' (rollback, scrub or auto)", text.escape_debug())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Recover::Rollback => "rollback",
            Recover::Scrub => "scrub",
            Recover::Auto => "auto",
        }
    }
}

/// The environment variable that turns aligned epoch votes on in the replicas' tracers, with the
/// recovery it names (`rollback` or `scrub`), even in a checkpoint directory marked solo: how `--recover`
/// reaches the tracers, and how `tmr campaign` (which has no `--epoch-vote` of its own yet) is given
/// epoch votes. The monitor removes it before the command runs.
pub const ENV: &str = "TMR_EPOCH_VOTE";

/// Pages one repair in place copies at most: the majority publishes the pages it wrote in the epoch, and
/// past this many it publishes none (the outvoted replica is rolled back instead).
pub const MAX_SCRUB_PAGES: usize = 4096;

/// Repairs in place per replica at most; past them an outvoted replica is rolled back (whose own bound
/// then reports a replica that keeps diverging).
pub const MAX_REPAIRS: u32 = 8;

/// A repair in place tried at an epoch vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repair {
    pub epoch: u32,
    pub at_ms: f64,
    /// Pages copied from the majority, or `None` when it was not repaired (then it was rolled back).
    pub pages: Option<u64>,
    /// Why it was not repaired in place, or where the pages came from.
    pub note: String,
}

/// What the tracer reports about its replica's checkpoints (in the snapshot JSON, then the report).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointLog {
    pub interval_ms: f64,
    pub epochs: Vec<Epoch>,
    pub rollbacks: Vec<Rollback>,
    /// Why checkpointing stopped early (threads, child processes, a failed remote fork).
    pub stopped: Option<String>,
    /// Aligned epochs where this replica's memory was in the minority.
    #[serde(default)]
    pub divergent_epochs: Vec<u32>,
    /// Pages left out of the epoch digests as noise (no strict majority agreed on them).
    #[serde(default)]
    pub noise_pages: usize,
    /// Epochs voted (aligned, with a majority present) and their verdicts, in order.
    #[serde(default)]
    pub votes: Vec<EpochVote>,
    /// With `--recover scrub`: each repair in place tried, in order.
    #[serde(default)]
    pub repairs: Vec<Repair>,
    /// Found hung with no rollback possible, and ended by tmr with SIGKILL: its outcome is a timeout
    /// (tmr's doing, as `--timeout` would), not a crash of the command's own.
    #[serde(default)]
    pub ended_hung: bool,
}

/// One epoch vote of this replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochVote {
    pub epoch: u32,
    /// The syscall count at the boundary.
    pub boundary: u64,
    pub verdict: EpochVerdict,
    /// Pages hashed for this vote (written since the previous checkpoint), and the time it took.
    pub pages_hashed: u64,
    pub hash_ms: f64,
    /// Time spent waiting for the siblings' digests.
    pub wait_ms: f64,
    /// Pages whose first read came back short and were read again (so far in this replica).
    #[serde(default)]
    pub short_reads: u64,
}

/// A replica's standing at an epoch vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpochVerdict {
    /// In the strict majority: the checkpoint is good.
    Good,
    /// A strict majority agrees on another digest.
    Minority,
    /// Fewer than a strict majority of the replicas published a digest: kept unvoted.
    TooFew,
    /// Enough digests, no strict majority.
    NoMajority,
}

/// The verdict for replica `me` of `n`, given the digests published (None: not in time, or gone).
pub fn epoch_verdict<D: PartialEq>(me: usize, n: usize, digests: &[Option<D>]) -> EpochVerdict {
    let need = n / 2 + 1;
    let present: Vec<&D> = digests.iter().flatten().collect();
    if present.len() < need {
        return EpochVerdict::TooFew;
    }
    let majority = present.iter().find(|d| present.iter().filter(|e| e == d).count() >= need);
    match (majority, digests.get(me).and_then(Option::as_ref)) {
        (Some(m), Some(mine)) if *m == mine => EpochVerdict::Good,
        (Some(_), _) => EpochVerdict::Minority,
        (None, _) => EpochVerdict::NoMajority,
    }
}

/// One checkpoint taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    /// 1-based checkpoint number within this replica.
    pub index: u32,
    /// Time since the tracer attached.
    pub at_ms: f64,
    /// Pages the replica wrote since the previous checkpoint (all present pages for the first).
    pub dirty_pages: u64,
    /// Time the replica was held: the page scan plus the remote fork.
    pub cost_ms: f64,
    /// Of which the remote fork (and the child's set-up).
    #[serde(default)]
    pub fork_ms: f64,
}

/// A failure of the replica and what was done about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub at_ms: f64,
    /// What failed (e.g. "SIGSEGV").
    pub cause: String,
    /// The checkpoint resumed, or `None` when the failure was left to stand.
    pub resumed_epoch: Option<u32>,
    /// Why it was not rolled back, or that it was.
    pub note: String,
}

/// When the next checkpoint is due: `interval` after the previous one (or after the start).
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    next: Duration,
}

impl Schedule {
    pub fn new(interval: Duration) -> Self {
        Schedule { interval, next: interval }
    }
    /// `now` is the time since the tracer attached.
    pub fn due(&self, now: Duration) -> bool {
        now >= self.next
    }
    pub fn interval(&self) -> Duration {
        self.interval
    }
    /// Time left until due (what the timer is armed with).
    pub fn wait(&self, now: Duration) -> Duration {
        self.next.saturating_sub(now)
    }
    /// A checkpoint was taken (or the running process was replaced) at `now`.
    pub fn taken(&mut self, now: Duration) {
        self.next = now + self.interval;
    }
}

/// At a checkpoint timer tick: is a checkpoint wanted? Not once checkpointing is `off`; always for a
/// `full` output hold, overdue or not (the replica is blocked in write(2) until a checkpoint commits its
/// output: refusing it, as an `overdue` replica is refused timed checkpoints, left it blocked for good,
/// and that wait made it overdue); otherwise when one is `due` and the replica is not overdue (asked
/// only then: it reads the siblings' reports).
pub fn checkpoint_wanted(off: bool, full: bool, due: bool, overdue: impl FnOnce() -> bool) -> bool {
    !off && (full || (due && !overdue()))
}

/// A wanted checkpoint needs the tracer to interrupt the replica itself when the timer's handler did
/// not (`sent`): a tick that came while a checkpoint was already `wanted` (being taken) interrupted
/// nobody, and the process was resumed without syscall stops since, so a replica blocked in write(2) on
/// a full hold would wait for a checkpoint that never comes. Aligned epochs stop at every system call.
pub fn must_interrupt(wanted: bool, sent: bool, aligned: bool) -> bool {
    !wanted && !sent && !aligned
}

/// A replica still running is hung at this multiple of the median wall of its finished siblings.
pub const HANG_FACTOR: f64 = 4.0;

/// Whether a replica that has run for `elapsed` (not counting time lost to rollbacks) is hung, as tmr's
/// relative timeout judges (`HANG_FACTOR` × the median wall of the siblings that finished, once a strict
/// majority of all `replicas` has), but never before `floor`.
pub fn hung(elapsed: Duration, finished: &[Duration], replicas: usize, floor: Duration) -> bool {
    past(elapsed, finished, replicas, HANG_FACTOR).is_some_and(|limit| elapsed >= limit.max(floor))
}

/// The earliest a replica can be judged hung: two checkpoint intervals, and never under the relative
/// timeout's floor (1 s). With only the intervals, a replica of a short command that was merely late
/// (60 ms against its siblings' 15 ms, on a loaded machine) was judged hung at 40 ms and, with no
/// checkpoint to roll back to, killed.
pub fn hang_floor(interval: Duration) -> Duration {
    (2 * interval).max(crate::units::RELATIVE_TIMEOUT_FLOOR)
}

/// Whether a replica is overdue: running longer than the median wall of a finished majority. It may be
/// hung already, so it takes no more checkpoints (a rollback must not land in the hang).
pub fn overdue(elapsed: Duration, finished: &[Duration], replicas: usize) -> bool {
    past(elapsed, finished, replicas, 1.0).is_some_and(|limit| elapsed >= limit)
}

/// `factor` × the median of `finished`, once a strict majority of `replicas` (at least 2) finished.
fn past(_elapsed: Duration, finished: &[Duration], replicas: usize, factor: f64) -> Option<Duration> {
    if replicas < 2 || finished.len() < replicas / 2 + 1 {
        return None;
    }
    let mut walls: Vec<f64> = finished.iter().map(Duration::as_secs_f64).collect();
    let median = crate::stats::median(&mut walls)?;
    Some(Duration::from_secs_f64(median * factor))
}

/// Checkpoints kept per replica: the newest, and the one before it, for when the newest was taken
/// after the fault had already struck (in a signal handler on the way to the crash, say).
pub const KEEP: usize = 2;

/// The lineage of one replica: its kept checkpoints and what the running process was resumed from.
#[derive(Debug, Clone, Default)]
pub struct Lineage {
    /// Epochs of the checkpoints held now, oldest first (at most [`KEEP`]).
    pub kept: Vec<u32>,
    /// The epoch the running process was resumed from, if it is a resumed checkpoint.
    pub resumed_from: Option<u32>,
    pub rollbacks: u32,
    pub epochs: u32,
    /// What made the last rollback necessary.
    last_cause: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Resume the kept checkpoint of this epoch in place of the failed process; the kept ones newer
    /// than it are released.
    Rollback(u32),
    /// Let the failure stand, for this reason.
    Stand(String),
}

impl Lineage {
    /// A new checkpoint was taken. Returns its epoch and the epoch released to make room, if any.
    pub fn checkpoint(&mut self) -> (u32, Option<u32>) {
        self.epochs += 1;
        self.kept.push(self.epochs);
        let released = (self.kept.len() > KEEP).then(|| self.kept.remove(0));
        (self.epochs, released)
    }

    /// The aligned checkpoint of epoch `k` was voted good (or kept unvoted): it becomes the only one
    /// kept, and the lineage is proven past any earlier fault. Returns the epochs released.
    pub fn good(&mut self, k: u32) -> Vec<u32> {
        let released = std::mem::replace(&mut self.kept, vec![k]);
        self.epochs = self.epochs.max(k);
        self.resumed_from = None;
        self.last_cause = None;
        released
    }

    /// Which checkpoint a failure with `cause` would go back to. The newest, unless the running process
    /// was resumed and failed the same way again: then the newest one older than the one it was
    /// resumed from (the newer ones may hold the fault already), if any.
    pub fn candidate(&self, cause: &str) -> Result<u32, String> {
        match self.resumed_from {
            Some(r) if self.last_cause.as_deref() == Some(cause) => {
                self.kept.iter().rev().copied().find(|&e| e < r).ok_or_else(|| {
                    format!("failed again ({cause}) after resuming checkpoint {r}, and no older one is kept: a deterministic fault")
                })
            }
            Some(r) => self.kept.last().copied().ok_or_else(|| format!("no checkpoint kept since resuming checkpoint {r}")),
            None => self.kept.last().copied().ok_or_else(|| "no checkpoint had been taken yet".to_string()),
        }
    }

    /// The running process failed with `cause`; `io_since(k)` is the bytes read or written since
    /// checkpoint `k` that a rollback could not take back.
    pub fn on_failure(&mut self, cause: &str, io_since: impl FnOnce(u32) -> u64) -> Decision {
        let k = match self.candidate(cause) {
            Ok(k) => k,
            Err(why) => return Decision::Stand(why),
        };
        if self.rollbacks >= MAX_ROLLBACKS {
            return Decision::Stand(format!("already rolled back {MAX_ROLLBACKS} times"));
        }
        let io = io_since(k);
        if io > 0 {
            return Decision::Stand(if io == u64::MAX {
                format!("its I/O since checkpoint {k} is unknown")
            } else {
                format!("it read or wrote {io} bytes since checkpoint {k} that a rollback cannot take back (reads, writes other than its output still held, or output already delivered)")
            });
        }
        self.rollbacks += 1;
        self.last_cause = Some(cause.to_string());
        self.kept.retain(|&e| e < k);
        self.resumed_from = Some(k);
        Decision::Rollback(k)
    }
}

/// The human report's lines for one replica's checkpoints: a summary, then one line per failure.
pub fn describe(replica: usize, log: Option<&CheckpointLog>) -> Vec<String> {
    let Some(log) = log else { return Vec::new() };
    let pages: u64 = log.epochs.iter().map(|e| e.dirty_pages).sum();
    // Folded from +0.0: an empty f64 sum is -0.0, which printed as "-0.0 ms held".
    let cost: f64 = log.epochs.iter().fold(0.0, |a, e| a + e.cost_ms);
    let mut out = vec![format!(
        "  replica {replica}: {} checkpoint(s) every {:.0} ms · {pages} pages written · {cost:.1} ms held",
        log.epochs.len(),
        log.interval_ms
    )];
    if !log.votes.is_empty() {
        let good = log.votes.iter().filter(|v| v.verdict == EpochVerdict::Good).count();
        out.push(format!(
            "  replica {replica}: {} epoch vote(s): {good} in the majority · diverged at epoch(s) {}",
            log.votes.len(),
            if log.divergent_epochs.is_empty() {
                "none".to_string()
            } else {
                log.divergent_epochs.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            }
        ));
    }
    for r in &log.repairs {
        out.push(match r.pages {
            Some(p) => format!(
                "  replica {replica}: epoch {}: repaired in place, {p} page(s) from the majority",
                r.epoch
            ),
            None => format!(
                "  replica {replica}: epoch {}: not repaired in place ({}): falls back to rollback",
                r.epoch, r.note
            ),
        });
    }
    // Checkpoints are epochs only where epoch votes aligned them.
    let epoch = |k: u32| if log.votes.is_empty() { String::new() } else { format!(" (epoch {k})") };
    for r in &log.rollbacks {
        out.push(match r.resumed_epoch {
            Some(k) => format!(
                "  replica {replica}: {} at {:.0} ms: rolled back to checkpoint {k}{}, which ran on",
                r.cause,
                r.at_ms,
                epoch(k)
            ),
            None => {
                format!("  replica {replica}: {} at {:.0} ms: not rolled back: {}", r.cause, r.at_ms, r.note)
            }
        });
    }
    if let Some(why) = &log.stopped {
        out.push(format!("  replica {replica}: checkpoints stopped: {why}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_late_replica_of_a_short_command_is_not_hung_before_a_second() {
        let walls = [15 * MS, 16 * MS];
        let floor = hang_floor(20 * MS);
        assert!(!hung(65 * MS, &walls, 3, floor), "4x the median, but under the 1 s floor");
        assert!(hung(1000 * MS, &walls, 3, floor));
        assert_eq!(hang_floor(Duration::from_secs(2)), Duration::from_secs(4), "two intervals when longer");
    }

    #[test]
    fn a_full_hold_gets_its_checkpoint_even_overdue_and_nothing_does_once_off() {
        let never = || panic!("overdue is not asked");
        assert!(checkpoint_wanted(false, true, false, never), "full: wanted, not due");
        assert!(checkpoint_wanted(false, true, true, || true), "full: wanted, overdue");
        assert!(checkpoint_wanted(false, false, true, || false), "due and on time");
        assert!(!checkpoint_wanted(false, false, true, || true), "due but overdue: it may be hung");
        assert!(!checkpoint_wanted(false, false, false, never), "neither due nor full");
        assert!(!checkpoint_wanted(true, true, true, never), "checkpointing is off");
    }

    #[test]
    fn the_tracer_interrupts_only_when_nobody_else_will_stop_the_replica() {
        assert!(must_interrupt(false, false, false), "the tick's handler sent nothing");
        assert!(!must_interrupt(true, false, false), "already wanted: the stop that takes it comes");
        assert!(!must_interrupt(false, true, false), "the handler interrupted it");
        assert!(!must_interrupt(false, false, true), "aligned epochs stop at every system call");
    }

    #[test]
    fn a_checkpoint_is_due_one_interval_after_the_previous() {
        let mut s = Schedule::new(100 * MS);
        assert!(!s.due(99 * MS));
        assert_eq!(s.wait(40 * MS), 60 * MS);
        assert!(s.due(100 * MS));
        // Taken late (the replica made no system call for a while): the next is an interval after that.
        s.taken(250 * MS);
        assert!(!s.due(300 * MS));
        assert!(s.due(350 * MS));
        assert_eq!(s.wait(400 * MS), Duration::ZERO);
    }

    #[test]
    fn a_failure_rolls_back_to_the_newest_checkpoint_then_to_the_one_before() {
        let mut l = Lineage::default();
        let none = |_| 0;
        assert_eq!(l.on_failure("SIGSEGV", none), Decision::Stand("no checkpoint had been taken yet".into()));
        assert_eq!(l.checkpoint(), (1, None));
        assert_eq!(l.checkpoint(), (2, None));
        assert_eq!(l.checkpoint(), (3, Some(1)), "two are kept");
        assert_eq!(l.on_failure("SIGSEGV", none), Decision::Rollback(3));
        // The same fault again: checkpoint 3 may hold it already; go back to 2.
        assert_eq!(l.on_failure("SIGSEGV", none), Decision::Rollback(2));
        match l.on_failure("SIGSEGV", none) {
            Decision::Stand(why) => {
                assert!(why.contains("failed again (SIGSEGV)") && why.contains("checkpoint 2"))
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn checkpoints_taken_after_resuming_are_newer_than_the_fault_and_skipped_when_it_recurs() {
        let mut l = Lineage::default();
        l.checkpoint();
        l.checkpoint();
        assert_eq!(l.on_failure("SIGSEGV", |_| 0), Decision::Rollback(2));
        assert_eq!(l.checkpoint(), (3, None));
        assert_eq!(l.kept, vec![1, 3]);
        // A different fault rolls back to the newest; the same one again skips past 3 and 2.
        assert_eq!(l.clone().on_failure("SIGBUS", |_| 0), Decision::Rollback(3));
        assert_eq!(l.on_failure("SIGSEGV", |_| 0), Decision::Rollback(1));
        assert!(l.kept.is_empty(), "3 is newer than 1: released");
    }

    #[test]
    fn io_since_the_checkpoint_or_too_many_rollbacks_leave_the_failure_standing() {
        let mut l = Lineage::default();
        l.checkpoint();
        assert!(
            matches!(l.on_failure("SIGSEGV", |k| if k == 1 { 12 } else { 0 }), Decision::Stand(w) if w.contains("12 bytes"))
        );
        assert!(matches!(l.on_failure("SIGSEGV", |_| u64::MAX), Decision::Stand(w) if w.contains("unknown")));
        for i in 0..MAX_ROLLBACKS {
            l.checkpoint();
            assert!(matches!(l.on_failure(&format!("cause {i}"), |_| 0), Decision::Rollback(_)));
        }
        l.checkpoint();
        assert!(matches!(l.on_failure("SIGSEGV", |_| 0), Decision::Stand(w) if w.contains("already")));
    }

    #[test]
    fn an_epoch_is_good_in_the_strict_majority_and_unvoted_without_one_present() {
        use EpochVerdict::*;
        let (a, b) = (Some(1), Some(2));
        assert_eq!(epoch_verdict(0, 3, &[a, a, b]), Good);
        assert_eq!(epoch_verdict(2, 3, &[a, a, b]), Minority);
        assert_eq!(epoch_verdict(2, 3, &[a, a, None]), Minority, "no digest of its own: not with them");
        assert_eq!(epoch_verdict(0, 3, &[a, None, None]), TooFew);
        assert_eq!(epoch_verdict(0, 3, &[a, b, Some(3)]), NoMajority);
        assert_eq!(epoch_verdict(0, 2, &[a, b]), NoMajority, "two replicas must both agree");
        assert_eq!(epoch_verdict(1, 5, &[a, a, a, b, b]), Good);
    }

    #[test]
    fn a_good_epoch_is_the_only_checkpoint_kept_and_clears_the_failure_history() {
        let mut l = Lineage::default();
        assert_eq!(l.good(3), Vec::<u32>::new());
        assert_eq!(l.on_failure("epoch-divergence", |_| 0), Decision::Rollback(3));
        // Diverged again from checkpoint 3 before any newer one was voted good: deterministic.
        assert!(
            matches!(l.on_failure("epoch-divergence", |_| 0), Decision::Stand(w) if w.contains("deterministic"))
        );
        let mut l = Lineage::default();
        l.good(3);
        assert_eq!(l.on_failure("epoch-divergence", |_| 0), Decision::Rollback(3));
        assert_eq!(l.good(4), Vec::<u32>::new());
        assert_eq!(l.good(5), vec![4]);
        // Proven past the earlier fault: the same cause again rolls back to the newest good one.
        assert_eq!(l.on_failure("epoch-divergence", |_| 0), Decision::Rollback(5));
    }

    #[test]
    fn a_replica_is_hung_once_a_majority_finished_long_enough_ago() {
        let walls = [100 * MS, 120 * MS];
        // One sibling finished: no majority of three yet.
        assert!(!hung(10_000 * MS, &walls[..1], 3, MS));
        assert!(!hung(439 * MS, &walls, 3, MS));
        assert!(hung(440 * MS, &walls, 3, MS), "4 × the median (110 ms)");
        assert!(!hung(440 * MS, &walls, 3, 500 * MS), "never before the floor");
        assert!(!hung(10_000 * MS, &[], 1, MS), "a single replica has no siblings to compare with");
        assert!(!overdue(109 * MS, &walls, 3) && overdue(110 * MS, &walls, 3));
        assert!(!overdue(10_000 * MS, &walls[..1], 3));
    }

    #[test]
    fn the_report_names_each_restart_its_epoch_and_cause() {
        let log = CheckpointLog {
            interval_ms: 20.0,
            epochs: vec![Epoch { index: 1, at_ms: 21.0, dirty_pages: 5, cost_ms: 0.5, fork_ms: 0.1 }],
            rollbacks: vec![
                Rollback {
                    at_ms: 30.0,
                    cause: "SIGSEGV".into(),
                    resumed_epoch: Some(1),
                    note: String::new(),
                },
                Rollback {
                    at_ms: 40.0,
                    cause: "SIGSEGV".into(),
                    resumed_epoch: None,
                    note: "failed again".into(),
                },
            ],
            stopped: None,
            ..Default::default()
        };
        let lines = describe(2, Some(&log));
        assert!(lines[0].contains("replica 2: 1 checkpoint(s) every 20 ms · 5 pages written"), "{lines:?}");
        let vote = |epoch, verdict| EpochVote {
            epoch,
            boundary: 9,
            verdict,
            pages_hashed: 1,
            hash_ms: 0.1,
            wait_ms: 0.1,
            short_reads: 0,
        };
        let voted = CheckpointLog {
            votes: vec![
                vote(1, EpochVerdict::Good),
                vote(2, EpochVerdict::Minority),
                vote(2, EpochVerdict::Good),
            ],
            divergent_epochs: vec![2],
            ..log.clone()
        };
        assert!(lines[1].contains("SIGSEGV at 30 ms: rolled back to checkpoint 1"), "{lines:?}");
        assert!(lines[2].contains("not rolled back: failed again"), "{lines:?}");
        assert!(describe(0, None).is_empty());
        let none = CheckpointLog { interval_ms: 20.0, ..Default::default() };
        assert!(describe(0, Some(&none))[0].ends_with("· 0.0 ms held"), "{:?}", describe(0, Some(&none)));
        let repaired = CheckpointLog {
            repairs: vec![
                Repair { epoch: 4, at_ms: 1.0, pages: Some(3), note: String::new() },
                Repair { epoch: 6, at_ms: 2.0, pages: None, note: "its registers differ".into() },
            ],
            ..Default::default()
        };
        let lines = describe(1, Some(&repaired));
        assert!(lines[1].contains("replica 1: epoch 4: repaired in place, 3 page(s)"), "{lines:?}");
        assert!(
            lines[2].contains("epoch 6: not repaired in place (its registers differ): falls back"),
            "{lines:?}"
        );
        let lines = describe(2, Some(&voted));
        assert!(
            lines[1].contains("3 epoch vote(s): 2 in the majority · diverged at epoch(s) 2"),
            "{lines:?}"
        );
    }
}
