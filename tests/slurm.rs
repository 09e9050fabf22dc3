//! `--launcher slurm` against a real Slurm: the private 3-node cluster of `scripts/slurm-local` (n1, n2,
//! n3 on this machine), which `.ci/run` starts before the tests and stops after them. A test that finds no
//! cluster fails, unless `TMR_TEST_ALLOW_SKIP=1` (then it is logged to `TMR_TEST_SKIP_LOG`, as
//! `require_ptrace!` does). The no-Slurm error needs no cluster and always runs.
//!
//! The tests share one cluster and one of them kills a node, so they take a lock and run one at a time.
//! The failover test starts a cluster of its own (a backup controller, its own directory and ports) and
//! needs root and `ip netns`; it takes the lock too, so as not to load the others' daemons.
//! Every wait is bounded; readiness is signalled by files the replicas create.

mod common;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// One test at a time on the shared cluster.
static CLUSTER: Mutex<()> = Mutex::new(());

/// A node failure surfaces 14–18 s after the node dies (docs/slurm-notes.md, SlurmdTimeout=5); tmr then
/// reruns the replica. Far above that, so reaching it means a hang.
const NODE_FAILURE_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn slurm_local() -> Command {
    let mut cmd = Command::new(repo().join("scripts/slurm-local"));
    let conf = slurm_conf();
    // The cluster's directory holds etc/slurm.conf: found from SLURM_CONF when only that is set.
    if std::env::var_os("TMR_SLURM_DIR").is_none() {
        if let Some(dir) = conf.parent().and_then(Path::parent) {
            cmd.env("TMR_SLURM_DIR", dir);
        }
    }
    cmd.env("SLURM_CONF", conf);
    cmd
}

fn slurm_conf() -> PathBuf {
    match std::env::var_os("SLURM_CONF").filter(|c| !c.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => {
            let dir = std::env::var_os("TMR_SLURM_DIR").unwrap_or_else(|| "/tmp/tmr-slurm".into());
            PathBuf::from(dir).join("etc/slurm.conf")
        }
    }
}

/// Is the local cluster up (`slurm-local status` exits 0)?
fn cluster_up() -> bool {
    slurm_conf().is_file() && run(slurm_local().arg("status"), Input::Null).status.success()
}

/// Skip (opted in, logged) or fail when there is no cluster; otherwise hold the cluster lock.
macro_rules! require_slurm {
    () => {{
        let guard = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        if !cluster_up() {
            fn here() {}
            let name = std::any::type_name_of_val(&here);
            skip_without_slurm(name.strip_suffix("::here").unwrap_or(name));
            return;
        }
        guard
    }};
}

fn skip_without_slurm(test: &str) {
    let allowed = std::env::var_os("TMR_TEST_ALLOW_SKIP").is_some_and(|v| v == "1");
    assert!(
        allowed,
        "{test}: no Slurm cluster is running (start one with `scripts/slurm-local start` and export the \
         SLURM_CONF it prints), or set TMR_TEST_ALLOW_SKIP=1 to skip"
    );
    eprintln!("skipped: {test}: no Slurm cluster");
    if let Some(log) = std::env::var_os("TMR_TEST_SKIP_LOG").filter(|v| !v.is_empty()) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("skip log");
        f.write_all(format!("{test}\n").as_bytes()).expect("appending to TMR_TEST_SKIP_LOG");
    }
}

/// tmr with the cluster's configuration, outside any allocation.
fn slurm_env() -> Vec<(String, String)> {
    vec![("SLURM_CONF".into(), slurm_conf().to_string_lossy().into_owned())]
}

fn tmr_slurm() -> Command {
    let mut cmd = tmr_std();
    for k in ["SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NODELIST", "SLURM_NODELIST"] {
        cmd.env_remove(k);
    }
    cmd.envs(slurm_env());
    cmd
}

