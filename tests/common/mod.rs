//! Shared helpers for tmr's integration tests: locating tmr and the fixture programs, running processes
//! with every wait bounded, readiness handshakes through files, and checking that no process survived.
//!
//! Rules these helpers exist to enforce: no sleep is ever used to synchronise (only bounded polling for a
//! condition that a process signals on purpose), every wait has a deadline that fails the test instead of
//! hanging it, and nothing asserts on wall-clock time.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Deadline for one tmr run in the tests: far above what any run needs, so reaching it means a hang.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for a readiness handshake (a file a replica creates once it is set up).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Interval of the bounded polling loops (waiting for a file, or for a process to exit).
const POLL: Duration = Duration::from_millis(10);

/// Path of the tmr binary under test.
pub fn tmr_path() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tmr"))
}

/// `tmr` as an assert_cmd command, with the run bounded by [`TIMEOUT`].
pub fn tmr() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(tmr_path());
    cmd.timeout(TIMEOUT);
    // The tests may themselves run under tmr: never let its variables leak into the runs under test.
    for k in TMR_VARS {
        cmd.env_remove(k);
    }
    cmd
}

/// `tmr` as a plain std command (for spawning it and signalling it, or feeding it a file as stdin).
pub fn tmr_std() -> Command {
    let mut cmd = Command::new(tmr_path());
    for k in TMR_VARS {
        cmd.env_remove(k);
    }
    cmd
}

const TMR_VARS: [&str; 3] = ["TMR_REPLICA", "TMR_REPLICAS", "TMR_ROUND"];

/// Path of a fixture program (fixtures/src/bin/NAME.rs). The fixtures crate is built once per test
/// process, with the same profile (debug) and target directory as the tests.
pub fn fixture(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(build_fixtures);
    let path = dir.join(name);
    assert!(path.is_file(), "fixture {name} not found at {}", path.display());
    path
}

fn build_fixtures() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => manifest.join(PathBuf::from(t)),
        _ => manifest.join("target"),
    };
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "-p", "tmr-fixtures", "--bins"])
        .arg("--manifest-path")
        .arg(manifest.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .current_dir(manifest)
        .stdin(Stdio::null());
    // Other people may be building the workspace at the same time: waiting for cargo's lock is normal.
    let out = spawn(&mut cargo, Input::Null).finish(Duration::from_secs(900));
    assert!(
        out.status.success(),
        "building the fixtures failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug")
}

/// What a spawned process gets on stdin.
pub enum Input {
    /// /dev/null.
    Null,
    /// A pipe fed with these bytes, then closed.
    Bytes(Vec<u8>),
    /// An open file (a regular file on stdin, at its current offset, or a terminal).
    File(File),
    /// A pipe that is never written to and stays open until the process has finished: a producer that
    /// is still running.
    HeldOpen,
}

/// A process spawned with stdout and stderr captured by reader threads (so it never blocks on a full
/// pipe) and stdin fed by a writer thread.
pub struct Running {
    pub child: Child,
    out: Receiver<Vec<u8>>,
    err: Receiver<Vec<u8>>,
    /// The write end of stdin for [`Input::HeldOpen`], closed only when the run is over.
    held: Option<std::process::ChildStdin>,
}

fn reader(mut r: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Spawn `cmd` with captured stdout/stderr and the given stdin.
pub fn spawn(cmd: &mut Command, input: Input) -> Running {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let bytes = match input {
        Input::Null => {
            cmd.stdin(Stdio::null());
            None
        }
        Input::Bytes(b) => {
            cmd.stdin(Stdio::piped());
            Some(b)
        }
        Input::File(f) => {
            cmd.stdin(Stdio::from(f));
            None
        }
        Input::HeldOpen => {
            cmd.stdin(Stdio::piped());
            None
        }
    };
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {:?}: {e}", cmd.get_program()));
    let mut held = child.stdin.take();
    if let Some(bytes) = bytes {
        let mut stdin = held.take().expect("stdin is piped");
        // A reader that stops early (EPIPE) is not an error here; the test checks the outcome.
        thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let out = reader(child.stdout.take().expect("stdout is piped"));
    let err = reader(child.stderr.take().expect("stderr is piped"));
    Running { child, out, err, held }
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Has it exited (without reaping it)?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Wait (bounded) for the process to exit and for its output pipes to close. Kills it and fails the
    /// test when `timeout` passes first.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = wait_until(&mut self.child, deadline);
        let status = match status {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let out = self.out.try_recv().unwrap_or_default();
                let err = self.err.try_recv().unwrap_or_default();
                panic!(
                    "{:?} did not finish within {timeout:?}; stdout so far:\n{}\nstderr:\n{}",
                    self.child,
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                );
            }
        };
        let rest = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
        let stdout = self
            .out
            .recv_timeout(rest)
            .expect("stdout still open after the process exited (a leaked process holds it)");
        let stderr = self
            .err
            .recv_timeout(rest)
            .expect("stderr still open after the process exited (a leaked process holds it)");
        Output { status, stdout, stderr }
    }
}

