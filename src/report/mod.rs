//! The run report: one serialisable record of what ran, what each replica produced, how the vote went and
//! which exit code tmr chose; hunt's (`hunt`) and campaign's (`campaign`) reports beside it. Renderers
//! (`human`, `junit`, `github`, JSON) only read them, so they are tested on hand-made reports without
//! running anything; the `reporters` call them when the loops' events say a report is final. Also where reports go: files replaced only once a run has ended
//! ([`create_file`]), and tmr's own lines on stderr, which never fail a run ([`say`]).

pub mod campaign;
pub mod github;
pub mod human;
pub mod hunt;
pub mod junit;

use serde::Serialize;

use crate::classify::Class;
use crate::diff::LineDiff;
use crate::fingerprint::{Outcome, StreamSummary};
use crate::memvote::{MemSnapshot, MemVerdict, NoisePage, PageDivergence};
pub use crate::replica::hub::{DeliveredEntry, OutputReport};
use crate::stats::Interval;
pub use crate::text::{one_line, say};
use crate::units::Timeout;

pub const SCHEMA: &str = "tmr-report";
/// 2: added `classification`. 3: the class says why (`none`, `transient`, `nondeterministic`,
/// `deterministic`) and `vote.result` says what (`unanimous`, `majority`, `no-majority`); rerun time
/// budget, observations behind the bound, `delivered`. 4: stream digests are XXH128 (`xxh128`, was `blake3`:
/// see `crate::digest`).
pub const VERSION: u32 = 4;

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub schema: &'static str,
    pub version: u32,
    pub command: Vec<String>,
    pub replicas: usize,
    pub sequential: bool,
    pub compare: Vec<&'static str>,
    pub masks: Vec<String>,
    pub timeout: Option<String>,
    pub runs: Vec<RunEntry>,
    pub vote: VoteEntry,
    pub dissents: Vec<Dissent>,
    /// Processes left behind by replicas (grandchildren) that tmr killed.
    pub leaked_processes: usize,
    pub interrupted_by: Option<String>,
    /// Replicas still running when the stop signal came (they were sent it).
    pub stopped_replicas: usize,
    /// The voted output was delivered (before reruns, or not at all when interrupted first).
    pub delivered: bool,
    /// How the voted round's output reached the user.
    pub output: OutputReport,
    pub classification: ClassReport,
    /// Memory voting (`--mem`), when on.
    pub memory: Option<MemReport>,
    /// The fault injected with `--inject`.
    pub injection: Option<InjectionReport>,
    /// `--launcher slurm`: the allocation, each replica's node, node failures, a suspect node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<crate::launch::SlurmReport>,
    pub exit_code: i32,
    /// Wall time of the whole run: the voted round, the reruns and tmr's own work (JUnit's `time`).
    pub wall_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InjectionReport {
    /// The spec with every choice tmr made explicit: pass it to --inject to replay the trial.
    pub spec: String,
    pub replica: usize,
    pub injected: Option<crate::inject::Injected>,
    pub error: Option<String>,
    /// The faulty replica ended up in the majority: the fault did not change what is compared, or
    /// (with `recovered`) its recovery undid the fault.
    pub faulty_replica_agreed: bool,
    /// The faulty replica was rolled back or repaired in place after the fault (`--checkpoint`).
    pub recovered: bool,
}

