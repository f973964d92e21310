//! Value generators, one per parameter spec, that build the values bound to
//! a query's placeholders.

use std::sync::Arc;

use chrono::Utc;
use rand::distributions::{Alphanumeric, Uniform};
use rand::Rng;
use unibench_model::template_check::{ConstValue, ParamSpec};
use unibench_target::ParamValue;

use super::key_pool::KeyPool;
use super::new_key::{KeyShard, NewKeySequence};

/// Builds the value of one parameter. Generators that draw keys share the
/// worker's key pool and new-key sequence.
#[derive(Debug, Clone)]
pub enum ParamGenerator {
    Key(Arc<KeyPool>),
    NewKey(Arc<NewKeySequence>),
    RandomInt(Uniform<i64>),
    RandomFloat(Uniform<f64>),
    RandomString(usize),
    Now,
    /// A version 4 UUID from the caller's random number generator, bound as
    /// hyphenated text.
    Uuid,
    Const(ParamValue),
}

/// Error raised while generating a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error(
        "new_key used every key of this worker's shard [{}, {}); prepare a new run so that keys start above the new maximum",
        shard.start,
        shard.end
    )]
    KeyShardExhausted { shard: KeyShard },
    #[error("key pool is empty")]
    EmptyKeyPool,
}

impl ParamGenerator {
    /// Builds the generator of a spec. The caller supplies the key sources
    /// that `key` and `new_key` draw from.
    ///
    /// The ranges of `random_int` and `random_float` are valid because the
    /// spec parser rejects empty, non-finite and overflowing ranges.
    pub fn from_spec(spec: &ParamSpec, keys: &Arc<KeyPool>, new_keys: &Arc<NewKeySequence>) -> Self {
        match spec {
            ParamSpec::Key => ParamGenerator::Key(Arc::clone(keys)),
            ParamSpec::NewKey => ParamGenerator::NewKey(Arc::clone(new_keys)),
            ParamSpec::RandomInt { min, max } => ParamGenerator::RandomInt(Uniform::new_inclusive(*min, *max)),
            ParamSpec::RandomFloat { min, max } => ParamGenerator::RandomFloat(Uniform::new(*min, *max)),
            ParamSpec::RandomString { len } => ParamGenerator::RandomString(*len),
            ParamSpec::Now => ParamGenerator::Now,
            ParamSpec::Uuid => ParamGenerator::Uuid,
            ParamSpec::Const(value) => ParamGenerator::Const(const_param(value)),
        }
    }

    /// Generates one value. Fails when `new_key` has exhausted the
    /// worker's shard or `key` has an empty pool.
    pub fn try_generate<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<ParamValue, GenerateError> {
        self.generate_with(rng, false)
    }

    /// Generates one value without failing: `new_key` wraps around its
    /// shard (see [`NewKeySequence::next_key_wrapping`]), and `key` on an
    /// empty pool binds NULL, a case that workload compilation rejects.
    pub fn generate<R: Rng + ?Sized>(&self, rng: &mut R) -> ParamValue {
        // With wrapping, an empty key pool is the only error left.
        self.generate_with(rng, true).unwrap_or(ParamValue::Null)
    }

    fn generate_with<R: Rng + ?Sized>(&self, rng: &mut R, wrap_new_keys: bool) -> Result<ParamValue, GenerateError> {
        let value = match self {
            ParamGenerator::Key(pool) => pool.draw(rng).ok_or(GenerateError::EmptyKeyPool)?,
            ParamGenerator::NewKey(sequence) if wrap_new_keys => ParamValue::Int(sequence.next_key_wrapping()),
            ParamGenerator::NewKey(sequence) => {
                let key = sequence.next_key().ok_or(GenerateError::KeyShardExhausted { shard: sequence.shard() })?;
                ParamValue::Int(key)
            }
            ParamGenerator::RandomInt(range) => ParamValue::Int(rng.sample(range)),
            ParamGenerator::RandomFloat(range) => ParamValue::Float(rng.sample(range)),
            ParamGenerator::RandomString(len) => ParamValue::Text(random_alphanumeric(*len, rng)),
            ParamGenerator::Now => ParamValue::Timestamp(Utc::now()),
            ParamGenerator::Uuid => {
                let uuid = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
                ParamValue::Text(uuid.hyphenated().to_string())
            }
            ParamGenerator::Const(value) => value.clone(),
        };
        Ok(value)
    }
}

fn random_alphanumeric<R: Rng + ?Sized>(len: usize, rng: &mut R) -> String {
    let mut text = String::with_capacity(len);
    for _ in 0..len {
        text.push(char::from(rng.sample(Alphanumeric)));
    }
    text
}

