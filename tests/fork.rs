//! End-to-end tests of `--fork` (one exec, the other replicas forked at the entry point): real programs
//! give what ordinary replicas give, exit codes and exec errors are the same, each fork is a replica of
//! its own (pid, process group, number, pipes), a fault in one is outvoted, a timeout kills them all, and
//! what `--fork` cannot do is refused with a reason.
//!
//! No test sleeps to synchronise or asserts on elapsed time (see tests/common).

#[macro_use]
mod common;

use std::path::Path;

use predicates::prelude::*;
use predicates::str::contains;

use common::*;

/// Run `args` with and without `--fork` on the same stdin; both must agree on stdout and exit code.
fn same_as_exec(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let plain = tmr().args(["--reruns", "0", "--"]).args(args).write_stdin(stdin).output().unwrap();
    let forked =
        tmr().args(["--fork", "--reruns", "0", "--"]).args(args).write_stdin(stdin).output().unwrap();
    assert_eq!(forked.status.code(), plain.status.code(), "exit code of {args:?}: {}", text(&forked.stderr));
    assert_eq!(text(&forked.stdout), text(&plain.stdout), "stdout of {args:?}");
    assert!(text(&forked.stderr).contains("unanimous 3/3"), "{args:?}: {}", text(&forked.stderr));
    forked.stdout
}

#[test]
fn real_programs_give_what_exec_d_replicas_give() {
    require_ptrace!();
    let sorted = same_as_exec(&["sort"], b"pear\napple\nfig\n");
    assert_eq!(text(&sorted), "apple\nfig\npear\n");
    same_as_exec(&["ls", "-la", "/usr/bin"], b"");
    let py = same_as_exec(
        &["python3", "-c", "import sys; print(sum(range(10**5)), sys.stdin.read().upper())"],
        b"x",
    );
    assert_eq!(text(&py), "4999950000 X\n");
    assert_eq!(text(&same_as_exec(&["sh", "-c", "echo hi; exit 7"], b"")), "hi\n");
}

#[test]
fn a_statically_linked_program_and_a_script_without_shebang_work_too() {
    require_ptrace!();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("noshebang");
    std::fs::write(&script, "echo script $TMR_REPLICAS\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    tmr().args(["--fork", "--"]).arg(&script).assert().code(0).stdout("script 3\n");
    // Any statically linked program at hand: the entry point is the program's own.
    let Some(stat) =
        ["/bin/gofmt", "/usr/bin/gofmt", "/bin/busybox"].into_iter().find(|p| Path::new(p).exists())
    else {
        return;
    };
    let input: &[u8] = if stat.ends_with("gofmt") { b"package main\nfunc main(){}\n" } else { b"" };
    let arg = if stat.ends_with("gofmt") { "-l" } else { "true" };
    same_as_exec(&[stat, arg], input);
}

#[test]
fn exit_codes_and_exec_errors_are_those_of_ordinary_replicas() {
    require_ptrace!();
    tmr().args(["--fork", "--reruns", "0", "--", "sh", "-c", "exit 3"]).assert().code(3);
    tmr().args(["--fork", "--", "no-such-command-anywhere"]).assert().code(127);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "echo never\n").unwrap();
    tmr().args(["--fork", "--"]).arg(&file).assert().code(126);
    tmr()
        .args(["--fork", "--reruns", "0", "--", "sh", "-c", "kill -SEGV $$"])
        .assert()
        .code(139)
        .stderr(contains("SIGSEGV"));
}

#[test]
fn each_fork_is_a_replica_of_its_own() {
    require_ptrace!();
    let dir = tempfile::tempdir().unwrap();
    // Each replica records its number, pid, parent and process group (fields 4 and 5 of its stat).
    let script = r#"set -- $(cat /proc/$$/stat); echo "$TMR_REPLICA $TMR_REPLICAS $$ $4 $5" > "$D/r.$TMR_REPLICA"; echo done"#;
    tmr()
        .args(["--fork", "-n", "5", "--", "sh", "-c", script])
        .env("D", dir.path())
        .assert()
        .code(0)
        .stdout("done\n");
    let mut pids = std::collections::HashSet::new();
    let mut parents = std::collections::HashSet::new();
    for i in 0..5 {
        let line = std::fs::read_to_string(dir.path().join(format!("r.{i}"))).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[0], i.to_string(), "TMR_REPLICA of replica {i}: {line}");
        assert_eq!(f[1], "5", "TMR_REPLICAS: {line}");
        assert_eq!(f[2], f[4], "replica {i} leads its own process group: {line}");
        pids.insert(f[2].to_string());
        parents.insert(f[3].to_string());
    }
    assert_eq!(pids.len(), 5, "five distinct processes");
    assert_eq!(parents.len(), 1, "all five are children of tmr");
}

