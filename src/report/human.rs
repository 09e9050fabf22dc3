//! The human summary printed on stderr after the delivered output, like time(1): one line when all
//! replicas agree; on disagreement, per dissenter what differed, the first differing line, and a hint.
//! Pure: report in, text out.

use super::{ClassReport, Dissent, RunClass, RunEntry, RunReport};
use crate::fingerprint::Outcome;

pub struct Style {
    pub color: bool,
}

/// The summary's few colours, as anstyle styles (clap's own styling crate).
mod palette {
    use anstyle::{AnsiColor, Style};
    pub const BAD: Style = AnsiColor::Red.on_default().bold();
    pub const WARN: Style = AnsiColor::Yellow.on_default();
    pub const FLAKY: Style = AnsiColor::Yellow.on_default().bold();
    pub const GOOD: Style = AnsiColor::Green.on_default();
    pub const HINT: Style = AnsiColor::Cyan.on_default();
}

impl Style {
    fn paint(&self, style: anstyle::Style, text: &str) -> String {
        if self.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }
}

pub fn render(r: &RunReport, style: &Style) -> String {
    let mut out = String::new();
    let n = r.replicas;
    let mut line = |s: String| {
        out.push_str("tmr: ");
        out.push_str(&s);
        out.push('\n');
    };
    if r.runs.is_empty() && r.classification.exec_failed {
        let why = r.classification.note.as_deref().unwrap_or("the command could not be started");
        line(format!(
            "{}: {why}: no replica ran, exit {}",
            style.paint(palette::BAD, "not started"),
            r.exit_code
        ));
        return out;
    }
    if r.interrupted_by.as_deref() == Some("SIGPIPE") {
        let ended = match r.stopped_replicas {
            0 => "the replicas had finished".to_string(),
            n => format!("the {n} running replica(s) were sent SIGPIPE, as a shell pipeline would"),
        };
        line(format!(
            "tmr's output was closed by its reader after {} byte(s): {ended}, exit {}",
            r.output.stdout.bytes, r.exit_code
        ));
        return out;
    }
    if let Some(sig) = &r.interrupted_by {
        let streamed = r.output.stdout.bytes + r.output.stderr.bytes;
        let delivered = if r.delivered {
            "the voted output had been delivered".to_string()
        } else if streamed > 0 {
            format!("{streamed} byte(s) of output had been delivered as replicas agreed on them")
        } else {
            "nothing delivered".to_string()
        };
        line(format!(
            "{} by {sig}: stopped {} running replica(s), {delivered}, exit {}",
            style.paint(palette::BAD, "interrupted"),
            r.stopped_replicas,
            r.exit_code
        ));
        return out;
    }
    let winner = r.vote.winner.and_then(|w| r.runs.iter().find(|e| e.replica == w));
    let class = r.classification.class;
    let label = match class {
        RunClass::None | RunClass::Interrupted => String::new(),
        RunClass::Transient => format!("{} · ", style.paint(palette::WARN, "transient")),
        RunClass::Nondeterministic => format!("{} · ", style.paint(palette::FLAKY, "nondeterministic")),
        RunClass::Deterministic => format!("{} · ", style.paint(palette::BAD, "deterministic")),
    };
    match (winner, r.vote.unanimous) {
        (Some(w), true) => line(format!(
            "{label}{} {n}/{n} agree · {} · {}",
            style.paint(palette::GOOD, "unanimous"),
            w.outcome.describe(),
            resources(&r.runs)
        )),
        (Some(w), false) => {
            let size = r.vote.majority.as_ref().map_or(0, |m| m.len());
            line(format!(
                "{label}{} {size}/{n} agree · {} · delivered replica {}'s output · {}",
                style.paint(palette::WARN, "majority"),
                w.outcome.describe(),
                w.replica,
                resources(&r.runs)
            ));
        }
        (None, _) => {
            // A streamed split keeps what a majority agreed on before it (said below, with the count).
            let o = &r.output;
            let delivered =
                if o.streamed && !o.buffered && o.stdout.shown_replica.is_none() && o.stdout.bytes > 0 {
                    "only what they agreed on before the split delivered"
                } else {
                    "nothing delivered"
                };
            line(format!(
                "{label}{} among {n} replicas ({} different results): {delivered} · {}",
                style.paint(palette::BAD, "no majority"),
                r.vote.groups.len(),
                resources(&r.runs)
            ))
        }
    }
    for d in &r.dissents {
        for text in dissent_lines(r, d) {
            line(text);
        }
    }
    if let Some(slurm) = &r.slurm {
        for text in crate::launch::human_lines(slurm) {
            line(text);
        }
    }
    if !r.vote.unanimous {
        for (name, d) in [("stdout", &r.output.stdout), ("stderr", &r.output.stderr)] {
            // Held back (`--buffered` stdout, `--sequential`): the winner's, after the vote.
            let held = (name == "stdout" && r.output.buffered) || (!r.output.streamed && !r.output.buffered);
            match (d.shown_replica, d.switched_to, d.not_kept) {
                (Some(shown), Some(w), _) => line(format!(
                    "  {name} is not compared: replica {shown}'s was shown live, then the majority's replica {w}'s"
                )),
                (Some(shown), None, Some(w)) => line(format!(
                    "  {name} is not compared: replica {shown}'s was shown live; the majority's replica {w}'s \
                     is not shown: it was over the {} tmr keeps to follow a shown stream",
                    crate::units::size(crate::replica::hub::SHOWN_SPOOL_LIMIT)
                )),
                (Some(w), None, None) if held && d.bytes > 0 => {
                    line(format!("  {name} is not compared: replica {w}'s (the winner's) was delivered after the vote"))
                }
                (Some(shown), None, None) if d.bytes > 0 => {
                    line(format!("  {name} is not compared: replica {shown}'s was shown live"))
                }
                _ => {}
            }
        }
        if r.output.streamed
            && !r.output.buffered
            && r.vote.winner.is_none()
            && r.output.stdout.shown_replica.is_none()
        {
            line(format!(
                "  {} byte(s) of stdout that a majority agreed on were delivered before the replicas split",
                r.output.stdout.bytes
            ));
        }
    }
    if let Some(i) = &r.injection {
        line(injection_line(i));
    }
    if let Some(m) = &r.memory {
        for text in memory_lines(m) {
            line(text);
        }
    }
    for text in evidence(r, &r.classification) {
        line(text);
    }
    if let Some(hint) = hint(r) {
        line(format!("{} {hint}", style.paint(palette::HINT, "hint:")));
    }
    let leaked: Vec<String> = r.runs.iter().filter(|e| e.leaked).map(|e| e.replica.to_string()).collect();
    if !leaked.is_empty() {
        let (who, their) = if leaked.len() == 1 { ("replica", "its") } else { ("replicas", "their") };
        line(format!(
            "{who} {} exited but left processes holding {their} output open; they were killed",
            leaked.join(", ")
        ));
    }
    if r.leaked_processes > 0 {
        line(format!("killed {} leftover process(es) the replicas left behind", r.leaked_processes));
    }
    match r.exit_code {
        crate::exit::STRICT_DISAGREEMENT => {
            line(format!("--strict: a replica disagreed, exit {}", r.exit_code))
        }
        crate::exit::FAILING_CLASS => line(format!("--fail-on {}: exit {}", class.name(), r.exit_code)),
        crate::exit::NO_MAJORITY => line(format!("no majority: exit {}", r.exit_code)),
        _ => {}
    }
    out
}

