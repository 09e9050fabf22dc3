//! The process half of `--launcher slurm`: find Slurm, probe the controller, get (or reuse) an
//! allocation, turn each job into an `srun` step on a chosen node, ask after each step whether its node
//! failed, and release the allocation at the end. Every Slurm command runs under a deadline of tmr's own
//! ([`run_bounded`]): Slurm's clients retry for up to a minute when the controller or munge is gone.
//! When the cluster has a backup controller, the node check keeps retrying long enough for the backup to
//! take over ([`retry_window`]), so a run survives the primary's death.

use std::cell::RefCell;
use std::ffi::{CString, OsStr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::slurm::{self, allocation_argv, choose_node, job_state, step_argv};
use super::{LaunchConfig, NodeHealth, Placement, Spread, Wrapped};
use crate::exit::{ExitError, TMR_ERROR};
pub use crate::replica::placement::NodeFailure;
use crate::replica::Job;

/// Bound of a probe or query (`scontrol ping`, `sinfo`, `squeue`, `scancel`).
const QUERY_LIMIT: Duration = Duration::from_secs(8);
/// Bound of the allocation: `--immediate` plus the controller's answer.
const ALLOC_LIMIT: Duration = Duration::from_secs(slurm::IMMEDIATE_SECS as u64 + 10);

/// A job's state and its expanded node list.
type JobAnswer = (String, Vec<String>);

/// A Slurm allocation that replicas run in, as steps.
pub struct Cluster {
    srun: CString,
    job: String,
    /// tmr made the allocation (and cancels it when done), rather than running inside the caller's.
    owned: bool,
    opts: Vec<String>,
    /// Nodes of the allocation still believed healthy, in allocation order.
    healthy: RefCell<Vec<String>>,
    failed: RefCell<Vec<String>>,
    pub notes: Vec<String>,
    /// The last answer about the allocation (state, nodes) and when it was asked for.
    last: RefCell<Option<(Instant, JobAnswer)>>,
    /// How long a job query may keep failing: longer when a backup controller may be taking over.
    query_retry: Duration,
}

/// The allocation as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AllocationInfo {
    pub job: String,
    pub own_allocation: bool,
    pub nodes: Vec<String>,
    pub failed_nodes: Vec<String>,
    pub notes: Vec<String>,
}

fn fail(message: String) -> anyhow::Error {
    ExitError { code: TMR_ERROR, message: format!("tmr: --launcher slurm: {message}") }.into()
}

impl Cluster {
    /// Reach Slurm and get somewhere to run `wanted` executions at once. Any failure is one line and
    /// exit 125, within seconds: no srun on PATH, a `SLURM_CONF` that does not exist, a controller that
    /// does not answer `scontrol ping`, or an allocation Slurm cannot grant now.
    pub fn connect(cfg: &LaunchConfig, wanted: usize) -> Result<Cluster> {
        let srun =
            on_path("srun").ok_or_else(|| fail("srun not found on PATH (is Slurm installed?)".into()))?;
        if let Some(conf) = std::env::var_os("SLURM_CONF").filter(|c| !c.is_empty()) {
            // srun and scontrol retry a missing file for a minute before failing.
            if !Path::new(&conf).is_file() {
                return Err(fail(format!(
                    "SLURM_CONF names {}, which does not exist",
                    conf.to_string_lossy()
                )));
            }
        }
        let ping = run_bounded("scontrol", ["ping"], QUERY_LIMIT)
            .map_err(|e| fail(format!("Slurm is not reachable: scontrol ping: {e}")))?;
        if !ping.ok || !ping.stdout.contains("is UP") {
            return Err(fail(format!("Slurm is not reachable: scontrol ping: {}", ping.summary())));
        }
        let query_retry = retry_window(&ping.stdout, || {
            run_bounded("scontrol", ["show", "config"], QUERY_LIMIT).ok().map(|out| out.stdout)
        });
        let opts = cfg.slurm_opts.clone();
        let mut notes = Vec::new();
        let (job, owned, nodes) = match std::env::var("SLURM_JOB_ID").ok().filter(|j| !j.is_empty()) {
            Some(job) => {
                let nodes = allocation_nodes(&job, query_retry)?;
                notes.push(format!("running inside the caller's allocation {job}"));
                if cfg.spread == Spread::Nodes && nodes.len() < wanted {
                    notes.push(format!(
                        "allocation {job} has {} node(s) for {wanted} concurrent executions: some share a node",
                        nodes.len()
                    ));
                }
                (job, false, nodes)
            }
            None => {
                let mut sinfo = vec!["-h".to_string(), "-N".into(), "-o".into(), "%N %T".into()];
                let partition = slurm::partition_of(&opts);
                if let Some(p) = &partition {
                    sinfo.extend(["-p".into(), p.clone()]);
                }
                let out =
                    run_bounded("sinfo", &sinfo, QUERY_LIMIT).map_err(|e| fail(format!("sinfo: {e}")))?;
                let usable = slurm::usable_nodes(&out.stdout);
                if usable.is_empty() {
                    let place = partition.map_or("".into(), |p| format!(" in partition {p}"));
                    let states = match out.stdout.trim() {
                        "" => "sinfo lists no node".to_string(),
                        text => format!("sinfo: {}", text.lines().collect::<Vec<_>>().join(", ")),
                    };
                    return Err(fail(format!("no idle or partly used node{place} ({states})")));
                }
                let (argv, note) = allocation_argv(wanted, usable.len(), cfg.spread, &opts);
                notes.extend(note);
                let out =
                    run_bounded("salloc", &argv, ALLOC_LIMIT).map_err(|e| fail(format!("salloc: {e}")))?;
                let job = slurm::granted_job(&out.stderr)
                    .ok_or_else(|| fail(format!("salloc {}: {}", argv.join(" "), out.summary())))?;
                let nodes = match allocation_nodes(&job, query_retry) {
                    Ok(n) => n,
                    Err(e) => {
                        cancel(&job);
                        return Err(e);
                    }
                };
                (job, true, nodes)
            }
        };
        let srun = CString::new(srun.into_os_string().into_encoded_bytes()).context("srun's path")?;
        Ok(Cluster {
            srun,
            job,
            owned,
            opts,
            healthy: RefCell::new(nodes),
            failed: RefCell::new(Vec::new()),
            notes,
            last: RefCell::new(None),
            query_retry,
        })
    }

