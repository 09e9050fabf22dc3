//! The pure half of `--launcher slurm`: the argv of the allocation and of each replica's step, Slurm's
//! compressed node lists (`n[1-3]`), the choice of a node per job, the parsing of `salloc`, `sinfo` and
//! `squeue` output, and the analysis that names a node whose replicas keep losing the vote. No process is
//! started here (that is `cluster.rs`); every function is data in, data out.
//!
//! Facts this relies on are measured in `docs/slurm-notes.md`: `srun -QQ` keeps the streams byte-exact,
//! a node failure can end srun with status 0 and no text, and an allocation survives a node's failure
//! only with `--no-kill`.

use serde::Serialize;

use super::Spread;
use crate::replica::Job;

/// How long `salloc` may wait for nodes before giving up (`--immediate`): a request the cluster cannot
/// satisfy now fails instead of pending forever.
pub const IMMEDIATE_SECS: u32 = 10;

/// Expand a Slurm host list (`n[1-3,5],gpu[01-02],login`) into node names, in order.
pub fn expand_hostlist(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in split_top(list.trim()) {
        if item.is_empty() {
            continue;
        }
        match item.find('[') {
            None => out.push(item.to_string()),
            Some(open) => {
                let close = item.rfind(']').filter(|&c| c > open).ok_or_else(|| bad(list))?;
                let (prefix, ranges, suffix) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
                if suffix.contains('[') {
                    return Err(format!("unsupported node list '{list}' (several bracket groups)"));
                }
                for range in ranges.split(',') {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    let width = lo.len();
                    let a: u64 = lo.parse().map_err(|_| bad(list))?;
                    let b: u64 = hi.parse().map_err(|_| bad(list))?;
                    if b < a || b - a > 100_000 {
                        return Err(bad(list));
                    }
                    for n in a..=b {
                        out.push(format!("{prefix}{n:0width$}{suffix}"));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn bad(list: &str) -> String {
    format!("cannot read Slurm node list '{}'", list.escape_debug())
}

/// Split at commas outside brackets.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Nodes that can take a new allocation now, from `sinfo -h -N -o '%N %T'`: idle or partly used. A
/// trailing `*` (not responding), down, drained or fully allocated nodes do not count.
pub fn usable_nodes(sinfo: &str) -> Vec<String> {
    let mut nodes: Vec<String> = sinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (node, state) = (f.next()?, f.next()?);
            matches!(state, "idle" | "mixed").then(|| node.to_string())
        })
        .collect();
    nodes.dedup();
    nodes
}

/// The job id in salloc's `salloc: Granted job allocation 31`.
pub fn granted_job(salloc_stderr: &str) -> Option<String> {
    salloc_stderr.lines().find_map(|l| {
        let id = l.split("Granted job allocation ").nth(1)?.trim();
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
    })
}

/// `squeue -h -t all -j J -o '%T|%N'` → the job's state and its nodes.
pub fn job_state(squeue: &str) -> Option<(String, Vec<String>)> {
    let line = squeue.lines().find(|l| !l.trim().is_empty())?;
    let (state, nodes) = line.trim().split_once('|')?;
    Some((state.to_string(), expand_hostlist(nodes).ok()?))
}

/// The partition named by `--slurm-opt` (`-p X`, `-pX`, `--partition X`, `--partition=X`), so that the
/// node count asks the same partition the allocation will use.
pub fn partition_of(opts: &[String]) -> Option<String> {
    let mut it = opts.iter().flat_map(|o| o.split_whitespace());
    while let Some(o) = it.next() {
        if o == "-p" || o == "--partition" {
            return it.next().map(str::to_string);
        }
        if let Some(p) = o.strip_prefix("--partition=").or_else(|| o.strip_prefix("-p")) {
            return Some(p.to_string());
        }
    }
    None
}

/// `--slurm-opt` values as srun/salloc arguments: each value may hold several words (`-p debug`).
pub fn opt_words(opts: &[String]) -> Vec<String> {
    opts.iter().flat_map(|o| o.split_whitespace().map(str::to_string)).collect()
}

/// The allocation for `wanted` concurrent executions and a note when they cannot all get their own node.
/// `--spread nodes` asks for one node per execution (as many as are usable), `any` for `wanted` tasks
/// wherever Slurm puts them.
pub fn allocation_argv(
    wanted: usize,
    usable: usize,
    spread: Spread,
    opts: &[String],
) -> (Vec<String>, Option<String>) {
    let mut argv: Vec<String> =
        ["--no-shell", "--no-kill", &format!("--immediate={IMMEDIATE_SECS}"), "-J", "tmr"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut note = None;
    match spread {
        Spread::Nodes => {
            let n = wanted.min(usable).max(1);
            if n < wanted {
                note = Some(format!(
                    "only {n} usable node(s) for {wanted} concurrent executions: some share a node, so \
                     a fault of that machine can hit more than one"
                ));
            }
            argv.push(format!("--nodes={n}"));
        }
        Spread::Any => argv.push(format!("--ntasks={}", wanted.max(1))),
    }
    argv.extend(opt_words(opts));
    (argv, note)
}

/// The srun arguments (after `srun`) that run one replica as a step of `job_id` on `node`; the command
/// follows. `-QQ` keeps stdout/stderr the command's own, byte for byte; `--overlap` lets steps share a
/// node's CPUs, so that a hunt's runs or a rescheduled replica never queue behind a sibling.
pub fn step_argv(job_id: &str, node: &str, opts: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "-QQ".into(),
        format!("--jobid={job_id}"),
        "--overlap".into(),
        "-N1".into(),
        "-n1".into(),
        "-w".into(),
        node.into(),
    ];
    argv.extend(opt_words(opts));
    argv.push("--".into());
    argv
}

/// The node for `job` among the healthy nodes of the allocation: replica i on the i-th (so that the
/// replicas of a round are spread and a replica keeps its node across rounds), a hunt's run k on the
/// k-th, round robin.
pub fn choose_node<'a>(healthy: &'a [String], job: &Job) -> Option<&'a str> {
    if healthy.is_empty() {
        return None;
    }
    let slot = if job.replicas == 1 { job.round } else { job.replica };
    Some(healthy[slot % healthy.len()].as_str())
}

/// One execution as the suspect-node analysis sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub round: usize,
    pub node: String,
    /// It agreed with the voted majority.
    pub agrees: bool,
}

/// A node whose replicas were in the minority of every disagreeing round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suspect {
    pub node: String,
    pub minority_rounds: usize,
    pub disagreeing_rounds: usize,
}

