//! Command-line parsing: the only module that knows clap. Turns argv into a validated [`Config`]; every
//! mistake becomes a one-line error with exit code 125, never clap's 2, which commands use themselves.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use regex::bytes::Regex;

use crate::config::{parse_timeout, Config, Format, Timeout};
use crate::exit;
use crate::fingerprint::Compare;

const EXAMPLES: &str = "\
EXAMPLES
  tmr cargo test                            3 replicas, voted output and exit code
  tmr -n 5 -- ./solver --input x.dat        5 replicas; `--` ends tmr's options
  tmr --sequential -- make check            one replica after another (shared ports, files)
  tmr --timeout 30s -- ./flaky.sh           a replica running 30 s is killed: outcome \"timeout\"
  tmr --timeout 3x -- ./job                 killed when 3x slower than the finished majority
  tmr --mask '[0-9.]+ ?m?s' -- cargo bench  blank out durations before comparing
  tmr --format json -o report.json -- ./job machine-readable report

Each replica gets TMR_REPLICA (0..N-1), TMR_REPLICAS (N) and TMR_ROUND (0 for the voted round).
stdin is read once and given to every replica; a terminal is not shared (replicas read /dev/null).
";

#[derive(Debug, Parser)]
#[command(
    name = "tmr",
    version,
    about = "Run a command as N replicas, majority-vote their exit status and output, and deliver the winner.",
    long_about = None,
    after_help = format!("{EXAMPLES}\n{}", exit::TABLE),
    override_usage = "tmr [OPTIONS] [--] COMMAND [ARGS]...",
)]
struct RunArgs {
    /// Number of replicas (1 or more). An even number detects disagreement but cannot always decide it.
    #[arg(short = 'n', long = "replicas", value_name = "N", default_value_t = 3, value_parser = parse_replicas)]
    replicas: usize,

    /// Run replicas one after another instead of in parallel.
    #[arg(long)]
    sequential: bool,

    /// Which results must agree, comma-separated.
    #[arg(long, value_name = "FIELDS", value_enum, value_delimiter = ',', default_value = "exit,stdout")]
    compare: Vec<Field>,

    /// Regex blanked out of each compared line before voting (repeatable). Delivered output stays raw.
    #[arg(long = "mask", value_name = "REGEX", value_parser = parse_mask)]
    masks: Vec<Regex>,

    /// Per-replica limit: a duration (500ms, 30s, 2m, 1h) or Nx, a multiple of the finished majority's
    /// median wall time (floor 1s). A timed-out replica gets SIGTERM, then SIGKILL 2s later.
    #[arg(long, value_name = "DURATION|Nx", value_parser = parse_timeout)]
    timeout: Option<Timeout>,

    /// Exit 121 when any replica disagreed, even if a majority won.
    #[arg(long)]
    strict: bool,

    /// No summary when all replicas agree.
    #[arg(short, long)]
    quiet: bool,

    /// Write the report to FILE instead of stderr.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    format: FormatArg,

    /// The command to run, and its arguments (passed through untouched).
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Field {
    Exit,
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Human,
    Json,
}

fn parse_replicas(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(1..=256).contains(&n) {
        return Err(format!("must be between 1 and 256, got {n}"));
    }
    Ok(n)
}

fn parse_mask(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| format!("invalid regex: {e}"))
}

/// What the caller should do after parsing.
pub enum Parsed {
    Run(Config),
    /// `--help`, `--version` or an error: print `text` to stdout (code 0) or stderr, and exit with `code`.
    Exit {
        text: String,
        code: i32,
    },
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Parsed {
    match RunArgs::try_parse_from(args) {
        Ok(a) => Parsed::Run(a.into_config()),
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => exit::TMR_ERROR,
            };
            let text = if code == 0 { e.render().to_string() } else { one_line_error(&e) };
            Parsed::Exit { text, code }
        }
    }
}

/// clap's error without its usage block: one line saying what is wrong, one pointing to --help.
fn one_line_error(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
    format!("tmr: {first}\ntmr: try 'tmr --help'\n")
}

impl RunArgs {
    fn into_config(self) -> Config {
        let compare = Compare {
            exit: self.compare.contains(&Field::Exit),
            stdout: self.compare.contains(&Field::Stdout),
            stderr: self.compare.contains(&Field::Stderr),
        };
        Config {
            command: self.command,
            replicas: self.replicas,
            sequential: self.sequential,
            compare,
            masks: self.masks,
            timeout: self.timeout,
            strict: self.strict,
            quiet: self.quiet,
            output: self.output,
            format: match self.format {
                FormatArg::Human => Format::Human,
                FormatArg::Json => Format::Json,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(args: &[&str]) -> Config {
        match parse(args.iter().map(OsString::from)) {
            Parsed::Run(c) => c,
            Parsed::Exit { text, .. } => panic!("unexpected exit: {text}"),
        }
    }

    fn parse_err(args: &[&str]) -> (String, i32) {
        match parse(args.iter().map(OsString::from)) {
            Parsed::Run(_) => panic!("expected an error for {args:?}"),
            Parsed::Exit { text, code } => (text, code),
        }
    }

    #[test]
    fn command_flags_pass_through_untouched() {
        let c = parse_ok(&["tmr", "ls", "-l", "--color", "-n", "5"]);
        assert_eq!(c.command, ["ls", "-l", "--color", "-n", "5"]);
        assert_eq!(c.replicas, 3);
        let c = parse_ok(&["tmr", "-n", "5", "--", "--weird-name", "-x"]);
        assert_eq!(c.command, ["--weird-name", "-x"]);
        assert_eq!(c.replicas, 5);
    }

    #[test]
    fn defaults_compare_exit_and_stdout() {
        let c = parse_ok(&["tmr", "true"]);
        assert_eq!(c.compare, Compare { exit: true, stdout: true, stderr: false });
        let c = parse_ok(&["tmr", "--compare", "exit,stderr", "true"]);
        assert_eq!(c.compare, Compare { exit: true, stdout: false, stderr: true });
    }

    #[test]
    fn mistakes_are_one_line_errors_with_code_125() {
        for args in [
            &["tmr", "--replica", "3", "ls"][..],
            &["tmr", "-n", "0", "true"],
            &["tmr", "--timeout", "soon", "true"],
            &["tmr", "--mask", "(", "true"],
            &["tmr"],
        ] {
            let (text, code) = parse_err(args);
            assert_eq!(code, 125, "{args:?}");
            assert!(text.starts_with("tmr: "), "{text}");
            assert_eq!(text.lines().count(), 2, "{text}");
        }
    }

    #[test]
    fn help_shows_examples_and_exit_codes() {
        let (text, code) = parse_err(&["tmr", "--help"]);
        assert_eq!(code, 0);
        assert!(text.contains("EXAMPLES") && text.contains("120") && text.contains("--timeout"));
    }
}
