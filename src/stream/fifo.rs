//! A byte queue that is one contiguous slice: appended at the back, consumed from the front, compacted
//! only when the consumed part is four times the rest. So at most a quarter of a byte moves per byte
//! consumed (with "as large as the rest", compaction was half of the committer's memmove in the flood
//! profile), for a capacity of at most five times what is held. The committers compare and hash their
//! buffers as slices; `VecDeque<u8>` would split them and move bytes one at a time.

#[derive(Debug, Default, Clone)]
pub struct Fifo {
    data: Vec<u8>,
    start: usize,
}

impl Fifo {
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..]
    }

    pub fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= 4 * (self.data.len() - self.start) {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    /// Drop the first `n` bytes (at most all of them).
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Keep only the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        self.data.truncate(self.start + n);
    }

    pub fn clear(&mut self) {
        self.data = Vec::new();
        self.start = 0;
    }

    /// Take everything out.
    pub fn take(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.data);
        v.drain(..std::mem::take(&mut self.start));
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
