//! End-to-end tests of multi-fault campaigns (`tmr campaign --faults K`) and of recovery on vs off
//! (`--compare-recovery`, `--checkpoint`): K faults go into K different replicas, each monitor takes the
//! fault meant for it, every trial is tallied by what the vote delivered, and with checkpoints a crash
//! caused by a fault is rolled back while, with the same faults and no recovery, it is not.
//!
//! The faults here have fixed times (at exit, or 150 ms into a run that computes for about half a
//! second, after its first checkpoints). A timed fault can still meet a checkpoint in progress (a race
//! in the tracer, see the README's campaign notes), so the recovery test asserts what must hold anyway:
//! something was rolled back, nothing escaped, and every crash that stood says why. Every run is bounded
//! (two minutes, in `tmr_json_report`); no sleeps, no assertion on time.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;

use serde_json::Value;

use common::*;

fn campaign_json(args: Vec<OsString>) -> JsonRun {
    tmr_json_report(Some("campaign"), &[], &args, "tmr-campaign-report")
}

fn command(name: &str, args: &[&str]) -> Vec<OsString> {
    let mut v = vec![fixture(name).into_os_string()];
    v.extend(args.iter().map(OsString::from));
    v
}

/// The row `name` of a column's `table` ("results" or "faults").
fn count(column: &Value, table: &str, name: &str) -> u64 {
    let rows = column[table].as_array().unwrap_or_else(|| panic!("no {table} in {column}"));
    let row = rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no {name} row in {column}"));
    row["count"].as_u64().expect("a count")
}