#[test]
fn forks_start_with_the_same_memory_layout_despite_aslr() {
    require_ptrace!();
    // The shell prints its own mappings (a builtin read loop: no exec). Forked from one exec, every
    // replica has the same addresses, so they agree; exec'd replicas under ASLR would not.
    let script =
        r#"while read -r l; do case "$l" in *'[stack]'*|*libc*) echo "$l";; esac; done < /proc/$$/maps"#;
    tmr()
        .args(["--fork", "--reruns", "0", "--", "sh", "-c", script])
        .assert()
        .code(0)
        .stderr(contains("unanimous 3/3"));
}

#[test]
fn a_fault_in_one_forked_replica_is_outvoted() {
    require_ptrace!();
    tmr()
        .args(["--fork", "--", &fixture("fail-on-replica").to_string_lossy(), "1"])
        .assert()
        .code(0)
        .stdout("ok\n")
        .stderr(contains("majority 2/3").and(contains("replica 1")));
}

#[test]
fn stdin_reaches_every_forked_replica() {
    require_ptrace!();
    let input = noise(300_000);
    let out = tmr().args(["--fork", "--", "cat"]).write_stdin(input.clone()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout == input, "cat's output differs from its input ({} bytes)", out.stdout.len());
    assert!(text(&out.stderr).contains("unanimous 3/3"), "{}", text(&out.stderr));
}

