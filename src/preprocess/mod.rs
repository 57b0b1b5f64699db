//! Image preprocessing, matching timm's eval transform on PIL images:
//! `Resize(floor(size / crop_pct))` -> `CenterCrop(size)` -> `ToTensor()` -> `Normalize(mean, std)`.
//!
//! Output is CHW `f32` `[3, H, W]`, images of a batch laid one after the other.
//! Like PIL, EXIF orientation is ignored and alpha is dropped (not composited).

use std::io::Cursor;
#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};

use image::{ImageFormat, ImageReader, RgbImage};

use crate::error::{Error, Result};
use crate::limits;
use crate::model::vit::{CropOffset, Resize};
use crate::model::Preprocess;

pub(crate) mod pil_resize;
use pil_resize::pil_resize;

/// Formats the crate is built to read; anything else is refused with a clear message.
const FORMATS: [ImageFormat; 5] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Bmp,
    ImageFormat::Gif,
];

/// A `w x h` picture must stay within [`limits::MAX_IMAGE_PIXELS`].
fn check_pixels(name: &str, w: u32, h: u32) -> Result<()> {
    if w as u64 * h as u64 > limits::MAX_IMAGE_PIXELS {
        return Err(image_error(
            name,
            format!(
                "{w}x{h} pixels is over the limit of {} pixels",
                limits::MAX_IMAGE_PIXELS
            ),
        ));
    }
    Ok(())
}

fn image_error(name: &str, reason: impl Into<String>) -> Error {
    Error::Image {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Decodes a JPEG, PNG, WebP, BMP or GIF (format guessed from the content) to RGB8.
/// Grayscale becomes RGB, alpha is dropped, a GIF gives its first frame. The size in the file's
/// header is checked against [`limits::MAX_IMAGE_PIXELS`] before decoding, and a JPEG whose data
/// ends before its end marker (a truncated file, which a decoder would fill with grey) is refused.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(image_error(name, "empty file"));
    }
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| FORMATS.contains(f))
        .ok_or_else(|| image_error(name, "not a JPEG, PNG, WebP, BMP or GIF image"))?;
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| match e {
            // On wasm32 a decoder refuses a huge header itself (its buffer size overflows 32 bits).
            image::ImageError::Limits(_) => image_error(
                name,
                format!(
                    "the size in the {format:?} header is over the limit of {} pixels",
                    limits::MAX_IMAGE_PIXELS
                ),
            ),
            e => image_error(name, format!("cannot read the {format:?} header: {e}")),
        })?;
    check_pixels(name, w, h)?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(image_error(
            name,
            "the JPEG data ends before its end marker (a truncated file)",
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    // Room for the header's size as RGBA f32 and then some; the check above is the real limit.
    let mut decode_limits = image::Limits::default();
    decode_limits.max_alloc = Some(limits::MAX_IMAGE_PIXELS * 16);
    reader.limits(decode_limits);
    let img = reader.decode().map_err(|e| {
        let reason = match e {
            image::ImageError::Limits(_) => format!("too large to decode: {e}"),
            _ => format!("cannot decode {format:?} (corrupt or truncated?): {e}"),
        };
        image_error(name, reason)
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(image_error(
            name,
            format!("image is empty ({}x{})", img.width(), img.height()),
        ));
    }
    Ok(img.into_rgb8())
}

/// Whether a JPEG's entropy-coded data is followed by an end-of-image marker (`FF D9`): the last
/// start-of-scan marker must have one after it. Bytes after the marker (some cameras append data)
/// are allowed.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|m| m == [0xFF, 0xDA]);
    let end = bytes.windows(2).rposition(|m| m == [0xFF, 0xD9]);
    matches!((last_scan, end), (Some(s), Some(e)) if e > s)
}

/// Reads and decodes an image file (a regular file of at most [`limits::MAX_IMAGE_FILE_BYTES`]);
/// errors name the path.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bytes = limits::read_file(path, limits::MAX_IMAGE_FILE_BYTES, "an image")?;
    decode_image(&bytes, &path.display().to_string())
}

/// Loads and preprocesses images into one `[N, 3, H, W]` buffer; stops at the first bad file.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_batch(paths: &[PathBuf], p: &Preprocess) -> Result<Vec<f32>> {
    let (h, w) = p.input_size;
    let per_image = limits::mul(3 * h, w, "model input size")?;
    let mut out = Vec::with_capacity(limits::mul(paths.len(), per_image, "batch of images")?);
    for path in paths {
        let name = path.display().to_string();
        out.extend(preprocess_named(&load_image(path)?, p, &name)?);
    }
    Ok(out)
}

/// Preprocesses browser `ImageData` (RGBA8, row-major, `width * height * 4` bytes); alpha is dropped.
pub fn preprocess_rgba(width: u32, height: u32, rgba: &[u8], p: &Preprocess) -> Result<Vec<f32>> {
    const NAME: &str = "RGBA buffer";
    if width == 0 || height == 0 {
        return Err(image_error(NAME, format!("empty image ({width}x{height})")));
    }
    check_pixels(NAME, width, height)?;
    let expected = width as usize * height as usize * 4;
    if rgba.len() != expected {
        return Err(image_error(
            NAME,
            format!(
                "{} bytes for a {width}x{height} RGBA image, expected {expected}",
                rgba.len()
            ),
        ));
    }
    let rgb: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|px| [px[0], px[1], px[2]])
        .collect();
    let img = RgbImage::from_raw(width, height, rgb).expect("length checked above");
    preprocess_named(&img, p, NAME)
}

