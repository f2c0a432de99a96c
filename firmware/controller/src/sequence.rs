//! Sequence-number checking for the runtime's verdicts and heartbeats.
//!
//! The runtime numbers verdicts and heartbeats with one wrapping `u32`, +1 per message. Only frames
//! that passed the CRC get here, so a surprising number means lost frames or a restarted runtime,
//! never line noise.

/// What one sequence number says about the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SeqCheck {
    /// The first numbered message since boot: nothing to compare with.
    First,
    /// Exactly the next number.
    InOrder,
    /// `missed` numbers were skipped: that many frames were lost (or dropped as damaged).
    Gap {
        /// How many sequence numbers are missing.
        missed: u32,
    },
    /// The same number as the previous message: a retransmission, not acted on again.
    Duplicate,
    /// The number went backwards: the runtime restarted its counter. Accepted; counting
    /// continues from it.
    Restart,
}

/// Remembers the last sequence number and classifies the next one.
#[derive(Debug, Clone, Copy, Default)]
pub struct SequenceTracker {
    last: Option<u32>,
}

impl SequenceTracker {
    /// A tracker that has seen nothing yet.
    pub const fn new() -> Self {
        Self { last: None }
    }

    /// Classifies `seq` and remembers it (except a duplicate, which changes nothing).
    ///
    /// Forward and backward are told apart by the wrapping difference: up to 2^31 - 1 ahead is a
    /// gap, anything else behind is a restart.
    pub fn check(&mut self, seq: u32) -> SeqCheck {
        let Some(last) = self.last else {
            self.last = Some(seq);
            return SeqCheck::First;
        };
        let ahead = seq.wrapping_sub(last);
        let result = match ahead {
            0 => return SeqCheck::Duplicate,
            1 => SeqCheck::InOrder,
            n if n < 1 << 31 => SeqCheck::Gap { missed: n - 1 },
            _ => SeqCheck::Restart,
        };
        self.last = Some(seq);
        result
    }

    /// The last accepted sequence number, if any.
    pub fn last(&self) -> Option<u32> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_across_the_wrap() {
        let mut t = SequenceTracker::new();
        assert_eq!(t.check(u32::MAX - 1), SeqCheck::First);
        assert_eq!(t.check(u32::MAX), SeqCheck::InOrder);
        assert_eq!(t.check(0), SeqCheck::InOrder);
        assert_eq!(t.check(0), SeqCheck::Duplicate);
        assert_eq!(t.check(4), SeqCheck::Gap { missed: 3 });
        assert_eq!(t.check(2), SeqCheck::Restart);
        assert_eq!(t.check(3), SeqCheck::InOrder);
        assert_eq!(t.last(), Some(3));
    }
}