fn json_report(args: &[&str], command: &[&str]) -> JsonRun {
    let env = slurm_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut opts = vec!["--launcher", "slurm"];
    opts.extend_from_slice(args);
    tmr_json_report(None, &env, &with(&opts, command.iter().map(OsString::from).collect()), "tmr-report")
}

fn nodes_of(report: &serde_json::Value) -> Vec<String> {
    let runs = report["runs"].as_array().expect("runs");
    runs.iter().filter(|r| r["round"] == 0).map(|r| r["node"].as_str().unwrap_or("-").to_string()).collect()
}

#[test]
fn three_replicas_land_on_three_nodes_and_the_report_names_them() {
    let _cluster = require_slurm!();
    let ran = json_report(&["--reruns", "0"], &["sh", "-c", "echo $SLURMD_NODENAME >&2; echo same"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, "same\n");
    assert_eq!(nodes_of(&ran.report), ["n1", "n2", "n3"], "{}", ran.report);
    let slurm = &ran.report["slurm"];
    assert_eq!(slurm["replica_nodes"], serde_json::json!(["n1", "n2", "n3"]), "{slurm}");
    assert_eq!(slurm["own_allocation"], true);
    assert_eq!(slurm["node_failures"], serde_json::json!([]));

    // The human summary names them too.
    let out = run(tmr_slurm().args(["--launcher", "slurm", "--", "true"]), Input::Null);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary = text(&out.stderr);
    assert!(summary.contains("replica 0 on n1, replica 1 on n2, replica 2 on n3"), "{summary}");
}

#[test]
fn output_is_byte_exact_and_the_exit_code_travels_through_srun() {
    let _cluster = require_slurm!();
    // Binary, NULs, no trailing newline, through stdin → srun → the task → srun → tmr.
    let mut input = noise(100_000);
    input.extend_from_slice(b"\0end without newline");
    let out = run(
        tmr_slurm().args(["--launcher", "slurm", "--reruns", "0", "--", "sh", "-c", "cat; exit 7"]),
        Input::Bytes(input.clone()),
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(out.stdout == input, "stdout differs from stdin ({} vs {} bytes)", out.stdout.len(), input.len());
    // A signal death is 128+N through srun, as locally.
    let out = run(
        tmr_slurm().args(["--launcher", "slurm", "--reruns", "0", "--", "sh", "-c", "kill -SEGV $$"]),
        Input::Null,
    );
    assert_eq!(out.status.code(), Some(139), "{}", text(&out.stderr));
}

#[test]
fn without_slurm_it_is_a_one_line_error_at_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let bogus = dir.path().join("slurm.conf");
    std::fs::write(&bogus, "this is = not a slurm.conf\n").expect("writing the bogus config");
    let missing = dir.path().join("missing.conf");
    let cases: Vec<(&str, Vec<(&str, OsString)>)> = vec![
        ("a config Slurm cannot read", vec![("SLURM_CONF", bogus.clone().into_os_string())]),
        ("a config that does not exist", vec![("SLURM_CONF", missing.into_os_string())]),
        ("no srun on PATH", vec![("PATH", dir.path().as_os_str().to_owned())]),
    ];
    for (what, env) in cases {
        let mut cmd = tmr_std();
        cmd.envs(env).args(["--launcher", "slurm", "--", "/bin/true"]);
        // Bounded by run()'s deadline: an srun or scontrol left to retry would take a minute.
        let out = run(&mut cmd, Input::Null);
        assert_eq!(out.status.code(), Some(125), "{what}: {}", text(&out.stderr));
        let line = assert_tmr_error(&out.stderr);
        assert!(line.contains("--launcher slurm"), "{what}: {line}");
        assert!(out.stdout.is_empty(), "{what}");
    }
}

/// Brings the killed node back whatever the test's outcome.
struct RestoreNode(&'static str);

impl Drop for RestoreNode {
    fn drop(&mut self) {
        let out = run(slurm_local().args(["restart-node", self.0]), Input::Null);
        if !out.status.success() && !std::thread::panicking() {
            panic!("restart-node {} failed: {}", self.0, text(&out.stderr));
        }
    }
}

/// Wait (bounded) until `n` files named `ready-*` are in `dir`.
fn wait_for_ready(dir: &Path, n: usize, tmr: &mut Running) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ready = std::fs::read_dir(dir)
            .expect("reading the handshake dir")
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("ready-")))
            .count();
        if ready >= n {
            return;
        }
        assert!(!tmr.exited(), "tmr exited before {n} replicas were ready");
        assert!(Instant::now() < deadline, "{n} replicas not ready within {READY_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failed_node_is_not_an_outcome_its_replica_is_rescheduled() {
    let _cluster = require_slurm!();
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();
    // Searchable by the step's user (root here, but tempdir is 0700 by default).
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let report = d.join("report.json");
    // Each replica says it started, then waits (bounded) for `go`: replica 1's node dies meanwhile.
    let script = format!(
        "echo start; touch {d}/ready-$SLURMD_NODENAME-$$; i=0; \
         while [ ! -e {d}/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; echo end",
        d = d.display()
    );
    let mut cmd = tmr_slurm();
    cmd.args(["--launcher", "slurm", "--format", "json", "-o"])
        .arg(&report)
        .args(["--", "sh", "-c", &script]);
    let mut tmr = spawn(&mut cmd, Input::Null);
    wait_for_ready(d, 3, &mut tmr);
    let restore = RestoreNode("n2");
    let killed_at = Instant::now();
    let killed = run(slurm_local().args(["kill-node", "n2"]), Input::Null);
    assert!(killed.status.success(), "kill-node: {}", text(&killed.stderr));
    std::fs::write(d.join("go"), "").expect("go");
    let out = tmr.finish(NODE_FAILURE_TIMEOUT);
    // Reported, not asserted: how long Slurm took to declare the node dead, plus the rerun.
    eprintln!("node failure to voted result: {:.1}s", killed_at.elapsed().as_secs_f64());
    drop(restore);

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "start\nend\n", "the voted output is delivered");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    let slurm = &report["slurm"];
    let failures = slurm["node_failures"].as_array().expect("node_failures");
    assert_eq!(failures.len(), 1, "{slurm}");
    assert_eq!(failures[0]["node"], "n2");
    assert_eq!(failures[0]["replica"], 1);
    let moved_to = failures[0]["rescheduled_on"].as_str().expect("rescheduled_on");
    assert!(moved_to == "n1" || moved_to == "n3", "{slurm}");
    assert_eq!(slurm["failed_nodes"], serde_json::json!(["n2"]));
    let rerun = report["runs"].as_array().unwrap().iter().find(|r| r["replica"] == 1).cloned().unwrap();
    assert_eq!(rerun["rescheduled_from"], "n2", "{rerun}");
    assert_eq!(rerun["node"], moved_to);
    // The failure is not an outcome: all three agree and nothing is flaky.
    assert_eq!(report["vote"]["result"], "unanimous", "{report}");
    assert_eq!(report["classification"]["class"], "none", "{report}");
    // The ready files: three first attempts plus the rerun.
    let started = std::fs::read_dir(d)
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("ready-")));
    assert_eq!(started.count(), 4);
    assert!(cluster_up(), "n2 is back after the test");
}