fn injection_line(i: &super::InjectionReport) -> String {
    use crate::inject::InjectedWhat;
    let Some(inj) = &i.injected else {
        return format!(
            "injected nothing into replica {}: {}",
            i.replica,
            i.error.as_deref().unwrap_or("unknown")
        );
    };
    let what = match &inj.what {
        InjectedWhat::Memory { region, page, addr, bits, before, after, .. } => {
            format!("{region} page {page} at {addr:#x}, bit(s) {bits:?}: {:02x?} -> {:02x?}", before, after)
        }
        InjectedWhat::Register { reg, bit, before, after } => {
            format!("register {reg} bit {bit}: {before:#x} -> {after:#x}")
        }
    };
    let effect = match (i.faulty_replica_agreed, i.recovered) {
        (true, true) => "the faulty replica was brought back from a checkpoint and agreed with the majority",
        (true, false) => {
            "the faulty replica still agreed with the majority (the fault did not reach what is compared)"
        }
        (false, true) => "the faulty replica was brought back from a checkpoint, and still outvoted",
        (false, false) => "the vote outvoted the faulty replica",
    };
    format!(
        "injected into replica {} at {:.1} ms: {what}; {effect} (replay: --inject {})",
        i.replica, inj.at_ms, i.spec
    )
}

/// Divergences listed one per line, at most this many.
const DIVERGENCES_SHOWN: usize = 10;