fn const_param(value: &ConstValue) -> ParamValue {
    match value {
        ConstValue::Null => ParamValue::Null,
        ConstValue::Bool(flag) => ParamValue::Bool(*flag),
        ConstValue::Int(number) => ParamValue::Int(*number),
        ConstValue::Float(number) => ParamValue::Float(*number),
        ConstValue::Text(text) => ParamValue::Text(text.clone()),
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use unibench_model::scenario::KeyDistribution;

    use super::*;

    fn generator(spec: &str) -> ParamGenerator {
        let keys = Arc::new(KeyPool::new(vec![ParamValue::Int(5), ParamValue::Int(9)], KeyDistribution::Uniform));
        let new_keys = Arc::new(NewKeySequence::new(KeyShard { start: 100, end: 102 }));
        ParamGenerator::from_spec(&spec.parse().unwrap(), &keys, &new_keys)
    }

    fn values(spec: &str, count: usize) -> Vec<ParamValue> {
        let generator = generator(spec);
        let mut rng = StdRng::seed_from_u64(5);
        (0..count).map(|_| generator.try_generate(&mut rng).unwrap()).collect()
    }

    #[test]
    fn random_int_covers_inclusive_range() {
        let drawn = values("random_int(-2, 2)", 1000);
        for expected in -2..=2 {
            assert!(drawn.contains(&ParamValue::Int(expected)), "{expected} never drawn");
        }
        assert!(drawn.iter().all(|value| matches!(value, ParamValue::Int(-2..=2))));
    }

    #[test]
    fn random_int_default_range() {
        for value in values("random_int", 1000) {
            let ParamValue::Int(number) = value else { panic!("{value:?}") };
            assert!((0..=i64::from(i32::MAX)).contains(&number), "{number}");
        }
    }

    #[test]
    fn random_float_stays_in_range() {
        for value in values("random_float(1.5, 2.5)", 1000) {
            let ParamValue::Float(number) = value else { panic!("{value:?}") };
            assert!((1.5..2.5).contains(&number), "{number}");
        }
    }

    #[test]
    fn random_string_is_alphanumeric() {
        for value in values("random_string(24)", 100) {
            let ParamValue::Text(text) = value else { panic!("{value:?}") };
            assert_eq!(text.len(), 24);
            assert!(text.bytes().all(|byte| byte.is_ascii_alphanumeric()), "{text}");
        }
    }

    #[test]
    fn uuid_is_version_4_text() {
        let drawn = values("uuid", 2);
        assert_ne!(drawn[0], drawn[1]);
        for value in drawn {
            let ParamValue::Text(text) = value else { panic!("{value:?}") };
            let uuid = uuid::Uuid::parse_str(&text).unwrap();
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(text.len(), 36);
        }
    }

    #[test]
    fn key_draws_from_pool() {
        let drawn = values("key", 200);
        assert!(drawn.contains(&ParamValue::Int(5)));
        assert!(drawn.contains(&ParamValue::Int(9)));
        assert!(drawn.iter().all(|value| matches!(value, ParamValue::Int(5 | 9))));
    }

    #[test]
    fn new_key_stops_at_shard_end() {
        let generator = generator("new_key");
        let mut rng = StdRng::seed_from_u64(6);
        assert_eq!(generator.try_generate(&mut rng), Ok(ParamValue::Int(100)));
        assert_eq!(generator.try_generate(&mut rng), Ok(ParamValue::Int(101)));
        let error = generator.try_generate(&mut rng).unwrap_err();
        assert_eq!(error, GenerateError::KeyShardExhausted { shard: KeyShard { start: 100, end: 102 } });
        assert!(error.to_string().contains("[100, 102)"), "{error}");
    }

    #[test]
    fn lenient_new_key_wraps() {
        let generator = generator("new_key");
        let mut rng = StdRng::seed_from_u64(6);
        let keys: Vec<ParamValue> = (0..3).map(|_| generator.generate(&mut rng)).collect();
        assert_eq!(keys, [ParamValue::Int(100), ParamValue::Int(101), ParamValue::Int(100)]);
    }

    #[test]
    fn lenient_key_on_empty_pool_is_null() {
        let keys = Arc::new(KeyPool::new(Vec::new(), KeyDistribution::Uniform));
        let new_keys = Arc::new(NewKeySequence::new(KeyShard { start: 0, end: 0 }));
        let generator = ParamGenerator::from_spec(&ParamSpec::Key, &keys, &new_keys);
        let mut rng = StdRng::seed_from_u64(8);
        assert_eq!(generator.generate(&mut rng), ParamValue::Null);
        assert_eq!(generator.try_generate(&mut rng), Err(GenerateError::EmptyKeyPool));
    }

    #[test]
    fn const_and_now() {
        assert_eq!(values("const('open')", 1), [ParamValue::Text("open".to_owned())]);
        assert_eq!(values("const(null)", 1), [ParamValue::Null]);
        let before = Utc::now();
        let [ParamValue::Timestamp(now)] = values("now", 1)[..] else { panic!("now is not a timestamp") };
        assert!(now >= before);
    }
}
