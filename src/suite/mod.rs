//! `tmr test`'s pure half (issue 11): what one replica's test run reported, parsed from the runner's own
//! output, and the per-test vote across replicas. This module owns the plain data every parser returns
//! ([`SuiteRun`] of [`TestResult`]s keyed by [`TestId`], merged when a replica writes several reports)
//! and the bounded per-test output; `runner` (with `args`) knows each runner's command lines, the
//! parsers (`libtest`, `tap`, `junit`, `pytest`, `gotest`) read what the runners print, `vote` decides per
//! test, and `report` holds what `tmr test` reports and renders it (human, JSON, JUnit, GitHub). Nothing
//! here starts a process (that is `crate::testrun`). The parsers' tests run on real captured output
//! (tests/data/runners/) in `tests_data`.

mod args;
pub mod gotest;
pub mod junit;
pub mod libtest;
pub mod pytest;
pub mod report;
pub mod runner;
pub mod tap;
pub mod vote;

use std::fmt;
use std::time::Duration;

pub use runner::Runner;

/// A test's stable identity across replicas and reruns: the group the runner puts it in (a libtest
/// binary, a JUnit classname, a prove file; empty when the runner has none) and its name inside it. Two
/// parts rather than one joined string, so a rerun filter gets the runner's own name back unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TestId {
    pub suite: String,
    pub name: String,
}

impl TestId {
    pub fn new(suite: impl Into<String>, name: impl Into<String>) -> Self {
        TestId { suite: suite.into(), name: name.into() }
    }
}

impl fmt::Display for TestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suite.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}::{}", self.suite, self.name)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TestOutcome {
    Pass,
    Fail,
    /// Skipped or ignored by the runner, or an expected failure (TAP `# TODO`).
    Skip,
    /// The runner itself reported that the test ran out of time.
    Timeout,
    /// The test started but never finished: the runner died, or was killed, while it ran.
    Crashed,
    /// Never produced by a parser: the vote's stand-in for a test that a replica never reported.
    NotRun,
}

impl TestOutcome {
    /// Whether this outcome lets the suite pass.
    pub fn is_good(self) -> bool {
        matches!(self, TestOutcome::Pass | TestOutcome::Skip)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TestOutcome::Pass => "pass",
            TestOutcome::Fail => "fail",
            TestOutcome::Skip => "skip",
            TestOutcome::Timeout => "timeout",
            TestOutcome::Crashed => "crashed",
            TestOutcome::NotRun => "not run",
        }
    }
}

impl fmt::Display for TestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of one test's output is kept: its first bytes carry the failure message, and a suite of
/// thousands of chatty tests must not hold gigabytes.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// One test's section of the runner's output, bounded by [`OUTPUT_LIMIT`]; `cut` counts what was dropped
/// from the end, so a report can say so instead of silently showing less.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub cut: u64,
}

impl Output {
    pub fn push(&mut self, data: &[u8]) {
        let room = OUTPUT_LIMIT.saturating_sub(self.bytes.len());
        let take = room.min(data.len());
        self.bytes.extend_from_slice(&data[..take]);
        self.cut += (data.len() - take) as u64;
    }

    /// Appends one line and its newline.
    pub fn push_line(&mut self, line: &[u8]) {
        self.push(line);
        self.push(b"\n");
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.cut == 0
    }

    /// The first `n` non-blank lines, for a summary that shows a failure's message, not its backtrace.
    pub fn head(&self, n: usize) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        text.lines().filter(|l| !l.trim().is_empty()).take(n).collect::<Vec<_>>().join("\n")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: TestId,
    pub outcome: TestOutcome,
    pub duration: Option<Duration>,
    pub output: Output,
}

impl TestResult {
    pub fn new(name: TestId, outcome: TestOutcome) -> Self {
        TestResult { name, outcome, duration: None, output: Output::default() }
    }
}

/// Everything one replica's runner reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuiteRun {
    /// In the order the runner reported them; every name appears once.
    pub results: Vec<TestResult>,
    /// The runner printed its end (summary, plan, closing tag): when false, it died or was killed midway,
    /// and tests it never reported are missing from `results`.
    pub complete: bool,
    /// Things worth telling the user that did not stop the parse (one sentence each, with the line).
    pub problems: Vec<String>,
    /// Output that belongs to no test (lines between tests, a crashing runner's last words): kept so
    /// nothing is lost.
    pub stray: Output,
}

impl SuiteRun {
    pub fn get(&self, name: &TestId) -> Option<&TestResult> {
        self.results.iter().find(|r| &r.name == name)
    }

    /// tmr's own timeout killed this replica: the tests it had started and not finished ran out of time.
    pub fn mark_timed_out(&mut self) {
        for r in &mut self.results {
            if r.outcome == TestOutcome::Crashed {
                r.outcome = TestOutcome::Timeout;
            }
        }
    }

    /// tmr's own stop signal (Ctrl-C, forwarded to the runner) cut this run: the tests it had started and
    /// not finished, and the nameless case pytest writes for the test it was interrupted in, say nothing
    /// about those tests, so they are dropped (the vote then counts them as not run here).
    pub fn forget_interrupted(&mut self) {
        let before = self.results.len();
        self.results.retain(|r| r.outcome != TestOutcome::Crashed);
        self.problems.retain(|p| !p.contains(junit::NAMELESS_CASE));
        let dropped = before - self.results.len();
        self.problems.push(match dropped {
            0 => "stopped by tmr's stop signal".to_string(),
            n => format!("stopped by tmr's stop signal: {n} unfinished test(s) not counted"),
        });
    }

