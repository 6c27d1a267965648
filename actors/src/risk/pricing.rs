//! Valuation of a proposal at the engine's own market price, never the proposer's.
//!
//! A proposal's `entry_price` is the price its proposer means to trade at (the limit price of a
//! manual order, the snapshot price of an agent). Before the rules run, the engine:
//! 1. needs a market price for the symbol no older than `max_price_age_secs` (else the proposal is
//!    refused with `market_price_unavailable`: nothing is guessed);
//! 2. refuses a limit price more than `max_limit_deviation_pct` *through* the market (a buy above,
//!    a sell below) with `limit_price_deviation`; a passive limit (a buy below the market) passes;
//! 3. keeps the volume the proposer asked for (`size_usd × leverage / entry_price`) and values it
//!    at the price it fills at: a marketable limit (a buy at or above the market) at the market
//!    price, a passive one at its own limit. `entry_price` becomes that price and `size_usd` the
//!    volume's value there, so size, exposure, leverage, margin, stop distance and stop side are
//!    judged on the market, never on a price the proposer made up.
//!
//! Reduce-only proposals only shrink exposure: they are repriced when a price is known but never
//! refused for a missing price or a deviation.

use super::types::{RejectionCode, RiskLimits, TradeProposal};
use crate::domain::{Side, Symbol};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

/// A market price and when it was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub price: Decimal,
    pub at: DateTime<Utc>,
}

/// Something that knows the market price of a symbol (the paper exchange's last trade, a feed).
pub trait PriceSource: Send + Sync {
    fn quote(&self, symbol: &Symbol) -> Option<Quote>;
}

/// The engine's prices: those the market feed delivered (`MarketSnapshot`) and any extra source;
/// the freshest wins.
#[derive(Clone, Default)]
pub struct MarketPrices {
    feed: HashMap<String, Quote>,
    sources: Vec<Arc<dyn PriceSource>>,
}

impl MarketPrices {
    pub fn add_source(&mut self, source: Arc<dyn PriceSource>) {
        self.sources.push(source);
    }

    /// Records a delivered price; an older observation never replaces a newer one.
    pub fn observe(&mut self, symbol: &Symbol, quote: Quote) {
        if quote.price <= Decimal::ZERO {
            return;
        }
        let slot = self.feed.entry(symbol.as_str().to_owned()).or_insert(quote);
        if quote.at >= slot.at {
            *slot = quote;
        }
    }

    /// The freshest quote for `symbol`.
    pub fn quote(&self, symbol: &Symbol) -> Option<Quote> {
        self.sources
            .iter()
            .filter_map(|s| s.quote(symbol))
            .chain(self.feed.get(symbol.as_str()).copied())
            .filter(|q| q.price > Decimal::ZERO)
            .max_by_key(|q| q.at)
    }
}

/// A proposal refused before the rules run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingRefusal {
    pub code: RejectionCode,
    pub reason: String,
}

/// The proposal valued at the market, with the quote used.
#[derive(Debug, Clone, PartialEq)]
pub struct Valued {
    pub proposal: TradeProposal,
    pub quote: Option<Quote>,
    /// What the valuation changed, for the verdict's warnings.
    pub note: Option<String>,
}

/// How far `limit` is through `market` for `side`, in percent (negative when passive).
pub fn through_market_pct(side: Side, limit: Decimal, market: Decimal) -> Decimal {
    if market <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let diff = match side {
        Side::Buy => limit - market,
        Side::Sell => market - limit,
    };
    diff / market * Decimal::ONE_HUNDRED
}