fn memory_lines(m: &super::MemReport) -> Vec<String> {
    let cost = m.replicas.iter().map(|r| r.cost_ms).fold(0.0, f64::max);
    let mut out = vec![format!(
        "memory: {} pages compared · {} divergent · {} noise · {:.1} ms to read and hash (slowest replica)",
        m.pages_compared,
        m.divergent.len(),
        m.noise_pages,
        cost
    )];
    for d in m.divergent.iter().take(DIVERGENCES_SHOWN) {
        out.push(format!(
            "  replica {}: {} [{:#x}-{:#x}] page {} at {:#x} differs from the majority",
            d.replica, d.region, d.region_start, d.region_end, d.page, d.addr
        ));
    }
    if m.divergent.len() > DIVERGENCES_SHOWN {
        out.push(format!(
            "  … {} more divergent pages (see --format json)",
            m.divergent.len() - DIVERGENCES_SHOWN
        ));
    }
    out.extend(input_lines(m));
    let per =
        m.replicas.iter().map(|r| (r.replica, r.notes.iter().chain(&r.unavailable).map(String::as_str)));
    out.extend(note_lines(per, m.replicas.len()));
    out.extend(m.replicas.iter().flat_map(|r| crate::epoch::describe(r.replica, r.checkpoints.as_ref())));
    out
}

/// Each replica's memory notes, each text once: naming its replicas, unless it holds for all `replicas`
/// (a count such as "answered 41 getrandom call(s)" differs per replica, and said nothing of whose).
fn note_lines<'a, N: Iterator<Item = &'a str>>(
    per: impl Iterator<Item = (usize, N)>,
    replicas: usize,
) -> Vec<String> {
    let mut notes: Vec<(&str, Vec<usize>)> = Vec::new();
    for (replica, texts) in per {
        for n in texts {
            match notes.iter_mut().find(|(t, _)| *t == n) {
                Some((_, who)) => who.push(replica),
                None => notes.push((n, vec![replica])),
            }
        }
    }
    notes
        .into_iter()
        .map(|(n, who)| match who.len() {
            k if k == replicas && k > 1 => format!("  memory: {n}"),
            1 => format!("  memory: replica {}: {n}", who[0]),
            _ => format!(
                "  memory: replicas {}: {n}",
                who.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
            ),
        })
        .collect()
}

/// Input replication: answers shared per kind (when any), and replicas that asked other questions.
fn input_lines(m: &super::MemReport) -> Vec<String> {
    let mut out = Vec::new();
    let mut kinds: Vec<(String, u64, u64)> = Vec::new();
    for k in m.replicas.iter().filter_map(|r| r.inputs.as_ref()).flat_map(|i| &i.kinds) {
        match kinds.iter_mut().find(|(name, ..)| *name == k.kind) {
            Some(e) => {
                e.1 += k.replicated;
                e.2 += k.unreplicated;
            }
            None => kinds.push((k.kind.clone(), k.replicated, k.unreplicated)),
        }
    }
    let shown: Vec<String> = kinds
        .iter()
        .filter(|(_, r, u)| r + u > 0)
        .map(|(name, r, u)| match u {
            0 => format!("{name} {r}"),
            u => format!("{name} {r} ({u} not replicated)"),
        })
        .collect();
    if !shown.is_empty() {
        out.push(format!("  memory: answers replicated from the log: {}", shown.join(", ")));
    }
    for d in &m.sequence_divergent {
        out.push(format!(
            "  replica {}: its {} questions differ from the majority's ({} asked, majority {}){}",
            d.replica,
            d.kind,
            d.asked,
            d.majority_asked,
            d.detail.as_ref().map(|t| format!(": {t}")).unwrap_or_default()
        ));
    }
    out
}

