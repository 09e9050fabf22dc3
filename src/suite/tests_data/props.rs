//! Fuzz-style properties: no input makes a parser panic, and every cut of a real capture (a runner
//! killed at any byte) parses.

use proptest::prelude::*;

use super::data;
use crate::suite::{gotest, junit, libtest, pytest, tap};

/// Lines that look like the formats, so random input reaches deep states, not just "stray".
fn soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("running 3 tests".to_string()),
        Just("test a ... ok".to_string()),
        Just("test b ... FAILED".to_string()),
        Just("test c ... ".to_string()),
        Just("test c has been running for over 60 seconds".to_string()),
        Just("---- b stdout ----".to_string()),
        Just("failures:".to_string()),
        Just("    b".to_string()),
        Just("test result: FAILED. 1 passed".to_string()),
        Just("     Running tests/x.rs (target/debug/deps/x-0123456789abcdef)".to_string()),
        Just("1..3".to_string()),
        Just("ok 1 a # SKIP".to_string()),
        Just("not ok 2 - b # TODO".to_string()),
        Just("  ---".to_string()),
        Just("  ...".to_string()),
        Just("# diag".to_string()),
        Just("t/x.t .. ".to_string()),
        Just("Bail out!".to_string()),
        Just("<testsuite name=\"s\">".to_string()),
        Just("<testcase classname=\"c\" name=\"n\" time=\"x\">".to_string()),
        Just("<failure message=\"&#10;\">&lt;".to_string()),
        Just("</testcase>".to_string()),
        Just("</testsuite>".to_string()),
        Just("<![CDATA[".to_string()),
        Just("t.py::T::x[a b] PASSED [ 5%]".to_string()),
        Just("t.py::x ".to_string()),
        Just("_____ T.x _____".to_string()),
        Just("==== 1 passed in 0.1s ====".to_string()),
        Just(r#"{"Action":"run","Package":"p","Test":"T"}"#.to_string()),
        Just(r#"{"Action":"output","Package":"p","Test":"T","Output":"panic: x\n"}"#.to_string()),
        Just(r#"{"Action":"fail","Package":"p","Elapsed":1e400}"#.to_string()),
        Just(r#"{"Action":"pass","Package":"p","Test":"T","Elapsed":-1}"#.to_string()),
        "[ -~]{0,12}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.join("\n").into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = libtest::parse(&bytes, &bytes);
        let _ = tap::parse(&bytes);
        let _ = junit::parse(&bytes);
        let _ = gotest::parse(&bytes);
        let _ = pytest::parse(&bytes);
    }

    #[test]
    fn format_soup_never_panics(a in soup(), b in soup()) {
        let _ = libtest::parse(&a, &b);
        let _ = tap::parse(&a);
        let _ = junit::parse(&a);
        let _ = gotest::parse(&a);
        let _ = pytest::parse(&a);
    }
}

#[test]
fn every_cut_of_a_real_capture_parses() {
    for (file, parser) in [
        ("cargo-test-merged.txt", 0),
        ("libtest-nocapture.txt", 0),
        ("bats.tap", 1),
        ("prove-merged.txt", 1),
        ("pytest.xml", 2),
        ("go-test-timeout.json", 3),
        ("pytest-v.stdout", 4),
    ] {
        let full = data(file);
        // Every byte of the small files; a spread of cuts (and every line end) for the bigger ones.
        let stride = (full.len() / 1500).max(1);
        let cuts = (0..full.len())
            .filter(|&c| c % stride == 0 || full[c] == b'\n' || full[c.saturating_sub(1)] == b'\n');
        for cut in cuts {
            let part = &full[..cut];
            let ok = match parser {
                0 => libtest::parse(part, b"").map(|r| r.results.len()),
                1 => tap::parse(part).map(|r| r.results.len()),
                3 => gotest::parse(part).map(|r| r.results.len()),
                4 => Ok(pytest::parse(part).results.len()),
                // Cut inside the prolog, before the root element, there is no JUnit document yet.
                _ => junit::parse(part).map(|r| r.results.len()).or(Ok(0)),
            };
            assert!(ok.is_ok(), "{file} cut at {cut}: {ok:?}");
        }
    }
}
