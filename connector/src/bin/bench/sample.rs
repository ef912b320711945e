//! Latency samples and their percentiles.

use std::time::Instant;

/// Latency samples of one action, with its statement and round-trip counts.
#[derive(Default, Clone, Debug)]
pub struct Sample {
    pub ms: Vec<f64>,
    pub statements: u64,
    pub round_trips: u64,
}

impl Sample {
    /// The `p`th percentile (nearest rank) in milliseconds.
    pub fn pct(&self, p: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i]
    }

    pub fn p50(&self) -> f64 {
        self.pct(50.0)
    }

    pub fn p95(&self) -> f64 {
        self.pct(95.0)
    }

    pub fn p99(&self) -> f64 {
        self.pct(99.0)
    }

    pub fn len(&self) -> usize {
        self.ms.len()
    }

    /// Statements per call.
    pub fn statements_per_call(&self) -> f64 {
        self.statements as f64 / self.ms.len().max(1) as f64
    }

    /// Client round trips per call.
    pub fn round_trips_per_call(&self) -> f64 {
        self.round_trips as f64 / self.ms.len().max(1) as f64
    }

    /// Add the time since `t`.
    pub fn push_since(&mut self, t: Instant) {
        self.ms.push(ms_since(t));
    }
}

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s = Sample {
            ms: (1..=100).map(f64::from).collect(),
            ..Sample::default()
        };
        assert_eq!(s.pct(0.0), 1.0);
        assert_eq!(s.pct(100.0), 100.0);
        assert!((s.p50() - 50.0).abs() <= 1.0);
        assert!((s.p99() - 99.0).abs() <= 1.0);
        assert!(Sample::default().p50().is_nan());
    }

    #[test]
    fn per_call_counts() {
        let s = Sample {
            ms: vec![1.0, 2.0],
            statements: 6,
            round_trips: 4,
        };
        assert_eq!(s.statements_per_call(), 3.0);
        assert_eq!(s.round_trips_per_call(), 2.0);
    }
}
