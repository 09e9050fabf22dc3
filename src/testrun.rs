//! `tmr test` (issue 11), the process half: run N replicas of a test suite in parallel, parse each
//! replica's per-test results (`suite::Runner::parse`), vote per test (`suite::vote`), then rerun ONLY
//! the failing and disagreeing tests, each alone through the runner's own filter, paced per test by
//! `classify::Classifier` and `next_round` under one count budget per test and one time budget for all.
//! The whole suite is never rerun to classify one test. The report (`suite::report`) is then rendered.
//!
//! What the user sees while it runs: never the runners' output (three replicas' output interleaves
//! into noise, and the summary shows what matters). On a terminal, one progress line (replicas done,
//! reruns done and in flight); elsewhere, one line per finished phase; nothing with `-q`.
//!
//! Reruns of `cargo test` go through cargo with the user's cargo arguments (never the test binary alone:
//! tests read the environment cargo gives them). A rerun that left no section for its test (`--nocapture`,
//! a crash) contributes its last output instead. A stop signal (Ctrl-C), forwarded to the runners, ends
//! the run: the runs it cut are not evidence (their unfinished tests are dropped, the round of reruns
//! in flight is discarded), and the report says what had finished, with exit 128+N.
//!
//! A hung test: `--timeout` kills the replica. The test it was in is named when the format says which
//! tests started: pytest's `-v` console (tmr adds `-v`), go's `-json`, libtest with `--test-threads=1`
//! (with parallel threads libtest names a test only after 60 s), TAP never (a TAP line comes when a
//! test ends: the summary then says which test was the last to end).

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::classify::{next_round, Class, Classifier, Policy, TimeBudget};
use crate::config::Timeout;
use crate::exit::{self, ExitError};
use crate::fingerprint::Outcome;
use crate::replica::{BatchOpts, ChildSetup, Control, Harness, Job, Launcher, RunRecord};
use crate::stats::wilson;
use crate::suite::report::{self, Category, Counts, FailureEntry, ReplicaEntry, TestEntry, TestReport};
use crate::suite::vote::{vote_suite, SuiteVote};
use crate::suite::{Runner, SuiteRun, TestId, TestOutcome};

/// `tmr test`'s validated options (built by `cli.rs`).
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub command: Vec<OsString>,
    pub runner: Option<Runner>,
    /// `--junit-in PATTERN`: where each replica's runner writes JUnit XML, `{r}` for the replica.
    pub junit_in: Option<String>,
    pub replicas: usize,
    pub timeout: Option<Timeout>,
    /// Most reruns per test.
    pub reruns: usize,
    /// `--reruns` was given: a flaky test is rerun that many times (within the time budget) to measure
    /// its failure rate, instead of stopping once its class is settled.
    pub measure: bool,
    pub time_budget: TimeBudget,
    pub confidence: f64,
    pub fail_on: Vec<Class>,
    pub junit: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub github: bool,
    pub keep: Option<PathBuf>,
    pub quiet: bool,
    /// `--launcher slurm`: each replica and each rerun as a job step on a node of the allocation.
    pub launch: crate::launch::LaunchConfig,
}

/// One replica's (or rerun's) results and what was kept of its raw output.
struct Parsed {
    run: SuiteRun,
    outcome: Outcome,
    wall: Duration,
    /// pytest's rootdir, from its console header: node ids are relative to it.
    root: Option<String>,
    /// What the runner printed outside its parsed sections, stdout then stderr without cargo's own
    /// status lines: a single-test rerun's only trace of its test when the parser found no section
    /// (`--nocapture` sends the panic message to stderr).
    loose: Vec<u8>,
}

/// The start of the note when no replica reported a test.
const NO_TESTS: &str = "no replica reported any test";

/// Per test: its classifier, and what its reruns brought.
struct Track {
    id: TestId,
    classifier: Classifier<TestOutcome>,
    argv: Option<Vec<OsString>>,
    note: Option<String>,
    reruns: usize,
    rerun_failures: usize,
    failures: Vec<FailureEntry>,
    /// Failing reruns beyond the first [`KEPT_RERUN_OUTPUTS`], written straight to `--keep` (run,
    /// outcome, file): the directory has them all, memory only the first few.
    spilled: Vec<(String, String, String)>,
    walls: Vec<f64>,
}

/// At most this many failing reruns' outputs per test are held for the summary, JSON and JUnit (the first
/// ones say what they say); `--keep` gets every one, the further ones written as they come.
pub const KEPT_RERUN_OUTPUTS: usize = 5;

