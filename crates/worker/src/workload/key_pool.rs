//! The pool of existing keys that `key` parameters draw from, and the key
//! distributions (uniform, zipfian, hotspot).
//!
//! Skewed distributions draw a popularity rank first, where rank 0 is the
//! hottest, and then map the rank onto a pool index with a fixed
//! permutation, `index = rank * stride mod len`, with `stride` coprime to
//! `len` and close to `0.618 * len`. Hot keys are therefore spread across
//! the pool instead of clustered at its start, so a pool ordered by key
//! value does not turn the hot set into one contiguous key range. The
//! permutation depends only on the pool's length, so every worker of a
//! run finds the same keys hot.

use rand::Rng;
use serde_json::Value;
use unibench_model::scenario::KeyDistribution;
use unibench_store::ValuePoolRow;
use unibench_target::ParamValue;

use super::zipfian::{Zipfian, DEFAULT_ZIPFIAN_THETA};

/// Value of `ValuePoolRow::pool_kind` for sampled keys.
pub const KEY_POOL_KIND: &str = "KEY";

/// Value of `ValuePoolRow::pool_kind` for key bounds.
pub const RANGE_POOL_KIND: &str = "RANGE";

/// Share of the pool's keys that form the hot set of the hotspot
/// distribution.
pub const HOTSPOT_KEY_FRACTION: f64 = 0.2;

/// Share of hotspot draws that go to the hot set. The remaining draws are
/// spread uniformly over the other keys.
pub const HOTSPOT_DRAW_FRACTION: f64 = 0.8;

/// Existing keys and the distribution that draws them.
#[derive(Debug, Clone)]
pub struct KeyPool {
    values: Vec<ParamValue>,
    chooser: Chooser,
    stride: usize,
}

#[derive(Debug, Clone)]
enum Chooser {
    Uniform,
    Zipfian(Zipfian),
    /// The first `hot` ranks form the hot set.
    Hotspot {
        hot: usize,
    },
}

/// Error raised when a value pool row cannot be bound as a key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pool_kind} value pool row {seq} holds {found}, which cannot be bound as a key")]
pub struct InvalidPoolValue {
    pub pool_kind: String,
    pub seq: i64,
    /// Short description of the JSON value, such as `an array`.
    pub found: String,
}

impl KeyPool {
    /// Builds a pool over the given keys, in the given order.
    pub fn new(values: Vec<ParamValue>, distribution: KeyDistribution) -> Self {
        let len = values.len();
        let chooser = match distribution {
            KeyDistribution::Uniform => Chooser::Uniform,
            // `Zipfian::new` fails only for an empty pool or an invalid
            // theta. An empty pool never draws, so any chooser will do.
            KeyDistribution::Zipfian => {
                Zipfian::new(len as u64, DEFAULT_ZIPFIAN_THETA).map_or(Chooser::Uniform, Chooser::Zipfian)
            }
            KeyDistribution::Hotspot => Chooser::Hotspot { hot: hot_set_len(len) },
        };
        KeyPool { values, chooser, stride: spreading_stride(len) }
    }

    /// Builds a pool from the `KEY` rows of a template's value pools, in
    /// `seq` order. Rows of other kinds are ignored.
    pub fn from_rows(rows: &[ValuePoolRow], distribution: KeyDistribution) -> Result<Self, InvalidPoolValue> {
        let mut key_rows: Vec<&ValuePoolRow> = rows.iter().filter(|row| row.pool_kind == KEY_POOL_KIND).collect();
        key_rows.sort_by_key(|row| row.seq);
        let values = key_rows.into_iter().map(key_value).collect::<Result<_, _>>()?;
        Ok(KeyPool::new(values, distribution))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Returns whether the pool has no keys.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Returns the keys, in pool order.
    pub fn values(&self) -> &[ParamValue] {
        &self.values
    }

    /// Draws the pool index of one key, or `None` when the pool is empty.
    pub fn draw_index<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<usize> {
        let len = self.values.len();
        if len == 0 {
            return None;
        }
        let rank = match &self.chooser {
            Chooser::Uniform => return Some(rng.gen_range(0..len)),
            // The rank is below `len`, so it fits a `usize`.
            Chooser::Zipfian(zipfian) => zipfian.sample(rng) as usize,
            Chooser::Hotspot { hot } => hotspot_rank(*hot, len, rng),
        };
        Some(self.index_of_rank(rank))
    }

    /// Draws one key, or `None` when the pool is empty.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<ParamValue> {
        self.draw_index(rng).map(|index| self.values[index].clone())
    }

