//! The CPU drawing module: line charts and token-pruning panels, text in the embedded font.
//!
//! Set `ZEROPRUNE_DRAW_SAMPLES=DIR` to also write a sample chart and panel picture to DIR for a
//! look by eye (`draw_chart.png`, `draw_tokens.png`).

use image::{Rgb, RgbImage};
use zeroprune::draw::{line_chart, nice_ticks, panel_layout, token_panels, Series, PALETTE};

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

fn count(img: &RgbImage, colour: Rgb<u8>) -> usize {
    img.pixels().filter(|p| **p == colour).count()
}

/// Bounding box (x0, y0, x1, y1), inclusive, of the pixels that are not `background`.
fn ink_box(img: &RgbImage, background: Rgb<u8>) -> Option<(u32, u32, u32, u32)> {
    let mut bb: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in img.enumerate_pixels() {
        if *p != background {
            bb = Some(match bb {
                None => (x, y, x, y),
                Some((a, b, c, d)) => (a.min(x), b.min(y), c.max(x), d.max(y)),
            });
        }
    }
    bb
}

fn series(label: &str, points: &[(f64, f64)]) -> Series {
    Series {
        label: label.to_string(),
        points: points.to_vec(),
    }
}

fn png_round_trip(img: &RgbImage, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    img.save(&path).unwrap();
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), img.dimensions());
    assert!(back == *img, "{name} changed on the way through PNG");
}

// ---------------------------------------------------------------------------------------------
// Charts

#[test]
fn nice_ticks_are_round_and_inside_the_range() {
    assert_eq!(
        nice_ticks(0.0, 1.0, 5),
        vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    );
    assert_eq!(nice_ticks(-3.0, 97.0, 5), vec![0.0, 20.0, 40.0, 60.0, 80.0]);
    for (lo, hi, n) in [
        (0.03, 0.91, 6),
        (-1234.5, 98765.0, 8),
        (1e-7, 3e-7, 4),
        (5.0, 5.1, 3),
    ] {
        let t = nice_ticks(lo, hi, n);
        assert!(!t.is_empty() && t.len() <= n + 1, "{lo}..{hi}: {t:?}");
        assert!(
            t.iter().all(|v| *v >= lo - 1e-12 && *v <= hi + 1e-12),
            "{lo}..{hi}: {t:?}"
        );
        if t.len() >= 2 {
            let step = t[1] - t[0];
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6),
                "step {step}"
            );
        }
    }
    assert_eq!(nice_ticks(2.0, 2.0, 5), vec![2.0]);
    assert!(nice_ticks(f64::NAN, 1.0, 5).is_empty());
    assert!(nice_ticks(1.0, 0.0, 5).is_empty());
    assert!(nice_ticks(0.0, f64::INFINITY, 5).is_empty());
    assert!(!nice_ticks(-f64::MAX, f64::MAX, 5).is_empty());
}

#[test]
fn a_series_is_drawn_in_its_colour_and_two_series_in_two() {
    let one = line_chart(
        "t",
        "x",
        "y",
        &[series("a", &[(0.0, 0.0), (1.0, 1.0)])],
        640,
        400,
    );
    assert_eq!(one.dimensions(), (640, 400));
    assert!(count(&one, PALETTE[0]) > 50);
    assert_eq!(count(&one, PALETTE[1]), 0);

    let two = line_chart(
        "t",
        "x",
        "y",
        &[
            series("a", &[(0.0, 0.0), (1.0, 1.0)]),
            series("b", &[(0.0, 1.0), (1.0, 0.0)]),
        ],
        640,
        400,
    );
    assert!(count(&two, PALETTE[0]) > 50);
    assert!(count(&two, PALETTE[1]) > 50);
}

#[test]
fn palette_has_eight_distinct_colours_unlike_white() {
    for (i, a) in PALETTE.iter().enumerate() {
        assert_ne!(*a, WHITE);
        for b in &PALETTE[i + 1..] {
            assert_ne!(a, b);
        }
    }
    // Series 0..8 each show up in their own colour.
    let many: Vec<Series> = (0..8)
        .map(|i| series(&format!("s{i}"), &[(0.0, i as f64), (1.0, i as f64 + 0.5)]))
        .collect();
    let img = line_chart("", "", "", &many, 800, 500);
    for (i, c) in PALETTE.iter().enumerate() {
        assert!(count(&img, *c) > 20, "series {i} colour missing");
    }
}

