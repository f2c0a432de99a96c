//! Putting results back in frame order.
//!
//! Workers finish frames in any order; verdicts must leave in capture order. Every frame the
//! source produced has a sequence number and exactly one outcome (scored, rejected or dropped),
//! so the buffer releases outcomes as soon as the next expected number is present and holds at
//! most as many as there are frames in flight (queue plus workers).

use std::collections::BTreeMap;

/// A reorder buffer keyed by sequence number.
#[derive(Debug)]
pub struct Reorder<T> {
    next: u64,
    waiting: BTreeMap<u64, T>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Reorder {
            next: 0,
            waiting: BTreeMap::new(),
        }
    }
}

impl<T> Reorder<T> {
    /// An empty buffer expecting sequence number 0 first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Files an outcome. Numbers already released or filed are ignored (and reported false):
    /// each frame has one outcome.
    pub fn insert(&mut self, seq: u64, item: T) -> bool {
        if seq < self.next || self.waiting.contains_key(&seq) {
            return false;
        }
        self.waiting.insert(seq, item);
        true
    }

    /// The next outcome in order, if it has arrived.
    pub fn pop_ready(&mut self) -> Option<(u64, T)> {
        let item = self.waiting.remove(&self.next)?;
        let seq = self.next;
        self.next += 1;
        Some((seq, item))
    }

    /// Everything still held, in order, with the numbers skipped before each (frames whose
    /// outcome never came): used at shutdown.
    pub fn drain(&mut self) -> Vec<(u64, u64, T)> {
        let mut out = Vec::with_capacity(self.waiting.len());
        for (seq, item) in std::mem::take(&mut self.waiting) {
            out.push((seq, seq - self.next, item));
            self.next = seq + 1;
        }
        out
    }

    /// Outcomes waiting for an earlier one.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The next sequence number expected.
    pub fn next_seq(&self) -> u64 {
        self.next
    }
}
