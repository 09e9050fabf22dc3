//! End-to-end tests of tmr on real commands and on the fixture programs (fixtures/src/bin): the voted
//! output and exit code, stdin broadcast, faults (crashes, hangs, floods, leaked processes), signals sent
//! to tmr, bad input, the JSON report and the help text.
//!
//! No test sleeps to synchronise or asserts on elapsed time: readiness is a file a replica creates, and
//! every wait is bounded (see tests/common).

mod common;

use std::fs;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use assert_cmd::assert::OutputAssertExt;
use predicates::prelude::*;
use predicates::str::contains;

use common::*;

// ---------------------------------------------------------------------------------------------------------
// Basics on real commands
// ---------------------------------------------------------------------------------------------------------

#[test]
fn unanimous_run_delivers_stdout_and_exit_code() {
    tmr()
        .args(["sh", "-c", "echo hello"])
        .assert()
        .code(0)
        .stdout("hello\n")
        .stderr(contains("tmr: unanimous 3/3 agree · exit 0"));
}

#[test]
fn quiet_prints_nothing_when_unanimous() {
    tmr().args(["-q", "true"]).assert().code(0).stdout("").stderr("");
}

#[test]
fn quiet_still_reports_a_disagreement() {
    tmr()
        .args(["-q", "--", "sh", "-c", r#"[ "$TMR_REPLICA" = 1 ] && exit 4; exit 0"#])
        .assert()
        .code(0)
        .stderr(contains("majority 2/3").and(contains("replica 1")));
}

#[test]
fn replica_count_and_exit_code_pass_through() {
    tmr()
        .args(["-n", "5", "--", "sh", "-c", "exit 3"])
        .assert()
        .code(3)
        .stdout("")
        .stderr(contains("unanimous 5/5 agree · exit 3"));
}

#[test]
fn command_flags_are_passed_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("some-file");
    fs::write(&file, "12345").unwrap();
    // What `ls -l` prints directly; `-l` must reach ls, not be taken by tmr.
    let direct = run(std::process::Command::new("ls").arg("-l").arg(&file).env("LC_ALL", "C"), Input::Null);
    assert!(direct.status.success());
    assert!(text(&direct.stdout).starts_with("-rw"), "{}", text(&direct.stdout));
    tmr().arg("ls").arg("-l").arg(&file).env("LC_ALL", "C").assert().code(0).stdout(direct.stdout);
}

#[test]
fn replicas_see_their_number_and_count_and_the_first_is_delivered() {
    tmr()
        .args(["--compare", "exit", "--", "sh", "-c", "echo $TMR_REPLICA $TMR_REPLICAS"])
        .assert()
        .code(0)
        .stdout("0 3\n")
        .stderr(contains("3/3 agree"));
}

#[test]
fn every_replica_gets_its_own_environment_even_if_tmr_inherited_one() {
    let dir = tempfile::tempdir().unwrap();
    tmr()
        .args(["--", "sh", "-c", r#"echo "$TMR_REPLICA $TMR_REPLICAS $TMR_ROUND" > "$D/env.$TMR_REPLICA""#])
        .env("D", dir.path())
        // A tmr started from inside a replica must not pass its own numbers on.
        .env("TMR_REPLICA", "7")
        .env("TMR_REPLICAS", "9")
        .env("TMR_ROUND", "5")
        .assert()
        .code(0);
    for i in 0..3 {
        let got = fs::read_to_string(dir.path().join(format!("env.{i}"))).unwrap();
        assert_eq!(got, format!("{i} 3 0\n"));
    }
    let extra: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(extra.len(), 3, "exactly replicas 0, 1 and 2 ran");
}

const ONE_BAD: &str = r#"if [ "$TMR_REPLICA" = 1 ]; then echo bad; exit 3; fi; echo good"#;

#[test]
fn majority_wins_and_the_dissent_is_explained() {
    tmr().args(["--", "sh", "-c", ONE_BAD]).assert().code(0).stdout("good\n").stderr(
        contains("majority 2/3 agree · exit 0")
            .and(contains("replica 1"))
            .and(contains("exit 3"))
            .and(contains("\"bad\"")),
    );
}

#[test]
fn strict_turns_any_disagreement_into_121() {
    tmr()
        .args(["--strict", "--", "sh", "-c", ONE_BAD])
        .assert()
        .code(121)
        .stderr(contains("replica 1").and(contains("--strict")));
}

#[test]
fn strict_passes_a_unanimous_run_through() {
    tmr().args(["--strict", "--", "sh", "-c", "echo same"]).assert().code(0).stdout("same\n");
}

/// Streamed: the bytes all replicas agree on ("out-") were delivered as they came; nothing past the split.
#[test]
fn no_majority_exits_120_and_delivers_only_the_agreed_prefix() {
    tmr()
        .args(["--", "sh", "-c", "echo out-$TMR_REPLICA; exit $TMR_REPLICA"])
        .assert()
        .code(120)
        .stdout("out-")
        .stderr(contains("no majority").and(contains("4 byte(s) of stdout that a majority agreed on")));
}

/// `--buffered` keeps the all-or-nothing delivery: nothing without a majority.
#[test]
fn buffered_delivers_nothing_without_a_majority_and_everything_with_one() {
    tmr()
        .args(["--buffered", "--", "sh", "-c", "echo out-$TMR_REPLICA; exit $TMR_REPLICA"])
        .assert()
        .code(120)
        .stdout("");
    tmr()
        .args(["--buffered", "--", "sh", "-c", "echo out; [ $TMR_REPLICA = 1 ] && echo odd; exit 0"])
        .assert()
        .code(0)
        .stdout("out\n");
}

#[test]
fn compare_exit_ignores_differing_stdout() {
    tmr()
        .args(["--compare", "exit", "--", "sh", "-c", "echo $TMR_REPLICA"])
        .assert()
        .code(0)
        .stdout("0\n")
        .stderr(contains("unanimous 3/3"));
}

#[test]
fn differing_stdout_alone_is_no_majority_by_default_and_hints_at_mask() {
    tmr()
        .args(["--buffered", "--"])
        .arg(fixture("timestamps"))
        .assert()
        .code(120)
        .stdout("")
        .stderr(contains("no majority").and(contains("--mask")));
}

#[test]
fn masks_make_timestamps_agree_and_output_stays_raw() {
    let out = tmr()
        .args(["--mask", "run at [0-9]+", "--mask", "pid [0-9]+", "--"])
        .arg(fixture("timestamps"))
        .output()
        .unwrap();
    out.clone().assert().code(0).stderr(contains("unanimous 3/3"));
    let stdout = text(&out.stdout);
    let raw = regex::Regex::new(r"\Arun at [0-9]+\npid [0-9]+\nresult 42\n\z").unwrap();
    assert!(raw.is_match(&stdout), "delivered output is not raw: {stdout:?}");
}

// ---------------------------------------------------------------------------------------------------------
// stdin
// ---------------------------------------------------------------------------------------------------------

#[test]
fn stdin_is_broadcast_to_every_replica() {
    let out = run(tmr_std().arg("cat"), Input::Bytes(b"a\nb\n".to_vec()));
    out.clone().assert().code(0).stdout("a\nb\n").stderr(contains("unanimous 3/3"));
}

#[test]
fn large_stdin_reaches_every_replica_intact() {
    let data = noise(5 << 20);
    let echo = fixture("echo-stdin");
    let direct = run(std::process::Command::new(&echo).arg("--count"), Input::Bytes(data.clone()));
    assert!(direct.status.success());
    assert!(text(&direct.stdout).starts_with("bytes 5242880 fnv "));
    // Unanimity (the default compares stdout) means all three counted the same bytes and hash.
    let out = run(tmr_std().arg("--").arg(&echo).arg("--count"), Input::Bytes(data));
    out.clone().assert().code(0).stdout(direct.stdout).stderr(contains("unanimous 3/3"));
}

#[test]
fn a_replica_that_stops_reading_stdin_does_not_stall_the_others() {
    let data = noise(5 << 20);
    let echo = fixture("echo-stdin");
    let direct = run(std::process::Command::new(&echo).arg("--count"), Input::Bytes(data.clone()));
    assert!(direct.status.success());
    // Replica 0 reads 10 bytes and exits; replicas 1 and 2 must still get all 5 MiB and win the vote.
    let out = run(
        tmr_std()
            .args([
                "--",
                "sh",
                "-c",
                r#"if [ "$TMR_REPLICA" = 0 ]; then exec "$ECHO" --head 10; else exec "$ECHO" --count; fi"#,
            ])
            .env("ECHO", &echo),
        Input::Bytes(data),
    );
    out.clone()
        .assert()
        .code(0)
        .stdout(direct.stdout)
        .stderr(contains("majority 2/3").and(contains("replica 0")));
}

#[test]
fn a_replica_that_stops_reading_stdin_early_with_compare_exit() {
    let echo = fixture("echo-stdin");
    let out = run(
        tmr_std()
            .args([
                "--compare",
                "exit",
                "--",
                "sh",
                "-c",
                r#"if [ "$TMR_REPLICA" = 0 ]; then exec "$ECHO" --head 10; else exec "$ECHO" --count; fi"#,
            ])
            .env("ECHO", &echo),
        Input::Bytes(noise(5 << 20)),
    );
    // Replica 0 is delivered: exactly the first 10 bytes of stdin.
    out.clone().assert().code(0).stdout(noise(10)).stderr(contains("unanimous 3/3"));
}

#[test]
fn stdin_from_a_regular_file_reaches_every_replica() {
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, b"line one\nline two\n").unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let out = run(tmr_std().arg("cat"), Input::File(file));
    out.clone().assert().code(0).stdout("line one\nline two\n").stderr(contains("unanimous 3/3"));
}

#[test]
fn stdin_from_a_regular_file_starts_at_its_current_offset() {
    // Like `{ read first; tmr cat; } < file`: the replicas see the rest, not the part already read.
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, b"skip\nrest 1\nrest 2\n").unwrap();
    file.seek(SeekFrom::Start(5)).unwrap();
    let out = run(tmr_std().arg("cat"), Input::File(file));
    out.clone().assert().code(0).stdout("rest 1\nrest 2\n").stderr(contains("unanimous 3/3"));
}

// ---------------------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------------------

#[test]
fn segfault_in_every_replica_exits_139_with_output_delivered() {
    tmr()
        .arg("--")
        .arg(fixture("segv"))
        .assert()
        .code(139)
        .stdout("about to crash\n")
        .stderr(contains("unanimous 3/3").and(contains("SIGSEGV")));
}

#[test]
fn abort_in_every_replica_exits_134() {
    tmr()
        .arg("--")
        .arg(fixture("segv"))
        .arg("--abort")
        .assert()
        .code(134)
        .stdout("about to crash\n")
        .stderr(contains("SIGABRT"));
}

#[test]
fn one_sigkilled_replica_is_outvoted() {
    tmr()
        .args(["--", "sh", "-c", r#"if [ "$TMR_REPLICA" = 2 ]; then kill -9 $$; fi; echo ok"#])
        .assert()
        .code(0)
        .stdout("ok\n")
        .stderr(contains("majority 2/3").and(contains("replica 2")).and(contains("SIGKILL")));
}

/// `sh -c` script that records its pid in $D/pid.<replica> and then becomes the hang fixture.
const HANG_WITH_PIDFILE: &str = r#"echo $$ > "$D/pid.$TMR_REPLICA"; exec "$HANG" "$@""#;

fn assert_all_gone(dir: &Path, prefix: &str, replicas: usize, name: &str) {
    for i in 0..replicas {
        let pid = read_pid(&dir.join(format!("{prefix}.{i}")));
        assert!(!alive(pid, name), "{name} (pid {pid}, replica {i}) outlived tmr");
    }
}

#[test]
fn timeout_kills_hung_replicas_and_exits_124() {
    let dir = tempfile::tempdir().unwrap();
    // --reruns 0: a unanimous timeout is otherwise rerun (29 times by default, each waiting for the
    // timeout again) to classify it; that is not what this test is about.
    tmr()
        .args(["--reruns", "0", "--timeout", "1s", "--", "sh", "-c", HANG_WITH_PIDFILE, "sh"])
        .env("D", dir.path())
        .env("HANG", fixture("hang"))
        .assert()
        .code(124)
        .stderr(contains("timeout"));
    assert_all_gone(dir.path(), "pid", 3, "hang");
}

#[test]
fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    // --reruns 0: see timeout_kills_hung_replicas_and_exits_124; here each rerun would also wait out
    // the 2 s grace before SIGKILL, far beyond the test's deadline.
    tmr()
        .args([
            "--reruns",
            "0",
            "--timeout",
            "1s",
            "--",
            "sh",
            "-c",
            HANG_WITH_PIDFILE,
            "sh",
            "--ignore-term",
        ])
        .env("D", dir.path())
        .env("HANG", fixture("hang"))
        .assert()
        .code(124)
        .stderr(contains("timeout"));
    assert_all_gone(dir.path(), "pid", 3, "hang");
}

#[test]
fn relative_timeout_kills_only_the_straggler() {
    let dir = tempfile::tempdir().unwrap();
    tmr()
        .args([
            "--timeout",
            "2x",
            "--",
            "sh",
            "-c",
            r#"if [ "$TMR_REPLICA" = 2 ]; then echo $$ > "$D/pid"; exec "$HANG"; fi; echo ok"#,
        ])
        .env("D", dir.path())
        .env("HANG", fixture("hang"))
        .assert()
        .code(0)
        .stdout("ok\n")
        .stderr(contains("majority 2/3").and(contains("replica 2")).and(contains("timeout")));
    let pid = read_pid(&dir.path().join("pid"));
    assert!(!alive(pid, "hang"), "the timed-out replica outlived tmr");
}

#[test]
fn flood_of_one_gib_is_delivered_completely() {
    // The output is counted by `wc -c` so the test never holds 1 GiB in memory.
    let dir = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::new("sh")
        .args(["-c", r#"{ "$TMR" -- "$FLOOD" 1G 2>"$D/err"; echo $? > "$D/rc"; } | wc -c"#])
        .env("TMR", tmr_path())
        .env("FLOOD", fixture("flood"))
        .env("D", dir.path())
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let err = fs::read_to_string(dir.path().join("err")).unwrap();
    assert_eq!(text(&out.stdout).trim(), "1073741824", "tmr stderr:\n{err}");
    assert_eq!(fs::read_to_string(dir.path().join("rc")).unwrap().trim(), "0", "{err}");
    assert!(err.contains("unanimous 3/3"), "{err}");
}

/// Followers are paced behind the first replica's output only while it is producing: here it prints one
/// byte and then waits until the other two have written 4 MiB each (four pipe-fulls) and exited. Holding
/// them back would deadlock; the --timeout only bounds a regression.
#[test]
fn a_follower_is_never_held_back_by_an_idle_first_replica() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"printf x
if [ "$TMR_REPLICA" = 0 ]; then
  while [ ! -e "$D/1" ] || [ ! -e "$D/2" ]; do sleep 0.01; done
  head -c 4194304 /dev/zero
else
  head -c 4194304 /dev/zero; touch "$D/$TMR_REPLICA"
fi"#;
    let out =
        run(tmr_std().args(["--timeout", "60s", "--", "sh", "-c", script]).env("D", dir.path()), Input::Null);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 1 + (4 << 20));
    assert!(text(&out.stderr).contains("unanimous 3/3"), "{}", text(&out.stderr));
}

#[test]
fn flood_output_is_replayed_byte_exact() {
    let flood = fixture("flood");
    let direct = run(std::process::Command::new(&flood).arg("16M"), Input::Null);
    assert_eq!(direct.stdout.len(), 16 << 20);
    let out = run(tmr_std().arg("--").arg(&flood).arg("16M"), Input::Null);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout == direct.stdout, "delivered bytes differ from the command's own output");
    let flood_err = run(tmr_std().arg("--").arg(&flood).arg("4M").arg("--stderr"), Input::Null);
    assert_eq!(flood_err.status.code(), Some(0));
    // The command's stderr is replayed before tmr's own summary line(s).
    assert!(flood_err.stderr.starts_with(&direct.stdout[..4 << 20]));
    assert!(text(&flood_err.stderr[4 << 20..]).starts_with("tmr: unanimous 3/3"));
}

#[test]
fn a_replica_closing_stdout_early_still_counts() {
    tmr()
        .arg("--")
        .arg(fixture("close-stdout"))
        .assert()
        .code(0)
        .stdout("partial\n")
        .stderr(contains("still running").and(contains("unanimous 3/3")));
}

/// The grandchild fixture leaves a process behind in every replica; tmr must finish anyway, kill it, and
/// say so in the summary (each of `summary`: the parts of it that are deterministic).
fn leaked_grandchild(extra: &[&str], summary: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = tmr()
        .args([
            "--compare",
            "exit",
            "--",
            "sh",
            "-c",
            r#"exec "$GC" --pidfile "$D/gc.$TMR_REPLICA" "$@""#,
            "sh",
        ])
        .args(extra)
        .env("D", dir.path())
        .env("GC", fixture("grandchild"))
        .output()
        .unwrap();
    let gc0 = read_pid(&dir.path().join("gc.0"));
    out.clone()
        .assert()
        .code(0)
        .stdout(format!("parent done, grandchild {gc0}\n"))
        .stderr(contains("unanimous 3/3"));
    for part in summary {
        out.clone().assert().stderr(contains(*part));
    }
    assert_all_gone(dir.path(), "gc", 3, "grandchild");
}

const HELD_OPEN: &str =
    "replicas 0, 1, 2 exited but left processes holding their output open; they were killed";

#[test]
fn grandchild_holding_stdout_is_killed() {
    leaked_grandchild(&[], &[HELD_OPEN]);
}

#[test]
fn grandchild_in_its_own_session_holding_stdout_is_killed() {
    leaked_grandchild(&["--setsid"], &[HELD_OPEN, "killed 3 leftover process(es)"]);
}

#[test]
fn grandchild_with_closed_stdio_is_killed() {
    // Whether the summary mentions it is racy today: see report_counts_leftovers_in_the_replica_group.
    leaked_grandchild(&["--close-stdio"], &[]);
}

#[test]
fn grandchild_in_its_own_session_with_closed_stdio_is_killed() {
    leaked_grandchild(&["--setsid", "--close-stdio"], &["killed 3 leftover process(es)"]);
}

/// `leaked_processes` from the JSON report of a run whose every replica leaves a grandchild behind.
fn leftovers_reported(extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    tmr()
        .args(["--compare", "exit", "--format", "json", "-o"])
        .arg(&report)
        .args(["--", "sh", "-c", r#"exec "$GC" --pidfile "$D/gc.$TMR_REPLICA" "$@""#, "sh"])
        .args(extra)
        .env("D", dir.path())
        .env("GC", fixture("grandchild"))
        .assert()
        .code(0);
    assert_all_gone(dir.path(), "gc", 3, "grandchild");
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    v["leaked_processes"].clone()
}

#[test]
fn report_counts_leftovers_in_the_replica_group() {
    // Every replica leaves one process in its own process group (stdio closed, so no pipe is held);
    // tmr kills all three, and the report must account for all three, every time.
    for _ in 0..5 {
        assert_eq!(leftovers_reported(&["--close-stdio"]), 3);
    }
}

#[test]
fn report_of_leftovers_is_deterministic() {
    let first = leftovers_reported(&[]);
    for _ in 0..5 {
        assert_eq!(leftovers_reported(&[]), first);
    }
}

#[test]
fn reader_going_away_ends_tmr_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::new("sh")
        .args(["-c", r#"{ "$TMR" -- seq 1 100000 2>"$D/err"; echo $? > "$D/rc"; } | head -n 1"#])
        .env("TMR", tmr_path())
        .env("D", dir.path())
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "1\n");
    let err = fs::read_to_string(dir.path().join("err")).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.to_lowercase().contains("broken pipe"), "{err}");
    assert!(!err.contains("tmr: error"), "{err}");
    // As a pipeline would: the replicas end with SIGPIPE and tmr exits 128 + SIGPIPE.
    assert_eq!(fs::read_to_string(dir.path().join("rc")).unwrap().trim(), "141", "{err}");
    assert!(err.contains("closed by its reader"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// Signals sent to tmr
// ---------------------------------------------------------------------------------------------------------

fn interrupt(sig: libc::c_int, ignore_term: bool, code: i32, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tmr_std();
    cmd.args([
        "--",
        "sh",
        "-c",
        r#"echo $$ > "$D/pid.$TMR_REPLICA"; exec "$HANG" --ready-file "$D/ready.$TMR_REPLICA" "$@""#,
        "sh",
    ]);
    if ignore_term {
        cmd.arg("--ignore-term");
    }
    cmd.env("D", dir.path()).env("HANG", fixture("hang"));
    let mut running = spawn(&mut cmd, Input::Null);
    for i in 0..3 {
        wait_for_file_while(&dir.path().join(format!("ready.{i}")), &mut running);
    }
    let pids: Vec<i32> = (0..3).map(|i| read_pid(&dir.path().join(format!("pid.{i}")))).collect();
    for &pid in &pids {
        assert!(alive(pid, "hang"), "replica pid {pid} should be running");
    }
    send_signal(running.pid(), sig);
    let out = running.finish(TIMEOUT);
    // The replicas' agreed "ready" line was delivered as it came (streamed), before the signal.
    out.clone().assert().code(code).stdout("ready\n").stderr(contains(format!("interrupted by {name}")));
    for pid in pids {
        assert!(!alive(pid, "hang"), "replica pid {pid} outlived tmr");
    }
}

#[test]
fn sigint_to_tmr_stops_every_replica_and_exits_130() {
    interrupt(libc::SIGINT, false, 130, "SIGINT");
}

#[test]
fn sigterm_to_tmr_stops_every_replica_and_exits_143() {
    interrupt(libc::SIGTERM, false, 143, "SIGTERM");
}

#[test]
fn sighup_to_tmr_stops_every_replica_and_exits_129() {
    interrupt(libc::SIGHUP, false, 129, "SIGHUP");
}

#[test]
fn sigterm_to_tmr_escalates_to_sigkill_for_replicas_that_ignore_it() {
    interrupt(libc::SIGTERM, true, 143, "SIGTERM");
}

// ---------------------------------------------------------------------------------------------------------
// Bad input: a short error, the right code, and nothing run
// ---------------------------------------------------------------------------------------------------------

/// Run tmr with `args` followed by a command that would create a marker file, and check that it fails
/// with `code`, a `tmr: ` error and without running the command.
fn refused(args: &[&str], code: i32) -> String {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let out = tmr().args(args).args(["--", "sh", "-c", r#"touch "$M""#]).env("M", &marker).output().unwrap();
    out.clone().assert().code(code).stdout("");
    assert!(!marker.exists(), "the command ran despite {args:?}");
    assert_tmr_error(&out.stderr)
}

#[test]
fn unknown_flag_is_refused_with_125() {
    let err = refused(&["--bogus"], 125);
    assert!(err.contains("--bogus"), "{err}");
}

#[test]
fn zero_replicas_is_refused_with_125() {
    refused(&["-n", "0"], 125);
}

#[test]
fn bad_timeout_is_refused_with_125() {
    let err = refused(&["--timeout", "soon"], 125);
    assert!(err.contains("soon"), "{err}");
}

#[test]
fn bad_mask_regex_is_refused_with_125() {
    refused(&["--mask", "("], 125);
}

#[test]
fn unwritable_report_file_is_refused_before_running_anything() {
    let err = refused(&["-o", "/nonexistent-dir/x.json"], 125);
    assert!(err.contains("/nonexistent-dir/x.json"), "{err}");
}

#[test]
fn command_not_found_exits_127() {
    let out = tmr().arg("tmr-no-such-command-anywhere").output().unwrap();
    out.clone().assert().code(127).stdout("");
    let err = assert_tmr_error(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("tmr-no-such-command-anywhere"), "{err}");

    let out = tmr().arg("/nonexistent-dir/cmd").output().unwrap();
    out.clone().assert().code(127).stdout("");
    assert_tmr_error(&out.stderr);
}

#[test]
fn file_without_execute_permission_exits_126() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    let marker = dir.path().join("ran");
    fs::write(&script, "#!/bin/sh\ntouch \"$M\"\n").unwrap();
    // Written without +x (mode 0644 under the usual umask); make sure.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let out = tmr().arg(&script).env("M", &marker).output().unwrap();
    out.clone().assert().code(126).stdout("");
    let err = assert_tmr_error(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!marker.exists());

    // The same file found through PATH.
    let out = tmr().arg("script").env("PATH", dir.path()).env("M", &marker).output().unwrap();
    out.clone().assert().code(126).stdout("");
    assert_tmr_error(&out.stderr);
    assert!(!marker.exists());
}

/// Passes every check before the replicas start and fails in execve itself: the errno travels back from
/// each child over its exec-error pipe.
#[test]
fn an_executable_the_kernel_cannot_load_exits_126_with_the_exec_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    fs::write(&bad, b"\x7fELF not really").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmr().args(["--reruns", "0"]).arg(&bad).output().unwrap();
    out.clone().assert().code(126).stdout("");
    let err = text(&out.stderr);
    assert!(err.contains("unanimous 3/3") && err.contains("exec failed: Exec format error"), "{err}");
    // An exec failure cannot change on a rerun: classified at once, with the default budget unspent.
    let out = tmr().args(["--format", "json"]).arg(&bad).output().unwrap();
    out.clone().assert().code(126);
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["classification"]["class"], "deterministic", "{v}");
    assert_eq!(v["classification"]["reruns"], 0, "{v}");
    assert_eq!(v["classification"]["exec_failed"], true, "{v}");
}

/// A text file without `#!` runs under /bin/sh, as execvp(3) runs it (and as a shell would).
#[test]
fn a_script_without_a_shebang_runs_under_sh() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("plain");
    fs::write(&script, "echo \"from sh: $1\"\nexit 4\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmr().args(["--reruns", "0"]).arg(&script).arg("arg1").output().unwrap();
    out.clone().assert().code(4).stdout("from sh: arg1\n");
}

/// A `#!` line naming a missing interpreter: exec fails with ENOENT although the file exists. That is
/// "not executable" (126, as bash says "bad interpreter"), classified at once.
#[test]
fn a_missing_interpreter_is_126_and_never_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad-interp");
    fs::write(&script, "#!/no/such/interpreter\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmr().args(["--format", "json"]).arg(&script).output().unwrap();
    out.clone().assert().code(126).stdout("");
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(
        (v["classification"]["class"].as_str(), v["classification"]["reruns"].as_u64()),
        (Some("deterministic"), Some(0)),
        "{v}"
    );
    assert!(v["runs"][0]["outcome"]["kind"] == "failed-to-start", "{v}");
}

#[test]
fn directory_as_command_exits_126() {
    let dir = tempfile::tempdir().unwrap();
    let out = tmr().arg(dir.path()).output().unwrap();
    out.clone().assert().code(126).stdout("");
    let err = assert_tmr_error(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn missing_command_is_refused_with_125() {
    let out = tmr().output().unwrap();
    out.clone().assert().code(125).stdout("");
    assert_tmr_error(&out.stderr);
}

// ---------------------------------------------------------------------------------------------------------
// JSON report, --sequential, --help, --version
// ---------------------------------------------------------------------------------------------------------

#[test]
fn json_report_describes_the_run_and_holds_no_environment() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    tmr()
        .args(["--format", "json", "-o"])
        .arg(&report)
        .args(["--", "sh", "-c", "echo hi"])
        .env("TMR_TEST_SECRET", "s3cr3t")
        .assert()
        .code(0)
        .stdout("hi\n")
        .stderr("");
    let raw = fs::read_to_string(&report).unwrap();
    assert!(!raw.contains("s3cr3t"), "the report leaks the environment:\n{raw}");
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["schema"], "tmr-report");
    // Version 4 since the stream digests became XXH128; bump it here deliberately with the schema.
    assert_eq!(v["version"], 4);
    assert_eq!(v["vote"]["result"], "unanimous");
    assert_eq!(v["classification"]["class"], "none");
    assert_eq!(v["replicas"], 3);
    assert_eq!(v["command"], serde_json::json!(["sh", "-c", "echo hi"]));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["replica"], i, "{r}");
        assert_eq!(r["outcome"]["kind"], "exited", "{r}");
        assert_eq!(r["outcome"]["code"], 0, "{r}");
        assert_eq!(r["stdout"]["bytes"], 3, "{r}");
        assert_eq!(r["stderr"]["bytes"], 0, "{r}");
        // XXH128 as `printf 'hi\n' | xxhsum -H2` prints it: streamed digests are of the whole output.
        assert_eq!(r["stdout"]["xxh128"], tmr::digest::hex(&tmr::digest::digest(b"hi\n")), "{r}");
        assert_eq!(r["stderr"]["xxh128"], "99aa06d3014798d86001c324468d497f", "{r}");
    }
    assert_eq!(v["vote"]["unanimous"], true);
    assert_eq!(v["vote"]["winner"], 0);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["dissents"], serde_json::json!([]));
}

#[test]
fn json_report_records_a_dissent() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    tmr()
        .args(["--format", "json", "-o"])
        .arg(&report)
        .args(["--", "sh", "-c", ONE_BAD])
        .assert()
        .code(0)
        .stdout("good\n");
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["vote"]["unanimous"], false);
    assert_eq!(v["vote"]["majority"], serde_json::json!([0, 2]));
    assert_eq!(v["runs"][1]["outcome"]["code"], 3);
    assert_eq!(v["dissents"][0]["replica"], 1);
    assert_eq!(v["exit_code"], 0);
}

