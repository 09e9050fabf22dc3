//! `tmr record` and `tmr vote` end to end: runs recorded as separate machines would record them (here:
//! separate invocations with a different environment), then voted.

mod common;

use common::tmr;

fn record(dir: &std::path::Path, name: &str, x: &str, script: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    let done = tmr().env("X", x).arg("record").arg("-o").arg(&out).args(["--", "sh", "-c", script]).output();
    assert!(done.is_ok() && out.exists(), "recording {name}: {done:?}");
    out
}

#[test]
fn the_majority_of_three_records_is_delivered_byte_for_byte_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    // Binary output, not UTF-8: kept as hex, delivered as the bytes.
    let script = r#"printf "\377$X\000\n"; echo "note $X" >&2; [ "$X" = b ] && exit 4; exit 3"#;
    let a = record(dir.path(), "a.json", "a", script);
    let b = record(dir.path(), "b.json", "b", script);
    let c = record(dir.path(), "c.json", "a", script);
    let out = tmr().arg("vote").args([&a, &b, &c]).assert().code(3).get_output().clone();
    assert_eq!(out.stdout, b"\xffa\x00\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("note a\n"), "{err}");
    assert!(err.contains("majority 2/3 agree · exit 3"), "{err}");
    assert!(err.contains("dissent: ") && err.contains("b.json") && err.contains("exit 4"), "{err}");
    tmr().arg("vote").arg("--strict").args([&a, &b, &c]).assert().code(121);
}

#[test]
fn records_that_all_differ_have_no_majority_and_deliver_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> =
        ["x", "y", "z"].iter().map(|v| record(dir.path(), &format!("{v}.json"), v, "echo $X")).collect();
    tmr().arg("vote").args(&files).assert().code(120).stdout("");
}

#[test]
fn the_recorded_run_passes_its_output_and_exit_code_through() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    tmr()
        .arg("record")
        .arg("-o")
        .arg(&out)
        .args(["--", "sh", "-c", "echo live; exit 7"])
        .assert()
        .code(7)
        .stdout("live\n");
    let text = std::fs::read_to_string(&out).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["schema"], "tmr-record");
    assert_eq!(json["outcome"]["code"], 7);
    assert_eq!(json["stdout"]["text"], "live\n");
}

#[test]
fn bad_records_are_one_line_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = record(dir.path(), "a.json", "a", "echo $X");
    let other = dir.path().join("other.json");
    tmr().arg("record").arg("-o").arg(&other).args(["--", "echo", "else"]).assert().success();
    let cut = dir.path().join("cut.json");
    let text = std::fs::read(&a).unwrap();
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    for (file, says) in [(&other, "other.json recorded another command"), (&cut, "cut.json is truncated")] {
        let out = tmr().arg("vote").arg(&a).arg(file).assert().code(125).get_output().clone();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && err.lines().count() == 1, "{err}");
        assert!(out.stdout.is_empty());
    }
    // A record path that cannot be written wastes no run.
    let marker = dir.path().join("ran");
    tmr()
        .arg("record")
        .arg("-o")
        .arg(dir.path().join("no/such/dir/r.json"))
        .args(["--", "touch"])
        .arg(&marker)
        .assert()
        .code(125);
    assert!(!marker.exists());
}

#[test]
fn a_winner_recorded_without_its_output_is_not_passed_off_as_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    tmr().args(["record", "--max-output", "10", "-o"]).arg(&big).args(["--", "seq", "100"]).assert().code(0);
    let out = tmr().arg("vote").args([&big, &big]).assert().code(125).stdout("").get_output().clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing delivered"), "{out:?}");
}
