use super::*;
use crate::domain::{CorrelationId, EntryStrictness, Side, Symbol};
use crate::risk::types::{RegimeInfo, VolatilityInfo};
use chrono::{Duration, TimeZone};
use rust_decimal_macros::dec;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

/// Equity 10 000, no exposure, all of it available as margin.
fn state() -> RiskState {
    RiskState {
        equity_usd: Some(dec!(10000)),
        peak_equity_usd: dec!(10000),
        available_margin_usd: dec!(10000),
        daily_start_equity: Some(dec!(10000)),
        weekly_start_equity: Some(dec!(10000)),
        ..RiskState::default()
    }
}

/// BTC/USDT buy $1 000 at 45 000, stop 2 % (44 100), take-profit 4 % (46 800), 1×, trending bull.
fn proposal() -> TradeProposal {
    TradeProposal {
        symbol: sym("BTC/USDT"),
        side: Side::Buy,
        size_usd: dec!(1000),
        entry_price: dec!(45000),
        stop_loss: Some(dec!(44100)),
        take_profit: Some(dec!(46800)),
        leverage: 1,
        confidence: 0.8,
        regime: Regime::TrendingBull,
        source: ProposalSource::Agent,
        correlation_id: CorrelationId::new(),
        reduce_only: false,
    }
}

type Edit<T> = fn(&mut T);

struct Case {
    name: &'static str,
    p: Edit<TradeProposal>,
    s: Edit<RiskState>,
    status: VerdictStatus,
    code: Option<RejectionCode>,
    size: Option<Decimal>,
    leverage: Option<u32>,
}

const fn case(
    name: &'static str,
    p: Edit<TradeProposal>,
    s: Edit<RiskState>,
    status: VerdictStatus,
    code: Option<RejectionCode>,
) -> Case {
    Case {
        name,
        p,
        s,
        status,
        code,
        size: None,
        leverage: None,
    }
}

fn none<T>(_: &mut T) {}

use RejectionCode as C;
use VerdictStatus::*;