/// How many noise pages are listed in the report (all are counted).
pub const NOISE_LISTED: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct MemReport {
    pub determinization: String,
    pub pages_compared: usize,
    /// Pages where a strict majority agreed and these replicas differed.
    pub divergent: Vec<PageDivergence>,
    /// Pages with no majority: blind spots of the memory vote.
    pub noise_pages: usize,
    pub noise: Vec<NoisePage>,
    /// Replicas whose clock or /dev/urandom questions differed from the majority's (input replication).
    pub sequence_divergent: Vec<crate::memvote::SequenceDivergence>,
    pub replicas: Vec<MemReplicaEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemReplicaEntry {
    pub replica: usize,
    pub regions: Vec<RegionEntry>,
    pub threads: usize,
    pub notes: Vec<String>,
    pub unavailable: Option<String>,
    pub bytes: u64,
    /// Time the monitor spent reading and hashing this replica's memory.
    pub cost_ms: f64,
    /// Input replication: questions asked per kind and how they were answered.
    pub inputs: Option<crate::memvote::InputStats>,
    /// `--checkpoint`: epochs taken and rollbacks done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<crate::epoch::CheckpointLog>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionEntry {
    pub name: String,
    pub start: String,
    pub end: String,
    pub pages: usize,
    /// blake3 over the region's page digests.
    pub blake3: String,
}

/// A run's class: the classifier's, or `interrupted` when tmr's own stop signal (Ctrl-C, SIGTERM, a
/// closed stdout) ended it. Runs cut short by that signal say nothing about the command, so an
/// interrupted run makes no flaky or deterministic claim. Kept apart from `classify::Class`, which
/// `tmr test` shares, because only a whole run is interrupted, never one test's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunClass {
    None,
    Transient,
    Nondeterministic,
    Deterministic,
    Interrupted,
}

impl RunClass {
    pub fn name(self) -> &'static str {
        match self {
            RunClass::Interrupted => "interrupted",
            RunClass::None => Class::None.name(),
            RunClass::Transient => Class::Transient.name(),
            RunClass::Nondeterministic => Class::Nondeterministic.name(),
            RunClass::Deterministic => Class::Deterministic.name(),
        }
    }
}

impl From<Class> for RunClass {
    fn from(c: Class) -> Self {
        match c {
            Class::None => RunClass::None,
            Class::Transient => RunClass::Transient,
            Class::Nondeterministic => RunClass::Nondeterministic,
            Class::Deterministic => RunClass::Deterministic,
        }
    }
}

/// The class of the run and the rerun evidence behind it.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    pub class: RunClass,
    pub reruns: usize,
    pub budget: usize,
    pub confidence: f64,
    pub rerun_mode: &'static str,
    /// Reruns stopped before the budget because the class was settled.
    pub settled_early: bool,
    /// No odd outcome came back: its rate is below this bound at `confidence` (rule of three) ...
    pub odd_rate_bound: Option<f64>,
    /// ... over this many runs (a unanimous failure counts the voted round's replicas too).
    pub observations: usize,
    /// The command could not be executed: classified at once, no reruns spent.
    pub exec_failed: bool,
    /// The time budget for reruns and the time they took.
    pub time_budget_ms: f64,
    pub spent_ms: f64,
    /// Why reruns did not run or stopped short, when the budgets are not the reason.
    pub note: Option<String>,
    /// No majority, and every run differed from every other.
    pub unstable: bool,
    /// No majority in the voted round, but this outcome (index into `outcomes`) won the reruns.
    pub emerged: Option<usize>,
    /// Every distinct outcome: the voted one first.
    pub outcomes: Vec<OutcomeEntry>,
    pub rerun_runs: Vec<RunEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutcomeEntry {
    pub outcome: Outcome,
    pub stdout: StreamEntry,
    pub stderr: StreamEntry,
    /// Replicas of the voted round with this outcome.
    pub initial: usize,
    /// Reruns with this outcome, their share and its Wilson interval.
    pub reruns: usize,
    pub rate: Option<f64>,
    pub interval: Option<Interval>,
    pub majority: bool,
}

