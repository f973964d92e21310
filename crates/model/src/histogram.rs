//! Latency histograms: HDR histograms in microseconds, from 1 µs to 1 h at
//! three significant digits, that merge exactly across workers and travel
//! through the store as base64 text (HdrHistogram's V2 deflate encoding),
//! which every store backend can hold in a text column.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Smallest latency a histogram records, in microseconds.
pub const LOWEST_MICROS: u64 = 1;
/// Largest latency a histogram records, in microseconds (one hour).
pub const HIGHEST_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept for every recorded value.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Error raised when a serialised histogram cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistogramDecodeError {
    #[error("latency histogram is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("latency histogram could not be decoded: {0}")]
    Decode(String),
    #[error("latency histogram has bounds {low}..{high} µs, expected {LOWEST_MICROS}..{HIGHEST_MICROS} µs")]
    Bounds { low: u64, high: u64 },
}

/// A latency histogram with a count of values that fell outside its range.
///
/// Out-of-range values are clamped to the nearest bound and counted, never
/// dropped: a query that took longer than an hour still counts as a query.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
    clamped: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.histogram == other.histogram && self.clamped == other.clamped
    }
}

impl LatencyHistogram {
    /// Creates an empty histogram with the standard bounds.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
            .expect("the standard histogram bounds are valid");
        LatencyHistogram { histogram, clamped: 0 }
    }

    /// Records one latency in microseconds, clamping it into range.
    pub fn record_micros(&mut self, micros: u64) {
        let value = micros.clamp(LOWEST_MICROS, HIGHEST_MICROS);
        if value != micros {
            self.clamped += 1;
        }
        // The value is within the bounds the histogram was built with, and
        // counts saturate rather than overflow.
        self.histogram.saturating_record(value);
    }

    /// Records one latency given as a duration.
    pub fn record(&mut self, latency: std::time::Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_micros(micros);
    }

    /// Adds every value of `other` to this histogram. The result is exactly
    /// the histogram of both sets of values.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both histograms share the standard bounds, so adding never fails.
        self.histogram.add(&other.histogram).expect("histograms with the standard bounds always merge");
        self.clamped += other.clamped;
    }

    /// Empties the histogram.
    pub fn reset(&mut self) {
        self.histogram.reset();
        self.clamped = 0;
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// Returns whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// Number of values that were outside the range and clamped.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    /// Latency at `percentile` (0 to 100) in milliseconds, or `None` when
    /// the histogram is empty.
    pub fn percentile_ms(&self, percentile: f64) -> Option<f64> {
        self.non_empty().map(|h| micros_to_ms(h.value_at_percentile(percentile)))
    }

    /// Mean latency in milliseconds, or `None` when empty.
    pub fn mean_ms(&self) -> Option<f64> {
        self.non_empty().map(|h| h.mean() / 1000.0)
    }

    /// Smallest recorded latency in milliseconds, or `None` when empty.
    pub fn min_ms(&self) -> Option<f64> {
        self.non_empty().map(|h| micros_to_ms(h.min()))
    }

    /// Largest recorded latency in milliseconds, or `None` when empty.
    pub fn max_ms(&self) -> Option<f64> {
        self.non_empty().map(|h| micros_to_ms(h.max()))
    }

    /// Encodes the histogram as base64 text. The clamped count is not part
    /// of the encoding; snapshots carry it separately.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new().serialize(&self.histogram, &mut bytes).expect("serialising into memory cannot fail");
        BASE64.encode(bytes)
    }

    /// Decodes a histogram written by [`LatencyHistogram::to_base64`].
    pub fn from_base64(text: &str) -> Result<Self, HistogramDecodeError> {
        let bytes = BASE64.decode(text.trim())?;
        let histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|error| HistogramDecodeError::Decode(format!("{error:?}")))?;
        if histogram.low() != LOWEST_MICROS || histogram.high() < HIGHEST_MICROS {
            return Err(HistogramDecodeError::Bounds { low: histogram.low(), high: histogram.high() });
        }
        let mut standard = LatencyHistogram::new();
        standard.histogram.add(&histogram).map_err(|error| HistogramDecodeError::Decode(format!("{error:?}")))?;
        Ok(standard)
    }

    fn non_empty(&self) -> Option<&Histogram<u64>> {
        (!self.histogram.is_empty()).then_some(&self.histogram)
    }
}

fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let histogram = LatencyHistogram::new();
        assert_eq!(histogram.percentile_ms(95.0), None);
        assert_eq!(histogram.mean_ms(), None);
        assert_eq!(histogram.min_ms(), None);
    }

    #[test]
    fn out_of_range_values_are_clamped_and_counted() {
        let mut histogram = LatencyHistogram::new();
        histogram.record_micros(0);
        histogram.record(Duration::from_secs(7200));
        histogram.record_micros(500);
        assert_eq!(histogram.len(), 3);
        assert_eq!(histogram.clamped(), 2);
        let max = histogram.max_ms().unwrap();
        assert!((max - 3_600_000.0).abs() / 3_600_000.0 < 0.001, "{max}");
    }

    #[test]
    fn merge_equals_recording_everything_once() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        let mut all = LatencyHistogram::new();
        for micros in 1..5000u64 {
            let value = micros * 37 % 90_000 + 1;
            if micros % 3 == 0 {
                a.record_micros(value)
            } else {
                b.record_micros(value)
            }
            all.record_micros(value);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.percentile_ms(99.0), all.percentile_ms(99.0));
    }

    #[test]
    fn base64_round_trip_is_lossless() {
        let mut histogram = LatencyHistogram::new();
        for micros in [1, 2, 999, 1000, 1001, 250_000, 3_600_000_000] {
            histogram.record_micros(micros);
        }
        let decoded = LatencyHistogram::from_base64(&histogram.to_base64()).unwrap();
        assert_eq!(decoded.len(), histogram.len());
        for percentile in [0.0, 50.0, 90.0, 99.9, 100.0] {
            assert_eq!(decoded.percentile_ms(percentile), histogram.percentile_ms(percentile));
        }
    }

    #[test]
    fn bad_base64_is_an_error() {
        assert!(matches!(LatencyHistogram::from_base64("%%%"), Err(HistogramDecodeError::Base64(_))));
        assert!(LatencyHistogram::from_base64("aGVsbG8=").is_err());
    }
}
