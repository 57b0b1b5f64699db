//! PNG pictures for the command line: line charts and token-pruning panels.
//!
//! Charts are drawn by plotters on its bitmap backend, panels with `image` and `imageproc`. All
//! text is set by ab_glyph in one embedded font (DejaVu Sans), so the binary needs no system
//! fonts. Only the `cli` feature builds this module: the browser package draws no PNGs. Odd
//! sizes, coordinates and values never panic.
//!
//! - [`line_chart`]: axes, ticks, legend and one polyline per [`Series`];
//! - [`token_panels`]: the input image next to one panel per pruning step, dropped patches dimmed.

pub mod chart;
pub mod tokens;

pub use chart::{line_chart, nice_ticks, Series, PALETTE};
pub use tokens::{panel_layout, token_panels, PanelLayout};

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};

/// DejaVu Sans 2.37, regular face: `ttf/DejaVuSans.ttf` of the upstream release
/// dejavu-fonts-ttf-2.37. Bitstream Vera license (DejaVu's changes are public domain); the text is
/// in `assets/fonts/DejaVuSans-LICENSE`.
const FONT_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The embedded font, parsed once.
fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_TTF).expect("the embedded font parses"))
}

/// How far the pen advances setting `text` at `size` pixels (ascent to descent), kerning
/// included: the width [`fit_text`] cuts to, within a pixel of imageproc's and plotters'.
fn text_width(text: &str, size: f32) -> f32 {
    let font = font().as_scaled(size);
    let mut width = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            width += font.kern(p, id);
        }
        width += font.h_advance(id);
        prev = Some(id);
    }
    width
}

/// `text` as it fits in `max_width` pixels at `size`: whole, or cut and ended with "..", or
/// empty when not even that fits. One pixel is kept spare for rounding.
fn fit_text(text: &str, max_width: f32, size: f32) -> String {
    let room = max_width - 1.0;
    if text_width(text, size) <= room {
        return text.to_string();
    }
    // Grow the kept part while it fits next to the "..": the work is bounded by the room, not
    // by the length of the text.
    let dots = text_width("..", size);
    let mut kept = String::new();
    for c in text.chars() {
        kept.push(c);
        if text_width(&kept, size) + dots > room {
            kept.pop();
            break;
        }
    }
    let kept = kept.trim_end();
    if kept.is_empty() {
        String::new()
    } else {
        format!("{kept}..")
    }
}
