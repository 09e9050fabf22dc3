//! What stands in for the tracer on architectures it does not support (its register and system-call code
//! is x86-64's): the names the rest of tmr refers to, and a clear refusal. `--mem`, `--inject` and
//! `--checkpoint` are refused before any replica starts (`monitored::monitor_launcher_with`); a monitor
//! started anyway says why and exits 125.

/// Whether this build can trace replicas (`--mem`, `--inject`, `--checkpoint`).
pub const SUPPORTED: bool = false;

pub mod monitor {
    pub const ARG: &str = "__tmr-monitor";
    pub use super::SUPPORTED;

    pub fn main(_args: &[std::ffi::OsString]) -> i32 {
        crate::text::say(&super::refusal());
        crate::exit::TMR_ERROR
    }
}

pub mod inputs {
    /// The answer log's directory, passed to the monitors.
    pub const ENV: &str = "TMR_REPLOG";
}

pub fn refusal() -> String {
    format!(
        "tmr: --mem, --inject and --checkpoint trace replicas with ptrace, which this tmr supports on x86-64 only (this is {})",
        std::env::consts::ARCH
    )
}
