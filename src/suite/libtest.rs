//! Parser for libtest's stable human output (`cargo test`, or a test binary run directly): `running N
//! tests`, `test NAME ... ok|FAILED|ignored`, the `---- NAME stdout ----` failure sections and the `test
//! result:` summary, one block per test binary. Line by line, so it can follow a live run.
//!
//! Names: one `cargo test` runs several binaries whose test names may collide (`tests::smoke` in the lib
//! and in an integration test). Every test's [`TestId::suite`] is the binary's label from cargo's
//! `Running` line (`unittests src/lib.rs`, `tests/suite.rs`, `Doc-tests NAME`; a label seen twice, as in
//! a workspace, gets ` (crate)` appended), always, so ids never depend on which other binaries ran.
//! cargo prints `Running` on stderr and the results on stdout: [`parse`] pairs the k-th block of stdout
//! with the k-th label of stderr when the two streams were captured apart. [`cargo_target_args`] turns
//! a label back into cargo's target selector for a rerun, and [`without_cargo_status`] keeps what a
//! rerun wrote to stderr that is not cargo's own (`--nocapture` sends a panic message there; cargo's
//! status lines and compiler warnings are dropped). With `--nocapture` a failing test has no section:
//! its `thread 'NAME' panicked at` block, from stderr or the merged stream, stands for its output.

use std::collections::{HashMap, VecDeque};

use super::{lines, strip_ansi, ParseError, SuiteRun, TestId, TestOutcome, TestResult};

/// Parses one replica's `cargo test` (or test binary) output: `stdout`, and `stderr` for cargo's
/// `Running` lines when they are not already in `stdout` (pass the same merged bytes twice, or empty
/// stderr, when the streams were merged).
pub fn parse(stdout: &[u8], stderr: &[u8]) -> Result<SuiteRun, ParseError> {
    let merged = lines(stdout).any(|l| target_line(&String::from_utf8_lossy(&strip_ansi(l))).is_some());
    let mut p = LibtestParser::new();
    if !merged {
        p.targets =
            lines(stderr).filter_map(|l| target_line(&String::from_utf8_lossy(&strip_ansi(l)))).collect();
    }
    for l in lines(stdout) {
        p.line(l)?;
    }
    let mut run = p.finish();
    // `--nocapture`: a failing test has no section, its panic went to stderr (or the merged stream).
    attach_panics(&mut run, stderr);
    attach_panics(&mut run, stdout);
    Ok(run)
}

/// Gives each failed test that has no output its `thread 'NAME' panicked at` block from `text`, when
/// its name is unique in the run (a name in two binaries could take the other's panic).
fn attach_panics(run: &mut SuiteRun, text: &[u8]) {
    for i in 0..run.results.len() {
        let r = &run.results[i];
        if !r.output.is_empty() || r.outcome == TestOutcome::Pass || r.outcome == TestOutcome::Skip {
            continue;
        }
        let name = r.name.name.clone();
        if run.results.iter().filter(|o| o.name.name == name).count() > 1 {
            continue;
        }
        if let Some(block) = panic_block(text, &name) {
            run.results[i].output.push(&block);
        }
    }
}

/// The first `thread 'NAME' panicked at …` block in `text`: the panic line, its message and any
/// backtrace, up to a blank line, another thread's panic, a test line or cargo's `error:`.
pub fn panic_block(text: &[u8], name: &str) -> Option<Vec<u8>> {
    let start = format!("thread '{name}'");
    let mut out: Option<Vec<u8>> = None;
    for l in lines(text) {
        let clean = strip_ansi(l);
        let t = String::from_utf8_lossy(&clean);
        match out.as_mut() {
            None => {
                // `thread 'NAME' panicked at` (older Rust), `thread 'NAME' (TID) panicked at` (newer).
                if t.strip_prefix(&start).is_some_and(|r| r.contains(" panicked at")) {
                    out = Some([l, b"\n"].concat());
                }
            }
            Some(o) => {
                if t.trim().is_empty()
                    || t.starts_with("thread '")
                    || t.starts_with("test ")
                    || t.starts_with("error: ")
                {
                    break;
                }
                o.extend_from_slice(l);
                o.push(b'\n');
            }
        }
    }
    out
}

