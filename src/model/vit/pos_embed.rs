//! Position embeddings for an input size other than the checkpoint's: the patch grid's rows
//! resampled bicubically, as Hugging Face's DINOv2 does at every forward pass
//! (`torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`): DINOv2 checkpoints
//! hold a 37x37 grid (518 pixels) and their processors crop 224. `Dinov2Model` resamples without
//! antialiasing, `Dinov2WithRegistersModel` with it (PyTorch's antialiased bicubic is Pillow's
//! filter); both are here, matched to PyTorch's numbers. Done once at load, on the host.

/// The prefix rows a position table may have before its patches: one for every prefix token, for
/// the head's tokens only (DINOv2 gives its registers no position), or none (timm's
/// `no_embed_class`).
pub(crate) fn position_prefixes(prefix: usize, head: usize) -> Vec<usize> {
    let mut rows = vec![prefix, head, 0];
    rows.dedup();
    rows
}

/// The square grid of patches a position table of `rows` rows holds after one of `prefixes`:
/// `(prefix rows, side)`, the first that fits.
pub(crate) fn square_grid(rows: usize, prefixes: &[usize]) -> Option<(usize, usize)> {
    prefixes.iter().find_map(|&k| {
        let patches = rows.checked_sub(k)?;
        let g = (patches as f64).sqrt().round() as usize;
        (g > 0 && g * g == patches).then_some((k, g))
    })
}

/// How a grid is resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// PyTorch's bicubic: four taps, cubic convolution with a = -0.75, border clamped.
    Bicubic,
    /// PyTorch's `antialias=True` bicubic: Pillow's filter (a = -0.5), widened by the scale
    /// when shrinking, weights normalised over the taps inside the grid.
    BicubicAntialias,
}

use crate::preprocess::pil_resize::{antialias_taps, bicubic};

/// PyTorch's cubic convolution coefficient.
const A: f32 = -0.75;

/// The four weights of the taps at `-1, 0, 1, 2` around a sample `t` in `[0, 1)` past its floor.
fn cubic_weights(t: f32) -> [f32; 4] {
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// For each output index along one axis: the first of its four taps and their weights, the way
/// PyTorch places a sample (`scale * (i + 0.5) - 0.5`, `scale = input / output`) and clamps the
/// taps to the border.
fn taps(input: usize, output: usize) -> Vec<([usize; 4], [f32; 4])> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let real = scale * (i as f32 + 0.5) - 0.5;
            let floor = real.floor();
            let at = |k: isize| (floor as isize + k).clamp(0, input as isize - 1) as usize;
            ([at(-1), at(0), at(1), at(2)], cubic_weights(real - floor))
        })
        .collect()
}

/// `rows` resampled along one axis: `[outer, from, inner]` to `[outer, to, inner]`.
fn resample_axis(
    rows: &[f32],
    (outer, from, inner): (usize, usize, usize),
    taps: &[(usize, Vec<f64>)],
) -> Vec<f32> {
    let to = taps.len();
    let mut out = vec![0.0f32; outer * to * inner];
    for o in 0..outer {
        for (t, (first, weights)) in taps.iter().enumerate() {
            let dst = &mut out[(o * to + t) * inner..][..inner];
            for (k, &w) in weights.iter().enumerate() {
                let src = &rows[(o * from + first + k) * inner..][..inner];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += w as f32 * s;
                }
            }
        }
    }
    out
}

