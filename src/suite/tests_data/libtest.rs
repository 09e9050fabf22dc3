use super::data;
use crate::suite::libtest::{cargo_target_args, parse, without_cargo_status, LibtestParser};
use crate::suite::{SuiteRun, TestId, TestOutcome};

fn outcome(run: &SuiteRun, suite: &str, name: &str) -> TestOutcome {
    run.get(&TestId::new(suite, name)).unwrap_or_else(|| panic!("{suite} {name} missing: {run:#?}")).outcome
}

fn text(run: &SuiteRun, suite: &str, name: &str) -> String {
    String::from_utf8_lossy(&run.get(&TestId::new(suite, name)).unwrap().output.bytes).into_owned()
}

#[test]
fn cargo_test_with_streams_apart_names_every_binary() {
    let run = parse(&data("cargo-test.stdout"), &data("cargo-test.stderr")).unwrap();
    assert!(run.complete, "{run:#?}");
    assert!(run.problems.is_empty(), "{:?}", run.problems);
    assert_eq!(run.results.len(), 1 + 2 + 8 + 1);
    assert_eq!(outcome(&run, "Doc-tests tmr_suite", "src/lib.rs - uniform (line 11)"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "unittests src/lib.rs", "tests::smoke"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "tests/other.rs", "tests::smoke"), TestOutcome::Pass);
    let s = "tests/suite.rs";
    assert_eq!(outcome(&run, s, "deterministic_failure"), TestOutcome::Fail);
    assert_eq!(outcome(&run, s, "ignored_case"), TestOutcome::Skip);
    assert_eq!(outcome(&run, s, "adds"), TestOutcome::Pass);
    let out = text(&run, s, "deterministic_failure");
    assert!(out.starts_with("computing the answer\n"), "{out}");
    assert!(out.contains("expected 42, got 41"), "{out}");
    assert!(!out.contains("failures:"), "{out}");
}

