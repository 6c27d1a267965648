//! Token prices per model, in USD per million tokens, and the cost of one call.

use rust_decimal::Decimal;

/// Price of one model in USD per million input and output tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
}

impl ModelPrice {
    /// `mantissa * 10^-scale` per million tokens, for input and output.
    pub const fn new(input_per_mtok: Decimal, output_per_mtok: Decimal) -> Self {
        Self {
            input_per_mtok,
            output_per_mtok,
        }
    }

    /// Cost of one call from the provider's own token counts.
    pub fn cost(&self, input_tokens: u32, output_tokens: u32) -> Decimal {
        let million = Decimal::from(1_000_000u32);
        (Decimal::from(input_tokens) * self.input_per_mtok + Decimal::from(output_tokens) * self.output_per_mtok)
            / million
    }
}

/// Model prices, matched by the longest model-name prefix (`claude-3-5-sonnet` matches
/// `claude-3-5-sonnet-20241022`). An unknown model costs zero and is reported by [`PriceTable::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    entries: Vec<(String, ModelPrice)>,
}

fn d(mantissa: i64, scale: u32) -> Decimal {
    Decimal::new(mantissa, scale)
}

impl Default for PriceTable {
    /// One consistent table (USD per million tokens) for every provider we call.
    fn default() -> Self {
        let rows: [(&str, Decimal, Decimal); 17] = [
            ("gpt-4-turbo", d(10, 0), d(30, 0)),
            ("gpt-4o-mini-search-preview", d(15, 2), d(60, 2)),
            ("gpt-4o-mini", d(15, 2), d(60, 2)),
            ("gpt-4o-search-preview", d(250, 2), d(10, 0)),
            ("gpt-4o", d(250, 2), d(10, 0)),
            ("gpt-4", d(30, 0), d(60, 0)),
            ("claude-3-5-sonnet", d(3, 0), d(15, 0)),
            ("claude-3-opus", d(15, 0), d(75, 0)),
            ("claude-3-haiku", d(25, 2), d(125, 2)),
            ("deepseek-chat", d(14, 2), d(28, 2)),
            ("deepseek-reasoner", d(55, 2), d(219, 2)),
            ("grok-2-1212", d(2, 0), d(10, 0)),
            ("grok-2", d(2, 0), d(10, 0)),
            ("grok-beta", d(5, 0), d(15, 0)),
            ("qwen2.5", d(0, 0), d(0, 0)),
            ("llama", d(0, 0), d(0, 0)),
            ("rule-based", d(0, 0), d(0, 0)),
        ];
        Self {
            entries: rows
                .iter()
                .map(|(m, i, o)| ((*m).to_string(), ModelPrice::new(*i, *o)))
                .collect(),
        }
    }
}

impl PriceTable {
    /// An empty table: every model costs zero (local models).
    pub fn free() -> Self {
        Self { entries: Vec::new() }
    }

    /// Adds or replaces the price of a model-name prefix.
    pub fn with(mut self, model_prefix: impl Into<String>, price: ModelPrice) -> Self {
        let key = model_prefix.into();
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, price));
        self
    }

    /// The price whose prefix is the longest match for `model`.
    pub fn get(&self, model: &str) -> Option<ModelPrice> {
        self.entries
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, p)| *p)
    }

    /// Cost of a call; zero for a model without a price.
    pub fn cost(&self, model: &str, input_tokens: u32, output_tokens: u32) -> Decimal {
        self.get(model)
            .map(|p| p.cost(input_tokens, output_tokens))
            .unwrap_or(Decimal::ZERO)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by unwrapping"
)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn prices_by_longest_prefix() {
        let t = PriceTable::default();
        // 1000 input at $3/M + 500 output at $15/M = 0.003 + 0.0075
        assert_eq!(t.cost("claude-3-5-sonnet-20241022", 1000, 500), dec!(0.0105));
        // gpt-4o-mini must not be priced as gpt-4o nor gpt-4
        assert_eq!(t.cost("gpt-4o-mini", 1_000_000, 0), dec!(0.15));
        assert_eq!(t.cost("gpt-4-turbo", 1000, 1000), dec!(0.04));
        assert_eq!(t.cost("deepseek-chat", 1_000_000, 1_000_000), dec!(0.42));
        assert_eq!(t.cost("qwen2.5:7b", 5000, 5000), Decimal::ZERO);
        assert!(t.get("unknown-model").is_none());
        assert_eq!(t.cost("unknown-model", 10, 10), Decimal::ZERO);
    }
}
