// What every GEMM kernel shares (the host appends this file to matmul.wgsl, gemm_tiled.wgsl and
// gemm_rb.wgsl): where matrix z starts, the epilogue switches and the epilogue
//   C[m, n] = (alpha * acc (+ bias[n])) -> (GELU) -> (+ C[m, n])
// It uses the including shader's bindings `bias`, `c` (of `T_c`, f32 or f16) and `p`.

// Where matrix z of A, B and C starts.
struct Bases { a: u32, b: u32, c: u32 }

fn bases(z: u32) -> Bases {
    let zo = z / p.heads;
    let zi = z % p.heads;
    return Bases(
        p.a_off + zo * p.a_zo + zi * p.a_zi,
        p.b_off + zo * p.b_zo + zi * p.b_zi,
        p.c_off + zo * p.c_zo + zi * p.c_zi,
    );
}

// Threshold pruning leaves each item (image) with a count of live rows, the first ones; the rest
// are masked and nothing reads them, so no GEMM computes them. Row `row` of matrix z belongs to
// item (z / heads) * ceil(m / live_rows) + row / live_rows, at row row % live_rows of it.
// live_rows = 0: every row is live. `live` is bound by the including shader.
fn row_live(z: u32, row: u32) -> bool {
    if (p.live_rows == 0u) {
        return true;
    }
    let item = (z / p.heads) * ((p.m + p.live_rows - 1u) / p.live_rows) + row / p.live_rows;
    return row % p.live_rows < live[item];
}

// Whether any of rows m0 .. m0 + rows of matrix z is live: live rows come first in every item,
// so the first row of each item the range touches decides for that item. Uniform across a
// workgroup when m0 is (`live` is read-only).
fn rows_live(z: u32, m0: u32, rows: u32) -> bool {
    if (p.live_rows == 0u) {
        return true;
    }
    let end = min(m0 + rows, p.m);
    var r = m0;
    while (r < end) {
        if (row_live(z, r)) {
            return true;
        }
        r = r - r % p.live_rows + p.live_rows;
    }
    return false;
}

override HAS_BIAS: bool = false;
override GELU: bool = false;
override ACCUMULATE: bool = false;

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): WGSL has no erf, and timm/HF use the exact GELU.
fn erf(x: f32) -> f32 {
    let s = sign(x);
    let ax = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-ax * ax);
    return s * y;
}

fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf(x * 0.70710678118654752));
}

fn store(c_base: u32, row: u32, col: u32, acc: f32) {
    var v = p.alpha * acc;
    if HAS_BIAS {
        v += bias[p.bias_off + col];
    }
    if GELU {
        v = gelu(v);
    }
    let i = c_base + row * p.c_rs + col;
    if ACCUMULATE {
        v += f32(c[i]);
    }
    c[i] = T_c(v);
}
