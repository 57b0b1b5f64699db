//! Image preprocessing, matching timm's eval transform on PIL images:
//! `Resize(floor(size / crop_pct))` -> `CenterCrop(size)` -> `ToTensor()` -> `Normalize(mean, std)`.
//!
//! Output is CHW `f32` `[3, H, W]`, images of a batch laid one after the other.
//! Like PIL, EXIF orientation is ignored and alpha is dropped (not composited).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageFormat, ImageReader, RgbImage};

use crate::error::{Error, Result};
use crate::model::config::Preprocess;

mod pil_resize;
use pil_resize::pil_resize;

/// Formats the crate is built to read; anything else is refused with a clear message.
const FORMATS: [ImageFormat; 5] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Bmp,
    ImageFormat::Gif,
];

fn image_error(name: &str, reason: impl Into<String>) -> Error {
    Error::Image {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Decodes a JPEG, PNG, WebP, BMP or GIF (format guessed from the content) to RGB8.
/// Grayscale becomes RGB, alpha is dropped, a GIF gives its first frame.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(image_error(name, "empty file"));
    }
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| FORMATS.contains(f))
        .ok_or_else(|| image_error(name, "not a JPEG, PNG, WebP, BMP or GIF image"))?;
    let reader = ImageReader::with_format(Cursor::new(bytes), format);
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

/// Reads and decodes an image file; errors name the path.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(&bytes, &path.display().to_string())
}

/// Loads and preprocesses images into one `[N, 3, H, W]` buffer; stops at the first bad file.
pub fn load_batch(paths: &[PathBuf], p: &Preprocess) -> Result<Vec<f32>> {
    let (h, w) = p.input_size;
    let mut out = Vec::with_capacity(paths.len() * 3 * h * w);
    for path in paths {
        out.extend(preprocess(&load_image(path)?, p));
    }
    Ok(out)
}

/// Preprocesses browser `ImageData` (RGBA8, row-major, `width * height * 4` bytes); alpha is dropped.
pub fn preprocess_rgba(width: u32, height: u32, rgba: &[u8], p: &Preprocess) -> Result<Vec<f32>> {
    const NAME: &str = "RGBA buffer";
    if width == 0 || height == 0 {
        return Err(image_error(NAME, format!("empty image ({width}x{height})")));
    }
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
    Ok(preprocess(&img, p))
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
/// as torchvision's `CenterCrop` does.
pub fn preprocess(img: &RgbImage, p: &Preprocess) -> Vec<f32> {
    let resized = resize(img, p);
    center_crop_normalize(&resized, p)
}

/// Resizes like timm: the shorter side to `floor(size / crop_pct)`, keeping the aspect ratio.
fn resize(img: &RgbImage, p: &Preprocess) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return img.clone();
    }
    let (new_w, new_h) = resized_size(w, h, p);
    pil_resize(img, new_w as u32, new_h as u32, p.interpolation)
}

/// Output (width, height) of timm's eval resize for a `w x h` image.
fn resized_size(w: usize, h: usize, p: &Preprocess) -> (usize, usize) {
    let (th, tw) = p.input_size;
    let (sh, sw) = (scale_size(th, p.crop_pct), scale_size(tw, p.crop_pct));
    if sh == sw {
        // torchvision `Resize(int)`: shorter side -> size, longer side truncated.
        if w <= h {
            (sw, sw * h / w)
        } else {
            (sh * w / h, sh)
        }
    } else {
        // timm `ResizeKeepRatio(scale_size)` for a non-square target: the smaller of the two
        // ratios, each side rounded (Python `round`, half to even).
        let ratio = (h as f64 / sh as f64).min(w as f64 / sw as f64);
        let side = |x: usize| (x as f64 / ratio).round_ties_even() as usize;
        (side(w), side(h))
    }
}

/// timm's `math.floor(size / crop_pct)`. `crop_pct` is read back through its shortest decimal form
/// so that, e.g., 224 / 0.8 gives 280 as in Python and not 279 from the f32 0.800000011.
/// A non-positive or non-finite `crop_pct` is taken as 1 (no margin).
fn scale_size(size: usize, crop_pct: f32) -> usize {
    let pct: f64 = crop_pct.to_string().parse().unwrap_or(1.0);
    let pct = if pct.is_finite() && pct > 0.0 {
        pct
    } else {
        1.0
    };
    (size as f64 / pct).floor() as usize
}

/// Source index of the crop's first pixel along one axis, torchvision `CenterCrop` style:
/// `int(round((len - crop) / 2))` with Python's round-half-to-even, or, when the image is smaller
/// than the crop, minus the zero padding torchvision adds before it (`(crop - len) // 2`).
fn crop_start(len: usize, crop: usize) -> isize {
    if len >= crop {
        ((len - crop) as f64 / 2.0).round_ties_even() as isize
    } else {
        -(((crop - len) / 2) as isize)
    }
}

/// Center-crops `p.input_size`, scales to [0, 1] and normalises, writing CHW.
fn center_crop_normalize(img: &RgbImage, p: &Preprocess) -> Vec<f32> {
    let (h, w) = p.input_size;
    let top = crop_start(img.height() as usize, h);
    let left = crop_start(img.width() as usize, w);
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
