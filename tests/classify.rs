//! Integration tests of classification: after the vote (unanimous, majority, no-majority), tmr reruns a
//! disagreement or a unanimous failure to give the run a class (none, transient, nondeterministic,
//! deterministic), and reports the
//! evidence (JSON, human summary, JUnit, GitHub job summary).
//!
//! Every class asserted here is certain: the commands are fixtures or shell scripts whose outcome is a
//! function of TMR_ROUND / TMR_REPLICA / TMR_REPLICAS, never of chance. The two tests that run a random
//! command assert only what holds for every possible draw (or fails with probability < 1e-15).

mod classify_support;
mod common;

use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use serde_json::Value;

use classify_support::*;

/// Fails (prints `bad`, exit 1) on replica 1 of the voted round and on rerun 3; passes (`good`) otherwise.
const FAILS_IN_ROUNDS_0_AND_3: &str = r#"if { [ "$TMR_ROUND" = 0 ] && [ "$TMR_REPLICA" = 1 ]; } || [ "$TMR_ROUND" = 3 ]; then echo bad; exit 1; fi; echo good"#;

/// Fails only as replica 2 of 3: only when replicas run as a group of 3 (the voted round, or parallel
/// reruns). A contention-only flake, as far as tmr can tell.
const FAILS_ONLY_AS_REPLICA_2_OF_3: &str =
    r#"if [ "$TMR_REPLICAS" = 3 ] && [ "$TMR_REPLICA" = 2 ]; then echo bad; exit 1; fi; echo good"#;

/// `sh -c SCRIPT sh DIR`: the script records each execution in DIR (see [`MARK`]).
fn marked(script: &str, dir: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("{MARK}{script}"),
        "sh".into(),
        dir.to_str().expect("UTF-8 temp path").into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn outcome_code(o: &Value) -> i64 {
    assert_eq!(o["outcome"]["kind"], "exited", "{o}");
    o["outcome"]["code"].as_i64().expect("exit code")
}

fn python3_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "pass"])
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

// ---------------------------------------------------------------------------------------------------
// Ground truths
// ---------------------------------------------------------------------------------------------------

#[test]
fn a_command_that_always_fails_the_same_way_is_deterministic() {
    let exit_with = fx("exit-with");
    let (ran, r) = run_json(
        &["--reruns", "5", "--rerun-mode", "sequential", "--rerun-budget", "10m"],
        &[&exit_with, "3"],
    );
    assert_eq!(ran.code, 3, "the voted exit code is delivered");
    assert_eq!(ran.stdout, "exiting 3\n");
    let c = &r["classification"];
    assert_eq!(class(&r), "deterministic");
    assert_eq!(c["reruns"], 5, "the whole budget is spent: a failure is never proved stable early");
    assert_eq!(c["budget"], 5);
    assert_eq!(c["settled_early"], false);
    assert_eq!(c["rerun_mode"], "sequential");
    // Every run counts: the voted round's 3 failures and the 5 reruns.
    assert_eq!(c["observations"], 8);
    assert_close(f64_of(&c["odd_rate_bound"]), zero_event_bound(8, 0.95), 1e-9, "odd_rate_bound");
    let outcomes = arr(&c["outcomes"]);
    assert_eq!(outcomes.len(), 1, "one outcome only: {c}");
    assert_eq!((outcome_code(&outcomes[0]), &outcomes[0]["majority"]), (3, &Value::Bool(true)));
    assert_eq!((u64_of(&outcomes[0]["initial"]), u64_of(&outcomes[0]["reruns"])), (3, 5));
    for (i, run) in arr(&c["rerun_runs"]).iter().enumerate() {
        assert_eq!(u64_of(&run["round"]), i as u64 + 1, "reruns are rounds 1, 2, ...: {run}");
        assert_eq!(run["replica"], 0, "sequential reruns run as replica 0: {run}");
        assert_eq!(outcome_code(run), 3);
    }

    let human = run(tmr().args(["--reruns", "5", "--rerun-budget", "10m", "--", &exit_with, "3"]));
    assert_eq!(human.code, 3);
    assert!(human.stderr.contains("deterministic"), "{}", human.stderr);
    assert!(human.stderr.contains("failed the same way in all 8 runs"), "{}", human.stderr);
    assert!(human.stderr.contains("in parallel rounds of 3"), "{}", human.stderr);
}

