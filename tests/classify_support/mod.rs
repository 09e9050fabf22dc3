//! Helpers shared by the classification (tests/classify.rs) and hunt (tests/hunt.rs) tests: running tmr
//! with every wait bounded, reading its JSON reports, and checking the invariants every report must keep.
//! Builds on tests/common (fixture paths, the tmr binary).

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Deadline for one tmr run: far above what any of these runs needs, so reaching it means a hang.
pub const LIMIT: Duration = Duration::from_secs(120);

/// `tmr`, bounded by [`LIMIT`], with no variable from the environment the tests run in that would change
/// what tmr writes (a CI job's GitHub summary must never receive our test runs).
pub fn tmr() -> assert_cmd::Command {
    let mut cmd = crate::common::tmr();
    cmd.timeout(LIMIT);
    for k in ["GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "NO_COLOR"] {
        cmd.env_remove(k);
    }
    cmd
}

/// Path of a fixture program, as a string argument.
pub fn fx(name: &str) -> String {
    crate::common::fixture(name).to_str().expect("fixture paths are UTF-8").to_string()
}

/// A finished tmr run.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` to completion (bounded by its assert_cmd timeout) and return its exit code and output.
pub fn run(cmd: &mut assert_cmd::Command) -> Ran {
    let out = cmd.output().expect("spawning tmr");
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "tmr did not exit normally ({}): killed at the {LIMIT:?} limit?\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Ran {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_json(&text)
}

pub fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("expected a number, got {v}"))
}

pub fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("expected an unsigned integer, got {v}"))
}

pub fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}"))
}

pub fn bool_of(v: &Value) -> bool {
    v.as_bool().unwrap_or_else(|| panic!("expected a bool, got {v}"))
}

pub fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("expected an array, got {v}"))
}

pub fn assert_close(actual: f64, expected: f64, tol: f64, what: &str) {
    assert!((actual - expected).abs() <= tol, "{what}: expected {expected} ± {tol}, got {actual}");
}

/// The zero-event bound `1 − (1 − c)^(1/n)`: after n clean runs, an event's rate is below this.
pub fn zero_event_bound(n: u64, confidence: f64) -> f64 {
    1.0 - (1.0 - confidence).powf(1.0 / n as f64)
}

/// Probability that a strict majority of `n` independent replicas fail, each with probability `p`.
pub fn majority_fails(n: u64, p: f64) -> f64 {
    let choose = |n: u64, k: u64| (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64);
    (n / 2 + 1..=n).map(|k| choose(n, k) * p.powi(k as i32) * (1.0 - p).powi((n - k) as i32)).sum()
}

/// `lo <= x <= hi` for an `{lo, hi}` interval object, both within [0, 1].
pub fn assert_in_interval(x: f64, interval: &Value, what: &str) {
    let (lo, hi) = (f64_of(&interval["lo"]), f64_of(&interval["hi"]));
    assert!(
        (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi) && lo <= hi,
        "{what}: bad interval {interval}"
    );
    assert!(lo <= x && x <= hi, "{what}: {x} outside [{lo}, {hi}]");
}

/// Run tmr with `--format json -o <tmp>` plus `opts`, then `--` and `command`. Returns the run and its
/// report, after checking the invariants every `tmr-report` keeps (see [`check_report`]).
pub fn run_json(opts: &[&str], command: &[&str]) -> (Ran, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("report.json");
    let ran = run(tmr().args(opts).args(["--format", "json", "-o"]).arg(&path).arg("--").args(command));
    assert!(path.exists(), "no report written; stderr:\n{}", ran.stderr);
    let report = read_json(&path);
    check_report(&report, ran.code);
    (ran, report)
}

/// What holds for every run report: schema, the exit code it names, and a classification whose counts
/// add up (reruns = rerun_runs, every run counted under one outcome, rates and intervals consistent).
pub fn check_report(r: &Value, code: i32) {
    assert_eq!(r["schema"], "tmr-report", "{r}");
    assert_eq!(r["version"], 4, "{r}");
    assert_eq!(r["exit_code"].as_i64(), Some(code as i64), "exit_code in the report");
    let c = &r["classification"];
    let reruns = u64_of(&c["reruns"]);
    assert!(reruns <= u64_of(&c["budget"]), "reruns within the budget: {c}");
    assert_eq!(arr(&c["rerun_runs"]).len() as u64, reruns, "one rerun_runs entry per rerun");
    let outcomes = arr(&c["outcomes"]);
    let replicas = u64_of(&r["replicas"]);
    if !outcomes.is_empty() {
        let initial: u64 = outcomes.iter().map(|o| u64_of(&o["initial"])).sum();
        assert_eq!(initial, replicas, "every replica of the voted round is counted once: {c}");
        let counted: u64 = outcomes.iter().map(|o| u64_of(&o["reruns"])).sum();
        assert_eq!(counted, reruns, "every rerun is counted once: {c}");
    }
    assert!(outcomes.iter().filter(|o| o["majority"] == true).count() <= 1, "one voted outcome at most");
    for o in outcomes {
        if reruns == 0 {
            assert!(o["rate"].is_null() && o["interval"].is_null(), "no rate without reruns: {o}");
        } else {
            let rate = f64_of(&o["rate"]);
            assert_close(rate, u64_of(&o["reruns"]) as f64 / reruns as f64, 1e-12, "rate = reruns / total");
            assert_in_interval(rate, &o["interval"], "an outcome's rate lies in its interval");
        }
    }
}

/// The classification's class.
pub fn class(r: &Value) -> &str {
    str_of(&r["classification"]["class"])
}

/// Per-run marker files: a shell snippet that records every execution (round and replica) in the
/// directory given as `$1`, so a test can see which executions really happened.
pub const MARK: &str = r#"touch "$1/ran-$TMR_ROUND-$TMR_REPLICA-of-$TMR_REPLICAS"; "#;

/// Marker files written by [`MARK`], sorted.
pub fn marks(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("reading the marker directory")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ran-"))
        .collect();
    v.sort();
    v
}
