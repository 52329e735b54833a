//! Sequences and ids.
//!
//! `_seq` values come from [`SeqGen`]: strictly increasing, at least the
//! current time in microseconds, and never below the high-water mark
//! persisted with every write, so they do not go backwards across restarts.
//! [`Snowflake`] makes 64-bit ids: milliseconds since 2024-01-01 (41 bits),
//! node (10 bits), per-millisecond counter (12 bits).

use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}

#[derive(Debug)]
pub(crate) struct SeqGen {
    last: AtomicI64,
}

impl SeqGen {
    /// Starts above `high_water` (the largest sequence ever persisted).
    pub(crate) fn new(high_water: i64) -> Self {
        SeqGen {
            last: AtomicI64::new(high_water),
        }
    }

    /// The next sequence number.
    pub(crate) fn next(&self) -> i64 {
        let floor = now_micros();
        let mut current = self.last.load(Ordering::Relaxed);
        loop {
            let next = (current + 1).max(floor);
            match self.last.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => current = actual,
            }
        }
    }

    /// Makes the next sequence larger than `floor`.
    pub(crate) fn raise(&self, floor: i64) {
        self.last.fetch_max(floor, Ordering::AcqRel);
    }

    /// The last sequence handed out.
    pub(crate) fn current(&self) -> i64 {
        self.last.load(Ordering::Acquire)
    }
}

/// 2024-01-01T00:00:00Z in milliseconds.
const SNOWFLAKE_EPOCH_MS: i64 = 1_704_067_200_000;

/// When a snowflake id was made, in microseconds since the Unix epoch.
pub(crate) fn snowflake_micros(id: i64) -> i64 {
    ((id >> 22) + SNOWFLAKE_EPOCH_MS) * 1000
}

#[derive(Debug)]
pub(crate) struct Snowflake {
    node: i64,
    state: Mutex<(i64, i64)>,
}

impl Snowflake {
    pub(crate) fn new(node: u16) -> Self {
        Snowflake {
            node: (node as i64) & 0x3ff,
            state: Mutex::new((0, 0)),
        }
    }

    pub(crate) fn next(&self) -> i64 {
        let mut state = self.state.lock();
        let mut ms = (now_micros() / 1000 - SNOWFLAKE_EPOCH_MS).max(state.0);
        let counter = if ms == state.0 { state.1 + 1 } else { 0 };
        let counter = if counter > 0xfff {
            // Counter exhausted within this millisecond: borrow the next one.
            ms += 1;
            0
        } else {
            counter
        };
        *state = (ms, counter);
        (ms << 22) | (self.node << 12) | counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_increase_past_the_high_water_mark() {
        let far_future = now_micros() + 10_000_000_000;
        let seq = SeqGen::new(far_future);
        let a = seq.next();
        let b = seq.next();
        assert!(a > far_future && b > a);
    }

    #[test]
    fn snowflakes_are_unique_and_increasing() {
        let ids = Snowflake::new(1);
        let mut last = 0;
        for _ in 0..10_000 {
            let id = ids.next();
            assert!(id > last);
            last = id;
        }
    }
}
