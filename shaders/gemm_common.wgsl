// What every GEMM kernel shares (the host appends this file to matmul.wgsl and gemm_rb.wgsl): the
// epilogue switches and the epilogue
//   C[m, n] = (alpha * acc (+ bias[n])) -> (GELU) -> (+ C[m, n])
// It uses the including shader's bindings `bias`, `c` (of `T_c`, f32 or f16) and `p`.

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
