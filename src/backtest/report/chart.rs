//! The equity chart of a backtest run (SVG or PNG), drawn with the embedded font.

use super::{EquityPoint, ReportInput, MAX_PLOT_POINTS};
use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, Utc};
use plotters::coord::Shift;
use plotters::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use std::path::Path;

/// The font every chart label is drawn with (DejaVu Sans, subset to ASCII; Bitstream Vera licence, see
/// `assets/fonts/LICENSE`), embedded so charts get text on machines without system fonts.
const CHART_FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-subset.ttf");

/// Registers [`CHART_FONT`] as `sans-serif` once per process.
pub(super) fn register_chart_font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, CHART_FONT).is_ok());
    if ok {
        Ok(())
    } else {
        bail!("the embedded chart font could not be read")
    }
}

/// Draws the run to `path` (SVG for `.svg`, PNG for `.png`): the equity curve and the
/// buy-and-hold baseline over dated axes, with a title, a legend and markers for the trades
/// (strategy entries and exits, rebalance and hodl trades). Text uses the embedded font.
///
/// # Errors
/// An unknown extension, an empty curve, or a drawing or file error.
pub fn plot_equity(path: &Path, input: &ReportInput) -> anyhow::Result<()> {
    if input.equity.is_empty() {
        bail!("no equity samples to plot");
    }
    register_chart_font()?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let size = (1400, 700);
    match ext.as_str() {
        "svg" => draw(SVGBackend::new(path, size).into_drawing_area(), input),
        "png" => draw(BitMapBackend::new(path, size).into_drawing_area(), input),
        _ => bail!("{}: the chart must end in .svg or .png", path.display()),
    }
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the equity chart: {e}")
}

/// Days since `start` as the chart's x value.
fn x_of(start: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    (at - start).num_seconds() as f64 / 86_400.0
}

/// The equity at `at`: the last sample at or before it (the first sample before the curve).
fn equity_at(equity: &[EquityPoint], at: DateTime<Utc>) -> f64 {
    let i = equity.partition_point(|p| p.at <= at).saturating_sub(1);
    equity.get(i).and_then(|p| p.equity.to_f64()).unwrap_or(0.0)
}

fn thin(pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let step = pts.len().div_ceil(MAX_PLOT_POINTS).max(1);
    let n = pts.len();
    let mut out: Vec<(f64, f64)> = pts
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == n)
        .map(|(_, p)| p)
        .collect();
    out.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    out
}

pub(super) fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, input: &ReportInput) -> anyhow::Result<()> {
    let equity = &input.equity;
    let start = equity.first().map(|p| p.at).context("empty curve")?;
    let end = equity.last().map_or(start, |p| p.at);
    let curve = thin(
        equity
            .iter()
            .map(|p| (x_of(start, p.at), p.equity.to_f64().unwrap_or(0.0)))
            .collect(),
    );
    let base = thin(
        equity
            .iter()
            .filter_map(|p| Some((x_of(start, p.at), p.baseline?.to_f64()?)))
            .collect(),
    );
    let x_max = x_of(start, end).max(1e-6);
    let ys = curve.iter().chain(base.iter()).map(|p| p.1);
    let y_min = ys.clone().fold(f64::INFINITY, f64::min);
    let y_max = ys.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((y_max - y_min) * 0.05).max(1.0);
    root.fill(&WHITE).map_err(plot_err)?;
    let title = format!(
        "Backtest equity {} .. {} (start {} USD)",
        start.format("%Y-%m-%d"),
        end.format("%Y-%m-%d"),
        input.initial_equity.round_dp(2)
    );
    let mut chart = ChartBuilder::on(&root)
        .margin(15)
        .caption(title, ("sans-serif", 24))
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
        .map_err(plot_err)?;
    let date_of = |x: &f64| {
        let at = start + chrono::Duration::seconds((x * 86_400.0).round() as i64);
        if x_max <= 2.0 {
            at.format("%m-%d %H:%M").to_string()
        } else {
            at.format("%Y-%m-%d").to_string()
        }
    };
    chart
        .configure_mesh()
        .x_desc("date (UTC)")
        .y_desc("equity (USD)")
        .x_labels(10)
        .y_labels(10)
        .x_label_formatter(&date_of)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(curve, &BLUE))
        .map_err(plot_err)?
        .label("equity")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if !base.is_empty() {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(LineSeries::new(base, &grey))
            .map_err(plot_err)?
            .label("buy-and-hold baseline")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    let in_range = |at: DateTime<Utc>| at >= start && at <= end;
    let green = RGBColor(0, 150, 0);
    chart
        .draw_series(input.trades.iter().filter(|t| in_range(t.opened_at)).map(|t| {
            TriangleMarker::new(
                (x_of(start, t.opened_at), equity_at(equity, t.opened_at)),
                7,
                green.filled(),
            )
        }))
        .map_err(plot_err)?
        .label("strategy entry")
        .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, green.filled()));
    chart
        .draw_series(input.trades.iter().filter(|t| in_range(t.closed_at)).map(|t| {
            Cross::new(
                (x_of(start, t.closed_at), equity_at(equity, t.closed_at)),
                5,
                RED.stroke_width(2),
            )
        }))
        .map_err(plot_err)?
        .label("strategy exit")
        .legend(|(x, y)| Cross::new((x + 10, y), 5, RED.stroke_width(2)));
    let orange = RGBColor(230, 130, 0);
    chart
        .draw_series(
            input
                .holdings
                .iter()
                .filter(|h| in_range(h.at))
                .map(|h| Circle::new((x_of(start, h.at), equity_at(equity, h.at)), 4, orange.filled())),
        )
        .map_err(plot_err)?
        .label("rebalance / hodl trade")
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, orange.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}
