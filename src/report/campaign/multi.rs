//! The report of `tmr campaign --faults K`, `--checkpoint I` and `--compare-recovery I`: each trial's
//! result and each fault's effect, the recovery on/off columns, and their human rendering (pure).

use serde::Serialize;

use super::GoldenEntry;
use crate::epoch::Rollback;
use crate::fingerprint::Outcome;
use crate::inject::Injected;
use crate::stats::Interval;

/// What the vote delivered in one trial with K faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialResult {
    Corrected,
    /// A majority crashed or hung the same way: a visible failure, no answer delivered.
    Failed,
    NoMajority,
    Escaped,
    /// Fewer than K faults landed (a replica ended before its fault's time, or the target was missing).
    NotInjected,
}

impl TrialResult {
    pub const ALL: [TrialResult; 5] = [
        TrialResult::Corrected,
        TrialResult::Failed,
        TrialResult::NoMajority,
        TrialResult::Escaped,
        TrialResult::NotInjected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TrialResult::Corrected => "corrected",
            TrialResult::Failed => "failed",
            TrialResult::NoMajority => "no-majority",
            TrialResult::Escaped => "escaped",
            TrialResult::NotInjected => "not-injected",
        }
    }
}

/// What one fault did to its replica's final result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultEffect {
    /// The replica ended with the golden result, never rolled back.
    Masked,
    /// The replica was rolled back and ended with the golden result.
    Recovered,
    /// Golden result, but its memory differed from the page majority (`--mem`).
    MemoryOnly,
    /// A normal end with a wrong result (stdout or exit code).
    WrongResult,
    Crash,
    Hang,
    NotInjected,
}

