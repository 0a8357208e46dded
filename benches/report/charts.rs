//! The SVG charts of docs/BENCHMARKS.md, drawn with `plotters` (SVG backend only: text is
//! written as `<text>` for the viewer to lay out, so no font library is involved).
//!
//! - [`OPERATIONS`]: per-operation bars, ratchetbox vs vodozemac vs the floor, on a log time
//!   axis, from the base run (the first file).
//! - [`THROUGHPUT`]: MiB/s by message size, encrypt and decrypt side by side, ratchetbox and
//!   the floor of every run (with and without `fast-aes`) and vodozemac of the base run.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::table::latency;
use super::{Column, Direction, Row, Run, Unit, message_op, size_name};

/// The per-operation chart's file name.
pub const OPERATIONS: &str = "benchmarks-operations.svg";
/// The throughput chart's file name.
pub const THROUGHPUT: &str = "benchmarks-throughput.svg";

const FONT: &str = "sans-serif";
const WIDTH: u32 = 1200;

const RATCHETBOX: RGBColor = RGBColor(31, 119, 180);
const VODOZEMAC: RGBColor = RGBColor(255, 127, 14);
const FLOOR: RGBColor = RGBColor(127, 127, 127);
/// ratchetbox's colour and its floor's (a lighter tint) in the second, third, .. run of
/// the throughput chart.
const OTHER_RUNS: [(RGBColor, RGBColor); 3] = [
    (RGBColor(44, 160, 44), RGBColor(152, 223, 138)),
    (RGBColor(148, 103, 189), RGBColor(197, 176, 213)),
    (RGBColor(214, 39, 40), RGBColor(255, 152, 150)),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn fail(e: impl std::fmt::Display) -> String {
    format!("drawing a chart: {e}")
}

/// Writes every chart the runs have data for into `dir`; returns the files written.
pub fn write_all(runs: &[Run], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let Some(base) = runs.first() else {
        return Ok(written);
    };
    let rows = operation_rows(base);
    if !rows.is_empty() {
        let path = dir.join(OPERATIONS);
        operations(base, &rows, &path)?;
        written.push(path);
    }
    if !lines(runs, Direction::Encrypt).is_empty() || !lines(runs, Direction::Decrypt).is_empty() {
        let path = dir.join(THROUGHPUT);
        throughput(runs, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// The rows of the per-operation chart: timed per operation, outside the `floor` group
/// (primitives alone) and the `growth` group (flat by design: the table shows it), with
/// ratchetbox and at least one of the other two columns.
pub fn operation_rows(run: &Run) -> Vec<&Row> {
    run.rows
        .iter()
        .filter(|r| matches!(r.unit, Unit::Latency { .. }))
        .filter(|r| r.group != "floor" && r.group != "growth")
        .filter(|r| {
            let timed = |ns: Option<f64>| ns.is_some_and(|ns| ns > 0.0);
            timed(r.ratchetbox_ns) && (timed(r.vodozemac_ns) || timed(r.floor_ns))
        })
        .collect()
}

/// A row's label on the chart: its group and operation without the parenthesized notes.
pub fn short_label(row: &Row) -> String {
    let mut label = String::new();
    let mut depth = 0usize;
    for c in row.op.trim().chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => label.push(c),
            _ => {}
        }
    }
    let label = label.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{}: {}", row.group, label.trim_end_matches([',', ' ']))
}

/// Powers of ten from the one at or below `low` to the one at or above `high`.
fn decades(low: f64, high: f64) -> Vec<f64> {
    let first = low.log10().floor() as i32;
    let last = high.log10().ceil() as i32;
    (first..=last).map(|e| 10f64.powi(e)).collect()
}

/// A power of ten as an axis label: `0.1`, `1`, `1000`.
fn decade_label(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let digits = (-v.log10()).round() as usize;
        format!("{v:.digits$}")
    }
}

/// The height of the band above a chart: a title, `lines` lines of text and the legend's
/// rows.
fn header_height(lines: usize, legend: &[(String, RGBColor, bool)]) -> u32 {
    40 + 18 * lines as u32 + 30 * legend_positions(legend).last().map_or(1, |p| p.1 + 1)
}

/// Each legend entry's x and row: entries go left to right and wrap before the right edge.
fn legend_positions(legend: &[(String, RGBColor, bool)]) -> Vec<(i32, u32)> {
    let mut positions = Vec::with_capacity(legend.len());
    let (mut x, mut row) = (16i32, 0u32);
    for (label, _, _) in legend {
        let width = 20 + 13 * label.chars().count() as i32 / 2 + 24;
        if x > 16 && x + width > WIDTH as i32 - 16 {
            x = 16;
            row += 1;
        }
        positions.push((x, row));
        x += width;
    }
    positions
}

/// The title, lines of text and a one-line legend (label, colour, dashed) above a chart.
fn header(
    area: &Area,
    title: &str,
    lines: &[String],
    legend: &[(String, RGBColor, bool)],
) -> Result<(), String> {
    let title_style = TextStyle::from((FONT, 22).into_font()).color(&BLACK);
    let small = TextStyle::from((FONT, 13).into_font()).color(&BLACK);
    area.draw(&Text::new(title.to_string(), (16, 10), title_style))
        .map_err(fail)?;
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(
            line.clone(),
            (16, 40 + 18 * i as i32),
            small.clone(),
        ))
        .map_err(fail)?;
    }
    let top = 40 + 18 * lines.len() as i32 + 12;
    for ((label, color, dashed), (x, row)) in legend.iter().zip(legend_positions(legend)) {
        let y = top + 30 * row as i32;
        if *dashed {
            for i in 0..3 {
                area.draw(&Rectangle::new(
                    [(x + i * 6, y - 1), (x + i * 6 + 4, y + 2)],
                    color.filled(),
                ))
                .map_err(fail)?;
            }
        } else {
            area.draw(&Rectangle::new(
                [(x, y - 6), (x + 14, y + 6)],
                color.filled(),
            ))
            .map_err(fail)?;
        }
        area.draw(&Text::new(
            label.clone(),
            (x + 20, y),
            small.pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(fail)?;
    }
    Ok(())
}

fn run_line(run: &Run) -> String {
    let load = run
        .start
        .load_average
        .map_or("unknown".into(), |[one, _, _]| format!("{one:.2}"));
    format!(
        "{} build: run at {}, load average {load}, medians of {} rounds; commit {}",
        run.label(),
        run.start.utc,
        run.rounds,
        run.commit.as_deref().unwrap_or("unknown")
    )
}

/// The per-operation bar chart.
fn operations(run: &Run, rows: &[&Row], path: &Path) -> Result<(), String> {
    let n = rows.len();
    let text = [
        "Time per operation (shorter is faster; log scale). Floor: the primitives alone, doing the same cryptographic work."
            .to_string(),
        run_line(run),
    ];
    let legend = [
        (Column::Ratchetbox.name().into(), RATCHETBOX, false),
        (Column::Vodozemac.name().into(), VODOZEMAC, false),
        ("floor (primitives alone)".into(), FLOOR, false),
    ];
    let band = header_height(text.len(), &legend);
    let root = SVGBackend::new(path, (WIDTH, band + 90 + 48 * n as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let (top, body) = root.split_vertically(band);
    header(
        &top,
        "ratchetbox vs vodozemac vs the floor, per operation",
        &text,
        &legend,
    )?;

    let values: Vec<f64> = rows
        .iter()
        .flat_map(|r| Column::ALL.map(|c| r.op_ns(c)))
        .flatten()
        .filter(|ns| *ns > 0.0)
        .map(|ns| ns / 1e3)
        .collect();
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    let ticks = decades(low, high * 4.0);
    let x_low = ticks[0];
    let x_high = ticks[ticks.len() - 1];
    // Rows from the top: row i spans [(n - i - 1) * UNIT, (n - i) * UNIT), three bars of
    // BAR units each with a gap around them (integer units: plotters formats integer axes).
    const UNIT: i32 = 30;
    const BAR: i32 = 8;
    let rows_n = n as i32;
    let centres: Vec<i32> = (0..rows_n)
        .map(|i| (rows_n - i) * UNIT - UNIT / 2)
        .collect();
    let labels: Vec<String> = rows.iter().map(|r| short_label(r)).collect();

    let mut chart = ChartBuilder::on(&body)
        .margin_right(30)
        .margin_top(10)
        .x_label_area_size(50)
        .y_label_area_size(480)
        .build_cartesian_2d(
            (x_low..x_high).log_scale().with_key_points(ticks.clone()),
            (0..rows_n * UNIT).with_key_points(centres),
        )
        .map_err(fail)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("time per operation (µs, log scale)")
        .x_label_formatter(&|v| decade_label(*v))
        .y_label_formatter(&|v| {
            let i = rows_n - 1 - v.div_euclid(UNIT);
            usize::try_from(i)
                .ok()
                .and_then(|i| labels.get(i).cloned())
                .unwrap_or_default()
        })
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(fail)?;

    let value_style = TextStyle::from((FONT, 11).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (c, column) in Column::ALL.into_iter().enumerate() {
        let color = match column {
            Column::Ratchetbox => RATCHETBOX,
            Column::Vodozemac => VODOZEMAC,
            Column::Floor => FLOOR,
        };
        for (i, row) in rows.iter().enumerate() {
            let Some(ns) = row.op_ns(column).filter(|ns| *ns > 0.0) else {
                continue;
            };
            let top = (rows_n - i as i32) * UNIT - 3 - c as i32 * BAR;
            let bottom = top - BAR;
            let us = ns / 1e3;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x_low, bottom), (us, top)],
                    color.filled(),
                )))
                .map_err(fail)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    latency(ns),
                    (us * 1.06, top - BAR / 2),
                    value_style.clone(),
                )))
                .map_err(fail)?;
        }
    }
    root.present().map_err(fail)
}

