//! The loss-curve image a check run shows where a public URL is configured: the
//! challenger's training loss against tokens seen, with its public-val points,
//! drawn from the bundle's log as SVG. Only numbers from the log reach the
//! image; no miner text does.

use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;
use proof::log::{parse_log, LogLine};

/// At most this many training points are drawn (karpa-1 logs ~10k steps).
const MAX_POINTS: usize = 1500;

pub fn svg(log: &str, title: &str) -> Result<String> {
    let lines = parse_log(log).map_err(|e| anyhow!("the log does not parse at line {}: {}", e.line, e.message))?;
    let mut train = Vec::new();
    let mut val = Vec::new();
    for l in &lines {
        match l {
            LogLine::Step(s) if s.loss.is_finite() => train.push((s.tokens_seen as f64 / 1e6, s.loss)),
            LogLine::Val(v) if v.val_loss.is_finite() => val.push((v.tokens_seen as f64 / 1e6, v.val_loss)),
            _ => {}
        }
    }
    if train.is_empty() {
        bail!("the log has no training steps to draw");
    }
    let every = train.len().div_ceil(MAX_POINTS);
    let train: Vec<(f64, f64)> = train.into_iter().step_by(every).collect();
    let all = train.iter().chain(&val);
    let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let (lo, hi) = all.map(|p| p.1).fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("drawing the loss curve: {e:?}");
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 420)).into_drawing_area();
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
        let blue = RGBColor(31, 119, 180);
        let orange = RGBColor(230, 97, 1);
        chart
            .draw_series(LineSeries::new(train, blue.stroke_width(1)))
            .map_err(err)?
            .label("train loss")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue));
        chart
            .draw_series(val.iter().map(|p| Circle::new(*p, 4, orange.filled())))
            .map_err(err)?
            .label("public val loss")
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, orange.filled()));
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
        match super::svg(&log, "challenger") {
            Ok(svg) => {
                assert!(svg.starts_with("<svg") && svg.contains("train loss") && svg.contains("<polyline"), "{svg}");
            }
            // The hand-written log must match the schema; say which line did not.
            Err(e) => panic!("{e:#}"),
        }
        assert!(super::svg("not json\n", "x").is_err());
    }
}