pub fn execute(cfg: &TestConfig) -> Result<i32> {
    let junit_file = cfg.junit.as_deref().map(crate::report::create_file).transpose()?;
    let json_file = cfg.json.as_deref().map(crate::report::create_file).transpose()?;
    if let Some(dir) = &cfg.keep {
        prepare_keep_dir(dir)?;
    }
    // A missing or non-executable command is 127 or 126, as in every mode, before any guess at its runner.
    if let Some(first) = cfg.command.first() {
        crate::resolve::resolve(first)?;
    }
    let runner = choose_runner(cfg)?;
    // Private (0700): the runners' result files and nothing else.
    let work =
        tempfile::Builder::new().prefix("tmr-test.").tempdir().context("creating a temporary directory")?;
    // pytest expands environment variables in --junitxml's path: one argv gives every job its own file.
    let result_path = match runner {
        Runner::Pytest => Some(work.path().join("round-${TMR_ROUND}-replica-${TMR_REPLICA}.xml")),
        _ => None,
    };
    let argv = runner.prepare(&cfg.command, result_path.as_deref())?;
    let path = crate::resolve::resolve(&argv[0])?;
    let n = cfg.replicas;
    let mut launcher = Launcher::new(path.clone().into_os_string(), &argv)?;
    // --launcher slurm: the placement stays with the harness, so reruns (set_command) run there too.
    let _cluster = crate::launch::attach(&cfg.launch, &mut launcher, n)?;
    let mut harness = Harness::new(launcher)?;
    let opts = BatchOpts {
        parallel: n,
        timeout: cfg.timeout,
        stdout_masks: Vec::new(),
        stderr_masks: Vec::new(),
        setup: ChildSetup::default(),
        mem: false,
        reference_wall: None,
        keep: Some(u64::MAX),
    };
    let progress =
        crate::report::progress_bar(n as u64, "tmr test: {pos}/{len} replicas done · {msg} {elapsed}");
    progress.set_message("running the suite");
    let began = Instant::now();
    let since = Stale::take(cfg, n);
    let mut records: Vec<RunRecord> = Vec::new();
    let mut swept = harness.run_jobs(
        &mut (0..n).map(|replica| Job { replica, replicas: n, round: 0 }),
        &opts,
        &mut |rec| {
            progress.inc(1);
            records.push(rec);
            Ok(Control::Continue)
        },
    )?;
    records.sort_by_key(|r| r.job.replica);
    let voted_wall = began.elapsed();
    let mut parsed = Vec::new();
    // pytest: the user's own --junitxml (overridden by tmr's per-replica path) gets a replica's XML.
    let user_xml =
        (runner == Runner::Pytest).then(|| crate::suite::pytest::user_junitxml(&cfg.command)).flatten();
    let mut xml_files: Vec<Option<Vec<u8>>> = Vec::new();
    for rec in &mut records {
        let file = result_file(runner, cfg, result_path.as_deref(), rec.job, &since)?;
        xml_files.push(file.clone().filter(|_| user_xml.is_some()));
        parsed.push(parse_record(runner, rec, file).with_context(|| format!("replica {}", rec.job.replica))?);
    }
    harness.check_stop();
    if harness.interrupted.is_some() {
        // Runs cut by tmr's own forwarding of a stop signal are not evidence against the tests they
        // were in: those are dropped, what finished before counts, and nothing is rerun.
        // Their last words are the runner's reaction to the signal (a traceback): not worth showing.
        for p in parsed.iter_mut().filter(|p| !p.run.complete) {
            p.run.forget_interrupted();
            p.run.stray = Default::default();
        }
    }
    let mut notes = Vec::new();
    if let Some(user) = &user_xml {
        // The first replica whose session ended, else the first that wrote any XML.
        let complete = |r: &usize| parsed.get(*r).is_some_and(|p: &Parsed| p.run.complete);
        let has = |r: &usize| xml_files[*r].is_some();
        let chosen =
            (0..xml_files.len()).find(|r| has(r) && complete(r)).or_else(|| (0..xml_files.len()).find(has));
        notes.push(match chosen.map(|r| (r, xml_files[r].as_deref().unwrap_or_default())) {
            Some((r, bytes)) => match std::fs::write(user, bytes) {
                Ok(()) => format!(
                    "your --junitxml {}: replica {r}'s JUnit XML (tmr gives each replica its own file)",
                    user.display()
                ),
                Err(e) => format!("your --junitxml {} could not be written: {e}", user.display()),
            },
            None => format!("your --junitxml {}: not written, no replica wrote JUnit XML", user.display()),
        });
    }
    let runs: Vec<SuiteRun> = parsed.iter().map(|p| p.run.clone()).collect();
    let vote = vote_suite(&runs);
    phase(
        cfg,
        &progress,
        &format!(
            "voted round: {n} replicas in {:.1}s, {} tests, {} to rerun",
            voted_wall.as_secs_f64(),
            vote.tests.len(),
            vote.to_rerun().len()
        ),
    );

    // Reruns: every test that needs one gets a classifier; rounds go round-robin over the tests still
    // unsettled, so one slow test cannot eat the whole time budget before the others had a round.
    let policy = Policy { budget: cfg.reruns, confidence: cfg.confidence };
    let rootdir = parsed.iter().find_map(|p| p.root.clone());
    let mut tracks: Vec<Track> = vote
        .to_rerun()
        .into_iter()
        .map(|id| new_track(runner, cfg, &vote, id, policy, rootdir.as_deref(), result_path.as_deref()))
        .collect();
    // Tests the replicas disagreed on first: their reruns decide what they count as (flaky, transient,
    // failed), while a unanimous failure fails the suite whatever its reruns say; when the time budget
    // is short (a cargo rerun costs cargo's start-up), it goes to the reruns that matter most.
    tracks.sort_by_key(|t| vote.get(&t.id).is_some_and(|tv| tv.unanimous()));
    let time_budget = cfg.time_budget.resolve(voted_wall);
    let median_wall =
        crate::stats::median(&mut parsed.iter().map(|p| p.wall.as_secs_f64()).collect::<Vec<_>>());
    let reference = median_wall.map_or(voted_wall, Duration::from_secs_f64);
    let rerun_opts = BatchOpts {
        reference_wall: median_wall,
        timeout: crate::rerun::rerun_timeout(cfg.timeout, reference),
        ..opts
    };
    let rerun_began = Instant::now();
    let mut round = 1;
    let mut total_reruns = 0;
    if !tracks.is_empty() {
        progress.set_length(n as u64);
        progress.set_message(format!("rerunning {} test(s) alone", tracks.len()));
    }
    'outer: loop {
        let mut any = false;
        for t in tracks.iter_mut() {
            if harness.interrupted.is_some() {
                break 'outer;
            }
            let Some(argv) = t.argv.clone() else { continue };
            // A flaky test is known as soon as its odd outcome comes back, and by default its reruns stop
            // there (the cost of a suite with one flaky test stays that test's few reruns). With
            // `--reruns` given, it is rerun on to measure its failure rate: a rate from the runs that
            // merely settled its class is biased by the stopping rule.
            let measuring = cfg.measure
                && t.reruns < cfg.reruns
                && t.classifier.verdict().class == Class::Nondeterministic;
            if !t.classifier.wants_rerun() && !measuring {
                continue;
            }
            let spent = rerun_began.elapsed();
            let predicted =
                Duration::from_secs_f64(crate::stats::median(&mut t.walls.clone()).unwrap_or(0.0));
            let size = next_round(n, cfg.reruns - t.reruns, time_budget, spent, predicted);
            if size == 0 {
                if t.reruns < cfg.reruns {
                    t.note.get_or_insert_with(|| {
                        format!("rerun {} of {} times: the time budget ran out", t.reruns, cfg.reruns)
                    });
                }
                continue;
            }
            any = true;
            harness.set_command(path_for(&argv)?, &argv)?;
            let since = Stale::take(cfg, n);
            let round_began = Instant::now();
            let mut recs = Vec::new();
            progress.set_message(format!("{total_reruns} reruns done, {size} in flight: {}", t.id));
            swept += harness.run_jobs(
                &mut (0..size).map(|replica| Job { replica, replicas: n, round }),
                &rerun_opts,
                &mut |rec| {
                    recs.push(rec);
                    Ok(Control::Continue)
                },
            )?;
            harness.check_stop();
            if harness.interrupted.is_some() {
                // This round was cut by the stop signal tmr forwarded: its runs are not evidence.
                break 'outer;
            }
            t.walls.push(round_began.elapsed().as_secs_f64());
            recs.sort_by_key(|r| r.job.replica);
            for mut rec in recs {
                let file = result_file(runner, cfg, result_path.as_deref(), rec.job, &since)?;
                let label = format!("rerun {}", t.reruns + 1);
                let p = match parse_record(runner, &mut rec, file) {
                    Ok(p) => p,
                    Err(e) => {
                        t.note = Some(format!("{label} of {}: {e:#}", t.id));
                        t.argv = None;
                        break;
                    }
                };
                let Some((outcome, section)) = rerun_outcome(&p, &t.id) else {
                    t.note = Some(format!(
                        "{label} did not report {} ({}): the runner's filter matched nothing, so it is not rerun",
                        t.id,
                        p.outcome.describe()
                    ));
                    t.argv = None;
                    break;
                };
                t.classifier.record(outcome);
                t.reruns += 1;
                total_reruns += 1;
                if !outcome.is_good() {
                    t.rerun_failures += 1;
                    let held = t.failures.iter().filter(|f| f.run.starts_with("rerun")).count();
                    if held < KEPT_RERUN_OUTPUTS || cfg.keep.is_some() {
                        let out = if section.is_empty() { no_section(&p) } else { section };
                        let entry = FailureEntry {
                            run: label,
                            outcome: outcome.to_string(),
                            output: String::from_utf8_lossy(&out.bytes).into_owned(),
                            cut: out.cut,
                        };
                        match &cfg.keep {
                            Some(dir) if held >= KEPT_RERUN_OUTPUTS => {
                                let k = vote.tests.iter().position(|tv| tv.name == t.id).unwrap_or(0);
                                let name = kept_name(k, &t.id.to_string(), &entry.run);
                                std::fs::write(dir.join(&name), &entry.output).with_context(|| {
                                    format!("writing --keep {}", dir.join(&name).display())
                                })?;
                                t.spilled.push((entry.run, entry.outcome, name));
                            }
                            _ => t.failures.push(entry),
                        }
                    }
                }
            }
            round += 1;
        }
        if !any {
            break;
        }
    }
    let rerun_wall = rerun_began.elapsed();
    progress.finish_and_clear();
    if !tracks.is_empty() {
        phase(
            cfg,
            &progress,
            &format!(
                "reruns: {total_reruns} of {} test(s) alone in {:.1}s",
                tracks.len(),
                rerun_wall.as_secs_f64()
            ),
        );
    }
    harness.check_stop();
    if let Some(sig) = harness.interrupted {
        notes.push(format!("stopped by {}: the results are partial", crate::fingerprint::signal_name(sig)));
    }
    if swept > 0 {
        notes.push(format!("killed {swept} leftover process(es) the runners left behind"));
    }
    if let Some(p) = parsed.iter().find(|p| {
        p.outcome == Outcome::TimedOut && !p.run.results.iter().any(|r| r.outcome == TestOutcome::Timeout)
    }) {
        notes.push(hang_note(runner, p.run.results.last().map(|r| r.name.to_string())));
    }

    let mut report = build_report(cfg, runner, &vote, &parsed, &tracks, voted_wall, rerun_wall, time_budget);
    report.reruns = total_reruns;
    if harness.interrupted.is_some() {
        // The runners did not finish because tmr stopped them, which the note below says.
        report.notes.retain(|n| !n.starts_with("most runners did not finish") && !n.starts_with(NO_TESTS));
        if vote.tests.is_empty() {
            // What they printed was their reaction to the signal, dropped above: nothing to point at.
            report.notes.push("no replica finished a test before tmr was stopped".into());
        }
    }
    report.notes.extend(notes);
    report.exit_code = match harness.interrupted {
        Some(sig) => exit::for_signal(sig),
        None if !vote.passed => exit::TESTS_FAILED,
        None if report.tests.iter().any(|t| cfg.fail_on.contains(&t.class)) => exit::FAILING_CLASS,
        None => 0,
    };
    if let Some(dir) = &cfg.keep {
        keep(dir, &report, &records, &tracks).with_context(|| format!("writing --keep {}", dir.display()))?;
        report.kept = Some(dir.display().to_string());
    }
    if !cfg.quiet || report.exit_code != 0 {
        crate::report::emit(None, &report::human(&report))?;
    }
    if let Some(f) = junit_file {
        crate::report::emit(Some(f), &report::junit(&report))?;
    }
    if let Some(f) = json_file {
        crate::report::emit(Some(f), &report::json(&report))?;
    }
    if cfg.github {
        let _ = std::io::stdout().write_all(report::github_annotations(&report).as_bytes());
        if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
            // A job summary is a convenience: one that cannot be written is a warning, never the exit code.
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&summary)
                .and_then(|mut f| f.write_all(report::github_summary(&report).as_bytes()));
            if let Err(e) = written {
                crate::report::say(&format!(
                    "tmr test: warning: appending to $GITHUB_STEP_SUMMARY ({}): {e}",
                    Path::new(&summary).display()
                ));
            }
        }
    }
    Ok(report.exit_code)
}