    /// One replica's run from several reports (`--junit-in` matching one XML file per module, in a
    /// stable order): complete when every part is; a name reported twice keeps its first report.
    pub fn merge(parts: impl IntoIterator<Item = SuiteRun>) -> SuiteRun {
        let mut run = SuiteRun { complete: true, ..Default::default() };
        let mut any = false;
        for part in parts {
            any = true;
            run.complete &= part.complete;
            run.problems.extend(part.problems);
            run.stray.push(&part.stray.bytes);
            run.stray.cut += part.stray.cut;
            for r in part.results {
                if run.get(&r.name).is_some() {
                    run.problems.push(format!("{} reported twice: the first report counts", r.name));
                } else {
                    run.results.push(r);
                }
            }
        }
        if !any {
            run.complete = false;
            run.problems.push("no report: the runner wrote no result file".into());
        }
        run
    }
}

/// Malformed runner output: what was wrong and on which line (1-based). The caller names the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Splits runner output into lines without their `\n` (and a `\r` before it), keeping a last line that
/// has no newline: a runner killed midway often leaves one.
pub(crate) fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let mut it = data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let empty = data.is_empty();
    std::iter::from_fn(move || if empty { None } else { it.next() })
}

/// Removes ANSI escape sequences (`ESC [ ... letter`): runners colour their output when told to, and a
/// coloured `ok` must still read as `ok`.
pub(crate) fn strip_ansi(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !line.contains(&0x1b) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i] == 0x1b && line.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < line.len() && !line[i].is_ascii_alphabetic() {
                i += 1;
            }
            i += 1;
        } else {
            out.push(line[i]);
            i += 1;
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_the_head_and_counts_the_cut() {
        let mut o = Output::default();
        o.push(&vec![b'a'; OUTPUT_LIMIT - 1]);
        o.push_line(b"xyz");
        assert_eq!(o.bytes.len(), OUTPUT_LIMIT);
        assert_eq!(o.bytes[OUTPUT_LIMIT - 1], b'x');
        assert_eq!(o.cut, 3);
    }

    #[test]
    fn lines_keep_an_unterminated_last_line_and_drop_cr() {
        let v: Vec<&[u8]> = lines(b"a\r\nb\n\nc").collect();
        assert_eq!(v, [&b"a"[..], b"b", b"", b"c"]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"x\n").count(), 1);
    }

    #[test]
    fn ansi_colour_is_removed() {
        assert_eq!(&*strip_ansi(b"test a ... \x1b[32mok\x1b[0m"), b"test a ... ok");
        assert_eq!(&*strip_ansi(b"\x1b["), b"");
    }

    #[test]
    fn a_timeout_turns_unfinished_tests_into_timeouts() {
        let mut run = SuiteRun {
            results: vec![
                TestResult::new(TestId::new("", "a"), TestOutcome::Pass),
                TestResult::new(TestId::new("", "h"), TestOutcome::Crashed),
            ],
            ..Default::default()
        };
        run.mark_timed_out();
        assert_eq!(run.results[0].outcome, TestOutcome::Pass);
        assert_eq!(run.results[1].outcome, TestOutcome::Timeout);
    }

    #[test]
    fn an_interrupted_run_forgets_the_tests_it_cut() {
        let mut run = SuiteRun {
            results: vec![
                TestResult::new(TestId::new("", "a"), TestOutcome::Fail),
                TestResult::new(TestId::new("", "cut"), TestOutcome::Crashed),
            ],
            problems: vec![format!("line 9: {} (the run was interrupted there)", junit::NAMELESS_CASE)],
            ..Default::default()
        };
        run.forget_interrupted();
        assert_eq!(run.results.len(), 1, "{run:?}");
        assert_eq!(run.results[0].outcome, TestOutcome::Fail, "a test that finished still counts");
        assert_eq!(run.problems, ["stopped by tmr's stop signal: 1 unfinished test(s) not counted"]);
    }

    #[test]
    fn head_skips_blank_lines() {
        let mut o = Output::default();
        o.push(b"\ncomputing\n\n  \nexpected 42, got 41\nleft: 41\n");
        assert_eq!(o.head(2), "computing\nexpected 42, got 41");
    }

    #[test]
    fn merge_keeps_first_reports_and_needs_every_part_complete() {
        let part = |names: &[&str], complete: bool| SuiteRun {
            results: names.iter().map(|n| TestResult::new(TestId::new("m", *n), TestOutcome::Pass)).collect(),
            complete,
            ..Default::default()
        };
        let run = SuiteRun::merge([part(&["a", "b"], true), part(&["b", "c"], true)]);
        assert!(run.complete);
        assert_eq!(run.results.len(), 3);
        assert_eq!(run.problems.len(), 1);
        assert!(!SuiteRun::merge([part(&["a"], true), part(&[], false)]).complete);
        assert!(!SuiteRun::merge([]).complete);
    }

    #[test]
    fn ids_display_with_their_suite() {
        assert_eq!(TestId::new("", "a").to_string(), "a");
        assert_eq!(TestId::new("m.C", "t[1]").to_string(), "m.C::t[1]");
    }
}

#[cfg(test)]
mod tests_data;
