//! Asset and pair naming, and decimal parsing/formatting for the wire.
//!
//! Kraken calls bitcoin `XBT` and keeps class prefixes on legacy assets (`XXBT`, `XXRP`, `ZUSD`).
//! The prefixes are not a rule (`XTZ`, `ZRX` are real names), so the mapping is a table.

use rust_decimal::Decimal;
use std::str::FromStr;

/// Kraken asset id or altname → our asset code.
const ASSET_TABLE: &[(&str, &str)] = &[
    ("XXBT", "BTC"),
    ("XBT", "BTC"),
    ("XXRP", "XRP"),
    ("XETH", "ETH"),
    ("XLTC", "LTC"),
    ("XXLM", "XLM"),
    ("XXMR", "XMR"),
    ("XZEC", "ZEC"),
    ("XETC", "ETC"),
    ("XMLN", "MLN"),
    ("XREP", "REP"),
    ("XXDG", "DOGE"),
    ("XDG", "DOGE"),
    ("ZUSD", "USD"),
    ("ZEUR", "EUR"),
    ("ZGBP", "GBP"),
    ("ZCAD", "CAD"),
    ("ZJPY", "JPY"),
    ("ZAUD", "AUD"),
    ("ZCHF", "CHF"),
];

/// Our asset code for a Kraken asset id or altname (`XXBT` → `BTC`, `ZUSD` → `USD`,
/// `USDT` → `USDT`). Names not in the table are returned upper-cased and unchanged.
pub fn normalise_asset(kraken: &str) -> String {
    let upper = kraken.trim().to_ascii_uppercase();
    ASSET_TABLE
        .iter()
        .find(|(k, _)| *k == upper)
        .map_or(upper.clone(), |(_, ours)| (*ours).to_owned())
}

/// Whether a Balance key is one of the read-only suffixed variants (`XBT.F`, `ETH2.S`, `USD.M`, …)
/// that cannot be traded.
pub fn is_suffixed_asset(kraken: &str) -> bool {
    kraken.contains('.')
}

/// Our `BASE/QUOTE` text for a Kraken `wsname` such as `XBT/USDT` (→ `BTC/USDT`).
pub fn normalise_wsname(wsname: &str) -> Option<String> {
    let (base, quote) = wsname.split_once('/')?;
    Some(format!("{}/{}", normalise_asset(base), normalise_asset(quote)))
}

/// A decimal for the wire: normalised (no trailing zeros) and never in exponent notation,
/// e.g. `0.00000100` → `0.000001`.
pub fn format_decimal(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Parses a decimal sent as a JSON string or number (never through `f64`).
pub fn parse_decimal(v: &serde_json::Value) -> Option<Decimal> {
    match v {
        serde_json::Value::String(s) => parse_decimal_str(s),
        serde_json::Value::Number(n) => parse_decimal_str(&n.to_string()),
        _ => None,
    }
}

/// Parses a decimal text, accepting exponent notation too.
pub fn parse_decimal_str(s: &str) -> Option<Decimal> {
    let s = s.trim();
    Decimal::from_str(s).ok().or_else(|| Decimal::from_scientific(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn asset_names_map_through_the_table() {
        for (kraken, ours) in [
            ("XXBT", "BTC"),
            ("XBT", "BTC"),
            ("XXRP", "XRP"),
            ("XRP", "XRP"),
            ("ZUSD", "USD"),
            ("USDT", "USDT"),
            ("XTZ", "XTZ"),
            ("ZRX", "ZRX"),
            ("XXDG", "DOGE"),
            ("sol", "SOL"),
        ] {
            assert_eq!(normalise_asset(kraken), ours, "{kraken}");
        }
        assert!(is_suffixed_asset("XBT.F"));
        assert!(!is_suffixed_asset("XXBT"));
    }

    #[test]
    fn wsnames_map_to_our_symbols() {
        assert_eq!(normalise_wsname("XBT/USDT").as_deref(), Some("BTC/USDT"));
        assert_eq!(normalise_wsname("XRP/XBT").as_deref(), Some("XRP/BTC"));
        assert_eq!(normalise_wsname("XRP/USDT").as_deref(), Some("XRP/USDT"));
        assert_eq!(normalise_wsname("XBTUSDT"), None);
    }

    #[test]
    fn decimals_never_use_exponents() {
        assert_eq!(format_decimal(dec!(0.00000100)), "0.000001");
        assert_eq!(format_decimal(dec!(0.00000001)), "0.00000001");
        assert_eq!(format_decimal(dec!(45250.10)), "45250.1");
        assert_eq!(format_decimal(dec!(37500.000)), "37500");
        assert_eq!(format_decimal(dec!(1e-8)), "0.00000001");
        assert!(!format_decimal(dec!(0.0000000000001)).contains('e'));
    }

    #[test]
    fn decimals_parse_from_strings_and_numbers() {
        assert_eq!(parse_decimal(&serde_json::json!("0.0001")), Some(dec!(0.0001)));
        assert_eq!(parse_decimal(&serde_json::json!(0.5)), Some(dec!(0.5)));
        assert_eq!(parse_decimal(&serde_json::json!(12)), Some(dec!(12)));
        assert_eq!(parse_decimal(&serde_json::json!("1e-8")), Some(dec!(0.00000001)));
        assert_eq!(parse_decimal(&serde_json::json!(null)), None);
        assert_eq!(parse_decimal(&serde_json::json!("abc")), None);
    }
}