#[test]
fn a_fault_in_one_replica_that_never_comes_back_is_transient() {
    let fixture = fx("fail-on-replica");
    let (ran, r) = run_json(&["--reruns", "10", "--rerun-budget", "10m"], &[&fixture, "1"]);
    assert_eq!(ran.code, 0, "the majority's exit code is delivered");
    assert_eq!(ran.stdout, "ok\n", "the majority's output is delivered");
    let c = &r["classification"];
    assert_eq!(class(&r), "transient");
    assert_eq!((u64_of(&c["reruns"]), u64_of(&c["budget"])), (10, 10));
    assert_eq!(c["settled_early"], false, "no early stop for a claim of stability");
    assert_close(f64_of(&c["odd_rate_bound"]), 0.2589, 1e-4, "odd_rate_bound after 10 clean reruns");
    assert_close(f64_of(&c["odd_rate_bound"]), zero_event_bound(10, 0.95), 1e-9, "odd_rate_bound");
    let outcomes = arr(&c["outcomes"]);
    assert_eq!(outcomes.len(), 2, "{c}");
    let (voted, odd) = (&outcomes[0], &outcomes[1]);
    assert_eq!(voted["majority"], true, "the voted outcome comes first");
    assert_eq!((outcome_code(voted), u64_of(&voted["initial"]), u64_of(&voted["reruns"])), (0, 2, 10));
    assert_eq!(odd["majority"], false);
    assert_eq!((outcome_code(odd), u64_of(&odd["initial"]), u64_of(&odd["reruns"])), (1, 1, 0));
    assert_eq!(f64_of(&odd["rate"]), 0.0);
    assert_eq!(f64_of(&odd["interval"]["lo"]), 0.0);
    assert_eq!(r["vote"]["winner"], 0);

    let human = run(tmr().args(["--reruns", "10", "--rerun-budget", "10m", "--", &fixture, "1"]));
    assert_eq!((human.code, human.stdout.as_str()), (0, "ok\n"));
    assert!(human.stderr.contains("transient"), "{}", human.stderr);
    assert!(human.stderr.contains("never came back in 10"), "{}", human.stderr);
    assert!(human.stderr.contains("25.9%"), "the bound is shown: {}", human.stderr);
}

#[test]
fn masked_timestamps_are_unanimous_and_need_no_rerun() {
    let (ran, r) = run_json(&["--mask", "run at [0-9]+", "--mask", "pid [0-9]+"], &[&fx("timestamps")]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("result 42"), "raw output delivered: {}", ran.stdout);
    let c = &r["classification"];
    assert_eq!(class(&r), "none");
    assert_eq!(r["vote"]["result"], "unanimous");
    assert_eq!(c["reruns"], 0, "a unanimous success is never rerun");
    assert_eq!(c["settled_early"], false);
    assert!(c["odd_rate_bound"].is_null());
}

#[test]
fn unmasked_timestamps_have_no_majority_and_are_nondeterministic_and_unstable() {
    let (ran, r) = run_json(&[], &[&fx("timestamps")]);
    assert_eq!(ran.code, 120);
    // Only what every replica agreed on was delivered as it came: a prefix of each one's output.
    assert!(ran.stdout.len() < 40, "nothing past the split is delivered: {:?}", ran.stdout);
    let c = &r["classification"];
    // The vote says what came out; the class says why: output that differs every run is a Heisenbug.
    assert_eq!(r["vote"]["result"], "no-majority");
    assert_eq!(class(&r), "nondeterministic");
    assert_eq!(c["unstable"], true, "every run differed from every other: {c}");
    assert!(c["emerged"].is_null());
    assert_eq!(c["settled_early"], true, "an unstable output is settled without spending the budget");
    let reruns = u64_of(&c["reruns"]);
    assert!(reruns >= 1 && reruns < u64_of(&c["budget"]), "{c}");
    // Every distinct output is its own outcome: 3 from the voted round plus one per rerun.
    assert_eq!(arr(&c["outcomes"]).len() as u64, 3 + reruns, "{c}");

    let human = run(tmr().arg("--").arg(fx("timestamps")));
    assert_eq!(human.code, 120);
    assert!(human.stderr.contains("--mask"), "the summary points to --mask: {}", human.stderr);
    assert!(human.stderr.contains("unstable"), "{}", human.stderr);
}

