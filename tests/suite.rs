//! `tmr test` end to end (issue 11) on the real runners (cargo test, pytest, bats) and the fixture suites
//! in fixtures/suites/, whose truth is known: a deterministic failure (`expected 42, got 41`), a test
//! that fails with p = 0.3, a test printing timings and a random seed, a test that hangs on request, a
//! runner that aborts halfway. Plus runners that print garbage, nothing, or die: each a clear error
//! that loses nothing. Every wait is bounded (tests/common); nothing asserts wall-clock times.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{text, tmr};
use serde_json::Value;

struct TestRun {
    code: i32,
    stderr: String,
    stdout: String,
    report: Value,
    _dir: tempfile::TempDir,
}

fn suites() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/suites")
}

fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `tmr test --json FILE OPTS -- CMD` in `dir`, bounded at five minutes (cargo may build first).
fn tmr_test(dir: &Path, env: &[(&str, &str)], opts: &[&str], cmd: &[&str]) -> TestRun {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let file = tmp.path().join("report.json");
    let out = tmr()
        .timeout(Duration::from_secs(300))
        .current_dir(dir)
        .env_remove("GITHUB_ACTIONS")
        .envs(env.iter().copied())
        .arg("test")
        .arg("--json")
        .arg(&file)
        .args(opts)
        .arg("--")
        .args(cmd)
        .write_stdin(Vec::new())
        .output()
        .expect("running tmr");
    let stderr = text(&out.stderr);
    let code = out.status.code().unwrap_or_else(|| panic!("tmr was killed ({}): {stderr}", out.status));
    let json = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("no report from tmr test {cmd:?} (exit {code}): {e}\nstderr:\n{stderr}"));
    let report: Value = serde_json::from_str(&json).expect("the report is JSON");
    assert_eq!(report["schema"], "tmr-test-report", "{report}");
    assert_eq!(report["exit_code"].as_i64(), Some(code as i64), "{stderr}");
    TestRun { code, stderr, stdout: text(&out.stdout), report, _dir: tmp }
}

fn test<'a>(r: &'a TestRun, name: &str) -> &'a Value {
    r.report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name} in the report:\n{}", r.stderr))
}

/// The flaky test shows up only when a replica of the voted round failed it (1 − 0.7³ ≈ 66% of runs):
/// run until it does, at most 12 times (all missing: 0.34¹² ≈ 3e-6).
fn until_flaky(dir: &Path, opts: &[&str], cmd: &[&str], name: &str) -> TestRun {
    for _ in 0..12 {
        let r = tmr_test(dir, &[], opts, cmd);
        let t = test(&r, name);
        if t["rerun_failures"].as_u64() > Some(0)
            || t["outcomes"].as_array().unwrap().iter().any(|o| o == "fail")
        {
            return r;
        }
    }
    panic!("{name} never failed in 12 runs of 3 replicas");
}

/// The ground truth of every suite: the flaky test classed nondeterministic with an interval holding
/// 0.3, the deterministic failure named with its message under the rerun budget, the timing/seed test
/// unanimous. The callers ask for 30 reruns at 99.9% confidence: at 99% the three suites' intervals
/// together missed 0.3 about once in thirty runs of this file (seen: 16 of 30 reruns failed).
fn check_truth(r: &TestRun, flaky: &str, failing: &str, seeded: &str, budget: u64) {
    let f = test(r, flaky);
    assert_eq!(f["class"], "nondeterministic", "{}", r.stderr);
    let i = &f["interval"];
    let (lo, hi) = (i["lo"].as_f64().unwrap(), i["hi"].as_f64().unwrap());
    assert!(lo <= 0.3 && 0.3 <= hi, "the interval [{lo}, {hi}] misses 0.3:\n{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(" {flaky} — ")) || r.stderr.contains(&format!("::{flaky} — ")),
        "{}",
        r.stderr
    );

    let d = test(r, failing);
    assert_eq!(d["class"], "deterministic", "{}", r.stderr);
    assert_eq!(d["voted"], "fail");
    assert!(d["reruns"].as_u64().unwrap() <= budget, "{d}");
    assert_eq!(d["reruns"], d["rerun_failures"]);
    assert!(r.stderr.contains("expected 42, got 41"), "the failure's message is shown:\n{}", r.stderr);

    let s = test(r, seeded);
    assert_eq!(s["unanimous"], true, "{s}");
    assert_eq!(s["voted"], "pass");
    assert_eq!(s["reruns"], 0, "a unanimous pass is never rerun");
    assert_eq!(r.code, 1, "a deterministic failure fails the suite:\n{}", r.stderr);
    assert_eq!(r.report["passed"], false);
}

