//! Voting across machines without a scheduler: `tmr record` runs a command once and writes what it did
//! (outcome, output digests, and the output itself up to a bound) to a file; `tmr vote` reads such files
//! from several machines (three CI runners in a matrix, say) and votes on them as a run votes on its
//! replicas, with the same exit codes. The format, its validation and the vote are pure; the one process
//! part is [`record`], which runs the command with its output passed through live.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::exit;
use crate::fingerprint::Outcome;
use crate::vote::vote;

pub const SCHEMA: &str = "tmr-record";
pub const VERSION: u32 = 1;
/// Output kept per stream unless `--max-output` says otherwise; beyond it only the digest is kept.
pub const DEFAULT_MAX_OUTPUT: u64 = 16 << 20;
/// A record file is never read past this (two streams at the largest `--max-output`, hex-encoded).
const MAX_FILE: u64 = 1 << 30;
/// Records one vote reads at most.
pub const MAX_RECORDS: usize = 1000;

/// One stream as recorded: its length and digest, and its bytes when they fit the bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedStream {
    pub bytes: u64,
    pub blake3: String,
    /// The bytes, when valid UTF-8 and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The bytes as hex, when kept but not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

impl RecordedStream {
    fn new(data: &[u8], len: u64, digest: blake3::Hash, kept: bool) -> Self {
        let (text, hex) = match (kept, std::str::from_utf8(data)) {
            (false, _) => (None, None),
            (true, Ok(t)) => (Some(t.to_owned()), None),
            (true, Err(_)) => (None, Some(hex(data))),
        };
        RecordedStream { bytes: len, blake3: digest.to_hex().to_string(), text, hex }
    }

    /// The recorded bytes, if they were kept.
    pub fn data(&self) -> Result<Option<Vec<u8>>> {
        if let Some(t) = &self.text {
            return Ok(Some(t.as_bytes().to_vec()));
        }
        let Some(h) = &self.hex else { return Ok(None) };
        if h.len() % 2 != 0 {
            bail!("odd-length hex output");
        }
        let digit = |c: u8| (c as char).to_digit(16).context("a non-hex digit in the output");
        let data: Result<Vec<u8>> =
            h.as_bytes().chunks(2).map(|p| Ok((digit(p[0])? * 16 + digit(p[1])?) as u8)).collect();
        data.map(Some)
    }
}

/// Lower-case hex, two digits a byte (a record keeps up to `--max-output` of it: no allocation per byte).
fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * data.len());
    for &b in data {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// How the recorded run ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RecordedOutcome {
    Exit { code: i32 },
    Signal { signal: i32 },
}

impl RecordedOutcome {
    pub fn exit_code(self) -> i32 {
        match self {
            RecordedOutcome::Exit { code } => Outcome::Exited { code }.exit_code(),
            RecordedOutcome::Signal { signal } => Outcome::Signaled { signal }.exit_code(),
        }
    }

