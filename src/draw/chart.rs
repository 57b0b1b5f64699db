//! Line charts drawn by plotters on its bitmap backend: plotters' caption, mesh (ticks, tick labels,
//! axis descriptions), line and point series, and its series labels as the legend, placed outside
//! the plot area (right of it when narrow enough, otherwise below).

use std::sync::Once;

use ab_glyph::{point, Font, ScaleFont};
use image::{Rgb, RgbImage};
use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::data::fitting_range;
use plotters::data::float::FloatPrettyPrinter;
use plotters::element::MultiLineText;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};

use super::{fit_text, font, FONT_TTF};

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
        // plotters sets and measures all text in the embedded font, registered as its sans-serif.
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| {
            let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_TTF);
        });
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

/// plotters' bitmap backend with its own `draw_text`, forced by a plotters 0.3.7 bug: its
/// `ab_glyph` font (`FontDataInternal::draw` in src/style/font/ab_glyph.rs) puts each glyph's ink
/// at the pen, dropping the glyph's left side bearing, and cuts the pen to whole pixels, so letters
/// are spaced unevenly ("tome" reads "tom e"); it also puts the baseline half the font size below
/// the top of a box that `estimate_layout` makes 1/1.24 of the size tall, so text sits about a
/// fifth of its size above where plotters lays it out (tick labels above their ticks). Text is
/// still measured by plotters in the registered font; this only draws the glyphs, kerned at their
/// exact positions, with the line (ascent to descent) centred on plotters' box. The other methods
/// pass through: the four plotters requires, and the three the bitmap backend overrides.
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

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> BackendResult {
        self.0.blit_bitmap(pos, size, src)
    }

    /// Places plotters' layout box of `text` on `pos` as the style's anchor says (as plotters'
    /// default `draw_text` does), sets the glyphs in it, then turns them by the style's transform
    /// about `pos`. Pixels off the image are dropped by `draw_pixel`.
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
        let ((x0, y0), (x1, y1)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (box_w, box_h) = ((x1 - x0) as f32, (y1 - y0) as f32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -box_w / 2.0,
            HPos::Right => -box_w,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0.0,
            VPos::Center => -box_h / 2.0,
            VPos::Bottom => -box_h,
        };
        let font = font().as_scaled(size);
        let turn = style.transform();
        let mut caret = point(dx, dy + (box_h - size) / 2.0 + font.ascent());
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

/// One axis: its range and the factor its data is scaled by to be plotted. plotters 0.3.7's f64
/// axis (`RangedCoordf64`) divides by `hi - lo`: where that overflows (data near ±f64::MAX), its
/// tick search (`compute_f64_key_points`) never ends and every value maps to the axis' start.
/// Such an axis is plotted at half scale and labelled at full.
#[derive(Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    scale: f64,
}

impl Axis {
    /// The finite `values` with 5% padding (a little more around a single value), or 0..1 with
    /// none.
    fn fit(values: &[f64]) -> Self {
        let (lo, hi) = if values.is_empty() {
            (0.0, 1.0)
        } else {
            let data = fitting_range(values);
            let (lo, hi) = (data.start, data.end);
            let span = hi - lo;
            let padding = if span > 0.0 && span.is_finite() {
                0.05 * span
            } else if lo != 0.0 {
                0.1 * lo.abs()
            } else {
                1.0
            };
            let (a, b) = ((lo - padding).max(-f64::MAX), (hi + padding).min(f64::MAX));
            if a < b {
                (a, b)
            } else {
                (lo - 1.0, hi + 1.0) // a subnormal value whose 10% rounds to nothing
            }
        };
        let scale = if (hi - lo).is_finite() { 1.0 } else { 0.5 };
        Axis { lo, hi, scale }
    }

    /// plotters' coordinate for this axis, on the scaled data.
    fn coord(&self) -> RangedCoordf64 {
        (self.lo * self.scale..self.hi * self.scale).into()
    }

