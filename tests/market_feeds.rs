//! Market feeds: CSV replay, the paced simulated feed, and Kraken public REST against a mock
//! server speaking Kraken's JSON.

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use triplegain::market::{load_candles, KrakenPublicFeed, ReplayFeed, SimulatedFeed};
use triplegain_actors::domain::{Candle, Symbol, Timeframe};
use triplegain_actors::market::{CandleAggregator, MarketHistory, SimulatedMarket};
use triplegain_actors::ports::{FeedError, FeedItem, MarketFeed};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// A fresh directory for one test's files.
fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("triplegain-market-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn malformed(err: FeedError) -> String {
    match err {
        FeedError::Malformed(m) => m,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

async fn drain(feed: &mut impl MarketFeed) -> Vec<Vec<Candle>> {
    let mut groups = Vec::new();
    loop {
        match feed.next().await.unwrap() {
            FeedItem::Candles(c) => groups.push(c),
            FeedItem::End => return groups,
            FeedItem::Idle => panic!("a replay is never idle"),
        }
    }
}

// ---------------------------------------------------------------- replay

#[test]
fn replay_reads_the_header_format_with_unix_and_rfc3339_timestamps() {
    let dir = temp_dir();
    let file = write(
        &dir,
        "btc.csv",
        "timestamp,open,high,low,close,volume\n\
         1767225600,95000.0,95010.5,94990.1,95005.2,1.5\n\
         2026-01-01T00:01:00Z,95005.2,95020,95000,95015.9,0.25\n\
         \n\
         2026-01-01T01:02:00+01:00,95015.9,95016,94900,94950,3\n",
    );
    let candles = load_candles(&file, &sym("BTC/USDT")).unwrap();
    assert_eq!(candles.len(), 3);
    assert_eq!(candles[0].open_time, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    assert_eq!(candles[1].open_time, Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap());
    assert_eq!(candles[2].open_time, Utc.with_ymd_and_hms(2026, 1, 1, 0, 2, 0).unwrap());
    let c = &candles[0];
    assert_eq!(
        (c.open, c.high, c.low, c.close, c.volume),
        (dec!(95000.0), dec!(95010.5), dec!(94990.1), dec!(95005.2), dec!(1.5))
    );
    assert!(candles
        .iter()
        .all(|c| c.timeframe == Timeframe::M1 && c.symbol == sym("BTC/USDT")));
}

#[test]
fn replay_reads_krakens_headerless_ohlcvt_export_and_its_timeframe() {
    let dir = temp_dir();
    let file = write(
        &dir,
        "XRPUSDT_60.csv",
        "1767225600,2.30000,2.31000,2.29000,2.30500,120000.5,310\n\
         1767229200,2.30500,2.32000,2.30100,2.31900,98000,255\n\
         1767232800,2.31900,2.31900,2.28000,2.28100,150000.25,402\n",
    );
    let candles = load_candles(&file, &sym("XRP/USDT")).unwrap();
    assert_eq!(candles.len(), 3);
    assert!(
        candles.iter().all(|c| c.timeframe == Timeframe::H1),
        "one hour between rows"
    );
    assert_eq!(candles[2].low, dec!(2.28000));
    assert_eq!(candles[2].volume, dec!(150000.25));
    assert_eq!(candles[1].open_time, at(1_767_229_200));
}

#[test]
fn a_malformed_row_names_the_file_and_line() {
    let dir = temp_dir();
    let cases = [
        (
            "bad_number.csv",
            "timestamp,open,high,low,close,volume\n1767225600,1,2,0.5,1.5,10\n1767225660,1,2,abc,1.5,10\n",
            3,
            "low",
        ),
        (
            "short_row.csv",
            "1767225600,1,2,0.5,1.5,10,3\n\n1767225660,1,2,0.5\n",
            3,
            "columns",
        ),
        (
            "bad_ohlc.csv",
            "1767225600,1,2,0.5,1.5,10,3\n1767225660,1,1.2,0.5,1.5,10,3\n",
            2,
            "inconsistent",
        ),
        (
            "bad_time.csv",
            "timestamp,open,high,low,close,volume\nyesterday,1,2,0.5,1.5,10\n",
            2,
            "timestamp",
        ),
        (
            "bad_header.csv",
            "time,o,h,l,c,v\n1767225600,1,2,0.5,1.5,10\n",
            1,
            "header",
        ),
        ("millis.csv", "1767225600000,1,2,0.5,1.5,10,3\n", 1, "milliseconds"),
    ];
    for (name, text, line, what) in cases {
        let file = write(&dir, name, text);
        let msg = malformed(load_candles(&file, &sym("BTC/USDT")).unwrap_err());
        let prefix = format!("{}:{line}: ", file.display());
        assert!(msg.starts_with(&prefix), "{name}: {msg:?} should start with {prefix:?}");
        assert!(msg.contains(what), "{name}: {msg:?} should mention {what}");
    }
}

#[test]
fn rows_out_of_time_order_are_an_error_not_sorted() {
    let dir = temp_dir();
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    for i in [0, 1, 2, 4, 3, 5] {
        text.push_str(&format!("{},1,2,0.5,1.5,10\n", 1_767_225_600 + 60 * i));
    }
    let file = write(&dir, "order.csv", &text);
    let msg = malformed(load_candles(&file, &sym("BTC/USDT")).unwrap_err());
    assert!(msg.starts_with(&format!("{}:6: ", file.display())), "{msg}");
    assert!(msg.contains("time order"), "{msg}");

    let dup = write(
        &dir,
        "dup.csv",
        "1767225600,1,2,0.5,1.5,10,1\n1767225600,1,2,0.5,1.5,10,1\n",
    );
    let msg = malformed(load_candles(&dup, &sym("BTC/USDT")).unwrap_err());
    assert!(msg.starts_with(&format!("{}:2: ", dup.display())), "{msg}");
}

#[tokio::test]
async fn replay_stops_at_a_bad_row_after_yielding_the_good_ones() {
    let dir = temp_dir();
    let mut text = String::new();
    for i in 0..80 {
        text.push_str(&format!("{},1,2,0.5,1.5,10,1\n", 1_767_225_600 + 60 * i));
    }
    text.push_str("1767230400,1,2,0.5,oops,10,1\n");
    let file = write(&dir, "XBTUSDT_1.csv", &text);
    let mut feed = ReplayFeed::open(vec![(sym("BTC/USDT"), file.clone())]).unwrap();
    for _ in 0..80 {
        assert!(matches!(feed.next().await.unwrap(), FeedItem::Candles(c) if c.len() == 1));
    }
    let msg = malformed(feed.next().await.unwrap_err());
    assert!(msg.starts_with(&format!("{}:81: ", file.display())), "{msg}");
}

#[tokio::test]
async fn replay_merges_files_in_time_order_grouping_equal_timestamps() {
    let dir = temp_dir();
    let btc = write(
        &dir,
        "BTC_USDT.csv",
        "timestamp,open,high,low,close,volume\n\
         1767225600,95000,95010,94990,95005,1\n\
         1767225660,95005,95020,95000,95015,2\n\
         1767225780,95015,95016,94900,94950,3\n",
    );
    let xrp = write(
        &dir,
        "XRPUSDT_1.csv",
        "1767225660,2.3,2.31,2.29,2.305,100,5\n\
         1767225720,2.305,2.32,2.301,2.319,200,6\n\
         1767225780,2.319,2.319,2.28,2.281,300,7\n\
         1767225840,2.281,2.29,2.28,2.285,400,8\n",
    );
    let mut feed = ReplayFeed::open(vec![(sym("BTC/USDT"), btc), (sym("XRP/USDT"), xrp)]).unwrap();
    assert_eq!(feed.symbols(), vec![sym("BTC/USDT"), sym("XRP/USDT")]);
    let groups = drain(&mut feed).await;
    let shape: Vec<Vec<(i64, &str)>> = groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|c| ((c.open_time.timestamp() - 1_767_225_600) / 60, c.symbol.as_str()))
                .collect()
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            vec![(0, "BTC/USDT")],
            vec![(1, "BTC/USDT"), (1, "XRP/USDT")],
            vec![(2, "XRP/USDT")],
            vec![(3, "BTC/USDT"), (3, "XRP/USDT")],
            vec![(4, "XRP/USDT")],
        ]
    );
    assert_eq!(feed.next().await.unwrap(), FeedItem::End, "stays at the end");
}