fn pct(p: f64) -> String {
    format!("{:.1}%", p * 100.0)
}

/// What the reruns showed, in words a user can act on, with the bound the spent budget bought.
fn evidence(r: &RunReport, c: &ClassReport) -> Vec<String> {
    let conf = pct(c.confidence);
    let mode = if c.rerun_mode == "parallel" {
        format!("in parallel rounds of {}", r.replicas)
    } else {
        "one at a time".to_string()
    };
    let spent = format!(
        "{} rerun(s) {mode} in {} (budget {} reruns or {})",
        c.reruns,
        secs(c.spent_ms),
        c.budget,
        secs(c.time_budget_ms)
    );
    let mut out = Vec::new();
    if let Some(note) = &c.note {
        out.push(format!("  {note}"));
    }
    let bound = c.odd_rate_bound.map(pct).unwrap_or_default();
    match c.class {
        RunClass::None if r.vote.winner.is_none() => {
            out.push("  not rerun: why the replicas differ is unsettled (raise --reruns/--rerun-budget)".into())
        }
        RunClass::None | RunClass::Interrupted => {}
        RunClass::Transient if c.reruns == 0 => out.push(
            "  not rerun: the odd outcome is taken for a one-off fault, unconfirmed (raise --reruns/--rerun-budget)"
                .into(),
        ),
        RunClass::Transient if r.vote.winner.is_none() => {
            let emerged = c.emerged.and_then(|i| c.outcomes.get(i)).map(|o| o.describe());
            out.push(format!(
                "  the reruns all gave one outcome{}: the voted round's others never came back in {} rerun(s); \
                 if they are a flake, its rate is below {bound} ({conf} confidence; {spent})",
                emerged.map(|e| format!(" ({e})")).unwrap_or_default(),
                c.observations
            ));
        }
        RunClass::Transient => {
            let mut s = format!(
                "  the odd outcome never came back in {} rerun(s): a one-off fault, masked by the vote; \
                 if it is a flake, its rate is below {bound} ({conf} confidence; {spent})",
                c.observations
            );
            if c.rerun_mode == "sequential" && !r.sequential {
                s.push_str(&format!(
                    "; it was seen only with {} replicas in parallel (try --rerun-mode parallel for \
                     contention-only flakes)",
                    r.replicas
                ));
            }
            out.push(s);
        }
        RunClass::Deterministic if c.exec_failed => out.push(
            "  the command could not be executed: no rerun can change that, so none was spent".into(),
        ),
        RunClass::Deterministic => out.push(format!(
            "  failed the same way in all {} runs: a deterministic bug; if it ever passes, it does so in \
             under {bound} of runs ({conf} confidence; {spent}; --reruns/--rerun-budget buy a stronger claim)",
            c.observations
        )),
        RunClass::Nondeterministic => {
            if c.unstable {
                out.push(format!(
                    "  every run differed from every other ({spent}): unstable output: consider --mask/--compare"
                ));
            } else {
                out.push(format!("  the outcome changes from run to run: flaky ({spent}):"));
            }
            out.extend(outcome_lines(r, c));
        }
    }
    out
}

/// Milliseconds as a short duration: `850ms`, `2.1s`, `10m`, `1h+` from an hour (an unbounded budget).
fn secs(ms: f64) -> String {
    if ms >= 3.6e6 {
        "1h+".to_string()
    } else if ms >= 60e3 {
        let m = ms / 60e3;
        if (m - m.round()).abs() < 0.05 {
            format!("{m:.0}m")
        } else {
            format!("{m:.1}m")
        }
    } else if ms >= 1000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        format!("{ms:.0}ms")
    }
}

