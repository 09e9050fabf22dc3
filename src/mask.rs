//! `--mask`: blank out parts of each line (durations, timestamps, pids) before the line is hashed for the
//! vote. The delivered output stays raw; only the compared digest sees masked text. Pure: bytes in,
//! digest out, so it is tested without processes.

use regex::bytes::Regex;

/// What a mask match is replaced by, in digests and in the "first difference" lines of the summary.
pub const REPLACEMENT: &[u8] = b"<masked>";

/// A line longer than this is masked in pieces of this size, so a replica that floods output without a
/// newline cannot make tmr buffer it whole.
pub const MAX_LINE: usize = 1 << 20;

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

/// Streams bytes into a blake3 digest, masking line by line when masks are given. Chunk boundaries never
/// change the digest: a line split across two reads is reassembled first.
#[derive(Clone)]
pub struct MaskedHasher {
    masks: Vec<Regex>,
    carry: Vec<u8>,
    hasher: blake3::Hasher,
}

impl MaskedHasher {
    pub fn new(masks: Vec<Regex>) -> Self {
        MaskedHasher { masks, carry: Vec::new(), hasher: blake3::Hasher::new() }
    }

    /// Back to the empty stream, masks kept.
    pub fn reset(&mut self) {
        self.carry.clear();
        self.hasher.reset();
    }

    pub fn update(&mut self, mut chunk: &[u8]) {
        if self.masks.is_empty() {
            self.hasher.update(chunk);
            return;
        }
        while let Some(nl) = memchr(b'\n', chunk) {
            let (line, rest) = chunk.split_at(nl);
            if self.carry.is_empty() {
                self.hash_line(line, true);
            } else {
                let mut joined = std::mem::take(&mut self.carry);
                joined.extend_from_slice(line);
                self.hash_line(&joined, true);
            }
            chunk = &rest[1..];
        }
        self.carry.extend_from_slice(chunk);
        while self.carry.len() >= MAX_LINE {
            let piece: Vec<u8> = self.carry.drain(..MAX_LINE).collect();
            self.hash_line(&piece, false);
        }
    }

    fn hash_line(&mut self, line: &[u8], newline: bool) {
        let masked = mask_line(&self.masks, line);
        self.hasher.update(&masked);
        if newline {
            self.hasher.update(b"\n");
        }
    }

    pub fn finalize(mut self) -> [u8; 32] {
        if !self.carry.is_empty() {
            let last = std::mem::take(&mut self.carry);
            self.hash_line(&last, false);
        }
        *self.hasher.finalize().as_bytes()
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn digest(masks: &[&str], chunks: &[&[u8]]) -> [u8; 32] {
        let mut h = MaskedHasher::new(masks.iter().map(|m| Regex::new(m).unwrap()).collect());
        for c in chunks {
            h.update(c);
        }
        h.finalize()
    }

    #[test]
    fn without_masks_the_digest_is_plain_blake3() {
        assert_eq!(digest(&[], &[b"hello ", b"world\n"]), *blake3::hash(b"hello world\n").as_bytes());
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
}
