//! The first line where a dissenting replica's output differs from the majority's, after masks: the one
//! piece of evidence that usually tells a user at a glance whether a disagreement is a real bug or a
//! timestamp. Works on any `BufRead`, so it is tested on byte strings.
//!
//! Both streams are compared as they are read, masked by [`Masker`]: memory stays bounded whatever the
//! length of a line (a 1 GiB line without a newline costs a few buffers, not 1 GiB), and what is shown
//! is a window of at most [`BEFORE`] + [`AFTER`] bytes around the first differing byte.

use std::io::BufRead;

use regex::bytes::Regex;
use serde::Serialize;

use crate::mask::Masker;

/// Bytes of the line shown before the first differing byte (the same in both outputs).
pub const BEFORE: usize = 100;
/// Bytes of each output's line shown from the first differing byte on.
pub const AFTER: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineDiff {
    /// 1-based line number.
    pub line: u64,
    /// The majority's line (masked) around the first difference, `…` where it is cut; `None` when its
    /// output ended before this line.
    pub majority: Option<String>,
    /// The dissenter's line (masked), likewise.
    pub replica: Option<String>,
}

/// One output, masked as it is read.
struct Side<R> {
    reader: R,
    masker: Masker,
    /// Masked bytes not compared yet: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: BufRead> Side<R> {
    fn new(reader: R, masks: &[Regex]) -> Self {
        Side { reader, masker: Masker::new(masks.to_vec()), buf: Vec::new(), pos: 0, eof: false }
    }

    /// The masked bytes not compared yet; empty only at the end of the output.
    fn available(&mut self) -> std::io::Result<&[u8]> {
        while self.pos == self.buf.len() && !self.eof {
            self.buf.clear();
            self.pos = 0;
            let Side { reader, masker, buf, .. } = self;
            let data = reader.fill_buf()?;
            if data.is_empty() {
                self.eof = true;
                masker.finish(&mut |b| buf.extend_from_slice(b));
            } else {
                let n = data.len();
                masker.update(data, &mut |b| buf.extend_from_slice(b));
                reader.consume(n);
            }
        }
        Ok(&self.buf[self.pos..])
    }

    /// The rest of the current line from here, at most `AFTER` bytes, and whether the line goes on.
    fn rest_of_line(&mut self) -> std::io::Result<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        loop {
            let avail = self.available()?;
            if avail.is_empty() {
                return Ok((out, false));
            }
            let end = memchr::memchr(b'\n', avail).unwrap_or(avail.len());
            let newline_here = end < avail.len();
            let take = end.min(AFTER - out.len());
            out.extend_from_slice(&avail[..take]);
            self.pos += take;
            if take < end {
                return Ok((out, true));
            }
            if newline_here {
                return Ok((out, false));
            }
            if out.len() == AFTER {
                // The line may go on in the next chunk.
                let more = self.available()?.first().is_some_and(|&b| b != b'\n');
                return Ok((out, more));
            }
        }
    }

    /// This output's side of the difference: the window of its line, or `None` when it ended before it.
    fn shown(&mut self, tail: &[u8], line_len: u64) -> std::io::Result<Option<String>> {
        let (rest, more) = self.rest_of_line()?;
        if rest.is_empty() && line_len == 0 && self.eof && self.pos == self.buf.len() {
            return Ok(None);
        }
        Ok(Some(show(tail, &rest, line_len > tail.len() as u64, more)))
    }
}

pub fn first_difference(
    majority: impl BufRead,
    replica: impl BufRead,
    masks: &[Regex],
) -> std::io::Result<Option<LineDiff>> {
    let (mut a, mut b) = (Side::new(majority, masks), Side::new(replica, masks));
    let mut line = 1u64;
    // The current line's bytes so far (equal in both), and the last `BEFORE` of them.
    let mut line_len = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let x = a.available()?;
        let y = b.available()?;
        if x.is_empty() && y.is_empty() {
            return Ok(None);
        }
        let n = x.len().min(y.len());
        let same = common_prefix(&x[..n], &y[..n]);
        let seg = &x[..same];
        match memchr::memrchr(b'\n', seg) {
            Some(last) => {
                line += memchr::memchr_iter(b'\n', seg).count() as u64;
                line_len = (same - last - 1) as u64;
                tail.clear();
                tail.extend_from_slice(&seg[(last + 1).max(same.saturating_sub(BEFORE))..]);
            }
            None => {
                line_len += same as u64;
                tail.extend_from_slice(&seg[same.saturating_sub(BEFORE)..]);
                let excess = tail.len().saturating_sub(BEFORE);
                tail.drain(..excess);
            }
        }
        a.pos += same;
        b.pos += same;
        if same == n && n > 0 {
            continue;
        }
        // The first differing byte, or the end of one output.
        let majority = a.shown(&tail, line_len)?;
        let replica = b.shown(&tail, line_len)?;
        return Ok(Some(LineDiff { line, majority, replica }));
    }
}

