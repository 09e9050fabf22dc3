//! `tmr hunt`'s report: the distinct outcomes of K runs, the failure rate with its Wilson interval and
//! what N-way voting would make of it; and its human rendering (pure: tested on hand-made reports).

use serde::Serialize;

use super::StreamEntry;
use crate::stats::Interval;

#[derive(Debug, Clone, Serialize)]
pub struct HuntReport {
    pub schema: &'static str,
    pub version: u32,
    pub command: Vec<String>,
    pub runs_planned: usize,
    pub runs: usize,
    pub jobs: usize,
    /// Why the hunt ended: completed, until-fail, duration, or the signal that stopped it.
    pub stopped: String,
    pub wall_s: f64,
    pub failures: usize,
    pub failure_rate: f64,
    pub confidence: f64,
    pub interval: Interval,
    /// With no failure: the rule-of-three upper bound on the failure rate.
    pub upper_bound_if_none: Option<f64>,
    pub outcomes: Vec<HuntOutcome>,
    /// What a strict-majority vote of N replicas would make of this failure rate (independent failures).
    pub voting: Vec<VotingEstimate>,
    pub kept: Option<String>,
    pub leaked_processes: usize,
    /// `--launcher slurm`: the allocation, node failures, and runs per node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<crate::launch::SlurmReport>,
    pub exit_code: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct HuntOutcome {
    pub outcome: crate::fingerprint::Outcome,
    pub stdout: StreamEntry,
    pub stderr: StreamEntry,
    pub count: usize,
    pub rate: f64,
    pub failing: bool,
    pub first_run: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct VotingEstimate {
    pub replicas: u64,
    pub failure_probability: f64,
    /// The same at the upper end of the failure rate's interval.
    pub at_upper_bound: f64,
}

fn pct(p: f64) -> String {
    if p > 0.0 && p < 0.001 {
        format!("{:.2e}", p)
    } else {
        format!("{:.2}%", p * 100.0)
    }
}

pub fn render(r: &HuntReport) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str("tmr hunt: ");
        out.push_str(&s);
        out.push('\n');
    };
    let why = match r.stopped.as_str() {
        "completed" => String::new(),
        "until-fail" => " (stopped at the first failure)".into(),
        "duration" => " (stopped: --duration reached)".into(),
        sig => format!(" (interrupted by {sig})"),
    };
    line(format!(
        "{} of {} runs of `{}` ({} at a time) in {:.1}s{why}",
        r.runs,
        r.runs_planned,
        r.command.join(" "),
        r.jobs,
        r.wall_s
    ));
    line("distinct outcomes:".into());
    for o in &r.outcomes {
        line(format!(
            "  {:>6}  {:>7}  {}, stdout {} B {}{}",
            o.count,
            pct(o.rate),
            o.outcome.describe(),
            o.stdout.bytes,
            &o.stdout.xxh128[..8],
            if o.failing { format!("  FAIL, first at run {}", o.first_run) } else { String::new() }
        ));
    }
    let conf = format!("{:.0}%", r.confidence * 100.0);
    match r.upper_bound_if_none {
        Some(b) => line(format!(
            "no failure in {} runs: the failure rate is below {} ({conf} confidence)",
            r.runs,
            pct(b)
        )),
        None => line(format!(
            "failure rate {} ({}/{}), {conf} interval [{}, {}]",
            pct(r.failure_rate),
            r.failures,
            r.runs,
            pct(r.interval.lo),
            pct(r.interval.hi)
        )),
    }
    if r.failures > 0 {
        let v: Vec<String> = r
            .voting
            .iter()
            .map(|e| {
                format!(
                    "{}-way {} (at most {})",
                    e.replicas,
                    pct(e.failure_probability),
                    pct(e.at_upper_bound)
                )
            })
            .collect();
        line(format!(
            "with majority voting (tmr -n N), independent failures at this rate become: {} \
             [3-way: P = 3p² − 2p³]",
            v.join(", ")
        ));
    }
    if let Some(slurm) = &r.slurm {
        for text in crate::launch::human_lines(slurm) {
            line(text);
        }
    }
    if let Some(dir) = &r.kept {
        if r.failures > 0 {
            line(format!("kept the failing runs' output in {dir}/ (index.tsv)"));
        }
    }
    if r.leaked_processes > 0 {
        line(format!("killed {} leftover process(es) the runs left behind", r.leaked_processes));
    }
    out
}

/// A small hand-made hunt report for the renderers' tests: 10 runs of `x`, one failing.
#[cfg(test)]
pub(crate) fn sample() -> HuntReport {
    let outcome = |code, count, failing| HuntOutcome {
        outcome: crate::fingerprint::Outcome::Exited { code },
        stdout: StreamEntry { bytes: 0, xxh128: "0".repeat(32) },
        stderr: StreamEntry { bytes: 0, xxh128: "0".repeat(32) },
        count,
        rate: count as f64 / 10.0,
        failing,
        first_run: code as usize,
    };
    HuntReport {
        schema: "tmr-hunt-report",
        version: 1,
        command: vec!["x".into()],
        runs_planned: 10,
        runs: 10,
        jobs: 1,
        stopped: "completed".into(),
        wall_s: 1.0,
        failures: 1,
        failure_rate: 0.1,
        confidence: 0.95,
        interval: crate::stats::wilson(1, 10, 0.95),
        upper_bound_if_none: None,
        outcomes: vec![outcome(0, 9, false), outcome(1, 1, true)],
        voting: vec![VotingEstimate { replicas: 3, failure_probability: 0.028, at_upper_bound: 0.3 }],
        kept: None,
        leaked_processes: 0,
        slurm: None,
        exit_code: 1,
    }
}