#[test]
fn replay_refuses_missing_files_and_duplicate_symbols() {
    let dir = temp_dir();
    let a = write(&dir, "a.csv", "1767225600,1,2,0.5,1.5,10,1\n");
    assert!(matches!(
        ReplayFeed::open(vec![(sym("BTC/USDT"), dir.join("missing.csv"))]),
        Err(FeedError::Source(_))
    ));
    assert!(matches!(
        ReplayFeed::open(vec![(sym("BTC/USDT"), a.clone()), (sym("BTC/USDT"), a)]),
        Err(FeedError::Source(_))
    ));
}

#[test]
fn replayed_minutes_aggregate_into_five_minute_candles() {
    let dir = temp_dir();
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    for i in 0..10 {
        let p = 100 + i;
        text.push_str(&format!(
            "{},{p},{},{},{},{}\n",
            1_767_225_600 + 60 * i,
            p + 2,
            p - 1,
            p + 1,
            i + 1
        ));
    }
    let file = write(&dir, "btc.csv", &text);
    let mut agg = CandleAggregator::new();
    let mut five = Vec::new();
    for c in load_candles(&file, &sym("BTC/USDT")).unwrap() {
        five.extend(
            agg.push(&c)
                .unwrap()
                .into_iter()
                .filter(|c| c.timeframe == Timeframe::M5),
        );
    }
    assert_eq!(five.len(), 2);
    let c = &five[1];
    assert_eq!(
        (c.open, c.high, c.low, c.close, c.volume),
        (dec!(105), dec!(111), dec!(104), dec!(110), dec!(40))
    );
}

