//! The determinization steps a memory vote asks of the tracer (`--mem-det`): plain configuration, parsed
//! and printed here so that the CLI and the config need not import the tracer (which exists on x86-64
//! only).

/// Determinization steps, each switchable for diagnosis (`--mem-det`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Det {
    pub aslr: bool,
    pub at_random: bool,
    pub rseq: bool,
    pub getrandom: bool,
    pub tid: bool,
    pub stack: bool,
    pub tsc: bool,
    /// Input replication (`trace::inputs`): the clock and /dev/urandom answered alike in every replica.
    pub clock: bool,
    pub urandom: bool,
    /// Vote the memory of a multithreaded replica too. Not a determinization step but a policy, spelled
    /// like one so it travels in the same list: off by default (and not in `all`), because thread
    /// scheduling makes such heaps differ from run to run, and a difference that is no fault must not turn
    /// a run nondeterministic. Off, a multithreaded replica abstains from the memory vote, with a note.
    pub strict_threads: bool,
}

impl Default for Det {
    fn default() -> Self {
        Det {
            aslr: true,
            at_random: true,
            rseq: true,
            getrandom: true,
            tid: true,
            stack: true,
            tsc: false,
            clock: true,
            urandom: true,
            strict_threads: false,
        }
    }
}

impl Det {
    pub const NAMES: [&'static str; 10] = [
        "aslr",
        "at-random",
        "rseq",
        "getrandom",
        "tid",
        "stack",
        "tsc",
        "clock",
        "urandom",
        "strict-threads",
    ];

    pub fn parse(list: &str) -> Result<Det, String> {
        let mut d = Det {
            aslr: false,
            at_random: false,
            rseq: false,
            getrandom: false,
            tid: false,
            stack: false,
            tsc: false,
            clock: false,
            urandom: false,
            strict_threads: false,
        };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
            match item {
                "all" => d = Det { tsc: true, ..Det::default() },
                "aslr" => d.aslr = true,
                "at-random" => d.at_random = true,
                "rseq" => d.rseq = true,
                "getrandom" => d.getrandom = true,
                "tid" => d.tid = true,
                "stack" => d.stack = true,
                "tsc" => d.tsc = true,
                "clock" => d.clock = true,
                "urandom" => d.urandom = true,
                "strict-threads" => d.strict_threads = true,
                other => {
                    return Err(format!(
                        "unknown determinization step '{other}': use {}, all or none",
                        Det::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(d)
    }

    pub fn to_list(self) -> String {
        let on = [
            self.aslr,
            self.at_random,
            self.rseq,
            self.getrandom,
            self.tid,
            self.stack,
            self.tsc,
            self.clock,
            self.urandom,
            self.strict_threads,
        ];
        let names: Vec<&str> = Det::NAMES.iter().zip(on).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}
