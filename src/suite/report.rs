//! What `tmr test` tells the user, and its renderers: the human summary, the `tmr-test-report` JSON, a
//! nextest-style JUnit file (one `<testcase>` per test; a flaky pass carries `flakyFailure`, a failure
//! `rerunFailure`) and GitHub annotations with a step-summary table. Plain data in, text out: the run
//! (`crate::testrun`) fills a [`TestReport`] and decides the exit code; nothing here computes a verdict.
//! A test's [`Category`] (passed, skipped, flaky, transient, failed) is decided by one function,
//! [`TestEntry::decide_category`], and every renderer and count reads the category it stored, so the
//! labels, the headline counts, the JSON, the JUnit file and the annotations never disagree.

use std::time::Duration;

use quick_junit::{FlakyOrRerun, NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};
use serde::Serialize;

use crate::classify::Class;
use crate::stats::Interval;

pub const SCHEMA: &str = "tmr-test-report";
pub const VERSION: u32 = 1;

/// How many lines of a failure's output the human summary and the annotations show.
pub const HEAD_LINES: usize = 6;

#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub schema: &'static str,
    pub version: u32,
    pub command: Vec<String>,
    pub runner: String,
    pub replicas: usize,
    pub confidence: f64,
    /// The voted round (every replica of the suite, in parallel).
    pub voted_wall_s: f64,
    /// Reruns of single tests, and the time budget they had.
    pub rerun_wall_s: f64,
    pub rerun_budget_s: f64,
    pub reruns: usize,
    pub passed: bool,
    pub exit_code: i32,
    pub counts: Counts,
    /// Every test any replica reported, in id order.
    pub tests: Vec<TestEntry>,
    pub replica_runs: Vec<ReplicaEntry>,
    /// Things the user must know that belong to no test (a stop signal, a budget that ran out).
    pub notes: Vec<String>,
    pub kept: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tests: usize,
    /// Every replica ran it and passed.
    pub unanimous_pass: usize,
    pub skipped: usize,
    /// Voted pass or skip, but some run of it failed, and the failure came back (or it was not rerun).
    pub flaky: usize,
    /// Voted pass or skip; a run of it failed once and never again in its reruns.
    pub transient: usize,
    /// The voted outcome is not a pass or a skip.
    pub failed: usize,
    /// Only some replicas ran it.
    pub partial: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestEntry {
    /// `suite::name`, as the summary shows it.
    pub id: String,
    pub suite: String,
    pub name: String,
    /// The strict-majority outcome; `None` when no outcome had one.
    pub voted: Option<String>,
    pub good: bool,
    /// One per replica: pass, fail, skip, timeout, crashed, not run.
    pub outcomes: Vec<String>,
    pub unanimous: bool,
    pub partial: bool,
    pub class: Class,
    /// What it counts as: set from [`TestEntry::decide_category`] when the entry is built.
    pub category: Category,
    pub reruns: usize,
    /// Reruns whose outcome was not a pass or a skip.
    pub rerun_failures: usize,
    /// `rerun_failures / reruns`, with its Wilson interval at `confidence` (None without reruns).
    pub failure_rate: Option<f64>,
    pub interval: Option<Interval>,
    /// When nothing odd came back: the upper bound on the odd outcome's rate (rule of three) over
    /// `observations` runs.
    pub odd_rate_bound: Option<f64>,
    pub observations: usize,
    /// Why it was not rerun (or not as much as asked), when that is not the classifier's doing.
    pub rerun_note: Option<String>,
    pub duration_ms: Option<f64>,
    /// Every failing or dissenting run's output section: replicas first, then reruns.
    pub failures: Vec<FailureEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureEntry {
    /// `replica 1` or `rerun 4`.
    pub run: String,
    pub outcome: String,
    pub output: String,
    /// Bytes of that output dropped from its end (see `suite::OUTPUT_LIMIT`).
    pub cut: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicaEntry {
    pub replica: usize,
    /// The runner's own exit: `exit 101`, `SIGABRT`, `timeout`.
    pub outcome: String,
    /// The runner printed its end.
    pub complete: bool,
    pub tests: usize,
    pub problems: Vec<String>,
    /// The last lines of output that belong to no test: a crashing runner's last words, a build error.
    pub stray_tail: String,
    pub wall_ms: f64,
}

/// What a test counts as, everywhere it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Passed,
    Skipped,
    /// Voted pass or skip, but some run failed and the failure came back (or there were no reruns to
    /// say it would not).
    Flaky,
    /// Voted pass or skip; the failing run's outcome never came back in its reruns.
    Transient,
    /// The voted outcome is not a pass or a skip (whatever its reruns did): the suite fails on it.
    Failed,
}

impl Category {
    /// The label the summary puts before a test it lists.
    pub fn label(self) -> &'static str {
        match self {
            Category::Passed => "PASSED",
            Category::Skipped => "SKIPPED",
            Category::Flaky => "FLAKY",
            Category::Transient => "TRANSIENT",
            Category::Failed => "FAILED",
        }
    }

    /// Voted good, but some run of it failed.
    pub fn is_odd(self) -> bool {
        matches!(self, Category::Flaky | Category::Transient)
    }
}

