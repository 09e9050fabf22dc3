use super::data;
use crate::suite::gotest::{parse, run_pattern};
use crate::suite::{SuiteRun, TestId, TestOutcome};

const PKG: &str = "example.com/tmrsuite";

fn outcome(run: &SuiteRun, name: &str) -> TestOutcome {
    run.get(&TestId::new(PKG, name)).unwrap_or_else(|| panic!("{name} missing: {run:#?}")).outcome
}

fn text(run: &SuiteRun, name: &str) -> String {
    String::from_utf8_lossy(&run.get(&TestId::new(PKG, name)).unwrap().output.bytes).into_owned()
}

#[test]
fn go_suite() {
    let run = parse(&data("go-test.json")).unwrap();
    assert!(run.complete, "{run:#?}");
    assert_eq!(run.results.len(), 11);
    assert_eq!(outcome(&run, "TestAdds"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "TestDeterministicFailure"), TestOutcome::Fail);
    assert_eq!(outcome(&run, "TestSkipped"), TestOutcome::Skip);
    assert_eq!(outcome(&run, "TestGroup/second_case"), TestOutcome::Pass);
    let t = text(&run, "TestDeterministicFailure");
    assert_eq!(t, "computing the answer\n    suite_test.go:41: expected 42, got 41\n");
    assert!(String::from_utf8_lossy(&run.stray.bytes).contains("FAIL\texample.com/tmrsuite"));
}

#[test]
fn a_panicking_test_binary_is_incomplete() {
    let run = parse(&data("go-test-panic.json")).unwrap();
    assert!(!run.complete);
    assert_eq!(outcome(&run, "TestPanicOnRequest"), TestOutcome::Fail);
    assert!(run.get(&TestId::new(PKG, "TestSkipped")).is_none());
    assert!(run.problems.iter().any(|p| p.contains("panicking on purpose")), "{:?}", run.problems);
}

#[test]
fn gos_own_timeout_names_the_hanging_test() {
    let run = parse(&data("go-test-timeout.json")).unwrap();
    assert!(!run.complete);
    assert_eq!(outcome(&run, "TestHangOnRequest"), TestOutcome::Timeout);
    assert!(text(&run, "TestHangOnRequest").contains("hanging on purpose"));
}

#[test]
fn the_rerun_of_a_subtest_reports_it_under_the_same_id() {
    let run = parse(&data("go-test-rerun.json")).unwrap();
    assert!(run.complete);
    assert_eq!(outcome(&run, "TestGroup/second_case"), TestOutcome::Pass);
    assert!(run.get(&TestId::new(PKG, "TestGroup/first")).is_none());
    assert_eq!(run_pattern("TestGroup/second_case"), "^TestGroup$/^second_case$");
    assert_eq!(run_pattern("TestA.b"), "^TestA\\.b$");
}

#[test]
fn cut_garbage_and_nothing() {
    let full = data("go-test.json");
    let run = parse(&full[..full.len() / 2]).unwrap();
    assert!(!run.complete);
    assert!(!run.results.is_empty());
    assert_eq!(parse(b"\nhello\n").unwrap_err().line, 2);
    let run = parse(b"").unwrap();
    assert!(!run.complete && !run.problems.is_empty());
}