#[test]
fn no_reruns_means_no_rerun_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cmd =
        marked(r#"if [ "$TMR_REPLICA" = 1 ] && [ "$TMR_ROUND" = 0 ]; then exit 1; fi; echo ok"#, dir.path());
    let (ran, r) = run_json(&["--reruns", "0"], &strs(&cmd));
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "ok\n"));
    let c = &r["classification"];
    assert_eq!((u64_of(&c["reruns"]), u64_of(&c["budget"])), (0, 0));
    assert!(c["odd_rate_bound"].is_null(), "no bound without reruns: {c}");
    assert_eq!(
        marks(dir.path()),
        ["ran-0-0-of-3", "ran-0-1-of-3", "ran-0-2-of-3"],
        "only the voted round ran"
    );

    let human = run(tmr().args(["--reruns", "0", "--"]).args(&cmd));
    assert_eq!(human.code, 0);
    assert!(human.stderr.contains("not rerun"), "{}", human.stderr);
}

#[test]
fn a_unanimous_failure_that_later_passes_is_nondeterministic() {
    // Every replica of the voted round fails (exit 4); rerun 2 passes.
    let script = r#"if [ "$TMR_ROUND" = 2 ]; then echo pass; exit 0; fi; echo fail; exit 4"#;
    let (ran, r) = run_json(&["--rerun-budget", "10m"], &["sh", "-c", script]);
    assert_eq!(ran.code, 4, "the voted (failing) outcome is still what tmr exits with");
    assert_eq!(ran.stdout, "fail\n");
    let c = &r["classification"];
    assert_eq!(class(&r), "nondeterministic");
    // Two parallel rounds of 3: the first fails like the voted round, the second passes.
    assert_eq!((u64_of(&c["reruns"]), c["settled_early"].clone()), (6, Value::Bool(true)));
    let outcomes = arr(&c["outcomes"]);
    assert_eq!(outcomes.iter().map(outcome_code).collect::<Vec<_>>(), [4, 0], "{c}");
}

#[test]
fn a_majority_can_emerge_from_the_reruns_of_a_split_vote() {
    // Three different outputs in the voted round, then replica 0's output in every rerun: the other two
    // never came back.
    let script = r#"if [ "$TMR_ROUND" = 0 ]; then echo "r$TMR_REPLICA"; else echo r0; fi"#;
    let (ran, r) = run_json(&["--rerun-budget", "10m"], &["sh", "-c", script]);
    assert_eq!(ran.code, 120, "the voted round had no majority");
    assert_eq!(ran.stdout, "r", "only the byte every replica agreed on was delivered");
    let c = &r["classification"];
    assert_eq!(r["vote"]["result"], "no-majority");
    assert_eq!(class(&r), "transient");
    assert_eq!(c["unstable"], false);
    assert_eq!(c["settled_early"], true, "{c}");
    let emerged = u64_of(&c["emerged"]) as usize;
    let o = &arr(&c["outcomes"])[emerged];
    assert_eq!((u64_of(&o["initial"]), u64_of(&o["reruns"])), (1, u64_of(&c["reruns"])), "{c}");
    assert!(f64_of(&o["interval"]["lo"]) > 0.5, "emerged means its interval is above 1/2: {o}");
}

// ---------------------------------------------------------------------------------------------------
// Adaptive stopping
// ---------------------------------------------------------------------------------------------------

