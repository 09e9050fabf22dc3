//! One tmr run end to end: resolve the command, run the voted round, vote, gather the evidence for any
//! disagreement, deliver the winner's output and tell the report to its reporters (`events`, `reporters`:
//! the summary, JSON, JUnit, the GitHub summary). The seam between "run replicas" (`replica`) and
//! "vote + report" (pure modules) runs through here as plain data.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::diff::{first_difference, LineDiff};
use crate::events::{Event, Reporter, Reporters};
use crate::exit::{self, ExitError};
use crate::fingerprint::{signal_name, Key};
use crate::memvote::{key_against, vote_pages, MemSnapshot};
use crate::replica::hub::{StreamPlan, Treatment};
use crate::replica::{Batch, BatchOpts, ChildSetup, Harness, Job, Launcher, RunRecord};
use crate::report::{self, Dissent, RunReport, VoteEntry};
use crate::report::{InjectionReport, MemReport};
use crate::reporters::{GithubSummary, Junit, Out, Summary};
use crate::vote::{vote, Vote};

/// Run `config` and return the exit code tmr should end with.
pub fn execute(config: &Config) -> Result<i32> {
    let started = std::time::Instant::now();
    // Checked before any replica starts, so a typo in a report path wastes no run.
    let mut reporters = reporters(config)?;
    let path = match crate::resolve::resolve(&config.command[0]) {
        Ok(path) => path,
        Err(err) => {
            // The report files are still written: a stale report from an earlier run must not stay in
            // place claiming its result (CI would upload it). They say the command could not start.
            let report = not_started_report(config, &err, started.elapsed());
            reporters.event(&Event::RunFinished { report: &report })?;
            return Err(err.into());
        }
    };
    // `--checkpoint`: where the replicas' tracers report their walls to each other (hang detection).
    let checkpoint_dir = config
        .checkpoint
        .map(|_| crate::scratch::Scratch::new("tmr-checkpoint-", None))
        .transpose()
        .context("creating the directory where replicas report to each other")?;
    // Aligned, voted epochs only with --epoch-vote, and only when the replicas run together (one at a
    // time they cannot meet): otherwise each replica checkpoints on its own timer (trace::checkpoint).
    let solo = !config.epoch_vote || (config.sequential && config.replicas > 1);
    if let Some(dir) = checkpoint_dir.as_ref().filter(|_| solo) {
        std::fs::write(dir.path().join(crate::trace::CHECKPOINT_SOLO), b"")
            .context("marking the checkpoint directory")?;
    }
    let mut launcher = match config.mem {
        Some(det) => monitor_launcher_with(
            path.into_os_string(),
            &config.command,
            det,
            config.checkpoint.zip(checkpoint_dir.as_ref().map(|d| d.path())),
        )?,
        None => Launcher::new(path.into_os_string(), &config.command)?,
    };
    if let Some(spec) = &config.inject {
        launcher.set_env(crate::inject::ENV, &spec.to_text())?;
    }
    // `--recover` reaches the replicas' tracers as `inject` does, in their environment (the monitor
    // removes it before the command runs); not with replicas one at a time: they have no epochs to meet.
    if let Some(r) = config.recover.filter(|_| !solo) {
        launcher.set_env(crate::epoch::ENV, r.as_str())?;
    }
    // --launcher slurm: each replica becomes an srun step on a node of its own (src/launch).
    if config.launch.kind != crate::launch::LauncherKind::Local && config.mem.is_some() {
        let message =
            "tmr: --mem and --inject trace replicas on this machine: not with --launcher slurm".into();
        return Err(ExitError { code: exit::TMR_ERROR, message }.into());
    }
    let cluster = crate::launch::attach(&config.launch, &mut launcher, config.replicas)?;
    let mut harness = Harness::new(launcher)?;
    if let Some(note) = harness.stdin_note().filter(|_| !config.quiet) {
        let _ = writeln!(std::io::stderr(), "{note}");
    }

    let jobs: Vec<Job> =
        (0..config.replicas).map(|replica| Job { replica, replicas: config.replicas, round: 0 }).collect();
    // Parallel replicas are streamed: what a majority agrees on is delivered as it arrives. Sequential
    // replicas cannot be (the first one's output would have to wait, whole, for the second): they are
    // kept in spools and the winner's is delivered after the vote.
    let streamed = !config.sequential || config.replicas == 1;
    if streamed {
        harness.stream_next(&stream_plan(config), config.replicas)?;
    }
    // Held-back output ends with a reader that left (nothing else would tell tmr); live output, as a
    // pipeline does, when it is written; reruns deliver nothing.
    harness.watch_reader(!streamed || config.buffered);
    reporters.event(&Event::RunStarted { replicas: config.replicas })?;
    let began = Instant::now();
    let Batch { mut records, mut swept } = harness.run_batch(&jobs, &batch_opts(config))?;
    harness.watch_reader(false);
    let voted_wall = began.elapsed();
    harness.note_divergences(&mut records);

    let mem_verdict = config.mem.map(|_| {
        let snaps: Vec<Option<&MemSnapshot>> = records.iter().map(usable_snapshot).collect();
        vote_pages(&snaps)
    });
    if let Some(v) = &mem_verdict {
        for (r, key) in records.iter_mut().zip(&v.keys) {
            r.mem_key = Some(*key);
        }
    }
    let keys: Vec<Key> = records.iter().map(|r| r.fingerprint().key(config.compare)).collect();
    let voted = vote_finished(&keys, &records, config.replicas);
    tell_round(&mut reporters, &records, &voted)?;

    // Finish delivering the voted output before any rerun: reruns may take a while, and the answer is
    // already known. A stop signal while the reader is slow ends the delivery (the harness watches).
    // A replica rerun after a node failure has no lane in the stream hub: deliver another member of the
    // majority when there is one, else the rerun's spool past what was already delivered.
    let winner = voted.majority().map(|g| crate::rerun::representative(&records, &g.members));
    if streamed {
        // Dissents are shown against the winner, or against replica 0 when there is none.
        harness.note_tail_divergences(&mut records, winner.unwrap_or(0));
    }
    let output = if streamed {
        let rescheduled = winner.filter(|&w| records[w].rescheduled_from.is_some());
        // The uncompared streams were shown live from replica SHOWN: they are replaced (after a note) only
        // when it ended outside the majority.
        let shown_lost = voted.majority().is_some_and(|g| !g.members.contains(&crate::replica::hub::SHOWN));
        let mut out = harness.finish_streaming(winner.filter(|_| rescheduled.is_none()), shown_lost)?;
        if let Some(w) = rescheduled.filter(|_| harness.interrupted.is_none()) {
            let rec = &mut records[w];
            let (out_at, err_at) = (out.stdout.bytes, out.stderr.bytes);
            harness.deliver_from(rec.stdout.file()?, libc::STDOUT_FILENO, out_at)?;
            harness.deliver_from(rec.stderr.file()?, libc::STDERR_FILENO, err_at)?;
            out.stdout.bytes = rec.stdout.summary.len.max(out_at);
            out.stderr.bytes = rec.stderr.summary.len.max(err_at);
        }
        out.buffered = config.buffered;
        // `streamed` means delivered while the replicas ran (README, JSON reports): `--buffered` output
        // waits for the vote.
        out.streamed = !config.buffered;
        out
    } else {
        let mut out = report::OutputReport::spooled();
        if let (Some(w), None) = (winner, harness.interrupted) {
            let rec = &mut records[w];
            for (name, s) in [("stdout", &rec.stdout), ("stderr", &rec.stderr)] {
                if let Some(limit) = s.over_limit {
                    anyhow::bail!(
                        "the winner's {name} (replica {w}) passed --buffer-limit ({}) while kept for the vote \
                         (--sequential): nothing was delivered (raise --buffer-limit)",
                        crate::units::size(limit)
                    );
                }
            }
            // What reached tmr's output, also when its reader left partway (`| head -1`).
            if rec.stdout.summary.len > 0 {
                out.stdout.bytes = harness.deliver(rec.stdout.file()?, libc::STDOUT_FILENO)?;
            }
            if rec.stderr.summary.len > 0 && harness.interrupted.is_none() {
                out.stderr.bytes = harness.deliver(rec.stderr.file()?, libc::STDERR_FILENO)?;
            }
            // An uncompared stream is the winner's: say whose, as a streamed run says whose was shown.
            if !config.compare.stdout && out.stdout.bytes > 0 {
                out.stdout.shown_replica = Some(w);
            }
            if !config.compare.stderr && out.stderr.bytes > 0 {
                out.stderr.shown_replica = Some(w);
            }
        }
        out
    };
    if let (Some(w), None) = (winner, harness.interrupted) {
        harness.leave_stdin_at(&records[w]);
    }
    let delivered = winner.is_some() && harness.interrupted.is_none();
    let dissents =
        if harness.interrupted.is_some() { Vec::new() } else { dissents(config, &mut records, &voted)? };
    // A rerun has no siblings to vote pages with: its memory is compared with the voted replica's.
    let reference = voted.representative().unwrap_or(0);
    let reference_snap = records.get(reference).and_then(usable_snapshot).cloned();
    let noise = mem_verdict.as_ref().map(|v| v.noise.clone()).unwrap_or_default();
    let rerun_key = |rec: &RunRecord| -> Key {
        let mut fp = rec.fingerprint();
        if let (Some(reference), Some(snap)) = (&reference_snap, usable_snapshot(rec)) {
            fp.mem = Some(key_against(reference, snap, &noise));
        } else if config.mem.is_some() {
            fp.mem = Some(key_against(&MemSnapshot::default(), &MemSnapshot::default(), &[]));
        }
        fp.key(config.compare)
    };
    let median = majority_median(&records, &voted);
    let rerun_opts = BatchOpts {
        reference_wall: median,
        timeout: crate::rerun::rerun_timeout(
            config.timeout,
            median.map_or(voted_wall, std::time::Duration::from_secs_f64),
        ),
        ..batch_opts(config)
    };
    let reruns = crate::rerun::settle(
        config,
        &mut harness,
        &keys,
        &records,
        voted_wall,
        rerun_opts,
        &rerun_key,
        &mut reporters,
    )?;
    let memory = mem_verdict.as_ref().map(|v| {
        let snaps: Vec<(usize, Option<&MemSnapshot>)> =
            records.iter().map(|r| (r.job.replica, r.mem.as_ref())).collect();
        MemReport::new(config.mem.map(|d| d.to_list()).unwrap_or_default(), v, &snaps)
    });
    swept += reruns.swept;
    let slurm = cluster.map(|c| slurm_report(&c, &harness, config, &records, &voted, &reruns.runs));
    let mut classification = reruns.report(config);

    harness.check_stop();
    if harness.interrupted.is_some() {
        classification.class = report::RunClass::Interrupted;
    }
    let failing_class =
        config.classify.fail_on.iter().any(|&c| report::RunClass::from(c) == classification.class);
    let injection =
        config.inject.as_ref().map(|spec| injection_report(spec, &records, &voted, harness.interrupted));
    // An interrupted run ends with the signal's code: the injection did not fail, tmr was stopped.
    let inject_failed =
        harness.interrupted.is_none() && injection.as_ref().is_some_and(|i| i.error.is_some());
    let exit_code = run_exit_code(harness.interrupted, inject_failed, failing_class, || {
        choose_exit_code(config, &records, &voted)
    });
    let mut report = build_report(
        config,
        &records,
        &voted,
        dissents,
        swept,
        harness.interrupted,
        classification,
        exit_code,
    );
    report.stopped_replicas = harness.stopped;
    report.slurm = slurm;
    report.delivered = delivered;
    report.output = output;
    report.memory = memory;
    report.wall_ms = started.elapsed().as_secs_f64() * 1e3;
    report.injection = injection;
    reporters.event(&Event::RunFinished { report: &report })?;
    if let Some(err) = report.injection.as_ref().and_then(|i| i.error.clone()).filter(|_| inject_failed) {
        return Err(
            ExitError { code: exit::TMR_ERROR, message: format!("tmr: --inject failed: {err}") }.into()
        );
    }
    Ok(exit_code)
}

