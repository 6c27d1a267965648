//! The enumerations of the trading vocabulary, spelled as on the wire.

use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// # Errors
            /// Returns a message listing the accepted spellings.
            pub fn parse(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(concat!("invalid ", stringify!($name), " {:?}; expected one of: ", $($text, " "),+), s)),
                }
            }
        }

        // Written by hand: the derive does not see the renames through the macro.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Order side.
    Side { Buy = "buy", Sell = "sell" }
);
wire_enum!(
    /// Why an order exists: it opens a position, protects one, closes one, or trades holdings.
    OrderPurpose {
        Entry = "entry",
        StopLoss = "stop_loss",
        TakeProfit = "take_profit",
        Close = "close",
        Rebalance = "rebalance",
        Hodl = "hodl"
    }
);
wire_enum!(
    /// Position direction.
    PositionSide { Long = "long", Short = "short" }
);
wire_enum!(
    /// Output of the trading decision agent.
    TradeAction { Buy = "BUY", Sell = "SELL", Hold = "HOLD", CloseLong = "CLOSE_LONG", CloseShort = "CLOSE_SHORT" }
);
wire_enum!(
    /// Technical-analysis bias.
    Bias { Long = "long", Short = "short", Neutral = "neutral" }
);
wire_enum!(
    /// Trend direction of the TA agent.
    TrendDirection { Bullish = "bullish", Bearish = "bearish", Neutral = "neutral" }
);
wire_enum!(
    /// Market regimes.
    Regime {
        TrendingBull = "trending_bull",
        TrendingBear = "trending_bear",
        Ranging = "ranging",
        VolatileBull = "volatile_bull",
        VolatileBear = "volatile_bear",
        Choppy = "choppy",
        BreakoutPotential = "breakout_potential",
        Unknown = "unknown",
    }
);
wire_enum!(
    /// Sentiment bias.
    SentimentBias {
        VeryBullish = "very_bullish",
        Bullish = "bullish",
        Neutral = "neutral",
        Bearish = "bearish",
        VeryBearish = "very_bearish",
    }
);
wire_enum!(
    /// Fear and greed classification.
    FearGreed {
        ExtremeFear = "extreme_fear",
        Fear = "fear",
        Neutral = "neutral",
        Greed = "greed",
        ExtremeGreed = "extreme_greed",
    }
);
wire_enum!(
    /// How strict entries should be in the current regime.
    EntryStrictness { Relaxed = "relaxed", Normal = "normal", Strict = "strict", VeryStrict = "very_strict" }
);
wire_enum!(
    /// Order types.
    OrderType {
        Market = "market",
        Limit = "limit",
        StopLoss = "stop-loss",
        TakeProfit = "take-profit",
        StopLossLimit = "stop-loss-limit",
        TakeProfitLimit = "take-profit-limit",
    }
);
wire_enum!(
    /// Order lifecycle states. `unknown`: the placement's outcome is unknown (an ambiguous reply,
    /// or a restart cut it short); tracked until the exchange shows the order or its history
    /// proves it absent after the visibility window.
    OrderStatus {
        Pending = "pending",
        Open = "open",
        PartiallyFilled = "partially_filled",
        Filled = "filled",
        Cancelled = "cancelled",
        Expired = "expired",
        Rejected = "rejected",
        Error = "error",
        Unknown = "unknown",
    }
);
wire_enum!(
    /// Position lifecycle states.
    PositionStatus { Open = "open", Closing = "closing", Closed = "closed", Liquidated = "liquidated" }
);
wire_enum!(
    /// Paper or live trading.
    TradingMode { Paper = "paper", Live = "live" }
);
wire_enum!(
    /// Alert severity.
    Severity { Low = "low", Medium = "medium", High = "high", Critical = "critical" }
);
wire_enum!(
    /// Message priority (metadata only; delivery is not priority ordered).
    Priority { Low = "low", Normal = "normal", High = "high", Urgent = "urgent" }
);

impl OrderStatus {
    /// Terminal states accept no further transitions.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Filled | Self::Cancelled | Self::Expired | Self::Rejected | Self::Error
        )
    }

    /// The order lifecycle as one table: may an order move from `self` to `next`?
    pub fn can_transition_to(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        match (self, next) {
            (Pending, Open | PartiallyFilled | Filled | Cancelled | Expired | Rejected | Error | Unknown) => true,
            (Open, PartiallyFilled | Filled | Cancelled | Expired | Error) => true,
            (PartiallyFilled, PartiallyFilled | Filled | Cancelled | Expired | Error) => true,
            // `error` means "outcome unknown": a reconcile may resolve it to the exchange's truth.
            (Error, Open | PartiallyFilled | Filled | Cancelled | Expired | Rejected) => true,
            // `unknown` ends when the exchange shows the order, or as `error` once its history
            // proves it was never placed.
            (Unknown, Open | PartiallyFilled | Filled | Cancelled | Expired | Rejected | Error) => true,
            _ => false,
        }
    }
}

impl OrderPurpose {
    /// A stop-loss or take-profit of a position.
    pub fn is_protective(self) -> bool {
        matches!(self, Self::StopLoss | Self::TakeProfit)
    }

    /// A spot trade of holdings (rebalance or hodl): no position.
    pub fn is_holding(self) -> bool {
        matches!(self, Self::Rebalance | Self::Hodl)
    }
}

/// The most leverage any trade may carry (reference §6: 1..5); `risk.max_leverage` and the
/// exchange's pair limits may allow less, never more.
pub const MAX_LEVERAGE: u32 = 5;

impl Side {
    pub fn opposite(self) -> Self {
        match self {
            Self::Buy => Self::Sell,
            Self::Sell => Self::Buy,
        }
    }

    /// The side of the position this side opens.
    pub fn position(self) -> PositionSide {
        match self {
            Self::Buy => PositionSide::Long,
            Self::Sell => PositionSide::Short,
        }
    }
}

impl PositionSide {
    /// Whether a stop at `stop` protects this position against `reference` (an entry or the
    /// market): strictly below it for a long, strictly above it for a short.
    pub fn stop_protects(self, reference: rust_decimal::Decimal, stop: rust_decimal::Decimal) -> bool {
        match self {
            Self::Long => stop < reference,
            Self::Short => stop > reference,
        }
    }

    /// Whether a take-profit at `target` is on the winning side of `reference`: strictly above it
    /// for a long, strictly below it for a short.
    pub fn take_profit_wins(self, reference: rust_decimal::Decimal, target: rust_decimal::Decimal) -> bool {
        match self {
            Self::Long => target > reference,
            Self::Short => target < reference,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_wire_spellings() {
        for r in Regime::ALL {
            assert_eq!(Regime::parse(r.as_str()).unwrap(), *r);
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert!(TradeAction::parse("CLOSE").is_err());
    }

    #[test]
    fn order_lifecycle_table() {
        use OrderStatus::*;
        assert!(Pending.can_transition_to(Open));
        assert!(Open.can_transition_to(PartiallyFilled));
        assert!(PartiallyFilled.can_transition_to(Cancelled));
        assert!(!Filled.can_transition_to(Open));
        assert!(!Cancelled.can_transition_to(Filled));
        assert!(Error.can_transition_to(Filled));
    }
}