/// A run's rows that encrypt or decrypt one message of a stated size, by size.
pub fn message_rows(run: &Run, direction: Direction) -> Vec<(u64, &Row)> {
    let mut rows: Vec<(u64, &Row)> = run
        .rows
        .iter()
        .filter_map(|r| match message_op(&r.op) {
            Some((d, bytes)) if d == direction => Some((bytes, r)),
            _ => None,
        })
        .collect();
    rows.sort_by_key(|(bytes, _)| *bytes);
    rows.dedup_by_key(|(bytes, _)| *bytes);
    rows
}

/// One line of the throughput chart: (bytes, MiB/s) points.
struct Line {
    label: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn lines(runs: &[Run], direction: Direction) -> Vec<Line> {
    let points = |run: &Run, column: Column| -> Vec<(f64, f64)> {
        message_rows(run, direction)
            .into_iter()
            .filter_map(|(bytes, r)| Some((bytes as f64, r.mib_per_s(column)?)))
            .filter(|(_, rate)| rate.is_finite() && *rate > 0.0)
            .collect()
    };
    let mut lines = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let (color, floor) = if i == 0 {
            (RATCHETBOX, FLOOR)
        } else {
            OTHER_RUNS[(i - 1) % OTHER_RUNS.len()]
        };
        lines.push(Line {
            label: format!("ratchetbox, {} build", run.label()),
            color,
            dashed: false,
            points: points(run, Column::Ratchetbox),
        });
        lines.push(Line {
            label: format!("floor, {} build", run.label()),
            color: floor,
            dashed: true,
            points: points(run, Column::Floor),
        });
    }
    if let Some(base) = runs.first() {
        lines.push(Line {
            label: "vodozemac".into(),
            color: VODOZEMAC,
            dashed: false,
            points: points(base, Column::Vodozemac),
        });
    }
    lines.retain(|l| !l.points.is_empty());
    lines
}