#[test]
fn cargo_test_names_the_flaky_and_the_failing_test() {
    let dir = suites().join("libtest");
    let cmd = ["cargo", "test", "--test", "suite"];
    let r = until_flaky(
        &dir,
        &["--reruns", "30", "--confidence", "0.999", "--rerun-budget", "1h"],
        &cmd,
        "flaky",
    );
    check_truth(&r, "flaky", "deterministic_failure", "prints_timing_and_seed", 30);
    // Reruns go to single tests through libtest's filter: the unanimous passes never ran again.
    let reruns: u64 =
        r.report["tests"].as_array().unwrap().iter().map(|t| t["reruns"].as_u64().unwrap()).sum();
    assert_eq!(reruns, r.report["reruns"].as_u64().unwrap());
    assert_eq!(test(&r, "adds")["reruns"], 0);
    assert_eq!(test(&r, "ignored_case")["voted"], "skip");
}

/// Reruns run through cargo, with its environment (the test reads CARGO_PKG_NAME): the one-off fault is
/// transient, not a test failing every rerun. And a rerun's output reaches the report, also with
/// `--nocapture`, where libtest prints no section and the panic message goes to stderr.
#[test]
fn cargo_test_reruns_run_as_cargo_runs_them_and_keep_their_output() {
    let dir = suites().join("libtest");
    let r = tmr_test(&dir, &[], &["--reruns", "3"], &["cargo", "test", "--test", "env"]);
    let t = test(&r, "needs_cargo_env");
    assert_eq!(t["outcomes"], serde_json::json!(["pass", "fail", "pass"]), "{}", r.stderr);
    assert_eq!(t["rerun_failures"], 0, "{}", r.stderr);
    assert_eq!(t["class"], "transient", "{}", r.stderr);

    for extra in [&[][..], &["--nocapture"][..]] {
        let mut cmd = vec!["cargo", "test", "--test", "suite", "--", "deterministic_failure"];
        cmd.extend(extra);
        let r = tmr_test(&dir, &[], &["--reruns", "2"], &cmd);
        let d = test(&r, "deterministic_failure");
        let reruns: Vec<&Value> =
            d["failures"].as_array().unwrap().iter().filter(|f| f["run"] == "rerun 1").collect();
        assert_eq!(reruns.len(), 1, "{d}");
        let out = reruns[0]["output"].as_str().unwrap();
        assert!(
            out.contains("expected 42, got 41"),
            "{extra:?}: the rerun's output is kept: {out}\n{}",
            r.stderr
        );
        // Every failing run shows the failure, the voted round's replicas too (with --nocapture, from
        // the panic block on stderr), and never cargo's build noise first.
        for f in d["failures"].as_array().unwrap() {
            let out = f["output"].as_str().unwrap();
            assert!(out.contains("expected 42, got 41"), "{extra:?} {}: {out}", f["run"]);
            let first = out.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
            assert!(!first.starts_with("warning") && !first.trim_start().starts_with("Compiling"), "{out}");
        }
    }
}

#[test]
fn pytest_names_the_flaky_and_the_failing_test() {
    if !have("pytest") {
        panic!("pytest is missing: .ci/run installs python3-pytest");
    }
    let dir = suites().join("pytest");
    let cmd = ["pytest", "-q", "-p", "no:cacheprovider", "test_suite.py"];
    let r = until_flaky(
        &dir,
        &["--reruns", "30", "--confidence", "0.999", "--rerun-budget", "1h"],
        &cmd,
        "test_flaky",
    );
    check_truth(&r, "test_flaky", "test_deterministic_failure", "test_prints_timing_and_seed", 30);
    assert_eq!(test(&r, "test_in_class")["voted"], "pass", "a three-part node id");
}