#[test]
fn reruns_stop_as_soon_as_the_odd_outcome_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = marked(FAILS_IN_ROUNDS_0_AND_3, dir.path());
    let seq = ["--rerun-mode", "sequential", "--rerun-budget", "10m"];
    let (ran, r) = run_json(&seq, &strs(&cmd));
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "good\n"), "the majority is delivered");
    let c = &r["classification"];
    assert_eq!(class(&r), "nondeterministic");
    assert_eq!(c["settled_early"], true);
    assert_eq!((u64_of(&c["reruns"]), u64_of(&c["budget"])), (3, 29));
    assert!(c["odd_rate_bound"].is_null(), "the odd outcome came back: no bound: {c}");
    let rounds: Vec<u64> = arr(&c["rerun_runs"]).iter().map(|e| u64_of(&e["round"])).collect();
    assert_eq!(rounds, [1, 2, 3]);
    let outcomes = arr(&c["outcomes"]);
    assert_eq!(outcomes.len(), 2, "{c}");
    let (voted, odd) = (&outcomes[0], &outcomes[1]);
    assert_eq!((outcome_code(voted), u64_of(&voted["initial"]), u64_of(&voted["reruns"])), (0, 2, 2));
    assert_eq!((outcome_code(odd), u64_of(&odd["initial"]), u64_of(&odd["reruns"])), (1, 1, 1));
    assert_close(f64_of(&odd["rate"]), 1.0 / 3.0, 1e-12, "odd rate");
    // Really stopped: nothing ran after rerun 3.
    assert_eq!(
        marks(dir.path()),
        ["ran-0-0-of-3", "ran-0-1-of-3", "ran-0-2-of-3", "ran-1-0-of-1", "ran-2-0-of-1", "ran-3-0-of-1"]
    );

    let human = run(tmr().args(seq).arg("--").args(&cmd));
    assert_eq!(human.code, 0);
    let s = &human.stderr;
    assert!(s.contains("nondeterministic"), "{s}");
    assert!(s.contains("3 rerun(s) one at a time"), "{s}");
    assert!(s.contains("budget 29 reruns or 10m"), "{s}");
    // The rerun histogram: each outcome with its counts in the voted round and in the reruns.
    assert!(s.contains("voted round 2/3, reruns 2/3"), "{s}");
    assert!(s.contains("voted round 1/3, reruns 1/3"), "{s}");
}

// ---------------------------------------------------------------------------------------------------
// Rerun modes
// ---------------------------------------------------------------------------------------------------

#[test]
fn parallel_reruns_run_as_rounds_of_n_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let cmd =
        marked(r#"if [ "$TMR_ROUND" = 0 ] && [ "$TMR_REPLICA" = 1 ]; then exit 1; fi; echo ok"#, dir.path());
    let (ran, r) =
        run_json(&["--rerun-mode", "parallel", "--reruns", "7", "--rerun-budget", "10m"], &strs(&cmd));
    assert_eq!(ran.code, 0);
    let c = &r["classification"];
    assert_eq!(class(&r), "transient");
    assert_eq!(c["rerun_mode"], "parallel");
    let mut seen: Vec<(u64, u64)> =
        arr(&c["rerun_runs"]).iter().map(|e| (u64_of(&e["round"]), u64_of(&e["replica"]))).collect();
    seen.sort();
    assert_eq!(seen, [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0)], "7 reruns as replicas 0..2");
    let mut expected = vec!["ran-0-0-of-3", "ran-0-1-of-3", "ran-0-2-of-3"];
    expected.extend([
        "ran-1-0-of-3",
        "ran-1-1-of-3",
        "ran-1-2-of-3",
        "ran-2-0-of-3",
        "ran-2-1-of-3",
        "ran-2-2-of-3",
        "ran-3-0-of-3",
    ]);
    assert_eq!(marks(dir.path()), expected, "each parallel rerun sees TMR_REPLICAS=3");
}

#[test]
fn parallel_rerun_rounds_do_not_overlap() {
    // Replica 2 of rerun round 1 waits (bounded, 5 s) for any round-2 run to start; it only can if rounds
    // overlap. If one does, it prints `overlapped`: a different outcome, so the class is not transient.
    let dir = tempfile::tempdir().unwrap();
    let script = r#"if [ "$TMR_ROUND" = 2 ]; then touch "$1/round2"; fi
if [ "$TMR_ROUND" = 1 ] && [ "$TMR_REPLICA" = 2 ]; then
  i=0; while [ $i -lt 500 ]; do [ -e "$1/round2" ] && { echo overlapped; exit 0; }; i=$((i+1)); sleep 0.01; done
fi
if [ "$TMR_ROUND" = 0 ] && [ "$TMR_REPLICA" = 1 ]; then exit 1; fi
echo ok"#;
    let (ran, r) = run_json(
        &["--rerun-mode", "parallel", "--reruns", "6", "--rerun-budget", "10m"],
        &["sh", "-c", script, "sh", dir.path().to_str().unwrap()],
    );
    assert_eq!(ran.code, 0);
    assert_eq!(class(&r), "transient", "a round-2 rerun ran alongside round 1: {}", r["classification"]);
}

