//! Re-plot saved sweep results: `cargo run --example plot_sweep -- RESULTS.json OUT.png [TITLE] [FIELD]`.
//! RESULTS.json is `zeroprune sweep --json` output (`{"rows": [...]}`) or a bare list of rows; each row
//! needs `policy`, `gflops` and `top1` (percent), or the FIELD given instead (`agreement`, percent). Rows of policy `none` are the dense point that
//! every line ends at. The README's plot of the reference's 1300-image sweep is drawn this way.

use std::collections::BTreeMap;

use zeroprune::draw::{line_chart, Series};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = &args[..] else {
        return Err("usage: plot_sweep RESULTS.json OUT.png [TITLE] [FIELD]".into());
    };
    let field = rest.get(1).map_or("top1", String::as_str);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(input)?)?;
    let rows = v.get("rows").unwrap_or(&v).as_array().ok_or("no rows")?;
    let point = |r: &serde_json::Value| -> Option<(String, (f64, f64))> {
        Some((
            r["policy"].as_str()?.to_string(),
            (r["gflops"].as_f64()?, r[field].as_f64()?),
        ))
    };
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut dense = None;
    for (policy, p) in rows.iter().filter_map(point) {
        if policy == "none" {
            dense = Some(p);
        } else {
            lines.entry(policy).or_default().push(p);
        }
    }
    let series: Vec<Series> = lines
        .into_iter()
        .map(|(label, mut points)| {
            points.extend(dense);
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { label, points }
        })
        .collect();
    let title = rest.first().map_or("sweep", String::as_str);
    line_chart(
        title,
        "GFLOPs per image",
        if field == "top1" {
            "top-1 accuracy (%)"
        } else {
            "agreement with dense (%)"
        },
        &series,
        900,
        560,
    )
    .save(output)?;
    println!("wrote {output}");
    Ok(())
}