#[test]
fn bats_names_the_flaky_and_the_failing_test_and_writes_junit() {
    if !have("bats") {
        panic!("bats is missing: .ci/run installs it");
    }
    let dir = suites().join("bats");
    let junit = tempfile::tempdir().unwrap();
    let xml = junit.path().join("junit.xml");
    let xml_arg = xml.to_str().unwrap();
    let r = until_flaky(
        &dir,
        &["--reruns", "30", "--confidence", "0.999", "--rerun-budget", "1h", "--junit", xml_arg, "--github"],
        &["bats", "suite.bats"],
        "flaky",
    );
    check_truth(&r, "flaky", "deterministic failure", "prints timing and seed", 30);
    let xml = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 7, "one test case per test:\n{xml}");
    assert!(xml.contains("<failure") && xml.contains("expected 42, got 41"), "{xml}");
    assert!(xml.contains("<flakyFailure") || xml.contains("<rerunFailure"), "{xml}");
    assert!(r.stdout.contains("::error title=test failed%3A deterministic failure::"), "{}", r.stdout);
}

#[test]
fn a_passing_suite_passes_with_no_reruns() {
    let dir = suites().join("bats");
    let r = tmr_test(
        &dir,
        &[],
        &[],
        &["bats", "-f", "^(adds|strings|prints timing and seed|skipped case)$", "suite.bats"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["passed"], true);
    assert_eq!(r.report["reruns"], 0, "a passing suite costs its replicas and no reruns");
    assert_eq!(r.report["counts"]["unanimous_pass"], 3);
    assert_eq!(r.report["counts"]["skipped"], 1);
    assert!(r.stderr.contains("tmr test: PASSED"), "{}", r.stderr);
}

/// prove -v ends every passing file with a bare `ok` (its verdict on the file): not a test, so a passing
/// suite of several files passes, and a file that exits non-zero after passing tests fails it, as prove does.
#[test]
fn prove_passes_a_passing_suite_and_fails_a_dubious_file() {
    assert!(have("prove"), "prove is missing: it comes with perl, which Debian always has");
    let dir = suites().join("prove-files");
    let r = tmr_test(&dir, &[], &[], &["prove", "t/"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.report["passed"], true, "{}", r.stderr);
    assert_eq!(r.report["reruns"], 0);
    assert_eq!(r.report["counts"]["unanimous_pass"], 8, "{}", r.report["counts"]);
    assert!(r.stderr.contains("tmr test: PASSED"), "{}", r.stderr);

    let r = tmr_test(&dir, &[("TMR_FIXTURE_BAD_EXIT", "1")], &[], &["prove", "t/"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("t/bad_exit.t: exited with status 3"), "{}", r.stderr);
}

/// `--keep` refuses a directory with anything in it, before running anything: an earlier run's files
/// would sit beside the new index as if they were this run's.
#[test]
fn keep_refuses_a_used_directory() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let keep = dir.path().join("k1");
    std::fs::create_dir(&keep).unwrap();
    std::fs::write(keep.join("0000-old-replica-0.txt"), "an earlier run").unwrap();
    let ran = dir.path().join("ran");
    let out = tmr()
        .timeout(Duration::from_secs(60))
        .current_dir(dir.path())
        .args(["test", "--runner", "tap", "--keep"])
        .arg(&keep)
        .args(["--", "sh", "-c", "touch ran; echo 1..1; echo ok 1"])
        .write_stdin(Vec::new())
        .output()
        .expect("running tmr");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("cannot use --keep") && stderr.contains("not empty"), "{stderr}");
    assert!(!ran.exists(), "nothing runs before --keep is checked");
    assert_eq!(std::fs::read_dir(&keep).unwrap().count(), 1, "the directory is left as it was");
}

/// `--keep` has every failing rerun's output, not only the few the summary, JSON and JUnit hold.
#[test]
fn keep_has_every_failing_rerun() {
    let dir = suites().join("bats");
    let tmp = tempfile::tempdir().expect("a temp dir");
    let keep = tmp.path().join("kept");
    let keep_arg = keep.to_str().unwrap();
    let r = tmr_test(
        &dir,
        &[],
        &["--reruns", "8", "--rerun-budget", "300s", "--keep", keep_arg],
        &["bats", "-f", "^deterministic failure$", "suite.bats"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let d = test(&r, "deterministic failure");
    assert_eq!(d["reruns"], 8, "{}", r.stderr);
    let index = std::fs::read_to_string(keep.join("index.tsv")).unwrap();
    let rows: Vec<&str> =
        index.lines().skip(1).filter(|l| l.starts_with("deterministic failure\t")).collect();
    assert_eq!(rows.len(), 3 + 8, "three replicas and eight reruns:\n{index}");
    for row in rows {
        let file = row.rsplit('\t').next().unwrap();
        let text = std::fs::read_to_string(keep.join(file)).unwrap();
        assert!(text.contains("expected 42, got 41"), "{file}: {text}");
    }
}

/// A limit far above what the runners need to reach the hanging test on a loaded machine (pytest took
/// over 5 s to start beside two CPU hogs), so the timeout only ever cuts the hang itself.
const HANG_TIMEOUT: &str = "20s";

#[test]
fn a_hang_is_killed_by_the_timeout_and_named_libtest() {
    // libtest names a test as it starts only with one thread.
    let r = tmr_test(
        &suites().join("libtest"),
        &[("TMR_FIXTURE_HANG", "1")],
        &["--timeout", HANG_TIMEOUT, "--reruns", "0"],
        &["cargo", "test", "--test", "suite", "--", "--test-threads=1"],
    );
    let h = test(&r, "hang_on_request");
    assert_eq!(h["voted"], "timeout", "{}", r.stderr);
    assert!(r.stderr.contains("FAILED tests/suite.rs::hang_on_request — voted timeout"), "{}", r.stderr);
    assert_eq!(r.code, 1);
}

#[test]
fn a_hang_is_killed_by_the_timeout_and_named_pytest() {
    // pytest -v (added by tmr) names each test as it starts.
    let r = tmr_test(
        &suites().join("pytest"),
        &[("TMR_FIXTURE_HANG", "1")],
        &["--timeout", HANG_TIMEOUT, "--reruns", "0"],
        &["pytest", "-q", "-p", "no:cacheprovider", "test_suite.py"],
    );
    assert_eq!(test(&r, "test_hang_on_request")["voted"], "timeout", "{}", r.stderr);
    assert_eq!(r.code, 1);
}

#[test]
fn a_hang_is_killed_by_the_timeout_and_named_bats() {
    // TAP names a test when it ends: the report says which one came before the hang.
    let r = tmr_test(
        &suites().join("bats"),
        &[("TMR_FIXTURE_HANG", "1")],
        &["--timeout", HANG_TIMEOUT, "--reruns", "0"],
        &["bats", "suite.bats"],
    );
    assert!(r.stderr.contains("the hung test is the one after prints timing and seed"), "{}", r.stderr);
    assert!(r.stderr.contains("hanging on purpose"), "the runner's last words are kept:\n{}", r.stderr);
    assert_eq!(r.code, 1);
}

/// Start `cmd` (a `tmr test` of a suite whose hanging test touches `hanging-R` in `ready` in each
/// replica R), send SIGINT once all three hang, and return its output and stderr.
fn interrupt_once_all_hang(
    cmd: &mut std::process::Command,
    ready: &std::path::Path,
) -> (std::process::Output, String) {
    let mut running = common::spawn(cmd, common::Input::Null);
    for r in 0..3 {
        common::wait_for_file_while(&ready.join(format!("hanging-{r}")), &mut running);
    }
    common::send_signal(running.pid(), libc::SIGINT);
    let out = running.finish(Duration::from_secs(120));
    let stderr = text(&out.stderr);
    (out, stderr)
}

/// Ctrl-C while every replica is in a hanging test: tmr forwards it, the runs it cut are not evidence
/// (the hanging test is not reported failed, no nameless case), the tests that finished still count,
/// and tmr exits 130 with what it had.
#[test]
fn ctrl_c_reports_what_finished_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    std::fs::create_dir(&ready).unwrap();
    let json = dir.path().join("report.json");
    let mut cmd = common::tmr_std();
    cmd.current_dir(suites().join("pytest"))
        .env("TMR_FIXTURE_HANG", "1")
        .env("TMR_FIXTURE_READY", &ready)
        .env_remove("GITHUB_ACTIONS")
        .args(["test", "--reruns", "3", "--json"])
        .arg(&json)
        .args(["--", "pytest", "-q", "-p", "no:cacheprovider", "test_suite.py"]);
    let (out, stderr) = interrupt_once_all_hang(&mut cmd, &ready);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("test_hang_on_request —"), "the interrupted test is not reported:\n{stderr}");
    assert!(!stderr.contains("without a name"), "{stderr}");
    assert!(stderr.contains("stopped by SIGINT"), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["exit_code"], 130);
    let tests = report["tests"].as_array().unwrap();
    let hang = tests.iter().find(|t| t["name"] == "test_hang_on_request");
    assert!(hang.is_none_or(|t| t["good"] == true || t["voted"] == "not run"), "{hang:?}");
    let adds = tests.iter().find(|t| t["name"] == "test_adds").expect("finished tests still count");
    assert_eq!(adds["voted"], "pass");
    let det = tests.iter().find(|t| t["name"] == "test_deterministic_failure").unwrap();
    assert_eq!(det["voted"], "fail", "a failure that finished before the signal still counts");
}

/// Stopped before any test finished: the replicas' last words (their reaction to the signal) are dropped,
/// so the note must not point at output that is not there.
#[test]
fn ctrl_c_before_any_test_finished_says_so() {
    assert!(have("pytest"), "pytest is missing: .ci/run installs it");
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    std::fs::create_dir(&ready).unwrap();
    std::fs::write(
        dir.path().join("test_first_hangs.py"),
        "import os, pathlib, time\n\ndef test_hangs():\n    pathlib.Path(os.environ['READY'], \
         'hanging-' + os.environ['TMR_REPLICA']).touch()\n    time.sleep(3600)\n",
    )
    .unwrap();
    let mut cmd = common::tmr_std();
    cmd.current_dir(dir.path()).env("READY", &ready).env_remove("GITHUB_ACTIONS").args([
        "test",
        "--",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "test_first_hangs.py",
    ]);
    let (out, stderr) = interrupt_once_all_hang(&mut cmd, &ready);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("no replica finished a test before tmr was stopped"), "{stderr}");
    assert!(!stderr.contains("last output above"), "{stderr}");
}