/// Mean row of the colour's pixels in the leftmost column where it appears (the legend sits
/// right of the plot, so the left end is the series' own first point).
fn leftmost_mean_row(img: &RgbImage, colour: Rgb<u8>) -> f64 {
    let x_min = img
        .enumerate_pixels()
        .filter(|(_, _, p)| **p == colour)
        .map(|(x, _, _)| x)
        .min()
        .unwrap();
    let rows: Vec<u32> = (0..img.height())
        .filter(|&y| *img.get_pixel(x_min, y) == colour)
        .collect();
    rows.iter().sum::<u32>() as f64 / rows.len() as f64
}

#[test]
fn points_land_on_the_right_side() {
    let (w, h) = (600u32, 400u32);
    let rising = line_chart(
        "",
        "x",
        "y",
        &[series("up", &[(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)])],
        w,
        h,
    );
    let falling = line_chart(
        "",
        "x",
        "y",
        &[series("down", &[(1.0, 30.0), (2.0, 20.0), (3.0, 10.0)])],
        w,
        h,
    );
    let c = PALETTE[0];
    // Rising: starts low on the left. Falling: starts high on the left.
    assert!(leftmost_mean_row(&rising, c) > h as f64 / 2.0);
    assert!(leftmost_mean_row(&falling, c) < h as f64 / 2.0);
    // Rising: there is series colour in the upper right quarter and in the lower left quarter.
    let in_quarter = |img: &RgbImage, right: bool, lower: bool| {
        img.enumerate_pixels().any(|(x, y, p)| {
            *p == c && (x >= w / 2) == right && (y >= h / 2) == lower && x < w * 3 / 4
        })
    };
    assert!(in_quarter(&rising, false, true));
    assert!(in_quarter(&rising, true, false));
    assert!(in_quarter(&falling, false, false));
}

/// Whether some line (a column when `columns`, else a row) free of `colour` has the colour on both
/// sides of it: the legend's swatch is then apart from the plotted series.
fn colour_split_by_a_free_line(img: &RgbImage, colour: Rgb<u8>, columns: bool) -> bool {
    let n = if columns { img.width() } else { img.height() };
    let has = |k: u32| {
        if columns {
            (0..img.height()).any(|y| *img.get_pixel(k, y) == colour)
        } else {
            (0..img.width()).any(|x| *img.get_pixel(x, k) == colour)
        }
    };
    let lines: Vec<bool> = (0..n).map(has).collect();
    let first = lines.iter().position(|&b| b).unwrap();
    let last = lines.iter().rposition(|&b| b).unwrap();
    lines[first..=last].iter().any(|&b| !b)
}

#[test]
fn legend_sits_outside_the_plot() {
    // A short label: the legend goes right of the plot, so some column between the series and
    // the legend swatch holds none of the series colour.
    let img = line_chart(
        "",
        "",
        "",
        &[series("a", &[(0.0, 0.0), (1.0, 1.0)])],
        800,
        400,
    );
    assert!(
        colour_split_by_a_free_line(&img, PALETTE[0], true),
        "legend expected right of the plot"
    );
    // A label too long for the side: the legend goes below, apart from the (flat) series.
    let long = "a very long series label that could never fit to the right of the plot";
    let img = line_chart(
        "",
        "",
        "",
        &[series(long, &[(0.0, 1.0), (1.0, 1.0)])],
        800,
        400,
    );
    assert!(
        colour_split_by_a_free_line(&img, PALETTE[0], false),
        "legend expected below the plot"
    );
}

