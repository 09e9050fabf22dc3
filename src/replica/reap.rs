//! Making sure no process outlives tmr: tmr becomes a child subreaper, so grandchildren orphaned by a
//! replica are re-parented to it, and after each batch it kills and reaps every child it still has.

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// The children this process already had when tmr started (before any replica): a background job of
/// the shell that exec'd tmr, or the tracer of an outer `tmr --mem` (a clone child of the replica that
/// became this tmr). They are not tmr's to sweep: killing the outer tracer left this tmr untraced in a
/// seccomp stop, and its next clock read failed with ENOSYS (a panic, in nested `tmr --mem -- tmr`).
static BEFORE: std::sync::OnceLock<Vec<Pid>> = std::sync::OnceLock::new();

/// Also notes the children tmr did not start (see [`BEFORE`]); call before the first replica starts.
pub fn become_subreaper() -> Result<()> {
    BEFORE.get_or_init(all_children);
    nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")
}

/// Every current child, from /proc/self/task/TID/children. tmr is single-threaded by design (it forks),
/// so its one task is the process itself: no directory listing per call.
fn all_children() -> Vec<Pid> {
    std::fs::read_to_string(format!("/proc/self/task/{}/children", std::process::id()))
        .map(|text| text.split_whitespace().filter_map(|p| p.parse().ok()).map(Pid::from_raw).collect())
        .unwrap_or_default()
}

/// tmr's current children, but for those it had before it started anything.
fn children() -> Vec<Pid> {
    let before = BEFORE.get().map(Vec::as_slice).unwrap_or_default();
    all_children().into_iter().filter(|p| !before.contains(p)).collect()
}

/// Is `pid` still running (not a zombie waiting to be reaped)?
fn alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Live children of tmr that are not replicas: processes a replica left behind (re-parented to tmr, the
/// subreaper). Recorded when a replica is finalized, before its group is killed, so the count does not
/// depend on how fast a SIGKILL lands.
pub fn leftovers(replicas: &[Pid], seen: &mut std::collections::HashSet<i32>) {
    for pid in children() {
        if !replicas.contains(&pid) && alive(pid) {
            seen.insert(pid.as_raw());
        }
    }
}

/// Kill and reap every remaining child (leaked grandchildren re-parented to tmr). Call only when no replica
/// is running. Live ones are added to `seen`. Bounded: each pass reaps what it killed, and a killed
/// process's own orphans show up in the next pass.
pub fn sweep(seen: &mut std::collections::HashSet<i32>) {
    for _ in 0..64 {
        let pids = children();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if alive(pid) {
                seen.insert(pid.as_raw());
                let _ = kill(pid, Signal::SIGKILL);
            }
            let _ = waitpid(pid, None);
        }
    }
}
