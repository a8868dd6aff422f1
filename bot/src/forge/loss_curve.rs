//! The loss-curve image a check run shows where a public URL is configured: the
//! challenger's training loss against tokens seen, with its public-val points,
//! drawn from the bundle's log as SVG. Only numbers from the log reach the
//! image; no miner text does.

use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use proof::log::{parse_log, LogLine};

/// At most this many training points are kept (karpa-1 logs ~10k steps).
pub const MAX_POINTS: usize = 1500;

/// One run's curves: training loss and public-val loss against tokens seen (millions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    pub label: String,
    pub train: Vec<(f64, f64)>,
    pub val: Vec<(f64, f64)>,
}

/// The log's curves, thinned to at most `max_points` training points (the last kept).
pub fn points(log: &str, max_points: usize) -> Result<Curve> {
    let lines = parse_log(log).map_err(|e| anyhow!("the log does not parse at line {}: {}", e.line, e.message))?;
    let mut curve = Curve::default();
    for l in &lines {
        match l {
            LogLine::Step(s) if s.loss.is_finite() => curve.train.push((s.tokens_seen as f64 / 1e6, s.loss)),
            LogLine::Val(v) if v.val_loss.is_finite() => curve.val.push((v.tokens_seen as f64 / 1e6, v.val_loss)),
            _ => {}
        }
    }
    let every = curve.train.len().div_ceil(max_points.max(2)).max(1);
    let last = curve.train.last().copied();
    curve.train = curve.train.into_iter().step_by(every).collect();
    if let Some(last) = last.filter(|l| curve.train.last() != Some(l)) {
        curve.train.push(last);
    }
    Ok(curve)
}

/// Several runs on one chart (the corpus draws a challenger against its king).
/// Only numbers and the given labels reach the image.
pub fn draw(curves: &[Curve], title: &str, size: (u32, u32)) -> Result<String> {
    if curves.iter().all(|c| c.train.is_empty()) {
        bail!("the log has no training steps to draw");
    }
    let all = || curves.iter().flat_map(|c| c.train.iter().chain(&c.val));
    let x_max = all().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let (lo, hi) = all().map(|p| p.1).fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("drawing the loss curve: {e:?}");
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x_max, (lo - pad)..(hi + pad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("tokens seen (millions)")
            .y_desc("loss (nats per token)")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        // The first curve in colour (the challenger), the others in greys behind it.
        for (i, c) in curves.iter().enumerate().rev() {
            let (line, dot) = match i {
                0 => (RGBColor(31, 119, 180), RGBColor(230, 97, 1)),
                _ => (RGBColor(150, 150, 150), RGBColor(90, 90, 90)),
            };
            let name = |what: &str| if c.label.is_empty() { what.to_string() } else { format!("{} {what}", c.label) };
            chart
                .draw_series(LineSeries::new(c.train.iter().copied(), line.stroke_width(if i == 0 { 2 } else { 1 })))
                .map_err(err)?
                .label(name("train loss"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], line));
            if !c.val.is_empty() {
                chart
                    .draw_series(c.val.iter().map(|p| Circle::new(*p, 4, dot.filled())))
                    .map_err(err)?
                    .label(name("public val loss"))
                    .legend(move |(x, y)| Circle::new((x + 9, y), 4, dot.filled()));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_becomes_an_svg_and_a_bad_one_an_error() {
        let mut log = String::from(
            r#"{"kind":"start","format":"karpa-log/v1","config":"micro","seed":1,"device":"cpu","threads":2,"params":10,"token_budget":300,"seq_len":10,"batch_rows":1,"data_manifest":"0000000000000000000000000000000000000000000000000000000000000000","harness_version":"0.1.0"}"#,
        );
        log.push('\n');
        for step in 1..=30u64 {
            let loss = 5.0 - step as f64 * 0.1;
            log.push_str(&format!(
                r#"{{"kind":"step","step":{step},"tokens_seen":{},"loss":{loss},"lr":0.001,"grad_norm":1.0,"elapsed_s":{step}.0,"tokens_per_s":10.0}}"#,
                step * 10
            ));
            log.push('\n');
        }
        match super::points(&log, super::MAX_POINTS).and_then(|c| super::draw(&[c], "challenger", (760, 420))) {
            Ok(svg) => {
                assert!(svg.starts_with("<svg") && svg.contains("train loss") && svg.contains("<polyline"), "{svg}");
            }
            // The hand-written log must match the schema; say which line did not.
            Err(e) => panic!("{e:#}"),
        }
        assert!(super::points("not json\n", super::MAX_POINTS).is_err());
        assert!(super::draw(&[super::Curve::default()], "x", (760, 420)).is_err(), "nothing to draw");
    }
}
