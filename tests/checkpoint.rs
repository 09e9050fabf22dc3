//! End-to-end tests of `--checkpoint`: each replica's tracer checkpoints it by an injected fork, and a
//! replica that crashes is replaced by its last checkpoint, which re-executes from there.
//!
//! The fixture `checkpointee` faults in replica 1 only, after waiting (making system calls, doing no
//! I/O) until it has a new child process, which under `--checkpoint` is its checkpoint: that is the
//! readiness handshake, so a fault always lands after a checkpoint, with no sleep. Only the original
//! process faults: a checkpoint resumed in its place has another pid and completes. No assertion on time.

#[macro_use]
mod common;

use std::ffi::OsString;

use common::*;
use serde_json::Value;

fn checkpointee(args: &[&str]) -> Vec<OsString> {
    let mut v = vec![fixture("checkpointee").into_os_string()];
    v.extend(args.iter().map(OsString::from));
    v
}

fn checkpoint_logs(report: &Value) -> Vec<Value> {
    report["memory"]["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("no memory replicas in {report}"))
        .iter()
        .map(|r| r["checkpoints"].clone())
        .collect()
}

fn rollbacks(log: &Value) -> Vec<Value> {
    log["rollbacks"].as_array().cloned().unwrap_or_default()
}

/// One replica failed with `cause` and was rolled back, every time to a checkpoint: once, or twice when
/// the newest checkpoint had been taken after the fault's trigger (at the system call that closed the
/// marker) and the fault recurred from it.
fn assert_one_replica_rolled_back(logs: &[Value], cause: &str) {
    let per_replica: Vec<Vec<Value>> = logs.iter().map(rollbacks).filter(|r| !r.is_empty()).collect();
    assert_eq!(per_replica.len(), 1, "one replica failed: {per_replica:?}");
    let r = &per_replica[0];
    assert!((1..=2).contains(&r.len()), "{r:?}");
    assert!(
        r.iter().all(|x| x["cause"] == cause && x["resumed_epoch"].as_u64().is_some_and(|e| e >= 1)),
        "{r:?}"
    );
}

/// The sum the fixture prints when nothing crashes: run alone (no TMR_REPLICA), it does not fault.
fn plain_sum() -> String {
    let out = std::process::Command::new(fixture("checkpointee"))
        .args(["crash-once", "/nonexistent/marker"])
        .env_remove("TMR_REPLICA")
        .output()
        .expect("running checkpointee");
    assert!(out.status.success(), "{out:?}");
    text(&out.stdout)
}

#[test]
fn a_replica_that_crashes_once_is_rolled_back_and_the_vote_is_unanimous() {
    require_ptrace!();
    let dir = tempfile::tempdir().expect("a temp dir");
    let marker = dir.path().join("marker");
    let args = with(
        &["--checkpoint", "20ms", "--reruns", "0"],
        checkpointee(&["crash-once", marker.to_str().expect("utf-8")]),
    );
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    assert!(marker.exists(), "one replica crashed (it created the marker)");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["vote"]["result"], "unanimous", "{}", run.stderr);
    assert_eq!(run.stdout, plain_sum(), "the resumed replica computed the same result");
    let logs = checkpoint_logs(&run.report);
    assert_eq!(logs.len(), 3);
    assert_one_replica_rolled_back(&logs, "SIGSEGV");
    // Every replica was checkpointed (that is how each got past its handshake).
    assert!(logs.iter().all(|l| l["epochs"].as_array().is_some_and(|e| !e.is_empty())), "{logs:?}");
}

#[test]
fn a_replica_that_fails_again_after_its_rollbacks_is_reported_deterministic() {
    require_ptrace!();
    let args = with(&["--checkpoint", "20ms", "--reruns", "0"], checkpointee(&["crash-always"]));
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    assert_eq!(run.code, 128 + libc::SIGSEGV, "the voted outcome is the crash: {}", run.stderr);
    for log in checkpoint_logs(&run.report) {
        let r = rollbacks(&log);
        // Rolled back to the newest checkpoint, then (the same fault again: the newest may hold it) to
        // the one before if there was one, then left to stand.
        assert!((2..=3).contains(&r.len()), "{r:?}");
        let (last, before) = r.split_last().expect("not empty");
        assert!(before.iter().all(|b| b["resumed_epoch"].as_u64().is_some()), "{r:?}");
        let epochs: Vec<u64> = before.iter().filter_map(|b| b["resumed_epoch"].as_u64()).collect();
        assert!(epochs.windows(2).all(|w| w[1] < w[0]), "each time further back: {epochs:?}");
        assert!(last["resumed_epoch"].is_null());
        let note = last["note"].as_str().unwrap_or_default();
        assert!(note.contains("failed again") && note.contains("deterministic"), "{note}");
    }
}

