use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// A trading pair written `BASE/QUOTE`, e.g. `BTC/USDT`.
///
/// The text is shared (`Arc<str>`): symbols ride on every candle, event and map key, and a
/// clone is then a reference-count increment instead of a heap allocation. Equality, ordering
/// and hashing are those of the text, as before.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    text: Arc<str>,
    slash: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid symbol {0:?}: expected BASE/QUOTE with 2-10 upper-case letters or digits each")]
pub struct SymbolError(pub String);

impl Symbol {
    /// # Errors
    /// [`SymbolError`] when the text is not `BASE/QUOTE`.
    pub fn parse(s: &str) -> Result<Self, SymbolError> {
        let upper = s.trim().to_ascii_uppercase();
        let Some(slash) = upper.find('/') else {
            return Err(SymbolError(s.to_owned()));
        };
        let (base, quote) = (&upper[..slash], &upper[slash + 1..]);
        let ok = |p: &str| (2..=10).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric());
        if !ok(base) || !ok(quote) {
            return Err(SymbolError(s.to_owned()));
        }
        Ok(Self {
            text: Arc::from(upper),
            slash,
        })
    }

    pub fn base(&self) -> &str {
        &self.text[..self.slash]
    }

    pub fn quote(&self) -> &str {
        &self.text[self.slash + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl utoipa::PartialSchema for Symbol {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Z0-9]{2,10}/[A-Z0-9]{2,10}$"))
            .description(Some("A trading pair, BASE/QUOTE"))
            .examples([serde_json::json!("BTC/USDT")])
            .into()
    }
}

impl utoipa::ToSchema for Symbol {}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Symbol::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Symbol {
    type Err = SymbolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_splits() {
        let s = Symbol::parse("btc/usdt").unwrap();
        assert_eq!(s.as_str(), "BTC/USDT");
        assert_eq!(s.base(), "BTC");
        assert_eq!(s.quote(), "USDT");
    }

    #[test]
    fn clones_share_the_text_and_compare_by_it() {
        let a = Symbol::parse("BTC/USDT").unwrap();
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()), "a clone does not copy the text");
        let mut by_symbol = std::collections::HashMap::new();
        by_symbol.insert(a, 1);
        assert_eq!(by_symbol.get(&Symbol::parse("btc/usdt").unwrap()), Some(&1));
        assert!(Symbol::parse("ADA/USDT").unwrap() < b);
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"BTC/USDT\"");
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["BTCUSDT", "/USDT", "BTC/", "B/USDT", "BTC/US DT", ""] {
            assert!(Symbol::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
