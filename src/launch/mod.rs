//! Where replicas run: on this machine (the default), or as Slurm job steps on other nodes
//! (`--launcher slurm`). The choice is plain configuration ([`LaunchConfig`]) shared by `tmr`, `tmr hunt`
//! and `tmr test`; the process layer only asks a [`Placement`] for the argv that runs a job elsewhere and
//! whether the node it ran on failed. `slurm` is the pure half (argv, node lists, parsing, the suspect-node
//! analysis); `cluster` talks to Slurm (probe, allocation, node checks), every call bounded in time.

pub mod cluster;
pub mod slurm;

use anyhow::Result;
use serde::Serialize;

pub use crate::replica::placement::{NodeHealth, Placement, Wrapped};

/// `--launcher`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LauncherKind {
    #[default]
    Local,
    Slurm,
}

/// `--spread`: replicas on distinct nodes (the point of running under Slurm: no common-mode fault), or
/// wherever Slurm packs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spread {
    #[default]
    Nodes,
    Any,
}

/// How replicas are launched; part of every mode's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchConfig {
    pub kind: LauncherKind,
    pub spread: Spread,
    /// `--slurm-opt`: passed to the allocation and to every step (partition, account, time limit, …).
    pub slurm_opts: Vec<String>,
}

/// `--launcher slurm` for one run or hunt: reach Slurm, get an allocation for `wanted` concurrent
/// executions and make `launcher` run every job as a step in it. `None` with the local launcher.
pub fn attach(
    cfg: &LaunchConfig,
    launcher: &mut crate::replica::Launcher,
    wanted: usize,
) -> Result<Option<std::rc::Rc<cluster::Cluster>>> {
    if cfg.kind == LauncherKind::Local {
        return Ok(None);
    }
    let c = std::rc::Rc::new(cluster::Cluster::connect(cfg, wanted)?);
    launcher.placement = Some(c.clone());
    Ok(Some(c))
}

/// Where a run's replicas ran, what failed, and which node looks bad: the report's `slurm` section.
#[derive(Debug, Clone, Serialize)]
pub struct SlurmReport {
    #[serde(flatten)]
    pub allocation: cluster::AllocationInfo,
    /// The node of each replica of the voted round (index = replica), as finally run.
    pub replica_nodes: Vec<Option<String>>,
    /// Executions whose node failed under them: not outcomes, each rerun elsewhere.
    pub node_failures: Vec<cluster::NodeFailure>,
    pub suspect: Option<slurm::Suspect>,
    /// A hunt's runs and failing runs per node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_node: Vec<NodeTally>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeTally {
    pub node: String,
    pub runs: usize,
    pub failing: usize,
}

/// Count one run of a hunt on `node`.
pub fn tally(per_node: &mut Vec<NodeTally>, node: &str, failing: bool) {
    match per_node.iter_mut().find(|t| t.node == node) {
        Some(t) => {
            t.runs += 1;
            t.failing += failing as usize;
        }
        None => per_node.push(NodeTally { node: node.into(), runs: 1, failing: failing as usize }),
    }
}

/// The report's lines about Slurm (pure, for the human summary).
pub fn human_lines(r: &SlurmReport) -> Vec<String> {
    let mut out = Vec::new();
    let placed: Vec<String> = r
        .replica_nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.as_ref().map(|n| format!("replica {i} on {n}")))
        .collect();
    let whose = if r.allocation.own_allocation { "allocation" } else { "the caller's allocation" };
    if placed.is_empty() {
        out.push(format!("slurm {whose} {} on {}", r.allocation.job, r.allocation.nodes.join(", ")));
    } else {
        out.push(format!(
            "slurm {whose} {}: {} (user, sys and rss above are srun's)",
            r.allocation.job,
            placed.join(", ")
        ));
    }
    for f in &r.node_failures {
        let what = if r.replica_nodes.len() > 1 {
            format!("replica {}", f.replica)
        } else {
            format!("run {}", f.round)
        };
        let then = match &f.rescheduled_on {
            Some(n) => format!("rescheduled on {n}"),
            None => "not rescheduled (tmr was stopped)".into(),
        };
        out.push(format!(
            "node-failure: node {} failed under {what} (round {}); not counted as an outcome, {then}",
            f.node, f.round
        ));
    }
    let mut per_node: Vec<&NodeTally> = r.per_node.iter().collect();
    per_node.sort_by(|a, b| a.node.cmp(&b.node));
    for t in per_node {
        out.push(format!("  node {}: {} run(s), {} failing", t.node, t.runs, t.failing));
    }
    if let Some(s) = &r.suspect {
        out.push(s.describe());
    }
    for n in &r.allocation.notes {
        out.push(format!("note: {n}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Parsed};

    fn args(v: &[&str]) -> Vec<std::ffi::OsString> {
        v.iter().map(Into::into).collect()
    }

    #[test]
    fn the_launcher_is_in_every_mode_s_config() {
        let Parsed::Run(c) = parse(args(&[
            "tmr",
            "--launcher",
            "slurm",
            "--spread",
            "any",
            "--slurm-opt=-p debug",
            "--slurm-opt",
            "--time=5",
            "--",
            "true",
        ])) else {
            panic!("not a run")
        };
        assert_eq!(
            c.launch,
            LaunchConfig {
                kind: LauncherKind::Slurm,
                spread: Spread::Any,
                slurm_opts: vec!["-p debug".into(), "--time=5".into()]
            }
        );
        assert_eq!(c.command, args(&["true"]));
        let Parsed::Run(c) = parse(args(&["tmr", "true"])) else { panic!("not a run") };
        assert_eq!(c.launch, LaunchConfig::default());
        let Parsed::Hunt(h) = parse(args(&["tmr", "hunt", "--launcher", "slurm", "true"])) else {
            panic!("not a hunt")
        };
        assert_eq!((h.launch.kind, h.launch.spread), (LauncherKind::Slurm, Spread::Nodes));
        let Parsed::Exit { code, .. } = parse(args(&["tmr", "--launcher", "pbs", "true"])) else {
            panic!("pbs accepted")
        };
        assert_eq!(code, crate::exit::TMR_ERROR);
    }

    #[test]
    fn the_summary_names_nodes_failures_and_the_suspect() {
        let r = SlurmReport {
            allocation: cluster::AllocationInfo {
                job: "42".into(),
                own_allocation: true,
                nodes: vec!["n1".into(), "n3".into()],
                failed_nodes: vec!["n2".into()],
                notes: vec![],
            },
            replica_nodes: vec![Some("n1".into()), Some("n3".into()), Some("n3".into())],
            node_failures: vec![cluster::NodeFailure {
                replica: 1,
                round: 0,
                node: "n2".into(),
                rescheduled_on: Some("n3".into()),
            }],
            suspect: None,
            per_node: vec![],
        };
        let lines = human_lines(&r);
        assert!(
            lines[0].starts_with("slurm allocation 42: replica 0 on n1, replica 1 on n3, replica 2 on n3")
        );
        assert!(
            lines[1].contains("node n2 failed under replica 1") && lines[1].ends_with("rescheduled on n3")
        );
        assert!(lines[1].contains("not counted as an outcome"));
    }
}
