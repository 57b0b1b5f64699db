//! A tiny embedded bitmap font (ASCII 32..=126), so the binary needs no system fonts.
//!
//! Each glyph is 5 columns by 8 rows: rows 0..=6 hold capitals and digits (baseline under row 6),
//! row 7 holds descenders (g, j, p, q, y, comma, underscore). Characters advance by 6 columns,
//! leaving one blank column between glyphs. Characters outside the table render as `?`.

use image::{Rgb, RgbImage};

/// Width of one glyph in font pixels (before scaling).
pub const GLYPH_W: u32 = 5;
/// Height of one glyph in font pixels, descender row included.
pub const GLYPH_H: u32 = 8;
/// Horizontal distance from one character to the next, in font pixels.
pub const ADVANCE: u32 = GLYPH_W + 1;

/// The glyphs from `' '` to `'~'`, drawn as eight rows of five cells (`#` = ink), rows separated by
/// a space. Written out as pictures so they can be read and corrected by eye.
const SOURCE: [&str; 95] = [
    "..... ..... ..... ..... ..... ..... ..... .....", // ' '
    "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.. .....", // !
    ".#.#. .#.#. .#.#. ..... ..... ..... ..... .....", // "
    ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#. .....", // #
    "..#.. .#### #.#.. .###. ..#.# ####. ..#.. .....", // $
    "##... ##..# ...#. ..#.. .#... #..## ...## .....", // %
    ".##.. #..#. #.#.. .#... #.#.# #..#. .##.# .....", // &
    "..#.. ..#.. .#... ..... ..... ..... ..... .....", // '
    "...#. ..#.. .#... .#... .#... ..#.. ...#. .....", // (
    ".#... ..#.. ...#. ...#. ...#. ..#.. .#... .....", // )
    "..... ..#.. #.#.# .###. #.#.# ..#.. ..... .....", // *
    "..... ..#.. ..#.. ##### ..#.. ..#.. ..... .....", // +
    "..... ..... ..... ..... ..... .##.. ..#.. .#...", // ,
    "..... ..... ..... ##### ..... ..... ..... .....", // -
    "..... ..... ..... ..... ..... .##.. .##.. .....", // .
    "..... ....# ...#. ..#.. .#... #.... ..... .....", // /
    ".###. #...# #..## #.#.# ##..# #...# .###. .....", // 0
    "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###. .....", // 1
    ".###. #...# ....# ...#. ..#.. .#... ##### .....", // 2
    "##### ...#. ..#.. ...#. ....# #...# .###. .....", // 3
    "...#. ..##. .#.#. #..#. ##### ...#. ...#. .....", // 4
    "##### #.... ####. ....# ....# #...# .###. .....", // 5
    "..##. .#... #.... ####. #...# #...# .###. .....", // 6
    "##### ....# ...#. ..#.. .#... .#... .#... .....", // 7
    ".###. #...# #...# .###. #...# #...# .###. .....", // 8
    ".###. #...# #...# .#### ....# ...#. .##.. .....", // 9
    "..... .##.. .##.. ..... .##.. .##.. ..... .....", // :
    "..... .##.. .##.. ..... .##.. ..#.. .#... .....", // ;
    "...#. ..#.. .#... #.... .#... ..#.. ...#. .....", // <
    "..... ..... ##### ..... ##### ..... ..... .....", // =
    ".#... ..#.. ...#. ....# ...#. ..#.. .#... .....", // >
    ".###. #...# ....# ...#. ..#.. ..... ..#.. .....", // ?
    ".###. #...# ....# .##.# #.#.# #.#.# .###. .....", // @
    ".###. #...# #...# ##### #...# #...# #...# .....", // A
    "####. #...# #...# ####. #...# #...# ####. .....", // B
    ".###. #...# #.... #.... #.... #...# .###. .....", // C
    "###.. #..#. #...# #...# #...# #..#. ###.. .....", // D
    "##### #.... #.... ####. #.... #.... ##### .....", // E
    "##### #.... #.... ####. #.... #.... #.... .....", // F
    ".###. #...# #.... #.### #...# #...# .#### .....", // G
    "#...# #...# #...# ##### #...# #...# #...# .....", // H
    ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###. .....", // I
    "..### ...#. ...#. ...#. ...#. #..#. .##.. .....", // J
    "#...# #..#. #.#.. ##... #.#.. #..#. #...# .....", // K
    "#.... #.... #.... #.... #.... #.... ##### .....", // L
    "#...# ##.## #.#.# #.#.# #...# #...# #...# .....", // M
    "#...# #...# ##..# #.#.# #..## #...# #...# .....", // N
    ".###. #...# #...# #...# #...# #...# .###. .....", // O
    "####. #...# #...# ####. #.... #.... #.... .....", // P
    ".###. #...# #...# #...# #.#.# #..#. .##.# .....", // Q
    "####. #...# #...# ####. #.#.. #..#. #...# .....", // R
    ".#### #.... #.... .###. ....# ....# ####. .....", // S
    "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. .....", // T
    "#...# #...# #...# #...# #...# #...# .###. .....", // U
    "#...# #...# #...# #...# #...# .#.#. ..#.. .....", // V
    "#...# #...# #...# #.#.# #.#.# #.#.# .#.#. .....", // W
    "#...# #...# .#.#. ..#.. .#.#. #...# #...# .....", // X
    "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.. .....", // Y
    "##### ....# ...#. ..#.. .#... #.... ##### .....", // Z
    ".###. .#... .#... .#... .#... .#... .###. .....", // [
    "..... #.... .#... ..#.. ...#. ....# ..... .....", // backslash
    ".###. ...#. ...#. ...#. ...#. ...#. .###. .....", // ]
    "..#.. .#.#. #...# ..... ..... ..... ..... .....", // ^
    "..... ..... ..... ..... ..... ..... ..... #####", // _
    ".#... ..#.. ...#. ..... ..... ..... ..... .....", // `
    "..... ..... .###. ....# .#### #...# .#### .....", // a
    "#.... #.... #.##. ##..# #...# #...# ####. .....", // b
    "..... ..... .###. #.... #.... #...# .###. .....", // c
    "....# ....# .##.# #..## #...# #...# .#### .....", // d
    "..... ..... .###. #...# ##### #.... .###. .....", // e
    "..##. .#..# .#... ###.. .#... .#... .#... .....", // f
    "..... ..... .#### #...# #...# .#### ....# .###.", // g
    "#.... #.... #.##. ##..# #...# #...# #...# .....", // h
    "..#.. ..... .##.. ..#.. ..#.. ..#.. .###. .....", // i
    "...#. ..... ..##. ...#. ...#. ...#. #..#. .##..", // j
    "#.... #.... #..#. #.#.. ##... #.#.. #..#. .....", // k
    ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###. .....", // l
    "..... ..... ##.#. #.#.# #.#.# #...# #...# .....", // m
    "..... ..... #.##. ##..# #...# #...# #...# .....", // n
    "..... ..... .###. #...# #...# #...# .###. .....", // o
    "..... ..... ####. #...# #...# ####. #.... #....", // p
    "..... ..... .#### #...# #...# .#### ....# ....#", // q
    "..... ..... #.##. ##..# #.... #.... #.... .....", // r
    "..... ..... .###. #.... .###. ....# ####. .....", // s
    ".#... .#... ###.. .#... .#... .#..# ..##. .....", // t
    "..... ..... #...# #...# #...# #..## .##.# .....", // u
    "..... ..... #...# #...# #...# .#.#. ..#.. .....", // v
    "..... ..... #...# #...# #.#.# #.#.# .#.#. .....", // w
    "..... ..... #...# .#.#. ..#.. .#.#. #...# .....", // x
    "..... ..... #...# #...# #...# .#### ....# .###.", // y
    "..... ..... ##### ...#. ..#.. .#... ##### .....", // z
    "...#. ..#.. ..#.. .#... ..#.. ..#.. ...#. .....", // {
    "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. .....", // |
    ".#... ..#.. ..#.. ...#. ..#.. ..#.. .#... .....", // }
    "..... ..... .#... #.#.# ...#. ..... ..... .....", // ~
];

