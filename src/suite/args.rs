//! Command-line surgery for `runner`: which options of each runner take a value (so a value is never
//! mistaken for a test filter or a path), and small pure helpers that find, drop and split arguments.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// cargo test options that take a value (the next argument), so that value is not mistaken for the
/// test-name filter.
pub(super) const CARGO_VALUE_OPTS: &[&str] = &[
    "-p",
    "--package",
    "--exclude",
    "--test",
    "--bin",
    "--bench",
    "--example",
    "-F",
    "--features",
    "-j",
    "--jobs",
    "--target",
    "--target-dir",
    "--manifest-path",
    "--profile",
    "--color",
    "--config",
    "-Z",
    "--message-format",
    "--lockfile-path",
    "--artifact-dir",
];
/// libtest options that take a value.
pub(super) const LIBTEST_VALUE_OPTS: &[&str] =
    &["--test-threads", "--skip", "--logfile", "--format", "--color", "-Z", "--shuffle-seed"];
pub(super) const PYTEST_VALUE_OPTS: &[&str] = &[
    "-k",
    "-m",
    "-p",
    "-o",
    "-c",
    "-W",
    "-r",
    "--rootdir",
    "--basetemp",
    "--deselect",
    "--ignore",
    "--ignore-glob",
    "--confcutdir",
    "--junitxml",
    "--junit-xml",
    "--junit-prefix",
    "--log-level",
    "--log-file",
    "--log-format",
    "--tb",
    "--durations",
    "--maxfail",
    "--import-mode",
    "--capture",
    "--color",
    "--override-ini",
    "--config-file",
    "--cov",
    "--cov-report",
    "-n",
    "--numprocesses",
    "--timeout",
];
/// go test (build and test) flags that take a value when written apart (`-run X`).
pub(super) const GO_VALUE_OPTS: &[&str] = &[
    "-run",
    "-skip",
    "-bench",
    "-benchtime",
    "-count",
    "-cpu",
    "-parallel",
    "-timeout",
    "-shuffle",
    "-tags",
    "-p",
    "-o",
    "-exec",
    "-coverprofile",
    "-covermode",
    "-coverpkg",
    "-cpuprofile",
    "-memprofile",
    "-blockprofile",
    "-mutexprofile",
    "-trace",
    "-outputdir",
    "-vet",
    "-ldflags",
    "-gcflags",
    "-asmflags",
    "-mod",
    "-modfile",
    "-pkgdir",
    "-toolexec",
    "-overlay",
    "-C",
    "-list",
    "-fuzz",
    "-fuzztime",
];
pub(super) const PROVE_VALUE_OPTS: &[&str] = &[
    "-I",
    "-e",
    "--exec",
    "--ext",
    "-j",
    "--jobs",
    "--harness",
    "--formatter",
    "-P",
    "-M",
    "--rules",
    "--state",
    "--source",
    "-a",
    "--archive",
];

/// A string matching itself in a POSIX extended regex (bats matches `-f` with bash's `=~`), where a
/// backslash before an ordinary character is undefined, so only the special ones get one.
pub(super) fn ere_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.[](){}*+?|^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// argv[0]'s file name.
pub(super) fn program(argv: &[OsString]) -> Option<String> {
    let first = argv.first()?;
    Some(Path::new(first).file_name().unwrap_or(first.as_os_str()).to_string_lossy().into_owned())
}

/// Index of cargo's subcommand (skipping `+toolchain` and options before it).
pub(super) fn cargo_subcommand(argv: &[OsString]) -> Option<usize> {
    (1..argv.len()).find(|&i| {
        let a = argv[i].to_string_lossy();
        !a.starts_with('+') && !a.starts_with('-')
    })
}

/// Index of `pytest` in `python [opts] -m pytest ...`.
pub(super) fn python_module(argv: &[OsString]) -> Option<usize> {
    let m = argv.iter().position(|a| a == "-m")?;
    (argv.get(m + 1)? == "pytest").then_some(m + 1)
}

/// `target/<profile>/deps/NAME-<16 hex>`, how cargo names test binaries.
pub(super) fn is_libtest_binary(arg: &OsStr) -> bool {
    let p = Path::new(arg);
    let in_deps = p.parent().and_then(Path::file_name).is_some_and(|d| d == "deps");
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let hashed =
        name.rsplit_once('-').is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    in_deps && hashed
}

/// `go test` arguments before `-args`, and `-args` with what follows (the test binary's own); `-args`
/// only counts after `go test`.
pub(super) fn go_split_args(argv: &[OsString]) -> (&[OsString], &[OsString]) {
    let at = argv.iter().skip(2).position(|a| a == "-args" || a == "--args").map_or(argv.len(), |i| i + 2);
    argv.split_at(at)
}

pub(super) fn split_dashdash(argv: &[OsString]) -> (&[OsString], Option<&[OsString]>) {
    match argv.iter().position(|a| a == "--") {
        Some(i) => (&argv[..i], Some(&argv[i + 1..])),
        None => (argv, None),
    }
}

/// libtest arguments with its output forced to the human format the parser reads (`--quiet` and
/// `--format X` removed, `--format pretty` added).
pub(super) fn libtest_human(args: &[OsString]) -> Vec<OsString> {
    let mut out = drop_option(args, &["--format"]);
    out.retain(|a| a != "-q" && a != "--quiet");
    out.extend(["--format".into(), "pretty".into()]);
    out
}

/// libtest arguments selecting only `name`: its filters and `--exact` dropped (libtest refuses a second
/// `--exact`), then `--exact NAME`.
pub(super) fn libtest_filter(args: &[OsString], name: &str) -> Vec<OsString> {
    let mut out = drop_positionals(args, LIBTEST_VALUE_OPTS);
    out.retain(|a| a != "--exact");
    out.extend(["--exact".into(), name.into()]);
    out
}

/// Arguments without the positional ones (options and their values kept).
pub(super) fn drop_positionals(args: &[OsString], value_opts: &[&str]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if !s.starts_with('-') || s == "-" {
            continue;
        }
        out.push(a.clone());
        if value_opts.contains(&s.as_ref()) {
            out.extend(it.next().cloned());
        }
    }
    out
}

/// Arguments without the given options (`-x VALUE`, `--opt VALUE` and `--opt=VALUE` for those that
/// take a value; plain flags otherwise).
pub(super) fn drop_option(args: &[OsString], opts: &[&str]) -> Vec<OsString> {
    let takes_value =
        |o: &str| !matches!(o, "--lf" | "--last-failed" | "--ff" | "--failed-first" | "--sw" | "--stepwise");
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if let Some(o) = opts.iter().find(|o| s == **o) {
            if takes_value(o) {
                it.next();
            }
        } else if !opts.iter().any(|o| o.starts_with("--") && s.starts_with(&format!("{o}="))) {
            out.push(a.clone());
        }
    }
    out
}
