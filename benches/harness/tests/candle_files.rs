//! Candle files written by the generator replay, through the server's own parser, to exactly the
//! candles generated; a malformed row is named by file and line.

use std::path::PathBuf;
use triplegain_bench::{generate_candles, load_series, write_candle_files};

#[test]
fn generated_files_replay_to_the_same_candles() {
    let dir = std::env::temp_dir().join(format!("tg-gen-{}", uuid::Uuid::new_v4()));
    let files = write_candle_files(&dir, 7, 1).unwrap();
    assert_eq!(files.len(), 2);
    let expected = generate_candles(7, 1);
    for ((symbol, path, rows), (sym2, candles)) in files.iter().zip(&expected) {
        assert_eq!(symbol, sym2);
        assert_eq!(*rows, 1440);
        let (parsed_symbol, _) = triplegain::market::replay::parse_replay_arg(&path.to_string_lossy()).unwrap();
        assert_eq!(&parsed_symbol, symbol);
        assert_eq!(
            &triplegain::market::replay::load_candles(path, symbol).unwrap(),
            candles
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_series_reads_generated_files_and_names_a_bad_line() {
    let dir = std::env::temp_dir().join(format!("tg-load-{}", uuid::Uuid::new_v4()));
    let files = write_candle_files(&dir, 3, 1).unwrap();
    let paths: Vec<PathBuf> = files.iter().map(|(_, p, _)| p.clone()).collect();
    let series = load_series(&paths).unwrap();
    assert_eq!(series, generate_candles(3, 1));
    let bad = dir.join("eth_usdt.csv");
    std::fs::write(
        &bad,
        "timestamp,open,high,low,close,volume\n1735689600,1,2,0.5,1.5,3\n1735689660,x,2,1,1,1\n",
    )
    .unwrap();
    let err = load_series(&[bad]).unwrap_err().to_string();
    assert!(err.contains("eth_usdt.csv:3"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