#[test]
fn a_runner_that_aborts_halfway_loses_nothing() {
    let dir = suites().join("libtest");
    let r = tmr_test(
        &dir,
        &[("TMR_FIXTURE_ABORT", "1")],
        &["--reruns", "2"],
        &["cargo", "test", "--test", "suite", "--", "--test-threads=1"],
    );
    // The test the binary died in is named, and crashed in every replica and rerun.
    let a = test(&r, "abort_on_request");
    assert_eq!(a["voted"], "crashed", "{}", r.stderr);
    // libtest captured the test's own output and died with it: cargo's last words say how.
    assert!(r.stderr.contains("SIGABRT"), "the runner's last words are kept:\n{}", r.stderr);
    assert_eq!(r.code, 1);
}

#[test]
fn garbage_nothing_and_a_dying_runner_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A TAP stream that breaks its own rules: the error names the replicas and the line.
    let r = tmr_test(
        dir.path(),
        &[],
        &["--runner", "tap", "-n", "3"],
        &["sh", "-c", "printf '1..2\\nok 1 a\\nok 2 b\\n1..2\\nnot tap at all\\n'"],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("line 4: a second plan"), "{}", r.stderr);
    assert!(r.stderr.contains("replicas 0, 1, 2"), "{}", r.stderr);
    assert!(r.stderr.contains("not tap at all"), "the output is shown, not lost:\n{}", r.stderr);

    // A runner that prints nothing.
    let r = tmr_test(
        dir.path(),
        &[],
        &["--runner", "libtest"],
        &["sh", "-c", "echo 'build failed: E0425' >&2; exit 101"],
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.report["tests"].as_array().unwrap().len(), 0);
    assert!(r.stderr.contains("no replica reported any test"), "{}", r.stderr);
    assert!(r.stderr.contains("build failed: E0425"), "{}", r.stderr);

    // A TAP runner killed halfway: the tests it reported count, the rest are missing, and it is said.
    let r = tmr_test(
        dir.path(),
        &[],
        &["--runner", "tap"],
        &["sh", "-c", "printf '1..3\\nok 1 a\\n'; echo 'segfault in b'; kill -SEGV $$"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(test(&r, "a")["voted"], "pass");
    assert!(r.stderr.contains("SIGSEGV"), "{}", r.stderr);
    assert!(r.stderr.contains("segfault in b"), "{}", r.stderr);
}

#[test]
fn any_runner_writing_junit_xml_per_replica() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"mkdir -p "out/$TMR_REPLICA" && printf '%s' '<?xml version="1.0"?><testsuite name="s"><testcase classname="s" name="a"/><testcase classname="s" name="b"><failure message="boom">expected 42, got 41</failure></testcase></testsuite>' > "out/$TMR_REPLICA/TEST-s.xml""#;
    // A report left over from an earlier run is not this run's.
    std::fs::create_dir_all(dir.path().join("out/1")).unwrap();
    let stale = r#"<testsuite name="s"><testcase classname="s" name="stale"><failure>old</failure></testcase></testsuite>"#;
    std::fs::write(dir.path().join("out/1/TEST-old.xml"), stale).unwrap();
    let r = tmr_test(dir.path(), &[], &["--junit-in", "out/{r}/*.xml"], &["sh", "-c", script]);
    assert!(r.report["tests"].as_array().unwrap().iter().all(|t| t["name"] != "stale"), "{}", r.stderr);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(test(&r, "a")["voted"], "pass");
    let b = test(&r, "b");
    assert_eq!(b["voted"], "fail");
    assert!(b["rerun_note"].as_str().unwrap().contains("no known per-test filter"), "{b}");
    assert!(r.stderr.contains("expected 42, got 41"), "{}", r.stderr);
}