// ---------------------------------------------------------------- simulated

#[tokio::test]
async fn simulated_feed_is_reproducible_and_yields_all_three_symbols_per_minute() {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut a = SimulatedFeed::seeded(7, start, 0.0);
    let mut b = SimulatedFeed::seeded(7, start, 0.0);
    let mut c = SimulatedFeed::seeded(8, start, 0.0);
    assert_eq!(a.symbols(), vec![sym("BTC/USDT"), sym("XRP/USDT"), sym("XRP/BTC")]);
    let mut differs = false;
    for minute in 0..120 {
        let (FeedItem::Candles(x), FeedItem::Candles(y), FeedItem::Candles(z)) = (
            a.next().await.unwrap(),
            b.next().await.unwrap(),
            c.next().await.unwrap(),
        ) else {
            panic!("the simulated feed always has candles");
        };
        assert_eq!(x, y);
        differs |= x != z;
        assert_eq!(x.len(), 3);
        assert!(x
            .iter()
            .all(|c| c.open_time == start + chrono::Duration::minutes(minute)));
    }
    assert!(differs, "another seed gives another path");
    // The feed is the model, step for step.
    let mut model = SimulatedMarket::new(7, start);
    let direct: Vec<Candle> = (0..121).flat_map(|_| model.step()).collect();
    let FeedItem::Candles(next) = a.next().await.unwrap() else {
        panic!()
    };
    assert_eq!(next, direct[360..]);
}

#[tokio::test]
async fn simulated_feed_paces_by_speed_except_during_backfill() {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    // speed 60: one simulated minute per second.
    assert_eq!(SimulatedFeed::seeded(1, start, 60.0).period(), Duration::from_secs(1));
    assert_eq!(SimulatedFeed::seeded(1, start, 0.0).period(), Duration::ZERO);

    // speed 3000: 20 ms per minute.
    let mut feed = SimulatedFeed::seeded(1, start, 3000.0);
    let t0 = Instant::now();
    for _ in 0..5 {
        feed.next().await.unwrap();
    }
    assert!(t0.elapsed() >= Duration::from_millis(95), "paced: {:?}", t0.elapsed());

    // One minute per second, but the first 30 minutes are history and come at once.
    let mut feed = SimulatedFeed::seeded(1, start, 60.0).unpaced_until(start + chrono::Duration::minutes(30));
    let t0 = Instant::now();
    for _ in 0..30 {
        feed.next().await.unwrap();
    }
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "backfill unpaced: {:?}",
        t0.elapsed()
    );
    let paced = tokio::time::timeout(Duration::from_millis(300), feed.next()).await;
    assert!(paced.is_err(), "minute 30 waits for its second");
}

