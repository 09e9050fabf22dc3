//! End-to-end tests of repair in place (`--epoch-vote --recover scrub`): a replica outvoted at an epoch
//! gets the majority's differing pages copied in, and runs on; where that cannot work it is rolled
//! back instead, and the log says which.
//!
//! The fixture `checkpointee` strikes at its middle step in the one replica that creates the marker
//! file first (see `tests/checkpoint.rs`); its steps span many checkpoint intervals, so epochs come
//! before and after the fault. No assertion on time.

#[macro_use]
mod common;

use common::*;
use serde_json::Value;

fn list(log: &Value, key: &str) -> Vec<Value> {
    log[key].as_array().cloned().unwrap_or_default()
}

const SCRUB: [&str; 7] = ["--checkpoint", "20ms", "--epoch-vote", "--recover", "scrub", "--reruns", "0"];

/// The replica that flipped a bit is repaired at the next epoch: no re-execution (no rollback, one vote
/// at that epoch), and at exit its memory equals the others' (no divergent page), so the run is
/// unanimous with the golden output.
#[test]
fn a_silent_flip_is_repaired_in_place_and_the_run_ends_unanimous() {
    require_ptrace!();
    let dir = tempfile::tempdir().expect("a temp dir");
    let marker = dir.path().join("marker");
    let run = tmr_json_report(
        None,
        &[],
        &with(&SCRUB, checkpointee(&["flip-once", marker.to_str().expect("utf-8")])),
        "tmr-report",
    );
    assert!(marker.exists(), "one replica flipped a bit (it created the marker)");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["vote"]["result"], "unanimous", "{}", run.stderr);
    assert_eq!(run.stdout, checkpointee_sum());
    let at_exit = run.report["memory"]["divergent"].as_array().cloned().unwrap_or_default();
    assert!(at_exit.is_empty(), "repaired memory equals the majority's at exit: {at_exit:?}");
    let logs = checkpoint_logs(&run.report);
    let faulty: Vec<usize> = (0..3).filter(|&i| !list(&logs[i], "divergent_epochs").is_empty()).collect();
    assert_eq!(faulty.len(), 1, "one replica diverged: {logs:?}");
    let f = faulty[0];
    let repairs = list(&logs[f], "repairs");
    assert_eq!(repairs.len(), 1, "{repairs:?}");
    assert!(repairs[0]["pages"].as_u64().is_some_and(|p| p >= 1), "{repairs:?}");
    let epoch = repairs[0]["epoch"].as_u64();
    assert_eq!(list(&logs[f], "divergent_epochs"), vec![Value::from(epoch)]);
    for (i, log) in logs.iter().enumerate() {
        assert!(list(log, "rollbacks").is_empty(), "replica {i} was not rolled back: {log}");
    }
    let votes_there = list(&logs[f], "votes").iter().filter(|v| v["epoch"].as_u64() == epoch).count();
    assert_eq!(votes_there, 1, "the epoch was not re-executed");
}

/// `flip-always` makes replica 1 flip its bit whenever it runs the middle step: a rollback re-runs that
/// step and diverges again (reported as deterministic, see `tests/checkpoint.rs`); a repair in place
/// re-runs nothing, so replica 1 ends with the others' memory.
#[test]
fn a_fault_that_recurs_on_re_execution_is_repaired_once() {
    require_ptrace!();
    let run = tmr_json_report(None, &[], &with(&SCRUB, checkpointee(&["flip-always"])), "tmr-report");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["vote"]["result"], "unanimous", "{}", run.stderr);
    assert_eq!(run.stdout, checkpointee_sum());
    let at_exit = run.report["memory"]["divergent"].as_array().cloned().unwrap_or_default();
    assert!(at_exit.is_empty(), "{at_exit:?}");
    let logs = checkpoint_logs(&run.report);
    let repairs = list(&logs[1], "repairs");
    assert_eq!(repairs.len(), 1, "{repairs:?}");
    assert!(repairs[0]["pages"].as_u64().is_some(), "{repairs:?}");
    assert!(list(&logs[1], "rollbacks").is_empty(), "{}", logs[1]);
    assert!(logs[1]["stopped"].is_null(), "it goes on voting: {}", logs[1]);
}