    /// The label of tick `v` (unscaled): plotters' own f64 label, with scientific notation
    /// allowed and up to ten decimals. (Its default, never scientific and at most five decimals,
    /// reads "0.0" for every tick of an axis 1e-7 wide and "3000000000000.0" for 3e12.)
    fn label(&self, v: f64) -> String {
        let print = FloatPrettyPrinter {
            allow_scientific: true,
            min_decimal: 1,
            max_decimal: 10,
        };
        print.print(v)
    }

    /// The ticks plotters draws when allowed `steps` steps (`steps + 1` ticks), with their labels.
    fn ticks(&self, steps: usize) -> Vec<(f64, String)> {
        let ticks = nice_ticks(self.lo, self.hi, steps);
        ticks.into_iter().map(|v| (v, self.label(v))).collect()
    }
}

fn draw_chart(
    root: &Area<'_>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> DrawResult {
    let (w, h) = root.dim_in_pixel();
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
    let (w, pad) = (w as i32, m.pad);
    let style = |size: f64| TextStyle::from(("sans-serif", size).into_font()).color(&INK);
    let label_style = style(m.text);
    let text_size = |text: &str| root.estimate_text_size(text, &label_style);
    let line_h = text_size("0")?.1 as i32;

    // The title, centred above the chart and cut to its width. (`ChartBuilder::caption` draws it
    // the same way, with `titled`, but the label areas below are sized from the plot's height.)
    let area = if title.is_empty() {
        root.margin(2 * pad, 0, 0, 0)
    } else {
        let title = fit_text(title, (w - 2 * pad) as f32, m.title as f32);
        root.margin(pad, 0, 0, 0).titled(&title, style(m.title))?
    };
    let (xs, ys) = area.get_pixel_range();
    let area_h = ys.end - ys.start;

    // The legend: plotters' series labels, each with a stretch of its line and its marker, in a
    // box outside the plot: on the right when it takes at most a quarter of the width and fits
    // beside the plot, otherwise below it (labels cut to the width), inside the plot when it fits
    // neither. plotters draws the box where it is told; its size is reserved here the way
    // plotters will measure it.
    let labelled: Vec<usize> = (0..series.len())
        .filter(|&i| !series[i].label.is_empty())
        .collect();
    let swatch = 3 * m.text as i32 / 2;
    let legend = |room: i32| -> Result<(Vec<String>, i32, i32), DrawingAreaErrorKind<_>> {
        let labels: Vec<String> = labelled
            .iter()
            .map(|&i| fit_text(&series[i].label, room as f32, m.text as f32))
            .collect();
        let mut text = MultiLineText::<_, &str>::new((0, 0), &label_style);
        for label in &labels {
            text.push_line(label.as_str());
        }
        let (text_w, text_h) = text.estimate_dimension().map_err(|e| {
            DrawingAreaErrorKind::BackendError(DrawingErrorKind::FontError(Box::new(e)))
        })?;
        Ok((labels, text_w + swatch + 3 * pad, text_h + 2 * pad))
    };
    // Below the plot: tick labels (plotters puts them twice the tick length from the axis), then
    // the axis description.
    let x_desc_h = if x_label.is_empty() { 0 } else { line_h + pad };
    let x_area = 2 * m.tick + line_h + x_desc_h;
    let beside_h = area_h - x_area - pad;
    let whole = legend(i32::MAX)?;
    let cut = legend(w - 5 * pad - swatch)?;
    let place = if labelled.is_empty() {
        Legend::None
    } else if whole.1 <= w / 4 && whole.2 <= beside_h {
        Legend::Right
    } else if beside_h - cut.2 - pad >= 4 * line_h {
        Legend::Below
    } else {
        Legend::Inside
    };
    let (labels, legend_w, legend_h) = if place == Legend::Right { whole } else { cut };
    let right = if place == Legend::Right {
        legend_w + 3 * pad
    } else {
        4 * pad
    };
    let bottom = if place == Legend::Below {
        legend_h + 2 * pad
    } else {
        pad
    };
    let plot_h = area_h - x_area - bottom;

    // Y ticks first: their labels' width decides the left margin.
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let x_axis = Axis::fit(&points.iter().map(|p| p.0).collect::<Vec<_>>());
    let y_axis = Axis::fit(&points.iter().map(|p| p.1).collect::<Vec<_>>());
    let y_steps = (plot_h / (4 * line_h)).clamp(2, 10) as usize;
    let mut y_labels_w = 0;
    for (_, label) in y_axis.ticks(y_steps) {
        y_labels_w = y_labels_w.max(text_size(&label)?.0 as i32);
    }
    let y_desc_w = if y_label.is_empty() { 0 } else { line_h + pad };
    let y_area = y_desc_w + y_labels_w + 2 * m.tick;
    let plot_w = (xs.end - xs.start) - pad - y_area - right;
    if plot_w < 4 || plot_h < 4 {
        return Ok(()); // too small for axes: a title (if any) on a blank image
    }

    // X ticks: as many as fit with at least two pads between neighbouring labels (plotters lets
    // labels overlap).
    let mut x_steps = 2;
    for n in (2..=10).rev() {
        let ticks = x_axis.ticks(n);
        let mut widest = 0;
        for (_, label) in &ticks {
            widest = widest.max(text_size(label)?.0 as i32);
        }
        let spacing = match ticks[..] {
            [(a, _), (b, _), ..] => {
                let at = |v: f64| x_axis.coord().map(&(v * x_axis.scale), (0, plot_w));
                at(b) - at(a)
            }
            _ => i32::MAX,
        };
        if spacing >= widest + 2 * pad {
            x_steps = n;
            break;
        }
    }

    let mut chart = ChartBuilder::on(&area)
        .margin_left(pad)
        .margin_right(right)
        .margin_bottom(bottom)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(x_axis.coord(), y_axis.coord())?;

    let x_format = |v: &f64| x_axis.label(*v / x_axis.scale);
    let y_format = |v: &f64| y_axis.label(*v / y_axis.scale);
    let x_desc = fit_text(x_label, plot_w as f32, m.text as f32);
    let y_desc = fit_text(y_label, plot_h as f32, m.text as f32);
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(x_steps + 1)
        .y_labels(y_steps + 1)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style(label_style.clone())
        .axis_desc_style(label_style.clone())
        .axis_style(INK)
        .bold_line_style(GRID)
        .max_light_lines(0)
        .set_all_tick_mark_size(m.tick);
    if !x_desc.is_empty() {
        mesh.x_desc(x_desc);
    }
    if !y_desc.is_empty() {
        mesh.y_desc(y_desc);
    }
    mesh.draw()?;

    // The series: all lines first, then the markers on top so every point stays visible.
    let marker_r = (m.text / 3.0).round() as i32;
    let scaled = |s: &Series| -> Vec<(f64, f64)> {
        s.points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| (x * x_axis.scale, y * y_axis.scale))
            .collect()
    };
    for (i, s) in series.iter().enumerate() {
        let points = scaled(s);
        if points.len() >= 2 {
            chart.draw_series(LineSeries::new(points, palette(i).stroke_width(LINE_WIDTH)))?;
        }
    }
    for (i, s) in series.iter().enumerate() {
        let outline = marker(i, marker_r);
        let make = |c, _, style| EmptyElement::at(c) + Polygon::new(outline.clone(), style);
        chart.draw_series(PointSeries::of_element(
            scaled(s),
            marker_r,
            palette(i).filled(),
            &make,
        ))?;
    }

    // The legend is plotters' series labels of a chart of its own, whose plot area is where the
    // legend goes: plotters 0.3.7 pulls every element's points into the area it is drawn on
    // (`BackendCoordOnly::map` calls `Rect::truncate`), and a chart draws its series labels on its
    // plot area, so `SeriesLabelPosition::Coordinate` cannot put them outside the plot (a legend
    // placed right of it collapses onto its right edge).
    let (px, py) = chart.plotting_area().get_pixel_range();
    let corner = match place {
        Legend::None => return Ok(()),
        Legend::Right => (px.end + 2 * pad, py.start),
        Legend::Below => (pad, py.end + x_area + pad),
        Legend::Inside => (px.end - legend_w - pad, py.start + pad),
    };
    let area = root.clone().shrink(corner, (legend_w, legend_h));
    let mut legend = ChartBuilder::on(&area).build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
    for (&i, label) in labelled.iter().zip(labels) {
        let colour = palette(i);
        let beside: Vec<_> = marker(i, marker_r)
            .into_iter()
            .map(|(x, y)| (x + swatch / 2, y))
            .collect();
        let none = std::iter::empty::<EmptyElement<(f64, f64), Canvas>>();
        legend.draw_series(none)?.label(label).legend(move |at| {
            EmptyElement::at(at)
                + PathElement::new(vec![(0, 0), (swatch, 0)], colour.stroke_width(LINE_WIDTH))
                + Polygon::new(beside.clone(), colour.filled())
        });
    }
    legend
        .configure_series_labels()
        .position(SeriesLabelPosition::Coordinate(0, 0))
        .legend_area_size(swatch + pad)
        .margin(pad)
        .label_font(label_style.clone())
        .background_style(WHITE)
        .border_style(LEGEND_BORDER)
        .draw()
}

