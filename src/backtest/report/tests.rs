use super::chart::{draw, register_chart_font};
use super::*;
use chrono::{Duration, TimeZone};
use plotters::prelude::{BitMapBackend, IntoDrawingArea};
use rust_decimal_macros::dec;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()
}

fn trade(
    symbol: &str,
    side: Side,
    regime: &str,
    qty: Decimal,
    entry: Decimal,
    exit: Decimal,
    fees: Decimal,
) -> TradeRecord {
    TradeRecord {
        symbol: symbol.to_owned(),
        side,
        regime: regime.to_owned(),
        opened_at: t0() + Duration::hours(1),
        closed_at: t0() + Duration::hours(5),
        quantity: qty,
        entry_price: entry,
        exit_price: exit,
        fees,
        source: source::STRATEGY.to_owned(),
        exit_reason: "take_profit".to_owned(),
    }
}

fn point(minutes: i64, equity: Decimal, exposure: Decimal) -> EquityPoint {
    EquityPoint {
        at: t0() + Duration::minutes(minutes),
        equity,
        exposure_usd: exposure,
        baseline: None,
    }
}

fn input() -> ReportInput {
    ReportInput {
        initial_equity: dec!(10000),
        candles_processed: 2880,
        trades: vec![
            // long BTC +0.1 × 1000 = +100 gross, 3.2 fees
            trade(
                "BTC/USDT",
                Side::Buy,
                "trending_bull",
                dec!(0.1),
                dec!(95000),
                dec!(96000),
                dec!(3.2),
            ),
            // short XRP: (2.40 − 2.30) × 1000 = +100 gross, 1.5 fees
            trade(
                "XRP/USDT",
                Side::Sell,
                "ranging",
                dec!(1000),
                dec!(2.40),
                dec!(2.30),
                dec!(1.5),
            ),
            // long BTC −0.05 × 2000 = −100 gross, 2.1 fees
            trade(
                "BTC/USDT",
                Side::Buy,
                "ranging",
                dec!(0.05),
                dec!(96000),
                dec!(94000),
                dec!(2.1),
            ),
        ],
        equity: vec![
            point(0, dec!(10000), dec!(0)),
            point(60, dec!(10200), dec!(5000)),
            point(1440, dec!(10100), dec!(0)),
            point(2879, dec!(10093.2), dec!(0)),
        ],
        risk_verdicts: VerdictCounts {
            total: 5,
            by_status: BTreeMap::from([("approved".to_owned(), 3), ("rejected".to_owned(), 2)]),
            by_code: BTreeMap::from([("position_too_large".to_owned(), 2)]),
            by_source: BTreeMap::new(),
        },
        risk_alerts: BTreeMap::new(),
        risk_alert_examples: BTreeMap::new(),
        decisions: BTreeMap::from([("buy".to_owned(), 2), ("hold".to_owned(), 7)]),
        holdings: vec![HoldingTrade {
            source: source::REBALANCE.to_owned(),
            symbol: "BTC/USDT".to_owned(),
            side: Side::Buy,
            at: t0() + Duration::minutes(2),
            regime: "ranging".to_owned(),
            quantity: dec!(0.01),
            price: dec!(95000),
            fees: dec!(1.52),
        }],
        rebalance_batches: BTreeMap::from([("executed".to_owned(), 1)]),
        rebalance_plans: 1,
        final_allocation: None,
        last_prices: BTreeMap::from([("BTC/USDT".to_owned(), dec!(96000))]),
        hodl_allocations: BTreeMap::from([("BTC".to_owned(), dec!(12.5))]),
    }
}