/// The pictures above as bit rows (bit 4 = leftmost column), converted at compile time so a
/// malformed picture is a build error rather than a wrong glyph.
static GLYPHS: [[u8; GLYPH_H as usize]; 95] = parse_all(SOURCE);

const fn parse_all(src: [&str; 95]) -> [[u8; GLYPH_H as usize]; 95] {
    let mut out = [[0u8; GLYPH_H as usize]; 95];
    let mut i = 0;
    while i < src.len() {
        out[i] = parse_glyph(src[i]);
        i += 1;
    }
    out
}

const fn parse_glyph(picture: &str) -> [u8; GLYPH_H as usize] {
    let bytes = picture.as_bytes();
    let w = GLYPH_W as usize;
    assert!(
        bytes.len() == GLYPH_H as usize * (w + 1) - 1,
        "glyph picture has the wrong size"
    );
    let mut rows = [0u8; GLYPH_H as usize];
    let mut row = 0;
    while row < GLYPH_H as usize {
        let mut col = 0;
        while col < w {
            match bytes[row * (w + 1) + col] {
                b'#' => rows[row] |= 1 << (w - 1 - col),
                b'.' => {}
                _ => panic!("glyph pictures use only '#' and '.'"),
            }
            col += 1;
        }
        row += 1;
    }
    rows
}

