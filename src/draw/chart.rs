//! Line charts: auto-ranged axes with "nice" ticks, one coloured polyline per series, a legend
//! outside the plot area (right of it when it is narrow enough, otherwise below).

use image::{Rgb, RgbImage};

use super::font::{draw_text, draw_text_up, fit_text, text_height, text_width};
use super::{draw_line, fill_rect, put_pixel, stroke_rect};

/// One line of a chart: `(x, y)` points drawn in the given order; non-finite points are skipped
/// (the line joins their neighbours).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Series colours, in order: the Okabe-Ito palette, which stays distinguishable with the common
/// colour-vision deficiencies. Yellow is last because it is faint on white. From the ninth
/// series on, colours repeat with a different marker shape.
pub const PALETTE: [Rgb<u8>; 8] = [
    Rgb([0, 114, 178]),   // blue
    Rgb([213, 94, 0]),    // vermillion
    Rgb([0, 158, 115]),   // bluish green
    Rgb([204, 121, 167]), // reddish purple
    Rgb([230, 159, 0]),   // orange
    Rgb([86, 180, 233]),  // sky blue
    Rgb([0, 0, 0]),       // black
    Rgb([240, 228, 66]),  // yellow
];

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
/// Text and axes are dark grey rather than black so they never match the black series colour.
const INK: Rgb<u8> = Rgb([51, 51, 51]);
const GRID: Rgb<u8> = Rgb([228, 228, 228]);
const LEGEND_BORDER: Rgb<u8> = Rgb([190, 190, 190]);

/// An axis-aligned pixel rectangle.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x: i64,
    y: i64,
    w: i64,
    h: i64,
}

