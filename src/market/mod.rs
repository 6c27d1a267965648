//! Market feeds behind the `MarketFeed` port: the seeded simulated market, Kraken public REST
//! polling, and CSV replay.

pub mod driver;
pub mod generate;
pub mod kraken_public;
pub mod kraken_ws;
pub mod replay;
pub mod simulated;

pub use kraken_public::{kraken_asset_to_common, KrakenPublicFeed};
pub use kraken_ws::{KrakenWsFeed, WsTicker};
pub use replay::{load_candles, parse_replay_arg, symbol_from_file_name, ReplayFeed};
pub use simulated::SimulatedFeed;