    pub fn info(&self) -> AllocationInfo {
        AllocationInfo {
            job: self.job.clone(),
            own_allocation: self.owned,
            nodes: self.healthy.borrow().clone(),
            failed_nodes: self.failed.borrow().clone(),
            notes: self.notes.clone(),
        }
    }
}

impl Placement for Cluster {
    fn wrap(&self, job: &Job) -> Result<Wrapped> {
        let healthy = self.healthy.borrow();
        let node = choose_node(&healthy, job)
            .ok_or_else(|| fail(format!("no healthy node left in allocation {}", self.job)))?
            .to_string();
        let c = |s: String| CString::new(s).context("a NUL byte in a Slurm option");
        let mut prefix = vec![c("srun".into())?];
        for a in step_argv(&self.job, &node, &self.opts) {
            prefix.push(c(a)?);
        }
        Ok(Wrapped { path: self.srun.clone(), prefix, node })
    }

    fn health(&self, node: &str, ended: Instant) -> Result<NodeHealth> {
        // An answer asked for after the job ended is as good as a new one: jobs that finish together
        // (a hunt's) share one query.
        let cached = self.last.borrow().as_ref().filter(|(at, _)| *at >= ended).map(|(_, a)| a.clone());
        let (state, nodes) = match cached {
            Some(answer) => answer,
            None => {
                let asked = Instant::now();
                let answer = query_job(&self.job, self.query_retry)?;
                *self.last.borrow_mut() = Some((asked, answer.clone()));
                answer
            }
        };
        if state != "RUNNING" {
            return Err(fail(format!("allocation {} ended ({state})", self.job)));
        }
        if nodes.iter().any(|n| n == node) {
            return Ok(NodeHealth::Healthy);
        }
        // With --no-kill the allocation lives on without the node Slurm declared dead.
        *self.healthy.borrow_mut() = nodes;
        let mut failed = self.failed.borrow_mut();
        if !failed.iter().any(|n| n == node) {
            failed.push(node.to_string());
        }
        Ok(NodeHealth::Failed)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            cancel(&self.job);
        }
    }
}

fn cancel(job: &str) {
    let _ = run_bounded("scancel", [job], QUERY_LIMIT);
}

/// How long a job query may keep failing before tmr gives up: a controller busy with a node that just
/// came back answered `Socket timed out on send/recv operation` once in ten test runs beside CPU hogs.
const QUERY_RETRY: Duration = Duration::from_secs(20);
/// Slurm's default `SlurmctldTimeout`, assumed when a backup is listed but the value cannot be read.
const DEFAULT_SLURMCTLD_TIMEOUT: u64 = 120;
/// Beyond the takeover's own schedule: the backup loading the saved state on a loaded machine (the
/// takeover took up to 2.4 s longer than SlurmctldTimeout × 4/3 here, with a load average of 13).
const TAKEOVER_MARGIN: Duration = Duration::from_secs(15);

/// How long the job query retries. With a backup `SlurmctldHost` (`scontrol ping` lists more than one
/// controller), a dead primary is not the end: the backup pings it every `SlurmctldTimeout`/3 and takes
/// over once it has been silent for `SlurmctldTimeout`, i.e. up to 4/3 of it after the death (measured
/// 11.6–15.7 s with 10 s, 23.0 s with 20 s). Giving up after [`QUERY_RETRY`] would abort a run that
/// Slurm was about to rescue; Slurm's default of 120 s makes that certain. `config` (`scontrol show
/// config`) is asked only when there is a backup, to spare single-controller clusters a round trip.
fn retry_window(ping: &str, config: impl FnOnce() -> Option<String>) -> Duration {
    let controllers = ping.lines().filter(|l| l.trim_start().starts_with("Slurmctld(")).count();
    if controllers < 2 {
        return QUERY_RETRY;
    }
    let timeout = config().and_then(|c| slurmctld_timeout(&c)).unwrap_or(DEFAULT_SLURMCTLD_TIMEOUT);
    QUERY_RETRY.max(Duration::from_secs(timeout + timeout.div_ceil(3)) + TAKEOVER_MARGIN)
}