/// Draws a line chart `width` x `height` pixels. Axes are auto-ranged over the finite points of
/// all series with 5% padding; with no finite points at all, both axes run from 0 to 1.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    width: u32,
    height: u32,
) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, BACKGROUND);
    // Larger text on larger charts; tick labels at scale 1 are legible down to ~300 px.
    let s: i64 = if width >= 600 && height >= 360 { 2 } else { 1 };
    let su = s as u32;
    let pad = 4 * s;
    let tick_len = 3 * s;
    let text_h = text_height(su) as i64;
    let (w, h) = (width as i64, height as i64);

    // Title, centred on the whole image.
    let title_scale = su + 1;
    let mut top = pad;
    if !title.is_empty() {
        let t = fit_text(title, width.saturating_sub(2 * pad as u32), title_scale);
        let tw = text_width(&t, title_scale) as i64;
        draw_text(
            &mut img,
            ((w - tw) / 2) as i32,
            pad as i32,
            &t,
            INK,
            title_scale,
        );
        top += text_height(title_scale) as i64 + pad;
    }
    top += pad;

    let (x_range, y_range) = data_ranges(series);
    let legend = legend_entries(series);

    // Legend on the right when it takes at most a quarter of the width, otherwise below.
    let swatch = 16 * s;
    let natural_legend_w = legend
        .iter()
        .map(|(_, l)| text_width(l, su) as i64)
        .max()
        .unwrap_or(0)
        + swatch
        + 3 * pad;
    let legend_right = !legend.is_empty() && natural_legend_w <= w / 4;
    let legend_below = !legend.is_empty() && !legend_right;

    // Y ticks first: their label widths decide the left margin.
    let x_title_h = if x_label.is_empty() { 0 } else { text_h + pad };
    let bottom_guess = tick_len + pad + text_h + pad + x_title_h + pad;
    let y_target = ((h - top - bottom_guess) / (text_h * 4)).clamp(2, 10) as usize;
    let y_ticks = nice_ticks(y_range.0, y_range.1, y_target);
    let y_tick_labels = tick_labels(&y_ticks);
    let y_labels_w = y_tick_labels
        .iter()
        .map(|l| text_width(l, su) as i64)
        .max()
        .unwrap_or(0);
    let y_title_w = if y_label.is_empty() { 0 } else { text_h + pad };
    let left = pad + y_title_w + y_labels_w + pad + tick_len;

    let right = if legend_right {
        natural_legend_w + 3 * pad
    } else {
        4 * pad
    };
    let legend_rows = if legend_below {
        flow_legend(&legend, w - 2 * pad, swatch, pad, su)
    } else {
        Vec::new()
    };
    let legend_below_h = if legend_rows.is_empty() {
        0
    } else {
        legend_rows.len() as i64 * (text_h + pad) + pad
    };
    let bottom = tick_len + pad + text_h + pad + x_title_h + legend_below_h + pad;
    let plot = Rect {
        x: left,
        y: top,
        w: w - left - right,
        h: h - top - bottom,
    };
    if plot.w < 4 || plot.h < 4 {
        return img; // too small for axes: a title (if any) on a blank image
    }

    let to_px =
        |x: f64| plot.x as f64 + (x - x_range.0) / (x_range.1 - x_range.0) * (plot.w - 1) as f64;
    let to_py = |y: f64| {
        (plot.y + plot.h - 1) as f64
            - (y - y_range.0) / (y_range.1 - y_range.0) * (plot.h - 1) as f64
    };

    // X ticks: as many as fit with at least four pads of space between neighbouring labels.
    let mut x_ticks = Vec::new();
    let mut x_tick_labels = Vec::new();
    for target in (2..=10).rev() {
        x_ticks = nice_ticks(x_range.0, x_range.1, target);
        x_tick_labels = tick_labels(&x_ticks);
        let widest = x_tick_labels
            .iter()
            .map(|l| text_width(l, su) as i64)
            .max()
            .unwrap_or(0);
        let spacing = match x_ticks[..] {
            [a, b, ..] => to_px(b) - to_px(a),
            _ => f64::INFINITY,
        };
        if spacing >= (widest + 4 * pad) as f64 {
            break;
        }
    }

    // Grid lines and ticks with their labels.
    for (v, label) in x_ticks.iter().zip(&x_tick_labels) {
        let px = to_px(*v).round() as i64;
        fill_rect(&mut img, px, plot.y, 1, plot.h, GRID);
        fill_rect(&mut img, px, plot.y + plot.h, 1, tick_len, INK);
        let lw = text_width(label, su) as i64;
        draw_text(
            &mut img,
            (px - lw / 2) as i32,
            (plot.y + plot.h + tick_len + pad) as i32,
            label,
            INK,
            su,
        );
    }
    for (v, label) in y_ticks.iter().zip(&y_tick_labels) {
        let py = to_py(*v).round() as i64;
        fill_rect(&mut img, plot.x, py, plot.w, 1, GRID);
        fill_rect(&mut img, plot.x - tick_len, py, tick_len, 1, INK);
        let lw = text_width(label, su) as i64;
        let lx = plot.x - tick_len - pad - lw;
        draw_text(
            &mut img,
            lx as i32,
            (py - text_h / 2 + s) as i32,
            label,
            INK,
            su,
        );
    }
    stroke_rect(
        &mut img,
        plot.x - 1,
        plot.y - 1,
        plot.w + 2,
        plot.h + 2,
        INK,
    );

    // Axis titles, centred on the plot area.
    if !x_label.is_empty() {
        let t = fit_text(x_label, plot.w as u32, su);
        let tw = text_width(&t, su) as i64;
        let ty = plot.y + plot.h + tick_len + pad + text_h + pad;
        draw_text(
            &mut img,
            (plot.x + (plot.w - tw) / 2) as i32,
            ty as i32,
            &t,
            INK,
            su,
        );
    }
    if !y_label.is_empty() {
        let t = fit_text(y_label, plot.h as u32, su);
        let th = text_width(&t, su) as i64;
        draw_text_up(
            &mut img,
            pad as i32,
            (plot.y + (plot.h - th) / 2) as i32,
            &t,
            INK,
            su,
        );
    }

    // The series: lines first, then markers on top so every point stays visible.
    for (i, sr) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = sr
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (to_px(x), to_py(y)))
            .collect();
        for pair in pts.windows(2) {
            draw_line(
                &mut img, pair[0].0, pair[0].1, pair[1].0, pair[1].1, colour, su,
            );
        }
        for &(px, py) in &pts {
            draw_marker(&mut img, px, py, 2 * s + 1, marker_shape(i), colour);
        }
    }

    // The legend, outside the plot.
    let entry_h = text_h + pad;
    if legend_right {
        let lx = plot.x + plot.w + 2 * pad;
        let box_h = legend.len() as i64 * entry_h + pad;
        stroke_rect(&mut img, lx, plot.y, natural_legend_w, box_h, LEGEND_BORDER);
        for (row, (i, label)) in legend.iter().enumerate() {
            let ey = plot.y + pad + row as i64 * entry_h;
            draw_legend_entry(&mut img, lx + pad, ey, *i, label, swatch, pad, su);
        }
    } else if legend_below {
        let ly = h - pad - legend_below_h + pad;
        for (row, entries) in legend_rows.iter().enumerate() {
            let ey = ly + row as i64 * entry_h;
            for &(x_off, k) in entries {
                let (i, label) = &legend[k];
                draw_legend_entry(&mut img, pad + x_off, ey, *i, label, swatch, pad, su);
            }
        }
    }
    img
}