    fn describe(self) -> String {
        match self {
            RecordedOutcome::Exit { code } => format!("exit {code}"),
            RecordedOutcome::Signal { signal } => format!("killed by signal {signal}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub schema: String,
    pub version: u32,
    /// The tmr that wrote it: records of different tmr versions are not compared.
    pub tmr: String,
    pub command: Vec<String>,
    pub host: String,
    pub wall_ms: u64,
    pub outcome: RecordedOutcome,
    pub stdout: RecordedStream,
    pub stderr: RecordedStream,
}

/// What a vote compares of each record: the same fields a run compares of its replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteOn {
    pub exit: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// Parse one record file's text; `name` is how errors refer to it.
pub fn parse(name: &str, text: &[u8]) -> Result<Record> {
    let record: Record = serde_json::from_slice(text).map_err(|e| {
        let what = if e.is_eof() { "is truncated" } else { "is not a tmr record" };
        anyhow::anyhow!("{name} {what} (line {}, column {}: {e})", e.line(), e.column())
    })?;
    if record.schema != SCHEMA || record.version != VERSION {
        bail!(
            "{name} is a {} version {} record; this tmr reads {SCHEMA} version {VERSION}",
            record.schema,
            record.version
        );
    }
    Ok(record)
}

/// The result of voting on records.
#[derive(Debug)]
pub struct Verdict {
    /// Index of the record whose outcome and output are delivered.
    pub winner: Option<usize>,
    /// For each record, the index of its group (groups ordered largest first).
    pub group: Vec<usize>,
    pub groups: usize,
    pub code: i32,
    pub summary: String,
}

/// Check that the records can be compared, then vote on them. `names` label them in messages.
pub fn decide(names: &[String], records: &[Record], on: VoteOn, strict: bool) -> Result<Verdict> {
    if records.len() < 2 {
        bail!("tmr vote needs at least 2 records (got {})", records.len());
    }
    let first = &records[0];
    for (name, r) in names.iter().zip(records).skip(1) {
        if r.command != first.command {
            bail!(
                "{name} recorded another command than {}: {:?} vs {:?}",
                names[0],
                r.command,
                first.command
            );
        }
        if r.tmr != first.tmr {
            bail!(
                "{name} was recorded by tmr {} and {} by tmr {}: record them with one version",
                r.tmr,
                names[0],
                first.tmr
            );
        }
    }
    let keys: Vec<(Option<RecordedOutcome>, Option<&str>, Option<&str>)> = records
        .iter()
        .map(|r| {
            (
                on.exit.then_some(r.outcome),
                on.stdout.then_some(r.stdout.blake3.as_str()),
                on.stderr.then_some(r.stderr.blake3.as_str()),
            )
        })
        .collect();
    let v = vote(&keys);
    let mut group = vec![0; records.len()];
    for (g, members) in v.groups.iter().enumerate() {
        for &m in &members.members {
            group[m] = g;
        }
    }
    let winner = v.representative();
    let n = records.len();
    let mut lines = Vec::new();
    let code = match winner {
        Some(w) => {
            let size = v.groups[0].members.len();
            let how = if size == n { "unanimous" } else { "majority" };
            lines.push(format!(
                "tmr vote: {how} {size}/{n} agree · {} · command {}",
                records[w].outcome.describe(),
                first.command.join(" ")
            ));
            if size < n {
                lines.push(
                    "  class: cannot be told from records alone (a transient fault or a nondeterministic bug): \
                     rerun the command with `tmr hunt` on the dissenting host"
                        .to_owned(),
                );
            } else if records[w].outcome != (RecordedOutcome::Exit { code: 0 }) {
                let bound = crate::stats::rule_of_three(n as u64, 0.95);
                lines.push(format!(
                    "  class: deterministic as far as {n} machines tell (if it ever passes, it does so in under {:.0}% of runs, 95% confidence)",
                    bound * 100.0
                ));
            }
            if strict && size < n {
                exit::STRICT_DISAGREEMENT
            } else {
                records[w].outcome.exit_code()
            }
        }
        None => {
            lines.push(format!(
                "tmr vote: no majority among {n} records · command {}",
                first.command.join(" ")
            ));
            exit::NO_MAJORITY
        }
    };
    for (i, (name, r)) in names.iter().zip(records).enumerate() {
        if winner.is_some_and(|w| group[i] == group[w]) {
            continue;
        }
        let mut differs = Vec::new();
        if let Some(w) = winner {
            let b = &records[w];
            if on.exit && r.outcome != b.outcome {
                differs.push(r.outcome.describe());
            }
            if on.stdout && r.stdout.blake3 != b.stdout.blake3 {
                differs.push(format!("stdout differs ({} bytes vs {})", r.stdout.bytes, b.stdout.bytes));
            }
            if on.stderr && r.stderr.blake3 != b.stderr.blake3 {
                differs.push(format!("stderr differs ({} bytes vs {})", r.stderr.bytes, b.stderr.bytes));
            }
        } else {
            differs.push(format!("{}, stdout {} bytes", r.outcome.describe(), r.stdout.bytes));
        }
        lines.push(format!("  dissent: {name} (host {}): {}", r.host, differs.join(", ")));
    }
    let mut summary = lines.join("\n");
    summary.push('\n');
    Ok(Verdict { winner, group, groups: v.groups.len(), code, summary })
}

/// Read and parse record files, each bounded in size.
pub fn load(paths: &[PathBuf]) -> Result<(Vec<String>, Vec<Record>)> {
    if paths.len() > MAX_RECORDS {
        bail!("tmr vote reads at most {MAX_RECORDS} records (got {})", paths.len());
    }
    let mut names = Vec::new();
    let mut records = Vec::new();
    for p in paths {
        let name = p.display().to_string();
        let f = std::fs::File::open(p).with_context(|| format!("opening the record {name}"))?;
        let mut text = Vec::new();
        f.take(MAX_FILE + 1).read_to_end(&mut text).with_context(|| format!("reading the record {name}"))?;
        if text.len() as u64 > MAX_FILE {
            bail!("{name} is larger than {} MiB: not a tmr record", MAX_FILE >> 20);
        }
        records.push(parse(&name, &text)?);
        names.push(name);
    }
    Ok((names, records))
}

/// `tmr vote`: vote, deliver the winner's recorded output byte for byte, print the summary on stderr.
pub fn vote_files(paths: &[PathBuf], on: VoteOn, strict: bool, quiet: bool) -> Result<i32> {
    let (names, records) = load(paths)?;
    let verdict = decide(&names, &records, on, strict)?;
    let mut note = None;
    let mut code = verdict.code;
    if let Some(w) = verdict.winner {
        let r = &records[w];
        let out = r.stdout.data().with_context(|| format!("decoding {}'s stdout", names[w]))?;
        let err = r.stderr.data().with_context(|| format!("decoding {}'s stderr", names[w]))?;
        match (out, err) {
            (Some(o), Some(e)) => {
                deliver(&mut std::io::stdout(), &o)?;
                let _ = std::io::stderr().write_all(&e);
            }
            _ => {
                // The vote is known but its output is not: a caller reading stdout must not take the
                // empty result for the winner's.
                code = crate::exit::TMR_ERROR;
                note = Some(format!(
                    "  {} holds no output (over its --max-output when recorded): nothing delivered, exit {code}",
                    names[w]
                ))
            }
        }
    }
    if !quiet || note.is_some() {
        let mut text = verdict.summary.clone();
        if let Some(n) = note {
            text.push_str(&n);
            text.push('\n');
        }
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
    Ok(code)
}

fn deliver(w: &mut impl Write, data: &[u8]) -> Result<()> {
    match w.write_all(data).and_then(|_| w.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("delivering the recorded output"),
    }
}

/// `tmr record`: run `argv` once, passing its output through live, and write the record to `out`.
/// Returns the command's own exit code (128+N for a signal), as `time` would.
pub fn record(argv: &[OsString], out: &Path, max_output: u64) -> Result<i32> {
    // Checked before the run, so that a typo in the path wastes no run.
    let mut file = crate::report::create_file(out)?;
    let started = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let code =
                if e.kind() == std::io::ErrorKind::NotFound { exit::NOT_FOUND } else { exit::NOT_EXECUTABLE };
            anyhow::Error::new(exit::ExitError {
                code,
                message: format!("tmr: {}: {e}", argv[0].to_string_lossy()),
            })
        })?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tee_err = std::thread::spawn(move || tee(stderr, std::io::stderr(), max_output));
    let (out_data, out_len, out_hash, out_kept) = tee(stdout, std::io::stdout(), max_output)?;
    let (err_data, err_len, err_hash, err_kept) =
        tee_err.join().map_err(|_| anyhow::anyhow!("the stderr reader panicked"))??;
    let status = child.wait().context("waiting for the command")?;
    use std::os::unix::process::ExitStatusExt;
    let outcome = match (status.code(), status.signal()) {
        (Some(code), _) => RecordedOutcome::Exit { code },
        (None, Some(signal)) => RecordedOutcome::Signal { signal },
        (None, None) => bail!("the command ended with an unknown status {status:?}"),
    };
    let record = Record {
        schema: SCHEMA.to_owned(),
        version: VERSION,
        tmr: env!("CARGO_PKG_VERSION").to_owned(),
        command: argv.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        host: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        wall_ms: started.elapsed().as_millis() as u64,
        outcome,
        stdout: RecordedStream::new(&out_data, out_len, out_hash, out_kept),
        stderr: RecordedStream::new(&err_data, err_len, err_hash, err_kept),
    };
    serde_json::to_writer_pretty(&mut *file.file(), &record).context("writing the record")?;
    file.file().write_all(b"\n").context("writing the record")?;
    file.persist()?;
    Ok(outcome.exit_code())
}

/// Copy `from` to `to` as it arrives (a closed `to` is not an error: the record still gets everything),
/// hashing all of it and keeping up to `max` bytes.
fn tee(mut from: impl Read, mut to: impl Write, max: u64) -> Result<(Vec<u8>, u64, blake3::Hash, bool)> {
    let mut buf = vec![0u8; 64 << 10];
    let mut kept = Vec::new();
    let mut len = 0u64;
    let mut hasher = blake3::Hasher::new();
    let mut open = true;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the command's output"),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
        if len <= max {
            kept.extend_from_slice(&buf[..n]);
        }
        if open && to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
            open = false;
        }
    }
    let fits = len <= max;
    if !fits {
        kept = Vec::new();
    }
    Ok((kept, len, hasher.finalize(), fits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(code: i32, out: &str) -> Record {
        Record {
            schema: SCHEMA.into(),
            version: VERSION,
            tmr: "1.0.0".into(),
            command: vec!["cmd".into()],
            host: "h".into(),
            wall_ms: 1,
            outcome: RecordedOutcome::Exit { code },
            stdout: RecordedStream::new(out.as_bytes(), out.len() as u64, blake3::hash(out.as_bytes()), true),
            stderr: RecordedStream::new(b"", 0, blake3::hash(b""), true),
        }
    }

    const ON: VoteOn = VoteOn { exit: true, stdout: true, stderr: false };

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}.json")).collect()
    }

