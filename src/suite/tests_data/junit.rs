use super::data;
use crate::suite::junit::{parse, pytest_nodeid};
use crate::suite::{SuiteRun, TestId, TestOutcome};

fn outcome(run: &SuiteRun, suite: &str, name: &str) -> TestOutcome {
    run.get(&TestId::new(suite, name)).unwrap_or_else(|| panic!("{suite} {name} missing: {run:#?}")).outcome
}

fn text(run: &SuiteRun, suite: &str, name: &str) -> String {
    String::from_utf8_lossy(&run.get(&TestId::new(suite, name)).unwrap().output.bytes).into_owned()
}

#[test]
fn pytest_suite() {
    let run = parse(&data("pytest.xml")).unwrap();
    assert!(run.complete, "{run:#?}");
    assert_eq!(run.results.len(), 11);
    assert_eq!(outcome(&run, "test_suite", "test_adds"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "test_suite", "test_deterministic_failure"), TestOutcome::Fail);
    assert_eq!(outcome(&run, "test_suite", "test_skipped"), TestOutcome::Skip);
    assert_eq!(outcome(&run, "test_suite", "test_param[2]"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "test_suite.TestGroup", "test_in_class"), TestOutcome::Pass);
    let t = text(&run, "test_suite", "test_deterministic_failure");
    assert!(t.starts_with("AssertionError: expected 42, got 41\nassert 41 == 42\n"), "{t}");
    assert!(t.contains(">       assert answer == 42"), "{t}");
    assert!(t.contains("computing the answer"), "{t}");
    let d = run.get(&TestId::new("test_suite", "test_deterministic_failure")).unwrap().duration;
    assert!(d.is_some());
}

#[test]
fn an_interrupted_pytest_keeps_what_it_finished() {
    let run = parse(&data("pytest-interrupted.xml")).unwrap();
    assert!(!run.complete);
    assert_eq!(run.results.len(), 5);
    assert!(run.get(&TestId::new("test_suite", "test_hang_on_request")).is_none());
    assert!(run.problems.iter().any(|p| p.contains("without a name")), "{:?}", run.problems);
}

#[test]
fn a_truncated_file_keeps_the_closed_cases() {
    let full = data("pytest.xml");
    let at = full.windows(12).position(|w| w == b"test_skipped").unwrap();
    let run = parse(&full[..at]).unwrap();
    assert!(!run.complete);
    assert_eq!(run.results.len(), 6);
    let line = 1 + full[..at].iter().filter(|&&b| b == b'\n').count();
    assert!(run.problems[0].contains(&format!("stops at line {line} ")), "{:?}", run.problems);
    let at = full.windows(9).position(|w| w == b"<skipped ").unwrap();
    let run = parse(&full[..at]).unwrap();
    assert!(!run.complete);
    assert_eq!(run.results.len(), 6);
    assert!(run.problems[0].contains("inside <testcase>"), "{:?}", run.problems);
}

#[test]
fn garbage_and_wrong_roots_are_errors_naming_the_line() {
    let e = parse(b"\n\nthis is not xml").unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    let e = parse(b"<?xml version=\"1.0\"?>\n<html></html>").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    let e = parse(b"<testsuite>\n<testcase name=\"a\">\n</failure>\n</testsuite>").unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    let run = parse(b"  \n").unwrap();
    assert!(!run.complete && !run.problems.is_empty());
}

#[test]
fn nested_suites_cdata_errors_and_duplicates() {
    let xml = br#"<testsuites><testsuite name="outer"><testsuite name="bin">
        <testcase name="a" time="1.5"><error message="boom"><![CDATA[x < y]]></error></testcase>
        <testcase name="a"><skipped/></testcase>
        <testcase name="b"><system-err>e &amp; &#65;</system-err></testcase>
        </testsuite></testsuite></testsuites>"#;
    let run = parse(xml).unwrap();
    assert!(run.complete, "{run:#?}");
    assert_eq!(outcome(&run, "bin", "a"), TestOutcome::Fail);
    assert_eq!(text(&run, "bin", "a"), "boom\nx < y\n");
    assert_eq!(outcome(&run, "bin", "a #2"), TestOutcome::Skip);
    assert_eq!(text(&run, "bin", "b"), "e & A\n");
    assert_eq!(run.results[0].duration, Some(std::time::Duration::from_millis(1500)));
}

#[test]
fn pytest_nodeids_from_classname() {
    let id = |c: &str, n: &str| TestId::new(c, n);
    let none = |_: &str| false;
    assert_eq!(pytest_nodeid(&id("test_suite", "test_param[2]"), none), "test_suite.py::test_param[2]");
    assert_eq!(pytest_nodeid(&id("test_suite.TestGroup", "t"), none), "test_suite.py::TestGroup::t");
    assert_eq!(
        pytest_nodeid(&id("tests.unit.test_x.TestA.TestB", "t"), none),
        "tests/unit/test_x.py::TestA::TestB::t"
    );
    let files = |p: &str| p == "tests/Weird.py";
    assert_eq!(pytest_nodeid(&id("tests.Weird.TestA", "t"), files), "tests/Weird.py::TestA::t");
    assert_eq!(pytest_nodeid(&id("", "t"), none), "t");
}

#[test]
fn pytest_nodeids_under_a_directory_with_a_dot_in_its_name() {
    let id = |c: &str, n: &str| TestId::new(c, n);
    let files = |p: &str| p == "sub.dir/tests/test_x.py" || p == "a/b.c/d.e/test_y.py";
    assert_eq!(pytest_nodeid(&id("sub.dir.tests.test_x", "t"), files), "sub.dir/tests/test_x.py::t");
    assert_eq!(
        pytest_nodeid(&id("sub.dir.tests.test_x.TestC", "t[1.5]"), files),
        "sub.dir/tests/test_x.py::TestC::t[1.5]"
    );
    assert_eq!(pytest_nodeid(&id("a.b.c.d.e.test_y", "t"), files), "a/b.c/d.e/test_y.py::t");
}