#[test]
fn help_points_suites_to_tmr_test() {
    let help = text(&tmr().arg("--help").output().unwrap().stdout);
    let first = help.lines().skip_while(|l| *l != "EXAMPLES").nth(1).unwrap_or_default();
    assert_eq!(first.trim(), "tmr test -- cargo test", "{help}");
    let help = text(&tmr().args(["test", "--help"]).output().unwrap().stdout);
    for example in [
        "tmr test -- cargo test",
        "tmr test -- pytest -q tests/",
        "tmr test -- bats test/",
        "tmr test --junit-in 'out/{r}/*.xml' -- ./run-suite.sh",
        "tmr test --junit report.xml --github -- cargo test",
    ] {
        assert!(help.contains(example), "{example:?} missing:\n{help}");
    }
}

#[test]
fn a_missing_command_is_127_and_a_non_executable_one_126() {
    let dir = tempfile::tempdir().unwrap();
    let out = tmr().current_dir(dir.path()).args(["test", "--", "no-such-runner-tmr-t3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let out = tmr().current_dir(dir.path()).args(["test", "--", "./not-executable.sh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
}

/// `pytest --junitxml=FILE`: tmr reads its own per-replica XML, and still writes the user's file (a
/// replica's XML), saying so, instead of dropping it silently.
#[test]
fn a_users_own_pytest_junitxml_is_still_written() {
    let out = tempfile::tempdir().unwrap();
    let mine = out.path().join("mine.xml");
    let arg = format!("--junitxml={}", mine.display());
    let r = tmr_test(
        &suites().join("pytest"),
        &[],
        &[],
        &["pytest", "-q", "-p", "no:cacheprovider", &arg, "-k", "adds or strings", "test_suite.py"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let xml =
        std::fs::read_to_string(&mine).unwrap_or_else(|e| panic!("{}: {e}\n{}", mine.display(), r.stderr));
    assert!(xml.contains("test_adds") && xml.contains("test_strings"), "{xml}");
    assert!(r.stderr.contains("your --junitxml"), "{}", r.stderr);
}