#[test]
fn timeout_kills_every_forked_replica() {
    require_ptrace!();
    let dir = tempfile::tempdir().unwrap();
    tmr()
        .args(["--fork", "--reruns", "0", "--timeout", "1s", "--", "sh", "-c"])
        .arg(r#"echo $$ > "$D/pid.$TMR_REPLICA"; exec "$HANG""#)
        .env("D", dir.path())
        .env("HANG", fixture("hang"))
        .assert()
        .code(124);
    for i in 0..3 {
        let pid = read_pid(&dir.path().join(format!("pid.{i}")));
        assert!(!alive(pid, "hang"), "replica {i} (pid {pid}) outlived tmr");
    }
}

#[test]
fn what_fork_cannot_do_is_refused_with_a_reason() {
    for (extra, why) in [
        (&["--checkpoint", "1s"][..], "--fork does not combine with --inject or --checkpoint"),
        (&["--sequential"][..], "--fork needs parallel replicas"),
        (&["-n", "11"][..], "at most 10 replicas"),
        (&["--launcher", "slurm"][..], "not with --launcher slurm"),
    ] {
        tmr().arg("--fork").args(extra).args(["--", "true"]).assert().code(125).stderr(contains(why));
    }
}

// ---------------------------------------------------------------------------------------------------------
// --fork --mem: each fork has a tracer of its own, and the page vote sees them all
// ---------------------------------------------------------------------------------------------------------

fn json(args: &[&str]) -> JsonRun {
    let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    tmr_json_report(None, &[], &args, "tmr-report")
}

fn pages(run: &JsonRun) -> (u64, u64, usize) {
    let m = &run.report["memory"];
    let divergent = m["divergent"].as_array().map_or(0, Vec::len);
    (m["pages_compared"].as_u64().unwrap_or(0), m["noise_pages"].as_u64().unwrap_or(u64::MAX), divergent)
}

#[test]
fn with_mem_every_forked_replica_is_traced_and_voted() {
    require_ptrace!();
    // A directory of its own, inside another one, so that nothing changes what ls reads between the
    // replicas: with `..` being the busy /tmp, whose mtime can pass the replicated "now", a replica that
    // sees that asks the clock again (GNU ls does) and its memory differs, --fork or not.
    let dir = tempfile::tempdir().unwrap();
    let listed = dir.path().join("listed");
    std::fs::create_dir(&listed).unwrap();
    for i in 0..50 {
        std::fs::write(listed.join(format!("file-{i}")), "x".repeat(i)).unwrap();
    }
    let run = json(&["--fork", "--mem", "--reruns", "0", "--", "ls", "-la", &listed.to_string_lossy()]);
    assert_eq!(run.code, 0, "{}\nvote {}\nmemory {}", run.stderr, run.report["vote"], run.report["memory"]);
    let replicas = run.report["memory"]["replicas"].as_array().expect("memory.replicas").clone();
    assert_eq!(replicas.len(), 3, "{}", run.report["memory"]);
    for r in &replicas {
        assert!(r["unavailable"].is_null(), "replica {} was not captured: {r}", r["replica"]);
    }
    let (compared, noise, divergent) = pages(&run);
    assert!(
        compared > 0 && noise == 0 && divergent == 0,
        "{compared} pages, {noise} noise, {divergent} divergent: {}",
        run.report["memory"]["divergent"]
    );
    // No tracer of a fork outlives it or counts as a process the replicas leaked.
    assert_eq!(run.report["leaked_processes"], 0, "{}", run.report);
}

#[test]
fn forks_agree_in_memory_where_exec_d_replicas_need_aslr_pinned() {
    require_ptrace!();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let lines: String = (0..5000).map(|i| format!("{}\n", (i * 7919) % 5003)).collect();
    std::fs::write(&input, lines).unwrap();
    let input = input.to_string_lossy();
    // Without the aslr and at-random steps (nor clock: sort reads no clock), exec'd replicas differ on
    // every page; forks do not. `-S 1M`: without it sort sizes its buffer from the free RAM, which
    // differs between replicas on a loaded machine (see tests/mem.rs), after the fork as before it.
    let det = "getrandom,tid,stack,rseq";
    let exec = json(&[
        "--mem",
        "--mem-det",
        det,
        "--compare",
        "exit,stdout",
        "--reruns",
        "0",
        "--",
        "sort",
        "-S",
        "1M",
        &input,
    ]);
    let (compared, noise, _) = pages(&exec);
    assert!(
        noise * 2 > compared,
        "the premise: exec'd replicas under ASLR disagree ({noise}/{compared} noise)"
    );
    let fork =
        json(&["--fork", "--mem", "--mem-det", det, "--reruns", "0", "--", "sort", "-S", "1M", &input]);
    assert_eq!(fork.code, 0, "{}", fork.stderr);
    let (compared, noise, divergent) = pages(&fork);
    assert!(
        compared > 0 && noise == 0 && divergent == 0,
        "{compared} pages, {noise} noise, {divergent} divergent"
    );
}

#[test]
fn with_mem_a_heap_fault_in_one_fork_is_found_there_and_outvoted() {
    require_ptrace!();
    let Some(python) =
        ["/usr/bin/python3", "/usr/local/bin/python3"].into_iter().find(|p| Path::new(p).exists())
    else {
        panic!("no python3 binary (not a wrapper script) at /usr/bin or /usr/local/bin");
    };
    // Replica 1 sets one byte of a 1 MiB buffer: the same output, a different page of memory. os._exit
    // keeps the buffer mapped at exit (Python's own exit would free it before the snapshot).
    let code = "import os; b = bytearray(1 << 20); b[12345] = os.environ['TMR_REPLICA'] == '1'; \
                print('ok', flush=True); os._exit(0)";
    let run = json(&["--fork", "--mem", "--reruns", "0", "--", python, "-c", code]);
    assert_eq!(run.code, 0, "{}\nvote {}\nmemory {}", run.stderr, run.report["vote"], run.report["memory"]);
    assert_eq!(run.stdout, "ok\n");
    let div = run.report["memory"]["divergent"].as_array().expect("memory.divergent").clone();
    assert!(!div.is_empty(), "the flipped byte is found: {}", run.report["memory"]);
    assert!(div.iter().all(|d| d["replica"] == 1), "only replica 1 diverges: {div:?}");
    assert_eq!(run.report["vote"]["result"], "majority", "{}", run.report["vote"]);
}

#[test]
fn a_loader_that_fails_before_the_entry_point_fails_as_without_fork() {
    require_ptrace!();
    // sort, asking for a library that does not exist: ld.so gives up before the entry point, so nothing
    // is forked and the other replicas are started (and fail) the ordinary way.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("sort-without-libc");
    let sort = std::fs::read("/usr/bin/sort").expect("/usr/bin/sort");
    let at = sort.windows(9).position(|w| w == b"libc.so.6").expect("sort needs libc.so.6");
    let mut patched = sort.clone();
    patched[at..at + 9].copy_from_slice(b"libX.so.6");
    std::fs::write(&bad, patched).unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for mem in [&[][..], &["--mem"][..]] {
        let out = tmr().arg("--fork").args(mem).args(["--reruns", "0", "--"]).arg(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(127), "{mem:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("libX.so.6") && err.contains("unanimous 3/3"), "{mem:?}: {err}");
    }
}

#[test]
fn sigint_to_tmr_stops_every_forked_replica_with_or_without_mem() {
    require_ptrace!();
    for mem in [&[][..], &["--mem"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tmr_std();
        cmd.arg("--fork").args(mem).args([
            "--",
            "sh",
            "-c",
            r#"echo $$ > "$D/pid.$TMR_REPLICA"; exec "$HANG" --ready-file "$D/ready.$TMR_REPLICA""#,
        ]);
        cmd.env("D", dir.path()).env("HANG", fixture("hang"));
        let mut running = spawn(&mut cmd, Input::Null);
        for i in 0..3 {
            wait_for_file_while(&dir.path().join(format!("ready.{i}")), &mut running);
        }
        let pids: Vec<i32> = (0..3).map(|i| read_pid(&dir.path().join(format!("pid.{i}")))).collect();
        send_signal(running.pid(), libc::SIGINT);
        let out = running.finish(TIMEOUT);
        assert_eq!(out.status.code(), Some(130), "{mem:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("interrupted by SIGINT"), "{mem:?}: {}", text(&out.stderr));
        for pid in pids {
            assert!(!alive(pid, "hang"), "{mem:?}: replica pid {pid} outlived tmr");
        }
    }
}
