#!/bin/sh
# Recaptures the real runner outputs in this directory from the fixture suites (fixtures/suites/).
# The parsers' tests read these files: they are what the runners installed here really print
# (cargo 1.95, pytest 7.2.1, bats 1.8.2, prove 3.44). Timings, seeds and the flaky test's outcome
# differ from run to run; the tests only rely on what the suites' truth fixes.
# `sh capture.sh` (about 80 s: one capture waits for libtest's 60 s "running for over" warning).
set -u
here=$(cd "$(dirname "$0")" && pwd)
suites=$here/../../../fixtures/suites
export RUST_BACKTRACE=0 PYTHONDONTWRITEBYTECODE=1

cd "$suites/libtest"
cargo build --quiet --tests
cargo test --no-fail-fast >"$here/cargo-test.stdout" 2>"$here/cargo-test.stderr"
cargo test --no-fail-fast >"$here/cargo-test-merged.txt" 2>&1
TMR_FIXTURE_ABORT=1 cargo test --no-fail-fast >"$here/cargo-test-abort.stdout" 2>"$here/cargo-test-abort.stderr"
# The rerun of one test, as Runner::rerun + Runner::prepare build it.
cargo test --no-fail-fast --test suite -- --exact deterministic_failure --format pretty \
    >"$here/cargo-test-rerun.stdout" 2>"$here/cargo-test-rerun.stderr"
cargo test --test many >"$here/cargo-test-many.stdout" 2>/dev/null
# A two-package workspace whose lib tests share a name (a passes, b fails).
ws=$(mktemp -d)
mkdir -p "$ws/a/src" "$ws/b/src"
printf '[workspace]\nmembers=["a","b"]\nresolver="2"\n' >"$ws/Cargo.toml"
for c in a b; do
    printf '[package]\nname="%s-crate"\nversion="0.1.0"\nedition="2021"\n' $c >"$ws/$c/Cargo.toml"
    ok=$([ $c = a ] && echo true || echo false)
    printf '#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() { assert!(%s); }\n}\n' $ok >"$ws/$c/src/lib.rs"
done
(cd "$ws" && cargo test --workspace --no-fail-fast -- --format pretty >"$here/cargo-workspace.stdout" 2>"$here/cargo-workspace.stderr")
sed -i '/Compiling/d' "$here/cargo-workspace.stderr"
rm -rf "$ws"
bin=$(ls -t target/debug/deps/suite-* | grep -v '\.d$' | head -n1)
"$bin" >"$here/libtest-binary.txt" 2>&1
"$bin" --nocapture --test-threads=1 >"$here/libtest-nocapture.txt" 2>&1
"$bin" --exact flaky --exact adds >"$here/libtest-exact.txt" 2>&1
TMR_FIXTURE_HANG=1 timeout -s KILL 63 "$bin" >"$here/libtest-hang-killed.txt" 2>&1

cd "$suites/pytest"
# The options tmr adds: per-test stdout/stderr in the XML, for failing tests only.
log="-o junit_logging=out-err -o junit_log_passing_tests=False"
pytest -q $log -p no:cacheprovider --junitxml="$here/pytest.xml" >"$here/pytest-q.stdout" 2>&1
# SIGINT: pytest stops, reports "interrupted" and still writes the XML with what it finished.
TMR_FIXTURE_HANG=1 timeout -s INT 5 pytest -q $log -p no:cacheprovider --junitxml="$here/pytest-interrupted.xml" \
    >"$here/pytest-interrupted.stdout" 2>&1
# -v: the console names each test as it starts (tmr reads it when pytest was killed before its XML).
pytest -v -p no:cacheprovider >"$here/pytest-v.stdout" 2>&1
TMR_FIXTURE_HANG=1 timeout -s KILL 5 pytest -v -p no:cacheprovider >"$here/pytest-v-killed.stdout" 2>&1
pytest -q -p no:cacheprovider --junitxml="$here/pytest-one.xml" 'test_suite.py::TestGroup::test_in_class' \
    'test_suite.py::test_param[2]' >/dev/null 2>&1

# A real suite nobody here wrote, started outside pytest's rootdir (Debian's python3-lazr.uri, wadllib).
if [ -d /usr/lib/python3/dist-packages/lazr/uri/tests ]; then
    (cd /tmp && pytest -v -p no:cacheprovider --junitxml="$here/pytest-lazr.xml" $log \
        /usr/lib/python3/dist-packages/lazr/uri/tests /usr/lib/python3/dist-packages/wadllib/tests \
        >"$here/pytest-lazr.stdout" 2>&1)
fi

cd "$suites/bats"
bats suite.bats >"$here/bats.tap" 2>&1
bats --tap suite.bats >"$here/bats-tap-flag.tap" 2>&1
bats -f '^deterministic failure$' suite.bats >"$here/bats-filter.tap" 2>&1
TMR_FIXTURE_HANG=1 timeout -s KILL 5 bats suite.bats >"$here/bats-hang-killed.tap" 2>&1

cd "$suites/prove"
prove -v t/ >"$here/prove.stdout" 2>"$here/prove.stderr"
prove -v --merge t/ >"$here/prove-merged.txt" 2>&1
cd "$suites/prove-files"
prove -v --merge t/ >"$here/prove-passing.txt" 2>&1
prove -v --merge --timer t/pass.t t/skip_all.t >"$here/prove-timer.txt" 2>&1
TMR_FIXTURE_BAD_EXIT=1 TMR_FIXTURE_DIE=1 prove -v --merge t/ >"$here/prove-dubious.txt" 2>&1

# go (Debian's golang-go, 1.19) when present.
if command -v go >/dev/null; then
    cd "$suites/go"
    export GOCACHE="${GOCACHE:-/tmp/tmr-capture-gocache}"
    go test -json . >"$here/go-test.json" 2>&1
    TMR_FIXTURE_PANIC=1 go test -json . >"$here/go-test-panic.json" 2>&1
    # go's own -timeout: the test binary panics naming the test that ran too long.
    TMR_FIXTURE_HANG=1 go test -json -timeout 3s . >"$here/go-test-timeout.json" 2>&1
    go test -json -run '^TestGroup$/^second_case$' . >"$here/go-test-rerun.json" 2>&1
fi
exit 0

# cargo-test-nocapture-warnings.{stdout,stderr}: captured once by hand in a scratch crate (src/lib.rs:
# `pub fn unused_warning() { let x = 5; }` for a compiler warning, a passing test printing a line, and
# `fails`: println!("computing the answer"); assert_eq!(41, 42, "expected 42, got 41")), with
# RUST_BACKTRACE=1: `cargo test -- --nocapture >…stdout 2>…stderr`.