    /// Pool index of the key with popularity rank `rank`, where rank 0 is
    /// the hottest under the skewed distributions.
    pub fn index_of_rank(&self, rank: usize) -> usize {
        let len = self.values.len() as u128;
        ((rank as u128 * self.stride as u128) % len) as usize
    }
}

fn hot_set_len(len: usize) -> usize {
    let hot = (len as f64 * HOTSPOT_KEY_FRACTION).ceil() as usize;
    hot.clamp(1, len.max(1))
}

fn hotspot_rank<R: Rng + ?Sized>(hot: usize, len: usize, rng: &mut R) -> usize {
    if hot >= len || rng.gen::<f64>() < HOTSPOT_DRAW_FRACTION {
        rng.gen_range(0..hot)
    } else {
        rng.gen_range(hot..len)
    }
}

/// Returns the smallest stride at or above `0.618 * len` that is coprime to
/// `len`, which makes `rank * stride mod len` a permutation of the pool.
fn spreading_stride(len: usize) -> usize {
    if len <= 2 {
        return 1;
    }
    let mut stride = ((len as f64 * 0.618_033_988_749_895) as usize).max(1);
    // `len - 1` is coprime to `len`, so the search ends by then.
    while greatest_common_divisor(stride, len) != 1 {
        stride += 1;
    }
    stride
}

