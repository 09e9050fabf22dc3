//! Parser for JUnit XML as pytest (`--junitxml`), nextest and most CI tools write it: `testsuites` /
//! `testsuite` (nested or not) / `testcase` with `failure`, `error`, `skipped`, `system-out` and
//! `system-err`, read with quick-xml (entities, CDATA and malformed documents are its job, not ours).
//! A test's id is its `classname` (the enclosing `testsuite`'s name when absent) and `name`;
//! [`pytest_nodeid`] turns a pytest id back into the node id that reruns it, asking the file system
//! which dots were directories (a directory may have a dot in its name). A document cut short is
//! not an error: the test cases closed before the cut are kept and the run is incomplete.

use std::time::Duration;

use quick_xml::errors::SyntaxError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{ParseError, SuiteRun, TestId, TestOutcome, TestResult};

pub fn parse(xml: &[u8]) -> Result<SuiteRun, ParseError> {
    let mut run = SuiteRun::default();
    if xml.iter().all(u8::is_ascii_whitespace) {
        run.problems.push("the JUnit file is empty: the runner reported no test results".into());
        return Ok(run);
    }
    let line_at = |pos: u64| 1 + xml[..(pos as usize).min(xml.len())].iter().filter(|&&b| b == b'\n').count();
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut suites: Vec<String> = Vec::new();
    let mut case: Option<TestResult> = None;
    let mut capturing = false;
    let mut seen_root = false;
    loop {
        let at = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(ev) => ev,
            // Every syntax error but one is "X not closed before the end of input": the file was cut.
            Err(quick_xml::Error::Syntax(e)) if seen_root && e != SyntaxError::InvalidBangMarkup => {
                stack.push(format!("{e}"));
                break;
            }
            Err(e) => {
                return Err(ParseError {
                    line: line_at(reader.error_position()),
                    message: format!("malformed JUnit XML: {e}"),
                })
            }
        };
        let err = |message: String| ParseError { line: line_at(at), message };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let tag = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if !seen_root {
                    if tag != "testsuites" && tag != "testsuite" {
                        return Err(err(format!(
                            "<{tag}> where a JUnit <testsuites> or <testsuite> should start"
                        )));
                    }
                    seen_root = true;
                }
                let attr = |n: &str| attr(e, n).map_err(&err);
                match tag.as_str() {
                    "testsuite" if !empty => suites.push(attr("name")?.unwrap_or_default()),
                    "testcase" => {
                        let name = attr("name")?.unwrap_or_default();
                        let class = match attr("classname")? {
                            Some(c) => c,
                            None => suites.last().cloned().unwrap_or_default(),
                        };
                        let mut r = TestResult::new(TestId::new(class, name), TestOutcome::Pass);
                        r.duration = attr("time")?
                            .and_then(|t| t.trim().parse::<f64>().ok())
                            .and_then(|s| Duration::try_from_secs_f64(s).ok());
                        if empty {
                            finish_case(&mut run, r, line_at(at));
                        } else {
                            case = Some(r);
                        }
                    }
                    "failure" | "error" | "skipped" | "system-out" | "system-err" if case.is_some() => {
                        let r = case.as_mut().expect("checked by the guard");
                        match tag.as_str() {
                            "failure" | "error" => r.outcome = TestOutcome::Fail,
                            "skipped" if r.outcome == TestOutcome::Pass => r.outcome = TestOutcome::Skip,
                            _ => {}
                        }
                        if let Some(m) = attr("message")?.filter(|m| !m.is_empty()) {
                            r.output.push_line(m.as_bytes());
                        }
                        capturing = !empty;
                    }
                    _ => {}
                }
                if !empty {
                    stack.push(tag);
                }
            }
            Event::End(_) => {
                let tag = stack.pop().unwrap_or_default();
                match tag.as_str() {
                    "testsuite" => {
                        suites.pop();
                    }
                    "testcase" => {
                        if let Some(r) = case.take() {
                            finish_case(&mut run, r, line_at(at));
                        }
                    }
                    _ => capturing = false,
                }
            }
            Event::Text(t) if capturing => {
                let text = t.decode().map_err(|e| err(format!("undecodable text: {e}")))?;
                push_text(&mut case, text.as_bytes());
            }
            Event::CData(t) if capturing => push_text(&mut case, &t.into_inner()),
            Event::GeneralRef(r) if capturing => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = r.decode().map_err(|e| err(format!("undecodable entity: {e}")))?;
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => s.to_string(),
                            None => format!("&{name};"),
                        }
                    }
                };
                push_text(&mut case, ch.as_bytes());
            }
            Event::Text(t) if !seen_root && !t.iter().all(u8::is_ascii_whitespace) => {
                let lead = t.iter().take_while(|b| b.is_ascii_whitespace()).count() as u64;
                return Err(ParseError {
                    line: line_at(at + lead),
                    message: "text where a JUnit <testsuites> or <testsuite> should start".into(),
                });
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(ParseError {
            line: line_at(xml.len() as u64),
            message: "no JUnit <testsuite> element".into(),
        });
    }
    if let Some(open) = stack.last() {
        let at = if open.contains(' ') { format!("({open})") } else { format!("inside <{open}>") };
        run.problems.push(format!(
            "the JUnit XML stops at line {} {at}: the runner stopped before finishing it",
            line_at(xml.len() as u64)
        ));
    }
    run.complete = stack.is_empty() && run.problems.is_empty();
    Ok(run)
}

