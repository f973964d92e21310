//! Zipfian rank sampler with constant time per draw.
//!
//! The sampler follows Gray et al., "Quickly Generating Billion-Record
//! Synthetic Databases" (SIGMOD 1994), the method YCSB's
//! `ZipfianGenerator` uses: construction sums the zeta series once, in
//! O(n), and every draw then costs one uniform number and one `powf`. Rank
//! 0 is the most frequent, and rank `r` is drawn with a probability close
//! to `1 / ((r + 1)^theta * zeta(n, theta))`.

use rand::Rng;

/// Skew of zipfian key draws: YCSB's default, under which the hottest of
/// 1,000 keys receives about 13 % of the draws.
pub const DEFAULT_ZIPFIAN_THETA: f64 = 0.99;

/// Sampler of ranks `0..items` with a zipfian distribution.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    /// `zeta(items, theta)`, the normalising sum.
    zeta_items: f64,
    /// `1 + 0.5^theta`, which is `zeta(2, theta)`.
    zeta_two: f64,
    alpha: f64,
    eta: f64,
}

impl Zipfian {
    /// Builds a sampler over `items` ranks, or returns `None` when `items`
    /// is 0 or `theta` is outside the open interval (0, 1) where the
    /// method is defined.
    pub fn new(items: u64, theta: f64) -> Option<Self> {
        if items == 0 || !(theta > 0.0 && theta < 1.0) {
            return None;
        }

        let zeta_items = zeta(items, theta);
        let zeta_two = 1.0 + 0.5f64.powf(theta);
        // With one or two items the two shortcut branches of `rank` cover
        // every draw, and the formula for eta would divide zero by zero.
        let eta = if items > 2 {
            (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta_two / zeta_items)
        } else {
            0.0
        };
        Some(Zipfian { items, zeta_items, zeta_two, alpha: 1.0 / (1.0 - theta), eta })
    }

    /// Maps a uniform draw `u` in `[0, 1)` to a rank in `0..items`.
    pub fn rank(&self, u: f64) -> u64 {
        let scaled = u * self.zeta_items;
        if scaled < 1.0 {
            return 0;
        }
        if scaled < self.zeta_two {
            return 1;
        }
        let rank = self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        // The float-to-integer cast saturates, and the minimum keeps a draw
        // of u close to 1 inside the range.
        (rank as u64).min(self.items - 1)
    }

    /// Draws one rank.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        self.rank(rng.gen::<f64>())
    }
}

/// Returns `sum(1 / i^theta)` for `i` in `1..=items`.
fn zeta(items: u64, theta: f64) -> f64 {
    (1..=items).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn invalid_arguments_are_rejected() {
        assert!(Zipfian::new(0, 0.99).is_none());
        assert!(Zipfian::new(10, 1.0).is_none());
        assert!(Zipfian::new(10, 0.0).is_none());
        assert!(Zipfian::new(10, f64::NAN).is_none());
    }

    #[test]
    fn ranks_stay_in_range() {
        for items in [1, 2, 3, 10, 1000] {
            let zipfian = Zipfian::new(items, DEFAULT_ZIPFIAN_THETA).unwrap();
            for u in [0.0, 0.1, 0.5, 0.9, 0.999_999, 1.0 - f64::EPSILON] {
                assert!(zipfian.rank(u) < items, "items {items}, u {u}");
            }
        }
    }

    #[test]
    fn rank_zero_has_expected_share() {
        let zipfian = Zipfian::new(1000, DEFAULT_ZIPFIAN_THETA).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let draws = 200_000;
        let zeros = (0..draws).filter(|_| zipfian.sample(&mut rng) == 0).count();

        let expected = 1.0 / zeta(1000, DEFAULT_ZIPFIAN_THETA);
        let share = zeros as f64 / draws as f64;
        assert!((share - expected).abs() < 0.01, "share {share}, expected {expected}");
    }
}