#[tokio::test]
async fn two_simulated_days_through_the_history_give_every_timeframe_and_24h_fields() {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut feed = SimulatedFeed::seeded(21, start, 0.0);
    let mut history = MarketHistory::new();
    let mut closed = std::collections::BTreeMap::<Timeframe, usize>::new();
    for _ in 0..2 * 1440 {
        let FeedItem::Candles(candles) = feed.next().await.unwrap() else {
            panic!()
        };
        for c in &candles {
            for done in history.push(c).unwrap() {
                *closed.entry(done.timeframe).or_default() += 1;
            }
        }
    }
    // Three symbols: 2 days of 1m, 5m, 15m, 1h, 4h and 1d candles.
    let want = [
        (Timeframe::M1, 2880),
        (Timeframe::M5, 576),
        (Timeframe::M15, 192),
        (Timeframe::H1, 48),
        (Timeframe::H4, 12),
        (Timeframe::D1, 2),
    ];
    for (tf, per_symbol) in want {
        assert_eq!(closed.get(&tf), Some(&(3 * per_symbol)), "{tf}");
    }
    let now = start + chrono::Duration::days(2);
    for symbol in feed.symbols() {
        let s = history.summary(&symbol, Timeframe::H1, now).unwrap();
        let last_hour = history.latest(&symbol, Timeframe::H1).unwrap();
        assert_eq!(s.current_price, last_hour.close);
        let ago = s.price_24h_ago.unwrap();
        let hourly = history.candles(&symbol, Timeframe::H1);
        assert_eq!(ago, hourly[hourly.len() - 25].close, "{symbol}");
        assert!(s.volume_24h.unwrap() > Decimal::ZERO);
        assert_eq!(s.data_age_seconds, 0);
        assert!(s.missing_data_flags.contains(&"insufficient_1d_candles".to_owned()));
        assert!(!s.missing_data_flags.contains(&"stale_data".to_owned()));
    }
}

// ---------------------------------------------------------------- Kraken public

fn asset_pairs() -> serde_json::Value {
    let pair = |altname: &str, wsname: &str, base: &str, quote: &str, decimals: u32, tick: &str| {
        json!({
            "altname": altname, "wsname": wsname, "aclass_base": "currency", "base": base,
            "aclass_quote": "currency", "quote": quote, "lot": "unit", "cost_decimals": 8,
            "pair_decimals": decimals, "lot_decimals": 8, "lot_multiplier": 1,
            "leverage_buy": [2, 3], "leverage_sell": [2, 3],
            "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]],
            "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
            "ordermin": "0.00005", "costmin": "0.5", "tick_size": tick, "status": "online"
        })
    };
    json!({
        "error": [],
        "result": {
            "XXBTZUSD": pair("XBTUSD", "XBT/USD", "XXBT", "ZUSD", 1, "0.1"),
            "XBTUSDT": pair("XBTUSDT", "XBT/USDT", "XXBT", "USDT", 1, "0.1"),
            "XRPUSDT": pair("XRPUSDT", "XRP/USDT", "XXRP", "USDT", 5, "0.00001"),
            "XXRPXXBT": pair("XRPXBT", "XRP/XBT", "XXRP", "XXBT", 8, "0.00000001"),
            "XXRPZUSD": pair("XRPUSD", "XRP/USD", "XXRP", "ZUSD", 5, "0.00001")
        }
    })
}

const T0: i64 = 1_767_225_600;

fn ohlc_row(t: i64, close: &str, volume: &str) -> serde_json::Value {
    json!([t, close, close, close, close, close, volume, 3])
}

