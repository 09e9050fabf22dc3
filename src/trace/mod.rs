//! The tracer: everything that runs inside the per-replica monitor process (`__tmr-monitor`), and the
//! protocol it shares with tmr. The monitor ptraces one replica (`monitor.rs`) and, as asked, makes its
//! inputs alike across replicas (`inputs.rs` over the round's shared answer log, `replog.rs`), injects
//! faults, hashes its memory (`memsnap.rs`), takes checkpoints and votes on them at aligned epochs
//! (`checkpoint.rs`, `epochvote.rs`, `scrub.rs`, `hold.rs`), and writes its snapshot (`snapfile.rs`).
//! `forkrun.rs` (`--fork`) injects the forks, from the monitor or from tmr itself.
//!
//! The process layer (`replica`) imports this module, never the reverse: it reads the snapshot file,
//! forks `--fork`'s copies and names the monitor's constants. The tracer's register and system-call
//! code is x86-64's; elsewhere `no_tracer` stands in with the names the rest of tmr refers to.

#[cfg(target_arch = "x86_64")]
mod checkpoint;
#[cfg(target_arch = "x86_64")]
mod epochvote;
#[cfg(target_arch = "x86_64")]
pub(crate) mod forkrun;
#[cfg(target_arch = "x86_64")]
mod hold;
#[cfg(target_arch = "x86_64")]
pub mod inputs;
pub mod memsnap;
#[cfg(target_arch = "x86_64")]
pub mod monitor;
#[cfg(not(target_arch = "x86_64"))]
mod no_tracer;
#[cfg(not(target_arch = "x86_64"))]
pub use no_tracer::{inputs, monitor};
#[cfg(target_arch = "x86_64")]
mod remote;
#[cfg(target_arch = "x86_64")]
mod replog;
#[cfg(target_arch = "x86_64")]
mod scrub;
pub mod snapfile;

/// The file in a run's checkpoint directory that turns aligned epochs and their vote off.
pub const CHECKPOINT_SOLO: &str = "solo";