impl FaultEffect {
    pub const ALL: [FaultEffect; 7] = [
        FaultEffect::Masked,
        FaultEffect::Recovered,
        FaultEffect::MemoryOnly,
        FaultEffect::WrongResult,
        FaultEffect::Crash,
        FaultEffect::Hang,
        FaultEffect::NotInjected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultEffect::Masked => "masked",
            FaultEffect::Recovered => "recovered",
            FaultEffect::MemoryOnly => "memory-only",
            FaultEffect::WrongResult => "wrong-result",
            FaultEffect::Crash => "crash",
            FaultEffect::Hang => "hang",
            FaultEffect::NotInjected => "not-injected",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultEntry {
    pub replica: usize,
    /// Pass to `tmr --inject` (same command) to replay this fault alone.
    pub spec: String,
    pub effect: FaultEffect,
    pub outcome: Outcome,
    pub injected: Option<Injected>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicaRollbacks {
    pub replica: usize,
    pub rollbacks: Vec<Rollback>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    pub recovery: bool,
    pub result: TrialResult,
    pub faults: Vec<FaultEntry>,
    /// Every replica's rollbacks (a healthy replica may be rolled back too, e.g. judged hung).
    pub rollbacks: Vec<ReplicaRollbacks>,
    /// Replicas whose checkpointing stopped early, and why: they ran unprotected from there.
    pub checkpoint_stopped: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialEntry {
    pub trial: usize,
    /// The trial's own seed, from which its replicas, times and fault seeds were drawn.
    pub seed: u64,
    /// Every fault of the trial as drawn, joined by ';' (each names its replica); a recovery-on run's
    /// times are scaled (see each fault's `spec`).
    pub specs: String,
    pub runs: Vec<RunEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: &'static str,
    pub count: usize,
    /// Share of the trials (faults) where every fault landed (the fault landed); not-injected rows:
    /// share of all trials (faults).
    pub rate: f64,
    pub interval: Interval,
}

#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub recovery: bool,
    pub checkpoint_ms: Option<f64>,
    pub trials: usize,
    pub results: Vec<Row>,
    pub faults: Vec<Row>,
    pub trials_with_rollback: usize,
    pub trials_with_checkpoint_stopped: usize,
    pub failed: usize,
    pub no_majority: usize,
    pub escaped: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct MultiReport {
    pub schema: &'static str,
    pub version: u32,
    pub mode: &'static str,
    pub command: Vec<String>,
    pub replicas: usize,
    pub faults: usize,
    pub seed: u64,
    pub trials_planned: usize,
    pub trials: usize,
    pub golden: GoldenEntry,
    /// The golden run again with checkpoints (no fault): its wall sets recovery-on's hang limit, and
    /// its result must be golden's.
    pub golden_recovery: Option<GoldenEntry>,
    /// What makes the numbers less than they seem (golden runs that disagree).
    pub notes: Vec<String>,
    /// Recovery-on runs' fault times are the drawn ones times this (see [`Plan::recovery_time_scale`]).
    pub recovery_time_scale: Option<f64>,
    /// The hang limits of the recovery-on and -off runs, in ms.
    pub hang_limit_ms: [Option<f64>; 2],
    /// Where fault times were drawn, in ms since the replica started (None: the template's fixed time).
    pub fault_window_ms: Option<[f64; 2]>,
    pub columns: Vec<Column>,
    pub trial_log: Vec<TrialEntry>,
    pub stopped: String,
    pub wall_s: f64,
    pub exit_code: i32,
}

fn column_label(c: &Column) -> String {
    match c.checkpoint_ms {
        Some(ms) => format!("recovery on ({ms:.0}ms)"),
        None => "recovery off".into(),
    }
}

pub fn render(r: &MultiReport) -> String {
    let pct = |p: f64| format!("{:.1}%", p * 100.0);
    let cell = |row: &Row| {
        format!("{:>4} {:>6} [{}, {}]", row.count, pct(row.rate), pct(row.interval.lo), pct(row.interval.hi))
    };
    let mut out = format!(
        "tmr campaign: {} of `{}` with {} replicas, {} fault(s) each in different replicas (seed {}), \
         in {:.1}s{}\n",
        super::plural(r.trials, "trial"),
        r.command.join(" "),
        r.replicas,
        r.faults,
        r.seed,
        r.wall_s,
        if r.stopped == "completed" { String::new() } else { format!(" (stopped: {})", r.stopped) }
    );
    out.push_str(&format!(
        "golden run (shortest of 3): {}, stdout {} B {}, {:.1} ms{}\n",
        r.golden.outcome.describe(),
        r.golden.stdout_bytes,
        &r.golden.stdout_xxh128[..8.min(r.golden.stdout_xxh128.len())],
        r.golden.wall_ms,
        match r.fault_window_ms {
            Some([a, b]) => format!("; fault times drawn in {} slice(s) of {a:.1}-{b:.1} ms", r.faults),
            None => "; fault times fixed by the template".into(),
        }
    ));
    if let Some(g) = &r.golden_recovery {
        out.push_str(&format!(
            "golden run with checkpoints (shortest of 3): {}, stdout {} B {}, {:.1} ms{}{}\n",
            g.outcome.describe(),
            g.stdout_bytes,
            &g.stdout_xxh128[..8.min(g.stdout_xxh128.len())],
            g.wall_ms,
            r.recovery_time_scale
                .map_or(String::new(), |x| format!("; its fault times are the drawn ones x{x:.2}")),
            if g.outcome == r.golden.outcome && g.stdout_xxh128 == r.golden.stdout_xxh128 {
                ""
            } else {
                " -- NOT the golden result: checkpointing changed what the program computes"
            }
        ));
    }
    for n in &r.notes {
        out.push_str(&format!("NOTE: {n}\n"));
    }
    let limits: Vec<String> = r
        .hang_limit_ms
        .iter()
        .zip(["recovery on", "recovery off"])
        .filter_map(|(l, name)| l.map(|ms| format!("{name} {ms:.0} ms")))
        .collect();
    if !limits.is_empty() {
        out.push_str(&format!(
            "hang limit (10x the slowest of 3 golden runs, at least 2 s): {}\n",
            limits.join(", ")
        ));
    }
    out.push('\n');
    const W: usize = 30;
    let mut header = format!("  {:<16}", "trial result");
    for c in &r.columns {
        header.push_str(&format!(" {:<W$}", column_label(c)));
    }
    out.push_str(header.trim_end());
    out.push('\n');
    for (i, name) in TrialResult::ALL.iter().map(|c| c.name()).enumerate() {
        let mut line = format!("  {name:<16}");
        for c in &r.columns {
            line.push_str(&format!(" {:<W$}", cell(&c.results[i])));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("\n  per fault\n");
    for e in FaultEffect::ALL {
        let mut line = format!("  {:<16}", e.name());
        for c in &r.columns {
            let text = c.faults.iter().find(|f| f.name == e.name()).map_or("   -".into(), cell);
            line.push_str(&format!(" {text:<W$}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push('\n');
    for c in &r.columns {
        let mut line = format!(
            "{}: of {} trial(s), {} failed (a majority crashed or hung), {} had no majority, {} escaped",
            column_label(c),
            c.trials,
            c.failed,
            c.no_majority,
            c.escaped
        );
        if c.recovery {
            line.push_str(&format!("; {} had a rollback", c.trials_with_rollback));
            if c.trials_with_checkpoint_stopped > 0 {
                line.push_str(&format!(
                    "; in {} checkpointing stopped early in some replica (see the JSON trial log)",
                    c.trials_with_checkpoint_stopped
                ));
            }
        }
        out.push_str(&line);
        out.push_str(".\n");
    }
    let escaped: usize = r.columns.iter().map(|c| c.escaped).sum();
    if escaped > 0 {
        out.push_str(
            "a WRONG result was delivered in the escaped trials (see --format json for their specs).\n",
        );
    }
    out
}
