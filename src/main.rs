//! The tmr binary: parse, run, exit. Nothing else lives here.

use tmr::cli::{parse, Parsed};
use tmr::exit::{ExitError, TMR_ERROR};

fn main() {
    let code = match parse(std::env::args_os()) {
        Parsed::Exit { text, code: 0 } => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(text.as_bytes());
            0
        }
        Parsed::Exit { text, code } => {
            eprint!("{text}");
            code
        }
        Parsed::Run(config) => match tmr::round::execute(&config) {
            Ok(code) => code,
            Err(e) => match e.downcast_ref::<ExitError>() {
                Some(ee) => {
                    eprintln!("{}", ee.message);
                    ee.code
                }
                None => {
                    eprintln!("tmr: error: {e:#}");
                    TMR_ERROR
                }
            },
        },
    };
    std::process::exit(code);
}
