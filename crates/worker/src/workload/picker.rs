//! Choice of the next operation by weight.

use rand::Rng;

/// Picks an operation index with a probability proportional to its weight,
/// by binary search over the cumulative weights: O(log n) per pick.
#[derive(Debug, Clone)]
pub struct OperationPicker {
    /// Cumulative weights divided by the total, so the last is 1.
    cumulative: Vec<f64>,
}

/// Error raised when weights cannot be picked from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidWeights {
    #[error("no operations to pick from")]
    Empty,
    #[error("weight {weight} of operation {index} is not a finite number greater than 0")]
    NotPositive { index: usize, weight: f64 },
}

impl OperationPicker {
    /// Builds a picker. The weights need not sum to 100 because they are
    /// normalised here.
    pub fn new(weights: &[f64]) -> Result<Self, InvalidWeights> {
        if weights.is_empty() {
            return Err(InvalidWeights::Empty);
        }
        if let Some((index, &weight)) =
            weights.iter().enumerate().find(|(_, weight)| !(weight.is_finite() && **weight > 0.0))
        {
            return Err(InvalidWeights::NotPositive { index, weight });
        }

        let total: f64 = weights.iter().sum();
        let mut running = 0.0;
        let cumulative = weights
            .iter()
            .map(|weight| {
                running += weight;
                running / total
            })
            .collect();
        Ok(OperationPicker { cumulative })
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Returns whether there are no operations, which is never the case
    /// for a picker that `new` built.
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// Maps a uniform draw `u` in `[0, 1)` to an operation index.
    pub fn pick(&self, u: f64) -> usize {
        let index = self.cumulative.partition_point(|&end| end <= u);
        // Rounding can leave the last cumulative weight a hair below 1.
        index.min(self.cumulative.len() - 1)
    }

    /// Draws one operation index.
    pub fn pick_with<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.pick(rng.gen::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn picker_rejects_bad_weights() {
        assert_eq!(OperationPicker::new(&[]).unwrap_err(), InvalidWeights::Empty);
        assert_eq!(
            OperationPicker::new(&[50.0, 0.0]).unwrap_err(),
            InvalidWeights::NotPositive { index: 1, weight: 0.0 }
        );
        assert!(OperationPicker::new(&[f64::NAN]).is_err());
    }

    #[test]
    fn picker_boundaries() {
        let picker = OperationPicker::new(&[25.0, 50.0, 25.0]).unwrap();
        assert_eq!(picker.pick(0.0), 0);
        assert_eq!(picker.pick(0.249), 0);
        assert_eq!(picker.pick(0.25), 1);
        assert_eq!(picker.pick(0.749), 1);
        assert_eq!(picker.pick(0.75), 2);
        assert_eq!(picker.pick(1.0 - f64::EPSILON), 2);
        assert_eq!(picker.pick(1.0), 2);
    }

    #[test]
    fn picker_frequencies_match_weights() {
        let weights = [70.0, 20.0, 9.0, 1.0];
        let picker = OperationPicker::new(&weights).unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        let draws = 200_000;
        let mut counts = [0usize; 4];
        for _ in 0..draws {
            counts[picker.pick_with(&mut rng)] += 1;
        }

        for (index, weight) in weights.iter().enumerate() {
            let share = counts[index] as f64 / draws as f64 * 100.0;
            // About five standard deviations of a binomial share at this
            // draw count, so a correct picker fails once in millions of seeds.
            assert!((share - weight).abs() < 0.5, "operation {index}: {share} % for weight {weight}");
        }
    }
}
