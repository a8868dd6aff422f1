//! The lineage chart: each king's hidden-eval bits per byte, in crowning order,
//! with ±σ where its runs give one, and a ring round those published as a model.
//! Drawn by plotters as SVG from numbers and release tags only.

use crate::corpus::query::King;
use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;

/// The value a king is drawn at: its mean over runs, else its single run.
fn value(k: &King) -> Option<f64> {
    k.mean_bpb.or(k.hidden_bpb).filter(|v| v.is_finite())
}

pub fn lineage(kings: &[&King]) -> Result<String> {
    let points: Vec<(usize, f64, f64, &str)> = kings
        .iter()
        .enumerate()
        .filter_map(|(i, k)| Some((i, value(k)?, k.sigma.filter(|s| s.is_finite()).unwrap_or(0.0), k.tag.as_str())))
        .collect();
    if points.is_empty() {
        bail!("no king has a measured value yet");
    }
    let lo = points.iter().map(|p| p.1 - p.2).fold(f64::MAX, f64::min);
    let hi = points.iter().map(|p| p.1 + p.2).fold(f64::MIN, f64::max);
    let pad = ((hi - lo) * 0.15).max(0.01);
    let n = kings.len();
    let tags: Vec<String> = kings.iter().map(|k| k.tag.trim_start_matches("recipe-").to_string()).collect();
    let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("drawing the lineage chart: {e:?}");
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (560, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo - pad)..(hi + pad))
            .map_err(err)?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                tags.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(n.max(2))
            .x_label_formatter(&label)
            .y_desc("hidden val bpb (lower is better)")
            .label_style(("sans-serif", 13))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(err)?;
        let blue = RGBColor(31, 119, 180);
        chart
            .draw_series(LineSeries::new(points.iter().map(|p| (p.0 as f64, p.1)), blue.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.2 > 0.0)
                    .map(|p| ErrorBar::new_vertical(p.0 as f64, p.1 - p.2, p.1, p.1 + p.2, blue.stroke_width(1), 8)),
            )
            .map_err(err)?;
        chart.draw_series(points.iter().map(|p| Circle::new((p.0 as f64, p.1), 5, blue.filled()))).map_err(err)?;
        let orange = RGBColor(230, 126, 34);
        let modelled = points.iter().filter(|p| kings[p.0].has_model);
        chart
            .draw_series(modelled.map(|p| Circle::new((p.0 as f64, p.1), 9, orange.stroke_width(2))))
            .map_err(err)?
            .label("published as a model")
            .legend(move |(x, y)| Circle::new((x, y), 5, orange.stroke_width(2)));
        if kings.iter().any(|k| k.has_model) {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 12))
                .border_style(RGBColor(238, 238, 238))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(out)
}
