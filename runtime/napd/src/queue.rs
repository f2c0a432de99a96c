//! The bounded frame queue between the source and the workers.
//!
//! Its capacity bounds latency: a frame never waits behind more than `capacity` others. When it
//! is full, a live source ([`Overflow::DropOldest`]) evicts the oldest queued frame, which is
//! the one least worth scoring, and the eviction is reported so it can be counted and its
//! sequence number accounted for; a replay ([`Overflow::Block`]) waits for room instead.

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What a full queue does with a new frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Evict the oldest queued frame (cameras: stay current, count the drop).
    DropOldest,
    /// Wait for room (replays of files: score everything).
    Block,
}

impl FromStr for Overflow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drop-oldest" => Ok(Overflow::DropOldest),
            "block" => Ok(Overflow::Block),
            _ => Err(format!("overflow {s:?}: expected drop-oldest or block")),
        }
    }
}

/// The producer's end.
pub struct QueueSender<T> {
    tx: Sender<T>,
    /// Kept to evict the oldest item.
    rx: Receiver<T>,
    overflow: Overflow,
}

/// The consumers' end (clone one per worker).
pub type QueueReceiver<T> = Receiver<T>;

/// A queue of `capacity` (at least 1) items.
pub fn bounded<T>(capacity: usize, overflow: Overflow) -> (QueueSender<T>, QueueReceiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    (
        QueueSender {
            tx,
            rx: rx.clone(),
            overflow,
        },
        rx,
    )
}

/// Why a push did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// `stop` was raised while waiting for room (blocking mode); the item comes back.
    Stopped(T),
}

impl<T> QueueSender<T> {
    /// Queues `item`. Returns the items evicted to make room (drop-oldest mode), oldest first.
    /// In blocking mode waits for room, giving up when `stop` is raised.
    pub fn push(&self, mut item: T, stop: &AtomicBool) -> Result<Vec<T>, PushError<T>> {
        let mut evicted = Vec::new();
        loop {
            match self.overflow {
                Overflow::DropOldest => match self.tx.try_send(item) {
                    Ok(()) => return Ok(evicted),
                    Err(TrySendError::Full(back)) | Err(TrySendError::Disconnected(back)) => {
                        item = back;
                        // A worker may have taken the oldest meanwhile: then just retry.
                        if let Ok(old) = self.rx.try_recv() {
                            evicted.push(old);
                        }
                    }
                },
                Overflow::Block => match self.tx.send_timeout(item, Duration::from_millis(50)) {
                    Ok(()) => return Ok(evicted),
                    Err(SendTimeoutError::Timeout(back))
                    | Err(SendTimeoutError::Disconnected(back)) => {
                        if stop.load(Ordering::Relaxed) {
                            return Err(PushError::Stopped(back));
                        }
                        item = back;
                    }
                },
            }
        }
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

/// What a worker got from the queue.
pub enum Take<T> {
    /// An item to process.
    Item(T),
    /// Nothing arrived in time; look at the stop flag and come back.
    Idle,
    /// The producer is gone and the queue is empty: the worker is done.
    Closed,
}

/// Waits up to `wait` for the next item.
pub fn take<T>(rx: &QueueReceiver<T>, wait: Duration) -> Take<T> {
    match rx.recv_timeout(wait) {
        Ok(item) => Take::Item(item),
        Err(RecvTimeoutError::Timeout) => Take::Idle,
        Err(RecvTimeoutError::Disconnected) => Take::Closed,
    }
}