fn column(report: &Value, recovery: bool) -> &Value {
    report["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .find(|c| c["recovery"] == recovery)
        .unwrap_or_else(|| panic!("no recovery={recovery} column in {report}"))
}

/// What holds for every multi-fault report: K faults per run in K different replicas, each landed in
/// the replica its spec names with the spec's seed, and the tables count every run once.
fn check_multi(r: &Value, trials: usize, k: usize) {
    assert_eq!((r["mode"].as_str(), r["version"].as_u64()), (Some("multi-fault"), Some(2)), "{r}");
    assert_eq!(r["stopped"], "completed");
    assert_eq!(r["faults"].as_u64(), Some(k as u64));
    let log = r["trial_log"].as_array().expect("trial_log");
    assert_eq!(log.len(), trials);
    let columns = r["columns"].as_array().expect("columns");
    for t in log {
        let specs: Vec<&str> = t["specs"].as_str().expect("specs").split(';').collect();
        assert_eq!(specs.len(), k, "{t}");
        let runs = t["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), columns.len(), "each trial ran once per column: {t}");
        for run in runs {
            let faults = run["faults"].as_array().expect("faults");
            let replicas: BTreeSet<u64> = faults.iter().filter_map(|f| f["replica"].as_u64()).collect();
            assert_eq!(replicas.len(), k, "K different replicas: {run}");
            for (f, spec) in faults.iter().zip(&specs) {
                assert_eq!(f["spec"].as_str(), Some(*spec), "{run}");
                assert!(spec.contains(&format!("replica={}", f["replica"])), "{f}");
                let inj = &f["injected"];
                if f["effect"] != "not-injected" {
                    assert_eq!(inj["replica"], f["replica"], "each monitor took its own fault: {f}");
                    assert!(spec.contains(&format!("seed={}", inj["seed"])), "{f}");
                }
            }
        }
    }
    for c in columns {
        let results: u64 = c["results"].as_array().unwrap().iter().filter_map(|x| x["count"].as_u64()).sum();
        assert_eq!(results, trials as u64, "every trial counted once: {c}");
        let faults: u64 = c["faults"].as_array().unwrap().iter().filter_map(|x| x["count"].as_u64()).sum();
        assert_eq!(faults, (trials * k) as u64, "every fault counted once: {c}");
    }
}

#[test]
fn three_faults_go_into_three_replicas_and_the_same_seed_draws_the_same_trials() {
    require_ptrace!();
    // At the exit stop: corrupted state that never reaches the output, so every trial is corrected.
    let args = || {
        with(
            &["--faults", "3", "--trials", "3", "--seed", "21", "--inject", "flip:after=exit,region=heap"],
            command("compute", &["--mb", "2", "--iters", "2"]),
        )
    };
    let a = campaign_json(args());
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.stdout, "", "a campaign delivers no output of its own");
    check_multi(&a.report, 3, 3);
    let off = column(&a.report, false);
    assert_eq!(a.report["columns"].as_array().map(Vec::len), Some(1), "recovery off only");
    assert_eq!(count(off, "results", "corrected"), 3, "{off}");
    assert_eq!(count(off, "faults", "masked"), 9, "{off}");
    assert!(a.report["fault_window_ms"].is_null(), "the template fixed the time");
    let b = campaign_json(args());
    let specs = |r: &Value| -> Vec<Value> {
        r["trial_log"].as_array().unwrap().iter().map(|t| t["specs"].clone()).collect()
    };
    assert_eq!(specs(&a.report), specs(&b.report), "the seed fixes replicas, pages and bits");
}

#[test]
fn with_recovery_two_crashes_are_rolled_back_and_without_it_they_win_the_vote() {
    require_ptrace!();
    // rip bit 62 makes the address non-canonical: the faulty replica crashes at once, 150 ms into a run
    // that has been checkpointed every 50 ms since its start. compute does no I/O until it prints.
    let args = with(
        &[
            "--faults",
            "2",
            "--trials",
            "2",
            "--seed",
            "5",
            "--compare-recovery",
            "50ms",
            "--timeout",
            "60s",
            "--inject",
            "reg:reg=rip,bit=62,after=150ms",
        ],
        command("compute", &["--mb", "8", "--iters", "10"]),
    );
    let ran = campaign_json(args);
    check_multi(&ran.report, 2, 2);
    let (on, off) = (column(&ran.report, true), column(&ran.report, false));
    assert_eq!(on["checkpoint_ms"].as_f64(), Some(50.0));
    assert!(count(on, "faults", "recovered") >= 1, "a crash was rolled back: {on}");
    assert_eq!(on["escaped"].as_u64(), Some(0), "{on}");
    // The same faults without recovery: two replicas crash the same way, and that crash is the majority
    // (a failure tmr reports, not a wrong answer it delivers).
    assert_eq!(count(off, "faults", "crash"), 4, "{off}");
    assert_eq!(count(off, "results", "failed"), 2, "{off}");
    assert!(off["faults"].as_array().unwrap().iter().all(|r| r["name"] != "recovered"), "{off}");
    // Only the configuration under test (recovery on) sets the exit status.
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // Never silent: a recovered fault's replica shows its rollback, and a crash that was not recovered
    // has a stated reason (a refused rollback, or checkpointing that stopped). A register flip that lands
    // at the stop of a checkpoint's remote fork can also be undone by the tracer's register restore
    // (masked), or disturb the fork (see the README's campaign notes).
    for t in ran.report["trial_log"].as_array().unwrap() {
        let run = t["runs"].as_array().unwrap().iter().find(|r| r["recovery"] == true).unwrap();
        let rollbacks_of = |replica: &Value| -> Vec<Value> {
            run["rollbacks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|rb| rb["replica"] == *replica)
                .flat_map(|rb| rb["rollbacks"].as_array().cloned().unwrap_or_default())
                .collect()
        };
        for f in run["faults"].as_array().unwrap() {
            let rb = rollbacks_of(&f["replica"]);
            match f["effect"].as_str() {
                Some("recovered") => {
                    assert!(rb.iter().any(|x| x["resumed_epoch"].as_u64().is_some()), "{run}");
                    assert!(rb.iter().all(|x| x["cause"] == "SIGSEGV"), "{run}");
                }
                Some("crash") => {
                    let stopped = run["checkpoint_stopped"].as_array().unwrap();
                    let said = rb.iter().any(|x| x["note"].as_str().is_some_and(|n| !n.is_empty()))
                        || stopped.iter().any(|s| {
                            s.as_str().is_some_and(|s| s.contains(&format!("replica {}", f["replica"])))
                        });
                    assert!(said, "a crash with recovery on says why it stood: {run}");
                }
                _ => {}
            }
        }
    }
}

#[test]
fn the_human_table_shows_both_columns() {
    require_ptrace!();
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("report.txt");
    let out = tmr()
        .timeout(std::time::Duration::from_secs(120))
        .args(["campaign", "--faults", "2", "--trials", "1", "--compare-recovery", "20ms", "-o"])
        .arg(&file)
        .args(["--inject", "flip:after=exit,region=heap", "--"])
        .args(command("compute", &["--mb", "1", "--iters", "1"]))
        .output()
        .expect("running tmr");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = std::fs::read_to_string(&file).expect("the report");
    for needle in
        ["2 fault(s) each in different replicas", "recovery on (20ms)", "recovery off", "no-majority"]
    {
        assert!(report.contains(needle), "{needle:?} in\n{report}");
    }
    let header = report.lines().find(|l| l.contains("trial result")).expect("a header");
    assert!(header.find("recovery on") < header.find("recovery off"), "{header}");
}

#[test]
fn more_faults_than_replicas_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for args in [
        vec!["campaign", "--faults", "4", "--", "sh", "-c", &touch],
        vec!["campaign", "--faults", "0", "--", "sh", "-c", &touch],
        vec!["campaign", "-n", "5", "--faults", "2", "--inject", "flip:replica=1", "--", "sh", "-c", &touch],
    ] {
        let out = tmr().timeout(std::time::Duration::from_secs(60)).args(&args).output().expect("tmr");
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("--faults") || err.contains("drawn"), "{err}");
    }
    assert!(!marker.exists(), "no campaign ran");
}