#[test]
fn pipeline_table() {
    let cases = vec![
        case("baseline approved", none, none, Approved, None),
        // ---- 1. halt comes first, before every other check
        case(
            "halted rejects before a missing stop",
            |p| p.stop_loss = None,
            |s| {
                s.halted = true;
                s.halt_reason = Some("circuit breaker: daily_loss".into());
            },
            Halted,
            Some(C::TradingHalted),
        ),
        case(
            "breaker condition halts even without the flag",
            none,
            |s| s.daily_pnl = dec!(-500),
            Halted,
            Some(C::TradingHalted),
        ),
        case(
            "halted before cooldown",
            none,
            |s| {
                s.halted = true;
                s.cooldown_until = Some(now() + Duration::minutes(5));
            },
            Halted,
            Some(C::TradingHalted),
        ),
        // ---- 2. cooldown
        case(
            "cooldown rejects before a missing stop",
            |p| p.stop_loss = None,
            |s| s.cooldown_until = Some(now() + Duration::minutes(1)),
            Rejected,
            Some(C::CooldownActive),
        ),
        case(
            "expired cooldown passes",
            none,
            |s| s.cooldown_until = Some(now()),
            Approved,
            None,
        ),
        // ---- input checks
        case(
            "zero size",
            |p| p.size_usd = dec!(0),
            none,
            Rejected,
            Some(C::InvalidProposal),
        ),
        case(
            "zero entry",
            |p| p.entry_price = dec!(0),
            none,
            Rejected,
            Some(C::InvalidProposal),
        ),
        case(
            "zero leverage",
            |p| p.leverage = 0,
            none,
            Rejected,
            Some(C::InvalidProposal),
        ),
        case(
            "confidence above 1",
            |p| p.confidence = 1.5,
            none,
            Rejected,
            Some(C::InvalidProposal),
        ),
        case(
            "buy stop above entry",
            |p| p.stop_loss = Some(dec!(45500)),
            none,
            Rejected,
            Some(C::InvalidProposal),
        ),
        case(
            "sell take-profit above entry",
            |p| {
                p.side = Side::Sell;
                p.stop_loss = Some(dec!(45900));
                p.take_profit = Some(dec!(46000));
            },
            none,
            Rejected,
            Some(C::InvalidProposal),
        ),
        case(
            "sell with stop above and target below is fine",
            |p| {
                p.side = Side::Sell;
                p.stop_loss = Some(dec!(45900));
                p.take_profit = Some(dec!(43200));
            },
            none,
            Approved,
            None,
        ),
        case(
            "no equity known",
            none,
            |s| s.equity_usd = None,
            Rejected,
            Some(C::EquityUnavailable),
        ),
        case(
            "negative equity",
            none,
            |s| s.equity_usd = Some(dec!(-100)),
            Rejected,
            Some(C::EquityUnavailable),
        ),
        // ---- 3. stop-loss
        case(
            "missing stop",
            |p| p.stop_loss = None,
            none,
            Rejected,
            Some(C::StopLossRequired),
        ),
        case(
            "rebalance spot without stop is exempt",
            |p| {
                p.source = ProposalSource::Rebalance;
                p.stop_loss = None;
                p.take_profit = None;
            },
            none,
            Approved,
            None,
        ),
        case(
            "rebalance with leverage needs a stop",
            |p| {
                p.source = ProposalSource::Rebalance;
                p.stop_loss = None;
                p.leverage = 2;
            },
            none,
            Rejected,
            Some(C::StopLossRequired),
        ),
        case(
            "manual without stop follows the flag (required by default)",
            |p| {
                p.source = ProposalSource::Manual;
                p.stop_loss = None;
            },
            none,
            Rejected,
            Some(C::StopLossRequired),
        ),
        case(
            "stop 0.4 % is too tight",
            |p| p.stop_loss = Some(dec!(44820)),
            none,
            Rejected,
            Some(C::StopLossTooTight),
        ),
        case(
            "stop exactly 0.5 % passes",
            |p| p.stop_loss = Some(dec!(44775)),
            none,
            Approved,
            None,
        ),
        case(
            "stop exactly 5 % passes",
            |p| {
                p.stop_loss = Some(dec!(42750));
                p.take_profit = Some(dec!(48375));
            },
            none,
            Approved,
            None,
        ),
        case(
            "stop 5.1 % is too wide",
            |p| {
                p.stop_loss = Some(dec!(42705));
                p.take_profit = Some(dec!(50000));
            },
            none,
            Rejected,
            Some(C::StopLossTooWide),
        ),
        case(
            "too tight stop is named before a poor reward:risk",
            |p| {
                p.stop_loss = Some(dec!(44900));
                p.take_profit = Some(dec!(45010));
            },
            none,
            Rejected,
            Some(C::StopLossTooTight),
        ),
        // ---- 4. reward:risk (stop 900 away)
        case(
            "reward:risk 1.4 rejects",
            |p| p.take_profit = Some(dec!(46260)),
            none,
            Rejected,
            Some(C::RewardRiskTooLow),
        ),
        case(
            "reward:risk exactly 1.5 passes",
            |p| p.take_profit = Some(dec!(46350)),
            none,
            Approved,
            None,
        ),
        case(
            "no take-profit skips reward:risk",
            |p| p.take_profit = None,
            none,
            Approved,
            None,
        ),
        // ---- 5. confidence
        case(
            "trending 0.54 < 0.55",
            |p| p.confidence = 0.54,
            none,
            Rejected,
            Some(C::ConfidenceTooLow),
        ),
        case("trending 0.55 passes", |p| p.confidence = 0.55, none, Approved, None),
        case(
            "ranging needs 0.60 + strict 0.05",
            |p| {
                p.regime = Regime::Ranging;
                p.confidence = 0.64;
            },
            none,
            Rejected,
            Some(C::ConfidenceTooLow),
        ),
        case(
            "choppy needs 0.85",
            |p| {
                p.regime = Regime::Choppy;
                p.confidence = 0.84;
            },
            none,
            Rejected,
            Some(C::ConfidenceTooLow),
        ),
        case(
            "3 losses raise the floor by 0.10",
            |p| p.confidence = 0.64,
            |s| s.consecutive_losses = 3,
            Rejected,
            Some(C::ConfidenceTooLow),
        ),
        case(
            "5 losses raise the floor by 0.20",
            |p| p.confidence = 0.74,
            |s| s.consecutive_losses = 5,
            Rejected,
            Some(C::ConfidenceTooLow),
        ),
        case(
            "relaxed strictness from the regime update lowers the floor",
            |p| p.confidence = 0.50,
            |s| {
                s.regimes.insert(
                    "BTC/USDT".into(),
                    RegimeInfo {
                        regime: Regime::TrendingBull,
                        entry_strictness: EntryStrictness::Relaxed,
                        at: now(),
                    },
                );
            },
            Approved,
            None,
        ),
        case(
            "confidence rejects before size is reduced",
            |p| {
                p.confidence = 0.3;
                p.size_usd = dec!(3000);
            },
            none,
            Rejected,
            Some(C::ConfidenceTooLow),
        ),
        case(
            "rebalance has no confidence floor",
            |p| {
                p.source = ProposalSource::Rebalance;
                p.confidence = 0.1;
            },
            none,
            Approved,
            None,
        ),
        // ---- 6. size and risk
        Case {
            size: Some(dec!(2000)),
            ..case(
                "size 30 % is cut to 20 %",
                |p| p.size_usd = dec!(3000),
                none,
                Modified,
                None,
            )
        },
        Case {
            // 2 000 × 3 × 5 % = 300 (3 %) → 200 / (5 % × 3) = 1 333.33
            size: Some(dec!(1333.33)),
            ..case(
                "risk 3 % of equity is shrunk to 2 %",
                |p| {
                    p.size_usd = dec!(2000);
                    p.leverage = 3;
                    p.stop_loss = Some(dec!(42750));
                    p.take_profit = Some(dec!(49500));
                },
                none,
                Modified,
                None,
            )
        },
        // ---- 7. consecutive-loss halving (and its leverage cap)
        Case {
            size: Some(dec!(500)),
            leverage: Some(1),
            ..case(
                "5 losses halve the size",
                |p| p.leverage = 3,
                |s| s.consecutive_losses = 5,
                Modified,
                None,
            )
        },
        Case {
            size: Some(dec!(1000)),
            ..case(
                "size halving after the cap",
                |p| p.size_usd = dec!(5000),
                |s| s.consecutive_losses = 5,
                Modified,
                None,
            )
        },
        // ---- 8. volatility spike
        Case {
            size: Some(dec!(500)),
            ..case(
                "spike on the symbol halves the size",
                none,
                |s| {
                    s.volatility.insert(
                        "BTC/USDT".into(),
                        VolatilityInfo {
                            spike_active: true,
                            ..Default::default()
                        },
                    );
                },
                Modified,
                None,
            )
        },
        case(
            "spike on another symbol changes nothing",
            none,
            |s| {
                s.volatility.insert(
                    "XRP/USDT".into(),
                    VolatilityInfo {
                        spike_active: true,
                        ..Default::default()
                    },
                );
            },
            Approved,
            None,
        ),
        // ---- 9. leverage caps
        case(
            "5× in trending bull is allowed ($700 × 5 = 35 %)",
            |p| {
                p.leverage = 5;
                p.size_usd = dec!(700);
            },
            none,
            Approved,
            None,
        ),
        case(
            "correlation counts the notional: a lone $1 000 at 5× is 50 % > 40 %",
            |p| p.leverage = 5,
            none,
            Rejected,
            Some(C::CorrelationExceeded),
        ),
        Case {
            leverage: Some(5),
            ..case(
                "global cap 5",
                |p| {
                    p.leverage = 8;
                    p.size_usd = dec!(500);
                },
                none,
                Modified,
                None,
            )
        },
        Case {
            leverage: Some(2),
            ..case(
                "ranging caps at 2",
                |p| {
                    p.regime = Regime::Ranging;
                    p.leverage = 4;
                },
                none,
                Modified,
                None,
            )
        },
        Case {
            leverage: Some(3),
            ..case(
                "drawdown 5 % caps at 3",
                |p| p.leverage = 5,
                |s| s.drawdown_pct = dec!(5),
                Modified,
                None,
            )
        },
        Case {
            leverage: Some(2),
            ..case(
                "drawdown 12 % caps at 2",
                |p| p.leverage = 5,
                |s| s.drawdown_pct = dec!(12),
                Modified,
                None,
            )
        },
        Case {
            leverage: Some(1),
            ..case(
                "drawdown 16 % caps at 1",
                |p| p.leverage = 5,
                |s| s.drawdown_pct = dec!(16),
                Modified,
                None,
            )
        },
        Case {
            leverage: Some(2),
            ..case(
                "3 losses cap at 2",
                |p| {
                    p.leverage = 5;
                    p.confidence = 0.9;
                },
                |s| s.consecutive_losses = 3,
                Modified,
                None,
            )
        },
        // ---- 10. exposure (notional: size × leverage)
        case(
            "exposure 70 % + 10 % = 80 % passes",
            none,
            |s| {
                s.open_exposure_usd = dec!(7000);
                s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(7000));
            },
            Approved,
            None,
        ),
        case(
            "exposure 71 % + 10 % rejects",
            none,
            |s| {
                s.open_exposure_usd = dec!(7100);
                s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(7100));
            },
            Rejected,
            Some(C::ExposureExceeded),
        ),
        case(
            "leverage counts: $1 000 at 5× adds 50 %",
            |p| p.leverage = 5,
            |s| {
                s.open_exposure_usd = dec!(3100);
                s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(3100));
            },
            Rejected,
            Some(C::ExposureExceeded),
        ),
        Case {
            size: Some(dec!(2000)),
            ..case(
                "exposure is checked after the size cut (60 % + 20 %, not + 30 %)",
                |p| p.size_usd = dec!(3000),
                |s| {
                    s.open_exposure_usd = dec!(6000);
                    s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(6000));
                },
                Modified,
                None,
            )
        },
        Case {
            leverage: Some(2),
            ..case(
                "exposure is checked after the leverage cut",
                |p| {
                    p.regime = Regime::Ranging;
                    p.confidence = 0.9;
                    p.leverage = 4;
                },
                |s| {
                    s.open_exposure_usd = dec!(6000);
                    s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(6000));
                },
                Modified,
                None,
            )
        },
        // ---- 11. correlation (§3.5 examples)
        case(
            "BTC 30 % then XRP/USDT $2 000: 22.5 + 20 = 42.5 > 40",
            |p| {
                p.symbol = sym("XRP/USDT");
                p.size_usd = dec!(2000);
                p.entry_price = dec!(2.00);
                p.stop_loss = Some(dec!(1.96));
                p.take_profit = Some(dec!(2.08));
            },
            |s| {
                s.open_exposure_usd = dec!(3000);
                s.exposure_by_symbol.insert("BTC/USDT".into(), dec!(3000));
            },
            Rejected,
            Some(C::CorrelationExceeded),
        ),
        case(
            "uncorrelated exposure does not count",
            |p| p.size_usd = dec!(2000),
            |s| {
                s.open_exposure_usd = dec!(3000);
                s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(3000));
            },
            Approved,
            None,
        ),
        // ---- 12. margin
        case(
            "margin short",
            none,
            |s| s.available_margin_usd = dec!(999),
            Rejected,
            Some(C::InsufficientMargin),
        ),
        Case {
            size: Some(dec!(2000)),
            ..case(
                "margin is checked after the size cut",
                |p| p.size_usd = dec!(3000),
                |s| s.available_margin_usd = dec!(2000),
                Modified,
                None,
            )
        },
        // ---- minimum size
        case(
            "reductions below the minimum reject",
            |p| p.size_usd = dec!(15),
            |s| s.consecutive_losses = 5,
            Rejected,
            Some(C::PositionTooSmall),
        ),
        // ---- reduce-only orders
        case(
            "reduce-only passes a halt",
            |p| {
                p.reduce_only = true;
                p.stop_loss = None;
            },
            |s| s.halted = true,
            Approved,
            None,
        ),
        Case {
            leverage: Some(1),
            ..case(
                "reduce-only still gets the leverage cap",
                |p| {
                    p.reduce_only = true;
                    p.regime = Regime::Choppy;
                    p.leverage = 3;
                },
                none,
                Modified,
                None,
            )
        },
    ];

    for c in cases {
        let mut p = proposal();
        (c.p)(&mut p);
        let mut s = state();
        (c.s)(&mut s);
        let v = validate(&p, &s, &RiskLimits::default(), now());
        assert_eq!(v.status, c.status, "{}: {v:?}", c.name);
        assert_eq!(v.rejections.first().copied(), c.code, "{}: {v:?}", c.name);
        assert!(
            v.rejections.len() <= 1,
            "{}: the first rejection ends the pipeline",
            c.name
        );
        if let Some(size) = c.size {
            assert_eq!(v.proposal.size_usd, size, "{}: size", c.name);
        }
        if let Some(lev) = c.leverage {
            assert_eq!(v.proposal.leverage, lev, "{}: leverage", c.name);
        }
        match v.status {
            Modified => assert!(!v.modifications.is_empty(), "{}: modifications must say why", c.name),
            Approved => {
                assert!(v.modifications.is_empty(), "{}", c.name);
                assert_eq!(v.proposal, p, "{}: approved proposal unchanged", c.name);
            }
            Rejected | Halted => {
                assert!(v.reason.is_some(), "{}: a rejection carries a reason", c.name);
                assert_eq!(v.proposal, p, "{}: refused proposal returned as submitted", c.name);
            }
        }
    }
}

