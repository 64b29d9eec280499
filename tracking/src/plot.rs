//! `anvil runs plot`: one panel per metric, steps on x, each run's raw series faint and its
//! EMA-smoothed series bold in the run's colour, a legend, axis labels and a title. Drawn with
//! plotters into an RGB buffer and encoded with `png`, using the DejaVu Sans font embedded in the
//! binary, so it works the same on any machine (no fontconfig, no system fonts).

use crate::error::{Result, TrackingError};
use crate::folder::{self, Metrics};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// matplotlib's tab10: distinct, colour-blind-friendlier than pure RGB.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Unsmoothed series up to this long get a marker on each point.
const MAX_MARKED_POINTS: usize = 60;
/// `PlotOptions::smoothing` is the per-point EMA weight for a series this long.
const SMOOTHING_REFERENCE_POINTS: f64 = 500.0;

/// One run's points of one metric: (step, value), sorted by step.
type Series = Vec<(f64, f64)>;

pub const DEFAULT_METRICS: [&str; 2] = ["train/loss", "val/loss"];

#[derive(Debug, Clone)]
pub struct PlotOptions {
    /// Metric keys, one panel each; metrics no run has are left out.
    pub metrics: Vec<String>,
    /// In [0, 1): 0 is no smoothing. The per-point EMA weight of a 500-point series; longer
    /// series get a proportionally longer window (see `ema_weight`), so 0.9 smooths over about
    /// 2% of the steps whatever their number.
    pub smoothing: f64,
    pub width: u32,
    pub panel_height: u32,
    pub title: Option<String>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            metrics: DEFAULT_METRICS.iter().map(|s| s.to_string()).collect(),
            smoothing: 0.9,
            width: 1200,
            panel_height: 450,
            title: None,
        }
    }
}

/// TensorBoard's debiased exponential moving average: early points are not dragged towards 0.
pub fn ema(values: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let mut last = 0.0;
    let mut n = 0;
    values
        .iter()
        .map(|&(x, v)| {
            last = last * weight + (1.0 - weight) * v;
            n += 1;
            let debias = 1.0 - weight.powi(n);
            (x, if debias > 0.0 { last / debias } else { v })
        })
        .collect()
}

/// The EMA weight for a series of `n` points. TensorBoard applies one weight per point, which
/// leaves a 100k-step run looking unsmoothed and makes a 40-point validation curve lag a quarter
/// of the axis behind its points; here the window (`1 / (1 - w)` points) grows with the series so
/// it covers the same share of the x axis. `None`: too few points to smooth.
pub fn ema_weight(n: usize, smoothing: f64) -> Option<f64> {
    if smoothing <= 0.0 {
        return None;
    }
    let window = n as f64 / SMOOTHING_REFERENCE_POINTS / (1.0 - smoothing);
    (window >= 2.0).then(|| 1.0 - 1.0 / window)
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped with the crate: failure is impossible.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn perr(e: impl std::fmt::Display) -> TrackingError {
    TrackingError::Plot(e.to_string())
}

/// A padded range that is never empty.
fn range(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Plot `runs` (label, metrics) to `out` as a PNG; returns the asked-for metrics that no run
/// has (left out). Errors when that is all of them.
pub fn plot(runs: &[(String, Metrics)], opts: &PlotOptions, out: &Path) -> Result<Vec<String>> {
    if !(0.0..1.0).contains(&opts.smoothing) {
        return Err(TrackingError::Plot(format!(
            "smoothing must be in [0, 1), got {}",
            opts.smoothing
        )));
    }
    // Per metric, per run: finite points sorted by step.
    let mut panels: Vec<(&str, Vec<Series>)> = Vec::new();
    let mut missing = Vec::new();
    for key in &opts.metrics {
        let series: Vec<Series> = runs
            .iter()
            .map(|(_, m)| {
                m.by_step(key)
                    .into_iter()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(s, v)| (s as f64, v))
                    .collect()
            })
            .collect();
        if series.iter().any(|s| !s.is_empty()) {
            panels.push((key, series));
        } else {
            missing.push(key.clone());
        }
    }
    if panels.is_empty() {
        let have: std::collections::BTreeSet<&str> = runs
            .iter()
            .flat_map(|(_, m)| m.series.keys().map(|k| k.as_str()))
            .collect();
        return Err(TrackingError::Plot(format!(
            "no run has any of the metrics {}; they have: {}",
            opts.metrics.join(", "),
            if have.is_empty() {
                "none".to_string()
            } else {
                have.into_iter().collect::<Vec<_>>().join(", ")
            }
        )));
    }
    register_font();
    let title_h = 50;
    let (w, h) = (
        opts.width,
        title_h + opts.panel_height * panels.len() as u32,
    );
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let title = opts.title.clone().unwrap_or_else(|| {
            let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
            let keys: Vec<&str> = panels.iter().map(|(k, _)| *k).collect();
            format!("{}: {}", names.join(", "), keys.join(", "))
        });
        let root = root
            .titled(&title, (FAMILY, 26).into_font().color(&BLACK))
            .map_err(perr)?;
        let areas = root.split_evenly((panels.len(), 1));
        for ((key, series), area) in panels.iter().zip(areas.iter()) {
            draw_panel(area, key, series, runs, opts.smoothing)?;
        }
        root.present().map_err(perr)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(perr)?;
        wr.write_image_data(&buf).map_err(perr)?;
        wr.finish().map_err(perr)?;
    }
    folder::write_atomic(out, &png_bytes, false)?;
    Ok(missing)
}