fn greatest_common_divisor(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn key_value(row: &ValuePoolRow) -> Result<ParamValue, InvalidPoolValue> {
    json_to_param(&row.value).ok_or_else(|| InvalidPoolValue {
        pool_kind: row.pool_kind.clone(),
        seq: row.seq,
        found: describe_json(&row.value).to_owned(),
    })
}

/// Converts a pool value to a bind value. Integers that fit `i64` become
/// `Int` and other numbers `Float`. Arrays and objects return `None`.
pub fn json_to_param(value: &Value) -> Option<ParamValue> {
    match value {
        Value::Null => Some(ParamValue::Null),
        Value::Bool(flag) => Some(ParamValue::Bool(*flag)),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Some(ParamValue::Int(integer)),
            None => number.as_f64().map(ParamValue::Float),
        },
        Value::String(text) => Some(ParamValue::Text(text.clone())),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn describe_json(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    use super::*;

    const KEYS: usize = 1000;
    const DRAWS: usize = 1_000_000;

    fn integer_pool(distribution: KeyDistribution) -> KeyPool {
        KeyPool::new((0..KEYS as i64).map(ParamValue::Int).collect(), distribution)
    }

    fn draw_counts(pool: &KeyPool, seed: u64) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts = vec![0usize; pool.len()];
        for _ in 0..DRAWS {
            counts[pool.draw_index(&mut rng).unwrap()] += 1;
        }
        counts
    }

    fn median(counts: &[usize]) -> usize {
        let mut sorted = counts.to_vec();
        sorted.sort_unstable();
        sorted[sorted.len() / 2]
    }

    #[test]
    fn zipfian_hottest_key_dominates_median() {
        let pool = integer_pool(KeyDistribution::Zipfian);
        let counts = draw_counts(&pool, 1);

        let hottest = *counts.iter().max().unwrap();
        let median = median(&counts);
        assert!(hottest >= 50 * median, "hottest {hottest}, median {median}");
        assert_eq!(counts[pool.index_of_rank(0)], hottest, "rank 0 is the hottest key");
    }

    #[test]
    fn zipfian_hot_keys_are_spread() {
        let pool = integer_pool(KeyDistribution::Zipfian);
        let hottest: Vec<usize> = (0..10).map(|rank| pool.index_of_rank(rank)).collect();
        assert!(hottest.iter().any(|&index| index > KEYS / 2), "{hottest:?}");
        assert!(hottest.windows(2).all(|pair| pair[0].abs_diff(pair[1]) > 1), "{hottest:?}");
    }

    #[test]
    fn uniform_keys_within_30_percent_of_mean() {
        let counts = draw_counts(&integer_pool(KeyDistribution::Uniform), 2);
        let mean = DRAWS as f64 / KEYS as f64;
        for (index, &count) in counts.iter().enumerate() {
            let deviation = (count as f64 - mean).abs() / mean;
            assert!(deviation <= 0.3, "key {index}: {count} draws, mean {mean}");
        }
    }

    #[test]
    fn hotspot_gives_hot_set_80_percent() {
        let pool = integer_pool(KeyDistribution::Hotspot);
        let counts = draw_counts(&pool, 3);

        let hot_len = (KEYS as f64 * HOTSPOT_KEY_FRACTION) as usize;
        let mut is_hot = vec![false; KEYS];
        for rank in 0..hot_len {
            is_hot[pool.index_of_rank(rank)] = true;
        }
        let hot_draws: usize = counts.iter().zip(&is_hot).filter(|(_, &hot)| hot).map(|(count, _)| count).sum();
        let hot_share = hot_draws as f64 / DRAWS as f64;
        assert!((hot_share - HOTSPOT_DRAW_FRACTION).abs() < 0.005, "hot share {hot_share}");

        // Within each set, keys are drawn uniformly: a hot key expects
        // 4,000 draws and a cold key 250.
        let coldest_hot = counts.iter().zip(&is_hot).filter(|(_, &hot)| hot).map(|(count, _)| *count).min().unwrap();
        let hottest_cold = counts.iter().zip(&is_hot).filter(|(_, &hot)| !hot).map(|(count, _)| *count).max().unwrap();
        assert!(coldest_hot > 3400, "coldest hot key {coldest_hot}");
        assert!(hottest_cold < 350, "hottest cold key {hottest_cold}");
    }

    #[test]
    fn rank_mapping_is_a_permutation() {
        for len in [1, 2, 3, 10, 64, 1000, 1001] {
            let pool = KeyPool::new(vec![ParamValue::Null; len], KeyDistribution::Zipfian);
            let mut seen = vec![false; len];
            for rank in 0..len {
                seen[pool.index_of_rank(rank)] = true;
            }
            assert!(seen.iter().all(|&hit| hit), "length {len}");
        }
    }

    #[test]
    fn small_pools_draw_in_range() {
        let mut rng = StdRng::seed_from_u64(4);
        for distribution in KeyDistribution::ALL.iter().copied() {
            for len in [1, 2, 3] {
                let pool = KeyPool::new((0..len).map(ParamValue::Int).collect(), distribution);
                for _ in 0..100 {
                    assert!(pool.draw_index(&mut rng).unwrap() < len as usize);
                }
            }
            let empty = KeyPool::new(Vec::new(), distribution);
            assert_eq!(empty.draw(&mut rng), None);
        }
    }

    fn row(kind: &str, seq: i64, value: Value) -> ValuePoolRow {
        ValuePoolRow {
            pool_id: format!("pool-{seq}"),
            template_id: "tpl".to_owned(),
            pool_kind: kind.to_owned(),
            column_name: Some("id".to_owned()),
            seq,
            value,
            created_at: None,
        }
    }

    #[test]
    fn rows_load_key_kind_in_seq_order() {
        let rows =
            [row("KEY", 2, json!("c")), row("RANGE", 0, json!(99)), row("KEY", 0, json!(7)), row("KEY", 1, json!(2.5))];
        let pool = KeyPool::from_rows(&rows, KeyDistribution::Uniform).unwrap();
        assert_eq!(pool.values(), [ParamValue::Int(7), ParamValue::Float(2.5), ParamValue::Text("c".to_owned())]);
    }

    #[test]
    fn rows_reject_structured_keys() {
        let rows = [row("KEY", 4, json!([1, 2]))];
        let error = KeyPool::from_rows(&rows, KeyDistribution::Uniform).unwrap_err();
        assert_eq!(error.to_string(), "KEY value pool row 4 holds an array, which cannot be bound as a key");
    }
}