/// Wait for `child` to exit until `deadline` (None: still running).
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// Run `cmd` to completion with the given stdin, bounded by [`TIMEOUT`].
pub fn run(cmd: &mut Command, input: Input) -> Output {
    spawn(cmd, input).finish(TIMEOUT)
}

/// Wait (bounded) until `path` exists; fails the test after [`READY_TIMEOUT`].
pub fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} did not appear within {READY_TIMEOUT:?}", path.display());
        thread::sleep(POLL);
    }
}

/// Like [`wait_for_file`], but also fails early when `running` exits before the file appears.
pub fn wait_for_file_while(path: &Path, running: &mut Running) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !path.exists() {
        assert!(!running.exited(), "tmr exited before {} appeared", path.display());
        assert!(Instant::now() < deadline, "{} did not appear within {READY_TIMEOUT:?}", path.display());
        thread::sleep(POLL);
    }
}

/// Read a pid written as decimal text (`echo $$ > file`, or the grandchild fixture's pidfile).
pub fn read_pid(path: &Path) -> i32 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read pidfile {}: {e}", path.display()));
    text.trim().parse().unwrap_or_else(|_| panic!("pidfile {} holds {text:?}", path.display()))
}

/// Is `pid` a live process (not a zombie) running a program whose command line mentions `name`? The name
/// check keeps a recycled pid from passing for our process.
pub fn alive(pid: i32, name: &str) -> bool {
    // kill(pid, 0) fails with ESRCH once the process is gone entirely.
    // SAFETY: signal 0 only checks for existence and permission; it sends nothing.
    if unsafe { libc::kill(pid, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the command name, which is in parentheses and may contain any
    // character, hence the last ')'.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.windows(name.len()).any(|w| w == name.as_bytes())
}

/// Send `sig` to `pid`.
pub fn send_signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A deterministic pseudo-random byte stream (xorshift), for stdin tests.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Assert that tmr's stderr is its own short error: every line starts with `tmr: `, the first states the
/// problem, and there is at most a second line pointing to --help (no usage dump).
pub fn assert_tmr_error(stderr: &[u8]) -> String {
    let s = text(stderr);
    let lines: Vec<&str> = s.lines().collect();
    assert!(!lines.is_empty(), "expected an error message on stderr");
    assert!(lines.len() <= 2, "error should be one line (+ a --help hint):\n{s}");
    assert!(lines.iter().all(|l| l.starts_with("tmr: ")), "every error line starts with 'tmr: ':\n{s}");
    if lines.len() == 2 {
        assert!(lines[1].contains("--help"), "second line is only a --help hint:\n{s}");
    }
    s
}

/// A new pseudo-terminal: (master, slave). Keeping the master open and never writing to it makes the
/// slave a terminal on which a read blocks forever.
pub fn open_pty() -> (File, File) {
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // SAFETY: plain libc calls on an fd we own; the name buffer is a live local of the stated size.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = File::from_raw_fd(master);
        use std::os::fd::AsRawFd;
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()), 0, "ptsname_r");
        let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&name)
            .unwrap_or_else(|e| panic!("opening {name}: {e}"));
        (master, slave)
    }
}

/// What `tmr … --format json -o FILE` did: its exit code, outputs, and the parsed report.
pub struct JsonRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: serde_json::Value,
}

/// `tmr [SUBCOMMAND] --format json -o FILE ARGS...` with extra environment variables, bounded at two
/// minutes, with an empty stdin. Checks the report's schema and that it states tmr's own exit code.
pub fn tmr_json_report(
    subcommand: Option<&str>,
    env: &[(&str, &str)],
    args: &[OsString],
    schema: &str,
) -> JsonRun {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("report.json");
    let mut cmd = tmr();
    if let Some(sub) = subcommand {
        cmd.arg(sub);
    }
    let out = cmd
        .envs(env.iter().copied())
        .timeout(Duration::from_secs(120))
        .arg("--format")
        .arg("json")
        .arg("-o")
        .arg(&file)
        .args(args)
        .write_stdin(Vec::new())
        .output()
        .expect("running tmr");
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let code = out.status.code().unwrap_or_else(|| panic!("tmr was killed ({}): {stderr}", out.status));
    let json = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("no report from tmr {args:?} (exit {code}): {e}\nstderr:\n{stderr}"));
    let report: serde_json::Value = serde_json::from_str(&json).expect("the report is JSON");
    assert_eq!(report["schema"], schema, "{report}");
    assert_eq!(report["exit_code"].as_i64(), Some(code as i64), "the report states tmr's exit code");
    JsonRun { code, stdout, stderr, report }
}