fn ohlc(key: &str, rows: Vec<serde_json::Value>, last: i64) -> serde_json::Value {
    json!({ "error": [], "result": { key: rows, "last": last } })
}

async fn mount_asset_pairs(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/0/public/AssetPairs"))
        .respond_with(ResponseTemplate::new(200).set_body_json(asset_pairs()))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn kraken_feed_maps_pairs_drops_the_forming_row_and_polls_with_since() {
    let server = MockServer::start().await;
    mount_asset_pairs(&server).await;
    // First poll: three closed minutes and the forming one.
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .and(query_param("pair", "XBTUSDT"))
        .and(query_param("interval", "1"))
        .and(query_param_is_missing("since"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ohlc(
            "XBTUSDT",
            vec![
                ohlc_row(T0, "95000.0", "1.5"),
                ohlc_row(T0 + 60, "95010.1", "0.5"),
                ohlc_row(T0 + 120, "95020.2", "2.25"),
                ohlc_row(T0 + 180, "95030.3", "0.01"),
            ],
            T0 + 120,
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .and(query_param("pair", "XRPXBT"))
        .and(query_param_is_missing("since"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ohlc(
            "XXRPXXBT",
            vec![
                ohlc_row(T0 + 60, "0.00002421", "900"),
                ohlc_row(T0 + 120, "0.00002425", "800"),
                ohlc_row(T0 + 180, "0.00002430", "1"),
            ],
            T0 + 120,
        )))
        .expect(1)
        .mount(&server)
        .await;
    // Second poll, from the cursors: the minute that was forming has closed.
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .and(query_param("pair", "XBTUSDT"))
        .and(query_param("since", (T0 + 120).to_string()))
        .respond_with(ResponseTemplate::new(200).set_body_json(ohlc(
            "XBTUSDT",
            vec![
                ohlc_row(T0 + 120, "95020.2", "2.25"),
                ohlc_row(T0 + 180, "95031.0", "3.5"),
                ohlc_row(T0 + 240, "95040.0", "0.2"),
            ],
            T0 + 180,
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .and(query_param("pair", "XRPXBT"))
        .and(query_param("since", (T0 + 120).to_string()))
        .respond_with(ResponseTemplate::new(200).set_body_json(ohlc(
            "XXRPXXBT",
            vec![
                ohlc_row(T0 + 180, "0.00002431", "50"),
                ohlc_row(T0 + 240, "0.00002440", "2"),
            ],
            T0 + 180,
        )))
        .expect(1)
        .mount(&server)
        .await;

    let mut feed = KrakenPublicFeed::new(&server.uri(), vec![sym("BTC/USDT"), sym("XRP/BTC")])
        .unwrap()
        .with_poll_interval(Duration::ZERO);
    let FeedItem::Candles(first) = feed.next().await.unwrap() else {
        panic!("history expected")
    };
    let got: Vec<(i64, &str, Decimal)> = first
        .iter()
        .map(|c| ((c.open_time.timestamp() - T0) / 60, c.symbol.as_str(), c.close))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "BTC/USDT", dec!(95000.0)),
            (1, "BTC/USDT", dec!(95010.1)),
            (1, "XRP/BTC", dec!(0.00002421)),
            (2, "BTC/USDT", dec!(95020.2)),
            (2, "XRP/BTC", dec!(0.00002425)),
        ],
        "the forming 03 minute is dropped and symbols merge in time order"
    );
    assert!(first.iter().all(|c| c.timeframe == Timeframe::M1));
    assert_eq!(first[3].volume, dec!(2.25));

    let FeedItem::Candles(second) = feed.next().await.unwrap() else {
        panic!("new candles expected")
    };
    let got: Vec<(i64, &str, Decimal, Decimal)> = second
        .iter()
        .map(|c| {
            (
                (c.open_time.timestamp() - T0) / 60,
                c.symbol.as_str(),
                c.close,
                c.volume,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "BTC/USDT", dec!(95031.0), dec!(3.5)),
            (3, "XRP/BTC", dec!(0.00002431), dec!(50))
        ],
        "only the newly closed minute, with its final values; the repeated 02 row is not emitted twice"
    );
    assert_eq!(
        feed.resolve_pairs().await.unwrap(),
        vec![
            (sym("BTC/USDT"), "XBTUSDT".to_owned()),
            (sym("XRP/BTC"), "XRPXBT".to_owned())
        ]
    );
    // Mock expectations (AssetPairs once, each OHLC once) are verified when the server drops.
}

#[tokio::test]
async fn kraken_feed_is_idle_when_only_the_forming_row_came_back() {
    let server = MockServer::start().await;
    mount_asset_pairs(&server).await;
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .and(query_param("pair", "XRPUSDT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ohlc(
            "XRPUSDT",
            vec![ohlc_row(T0, "2.3", "10")],
            T0 - 60,
        )))
        .mount(&server)
        .await;
    let mut feed = KrakenPublicFeed::new(&server.uri(), vec![sym("XRP/USDT")])
        .unwrap()
        .with_poll_interval(Duration::ZERO);
    assert_eq!(feed.next().await.unwrap(), FeedItem::Idle);
}

#[tokio::test]
async fn kraken_errors_are_source_errors_and_a_failed_poll_keeps_the_cursor() {
    let server = MockServer::start().await;
    mount_asset_pairs(&server).await;
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"error": ["EService:Unavailable"]})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/0/public/OHLC"))
        .and(query_param_is_missing("since"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ohlc(
            "XBTUSDT",
            vec![ohlc_row(T0, "95000.0", "1"), ohlc_row(T0 + 60, "95001.0", "1")],
            T0,
        )))
        .mount(&server)
        .await;
    let mut feed = KrakenPublicFeed::new(&server.uri(), vec![sym("BTC/USDT")])
        .unwrap()
        .with_poll_interval(Duration::ZERO);
    let e1 = feed.next().await.unwrap_err();
    assert!(
        matches!(&e1, FeedError::Source(m) if m.contains("EService:Unavailable")),
        "{e1:?}"
    );
    let e2 = feed.next().await.unwrap_err();
    assert!(matches!(&e2, FeedError::Source(m) if m.contains("502")), "{e2:?}");
    // Still no `since`: the failures moved nothing.
    let FeedItem::Candles(c) = feed.next().await.unwrap() else {
        panic!()
    };
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].close, dec!(95000.0));
}

