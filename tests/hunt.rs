//! Integration tests of `tmr hunt`: K single executions of a command, the tally of distinct outcomes, the
//! failure rate with its interval, what voting would make of it, and the kept output of failing runs.
//!
//! The one statistical test (the failure rate of `flaky 0.3`) is sized to fail with probability < 1e-6
//! for a correct tmr; everything else is deterministic (fixtures, or scripts keyed on TMR_ROUND).

mod classify_support;
mod common;

use std::path::Path;

use serde_json::Value;

use classify_support::*;

/// `tmr hunt OPTS --format json -- COMMAND`: the JSON report goes to stderr; stdout must stay empty.
fn hunt_json(opts: &[&str], command: &[&str]) -> (Ran, Value) {
    let ran = run(tmr().arg("hunt").args(opts).args(["--format", "json", "--"]).args(command));
    assert_eq!(ran.stdout, "", "hunt writes nothing on stdout");
    let r = parse_json(&ran.stderr);
    check_hunt_report(&r, ran.code);
    (ran, r)
}

/// What holds for every hunt report.
fn check_hunt_report(r: &Value, code: i32) {
    assert_eq!(r["schema"], "tmr-hunt-report", "{r}");
    assert_eq!(r["exit_code"].as_i64(), Some(code as i64), "{r}");
    let runs = u64_of(&r["runs"]);
    let failures = u64_of(&r["failures"]);
    assert!(runs <= u64_of(&r["runs_planned"]) && failures <= runs, "{r}");
    assert_eq!(code, if failures > 0 { 1 } else { 0 }, "exit 1 exactly when a run failed: {r}");
    let rate = f64_of(&r["failure_rate"]);
    if runs > 0 {
        assert_close(rate, failures as f64 / runs as f64, 1e-12, "failure_rate");
    }
    assert_in_interval(rate, &r["interval"], "failure_rate lies in its interval");
    let outcomes = arr(&r["outcomes"]);
    assert_eq!(outcomes.iter().map(|o| u64_of(&o["count"])).sum::<u64>(), runs, "every run counted: {r}");
    let failing: u64 = outcomes.iter().filter(|o| o["failing"] == true).map(|o| u64_of(&o["count"])).sum();
    assert_eq!(failing, failures, "failing outcomes add up to the failures: {r}");
    let voting = arr(&r["voting"]);
    assert_eq!(voting.iter().map(|v| u64_of(&v["replicas"])).collect::<Vec<_>>(), [3, 5], "{r}");
    for v in voting {
        let n = u64_of(&v["replicas"]);
        assert_close(f64_of(&v["failure_probability"]), majority_fails(n, rate), 1e-9, "voting at the rate");
        let hi = f64_of(&r["interval"]["hi"]);
        assert_close(f64_of(&v["at_upper_bound"]), majority_fails(n, hi), 1e-9, "voting at the upper bound");
    }
    match failures {
        0 if runs > 0 => assert_close(
            f64_of(&r["upper_bound_if_none"]),
            zero_event_bound(runs, f64_of(&r["confidence"])),
            1e-9,
            "upper_bound_if_none",
        ),
        _ => assert!(r["upper_bound_if_none"].is_null(), "{r}"),
    }
}