/// A line per finished phase where no progress line is drawn (a pipe, a CI log); nothing with `-q`.
fn phase(cfg: &TestConfig, progress: &indicatif::ProgressBar, text: &str) {
    if !cfg.quiet && progress.is_hidden() {
        crate::report::say(&format!("tmr test: {text}"));
    }
}

/// A replica was killed by `--timeout` and its runner named no test in flight: say what the format
/// allows.
fn hang_note(runner: Runner, last: Option<String>) -> String {
    let head = "a replica was killed by --timeout and its runner named no test in flight";
    match (runner, last) {
        // TAP prints a test's line when it ends, in order: the hung test is the next one.
        (Runner::Tap, Some(l)) => {
            format!("{head}: the hung test is the one after {l}, the last one reported")
        }
        (Runner::Libtest, _) => format!(
            "{head}: libtest names a running test only after 60 s; add `-- --test-threads=1` to have it named"
        ),
        _ => head.to_string(),
    }
}

fn choose_runner(cfg: &TestConfig) -> Result<Runner> {
    if let Some(r) = cfg.runner {
        if r == Runner::Junit && cfg.junit_in.is_none() {
            bail!(usage(
                "--runner junit needs --junit-in PATTERN (where each replica's runner writes its XML)"
            ));
        }
        return Ok(r);
    }
    if cfg.junit_in.is_some() {
        return Ok(Runner::Junit);
    }
    Runner::detect(&cfg.command).ok_or_else(|| -> anyhow::Error {
        usage(&format!(
            "cannot tell which test runner `{}` is: give --runner (libtest, pytest, tap, go) or --junit-in PATTERN",
            cfg.command.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default()
        ))
        .into()
    })
}