#[test]
fn sequential_replicas_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    // Each replica holds a mkdir lock while it runs; overlapping replicas would find it taken (exit 9).
    tmr()
        .args([
            "--sequential",
            "--",
            "sh",
            "-c",
            r#"mkdir "$D/lock" || exit 9; echo $TMR_REPLICA >> "$D/order"; rmdir "$D/lock""#,
        ])
        .env("D", dir.path())
        .assert()
        .code(0)
        .stderr(contains("unanimous 3/3"));
    assert_eq!(fs::read_to_string(dir.path().join("order")).unwrap(), "0\n1\n2\n");
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = tmr().arg("--help").output().unwrap();
    out.clone().assert().code(0).stderr("");
    let help = text(&out.stdout);
    for needle in [
        "EXAMPLES",
        "EXIT STATUS",
        "120",
        "121",
        "124",
        "125",
        "126",
        "127",
        "--timeout",
        "--compare",
        "TMR_REPLICA",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn version_is_printed_on_stdout() {
    tmr().arg("--version").assert().code(0).stdout("tmr 0.1.0\n").stderr("");
}

// ---------------------------------------------------------------------------------------------------------
// More behaviour users rely on
// ---------------------------------------------------------------------------------------------------------

#[test]
fn output_is_replayed_byte_exact_including_nul_and_no_final_newline() {
    tmr().args(["printf", r"a\000b\377"]).assert().code(0).stdout(&b"a\0b\xff"[..]);
}

#[test]
fn arguments_with_spaces_and_empty_ones_pass_through() {
    tmr().args(["printf", "%s|", "a b", "", "-n", "--"]).assert().code(0).stdout("a b||-n|--|");
}

#[test]
fn replicas_inherit_environment_and_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let out = tmr()
        .args(["--", "sh", "-c", r#"echo "$TMR_TEST_VALUE"; pwd -P"#])
        .env("TMR_TEST_VALUE", "from the caller")
        .current_dir(&dir)
        .output()
        .unwrap();
    out.assert().code(0).stdout(format!("from the caller\n{}\n", dir.display()));
}

#[test]
fn winners_stderr_is_replayed_before_the_summary() {
    let out = tmr().args(["--", "sh", "-c", "echo to-stderr >&2; echo to-stdout"]).output().unwrap();
    out.clone().assert().code(0).stdout("to-stdout\n");
    let err = text(&out.stderr);
    assert!(err.starts_with("to-stderr\ntmr: unanimous 3/3"), "{err:?}");
}

#[test]
fn compare_stderr_votes_on_stderr() {
    tmr()
        .args(["--compare", "stderr", "--", "sh", "-c", "echo $TMR_REPLICA >&2"])
        .assert()
        .code(120)
        .stdout("")
        .stderr(contains("no majority"));
    // Not compared by default: differing stderr alone does not matter.
    tmr()
        .args(["--", "sh", "-c", "echo $TMR_REPLICA >&2; echo same"])
        .assert()
        .code(0)
        .stdout("same\n")
        .stderr(contains("unanimous 3/3"));
}

#[test]
fn a_single_replica_is_allowed() {
    tmr()
        .args(["-n", "1", "--", "sh", "-c", "echo only; exit 5"])
        .assert()
        .code(5)
        .stdout("only\n")
        .stderr(contains("unanimous 1/1"));
}

#[test]
fn an_even_split_is_no_majority() {
    tmr()
        .args(["-n", "4", "--", "sh", "-c", "exit $((TMR_REPLICA % 2))"])
        .assert()
        .code(120)
        .stdout("")
        .stderr(contains("no majority"));
}

#[test]
fn replicas_get_the_default_sigpipe_disposition() {
    // The test harness (Rust) ignores SIGPIPE and tmr inherits that; `yes` must still die quietly from
    // SIGPIPE instead of complaining about a broken pipe, as it does in a shell.
    let out = tmr().args(["--", "sh", "-c", "yes | head -n 1"]).output().unwrap();
    out.clone().assert().code(0).stdout("y\n");
    let err = text(&out.stderr);
    assert!(!err.to_lowercase().contains("broken pipe"), "{err}");
    assert!(err.starts_with("tmr: unanimous 3/3"), "{err}");
}

#[test]
fn dissenting_reference_replica_does_not_corrupt_the_delivered_output() {
    // Replica 0's output is the reference the others are deduplicated against. Whatever it prints
    // (shorter, longer, different in the middle, different at the start, nothing), the majority's
    // output must be delivered byte for byte.
    let flood = fixture("flood");
    const MAJORITY: &str = r#"{ "$FLOOD" 4M; echo ORIGINAL; "$FLOOD" 4M; }"#;
    let direct =
        run(std::process::Command::new("sh").args(["-c", MAJORITY]).env("FLOOD", &flood), Input::Null);
    assert!(direct.status.success());
    for replica0 in [
        r#""$FLOOD" 1M"#,
        r#""$FLOOD" 9M"#,
        r#"{ "$FLOOD" 4M; echo CHANGED; "$FLOOD" 4M; }"#,
        r#"echo first; "$FLOOD" 8M"#,
        "true",
    ] {
        let script = format!(r#"if [ "$TMR_REPLICA" = 0 ]; then {replica0}; else {MAJORITY}; fi"#);
        let out = run(tmr_std().args(["--", "sh", "-c", &script]).env("FLOOD", &flood), Input::Null);
        assert_eq!(out.status.code(), Some(0), "{replica0}: {}", text(&out.stderr));
        assert!(
            out.stdout == direct.stdout,
            "{replica0}: delivered {} bytes that differ from the majority's {} bytes",
            out.stdout.len(),
            direct.stdout.len()
        );
        assert!(
            text(&out.stderr).contains("majority 2/3 agree · exit 0 · delivered replica 1's output"),
            "{replica0}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn stdin_that_never_closes_does_not_hold_up_replicas_that_ignore_it() {
    // `producer | tmr cmd` where cmd never reads stdin and the producer is still running.
    let out = run(tmr_std().args(["echo", "done"]), Input::HeldOpen);
    out.assert().code(0).stdout("done\n").stderr(contains("unanimous 3/3"));
}

#[test]
fn sequential_replicas_all_get_the_whole_stdin() {
    let data = noise(3 << 20);
    let echo = fixture("echo-stdin");
    let direct = run(std::process::Command::new(&echo).arg("--count"), Input::Bytes(data.clone()));
    let out = run(tmr_std().args(["--sequential", "--"]).arg(&echo).arg("--count"), Input::Bytes(data));
    out.assert().code(0).stdout(direct.stdout).stderr(contains("unanimous 3/3"));
}

#[test]
fn a_terminal_on_stdin_is_not_shared_with_replicas() {
    let (_master, slave) = open_pty();
    // If tmr handed the terminal to the replicas, readlink would name /dev/pts/N (and `cat` would block).
    let out = run(tmr_std().args(["--", "sh", "-c", "readlink /proc/self/fd/0; cat"]), Input::File(slave));
    out.assert().code(0).stdout("/dev/null\n").stderr(contains("unanimous 3/3"));
}

#[test]
fn human_report_can_go_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("summary.txt");
    tmr()
        .arg("-o")
        .arg(&report)
        .args(["--", "sh", "-c", "echo hi"])
        .assert()
        .code(0)
        .stdout("hi\n")
        .stderr("");
    let summary = fs::read_to_string(&report).unwrap();
    assert!(summary.starts_with("tmr: unanimous 3/3 agree · exit 0"), "{summary}");
    assert!(!summary.contains('\x1b'), "no colour in a file: {summary:?}");
}

#[test]
fn json_report_goes_to_stderr_without_output_file() {
    let out = tmr().args(["--format", "json", "--", "sh", "-c", "echo hi"]).output().unwrap();
    out.clone().assert().code(0).stdout("hi\n");
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["schema"], "tmr-report");
    assert_eq!(v["exit_code"], 0);
}

#[test]
fn sigint_during_sequential_run_starts_no_further_replica() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut cmd = tmr_std();
    cmd.args(["--sequential", "--format", "json", "-o"])
        .arg(&report)
        .args([
            "--",
            "sh",
            "-c",
            r#"echo $$ > "$D/pid.$TMR_REPLICA"; exec "$HANG" --ready-file "$D/ready.$TMR_REPLICA""#,
        ])
        .env("D", dir.path())
        .env("HANG", fixture("hang"));
    let mut running = spawn(&mut cmd, Input::Null);
    wait_for_file_while(&dir.path().join("ready.0"), &mut running);
    let pid = read_pid(&dir.path().join("pid.0"));
    send_signal(running.pid(), libc::SIGINT);
    let out = running.finish(TIMEOUT);
    out.assert().code(130).stdout("");
    assert!(!alive(pid, "hang"), "replica 0 outlived tmr");
    assert!(
        !dir.path().join("pid.1").exists() && !dir.path().join("pid.2").exists(),
        "a replica was started after SIGINT"
    );
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["interrupted_by"], "SIGINT");
    assert_eq!(v["exit_code"], 130);
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
}