#[test]
fn modifications_name_their_reason() {
    let mut p = proposal();
    p.size_usd = dec!(3000);
    p.leverage = 4;
    p.regime = Regime::Ranging;
    p.confidence = 0.9;
    let v = validate(&p, &state(), &RiskLimits::default(), now());
    assert_eq!(v.status, Modified, "{v:?}");
    assert!(v
        .modifications
        .iter()
        .any(|m| m.starts_with("size_usd 3000 -> 2000") && m.contains("position_too_large")));
    assert!(v
        .modifications
        .iter()
        .any(|m| m.starts_with("leverage 4 -> 2") && m.contains("leverage_exceeded")));
    // 2 000 × 2 = 40 % of equity after both cuts.
    assert_eq!(v.metrics.exposure_after_pct, Some(dec!(40)));
}

#[test]
fn correlation_within_a_raised_limit_is_approved() {
    // §3.5 second example: BTC 15 %, XRP $500, limit 50 → 11.25 + 5 = 16.25.
    let mut p = proposal();
    p.symbol = sym("XRP/USDT");
    p.size_usd = dec!(500);
    p.entry_price = dec!(2.00);
    p.stop_loss = Some(dec!(1.96));
    p.take_profit = Some(dec!(2.08));
    let mut s = state();
    s.open_exposure_usd = dec!(1500);
    s.exposure_by_symbol.insert("BTC/USDT".into(), dec!(1500));
    let limits = RiskLimits {
        max_correlated_exposure_pct: dec!(50),
        ..RiskLimits::default()
    };
    let v = validate(&p, &s, &limits, now());
    assert_eq!(v.status, Approved, "{v:?}");
    assert_eq!(v.metrics.correlated_exposure_pct, Some(dec!(16.25)));
}