#[derive(Clone, Copy, PartialEq)]
enum Legend {
    None,
    Right,
    Below,
    Inside,
}

/// A plotters colour from the palette, for series `i`.
fn palette(i: usize) -> RGBColor {
    let [r, g, b] = PALETTE[i % PALETTE.len()].0;
    RGBColor(r, g, b)
}

/// The outline of series `i`'s marker, of radius `r` about (0, 0): the first eight series differ
/// by colour already; after that the shape changes with each round through the palette (circle,
/// square, diamond, triangle), so series `i` and `i + 8` still differ. Every shape is a polygon
/// (the circle has 16 corners) so that markers are one element type: plotters boxes elements of
/// differing types into a `DynElement`, which can be composed (as in a legend entry) only when
/// it is `'static`, and the canvas borrows the image.
fn marker(i: usize, r: i32) -> Vec<(i32, i32)> {
    match (i + i / PALETTE.len()) % 4 {
        0 => (0..16)
            .map(|k| {
                let a = k as f64 * std::f64::consts::TAU / 16.0;
                let (x, y) = (r as f64 * a.cos(), r as f64 * a.sin());
                (x.round() as i32, y.round() as i32)
            })
            .collect(),
        1 => vec![
            (1 - r, 1 - r),
            (r - 1, 1 - r),
            (r - 1, r - 1),
            (1 - r, r - 1),
        ],
        2 => vec![(0, -r), (r, 0), (0, r), (-r, 0)],
        _ => vec![(0, -r), (r, r - 1), (-r, r - 1)],
    }
}

/// The ticks plotters puts on an f64 axis from `lo` to `hi` when allowed `max_count` steps
/// (`max_count + 1` ticks, `max_count` at least 2): round values, 1, 2 or 5 times a power of ten
/// apart, inside `[lo, hi]`. Empty when the range is not finite; just `lo` when `lo == hi`. Where
/// `hi - lo` overflows, the ticks of half the range, doubled (plotters' own search never ends
/// there; see `Axis`).
pub fn nice_ticks(lo: f64, hi: f64, max_count: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi < lo {
        return Vec::new();
    }
    if !(hi - lo).is_finite() {
        let half = nice_ticks(lo / 2.0, hi / 2.0, max_count);
        return half.into_iter().map(|v| v * 2.0).collect();
    }
    RangedCoordf64::from(lo..hi).key_points(max_count.max(2) + 1)
}