/// The legend corner that covers the fewest points (fractions of the axes in [0, 1]).
fn legend_corner(points: &[(f64, f64)]) -> SeriesLabelPosition {
    // The legend box spans about this much of each axis.
    const W: f64 = 0.3;
    const H: f64 = 0.3;
    let corners = [
        (SeriesLabelPosition::UpperRight, 1.0 - W, 1.0 - H),
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - H),
        (SeriesLabelPosition::LowerRight, 1.0 - W, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
    for (pos, x0, y0) in corners {
        let n = points
            .iter()
            .filter(|(x, y)| *x >= x0 && *x <= x0 + W && *y >= y0 && *y <= y0 + H)
            .count();
        if n < best.0 {
            best = (n, pos);
        }
    }
    best.1
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    key: &str,
    series: &[Series],
    runs: &[(String, Metrics)],
    smoothing: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let all = series.iter().flatten();
    let (x0, x1) = all
        .clone()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (y0, y1) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    let weights: Vec<Option<f64>> = series
        .iter()
        .map(|s| ema_weight(s.len(), smoothing))
        .collect();
    // Sparse series (validation every N steps, one eval) get a marker on each point.
    let marked = |s: &Series, w: &Option<f64>| w.is_none() && s.len() <= MAX_MARKED_POINTS;
    let markers = series.iter().zip(&weights).any(|(s, w)| marked(s, w));
    let (x0, x1) = if x1 <= x0 {
        (x0 - 1.0, x1 + 1.0)
    } else if markers {
        // Room for the markers at the ends, which would be cut in half.
        let pad = (x1 - x0) * 0.03;
        (x0 - pad, x1 + pad)
    } else {
        (x0, x1)
    };
    let (y0, y1) = range(y0, y1);
    // One notation per axis: 0.002 above 8.0e-4 reads badly.
    let sci = !(1e-2..1e6).contains(&y0.abs().max(y1.abs()));
    let caption = if weights.iter().any(|w| w.is_some()) {
        format!("{key}   (faint: raw, bold: smoothed)")
    } else {
        key.to_string()
    };
    let mut drawn: Vec<(f64, f64)> = Vec::new();
    // More points than pixels only costs time: a few per pixel column keep the shape.
    let max_points = 4 * area.dim_in_pixel().0 as usize;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 22))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(perr)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(key)
        // Steps are whole: no more labels than there are steps in view.
        .x_labels(((x1 - x0).floor() as usize + 1).clamp(2, 10))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round() as i64)
            } else {
                format!("{x:.1}")
            }
        })
        .y_label_formatter(&|y| format_tick(*y, sci))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .light_line_style(RGBColor(246, 246, 246))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(perr)?;
    // Every run's raw line first, so no run's noise covers another's smoothed line.
    for (i, (points, w)) in series.iter().zip(&weights).enumerate() {
        if w.is_some() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    decimate(points, max_points),
                    color.mix(0.3).stroke_width(1),
                ))
                .map_err(perr)?;
        }
    }
    for (i, ((points, w), (name, _))) in series.iter().zip(&weights).zip(runs).enumerate() {
        if points.is_empty() {
            continue;
        }
        let color = PALETTE[i % PALETTE.len()];
        let line = match w {
            Some(w) => decimate(&ema(points, *w), max_points),
            None => decimate(points, max_points),
        };
        drawn.extend(
            line.iter()
                .map(|&(x, y)| ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0))),
        );
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(perr)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
            });
        if marked(points, w) {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(perr)?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend_corner(&drawn))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FAMILY, 15))
        .draw()
        .map_err(perr)?;
    Ok(())
}