#[test]
fn a_hunt_runs_round_robin_over_the_nodes() {
    let _cluster = require_slurm!();
    let env = slurm_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let flaky = fixture("flaky").into_os_string();
    let args = with(&["--launcher", "slurm", "--runs", "9", "-j", "3"], vec![flaky, "0.5".into()]);
    let ran = tmr_json_report(Some("hunt"), &env, &args, "tmr-hunt-report");
    assert!(ran.code == 0 || ran.code == 1, "{}", ran.stderr);
    let per_node = ran.report["slurm"]["per_node"].as_array().expect("per_node").clone();
    let mut nodes: Vec<(String, u64)> = per_node
        .iter()
        .map(|t| (t["node"].as_str().unwrap().to_string(), t["runs"].as_u64().unwrap()))
        .collect();
    nodes.sort();
    assert_eq!(nodes, [("n1".into(), 3), ("n2".into(), 3), ("n3".into(), 3)], "{}", ran.report);
}

#[test]
fn inside_an_allocation_it_uses_the_allocation() {
    let _cluster = require_slurm!();
    let conf = slurm_conf();
    let mut salloc = Command::new("salloc");
    salloc.env("SLURM_CONF", &conf).args(["--no-shell", "--immediate=10", "-N3", "-J", "tmr-test"]);
    let out = run(&mut salloc, Input::Null);
    let said = text(&out.stderr);
    let job = said.split("Granted job allocation ").nth(1).map(|s| s.trim().to_string());
    let job = job.unwrap_or_else(|| panic!("salloc: {said}"));
    struct Cancel(String, PathBuf);
    impl Drop for Cancel {
        fn drop(&mut self) {
            let mut cmd = Command::new("scancel");
            cmd.env("SLURM_CONF", &self.1).arg(&self.0);
            run(&mut cmd, Input::Null);
        }
    }
    let _cancel = Cancel(job.clone(), conf.clone());
    let mut cmd = tmr_slurm();
    cmd.env("SLURM_JOB_ID", &job).args(["--launcher", "slurm", "--format", "json", "--", "sh", "-c"]);
    cmd.arg("echo $SLURM_JOB_ID");
    let out = run(&mut cmd, Input::Null);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{job}\n"), "every step is in the caller's job");
    let report: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON report");
    assert_eq!(report["slurm"]["job"], job.as_str());
    assert_eq!(report["slurm"]["own_allocation"], false);
    assert_eq!(nodes_of(&report), ["n1", "n2", "n3"]);
}

