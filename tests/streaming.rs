//! Streaming delivery (issue 10): what a strict majority of replicas has written identically is
//! delivered while they run, never taken back, and equals the winner's output byte for byte; a split
//! keeps the delivered prefix; EPIPE on tmr's output ends the replicas as a pipeline would.
//! Readiness handshakes only: a test reads what tmr delivered before it lets the replicas go on.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;

/// `tmr -- sh -c 'echo 1; <wait for a file>; echo 2'`: line 1 arrives before the file exists.
#[test]
fn a_line_a_majority_wrote_is_delivered_before_the_replicas_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let script =
        r#"echo 1; i=0; while [ ! -e "$1" ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; echo 2"#;
    let mut child = tmr_std()
        .args(["--", "sh", "-c", script, "sh"])
        .arg(&go)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "1\n");
    assert!(!go.exists(), "line 1 came before any replica was allowed to write line 2");
    std::fs::write(&go, "").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "2\n");
    assert!(child.wait().unwrap().success());
}

/// `sh -c SCRIPT` with `$0` tmr and `$1` a temp dir (tmr's JSON report goes to `$1/r.json`): what the
/// pipeline printed, and the report.
fn pipeline(script: &str) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        std::process::Command::new("sh").args(["-c", script]).arg(tmr_path()).arg(dir.path()),
        Input::Null,
    );
    let r = serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    (out, r)
}

/// `tmr -- yes | head -1`: `y`, then tmr ends the replicas with SIGPIPE and exits 141, having read
/// their pipes to the end. It once stopped reading them once its queue for the gone reader was full,
/// and then waited out the leak window for an EOF (every run marked `leaked`, 500 ms late): about one
/// run in ten here, so this runs it ten times.
#[test]
fn a_reader_that_closes_ends_the_run_with_sigpipe() {
    for _ in 0..10 {
        a_reader_closes_once();
    }
}

fn a_reader_closes_once() {
    let (out, r) = pipeline(
        r#""$0" --format json -o "$1/r.json" -- yes 2>/dev/null | head -n 1; echo "${PIPESTATUS:-}""#,
    );
    assert_eq!(text(&out.stdout).lines().next(), Some("y"));
    assert_eq!(r["exit_code"], 141, "{r}");
    assert_eq!(r["interrupted_by"], "SIGPIPE");
    assert_eq!(r["output"]["streamed"], true);
    for run in r["runs"].as_array().unwrap() {
        assert_eq!(run["outcome"]["signal"], libc::SIGPIPE, "each replica ended as in a pipeline: {run}");
        assert_eq!(run["leaked"], false, "its pipes were read to their end, not given up: {run}");
    }
}

/// A program that ignores SIGPIPE (Python does) gets EPIPE on its next write once tmr's reader has
/// left, as in a shell pipeline: tmr closes the replicas' pipes of that stream. Before, it wrote on into
/// pipes tmr drained for nobody until the grace period's SIGKILL (2 s later: killed, not exited 1).
#[test]
fn a_replica_that_ignores_sigpipe_gets_epipe_when_the_reader_leaves() {
    let (out, r) = pipeline(
        r#""$0" --format json -o "$1/r.json" -- python3 -c "while True: print('x' * 100)" 2>/dev/null | head -c 100"#,
    );
    assert_eq!(out.stdout.len(), 100);
    assert_eq!((r["exit_code"].as_i64(), r["interrupted_by"].as_str()), (Some(141), Some("SIGPIPE")), "{r}");
    for run in r["runs"].as_array().unwrap() {
        // BrokenPipeError: Python's exit code 1, as at the end of `python3 … | head -c 100`; or SIGPIPE
        // for a replica so slow to start that the reader left before Python ignored SIGPIPE. Never
        // the grace period's SIGKILL.
        let exited_1 = serde_json::json!({"kind": "exited", "code": 1});
        let sigpipe = serde_json::json!({"kind": "signaled", "signal": libc::SIGPIPE});
        assert!(run["outcome"] == exited_1 || run["outcome"] == sigpipe, "{run}");
    }
    let exited = r["runs"].as_array().unwrap().iter().filter(|run| run["outcome"]["code"] == 1).count();
    assert!(exited > 0, "at least one replica was writing when the reader left: {r}");
}