/// Under scrub, failures outside memory pages still go to the rollback: a hung replica spins asking
/// getpid, so it is judged hung (or, if an epoch catches it spinning, its instruction pointer is not the
/// majority's, which copying pages cannot fix); it is rolled back, re-executes and completes. Every
/// rollback at an epoch follows a refused repair whose note says why.
#[test]
fn under_scrub_a_hang_still_falls_back_to_rollback_and_completes() {
    require_ptrace!();
    let dir = tempfile::tempdir().expect("a temp dir");
    let marker = dir.path().join("marker");
    let mut args: Vec<&str> = SCRUB.to_vec();
    args.extend(["--timeout", "60s"]);
    let run = tmr_json_report(
        None,
        &[],
        &with(&args, checkpointee(&["hang-once", marker.to_str().expect("utf-8")])),
        "tmr-report",
    );
    assert!(marker.exists(), "one replica hung (it created the marker)");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["vote"]["result"], "unanimous", "{}", run.stderr);
    assert_eq!(run.stdout, checkpointee_sum());
    let logs = checkpoint_logs(&run.report);
    let rolled: Vec<usize> = (0..3).filter(|&i| !list(&logs[i], "rollbacks").is_empty()).collect();
    assert_eq!(rolled.len(), 1, "{logs:?}");
    let f = rolled[0];
    let rollbacks = list(&logs[f], "rollbacks");
    assert!(rollbacks.iter().all(|r| r["resumed_epoch"].as_u64().is_some()), "{rollbacks:?}");
    // Each rollback at an epoch follows a repair that was refused, and says why.
    let at_epoch = rollbacks.iter().filter(|r| r["cause"] == "epoch-divergence").count();
    let refused = list(&logs[f], "repairs");
    assert_eq!(refused.len(), at_epoch, "{refused:?} {rollbacks:?}");
    assert!(
        refused
            .iter()
            .all(|r| r["pages"].is_null() && r["note"].as_str().is_some_and(|n| n.contains("registers"))),
        "{refused:?}"
    );
}

/// A timed fault lands at its time under aligned epochs too. The running process then stops at every
/// system call, and the alarm's interrupt used to arrive while it was in such a stop, which is not an
/// interrupt stop: the fault waited for the next one, the exit stop, where it changed nothing (a
/// campaign found a third of its faults late). Here the fault is an instruction pointer made
/// non-canonical: at its time, it crashes the replica, which is rolled back and completes.
#[test]
fn a_timed_fault_lands_at_its_time_under_epoch_votes() {
    require_ptrace!();
    let mut opts = SCRUB.to_vec();
    opts.extend(["--inject", "reg:replica=1,reg=rip,bit=40,after=500ms"]);
    // 800 steps: the run lasts well past the fault's time, even on a loaded machine.
    let args = with(&opts, checkpointee(&["crash-once", "/nonexistent/marker", "800"]));
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    assert_eq!(run.code, 0, "a majority ends well either way: {}", run.stderr);
    let injection = &run.report["injection"];
    assert!(injection["injected"].is_object(), "{injection}");
    let logs = checkpoint_logs(&run.report);
    // Crashed and rolled back, or (when it landed at the stop of an epoch vote) outvoted there on its
    // instruction pointer first and rolled back.
    let rolled: Vec<Value> = list(&logs[1], "rollbacks")
        .into_iter()
        .filter(|r| r["cause"] == "SIGSEGV" || r["cause"] == "epoch-divergence")
        .collect();
    // Landed at the exit stop instead (the bug), it changes nothing: no rollback, and replica 1 agrees.
    assert!(
        !rolled.is_empty() || injection["faulty_replica_agreed"] == false,
        "the fault hit replica 1 while it ran: {rolled:?} {injection}"
    );
    // Rolled back to a good checkpoint, it completes like the others (a fault that came before the
    // first voted-good epoch, under load, leaves nothing to roll back to: then 2 of 3 agree).
    if rolled.iter().any(|r| r["resumed_epoch"].as_u64().is_some()) {
        assert_eq!(run.report["vote"]["result"], "unanimous", "{}", run.stderr);
        // The summary said "the fault did not reach what is compared" of a replica that crashed.
        assert_eq!(
            (&injection["recovered"], &injection["faulty_replica_agreed"]),
            (&true.into(), &true.into())
        );
    }
}
