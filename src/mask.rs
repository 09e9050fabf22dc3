//! `--mask`: blank out parts of each line (durations, timestamps, pids) before the line is hashed for the
//! vote or diffed. The delivered output stays raw; only the compared digest sees masked text. A line of
//! any length is masked in bounded memory (long lines as a stream of overlapping pieces, see
//! [`MAX_LINE`]). Pure: bytes in, masked bytes or a digest out, so it is tested without processes.

use regex::bytes::Regex;

use crate::digest::{Digest, StreamHasher};

/// What a mask match is replaced by, in digests and in the "first difference" lines of the summary.
pub const REPLACEMENT: &[u8] = b"<masked>";

/// A line longer than `MAX_LINE + OVERLAP` bytes is masked as a stream of pieces of at least `MAX_LINE`
/// bytes, so that a replica flooding output without a newline cannot make tmr buffer it whole: masking
/// holds at most `MAX_LINE + OVERLAP` bytes of a line (plus the chunk being fed).
pub const MAX_LINE: usize = 1 << 20;

/// How far a piece of a long line looks past its nominal end: a match that starts in the piece and is at
/// most this long is found whole, wherever it lies (the piece is extended to the match's end). Longer
/// matches across a piece boundary are masked piece by piece; anchors (`^`, `$`) and look-around see each
/// piece as a line.
pub const OVERLAP: usize = 64 << 10;

/// Apply every mask, in order, to one line (without its newline).
pub fn mask_line<'a>(masks: &[Regex], line: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    let mut out = std::borrow::Cow::Borrowed(line);
    for re in masks {
        if let std::borrow::Cow::Owned(changed) = re.replace_all(&out, REPLACEMENT) {
            out = std::borrow::Cow::Owned(changed);
        }
    }
    out
}

/// Masks a byte stream line by line, passing the masked bytes (newlines included) on as soon as they are
/// final. How a stream is cut into chunks never changes what comes out: lines split across chunks are
/// reassembled, and long lines are cut into pieces at positions that depend on their bytes only.
#[derive(Clone)]
pub struct Masker {
    masks: Vec<Regex>,
    /// The current line's bytes not yet masked.
    carry: Vec<u8>,
}

impl Masker {
    pub fn new(masks: Vec<Regex>) -> Self {
        Masker { masks, carry: Vec::new() }
    }

    /// Back to the start of a stream, masks kept.
    pub fn reset(&mut self) {
        self.carry.clear();
    }

    pub fn update(&mut self, mut chunk: &[u8], out: &mut impl FnMut(&[u8])) {
        if self.masks.is_empty() {
            out(chunk);
            return;
        }
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            let (line, rest) = chunk.split_at(nl);
            if self.carry.is_empty() && line.len() < MAX_LINE + OVERLAP {
                out(&mask_line(&self.masks, line));
            } else {
                self.carry.extend_from_slice(line);
                self.drain_long(out);
                out(&mask_line(&self.masks, &self.carry));
                self.carry.clear();
            }
            out(b"\n");
            chunk = &rest[1..];
        }
        self.carry.extend_from_slice(chunk);
        self.drain_long(out);
    }

    /// The last line, if the stream did not end with a newline.
    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        if !self.carry.is_empty() {
            out(&mask_line(&self.masks, &self.carry));
            self.carry.clear();
        }
    }

    /// Mask and pass on the pieces of a long line while at least `MAX_LINE + OVERLAP` bytes are held.
    fn drain_long(&mut self, out: &mut impl FnMut(&[u8])) {
        let mut at = 0;
        while self.carry.len() - at >= MAX_LINE + OVERLAP {
            let window = &self.carry[at..at + MAX_LINE + OVERLAP];
            let cut = piece_end(&self.masks, window);
            out(&mask_line(&self.masks, &window[..cut]));
            at += cut;
        }
        self.carry.drain(..at);
    }
}

/// Where to end the piece of a long line that starts `window` (the next `MAX_LINE + OVERLAP` bytes of the
/// line): at `MAX_LINE`, or past it to the end of any match (of any mask, found in the whole window)
/// that would straddle the cut. Anything else that cuts long lines into masked pieces (streaming
/// delivery) must cut them here too, or its pieces will not match the digest's.
pub fn piece_end(masks: &[Regex], window: &[u8]) -> usize {
    let mut cut = MAX_LINE;
    loop {
        let mut moved = false;
        for re in masks {
            for m in re.find_iter(window) {
                if m.start() >= cut {
                    break;
                }
                if m.end() > cut {
                    cut = m.end();
                    moved = true;
                }
            }
        }
        if !moved {
            return cut;
        }
    }
}

/// Streams bytes into a stream digest ([`crate::digest`]), masking line by line when masks are given (see [`Masker`]).
#[derive(Clone)]
pub struct MaskedHasher {
    masker: Masker,
    hasher: StreamHasher,
}