/// `sh -c SCRIPT` where the script fails (prints `fail`, exit 1) only on run `k`, and shows the
/// environment a hunt run gets.
fn fails_on_run(k: u64) -> Vec<String> {
    let script = format!(
        r#"echo "replica $TMR_REPLICA of $TMR_REPLICAS round $TMR_ROUND"; if [ "$TMR_ROUND" = {k} ]; then echo fail; exit 1; fi"#
    );
    vec!["sh".into(), "-c".into(), script]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn index_rows(dir: &Path) -> (String, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(dir.join("index.tsv")).expect("index.tsv");
    let mut lines = text.lines();
    let header = lines.next().expect("a header line").to_string();
    let rows = lines.map(|l| l.split('\t').map(String::from).collect()).collect();
    (header, rows)
}

// ---------------------------------------------------------------------------------------------------
// Ground truth
// ---------------------------------------------------------------------------------------------------

#[test]
fn the_failure_rate_of_a_known_flake_is_estimated_within_its_interval() {
    // flaky 0.3 fails with probability 0.3 (OS randomness). Over 400 runs:
    //  - the Wilson 95% interval widened by ±0.08 misses 0.3 with probability 4e-8 (exact binomial sum);
    //  - |p̂ − 0.3| > 0.12 has probability 1.5e-7 (5.2 sd).
    let (ran, r) = hunt_json(&["--runs", "400", "-j", "2"], &[&fx("flaky"), "0.3"]);
    assert_eq!(ran.code, 1, "some run failed");
    assert_eq!((u64_of(&r["runs"]), u64_of(&r["runs_planned"])), (400, 400));
    assert_eq!(r["stopped"], "completed");
    assert_eq!(r["jobs"], 2);
    let failures = u64_of(&r["failures"]);
    assert!(failures > 0 && failures < 400, "{r}");
    let rate = f64_of(&r["failure_rate"]);
    assert!((rate - 0.3).abs() <= 0.12, "estimate {rate} too far from 0.3");
    let (lo, hi) = (f64_of(&r["interval"]["lo"]), f64_of(&r["interval"]["hi"]));
    assert!(lo - 0.08 <= 0.3 && 0.3 <= hi + 0.08, "0.3 outside [{lo}, {hi}] ± 0.08");
    assert!(hi - lo < 0.15, "400 runs give a narrow interval: [{lo}, {hi}]");
    // Two outcomes: `ok`/exit 0 and `fail`/exit 1.
    let outcomes = arr(&r["outcomes"]);
    assert_eq!(outcomes.len(), 2, "{r}");
    let fail = outcomes.iter().find(|o| o["failing"] == true).expect("a failing outcome");
    assert_eq!(
        (&fail["outcome"]["kind"], &fail["outcome"]["code"]),
        (&Value::from("exited"), &Value::from(1))
    );
    assert_eq!(u64_of(&fail["count"]), failures);
}

#[test]
fn the_human_report_goes_to_stderr_without_progress_noise() {
    let ran = run(tmr().args(["hunt", "--runs", "30", "-j", "2", "--", &fx("flaky"), "0.5"]));
    assert_eq!(ran.stdout, "", "the runs' output is not delivered");
    assert!(!ran.stderr.contains('\r'), "no progress bar into a pipe: {:?}", ran.stderr);
    assert!(!ran.stderr.contains('\x1b'), "no escape sequences into a pipe: {:?}", ran.stderr);
    assert!(ran.stderr.lines().count() >= 3, "{}", ran.stderr);
    assert!(ran.stderr.lines().all(|l| l.starts_with("tmr hunt: ")), "{}", ran.stderr);
    assert!(ran.stderr.contains("30 of 30 runs"), "{}", ran.stderr);
}

#[test]
fn a_command_that_never_fails_gets_an_upper_bound() {
    let (ran, r) = hunt_json(&["--runs", "20"], &["true"]);
    assert_eq!(ran.code, 0);
    assert_eq!((u64_of(&r["runs"]), u64_of(&r["failures"])), (20, 0));
    assert_close(f64_of(&r["upper_bound_if_none"]), zero_event_bound(20, 0.95), 1e-9, "bound after 20 runs");
    assert_eq!(f64_of(&r["interval"]["lo"]), 0.0);

    let ran = run(tmr().args(["hunt", "--runs", "20", "--", "true"]));
    assert_eq!(ran.code, 0);
    assert!(ran.stderr.contains("no failure in 20 runs"), "{}", ran.stderr);
    assert!(ran.stderr.contains("13.91%"), "the bound is shown: {}", ran.stderr);
}

#[test]
fn a_real_shell_command_is_hunted() {
    let (ran, r) = hunt_json(&["--runs", "10", "-j", "2"], &["sh", "-c", "exit 0"]);
    assert_eq!(ran.code, 0);
    assert_eq!((u64_of(&r["runs"]), u64_of(&r["failures"])), (10, 0));
    let (ran, r) = hunt_json(&["--runs", "6", "-j", "2"], &["sh", "-c", "exit 3"]);
    assert_eq!(ran.code, 1, "any failing run makes the hunt exit 1, whatever the run's code");
    assert_eq!(u64_of(&r["failures"]), 6);
    assert_eq!(arr(&r["outcomes"])[0]["outcome"]["code"], 3);
}

#[test]
fn each_run_sees_its_index_as_tmr_round() {
    let cmd = fails_on_run(4);
    let (ran, r) = hunt_json(&["--runs", "9", "-j", "2"], &strs(&cmd));
    assert_eq!(ran.code, 1);
    assert_eq!(u64_of(&r["failures"]), 1, "exactly run 4 failed: {r}");
    let fail = arr(&r["outcomes"]).iter().find(|o| o["failing"] == true).expect("failing outcome").clone();
    assert_eq!((u64_of(&fail["count"]), u64_of(&fail["first_run"])), (1, 4));
}

// ---------------------------------------------------------------------------------------------------
// Stopping early
// ---------------------------------------------------------------------------------------------------

#[test]
fn until_fail_stops_at_the_first_failure() {
    let exit_with = fx("exit-with");
    let (ran, r) = hunt_json(&["--runs", "50", "-j", "1", "--until-fail"], &[&exit_with, "1"]);
    assert_eq!(ran.code, 1);
    assert_eq!(r["stopped"], "until-fail");
    assert_eq!((u64_of(&r["runs"]), u64_of(&r["runs_planned"])), (1, 50), "one at a time: exactly one run");

    let (ran, r) = hunt_json(&["--runs", "50", "-j", "2", "--until-fail"], &[&exit_with, "1"]);
    assert_eq!(ran.code, 1);
    assert_eq!(r["stopped"], "until-fail");
    let runs = u64_of(&r["runs"]);
    assert!((1..=2).contains(&runs), "no new run after the first failure (2 were in flight): {runs}");

    let ran = run(tmr().args(["hunt", "--runs", "50", "-j", "1", "--until-fail", "--", &exit_with, "1"]));
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("stopped at the first failure"), "{}", ran.stderr);
}