/// `SlurmctldTimeout = 10 sec` from `scontrol show config`, in seconds.
fn slurmctld_timeout(config: &str) -> Option<u64> {
    config.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        if key.trim() != "SlurmctldTimeout" {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// A job's state and expanded node list, retried for `retry` while the controller does not answer; an
/// unknown job is an error at once.
fn query_job(job: &str, retry: Duration) -> Result<JobAnswer> {
    let deadline = Instant::now() + retry;
    loop {
        let said = run_bounded("squeue", ["-h", "-t", "all", "-j", job, "-o", "%T|%N"], QUERY_LIMIT);
        let why = match said {
            Ok(out) => match job_state(&out.stdout) {
                Some(answer) => return Ok(answer),
                None if out.stderr.contains("Invalid job id") => {
                    return Err(fail(format!("allocation {job} is gone: {}", out.summary())))
                }
                None => out.summary(),
            },
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "Slurm's controller stopped answering about allocation {job} for {}s ({why}): cannot \
                 tell whether a replica's node failed",
                retry.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The expanded node list of a running job.
fn allocation_nodes(job: &str, retry: Duration) -> Result<Vec<String>> {
    match query_job(job, retry)? {
        (state, nodes) if state == "RUNNING" && !nodes.is_empty() => Ok(nodes),
        (state, _) => Err(fail(format!("allocation {job} is {state}, not running"))),
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// What a bounded command said.
pub struct Said {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Said {
    /// Its message as one line: stderr if any, else stdout; its first lines joined, banners dropped.
    pub fn summary(&self) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.chars().any(|c| c.is_alphanumeric()))
            .take(2)
            .map(crate::text::one_line)
            .collect();
        if lines.is_empty() {
            "no output".into()
        } else {
            lines.join("; ")
        }
    }
}

/// Run a Slurm client with no stdin, killing it at `limit`. Polls instead of using a thread: tmr forks
/// replicas and must stay single-threaded. Its pipes are drained while it runs (non-blocking), so a
/// large `sinfo` cannot block on a full pipe.
pub fn run_bounded<I, S>(program: &str, args: I, limit: Duration) -> Result<Said, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    for fd in [out.as_raw_fd(), err.as_raw_fd()] {
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
    }
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let drain = |r: &mut dyn Read, into: &mut Vec<u8>| {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = r.read(&mut buf) {
            into.extend_from_slice(&buf[..n]);
        }
    };
    let deadline = Instant::now() + limit;
    let status = loop {
        drain(&mut out, &mut stdout);
        drain(&mut err, &mut stderr);
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    drain(&mut out, &mut stdout);
    drain(&mut err, &mut stderr);
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    Ok(Said { ok: status.success(), stdout: text(stdout), stderr: text(stderr) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "Slurmctld(primary) at vm is UP\n";
    const TWO: &str = "Slurmctld(primary) at vm is DOWN\nSlurmctld(backup) at ctl2 is UP\n\
                       *****************************************\n** RESTORE SLURMCTLD DAEMON TO SERVICE **\n";
    const CONFIG: &str = "MessageTimeout          = 5 sec\nSlurmctldHost[0]        = vm(10.9.0.1)\n\
                          SlurmctldHost[1]        = ctl2(10.9.0.2)\nSlurmctldTimeout        = 20 sec\n";

    #[test]
    fn without_a_backup_the_window_is_the_default_and_the_config_is_not_asked() {
        assert_eq!(retry_window(ONE, || panic!("asked for the config")), QUERY_RETRY);
    }

    #[test]
    fn with_a_backup_the_window_outlasts_its_takeover() {
        // 20 + 7 + margin.
        assert_eq!(retry_window(TWO, || Some(CONFIG.into())), Duration::from_secs(27) + TAKEOVER_MARGIN);
        // A short SlurmctldTimeout never shortens the usual window.
        let short = CONFIG.replace("= 20 sec", "= 1 sec");
        assert_eq!(
            retry_window(TWO, || Some(short)),
            QUERY_RETRY.max(Duration::from_secs(2) + TAKEOVER_MARGIN)
        );
        // Unreadable: Slurm's default.
        assert_eq!(retry_window(TWO, || None), Duration::from_secs(160) + TAKEOVER_MARGIN);
    }

    #[test]
    fn slurmctld_timeout_is_read_from_show_config() {
        assert_eq!(slurmctld_timeout(CONFIG), Some(20));
        assert_eq!(slurmctld_timeout("SlurmctldTimeoutX = 3 sec\n"), None);
        assert_eq!(slurmctld_timeout(""), None);
    }
}
