//! End-to-end tests of fault injection: `tmr --inject SPEC` (one fault in one replica of the voted round)
//! and `tmr campaign` (a golden run, then K voted rounds with one fault each, tallied).
//!
//! What a user relies on: with one fault among three replicas nothing escapes the vote; a crash caused by
//! a fault is outvoted and classified transient; every fault is recorded with enough detail to replay it
//! exactly; a bad spec is refused before anything runs, and an injection that could not happen is an
//! error, not a silent pass.
//!
//! Where the kernel refuses ptrace every test fails, unless TMR_TEST_ALLOW_SKIP=1 lets it skip (see
//! `require_ptrace!`). No sleeps, every run bounded, no assertion on time.

#[macro_use]
mod common;

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

/// Bound of one tmr run in these tests: far above what any run needs.
const LIMIT: Duration = Duration::from_secs(120);

/// Arguments of mixed types (paths, strings) as one argv.
macro_rules! argv {
    ($($a:expr),* $(,)?) => { vec![$(OsString::from(&$a)),*] };
}

/// One finished tmr run with its JSON report.
type Ran = JsonRun;

impl Ran {
    fn class(&self) -> &str {
        self.report["classification"]["class"].as_str().expect("a class")
    }

    fn injected(&self) -> &Value {
        let inj = &self.report["injection"];
        assert!(inj["error"].is_null(), "the injection happened: {inj}");
        assert!(inj["injected"].is_object(), "{inj}");
        &inj["injected"]
    }
}

fn run_json(args: Vec<OsString>) -> Ran {
    tmr_json_report(None, &[], &args, "tmr-report")
}

fn campaign_json(args: Vec<OsString>) -> Ran {
    tmr_json_report(Some("campaign"), &[], &args, "tmr-campaign-report")
}

/// stdout of a command run directly (bounded).
fn direct_stdout(cmd: &mut Command) -> String {
    let out = run(cmd, Input::Null);
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", out.status, text(&out.stderr));
    text(&out.stdout)
}

fn trial_log(r: &Value) -> &Vec<Value> {
    r["trial_log"].as_array().expect("trial_log is a list")
}

fn count_of(r: &Value, category: &str) -> u64 {
    let table = r["table"].as_array().expect("table is a list");
    let row = table.iter().find(|c| c["category"] == category).unwrap_or_else(|| panic!("{category} row"));
    row["count"].as_u64().expect("a count")
}

const CATEGORIES: [&str; 6] = ["masked", "detected-corrected", "crash", "hang", "escaped", "not-injected"];