impl OutcomeEntry {
    pub fn describe(&self) -> String {
        format!("{}, stdout {} B {}", self.outcome.describe(), self.stdout.bytes, &self.stdout.xxh128[..8])
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    pub replica: usize,
    pub round: usize,
    pub pid: i32,
    pub outcome: Outcome,
    pub stdout: StreamEntry,
    pub stderr: StreamEntry,
    pub wall_ms: f64,
    pub user_ms: f64,
    pub sys_ms: f64,
    pub max_rss_kib: u64,
    /// Its output pipes stayed open after it exited (a grandchild held them); tmr killed its group.
    pub leaked: bool,
    /// The Slurm node it ran on (`--launcher slurm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// It was run again because this node failed under its first attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescheduled_from: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamEntry {
    pub bytes: u64,
    /// XXH128 of the compared bytes (after masks), as `xxhsum -H2` prints it.
    pub xxh128: String,
}

impl From<StreamSummary> for StreamEntry {
    fn from(s: StreamSummary) -> Self {
        StreamEntry { bytes: s.len, xxh128: s.hex() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VoteEntry {
    /// What came out: `unanimous`, `majority` or `no-majority`.
    pub result: &'static str,
    pub unanimous: bool,
    /// Replicas of the strict majority, if any.
    pub majority: Option<Vec<usize>>,
    /// The replica whose output was delivered.
    pub winner: Option<usize>,
    /// Every group of agreeing replicas, largest first.
    pub groups: Vec<Vec<usize>>,
}

/// A replica outside the majority (or, with no majority, any replica but the first), compared with
/// `against`: the delivered replica, or replica 0 when nothing was delivered.
#[derive(Debug, Clone, Serialize)]
pub struct Dissent {
    pub replica: usize,
    pub against: usize,
    pub fields: Vec<&'static str>,
    pub stdout_diff: Option<LineDiff>,
    pub stderr_diff: Option<LineDiff>,
}

impl MemReport {
    pub fn new(
        determinization: String,
        verdict: &MemVerdict,
        snaps: &[(usize, Option<&MemSnapshot>)],
    ) -> Self {
        let replicas = snaps
            .iter()
            .map(|(replica, snap)| {
                let snap = snap.cloned().unwrap_or_else(|| MemSnapshot {
                    unavailable: Some("the monitor wrote no snapshot".into()),
                    ..Default::default()
                });
                MemReplicaEntry {
                    replica: *replica,
                    regions: snap
                        .regions
                        .iter()
                        .map(|r| {
                            let mut h = blake3::Hasher::new();
                            h.update(r.digests.as_bytes());
                            RegionEntry {
                                name: r.name.clone(),
                                start: format!("{:#x}", r.start),
                                end: format!("{:#x}", r.end),
                                pages: r.page_count(),
                                blake3: h.finalize().to_hex().to_string(),
                            }
                        })
                        .collect(),
                    threads: snap.threads,
                    notes: snap.notes,
                    unavailable: snap.unavailable,
                    bytes: snap.bytes,
                    cost_ms: snap.cost_ms,
                    inputs: snap.inputs,
                    checkpoints: snap.checkpoints,
                }
            })
            .collect();
        MemReport {
            determinization,
            pages_compared: verdict.pages_compared,
            divergent: verdict.divergent.clone(),
            noise_pages: verdict.noise.len(),
            noise: verdict.noise.iter().take(NOISE_LISTED).cloned().collect(),
            sequence_divergent: verdict.sequences.clone(),
            replicas,
        }
    }
}

pub fn timeout_text(t: &Timeout) -> String {
    match t {
        Timeout::Absolute(d) => format!("{}s", d.as_secs_f64()),
        Timeout::Relative(f) => format!("{f}x"),
    }
}

/// A report file (`-o`, `--junit`), checked before anything runs so that a typo in its path wastes no
/// run (exit 125), and replaced only once the run has ended: a run that fails to start (a missing
/// command) or is cut short leaves an existing file as it was, and no reader ever sees half a report.
/// The report is written to a temporary file beside the target and renamed over it (`persist`). A
/// target that is not a regular file (`/dev/stdout`, a FIFO) is written in place instead.
pub struct ReportFile {
    target: std::path::PathBuf,
    file: Staged,
}

enum Staged {
    Temp(tempfile::NamedTempFile),
    /// Not a regular file: written as it is.
    Direct(std::fs::File),
    /// A writable report in a directory where tmr cannot create a file: overwritten from its start
    /// (its old contents stay until the report is written), then cut to the new report's length.
    InPlace(std::fs::File),
}

impl ReportFile {
    /// The file to write the report to; call [`ReportFile::persist`] once it is written.
    pub fn file(&mut self) -> &mut std::fs::File {
        match &mut self.file {
            Staged::Temp(t) => t.as_file_mut(),
            Staged::Direct(f) | Staged::InPlace(f) => f,
        }
    }

    /// Put the written report in place of the target.
    pub fn persist(self) -> anyhow::Result<()> {
        match self.file {
            Staged::Temp(t) => {
                t.persist(&self.target).map(drop).map_err(|e| cannot_write(&self.target, &e.error))
            }
            Staged::Direct(_) => Ok(()),
            Staged::InPlace(mut f) => {
                use std::io::Seek;
                f.stream_position().and_then(|end| f.set_len(end)).map_err(|e| cannot_write(&self.target, &e))
            }
        }
    }
}

fn cannot_write(path: &std::path::Path, e: &dyn std::fmt::Display) -> anyhow::Error {
    crate::exit::ExitError {
        code: crate::exit::TMR_ERROR,
        message: format!("tmr: cannot write {}: {e}", path.display()),
    }
    .into()
}

/// `-` as a report path: a usage error. tmr's stdout carries the command's output, so a report there
/// would be mixed into it; and a file literally named `-` is never what was meant.
fn refuse_dash(path: &std::path::Path) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        return Err(crate::exit::ExitError {
            code: crate::exit::TMR_ERROR,
            message:
                "tmr: a report cannot go to '-': tmr's stdout carries the command's output (name a file, \
                      or /dev/stderr)"
                    .into(),
        }
        .into());
    }
    Ok(())
}

/// The file `path` names, for telling two report paths apart: symlinks and `..` resolved as far as
/// the file or its directory exists.
fn identity(path: &std::path::Path) -> std::path::PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    match (std::fs::canonicalize(dir), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => path.to_path_buf(),
    }
}

/// Two reports named the same file (`-o X --junit X`, or either the GitHub summary's): one would be lost
/// under the other, so it is a usage error. `named` pairs each path with the option that gave it.
pub fn check_distinct(named: &[(&str, &std::path::Path)]) -> anyhow::Result<()> {
    for (i, (a, pa)) in named.iter().enumerate() {
        for (b, pb) in &named[..i] {
            if identity(pa) == identity(pb) {
                return Err(crate::exit::ExitError {
                    code: crate::exit::TMR_ERROR,
                    message: format!(
                        "tmr: {b} and {a} name the same file ({}): one report would be lost; name two files",
                        pa.display()
                    ),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Check that `path` can be written, without touching what it holds now (see [`ReportFile`]).
pub fn create_file(path: &std::path::Path) -> anyhow::Result<ReportFile> {
    refuse_dash(path)?;
    use std::os::unix::fs::PermissionsExt;
    // A symlink is followed, as File::create would: its target is what gets replaced.
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let existing = std::fs::metadata(&target).ok();
    let mut writable = None;
    if let Some(meta) = &existing {
        if meta.is_dir() {
            return Err(cannot_write(path, &"it is a directory"));
        }
        // Writable as it is (no truncation): a read-only report must stay read-only, not be renamed over.
        let direct =
            std::fs::OpenOptions::new().write(true).open(&target).map_err(|e| cannot_write(path, &e))?;
        if !meta.is_file() {
            return Ok(ReportFile { target, file: Staged::Direct(direct) });
        }
        writable = Some(direct);
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // The new file gets the old one's mode, or what File::create would have given it (0666 less umask).
    let mode = existing.as_ref().map_or(0o666, |m| m.permissions().mode() & 0o7777);
    let temp = match tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(&dir)
    {
        Ok(t) => t,
        Err(e) => match writable {
            Some(f) => return Ok(ReportFile { target, file: Staged::InPlace(f) }),
            // tempfile names its own random file in the message: the user asked for `path`.
            None => return Err(cannot_write(path, &e.to_string().split(" at path ").next().unwrap_or(""))),
        },
    };
    if existing.is_some() {
        // The umask applied at creation: an existing file's mode is restored exactly.
        let _ = temp.as_file().set_permissions(std::fs::Permissions::from_mode(mode));
    }
    Ok(ReportFile { target, file: Staged::Temp(temp) })
}

/// Write a finished report to its file and put the file in place, or write it to stderr (where a closed
/// or full stderr is not an error).
pub fn emit(file: Option<ReportFile>, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    match file {
        Some(mut f) => {
            f.file().write_all(text.as_bytes()).context("writing the report")?;
            f.persist()
        }
        None => {
            let _ = std::io::stderr().write_all(text.as_bytes());
            Ok(())
        }
    }
}

/// A live progress line on a terminal only: nothing is drawn into a pipe or a CI log.
pub fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(template).expect("a valid template").with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&rate_text(state.per_sec()));
        },
    );
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A rate per second in two or three significant digits (`19/s`, `2.4/s`, `0.35/s`): indicatif's
/// `{per_sec}` prints four decimals (`19.5327/s`), which only flicker.
pub fn rate_text(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return "0/s".into();
    }
    let digits = if per_sec >= 100.0 {
        0
    } else {
        // Three significant digits below 100: 19.5, 2.44, 0.353.
        (2 - per_sec.log10().floor() as i32).clamp(0, 6) as usize
    };
    let mut text = format!("{per_sec:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    text + "/s"
}

pub fn to_json(report: &RunReport) -> String {
    serde_json::to_string_pretty(report).expect("a report always serialises") + "\n"
}

/// A small hand-made report for the renderers' tests: three replicas of `x`, unanimous, exit 0.
#[cfg(test)]
pub(crate) fn sample_report(command: &[&str]) -> RunReport {
    let run = |replica| RunEntry {
        replica,
        round: 0,
        pid: 100,
        outcome: crate::fingerprint::Outcome::Exited { code: 0 },
        stdout: StreamEntry { bytes: 0, xxh128: "0".repeat(32) },
        stderr: StreamEntry { bytes: 0, xxh128: "0".repeat(32) },
        wall_ms: 10.0,
        user_ms: 5.0,
        sys_ms: 1.0,
        max_rss_kib: 2048,
        leaked: false,
        node: None,
        rescheduled_from: None,
    };
    RunReport {
        schema: SCHEMA,
        version: VERSION,
        command: command.iter().map(|a| a.to_string()).collect(),
        replicas: 3,
        sequential: false,
        compare: vec!["exit", "stdout"],
        masks: vec![],
        timeout: None,
        runs: (0..3).map(run).collect(),
        vote: VoteEntry {
            result: "unanimous",
            unanimous: true,
            majority: Some(vec![0, 1, 2]),
            winner: Some(0),
            groups: vec![vec![0, 1, 2]],
        },
        dissents: vec![],
        leaked_processes: 0,
        interrupted_by: None,
        stopped_replicas: 0,
        delivered: true,
        output: OutputReport::spooled(),
        classification: ClassReport {
            class: RunClass::None,
            reruns: 0,
            budget: 0,
            confidence: 0.95,
            rerun_mode: "sequential",
            settled_early: false,
            odd_rate_bound: None,
            observations: 0,
            exec_failed: false,
            time_budget_ms: 0.0,
            spent_ms: 0.0,
            note: None,
            unstable: false,
            emerged: None,
            outcomes: vec![],
            rerun_runs: vec![],
        },
        memory: None,
        injection: None,
        slurm: None,
        exit_code: 0,
        wall_ms: 10.0,
    }
}