#[test]
fn a_node_that_keeps_losing_the_vote_is_called_out() {
    let _cluster = require_slurm!();
    // A "bad machine": only n2 computes a different answer, in every round.
    let script = "if [ $SLURMD_NODENAME = n2 ]; then echo bad; else echo good; fi";
    let ran = json_report(&["--reruns", "3"], &["sh", "-c", script]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, "good\n");
    let suspect = &ran.report["slurm"]["suspect"];
    assert_eq!(suspect["node"], "n2", "{}", ran.report);
    assert_eq!(suspect["disagreeing_rounds"], suspect["minority_rounds"]);
    assert!(suspect["disagreeing_rounds"].as_u64().unwrap() >= 2, "{suspect}");
    // In the human summary too.
    let out = run(
        tmr_slurm().args(["--launcher", "slurm", "--reruns", "3", "--", "sh", "-c", script]),
        Input::Null,
    );
    let summary = text(&out.stderr);
    assert!(summary.contains("disagreeing rounds: suspect node n2"), "{summary}");
}

#[test]
fn a_script_without_a_shebang_runs_through_srun_as_it_does_locally() {
    let _cluster = require_slurm!();
    let dir = tempfile::tempdir().expect("a temp dir");
    let script = dir.path().join("plain.sh");
    std::fs::write(&script, "echo from a plain script\n").expect("writing the script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let out = run(tmr_slurm().args(["--launcher", "slurm", "--reruns", "0", "--"]).arg(&script), Input::Null);
    // slurmstepd's execve alone fails with ENOEXEC (exit 8); locally execvp falls back to /bin/sh.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from a plain script\n");
}

/// Port of the failover test's own cluster (the nodes take the next three): apart from `.ci/run`'s
/// (16917), the default (16817) and `scripts/slurm-local-test`'s (17817).
const FAILOVER_PORT: &str = "17017";
/// Its veth subnet, apart from the default one that a user's backup cluster may hold.
const FAILOVER_NET: &str = "10.250.117";
/// Its `SlurmctldTimeout`: above tmr's usual 20 s of retries, so that only a window sized for the
/// takeover (SlurmctldTimeout × 4/3 plus a margin) lets the run survive.
const FAILOVER_SLURMCTLD_TIMEOUT: &str = "20";
/// Bound of the takeover (measured 23 s with SlurmctldTimeout=20): reaching it means it never happens.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(90);

/// Fail, or skip when opted in (logged like [`skip_without_slurm`]), for a missing prerequisite.
fn skip_because(test: &str, why: &str) {
    let allowed = std::env::var_os("TMR_TEST_ALLOW_SKIP").is_some_and(|v| v == "1");
    assert!(allowed, "{test}: {why}, or set TMR_TEST_ALLOW_SKIP=1 to skip");
    eprintln!("skipped: {test}: {why}");
    if let Some(log) = std::env::var_os("TMR_TEST_SKIP_LOG").filter(|v| !v.is_empty()) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("skip log");
        f.write_all(format!("{test}\n").as_bytes()).expect("appending to TMR_TEST_SKIP_LOG");
    }
}

