//! `progress.svg`: public-val bpb per trial, every scored trial a dot, the kept
//! ones joined by the line of the best so far (autoresearch's chart).

use super::record::{State, Status};
use anyhow::{anyhow, Result};
use plotters::prelude::*;

pub fn svg(state: &State) -> Result<String> {
    let scored: Vec<(f64, f64, bool)> =
        state.trials.iter().filter_map(|t| Some((t.number as f64, t.bpb()?, t.status == Status::Keep))).collect();
    let king = super::record::mean(&state.king_runs);
    // The best-so-far line: the king at 0, then a step at each kept trial.
    let mut best = vec![(0.0, king)];
    for &(x, y, kept) in &scored {
        if kept {
            best.push((x, best.last().map_or(king, |b| b.1)));
            best.push((x, y));
        }
    }
    let x_max = state.trials.last().map_or(1.0, |t| t.number as f64).max(1.0) + 0.5;
    best.push((x_max, best.last().map_or(king, |b| b.1)));
    let ys = || scored.iter().map(|p| p.1).chain(best.iter().map(|p| p.1)).filter(|y| y.is_finite());
    let (lo, hi) = ys().fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("drawing the progress chart: {e:?}");
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let title = format!("karpa mine: {} on {} ({} trials)", state.config, state.king, state.trials.len());
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, (lo - pad)..(hi + pad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("trial")
            .y_desc("public val bpb")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        let grey = RGBColor(160, 160, 160);
        let kept = RGBColor(44, 160, 44);
        chart.draw_series(LineSeries::new(best, kept.stroke_width(2))).map_err(err)?;
        chart
            .draw_series(scored.iter().map(|&(x, y, k)| Circle::new((x, y), 4, if k { kept } else { grey }.filled())))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}