/// As in a pipeline, a reader that left ends the run only when tmr has bytes to write to it. Replicas
/// that wrote everything before it left finish as they would: `sh -c 'echo ready; <wait>; touch f' |
/// grep -q ready` creates `f` and exits 0. An outside trial found tmr SIGPIPE'ing them as soon as the
/// reader left (its stdout watch: exit 141, no `f`), and `tmr -- seq 100 | head -1` exiting 141 in one
/// run in two. The replicas go on only once the test has closed tmr's stdout (a file handshake).
#[test]
fn a_reader_that_left_ends_only_replicas_that_write_again() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let script = r#"echo ready; i=0; while [ ! -e "$1/gone" ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done
                    touch "$1/side.$TMR_REPLICA""#;
    let mut child = tmr_std()
        .args(["-q", "--reruns", "0", "--", "sh", "-c", script, "sh"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "ready\n");
    drop(out);
    std::fs::write(&gone, "").unwrap();
    let status =
        wait_until(&mut child, std::time::Instant::now() + Duration::from_secs(60)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("tmr did not end within 60 s")
        });
    assert_eq!(status.code(), Some(0), "nothing more was written: the vote's exit code");
    for r in 0..3 {
        assert!(dir.path().join(format!("side.{r}")).exists(), "replica {r} ran to its end");
    }
}

/// Two replicas that write the same streams in another order, with both streams compared: the one far
/// ahead on stdout was held for the other, itself held on stderr for the first, and tmr waited for good
/// (an outside trial: two survivors of three, or two of two, over 3 MiB per stream; `run` bounds the
/// wait, so the hang fails the test). Both orders are delivered whole.
#[test]
fn replicas_that_write_their_streams_in_another_order_do_not_wait_on_each_other() {
    let expected: String = (1..=1_000_000).map(|i| format!("{i}\n")).collect();
    let orders = r#"if [ $((TMR_REPLICA % 2)) = 0 ]; then seq 1000000; seq 1000000 >&2
                    else seq 1000000 >&2; seq 1000000; fi"#;
    let crashed = r#"case $TMR_REPLICA in 0) seq 1000000; seq 1000000 >&2;; 1) seq 1000000 >&2; seq 1000000;;
                     *) kill -SEGV $$;; esac"#;
    for (n, script) in [("2", orders), ("3", crashed), ("4", orders)] {
        let out = run(
            tmr_std().args([
                "-q",
                "-n",
                n,
                "--reruns",
                "0",
                "--compare",
                "stdout,stderr",
                "--",
                "sh",
                "-c",
                script,
            ]),
            Input::Null,
        );
        assert_eq!(out.status.code(), Some(0), "-n {n}: {}", text(&out.stderr));
        assert!(text(&out.stdout) == expected, "-n {n}: stdout whole ({} bytes)", out.stdout.len());
        assert!(
            text(&out.stderr).starts_with(&expected),
            "-n {n}: stderr whole ({} bytes)",
            out.stderr.len()
        );
    }
}