/// Values `p` at `quote` (see the module docs).
///
/// # Errors
/// [`PricingRefusal`] when there is no fresh price or the limit is too far through the market.
pub fn value_at_market(
    p: &TradeProposal,
    quote: Option<Quote>,
    limits: &RiskLimits,
    now: DateTime<Utc>,
) -> Result<Valued, PricingRefusal> {
    let fresh = quote.filter(|q| (now - q.at).num_seconds() <= limits.max_price_age_secs);
    let Some(q) = fresh else {
        if p.reduce_only {
            return Ok(Valued {
                proposal: p.clone(),
                quote: None,
                note: None,
            });
        }
        let reason = match quote {
            None => format!("no market price known for {}; the trade is refused, not guessed", p.symbol),
            Some(q) => format!(
                "the market price of {} is {} s old (limit risk.max_price_age_secs = {} s); the trade is refused, not guessed",
                p.symbol,
                (now - q.at).num_seconds(),
                limits.max_price_age_secs
            ),
        };
        return Err(PricingRefusal {
            code: RejectionCode::MarketPriceUnavailable,
            reason,
        });
    };
    let mut out = p.clone();
    if p.entry_price <= Decimal::ZERO {
        // The rules refuse it as an invalid proposal.
        return Ok(Valued {
            proposal: out,
            quote: Some(q),
            note: None,
        });
    }
    let through = through_market_pct(p.side, p.entry_price, q.price);
    if !p.reduce_only && through > limits.max_limit_deviation_pct {
        return Err(PricingRefusal {
            code: RejectionCode::LimitPriceDeviation,
            reason: format!(
                "price {} is {}% through the market price {} of {} (limit risk.max_limit_deviation_pct = {}%)",
                p.entry_price,
                through.round_dp(2).normalize(),
                q.price,
                p.symbol,
                limits.max_limit_deviation_pct.normalize()
            ),
        });
    }
    // The price the order fills at: the market for a marketable limit, its own limit for a
    // passive one (a buy below / a sell above the market).
    let fill = match p.side {
        Side::Buy => p.entry_price.min(q.price),
        Side::Sell => p.entry_price.max(q.price),
    };
    if fill == p.entry_price {
        return Ok(Valued {
            proposal: out,
            quote: Some(q),
            note: None,
        });
    }
    // Same volume, valued at the market.
    out.size_usd = p.size_usd * fill / p.entry_price;
    out.entry_price = fill;
    let note = format!(
        "valued at the market price {} (proposed {}): size_usd {} -> {}",
        fill,
        p.entry_price,
        p.size_usd.round_dp(2).normalize(),
        out.size_usd.round_dp(2).normalize()
    );
    Ok(Valued {
        proposal: out,
        quote: Some(q),
        note: Some(note),
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::domain::{CorrelationId, Regime};
    use crate::risk::types::ProposalSource;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap()
    }

    fn proposal(side: Side, size: Decimal, entry: Decimal) -> TradeProposal {
        TradeProposal {
            symbol: Symbol::parse("BTC/USDT").unwrap(),
            side,
            size_usd: size,
            entry_price: entry,
            stop_loss: None,
            take_profit: None,
            leverage: 2,
            confidence: 1.0,
            regime: Regime::Ranging,
            source: ProposalSource::Manual,
            correlation_id: CorrelationId::new(),
            reduce_only: false,
        }
    }

    fn quote(price: Decimal, age_s: i64) -> Option<Quote> {
        Some(Quote {
            price,
            at: t0() - chrono::Duration::seconds(age_s),
        })
    }

    #[test]
    fn a_sell_at_a_tiny_price_is_refused_as_deviation_not_sized_at_it() {
        let p = proposal(Side::Sell, dec!(20), dec!(400));
        let err = value_at_market(&p, quote(dec!(98000), 1), &RiskLimits::default(), t0()).unwrap_err();
        assert_eq!(err.code, RejectionCode::LimitPriceDeviation, "{err:?}");
        assert!(err.reason.contains("price 400"), "{}", err.reason);
    }

    #[test]
    fn a_buy_ten_times_the_market_is_refused() {
        let p = proposal(Side::Buy, dec!(100), dec!(500000));
        let err = value_at_market(&p, quote(dec!(50000), 1), &RiskLimits::default(), t0()).unwrap_err();
        assert_eq!(err.code, RejectionCode::LimitPriceDeviation);
    }

    #[test]
    fn deviation_is_measured_through_the_market_only() {
        let limits = RiskLimits::default();
        // 2 % through passes, 2.1 % does not; a passive limit far away passes.
        for (side, limit, ok) in [
            (Side::Buy, dec!(51000), true),
            (Side::Buy, dec!(51050), false),
            (Side::Buy, dec!(30000), true),
            (Side::Sell, dec!(49000), true),
            (Side::Sell, dec!(48950), false),
            (Side::Sell, dec!(70000), true),
        ] {
            let p = proposal(side, dec!(100), limit);
            let res = value_at_market(&p, quote(dec!(50000), 1), &limits, t0());
            assert_eq!(res.is_ok(), ok, "{side} at {limit}: {res:?}");
        }
    }

    #[test]
    fn the_volume_is_kept_and_valued_at_the_market() {
        // 0.1 BTC at 2× asked at 50 500: size 2 525; it fills at the market 50 000: worth 2 500.
        let p = proposal(Side::Buy, dec!(2525), dec!(50500));
        let v = value_at_market(&p, quote(dec!(50000), 1), &RiskLimits::default(), t0()).unwrap();
        assert_eq!(v.proposal.entry_price, dec!(50000));
        assert_eq!(v.proposal.size_usd, dec!(2500));
        assert!(v.note.is_some());
        // A passive buy below the market fills at its own limit: unchanged.
        let p = proposal(Side::Buy, dec!(2475), dec!(49500));
        let v = value_at_market(&p, quote(dec!(50000), 1), &RiskLimits::default(), t0()).unwrap();
        assert_eq!(v.proposal, p);
        // A sell below the market (within the deviation) fills at the market.
        let p = proposal(Side::Sell, dec!(2475), dec!(49500));
        let v = value_at_market(&p, quote(dec!(50000), 1), &RiskLimits::default(), t0()).unwrap();
        assert_eq!(v.proposal.entry_price, dec!(50000));
        assert_eq!(v.proposal.size_usd, dec!(2500));
    }

    #[test]
    fn no_price_or_a_stale_price_is_refused_but_a_reduction_passes() {
        let limits = RiskLimits::default();
        let p = proposal(Side::Buy, dec!(100), dec!(50000));
        for q in [None, quote(dec!(50000), limits.max_price_age_secs + 1)] {
            let err = value_at_market(&p, q, &limits, t0()).unwrap_err();
            assert_eq!(err.code, RejectionCode::MarketPriceUnavailable, "{err:?}");
        }
        let mut r = p.clone();
        r.reduce_only = true;
        assert!(value_at_market(&r, None, &limits, t0()).is_ok());
        assert!(value_at_market(&p, quote(dec!(50000), limits.max_price_age_secs), &limits, t0()).is_ok());
    }

    #[test]
    fn the_freshest_quote_wins_and_an_older_one_never_replaces_it() {
        struct Fixed(Quote);
        impl PriceSource for Fixed {
            fn quote(&self, _: &Symbol) -> Option<Quote> {
                Some(self.0)
            }
        }
        let btc = Symbol::parse("BTC/USDT").unwrap();
        let mut prices = MarketPrices::default();
        prices.observe(&btc, quote(dec!(100), 10).unwrap());
        prices.observe(&btc, quote(dec!(90), 20).unwrap());
        assert_eq!(prices.quote(&btc).unwrap().price, dec!(100));
        prices.add_source(Arc::new(Fixed(quote(dec!(101), 5).unwrap())));
        assert_eq!(prices.quote(&btc).unwrap().price, dec!(101));
        prices.observe(&btc, quote(dec!(102), 1).unwrap());
        assert_eq!(prices.quote(&btc).unwrap().price, dec!(102));
    }
}