    #[test]
    fn a_majority_wins_and_the_dissenter_is_named() {
        let v = decide(&names(3), &[rec(0, "a"), rec(1, "a"), rec(1, "a")], ON, false).unwrap();
        assert_eq!((v.winner, v.code), (Some(1), 1));
        assert!(v.summary.contains("dissent: r0.json"), "{}", v.summary);
        let strict = decide(&names(3), &[rec(0, "a"), rec(1, "a"), rec(1, "a")], ON, true).unwrap();
        assert_eq!(strict.code, exit::STRICT_DISAGREEMENT);
    }

    #[test]
    fn no_majority_is_120_and_a_unanimous_failure_is_deterministic() {
        let v = decide(&names(3), &[rec(0, "a"), rec(0, "b"), rec(0, "c")], ON, false).unwrap();
        assert_eq!((v.winner, v.code, v.groups), (None, exit::NO_MAJORITY, 3));
        let v = decide(&names(3), &[rec(2, "x"), rec(2, "x"), rec(2, "x")], ON, false).unwrap();
        assert_eq!(v.code, 2);
        assert!(v.summary.contains("deterministic"), "{}", v.summary);
    }

    #[test]
    fn records_of_other_commands_or_versions_are_refused() {
        let mut other = rec(0, "a");
        other.command = vec!["else".into()];
        let e = decide(&names(2), &[rec(0, "a"), other], ON, false).unwrap_err().to_string();
        assert!(e.contains("r1.json recorded another command"), "{e}");
        let mut old = rec(0, "a");
        old.tmr = "0.9.0".into();
        let e = decide(&names(2), &[rec(0, "a"), old], ON, false).unwrap_err().to_string();
        assert!(e.contains("tmr 0.9.0"), "{e}");
        assert!(decide(&names(1), &[rec(0, "a")], ON, false).is_err());
    }

