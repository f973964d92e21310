//! Keys for inserts: each worker draws new keys from its own shard of the
//! key space, so inserts from different workers never collide.
//!
//! The key space starts at `base`, one above the largest existing key that
//! the value pools record, and spans `K = n * KEY_SPAN_PER_WORKER` keys for
//! `n` workers. Worker `g` of `n` owns `[base + g*K/n, base + (g+1)*K/n)`,
//! which with this `K` is `KEY_SPAN_PER_WORKER` keys starting at
//! `base + g * KEY_SPAN_PER_WORKER`. A worker's shard thus depends on its
//! group id alone. A worker that joins later with a larger `n`, as in QPS
//! mode, gets a shard disjoint from those of the workers already running.
//!
//! [`KeyShard::new`] also takes any other `K`. The last worker then takes
//! the remainder of `K / n`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Number of new keys each worker owns: 2^32, about 4.3 billion.
///
/// NOTE: with this span, the keys of worker 1 and above exceed the range
/// of a 32-bit integer. A key column that `new_key` fills must therefore
/// be a 64-bit integer (`BIGINT`, Snowflake `NUMBER`) when a run has more
/// than one worker.
pub const KEY_SPAN_PER_WORKER: u64 = 1 << 32;

/// A worker's half-open range `[start, end)` of new keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyShard {
    pub start: i64,
    pub end: i64,
}

/// Error raised when a shard cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("worker group {group} is outside a group count of {count}")]
    GroupOutOfRange { group: u32, count: u32 },
    #[error("a key space of {key_space} keys cannot be split among {count} workers")]
    KeySpaceTooSmall { key_space: u64, count: u32 },
    #[error("a key space of {key_space} keys above key {base} exceeds the 64-bit integer range")]
    Overflow { base: i64, key_space: u64 },
}

impl KeyShard {
    /// Computes the shard of worker `group` of `count` for a key space of
    /// `key_space` keys starting at `base`. The last worker takes the
    /// remainder of `key_space / count`.
    pub fn new(base: i64, key_space: u64, group: u32, count: u32) -> Result<Self, ShardError> {
        if group >= count {
            return Err(ShardError::GroupOutOfRange { group, count });
        }
        if key_space < u64::from(count) {
            return Err(ShardError::KeySpaceTooSmall { key_space, count });
        }
        let overflow = ShardError::Overflow { base, key_space };
        let space_end = i64::try_from(key_space).ok().and_then(|span| base.checked_add(span)).ok_or(overflow)?;

        let chunk = key_space / u64::from(count);
        // Both offsets are at most `key_space`, which fits an `i64` above.
        let start = base + (u64::from(group) * chunk) as i64;
        let end = if group + 1 == count { space_end } else { start + chunk as i64 };
        Ok(KeyShard { start, end })
    }

    /// Computes the shard of worker `group` of `count` with the product's
    /// key space of `count * KEY_SPAN_PER_WORKER` keys.
    pub fn for_worker(base: i64, group: u32, count: u32) -> Result<Self, ShardError> {
        let key_space = u64::from(count).saturating_mul(KEY_SPAN_PER_WORKER);
        KeyShard::new(base, key_space, group, count)
    }

    /// Number of keys in the shard.
    pub fn len(&self) -> u64 {
        self.end.abs_diff(self.start)
    }

    /// Returns whether the shard has no keys.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Returns whether `key` falls in the shard.
    pub fn contains(&self, key: i64) -> bool {
        (self.start..self.end).contains(&key)
    }
}

/// Sequential new keys from one shard, shared by all connections of a
/// worker.
#[derive(Debug)]
pub struct NewKeySequence {
    shard: KeyShard,
    /// Offset of the next key from `shard.start`. Relaxed ordering
    /// suffices: `fetch_add` hands each offset to exactly one caller, and
    /// no other memory is published through the counter.
    next_offset: AtomicU64,
    /// Set when [`NewKeySequence::next_key_wrapping`] first runs past the
    /// shard's end, so the warning is logged once.
    wrapped: AtomicBool,
}

impl NewKeySequence {
    /// Starts a sequence at the shard's first key.
    pub fn new(shard: KeyShard) -> Self {
        NewKeySequence { shard, next_offset: AtomicU64::new(0), wrapped: AtomicBool::new(false) }
    }

    /// Returns the shard the keys come from.
    pub fn shard(&self) -> KeyShard {
        self.shard
    }

    /// Returns the next unused key, or `None` once the shard is exhausted.
    pub fn next_key(&self) -> Option<i64> {
        let offset = self.next_offset.fetch_add(1, Ordering::Relaxed);
        if offset >= self.shard.len() {
            return None;
        }
        // `offset` is below the shard's length, which fits an `i64`.
        Some(self.shard.start + offset as i64)
    }

