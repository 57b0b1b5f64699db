//! PIL's `Image.resize`, reproduced bit for bit (kept by hand: no crate matches Pillow's rounding).
//!
//! The image crate's `resize` has the same kernels but filters vertically first and keeps the
//! intermediate in f32, whereas PIL filters horizontally first and rounds and clamps to u8 in
//! between; Catmull-Rom overshoot at sharp edges then differs by up to ~12 levels. So this is
//! Pillow's `Resample.c` (checked bit-exact against Pillow 13 with timm's eval transform): the same
//! taps, fixed-point weights, rounding and pass order.

use image::{Rgb, RgbImage};

use crate::model::Interpolation;

/// Fractional bits of PIL's fixed-point weights for 8-bit images (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A PIL resampling kernel and its support (radius) at scale 1.
struct Filter {
    kernel: fn(f64) -> f64,
    support: f64,
}

/// PIL's bicubic is cubic convolution with a = -0.5 (Catmull-Rom); PyTorch's antialiased bicubic
/// uses the same kernel (`model::vit::pos_embed`).
pub(crate) fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn bilinear(x: f64) -> f64 {
    (1.0 - x.abs()).max(0.0)
}

fn lanczos(x: f64) -> f64 {
    let sinc = |x: f64| {
        if x == 0.0 {
            1.0
        } else {
            (x * std::f64::consts::PI).sin() / (x * std::f64::consts::PI)
        }
    };
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Resizes to `new_w x new_h` as PIL's `Image.resize(size, resample)` does; same size is a copy.
pub(super) fn pil_resize(
    img: &RgbImage,
    new_w: u32,
    new_h: u32,
    interpolation: Interpolation,
) -> RgbImage {
    let filter = match interpolation {
        Interpolation::Nearest => return resize_nearest(img, new_w, new_h),
        Interpolation::Bilinear => Filter {
            kernel: bilinear,
            support: 1.0,
        },
        Interpolation::Bicubic => Filter {
            kernel: bicubic,
            support: 2.0,
        },
        Interpolation::Lanczos => Filter {
            kernel: lanczos,
            support: 3.0,
        },
    };
    // Two passes with a u8 image in between. Pillow 13 runs the vertical pass first when the
    // height shrinks by more than twice as many pixels as the width (older Pillow: always
    // horizontal first); a pass whose size is kept is skipped.
    let (dx, dy) = (
        img.width() as i64 - new_w as i64,
        img.height() as i64 - new_h as i64,
    );
    let vertical_first = dy > 0 && dy > 2 * dx;
    let mut out = img.clone();
    for horizontal in [!vertical_first, vertical_first] {
        let (len, new_len) = if horizontal {
            (out.width(), new_w)
        } else {
            (out.height(), new_h)
        };
        if len != new_len {
            out = resample_pass(&out, new_len, &filter, horizontal);
        }
    }
    out
}

/// PIL's nearest (`ImagingScaleAffine`): source index `floor((i + 0.5) * in / out)`, with the
/// position accumulated step by step in f64 as PIL does (a direct product differs at some ties).
fn resize_nearest(img: &RgbImage, new_w: u32, new_h: u32) -> RgbImage {
    let sources = |len: u32, new_len: u32| -> Vec<u32> {
        let step = len as f64 / new_len as f64;
        let mut pos = 0.5 * step;
        (0..new_len)
            .map(|_| {
                let i = (pos as u32).min(len - 1);
                pos += step;
                i
            })
            .collect()
    };
    let (xs, ys) = (sources(img.width(), new_w), sources(img.height(), new_h));
    RgbImage::from_fn(new_w, new_h, |x, y| {
        *img.get_pixel(xs[x as usize], ys[y as usize])
    })
}

/// Taps of one output pixel: the first source index and fixed-point weights.
struct Taps {
    start: u32,
    weights: Vec<i64>,
}

/// PIL's `precompute_coeffs` for resampling `in_len` samples to `out_len` with `kernel` of radius
/// `support`: per output sample, the first input index and the weights, normalised to sum to one.
/// Downscaling stretches the kernel over `scale` inputs (antialiasing). PyTorch's antialiased
/// interpolation computes the same taps (`model::vit::pos_embed`).
pub(crate) fn antialias_taps(
    in_len: usize,
    out_len: usize,
    kernel: fn(f64) -> f64,
    support: f64,
) -> Vec<(usize, Vec<f64>)> {
    let scale = in_len as f64 / out_len as f64;
    let filter_scale = scale.max(1.0);
    let inv_filter_scale = 1.0 / filter_scale; // PIL multiplies by the inverse: same rounding
    let support = support * filter_scale;
    (0..out_len)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            // PIL truncates `x + 0.5` to round the bounds.
            let start = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(in_len as i64) as usize;
            let mut w: Vec<f64> = (start..end)
                .map(|x| kernel((x as f64 - center + 0.5) * inv_filter_scale))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum != 0.0 {
                w.iter_mut().for_each(|k| *k /= sum);
            }
            (start, w)
        })
        .collect()
}

/// [`antialias_taps`] with PIL's fixed-point weights for 8-bit images (`normalize_coeffs_8bpc`).
fn taps(in_len: u32, out_len: u32, filter: &Filter) -> Vec<Taps> {
    let one = (1i64 << PRECISION_BITS) as f64;
    antialias_taps(
        in_len as usize,
        out_len as usize,
        filter.kernel,
        filter.support,
    )
    .into_iter()
    .map(|(start, w)| Taps {
        start: start as u32,
        // C's `(int)(k * one ± 0.5)`: round half away from zero.
        weights: w
            .iter()
            .map(|&k| (k * one + 0.5f64.copysign(k)) as i64)
            .collect(),
    })
    .collect()
}

/// One PIL resampling pass along x (`horizontal`) or y, rounding and clamping to u8.
fn resample_pass(img: &RgbImage, new_len: u32, filter: &Filter, horizontal: bool) -> RgbImage {
    let (w, h) = img.dimensions();
    let taps = taps(if horizontal { w } else { h }, new_len, filter);
    let (out_w, out_h) = if horizontal {
        (new_len, h)
    } else {
        (w, new_len)
    };
    RgbImage::from_fn(out_w, out_h, |x, y| {
        let t = &taps[if horizontal { x } else { y } as usize];
        let mut acc = [1i64 << (PRECISION_BITS - 1); 3]; // + 0.5 to round
        for (k, &weight) in (t.start..).zip(&t.weights) {
            let px = if horizontal {
                img.get_pixel(k, y)
            } else {
                img.get_pixel(x, k)
            };
            for c in 0..3 {
                acc[c] += px[c] as i64 * weight;
            }
        }
        Rgb(acc.map(|a| (a >> PRECISION_BITS).clamp(0, 255) as u8))
    })
}