#[test]
fn empty_and_odd_charts_do_not_panic() {
    // No series: just axes, no series colour anywhere.
    let img = line_chart("Nothing", "x", "y", &[], 400, 300);
    assert!(ink_box(&img, WHITE).is_some(), "axes expected");
    assert!(PALETTE.iter().all(|c| count(&img, *c) == 0));

    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let cases: Vec<Vec<Series>> = vec![
        vec![series("one point", &[(1.0, 2.0)])],
        vec![series("zero", &[(0.0, 0.0)])],
        vec![series("empty", &[])],
        vec![series("", &[(0.0, 1.0), (1.0, 2.0)])],
        vec![series("all nan", &[(nan, nan), (nan, 1.0)])],
        vec![series(
            "some nan",
            &[(0.0, 1.0), (nan, 3.0), (2.0, inf), (3.0, 2.0), (-inf, 0.0)],
        )],
        vec![series("flat", &[(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)])],
        vec![series(
            "huge",
            &[(-f64::MAX, f64::MAX), (f64::MAX, -f64::MAX)],
        )],
        vec![series("tiny", &[(0.0, 5e-324), (1e-300, 0.0)])],
        vec![series("big", &[(1e9, 3e12), (2e9, 4e12)])],
        (0..20)
            .map(|i| {
                series(
                    &format!("series number {i}"),
                    &[(i as f64, 0.0), (0.0, i as f64)],
                )
            })
            .collect(),
    ];
    for (k, s) in cases.iter().enumerate() {
        for (w, h) in [
            (0, 0),
            (1, 1),
            (7, 3),
            (40, 30),
            (120, 80),
            (300, 200),
            (900, 500),
        ] {
            let img = line_chart(
                "A title that is far too long for a small chart",
                "x label",
                "y label",
                s,
                w,
                h,
            );
            assert_eq!(img.dimensions(), (w, h), "case {k}");
        }
    }
    // A single point still shows up.
    let img = line_chart("", "", "", &[series("p", &[(1.0, 2.0)])], 300, 200);
    assert!(count(&img, PALETTE[0]) > 5);
}

/// Grey pixels strictly between the chart's ink (51) and grid (228) greys, other than the
/// legend border's (190): the anti-aliased edges of text, which nothing else in a chart has.
fn text_edges(img: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> usize {
    let part = image::imageops::crop_imm(img, x, y, w, h).to_image();
    part.pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            r == g && g == b && r > 51 && r < 228 && r != 190
        })
        .count()
}

#[test]
fn chart_text_is_set_in_the_embedded_font() {
    // Text is set by the font embedded in the binary, no system font is looked up: the title
    // leaves ink above the plot, the tick labels left of and below it.
    let (w, h) = (640u32, 400u32);
    let data = [series("a", &[(0.0, 0.0), (1.0, 1.0)])];
    let bare = line_chart("", "", "", &data, w, h);
    let titled = line_chart("A title", "", "", &data, w, h);
    assert_eq!(
        text_edges(&bare, 0, 0, w, 14),
        0,
        "text above the plot without a title"
    );
    assert!(
        text_edges(&titled, 0, 0, w, 30) > 20,
        "title missing: {}",
        text_edges(&titled, 0, 0, w, 30)
    );
    assert!(
        text_edges(&bare, 0, 0, w / 10, h) > 20,
        "y tick labels missing"
    );
    assert!(
        text_edges(&bare, 0, h * 9 / 10, w, h / 10) > 20,
        "x tick labels missing"
    );
}

#[test]
fn chart_survives_png() {
    let img = line_chart(
        "Round trip",
        "x",
        "y",
        &[series("a", &[(0.0, 1.0), (2.0, 3.0)])],
        320,
        240,
    );
    png_round_trip(&img, "chart.png");
}

// ---------------------------------------------------------------------------------------------
// Token panels

/// A bright, non-grey 28x28 test image: every pixel distinct, all channels at least 60.
fn test_image() -> RgbImage {
    RgbImage::from_fn(28, 28, |x, y| {
        Rgb([60 + 6 * x as u8, 60 + 6 * y as u8, 200 - 3 * x as u8])
    })
}

#[test]
fn panels_are_laid_out_side_by_side() {
    let img = test_image();
    let steps = vec![
        (
            "block 3: 98 kept".to_string(),
            (0..98).collect::<Vec<u32>>(),
        ),
        ("block 6".to_string(), vec![]),
    ];
    let out = token_panels(&img, (14, 14), &steps);
    let layout = panel_layout(28, 28, &["input", "block 3: 98 kept", "block 6"]);
    assert_eq!(layout.panels, 3);
    assert_eq!(layout.scale, 8, "28 px wide must be scaled to at least 224");
    assert_eq!((layout.panel_w, layout.panel_h), (224, 224));
    assert_eq!(out.width(), 3 * layout.panel_w + 4 * layout.gap);
    assert_eq!(out.dimensions(), (layout.width(), layout.height()));
    assert!(
        layout.panel_y() > layout.text_size,
        "titles need room above the panels"
    );

    // The input panel is the image scaled up by whole pixels, untouched.
    let (x0, y0) = (layout.panel_x(0), layout.panel_y());
    for y in 0..layout.panel_h {
        for x in 0..layout.panel_w {
            let want = img.get_pixel(x / layout.scale, y / layout.scale);
            assert_eq!(
                out.get_pixel(x0 + x, y0 + y),
                want,
                "input panel at ({x}, {y})"
            );
        }
    }
    // Each title has ink above its own panel.
    for i in 0..3 {
        let band =
            image::imageops::crop_imm(&out, layout.panel_x(i), 0, layout.panel_w, layout.panel_y())
                .to_image();
        assert!(ink_box(&band, WHITE).is_some(), "title {i} missing");
    }
}