#[test]
fn until_fail_runs_until_the_failing_run() {
    let cmd = fails_on_run(5);
    let (ran, r) = hunt_json(&["--runs", "40", "-j", "1", "--until-fail"], &strs(&cmd));
    assert_eq!(ran.code, 1);
    assert_eq!((u64_of(&r["runs"]), u64_of(&r["failures"])), (6, 1), "runs 0..=5: {r}");
    assert_eq!(r["stopped"], "until-fail");
}

#[test]
fn duration_stops_a_hunt_that_would_take_hours() {
    // A million runs of `true` take far longer than the test's 120 s limit: finishing at all shows that
    // --duration stopped it.
    let (ran, r) = hunt_json(&["--runs", "1000000", "-j", "2", "--duration", "1s"], &["true"]);
    assert_eq!(ran.code, 0);
    assert_eq!(r["stopped"], "duration");
    let runs = u64_of(&r["runs"]);
    assert!((1..1_000_000).contains(&runs), "{runs}");
    assert_eq!(u64_of(&r["failures"]), 0);
}

// ---------------------------------------------------------------------------------------------------
// --keep
// ---------------------------------------------------------------------------------------------------

#[test]
fn keep_writes_each_failing_runs_output_and_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("kept");
    let (ran, r) = hunt_json(
        &["--runs", "3", "-j", "2", "--keep", keep.to_str().unwrap()],
        &[&fx("exit-with"), "2", "--stdout", "boom", "--stderr", "oops"],
    );
    assert_eq!(ran.code, 1);
    assert_eq!(str_of(&r["kept"]), keep.to_str().unwrap());
    for i in 0..3 {
        let out = std::fs::read_to_string(keep.join(format!("run-{i}.stdout"))).expect("run stdout kept");
        assert_eq!(out, "boom\n");
        let err = std::fs::read_to_string(keep.join(format!("run-{i}.stderr"))).expect("run stderr kept");
        assert_eq!(err, "oops\n");
    }
    let (header, rows) = index_rows(&keep);
    assert_eq!(header.split('\t').next(), Some("run"), "{header}");
    assert_eq!(rows.len(), 3, "one row per failing run: {rows:?}");
    let columns = header.split('\t').count();
    let mut runs: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    runs.sort();
    assert_eq!(runs, ["0", "1", "2"]);
    for row in &rows {
        assert_eq!(row.len(), columns, "{row:?}");
        assert_eq!(row[2], "2", "exit_code column: {row:?}");
        assert_eq!(row[4], "5", "stdout_bytes column: {row:?}");
    }
}