impl MaskedHasher {
    pub fn new(masks: Vec<Regex>) -> Self {
        MaskedHasher { masker: Masker::new(masks), hasher: StreamHasher::new() }
    }

    /// Back to the empty stream, masks kept.
    pub fn reset(&mut self) {
        self.masker.reset();
        self.hasher = StreamHasher::new();
    }

    pub fn update(&mut self, chunk: &[u8]) {
        let hasher = &mut self.hasher;
        self.masker.update(chunk, &mut |b| {
            hasher.update(b);
        });
    }

    pub fn finalize(mut self) -> Digest {
        let hasher = &mut self.hasher;
        self.masker.finish(&mut |b| {
            hasher.update(b);
        });
        self.hasher.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn digest(masks: &[&str], chunks: &[&[u8]]) -> Digest {
        let mut h = MaskedHasher::new(masks.iter().map(|m| Regex::new(m).unwrap()).collect());
        for c in chunks {
            h.update(c);
        }
        h.finalize()
    }

    #[test]
    fn without_masks_the_digest_is_the_plain_stream_digest() {
        assert_eq!(digest(&[], &[b"hello ", b"world\n"]), crate::digest::digest(b"hello world\n"));
    }

    #[test]
    fn masked_durations_compare_equal() {
        let m = [r"[0-9.]+ ?m?s"];
        assert_eq!(digest(&m, &[b"took 1.23s\nok\n"]), digest(&m, &[b"took 9.9 ms\nok\n"]));
        assert_ne!(digest(&m, &[b"took 1.23s\nok\n"]), digest(&m, &[b"took 1.23s\nfail\n"]));
    }

    #[test]
    fn masks_do_not_reach_across_lines() {
        // `a\nb` must not be matched by a mask for "a.b" spanning the newline.
        let m = [r"a.b"];
        assert_ne!(digest(&m, &[b"a\nb\n"]), digest(&m, &[b"x\ny\n"]));
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_digest(text in "[a-z0-9 \n]{0,200}", cut1 in 0usize..200, cut2 in 0usize..200) {
            let bytes = text.as_bytes();
            let (a, b) = (cut1.min(bytes.len()), cut2.min(bytes.len()));
            let (lo, hi) = (a.min(b), a.max(b));
            let m = ["[0-9]+"];
            prop_assert_eq!(
                digest(&m, &[bytes]),
                digest(&m, &[&bytes[..lo], &bytes[lo..hi], &bytes[hi..]])
            );
        }
    }

    /// 1,048,573 `a`s and then `took <N>ms`: the mask's match straddled the old 1 MiB piece boundary.
    #[test]
    fn a_match_across_the_old_piece_boundary_is_masked() {
        let m = [r"took.[0-9]+ms"];
        let line =
            |n: &str, tail: &str| [vec![b'a'; 1_048_573], format!("took {n}ms{tail}").into_bytes()].concat();
        for tail in ["\n", ""] {
            assert_eq!(digest(&m, &[&line("5", tail)]), digest(&m, &[&line("12345", tail)]), "{tail:?}");
            let (a, b) = (line("5", tail), line("77", tail));
            assert_eq!(
                digest(&m, &[&a[..1_048_570], &a[1_048_570..]]),
                digest(&m, &b.chunks(4096).collect::<Vec<_>>())
            );
        }
    }

    /// A match that lies across the cut of a long line's first piece is found whole, however the line is
    /// chunked, and the masker holds a bounded amount.
    #[test]
    fn a_match_anywhere_in_a_long_line_is_masked() {
        let m = [r"took.[0-9]+ms"];
        for at in [MAX_LINE - 9, MAX_LINE - 3, MAX_LINE, MAX_LINE + OVERLAP - 9, 3 * MAX_LINE + 5] {
            let line = |n: &str| {
                let mut v = vec![b'a'; at];
                v.extend_from_slice(format!("took {n}ms").as_bytes());
                v.extend(std::iter::repeat_n(b'b', 2 * MAX_LINE));
                v
            };
            let (a, b) = (line("1"), line("987654"));
            let whole = digest(&m, &[&a]);
            assert_eq!(whole, digest(&m, &b.chunks(65536).collect::<Vec<_>>()), "match at {at}");
            assert_eq!(whole, digest(&m, &a.chunks(1000).collect::<Vec<_>>()), "match at {at}");
            assert_ne!(whole, digest(&m, &[&line("1")[..a.len() - 1]]));
        }
        let mut masker = Masker::new(vec![Regex::new("x").unwrap()]);
        let mut seen = 0;
        for _ in 0..40 {
            masker.update(&[b'a'; 65536], &mut |b| seen += b.len());
            assert!(masker.carry.len() < MAX_LINE + OVERLAP, "{}", masker.carry.len());
        }
        masker.finish(&mut |b| seen += b.len());
        assert_eq!(seen, 40 * 65536);
    }
}
