//! The tmr binary: parse, run, exit. Nothing else lives here.

use tmr::cli::{parse, Parsed};
use tmr::exit::{ExitError, TMR_ERROR};
use tmr::report::say;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // tmr re-executes itself as the per-replica memory monitor (`--mem`).
    if args.get(1).is_some_and(|a| a == tmr::trace::monitor::ARG) {
        std::process::exit(tmr::trace::monitor::main(&args[2..]));
    }
    if tmr::replica::stdout_was_closed() {
        say("tmr: stdout is closed (>&-): the voted output would have nowhere to go (discard it with >/dev/null)");
        std::process::exit(TMR_ERROR);
    }
    let code = match parse(args) {
        Parsed::Exit { text, code: 0 } => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(text.as_bytes());
            0
        }
        Parsed::Exit { text, code } => {
            use std::io::Write;
            // Already one line per message (cli's errors); a full or closed stderr must not panic.
            let _ = std::io::stderr().write_all(text.as_bytes());
            code
        }
        Parsed::Hunt(config) => finish(tmr::hunt::execute(&config)),
        Parsed::Campaign(config) => finish(tmr::campaign::execute(&config)),
        Parsed::Run(config) => finish(tmr::round::execute(&config)),
        Parsed::Record { argv, out, max_output } => finish(tmr::record::record(&argv, &out, max_output)),
        Parsed::Vote { files, on, strict, quiet } => {
            finish(tmr::record::vote_files(&files, on, strict, quiet))
        }
        Parsed::Test(config) => finish(tmr::testrun::execute(&config)),
    };
    std::process::exit(code);
}

/// The exit code for a finished run, or a one-line message and the code for an error. The code never
/// depends on whether the message could be written (`2>/dev/full` still exits 127 for a missing command).
fn finish(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<ExitError>() {
            Some(ee) => {
                say(&ee.message);
                ee.code
            }
            None => {
                say(&format!("tmr: error: {e:#}"));
                TMR_ERROR
            }
        },
    }
}