#[test]
fn dropped_patches_are_darker_and_kept_ones_unchanged() {
    let img = test_image();
    // 14x14 grid on 28x28: each patch is 2x2 input pixels, 16x16 panel pixels.
    let kept: Vec<u32> = (0..196).filter(|p| p % 3 != 0).collect();
    let out = token_panels(&img, (14, 14), &[("step".to_string(), kept.clone())]);
    let layout = panel_layout(28, 28, &["input", "step"]);
    let cell = 2 * layout.scale;
    let luma = |p: &Rgb<u8>| p.0.iter().map(|&c| c as u32).sum::<u32>();
    for patch in 0..196u32 {
        let (r, c) = (patch / 14, patch % 14);
        // Inside the patch, away from the grid line on its first row and column.
        for (dx, dy) in [(1, 1), (cell / 2, cell / 2), (cell - 1, cell - 1)] {
            let (x, y) = (c * cell + dx, r * cell + dy);
            let input = out.get_pixel(layout.panel_x(0) + x, layout.panel_y() + y);
            let step = out.get_pixel(layout.panel_x(1) + x, layout.panel_y() + y);
            if kept.contains(&patch) {
                assert_eq!(step, input, "kept patch {patch} changed");
            } else {
                assert!(
                    luma(step) + 150 < luma(input),
                    "dropped patch {patch} not darker: {step:?} vs {input:?}"
                );
                let spread = |p: &Rgb<u8>| {
                    *p.0.iter().max().unwrap() as i32 - *p.0.iter().min().unwrap() as i32
                };
                assert!(
                    spread(step) < spread(input),
                    "dropped patch {patch} not desaturated"
                );
            }
        }
    }
    // Grid lines mark patch boundaries in the step panel (row 16 is the top of patch row 1).
    let on_line = out.get_pixel(layout.panel_x(1) + 5, layout.panel_y() + cell);
    let input = out.get_pixel(layout.panel_x(0) + 5, layout.panel_y() + cell);
    assert_ne!(on_line, input);
}

#[test]
fn uneven_grids_cover_every_pixel() {
    // 30 px split into 4 patches: the remainder is spread, every pixel belongs to some patch.
    let img = RgbImage::from_pixel(30, 30, Rgb([200, 200, 200]));
    let out = token_panels(&img, (4, 4), &[("none kept".to_string(), vec![])]);
    let layout = panel_layout(30, 30, &["input", "none kept"]);
    for y in 0..layout.panel_h {
        for x in 0..layout.panel_w {
            let p = out.get_pixel(layout.panel_x(1) + x, layout.panel_y() + y);
            assert!(p.0[0] < 120, "pixel ({x}, {y}) not dimmed: {p:?}");
        }
    }
}