fn usage(message: &str) -> ExitError {
    ExitError { code: exit::TMR_ERROR, message: format!("tmr test: {message}") }
}

/// The command a rerun argv runs, resolved as the suite's was.
fn path_for(argv: &[OsString]) -> Result<OsString> {
    Ok(crate::resolve::resolve(&argv[0])?.into_os_string())
}

/// Everything a stream's spool holds (empty when nothing was written).
fn spooled(rec: &mut RunRecord, stream: usize) -> Result<Vec<u8>> {
    let cap = if stream == 0 { &mut rec.stdout } else { &mut rec.stderr };
    let len = cap.summary.len;
    let Some(file) = cap.kept() else { return Ok(Vec::new()) };
    let mut buf = vec![0u8; usize::try_from(len).context("output too large")?];
    file.read_exact_at(&mut buf, 0).context("reading a replica's spooled output")?;
    Ok(buf)
}

/// The job's result file's bytes, for runners that write one; `None` when it wrote none.
fn result_file(
    runner: Runner,
    cfg: &TestConfig,
    pytest_path: Option<&Path>,
    job: Job,
    since: &Stale,
) -> Result<Option<Vec<u8>>> {
    match runner {
        Runner::Pytest => {
            let p = pytest_path
                .expect("set for pytest")
                .to_string_lossy()
                .replace("${TMR_ROUND}", &job.round.to_string())
                .replace("${TMR_REPLICA}", &job.replica.to_string());
            match std::fs::read(&p) {
                Ok(b) => {
                    let _ = std::fs::remove_file(&p);
                    Ok(Some(b))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {p}")),
            }
        }
        Runner::Junit => {
            let pattern = cfg.junit_in.as_deref().expect("checked in choose_runner");
            let files = junit_files(pattern, job.replica, since)?;
            if files.is_empty() {
                return Ok(None);
            }
            // Several files (one per module) become one document the parser reads as one run.
            let mut parts = Vec::new();
            for f in files {
                parts.push(std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?);
            }
            Ok(Some(merge_xml(parts)))
        }
        _ => Ok(None),
    }
}

/// The `--junit-in` files that were there before a round, with their modification times: an old
/// report left from an earlier run must not count as this run's. (A time taken before the round will
/// not do: the file system stamps files with a coarser clock, which can read earlier.)
struct Stale(std::collections::HashMap<PathBuf, Option<SystemTime>>);

impl Stale {
    fn take(cfg: &TestConfig, replicas: usize) -> Stale {
        let mut seen = std::collections::HashMap::new();
        if let Some(pattern) = &cfg.junit_in {
            for r in 0..replicas {
                for (path, time) in junit_matches(pattern, r) {
                    seen.insert(path, time);
                }
            }
        }
        Stale(seen)
    }

    fn is_fresh(&self, path: &Path, time: Option<SystemTime>) -> bool {
        self.0.get(path).is_none_or(|before| *before != time)
    }
}

/// Files matching `pattern` (`{r}` the replica; `*` and `?` in the last component only), with their
/// modification times.
fn junit_matches(pattern: &str, replica: usize) -> Vec<(PathBuf, Option<SystemTime>)> {
    let pattern = pattern.replace("{r}", &replica.to_string());
    let path = Path::new(&pattern);
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => {
            (if d.as_os_str().is_empty() { Path::new(".") } else { d }, n.to_string_lossy())
        }
        _ => return Vec::new(),
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| glob_match(name.as_bytes(), e.file_name().to_string_lossy().as_bytes()))
        .map(|e| (e.path(), e.metadata().and_then(|m| m.modified()).ok()))
        .collect()
}

