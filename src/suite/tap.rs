//! Parser for TAP (12 and 13) as bats and `prove -v` print it: the plan `1..N` (first or last), `ok N
//! desc` / `not ok N desc` with `# SKIP` / `# TODO` directives, `# diagnostic` lines and TAP 13 YAML
//! blocks (attached to the test before them, which is where bats and Test::More put them), and `Bail
//! out!`. `prove -v` runs several files and announces each with `FILE .. `: each file is a section, and
//! the file is the tests' [`TestId::suite`] (bats prints one stream for all its files: suite empty).
//! Once a file's plan is met, prove's verdict on it (`ok`, or `ok  41 ms …` with `--timer`) is not a
//! test; `Dubious, test returned N` on a file with no failing test (it died, or exited non-zero after
//! passing) fails the run, as it fails prove.
//! A test's name is its description (`#N` when it has none; a repeated description gets ` #N`).

use std::collections::HashSet;

use super::{lines, strip_ansi, ParseError, SuiteRun, TestId, TestOutcome, TestResult};

pub fn parse(out: &[u8]) -> Result<SuiteRun, ParseError> {
    let mut p = TapParser::default();
    for l in lines(out) {
        p.line(l)?;
    }
    Ok(p.finish())
}

#[derive(Debug, Default)]
struct Section {
    suite: String,
    /// The planned count and whether the plan came before any test.
    plan: Option<(usize, bool)>,
    tests: usize,
    /// Tests that failed (not TODO).
    failed: usize,
    names: HashSet<String>,
}

impl Section {
    /// Every planned test was reported: what prove prints next is its verdict on the file.
    fn plan_met(&self) -> bool {
        self.plan.is_some_and(|(n, _)| self.tests >= n)
    }
}

/// The streaming parser: feed lines with [`TapParser::line`], then [`TapParser::finish`].
#[derive(Debug, Default)]
pub struct TapParser {
    run: SuiteRun,
    section: Section,
    sections: usize,
    planned_sections: usize,
    last: Option<usize>,
    in_yaml: bool,
    bailed: bool,
    /// prove said a file exited non-zero (`Dubious, test returned N`).
    dubious: bool,
    line_no: usize,
}

