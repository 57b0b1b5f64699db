"""The real-GPU table of bench/gpu.sh, from the JSON it wrote: bench/gpu_table.py OUT_DIR MODEL...
Writes OUT_DIR/table.md and prints it."""
import json, sys, os
out, models = sys.argv[1], sys.argv[2:]
lines = []
adapter = None
parts = [(m, f"DeiT-{m.capitalize()}") for m in models]
if os.path.exists(os.path.join(out, "threshold.json")):
    parts.append(("threshold", "DeiT-Tiny, threshold pruning on real photos"))
for m, title in parts:
    d = json.load(open(os.path.join(out, f"{m}.json")))
    adapter = d["adapter"]
    r0 = d["results"][0]
    small = r0.get('gemm_kernel_small', r0['gemm_kernel'])
    lines.append(f"\n**{title}** (GEMM {r0['gemm_kernel']}, {small} for small products; "
                 f"fused attention {str(r0['fused_attention']).lower()})\n")
    lines.append("| batch | policy | latency ms | spread | images/s | FLOPs ratio | speedup | pruning share |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in d["results"]:
        lines.append(
            f"| {r['batch']} | {r['policy']} | {r['latency_ms']:.2f} | {r['spread_pct']:.0f}% | "
            f"{r['images_per_s']:.1f} | {r['flops_ratio']:.3f} | {r['speedup']:.2f}x | "
            f"{max(0.0, 100 * r['prune_overhead_share']):.1f}% |")
k = json.load(open(os.path.join(out, "kernels.json")))
lines.append("\n**Kernels** (`bench --kernels`)\n")
lines.append("| kernel | shape | ms | GFLOP/s | vs baseline |")
lines.append("|---|---|---:|---:|---:|")
for r in k["results"]:
    lines.append(f"| {r['kernel']} | {r['shape']} | {r['ms']:.3f} | {r['gflops_per_s']:.1f} | {r['vs_baseline']:.2f}x |")
text = f"Adapter: {adapter}\n" + "\n".join(lines) + "\n"
open(os.path.join(out, "table.md"), "w").write(text)
print(text)