/// The report's `slurm` section: where each replica ran, node failures, and a node whose replicas kept
/// losing the vote (the voted round and every parallel rerun round, compared with the winner).
fn slurm_report(
    cluster: &crate::launch::cluster::Cluster,
    harness: &Harness,
    config: &Config,
    records: &[RunRecord],
    voted: &Vote<Key>,
    reruns: &[report::RunEntry],
) -> crate::launch::SlurmReport {
    use crate::launch::slurm::{suspect_node, Placed};
    let mut replica_nodes = vec![None; config.replicas];
    for r in records {
        if let Some(slot) = replica_nodes.get_mut(r.job.replica) {
            slot.clone_from(&r.node);
        }
    }
    let mut placed: Vec<Placed> = Vec::new();
    if let Some(w) = voted.winner {
        for (i, r) in records.iter().enumerate() {
            if let Some(node) = &r.node {
                placed.push(Placed { round: 0, node: node.clone(), agrees: voted.group_of(i) == w });
            }
        }
        let win = crate::rerun::run_entry(&records[voted.groups[w].members[0]]);
        let c = config.compare;
        // Sequential reruns are all replica 0 on one node: no evidence about the others.
        let parallel = config.classify.rerun_mode == crate::config::RerunMode::Parallel;
        for e in reruns.iter().filter(|_| parallel) {
            let agrees = (!c.exit || e.outcome == win.outcome)
                && (!c.stdout || e.stdout.xxh128 == win.stdout.xxh128)
                && (!c.stderr || e.stderr.xxh128 == win.stderr.xxh128);
            if let Some(node) = &e.node {
                placed.push(Placed { round: e.round, node: node.clone(), agrees });
            }
        }
    }
    crate::launch::SlurmReport {
        allocation: cluster.info(),
        replica_nodes,
        node_failures: harness.node_failures.clone(),
        suspect: suspect_node(&placed),
        per_node: Vec::new(),
    }
}

