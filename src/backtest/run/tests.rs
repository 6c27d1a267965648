use super::*;
use rust_decimal_macros::dec;
use triplegain_actors::domain::{CorrelationId, Side};
use triplegain_actors::ports::TradeRecord as Fill;

fn fill(position: Option<uuid::Uuid>, side: Side, volume: Decimal, price: Decimal, fee: Decimal, min: i64) -> Fill {
    Fill {
        id: uuid::Uuid::new_v4(),
        order_id: uuid::Uuid::new_v4(),
        position_id: position,
        correlation_id: CorrelationId::new(),
        symbol: Symbol::parse("BTC/USDT").unwrap(),
        side,
        volume,
        price,
        fee,
        realized_pnl: None,
        executed_at: parse_time("2025-01-01").unwrap() + chrono::Duration::minutes(min),
    }
}

#[test]
fn round_trips_pair_opening_and_closing_fills_per_position() {
    let (long, short, open) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let fills = vec![
        // A long bought in two parts and sold in one.
        fill(Some(long), Side::Buy, dec!(1), dec!(100), dec!(0.1), 0),
        fill(Some(long), Side::Buy, dec!(1), dec!(110), dec!(0.1), 1),
        fill(Some(long), Side::Sell, dec!(2), dec!(120), dec!(0.2), 5),
        // A short closed at a loss.
        fill(Some(short), Side::Sell, dec!(1), dec!(100), dec!(0.05), 2),
        fill(Some(short), Side::Buy, dec!(1), dec!(104), dec!(0.05), 3),
        // Still open, and a fill without a position: not trades.
        fill(Some(open), Side::Buy, dec!(1), dec!(100), dec!(0.1), 4),
        fill(None, Side::Buy, dec!(1), dec!(100), dec!(0.1), 4),
    ];
    let trades = round_trips(&fills);
    assert_eq!(trades.len(), 2);
    let (s, l) = (&trades[0], &trades[1]);
    assert_eq!(
        (s.side, s.entry_price, s.exit_price, s.fees),
        (Side::Sell, dec!(100), dec!(104), dec!(0.1))
    );
    assert_eq!(s.net_pnl(), dec!(-4.1));
    assert_eq!(
        (l.side, l.quantity, l.entry_price, l.exit_price),
        (Side::Buy, dec!(2), dec!(105), dec!(120))
    );
    assert_eq!(l.net_pnl(), dec!(29.6));
}

#[test]
fn times_parse_as_rfc3339_or_dates() {
    assert_eq!(
        parse_time("2025-01-02").unwrap(),
        parse_time("2025-01-02T00:00:00Z").unwrap()
    );
    assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
}