/// At most about `max` points of a long series: each bucket of consecutive points keeps its
/// lowest and highest (in step order), so spikes stay visible.
fn decimate(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 4 {
        return points.to_vec();
    }
    let k = points.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in points.chunks(k) {
        let by = |f: fn(f64, f64) -> bool| {
            (0..chunk.len())
                .reduce(|a, b| if f(chunk[b].1, chunk[a].1) { b } else { a })
                .unwrap()
        };
        let (lo, hi) = (by(|x, y| x < y), by(|x, y| x > y));
        out.push(chunk[lo.min(hi)]);
        if lo != hi {
            out.push(chunk[lo.max(hi)]);
        }
    }
    out
}

/// Tick labels short enough for the axis: `2.5`, `0.125`, or in scientific notation (`1.2e-5`)
/// for axes whose values are all tiny or huge.
fn format_tick(y: f64, sci: bool) -> String {
    if y == 0.0 {
        "0".into()
    } else if sci {
        format!("{y:.1e}")
    } else {
        let s = format!("{y:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// Plot the runs in `dirs` (each labelled by its run name) — what the trainer writes at the end
/// of a run, and what `anvil runs plot` does.
pub fn plot_runs(dirs: &[&Path], opts: &PlotOptions, out: &Path) -> Result<Vec<String>> {
    let mut runs = Vec::new();
    for d in dirs {
        let r = folder::RunFolder::open(d)?;
        let m = r.metrics()?;
        runs.push((r.meta.name.clone(), m));
    }
    plot(&runs, opts, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_is_debiased() {
        let s = ema(&[(0.0, 10.0), (1.0, 10.0), (2.0, 10.0)], 0.9);
        for (_, v) in s {
            assert!((v - 10.0).abs() < 1e-9);
        }
        let s = ema(&[(0.0, 0.0), (1.0, 1.0)], 0.0);
        assert_eq!(s, vec![(0.0, 0.0), (1.0, 1.0)]);
    }

    #[test]
    fn decimation_keeps_extremes_in_order() {
        let pts: Vec<(f64, f64)> = (0..10_000)
            .map(|i| (i as f64, if i == 4321 { 100.0 } else { (i % 7) as f64 }))
            .collect();
        let d = decimate(&pts, 1000);
        assert!(d.len() <= 1002, "{}", d.len());
        assert!(d.contains(&(4321.0, 100.0)));
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(decimate(&pts[..10], 1000).len(), 10);
    }

    #[test]
    fn smoothing_window_scales_with_length() {
        assert_eq!(ema_weight(40, 0.9), None);
        assert_eq!(ema_weight(1000, 0.0), None);
        assert!((ema_weight(500, 0.9).unwrap() - 0.9).abs() < 1e-12);
        // 200k points: a 4000-point window, 2% of the steps.
        assert!((ema_weight(200_000, 0.9).unwrap() - (1.0 - 1.0 / 4000.0)).abs() < 1e-12);
    }

    #[test]
    fn ticks() {
        assert_eq!(format_tick(2.5, false), "2.5");
        assert_eq!(format_tick(0.125, false), "0.125");
        assert_eq!(format_tick(3.0, false), "3");
        assert_eq!(format_tick(0.0008, true), "8.0e-4");
        assert_eq!(format_tick(0.0, true), "0");
    }
}