/// What was injected where, and whether the vote outvoted the faulty replica.
fn injection_report(
    spec: &crate::inject::InjectSpec,
    records: &[RunRecord],
    voted: &Vote<Key>,
    interrupted: Option<i32>,
) -> InjectionReport {
    let replica = spec.replica.unwrap_or(0);
    let rec = records.iter().find(|r| r.job.replica == replica);
    let snap = rec.and_then(|r| r.mem.as_ref());
    let agreed = voted.majority().is_some_and(|g| g.members.contains(&replica));
    InjectionReport {
        spec: spec.to_text(),
        replica,
        injected: snap.and_then(|s| s.injected.clone()),
        error: match (snap, interrupted) {
            (Some(s), _) => s.inject_error.clone(),
            (None, Some(sig)) => {
                Some(format!("tmr was stopped by {} before the replica's monitor reported", signal_name(sig)))
            }
            (None, None) => Some("the replica's monitor reported nothing".into()),
        },
        faulty_replica_agreed: agreed,
        recovered: snap.and_then(|s| s.checkpoints.as_ref()).is_some_and(|c| {
            c.rollbacks.iter().any(|r| r.resumed_epoch.is_some())
                || c.repairs.iter().any(|r| r.pages.is_some())
        }),
    }
}

/// A snapshot that can take part in a vote (the monitor wrote one and captured memory).
fn usable_snapshot(r: &RunRecord) -> Option<&MemSnapshot> {
    r.mem.as_ref().filter(|s| s.unavailable.is_none())
}

