//! Regression tests for the defects an outside trial found (issue 8): bounds on every count, a diff and
//! masks that stay bounded on huge lines, tmr's own output when stderr is full or closed, report files
//! that survive a failed run, and error messages that keep their substance on one line.
//!
//! As everywhere in tmr's suite: no sleeps to synchronise, every wait bounded (tests/common), no
//! assertion on elapsed time.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use predicates::str::contains;

use common::*;

// ---------------------------------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------------------------------

/// Each of these used to grow without bound, panic or abort; now each is a one-line error, exit 125,
/// before anything runs.
#[test]
fn huge_counts_rates_and_durations_are_one_line_errors() {
    for args in [
        &["--reruns", "1000000000", "--", "false"][..],
        &["--reruns", "18446744073709551615", "--", "false"],
        &["--min-flake-rate", "1e-300", "--", "false"],
        &["--min-flake-rate", "1e-12", "--", "false"],
        &["--timeout", "1e300x", "--", "true"],
        &["--timeout", "1000000001", "--", "true"],
        &["hunt", "--runs", "100000000000", "--", "true"],
        &["hunt", "--timeout", "1e300x", "--", "true"],
        &["campaign", "--trials", "100000000000", "--", "true"],
    ] {
        let out = tmr().args(args).output().expect("tmr runs");
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out.stderr));
        let msg = assert_tmr_error(&out.stderr);
        assert!(!msg.contains("must be positive"), "{args:?}: {msg}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing may run");
    }
}

// ---------------------------------------------------------------------------------------------------------
// tmr's own output
// ---------------------------------------------------------------------------------------------------------

/// A full stderr used to panic tmr (exit 101). The voted exit code, and 127 for a missing command,
/// must not depend on whether tmr's messages could be written.
#[test]
fn a_full_stderr_changes_no_exit_code() {
    let full = || fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full exists on Linux");
    let out = tmr_std().args(["--", "echo", "out"]).stderr(full()).output().expect("tmr runs");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"out\n");
    let out = tmr_std().args(["--", "no-such-cmd-tmr-test"]).stderr(full()).output().expect("tmr runs");
    assert_eq!(out.status.code(), Some(127));
    let out = tmr_std().args(["--bogus", "true"]).stderr(full()).output().expect("tmr runs");
    assert_eq!(out.status.code(), Some(125));
}

/// The same with a stderr whose reader has gone (EPIPE on the error path).
#[test]
fn a_closed_stderr_changes_no_exit_code() {
    let (reader, writer) = nix::unistd::pipe().expect("a pipe");
    drop(reader);
    let out = tmr_std()
        .args(["--", "no-such-cmd-tmr-test"])
        .stderr(Stdio::from(writer))
        .output()
        .expect("tmr runs");
    assert_eq!(out.status.code(), Some(127));
}

/// `-o` and `--junit` used to truncate both files before the command was even found.
#[test]
fn a_run_that_never_starts_leaves_existing_reports_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (json, xml) = (dir.path().join("keep.json"), dir.path().join("keep.xml"));
    fs::write(&json, "old json\n").unwrap();
    fs::write(&xml, "old xml\n").unwrap();
    fs::set_permissions(&json, fs::Permissions::from_mode(0o640)).unwrap();
    tmr()
        .arg("-o")
        .arg(&json)
        .arg("--junit")
        .arg(&xml)
        .args(["--", "no-such-cmd-tmr-test"])
        .assert()
        .code(127);
    assert_eq!(fs::read_to_string(&json).unwrap(), "old json\n");
    assert_eq!(fs::read_to_string(&xml).unwrap(), "old xml\n");
    let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "no temporary file is left behind: {leftovers:?}");

    // A run that ends replaces them, keeping the old file's mode.
    tmr().arg("-o").arg(&json).arg("--junit").arg(&xml).args(["--format", "json", "true"]).assert().code(0);
    assert!(fs::read_to_string(&json).unwrap().contains("\"schema\": \"tmr-report\""));
    assert!(fs::read_to_string(&xml).unwrap().contains("<testsuites"));
    assert_eq!(fs::metadata(&json).unwrap().permissions().mode() & 0o777, 0o640);
}

#[test]
fn an_unwritable_report_path_still_fails_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    tmr()
        .arg("-o")
        .arg(dir.path().join("missing-dir/report.json"))
        .args(["--", "touch"])
        .arg(&marker)
        .assert()
        .code(125)
        .stderr(contains("cannot write"));
    tmr().arg("-o").arg(dir.path()).args(["--", "touch"]).arg(&marker).assert().code(125);
    assert!(!marker.exists(), "nothing may run when a report cannot be written");
}

// ---------------------------------------------------------------------------------------------------------
// Error messages
// ---------------------------------------------------------------------------------------------------------

#[test]
fn error_messages_keep_their_substance_on_one_line() {
    let out = tmr().args(["--mask", "(", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(assert_tmr_error(&out.stderr).contains("unclosed group"), "{}", text(&out.stderr));

    let out = tmr().output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(assert_tmr_error(&out.stderr).contains("no command given: tmr [OPTIONS] [--] COMMAND"));

    let out = tmr().args(["--", "no\nsuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(assert_tmr_error(&out.stderr).contains("no\\nsuch"), "{}", text(&out.stderr));
}
