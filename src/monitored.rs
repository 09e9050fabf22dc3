//! The launcher of replicas under tmr's own monitor (`tmr __tmr-monitor`, for `--mem`, `--inject` and
//! `--checkpoint`): `round` and `campaign` both build it here, so that campaign need not call into round.

use anyhow::{Context, Result};

use crate::det::Det;
use crate::replica::Launcher;
use crate::trace::monitor;

/// Replicas run under tmr's own monitor (`tmr __tmr-monitor`), which traces the real command.
pub fn monitor_launcher(
    path: std::ffi::OsString,
    command: &[std::ffi::OsString],
    det: Det,
) -> Result<Launcher> {
    monitor_launcher_with(path, command, det, None)
}

/// The monitor launcher, with `--checkpoint`'s interval passed on to each replica's tracer.
pub fn monitor_launcher_with(
    path: std::ffi::OsString,
    command: &[std::ffi::OsString],
    det: Det,
    checkpoint: Option<(std::time::Duration, &std::path::Path)>,
) -> Result<Launcher> {
    if !monitor::SUPPORTED {
        return Err(anyhow::Error::new(crate::exit::ExitError {
            code: crate::exit::TMR_ERROR,
            message: format!(
                "tmr: --mem, --inject and --checkpoint trace replicas with ptrace, which this tmr supports on \
                 x86-64 only (this is {})",
                std::env::consts::ARCH
            ),
        }));
    }
    let exe = std::env::current_exe().context("finding tmr's own executable for the memory monitor")?;
    let mut argv: Vec<std::ffi::OsString> =
        vec!["tmr".into(), monitor::ARG.into(), "--det".into(), det.to_list().into()];
    if let Some((d, dir)) = checkpoint {
        argv.extend(["--checkpoint-ms".into(), d.as_millis().max(1).to_string().into()]);
        argv.extend(["--checkpoint-dir".into(), dir.as_os_str().to_owned()]);
    }
    argv.extend(["--".into(), path]);
    argv.extend(command.iter().cloned());
    let mut launcher = Launcher::new(exe.into_os_string(), &argv)?;
    launcher.pad_env = true;
    if det.clock || det.urandom {
        // Input replication: every replica of every round shares one answer log in this private directory.
        // In /dev/shm when there is one: the log is shared memory, and a directory made in $TMPDIR
        // would change what `ls -la $TMPDIR/...` shows the replicas of a concurrent run.
        let dir = crate::scratch::Scratch::new("tmr-replog-", Some(std::path::Path::new("/dev/shm")))
            .or_else(|_| crate::scratch::Scratch::new("tmr-replog-", None))
            .context("creating the answer log's directory")?;
        launcher.set_env(crate::trace::inputs::ENV, &dir.path().to_string_lossy())?;
        launcher.scratch = Some(dir);
    }
    if det.rseq {
        // The kernel writes the current CPU into glibc's rseq area: it would fake 2-of-3 majorities.
        let tunables = match std::env::var("GLIBC_TUNABLES") {
            Ok(v) if !v.is_empty() => format!("{v}:glibc.pthread.rseq=0"),
            _ => "glibc.pthread.rseq=0".to_string(),
        };
        launcher.set_env("GLIBC_TUNABLES", &tunables)?;
    }
    Ok(launcher)
}