impl Counts {
    /// The counts of a report's tests, from the category each one stored.
    pub fn tally(tests: &[TestEntry]) -> Counts {
        let n = |c: Category| tests.iter().filter(|t| t.category == c).count();
        Counts {
            tests: tests.len(),
            unanimous_pass: tests
                .iter()
                .filter(|t| t.unanimous && t.voted.as_deref() == Some("pass"))
                .count(),
            skipped: n(Category::Skipped),
            flaky: n(Category::Flaky),
            transient: n(Category::Transient),
            failed: n(Category::Failed),
            partial: tests.iter().filter(|t| t.partial).count(),
        }
    }
}

impl TestEntry {
    /// The one decision of what this test counts as: the vote first (a failing voted outcome fails the
    /// suite, so it is a failure), then whether any run failed, then the classifier's class.
    pub fn decide_category(&self) -> Category {
        if !self.good {
            return Category::Failed;
        }
        let odd = self.outcomes.iter().any(|o| bad(o)) || self.rerun_failures > 0;
        match (odd, self.class) {
            (false, _) if self.voted.as_deref() == Some("skip") => Category::Skipped,
            (false, _) => Category::Passed,
            // Transient needs reruns that did not fail: a test never rerun is not known to be.
            (true, Class::Transient) if self.reruns > 0 => Category::Transient,
            (true, _) => Category::Flaky,
        }
    }

    /// The first lines of the first failure's output.
    pub fn message(&self) -> String {
        // A replica killed midway may have no section for the test (libtest prints them at the end):
        // the first run that has one speaks.
        let Some(f) = self.failures.iter().find(|f| !f.output.trim().is_empty()) else {
            return String::new();
        };
        f.output.lines().filter(|l| !l.trim().is_empty()).take(HEAD_LINES).collect::<Vec<_>>().join("\n")
    }

    fn rate_text(&self, confidence: f64) -> String {
        match (self.failure_rate, self.interval) {
            (Some(p), Some(i)) => format!(
                "failed {}/{} reruns: {} ({:.0}% CI {}–{})",
                self.rerun_failures,
                self.reruns,
                pct(p),
                confidence * 100.0,
                pct(i.lo),
                pct(i.hi)
            ),
            _ => "not rerun".into(),
        }
    }
}

/// An outcome name that is not a pass, a skip or a test a replica never reached.
fn bad(outcome: &str) -> bool {
    !matches!(outcome, "pass" | "skip" | "not run")
}

fn pct(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

/// The classifier's word for a test's runs. Not a category: a test voted fail whose reruns varied is
/// FAILED (the suite fails on it), and its runs are "nondeterministic".
fn class_word(t: &TestEntry) -> &'static str {
    match t.class {
        Class::Nondeterministic => "nondeterministic",
        Class::Transient => "transient",
        Class::Deterministic => "deterministic",
        Class::None => "unsettled",
    }
}