#[test]
fn high_correlation_warns_above_80_percent_of_the_limit() {
    let mut p = proposal();
    p.symbol = sym("XRP/USDT");
    p.size_usd = dec!(1000);
    p.entry_price = dec!(2.00);
    p.stop_loss = Some(dec!(1.96));
    p.take_profit = Some(dec!(2.08));
    let mut s = state();
    s.open_exposure_usd = dec!(3000);
    s.exposure_by_symbol.insert("BTC/USDT".into(), dec!(3000));
    let v = validate(&p, &s, &RiskLimits::default(), now()); // 22.5 + 10 = 32.5
    assert_eq!(v.status, Approved);
    assert!(
        v.warnings.iter().any(|w| w.starts_with("high_correlation")),
        "{:?}",
        v.warnings
    );
}

#[test]
fn manual_trades_without_stop_allowed_when_configured() {
    let mut p = proposal();
    p.source = ProposalSource::Manual;
    p.stop_loss = None;
    let limits = RiskLimits {
        manual_trades_require_stop: false,
        ..RiskLimits::default()
    };
    let v = validate(&p, &state(), &limits, now());
    assert_eq!(v.status, Approved, "{v:?}");
    // Agents still need one under the same limits.
    p.source = ProposalSource::Agent;
    assert_eq!(
        validate(&p, &state(), &limits, now()).rejections,
        vec![C::StopLossRequired]
    );
}

