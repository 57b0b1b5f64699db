//! Pure-CPU PNG pictures for the command line: line charts and token-pruning panels.
//!
//! Everything is drawn straight into an [`image::RgbImage`] with a handful of raster primitives
//! (this file) and an embedded bitmap font ([`font`]), so the binary needs no plotting library and
//! no system fonts. Every drawing call clips to the image: odd sizes and coordinates never panic.
//!
//! - [`line_chart`]: axes, ticks, legend and one polyline per [`Series`];
//! - [`token_panels`]: the input image next to one panel per pruning step, dropped patches dimmed.

pub mod chart;
pub mod font;
pub mod tokens;

pub use chart::{line_chart, nice_ticks, Series, PALETTE};
pub use font::{draw_text, draw_text_up, fit_text, text_height, text_width};
pub use tokens::{panel_layout, token_panels, PanelLayout};

use image::{Rgb, RgbImage};

/// Mixes `a` toward `b`: `t = 0` gives `a`, `t = 1` gives `b`.
pub fn blend(a: Rgb<u8>, b: Rgb<u8>, t: f32) -> Rgb<u8> {
    let t = t.clamp(0.0, 1.0);
    Rgb(std::array::from_fn(|i| {
        (a.0[i] as f32 * (1.0 - t) + b.0[i] as f32 * t).round() as u8
    }))
}

/// Sets one pixel if it lies inside the image.
pub fn put_pixel(img: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < img.width() as i64 && y < img.height() as i64 {
        img.put_pixel(x as u32, y as u32, colour);
    }
}

/// Fills the `w` x `h` rectangle whose top-left corner is (`x`, `y`), clipped to the image.
pub fn fill_rect(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, colour: Rgb<u8>) {
    let x0 = x.max(0);
    let y0 = y.max(0);
    let x1 = x.saturating_add(w).min(img.width() as i64);
    let y1 = y.saturating_add(h).min(img.height() as i64);
    for py in y0..y1 {
        for px in x0..x1 {
            img.put_pixel(px as u32, py as u32, colour);
        }
    }
}

/// Outlines the `w` x `h` rectangle at (`x`, `y`) with a one-pixel border.
pub fn stroke_rect(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, colour: Rgb<u8>) {
    if w <= 0 || h <= 0 {
        return;
    }
    fill_rect(img, x, y, w, 1, colour);
    fill_rect(img, x, y + h - 1, w, 1, colour);
    fill_rect(img, x, y, 1, h, colour);
    fill_rect(img, x + w - 1, y, 1, h, colour);
}

/// Draws a straight line from (`x0`, `y0`) to (`x1`, `y1`), `thickness` pixels wide (a square
/// brush stamped along a Bresenham line). Coordinates may lie far outside the image or be
/// non-finite: the line is first clipped to the image, so the loop is never longer than the
/// image is wide or tall.
pub fn draw_line(
    img: &mut RgbImage,
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    colour: Rgb<u8>,
    thickness: u32,
) {
    let t = thickness.max(1) as i64;
    let margin = t as f64;
    let bounds = (
        -margin,
        -margin,
        img.width() as f64 + margin,
        img.height() as f64 + margin,
    );
    let Some((x0, y0, x1, y1)) = clip_segment((x0, y0, x1, y1), bounds) else {
        return;
    };
    let (mut x, mut y) = (x0.round() as i64, y0.round() as i64);
    let (xe, ye) = (x1.round() as i64, y1.round() as i64);
    let dx = (xe - x).abs();
    let dy = -(ye - y).abs();
    let sx = if x < xe { 1 } else { -1 };
    let sy = if y < ye { 1 } else { -1 };
    let mut err = dx + dy;
    // The brush is centred on the line: for even widths it leans up and left by half a pixel.
    let back = (t - 1) / 2;
    loop {
        fill_rect(img, x - back, y - back, t, t, colour);
        if x == xe && y == ye {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// Liang-Barsky clipping of a segment to the box (`xmin`, `ymin`, `xmax`, `ymax`); `None` when
/// nothing of it is inside or a coordinate is not finite.
fn clip_segment(
    seg: (f64, f64, f64, f64),
    bounds: (f64, f64, f64, f64),
) -> Option<(f64, f64, f64, f64)> {
    let (x0, y0, x1, y1) = seg;
    if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (xmin, ymin, xmax, ymax) = bounds;
    let (dx, dy) = (x1 - x0, y1 - y0);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, x0 - xmin),
        (dx, xmax - x0),
        (-dy, y0 - ymin),
        (dy, ymax - y0),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None; // parallel to this edge and outside it
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
            if t0 > t1 {
                return None;
            }
        }
    }
    Some((x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy))
}