impl Suspect {
    pub fn describe(&self) -> String {
        format!(
            "replica on {} was in the minority in {} of {} disagreeing rounds: suspect node {}",
            self.node, self.minority_rounds, self.disagreeing_rounds, self.node
        )
    }
}

/// The node that was the whole minority of every round where some replica disagreed with the majority:
/// each such round's dissenters all ran there, and none of its replicas there agreed. One disagreeing
/// round is not evidence about a machine (a transient fault hits some node), so at least two are needed;
/// a flaky program spreads its dissent over the nodes, which this rejects as soon as two nodes dissent in
/// a round or the minority moves.
pub fn suspect_node(runs: &[Placed]) -> Option<Suspect> {
    let mut rounds: Vec<usize> = runs.iter().filter(|p| !p.agrees).map(|p| p.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    if rounds.len() < 2 {
        return None;
    }
    let mut suspect: Option<&str> = None;
    for &r in &rounds {
        let here = || runs.iter().filter(move |p| p.round == r);
        let mut dissenting: Vec<&str> = here().filter(|p| !p.agrees).map(|p| p.node.as_str()).collect();
        dissenting.sort_unstable();
        dissenting.dedup();
        let [node] = dissenting.as_slice() else { return None };
        if here().any(|p| p.node == *node && p.agrees) || suspect.is_some_and(|s| s != *node) {
            return None;
        }
        suspect = Some(node);
    }
    suspect.map(|node| Suspect {
        node: node.to_string(),
        minority_rounds: rounds.len(),
        disagreeing_rounds: rounds.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn host_lists_expand_like_scontrol_show_hostnames() {
        assert_eq!(expand_hostlist("n[1-3]").unwrap(), s(&["n1", "n2", "n3"]));
        assert_eq!(expand_hostlist("n[1,3]").unwrap(), s(&["n1", "n3"]));
        assert_eq!(expand_hostlist("n2").unwrap(), s(&["n2"]));
        assert_eq!(expand_hostlist("n1,n3").unwrap(), s(&["n1", "n3"]));
        assert_eq!(
            expand_hostlist("gpu[08-10,12],login").unwrap(),
            s(&["gpu08", "gpu09", "gpu10", "gpu12", "login"])
        );
        assert_eq!(expand_hostlist("").unwrap(), Vec::<String>::new());
        for bad in ["n[1-", "n[3-1]", "n[a-b]", "n[1-2]x[3]"] {
            assert!(expand_hostlist(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_idle_or_mixed_responding_nodes_are_usable() {
        let sinfo = "n1 idle\nn2 down*\nn3 mixed\nn4 idle*\nn5 allocated\nn6 drained\n";
        assert_eq!(usable_nodes(sinfo), s(&["n1", "n3"]));
    }

    #[test]
    fn salloc_and_squeue_outputs_are_read() {
        assert_eq!(granted_job("salloc: Granted job allocation 31\n").as_deref(), Some("31"));
        assert_eq!(granted_job("salloc: error: Unable to allocate resources: busy\n"), None);
        assert_eq!(job_state("RUNNING|n[1,3]\n"), Some(("RUNNING".into(), s(&["n1", "n3"]))));
        assert_eq!(job_state(""), None);
    }

    #[test]
    fn partitions_are_found_in_every_spelling() {
        assert_eq!(partition_of(&s(&["-p debug"])).as_deref(), Some("debug"));
        assert_eq!(partition_of(&s(&["-p", "debug"])).as_deref(), Some("debug"));
        assert_eq!(partition_of(&s(&["-pdebug"])).as_deref(), Some("debug"));
        assert_eq!(partition_of(&s(&["--time=5", "--partition=gpu"])).as_deref(), Some("gpu"));
        assert_eq!(partition_of(&s(&["--partition", "gpu"])).as_deref(), Some("gpu"));
        assert_eq!(partition_of(&s(&["-t 5"])), None);
    }

    #[test]
    fn allocations_spread_over_nodes_or_pack_tasks() {
        let (argv, note) = allocation_argv(3, 3, Spread::Nodes, &s(&["-p local", "--time=5"]));
        assert!(argv.contains(&"--no-kill".to_string()) && argv.contains(&"--nodes=3".to_string()));
        assert!(argv.iter().any(|a| a.starts_with("--immediate=")));
        assert!(argv.ends_with(&s(&["-p", "local", "--time=5"])));
        assert_eq!(note, None);
        let (argv, note) = allocation_argv(5, 3, Spread::Nodes, &[]);
        assert!(argv.contains(&"--nodes=3".to_string()));
        assert!(note.unwrap().contains("only 3 usable node(s) for 5"));
        let (argv, note) = allocation_argv(3, 1, Spread::Any, &[]);
        assert!(argv.contains(&"--ntasks=3".to_string()) && note.is_none());
    }

    #[test]
    fn a_step_names_its_job_node_and_options_before_the_command() {
        assert_eq!(
            step_argv("42", "n2", &s(&["-t 5"])),
            s(&["-QQ", "--jobid=42", "--overlap", "-N1", "-n1", "-w", "n2", "-t", "5", "--"])
        );
    }

    #[test]
    fn replicas_take_distinct_nodes_and_runs_go_round_robin() {
        let nodes = s(&["n1", "n2", "n3"]);
        let job = |replica, replicas, round| Job { replica, replicas, round };
        let picked: Vec<&str> = (0..3).map(|r| choose_node(&nodes, &job(r, 3, 0)).unwrap()).collect();
        assert_eq!(picked, ["n1", "n2", "n3"]);
        // A rerun round keeps each replica on its node; a hunt's runs cycle.
        assert_eq!(choose_node(&nodes, &job(1, 3, 4)), Some("n2"));
        let runs: Vec<&str> = (0..4).map(|k| choose_node(&nodes, &job(0, 1, k)).unwrap()).collect();
        assert_eq!(runs, ["n1", "n2", "n3", "n1"]);
        // After n1 failed, replica 0 moves to a healthy node.
        assert_eq!(choose_node(&s(&["n2", "n3"]), &job(0, 3, 0)), Some("n2"));
        assert_eq!(choose_node(&[], &job(0, 3, 0)), None);
    }

    fn placed(round: usize, node: &str, agrees: bool) -> Placed {
        Placed { round, node: node.into(), agrees }
    }

    #[test]
    fn a_node_always_in_the_minority_is_suspect() {
        let mut runs = Vec::new();
        for round in 0..3 {
            runs.push(placed(round, "n1", true));
            runs.push(placed(round, "n2", false));
            runs.push(placed(round, "n3", true));
        }
        let s = suspect_node(&runs).unwrap();
        assert_eq!((s.node.as_str(), s.minority_rounds, s.disagreeing_rounds), ("n2", 3, 3));
        assert_eq!(
            s.describe(),
            "replica on n2 was in the minority in 3 of 3 disagreeing rounds: suspect node n2"
        );
    }

    #[test]
    fn no_suspect_from_one_round_scattered_minorities_or_unanimity() {
        let one = [placed(0, "n1", true), placed(0, "n2", false), placed(0, "n3", true)];
        assert_eq!(suspect_node(&one), None);
        let scattered = [
            placed(0, "n1", true),
            placed(0, "n2", false),
            placed(0, "n3", true),
            placed(1, "n1", false),
            placed(1, "n2", true),
            placed(1, "n3", true),
        ];
        assert_eq!(suspect_node(&scattered), None);
        let agree: Vec<Placed> = (0..3).map(|r| placed(r, "n1", true)).collect();
        assert_eq!(suspect_node(&agree), None);
        // A rerun round where n2's replica agreed clears it.
        let cleared = [
            placed(0, "n2", false),
            placed(0, "n1", true),
            placed(1, "n2", false),
            placed(1, "n1", true),
            placed(2, "n2", true),
            placed(2, "n3", false),
        ];
        assert_eq!(suspect_node(&cleared), None);
        // A flaky program: the voted round's minority on n3, then two dissenters in the rerun round.
        let flaky = [
            placed(0, "n1", true),
            placed(0, "n2", true),
            placed(0, "n3", false),
            placed(1, "n1", true),
            placed(1, "n2", false),
            placed(1, "n3", false),
        ];
        assert_eq!(suspect_node(&flaky), None);
    }
}
