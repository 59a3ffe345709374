//! The benchmark chart (SVG, drawn with `plotters`): `ctr run` latency, and memory against the
//! number of running containers, nabla next to runc.

use std::path::Path;

use plotters::prelude::*;

use super::memory::Point;
use crate::stats::Summary;

const NABLA_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RUNC_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Draws the chart into `out`. `latency` is [nabla first byte, nabla exit, runc first byte,
/// runc exit]; `nabla` and `runc` are the memory series.
pub fn draw(
    out: &Path,
    latency: &[Summary; 4],
    nabla: &[Point],
    runc: &[Point],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(out, (1100, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);

    // Latency: grouped bars, medians with min-max whiskers.
    let ymax = latency.iter().map(|s| s.max).fold(0.0, f64::max) * 1.15;
    let mut c = ChartBuilder::on(&left)
        .caption("ctr run --rm latency (ms, median)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..4.0, 0.0..ymax)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ms")
        .draw()?;
    let bars = [
        ("first byte", 0.2, latency[0], NABLA_COLOR),
        ("", 1.0, latency[2], RUNC_COLOR),
        ("exit", 2.2, latency[1], NABLA_COLOR),
        ("", 3.0, latency[3], RUNC_COLOR),
    ];
    for (label, x, s, color) in bars {
        c.draw_series(std::iter::once(Rectangle::new(
            [(x, 0.0), (x + 0.7, s.median)],
            color.filled(),
        )))?;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(x + 0.35, s.min), (x + 0.35, s.max)],
            BLACK.stroke_width(1),
        )))?;
        c.draw_series(std::iter::once(Text::new(
            format!("{:.0}", s.median),
            (x + 0.15, s.median + ymax * 0.03),
            ("sans-serif", 14),
        )))?;
        if !label.is_empty() {
            c.draw_series(std::iter::once(Text::new(
                label.to_string(),
                (x + 0.4, -ymax * 0.06),
                ("sans-serif", 14),
            )))?;
        }
    }
    c.draw_series(std::iter::once(Rectangle::new(
        [(0.0, 0.0), (0.0, 0.0)],
        NABLA_COLOR.filled(),
    )))?
    .label("nabla")
    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], NABLA_COLOR.filled()));
    c.draw_series(std::iter::once(Rectangle::new(
        [(0.0, 0.0), (0.0, 0.0)],
        RUNC_COLOR.filled(),
    )))?
    .label("runc")
    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RUNC_COLOR.filled()));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;

    // Memory: total PSS of shims and what they run, against containers.
    let mib = |kib: u64| kib as f64 / 1024.0;
    let xmax = nabla
        .iter()
        .chain(runc)
        .map(|p| p.containers)
        .max()
        .unwrap_or(1) as f64;
    let ymax = nabla
        .iter()
        .chain(runc)
        .map(|p| mib(p.total_pss))
        .fold(1.0, f64::max)
        * 1.1;
    let mut c = ChartBuilder::on(&right)
        .caption(
            "memory vs running containers (PSS, MiB)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..xmax * 1.05, 0.0..ymax)?;
    c.configure_mesh()
        .x_desc("containers")
        .y_desc("MiB")
        .draw()?;
    for (name, series, color) in [
        ("nabla: shims + tenders", nabla, NABLA_COLOR),
        ("runc: shims + containers", runc, RUNC_COLOR),
    ] {
        let pts: Vec<(f64, f64)> = series
            .iter()
            .map(|p| (p.containers as f64, mib(p.total_pss)))
            .collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2))
            });
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