#[test]
fn a_contention_only_flake_is_nondeterministic_only_in_parallel_rerun_mode() {
    let (ran, r) = run_json(&["--rerun-mode", "parallel"], &["sh", "-c", FAILS_ONLY_AS_REPLICA_2_OF_3]);
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "good\n"));
    let c = &r["classification"];
    assert_eq!(class(&r), "nondeterministic", "{c}");
    assert_eq!(c["settled_early"], true);
    // Replica 2 of every parallel round fails; nothing else does. However the runs interleave, at most
    // two slots cycle through passing runs before the slots fill with replica-2 runs: settled far below
    // the budget.
    let runs = arr(&c["rerun_runs"]);
    assert!(runs.len() < 10, "settled early: {c}");
    assert!(runs.iter().all(|e| u64_of(&e["replica"]) < 3), "parallel reruns are replicas 0..2: {c}");
    assert!(runs.iter().all(|e| (e["replica"] == 2) == (outcome_code(e) == 1)), "{c}");
    assert!(runs.iter().any(|e| e["replica"] == 2 && outcome_code(e) == 1), "{c}");

    let seq = ["--rerun-mode", "sequential", "--rerun-budget", "10m"];
    let (ran, r) = run_json(&seq, &["sh", "-c", FAILS_ONLY_AS_REPLICA_2_OF_3]);
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "good\n"));
    let c = &r["classification"];
    assert_eq!(class(&r), "transient", "sequential reruns run as replica 0 of 1: {c}");
    assert_eq!(c["rerun_mode"], "sequential");
    assert_eq!(c["reruns"], 29);
    assert!(arr(&c["rerun_runs"]).iter().all(|e| e["replica"] == 0 && outcome_code(e) == 0), "{c}");

    let human = run(tmr().args(seq).args(["--", "sh", "-c", FAILS_ONLY_AS_REPLICA_2_OF_3]));
    assert!(human.stderr.contains("--rerun-mode parallel"), "{}", human.stderr);
}

#[test]
fn a_transient_fault_in_a_sequential_voted_round_is_not_called_a_parallel_one() {
    let human = run(tmr().args(["--sequential", "--reruns", "3", "--", &fx("fail-on-replica"), "1"]));
    assert_eq!((human.code, human.stdout.as_str()), (0, "ok\n"));
    assert!(human.stderr.contains("transient"), "{}", human.stderr);
    assert!(!human.stderr.contains("in parallel"), "{}", human.stderr);
}

// ---------------------------------------------------------------------------------------------------
// Budget and confidence
// ---------------------------------------------------------------------------------------------------

#[test]
fn the_default_budget_bounds_a_flake_below_min_flake_rate() {
    let fixture = fx("fail-on-replica");
    // The count budget is the subject here: the time budget is lifted out of the way.
    let (_, r) = run_json(&["--rerun-budget", "10m"], &[&fixture, "1"]);
    let c = &r["classification"];
    assert_eq!((class(&r), u64_of(&c["budget"])), ("transient", 29));
    assert!(f64_of(&c["odd_rate_bound"]) <= 0.1, "{c}");

    let (ran, r) = run_json(&["--min-flake-rate", "0.05", "--rerun-budget", "10m"], &[&fixture, "1"]);
    assert_eq!(ran.code, 0);
    let c = &r["classification"];
    assert_eq!(class(&r), "transient");
    assert_eq!((u64_of(&c["reruns"]), u64_of(&c["budget"])), (59, 59));
    assert!(f64_of(&c["odd_rate_bound"]) <= 0.05, "{c}");
    assert!(zero_event_bound(58, 0.95) > 0.05, "59 is the smallest such budget");
}

#[test]
fn confidence_sets_the_bound_and_the_intervals() {
    let (_, r) = run_json(
        &["--reruns", "10", "--confidence", "0.99", "--rerun-budget", "10m"],
        &[&fx("fail-on-replica"), "1"],
    );
    let c = &r["classification"];
    assert_eq!(class(&r), "transient");
    assert_close(f64_of(&c["confidence"]), 0.99, 1e-12, "confidence");
    assert_close(f64_of(&c["odd_rate_bound"]), zero_event_bound(10, 0.99), 1e-9, "bound at 99%");
    // 0 of 10 at 99%: Wilson's upper end is z²/(n + z²) with z = 2.5758.
    let z2 = 2.575829_f64.powi(2);
    assert_close(f64_of(&arr(&c["outcomes"])[1]["interval"]["hi"]), z2 / (10.0 + z2), 1e-4, "99% interval");
}