/// The node id pytest reruns one test by: `path/to/test_mod.py::Class::name`. pytest's classname is
/// the module path with dots plus the class names; which dots were directories and which were dots in
/// a directory's name (`sub.dir/tests/test_x.py`) is not in the XML, so the longest prefix that
/// `is_file` finds as `*.py` (relative to where the rerun runs), with each dot read as `/` or kept
/// (fewest kept first), is the module; without one, the parts up to the first capitalised one
/// (pytest's `Test*` classes), dots read as `/`.
pub fn pytest_nodeid(id: &TestId, is_file: impl Fn(&str) -> bool) -> String {
    if id.suite.is_empty() {
        return id.name.clone();
    }
    let parts: Vec<&str> = id.suite.split('.').collect();
    let found = (1..=parts.len()).rev().find_map(|k| {
        module_paths(&parts[..k]).into_iter().find(|m| is_file(&format!("{m}.py"))).map(|m| (k, m))
    });
    let (module_len, module) = found.unwrap_or_else(|| {
        let classes =
            parts.iter().rev().take_while(|p| p.starts_with(|c: char| c.is_ascii_uppercase())).count();
        let k = (parts.len() - classes).max(1);
        (k, parts[..k].join("/"))
    });
    let mut nodeid = format!("{module}.py");
    for class in &parts[module_len..] {
        nodeid.push_str("::");
        nodeid.push_str(class);
    }
    nodeid.push_str("::");
    nodeid.push_str(&id.name);
    nodeid
}

/// At most this many dots of one classname are tried both ways (2^N paths): deeper ones read as `/`.
const MAX_DOTS_TRIED: usize = 10;

/// Every path `parts` can stand for, each dot between two parts read as `/` or kept as `.`, those with
/// fewer kept dots first (a dot in a directory's name is the exception).
fn module_paths(parts: &[&str]) -> Vec<String> {
    let gaps = parts.len().saturating_sub(1);
    if gaps > MAX_DOTS_TRIED {
        return vec![parts.join("/")];
    }
    let mut masks: Vec<u32> = (0..1u32 << gaps).collect();
    masks.sort_by_key(|m| m.count_ones());
    masks
        .into_iter()
        .map(|mask| {
            let mut path = parts[0].to_string();
            for (i, p) in parts[1..].iter().enumerate() {
                path.push(if mask & (1 << i) != 0 { '.' } else { '/' });
                path.push_str(p);
            }
            path
        })
        .collect()
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    for a in e.attributes() {
        let a = a.map_err(|err| format!("malformed attribute: {err}"))?;
        if a.key.local_name().as_ref() == name.as_bytes() {
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| format!("attribute {name}: {err}"))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

fn push_text(case: &mut Option<TestResult>, text: &[u8]) {
    if let Some(r) = case.as_mut() {
        r.output.push(text);
    }
}

/// What the problem about a nameless test case says (the case pytest writes for an interrupted test).
pub const NAMELESS_CASE: &str = "a test case without a name";

/// Records a closed test case; a nameless one (pytest writes one for the test it was interrupted in)
/// cannot be voted on, so it only marks the run incomplete.
fn finish_case(run: &mut SuiteRun, mut r: TestResult, line: usize) {
    if r.name.name.is_empty() {
        run.problems.push(format!("line {line}: {NAMELESS_CASE} (the run was interrupted there)"));
        return;
    }
    if !r.output.bytes.is_empty() && !r.output.bytes.ends_with(b"\n") {
        r.output.push(b"\n");
    }
    let base = r.name.name.clone();
    let mut n = 1;
    while run.get(&r.name).is_some() {
        n += 1;
        r.name.name = format!("{base} #{n}");
    }
    run.results.push(r);
}