#[test]
fn required_confidence_table() {
    let l = RiskLimits::default();
    let cases = [
        (Regime::TrendingBull, EntryStrictness::Normal, 0, 0.55),
        (Regime::TrendingBear, EntryStrictness::Normal, 3, 0.65),
        (Regime::Ranging, EntryStrictness::Strict, 0, 0.65),
        (Regime::VolatileBull, EntryStrictness::Strict, 5, 0.90),
        (Regime::Choppy, EntryStrictness::VeryStrict, 5, 1.0),
        (Regime::Unknown, EntryStrictness::Normal, 0, 0.70),
        (Regime::BreakoutPotential, EntryStrictness::Relaxed, 0, 0.55),
    ];
    for (regime, strictness, losses, want) in cases {
        let got = required_confidence(regime, strictness_adjustment(strictness), losses, &l);
        assert!(
            (got - want).abs() < 1e-9,
            "{regime} {strictness} {losses}: {got} != {want}"
        );
    }
}

#[test]
fn leverage_cap_table() {
    let l = RiskLimits::default();
    let cases: [(Regime, Decimal, u32, u32); 8] = [
        (Regime::TrendingBull, dec!(0), 0, 5),
        (Regime::TrendingBear, dec!(0), 0, 3),
        (Regime::Choppy, dec!(0), 0, 1),
        (Regime::Unknown, dec!(0), 0, 1),
        (Regime::TrendingBull, dec!(4.99), 0, 5),
        (Regime::TrendingBull, dec!(10), 0, 2),
        (Regime::TrendingBull, dec!(0), 3, 2),
        (Regime::TrendingBull, dec!(0), 5, 1),
    ];
    for (regime, dd, losses, want) in cases {
        let s = RiskState {
            drawdown_pct: dd,
            consecutive_losses: losses,
            ..state()
        };
        assert_eq!(leverage_cap(regime, &s, &l), want, "{regime} dd={dd} losses={losses}");
    }
}