/// How many leading bytes `x` and `y` (of equal length) share.
fn common_prefix(x: &[u8], y: &[u8]) -> usize {
    if x == y {
        return x.len();
    }
    const BLOCK: usize = 4096;
    let mut at = 0;
    while at + BLOCK <= x.len() && x[at..at + BLOCK] == y[at..at + BLOCK] {
        at += BLOCK;
    }
    at + x[at..].iter().zip(&y[at..]).position(|(p, q)| p != q).unwrap_or(x.len() - at)
}

/// A window of a line as text for a report: lossy UTF-8 (a character cut at either edge dropped), `…`
/// where the line goes on. Control characters are left as they are: each renderer escapes once (the
/// human summary quotes with `{:?}`, JSON with its own escapes); escaping here too made a tab and a
/// literal `\t` both read `\\t`.
fn show(before: &[u8], from: &[u8], cut_front: bool, cut_back: bool) -> String {
    let mut bytes = [before, from].concat();
    if cut_front {
        let skip = bytes.iter().take(3).take_while(|&&b| b & 0xc0 == 0x80).count();
        bytes.drain(..skip);
    }
    if cut_back {
        if let Err(e) = std::str::from_utf8(&bytes) {
            if e.error_len().is_none() {
                bytes.truncate(e.valid_up_to());
            }
        }
    }
    let mut out = String::new();
    if cut_front {
        out.push('…');
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
    if cut_back {
        out.push('…');
    }
    out
}

/// The same window, built from what a streamed compare kept at a divergence: the committed bytes just
/// before it (`before`), the majority's bytes from it on (`majority`, empty when unknown) and the
/// dissenter's (`replica`). Only the current line is shown, at most [`BEFORE`] + [`AFTER`] bytes of it.
pub fn from_divergence(d: &crate::stream::Divergence) -> LineDiff {
    let start = d.before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line_start = &d.before[start..];
    let cut_front = line_start.len() > BEFORE || (start == 0 && d.before.len() >= 256);
    let tail = &line_start[line_start.len().saturating_sub(BEFORE)..];
    // When one side's output ended within the line (after some of it: at the line's very start it
    // reads `<end of output>`), the other side's newline is part of the difference ("tail\n" against
    // "tail"), so it is shown.
    let side = |from: &[u8], known: bool, other_ended: bool| -> Option<String> {
        if !known {
            return Some(show(tail, b"", cut_front, true));
        }
        let end = match memchr::memchr(b'\n', from) {
            Some(i) if other_ended => i + 1,
            Some(i) => i,
            None => from.len(),
        };
        let take = end.min(AFTER);
        // A window cut short by its 64-byte limit goes on; a shorter one is all there was when seen.
        let more = take < end || (end == from.len() && from.len() >= 64);
        if tail.is_empty() && from.is_empty() {
            return None;
        }
        Some(show(tail, &from[..take], cut_front, more))
    };
    LineDiff {
        line: d.line,
        majority: side(
            &d.majority,
            d.majority_ended || !d.majority.is_empty(),
            d.replica_ended && !d.replica.contains(&b'\n') && !(tail.is_empty() && d.replica.is_empty()),
        ),
        replica: side(
            &d.replica,
            true,
            d.majority_ended && !d.majority.contains(&b'\n') && !(tail.is_empty() && d.majority.is_empty()),
        ),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_difference_in_the_final_newline_shows_the_newline() {
        let ended = |majority: &[u8], replica: &[u8], m_end: bool, r_end: bool| {
            from_divergence(&crate::stream::Divergence {
                offset: 6,
                line: 2,
                before: b"a\ntail".to_vec(),
                majority: majority.to_vec(),
                replica: replica.to_vec(),
                within: 0,
                majority_ended: m_end,
                replica_ended: r_end,
            })
        };
        // The replica stopped short of the majority's final newline.
        let d = ended(b"\n", b"", true, true);
        assert_eq!((d.majority.as_deref(), d.replica.as_deref()), (Some("tail\n"), Some("tail")));
        // The replica wrote one more newline.
        let d = ended(b"", b"\n", true, true);
        assert_eq!((d.majority.as_deref(), d.replica.as_deref()), (Some("tail"), Some("tail\n")));
        // Neither ended there: the newline ends the shown line as before.
        let d = ended(b"\nmore", b"X\n", false, false);
        assert_eq!((d.majority.as_deref(), d.replica.as_deref()), (Some("tail"), Some("tailX")));
        // Both ended, each after a newline of its own: nothing ended within the line.
        let d = ended(b"0\n", b"1\n", true, true);
        assert_eq!((d.majority.as_deref(), d.replica.as_deref()), (Some("tail0"), Some("tail1")));
    }

    #[test]
    fn a_streamed_divergence_shows_its_line() {
        let d = crate::stream::Divergence {
            offset: 9,
            line: 2,
            before: b"first\nsec".to_vec(),
            majority: b"ond ok\nthird".to_vec(),
            replica: b"OND bad".to_vec(),
            within: 0,
            majority_ended: false,
            replica_ended: false,
        };
        let diff = from_divergence(&d);
        assert_eq!(diff.line, 2);
        assert_eq!(diff.majority.as_deref(), Some("second ok"));
        assert_eq!(diff.replica.as_deref(), Some("secOND bad"));
    }
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
    fn control_characters_are_escaped_once_by_the_renderer_and_long_lines_cut() {
        let d = diff("\x1b[1mx\n", "y\n", &[]).unwrap();
        assert_eq!(d.majority.unwrap(), "\x1b[1mx");
        // A tab and a literal backslash-t stay apart once the summary quotes them.
        let d = diff("a\tb\n", "a\\tb\n", &[]).unwrap();
        assert_eq!(format!("{:?}", d.majority.unwrap()), r#""a\tb""#);
        assert_eq!(format!("{:?}", d.replica.unwrap()), r#""a\\tb""#);
        let long = "z".repeat(500);
        let d = diff(&format!("{long}\n"), "q\n", &[]).unwrap();
        assert!(d.majority.unwrap().ends_with('…'));
    }

    #[test]
    fn a_window_around_the_first_differing_byte_of_a_long_line() {
        let (x, y) = ("x".repeat(300), "y".repeat(300));
        let d = diff(&format!("{x}A{y}\n"), &format!("{x}B{y}\n"), &[]).unwrap();
        assert_eq!(d.line, 1);
        assert_eq!(d.majority.unwrap(), format!("…{}A{}…", &x[..BEFORE], &y[..AFTER - 1]));
        assert_eq!(d.replica.unwrap(), format!("…{}B{}…", &x[..BEFORE], &y[..AFTER - 1]));
        // Near the start and end of a line, nothing is cut.
        let d = diff("ab\nxyz1\n", "ab\nxyz2\n", &[]).unwrap();
        assert_eq!((d.line, d.majority.unwrap(), d.replica.unwrap()), (2, "xyz1".into(), "xyz2".into()));
        // A character cut at the window's edge is dropped, not shown as garbage.
        let d = diff(&format!("{}éA\n", "é".repeat(100)), &format!("{}éB\n", "é".repeat(100)), &[]).unwrap();
        assert!(d.majority.unwrap().starts_with("…é"));
    }

    /// A line far longer than the masker's pieces, different in its last byte only, is read as a stream
    /// (tests/defects.rs measures tmr's memory on one).
    #[test]
    fn a_huge_line_shows_the_window_at_its_end() {
        struct Endless {
            left: u64,
            last: u8,
            buf: Vec<u8>,
        }
        impl std::io::Read for Endless {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                unreachable!("read through BufRead")
            }
        }
        impl BufRead for Endless {
            fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
                let n = self.left.min(self.buf.len() as u64) as usize;
                if self.left == n as u64 && n > 0 {
                    self.buf[n - 1] = self.last;
                }
                Ok(&self.buf[..n])
            }
            fn consume(&mut self, n: usize) {
                self.left -= n as u64;
            }
        }
        let len = 3 << 20;
        let mk = |last| Endless { left: len, last, buf: vec![b'a'; 1 << 16] };
        let masks = [Regex::new("[0-9]+").unwrap()];
        let d = first_difference(mk(b'x'), mk(b'y'), &masks).unwrap().unwrap();
        assert_eq!(d.line, 1);
        assert_eq!(d.majority.unwrap(), format!("…{}x", "a".repeat(BEFORE)));
        assert_eq!(d.replica.unwrap(), format!("…{}y", "a".repeat(BEFORE)));
    }

    /// The line-by-line comparison the streaming one replaced: the same line, the same sides present.
    fn whole_lines(a: &[u8], b: &[u8], masks: &[Regex]) -> Option<(u64, bool, bool)> {
        let (mut x, mut y) = (a.split_inclusive(|&c| c == b'\n'), b.split_inclusive(|&c| c == b'\n'));
        let mut line = 0;
        loop {
            line += 1;
            let (p, q) = (x.next(), y.next());
            if p.is_none() && q.is_none() {
                return None;
            }
            let m = |l: &[u8]| crate::mask::mask_line(masks, l.strip_suffix(b"\n").unwrap_or(l)).into_owned();
            let nl = |l: Option<&[u8]>| l.is_some_and(|l| l.ends_with(b"\n"));
            if p.map(m) != q.map(m) || nl(p) != nl(q) {
                return Some((line, p.is_some(), q.is_some()));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn streaming_agrees_with_whole_lines(
            a in proptest::collection::vec(proptest::sample::select(b"ab1\n".to_vec()), 0..60),
            b in proptest::collection::vec(proptest::sample::select(b"ab1\n".to_vec()), 0..60),
            masked: bool,
        ) {
            let masks: Vec<Regex> = if masked { vec![Regex::new("1+").unwrap()] } else { vec![] };
            let got = first_difference(&a[..], &b[..], &masks).unwrap();
            let got = got.map(|d| (d.line, d.majority.is_some(), d.replica.is_some()));
            proptest::prop_assert_eq!(got, whole_lines(&a, &b, &masks));
        }
    }
}
