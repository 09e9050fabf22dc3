//! Regression tests for the defects an outside trial found (issue 8): bounds on every count, a diff and
//! masks that stay bounded on huge lines, tmr's own output when stderr is full or closed, report files
//! that survive a failed run, and error messages that keep their substance on one line.
//!
//! As everywhere in tmr's suite: no sleeps to synchronise, every wait bounded (tests/common), no
//! assertion on elapsed time.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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

/// This test process's peak resident set (VmHWM), in KiB.
fn own_peak_rss_kib() -> i64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Run `cmd` to its end (bounded by [`TIMEOUT`]) and return its exit code and peak RSS in KiB, from
/// wait4's rusage: the maximum over tmr and the replicas it waited for, which are small here.
fn exit_and_peak_rss_kib(cmd: &mut std::process::Command) -> (Option<i32>, i64) {
    // Reaped by the wait4 below, which std's Child cannot do while reporting rusage.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("tmr starts");
    let pid = child.id() as libc::pid_t;
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: status and usage are live locals; WNOHANG keeps the wait bounded by the loop.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(rc >= 0, "wait4: {}", std::io::Error::last_os_error());
        if rc == pid {
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            return (code, usage.ru_maxrss);
        }
        if std::time::Instant::now() >= deadline {
            send_signal(pid, libc::SIGKILL);
            panic!("tmr did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// 64 MiB of identical bytes without a newline whose last byte differs: the first-difference diff of the
/// spooled outputs used to read the whole line several times over (6 GiB for a 1 GiB line). Now tmr stays
/// far below the line. Sequential replicas are compared from their spools, which is the path this tests;
/// streamed replicas carry bounded windows by construction (the test below), except a replica that lags
/// more than 1 MiB behind the others, which is compared by digest alone (no line to show).
#[test]
fn the_diff_of_a_huge_line_stays_small() {
    huge_line_diff(67108863, &["--sequential"]);
}

/// The same through the streamed compare, with a line the replicas cannot lag a whole MiB behind on.
#[test]
fn a_streamed_diff_of_a_long_line_is_a_bounded_window() {
    huge_line_diff(512 * 1024 - 1, &[]);
}

fn huge_line_diff(len: usize, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let script = format!(
        r#"head -c {len} /dev/zero | tr '\0' a; if [ "$TMR_REPLICA" = 2 ]; then printf y; else printf x; fi"#
    );
    let mut cmd = tmr_std();
    cmd.args(args)
        .args(["--reruns", "0", "--format", "json", "-o"])
        .arg(&report)
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // ru_maxrss keeps the high-water mark of the memory a process had before its exec, and std spawns
    // with a vfork-style clone that shares this test process's: tmr's figure is at least this process's
    // own peak (which a panicking test beside it, symbolising its backtrace, can raise to 70 MiB).
    let floor = own_peak_rss_kib();
    let (code, peak_kib) = exit_and_peak_rss_kib(&mut cmd);
    assert_eq!(code, Some(0), "the majority exits 0");
    assert!(
        peak_kib < 48 * 1024 || peak_kib <= floor,
        "tmr's peak RSS {peak_kib} KiB for a {len}-byte line (this test process's own: {floor} KiB)"
    );
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    let diff = &json["dissents"][0]["stdout_diff"];
    assert_eq!(diff["line"], 1, "{json}");
    let majority = diff["majority"].as_str().unwrap();
    assert!(majority.starts_with('…') && majority.ends_with("aax"), "{majority}");
    assert!(majority.chars().count() <= 202, "a bounded window: {majority}");
    assert!(diff["replica"].as_str().unwrap().ends_with("aay"), "{diff}");
}

/// Three replicas that print 1,048,573 `a`s and then `took <N>ms` used to disagree (exit 120) under a
/// mask for the duration: its match straddled the old 1 MiB piece boundary.
#[test]
fn a_mask_matches_across_the_old_piece_boundary() {
    let script = r#"head -c 1048573 /dev/zero | tr '\0' a; echo "took ${TMR_REPLICA}0${TMR_REPLICA}ms""#;
    let out = run(
        tmr_std()
            .args(["--reruns", "0", "--mask", "took.[0-9]+ms", "--", "sh", "-c", script])
            .stdout(Stdio::null()),
        Input::Null,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unanimous 3/3"), "{}", text(&out.stderr));
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

/// `-o` and `--junit` used to truncate both files before the command was even found; then they were left
/// alone, still holding the previous run's result for CI to upload. Now a run whose command cannot start
/// replaces them whole (never truncated half-way) with a report that says so, keeping each file's mode.
#[test]
fn a_run_that_never_starts_replaces_existing_reports_whole() {
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
        .args(["--format", "json", "--", "no-such-cmd-tmr-test"])
        .assert()
        .code(127);
    assert!(fs::read_to_string(&json).unwrap().contains("\"not-started\""));
    assert!(fs::read_to_string(&xml).unwrap().contains("not-started"));
    assert_eq!(fs::metadata(&json).unwrap().permissions().mode() & 0o777, 0o640);
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

/// `hunt --keep` on a full disk said "writing the voted output" and left a partial file behind. A kept
/// file that is a symlink to /dev/full fails the way a full disk does.
#[test]
fn hunt_keep_on_a_full_disk_says_what_failed_and_leaves_no_partial_run() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("kept");
    fs::create_dir(&keep).unwrap();
    std::os::unix::fs::symlink("/dev/full", keep.join("run-0.stdout")).unwrap();
    let out = tmr()
        .args(["hunt", "--runs", "1", "-j", "1", "--keep"])
        .arg(&keep)
        .args(["--", "sh", "-c", "echo out; echo err >&2; exit 1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    let msg = assert_tmr_error(&out.stderr);
    assert!(!msg.contains("voted output"), "{msg}");
    assert!(msg.contains("run-0.stdout") && msg.contains("No space left"), "{msg}");
    let left: Vec<String> =
        fs::read_dir(&keep).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, ["index.tsv"], "only whole runs are kept");
    assert_eq!(fs::read_to_string(keep.join("index.tsv")).unwrap().lines().count(), 1, "the header only");
}

/// Spool files (tmr's stdin, and the command's output when it is spooled) used to be created 0644. What
/// tmr really holds open is checked through /proc while the replicas wait.
#[test]
fn spool_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let script = format!(
        "cat >/dev/null; printf data; printf err >&2; touch {d}/ready-$TMR_REPLICA; i=0; \
         while [ ! -e {d}/go ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done"
    );
    let mut running =
        spawn(tmr_std().args(["--reruns", "0", "--", "sh", "-c", &script]), Input::Bytes(b"input".to_vec()));
    for r in 0..3 {
        wait_for_file_while(&dir.path().join(format!("ready-{r}")), &mut running);
    }
    let fds = format!("/proc/{}/fd", running.pid());
    let mut spools = Vec::new();
    for entry in fs::read_dir(&fds).unwrap() {
        let path = entry.unwrap().path();
        let Ok(target) = fs::read_link(&path) else { continue };
        if target.to_string_lossy().ends_with("(deleted)") {
            let mode = fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
            spools.push((target, format!("{:o}", mode.unwrap())));
        }
    }
    fs::write(dir.path().join("go"), "").unwrap();
    let out = running.finish(TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The stdin spool; stdout and stderr are streamed, not spooled (their spools, in --sequential mode,
    // are checked by capture's unit test).
    assert!(!spools.is_empty(), "{spools:?}");
    assert!(spools.iter().all(|(_, mode)| mode == "600"), "{spools:?}");
}

/// JUnit's `time` used to be the voted round's alone (38 s of a 90 s run). Checked without any
/// wall-clock threshold: it covers the voted round plus every sequential rerun, as the JSON report of the
/// same run records them.
#[test]
fn junit_time_covers_the_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let (json, xml) = (dir.path().join("r.json"), dir.path().join("r.xml"));
    tmr()
        .args(["--reruns", "3", "--rerun-mode", "sequential", "--format", "json", "-o"])
        .arg(&json)
        .arg("--junit")
        .arg(&xml)
        .args(["--", "sh", "-c", "exit 3"])
        .assert()
        .code(3);
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let walls = |runs: &serde_json::Value| -> Vec<f64> {
        runs.as_array().unwrap().iter().map(|r| r["wall_ms"].as_f64().unwrap()).collect()
    };
    let voted = walls(&report["runs"]).into_iter().fold(0.0, f64::max);
    let reruns = walls(&report["classification"]["rerun_runs"]);
    assert!(!reruns.is_empty(), "a unanimous failure is rerun: {report}");
    let spent = (voted + reruns.iter().sum::<f64>()) / 1e3;
    let junit = fs::read_to_string(&xml).unwrap();
    let time: f64 = junit
        .split("<testcase ")
        .nth(1)
        .and_then(|t| t.split("time=\"").nth(1))
        .and_then(|t| t.split('"').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no testcase time in {junit}"));
    assert!(time >= spent - 0.001, "JUnit time {time}s < voted round + reruns {spent}s:\n{junit}");
}

/// A newline in argv used to end the summary's heading and inject Markdown and HTML into the job page.
#[test]
fn argv_cannot_inject_into_the_github_summary() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    tmr()
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(["--github", "--", "sh", "-c", "true", "x\n\n<img src=x onerror=alert(1)>\n# pwned"])
        .assert()
        .code(0);
    let md = fs::read_to_string(&summary).unwrap();
    let first = md.lines().next().unwrap();
    assert!(first.starts_with("### ") && first.contains("<img src=x onerror=alert(1)>\\n# pwned`"), "{md}");
    assert!(md.lines().skip(1).all(|l| !l.contains("img") && !l.contains("pwned")), "{md}");
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

// ---------------------------------------------------------------------------------------------------------
// The second outside trial
// ---------------------------------------------------------------------------------------------------------

/// Replica 0 succeeds and says "ok"; the others fail with a message on stderr, which is not compared.
const ODD_ZERO: &str =
    r#"if [ "$TMR_REPLICA" = 0 ]; then echo ok; else echo "fatal: disk on fire" >&2; exit 2; fi"#;

#[test]
fn the_majoritys_uncompared_stderr_follows_when_the_shown_replica_is_outside_it() {
    let r = tmr_json_report(None, &[], &with(&["--reruns", "0"], sh(ODD_ZERO)), "tmr-report");
    assert_eq!(r.code, 2, "the majority's exit code");
    assert!(r.stderr.contains("fatal: disk on fire"), "the winners' error reaches the user:\n{}", r.stderr);
    assert!(r.stderr.contains("replica 1's stderr follows"), "and tmr says whose it is:\n{}", r.stderr);
    assert_eq!(r.report["output"]["stderr"]["shown_replica"], 0, "{}", r.report["output"]);
    assert_eq!(r.report["output"]["stderr"]["switched_to"], 1, "{}", r.report["output"]);
}

#[test]
fn an_uncompared_exit_status_comes_from_the_majoritys_common_one_not_replica_0() {
    // stdout (empty) agrees everywhere; replica 0 alone exits 1.
    let out = tmr()
        .args(["--compare", "stdout", "--reruns", "0", "--"])
        .args(sh("exit $((TMR_REPLICA==0))"))
        .output();
    assert_eq!(out.unwrap().status.code(), Some(0));
}

#[test]
fn buffered_output_that_no_majority_won_counts_as_not_delivered() {
    let cmd = sh("seq 1000; echo $TMR_REPLICA");
    let r = tmr_json_report(None, &[], &with(&["--buffered", "--reruns", "0"], cmd), "tmr-report");
    assert_eq!(r.code, 120);
    assert!(r.stdout.is_empty(), "nothing delivered");
    assert_eq!(r.report["output"]["stdout"]["bytes"], 0, "{}", r.report["output"]);
    assert!(!r.stderr.contains("were delivered"), "{}", r.stderr);
    // `streamed` is delivery while the replicas ran: --buffered output waits for the vote.
    assert_eq!(r.report["output"]["streamed"], false, "{}", r.report["output"]);
    assert_eq!(r.report["output"]["buffered"], true, "{}", r.report["output"]);
}

/// tmr in a session of its own whose controlling terminal is a fresh pty: a replica that opens /dev/tty
/// (a password prompt) must fail at once, not stop forever on SIGTTIN in a background group.
#[test]
fn a_replica_that_opens_the_terminal_fails_fast_instead_of_stopping() {
    use std::os::unix::process::CommandExt;
    let (_master, slave) = open_pty();
    let mut cmd = tmr_std();
    cmd.args(["-q", "--"])
        .args(sh("if (exec 3</dev/tty) 2>/dev/null; then echo has-tty; else echo no-tty; fi"));
    // SAFETY: setsid and ioctl are async-signal-safe; they make the pty (stdin) tmr's controlling terminal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(&mut cmd, Input::File(slave));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "no-tty\n");
}

/// Ctrl-Z (SIGTSTP to tmr) suspends the replicas with tmr, as a shell suspends a whole job, and a
/// continue (SIGCONT to tmr) resumes them.
#[test]
fn ctrl_z_suspends_the_replicas_and_continue_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let script =
        format!("echo $$ > {d}/pid.$TMR_REPLICA; while [ ! -e {d}/go ]; do sleep 0.01; done; echo done");
    let mut running = spawn(tmr_std().args(["-q", "--"]).args(sh(&script)), Input::Null);
    let pids: Vec<i32> = (0..3)
        .map(|r| {
            let f = dir.path().join(format!("pid.{r}"));
            wait_for_file_while(&f, &mut running);
            wait_for_file_content(&f);
            read_pid(&f)
        })
        .collect();
    send_signal(running.pid(), libc::SIGTSTP);
    let tmr_states = || states_of(|p, _| p == running.pid());
    wait_until(&format!("tmr ({}) stopped", running.pid()), || tmr_states() == ["T"], tmr_states);
    for &pid in &pids {
        // Every process of the replica's group stopped; a shell caught in vfork waits (D) for its stopped
        // child, so D counts when some member is stopped. So does a zombie: a `sleep` that exited just
        // before its shell was stopped stays unreaped (Z) until the shell runs again (under load, this
        // made the test fail one run in three).
        let group = || states_of(|_, pgid| pgid == pid);
        wait_until(
            &format!("replica group {pid} stopped"),
            || {
                let st = group();
                st.iter().any(|s| s == "T") && st.iter().all(|s| s == "T" || s == "D" || s == "Z")
            },
            group,
        );
    }
    fs::write(dir.path().join("go"), "").unwrap();
    send_signal(running.pid(), libc::SIGCONT);
    let out = running.finish(TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "done\n");
}

fn sh(script: &str) -> Vec<std::ffi::OsString> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn wait_for_file_content(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    while fs::read_to_string(path).map_or(true, |s| !s.ends_with('\n')) {
        assert!(std::time::Instant::now() < deadline, "{} stayed empty", path.display());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The states of the processes whose (pid, pgid) pass `pick`.
fn states_of(pick: impl Fn(i32, i32) -> bool) -> Vec<String> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // state, ppid, pgrp
        if f.len() > 2 && pick(pid, f[2].parse().unwrap_or(0)) {
            v.push(f[0].to_string());
        }
    }
    v
}

/// Wait (bounded) until `cond` holds; a failure shows the process `states` it saw last.
fn wait_until(what: &str, cond: impl Fn() -> bool, states: impl Fn() -> Vec<String>) {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {READY_TIMEOUT:?} (states {:?})",
            states()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Ctrl-C during a hunt ends the runs in flight: tmr's own signal is no evidence that they fail.
#[test]
fn a_hunt_stopped_by_ctrl_c_counts_no_run_it_killed_as_failing() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("hunt.json");
    let script = format!("touch {}/up.$TMR_ROUND; sleep 30", dir.path().display());
    let mut cmd = tmr_std();
    cmd.args(["hunt", "--runs", "1000", "--jobs", "2", "--format", "json", "-o"]).arg(&report).arg("--");
    let mut running = spawn(cmd.args(sh(&script)), Input::Null);
    wait_for_file_while(&dir.path().join("up.0"), &mut running);
    send_signal(running.pid(), libc::SIGINT);
    let out = running.finish(TIMEOUT);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["failures"], 0, "{r}");
    assert!(!r.to_string().contains("SIGINT\",\"failing\":true"), "{r}");
}

#[test]
fn a_second_hunt_into_the_same_keep_dir_is_refused_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("keep");
    let first =
        tmr().args(["hunt", "--runs", "1", "--keep"]).arg(&keep).args(["--", "false"]).output().unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let before = fs::read(keep.join("run-0.stdout")).ok();
    let marker = dir.path().join("ran");
    let script = format!("touch {}; false", marker.display());
    let second =
        tmr().args(["hunt", "--runs", "1", "--keep"]).arg(&keep).arg("--").args(sh(&script)).output();
    let second = second.unwrap();
    assert_eq!(second.status.code(), Some(125));
    assert!(assert_tmr_error(&second.stderr).contains("earlier hunt"), "{}", text(&second.stderr));
    assert!(!marker.exists(), "nothing ran");
    assert_eq!(fs::read(keep.join("run-0.stdout")).ok(), before, "the earlier run's files are untouched");
}

#[test]
fn a_relative_timeout_with_fewer_than_three_replicas_is_refused() {
    for n in ["1", "2"] {
        let out = tmr().args(["-n", n, "--timeout", "2x", "--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "-n {n}");
        assert!(assert_tmr_error(&out.stderr).contains("at least 3 replicas"), "{}", text(&out.stderr));
    }
}

#[test]
fn hunt_refuses_to_compare_memory_it_does_not_trace() {
    let out = tmr().args(["hunt", "--compare", "mem", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("--compare mem"), "{}", text(&out.stderr));
}

#[test]
fn an_unwritable_github_summary_is_a_warning_not_the_exit_code() {
    let out = tmr()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", "/nonexistent/dir/summary.md")
        .args(["-q", "--", "echo", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    assert!(text(&out.stderr).contains("warning: cannot open $GITHUB_STEP_SUMMARY"), "{}", text(&out.stderr));
}

#[test]
fn a_replica_that_only_wrote_more_at_the_end_is_shown_where_it_went_on() {
    let r = tmr_json_report(
        None,
        &[],
        &with(&["--reruns", "0"], sh("seq 3; [ $TMR_REPLICA = 1 ] && echo extra; true")),
        "tmr-report",
    );
    assert_eq!(r.stdout, "1\n2\n3\n");
    let diff = &r.report["dissents"][0]["stdout_diff"];
    assert_eq!(diff["line"], 4, "{}", r.report["dissents"]);
    assert_eq!(diff["majority"], serde_json::Value::Null, "the majority ended there: {diff}");
    assert_eq!(diff["replica"], "extra", "{diff}");
    let human = tmr()
        .args(["--reruns", "0", "--"])
        .args(sh("seq 3; [ $TMR_REPLICA = 1 ] && echo extra; true"))
        .output();
    let human = text(&human.unwrap().stderr);
    assert!(human.contains("line 4: majority <end of output>"), "{human}");
}

/// `cat >&-` fails with EBADF; tmr used to run with Rust's /dev/null in place of the closed fd and
/// lose the voted output with exit 0.
#[test]
fn a_closed_stdout_is_an_error_not_lost_output() {
    let script = format!("exec {} -- echo hi >&-", tmr_path().display());
    let out = run(std::process::Command::new("sh").args(["-c", &script]), Input::Null);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("stdout is closed"), "{}", text(&out.stderr));
}

/// A regular file on stdin is reopened for each replica; the caller's offset is left where the winner
/// stopped reading, as without tmr (`head` seeks back to just after the lines it printed).
#[test]
fn the_callers_stdin_offset_ends_where_the_winner_stopped_reading() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.txt");
    fs::write(&file, "line1\nline2\nline3\n").unwrap();
    let script = format!("{{ {} -q -- head -n1; cat; }} < {}", tmr_path().display(), file.display());
    let out = run(std::process::Command::new("sh").args(["-c", &script]), Input::Null);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "line1\nline2\nline3\n");
}

// ---------------------------------------------------------------------------------------------------------
// tmr's own stop signal is not the command's outcome
// ---------------------------------------------------------------------------------------------------------

/// Run `script` under tmr with every report (JSON, JUnit, GitHub), wait for `ready` (a file the script
/// touches), send SIGINT to tmr and return its exit code and the three reports.
fn interrupted_reports(script: &str, ready: &str) -> (Option<i32>, serde_json::Value, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (json, junit, md) = (dir.path().join("r.json"), dir.path().join("j.xml"), dir.path().join("s.md"));
    let mut cmd = tmr_std();
    cmd.env("D", dir.path()).env("GITHUB_STEP_SUMMARY", &md).arg("--github").arg("--junit").arg(&junit);
    cmd.args(["--format", "json", "-o"]).arg(&json).args(["--", "sh", "-c", script]);
    let mut running = spawn(&mut cmd, Input::Null);
    wait_for_file_while(&dir.path().join(ready), &mut running);
    send_signal(running.pid(), libc::SIGINT);
    let out = running.finish(TIMEOUT);
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    (out.status.code(), v, fs::read_to_string(&junit).unwrap(), fs::read_to_string(&md).unwrap())
}

/// Ctrl-C during the reruns of a unanimous failure used to make SIGINT an outcome of the reruns and the
/// run `nondeterministic`; Ctrl-C during the voted round made it `deterministic` or `transient`. Each is
/// now `interrupted`, with no SIGINT outcome and no flaky or deterministic claim in any report.
#[test]
fn a_run_ended_by_ctrl_c_is_interrupted_in_every_report() {
    for (script, ready) in [
        // The voted round fails unanimously; the reruns wait to be interrupted.
        (r#"if [ "$TMR_ROUND" != 0 ]; then touch "$D/up.$TMR_REPLICA"; exec sleep 30; fi; exit 3"#, "up.0"),
        // Every replica of the voted round is interrupted.
        (r#"touch "$D/up.$TMR_REPLICA"; exec sleep 30"#, "up.2"),
        // Replica 0 passes; the two others are interrupted (they used to win the vote).
        (r#"[ "$TMR_REPLICA" = 0 ] && exit 0; touch "$D/up.$TMR_REPLICA"; exec sleep 30"#, "up.2"),
    ] {
        let (code, v, junit, md) = interrupted_reports(script, ready);
        assert_eq!(code, Some(130), "{script}: {v}");
        assert_eq!(v["classification"]["class"], "interrupted", "{script}: {v}");
        let outcomes = v["classification"]["outcomes"].to_string();
        assert!(!outcomes.contains("SIGINT"), "{script}: SIGINT voted or classified: {outcomes}");
        assert!(v["classification"]["rerun_runs"].to_string().find("SIGINT").is_none(), "{script}: {v}");
        assert_ne!(v["vote"]["result"], "majority", "{script}: {v}");
        for word in ["deterministic", "transient", "flaky"] {
            assert!(!junit.contains(&format!("type=\"{word}")), "{script}: {junit}");
            assert!(!md.contains(word), "{script}: {md}");
        }
        assert!(junit.contains("interrupted"), "{script}: {junit}");
        assert!(md.contains("interrupted"), "{script}: {md}");
    }
}

/// A command that cannot start (127, 126) used to leave the previous run's report files in place, still
/// saying the run passed: CI uploaded a stale result. They are replaced by a report that says so.
#[test]
fn a_command_that_cannot_start_replaces_the_report_files() {
    let dir = tempfile::tempdir().unwrap();
    let (json, junit) = (dir.path().join("s.json"), dir.path().join("s.xml"));
    let report_args = |cmd: &mut assert_cmd::Command| {
        cmd.arg("--junit").arg(&junit).args(["--format", "json", "-o"]).arg(&json);
    };
    let mut first = tmr();
    report_args(&mut first);
    first.args(["-q", "--", "true"]).assert().code(0);
    for (program, code) in [("tmr-no-such-command", 127), ("/", 126)] {
        let mut second = tmr();
        report_args(&mut second);
        let out = second.args(["--", program]).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        assert_tmr_error(&out.stderr);
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
        assert_eq!(v["exit_code"], code, "{v}");
        assert_eq!(v["vote"]["result"], "not-started", "{v}");
        assert_eq!(v["classification"]["exec_failed"], true, "{v}");
        let xml = fs::read_to_string(&junit).unwrap();
        assert!(xml.contains("errors=\"1\"") && xml.contains("not-started"), "{xml}");
    }
}

/// `-o X --junit X` (or either the GitHub summary's file) used to lose one report silently, and `-o -`
/// created a file named `-`. Both are usage errors now, before anything runs.
#[test]
fn two_reports_into_one_file_or_into_dash_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("r.out");
    let marker = dir.path().join("ran");
    let script = format!("touch {}", marker.display());
    let same_s = same.to_str().unwrap();
    for args in [
        &["-o", same_s, "--junit", same_s][..],
        &["--github", "--junit", same_s],
        &["-o", "-"],
        &["--junit", "-"],
    ] {
        let out = tmr()
            .current_dir(dir.path())
            .env("GITHUB_STEP_SUMMARY", &same)
            .args(args)
            .args(["--", "sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out.stderr));
        assert_tmr_error(&out.stderr);
        assert!(!marker.exists(), "{args:?}: the command ran");
        assert!(!dir.path().join("-").exists(), "{args:?}: a file named - was made");
    }
}

/// A child the shell had before it exec'd tmr (`sleep 60 & exec tmr …`) is not a leftover of a replica:
/// tmr's sweep used to kill it (and, in a nested `tmr --mem`, the outer tracer). It is still running
/// when tmr has exited; the test ends it.
#[test]
fn a_child_tmr_inherited_from_the_shell_is_left_alone() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pidfile = dir.path().join("pid");
    let out = run(
        std::process::Command::new("sh")
            .args(["-c", r#"sleep 60 </dev/null >/dev/null 2>&1 & echo $! > "$1"; exec "$0" -q -- true"#])
            .arg(tmr_path())
            .arg(&pidfile),
        Input::Null,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pid: i32 = fs::read_to_string(&pidfile).expect("the pid file").trim().parse().expect("a pid");
    let pid = nix::unistd::Pid::from_raw(pid);
    // Still there (a zombie would be reaped by init, not by tmr, which has exited).
    let alive = nix::sys::signal::kill(pid, None).is_ok();
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    assert!(alive, "tmr killed a child it did not start");
}

/// A tmr killed with SIGKILL left its scratch directories behind for good: the answer log's in /dev/shm
/// (memory) and the checkpoint peers' in $TMPDIR. The next run that makes one sweeps those whose tmr is
/// gone (their lock is free), and leaves a running tmr's alone.
#[test]
fn scratch_directories_of_a_killed_tmr_are_swept_by_the_next_run() {
    require_ptrace!();
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    let tmp = tempfile::tempdir().unwrap();
    let scratch = |prefix: &str| -> BTreeSet<PathBuf> {
        [Path::new("/dev/shm"), tmp.path()]
            .iter()
            .filter_map(|d| fs::read_dir(d).ok())
            .flat_map(|d| d.flatten().map(|e| e.path()))
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect()
    };
    let mine = |prefix: &str, before: &BTreeSet<PathBuf>| -> Vec<PathBuf> {
        scratch(prefix).difference(before).cloned().collect()
    };
    let started = |ready: &Path| {
        let mut r = spawn(
            tmr_std()
                .env("TMPDIR", tmp.path())
                .args(["--checkpoint", "1s", "--", "sh", "-c", r#"touch "$1"; sleep 3"#, "sh"])
                .arg(ready),
            Input::Null,
        );
        wait_for_file_while(ready, &mut r);
        r
    };
    let before = scratch("tmr-replog-");
    let killed = started(&tmp.path().join("ready"));
    // Made before the replicas started. Another test's run may have made one meanwhile: it is alive,
    // and must survive the sweep as a running tmr's would.
    let (replogs, checkpoints) = (mine("tmr-replog-", &before), mine("tmr-checkpoint-", &BTreeSet::new()));
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    assert!(!replogs.is_empty());
    send_signal(killed.pid(), libc::SIGKILL);
    killed.finish(std::time::Duration::from_secs(30));
    let orphaned: Vec<&PathBuf> = replogs.iter().filter(|p| lock_is_free(p)).collect();
    assert_eq!(orphaned.len(), 1, "the killed run's answer log is left, unlocked: {replogs:?}");
    assert!(checkpoints[0].is_dir() && lock_is_free(&checkpoints[0]), "SIGKILL cleans nothing up");
    let before_live = scratch("tmr-replog-");
    let live = started(&tmp.path().join("ready2"));
    let live_dirs = mine("tmr-replog-", &before_live);
    let out =
        run(tmr_std().env("TMPDIR", tmp.path()).args(["--checkpoint", "1s", "--", "true"]), Input::Null);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!orphaned[0].exists(), "the killed run's answer log is swept");
    assert!(!checkpoints[0].exists(), "the killed run's checkpoint directory is swept");
    assert!(live_dirs.iter().all(|d| d.is_dir()), "a running tmr's answer log is left alone");
    assert_eq!(
        mine("tmr-checkpoint-", &BTreeSet::new()).len(),
        1,
        "the running tmr's checkpoint directory is left"
    );
    assert!(live.finish(std::time::Duration::from_secs(60)).status.success());
}

/// Whether the scratch directory's `.lock` could be taken (its tmr is gone).
fn lock_is_free(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = fs::File::open(dir.join(".lock")) else { return false };
    // SAFETY: flock on an fd `f` owns; released when `f` is dropped.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// A rerun that hangs kept tmr running for good after the voted output was delivered: reruns are
/// tmr's own extra work, bounded even without `--timeout` (10x the voted majority's median, at least
/// 10 s). The hang is an outcome of its own, and the run still ends with the voted exit code.
#[test]
fn a_rerun_that_hangs_does_not_keep_tmr_running() {
    let script = r#"if [ "$TMR_ROUND" = 0 ] && [ "$TMR_REPLICA" = 2 ]; then echo bad; exit 1; fi
                    if [ "$TMR_ROUND" = 1 ]; then exec sleep 1000; fi
                    echo ok"#;
    let out = run(tmr_std().args(["--reruns", "3", "--"]).args(sh(script)), Input::Null);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "ok\n"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("timeout"), "the hung reruns show as timeouts: {}", text(&out.stderr));
}