#[test]
fn merged_streams_give_the_same_results() {
    let apart = parse(&data("cargo-test.stdout"), &data("cargo-test.stderr")).unwrap();
    let merged = data("cargo-test-merged.txt");
    let run = parse(&merged, &merged).unwrap();
    assert!(run.complete);
    let ids = |r: &SuiteRun| r.results.iter().map(|t| (t.name.clone(), t.outcome)).collect::<Vec<_>>();
    let mut a = ids(&apart);
    let mut b = ids(&run);
    // The flaky test may differ between the two captures.
    a.retain(|(id, _)| id.name != "flaky");
    b.retain(|(id, _)| id.name != "flaky");
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn an_aborting_test_binary_leaves_the_run_incomplete_and_the_next_binary_parsed() {
    let run = parse(&data("cargo-test-abort.stdout"), &data("cargo-test-abort.stderr")).unwrap();
    assert!(!run.complete);
    assert!(
        run.problems.iter().any(|p| p.contains("tests/suite.rs: announced 8 tests, reported")),
        "{:?}",
        run.problems
    );
    assert_eq!(outcome(&run, "tests/other.rs", "tests::smoke"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "Doc-tests tmr_suite", "src/lib.rs - uniform (line 11)"), TestOutcome::Pass);
    assert!(run.results.iter().all(|r| r.name.suite != "tests/suite.rs" || r.outcome != TestOutcome::Fail));
}

#[test]
fn a_test_binary_run_directly_has_no_suite_label() {
    let run = parse(&data("libtest-binary.txt"), b"").unwrap();
    assert!(run.complete);
    assert_eq!(run.results.len(), 8);
    assert_eq!(outcome(&run, "", "deterministic_failure"), TestOutcome::Fail);
    assert!(text(&run, "", "deterministic_failure").contains("expected 42, got 41"));
}

#[test]
fn nocapture_serial_output_goes_to_its_test() {
    let run = parse(&data("libtest-nocapture.txt"), b"").unwrap();
    assert!(run.complete, "{run:#?}");
    assert_eq!(outcome(&run, "", "deterministic_failure"), TestOutcome::Fail);
    assert_eq!(outcome(&run, "", "prints_timing_and_seed"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "", "strings"), TestOutcome::Pass);
    let t = text(&run, "", "prints_timing_and_seed");
    assert!(t.starts_with("random seed ") && t.contains("\ntook "), "{t}");
    assert!(text(&run, "", "deterministic_failure").contains("expected 42, got 41"));
}

#[test]
fn a_killed_hang_is_crashed_and_named() {
    let run = parse(&data("libtest-hang-killed.txt"), b"").unwrap();
    assert!(!run.complete);
    assert_eq!(outcome(&run, "", "hang_on_request"), TestOutcome::Crashed);
    assert_eq!(outcome(&run, "", "deterministic_failure"), TestOutcome::Fail);
    assert_eq!(run.results.len(), 8);
}

#[test]
fn two_hundred_tests_and_the_flaky_one() {
    let run = parse(&data("cargo-test-many.stdout"), b"").unwrap();
    assert!(run.complete);
    assert_eq!(run.results.len(), 201);
    assert!(run.get(&TestId::new("", "flaky")).is_some());
}

#[test]
fn nothing_printed_is_incomplete_with_a_problem() {
    let run = parse(b"", b"").unwrap();
    assert!(!run.complete);
    assert!(run.results.is_empty());
    assert!(!run.problems.is_empty());
}

#[test]
fn a_summary_out_of_nowhere_is_an_error_naming_the_line() {
    let err = parse(b"hello\ntest result: ok. 1 passed\n", b"").unwrap_err();
    assert_eq!(err.line, 2);
}

#[test]
fn truncated_mid_section_keeps_what_was_reported() {
    let full = data("libtest-binary.txt");
    let cut = &full[..full.windows(6).position(|w| w == b"left: ").unwrap()];
    let run = parse(cut, b"").unwrap();
    assert!(!run.complete);
    assert_eq!(run.results.len(), 8);
    assert!(text(&run, "", "deterministic_failure").contains("expected 42, got 41"));
}

#[test]
fn duplicate_labels_in_a_workspace_get_the_crate() {
    let mut p = LibtestParser::new();
    for l in [
        "     Running unittests src/lib.rs (target/debug/deps/a-0123456789abcdef)",
        "running 1 test",
        "test t ... ok",
        "test result: ok. 1 passed",
        "     Running unittests src/lib.rs (target/debug/deps/b_c-0123456789abcdef)",
        "running 1 test",
        "test t ... ok",
        "test result: ok. 1 passed",
    ] {
        p.line(l.as_bytes()).unwrap();
    }
    let run = p.finish();
    assert!(run.complete);
    assert!(run.get(&TestId::new("unittests src/lib.rs", "t")).is_some());
    assert!(run.get(&TestId::new("unittests src/lib.rs (b_c)", "t")).is_some());
}

#[test]
fn labels_map_back_to_cargo_selectors() {
    assert_eq!(cargo_target_args("unittests src/lib.rs"), ["--lib"]);
    assert_eq!(cargo_target_args("unittests src/lib.rs (b_c)"), ["--lib"]);
    assert_eq!(cargo_target_args("unittests src/main.rs"), ["--bins"]);
    assert_eq!(cargo_target_args("unittests src/bin/x-y.rs"), ["--bin", "x-y"]);
    assert_eq!(cargo_target_args("tests/suite.rs"), ["--test", "suite"]);
    assert_eq!(cargo_target_args("tests/big/main.rs"), ["--test", "big"]);
    assert_eq!(cargo_target_args("Doc-tests tmr_suite"), ["--doc"]);
    assert!(cargo_target_args("").is_empty());
}

#[test]
fn should_panic_and_colour_are_understood() {
    let run = parse(b"running 2 tests\ntest a - should panic ... \x1b[32mok\x1b[0m\ntest b ... FAILED\n\ntest result: FAILED. 1 passed; 1 failed\n", b"").unwrap();
    assert_eq!(outcome(&run, "", "a"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "", "b"), TestOutcome::Fail);
}

#[test]
fn a_rerun_of_one_test_reports_the_same_id() {
    let full = parse(&data("cargo-test.stdout"), &data("cargo-test.stderr")).unwrap();
    let one = parse(&data("cargo-test-rerun.stdout"), &data("cargo-test-rerun.stderr")).unwrap();
    assert!(one.complete);
    assert_eq!(one.results.len(), 1);
    let id = &one.results[0].name;
    assert_eq!(full.get(id).unwrap().outcome, TestOutcome::Fail);
    assert_eq!(one.results[0].outcome, TestOutcome::Fail);
}

#[test]
fn a_nested_libtest_run_inside_a_failure_section_is_output() {
    let out = b"running 2 tests\ntest outer ... FAILED\ntest other ... ok\n\nfailures:\n\n---- outer stdout ----\n\
        running 1 test\ntest inner ... ok\n\ntest result: ok. 1 passed\n---- inner stdout ----\nfailures:\n\n    outer\n\n\
        test result: FAILED. 1 passed; 1 failed\n";
    let run = parse(out, b"").unwrap();
    assert!(run.complete, "{run:#?}");
    assert_eq!(run.results.len(), 2);
    assert_eq!(outcome(&run, "", "outer"), TestOutcome::Fail);
    assert!(text(&run, "", "outer")
        .contains("test inner ... ok\n\ntest result: ok. 1 passed\n---- inner stdout ----\n"));
}

#[test]
fn a_real_workspace_keeps_same_named_tests_of_two_packages_apart() {
    let run = parse(&data("cargo-workspace.stdout"), &data("cargo-workspace.stderr")).unwrap();
    assert!(run.complete, "{run:#?}");
    assert_eq!(outcome(&run, "unittests src/lib.rs", "tests::t"), TestOutcome::Pass);
    assert_eq!(outcome(&run, "unittests src/lib.rs (b_crate)", "tests::t"), TestOutcome::Fail);
    assert_eq!(cargo_target_args("unittests src/lib.rs (b_crate)"), ["--lib"]);
}

#[test]
fn cargo_status_lines_are_not_a_tests_output() {
    let stderr = b"   Compiling tmr-suite v0.1.0\n    Finished `test` profile\n     Running tests/suite.rs (target/debug/deps/suite-0123456789abcdef)\n\nthread 'deterministic_failure' panicked at tests/suite.rs:23:5:\nexpected 42, got 41\nerror: test failed, to rerun pass `--test suite`\n";
    let kept = String::from_utf8(without_cargo_status(stderr)).unwrap();
    assert!(kept.starts_with("\nthread 'deterministic_failure' panicked"), "{kept}");
    assert!(kept.contains("expected 42, got 41\n"), "{kept}");
    assert!(!kept.contains("Compiling") && !kept.contains("Running"), "{kept}");
}

#[test]
fn nocapture_failure_gets_its_panic_block_and_warnings_are_build_noise() {
    // cargo test -- --nocapture in a crate with a compiler warning: the failing test has no section in
    // stdout; its panic is on stderr, after cargo's warnings and status lines.
    let stdout = data("cargo-test-nocapture-warnings.stdout");
    let stderr = data("cargo-test-nocapture-warnings.stderr");
    let run = parse(&stdout, &stderr).unwrap();
    assert!(run.complete, "{run:#?}");
    let suite = "unittests src/lib.rs";
    assert_eq!(outcome(&run, suite, "tests::fails"), TestOutcome::Fail);
    let out = text(&run, suite, "tests::fails");
    assert!(out.starts_with("thread 'tests::fails'"), "{out}");
    assert!(out.contains("expected 42, got 41"), "{out}");
    assert!(!out.contains("warning") && !out.contains("error: test failed"), "{out}");
    assert!(text(&run, suite, "tests::passes").is_empty());

    let loose = String::from_utf8(without_cargo_status(&stderr)).unwrap();
    assert!(loose.trim_start().starts_with("thread 'tests::fails'"), "{loose}");
    assert!(!loose.contains("warning") && !loose.contains("unused_warning"), "{loose}");
}