/// Evenly spaced round tick values (1, 2 or 5 times a power of ten apart) inside `[lo, hi]`, at
/// most `max_count` of them (at least one step's worth). Empty when the range is not finite;
/// just `lo` when `lo == hi`.
pub fn nice_ticks(lo: f64, hi: f64, max_count: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi < lo {
        return Vec::new();
    }
    let span = hi - lo;
    let max_count = max_count.max(2);
    if span == 0.0 || !span.is_finite() {
        return vec![lo];
    }
    let raw = span / max_count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| span / step <= max_count as f64)
        .unwrap_or(10.0 * magnitude);
    if !(step > 0.0 && step.is_finite()) {
        return vec![lo];
    }
    let first = (lo / step - 1e-9).ceil();
    let mut ticks = Vec::new();
    for k in 0..=max_count + 1 {
        let v = (first + k as f64) * step;
        if v > hi + step * 1e-9 {
            break;
        }
        // Snap values within rounding error of zero, so the label reads "0", not "-0.0".
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
    }
    ticks
}

/// Labels for evenly spaced ticks, all with the same number of decimals; scientific notation for
/// very large or very small values.
fn tick_labels(ticks: &[f64]) -> Vec<String> {
    let step = if ticks.len() >= 2 {
        ticks[1] - ticks[0]
    } else {
        ticks.first().map_or(1.0, |v| v.abs())
    };
    let biggest = ticks.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let scientific = biggest >= 1e7 || (step > 0.0 && step < 1e-4);
    ticks
        .iter()
        .map(|&v| {
            if v == 0.0 {
                "0".to_string()
            } else if scientific {
                // Enough significant digits to tell neighbouring ticks apart.
                let digits = if step > 0.0 {
                    (v.abs().log10().floor() - step.log10().floor()).clamp(0.0, 6.0)
                } else {
                    2.0
                };
                format!("{:.*e}", digits as usize, v)
            } else {
                let decimals = if step > 0.0 {
                    (-(step.log10() + 1e-9).floor()).clamp(0.0, 6.0)
                } else {
                    0.0
                };
                format!("{:.*}", decimals as usize, v)
            }
        })
        .collect()
}

/// The x and y ranges to plot: the finite data with 5% padding (a little more around a single
/// value), or 0..1 with no finite data.
fn data_ranges(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let range = |values: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            return (0.0, 1.0);
        }
        let span = hi - lo;
        let padding = if span > 0.0 && span.is_finite() {
            0.05 * span
        } else if lo != 0.0 {
            0.1 * lo.abs()
        } else {
            1.0
        };
        let (a, b) = (lo - padding, hi + padding);
        if a < b && (b - a).is_finite() {
            (a, b)
        } else if a < b {
            (lo, hi) // near f64::MAX the padded span overflows; do without the padding
        } else {
            (lo - 1.0, hi + 1.0) // a subnormal value whose 10% rounds to nothing
        }
    };
    (
        range(&mut finite().map(|p| p.0)),
        range(&mut finite().map(|p| p.1)),
    )
}