#[test]
fn masks_also_apply_to_the_reruns() {
    // Output differs in every run (its pid); replica 1 of the voted round fails.
    let script = r#"echo "run at $$"; if [ "$TMR_ROUND" = 0 ] && [ "$TMR_REPLICA" = 1 ]; then exit 1; fi"#;
    let (ran, r) = run_json(&["--reruns", "4", "--mask", "run at [0-9]+"], &["sh", "-c", script]);
    assert_eq!(ran.code, 0);
    let c = &r["classification"];
    assert_eq!(class(&r), "transient", "masked reruns agree with the majority: {c}");
    assert_eq!(arr(&c["outcomes"]).len(), 2, "{c}");
}

#[test]
fn reruns_get_the_same_stdin_as_the_voted_round() {
    let script = r#"input=$(cat); if [ "$TMR_ROUND" = 0 ] && [ "$TMR_REPLICA" = 1 ]; then echo bad; exit 1; fi; echo "got $input""#;
    for mode in ["sequential", "parallel"] {
        let ran = run(tmr()
            .args([
                "--reruns",
                "5",
                "--rerun-mode",
                mode,
                "--rerun-budget",
                "10m",
                "--format",
                "json",
                "--",
                "sh",
                "-c",
                script,
            ])
            .write_stdin("hello\nworld\n"));
        assert_eq!(ran.stdout, "got hello\nworld\n", "{mode}");
        // --format json without -o: the report is on stderr.
        let r = parse_json(&ran.stderr);
        check_report(&r, ran.code);
        assert_eq!(class(&r), "transient", "{mode}: a rerun that saw other input would differ: {r}");
        assert_eq!(r["classification"]["reruns"], 5, "{mode}");
    }
}