/// cargo's target selector for a test binary label, to rerun one test through `cargo test`; empty when
/// the label is unknown (a test binary run directly), so the name filter alone selects.
pub fn cargo_target_args(suite: &str) -> Vec<String> {
    let label = match suite.rfind(" (") {
        Some(i) if suite.ends_with(')') => &suite[..i],
        _ => suite,
    };
    if label.starts_with("Doc-tests ") {
        return vec!["--doc".into()];
    }
    let path = label.strip_prefix("unittests ").unwrap_or(label);
    let parts: Vec<&str> = path.split('/').collect();
    let stem = |f: &str| f.strip_suffix(".rs").unwrap_or(f).to_string();
    let named = |flag: &str, rest: &[&str]| -> Vec<String> {
        match rest {
            [file] => vec![flag.into(), stem(file)],
            [dir, "main.rs"] => vec![flag.into(), dir.to_string()],
            _ => vec![],
        }
    };
    match parts.as_slice() {
        ["src", "lib.rs"] => vec!["--lib".into()],
        ["src", "main.rs"] => vec!["--bins".into()],
        ["src", "bin", rest @ ..] => named("--bin", rest),
        ["tests", rest @ ..] => named("--test", rest),
        ["benches", rest @ ..] => named("--bench", rest),
        ["examples", rest @ ..] => named("--example", rest),
        _ => vec![],
    }
}

/// stderr without cargo's own status lines (`Compiling`, `Finished`, `Running`, ...): what is left is
/// the tests' and the harness's own words (`--nocapture` sends a panic message there).
pub fn without_cargo_status(stderr: &[u8]) -> Vec<u8> {
    const STATUS: &[&str] = &[
        "Compiling ",
        "Finished ",
        "Running ",
        "Doc-tests ",
        "Blocking ",
        "Fresh ",
        "Checking ",
        "Locking ",
    ];
    let mut out = Vec::new();
    // Inside a compiler diagnostic (`warning: …` and its ` --> `, `  |`, `1 | code`, `  = note` lines,
    // ended by a blank line): build noise, not the test's words.
    let mut diagnostic = false;
    for l in lines(stderr) {
        let clean = strip_ansi(l);
        let text = String::from_utf8_lossy(&clean);
        if text.starts_with("warning: ") || text.starts_with("warning[") {
            diagnostic = true;
            continue;
        }
        if diagnostic {
            let continued = text.starts_with([' ', '|', '=']) || snippet_line(&text);
            if text.trim().is_empty() {
                diagnostic = false;
                continue;
            }
            if continued {
                continue;
            }
            diagnostic = false;
        }
        if !STATUS.iter().any(|s| text.trim_start().starts_with(s)) {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
    }
    out
}

/// A diagnostic's source line, `12 | code` or `12 |`.
fn snippet_line(t: &str) -> bool {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && t[digits..].trim_start().starts_with('|')
}

/// A target line (`Running DESC (PATH)` or `Doc-tests NAME`) as (label, crate stem for disambiguation).
fn target_line(line: &str) -> Option<String> {
    let t = line.trim();
    if let Some(rest) = t.strip_prefix("Running ") {
        let (desc, path) = match rest.rfind(" (") {
            Some(i) if rest.ends_with(')') => (&rest[..i], &rest[i + 2..rest.len() - 1]),
            _ => (rest, ""),
        };
        let file = path.rsplit('/').next().unwrap_or("");
        let stem = match file.rsplit_once('-') {
            Some((s, h)) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()) => s,
            _ => file,
        };
        return Some(format!("{desc}\u{0}{stem}"));
    }
    t.strip_prefix("Doc-tests ").map(|n| format!("Doc-tests {n}\u{0}{n}"))
}