/// What holds for every campaign report.
fn check_campaign(r: &Value, trials: u64) {
    assert_eq!(r["trials"].as_u64(), Some(trials), "every trial ran: {}", r["stopped"]);
    assert_eq!(r["stopped"], "completed");
    let log = trial_log(r);
    assert_eq!(log.len() as u64, trials);
    let table = r["table"].as_array().unwrap();
    let names: Vec<&str> = table.iter().filter_map(|c| c["category"].as_str()).collect();
    assert_eq!(names, CATEGORIES, "every category has a row, in order");
    let sum: u64 = CATEGORIES.iter().map(|c| count_of(r, c)).sum();
    assert_eq!(sum, trials, "the table counts every trial once");
    for c in CATEGORIES {
        let logged = log.iter().filter(|t| t["category"] == c).count() as u64;
        assert_eq!(logged, count_of(r, c), "the table matches the trial log for {c}");
    }
    assert_eq!(r["injected"].as_u64(), Some(trials - count_of(r, "not-injected")));
    assert_eq!(r["escaped"].as_u64(), Some(count_of(r, "escaped")));
    for (i, t) in log.iter().enumerate() {
        assert_eq!(t["trial"].as_u64(), Some(i as u64));
        let spec = t["spec"].as_str().expect("a spec");
        assert!(spec.starts_with("flip:") || spec.starts_with("reg:"), "{spec}");
        assert!(spec.contains(&format!("replica={}", t["replica"])), "the spec names its replica: {t}");
        if t["category"] == "not-injected" {
            assert!(t["injected"].is_null() && t["error"].is_string(), "{t}");
        } else {
            let inj = &t["injected"];
            assert!(inj.is_object(), "an injected trial records what it did: {t}");
            assert_eq!(inj["replica"], t["replica"], "{t}");
            assert!(spec.contains(&format!("seed={}", inj["seed"])), "the spec carries the drawn seed: {t}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Campaign
// ---------------------------------------------------------------------------------------------------------

/// The campaigns' target: about 0.1 s of deterministic work on a 2 MiB buffer.
fn compute_small() -> Vec<OsString> {
    argv![fixture("compute"), "--mb", "2", "--iters", "6"]
}

/// A fault template with a fixed time (at the exit stop), so every draw depends on the seed alone.
const AT_EXIT: &str = "flip:after=exit,region=heap";

#[test]
fn a_campaign_lets_no_fault_escape() {
    require_ptrace!();
    // --timeout: a replica is "hung" only after 20 s, so a slow machine cannot make healthy replicas
    // look hung (the default is 10x the golden run, at least 2 s).
    let ran = campaign_json(with(&["--trials", "60", "--seed", "11", "--timeout", "20s"], compute_small()));
    let r = &ran.report;
    let counts: Vec<String> = CATEGORIES.iter().map(|c| format!("{c} {}", count_of(r, c))).collect();
    println!("campaign seed 11, 60 trials: {}", counts.join(", "));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, "", "a campaign delivers no output of its own");
    check_campaign(r, 60);
    assert_eq!(r["seed"], 11);
    assert_eq!(r["escaped"], 0, "one fault among three replicas never escapes the vote");
    assert!(count_of(r, "masked") >= 1, "some flips hit dead or overwritten data: {counts:?}");
    assert!(count_of(r, "detected-corrected") >= 1, "some flips changed the result: {counts:?}");
    assert_eq!(r["golden"]["outcome"], serde_json::json!({"kind": "exited", "code": 0}));
}

#[test]
fn with_mem_every_exit_time_heap_flip_is_detected() {
    require_ptrace!();
    let ran = campaign_json(with(
        &["--mem", "--trials", "6", "--seed", "3", "--timeout", "20s", "--inject", AT_EXIT],
        compute_small(),
    ));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    check_campaign(&ran.report, 6);
    assert_eq!(count_of(&ran.report, "detected-corrected"), 6, "a flip at exit is in compared memory");
    // Without --mem the same faults never reach the output: masked.
    let ran = campaign_json(with(
        &["--trials", "6", "--seed", "3", "--timeout", "20s", "--inject", AT_EXIT],
        compute_small(),
    ));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    check_campaign(&ran.report, 6);
    assert_eq!(count_of(&ran.report, "masked"), 6);
}

// ---------------------------------------------------------------------------------------------------------
// A crash caused by a fault is outvoted
// ---------------------------------------------------------------------------------------------------------

#[test]
fn a_register_flip_that_crashes_a_replica_is_corrected() {
    require_ptrace!();
    let compute = fixture("compute");
    let direct = direct_stdout(Command::new(&compute).args(["--mb", "64", "--iters", "8"]));
    let ran = run_json(with(
        &["--inject", "reg:replica=1,after=20ms,reg=rip,bit=40", "--reruns", "2"],
        argv![compute, "--mb", "64", "--iters", "8"],
    ));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, direct, "the delivered checksum is the correct one");
    let runs = ran.report["runs"].as_array().unwrap();
    let outcome = |r: usize| &runs.iter().find(|x| x["replica"] == r).expect("a run per replica")["outcome"];
    assert_eq!(outcome(1), &serde_json::json!({"kind": "signaled", "signal": 11}), "rip is unusable");
    assert_eq!(outcome(0), &serde_json::json!({"kind": "exited", "code": 0}));
    assert_eq!(outcome(2), &serde_json::json!({"kind": "exited", "code": 0}));
    let injected = ran.injected();
    assert_eq!(injected["target"], "register");
    assert_eq!((&injected["reg"], &injected["bit"]), (&Value::from("rip"), &Value::from(40)));
    let (before, after) = (injected["before"].as_u64().unwrap(), injected["after"].as_u64().unwrap());
    assert_eq!(before ^ after, 1 << 40, "exactly bit 40 flipped");
    assert_eq!(ran.report["vote"]["majority"], serde_json::json!([0, 2]));
    assert_eq!(ran.report["injection"]["faulty_replica_agreed"], false);
    assert_eq!(ran.class(), "transient", "{}", ran.report["classification"]);
}

// ---------------------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------------------

/// The parts of a memory injection that must replay exactly (not its time).
fn flip_of(injected: &Value) -> Value {
    let keys =
        ["replica", "seed", "target", "region", "region_start", "page", "addr", "bits", "before", "after"];
    let mut out = serde_json::Map::new();
    for k in keys {
        assert!(!injected[k].is_null(), "injected.{k} is recorded: {injected}");
        out.insert(k.to_string(), injected[k].clone());
    }
    Value::Object(out)
}

#[test]
fn the_same_spec_flips_the_same_bits() {
    require_ptrace!();
    let heapstate = fixture("heapstate");
    let spec = "flip:replica=2,after=exit,region=heap,seed=123";
    let once = || run_json(argv!["--inject", spec, "--reruns", "0", "--", heapstate, "--mb", "2"]);
    let (a, b) = (once(), once());
    assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.stderr, b.stderr);
    let fa = flip_of(a.injected());
    println!("seed 123 flips {fa}");
    assert_eq!(fa, flip_of(b.injected()), "the same spec flips the same bits");
    assert_eq!(fa["replica"], 2);
    assert_eq!(fa["region"], "[heap]");
    let (before, after) = (&fa["before"], &fa["after"]);
    let bits = fa["bits"].as_array().unwrap();
    assert_eq!(bits.len(), 1, "bits=1 by default");
    let flipped = before[0].as_u64().unwrap() ^ after[0].as_u64().unwrap();
    assert_eq!(flipped, 1 << bits[0].as_u64().unwrap(), "after is before with the recorded bit flipped");
    // The spec in the report, with every choice explicit, replays it too.
    let explicit = a.report["injection"]["spec"].as_str().unwrap().to_string();
    let c = run_json(argv!["--inject", explicit, "--reruns", "0", "--", heapstate, "--mb", "2"]);
    assert_eq!(flip_of(c.injected()), fa, "the reported spec ({explicit}) replays the fault");
}

#[test]
fn a_campaign_trial_replays_in_run_mode() {
    require_ptrace!();
    let args =
        || with(&["--trials", "4", "--seed", "5", "--timeout", "20s", "--inject", AT_EXIT], compute_small());
    let (a, b) = (campaign_json(args()), campaign_json(args()));
    assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.stderr, b.stderr);
    check_campaign(&a.report, 4);
    let specs = |r: &Ran| trial_log(&r.report).iter().map(|t| t["spec"].clone()).collect::<Vec<_>>();
    let flips = |r: &Ran| trial_log(&r.report).iter().map(|t| flip_of(&t["injected"])).collect::<Vec<_>>();
    assert_eq!(specs(&a), specs(&b), "the same seed draws the same faults");
    assert_eq!(flips(&a), flips(&b), "and they land on the same bits");
    // Each trial's spec, passed to --inject, replays that trial.
    for t in trial_log(&a.report) {
        let spec = t["spec"].as_str().unwrap();
        let replay = run_json(with(&["--mem", "--reruns", "0", "--inject", spec], compute_small()));
        assert_eq!(replay.code, 0, "{}", replay.stderr);
        assert_eq!(flip_of(replay.injected()), flip_of(&t["injected"]), "trial {}", t["trial"]);
    }
}

