//! Parser for pytest's verbose console output (`-v`: `NODEID PASSED [ 9%]`, the `FAILURES` sections,
//! the closing `=== N passed in Xs ===` line), line by line. pytest writes its JUnit XML only when the
//! session ends, so a replica killed by a timeout leaves no XML; its console still says which tests
//! finished and which one was running (pytest prints the node id before running the test). Ids are the
//! JUnit ones (`classname` = module path with dots + classes, `name`), so both sources vote together.
//! Node ids are relative to pytest's rootdir ([`rootdir`]): reruns by node id run there. A user's own
//! `--junitxml` ([`user_junitxml`]) is overridden by tmr's per-replica path, so tmr writes it itself.

use super::{lines, strip_ansi, SuiteRun, TestId, TestOutcome, TestResult};

const STATUSES: [(&str, TestOutcome); 6] = [
    ("PASSED", TestOutcome::Pass),
    ("XPASS", TestOutcome::Pass),
    ("FAILED", TestOutcome::Fail),
    ("ERROR", TestOutcome::Fail),
    ("SKIPPED", TestOutcome::Skip),
    ("XFAIL", TestOutcome::Skip),
];

/// Never an error: anything that is not a result line is output, and what is missing makes the run
/// incomplete.
pub fn parse(out: &[u8]) -> SuiteRun {
    let mut run = SuiteRun::default();
    let mut section: Option<Option<usize>> = None;
    let mut summary = false;
    let mut root: Option<String> = None;
    for raw in lines(out) {
        let clean = strip_ansi(raw);
        let text = String::from_utf8_lossy(&clean);
        let line = text.trim_end();
        if root.is_none() {
            root =
                line.strip_prefix("rootdir: ").map(|r| r.split(',').next().unwrap_or(r).trim().to_string());
        }
        if let Some(title) = banner(line, '=') {
            summary |= title.contains(" in ")
                && (title.contains("passed")
                    || title.contains("failed")
                    || title.contains("no tests ran")
                    || title.contains("skipped")
                    || title.contains("error"));
            section = None;
            continue;
        }
        if let Some(title) = banner(line, '_') {
            let at = run.results.iter().position(|r| header_name(&r.name) == title);
            section = Some(at);
            continue;
        }
        if let Some(sec) = section {
            match sec {
                Some(i) => run.results[i].output.push_line(raw),
                None => run.stray.push_line(raw),
            }
            continue;
        }
        match result_line(line) {
            Some((nodeid, outcome)) => {
                let id = id_of(&rooted(nodeid, root.as_deref()));
                match run.results.iter_mut().find(|r| r.name == id) {
                    // A teardown error after a pass reports the node twice: the failure counts.
                    Some(r) if outcome == TestOutcome::Fail || r.outcome == TestOutcome::Crashed => {
                        r.outcome = outcome
                    }
                    Some(_) => {}
                    None => run.results.push(TestResult::new(id, outcome)),
                }
            }
            None => run.stray.push_line(raw),
        }
    }
    let unfinished: Vec<String> = run
        .results
        .iter()
        .filter(|r| r.outcome == TestOutcome::Crashed)
        .map(|r| r.name.to_string())
        .collect();
    for u in &unfinished {
        run.problems.push(format!("{u}: started, never finished"));
    }
    if !summary {
        run.problems.push("no closing `N passed in Xs` line: the pytest session did not end".into());
    }
    run.complete = summary && unfinished.is_empty();
    run
}

/// The user's own `--junitxml FILE` (or `--junit-xml`), the last one given: tmr adds its own per-replica
/// path after it (the last wins), so tmr writes the user's file itself from a replica's XML.
pub fn user_junitxml(argv: &[std::ffi::OsString]) -> Option<std::path::PathBuf> {
    let mut found = None;
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            break;
        }
        if s == "--junitxml" || s == "--junit-xml" {
            found = it.next().map(std::path::PathBuf::from);
        } else if let Some(v) = s.strip_prefix("--junitxml=").or_else(|| s.strip_prefix("--junit-xml=")) {
            found = Some(std::path::PathBuf::from(v));
        }
    }
    found
}

/// pytest's directory for node ids, from its `rootdir: DIR` header: a rerun by node id must run there.
pub fn rootdir(console: &[u8]) -> Option<String> {
    lines(console).take(20).find_map(|l| {
        let l = String::from_utf8_lossy(l);
        l.strip_prefix("rootdir: ").map(|r| r.split(',').next().unwrap_or(r).trim().to_string())
    })
}

/// The console shows paths relative to where pytest was started (`../../usr/lib/.../test_x.py`), node
/// ids and the XML relative to the rootdir: cut a console path back to the rootdir when it runs
/// through it.
fn rooted(nodeid: &str, root: Option<&str>) -> String {
    let Some(root) = root.map(|r| r.trim_matches('/')).filter(|r| !r.is_empty()) else {
        return nodeid.to_string();
    };
    let path = nodeid.split("::").next().unwrap_or(nodeid);
    if !path.starts_with("../") && !path.starts_with('/') {
        return nodeid.to_string();
    }
    match nodeid.find(&format!("{root}/")) {
        Some(i) if i < path.len() => nodeid[i + root.len() + 1..].to_string(),
        _ => nodeid.to_string(),
    }
}

/// `NODEID STATUS ...`, or a node id alone (the test that was running when the output stopped).
fn result_line(line: &str) -> Option<(&str, TestOutcome)> {
    let first = line.split(' ').next()?;
    if !first.contains("::") || line.starts_with(' ') {
        return None;
    }
    for (word, outcome) in STATUSES {
        if let Some(i) = line.find(&format!(" {word}")) {
            let after = &line[i + 1 + word.len()..];
            if after.is_empty() || after.starts_with(' ') {
                return Some((&line[..i], outcome));
            }
        }
    }
    // The node id of the test that was running, maybe followed by a shell's `Killed`; a parametrize id
    // may hold spaces, up to its closing bracket.
    let started = match first.find('[') {
        Some(_) if !first.ends_with(']') => line.rfind(']').map_or(first, |i| &line[..=i]),
        _ => first,
    };
    Some((started, TestOutcome::Crashed))
}

/// The text inside a `=== title ===` or `___ title ___` banner.
fn banner(line: &str, c: char) -> Option<&str> {
    let rest = line.strip_prefix(&format!("{c}{c}{c}"))?;
    let inner = rest.trim_start_matches(c).trim_end_matches(c).trim();
    (!inner.is_empty()).then_some(inner)
}

/// How pytest titles a failure section: the test's name after the module, classes joined with dots.
fn header_name(id: &TestId) -> String {
    let classes: Vec<&str> =
        id.suite.split('.').filter(|p| p.starts_with(|c: char| c.is_ascii_uppercase())).collect();
    let mut parts = classes;
    parts.push(&id.name);
    parts.join(".")
}

/// The JUnit id of a node id: `dir/test_m.py::Cls::test_x[p]` is classname `dir.test_m.Cls`, name
/// `test_x[p]`.
pub fn id_of(nodeid: &str) -> TestId {
    let mut parts: Vec<&str> = nodeid.split("::").collect();
    let name = parts.pop().unwrap_or_default();
    let mut class = Vec::new();
    if let Some(file) = parts.first() {
        class.push(file.strip_suffix(".py").unwrap_or(file).replace('/', "."));
    }
    class.extend(parts.iter().skip(1).map(|s| s.to_string()));
    TestId::new(class.join("."), name)
}
