use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Links one decision chain: snapshot → signals → verdict → orders → fills → P&L.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct CorrelationId(pub Uuid);

impl CorrelationId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Client order id sent with every order (`cl_ord_id` on Kraken); the idempotency key of an order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct ClientOrderId(String);

impl ClientOrderId {
    pub fn random() -> Self {
        Self(format!("tg-{}", Uuid::new_v4().simple()))
    }

    /// Accepts ids of 1..=36 printable ASCII characters without spaces.
    ///
    /// # Errors
    /// Returns a description when the id is empty, too long or has invalid characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 36 || !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!("invalid client order id {s:?}"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