#[test]
fn keep_ignores_passing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("kept");
    let cmd = fails_on_run(3);
    let (ran, _) = hunt_json(&["--runs", "6", "-j", "2", "--keep", keep.to_str().unwrap()], &strs(&cmd));
    assert_eq!(ran.code, 1);
    let mut files: Vec<String> = std::fs::read_dir(&keep)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["index.tsv", "run-3.stderr", "run-3.stdout"]);
    let out = std::fs::read_to_string(keep.join("run-3.stdout")).unwrap();
    assert_eq!(out, "replica 0 of 1 round 3\nfail\n", "a hunt run is replica 0 of 1, round = its index");
    let (_, rows) = index_rows(&keep);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], "3");
}

// ---------------------------------------------------------------------------------------------------
// Outcomes by output, timeouts
// ---------------------------------------------------------------------------------------------------

#[test]
fn compare_stdout_fails_runs_whose_output_differs_unless_masked() {
    let timestamps = fx("timestamps");
    let (ran, r) = hunt_json(&["--runs", "8", "-j", "2", "--compare", "exit,stdout"], &[&timestamps]);
    assert_eq!(ran.code, 1);
    assert_eq!(u64_of(&r["failures"]), 7, "every run but the reference differs: {r}");

    let (ran, r) = hunt_json(
        &[
            "--runs",
            "8",
            "-j",
            "2",
            "--compare",
            "exit,stdout",
            "--mask",
            "run at [0-9]+",
            "--mask",
            "pid [0-9]+",
        ],
        &[&timestamps],
    );
    assert_eq!(ran.code, 0, "{r}");
    assert_eq!((u64_of(&r["failures"]), arr(&r["outcomes"]).len()), (0, 1));

    let (ran, _) = hunt_json(&["--runs", "8", "-j", "2"], &[&timestamps]);
    assert_eq!(ran.code, 0, "by default only the exit status counts");
}

#[test]
fn a_run_over_the_timeout_is_a_failing_timed_out_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hunt.json");
    let mut cmd = common::tmr_std();
    cmd.args(["hunt", "--runs", "2", "-j", "2", "--timeout", "300ms", "--format", "json", "-o"])
        .arg(&out)
        .arg("--")
        .arg(fx("hang"));
    // Bounded pipes too: a hung run that survived would hold them open.
    let done = common::spawn(&mut cmd, common::Input::Null).finish(LIMIT);
    assert_eq!(done.status.code(), Some(1), "{}", common::text(&done.stderr));
    let r = read_json(&out);
    check_hunt_report(&r, 1);
    assert_eq!(u64_of(&r["failures"]), 2);
    assert_eq!(arr(&r["outcomes"])[0]["outcome"]["kind"], "timed-out", "{r}");
}

// ---------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------

#[test]
fn bad_hunt_flags_exit_125_with_a_one_line_error() {
    for args in [
        &["hunt", "--runs", "0", "true"][..],
        &["hunt", "-j", "0", "true"],
        &["hunt", "--duration", "soon", "true"],
        &["hunt", "--runs", "3"],
    ] {
        let ran = run(tmr().args(args));
        assert_eq!(ran.code, 125, "{args:?}: {}", ran.stderr);
        common::assert_tmr_error(ran.stderr.as_bytes());
    }
}

