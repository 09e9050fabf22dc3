//! The process layer's seam for remote launchers (`--launcher slurm`): how a job is wrapped to run on a
//! node, and whether a node failed under it. Defined here and implemented in `crate::launch`, so the
//! dependency points one way: launchers know jobs, jobs do not know launchers.

use std::ffi::CString;

use anyhow::Result;
use serde::Serialize;

use super::Job;

/// The program and argv prefix that run one job on a chosen node; the job's own argv follows.
pub struct Wrapped {
    pub path: CString,
    pub prefix: Vec<CString>,
    pub node: String,
}

/// What a node's health says about a finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeHealth {
    Healthy,
    /// The node failed while the job ran: the record is not the program's outcome.
    Failed,
}

/// The process layer's view of a remote launcher. Implemented by `launch::cluster::Cluster`: the trait lives here so that
/// the process layer does not import the launchers (they import it).
pub trait Placement {
    /// The srun argv prefix that runs `job` on a healthy node.
    fn wrap(&self, job: &Job) -> Result<Wrapped>;
    /// Asked after a job on `node` ended, at the latest at `ended`. A failed node is excluded from then
    /// on; an allocation that is gone altogether is an error (nothing more can run).
    fn health(&self, node: &str, ended: std::time::Instant) -> Result<NodeHealth>;
}

/// One replica's node failure, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFailure {
    pub replica: usize,
    pub round: usize,
    pub node: String,
    /// The node its rerun was scheduled on (absent if tmr was stopped first).
    pub rescheduled_on: Option<String>,
}