/// The human summary, for stderr.
pub fn human(r: &TestReport) -> String {
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    let c = &r.counts;
    line(&format!(
        "tmr test: {} replicas of `{}` ({}): {} tests, {} passed unanimously, {} skipped, {} flaky, {} transient, {} failed",
        r.replicas,
        r.command.join(" "),
        r.runner,
        c.tests,
        c.unanimous_pass,
        c.skipped,
        c.flaky,
        c.transient,
        c.failed
    ));
    if r.reruns > 0 {
        line(&format!(
            "tmr test: {} reruns of single tests in {:.1}s (budget {:.1}s), after a voted round of {:.1}s",
            r.reruns, r.rerun_wall_s, r.rerun_budget_s, r.voted_wall_s
        ));
    }
    let indent = |text: &str| text.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n");
    for t in r.tests.iter().filter(|t| t.category.is_odd()) {
        line(&format!(
            "{} {} — voted {}, replicas {}; {}",
            t.category.label(),
            t.id,
            t.voted.as_deref().unwrap_or("none"),
            t.outcomes.join("/"),
            t.rate_text(r.confidence)
        ));
        if let Some(b) = t.odd_rate_bound {
            line(&format!(
                "      did not fail again in {} runs: its failure rate is below {} ({:.0}% confidence)",
                t.observations,
                pct(b),
                r.confidence * 100.0
            ));
        }
        if let Some(n) = &t.rerun_note {
            line(&format!("      {n}"));
        }
        let m = t.message();
        if !m.is_empty() {
            line(&indent(&m));
        }
    }
    for t in r.tests.iter().filter(|t| t.category == Category::Failed) {
        let mut head = format!(
            "FAILED {} — voted {}, replicas {}; {}",
            t.id,
            t.voted.as_deref().unwrap_or("none (no majority)"),
            t.outcomes.join("/"),
            class_word(t)
        );
        match t.class {
            Class::Deterministic => head.push_str(&format!(
                ": failed all {} runs{}",
                t.observations,
                t.odd_rate_bound.map_or(String::new(), |b| format!(
                    " (if it ever passes, in under {} of runs, {:.0}% confidence)",
                    pct(b),
                    r.confidence * 100.0
                ))
            )),
            _ if t.reruns > 0 => head.push_str(&format!("; {}", t.rate_text(r.confidence))),
            _ => {}
        }
        line(&head);
        if let Some(n) = &t.rerun_note {
            line(&format!("      {n}"));
        }
        let m = t.message();
        if !m.is_empty() {
            line(&indent(&m));
        }
    }
    let partial: Vec<&str> = r.tests.iter().filter(|t| t.partial).map(|t| t.id.as_str()).collect();
    if !partial.is_empty() {
        let shown = partial.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        let more = if partial.len() > 5 { format!(" and {} more", partial.len() - 5) } else { String::new() };
        line(&format!("only some replicas ran {} test(s): {shown}{more}", partial.len()));
    }
    // Replicas that ended the same way are told once.
    let mut told: Vec<&ReplicaEntry> = Vec::new();
    for rep in &r.replica_runs {
        if rep.complete && rep.problems.is_empty() {
            continue;
        }
        let same = |o: &&ReplicaEntry| {
            (&o.outcome, o.complete, o.tests, &o.problems, &o.stray_tail)
                == (&rep.outcome, rep.complete, rep.tests, &rep.problems, &rep.stray_tail)
        };
        if told.iter().any(same) {
            continue;
        }
        told.push(rep);
        let who: Vec<String> = r.replica_runs.iter().filter(same).map(|o| o.replica.to_string()).collect();
        let what = if rep.complete { "finished" } else { "did not finish" };
        line(&format!(
            "{} {}: the runner {what} ({}; {} tests reported)",
            if who.len() > 1 { "replicas" } else { "replica" },
            who.join(", "),
            rep.outcome,
            rep.tests
        ));
        for p in &rep.problems {
            line(&format!("      {p}"));
        }
        if !rep.complete && !rep.stray_tail.is_empty() {
            line("      its last output outside any test:");
            line(&indent(&rep.stray_tail));
        }
    }
    for n in &r.notes {
        line(&format!("note: {n}"));
    }
    if let Some(dir) = &r.kept {
        line(&format!("kept failing and dissenting output in {dir}/ (index.tsv)"));
    }
    let verdict = if r.passed && r.exit_code == 0 {
        "PASSED".to_string()
    } else if r.passed {
        format!("PASSED, but --fail-on matched: exit {}", r.exit_code)
    } else {
        format!("FAILED: exit {}", r.exit_code)
    };
    line(&format!("tmr test: {verdict}"));
    out
}