/// tmr's options, `--`, then the command.
pub fn with(opts: &[&str], command: Vec<OsString>) -> Vec<OsString> {
    let mut v: Vec<OsString> = opts.iter().map(OsString::from).collect();
    v.push("--".into());
    v.extend(command);
    v
}

/// Is ptrace usable here (memory voting, fault injection)? Asked once per test binary: a `--mem` run of
/// `true` whose replicas report `unavailable` because ptrace was refused means it is not.
pub fn ptrace_ok() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let args: Vec<OsString> =
            ["--mem", "--reruns", "0", "--", "true"].iter().map(OsString::from).collect();
        let ran = tmr_json_report(None, &[], &args, "tmr-report");
        let replicas = ran.report["memory"]["replicas"].as_array().cloned().unwrap_or_default();
        match replicas.iter().find_map(|r| r["unavailable"].as_str().map(str::to_string)) {
            Some(w) if w.contains("ptrace") => {
                eprintln!("note: ptrace is refused here, so --mem and --inject are not testable: {w}");
                false
            }
            _ => true,
        }
    })
}

/// Skip the test where ptrace is refused, but only when skipping was asked for: on this project's
/// machines ptrace works, so a refusal in CI means the `--mem`/`--inject` suites would test nothing while
/// passing. Two variables control it:
/// - `TMR_TEST_ALLOW_SKIP=1`: skip (return early) instead of failing when ptrace is refused;
/// - `TMR_TEST_SKIP_LOG=PATH`: on each skip, append one line with the test's name to PATH, so a runner
///   (`.ci/run`) can count and print the skips.
///
/// Without `TMR_TEST_ALLOW_SKIP=1`, a refused ptrace fails the test.
#[allow(unused_macros)]
macro_rules! require_ptrace {
    () => {
        if !ptrace_ok() {
            fn here() {}
            let name = std::any::type_name_of_val(&here);
            let name = name.strip_suffix("::here").unwrap_or(name);
            skip_without_ptrace(name);
            return;
        }
    };
}

/// What [`require_ptrace!`] does when ptrace is refused: fail, or (opted in) log the skip.
pub fn skip_without_ptrace(test: &str) {
    let allowed = std::env::var_os("TMR_TEST_ALLOW_SKIP").is_some_and(|v| v == "1");
    assert!(
        allowed,
        "{test}: ptrace is refused here, so this --mem/--inject test cannot run; set TMR_TEST_ALLOW_SKIP=1 \
         to skip it instead"
    );
    eprintln!("skipped: {test}: ptrace is not permitted in this environment");
    if let Some(log) = std::env::var_os("TMR_TEST_SKIP_LOG").filter(|v| !v.is_empty()) {
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap_or_else(|e| {
                panic!("{test}: opening TMR_TEST_SKIP_LOG {}: {e}", log.to_string_lossy())
            });
        // One write of the whole line: concurrent tests append without interleaving.
        f.write_all(format!("{test}\n").as_bytes()).expect("appending to TMR_TEST_SKIP_LOG");
    }
}

/// The `checkpointee` fixture's argv (tests/checkpoint.rs, tests/scrub.rs).
pub fn checkpointee(args: &[&str]) -> Vec<OsString> {
    let mut v = vec![fixture("checkpointee").into_os_string()];
    v.extend(args.iter().map(OsString::from));
    v
}

/// Each replica's checkpoint log in a JSON report.
pub fn checkpoint_logs(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["memory"]["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("no memory replicas in {report}"))
        .iter()
        .map(|r| r["checkpoints"].clone())
        .collect()
}

/// The sum `checkpointee` prints when nothing crashes: run alone (no TMR_REPLICA), it does not fault.
pub fn checkpointee_sum() -> String {
    let out = Command::new(fixture("checkpointee"))
        .args(["crash-once", "/nonexistent/marker"])
        .env_remove("TMR_REPLICA")
        .output()
        .expect("running checkpointee");
    assert!(out.status.success(), "{out:?}");
    text(&out.stdout)
}
