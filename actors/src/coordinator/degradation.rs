//! Degradation levels (reference §5.5): failures of model calls and agent tasks lower the level,
//! every three successes in a row recover one failure.

use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DegradationLevel {
    /// Everything runs.
    #[default]
    Normal,
    /// Sentiment analysis is skipped.
    Reduced,
    /// Only regime conflicts are sent to the model.
    Limited,
    /// Risk-only: no decisions, no new entries.
    Emergency,
}

/// Failure counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Degradation {
    pub llm_failures: u32,
    pub api_failures: u32,
    pub successes: u32,
}

/// What a finished unit of work reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    LlmFailure,
    ApiFailure,
}

const RECOVERY_THRESHOLD: u32 = 3;

impl Degradation {
    pub fn level(&self) -> DegradationLevel {
        match self.llm_failures + self.api_failures {
            n if n >= 9 => DegradationLevel::Emergency,
            n if n >= 6 => DegradationLevel::Limited,
            n if n >= 3 => DegradationLevel::Reduced,
            _ => DegradationLevel::Normal,
        }
    }

    /// Records an outcome; returns `(old, new)` when the level changed.
    pub fn record(&mut self, outcome: Outcome) -> Option<(DegradationLevel, DegradationLevel)> {
        let old = self.level();
        match outcome {
            Outcome::LlmFailure => {
                self.llm_failures = self.llm_failures.saturating_add(1);
                self.successes = 0;
            }
            Outcome::ApiFailure => {
                self.api_failures = self.api_failures.saturating_add(1);
                self.successes = 0;
            }
            Outcome::Success => {
                self.successes += 1;
                if self.successes >= RECOVERY_THRESHOLD {
                    self.successes = 0;
                    if self.llm_failures >= self.api_failures {
                        self.llm_failures = self.llm_failures.saturating_sub(1);
                    } else {
                        self.api_failures = self.api_failures.saturating_sub(1);
                    }
                }
            }
        }
        let new = self.level();
        (new != old).then_some((old, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_rise_with_failures_and_recover_gradually() {
        let mut d = Degradation::default();
        let mut seen = Vec::new();
        for i in 0..9 {
            let o = if i % 2 == 0 {
                Outcome::LlmFailure
            } else {
                Outcome::ApiFailure
            };
            if let Some(change) = d.record(o) {
                seen.push(change);
            }
        }
        use DegradationLevel::*;
        assert_eq!(seen, vec![(Normal, Reduced), (Reduced, Limited), (Limited, Emergency)]);
        // Two successes do nothing; the third recovers one failure (9 → 8: LIMITED).
        assert_eq!(d.record(Outcome::Success), None);
        assert_eq!(d.record(Outcome::Success), None);
        assert_eq!(d.record(Outcome::Success), Some((Emergency, Limited)));
        // A failure resets the success run.
        d.record(Outcome::Success);
        d.record(Outcome::Success);
        d.record(Outcome::ApiFailure);
        assert_eq!(d.record(Outcome::Success), None);
        assert_eq!(d.level(), Emergency);
    }
}