/// Replicas held back behind a slower sibling (far ahead of it, and agreeing with it so far) that exit
/// with their last bytes unread in their pipes are not leaking: tmr cannot see an EOF it holds back.
/// An outside trial saw them reported as "left processes holding their output open" and killed, once the
/// 500 ms leak window had passed. Here replicas 0 and 1 (which differ from each other at byte 0, so
/// nothing commits) write a window and a little more, and exit; replica 2 waits for both to be done,
/// then a second more (twice the leak window: the condition under test), then writes replica 0's bytes.
#[test]
fn replicas_held_back_behind_a_slower_one_are_not_leaking() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"case $TMR_REPLICA in 1) p=b;; *) p=a;; esac
        if [ "$TMR_REPLICA" = 2 ]; then
          i=0; while { [ ! -e "$1/done.0" ] || [ ! -e "$1/done.1" ]; } && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done
          sleep 1
        fi
        echo $p; yes 0123456789abcde | head -c 1081344
        [ "$TMR_REPLICA" = 2 ] || touch "$1/done.$TMR_REPLICA""#;
    let args = with(
        &["--reruns", "0"],
        vec!["sh".into(), "-c".into(), script.into(), "sh".into(), dir.path().into()],
    );
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["vote"]["majority"], serde_json::json!([0, 2]), "{}", run.report["vote"]);
    assert_eq!(run.stdout.len(), 2 + 1081344);
    for r in run.report["runs"].as_array().unwrap() {
        assert_eq!(r["leaked"], false, "{r}");
    }
    assert!(!run.stderr.contains("holding their output open"), "{}", run.stderr);
}

/// Reading replicas out of a cycle of holds keeps the difference in order in memory: bounded. Past 64 MiB
/// ahead the run stops with an error naming the way out (an outside trial: `yes` against `yes >&2` grew
/// tmr by 500 MB/s until killed). The shell stays the replica, so both streams stay open in both (with
/// `exec yes >&2` replica 1's stdout would end, replica 0's be outvoted, and the run be `yes` forever).
#[test]
fn streams_written_in_endlessly_different_orders_stop_with_an_error() {
    let script = "case $TMR_REPLICA in 0) yes;; 1) yes >&2;; *) exit 1;; esac";
    let out = run(tmr_std().args(["--compare", "stdout,stderr", "--", "sh", "-c", script]), Input::Null);
    assert_eq!(out.status.code(), Some(125));
    let err = assert_tmr_error(&out.stderr);
    assert!(err.contains("different orders") && err.contains("--compare stdout)"), "{err}");
}

/// `tmr --buffered -- yes | true` and `--sequential`: tmr writes nothing until the vote, so it cannot
/// learn of the reader leaving from a write; it watches its stdout for POLLERR instead. Before, it ran
/// on (spooling `yes` to disk at over 1 GB/s) until killed.
#[test]
fn a_reader_that_leaves_before_buffered_delivery_ends_the_run() {
    for mode in ["--buffered", "--sequential"] {
        let (_, r) =
            pipeline(&format!(r#""$0" {mode} --format json -o "$1/r.json" -- yes 2>/dev/null | true"#));
        assert_eq!(
            (r["exit_code"].as_i64(), r["interrupted_by"].as_str()),
            (Some(141), Some("SIGPIPE")),
            "{mode}: {r}"
        );
    }
}

/// `--buffered` and `--sequential` hold output back until the vote, so an endless command (`yes`) filled
/// $TMPDIR until tmr was killed. `--buffered` keeps the committed stream: past `--buffer-limit` the run
/// stops, nothing delivered, exit 125, no spool left behind. `--sequential` keeps each replica's: past
/// the limit one is only hashed, so a faulty replica's flood is outvoted (an outside trial: it stopped
/// the run), and only a winner that was not kept is an error. Under the limit, output is delivered whole.
#[test]
fn held_back_output_stops_at_the_buffer_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let limited = |mode: &str, script: &str| {
        run(
            tmr_std().env("TMPDIR", tmp.path()).args([
                mode,
                "--buffer-limit",
                "1M",
                "--",
                "sh",
                "-c",
                script,
            ]),
            Input::Null,
        )
    };
    for (mode, script) in [("--buffered", "yes"), ("--sequential", "head -c 2000000 /dev/zero")] {
        let out = limited(mode, script);
        assert_eq!(out.status.code(), Some(125), "{mode}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{mode}: nothing is delivered without the whole output");
        let err = assert_tmr_error(&out.stderr);
        assert!(err.contains("--buffer-limit (1M)"), "{mode}: {err}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "{mode}: the spool is gone");
        let out = run(tmr_std().args([mode, "--buffer-limit", "1M", "--", "seq", "100000"]), Input::Null);
        assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 588_895), "{mode}: under the limit");
    }
    let flood = r#"if [ "$TMR_REPLICA" = 2 ]; then head -c 2000000 /dev/zero; fi; echo ok"#;
    for mode in ["--buffered", "--sequential"] {
        let out = limited(mode, flood);
        assert_eq!(
            (out.status.code(), text(&out.stdout).as_str()),
            (Some(0), "ok\n"),
            "{mode}: {}",
            text(&out.stderr)
        );
    }
}