/// A spec without its `after=…` (the time a campaign draws over the golden run's measured wall time).
fn without_time(spec: &str) -> String {
    let (kind, rest) = spec.split_once(':').expect("kind:keys");
    let keys: Vec<&str> = rest.split(',').filter(|kv| !kv.starts_with("after=")).collect();
    format!("{kind}:{}", keys.join(","))
}

#[test]
fn a_campaign_with_the_same_seed_draws_the_same_replicas_and_seeds() {
    require_ptrace!();
    let args = || with(&["--trials", "6", "--seed", "11", "--timeout", "20s"], compute_small());
    let (a, b) = (campaign_json(args()), campaign_json(args()));
    assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.stderr, b.stderr);
    let untimed = |r: &Ran| {
        trial_log(&r.report).iter().map(|t| without_time(t["spec"].as_str().unwrap())).collect::<Vec<_>>()
    };
    assert_eq!(untimed(&a), untimed(&b));
}

// ---------------------------------------------------------------------------------------------------------
// Bad specs and injections that cannot happen
// ---------------------------------------------------------------------------------------------------------

#[test]
fn a_bad_spec_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch '{}'", marker.display());
    let cases = [
        ("flip:replica=3", "--inject names replica 3 but there are only 3"),
        ("flip:region=moon", "region=moon: use heap, stack, data, anon or any"),
        ("flip:colour=red", "unknown key 'colour'"),
        ("flip:bit=9", "bit 0-7"),
        ("reg:reg=xmm0", "reg=xmm0"),
        ("flip:after=soon", "invalid duration 'soon'"),
        ("flip:offset=4096", "must be below 4096"),
        ("zap:replica=0", "expected flip:… or reg:…"),
        ("flip:replica", "expected key=value"),
        // Each of these used to be coerced or ignored; bits=9 at one byte spun forever.
        ("flip:replica=0,offset=0,bits=9", "bits=9"),
        ("flip:bit=263", "bit 0-7"),
        ("reg:bit=256", "bits 0-63"),
        ("flip:bits=0", "bits=0"),
        ("flip:reg=rax", "applies only to reg:"),
    ];
    for (spec, message) in cases {
        let out = tmr().timeout(LIMIT).args(["--inject", spec, "--", "sh", "-c", &touch]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{spec}: {}", text(&out.stderr));
        let err = assert_tmr_error(&out.stderr);
        assert!(err.contains(message), "{spec}: {err}");
        assert_eq!(text(&out.stdout), "");
        assert!(!marker.exists(), "{spec}: the command must not have run");
    }
    // The range follows -n: with 2 replicas, replica 2 does not exist.
    let out = tmr()
        .timeout(LIMIT)
        .args(["-n", "2", "--inject", "flip:replica=2", "--", "sh", "-c", &touch])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(assert_tmr_error(&out.stderr).contains("only 2"));
    let out = tmr()
        .timeout(LIMIT)
        .args(["campaign", "--inject", "flip:replica=3", "--", "sh", "-c", &touch])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(assert_tmr_error(&out.stderr).contains("replica 3"));
    let out = tmr()
        .timeout(LIMIT)
        .args(["campaign", "--inject", "flip:region=moon", "--", "sh", "-c", &touch])
        .output();
    assert_eq!(out.unwrap().status.code(), Some(125));
    assert!(!marker.exists(), "no campaign ran");
}