pub use crate::monitored::{monitor_launcher, monitor_launcher_with};

/// The run's reporters, in the order they write: the summary (`--format`, `-o`), `--junit`, `--github`.
/// The report files are checked before any replica starts, so a typo in a path wastes no run.
fn reporters(config: &Config) -> Result<Reporters> {
    let mut all = Reporters::new();
    let summary_path = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|_| config.classify.github);
    let named: Vec<(&str, &std::path::Path)> = [
        ("-o", config.output.as_deref()),
        ("--junit", config.classify.junit.as_deref()),
        ("the GitHub summary ($GITHUB_STEP_SUMMARY)", summary_path.as_deref().map(std::path::Path::new)),
    ]
    .into_iter()
    .filter_map(|(name, p)| Some((name, p?)))
    .collect();
    report::check_distinct(&named)?;
    let file = config.output.as_deref().map(report::create_file).transpose()?;
    all.add(Summary::new(config.format, file, config.quiet));
    if let Some(f) = config.classify.junit.as_deref().map(report::create_file).transpose()? {
        all.add(Junit { out: Out::new(Some(f)) });
    }
    if let Some(gh) = config.classify.github.then(GithubSummary::open).flatten() {
        all.add(gh);
    }
    Ok(all)
}

pub fn batch_opts(config: &Config) -> BatchOpts {
    let masks_for = |compared: bool| {
        if compared {
            config.masks.clone()
        } else {
            Vec::new()
        }
    };
    BatchOpts {
        parallel: if config.sequential { 1 } else { config.replicas },
        timeout: config.timeout,
        stdout_masks: masks_for(config.compare.stdout),
        stderr_masks: masks_for(config.compare.stderr),
        setup: ChildSetup { fork: config.fork, ..ChildSetup::default() },
        mem: config.mem.is_some(),
        reference_wall: None,
        // Sequential replicas keep their output for the winner's delivery and the dissenters' diffs.
        keep: (config.sequential && config.replicas > 1).then_some(config.buffer_limit),
    }
}

