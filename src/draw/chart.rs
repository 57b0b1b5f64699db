//! Line charts drawn by plotters on its bitmap backend: auto-ranged axes with "nice" ticks, one
//! coloured polyline per series, a legend outside the plot area (right of it when it is narrow
//! enough, otherwise below).

use std::ops::Range;

use ab_glyph::{point, Font, ScaleFont};
use image::{Rgb, RgbImage};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};

use super::{fit_text, font, text_width};

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

/// Text and axes are dark grey rather than black so they never match the black series colour.
const INK: RGBColor = RGBColor(51, 51, 51);
const GRID: RGBColor = RGBColor(228, 228, 228);
const LEGEND_BORDER: RGBColor = RGBColor(190, 190, 190);

/// Series are drawn this many pixels wide: plotters fills lines wider than one pixel as solid
/// polygons, so each series keeps exactly its palette colour (one-pixel lines are anti-aliased).
const LINE_WIDTH: u32 = 2;

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
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    if width > 0 && height > 0 {
        let root =
            Canvas(BitMapBackend::with_buffer(&mut buf, (width, height))).into_drawing_area();
        // Drawing into memory does not fail; should plotters still report an error, the chart is
        // left as far as it got.
        let _ = draw_chart(&root, title, x_label, y_label, series);
        let _ = root.present();
    }
    RgbImage::from_raw(width, height, buf).expect("one RGB triple per pixel")
}

type Area<'a> = DrawingArea<Canvas<'a>, Shift>;
type BitmapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;
type DrawResult = Result<(), DrawingAreaErrorKind<BitmapError>>;
type BackendResult = Result<(), DrawingErrorKind<BitmapError>>;

/// plotters' bitmap backend, with text set in the embedded font by ab_glyph. (plotters' own
/// `ab_glyph` feature drops each glyph's side bearing and cuts the pen to whole pixels, which
/// spaces letters unevenly: "tome" reads "tom e".) The font family in a text style is ignored.
struct Canvas<'a>(BitMapBackend<'a>);