impl TapParser {
    pub fn line(&mut self, raw: &[u8]) -> Result<(), ParseError> {
        self.line_no += 1;
        let clean = strip_ansi(raw);
        let text = String::from_utf8_lossy(&clean);
        let line = text.as_ref();
        if self.in_yaml {
            if line.trim() == "..." {
                self.in_yaml = false;
            }
            self.attach(raw);
            return Ok(());
        }
        if self.last.is_some() && line.trim() == "---" && line.starts_with(' ') {
            self.in_yaml = true;
            self.attach(raw);
            return Ok(());
        }
        if let Some(file) = prove_header(line) {
            self.close_section();
            self.section = Section { suite: file.to_string(), ..Default::default() };
            return Ok(());
        }
        if !self.section.suite.is_empty() && self.section.plan_met() && prove_verdict(line) {
            // prove's verdict on the file it just ran (`ok`, with --timer `ok  2 ms (…)`): not a test.
            self.last = None;
            return Ok(());
        }
        if let Some(code) =
            line.strip_prefix("Dubious, test returned ").filter(|_| !self.section.suite.is_empty())
        {
            // Test::More exits with its count of failures, which the failing tests already say; a file
            // that exits non-zero with no failing test (it died, or its END block failed) is prove's
            // failure all the same, and tmr's.
            if self.section.failed == 0 {
                let code = code.split_once(' ').map_or(code, |(c, _)| c);
                let file = &self.section.suite;
                self.run.problems.push(format!("{file}: exited with status {code} (prove fails the file)"));
                self.dubious = true;
            }
            self.last = None;
            self.run.stray.push_line(raw);
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix("1..") {
            let n = rest.split_once(" #").map_or(rest, |(n, _)| n).trim();
            if let Ok(n) = n.parse::<usize>() {
                if self.section.plan.is_some() {
                    return Err(self.error("a second plan in the same TAP stream"));
                }
                self.section.plan = Some((n, self.section.tests == 0));
                self.last = None;
                return Ok(());
            }
        }
        if let Some((ok, rest)) = test_line(line) {
            if matches!(self.section.plan, Some((_, false))) {
                return Err(self.error("a test line after the closing plan"));
            }
            self.section.tests += 1;
            self.test(ok, rest);
            return Ok(());
        }
        if let Some(reason) = line.strip_prefix("Bail out!") {
            self.bailed = true;
            self.run.problems.push(format!("line {}: the runner bailed out:{reason}", self.line_no));
            self.run.stray.push_line(raw);
            return Ok(());
        }
        if line.starts_with('#') {
            self.attach(raw);
        } else if !line.trim().is_empty() && !line.starts_with("TAP version ") {
            self.run.stray.push_line(raw);
        }
        Ok(())
    }

    /// Ends the parse: complete when every section's plan was met and nobody bailed out.
    pub fn finish(mut self) -> SuiteRun {
        self.close_section();
        self.run.complete =
            !self.bailed && !self.dubious && self.sections > 0 && self.planned_sections == self.sections;
        if self.sections == 0 {
            self.run.problems.push("no TAP plan or test line: the runner reported no test results".into());
        }
        self.run
    }

    fn error(&self, message: &str) -> ParseError {
        ParseError { line: self.line_no, message: message.into() }
    }

    /// Diagnostics belong to the test before them; before any test, to nobody.
    fn attach(&mut self, raw: &[u8]) {
        match self.last {
            Some(i) => self.run.results[i].output.push_line(raw),
            None => self.run.stray.push_line(raw),
        }
    }

    fn test(&mut self, ok: bool, rest: &str) {
        let rest = rest.trim_start();
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number = rest[..digits].parse::<usize>().unwrap_or(self.section.tests);
        let rest = rest[digits..].trim_start();
        let rest = rest.strip_prefix("- ").unwrap_or(rest);
        let (desc, directive) = split_directive(rest);
        let directive = directive.to_ascii_lowercase();
        let outcome = if directive.starts_with("skip") {
            TestOutcome::Skip
        } else if directive.starts_with("todo") {
            // An expected failure does not fail the suite; a TODO that passes is just a pass.
            if ok {
                TestOutcome::Pass
            } else {
                TestOutcome::Skip
            }
        } else if ok {
            TestOutcome::Pass
        } else {
            TestOutcome::Fail
        };
        let mut name = if desc.is_empty() { format!("#{number}") } else { desc.replace("\\#", "#") };
        if !self.section.names.insert(name.clone()) {
            name = format!("{name} #{number}");
            self.section.names.insert(name.clone());
        }
        if let Some((plan, true)) = self.section.plan {
            if number > plan {
                self.run
                    .problems
                    .push(format!("line {}: test {number} is beyond the plan 1..{plan}", self.line_no));
            }
        }
        if outcome == TestOutcome::Fail {
            self.section.failed += 1;
        }
        let suite = self.section.suite.clone();
        self.run.results.push(TestResult::new(TestId::new(suite, name), outcome));
        self.last = Some(self.run.results.len() - 1);
    }

    fn close_section(&mut self) {
        let s = std::mem::take(&mut self.section);
        self.last = None;
        self.in_yaml = false;
        if s.plan.is_none() && s.tests == 0 && s.suite.is_empty() {
            return;
        }
        self.sections += 1;
        let what = if s.suite.is_empty() { "the TAP stream".to_string() } else { s.suite.clone() };
        match s.plan {
            Some((n, _)) if n == s.tests => self.planned_sections += 1,
            Some((n, _)) => {
                self.run.problems.push(format!("{what}: planned {n} tests, reported {}", s.tests))
            }
            None => {
                self.run.problems.push(format!("{what}: no plan (the runner stopped before printing it)"))
            }
        }
    }
}

/// `ok ...` / `not ok ...` (the status alone, or followed by a space).
fn test_line(line: &str) -> Option<(bool, &str)> {
    for (prefix, ok) in [("ok", true), ("not ok", false)] {
        if let Some(rest) = line.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with(' ') {
                return Some((ok, rest));
            }
        }
    }
    None
}

/// Splits `desc # DIRECTIVE` at the first `#` not escaped as `\#`.
fn split_directive(s: &str) -> (String, String) {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'#' && (i == 0 || b[i - 1] != b'\\') {
            return (s[..i].trim().to_string(), s[i + 1..].trim().to_string());
        }
    }
    (s.trim().to_string(), String::new())
}

/// prove -v's verdict line on a file whose tests all passed: `ok`, or with `--timer` `ok   2 ms (…)`.
/// (A failing file's verdict, `Failed 1/2 subtests`, is no TAP line and needs no care.)
fn prove_verdict(line: &str) -> bool {
    let Some(rest) = line.trim_end().strip_prefix("ok") else { return false };
    if rest.is_empty() {
        return true;
    }
    let rest = rest.trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    line.as_bytes().get(2) == Some(&b' ') && digits > 0 && rest[digits..].starts_with(" ms")
}

/// prove's `FILE .. ` line that starts each file's section in verbose mode.
fn prove_header(line: &str) -> Option<&str> {
    let t = line.trim_end();
    // `--timer` starts the line with the wall-clock time, `[21:14:18] `: not part of the file's name.
    let t = match t.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((clock, rest)) if clock.len() == 8 && clock.bytes().all(|b| b.is_ascii_digit() || b == b':') => {
            rest
        }
        _ => t,
    };
    // prove pads the dots to its longest file name: `t/a.t ..... `, `t/long_name.t .. `.
    let dots = t.len() - t.trim_end_matches('.').len();
    let file = t.trim_end_matches('.').strip_suffix(' ').filter(|_| dots >= 2)?.trim_end();
    let plain = !file.is_empty() && !file.starts_with([' ', '#']) && test_line(file).is_none();
    plain.then_some(file)
}
