use super::data;
use crate::suite::pytest::{id_of, parse, rootdir, user_junitxml};
use crate::suite::{junit, Runner, TestId, TestOutcome};

#[test]
fn verbose_console_gives_the_junit_ids() {
    let run = parse(&data("pytest-v.stdout"));
    assert!(run.complete, "{run:#?}");
    let xml = junit::parse(&data("pytest.xml")).unwrap();
    let mut a: Vec<&TestId> = run.results.iter().map(|r| &r.name).collect();
    let mut b: Vec<&TestId> = xml.results.iter().map(|r| &r.name).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let get = |n: &str| run.get(&TestId::new("test_suite", n)).unwrap();
    assert_eq!(get("test_deterministic_failure").outcome, TestOutcome::Fail);
    assert_eq!(get("test_skipped").outcome, TestOutcome::Skip);
    assert!(get("test_deterministic_failure").output.head(20).contains("expected 42, got 41"));
    assert_eq!(
        run.get(&TestId::new("test_suite.TestGroup", "test_in_class")).unwrap().outcome,
        TestOutcome::Pass
    );
}

#[test]
fn a_pytest_killed_in_a_hang_names_the_hanging_test() {
    let run = parse(&data("pytest-v-killed.stdout"));
    assert!(!run.complete);
    assert_eq!(run.results.len(), 6);
    let hang = run.get(&TestId::new("test_suite", "test_hang_on_request")).unwrap();
    assert_eq!(hang.outcome, TestOutcome::Crashed);
    // The XML was never written: the console is all there is, and Runner::parse falls back to it.
    let via = Runner::Pytest.parse(&data("pytest-v-killed.stdout"), b"", None).unwrap();
    assert_eq!(via, run);
}

#[test]
fn an_interrupted_xml_is_completed_from_the_console() {
    // pytest's SIGINT XML stops before the running test; its console names it.
    let console = b"test_suite.py::test_adds PASSED [ 50%]\ntest_suite.py::test_hang_on_request ";
    let xml = br#"<testsuites><testsuite name="pytest"><testcase classname="test_suite" name="test_adds"/><testcase time="0.000"/></testsuite></testsuites>"#;
    let run = Runner::Pytest.parse(console, b"", Some(xml)).unwrap();
    assert!(!run.complete);
    assert_eq!(run.results.len(), 2);
    assert_eq!(
        run.get(&TestId::new("test_suite", "test_hang_on_request")).unwrap().outcome,
        TestOutcome::Crashed
    );
}

#[test]
fn a_started_line_may_end_with_a_shells_killed() {
    for tail in ["", " Killed"] {
        let out = format!("t.py::test_a PASSED [ 50%]\nt.py::test_b[x y]{tail}");
        let run = parse(out.as_bytes());
        assert_eq!(
            run.get(&TestId::new("t", "test_b[x y]")).unwrap().outcome,
            TestOutcome::Crashed,
            "{tail:?}"
        );
    }
}

#[test]
fn node_ids_map_to_junit_ids() {
    assert_eq!(
        id_of("tests/unit/test_x.py::TestA::test_b[1 2]"),
        TestId::new("tests.unit.test_x.TestA", "test_b[1 2]")
    );
    assert_eq!(id_of("test_suite.py::test_adds"), TestId::new("test_suite", "test_adds"));
}

#[test]
fn started_outside_its_rootdir_the_console_still_gives_the_junit_ids() {
    // A real suite nobody here wrote (Debian's lazr.uri and wadllib tests), run from another directory.
    let console = data("pytest-lazr.stdout");
    let run = parse(&console);
    let xml = junit::parse(&data("pytest-lazr.xml")).unwrap();
    assert!(run.complete && xml.complete);
    assert_eq!(run.results.len(), 9);
    for r in &xml.results {
        assert_eq!(run.get(&r.name).map(|c| c.outcome), Some(r.outcome), "{}", r.name);
    }
    assert_eq!(rootdir(&console).as_deref(), Some("/usr/lib/python3/dist-packages"));
    let id = TestId::new("lazr.uri.tests.test_uri.URITestCase", "test_merge");
    let argv = Runner::Pytest.rerun(&["pytest".into()], &id, |p| p == "lazr/uri/tests/test_uri.py").unwrap();
    assert_eq!(argv[1], "lazr/uri/tests/test_uri.py::URITestCase::test_merge");
}

#[test]
fn the_users_own_junitxml_is_found_in_every_spelling() {
    let argv = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
    let path = |p: &str| Some(std::path::PathBuf::from(p));
    assert_eq!(user_junitxml(&argv(&["pytest", "--junitxml=a.xml", "tests"])), path("a.xml"));
    assert_eq!(user_junitxml(&argv(&["pytest", "--junit-xml", "b.xml"])), path("b.xml"));
    assert_eq!(user_junitxml(&argv(&["pytest", "--junitxml", "a.xml", "--junit-xml=c.xml"])), path("c.xml"));
    assert_eq!(user_junitxml(&argv(&["pytest", "-q", "tests"])), None);
}