fn outcome_lines(r: &RunReport, c: &ClassReport) -> Vec<String> {
    c.outcomes
        .iter()
        .map(|o| {
            let rate = match (o.rate, o.interval) {
                (Some(p), Some(i)) => format!(" = {} [{}, {}]", pct(p), pct(i.lo), pct(i.hi)),
                _ => String::new(),
            };
            format!(
                "    {}: voted round {}/{}, reruns {}/{}{rate}{}",
                o.describe(),
                o.initial,
                r.replicas,
                o.reruns,
                c.reruns,
                if o.majority { " (voted)" } else { "" }
            )
        })
        .collect()
}

fn entry(r: &RunReport, replica: usize) -> Option<&RunEntry> {
    r.runs.iter().find(|e| e.replica == replica)
}

fn dissent_lines(r: &RunReport, d: &Dissent) -> Vec<String> {
    let (Some(me), Some(them)) = (entry(r, d.replica), entry(r, d.against)) else {
        return vec![];
    };
    let who = if r.vote.winner.is_some() { "majority" } else { "replica 0" };
    let mut parts = Vec::new();
    for f in &d.fields {
        match *f {
            "exit" => parts.push(format!("{} (vs {})", me.outcome.describe(), them.outcome.describe())),
            "stdout" => parts.push(format!(
                "stdout {} B {} (vs {} B {})",
                me.stdout.bytes,
                &me.stdout.xxh128[..8],
                them.stdout.bytes,
                &them.stdout.xxh128[..8]
            )),
            "stderr" => parts.push(format!(
                "stderr {} B {} (vs {} B {})",
                me.stderr.bytes,
                &me.stderr.xxh128[..8],
                them.stderr.bytes,
                &them.stderr.xxh128[..8]
            )),
            "mem" => {
                let pages = r
                    .memory
                    .as_ref()
                    .map_or(0, |m| m.divergent.iter().filter(|p| p.replica == d.replica).count());
                let asked = r
                    .memory
                    .as_ref()
                    .map_or(0, |m| m.sequence_divergent.iter().filter(|s| s.replica == d.replica).count());
                parts.push(match asked {
                    0 => format!("memory: {pages} page(s) differ from the majority"),
                    _ => format!("memory: {pages} page(s) and its syscall sequence differ from the majority"),
                });
            }
            _ => {}
        }
    }
    let mut lines = vec![format!("  replica {}: {}", d.replica, parts.join("; "))];
    for (stream, diff) in [("stdout", &d.stdout_diff), ("stderr", &d.stderr_diff)] {
        if let Some(diff) = diff {
            let show =
                |l: &Option<String>| l.as_ref().map_or("<end of output>".to_string(), |t| format!("{t:?}"));
            lines.push(format!("    {stream} line {}: {who} {}", diff.line, show(&diff.majority)));
            lines.push(format!(
                "    {stream} line {}: replica {} {}",
                diff.line,
                d.replica,
                show(&diff.replica)
            ));
        }
    }
    lines
}

/// A suggestion when the replicas disagree only on output: that is usually a timestamp or duration.
fn hint(r: &RunReport) -> Option<String> {
    if r.dissents.is_empty() {
        return None;
    }
    let output_only = r.dissents.iter().all(|d| !d.fields.contains(&"exit") && !d.fields.contains(&"mem"));
    if output_only {
        Some(
            "only the output differs: if it holds timestamps, durations, pids or addresses, blank them with \
             --mask REGEX, or vote on the exit status alone with --compare exit"
                .to_string(),
        )
    } else if r.runs.iter().any(|e| e.outcome == Outcome::TimedOut) {
        // --checkpoint's hang detector, or without --timeout tmr's own bound on reruns, ended it.
        let detected = r
            .memory
            .as_ref()
            .is_some_and(|m| m.replicas.iter().any(|e| e.checkpoints.as_ref().is_some_and(|c| c.ended_hung)));
        Some(
            match (detected, &r.timeout) {
                (true, _) => {
                    "a replica hung: --checkpoint's hang detector ended it (it could not be rolled back)"
                }
                (false, Some(_)) => "a replica timed out: a hang, or a --timeout too tight for this machine",
                (false, None) => "a replica hung: tmr ended it as a timeout would (no --timeout was given)",
            }
            .to_string(),
        )
    } else {
        None
    }
}

