//! tmr: run a command as N replicas, majority-vote what they produce, and tell transient faults from
//! flaky and deterministic bugs. The binary (`main.rs`) only parses, runs and exits; everything else is
//! here so tests and benchmarks can reach the pure parts directly.

pub mod campaign;
pub mod classify;
pub mod cli;
pub mod config;
pub mod det;
pub mod diff;
pub mod digest;
pub mod epoch;
pub mod events;
pub mod exit;
pub mod fingerprint;
pub mod hunt;
pub mod inject;
pub mod launch;
pub mod mask;
pub mod memvote;
pub mod monitored;
pub mod record;
pub mod replay;
pub mod replica;
pub mod report;
pub mod reporters;
pub mod rerun;
pub mod resolve;
pub mod round;
pub mod scratch;
pub mod stats;
pub mod stream;
pub mod suite;
pub mod supervisor;
pub mod testrun;
pub mod text;
pub mod trace;
pub mod units;
pub mod vote;
