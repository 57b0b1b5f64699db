//! Token-pruning pictures: the input image, then one panel per pruning step in which the patches
//! that step dropped are dimmed, so one can see where the model kept looking.

use std::collections::HashSet;

use ab_glyph::PxScale;
use image::{Rgb, RgbImage};
use imageproc::drawing::draw_text_mut;

use super::{fit_text, font, text_width};

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([51, 51, 51]);
/// Dropped patches are mixed this far toward `DROPPED_TINT`: dark, and with only a quarter of the
/// original colour left, clearly "gone" while the content stays faintly recognisable.
const DROPPED_MIX: f32 = 0.75;
const DROPPED_TINT: Rgb<u8> = Rgb([24, 24, 24]);
/// Grid lines are mixed half way toward mid grey, visible on both kept and dropped patches.
const GRID_MIX: f32 = 0.5;
const GRID_TINT: Rgb<u8> = Rgb([160, 160, 160]);
/// Panels are scaled up by a whole factor until at least this wide...
const MIN_PANEL_WIDTH: u32 = 224;
/// ...unless that would make a side longer than this (a very thin image).
const MAX_PANEL_SIDE: u32 = 4096;
/// Grid lines are drawn only when patches are at least this many panel pixels across.
const MIN_GRID_CELL: u32 = 4;
/// Title text height in pixels (ascent to descent) when every title fits at it...
const TITLE_SIZE: u32 = 18;
/// ...otherwise this, and titles still too long are cut.
const SMALL_TITLE_SIZE: u32 = 13;

/// Where things are in a [`token_panels`] picture. Panel `i` (0 = input, `i` = step `i - 1`)
/// has its image at (`panel_x(i)`, `panel_y()`) and its title centred in the `title_h` pixels
/// above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanelLayout {
    /// Whole-number factor from input pixels to panel pixels.
    pub scale: u32,
    pub panel_w: u32,
    pub panel_h: u32,
    /// Blank space around and between panels.
    pub gap: u32,
    /// Height of the title band above the panels, gap below the text included.
    pub title_h: u32,
    /// Height of the title text in pixels, ascent to descent.
    pub text_size: u32,
    /// Number of panels, the input included.
    pub panels: u32,
}

impl PanelLayout {
    /// Left edge of panel `i`.
    pub fn panel_x(&self, i: u32) -> u32 {
        self.gap + i * (self.panel_w + self.gap)
    }

    /// Top edge of every panel's image.
    pub fn panel_y(&self) -> u32 {
        self.gap + self.title_h
    }

    /// Width of the whole picture.
    pub fn width(&self) -> u32 {
        self.gap + self.panels * (self.panel_w + self.gap)
    }

    /// Height of the whole picture.
    pub fn height(&self) -> u32 {
        self.panel_y() + self.panel_h + self.gap
    }
}

/// The layout [`token_panels`] uses for an `image_w` x `image_h` image and these panel titles
/// (input panel's first).
pub fn panel_layout(image_w: u32, image_h: u32, titles: &[&str]) -> PanelLayout {
    let longest = image_w.max(image_h).max(1);
    let scale = MIN_PANEL_WIDTH
        .div_ceil(image_w.max(1))
        .min(MAX_PANEL_SIDE / longest)
        .max(1);
    let panel_w = image_w.saturating_mul(scale);
    // Titles at full size when they all fit, otherwise smaller (cut if still too long).
    let text_size = if titles
        .iter()
        .all(|t| text_width(t, TITLE_SIZE as f32) < panel_w as f32)
    {
        TITLE_SIZE
    } else {
        SMALL_TITLE_SIZE
    };
    let gap = 8;
    PanelLayout {
        scale,
        panel_w,
        panel_h: image_h.saturating_mul(scale),
        gap,
        title_h: text_size + gap / 2,
        text_size,
        panels: titles.len().min(u32::MAX as usize) as u32,
    }
}

/// Draws `image` followed by one panel per step. `grid` is (rows, cols) of patches laid over the
/// image; each step is (title, kept patch indices), indices row-major in `0..rows*cols`. In a
/// step's panel, patches not in its list are dimmed; indices outside the grid are ignored. With a
/// zero-sized grid there are no patches, and every panel shows the image as it is.
pub fn token_panels(
    image: &RgbImage,
    grid: (usize, usize),
    steps: &[(String, Vec<u32>)],
) -> RgbImage {
    let mut titles = vec!["input"];
    titles.extend(steps.iter().map(|(t, _)| t.as_str()));
    let layout = panel_layout(image.width(), image.height(), &titles);
    let mut out = RgbImage::from_pixel(layout.width(), layout.height(), BACKGROUND);

    // Titles, centred over their panels and cut to the panel width.
    let size = layout.text_size as f32;
    for (i, title) in titles.iter().enumerate() {
        let t = fit_text(title, layout.panel_w as f32, size);
        let slack = (layout.panel_w as f32 - text_width(&t, size)).max(0.0);
        let tx = layout.panel_x(i as u32) as f32 + slack / 2.0;
        draw_text_mut(
            &mut out,
            INK,
            tx.round() as i32,
            layout.gap as i32,
            PxScale::from(size),
            font(),
            &t,
        );
    }

    let patches = PatchMap::new(image.width(), image.height(), grid);
    paint_panel(&mut out, image, &layout, 0, |_, _| true, None);
    for (k, (_, kept)) in steps.iter().enumerate() {
        let kept: HashSet<u128> = kept.iter().map(|&i| i as u128).collect();
        let is_kept = |sx: u32, sy: u32| patches.index(sx, sy).is_none_or(|p| kept.contains(&p));
        paint_panel(
            &mut out,
            image,
            &layout,
            k as u32 + 1,
            is_kept,
            Some(&patches),
        );
    }
    out
}

