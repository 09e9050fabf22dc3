//! The first line where a dissenting replica's output differs from the majority's, after masks: the one
//! piece of evidence that usually tells a user at a glance whether a disagreement is a real bug or a
//! timestamp. Works on any `BufRead`, so it is tested on byte strings.

use std::io::BufRead;

use regex::bytes::Regex;
use serde::Serialize;

use crate::mask::mask_line;

/// Characters of a line shown in a report; longer lines are cut with an ellipsis.
const SHOWN: usize = 160;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineDiff {
    /// 1-based line number.
    pub line: u64,
    /// The majority's line (masked), `None` when its output ended before this line.
    pub majority: Option<String>,
    /// The dissenter's line (masked), `None` when its output ended before this line.
    pub replica: Option<String>,
}

pub fn first_difference(
    mut majority: impl BufRead,
    mut replica: impl BufRead,
    masks: &[Regex],
) -> std::io::Result<Option<LineDiff>> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut line = 0u64;
    loop {
        line += 1;
        a.clear();
        b.clear();
        let na = majority.read_until(b'\n', &mut a)?;
        let nb = replica.read_until(b'\n', &mut b)?;
        if na == 0 && nb == 0 {
            return Ok(None);
        }
        let ma = (na > 0).then(|| mask_line(masks, strip_newline(&a)).into_owned());
        let mb = (nb > 0).then(|| mask_line(masks, strip_newline(&b)).into_owned());
        // A missing final newline is a difference too, even when the text is the same.
        if ma != mb || a.ends_with(b"\n") != b.ends_with(b"\n") {
            return Ok(Some(LineDiff {
                line,
                majority: ma.map(|l| show(&l)),
                replica: mb.map(|l| show(&l)),
            }));
        }
    }
}

fn strip_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// A line as text for a report: lossy UTF-8, control characters escaped, cut to a readable length.
fn show(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let escaped: String = text
        .chars()
        .flat_map(|c| if c.is_control() { c.escape_debug().collect::<Vec<_>>() } else { vec![c] })
        .collect();
    if escaped.chars().count() > SHOWN {
        let cut: String = escaped.chars().take(SHOWN).collect();
        format!("{cut}…")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(a: &str, b: &str, masks: &[&str]) -> Option<LineDiff> {
        let masks: Vec<Regex> = masks.iter().map(|m| Regex::new(m).unwrap()).collect();
        first_difference(a.as_bytes(), b.as_bytes(), &masks).unwrap()
    }

    #[test]
    fn finds_the_first_differing_line() {
        let d = diff("a\nb\nc\n", "a\nB\nc\n", &[]).unwrap();
        assert_eq!(d, LineDiff { line: 2, majority: Some("b".into()), replica: Some("B".into()) });
    }

    #[test]
    fn a_shorter_output_differs_where_it_ends() {
        let d = diff("a\nb\n", "a\n", &[]).unwrap();
        assert_eq!(d, LineDiff { line: 2, majority: Some("b".into()), replica: None });
    }

    #[test]
    fn masks_hide_what_they_match() {
        assert_eq!(diff("took 1s\n", "took 2s\n", &["[0-9]+s"]), None);
        let d = diff("t 1s\nx\n", "t 2s\ny\n", &["[0-9]+s"]).unwrap();
        assert_eq!(d.line, 2);
    }

    #[test]
    fn missing_final_newline_counts() {
        assert!(diff("a\n", "a", &[]).is_some());
        assert_eq!(diff("", "", &[]), None);
    }

    #[test]
    fn control_characters_are_escaped_and_long_lines_cut() {
        let d = diff("\x1b[1mx\n", "y\n", &[]).unwrap();
        assert_eq!(d.majority.unwrap(), "\\u{1b}[1mx");
        let long = "z".repeat(500);
        let d = diff(&format!("{long}\n"), "q\n", &[]).unwrap();
        assert!(d.majority.unwrap().ends_with('…'));
    }
}