/// Why a cluster with a backup controller cannot run here, if it cannot: `slurm-local` needs root,
/// Slurm installed (a test does not install it) and network namespaces (`ip netns`).
fn failover_unavailable() -> Option<String> {
    if text(&run(Command::new("id").arg("-u"), Input::Null).stdout).trim() != "0" {
        return Some("needs root (slurm-local runs slurmd and a namespaced backup slurmctld)".into());
    }
    let found = |p: &str| run(Command::new("sh").args(["-c", &format!("command -v {p}")]), Input::Null);
    for program in ["slurmctld", "slurmd", "srun", "scontrol", "munged", "ip", "unshare"] {
        if !found(program).status.success() {
            return Some(format!("{program} is not installed"));
        }
    }
    let probe = format!("tmrprobe{}", std::process::id());
    let added = run(Command::new("ip").args(["netns", "add", &probe]), Input::Null);
    if !added.status.success() {
        return Some(format!("`ip netns add` does not work here: {}", text(&added.stderr).trim()));
    }
    run(Command::new("ip").args(["netns", "del", &probe]), Input::Null);
    None
}

/// A private cluster with a backup controller, stopped whatever the test's outcome.
struct FailoverCluster {
    dir: PathBuf,
}

impl FailoverCluster {
    fn script(&self, arg: &str) -> Command {
        let mut cmd = Command::new(repo().join("scripts/slurm-local"));
        cmd.arg(arg)
            .env("TMR_SLURM_DIR", &self.dir)
            .env("TMR_SLURM_PORT", FAILOVER_PORT)
            .env("TMR_SLURM_BACKUP", "1")
            .env("TMR_SLURM_BACKUP_NET", FAILOVER_NET)
            .env("TMR_SLURM_SLURMCTLD_TIMEOUT", FAILOVER_SLURMCTLD_TIMEOUT)
            .env_remove("TMR_SLURM_SLURMD_TIMEOUT")
            // A start that fails says why (its logs) before `run`'s 60 s deadline would cut it off.
            .env("TMR_SLURM_WAIT", "40")
            .env("SLURM_CONF", self.conf());
        cmd
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("etc/slurm.conf")
    }

    /// `scontrol ping`, bounded by `run`'s deadline and by scontrol's own `timeout`.
    fn ping(&self) -> String {
        let mut cmd = Command::new("timeout");
        cmd.args(["10", "scontrol", "ping"]).env("SLURM_CONF", self.conf());
        text(&run(&mut cmd, Input::Null).stdout)
    }
}

impl Drop for FailoverCluster {
    fn drop(&mut self) {
        let out = run(&mut self.script("stop"), Input::Null);
        if !out.status.success() && !std::thread::panicking() {
            panic!("slurm-local stop failed: {}", text(&out.stderr));
        }
    }
}

