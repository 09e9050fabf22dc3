//! What one replica produced, reduced to facts that can be compared: how it ended and the digests of its
//! output streams. Pure data: must not touch processes or files.

use serde::Serialize;

use crate::digest::Digest;
use crate::exit;

/// How a replica ended. `TimedOut` wins over the signal that actually stopped it: the cause is the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    TimedOut,
    /// exec(2) failed after fork, with this errno.
    FailedToStart {
        errno: i32,
    },
}

impl Outcome {
    /// The exit code tmr passes on when this outcome wins the vote.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Exited { code } => code,
            Outcome::Signaled { signal } => exit::for_signal(signal),
            Outcome::TimedOut => exit::TIMEOUT,
            // The file was found before any replica started, so ENOENT from exec means its `#!`
            // interpreter or its dynamic loader is missing: not executable (126), as a shell reports it.
            Outcome::FailedToStart { .. } => exit::NOT_EXECUTABLE,
        }
    }

    pub fn is_success(self) -> bool {
        self == Outcome::Exited { code: 0 }
    }

    /// Short human text: `exit 3`, `SIGSEGV`, `timeout`, `exec failed (ENOENT)`.
    pub fn describe(self) -> String {
        match self {
            Outcome::Exited { code } => format!("exit {code}"),
            Outcome::Signaled { signal } => signal_name(signal),
            Outcome::TimedOut => "timeout".to_string(),
            Outcome::FailedToStart { errno } if errno == libc::ENOENT => {
                "exec failed: bad interpreter or loader (ENOENT)".to_string()
            }
            Outcome::FailedToStart { errno } => {
                format!("exec failed: {}", std::io::Error::from_raw_os_error(errno))
            }
        }
    }
}

/// `SIGSEGV` for 11; `signal 99` for numbers the OS does not name.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// One output stream: its raw length and the digest ([`crate::digest`]) of the bytes that are compared
/// (after masks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamSummary {
    pub len: u64,
    pub digest: Digest,
}

impl StreamSummary {
    pub fn hex(&self) -> String {
        crate::digest::hex(&self.digest)
    }
}

/// Which fields take part in the vote (`--compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Compare {
    pub exit: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Memory pages (`--mem`), voted page by page.
    pub mem: bool,
}

impl Default for Compare {
    fn default() -> Self {
        Compare { exit: true, stdout: true, stderr: false, mem: false }
    }
}

impl Compare {
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.exit {
            v.push("exit");
        }
        if self.stdout {
            v.push("stdout");
        }
        if self.stderr {
            v.push("stderr");
        }
        if self.mem {
            v.push("mem");
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub outcome: Outcome,
    pub stdout: StreamSummary,
    pub stderr: StreamSummary,
    /// Digest of this replica's divergent memory pages (equal for all replicas that agree with the
    /// page-majority), when memory is voted.
    pub mem: Option<[u8; 32]>,
}

/// The compared fields of a fingerprint; fields left out by `--compare` are `None`, so two keys are equal
/// exactly when the replicas agree on everything that counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    outcome: Option<Outcome>,
    stdout: Option<Digest>,
    stderr: Option<Digest>,
    mem: Option<[u8; 32]>,
}

impl Fingerprint {
    pub fn key(&self, compare: Compare) -> Key {
        // Outputs of a replica that never started or was killed for hanging are not evidence of anything:
        // they still count through the outcome, which differs from every finished replica's.
        Key {
            outcome: compare.exit.then_some(self.outcome),
            stdout: compare.stdout.then_some(self.stdout.digest),
            stderr: compare.stderr.then_some(self.stderr.digest),
            mem: if compare.mem { self.mem } else { None },
        }
    }

    /// Which compared fields differ between two fingerprints, in report order.
    pub fn differing_fields(&self, other: &Fingerprint, compare: Compare) -> Vec<&'static str> {
        let mut v = Vec::new();
        if compare.exit && self.outcome != other.outcome {
            v.push("exit");
        }
        if compare.stdout && self.stdout.digest != other.stdout.digest {
            v.push("stdout");
        }
        if compare.stderr && self.stderr.digest != other.stderr.digest {
            v.push("stderr");
        }
        if compare.mem && self.mem != other.mem {
            v.push("mem");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(code: i32, out: u8) -> Fingerprint {
        let s = |b| StreamSummary { len: 1, digest: [b; 16] };
        Fingerprint { outcome: Outcome::Exited { code }, stdout: s(out), stderr: s(0), mem: None }
    }

    #[test]
    fn exit_codes_follow_the_table() {
        assert_eq!(Outcome::Exited { code: 3 }.exit_code(), 3);
        assert_eq!(Outcome::Signaled { signal: 11 }.exit_code(), 139);
        assert_eq!(Outcome::TimedOut.exit_code(), 124);
        // The file was found up front: ENOENT at exec is a missing interpreter, as bash reports it.
        assert_eq!(Outcome::FailedToStart { errno: libc::ENOENT }.exit_code(), 126);
        assert_eq!(Outcome::FailedToStart { errno: libc::EACCES }.exit_code(), 126);
    }

    #[test]
    fn keys_ignore_fields_left_out_of_the_comparison() {
        let only_exit = Compare { exit: true, stdout: false, stderr: false, mem: false };
        assert_eq!(fp(0, 1).key(only_exit), fp(0, 2).key(only_exit));
        assert_ne!(fp(0, 1).key(Compare::default()), fp(0, 2).key(Compare::default()));
        assert_eq!(fp(0, 1).differing_fields(&fp(1, 2), Compare::default()), vec!["exit", "stdout"]);
    }

    #[test]
    fn signals_have_names() {
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(Outcome::Signaled { signal: 9 }.describe(), "SIGKILL");
    }
}