pub fn json(r: &TestReport) -> String {
    serde_json::to_string_pretty(r).expect("a report always serialises") + "\n"
}

fn secs(ms: Option<f64>) -> Duration {
    ms.and_then(|m| Duration::try_from_secs_f64(m / 1e3).ok()).unwrap_or_default()
}

/// nextest's conventions (its `reporter/aggregator/junit.rs`): one `<testcase>` per test; only FAILED
/// runs appear as attempts, never a passing one. A flaky or transient test is a success with a
/// `flakyFailure` per failed run. A failed test is a `failure` for its first failed run (the first with
/// output, when a run left none) with a `rerunFailure` per further failed run, or, when some run of it
/// passed, nextest's "flaky failure": `type="flaky failure"` with `flakyFailure`s. Each attempt carries
/// its run's output as `system-out`, typed as nextest types it (`test failure`, `test abort`, `test
/// timeout`).
pub fn junit(r: &TestReport) -> String {
    let mut suites: Vec<TestSuite> = Vec::new();
    for t in &r.tests {
        let suite_name = if t.suite.is_empty() { r.runner.clone() } else { t.suite.clone() };
        let mut failed_runs: Vec<&FailureEntry> = t.failures.iter().filter(|f| bad(&f.outcome)).collect();
        let mut main = None;
        let mut status = match t.category {
            Category::Failed => {
                let at = failed_runs.iter().position(|f| !f.output.trim().is_empty()).unwrap_or(0);
                let first = (at < failed_runs.len()).then(|| failed_runs.remove(at));
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let head = t.message().lines().next().unwrap_or_default().to_string();
                s.set_message(format!(
                    "{} ({}): {head}",
                    t.voted.as_deref().unwrap_or("no majority"),
                    class_word(t)
                ));
                let passed_once = t.outcomes.iter().any(|o| o == "pass") || t.rerun_failures < t.reruns;
                if passed_once {
                    s.set_type("flaky failure").set_rerun_kind(FlakyOrRerun::Flaky);
                } else {
                    s.set_type(attempt_type(first.map_or("fail", |f| f.outcome.as_str())));
                }
                if let Some(f) = first {
                    s.set_description(f.output.clone());
                }
                main = first;
                s
            }
            Category::Skipped => TestCaseStatus::skipped(),
            Category::Passed | Category::Flaky | Category::Transient => TestCaseStatus::success(),
        };
        if t.category != Category::Skipped {
            for f in failed_runs {
                // Written as `flakyFailure` under a success (or a flaky failure), else `rerunFailure`.
                let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                rerun.set_message(format!("{}: {}", f.run, f.outcome)).set_type(attempt_type(&f.outcome));
                rerun.set_system_out(f.output.clone());
                status.add_rerun(rerun);
            }
        }
        let mut case = TestCase::new(t.name.clone(), status);
        case.set_classname(suite_name.clone());
        case.set_time(secs(t.duration_ms));
        case.add_property(("tmr.class", t.class.name()));
        case.add_property(("tmr.category", t.category.label().to_lowercase().as_str()));
        case.add_property(("tmr.outcomes", t.outcomes.join(",").as_str()));
        case.add_property(("tmr.reruns", t.reruns.to_string().as_str()));
        if let Some(f) = main {
            case.set_system_out(f.output.clone());
        }
        match suites.iter_mut().find(|s| s.name.as_str() == suite_name) {
            Some(s) => {
                s.add_test_case(case);
            }
            None => {
                let mut s = TestSuite::new(suite_name);
                s.add_test_case(case);
                suites.push(s);
            }
        }
    }
    let mut report = Report::new("tmr test");
    report.add_test_suites(suites);
    report.to_string().expect("a JUnit report always serialises")
}