/// `--buffered` with a stdout that is not compared (`--compare exit`) showed replica 0's stdout live, and
/// kept it there when no majority formed: the partial result `--buffered` exists to prevent. Now the
/// winner's stdout is delivered whole after the vote, nothing without a majority, and nothing past
/// `--buffer-limit`.
#[test]
fn buffered_holds_back_a_stdout_that_is_not_compared() {
    let opts = ["--buffered", "--compare", "exit", "--reruns", "0", "--"];
    let out = run(tmr_std().args(opts).args(["sh", "-c", "echo partial; exit $TMR_REPLICA"]), Input::Null);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(120), ""), "{}", text(&out.stderr));
    let out = run(tmr_std().args(opts).args(["sh", "-c", "echo whole; echo $TMR_REPLICA"]), Input::Null);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        ["whole\n0\n", "whole\n1\n", "whole\n2\n"].contains(&stdout.as_str()),
        "one replica's, whole: {stdout:?}"
    );
    let out = run(
        tmr_std().args(["--buffer-limit", "1K"]).args(opts).args(["sh", "-c", "head -c 2000 /dev/zero"]),
        Input::Null,
    );
    assert_eq!((out.status.code(), out.stdout.len()), (Some(125), 0), "{}", text(&out.stderr));
    assert!(assert_tmr_error(&out.stderr).contains("--buffer-limit (1K)"));
}

/// Whose uncompared stream was delivered, in the JSON report (an outside trial found
/// `shown_replica` null with `--sequential`, a "switch" from no replica with `--buffered --compare exit`,
/// and nothing said when the majority's stream could not follow a shown one that lost the vote).
#[test]
fn the_report_names_whose_uncompared_stream_was_delivered() {
    let script = r#"echo out; echo "err from $TMR_REPLICA" >&2; [ $TMR_REPLICA = 0 ] && exit 1; exit 0"#;
    let args = with(&["--sequential", "--reruns", "0"], vec!["sh".into(), "-c".into(), script.into()]);
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    let winner = run.report["vote"]["winner"].clone();
    assert!(winner == 1 || winner == 2, "{}", run.report["vote"]);
    assert_eq!(run.report["output"]["stderr"]["shown_replica"], winner, "{}", run.report["output"]);
    assert!(run.stderr.contains(&format!("err from {winner}\n")), "{}", run.stderr);

    let args = with(&["--buffered", "--compare", "exit", "--reruns", "0"], vec!["echo".into(), "hi".into()]);
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    let stdout = &run.report["output"]["stdout"];
    assert!(stdout["shown_replica"].is_u64() && stdout["switched_to"].is_null(), "{stdout}");

    // Replica 0's stderr is shown live and loses; the majority's is over the 64 MiB kept to follow it.
    let script = r#"if [ $TMR_REPLICA = 0 ]; then echo lost >&2; exit 3; fi; exec "$0" 65M --stderr"#;
    let args =
        with(&["--reruns", "0"], vec!["sh".into(), "-c".into(), script.into(), fixture("flood").into()]);
    let run = tmr_json_report(None, &[], &args, "tmr-report");
    assert_eq!(run.code, 0);
    assert_eq!(run.report["output"]["stderr"]["not_kept"], 1, "{}", run.report["output"]);
    assert_eq!(run.stderr, "lost\n", "replica 0's was shown live, and nothing followed");
}

