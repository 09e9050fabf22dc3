//! Which test runner a command is, and the command lines `tmr test` runs through it: each replica's
//! (with the runner told to report per test, in a form the parsers read) and a rerun of ONE test through
//! the runner's own filter. Pure functions over argv (the only look at the disk is the `is_file`
//! callback pytest's node ids need). A rerun's argv is then passed through [`Runner::prepare`] like
//! any other, so it reports in the same form.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::args::*;
use super::{gotest, junit, libtest, pytest, tap, ParseError, SuiteRun, TestId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runner {
    /// `cargo test` or a libtest binary: the human format on stdout.
    Libtest,
    /// pytest: JUnit XML in a per-replica file tmr names.
    Pytest,
    /// bats or `prove`: TAP on stdout.
    Tap,
    /// Any runner writing JUnit XML to a path the user gives (`--junit-in`); never detected.
    Junit,
    /// `go test -json`: test2json events on stdout.
    GoTest,
}

impl Runner {
    pub fn name(self) -> &'static str {
        match self {
            Runner::Libtest => "libtest",
            Runner::Pytest => "pytest",
            Runner::Tap => "tap",
            Runner::Junit => "junit",
            Runner::GoTest => "go",
        }
    }

    /// For `--runner NAME`.
    pub fn from_name(name: &str) -> Option<Runner> {
        [Runner::Libtest, Runner::Pytest, Runner::Tap, Runner::Junit, Runner::GoTest]
            .into_iter()
            .find(|r| r.name() == name)
    }

    /// The runner a command line runs: `cargo test`, a libtest binary (`target/*/deps/NAME-HASH`),
    /// `pytest`, `python -m pytest`, `bats`, `prove`. Anything else needs `--runner`.
    pub fn detect(argv: &[OsString]) -> Option<Runner> {
        let prog = program(argv)?;
        match prog.as_str() {
            "cargo" => {
                let (cargo, _) = split_dashdash(argv);
                cargo_subcommand(cargo).filter(|&i| cargo[i] == "test").map(|_| Runner::Libtest)
            }
            "pytest" | "pytest-3" | "py.test" => Some(Runner::Pytest),
            "bats" | "prove" => Some(Runner::Tap),
            "go" => (argv.get(1).is_some_and(|a| a == "test")).then_some(Runner::GoTest),
            p if p.starts_with("python") && python_module(argv).is_some() => Some(Runner::Pytest),
            _ if is_libtest_binary(&argv[0]) => Some(Runner::Libtest),
            _ => None,
        }
    }

    /// Whether results come from a file the runner writes (pytest, JUnit) rather than its stdout.
    pub fn reads_file(self) -> bool {
        matches!(self, Runner::Pytest | Runner::Junit)
    }

    /// The argv one replica runs. `result_file` is that replica's own path for pytest's XML.
    pub fn prepare(self, argv: &[OsString], result_file: Option<&Path>) -> Result<Vec<OsString>> {
        if argv.is_empty() {
            bail!("no command to run");
        }
        let prog = program(argv).unwrap_or_default();
        let mut out: Vec<OsString>;
        match self {
            Runner::Libtest if prog == "cargo" => {
                let (cargo, rest) = split_dashdash(argv);
                // Not quiet: cargo's `Running LABEL (BINARY)` lines name each test binary (the tests'
                // suites, and what a rerun runs); they go to stderr, which tmr keeps to itself.
                out = cargo.iter().filter(|a| *a != "-q" && *a != "--quiet").cloned().collect();
                let sub = cargo_subcommand(&out).context("`cargo` without a subcommand")?;
                if !cargo.iter().any(|a| a == "--no-fail-fast") {
                    // Otherwise the first failing test binary stops cargo, and later binaries' tests go missing.
                    out.insert(sub + 1, "--no-fail-fast".into());
                }
                out.push("--".into());
                out.extend(libtest_human(rest.unwrap_or(&[])));
            }
            Runner::Libtest => {
                out = vec![argv[0].clone()];
                out.extend(libtest_human(&argv[1..]));
            }
            Runner::Pytest => {
                let file = result_file.context("pytest needs a per-replica path for its JUnit XML")?;
                // Verbose, whatever the user asked: the console then names each test as it starts.
                let quiet = |a: &OsString| a == "-q" || a == "--quiet" || a == "-qq";
                out = argv.iter().filter(|a| !quiet(a)).cloned().collect();
                if !out.iter().any(|a| a == "-v" || a == "--verbose") {
                    out.push("-v".into());
                }
                let mut xml = OsString::from("--junitxml=");
                xml.push(file);
                // The last --junitxml wins; the output of failing tests only goes into the XML.
                out.extend([xml, "-o".into(), "junit_logging=out-err".into()]);
                out.extend(["-o".into(), "junit_log_passing_tests=False".into()]);
            }
            Runner::Tap if prog == "bats" => {
                out = vec![argv[0].clone(), "--tap".into()];
                let mut it = argv[1..].iter();
                while let Some(a) = it.next() {
                    match a.to_str().unwrap_or("") {
                        "-F" | "--formatter" => {
                            it.next();
                        }
                        "-t" | "--tap" | "-p" | "--pretty" => {}
                        s if s.starts_with("--formatter=") => {}
                        _ => out.push(a.clone()),
                    }
                }
            }
            Runner::Tap if prog == "prove" => {
                out = vec![argv[0].clone()];
                // Verbose: per-test lines; merged: diagnostics (stderr) land after their test.
                if !argv.iter().any(|a| a == "-v" || a == "--verbose") {
                    out.push("-v".into());
                }
                if !argv.iter().any(|a| a == "--merge") {
                    out.push("--merge".into());
                }
                out.extend(argv[1..].iter().cloned());
            }
            Runner::GoTest => {
                if argv.len() < 2 {
                    bail!("`go test` expected");
                }
                out = argv.to_vec();
                let (flags, _) = go_split_args(argv);
                if !flags.iter().any(|a| a == "-json" || a == "--json" || a == "-json=true") {
                    out.insert(2, "-json".into());
                }
            }
            Runner::Tap | Runner::Junit => out = argv.to_vec(),
        }
        Ok(out)
    }

    /// The argv that reruns the test `id` alone, through the runner's own filter. `is_file` answers
    /// whether a path (relative to where the rerun runs) is a file: pytest node ids need it, and are
    /// relative to pytest's rootdir, so a pytest rerun runs there (`pytest::rootdir` of a replica's
    /// console; usually the directory the suite ran in).
    pub fn rerun(
        self,
        argv: &[OsString],
        id: &TestId,
        is_file: impl Fn(&str) -> bool,
    ) -> Result<Vec<OsString>> {
        if argv.is_empty() {
            bail!("no command to run");
        }
        let prog = program(argv).unwrap_or_default();
        let mut out: Vec<OsString>;
        match self {
            Runner::Libtest if prog == "cargo" => {
                let (cargo, rest) = split_dashdash(argv);
                let sub = cargo_subcommand(cargo).context("`cargo` without a subcommand")?;
                out = cargo[..=sub].to_vec();
                out.extend(drop_positionals(&cargo[sub + 1..], CARGO_VALUE_OPTS));
                let select: Vec<OsString> =
                    libtest::cargo_target_args(&id.suite).into_iter().map(OsString::from).collect();
                // cargo refuses a flag given twice (`--lib --lib`).
                if !select.is_empty() && !out.windows(select.len()).any(|w| w == select.as_slice()) {
                    out.extend(select);
                }
                out.push("--".into());
                let mut filter = libtest_filter(rest.unwrap_or(&[]), &id.name);
                if id.suite.starts_with("Doc-tests ") {
                    // rustdoc's harness never matches `--exact` (tried with cargo 1.95); the name, with its
                    // file and line, is unique as a substring.
                    filter.retain(|a| a != "--exact");
                }
                out.extend(filter);
            }
            Runner::Libtest => {
                out = vec![argv[0].clone()];
                out.extend(libtest_filter(&argv[1..], &id.name));
            }
            Runner::Pytest => {
                let skip = python_module(argv).map_or(1, |m| m + 1);
                out = argv[..skip].to_vec();
                let kept = drop_positionals(&argv[skip..], PYTEST_VALUE_OPTS);
                out.extend(drop_option(
                    &kept,
                    &["-k", "--lf", "--last-failed", "--ff", "--failed-first", "--sw", "--stepwise"],
                ));
                out.push(junit::pytest_nodeid(id, is_file).into());
            }
            Runner::Tap if prog == "bats" => {
                let kept = drop_option(&argv[1..], &["-f", "--filter"]);
                out = vec![argv[0].clone(), "-f".into(), format!("^{}$", ere_escape(&id.name)).into()];
                out.extend(kept);
            }
            Runner::Tap if prog == "prove" => {
                if id.suite.is_empty() {
                    bail!("prove reported {id} without its file: cannot rerun it alone");
                }
                // TAP has no per-test filter: the test's file is the smallest thing prove can rerun.
                out = vec![argv[0].clone()];
                out.extend(drop_positionals(&argv[1..], PROVE_VALUE_OPTS));
                out.push(id.suite.clone().into());
            }
            Runner::Tap => bail!("this TAP runner has no known per-test filter: use bats or prove"),
            Runner::Junit => {
                bail!("a generic JUnit runner has no known per-test filter: {id} cannot be rerun alone")
            }
            Runner::GoTest => {
                if id.suite.is_empty() || argv.len() < 2 {
                    bail!("go reported {id} without its package, or no `go test`: cannot rerun it alone");
                }
                let (flags, binary_args) = go_split_args(argv);
                out = argv[..2].to_vec();
                let kept = drop_positionals(&flags[2..], GO_VALUE_OPTS);
                out.extend(drop_option(&kept, &["-run", "--run"]));
                out.extend(["-run".into(), gotest::run_pattern(&id.name).into(), id.suite.clone().into()]);
                out.extend(binary_args.iter().cloned());
            }
        }
        Ok(out)
    }

    /// Parses one replica's results: stdout and stderr for libtest and TAP, the result file's bytes for
    /// pytest and JUnit.
    pub fn parse(self, stdout: &[u8], stderr: &[u8], file: Option<&[u8]>) -> Result<SuiteRun, ParseError> {
        match self {
            Runner::Libtest => libtest::parse(stdout, stderr),
            Runner::Tap => tap::parse(stdout),
            Runner::Pytest => {
                // pytest writes its XML only when the session ends: a killed replica has none, and an
                // interrupted one stops before the test that was running; its `-v` console fills in.
                let console = pytest::parse(stdout);
                match file.filter(|f| !f.iter().all(u8::is_ascii_whitespace)) {
                    None => Ok(console),
                    Some(f) => {
                        let mut run = junit::parse(f)?;
                        if !run.complete {
                            for r in console.results {
                                if run.get(&r.name).is_none() {
                                    run.results.push(r);
                                }
                            }
                        }
                        Ok(run)
                    }
                }
            }
            Runner::Junit => junit::parse(file.unwrap_or_default()),
            Runner::GoTest => gotest::parse(stdout),
        }
    }
}