#[test]
fn a_replica_that_hangs_once_is_a_transient_timeout() {
    let hang = fx("hang");
    let script =
        format!(r#"if [ "$TMR_ROUND" = 0 ] && [ "$TMR_REPLICA" = 1 ]; then exec "{hang}"; fi; echo ok"#);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let mut cmd = common::tmr_std();
    cmd.env_remove("GITHUB_ACTIONS").env_remove("GITHUB_STEP_SUMMARY");
    cmd.args(["--timeout", "5s", "--reruns", "3", "--format", "json", "-o"])
        .arg(&path)
        .args(["--", "sh", "-c", &script]);
    // Bounded pipes too: a hung replica that survived would hold them open.
    let out = common::spawn(&mut cmd, common::Input::Null).finish(LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    assert_eq!(common::text(&out.stdout), "ok\n");
    let r = read_json(&path);
    check_report(&r, 0);
    assert_eq!(class(&r), "transient");
    let odd = &arr(&r["classification"]["outcomes"])[1];
    assert_eq!(odd["outcome"]["kind"], "timed-out", "{odd}");
}

// ---------------------------------------------------------------------------------------------------
// --fail-on
// ---------------------------------------------------------------------------------------------------

#[test]
fn fail_on_transient_turns_a_masked_fault_into_exit_122() {
    let ran = run(tmr().args(["--fail-on", "transient", "--reruns", "3", "--", &fx("fail-on-replica"), "1"]));
    assert_eq!(ran.code, 122);
    assert_eq!(ran.stdout, "ok\n", "the voted output is still delivered");
    assert!(ran.stderr.contains("--fail-on transient: exit 122"), "{}", ran.stderr);
}

#[test]
fn fail_on_does_not_touch_other_classes() {
    let ran = run(tmr().args(["--fail-on", "nondeterministic", "--", "true"]));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = run(tmr().args([
        "--fail-on",
        "nondeterministic",
        "--reruns",
        "3",
        "--",
        &fx("fail-on-replica"),
        "1",
    ]));
    assert_eq!(ran.code, 0, "transient is not nondeterministic: {}", ran.stderr);
    let ran = run(tmr().args(["--fail-on", "transient", "--reruns", "2", "--", &fx("exit-with"), "3"]));
    assert_eq!(ran.code, 3, "deterministic keeps its own exit code: {}", ran.stderr);
}

#[test]
fn fail_on_takes_a_list_and_every_class() {
    let (ran, r) = run_json(
        &["--fail-on", "transient,nondeterministic", "--rerun-budget", "10m"],
        &["sh", "-c", FAILS_IN_ROUNDS_0_AND_3],
    );
    assert_eq!((ran.code, class(&r)), (122, "nondeterministic"));
    let (ran, r) = run_json(&["--fail-on", "deterministic", "--reruns", "2"], &[&fx("exit-with"), "3"]);
    assert_eq!((ran.code, class(&r)), (122, "deterministic"));
    let (ran, r) = run_json(&["--fail-on", "nondeterministic"], &[&fx("timestamps")]);
    assert_eq!((ran.code, class(&r)), (122, "nondeterministic"));
    let (ran, r) = run_json(&["--fail-on", "none"], &["true"]);
    assert_eq!((ran.code, class(&r)), (122, "none"));
    // Vote results are not classes: no majority always exits 120.
    let ran = run(tmr().args(["--fail-on", "no-majority", "--", "true"]));
    assert_eq!(ran.code, 125, "{}", ran.stderr);
}

// ---------------------------------------------------------------------------------------------------
// JUnit
// ---------------------------------------------------------------------------------------------------

/// Run tmr with `--junit` and parse the file back; returns the exit code and the one test case's status.
fn junit(opts: &[&str], command: &[&str]) -> (i32, TestCaseStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    let ran = run(tmr().args(opts).arg("--junit").arg(&path).arg("--").args(command));
    let xml = std::fs::read_to_string(&path).expect("the JUnit file is written");
    let report = Report::deserialize_from_str(&xml).unwrap_or_else(|e| panic!("invalid JUnit ({e}):\n{xml}"));
    assert_eq!(report.test_suites.len(), 1, "{xml}");
    let cases = &report.test_suites[0].test_cases;
    assert_eq!(cases.len(), 1, "one test case for the command: {xml}");
    let class = cases[0]
        .properties
        .iter()
        .find(|p| p.name.as_str() == "tmr.class")
        .map(|p| p.value.as_str().to_string())
        .expect("a tmr.class property");
    (ran.code, cases[0].status.clone(), class)
}

#[test]
fn junit_marks_a_masked_fault_as_a_flaky_pass() {
    let (code, status, class) = junit(&["--reruns", "3"], &[&fx("fail-on-replica"), "1"]);
    assert_eq!((code, class.as_str()), (0, "transient"));
    match status {
        TestCaseStatus::Success { flaky_runs } => {
            assert_eq!(flaky_runs.len(), 1, "the one failing replica is a flakyFailure: {flaky_runs:?}");
            assert_eq!(flaky_runs[0].kind, NonSuccessKind::Failure);
        }
        other => panic!("expected success with flaky runs, got {other:?}"),
    }
}

#[test]
fn junit_records_every_failing_run_of_a_nondeterministic_pass() {
    let (code, status, class) = junit(
        &["--rerun-mode", "sequential", "--rerun-budget", "10m"],
        &["sh", "-c", FAILS_IN_ROUNDS_0_AND_3],
    );
    assert_eq!((code, class.as_str()), (0, "nondeterministic"));
    match status {
        TestCaseStatus::Success { flaky_runs } => {
            assert_eq!(flaky_runs.len(), 2, "voted round replica 1 and rerun 3: {flaky_runs:?}")
        }
        other => panic!("expected success with flaky runs, got {other:?}"),
    }
}

#[test]
fn junit_fails_a_deterministic_failure() {
    let (code, status, class) = junit(&["--reruns", "3"], &[&fx("exit-with"), "3"]);
    assert_eq!((code, class.as_str()), (3, "deterministic"));
    assert!(matches!(status, TestCaseStatus::NonSuccess { kind: NonSuccessKind::Failure, .. }), "{status:?}");
}

#[test]
fn junit_fails_a_run_that_fail_on_fails() {
    let (code, status, _) =
        junit(&["--reruns", "3", "--fail-on", "transient"], &[&fx("fail-on-replica"), "1"]);
    assert_eq!(code, 122);
    assert!(matches!(status, TestCaseStatus::NonSuccess { .. }), "{status:?}");
}

#[test]
fn junit_passes_a_clean_run_without_flaky_runs() {
    let (code, status, class) = junit(&[], &["true"]);
    assert_eq!((code, class.as_str()), (0, "none"));
    assert_eq!(status, TestCaseStatus::Success { flaky_runs: vec![] });
}

// ---------------------------------------------------------------------------------------------------
// GitHub job summary
// ---------------------------------------------------------------------------------------------------

#[test]
fn github_appends_to_the_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "before\n").unwrap();
    let ran = run(tmr().env("GITHUB_STEP_SUMMARY", &summary).args([
        "--github",
        "--reruns",
        "3",
        "--",
        &fx("fail-on-replica"),
        "1",
    ]));
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "ok\n"));
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("before\n"), "existing content kept: {md}");
    assert!(md["before\n".len()..].contains("transient"), "{md}");

    // On GitHub Actions it is the default.
    let ran = run(tmr().env("GITHUB_ACTIONS", "true").env("GITHUB_STEP_SUMMARY", &summary).args([
        "--reruns",
        "2",
        "--",
        &fx("exit-with"),
        "3",
    ]));
    assert_eq!(ran.code, 3);
    let md2 = std::fs::read_to_string(&summary).unwrap();
    assert!(md2.starts_with(&md), "appended, not rewritten");
    assert!(md2[md.len()..].contains("deterministic"), "{md2}");
}