/// `tmr --sequential -- seq N | head -1`: the spooled winner's output is cut by the reader, and the
/// report counts what reached tmr's output (it said 0 bytes, though `1` was delivered).
#[test]
fn a_reader_that_closes_during_spooled_delivery_is_counted() {
    let (out, r) =
        pipeline(r#""$0" --sequential --format json -o "$1/r.json" -- seq 1000000 2>/dev/null | head -n 1"#);
    assert_eq!(text(&out.stdout), "1\n");
    assert_eq!(r["interrupted_by"], "SIGPIPE", "{r}");
    let bytes = r["output"]["stdout"]["bytes"].as_u64().unwrap();
    assert!(
        (2..6_888_896).contains(&bytes),
        "delivered {bytes} of seq's 6,888,896 bytes before the reader left"
    );
}

/// The flood: bytes agreed by all are delivered byte-exact, and nothing is spooled (no file in
/// $TMPDIR, and tmr's own memory stays far below the output's size).
#[test]
fn a_flood_is_streamed_byte_exact_without_a_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let flood = fixture("flood");
    let mut child = tmr_std()
        .env("TMPDIR", tmp.path())
        .args(["--format", "json", "--"])
        .arg(&flood)
        .arg("64M")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    let mut err = Vec::new();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    assert!(child.wait().unwrap().success());
    let direct = run(std::process::Command::new(&flood).arg("64M"), Input::Null);
    assert!(got == direct.stdout, "streamed bytes differ from the command's own output");
    let r: serde_json::Value = serde_json::from_slice(&err).unwrap();
    assert_eq!(r["output"]["stdout"]["bytes"], 64 << 20);
    assert!(r["runs"].as_array().unwrap().iter().all(|x| x["stdout"]["bytes"] == 64 << 20));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing written to $TMPDIR");
}

/// stderr is not compared by default: replica 0's is shown live, and the summary says whose.
#[test]
fn an_uncompared_stream_is_shown_live_from_replica_0() {
    let out = run(
        tmr_std().args([
            "--",
            "sh",
            "-c",
            r#"echo "err $TMR_REPLICA" >&2; [ "$TMR_REPLICA" = 2 ] && exit 1; echo ok"#,
        ]),
        Input::Null,
    );
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(err.starts_with("err 0\n"), "{err}");
    assert!(!err.contains("err 1") && !err.contains("err 2"), "{err}");
    assert!(err.contains("stderr is not compared: replica 0's was shown live"), "{err}");
}

/// Under a mask, lines commit when a majority's masked lines agree, and the delivered raw line is the
/// lowest-numbered replica's of that majority (replica 1 here: replica 0 differs).
#[test]
fn masked_lines_deliver_the_lowest_replica_of_the_majority() {
    let script = r#"if [ "$TMR_REPLICA" = 0 ]; then echo "other"; else echo "took ${TMR_REPLICA}0ms"; fi"#;
    let out =
        run(tmr_std().args(["--mask", "[0-9]+ms", "--reruns", "0", "--", "sh", "-c", script]), Input::Null);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "took 10ms\n");
}

/// `tmr --reruns 0 --format json -o R -- sh -c SCRIPT`: what tmr printed, and its report.
fn sh_json(script: &str) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        tmr_std()
            .args(["--reruns", "0", "--format", "json", "-o"])
            .arg(dir.path().join("r.json"))
            .args(["--", "sh", "-c", script]),
        Input::Null,
    );
    let r = serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    (out, r)
}