    /// Returns the next key, starting again at the shard's first key once
    /// the shard is exhausted, and the shard's first key when it is empty.
    ///
    /// Keys after the wrap repeat earlier inserts, so the target rejects
    /// them as duplicates and the run counts them as errors. A warning is
    /// logged at the first wrap.
    pub fn next_key_wrapping(&self) -> i64 {
        let offset = self.next_offset.fetch_add(1, Ordering::Relaxed);
        let len = self.shard.len();
        if len == 0 {
            return self.shard.start;
        }
        if offset >= len && !self.wrapped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                shard_start = self.shard.start,
                shard_end = self.shard.end,
                "new_key used every key of this worker's shard; new keys now repeat earlier ones"
            );
        }
        // The remainder is below the shard's length, which fits an `i64`.
        self.shard.start + (offset % len) as i64
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;

    fn shards(base: i64, key_space: u64, count: u32) -> Vec<KeyShard> {
        (0..count).map(|group| KeyShard::new(base, key_space, group, count).unwrap()).collect()
    }

    fn assert_disjoint_and_covering(shards: &[KeyShard], base: i64, key_space: u64) {
        assert_eq!(shards.first().unwrap().start, base);
        assert_eq!(shards.last().unwrap().end, base + key_space as i64);
        for pair in shards.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "{pair:?}");
        }
        assert!(shards.iter().all(|shard| !shard.is_empty()), "{shards:?}");
    }

    #[test]
    fn shards_disjoint_and_covering() {
        for (base, key_space, count) in [(0, 100, 1), (1, 100, 3), (1001, 1 << 40, 7), (-50, 10, 10)] {
            let shards = shards(base, key_space, count);
            assert_disjoint_and_covering(&shards, base, key_space);
        }
    }

    #[test]
    fn last_shard_takes_remainder() {
        let shards = shards(0, 10, 3);
        assert_eq!(
            shards,
            [KeyShard { start: 0, end: 3 }, KeyShard { start: 3, end: 6 }, KeyShard { start: 6, end: 10 }]
        );
    }

    #[test]
    fn worker_shards_depend_on_group_only() {
        let count = 4;
        let shards: Vec<KeyShard> = (0..count).map(|group| KeyShard::for_worker(1000, group, count).unwrap()).collect();
        assert_disjoint_and_covering(&shards, 1000, u64::from(count) * KEY_SPAN_PER_WORKER);
        for (group, shard) in shards.iter().enumerate() {
            assert_eq!(shard.len(), KEY_SPAN_PER_WORKER);
            assert_eq!(*shard, KeyShard::for_worker(1000, group as u32, 9).unwrap(), "group {group}");
        }
    }

    #[test]
    fn shard_errors() {
        assert_eq!(KeyShard::new(0, 100, 3, 3), Err(ShardError::GroupOutOfRange { group: 3, count: 3 }));
        assert_eq!(KeyShard::new(0, 2, 0, 3), Err(ShardError::KeySpaceTooSmall { key_space: 2, count: 3 }));
        assert_eq!(
            KeyShard::for_worker(i64::MAX - 10, 0, 1),
            Err(ShardError::Overflow { base: i64::MAX - 10, key_space: KEY_SPAN_PER_WORKER })
        );
    }

    #[test]
    fn sequence_is_sequential_and_bounded() {
        let sequence = NewKeySequence::new(KeyShard { start: 40, end: 43 });
        assert_eq!(sequence.next_key(), Some(40));
        assert_eq!(sequence.next_key(), Some(41));
        assert_eq!(sequence.next_key(), Some(42));
        assert_eq!(sequence.next_key(), None);
        assert_eq!(sequence.next_key(), None);
    }

    #[test]
    fn wrapping_sequence_restarts_at_shard_start() {
        let sequence = NewKeySequence::new(KeyShard { start: 40, end: 42 });
        let keys: Vec<i64> = (0..5).map(|_| sequence.next_key_wrapping()).collect();
        assert_eq!(keys, [40, 41, 40, 41, 40]);
        assert_eq!(NewKeySequence::new(KeyShard { start: 7, end: 7 }).next_key_wrapping(), 7);
    }

    #[test]
    fn sequence_unique_across_threads() {
        let sequence = Arc::new(NewKeySequence::new(KeyShard { start: 0, end: 1 << 20 }));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let sequence = Arc::clone(&sequence);
                std::thread::spawn(move || (0..10_000).map(|_| sequence.next_key().unwrap()).collect::<Vec<i64>>())
            })
            .collect();
        let mut keys = HashSet::new();
        for thread in threads {
            for key in thread.join().unwrap() {
                assert!(keys.insert(key), "key {key} drawn twice");
            }
        }
        assert_eq!(keys.len(), 40_000);
    }
}