/// How the voted round's streams are delivered: compared ones as a majority commits them, the others
/// live from replica 0.
fn stream_plan(config: &Config) -> StreamPlan {
    let treat = |compared: bool| {
        if compared {
            Treatment::Compared(config.masks.clone())
        } else {
            Treatment::Shown
        }
    };
    StreamPlan {
        stdout: treat(config.compare.stdout),
        stderr: treat(config.compare.stderr),
        buffered: config.buffered,
        limit: config.buffer_limit,
    }
}

/// The median wall time (seconds) of the voted majority: what `--timeout Nx` multiplies for reruns.
fn majority_median(records: &[RunRecord], voted: &Vote<Key>) -> Option<f64> {
    let mut walls: Vec<f64> =
        voted.majority()?.members.iter().map(|&i| records[i].wall.as_secs_f64()).collect();
    crate::stats::median(&mut walls)
}

/// The run's exit code, first match wins: tmr's own stop signal (the run was cut short: 128+N), a
/// failed `--inject` (the experiment did not happen: 125), a `--fail-on` class (122), then the vote's.
fn run_exit_code(
    interrupted: Option<i32>,
    inject_failed: bool,
    failing_class: bool,
    voted: impl FnOnce() -> i32,
) -> i32 {
    match interrupted {
        Some(sig) => exit::for_signal(sig),
        None if inject_failed => exit::TMR_ERROR,
        None if failing_class => exit::FAILING_CLASS,
        None => voted(),
    }
}

fn choose_exit_code(config: &Config, records: &[RunRecord], voted: &Vote<Key>) -> i32 {
    match voted.majority() {
        None => exit::NO_MAJORITY,
        Some(_) if config.strict && !voted.unanimous() => exit::STRICT_DISAGREEMENT,
        Some(g) => records[crate::rerun::representative(records, &g.members)].outcome.exit_code(),
    }
}

/// What each replica outside the majority did differently, compared with the delivered replica (or with
/// replica 0 when there is no majority).
fn dissents(config: &Config, records: &mut [RunRecord], voted: &Vote<Key>) -> Result<Vec<Dissent>> {
    let reference = voted.representative().unwrap_or(0);
    let ref_group = voted.group_of(reference);
    let mut out = Vec::new();
    for i in 0..records.len() {
        if i == reference || voted.group_of(i) == ref_group {
            continue;
        }
        let fields =
            records[i].fingerprint().differing_fields(&records[reference].fingerprint(), config.compare);
        let mut diffs = [None, None];
        for (k, name) in ["stdout", "stderr"].into_iter().enumerate() {
            if !fields.contains(&name) {
                continue;
            }
            // Streamed: where it left the committed stream, if it did (a replica that stopped short, or
            // a split with no majority, leaves nothing to show). Spooled: diffed from the spools.
            diffs[k] = match &records[i].divergence[k] {
                Some(d) if d.within == 0 => Some(crate::diff::from_divergence(d)),
                // It lagged too far behind to be compared byte by byte: no line to show.
                Some(_) => None,
                None => match (records[reference].stream(k).kept(), records[i].stream(k).kept()) {
                    (Some(a), Some(b)) => line_diff(a, b, config)?,
                    _ => None,
                },
            };
        }
        let [stdout_diff, stderr_diff] = diffs;
        out.push(Dissent {
            replica: records[i].job.replica,
            against: records[reference].job.replica,
            fields,
            stdout_diff,
            stderr_diff,
        });
    }
    Ok(out)
}