/// The picture a model sees: a preprocessed `[3, H, W]` tensor mapped back to 8-bit RGB.
pub fn to_rgb(input: &[f32], p: &Preprocess) -> RgbImage {
    let (h, w) = (p.input_size.0 as u32, p.input_size.1 as u32);
    let plane = (h * w) as usize;
    RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        image::Rgb(std::array::from_fn(|c| {
            let v = input.get(c * plane + i).copied().unwrap_or(0.0) * p.std[c] + p.mean[c];
            (v * 255.0).round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// Resize, center-crop and normalise one image to CHW `f32` `[3, H, W]`, `(H, W) = p.input_size`.
///
/// An empty image, or one smaller than the crop after resizing, is padded with black (pixel value 0)
/// as torchvision's `CenterCrop` does. An image whose resize would exceed
/// [`limits::MAX_RESIZED_PIXELS`] (an aspect ratio beyond about 1:256 at the usual sizes) is refused.
pub fn preprocess(img: &RgbImage, p: &Preprocess) -> Result<Vec<f32>> {
    preprocess_named(img, p, "image")
}

fn preprocess_named(img: &RgbImage, p: &Preprocess, name: &str) -> Result<Vec<f32>> {
    let resized = resize(img, p, name)?;
    Ok(center_crop_normalize(&resized, p))
}

/// Resizes like timm: the shorter side to `floor(size / crop_pct)`, keeping the aspect ratio.
fn resize(img: &RgbImage, p: &Preprocess, name: &str) -> Result<RgbImage> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Ok(img.clone());
    }
    let (new_w, new_h) = resized_size(w, h, p);
    if new_w * new_h > limits::MAX_RESIZED_PIXELS as f64 {
        return Err(image_error(
            name,
            format!(
                "a {w}x{h} image would be resized to {new_w:.0}x{new_h:.0} pixels before the crop, \
                 over the limit of {} (its aspect ratio is too extreme)",
                limits::MAX_RESIZED_PIXELS
            ),
        ));
    }
    Ok(pil_resize(img, new_w as u32, new_h as u32, p.interpolation))
}

/// Output (width, height) of timm's eval resize for a `w x h` image, as floats so that an absurd
/// size shows up as one (it is checked before anything is allocated).
fn resized_size(w: usize, h: usize, p: &Preprocess) -> (f64, f64) {
    let (th, tw) = p.input_size;
    let (sh, sw) = match p.resize {
        Resize::Exact(eh, ew) => return (ew as f64, eh as f64),
        Resize::ShortestEdge(s) => (s as f64, s as f64),
        Resize::CropPct => (scale_size(th, p.crop_pct), scale_size(tw, p.crop_pct)),
    };
    if sh == sw {
        // torchvision `Resize(int)`: shorter side -> size, longer side truncated (in integers,
        // as Python does; a size too large for that is infinite, and refused by the caller).
        let longer = |side: f64, long: usize, short: usize| {
            (side as u128)
                .checked_mul(long as u128)
                .map_or(f64::INFINITY, |x| (x / short as u128) as f64)
        };
        if w <= h {
            (sw, longer(sw, h, w))
        } else {
            (longer(sh, w, h), sh)
        }
    } else {
        // timm `ResizeKeepRatio(scale_size)` for a non-square target: the smaller of the two
        // ratios, each side rounded (Python `round`, half to even).
        let ratio = (h as f64 / sh).min(w as f64 / sw);
        let side = |x: usize| (x as f64 / ratio).round_ties_even();
        (side(w), side(h))
    }
}

/// timm's `math.floor(size / crop_pct)`. `crop_pct` is read back through its shortest decimal form
/// so that, e.g., 224 / 0.8 gives 280 as in Python and not 279 from the f32 0.800000011.
/// A non-positive or non-finite `crop_pct` is taken as 1 (no margin).
fn scale_size(size: usize, crop_pct: f32) -> f64 {
    let pct: f64 = crop_pct.to_string().parse().unwrap_or(1.0);
    let pct = if pct.is_finite() && pct > 0.0 {
        pct
    } else {
        1.0
    };
    (size as f64 / pct).floor()
}

/// Source index of the crop's first pixel along one axis, torchvision `CenterCrop` style:
/// `int(round((len - crop) / 2))` with Python's round-half-to-even, or, when the image is smaller
/// than the crop, minus the zero padding torchvision adds before it (`(crop - len) // 2`).
fn crop_start(len: usize, crop: usize, offset: CropOffset) -> isize {
    if len >= crop {
        match offset {
            CropOffset::Round => ((len - crop) as f64 / 2.0).round_ties_even() as isize,
            CropOffset::Floor => ((len - crop) / 2) as isize,
        }
    } else {
        -(((crop - len) / 2) as isize)
    }
}

/// Center-crops `p.input_size`, scales to [0, 1] and normalises, writing CHW.
fn center_crop_normalize(img: &RgbImage, p: &Preprocess) -> Vec<f32> {
    let (h, w) = p.input_size;
    let top = crop_start(img.height() as usize, h, p.crop_offset);
    let left = crop_start(img.width() as usize, w, p.crop_offset);
    let mut out = vec![0.0f32; 3 * h * w];
    for c in 0..3 {
        let plane = &mut out[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let value = pixel(img, left + x as isize, top + y as isize, c);
                // Same f32 arithmetic as ToTensor + Normalize.
                plane[y * w + x] = (value as f32 / 255.0 - p.mean[c]) / p.std[c];
            }
        }
    }
    out
}

/// Channel `c` at (x, y), or 0 (padding) outside the image.
fn pixel(img: &RgbImage, x: isize, y: isize, c: usize) -> u8 {
    let inside = (0..img.width() as isize).contains(&x) && (0..img.height() as isize).contains(&y);
    if inside {
        img.get_pixel(x as u32, y as u32)[c]
    } else {
        0
    }
}