/// nextest's `type` for a failed attempt.
fn attempt_type(outcome: &str) -> &'static str {
    match outcome {
        "timeout" => "test timeout",
        "crashed" => "test abort",
        _ => "test failure",
    }
}

/// GitHub's workflow-command escaping for a message (`%`, CR, LF) and for a property (also `:` and `,`).
fn gh_escape(s: &str, property: bool) -> String {
    let mut out = s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

/// `::warning`/`::error` workflow commands, one per flaky and failing test, for tmr's stdout.
pub fn github_annotations(r: &TestReport) -> String {
    let mut out = String::new();
    for t in &r.tests {
        let (level, title) = match t.category {
            Category::Failed => ("error", format!("test failed: {}", t.id)),
            Category::Flaky => ("warning", format!("flaky test: {}", t.id)),
            Category::Transient => ("warning", format!("transient test failure: {}", t.id)),
            Category::Passed | Category::Skipped => continue,
        };
        let mut msg = format!("{} — {}", class_word(t), t.rate_text(r.confidence));
        let m = t.message();
        if !m.is_empty() {
            msg.push('\n');
            msg.push_str(&m);
        }
        out.push_str(&format!("::{level} title={}::{}\n", gh_escape(&title, true), gh_escape(&msg, false)));
    }
    out
}

/// Markdown for $GITHUB_STEP_SUMMARY: a heading and a table of the flaky and failing tests.
pub fn github_summary(r: &TestReport) -> String {
    let icon = if !r.passed {
        "❌"
    } else if r.counts.flaky + r.counts.transient > 0 {
        "🎲"
    } else {
        "✅"
    };
    let cell = |s: &str| crate::report::one_line(s).replace('|', "\\|").replace('`', "'");
    let c = &r.counts;
    let mut md = format!(
        "### {icon} tmr test: `{}`\n\n{} tests · {} passed unanimously · {} skipped · {} flaky · {} transient · \
         {} failed · {} replicas · {} reruns · exit {}\n\n",
        cell(&r.command.join(" ")),
        c.tests,
        c.unanimous_pass,
        c.skipped,
        c.flaky,
        c.transient,
        c.failed,
        r.replicas,
        r.reruns,
        r.exit_code
    );
    let rows: Vec<&TestEntry> =
        r.tests.iter().filter(|t| t.category == Category::Failed || t.category.is_odd()).collect();
    if !rows.is_empty() {
        md.push_str(
            "| test | voted | replicas | category | reruns failed | rate (CI) |\n|---|---|---|---|---|---|\n",
        );
        for t in rows {
            let rate = match (t.failure_rate, t.interval) {
                (Some(p), Some(i)) => format!("{} ({}–{})", pct(p), pct(i.lo), pct(i.hi)),
                _ => "–".into(),
            };
            md.push_str(&format!(
                "| `{}` | {} | {} | {} | {}/{} | {rate} |\n",
                cell(&t.id),
                t.voted.as_deref().unwrap_or("none"),
                t.outcomes.join("/"),
                t.category.label().to_lowercase(),
                t.rerun_failures,
                t.reruns
            ));
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, outcomes: &[&str], voted: &str, class: Class) -> TestEntry {
        let good = matches!(voted, "pass" | "skip");
        TestEntry {
            id: format!("tests/suite.rs::{name}"),
            suite: "tests/suite.rs".into(),
            name: name.into(),
            voted: Some(voted.into()),
            good,
            outcomes: outcomes.iter().map(|s| s.to_string()).collect(),
            unanimous: outcomes.iter().all(|o| *o == voted),
            partial: false,
            class,
            category: Category::Passed,
            reruns: 0,
            rerun_failures: 0,
            failure_rate: None,
            interval: None,
            odd_rate_bound: None,
            observations: 0,
            rerun_note: None,
            duration_ms: Some(1.0),
            failures: Vec::new(),
        }
    }

    fn failure(run: &str, text: &str) -> FailureEntry {
        FailureEntry { run: run.into(), outcome: "fail".into(), output: text.into(), cut: 0 }
    }

    fn sample() -> TestReport {
        let mut flaky = entry("flaky", &["pass", "fail", "pass"], "pass", Class::Nondeterministic);
        flaky.reruns = 4;
        flaky.rerun_failures = 1;
        flaky.failure_rate = Some(0.25);
        flaky.interval = Some(Interval { lo: 0.05, hi: 0.7 });
        flaky.failures =
            vec![failure("replica 1", "drew 0.1 < 0.3\n"), failure("rerun 4", "drew 0.2 < 0.3\n")];
        let mut det = entry("deterministic_failure", &["fail", "fail", "fail"], "fail", Class::Deterministic);
        det.reruns = 3;
        det.rerun_failures = 3;
        det.observations = 6;
        det.odd_rate_bound = Some(0.39);
        det.failures = vec![
            failure("replica 0", "computing the answer\nexpected 42, got 41\n"),
            failure("rerun 1", "computing the answer\nexpected 42, got 41\n"),
        ];
        let mut tests = vec![
            entry("adds", &["pass"; 3], "pass", Class::None),
            det,
            flaky,
            entry("ignored", &["skip"; 3], "skip", Class::None),
        ];
        for t in &mut tests {
            t.category = t.decide_category();
        }
        TestReport {
            schema: SCHEMA,
            version: VERSION,
            command: vec!["cargo".into(), "test".into()],
            runner: "libtest".into(),
            replicas: 3,
            confidence: 0.95,
            voted_wall_s: 1.0,
            rerun_wall_s: 0.5,
            rerun_budget_s: 2.0,
            reruns: 7,
            passed: false,
            exit_code: 1,
            counts: Counts::tally(&tests),
            tests,
            replica_runs: Vec::new(),
            notes: Vec::new(),
            kept: None,
        }
    }

    #[test]
    fn the_summary_names_the_flaky_test_with_its_rate_and_the_failure_with_its_message() {
        let text = human(&sample());
        assert!(text.contains("FLAKY tests/suite.rs::flaky"), "{text}");
        assert!(text.contains("failed 1/4 reruns: 25% (95% CI 5%–70%)"), "{text}");
        assert!(text.contains("FAILED tests/suite.rs::deterministic_failure"), "{text}");
        assert!(text.contains("failed all 6 runs"), "{text}");
        assert!(text.contains("      expected 42, got 41"), "{text}");
        assert!(!text.contains("adds"), "unanimous passes are only counted: {text}");
        assert!(text.ends_with("tmr test: FAILED: exit 1\n"), "{text}");
    }

    #[test]
    fn junit_follows_nextest_flaky_and_rerun_conventions() {
        let xml = junit(&sample());
        assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
        assert!(xml.contains("<flakyFailure"), "{xml}");
        assert!(xml.contains("<failure"), "{xml}");
        assert!(xml.contains("<rerunFailure"), "{xml}");
        assert!(xml.contains("<skipped"), "{xml}");
        assert!(xml.contains("expected 42, got 41"), "{xml}");
        assert!(xml.contains("classname=\"tests/suite.rs\""), "{xml}");
    }

    #[test]
    fn github_annotations_escape_newlines_and_name_each_test() {
        let text = github_annotations(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("::error title=test failed%3A tests/suite.rs%3A%3Adeterministic_failure::")
        );
        assert!(lines[0].contains("%0Aexpected 42, got 41"), "{text}");
        assert!(lines[1].starts_with("::warning title=flaky test"), "{text}");
        let md = github_summary(&sample());
        assert!(
            md.contains("| `tests/suite.rs::flaky` | pass | pass/fail/pass | flaky | 1/4 | 25% (5%–70%) |"),
            "{md}"
        );
    }

    /// The trial's contradictions: a test voted fail whose reruns varied was labeled "flaky" but counted
    /// failed; tests labeled TRANSIENT were counted flaky. One category now decides label and counts.
    #[test]
    fn labels_counts_json_junit_and_github_agree_on_each_tests_category() {
        let mut r = sample();
        let mut varied = entry("varied", &["fail", "fail", "pass"], "fail", Class::Nondeterministic);
        varied.reruns = 3;
        varied.rerun_failures = 2;
        varied.failure_rate = Some(2.0 / 3.0);
        varied.interval = Some(Interval { lo: 0.2, hi: 0.9 });
        varied.failures = vec![
            failure("replica 0", "boom\n"),
            failure("replica 1", "boom\n"),
            FailureEntry { run: "replica 2".into(), outcome: "pass".into(), output: String::new(), cut: 0 },
            failure("rerun 1", "boom\n"),
        ];
        let mut once = entry("once", &["pass", "fail", "pass"], "pass", Class::Transient);
        once.reruns = 3;
        once.failures = vec![failure("replica 1", "one-off\n")];
        once.rerun_note = Some("rerun 1 did not report once: the runner's filter matched nothing".into());
        r.tests.extend([varied, once]);
        for t in &mut r.tests {
            t.category = t.decide_category();
        }
        let mut unrerun = entry("unrerun", &["pass", "fail", "pass"], "pass", Class::Transient);
        unrerun.category = unrerun.decide_category();
        assert_eq!(unrerun.category, Category::Flaky, "not rerun: not known to be transient");
        r.counts = Counts::tally(&r.tests);
        assert_eq!((r.counts.flaky, r.counts.transient, r.counts.failed), (1, 1, 2), "{:?}", r.counts);

        let text = human(&r);
        assert!(text.contains("1 flaky, 1 transient, 2 failed"), "{text}");
        assert!(text.contains("TRANSIENT tests/suite.rs::once"), "{text}");
        assert!(text.contains("the runner's filter matched nothing"), "not only in the JSON: {text}");
        assert!(text.contains("FAILED tests/suite.rs::varied"), "{text}");
        let listed = |label: &str| text.lines().filter(|l| l.starts_with(label)).count();
        assert_eq!(listed("FLAKY "), r.counts.flaky, "{text}");
        assert_eq!(listed("TRANSIENT "), r.counts.transient, "{text}");
        assert_eq!(listed("FAILED "), r.counts.failed, "{text}");
        assert!(!text.lines().any(|l| l.starts_with("FAILED") && l.contains("flaky")), "{text}");

        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["counts"]["transient"], 1);
        assert_eq!(v["tests"][5]["category"], "transient");
        assert_eq!(v["tests"][4]["category"], "failed");

        // nextest: only failed attempts are flakyFailure/rerunFailure, never a dissenting pass.
        let xml = junit(&r);
        assert!(!xml.contains(": pass\""), "{xml}");
        assert_eq!(xml.matches("<rerunFailure").count(), 1, "det's rerun 1: {xml}");
        // varied failed the vote but passed once: nextest's "flaky failure", its other failed runs
        // (replica 1, rerun 1) flakyFailures, as are flaky's two and once's one.
        assert_eq!(xml.matches("type=\"flaky failure\"").count(), 1, "{xml}");
        assert_eq!(xml.matches("<flakyFailure").count(), 2 + 2 + 1, "{xml}");

        let gh = github_annotations(&r);
        assert_eq!(gh.matches("::error ").count(), r.counts.failed, "{gh}");
        assert_eq!(gh.matches("::warning ").count(), r.counts.flaky + r.counts.transient, "{gh}");
    }

    #[test]
    fn json_names_its_schema() {
        let v: serde_json::Value = serde_json::from_str(&json(&sample())).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["tests"][1]["class"], "deterministic");
        assert_eq!(v["tests"][2]["failure_rate"], 0.25);
    }
}