/// The throughput chart: encrypt and decrypt panels side by side.
fn throughput(runs: &[Run], path: &Path) -> Result<(), String> {
    let encrypt = lines(runs, Direction::Encrypt);
    let decrypt = lines(runs, Direction::Decrypt);
    let legend: Vec<(String, RGBColor, bool)> = encrypt
        .iter()
        .map(|l| (l.label.clone(), l.color, l.dashed))
        .collect();
    let mut text = vec![
        "One message per call, MiB/s. Dashed: the floor of the same run, AES-256-GCM alone over the same bytes."
            .to_string(),
    ];
    text.extend(runs.iter().map(run_line));
    let band = header_height(text.len(), &legend);
    let root = SVGBackend::new(path, (WIDTH, band + 520)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let (top, body) = root.split_vertically(band);
    header(
        &top,
        "Throughput by message size (higher is faster)",
        &text,
        &legend,
    )?;

    let all: Vec<(f64, f64)> = encrypt
        .iter()
        .chain(&decrypt)
        .flat_map(|l| l.points.iter().copied())
        .collect();
    let sizes = {
        let mut s: Vec<f64> = all.iter().map(|p| p.0).collect();
        s.sort_by(f64::total_cmp);
        s.dedup();
        s
    };
    let rates = all.iter().map(|p| p.1);
    let low = rates.clone().fold(f64::INFINITY, f64::min);
    let high = rates.fold(0.0, f64::max);
    let y_ticks = decades(low, high);
    let y_range = y_ticks[0]..y_ticks[y_ticks.len() - 1];
    let x_range = sizes[0] / 1.6..sizes[sizes.len() - 1] * 1.6;

    let panels = body.split_evenly((1, 2));
    for (panel, (name, lines)) in panels
        .iter()
        .zip([("encrypt", &encrypt), ("decrypt", &decrypt)])
    {
        let mut chart = ChartBuilder::on(panel)
            .caption(name, (FONT, 18))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(
                x_range.clone().log_scale().with_key_points(sizes.clone()),
                y_range.clone().log_scale().with_key_points(y_ticks.clone()),
            )
            .map_err(fail)?;
        chart
            .configure_mesh()
            .x_desc("message size (log scale)")
            .y_desc("MiB/s (log scale)")
            .x_label_formatter(&|v| size_name(v.round() as u64))
            .y_label_formatter(&|v| decade_label(*v))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(fail)?;
        for line in lines.iter() {
            let style = line.color.stroke_width(2);
            if line.dashed {
                chart
                    .draw_series(DashedLineSeries::new(
                        line.points.iter().copied(),
                        6,
                        4,
                        style,
                    ))
                    .map_err(fail)?;
            } else {
                chart
                    .draw_series(LineSeries::new(line.points.iter().copied(), style))
                    .map_err(fail)?;
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|&p| Circle::new(p, 4, line.color.filled())),
                    )
                    .map_err(fail)?;
            }
        }
    }
    root.present().map_err(fail)
}
