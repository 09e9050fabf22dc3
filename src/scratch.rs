//! tmr's private scratch directories (the answer log in /dev/shm, the checkpoint peers' directory), made
//! so that a tmr killed with SIGKILL does not leave them behind for good: each holds a `.lock` file that
//! its tmr keeps locked (flock) while it runs, and making a new one removes every directory of the same
//! kind whose lock is free. A lock is released by the kernel whatever way its holder died, and works
//! across pid namespaces sharing the directory, where a pid check would not.
//!
//! Without this, every SIGKILLed `tmr --mem` left a `tmr-replog-*` directory in /dev/shm (memory, not
//! disk): this machine had 37 of them.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

const LOCK: &str = ".lock";
/// A directory with no lock is swept only past this age (see [`sweep`]).
const UNLOCKED_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub struct Scratch {
    dir: tempfile::TempDir,
    /// Held for the directory's life: a sweep by another tmr sees it locked and leaves it alone.
    _lock: File,
}

impl Scratch {
    /// A new directory `prefix*` in `parent` (the temporary directory when `None`), after removing the
    /// ones of the same prefix that no running tmr holds.
    pub fn new(prefix: &str, parent: Option<&Path>) -> io::Result<Self> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        sweep(&parent, prefix);
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(&parent)?;
        // Locked under another name, then renamed: a sweep never sees `.lock` unlocked in a live
        // directory (it skips directories with none).
        let tmp = dir.path().join(".lock.new");
        let lock = File::options().write(true).create_new(true).open(&tmp)?;
        flock(&lock, libc::LOCK_EX | libc::LOCK_NB)?;
        std::fs::rename(&tmp, dir.path().join(LOCK))?;
        Ok(Scratch { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on an fd this File owns; no memory is passed.
    match unsafe { libc::flock(f.as_raw_fd(), op) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Remove the directories `prefix*` of `parent` whose `.lock` is free (their tmr is gone). Best effort:
/// anything unreadable, foreign or locked is left alone.
fn sweep(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let dir = entry.path();
        // Only a real directory (not a symlink someone planted), and only the lock inside it.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match File::open(dir.join(LOCK)) {
            Ok(lock) if flock(&lock, libc::LOCK_EX | libc::LOCK_NB).is_ok() => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Ok(_) => {}
            // No lock: being made right now, or left by a tmr from before the locks. Only the latter
            // is a day old.
            Err(_) => {
                let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if age.is_some_and(|a| a > UNLOCKED_AGE) {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_whose_tmr_is_gone_is_swept_and_a_live_one_is_not() {
        let parent = tempfile::tempdir().unwrap();
        let live = Scratch::new("tmr-x-", Some(parent.path())).unwrap();
        // A directory left by a killed tmr: its lock file, unlocked.
        let dead = parent.path().join("tmr-x-dead");
        std::fs::create_dir(&dead).unwrap();
        File::create(dead.join(LOCK)).unwrap();
        // One with no lock file (being made, or not tmr's): left alone.
        let other = parent.path().join("tmr-x-other");
        std::fs::create_dir(&other).unwrap();
        let again = Scratch::new("tmr-x-", Some(parent.path())).unwrap();
        assert!(!dead.exists(), "the dead run's directory is swept");
        assert!(live.path().exists() && again.path().exists() && other.exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists(), "removed on drop, as before");
    }
}