/// This round's files for `replica`, in a stable order.
fn junit_files(pattern: &str, replica: usize, since: &Stale) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = junit_matches(pattern, replica)
        .into_iter()
        .filter(|(p, t)| since.is_fresh(p, *t))
        .map(|(p, _)| p)
        .collect();
    out.sort();
    Ok(out)
}

fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&pat[1..], s) || (!s.is_empty() && glob_match(pat, &s[1..])),
        (Some(b'?'), Some(_)) => glob_match(&pat[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob_match(&pat[1..], &s[1..]),
        _ => false,
    }
}

/// Several JUnit documents as one `<testsuites>`: each one's XML declaration dropped.
fn merge_xml(parts: Vec<Vec<u8>>) -> Vec<u8> {
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one part");
    }
    let mut out = b"<testsuites>\n".to_vec();
    for p in parts {
        let body = match p.windows(2).position(|w| w == b"?>") {
            Some(i) if p.starts_with(b"<?xml") => p[i + 2..].to_vec(),
            _ => p,
        };
        out.extend_from_slice(&body);
        out.push(b'\n');
    }
    out.extend_from_slice(b"</testsuites>\n");
    out
}

/// Parses one finished job; a parse error names the line (the caller names the replica or rerun), and
/// keeps nothing from being lost: the raw output stays in the spool for `--keep` and the summary.
fn parse_record(runner: Runner, rec: &mut RunRecord, file: Option<Vec<u8>>) -> Result<Parsed> {
    let stdout = spooled(rec, 0)?;
    let stderr = spooled(rec, 1)?;
    let mut run = match runner.parse(&stdout, &stderr, file.as_deref()) {
        Ok(run) => run,
        Err(e) => {
            let what = if runner.reads_file() { "result file" } else { "output" };
            let mut run = SuiteRun::default();
            run.problems.push(format!("cannot read the runner's {what}: {e}"));
            run
        }
    };
    if rec.outcome == Outcome::TimedOut {
        run.mark_timed_out();
        run.problems.push("killed by --timeout".into());
    }
    if !run.complete {
        // The runner's last words: stdout's when the parser kept nothing outside a test, and stderr's
        // (cargo's `process didn't exit successfully ... SIGABRT`, a build error) unless it was parsed.
        if run.stray.is_empty() {
            run.stray.push(&tail(&stdout, 10));
        }
        if !stderr.is_empty() && !matches!(runner, Runner::GoTest | Runner::Tap) {
            run.stray.push(&tail(&stderr, 5));
        }
    }
    let root = (runner == Runner::Pytest).then(|| crate::suite::pytest::rootdir(&stdout)).flatten();
    let mut loose = run.stray.bytes.clone();
    loose.extend(crate::suite::libtest::without_cargo_status(&stderr));
    Ok(Parsed { run, outcome: rec.outcome, wall: rec.wall, root, loose })
}