#[test]
fn a_real_program_gives_the_same_output_under_checkpoints() {
    require_ptrace!();
    let dir = tempfile::tempdir().expect("a temp dir");
    let input = dir.path().join("numbers");
    // 300k numbers in a scrambled but fixed order.
    let text: String = (0u64..300_000).map(|i| format!("{}\n", (i * 7_919) % 300_007)).collect();
    std::fs::write(&input, text).expect("writing the input");
    let plain =
        std::process::Command::new("sort").args(["-n", "--parallel=1"]).arg(&input).output().expect("sort");
    assert!(plain.status.success());
    let args = with(
        &["--checkpoint", "10ms", "--reruns", "0"],
        vec!["sort".into(), "-n".into(), "--parallel=1".into(), input.clone().into_os_string()],
    );
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.as_bytes(), &plain.stdout[..], "sort's output is unchanged by checkpoints");
    assert_eq!(run.report["vote"]["result"], "unanimous", "{}", run.stderr);
    let logs = checkpoint_logs(&run.report);
    assert!(
        logs.iter().any(|l| l["epochs"].as_array().is_some_and(|e| !e.is_empty())),
        "sort was checkpointed at least once: {logs:?}"
    );
}

#[test]
fn a_multithreaded_replica_is_not_checkpointed_and_the_report_says_why() {
    require_ptrace!();
    let run = tmr_json_report(
        None,
        &[],
        &with(&["--checkpoint", "10ms", "--reruns", "0"], vec![fixture("threads").into_os_string()]),
        "tmr-report",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for log in checkpoint_logs(&run.report) {
        assert!(log["stopped"].as_str().is_some_and(|s| s.contains("thread")), "{log}");
    }
}

#[test]
fn a_hung_replica_is_rolled_back_and_completes() {
    require_ptrace!();
    let dir = tempfile::tempdir().expect("a temp dir");
    let marker = dir.path().join("marker");
    // --timeout bounds the run if the hang were not caught (then the vote would not be unanimous).
    let args = with(
        &["--checkpoint", "20ms", "--timeout", "60s", "--reruns", "0"],
        checkpointee(&["hang-once", marker.to_str().expect("utf-8")]),
    );
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    assert!(marker.exists(), "one replica hung (it created the marker)");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["vote"]["result"], "unanimous", "{}", run.stderr);
    assert_eq!(run.stdout, plain_sum());
    let rolled: Vec<Value> = checkpoint_logs(&run.report).iter().flat_map(rollbacks).collect();
    // The hang writes no memory, so no checkpoint is taken during it; but the newest may have been taken
    // at the last system call before it (closing the marker), and then the one before is resumed.
    assert!((1..=2).contains(&rolled.len()), "{rolled:?}");
    assert!(
        rolled.iter().all(|r| r["cause"] == "hang" && r["resumed_epoch"].as_u64().is_some()),
        "{rolled:?}"
    );
    // No assertion on memory pages: the fixture's handshake leaves pids (which differ) in freed heap.
}

#[test]
fn output_written_after_the_checkpoint_by_a_failed_replica_is_dropped() {
    require_ptrace!();
    let dir = tempfile::tempdir().expect("a temp dir");
    let marker = dir.path().join("marker");
    let args = with(
        &["--checkpoint", "20ms", "--reruns", "0"],
        checkpointee(&["print-once", marker.to_str().expect("utf-8")]),
    );
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    assert!(marker.exists(), "one replica crashed (it created the marker)");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["vote"]["result"], "unanimous", "{}", run.stderr);
    let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
    assert_eq!(run.stdout, expected, "the failed process's last line is not in the output");
    assert!(!run.stderr.contains("also on stderr"), "nor its stderr: {}", run.stderr);
    assert_one_replica_rolled_back(&checkpoint_logs(&run.report), "SIGSEGV");
}
