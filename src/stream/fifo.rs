//! A byte queue that is one contiguous slice: appended at the back, consumed from the front, compacted
//! only when the consumed part is four times the rest. So at most a quarter of a byte moves per byte
//! consumed (with "as large as the rest", compaction was half of the committer's memmove in the flood
//! profile), for a capacity of at most five times what is held. The committers compare and hash their
//! buffers as slices; `VecDeque<u8>` would split them and move bytes one at a time.
//!
//! Bytes can also be written in place ([`Fifo::room`], then [`Fifo::commit`]): the leading replica's
//! output is read from its pipe straight into the committer's log, saving a copy of every byte. The room
//! is initialised memory the queue keeps between uses, so reading into it costs no zeroing either.

#[derive(Debug, Default, Clone)]
pub struct Fifo {
    /// `data[start..end]` is the queue; `data[end..]` is room already initialised for more.
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Fifo {
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.room(bytes.len()).copy_from_slice(bytes);
        self.commit(bytes.len());
    }

    /// Room for `n` more bytes at the back: write into it, then [`Fifo::commit`] what was written.
    pub fn room(&mut self, n: usize) -> &mut [u8] {
        if self.start > 0 && self.start >= 4 * self.len() {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() < self.end + n {
            self.data.resize(self.end + n, 0);
        }
        &mut self.data[self.end..self.end + n]
    }

    /// The first `n` bytes of the last [`Fifo::room`] now belong to the queue.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Drop the first `n` bytes (at most all of them).
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Keep only the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        self.end = self.start + n.min(self.len());
    }

    pub fn clear(&mut self) {
        *self = Fifo::default();
    }

    /// Take everything out.
    pub fn take(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.data);
        v.truncate(self.end);
        v.drain(..self.start);
        self.start = 0;
        self.end = 0;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn behaves_like_a_queue(ops in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..50), 0usize..60), 0..100)) {
            let mut f = Fifo::default();
            let mut model: std::collections::VecDeque<u8> = Default::default();
            for (push, bytes, n) in ops {
                if n == 59 {
                    f.truncate(bytes.len());
                    model.truncate(bytes.len());
                } else if n == 58 {
                    // Written in place, partly committed.
                    let room = f.room(bytes.len() + 3);
                    room[..bytes.len()].copy_from_slice(&bytes);
                    f.commit(bytes.len());
                    model.extend(&bytes);
                } else if push {
                    f.extend(&bytes);
                    model.extend(&bytes);
                } else {
                    f.consume(n);
                    for _ in 0..n.min(model.len()) { model.pop_front(); }
                }
                let expected: Vec<u8> = model.iter().copied().collect();
                prop_assert_eq!(f.as_slice(), expected.as_slice());
            }
        }
    }
}