/// A rerun that failed without a section of output for its test (killed, crashed, `--nocapture`): what
/// it ended with, and its last lines outside any test (all of them concern that one test).
fn no_section(p: &Parsed) -> crate::suite::Output {
    let mut out = crate::suite::Output::default();
    let loose = tail(&p.loose, RERUN_TAIL_LINES);
    if loose.iter().all(u8::is_ascii_whitespace) {
        out.push_line(
            format!("(no output for this test: the runner ended with {})", p.outcome.describe()).as_bytes(),
        );
    } else {
        // Its own words first: the summary and JUnit's message show a failure's first lines.
        out.push(&loose);
        out.push_line(
            format!(
                "(the runner's last output, outside any section for this test; it ended with {})",
                p.outcome.describe()
            )
            .as_bytes(),
        );
    }
    out
}

/// How many of a single-test rerun's last lines stand for its output when the parser found no section.
const RERUN_TAIL_LINES: usize = 40;

fn tail(data: &[u8], lines: usize) -> Vec<u8> {
    let text = data.strip_suffix(b"\n").unwrap_or(data);
    let start =
        text.iter().enumerate().rev().filter(|(_, &b)| b == b'\n').nth(lines - 1).map_or(0, |(i, _)| i + 1);
    let mut out = text[start..].to_vec();
    if !out.is_empty() {
        out.push(b'\n');
    }
    out
}