#[derive(Debug)]
struct Block {
    suite: String,
    announced: usize,
    first: usize,
    /// A serial-mode test whose status line has not come yet (`test NAME ... ` then its output).
    pending: Option<usize>,
    failures_listed: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Section {
    Results,
    /// Inside `---- NAME stdout ----` of this result.
    Output(Option<usize>),
    /// A `failures:` (true) or `successes:` list of names, or the heading before the sections.
    List(bool),
}

/// The streaming parser: feed lines with [`LibtestParser::line`], then [`LibtestParser::finish`].
#[derive(Debug)]
pub struct LibtestParser {
    run: SuiteRun,
    targets: VecDeque<String>,
    next_label: Option<String>,
    used_labels: HashMap<String, usize>,
    block: Option<Block>,
    section: Section,
    blocks: usize,
    summaries: usize,
    line_no: usize,
}

impl Default for LibtestParser {
    fn default() -> Self {
        Self::new()
    }
}

impl LibtestParser {
    pub fn new() -> Self {
        LibtestParser {
            run: SuiteRun::default(),
            targets: VecDeque::new(),
            next_label: None,
            used_labels: HashMap::new(),
            block: None,
            section: Section::Results,
            blocks: 0,
            summaries: 0,
            line_no: 0,
        }
    }