#[test]
fn verdict_serialises_with_snake_case_codes() {
    let mut p = proposal();
    p.stop_loss = None;
    let v = validate(&p, &state(), &RiskLimits::default(), now());
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["status"], "rejected");
    assert_eq!(json["rejections"][0], "stop_loss_required");
    assert_eq!(json["proposal"]["size_usd"], "1000");
    let back: RiskVerdict = serde_json::from_value(json).unwrap();
    assert_eq!(back.rejections, vec![C::StopLossRequired]);
}

#[test]
fn limits_deserialise_with_reference_defaults() {
    let l: RiskLimits = serde_json::from_str(r#"{"max_leverage": 3}"#).unwrap();
    assert_eq!(l.max_leverage, 3);
    assert_eq!(l.max_position_pct, dec!(20));
    assert_eq!(l.max_risk_per_trade_pct, dec!(2));
    assert_eq!(l.max_total_exposure_pct, dec!(80));
    assert_eq!(l.max_correlated_exposure_pct, dec!(40));
    assert_eq!(l.daily_loss_pct, dec!(5));
    assert_eq!(l.weekly_loss_pct, dec!(10));
    assert_eq!(l.max_drawdown_pct, dec!(20));
    assert_eq!(l.correlation("XRP/BTC", "XRP/USDT"), dec!(0.85));
    assert_eq!(l.correlation("ETH/USDT", "XRP/USDT"), dec!(0));
}

/// Prints validation latency; run with `--ignored --nocapture` (debug builds are slower).
#[test]
#[ignore = "timing report, not a check"]
fn latency_report() {
    let mut s = state();
    s.open_exposure_usd = dec!(3000);
    s.exposure_by_symbol.insert("BTC/USDT".into(), dec!(1500));
    s.exposure_by_symbol.insert("XRP/USDT".into(), dec!(1500));
    let (p, l) = (proposal(), RiskLimits::default());
    let mut micros: Vec<f64> = (0..10_000)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(validate(&p, &s, &l, now()));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    micros.sort_by(f64::total_cmp);
    println!("validate p50 {:.2} µs, p99 {:.2} µs", micros[5_000], micros[9_900]);
}