/// The outcome a rerun reported for `id`, with that test's section of output: by id, else by name when
/// the rerun reported exactly one test of that name (a label the rerun printed differently). A runner
/// that died or was killed before reporting it: its crash or timeout is the outcome, with no section.
fn rerun_outcome(p: &Parsed, id: &TestId) -> Option<(TestOutcome, crate::suite::Output)> {
    if let Some(r) = p.run.get(id) {
        return Some((r.outcome, r.output.clone()));
    }
    let same: Vec<_> = p.run.results.iter().filter(|r| r.name.name == id.name).collect();
    if same.len() == 1 {
        return Some((same[0].outcome, same[0].output.clone()));
    }
    match p.outcome {
        Outcome::TimedOut => Some((TestOutcome::Timeout, Default::default())),
        Outcome::Signaled { .. } if !p.run.complete => Some((TestOutcome::Crashed, Default::default())),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn new_track(
    runner: Runner,
    cfg: &TestConfig,
    vote: &SuiteVote,
    id: &TestId,
    policy: Policy,
    rootdir: Option<&str>,
    result_path: Option<&Path>,
) -> Track {
    let tv = vote.get(id).expect("a test to rerun comes from the vote");
    let initial: Vec<TestOutcome> =
        tv.outcomes.iter().copied().filter(|&o| o != TestOutcome::NotRun).collect();
    let classifier = Classifier::new(initial, !tv.good(), false, policy);
    // pytest node ids are relative to its rootdir; a rerun started elsewhere names the test by path.
    let cwd = std::env::current_dir().ok();
    let root = rootdir.map(PathBuf::from).filter(|r| Some(r) != cwd.as_ref());
    // `cargo test` reruns through cargo with the user's cargo arguments, never the test binary alone:
    // cargo gives a test binary an environment (CARGO_PKG_*, CARGO_MANIFEST_DIR, the toolchain's
    // library path) that tests read and that tmr cannot reproduce exactly.
    let argv = runner
        .rerun(&cfg.command, id, |p| root.as_deref().unwrap_or(Path::new(".")).join(p).is_file())
        .map(|mut a| {
            if let (Runner::Pytest, Some(root), Some(last)) = (runner, &root, a.last_mut()) {
                *last = root.join(&*last).into_os_string();
            }
            a
        })
        .and_then(|a| runner.prepare(&a, result_path));
    let (argv, note) = match argv {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(format!("not rerun: {e:#}"))),
    };
    Track {
        id: id.clone(),
        classifier,
        argv,
        note,
        reruns: 0,
        rerun_failures: 0,
        failures: Vec::new(),
        spilled: Vec::new(),
        walls: Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    cfg: &TestConfig,
    runner: Runner,
    vote: &SuiteVote,
    parsed: &[Parsed],
    tracks: &[Track],
    voted_wall: Duration,
    rerun_wall: Duration,
    time_budget: Duration,
) -> TestReport {
    let mut tests = Vec::new();
    for tv in &vote.tests {
        let track = tracks.iter().find(|t| t.id == tv.name);
        let mut failures = Vec::new();
        let mut duration = None;
        for (r, p) in parsed.iter().enumerate() {
            let Some(res) = p.run.get(&tv.name) else { continue };
            duration = duration.or(res.duration.map(|d| d.as_secs_f64() * 1e3));
            let dissent = tv.dissenters.contains(&r);
            if !res.outcome.is_good() || dissent {
                failures.push(FailureEntry {
                    run: format!("replica {r}"),
                    outcome: res.outcome.to_string(),
                    output: String::from_utf8_lossy(&res.output.bytes).into_owned(),
                    cut: res.output.cut,
                });
            }
        }
        let (class, reruns, rerun_failures, odd_rate_bound, observations, note) = match track {
            Some(t) => {
                let v = t.classifier.verdict();
                failures.extend(t.failures.iter().cloned());
                (v.class, t.reruns, t.rerun_failures, v.odd_rate_bound, v.observations, t.note.clone())
            }
            None => (Class::None, 0, 0, None, 0, None),
        };
        let mut entry = TestEntry {
            id: tv.name.to_string(),
            suite: tv.name.suite.clone(),
            name: tv.name.name.clone(),
            voted: tv.voted.map(|o| o.to_string()),
            good: tv.good(),
            outcomes: tv.outcomes.iter().map(|o| o.to_string()).collect(),
            unanimous: tv.unanimous(),
            partial: tv.partial(),
            class,
            category: Category::Passed,
            reruns,
            rerun_failures,
            failure_rate: (reruns > 0).then(|| rerun_failures as f64 / reruns as f64),
            interval: (reruns > 0).then(|| wilson(rerun_failures as u64, reruns as u64, cfg.confidence)),
            odd_rate_bound,
            observations,
            rerun_note: note,
            duration_ms: duration,
            failures,
        };
        entry.category = entry.decide_category();
        tests.push(entry);
    }
    let replica_runs: Vec<ReplicaEntry> = parsed
        .iter()
        .enumerate()
        .map(|(r, p)| {
            let mut problems = p.run.problems.clone();
            if !p.run.complete && vote.incomplete.contains(&r) && problems.is_empty() {
                problems.push("the runner did not print its end".into());
            }
            ReplicaEntry {
                replica: r,
                outcome: p.outcome.describe(),
                complete: p.run.complete,
                tests: p.run.results.len(),
                problems,
                // The runner's last words, unless tmr's timeout killed it in a test it named (header noise).
                stray_tail: if p.outcome == Outcome::TimedOut
                    && p.run.results.iter().any(|r| r.outcome == TestOutcome::Timeout)
                {
                    String::new()
                } else {
                    String::from_utf8_lossy(&tail(&p.run.stray.bytes, 10)).into_owned()
                },
                wall_ms: p.wall.as_secs_f64() * 1e3,
            }
        })
        .collect();
    let mut notes = Vec::new();
    // The renderers show an unfinished replica's last output: point there only when there is some.
    let shown = replica_runs.iter().any(|r| !r.complete && !r.stray_tail.trim().is_empty());
    if vote.tests.is_empty() && shown {
        notes.push(format!("{NO_TESTS}: see each replica's last output above"));
    } else if vote.tests.is_empty() {
        notes.push(format!("{NO_TESTS}, and none printed anything outside a test"));
    } else if 2 * (vote.replicas - vote.incomplete.len()) <= vote.replicas {
        notes.push("most runners did not finish: the suite cannot pass".into());
    }
    TestReport {
        schema: report::SCHEMA,
        version: report::VERSION,
        command: cfg.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        runner: runner.name().into(),
        replicas: cfg.replicas,
        confidence: cfg.confidence,
        voted_wall_s: voted_wall.as_secs_f64(),
        rerun_wall_s: rerun_wall.as_secs_f64(),
        rerun_budget_s: time_budget.as_secs_f64(),
        reruns: 0,
        passed: vote.passed,
        exit_code: 0,
        counts: Counts::tally(&tests),
        tests,
        replica_runs,
        notes,
        kept: None,
    }
}

/// `--keep DIR` must be new or empty, checked before anything runs: an earlier run's files beside this
/// run's index.tsv would pass for this run's (its file names are per test and run, not per invocation).
fn prepare_keep_dir(dir: &Path) -> Result<()> {
    let refuse = |why: String| ExitError {
        code: exit::TMR_ERROR,
        message: format!("tmr: cannot use --keep {}: {why}", dir.display()),
    };
    std::fs::create_dir_all(dir).map_err(|e| refuse(e.to_string()))?;
    let mut entries = std::fs::read_dir(dir).map_err(|e| refuse(e.to_string()))?;
    if entries.next().is_some() {
        return Err(refuse(
            "it is not empty (an earlier run's files would be mixed with this one's): give a new or empty \
             directory"
                .into(),
        )
        .into());
    }
    Ok(())
}

/// `--keep DIR`: every failing or dissenting run's section of output, one file each (the reruns beyond
/// the first few were written as they came: `Track::spilled`), and index.tsv; a replica that did not
/// finish also leaves its whole stdout and stderr.
fn keep(dir: &Path, report: &TestReport, records: &[RunRecord], tracks: &[Track]) -> Result<()> {
    let mut index = File::create(dir.join("index.tsv")).context("creating index.tsv")?;
    index.write_all(b"test\trun\toutcome\tfile\n")?;
    for (k, t) in report.tests.iter().enumerate() {
        for f in &t.failures {
            let name = kept_name(k, &t.id, &f.run);
            std::fs::write(dir.join(&name), &f.output).with_context(|| format!("writing {name}"))?;
            writeln!(index, "{}\t{}\t{}\t{name}", t.id, f.run, f.outcome)?;
        }
        for track in tracks.iter().filter(|tr| tr.id.to_string() == t.id) {
            for (run, outcome, name) in &track.spilled {
                writeln!(index, "{}\t{run}\t{outcome}\t{name}", t.id)?;
            }
        }
    }
    for (rec, rep) in records.iter().zip(&report.replica_runs) {
        if rep.complete {
            continue;
        }
        for (stream, cap) in [("stdout", &rec.stdout), ("stderr", &rec.stderr)] {
            let name = format!("replica-{}.{stream}", rep.replica);
            let mut out = File::create(dir.join(&name)).with_context(|| format!("creating {name}"))?;
            if let Some(spool) = cap.kept() {
                let mut buf = vec![0u8; cap.summary.len as usize];
                spool.read_exact_at(&mut buf, 0)?;
                out.write_all(&buf)?;
            }
            writeln!(index, "(runner)\treplica {}\t{}\t{name}", rep.replica, rep.outcome)?;
        }
    }
    Ok(())
}

/// A kept run's file: the test's place in the report, its id, the run (`replica 0`, `rerun 7`).
fn kept_name(k: usize, id: &str, run: &str) -> String {
    format!("{k:04}-{}-{}.txt", slug(id), run.replace(' ', "-"))
}

fn slug(s: &str) -> String {
    let s: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }).collect();
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_in_the_last_component() {
        assert!(glob_match(b"*.xml", b"TEST-a.xml"));
        assert!(glob_match(b"TEST-?.xml", b"TEST-a.xml"));
        assert!(!glob_match(b"*.xml", b"a.xml.tmp"));
        assert!(glob_match(b"report.xml", b"report.xml"));
    }

    #[test]
    fn several_junit_files_merge_into_one_document() {
        let a = b"<?xml version=\"1.0\"?><testsuite name=\"a\"><testcase name=\"x\"/></testsuite>".to_vec();
        let b = b"<testsuite name=\"b\"><testcase name=\"y\"/></testsuite>".to_vec();
        let run = crate::suite::junit::parse(&merge_xml(vec![a, b])).unwrap();
        assert!(run.complete, "{:?}", run.problems);
        assert_eq!(run.results.len(), 2);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a", 2), b"a\n");
        assert_eq!(tail(b"", 2), b"");
    }
}
