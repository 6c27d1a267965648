//! Candle aggregation and market-data helpers shared by every feed.
