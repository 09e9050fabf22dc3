//! Runner detection and command lines (pure; the rerun lines were also run for real, see
//! fixtures/suites/README.md).

use std::ffi::OsString;
use std::path::Path;

use crate::suite::{Runner, TestId};

fn argv(s: &str) -> Vec<OsString> {
    s.split(' ').map(OsString::from).collect()
}

fn line(v: &[OsString]) -> String {
    v.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

#[test]
fn detection() {
    let d = |s: &str| Runner::detect(&argv(s));
    assert_eq!(d("cargo test"), Some(Runner::Libtest));
    assert_eq!(d("/usr/bin/cargo +nightly -q test --workspace"), Some(Runner::Libtest));
    assert_eq!(d("cargo build"), None);
    assert_eq!(d("target/debug/deps/suite-06fe714251372906 --exact a"), Some(Runner::Libtest));
    assert_eq!(d("target/debug/suite"), None);
    assert_eq!(d("pytest -q tests/"), Some(Runner::Pytest));
    assert_eq!(d("/usr/bin/python3.11 -m pytest"), Some(Runner::Pytest));
    assert_eq!(d("python3 -m unittest"), None);
    assert_eq!(d("bats test/"), Some(Runner::Tap));
    assert_eq!(d("prove -r t"), Some(Runner::Tap));
    assert_eq!(d("./run-suite.sh"), None);
    assert_eq!(d("go test ./..."), Some(Runner::GoTest));
    assert_eq!(d("go build"), None);
    assert_eq!(Runner::detect(&[]), None);
    assert_eq!(Runner::from_name("junit"), Some(Runner::Junit));
}

#[test]
fn prepare_makes_each_runner_report_per_test() {
    let p = |r: Runner, s: &str| line(&r.prepare(&argv(s), Some(Path::new("/tmp/r1.xml"))).unwrap());
    assert_eq!(p(Runner::Libtest, "cargo test"), "cargo test --no-fail-fast -- --format pretty");
    assert_eq!(
        p(Runner::Libtest, "cargo +stable -q test --no-fail-fast -p x -- -q --format=terse --test-threads 2"),
        "cargo +stable test --no-fail-fast -p x -- --test-threads 2 --format pretty"
    );
    assert_eq!(
        p(Runner::Libtest, "target/debug/deps/s-06fe714251372906 --format json a"),
        "target/debug/deps/s-06fe714251372906 a --format pretty"
    );
    assert_eq!(
        p(Runner::Pytest, "pytest -q tests/"),
        "pytest tests/ -v --junitxml=/tmp/r1.xml -o junit_logging=out-err -o junit_log_passing_tests=False"
    );
    assert!(Runner::Pytest.prepare(&argv("pytest"), None).is_err());
    assert_eq!(p(Runner::Tap, "bats -F pretty test/ --tap"), "bats --tap test/");
    assert_eq!(p(Runner::Tap, "prove -r t"), "prove -v --merge -r t");
    assert_eq!(p(Runner::Tap, "prove -v --merge t"), "prove -v --merge t");
    assert_eq!(p(Runner::Junit, "./run.sh a"), "./run.sh a");
    assert_eq!(p(Runner::GoTest, "go test ./..."), "go test -json ./...");
    assert_eq!(p(Runner::GoTest, "go test -json ./... -args -json"), "go test -json ./... -args -json");
    assert_eq!(p(Runner::GoTest, "go test ./... -args -json"), "go test -json ./... -args -json");
}

#[test]
fn rerun_goes_through_the_runners_own_filter() {
    let none = |_: &str| false;
    let r = |run: Runner, s: &str, suite: &str, name: &str| {
        line(&run.rerun(&argv(s), &TestId::new(suite, name), none).unwrap())
    };
    assert_eq!(
        r(Runner::Libtest, "cargo test", "tests/suite.rs", "flaky"),
        "cargo test --test suite -- --exact flaky"
    );
    assert_eq!(
        r(
            Runner::Libtest,
            "cargo test -p x fla --features f -- --exact fla --test-threads 1",
            "unittests src/lib.rs",
            "m::t"
        ),
        "cargo test -p x --features f --lib -- --test-threads 1 --exact m::t"
    );
    assert_eq!(
        r(Runner::Libtest, "cargo test --doc", "Doc-tests c", "src/lib.rs - f (line 3)"),
        "cargo test --doc -- src/lib.rs - f (line 3)"
    );
    assert_eq!(
        r(Runner::Libtest, "target/debug/deps/s-06fe714251372906 a b", "", "flaky"),
        "target/debug/deps/s-06fe714251372906 --exact flaky"
    );
    assert_eq!(
        r(Runner::Pytest, "pytest -q -k slow tests/ --lf", "tests.test_x.TestA", "t[1]"),
        "pytest -q tests/test_x.py::TestA::t[1]"
    );
    assert_eq!(
        r(Runner::Pytest, "python3 -m pytest -p no:cacheprovider .", "test_suite", "test_flaky"),
        "python3 -m pytest -p no:cacheprovider test_suite.py::test_flaky"
    );
    assert_eq!(r(Runner::Tap, "bats -f old test/", "", "a (b) 1.5$"), "bats -f ^a \\(b\\) 1\\.5\\$$ test/");
    assert_eq!(r(Runner::Tap, "prove -v -I lib t/", "t/suite.t", "flaky"), "prove -v -I lib t/suite.t");
    assert!(Runner::Tap.rerun(&argv("prove t/"), &TestId::new("", "x"), none).is_err());
    assert_eq!(
        r(Runner::GoTest, "go test -count 1 -run Old ./... -args -x", "example.com/m", "TestG/sub_case"),
        "go test -count 1 -run ^TestG$/^sub_case$ example.com/m -args -x"
    );
    assert!(Runner::Junit.rerun(&argv("./run.sh"), &TestId::new("c", "x"), none).is_err());
    // A rerun then goes through prepare like any replica.
    let again =
        Runner::Libtest.rerun(&argv("cargo test"), &TestId::new("tests/suite.rs", "flaky"), none).unwrap();
    assert_eq!(
        line(&Runner::Libtest.prepare(&again, None).unwrap()),
        "cargo test --no-fail-fast --test suite -- --exact flaky --format pretty"
    );
}

proptest::proptest! {
    /// Whatever the user typed, forcing any runner on it gives a command line or an error, never a panic.
    #[test]
    fn any_argv_under_any_runner_never_panics(
        words in proptest::collection::vec(proptest::sample::select(vec![
            "cargo", "test", "go", "pytest", "python3", "-m", "bats", "prove", "--", "-q", "--exact", "-f", "-k",
            "--format", "--format=json", "-run", "-args", "-json", "--test", "--lib", "x", "-", "+nightly", "-p",
        ]), 0..8),
        suite in "[a-z/. ]{0,12}",
        name in "[a-zA-Z_/ ()\\[\\]]{0,12}",
    ) {
        let argv: Vec<OsString> = words.iter().map(OsString::from).collect();
        let _ = Runner::detect(&argv);
        for r in [Runner::Libtest, Runner::Pytest, Runner::Tap, Runner::Junit, Runner::GoTest] {
            let _ = r.prepare(&argv, Some(Path::new("/tmp/x.xml")));
            let _ = r.rerun(&argv, &TestId::new(suite.clone(), name.clone()), |_| false);
        }
    }
}