    /// Feeds one line (without its newline).
    pub fn line(&mut self, raw: &[u8]) -> Result<(), ParseError> {
        self.line_no += 1;
        let clean = strip_ansi(raw);
        let text = String::from_utf8_lossy(&clean);
        let line = text.as_ref();
        if let Section::Output(at) = self.section {
            // A failing test's captured output may hold a whole nested libtest run (a test that runs
            // `cargo test`): inside a section only the next section or the closing list counts.
            let next = line.strip_prefix("---- ").and_then(|r| r.strip_suffix(" stdout ----"));
            let known = next.and_then(|n| self.find(n));
            if known.is_none() && line != "failures:" && line != "successes:" {
                match at {
                    Some(i) => self.run.results[i].output.push_line(raw),
                    None => self.run.stray.push_line(raw),
                }
                return Ok(());
            }
        }
        if let Some(label) = target_line(line) {
            self.close_block();
            self.next_label = Some(label);
            self.run.stray.push_line(raw);
            return Ok(());
        }
        if let Some(n) = running_line(line) {
            self.close_block();
            let label = self.next_label.take().or_else(|| self.targets.pop_front());
            let suite = label.map(|l| self.unique_label(&l)).unwrap_or_default();
            self.blocks += 1;
            let first = self.run.results.len();
            self.block = Some(Block { suite, announced: n, first, pending: None, failures_listed: vec![] });
            self.section = Section::Results;
            return Ok(());
        }
        if line.starts_with("test result: ") {
            if self.block.is_none() {
                return Err(self.error("`test result:` without a `running N tests` line before it"));
            }
            self.summaries += 1;
            self.close_summarised();
            return Ok(());
        }
        let Some(block) = self.block.as_mut() else {
            self.run.stray.push_line(raw);
            return Ok(());
        };
        if let Some(p) = block.pending {
            if let Some(outcome) = status(line) {
                self.run.results[p].outcome = outcome;
                block.pending = None;
                return Ok(());
            }
        }
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, st)) =
                rest.split_once(" ...").map(|(n, s)| (n, s.strip_prefix(' ').unwrap_or(s)))
            {
                let name = name.strip_suffix(" - should panic").unwrap_or(name).to_string();
                let idx = self.result_index(&name);
                match status(st) {
                    Some(outcome) => self.run.results[idx].outcome = outcome,
                    None => {
                        let b = self.block.as_mut().expect("block checked above");
                        b.pending = Some(idx);
                        if !st.is_empty() {
                            self.run.results[idx].output.push_line(st.as_bytes());
                        }
                    }
                }
                return Ok(());
            }
            if let Some(name) = rest.strip_suffix(" has been running for over 60 seconds") {
                self.result_index(name);
                return Ok(());
            }
        }
        if let Some(name) = line.strip_prefix("---- ").and_then(|r| r.strip_suffix(" stdout ----")) {
            let idx = self.find(name);
            self.section = Section::Output(idx);
            return Ok(());
        }
        if line == "failures:" || line == "successes:" {
            self.section = Section::List(line == "failures:");
            return Ok(());
        }
        let pending = self.block.as_ref().and_then(|b| b.pending);
        match (self.section, pending) {
            (Section::Output(Some(i)), _) | (_, Some(i)) => self.run.results[i].output.push_line(raw),
            (Section::List(true), _) if line.starts_with("    ") => {
                let name = line.trim().to_string();
                self.block.as_mut().expect("block checked above").failures_listed.push(name);
            }
            (Section::List(false), _) if line.starts_with("    ") => {}
            _ if line.is_empty() => {}
            _ => self.run.stray.push_line(raw),
        }
        Ok(())
    }

    /// Ends the parse. A block that never printed its `test result:` line means the test binary died
    /// midway (or the run was killed): its tests still marked as started stay `Crashed`.
    pub fn finish(mut self) -> SuiteRun {
        self.close_block();
        let mut complete = self.blocks > 0 && self.summaries == self.blocks;
        if self.blocks == 0 {
            self.run.problems.push("no `running N tests` line: the runner reported no test results".into());
        }
        if let Some(label) = self.next_label.take().or_else(|| self.targets.pop_front()) {
            complete = false;
            let label = label.split('\0').next().unwrap_or_default().to_string();
            self.run.problems.push(format!("{label}: started but printed no results"));
        }
        self.run.complete = complete;
        self.run
    }

    fn error(&self, message: &str) -> ParseError {
        ParseError { line: self.line_no, message: message.into() }
    }

    fn unique_label(&mut self, label: &str) -> String {
        let (desc, stem) = label.split_once('\0').unwrap_or((label, ""));
        let seen = self.used_labels.entry(desc.to_string()).or_insert(0);
        *seen += 1;
        if *seen == 1 || stem.is_empty() {
            desc.to_string()
        } else {
            format!("{desc} ({stem})")
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        let b = self.block.as_ref()?;
        (b.first..self.run.results.len()).find(|&i| self.run.results[i].name.name == name)
    }

    /// The result for `name` in the current block, created as `Crashed` (started, not finished) when new.
    fn result_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.find(name) {
            return i;
        }
        let suite = self.block.as_ref().map(|b| b.suite.clone()).unwrap_or_default();
        self.run.results.push(TestResult::new(TestId::new(suite, name), TestOutcome::Crashed));
        self.run.results.len() - 1
    }

    /// The block printed its summary: a serial-mode test whose status got glued to its own output is
    /// decided by the closing `failures:` list.
    fn close_summarised(&mut self) {
        if let Some(b) = self.block.take() {
            if let Some(p) = b.pending {
                let failed = b.failures_listed.iter().any(|n| *n == self.run.results[p].name.name);
                self.run.results[p].outcome = if failed { TestOutcome::Fail } else { TestOutcome::Pass };
            }
            self.check_count(&b, true);
        }
        self.section = Section::Results;
    }

    fn close_block(&mut self) {
        if let Some(b) = self.block.take() {
            self.check_count(&b, false);
        }
        self.section = Section::Results;
    }

    fn check_count(&mut self, b: &Block, summarised: bool) {
        let reported = self.run.results.len() - b.first;
        let what = if b.suite.is_empty() { "the test binary".to_string() } else { b.suite.clone() };
        if !summarised {
            self.run.problems.push(format!(
                "{what}: announced {} tests, reported {reported}, then stopped before its `test result:` line",
                b.announced
            ));
        } else if reported != b.announced {
            self.run
                .problems
                .push(format!("{what}: announced {} tests but reported {reported}", b.announced));
        }
    }
}

fn running_line(line: &str) -> Option<usize> {
    let rest = line.strip_prefix("running ")?;
    let n = rest.strip_suffix(" tests").or_else(|| rest.strip_suffix(" test"))?;
    n.parse().ok()
}

fn status(s: &str) -> Option<TestOutcome> {
    let s = s.trim_end();
    if s == "ok" || s.starts_with("bench:") {
        Some(TestOutcome::Pass)
    } else if s == "FAILED" || s.starts_with("FAILED ") {
        Some(TestOutcome::Fail)
    } else if s == "ignored" || s.starts_with("ignored, ") {
        Some(TestOutcome::Skip)
    } else {
        None
    }
}
