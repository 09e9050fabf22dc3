//! `tmr hunt --keep DIR`: the failing runs' stdout and stderr, kept as `run-<i>.stdout`/`.stderr` with a
//! row each in `index.tsv`. A reporter: it sees every run the hunt reports and keeps the failing ones.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::events::{Event, Reporter};
use crate::exit::{self, ExitError};
use crate::replica::RunRecord;

pub struct Keep {
    dir: PathBuf,
    /// index.tsv, opened for appending at the first failing run.
    index: Option<File>,
}

impl Keep {
    /// Checked before anything runs: a directory that cannot be used wastes no hunt.
    pub fn new(dir: &Path) -> Result<Self> {
        prepare_keep_dir(dir)?;
        Ok(Keep { dir: dir.to_path_buf(), index: None })
    }
}

impl Reporter for Keep {
    fn event(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::HuntRunFinished { record, failing: true } => keep_run(&self.dir, record, &mut self.index),
            _ => Ok(()),
        }
    }
}

fn prepare_keep_dir(dir: &Path) -> Result<()> {
    // create_new: an index.tsv already there is an earlier hunt's, whose run-<i> files this one would
    // overwrite; it is refused before anything runs.
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::OpenOptions::new().write(true).create_new(true).open(dir.join("index.tsv")))
        .and_then(|mut f| f.write_all(b"run\toutcome\texit_code\twall_ms\tstdout_bytes\tstdout_xxh128\n"))
        .map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
                "it holds an earlier hunt's files (index.tsv), which this one would overwrite: give a new or \
                 empty directory"
                    .to_string()
            } else {
                e.to_string()
            };
            ExitError {
                code: exit::TMR_ERROR,
                message: format!("tmr: cannot use --keep {}: {why}", dir.display()),
            }
            .into()
        })
}

/// Keep a failing run's stdout and stderr in `dir` and add its row to index.tsv. On any failure (a full
/// disk) nothing of the run is left behind: its files are removed and index.tsv is cut back to its last
/// complete row, so the directory only ever holds whole runs.
fn keep_run(dir: &Path, rec: &RunRecord, index: &mut Option<File>) -> Result<()> {
    let run = rec.job.round;
    let mut created = Vec::new();
    let kept = keep_streams(dir, rec, &mut created).and_then(|()| append_index_row(dir, rec, index));
    if kept.is_err() {
        for path in &created {
            let _ = std::fs::remove_file(path);
        }
    }
    kept.with_context(|| format!("keeping failing run {run} in {} (--keep)", dir.display()))
}

fn keep_streams(dir: &Path, rec: &RunRecord, created: &mut Vec<PathBuf>) -> Result<()> {
    let run = rec.job.round;
    for (name, cap) in [("stdout", &rec.stdout), ("stderr", &rec.stderr)] {
        let path: PathBuf = dir.join(format!("run-{run}.{name}"));
        let mut out = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        created.push(path.clone());
        // A hunt with --keep spools every run's output: an empty stream has no spool, and its file stays empty.
        if let Some(mut spool) = cap.kept().filter(|_| cap.summary.len > 0) {
            copy_kept(&mut spool, &mut out).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Copy a spool from its start into a kept file.
fn copy_kept(spool: &mut &File, out: &mut impl Write) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    spool.seek(SeekFrom::Start(0))?;
    std::io::copy(spool, out)?;
    out.flush()
}

fn append_index_row(dir: &Path, rec: &RunRecord, index: &mut Option<File>) -> Result<()> {
    if index.is_none() {
        let path = dir.join("index.tsv");
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        *index = Some(f);
    }
    let f = index.as_mut().expect("just set");
    let row = format!(
        "{}\t{}\t{}\t{:.1}\t{}\t{}\n",
        rec.job.round,
        rec.outcome.describe(),
        rec.outcome.exit_code(),
        rec.wall.as_secs_f64() * 1e3,
        rec.stdout.summary.len,
        rec.stdout.summary.hex()
    );
    write_row(f, row.as_bytes()).context("writing index.tsv")
}

/// Append one whole row, or none: a partial write is cut off again.
fn write_row(f: &mut File, row: &[u8]) -> std::io::Result<()> {
    let before = f.metadata()?.len();
    f.write_all(row).inspect_err(|_| {
        let _ = f.set_len(before);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::fake::record;
    use crate::replica::Job;

    /// Fed a hunt's events, only the failing runs are kept, each with its index row.
    #[test]
    fn only_failing_runs_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut keep = Keep::new(dir.path()).unwrap();
        let run = |round, code| record(Job { replica: 0, replicas: 1, round }, code);
        keep.event(&Event::HuntRunFinished { record: &run(0, 0), failing: false }).unwrap();
        keep.event(&Event::HuntRunFinished { record: &run(1, 2), failing: true }).unwrap();
        let index = std::fs::read_to_string(dir.path().join("index.tsv")).unwrap();
        let rows: Vec<&str> = index.lines().skip(1).map(|l| l.split('\t').next().unwrap()).collect();
        assert_eq!(rows, ["1"]);
        assert!(dir.path().join("run-1.stdout").exists() && !dir.path().join("run-0.stdout").exists());
        assert!(Keep::new(dir.path()).is_err(), "an earlier hunt's directory is refused");
    }
}
