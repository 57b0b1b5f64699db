//! The statistics every report uses, in one place: quality figures are paired (the same items
//! under both settings) with the standard error of the paired difference; speed ratios are the
//! median of ratios paired by round (both settings played back to back, so a change of load on
//! the machine hits both alike).

/// A mean and its standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub se: f64,
}

/// The mean of `v` and its standard error (sample variance, n - 1).
pub fn mean_se(v: &[f64]) -> Estimate {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Estimate {
        mean,
        se: (var / n).sqrt(),
    }
}

/// The mean of `a[i] - b[i]` and its standard error: the paired difference of two settings on
/// the same items.
pub fn paired(a: &[f64], b: &[f64]) -> Estimate {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    mean_se(&d)
}

/// 1 where `x` holds, else 0: a share as a mean.
pub fn indicator(x: bool) -> f64 {
    if x {
        1.0
    } else {
        0.0
    }
}

/// The median of `v` (the mean of the middle two for an even count); 0 for none.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// The median of `num[i] / den[i]`: a speedup from times paired by round.
pub fn median_ratio(num: &[f64], den: &[f64]) -> f64 {
    let r: Vec<f64> = num
        .iter()
        .zip(den)
        .filter(|(_, d)| **d > 0.0)
        .map(|(n, d)| n / d)
        .collect();
    median(&r)
}

/// `(median, min, max)` of `v`.
pub fn median_spread(v: &[f64]) -> (f64, f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(v), min, max)
}

/// The cosine of two vectors, summed in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-30)
}

/// For every vector, the index of its nearest neighbour among the others by cosine (ties: the
/// lower index); `None` with fewer than two.
pub fn nearest_neighbours(v: &[Vec<f32>]) -> Vec<Option<usize>> {
    let unit: Vec<Vec<f64>> = v
        .iter()
        .map(|x| {
            let n = x
                .iter()
                .map(|a| (*a as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-30);
            x.iter().map(|a| *a as f64 / n).collect()
        })
        .collect();
    (0..unit.len())
        .map(|i| {
            (0..unit.len())
                .filter(|&j| j != i)
                .map(|j| {
                    let dot: f64 = unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum();
                    (j, dot)
                })
                .fold(None, |best: Option<(usize, f64)>, (j, d)| match best {
                    Some((_, bd)) if bd >= d => best,
                    _ => Some((j, d)),
                })
                .map(|(j, _)| j)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_paired_standard_errors() {
        let e = mean_se(&[1.0, 0.0, 1.0, 0.0]);
        assert_eq!(e.mean, 0.5);
        // Sample variance 1/3, n = 4.
        assert!((e.se - (1.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
        let p = paired(&[1.0, 1.0, 0.0], &[1.0, 0.0, 0.0]);
        assert!((p.mean - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(mean_se(&[]).mean, 0.0);
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_ratio(&[2.0, 4.0, 9.0], &[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(median_spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
    }

    #[test]
    fn nearest_neighbours_by_cosine() {
        let v = vec![vec![1.0, 0.0], vec![0.9, 0.1], vec![0.0, 1.0]];
        assert_eq!(nearest_neighbours(&v), vec![Some(1), Some(0), Some(1)]);
        assert_eq!(nearest_neighbours(&v[..1]), vec![None]);
        assert!((cosine(&[1.0, 0.0], &[0.0, 2.0])).abs() < 1e-12);
    }
}
