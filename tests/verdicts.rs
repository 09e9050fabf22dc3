//! Integration tests of what a verdict costs and how tmr behaves around it (issue 8): the time budget
//! and parallel rounds of reruns, the bound a budget buys, relative timeouts in reruns, stdin that is
//! read only as replicas ask for it, and stop signals honoured whatever tmr is doing (waiting for stdin,
//! delivering output to a slow reader, rerunning), and replicas that die with tmr.
//!
//! No test asserts a wall time: each asserts what happened (counts, classes, exit codes, processes) and
//! bounds every wait, so a hang fails the test instead of stalling it.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn json(stderr: &[u8]) -> serde_json::Value {
    serde_json::from_slice(stderr).unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{}", text(stderr)))
}

/// A unanimous failure under the default budgets: reruns come in whole parallel rounds of 3, every run
/// (the voted round's too) counts as a sample, and the summary states the bound that bought.
#[test]
fn a_unanimous_failure_is_rerun_in_parallel_rounds_and_every_run_counts() {
    let out = run(tmr_std().args(["--format", "json", "--", "sh", "-c", "sleep 0.2; exit 3"]), Input::Null);
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out.stderr);
    let c = &v["classification"];
    assert_eq!(c["class"], "deterministic", "{c}");
    assert_eq!(c["rerun_mode"], "parallel");
    let reruns = c["reruns"].as_u64().unwrap();
    // 2x the voted round buys at least one round (it is predicted to fit) and the count budget is far.
    assert!(reruns >= 3 && reruns % 3 == 0, "whole rounds of 3: {c}");
    assert_eq!(c["observations"].as_u64(), Some(3 + reruns), "{c}");
    let bound = c["odd_rate_bound"].as_f64().unwrap();
    let expected = 1.0 - 0.05f64.powf(1.0 / (3 + reruns) as f64);
    assert!((bound - expected).abs() < 1e-9, "{bound} vs {expected}");
    assert!(c["time_budget_ms"].as_f64().unwrap() >= 250.0, "{c}");

    let human = run(tmr_std().args(["--", "sh", "-c", "exit 3"]), Input::Null);
    let s = text(&human.stderr);
    assert!(s.contains("failed the same way in all"), "{s}");
    assert!(s.contains("if it ever passes, it does so in under"), "{s}");
}

#[test]
fn a_zero_time_budget_means_no_reruns() {
    let out = run(tmr_std().args(["--rerun-budget", "0x", "--format", "json", "--", "false"]), Input::Null);
    assert_eq!(out.status.code(), Some(1));
    let c = json(&out.stderr)["classification"].clone();
    assert_eq!((c["reruns"].as_u64(), c["class"].as_str()), (Some(0), Some("deterministic")), "{c}");
    assert_eq!(c["observations"], 3, "the voted round is the only evidence: {c}");
}

/// `--timeout 3x` with a replica 0 that always hangs: reruns have no siblings of their own, so the
/// voted majority's median is the reference; before, every rerun of replica 0 hung forever.
#[test]
fn a_relative_timeout_also_bounds_reruns() {
    let hang = r#"[ "$TMR_REPLICA" = 0 ] && exec sleep 100; echo ok"#;
    for mode in ["sequential", "parallel"] {
        let out = run(
            tmr_std().args([
                "--timeout",
                "3x",
                "--rerun-mode",
                mode,
                "--format",
                "json",
                "--",
                "sh",
                "-c",
                hang,
            ]),
            Input::Null,
        );
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "ok\n");
        let v = json(&out.stderr);
        let c = &v["classification"];
        assert_eq!(c["class"], "nondeterministic", "{mode}: the hang came back: {c}");
        let hung = c["rerun_runs"].as_array().unwrap().iter().any(|r| r["outcome"]["kind"] == "timed-out");
        assert!(hung, "{mode}: a rerun timed out: {c}");
    }
}

/// `yes | tmr -- sh -c 'head -c 10 >/dev/null; exit 1'` used to spool stdin to EOF before the reruns,
/// which never comes: now stdin is read only as fast as a running replica asks for it.
#[test]
fn endless_stdin_nobody_reads_is_not_spooled() {
    let script = r#"yes | "$0" --reruns 3 -- sh -c 'head -c 10 >/dev/null; exit 1'"#;
    let out = run(Command::new("sh").args(["-c", script]).arg(tmr_path()), Input::Null);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = run(
        tmr_std()
            .args(["--reruns", "3", "--", "false"])
            .stdin(Stdio::from(std::fs::File::open("/dev/zero").unwrap())),
        Input::Null,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

/// stdin held open by a producer that is still running: replicas that never read it finish, and so does
/// tmr, reruns included (it used to wait for EOF before rerunning).
#[test]
fn reruns_do_not_wait_for_stdin_eof() {
    let out =
        spawn(tmr_std().args(["--reruns", "3", "--", "sh", "-c", "exit 1"]), Input::HeldOpen).finish(TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

/// A reader that stops reading tmr's output must not make tmr deaf to SIGTERM (`tmr -- cat big |
/// (sleep 5; wc -c)` used to exit 0 after the reader woke up).
#[test]
fn a_stop_signal_is_honoured_while_delivering_to_a_slow_reader() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 8 << 20]).unwrap();
    let mut child = tmr_std()
        .args(["--", "cat"])
        .arg(&big)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Readiness: the first byte of the delivery has arrived, so tmr is delivering (and then blocks on the
    // full pipe, because nothing else is read).
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    send_signal(child.id() as i32, libc::SIGTERM);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "tmr ignored SIGTERM while its reader slept");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(143));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
}

/// SIGINT while a rerun runs: the voted output was delivered before the reruns, and the summary says so
/// and counts only the replica that was running.
#[test]
fn sigint_during_reruns_says_the_output_was_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"if [ "$TMR_ROUND" = 0 ]; then echo voted; exit 3; fi; touch "$1/rerun"; exec sleep 100"#;
    let mut running = spawn(
        tmr_std().args(["--rerun-mode", "sequential", "--", "sh", "-c", script, "sh"]).arg(dir.path()),
        Input::Null,
    );
    wait_for_file_while(&dir.path().join("rerun"), &mut running);
    send_signal(running.pid(), libc::SIGINT);
    let out = running.finish(TIMEOUT);
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(text(&out.stdout), "voted\n");
    let err = text(&out.stderr);
    assert!(err.contains("stopped 1 running replica(s), the voted output had been delivered"), "{err}");
}

/// SIGKILL leaves tmr no chance to clean up: the replicas must die with it (PR_SET_PDEATHSIG).
#[test]
fn replicas_die_with_tmr_even_by_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"echo $$ > "$1/pid-$TMR_REPLICA.tmp"; mv "$1/pid-$TMR_REPLICA.tmp" "$1/pid-$TMR_REPLICA"; exec sleep 100"#;
    let mut running = spawn(tmr_std().args(["--", "sh", "-c", script, "sh"]).arg(dir.path()), Input::Null);
    let pids: Vec<i32> = (0..3)
        .map(|i| {
            let p = dir.path().join(format!("pid-{i}"));
            wait_for_file_while(&p, &mut running);
            read_pid(&p)
        })
        .collect();
    send_signal(running.pid(), libc::SIGKILL);
    let _ = running.finish(TIMEOUT);
    let deadline = Instant::now() + READY_TIMEOUT;
    while pids.iter().any(|&p| alive(p, "sleep")) {
        assert!(Instant::now() < deadline, "replicas outlived a SIGKILLed tmr: {pids:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