/// `tmr --inject SPEC -- COMMAND` where the fault cannot be injected: exit 125 with the reason.
fn assert_injection_fails(spec: &str, command: Vec<OsString>, reason: &str) {
    let ran = run_json(with(&["--inject", spec, "--reruns", "0"], command));
    assert_eq!(ran.code, 125, "{spec}: {}", ran.stderr);
    let line = format!("tmr: --inject failed: {reason}");
    assert!(ran.stderr.contains(&line), "{spec}: expected {line:?} in:\n{}", ran.stderr);
    let inj = &ran.report["injection"];
    assert!(inj["injected"].is_null(), "{inj}");
    assert!(inj["error"].as_str().is_some_and(|e| e.contains(reason)), "{inj}");
}

#[test]
fn an_injection_that_cannot_happen_is_an_error() {
    require_ptrace!();
    let heapstate = || argv![fixture("heapstate"), "--mb", "1"];
    assert_injection_fails("flip:replica=1,region=heap,page=999999", heapstate(), "page 999999 is beyond");
    // coreutils' true never calls malloc: it has no [heap].
    assert_injection_fails(
        "flip:replica=0,region=heap",
        argv!["true"],
        "the replica has no writable heap pages",
    );
    assert_injection_fails(
        "flip:replica=2,after=30s",
        heapstate(),
        "the replica ended before the injection time",
    );
}

#[test]
fn a_failed_injection_still_delivers_the_output() {
    require_ptrace!();
    // An injection fails only once the replicas ran: the command's output is still delivered.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch '{}'; echo done", marker.display());
    let spec = "flip:replica=0,region=heap,page=999999";
    let ran = run_json(argv!["--inject", spec, "--reruns", "0", "--", "sh", "-c", touch]);
    assert_eq!(ran.code, 125);
    assert_eq!(ran.stdout, "done\n");
    assert!(marker.exists());
}

#[test]
fn a_failed_injection_report_states_exit_125() {
    require_ptrace!();
    let spec = "flip:replica=1,region=heap,page=999999";
    let ran = run_json(argv!["--inject", spec, "--reruns", "0", "--", fixture("heapstate"), "--mb", "1"]);
    assert_eq!(ran.code, 125);
    assert_eq!(ran.report["exit_code"], 125, "the report states the exit code tmr ended with");
}

// ---------------------------------------------------------------------------------------------------------
// A one-off fault is transient, and the summary says where it went
// ---------------------------------------------------------------------------------------------------------

