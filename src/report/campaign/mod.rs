//! `tmr campaign`'s report (one fault per trial): the categories, the table with Wilson intervals, the
//! trial log to replay from; and its human rendering. `multi` holds the K-fault report. Pure: the
//! campaign loops (`crate::campaign`) fill these in and tell them as events.

use serde::Serialize;

use crate::fingerprint::Outcome;
use crate::inject::Injected;
use crate::stats::Interval;

pub mod multi;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Masked,
    DetectedCorrected,
    Crash,
    Hang,
    Escaped,
    /// The replica ended before the fault's time, or the target did not exist: no fault, no data.
    NotInjected,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Masked,
        Category::DetectedCorrected,
        Category::Crash,
        Category::Hang,
        Category::Escaped,
        Category::NotInjected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Masked => "masked",
            Category::DetectedCorrected => "detected-corrected",
            Category::Crash => "crash",
            Category::Hang => "hang",
            Category::Escaped => "escaped",
            Category::NotInjected => "not-injected",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialEntry {
    pub trial: usize,
    pub category: Category,
    /// Pass to `tmr --inject` (with the same command) to replay this trial.
    pub spec: String,
    pub replica: usize,
    pub injected: Option<Injected>,
    pub error: Option<String>,
    pub faulty_outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryCount {
    pub category: Category,
    pub count: usize,
    /// Share of injected trials, with its Wilson interval (not-injected trials: share of all trials).
    pub rate: f64,
    pub interval: Interval,
}

#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub schema: &'static str,
    pub version: u32,
    pub command: Vec<String>,
    pub replicas: usize,
    pub seed: u64,
    pub trials_planned: usize,
    pub trials: usize,
    pub injected: usize,
    pub golden: GoldenEntry,
    pub table: Vec<CategoryCount>,
    /// Share of injected faults that changed the faulty replica's own result (crash, hang or wrong
    /// output): what an unprotected, single-replica run would have suffered.
    pub unprotected_failure_rate: f64,
    pub unprotected_interval: Interval,
    /// Of those, wrong output with a normal exit: silent data corruption in an unprotected run.
    pub unprotected_sdc_rate: f64,
    pub escaped: usize,
    pub trial_log: Vec<TrialEntry>,
    pub stopped: String,
    pub wall_s: f64,
    pub exit_code: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoldenEntry {
    pub outcome: Outcome,
    pub stdout_bytes: u64,
    pub stdout_xxh128: String,
    pub wall_ms: f64,
}

/// `1 trial`, `3 trials`.
pub fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Said before the trials run and in the summary: a failing golden run is a dubious reference.
pub fn golden_failed_warning(outcome: &crate::fingerprint::Outcome) -> String {
    format!(
        "warning: the golden run failed ({}): every trial is judged against a failing result",
        outcome.describe()
    )
}

pub fn render(r: &CampaignReport) -> String {
    let pct = |p: f64| format!("{:.1}%", p * 100.0);
    let mut out = format!(
        "tmr campaign: {} of `{}` with {} replicas, one fault each (seed {}), in {:.1}s{}\n",
        plural(r.trials, "trial"),
        r.command.join(" "),
        r.replicas,
        r.seed,
        r.wall_s,
        if r.stopped == "completed" { String::new() } else { format!(" (stopped: {})", r.stopped) }
    );
    out.push_str(&format!(
        "golden run: {}, stdout {} B {}, {:.1} ms\n\n",
        r.golden.outcome.describe(),
        r.golden.stdout_bytes,
        &r.golden.stdout_xxh128[..8],
        r.golden.wall_ms
    ));
    if !r.golden.outcome.is_success() {
        out.push_str(&format!("{}\n\n", golden_failed_warning(&r.golden.outcome)));
    }
    out.push_str(&format!("  {:<20} {:>7} {:>8}   95% interval\n", "outcome", "trials", "share"));
    for c in &r.table {
        out.push_str(&format!(
            "  {:<20} {:>7} {:>8}   [{}, {}]\n",
            c.category.name(),
            c.count,
            pct(c.rate),
            pct(c.interval.lo),
            pct(c.interval.hi)
        ));
    }
    if r.injected == 0 {
        // Nothing was measured: claiming "none escaped" would credit the vote with faults never made.
        out.push_str(&format!(
            "\nno fault was injected in {}: nothing was measured about fault tolerance \
             (the trial log of --format json says why for each).\n",
            plural(r.trials, "trial")
        ));
        return out;
    }
    out.push_str(&format!(
        "\nwithout TMR, {} of the {} injected faults ({} [{}, {}]) would have crashed, hung or corrupted a \
         single run; {} would have been silent data corruption.\n",
        (r.unprotected_failure_rate * r.injected as f64).round(),
        r.injected,
        pct(r.unprotected_failure_rate),
        pct(r.unprotected_interval.lo),
        pct(r.unprotected_interval.hi),
        pct(r.unprotected_sdc_rate)
    ));
    out.push_str(&if r.escaped == 0 {
        format!("with {}-way voting, none escaped: every fault was masked or corrected.\n", r.replicas)
    } else {
        format!(
            "{} fault(s) ESCAPED the vote: the delivered result differed from golden (see --format json).\n",
            r.escaped
        )
    });
    out
}
