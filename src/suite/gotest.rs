//! Parser for `go test -json` (test2json events, one JSON object a line): `run`, `output`, `pass`,
//! `fail`, `skip` per test (subtests as `Parent/sub`), and per package without a test. A test's id is
//! its package and name. A test that started and never ended was running when the test binary died:
//! `Timeout` when go's own `-timeout` alarm says so in its output, else `Crashed`; either way, and when
//! the binary panicked, the tests after it never ran and the run is incomplete.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::{lines, ParseError, SuiteRun, TestId, TestOutcome, TestResult};

#[derive(Deserialize)]
struct GoEvent {
    #[serde(rename = "Action")]
    action: String,
    #[serde(rename = "Package", default)]
    package: String,
    #[serde(rename = "Test")]
    test: Option<String>,
    #[serde(rename = "Output")]
    output: Option<String>,
    #[serde(rename = "Elapsed")]
    elapsed: Option<f64>,
}

pub fn parse(out: &[u8]) -> Result<SuiteRun, ParseError> {
    let mut run = SuiteRun::default();
    let mut index: HashMap<TestId, usize> = HashMap::new();
    // Package -> whether go printed its final pass/fail/skip.
    let mut packages: Vec<(String, bool)> = Vec::new();
    let mut panicked: Vec<(String, String)> = Vec::new();
    let mut events = 0;
    let all: Vec<&[u8]> = lines(out).collect();
    let unterminated = !out.is_empty() && !out.ends_with(b"\n");
    for (i, raw) in all.iter().enumerate() {
        let ev: GoEvent = match serde_json::from_slice(raw) {
            Ok(ev) => ev,
            Err(_) if raw.iter().all(u8::is_ascii_whitespace) => continue,
            Err(_) if unterminated && i + 1 == all.len() => {
                run.problems.push(format!("line {}: a JSON event cut short (the runner was killed)", i + 1));
                run.stray.push_line(raw);
                continue;
            }
            Err(e) if events == 0 => {
                return Err(ParseError { line: i + 1, message: format!("not `go test -json` output: {e}") });
            }
            Err(_) => {
                // go prints build errors and some failures as plain text among the events.
                run.stray.push_line(raw);
                continue;
            }
        };
        events += 1;
        let pkg = match packages.iter().position(|(p, _)| *p == ev.package) {
            Some(p) => p,
            None => {
                packages.push((ev.package.clone(), false));
                packages.len() - 1
            }
        };
        let Some(test) = ev.test else {
            match ev.action.as_str() {
                "pass" | "fail" | "skip" => packages[pkg].1 = true,
                "output" => run.stray.push(ev.output.unwrap_or_default().as_bytes()),
                _ => {}
            }
            continue;
        };
        let id = TestId::new(ev.package.clone(), test);
        let at = *index.entry(id.clone()).or_insert_with(|| {
            run.results.push(TestResult::new(id.clone(), TestOutcome::Crashed));
            run.results.len() - 1
        });
        let r = &mut run.results[at];
        match ev.action.as_str() {
            "pass" => r.outcome = TestOutcome::Pass,
            "fail" => r.outcome = TestOutcome::Fail,
            "skip" => r.outcome = TestOutcome::Skip,
            "output" => {
                let text = ev.output.unwrap_or_default();
                if text.starts_with("panic: test timed out after ") {
                    r.outcome = TestOutcome::Timeout;
                } else if text.starts_with("panic: ") {
                    panicked.push((id.to_string(), text.trim_end().to_string()));
                }
                if !is_framing(&text) {
                    r.output.push(text.as_bytes());
                }
            }
            _ => {}
        }
        if matches!(ev.action.as_str(), "pass" | "fail" | "skip") {
            r.duration = ev.elapsed.and_then(|s| Duration::try_from_secs_f64(s).ok());
        }
    }
    if events == 0 {
        run.problems.push("no `go test -json` events: the runner reported no test results".into());
    }
    for r in &run.results {
        match r.outcome {
            TestOutcome::Timeout => {
                run.problems.push(format!("{}: go's -timeout stopped the test binary here", r.name))
            }
            TestOutcome::Crashed => run.problems.push(format!("{}: started, never finished", r.name)),
            _ => {}
        }
    }
    for (test, what) in &panicked {
        run.problems.push(format!("{test}: {what}; the tests after it never ran"));
    }
    for (p, done) in &packages {
        if !done {
            run.problems.push(format!("{p}: no final pass/fail (the runner stopped before it)"));
        }
    }
    let unfinished =
        run.results.iter().any(|r| matches!(r.outcome, TestOutcome::Crashed | TestOutcome::Timeout));
    run.complete = events > 0 && packages.iter().all(|(_, done)| *done) && panicked.is_empty() && !unfinished;
    Ok(run)
}

/// go's own `=== RUN` / `--- PASS: T (0.00s)` lines: the outcome already says what they say, and a
/// summary showing a test's first lines should show its message instead.
fn is_framing(text: &str) -> bool {
    let t = text.trim_start();
    ["=== RUN ", "=== PAUSE ", "=== CONT ", "=== NAME ", "--- PASS: ", "--- FAIL: ", "--- SKIP: "]
        .iter()
        .any(|p| t.starts_with(p))
}

/// The `-run` pattern selecting exactly one test or subtest: go matches each `/`-separated level
/// against its own part of the pattern.
pub fn run_pattern(name: &str) -> String {
    name.split('/').map(|part| format!("^{}$", regex::escape(part))).collect::<Vec<_>>().join("/")
}