impl DrawingBackend for Canvas<'_> {
    type ErrorType = BitmapError;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> BackendResult {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> BackendResult {
        self.0.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, colour: BackendColor) -> BackendResult {
        self.0.draw_pixel(point, colour)
    }

    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> BackendResult {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> BackendResult {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> BackendResult {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> BackendResult {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> BackendResult {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> BackendResult {
        self.0.blit_bitmap(pos, size, src)
    }

    /// The text's line box: its advance width by its size (ascent to descent).
    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let size = style.size() as f32;
        Ok((text_width(text, size).ceil() as u32, size.ceil() as u32))
    }

    /// Sets `text` with its line box placed on `pos` as the style's anchor says, then turned by
    /// the style's transform about `pos`. Pixels off the image are dropped by `draw_pixel`.
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> BackendResult {
        let colour = style.color();
        let size = style.size() as f32;
        if colour.alpha == 0.0 || size.is_nan() || size <= 0.0 {
            return Ok(());
        }
        let font = font().as_scaled(size);
        let width = text_width(text, size);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0.0,
            VPos::Center => -size / 2.0,
            VPos::Bottom => -size,
        };
        let turn = style.transform();
        let mut caret = point(dx, dy + font.ascent());
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                caret.x += font.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(size, caret);
            caret.x += font.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue; // a space
            };
            let corner = outline.px_bounds().min;
            let mut result = Ok(());
            outline.draw(|x, y, coverage| {
                let (tx, ty) =
                    turn.transform(corner.x as i32 + x as i32, corner.y as i32 + y as i32);
                if result.is_ok() {
                    result = self
                        .0
                        .draw_pixel((pos.0 + tx, pos.1 + ty), colour.mix(coverage as f64));
                }
            });
            result?;
        }
        Ok(())
    }
}

/// Sizes that grow with the chart: text height in pixels, spacing, tick length.
struct Metrics {
    text: f64,
    title: f64,
    pad: i32,
    tick: i32,
}

fn draw_chart(
    root: &Area<'_>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> DrawResult {
    let (w_px, h_px) = root.dim_in_pixel();
    let (w, h) = (w_px as i32, h_px as i32);
    let m = if w >= 600 && h >= 360 {
        Metrics {
            text: 16.0,
            title: 21.0,
            pad: 8,
            tick: 5,
        }
    } else {
        Metrics {
            text: 11.0,
            title: 14.0,
            pad: 4,
            tick: 3,
        }
    };
    let line_h = m.text.ceil() as i32;
    let pad = m.pad;
    let text_style = |size: f64| TextStyle::from(("sans-serif", size).into_font()).color(&INK);
    let label_style = text_style(m.text);

    // Title, centred on the whole image and cut to its width.
    let mut top = pad;
    if !title.is_empty() {
        let t = fit_text(title, (w - 2 * pad) as f32, m.title as f32);
        draw_text_at(root, &t, (w / 2, pad), HPos::Center, &text_style(m.title))?;
        top += m.title.ceil() as i32 + pad;
    }
    top += pad;

    let (x_range, y_range) = data_ranges(series);
    let legend = legend_entries(series);

    // Legend on the right when it takes at most a quarter of the width and fits beside the plot,
    // otherwise below.
    let swatch = 3 * line_h / 2;
    let widest_label = legend
        .iter()
        .map(|(_, l)| text_width(l, m.text as f32).ceil() as i32)
        .max()
        .unwrap_or(0);
    let natural_legend_w = swatch + pad + widest_label + 2 * pad;
    let entry_h = line_h + pad;
    let legend_box_h = legend.len() as i32 * entry_h + pad;
    // Below the plot: tick labels (plotters puts them twice the tick length from the axis), then
    // the axis title.
    let label_dist = 2 * m.tick;
    let x_title_h = if x_label.is_empty() { 0 } else { line_h + pad };
    let x_area = label_dist + line_h + x_title_h;
    let legend_right =
        !legend.is_empty() && natural_legend_w <= w / 4 && legend_box_h <= h - top - x_area - pad;
    let legend_below = !legend.is_empty() && !legend_right;

    // Y ticks first: their label widths decide the left margin.
    let y_target = ((h - top - x_area - pad) / (line_h * 4)).clamp(2, 10) as usize;
    let y_ticks = nice_ticks(y_range.0, y_range.1, y_target);
    let y_format = TickFormat::new(&y_ticks);
    let y_labels_w = y_ticks
        .iter()
        .map(|v| text_width(&y_format.label(*v), m.text as f32).ceil() as i32)
        .max()
        .unwrap_or(0);
    let y_title_w = if y_label.is_empty() { 0 } else { line_h + pad };
    let y_area = y_title_w + y_labels_w + label_dist;

    let right = if legend_right {
        natural_legend_w + 3 * pad
    } else {
        4 * pad
    };
    let legend_rows = if legend_below {
        flow_legend(&legend, w - 2 * pad, swatch, pad, m.text)
    } else {
        Vec::new()
    };
    let legend_below_h = if legend_rows.is_empty() {
        0
    } else {
        legend_rows.len() as i32 * entry_h + pad
    };
    let bottom = pad + legend_below_h;
    let plot_w = w - pad - y_area - right;
    let plot_h = h - top - x_area - bottom;
    if plot_w < 4 || plot_h < 4 {
        return Ok(()); // too small for axes: a title (if any) on a blank image
    }

    // X ticks: as many as fit with at least two pads of space between neighbouring labels.
    let x_span = x_range.1 - x_range.0;
    let mut x_target = 2;
    for target in (2..=10).rev() {
        let ticks = nice_ticks(x_range.0, x_range.1, target);
        let format = TickFormat::new(&ticks);
        let widest = ticks
            .iter()
            .map(|v| text_width(&format.label(*v), m.text as f32).ceil() as i32)
            .max()
            .unwrap_or(0);
        let spacing = match ticks[..] {
            [a, b, ..] => (b - a) / x_span * (plot_w - 1) as f64,
            _ => f64::INFINITY,
        };
        if spacing >= (widest + 2 * pad) as f64 {
            x_target = target;
            break;
        }
    }
    let x_format = TickFormat::new(&nice_ticks(x_range.0, x_range.1, x_target));

    let mut chart = ChartBuilder::on(root)
        .margin_top(top)
        .margin_left(pad)
        .margin_right(right)
        .margin_bottom(bottom)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(Axis::new(x_range), Axis::new(y_range))?;

    let x_fmt = |v: &f64| x_format.label(*v);
    let y_fmt = |v: &f64| y_format.label(*v);
    let x_desc = fit_text(x_label, plot_w as f32, m.text as f32);
    let y_desc = fit_text(y_label, plot_h as f32, m.text as f32);
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(x_target)
        .y_labels(y_target)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(label_style.clone())
        .axis_desc_style(label_style.clone())
        .axis_style(INK)
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .set_all_tick_mark_size(m.tick);
    if !x_desc.is_empty() {
        mesh.x_desc(x_desc);
    }
    if !y_desc.is_empty() {
        mesh.y_desc(y_desc);
    }
    mesh.draw()?;

    // The frame's other two sides (the mesh draws the left and bottom axes).
    let (px, py) = chart.plotting_area().get_pixel_range();
    root.draw(&PathElement::new(
        vec![
            (px.start - 1, py.start - 1),
            (px.end, py.start - 1),
            (px.end, py.end),
        ],
        INK,
    ))?;

    // The series: lines first, then markers on top so every point stays visible.
    let marker_r = (m.text / 3.0).round() as i32;
    let plot = chart.plotting_area();
    for (i, sr) in series.iter().enumerate() {
        let colour = palette(i);
        let pts: Vec<(f64, f64)> = sr
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if pts.len() >= 2 {
            plot.draw(&PathElement::new(
                pts.clone(),
                colour.stroke_width(LINE_WIDTH),
            ))?;
        }
        for &p in &pts {
            let at = plot.map_coordinate(&p);
            draw_marker(root, at, marker_r, marker_shape(i), colour)?;
        }
    }

    // The legend, outside the plot.
    if legend_right {
        let lx = px.end + 2 * pad;
        root.draw(&Rectangle::new(
            [
                (lx, py.start),
                (lx + natural_legend_w, py.start + legend_box_h),
            ],
            LEGEND_BORDER,
        ))?;
        for (row, (i, label)) in legend.iter().enumerate() {
            let ey = py.start + pad + row as i32 * entry_h;
            draw_legend_entry(root, (lx + pad, ey), *i, label, swatch, &m, &label_style)?;
        }
    } else if legend_below {
        let ly = h - legend_below_h;
        for (row, entries) in legend_rows.iter().enumerate() {
            let ey = ly + row as i32 * entry_h;
            for &(x_off, k) in entries {
                let (i, label) = &legend[k];
                draw_legend_entry(root, (pad + x_off, ey), *i, label, swatch, &m, &label_style)?;
            }
        }
    }
    Ok(())
}

/// Draws one line of text whose line box has its top at `y`, anchored at `x` as `h_pos` says.
fn draw_text_at(
    area: &Area<'_>,
    text: &str,
    (x, y): (i32, i32),
    h_pos: HPos,
    style: &TextStyle<'_>,
) -> DrawResult {
    area.draw(&Text::new(
        text.to_string(),
        (x, y),
        style.pos(Pos::new(h_pos, VPos::Top)),
    ))
}

/// A plotters colour from the palette, for series `i`.
fn palette(i: usize) -> RGBColor {
    let [r, g, b] = PALETTE[i % PALETTE.len()].0;
    RGBColor(r, g, b)
}

/// A linear f64 axis whose ticks are [`nice_ticks`]. plotters' own f64 axis (0.3.7) never
/// finishes its tick search on (-f64::MAX, f64::MAX) and gives any range narrower than
/// f64::EPSILON a single tick.
struct Axis {
    lo: f64,
    hi: f64,
}

impl Axis {
    fn new((lo, hi): (f64, f64)) -> Self {
        Axis { lo, hi }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        // The span of (-f64::MAX, f64::MAX) overflows; halving both sides keeps the ratio.
        let t = if (self.hi - self.lo).is_finite() {
            (v - self.lo) / (self.hi - self.lo)
        } else {
            (v / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0)
        };
        let p = limit.0 as f64 + t * (limit.1 - limit.0) as f64;
        // Far outside stays far outside, without overflowing plotters' pixel arithmetic.
        p.round().clamp(-1e6, 1e6) as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // No light grid lines: ticks only.
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        nice_ticks(self.lo, self.hi, hint.max_num_points())
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
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
struct TickFormat {
    step: f64,
    scientific: bool,
}

impl TickFormat {
    fn new(ticks: &[f64]) -> Self {
        let step = if ticks.len() >= 2 {
            ticks[1] - ticks[0]
        } else {
            ticks.first().map_or(1.0, |v| v.abs())
        };
        let biggest = ticks.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        TickFormat {
            step,
            scientific: biggest >= 1e7 || (step > 0.0 && step < 1e-4),
        }
    }

    fn label(&self, v: f64) -> String {
        let step = self.step;
        if v == 0.0 {
            "0".to_string()
        } else if self.scientific {
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
    }
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
    avail: i32,
    swatch: i32,
    pad: i32,
    text_size: f64,
) -> Vec<Vec<(i32, usize)>> {
    let mut rows: Vec<Vec<(i32, usize)>> = Vec::new();
    let mut x = 0;
    for (k, (_, label)) in entries.iter().enumerate() {
        let entry_w = swatch + pad + text_width(label, text_size as f32).ceil() as i32 + 3 * pad;
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

/// One legend entry with its top left corner at `(x, y)`: a short stretch of the series' line
/// with its marker, then the label (cut at the image's right edge).
fn draw_legend_entry(
    root: &Area<'_>,
    (x, y): (i32, i32),
    i: usize,
    label: &str,
    swatch: i32,
    m: &Metrics,
    style: &TextStyle<'_>,
) -> DrawResult {
    let colour = palette(i);
    let mid = y + (m.text / 2.0).round() as i32;
    root.draw(&PathElement::new(
        vec![(x, mid), (x + swatch, mid)],
        colour.stroke_width(LINE_WIDTH),
    ))?;
    let r = (m.text / 3.0).round() as i32;
    draw_marker(root, (x + swatch / 2, mid), r, marker_shape(i), colour)?;
    let text_x = x + swatch + m.pad;
    let room = root.dim_in_pixel().0 as i32 - text_x - m.pad;
    let label = fit_text(label, room.max(0) as f32, m.text as f32);
    draw_text_at(root, &label, (text_x, y), HPos::Left, style)
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

/// A filled marker of radius `r` centred on pixel `(cx, cy)`.
fn draw_marker(
    root: &Area<'_>,
    (cx, cy): (i32, i32),
    r: i32,
    shape: Marker,
    colour: RGBColor,
) -> DrawResult {
    let style = colour.filled();
    match shape {
        Marker::Circle => root.draw(&Circle::new((cx, cy), r, style)),
        Marker::Square => root.draw(&Rectangle::new(
            [(cx - r + 1, cy - r + 1), (cx + r - 1, cy + r - 1)],
            style,
        )),
        Marker::Diamond => root.draw(&Polygon::new(
            vec![(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)],
            style,
        )),
        Marker::Triangle => root.draw(&Polygon::new(
            vec![(cx, cy - r), (cx + r, cy + r - 1), (cx - r, cy + r - 1)],
            style,
        )),
    }
}