#[test]
fn pnl_is_the_sum_of_the_trades_net_of_fees() {
    let r = Report::compute(&input(), None);
    assert_eq!(r.gross_pnl, dec!(100));
    assert_eq!(r.fees, dec!(6.8));
    assert_eq!(r.net_pnl, dec!(93.2));
    let from_trades: Decimal = input().trades.iter().map(|t| t.gross_pnl() - t.fees).sum();
    assert_eq!(r.net_pnl, from_trades);
    assert_eq!((r.trades, r.wins, r.losses), (3, 2, 1));
    assert_eq!(r.win_rate, Some(0.666667));
    let btc = &r.by_symbol["BTC/USDT"];
    assert_eq!((btc.trades, btc.wins, btc.net_pnl), (2, 1, dec!(-5.3)));
    assert_eq!(r.by_symbol["XRP/USDT"].net_pnl, dec!(98.5));
    assert_eq!(r.by_regime["ranging"].net_pnl, dec!(-3.6));
    assert_eq!(r.by_regime["trending_bull"].net_pnl, dec!(96.8));
    let sum: Decimal = r.by_symbol.values().map(|b| b.net_pnl).sum();
    assert_eq!(sum, r.net_pnl);
    assert_eq!(r.final_equity, dec!(10093.2));
    assert_eq!(r.return_pct, Some(0.932));
    assert_eq!(r.risk_verdicts.by_code["position_too_large"], 2);
    assert_eq!(r.risk_verdicts.by_status["approved"], 3);
    assert_eq!(r.decisions["hold"], 7);
    assert_eq!((r.rebalances, r.hodl_allocations["BTC"]), (1, dec!(12.5)));
    // The rebalance buy is no round trip: counted apart, marked to the last price:
    // 0.01 × (96 000 − 95 000) − 1.52 fees = 8.48.
    assert_eq!(r.rebalance.trades.orders, 1);
    assert_eq!(r.rebalance.trades.bought_usd, dec!(950));
    assert_eq!(r.rebalance.trades.mark_to_market_pnl, dec!(8.48));
    assert_eq!(r.hodl.orders, 0);
    assert_eq!(r.by_source["strategy"].trades, 3);
    // Winners 96.8 + 98.5 against the loser 102.1; mean net 93.2 / 3.
    assert_eq!(r.profit_factor, Some(((96.8 + 98.5) / 102.1 * 1e6_f64).round() / 1e6));
    assert_eq!(r.expectancy, Some(dec!(31.06666667)));
    assert_eq!(r.avg_holding_hours, Some(4.0));
    assert_eq!(r.exit_reasons["take_profit"], 3);
    // Two days of returns: the ratios rest on too few days, and the report says so.
    assert!(
        r.warnings.iter().any(|w| w.contains("fewer than 30")),
        "{:?}",
        r.warnings
    );
    assert_eq!(r.monthly_returns["2025-03"], 0.932);
    assert!(r.baseline.is_none(), "no baseline samples");
    assert_eq!(r.candles_processed, 2880);
    assert_eq!(r.period.days, Some((2879.0_f64 / 1440.0 * 1e6).round() / 1e6));
    // 1 of 4 samples had a position, of 5000 / 10200 = 49.0196 %.
    assert_eq!(r.exposure.time_in_market_pct, Some(25.0));
    assert_eq!(r.exposure.max_exposure_pct, Some(49.019608));
}

#[test]
fn max_drawdown_is_the_largest_fall_from_a_running_peak() {
    let curve: Vec<EquityPoint> = [100, 120, 90, 130, 117]
        .iter()
        .enumerate()
        .map(|(i, e)| point(i as i64, Decimal::from(*e), dec!(0)))
        .collect();
    let dd = max_drawdown(dec!(100), &curve);
    assert_eq!(dd.pct, dec!(25));
    assert_eq!(dd.usd, dec!(30));
    assert_eq!(dd.peak_at, Some(t0() + Duration::minutes(1)));
    assert_eq!(dd.trough_at, Some(t0() + Duration::minutes(2)));
    // A fall below the initial equity counts from the initial equity.
    let dd = max_drawdown(dec!(100), &[point(0, dec!(80), dec!(0))]);
    assert_eq!((dd.pct, dd.usd), (dec!(20), dec!(20)));
    assert_eq!(max_drawdown(dec!(100), &[point(0, dec!(101), dec!(0))]).pct, dec!(0));
}