#[test]
fn odd_panel_inputs_do_not_panic() {
    let img = test_image();
    let long =
        "a title much, much longer than the panel it sits above, which must be cut".to_string();
    // Out-of-grid and duplicate indices are ignored.
    let out = token_panels(
        &img,
        (14, 14),
        &[(long.clone(), vec![0, 0, 195, 196, 10_000, u32::MAX])],
    );
    let layout = panel_layout(28, 28, &["input", &long]);
    assert_eq!(out.dimensions(), (layout.width(), layout.height()));
    // The long title stays within its panel's columns.
    let band =
        image::imageops::crop_imm(&out, layout.panel_x(1), 0, layout.panel_w, layout.panel_y())
            .to_image();
    let gap_left = image::imageops::crop_imm(
        &out,
        layout.panel_x(1) - layout.gap,
        0,
        layout.gap,
        layout.panel_y(),
    );
    assert!(ink_box(&band, WHITE).is_some());
    assert!(
        ink_box(&gap_left.to_image(), WHITE).is_none(),
        "title spilled left of its panel"
    );

    // No steps: just the input panel.
    let only = token_panels(&img, (14, 14), &[]);
    assert_eq!(only.width(), layout.panel_w + 2 * layout.gap);

    let step = vec![("s".to_string(), vec![1, 2, 3])];
    for (w, h) in [
        (0, 0),
        (1, 1),
        (0, 5),
        (5, 0),
        (1, 300),
        (300, 1),
        (3, 2),
        (500, 400),
    ] {
        let image = RgbImage::from_pixel(w, h, Rgb([90, 90, 90]));
        for grid in [
            (0, 0),
            (0, 3),
            (3, 0),
            (1, 1),
            (14, 14),
            (1000, 1000),
            (usize::MAX, 2),
            (usize::MAX, usize::MAX),
        ] {
            let out = token_panels(&image, grid, &step);
            let layout = panel_layout(w, h, &["input", "s"]);
            assert_eq!(
                out.dimensions(),
                (layout.width(), layout.height()),
                "{w}x{h} grid {grid:?}"
            );
            assert!(layout.panel_w >= w && layout.panel_h >= h);
        }
    }
    // Without a grid there are no patches: the step panel equals the input panel.
    let out = token_panels(&img, (0, 0), &[("s".to_string(), vec![])]);
    let layout = panel_layout(28, 28, &["input", "s"]);
    let a = image::imageops::crop_imm(
        &out,
        layout.panel_x(0),
        layout.panel_y(),
        layout.panel_w,
        layout.panel_h,
    );
    let b = image::imageops::crop_imm(
        &out,
        layout.panel_x(1),
        layout.panel_y(),
        layout.panel_w,
        layout.panel_h,
    );
    assert!(a.to_image() == b.to_image());
}

#[test]
fn panels_survive_png() {
    let out = token_panels(
        &test_image(),
        (14, 14),
        &[("half".to_string(), (0..98).collect())],
    );
    png_round_trip(&out, "tokens.png");
}

// ---------------------------------------------------------------------------------------------
// Samples for a look by eye

#[test]
fn write_samples_when_asked() {
    let Some(dir) = std::env::var_os("ZEROPRUNE_DRAW_SAMPLES") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);

    let curve = |name: &str, drop: f64| {
        let points = (0..=10)
            .map(|i| {
                let keep = 0.3 + 0.07 * i as f64;
                (keep, 81.2 - drop * (1.0 - keep).powi(2) * 10.0)
            })
            .collect::<Vec<_>>();
        series(name, &points)
    };
    let mut with_gap = curve("random", 9.0);
    with_gap.points[4].1 = f64::NAN;
    let chart = line_chart(
        "DeiT-S top-1 vs keep rate",
        "keep rate",
        "top-1 accuracy (%)",
        &[
            curve("evit", 1.0),
            curve("topk-attn", 2.5),
            curve("tome", 1.6),
            with_gap,
        ],
        800,
        500,
    );
    chart.save(dir.join("draw_chart.png")).unwrap();

    // A soft disc on a striped background, and steps that keep the patches nearest its centre.
    let img = RgbImage::from_fn(224, 224, |x, y| {
        let d = ((x as f64 - 120.0).powi(2) + (y as f64 - 100.0).powi(2)).sqrt();
        if d < 60.0 {
            Rgb([230, 120 + (d as u8), 40])
        } else if (x / 16 + y / 16) % 2 == 0 {
            Rgb([90, 140, 200])
        } else {
            Rgb([120, 170, 220])
        }
    });
    let mut by_distance: Vec<u32> = (0..196).collect();
    let dist =
        |p: u32| ((p % 14) as f64 * 16.0 + 8.0 - 120.0).hypot((p / 14) as f64 * 16.0 + 8.0 - 100.0);
    by_distance.sort_by(|a, b| dist(*a).total_cmp(&dist(*b)));
    let steps: Vec<(String, Vec<u32>)> = [(3, 138), (6, 96), (9, 67)]
        .iter()
        .map(|&(block, n)| {
            (
                format!("block {block}: {n} kept"),
                by_distance[..n].to_vec(),
            )
        })
        .collect();
    token_panels(&img, (14, 14), &steps)
        .save(dir.join("draw_tokens.png"))
        .unwrap();
}