fn line_diff(a: &File, b: &File, config: &Config) -> Result<Option<LineDiff>> {
    let open = |f: &File| -> Result<BufReader<File>> {
        let mut f = f.try_clone().context("reopening an output spool")?;
        f.seek(SeekFrom::Start(0))?;
        Ok(BufReader::new(f))
    };
    Ok(first_difference(open(a)?, open(b)?, &config.masks)?)
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    config: &Config,
    records: &[RunRecord],
    voted: &Vote<Key>,
    dissents: Vec<Dissent>,
    swept: usize,
    interrupted: Option<i32>,
    classification: report::ClassReport,
    exit_code: i32,
) -> RunReport {
    RunReport {
        schema: report::SCHEMA,
        version: report::VERSION,
        command: config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        replicas: config.replicas,
        sequential: config.sequential,
        compare: config.compare.names(),
        masks: config.masks.iter().map(|m| m.as_str().to_string()).collect(),
        timeout: config.timeout.as_ref().map(report::timeout_text),
        runs: records.iter().map(crate::rerun::run_entry).collect(),
        vote: vote_entry(records, voted),
        dissents,
        leaked_processes: swept,
        interrupted_by: interrupted.map(signal_name),
        stopped_replicas: 0,
        delivered: false,
        output: report::OutputReport::spooled(),
        classification,
        memory: None,
        injection: None,
        slurm: None,
        exit_code,
        // Filled in by `execute` once the whole run has ended.
        wall_ms: 0.0,
    }
}

/// The vote among the replicas that ended on their own: a replica that tmr's own stop signal ended is
/// no evidence about the command, so it has no vote (as in hunt and `tmr test`). A majority must still
/// be a strict majority of all `n` replicas (sequential replicas after the signal never started).
fn vote_finished(keys: &[Key], records: &[RunRecord], n: usize) -> Vote<Key> {
    let kept: Vec<usize> = (0..keys.len()).filter(|&i| !records[i].stopped).collect();
    if kept.len() == keys.len() {
        return vote(keys);
    }
    let finished: Vec<Key> = kept.iter().map(|&i| keys[i]).collect();
    let mut voted = vote(&finished);
    for g in &mut voted.groups {
        for m in &mut g.members {
            *m = kept[*m];
        }
    }
    let n = n.max(keys.len());
    voted.winner = voted.winner.filter(|&w| 2 * voted.groups[w].members.len() > n);
    voted.replicas = keys.len();
    voted
}

/// The report of a run whose command could not start (not found: 127, not executable: 126): no replica
/// ran, and no rerun could change that.
fn not_started_report(config: &Config, err: &ExitError, wall: std::time::Duration) -> RunReport {
    let classification = report::ClassReport {
        class: report::RunClass::Deterministic,
        reruns: 0,
        budget: 0,
        confidence: config.classify.confidence,
        rerun_mode: "none",
        settled_early: false,
        odd_rate_bound: None,
        observations: 0,
        exec_failed: true,
        time_budget_ms: 0.0,
        spent_ms: 0.0,
        note: Some(err.message.strip_prefix("tmr: ").unwrap_or(&err.message).to_string()),
        unstable: false,
        emerged: None,
        outcomes: Vec::new(),
        rerun_runs: Vec::new(),
    };
    let mut r = build_report(config, &[], &vote(&[]), Vec::new(), 0, None, classification, err.code);
    r.vote.result = "not-started";
    r.wall_ms = wall.as_secs_f64() * 1e3;
    r
}

/// The voted round as events: each replica as it is recorded, then the vote.
fn tell_round(reporter: &mut dyn Reporter, records: &[RunRecord], voted: &Vote<Key>) -> Result<()> {
    for r in records {
        reporter.event(&Event::ReplicaFinished { run: &crate::rerun::run_entry(r) })?;
    }
    reporter.event(&Event::RoundVoted { vote: &vote_entry(records, voted) })
}

