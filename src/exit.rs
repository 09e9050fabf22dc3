//! The one table of exit codes tmr can choose. `--help`, the README and the code all read from here, so
//! they cannot drift apart. Must not decide *which* situation applies (that is the vote's and main's job).

/// No outcome had a strict majority: tmr cannot tell which replica is right.
pub const NO_MAJORITY: i32 = 120;
/// `--strict` was given and at least one replica disagreed with the majority.
pub const STRICT_DISAGREEMENT: i32 = 121;
/// The voted outcome is a timeout, like `timeout(1)`.
pub const TIMEOUT: i32 = 124;
/// tmr's own failure: bad usage, an I/O error, an unwritable report file. Not 2, which commands use.
pub const TMR_ERROR: i32 = 125;
/// The command exists but cannot be executed (permissions, a directory, a bad binary).
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// Base for "killed by signal N" (128+N), the shell's convention.
pub const SIGNAL_BASE: i32 = 128;

/// The exit-code table as shown by `--help` and the README.
pub const TABLE: &str = "\
EXIT STATUS
  <code>   the voted replicas' exit code (killed by signal N: 128+N)
  120      no strict majority: replicas disagree and no outcome won
  121      --strict and at least one replica disagreed with the majority
  122      --fail-on: the disagreement was classified as a failing class
           (tmr test: a test's class is one --fail-on names)
  124      the voted outcome is a timeout (--timeout)
  125      tmr's own error: bad usage, I/O error, unwritable report file,
           held-back output past --buffer-limit
  126      command found but not executable
  127      command not found
  129/130/143  tmr was stopped by SIGHUP/SIGINT/SIGTERM (forwarded to every replica)";

/// `tmr vote`'s codes: only what a vote over records can produce.
pub const VOTE_TABLE: &str = "\
EXIT STATUS
  <code>   the winning record's exit code (killed by signal N: 128+N)
  120      no strict majority: the records disagree and no outcome won
  121      --strict and at least one record disagreed with the majority
  125      tmr's own error: bad usage, an unreadable or malformed record, records of different
           commands, or a winner recorded without its output (over its --max-output)";

/// `tmr test`: some test's voted outcome is not a pass or a skip (or the runners did not finish).
pub const TESTS_FAILED: i32 = 1;

/// `--fail-on CLASS`: the class of the disagreement was asked to fail the run.
pub const FAILING_CLASS: i32 = 122;

/// The code for a process killed by `signal`.
pub fn for_signal(signal: i32) -> i32 {
    SIGNAL_BASE + signal
}

/// An error that ends tmr with a specific code (not found, not executable, bad usage) and a one-line message.
#[derive(Debug)]
pub struct ExitError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}
