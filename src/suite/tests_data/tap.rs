use super::data;
use crate::suite::tap::parse;
use crate::suite::{SuiteRun, TestId, TestOutcome};

fn outcome(run: &SuiteRun, suite: &str, name: &str) -> TestOutcome {
    run.get(&TestId::new(suite, name)).unwrap_or_else(|| panic!("{suite} {name} missing: {run:#?}")).outcome
}

fn text(run: &SuiteRun, suite: &str, name: &str) -> String {
    String::from_utf8_lossy(&run.get(&TestId::new(suite, name)).unwrap().output.bytes).into_owned()
}

#[test]
fn bats_suite() {
    for file in ["bats.tap", "bats-tap-flag.tap"] {
        let run = parse(&data(file)).unwrap();
        assert!(run.complete, "{file}: {run:#?}");
        assert!(run.problems.is_empty(), "{:?}", run.problems);
        assert_eq!(run.results.len(), 7);
        assert_eq!(outcome(&run, "", "adds"), TestOutcome::Pass);
        assert_eq!(outcome(&run, "", "deterministic failure"), TestOutcome::Fail);
        assert_eq!(outcome(&run, "", "skipped case"), TestOutcome::Skip);
        assert!(text(&run, "", "deterministic failure").contains("# expected 42, got 41"));
        assert!(text(&run, "", "adds").is_empty());
    }
}

#[test]
fn bats_filter_runs_one_test() {
    let run = parse(&data("bats-filter.tap")).unwrap();
    assert!(run.complete);
    assert_eq!(run.results.len(), 1);
    assert_eq!(outcome(&run, "", "deterministic failure"), TestOutcome::Fail);
}

#[test]
fn a_killed_bats_run_is_incomplete_and_keeps_its_last_words() {
    let run = parse(&data("bats-hang-killed.tap")).unwrap();
    assert!(!run.complete);
    assert_eq!(run.results.len(), 5);
    assert!(run.problems.iter().any(|p| p.contains("planned 7 tests, reported 5")), "{:?}", run.problems);
    assert!(String::from_utf8_lossy(&run.stray.bytes).contains("hanging on purpose"));
    assert!(run.get(&TestId::new("", "hang on request")).is_none());
}

#[test]
fn prove_verbose_merged() {
    let run = parse(&data("prove-merged.txt")).unwrap();
    assert!(run.complete, "{run:#?}");
    let f = "t/suite.t";
    assert_eq!(run.results.len(), 8);
    assert_eq!(outcome(&run, f, "adds"), TestOutcome::Pass);
    assert_eq!(outcome(&run, f, "deterministic failure"), TestOutcome::Fail);
    assert_eq!(outcome(&run, f, "#7"), TestOutcome::Skip);
    assert_eq!(outcome(&run, f, "todo case"), TestOutcome::Skip);
    assert!(text(&run, f, "deterministic failure").contains("expected 42, got 41"));
    assert!(String::from_utf8_lossy(&run.stray.bytes).contains("Result: FAIL"));
}

#[test]
fn prove_with_stderr_apart_still_parses() {
    let run = parse(&data("prove.stdout")).unwrap();
    assert!(run.complete);
    assert_eq!(outcome(&run, "t/suite.t", "deterministic failure"), TestOutcome::Fail);
}

#[test]
fn bail_out_plan_at_end_yaml_and_duplicates() {
    let tap = b"TAP version 13\nok 1 - a\nnot ok 2 - a\n  ---\n  message: boom\n  ...\nok 3 # SKIP no\nok 4 b \\# c\n1..4\n";
    let run = parse(tap).unwrap();
    assert!(run.complete, "{run:#?}");
    assert_eq!(outcome(&run, "", "a"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "", "a #2"), TestOutcome::Fail);
    assert!(text(&run, "", "a #2").contains("message: boom"));
    assert_eq!(outcome(&run, "", "#3"), TestOutcome::Skip);
    assert_eq!(outcome(&run, "", "b # c"), TestOutcome::Pass);

    let run = parse(b"1..3\nok 1 a\nBail out! database gone\n").unwrap();
    assert!(!run.complete);
    assert!(run.problems.iter().any(|p| p.contains("database gone")));
}

#[test]
fn malformed_streams_name_the_line() {
    assert_eq!(parse(b"1..2\nok 1\n1..2\n").unwrap_err().line, 3);
    assert_eq!(parse(b"ok 1\n1..1\nok 2\n").unwrap_err().line, 3);
}

#[test]
fn nothing_printed_is_incomplete() {
    let run = parse(b"").unwrap();
    assert!(!run.complete && run.results.is_empty() && !run.problems.is_empty());
    let run = parse(b"\x00\xff garbage\n").unwrap();
    assert!(!run.complete && run.results.is_empty());
}

#[test]
fn prove_passing_files_verdict_ok_is_not_a_test() {
    // prove -v ends each passing file with a bare `ok`: its verdict on the file, not TAP test N+1.
    let run = parse(&data("prove-passing.txt")).unwrap();
    assert!(run.complete, "{run:#?}");
    assert!(run.problems.is_empty(), "{:?}", run.problems);
    assert_eq!(run.results.len(), 10, "{:#?}", run.results);
    assert_eq!(outcome(&run, "t/pass.t", "two"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "t/plan_last.t", "first"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "t/todo_skip.t", "#1"), TestOutcome::Skip);
    assert_eq!(outcome(&run, "t/todo_skip.t", "todo failing"), TestOutcome::Skip);
    assert_eq!(outcome(&run, "t/todo_skip.t", "todo passing"), TestOutcome::Pass);
    assert!(run.results.iter().all(|r| r.outcome.is_good()), "{:#?}", run.results);
}

#[test]
fn prove_timer_verdict_and_header_clock() {
    let run = parse(&data("prove-timer.txt")).unwrap();
    assert!(run.complete, "{run:#?}");
    assert_eq!(run.results.len(), 2, "{:#?}", run.results);
    // The clock in `[21:14:47] t/pass.t ..` differs per replica: it must not be part of the file's name.
    assert_eq!(outcome(&run, "t/pass.t", "one"), TestOutcome::Pass);
}

#[test]
fn prove_dubious_files_make_the_run_fail() {
    let run = parse(&data("prove-dubious.txt")).unwrap();
    assert!(!run.complete, "{run:#?}");
    let problems = run.problems.join("\n");
    assert!(problems.contains("t/bad_exit.t: exited with status 3"), "{problems}");
    assert!(problems.contains("t/dies.t: exited with status 255"), "{problems}");
    assert!(problems.contains("t/dies.t: planned 3 tests, reported 1"), "{problems}");
    assert_eq!(outcome(&run, "t/bad_exit.t", "fine"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "t/pass.t", "two"), TestOutcome::Pass);
    assert!(!problems.contains("beyond the plan"), "{problems}");
}