#[test]
fn an_injected_one_off_fault_is_transient() {
    require_ptrace!();
    let heapstate = fixture("heapstate");
    let direct = direct_stdout(Command::new(&heapstate).args(["--mb", "4"]));
    let spec = "flip:replica=0,after=exit,region=heap,seed=1";
    let out = tmr()
        .timeout(LIMIT)
        .args(["--mem", "--inject", spec, "--reruns", "4", "--"])
        .arg(&heapstate)
        .args(["--mb", "4"])
        .write_stdin(Vec::new())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&out.stdout), direct, "a healthy replica's output is delivered");
    assert!(stderr.contains("tmr: transient"), "{stderr}");
    assert!(stderr.contains("injected into replica 0"), "{stderr}");
    assert!(stderr.contains("replica 0: [heap]"), "the divergent page is named: {stderr}");

    let ran = run_json(argv![
        "--mem",
        "--inject",
        spec,
        "--reruns",
        "4",
        "--rerun-budget",
        "1h",
        "--",
        heapstate,
        "--mb",
        "4"
    ]);
    assert_eq!(ran.code, 0);
    assert_eq!(ran.class(), "transient", "{}", ran.report["classification"]);
    assert_eq!(ran.report["classification"]["reruns"], 4);
    assert_eq!(ran.report["vote"]["majority"], serde_json::json!([1, 2]));
    assert_eq!(ran.injected()["replica"], 0);
}

#[test]
fn inject_without_mem_votes_on_output_only() {
    require_ptrace!();
    let heapstate = fixture("heapstate");
    let ran = run_json(with(
        &["--inject", "flip:replica=1,after=exit,region=heap,seed=7"],
        argv![heapstate, "--mb", "2"],
    ));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.report["compare"], serde_json::json!(["exit", "stdout"]));
    assert_eq!(ran.report["vote"]["unanimous"], true);
    assert_eq!(ran.class(), "none");
    assert_eq!(ran.report["injection"]["faulty_replica_agreed"], true);
    assert_eq!(ran.injected()["region"], "[heap]");
}

#[test]
fn an_injected_one_off_fault_is_transient_with_the_default_budget() {
    require_ptrace!();
    let heapstate = fixture("heapstate");
    let spec = "flip:replica=1,after=exit,region=heap,seed=5";
    let ran = run_json(argv!["--mem", "--inject", spec, "--", heapstate, "--mb", "4"]);
    assert_eq!(ran.code, 0);
    let c = &ran.report["classification"];
    assert_eq!(ran.class(), "transient", "reruns {} · outcomes {}", c["reruns"], c["outcomes"]);
}

/// SIGINT/SIGTERM to tmr during an `--inject` run end it with the signal's code (130/143), as without
/// `--inject`: the monitor that was stopped with its replica reported nothing, but that is not a failed
/// injection.
#[test]
fn a_signal_to_tmr_during_an_injection_run_exits_with_the_signals_code() {
    require_ptrace!();
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tmr_std();
        cmd.args(["--inject", "flip:replica=0,after=exit,region=heap", "--"])
            .arg(fixture("hang"))
            .arg("--ready-file")
            .arg(dir.path().join("ready"));
        let mut running = spawn(&mut cmd, Input::Null);
        wait_for_file_while(&dir.path().join("ready"), &mut running);
        send_signal(running.pid(), sig);
        let out = running.finish(LIMIT);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        assert!(!text(&out.stderr).contains("--inject failed"), "{}", text(&out.stderr));
    }
}

/// A TMR_INJECT in tmr's own environment (an export left over, or tmr run inside a replica) must not
/// reach the monitors: only `--inject` injects.
#[test]
fn an_inherited_tmr_inject_injects_nothing() {
    require_ptrace!();
    let heapstate = fixture("heapstate");
    let stray = [("TMR_INJECT", "flip:replica=0,after=exit,region=heap,seed=1"), ("TMR_PAD", "x")];
    let args = argv!["--mem", "--reruns", "0", "--", heapstate, "--mb", "2"];
    let ran = tmr_json_report(None, &stray, &args, "tmr-report");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.report["vote"]["unanimous"], true, "{}", ran.stderr);
    assert_eq!(ran.report["memory"]["divergent"], serde_json::json!([]), "{}", ran.stderr);
    assert!(ran.report["injection"].is_null(), "{}", ran.report["injection"]);
}

/// `tmr __tmr-monitor` is internal: run by hand it refuses, on one line, before running anything.
#[test]
fn the_monitor_refuses_to_run_outside_tmr() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch '{}'", marker.display());
    let out =
        tmr().timeout(LIMIT).args(["__tmr-monitor", "--", "/bin/sh", "sh", "-c", &touch]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    let err = assert_tmr_error(&out.stderr);
    assert!(err.contains("internal"), "{err}");
    assert!(!marker.exists(), "the command must not have run");
}