#[test]
fn sharpe_and_sortino_use_daily_closes_annualised_by_sqrt_365() {
    // Intraday samples are ignored: only each day's last equity counts.
    // Daily returns +1 %, −1 %, +2 %.
    let curve = vec![
        point(30, dec!(150), dec!(0)),
        point(1439, dec!(101), dec!(0)),
        point(1440 + 700, dec!(50), dec!(0)),
        point(2 * 1440 - 1, dec!(99.99), dec!(0)),
        point(2 * 1440 + 5, dec!(101.9898), dec!(0)),
    ];
    let r = daily_returns(dec!(100), &curve);
    assert_eq!(r.len(), 3);
    for (got, want) in r.iter().zip([0.01, -0.01, 0.02]) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    // mean 0.0066667, sample sd 0.0152753 → 0.436436 × √365 = 8.338094 (hand computed).
    let s = sharpe(&r).unwrap();
    assert!((s - 8.338_094).abs() < 1e-5, "sharpe {s}");
    // downside deviation √(0.0001 / 3) = 0.0057735 → 1.154701 × √365 = 22.0605.
    let so = sortino(&r).unwrap();
    assert!((so - 22.060_523).abs() < 1e-5, "sortino {so}");
    assert_eq!(sharpe(&[0.01]), None);
    assert_eq!(sharpe(&[0.01, 0.01]), None);
    assert_eq!(sortino(&[0.01, 0.02]), None);
}

#[test]
fn identical_input_gives_byte_identical_json() {
    let timing = Timing {
        wall_seconds: 1.5,
        candles_per_sec: 1920.0,
    };
    let a = Report::compute(&input(), Some(timing)).to_json().unwrap();
    let b = Report::compute(&input(), Some(timing)).to_json().unwrap();
    assert_eq!(a, b);
    assert!(a.contains("\"timing\": {"), "{a}");
    // Only `timing` differs between runs; without it the text is identical.
    let other = Timing {
        wall_seconds: 9.0,
        candles_per_sec: 320.0,
    };
    let c = Report::compute(&input(), Some(other));
    let plain = Report::compute(&input(), None).to_json().unwrap();
    assert_eq!(c.to_json_deterministic().unwrap(), plain);
    assert!(!plain.contains("timing"));
    // Map keys come out sorted and money as decimal strings.
    let pos_approved = plain.find("\"approved\"").unwrap();
    let pos_too_large = plain.find("\"position_too_large\"").unwrap();
    assert!(pos_approved < pos_too_large);
    assert!(plain.contains("\"net_pnl\": \"93.2\""), "{plain}");
}

#[test]
fn equity_csv_and_charts_are_written() {
    let dir = std::env::temp_dir().join(format!("tg-report-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut run = input();
    for (i, p) in run.equity.iter_mut().enumerate() {
        p.baseline = Some(dec!(10000) + Decimal::from(i as i64 * 10));
    }
    let csv = dir.join("equity.csv");
    write_equity_csv(&csv, &run.equity).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "timestamp,equity,exposure_usd,baseline");
    assert_eq!(lines[2], "2025-03-01T01:00:00Z,10200,5000,10010");
    assert_eq!(lines.len(), 5);

    let svg = dir.join("equity.svg");
    plot_equity(&svg, &run).unwrap();
    let body = std::fs::read_to_string(&svg).unwrap();
    assert!(
        body.starts_with("<svg") && body.contains("polyline"),
        "{}",
        &body[..200.min(body.len())]
    );
    for text in [
        "Backtest equity 2025-03-01 .. 2025-03-02",
        "equity (USD)",
        "date (UTC)",
        "buy-and-hold baseline",
        "strategy entry",
        "rebalance / hodl trade",
    ] {
        assert!(body.contains(text), "{text} missing from the SVG");
    }
    // Dated x labels (`MM-DD HH:MM` on a run of two days), beside the two dates of the title.
    assert!(body.matches("03-0").count() >= 6, "dated x labels");

    let png = dir.join("equity.png");
    plot_equity(&png, &run).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    // The bitmap gets text without any system font: the title band and the x-axis label
    // band hold dark pixels (the plot area never reaches them).
    let (w, h) = (1400u32, 700u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    register_chart_font().unwrap();
    draw(BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area(), &run).unwrap();
    let dark_in_rows = |rows: std::ops::Range<u32>| {
        rows.flat_map(|y| (0..w).map(move |x| ((y * w + x) * 3) as usize))
            .filter(|i| buf[*i] < 100 && buf[*i + 1] < 100 && buf[*i + 2] < 100)
            .count()
    };
    assert!(dark_in_rows(0..40) > 200, "title text drawn");
    assert!(dark_in_rows(h - 45..h) > 50, "x-axis labels drawn");

    assert!(plot_equity(&dir.join("equity.gif"), &run).is_err());
    let empty = ReportInput::default();
    assert!(plot_equity(&svg, &empty).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