/// Which patch each input pixel belongs to: row `r` covers input rows `r*h/rows ..
/// (r+1)*h/rows`, so uneven sizes spread the remainder instead of leaving a strip uncovered.
/// Arithmetic is in u128 so that absurd grids (up to `usize::MAX` a side) cannot overflow.
struct PatchMap {
    rows: u128,
    cols: u128,
    row_of: Vec<u128>,
    col_of: Vec<u128>,
}

impl PatchMap {
    fn new(w: u32, h: u32, (rows, cols): (usize, usize)) -> Self {
        if rows == 0 || cols == 0 {
            return PatchMap {
                rows: 0,
                cols: 0,
                row_of: Vec::new(),
                col_of: Vec::new(),
            };
        }
        let split = |pixels: u32, parts: usize| -> Vec<u128> {
            (0..pixels as u128)
                .map(|p| p * parts as u128 / pixels as u128)
                .collect()
        };
        PatchMap {
            rows: rows as u128,
            cols: cols as u128,
            row_of: split(h, rows),
            col_of: split(w, cols),
        }
    }

    /// Patch index of input pixel (`sx`, `sy`); `None` without a grid.
    fn index(&self, sx: u32, sy: u32) -> Option<u128> {
        let row = self.row_of.get(sy as usize)?;
        let col = self.col_of.get(sx as usize)?;
        Some(row * self.cols + col)
    }

    /// Whether panel pixel `p` (at `scale`) starts a new patch along an axis: grid lines go on
    /// the first pixel of every patch but the first.
    fn starts_patch(of: &[u128], p: u32, scale: u32) -> bool {
        let here = (p / scale) as usize;
        p > 0 && p.is_multiple_of(scale) && of.get(here) != of.get(here - 1)
    }
}

/// Copies `image`, scaled up, into panel `i`, dimming pixels for which `is_kept` (input pixel
/// coordinates) is false; with `grid`, also draws the patch grid when its cells are big enough.
fn paint_panel(
    out: &mut RgbImage,
    image: &RgbImage,
    layout: &PanelLayout,
    i: u32,
    is_kept: impl Fn(u32, u32) -> bool,
    grid: Option<&PatchMap>,
) {
    let s = layout.scale;
    let (x0, y0) = (layout.panel_x(i), layout.panel_y());
    for sy in 0..image.height() {
        for sx in 0..image.width() {
            let c = *image.get_pixel(sx, sy);
            let c = if is_kept(sx, sy) {
                c
            } else {
                blend(c, DROPPED_TINT, DROPPED_MIX)
            };
            for py in y0 + sy * s..y0 + (sy + 1) * s {
                for px in x0 + sx * s..x0 + (sx + 1) * s {
                    out.put_pixel(px, py, c);
                }
            }
        }
    }
    let Some(grid) = grid else { return };
    if grid.rows == 0 || grid.cols == 0 {
        return;
    }
    // Patch size in panel pixels along each axis (the smallest, for uneven splits).
    let cell_w = layout.panel_w as u128 / grid.cols;
    let cell_h = layout.panel_h as u128 / grid.rows;
    if cell_w < MIN_GRID_CELL as u128 || cell_h < MIN_GRID_CELL as u128 {
        return;
    }
    for py in 0..layout.panel_h {
        let row_line = PatchMap::starts_patch(&grid.row_of, py, s);
        for px in 0..layout.panel_w {
            if row_line || PatchMap::starts_patch(&grid.col_of, px, s) {
                let (x, y) = (x0 + px, y0 + py);
                let c = *out.get_pixel(x, y);
                out.put_pixel(x, y, blend(c, GRID_TINT, GRID_MIX));
            }
        }
    }
}

/// Mixes `a` toward `b`: `t = 0` gives `a`, `t = 1` gives `b`.
fn blend(a: Rgb<u8>, b: Rgb<u8>, t: f32) -> Rgb<u8> {
    let t = t.clamp(0.0, 1.0);
    Rgb(std::array::from_fn(|i| {
        (a.0[i] as f32 * (1.0 - t) + b.0[i] as f32 * t).round() as u8
    }))
}
