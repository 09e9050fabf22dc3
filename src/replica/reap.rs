//! Making sure no process outlives tmr: tmr becomes a child subreaper, so grandchildren orphaned by a
//! replica are re-parented to it, and after each batch it kills and reaps every child it still has.

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")
}

/// tmr's current children, from /proc/self/task/*/children.
fn children() -> Vec<Pid> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(text.split_whitespace().filter_map(|p| p.parse().ok()).map(Pid::from_raw));
        }
    }
    pids
}

/// Kill and reap every remaining child (leaked grandchildren re-parented to tmr). Call only when no replica
/// is running. Returns how many processes were killed. Bounded: each pass reaps what it killed, and a
/// killed process's own orphans show up in the next pass.
pub fn sweep() -> usize {
    let mut killed = 0;
    for _ in 0..64 {
        let pids = children();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // An orphan that already exited is just reaped: it leaked nothing.
            if matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive)) {
                if kill(pid, Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
                let _ = waitpid(pid, None);
            }
        }
    }
    killed
}