/// Medians across replicas of wall time, CPU time and peak memory.
fn resources(runs: &[RunEntry]) -> String {
    let med = |f: &dyn Fn(&RunEntry) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        crate::stats::median(&mut v).unwrap_or(0.0)
    };
    format!(
        "wall {} · user {} · sys {} · max rss {} (median per replica)",
        ms(med(&|e| e.wall_ms)),
        ms(med(&|e| e.user_ms)),
        ms(med(&|e| e.sys_ms)),
        kib(med(&|e| e.max_rss_kib as f64))
    )
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else {
        format!("{v:.1}ms")
    }
}

fn kib(v: f64) -> String {
    if v >= 1024.0 {
        format!("{:.1}MiB", v / 1024.0)
    } else {
        format!("{v:.0}KiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_its_replicas_unless_it_holds_for_all() {
        let per = [
            (0, vec!["answered 41 getrandom call(s)", "x"]),
            (1, vec!["answered 40 getrandom call(s)", "x"]),
            (2, vec!["x", "answered 41 getrandom call(s)"]),
        ];
        assert_eq!(
            note_lines(per.iter().map(|(r, n)| (*r, n.iter().copied())), 3),
            [
                "  memory: replicas 0, 2: answered 41 getrandom call(s)",
                "  memory: x",
                "  memory: replica 1: answered 40 getrandom call(s)"
            ]
        );
    }

    /// A replica that crashed on the fault and was rolled back agrees with the majority: the summary
    /// said "the fault did not reach what is compared", which read as if the fault had changed nothing.
    #[test]
    fn an_injection_undone_by_a_rollback_says_so() {
        let mut i = crate::report::InjectionReport {
            spec: "reg:replica=1,reg=rip,bit=40,after=500ms,seed=1".into(),
            replica: 1,
            injected: Some(crate::inject::Injected {
                replica: 1,
                at_ms: 500.0,
                seed: 1,
                what: crate::inject::InjectedWhat::Register {
                    reg: "rip".into(),
                    bit: 40,
                    before: 1,
                    after: 2,
                },
            }),
            error: None,
            faulty_replica_agreed: true,
            recovered: true,
        };
        assert!(injection_line(&i).contains("brought back from a checkpoint and agreed with the majority"));
        i.recovered = false;
        assert!(injection_line(&i).contains("the fault did not reach what is compared"));
    }
    use crate::diff::LineDiff;
    use crate::replica::hub::DeliveredEntry;
    use crate::report::{StreamEntry, VoteEntry};

    fn run(replica: usize, code: i32, out: &str) -> RunEntry {
        RunEntry {
            replica,
            round: 0,
            pid: 100 + replica as i32,
            outcome: Outcome::Exited { code },
            stdout: StreamEntry { bytes: out.len() as u64, xxh128: format!("{:0<32}", out) },
            stderr: StreamEntry { bytes: 0, xxh128: "0".repeat(32) },
            wall_ms: 10.0,
            user_ms: 5.0,
            sys_ms: 1.0,
            max_rss_kib: 2048,
            leaked: false,
            node: None,
            rescheduled_from: None,
        }
    }

    fn report(runs: Vec<RunEntry>, vote: VoteEntry, dissents: Vec<Dissent>, exit_code: i32) -> RunReport {
        let mut r = crate::report::sample_report(&["x"]);
        r.replicas = runs.len();
        r.runs = runs;
        r.vote = vote;
        r.dissents = dissents;
        r.exit_code = exit_code;
        r
    }

    #[test]
    fn unanimous_is_one_line() {
        let r = report(
            vec![run(0, 0, "a"), run(1, 0, "a"), run(2, 0, "a")],
            VoteEntry {
                result: "unanimous",
                unanimous: true,
                majority: Some(vec![0, 1, 2]),
                winner: Some(0),
                groups: vec![vec![0, 1, 2]],
            },
            vec![],
            0,
        );
        let text = render(&r, &Style { color: false });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("tmr: unanimous 3/3 agree · exit 0 · wall 10.0ms"), "{text}");
    }

    #[test]
    fn dissent_shows_what_differed_and_the_first_line() {
        let r = report(
            vec![run(0, 0, "ok"), run(1, 1, "corrupted"), run(2, 0, "ok")],
            VoteEntry {
                result: "majority",
                unanimous: false,
                majority: Some(vec![0, 2]),
                winner: Some(0),
                groups: vec![vec![0, 2], vec![1]],
            },
            vec![Dissent {
                replica: 1,
                against: 0,
                fields: vec!["exit", "stdout"],
                stdout_diff: Some(LineDiff {
                    line: 1,
                    majority: Some("ok".into()),
                    replica: Some("corrupted".into()),
                }),
                stderr_diff: None,
            }],
            0,
        );
        let text = render(&r, &Style { color: false });
        assert!(text.contains("majority 2/3 agree · exit 0 · delivered replica 0's output"), "{text}");
        assert!(text.contains("replica 1: exit 1 (vs exit 0); stdout 9 B"), "{text}");
        assert!(text.contains("stdout line 1: majority \"ok\""), "{text}");
        assert!(text.contains("stdout line 1: replica 1 \"corrupted\""), "{text}");
        assert!(!text.contains("hint"), "exit codes differ: no mask hint\n{text}");
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn a_timeout_hint_names_timeout_only_when_one_was_given() {
        let mut hung = run(2, 0, "");
        hung.outcome = Outcome::TimedOut;
        let vote = VoteEntry {
            result: "majority",
            unanimous: false,
            majority: Some(vec![0, 1]),
            winner: Some(0),
            groups: vec![vec![0, 1], vec![2]],
        };
        let dissent =
            Dissent { replica: 2, against: 0, fields: vec!["exit"], stdout_diff: None, stderr_diff: None };
        let mut r = report(vec![run(0, 0, "ok"), run(1, 0, "ok"), hung], vote, vec![dissent], 0);
        // An outside trial: a hang that --checkpoint's detector ended was blamed on a --timeout never given.
        let text = render(&r, &Style { color: false });
        assert!(text.contains("hint: a replica hung: tmr ended it as a timeout would"), "{text}");
        assert!(!text.contains("--timeout too tight"), "{text}");
        r.timeout = Some("5s".into());
        let text = render(&r, &Style { color: false });
        assert!(text.contains("a --timeout too tight for this machine"), "{text}");
        // --checkpoint's detector ended it: that is the cause, --timeout or not.
        let log = crate::epoch::CheckpointLog { ended_hung: true, ..Default::default() };
        r.memory = Some(crate::report::MemReport {
            determinization: String::new(),
            pages_compared: 0,
            divergent: vec![],
            noise_pages: 0,
            noise: vec![],
            sequence_divergent: vec![],
            replicas: vec![crate::report::MemReplicaEntry {
                replica: 2,
                regions: vec![],
                threads: 1,
                notes: vec![],
                unavailable: None,
                bytes: 0,
                cost_ms: 0.0,
                inputs: None,
                checkpoints: Some(log),
            }],
        });
        let text = render(&r, &Style { color: false });
        assert!(text.contains("hint: a replica hung: --checkpoint's hang detector ended it"), "{text}");
    }

    #[test]
    fn the_summary_says_whose_uncompared_stream_was_delivered_or_could_not_follow() {
        let vote = VoteEntry {
            result: "majority",
            unanimous: false,
            majority: Some(vec![1, 2]),
            winner: Some(1),
            groups: vec![vec![1, 2], vec![0]],
        };
        let dissent =
            Dissent { replica: 0, against: 1, fields: vec!["exit"], stdout_diff: None, stderr_diff: None };
        let mut r = report(vec![run(0, 3, "a"), run(1, 0, "a"), run(2, 0, "a")], vote, vec![dissent], 0);
        r.output.streamed = true;
        r.output.stderr =
            DeliveredEntry { bytes: 5, shown_replica: Some(0), switched_to: None, not_kept: Some(1) };
        let text = render(&r, &Style { color: false });
        assert!(text.contains("stderr is not compared: replica 0's was shown live; the majority's replica 1's is not shown: it was over the 64M"), "{text}");
        r.output.streamed = false;
        r.output.stderr =
            DeliveredEntry { bytes: 5, shown_replica: Some(1), switched_to: None, not_kept: None };
        let text = render(&r, &Style { color: false });
        assert!(
            text.contains("stderr is not compared: replica 1's (the winner's) was delivered after the vote"),
            "{text}"
        );
        // --buffered holds back only stdout: its uncompared stderr was shown live (a review caught it
        // reported as the winner's, delivered after the vote).
        r.output.buffered = true;
        r.output.stderr =
            DeliveredEntry { bytes: 5, shown_replica: Some(0), switched_to: None, not_kept: None };
        let text = render(&r, &Style { color: false });
        assert!(text.contains("stderr is not compared: replica 0's was shown live"), "{text}");
    }

    #[test]
    fn output_only_disagreement_without_majority_hints_at_masks() {
        let r = report(
            vec![run(0, 0, "t1"), run(1, 0, "t2"), run(2, 0, "t3")],
            VoteEntry {
                result: "no-majority",
                unanimous: false,
                majority: None,
                winner: None,
                groups: vec![vec![0], vec![1], vec![2]],
            },
            vec![
                Dissent {
                    replica: 1,
                    against: 0,
                    fields: vec!["stdout"],
                    stdout_diff: None,
                    stderr_diff: None,
                },
                Dissent {
                    replica: 2,
                    against: 0,
                    fields: vec!["stdout"],
                    stdout_diff: None,
                    stderr_diff: None,
                },
            ],
            120,
        );
        let text = render(&r, &Style { color: true });
        assert!(text.contains("no majority"), "{text}");
        assert!(text.contains("nothing delivered"), "{text}");
        assert!(text.contains("no majority: exit 120"), "{text}");
        assert!(text.contains("--mask"), "{text}");
        assert!(text.contains('\x1b'));
        // Streamed: what they agreed on before the split was delivered (an outside trial: the headline
        // said "nothing delivered" over a line that said how many bytes were).
        let mut r = r;
        r.output.streamed = true;
        r.output.stdout.bytes = 2;
        let text = render(&r, &Style { color: false });
        assert!(text.contains("only what they agreed on before the split delivered"), "{text}");
        assert!(!text.contains("nothing delivered"), "{text}");
        assert!(text.contains("2 byte(s) of stdout that a majority agreed on were delivered"), "{text}");
    }

    /// With no majority, an outcome that won a few reruns made the others `transient` on a bound nobody
    /// was told (52.7% after the 4 reruns of `-n 2`): the bound is stated.
    #[test]
    fn a_transient_split_states_the_bound_its_reruns_bought() {
        let mut r = crate::report::sample_report(&["x"]);
        (r.replicas, r.exit_code) = (2, 120);
        r.vote.winner = None;
        r.vote.unanimous = false;
        r.vote.majority = None;
        r.vote.groups = vec![vec![0], vec![1]];
        let c = &mut r.classification;
        (c.class, c.reruns, c.observations, c.odd_rate_bound) = (RunClass::Transient, 4, 4, Some(0.527));
        let text = render(&r, &Style { color: false });
        assert!(
            text.contains("in 4 rerun(s); if they are a flake, its rate is below 52.7% (95.0% confidence"),
            "{text}"
        );
    }
}