#[test]
fn an_unwritable_report_file_fails_before_any_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("touch '{}'", marker.display());
    let ran = run(tmr()
        .args(["hunt", "--runs", "3", "-o"])
        .arg(dir.path().join("missing/dir/r.json"))
        .args(["--", "sh", "-c", &script]));
    assert_eq!(ran.code, 125, "{}", ran.stderr);
    assert!(!marker.exists(), "no run wasted on a typo in the report path");
}

#[test]
fn with_an_output_file_stderr_stays_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hunt.txt");
    let ran = run(tmr().args(["hunt", "--runs", "5", "-o"]).arg(&out).args(["--", "true"]));
    assert_eq!((ran.code, ran.stdout.as_str(), ran.stderr.as_str()), (0, "", ""));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("5 of 5 runs"), "{text}");
}

#[test]
fn first_run_is_the_lowest_index_even_when_a_later_run_finishes_first() {
    // Runs 0 and 1 start together. Run 0 waits (bounded) until run 2 has started — which can only happen
    // once run 1 has finished — so run 1 completes first; runs 0 and 1 both fail, run 2 passes.
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("run-2-started");
    let script = format!(
        r#"f='{}'
case "$TMR_ROUND" in
  0) i=0; while [ ! -e "$f" ]; do i=$((i+1)); [ $i -gt 6000 ] && exit 7; sleep 0.01; done; exit 1 ;;
  1) exit 1 ;;
  *) touch "$f"; exit 0 ;;
esac"#,
        flag.display()
    );
    let (ran, r) = hunt_json(&["--runs", "3", "-j", "2"], &["sh", "-c", &script]);
    assert_eq!(ran.code, 1);
    assert_eq!(
        u64_of(&r["failures"]),
        2,
        "runs 0 and 1 failed (exit 7 would mean the handshake timed out): {r}"
    );
    let failing: Vec<&Value> = arr(&r["outcomes"]).iter().filter(|o| o["failing"] == true).collect();
    assert_eq!(failing.len(), 1, "one failing outcome, exit 1 (exit 7: the handshake timed out): {r}");
    assert_eq!(failing[0]["outcome"]["code"], 1, "{r}");
    assert_eq!(u64_of(&failing[0]["first_run"]), 0, "{r}");
}

/// On a terminal the hunt shows a live progress line. `script` gives tmr a pseudo-terminal; the runs
/// wait on a file handshake, so the bar is certainly drawn before they finish.
#[test]
fn a_terminal_gets_a_live_progress_line() {
    let Ok(script) = which("script") else {
        println!("skipped: util-linux `script` is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let tmr_bin = assert_cmd::cargo::cargo_bin("tmr");
    // The first run creates the file after a few hundred polls; the progress bar ticks every 200 ms.
    let inner = format!(
        "{} hunt --runs 3 -j 1 -- sh -c 'i=0; while [ $i -lt 300 ] && [ ! -e {go} ]; do i=$((i+1)); sleep 0.01; done; touch {go}'",
        tmr_bin.display(),
        go = go.display()
    );
    let out = std::process::Command::new(script)
        .args(["-qec", &inner, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("tmr hunt: 3 of 3 runs"), "{shown}");
    assert!(shown.contains("runs ·"), "a progress line was drawn on the terminal: {shown:?}");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
        .ok_or(())
}

/// `tmr hunt --help` and `tmr vote --help` used to list `mem` as a `--compare` value, which both refuse.
#[test]
fn help_lists_only_the_compare_values_hunt_and_vote_accept() {
    for sub in ["hunt", "vote"] {
        let out = tmr().args([sub, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let compare: String = help.split("--compare").nth(1).unwrap_or("").chars().take(300).collect();
        assert!(compare.contains("stderr"), "{sub}: {compare}");
        assert!(!compare.contains("possible values") && !compare.contains(", mem"), "{sub}: {compare}");
    }
}