/// The bit rows of `c`; anything outside printable ASCII shows as `?`.
fn glyph(c: char) -> &'static [u8; GLYPH_H as usize] {
    let code = c as u32;
    let index = if (32..=126).contains(&code) {
        code - 32
    } else {
        '?' as u32 - 32
    };
    &GLYPHS[index as usize]
}

/// Width in pixels of `text` drawn at `scale` (no trailing gap after the last character).
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count().min(u32::MAX as usize) as u32;
    n.saturating_mul(ADVANCE)
        .saturating_sub(1)
        .saturating_mul(scale.max(1))
}

/// Height in pixels of one line of text at `scale`, descender row included.
pub fn text_height(scale: u32) -> u32 {
    GLYPH_H * scale.max(1)
}

/// Draws `text` with its top-left corner at (`x`, `y`); each font pixel becomes a `scale` x `scale`
/// block (0 is treated as 1). Anything outside the image is clipped.
pub fn draw_text(img: &mut RgbImage, x: i32, y: i32, text: &str, colour: Rgb<u8>, scale: u32) {
    draw_glyphs(img, x, y, text, colour, scale, false);
}

/// Draws `text` rotated a quarter turn anticlockwise (reading bottom to top, as on a y axis);
/// (`x`, `y`) is the top-left corner of the rotated text's bounding box, which is
/// `text_height(scale)` wide and `text_width(text, scale)` tall.
pub fn draw_text_up(img: &mut RgbImage, x: i32, y: i32, text: &str, colour: Rgb<u8>, scale: u32) {
    draw_glyphs(img, x, y, text, colour, scale, true);
}

/// Cuts `text` so that it fits in `max_width` pixels at `scale`, ending with ".." when cut.
pub fn fit_text(text: &str, max_width: u32, scale: u32) -> String {
    if text_width(text, scale) <= max_width {
        return text.to_string();
    }
    let mut out: String = text.chars().collect();
    while !out.is_empty() {
        out.pop();
        let candidate = format!("{}..", out.trim_end());
        if text_width(&candidate, scale) <= max_width {
            return candidate;
        }
    }
    String::new()
}

fn draw_glyphs(
    img: &mut RgbImage,
    x: i32,
    y: i32,
    text: &str,
    colour: Rgb<u8>,
    scale: u32,
    up: bool,
) {
    let s = scale.max(1) as i64;
    let total = text_width(text, scale) as i64;
    for (k, c) in text.chars().enumerate() {
        let rows = glyph(c);
        // Position along the reading direction of this character's first column.
        let along = k as i64 * ADVANCE as i64 * s;
        // Stop once the remaining characters start past the image's far edge.
        let past_end = if up {
            y as i64 + total - along < 0
        } else {
            x as i64 + along >= img.width() as i64
        };
        if past_end {
            break;
        }
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_W as i64 {
                if bits & (1 << (GLYPH_W as i64 - 1 - col)) == 0 {
                    continue;
                }
                // u runs along the text, v across it (top to bottom). Upright, they are x and y;
                // rotated anticlockwise, the text runs upwards and glyph tops face left.
                let u = along + col * s;
                let v = r as i64 * s;
                let (px, py) = if up {
                    (x as i64 + v, y as i64 + total - u - s)
                } else {
                    (x as i64 + u, y as i64 + v)
                };
                super::fill_rect(img, px, py, s, s, colour);
            }
        }
    }
}