/// The series shown in the legend, as (series index, label): those with a non-empty label.
fn legend_entries(series: &[Series]) -> Vec<(usize, String)> {
    series
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.label.is_empty())
        .map(|(i, s)| (i, s.label.clone()))
        .collect()
}

/// Lays legend entries out left to right in rows no wider than `avail`: for each row, the entries'
/// (x offset, index into `entries`). Labels wider than a row are cut when drawn.
fn flow_legend(
    entries: &[(usize, String)],
    avail: i64,
    swatch: i64,
    pad: i64,
    scale: u32,
) -> Vec<Vec<(i64, usize)>> {
    let mut rows: Vec<Vec<(i64, usize)>> = Vec::new();
    let mut x = 0;
    for (k, (_, label)) in entries.iter().enumerate() {
        let entry_w = swatch + pad + text_width(label, scale) as i64 + 3 * pad;
        if rows.is_empty() || (x > 0 && x + entry_w > avail) {
            rows.push(Vec::new());
            x = 0;
        }
        if let Some(row) = rows.last_mut() {
            row.push((x, k));
        }
        x += entry_w;
    }
    rows
}

/// One legend entry: a short stretch of the series' line with its marker, then the label.
#[allow(clippy::too_many_arguments)]
fn draw_legend_entry(
    img: &mut RgbImage,
    x: i64,
    y: i64,
    i: usize,
    label: &str,
    swatch: i64,
    pad: i64,
    scale: u32,
) {
    let colour = PALETTE[i % PALETTE.len()];
    let mid = (y + text_height(scale) as i64 / 2 - 1) as f64;
    draw_line(img, x as f64, mid, (x + swatch) as f64, mid, colour, scale);
    draw_marker(
        img,
        (x + swatch / 2) as f64,
        mid,
        2 * scale as i64 + 1,
        marker_shape(i),
        colour,
    );
    let room = (img.width() as i64 - (x + swatch + pad) - pad).max(0) as u32;
    let label = fit_text(label, room, scale);
    draw_text(img, (x + swatch + pad) as i32, y as i32, &label, INK, scale);
}

#[derive(Debug, Clone, Copy)]
enum Marker {
    Circle,
    Square,
    Diamond,
    Triangle,
}

/// Marker shape of series `i`: the first eight series differ by colour already; after that the
/// shape changes with each round through the palette, so series `i` and `i + 8` still differ.
fn marker_shape(i: usize) -> Marker {
    match (i + i / PALETTE.len()) % 4 {
        0 => Marker::Circle,
        1 => Marker::Square,
        2 => Marker::Diamond,
        _ => Marker::Triangle,
    }
}

/// A filled marker of radius `r` centred on (`cx`, `cy`); nothing for non-finite centres.
fn draw_marker(img: &mut RgbImage, cx: f64, cy: f64, r: i64, shape: Marker, colour: Rgb<u8>) {
    // Far outside the image (or not finite): nothing to draw, and no overflow converting.
    let limit = (img.width().max(img.height()) as f64) + r as f64 + 1.0;
    if !(cx.abs() <= limit * 2.0 && cy.abs() <= limit * 2.0) {
        return;
    }
    let (cx, cy) = (cx.round() as i64, cy.round() as i64);
    for dy in -r..=r {
        for dx in -r..=r {
            let inside = match shape {
                Marker::Circle => dx * dx + dy * dy <= r * r + r / 2,
                Marker::Square => dx.abs() < r && dy.abs() < r,
                Marker::Diamond => dx.abs() + dy.abs() <= r,
                // Point up; the half-width grows by half a pixel per row going down.
                Marker::Triangle => dy > -r && 2 * dx.abs() <= dy + r,
            };
            if inside {
                put_pixel(img, cx + dx, cy + dy, colour);
            }
        }
    }
}