#[test]
fn a_run_survives_the_primary_controllers_death_through_the_backup() {
    fn here() {}
    let name = std::any::type_name_of_val(&here);
    let test = name.strip_suffix("::here").unwrap_or(name);
    if let Some(why) = failover_unavailable() {
        skip_because(test, &why);
        return;
    }
    // Not the shared cluster, but not beside its tests either: on two cores their daemons and this
    // cluster's would slow each other (a node still `completing` fails the next test's allocation).
    let _one_at_a_time = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().expect("a temp dir");
    let d = scratch.path();
    // munged (user munge) and the steps must reach the cluster's and the handshake's files.
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let cluster = FailoverCluster { dir: d.join("cluster") };
    let started = run(&mut cluster.script("start"), Input::Null);
    assert!(
        started.status.success(),
        "slurm-local start: {}{}",
        text(&started.stdout),
        text(&started.stderr)
    );
    let ping = cluster.ping();
    assert!(ping.contains("(primary)") && ping.contains("(backup)"), "two controllers: {ping}");

    let hs = d.join("handshake");
    std::fs::create_dir(&hs).expect("handshake dir");
    let report = d.join("report.json");
    // Each replica says it started, then waits (bounded) for `go`.
    let script = format!(
        "touch {hs}/ready-$SLURMD_NODENAME; i=0; \
         while [ ! -e {hs}/go ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; echo done",
        hs = hs.display()
    );
    let mut cmd = tmr_std();
    for k in ["SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NODELIST", "SLURM_NODELIST"] {
        cmd.env_remove(k);
    }
    cmd.env("SLURM_CONF", cluster.conf())
        .args(["--launcher", "slurm", "--format", "json", "-o"])
        .arg(&report)
        .args(["--", "sh", "-c", &script]);
    let mut tmr = spawn(&mut cmd, Input::Null);
    wait_for_ready(&hs, 3, &mut tmr);

    let pid = read_pid(&cluster.dir.join("run/slurmctld.pid"));
    let killed_at = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL to the primary slurmctld");
    // At once, not after the takeover: the steps end while no controller answers, so tmr's node check
    // after each step has to wait for the backup. (Once the backup rules, squeue answers at once.)
    std::fs::write(hs.join("go"), "").expect("go");

    // The backup's log says when it took over; `scontrol ping` then finds the primary down.
    let backup_log = cluster.dir.join("backup/log/slurmctld.log");
    let took_over =
        || std::fs::read_to_string(&backup_log).is_ok_and(|l| l.contains("Running as primary controller"));
    while !took_over() {
        assert!(
            killed_at.elapsed() < TAKEOVER_TIMEOUT,
            "the backup did not take over within {TAKEOVER_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reported, not asserted.
    eprintln!("primary killed to backup in charge: {:.1}s", killed_at.elapsed().as_secs_f64());
    let ping = cluster.ping();
    assert!(ping.contains("(primary) at") && ping.contains("is DOWN"), "{ping}");
    assert!(ping.lines().any(|l| l.contains("(backup)") && l.contains("is UP")), "{ping}");

    let out = tmr.finish(TAKEOVER_TIMEOUT + TIMEOUT);
    eprintln!("primary killed to tmr's exit: {:.1}s", killed_at.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "done\n", "the voted output, once");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    assert_eq!(report["vote"]["result"], "unanimous", "{report}");
    assert_eq!(report["classification"]["class"], "none", "{report}");
    let slurm = &report["slurm"];
    assert_eq!(slurm["replica_nodes"], serde_json::json!(["n1", "n2", "n3"]), "{slurm}");
    assert_eq!(slurm["node_failures"], serde_json::json!([]), "a dead controller is no node failure");
    let ready = std::fs::read_dir(&hs).unwrap().filter(|e| e.as_ref().is_ok_and(|e| e.file_name() != "go"));
    assert_eq!(ready.count(), 3, "no replica ran twice");
    drop(cluster);
}