/// `rows`, a `[from.0 * from.1, dim]` grid of embeddings (row-major), resampled to `to`.
pub fn resize_grid(
    rows: &[f32],
    from: (usize, usize),
    to: (usize, usize),
    dim: usize,
    how: Resample,
) -> Vec<f32> {
    debug_assert_eq!(rows.len(), from.0 * from.1 * dim);
    if from == to {
        return rows.to_vec();
    }
    if how == Resample::BicubicAntialias {
        // Separable, the width first, as PyTorch runs it; its taps are Pillow's (PIL's bicubic
        // kernel over a support of 2, widened when shrinking).
        let aa = |input, output| antialias_taps(input, output, bicubic, 2.0);
        let wide = resample_axis(rows, (from.0, from.1, dim), &aa(from.1, to.1));
        return resample_axis(&wide, (1, from.0, to.1 * dim), &aa(from.0, to.0));
    }
    let (ty, tx) = (taps(from.0, to.0), taps(from.1, to.1));
    let mut out = vec![0.0f32; to.0 * to.1 * dim];
    for (y, (ys, wy)) in ty.iter().enumerate() {
        for (x, (xs, wx)) in tx.iter().enumerate() {
            let o = &mut out[(y * to.1 + x) * dim..][..dim];
            for (&sy, &vy) in ys.iter().zip(wy) {
                for (&sx, &vx) in xs.iter().zip(wx) {
                    let w = vy * vx;
                    let src = &rows[(sy * from.1 + sx) * dim..][..dim];
                    for (o, s) in o.iter_mut().zip(src) {
                        *o += w * s;
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_size_is_the_identity_and_weights_sum_to_one() {
        let rows: Vec<f32> = (0..3 * 4 * 2).map(|i| i as f32).collect();
        for how in [Resample::Bicubic, Resample::BicubicAntialias] {
            assert_eq!(resize_grid(&rows, (3, 4), (3, 4), 2, how), rows);
        }
        for t in [0.0, 0.25, 0.5, 0.9] {
            let s: f32 = cubic_weights(t).iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "{t}: {s}");
        }
    }

    /// Both modes against `torch.nn.functional.interpolate(x, size, mode="bicubic",
    /// align_corners=False, antialias=...)` of `x = 0.1 i^2 - i` (i = 0..12 over a 3x4 grid), up
    /// to 5x6 and down to 2x3 (PyTorch 2.15's numbers, rounded to 5 digits).
    #[test]
    fn resampling_matches_pytorch() {
        let x: Vec<f32> = (0..12).map(|i| 0.1 * (i * i) as f32 - i as f32).collect();
        let cases: [(Resample, (usize, usize), &[f32]); 4] = [
            (
                Resample::Bicubic,
                (5, 6),
                &[
                    0.31519, -0.18518, -0.93266, -1.3786, -1.88443, -2.15007, -0.93262, -1.27048,
                    -1.75207, -2.0088, -2.24872, -2.35186, -2.39132, -2.45938, -2.49954, -2.44213,
                    -2.24062, -2.07396, -2.12202, -1.92027, -1.519, -1.14746, -0.50452, -0.06806,
                    -1.59063, -1.22637, -0.55921, 0.00154, 0.91038, 1.50935,
                ],
            ),
            (
                Resample::Bicubic,
                (2, 3),
                &[-0.66957, -1.62969, -2.17221, -1.80011, -0.98281, 0.25207],
            ),
            (
                Resample::BicubicAntialias,
                (5, 6),
                &[
                    0.24431, -0.22608, -0.91986, -1.42678, -1.88102, -2.13687, -0.83451, -1.15917,
                    -1.6226, -1.92608, -2.14996, -2.26007, -2.39342, -2.45294, -2.49722, -2.43056,
                    -2.23529, -2.08026, -2.01801, -1.81238, -1.43752, -1.0007, -0.3863, 0.03388,
                    -1.58965, -1.23829, -0.63307, 0.00718, 0.85194, 1.41785,
                ],
            ),
            (
                Resample::BicubicAntialias,
                (2, 3),
                &[-1.00722, -1.76424, -2.19196, -1.9018, -1.21207, -0.19304],
            ),
        ];
        for (how, to, want) in cases {
            let got = resize_grid(&x, (3, 4), to, 1, how);
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((g - w).abs() < 2e-5, "{how:?} {to:?} [{i}]: {g} vs {w}");
            }
        }
    }
}