#[tokio::test]
async fn kraken_unknown_symbol_and_unreachable_server_are_source_errors() {
    let server = MockServer::start().await;
    mount_asset_pairs(&server).await;
    let mut feed = KrakenPublicFeed::new(&server.uri(), vec![sym("DOGE/EUR")]).unwrap();
    assert!(matches!(feed.next().await, Err(FeedError::Source(m)) if m.contains("DOGE/EUR")));

    let mut offline = KrakenPublicFeed::new("http://127.0.0.1:9", vec![sym("BTC/USDT")]).unwrap();
    assert!(matches!(offline.next().await, Err(FeedError::Source(_))));
}

#[tokio::test]
async fn kraken_ticker_gives_the_last_trade_price_per_symbol() {
    let server = MockServer::start().await;
    mount_asset_pairs(&server).await;
    let ticker = |price: &str| {
        json!({
            "a": [price, "1", "1.000"], "b": [price, "2", "2.000"], "c": [price, "0.01"],
            "v": ["100.1", "2000.2"], "p": [price, price], "t": [100, 2000],
            "l": [price, price], "h": [price, price], "o": price
        })
    };
    Mock::given(method("GET"))
        .and(path("/0/public/Ticker"))
        .and(query_param("pair", "XBTUSDT,XRPXBT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "error": [],
            "result": { "XBTUSDT": ticker("95123.4"), "XXRPXXBT": ticker("0.00002419") }
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut feed = KrakenPublicFeed::new(&server.uri(), vec![sym("BTC/USDT"), sym("XRP/BTC")]).unwrap();
    let prices = feed.last_prices().await.unwrap();
    assert_eq!(prices.get(&sym("BTC/USDT")), Some(&dec!(95123.4)));
    assert_eq!(prices.get(&sym("XRP/BTC")), Some(&dec!(0.00002419)));
}