/// A split partway: the agreed prefix is delivered, nothing after it, exit 120, and the report says
/// how much was delivered before the split and shows where the replicas differ.
#[test]
fn a_split_keeps_the_delivered_prefix() {
    let (out, r) = sh_json(r#"printf 'common line\n'; echo "then $TMR_REPLICA""#);
    assert_eq!(out.status.code(), Some(120));
    assert_eq!(text(&out.stdout), "common line\nthen ");
    assert_eq!(r["output"]["stdout"]["bytes"], 17);
    assert_eq!(r["vote"]["result"], "no-majority");
}

/// A replica that stopped short of the majority, or differs only in a final newline, still gets the
/// line where it differs, with the newline shown where it is the difference; so does each replica of a
/// split with no majority, against replica 0.
#[test]
fn a_replica_that_stops_short_gets_its_differing_line() {
    let dissent = |script: &str| -> serde_json::Value {
        let (out, r) = sh_json(script);
        assert!(matches!(out.status.code(), Some(0 | 120)), "{}", text(&out.stderr));
        r["dissents"][0]["stdout_diff"].clone()
    };
    let d = dissent(r#"seq 10; [ "$TMR_REPLICA" = 1 ] || seq 11 12"#);
    assert_eq!(
        (d["line"].as_u64(), d["majority"].as_str(), d["replica"].as_str()),
        (Some(11), Some("11"), None)
    );
    let d = dissent(r#"echo a; if [ "$TMR_REPLICA" = 1 ]; then printf tail; else printf 'tail\n'; fi"#);
    assert_eq!(
        (d["line"].as_u64(), d["majority"].as_str(), d["replica"].as_str()),
        (Some(2), Some("tail\n"), Some("tail"))
    );
    // No majority at all: each dissent is shown against replica 0.
    let d = dissent(r#"echo same; echo "x $TMR_REPLICA""#);
    assert_eq!(
        (d["line"].as_u64(), d["majority"].as_str(), d["replica"].as_str()),
        (Some(2), Some("x 0"), Some("x 1"))
    );
}

/// A replica far ahead of the others is held back (not read) while they have not caught up, so tmr
/// never buffers its lead: replica 0 cannot finish writing 16 MiB before the others are let go.
#[test]
fn a_replica_far_ahead_is_held_back_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let flood = fixture("flood");
    let script = r#"if [ "$TMR_REPLICA" = 0 ]; then "$0" 16M; touch "$1/done0"; exit 0; fi
i=0; while [ ! -e "$1/go" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done; exec "$0" 16M"#;
    let running = spawn(
        tmr_std().args(["--reruns", "0", "--", "sh", "-c", script]).arg(&flood).arg(dir.path()),
        Input::Null,
    );
    // However long this waits, replica 0 stays blocked on its pipe: tmr does not read it.
    for _ in 0..100 {
        assert!(!dir.path().join("done0").exists(), "replica 0's 16 MiB lead was read (buffered) by tmr");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", running.pid())).unwrap();
    let hwm: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(hwm < 32 * 1024, "tmr's peak RSS {hwm} KiB while a replica ran 16 MiB ahead");
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = running.finish(TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let direct = run(std::process::Command::new(&flood).arg("16M"), Input::Null);
    assert!(out.stdout == direct.stdout);
}

/// A replica that falls more than 1 MiB behind the committed offset is compared by digest from there
/// (the log does not keep everything committed since): the run stays unanimous, the output is delivered
/// once and whole, and tmr's memory does not grow with the lag. Replica 2 starts writing only once the
/// other two have written all 8 MiB (a marker file each), so it lags by the whole output.
#[test]
fn a_replica_far_behind_is_checked_by_digest_and_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        if [ "$TMR_REPLICA" = 2 ]; then
            i=0; while { [ ! -e "$1/0" ] || [ ! -e "$1/1" ]; } && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done
        fi
        head -c 8388608 /dev/zero | tr '\0' z
        touch "$1/$TMR_REPLICA"
    "#;
    let report = dir.path().join("r.json");
    let out = tmr_std()
        .args(["--reruns", "0", "--format", "json", "-o"])
        .arg(&report)
        .args(["--", "sh", "-c", script, "sh"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 8 << 20);
    assert!(out.stdout.iter().all(|&b| b == b'z'));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["vote"]["result"], "unanimous", "{json}");
}