#[test]
fn github_without_a_summary_file_warns_and_keeps_the_exit_code() {
    let ran = run(tmr().args(["--github", "--", &fx("exit-with"), "0"]));
    assert_eq!(ran.code, 0);
    assert!(ran.stderr.contains("GITHUB_STEP_SUMMARY"), "{}", ran.stderr);
}

// ---------------------------------------------------------------------------------------------------
// Real commands
// ---------------------------------------------------------------------------------------------------

#[test]
fn python_script_that_fails_again_in_rerun_2_is_nondeterministic() {
    if !python3_available() {
        eprintln!("python3 not found: skipping");
        return;
    }
    let code = "import os, sys\n\
                r = os.environ['TMR_ROUND']\n\
                sys.exit(1 if (r == '0' and os.environ['TMR_REPLICA'] == '1') or r == '2' else 0)";
    let (ran, r) =
        run_json(&["--rerun-mode", "sequential", "--rerun-budget", "10m"], &["python3", "-c", code]);
    assert_eq!(ran.code, 0);
    let c = &r["classification"];
    assert_eq!(class(&r), "nondeterministic", "{c}");
    assert_eq!((u64_of(&c["reruns"]), c["settled_early"].clone()), (2, Value::Bool(true)));
}

#[test]
fn a_real_coin_flip_is_unanimous_or_nondeterministic_never_a_stable_class() {
    if !python3_available() {
        eprintln!("python3 not found: skipping");
        return;
    }
    // Each run fails with probability 1/2. Whatever the voted round gives, a different outcome comes
    // back within 60 reruns except with probability 2^-60: transient/deterministic are out.
    let (ran, r) = run_json(
        &["--reruns", "60", "--rerun-budget", "10m"],
        &["python3", "-c", "import random, sys; sys.exit(random.random() < 0.5)"],
    );
    let c = &r["classification"];
    match class(&r) {
        "none" => {
            assert_eq!(ran.code, 0, "only a unanimous success is left unrerun: {c}");
            assert_eq!(c["reruns"], 0);
        }
        "nondeterministic" => {
            assert_eq!(c["settled_early"], true, "{c}");
            let outcomes = arr(&c["outcomes"]);
            assert_eq!(outcomes.len(), 2, "pass and fail: {c}");
            let voted = outcomes.iter().find(|o| o["majority"] == true).expect("a voted outcome");
            assert_eq!(outcome_code(voted), ran.code as i64, "tmr exits with the voted outcome");
            for o in outcomes {
                // check_report already verified rate = reruns/total and that it lies in its interval.
                assert!(!o["rate"].is_null() && !o["interval"].is_null(), "{o}");
            }
        }
        other => panic!("class {other} for a coin flip: {c}"),
    }
}