fn vote_entry(records: &[RunRecord], voted: &Vote<Key>) -> VoteEntry {
    let replica_of = |i: &usize| records[*i].job.replica;
    // Replicas ended by tmr's stop signal did not vote: the round was interrupted, whatever the rest said.
    let interrupted = records.iter().any(|r| r.stopped);
    VoteEntry {
        result: match (voted.unanimous(), voted.majority().is_some()) {
            _ if interrupted => "interrupted",
            (true, _) => "unanimous",
            (false, true) => "majority",
            (false, false) => "no-majority",
        },
        unanimous: voted.unanimous() && !interrupted,
        majority: voted.majority().map(|g| g.members.iter().map(replica_of).collect()),
        winner: voted
            .majority()
            .map(|g| records[crate::rerun::representative(records, &g.members)].job.replica),
        groups: voted.groups.iter().map(|g| g.members.iter().map(replica_of).collect()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit-code policy's order, every combination (the vote's code is 7 here).
    #[test]
    fn a_stop_signal_beats_a_failed_injection_which_beats_fail_on_which_beats_the_vote() {
        for interrupted in [None, Some(libc::SIGTERM)] {
            for inject_failed in [false, true] {
                for failing_class in [false, true] {
                    let code = run_exit_code(interrupted, inject_failed, failing_class, || 7);
                    let want = match (interrupted, inject_failed, failing_class) {
                        (Some(_), _, _) => 143,
                        (None, true, _) => 125,
                        (None, false, true) => 122,
                        (None, false, false) => 7,
                    };
                    assert_eq!(code, want, "{interrupted:?} {inject_failed} {failing_class}");
                }
            }
        }
    }
    use crate::replica::fake::Fake;
    use crate::replica::{Control, Runner};

    /// A run with a rerun, on the fake runner, as its reporters see it: the voted round (replica 1
    /// failed), its vote, then the rerun rounds the classifier asked for, each with its executions.
    #[test]
    fn a_run_with_a_rerun_is_told_in_order() {
        let argv = ["tmr", "--reruns", "3", "--rerun-budget", "1h", "true"].map(std::ffi::OsString::from);
        let crate::cli::Parsed::Run(config) = crate::cli::parse(argv) else { panic!("bad arguments") };
        let mut fake = Fake::new(1, |j| i32::from(j.round == 0 && j.replica == 1));
        let mut seen = crate::events::Recorder::default();
        seen.event(&Event::RunStarted { replicas: 3 }).unwrap();
        let mut records = Vec::new();
        let mut jobs = (0..3).map(|replica| Job { replica, replicas: 3, round: 0 });
        fake.run_jobs(&mut jobs, &batch_opts(&config), &mut |r| {
            records.push(r);
            Ok(Control::Continue)
        })
        .unwrap();
        let key_of = |r: &RunRecord| r.fingerprint().key(config.compare);
        let keys: Vec<Key> = records.iter().map(key_of).collect();
        let voted = vote(&keys);
        tell_round(&mut seen, &records, &voted).unwrap();
        let wall = std::time::Duration::from_millis(1);
        let reruns = crate::rerun::settle(
            &config,
            &mut fake,
            &keys,
            &records,
            wall,
            batch_opts(&config),
            &key_of,
            &mut seen,
        )
        .unwrap();
        let report = build_report(&config, &records, &voted, vec![], 0, None, reruns.report(&config), 0);
        seen.event(&Event::RunFinished { report: &report }).unwrap();
        assert_eq!(
            seen.lines,
            [
                "run-started 3",
                "replica-finished round 0 replica 0: exit 0",
                "replica-finished round 0 replica 1: exit 1",
                "replica-finished round 0 replica 2: exit 0",
                "round-voted majority",
                "rerun-round-started round 1 of 3",
                "replica-finished round 1 replica 0: exit 0",
                "replica-finished round 1 replica 1: exit 0",
                "replica-finished round 1 replica 2: exit 0",
                "run-finished exit 0",
            ]
        );
    }

    /// Replicas tmr's own stop signal ended have no vote: two of three stopped used to win it as a
    /// majority; the one that finished is no majority of three either.
    #[test]
    fn replicas_stopped_by_tmr_have_no_vote() {
        let mut records: Vec<RunRecord> = (0..3)
            .map(|i| {
                crate::replica::fake::record(
                    Job { replica: i, replicas: 3, round: 0 },
                    i32::from(i > 0) * 130,
                )
            })
            .collect();
        records[1].stopped = true;
        records[2].stopped = true;
        let compare = crate::fingerprint::Compare { exit: true, stdout: true, stderr: false, mem: false };
        let keys: Vec<Key> = records.iter().map(|r| r.fingerprint().key(compare)).collect();
        let voted = vote_finished(&keys, &records, 3);
        assert!(voted.majority().is_none());
        assert_eq!(voted.groups.iter().map(|g| g.members.clone()).collect::<Vec<_>>(), [vec![0]]);
        let entry = vote_entry(&records, &voted);
        assert_eq!((entry.result, entry.unanimous), ("interrupted", false));
    }
}