    #[test]
    fn truncated_or_foreign_files_are_named() {
        let text = serde_json::to_vec(&rec(0, "a")).unwrap();
        let e = parse("x.json", &text[..text.len() / 2]).unwrap_err().to_string();
        assert!(e.starts_with("x.json is truncated"), "{e}");
        let e = parse("y.json", br#"{"schema": "other"}"#).unwrap_err().to_string();
        assert!(e.starts_with("y.json is not a tmr record"), "{e}");
        let mut r = rec(0, "a");
        r.version = 9;
        let e = parse("z.json", &serde_json::to_vec(&r).unwrap()).unwrap_err().to_string();
        assert!(e.contains("version 9"), "{e}");
    }

    #[test]
    fn binary_output_round_trips() {
        let data = [0u8, 159, 146, 150, 255, b'\n'];
        let s = RecordedStream::new(&data, 6, blake3::hash(&data), true);
        assert!(s.text.is_none());
        assert_eq!(s.data().unwrap().unwrap(), data);
        let dropped = RecordedStream::new(&[], 6, blake3::hash(&data), false);
        assert_eq!(dropped.data().unwrap(), None);
    }

    #[test]
    fn tee_keeps_at_most_the_bound() {
        let (kept, len, _, fits) = tee(&b"hello"[..], Vec::new(), 3).unwrap();
        assert_eq!((kept.len(), len, fits), (0, 5, false));
        let (kept, _, hash, fits) = tee(&b"hello"[..], Vec::new(), 5).unwrap();
        assert_eq!((kept.as_slice(), fits, hash), (&b"hello"[..], true, blake3::hash(b"hello")));
    }
}
